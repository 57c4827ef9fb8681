#!/usr/bin/env python
"""Large objects at the working scale (``segment/calibrated.WORK_RADIUS``): what the add of
ten examples and a detect cost, and what they find, with the settings tried and proposing
at the working scale against at the image's own scale, in the same run.

Development sets only, in the held-out format (10 examples from an image, that image
scored, seeds 0 and 1), each shown at its own size and enlarged (``--factors``): a set's
objects enlarged 2x have 4x the pixels, and at the image's own scale the add's cost grows
with them. Per set and factor: the pooled F1 at IoU 0.5, the matched objects' mean IoU, and
the medians of the add (``SAMDetect.add_examples``: embedding and measuring the examples)
and of the whole ``detect``, both ways run back to back on each image.

    python scripts/bench_zoom.py [--sets dev_piles:5,dev_macrophage:3] [--factors 1,2] [--out F]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="dev_piles:5,dev_macrophage:3", help="NAME:IMAGES, comma-separated")
    ap.add_argument("--factors", default="1,2", help="enlargements, comma-separated")
    ap.add_argument("--out", default=None, help="JSON file for the figures")
    args = ap.parse_args()

    import bench_data
    import cv2

    from sam_detect import DetectorConfig
    from sam_detect.eval.protocol import evaluate
    from sam_detect.pipeline import SAMDetect
    from sam_detect.segment import calibrated

    work = calibrated.WORK_RADIUS
    add_s: list[float] = []
    original_add = SAMDetect.add_examples

    def timed_add(self, *a, **k):
        t = time.perf_counter()
        try:
            return original_add(self, *a, **k)
        finally:
            add_s.append(time.perf_counter() - t)

    SAMDetect.add_examples = timed_add
    config = DetectorConfig(segmenter="classical", embedder="views", store="memory")
    modes = {f"working scale (radius {work:g})": work, "image's own scale": float("inf")}
    rows = []
    for spec in args.sets.split(","):
        name, n = spec.split(":")
        images, gts = bench_data.load(name)
        for factor in (float(f) for f in args.factors.split(",")):
            tally = {m: {"tp": 0, "fp": 0, "fn": 0, "iou": [], "add": [], "detect": [], "f1": []} for m in modes}
            for k in range(int(n)):
                img, lab = np.asarray(images[k]), np.asarray(gts[k]).astype(np.int32)
                if factor != 1:
                    img = cv2.resize(img, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
                    lab = cv2.resize(lab, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)
                for seed in (0, 1):
                    for mode, radius in modes.items():
                        calibrated.WORK_RADIUS = radius
                        add_s.clear()
                        res = evaluate([img], [lab], config, seed=seed, shots=10, examples_from=[0], detect_on=[0],
                                       label="object", curve_thresholds=(), overlays=0, progress=False)
                        t, m = tally[mode], res.metrics[0.5]
                        t["tp"], t["fp"], t["fn"] = t["tp"] + m.tp, t["fp"] + m.fp, t["fn"] + m.fn
                        t["f1"].append(round(m.f1, 4))
                        out_iou = res.records[0].out_iou
                        if out_iou.size:
                            best = out_iou.max(axis=1)
                            t["iou"].extend(best[best >= 0.5].tolist())
                        t["add"].append(sum(add_s))
                        t["detect"].append(res.records[0].timings.get("total", float("nan")))
            calibrated.WORK_RADIUS = work
            for mode, t in tally.items():
                row = {"set": name, "factor": factor, "mode": mode,
                       "f1": round(2 * t["tp"] / max(2 * t["tp"] + t["fp"] + t["fn"], 1), 4),
                       "matched_iou": round(float(np.mean(t["iou"])) if t["iou"] else 0.0, 4),
                       "add_s": round(statistics.median(t["add"]), 2), "detect_s": round(statistics.median(t["detect"]), 2),
                       "runs_f1": t["f1"]}
                rows.append(row)
                print(f"| {name} x{factor:g} | {mode} | {row['f1']:.3f} | {row['matched_iou']:.3f} | "
                      f"{row['add_s']:.1f} | {row['detect_s']:.2f} |", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
