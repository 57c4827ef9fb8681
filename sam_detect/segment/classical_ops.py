"""Array operations of the ``classical`` segmenter (and the calibrated proposals in
:mod:`sam_detect.segment.calibrated`): global thresholds, background and noise estimates,
hole filling, per-object refinement, watershed splitting of touching objects, label
statistics, and :class:`~sam_detect.instances.Instances` from a label image.

Arrays are 2-D: intensities float, masks bool, labels int32 (0: background).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sam_detect.instances import Instances

# components smaller than this are not refined (too few pixels for a two-class split)
_MIN_REFINE_AREA = 30
_DEFAULT_BACKGROUND_RADIUS = 50
# components at least this convex are not split (a touching pair has a notch)
_CONVEX_SOLIDITY = 0.95
# Gaussians wider than this (pixels) are computed at reduced resolution
_LOCAL_MEAN_SIGMA = 8.0


#: relative range under which an image holds one level only: a flat image blurred in float32
#: varies by rounding (a few 1e-7 of its level), which scikit-image's 256-bin histograms cannot split
_FLAT_RANGE = 1e-5


def flat(x: np.ndarray) -> bool:
    """Whether ``x`` holds no two levels a threshold could tell apart: constant, or constant
    to float rounding (a uniform image after a Gaussian blur), or empty."""
    if x.size == 0:
        return True
    lo, hi = float(np.min(x)), float(np.max(x))
    return not hi - lo > _FLAT_RANGE * max(1.0, abs(lo), abs(hi))


def otsu(x: np.ndarray) -> float:
    """``skimage.filters.threshold_otsu(x)``, or ``max(x)`` (nothing lies above it) where
    ``x`` is :func:`flat`, on which scikit-image raises ("Too many bins for data range").
    A range just above that, too narrow for 256 float32 bins, is thresholded in float64."""
    from skimage import filters

    if flat(x):
        return float(np.max(x))
    try:
        return float(filters.threshold_otsu(x))
    except ValueError:
        return float(filters.threshold_otsu(np.asarray(x, np.float64)))


def _global_threshold(x: np.ndarray, method: str) -> float:
    from skimage import filters

    if flat(x):
        return float(np.max(x))  # one level: no object above it (each method fails or splits rounding)
    fn = {
        "otsu": otsu,
        "li": filters.threshold_li,
        "triangle": filters.threshold_triangle,
        "yen": filters.threshold_yen,
        "mean": filters.threshold_mean,
    }[method]
    return float(fn(x))


def _fill_holes(fg: np.ndarray) -> np.ndarray:
    """Fill background regions not connected to the image border (``binary_fill_holes``):
    the background 4-connected to a one-pixel frame round the image is flooded from that
    frame, and everything else is foreground. The same pixels as labelling the background's
    components and keeping those that touch the border, at under half the cost (a
    foreground is filled two or three times per setting and window)."""
    import cv2

    h, w = fg.shape
    padded = np.zeros((h + 2, w + 2), np.uint8)
    padded[1:-1, 1:-1] = fg
    cv2.floodFill(padded, None, (0, 0), 2, flags=4)  # the frame and the background it reaches
    return padded[1:-1, 1:-1] != 2


#: the 4-neighbour offsets of a padded ``(h, w)`` crop, raveled (:func:`watershed`)
_NEIGHBOURS: dict[tuple[int, int], np.ndarray] = {}
_MAX_NEIGHBOURS = 4096


@functools.cache
def _flood_core() -> Any:
    """scikit-image's watershed flooding (``watershed_raveled``) and its neighbour offsets,
    or ``None`` where this scikit-image lacks them or calls them otherwise: they are
    private, so they are tried once on a crop with ties against the public function."""
    try:
        from skimage.morphology._util import _offsets_to_raveled_neighbors
        from skimage.segmentation import _watershed_cy
        from skimage.segmentation import watershed as public
    except ImportError:
        return None
    core = (getattr(_watershed_cy, "watershed_raveled", None), _offsets_to_raveled_neighbors)
    if core[0] is None:
        return None
    image = np.array([[0, 1, 1, 1, 0], [1, 2, 2, 1, 1], [1, 1, 0, 1, 2], [0, 1, 1, 1, 0]], np.float32)
    markers = np.zeros(image.shape, np.int32)
    markers[0, 0], markers[0, 4], markers[3, 0], markers[2, 2] = 3, 1, 7, 2
    mask = image < 2
    try:
        same = np.array_equal(_flood(core, image, markers, mask), public(image, markers, mask=mask))
    except (TypeError, ValueError):  # another signature or buffer types
        return None
    return core if same else None


def _flood(core: Any, image: np.ndarray, markers: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """:func:`watershed` with ``core`` (:func:`_flood_core`'s parts)."""
    flood, neighbours_of = core
    h, w = image.shape
    shape = (h + 2, w + 2)
    img = np.zeros(shape, np.float64)
    img[1:-1, 1:-1] = image
    keep = np.zeros(shape, np.int8)
    keep[1:-1, 1:-1] = mask
    out = np.zeros(shape, np.int32)
    out[1:-1, 1:-1] = np.where(mask, markers, 0)
    neighbours = _NEIGHBOURS.get(shape)
    if neighbours is None:
        if len(_NEIGHBOURS) >= _MAX_NEIGHBOURS:  # a long session's many crop shapes
            _NEIGHBOURS.clear()
        cross = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)  # connectivity 1
        neighbours = _NEIGHBOURS.setdefault(shape, neighbours_of(shape, cross, center=(1, 1)))
    flood(img.ravel(), np.flatnonzero(out), neighbours, keep.ravel(),
          np.array([w + 2, 1], dtype=np.intp), 0.0, out.ravel(), False)
    return out[1:-1, 1:-1].copy()


def watershed(image: np.ndarray, markers: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``skimage.segmentation.watershed(image, markers, mask=mask)`` of a 2-D crop, int32:
    the same flooding (4-connected, no compactness, no watershed line), called without the
    public function's per-call padding, validation and neighbourhood set-up, which cost more
    than the flooding on the small crops the splits flood (about 2,000 calls in one
    calibration). The public function where :func:`_flood_core` finds the parts missing or
    changed."""
    core = _flood_core()
    if core is None:
        from skimage import segmentation

        return segmentation.watershed(image, markers, mask=mask).astype(np.int32, copy=False)
    return _flood(core, image, markers, mask)


def reflood(floods: dict[int, tuple[np.ndarray, np.ndarray]] | None, c: int, image: np.ndarray,
            seeds: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``watershed(image, seeds, mask)`` of component ``c``, the flood of its previous call
    given again where ``floods`` (``None``: none kept) holds one of the same seeds: one
    foreground's splits at several strengths flood a component with the same seeds wherever
    their seeds merge alike (``image`` and ``mask`` are the component's own at every
    strength). The labels are the seeds' numbers whatever their values, since the flooding
    order does not depend on them: the caller offsets them."""
    if floods is not None and c in floods and np.array_equal(floods[c][0], seeds):
        return floods[c][1]
    ws = watershed(image, seeds, mask)
    if floods is not None:
        floods[c] = (seeds, ws)
    return ws


def _split_touching(fg: np.ndarray, split_sigma: float, h: float, min_distance: int) -> np.ndarray:
    """Watershed of touching objects, seeded at the h-maxima of the distance transform.

    The h-maxima and the watershed are computed per connected component on its bounding
    box, and only for components that may hold several objects: much cheaper than on the
    whole image, with the same labels.
    """
    return _TouchingSplit(_Components(fg), split_sigma).labels(h, min_distance, reuse=False)


class _Components:
    """A foreground's 8-connected components, found once for every split of it.

    ``comp``: ``(H, W)`` int32 labels ``0..n-1`` (``cv2.connectedComponentsWithStats``,
    the same labels as ``cv2.connectedComponents``); ``stats``: ``(n, 5)``
    ``x, y, w, h, area``. :meth:`crop` gives component ``c``'s bounding box and mask.
    """

    def __init__(self, fg: np.ndarray) -> None:
        import cv2

        self.fg = np.ascontiguousarray(fg)
        self.n, self.comp, self.stats, _ = cv2.connectedComponentsWithStats(
            self.fg.view(np.uint8), connectivity=8, ltype=cv2.CV_32S
        )

    def crop(self, c: int) -> tuple[tuple[slice, slice], np.ndarray]:
        """``(sl, m)``: component ``c``'s bounding box and its ``(h, w)`` bool mask there."""
        x, y, bw, bh, _area = self.stats[c]
        sl = (slice(y, y + bh), slice(x, x + bw))
        return sl, self.comp[sl] == c


class _TouchingSplit:
    """:func:`_split_touching` of one foreground at several strengths ``h``: the components,
    the distance transform and each component's crop of it are computed once.

    ``keep``: keep the per-component crops between calls (several strengths of one small
    foreground, as the calibration tries); without it one crop at a time is held.
    """

    def __init__(self, comps: _Components, split_sigma: float, keep: bool = False) -> None:
        self.comps = comps
        self.split_sigma = split_sigma
        self.keep = keep
        self._dist: np.ndarray | None = None
        self._parts: dict[int, tuple[tuple[slice, slice], np.ndarray, np.ndarray, float]] = {}
        self._convex: dict[int, bool] = {}
        self._floods: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # with keep: each component's latest flood
        self._seeds: dict[int, tuple[np.ndarray, int, np.ndarray]] = {}  # with keep: its latest seed labels
        #: with keep: the strengths ``h`` :meth:`labels` will be asked for (the calibration
        #: grid's): a component's h-maxima at all of them are found together
        #: (:func:`_h_maxima_many`) and kept until asked
        self.ahead: tuple[float, ...] = ()
        self._maxima: dict[tuple[int, float], np.ndarray] = {}
        #: ``(n,)`` bool: the components that may be split, the others left whole (``None``: all)
        self.only: np.ndarray | None = None

    def _distance(self) -> np.ndarray:
        import cv2

        from sam_detect._distance import distance_to_zero

        if self._dist is None:
            # pad with background so objects cut by the border peak inside the image
            dist = distance_to_zero(
                cv2.copyMakeBorder(self.comps.fg.view(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
            )[1:-1, 1:-1]
            if self.split_sigma > 0:
                dist = cv2.GaussianBlur(dist, (0, 0), self.split_sigma)
            self._dist = dist
        return self._dist

    def _part(self, c: int) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray, float]:
        """``(sl, m, d, peak)``: component ``c``'s box, mask, distance (0 outside it), peak."""
        if c in self._parts:
            return self._parts[c]
        sl, m = self.comps.crop(c)
        d = np.where(m, self._distance()[sl], 0).astype(np.float32, copy=False)
        part = (sl, m, d, float(d.max()))
        if self.keep:
            self._parts[c] = part
        return part

    def _is_convex(self, c: int, m: np.ndarray) -> bool:
        if c not in self._convex:
            self._convex[c] = _solidity(m, int(self.comps.stats[c, 4])) >= _CONVEX_SOLIDITY
        return self._convex[c]

    def _h_maxima(self, c: int, d: np.ndarray, peak: float, h: float) -> np.ndarray:
        """``_h_maxima(d, h)`` of component ``c`` (``d``: its distance crop, ``peak`` its
        largest value); with :attr:`ahead`, found with those of the other strengths ahead
        that :meth:`labels` will ask of it (those it does not skip as too thin)."""
        return _h_maxima_ahead(self._maxima, c, d, h, self.ahead if self.keep else (),
                               lambda g: g > 0 and not peak < 2 * g)

    def labels(self, h: float, min_distance: int, reuse: bool = True) -> np.ndarray:
        """``(H, W)`` int32 labels, touching objects split at the h-maxima of the distance.

        ``reuse=False``: the components' label image may be overwritten (one call only)."""
        from skimage import morphology

        comps = self.comps
        n, comp = comps.n, comps.comp
        if n <= 1:
            return comp
        split_of: dict[int, tuple[tuple[slice, slice], np.ndarray, np.ndarray, np.ndarray, int]] = {}
        only = self.only.tolist() if self.only is not None else None
        for c in range(1, n):
            if only is not None and not only[c]:
                continue
            sl, m, d, peak = self._part(c)
            if (h > 0 and peak < 2 * h) or self._is_convex(c, m):
                # too thin to hold two h-separated maxima, or convex (touching objects leave a
                # notch): one object, the component itself; skips the costly h-maxima
                continue
            maxima = self._h_maxima(c, d, peak, h) if h > 0 else morphology.local_maxima(d)
            seed_lab = _seed_labels_again(self._seeds, c, maxima, min_distance) if self.keep else _seed_labels(
                maxima, min_distance)
            k = int(seed_lab.max())
            if k > 1:
                split_of[c] = (sl, m, d, seed_lab, k)
        if not split_of:  # nothing to split: the components are the objects
            return comp
        lut = np.zeros(n, dtype=np.int32)  # component -> its label when it is not split
        splits: list[tuple[tuple[slice, slice], np.ndarray, np.ndarray]] = []
        next_id = 1
        for c in range(1, n):
            if c not in split_of:
                lut[c] = next_id
                next_id += 1
                continue
            sl, m, d, seed_lab, k = split_of[c]
            ws = reflood(self._floods if self.keep else None, c, -d, seed_lab, m)
            splits.append((sl, m, np.where(ws > 0, ws + (next_id - 1), 0)))
            next_id += k
        labels = lut[comp] if reuse else _relabel(lut, comp)  # in place: comp is not needed again
        for sl, m, ws in splits:
            labels[sl][m] = ws[m]
        return labels


def _seed_labels(seeds: np.ndarray, min_distance: int) -> np.ndarray:
    """8-connected seed regions labelled ``1..k``, those closer than ``min_distance`` merged."""
    import cv2

    # without OpenCV's statistics: they cost several times the labelling itself (about 15 ns a
    # pixel of the crop, against 2 for the labels of a few seeds), and only crops with two or
    # more seeds need centroids, which _merge_close_seeds measures on the seeds' pixels alone
    n, seed_lab = cv2.connectedComponents(seeds.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    if n > 2 and min_distance > 1:
        seed_lab = _merge_close_seeds(seed_lab, min_distance)
    return seed_lab


def _seed_labels_again(kept: dict[int, tuple[np.ndarray, int, np.ndarray]], c: int, seeds: np.ndarray,
                       min_distance: int) -> np.ndarray:
    """``_seed_labels(seeds, min_distance)`` of component ``c``, the labels of its previous call
    given again where ``kept`` holds one of the same seeds: a component's h-maxima are often
    the same at two of the grid's strengths (a third of the calls of ``dev_stroma``'s
    calibration), and their merging costs more than the comparison. The labels may be the
    previous call's array: read them, do not write."""
    last = kept.get(c)
    if last is not None and last[1] == min_distance and np.array_equal(last[0], seeds):
        return last[2]
    seed_lab = _seed_labels(seeds, min_distance)
    kept[c] = (seeds, min_distance, seed_lab)
    return seed_lab


#: geodesic dilations :func:`_h_maxima` runs before it hands the rest to scikit-image: a
#: dilation step costs about a thousandth of scikit-image's sorting reconstruction of the same
#: crop, so dilating on is cheaper up to about this many steps (the largest components of ten
#: macrophages' calibration converge in 212-221; docs/performance.md, session 51)
_MAX_DILATIONS = 1000
#: steps between two checks whether the dilations have converged: a check costs about as much
#: as a step, and steps past the fixed point change nothing
_CHECK_EVERY = 4


def _h_maxima(image: np.ndarray, h: float) -> np.ndarray:
    """``skimage.morphology.h_maxima(image, h)`` (3 x 3 footprint), ``uint8``: the same
    arithmetic, with the reconstruction by dilation done by repeated geodesic dilations
    (``cv2.dilate``, then the minimum with ``image``) until nothing changes.

    The same result: the reconstruction is the one fixed point of the geodesic dilation
    (each step only takes maxima and minima of seed and image values, so no value is
    rounded), and the residue and its threshold are computed as scikit-image computes them.
    Why: scikit-image sorts the pixels twice per call (``n log n``, ~1 ms for a 1,000-pixel
    component crop), while the dilations converge in a few dozen steps of a few
    microseconds on a crop; past ``_MAX_DILATIONS`` steps (a long winding object)
    scikit-image finishes the reconstruction from where the dilations got to.
    """
    import cv2
    from skimage import morphology

    if not (h > 0 and image.dtype == np.float32 and image.ndim == 2 and image.size and np.isfinite(image).all()):
        return morphology.h_maxima(image, h)
    if h > np.ptp(image):
        return np.zeros(image.shape, dtype=np.uint8)
    # as skimage.morphology.h_maxima: a seed "h less" than the image, to float rounding
    resolution = 2 * np.finfo(image.dtype).resolution * np.abs(image)
    rec = np.ascontiguousarray(image - h - resolution, dtype=np.float32)
    nxt = np.empty_like(rec)
    kernel = np.ones((3, 3), np.uint8)
    for step in range(1, _MAX_DILATIONS + 1):
        cv2.dilate(rec, kernel, dst=nxt)  # the default border adds nothing to a dilation
        np.minimum(nxt, image, out=nxt)
        done = step % _CHECK_EVERY == 0 and np.array_equal(nxt, rec)
        rec, nxt = nxt, rec
        if done:
            break
    else:
        rec = morphology.reconstruction(rec, image, method="dilation")
    return ((image - rec) >= h).astype(np.uint8)


#: the most strengths :func:`_h_maxima_many` reconstructs together, as channels of one image
_MANY_AT_ONCE = 4


def _h_maxima_many(image: np.ndarray, hs: Sequence[float]) -> list[np.ndarray]:
    """``[_h_maxima(image, h) for h in hs]``, the same arrays, with the reconstructions of the
    strengths that need one run together as the channels of one image: each geodesic
    dilation step is then one OpenCV call for them all. The splits ask one component crop
    for its h-maxima at each of the grid's strengths, and a small crop's step costs about
    as much for three channels as for one (the call, not the pixels).

    Each channel steps as :func:`_h_maxima`'s one array does, from the same seed; a channel
    that reaches its fixed point first stays there while the others go on (a fixed point
    of the geodesic dilation is not moved by it). Past ``_MAX_DILATIONS`` steps, the
    channels :func:`_h_maxima` would not have seen converge are finished by scikit-image
    from the same step, as there."""
    import cv2
    from skimage import morphology

    if not (image.dtype == np.float32 and image.ndim == 2 and image.size and np.isfinite(image).all()):
        return [_h_maxima(image, h) for h in hs]
    ptp = np.ptp(image)
    run = [k for k, h in enumerate(hs) if h > 0 and not h > ptp]  # those _h_maxima reconstructs
    if not 2 <= len(run) <= _MANY_AT_ONCE:
        return [_h_maxima(image, h) for h in hs]
    resolution = 2 * np.finfo(image.dtype).resolution * np.abs(image)
    rec = np.empty(image.shape + (len(run),), np.float32)
    for i, k in enumerate(run):  # each seed as _h_maxima makes it (h's own type in the arithmetic)
        rec[..., i] = np.ascontiguousarray(image - hs[k] - resolution, dtype=np.float32)
    mask = np.repeat(image[..., None], len(run), axis=2)
    nxt = np.empty_like(rec)
    kernel = np.ones((3, 3), np.uint8)
    for step in range(1, _MAX_DILATIONS + 1):
        cv2.dilate(rec, kernel, dst=nxt)  # channel by channel
        np.minimum(nxt, mask, out=nxt)
        done = step % _CHECK_EVERY == 0 and np.array_equal(nxt, rec)
        rec, nxt = nxt, rec
        if done:
            break
    out: list[np.ndarray | None] = [None] * len(hs)
    for i, k in enumerate(run):
        r = rec[..., i]
        if not done and not np.array_equal(r, nxt[..., i]):  # _h_maxima's loop would not have ended
            r = morphology.reconstruction(np.ascontiguousarray(r), image, method="dilation")
        out[k] = ((image - r) >= hs[k]).astype(np.uint8)
    return [o if o is not None else _h_maxima(image, h) for o, h in zip(out, hs, strict=True)]


def _h_maxima_ahead(found: dict[tuple[int, float], np.ndarray], c: int, image: np.ndarray, h: float,
                    ahead: Sequence[float], wanted: Callable[[float], bool]) -> np.ndarray:
    """``_h_maxima(image, h)`` of component ``c``'s crop ``image``, kept in ``found`` by
    ``(c, h)``. Where ``h`` is one of the strengths ``ahead`` (those the caller will ask of its
    crops), it is found together with every other one of them that this crop will be asked
    for (``wanted``) and is not found yet (:func:`_h_maxima_many`)."""
    if (c, h) in found:
        return found[c, h]
    if h not in ahead:
        return _h_maxima(image, h)
    hs = [g for g in dict.fromkeys(ahead) if g == h or (wanted(g) and (c, g) not in found)]
    for g, maxima in zip(hs, _h_maxima_many(image, hs), strict=True):
        found[c, g] = maxima
    return found[c, h]


def _merge_close_seeds(markers: np.ndarray, min_distance: int) -> np.ndarray:
    """Relabel ``1..K`` so that seeds whose centroids are closer than ``min_distance`` merge
    (the merged seeds numbered in the order of their lowest old number). Markers with no two
    seeds that close come back as they are (where all of ``1..K`` are present)."""
    from scipy.spatial import cKDTree

    n = int(markers.max())
    ys, xs = np.nonzero(markers)
    lab = markers[ys, xs]
    cnt = np.bincount(lab, minlength=n + 1)[1:]
    present = cnt > 0
    cy = np.bincount(lab, weights=ys, minlength=n + 1)[1:][present] / cnt[present]
    cx = np.bincount(lab, weights=xs, minlength=n + 1)[1:][present] / cnt[present]
    centroids = np.column_stack([cy, cx])
    old_ids = np.flatnonzero(present) + 1
    pairs = cKDTree(centroids).query_pairs(r=min_distance, output_type="ndarray")
    if not len(pairs) and len(old_ids) == n:
        return markers
    lut = np.zeros(n + 1, dtype=np.int32)
    lut[old_ids] = _pair_groups(pairs, len(old_ids)) + 1
    return lut[markers]


def _pair_groups(pairs: np.ndarray, m: int) -> np.ndarray:
    """``(m,)`` the connected components of ``m`` nodes joined by ``pairs`` ``(P, 2)``, numbered
    ``0..`` in the order of their lowest node (as ``scipy.sparse.csgraph.connected_components``
    numbers an undirected graph's), without building a sparse matrix for a handful of seeds."""
    low = np.arange(m)
    if len(pairs):
        a, b = pairs[:, 0], pairs[:, 1]
        while True:  # each node takes the lowest node it is joined to, until none moves
            nxt = low.copy()
            np.minimum.at(nxt, a, low[b])
            np.minimum.at(nxt, b, low[a])
            nxt = nxt[nxt]
            if np.array_equal(nxt, low):
                break
            low = nxt
    return np.unique(low, return_inverse=True)[1]


def _solidity(mask: np.ndarray, area: int) -> float:
    """Area over convex-hull area in pixels (skimage's ``solidity``, via OpenCV)."""
    import cv2

    if area < 3:
        return 1.0
    m8 = np.ascontiguousarray(mask, dtype=np.uint8)
    contours, _ = cv2.findContours(m8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return 1.0
    hull = cv2.convexHull(np.vstack(contours))
    filled = np.zeros_like(m8)
    cv2.fillConvexPoly(filled, hull, 1)
    return float(min(1.0, area / max(int(filled.sum()), 1)))


def _relabel(lut: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``labels[...] = lut[labels]`` in place, in row blocks (no image-sized temporaries)."""
    step = max(1, (1 << 20) // max(labels.shape[1], 1))
    for r in range(0, labels.shape[0], step):
        labels[r : r + step] = lut[labels[r : r + step]]
    return labels


def _object_scale_radius(smooth: np.ndarray, min_area: int) -> int:
    """Background radius for ``tophat`` from the object sizes of a first Otsu pass (either
    polarity: the minority class), ``2.5 x`` the radius of the 95th-percentile area."""
    import cv2

    t = otsu(smooth)
    fg = smooth > t
    if fg.mean() > 0.5:
        fg = ~fg
    n, _, stats, _ = cv2.connectedComponentsWithStats(
        fg.view(np.uint8), connectivity=8, ltype=cv2.CV_32S
    )
    areas = stats[1:, cv2.CC_STAT_AREA]
    areas = areas[areas >= max(min_area, 1)]
    if areas.size == 0:
        return _DEFAULT_BACKGROUND_RADIUS
    r95 = float(np.sqrt(np.percentile(areas, 95) / np.pi))
    return int(np.clip(round(2.5 * r95), 15, 400))


def _background(x: np.ndarray, radius: int) -> np.ndarray:
    """Smooth background under bright objects narrower than ``2 * radius``: a morphological
    opening (rolling-ball-like) computed at reduced resolution for speed, then blurred."""
    import cv2

    h, w = x.shape
    # a kernel of radius ~12 at low resolution: elliptic erosion costs grow with its area
    f = int(np.clip(radius // 12, 1, max(1, min(h, w) // 16)))
    small = (
        cv2.resize(x, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
        if f > 1
        else x
    )
    r = max(1, radius // f)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    # replicated borders keep the opening exact for backgrounds that rise toward an edge
    padded = cv2.copyMakeBorder(small, r, r, r, r, cv2.BORDER_REPLICATE)
    bg = cv2.morphologyEx(padded, cv2.MORPH_OPEN, kernel)
    bg = cv2.GaussianBlur(bg, (0, 0), max(1.0, r / 4), borderType=cv2.BORDER_REPLICATE)
    bg = bg[r:-r, r:-r]
    if f > 1:
        bg = cv2.resize(bg, (w, h), interpolation=cv2.INTER_LINEAR)
    return bg


def _local_mean(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-weighted local mean of ``x`` (float32). A wide Gaussian is computed at
    reduced resolution and interpolated back: its cost would otherwise grow with ``sigma``
    (seconds per megapixel for ``sigma`` in the hundreds)."""
    import cv2

    h, w = x.shape
    f = int(min(sigma // _LOCAL_MEAN_SIGMA, max(1, min(h, w) // 16)))
    if f < 2:
        return cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    small = cv2.resize(x, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
    # the area average already blurred by about f / sqrt(12): take it off the Gaussian
    s = float(np.sqrt(max(sigma**2 - f**2 / 12.0, 1.0))) / f
    small = cv2.GaussianBlur(small, (0, 0), s, borderType=cv2.BORDER_REFLECT)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _noise_sigma(resid: np.ndarray) -> float:
    """Robust standard deviation (1.4826 x MAD) of a residual image, from a subsample."""
    sample = resid.ravel()[:: max(1, resid.size // 200_000)]
    return float(1.4826 * np.median(np.abs(sample - np.median(sample))))


def _local_noise_sigma(x: np.ndarray, smooth_sigma: float) -> float:
    """Noise of ``x`` from differences of neighbouring pixels, which objects barely touch
    (unlike the MAD of the whole residual, which in a dense field measures the objects).

    ``smooth_sigma``: the Gaussian blur ``x`` went through; neighbours of blurred white
    noise correlate by ``rho = exp(-1 / (4 sigma^2))``, so ``var(diff) = 2 (1 - rho) sigma^2``.
    """
    if x.shape[1] < 2:
        return 0.0
    rows = x[:: max(1, x.shape[0] // 400)]
    diff = (rows[:, 1:] - rows[:, :-1]).ravel()
    rho = float(np.exp(-1.0 / (4.0 * smooth_sigma**2))) if smooth_sigma > 0 else 0.0
    return float(1.4826 * np.median(np.abs(diff - np.median(diff)))) / float(np.sqrt(2.0 * (1.0 - rho)))


def _refine_objects(
    fg: np.ndarray, x: np.ndarray, fraction: float, bg: float | None = None
) -> np.ndarray:
    """Per connected component, drop pixels below ``bg + fraction * (peak - bg)``.

    ``peak`` is the component's 95th intensity percentile and ``bg`` the median outside all
    components (given: the whole image's, so that tiles agree), so each object is cut at a
    fixed fraction of its own height: dim objects keep their extent while blur halos and
    haze around bright ones are trimmed (a pair joined only by haze falls apart into two
    components).
    """
    import cv2

    n, comp, stats, _ = cv2.connectedComponentsWithStats(
        fg.view(np.uint8), connectivity=8, ltype=cv2.CV_32S
    )
    if n <= 1:
        return fg
    if bg is None:
        bg = _median_outside(x, fg)
    out = fg.copy()
    # the components large enough to refine, their boxes as Python ints: most components of
    # a window are specks, and a NumPy row per component cost a quarter of the loop
    big = np.flatnonzero(stats[:, 4] >= _MIN_REFINE_AREA)
    for c, (x0, y0, bw, bh, _) in zip(big.tolist(), stats[big].tolist(), strict=True):
        if c == 0:  # the background
            continue
        sl = (slice(y0, y0 + bh), slice(x0, x0 + bw))
        m = comp[sl] == c
        xs = x[sl]
        peak = _percentile95(xs[m])
        out[sl][m & (xs <= bg + fraction * (peak - bg))] = False
    return out


def _percentile95(values: np.ndarray) -> float:
    """``float(np.percentile(values, 95))`` of a 1-D array of finite values, bit for bit (the
    same partition and linear interpolation as NumPy's ``linear`` method, in the values'
    own float type), without the public function's per-call set-up: ~20 us of a 4096²
    mosaic's ~15,000 calls from :func:`_refine_objects` against ~3 here
    (``tests/test_calibrated_splits.py`` checks it against NumPy)."""
    n = values.size
    at = (n - 1) * 0.95
    lo = int(at)
    hi = min(lo + 1, n - 1)
    part = np.partition(values, (lo, hi))
    a, b = part[lo], part[hi]
    t = at - lo
    d = b - a
    return float(b - d * (1 - t) if t >= 0.5 else a + d * t)


def _median_outside(x: np.ndarray, fg: np.ndarray) -> float:
    """Median of ``x`` where ``fg`` is False (0 when there is no such pixel)."""
    outside = x[~fg]
    if outside.size == 0:
        return 0.0
    return float(np.median(outside, overwrite_input=True))  # a copy already: sort it in place


def along_border(crop: np.ndarray, origin: tuple[int, int], hw: tuple[int, int]) -> float:
    """The largest share of one side of an ``hw`` image that the mask ``crop`` at ``origin``
    (XY) lies along: 0 for a mask clear of the border, 1 for one along a whole side."""
    x0, y0 = origin
    h, w = hw
    ch, cw = crop.shape
    runs = []
    if y0 == 0:
        runs.append(np.count_nonzero(crop[0]) / w)
    if y0 + ch == h:
        runs.append(np.count_nonzero(crop[-1]) / w)
    if x0 == 0:
        runs.append(np.count_nonzero(crop[:, 0]) / h)
    if x0 + cw == w:
        runs.append(np.count_nonzero(crop[:, -1]) / h)
    return float(max(runs, default=0.0))


def _clip_crop(
    crop: np.ndarray, origin: tuple[int, int], box: tuple[int, int, int, int]
) -> tuple[np.ndarray, tuple[int, int]]:
    """A mask crop at ``origin`` ``(x0, y0)`` clipped to ``box`` (XYXY): ``(crop, origin)``."""
    ox, oy = int(origin[0]), int(origin[1])
    bx0, by0, bx1, by1 = box
    x0, y0 = max(ox, bx0), max(oy, by0)
    x1, y1 = min(ox + crop.shape[1], bx1), min(oy + crop.shape[0], by1)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 0), dtype=bool), (0, 0)
    return crop[y0 - oy : y1 - oy, x0 - ox : x1 - ox], (x0, y0)


def _component_at(fg: np.ndarray, x: int, y: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The 4-connected component of ``fg`` holding pixel ``(x, y)``: ``(crop, (x0, y0))``."""
    import cv2

    img = np.ascontiguousarray(fg, dtype=np.uint8)
    _, _, _, (rx, ry, rw, rh) = cv2.floodFill(img, None, (int(x), int(y)), 2, 0, 0, 4)
    return img[ry : ry + rh, rx : rx + rw] == 2, (rx, ry)


def _label_counts(labels: np.ndarray, n: int | None = None) -> np.ndarray:
    """``np.bincount(labels.ravel())`` in row blocks: bincount makes an int64 copy of its
    input, 128 MB for a 4096 x 4096 int32 label image."""
    if n is None:
        n = int(labels.max()) + 1 if labels.size else 1
    counts = np.zeros(n, dtype=np.int64)
    step = max(1, (1 << 20) // max(labels.shape[1], 1))
    for r in range(0, labels.shape[0], step):
        counts += np.bincount(labels[r : r + step].ravel(), minlength=n)[:n]
    return counts


def _label_sums(labels: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """``(n,)`` float64 sums of ``values`` per label, in row blocks (no image-sized float64)."""
    sums = np.zeros(n, dtype=np.float64)
    step = max(1, (1 << 20) // max(labels.shape[1], 1))
    for r in range(0, labels.shape[0], step):
        sums += np.bincount(
            labels[r : r + step].ravel(), weights=values[r : r + step].ravel(), minlength=n
        )[:n]
    return sums


def _build_instances(
    crops: list[np.ndarray],
    origins: Any,
    hw: tuple[int, int],
    counts: np.ndarray,
    sums: np.ndarray,
    bg: float,
    thr: float,
    polarity: str,
) -> Instances:
    """Instances of mask crops, scored by contrast (object mean vs ``bg``, relative to the
    threshold's margin) and solidity."""
    n = len(crops)
    areas = np.asarray(counts, dtype=np.int64).reshape(n)
    span = abs(thr - bg) + 1e-6
    means = np.asarray(sums, dtype=np.float64).reshape(n) / np.maximum(areas, 1)
    delta = (means - bg) if polarity == "bright" else (bg - means)
    contrast = np.clip(delta / (2.0 * span), 0.0, 1.0).astype(np.float32)
    solidity = np.array([_solidity(c, int(a)) for c, a in zip(crops, areas, strict=True)], dtype=np.float32)
    scores = np.clip(0.5 * (contrast + solidity), 0.0, 1.0)
    return Instances.from_crops(
        crops,
        origins,
        hw,
        scores=scores,
        data={"area": areas, "contrast": contrast, "solidity": solidity},
    )
