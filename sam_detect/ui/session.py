"""The annotation session behind the web UI: images, prompts, detections, corrections, undo.

Everything here is plain Python over :class:`~sam_detect.pipeline.SAMDetect`; the web layer
(:mod:`sam_detect.ui.server`) only parses requests and serialises answers. One lock
serialises all work on the detector (the models and the store are not thread-safe).

Coordinates are image pixels of the original file: points ``(x, y)``, boxes XYXY with the
right/bottom edge exclusive. Masks travel to and from the page as :func:`mask_to_runs`
dicts: the mask's bounding box ``x, y, w, h`` plus run lengths over that crop in row-major
order, starting with a run of background (possibly 0).

Every accepted example is written to the library at once (``SAMDetect.add_examples``);
what the session keeps in memory (annotations per image, the undo stack, candidate masks)
is only what the page needs to draw, correct and export.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sam_detect.embed.base import embeds_instances
from sam_detect.errors import AnnotationError, ImageLoadError, LibraryNotFoundError, SamDetectError
from sam_detect.instances import NEGATIVE, Instances

log = logging.getLogger("sam_detect.ui")

DEFAULT_PERCENTILES = (1.0, 99.8)
#: segmenters that keep their last image's segmentation, so a background run pays off
PREFETCH_SEGMENTERS = ("classical",)
MERGES = ("max", "mean", "rgb")
_LIBRARY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_UPLOAD_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


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


# ---------------------------------------------------------------------------------------
# mask transport
# ---------------------------------------------------------------------------------------
def mask_to_runs(mask: np.ndarray, origin: tuple[int, int] = (0, 0)) -> dict[str, Any]:
    """Encode a bool mask for the page.

    Args:
        mask: ``(h, w)`` bool, either a whole image or a crop whose top-left pixel is at
            ``origin`` ``(x, y)``.

    Returns:
        ``{"x", "y", "w", "h", "runs"}``: the tight bounding box of the mask in image pixels
        and alternating run lengths (background first) over that box in row-major order.
        An empty mask gives ``w = h = 0`` and no runs.
    """
    mask = np.asarray(mask, dtype=bool)
    ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if ys.size == 0:
        return {"x": int(origin[0]), "y": int(origin[1]), "w": 0, "h": 0, "runs": []}
    y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
    flat = mask[y0:y1, x0:x1].reshape(-1)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0, *runs]
    return {
        "x": int(origin[0]) + x0,
        "y": int(origin[1]) + y0,
        "w": x1 - x0,
        "h": y1 - y0,
        "runs": runs,
    }


def runs_to_mask(obj: Any, image_hw: tuple[int, int]) -> np.ndarray:
    """Decode a :func:`mask_to_runs` dict into a full ``(H, W)`` bool mask.

    Raises:
        AnnotationError: malformed dict, a box outside the image, or runs that do not add
            up to ``w * h``.
    """
    try:
        x, y, w, h = (int(obj[k]) for k in ("x", "y", "w", "h"))
        runs = np.asarray(obj["runs"], dtype=np.int64).reshape(-1)
    except (KeyError, TypeError, ValueError) as e:
        raise AnnotationError(
            f"a mask must be {{'x', 'y', 'w', 'h', 'runs'}} with integer values; got {_short(obj)}"
        ) from e
    H, W = image_hw
    if w <= 0 or h <= 0:
        raise AnnotationError("the mask is empty (w or h is 0)")
    if x < 0 or y < 0 or x + w > W or y + h > H:
        raise AnnotationError(f"mask box x={x}, y={y}, w={w}, h={h} lies outside the {W}x{H} image")
    if (runs < 0).any() or int(runs.sum()) != w * h:
        raise AnnotationError(
            f"mask runs must be >= 0 and sum to w*h = {w * h}, got sum {int(runs.sum())}"
        )
    values = np.zeros(runs.size, dtype=bool)
    values[1::2] = True
    crop = np.repeat(values, runs).reshape(h, w)
    out = np.zeros((H, W), dtype=bool)
    out[y : y + h, x : x + w] = crop
    return out


def _short(obj: Any, n: int = 80) -> str:
    s = repr(obj)
    return s if len(s) <= n else s[: n - 3] + "..."


# ---------------------------------------------------------------------------------------
# embedding cache
# ---------------------------------------------------------------------------------------
class CachingEmbedder:
    """Wraps an embedder and remembers the vector of every crop it has embedded.

    The crops of an image's candidates are the same bytes every time the image is detected
    (the segmentation and the crop are deterministic), so detecting again after a
    correction, or accepting a detection as an example, costs no model run. Keys are a
    hash of the crop's bytes, shape and dtype (and of its mask for embedders that take
    masks); at most ``max_items`` vectors are kept, oldest dropped first.

    Every other attribute (``id``, ``dim``, ``name``, ``uses_masks`` ...) is the wrapped
    embedder's.
    """

    def __init__(self, inner: Any, max_items: int = 20000) -> None:
        self.inner = inner
        self.max_items = max_items
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @staticmethod
    def _key(crop: Any, mask: Any = None) -> bytes:
        a = np.ascontiguousarray(crop)
        h = hashlib.blake2b(a.tobytes(), digest_size=20)
        h.update(repr((a.shape, a.dtype.str)).encode())
        if mask is not None:
            h.update(np.ascontiguousarray(mask).tobytes())
        return h.digest()

    def embed(self, crops: Sequence[Any], **kwargs: Any) -> np.ndarray:
        """``(N, D)`` float32 vectors of ``crops``, from the cache where possible."""
        masks = kwargs.get("masks")
        extra = {k: v for k, v in kwargs.items() if k != "masks"}
        if extra:  # options the cache cannot key on: pass through
            return np.asarray(self.inner.embed(crops, **kwargs), dtype=np.float32)
        keys = [self._key(c, None if masks is None else masks[i]) for i, c in enumerate(crops)]
        todo = [i for i, k in enumerate(keys) if k not in self._cache]
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        if todo:
            sub = [crops[i] for i in todo]
            if masks is None:
                vecs = self.inner.embed(sub)
            else:
                vecs = self.inner.embed(sub, masks=[masks[i] for i in todo])
            vecs = np.asarray(vecs, dtype=np.float32)
            for i, v in zip(todo, vecs, strict=True):
                self._cache[keys[i]] = v
        out = (
            np.stack([self._cache[k] for k in keys])
            if keys
            else np.zeros((0, int(self.inner.dim)), np.float32)
        )
        for k in keys:
            self._cache.move_to_end(k)
        while len(self._cache) > self.max_items:
            self._cache.popitem(last=False)
        return out


# ---------------------------------------------------------------------------------------
# session records
# ---------------------------------------------------------------------------------------
@dataclass
class _Mask:
    """A mask stored as its bounding-box crop (full masks of hundreds of objects cost GBs)."""

    x: int
    y: int
    crop: np.ndarray  # (h, w) bool
    image_hw: tuple[int, int]

    @classmethod
    def from_instance(cls, inst: Instances, i: int) -> _Mask:
        """Instance ``i``'s mask, from its stored crop (no full-image array)."""
        crop, (rows, cols) = inst.mask_crop(i)
        return cls(cols.start, rows.start, crop.copy(), inst.image_hw)

    @staticmethod
    def to_instances(masks: Sequence[_Mask], image_hw: tuple[int, int], **kwargs: Any) -> Instances:
        """:class:`Instances` of ``masks`` (crops kept as crops); ``kwargs`` as for ``from_crops``."""
        return Instances.from_crops(
            [m.crop for m in masks], np.array([(m.x, m.y) for m in masks]).reshape(-1, 2), image_hw, **kwargs
        )

    @classmethod
    def from_full(cls, mask: np.ndarray) -> _Mask:
        ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        if ys.size == 0:
            return cls(0, 0, np.zeros((0, 0), bool), mask.shape[:2])
        y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
        return cls(x0, y0, mask[y0:y1, x0:x1].copy(), (int(mask.shape[0]), int(mask.shape[1])))

    def full(self) -> np.ndarray:
        out = np.zeros(self.image_hw, dtype=bool)
        h, w = self.crop.shape
        out[self.y : self.y + h, self.x : self.x + w] = self.crop
        return out

    @property
    def box(self) -> list[int]:
        h, w = self.crop.shape
        return [self.x, self.y, self.x + w, self.y + h]

    @property
    def area(self) -> int:
        return int(self.crop.sum())

    def runs(self) -> dict[str, Any]:
        return mask_to_runs(self.crop, (self.x, self.y))

    def iou(self, other: _Mask) -> float:
        ax0, ay0, ax1, ay1 = self.box
        bx0, by0, bx1, by1 = other.box
        x0, y0, x1, y1 = max(ax0, bx0), max(ay0, by0), min(ax1, bx1), min(ay1, by1)
        if x0 >= x1 or y0 >= y1:
            return 0.0
        a = self.crop[y0 - ay0 : y1 - ay0, x0 - ax0 : x1 - ax0]
        b = other.crop[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0]
        inter = int(np.logical_and(a, b).sum())
        union = self.area + other.area - inter
        return inter / union if union else 0.0

    def contains(self, x: float, y: float) -> bool:
        h, w = self.crop.shape
        ix, iy = int(x) - self.x, int(y) - self.y
        return 0 <= ix < w and 0 <= iy < h and bool(self.crop[iy, ix])


@dataclass
class Candidate:
    """A mask the page may accept: from a click/box prompt or from detection."""

    id: str
    image_key: tuple[str, int]
    mask: _Mask
    source: str  # "prompt" | "detection"
    label: str | None = None
    confidence: float | None = None
    similarity: float | None = None
    neighbours: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Annotation:
    """One object of an image as the session knows it.

    ``kind``: ``"example"`` (in the library, with ``example_ids``), ``"detection"`` (found by
    detect, not yet confirmed) or ``"negative"`` (stored as a negative example; not exported).
    """

    id: str
    mask: _Mask
    label: str
    kind: str
    confidence: float | None = None
    example_ids: list[str] = field(default_factory=list)
    candidate_id: str | None = None


@dataclass
class _Action:
    """One undoable step: examples written to a library plus the annotations before it."""

    description: str
    library: str
    example_ids: list[str]
    image_key: tuple[str, int] | None
    before: list[Annotation] | None
    view: View | None = None
    #: examples the step replaced (relabelled): ``(annotation id, mask, old label, old ids)``
    replaced: list[tuple[str, _Mask, str, list[str]]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------
# the session
# ---------------------------------------------------------------------------------------
class AnnotationSession:
    """State and operations of one UI session over a folder of images.

    Args:
        detector: a :class:`~sam_detect.pipeline.SAMDetect`; its store holds the libraries.
            The session switches libraries by making sibling detectors that share its store
            and segmenter; it never closes ``detector`` (its owner does).
        image_dir: the served folder. Only image files under it can be opened.
        thumbnail_dir: where example thumbnails are kept (``<dir>/<library>/<id>.png``).
            Default: next to the store's folder (``<library path>-thumbnails``) when the
            store lives on disk, else a temporary folder removed by :meth:`close`.
        limits: size limits, see :class:`UILimits`.
        allow_upload: accept uploads into ``<image_dir>/uploads``.
        prefetch: when an image is opened, segment it and embed its candidates in the
            background (a few crops at a time, yielding to clicks between chunks), so the
            first click and the first detect on it find their work done. Only for segmenters
            that cache their last segmentation (:data:`PREFETCH_SEGMENTERS`).
    """

    def __init__(
        self,
        detector: Any,
        image_dir: str | os.PathLike,
        *,
        thumbnail_dir: str | os.PathLike | None = None,
        limits: UILimits | None = None,
        allow_upload: bool = True,
        prefetch: bool = True,
    ) -> None:
        root = Path(image_dir).expanduser()
        if not root.is_dir():
            raise ImageLoadError(f"{root}: the image folder does not exist or is not a folder")
        self.root = root.resolve()
        self.limits = limits or UILimits()
        self.allow_upload = allow_upload
        self.lock = threading.RLock()  # the detector, the store and the session's records
        self._cache_lock = threading.RLock()  # decoded images and thumbnails
        self._base = detector
        self._detectors: dict[str, Any] = {}
        self._embedders: dict[str, CachingEmbedder] = {}
        self._tmp_thumbs: str | None = None
        self.thumbnail_dir = self._pick_thumbnail_dir(thumbnail_dir)
        self._images: OrderedDict[tuple, Any] = OrderedDict()  # LoadedImage LRU
        self._thumbs: OrderedDict[tuple, bytes] = OrderedDict()  # browser thumbnails LRU
        # (library, example id) -> (payload, label) of listed examples that have no thumbnail yet
        self._pending_thumbs: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
        self._candidates: OrderedDict[str, Candidate] = OrderedDict()
        self._annotations: dict[str, dict[tuple[str, int], list[Annotation]]] = {}
        self._undo: list[_Action] = []
        self._ids = itertools.count(1)
        self.prefetch_enabled = prefetch
        self._prefetch_gen = 0
        self._prefetch_thread: threading.Thread | None = None
        #: what the last prefetch did: {"image", "candidates", "embedded", "seconds", "done"}
        self.prefetch_status: dict[str, Any] = {}
        self.detector = self._detector_for(detector.config.library)

    # -- lifecycle ----------------------------------------------------------------------
    def close(self) -> None:
        """Close the sibling detectors the session made and remove a temporary thumbnail folder."""
        self._prefetch_gen += 1  # stops a running prefetch at its next chunk
        thread = self._prefetch_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)
        with self.lock:
            for det in self._detectors.values():
                det.close()  # they share the given detector's store and do not close it
            self._detectors.clear()
            if self._tmp_thumbs:
                shutil.rmtree(self._tmp_thumbs, ignore_errors=True)
                self._tmp_thumbs = None

    def warm_up(self) -> float:
        """Load the models and run each once on a dummy input, so that the first click and the
        first accept do not pay for the framework's first-call set-up. Returns the seconds."""
        t0 = time.perf_counter()
        with self.lock:
            det = self.detector
            dummy = np.zeros((64, 64, 3), np.uint8)
            dummy[20:40, 20:40] = 200
            det.segmenter.segment(dummy)
            emb = det.embedder
            if not embeds_instances(emb):
                inner = emb.inner if isinstance(emb, CachingEmbedder) else emb
                inner.embed([dummy, dummy[:48, :48]])  # not cached: a dummy is not an example
        return time.perf_counter() - t0

    def _pick_thumbnail_dir(self, given: str | os.PathLike | None) -> Path:
        if given is not None:
            return Path(given).expanduser()
        where = getattr(self._base.store, "path", None)  # an embedded store's folder or file
        if where:
            p = Path(where).expanduser().resolve()
            return p.with_name(p.name + "-thumbnails")
        self._tmp_thumbs = tempfile.mkdtemp(prefix="sam-detect-ui-thumbs-")
        return Path(self._tmp_thumbs)

    @property
    def library(self) -> str:
        return self.detector.config.library

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}"

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
                f"expected a relative image path inside the served folder, got {_short(rel)}"
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
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                    continue
                p = Path(dirpath) / name
                try:
                    rel = self.relative(p)
                    size = p.stat().st_size
                except (ValueError, OSError):
                    continue  # a symlink leading out of the folder, or vanished
                found.append({"path": rel, "name": name, "bytes": size})
                if len(found) >= self.limits.max_listed_images:
                    truncated = True
                    break
            if truncated:
                break
        found.sort(key=lambda d: d["path"])
        return {"root": self.root.name, "images": found, "truncated": truncated}

    # -- images -------------------------------------------------------------------------
    def _check_pixels(self, path: Path) -> None:
        hw = _peek_hw(path)
        if hw is not None and hw[0] * hw[1] > self.limits.max_image_pixels:
            raise LimitError(
                f"{path.name}: {hw[1]}x{hw[0]} pixels exceeds the limit of "
                f"{self.limits.max_image_pixels:,} pixels; crop it or raise --max-pixels"
            )

    def load(self, rel: str, view: View) -> Any:
        """The :class:`~sam_detect.io.images.LoadedImage` of ``rel`` under ``view`` (cached)."""
        from sam_detect.io.images import load_image

        path = self.resolve(rel)
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size, view)
        with self._cache_lock:  # not the detector's lock: showing images never waits for models
            if key in self._images:
                self._images.move_to_end(key)
                return self._images[key]
            self._check_pixels(path)
            loaded = load_image(path, frame=view.frame, channel=view.channel, merge=view.merge)
            h, w = loaded.hw
            if h * w > self.limits.max_image_pixels:
                raise LimitError(
                    f"{rel}: {w}x{h} pixels exceeds the limit of {self.limits.max_image_pixels:,}"
                )
            self._images[key] = loaded
            while len(self._images) > 3:
                self._images.popitem(last=False)
            return loaded

    def info(self, rel: str, view: View) -> dict[str, Any]:
        """Size, frames, channels and dtype of ``rel``, for the page's controls."""
        loaded = self.load(rel, view)
        h, w = loaded.hw
        photometric = "S" in loaded.source_axes
        if self.prefetch_enabled:
            self.prefetch(rel, view)
        return {
            "path": rel,
            "width": w,
            "height": h,
            "n_frames": loaded.n_frames,
            "frame": view.frame,
            "n_channels": loaded.n_channels,
            "rgb": photometric,
            "dtype": str(loaded.original.dtype),
            "source_axes": loaded.source_axes,
            "source_shape": list(loaded.source_shape),
        }

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

    def prefetch(self, rel: str, view: View, chunk: int = 4) -> threading.Thread:
        """Segment ``rel`` and embed its candidates' crops in a background thread.

        Fills the segmenter's per-image cache and the :class:`CachingEmbedder`, so that a
        later click or detect on the image reuses the work. A newer prefetch (another image)
        or :meth:`close` stops this one at its next chunk. Returns the thread.
        """
        self._prefetch_gen += 1
        gen = self._prefetch_gen
        thread = threading.Thread(
            target=self._prefetch_run,
            args=(rel, view, gen, chunk),
            name="sam-detect-ui-prefetch",
            daemon=True,
        )
        self._prefetch_thread = thread
        thread.start()
        return thread

    def _prefetch_run(self, rel: str, view: View, gen: int, chunk: int) -> None:
        from sam_detect.fade.crops import make_context_crops

        t0 = time.perf_counter()
        status: dict[str, Any] = {
            "image": rel,
            "frame": view.frame,
            "candidates": 0,
            "embedded": 0,
            "done": False,
        }
        try:
            with self.lock:
                if gen != self._prefetch_gen:
                    return
                self.prefetch_status = status
                det = self.detector
                if getattr(det.segmenter, "name", None) not in PREFETCH_SEGMENTERS:
                    # e.g. SAM2: its automatic masks are not cached, so a prefetch would only
                    # run them twice (and hold the models for a long time)
                    status["skipped"] = (
                        f"segmenter {getattr(det.segmenter, 'name', '?')!r} is not prefetched"
                    )
                    return
                loaded = self.load(rel, view)
                from sam_detect.segment.base import segment_with_profile

                inst = segment_with_profile(det.segmenter, loaded.rgb, det.profile)
                emb = det.embedder
                fade = det.fade
            status["candidates"] = len(inst)
            if not isinstance(emb, CachingEmbedder) or embeds_instances(emb):
                return  # an embedder that works on the whole image: no crops to cache
            for s in range(0, len(inst), chunk):
                with self.lock:  # one chunk at a time: a click waits for one chunk at most
                    if gen != self._prefetch_gen or det is not self.detector:
                        return
                    crops = make_context_crops(
                        loaded.rgb, inst[s : s + chunk], occupancy=det.occupancy, fade=fade
                    )
                    images = [c.image for c in crops]
                    if getattr(emb, "uses_masks", False):
                        emb.embed(images, masks=[c.mask for c in crops])
                    else:
                        emb.embed(images)
                    status["embedded"] = min(len(inst), s + chunk)
            status["done"] = True
        except Exception as e:  # a prefetch is an optimisation: the real request reports errors
            status["error"] = f"{type(e).__name__}: {e}"
            log.debug("prefetch of %s failed: %s", rel, e)
        finally:
            status["seconds"] = round(time.perf_counter() - t0, 3)

    def thumbnail(self, rel: str, max_side: int = 128) -> bytes:
        """A small PNG of ``rel`` (first frame, default rendering) for the image browser."""
        path = self.resolve(rel)
        st = path.stat()
        key = (str(path), st.st_mtime_ns, max_side)
        with self._cache_lock:
            if key in self._thumbs:
                return self._thumbs[key]
        from sam_detect.io.images import load_image

        self._check_pixels(path)
        rgb = load_image(path, frame=0).rgb  # not kept: browsing must not evict the open image
        data = encode_png(_fit(rgb, max_side))
        with self._cache_lock:
            self._thumbs[key] = data
            while len(self._thumbs) > 512:
                self._thumbs.popitem(last=False)
            return data

    # -- candidates and annotations -----------------------------------------------------
    def _remember(self, cand: Candidate) -> Candidate:
        self._candidates[cand.id] = cand
        while len(self._candidates) > self.limits.max_candidates:
            self._candidates.popitem(last=False)
        return cand

    def _anns(self, key: tuple[str, int]) -> list[Annotation]:
        return self._annotations.setdefault(self.library, {}).setdefault(key, [])

    def prompt(
        self,
        rel: str,
        view: View,
        *,
        point: Sequence[float] | None = None,
        box: Sequence[float] | None = None,
    ) -> dict[str, Any]:
        """Turn a click (``point`` XY) or a drag (``box`` XYXY) into a candidate mask.

        Returns ``{"candidate": {...}, "seconds": float}``; the candidate carries its ``id``
        (pass it to :meth:`accept`), ``mask`` (runs), ``box`` and ``area``.

        Raises:
            AnnotationError: no object there, or a prompt outside the image.
        """
        if (point is None) == (box is None):
            raise AnnotationError("give exactly one of point [x, y] or box [x1, y1, x2, y2]")
        t0 = time.perf_counter()
        with self.lock:
            loaded = self.load(rel, view)
            inst = self.detector.prompt_to_instances(
                loaded,
                point=None if point is None else [float(v) for v in point],
                box=None if box is None else [float(v) for v in box],
            )
            mask = _Mask.from_instance(inst, 0)
            cand = self._remember(
                Candidate(
                    id=self._next_id("c"), image_key=(rel, view.frame), mask=mask, source="prompt"
                )
            )
        return {
            "candidate": self._candidate_json(cand),
            "seconds": round(time.perf_counter() - t0, 4),
        }

    def detect(
        self,
        rel: str,
        view: View,
        *,
        threshold: float | None = None,
        top_k: int | None = None,
    ) -> dict[str, Any]:
        """Detect on ``rel`` with the current library; detections replace the image's earlier ones.

        Detections overlapping an example of the image (IoU > 0.5) are left out: the example
        already marks that object.
        """
        if threshold is not None and not -1 <= threshold <= 1:
            raise AnnotationError(f"threshold is a cosine similarity in [-1, 1], got {threshold}")
        if top_k is not None and not 1 <= top_k <= 100:
            raise AnnotationError(f"top_k must be in 1..100, got {top_k}")
        t0 = time.perf_counter()
        with self.lock:
            loaded = self.load(rel, view)
            try:
                found = self.detector.detect(loaded, threshold=threshold, top_k=top_k)
            except LibraryNotFoundError as e:
                raise LibraryNotFoundError(
                    f"library {self.library!r} holds no examples yet: click an object and accept it "
                    "with a label first"
                ) from e
            key = (rel, view.frame)
            anns = self._anns(key)
            kept = [a for a in anns if a.kind != "detection"]
            dropped = 0
            for i in range(len(found)):
                m = _Mask.from_instance(found, i)
                if any(a.mask.iou(m) > 0.5 for a in kept if a.kind in ("example", "negative")):
                    dropped += 1
                    continue
                cand = self._remember(
                    Candidate(
                        id=self._next_id("c"),
                        image_key=key,
                        mask=m,
                        source="detection",
                        label=str(found.labels[i]),
                        confidence=float(found.label_confidences[i]),
                        similarity=float(found.data["similarity"][i])
                        if "similarity" in found.data
                        else None,
                        neighbours=list(found.data.get("neighbours", [[]] * len(found))[i]),
                    )
                )
                kept.append(
                    Annotation(
                        id=self._next_id("a"),
                        mask=m,
                        label=cand.label or "",
                        kind="detection",
                        confidence=cand.confidence,
                        candidate_id=cand.id,
                    )
                )
            anns[:] = kept
            md = found.metadata
            result = {
                "image": rel,
                "frame": view.frame,
                "library": self.library,
                "candidates": int(md.get("candidates", len(found))),
                "count": len(found) - dropped,
                "already_examples": dropped,
                "timings": {k: round(float(v), 4) for k, v in md.get("timings", {}).items()},
                "segmenter": md.get("segmenter"),
                "embedder": md.get("embedder"),
                "annotations": [self._annotation_json(a) for a in anns],
            }
        result["seconds"] = round(time.perf_counter() - t0, 4)
        return result

    def accept(
        self,
        rel: str,
        view: View,
        *,
        label: str,
        candidates: Sequence[str] = (),
        mask: Any = None,
    ) -> dict[str, Any]:
        """Write examples to the library now: candidate masks (by id) or a mask from the page.

        ``label`` may be :data:`~sam_detect.instances.NEGATIVE` (``"__negative__"``): the
        "not this" / "wrong" action. Accepting a detection with another label relabels it.
        Returns the new example ids and the image's annotations.
        """
        if not isinstance(label, str) or not label.strip():
            raise AnnotationError(f"a label must be a non-empty string, got {label!r}")
        label = label.strip()
        if len(label) > 100:
            raise AnnotationError(f"a label may have at most 100 characters, got {len(label)}")
        if not candidates and mask is None:
            raise AnnotationError("nothing to accept: give candidate ids or a mask")
        if len(candidates) > 1000:
            raise AnnotationError(f"at most 1000 candidates at once, got {len(candidates)}")
        key = (rel, view.frame)
        with self.lock:
            loaded = self.load(rel, view)
            items: list[tuple[_Mask, Candidate | None]] = []
            for cid in candidates:
                cand = self._candidates.get(str(cid))
                if cand is None:
                    raise NotFoundError(
                        f"candidate {cid!r} is unknown or expired; click the object again"
                    )
                if cand.image_key != key:
                    raise AnnotationError(
                        f"candidate {cid!r} belongs to {cand.image_key[0]!r} frame {cand.image_key[1]}, "
                        f"not {rel!r} frame {view.frame}"
                    )
                items.append((cand.mask, cand))
            if mask is not None:
                items.append((_Mask.from_full(runs_to_mask(mask, loaded.hw)), None))
            anns = self._anns(key)
            plan: list[tuple[_Mask, Candidate | None, Annotation | None]] = []
            for m, cand in items:
                existing = None
                if cand is not None:
                    existing = next((a for a in anns if a.candidate_id == cand.id), None)
                if existing is None:
                    existing = next((a for a in anns if a.mask.iou(m) > 0.9), None)
                if (
                    existing is not None
                    and existing.kind != "detection"
                    and existing.label == label
                ):
                    continue  # already in the library with this label
                plan.append((m, cand, existing))
            if not plan:
                return {
                    "ids": [],
                    "label": label,
                    "library": self.library,
                    "annotations": [self._annotation_json(a) for a in anns],
                    "labels": self._labels(),
                }
            inst = _Mask.to_instances([m for m, _, _ in plan], loaded.hw, labels=[label] * len(plan))
            ids = self.detector.add_examples(loaded, inst)  # written to the library now
            before = [dataclasses.replace(a) for a in anns]
            kind = "negative" if label == NEGATIVE else "example"
            replaced: list[tuple[str, _Mask, str, list[str]]] = []
            for (m, cand, existing), ex_id in zip(plan, ids, strict=True):
                self._save_thumbnail(loaded.rgb, m, label, ex_id)
                if existing is None:
                    anns.append(
                        Annotation(
                            id=self._next_id("a"),
                            mask=m,
                            label=label,
                            kind=kind,
                            example_ids=[ex_id],
                            candidate_id=cand.id if cand else None,
                        )
                    )
                    continue
                if (
                    existing.example_ids
                ):  # relabelled: the old examples would contradict the new one
                    self._delete_ids(self.library, existing.example_ids)
                    replaced.append(
                        (existing.id, existing.mask, existing.label, list(existing.example_ids))
                    )
                existing.label, existing.kind, existing.confidence = label, kind, None
                existing.example_ids = [ex_id]
            what = "negative" if label == NEGATIVE else repr(label)
            self._undo.append(
                _Action(
                    f"{len(ids)} example(s) {what}"
                    + (f", {len(replaced)} relabelled" if replaced else ""),
                    self.library,
                    list(ids),
                    key,
                    before,
                    view=view,
                    replaced=replaced,
                )
            )
            del self._undo[:-200]
            return {
                "ids": list(ids),
                "label": label,
                "library": self.library,
                "annotations": [self._annotation_json(a) for a in anns],
                "labels": self._labels(),
            }

    def _delete_ids(self, library: str, ids: Sequence[str]) -> int:
        det = self._detector_for(library)
        from sam_detect.store import journal

        n = journal.delete(det.store, library, ids=list(ids))  # all or none, even if killed
        if n:
            det.refresh_profile()  # what the examples say about the objects changed
        for ex_id in ids:
            self._thumb_path(library, ex_id).unlink(missing_ok=True)
        return n

    def undo(self) -> dict[str, Any]:
        """Take back the last accepted step: delete its examples, put back the examples it
        relabelled (embedded again from their masks), and restore the image's annotations."""
        with self.lock:
            if not self._undo:
                raise NotFoundError("nothing to undo")
            act = self._undo.pop()
            self._delete_ids(act.library, act.example_ids)
            restored: dict[str, list[str]] = {}
            if act.replaced and act.image_key is not None and act.view is not None:
                det = self._detector_for(act.library)
                loaded = self.load(act.image_key[0], act.view)
                remap: dict[str, str] = {}
                for ann_id, m, old_label, old_ids in act.replaced:
                    inst = _Mask.to_instances([m], loaded.hw, labels=[old_label])
                    new_ids = det.add_examples(loaded, inst)
                    self._save_thumbnail(loaded.rgb, m, old_label, new_ids[0], library=act.library)
                    restored[ann_id] = list(new_ids)
                    remap.update({old: new_ids[0] for old in old_ids})
                self._remap_ids(remap)
            if act.image_key is not None and act.before is not None:
                for a in act.before:
                    if a.id in restored:
                        a.example_ids = restored[a.id]
                self._annotations.setdefault(act.library, {})[act.image_key] = act.before
            return {
                "undone": act.description,
                "library": act.library,
                "ids": act.example_ids,
                "restored": sum(len(v) for v in restored.values()),
                "remaining": len(self._undo),
            }

    def _remap_ids(self, remap: dict[str, str]) -> None:
        """Examples put back by an undo have new ids: older undo steps must delete those."""
        if not remap:
            return
        for act in self._undo:
            act.example_ids = list(dict.fromkeys(remap.get(i, i) for i in act.example_ids))
            act.replaced = [
                (a, m, lab, [remap.get(i, i) for i in ids]) for a, m, lab, ids in act.replaced
            ]
            for a in act.before or []:
                a.example_ids = [remap.get(i, i) for i in a.example_ids]

    def annotations(self, rel: str, view: View) -> dict[str, Any]:
        """The image's annotations in the current library (examples, negatives, detections)."""
        self.resolve(rel)
        with self.lock:
            anns = self._annotations.get(self.library, {}).get((rel, view.frame), [])
            return {
                "image": rel,
                "frame": view.frame,
                "library": self.library,
                "annotations": [self._annotation_json(a) for a in anns],
            }

    def _candidate_json(self, c: Candidate) -> dict[str, Any]:
        return {
            "id": c.id,
            "source": c.source,
            "box": c.mask.box,
            "area": c.mask.area,
            "mask": c.mask.runs(),
            "label": c.label,
            "confidence": c.confidence,
            "similarity": c.similarity,
            "neighbours": c.neighbours,
        }

    def _annotation_json(self, a: Annotation) -> dict[str, Any]:
        from sam_detect.outputs import label_color

        cand = self._candidates.get(a.candidate_id) if a.candidate_id else None
        return {
            "id": a.id,
            "kind": a.kind,
            "label": a.label,
            "color": list(label_color(a.label)),
            "confidence": None if a.confidence is None else round(a.confidence, 4),
            "similarity": None
            if cand is None or cand.similarity is None
            else round(cand.similarity, 4),
            "neighbours": cand.neighbours if cand is not None and a.kind == "detection" else [],
            "candidate": a.candidate_id if a.candidate_id in self._candidates else None,
            "example_ids": a.example_ids,
            "box": a.mask.box,
            "area": a.mask.area,
            "mask": a.mask.runs(),
        }

    def status(self) -> dict[str, Any]:
        """Diagnostics: the last prefetch, the embedding cache, the undo depth, the stages used."""
        with self.lock:
            emb = self._embedders.get(getattr(self.detector.embedder, "id", ""))
            cache = (
                None
                if emb is None
                else {"hits": emb.hits, "misses": emb.misses, "size": len(emb._cache)}
            )
            return {
                "library": self.library,
                "prefetch": dict(self.prefetch_status),
                "embedding_cache": cache,
                "undo": len(self._undo),
                "choices": dict(self.detector.choices),
            }

    # -- library ------------------------------------------------------------------------
    def _labels(self) -> dict[str, int]:
        try:
            return self.detector.store.labels(self.library)
        except LibraryNotFoundError:
            return {}

    def library_info(self) -> dict[str, Any]:
        """Libraries in the store; the current library's labels, counts and examples."""
        with self.lock:
            store = self.detector.store
            names = store.list_libraries()
            exists = self.library in names
            examples: list[dict[str, Any]] = []
            truncated = False
            meta = None
            if exists:
                meta = store.get_meta(self.library)
                for ids, _vecs, labs, pays in store.iter_examples(self.library):
                    for ex_id, lab, pay in zip(ids, labs, pays, strict=True):
                        examples.append(self._example_json(ex_id, lab, pay or {}))
                        if (pay or {}).get("mask_rle") and not self._thumb_path(self.library, ex_id).is_file():
                            # examples added outside the UI: their thumbnails are made on request
                            self._pending_thumbs[(self.library, ex_id)] = (dict(pay), lab)
                examples.sort(key=lambda e: e.get("added") or "", reverse=True)
                if len(examples) > self.limits.max_listed_examples:
                    examples, truncated = examples[: self.limits.max_listed_examples], True
            labels = self._labels()
            return {
                "library": self.library,
                "libraries": sorted(set(names) | {self.library}),
                "exists": exists,
                "labels": [
                    {"label": k, "count": v, "color": list(_color(k))} for k, v in labels.items()
                ],
                "count": sum(labels.values()),
                "examples": examples,
                "truncated": truncated,
                "embedder": meta.embedder_id if meta else None,
                "fade": meta.fade if meta else None,
                "store": getattr(store, "backend", type(store).__name__),
                "undo": len(self._undo),
            }

    def _example_json(self, ex_id: str, label: str, payload: dict[str, Any]) -> dict[str, Any]:
        source = payload.get("source")
        shown = None
        if source:
            try:
                shown = self.relative(Path(source))
            except (ValueError, OSError):
                shown = Path(source).name  # outside the served folder: the name only
        return {
            "id": ex_id,
            "label": label,
            "source": shown,
            "added": payload.get("added"),
            "thumbnail": self._thumb_path(self.library, ex_id).is_file()
            or bool(payload.get("mask_rle") and source),
        }

    def delete_example(self, ex_id: str) -> dict[str, Any]:
        """Delete one example of the current library (and its mark on the image)."""
        if not isinstance(ex_id, str) or not re.fullmatch(r"[A-Za-z0-9-]{1,64}", ex_id):
            raise AnnotationError(f"an example id is a UUID, got {_short(ex_id)}")
        with self.lock:
            from sam_detect.store import journal

            n = journal.delete(self.detector.store, self.library, ids=[ex_id])
            if n == 0:
                raise NotFoundError(f"example {ex_id!r} is not in library {self.library!r}")
            self.detector.refresh_profile()
            self._thumb_path(self.library, ex_id).unlink(missing_ok=True)
            for anns in self._annotations.get(self.library, {}).values():
                for a in list(anns):
                    if ex_id in a.example_ids:
                        a.example_ids = [i for i in a.example_ids if i != ex_id]
                        if not a.example_ids:
                            anns.remove(a)
            return {"deleted": ex_id, "labels": self._labels()}

    def switch_library(self, name: str) -> dict[str, Any]:
        """Make ``name`` the current library (it is created by the first accepted example)."""
        if not isinstance(name, str) or not _LIBRARY_NAME.match(name):
            raise AnnotationError(
                f"a library name is 1-64 letters, digits, '_', '.' or '-', starting with a letter or "
                f"digit; got {_short(name)}"
            )
        with self.lock:
            self.detector = self._detector_for(name)
            return self.library_info()

    def _detector_for(self, name: str) -> Any:
        """The session's detector for library ``name``: the given detector's store, segmenter
        and settings, its embedder wrapped in a :class:`CachingEmbedder` (one wrapper per
        embedder id, shared between libraries made with the same embedder)."""
        det = self._detectors.get(name)
        if det is None:
            from sam_detect.pipeline import SAMDetect

            base = self._base
            cfg = dataclasses.replace(base.config, library=name)
            try:
                meta = base.store.get_meta(name)
            except LibraryNotFoundError:
                meta = None
            same_as_base = name == base.config.library
            probe = base if same_as_base else SAMDetect(cfg, store=base.store)
            if meta is not None and not same_as_base and meta.embedder_id in self._embedders:
                inner_id = meta.embedder_id
            else:
                inner = probe.embedder  # loads the model (auto: the library's own embedder)
                inner_id = inner.id
                if inner_id not in self._embedders:
                    self._embedders[inner_id] = CachingEmbedder(inner)
            det = SAMDetect(
                cfg,
                store=base.store,
                segmenter=base.segmenter,
                embedder=self._embedders[inner_id],
                fade=base.fade if same_as_base else None,
            )
            det.choices.update(probe.choices)
            self._detectors[name] = det
        return det

    # -- thumbnails of examples ---------------------------------------------------------
    def _thumb_path(self, library: str, ex_id: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", library)
        if safe != library:
            safe += "-" + hashlib.sha1(library.encode()).hexdigest()[:8]
        return self.thumbnail_dir / safe / f"{ex_id}.png"

    def _save_thumbnail(
        self, rgb: np.ndarray, mask: _Mask, label: str, ex_id: str, library: str | None = None
    ) -> None:
        try:
            data = example_thumbnail(rgb, mask.full(), label)
            p = self._thumb_path(library or self.library, ex_id)
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(p)
        except OSError as e:  # a thumbnail is a convenience; the example is already stored
            log.warning("could not save the thumbnail of example %s: %s", ex_id, e)

    def example_thumbnail(self, ex_id: str) -> bytes:
        """The PNG thumbnail of an example of the current library."""
        if not isinstance(ex_id, str) or not re.fullmatch(r"[A-Za-z0-9-]{1,64}", ex_id):
            raise AnnotationError(f"an example id is a UUID, got {_short(ex_id)}")
        p = self._thumb_path(self.library, ex_id)
        if not p.is_file():
            self._thumbnail_from_payload(ex_id)
        return p.read_bytes()

    def _thumbnail_from_payload(self, ex_id: str) -> None:
        """Make (and keep) the thumbnail of an example added outside the UI (``sam-detect
        add``, an import) from its payload: the source image and the mask as COCO RLE.

        Without this the library panel showed such examples as label-only placeholders."""
        from sam_detect.io.images import load_image
        from sam_detect.masks import rle_to_mask

        with self.lock:
            payload, label = self._example_payload(ex_id)
            source, rle = payload.get("source"), payload.get("mask_rle")
            if not source or not rle:
                raise NotFoundError(f"example {ex_id!r} has no thumbnail and no mask to make one from")
            try:
                loaded = load_image(source)  # a stack needs its frame, which payloads do not record
                mask = rle_to_mask(rle)
            except (SamDetectError, ValueError, KeyError, TypeError) as e:
                raise NotFoundError(f"example {ex_id!r}: its source image cannot be read ({e})") from None
            if mask.shape != loaded.rgb.shape[:2] or not mask.any():
                raise NotFoundError(f"example {ex_id!r}: its mask does not fit its source image")
            self._save_thumbnail(loaded.rgb, _Mask.from_full(mask), label, ex_id)
            if not self._thumb_path(self.library, ex_id).is_file():
                raise NotFoundError(f"example {ex_id!r}: its thumbnail could not be saved")

    def _example_payload(self, ex_id: str) -> tuple[dict[str, Any], str]:
        pending = self._pending_thumbs.pop((self.library, ex_id), None)
        if pending is not None:
            return pending
        for ids, _vecs, labs, pays in self.detector.store.iter_examples(self.library):
            for i, lab, pay in zip(ids, labs, pays, strict=True):
                if i == ex_id:
                    return dict(pay or {}), lab
        raise NotFoundError(f"example {ex_id!r} is not in library {self.library!r}")

    # -- export -------------------------------------------------------------------------
    def export(self, rel: str, view: View, fmt: str) -> tuple[bytes, str, str]:
        """The image's objects (examples and detections, negatives left out) as a file.

        ``fmt``: ``coco`` (JSON, polygons), ``labelme`` (JSON) or ``labels`` (label image:
        16-bit PNG, ids 1..N in annotation order). Returns ``(data, media type, file name)``.
        """
        import json

        if fmt not in ("coco", "labelme", "labels"):
            raise AnnotationError(
                f"export format must be coco, labelme or labels, got {_short(fmt)}"
            )
        with self.lock:
            loaded = self.load(rel, view)
            anns = [
                a
                for a in self._annotations.get(self.library, {}).get((rel, view.frame), [])
                if a.kind != "negative"
            ]
            h, w = loaded.hw
            if anns:
                inst = _Mask.to_instances(
                    [a.mask for a in anns],
                    (h, w),
                    labels=[a.label for a in anns],
                    label_confidences=[1.0 if a.confidence is None else a.confidence for a in anns],
                )
            else:
                inst = Instances.empty((h, w))
            stem = Path(rel).stem + (f"_frame{view.frame}" if loaded.n_frames > 1 else "")
            image_name = Path(rel).name
            if fmt == "coco":
                import sam_detect.formats as A

                doc = A.to_coco(inst, [image_name])
                return json.dumps(doc).encode(), "application/json", f"{stem}_coco.json"
            if fmt == "labelme":
                import sam_detect.formats as A

                doc = A.to_labelme(inst, image_name)
                return (
                    json.dumps(doc, indent=1).encode(),
                    "application/json",
                    f"{stem}_labelme.json",
                )
            import sam_detect.formats as A

            lab = A.instances_to_label_image(
                inst, dtype=np.uint16 if len(inst) < 65535 else np.uint32
            )
            if lab.dtype == np.uint32:
                raise AnnotationError(f"{len(inst)} objects do not fit a 16-bit label PNG")
            return encode_png(lab), "image/png", f"{stem}_labels.png"

    # -- upload -------------------------------------------------------------------------
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
        base = _UPLOAD_NAME.sub("_", Path(str(filename)).name).lstrip("._") or "upload"
        stem, suffix = Path(base).stem[:80] or "upload", Path(base).suffix.lower()
        if suffix not in IMAGE_EXTENSIONS:
            raise ImageLoadError(
                f"{_short(filename)}: not an image file name (expected {', '.join(IMAGE_EXTENSIONS)})"
            )
        folder = self.root / "uploads"
        with self.lock:
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
                self._check_pixels(tmp)
                loaded = load_image(tmp, frame=0)
            except SamDetectError as e:
                tmp.unlink(missing_ok=True)
                msg = str(e).replace(str(tmp), _short(filename))
                raise type(e)(msg) from e
            except Exception:
                tmp.unlink(missing_ok=True)
                raise
            tmp.replace(target)
            h, w = loaded.hw
        return {"path": self.relative(target), "width": w, "height": h, "bytes": len(data)}


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
def _color(label: str) -> tuple[int, int, int]:
    from sam_detect.outputs import label_color

    return label_color(label)


def _peek_hw(path: Path) -> tuple[int, int] | None:
    """``(height, width)`` from the file header without decoding pixels; ``None`` if unknown."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                if not tif.series:
                    return None
                s = tif.series[0]
                axes = s.axes.upper()
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


def example_thumbnail(rgb: np.ndarray, mask: np.ndarray, label: str, size: int = 72) -> bytes:
    """A small PNG of an example: its box with a margin, the mask outlined in the label's colour.

    Args:
        rgb: ``(H, W, 3)`` uint8. mask: ``(H, W)`` bool, not empty. size: longest side.
    """
    import cv2

    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = max(y1 - y0, x1 - x0)
    pad = max(4, side // 4)
    h, w = mask.shape
    y0, y1, x0, x1 = max(0, y0 - pad), min(h, y1 + pad), max(0, x0 - pad), min(w, x1 + pad)
    crop = np.ascontiguousarray(rgb[y0:y1, x0:x1])
    m = mask[y0:y1, x0:x1].astype(np.uint8)
    s = size / max(crop.shape[:2])
    nh, nw = max(1, round(crop.shape[0] * s)), max(1, round(crop.shape[1] * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_NEAREST
    crop = cv2.resize(crop, (nw, nh), interpolation=interp)
    m = cv2.resize(m, (nw, nh), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(crop, contours, -1, _color(label), 1)
    return encode_png(crop)


__all__ = [
    "AnnotationSession",
    "LimitError",
    "NotFoundError",
    "PathNotAllowedError",
    "UILimits",
    "View",
    "example_thumbnail",
    "mask_to_runs",
    "runs_to_mask",
]
