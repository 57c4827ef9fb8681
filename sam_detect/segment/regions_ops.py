"""The ``regions`` segmenter's array operations: colour spaces, texture codes, the edge
map, region histograms and the greedy grouping of an over-segmentation (Selective
Search's similarity and hierarchy)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

_HIST_BINS = 25  # colour histogram bins per channel (Selective Search)
_LBP_POINTS = 8  # uniform LBP with 8 neighbours: 10 codes per channel
SIMILARITY_LETTERS = "ctsf"  # similarity measures: colour, texture, size, fill


@dataclass
class RegionGroups:
    """One over-segmentation and the distinct candidates grouped from it."""

    labels: np.ndarray  # (h, w) int32 region ids 0..n-1 of the working image
    members: np.ndarray  # (P, n) bool: which regions make up each candidate
    contrast: np.ndarray  # (P,) float32: outline gradient strength, 0..1
    distinct: np.ndarray  # (P,) float32: colour difference from the adjacent regions, 0..1
    area: np.ndarray  # (P,) int64 full-resolution pixels
    boxes: np.ndarray  # (P, 4) int64 XYXY, exclusive ends, full resolution


def to_colour_space(rgb: np.ndarray, space: str) -> np.ndarray:
    """``(h, w, 3)`` float32 in ``0..1`` per channel."""
    from skimage import color

    if space == "rgb":
        return rgb.astype(np.float32) / 255.0
    if space == "hsv":
        return color.rgb2hsv(rgb).astype(np.float32)
    lab = color.rgb2lab(rgb).astype(np.float32)
    lab[..., 0] /= 100.0
    lab[..., 1:] = (lab[..., 1:] + 128.0) / 255.0
    return np.clip(lab, 0.0, 1.0)


def texture_codes(x: np.ndarray) -> np.ndarray:
    """``(h, w, 3)`` uint8 uniform local-binary-pattern codes (``0..P+1``) per channel."""
    from skimage.feature import local_binary_pattern

    out = np.empty(x.shape, np.uint8)
    for c in range(x.shape[2]):
        ch = np.round(x[..., c] * 255).astype(np.uint8)
        out[..., c] = local_binary_pattern(ch, _LBP_POINTS, 1, method="uniform").astype(np.uint8)
    return out


def edge_map(rgb: np.ndarray) -> np.ndarray:
    """Colour gradient magnitude ``(h, w)`` float32: Sobel on a lightly smoothed Lab image."""
    import cv2

    x = to_colour_space(rgb, "lab")
    x = cv2.GaussianBlur(x, (0, 0), 1.0)
    gx = cv2.Sobel(x, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(x, cv2.CV_32F, 0, 1, ksize=3)
    g = gx * gx + gy * gy
    return np.sqrt(g.sum(axis=2) if g.ndim == 3 else g)


def region_histograms(labels: np.ndarray, codes: np.ndarray, bins: int, n: int) -> np.ndarray:
    """``(n, channels * bins)`` float64 per-region histograms of integer ``codes``, L1-normalised."""
    flat = labels.ravel().astype(np.int64) * bins
    parts = [
        np.bincount(flat + codes[..., c].ravel(), minlength=n * bins).reshape(n, bins)
        for c in range(codes.shape[2])
    ]
    hist = np.concatenate(parts, axis=1).astype(np.float64)
    return hist / np.maximum(hist.sum(axis=1, keepdims=True), 1)


class Similarity:
    """Selective Search similarity of two regions, with region features kept up to date as
    regions merge (the ``merge_func`` / ``weight_func`` of ``merge_hierarchical``)."""

    def __init__(self, spec: str, sizes, hc, ht, boxes, area_img: float) -> None:
        self.use_c, self.use_t, self.use_s, self.use_f = (c in spec for c in SIMILARITY_LETTERS)
        self.sizes, self.hc, self.ht, self.boxes = sizes.copy(), hc.copy(), ht.copy(), boxes.copy()
        self.area_img = area_img
        self.merged: list[list[int]] = []  # the base regions of each merged region, in order

    def __call__(self, i: int, j: int) -> float:
        out = 0.0
        if self.use_c:
            out += float(np.minimum(self.hc[i], self.hc[j]).sum())
        if self.use_t:
            out += float(np.minimum(self.ht[i], self.ht[j]).sum())
        if self.use_s:
            out += 1.0 - (self.sizes[i] + self.sizes[j]) / self.area_img
        if self.use_f:
            bi, bj = self.boxes[i], self.boxes[j]
            box = (max(bi[2], bj[2]) - min(bi[0], bj[0])) * (max(bi[3], bj[3]) - min(bi[1], bj[1]))
            out += 1.0 - (box - self.sizes[i] - self.sizes[j]) / self.area_img
        return out

    def merge(self, graph: Any, src: int, dst: int) -> None:
        """``dst`` becomes the union of ``src`` and ``dst``; the union is recorded."""
        a, b = self.sizes[src], self.sizes[dst]
        self.hc[dst] = (self.hc[src] * a + self.hc[dst] * b) / (a + b)
        self.ht[dst] = (self.ht[src] * a + self.ht[dst] * b) / (a + b)
        self.sizes[dst] = a + b
        self.boxes[dst, :2] = np.minimum(self.boxes[src, :2], self.boxes[dst, :2])
        self.boxes[dst, 2:] = np.maximum(self.boxes[src, 2:], self.boxes[dst, 2:])
        self.merged.append(graph.nodes[src]["labels"] + graph.nodes[dst]["labels"])

    def weight(self, graph: Any, src: int, dst: int, nbr: int) -> dict:
        # merge_hierarchical merges the lowest weight first: the most similar pair
        return {"weight": -self(dst, nbr)}


def group_regions(
    labels: np.ndarray,
    x: np.ndarray,
    tex: np.ndarray,
    edge: np.ndarray,
    strong: float,
    similarities: tuple[str, ...],
    ymap: np.ndarray,
    xmap: np.ndarray,
) -> RegionGroups:
    """Hierarchical grouping of one over-segmentation: the starting regions and every merged
    region of every run, each once, with their scores' parts, areas and boxes."""
    from scipy import ndimage as ndi
    from scipy import sparse
    from skimage import graph

    h, w = labels.shape
    n = int(labels.max()) + 1
    sizes = np.bincount(labels.ravel(), minlength=n).astype(np.float64)
    colour_codes = np.minimum((x * _HIST_BINS).astype(np.int64), _HIST_BINS - 1)
    hc = region_histograms(labels, colour_codes, _HIST_BINS, n)
    ht = region_histograms(labels, tex.astype(np.int64), _LBP_POINTS + 2, n)
    boxes = np.array(
        [(s[0].start, s[1].start, s[0].stop, s[1].stop) for s in ndi.find_objects(labels + 1)],
        dtype=np.float64,
    ).reshape(-1, 4)

    # region adjacency with the length and mean gradient of each shared boundary
    rag = graph.rag_boundary(labels, edge) if n > 1 else None
    edges = np.array(
        [(u, v, d["count"], d["weight"]) for u, v, d in rag.edges(data=True)] if rag else [],
        dtype=np.float64,
    ).reshape(-1, 4)

    found: dict[bytes, np.ndarray] = {}
    for i in range(n):
        row = np.zeros(n, bool)
        row[i] = True
        found[np.packbits(row).tobytes()] = row
    for spec in similarities if rag is not None else ():
        sim = Similarity(spec, sizes, hc, ht, boxes, float(h * w))
        g = rag.copy()
        for u, v, d in g.edges(data=True):
            d["weight"] = -sim(u, v)
        graph.merge_hierarchical(labels, g, np.inf, False, True, sim.merge, sim.weight)
        for mem in sim.merged:
            row = np.zeros(n, bool)
            row[mem] = True
            found.setdefault(np.packbits(row).tobytes(), row)
    members = np.stack(list(found.values()))

    contrast = np.zeros(len(members), np.float32)
    distinct = np.zeros(len(members), np.float32)
    if len(edges):
        u, v = edges[:, 0].astype(np.int64), edges[:, 1].astype(np.int64)
        # outline contrast: the mean gradient along the boundaries a candidate cuts
        cut = members[:, u] != members[:, v]
        length = cut @ edges[:, 2]
        strength = cut @ (edges[:, 2] * edges[:, 3])
        mean = strength / np.maximum(length, 1e-9)
        contrast = np.clip(mean / max(strong, 1e-9), 0.0, 1.0).astype(np.float32)
        # colour distinctness: 1 - histogram intersection with the ring of adjacent regions
        adj = sparse.csr_array(
            (np.ones(2 * len(u)), (np.concatenate([u, v]), np.concatenate([v, u]))), shape=(n, n)
        )
        ring = ((adj @ members.T.astype(np.float64)).T > 0) & ~members
        weighted = hc * sizes[:, None]
        inside = members @ weighted
        around = ring @ weighted
        inside /= np.maximum(inside.sum(axis=1, keepdims=True), 1e-12)
        around /= np.maximum(around.sum(axis=1, keepdims=True), 1e-12)
        distinct = np.where(
            ring.any(axis=1), 1.0 - np.minimum(inside, around).sum(axis=1), 0.0
        ).astype(np.float32)

    # full-resolution areas and boxes, through the nearest-neighbour maps
    rows_per = np.bincount(ymap, minlength=h).astype(np.float64)  # image rows per working row
    cols_per = np.bincount(xmap, minlength=w).astype(np.float64)
    fsizes = np.rint(
        np.bincount(labels.ravel(), weights=np.outer(rows_per, cols_per).ravel(), minlength=n)
    ).astype(np.int64)
    rb = np.stack(  # region boxes XYXY in image pixels
        [
            np.searchsorted(xmap, boxes[:, 1], "left"),
            np.searchsorted(ymap, boxes[:, 0], "left"),
            np.searchsorted(xmap, boxes[:, 3] - 1, "right"),
            np.searchsorted(ymap, boxes[:, 2] - 1, "right"),
        ],
        axis=1,
    ).astype(np.int64)
    big = np.iinfo(np.int64).max
    boxes_full = np.stack(
        [
            np.min(np.broadcast_to(rb[:, 0], members.shape), axis=1, where=members, initial=big),
            np.min(np.broadcast_to(rb[:, 1], members.shape), axis=1, where=members, initial=big),
            np.max(np.broadcast_to(rb[:, 2], members.shape), axis=1, where=members, initial=0),
            np.max(np.broadcast_to(rb[:, 3], members.shape), axis=1, where=members, initial=0),
        ],
        axis=1,
    )
    area = members @ fsizes
    return RegionGroups(labels, members, contrast, distinct, area.astype(np.int64), boxes_full)
