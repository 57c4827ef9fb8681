"""The video loop: read frames, decide which to detect, track, and hand results on.

:func:`detect_stream` is the Python API (``SAMDetect.detect_stream`` calls it): a generator
of :class:`FrameResult`, one per frame taken from the source. :func:`run_video` drives it
for the ``sam-detect video`` command and writes the annotated video, the JSON lines and the
live window.

Which frames are detected:

- ``every=N``: only every N-th frame read is detected; the others are ``"skipped"`` and
  carry the latest result (none on a frame of another size than the one it was made on).
- ``max_fps=F``: at most F detections per second of *source time* (media time for files,
  wall clock for cameras); frames in between are ``"skipped"``.
- ``change_threshold=T``: a frame that differs from the last detected frame by less than T
  gray levels (the largest change of the frames shrunk up to 16×, see :func:`frame_change`)
  reuses that frame's result (``"reused"``); ``0`` turns it off.
- ``propagate="sam2"``: frames that ``every``/``max_fps`` leave out get the last detection's
  objects with their masks tracked onto the frame by SAM2's video predictor
  (``"propagated"``, see :mod:`sam_detect.video.propagate`) instead of a stale copy.

Frames are read on a background thread into a bounded queue. In *live* mode (cameras,
streams) a full queue drops its oldest frame, so a slow model always works on a recent frame
instead of falling further behind; the drops are counted. In *file* mode the reader waits,
and every frame is taken.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from sam_detect.errors import LibraryError, SamDetectError
from sam_detect.instances import Instances
from sam_detect.video.results import (
    DETECTED,
    FAILED,
    PROPAGATED,
    REUSED,
    SKIPPED,
    FrameResult,
    StreamStats,
)
from sam_detect.video.sources import ArraySource, Frame, FrameSource
from sam_detect.video.tracking import Tracker

log = logging.getLogger("sam_detect.video")
#: the frame rate of a source that has none (an image folder or stack without ``--fps``): its
#: frames' source time for ``max_fps`` and the annotated video's rate
DEFAULT_FPS = 10.0



def frame_change(a: np.ndarray, b: np.ndarray) -> float:
    """How much two RGB uint8 frames differ: the largest absolute difference, in gray levels
    (0..255), between the frames' gray images shrunk by area averaging (see :func:`_thumb`).

    Shrinking averages sensor noise away (σ = 3 noise gives about 2 levels at 640×480) while
    a moving object still changes the cells it enters or leaves by tens of levels, so a
    small moving object is not hidden by a large static scene, as it would be by a mean.
    Frames of different sizes count as fully changed (255).
    """
    if a.shape != b.shape:
        return 255.0
    return float(np.abs(_thumb(a) - _thumb(b)).max())


def _thumb(rgb: np.ndarray) -> np.ndarray:
    """The gray frame shrunk by up to 16× (cells of 16×16 pixels; at least 32 cells on the
    short side), float32 so that no rounding adds to the noise. The gray frame is the
    segmenter's (:func:`~sam_detect.io.render.luminance`): a blue fluorescence frame is read
    in its channel, so its objects move by as many levels as a grey frame's."""
    import cv2

    from sam_detect.io.render import luminance

    rgb = np.ascontiguousarray(rgb)
    gray = luminance(rgb) if rgb.ndim == 3 else rgb
    h, w = gray.shape[:2]
    factor = max(1, min(16, min(h, w) // 32))
    size = (max(1, w // factor), max(1, h // factor))
    return cv2.resize(gray.astype(np.float32), size, interpolation=cv2.INTER_AREA)


_END = object()


class _Reader:
    """Reads a source on a daemon thread into a bounded queue (drop-oldest when live)."""

    def __init__(self, source: FrameSource, size: int, live: bool, stats: StreamStats) -> None:
        self.source = source
        self.live = live
        self.stats = stats
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, size))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sam-detect-reader", daemon=True)
        self.thread.start()

    def _put(self, item: Any, droppable: bool) -> None:
        while not self.stop.is_set():
            if droppable and self.live:
                try:
                    self.queue.put_nowait(item)
                    return
                except queue.Full:
                    try:
                        self.queue.get_nowait()
                        self.stats.dropped += 1
                    except queue.Empty:
                        pass
                    continue
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        try:
            for frame in self.source:
                if self.stop.is_set():
                    break
                self._put(frame, droppable=True)
        except BaseException as e:  # handed to the consumer, which re-raises it
            self._put(("error", e), droppable=False)
        finally:
            self._put(_END, droppable=False)

    def get(self) -> Any:
        while True:
            try:
                return self.queue.get(timeout=0.1)
            except queue.Empty:
                if not self.thread.is_alive() and self.queue.empty():
                    return _END

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2.0)


def detect_stream(
    detector: Any,
    frames: FrameSource | Iterable[Any],
    *,
    every: int = 1,
    max_fps: float | None = None,
    change_threshold: float = 3.0,
    track: bool | Tracker = True,
    live: bool | None = None,
    queue_size: int = 2,
    max_errors: int = 10,
    stats: StreamStats | None = None,
    propagate: Any = None,
) -> Iterator[FrameResult]:
    """Detect objects in a stream of frames; yield one :class:`FrameResult` per frame.

    Args:
        detector: a ``SAMDetect`` (anything with ``detect(rgb) -> Instances``).
        frames: a :class:`FrameSource` (see :func:`~sam_detect.video.sources.open_source`),
            a path (str or ``os.PathLike``) or a camera index (int) that
            :func:`~sam_detect.video.sources.open_source` opens (a video file, TIFF or ``.npy``
            stack, image folder or glob, camera, stream URL; closed when the stream ends), or
            any iterable of images: ``(H, W[, C])`` arrays of any dtype,
            ``LoadedImage`` objects, paths, or :class:`Frame` objects.
        every: detect on every N-th frame read (1: all).
        max_fps: detect at most this many frames per second of source time (``None``: no cap);
            a file source without a frame rate (an image folder or stack) is timed at
            ``DEFAULT_FPS`` per frame, a live one by the clock.
        change_threshold: reuse the last result when a frame changed by less than this many
            gray levels since the last detected frame (see :func:`frame_change`); 0: never.
        track: ``True`` for a default :class:`Tracker`, a ``Tracker`` to use, or ``False``.
        live: drop frames when detection is slower than the source (default: the source's
            ``live`` flag; ``False`` for plain iterables).
        queue_size: frames buffered between the reader thread and the detector.
        max_errors: stop with an error after this many frames in a row failed to detect
            (single failures are logged and the frame yields status ``"failed"``).
        stats: a :class:`StreamStats` to fill in (read it during or after the loop).
        propagate: ``None``; ``"sam2"`` (a default
            :class:`~sam_detect.video.propagate.SAM2Propagator`) or a propagator instance
            (``start(rgb, instances)`` / ``step(rgb) -> Instances``): frames left out by
            ``every``/``max_fps`` get the last detection's objects propagated onto them
            (status ``"propagated"``; a propagation error logs and falls back to
            ``"skipped"``).

    Raises:
        ValueError: bad ``every``, ``max_fps``, ``change_threshold``, ``queue_size`` or
            ``propagate``.
        ModelNotAvailableError: ``propagate="sam2"`` without sam2 or its weights.
        LibraryError: the library is missing or does not match the detector (before any frame).
        SamDetectError: ``max_errors`` consecutive frames failed.

    Closing the generator (``break``, Ctrl-C) stops the reader thread; a source that was
    passed in stays open (close it, or use it as a context manager).
    """
    if int(every) < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    if max_fps is not None and max_fps <= 0:
        raise ValueError(f"max_fps must be > 0, got {max_fps}")
    if change_threshold < 0:
        raise ValueError(f"change_threshold must be >= 0 gray levels, got {change_threshold}")
    if queue_size < 1:
        raise ValueError(f"queue_size must be >= 1, got {queue_size}")
    propagator = _propagator(propagate)
    # one path, not its letters as frames; a camera's index (as `sam-detect video 0`), not "int not iterable"
    opened = isinstance(frames, (str, os.PathLike)) or (isinstance(frames, (int, np.integer))
                                                        and not isinstance(frames, (bool, np.bool_)))
    if opened:
        from sam_detect.video.sources import open_source

        source = open_source(int(frames) if isinstance(frames, np.integer) else frames)
    else:
        source = frames if isinstance(frames, FrameSource) else ArraySource(frames)
    stream = _stream(
        detector,
        source,
        every=int(every),
        max_fps=max_fps,
        change_threshold=float(change_threshold),
        track=track,
        live=source.live if live is None else bool(live),
        queue_size=int(queue_size),
        max_errors=int(max_errors),
        stats=stats if stats is not None else StreamStats(),
        propagator=propagator,
    )
    return _closing(stream, source) if opened else stream


def _closing(stream: Iterator[FrameResult], source: FrameSource) -> Iterator[FrameResult]:
    """``stream``, then ``source`` closed (at its end, an error or the generator's close)."""
    try:
        yield from stream
    finally:
        stream.close()
        source.close()


def _propagator(propagate: Any) -> Any:
    if propagate is None or propagate is False:
        return None
    if isinstance(propagate, str):
        if propagate.lower() != "sam2":
            raise ValueError(f"propagate must be None or 'sam2', got {propagate!r}")
        from sam_detect.video.propagate import SAM2Propagator

        return SAM2Propagator()
    if not (hasattr(propagate, "start") and hasattr(propagate, "step")):
        raise ValueError(
            f"propagate must be None, 'sam2' or a propagator (start/step), got {propagate!r}"
        )
    return propagate


def _stream(
    detector,
    source,
    *,
    every,
    max_fps,
    change_threshold,
    track,
    live,
    queue_size,
    max_errors,
    stats,
    propagator=None,
) -> Iterator[FrameResult]:
    from sam_detect._heavy import running

    tracker = Tracker() if track is True else (track or None)
    if hasattr(detector, "check_library"):
        detector.check_library(create=False)  # fail before the first frame
    memory = running()  # the frames share one set-up: each reuses the memory the others freed
    memory.__enter__()  # before the reader starts: a switch it refuses stops the run here
    reader = None
    last: Instances | None = None
    last_of: int | None = None
    last_thumb: np.ndarray | None = None
    last_time: float | None = None
    seen = 0
    errors = 0
    t_origin = None
    propagating = False  # the propagator holds the last detection
    in_hand = False  # a frame taken whose result is not given yet (Ctrl-C while it is detected)
    try:
        stats.started = time.perf_counter()
        reader = _Reader(source, queue_size, live, stats)
        while True:
            item = reader.get()
            if item is _END:
                break
            if isinstance(item, tuple) and item and item[0] == "error":
                raise item[1]
            frame: Frame = item
            if not live:
                # file mode: the frame waited in the read-ahead queue by design; latency
                # counts from when the loop takes it
                frame.captured_at = time.perf_counter()
            stats.frames += 1
            in_hand = True  # counted as handled once its result is given; not if the run stops before
            position = seen
            seen += 1
            now_t = frame.time
            if now_t is None and not live:
                # a stack or folder without a frame rate: source time at the documented default
                # (--fps, 10), so that --max-fps picks the same frames on any machine
                now_t = position / DEFAULT_FPS
            elif now_t is None:
                t_origin = frame.captured_at if t_origin is None else t_origin
                now_t = frame.captured_at - t_origin
            due = position % every == 0
            if due and max_fps is not None and last_time is not None:
                due = now_t - last_time >= (1.0 / max_fps) * (1 - 1e-3)
            if not due and propagating:
                try:
                    moved = propagator.step(frame.rgb)
                except Exception as e:
                    propagating = False
                    log.warning(
                        "frame %d: propagation failed: %s: %s (carrying the last result until "
                        "the next detection)",
                        frame.index,
                        type(e).__name__,
                        e,
                    )
                else:
                    moved.metadata["frame"] = frame.index
                    stats.propagated += 1
                    _count(stats, moved)
                    in_hand = False
                    yield FrameResult(
                        frame, moved, PROPAGATED, last_of, time.perf_counter() - frame.captured_at
                    )
                    continue
            if not due:
                stats.skipped += 1
                # the latest detection, where it was made on a frame of this size: a folder's
                # images of another size carry nothing (its masks would not fit this frame)
                fits = last is not None and tuple(last.image_hw) == tuple(frame.hw)
                in_hand = False
                yield FrameResult(
                    frame,
                    last if fits else Instances.empty(frame.hw),
                    SKIPPED,
                    last_of,
                    time.perf_counter() - frame.captured_at,
                )
                continue
            change = None
            thumb = None
            if change_threshold > 0 and last is not None:
                thumb = _thumb(frame.rgb)
                if last_thumb is not None and thumb.shape == last_thumb.shape:
                    change = float(np.abs(thumb - last_thumb).max())
                    if change < change_threshold:
                        stats.reused += 1
                        last_time = now_t
                        _count(stats, last)
                        in_hand = False
                        yield FrameResult(
                            frame,
                            last,
                            REUSED,
                            last_of,
                            time.perf_counter() - frame.captured_at,
                            change=change,
                        )
                        continue
            t = time.perf_counter()
            try:
                found = detector.detect(frame.rgb)
            except LibraryError:
                raise
            except Exception as e:
                errors += 1
                stats.failed += 1
                in_hand = False  # handled: failed
                log.warning(
                    "frame %d: detection failed: %s: %s (skipped)", frame.index, type(e).__name__, e
                )
                if errors >= max_errors:
                    raise SamDetectError(
                        f"detection failed on {errors} frames in a row (last at frame {frame.index}: "
                        f"{type(e).__name__}: {e}); stopping"
                    ) from e
                in_hand = False
                yield FrameResult(
                    frame,
                    Instances.empty(frame.hw),
                    FAILED,
                    None,
                    time.perf_counter() - frame.captured_at,
                    error=f"{type(e).__name__}: {e}",
                )
                continue
            errors = 0
            seconds = time.perf_counter() - t
            if tracker is not None:
                found = tracker.update(found, frame.index)
                for tid, lab in zip(found.data["track_id"], found.labels, strict=True):
                    stats.track_labels[int(tid)] = lab
            found.metadata["frame"] = frame.index
            last, last_of, last_time = found, frame.index, now_t
            if propagator is not None:
                try:
                    propagator.start(frame.rgb, found)
                    propagating = True
                except Exception as e:
                    propagating = False
                    log.warning(
                        "frame %d: cannot start propagation: %s: %s",
                        frame.index,
                        type(e).__name__,
                        e,
                    )
            if change_threshold > 0:
                last_thumb = thumb if thumb is not None else _thumb(frame.rgb)
            stats.detected += 1
            stats.detect_seconds.append(seconds)
            latency = time.perf_counter() - frame.captured_at
            stats.latencies.append(latency)
            _count(stats, found)
            in_hand = False
            yield FrameResult(frame, found, DETECTED, frame.index, latency, change=change)
    finally:
        if in_hand:  # stopped while this frame was in hand: it is no frame handled
            stats.frames -= 1
        memory.__exit__(None, None, None)
        if reader is not None:
            reader.close()
        stats.unreadable = int(getattr(source, "failed", 0))
        stats.ended = time.perf_counter()


def _count(stats: StreamStats, inst: Instances) -> None:
    for lab in inst.labels:
        stats.objects[str(lab)] += 1


# ---------------------------------------------------------------------------------------
# records and the CLI loop
# ---------------------------------------------------------------------------------------
def frame_record(
    result: FrameResult,
    *,
    polygons: bool = True,
    tolerance: float = 1.0,
    neighbours: bool = False,
) -> dict[str, Any]:
    """A JSON-lines record for one frame: index, time, status, objects (with ``track_id``)."""
    from sam_detect.outputs import instance_records

    inst = result.instances
    objects = instance_records(inst, polygons=polygons, tolerance=tolerance, neighbours=neighbours)
    tids = inst.data.get("track_id")
    raw = inst.data.get("raw_label")
    for i, rec in enumerate(objects):
        if tids is not None:
            rec["track_id"] = int(tids[i])
        if raw is not None and raw[i] != rec["label"]:
            rec["frame_label"] = raw[i]
    counts: dict[str, int] = {}
    for lab in inst.labels:
        counts[str(lab)] = counts.get(str(lab), 0) + 1
    h, w = result.frame.hw
    rec: dict[str, Any] = {
        "frame": result.index,
        "time": None if result.frame.time is None else round(float(result.frame.time), 4),
        "source": result.frame.name,
        "status": result.status,
        "result_of": result.result_of,
        "height": h,
        "width": w,
        "count": len(inst),
        "counts": counts,
        "objects": objects,
        "latency": round(result.latency, 4),
    }
    if result.status == DETECTED:
        rec["timings"] = {
            k: round(float(v), 4) for k, v in inst.metadata.get("timings", {}).items()
        }
    if result.change is not None:
        rec["change"] = round(result.change, 2)
    if result.error:
        rec["error"] = result.error
    return rec


@contextlib.contextmanager
def _interrupt_after() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) that comes inside the block until it ends, then raise it as
    ``KeyboardInterrupt``. Only in the main thread, where Python's own handler is in force;
    elsewhere the block runs as it is."""
    import signal

    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    held: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if held:
        raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[list[int]]:
    """Within the block, a SIGTERM (``timeout``, a batch system's time limit, ``docker stop``,
    ``kill``) stops the run as Ctrl-C does: a ``KeyboardInterrupt``, held as a Ctrl-C is while
    a frame goes to the outputs, so that they are finalised alike (it killed the process, and
    left no label stack and an MP4 that does not open). Yields a list that holds the signal
    once one came. Only in the main thread, and only where SIGTERM has its default action; a
    second SIGTERM kills as before."""
    import signal

    got: list[int] = []
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield got
        return

    def on_term(signum: int, frame: Any) -> None:
        got.append(signum)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        held = signal.getsignal(signal.SIGINT)
        if callable(held) and held is not signal.default_int_handler:  # _interrupt_after's: raised after the frame
            held(signal.SIGINT, frame)
            return
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        yield got
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run_video(
    detector: Any,
    source: FrameSource | Iterable[Any],
    *,
    output: str | None = None,
    jsonl: Any = None,
    show: bool = False,
    output_fps: float | None = None,
    label_image: str | os.PathLike | None = None,
    type_map: str | os.PathLike | None = None,
    classes: list[str] | None = None,
    hud: bool = True,
    polygons: bool = True,
    tolerance: float = 1.0,
    on_result: Any = None,
    stats: StreamStats | None = None,
    **stream_options: Any,
) -> StreamStats:
    """Run :func:`detect_stream` over ``source`` and write the outputs.

    Args:
        source: a :class:`FrameSource` (:func:`open_source`), or any iterable of images as
            :func:`detect_stream` takes (its frames timed at ``DEFAULT_FPS``).
        output: annotated video file (every frame handled is written, with the latest
            result drawn on it); finalised on the end of the stream, an error or Ctrl-C.
        jsonl: file path, ``"-"`` (stdout) or an open text file: one record per detected,
            reused or propagated frame (skipped frames carry no record).
        show: a live window (press q or Esc to stop); raises ``SamDetectError`` when no
            display can be used.
        output_fps: frame rate of the written video (default: the source's, else 10).
        label_image: a ``(T, H, W)`` label stack (``.tif``/``.tiff``/``.npy``), one plane per
            frame handled (as ``output``: a skipped frame holds the latest detection's
            objects), each object's value its track id (without tracking, its place in the
            frame's record plus one); see :class:`~sam_detect.video.writer.LabelStackWriter`.
        type_map: the same stack of each object's class (``classes``' place plus one, as
            ``detect --type-map`` numbers them; default: :func:`sam_detect.outputs.output_classes`).
        on_result: called with each :class:`FrameResult` (e.g. to advance a progress bar).
        stream_options: passed to :func:`detect_stream` (``every``, ``max_fps``, ...).

    Returns:
        The :class:`StreamStats` (complete even when interrupted: read ``stats`` passed in).
    """
    from sam_detect.video.writer import JsonlWriter, LabelStackWriter, VideoWriter, Window

    stats = stats if stats is not None else StreamStats()
    window = Window() if show else None  # fail before opening any file
    # a plain iterable of images (detect_stream's) has no frame rate of its own
    video = VideoWriter(output, output_fps or getattr(source, "fps", None) or DEFAULT_FPS) if output else None
    lines = JsonlWriter(jsonl) if jsonl is not None else None
    stack = LabelStackWriter(label_image) if label_image is not None else None
    if type_map is not None and classes is None:
        from sam_detect.outputs import output_classes

        classes = output_classes(detector)
    types = LabelStackWriter(type_map, classes=list(classes or [])) if type_map is not None else None
    results = detect_stream(detector, source, stats=stats, **stream_options)
    try:
        for result in results:
            record = frame_record(result, polygons=polygons, tolerance=tolerance) \
                if lines is not None and result.fresh else None
            image = None
            if video is not None or window is not None:
                from sam_detect.video.writer import draw_annotations

                text = None
                if hud:
                    text = (
                        f"frame {result.index}  {result.status}  {len(result.instances)} objects  "
                        f"{stats.fps:.1f} fps"
                    )
                image = draw_annotations(result.frame.rgb, result.instances, hud=text)
            # the frame goes to every output or to none: a Ctrl-C between two of them left the
            # JSON lines and the label stack a frame ahead of the video
            with _interrupt_after():
                if record is not None:
                    lines.write(record)
                if stack is not None:
                    stack.write(result.instances, result.frame.hw, result.frame.index)
                if types is not None:
                    types.write(result.instances, result.frame.hw, result.frame.index)
                if video is not None:
                    video.write(image)
            if window is not None and not window.show(image):
                break
            if on_result is not None:
                on_result(result)
    finally:
        results.close()  # stops the reader thread now, not at garbage collection
        if video is not None:
            video.close()
        if lines is not None:
            lines.close()
        if stack is not None:
            stack.close()
        if types is not None:
            types.close()
        if window is not None:
            window.close()
    return stats
