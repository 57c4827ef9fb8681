"""Masks kept as small crops, mask NMS, and tiling of large images.

A full-image bool mask of a 4k x 4k mosaic is 16 MB; hundreds of them do not fit in
memory while candidates are compared. :class:`TileMask` keeps only the mask's tight box
region and its offset (a :class:`~sam_detect.masks.MaskCrop`), so IoU, NMS and merging across tiles touch only the pixels that
matter, and segmenters hand the crops to ``Instances.from_crops`` as they are
(:func:`to_full_masks` builds a dense ``(N, H, W)`` array, for small images and tests).

Tiles overlap; a mask that touches a tile side lying inside the image is probably cut off
there, so when two masks from different tiles overlap, a whole one (touching no inner
side) wins over a cut one, and two cut pieces of the same object are joined.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sam_detect.masks import MaskCrop


@dataclass(eq=False)
class TileMask(MaskCrop):
    """A candidate mask (a :class:`~sam_detect.masks.MaskCrop`, tight) with what tiling needs.

    Attributes:
        crop, origin: the mask, as :class:`~sam_detect.masks.MaskCrop` keeps it.
        score: ranking score (higher is better).
        info: per-mask values carried to the output (``point``, ``stability_score`` ...).
        cut: whether the mask touches a tile side that lies inside the image.
        tile: index of the tile it came from (``-1``: no tiling).
        window: that tile, XYXY pixels (``None``: no tiling).
    """

    score: float = 1.0
    info: dict[str, Any] = field(default_factory=dict)
    cut: bool = False
    tile: int = -1
    window: tuple[int, int, int, int] | None = None

    def shifted(self, dx: int, dy: int) -> TileMask:
        win = self.window
        if win is not None:
            win = (win[0] + dx, win[1] + dy, win[2] + dx, win[3] + dy)
        return TileMask(
            self.crop, (self.x0 + dx, self.y0 + dy), self.score, dict(self.info), self.cut, self.tile, win
        )


def union(a: TileMask, b: TileMask) -> TileMask:
    """One mask covering both; keeps ``a``'s score and info (and the higher score)."""
    m = MaskCrop.union(a, b)
    win = None
    if a.window is not None and b.window is not None:
        win = (
            min(a.window[0], b.window[0]),
            min(a.window[1], b.window[1]),
            max(a.window[2], b.window[2]),
            max(a.window[3], b.window[3]),
        )
    return TileMask(m.crop, m.origin, max(a.score, b.score), dict(a.info), a.cut and b.cut, a.tile, win)


def _boxes(items: Sequence[TileMask]) -> np.ndarray:
    return np.array([m.box for m in items], dtype=np.int64).reshape(-1, 4)


def mask_nms(items: Sequence[TileMask], iou_thresh: float) -> list[TileMask]:
    """Greedy non-maximum suppression by mask IoU, best ``score`` first.

    Only pairs whose boxes overlap are compared, so it stays fast for thousands of masks.
    """
    order = sorted(range(len(items)), key=lambda i: -items[i].score)
    kept: list[TileMask] = []
    kept_boxes = np.zeros((max(len(items), 1), 4), dtype=np.int64)  # boxes of kept
    for i in order:
        m = items[i]
        x0, y0, x1, y1 = m.box
        b = kept_boxes[: len(kept)]
        overlap = np.flatnonzero((b[:, 0] < x1) & (b[:, 2] > x0) & (b[:, 1] < y1) & (b[:, 3] > y0))
        if any(m.iou(kept[j]) > iou_thresh for j in overlap):
            continue
        kept_boxes[len(kept)] = (x0, y0, x1, y1)
        kept.append(m)
    return kept


def tile_windows(
    image_hw: tuple[int, int], tile: int, overlap: int, even: bool = False
) -> list[tuple[int, int, int, int]]:
    """Overlapping square windows covering an image, XYXY pixels (exclusive ends).

    Windows are ``tile`` pixels wide (smaller only where the image is), start every
    ``tile - overlap`` pixels, and the last one in each row/column ends at the border.

    ``even``: instead, the fewest windows of at most ``tile`` pixels that overlap by at
    least ``overlap``, all of one size and evenly spread, so that little is done twice
    (a 4096-pixel side in tiles of 2048 with overlap 128: three of 1451, not three of 2048).

    Raises:
        ValueError: ``tile <= overlap`` or ``overlap < 0``.
    """
    if overlap < 0 or tile <= overlap:
        raise ValueError(f"need tile > overlap >= 0, got tile={tile}, overlap={overlap}")
    h, w = image_hw

    def spans(n: int) -> list[tuple[int, int]]:
        if n <= tile:
            return [(0, n)]
        if even:
            k = -(-(n - overlap) // (tile - overlap))  # ceil: the fewest windows
            size = -(-(n + (k - 1) * overlap) // k)  # <= tile; k * size >= n + (k - 1) * overlap
            return [((i * (n - size)) // (k - 1), (i * (n - size)) // (k - 1) + size) for i in range(k)]
        out = list(range(0, n - tile, tile - overlap))
        out.append(n - tile)
        return [(s, s + tile) for s in sorted(set(out))]

    return [(x0, y0, x1, y1) for y0, y1 in spans(h) for x0, x1 in spans(w)]


def cut_by_window(box: Sequence[float], window: Sequence[float], image_hw: tuple[int, int]) -> bool:
    """Whether ``box`` (XYXY, ends exclusive, inside ``window``) touches a side of ``window``
    (XYXY) that lies inside an ``image_hw`` image: there the window, not the image, may cut
    the object off. Both in image coordinates."""
    h, w = image_hw
    wx0, wy0, wx1, wy1 = window
    return bool(
        (box[0] <= wx0 and wx0 > 0)
        or (box[1] <= wy0 and wy0 > 0)
        or (box[2] >= wx1 and wx1 < w)
        or (box[3] >= wy1 and wy1 < h)
    )


def mark_cut(
    item: TileMask, window: tuple[int, int, int, int], image_hw: tuple[int, int]
) -> TileMask:
    """Record ``window`` (XYXY) in ``item`` and set ``item.cut`` when the mask touches a side
    of the window that lies inside the image (:func:`cut_by_window`). ``item`` is in image
    coordinates.
    """
    item.window = tuple(int(v) for v in window)
    item.cut = cut_by_window(item.box, window, image_hw)
    return item


def _zone_iou(a: TileMask, b: TileMask) -> float:
    """IoU of two masks inside the region both their tiles saw (0 without windows)."""
    if a.window is None or b.window is None:
        return 0.0
    zx0, zy0 = max(a.window[0], b.window[0]), max(a.window[1], b.window[1])
    zx1, zy1 = min(a.window[2], b.window[2]), min(a.window[3], b.window[3])
    if zx1 <= zx0 or zy1 <= zy0:
        return 0.0

    def clip(m: MaskCrop) -> MaskCrop:
        x0, y0, x1, y1 = m.box
        cx0, cy0, cx1, cy1 = max(x0, zx0), max(y0, zy0), min(x1, zx1), min(y1, zy1)
        if cx1 <= cx0 or cy1 <= cy0:
            return MaskCrop.empty()
        return MaskCrop(m.region(cx0, cy0, cx1, cy1), (cx0, cy0))

    return clip(a).iou(clip(b))


def merge_tiled(
    items: Sequence[TileMask],
    iou_thresh: float = 0.5,
    contain_thresh: float = 0.5,
    disjoint: bool = False,
    trim: bool = False,
) -> list[TileMask]:
    """Merge masks found in overlapping tiles (image coordinates; ``cut``, ``tile`` and
    ``window`` set by :func:`mark_cut`).

    Whole masks come first (by score), then cut ones. A mask is dropped when it repeats a
    kept one (IoU above ``iou_thresh``), or, if it is cut, when most of it
    (``contain_thresh``) lies inside a kept mask. Two cut masks from different tiles that
    agree where both tiles saw the image (IoU above ``iou_thresh`` in the shared region)
    are pieces of one object and are joined.

    ``disjoint``: the masks of one tile never overlap (they come from a label image), so
    a mask that overlaps kept masks (of other tiles) is a fragment or a repeat of what they
    hold: any mask, cut or whole, is dropped when the kept masks together cover most of it
    (a seam through a cluster can cut off a piece that looks whole in its tile, or one
    that straddles two objects another tile saw whole). Leave it off for segmenters that
    propose overlapping masks (a part and its whole).

    ``trim`` (with ``disjoint``): a mask kept beside kept masks it overlaps (less than
    ``contain_thresh`` of it) loses the pixels they hold, so that the output never overlaps:
    a piece a seam cut off across a neighbour another tile saw whole keeps only its own part.

    Only masks whose boxes overlap are compared, so thousands of masks merge quickly.
    """
    order = sorted(range(len(items)), key=lambda i: (items[i].cut, -items[i].score))
    kept: list[TileMask] = []
    kept_area: list[int] = []
    boxes = np.zeros((max(len(items), 1), 4), dtype=np.int64)  # boxes of kept[:len(kept)]
    for i in order:
        m = items[i]
        x0, y0, x1, y1 = m.box
        area = m.area
        nk = len(kept)
        b = boxes[:nk]
        cand = np.flatnonzero((b[:, 0] < x1) & (b[:, 2] > x0) & (b[:, 1] < y1) & (b[:, 3] > y0))
        absorbed = False
        covered = 0
        for j in cand:
            k = kept[j]
            inter = m.intersection(k)
            if inter == 0:
                continue
            iou = inter / (area + kept_area[j] - inter)
            if m.cut and k.cut and m.tile != k.tile and _zone_iou(m, k) > iou_thresh:
                kept[j] = union(k, m)
                kept_area[j] = kept[j].area
                boxes[j] = kept[j].box
                absorbed = True
                break
            covered = covered + inter if disjoint else max(covered, inter)
            inside = covered / area > contain_thresh
            if iou > iou_thresh or (inside and (m.cut or disjoint)):
                absorbed = True
                break
        if not absorbed and trim and disjoint and covered:
            m = _without(m, [kept[j] for j in cand])
            if m is None:
                continue
            area = m.area
            x0, y0, x1, y1 = m.box
        if not absorbed:
            kept.append(m)
            kept_area.append(area)
            boxes[nk] = (x0, y0, x1, y1)
    return kept


def _without(m: TileMask, others: Sequence[TileMask]) -> TileMask | None:
    """``m`` less the pixels of ``others``, tight; ``None`` where nothing is left."""
    x0, y0, x1, y1 = m.box
    crop = m.crop.copy()
    for k in others:
        crop &= ~k.region(x0, y0, x1, y1)
    if not crop.any():
        return None
    t = MaskCrop(crop, (x0, y0)).tight()
    return TileMask(t.crop, t.origin, m.score, dict(m.info), m.cut, m.tile, m.window)


#: without a tile size, SAM2 tiles an image whose longer side exceeds this many encoder
#: input sides, in tiles of one input side (a 4096-pixel image at 1024: 16 px per feature
#: cell in a tile instead of 64 px over the whole image)
SAM2_AUTO_TILE_FACTOR = 2


def sam2_windows(
    image_hw: tuple[int, int], input_size: int, tile_size: int | None, overlap: int
) -> list[tuple[int, int, int, int]]:
    """The windows SAM2 encodes an image in, XYXY pixels: the whole image, or tiles.

    The one scale policy of the ``sam2`` segmenter and the ``sam2`` embedder:
    ``tile_size=None``: tiles of ``input_size`` pixels when the longer side exceeds
    ``SAM2_AUTO_TILE_FACTOR * input_size``; ``0``: never tile; ``n``: tiles of ``n`` pixels
    when the longer side exceeds ``n``. Tiles overlap by ``overlap`` pixels
    (:func:`tile_windows`).
    """
    h, w = image_hw
    if tile_size == 0:
        return [(0, 0, w, h)]
    limit = tile_size if tile_size else SAM2_AUTO_TILE_FACTOR * input_size
    if max(h, w) <= limit:
        return [(0, 0, w, h)]
    return tile_windows(image_hw, int(tile_size or input_size), overlap)


def best_window(
    box: Sequence[float],
    tiles: Sequence[tuple[int, int, int, int]],
    image_hw: tuple[int, int],
    side: int,
) -> tuple[int, int, int, int]:
    """The window that holds ``box`` (XYXY) best: the tile with the widest margin around it,
    else (the box fits in no tile) a window of its own, ``max(side, 2 * box side)`` pixels,
    centred on the box and shifted inside the image."""
    x0, y0, x1, y1 = (float(v) for v in box)
    best, margin = None, -1.0
    for t in tiles:
        tx0, ty0, tx1, ty1 = t
        m = min(x0 - tx0, y0 - ty0, tx1 - x1, ty1 - y1)
        if m >= 0 and m > margin:
            best, margin = t, m
    if best is not None:
        return best
    h, w = image_hw
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    s = int(max(side, 2 * (x1 - x0), 2 * (y1 - y0)))
    wx0 = int(np.clip(cx - s / 2, 0, max(w - s, 0)))
    wy0 = int(np.clip(cy - s / 2, 0, max(h - s, 0)))
    return (wx0, wy0, min(wx0 + s, w), min(wy0 + s, h))


def tile_cores(
    windows: Sequence[tuple[int, int, int, int]], image_hw: tuple[int, int]
) -> list[tuple[int, int, int, int]]:
    """The part of each window (XYXY) that it owns: overlaps are split at their middle, so
    the cores of :func:`tile_windows` windows tile the image without gaps or overlaps."""
    h, w = image_hw

    def bounds(spans: set[tuple[int, int]], n: int) -> dict[tuple[int, int], tuple[int, int]]:
        spans_sorted = sorted(spans)
        out = {}
        for i, (a, b) in enumerate(spans_sorted):
            lo = 0 if i == 0 else (a + spans_sorted[i - 1][1]) // 2
            hi = n if i == len(spans_sorted) - 1 else (spans_sorted[i + 1][0] + b) // 2
            out[(a, b)] = (lo, hi)
        return out

    xs = bounds({(x0, x1) for x0, _, x1, _ in windows}, w)
    ys = bounds({(y0, y1) for _, y0, _, y1 in windows}, h)
    return [_pair(xs[(x0, x1)], ys[(y0, y1)]) for x0, y0, x1, y1 in windows]


def _pair(xr: tuple[int, int], yr: tuple[int, int]) -> tuple[int, int, int, int]:
    return xr[0], yr[0], xr[1], yr[1]


def to_full_masks(items: Sequence[TileMask], image_hw: tuple[int, int]) -> np.ndarray:
    """``(N, H, W)`` bool full-image masks of local masks (parts outside the image dropped)."""
    out = np.zeros((len(items), *image_hw), dtype=bool)
    for i, m in enumerate(items):
        out[i] = m.full(image_hw)
    return out


__all__ = [
    "SAM2_AUTO_TILE_FACTOR",
    "TileMask",
    "best_window",
    "mark_cut",
    "mask_nms",
    "merge_tiled",
    "sam2_windows",
    "tile_cores",
    "tile_windows",
    "to_full_masks",
    "union",
]
