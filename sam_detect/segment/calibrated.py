"""Proposals calibrated by the examples: the array operations behind the proposal profile.

A class's examples say which colour direction separates the objects from a ring of
surroundings (and with which polarity), how large they are, and which settings of a
simple threshold-and-split segmenter reproduce their masks on their own images. This
module holds that segmenter and its settings grid:

1. ``x = rgb @ direction``: one channel in which the objects are brighter than their ring
   (fluorescent nuclei: about luminance; dark nuclei on pink: minus red and green; coins:
   luminance), smoothed at ``smooth`` x the examples' radius (light smoothing keeps crisp
   outlines; heavy smoothing makes one blob of a nucleus whose chromatin is textured);
2. a background: ``flat`` (the examples' ring level) or ``opening`` (a morphological
   opening wider than the largest example, for uneven illumination);
3. a threshold at ``level`` of the examples' contrast above that background (times the
   image's ``exposure`` where a grey image's objects stand out less than the examples'
   image's); holes filled;
4. touching objects split by a distance-transform watershed with ``h`` a fraction of the
   examples' radius (``0``: no split), at the intensity's maxima, or at the maxima of the
   scale-normalised Laplacian of Gaussian over the examples' sizes ("blob": a small object
   touching a large one gets its own seed), or at the objects' middles where these differ in
   colour from their outer parts ("core": a whole cell parted at its nucleus, the pixels
   shared out to the nearest middle);
   or, for cells drawn only by their outlines (a membrane stain), no threshold at all: the
   image flooded from its h-minima, the cells' insides the basins and their outlines the
   ridges ("ridge", tried only where the examples' outline bands are brighter than their
   middles: above them along a bright class's direction, below along a dark one's);
5. optionally, each object's outline drawn a pixel inside (``inset``), where the examples
   are outlined tighter than a threshold draws them (the blur around an object).

:data:`GRID` lists the settings tried when examples are added (the heavily smoothed half
only where the lightly smoothed one leaves room for it, :data:`HEAVY_SMOOTH_BELOW`); each
example records the IoU with which each setting reproduces it (:func:`grid_ious`), and the profile keeps the
best few (``sam_detect.profile``). At detection every kept setting proposes candidates,
so the candidates overlap (nested alternatives at several levels and split strengths);
the pipeline's selection step chooses among them.

The constants here were chosen on synthetic fields (``scripts/bench_data.py``), not on the
data sets reported in docs/performance.md.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sam_detect.instances import Instances
from sam_detect.masks import MaskCrop
from sam_detect.segment.tiling import cut_by_window

#: threshold levels, as fractions of the examples' contrast above the background
LEVELS = (0.05, 0.1, 0.15, 0.3, 0.5)
#: each object then cut at this fraction of its own height above the background (0: no cut)
REFINES = (0.0, 0.35)
#: split strengths (0: no split): touching objects are split at the h-maxima of the distance
#: transform ("shape", h a fraction of the examples' median radius) or of the intensity
#: ("intensity", h a fraction of the examples' contrast: objects brighter in their middle)
SPLITS = (0.0, 0.1, 0.25, 0.5)
SPLIT_ON = ("shape", "intensity")
#: the third way to split ("blob"): one seed per maximum of the scale-normalised Laplacian of
#: Gaussian at the examples' sizes (a small object beside a large one has its own maximum at
#: its own scale, where the distance transform's h-maxima see only the large one's), the
#: objects grown from the seeds by a watershed of the intensity. Tried at this one strength:
#: a maximum counts when its response is this share of the examples' contrast
BLOB_SPLIT = 0.1
#: the scales tried, geometrically from the smallest admitted object's to the largest example's
BLOB_SCALES = 6
#: two seeds are at least this share of the smallest admitted object's radius apart
BLOB_SEPARATION = 0.7
#: the fourth way to split ("core"): one seed per object at its inner structure, where the
#: examples' middles differ in colour from their outer parts (``Scale.core_direction``: a
#: whole cell's nucleus, in another colour than its cytoplasm). Seeds are the maxima of the
#: scale-normalised Laplacian of Gaussian of the image along that colour at the middles' size
#: (``Scale.core_radius``), at least this share of the middles' contrast strong; each
#: component holding two or more is shared out between them by a compact watershed of the
#: gradient magnitude of the class's projection (:func:`core_flood`): a border settles where
#: the cells' own outlines meet, not halfway between their nuclei. Tried at this one strength
#: (0.1-0.5 drew the development macrophages alike)
CORE_SPLIT = 0.25
#: the core flood's compactness: a pixel one median radius further from a seed costs as much
#: as this share of the examples' contrast per pixel of gradient. 0 (the gradient alone)
#: leaks round weak outlines; large values are the even-paced flood, borders halfway between
#: nuclei (development macrophages, seeds 0 / 1, best core reproduction and final F1: even
#: pace 0.681 / 0.648, 0.515 / 0.542; 0: 0.715 / 0.627; 0.03: 0.729 / 0.675, 0.572 / 0.567;
#: 0.1: 0.716 / 0.651, 0.556 / 0.598; 0.3: 0.689 / 0.639; 1: 0.683 / 0.653)
CORE_COMPACTNESS = 0.1
#: the core flood starts from each seed's nearest pixels up to this many middles' radii
#: (``Scale.core_radius``) from it: a nucleus dimmer than the cytoplasm along the class's
#: colour rims itself with gradient, and a seed shut in by that rim let its neighbour's
#: flood take the cytoplasm of both (synthetic cells with nuclei, same cytoplasm, no border
#: between them, reproduction 0.856 / 0.858 with the even pace; 0.743 / 0.737 from the seed
#: alone, 0.777 / 0.744 at 1, 0.819 / 0.789 at 1.3, 0.857 / 0.852 at 1.6). It costs the
#: development macrophages (seeds 0 / 1, reproduction 0.716 / 0.651 -> 0.690 / 0.656, F1
#: 0.576 -> 0.554, the even pace 0.528)
CORE_SEED_GROW = 1.6
#: the middles' scales tried: these multiples of ``core_radius / sqrt 2``
CORE_SCALES = (0.7, 1.0, 1.4)
#: the fifth way ("ridge"), for cells drawn only by their outlines (a membrane stain: bright
#: outlines packed edge to edge, dim insides): no threshold, the image itself is flooded
#: from its h-minima, the cells' insides the basins and their outlines the ridges
#: (:func:`ridge_labels`), along the class's direction in the polarity that makes the
#: outlines bright (``Scale.ridge``). Tried only where the examples show such outlines
#: (``profile.RIDGE_GATE``). The strengths: ``h`` these fractions of how far the examples'
#: outline band stands above their middles (``|Scale.ridge|``). On the development membrane
#: tissue (``dev_membrane``: image 290's examples, seed 0, the four other images flooded
#: whole, basins in the examples' size range scored) F1 0.595 / 0.549 / 0.344 at 0.25 / 0.5
#: / 1 (0.487 at 0.1, 0.531 at 0.15): the dimmer images want the lower strengths, the
#: brighter ones 0.5. The examples choose the lead; the others are offered beside it
RIDGE_SPLITS = (0.25, 0.5, 1.0)
BACKGROUNDS = ("flat", "opening")
#: Gaussian smoothing of the projection, sigma as a fraction of the examples' median radius
SMOOTHS = (0.125, 0.33)
#: the heavy smoothing (``SMOOTHS[1]``, half the grid's work) is left untried where the light
#: one already reproduces the examples at a mean IoU of at least this (its best setting, as
#: drawn or inset) ...
HEAVY_SMOOTH_BELOW = 0.7
#: ... and the examples are smooth: the median over them of their inside's standard deviation
#: along the lightly smoothed projection, over the class's contrast, under this. Its settings
#: then count as reproducing nothing, as an earlier grid's missing settings do. On the
#: development sets the heavy smoothing led only where the light one's best lay at 0.38-0.63
#: (piles, the H&E stroma), and on speckled synthetic discs (texture 5.8-8.6, the light
#: smoothing's best 0.87-0.91); the fluorescent nuclei lie at texture 0.25-0.33 and their
#: profiles came out the same without it (docs/performance.md, session 53)
HEAVY_SMOOTH_TEXTURE = 0.5
#: each setting's outline may also be drawn this many pixels inside the threshold's (the
#: objects' outermost ring of pixels dropped): annotators differ in where they draw an
#: outline, and a threshold's edge follows the blur around an object. Each setting is
#: measured both ways on the examples, and a class's settings all draw inset where the
#: settings chosen that way reproduce them better (``profile._settings``). Only inward: a pixel outward was tried
#: on the development sets too, and the examples chose it where the scored images' objects
#: did not want it (``dev_cross``: reproduction 0.912 -> 0.940, F1 0.958 -> 0.942;
#: docs/performance.md, session 31)
INSET = 1
GRID_VERSION = 10
#: the most threads the settings grid runs on in calibration (fewer where fewer cores are
#: free): one smoothing, background and level a task
MAX_THREADS = 8


def grid_threads() -> int:
    """Threads for the calibration's settings grid: the cores this process may use, at most
    :data:`MAX_THREADS`."""
    from sam_detect._cores import usable_cores

    return min(MAX_THREADS, usable_cores())


#: the settings are tried, and propose, at a working scale where the examples' median radius
#: is at most this many pixels: every setting is relative to the examples' size, so larger
#: objects only cost time (calibration and proposals grow with the pixels: ten coffee beans of
#: radius 43 px on a 1024 x 1024 photograph took 46 s to calibrate, and the cost grows with
#: the square of the radius). Outlines are drawn back at the image's own scale, where their
#: outline contrast is measured as the examples' is. 32: no development set's objects are
#: larger, and working the macrophages (radius 23-30) at 16 or 20 cost them 0.02-0.03
#: (docs/performance.md, session 34)
WORK_RADIUS = 32.0
#: ... from this many times that radius on: objects a little larger are worked at their own
#: scale (a copy at 0.9 of the size would save a fifth of the work and move every outline)
ZOOM_FROM = 1.25


@dataclass(frozen=True)
class Setting:
    """One point of the settings grid."""

    background: str
    level: float
    refine: float
    split: float
    split_on: str = "shape"
    smooth: float = SMOOTHS[0]
    inset: int = 0  # the outline drawn this many pixels inside the threshold's (``INSET``)
    #: offered for its wholes only (``profile.WAY_MARGIN``): a way that splits less than the
    #: lead's and reproduces the examples clearly worse; counted in no candidate's
    #: ``stability_core``
    wholes: bool = False

    def to_dict(self) -> dict:
        d = {"background": self.background, "level": self.level, "refine": self.refine,
             "split": self.split, "split_on": self.split_on, "smooth": self.smooth}
        if self.inset:
            d["inset"] = self.inset
        if self.wholes:
            d["wholes"] = True
        return d

    @property
    def drawn(self) -> Setting:
        """The same setting with the threshold's own outline (its place in ``GRID``)."""
        return dataclasses.replace(self, inset=0, wholes=False) if self.inset or self.wholes else self


#: the segmenter's own settings (the classical defaults, or the user's options), judged by
#: the examples like every other setting: kept when they reproduce the examples as well
OWN = Setting("own", 0.0, 0.0, 0.0, "own")

GRID: tuple[Setting, ...] = tuple(
    Setting(b, lv, rf, sp, on, sm)
    for sm in SMOOTHS for b in BACKGROUNDS for lv in LEVELS for rf in REFINES for sp in SPLITS
    for on in SPLIT_ON if sp > 0 or on == "shape"
) + tuple(  # grid 9's blob splits, after grid 8's settings (whose measurements carry over)
    Setting(b, lv, rf, BLOB_SPLIT, "blob", sm)
    for sm in SMOOTHS for b in BACKGROUNDS for lv in LEVELS for rf in REFINES
) + tuple(  # grid 10's core splits, after grid 9's settings (whose measurements carry over)
    Setting(b, lv, rf, CORE_SPLIT, "core", sm)
    for sm in SMOOTHS for b in BACKGROUNDS for lv in LEVELS for rf in REFINES
) + (OWN,) + tuple(  # the ridge way, after the segmenter's own (no threshold: one background, no level)
    Setting("flat", 0.0, 0.0, h, "ridge", sm) for sm in SMOOTHS for h in RIDGE_SPLITS
)
#: the settings every measurement of grid 10 holds (through the segmenter's own): the ridge
#: way's rows follow only where they were measured (``Scale.has_ridge``), so an example
#: measured without them, or before they were, is stored and read as before (its ridge rows
#: count as reproducing nothing, as an earlier grid's missing settings do)
GRID_MEASURED = len(GRID) - len(SMOOTHS) * len(RIDGE_SPLITS)
#: each setting's index into ``GRID`` (a dict: ``GRID.index`` compares dataclasses one by one)
GRID_INDEX: dict[Setting, int] = {g: k for k, g in enumerate(GRID)}


@dataclass
class Scale:
    """What the settings are relative to: one class's examples, summarised."""

    direction: np.ndarray  # (3,) float: RGB weights, objects bright along it
    contrast: float  # median (inside - ring) along ``direction``
    ring_level: float  # median ring level along ``direction``
    radius: float  # median equivalent radius, pixels
    max_radius: float  # largest equivalent radius, pixels
    min_area: float
    max_area: float
    minor_radius: float = 0.0  # median half-width (the minor semi-axis), pixels; 0: ``radius``
    #: how far this image's objects stand out against the examples' image's (under 1: a
    #: dimmer grey image, ``profile.grey_ratio``): the threshold levels are fractions of
    #: ``contrast`` x this, so a dimmer frame's objects are cut where the examples' were;
    #: the splits and the outline contrast stay in the examples' grey values
    exposure: float = 1.0
    #: the typical examples' median solidity (area over convex hull; ``profile``'s
    #: ``solidity[1]``): how far a coarser way's candidate may be from convex
    #: (:func:`_convex_wholes`); 1: not known
    solidity: float = 1.0
    #: the colour along which the examples' middles stand out from their outer parts (unit
    #: RGB; ``None``: not measured, or they do not differ), the middles' equivalent radius
    #: (pixels) and how far they stand out along it: the "core" split's seeds
    core_direction: np.ndarray | None = None
    core_radius: float = 0.0
    core_contrast: float = 0.0
    #: how far the examples' outline band stands above their middles along ``direction``
    #: (grey values, signed: negative where the outlines are dark along it), where the
    #: examples are drawn by bright outlines (``profile.RIDGE_GATE``); 0: they are not, and
    #: the "ridge" way is not tried
    ridge: float = 0.0
    #: a stain class's hue (``profile._stain_hue``: the unit direction of the examples'
    #: optical density, and how many degrees from it a candidate's may lie); ``None``: the
    #: class has none. A clump whose colour lies further off is not offered in pieces
    #: (:func:`off_hue_regions`)
    hue_direction: np.ndarray | None = None
    hue_limit: float = 0.0

    @property
    def has_core(self) -> bool:
        return self.core_direction is not None and self.core_radius > 0 and self.core_contrast > 0

    @property
    def has_ridge(self) -> bool:
        return self.ridge != 0

    @property
    def half_width(self) -> float:
        """How far apart two touching objects' middles can be, halved: the minor semi-axis
        (rods lie side by side at their width, not their equivalent diameter)."""
        return self.minor_radius if self.minor_radius > 0 else self.radius

    def sigma(self, smooth: float = SMOOTHS[0]) -> float:
        """The smoothing's sigma in pixels at ``smooth`` x the median radius."""
        return float(np.clip(smooth * self.radius, 0.5, 3.0 if smooth <= SMOOTHS[0] else 8.0))

    @property
    def background_radius(self) -> int:
        return int(np.clip(round(2.0 * self.max_radius + 2), 5, 400))

    @property
    def zoom(self) -> float:
        """The working scale (:func:`working_zoom`): 1, or below 1 for large objects."""
        return working_zoom(self.radius)

    def zoomed(self, f: float) -> Scale:
        """The same examples seen at ``f`` x the image's scale (lengths x ``f``, areas x ``f``²)."""
        return dataclasses.replace(
            self, radius=self.radius * f, max_radius=self.max_radius * f, minor_radius=self.minor_radius * f,
            min_area=self.min_area * f * f, max_area=self.max_area * f * f, core_radius=self.core_radius * f)


def working_zoom(radius: float) -> float:
    """The scale objects of median radius ``radius`` are worked at (:data:`WORK_RADIUS`):
    1, or below 1 for large objects."""
    return WORK_RADIUS / radius if radius > ZOOM_FROM * WORK_RADIUS else 1.0


def shrink(rgb: np.ndarray, f: float) -> np.ndarray:
    """``rgb`` resized by ``f`` (< 1; pixel areas averaged), at least one pixel a side."""
    import cv2

    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)


def shrink_masks(masks: list[tuple[np.ndarray, tuple[int, int]]], hw: tuple[int, int],
                 small_hw: tuple[int, int]) -> list[tuple[np.ndarray, tuple[int, int]]]:
    """Each ``(crop, (x0, y0))`` of an ``hw`` image as drawn on its ``small_hw`` copy
    (:func:`shrink`): the small pixels it covers at least half of (an empty crop of one pixel where it covers none)."""
    import cv2

    h, w = hw
    sh, sw = small_hw
    out = []
    for crop, (x0, y0) in masks:
        full = np.zeros((h, w), np.uint8)
        full[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop.astype(np.uint8) * 255
        small = cv2.resize(full, (sw, sh), interpolation=cv2.INTER_AREA) >= 128
        ys, xs = np.nonzero(small)
        if not len(ys):
            cy, cx = min(sh - 1, int((y0 + crop.shape[0] / 2) * sh / h)), min(sw - 1, int((x0 + crop.shape[1] / 2) * sw / w))
            out.append((np.zeros((1, 1), bool), (cx, cy)))
            continue
        ya, yb, xa, xb = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        out.append((small[ya:yb, xa:xb], (int(xa), int(ya))))
    return out


def project(rgb: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """``(H, W)`` float32: ``rgb @ direction`` (a gray ``(H, W)`` image is 3 equal channels)."""
    d = np.asarray(direction, np.float32)
    if rgb.ndim == 2:
        return rgb.astype(np.float32) * float(d.sum())
    x = rgb[..., 0].astype(np.float32) * d[0]
    x += rgb[..., 1].astype(np.float32) * d[1]
    x += rgb[..., 2].astype(np.float32) * d[2]
    return x


class Prepared:
    """The per-image work shared by every setting of one smoothing: projection, smoothing,
    backgrounds."""

    def __init__(self, rgb: np.ndarray, scale: Scale, smooth: float = SMOOTHS[0]) -> None:
        import cv2

        self.scale = scale
        x = project(rgb, scale.direction)
        sigma = scale.sigma(smooth)
        if sigma > 0:
            x = cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        self.x = x
        self._rgb = rgb
        self._resid: dict[str, np.ndarray] = {}
        self._core: tuple[np.ndarray, np.ndarray] | None = None

    def core(self) -> tuple[np.ndarray, np.ndarray] | None:
        """:func:`core_maxima` of the image (``None`` where the scale has no core)."""
        if self._core is None and self.scale.has_core:
            self._core = core_maxima(core_response(self._rgb, self.scale), self.scale)
        return self._core

    def resid(self, background: str) -> np.ndarray:
        if background not in self._resid:
            if background == "flat":
                self._resid[background] = self.x - np.float32(self.scale.ring_level)
            else:
                from sam_detect.segment.classical_ops import _background

                self._resid[background] = self.x - _background(self.x, self.scale.background_radius)
        return self._resid[background]


def foreground(
    prep: Prepared, background: str, level: float, refine: float, roi: np.ndarray | None = None,
    holes: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Pixels above ``level`` x the examples' contrast (x the image's ``exposure``), each object cut at ``refine`` of its
    own height, holes filled, specks opened away. ``roi``: keep only the connected
    components that touch it (calibration needs only the objects under the examples).
    ``holes``: also return the pixels that are foreground only as filled holes (under the
    threshold), for :func:`open_gaps`."""
    import cv2

    from sam_detect.segment.classical_ops import _fill_holes, _refine_objects

    resid = prep.resid(background)
    above = np.ascontiguousarray(resid > np.float32(level * prep.scale.contrast * prep.scale.exposure))
    fg = above
    if roi is not None:
        n, comp = cv2.connectedComponents(fg.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
        hit = np.zeros(n, bool)
        hit[np.unique(comp[roi])] = True
        hit[0] = False
        fg = hit[comp]
    fg = _fill_holes(fg)
    if refine > 0 and fg.any():
        fg = _fill_holes(_refine_objects(fg, resid, refine, 0.0))
    r = 1 if prep.scale.radius >= 4 else 0
    if r:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2)
        fg = cv2.morphologyEx(fg.view(np.uint8), cv2.MORPH_OPEN, kernel).view(bool)
    return (fg, fg & ~above) if holes else fg


#: a filled hole that objects share is the ground between them (:func:`open_gaps`) where most
#: of its pixels lie under this share of the examples' contrast above the ground: a textured
#: nucleus split at its dark chromatin shares a hole that is still stained. Not tuned: the
#: lowest of the grid's threshold levels but one (``LEVELS``)
GAP_LEVEL = 0.1
#: ... and where at least this many objects enclose it: no fewer than three convex objects
#: enclose a gap between them, while a cell split in two at its dark nucleus (a cytoplasm
#: stain) shares that nucleus between two pieces. Chosen on that geometry, not measured into:
#: two gave the same held-out format on `dev_neurocyte` (0.824) and 0.635 against 0.632 on
#: `dev_macrophage` (session 90)
GAP_OWNERS = 3


def open_gaps(labels: np.ndarray, holes: np.ndarray, x: np.ndarray | None = None,
              ground: float = np.inf) -> np.ndarray:
    """``labels`` with every filled hole that :data:`GAP_OWNERS` or more objects share given
    back to the ground: a gap enclosed by a ring of touching objects (a dense field's dark
    ground between nuclei) is not a hole of any one of them, yet filling the foreground's
    holes made it foreground, and the split then shared it out, each nucleus reaching into
    the gap with straight edges. A hole one object holds alone (a nucleolus, a vesicular
    nucleus's pale middle) stays filled, and so does one whose pixels mostly stand above
    ``ground`` in ``x`` (the projection, its background removed): a textured nucleus split
    at its dark chromatin. ``holes``: :func:`foreground`'s second value. Returns ``labels``
    itself where nothing changes (it may be shared: never written)."""
    import cv2

    if not holes.any():
        return labels
    n, comp = cv2.connectedComponents(holes.view(np.uint8), connectivity=4, ltype=cv2.CV_32S)
    at = comp > 0
    span = int(labels.max()) + 1
    pairs = np.unique(comp[at].astype(np.int64) * span + labels[at])  # (hole, object in it), each once
    owners = np.bincount(pairs[pairs % span > 0] // span, minlength=n)
    shared = owners >= GAP_OWNERS
    if x is not None and shared.any():
        dark = np.bincount(comp[at], weights=(x[at] <= np.float32(ground)), minlength=n)
        shared &= dark >= 0.5 * np.bincount(comp[at], minlength=n)
    if not shared.any():
        return labels
    out = labels.copy()
    out[shared[comp] & at] = 0
    return out


def split_labels(fg: np.ndarray, scale: Scale, split: float, split_on: str = "shape",
                 x: np.ndarray | None = None) -> np.ndarray:
    """``(H, W)`` int32 labels: connected components, or a watershed split when ``split > 0``
    (on the distance transform; on the intensity ``x`` for ``split_on="intensity"``; seeded
    at the maxima of :func:`blobness` of ``x`` for ``split_on="blob"``)."""
    return _Splits(fg, scale, x).labels(split, split_on)


class _Splits:
    """:func:`split_labels` of one foreground at every strength and either way of splitting:
    the connected components, the distance transform and each component's crops are found
    once and shared (the settings grid tries six splits of each foreground).

    The labels returned may be the same array for several splits: read them, do not write.
    """

    def __init__(self, fg: np.ndarray, scale: Scale, x: np.ndarray | None = None,
                 blobs: Any = None, core: Any = None, ahead: Sequence[tuple[float, str]] = (),
                 roi: np.ndarray | None = None) -> None:
        """``ahead``: the ``(split, split_on)`` that :meth:`labels` will be asked for (the
        calibration grid's six of each foreground): the h-maxima of a component at several
        strengths are found together (``classical_ops._h_maxima_many``), the same arrays.
        ``roi``: split only the components that hold some of its pixels, and leave the others
        whole: the calibration reads the objects under the examples' pixels alone, and their
        labels come out in the same order (a trimmed or opened foreground falls apart into
        pieces away from the examples: 4-19 % of the components' pixels in the development
        sets' grids, 8 % on ``dev_stroma``)."""
        from sam_detect.segment.classical_ops import _Components, _TouchingSplit

        self.scale = scale
        self.x = x
        self._core = core  # a function returning core_maxima of the image, or None
        self._blobs = blobs  # a function returning blob_maxima(x, scale), shared between foregrounds
        self.comps = _Components(fg)
        self.only: np.ndarray | None = None  # (n,) bool: the components split (None: all)
        if roi is not None:
            self.only = np.zeros(self.comps.n, bool)
            self.only[np.unique(self.comps.comp[roi])] = True
            self.only[0] = False
        self.shape = _TouchingSplit(self.comps, 1.0, keep=True)
        self.shape.only = self.only
        self.shape.ahead = tuple(self._shape_h(sp) for sp, on in ahead if on == "shape" and sp > 0)
        self._ahead = tuple(self._intensity_h(sp) for sp, on in ahead if on == "intensity" and sp > 0)
        self._maxima: dict[tuple[int, float], np.ndarray] = {}  # (component, h): h-maxima found ahead
        self._inside: dict[int, tuple[tuple[slice, slice], np.ndarray, float, float]] = {}
        self._v: dict[int, np.ndarray] = {}
        self._floods: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # each component's latest intensity flood
        self._seeds: dict[int, tuple[np.ndarray, int, np.ndarray]] = {}  # ... and its seed labels

    def _shape_h(self, split: float) -> float:
        return max(0.5, split * self.scale.half_width)

    def _intensity_h(self, split: float) -> float:
        return max(1.0, split * self.scale.contrast)

    def labels(self, split: float, split_on: str = "shape") -> np.ndarray:
        scale = self.scale
        if split <= 0 or self.comps.n <= 1:
            return self.comps.comp
        min_distance = max(2, int(round(scale.half_width / 2)))
        if split_on == "core":
            core = self._core() if self._core is not None else None
            if core is None:
                return self.comps.comp
            return self._on_seeds(core, split * scale.core_contrast * scale.exposure, False)
        if split_on == "blob" and self.x is not None:
            return self._on_blobs(split * scale.contrast)
        if split_on == "intensity" and self.x is not None:
            # two objects' brightest points lie about two half-widths apart: closer maxima are texture
            return self._on_intensity(self._intensity_h(split), max(2, int(round(scale.half_width))))
        return self.shape.labels(self._shape_h(split), min_distance)

    def _on_blobs(self, threshold: float) -> np.ndarray:
        """Each component that holds two or more maxima of :func:`blobness` at least
        ``threshold`` strong is split by a watershed of ``-x`` seeded at them (its pieces
        numbered ``comps.n`` + the seed's number); every other component stays whole, with
        its own number."""
        return self._on_seeds(self._blobs() if self._blobs is not None else blob_maxima(self.x, self.scale),
                              threshold, True)

    def _on_seeds(self, maxima: tuple[np.ndarray, np.ndarray], threshold: float,
                  on_x: bool) -> np.ndarray:
        """Each component holding two or more of ``maxima`` (``(response, local_max)``) at
        least ``threshold`` strong split by a watershed seeded at them: of ``-x`` (``on_x``),
        or :func:`core_flood`'s compact watershed of ``x``'s gradient."""
        import cv2

        from sam_detect.segment.classical_ops import watershed

        comps = self.comps
        comp = comps.comp
        lap, local_max = maxima
        peaks = local_max & comps.fg & (lap >= np.float32(threshold))
        n, seeds = cv2.connectedComponents(peaks.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
        if n <= 2:
            return comp
        at = seeds > 0
        pairs = np.unique(comp[at].astype(np.int64) * n + seeds[at])
        several = np.bincount(pairs // n, minlength=comps.n) >= 2
        if self.only is not None:
            several &= self.only
        several = np.flatnonzero(several)
        if not len(several):
            return comp
        labels = comp.copy()
        for c in several.tolist():
            sl, m = comps.crop(c)
            if on_x:
                ws = watershed(-self.x[sl], np.where(m, seeds[sl], 0), m)
            else:
                ws = core_flood(self.x, sl, np.where(m, seeds[sl], 0), m, self.scale)
            labels[sl][m] = np.where(ws[m] > 0, ws[m] + comps.n, c)
        return labels

    def _component(self, c: int) -> tuple[tuple[slice, slice], np.ndarray, float, float]:
        """``(sl, m, lo, hi)``: component ``c``'s box, mask, and the range of ``x`` inside it."""
        if c not in self._inside:
            sl, m = self.comps.crop(c)
            inside = self.x[sl][m]
            self._inside[c] = (sl, m, float(inside.min()), float(inside.max()))
        return self._inside[c]

    def _h_maxima(self, c: int, h: float, span: float) -> np.ndarray:
        """``_h_maxima`` of component ``c``'s intensity crop at ``h``, found with those of the
        other strengths ahead that :meth:`_on_intensity` will ask of it (those no larger than
        the crop's ``span`` of values)."""
        from sam_detect.segment.classical_ops import _h_maxima_ahead

        return _h_maxima_ahead(self._maxima, c, self._v[c], h, self._ahead, lambda g: not span < g)

    def _on_intensity(self, h: float, min_distance: int) -> np.ndarray:
        """Watershed of each component on ``-x``, seeded at the h-maxima of ``x`` inside it.
        The components' own labels (the same array) where none holds two seeds."""
        from sam_detect.segment.classical_ops import _seed_labels_again, reflood

        comps = self.comps
        areas = comps.stats[:, 4].tolist()
        only = self.only.tolist() if self.only is not None else None
        lut = np.zeros(comps.n, np.int32)  # an unsplit component's number
        pieces = []  # a split component's box, mask and numbered pieces
        next_id = 1
        for c in range(1, comps.n):
            k = 0
            # too small to hold two objects, or no two maxima h apart: one object, no h-maxima needed
            if not areas[c] < 4 * min_distance * min_distance and (only is None or only[c]):
                sl, m, lo, hi = self._component(c)
                if not hi - lo < h:
                    if c not in self._v:
                        self._v[c] = np.where(m, self.x[sl], lo).astype(np.float32)
                    seeds = _seed_labels_again(self._seeds, c, self._h_maxima(c, h, hi - lo) & m, min_distance)
                    k = int(seeds.max())
            if k <= 1:
                lut[c] = next_id
                next_id += 1
                continue
            ws = reflood(self._floods, c, -self._v[c], seeds, m)
            # pixels joined to the seeds' pieces only diagonally are not flooded (4-connected):
            # dropped, as the shape split drops them, not given the previous object's number
            pieces.append((sl, m, np.where(ws > 0, ws + (next_id - 1), 0)))
            next_id += k
        if not pieces:  # every component whole, numbered as it is
            return comps.comp
        labels = lut[comps.comp]
        for sl, m, ws in pieces:
            labels[sl][m] = ws[m]
        return labels


def core_flood(x: np.ndarray, sl: tuple[slice, slice], markers: np.ndarray, mask: np.ndarray,
               scale: Scale) -> np.ndarray:
    """``(h, w)`` int32: one component's crop ``mask`` (``x[sl]``'s pixels) shared out between
    its ``markers`` by a compact watershed (:data:`CORE_COMPACTNESS`) of :func:`core_ground`
    (the gradient of the class's projection ``x``): each seed floods its own cell up to where
    the outlines between touching cells rise, held back from running far along a weak one;
    the pixels within :data:`CORE_SEED_GROW` middles' radii of a seed go to their nearest one
    first."""
    from scipy import ndimage as ndi
    from skimage import segmentation

    h, w = x.shape
    ya, yb = max(0, sl[0].start - 1), min(h, sl[0].stop + 1)
    xa, xb = max(0, sl[1].start - 1), min(w, sl[1].stop + 1)
    # the gradient of a window one pixel wider: the whole image's, whatever the crop
    ground = core_ground(x[ya:yb, xa:xb], scale)[sl[0].start - ya : sl[0].stop - ya, sl[1].start - xa : sl[1].stop - xa]
    # each seed floods its nucleus first: a nucleus dimmer along the class's colour has its
    # own rim of gradient, which is no border between cells
    d, (iy, ix) = ndi.distance_transform_edt(markers == 0, return_indices=True)
    markers = np.where(mask & (d <= CORE_SEED_GROW * scale.core_radius), markers[iy, ix], 0)
    return segmentation.watershed(ground.astype(np.float64), markers, mask=mask,
                                  compactness=CORE_COMPACTNESS / max(float(scale.radius), 1.0)).astype(np.int32)


def core_ground(x: np.ndarray, scale: Scale) -> np.ndarray:
    """``(H, W)`` float32: the gradient magnitude of ``x`` (3 x 3 Sobel), in units of the
    examples' contrast per pixel."""
    import cv2

    v = np.ascontiguousarray(x, np.float32)
    gx = cv2.Sobel(v, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(v, cv2.CV_32F, 0, 1, ksize=3)
    return np.sqrt(gx * gx + gy * gy) / np.float32(8 * max(float(scale.contrast), 1e-3))


def blobness(x: np.ndarray, scale: Scale) -> np.ndarray:
    """``(H, W)`` float32: the largest scale-normalised Laplacian-of-Gaussian response of
    ``x`` (objects bright, the background at 0 or below) over ``BLOB_SCALES`` scales from
    the smallest admitted object's radius to the largest example's (sigma = r / sqrt 2).
    A bright disk of radius ``r`` peaks at its middle at the scale of its own radius."""

    v = np.maximum(x, np.float32(0))  # the background, and a mosaic's gaps, are level
    r_lo = float(np.sqrt(max(scale.min_area, 1.0) / np.pi))
    r_hi = max(float(scale.max_radius), r_lo)
    sigmas = np.geomspace(max(r_lo / np.sqrt(2), 0.8), max(r_hi / np.sqrt(2), 0.8), BLOB_SCALES)
    return log_max(v, sigmas, coarse_above=16.0)


def log_max(v: np.ndarray, sigmas: Sequence[float], coarse_above: float = np.inf) -> np.ndarray:
    """``(H, W)`` float32: the largest scale-normalised Laplacian-of-Gaussian response
    (``-sigma**2`` times the Laplacian of ``v`` blurred by ``sigma``) over ``sigmas``. Scales
    wider than ``coarse_above`` are taken on a smaller copy (the normalised response does not
    change with the sampling): a kernel of 6 sigma a side stays under 100 taps."""
    import cv2

    h, w = v.shape
    out = None
    for s in sigmas:
        f = int(s // 8) if s > coarse_above else 1
        src = v if f == 1 else cv2.resize(v, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
        sf = float(s) / f if f > 1 else float(s)
        lap = cv2.Laplacian(cv2.GaussianBlur(src, (0, 0), sf, borderType=cv2.BORDER_REFLECT), cv2.CV_32F,
                            ksize=1, borderType=cv2.BORDER_REFLECT)
        lap *= np.float32(-sf * sf)
        if f > 1:
            lap = cv2.resize(lap, (w, h), interpolation=cv2.INTER_LINEAR)
        out = lap if out is None else np.maximum(out, lap, out=out)
    return out


def local_maxima(lap: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """``(lap, local_max)``: where ``lap`` equals its maximum over a square of side
    ``2 radius + 1``."""
    import cv2

    d = 2 * radius + 1
    return lap, lap >= cv2.dilate(lap, np.ones((d, d), np.uint8))


def blob_maxima(x: np.ndarray, scale: Scale) -> tuple[np.ndarray, np.ndarray]:
    """``(blobness, local_max)``: :func:`blobness` of ``x``, and where it equals its maximum
    over a square of side ``2 d + 1`` (``d``: ``BLOB_SEPARATION`` x the smallest admitted
    object's radius, at least 2) -- the blob split's candidate seeds, whatever the
    foreground and threshold."""
    return local_maxima(blobness(x, scale), max(2, int(round(BLOB_SEPARATION * np.sqrt(scale.min_area / np.pi)))))


def core_response(rgb: np.ndarray, scale: Scale) -> np.ndarray:
    """``(H, W)`` float32: the largest scale-normalised Laplacian-of-Gaussian response of the
    image along the examples' middles' colour (``scale.core_direction``) over
    :data:`CORE_SCALES` around their size: peaks at each object's middle."""
    return log_max(project(rgb, scale.core_direction),
                   [max(0.8, k * scale.core_radius / np.sqrt(2)) for k in CORE_SCALES])


def core_maxima(lap: np.ndarray, scale: Scale) -> tuple[np.ndarray, np.ndarray]:
    """``(response, local_max)``: :func:`core_response` and where it equals its maximum over
    a square of side ``2 r + 1`` (``r``: the middles' radius, at least 2)."""
    return local_maxima(lap, max(2, int(round(scale.core_radius))))


class _BlobCache:
    """:func:`blob_maxima` of each projection ``(smoothing, background)``, found once however
    many threads ask for it (each key's first caller computes it, the others wait)."""

    def __init__(self) -> None:
        import threading

        self._values: dict[tuple[float, str], tuple[np.ndarray, np.ndarray]] = {}
        self._locks: dict[tuple[float, str], Any] = {}
        self._lock = threading.Lock()

    def get(self, prep: Any, key: tuple[float, str], scale: Scale) -> tuple[np.ndarray, np.ndarray]:
        import threading

        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._values:
                self._values[key] = blob_maxima(prep.resid(key[1]), scale)
            return self._values[key]


def label_images(prepared: Any, scale: Scale, settings: list[Setting], roi: np.ndarray | None = None,
                 blobs: _BlobCache | None = None, gaps: bool = False, work: bool = False):
    """Yield ``(setting, labels)`` for each setting, sharing the work between them.

    ``prepared``: the image (``(H, W[, 3])`` array), or a function of a smoothing that returns
    its :class:`Prepared` (or :class:`_Mosaic`) work. ``roi``: ``(H, W)`` bool, the pixels
    the caller reads (the calibration's examples): only the objects that hold some of them
    are drawn as the settings draw them, in the same order; the rest of the image may be
    left out or drawn unsplit. ``gaps``: give the ground that touching
    objects enclose back to it (:func:`open_gaps`), as the candidates are drawn at detection;
    calibration measures the settings without it, so that the settings the examples choose
    stay as they were. The labels may be one array for
    several settings (splits that split nothing): read them, do not write. ``blobs``: the
    projections' blob maxima, shared with other calls (threads) on the same work.
    ``work``: yield ``(setting, labels, (raw, gaps, splits))`` instead, for
    :func:`clump_pieces`: the labels before the setting's inset, :func:`open_gaps`'
    arguments but the labels (``None`` without ``gaps``) and the setting's :class:`_Splits`
    (``None`` for the ridge way, which splits no foreground).
    """
    if isinstance(prepared, np.ndarray):
        rgb = prepared
        prepared = functools.cache(lambda sm: Prepared(rgb, scale, sm))
    by_fg: dict[tuple[float, str, float, float], tuple[np.ndarray, np.ndarray | None]] = {}
    splits: tuple[tuple, _Splits] | None = None  # the latest foreground's: settings come in runs
    cache = blobs if blobs is not None else _BlobCache()

    def blob_of(prep: Any, key: tuple[float, str]) -> Any:
        return lambda: cache.get(prep, key, scale)

    ridges: dict[tuple[float, str, float], np.ndarray] = {}
    ahead: dict[tuple[float, str, float, float], list[tuple[float, str]]] = {}  # each foreground's splits
    for s in settings:
        if s.split_on != "ridge":
            ahead.setdefault((s.smooth, s.background, s.level, s.refine), []).append((s.split, s.split_on))
    for s in settings:
        prep = prepared(s.smooth)
        if s.split_on == "ridge":
            rkey = (s.smooth, s.background, s.split)
            if rkey not in ridges:
                ridges[rkey] = ridge_labels(prep.resid(s.background), scale, s.split)
            lab = inset_labels(ridges[rkey], s.inset) if s.inset else ridges[rkey]
            yield (s, lab, None) if work else (s, lab)
            continue
        key = (s.smooth, s.background, s.level, s.refine)
        if key not in by_fg:  # the filled holes only where they are opened (not in calibration)
            by_fg[key] = foreground(prep, s.background, s.level, s.refine, roi, holes=True) if gaps else (
                foreground(prep, s.background, s.level, s.refine, roi), None)
        fg, holes = by_fg[key]
        if splits is None or splits[0] != key:
            splits = (key, _Splits(fg, scale, prep.resid(s.background),
                                   blob_of(prep, (s.smooth, s.background)), prep.core, ahead[key], roi=roi))
        labels = splits[1].labels(s.split, s.split_on)
        opened = None
        if holes is not None:
            # whether a hole is ground is read on the light smoothing: a heavy one spreads the
            # objects' light into the gaps between them
            opened = (holes, prepared(SMOOTHS[0]).resid(s.background), GAP_LEVEL * scale.contrast * scale.exposure)
            labels = open_gaps(labels, *opened)
        raw = labels
        labels = inset_labels(labels, s.inset) if s.inset else labels
        yield (s, labels, (raw, opened, splits[1])) if work else (s, labels)


#: a region of the lead setting larger than the examples' size range that another setting's
#: candidate within it holds this share of is not split again (:func:`covered_regions`)
CLUMP_COVER = 0.5
#: a region of the lead setting larger than this many times the examples' size range is not
#: split again (:func:`clump_pieces`): the ground taken for foreground, not a clump
CLUMP_MAX = 20.0


def clump_variants(s: Setting, scale: Scale, taken: set[int]) -> list[Setting]:
    """The other splits in ``GRID`` of ``s``'s foreground (its smoothing, background, level and
    trim; ``s``'s inset): every strength of the shape and intensity splits, the blob split,
    and the core split where the scale has one, less ``s``'s own and those whose ``GRID``
    index is in ``taken`` (settings proposing beside it, whose pieces are offered already)."""
    ways = [(sp, on) for sp in SPLITS if sp > 0 for on in SPLIT_ON] + [(BLOB_SPLIT, "blob")]
    if scale.has_core:
        ways.append((CORE_SPLIT, "core"))
    out = []
    for sp, on in ways:
        v = dataclasses.replace(s, split=sp, split_on=on, wholes=False)
        if (sp, on) != (s.split, s.split_on) and GRID_INDEX.get(v.drawn, -1) >= 0 and GRID_INDEX[v.drawn] not in taken:
            out.append(v)
    return out


def covered_regions(labels: np.ndarray, others: Sequence[np.ndarray], size: tuple[float, float]) -> np.ndarray:
    """For each label of ``labels`` (a setting's, before its inset), whether it is larger than
    ``size[1]`` (pixels) and one candidate of ``others`` (the other settings' labels of the
    same window) within ``size`` holds at least :data:`CLUMP_COVER` of it: a large object the
    lead's threshold drew a little too large, which another setting draws whole."""
    counts = np.bincount(labels.ravel())
    covered = np.zeros(len(counts), bool)
    big = counts > size[1]
    big[0] = False
    if not big.any():
        return covered
    at = big[labels]
    reg = labels[at].astype(np.int64)
    for lab in others:
        area = np.bincount(lab.ravel())
        ok = (area >= size[0]) & (area <= size[1])
        ok[0] = False
        o = lab[at]
        m = ok[o]
        if not m.any():
            continue
        ids, inter = np.unique(o[m].astype(np.int64) * len(counts) + reg[m], return_counts=True)
        r = ids % len(counts)
        covered[r[inter >= CLUMP_COVER * counts[r]]] = True
    return covered


def off_hue_regions(labels: np.ndarray, rgb: np.ndarray, scale: Scale, ids: np.ndarray) -> np.ndarray:
    """For each label ``ids`` names (of ``labels``, a setting's, on ``rgb``), whether its
    median colour's ``profile.optical_hue`` lies further from the class's stain hue than its
    limit (``scale.hue_direction``, ``scale.hue_limit``): tissue stained otherwise (the brown
    of an immunostain beside blue nuclei), not a clump of the examples' objects, whose
    pieces the hue rule could not tell apart one by one. None where the class has no hue or
    ``rgb`` is not colour."""
    if scale.hue_direction is None or rgb.ndim != 3 or rgb.shape[2] != 3 or not len(ids):
        return np.zeros(len(ids), bool)
    from scipy import ndimage as ndi

    from sam_detect.profile import _degrees, optical_hue

    inside = np.isin(labels, ids)  # the median over these pixels alone: a tenth of the whole window's cost
    colour = np.stack([ndi.median(rgb[..., c][inside], labels[inside], index=ids) for c in range(3)], axis=1)
    return _degrees(optical_hue(colour), scale.hue_direction) > scale.hue_limit


def clump_pieces(labels: np.ndarray, gaps: tuple | None, splits: _Splits, inset: int,
                 variants: Sequence[Setting], size: tuple[float, float], skip: np.ndarray | None = None,
                 rgb: np.ndarray | None = None):
    """``(pieces, offered)``: where a setting's ``labels`` (before its inset) hold regions
    larger than ``size[1]`` (pixels; clumps of touching objects its split left whole, which
    the size range would drop with every object in them), the pieces the ``variants``
    (:func:`clump_variants`) split those regions into. ``pieces``: ``[(variant,
    crop_labels, (y0, x0))]``, each variant's pieces no larger than ``size[1]`` (inset by
    ``inset``), as a label crop at ``(y0, x0)`` of ``labels``; ``offered``: for each label
    of ``labels``, whether a variant split it into a piece within ``size``.

    Regions ``skip`` marks (:func:`covered_regions`), regions as convex as a whole is
    (:func:`_convex_wholes`' floor: one object larger than the examples, no notch showing
    objects touching), regions larger than :data:`CLUMP_MAX` times ``size[1]`` (the ground
    taken for foreground, rather than a clump of the examples' objects) and, given ``rgb``
    (the image ``labels`` were drawn on), regions stained off the class's hue
    (:func:`off_hue_regions`) are left whole. ``gaps``:
    :func:`open_gaps`' arguments but the labels (the filled holes, the projection and the
    ground level; ``None``: gaps are not opened), ``splits``: the setting's :class:`_Splits`
    (both from ``label_images(..., work=True)``). The regions are split on a crop around
    them (the blob and core maxima are the whole image's, cut to it)."""
    counts = np.bincount(labels.ravel())
    offered = np.zeros(len(counts), bool)
    big = (counts > size[1]) & (counts <= CLUMP_MAX * size[1])
    if skip is not None:
        big &= ~skip
    big = np.flatnonzero(big)
    big = big[big > 0]
    if not len(big) or not variants:
        return [], offered
    # as convex as a whole (:func:`_convex_wholes`): one object larger than the examples,
    # no notch showing objects touching
    from scipy import ndimage as ndi

    from sam_detect.segment.classical_ops import _solidity

    convex = min(WHOLE_SOLIDITY, splits.scale.solidity - WHOLE_SOLIDITY_SLACK)
    boxes = ndi.find_objects(labels, max_label=int(big.max()))
    big = np.array([i for i in big if _solidity(labels[boxes[i - 1]] == i, int(counts[i])) < convex], np.int64)
    if rgb is not None:
        big = big[~off_hue_regions(labels, rgb, splits.scale, big)]
    if not len(big):
        return [], offered
    is_big = np.zeros(len(counts), bool)
    is_big[big] = True
    regions = is_big[labels]
    rows, cols = np.flatnonzero(regions.any(axis=1)), np.flatnonzero(regions.any(axis=0))
    h, w = labels.shape
    m = 2
    y0, x0 = max(0, int(rows[0]) - m), max(0, int(cols[0]) - m)
    box = (slice(y0, min(h, int(rows[-1]) + 1 + m)), slice(x0, min(w, int(cols[-1]) + 1 + m)))
    sub_fg = regions[box]

    def cut(f: Any) -> Any:
        if f is None:
            return None

        def g() -> Any:
            v = f()
            return None if v is None else tuple(a[box] for a in v)
        return g

    x = splits.x[box] if splits.x is not None else None
    sub = _Splits(sub_fg, splits.scale, x, cut(splits._blobs), cut(splits._core))
    region = np.where(sub_fg, labels[box], 0)
    out = []
    for v in variants:
        lab = sub.labels(v.split, v.split_on)
        if gaps is not None:
            lab = open_gaps(lab, gaps[0][box] & sub_fg, gaps[1][box], gaps[2])
        if inset:
            lab = inset_labels(lab, inset)
        n = int(lab.max()) + 1
        if n <= 1:
            continue
        area = np.bincount(lab.ravel(), minlength=n)
        ok = (area <= size[1]) & (area > 0)
        ok[0] = False
        if not ok.any():
            continue
        pieces = np.where(ok[lab], lab, 0).astype(np.int32)
        # the regions a piece within the size range was drawn in
        within = ok & (area >= size[0])
        offered[np.unique(region[within[lab] & (region > 0)])] = True
        out.append((v, pieces, (y0, x0)))
    return out, offered


#: the mosaic's gaps (:class:`_Mosaic`) hold values far below this: the ridge flood leaves them out
_GAP_BELOW = -1e5


def ridge_labels(resid: np.ndarray, scale: Scale, split: float) -> np.ndarray:
    """``(H, W)`` int32 labels of the "ridge" way (:data:`RIDGE_SPLITS`): the projection
    ``resid`` in the polarity that makes the examples' outlines bright (``Scale.ridge``)
    flooded from its h-minima (``h``: ``split`` x ``|Scale.ridge|``), every pixel of the image
    (but a mosaic's gaps) in some basin. No threshold: a membrane-stained cell's inside is no
    brighter or darker than its surroundings, only ringed by its outline; the ground outside
    the tissue floods as one large basin, or a few, which the examples' size range leaves out."""
    import cv2

    from sam_detect.segment.classical_ops import _h_maxima, watershed

    if not scale.has_ridge:
        return np.zeros(resid.shape, np.int32)
    inside = resid > np.float32(_GAP_BELOW)
    m = resid if scale.ridge > 0 else -resid
    top = float(m[inside].max()) if inside.any() else 0.0
    m = np.ascontiguousarray(np.where(inside, m, np.float32(top)), np.float32)  # the gaps no minima
    minima = _h_maxima(-m, float(split * abs(scale.ridge))).astype(bool) & inside
    _, seeds = cv2.connectedComponents(minima.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    return watershed(m, seeds, inside)


def inset_labels(labels: np.ndarray, px: int = INSET) -> np.ndarray:
    """``labels`` with each object's outermost ``px`` rings of pixels dropped (4-connected:
    a pixel stays where its four neighbours carry its own label), so touching objects
    part by a seam as they do from the ground; an object thinner than that vanishes."""
    import cv2

    out = labels
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    for _ in range(px):
        f = out.astype(np.float32)  # exact for labels below 2**24
        lo = cv2.erode(f, cross, borderType=cv2.BORDER_REPLICATE)
        hi = cv2.dilate(f, cross, borderType=cv2.BORDER_REPLICATE)
        out = np.where(lo == hi, out, 0).astype(labels.dtype, copy=False)
    return out


#: examples of one image beyond which their windows are not merged pair by pair (the pairs'
#: table grows with the square of their number): they are merged into one window holding
#: them all where that costs fewer pixels than they take apart, else left as they are
MERGE_LIMIT = 512


def merge_windows(wins: list[tuple[int, int, int, int]]) -> tuple[list[tuple[int, int, int, int]], np.ndarray]:
    """``(merged, of)``: windows ``(ya, yb, xa, xb)`` merged two at a time, the pair whose
    bounding box saves the most pixels first, while one box holds the two in no more pixels
    than they take apart; ``of[k]``: the merged window that holds window ``k``. Examples
    close together (large objects, or neighbours clicked one after another) share one
    window instead of repeating the pixels between them. Past ``MERGE_LIMIT`` windows, one
    box of them all or none merged."""
    boxes = np.asarray(wins, np.int64).reshape(-1, 4)
    n = len(boxes)

    def area(b: np.ndarray) -> np.ndarray:
        return (b[..., 1] - b[..., 0]) * (b[..., 3] - b[..., 2])

    def gain(k: int) -> np.ndarray:  # pixels saved by one box of window k and each other
        u = np.stack([np.minimum(boxes[k, 0], boxes[:, 0]), np.maximum(boxes[k, 1], boxes[:, 1]),
                      np.minimum(boxes[k, 2], boxes[:, 2]), np.maximum(boxes[k, 3], boxes[:, 3])], axis=1)
        return area(boxes[k]) + area(boxes) - area(u)

    if n > MERGE_LIMIT:
        whole = np.array([boxes[:, 0].min(), boxes[:, 1].max(), boxes[:, 2].min(), boxes[:, 3].max()])
        if area(whole) <= area(boxes).sum():
            return [tuple(int(v) for v in whole)], np.zeros(n, np.int64)
        return [tuple(int(v) for v in b) for b in boxes], np.arange(n)
    of = np.arange(n)
    alive = np.ones(n, bool)
    table = np.full((n, n), -1, np.int64)  # pixels saved by merging i < j; -1 below the diagonal
    for k in range(n - 1):
        table[k, k + 1 :] = gain(k)[k + 1 :]
    while alive.sum() > 1:
        i, j = np.unravel_index(int(np.argmax(table)), table.shape)
        if table[i, j] < 0:
            break
        boxes[i] = (min(boxes[i, 0], boxes[j, 0]), max(boxes[i, 1], boxes[j, 1]),
                    min(boxes[i, 2], boxes[j, 2]), max(boxes[i, 3], boxes[j, 3]))
        alive[j] = False
        of[of == j] = i
        table[j, :] = table[:, j] = -1
        g = np.where(alive, gain(i), -1)
        table[i, i + 1 :] = g[i + 1 :]
        table[:i, i] = g[:i]
    keep = np.flatnonzero(alive)
    renumber = np.zeros(n, np.int64)
    renumber[keep] = np.arange(len(keep))
    return [tuple(int(v) for v in boxes[k]) for k in keep], renumber[of]


class _Mosaic:
    """Windows around the examples, cut from a :class:`Prepared` and laid out in rows with
    gaps that no threshold passes: the grid is tried on the examples' surroundings only
    (an order of magnitude fewer pixels than the image), with the image's backgrounds.
    Windows that hold each other's pixels are merged (:func:`merge_windows`), so a pixel is
    tried once however many examples lie near it."""

    GAP = 3

    def __init__(self, prep: Prepared, masks: list[tuple[np.ndarray, tuple[int, int]]],
                 core: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """``core``: the whole image's :func:`core_maxima` where the caller has them (they
        do not depend on the smoothing); else :meth:`Prepared.core`'s."""
        self.scale = prep.scale
        h, w = prep.x.shape
        margin = int(round(3 * prep.scale.max_radius)) + 4
        wins = []
        for crop, (x0, y0) in masks:
            ya, xa = max(0, y0 - margin), max(0, x0 - margin)
            yb, xb = min(h, y0 + crop.shape[0] + margin), min(w, x0 + crop.shape[1] + margin)
            wins.append((ya, yb, xa, xb))
        wins, of = merge_windows(wins)
        g = self.GAP
        # rows (shelves) of windows, tallest first, each row at most as wide as the widest
        # window or the square that would hold them all
        row_width = max(max(xb - xa for _, _, xa, xb in wins),
                        int(np.ceil(np.sqrt(sum((yb - ya) * (xb - xa) for ya, yb, xa, xb in wins)))))
        order = sorted(range(len(wins)), key=lambda k: (-(wins[k][1] - wins[k][0]), k))
        offsets: list[tuple[int, int]] = [(0, 0)] * len(wins)
        x, y, row_h, width = g, g, 0, 0
        for k in order:
            ya, yb, xa, xb = wins[k]
            if x > g and x + (xb - xa) > row_width + g:
                x, y, row_h = g, y + row_h + g, 0
            offsets[k] = (x - xa, y - ya)  # image -> mosaic shift (dx, dy)
            x += xb - xa + g
            row_h = max(row_h, yb - ya)
            width = max(width, x)
        height = y + row_h + g
        self._resid = {}
        for bg in BACKGROUNDS:
            canvas = np.full((height, width), -1e6, np.float32)
            full = prep.resid(bg)
            for (ya, yb, xa, xb), (dx, dy) in zip(wins, offsets, strict=True):
                canvas[ya + dy : yb + dy, xa + dx : xb + dx] = full[ya:yb, xa:xb]
            self._resid[bg] = canvas
        self._core = None
        full_core = core if core is not None else prep.core()
        if full_core is not None:  # cut as the projections are; the gaps hold no maximum
            lap = np.full((height, width), -1e6, np.float32)
            peak = np.zeros((height, width), bool)
            for (ya, yb, xa, xb), (dx, dy) in zip(wins, offsets, strict=True):
                lap[ya + dy : yb + dy, xa + dx : xb + dx] = full_core[0][ya:yb, xa:xb]
                peak[ya + dy : yb + dy, xa + dx : xb + dx] = full_core[1][ya:yb, xa:xb]
            self._core = (lap, peak)
        self.shape = (height, width)
        self.masks = [(crop, (int(x0) + offsets[of[k]][0], int(y0) + offsets[of[k]][1]))
                      for k, (crop, (x0, y0)) in enumerate(masks)]
        #: each example's window in the mosaic ``(ya, yb, xa, xb)``: every object a setting
        #: draws lies in one window (no threshold passes the gaps, and every split and flood
        #: keeps to its component), so an object under an example is counted there
        self.windows = [(wins[of[k]][0] + offsets[of[k]][1], wins[of[k]][1] + offsets[of[k]][1],
                         wins[of[k]][2] + offsets[of[k]][0], wins[of[k]][3] + offsets[of[k]][0])
                        for k in range(len(masks))]

    def resid(self, background: str) -> np.ndarray:
        return self._resid[background]

    def core(self) -> tuple[np.ndarray, np.ndarray] | None:
        return self._core


def grid_ious(rgb: np.ndarray, scale: Scale, masks: list[tuple[np.ndarray, tuple[int, int]]],
              own: Any = None, inset: bool = False) -> np.ndarray:
    """``(len(GRID), K)`` float32: how well each setting reproduces each example mask;
    ``(2, len(GRID), K)`` with ``inset``: then also with each setting's outline drawn
    ``INSET`` pixels inside (the segmenter's own settings as they are: never inset). Only
    the first ``GRID_MEASURED`` rows where the scale has no ridge (``Scale.has_ridge``): the
    ridge way is tried only on outlined examples.

    ``own``: the segmenter whose own settings are the ``OWN`` setting (a segmenter with
    ``segment(rgb)``; ``None``: that row stays 0, so ``OWN`` is never chosen).

    ``masks``: the examples' ``(crop, (x0, y0))``. An example's IoU is that of the one
    segmented object that overlaps it most; unlabelled objects elsewhere cost nothing
    (examples are partial labels). The settings run on windows around the examples
    (:class:`_Mosaic`), so the cost grows with the examples, not the image. The heavy
    smoothing's settings are tried only where the light smoothing's leave room for them
    (:func:`needs_heavy_smoothing`); elsewhere their rows stay 0, as the core splits' do
    where the examples' middles do not stand out in their own way (``Scale.has_core``).
    """
    # the ridge rows, where not tried, are not stored (``GRID_MEASURED``)
    out = np.zeros((2, len(GRID) if scale.has_ridge else GRID_MEASURED, len(masks)), np.float32)
    if not masks:
        return out if inset else out[0]
    import threading
    from concurrent.futures import ThreadPoolExecutor

    seen, at, work = rgb, masks, scale
    if scale.zoom < 1:  # large objects: the settings are tried at the working scale, as they propose
        seen = shrink(rgb, scale.zoom)
        at, work = shrink_masks(masks, rgb.shape[:2], seen.shape[:2]), scale.zoomed(scale.zoom)
    # each smoothing's windows, made before its settings run (the heavy one's only if it is tried)
    core = core_maxima(core_response(seen, work), work) if work.has_core else None
    mosaics = {SMOOTHS[0]: _Mosaic(Prepared(seen, work, SMOOTHS[0]), at, core)}
    first = mosaics[SMOOTHS[0]]
    roi = np.zeros(first.shape, bool)
    for crop, (x0, y0) in first.masks:
        roi[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] |= crop

    def tasks(smooth: float) -> list[list[Setting]]:
        # each foreground's settings in one task (the blob splits come last in GRID), so its
        # components are found once for all its splits, and the ridge way's settings of the
        # smoothing a task of their own
        out = [[g for g in GRID if g != OWN and g.smooth == smooth and g.background == background
                and g.level == level and g.refine == refine and g.split_on != "ridge"
                and (work.has_core or g.split_on != "core")]
               for level in LEVELS for background in BACKGROUNDS for refine in REFINES]
        # the largest foregrounds first (their pixels above the level, over the whole mosaic:
        # a task's cost follows them), so that the threads run out of work together: on a
        # stained slide the opening's foregrounds hold 3-5x the flat one's pixels and cost
        # 2-4x as much, and the grid's own order left the last of them to one thread
        resid = mosaics[smooth].resid
        out.sort(key=lambda t: -int(np.count_nonzero(
            resid(t[0].background) > np.float32(t[0].level * work.contrast * work.exposure))))
        if work.has_ridge:  # the whole mosaic flooded: first
            out.insert(0, [g for g in GRID if g.split_on == "ridge" and g.smooth == smooth])
        return out

    pixels = example_pixels(first.masks, first.shape)

    def rows(grid: list[Setting]) -> list[tuple[int, np.ndarray]]:
        done, last, iou = [], None, None
        for s, labels in label_images(mosaics.__getitem__, work, grid, roi, blobs):
            if stop.is_set():  # the caller was interrupted (Ctrl-C): its result is not wanted
                break
            if labels is not last:  # a split that splits nothing gives its components again
                last = labels
                iou = (_reproduction(labels, first.masks, first.windows, pixels),
                       _reproduction(inset_labels(labels), first.masks, first.windows, pixels) if inset else None)
            done.append((GRID_INDEX[s], iou))
        return done

    # one thread per smoothing: OpenCV, NumPy's sorts and the watersheds release the GIL;
    # scikit-image's submodules load lazily, which two threads must not do at once
    from skimage import morphology, segmentation

    from sam_detect.segment.classical_ops import _flood_core

    _ = morphology.h_maxima, morphology.local_maxima, morphology.reconstruction, segmentation.watershed, _flood_core()
    stop = threading.Event()
    blobs = _BlobCache()
    with ThreadPoolExecutor(grid_threads()) as pool:
        try:
            for smooth in SMOOTHS:  # the light smoothing first: it says whether the heavy one is needed
                if smooth != SMOOTHS[0]:
                    if not needs_heavy_smoothing(out if inset else out[:1], texture(first, work)):
                        break
                    mosaics[smooth] = _Mosaic(Prepared(seen, work, smooth), at, core)
                for done in pool.map(rows, tasks(smooth)):
                    for g, (iou, iou_in) in done:
                        out[0, g] = iou
                        if iou_in is not None:
                            out[1, g] = iou_in
        except BaseException:  # Ctrl-C while the workers run: they stop at their next setting,
            stop.set()  # so the pool's exit does not wait for the whole grid
            raise
    if own is not None:
        # the segmenter's own settings need the whole image (their background and noise
        # estimates are global): one segmentation, scored on the same examples
        proposed = own.own_setting(rgb) if hasattr(own, "own_setting") else own.segment(rgb)
        out[0, GRID_INDEX[OWN]] = _reproduction(proposed.to_label_image(smaller_on_top=False), masks)
        out[1, GRID_INDEX[OWN]] = out[0, GRID_INDEX[OWN]]  # drawn as that segmenter draws them
    return out if inset else out[0]


def texture(mosaic: _Mosaic, scale: Scale) -> float:
    """How textured the examples are: the median over them of the standard deviation of the
    lightly smoothed projection inside each, over the class's contrast (``mosaic``: the light
    smoothing's windows, ``mosaic.masks`` the examples)."""
    x = mosaic.resid("flat")
    spread = [float(np.std(x[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]][crop]))
              for crop, (x0, y0) in mosaic.masks if crop.any()]
    return float(np.median(spread)) / max(float(scale.contrast), 1e-6) if spread else 0.0


def needs_heavy_smoothing(ious: np.ndarray, textured: float) -> bool:
    """Whether the heavy smoothing is tried: the light smoothing's best setting reproduces the
    examples at a mean IoU under :data:`HEAVY_SMOOTH_BELOW`, or they are textured
    (``textured``, their :func:`texture`, at least :data:`HEAVY_SMOOTH_TEXTURE`). ``ious``
    ``(R, len(GRID), K)``: the light smoothing's rows measured, as drawn (and inset)."""
    # the core splits left out: where one reproduced a few examples of an image at 0.7, the
    # heavy smoothing went untried on them and lost its lead over the other images' (an H&E
    # patch draw 0.467 -> 0.320); the threshold was chosen on the grid without them
    # the ridge way left out too: tried only where the examples are outlined, a grid without it decided this
    light = [k for k, g in enumerate(GRID) if g != OWN and g.smooth == SMOOTHS[0] and g.split_on not in ("core", "ridge")]
    best = max(float(np.asarray(r)[light].mean(axis=1).max()) for r in ious)
    return best < HEAVY_SMOOTH_BELOW or textured >= HEAVY_SMOOTH_TEXTURE


def example_pixels(masks: list[tuple[np.ndarray, tuple[int, int]]], hw: tuple[int, int]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(at, owner, sizes)``: the flat indices into an ``hw`` label image of every example's
    pixels (example by example, in row order), the example each belongs to, and each
    example's pixel count (float64), for :func:`_reproduction`."""
    w = hw[1]
    at, owner = [], []
    for k, (crop, (x0, y0)) in enumerate(masks):
        ys, xs = np.nonzero(crop)
        at.append((ys + y0) * w + (xs + x0))
        owner.append(np.full(len(ys), k, np.int64))
    sizes = np.array([float(crop.sum()) for crop, _ in masks], np.float64)
    if not at:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), sizes
    return np.concatenate(at).astype(np.int64), np.concatenate(owner), sizes


def _reproduction(labels: np.ndarray, masks: list[tuple[np.ndarray, tuple[int, int]]],
                  windows: Sequence[tuple[int, int, int, int]] | None = None,
                  pixels: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """``(K,)`` IoU of each example with the labelled object that overlaps it most (the
    lowest-numbered of those that overlap it equally).
    ``windows``: each example's ``(ya, yb, xa, xb)`` that holds every object of ``labels``
    under it (:attr:`_Mosaic.windows`): the objects' areas are counted there, not over the
    whole of ``labels`` (a count of every label cost most of the call). ``pixels``: the
    examples' :func:`example_pixels` on ``labels``' shape, where the caller measures many
    label images of the same examples (found here otherwise)."""
    at, owner, sizes = pixels if pixels is not None else example_pixels(masks, labels.shape)
    k = len(masks)
    out = np.zeros(k, np.float32)
    if not len(at):
        return out
    under = labels.reshape(-1)[at].astype(np.int64)
    n = int(under.max()) + 1
    # every example's overlap with every label, in one count (the examples' pixels are few)
    hits = np.bincount(owner * n + under, minlength=k * n).reshape(k, n)
    hits[:, 0] = 0
    best = hits.argmax(axis=1)  # the first of equal counts, as each example's own argmax
    inter = hits[np.arange(k), best]
    hit = np.flatnonzero(inter > 0)
    if not len(hit):
        return out
    if windows is None:
        areas = np.bincount(labels.ravel())[best[hit]]
    else:
        areas = np.array([np.count_nonzero(labels[windows[i][0]:windows[i][1], windows[i][2]:windows[i][3]]
                                           == best[i]) for i in hit.tolist()], np.int64)
    inter = inter[hit].astype(np.float64)
    out[hit] = inter / (sizes[hit] + areas.astype(np.float64) - inter)
    return out


def propose(rgb: np.ndarray, scale: Scale, settings: list[Setting], label: str | None = None,
            own: Instances | None = None, tile: int = 0) -> Instances:
    """Candidates of every setting (overlapping alternatives), within the examples' size range
    (objects the image border cuts down to ``profile.CUT_FLOOR`` of its smallest area).

    ``own``: the segmenter's own candidates, for the ``OWN`` setting when it is among
    ``settings``. ``data["setting"]`` says which setting made each candidate (an index into
    ``GRID``), ``data["stability"]`` the share of the settings that made it (near-identical
    candidates are one), ``data["class_hint"]`` the class whose profile proposed it,
    ``data["edge"]`` how far its outline stands out (:func:`edge_contrast`),
    ``data["contrast"]`` how far its inside does, ``data["level"]`` where it lies along
    the direction and ``data["colour"]`` its median colour (``profile.inside_contrast_and_level``);
    ``metadata["tiles"]`` how many windows the image was proposed in, ``metadata["oversize"]``
    (where any) how many of the lead setting's regions were larger than the size range and
    left out (objects larger than the examples, or clumps no split parts; not counted where
    the image is proposed at a working scale).

    The lead's regions larger than the size range that no other setting draws as one
    candidate within it, that are notched where objects touch and that are not stained off
    the class's hue (:func:`off_hue_regions`), are offered the pieces
    the other splits of the same foreground draw in them (:func:`clump_pieces`): a clump of
    touching objects that the lead's split left whole is not dropped with every object in
    it. Each piece carries the split that drew it in ``data["setting"]``.

    ``tile``: images larger than this (pixels a side; 0: never) are proposed window by
    window (:func:`proposal_windows`), so memory stays that of one window: each window is
    a core of at most ``tile`` pixels a side with the context the settings look at around
    it, and keeps the candidates centred in its core that lie whole inside it. Those are
    the candidates the whole image gives, outside the rare object wider than the context.

    Large objects (:data:`WORK_RADIUS`) are thresholded and split on a shrunk copy of the
    image and drawn back at its own scale (:class:`_Working`).
    """
    from scipy import ndimage as ndi

    from sam_detect.profile import CUT_FLOOR, admitted, cut_by_border, inside_contrast_and_level

    h, w = rgb.shape[:2]
    lo, hi = scale.min_area, scale.max_area
    own_setting = GRID_INDEX[OWN]
    own_crops = []
    if OWN in settings and own is not None and len(own):
        ok = admitted(own.areas, cut_by_border(own.boxes, (h, w)), lo, hi)
        own_crops = [m for m, a in zip(own.crops, ok, strict=True) if a]
    lead = lead_smooth(settings)
    # the lead setting's regions over the size range, left out: counted for a note (clumps of
    # touching objects its split left whole, or objects larger than the examples)
    first = next((s for s in settings if s != OWN and not s.wholes), None)
    oversize = 0
    # splits proposing already (clump_variants); the settings counted in stability too (_merge_near_duplicates)
    taken = {GRID_INDEX.get(s.drawn, -1) for s in settings}
    working = _Working(rgb, scale.zoom) if scale.zoom < 1 else None
    work = scale if working is None else scale.zoomed(scale.zoom)
    windows = proposal_windows((h, w), tile, context_margin(scale, settings))
    owner = _core_of([m.box for m in own_crops], windows)
    crops: list[np.ndarray] = []
    origins: list[tuple[int, int]] = []
    made_by: list[int] = []
    edges: list[np.ndarray] = []
    for k, (core, win) in enumerate(windows):
        mine = [own_crops[i] for i in np.flatnonzero(owner == k)]
        if mine:  # the window holds its own candidates whole
            win = (min(win[0], *(m.box[0] for m in mine)), min(win[1], *(m.box[1] for m in mine)),
                   max(win[2], *(m.box[2] for m in mine)), max(win[3], *(m.box[3] for m in mine)))
        if working is not None:  # the window's part of the image at the working scale
            (sy0, sy1, sx0, sx1), win = working.window(win)
        wx0, wy0, wx1, wy1 = win
        sub = rgb[wy0:wy1, wx0:wx1]
        seen = sub if working is None else working.small[sy0:sy1, sx0:sx1]
        preps = functools.cache(lambda sm, seen=seen: Prepared(seen, work, sm))
        found = [(m.crop, (m.x0 - wx0, m.y0 - wy0), own_setting) for m in mine]
        drawn = []  # (labels, GRID index, (y0, x0) of the labels in the window, the lead's)
        split_again = set()  # the boxes of the lead's regions over the size range not left out
        lead_work = None
        for s, labels, fg_work in label_images(preps, work, [s for s in settings if s != OWN], gaps=True, work=True):
            drawn.append((labels, GRID_INDEX.get(s.drawn, -1), (0, 0), s == first))
            if s == first and fg_work is not None:
                lead_work = (s, labels, fg_work)
        if lead_work is not None:
            # the lead's regions over the size range (clumps its split left whole) that no
            # other setting draws as one candidate: the pieces the other splits of its
            # foreground draw inside them
            s, labels, fg_work = lead_work
            size = (CUT_FLOOR * work.min_area, work.max_area)
            covered = covered_regions(fg_work[0], [d[0] for d in drawn if not d[3]], size)
            # tissue stained otherwise is left whole (and counted in the note)
            pieces, offered = clump_pieces(*fg_work, s.inset, clump_variants(s, work, taken), size, skip=covered,
                                           rgb=seen)
            if (offered | covered).any():
                split_again = {(sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
                               for i, sl in enumerate(ndi.find_objects(labels), 1)
                               if sl is not None and i < len(offered) and (offered[i] or covered[i])}
            drawn += [(lab, GRID_INDEX[v.drawn], at, False) for v, lab, at in pieces]
        for labels, made, at, lead_labels in drawn:
            if working is None:
                objects = ((c, (x0 + at[1], y0 + at[0], x1 + at[1], y1 + at[0]), a)
                           for c, (x0, y0, x1, y1), a in _objects(labels))
            else:  # ``at``: the labels' top-left pixel in the window's
                objects = working.draw_back(labels, (sy0 + at[0], sx0 + at[1]), win, (CUT_FLOOR * lo, hi))
            for crop_of, (x0, y0, x1, y1), area in objects:
                box = (x0 + wx0, y0 + wy0, x1 + wx0, y1 + wy0)
                if not CUT_FLOOR * lo <= area <= hi:
                    if area > hi and lead_labels and (working is not None or
                                                      (x0, y0, x1, y1) not in split_again):
                        oversize += bool(not cut_by_border(np.asarray(box), (h, w))[0]
                                         and (len(windows) == 1 or _whole_in_core(box, core, win, (h, w))))
                    continue
                if area < lo and not cut_by_border(np.asarray(box), (h, w))[0]:
                    continue  # below the size range, and not cut short by the image border
                if len(windows) > 1 and not _whole_in_core(box, core, win, (h, w)):
                    continue
                found.append((crop_of(), (x0, y0), made))
        if not found:
            continue
        local = [MaskCrop(c, o) for c, o, _ in found]
        # at the image's scale, as the examples' outlines are measured (example_edges)
        x = preps(lead).x if working is None else Prepared(sub, scale, lead).x
        edges.append(edge_contrast(x, local, scale.contrast))
        for c, (x0, y0), s in found:
            crops.append(c)
            origins.append((x0 + wx0, y0 + wy0))
            made_by.append(s)
    if not crops:
        out = Instances.empty((h, w))
        out.metadata["tiles"] = len(windows)
        if oversize:
            out.metadata["oversize"] = oversize
        return out
    # the whole image's order: the segmenter's own candidates, then setting by setting
    rank = {GRID_INDEX.get(s.drawn, -1): r for r, s in enumerate(settings)}
    rank[own_setting] = -1
    order = np.argsort([rank.get(s, len(settings)) for s in made_by], kind="stable")
    inst = Instances.from_crops([crops[i] for i in order], np.asarray(origins, np.int64)[order], (h, w))
    inst.data["setting"] = np.asarray(made_by, np.int64)[order]
    inst.data["class_hint"] = [label] * len(inst)
    inst.data["edge"] = np.concatenate(edges)[order]
    inst = _merge_near_duplicates(inst, settings, counted=taken)
    inst = _convex_wholes(inst, settings, scale.solidity)
    inst.data["contrast"], inst.data["level"], inst.data["colour"] = inside_contrast_and_level(rgb, inst, scale.direction)
    inst.metadata["tiles"] = len(windows)
    if oversize:
        inst.metadata["oversize"] = oversize
    return inst


#: the image's noise is measured on at most this many pixels a side around its middle
#: (:func:`noise_sigma`): noise is the same across an image, and the background's opening
#: grows with the pixels
NOISE_WINDOW = 1024


def noise_sigma(rgb: np.ndarray, scale: Scale) -> float:
    """The image's pixel noise along ``scale``'s colour direction, in the grey values its
    candidates' inside contrast is measured in (``profile.inside_contrast_and_level``): the
    robust sd (1.4826 x MAD) of the projection less its background (the classical
    segmenter's opening at the examples' background radius), measured as that segmenter
    measures its own threshold's noise, on the middle ``NOISE_WINDOW`` pixels a side at
    most. In a dense field the objects widen it: a noise measured too high only keeps
    fewer dim candidates (``profile.size_filter``)."""
    from sam_detect.segment.classical_ops import _background, _noise_sigma

    x = _noise_window(rgb, scale)
    return _noise_sigma(x - _background(x, scale.background_radius))


def pixel_noise(rgb: np.ndarray, scale: Scale) -> float:
    """The image's pixel noise along ``scale``'s colour direction, from the differences of
    neighbouring pixels (``classical_ops._local_noise_sigma``, as the classical segmenter
    measures its own threshold's noise; on the middle ``NOISE_WINDOW`` pixels a side at
    most): objects change the image over many pixels and noise from pixel to pixel, so
    unlike :func:`noise_sigma` a field crowded with objects does not widen it (a
    25 %-foreground synthetic field of sd 5: about 9 projected against the true 8.7, where
    :func:`noise_sigma` reads 16; at 50 %, about 11 against 58)."""
    from sam_detect.segment.classical_ops import _local_noise_sigma

    return _local_noise_sigma(_noise_window(rgb, scale).astype(np.float64), 0.0)


def _noise_window(rgb: np.ndarray, scale: Scale) -> np.ndarray:
    """The middle ``NOISE_WINDOW`` pixels a side (at most) of ``rgb``, projected on
    ``scale``'s colour direction: where :func:`noise_sigma` and :func:`pixel_noise` measure."""
    h, w = rgb.shape[:2]
    y0, x0 = max(0, (h - NOISE_WINDOW) // 2), max(0, (w - NOISE_WINDOW) // 2)
    return project(rgb[y0:y0 + NOISE_WINDOW, x0:x0 + NOISE_WINDOW], scale.direction)


def _objects(labels: np.ndarray):
    """Yield ``(crop_of, (x0, y0, x1, y1), area)`` per object of ``labels``: a function that
    makes its mask crop (called only for the objects kept), its box and its area."""
    from scipy import ndimage as ndi

    areas = np.bincount(labels.ravel())
    for i, sl in enumerate(ndi.find_objects(labels), 1):
        if sl is not None:
            yield (lambda sl=sl, i=i: labels[sl] == i), (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop), int(areas[i])


class _Working:
    """An image at the working scale (:func:`shrink`), and the way back (:meth:`draw_back`):
    ``uy``/``ux`` give each of the image's rows and columns the small pixel nearest its
    centre, which maps a window of the image onto the small copy."""

    def __init__(self, rgb: np.ndarray, f: float) -> None:
        self.small = shrink(rgb, f)
        (h, w), (sh, sw) = rgb.shape[:2], self.small.shape[:2]
        self.ky, self.kx = sh / h, sw / w  # small pixels per pixel
        self.uy = np.minimum(sh - 1, ((np.arange(h) + 0.5) * self.ky).astype(np.int64))
        self.ux = np.minimum(sw - 1, ((np.arange(w) + 0.5) * self.kx).astype(np.int64))

    def window(self, win: tuple) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
        """``((sy0, sy1, sx0, sx1), window)``: the small pixels under ``win`` (XYXY), and the
        image's pixels they are drawn back onto (``win``, a pixel or two wider)."""
        wx0, wy0, wx1, wy1 = win
        sx0, sx1 = int(self.ux[wx0]), int(self.ux[wx1 - 1]) + 1
        sy0, sy1 = int(self.uy[wy0]), int(self.uy[wy1 - 1]) + 1
        x0, x1 = np.searchsorted(self.ux, [sx0, sx1])
        y0, y1 = np.searchsorted(self.uy, [sy0, sy1])
        return (sy0, sy1, sx0, sx1), (int(x0), int(y0), int(x1), int(y1))

    def draw_back(self, labels: np.ndarray, origin: tuple[int, int], win: tuple,
                  area_range: tuple[float, float] = (0.0, np.inf)):
        """Yield each object of a small window's ``labels`` (its top-left small pixel
        ``origin``, ``(sy0, sx0)``) at the image's scale, as :func:`_objects` does, in
        ``win``'s coordinates: its indicator interpolated bilinearly at each pixel's centre and
        cut at one half, so outlines stay smooth and touching objects meet without gap or
        overlap. Where a pixel lies follows from the whole image alone (window by window as in
        one piece). Objects whose area, counted in small pixels, lies outside half to twice
        ``area_range`` (the image's pixels) are not drawn."""
        import cv2
        from scipy import ndimage as ndi

        x0, y0 = win[0], win[1]
        counts = np.bincount(labels.ravel()) / (self.kx * self.ky)
        for i, sl in enumerate(ndi.find_objects(labels), 1):
            if sl is None or not area_range[0] / 2 <= counts[i] <= 2 * area_range[1]:
                continue
            ya, yb = max(0, sl[0].start - 1), min(labels.shape[0], sl[0].stop + 1)
            xa, xb = max(0, sl[1].start - 1), min(labels.shape[1], sl[1].stop + 1)
            ry, ny, cy = self._span(ya + origin[0], yb + origin[0], self.ky)
            rx, nx, cx = self._span(xa + origin[1], xb + origin[1], self.kx)
            if nx <= 0 or ny <= 0:
                continue
            # each pixel's centre in the crop's small pixels, its indicator there bilinearly
            to_small = np.array([[self.kx, 0.0, cx], [0.0, self.ky, cy]])
            m = cv2.warpAffine((labels[ya:yb, xa:xb] == i).astype(np.float32), to_small, (nx, ny),
                               flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE) >= 0.5
            ys, xs = np.nonzero(m)
            if not len(ys):
                continue
            crop = m[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
            bx, by = int(rx + xs.min() - x0), int(ry + ys.min() - y0)
            yield (lambda c=crop: c), (bx, by, bx + crop.shape[1], by + crop.shape[0]), int(crop.sum())

    @staticmethod
    def _span(a: int, b: int, k: float) -> tuple[int, int, float]:
        """``(first, count, offset)``: the image's pixels whose centres lie between the
        centres of small pixels ``a`` and ``b - 1`` (``k`` small pixels per pixel), and where
        the first one's centre lies in the crop's small pixels (the crop starting at ``a``)."""
        first = int(np.ceil((a + 0.5) / k - 0.5))
        last = int(np.floor((b - 0.5) / k - 0.5))
        return first, last - first + 1, (first + 0.5) * k - 0.5 - a


def context_margin(scale: Scale, settings: list[Setting]) -> int:
    """Pixels of image around a window's core that its candidates depend on: the smoothing's
    reach, the opening background's (twice its radius), and the widest example twice over
    (an object centred in the core lies whole inside the window)."""
    smooth = max((s.smooth for s in settings if s != OWN), default=SMOOTHS[0])
    opening = any(s.background == "opening" for s in settings if s != OWN)
    reach = 4 * scale.sigma(smooth) + (2 * scale.background_radius if opening else 0)
    return int(np.ceil(reach + 4 * scale.max_radius)) + 8


def proposal_windows(hw: tuple[int, int], tile: int, margin: int) -> list[tuple[tuple, tuple]]:
    """``[(core, window)]``, XYXY pixels: cores that partition the image into even blocks of
    at most ``tile`` pixels a side, each inside a window ``margin`` pixels wider (clipped
    to the image). One window, the image, when it is no larger than ``tile`` (or ``tile``
    is 0)."""
    h, w = hw
    if not tile or (h <= tile and w <= tile):
        return [((0, 0, w, h), (0, 0, w, h))]

    def spans(n: int) -> list[tuple[int, int]]:
        k = -(-n // tile)
        cuts = [(i * n) // k for i in range(k + 1)]
        return list(zip(cuts[:-1], cuts[1:], strict=True))

    out = []
    for y0, y1 in spans(h):
        for x0, x1 in spans(w):
            win = (max(0, x0 - margin), max(0, y0 - margin), min(w, x1 + margin), min(h, y1 + margin))
            out.append(((x0, y0, x1, y1), win))
    return out


def _centre(box: tuple) -> tuple[int, int]:
    return (int(box[0]) + int(box[2]) - 1) // 2, (int(box[1]) + int(box[3]) - 1) // 2


def _core_of(boxes: list[tuple], windows: list[tuple[tuple, tuple]]) -> np.ndarray:
    """``(N,)`` int64: the window whose core holds each box's centre (the cores are a grid,
    row by row, as :func:`proposal_windows` makes them)."""
    if not boxes:
        return np.zeros(0, np.int64)
    xs = np.unique([c[0] for c, _ in windows])
    ys = np.unique([c[1] for c, _ in windows])
    b = np.asarray(boxes, np.int64).reshape(-1, 4)
    cx, cy = (b[:, 0] + b[:, 2] - 1) // 2, (b[:, 1] + b[:, 3] - 1) // 2
    return (np.searchsorted(ys, cy, "right") - 1) * len(xs) + np.searchsorted(xs, cx, "right") - 1


def _whole_in_core(box: tuple, core: tuple, win: tuple, hw: tuple[int, int]) -> bool:
    """Whether a candidate found in window ``win`` is centred in its ``core`` and touches no
    window side that lies inside the image (there it may be cut off)."""
    cx, cy = _centre(box)
    if not (core[0] <= cx < core[2] and core[1] <= cy < core[3]):
        return False
    return not cut_by_window(box, win, hw)


#: the bands inside and outside a candidate's outline whose levels are compared, pixels
EDGE_BAND = 2


def edge_contrast(x: np.ndarray, crops: Sequence[MaskCrop], contrast: float) -> np.ndarray:
    """``(N,)`` float32 in ``[0, 1]``: how far each candidate's outline stands out, as a share
    of the examples' contrast: the mean of ``x`` (the projection, objects bright) in a band
    just inside the outline minus that in a band just outside. A whole object's outline
    runs along its edge all round; a fragment's runs partly through its object, where
    inside and outside are alike, while two touching objects meet in a valley.

    An outline drawn inside the threshold's (``Setting.inset``) is measured where it is
    drawn, as the examples' outlines are (measured at the threshold's outline instead, the
    development sets lost 0.002 on average: docs/performance.md, session 31)."""
    import cv2

    h, w = x.shape
    b = EDGE_BAND
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * b + 1,) * 2)
    out = np.zeros(len(crops), np.float32)
    for k, mc in enumerate(crops):
        crop, (x0, y0) = mc.crop, mc.origin
        ya, xa = max(0, y0 - b), max(0, x0 - b)
        yb, xb = min(h, y0 + crop.shape[0] + b), min(w, x0 + crop.shape[1] + b)
        m = np.zeros((yb - ya, xb - xa), np.uint8)
        m[y0 - ya : y0 - ya + crop.shape[0], x0 - xa : x0 - xa + crop.shape[1]] = crop
        inner = m.astype(bool) & ~cv2.erode(m, kernel, borderType=cv2.BORDER_REPLICATE).astype(bool)
        outer = cv2.dilate(m, kernel).astype(bool) & ~m.astype(bool)
        if inner.any() and outer.any():
            sub = x[ya:yb, xa:xb]
            out[k] = float(sub[inner].mean() - sub[outer].mean()) / max(float(contrast), 1e-6)
    return np.clip(out, 0.0, 1.0)


def example_edges(rgb: np.ndarray, scale: Scale, masks: list[tuple[np.ndarray, tuple[int, int]]]) -> np.ndarray:
    """``(len(SMOOTHS), K)`` float32: how far each example's outline stands out at each
    smoothing (:func:`edge_contrast`, as :func:`propose` measures its candidates at the
    lead setting's smoothing)."""
    crops = [MaskCrop(crop, origin) for crop, origin in masks]
    if not crops:
        return np.zeros((len(SMOOTHS), 0), np.float32)
    return np.stack([edge_contrast(Prepared(rgb, scale, sm).x, crops, scale.contrast) for sm in SMOOTHS])


def lead_smooth(settings: Sequence[Setting]) -> float:
    """The smoothing at which candidates' outlines are measured: the first setting's that is
    not the segmenter's own."""
    return next((s.smooth for s in settings if s != OWN), SMOOTHS[0])


#: alternatives closer than this (mask IoU) are one candidate: the first setting's is kept
SAME_OBJECT_IOU = 0.9


#: a candidate of a way that splits less than the lead's is kept only this convex (area over
#: its convex hull's): the lead's split is offered back the wholes it cuts where no notch
#: shows two objects touching (textured nuclei larger than the examples, cut into pieces of
#: their size), not the merged pairs a coarser way draws. Chosen on the development sets
#: (0.9 and 0.95 tried; docs/performance.md, session 51)
WHOLE_SOLIDITY = 0.9
#: ... or, for a way offered within ``profile.WAY_MARGIN`` of the lead (not for its wholes
#: only), where the examples are less convex than that: this much less convex than their
#: median. Whole neural cells or macrophages have notches of their own, and such a way
#: reproduces them about as well as the lead: its wholes are theirs (``dev_neurocyte_same``
#: 0.808 -> 0.822). A way offered for its wholes only keeps ``WHOLE_SOLIDITY``: relaxed
#: too, it let merged cells in (``dev_neurocyte`` 0.719 -> 0.695; docs/performance.md,
#: session 52)
WHOLE_SOLIDITY_SLACK = 0.05


def _wholes_only_indices(settings: Sequence[Setting]) -> set[int]:
    """The ``GRID`` indices of the settings offered for their wholes only (``Setting.wholes``)."""
    return {GRID_INDEX.get(s.drawn, -1) for s in settings if s.wholes}


def _convex_wholes(inst: Instances, settings: list[Setting], solidity: float = 1.0) -> Instances:
    """``inst`` less the candidates of a way that splits less than the lead's
    (``settings[0]``'s) that are less convex than ``WHOLE_SOLIDITY``; for such a way offered
    within the margin (not ``Setting.wholes``), than the examples' median ``solidity`` less
    ``WHOLE_SOLIDITY_SLACK`` where that is lower."""
    from sam_detect.profile import _SIMPLER, _way
    from sam_detect.segment.classical_ops import _solidity

    if not len(inst) or not settings:
        return inst
    coarser = set(_SIMPLER[_way(settings[0])])
    if not coarser:
        return inst
    wholes_only = _wholes_only_indices(settings)
    within = min(WHOLE_SOLIDITY, solidity - WHOLE_SOLIDITY_SLACK)
    made = np.asarray(inst.data["setting"]).tolist()
    keep = np.ones(len(inst), bool)
    crops = inst.crops
    for i, k in enumerate(made):
        if 0 <= k < len(GRID) and _way(GRID[k]) in coarser:
            c = crops[i].crop
            floor = WHOLE_SOLIDITY if k in wholes_only else within
            keep[i] = _solidity(c, int(np.count_nonzero(c))) >= floor
    return inst if keep.all() else inst[keep]


def _merge_near_duplicates(inst: Instances, settings: list[Setting], counted: set[int] | None = None) -> Instances:
    """Keep one of each group of near-identical candidates (the first setting's), and record
    in ``data["stability"]`` the share of the settings that made it: an object's outline
    holds over thresholds and splits, a fragment's or a merge's does not (MSER's idea).
    ``data["stability_core"]``: the same share among the settings not offered for their
    wholes only (``Setting.wholes``), what sure objects are judged on
    (``profile.sure_objects``): how many alternatives are offered does not move it.
    ``counted``: the ``GRID`` indices of ``settings`` where the caller has them already
    (:func:`propose`'s ``taken``)."""
    from sam_detect.masks import crop_intersections

    n = len(inst)
    n_settings = len(settings)
    extra = _wholes_only_indices(settings)
    # a clump's pieces another split drew (:func:`clump_pieces`) carry that split's index:
    # alone, as stable as one setting's candidate; beside a setting's, they add nothing
    if counted is None:
        counted = {GRID_INDEX.get(s.drawn, -1) for s in settings}
    n_core = max(n_settings - len(extra), 1)
    made = np.asarray(inst.data["setting"])
    if n < 2:
        inst.data["stability"] = np.full(n, 1.0 / max(n_settings, 1), np.float32)
        inst.data["stability_core"] = np.array([0.0 if int(k) in extra or int(k) not in counted else 1.0 / n_core
                                                for k in made], np.float32)
        return inst
    ii, jj, inter = crop_intersections(inst.crops)
    areas = inst.areas.astype(np.float64)
    near = inter / (areas[ii] + areas[jj] - inter) > SAME_OBJECT_IOU
    same: list[list[int]] = [[k] for k in range(n)]  # each candidate is the same as itself
    for i, j in zip(ii[near].tolist(), jj[near].tolist(), strict=True):
        same[i].append(j)
        same[j].append(i)
    keep = np.ones(n, bool)
    stability = np.zeros(n, np.float32)
    core = np.zeros(n, np.float32)
    for i in range(n):
        if not keep[i]:
            continue
        group = np.asarray(same[i])
        keep[group[group > i]] = False
        drew = set(made[group].tolist()) & counted
        stability[i] = max(len(drew), 1) / max(n_settings, 1)
        core[i] = len(drew - extra) / n_core
    inst.data["stability"] = stability
    inst.data["stability_core"] = core
    return inst[keep]


__all__ = ["GRID", "GRID_MEASURED", "GRID_VERSION", "HEAVY_SMOOTH_BELOW", "HEAVY_SMOOTH_TEXTURE", "OWN", "Scale", "Setting", "example_edges",
           "grid_ious", "lead_smooth", "needs_heavy_smoothing", "project", "propose", "texture"]
