#!/usr/bin/env python
"""EfficientNet-Lite0 in float32 and under the CPU's bf16 autocast (``SAM_DETECT_CPU_BF16``).

``detect`` (classical segmenter, ``views`` embedder, memory store, 10 examples of HeLa frame
0 added in float32) on HeLa frame 5 (700 x 1100, ``--repeats`` pairs of runs) and on a
``--mosaic``-pixel square mirror-tiled from HeLa frame 1 (as ``bench_views_speed.py``), each
run once per mode, the order alternating, in one process, so that load changes hit both
alike. Stages as ``bench_views_speed.py`` splits them (the network pass, the per-object
work, segment, search, select). Also: how many of the float32 run's objects the bf16 run
returns with the same box and label, and the median similarity change. Only the ratios
from one run compare (the machines are shared and noisy). Writes
``docs/perf_data/bf16_speed.json``.

    python scripts/bench_bf16.py --repeats 7 --mosaic 4096 --mosaic-repeats 2
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from bench_views_speed import _detector, alternate, bench_args, frame_and_mosaic, medians_and_ratios  # noqa: E402

MODES = {"float32": "0", "bf16": "1"}


def _agreement(a, b) -> dict:
    """Objects of run ``a`` found by run ``b`` with the same box and label; similarity change."""
    key_b = {(tuple(np.round(box, 1)), lab): i for i, (box, lab) in enumerate(zip(b.boxes, b.labels, strict=True))}
    same, diffs = 0, []
    for i, (box, lab) in enumerate(zip(a.boxes, a.labels, strict=True)):
        j = key_b.get((tuple(np.round(box, 1)), lab))
        if j is not None:
            same += 1
            diffs.append(abs(float(a.data["similarity"][i]) - float(b.data["similarity"][j])))
    return {"objects": [len(a), len(b)], "same_box_and_label": same,
            "median_similarity_change": round(float(np.median(diffs)), 4) if diffs else None}


@contextlib.contextmanager
def _precision(value: str):
    """``SAM_DETECT_CPU_BF16=value`` while the block runs (read by every network pass)."""
    os.environ["SAM_DETECT_CPU_BF16"] = value
    yield


def compare(det, rgb: np.ndarray, repeats: int, name: str) -> dict:
    med, rounds, load = alternate(det, rgb, repeats, name,
                                  {mode: functools.partial(_precision, v) for mode, v in MODES.items()})
    return {
        "image_hw": list(rgb.shape[:2]),
        "repeats": repeats,
        **medians_and_ratios(med, "float32", "bf16"),
        "agreement": _agreement(rounds[-1]["float32"], rounds[-1]["bf16"]),
        "load_average_start_end": load,
    }


def main() -> None:
    args = bench_args(__doc__, "bf16_speed.json", repeats=7, mosaic_repeats=2)
    import torch

    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        raise SystemExit("this CPU has no oneDNN bf16 kernels: nothing to compare")
    from sam_detect.io.images import to_rgb_uint8
    from sam_detect.models.torch_utils import cpu_bf16

    os.environ.pop("SAM_DETECT_CPU_BF16", None)
    native = cpu_bf16()
    os.environ["SAM_DETECT_CPU_BF16"] = "0"
    det, img = _detector()  # the library's examples in float32
    frame = to_rgb_uint8(img[5])
    for mode in MODES.values():  # warm-up: model loaded, caches filled
        os.environ["SAM_DETECT_CPU_BF16"] = mode
        det.detect(frame)
    frame_and_mosaic(args, det, img, compare, {"cpus": os.cpu_count(), "bf16_native": native,
                                               "torch": torch.__version__})


if __name__ == "__main__":
    main()
