#!/usr/bin/env python
"""The ``views`` network pass before and after session 55: ``before``, the unfrozen scripted
EfficientNet-Lite0 in tiles of ``TILE_SIDE``; ``frozen``, the same network frozen
(``embed.lite0.freeze``: weights as constants, batch norms folded into the convolutions);
``after``, frozen and in tiles made as small as still cover the image in as many
(``embed.views._tile_side``; an image runs in tiles only above ``TILE`` px a side after
resizing, so HeLa frame 5 runs whole in every mode).

``detect`` (classical segmenter, ``views`` embedder, memory store, 10 examples of HeLa frame
0) on HeLa frame 5 (700 x 1100, ``--repeats`` pairs of runs) and on a ``--mosaic``-pixel
square mirror-tiled from HeLa frame 1 (as ``bench_views_speed.py``), each run once per
mode, the order reversed every round, in one process, so that load changes hit each alike;
each run as of a new image (``bench_views_speed._timed_detect`` empties the segmenter's
label cache: a library whose profile keeps the segmenter's own settings labels the image
with them too, and a repeated ``detect`` on the same image would reuse those labels); both
networks warmed first (TorchScript profiles an unfrozen graph's first two calls).
Stages as ``bench_views_speed.py`` splits them. Also: how many of the ``before`` run's
objects the ``frozen`` and ``after`` runs return with the same box and label, and the
median similarity change. Only
the ratios from one run compare (the machines are shared and noisy). Writes
``docs/perf_data/freeze_speed.json``. A whole process's first call: ``bench_startup.py``.

    python scripts/bench_freeze.py --repeats 5 --mosaic 4096 --mosaic-repeats 3
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from bench_bf16 import _agreement  # noqa: E402
from bench_views_speed import _detector, alternate, bench_args, frame_and_mosaic, medians_and_ratios  # noqa: E402

MODES = ("before", "frozen", "after")


@contextlib.contextmanager
def _network(modules: dict, mode: str):
    """While the block runs, the ``views`` embedder's cached network is ``mode``'s, and so
    is the tile side."""
    from sam_detect.embed import views
    from sam_detect.models import torch_utils

    with torch_utils._CACHE_LOCK:
        for key in modules["keys"]:
            torch_utils._CACHE[key] = modules["unfrozen" if mode == "before" else "frozen"]
    even = views._tile_side
    if mode != "after":
        views._tile_side = lambda length, tile, margin: min(length, tile)
    try:
        yield
    finally:
        views._tile_side = even


def compare(modules: dict, det, rgb, repeats: int, name: str) -> dict:
    med, rounds, load = alternate(det, rgb, repeats, name,
                                  {m: functools.partial(_network, modules, m) for m in MODES})
    return {
        "image_hw": list(rgb.shape[:2]),
        "repeats": repeats,
        **medians_and_ratios(med, "before", "after"),
        **{k: v for k, v in medians_and_ratios(med, "before", "frozen").items() if k.startswith("ratio")},
        "agreement": {m: _agreement(rounds[-1]["before"], rounds[-1][m]) for m in MODES[1:]},
        "load_average_start_end": load,
    }


def main() -> None:
    args = bench_args(__doc__, "freeze_speed.json", repeats=5, mosaic_repeats=3)
    import torch

    from sam_detect.embed.effnet import ARCH, weights_file
    from sam_detect.embed.lite0 import load_lite0, script_path
    from sam_detect.io.images import to_rgb_uint8
    from sam_detect.models import torch_utils
    from sam_detect.models.torch_utils import cpu_bf16

    det, img = _detector()
    frame = to_rgb_uint8(img[5])
    det.detect(frame)  # the network loaded (frozen, as shipped) and its cache file written
    keys = [k for k in torch_utils._CACHE if isinstance(k, tuple) and k[0] == "views"]
    frozen = torch_utils._CACHE[keys[0]]
    if not isinstance(frozen, torch.jit.ScriptModule) or list(frozen.parameters()):
        raise SystemExit("the views network is not the frozen scripted copy (SAM_DETECT_EFFNET_SCRIPT=0?)")
    path = weights_file(None)
    if not script_path(path, ARCH).is_file():
        raise SystemExit("no cached scripted copy to compare with")
    unfrozen = load_lite0(path, ARCH, None).to(memory_format=torch.channels_last)
    modules = {"keys": keys, "unfrozen": unfrozen, "frozen": frozen}
    for mode in MODES[:2]:  # warm-up: each graph past its profiling runs
        with _network(modules, mode):
            for _ in range(3):
                det.detect(frame)
    frame_and_mosaic(args, det, img, functools.partial(compare, modules),
                     {"cpus": os.cpu_count(), "bf16": cpu_bf16(), "torch": torch.__version__})


if __name__ == "__main__":
    main()
