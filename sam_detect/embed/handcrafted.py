"""``handcrafted``: intensity, shape and texture statistics; numpy, OpenCV and scikit-image only.

No weights and no torch: a baseline that runs anywhere, and a sanity check for the learned
embedders. Each crop gives a fixed-size vector made of four groups:

=============  ====  ===============================================================
group          size  contents (all computed inside the object's mask)
=============  ====  ===============================================================
intensity        12  RGB means and standard deviations; grey 10/50/90th percentiles;
                     grey skewness and kurtosis; grey contrast against the surroundings
histogram        16  normalised 16-bin grey histogram
shape            13  log area, eccentricity, solidity, extent, circularity, minor/major
                     axis ratio, 7 Hu moments (signed log scale)
texture          12  10-bin uniform LBP histogram (P=8, R=1); gradient magnitude mean, std
=============  ====  ===============================================================

Every feature is mapped by fixed constants to roughly ``[-1, 1]`` around a neutral value
(histograms minus the uniform histogram), each group is divided by the square root of its
size so the four groups weigh about the same, and the result is L2-normalised. Absolute
size stays in the vector (``log area``): context crops are not resized.

The mask matters: pass it as ``embed(crops, masks)`` (``ContextCrop.mask`` from
:func:`sam_detect.fade.crops.make_context_crops`). Without masks the object is guessed:
pixels that differ from the crop's border colour by more than an Otsu threshold, the
connected component at (or nearest to) the centre, holes filled; when that finds nothing,
the whole crop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sam_detect.embed.base import l2_normalize

_GROUPS = {"intensity": 12, "histogram": 16, "shape": 13, "texture": 12}
DIM = sum(_GROUPS.values())
_HIST_BINS = 16
_LBP_POINTS = 8
_LBP_BINS = _LBP_POINTS + 2  # "uniform" LBP codes 0..P+1


def _check(crops: Sequence[np.ndarray], masks: Sequence[np.ndarray] | None):
    from sam_detect.embed._torch import check_crops  # torch-free helper

    crops = check_crops(crops)
    if masks is None:
        return crops, [None] * len(crops)
    masks = list(masks)
    if len(masks) != len(crops):
        raise ValueError(
            f"masks must have one entry per crop: {len(crops)} crops, {len(masks)} masks"
        )
    out = []
    for i, (crop, mask) in enumerate(zip(crops, masks, strict=True)):
        if mask is None:
            out.append(None)
            continue
        m = np.asarray(mask)
        if m.shape != crop.shape[:2]:
            raise ValueError(f"mask {i} must have its crop's shape {crop.shape[:2]}, got {m.shape}")
        out.append(m.astype(bool, copy=False))
    return crops, out


def guess_mask(crop: np.ndarray) -> np.ndarray:
    """Object mask ``(h, w)`` bool of a centred context crop ``(h, w, 3)`` uint8.

    Pixels differing from the median border colour by more than an Otsu threshold; the
    connected component at the centre (else the nearest one), holes filled. All ``True``
    when the crop is flat.
    """
    import cv2
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    h, w = crop.shape[:2]
    img = crop.astype(np.int16)
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]], axis=0)
    bg = np.median(border, axis=0)
    diff = np.abs(img - bg).max(axis=2).astype(np.uint8)
    if diff.max() == diff.min():
        return np.ones((h, w), dtype=bool)
    fg = diff > threshold_otsu(diff)
    n, labels = cv2.connectedComponents(fg.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.ones((h, w), dtype=bool)
    cy, cx = h // 2, w // 2
    lab = labels[cy, cx]
    if lab == 0:
        ys, xs = np.nonzero(labels)
        k = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
        lab = labels[ys[k], xs[k]]
    return ndimage.binary_fill_holes(labels == lab)


def _moments_stats(values: np.ndarray) -> tuple[float, float]:
    mean = values.mean()
    std = values.std()
    if std < 1e-6:
        return 0.0, 0.0
    z = (values - mean) / std
    return float((z**3).mean()), float((z**4).mean() - 3.0)


def _intensity(crop: np.ndarray, grey: np.ndarray, mask: np.ndarray) -> np.ndarray:
    inside = crop[mask].astype(np.float32) / 255.0
    g = grey[mask]
    means = inside.mean(axis=0)
    stds = inside.std(axis=0)
    p10, p50, p90 = np.percentile(g, [10, 50, 90])
    skew, kurt = _moments_stats(g)
    outside = grey[~mask]
    contrast = float(g.mean() - outside.mean()) if outside.size else 0.0
    return np.array(
        [
            *(2 * means - 1),
            *(4 * stds - 1),  # std of [0, 1] values: 0 .. 0.5
            2 * p10 - 1,
            2 * p50 - 1,
            2 * p90 - 1,
            np.tanh(skew / 2),
            np.tanh(kurt / 4),
            contrast,
        ],
        dtype=np.float32,
    )


def _histogram(grey: np.ndarray, mask: np.ndarray) -> np.ndarray:
    hist, _ = np.histogram(grey[mask], bins=_HIST_BINS, range=(0.0, 1.0))
    hist = hist.astype(np.float32) / max(hist.sum(), 1)
    return (hist - 1.0 / _HIST_BINS) * np.sqrt(_HIST_BINS)


def _shape(mask: np.ndarray) -> np.ndarray:
    import cv2

    m8 = mask.astype(np.uint8)
    area = float(m8.sum())
    mom = cv2.moments(m8, binaryImage=True)
    hu = cv2.HuMoments(mom).reshape(-1)
    mu20, mu02, mu11 = mom["mu20"] / area, mom["mu02"] / area, mom["mu11"] / area
    common = np.sqrt(max((mu20 - mu02) ** 2 + 4 * mu11**2, 0.0))
    l1 = (mu20 + mu02 + common) / 2
    l2 = max((mu20 + mu02 - common) / 2, 0.0)
    eccentricity = np.sqrt(1 - l2 / l1) if l1 > 1e-12 else 0.0
    axis_ratio = np.sqrt(l2 / l1) if l1 > 1e-12 else 1.0

    contours, _ = cv2.findContours(m8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    pts = np.concatenate(contours, axis=0) if contours else np.zeros((0, 1, 2), np.int32)
    if len(pts) >= 3:
        hull_area = cv2.contourArea(cv2.convexHull(pts))
        perimeter = sum(cv2.arcLength(c, True) for c in contours)
    else:
        hull_area, perimeter = 0.0, 0.0
    # Pixel-count area vs polygon areas: +1 keeps tiny masks finite and in range.
    solidity = min(area / (hull_area + 0.5 * perimeter + 1.0), 1.0)
    circularity = min(4 * np.pi * area / (perimeter + np.pi) ** 2, 1.0)
    ys, xs = np.nonzero(mask)
    extent = area / float((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1))
    hu_scaled = np.sign(hu) * np.log10(1.0 + np.abs(hu) / 1e-6) / 6.0
    return np.array(
        [
            np.log(area) / np.log(1e5) * 2 - 1,
            2 * eccentricity - 1,
            2 * solidity - 1,
            2 * extent - 1,
            2 * circularity - 1,
            2 * axis_ratio - 1,
            *hu_scaled,
        ],
        dtype=np.float32,
    )


def texture_maps(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(lbp, gradient magnitude)`` of a grey image in [0, 1]: the per-pixel maps the texture
    group summarises (``describe`` given a window of them; the ``views`` embedder computes the
    LBP codes under its objects only, :func:`sam_detect.embed.measure.lbp_at`)."""
    from skimage.feature import local_binary_pattern

    lbp = local_binary_pattern(grey_levels(grey), _LBP_POINTS, 1, method="uniform").astype(np.uint8)
    return lbp, gradient_magnitude(grey)


def grey_levels(grey: np.ndarray) -> np.ndarray:
    """``(h, w)`` uint8: a grey image in [0, 1] as the 256 levels the LBP codes compare."""
    return np.rint(grey * 255).astype(np.uint8)


def gradient_magnitude(grey: np.ndarray) -> np.ndarray:
    """``(h, w)`` float32: the 3 x 3 Sobel gradient magnitude of a grey image in [0, 1]."""
    import cv2

    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    np.multiply(gx, gx, out=gx)  # sqrt(gx * gx + gy * gy), in place: no temporaries
    np.multiply(gy, gy, out=gy)
    gx += gy
    return np.sqrt(gx, out=gx)


def _texture(grey: np.ndarray, mask: np.ndarray, maps: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    lbp, magnitude = maps if maps is not None else texture_maps(grey)
    hist = np.bincount(lbp[mask].astype(np.int64), minlength=_LBP_BINS)[:_LBP_BINS]
    hist = hist.astype(np.float32) / max(hist.sum(), 1)
    mag = magnitude[mask]
    return np.array(
        [
            *((hist - 1.0 / _LBP_BINS) * np.sqrt(_LBP_BINS)),
            np.tanh(mag.mean()) * 2 - 1,
            np.tanh(mag.std()) * 2 - 1,
        ],
        dtype=np.float32,
    )


#: rows of an image converted to grey at a time: no float copy of a whole large image's
#: three channels (800 MB for a 8192^2 one); each pixel's luma is computed as before
_GREY_ROWS = 256


def grey_of(rgb: np.ndarray) -> np.ndarray:
    """``(h, w)`` float32 luma in [0, 1] of an RGB uint8 image."""
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    out = np.empty(rgb.shape[:2], np.float32)
    for y in range(0, rgb.shape[0], _GREY_ROWS):
        out[y : y + _GREY_ROWS] = (rgb[y : y + _GREY_ROWS].astype(np.float32) @ weights) / 255.0
    return out


def describe(
    crop: np.ndarray,
    mask: np.ndarray,
    grey: np.ndarray | None = None,
    maps: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Raw (not normalised) feature vector ``(DIM,)`` float32 of one crop and its mask.

    ``grey`` and ``maps`` (``texture_maps``): the crop's window of maps computed once for a
    whole image; computed from the crop when not given.
    """
    if grey is None:
        grey = grey_of(crop)
    parts = [
        _intensity(crop, grey, mask),
        _histogram(grey, mask),
        _shape(mask),
        _texture(grey, mask, maps),
    ]
    return np.concatenate([p / np.sqrt(len(p)) for p in parts]).astype(np.float32)


class HandcraftedEmbedder:
    """Intensity, shape and texture statistics of each crop's object: ``(N, 53)`` float32.

    ``embed(crops, masks=None)``: crops ``(h, w, 3)`` uint8; masks ``(h, w)`` bool, one per
    crop (recommended); without them the object is guessed (see :func:`guess_mask`).
    """

    name = "handcrafted"
    id = "handcrafted:v1"
    dim = DIM
    supports_instances = False  # context crops only
    uses_masks = True  # the pipeline should pass ContextCrop.mask to embed()

    def __init__(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"HandcraftedEmbedder(id={self.id!r}, dim={self.dim})"

    def embed(
        self, crops: Sequence[np.ndarray], masks: Sequence[np.ndarray] | None = None
    ) -> np.ndarray:
        """Embed crops: returns ``(N, 53)`` float32 with L2-normalised rows (``(0, 53)`` for none).

        An empty mask falls back to the guessed mask, then to the whole crop.
        """
        crops, masks = _check(crops, masks)
        out = np.zeros((len(crops), DIM), dtype=np.float32)
        for i, (crop, mask) in enumerate(zip(crops, masks, strict=True)):
            if mask is None or not mask.any():
                mask = guess_mask(crop)
            if not mask.any():
                mask = np.ones(crop.shape[:2], dtype=bool)
            out[i] = describe(crop, mask)
        return l2_normalize(out)

    def params(self) -> dict[str, Any]:
        return {"name": self.name, "id": self.id, "dim": self.dim}


__all__ = ["DIM", "HandcraftedEmbedder", "describe", "grey_of", "guess_mask", "texture_maps"]
