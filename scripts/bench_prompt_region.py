#!/usr/bin/env python
"""A click that follows the examples on a large image: the region around it against the whole image.

HeLa frame 0 tiled into square mosaics (``--sides``), a library of 5 of its nuclei; per
mode and side, a fresh detector times, in this order: the first click on a nucleus
(``prompt_to_instances(point=..., label=...)``), the same click again (cached), ``add_example``
at that click, and a click on another nucleus after that add (the library changed, so its
proposals are made again). ``region``: today's code (``pipeline.PROMPT_REGION``); ``whole``:
the same code with the region as large as the image (how every guided prompt was proposed
before session 19). Modes alternate within each repeat; medians of ``--repeats``. Every
click's mask is checked to be the same both ways.

    python scripts/bench_prompt_region.py --sides 2048,4096 --repeats 3 --json out.json

``--part add`` times ``add_examples`` of one nucleus's mask on the mosaic instead: the
``views`` network over the tiles the example's views read (today) against every tile of the
image (``views._pooled_region`` off, as before session 19), alternating, medians; the
vectors are checked identical.

    python scripts/bench_prompt_region.py --part add --sides 4096
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def mosaic(side: int):
    from bench_examples import protocol_runs

    from sam_detect.eval.inputs import load_eval_image

    (images, labels, _), = protocol_runs("hela")[0]
    im, lab = load_eval_image(images[0]).rgb, np.asarray(labels[0])
    reps = (-(-side // im.shape[0]), -(-side // im.shape[1]))
    return im, lab, np.tile(im, (*reps, 1))[:side, :side].copy()


def library(im: np.ndarray, lab: np.ndarray, ids: list[int]):
    """A detector whose library holds the first 5 nuclei of HeLa frame 0."""
    from sam_detect import DetectorConfig, SAMDetect
    from sam_detect.instances import Instances

    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="views"))
    det.add_examples(im, Instances(masks=np.stack([lab == i for i in ids[:5]])), ["nucleus"] * 5)
    return det


def run(side: int, mode: str) -> tuple[dict, list]:
    import sam_detect.pipeline as pl
    from sam_detect.instances import Instances

    im, lab, big = mosaic(side)
    ids = [int(i) for i in np.unique(lab) if i > 0]
    det = library(im, lab, ids)

    def centre(i: int) -> tuple[float, float]:
        ys, xs = np.nonzero(lab == i)
        return float(xs.mean()) + big.shape[1] // 2 // 1100 * 1100, float(ys.mean()) + big.shape[0] // 2 // 700 * 700

    a, b = centre(ids[20]), centre(ids[40])
    saved = pl.PROMPT_REGION
    pl.PROMPT_REGION = saved if mode == "region" else 10**9
    try:
        out, masks = {}, []
        for name, call in (("first click", lambda: det.prompt_to_instances(big, point=a, label="nucleus")),
                           ("same click again", lambda: det.prompt_to_instances(big, point=a, label="nucleus")),
                           ("add_example at it", lambda: det.add_example(big, point=a, label="nucleus")),
                           ("click after the add", lambda: det.prompt_to_instances(big, point=b, label="nucleus"))):
            t = time.perf_counter()
            got = call()
            out[name] = time.perf_counter() - t
            if isinstance(got, Instances):
                masks.append(got.mask_crop(0))
    finally:
        pl.PROMPT_REGION = saved
        det.close()
    return out, masks


def run_add(side: int, every_tile: bool) -> tuple[dict, np.ndarray]:
    from sam_detect.embed import views
    from sam_detect.instances import Instances

    im, lab, big = mosaic(side)
    ids = [int(i) for i in np.unique(lab) if i > 0]
    det = library(im, lab, ids)
    m = np.zeros(big.shape[:2], bool)
    y, x = big.shape[0] // 2 // 700 * 700, big.shape[1] // 2 // 1100 * 1100
    m[y:y + 700, x:x + 1100] = lab == ids[20]
    saved = views._pooled_region
    if every_tile:
        views._pooled_region = lambda instances: None
    try:
        t = time.perf_counter()
        det.add_examples(big, Instances(masks=m[None]), ["nucleus"])
        took = time.perf_counter() - t
        t = time.perf_counter()
        vec = det.embedder.embed_instances(big, Instances(masks=m[None]), typical_area=400.0)
        embed = time.perf_counter() - t
    finally:
        views._pooled_region = saved
        det.close()
    return {"add_examples": took, "embedding alone": embed}, vec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sides", default="2048,4096")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--part", default="click", choices=["click", "add"])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    table = {}
    if args.part == "add":
        for side in (int(s) for s in args.sides.split(",")):
            times: dict[str, dict[str, list]] = {"every tile": {}, "its tiles": {}}
            vecs = {}
            for r in range(args.repeats):
                for mode in (("every tile", "its tiles") if r % 2 == 0 else ("its tiles", "every tile")):
                    t, vecs[mode] = run_add(side, mode == "every tile")
                    for k, v in t.items():
                        times[mode].setdefault(k, []).append(v)
            table[side] = {m: {k: round(statistics.median(v), 3) for k, v in t.items()} for m, t in times.items()}
            table[side]["same_vectors"] = bool(np.array_equal(vecs["every tile"], vecs["its tiles"]))
            for k in times["every tile"]:
                a, b = table[side]["every tile"][k], table[side]["its tiles"][k]
                print(f"{side}²  {k:18s} every tile {a:7.2f} s   its tiles {b:7.2f} s   x{a / max(b, 1e-9):.1f}", flush=True)
            print(f"{side}²  vectors identical: {table[side]['same_vectors']}")
        if args.json:
            Path(args.json).write_text(json.dumps(table, indent=1))
        return
    for side in (int(s) for s in args.sides.split(",")):
        times: dict[str, dict[str, list]] = {"whole": {}, "region": {}}
        for r in range(args.repeats):
            got = {}
            for mode in (("whole", "region") if r % 2 == 0 else ("region", "whole")):
                t, masks = run(side, mode)
                got[mode] = masks
                for k, v in t.items():
                    times[mode].setdefault(k, []).append(v)
            same = all(np.array_equal(x[0], y[0]) and x[1] == y[1] for x, y in zip(got["whole"], got["region"], strict=True))
            if not same:
                print(f"{side}: the masks differ between the modes", file=sys.stderr)
        table[side] = {m: {k: round(statistics.median(v), 3) for k, v in t.items()} for m, t in times.items()}
        table[side]["same_masks"] = same
        for k in times["whole"]:
            w, g = table[side]["whole"][k], table[side]["region"][k]
            print(f"{side}²  {k:22s} whole {w:7.2f} s   region {g:7.2f} s   x{w / max(g, 1e-9):.1f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
