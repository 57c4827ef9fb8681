#!/usr/bin/env python
"""The development set behind the calibrated proposals' constants (not a reported benchmark).

The constants of ``sam_detect/segment/calibrated.py`` (levels, trims, split strengths and
ways, the Occam margin), of ``sam_detect/profile.py`` (the prior size spread, the
Student-t size fit, ``MIN_FIT``) and of ``sam_detect/select.py`` (``FIT_WEIGHT``,
``MAX_OVERLAP``) were chosen on the synthetic fields this script draws -- four kinds,
seeds 0-2 -- and on nothing that docs/performance.md reports. Session 5 added two real
development sets, ``dev_mnfinder`` and ``dev_stroma`` (``scripts/bench_data.py``: other
images than any reported set); ``SEPARATE_EDGE`` (select.py) was chosen on them and on
these fields, ``SPREAD_SHRINK`` (profile.py) on ``dev_stroma`` and on synthetic stained
fields (tests/test_profile.py); session 8's split-when-tied rule (``SPLIT_TIE``, profile.py)
on the four development sets and these fields (``scripts/dev_selection.py``). Reported data sets: see ``scripts/bench_examples.py``.

Kinds (384 x 384, elliptic objects of radius 6-14 px, blurred, with Gaussian noise):

- ``sparse``: 25 % foreground, object brightness 0.25-1.0 of the maximum, a left-to-right
  background ramp;
- ``dense``: 55 % foreground, touching objects, brightness 0.6-1.0;
- ``dark``: the sparse kind inverted (dark objects on a bright ground);
- ``flat``: 30 % foreground, no ramp, brightness 0.5-1.0.

For each image 10 ground-truth objects are the examples; the calibrated candidates are
selected by profile fit and stability alone (``--pipeline``: the whole pipeline with an embedder), and F1
at IoU 0.5 is printed per kind, with the default segmenter's for reference.

    python scripts/tune_calibrated.py
    python scripts/tune_calibrated.py --pipeline --embedder effnet
"""

from __future__ import annotations

import argparse

import numpy as np

KINDS = {
    "sparse": dict(frac=0.25),
    "dense": dict(frac=0.55, dim=(0.6, 1.0)),
    "dark": dict(frac=0.3, bright=False),
    "flat": dict(frac=0.3, grad=0, dim=(0.5, 1.0)),
}


def field(seed: int = 0, size: int = 384, frac: float = 0.3, r=(6, 14), dim=(0.25, 1.0), grad: float = 60,
          noise: float = 5, bright: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(image (H, W) uint8, labels (H, W) int32)`` of one synthetic field."""
    import cv2

    rng = np.random.default_rng(seed)
    lab = np.zeros((size, size), np.int32)
    yy, xx = np.mgrid[:size, :size]
    k = tries = 0
    while (lab > 0).mean() < frac and tries < 8000:
        tries += 1
        cy, cx = rng.uniform(0, size, 2)
        a = rng.uniform(*r)
        b = a * rng.uniform(0.6, 1.0)
        th = rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)
        v = -(xx - cx) * np.sin(th) + (yy - cy) * np.cos(th)
        m = (u / a) ** 2 + (v / b) ** 2 <= 1
        if (lab[m] > 0).mean() > 0.1:
            continue
        k += 1
        lab[m & (lab == 0)] = k
    amp = np.r_[0, rng.uniform(*dim, k)] * 120
    dist = cv2.distanceTransform((lab > 0).astype(np.uint8), cv2.DIST_L2, 3)
    centre = np.clip(dist / 4, 0, 1) * 0.4 + 0.6  # objects brighter in their middle
    img = 30 + grad * (xx / size) + amp[lab] * centre * (lab > 0)
    img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 1.2) + rng.normal(0, noise, img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    return (img if bright else 255 - img), lab


def f1(pred, gt, thr: float = 0.5) -> float:
    from sam_detect.eval.matching import match_iou_matrix
    from sam_detect.eval.metrics import instances_iou

    if len(pred) == 0 or len(gt) == 0:
        return 0.0
    m = match_iou_matrix(instances_iou(pred, gt), thr)
    return 2 * m.tp / (len(pred) + len(gt))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline", action="store_true", help="the whole pipeline instead of fit-only selection")
    ap.add_argument("--embedder", default="effnet")
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()

    from sam_detect import DetectorConfig, SAMDetect
    from sam_detect.instances import Instances
    from sam_detect.profile import build_profile, describe_examples, fit_scores
    from sam_detect.segment import create_segmenter
    from sam_detect.select import quality, select

    default = create_segmenter("classical")
    for kind, kw in KINDS.items():
        rows = []
        for seed in range(args.seeds):
            img, lab = field(seed, **kw)
            gt, _ = Instances.from_label_image(lab)
            idx = np.random.default_rng(seed).choice(len(gt), 10, replace=False)
            ex = gt[idx]
            ex.labels[:] = ["obj"] * len(ex)
            rgb = np.repeat(img[..., None], 3, axis=2)
            rest = gt[np.setdiff1d(np.arange(len(gt)), idx)]
            if args.pipeline:
                det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder=args.embedder))
                det.add_examples(rgb, ex)
                ours = f1(det.detect(rgb), rest)
            else:
                prof = build_profile([("obj", s) for s in describe_examples(rgb, ex, ["obj"] * len(ex))])
                cand = default.segment(rgb, profile=prof)
                fit = fit_scores(cand, ["obj"] * len(cand), prof)
                ours = f1(cand[select(cand, quality(cand, np.ones(len(cand)), fit))], rest)
            rows.append((ours, f1(default.segment(rgb), rest)))
        mean = np.mean(rows, axis=0)
        print(f"{kind:7s} calibrated F1 {mean[0]:.3f}   default segmenter F1 {mean[1]:.3f}")


if __name__ == "__main__":
    main()
