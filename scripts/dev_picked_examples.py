#!/usr/bin/env python
"""The held-out format with the examples a user picks first (development only).

Ten examples from an image and that image detected (images 0-2 of a development set), the
examples being the ten objects that stand out most from a ring around them (grey mean
inside against a 3-pixel ring), as a user who picks the most visible objects gives them;
the examples' own ground truth is left out of the scoring. Run as the package is
(``now``), without the unlabelled-candidate filter, without the contrast floor, and
without both, to see which step the biased examples mislead.

    python scripts/dev_picked_examples.py --sets dev_u2os,dev_rpe1,dev_stroma,dev_rings

``--pick raster``: the first ten objects met scanning the label image's rows from the top
instead, as ``add --labels --limit 10`` took them where the label image is numbered so
(``raster-whole``: whole ones first, as it takes them since session 74);
``--pick largest`` / ``--pick smallest``: the ten largest or smallest whole objects, as a
user who picks by size gives them (``largest-any``: the border's cut objects among them) (``--modes now,sizes off``: with and without the
unlabelled filter's alike objects counted over the sizes the profile admits,
``unlabelled.ALIKE_OVER_ADMITTED``); ``--pick random --seed N``: ten drawn at random, to
compare (``--modes now``: the package only).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def most_contrasted(rgb: np.ndarray, truth, n: int = 10) -> np.ndarray:
    """Indices of the ``n`` objects of ``truth`` whose grey mean differs most from a
    3-pixel ring around them."""
    import cv2

    grey = rgb.mean(axis=2)
    contrast = []
    for i in range(len(truth)):
        m = truth.mask(i)
        ring = cv2.dilate(m.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool) & ~m
        contrast.append(abs(grey[m].mean() - grey[ring].mean()) if ring.any() else 0.0)
    return np.argsort(-np.asarray(contrast))[:n]


def first_in_raster_order(label: np.ndarray, ids: np.ndarray, n: int = 10) -> np.ndarray:
    """Indices of the first ``n`` objects (``ids``: each object's label) met scanning the
    label image's rows from the top: what ``add --labels --limit n`` takes from a label image
    numbered so (``skimage.measure.label``'s order), most of them at the top edge."""
    values, first = np.unique(np.asarray(label).ravel(), return_index=True)
    at = dict(zip(values.tolist(), first.tolist(), strict=True))
    return np.argsort([at[int(i)] for i in ids], kind="stable")[:n]


def whole_first_in_raster_order(label: np.ndarray, ids: np.ndarray, truth, n: int = 10) -> np.ndarray:
    """:func:`first_in_raster_order`, the objects the border cuts after the whole ones: what
    ``add --labels --limit n`` takes since session 74."""
    from sam_detect.unlabelled import cut_in_annotation

    order = first_in_raster_order(label, ids, len(ids))
    return order[np.argsort(cut_in_annotation(truth[order]), kind="stable")][:n]


def by_size(truth, n: int = 10, largest: bool = True, whole: bool = True) -> np.ndarray:
    """Indices of the ``n`` largest (or smallest) objects of ``truth``, of those the image
    border does not cut where ``whole``."""
    from sam_detect.unlabelled import cut_in_annotation

    areas = truth.areas.astype(np.float64)
    if whole:
        areas[cut_in_annotation(truth)] = np.nan
    order = np.argsort(-areas if largest else areas)  # NaN (cut) last either way
    return order[:min(n, int(np.isfinite(areas).sum()))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="dev_u2os,dev_rpe1,dev_stroma,dev_rings")
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--pick", choices=("contrast", "raster", "raster-whole", "largest", "largest-any", "smallest", "random"), default="contrast",
                    help="the ten most contrasted objects (default), the first ten in raster order (whole ones "
                    "first: raster-whole, as add --limit takes them), the ten largest or smallest whole ones, or ten at random")
    ap.add_argument("--seed", type=int, default=0, help="the draw of --pick random")
    ap.add_argument("--count", type=int, default=10, help="examples per image (default 10)")
    ap.add_argument("--modes", default=None, help="comma-separated: now, filter off, floor off, both off, sizes off (default all but sizes off)")
    args = ap.parse_args()
    if args.count < 1:
        ap.error(f"--count must be at least 1, not {args.count}")

    import bench_data

    import sam_detect.profile as profile
    import sam_detect.unlabelled as unlabelled
    from sam_detect import DetectorConfig, SAMDetect
    from sam_detect.eval.metrics import MetricsAccumulator
    from sam_detect.instances import Instances

    dim, applies, over = profile._dim, unlabelled.applies, unlabelled.ALIKE_OVER_ADMITTED
    never = lambda *a: np.zeros(len(a[0]), bool)  # noqa: E731
    modes = {"now": (dim, applies, over), "filter off": (dim, lambda m: False, over),
             "floor off": (never, applies, over), "both off": (never, lambda m: False, over),
             "sizes off": (dim, applies, False)}
    modes = {k: modes[k] for k in args.modes.split(",")} if args.modes else {k: v for k, v in modes.items() if k != "sizes off"}
    config = DetectorConfig(segmenter="classical", embedder="views", store="memory")
    print("| set | " + " | ".join(modes) + " |")
    print("| --- |" + " --- |" * len(modes))
    for name in args.sets.split(","):
        images, gt = getattr(bench_data, name)()
        totals = {k: np.zeros(3) for k in modes}
        for f in range(min(args.images, len(images))):
            rgb = np.asarray(images[f])
            rgb = rgb if rgb.ndim == 3 else np.repeat(rgb[..., None], 3, axis=2)
            truth, ids = Instances.from_label_image(np.asarray(gt[f]))
            truth.labels = np.array(["object"] * len(truth), dtype=object)
            n = args.count
            idx = (most_contrasted(rgb, truth, n) if args.pick == "contrast" else
                   first_in_raster_order(np.asarray(gt[f]), np.asarray(ids), n) if args.pick == "raster" else
                   whole_first_in_raster_order(np.asarray(gt[f]), np.asarray(ids), truth, n) if args.pick == "raster-whole" else
                   by_size(truth, n, largest=args.pick != "smallest", whole=args.pick != "largest-any")
                   if args.pick in ("largest", "largest-any", "smallest") else
                   np.random.default_rng(args.seed).choice(len(truth), size=min(n, len(truth)), replace=False))
            ignore = np.zeros(len(truth), bool)
            ignore[idx] = True
            for key, (d, a, sizes) in modes.items():
                profile._dim, unlabelled.applies, unlabelled.ALIKE_OVER_ADMITTED = d, a, sizes
                try:
                    det = SAMDetect(config)
                    det.add_examples(rgb, truth[idx], annotation=truth)
                    found = det.detect(rgb)
                    det.close()
                finally:
                    profile._dim, unlabelled.applies, unlabelled.ALIKE_OVER_ADMITTED = dim, applies, over
                acc = MetricsAccumulator((0.5,))
                acc.add(found, truth, ignore)
                c = acc.result()[0.5]
                totals[key] += [c.tp, c.fp, c.fn]
        f1 = [2 * t[0] / max(2 * t[0] + t[1] + t[2], 1) for t in totals.values()]
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in f1) + " |", flush=True)


if __name__ == "__main__":
    main()
