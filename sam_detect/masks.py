"""Mask encodings: COCO RLE, polygons, and prompt shapes.

Masks are bool ``(H, W)`` arrays at the API, RLE or polygons at rest. RLE is COCO's
(column-major, compressed ``counts`` string) through ``pycocotools``; polygons come from
OpenCV's contour tracing and are simplified with the Douglas-Peucker ``tolerance``
(in pixels), the way microscopy tools smooth outlines.

A mask kept small is a :class:`MaskCrop`: a 2-D bool array holding the mask inside a
rectangle of the image, and the rectangle's top-left pixel ``(x0, y0)``, the one form
``Instances``, the segmenters, the readers and the UI keep masks in. :func:`crop_to_rle`,
:func:`crop_to_polygons`, :func:`crop_contours`, :func:`crop_outlines` and :func:`polygons_to_crop` give exactly
what their full-image counterparts give, at a cost that grows with the crop, not the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sam_detect.errors import AnnotationError


@dataclass(eq=False)
class MaskCrop:
    """A bool mask kept as its box crop: ``crop`` ``(h, w)`` bool whose top-left pixel lies
    at ``origin`` ``(x0, y0)`` of the image; every pixel outside the crop is background.

    An empty mask is a ``(0, 0)`` crop (at ``(0, 0)`` when made here). Boxes are XYXY pixels
    with exclusive ``x1, y1``. Treat ``crop`` as read-only: ``Instances`` hands out the
    stored ones.
    """

    crop: np.ndarray
    origin: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        self.crop = np.asarray(self.crop, dtype=bool)
        if self.crop.ndim != 2:
            raise AnnotationError(f"a mask crop must be 2-D (h, w), got shape {self.crop.shape}")
        self.origin = (int(self.origin[0]), int(self.origin[1]))

    # -- construction -------------------------------------------------------------------
    @classmethod
    def empty(cls, **kwargs: Any) -> MaskCrop:
        """An empty mask: a ``(0, 0)`` crop at ``(0, 0)``."""
        return cls(np.zeros((0, 0), dtype=bool), (0, 0), **kwargs)

    @classmethod
    def from_full(cls, mask: np.ndarray, origin: Sequence[int] = (0, 0), **kwargs: Any) -> MaskCrop:
        """The tight crop (a copy, so ``mask`` can be freed) of a 2-D bool ``mask`` whose top-left
        pixel lies at ``origin``; an empty mask gives :meth:`empty`. ``kwargs`` go to the
        constructor (a subclass's fields)."""
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim != 2:
            raise AnnotationError(f"mask must have shape (H, W), got {mask.shape}")
        t = MaskCrop(mask, origin).tight()
        if not t.crop.size:
            return cls.empty(**kwargs)
        return cls(np.array(t.crop, order="C"), t.origin, **kwargs)

    def tight(self) -> MaskCrop:
        """This mask in its tight box: ``self`` when it already is (no copy), else a view."""
        crop = self.crop
        rows = np.flatnonzero(crop.any(axis=1))
        if rows.size == 0:
            return self if crop.shape == (0, 0) and self.origin == (0, 0) else MaskCrop.empty()
        cols = np.flatnonzero(crop[rows[0] : rows[-1] + 1].any(axis=0))
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        if (y0, x0) == (0, 0) and (y1, x1) == crop.shape:
            return self
        return MaskCrop(crop[y0:y1, x0:x1], (self.origin[0] + x0, self.origin[1] + y0))

    # -- geometry -----------------------------------------------------------------------
    @property
    def x0(self) -> int:
        return self.origin[0]

    @property
    def y0(self) -> int:
        return self.origin[1]

    @property
    def box(self) -> tuple[int, int, int, int]:
        """The crop's box, XYXY pixels (x1, y1 exclusive): the tight box when the crop is tight."""
        h, w = self.crop.shape
        return self.origin[0], self.origin[1], self.origin[0] + w, self.origin[1] + h

    @property
    def slices(self) -> tuple[slice, slice]:
        """The crop's box as ``(rows, cols)`` slices: ``image[rows, cols][crop]`` are its pixels."""
        x0, y0, x1, y1 = self.box
        return slice(y0, y1), slice(x0, x1)

    @property
    def area(self) -> int:
        """Pixels in the mask."""
        return int(np.count_nonzero(self.crop))

    def full(self, image_hw: Sequence[int]) -> np.ndarray:
        """A new ``(H, W)`` bool mask of an image of ``image_hw`` (parts outside it dropped)."""
        h, w = (int(v) for v in image_hw)
        return self.region(0, 0, w, h)

    def region(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """A new bool ``(y1 - y0, x1 - x0)`` array: the mask inside the rectangle ``[y0:y1, x0:x1]``."""
        out = np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)), dtype=bool)
        cx0, cy0, cx1, cy1 = self.box
        ix0, iy0, ix1, iy1 = max(x0, cx0), max(y0, cy0), min(x1, cx1), min(y1, cy1)
        if ix1 > ix0 and iy1 > iy0:
            out[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = self.crop[iy0 - cy0 : iy1 - cy0, ix0 - cx0 : ix1 - cx0]
        return out

    def contains(self, x: float, y: float) -> bool:
        """Whether pixel ``(x, y)`` (image coordinates, truncated to ints) is in the mask."""
        h, w = self.crop.shape
        ix, iy = int(x) - self.origin[0], int(y) - self.origin[1]
        return 0 <= ix < w and 0 <= iy < h and bool(self.crop[iy, ix])

    def shifted(self, dx: int, dy: int) -> MaskCrop:
        """The same crop moved by ``(dx, dy)`` pixels (shares ``crop``)."""
        return MaskCrop(self.crop, (self.origin[0] + dx, self.origin[1] + dy))

    # -- two masks ----------------------------------------------------------------------
    def intersection(self, other: MaskCrop) -> int:
        """Pixels in both masks, counted inside the overlap of the two boxes."""
        ax0, ay0, ax1, ay1 = self.box
        bx0, by0, bx1, by1 = other.box
        x0, y0, x1, y1 = max(ax0, bx0), max(ay0, by0), min(ax1, bx1), min(ay1, by1)
        if x1 <= x0 or y1 <= y0:
            return 0
        pa = self.crop[y0 - ay0 : y1 - ay0, x0 - ax0 : x1 - ax0]
        pb = other.crop[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0]
        return int(np.count_nonzero(pa & pb))

    def iou(self, other: MaskCrop) -> float:
        """Intersection over union of two masks (0 when both are empty)."""
        inter = self.intersection(other)
        union = self.area + other.area - inter
        return inter / union if union else 0.0

    def union(self, other: MaskCrop) -> MaskCrop:
        """One mask covering both, over the box holding both boxes (an empty one adds nothing)."""
        if not self.crop.size:
            return MaskCrop(other.crop, other.origin)
        if not other.crop.size:
            return MaskCrop(self.crop, self.origin)
        ax0, ay0, ax1, ay1 = self.box
        bx0, by0, bx1, by1 = other.box
        x0, y0, x1, y1 = min(ax0, bx0), min(ay0, by0), max(ax1, bx1), max(ay1, by1)
        out = np.zeros((y1 - y0, x1 - x0), dtype=bool)
        out[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0] |= self.crop
        out[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0] |= other.crop
        return MaskCrop(out, (x0, y0))


def crop_boxes(crops: Sequence[MaskCrop]) -> np.ndarray:
    """``(N, 4)`` int64 XYXY boxes of mask crops."""
    return np.array([c.box for c in crops], dtype=np.int64).reshape(-1, 4)


_PAIR_BLOCK = 1 << 21  # cell entries joined at once when looking for overlapping boxes


def box_pairs(a: np.ndarray, b: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of overlapping boxes: ``(i, j)`` int64 index arrays, ``a[i]`` overlapping
    ``b[j]`` with positive area (``b=None``: pairs ``i < j`` within ``a``), ``i`` ascending.

    A uniform grid is the spatial index: each box is entered in the cells it covers (the
    cell as wide as most boxes), boxes meet only within a cell, and a pair is reported in
    the one cell holding its overlap's top-left pixel. Cost grows with the boxes and their
    neighbours, not with ``len(a) x len(b)``: hundreds of thousands of candidates in a
    whole-slide image need no dense matrix.
    """
    a = np.asarray(a, np.int64).reshape(-1, 4)
    same = b is None
    b = a if same else np.asarray(b, np.int64).reshape(-1, 4)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    a_ok = np.flatnonzero((a[:, 2] > a[:, 0]) & (a[:, 3] > a[:, 1]))
    b_ok = a_ok if same else np.flatnonzero((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1]))
    if not len(a_ok) or not len(b_ok):
        return empty
    both = np.concatenate([a[a_ok], b[b_ok]])
    extent = np.maximum(both[:, 2] - both[:, 0], both[:, 3] - both[:, 1])
    cell = int(max(8, np.percentile(extent, 90)))
    x_min, y_min = int(both[:, 0].min()), int(both[:, 1].min())
    ncols = (int(both[:, 2].max()) - x_min - 1) // cell + 1

    def entries(boxes: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(cell key, box index)`` for every cell each box covers."""
        cx0 = (boxes[ids, 0] - x_min) // cell
        cy0 = (boxes[ids, 1] - y_min) // cell
        nx = (boxes[ids, 2] - 1 - x_min) // cell - cx0 + 1
        ny = (boxes[ids, 3] - 1 - y_min) // cell - cy0 + 1
        n = nx * ny
        owner = np.repeat(np.arange(len(ids)), n)
        k = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        keys = (cy0[owner] + k // nx[owner]) * ncols + cx0[owner] + k % nx[owner]
        return keys, ids[owner]

    a_keys, a_ids = entries(a, a_ok)
    b_keys, b_ids = entries(b, b_ok)
    order = np.argsort(b_keys, kind="stable")
    b_keys, b_ids = b_keys[order], b_ids[order]
    lo = np.searchsorted(b_keys, a_keys, "left")
    counts = np.searchsorted(b_keys, a_keys, "right") - lo
    out_i, out_j = [], []
    ends = np.cumsum(counts)
    start = 0
    while start < len(a_keys):  # blocks of entries, so the joined pairs stay small
        stop = int(np.searchsorted(ends, ends[start] - counts[start] + _PAIR_BLOCK, "right"))
        stop = max(stop, start + 1)
        c = counts[start:stop]
        i = np.repeat(a_ids[start:stop], c)
        first = np.repeat(lo[start:stop], c)
        j = b_ids[first + np.arange(int(c.sum())) - np.repeat(np.cumsum(c) - c, c)]
        key = np.repeat(a_keys[start:stop], c)
        ox0, oy0 = np.maximum(a[i, 0], b[j, 0]), np.maximum(a[i, 1], b[j, 1])
        keep = (ox0 < np.minimum(a[i, 2], b[j, 2])) & (oy0 < np.minimum(a[i, 3], b[j, 3]))
        keep &= ((oy0 - y_min) // cell) * ncols + (ox0 - x_min) // cell == key
        if same:
            keep &= i < j
        out_i.append(i[keep])
        out_j.append(j[keep])
        start = stop
    i, j = np.concatenate(out_i), np.concatenate(out_j)
    order = np.lexsort((j, i))
    return i[order], j[order]


def crop_intersections(a: Sequence[MaskCrop], b: Sequence[MaskCrop] | None = None,
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The overlapping pairs of two lists of mask crops (of one image), sparse:
    ``(i, j, pixels in both)`` int64 arrays with ``pixels > 0``, ``i`` ascending
    (``b=None``: pairs ``i < j`` within ``a``). Only masks whose boxes overlap
    (:func:`box_pairs`) are intersected (:meth:`MaskCrop.intersection`)."""
    ii, jj = box_pairs(crop_boxes(a), None if b is None else crop_boxes(b))
    other = a if b is None else b
    inter = np.fromiter((a[i].intersection(other[j]) for i, j in zip(ii.tolist(), jj.tolist(), strict=True)),
                        np.int64, len(ii))
    hit = inter > 0
    return ii[hit], jj[hit], inter[hit]


def crops_iou(a: Sequence[MaskCrop], b: Sequence[MaskCrop]) -> np.ndarray:
    """Pairwise IoU of two lists of mask crops (of one image): ``(len(a), len(b))`` float64.

    Only pairs whose boxes overlap are intersected (:func:`crop_intersections`), so
    thousands of small objects in a large image stay cheap; the matrix itself is dense
    (for many thousands on both sides use :func:`crop_intersections`).
    """
    iou = np.zeros((len(a), len(b)), dtype=np.float64)
    if not len(a) or not len(b):
        return iou
    i, j, inter = crop_intersections(a, b)
    aa = np.array([c.area for c in a], dtype=np.int64)
    ba = np.array([c.area for c in b], dtype=np.int64)
    iou[i, j] = inter / (aa[i] + ba[j] - inter)
    return iou


#: a mask given as one example that holds this many object values (a label image) or separate
#: pieces is said to be several objects
MANY_PIECES = 3


def many_in_mask(original: np.ndarray, mask: np.ndarray) -> str | None:
    """What makes a mask given as one example look like several objects -- ``"is a label image
    of N objects"`` (``original``, the array as given, holds several object values) or ``"holds
    N separate pieces"`` (``mask``, its bool mask) -- or ``None``."""
    import cv2

    original = np.asarray(original)
    values = np.unique(original) if original.ndim == 2 and np.issubdtype(original.dtype, np.integer) else None
    n_values = 0 if values is None else int(np.count_nonzero(values))
    n_pieces = cv2.connectedComponents(np.asarray(mask).astype(np.uint8), connectivity=8)[0] - 1
    if n_values >= MANY_PIECES:
        return f"is a label image of {n_values} objects"
    if n_pieces >= MANY_PIECES:
        return f"holds {n_pieces} separate pieces"
    return None


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO RLE of a bool ``(H, W)`` mask: ``{"size": [H, W], "counts": str}``."""
    from pycocotools import mask as mask_utils

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise AnnotationError(f"mask must have shape (H, W), got {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def crop_to_rle(crop: np.ndarray, origin: Sequence[int], image_hw: Sequence[int]) -> dict[str, Any]:
    """COCO RLE of the full-image mask that is ``crop`` at ``origin`` ``(x0, y0)``, zero elsewhere.

    Byte-identical to ``mask_to_rle`` of that ``(H, W)`` mask, without building it: COCO RLE
    runs column by column over the whole image, so only the full-height strip of the crop's
    columns is run-length coded; the image's columns left and right of it only lengthen the
    first and last runs of zeros. ``pycocotools`` compresses the counts.
    """
    from pycocotools import mask as mask_utils

    h, w = (int(v) for v in image_hw)
    crop = np.asarray(crop)
    if crop.ndim != 2:
        raise AnnotationError(f"mask crop must be 2-D, got shape {crop.shape}")
    x0, y0 = (int(v) for v in origin)
    ch, cw = crop.shape
    if crop.size and (x0 < 0 or y0 < 0 or x0 + cw > w or y0 + ch > h):
        raise AnnotationError(f"mask crop of shape {crop.shape} at (x0={x0}, y0={y0}) lies outside the {h}x{w} image")
    if crop.size:
        counts, x1 = _strip_counts(crop, y0, h), x0 + cw
    else:
        counts, x0, x1 = [0], 0, 0
    counts[0] += x0 * h
    if len(counts) % 2:  # ends with zeros: lengthen that run
        counts[-1] += (w - x1) * h
    elif w > x1:
        counts.append((w - x1) * h)
    rle = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    return {"size": [h, w], "counts": rle["counts"].decode("ascii")}


def _strip_counts(crop: np.ndarray, y0: int, h: int) -> list[int]:
    """Uncompressed RLE counts (zeros first), column-major, of the full-height strip holding
    ``crop`` at row ``y0``: the crop's columns with one weighted cell standing for the ``y0``
    background pixels above and one for the ``h - y0 - crop height`` below."""
    ch, cw = crop.shape
    top, bottom = y0, h - y0 - ch
    t, b = int(top > 0), int(bottom > 0)
    cols = np.zeros((cw, t + ch + b), dtype=np.int8)  # the strip transposed: C order = column-major
    cols[:, t : t + ch] = crop.T
    weights = np.ones(cols.shape[1], dtype=np.int64)
    if t:
        weights[0] = top
    if b:
        weights[-1] = bottom
    flat = cols.reshape(-1)
    ends = np.concatenate(([0], np.cumsum(np.tile(weights, cw))))  # pixels before each cell
    bounds = np.concatenate(([0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]))
    counts = np.diff(ends[bounds]).tolist()
    if flat[0]:
        counts.insert(0, 0)
    return counts


def rle_ious(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]]) -> np.ndarray:
    """``(len(a), len(b))`` IoU of compressed COCO RLEs as stored (``counts`` a string or
    bytes), all of one image size: pycocotools' ``iou`` without crowd regions."""
    from pycocotools import mask as mask_utils

    def coco(rle: dict[str, Any]) -> dict[str, Any]:
        rle = dict(rle)
        if isinstance(rle.get("counts"), str):
            rle["counts"] = rle["counts"].encode()
        return rle

    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)), np.float64)
    out = mask_utils.iou([coco(r) for r in a], [coco(r) for r in b], [0] * len(b))
    return np.asarray(out, np.float64).reshape(len(a), len(b))


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Decode COCO RLE (compressed string or uncompressed list ``counts``) to bool ``(H, W)``."""
    from pycocotools import mask as mask_utils

    try:
        h, w = (int(v) for v in rle["size"])
        counts = rle["counts"]
        runs = [int(c) for c in counts] if isinstance(counts, list) else _string_counts(counts)
    except IndexError:
        raise AnnotationError("invalid RLE: its compressed 'counts' string ends in the middle of a run") from None
    except (KeyError, TypeError, ValueError) as e:
        raise AnnotationError(f"invalid RLE (expected {{'size': [H, W], 'counts': ...}}): {e}") from e
    # pycocotools decodes runs that fall short of H x W into a mask whose rest is whatever the
    # memory held (a truncated file gave a different mask on each read)
    if min(runs, default=0) < 0:
        raise AnnotationError(f"invalid RLE: a negative run length ({min(runs)}) in its 'counts'")
    if sum(runs) != h * w:
        raise AnnotationError(f"invalid RLE: its runs cover {sum(runs):,} pixels, not the {h}x{w} = {h * w:,} "
                              "of its size (a truncated or foreign 'counts'?)")
    try:
        if isinstance(counts, list):
            rle = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
        else:
            rle = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
        return mask_utils.decode(rle).astype(bool)
    except (KeyError, TypeError, ValueError) as e:
        raise AnnotationError(f"invalid RLE (expected {{'size': [H, W], 'counts': ...}}): {e}") from e


def _string_counts(counts: str | bytes) -> list[int]:
    """The run lengths of COCO's compressed RLE string (pycocotools' ``rleFrString``: 5 bits a
    character with a continuation bit, each run after the second one as its difference from
    the run two before), read only to check that they cover the mask's size before pycocotools
    decodes it."""
    data = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    runs: list[int] = []
    p = 0
    while p < len(data):
        x, k, more = 0, 0, True
        while more:
            c = data[p] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return runs


def mask_to_polygons(mask: np.ndarray, tolerance: float = 1.0, min_points: int = 3) -> list[np.ndarray]:
    """Outer contours of a bool ``(H, W)`` mask as polygons, each ``(K, 2)`` float32 XY pixels.

    ``tolerance`` is the Douglas-Peucker simplification distance in pixels (0 keeps every
    contour point). Holes are not returned; each connected part gives one polygon.
    """
    import cv2

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise AnnotationError(f"mask must have shape (H, W), got {mask.shape}")
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return _simplify(contours, tolerance, min_points)


def crop_contours(
    crop: np.ndarray,
    origin: Sequence[int],
    image_hw: Sequence[int],
    method: int | None = None,
) -> list[np.ndarray]:
    """OpenCV's outer contours (``RETR_EXTERNAL``) of the full-image mask that is ``crop`` at
    ``origin`` ``(x0, y0)``, in image coordinates: the same contours, in the same order, as
    ``cv2.findContours`` of the ``(H, W)`` mask.

    The crop gets one row/column of background on each side that does not lie on the image
    border, so the tracing sees what it sees in the full image (OpenCV treats the image
    border specially: a crop edge inside the image must not look like one).
    """
    import cv2

    return list(_traced(crop, origin, image_hw, cv2.RETR_EXTERNAL, method)[0])


def _traced(crop: np.ndarray, origin: Sequence[int], image_hw: Sequence[int], mode: int,
            method: int | None = None) -> tuple[Sequence[np.ndarray], np.ndarray | None]:
    """``cv2.findContours`` (retrieval ``mode``) of the full-image mask that is ``crop`` at
    ``origin``, in image coordinates: ``(contours, hierarchy)`` (see :func:`crop_contours`)."""
    import cv2

    crop = np.asarray(crop)
    if crop.ndim != 2:
        raise AnnotationError(f"mask crop must be 2-D, got shape {crop.shape}")
    if not crop.any():
        return [], None
    h, w = (int(v) for v in image_hw)
    x0, y0 = (int(v) for v in origin)
    ch, cw = crop.shape
    top, left = int(y0 > 0), int(x0 > 0)
    bottom, right = int(y0 + ch < h), int(x0 + cw < w)
    padded = np.zeros((ch + top + bottom, cw + left + right), dtype=np.uint8)
    padded[top : top + ch, left : left + cw] = crop
    method = cv2.CHAIN_APPROX_NONE if method is None else method
    return cv2.findContours(padded, mode, method, offset=(x0 - left, y0 - top))


def crop_outlines(crop: np.ndarray, origin: Sequence[int], image_hw: Sequence[int],
                  tolerance: float = 1.0) -> list[list[np.ndarray]]:
    """``[[exterior, hole, ...], ...]``: each piece of the full-image mask that is ``crop`` at
    ``origin`` and the holes in it (OpenCV's two-level ``RETR_CCOMP`` tracing), each ring
    ``(K, 2)`` float32 in image coordinates, simplified as :func:`crop_to_polygons` does; a
    piece or hole too small to keep three points is left out."""
    import cv2

    pieces = []
    for rings in _two_level(*_traced(crop, origin, image_hw, cv2.RETR_CCOMP)):
        outer, *holes = (_simplify([r], tolerance, 3) for r in rings)
        if outer:
            pieces.append([outer[0], *(h[0] for h in holes if h)])
    return pieces


def _two_level(contours: Sequence[np.ndarray], hierarchy: np.ndarray | None) -> list[list[np.ndarray]]:
    """OpenCV's two-level tracing (``RETR_CCOMP``) as ``[[exterior, hole, ...], ...]``: the
    outer rings, each with its holes (its children)."""
    if hierarchy is None:
        return []
    links = hierarchy[0]
    pieces = []
    for k in np.flatnonzero(links[:, 3] == -1):
        rings, child = [contours[k]], links[k, 2]
        while child != -1:
            rings.append(contours[child])
            child = links[child, 0]
        pieces.append(rings)
    return pieces


def edge_outlines(crop: np.ndarray, origin: Sequence[int], tolerance: float = 0.0) -> list[list[np.ndarray]]:
    """:func:`crop_outlines` on the pixels' edges: ``[[exterior, hole, ...], ...]`` of the mask
    ``crop`` at ``origin`` ``(x0, y0)``, each ring ``(K, 2)`` float32 with its vertices on pixel
    corners (pixel ``(r, c)`` is the square ``c..c+1`` by ``r..r+1``), as QuPath, GeoJSON tools
    and pycocotools read them: filled by pixel centres (:func:`fill_edge_rings`) they give the
    mask back exactly, and the area they enclose is its pixel count (a notch's inner corner
    cut by an eighth of a pixel). Traced by OpenCV on the lattice of corners and edge
    midpoints (each pixel a 3 x 3 block of it); straight runs keep their two ends, and
    ``tolerance`` > 0 simplifies further, as :func:`crop_outlines` does (pixels may move), and
    less where the simplified rings would cross or touch: the rings are always valid polygons.
    """
    import cv2

    crop = np.asarray(crop, bool)
    if crop.ndim != 2:
        raise AnnotationError(f"mask crop must be 2-D, got shape {crop.shape}")
    if not crop.any():
        return []
    ch, cw = crop.shape
    lattice = np.zeros((2 * ch + 3, 2 * cw + 3), np.uint8)  # point (i, j): corner (x, y) = ((j-1)/2, (i-1)/2)
    lattice[2 : 2 * ch + 2 : 2, 2 : 2 * cw + 2 : 2] = crop  # each pixel's centre ...
    lattice = cv2.dilate(lattice, np.ones((3, 3), np.uint8))  # ... grown to its square
    shift = np.array([float(origin[0]) - 0.5, float(origin[1]) - 0.5], np.float32)
    traced = _two_level(*cv2.findContours(lattice, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE))

    def outlined(t: float) -> list[list[np.ndarray]]:  # t in lattice units, which are half pixels
        pieces = [[r.reshape(-1, 2) for r in ([_approx_ring(r, t) for r in rings] if t > 0 else rings) if len(r) >= 3]
                  for rings in traced]
        return [p for p in pieces if p and len(p[0]) >= 3]

    # within the crop's reach (halved as below would halve it: the same outlines), and doubled
    # after: 2 x 1e308 is inf, which halving never brings down
    t = 2.0 * _within_extent(np.array([[0, 0], [cw, ch]]), tolerance)
    pieces = outlined(t)
    # simplified, a ring could cross itself, a hole its exterior, a piece another (GeoJSON
    # outlines OGC and shapely call invalid: 1 in 30 random blobs at --tolerance 3): such an
    # object is simplified less, down to its traced outlines, which never cross
    while t > 0 and _rings_cross([r for p in pieces for r in p]):
        t = t / 2 if t >= 1.0 else 0.0
        pieces = outlined(t)
    return [[r.astype(np.float32) / 2 + shift for r in p] for p in pieces]


def _rings_cross(rings: Sequence[np.ndarray]) -> bool:
    """Whether any two edges of the closed ``(K, 2)`` integer rings meet, other than the
    two edges of one ring that share a vertex (crossing, touching or overlapping)."""
    segs, ring_of, place, size = [], [], [], []
    for k, r in enumerate(rings):
        r = np.asarray(r, np.int64).reshape(-1, 2)
        segs.append(np.concatenate([r, np.roll(r, -1, axis=0)], axis=1))  # x1, y1, x2, y2
        ring_of += [k] * len(r)
        place += range(len(r))
        size += [len(r)] * len(r)
    if not segs:
        return False
    s = np.concatenate(segs)
    lo, hi = np.minimum(s[:, :2], s[:, 2:]), np.maximum(s[:, :2], s[:, 2:])
    order = np.argsort(lo[:, 0], kind="stable")  # blocks of edges side by side in x: each meets few others
    s, lo, hi = s[order], lo[order], hi[order]
    ring_of, place, size = (np.asarray(v)[order] for v in (ring_of, place, size))

    def turn(ax, ay, bx, by, cx, cy):  # the sign of (b - a) x (c - a)
        return np.sign((bx - ax) * (cy - ay) - (by - ay) * (cx - ax))

    for start in range(0, len(s), 256):
        i = np.arange(start, min(start + 256, len(s)))[:, None]
        j = np.nonzero((lo[:, 0] <= hi[i[:, 0], 0].max()) & (hi[:, 0] >= lo[i[:, 0], 0].min()))[0][None, :]
        a, b = s[i[:, 0]][:, None, :], s[j[0]][None, :, :]
        gap = np.abs(place[i] - place[j])
        near = (ring_of[i] == ring_of[j]) & ((gap <= 1) | (gap == size[i] - 1))  # itself, or a neighbour
        boxes = np.all(lo[i] <= hi[j], axis=-1) & np.all(lo[j] <= hi[i], axis=-1)
        d1 = turn(a[..., 0], a[..., 1], a[..., 2], a[..., 3], b[..., 0], b[..., 1])
        d2 = turn(a[..., 0], a[..., 1], a[..., 2], a[..., 3], b[..., 2], b[..., 3])
        d3 = turn(b[..., 0], b[..., 1], b[..., 2], b[..., 3], a[..., 0], a[..., 1])
        d4 = turn(b[..., 0], b[..., 1], b[..., 2], b[..., 3], a[..., 2], a[..., 3])
        if np.any(~near & boxes & (d1 * d2 <= 0) & (d3 * d4 <= 0)):
            return True
    return False


def _approx_ring(ring: np.ndarray, tolerance: float) -> np.ndarray:
    """``ring`` simplified by ``approxPolyDP`` at ``tolerance``, or where that leaves no area
    (under 3 vertices: a small object or hole beside the tolerance), at half of it and so on
    down to the ring itself: simplified less, never away."""
    import cv2

    t = _within_extent(ring, tolerance)
    while t >= 0.5:
        simple = cv2.approxPolyDP(ring, t, True)
        if len(simple) >= 3 and cv2.contourArea(simple) > 0:
            return simple
        t /= 2
    return ring


def fill_edge_rings(rings: Sequence[np.ndarray], hw: tuple[int, int], origin: Sequence[int] = (0, 0)) -> np.ndarray:
    """The ``(h, w)`` bool mask at ``origin`` ``(x0, y0)`` of the pixels whose centres lie inside
    an exterior ring ``rings[0]`` and outside its holes ``rings[1:]`` (``(K, 2)`` x, y with
    vertices on pixel corners, as :func:`edge_outlines` writes them and QuPath reads them)."""
    from skimage.draw import polygon

    out = np.zeros(hw, bool)
    for k, ring in enumerate(rings):
        ring = np.asarray(ring, np.float64)
        # pixel (r, c)'s centre is the corner point (c + 0.5, r + 0.5)
        rr, cc = polygon(ring[:, 1] - float(origin[1]) - 0.5, ring[:, 0] - float(origin[0]) - 0.5, shape=hw)
        out[rr, cc] = k == 0
    return out


def crop_to_polygons(
    crop: np.ndarray,
    origin: Sequence[int],
    image_hw: Sequence[int],
    tolerance: float = 1.0,
    min_points: int = 3,
) -> list[np.ndarray]:
    """:func:`mask_to_polygons` of the full-image mask that is ``crop`` at ``origin`` ``(x0, y0)``."""
    return _simplify(crop_contours(crop, origin, image_hw), tolerance, min_points)


def crop_to_edge_polygons(crop: np.ndarray, origin: Sequence[int], tolerance: float = 1.0,
                          min_points: int = 3) -> list[np.ndarray] | None:
    """The outlines of the mask ``crop`` at ``origin`` ``(x0, y0)`` with their vertices on
    pixel corners, simplified by ``tolerance`` pixels as :func:`edge_outlines` simplifies them
    (less where they would cross or touch): COCO's polygons, which pycocotools fills back
    (:func:`coco_polygons_to_crop`) to the mask itself where ``tolerance`` is 0; ``None``
    where the mask has a hole, which polygons would fill."""
    pieces = edge_outlines(crop, origin, tolerance)
    if any(len(rings) > 1 for rings in pieces):
        return None
    return [rings[0] for rings in pieces if len(rings[0]) >= min_points]


def _within_extent(points: np.ndarray, tolerance: float) -> float:
    """``tolerance`` halved until it lies within the outline's extent (its box's diagonal + 1 px):
    past that every point lies within it of any chord, so the simplifications halve it to there
    anyway, and the result is theirs; OpenCV refuses a tolerance of 1e30 or more ("Epsilon not
    valid": --tolerance 1e308 was an internal error)."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    extent = float(np.hypot(*np.ptp(pts, axis=0))) + 1.0 if len(pts) else 1.0
    t = float(tolerance)
    if not np.isfinite(t):
        return extent
    if t > extent:  # halvings by powers of two are exact: the very value the loops would reach
        t = t / 2.0 ** float(np.ceil(np.log2(t / extent)))
    return t


def _simplify(contours: Sequence[np.ndarray], tolerance: float, min_points: int) -> list[np.ndarray]:
    import cv2

    polygons = []
    for c in contours:
        t = _within_extent(c, tolerance)
        simple = c
        while t > 0:  # an object small beside the tolerance is simplified less, not away
            simple = cv2.approxPolyDP(c, t, True)
            if len(simple) >= min_points:
                break
            t = t / 2 if t >= 0.5 else 0.0
        pts = (simple if t > 0 else c).reshape(-1, 2).astype(np.float32)
        if len(pts) >= min_points:
            polygons.append(pts)
    return polygons


def polygons_to_crop(polygons: Sequence[np.ndarray] | np.ndarray, image_hw: tuple[int, int]) -> MaskCrop:
    """:func:`polygons_to_mask` as a :class:`MaskCrop` over the polygons' bounding box (clipped
    to the image). A polygon wholly outside gives an empty one."""
    import cv2

    h, w = image_hw
    pts = _polygon_points(polygons)
    allp = np.concatenate(pts, axis=0)
    x0, y0 = max(int(allp[:, 0].min()), 0), max(int(allp[:, 1].min()), 0)
    x1, y1 = min(int(allp[:, 0].max()) + 1, w), min(int(allp[:, 1].max()) + 1, h)
    if x1 <= x0 or y1 <= y0:
        return MaskCrop.empty()
    out = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    cv2.fillPoly(out, [p - np.array([x0, y0], dtype=np.int32) for p in pts], 1)
    return MaskCrop(out.astype(bool), (x0, y0))


def coco_polygons_to_crop(polygons: Sequence[Any], image_hw: tuple[int, int]) -> MaskCrop:
    """COCO polygons (each a flat ``[x1, y1, x2, y2, ...]``; several: their union) filled as
    pycocotools, the format's reference, fills them -- vertices on pixel corners, pixel
    ``(r, c)`` the square ``c..c+1`` by ``r..r+1`` -- as a :class:`MaskCrop` over their box
    (clipped to the image). OpenCV's ``fillPoly`` (:func:`polygons_to_crop`) reads vertices as
    pixel centres and would grow each object by a pixel right and below."""
    from pycocotools import mask as mask_utils

    h, w = image_hw
    pts = _polygon_points(polygons, rounded=False)
    allp = np.concatenate(pts, axis=0)
    # a pixel's margin round the box: pycocotools' fill is the same shifted by whole pixels
    x0, y0 = max(int(np.floor(allp[:, 0].min())) - 1, 0), max(int(np.floor(allp[:, 1].min())) - 1, 0)
    x1, y1 = min(int(np.ceil(allp[:, 0].max())) + 1, w), min(int(np.ceil(allp[:, 1].max())) + 1, h)
    if x1 <= x0 or y1 <= y0:
        return MaskCrop.empty()
    shift = np.array([x0, y0], np.float64)
    rles = mask_utils.frPyObjects([(p - shift).ravel().tolist() for p in pts], y1 - y0, x1 - x0)
    return MaskCrop(mask_utils.decode(mask_utils.merge(rles)).astype(bool), (x0, y0))


def _polygon_points(polygons: Sequence[np.ndarray] | np.ndarray, rounded: bool = True) -> list[np.ndarray]:
    """Each polygon's points, rounded to int32 (``rounded``) or float64: ``polygons`` is one
    ``(K, 2)`` polygon (an array, or a list of ``(x, y)`` pairs) or a sequence of polygons,
    each ``(K, 2)`` or COCO's flat ``[x1, y1, x2, y2, ...]``."""
    if not isinstance(polygons, np.ndarray) and _is_point_list(polygons):
        polygons = _coordinates(polygons)
    elif not isinstance(polygons, np.ndarray) and _is_number_list(polygons):
        polygons = [polygons]  # one COCO flat polygon, not a list of polygons of one number each
    if isinstance(polygons, np.ndarray) and polygons.ndim == 2:
        polygons = [polygons]
    pts = []
    for p in polygons:
        p = _coordinates(p)
        if p.ndim == 1 and p.size % 2 == 0:  # COCO flat [x1, y1, x2, y2, ...]
            p = p.reshape(-1, 2)
        if p.ndim != 2 or p.shape[1] != 2 or len(p) < 3:
            raise AnnotationError(f"a polygon needs at least 3 (x, y) points, got shape {p.shape}")
        if not np.isfinite(p).all():
            raise AnnotationError("polygon coordinates must be finite numbers")
        pts.append(np.round(p).astype(np.int32) if rounded else p)
    if not pts:  # an empty list, or a polygon file with no line in it
        raise AnnotationError("no polygon given: a polygon is 3 or more (x, y) points")
    return pts


def _coordinates(p: Any) -> np.ndarray:
    """A polygon's points as float64, or :class:`AnnotationError` where they are not numbers
    (``["a", "b"]`` in a JSON file was a ``ValueError`` from numpy)."""
    try:
        return np.asarray(p, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise AnnotationError(f"polygon coordinates must be numbers ({e})") from None


def _is_number_list(polygons: Any) -> bool:
    """Whether a list is one polygon's flat ``[x1, y1, x2, y2, ...]`` (every item a number)."""
    try:
        return len(polygons) > 0 and all(np.isscalar(v) and not isinstance(v, str) for v in polygons)
    except TypeError:
        return False


def _is_point_list(polygons: Any) -> bool:
    """Whether a list is one polygon's ``(x, y)`` pairs (``[(10, 10), (30, 10), (30, 30)]``)
    rather than a list of polygons: every item a pair of numbers. A polygon has 3 or more
    points, so a list of polygons never reads as one."""
    try:
        return all(len(p) == 2 and all(np.isscalar(v) for v in p) for p in polygons) and len(polygons) > 0
    except TypeError:  # an item without a length: not pairs
        return False


def polygons_to_mask(polygons: Sequence[np.ndarray] | np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Rasterise polygons (each ``(K, 2)`` XY pixels, K >= 3) to a bool ``(H, W)`` mask."""
    import cv2

    h, w = image_hw
    pts = _polygon_points(polygons)
    out = np.zeros((h, w), dtype=np.uint8)
    cv2.fillPoly(out, pts, 1)
    return out.astype(bool)


def box_to_mask(box: Sequence[float], image_hw: tuple[int, int]) -> np.ndarray:
    """Bool ``(H, W)`` mask filling the XYXY ``box`` (clipped to the image)."""
    return box_to_crop(box, image_hw).full(image_hw)


def box_to_crop(box: Sequence[float], image_hw: tuple[int, int]) -> MaskCrop:
    """:func:`box_to_mask` as a :class:`MaskCrop`: all-``True`` over the box's pixels."""
    x1, y1, x2, y2 = validate_box(box, image_hw)
    x0, y0 = int(np.floor(x1)), int(np.floor(y1))
    return MaskCrop(np.ones((int(np.ceil(y2)) - y0, int(np.ceil(x2)) - x0), dtype=bool), (x0, y0))


def _numbers(values: Sequence[float], what: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise AnnotationError(f"a {what} is a list of numbers, got {str(values)[:80]!r}") from None


def _show(values: np.ndarray) -> str:
    """``10,10,nan,60``: plain numbers, as a user would type them (not ``np.float64(nan)``)."""
    return ",".join(f"{float(v):g}" for v in values[:8]) + (",..." if len(values) > 8 else "")


def box_fault(box: Sequence[float]) -> str | None:
    """What is wrong with the finite XYXY ``box`` whatever the image (inverted, zero area), or
    ``None``: the command line says it as it reads ``--box``, before any work."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 < x1 or y2 < y1:
        fixed = f"{min(x1, x2):g},{min(y1, y2):g},{max(x1, x2):g},{max(y1, y2):g}"
        return (f"box {x1:g},{y1:g},{x2:g},{y2:g} is inverted: x1,y1 is the top-left corner and x2,y2 "
                f"the bottom-right (did you mean {fixed}?)")
    if x2 == x1 or y2 == y1:
        return f"box {x1:g},{y1:g},{x2:g},{y2:g} has zero area (need x2 > x1 and y2 > y1)"
    return None


def validate_box(box: Sequence[float], image_hw: tuple[int, int]) -> np.ndarray:
    """Check an XYXY box against an image of ``(H, W)``; returns it clipped, float32 ``(4,)``.

    Raises :class:`AnnotationError` for a malformed box, one with zero area, or one
    entirely outside the image.
    """
    h, w = image_hw
    b = _numbers(box, "box")
    if b.shape != (4,) or not np.isfinite(b).all():
        raise AnnotationError(f"a box needs 4 finite numbers x1,y1,x2,y2, got {_show(b)}")
    x1, y1, x2, y2 = b
    fault = box_fault(b)
    if fault is not None:
        raise AnnotationError(fault)
    if x2 <= 0 or y2 <= 0 or x1 >= w or y1 >= h:
        raise AnnotationError(f"box {x1:g},{y1:g},{x2:g},{y2:g} lies outside the {w}x{h} image")
    return np.array([max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)], dtype=np.float32)


def refuse_polygon_outside(polygons: Sequence[np.ndarray] | np.ndarray, image_hw: tuple[int, int]) -> None:
    """Raise :class:`AnnotationError` where ``polygons`` (as :func:`polygons_to_mask` takes
    them) lie wholly outside an image of ``(H, W)``, said as :func:`validate_box` says it of a
    box: their empty mask was called "zero area", a fault of the shape, not of where it lies."""
    h, w = image_hw
    pts = np.concatenate(_polygon_points(polygons, rounded=False))
    (x1, y1), (x2, y2) = pts.min(axis=0), pts.max(axis=0)
    if x2 <= 0 or y2 <= 0 or x1 >= w or y1 >= h:
        raise AnnotationError(f"polygon spanning {x1:g},{y1:g},{x2:g},{y2:g} lies outside the {w}x{h} image")


def validate_point(point: Sequence[float], image_hw: tuple[int, int]) -> np.ndarray:
    """Check an XY point against an image of ``(H, W)``; returns float32 ``(2,)``."""
    h, w = image_hw
    p = _numbers(point, "point")
    if p.shape != (2,) or not np.isfinite(p).all():
        raise AnnotationError(f"a point needs 2 finite numbers x,y, got {_show(p)}")
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

    The dense form of :meth:`~sam_detect.instances.Instances.from_label_image` (``N x H x W``
    bytes: prefer that one for many objects on large images).
    """
    from sam_detect.instances import Instances

    inst, ids = Instances.from_label_image(label_image)
    return inst.masks, ids

#: lossy image formats: a mask saved so carries the compression's noise along every edge
#: (values 1-40 beside its 0s, 215-254 beside its 255s), so its non-zero pixels are not its object
LOSSY_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")
#: a lossy file is a binary mask's where the pixels between a quarter and three quarters of its
#: maximum are under this share of those above half of it (a JPEG of a mask: 0 at quality 75;
#: a photograph or a fluorescence frame: 1.5 or more)
LOSSY_MASK_MIDDLE = 0.05


def lossy_mask(arr: np.ndarray) -> np.ndarray | None:
    """``(H, W)`` bool: the object a JPEG of a binary mask marks -- its pixels above half its
    maximum (any channel's, for colour) -- or ``None`` where ``arr`` is no such mask (its
    values spread between its two levels, as an image's do). Read by its non-zero pixels, a
    JPEG of one mask was the mask grown by the compression's noise round it (163 px as 266)."""
    a = np.asarray(arr)
    if a.ndim == 3:
        a = a.max(axis=-1)
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.integer) or not a.size:
        return None
    top = float(a.max())
    if top <= 0:
        return None
    high = a > top / 2
    middle = np.count_nonzero((a > top / 4) & (a < 3 * top / 4))
    return high if middle < LOSSY_MASK_MIDDLE * max(np.count_nonzero(high), 1) else None


def mask_of_image(arr: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: the object a mask image marks, non-zero on a zero background. Grey:
    its non-zero pixels; colour: those non-zero in any channel. An alpha channel (the last of
    2 or 4) counts only where it varies (a transparent background marks what is not the
    object); a constant one, as an opaque RGBA or grey+alpha PNG has, is left out."""
    arr = np.asarray(arr)
    if arr.ndim != 3:
        return arr > 0
    if arr.shape[-1] in (2, 4):
        alpha = arr[..., -1]
        colour = arr[..., :-1].max(axis=-1) > 0
        return colour if alpha.min() == alpha.max() else alpha > 0
    return arr.max(axis=-1) > 0
