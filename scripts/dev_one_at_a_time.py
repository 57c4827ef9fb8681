#!/usr/bin/env python
"""Examples added in one ``add`` against one ``add`` each, as the browser UI's clicks add
them (development only; session 88).

The few-shot protocol of ``bench_examples.py`` on each data set, its draws unchanged; with
``--mode single`` every drawn example is given to ``SAMDetect.add_examples`` on its own, in
the order drawn. Since session 88 an ``add`` measures the library's earlier examples of its
image again with its own, so the two modes should give the same F1 (before, each example's
settings were measured at its own contrast and size).

    python scripts/dev_one_at_a_time.py --datasets hela,dev_u2os,dev_rpe1 --mode batch
    python scripts/dev_one_at_a_time.py --datasets hela,dev_u2os,dev_rpe1 --mode single
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="hela,dev_u2os,dev_rpe1")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--mode", choices=("batch", "single"), default="batch")
    args = ap.parse_args()
    import bench_examples

    from sam_detect import DetectorConfig, pipeline

    if args.mode == "single":
        whole = pipeline.SAMDetect.add_examples

        def one_by_one(self, image, instances, labels=None, **options):
            labels = list(labels) if labels is not None else list(instances.labels)
            return [i for k in range(len(instances))
                    for i in whole(self, image, instances[k : k + 1], labels[k : k + 1], **options)]

        pipeline.SAMDetect.add_examples = one_by_one
    config = DetectorConfig(segmenter="classical", embedder="views", store="memory")
    seeds = tuple(int(s) for s in args.seeds.split(","))
    for name in args.datasets.split(","):
        rows = bench_examples.protocol_dataset(name, config, seeds)["rows"]
        print(f"{name} ({args.mode}): " + ", ".join(f"{k} {v['f1']:.4f}" for k, v in rows.items()), flush=True)


if __name__ == "__main__":
    main()
