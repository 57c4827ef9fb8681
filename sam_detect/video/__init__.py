"""Video: frame sources (files, cameras, streams, image folders, TIFF stacks), tracking,
annotated-video and JSON-lines writers, and the detection loop.

Nothing here imports torch; OpenCV is imported when a source or writer is opened.

>>> from sam_detect.video import open_source, detect_stream     # doctest: +SKIP
>>> with open_source("bench.mp4") as frames:
...     for result in detect_stream(detector, frames, every=2):
...         print(result.index, result.status, result.instances.data["track_id"])
"""

from __future__ import annotations

from sam_detect.video.runner import FrameResult, StreamStats, detect_stream
from sam_detect.video.sources import (
    CaptureSource,
    Frame,
    FrameSelection,
    FrameSource,
    ImageFolderSource,
    StackSource,
    open_source,
    parse_frames,
)
from sam_detect.video.tracking import Tracker

__all__ = [
    "CaptureSource",
    "Frame",
    "FrameResult",
    "FrameSelection",
    "FrameSource",
    "ImageFolderSource",
    "StackSource",
    "StreamStats",
    "Tracker",
    "detect_stream",
    "open_source",
    "parse_frames",
]
