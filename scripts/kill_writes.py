"""Fault injection: SIGKILL library writes at seeded random moments, check all-or-nothing.

Each trial copies a prepared libraries folder (a library ``base`` of 11 examples), starts
one write in a subprocess, kills it with SIGKILL after a seeded random delay, then opens
the folder again (which rolls back an interrupted batch, see ``sam_detect.store.journal``)
and checks:

* ``import``: ``library import FILE --as new`` (the real CLI): ``new`` is absent or holds
  exactly the file's examples;
* ``merge``: ``library import FILE --as base --merge`` (the real CLI): ``base`` holds its
  11 ids, or those and every id of the file;
* ``add``: the write half of ``sam-detect add`` (``journal.add``, what ``SAMDetect.add``
  calls after embedding), N vectors into ``base``: 11 or 11 + N examples, none other;

and that the library is usable afterwards (count, labels, a search, and a second write).

    python scripts/kill_writes.py --kills 50 --store edge --store qdrant

prints one line per (store, scenario) with the outcomes: ``all`` (the kill came after the
commit), ``none`` (the kill came before the batch began), ``rolled_back`` (the kill came
inside the batch and the next open undid it), ``partial`` (the bug this guards against)
and ``broken`` (the library could not be opened or used).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's sam_detect, in the judge as in the workers
DIM = 32
BASE = 11

ADD_WORKER = r"""
import sys, numpy as np
from sam_detect.store import create_store, journal
store_name, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
kw = {"path": path}
store = create_store(store_name, **kw)
rng = np.random.default_rng(7)
v = rng.normal(size=(n, DIM_)).astype("float32")
journal.add(store, "base", v, ["added"] * n, [{"source": "kill-test"}] * n)
store.close()
""".replace("DIM_", str(DIM))


def _store(name: str, path: Path):
    from sam_detect.store import create_store

    return create_store(name, path=str(path))


def prepare(workdir: Path, store: str, n_file: int) -> tuple[Path, Path, list[str], list[str]]:
    """A template libraries folder with ``base`` (11 examples) and an export file of n_file."""
    from sam_detect.store.base import LibraryMeta
    from sam_detect.store.exchange import export_library
    from sam_detect.store.memory import MemoryStore

    template = workdir / f"template-{store}"
    shutil.rmtree(template, ignore_errors=True)
    rng = np.random.default_rng(0)
    s = _store(store, template)
    s.create_library(LibraryMeta(name="base", embedder_id="kill-test", dim=DIM))
    base_ids = s.add("base", rng.normal(size=(BASE, DIM)), ["base"] * BASE)
    s.close()
    src = MemoryStore()
    src.create_library(LibraryMeta(name="exported", embedder_id="kill-test", dim=DIM))
    file_ids = src.add(
        "exported", rng.normal(size=(n_file, DIM)), [f"c{i % 3}" for i in range(n_file)]
    )
    archive = workdir / f"export-{n_file}.samlib.zip"
    export_library(src, "exported", archive, overwrite=True)
    return template, archive, sorted(base_ids), sorted(file_ids)


def command(scenario: str, store: str, folder: Path, archive: Path, n_add: int) -> list[str]:
    py = sys.executable
    if scenario == "add":
        return [py, "-c", ADD_WORKER, store, str(folder), str(n_add)]
    cmd = [py, "-m", "sam_detect", "library", "import", str(archive), "--store", store,
           "--library-path", str(folder)]
    return cmd + (["--as", "new"] if scenario == "import" else ["--as", "base", "--merge"])


def _ids(store, name: str) -> set[str]:
    from sam_detect.store.exchange import read_examples

    return set(read_examples(store, name)[0])


class _RollBacks(logging.Handler):
    """Counts the journal's roll-backs: a kill that landed inside a batch."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "interrupted write" in record.getMessage():
            self.seen += 1


def judge(scenario: str, store: str, folder: Path, base_ids, file_ids, n_add: int) -> str:
    """``all`` (the kill came after the commit), ``none`` (before the batch began),
    ``rolled_back`` (inside the batch: the next open undid it), ``partial`` or
    ``broken:<why>`` for the folder after a kill."""
    handler = _RollBacks()
    logger = logging.getLogger("sam_detect")
    logger.addHandler(handler)
    try:
        out = _judge(scenario, store, folder, base_ids, file_ids, n_add)
    finally:
        logger.removeHandler(handler)
    return "rolled_back" if out == "none" and handler.seen else out


def _judge(scenario: str, store: str, folder: Path, base_ids, file_ids, n_add: int) -> str:
    try:
        s = _store(store, folder)
    except Exception as e:
        return f"broken:open:{type(e).__name__}: {e}"
    try:
        name = "new" if scenario == "import" else "base"
        if scenario == "import" and not s.has_library("new"):
            outcome = "none"
        else:
            ids = _ids(s, name)
            if scenario == "import":
                outcome = "all" if ids == set(file_ids) else f"partial:{len(ids)}"
            elif scenario == "merge":
                outcome = ("none" if ids == set(base_ids) else
                           "all" if ids == set(base_ids) | set(file_ids) else f"partial:{len(ids)}")
            else:
                extra = ids - set(base_ids)
                outcome = ("none" if ids == set(base_ids) else
                           "all" if set(base_ids) <= ids and len(extra) == n_add else f"partial:{len(ids)}")
        # still usable: read, search, write
        if "base" in s.list_libraries():
            s.labels("base")
            s.search("base", np.ones((1, DIM), np.float32), 3)
            s.add("base", np.ones((1, DIM), np.float32), ["after"])
        if s.get_meta("base").extra.get("_pending"):
            outcome = "broken:journal left behind"
        return outcome
    except Exception as e:
        return f"broken:{type(e).__name__}: {e}"
    finally:
        s.close()


def full_time(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    return time.perf_counter() - t


def run_trials(workdir: Path, store: str, scenario: str, kills: int, seed: int,
               n_file: int = 3000, n_add: int = 3000) -> Counter:
    """Kill ``kills`` subprocess writes at seeded moments; returns the outcome counts."""
    workdir.mkdir(parents=True, exist_ok=True)
    template, archive, base_ids, file_ids = prepare(workdir, store, n_file)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    folder = workdir / f"trial-{store}-{scenario}"
    # how long an uninterrupted run takes: kills are spread over [0, 1.1 x that]
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(template, folder)
    total = full_time(command(scenario, store, folder, archive, n_add), env)
    rng = random.Random(seed)
    outcomes: Counter = Counter()
    for _ in range(kills):
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(template, folder)
        delay = rng.uniform(0.0, 1.1 * total)
        proc = subprocess.Popen(command(scenario, store, folder, archive, n_add), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        outcomes[judge(scenario, store, folder, base_ids, file_ids, n_add)] += 1
    outcomes["_full_run_s"] = round(total, 2)  # type: ignore[assignment]
    shutil.rmtree(folder, ignore_errors=True)
    return outcomes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=50, help="kills per store and scenario")
    ap.add_argument("--store", action="append", choices=["edge", "qdrant", "memory"])
    ap.add_argument("--scenario", action="append", choices=["add", "import", "merge"])
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--examples", type=int, default=3000, help="examples per write")
    ap.add_argument("--workdir", default="/tmp/sam-detect-kill-writes")
    args = ap.parse_args()
    results = []
    for store in args.store or ["edge", "qdrant"]:
        for scenario in args.scenario or ["add", "import", "merge"]:
            t = time.perf_counter()
            c = run_trials(Path(args.workdir), store, scenario, args.kills, args.seed,
                           n_file=args.examples, n_add=args.examples)
            row = {"store": store, "scenario": scenario, "kills": args.kills,
                   "full_run_s": c.pop("_full_run_s"), **dict(c),
                   "wall_s": round(time.perf_counter() - t, 1)}
            print(json.dumps(row), flush=True)
            results.append(row)
    bad = sum(v for r in results for k, v in r.items() if k.startswith(("partial", "broken")))
    print(f"partial or broken: {bad}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
