"""The ``regions`` segmenter: weight-free object proposals for photographs.

The classical segmenter thresholds bright blobs; a photograph holds no such foreground, so
this one proposes *regions* instead, in the spirit of Selective Search (Uijlings et al.,
IJCV 2013), with masks rather than boxes:

1. the image is scaled to at most ``max_side`` pixels and turned into each colour space of
   ``colour_spaces`` (``lab``, ``hsv``, ``rgb``);
2. each is over-segmented (:func:`skimage.segmentation.felzenszwalb` at every ``scales``
   value, or :func:`skimage.segmentation.slic` at every ``slic_segments`` value);
3. the adjacent regions of each over-segmentation (a region adjacency graph,
   :func:`skimage.graph.rag_boundary`) are grouped greedily, most similar pair first, until
   one region is left (:func:`skimage.graph.merge_hierarchical`); similarity is Selective
   Search's sum of colour-histogram intersection (``c``), texture-histogram intersection
   (``t``, local binary patterns), size (``s``: small regions merge first) and fill (``f``:
   regions that fill each other's box merge first), one run per combination in
   ``similarities``. Every region of every level of every run is a candidate;
4. candidates outside ``[min_area, max_area]`` go, identical ones are counted once, the
   rest are ranked by a score and de-duplicated by mask NMS (``nms_iou``), keeping at most
   ``max_proposals``.

The score (``[0, 1]``) is an objectness proxy computed from the region graph without
building masks: the mean of the outline contrast (mean colour-gradient strength along the
candidate's outline, image border excluded, relative to the image's 99th-percentile
gradient: ``data["contrast"]``) and the colour distinctness (1 - the colour-histogram
intersection of the candidate with the ring of regions adjacent to it:
``data["distinct"]``), times a size prior ``log(area) / log(image area)`` (a large region is
more often a whole object than a fragment of one). It is weak (no learning): candidates are
many and mask NMS keeps them diverse; the downstream k-NN classifier does the sorting.

Defaults: Felzenszwalb at scales 100 and 300 (``min_segment`` 100), Lab and HSV, the
``ctsf`` and ``tsf`` strategies (Selective Search's "fast" mode uses HSV and Lab, both
strategies, k = 50, 100), NMS at mask IoU 0.5, at most 300 candidates: 2-3 s on a
500 x 375 photo on 2 (shared) CPU cores; ``scales=(100,)`` halves that for about one object
less. On the VOC photo in ``shared/data`` 11 of 19 objects have a candidate with IoU >= 0.5
(the pool before NMS and the cap: 12; the missed ones are small, occluded chairs); on the
ARC tote 7 of 8. SLIC superpixels as the starting regions gave fewer (VOC: 8 of 19).

Masks are stored as box crops (:meth:`Instances.from_crops`); ``data`` holds ``area``,
``contrast`` and ``distinct``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from sam_detect.instances import Instances
from sam_detect.masks import MaskCrop
from sam_detect.segment.base import as_segmenter_image, pixel_prompt
from sam_detect.segment.regions_ops import (
    SIMILARITY_LETTERS,
    RegionGroups,
    edge_map,
    group_regions,
    texture_codes,
    to_colour_space,
)

_COLOUR_SPACES = ("lab", "hsv", "rgb")
_OVERSEGMENTATIONS = ("felzenszwalb", "slic")



@dataclass
class RegionsConfig:
    """Options of :class:`RegionsSegmenter`; defaults chosen for photographs.

    Attributes:
        oversegmentation: ``"felzenszwalb"`` (graph-based segmentation, the default) or
            ``"slic"`` (SLIC superpixels), the regions that grouping starts from.
        scales: Felzenszwalb ``scale`` values (``k`` in the paper; one over-segmentation
            each; larger: fewer, bigger starting regions).
        sigma: Gaussian smoothing of Felzenszwalb's input, in pixels.
        min_segment: Felzenszwalb's minimum starting-region size, in working pixels.
        slic_segments: for ``"slic"``: the approximate numbers of superpixels.
        slic_compactness: for ``"slic"``: colour versus space weight (skimage's
            ``compactness``).
        colour_spaces: colour spaces to segment and compare colours in (``lab``, ``hsv``,
            ``rgb``); each multiplies the work.
        similarities: grouping strategies, each a string of the letters ``c`` (colour),
            ``t`` (texture), ``s`` (size), ``f`` (fill), e.g. ``("ctsf", "tsf")``.
        max_side: the image is scaled down to at most this many pixels on its longer side
            before over-segmentation (masks are returned at full resolution).
        min_area: drop candidates smaller than this: a fraction of the image area if
            ``< 1``, else pixels.
        max_area: drop candidates larger than this fraction of the image area, in ``(0, 1]``.
        nms_iou: drop a candidate whose mask IoU with a better-scored kept one exceeds this.
        max_proposals: keep at most this many candidates (best score first).
    """

    oversegmentation: str = "felzenszwalb"
    scales: tuple[float, ...] = (100.0, 300.0)
    sigma: float = 0.8
    min_segment: int = 100
    slic_segments: tuple[int, ...] = (200, 500)
    slic_compactness: float = 10.0
    colour_spaces: tuple[str, ...] = ("lab", "hsv")
    similarities: tuple[str, ...] = ("ctsf", "tsf")
    max_side: int = 512
    min_area: float = 0.001
    max_area: float = 0.7
    nms_iou: float = 0.5
    max_proposals: int = 300

    def __post_init__(self) -> None:
        if self.oversegmentation not in _OVERSEGMENTATIONS:
            raise ValueError(
                f"oversegmentation must be one of {', '.join(_OVERSEGMENTATIONS)}, "
                f"got {self.oversegmentation!r}"
            )
        self.scales = _tuple(self.scales, "scales", float)
        self.slic_segments = _tuple(self.slic_segments, "slic_segments", int)
        self.colour_spaces = _tuple(self.colour_spaces, "colour_spaces", str)
        self.similarities = _tuple(self.similarities, "similarities", str)
        if any(s <= 0 for s in self.scales):
            raise ValueError(f"scales must all be > 0, got {self.scales}")
        if any(n < 2 for n in self.slic_segments):
            raise ValueError(f"slic_segments must all be >= 2, got {self.slic_segments}")
        bad = [c for c in self.colour_spaces if c not in _COLOUR_SPACES]
        if bad:
            raise ValueError(f"colour_spaces must be among {', '.join(_COLOUR_SPACES)}, got {bad}")
        bad = [s for s in self.similarities if not s or set(s) - set(SIMILARITY_LETTERS)]
        if bad:
            raise ValueError(
                f"similarities must be non-empty strings of the letters c, t, s, f "
                f"(colour, texture, size, fill), got {bad}"
            )
        if self.sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {self.sigma}")
        if self.min_segment < 1:
            raise ValueError(f"min_segment must be >= 1, got {self.min_segment}")
        if self.slic_compactness <= 0:
            raise ValueError(f"slic_compactness must be > 0, got {self.slic_compactness}")
        if self.max_side < 32:
            raise ValueError(f"max_side must be >= 32, got {self.max_side}")
        if self.min_area < 0:
            raise ValueError(f"min_area must be >= 0, got {self.min_area}")
        if not 0 < self.max_area <= 1:
            raise ValueError(
                f"max_area must be a fraction of the image in (0, 1], got {self.max_area}"
            )
        if not 0 < self.nms_iou <= 1:
            raise ValueError(f"nms_iou must be in (0, 1], got {self.nms_iou}")
        if self.max_proposals < 1:
            raise ValueError(f"max_proposals must be >= 1, got {self.max_proposals}")


def _tuple(value: Any, name: str, kind: type) -> tuple:
    items = (value,) if isinstance(value, (str, int, float)) else tuple(value)
    if not items:
        raise ValueError(f"{name} must not be empty")
    try:
        return tuple(kind(v) for v in items)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of {kind.__name__}, got {value!r}") from None


@dataclass
class _Pool:
    """Every candidate of an image (after the area filters), best score first."""

    bases: list[RegionGroups]
    base: np.ndarray  # (Q,) which base
    row: np.ndarray  # (Q,) which row of that base
    score: np.ndarray  # (Q,) float32
    objectness: np.ndarray  # (Q,) float32: the score without its size prior
    area: np.ndarray  # (Q,) int64
    boxes: np.ndarray  # (Q, 4) int64 XYXY
    hw: tuple[int, int]
    n_raw: int  # distinct candidates before the area filters
    ymap: np.ndarray  # (H,) working-image row of each image row (nearest neighbour)
    xmap: np.ndarray  # (W,) working-image column of each image column

    def crop(self, q: int) -> MaskCrop:
        """Candidate ``q``'s full-resolution mask over its box; only the box is ever built
        at full resolution."""
        b = self.bases[int(self.base[q])]
        x0, y0, x1, y1 = (int(v) for v in self.boxes[q])
        sub = b.labels[self.ymap[y0:y1]][:, self.xmap[x0:x1]]
        return MaskCrop(b.members[int(self.row[q])][sub], (x0, y0))

    def region_at(self, base: int, x: int, y: int) -> int:
        """The starting region of over-segmentation ``base`` under image pixel ``(x, y)``."""
        return int(self.bases[base].labels[self.ymap[y], self.xmap[x]])


class RegionsSegmenter:
    """Selective-Search-style region proposals with masks; ``RegionsSegmenter(scales=(200,))``.

    Keyword options are the fields of :class:`RegionsConfig` (or pass ``config=``);
    unknown options raise ``ValueError`` listing the valid ones.
    """

    name = "regions"
    uses_network = False  # host work only: detect runs the embedder's network beside it

    def __init__(self, config: RegionsConfig | None = None, **options: Any) -> None:
        from sam_detect.registry import merge_config

        self.config = RegionsConfig(
            **merge_config(RegionsConfig, config, options, "regions segmenter")
        )
        self._cache_key: bytes | None = None
        self._cache: _Pool | None = None

    def __repr__(self) -> str:
        return f"RegionsSegmenter({self.config})"

    # -- protocol -------------------------------------------------------------------------
    def segment(self, image: np.ndarray, profile: dict | None = None) -> Instances:
        """Candidate objects of ``image`` ``(H, W, 3)`` uint8 RGB (gray, RGBA and other
        dtypes accepted: they go through :func:`sam_detect.io.images.to_rgb_uint8`).
        ``profile`` is not used here: the pipeline filters and selects by it.

        Returns:
            ``Instances`` (masks as box crops), best score first, at most
            ``max_proposals``, no two with mask IoU above ``nms_iou``; scores in ``[0, 1]``;
            ``data["area"]`` (int64 pixels), ``data["contrast"]``, ``data["distinct"]``;
            ``metadata["segmenter"]`` and ``metadata["n_raw"]`` (distinct regions before
            the area filters and NMS).
        """
        pool = self._pool(image)
        kept_q, masks = self._select(pool)
        return self._instances(pool, kept_q, masks)

    def _select(self, pool: _Pool) -> tuple[list[int], list[MaskCrop]]:
        """Greedy mask NMS over the pool in score order, up to ``max_proposals``."""
        cfg = self.config
        kept: list[MaskCrop] = []
        kept_q: list[int] = []
        kept_boxes = np.zeros((cfg.max_proposals, 4), np.int64)
        kept_area = np.zeros(cfg.max_proposals, np.int64)
        for q in range(len(pool.score)):
            if len(kept) >= cfg.max_proposals:
                break
            x0, y0, x1, y1 = pool.boxes[q]
            a = int(pool.area[q])
            k = len(kept)
            # an upper bound of the IoU from the boxes and areas: most pairs stop here
            iw = np.minimum(kept_boxes[:k, 2], x1) - np.maximum(kept_boxes[:k, 0], x0)
            ih = np.minimum(kept_boxes[:k, 3], y1) - np.maximum(kept_boxes[:k, 1], y0)
            inter = np.minimum(
                np.clip(iw, 0, None) * np.clip(ih, 0, None), np.minimum(kept_area[:k], a)
            )
            bound = inter / np.maximum(kept_area[:k] + a - inter, 1)
            check = np.flatnonzero(bound > cfg.nms_iou)
            m = pool.crop(q)
            if any(m.iou(kept[j]) > cfg.nms_iou for j in check):
                continue
            kept_boxes[k] = (x0, y0, x1, y1)
            kept_area[k] = a
            kept.append(m)
            kept_q.append(q)
        return kept_q, kept

    def prompt(
        self, image: np.ndarray, box: np.ndarray | None = None, point: np.ndarray | None = None
    ) -> Instances:
        """One instance for a prompt on ``image``, chosen among all candidate regions
        (before NMS and the ``max_proposals`` cap).

        Args:
            box: ``(4,)`` XYXY pixels: the candidate whose box fits it best (box IoU; the
                higher objectness breaks ties), its mask clipped to the box.
            point: ``(2,)`` XY pixels: the candidate of highest objectness (the score
                without its size prior) containing the point. A point is ambiguous (part or
                whole?): a box prompt gives much better masks.
            Both: the candidate containing the point whose box fits best, clipped to the box.

        Returns:
            ``Instances`` of length 1, or empty when no candidate fits (e.g. the point lies
            in a region larger than ``max_area``).
        """
        img = as_segmenter_image(image)
        h, w = img.shape[:2]
        bx, pt = pixel_prompt(box, point, (h, w))
        pool = self._pool(img)
        ok = np.ones(len(pool.score), bool)
        if pt is not None:
            x, y = pt
            for bi, b in enumerate(pool.bases):
                sel = pool.base == bi
                ok[sel] = b.members[pool.row[sel], pool.region_at(bi, x, y)]
        if bx is not None:
            bx0, by0, bx1, by1 = bx
            iw = np.minimum(pool.boxes[:, 2], bx1) - np.maximum(pool.boxes[:, 0], bx0)
            ih = np.minimum(pool.boxes[:, 3], by1) - np.maximum(pool.boxes[:, 1], by0)
            inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
            areas = (pool.boxes[:, 2] - pool.boxes[:, 0]) * (pool.boxes[:, 3] - pool.boxes[:, 1])
            fit = inter / np.maximum(areas + (bx1 - bx0) * (by1 - by0) - inter, 1)
            ok &= fit > 0
            rank = fit + 1e-3 * pool.objectness  # objectness <= 1: breaks ties only
        else:
            rank = pool.objectness.astype(np.float64)
        if not ok.any():
            return Instances.empty((h, w))
        q = int(np.flatnonzero(ok)[np.argmax(rank[ok])])
        m = pool.crop(q)
        if bx is not None:  # clip to the box
            x0, y0, x1, y1 = m.box
            bx0, by0, bx1, by1 = bx
            cx0, cy0, cx1, cy1 = max(x0, bx0), max(y0, by0), min(x1, bx1), min(y1, by1)
            m = MaskCrop(m.region(cx0, cy0, cx1, cy1), (cx0, cy0))
            if not m.crop.any():
                return Instances.empty((h, w))
        inst = self._instances(pool, [q], [m])
        inst.metadata["prompt"] = "point" if pt is not None else "box"
        return inst

    # -- internals ------------------------------------------------------------------------
    def _instances(
        self,
        pool: _Pool,
        qs: list[int],
        masks: list[MaskCrop],
    ) -> Instances:
        idx = np.asarray(qs, dtype=np.int64)
        contrast = np.array(
            [pool.bases[pool.base[q]].contrast[pool.row[q]] for q in qs], dtype=np.float32
        )
        distinct = np.array(
            [pool.bases[pool.base[q]].distinct[pool.row[q]] for q in qs], dtype=np.float32
        )
        inst = Instances.from_crops(
            masks,
            None,
            pool.hw,
            scores=pool.score[idx] if len(idx) else np.zeros(0, np.float32),
            data={
                "area": np.array([m.area for m in masks], dtype=np.int64),
                "contrast": contrast,
                "distinct": distinct,
            },
        )
        inst.metadata.update({"segmenter": self.name, "n_raw": pool.n_raw})
        return inst

    def _pool(self, image: np.ndarray) -> _Pool:
        img = as_segmenter_image(image)
        # the options are part of the key: a config edited in place must not hit a stale entry
        key = (
            hashlib.blake2b(img.tobytes(), digest_size=16).digest()
            + repr((img.shape, self.config)).encode()
        )
        if self._cache_key == key and self._cache is not None:
            return self._cache
        pool = self._compute_pool(img)
        self._cache_key, self._cache = key, pool  # prompts reuse one set of candidates per image
        return pool

    def _compute_pool(self, img: np.ndarray) -> _Pool:
        import cv2

        cfg = self.config
        h, w = img.shape[:2]
        f = min(1.0, cfg.max_side / max(h, w))
        small = (
            cv2.resize(
                img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA
            )
            if f < 1
            else img
        )
        sh, sw = small.shape[:2]
        # nearest-neighbour maps from image to working pixels (masks come back full size)
        ymap = np.arange(h, dtype=np.int64) * sh // h
        xmap = np.arange(w, dtype=np.int64) * sw // w
        edge = edge_map(small)
        # outline strength is measured against the image's strong edges (scale-free)
        strong = float(np.percentile(edge, 99)) if edge.size else 0.0
        bases: list[RegionGroups] = []
        slic_cache: dict[int, np.ndarray] = {}  # SLIC runs on RGB: one per size, any space
        for space in cfg.colour_spaces:
            x = to_colour_space(small, space)
            tex = texture_codes(x)
            if cfg.oversegmentation == "felzenszwalb":
                segmentations = (self._oversegment(small, x, p) for p in cfg.scales)
            else:
                segmentations = []
                for p in cfg.slic_segments:
                    if int(p) not in slic_cache:
                        slic_cache[int(p)] = self._oversegment(small, x, p)
                    segmentations.append(slic_cache[int(p)])
            for labels in segmentations:
                bases.append(group_regions(labels, x, tex, edge, strong, cfg.similarities, ymap, xmap))
        min_px = max(cfg.min_area * h * w if cfg.min_area < 1 else cfg.min_area, 1)
        max_px = cfg.max_area * h * w
        parts: list[tuple[np.ndarray, ...]] = []
        for bi, b in enumerate(bases):
            keep = np.flatnonzero((b.area >= min_px) & (b.area <= max_px))
            objectness = 0.5 * (b.contrast[keep] + b.distinct[keep])
            # a size prior: a larger region is more often a whole object than a fragment
            size_prior = np.log(b.area[keep].astype(np.float64)) / np.log(max(h * w, 2))
            score = np.clip(objectness * size_prior, 0.0, 1.0)
            parts.append(
                (np.full(keep.size, bi), keep, score, objectness, b.area[keep], b.boxes[keep])
            )
        base_a, row_a, score, obj, area, boxes = (
            np.concatenate([p[k] for p in parts]) for k in range(6)
        )
        order = np.argsort(-score, kind="stable")
        return _Pool(
            bases,
            base_a[order].astype(np.int64),
            row_a[order].astype(np.int64),
            score[order].astype(np.float32),
            obj[order].astype(np.float32),
            area[order].astype(np.int64),
            boxes[order].astype(np.int64).reshape(-1, 4),
            (h, w),
            sum(len(b.area) for b in bases),
            ymap,
            xmap,
        )

    def _oversegment(self, small: np.ndarray, x: np.ndarray, param: float) -> np.ndarray:
        """Region ids ``0..n-1`` (int32) of the working image."""
        from skimage import segmentation

        cfg = self.config
        if cfg.oversegmentation == "felzenszwalb":
            lab = segmentation.felzenszwalb(
                x, scale=float(param), sigma=cfg.sigma, min_size=cfg.min_segment, channel_axis=-1
            )
        else:
            lab = segmentation.slic(
                small,
                n_segments=int(param),
                compactness=cfg.slic_compactness,
                start_label=0,
                channel_axis=-1,
            )
        # contiguous ids 0..n-1 (a lookup table, no sort)
        return (segmentation.relabel_sequential(lab + 1)[0] - 1).astype(np.int32)


__all__ = ["RegionsConfig", "RegionsSegmenter"]
