#!/usr/bin/env python
"""The unlabelled-candidate filter on and off, draw by draw (development only).

``dev_patches.py``'s held-out histology format (three 256 x 256 patches per draw, 16
examples per class from the first two, the third scored; one class). Per draw the library
is built once, and ``detect`` runs twice: with the filter of ``sam_detect.unlabelled`` used
(whatever its gate says) and not used. The model's statistics are printed beside it (label
frequency ``c``, out-of-fold separation and its ``z``, examples proposed), so that any gate
can be scored afterwards without running the pipeline again: the table at the end scores
today's gate and a few others on the same runs.

    python scripts/dev_unlabelled.py                        # stroma crop, 36 draws
    python scripts/dev_unlabelled.py --set dev_u2os --seeds 0,1 --json u2os.json

``--crop nest`` is the reported HGSC tumour nest: look at it only after a choice has been
made (docs/performance.md, session 31).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def run_draw(image, label, class_of, seed: int, d: int, config) -> dict | None:
    import dev_patches as dp

    import sam_detect.unlabelled as unlabelled
    from sam_detect import SAMDetect
    from sam_detect.eval.inputs import draw_examples
    from sam_detect.eval.matching import match_iou_matrix
    from sam_detect.eval.metrics import instances_iou

    ims, labs = dp.patches(image, label, np.random.default_rng(seed * 1000 + d))
    if not (labs[2] > 0).any():
        return None
    gt = [dp.ground_truth(lab, class_of, False) for lab in labs]
    drawn = draw_examples([list(g.labels) if i < 2 else [] for i, g in enumerate(gt)], 16, d, [0, 1])
    det = SAMDetect(config)
    for i, idx in drawn.items():
        if len(idx):
            det.add_examples(ims[i], gt[i][np.asarray(idx, int)], ["nucleus"] * len(idx))
    model = det.unlabelled_model or {}
    row = dict(seed=seed, draw=d, gt=len(gt[2]), gate=bool(unlabelled.applies(model)),
               c=float(model.get("c", 0.0)), separation=float(model.get("separation", 0.0)),
               z=float(model.get("separation_z", 0.0)), labelled=int(model.get("labelled", 0)),
               unlabelled=int(model.get("unlabelled", 0)))
    applies = unlabelled.applies
    try:
        for mode, used in (("on", bool(model)), ("off", False)):
            unlabelled.applies = lambda m, used=used: used  # read by detect at call time
            out = det.detect(ims[2])
            tp = len(match_iou_matrix(instances_iou(out, gt[2]), 0.5).pairs) if len(out) else 0
            row[mode] = dict(found=len(out), tp=tp, f1=2 * tp / max(len(out) + len(gt[2]), 1))
    finally:
        unlabelled.applies = applies
        det.close()
    return row


def gates() -> dict:
    """Gates to score on the recorded draws: ``row -> bool`` (the filter used)."""
    from sam_detect.unlabelled import MIN_LABEL_FREQUENCY, MIN_LABELLED_OBJECTS

    def gate(separation: float, z: float):
        return lambda r: (r["c"] >= MIN_LABEL_FREQUENCY and r["labelled"] >= MIN_LABELLED_OBJECTS
                          and r["separation"] >= separation and r["z"] >= z)

    return {"today": lambda r: r["gate"], "separation >= 0.7, z >= 2": gate(0.7, 2.0),
            "separation >= 0.6": gate(0.6, -np.inf), "no separation test": gate(-np.inf, -np.inf),
            "never": lambda r: False}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crop", default="stroma", choices=["stroma", "nest"])
    ap.add_argument("--set", default=None, help="a development set of bench_data instead of a crop")
    ap.add_argument("--seeds", default="0,1,2,3", help="comma-separated draw seeds")
    ap.add_argument("--json", default=None, help="write the per-draw rows here")
    args = ap.parse_args()

    import dev_patches as dp

    from sam_detect import DetectorConfig

    config = DetectorConfig(segmenter="classical", embedder="views", store="memory")
    image, label, class_of = dp.source(args.crop, args.set)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for d in range(6 if seed == 0 else 10):
            row = run_draw(image, label, class_of, seed, d, config)
            if row is not None:
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"\n{len(rows)} draws: mean F1 with the filter on where the gate says so")
    for name, used in gates().items():
        f1 = np.mean([r["on"]["f1"] if used(r) else r["off"]["f1"] for r in rows]) if rows else 0.0
        print(f"  {name}: {f1:.3f} (used in {sum(bool(used(r)) for r in rows)})")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
