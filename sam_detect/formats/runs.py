"""The web page's mask codec: a mask's tight box ``x, y, w, h`` in image pixels plus
alternating run lengths over that box in row-major order, background first (possibly 0).

Kept apart from COCO RLE (column-major, compressed counts over the whole image,
:mod:`sam_detect.masks`) because the page decodes it in a few lines of JavaScript and
it costs the mask's box, not the image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sam_detect.errors import AnnotationError
from sam_detect.masks import MaskCrop


def mask_to_runs(mask: np.ndarray, origin: tuple[int, int] = (0, 0)) -> dict[str, Any]:
    """Encode a bool mask for the page.

    Args:
        mask: ``(h, w)`` bool, either a whole image or a crop whose top-left pixel is at
            ``origin`` ``(x, y)``.

    Returns:
        ``{"x", "y", "w", "h", "runs"}``: the tight bounding box of the mask in image pixels
        and alternating run lengths (background first) over that box in row-major order.
        An empty mask gives ``w = h = 0`` and no runs.
    """
    m = MaskCrop.from_full(mask, origin)
    if not m.crop.size:
        return {"x": int(origin[0]), "y": int(origin[1]), "w": 0, "h": 0, "runs": []}
    flat = m.crop.reshape(-1)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    if flat[0]:
        runs = [0, *runs]
    h, w = m.crop.shape
    return {"x": m.x0, "y": m.y0, "w": w, "h": h, "runs": runs}


def runs_to_mask(obj: Any, image_hw: tuple[int, int]) -> np.ndarray:
    """Decode a :func:`mask_to_runs` dict into a full ``(H, W)`` bool mask.

    Raises:
        AnnotationError: malformed dict, a box outside the image, or runs that do not add
            up to ``w * h``.
    """
    return runs_to_crop(obj, image_hw).full(image_hw)


def _whole(v: Any) -> int:
    """``v`` as an int where it is a whole number (an int, or a float such as ``3.0`` that
    JSON may carry); ``TypeError`` for a bool, a string or a fraction."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{v!r} is not a number")
    if isinstance(v, (float, np.floating)) and not float(v).is_integer():
        raise ValueError(f"{v!r} is not a whole number")
    return int(v)


def runs_to_crop(obj: Any, image_hw: tuple[int, int]) -> MaskCrop:
    """:func:`runs_to_mask` as a :class:`~sam_detect.masks.MaskCrop` over the dict's box."""
    try:
        x, y, w, h = (_whole(obj[k]) for k in ("x", "y", "w", "h"))
        listed = obj["runs"]
        if not isinstance(listed, (list, tuple, np.ndarray)):
            raise TypeError("runs is not a list")
        runs_list = [_whole(v) for v in np.asarray(listed, dtype=object).reshape(-1)]
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        shown = repr(obj)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise AnnotationError(
            f"a mask must be {{'x', 'y', 'w', 'h', 'runs'}} with integer values; got {shown}"
        ) from e
    H, W = image_hw
    if w <= 0 or h <= 0:
        raise AnnotationError("the mask is empty (w or h is 0)")
    if x < 0 or y < 0 or x + w > W or y + h > H:
        raise AnnotationError(f"mask box x={x}, y={y}, w={w}, h={h} lies outside the {W}x{H} image")
    if any(r < 0 for r in runs_list):
        raise AnnotationError(f"mask runs must be >= 0, got {min(runs_list)}")
    total = sum(runs_list)  # Python's integers: a sum past int64 does not wrap round to w*h
    if total != w * h:
        raise AnnotationError(f"mask runs must sum to w*h = {w * h}, got sum {total}")
    runs = np.asarray(runs_list, dtype=np.int64)  # each at most w*h now
    values = np.zeros(runs.size, dtype=bool)
    values[1::2] = True
    return MaskCrop(np.repeat(values, runs).reshape(h, w), (x, y))
