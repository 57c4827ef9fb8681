#!/usr/bin/env python
"""The network pass run beside segmentation (``ViewsEmbedder.prefetch``) against after it.

``detect`` (classical segmenter, ``views`` embedder, memory store, 10 examples of HeLa frame
0) on HeLa frame 5 (700 x 1100, ``--repeats`` pairs of runs) and on a ``--mosaic``-pixel
square mirror-tiled from HeLa frame 1 (as ``bench_views_speed.py``), once per mode and
round, the order alternating, in one process, so that load changes hit both alike:

- ``after``: the pass starts once the candidates are known (``SAMDetect._prefetch_maps``
  switched off: the order before session 27);
- ``beside``: the pass starts on a worker thread before segmentation (the default).

Stages as ``bench_views_speed.py`` splits them (``network``: the pass's own time, longer
when it shares the cores; ``per_object``: the rest of ``embed``). Also whether both modes
return the same objects, boxes, masks and labels every round. Only ratios from one run
compare (the machines are shared and noisy). Writes ``docs/perf_data/prefetch.json``.

    python scripts/bench_prefetch.py --repeats 9 --mosaic 4096 --mosaic-repeats 5
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from bench_views_speed import (  # noqa: E402
    _detector,
    _same,
    alternate,
    bench_args,
    frame_and_mosaic,
    medians_and_ratios,
)


@contextlib.contextmanager
def _after_segmentation():
    """``detect`` with no pass started early: the network runs inside the embed stage."""
    from sam_detect.pipeline import SAMDetect

    started = SAMDetect._prefetch_maps
    SAMDetect._prefetch_maps = lambda self, rgb: None
    try:
        yield
    finally:
        SAMDetect._prefetch_maps = started


MODES = {"after": _after_segmentation, "beside": contextlib.nullcontext}


def compare(det, rgb: np.ndarray, repeats: int, name: str) -> dict:
    med, rounds, load = alternate(det, rgb, repeats, name, MODES)
    return {
        "image_hw": list(rgb.shape[:2]),
        "objects": len(rounds[-1]["beside"]),
        "repeats": repeats,
        **medians_and_ratios(med, "after", "beside"),
        "identical_objects_boxes_masks_labels": all(
            _same(o["after"], o["beside"])
            and np.array_equal(o["after"].data["similarity"], o["beside"].data["similarity"]) for o in rounds),
        "load_average_start_end": load,
    }


def main() -> None:
    args = bench_args(__doc__, "prefetch.json", repeats=9, mosaic_repeats=5)
    from sam_detect.io.images import to_rgb_uint8
    from sam_detect.models.torch_utils import cpu_bf16

    det, img = _detector()
    frame = to_rgb_uint8(img[5])
    for mode in MODES.values():  # warm-up: model loaded, caches filled
        with mode():
            det.detect(frame)
    frame_and_mosaic(args, det, img, compare, {"cpus": os.cpu_count(), "bf16": cpu_bf16()})


if __name__ == "__main__":
    main()
