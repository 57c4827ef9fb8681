"""Where the ``sam2`` segmenter's guided mode prompts: points inside classical objects,
blob centres, and peaks of the examples' similarity maps (numpy, OpenCV, scikit-image;
no torch)."""

from __future__ import annotations

import numpy as np

from sam_detect.instances import Instances


def inner_points(inst: Instances) -> np.ndarray:
    """One point deep inside each instance: the maximum of its distance transform.
    ``(N, 2)`` float32 XY pixels."""
    import cv2

    pts = np.zeros((len(inst), 2), dtype=np.float32)
    for i in range(len(inst)):
        x1, y1, x2, y2 = (int(v) for v in inst.boxes[i])
        crop = np.pad(inst.mask_region(i, x1, y1, x2, y2), 1).astype(np.uint8)
        dist = cv2.distanceTransform(crop, cv2.DIST_L2, 3)
        r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
        pts[i] = (x1 + c - 1 + 0.5, y1 + r - 1 + 0.5)
    return pts


def blob_points(image: np.ndarray, threshold: float) -> np.ndarray:
    """Laplacian-of-Gaussian blob centres (on a copy at most 512 px on its longer side):
    ``(P, 2)`` float32 XY pixels of ``image`` ``(H, W, 3)`` uint8; ``threshold``: the LoG
    response threshold (intensity in 0..1)."""
    import cv2
    from skimage.feature import blob_log

    from sam_detect.io.render import tinted_channel

    c = tinted_channel(image)  # a DAPI frame in blue: its channel, not a third of it
    gray = (image[..., c].astype(np.float32) if c is not None else image.astype(np.float32).mean(axis=2)) / 255.0
    h, w = gray.shape
    f = max(1.0, max(h, w) / 512.0)
    small = (
        cv2.resize(
            gray, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA
        )
        if f > 1
        else gray
    )
    if float(small.mean()) < float(np.median(small)):  # left-skewed: dark objects on bright
        small = 1.0 - small
    blobs = blob_log(
        small, min_sigma=1.5, max_sigma=12, num_sigma=6, threshold=threshold
    )
    if len(blobs) == 0:
        return np.zeros((0, 2), dtype=np.float32)
    sx, sy = w / small.shape[1], h / small.shape[0]
    return np.stack([(blobs[:, 1] + 0.5) * sx, (blobs[:, 0] + 0.5) * sy], axis=1).astype(
        np.float32
    )


def similarity_peaks(
    maps: dict[str, np.ndarray], hw: tuple[int, int], min_distance: float, threshold: float,
    max_peaks: int,
) -> tuple[np.ndarray, list[str]]:
    """Peaks of each label's ``(g, g)`` similarity map above ``threshold``, at most
    ``max_peaks`` per label and ``min_distance`` image pixels apart: ``(P, 2)`` float32 XY
    pixels of an image of size ``hw``, and each point's label.

    Peaks are found on the feature grid and placed inside their cell by a parabola
    through the neighbouring values (per axis), so objects smaller than a cell still
    get a point on them.
    """
    from skimage.feature import peak_local_max

    h, w = hw
    pts, labels = [], []
    for lab, sim in maps.items():
        gh, gw = sim.shape
        cell = min(h / gh, w / gw)
        peaks = peak_local_max(
            sim,
            min_distance=max(1, int(round(min_distance / cell))),
            threshold_abs=threshold,
            exclude_border=False,
            num_peaks=max_peaks,
        )
        if len(peaks) == 0:
            continue
        r, c = peaks[:, 0], peaks[:, 1]
        dy = parabola_offset(
            sim[np.maximum(r - 1, 0), c], sim[r, c], sim[np.minimum(r + 1, gh - 1), c]
        )
        dx = parabola_offset(
            sim[r, np.maximum(c - 1, 0)], sim[r, c], sim[r, np.minimum(c + 1, gw - 1)]
        )
        xy = np.stack([(c + 0.5 + dx) * (w / gw), (r + 0.5 + dy) * (h / gh)], axis=1)
        pts.append(xy.astype(np.float32))
        labels += [lab] * len(peaks)
    if not pts:
        return np.zeros((0, 2), dtype=np.float32), []
    return np.concatenate(pts), labels


def parabola_offset(left: np.ndarray, mid: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Sub-cell offset in ``[-0.5, 0.5]`` of a peak from its neighbours (parabola vertex)."""
    den = left - 2.0 * mid + right
    with np.errstate(divide="ignore", invalid="ignore"):
        off = np.where(den < 0, 0.5 * (left - right) / den, 0.0)
    return np.clip(np.nan_to_num(off), -0.5, 0.5)


def dedupe_points(points: np.ndarray, min_distance: float) -> np.ndarray:
    """Indices of points kept in order, dropping any closer than ``min_distance`` to a kept one."""
    if len(points) == 0 or min_distance <= 0:
        return np.arange(len(points))
    from scipy.spatial import cKDTree

    tree = cKDTree(points)
    dropped = np.zeros(len(points), dtype=bool)
    keep = []
    for i in range(len(points)):
        if dropped[i]:
            continue
        keep.append(i)
        for j in tree.query_ball_point(points[i], r=min_distance):
            if j > i:
                dropped[j] = True
    return np.asarray(keep, dtype=np.int64)
