#!/usr/bin/env python
"""Session 83: what ``detect`` sets up while it runs (``sam_detect._heavy``), on and off, in
fresh processes, the two alternated: ``--switch memory`` (``SAM_DETECT_KEEP_MEMORY``: freed
memory kept for reuse), ``blas`` (``SAM_DETECT_BLAS_ONE_THREAD``: BLAS on one thread) or
``both``; the other setting stays on in both processes.

    python scripts/bench_heavy.py [--switch memory|blas|both] [--runs 3] [--out docs/perf_data/heavy_s83.json]

Each process adds ten nuclei of HeLa frame 0 (as ``bench_threads.py``), then detects on the
4096² mosaic of frame ``5 + k`` (a new image each round) and runs ``detect_many`` over HeLa
frames 1-11. Reported per part: wall seconds, user and system CPU seconds, minor page
faults (``getrusage``), the objects and a digest of them; and the process's resident
memory after each part. The two settings must return the same objects (the script fails
otherwise): only where the memory comes from changes.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _usage() -> np.ndarray:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return np.array([time.perf_counter(), r.ru_utime, r.ru_stime, r.ru_minflt])


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def worker(frame: int, side: int) -> None:
    import hashlib

    from bench_threads import hela_detector, mosaic

    from sam_detect.io.images import load_image

    det, image = hela_detector()
    frames = [load_image(image, frame=k).rgb for k in range(1, 12)]
    big = mosaic(load_image(image, frame=frame).rgb, side)

    def digest(found_all: list) -> str:
        h = hashlib.md5()
        for found in found_all:
            for crop, box in zip(found.crops, found.boxes, strict=True):
                h.update(np.packbits(crop.crop).tobytes())
                h.update(np.asarray(box, np.int64).tobytes())
            h.update(np.asarray(found.scores, np.float32).tobytes())
        return h.hexdigest()[:16]

    for part, run in (("mosaic", lambda: [det.detect(big)]),
                      ("frames", lambda: [f for _, f in det.detect_many(frames)])):
        a = _usage()
        found = run()
        d = _usage() - a
        print(json.dumps({"part": part, "frame": frame, "wall": round(d[0], 3), "user": round(d[1], 3),
                          "system": round(d[2], 3), "faults": int(d[3]), "objects": sum(len(f) for f in found),
                          "digest": digest(found), "rss_mb_after": round(_rss_mb())}), flush=True)
    det.close()


def main() -> None:
    from bench_threads import rounds_parser

    ap = rounds_parser(__doc__, 3, "setting")
    ap.add_argument("--switch", choices=("memory", "blas", "both"), default="memory",
                    help="which setting is on in one process and off in the other")
    args = ap.parse_args()
    names = {"memory": ["SAM_DETECT_KEEP_MEMORY"], "blas": ["SAM_DETECT_BLAS_ONE_THREAD"],
             "both": ["SAM_DETECT_KEEP_MEMORY", "SAM_DETECT_BLAS_ONE_THREAD"]}[args.switch]
    if args.worker:
        worker(*args.worker)
        return
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.runs):
            for on in (("0", "1") if r % 2 == 0 else ("1", "0")):
                env = dict(os.environ, SAM_DETECT_KEEP_MEMORY="1", SAM_DETECT_BLAS_ONE_THREAD="1")
                env.update({name: on for name in names})
                out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(5 + r),
                                      str(args.side)], cwd=tmp, env=env, capture_output=True, text=True, check=True)
                for line in out.stdout.splitlines():
                    if line.startswith("{"):
                        rec = dict(json.loads(line), switch=args.switch, on=on, round=r, load=round(os.getloadavg()[0], 2))
                        records.append(rec)
                        print(f"round {r} {args.switch} {'on ' if on == '1' else 'off'} {rec['part']:6s} wall {rec['wall']:.2f} s user {rec['user']:.2f} "
                              f"system {rec['system']:.2f} faults {rec['faults']} objects {rec['objects']} "
                              f"rss {rec['rss_mb_after']} MB", flush=True)
    for part in ("mosaic", "frames"):
        rows = {k: [x for x in records if x["part"] == part and x["on"] == k] for k in ("0", "1")}
        for r in range(args.runs):
            a, b = (next(x for x in rows[k] if x["round"] == r) for k in ("0", "1"))
            if a["digest"] != b["digest"]:
                raise SystemExit(f"{part}, round {r}: the objects differ with the setting on and off")

        def med(k: str, key: str, rows: dict = rows) -> float:
            return float(np.median([x[key] for x in rows[k]]))

        print(f"{part}, {args.switch} off -> on: median wall {med('0', 'wall'):.2f} -> {med('1', 'wall'):.2f} s "
              f"(ratio {med('1', 'wall') / med('0', 'wall'):.2f}); user {med('0', 'user'):.2f} -> {med('1', 'user'):.2f} s; "
              f"system {med('0', 'system'):.2f} -> {med('1', 'system'):.2f} s; faults {med('0', 'faults'):.0f} -> "
              f"{med('1', 'faults'):.0f}; resident after {med('0', 'rss_mb_after'):.0f} -> {med('1', 'rss_mb_after'):.0f} MB")
    if args.out:
        Path(args.out).write_text(json.dumps(records, indent=1) + "\n")


if __name__ == "__main__":
    main()
