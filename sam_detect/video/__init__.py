"""Video: frame sources (files, cameras, streams, image folders, TIFF stacks), tracking,
annotated-video, JSON-lines and label-stack writers, and the detection loop.

Nothing here imports torch; OpenCV is imported when a source or writer is opened.

>>> from sam_detect.video import open_source, detect_stream     # doctest: +SKIP
>>> with open_source("bench.mp4") as frames:
...     for result in detect_stream(detector, frames, every=2):
...         print(result.index, result.status, result.instances.data["track_id"])
>>> with open_source("timelapse.tif") as frames:                # doctest: +SKIP
...     run_video(detector, frames, label_image="tracks.tif", jsonl="frames.jsonl")
"""

from __future__ import annotations

from sam_detect.video.runner import FrameResult, StreamStats, detect_stream, run_video
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
from sam_detect.video.writer import LabelStackWriter

__all__ = [
    "CaptureSource",
    "Frame",
    "FrameResult",
    "FrameSelection",
    "FrameSource",
    "ImageFolderSource",
    "LabelStackWriter",
    "StackSource",
    "StreamStats",
    "Tracker",
    "detect_stream",
    "open_source",
    "parse_frames",
    "run_video",
]
