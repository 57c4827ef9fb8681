"""Context crops: a square window around each object, its surroundings faded by distance.

The crop is centred on the centre of the mask's XYXY box; its side follows the target
*occupancy* (the fraction of the crop the object should cover)::

    side = max(sqrt(mask_area / occupancy), longest box side, min_side)   (rounded up)

so objects of any size reach the embedder at about the same relative scale, with a
predictable amount of context around them. Where the window leaves the image it is padded
with a constant colour (the fade's background, see below) and the mask is ``False`` there.
The distance map (pixels from the mask, 0 inside; ``_distance.distance_to_zero``, exact and
the same on every machine) is computed on the crop only, then the fade is applied.

Pad colour: the per-channel mean of the in-image crop pixels outside the mask. The built-in
fades (``background="mean"``) fade towards that same colour, so padding reads as "more
faded background", not as a black frame that moves with the image border.

Batch use (:func:`context_crops`, :func:`make_context_crops`) touches only each object's
window, never the full image per object: 150 nuclei on a 700 x 1100 frame take a few
milliseconds in all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sam_detect import config
from sam_detect.errors import AnnotationError
from sam_detect.fade.strategies import IdentityFade, mean_colour
from sam_detect.instances import Instances, as_instances, masks_to_xyxy


@dataclass(frozen=True)
class ContextCrop:
    """One context crop.

    ``image`` ``(side, side, 3)`` uint8 RGB, faded; ``mask`` ``(side, side)`` bool, the
    object's mask in crop coordinates (``False`` in padding); ``origin_xy`` ``(x, y)`` int,
    the crop's top-left corner in image pixels (may be negative when padded); ``side`` int.
    """

    image: np.ndarray
    mask: np.ndarray
    origin_xy: tuple[int, int]
    side: int

    @property
    def xyxy(self) -> tuple[int, int, int, int]:
        """The crop window in image pixels, XYXY with exclusive x2, y2."""
        x, y = self.origin_xy
        return x, y, x + self.side, y + self.side


def _check_occupancy(occupancy: Any) -> float:
    """``occupancy`` checked (``sam_detect.config.PARAMS``); ``None``: the default."""
    return config.check("occupancy", config.default("occupancy") if occupancy is None else occupancy)


def _check_min_side(min_side: Any) -> int:
    if isinstance(min_side, bool) or not isinstance(min_side, (int, np.integer)) or min_side < 1:
        raise ValueError(f"min_side must be a positive integer, got {min_side!r}")
    return int(min_side)


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"image must be (H, W, 3) uint8 RGB (load it with sam_detect.io.images), "
            f"got shape {image.shape} dtype {image.dtype}"
        )
    return image


def _check_fade(fade: Any) -> Any:
    if fade is not None and not callable(getattr(fade, "apply", None)):
        raise TypeError(
            f"fade must have an apply(image, mask, distance_map) method or be None, "
            f"got {type(fade).__name__}; build one with sam_detect.fade.create_fade(name)"
        )
    return fade


def crop_side(area: float, box_wh: tuple[float, float], occupancy: float, min_side: int) -> int:
    """Side in pixels of the square crop for a mask of ``area`` pixels and box ``(w, h)``."""
    side = max(math.sqrt(area / occupancy), box_wh[0], box_wh[1], min_side)
    return int(math.ceil(side - 1e-9))


def _window(box: Sequence[float], side: int) -> tuple[int, int]:
    """Top-left corner of a ``side`` square centred on XYXY ``box``."""
    cx = (float(box[0]) + float(box[2])) / 2.0
    cy = (float(box[1]) + float(box[3])) / 2.0
    return int(math.floor(cx - side / 2.0)), int(math.floor(cy - side / 2.0))


def _distance_map(mask: np.ndarray) -> np.ndarray:
    from sam_detect._distance import distance_to_zero

    # the distance to the nearest zero pixel: zeros = the mask
    return distance_to_zero(~mask)


def _extract(
    image: np.ndarray,
    mask_region: np.ndarray,
    mask_origin: tuple[int, int],
    origin: tuple[int, int],
    side: int,
    fade: Any,
) -> ContextCrop:
    """Cut the ``side`` window at ``origin`` (x, y) out of ``image``, pad, fade.

    ``mask_region`` is the object's mask restricted to a rectangle whose top-left corner
    is ``mask_origin`` (x, y) in image pixels; pixels outside it count as ``False``.
    """
    height, width = image.shape[:2]
    x0, y0 = origin
    x1, y1 = x0 + side, y0 + side
    # In-image part of the window.
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)

    crop_mask = np.zeros((side, side), dtype=bool)
    mx0, my0 = mask_origin
    mh, mw = mask_region.shape
    # Overlap of the mask rectangle with the window.
    ox0, oy0 = max(x0, mx0), max(y0, my0)
    ox1, oy1 = min(x1, mx0 + mw), min(y1, my0 + mh)
    if ox1 > ox0 and oy1 > oy0:
        crop_mask[oy0 - y0 : oy1 - y0, ox0 - x0 : ox1 - x0] = mask_region[
            oy0 - my0 : oy1 - my0, ox0 - mx0 : ox1 - mx0
        ]

    inside = image[iy0:iy1, ix0:ix1]
    if (ix0, iy0, ix1, iy1) == (x0, y0, x1, y1):
        crop = np.array(inside, copy=True)
    else:
        where = ~crop_mask[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
        pad = np.rint(mean_colour(inside, where)).astype(np.uint8)
        crop = np.empty((side, side, 3), dtype=np.uint8)
        crop[:] = pad
        crop[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = inside

    if fade is not None and not isinstance(fade, IdentityFade):
        faded = fade.apply(crop, crop_mask, _distance_map(crop_mask))
        faded = np.asarray(faded)
        if faded.shape != crop.shape or faded.dtype != np.uint8:
            raise ValueError(
                f"{type(fade).__name__}.apply must return a ({side}, {side}, 3) uint8 image, "
                f"got shape {faded.shape} dtype {faded.dtype}"
            )
        crop = faded
    return ContextCrop(image=crop, mask=crop_mask, origin_xy=(x0, y0), side=side)


def context_crop(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    occupancy: float | None = None,
    fade: Any = None,
    min_side: int = 16,
    box: Sequence[float] | None = None,
) -> ContextCrop:
    """The faded square context crop of one object.

    Args:
        image: ``(H, W, 3)`` uint8 RGB (``(H, W)`` uint8 is repeated to 3 channels).
        mask: ``(H, W)`` bool object mask.
        occupancy: fraction of the crop the object should cover, in ``[0.001, 1]``; ``None``:
            the default (``sam_detect.config.PARAMS["occupancy"]``).
        fade: an object with ``apply(image, mask, distance_map)`` (see
            :mod:`sam_detect.fade`), or ``None`` for no fade.
        min_side: smallest crop side in pixels.
        box: XYXY box to centre on (pixels, exclusive x2/y2); default: the mask's tight box.

    Returns:
        :class:`ContextCrop` with ``image`` ``(s, s, 3)`` uint8 and ``mask`` ``(s, s)`` bool.

    Raises:
        AnnotationError: the mask is empty or does not match the image.
        ValueError: bad ``occupancy``, ``min_side`` or image.
    """
    image = _check_image(image)
    occupancy = _check_occupancy(occupancy)
    min_side = _check_min_side(min_side)
    fade = _check_fade(fade)
    mask = np.asarray(mask)
    if mask.shape != image.shape[:2]:
        raise AnnotationError(
            f"mask must have the image's shape {image.shape[:2]}, got {mask.shape}"
        )
    mask = mask.astype(bool, copy=False)
    area = int(np.count_nonzero(mask))
    if area == 0:
        raise AnnotationError("mask is empty (zero area): cannot build a context crop for it")
    if box is None:
        box = masks_to_xyxy(mask[None])[0]
    box = _check_box(box)
    side = crop_side(area, (box[2] - box[0], box[3] - box[1]), occupancy, min_side)
    return _extract(image, mask, (0, 0), _window(box, side), side, fade)


def _check_box(box: Any) -> np.ndarray:
    arr = np.asarray(box, dtype=np.float64).reshape(-1)
    if arr.shape != (4,) or not np.all(np.isfinite(arr)) or arr[2] < arr[0] or arr[3] < arr[1]:
        raise AnnotationError(
            f"box must be XYXY (x1, y1, x2, y2) with x2 >= x1, y2 >= y1, got {box!r}"
        )
    return arr


def make_context_crops(
    image: np.ndarray,
    masks: np.ndarray | Instances,
    *,
    occupancy: float | None = None,
    fade: Any = None,
    min_side: int = 16,
) -> list[ContextCrop]:
    """Context crops of many objects of one image, working on each object's box only.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        masks: ``(N, H, W)`` bool masks, or :class:`Instances` (its ``boxes`` are used as
            the masks' boxes; they must contain the whole mask, as tight boxes do).
        occupancy, fade, min_side: as in :func:`context_crop`.

    Returns:
        ``N`` :class:`ContextCrop`, in the order of ``masks``.

    Raises:
        AnnotationError: a mask is empty (its index is named) or shapes disagree.
    """
    image = _check_image(image)
    occupancy = _check_occupancy(occupancy)
    min_side = _check_min_side(min_side)
    fade = _check_fade(fade)
    masks = as_instances(masks, image.shape[:2])
    boxes = masks.boxes
    out: list[ContextCrop] = []
    for i in range(len(masks)):
        crop, (rows, cols) = masks.mask_crop(i)
        area = int(np.count_nonzero(crop))
        if area == 0:
            raise AnnotationError(
                f"mask {i} is empty (zero area): drop empty masks before building crops"
            )
        bx0, by0, bx1, by1 = boxes[i]
        side = crop_side(area, (bx1 - bx0, by1 - by0), occupancy, min_side)
        out.append(_extract(image, crop, (cols.start, rows.start), _window(boxes[i], side), side, fade))
    return out


def context_crops(
    image: np.ndarray,
    masks: np.ndarray | Instances,
    *,
    occupancy: float | None = None,
    fade: Any = None,
    min_side: int = 16,
) -> list[np.ndarray]:
    """Faded crop images of many objects: :func:`make_context_crops` without the masks.

    Returns ``N`` arrays, each ``(s_i, s_i, 3)`` uint8 (sides differ between objects).
    """
    crops = make_context_crops(image, masks, occupancy=occupancy, fade=fade, min_side=min_side)
    return [c.image for c in crops]


__all__ = ["ContextCrop", "context_crop", "context_crops", "crop_side", "make_context_crops"]
