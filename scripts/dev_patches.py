#!/usr/bin/env python
"""Small H&E patches, the held-out histology protocol's shape (development only).

Each draw cuts three random 256 x 256 patches from one large H&E crop, drops label pieces
under 30 px, draws 16 examples per nucleus type (or all a type has) from the first two and
detects on the third. Draws whose scored patch holds no nucleus are skipped. Printed per
draw and in all: detection F1 @ 0.5 (every type as one class), precision, recall, the
number of candidates, and the type accuracy among matched nuclei (``--typed``).

    python scripts/dev_patches.py                       # stroma crop, one class, 36 draws
    python scripts/dev_patches.py --typed --seeds 0     # nucleus types kept
    python scripts/dev_patches.py --json out.json       # per-draw figures saved

``--crop stroma`` (the default, ``bench_data.hgsc_stroma_classes``' image) is a
development image; ``--crop nest`` is the reported ``hgsc`` tumour nest: look at it only
after a choice has been made. Seed 0 runs 6 draws, every other seed 10 (``--draws``).

``--stain K`` scores the third patch as a slide with K x the stain (its optical density
scaled): examples from one slide, a paler or darker one scored.

``--set NAME`` cuts the patches from a development set of ``bench_data`` instead (each
patch from a frame drawn at random; one class): the same protocol on fluorescence, where
the examples are most of their patches' objects, as on the H&E patches.

    python scripts/dev_patches.py --set dev_u2os --seeds 0,1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

PATCH = 256
MIN_AREA = 30


def crop(name: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(rgb, label image, id -> type)`` of one whole H&E crop."""
    import bench_data
    import cv2

    if name == "stroma":
        path = bench_data.wheel_member(bench_data.HISTOLYTICS, "histolytics/data/hgsc_stromal_he.jpg")
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        label, class_of = bench_data.rasterise_polygons("histolytics/data/hgsc_stromal_cells.parquet", image.shape[:2])
        return image, label, class_of
    if name == "nest":
        images, labels, classes = bench_data.hgsc_classes(n=1)
        return images[0], labels[0], classes[0]
    raise SystemExit(f"unknown crop {name!r}; choose stroma or nest")


def source(crop_name: str, set_name: str | None = None) -> tuple:
    """``(image, label, id -> type)`` of ``--crop`` or, with ``--set``, lists of a development
    set's frames and label images, every object one class ("nucleus")."""
    if not set_name:
        return crop(crop_name)
    import bench_data

    if set_name not in bench_data.DEV:
        raise SystemExit(f"--set takes a development set: {', '.join(bench_data.DEV)}")
    image, label = (list(v) for v in bench_data.load(set_name))
    return image, label, {i: "nucleus" for lab in label for i in np.unique(lab)}


def patches(image: np.ndarray | list, label: np.ndarray | list, rng: np.random.Generator) -> tuple[list, list]:
    """Three random patches and their label images (pieces under ``MIN_AREA`` px dropped);
    from lists of frames, each patch from a frame drawn at random."""
    ims, labs = [], []
    frames = (list(image), list(label)) if isinstance(image, list) else ([image], [label])
    for _ in range(3):
        f = int(rng.integers(0, len(frames[0])))
        image, label = frames[0][f], frames[1][f]
        h, w = label.shape
        y, x = int(rng.integers(0, h - PATCH + 1)), int(rng.integers(0, w - PATCH + 1))
        lab = label[y:y + PATCH, x:x + PATCH].copy()
        ids, area = np.unique(lab, return_counts=True)
        lab[np.isin(lab, ids[(area < MIN_AREA) & (ids > 0)])] = 0
        ims.append(image[y:y + PATCH, x:x + PATCH].copy())
        labs.append(lab)
    return ims, labs


def ground_truth(lab: np.ndarray, class_of: dict, typed: bool):
    from sam_detect.instances import Instances

    inst, ids = Instances.from_label_image(lab)
    inst.labels = np.array([str(class_of[int(i)]) if typed else "nucleus" for i in ids], dtype=object)
    return inst


def fainter(rgb: np.ndarray, k: float) -> np.ndarray:
    """``rgb`` as a slide with ``k`` x the stain: each pixel's optical density
    (``-log(I / 255)``, what a stain adds to) scaled by ``k``."""
    od = -np.log(np.maximum(rgb.astype(np.float64), 1.0) / 255.0)
    return np.clip(np.rint(255.0 * np.exp(-k * od)), 0, 255).astype(np.uint8)


def draw(image, label, class_of, seed: int, d: int, typed: bool, config, shots: int = 16,
         stain: float = 1.0) -> dict | None:
    from sam_detect.eval.protocol import evaluate

    ims, labs = patches(image, label, np.random.default_rng(seed * 1000 + d))
    if stain != 1.0:  # the scored patch from a slide stained otherwise
        ims[2] = fainter(ims[2], stain)
    if not (labs[2] > 0).any():
        return None
    gt = [ground_truth(lab, class_of, typed) for lab in labs]
    res = evaluate(ims, gt, config, shots=shots, seed=d, examples_from=[0, 1], detect_on=[2],
                   curve_thresholds=(), overlays=0)
    rec = res.records[0]
    agnostic = rec.out_iou >= 0.5
    matched = right = 0
    used = np.zeros(agnostic.shape[1], bool)
    for k in np.argsort(-rec.out_iou.max(axis=1, initial=0)) if len(rec.out_iou) else []:
        cand = np.flatnonzero(agnostic[k] & ~used & ~rec.ignore)
        if len(cand):
            g = cand[np.argmax(rec.out_iou[k, cand])]
            used[g] = True
            matched += 1
            right += rec.out_labels[k] == rec.gt_labels[g]
    n_gt = int((~rec.ignore).sum())
    n_out = len(rec.out_labels)
    return dict(seed=seed, draw=d, gt=n_gt, found=n_out, candidates=len(rec.iou), matched=matched, right=right,
                precision=matched / n_out if n_out else 0.0, recall=matched / n_gt if n_gt else 0.0,
                f1=2 * matched / (n_out + n_gt) if n_out + n_gt else 0.0,
                examples=res.examples, errors=res.errors)


def draw_by_clicks(image, label, class_of, seed: int, d: int, config, shots: int = 16,
                   follow: bool = True) -> dict | None:
    """:func:`draw` with the examples given as a user clicking them gives them: each drawn
    object clicked once at its innermost point, one ``add_example`` at a time, in a random
    order (``follow``: each click follows the examples added so far, as ``add --point`` and
    the UI do; else the segmenter's own answer is added as the mask). A click that gives
    nothing adds nothing. One class ("nucleus"); scored as :func:`draw`'s F1 @ 0.5."""
    from bench_clicks import innermost

    from sam_detect import SAMDetect
    from sam_detect.errors import AnnotationError
    from sam_detect.eval.inputs import draw_examples
    from sam_detect.eval.matching import match_iou_matrix
    from sam_detect.eval.metrics import instances_iou

    ims, labs = patches(image, label, np.random.default_rng(seed * 1000 + d))
    if not (labs[2] > 0).any():
        return None
    gt = [ground_truth(lab, class_of, False) for lab in labs]
    drawn = draw_examples([list(g.labels) if i < 2 else [] for i, g in enumerate(gt)], shots, d, [0, 1])
    clicks = [(i, *innermost(gt[i].mask(int(j)))) for i, idx in drawn.items() for j in idx]
    order = np.random.default_rng(d).permutation(len(clicks))
    det = SAMDetect(config)
    added = 0
    for k in order:
        i, x, y = clicks[k]
        try:
            if follow:
                det.add_example(ims[i], point=(x, y), label="nucleus")
            else:
                det.add_example(ims[i], mask=det.segmenter.prompt(ims[i], point=(x, y)).mask(0), label="nucleus")
            added += 1
        except (AnnotationError, IndexError):  # nothing under the click
            continue
    found = det.detect(ims[2]) if added else None
    n_gt = len(gt[2])
    n_out = len(found) if found is not None else 0
    matched = len(match_iou_matrix(instances_iou(found, gt[2]), 0.5).pairs) if n_out and n_gt else 0
    det.close()
    return dict(seed=seed, draw=d, gt=n_gt, found=n_out, matched=matched, examples=added, clicks=len(clicks),
                precision=matched / n_out if n_out else 0.0, recall=matched / n_gt if n_gt else 0.0,
                f1=2 * matched / (n_out + n_gt) if n_out + n_gt else 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crop", default="stroma", choices=["stroma", "nest"])
    ap.add_argument("--set", default=None, help="a development set of bench_data (fluorescence) instead of a crop")
    ap.add_argument("--seeds", default="0,1,2,3", help="comma-separated draw seeds")
    ap.add_argument("--draws", type=int, default=None, help="draws per seed (default: 6 for seed 0, else 10)")
    ap.add_argument("--typed", action="store_true", help="keep the nucleus types (type accuracy)")
    ap.add_argument("--shots", type=int, default=16, help="examples per class from the two patches (default 16: most of their objects)")
    ap.add_argument("--embedder", default="views")
    ap.add_argument("--json", default=None, help="write the per-draw figures here")
    ap.add_argument("--stain", type=float, default=1.0,
                    help="the scored patch's optical density times this (0.7: a slide stained a third fainter)")
    ap.add_argument("--examples-as", default="masks", choices=["masks", "clicks", "own-clicks"],
                    help="the examples' ground-truth masks (default), or one click per example as a user gives it: "
                         "following the examples added so far (clicks) or the segmenter's own answer (own-clicks)")
    args = ap.parse_args()

    from sam_detect import DetectorConfig

    config = DetectorConfig(segmenter="classical", embedder=args.embedder, store="memory")
    image, label, class_of = source(args.crop, args.set)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for d in range(args.draws or (6 if seed == 0 else 10)):
            if args.examples_as == "masks":
                row = draw(image, label, class_of, seed, d, args.typed, config, args.shots, args.stain)
            else:
                row = draw_by_clicks(image, label, class_of, seed, d, config, args.shots,
                                     follow=args.examples_as == "clicks")
            if row is None:
                continue
            rows.append(row)
            print(f"seed {seed} draw {d}: F1 {row['f1']:.3f} P {row['precision']:.3f} R {row['recall']:.3f} "
                  f"gt {row['gt']} found {row['found']} candidates {row.get('candidates', '-')}"
                  + (f" types {row['right']}/{row['matched']}" if args.typed else ""), flush=True)
    f1 = np.array([r["f1"] for r in rows])
    print(f"{len(rows)} draws: mean F1 {f1.mean():.3f}, P {np.mean([r['precision'] for r in rows]):.3f}, "
          f"R {np.mean([r['recall'] for r in rows]):.3f}"
          + (f", types {sum(r['right'] for r in rows)}/{sum(r['matched'] for r in rows)}" if args.typed else ""))
    if any(r.get("errors") for r in rows):  # where the errors are, every draw pooled (class-aware matches)
        from sam_detect.eval.errors import format_errors, pool_errors

        pooled: dict = {}
        for r in rows:
            pool_errors(pooled, r.get("errors"))
        print("\n".join(format_errors(pooled)))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=int))


if __name__ == "__main__":
    main()
