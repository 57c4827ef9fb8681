"""The ``handcrafted`` statistics of every object of one image at once (the ``views`` embedder's
``colour``, ``shape`` and ``texture`` views).

:func:`sam_detect.embed.handcrafted.describe` measures one crop; :func:`describe_objects`
gives the same vector for each object of an image, measured on a window around it, with
the per-pixel statistics gathered for all objects together (``np.bincount`` over the
concatenated mask pixels, one sort for the percentiles, summed-area tables for the
surroundings, LBP codes only under the objects: :func:`lbp_at`) instead of a dozen numpy
calls per object. Only the contours (solidity, perimeter) stay one OpenCV call per object. The values agree with ``describe`` to float32
rounding (``tests/test_views_speed.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sam_detect.embed.handcrafted import _GROUPS, _HIST_BINS, _LBP_BINS


def _sums(owner: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """``(n,)`` float64: the sum of ``values`` over each owner's pixels."""
    return np.bincount(owner, weights=values, minlength=n)


def _histogram_bins(values: np.ndarray, bins: int) -> np.ndarray:
    """Bin of each value in ``np.histogram(values, bins, range=(0, 1))``, or -1 outside it
    (numpy's own arithmetic, so the counts are the same)."""
    edges = np.linspace(0.0, 1.0, bins + 1, endpoint=True, dtype=values.dtype)
    keep = (values >= 0.0) & (values <= 1.0)
    v = values[keep]
    idx = ((v - 0.0) / 1.0 * bins).astype(np.intp)
    idx[idx == bins] -= 1
    idx[v < edges[idx]] -= 1
    idx[(v >= edges[idx + 1]) & (idx != bins - 1)] += 1
    out = np.full(values.shape, -1, np.intp)
    out[keep] = idx
    return out


def _counts(owner: np.ndarray, codes: np.ndarray, n: int, n_codes: int) -> np.ndarray:
    """``(n, n_codes)`` int64 histogram of ``codes`` (``-1``: not counted) per owner."""
    ok = (codes >= 0) & (codes < n_codes)
    flat = np.bincount(owner[ok] * n_codes + codes[ok], minlength=n * n_codes)
    return flat.reshape(n, n_codes)


def _percentiles(owner: np.ndarray, values: np.ndarray, count: np.ndarray, q: tuple[float, ...]) -> np.ndarray:
    """``(n, len(q))``: ``np.percentile`` (linear) of each owner's values; 0 for none."""
    order = np.lexsort((values, owner))
    ordered = values[order].astype(np.float64)
    first = np.concatenate([[0], np.cumsum(count)[:-1]])
    out = np.zeros((len(count), len(q)), np.float64)
    has = count > 0
    for j, p in enumerate(q):
        virtual = (count[has] - 1) * (p / 100.0)
        lo = np.floor(virtual).astype(np.int64)
        hi = np.minimum(lo + 1, count[has] - 1)
        t = virtual - lo
        a, b = ordered[first[has] + lo], ordered[first[has] + hi]
        # numpy's lerp: from the nearer end
        out[has, j] = np.where(t >= 0.5, b - (b - a) * (1 - t), a + (b - a) * t)
    return out


def _window_sums(table: np.ndarray, x0, y0, x1, y1) -> np.ndarray:
    """Sums over rectangles ``[y0:y1, x0:x1]`` from a summed-area ``table`` ``(H + 1, W + 1)``."""
    return table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]


def _hu(nu: dict[str, np.ndarray]) -> np.ndarray:
    """``(n, 7)`` Hu moments from normalised central moments (OpenCV's ``HuMoments``)."""
    t0, t1 = nu["30"] + nu["12"], nu["21"] + nu["03"]
    q0, q1 = t0 * t0, t1 * t1
    n4 = 4 * nu["11"]
    s, d = nu["20"] + nu["02"], nu["20"] - nu["02"]
    hu = [s, d * d + n4 * nu["11"], None, q0 + q1, None, d * (q0 - q1) + n4 * t0 * t1, None]
    t0 = t0 * (q0 - 3 * q1)
    t1 = t1 * (3 * q0 - q1)
    q0, q1 = nu["30"] - 3 * nu["12"], 3 * nu["21"] - nu["03"]
    hu[2] = q0 * q0 + q1 * q1
    hu[4] = q0 * t0 + q1 * t1
    hu[6] = q1 * t0 - q0 * t1
    return np.stack(hu, axis=1)


def _moments(owner: np.ndarray, ys: np.ndarray, xs: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Area, central moments ``mu`` and normalised ``nu`` of each owner's pixels (OpenCV's
    ``moments(binaryImage=True)`` arithmetic; raw moments in crop coordinates are exact)."""
    x, y = xs.astype(np.float64), ys.astype(np.float64)
    m = {f"{p}{q}": _sums(owner, x**p * y**q, n) for p, q in
         ((0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2), (3, 0), (2, 1), (1, 2), (0, 3))}
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(m["00"] > 0, 1.0 / m["00"], 0.0)
        cx, cy = m["10"] * inv, m["01"] * inv
        mu = {"20": m["20"] - m["10"] * cx, "11": m["11"] - m["10"] * cy, "02": m["02"] - m["01"] * cy}
        mu["30"] = m["30"] - cx * (3 * mu["20"] + cx * m["10"])
        mu["21"] = m["21"] - cx * (mu["11"] * 2 + cx * m["01"]) - cy * mu["20"]
        mu["12"] = m["12"] - cy * (mu["11"] * 2 + cy * m["10"]) - cx * mu["02"]
        mu["03"] = m["03"] - cy * (3 * mu["02"] + cy * m["01"])
        s2 = inv * inv
        s3 = s2 * np.sqrt(np.abs(inv))
        nu = {k: v * (s2 if k in ("20", "11", "02") else s3) for k, v in mu.items()}
    return {"area": m["00"], "mu": mu, "nu": nu}


def _contours(crop: np.ndarray) -> tuple[float, float]:
    """``(convex hull area, perimeter)`` of a mask crop's external contours (``_shape``'s)."""
    import cv2

    contours, _ = cv2.findContours(crop.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    pts = np.concatenate(contours, axis=0) if contours else np.zeros((0, 1, 2), np.int32)
    if len(pts) < 3:
        return 0.0, 0.0
    return cv2.contourArea(cv2.convexHull(pts)), sum(cv2.arcLength(c, True) for c in contours)


#: object pixels a thread past which :func:`describe_objects` measures the objects in several
#: threads (contiguous runs of objects, as many as the process has cores, at most
#: ``MAX_THREADS``): NumPy's gathers, sums and sorts release the GIL, so the ~3,200 objects of a
#: 4096² mosaic are measured in 0.83-1.05 s instead of 1.22-1.64 s on two cores (the same
#: values; docs/performance.md, session 63). Below it, one thread does it all; ``views`` asks
#: for one where the network pass beside it still holds the cores
CHUNK_PIXELS = 1 << 17
MAX_THREADS = 8


def describe_objects(rgb: np.ndarray, instances: Any, pixels=None, threads: int | None = None) -> np.ndarray:
    """``(N, 53)`` float32: ``describe(window, mask)`` of each object of ``rgb`` ``(H, W, 3)``
    uint8, measured on a window around it (its box padded by half its longer side, at
    least 4 px, clipped to the image; the window only bounds the surroundings that the
    contrast compares with). Empty masks give zeros.

    ``pixels``: ``(owner, ys, xs)`` of the masks in crop coordinates when already gathered
    (object by object, as ``views._object_pixels`` gathers them). ``threads``: at most this
    many (default: the usable cores, :data:`CHUNK_PIXELS` object pixels a thread); every
    object's values are the same however many run.
    """
    import cv2

    from sam_detect.embed.handcrafted import gradient_magnitude, grey_levels, grey_of
    from sam_detect.embed.views import _crop_geometry, _object_pixels

    crops = instances.crops
    n = len(crops)
    out = np.zeros((n, sum(_GROUPS.values())), np.float32)
    if n == 0:
        return out
    owner, ys, xs = pixels if pixels is not None else _object_pixels([m.crop for m in crops])
    origins, shapes = _crop_geometry(crops)
    count = np.bincount(owner, minlength=n).astype(np.int64)
    ay, ax = ys + origins[owner, 1], xs + origins[owner, 0]  # image coordinates

    grey = grey_of(rgb)
    runs = _runs(count, owner, threads)
    covered = np.zeros(grey.shape, bool)  # LBP codes only where some object lies, each pixel once
    covered[ay, ax] = True
    cy, cx = np.nonzero(covered)
    del covered
    lbp = np.zeros(grey.shape, np.uint8)
    maps = {"magnitude": lambda: gradient_magnitude(grey),
            "table": lambda: cv2.integral(grey, sdepth=cv2.CV_64F),  # (h + 1, w + 1) summed-area table
            "levels": lambda: grey_levels(grey)}
    if len(runs) == 1:
        image = {"rgb": rgb, "grey": grey, "lbp": lbp, **{k: f() for k, f in maps.items()}}
        lbp[cy, cx] = lbp_at(image["levels"], cy, cx)
        out[:] = _describe_run(image, crops, owner, ys, xs, ay, ax, origins, shapes, count)
        return out
    from concurrent.futures import ThreadPoolExecutor

    first = np.concatenate([[0], np.cumsum(count)])

    def codes(k: int) -> None:  # every covered pixel's code, the pixels cut in as many parts
        sl = slice(k * len(cy) // len(runs), (k + 1) * len(cy) // len(runs))
        lbp[cy[sl], cx[sl]] = lbp_at(image["levels"], cy[sl], cx[sl])

    def measure(run: tuple[int, int]) -> None:
        lo, hi = run
        a, b = first[lo], first[hi]
        out[lo:hi] = _describe_run(image, crops[lo:hi], owner[a:b] - lo, ys[a:b], xs[a:b], ay[a:b], ax[a:b],
                                   origins[lo:hi], shapes[lo:hi], count[lo:hi])

    with ThreadPoolExecutor(len(runs), thread_name_prefix="sam-detect-measure") as pool:
        made = {k: pool.submit(f) for k, f in maps.items()}  # the image's maps side by side
        image = {"rgb": rgb, "grey": grey, "lbp": lbp, **{k: f.result() for k, f in made.items()}}
        list(pool.map(codes, range(len(runs))))
        list(pool.map(measure, runs))
    return out


def _runs(count: np.ndarray, owner: np.ndarray, threads: int | None) -> list[tuple[int, int]]:
    """``[(first object, past the last)]``: contiguous runs of objects of about equal pixel
    counts, one a thread (:data:`CHUNK_PIXELS`); one run where the pixels are not object by
    object or too few."""
    from sam_detect._cores import usable_cores

    total = int(count.sum())
    k = min(threads or min(usable_cores(), MAX_THREADS), max(total // CHUNK_PIXELS, 1), len(count))
    if k <= 1 or (len(owner) > 1 and bool(np.any(np.diff(owner) < 0))):
        return [(0, len(count))]
    cuts = np.searchsorted(np.cumsum(count), total * np.arange(1, k) / k, side="right")
    edges = np.unique(np.concatenate([[0], cuts, [len(count)]]))
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def _describe_run(image: dict, crops: Any, owner: np.ndarray, ys: np.ndarray, xs: np.ndarray,
                  ay: np.ndarray, ax: np.ndarray, origins: np.ndarray, shapes: np.ndarray,
                  count: np.ndarray) -> np.ndarray:
    """:func:`describe_objects` of a run of objects (``owner`` counted from 0 within it), the
    image-wide maps (``image``: rgb, grey, gradient magnitude, summed-area table, LBP codes
    under every object) made once for all runs."""
    rgb, grey, magnitude, table, lbp = (image[k] for k in ("rgb", "grey", "magnitude", "table", "lbp"))
    n = len(count)
    out = np.zeros((n, sum(_GROUPS.values())), np.float32)
    has = count > 0
    cnt = np.maximum(count, 1).astype(np.float64)

    def mean_std(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        v = values.astype(np.float64)
        mean = _sums(owner, v, n) / cnt
        return mean, np.sqrt(_sums(owner, (v - mean[owner]) ** 2, n) / cnt)

    # intensity: RGB means and stds, grey percentiles, skewness, kurtosis, contrast
    colours = rgb[ay, ax].astype(np.float32) / 255.0
    rgb_stats = [mean_std(colours[:, c]) for c in range(3)]
    g = grey[ay, ax]
    gmean, gstd = mean_std(g)
    centred = g.astype(np.float64) - gmean[owner]
    with np.errstate(divide="ignore", invalid="ignore"):
        z3 = _sums(owner, centred**3, n) / cnt / gstd**3
        z4 = _sums(owner, centred**4, n) / cnt / gstd**4
    varied = gstd >= 1e-6  # as describe: no skewness or kurtosis of a flat object
    skew = np.where(varied, z3, 0.0)
    kurt = np.where(varied, z4 - 3.0, 0.0)
    p10, p50, p90 = _percentiles(owner, g, count, (10, 50, 90)).T
    h, w = grey.shape
    pad = np.maximum(4, (0.5 * shapes.max(axis=1)).astype(np.int64))
    wx0, wy0 = np.maximum(origins[:, 0] - pad, 0), np.maximum(origins[:, 1] - pad, 0)
    wx1 = np.minimum(origins[:, 0] + shapes[:, 1] + pad, w)
    wy1 = np.minimum(origins[:, 1] + shapes[:, 0] + pad, h)
    n_out = (wx1 - wx0) * (wy1 - wy0) - count
    inside_sum = _sums(owner, g.astype(np.float64), n)
    with np.errstate(divide="ignore", invalid="ignore"):
        outside = (_window_sums(table, wx0, wy0, wx1, wy1) - inside_sum) / n_out
    contrast = np.where(n_out > 0, gmean - outside, 0.0)
    intensity = np.stack(
        [*(2 * m - 1 for m, _ in rgb_stats), *(4 * s - 1 for _, s in rgb_stats),
         2 * p10 - 1, 2 * p50 - 1, 2 * p90 - 1, np.tanh(skew / 2), np.tanh(kurt / 4), contrast],
        axis=1,
    )

    # grey histogram
    hist = _counts(owner, _histogram_bins(g, _HIST_BINS), n, _HIST_BINS).astype(np.float32)
    hist = hist / np.maximum(hist.sum(axis=1, keepdims=True), 1)
    histogram = (hist - 1.0 / _HIST_BINS) * np.sqrt(_HIST_BINS)

    # shape: moments in crop coordinates (translation-free), contours per object
    mom = _moments(owner, ys, xs, n)
    area = mom["area"]
    with np.errstate(divide="ignore", invalid="ignore"):
        mu20, mu02, mu11 = (mom["mu"][k] / area for k in ("20", "02", "11"))
        common = np.sqrt(np.maximum((mu20 - mu02) ** 2 + 4 * mu11**2, 0.0))
        l1 = (mu20 + mu02 + common) / 2
        l2 = np.maximum((mu20 + mu02 - common) / 2, 0.0)
        big = l1 > 1e-12
        eccentricity = np.where(big, np.sqrt(1 - l2 / l1), 0.0)
        axis_ratio = np.where(big, np.sqrt(l2 / l1), 1.0)
    hull, perimeter = np.zeros(n), np.zeros(n)
    for i in np.flatnonzero(has):
        hull[i], perimeter[i] = _contours(crops[i].crop)
    solidity = np.minimum(area / (hull + 0.5 * perimeter + 1.0), 1.0)
    circularity = np.minimum(4 * np.pi * area / (perimeter + np.pi) ** 2, 1.0)
    first = np.concatenate([[0], np.cumsum(count)[:-1]])[has]
    extent = np.zeros(n)
    ext_h = np.maximum.reduceat(ys, first) - np.minimum.reduceat(ys, first) + 1
    ext_w = np.maximum.reduceat(xs, first) - np.minimum.reduceat(xs, first) + 1
    extent[has] = area[has] / (ext_h * ext_w).astype(np.float64)
    hu = _hu(mom["nu"])
    hu_scaled = np.sign(hu) * np.log10(1.0 + np.abs(hu) / 1e-6) / 6.0
    with np.errstate(divide="ignore"):
        log_area = np.log(area) / np.log(1e5) * 2 - 1
    shape = np.concatenate(
        [np.stack([log_area, 2 * eccentricity - 1, 2 * solidity - 1, 2 * extent - 1,
                   2 * circularity - 1, 2 * axis_ratio - 1], axis=1), hu_scaled],
        axis=1,
    )

    # texture: LBP histogram, gradient magnitude mean and std
    lbp_hist = _counts(owner, lbp[ay, ax].astype(np.int64), n, _LBP_BINS).astype(np.float32)
    lbp_hist = lbp_hist / np.maximum(lbp_hist.sum(axis=1, keepdims=True), 1)
    mag_mean, mag_std = mean_std(magnitude[ay, ax])
    texture = np.concatenate(
        [(lbp_hist - 1.0 / _LBP_BINS) * np.sqrt(_LBP_BINS),
         np.stack([np.tanh(mag_mean) * 2 - 1, np.tanh(mag_std) * 2 - 1], axis=1)],
        axis=1,
    )

    parts = [intensity, histogram, shape, texture]
    joined = np.concatenate([p / np.sqrt(p.shape[1]) for p in parts], axis=1)
    out[has] = joined[has].astype(np.float32)
    return out


__all__ = ["describe_objects"]



def lbp_at(g8: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """``(len(ys),)`` uint8: ``skimage.feature.local_binary_pattern(g8, 8, 1, "uniform")`` at
    the pixels ``(ys, xs)`` only.

    skimage's arithmetic, step by step (neighbours at radius 1 bilinearly interpolated in
    float64, zero outside the image, ``neighbour - centre >= 0``, at most two changes
    along the eight bits without the wrap-around), so the codes are the same; objects
    cover a fraction of an image, and the whole-image map was half of the measurements.
    """
    rows, cols = g8.shape
    # zero outside the image (mode 'C'); kept as the 8-bit levels, a fifth of float64's
    # memory on a large image, and each gathered level made float64 (exactly) for the sums
    flat = np.pad(np.asarray(g8, np.uint8), 1).reshape(-1)
    ys, xs = np.asarray(ys, np.int64), np.asarray(xs, np.int64)
    base = (ys + 1) * (cols + 2) + (xs + 1)
    gathered: dict[tuple[int, int], np.ndarray] = {}

    def at(dy: int, dx: int) -> np.ndarray:  # the 3 x 3 neighbourhood, each gathered once
        if (dy, dx) not in gathered:
            gathered[dy, dx] = flat[base + dy * (cols + 2) + dx].astype(np.float64)
        return gathered[dy, dx]

    centre = at(0, 0)
    angles = 2 * np.pi * np.arange(8, dtype=np.float64) / 8
    rp, cp = np.round(-np.sin(angles), 5), np.round(np.cos(angles), 5)
    bits = np.empty((8, len(ys)), np.int8)
    for i in range(8):
        if rp[i] == np.round(rp[i]) and cp[i] == np.round(cp[i]):  # on the grid: the pixel itself
            bits[i] = at(int(rp[i]), int(cp[i])) - centre >= 0
            continue
        dy, dx = int(np.floor(rp[i])), int(np.floor(cp[i]))  # floor(y + rp) = y + floor(rp)
        dr, dc = (ys + rp[i]) - (ys + dy), (xs + cp[i]) - (xs + dx)
        top = (1 - dc) * at(dy, dx) + dc * at(dy, dx + 1)
        bottom = (1 - dc) * at(dy + 1, dx) + dc * at(dy + 1, dx + 1)
        bits[i] = ((1 - dr) * top + dr * bottom) - centre >= 0
    changes = np.abs(np.diff(bits, axis=0)).sum(axis=0)
    return np.where(changes <= 2, bits.sum(axis=0), 9).astype(np.uint8)
