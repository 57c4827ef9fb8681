#!/usr/bin/env python
"""Annotations that leave out the objects the image border cuts (development only).

``stats``: per label image of each set (``hela`` and ``scratch``, the reported sets, too), ``sam_detect.unlabelled.border_record``: the cut
objects held over those expected from the other objects' density, and the objects within
one diameter of the border over those expected; the same with the cut objects taken out
(``clear_border``: an annotation that leaves them out) and with the middle of each image
alone (a user who labels a region). Prints one row per set and variant.

``score``: the same development sets with the cut objects taken out of every label image,
the full pipeline with the library's convention (the default) against ``drop_border=False``,
and the label images as they are (the default), over ``--seeds``; ``--buffer N`` takes out
the objects within N pixels of the border too (outlines drawn by hand stop short of it: an
object the border cuts is then not touching it in the label image).

    python scripts/dev_border.py stats --sets dev_u2os,dev_rpe1
    python scripts/dev_border.py score --sets dev_u2os,dev_rpe1,dev_mnfinder --seeds 0,1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

DEV = "dev_mnfinder,dev_rpe1,dev_u2os,dev_macrophage,dev_neurocyte,dev_rings,dev_membrane,dev_stroma"


def _variants(label: np.ndarray) -> dict[str, np.ndarray]:
    from skimage.segmentation import clear_border

    h, w = label.shape
    middle = label[h // 4: 3 * h // 4, w // 4: 3 * w // 4]
    kept = np.isin(label, np.unique(middle[middle > 0])) & ~np.isin(label, np.unique(np.r_[
        middle[0], middle[-1], middle[:, 0], middle[:, -1]]))  # whole objects of the middle half
    return {"as annotated": label, "cut objects taken out": clear_border(label),
            "taken out within 3 px": clear_border(label, buffer_size=3),
            "the middle alone": np.where(kept, label, 0)}


def _label_images(name: str) -> list:
    """A set's label images: a ``bench_data`` set, or the reported ``hela`` / ``scratch``."""
    if name in ("hela", "scratch"):
        import bench_examples

        return bench_examples.protocol_runs(name)[0][0][1]
    import bench_data

    return bench_data.load(name)[1]


def stats(names: list[str]) -> None:
    from sam_detect.instances import Instances
    from sam_detect.unlabelled import border_record, leaves_border_out

    print("| set | variant | label images (>= 8 expected) | cut held / expected: min, median | near / expected: min, median | leaving out said |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in names:
        gt = _label_images(name)
        rows: dict[str, list] = {}
        for g in gt:
            for variant, lab in _variants(np.asarray(g)).items():
                rec = border_record(Instances.from_label_image(lab)[0]) if lab.any() else None
                if rec:
                    rows.setdefault(variant, []).append(rec)
        for variant, recs in rows.items():
            e = np.array([r["expected"] for r in recs])
            held = np.array([r["held"] for r in recs]) / e
            near = np.array([r["near"] for r in recs]) / e
            big = e >= 8
            said = sum(leaves_border_out(r) for r in recs)
            print(f"| {name} | {variant} | {len(recs)} ({int(big.sum())}) | "
                  + (f"{held[big].min():.2f}, {np.median(held[big]):.2f}" if big.any() else "-")
                  + f" | {near.min():.2f}, {np.median(near):.2f} | {said} |")


def score(names: list[str], seeds: list[int], buffer: int = 0) -> None:
    import bench_data
    from skimage.segmentation import clear_border

    from sam_detect.eval.protocol import evaluate
    from sam_detect.pipeline import DetectorConfig

    print("| set | seed | cut objects taken out: default (F1, TP/FP/FN) | drop_border=False | as annotated: default |")
    print("| --- | --- | --- | --- | --- |")
    for name in names:
        images, gt = bench_data.load(name)
        stripped = [clear_border(np.asarray(g), buffer_size=buffer) for g in gt]
        protocol = dict(bench_data.PROTOCOL[name])
        for seed in seeds:
            cells = []
            for truth, drop in ((stripped, None), (stripped, False), (gt, None)):
                cfg = DetectorConfig(segmenter="classical", embedder="views", store="memory", drop_border=drop)
                m = evaluate(images, truth, cfg, seed=seed, label="object", **protocol).metrics[0.5]
                cells.append(f"{m.f1:.3f} ({m.tp}/{m.fp}/{m.fn})")
            print(f"| {name} | {seed} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=("stats", "score"))
    ap.add_argument("--sets", default=DEV)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--buffer", type=int, default=0,
                    help="score: take out the objects within this many pixels of the border too (hand-drawn "
                    "outlines that stop short of it)")
    args = ap.parse_args()
    names = args.sets.split(",")
    if args.part == "stats":
        stats(names)
    else:
        score(names, [int(s) for s in args.seeds.split(",")], args.buffer)


if __name__ == "__main__":
    main()
