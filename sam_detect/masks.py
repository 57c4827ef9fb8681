"""Mask encodings: COCO RLE, polygons, and prompt shapes.

Masks are bool ``(H, W)`` arrays at the API, RLE or polygons at rest. RLE is COCO's
(column-major, compressed ``counts`` string) through ``pycocotools``; polygons come from
OpenCV's contour tracing and are simplified with the Douglas-Peucker ``tolerance``
(in pixels), the way microscopy tools smooth outlines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from sam_detect.errors import AnnotationError


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO RLE of a bool ``(H, W)`` mask: ``{"size": [H, W], "counts": str}``."""
    from pycocotools import mask as mask_utils

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise AnnotationError(f"mask must have shape (H, W), got {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Decode COCO RLE (compressed string or uncompressed list ``counts``) to bool ``(H, W)``."""
    from pycocotools import mask as mask_utils

    try:
        h, w = (int(v) for v in rle["size"])
        counts = rle["counts"]
        if isinstance(counts, list):
            rle = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
        else:
            rle = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
        return mask_utils.decode(rle).astype(bool)
    except (KeyError, TypeError, ValueError) as e:
        raise AnnotationError(f"invalid RLE (expected {{'size': [H, W], 'counts': ...}}): {e}") from e


def mask_to_polygons(mask: np.ndarray, tolerance: float = 1.0, min_points: int = 3) -> list[np.ndarray]:
    """Outer contours of a bool ``(H, W)`` mask as polygons, each ``(K, 2)`` float32 XY pixels.

    ``tolerance`` is the Douglas-Peucker simplification distance in pixels (0 keeps every
    contour point). Holes are not returned; each connected part gives one polygon.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise AnnotationError(f"mask must have shape (H, W), got {mask.shape}")
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    polygons = []
    for c in contours:
        if tolerance > 0:
            c = cv2.approxPolyDP(c, float(tolerance), True)
        pts = c.reshape(-1, 2).astype(np.float32)
        if len(pts) >= min_points:
            polygons.append(pts)
    return polygons


def polygons_to_mask(polygons: Sequence[np.ndarray] | np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Rasterise polygons (each ``(K, 2)`` XY pixels, K >= 3) to a bool ``(H, W)`` mask."""
    h, w = image_hw
    if isinstance(polygons, np.ndarray) and polygons.ndim == 2:
        polygons = [polygons]
    pts = []
    for p in polygons:
        p = np.asarray(p, dtype=np.float64)
        if p.ndim == 1 and p.size % 2 == 0:  # COCO flat [x1, y1, x2, y2, ...]
            p = p.reshape(-1, 2)
        if p.ndim != 2 or p.shape[1] != 2 or len(p) < 3:
            raise AnnotationError(f"a polygon needs at least 3 (x, y) points, got shape {p.shape}")
        if not np.isfinite(p).all():
            raise AnnotationError("polygon coordinates must be finite numbers")
        pts.append(np.round(p).astype(np.int32))
    out = np.zeros((h, w), dtype=np.uint8)
    cv2.fillPoly(out, pts, 1)
    return out.astype(bool)


def box_to_mask(box: Sequence[float], image_hw: tuple[int, int]) -> np.ndarray:
    """Bool ``(H, W)`` mask filling the XYXY ``box`` (clipped to the image)."""
    x1, y1, x2, y2 = validate_box(box, image_hw)
    out = np.zeros(image_hw, dtype=bool)
    out[int(np.floor(y1)) : int(np.ceil(y2)), int(np.floor(x1)) : int(np.ceil(x2))] = True
    return out


def validate_box(box: Sequence[float], image_hw: tuple[int, int]) -> np.ndarray:
    """Check an XYXY box against an image of ``(H, W)``; returns it clipped, float32 ``(4,)``.

    Raises :class:`AnnotationError` for a malformed box, one with zero area, or one
    entirely outside the image.
    """
    h, w = image_hw
    b = np.asarray(box, dtype=np.float64).reshape(-1)
    if b.shape != (4,) or not np.isfinite(b).all():
        raise AnnotationError(f"a box needs 4 numbers x1,y1,x2,y2, got {list(np.asarray(box).reshape(-1))}")
    x1, y1, x2, y2 = b
    if x2 <= x1 or y2 <= y1:
        raise AnnotationError(f"box {x1:g},{y1:g},{x2:g},{y2:g} has zero area (need x2 > x1 and y2 > y1)")
    if x2 <= 0 or y2 <= 0 or x1 >= w or y1 >= h:
        raise AnnotationError(f"box {x1:g},{y1:g},{x2:g},{y2:g} lies outside the {w}x{h} image")
    return np.array([max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)], dtype=np.float32)


def validate_point(point: Sequence[float], image_hw: tuple[int, int]) -> np.ndarray:
    """Check an XY point against an image of ``(H, W)``; returns float32 ``(2,)``."""
    h, w = image_hw
    p = np.asarray(point, dtype=np.float64).reshape(-1)
    if p.shape != (2,) or not np.isfinite(p).all():
        raise AnnotationError(f"a point needs 2 numbers x,y, got {list(np.asarray(point).reshape(-1))}")
    if not (0 <= p[0] < w and 0 <= p[1] < h):
        raise AnnotationError(f"point {p[0]:g},{p[1]:g} lies outside the {w}x{h} image")
    return p.astype(np.float32)


def box_to_prompt(box: Sequence[float]) -> np.ndarray:
    """SAM-style box prompt: ``(1, 4)`` float32 XYXY."""
    return np.asarray(box, dtype=np.float32).reshape(1, 4)


def point_to_prompt(point: Sequence[float], positive: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """SAM-style point prompt: coords ``(1, 2)`` float32 XY and labels ``(1,)`` int32 (1 = foreground)."""
    return np.asarray(point, dtype=np.float32).reshape(1, 2), np.array([1 if positive else 0], dtype=np.int32)


def label_image_to_masks(label_image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a label image ``(H, W)`` int (0 = background) into masks ``(N, H, W)`` bool and ids ``(N,)``.

    Built from per-object bounding slices, so it stays fast for hundreds of objects.
    """
    from scipy import ndimage

    lab = np.asarray(label_image)
    if lab.ndim != 2:
        raise AnnotationError(f"a label image must be 2-D (H, W), got shape {lab.shape}")
    if not np.issubdtype(lab.dtype, np.integer):
        if not np.all(np.mod(lab, 1) == 0):
            raise AnnotationError(f"a label image must hold integer ids, got dtype {lab.dtype}")
        lab = lab.astype(np.int64)
    ids = np.unique(lab)
    ids = ids[ids != 0]
    masks = np.zeros((len(ids), *lab.shape), dtype=bool)
    if len(ids) == 0:
        return masks, ids
    # Relabel to 1..N so find_objects returns one slice per id.
    dense = np.searchsorted(ids, lab) + 1
    dense[lab == 0] = 0
    for i, sl in enumerate(ndimage.find_objects(dense)):
        if sl is not None:
            masks[i][sl] = dense[sl] == i + 1
    return masks, ids
