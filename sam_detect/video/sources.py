"""Frame sources: one capture interface over video files, cameras, streams, image folders
and multi-frame TIFF stacks.

Every source is an iterable of :class:`Frame` (RGB uint8 plus its index and time) and a
context manager that releases the device or file. :func:`open_source` picks the source
from a command-line string:

======================================  ===========================================
``"0"``, ``"1"``, ``"/dev/video0"``     camera (live)
``"rtsp://..."``, ``"http://..."`` ...  network stream (live)
``"frames/"``, ``"frames/*.png"``       folder or glob of images, in sorted order (numbers as numbers)
``"stack.tif"``                         multi-frame TIFF (time-lapse, Z-stack), or a ``.npy`` stack
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

import logging
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sam_detect.errors import FrameRequiredError, ImageLoadError
from sam_detect.video.capture import STREAM_SCHEMES, CaptureSource, is_camera_device, is_stream_url
from sam_detect.video.frames import Frame, FrameSelection, FrameSource, parse_frames

log = logging.getLogger("sam_detect.video")

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
STACK_EXTENSIONS = (".tif", ".tiff", ".npy")
#: image files that may hold an animation: read as a stack when they do
ANIMATED_EXTENSIONS = (".gif", ".png", ".webp")


def _animated(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return int(getattr(im, "n_frames", 1)) > 1
    except Exception:  # not an image Pillow reads: the other readers say why
        return False


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
        self.note = sel.clipped(len(self.paths)) if sel is not None else None  # a range cut at the last image
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
            except FrameRequiredError:  # its first plane alone was read, without a word (z0 of a z-stack)
                raise ImageLoadError(
                    f"{path}: holds a stack of several frames; a folder or glob is read as one frame per "
                    f"file: run `sam-detect video` on each stack file, or save one plane per file") from None
            except ImageLoadError as e:
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
        planes_as_frames: a file that stores 3 or 4 planes as the colour channels of one
            image (as tifffile saves a ``(3, H, W)`` array without axes) is read as that many
            frames; ``note`` says so where it is not.

    Raises:
        ImageLoadError: unreadable file, or a selection that starts past the last frame.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        frames: FrameSelection | str | None = None,
        fps: float | None = None,
        channel: int | Sequence[int] | None = None,
        planes_as_frames: bool = False,
    ) -> None:
        from sam_detect.io.images import read_stack_noted

        super().__init__()
        self.path = Path(path)
        sel = (
            frames if isinstance(frames, FrameSelection) or frames is None else parse_frames(frames)
        )
        try:
            self.stack, self.axes, note = read_stack_noted(self.path, planes_as_frames=planes_as_frames)
        except ImageLoadError as e:
            if "reading every frame at once" not in str(e):
                raise
            if sel is None:  # the way on, in this command's words
                raise ImageLoadError(f"{e}".replace("pick one frame (--frame)", "pick some frames (--frames)")) from None
            from sam_detect.io.images import load_image

            # too large to read whole, some of its frames selected: each read on its own (``lazy``)
            n = int(load_image(self.path, channel=channel, frame=0).n_frames)
            self.stack, self.axes, self.note = None, "", None
        if not self.lazy:
            n = int(self.stack.shape[0])
            #: a line for the user where the file's planes were read as one colour image
            #: (``io.images.planes_note``), unless one channel of it was asked for
            self.note = note if channel is None or n > 1 else None  # (the frames' axes said always)
            if channel is not None:  # every frame has as many channels: a wrong index is one error, not every frame skipped
                from sam_detect.io.render import resolve_channels

                resolve_channels(channel, int(self.stack.shape[-1]) if self.stack.ndim == 4 else 1, f"{self.path}: ")
        self.indices = sel.indices(n) if sel is not None else list(range(n))
        if sel is not None and (cut := sel.clipped(n)):  # a range cut at the last frame, said beside the planes' note
            self.note = f"{self.note}; {cut}" if self.note else cut
        self.name = str(self.path)
        self.fps = fps
        self.channel = channel
        self.frame_count = len(self.indices)

    @property
    def lazy(self) -> bool:
        """Whether the stack, too large to read whole, gives each selected frame read on its own
        (``load_image(frame=k)``: a TIFF's pages, a ``.npy``'s memory map), as ``detect --frame``."""
        return self.stack is None

    def __iter__(self) -> Iterator[Frame]:
        from sam_detect.io.render import render

        for i in self.indices:
            if self.closed:
                return
            try:  # each frame as load_image reads it (detect --frame k): channels merged, samples in colour
                if self.lazy:
                    from sam_detect.io.images import load_image

                    loaded = load_image(self.path, channel=self.channel, frame=i)
                    plane, rgb = loaded.original, loaded.rgb
                else:
                    plane = self.stack[i]
                    rgb = render(plane, channel=self.channel, merge="max", percentiles=(1.0, 99.8),
                                 is_rgb=self.axes.endswith("S"), where=self.name)
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
    planes_as_frames: bool = False,
) -> FrameSource:
    """Open the source that ``spec`` names (see the module docstring for the forms).

    Args:
        spec: camera index or device path, stream URL, folder, glob, TIFF stack or video file.
        frames: keep only these frame indices, e.g. ``"0-2,4-7"`` (0-based, inclusive).
        live: override live/file behaviour (a file read as a live source drops frames when
            the consumer is slow, as a camera would; used to test the camera path).
        fps: frame rate of image folders and stacks, which carry none.
        channel: channel(s) of multi-channel images and stacks.
        planes_as_frames: a TIFF stack's 3 or 4 planes stored as the colour channels of one
            image are read as frames (:class:`StackSource`).

    Raises:
        ImageLoadError: nothing exists at ``spec``, or it cannot be opened.
    """
    s = os.fspath(spec) if not isinstance(spec, int) else str(spec)
    if planes_as_frames and (re.fullmatch(r"\d+", s.strip()) or is_stream_url(s) or is_camera_device(s)
                             or Path(s).suffix.lower() not in STACK_EXTENSIONS + ANIMATED_EXTENSIONS):
        raise ImageLoadError(f"{s}: planes_as_frames (--planes-as-frames) reads a TIFF stack's planes; this "
                             "source's frames are colour images")
    if isinstance(spec, int):
        return CaptureSource(spec, live=True if live is None else live, frames=frames, channel=channel)
    if re.fullmatch(r"\d+", s.strip()):
        return CaptureSource(int(s), live=True if live is None else live, frames=frames, channel=channel)
    if is_stream_url(s) or is_camera_device(s):
        return CaptureSource(s, live=live, frames=frames, channel=channel)
    p = Path(s)
    if p.is_dir() or (not p.exists() and any(c in s for c in "*?[")):
        src: FrameSource = ImageFolderSource(s, frames=frames, fps=fps, channel=channel)
    elif not p.exists():
        raise ImageLoadError(
            f"{s}: no such file, folder or camera; expected a video file, an image folder or "
            "glob, a TIFF stack, a camera index such as 0, or a stream URL"
        )
    elif p.suffix.lower() in STACK_EXTENSIONS or (p.suffix.lower() in ANIMATED_EXTENSIONS and _animated(p)):
        src = StackSource(p, frames=frames, fps=fps, channel=channel, planes_as_frames=planes_as_frames)
    elif p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp"):
        src = ImageFolderSource(p, frames=frames, fps=fps, channel=channel)
    else:
        return CaptureSource(p, live=live, frames=frames, channel=channel)
    if live:
        src.live = True
    return src


__all__ = [
    "STACK_EXTENSIONS",
    "STREAM_SCHEMES",
    "VIDEO_EXTENSIONS",
    "ArraySource",
    "CaptureSource",
    "Frame",
    "FrameSelection",
    "FrameSource",
    "ImageFolderSource",
    "StackSource",
    "open_source",
    "parse_frames",
]
