#!/usr/bin/env python
"""The classical segmenter without examples on stained slides: readings and thresholds
(development only).

Every tile of a set is segmented by the classical segmenter's own settings, no library, and
every candidate is scored against the annotation (F1 @ 0.5, one-to-one). Each reading of the
colour image (``intensity``: ``gray`` luminance, ``stain`` the haematoxylin density) is run
with each threshold method given. ``auto`` is the default: a stained slide in transmitted
light (``io.render.stained``) read by its haematoxylin and thresholded by Otsu's method.

    python scripts/dev_stain_reading.py                                  # dev_stroma and synthetic fields
    python scripts/dev_stain_reading.py --sets dev_stroma --thresholds tophat,otsu,yen,li

``dev_stroma`` is the H&E stroma crop's nine tiles (``bench_data``, development);
``he_fields`` are ``dev_he_kinds.py``'s synthetic H&E-like fields (seeds 0-5, three each),
whose haematoxylin is drawn with the very colour ``rgb2hed`` unmixes (an upper bound).
The reported ``hgsc`` nest is scored by ``bench_examples.py --datasets hgsc`` (its
"segmenter alone" row), after the choice.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def load(name: str) -> tuple[list, list]:
    if name == "he_fields":
        import dev_he_kinds

        fields = [dev_he_kinds.field(seed * 10 + f) for seed in range(6) for f in range(3)]
        return [im for im, _, _ in fields], [lab for _, lab, _ in fields]
    import bench_data

    images, labels = bench_data.load(name)
    return list(images), list(labels)


def score(images: list, labels: list, **options) -> tuple[int, int, int]:
    """``(tp, fp, fn)`` of every candidate of the classical segmenter with ``options``."""
    from sam_detect.eval.matching import match_iou_matrix
    from sam_detect.eval.metrics import instances_iou
    from sam_detect.instances import Instances
    from sam_detect.segment import create_segmenter

    seg = create_segmenter("classical", **options)
    tp = fp = fn = 0
    for image, label in zip(images, labels, strict=True):
        found = seg.segment(image)
        truth = Instances.from_label_image(label)[0]
        m = len(match_iou_matrix(instances_iou(found, truth), 0.5).pairs) if len(found) and len(truth) else 0
        tp, fp, fn = tp + m, fp + len(found) - m, fn + len(truth) - m
    return tp, fp, fn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="dev_stroma,he_fields")
    ap.add_argument("--readings", default="gray,stain")
    ap.add_argument("--thresholds", default="tophat,otsu,yen")
    args = ap.parse_args()
    print("| set | reading | threshold | F1 | TP | FP | FN |\n| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.sets.split(","):
        images, labels = load(name)
        runs = [("auto", "auto")] + [(r, t) for r in args.readings.split(",") for t in args.thresholds.split(",")]
        for reading, threshold in runs:
            tp, fp, fn = score(images, labels, intensity=reading, threshold=threshold)
            f1 = 2 * tp / max(2 * tp + fp + fn, 1)
            print(f"| {name} | {reading} | {threshold} | {f1:.3f} | {tp} | {fp} | {fn} |", flush=True)


if __name__ == "__main__":
    main()
