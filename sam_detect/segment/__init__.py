"""Segmenters: propose candidate instances. ``create_segmenter(name, **options)``."""

from __future__ import annotations

from sam_detect.registry import Registry
from sam_detect.segment.base import Segmenter

SEGMENTERS: Registry[Segmenter] = Registry("segmenter")


@SEGMENTERS.register("classical", help="thresholds + distance transform + watershed; no weights")
def _classical(**kwargs) -> Segmenter:
    from sam_detect.segment.classical import ClassicalSegmenter

    return ClassicalSegmenter(**kwargs)


@SEGMENTERS.register(
    "regions", help="Selective-Search-style region proposals for photos; no weights"
)
def _regions(**kwargs) -> Segmenter:
    from sam_detect.segment.regions import RegionsSegmenter

    return RegionsSegmenter(**kwargs)


@SEGMENTERS.register("sam2", help="SAM2 automatic or guided masks (needs sam2 and weights)")
def _sam2(**kwargs) -> Segmenter:
    from sam_detect.segment.sam2 import SAM2Segmenter

    return SAM2Segmenter(**kwargs)


def create_segmenter(name: str, **kwargs) -> Segmenter:
    return SEGMENTERS.create(name, **kwargs)


def list_segmenters(pattern: str = "*") -> list[str]:
    return SEGMENTERS.list(pattern)


__all__ = ["SEGMENTERS", "Segmenter", "create_segmenter", "list_segmenters"]
