"""Frame sources: one capture interface over video files, cameras, streams, image folders
and multi-frame TIFF stacks.

Every source is an iterable of :class:`Frame` (RGB uint8 plus its index and time) and a
context manager that releases the device or file. :func:`open_source` picks the source
from a command-line string:

======================================  ===========================================
``"0"``, ``"1"``, ``"/dev/video0"``     camera (live)
``"rtsp://..."``, ``"http://..."`` ...  network stream (live)
``"frames/"``, ``"frames/*.png"``       folder or glob of images, in sorted order
``"stack.tif"``                         multi-frame TIFF (time-lapse, Z-stack)
any other file                          video file read with OpenCV (MP4, AVI, MKV...)
======================================  ===========================================

Live sources (cameras, streams) reconnect a few times when reads fail and then end the
stream cleanly, with a warning; file sources skip a frame that cannot be decoded and stop at
the end of the readable data (a truncated file ends early, it does not raise).

Frame indices are 0-based positions in the source (a video's frame number, a stack's
T/Z index, an image's position in the sorted list); a :class:`FrameSelection` such as
``"0-2,4-7"`` keeps some of them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np

from sam_detect.errors import ImageLoadError

log = logging.getLogger("sam_detect.video")

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt", "rtp", "mms")
VIDEO_EXTENSIONS = (
    ".mp4",
    ".avi",
    ".mkv",
    ".mov",
    ".m4v",
    ".webm",
    ".mpg",
    ".mpeg",
    ".wmv",
    ".flv",
)
STACK_EXTENSIONS = (".tif", ".tiff")


@dataclass
class Frame:
    """One frame of a source.

    Attributes:
        index: 0-based position in the source (video frame number, stack T/Z index,
            image position, or the running count of a live source).
        rgb: ``(H, W, 3)`` uint8 RGB.
        time: media time in seconds (video position, ``index / fps``), seconds since the
            start for live sources, or ``None`` when the source has no clock.
        captured_at: ``perf_counter()`` when the frame was read; latency is measured
            from it.
        original: the frame as read when it differs from ``rgb`` (a 16-bit stack plane),
            else ``None``.
        name: where it came from (an image path, ``"video.mp4#12"``), for records.
    """

    index: int
    rgb: np.ndarray
    time: float | None = None
    captured_at: float = field(default_factory=perf_counter)
    original: np.ndarray | None = None
    name: str | None = None

    @property
    def hw(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])


# ---------------------------------------------------------------------------------------
# frame selection
# ---------------------------------------------------------------------------------------
_RANGE = re.compile(r"^\s*(\d+)?\s*(?:(-)\s*(\d+)?)?\s*(?::\s*(\d+))?\s*$")


@dataclass(frozen=True)
class FrameSelection:
    """Frame indices to keep: inclusive ranges ``(start, stop or None, step)``, 0-based.

    Built by :func:`parse_frames` from text such as ``"0-2,4-7"``, ``"10-"`` (10 to the
    end), ``"0-99:5"`` (every fifth) or ``"3"``.
    """

    ranges: tuple[tuple[int, int | None, int], ...]
    text: str = ""

    def __contains__(self, index: int) -> bool:
        for start, stop, step in self.ranges:
            if index >= start and (stop is None or index <= stop) and (index - start) % step == 0:
                return True
        return False

    @property
    def last(self) -> int | None:
        """The largest selected index, or ``None`` when a range is open-ended."""
        if any(stop is None for _, stop, _ in self.ranges):
            return None
        return max(stop for _, stop, _ in self.ranges)

    def indices(self, n_frames: int) -> list[int]:
        """Selected indices of a source of ``n_frames`` frames, sorted, without duplicates.

        Raises:
            ImageLoadError: a range starts or ends past the last frame.
        """
        for start, stop, _ in self.ranges:
            bad = (
                start
                if start >= n_frames
                else stop
                if stop is not None and stop >= n_frames
                else None
            )
            if bad is not None:
                raise ImageLoadError(
                    f"frame {bad} is out of range: the source has {n_frames} frames "
                    f"(0-{n_frames - 1}); fix --frames {self.text!r}"
                )
        return [i for i in range(n_frames) if i in self]


def parse_frames(text: str | Sequence[int] | None) -> FrameSelection | None:
    """Parse a frame selection such as ``"0-2,4-7"`` (0-based, inclusive ranges).

    Items are separated by commas: ``N`` (one frame), ``A-B`` (A to B inclusive), ``A-``
    (A to the end), ``-B`` (0 to B), each optionally followed by ``:STEP``. A sequence of
    ints selects those frames. ``None`` or ``""`` selects everything (returns ``None``).

    Raises:
        ValueError: malformed text, a range whose end is before its start, a zero step.
    """
    if text is None:
        return None
    if not isinstance(text, str):
        idx = sorted({int(i) for i in text})
        if any(i < 0 for i in idx):
            raise ValueError(f"frame indices must be >= 0, got {idx}")
        return FrameSelection(tuple((i, i, 1) for i in idx), ",".join(map(str, idx)))
    if not text.strip():
        return None
    ranges = []
    for item in text.split(","):
        m = _RANGE.match(item)
        if not item.strip() or m is None or (m.group(1) is None and m.group(3) is None):
            raise ValueError(
                f"bad frame range {item.strip()!r} in {text!r}: expected e.g. '0-2,4-7', '10-', "
                "'0-99:5' or '3' (0-based, inclusive)"
            )
        start = int(m.group(1)) if m.group(1) is not None else 0
        stop = (int(m.group(3)) if m.group(3) is not None else None) if m.group(2) else start
        step = int(m.group(4)) if m.group(4) is not None else 1
        if step < 1:
            raise ValueError(f"bad frame range {item.strip()!r}: the step must be >= 1")
        if stop is not None and stop < start:
            raise ValueError(f"bad frame range {item.strip()!r}: it ends before it starts")
        ranges.append((start, stop, step))
    return FrameSelection(tuple(ranges), text.strip())


# ---------------------------------------------------------------------------------------
# sources
# ---------------------------------------------------------------------------------------
class FrameSource:
    """Base of every source: iterate for :class:`Frame` objects; close to release.

    Attributes:
        name: what is being read (path, URL, ``camera 0``).
        live: frames arrive in real time (camera, stream): a slow consumer should drop
            frames rather than fall behind.
        fps: frames per second of the source, or ``None`` when unknown.
        frame_count: number of frames that will be yielded, or ``None`` when unknown.
    """

    name: str = "frames"
    live: bool = False
    fps: float | None = None
    frame_count: int | None = None

    def __init__(self) -> None:
        #: frames that could not be read or decoded and were skipped
        self.failed = 0
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the file or device; iteration stops at the next frame."""
        self._closed.set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "live" if self.live else "file"
        return f"{type(self).__name__}({self.name!r}, {kind}, fps={self.fps}, frames={self.frame_count})"


class CaptureSource(FrameSource):
    """Frames from OpenCV's ``VideoCapture``: a video file, a camera or a stream URL.

    Args:
        target: a file path, a camera index (``0``), a device path (``/dev/video0``) or a
            stream URL.
        live: ``True`` for cameras and streams (reconnect on failure; time is wall clock),
            ``False`` for files (time is the media position). Default: ``True`` for camera
            indices, device paths and URLs.
        frames: keep only these frame indices (see :func:`parse_frames`).
        reconnect: live sources: how many times to reopen the capture after reads fail.
        retry_delay: seconds between reconnection attempts (doubled each time).
        max_bad_frames: consecutive frames that fail to decode before a file source is
            considered to have ended (a truncated file).
        capture_factory: ``target -> cv2.VideoCapture``-like object (``read``, ``grab``,
            ``get``, ``isOpened``, ``release``); replaces OpenCV, e.g. in tests.

    Raises:
        ImageLoadError: the file does not exist or the capture cannot be opened.
    """

    def __init__(
        self,
        target: str | int | os.PathLike,
        *,
        live: bool | None = None,
        frames: FrameSelection | str | None = None,
        reconnect: int = 3,
        retry_delay: float = 0.5,
        max_bad_frames: int = 5,
        capture_factory: Callable[[Any], Any] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(target, os.PathLike):
            target = os.fspath(target)
        is_device = isinstance(target, int) or (isinstance(target, str) and _is_device(target))
        is_url = isinstance(target, str) and _is_url(target)
        if isinstance(target, str) and not (is_device or is_url) and not Path(target).is_file():
            raise ImageLoadError(f"{target}: no such video file")
        self.target = target
        # cameras and streams come back after a glitch; a file read as a live source ends
        self._reconnectable = bool(is_device or is_url)
        self.live = bool(is_device or is_url) if live is None else bool(live)
        self.name = f"camera {target}" if isinstance(target, int) else str(target)
        self.selection = (
            frames if isinstance(frames, FrameSelection) or frames is None else parse_frames(frames)
        )
        self.reconnect = int(reconnect)
        self.retry_delay = float(retry_delay)
        self.max_bad_frames = int(max_bad_frames)
        self._factory = capture_factory or _opencv_capture
        self._cap = self._open()
        fps = float(self._cap.get(_CAP_PROP_FPS) or 0)
        self.fps = fps if 0 < fps < 1000 else None
        count = int(self._cap.get(_CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = None if self.live or count <= 0 else count
        if self.frame_count is not None and self.selection is not None:
            self.frame_count = len(self.selection.indices(self.frame_count))

    def _open(self):
        cap = self._factory(self.target)
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            what = (
                "camera"
                if isinstance(self.target, int) or _is_device(str(self.target))
                else ("stream" if _is_url(str(self.target)) else "video file")
            )
            hint = {
                "camera": "check that it is connected and not used by another program",
                "stream": "check the URL and that the server is reachable",
                "video file": "the file may be truncated, corrupt or in a codec OpenCV cannot decode",
            }[what]
            raise ImageLoadError(f"{self.target}: cannot open {what}; {hint}")
        return cap

    def __iter__(self) -> Iterator[Frame]:
        index = -1
        bad = 0
        t0 = perf_counter()
        last = self.selection.last if self.selection is not None else None
        while not self.closed:
            index += 1
            if last is not None and index > last:
                return
            wanted = self.selection is None or index in self.selection
            if not wanted and not self.live:
                if not self._cap.grab() and not self._recover(
                    index, "skip"
                ):  # skip without decoding
                    return
                continue
            ok, bgr = self._read()
            if not ok or bgr is None:
                if self.closed:
                    return
                if self._reconnectable:
                    if not self._reconnect():
                        return
                    index -= 1
                    continue
                if not self._more_frames(index):
                    return  # the end of the file (or of its readable part)
                bad += 1
                self.failed += 1
                if bad >= self.max_bad_frames:
                    log.warning(
                        "%s: %d frames in a row could not be decoded at frame %d; stopping "
                        "(truncated or corrupt file?)",
                        self.name,
                        bad,
                        index,
                    )
                    return
                log.warning("%s: frame %d could not be decoded; skipped", self.name, index)
                continue
            bad = 0
            if not wanted:
                continue
            rgb = _bgr_to_rgb(bgr)
            if rgb is None:
                self.failed += 1
                log.warning(
                    "%s: frame %d has an unexpected shape %s; skipped",
                    self.name,
                    index,
                    getattr(bgr, "shape", None),
                )
                continue
            now = perf_counter()
            if self.live:
                t = now - t0
            else:
                pos = float(self._cap.get(_CAP_PROP_POS_MSEC) or 0) / 1000.0
                t = index / self.fps if self.fps else (pos if pos > 0 else None)
            yield Frame(index=index, rgb=rgb, time=t, captured_at=now, name=f"{self.name}#{index}")

    def _read(self) -> tuple[bool, Any]:
        try:
            return self._cap.read()
        except Exception as e:  # a driver error on one frame must not end the session
            log.warning("%s: read failed: %s", self.name, e)
            return False, None

    def _more_frames(self, index: int) -> bool:
        """Does the container say there are frames after ``index`` (a decode failure, not the end)?"""
        count = int(self._cap.get(_CAP_PROP_FRAME_COUNT) or 0)
        return count > 0 and index < count - 1

    def _recover(self, index: int, what: str) -> bool:
        if self._more_frames(index):
            self.failed += 1
            log.warning("%s: frame %d could not be read (%s); skipped", self.name, index, what)
            return True
        return False

    def _reconnect(self) -> bool:
        """Reopen a live capture after a failed read; ``False`` when it stays gone."""
        delay = self.retry_delay
        for attempt in range(1, self.reconnect + 1):
            log.warning(
                "%s: no frame; reconnecting (attempt %d of %d)", self.name, attempt, self.reconnect
            )
            self.failed += 1
            with contextlib.suppress(Exception):  # releasing a dead device may itself fail
                self._cap.release()
            if self._closed.wait(delay):
                return False
            delay *= 2
            try:
                self._cap = self._open()
            except ImageLoadError:
                continue
            ok, _ = self._read()
            if ok:
                return True
        log.warning(
            "%s: the source is gone after %d reconnection attempts; ending the stream",
            self.name,
            self.reconnect,
        )
        return False

    def close(self) -> None:
        super().close()
        cap, self._cap = getattr(self, "_cap", None), None
        if cap is not None:
            with contextlib.suppress(Exception):
                cap.release()
            self._cap = _ClosedCapture()


class ImageFolderSource(FrameSource):
    """Frames from image files: a folder (sorted), a glob, or a list of paths.

    Each image is loaded with :func:`sam_detect.io.images.load_image` (any dtype and channel
    layout, rendered as RGB uint8); an unreadable file is logged and skipped.

    Args:
        inputs: folder, glob, file, or a sequence of them.
        frames: keep only these positions in the sorted list.
        fps: frame rate to assume (sets ``Frame.time``); ``None``: no clock.
        channel: channel(s) of multi-channel images to use (see ``load_image``).
    """

    def __init__(
        self,
        inputs: str | os.PathLike | Sequence[str | os.PathLike],
        *,
        frames: FrameSelection | str | None = None,
        fps: float | None = None,
        channel: int | Sequence[int] | None = None,
    ) -> None:
        from sam_detect.io.images import iter_image_paths

        super().__init__()
        self.paths = iter_image_paths(inputs)
        sel = (
            frames if isinstance(frames, FrameSelection) or frames is None else parse_frames(frames)
        )
        self.indices = (
            sel.indices(len(self.paths)) if sel is not None else list(range(len(self.paths)))
        )
        self.name = (
            os.fspath(inputs)
            if isinstance(inputs, (str, os.PathLike))
            else f"{len(self.paths)} images"
        )
        self.fps = fps
        self.channel = channel
        self.frame_count = len(self.indices)

    def __iter__(self) -> Iterator[Frame]:
        from sam_detect.io.images import load_image

        for i in self.indices:
            if self.closed:
                return
            path = self.paths[i]
            try:
                loaded = load_image(path, channel=self.channel, frame=None)
            except ImageLoadError as e:
                if "holds a stack" in str(e):
                    loaded = load_image(path, channel=self.channel, frame=0)
                else:
                    self.failed += 1
                    log.warning("%s (skipped)", e)
                    continue
            original = None if loaded.original.dtype == np.uint8 else loaded.original
            yield Frame(
                index=i,
                rgb=loaded.rgb,
                time=i / self.fps if self.fps else None,
                original=original,
                name=str(path),
            )


class StackSource(FrameSource):
    """Frames of a multi-frame image (TIFF time-lapse or Z-stack; several frame axes are
    flattened in file order, as in :func:`sam_detect.io.images.read_stack`).

    Each plane is scaled to RGB uint8 on its own (percentiles 1 and 99.8 for non-uint8
    data); ``Frame.original`` keeps the plane as read.

    Args:
        path: the stack file.
        frames: keep only these T/Z indices, e.g. ``"0-2,4-7"``.
        fps: frame rate to assume (sets ``Frame.time``); ``None``: no clock.
        channel: channel(s) of a multi-channel stack to use.

    Raises:
        ImageLoadError: unreadable file, or a selection past the last frame.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        frames: FrameSelection | str | None = None,
        fps: float | None = None,
        channel: int | Sequence[int] | None = None,
    ) -> None:
        from sam_detect.io.images import read_stack

        super().__init__()
        self.path = Path(path)
        self.stack, self.axes = read_stack(self.path)
        sel = (
            frames if isinstance(frames, FrameSelection) or frames is None else parse_frames(frames)
        )
        n = int(self.stack.shape[0])
        self.indices = sel.indices(n) if sel is not None else list(range(n))
        self.name = str(self.path)
        self.fps = fps
        self.channel = channel
        self.frame_count = len(self.indices)

    def __iter__(self) -> Iterator[Frame]:
        from sam_detect.io.images import to_rgb_uint8

        channel_axis = -1 if self.axes.endswith("C") else None
        for i in self.indices:
            if self.closed:
                return
            plane = self.stack[i]
            try:
                rgb = to_rgb_uint8(plane, channel=self.channel, channel_axis=channel_axis)
            except ImageLoadError as e:
                self.failed += 1
                log.warning("%s: frame %d: %s (skipped)", self.name, i, e)
                continue
            original = None if plane.dtype == np.uint8 and plane.ndim == 3 else plane
            yield Frame(
                index=i,
                rgb=rgb,
                time=i / self.fps if self.fps else None,
                original=original,
                name=f"{self.name}#{i}",
            )


class ArraySource(FrameSource):
    """Frames from an iterable of arrays (any dtype), ``LoadedImage`` objects, paths or
    :class:`Frame` objects: what :func:`~sam_detect.video.runner.detect_stream` wraps
    plain Python iterables in.
    """

    def __init__(self, items: Any, *, live: bool = False, fps: float | None = None) -> None:
        super().__init__()
        self.items = items
        self.live = live
        self.fps = fps
        self.name = type(items).__name__
        try:
            self.frame_count = len(items)
        except TypeError:
            self.frame_count = None

    def __iter__(self) -> Iterator[Frame]:
        from sam_detect.io.images import LoadedImage, load_image, to_rgb_uint8

        for i, item in enumerate(self.items):
            if self.closed:
                return
            if isinstance(item, Frame):
                yield item
                continue
            try:
                if isinstance(item, LoadedImage):
                    rgb, original, name = item.rgb, item.original, item.path
                elif isinstance(item, (str, os.PathLike)):
                    loaded = load_image(item)
                    rgb, original, name = loaded.rgb, loaded.original, str(item)
                else:
                    original = np.asarray(item)
                    rgb, name = to_rgb_uint8(original), None
            except ImageLoadError as e:
                self.failed += 1
                log.warning("frame %d: %s (skipped)", i, e)
                continue
            if original is not None and original.dtype == np.uint8 and original.ndim == 3:
                original = None
            yield Frame(
                index=i,
                rgb=rgb,
                time=i / self.fps if self.fps else None,
                original=original,
                name=name,
            )


def open_source(
    spec: str | int | os.PathLike,
    *,
    frames: FrameSelection | str | None = None,
    live: bool | None = None,
    fps: float | None = None,
    channel: int | Sequence[int] | None = None,
) -> FrameSource:
    """Open the source that ``spec`` names (see the module docstring for the forms).

    Args:
        spec: camera index or device path, stream URL, folder, glob, TIFF stack or video file.
        frames: keep only these frame indices, e.g. ``"0-2,4-7"`` (0-based, inclusive).
        live: override live/file behaviour (a file read as a live source drops frames when
            the consumer is slow, as a camera would; used to test the camera path).
        fps: frame rate of image folders and stacks, which carry none.
        channel: channel(s) of multi-channel images and stacks.

    Raises:
        ImageLoadError: nothing exists at ``spec``, or it cannot be opened.
    """
    if isinstance(spec, int):
        return CaptureSource(spec, live=True if live is None else live, frames=frames)
    s = os.fspath(spec)
    if re.fullmatch(r"\d+", s.strip()):
        return CaptureSource(int(s), live=True if live is None else live, frames=frames)
    if _is_url(s) or _is_device(s):
        return CaptureSource(s, live=live, frames=frames)
    p = Path(s)
    if p.is_dir() or (not p.exists() and any(c in s for c in "*?[")):
        src: FrameSource = ImageFolderSource(s, frames=frames, fps=fps, channel=channel)
    elif not p.exists():
        raise ImageLoadError(
            f"{s}: no such file, folder or camera; expected a video file, an image folder or "
            "glob, a TIFF stack, a camera index such as 0, or a stream URL"
        )
    elif p.suffix.lower() in STACK_EXTENSIONS:
        src = StackSource(p, frames=frames, fps=fps, channel=channel)
    elif p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp"):
        src = ImageFolderSource(p, frames=frames, fps=fps, channel=channel)
    else:
        return CaptureSource(p, live=live, frames=frames)
    if live:
        src.live = True
    return src


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
_CAP_PROP_POS_MSEC = 0
_CAP_PROP_FPS = 5
_CAP_PROP_FRAME_COUNT = 7


class _ClosedCapture:
    """Stands in for a released capture so that a racing reader sees 'no frame'."""

    def read(self):
        return False, None

    def grab(self):
        return False

    def get(self, prop):
        return 0

    def isOpened(self):  # noqa: N802 (OpenCV's name)
        return False

    def release(self):
        pass


def _opencv_capture(target: Any):
    import cv2

    return cv2.VideoCapture(target)


def _is_url(s: str) -> bool:
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", s)
    return bool(m) and m.group(1).lower() in STREAM_SCHEMES


def _is_device(s: str) -> bool:
    return bool(re.fullmatch(r"/dev/video\d+", s))


def _bgr_to_rgb(bgr: Any) -> np.ndarray | None:
    arr = np.asarray(bgr)
    if arr.ndim == 2:
        return np.ascontiguousarray(np.repeat(arr[..., None], 3, axis=2)).astype(
            np.uint8, copy=False
        )
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.size == 0:
        return None
    rgb = arr[..., 2::-1] if arr.shape[2] == 3 else arr[..., [2, 1, 0]]
    if rgb.dtype != np.uint8:
        from sam_detect.io.images import to_rgb_uint8

        return to_rgb_uint8(np.ascontiguousarray(rgb))
    return np.ascontiguousarray(rgb)
