"""Fault injection: SIGKILL library writes at seeded random moments, check all-or-nothing.

The machinery is ``sam_detect.store.killtest`` (shared with ``tests/test_crash_safety.py``):
each trial copies a prepared libraries folder (library ``base``, 11 examples), starts one
write, kills it with SIGKILL after a seeded random delay, then opens the folder again (which
recovers an interrupted batch, see ``sam_detect.store.journal``) and checks that the library
holds all of the change or none of it (ids compared exactly), holds no journal, and is
usable (labels, a search, a further add). Writes: ``add`` (``journal.add``, the write half
of ``sam-detect add``), ``import`` (``library import FILE --as new``), ``merge`` (``library
import FILE --as base --merge``) and ``delete`` (``journal.delete`` of a label's examples).

    python scripts/kill_writes.py --kills 50 --store edge --store qdrant

``--driver fork`` (default; what the tests run) forks each write from a helper process that
has imported the store code; ``--driver cli`` starts a fresh process per write (the real
CLI for import and merge), Python's start-up included. ``--no-journal`` writes past the
journal (``add`` and ``delete``, fork driver): the control, which leaves partial libraries.

Prints one JSON line per (store, scenario) with the outcomes: ``all`` (the kill came after
the commit), ``none`` (before the batch began), ``rolled_back`` / ``finished`` (inside the
batch: the next open undid the add / finished the delete), ``partial`` (the bug this guards
against) and ``broken`` (the library could not be opened or used).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's sam_detect

from sam_detect.store import killtest  # noqa: E402

#: examples per write, per store: a write of ~0.2-0.9 s on 2 shared cores (the client's local
#: mode commits every point, ~10x slower than Edge to fill)
DEFAULT_N = {"edge": 1500, "qdrant": 150, "memory": 3000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=50, help="kills per store and scenario")
    ap.add_argument("--store", action="append", choices=["edge", "qdrant", "memory"])
    ap.add_argument("--scenario", action="append", choices=list(killtest.SCENARIOS))
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--examples", type=int, help="examples per write (default: per store)")
    ap.add_argument("--driver", choices=["fork", "cli"], default="fork")
    ap.add_argument("--no-journal", action="store_true", help="the control: bypass the journal")
    ap.add_argument("--workdir", default="/tmp/sam-detect-kill-writes")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    driver = killtest.ForkDriver(work / "writes.log") if args.driver == "fork" else "cli"
    results = []
    try:
        for store in args.store or ["edge", "qdrant", "memory"]:
            for scenario in args.scenario or ["add", "import", "merge", "delete"]:
                t = time.perf_counter()
                n = args.examples or DEFAULT_N[store]
                setup = killtest.prepare(work, store, scenario, n)
                res = killtest.run_trials(setup, work, args.kills, args.seed, driver=driver,
                                          journaled=not args.no_journal)
                row = {"store": store, "scenario": scenario, "examples": n, "kills": args.kills,
                       "killed": res["killed"], "full_run_s": res["full_s"], **res["outcomes"],
                       "wall_s": round(time.perf_counter() - t, 1)}
                print(json.dumps(row), flush=True)
                results.append(row)
    finally:
        if args.driver == "fork":
            driver.close()
    bad = sum(v for r in results for k, v in r.items() if k.startswith(("partial", "broken")))
    print(f"partial or broken: {bad}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
