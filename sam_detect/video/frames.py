"""A frame, a selection of frame indices (``"0-2,4-7"``) and the source interface every
frame source implements (:mod:`sam_detect.video.sources`, :mod:`sam_detect.video.capture`)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

import numpy as np

from sam_detect.errors import ImageLoadError


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
        """Selected indices of a source of ``n_frames`` frames, sorted, without duplicates. A
        range that starts inside the source and ends past its last frame is cut there
        (``0-99:5`` on 12 frames: 0, 5, 10; :meth:`clipped` says so).

        Raises:
            ImageLoadError: a range starts past the last frame.
        """
        for start, _, _ in self.ranges:
            if start >= n_frames:
                raise ImageLoadError(
                    f"frame {start} is out of range: the source has {n_frames} frames "
                    f"(0-{n_frames - 1}); fix --frames {self.text!r}"
                )
        return [i for i in range(n_frames) if i in self]

    def clipped(self, n_frames: int) -> str | None:
        """One line saying that a range ends past the last of ``n_frames`` frames and was cut
        there (the last frame it selects, a stepped range's, past it), or ``None``."""
        past = [
            (start, stop, step) for start, stop, step in self.ranges
            if stop is not None and start < n_frames <= start + (stop - start) // step * step
        ]
        if not past:
            return None
        return (f"--frames {self.text!r} ends past the source's last frame: read up to frame {n_frames - 1} "
                f"(the source has {n_frames} frames, 0-{n_frames - 1})")


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
        if not m.group(2) and m.group(4) is not None:  # 'A:B' is a slice elsewhere (eval's --detect-on)
            raise ValueError(f"bad frame range {item.strip()!r}: a step goes after a range ('{start}-99:{step}'); "
                             f"frames {start} to {step} are '{start}-{step}' (inclusive)")
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
        note: one line for the user on how the source was read where it may not be what
            they meant (a TIFF's planes read as one colour image), or ``None``.
    """

    name: str = "frames"
    live: bool = False
    fps: float | None = None
    frame_count: int | None = None
    note: str | None = None

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
