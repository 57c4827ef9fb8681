#!/usr/bin/env python
"""CUDA check of the offline pipeline: the README's coins quickstart on the CPU and on the GPU.

Adds three coins as boxes, detects (median of 5 after a warm-up), and compares the effnet
embeddings of the same crops on both devices (bf16 autocast on CUDA). Needs a CUDA machine;
run there as ``python scripts/check_cuda.py`` (numbers in docs/performance.md).
"""

from __future__ import annotations

import time

import numpy as np


def main() -> None:
    import torch
    from skimage import data

    from sam_detect import DetectorConfig, SAMDetect

    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    print("torch", torch.__version__, "cuda", torch.cuda.is_available(), name)
    img = data.coins()
    out = {}
    for dev in ("cpu", "cuda"):
        det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="effnet", device=dev))
        t = time.perf_counter()
        for box in [(19, 32, 68, 78), (79, 37, 123, 77), (131, 28, 181, 78)]:
            det.add_example(img, box=box, label="coin")
        t_add = time.perf_counter() - t
        det.detect(img)  # warm-up
        times = []
        for _ in range(5):
            t = time.perf_counter()
            found = det.detect(img)
            times.append(time.perf_counter() - t)
        crops = [np.repeat(img[30:90, 20:80, None], 3, 2)] * 16
        out[dev] = (len(found), np.asarray(det.embedder.embed(crops)))
        print(f"{dev}: found {len(found)}, add {t_add:.2f} s, detect median {np.median(times):.3f} s, "
              f"stages {found.metadata['timings']}, {det.choices.get('embedder')}")
    cos = float((out["cpu"][1] * out["cuda"][1]).sum(1).mean())
    print(f"same objects: {out['cpu'][0] == out['cuda'][0]}; mean cosine of CPU and CUDA embeddings {cos:.5f}")
    views(img)


def views(img) -> None:
    """The dense ``views`` embedder on both devices: the same vectors, and its speed on a
    4096 x 4096 mosaic of coins."""
    from sam_detect import DetectorConfig, SAMDetect
    from sam_detect.embed.views import ViewsEmbedder

    rgb = np.repeat(img[..., None], 3, axis=2)
    vecs, found = {}, {}
    for dev in ("cpu", "cuda"):
        det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="views", device=dev))
        for box in [(19, 32, 68, 78), (79, 37, 123, 77), (131, 28, 181, 78)]:
            det.add_example(img, box=box, label="coin")
        found[dev] = det.detect(img)
        reps = -(-4096 // np.array(img.shape))
        mosaic = np.ascontiguousarray(np.tile(img, reps)[:4096, :4096])
        det.detect(mosaic[:1024, :1024])  # warm-up
        t = time.perf_counter()
        big = det.detect(mosaic)
        took = time.perf_counter() - t
        print(f"views {dev}: coins found {len(found[dev])}; 4096x4096 mosaic: {len(big)} objects in {took:.2f} s, "
              f"stages {({k: round(v, 2) for k, v in big.metadata['timings'].items()})}")
    for dev in ("cpu", "cuda"):  # the same objects on both devices
        vecs[dev] = ViewsEmbedder(device=dev).embed_instances(rgb, found["cpu"])
    cos = float((vecs["cpu"] * vecs["cuda"]).sum(1).mean())
    print(f"views: counts cpu {len(found['cpu'])}, cuda {len(found['cuda'])}; "
          f"mean cosine of CPU and CUDA vectors of the same objects {cos:.5f}")


if __name__ == "__main__":
    main()
