"""``views``: several descriptions of each object side by side, weighed per library.

One vector per object made of six *views*, each L2-normalised on its own and the whole
divided by ``sqrt(6)`` (so the vector is a unit vector and its cosine with another is the
mean of the six views' cosines):

==========  =====  ====================================================================
view        size   contents
==========  =====  ====================================================================
``deep``     1280  EfficientNet-Lite0's last feature map (stride 32), pooled under the mask
``context``  1280  the same map pooled over a ring around the object (half its size wide):
                   what surrounds it, as a context crop shows (a fragment's ring holds
                   the rest of its object)
``mid``       152  its stride-8 (40 channels) and stride-16 (112 channels) maps, pooled
                   under the mask: texture and local pattern
``colour``     28  intensity statistics and grey histogram inside the mask, contrast
                   against the surroundings (:mod:`sam_detect.embed.handcrafted`)
``shape``      13  log area, eccentricity, solidity, extent, circularity, Hu moments
``texture``    12  LBP histogram and gradient statistics inside the mask
==========  =====  ====================================================================

**Dense features.** The network runs once over the whole image (in overlapping tiles when
it is large), not once per object: every object's appearance views are pooled from the
same feature maps, weighting each feature cell by the share of it that the mask covers.
The image is first resized so the median object of the call measures ``target`` pixels
(square root of its area); the same rule for examples and for candidates keeps objects
pooled at the same object-to-cell ratio wherever they come from. ``embed(crops, masks)``
(a single object per crop, for the UI and ``get_crop``) follows the same rule per crop.

**View weights** are not part of the vector: a library chooses them from its examples
(:mod:`sam_detect.decide`) and applies them to the query vector only
(:func:`weighted_query`), so stored vectors are never rewritten.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sam_detect.embed.base import l2_normalize

#: (name, size) of each view, in vector order
VIEWS: tuple[tuple[str, int], ...] = (
    ("deep", 1280),
    ("context", 1280),
    ("mid", 152),
    ("colour", 28),
    ("shape", 13),
    ("texture", 12),
)
DIM = sum(size for _, size in VIEWS)
#: the median object's side (sqrt of its area) after resizing, in pixels
DEFAULT_TARGET = 32.0
#: resize factors are kept in [MIN_SCALE, MAX_SCALE]
MIN_SCALE, MAX_SCALE = 0.125, 4.0
#: network input: an image up to ``TILE`` pixels a side (after resizing) runs in one pass; a
#: larger one in tiles of ``min(TILE, TILE_SIDE)`` (multiples of 32) overlapping by ``MARGIN``
#: on each side. Tiles of 1024 ran 1.1-1.3x faster than 2048 under the CPU's bf16 with the
#: same objects and F1 on four HeLa mosaics (docs/performance.md, "Session 26"); each axis's
#: tiles are then made as small as still covers it in as many tiles (``_tile_side``)
TILE, TILE_SIDE, MARGIN = 2048, 1024, 64
_STRIDES = (8, 16, 32)


def views_of(embedder_id: str) -> tuple[tuple[str, int], ...] | None:
    """The views of the vectors an embedder id makes, or ``None`` (one view)."""
    return VIEWS if str(embedder_id).startswith("views:v1:") else None


def view_slices(views: Sequence[tuple[str, int]] = VIEWS) -> dict[str, slice]:
    """``{view name: slice}`` into the vector."""
    out, start = {}, 0
    for name, size in views:
        out[name] = slice(start, start + size)
        start += size
    return out


def weighted_query(vectors: np.ndarray, weights: dict[str, float], views=VIEWS) -> tuple[np.ndarray, float]:
    """Query vectors whose cosine with a stored vector ranks by the weighted view similarity.

    Stored vectors hold every view as a unit vector divided by ``sqrt(V)``. A query with
    view ``v`` scaled by ``w_v`` (``sum w = 1``) has cosine ``sum_v w_v cos_v / (sqrt(V)
    * |w|)`` with it; returns the scaled queries ``(N, D)`` and the factor
    ``sqrt(V) * |w|`` that turns a store's cosine back into ``sum_v w_v cos_v``.
    """
    x = np.array(vectors, dtype=np.float32, copy=True)
    w = np.array([max(float(weights.get(name, 0.0)), 0.0) for name, _ in views], np.float64)
    if w.sum() <= 0:
        raise ValueError("view weights must not all be zero")
    w = w / w.sum()
    for (name, _), wv in zip(views, w, strict=True):
        x[:, view_slices(views)[name]] *= wv
    return x, float(np.sqrt(len(views)) * np.linalg.norm(w))


def view_similarities(queries: np.ndarray, examples: np.ndarray, views=VIEWS) -> np.ndarray:
    """``(V, N, M)`` cosine similarity of every query to every example, view by view."""
    q = np.asarray(queries, np.float32)
    e = np.asarray(examples, np.float32)
    scale = float(len(views))  # each view is a unit vector / sqrt(V): dot * V is its cosine
    return np.stack([(q[:, sl] @ e[:, sl].T) * scale for sl in view_slices(views).values()])


# -- dense network features -------------------------------------------------------------
def choose_scale(areas: np.ndarray, target: float) -> float:
    """Resize factor that brings the median object (``sqrt(area)``) to ``target`` pixels."""
    areas = np.asarray(areas, np.float64)
    areas = areas[areas > 0]
    if areas.size == 0:
        return 1.0
    return float(np.clip(target / np.sqrt(np.median(areas)), MIN_SCALE, MAX_SCALE))


def _object_pixels(crops: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(owner, ys, xs)`` int64: every mask pixel of the crops, in crop coordinates, object by object."""
    parts = [np.nonzero(c) for c in crops]
    counts = np.array([len(y) for y, _ in parts], np.int64)
    owner = np.repeat(np.arange(len(parts), dtype=np.int64), counts)
    if not len(parts) or not counts.sum():
        empty = np.zeros(0, np.int64)
        return owner, empty, empty
    ys = np.concatenate([y for y, _ in parts]).astype(np.int64, copy=False)
    xs = np.concatenate([x for _, x in parts]).astype(np.int64, copy=False)
    return owner, ys, xs


def _cells_1d(
    v: np.ndarray, owner: np.ndarray, start: np.ndarray, length: np.ndarray, step: float, n_cells: int
) -> np.ndarray:
    """Feature-map cell (row or column) of each pixel coordinate ``v`` of its owner's crop, or -1.

    Object ``i``'s crop spans ``[start[i], start[i] + length[i])`` of the original image;
    cell ``r`` covers original pixels ``[r * step, (r + 1) * step)``, its edges rounded in
    crop coordinates (``rint(r * step - start)``), the cells clipped to ``[0, n_cells)``.
    ``v`` lies in ``[0, length[owner])``. Each crop's coordinates are looked up once (a
    table of ``sum(length)`` entries, :func:`_cells_of_coordinates`), then every pixel's.
    """
    length = np.asarray(length, np.int64)
    first = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64)
    t_owner = np.repeat(np.arange(len(length), dtype=np.int64), length)
    table = _cells_of_coordinates(np.arange(len(t_owner), dtype=np.int64) - first[t_owner], t_owner,
                                  start, length, step, n_cells)
    return table[first[owner] + v]


def _cells_of_coordinates(
    v: np.ndarray, owner: np.ndarray, start: np.ndarray, length: np.ndarray, step: float, n_cells: int
) -> np.ndarray:
    """:func:`_cells_1d` of the coordinates ``v``, each by a search among its owner's cell edges."""
    n = len(start)
    r0 = np.maximum(np.minimum(np.floor(start / step).astype(np.int64), n_cells - 1), 0)
    r1 = np.minimum(np.maximum(np.ceil((start + length) / step).astype(np.int64), r0 + 1), n_cells)
    n_edges = r1 - r0 + 1
    first = np.concatenate([[0], np.cumsum(n_edges)[:-1]]).astype(np.int64)
    edge_owner = np.repeat(np.arange(n, dtype=np.int64), n_edges)
    r = np.arange(int(n_edges.sum()), dtype=np.int64) - first[edge_owner] + r0[edge_owner]
    edges = np.clip(np.rint(r * step - start[edge_owner]), 0, length[edge_owner]).astype(np.int64)
    stride = int(length.max(initial=0)) + 2  # keys of one object never reach the next's
    at = np.searchsorted(edge_owner * stride + edges, owner * stride + v, side="right") - 1
    k = at - first[owner]  # the edge at or below v, counted from the object's first
    inside = (k >= 0) & (k < n_edges[owner] - 1)
    return np.where(inside, r0[owner] + k, -1)


def _cell_counts(
    pixels, origins: np.ndarray, shapes: np.ndarray, scale: float, stride: int, map_hw: tuple[int, int]
):
    """Sparse ``(N, h * w)`` float32 CSR: each object's mask pixels in each cell of a
    stride-``stride`` map ``map_hw`` of the image resized by ``scale``.

    ``pixels``: ``(owner, ys, xs)`` in crop coordinates (:func:`_object_pixels`);
    ``origins`` ``(N, 2)`` ``(x0, y0)`` and ``shapes`` ``(N, 2)`` ``(h, w)`` of the crops.
    Cell ``(r, c)`` covers original pixels ``[r * stride / scale, (r + 1) * stride / scale)``.
    """
    from scipy import sparse

    owner, ys, xs = pixels
    fh, fw = map_hw
    step = stride / scale
    rows = _cells_1d(ys, owner, origins[:, 1], shapes[:, 0], step, fh)
    cols = _cells_1d(xs, owner, origins[:, 0], shapes[:, 1], step, fw)
    ok = (rows >= 0) & (cols >= 0)
    counts = sparse.coo_matrix(
        (np.ones(int(ok.sum()), np.float32), (owner[ok], rows[ok] * fw + cols[ok])),
        shape=(len(origins), fh * fw),
    )
    return counts.tocsr()


def _pool_counts(fmap: np.ndarray, counts) -> np.ndarray:
    """``(N, C)``: ``fmap`` ``(C, h, w)`` averaged over each row's cells of ``counts``
    (:func:`_cell_counts`), weighted by its pixels; zeros where a row has none."""
    counts = counts.tocsc()
    used = np.flatnonzero(np.diff(counts.indptr))  # only the cells some object touches
    flat = fmap.reshape(fmap.shape[0], -1)
    cells = np.ascontiguousarray(flat[:, used].T)
    pooled = np.asarray(counts[:, used].tocsr() @ cells, dtype=np.float32)
    total = np.asarray(counts.sum(axis=1), dtype=np.float32).reshape(-1)
    out = np.zeros_like(pooled)
    has = total > 0
    out[has] = pooled[has] / total[has, None]
    return out


def _crop_geometry(crops: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(origins, shapes)``: ``(N, 2)`` int64 ``(x0, y0)`` and ``(h, w)`` of mask crops."""
    origins = np.array([m.origin for m in crops], np.int64).reshape(-1, 2)
    shapes = np.array([m.crop.shape for m in crops], np.int64).reshape(-1, 2)
    return origins, shapes


def ring(crop: np.ndarray, width: int) -> np.ndarray:
    """The ``width``-pixel ring around a mask crop, in the crop padded by ``width`` on each side."""
    import cv2

    padded = np.pad(crop, width).astype(np.uint8)
    dist = cv2.distanceTransform(1 - padded, cv2.DIST_L2, 3)
    return (dist <= width) & (padded == 0)


def ring_widths(areas: np.ndarray) -> np.ndarray:
    """Ring width of each object: half its size (``0.5 sqrt(area)``, rounded), at least 2 px."""
    return np.maximum(np.rint(0.5 * np.sqrt(np.asarray(areas, np.float64))).astype(np.int64), 2)


def ring_counts(instances: Any, scale: float, stride: int, map_hw: tuple[int, int]):
    """:func:`_cell_counts` of a ring around each object, half its size wide (``0.5
    sqrt(area)``, at least 2 px), on a stride-``stride`` map ``map_hw``: geometry only, so it
    can be counted before the map exists (:func:`pool_rings`)."""
    crops = instances.crops
    origins, shapes = _crop_geometry(crops)
    widths = ring_widths([m.area for m in crops])
    rings = [
        ring(m.crop, int(wd)) if m.crop.any() else np.zeros((0, 0), bool)
        for m, wd in zip(crops, widths, strict=True)
    ]
    pad = widths[:, None]  # a ring's crop: the mask's, padded by its width
    return _cell_counts(_object_pixels(rings), origins - pad, shapes + 2 * pad, scale, stride, map_hw)


def pool_rings(fmap: np.ndarray, stride: int, instances: Any, scale: float, counts=None) -> np.ndarray:
    """``(N, C)``: ``fmap`` pooled over a ring around each object, half its size wide
    (``0.5 sqrt(area)``, at least 2 px): what surrounds the object, as a crop's context shows.
    ``counts``: :func:`ring_counts` for this map, when already counted."""
    if counts is None:
        counts = ring_counts(instances, scale, stride, fmap.shape[1:])
    return _pool_counts(fmap, counts)


def mask_counts(instances: Any, scale: float, map_hws: dict[int, tuple[int, int]], pixels=None) -> dict[int, Any]:
    """``{stride: sparse (N, h * w)}``: :func:`_cell_counts` of each object's mask on each
    stride's map of ``map_hws`` (:func:`map_shapes`): geometry only, so they can be counted
    while the network makes the maps. ``pixels``: :func:`_object_pixels` of the masks, when
    already gathered."""
    crops = instances.crops
    origins, shapes = _crop_geometry(crops)
    if pixels is None:
        pixels = _object_pixels([m.crop for m in crops])
    return {stride: _cell_counts(pixels, origins, shapes, scale, stride, hw) for stride, hw in map_hws.items()}


def pool_under_masks(
    maps: dict[int, np.ndarray], instances: Any, scale: float, pixels=None, counts: dict | None = None
) -> dict[int, np.ndarray]:
    """``{stride: (N, C)}`` mask-weighted means of the feature maps ``{stride: (C, h, w)}``.

    An object smaller than a cell still gets the cell(s) it touches; an empty mask gets
    zeros. Each map is one sparse product: (objects x cells) pixel counts times the cells.
    ``pixels``: :func:`_object_pixels` of the masks, when already gathered; ``counts``:
    :func:`mask_counts` for these maps, when already counted.
    """
    if counts is None:
        counts = mask_counts(instances, scale, {s: fmap.shape[1:] for s, fmap in maps.items()}, pixels)
    return {stride: _pool_counts(fmap, counts[stride]) for stride, fmap in maps.items()}


def _resized_hw(hw: tuple[int, int], scale: float) -> tuple[int, int]:
    """``(h, w)`` of an ``hw`` image resized by ``scale`` for the network (at least 1 a side)."""
    return max(int(round(hw[0] * scale)), 1), max(int(round(hw[1] * scale)), 1)


def map_shapes(hw: tuple[int, int], scale: float) -> dict[int, tuple[int, int]]:
    """``{stride: (h, w)}`` of the maps :meth:`ViewsEmbedder.feature_maps` makes of an ``hw``
    image resized by ``scale`` (padded to a multiple of 32), before they are made."""
    sh, sw = _resized_hw(hw, scale)
    ph, pw = -(-sh // 32) * 32, -(-sw // 32) * 32
    return {s: (ph // s, pw // s) for s in _STRIDES}


def _tile_side(length: int, tile: int, margin: int) -> int:
    """The side (a multiple of 32, at most ``tile``) of the tiles :func:`_tiles` cuts
    ``length`` into: as many tiles as ``tile`` itself needs, each as small as still covers
    ``length`` (the 4096^2 HeLa mosaic at x1.42, 5,824 px a side: 7 tiles of 960 px instead
    of 7 of 1,024, 12 % fewer pixels through the network in a square's tiles)."""
    if length <= tile:
        return length
    count = len(_tiles(length, tile, margin))
    # every tile but the last keeps ``side - 2 * margin``; the last, placed at the end, keeps
    # the rest and needs ``margin`` before it: count * side >= length + margin * (2 * count - 1)
    need = -(-(length + margin * (2 * count - 1)) // count)
    return min(tile, 32 * -(-need // 32))


def _tiles(length: int, tile: int, margin: int) -> list[tuple[int, int, int, int]]:
    """``(start, stop, keep_from, keep_to)`` along one axis (all multiples of 32).

    Tiles of ``tile`` pixels overlapping by ``2 * margin``; each keeps its interior so the
    kept parts cover ``[0, length)`` exactly once.
    """
    if length <= tile:
        return [(0, length, 0, length)]
    core = tile - 2 * margin
    if core <= 0:
        raise ValueError(f"a tile of {tile} px keeps nothing inside margins of {margin} px")
    out = []
    keep = 0
    while keep < length:
        start = max(min(keep - margin, length - tile), 0)
        stop = min(start + tile, length)
        keep_to = min(keep + core, length) if stop < length else length
        out.append((start, stop, keep, keep_to))
        keep = keep_to
    return out


class ViewsEmbedder:
    """Multi-view descriptions: ``embed_instances(rgb, instances) -> (N, 2765)`` float32.

    Args:
        device, batch_size, weights, num_threads: as for ``EffNetEmbedder`` (the network
            is the same EfficientNet-Lite0 with the packaged ImageNet weights).
        target: side in pixels the median object is resized to before the network runs
            (default 32; larger: finer features and slower).
    """

    name = "views"
    dim = DIM
    views = VIEWS
    supports_instances = True  # embed_instances: objects pooled from the whole image's feature maps
    #: the network runs under bf16 autocast on a CPU that computes bf16 (``torch_utils.cpu_bf16``;
    #: vectors checked against float32's in tests/test_cpu_bf16.py)
    cpu_autocast = True
    uses_masks = True
    scales_by_area = True  # embed_instances(..., typical_area=) sets the resize factor

    def __init__(
        self,
        device: str = "auto",
        batch_size: int | None = None,
        weights: str | Path | None = None,
        num_threads: int | None = None,
        target: float = DEFAULT_TARGET,
    ) -> None:
        from sam_detect.embed.effnet import _int_option
        from sam_detect.models.torch_utils import resolve_device

        if isinstance(target, bool) or not isinstance(target, (int, float)) or not 8 <= target <= 512:
            raise ValueError(f"target must be a number of pixels in [8, 512], got {target!r}")
        self.num_threads = _int_option("num_threads", num_threads, minimum=1, optional=True)
        self.batch_size = _int_option("batch_size", batch_size, minimum=1, optional=True)
        self.device = resolve_device(device)
        self.weights = Path(weights) if weights is not None else None
        self.target = float(target)
        tag = "imagenet" if self.weights is None else f"file={self.weights.name}"
        self.id = f"views:v1:tf_efficientnet_lite0:{tag}:{self.target:g}"

    def __repr__(self) -> str:
        return f"ViewsEmbedder(id={self.id!r}, device={str(self.device)!r})"

    @property
    def model(self):
        """The effnet embedder's cached network, frozen on the CPU (``lite0.freeze``: its batch
        norms folded, ~1.5x faster; ``effnet``'s own per-crop vectors stay unfrozen)."""
        from sam_detect.embed.effnet import ARCH, EffNetEmbedder, weights_file
        from sam_detect.embed.lite0 import cached_frozen, freeze, frozen_lite0
        from sam_detect.models.torch_utils import cached_model

        key = ("views", str(self.weights) if self.weights else None, str(self.device))
        if self.device.type == "cpu":  # the frozen copy of the model cache, where there is one
            frozen = cached_model((*key, "cached"), lambda: cached_frozen(weights_file(self.weights), ARCH))
            if frozen is not None:
                return frozen
        # loaded before the lookup, not inside it: the cache's lock is held while it builds,
        # and the effnet network comes from the same cache
        net = EffNetEmbedder(device=str(self.device), weights=self.weights).model
        if self.device.type != "cpu":
            return cached_model(key, lambda: freeze(net))
        return cached_model(key, lambda: frozen_lite0(net, weights_file(self.weights), ARCH))

    # -- network ---------------------------------------------------------------------------
    def feature_maps(self, rgb: np.ndarray, scale: float,
                     need: tuple[float, float, float, float] | None = None,
                     stop: Any = None) -> dict[int, np.ndarray] | None:
        """``{8: (40, h/8, w/8), 16: (112, ...), 32: (1280, ...)}`` float32 of ``rgb`` resized by ``scale``.

        Images larger than ``TILE`` pixels a side (after resizing) run in tiles of
        ``min(TILE, TILE_SIDE)`` pixels overlapping by ``2 * MARGIN``; each tile's interior
        is kept. ``need``: XYXY in the original image's pixels, the part
        whose cells will be read: tiles whose interior misses it are not run (their cells
        stay 0), and the cells of the tiles that run are the same as the whole image's.
        ``stop``: a ``threading.Event``; once it is set no further tile runs and ``None`` is
        returned (:class:`MapsJob` given up).
        """
        import cv2
        import torch

        from sam_detect.models.torch_utils import inference_context, num_threads

        h, w = rgb.shape[:2]
        sh, sw = _resized_hw((h, w), scale)
        if (sh, sw) != (h, w):
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            img = cv2.resize(np.ascontiguousarray(rgb), (sw, sh), interpolation=interp)
        else:
            img = rgb
        ph, pw = (32 * v for v in map_shapes((h, w), scale)[32])  # padded to a multiple of 32
        if (ph, pw) != (sh, sw):
            img = cv2.copyMakeBorder(img, 0, ph - sh, 0, pw - sw, cv2.BORDER_REFLECT_101)
        model = self.model  # Lite0: (stride-8, stride-16, stride-32) maps
        maps = {
            s: np.zeros((c, ph // s, pw // s), np.float32) for s, c in ((8, 40), (16, 112), (32, 1280))
        }
        threads = self.num_threads if self.device.type == "cpu" else None
        nx0, ny0, nx1, ny1 = (0.0, 0.0, float(pw), float(ph)) if need is None else (
            need[0] * scale - 32, need[1] * scale - 32, need[2] * scale + 32, need[3] * scale + 32)
        with num_threads(threads), inference_context(self.device, cpu_autocast=self.cpu_autocast):
            side = TILE if max(ph, pw) <= TILE else min(TILE, TILE_SIDE)
            rows, cols = (_tiles(n, _tile_side(n, side, MARGIN), MARGIN) for n in (ph, pw))
            for y0, y1, ky0, ky1 in rows:
                if ky1 <= ny0 or ky0 >= ny1:
                    continue
                for x0, x1, kx0, kx1 in cols:
                    if kx1 <= nx0 or kx0 >= nx1:
                        continue
                    if stop is not None and stop.is_set():
                        return None
                    x = torch.from_numpy(np.ascontiguousarray(img[y0:y1, x0:x1])).permute(2, 0, 1)[None]
                    x = x.float().sub_(127.0).div_(128.0).to(self.device)
                    if self.device.type == "cpu":
                        x = x.contiguous(memory_format=torch.channels_last)
                    feats = dict(zip(_STRIDES, model(x), strict=True))
                    for s, f in feats.items():
                        f = f[0].float().cpu().numpy()
                        maps[s][:, ky0 // s : ky1 // s, kx0 // s : kx1 // s] = f[
                            :, (ky0 - y0) // s : (ky1 - y0) // s, (kx0 - x0) // s : (kx1 - x0) // s
                        ]
        return maps

    def prefetch(self, rgb: np.ndarray, typical_area: float) -> MapsJob:
        """Start the network pass over all of ``rgb`` for objects of ``typical_area`` pixels
        on a worker thread (``detect`` does this before it segments, whose work is on the
        host). Pass the job to :meth:`embed_instances`; close it when done."""
        return MapsJob(self, rgb, choose_scale(np.array([typical_area], np.float64), self.target))

    # -- embedding -------------------------------------------------------------------------
    def embed_instances(self, rgb: np.ndarray, instances: Any, typical_area: float | None = None,
                        prefetched: MapsJob | None = None) -> np.ndarray:
        """``(N, DIM)`` float32 unit vectors for the objects ``instances`` of ``rgb`` ``(H, W, 3)`` uint8.

        ``typical_area``: the object area (pixels) the resize factor is chosen for (a
        library's typical example); default: the median area of ``instances``.
        ``prefetched``: a :meth:`prefetch` job for ``rgb``, used when its resize factor is
        this call's (the vectors are the same either way); the measured views are taken
        while it runs.
        """
        from sam_detect.embed._torch import check_crops

        given, rgb = rgb, check_crops([rgb])[0]
        n = len(instances)
        if n == 0:
            return np.zeros((0, DIM), np.float32)
        if tuple(instances.image_hw) != rgb.shape[:2]:
            raise ValueError(f"instances are for a {instances.image_hw} image, got {rgb.shape[:2]}")
        areas = instances.areas if not typical_area else np.array([typical_area], np.float64)
        scale = choose_scale(areas, self.target)
        if prefetched is not None and (prefetched.scale != scale or prefetched.image is not given):
            prefetched.close()  # made for another size (an image at another magnification)
            prefetched = None
        pixels = _object_pixels(instances.mask_crops)  # every mask pixel, gathered once
        # which map cells each object and its ring cover is geometry alone: counted while a
        # prefetched pass still runs (on a 4096^2 mosaic, a second of the wait)
        shapes = map_shapes(rgb.shape[:2], scale)

        def geometry() -> tuple:
            return mask_counts(instances, scale, shapes, pixels=pixels), ring_counts(instances, scale, 32, shapes[32])

        from sam_detect.embed.measure import CHUNK_PIXELS

        if len(pixels[0]) < CHUNK_PIXELS or (prefetched is not None and not prefetched.done()):
            # few objects, or the network pass beside these still holds the cores: one thread
            # (threads beside the network's own only take turns with it)
            hand = _handcrafted(rgb, instances, pixels=pixels, threads=1)
            counts, rings = geometry()
        else:  # many objects, the cores free: the measurements and the geometry side by side
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(1, thread_name_prefix="sam-detect-cells") as side:
                counted = side.submit(geometry)
                hand = _handcrafted(rgb, instances, pixels=pixels)
                counts, rings = counted.result()
        maps = prefetched.result() if prefetched is not None else None
        if maps is None:
            maps = self.feature_maps(rgb, scale, need=_pooled_region(instances))
        pooled = pool_under_masks(maps, instances, scale, counts=counts)
        parts = {
            "deep": pooled[32],
            "context": pool_rings(maps[32], 32, instances, scale, counts=rings),
            "mid": np.concatenate([l2_normalize(pooled[8]), l2_normalize(pooled[16])], axis=1),
            **hand,
        }
        return join_views(parts)

    def embed(self, crops: Sequence[np.ndarray], masks: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """One object per crop (its mask, or guessed as ``handcrafted`` does): ``(N, DIM)``."""
        from sam_detect.embed.handcrafted import _check, guess_mask
        from sam_detect.instances import Instances

        crops, masks = _check(crops, masks)
        out = np.zeros((len(crops), DIM), np.float32)
        for i, (crop, mask) in enumerate(zip(crops, masks, strict=True)):
            if mask is None or not mask.any():
                mask = guess_mask(crop)
            out[i] = self.embed_instances(crop, Instances(masks=mask[None]))[0]
        return out

    def params(self) -> dict[str, Any]:
        return {"name": self.name, "id": self.id, "dim": self.dim, "target": self.target,
                "views": [list(v) for v in VIEWS]}


class MapsJob:
    """:meth:`ViewsEmbedder.feature_maps` of a whole image, running on a worker thread.

    The network releases the GIL, so host work in the caller's thread (segmentation,
    the measured views) runs beside it. ``result()`` waits for the maps; ``close()``
    stops it after the tile in progress and waits, so no network work outlives the call
    that started it. The maps are the ones a direct call gives: only the thread differs.
    """

    def __init__(self, embedder: ViewsEmbedder, rgb: np.ndarray, scale: float) -> None:
        import threading
        from concurrent.futures import ThreadPoolExecutor

        self.image, self.scale = rgb, float(scale)
        self._stop = threading.Event()
        pool = ThreadPoolExecutor(1, thread_name_prefix="sam-detect-maps")
        self._future = pool.submit(embedder.feature_maps, rgb, self.scale, stop=self._stop)
        pool.shutdown(wait=False)  # the thread ends with its one task

    def result(self) -> dict[int, np.ndarray] | None:
        """The maps (``None`` if the job was closed first); the worker's error is raised here."""
        return self._future.result()

    def done(self) -> bool:
        """Whether the pass has ended (its maps are there, or it failed or was stopped)."""
        return self._future.done()

    def close(self) -> None:
        """Stop after the tile in progress and wait; an unread error is dropped."""
        import contextlib

        self._stop.set()
        with contextlib.suppress(Exception):  # nobody asked for these maps
            self._future.result()


def _pooled_region(instances: Any) -> tuple[float, float, float, float]:
    """XYXY pixels holding every cell the views pool: the objects' boxes grown by their
    rings (:func:`pool_rings`). On a large image, one example's tile alone runs."""
    b = np.asarray(instances.boxes, np.float64).reshape(-1, 4)
    pad = ring_widths(instances.areas).astype(np.float64) + 1
    return (float((b[:, 0] - pad).min()), float((b[:, 1] - pad).min()),
            float((b[:, 2] + pad).max()), float((b[:, 3] + pad).max()))


def _handcrafted(rgb: np.ndarray, instances: Any, pixels=None, threads: int | None = None) -> dict[str, np.ndarray]:
    """The ``colour``, ``shape`` and ``texture`` views, measured on a window around each object
    (:func:`sam_detect.embed.measure.describe_objects`: all objects at once, on at most
    ``threads`` threads)."""
    from sam_detect.embed.measure import describe_objects

    return measured_views(describe_objects(rgb, instances, pixels=pixels, threads=threads))


def measured_views(raw: np.ndarray) -> dict[str, np.ndarray]:
    """The ``colour``, ``shape`` and ``texture`` views of ``(N, handcrafted.DIM)`` measurements
    (the handcrafted groups: intensity and histogram make ``colour``)."""
    from sam_detect.embed.handcrafted import _GROUPS

    edges = np.cumsum([0, *_GROUPS.values()])
    group = {name: raw[:, edges[k] : edges[k + 1]] for k, name in enumerate(_GROUPS)}
    return {
        "colour": np.concatenate([group["intensity"], group["histogram"]], axis=1),
        "shape": group["shape"],
        "texture": group["texture"],
    }


def join_views(parts: dict[str, np.ndarray]) -> np.ndarray:
    """Concatenate the views in ``VIEWS`` order, each L2-normalised, the whole / sqrt(V)."""
    blocks = [l2_normalize(parts[name]) for name, _ in VIEWS]
    return (np.concatenate(blocks, axis=1) / np.sqrt(len(VIEWS))).astype(np.float32)


__all__ = [
    "DIM",
    "VIEWS",
    "MapsJob",
    "ViewsEmbedder",
    "choose_scale",
    "join_views",
    "map_shapes",
    "mask_counts",
    "pool_rings",
    "pool_under_masks",
    "ring_counts",
    "view_similarities",
    "view_slices",
    "views_of",
    "weighted_query",
]
