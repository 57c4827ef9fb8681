#!/usr/bin/env python
"""Detection with several classes against the same examples as one class (development only).

``dev_micronuclei`` (mnFinder's *training* split, nuclei and micronuclei; see
``dev_decision_rules.py``): eight examples per class drawn from frame 0 with each seed, added
once with their classes and once all as one class ("object"), frames 1-5 detected by both
libraries. Printed per seed and in all: class-agnostic F1 @ 0.5 (every class as one), per
ground-truth class how many were found (a detection of any class at IoU >= 0.5), and how many
of the matched objects the library of classes gave their own class ("types right").

``--set dev_stroma_types`` (development): the HGSC stroma crop's tiles 0-2 give eight examples
per nucleus type, tiles 3-8 are detected (``dev_decision_rules.py``'s protocol).

    python scripts/dev_typed_detection.py [--seeds 0,1,2] [--frames 1,2,3,4,5]

``--set micronuclei`` runs the same on mnFinder's *test* split (``bench_data``'s reported
``micronuclei``, frame 0 giving the examples, frames 1-15 scored), and ``--set hgsc`` on the
reported HGSC nest's tiles (``bench_classify``'s protocol: tiles 0-2 give eight examples per
nucleus type, tiles 3-8 are detected): look at them only after a choice has been made on
the development sets. ``--rare K``: one class per seed keeps only K examples
(``bench_classify --rare``'s choice), as when the example images hold few of a class. The
last lines say, per true class, which classes its matched objects were given.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--frames", default=None,
                    help="frames scored (0 gives the examples; default 1-5 of dev_micronuclei, 1-15 of micronuclei)")
    ap.add_argument("--set", default="dev_micronuclei",
                    choices=["dev_micronuclei", "dev_stroma_types", "micronuclei", "hgsc"])
    ap.add_argument("--rare", type=int, default=None,
                    help="one class per seed keeps only this many examples (bench_classify --rare's choice)")
    args = ap.parse_args()
    import dev_decision_rules as dr

    from sam_detect import DetectorConfig, SAMDetect
    from sam_detect.eval.inputs import draw_examples
    from sam_detect.eval.matching import match_iou_matrix
    from sam_detect.eval.metrics import instances_iou

    if args.set in dr.DEV_SETS:
        items, protocol = dr.DEV_SETS[args.set]()
        source = protocol["examples_from"]
        default = "1,2,3,4,5" if args.set == "dev_micronuclei" else ",".join(map(str, protocol["score_on"]))
    elif args.set == "hgsc":  # reported: the nest's tiles, bench_classify's protocol
        import bench_classify

        items, protocol = bench_classify._gt_set("hgsc")
        source, default = protocol["examples_from"], ",".join(map(str, protocol["score_on"]))
    else:
        items, source, default = _reported(), [0], ",".join(map(str, range(1, 16)))
    frames = [int(f) for f in (args.frames or default).split(",")]
    total = {mode: np.zeros(3, np.int64) for mode in ("classes", "one class")}  # matched, found, truth
    found_of = {mode: {} for mode in total}
    typed_of: dict[str, list[int]] = {}  # per true class: matched objects given it, matched objects
    given: dict[str, dict[str, int]] = {}  # per true class: how many matched objects each class was given
    for seed in (int(s) for s in args.seeds.split(",")):
        drawn = draw_examples([list(g.labels) if i in source else [] for i, (_, g) in enumerate(items)], 8, seed,
                              source)
        if args.rare is not None:  # a class rare in the examples' images
            from bench_classify import _make_rare

            kept = _make_rare(items, [np.asarray(drawn.get(i, []), np.int64) for i in range(len(items))], seed, args.rare)
            drawn = {i: idx for i, idx in enumerate(kept) if len(idx)}
        for mode in total:
            det = SAMDetect(DetectorConfig(library=f"typed-{seed}-{os.getpid()}", store="memory", embedder="views"))
            for i, idx in drawn.items():
                ex = items[i][1][idx]
                if mode == "one class":
                    ex.labels[:] = "object"
                det.add_examples(items[i][0], ex)
            for k in frames:
                rgb, g = items[k]
                out = det.detect(rgb)
                pairs = match_iou_matrix(instances_iou(out, g), 0.5).pairs if len(out) and len(g) else []
                total[mode] += (len(pairs), len(out), len(g))
                truth = np.asarray(g.labels)
                if mode == "classes":  # the library of classes: which class each matched object got
                    for i, j in pairs:
                        t = typed_of.setdefault(str(truth[j]), [0, 0])
                        t[0] += str(out.labels[i]) == str(truth[j])
                        t[1] += 1
                        row = given.setdefault(str(truth[j]), {})
                        row[str(out.labels[i])] = row.get(str(out.labels[i]), 0) + 1
                hit = {j for _, j in pairs}
                for c in np.unique(truth):
                    got = found_of[mode].setdefault(str(c), [0, 0])
                    got[0] += sum(1 for j in hit if truth[j] == c)
                    got[1] += int((truth == c).sum())
            det.close()
        print(f"seed {seed}: " + ", ".join(f"{m} F1 {2 * t[0] / max(t[1] + t[2], 1):.3f}" for m, t in total.items()),
              flush=True)
    for mode, t in total.items():
        per = ", ".join(f"{c} {a}/{b}" for c, (a, b) in sorted(found_of[mode].items()))
        typed = ""
        if mode == "classes":
            each = ", ".join(f"{c} {a}/{b}" for c, (a, b) in sorted(typed_of.items()))
            balanced = np.mean([a / b for a, b in typed_of.values()]) if typed_of else 0.0
            right = sum(a for a, _ in typed_of.values())
            typed = f", types right {right}/{t[0]}: {each}; per-class mean {balanced:.3f}"
        print(f"{mode}: F1 {2 * t[0] / max(t[1] + t[2], 1):.3f} ({t[0]} matched, {t[1]} found, {t[2]} true; found per "
              f"class: {per}{typed})")
    for c, row in sorted(given.items()):  # where the wrong types go
        print(f"  {c} typed as: " + ", ".join(f"{k} {v}" for k, v in sorted(row.items(), key=lambda kv: -kv[1])))


def _reported() -> list:
    """``(rgb, typed instances)`` of every frame of the reported ``micronuclei`` set."""
    import bench_data
    from dev_decision_rules import typed_item

    images, labels, class_of = bench_data.load_classes("micronuclei")
    return [typed_item(*frame) for frame in zip(images, labels, class_of, strict=True)]


if __name__ == "__main__":
    main()
