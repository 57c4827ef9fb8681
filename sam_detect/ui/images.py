"""The served image folder of the annotation UI: safe paths, listing, decoding with a small
cache, display rendering, browser thumbnails and uploads. Nothing here touches the models.
"""

from __future__ import annotations

import os
import re
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sam_detect.errors import AnnotationError, ImageLoadError, SamDetectError

DEFAULT_PERCENTILES = (1.0, 99.8)
MERGES = ("max", "mean", "rgb")


def _upload_stem(stem: str) -> str:
    """``stem`` with every run of characters other than letters, their marks (the vowel
    signs of Devanagari or Tamil: \\w left them out, and हिंदी became ह_द), digits, ``_``,
    ``.`` and ``-`` made one ``_``."""
    out: list[str] = []
    for c in stem:
        keep = c in "_.-" or unicodedata.category(c)[0] in "LMN"
        if keep or not out or out[-1] != "\0":
            out.append(c if keep else "\0")
    return "".join(out).replace("\0", "_")


class PathNotAllowedError(SamDetectError):
    """A requested path lies outside the served folder (or is not an image file)."""


class LimitError(SamDetectError):
    """An upload or an image exceeds the session's size limits."""


class NotFoundError(SamDetectError):
    """A requested image, candidate or example does not exist."""


@dataclass(frozen=True)
class UILimits:
    """Size limits of a session.

    ``max_upload_bytes``: largest accepted upload. ``max_image_pixels``: largest image
    (height × width of one frame) the session opens. ``max_candidates``: masks kept for
    accepting later (oldest dropped first). ``max_listed_images`` / ``max_listed_examples``:
    caps on the image browser and the library panel.
    """

    max_upload_bytes: int = 64 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    max_candidates: int = 5000
    max_listed_images: int = 5000
    max_listed_examples: int = 600


@dataclass(frozen=True)
class View:
    """How a file becomes the RGB the models see: stack frame, channel(s), channel merge."""

    frame: int = 0
    channel: int | tuple[int, ...] | None = None
    merge: str = "max"

    def __post_init__(self) -> None:
        if isinstance(self.frame, bool) or not isinstance(self.frame, int) or self.frame < 0:
            raise AnnotationError(f"frame must be an int >= 0, got {self.frame!r}")
        if self.merge not in MERGES:
            raise AnnotationError(f"merge must be one of {', '.join(MERGES)}, got {self.merge!r}")


def short(obj: Any, n: int = 80) -> str:
    """``repr(obj)``, cut to ``n`` characters for an error message."""
    s = repr(obj)
    return s if len(s) <= n else s[: n - 3] + "..."


class ImageFolder:
    """The image files under ``root`` as the page sees them.

    Only image files inside ``root`` can be opened (:meth:`resolve`). Decoded images are
    kept for the last three ``(file, view)`` pairs, browser thumbnails for the last 512;
    both under their own lock, so showing images never waits for the models.
    """

    def __init__(self, root: str | os.PathLike, limits: UILimits, allow_upload: bool = True) -> None:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise ImageLoadError(f"{root}: the image folder does not exist or is not a folder")
        self.root = root.resolve()
        self.limits = limits
        self.allow_upload = allow_upload
        self._cache_lock = threading.RLock()  # decoded images and thumbnails
        self._upload_lock = threading.Lock()
        self._images: OrderedDict[tuple, Any] = OrderedDict()  # LoadedImage LRU
        self._thumbs: OrderedDict[tuple, bytes] = OrderedDict()  # browser thumbnails LRU

    # -- paths --------------------------------------------------------------------------
    def resolve(self, rel: str) -> Path:
        """The file ``rel`` (a ``/``-separated path relative to the served folder).

        Raises:
            PathNotAllowedError: absolute paths, ``..`` parts, symlinks leading out of the
                folder, hidden parts, or a file that is not an image.
            NotFoundError: no such file.
        """
        from sam_detect.io.images import IMAGE_EXTENSIONS

        if not isinstance(rel, str) or not rel or "\x00" in rel or len(rel) > 1024:
            raise PathNotAllowedError(
                f"expected a relative image path inside the served folder, got {short(rel)}"
            )
        parts = rel.replace("\\", "/").split("/")
        if (
            rel.startswith(("/", "\\"))
            or re.match(r"^[A-Za-z]:", rel)
            or any(p in ("..", "") for p in parts)
        ):
            raise PathNotAllowedError(f"{rel!r}: only paths inside the served folder are allowed")
        if any(p.startswith(".") for p in parts):
            raise PathNotAllowedError(f"{rel!r}: hidden files are not served")
        target = (self.root / Path(*parts)).resolve()
        if not target.is_relative_to(self.root):
            raise PathNotAllowedError(f"{rel!r}: resolves outside the served folder")
        if target.suffix.lower() not in IMAGE_EXTENSIONS:
            raise PathNotAllowedError(
                f"{rel!r}: not an image file (expected {', '.join(IMAGE_EXTENSIONS)})"
            )
        if not target.is_file():
            raise NotFoundError(f"{rel!r}: no such image in the served folder")
        return target

    def relative(self, path: Path) -> str:
        return path.resolve().relative_to(self.root).as_posix()

    def list_images(self) -> dict[str, Any]:
        """Image files under the folder (recursive, sorted, hidden folders skipped)."""
        from sam_detect.io.images import IMAGE_EXTENSIONS

        found: list[dict[str, Any]] = []
        truncated = False
        unnamed = 0
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                    continue
                p = Path(dirpath) / name
                try:
                    rel = self.relative(p)
                    rel.encode("utf-8")  # a name that is no UTF-8 (bytes of another encoding) cannot
                    size = p.stat().st_size  # travel to the page and back: it made the whole list a 500
                except UnicodeEncodeError:
                    unnamed += 1
                    continue
                except (ValueError, OSError):
                    continue  # a symlink leading out of the folder, or vanished
                found.append({"path": rel, "name": name, "bytes": size})
                if len(found) >= self.limits.max_listed_images:
                    truncated = True
                    break
            if truncated:
                break
        found.sort(key=lambda d: d["path"])
        if unnamed:
            import logging

            logging.getLogger("sam_detect.ui").warning(
                "%d image file(s) under %s have names that are not UTF-8 and are not listed; rename them",
                unnamed, self.root)
        return {"root": self.root.name, "images": found, "truncated": truncated, "not_utf8": unnamed}

    def check_pixels(self, path: Path) -> None:
        hw = _peek_hw(path)
        if hw is not None and hw[0] * hw[1] > self.limits.max_image_pixels:
            raise LimitError(
                f"{path.name}: {hw[1]}x{hw[0]} pixels exceeds the limit of "
                f"{self.limits.max_image_pixels:,} pixels; crop it or raise --max-pixels"
            )

    def load(self, rel: str, view: View) -> Any:
        """The :class:`~sam_detect.io.images.LoadedImage` of ``rel`` under ``view`` (cached)."""
        return self.load_versioned(rel, view)[0]

    def version(self, rel: str) -> tuple[int, int]:
        """Which version of the file ``rel`` is on disk now: ``(mtime_ns, size)``. The session
        keeps its masks of an image under it: a file written over since (another image under
        the same name) does not get the old one's masks."""
        st = self.resolve(rel).stat()
        return (st.st_mtime_ns, st.st_size)

    def load_versioned(self, rel: str, view: View) -> tuple[Any, tuple[int, int]]:
        """:meth:`load` and the :meth:`version` of the file it read."""
        from sam_detect.io.images import load_image

        path = self.resolve(rel)
        st = path.stat()
        version = (st.st_mtime_ns, st.st_size)
        key = (str(path), *version, view)
        with self._cache_lock:  # not the detector's lock: showing images never waits for models
            if key in self._images:
                self._images.move_to_end(key)
                return self._images[key], version
            self.check_pixels(path)
            loaded = load_image(path, frame=view.frame, channel=view.channel, merge=view.merge)
            h, w = loaded.hw
            if h * w > self.limits.max_image_pixels:
                raise LimitError(
                    f"{rel}: {w}x{h} pixels exceeds the limit of {self.limits.max_image_pixels:,}"
                )
            self._images[key] = loaded
            while len(self._images) > 3:
                self._images.popitem(last=False)
            return loaded, version

    def render(
        self, rel: str, view: View, percentiles: tuple[float, float] | None = None
    ) -> np.ndarray:
        """The image as the page shows it: ``(H, W, 3)`` uint8.

        ``percentiles`` ``(low, high)`` change the display contrast only; the models always
        see the default rendering (the one ``sam-detect detect`` uses), so examples added
        here and detections on the command line agree.
        """
        from sam_detect.io.images import to_rgb_uint8

        loaded = self.load(rel, view)
        if percentiles is None or tuple(percentiles) == DEFAULT_PERCENTILES:
            return loaded.rgb
        lo, hi = percentiles
        if not 0 <= lo < hi <= 100:
            raise AnnotationError(
                f"contrast percentiles must satisfy 0 <= low < high <= 100, got {lo}, {hi}"
            )
        orig = loaded.original
        if orig.dtype == np.uint8:
            # uint8 data is shown as stored by default; stretch its rendering instead
            rgb = loaded.rgb.astype(np.float32)
            a, b = np.percentile(
                rgb[:: max(1, rgb.shape[0] // 512), :: max(1, rgb.shape[1] // 512)], (lo, hi)
            )
            if b <= a:
                return loaded.rgb
            out = (rgb - a) * (255.0 / (b - a))
            return np.clip(out, 0, 255).astype(np.uint8)
        channel = view.channel
        if orig.ndim == 3 and channel is None and "S" not in loaded.source_axes:
            channel = list(range(orig.shape[2]))  # multi-channel, not a colour photo: merge
        return to_rgb_uint8(
            orig,
            channel=channel,
            merge=view.merge,
            percentiles=(float(lo), float(hi)),
            channel_axis=-1 if orig.ndim == 3 else None,
        )

    def thumbnail(self, rel: str, max_side: int = 128) -> bytes:
        """A small PNG of ``rel`` (first frame, default rendering) for the image browser."""
        path = self.resolve(rel)
        st = path.stat()
        key = (str(path), st.st_mtime_ns, max_side)
        with self._cache_lock:
            if key in self._thumbs:
                return self._thumbs[key]
        from sam_detect.io.images import load_image

        self.check_pixels(path)
        rgb = load_image(path, frame=0).rgb  # not kept: browsing must not evict the open image
        data = encode_png(_fit(rgb, max_side))
        with self._cache_lock:
            self._thumbs[key] = data
            while len(self._thumbs) > 512:
                self._thumbs.popitem(last=False)
            return data

    def save_upload(self, filename: str, data: bytes) -> dict[str, Any]:
        """Store an uploaded image as ``uploads/<name>`` (never overwriting) and check it opens."""
        from sam_detect.io.images import IMAGE_EXTENSIONS, load_image

        if not self.allow_upload:
            raise PathNotAllowedError("uploads are turned off for this session")
        if len(data) > self.limits.max_upload_bytes:
            raise LimitError(
                f"upload of {len(data):,} bytes exceeds the limit of {self.limits.max_upload_bytes:,} bytes"
            )
        if not data:
            raise ImageLoadError("the uploaded file is empty")
        # é typed as e and a combining accent is one letter, as \w reads letters
        name = unicodedata.normalize("NFC", Path(str(filename)).name)
        suffix = Path(name).suffix.lower()
        # letters and digits of every script kept: 细胞.png, its stem all replaced by "_" and
        # stripped with the dot, was refused as "not an image file name"; a stem left with none
        # is "upload". 80 bytes of UTF-8 at most: a file name holds 255 bytes, not characters
        stem = _upload_stem(Path(name).stem).strip("._").encode()[:80].decode(errors="ignore") or "upload"
        if suffix not in IMAGE_EXTENSIONS:
            raise ImageLoadError(
                f"{short(filename)}: not an image file name (expected {', '.join(IMAGE_EXTENSIONS)})"
            )
        folder = self.root / "uploads"
        with self._upload_lock:
            if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
                # A link could lead anywhere on the disk: uploads stay inside the served folder.
                raise PathNotAllowedError(
                    "uploads/ in the served folder is a link or a file, not a folder; uploads are "
                    "refused (replace it with a plain folder to allow them)"
                )
            try:
                folder.mkdir(exist_ok=True)
            except OSError as e:
                raise PathNotAllowedError(f"cannot create uploads/ in the served folder ({e.strerror})") from None
            if folder.resolve() != self.root / "uploads":
                raise PathNotAllowedError("uploads/ resolves outside the served folder; uploads are refused")
            target = folder / f"{stem}{suffix}"
            n = 1
            while target.exists():
                target = folder / f"{stem}_{n}{suffix}"
                n += 1
            tmp = folder / f".{target.name}.part"
            tmp.write_bytes(data)
            try:
                self.check_pixels(tmp)
                loaded = load_image(tmp, frame=0)
            except SamDetectError as e:
                tmp.unlink(missing_ok=True)
                msg = str(e).replace(str(tmp), short(filename)).replace(tmp.name, short(filename))
                raise type(e)(msg) from e
            except Exception:
                tmp.unlink(missing_ok=True)
                raise
            tmp.replace(target)
            h, w = loaded.hw
        return {"path": self.relative(target), "width": w, "height": h, "bytes": len(data)}


def _peek_hw(path: Path) -> tuple[int, int] | None:
    """``(height, width)`` from the file header without decoding pixels; ``None`` if unknown."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                if not tif.series:
                    return None
                from sam_detect.io.images import _unnamed_channels

                s = tif.series[0]
                axes = _unnamed_channels(s.axes.upper(), tuple(int(n) for n in s.shape))
                if "Y" in axes and "X" in axes:
                    return int(s.shape[axes.index("Y")]), int(s.shape[axes.index("X")])
                return None
        from PIL import Image

        with Image.open(path) as im:
            return int(im.size[1]), int(im.size[0])
    except Exception:  # unreadable headers are reported by the real load
        return None


def _fit(rgb: np.ndarray, max_side: int) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    s = max_side / max(h, w)
    if s >= 1:
        return rgb
    return cv2.resize(
        rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA
    )


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of ``(H, W, 3)`` uint8 RGB or ``(H, W)`` uint8/uint16 (fast compression)."""
    import cv2

    arr = np.ascontiguousarray(image)
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", arr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise SamDetectError(f"could not encode a PNG of shape {image.shape}, dtype {image.dtype}")
    return buf.tobytes()


