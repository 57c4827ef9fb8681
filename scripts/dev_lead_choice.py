#!/usr/bin/env python
"""How much the lead setting's choice can still give, and whether the example images'
whole annotation would choose it better (development only; session 93).

``dev_patches.py``'s protocol (three random 256 x 256 patches; 16 examples per class from
the first two, the third scored; ``--set NAME`` cuts them from a fluorescence development
set instead). For each draw the library's top ``--k`` settings by reproduction IoU (the
better of drawn and inset, what ``profile._settings`` chooses among) are each forced to
lead in turn (``profile._alternatives`` wrapped: the forced setting ranked first, the
alternatives chosen beside it as usual), and ``detect`` runs on the two example patches
(scored against their whole annotation, examples included, ``keep_examples=False``) and on
the scored patch. Printed per draw and as means over the draws:

- ``default``: the library as built (what ``dev_patches.py`` scores);
- ``by-ex-F1``: the forced lead with the best F1 on the example patches (ties: the better
  reproduction) -- a rule that would need the example images' whole annotation at ``add``;
- ``oracle``: the forced lead with the best F1 on the scored patch (a ceiling, not a rule).

    python scripts/dev_lead_choice.py --seeds 0,1            # the H&E stroma crop
    python scripts/dev_lead_choice.py --set dev_rpe1 --seeds 0,1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", default=None, help="a development set of bench_data (fluorescence) instead of the stroma crop")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--k", type=int, default=8, help="settings forced to lead, by reproduction (default 8)")
    ap.add_argument("--json", default=None, help="write every draw's rows here")
    args = ap.parse_args()

    import dev_patches as dp

    import sam_detect.profile as prof
    from sam_detect import DetectorConfig, SAMDetect
    from sam_detect.eval.inputs import draw_examples
    from sam_detect.eval.matching import match_iou_matrix
    from sam_detect.eval.metrics import instances_iou

    original = prof._alternatives
    state: dict = {"force": None, "seen": []}

    def forced(mean_iou: np.ndarray) -> list[int]:
        state["seen"].append(np.asarray(mean_iou, np.float64).copy())
        if state["force"] is None:
            return original(mean_iou)
        m = np.asarray(mean_iou, np.float64).copy()
        m[state["force"]] = m.max() + 1.0
        return original(m)

    prof._alternatives = forced

    def counts(found, gt) -> np.ndarray:
        tp = len(match_iou_matrix(instances_iou(found, gt), 0.5).pairs) if len(found) and len(gt) else 0
        return np.array([tp, len(found) - tp, len(gt) - tp])

    def f1(c) -> float:
        return 2 * c[0] / max(2 * c[0] + c[1] + c[2], 1)

    image, label, class_of = dp.source("stroma", args.set)
    config = DetectorConfig(segmenter="classical", embedder="views", store="memory", library="lead", keep_examples=False)
    out = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for d in range(6 if seed == 0 else 10):
            ims, labs = dp.patches(image, label, np.random.default_rng(seed * 1000 + d))
            if not (labs[2] > 0).any():
                continue
            gt = [dp.ground_truth(lab, class_of, False) for lab in labs]
            drawn = draw_examples([list(g.labels) if i < 2 else [] for i, g in enumerate(gt)], 16, d, [0, 1])
            state["force"] = None  # the examples measured as any add measures them
            det = SAMDetect(config)
            for i, idx in drawn.items():
                det.add_examples(ims[i], gt[i][idx], annotation=gt[i])
            state["seen"].clear()
            det.refresh_profile()
            best = np.max(np.stack(state["seen"]), axis=0)
            rows = []
            for f in [None] + [int(i) for i in np.argsort(-best, kind="stable")[: args.k]]:
                state["force"] = f
                det.refresh_profile()
                ex = counts(det.detect(ims[0]), gt[0]) + counts(det.detect(ims[1]), gt[1])
                sc = counts(det.detect(ims[2]), gt[2])
                rows.append({"force": f, "reproduction": None if f is None else round(float(best[f]), 4),
                             "lead": next(iter(det.profile["classes"].values()))["settings"][0],
                             "examples": ex.tolist(), "scored": sc.tolist(), "examples_f1": f1(ex), "scored_f1": f1(sc)})
            state["force"] = None
            det.close()
            by_ex = max(rows[1:], key=lambda r: (r["examples_f1"], r["reproduction"]))
            print(f"seed {seed} draw {d}: default {rows[0]['scored_f1']:.3f} | by-ex-F1 {by_ex['scored_f1']:.3f} | "
                  f"oracle {max(r['scored_f1'] for r in rows[1:]):.3f}", flush=True)
            out.append({"seed": seed, "draw": d, "rows": rows})
    prof._alternatives = original

    def mean(pick) -> float:
        return float(np.mean([pick(o["rows"]) for o in out])) if out else float("nan")

    print(f"{len(out)} draws: mean F1 default {mean(lambda r: r[0]['scored_f1']):.3f}, "
          f"by-ex-F1 {mean(lambda r: max(r[1:], key=lambda x: (x['examples_f1'], x['reproduction']))['scored_f1']):.3f}, "
          f"oracle {mean(lambda r: max(x['scored_f1'] for x in r[1:])):.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
