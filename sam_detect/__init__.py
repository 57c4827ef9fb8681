"""sam-detect: few-shot instance detection.

``import sam_detect`` is light: torch, sam2 and open_clip load only when a model is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sam_detect._version import __version__
from sam_detect.errors import SamDetectError
from sam_detect.instances import NEGATIVE, UNKNOWN, Instances

if TYPE_CHECKING:
    from sam_detect.pipeline import DetectorConfig, SAMDetect

__all__ = ["NEGATIVE", "UNKNOWN", "DetectorConfig", "Instances", "SAMDetect", "SamDetectError", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("SAMDetect", "DetectorConfig"):
        from sam_detect import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'sam_detect' has no attribute {name!r}")
