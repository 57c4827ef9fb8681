#!/usr/bin/env python
"""Benchmark the store backends: fill time, and search latency/throughput for a batch of
query vectors, against libraries of several sizes and vector sizes.

    python scripts/bench_store.py                          # 1k/10k/100k x 512/1280-d, 200 queries
    python scripts/bench_store.py --sizes 1000 10000 --dims 512 --backends memory edge
    python scripts/bench_store.py --qdrant-url http://localhost:6333   # add the server

Vectors are synthetic but shaped like embeddings: 50 classes, each a random centre plus
noise (cosine to the own centre ~0.6), L2-normalised; queries come from the same classes.
Every figure is the median of ``--repeats`` runs of one batched ``Store.search`` call.
The client's local mode is pure Python and slow past ~20k examples: it is capped by
``--qdrant-local-max`` (sizes above are reported as skipped). Edge figures are given as
filled (exhaustive search over unindexed segments) and, up to ``--optimize-max``, after
``optimize()`` built its HNSW index, with recall@k against the exact answer.

Prints a Markdown table (and ``--json FILE`` writes the raw numbers).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import platform
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def make_data(
    n: int, dim: int, n_queries: int, seed: int = 0
) -> tuple[np.ndarray, list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    cls = rng.integers(0, 50, n)
    vecs = np.empty((n, dim), np.float32)
    for s in range(0, n, 20_000):  # in chunks: 100k x 1280 of float64 noise would be 1 GB
        e = min(s + 20_000, n)
        noise = rng.normal(size=(e - s, dim)).astype(np.float32) / np.sqrt(dim)
        vecs[s:e] = centres[cls[s:e]] + 1.3 * noise
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    q_cls = rng.integers(0, 50, n_queries)
    q = centres[q_cls] + 1.3 * rng.normal(size=(n_queries, dim)).astype(np.float32) / np.sqrt(dim)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return vecs, [f"class{c}" for c in cls], q


def open_store(backend: str, folder: Path, url: str | None, api_key: str | None):
    from sam_detect.store import create_store

    if backend == "memory":
        return create_store("memory")
    if backend == "qdrant-local":
        return create_store("qdrant", path=folder / "qdrant")
    if backend == "edge":
        return create_store("edge", path=folder / "edge")
    if backend == "qdrant-server":
        return create_store("qdrant", url=url, api_key=api_key, timeout=120)
    raise ValueError(backend)


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def recall(got: list, exact: list, k: int) -> float:
    hits = [
        len({n.id for n in g} & {n.id for n in e}) / max(len(e), 1)
        for g, e in zip(got, exact, strict=True)
    ]
    return float(np.mean(hits))


def bench_one(backend: str, n: int, dim: int, args) -> list[dict]:
    from sam_detect.store.base import LibraryMeta

    vecs, labels, queries = make_data(n, dim, args.queries)
    folder = Path(tempfile.mkdtemp(prefix="bench_store_", dir=args.tmp))
    rows = []
    store = open_store(backend, folder, args.qdrant_url, args.qdrant_api_key)
    name = f"bench-{n}-{dim}"
    try:
        if store.has_library(name):
            store.delete_library(name)
        store.create_library(LibraryMeta(name=name, embedder_id="bench", dim=dim))
        ids = [f"{i:032x}" for i in range(n)]
        ids = [f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}" for x in ids]
        t = time.perf_counter()
        for s in range(0, n, 10_000):  # like many `add` calls, one per annotated batch
            store.add(name, vecs[s : s + 10_000], labels[s : s + 10_000], ids=ids[s : s + 10_000])
        fill_s = time.perf_counter() - t
        search_s, res = timed(lambda: store.search(name, queries, args.top_k), args.repeats)
        exact = _exact(vecs, ids, queries, args.top_k)
        row = {
            "backend": backend,
            "n": n,
            "dim": dim,
            "fill_s": fill_s,
            "search_s": search_s,
            "qps": args.queries / search_s,
            "recall": recall(res, exact, args.top_k),
            "state": "filled",
        }
        size = getattr(store, "storage_bytes", None)
        row["disk_mb"] = (size(name) or 0) / 2**20 if size and backend != "memory" else None
        rows.append(row)
        print(_fmt(row), flush=True)
        if backend == "edge" and n <= args.optimize_max:
            t = time.perf_counter()
            store.optimize(name)
            opt_s = time.perf_counter() - t
            search_s, res = timed(lambda: store.search(name, queries, args.top_k), args.repeats)
            row2 = {
                **row,
                "state": "optimized",
                "optimize_s": opt_s,
                "search_s": search_s,
                "qps": args.queries / search_s,
                "recall": recall(res, exact, args.top_k),
                "disk_mb": store.storage_bytes(name) / 2**20,
            }
            rows.append(row2)
            print(_fmt(row2), flush=True)
        if backend == "qdrant-server":
            store.delete_library(name)
    finally:
        store.close()
        gc.collect()
        shutil.rmtree(folder, ignore_errors=True)
    return rows


def _exact(vecs, ids, queries, k):
    from sam_detect.store.base import Neighbour

    s = queries @ vecs.T
    top = np.argsort(-s, axis=1)[:, :k]
    return [[Neighbour(ids[j], float(s[i, j]), "") for j in row] for i, row in enumerate(top)]


def _fmt(r: dict) -> str:
    opt = f" optimize {r['optimize_s']:.1f}s" if "optimize_s" in r else ""
    return (
        f"{r['backend']:>13} {r['state']:>9} n={r['n']:>6} d={r['dim']:>4}: fill {r['fill_s']:7.2f}s{opt} "
        f"search {r['search_s']:6.3f}s ({r['qps']:7.0f} q/s) recall@k {r['recall']:.3f}"
    )


def markdown(rows: list[dict], args) -> str:
    head = (
        f"{args.queries} queries, top_k={args.top_k}, median of {args.repeats}; "
        f"{platform.processor() or platform.machine()}, {_cores()} cores; "
        f"sam-detect stores on {_versions()}\n\n"
        "| backend | state | examples | dim | fill (s) | search 200 q (s) | queries/s | recall@k | disk (MiB) |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for r in rows:
        if r.get("skipped"):
            lines.append(
                f"| {r['backend']} | skipped | {r['n']:,} | {r['dim']} | {r['skipped']} | | | | |"
            )
            continue
        fill = f"{r['fill_s']:.2f}" + (
            f" (+{r['optimize_s']:.1f} optimize)" if "optimize_s" in r else ""
        )
        disk = f"{r['disk_mb']:.0f}" if r.get("disk_mb") else ""
        lines.append(
            f"| {r['backend']} | {r['state']} | {r['n']:,} | {r['dim']} | {fill} | {r['search_s']:.3f} | "
            f"{r['qps']:.0f} | {r['recall']:.3f} | {disk} |"
        )
    return head + "\n".join(lines) + "\n"


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for pkg in ("qdrant-client", "qdrant-edge-py", "numpy"):
        with contextlib.suppress(PackageNotFoundError):
            out.append(f"{pkg} {version(pkg)}")
    return ", ".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    p.add_argument("--dims", type=int, nargs="+", default=[512, 1280])
    p.add_argument(
        "--backends",
        nargs="+",
        default=["memory", "edge", "qdrant-local"],
        choices=["memory", "edge", "qdrant-local", "qdrant-server"],
    )
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--qdrant-local-max",
        type=int,
        default=20_000,
        help="largest library to try in the client's pure-Python local mode",
    )
    p.add_argument(
        "--optimize-max",
        type=int,
        default=20_000,
        help="largest edge library to optimize() (index build is slow on few cores)",
    )
    p.add_argument("--qdrant-url")
    p.add_argument("--qdrant-api-key")
    p.add_argument("--tmp", default=None, help="folder for the temporary libraries")
    p.add_argument("--json", help="write the raw numbers here")
    args = p.parse_args()
    if "qdrant-server" in args.backends and not args.qdrant_url:
        p.error("--backends qdrant-server needs --qdrant-url")
    warnings.simplefilter("ignore")  # size warnings are expected here
    rows: list[dict] = []
    t0 = time.perf_counter()
    for dim in args.dims:
        for n in args.sizes:
            for backend in args.backends:
                if backend == "qdrant-local" and n > args.qdrant_local_max:
                    rows.append(
                        {
                            "backend": backend,
                            "n": n,
                            "dim": dim,
                            "skipped": f"> --qdrant-local-max {args.qdrant_local_max:,}",
                        }
                    )
                    continue
                rows.extend(bench_one(backend, n, dim, args))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s\n")
    print(markdown(rows, args))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
