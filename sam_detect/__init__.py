"""sam-detect: few-shot instance detection.

``import sam_detect`` is light: torch, sam2 and open_clip load only when a model is built.
"""

from __future__ import annotations

import os

# OpenMP threads that spin while idle fight every other process for the cores: on a busy
# 2-core machine torch took 4.3 s instead of 0.5 s to embed 10 crops. Passive waiting costs
# nothing measurable on an idle machine. Only a default: it must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from typing import TYPE_CHECKING, Any  # noqa: E402

from sam_detect._version import __version__  # noqa: E402
from sam_detect.errors import SamDetectError  # noqa: E402
from sam_detect.instances import NEGATIVE, UNKNOWN, Instances  # noqa: E402

if TYPE_CHECKING:
    from sam_detect.pipeline import DetectorConfig, SAMDetect

__all__ = ["NEGATIVE", "UNKNOWN", "DetectorConfig", "Instances", "SAMDetect", "SamDetectError", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("SAMDetect", "DetectorConfig"):
        from sam_detect import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'sam_detect' has no attribute {name!r}")
