#!/usr/bin/env python
"""Examples on one objective, detection on another (development only): ten examples from a
development set's first frame at its own magnification, its next frames shown at each factor
(``--factors``: 2.6 is a 2.6x stronger objective, the objects 6.8x the examples' area), scored
with the segmenter alone (its own settings, every candidate accepted) and the full pipeline;
with ``--compare``, also with the probes for objects far off the examples' size switched off
(``profile.PROBE_SHIFT`` = 0: the code before them), in the same run.

    python scripts/dev_magnification.py                              # dev_u2os, 11 factors
    python scripts/dev_magnification.py --factors 2.6,0.3 --compare --out F
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", default="dev_u2os", help="a development set of bench_data (default dev_u2os)")
    ap.add_argument("--factors", default="1,1.8,2.2,2.6,3,3.5,4,0.5,0.4,0.3,0.25")
    ap.add_argument("--frames", type=int, default=3, help="frames scored after the example frame (default 3)")
    ap.add_argument("--compare", action="store_true", help="also run without the probes (PROBE_SHIFT = 0)")
    ap.add_argument("--out", default=None, help="JSON file for the figures")
    args = ap.parse_args()

    import bench_data

    from sam_detect import DetectorConfig
    from sam_detect import profile as P
    from sam_detect.eval.protocol import examples_worth

    if args.set not in bench_data.DEV:
        raise SystemExit(f"--set takes a development set: {', '.join(bench_data.DEV)}")
    images, labels = (list(v) for v in bench_data.load(args.set))
    config = DetectorConfig(segmenter="classical", embedder="views", store="memory")
    probe = P.PROBE_SHIFT
    modes = ["full pipeline"] + (["without the probes"] if args.compare else [])
    print(f"| shown at | {args.set}: segmenter alone | " + " | ".join(modes) + " |")
    print("| --- | --- |" + " --- |" * len(modes))
    out = {}
    for z in (float(f) for f in args.factors.split(",")):
        ims, labs = [images[0]], [labels[0]]
        for k in range(1, 1 + args.frames):
            img, lab = bench_data.rescale(images[k], labels[k], z)
            ims.append(img)
            labs.append(lab)
        row = {}
        for mode in modes:
            P.PROBE_SHIFT = probe if mode == "full pipeline" else 0.0
            try:
                worth = examples_worth(ims, labs, config, shots=10, examples_from=[0],
                                       detect_on=list(range(1, 1 + args.frames)), seed=0, label="object",
                                       curve_thresholds=(), overlays=0, progress=False)
            finally:
                P.PROBE_SHIFT = probe
            for key, m in (("segmenter alone", worth.segmenter_alone[0.5]), (mode, worth.full.metrics[0.5])):
                row[key] = dict(f1=round(2 * m.tp / max(2 * m.tp + m.fp + m.fn, 1), 4), tp=m.tp, fp=m.fp, fn=m.fn)
        out[z] = row
        cells = " | ".join(f"{row[m]['f1']:.3f} (FP {row[m]['fp']})" for m in modes)
        print(f"| {z:g}x | {row['segmenter alone']['f1']:.3f} | {cells} |", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"set": args.set, "frames": args.frames, "f1": out}, indent=1) + "\n")


if __name__ == "__main__":
    main()
