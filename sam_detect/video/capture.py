"""Video files, cameras and network streams, read with OpenCV (``cv2.VideoCapture``).

Live sources (cameras, streams) reconnect a few times when reads fail and then end the
stream cleanly, with a warning; a video file skips a frame that cannot be decoded and stops
at the end of the readable data (a truncated file ends early, it does not raise).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np

from sam_detect.errors import ImageLoadError
from sam_detect.video.frames import Frame, FrameSelection, FrameSource, parse_frames

log = logging.getLogger("sam_detect.video")

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt", "rtp", "mms")


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
        channel: int | Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(target, os.PathLike):
            target = os.fspath(target)
        is_device = isinstance(target, int) or (isinstance(target, str) and is_camera_device(target))
        is_url = isinstance(target, str) and is_stream_url(target)
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
        #: the colour channel(s) of each frame to read (0 red, 1 green, 2 blue: a fluorescence
        #: video with its nuclei in one colour), as ``load_image``'s ``channel``; ``None``: in colour
        self.channel = channel
        if channel is not None:  # a frame has three: a wrong index is one error, not every frame skipped
            from sam_detect.io.render import resolve_channels

            resolve_channels(channel, 3, f"{self.name}: ")
        self._cap = self._open()
        fps = float(self._cap.get(_CAP_PROP_FPS) or 0)
        self.fps = fps if 0 < fps < 1000 else None
        count = int(self._cap.get(_CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = None if self.live or count <= 0 else count
        if self.frame_count is not None and self.selection is not None:
            self.note = self.selection.clipped(self.frame_count)  # a range cut at the last frame
            self.frame_count = len(self.selection.indices(self.frame_count))

    def _open(self):
        cap = self._factory(self.target)
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            what = (
                "camera"
                if isinstance(self.target, int) or is_camera_device(str(self.target))
                else ("stream" if is_stream_url(str(self.target)) else "video file")
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
            if self.channel is not None:
                from sam_detect.io.render import render

                rgb = render(rgb, channel=self.channel, merge="max", percentiles=(1.0, 99.8), is_rgb=True,
                             where=self.name)
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


def is_stream_url(s: str) -> bool:
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", s)
    return bool(m) and m.group(1).lower() in STREAM_SCHEMES


def is_camera_device(s: str) -> bool:
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
