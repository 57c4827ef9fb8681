"""Video outputs: an annotated video file, JSON lines per frame, a label stack, and a live window.

The writers are context managers that finalise their file on ``close()`` — called from a
``finally`` in the loop, so Ctrl-C and the end of the stream leave a playable video, a
complete JSON-lines file and a label stack of the frames handled. JSON lines are flushed after every record, so a crash loses at
most the line being written.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import IO, Any

import numpy as np

from sam_detect.errors import SamDetectError
from sam_detect.instances import Instances

# container extension -> OpenCV FOURCC codes to try, best first
_FOURCC = {
    ".mp4": ("mp4v", "avc1"),
    ".m4v": ("mp4v",),
    ".mov": ("mp4v",),
    ".avi": ("MJPG", "XVID"),
    ".mkv": ("mp4v", "XVID", "MJPG"),
}


#: the slowest frame rate OpenCV's encoders open a file at (MPEG-4 and MJPG: 0.01; at 0.001,
#: "The encoder timebase is not set", and `video --fps 0.001 -o out.mp4` said "try another extension")
MIN_FPS = 0.01


class VideoWriter:
    """Write RGB frames to a video file (MP4, AVI, MKV, MOV) with OpenCV.

    The file is opened on the first frame (its size sets the video size; later frames of
    another size are resized to it) and finalised by :meth:`close`.

    Args:
        path: output file; the extension chooses the container.
        fps: frame rate written into the file.
        fourcc: a four-letter codec code; default by extension (MP4: ``mp4v``, AVI: ``MJPG``).

    Raises:
        SamDetectError: unsupported extension, or OpenCV cannot open the file for writing.
    """

    def __init__(self, path: str | os.PathLike, fps: float, *, fourcc: str | None = None) -> None:
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if fourcc is None and ext not in _FOURCC:
            raise SamDetectError(
                f"cannot write video {self.path}: unknown extension {ext or '(none)'!r}; "
                f"use one of {', '.join(sorted(_FOURCC))}"
            )
        if not self.path.parent.exists():
            raise SamDetectError(
                f"cannot write video {self.path}: folder {self.path.parent} does not exist"
            )
        if not fps or fps <= 0:
            raise SamDetectError(f"video frame rate must be > 0, got {fps}")
        self.fps = float(fps)
        if self.fps < MIN_FPS:  # a slow time-lapse's rate (--fps 0.002: a frame every 8 min) opens no file
            import logging

            logging.getLogger("sam_detect").warning(
                "%s: written at %g frames per second, the slowest a video file plays at (the source's rate, %g, "
                "would open none); the JSON lines keep the source's times", self.path.name, MIN_FPS, self.fps)
            self.fps = MIN_FPS
        self.codes = (fourcc,) if fourcc else _FOURCC[ext]
        self.frames = 0
        self.size_wh: tuple[int, int] | None = None
        self._writer = None

    def _open(self, w: int, h: int) -> None:
        import cv2

        for code in self.codes:
            writer = cv2.VideoWriter(
                str(self.path), cv2.VideoWriter_fourcc(*code), self.fps, (w, h)
            )
            if writer.isOpened():
                self._writer = writer
                self.size_wh = (w, h)
                self.fourcc = code
                return
            writer.release()
        raise SamDetectError(
            f"cannot write video {self.path}: OpenCV could not open it with codec(s) "
            f"{', '.join(self.codes)}; try another extension (.avi uses MJPG)"
        )

    def write(self, rgb: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 RGB frame."""
        import cv2

        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {rgb.shape} {rgb.dtype}")
        h, w = rgb.shape[:2]
        if self._writer is None:
            self._open(w, h)
        if (w, h) != self.size_wh:
            rgb = cv2.resize(rgb, self.size_wh, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        """Finalise the file (writes the container index); safe to call twice."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.release()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class JsonlWriter:
    """Write one JSON object per line to a file (or ``"-"``: stdout), flushed every line. A
    file is opened at the first record: a run that detects no frame leaves none (and an
    older file of that name as it was)."""

    def __init__(self, target: str | os.PathLike | IO[str]) -> None:
        self.lines = 0
        self._fh: IO[str] | None
        if isinstance(target, (str, os.PathLike)) and os.fspath(target) == "-":
            self._fh, self._owns = sys.stdout, False
            self.path = None
        elif isinstance(target, (str, os.PathLike)):
            self.path = Path(target)
            if not self.path.parent.exists():
                raise SamDetectError(
                    f"cannot write {self.path}: folder {self.path.parent} does not exist"
                )
            self._fh, self._owns = None, True
        else:
            self._fh, self._owns, self.path = target, False, None

    def write(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            self._fh = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self._fh.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._fh.flush()
        self.lines += 1

    def close(self) -> None:
        if self._owns and self._fh is not None and not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


#: what ``LabelStackWriter`` writes: a TIFF stack or a NumPy array
LABEL_STACK_SUFFIXES = (".tif", ".tiff", ".npy")


class LabelStackWriter:
    """Write each frame's objects as one plane of a ``(T, H, W)`` label stack, for the tools
    that measure and track (napari, Fiji, TrackMate, the Cell Tracking Challenge's measures).

    An object's value is its track id, so one object keeps its value from frame to frame
    (without tracking: its place in the frame's record plus one); 0 is background; where masks
    overlap, the smaller object. Planes go to a raw file beside the target as they come (one
    frame in memory); :meth:`close` writes the stack, a zlib-compressed TIFF or a ``.npy``, as
    ``uint16`` or, where a value needs it, ``uint32``, and removes the raw file. So the end of
    the stream, an error or Ctrl-C leaves the stack of every frame handled. A TIFF says its
    axes, ``TYX`` (ImageJ's, so that Fiji and TrackMate read time points, not z-slices), and
    each plane's source frame (``frame K`` as its ImageJ slice label).

    Raises:
        SamDetectError: an unknown suffix or a missing folder (at once), or a frame of
            another size than the first (a stack holds frames of one size).
    """

    def __init__(self, path: str | os.PathLike, classes: list[str] | None = None) -> None:
        self.path = Path(path)
        #: a type stack: each object's value is its class's place in ``classes`` plus one
        self.classes = None if classes is None else {str(c): k for k, c in enumerate(classes, 1)}
        if self.path.suffix.lower() not in LABEL_STACK_SUFFIXES:
            raise SamDetectError(
                f"cannot write a label stack as {self.path.suffix or 'a file without extension'!r} "
                f"({self.path.name}); use one of {', '.join(LABEL_STACK_SUFFIXES)}"
            )
        if not self.path.parent.exists():
            raise SamDetectError(f"cannot write {self.path}: folder {self.path.parent} does not exist")
        self.frames = 0
        self.indices: list[int | None] = []  # each plane's frame in the source
        self.hw: tuple[int, int] | None = None
        self.top = 0  # the largest value written
        self._part = self.path.with_name(f".{self.path.name}.part")
        self._fh: IO[bytes] | None = None

    def write(self, instances: Instances | None, hw: tuple[int, int], index: int | None = None) -> None:
        """Append the plane of ``instances`` on a frame of ``hw`` = (height, width); ``index``:
        the frame's place in the source (``--frames 3-5`` writes frames 3, 4 and 5 as planes 0-2)."""
        hw = (int(hw[0]), int(hw[1]))
        if self.hw is None:
            self.hw = hw
            self._fh = open(self._part, "wb")  # noqa: SIM115 - closed by close()
        elif hw != self.hw:
            raise SamDetectError(
                f"cannot add a {hw[1]} x {hw[0]} frame to the label stack {self.path.name}, whose "
                f"frames are {self.hw[1]} x {self.hw[0]}: a stack holds frames of one size "
                f"(its {self.frames} frames so far are kept)"
            )
        if instances is None or not len(instances):
            plane = np.zeros(hw, np.uint32)
        else:
            if self.classes is not None:  # by class, as detect --type-map numbers them
                values = np.array([self.classes.get(str(lab), 0) for lab in instances.labels], np.int64)
            else:
                tids = instances.data.get("track_id")
                values = None if tids is None else np.asarray(tids)
            plane = instances.to_label_image(np.uint32, values=values)
            self.top = max(self.top, int(plane.max()))
        self._fh.write(plane.tobytes())
        self.frames += 1
        self.indices.append(None if index is None else int(index))

    def close(self) -> None:
        """Write the stack of the frames so far (none: no file); safe to call twice."""
        fh, self._fh = self._fh, None
        if fh is None:
            return
        fh.close()
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            raw = np.memmap(self._part, np.uint32, "r", shape=(self.frames, *self.hw))
            dtype = np.uint16 if self.top < 2**16 else np.uint32
            if self.path.suffix.lower() == ".npy":
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=raw.shape)
                for t in range(self.frames):
                    out[t] = raw[t]
                out.flush()
                del out
            else:
                import tifffile

                labels = [f"frame {k}" if k is not None else f"plane {t}" for t, k in enumerate(self.indices)]
                # ImageJ's hyperstack metadata holds 8- and 16-bit values: a uint32 stack says its axes as tifffile does
                # (and one of one frame, which ImageJ's reads would give back without its T axis)
                meta = ({"imagej": True, "metadata": {"axes": "TYX", "Labels": labels}}
                        if dtype == np.uint16 and self.frames > 1
                        else {"metadata": {"axes": "TYX", "frames": [k for k in self.indices if k is not None]}})
                tifffile.imwrite(tmp, (raw[t].astype(dtype) for t in range(self.frames)), shape=raw.shape,
                                 dtype=dtype, photometric="minisblack", compression="zlib", **meta)
            del raw
            os.replace(tmp, self.path)
        finally:
            self._part.unlink(missing_ok=True)
            tmp.unlink(missing_ok=True)  # a write that failed half-way

    def __enter__(self) -> LabelStackWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def display_problem() -> str | None:
    """Why a live window cannot be shown here, or ``None`` when it can."""
    import cv2

    info = cv2.getBuildInformation()
    gui = next(
        (
            line.split(":", 1)[1].strip()
            for line in info.splitlines()
            if line.strip().startswith("GUI:")
        ),
        "",
    )
    if gui.upper() == "NONE":
        return (
            "this OpenCV build has no GUI support (opencv-python-headless); install "
            "opencv-python for --show, or write the result with --output out.mp4"
        )
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return (
            "no display found (DISPLAY is not set); write the result with --output out.mp4 instead"
        )
    return None


class Window:
    """A live OpenCV window; :meth:`show` returns ``False`` when the user presses q or Esc."""

    def __init__(self, title: str = "sam-detect") -> None:
        problem = display_problem()
        if problem:
            raise SamDetectError(f"cannot show a window: {problem}")
        self.title = title

    def show(self, rgb: np.ndarray) -> bool:
        import cv2

        try:
            cv2.imshow(self.title, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            key = cv2.waitKey(1) & 0xFF
        except cv2.error as e:
            raise SamDetectError(
                f"cannot show a window ({e.msg.strip() if hasattr(e, 'msg') else e}); "
                "write the result with --output out.mp4 instead"
            ) from e
        return key not in (ord("q"), 27)

    def close(self) -> None:
        import cv2

        with contextlib.suppress(cv2.error):
            cv2.destroyWindow(self.title)


def draw_annotations(
    rgb: np.ndarray,
    instances: Instances | None,
    *,
    hud: str | None = None,
    alpha: float = 0.45,
) -> np.ndarray:
    """``rgb`` ``(H, W, 3)`` uint8 with masks, outlines and boxes coloured by label, a caption
    ``label conf #track`` per object, and an optional status line (``hud``) at the top left;
    a dim frame brightened (:func:`~sam_detect.outputs.for_display`).
    """

    from sam_detect.outputs import draw_text, for_display, label_color, render_overlay

    rgb = for_display(rgb)  # a dim frame brightened with or without objects on it
    if instances is None or len(instances) == 0:
        out = np.ascontiguousarray(rgb.copy())
    else:
        out = render_overlay(rgb, instances, alpha=alpha, text=False, stretch=False)
        tids = instances.data.get("track_id")
        scale = max(0.35, min(out.shape[:2]) / 1500)
        for i in range(len(instances)):
            color = label_color(instances.labels[i])
            x1, y1 = (int(round(v)) for v in instances.boxes[i][:2])
            caption = f"{instances.labels[i]} {instances.label_confidences[i]:.2f}"
            if tids is not None:
                caption += f" #{int(tids[i])}"
            draw_text(out, caption, (x1, max(y1 - 3, 10)), scale, color)
    if hud:
        scale = max(0.4, min(out.shape[:2]) / 1200)
        draw_text(out, hud, (4, int(16 * scale / 0.4)), scale, (255, 255, 255))
    return out
