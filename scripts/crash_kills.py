#!/usr/bin/env python
"""Kill ``add`` and ``library import`` with SIGKILL at seeded random moments; check that every
library is afterwards all or nothing (issue 14).

Each trial starts a child process that writes to an Edge library folder and kills it
(``kill -9``) after a random delay drawn from the time a full run of that write takes. The
library is then opened in this process (which undoes what the killed one left
half-written) and counted:

- ``add``: 6,000 examples in one ``add`` (six batches of 1,024) to a library of 11: after the
  kill it must hold 11 or 6,011;
- ``import``: an export of 6,000 examples imported as a new library: afterwards absent or
  6,000 (and a second import must work);
- ``merge``: the same export merged into a library of 11: 11 or 6,011.

    python scripts/crash_kills.py --trials 50          # the table in docs/robustness.md
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_ADD = 6000
N_BASE = 11
DIM = 64

CHILD = r"""
import sys, numpy as np
from sam_detect.store.edge import EdgeStore
from sam_detect.store.exchange import import_library
mode, folder, export = sys.argv[1], sys.argv[2], sys.argv[3]
store = EdgeStore(folder)
print("ready", flush=True)
if mode == "add":
    rng = np.random.default_rng(1)
    v = rng.normal(size=(%(n)d, %(dim)d)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    store.add("base", v, ["x"] * len(v))
elif mode == "import":
    import_library(store, export, name="imported")
else:
    import_library(store, export, name="base", merge=True)
store.close()
print("done", flush=True)
""" % {"n": N_ADD, "dim": DIM}


def _vectors(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def make_base(folder: Path) -> None:
    from sam_detect.store.base import LibraryMeta
    from sam_detect.store.edge import EdgeStore

    with EdgeStore(folder) as store:
        store.create_library(LibraryMeta(name="base", embedder_id="test", dim=DIM))
        store.add("base", _vectors(N_BASE, 0), ["y"] * N_BASE)


def make_export(root: Path) -> Path:
    from sam_detect.store.base import LibraryMeta
    from sam_detect.store.edge import EdgeStore
    from sam_detect.store.exchange import export_library

    src = root / "export-src"
    with EdgeStore(src) as store:
        store.create_library(LibraryMeta(name="big", embedder_id="test", dim=DIM))
        store.add("big", _vectors(N_ADD, 2), ["z"] * N_ADD)
        out = root / "big.sdlib"
        export_library(store, "big", out)
    return out


def run_child(mode: str, folder: Path, export: Path, delay: float | None) -> tuple[bool, float]:
    """Run one write; kill it ``delay`` s after it is ready (``None``: let it finish)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, mode, str(folder), str(export)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "ready"
    t = time.perf_counter()
    if delay is None:
        out, err = proc.communicate(timeout=600)
        if proc.returncode:
            raise RuntimeError(f"{mode} failed: {err[-500:]}")
        return False, time.perf_counter() - t
    try:
        proc.wait(timeout=delay)
        killed = False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed = True
    return killed, time.perf_counter() - t


def outcome(mode: str, folder: Path, export: Path) -> str:
    """``none`` / ``all``, or ``BROKEN ...`` when the library is neither."""
    from sam_detect.errors import LibraryNotFoundError
    from sam_detect.store.edge import EdgeStore
    from sam_detect.store.exchange import import_library

    with EdgeStore(folder) as store:
        if mode == "import":
            if not store.has_library("imported"):
                import_library(store, export, name="imported")  # a retry must work
                return "none"
            try:
                n = store.count("imported")  # opening it removes a half import
            except LibraryNotFoundError:
                import_library(store, export, name="imported")  # and then a retry works
                return "none"
            return "all" if n == N_ADD else f"BROKEN {n}"
        n = store.count("base")
        return {N_BASE: "none", N_BASE + N_ADD: "all"}.get(n, f"BROKEN {n}")


def trial(mode: str, seed: int, root: Path, export: Path, duration: float) -> dict:
    folder = root / f"{mode}-{seed}"
    make_base(folder)
    delay = float(np.random.default_rng(seed).uniform(0.0, duration * 1.1))
    killed, _ = run_child(mode, folder, export, delay)
    return {"mode": mode, "seed": seed, "delay_s": round(delay, 3), "killed": killed,
            "outcome": outcome(mode, folder, export)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=50, help="kills per mode")
    ap.add_argument("--modes", default="add,import,merge")
    ap.add_argument("--json", default=None, help="write the trials here")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        export = make_export(root)
        for mode in args.modes.split(","):
            make_base(root / f"{mode}-timing")
            _, duration = run_child(mode, root / f"{mode}-timing", export, None)
            print(f"{mode}: a full run takes {duration:.2f} s", file=sys.stderr)
            for seed in range(args.trials):
                results.append(trial(mode, seed, root, export, duration))
    summary = {}
    for r in results:
        key = (r["mode"], r["outcome"] if not r["outcome"].startswith("BROKEN") else "BROKEN")
        summary[key] = summary.get(key, 0) + 1
    for (mode, out), n in sorted(summary.items()):
        print(f"{mode:7s} {out:7s} {n}")
    print(f"killed mid-write: {sum(r['killed'] for r in results)} of {len(results)}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if any(r["outcome"].startswith("BROKEN") for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
