#!/usr/bin/env python
"""What an ``add`` of ten examples spends measuring them (issue 11: calibration under 1 s).

Times ``profile.describe_examples`` (the settings grid on windows round the examples, the
example edges, colours and stain table: what ``add`` computes before it embeds) for ten
annotated objects of a development set's first image, drawn with seed 0, on that image.
Development sets only (``bench_data.DEV``): the objects' sizes run from small nuclei to
whole macrophages and piled beans. Prints the median and the best of the repeats per set
and a checksum of the measurements, so that two checkouts can be compared in fresh
processes (``PYTHONPATH=/path/to/other/checkout``), interleaved.

    python scripts/bench_calibration.py [--sets dev_u2os,dev_macrophage] [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

SETS = ("dev_u2os", "dev_rpe1", "dev_stroma", "dev_rings", "dev_neurocyte", "dev_piles", "dev_macrophage")


def measure(name: str, repeats: int) -> dict:
    import bench_data

    from sam_detect.instances import Instances
    from sam_detect.io.images import to_rgb_uint8
    from sam_detect.profile import describe_examples

    images, labels = bench_data.load(name)
    rgb = to_rgb_uint8(np.asarray(images[0]))
    inst, _ = Instances.from_label_image(np.asarray(labels[0]))
    pick = np.sort(np.random.default_rng(0).choice(len(inst), size=min(10, len(inst)), replace=False))
    examples = inst[pick]
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = describe_examples(rgb, examples, ["object"] * len(examples))
        times.append(time.perf_counter() - t)
    digest = hashlib.md5(json.dumps(out, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return {"set": name, "image": list(rgb.shape[:2]), "median_s": round(float(np.median(times)), 3),
            "best_s": round(float(min(times)), 3), "repeats": repeats, "checksum": digest}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=",".join(SETS), help="comma-separated development sets")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()
    import bench_data

    rows = []
    for name in args.sets.split(","):
        if name not in bench_data.DEV:
            raise SystemExit(f"--sets takes development sets: {', '.join(bench_data.DEV)}")
        rows.append(measure(name, args.repeats))
        if not args.json:
            r = rows[-1]
            print(f"{r['set']:16s} {r['image'][0]}x{r['image'][1]}  median {r['median_s']:.2f} s  "
                  f"best {r['best_s']:.2f} s  ({r['checksum']})", flush=True)
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
