#!/usr/bin/env python
"""Point prompts (a click, ``add --point``, the UI's first click) without examples.

Each annotated object is clicked once at its innermost point (the maximum of its distance
transform) and the classical segmenter's mask for the click is scored against the object:
how many clicks give nothing, the share with IoU >= 0.5 and >= 0.8, and the median IoU (a
click that gives nothing counts 0).

    python scripts/bench_clicks.py                                 # development sets
    python scripts/bench_clicks.py --sets coins,hela,scratch       # reported sets
    python scripts/bench_clicks.py --json docs/perf_data/clicks_s18.json

Development sets (where the choices are made): ``stroma`` (the H&E stroma crop of
``dev_patches.py``) and ``bench_data.DEV``'s sets, their first three images, at most 150
clicks per set. Reported: ``coins`` (scikit-image's coins, scored against one fitted disk
per coin, ``bench_examples.COINS_GT``), ``hela`` (frame 0) and ``scratch`` (frame 0).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
DEV = "stroma,dev_macrophage,dev_neurocyte,dev_u2os,dev_rpe1,dev_mnfinder,dev_zoom"


def images_and_labels(name: str) -> tuple[list, list]:
    """``(images, label images)`` of one set: up to three images."""
    import bench_data

    if name == "stroma":
        import dev_patches

        image, label, _ = dev_patches.crop("stroma")
        return [image], [label]
    if name == "coins":
        from bench_examples import coins_ground_truth
        from skimage import data

        gt = coins_ground_truth()
        label = np.zeros(gt.image_hw, np.int32)
        for i in range(len(gt)):
            label[gt.mask(i)] = i + 1
        return [data.coins()], [label]
    if name in ("hela", "scratch"):
        from bench_examples import protocol_runs

        (images, labels, _), = protocol_runs(name)[0]
        return images[:1], labels[:1]
    images, labels = bench_data.load(name)
    return list(images)[:3], list(labels)[:3]


def clicks(name: str, max_clicks: int = 150, seed: int = 0) -> dict:
    from scipy import ndimage as ndi

    from sam_detect.eval.inputs import load_eval_image
    from sam_detect.segment import create_segmenter

    seg = create_segmenter("classical")
    rng = np.random.default_rng(seed)
    images, labels = images_and_labels(name)
    ious: list[float] = []
    for image, label in zip(images, labels, strict=True):
        rgb = load_eval_image(image).rgb
        label = np.asarray(label)
        ids = [int(i) for i in np.unique(label) if i > 0]
        rng.shuffle(ids)
        for i in ids[: max_clicks // len(images) + 1]:
            mask = label == i
            if mask.sum() < 30:
                continue
            depth = ndi.distance_transform_edt(mask)
            y, x = np.unravel_index(np.argmax(depth), depth.shape)
            found = seg.prompt(rgb, point=(float(x), float(y)))
            if len(found) == 0:
                ious.append(0.0)
                continue
            got = found.mask(0)
            ious.append(float((got & mask).sum() / (got | mask).sum()))
    iou = np.array(ious)
    return {"clicks": len(iou), "nothing": int((iou == 0).sum()), "iou50": round(float(np.mean(iou >= 0.5)), 3),
            "iou80": round(float(np.mean(iou >= 0.8)), 3), "median_iou": round(float(np.median(iou)), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=DEV, help=f"comma-separated (default: the development sets, {DEV})")
    ap.add_argument("--max-clicks", type=int, default=150)
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()
    out = {}
    for name in args.sets.split(","):
        out[name] = r = clicks(name, args.max_clicks)
        print(f"{name:15s} {r['clicks']:4d} clicks: nothing {r['nothing']:4d}, IoU >= 0.5 {r['iou50']:.3f}, "
              f">= 0.8 {r['iou80']:.3f}, median {r['median_iou']:.3f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
