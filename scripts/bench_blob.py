#!/usr/bin/env python
"""What the blob split costs (session 12): calibration with and without the blob settings,
and detection on a dense field where the blob split leads against the same examples with
the blob settings left out; and what measuring every setting's outlines drawn a pixel
inside costs the calibration (session 31: ``grid_ious`` with and without ``inset``).
Medians of interleaved repeats, one run.

    python scripts/bench_blob.py [--repeats 5]
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
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    import bench_data
    import tifffile
    from bench_accuracy import HELA_IMG, HELA_SEG

    from sam_detect.instances import Instances
    from sam_detect.io.images import to_rgb_uint8
    from sam_detect.profile import _scale, _way, build_profile, describe_examples
    from sam_detect.segment import calibrated, create_segmenter

    # calibration: 10 examples on a 1024 x 1024 image (bench_examples --speed's image)
    img, gt = tifffile.imread(HELA_IMG), tifffile.imread(HELA_SEG)
    big = to_rgb_uint8(np.pad(img[0], ((0, 1024 - 700), (0, 0)), mode="reflect")[:, :1024])
    big_gt = np.pad(gt[0], ((0, 1024 - 700), (0, 0)), mode="constant")[:, :1024]
    inst, _ = Instances.from_label_image(big_gt)
    ex = inst[np.random.default_rng(0).choice(len(inst), 10, replace=False)]
    full = calibrated.GRID
    grid8 = tuple(g for g in full if _way(g) != "blob")
    calib = {"grid 9 (blob splits)": [], "grid 8": []}
    for _ in range(args.repeats):
        for name, grid in (("grid 9 (blob splits)", full), ("grid 8", grid8)):
            calibrated.GRID = grid
            t = time.perf_counter()
            describe_examples(big, ex, ["nucleus"] * len(ex))
            calib[name].append(time.perf_counter() - t)
    calibrated.GRID = full
    scale = _scale(describe_examples(big, ex, ["nucleus"] * len(ex)))
    masks = [(c, (int(x0), int(y0))) for c, (x0, y0) in zip(ex.mask_crops, ex.mask_origins, strict=True)]
    grid = {"settings' outlines as drawn and inset (today)": [], "as drawn only": []}
    for _ in range(args.repeats):
        for name, inset in (("settings' outlines as drawn and inset (today)", True), ("as drawn only", False)):
            t = time.perf_counter()
            calibrated.grid_ious(big, scale, masks, inset=inset)
            grid[name].append(time.perf_counter() - t)

    # detection on a dense field (examples from its pair), the blob split leading or left out
    rgb_ex, lab_ex = bench_data.dense_field(0)
    rgb, _ = bench_data.dense_field(1)
    rgb_ex, rgb = to_rgb_uint8(rgb_ex), to_rgb_uint8(rgb)
    gt_ex, _ = Instances.from_label_image(lab_ex)
    stats = describe_examples(rgb_ex, gt_ex[np.random.default_rng(0).choice(len(gt_ex), 10, replace=False)],
                              ["o"] * 10)
    with_blob = build_profile([("o", s) for s in stats])
    without = build_profile([("o", {**s, "calib": {**s["calib"], "iou": [
        0.0 if _way(g) == "blob" else v for g, v in zip(full, s["calib"]["iou"], strict=True)]}}) for s in stats])
    seg = create_segmenter("classical")
    propose = {"blob split leads": [], "blob settings left out": []}
    counts = {}
    for _ in range(args.repeats):
        for name, prof in (("blob split leads", with_blob), ("blob settings left out", without)):
            t = time.perf_counter()
            counts[name] = len(seg.segment(rgb, profile=prof))
            propose[name].append(time.perf_counter() - t)
    out = {
        "calibration_10_examples_1024px_s": {k: round(statistics.median(v), 3) for k, v in calib.items()},
        "grid_ious_10_examples_1024px_s": {k: round(statistics.median(v), 3) for k, v in grid.items()},
        "propose_dense_field_s": {k: round(statistics.median(v), 3) for k, v in propose.items()},
        "candidates": counts,
        "lead": {"with": with_blob["classes"]["o"]["settings"][0], "without": without["classes"]["o"]["settings"][0]},
        "field_px": list(rgb.shape[:2]),
        "repeats": args.repeats,
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
