"""The segmenter protocol: propose candidate instances, or turn a prompt into a mask."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from sam_detect.instances import Instances


@runtime_checkable
class Segmenter(Protocol):
    """Proposes object masks.

    ``name`` is a short id recorded in outputs (``"classical"``, ``"sam2:tiny"``).
    """

    name: str

    def segment(self, image: np.ndarray, profile: dict | None = None) -> Instances:
        """Candidate instances of ``image``: ``(H, W, 3)`` uint8 RGB.

        ``profile``: the library's proposal profile (``sam_detect.profile.build_profile``),
        which a segmenter may use to calibrate its proposals to the examples (``None``:
        its own settings). Candidates may overlap: the pipeline's selection step chooses.

        Returns ``Instances`` (masks kept as box crops), boxes XYXY, ``scores``.
        """
        ...

    def prompt(
        self,
        image: np.ndarray,
        box: np.ndarray | None = None,
        point: np.ndarray | None = None,
    ) -> Instances:
        """One mask for a prompt on ``image`` ``(H, W, 3)`` uint8 RGB.

        ``box``: ``(4,)`` XYXY pixels; ``point``: ``(2,)`` XY pixels. Returns one instance,
        or an empty ``Instances`` when nothing is found there.
        """
        ...


def segment_with_profile(segmenter: Segmenter, image: np.ndarray, profile: dict | None) -> Instances:
    """``segmenter.segment(image, profile=profile)``; a segmenter written before the protocol
    took a profile (``segment(image)`` only) gets the image alone."""
    import inspect

    try:
        takes = "profile" in inspect.signature(segmenter.segment).parameters
    except (TypeError, ValueError):
        takes = True
    return segmenter.segment(image, profile=profile) if takes else segmenter.segment(image)
