#!/usr/bin/env python
"""A pixel classifier trained on the examples, tried against ``detect`` (development only).

The protocol of ``dev_patches.py`` (three random 256 x 256 patches per draw, 16 examples
from the first two, the third scored; one class). Per draw, a random forest learns the
examples' pixels against a ring of their surroundings (one median radius wide) on
``skimage.feature.multiscale_basic_features`` (colour, gradient and Hessian features at 5
scales from 0.7 px to the examples' median radius), then:

- ``filter`` (default): ``detect``'s objects are kept only where the forest's probability
  under the object's mask (``--stat``: mean, median, or mean over the mask eroded by a third
  of the radius) reaches each of ``--thresholds``; threshold 0 is ``detect`` itself, in
  either filter;
- ``--filter level`` (no forest): ``detect``'s objects are kept only where their median
  level along the profile's colour direction reaches the examples' ring level plus each
  threshold x their contrast (0.5: nearer the examples' insides than their surroundings;
  since session 22 ``detect`` itself applies 0.5 to dark, coloured classes before the vote,
  ``profile.LEVEL_FLOOR``, so threshold 0 includes it on H&E);
- ``--alone``: the forest segments by itself (probability > each threshold, holes filled,
  a 3 x 3 opening, connected components under 0.3 pi r^2 dropped): no proposals, no vote.

F1 @ 0.5 is pooled over the draws (matched, found and annotated objects summed), as well as
the mean over draws for ``--alone`` (``dev_patches.py`` prints the mean).

    python scripts/dev_pixels.py --seeds 0,1                  # H&E stroma crop
    python scripts/dev_pixels.py --seeds 0,1 --set dev_u2os   # fluorescent nuclei
    python scripts/dev_pixels.py --alone --thresholds 0.5,0.7
    python scripts/dev_pixels.py --filter level --thresholds 0,0.5,0.6

Needs ``scikit-learn`` (not a dependency of sam-detect: ``pip install scikit-learn``) and,
for the H&E crop, ``pyarrow``. docs/performance.md, "Session 21", has the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def features(im: np.ndarray, radius: float, kind: str) -> np.ndarray:
    from skimage.feature import multiscale_basic_features

    if im.ndim == 2:
        im = im[..., None]
    im = im.astype(np.float32) / max(1.0, float(im.max()))
    return multiscale_basic_features(im, channel_axis=-1, intensity=kind != "nointensity",
                                     edges=kind != "intensity", texture=kind != "intensity",
                                     sigma_min=0.7, sigma_max=max(2.0, radius), num_sigma=5)


def forest(xs: list, ys: list):
    try:
        from sklearn.ensemble import RandomForestClassifier
    except ImportError:
        raise SystemExit("dev_pixels.py needs scikit-learn: pip install scikit-learn") from None
    return RandomForestClassifier(50, max_depth=10, class_weight="balanced", n_jobs=2,
                                  random_state=0).fit(np.concatenate(xs), np.concatenate(ys))


def segment_alone(p: np.ndarray, threshold: float, radius: float):
    from scipy import ndimage as ndi

    from sam_detect.instances import Instances

    fg = ndi.binary_opening(ndi.binary_fill_holes(p > threshold), np.ones((3, 3)))
    cc, _ = ndi.label(fg)
    area = np.bincount(cc.ravel())
    keep = area >= 0.3 * np.pi * radius * radius
    keep[0] = False
    return Instances.from_label_image(np.where(keep[cc], cc, 0))[0]


def stat_of(p: np.ndarray, mask: np.ndarray, how: str, radius: float) -> float:
    from scipy import ndimage as ndi

    if how == "median":
        return float(np.median(p[mask]))
    if how == "core":
        core = ndi.binary_erosion(mask, iterations=max(1, int(round(radius / 3))))
        return float(p[core].mean()) if core.any() else float(p[mask].mean())
    return float(p[mask].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", default=None, help="a development set of bench_data instead of the H&E stroma crop")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--thresholds", default="0,0.4,0.5,0.6")
    ap.add_argument("--stat", default="mean", choices=["mean", "median", "core"])
    ap.add_argument("--features", default="all", choices=["all", "nointensity", "intensity"])
    ap.add_argument("--alone", action="store_true", help="the forest segments by itself")
    ap.add_argument("--filter", default="forest", choices=["forest", "level"],
                    help="what filters detect's objects: the forest's probability, or the level along the profile's direction")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.alone and args.filter == "level":
        ap.error("--alone segments with the forest; --filter level filters detect's objects: choose one")
    use_forest = args.alone or args.filter == "forest"

    import dev_patches as dp
    from scipy import ndimage as ndi

    from sam_detect import DetectorConfig, SAMDetect
    from sam_detect.eval.inputs import draw_examples
    from sam_detect.eval.matching import match_iou_matrix
    from sam_detect.eval.metrics import instances_iou

    if args.set:
        import bench_data

        if args.set not in bench_data.DEV:
            raise SystemExit(f"--set takes a development set: {', '.join(bench_data.DEV)}")
        image, label = (list(v) for v in bench_data.load(args.set))
    else:
        image, label, _ = dp.crop("stroma")
    thresholds = [float(t) for t in args.thresholds.split(",")]
    config = DetectorConfig(segmenter="classical", embedder="views", store="memory")
    sums = {t: [0, 0, 0] for t in thresholds}
    per_draw = {t: [] for t in thresholds}
    t0 = time.perf_counter()
    for seed in [int(s) for s in args.seeds.split(",")]:
        for d in range(6 if seed == 0 else 10):
            ims, labs = dp.patches(image, label, np.random.default_rng(seed * 1000 + d))
            if not (labs[2] > 0).any():
                continue
            gt = [dp.ground_truth(lab, {}, False) for lab in labs]
            drawn = draw_examples([list(g.labels) for g in gt[:2]] + [[]], 16, d, [0, 1])
            radius = float(np.median([np.sqrt(gt[i].areas[j] / np.pi) for i, idx in drawn.items() for j in idx]))
            xs, ys = [], []
            det = None if args.alone else SAMDetect(config)
            for i, idx in drawn.items():
                if det is not None:
                    det.add_examples(ims[i], gt[i][np.asarray(idx)])
                if not use_forest:
                    continue
                ex = np.zeros(labs[i].shape, bool)
                for j in idx:
                    ex |= gt[i].mask(int(j))
                f = features(ims[i], radius, args.features)
                ring = ndi.binary_dilation(ex, iterations=max(2, int(round(radius)))) & ~ndi.binary_dilation(ex, iterations=1)
                xs += [f[ex], f[ring]]
                ys += [np.ones(int(ex.sum())), np.zeros(int(ring.sum()))]
            found = det.detect(ims[2]) if det is not None else None
            if not use_forest:
                e = det.profile["classes"]["nucleus"]
                x = det._load(ims[2]).rgb.astype(np.float32) @ np.asarray(e["direction"], np.float32)
                score = np.array([(np.median(x[found.mask(k)]) - e["ring_level"]) / e["contrast"]
                                  for k in range(len(found))])
            else:
                model = forest(xs, ys)
                f = features(ims[2], radius, args.features)
                p = model.predict_proba(f.reshape(-1, f.shape[-1]))[:, 1].reshape(f.shape[:2])
                score = np.array([stat_of(p, found.mask(k), args.stat, radius) for k in range(len(found))]) \
                    if found is not None else None
            for t in thresholds:
                if found is None:
                    out = segment_alone(p, t, radius)
                else:  # threshold 0: detect's own objects, unfiltered
                    out = found if t <= 0 else found[np.flatnonzero(score >= t)]
                n_out, n_gt = len(out), len(gt[2])
                m = len(match_iou_matrix(instances_iou(out, gt[2]), 0.5).pairs) if n_out and n_gt else 0
                for k, v in enumerate((m, n_out, n_gt)):
                    sums[t][k] += v
                per_draw[t].append(2 * m / (n_out + n_gt) if n_out + n_gt else 0.0)
            if det is not None:
                det.close()
    rows = []
    for t in thresholds:
        m, o, g = sums[t]
        row = dict(threshold=t, f1=2 * m / (o + g), precision=m / max(o, 1), recall=m / g,
                   mean_f1=float(np.mean(per_draw[t])), draws=len(per_draw[t]))
        rows.append(row)
        how = "alone" if args.alone else ("level" if args.filter == "level" else f"{args.stat} {args.features}")
        print(f"{args.set or 'stroma'} {how} threshold {t}: "
              f"pooled F1 {row['f1']:.3f} P {row['precision']:.3f} R {row['recall']:.3f}; "
              f"mean F1 {row['mean_f1']:.3f} ({row['draws']} draws)")
    print(f"{time.perf_counter() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
