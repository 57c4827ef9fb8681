"""Benchmark SAM2 image-mode embedding of a large image: tiled scale policy vs whole image.

SAM2's encoder turns its (resized) input into a 64 x 64 feature map at the 1024-pixel
input, so pooled over a whole 4096-pixel image one feature cell covers 64 x 64 px and a
30-pixel object falls into one or two cells. Image mode's scale policy
(``sam_detect.segment.tiling.sam2_windows`` / ``best_window``, the ``sam2`` segmenter's)
encodes an image larger than twice the input side in 1024-pixel tiles and pools each
object from the tile that holds it: 16 x 16 px cells, at the cost of one encoding per tile
used. This script measures that cost.

Setup: SAM 2.1 tiny (``sam2.1_hiera_t``) at its real 1024-pixel input with **random
weights**, written to a temp folder in the official checkpoint layout and loaded through
sam-detect's loader (``scripts/bench_sam2.py``'s ``random_checkpoint``). Compute cost does
not depend on weight values; nothing here says anything about accuracy.

Images: synthetic 4096 x 4096 and 2048 x 2048 RGB with ``--objects`` discs of
``--diameter`` pixels: some on every tile seam (where 1024-pixel tiles overlapping by 128
px meet), one in each corner, the rest at random. For each image size and policy
(``tiled``: the default ``tile_size=None``; ``whole``: ``tile_size=0``) it reports:

- wall and CPU seconds of ``SAM2Embedder.embed_instances`` from a cold encoding cache
  (median over up to ``--repeats`` runs; fewer when they would exceed ``--budget-s``);
- encodings done (``SAM2Runtime.encodings``);
- per object the feature-cell size in pixels (window side / feature-map side; max,
  median, min over objects) and the number of feature cells its mask touches (median).

A 2048-pixel image is at the policy's limit (twice the input side), so both policies
encode it whole: the same work, timed twice.

    python scripts/bench_sam2_tiles.py --out docs/perf_data/sam2_tiles.json
    python scripts/bench_sam2_tiles.py --sizes 2048 --repeats 1      # quick
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's sam_detect
sys.path.insert(0, str(ROOT / "scripts"))
from bench_sam2 import machine_info, random_checkpoint, timed  # noqa: E402

TILE, OVERLAP = 1024, 128  # the policy's tiles at the default input (for seam placement)


def disc(d: int) -> np.ndarray:
    r = d / 2
    yy, xx = np.mgrid[:d, :d] + 0.5
    return (xx - r) ** 2 + (yy - r) ** 2 < r * r


def disc_scene(side: int, n: int, d: int, seed: int = 0):
    """``(image, Instances)``: ``n`` discs of ``d`` px on a ``side``-pixel square image —
    centred on every inner tile edge (crossing one seam, some crossing two), in the four
    corners, the rest random — masks kept as crops (never ``(N, side, side)``)."""
    from sam_detect.instances import Instances
    from sam_detect.segment.tiling import tile_windows

    rng = np.random.default_rng(seed)
    spans = {(x0, x1) for x0, _, x1, _ in tile_windows((side, side), TILE, OVERLAP)}
    edges = sorted({e for a, b in spans for e in (a, b) if 0 < e < side})
    centres = [(e, int(rng.integers(d, side - d))) for e in edges]  # vertical seams
    centres += [(int(rng.integers(d, side - d)), e) for e in edges]  # horizontal seams
    centres += [(e, e) for e in edges[::2]]  # seam crossings
    lo, hi = d // 2, side - d // 2
    centres += [(lo, lo), (hi, lo), (lo, hi), (hi, hi)]  # corners
    centres = centres[:n]
    while len(centres) < n:
        centres.append((int(rng.integers(lo, hi)), int(rng.integers(lo, hi))))
    img = np.full((side, side, 3), 25, np.uint8)
    img += rng.integers(0, 20, size=(side, side, 1), dtype=np.uint8)  # some texture
    m = disc(d)
    origins = np.array(
        [
            (min(max(cx - d // 2, 0), side - d), min(max(cy - d // 2, 0), side - d))
            for cx, cy in centres
        ],
        dtype=np.int64,
    )
    for x0, y0 in origins:
        img[y0 : y0 + d, x0 : x0 + d][m] = rng.integers(120, 255, size=3, dtype=np.uint8)
    return img, Instances.from_crops([m] * n, origins, (side, side))


def cell_stats(emb, inst) -> dict:
    """Per object: feature-cell side in px in the window it is pooled from, and cells touched."""
    from sam_detect.models.sam2_runtime import cell_weights

    g = emb.runtime.grid
    wins = emb.windows(inst)
    cell = np.maximum(wins[:, 2] - wins[:, 0], wins[:, 3] - wins[:, 1]) / g
    touched = [
        int(np.count_nonzero(cell_weights(inst[i : i + 1], None, (g, g), window=tuple(w))))
        for i, w in enumerate(wins)
    ]
    return {
        "windows": len({tuple(int(v) for v in w) for w in wins}),
        "cell_px_max": float(cell.max()),
        "cell_px_median": float(np.median(cell)),
        "cell_px_min": float(cell.min()),
        "cells_touched_median": float(np.median(touched)),
        "cells_touched_min": int(min(touched)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", default="2048,4096", help="square image sides")
    ap.add_argument("--objects", type=int, default=40)
    ap.add_argument("--diameter", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3, help="runs per case, at most")
    ap.add_argument(
        "--budget-s",
        type=float,
        default=300.0,
        help="no further run of a case once its runs so far plus one more would exceed this",
    )
    ap.add_argument("--out", default=None, help="write results as JSON here")
    args = ap.parse_args()


    from sam_detect.embed.sam2 import SAM2Embedder

    tmp = tempfile.TemporaryDirectory()
    ckpt = str(random_checkpoint(args.model, Path(tmp.name)))
    kw = {"model": args.model, "checkpoint": ckpt, "device": args.device}
    policies = {"tiled": SAM2Embedder(**kw), "whole": SAM2Embedder(tile_size=0, **kw)}
    rt = policies["tiled"].runtime  # one runtime, shared by both embedders
    assert policies["whole"].runtime is rt
    rt.image_embed(np.zeros((rt.image_size, rt.image_size, 3), np.uint8))  # warm-up
    res: dict = {
        "machine": {
            **machine_info(args.device),
            "uptime_start": subprocess.run(
                ["uptime"], capture_output=True, text=True
            ).stdout.strip(),
        },
        "model": f"sam2.1 {args.model}",
        "input_size": rt.image_size,
        "feature_grid": rt.grid,
        "weights": "random (compute cost only; no accuracy)",
        "objects": {"n": args.objects, "diameter_px": args.diameter},
        "tiling": {"tile": TILE, "overlap": OVERLAP, "policy": "tiling.sam2_windows + best_window"},
        "cases": {},
    }
    for side in [int(s) for s in args.sizes.split(",") if s]:
        img, inst = disc_scene(side, args.objects, args.diameter)
        for name, emb in policies.items():
            stats = cell_stats(emb, inst)
            runs, cpus, encs, t_case = [], [], [], time.perf_counter()
            while len(runs) < args.repeats:
                if runs and time.perf_counter() - t_case + max(runs) > args.budget_s:
                    break
                n0 = rt.encodings
                _, (wall,), vec, cpu = timed(
                    lambda e=emb, im=img, ins=inst: e.embed_instances(im, ins), 1, before=rt.clear
                )
                assert vec.shape == (args.objects, 256)
                runs.append(wall)
                cpus.append(cpu)
                encs.append(rt.encodings - n0)
            key = f"{side}/{name}"
            res["cases"][key] = {
                "image": [side, side],
                "tile_size": emb.tile_size,
                "median_s": round(statistics.median(runs), 2),
                "runs_s": [round(x, 2) for x in runs],
                "median_cpu_s": round(statistics.median(cpus), 2),
                "repeats": len(runs),
                "encodings": encs[-1],
                **stats,
            }
            print(f"{key}: {json.dumps(res['cases'][key])}", flush=True)
    res["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
