"""Evaluation: IoU matching, metrics, the few-shot protocol, sweeps and reports.

Light to import: matching and metrics need numpy (and scipy when called); the protocol
imports the pipeline, and with it torch, only when :func:`evaluate` runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sam_detect.eval.matching import Matching, mask_iou, match_iou_matrix, match_masks
from sam_detect.eval.metrics import (
    DEFAULT_IOU_THRESHOLDS,
    ConfusionMatrix,
    Counts,
    Metrics,
    MetricsAccumulator,
    ThresholdMetrics,
    compute_metrics,
    instances_iou,
)

if TYPE_CHECKING:
    from sam_detect.eval.protocol import EvalResult, evaluate
    from sam_detect.eval.sweep import parse_sweep, run_sweep

_LAZY = {
    "EvalResult": "sam_detect.eval.protocol",
    "evaluate": "sam_detect.eval.protocol",
    "draw_examples": "sam_detect.eval.protocol",
    "parse_sweep": "sam_detect.eval.sweep",
    "run_sweep": "sam_detect.eval.sweep",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sam_detect.eval' has no attribute {name!r}")


__all__ = [
    "DEFAULT_IOU_THRESHOLDS",
    "ConfusionMatrix",
    "Counts",
    "EvalResult",
    "Matching",
    "Metrics",
    "MetricsAccumulator",
    "ThresholdMetrics",
    "compute_metrics",
    "draw_examples",
    "evaluate",
    "instances_iou",
    "mask_iou",
    "match_iou_matrix",
    "match_masks",
    "parse_sweep",
    "run_sweep",
]
