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


if __name__ == "__main__":
    main()
