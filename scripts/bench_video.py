"""Benchmark the video loop: fps and per-frame latency of the offline pipeline at 640×480.

The scene is synthetic (sam_detect.video.synthetic.MovingShapes: ~10 bright discs and
squares moving over a textured background, with sensor noise); the detector is the offline
pipeline (classical segmenter + an embedder, memory store) taught from frame 0.

Modes, measured in the same run and interleaved (all modes once per repeat), so that their
ratios stay comparable on a shared, noisy machine:

  all            every frame detected (--every 1, change detection off)
  every3         --every 3
  change         change detection on (threshold 3) on a scene that pauses: objects move
                 for 1 frame in 4 and hold still, with fresh sensor noise, for 3
  change-moving  change detection on the always-moving scene (its overhead when it never fires)
  live           the file read as a camera paced at the source fps: end-to-end latency from
                 capture to result, and frames dropped

Usage:
  python scripts/bench_video.py                      # handcrafted and effnet, 3 repeats
  python scripts/bench_video.py --embedder effnet --frames 60 --repeats 5 --json out.json
  OMP_WAIT_POLICY=PASSIVE python scripts/bench_video.py   # see docs/perf_video.md: shared CPUs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sam_detect.instances import Instances  # noqa: E402
from sam_detect.masks import label_image_to_masks  # noqa: E402
from sam_detect.pipeline import DetectorConfig, SAMDetect  # noqa: E402
from sam_detect.video import StreamStats, detect_stream, open_source  # noqa: E402
from sam_detect.video.sources import FrameSource  # noqa: E402
from sam_detect.video.synthetic import MovingShapes  # noqa: E402


def write_video(path: str, scene: MovingShapes, n: int, fps: float, pause: int = 1) -> str:
    """Frame t shows the scene at time ``(t // pause) * pause`` with noise of its own."""
    import cv2

    vw = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), fps, (scene.w, scene.h))
    for t in range(n):
        rgb = scene.frame((t // pause) * pause, noise_key=t)
        vw.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    vw.release()
    return path


class Paced(FrameSource):
    """A file delivered in real time, like a camera: live mode, frames dropped when late."""

    def __init__(self, src: FrameSource, fps: float) -> None:
        super().__init__()
        self.src, self.period, self.live, self.fps, self.name = src, 1.0 / fps, True, fps, "paced"

    def __iter__(self):
        t0 = time.perf_counter()
        for i, f in enumerate(self.src):
            wait = t0 + i * self.period - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            f.captured_at = time.perf_counter()
            yield f


def run(det, path, *, live_fps=None, **kw):
    stats = StreamStats()
    stage: dict[str, list[float]] = {}
    with open_source(path) as src:
        source = Paced(src, live_fps) if live_fps else src
        for r in detect_stream(det, source, stats=stats, **kw):
            if r.status == "detected":
                for k, v in r.instances.metadata.get("timings", {}).items():
                    stage.setdefault(k, []).append(v)
    return stats, {k: statistics.median(v) for k, v in stage.items()}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--embedder",
        action="append",
        choices=["handcrafted", "effnet", "clip", "sam2"],
        help="repeat to compare (default: handcrafted and effnet)",
    )
    ap.add_argument("--frames", type=int, default=45)
    ap.add_argument("--objects", type=int, default=10)
    ap.add_argument(
        "--fps", type=float, default=15.0, help="source frame rate (live mode paces at it)"
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--threads", type=int, help="torch threads of torch embedders (default: torch's)"
    )
    ap.add_argument("--json", help="write all numbers here")
    args = ap.parse_args()
    embedders = args.embedder or ["handcrafted", "effnet"]

    scene = MovingShapes(args.objects, (640, 480), radius=18, speed=3.0, noise=3.0, seed=0)
    tmp = tempfile.mkdtemp(prefix="bench_video_")
    moving = write_video(os.path.join(tmp, "moving.avi"), scene, args.frames, args.fps)
    pausing = write_video(os.path.join(tmp, "pausing.avi"), scene, args.frames, args.fps, pause=4)
    modes = {
        "all": (moving, {"every": 1, "change_threshold": 0}),
        "every3": (moving, {"every": 3, "change_threshold": 0}),
        "change": (pausing, {"every": 1, "change_threshold": 3.0}),
        "change-moving": (moving, {"every": 1, "change_threshold": 3.0}),
        "live": (
            moving,
            {"every": 1, "change_threshold": 0, "live_fps": args.fps, "queue_size": 1},
        ),
    }
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    report = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_before": load,
        "frames": args.frames,
        "objects": args.objects,
        "threads": args.threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "results": {},
    }
    print(
        f"# bench_video: 640x480, {args.objects} objects, {args.frames} frames, {args.repeats} repeats, "
        f"{os.cpu_count()} cores, load average before {load}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, threads={args.threads}"
    )
    for emb in embedders:
        torch_emb = emb in ("effnet", "clip", "sam2")
        emb_opts = {"num_threads": args.threads} if args.threads and torch_emb else {}
        det = SAMDetect(
            DetectorConfig(
                store="memory",
                segmenter="classical",
                embedder=emb,
                embedder_options=emb_opts,
                library="bench",
                device=args.device,
            )
        )
        masks, ids = label_image_to_masks(scene.label_image(0))
        det.add_examples(
            scene.frame(0), Instances(masks=masks), [scene.shapes[i - 1].label for i in ids]
        )
        det.detect(scene.frame(1))  # warm up (model load, first-call costs)
        # modes interleaved in each repeat, so that load from other processes spreads evenly
        all_runs: dict[str, list] = {mode: [] for mode in modes}
        for _ in range(args.repeats):
            for mode, (path, kw) in modes.items():
                all_runs[mode].append(run(det, path, **kw))
        rows = {}
        for mode, runs in all_runs.items():
            fps = statistics.median(s.fps for s, _ in runs)
            lat = statistics.median(statistics.median(s.latencies) for s, _ in runs if s.latencies)
            det_fps = statistics.median(s.detect_fps for s, _ in runs)
            s0 = runs[len(runs) // 2][0]
            stage = {k: statistics.median(st[k] for _, st in runs if k in st) for k in runs[0][1]}
            rows[mode] = {
                "fps": round(fps, 2),
                "detect_fps": round(det_fps, 2),
                "latency_median_ms": round(lat * 1000, 1),
                "detected": s0.detected,
                "reused": s0.reused,
                "skipped": s0.skipped,
                "dropped": s0.dropped,
                "stages_ms": {k: round(v * 1000, 1) for k, v in stage.items()},
            }
        base = rows["all"]["fps"]
        print(f"\n## embedder: {emb}  ({det.choices.get('embedder')})\n")
        print(
            "| mode | fps | × all | detections/s | median latency (ms) | detected / reused / skipped / dropped |"
        )
        print("|---|---|---|---|---|---|")
        for mode, r in rows.items():
            print(
                f"| {mode} | {r['fps']:.1f} | {r['fps'] / base:.2f} | {r['detect_fps']:.1f} | "
                f"{r['latency_median_ms']:.0f} | {r['detected']} / {r['reused']} / {r['skipped']} / "
                f"{r['dropped']} |"
            )
        st = rows["all"]["stages_ms"]
        print(
            "\nstages per detected frame (median ms): "
            + ", ".join(f"{k} {v:.0f}" for k, v in st.items())
        )
        report["results"][emb] = rows
        det.close()
    report["load_after"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"\nload average after: {report['load_after']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
