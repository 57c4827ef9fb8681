"""The segmenter protocol: propose candidate instances, or turn a prompt into a mask."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from sam_detect.errors import AnnotationError, ImageLoadError
from sam_detect.instances import Instances


@runtime_checkable
class Segmenter(Protocol):
    """Proposes object masks.

    ``name`` is a short id recorded in outputs (``"classical"``, ``"sam2:tiny"``).
    ``uses_network`` (optional, ``True`` when absent): ``False`` for a segmenter whose work
    is all on the host, beside which ``detect`` starts the embedder's network pass.
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
        self, image: np.ndarray, box: np.ndarray | None = None, point: np.ndarray | None = None
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


def pixel_prompt(
    box: np.ndarray | None, point: np.ndarray | None, hw: tuple[int, int]
) -> tuple[tuple[int, int, int, int] | None, tuple[int, int] | None]:
    """The prompt of :meth:`Segmenter.prompt` in whole pixels of an image of size ``hw``:
    the box XYXY with its ends rounded outwards (``x2``, ``y2`` exclusive) and the point
    ``(x, y)`` rounded down; ``None`` for what was not given.

    Raises:
        AnnotationError: neither given, or one malformed or outside the image.
    """
    from sam_detect.masks import validate_box, validate_point

    if box is None and point is None:
        raise AnnotationError("prompt needs a box (x1, y1, x2, y2) or a point (x, y); got neither")
    bx = pt = None
    if box is not None:
        b = validate_box(box, hw)
        bx = (int(np.floor(b[0])), int(np.floor(b[1])), int(np.ceil(b[2])), int(np.ceil(b[3])))
    if point is not None:
        p = validate_point(point, hw)
        pt = (int(p[0]), int(p[1]))
    return bx, pt


def as_segmenter_image(image: np.ndarray, *, keep_gray: bool = False) -> np.ndarray:
    """A segmenter's input as it works on it: ``(H, W, 3)`` uint8 as given (with
    ``keep_gray``, also ``(H, W)`` and ``(H, W, 4)`` uint8); anything else (another dtype,
    one channel, RGBA) through :func:`sam_detect.io.images.to_rgb_uint8`.

    Raises:
        ImageLoadError: an empty image, or one ``to_rgb_uint8`` cannot render.
    """
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    as_given = img.ndim == 3 and img.shape[2] == 3
    if keep_gray:
        as_given = img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (3, 4))
    if img.dtype == np.uint8 and as_given:
        if img.shape[0] == 0 or img.shape[1] == 0:
            raise ImageLoadError(f"image is empty (shape {img.shape})")
        return img
    from sam_detect.io.images import to_rgb_uint8

    return to_rgb_uint8(img)
