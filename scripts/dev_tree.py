#!/usr/bin/env python
"""Would a component tree draw what the full pipeline misses? (development only; session 78)

Runs the full pipeline in a development set's own protocol (one draw, ``--seed``) and sorts
every scored object it misses (no returned object at IoU >= 0.5) by what drew it:

- ``candidate``: an embedded candidate fits it (IoU >= 0.5), and the selection kept another;
- ``dropped``: a candidate fitted it, and a filter dropped it before the vote;
- ``tree``: none of those, but a component of the class's projection above some level does
  (``--levels`` levels evenly from 0.02 of the examples' contrast to the projection's 99.9th
  percentile; the lightly smoothed projection less the examples' ring level, as the
  calibrated segmenter's ``flat`` background sees it; the component's area within the
  examples' size range) -- a component tree, or per-object threshold levels, would offer it;
- the rest: no threshold of that projection draws it alone.

The tree column is a ceiling: it picks each object's best level with the answer in hand.

    python scripts/dev_tree.py --sets dev_rings,dev_stroma [--seed 0] [--levels 64]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def tree_best(x: np.ndarray, gt: np.ndarray, levels: np.ndarray, area_range: tuple[float, float]) -> np.ndarray:
    """``(G,)`` each object of the label image ``gt`` (ids ``1..G``): its best IoU with an
    8-connected component of ``x > t`` over ``levels``, among the components whose area lies
    in ``area_range``."""
    import cv2

    g_n = int(gt.max())
    g_area = np.bincount(gt.ravel(), minlength=g_n + 1).astype(np.float64)
    best = np.zeros(g_n + 1)
    on = gt > 0
    for t in levels:
        n, comp = cv2.connectedComponents((x > t).astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
        if n <= 1:
            continue
        c_area = np.bincount(comp.ravel(), minlength=n).astype(np.float64)
        both = on & (comp > 0)
        pair, inter = np.unique(gt[both].astype(np.int64) * n + comp[both], return_counts=True)
        g, k = pair // n, pair % n
        iou = inter / (g_area[g] + c_area[k] - inter)
        iou[(c_area[k] < area_range[0]) | (c_area[k] > area_range[1])] = 0.0
        np.maximum.at(best, g, iou)
    return best[1:]


def screen(name: str, seed: int, n_levels: int) -> dict:
    from bench_examples import protocol_runs
    from skimage.segmentation import relabel_sequential

    from sam_detect import DetectorConfig
    from sam_detect.eval.inputs import load_eval_image
    from sam_detect.eval.protocol import evaluate
    from sam_detect.profile import scale_of
    from sam_detect.segment.calibrated import SMOOTHS, Prepared

    config = DetectorConfig(segmenter="classical", embedder="views", store="memory")
    runs, _, _ = protocol_runs(name)
    out = {"scored": 0, "missed": 0, "candidate": 0, "dropped": 0, "tree": 0, "tree_0.7": 0, "none": 0}
    for images, truth, protocol in runs:
        res = evaluate(images, truth, config, seed=seed, label="object", progress=False, overlays=0, **protocol)
        for rec, f in zip(res.records, protocol["detect_on"], strict=True):
            # ids 1..G in ascending order of the label image's own: the records' ground-truth order
            gt = relabel_sequential(np.asarray(truth[f]))[0]
            entry = next(iter(rec.profile["classes"].values()))
            scale = scale_of(entry)
            x = Prepared(load_eval_image(images[f]).rgb, scale, SMOOTHS[0]).resid("flat")
            levels = np.linspace(0.02 * scale.contrast, float(np.percentile(x, 99.9)), n_levels)
            tree = tree_best(x, gt, levels, (scale.min_area, scale.max_area))
            scored = ~rec.ignore
            found = rec.out_iou.max(axis=0) if rec.out_iou.size else np.zeros(len(scored))
            cand = rec.iou.max(axis=0) if rec.iou.size else np.zeros(len(scored))
            drop = rec.dropped_best if rec.dropped_best is not None else np.zeros(len(scored))
            missed = scored & (found < 0.5)
            by_cand = missed & (cand >= 0.5)
            by_drop = missed & ~by_cand & (drop >= 0.5)
            rest = missed & ~by_cand & ~by_drop
            out["scored"] += int(scored.sum())
            out["missed"] += int(missed.sum())
            out["candidate"] += int(by_cand.sum())
            out["dropped"] += int(by_drop.sum())
            out["tree"] += int((rest & (tree >= 0.5)).sum())
            out["tree_0.7"] += int((rest & (tree >= 0.7)).sum())
            out["none"] += int((rest & (tree < 0.5)).sum())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="dev_rings,dev_stroma,dev_neurocyte,dev_macrophage,dev_u2os,dev_rpe1,dev_membrane")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--levels", type=int, default=64)
    ap.add_argument("--json", default=None, help="write the counts here")
    args = ap.parse_args()
    import bench_data

    sets = args.sets.split(",")
    unknown = [name for name in sets if name not in bench_data.DEV]
    if unknown:
        ap.error(f"--sets takes development sets: {', '.join(unknown)} is not one of {', '.join(bench_data.DEV)}")
    results = {}
    print("| set | scored | missed | a candidate fits, not kept | dropped by a filter | only a tree draws it "
          "(IoU >= 0.7) | nothing draws it |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in sets:
        r = results[name] = screen(name, args.seed, args.levels)
        print(f"| `{name}` | {r['scored']} | {r['missed']} | {r['candidate']} | {r['dropped']} | "
              f"{r['tree']} ({r['tree_0.7']}) | {r['none']} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
