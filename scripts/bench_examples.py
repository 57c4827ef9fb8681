#!/usr/bin/env python
"""What the examples add: the segmenter alone, the pipeline without the profile, the full
pipeline, side by side on every data set (issue 11's benchmark).

One code path and one set of defaults: each data set passes nothing but its images, its
ground truth and the examples. None of the defaults was chosen on these images (the
calibrated proposals' constants come from ``scripts/tune_calibrated.py``'s synthetic
fields and the development sets; the classical segmenter's own defaults, used by the
first two rows, were chosen on the development sets by ``scripts/tune_classical.py --sets
dev``; session 1 had chosen them on HeLa).

Data sets (``--datasets``):

- ``hela``: HeLa nuclei time-lapse (../shared/data), 10 examples from frame 0, frames 1-19;
- ``scratch``: scratch-assay nuclei (../shared/data), 10 examples from frame 0, frames 1-9;
- ``coins``: scikit-image's coins; 3 coins given as boxes (the README's second quickstart),
  scored against one fitted disk per coin (``COINS_GT``);
- ``dense``: synthetic dense fields of touching objects, 50-60 % foreground
  (``bench_data.dense_fields``), 10 examples per field;
- any other set ``scripts/bench_data.py`` lists (``bench_data.DATASETS``).

Writes ``docs/perf_data/examples.json`` and prints a Markdown table.

    python scripts/bench_examples.py
    python scripts/bench_examples.py --datasets coins,dense --embedder handcrafted
    python scripts/bench_examples.py --held-out-format --out docs/perf_data/held_out_format.json
    python scripts/bench_examples.py --datasets dev_u2os,dev_rpe1 --seeds 0,1,2,3,4,5 --out /tmp/draws.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from bench_accuracy import HELA_IMG, HELA_SEG, SCRATCH  # noqa: E402  (the shared data's paths)

COIN_BOXES = [(19, 32, 68, 78), (79, 37, 123, 77), (131, 28, 181, 78)]
#: one disk (x, y, r) per coin of ``skimage.data.coins()``: Hough circles on Canny edges,
#: then a circle fitted to the outermost edge point per 5 degrees (the rim, not the
#: relief), checked by eye on an overlay
COINS_GT = [
    (44.4, 54.7, 20.9), (100.5, 56.2, 18.6), (155.2, 51.0, 23.1), (215.2, 51.3, 22.7), (276.8, 52.5, 19.8),
    (332.1, 43.9, 30.3), (270.8, 119.1, 24.9), (44.7, 124.5, 20.6), (102.3, 125.4, 18.6), (153.5, 127.3, 18.7),
    (205.3, 123.9, 19.8), (336.2, 124.4, 19.7), (43.6, 197.1, 18.7), (101.7, 195.3, 22.0), (154.0, 197.6, 19.3),
    (212.4, 193.0, 23.7), (273.7, 193.6, 22.3), (347.3, 186.2, 31.7), (46.1, 259.8, 28.2), (113.7, 265.8, 21.4),
    (172.4, 261.2, 27.3), (243.9, 263.4, 23.7), (298.1, 263.0, 26.4), (358.1, 268.2, 21.7),
]


def coins_ground_truth():
    """``Instances`` of the 24 coin disks (``COINS_GT``) on the 303 x 384 image."""
    from sam_detect.instances import Instances

    yy, xx = np.mgrid[:303, :384]
    masks = np.stack([(xx - x) ** 2 + (yy - y) ** 2 <= r * r for x, y, r in COINS_GT])
    return Instances(masks=masks, labels=["coin"] * len(masks))


def _row(m) -> dict:
    return {"precision": round(m.precision, 4), "recall": round(m.recall, 4), "f1": round(m.f1, 4),
            "tp": m.tp, "fp": m.fp, "fn": m.fn}


def protocol_runs(name: str) -> tuple[list[tuple[list, list, dict]], dict, list | None]:
    """``(runs, protocol, pairs)``: the few-shot protocol's runs of a data set, each
    ``(images, ground truth, protocol)``: one run, or one per pair of images (``pairs``,
    else ``None``), and the set's protocol as its table gives it."""
    from sam_detect.eval.protocol import ImageRef
    from sam_detect.formats import read_label_image

    if name == "hela":
        gt = list(read_label_image(HELA_SEG))
        images = [ImageRef(str(HELA_IMG), frame=t) for t in range(len(gt))]
        protocol = dict(shots=10, examples_from=[0], detect_on=list(range(1, len(gt))))
    elif name == "scratch":
        gt = list(read_label_image(SCRATCH, channel=2))
        images = [ImageRef(str(SCRATCH), frame=t, channel=0) for t in range(len(gt))]
        protocol = dict(shots=10, examples_from=[0], detect_on=list(range(1, len(gt))))
    else:
        import bench_data

        images, gt = bench_data.load(name)
        protocol = dict(bench_data.PROTOCOL[name])
    pairs = protocol.pop("pairs", None)
    runs = ([([images[a], images[b]], [gt[a], gt[b]], {**protocol, "examples_from": [0], "detect_on": [1]})
             for a, b in pairs] if pairs else [(images, gt, protocol)])
    return runs, protocol, pairs


def _rows(totals: dict) -> dict:
    rows = {}
    for key, c in totals.items():
        p = c["tp"] / max(c["tp"] + c["fp"], 1)
        r = c["tp"] / max(c["tp"] + c["fn"], 1)
        rows[key] = {"precision": round(p, 4), "recall": round(r, 4),
                     "f1": round(2 * c["tp"] / max(2 * c["tp"] + c["fp"] + c["fn"], 1), 4), **c}
    return rows


def protocol_dataset(name: str, config, seeds: tuple[int, ...] = (0,)) -> dict:
    """A data set scored with the few-shot protocol, three ways (``examples_worth``); with
    several ``seeds`` (other draws of the examples) the rows pool every draw's counts and
    ``per_seed`` holds each draw's F1s."""
    from sam_detect.eval.errors import pool_errors
    from sam_detect.eval.protocol import examples_worth

    runs, protocol, pairs = protocol_runs(name)
    t = time.perf_counter()
    keys = ("segmenter_alone", "without_profile", "full")
    counts = []  # each draw's counts
    detect_s = []
    errors: dict = {}  # the full pipeline's errors by kind (sam_detect.eval.errors), every draw pooled
    for seed in seeds:
        mine = {k: {"tp": 0, "fp": 0, "fn": 0} for k in keys}
        for imgs, truth, prot in runs:
            worth = examples_worth(imgs, truth, config, seed=seed, label="object", **prot)
            for key, (_, c) in zip(keys, worth.rows(0.5), strict=True):
                for f in ("tp", "fp", "fn"):
                    mine[key][f] += int(getattr(c, f))
            detect_s.append(worth.full.timings.get("total", {}).get("median_s"))
            pool_errors(errors, worth.full.errors)
        counts.append(mine)
    totals = {k: {f: sum(c[k][f] for c in counts) for f in ("tp", "fp", "fn")} for k in keys}
    per_seed = [{"seed": seed, **{k: v["f1"] for k, v in _rows(c).items()}} for seed, c in zip(seeds, counts, strict=True)]
    out = {"rows": _rows(totals), "images": sum(len(p["detect_on"]) for _, _, p in runs), "protocol": {
        k: v for k, v in protocol.items()}, "pairs": pairs, "wall_s": round(time.perf_counter() - t, 1),
        "detect_median_s": detect_s, "full_errors": errors or None}
    if len(seeds) > 1:
        out["per_seed"] = per_seed
    return out


def held_out_format(name: str, config, frames: int = 3, seeds: tuple[int, ...] = (0, 1)) -> dict:
    """The held-out sets' format on a data set: 10 examples from an image, that image
    detected (its first ``frames`` images in turn, ``seeds`` each), scored two ways: with the
    examples left out (as every development recording is scored) and with them counted like
    any other object (as a scoring of every object of the image counts them). The segmenter
    alone is every candidate of its own settings, scored the same two ways."""
    import dataclasses

    from sam_detect.errors import AnnotationError
    from sam_detect.eval.metrics import MetricsAccumulator
    from sam_detect.eval.protocol import accept_all, evaluate, examples_worth

    runs, _, pairs = protocol_runs(name)
    images, gt = (runs[0][0], runs[0][1]) if not pairs else (
        [im for imgs, _, _ in runs for im in imgs], [g for _, truth, _ in runs for g in truth])
    keys = ("segmenter_alone", "full", "segmenter_alone_examples_scored", "full_examples_scored")
    totals = {k: np.zeros(3, np.int64) for k in keys}
    t = time.perf_counter()
    plain = dataclasses.replace(config, profile=False, keep_examples=False)
    skipped = 0
    for f in range(min(frames, len(images))):
        for seed in seeds:
            prot = dict(shots=10, seed=seed, examples_from=[f], detect_on=[f], label="object")
            try:
                worth = examples_worth(images, gt, config, **prot)
            except AnnotationError as err:  # an image of ten objects or fewer: every one an example
                if "nothing left to score" not in str(err):
                    raise
                skipped += 1
                continue
            for key, (_, c) in zip(("segmenter_alone", None, "full"), worth.rows(0.5), strict=True):
                if key:
                    totals[key] += [c.tp, c.fp, c.fn]
            acc = MetricsAccumulator((0.5,))  # the same detections, every object counted
            for rec in worth.full.records:
                acc.add_matrix(rec.out_iou, rec.out_labels, rec.gt_labels, np.zeros_like(rec.ignore))
            c = acc.result()[0.5]
            totals["full_examples_scored"] += [c.tp, c.fp, c.fn]
            scored = evaluate(images, gt, plain, score_examples=True, curve_thresholds=(), overlays=0, **prot)
            c = accept_all(scored)[0.5]
            totals["segmenter_alone_examples_scored"] += [c.tp, c.fp, c.fn]
    rows = {k: {"f1": round(float(2 * v[0] / max(2 * v[0] + v[1] + v[2], 1)), 4),
                "tp": int(v[0]), "fp": int(v[1]), "fn": int(v[2])} for k, v in totals.items()}
    return {"rows": rows, "frames": min(frames, len(images)), "seeds": list(seeds),
            "runs_with_nothing_left_to_score": skipped, "wall_s": round(time.perf_counter() - t, 1)}


def coins(config) -> dict:
    """Three boxes -> every coin; scored against fitted disks, both with and without profile."""
    import dataclasses

    from skimage import data

    from sam_detect import SAMDetect
    from sam_detect.eval.metrics import MetricsAccumulator
    from sam_detect.instances import Instances

    img = data.coins()
    gt = coins_ground_truth()
    out = {}
    segmenter_alone = None
    for key, use in (("without_profile", False), ("full", True)):
        # as examples_worth: the row without the profile returns no example as drawn
        det = SAMDetect(dataclasses.replace(config, store="memory", profile=use, keep_examples=use))
        t = time.perf_counter()
        for box in COIN_BOXES:
            det.add_example(img, box=box, label="coin")
        t_add = time.perf_counter() - t
        found = det.detect(img)
        acc = MetricsAccumulator((0.5,))
        acc.add(found, Instances(masks=gt.masks, labels=["coin"] * len(gt)))
        out[key] = {**_row(acc.result()[0.5]), "found": len(found), "add_s": round(t_add, 2),
                    "notes": found.metadata.get("notes", [])}
        if segmenter_alone is None:
            cand = det.segmenter.segment(np.repeat(img[..., None], 3, axis=2))
            acc = MetricsAccumulator((0.5,))
            acc.add(Instances(masks=cand.masks, labels=["coin"] * len(cand)),
                    Instances(masks=gt.masks, labels=["coin"] * len(gt)))
            segmenter_alone = {**_row(acc.result()[0.5]), "found": len(cand)}
        det.close()
    return {"rows": {"segmenter_alone": segmenter_alone, **out}, "images": 1, "coins": len(gt)}


def speed(embedder: str, repeats: int = 5) -> dict:
    """Calibration cost of an ``add`` of 10 examples on a 1024 x 1024 image, and ``detect``
    on a 700 x 1100 HeLa frame with and without the profile (medians, same run)."""
    import dataclasses
    import statistics

    import tifffile

    from sam_detect import DetectorConfig, SAMDetect
    from sam_detect.instances import Instances
    from sam_detect.io.images import to_rgb_uint8
    from sam_detect.profile import describe_examples

    img = tifffile.imread(HELA_IMG)
    gt = tifffile.imread(HELA_SEG)
    big = np.pad(img[0], ((0, 1024 - 700), (0, 0)), mode="reflect")[:, :1024]
    big_gt = np.pad(gt[0], ((0, 1024 - 700), (0, 0)), mode="constant")[:, :1024]
    rgb = to_rgb_uint8(big)
    inst, _ = Instances.from_label_image(big_gt)
    ex = inst[np.random.default_rng(0).choice(len(inst), 10, replace=False)]
    calib = []
    for _ in range(repeats):
        t = time.perf_counter()
        describe_examples(rgb, ex, ["nucleus"] * len(ex))
        calib.append(time.perf_counter() - t)
    config = DetectorConfig(segmenter="classical", embedder=embedder, store="memory")
    det = SAMDetect(config)
    ex0, _ = Instances.from_label_image(gt[0])
    ex0 = ex0[np.random.default_rng(0).choice(len(ex0), 10, replace=False)]
    det.add_examples(to_rgb_uint8(img[0]), ex0, ["nucleus"] * len(ex0))
    plain = SAMDetect(dataclasses.replace(config, profile=False), store=det.store)
    frame = to_rgb_uint8(img[5])
    det.detect(frame)
    plain.detect(frame)  # warm-up: models loaded, caches filled
    with_p, without_p, n_with, n_without = [], [], 0, 0
    for _ in range(repeats):  # interleaved, so that load changes hit both alike
        t = time.perf_counter()
        n_with = len(det.detect(frame))
        with_p.append(time.perf_counter() - t)
        t = time.perf_counter()
        n_without = len(plain.detect(frame))
        without_p.append(time.perf_counter() - t)
    return {
        "calibration_10_examples_1024px_s": round(statistics.median(calib), 3),
        "detect_700x1100_with_profile_s": round(statistics.median(with_p), 3),
        "detect_700x1100_without_profile_s": round(statistics.median(without_p), 3),
        "objects_with_profile": n_with,
        "objects_without_profile": n_without,
        "repeats": repeats,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=None, help="comma-separated (default: all)")
    ap.add_argument("--embedder", default="views", help="default: views, the offline default embedder")
    ap.add_argument("--speed", action="store_true", help="also time calibration and detect")
    ap.add_argument("--out", default=str(ROOT / "docs" / "perf_data" / "examples.json"))
    ap.add_argument("--seeds", default="0",
                    help="comma-separated draws of the examples (default 0); several: the rows pool "
                    "their counts and the table adds each draw's range")
    ap.add_argument("--held-out-format", action="store_true",
                    help="instead: 10 examples from an image and that image detected (images 0-2, seeds 0-1), "
                    "scored with the examples left out and counted (run after a choice, never for one)")
    args = ap.parse_args()

    import bench_data

    from sam_detect import DetectorConfig

    names = args.datasets.split(",") if args.datasets else ["hela", "scratch", "coins", *bench_data.DATASETS]
    config = DetectorConfig(segmenter="classical", embedder=args.embedder, store="memory")
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    if args.speed:
        results["_speed"] = speed(args.embedder)
        print(json.dumps(results["_speed"]), file=sys.stderr)
    if args.held_out_format:
        names = [n for n in names if n != "coins"]  # the coins are one image: their protocol is this format
        for name in names:
            print(f"== {name}", file=sys.stderr)
            results[name] = {**held_out_format(name, config), "embedder": args.embedder}
            out_path.parent.mkdir(parents=True, exist_ok=True)
            out_path.write_text(json.dumps(results, indent=1))
        print("| data set | segmenter alone | full pipeline | examples counted: segmenter alone | full pipeline |")
        print("| --- | --- | --- | --- | --- |")
        for name in names:
            r = results[name]
            if r.get("runs_with_nothing_left_to_score") == r["frames"] * len(r["seeds"]):
                print(f"| {name} | (every image holds ten objects or fewer: nothing left to score) | | | |")
                continue
            f = [r["rows"][k]["f1"] for k in ("segmenter_alone", "full", "segmenter_alone_examples_scored",
                                             "full_examples_scored")]
            print(f"| {name} | {f[0]:.3f} | {f[1]:.3f} | {f[2]:.3f} | {f[3]:.3f} |")
        return
    seeds = tuple(int(x) for x in args.seeds.split(","))
    for name in names:
        print(f"== {name}", file=sys.stderr)
        results[name] = coins(config) if name == "coins" else protocol_dataset(name, config, seeds)
        results[name]["embedder"] = args.embedder
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(results, indent=1))
    print("| data set | segmenter alone | without profile | full pipeline | full - alone | full, each draw |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        if name.startswith("_"):
            continue
        rows = r["rows"]
        f = [rows[k]["f1"] for k in ("segmenter_alone", "without_profile", "full")]
        draws = r.get("per_seed") or []
        spread = (f"{min(d['full'] for d in draws):.3f}-{max(d['full'] for d in draws):.3f}, "
                  f"{sum(d['full'] < d['segmenter_alone'] for d in draws)} of {len(draws)} below alone"
                  if draws else "")
        print(f"| {name} | {f[0]:.3f} | {f[1]:.3f} | {f[2]:.3f} | {f[2] - f[0]:+.3f} | {spread} |")


if __name__ == "__main__":
    main()
