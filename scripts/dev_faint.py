#!/usr/bin/env python
"""Faint, small and packed objects: kinds a user brought that no reported set holds
(development only; session 87).

Each kind makes two images with exact labels (or transforms two HeLa frames): examples are
drawn from the first (whole objects, at random with each seed) and the second is detected and
scored (F1 at IoU 0.5, one-to-one matching), beside the segmenter alone (the classical
segmenter's own candidates, every one accepted).

- ``faint``: nuclei (r 9-13) 30-45 grey values over a ground of 100 with photon and read
  noise: each pixel stands out 2-3 noise sds, each nucleus's mean far more;
- ``half_faint``: the same with every other nucleus bright (300 over the ground);
- ``hela_low``: HeLa frames 0 (examples) and 5 (scored), their contrast over the ground a
  tenth and noise added so that the median nucleus stands out 3 pixel sds (a short exposure);
- ``puncta``: diffraction-limited spots (Gaussian sigma 1.3-1.8 px), scored against a disk of
  twice sigma round each;
- ``packed``: bright nuclei of unequal brightness packed on a hexagonal grid, examples given
  as boxes (each object's box grown by 2 px), as a user draws them;
- ``varied`` (session 88): nuclei whose radii run 7-14 px (4x in area) and whose brightness
  is lognormal (sd 0.7: 5-95 % spans ~10x), well apart on a dark ground.

``--pick`` draws the examples as a user may pick them: ``random`` (default), the
``largest``, ``smallest``, ``brightest`` or ``dimmest`` whole objects (session 88). With
``--one-at-a-time`` they are added one ``add`` each, as the browser UI's clicks add them.

    python scripts/dev_faint.py                              # every kind, 3 and 10 examples, seed 0
    python scripts/dev_faint.py --kinds puncta --shots 3 --seeds 0,1,2
    python scripts/dev_faint.py --kinds varied --shots 10 --pick largest
    python scripts/dev_faint.py --kinds half_faint --shots 10 --seeds 0,1,2 --one-at-a-time
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _finish(signal: np.ndarray, rng, ground: float, noise: float, blur: float = 1.2) -> np.ndarray:
    from scipy import ndimage as ndi

    img = rng.poisson(np.clip(ndi.gaussian_filter(signal, blur) + ground, 0, None)).astype(float)
    img += rng.normal(0, noise, img.shape)
    return np.clip(img, 0, 65535).astype(np.uint16)


def _ellipses(shape, n: int, rmin: float, rmax: float, rng, gap: int = 3) -> np.ndarray:
    from scipy import ndimage as ndi
    from skimage import draw

    lab = np.zeros(shape, np.int32)
    k = 0
    for _ in range(20000):
        if k >= n:
            break
        r, e = rng.uniform(rmin, rmax), rng.uniform(1.0, 1.5)
        a, b = r * np.sqrt(e), r / np.sqrt(e)
        cy, cx = rng.uniform(a + 3, shape[0] - a - 3), rng.uniform(a + 3, shape[1] - a - 3)
        rr, cc = draw.ellipse(cy, cx, a, b, shape=shape, rotation=rng.uniform(0, np.pi))
        grown = np.zeros(shape, bool)
        grown[rr, cc] = True
        if lab[ndi.binary_dilation(grown, iterations=gap)].any():
            continue
        k += 1
        lab[rr, cc] = k
    return lab


def faint(seed: int, half: bool = False):
    rng = np.random.default_rng(seed)
    lab = _ellipses((512, 512), 70, 9, 13, rng)
    signal = np.zeros(lab.shape)
    for i in range(1, lab.max() + 1):
        signal[lab == i] = 300 if half and i % 2 else rng.uniform(30, 45)
    return _finish(signal, rng, 100, 6), lab


def varied(seed: int):
    rng = np.random.default_rng(seed)
    lab = _ellipses((512, 512), 80, 7, 14, rng)
    amp = np.clip(200 * np.exp(rng.normal(0, 0.7, lab.max())), 50, 1000)
    signal = np.zeros(lab.shape)
    for i in range(1, lab.max() + 1):
        signal[lab == i] = amp[i - 1]
    return _finish(signal, rng, 100, 6), lab


def puncta(seed: int):
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    shape = (384, 384)
    lab, signal = np.zeros(shape, np.int32), np.zeros(shape)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    k = 0
    for _ in range(5000):
        if k >= 150:
            break
        cy, cx = rng.uniform(8, shape[0] - 8, 2)
        s = rng.uniform(1.3, 1.8)
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        m = d2 <= (2 * s) ** 2
        if ndi.binary_dilation(m, iterations=3)[lab > 0].any():
            continue
        k += 1
        lab[m] = k
        signal += rng.uniform(60, 200) * np.exp(-d2 / (2 * s * s))
    return _finish(signal, rng, 30, 4, blur=0.01), lab


def packed(seed: int, n: int = 14, r: int = 10, step: int = 18):
    from skimage.draw import disk

    rng = np.random.default_rng(seed)
    size = (n + 1) * step
    img = np.full((size, size), 40.0)
    lab = np.zeros((size, size), np.int32)
    for k, (row, col) in enumerate(((a, b) for a in range(n) for b in range(n)), 1):
        cy = step // 2 + row * step * 0.87 + 6
        cx = step // 2 + col * step + (step / 2 if row % 2 else 0) + 4
        rr, cc = disk((cy, cx), r, shape=img.shape)
        free = lab[rr, cc] == 0
        img[rr[free], cc[free]] = rng.uniform(120, 220)
        lab[rr[free], cc[free]] = k
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), lab


def _hela_low(frame: int):
    import tifffile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_accuracy import HELA_IMG, HELA_SEG  # the shared data's paths

    f = tifffile.imread(HELA_IMG)[frame].astype(float)
    lab = tifffile.imread(HELA_SEG)[frame]
    ground = np.median(f)
    median = np.median([f[lab == i].mean() - ground for i in np.unique(lab)[1:]])
    rng = np.random.default_rng(frame)
    img = ground + (f - ground) / 10 + rng.normal(0, median / 30, f.shape)
    return np.clip(img, 0, 65535).astype(np.uint16), lab


KINDS = {
    "faint": lambda k: faint(100 + k),
    "half_faint": lambda k: faint(100 + k, half=True),
    "hela_low": lambda k: _hela_low((0, 5)[k]),
    "puncta": lambda k: puncta(100 + k),
    "packed": lambda k: packed(100 + k),
    "varied": lambda k: varied(100 + k),
}


def _picked(img: np.ndarray, lab: np.ndarray, ids: list, shots: int, seed: int, pick: str) -> np.ndarray:
    """``shots`` of the whole objects ``ids``, drawn as ``pick`` says (``main``'s ``--pick``)."""
    if pick == "random":
        return np.random.default_rng(seed).choice(ids, shots, replace=False)
    from scipy import ndimage as ndi

    ids = np.asarray(ids)
    key = ndi.sum_labels(np.ones(lab.shape), lab, ids) if pick in ("largest", "smallest") else \
        ndi.mean(img.astype(float), lab, ids)
    order = np.argsort(key, kind="stable")
    return ids[order[::-1][:shots] if pick in ("largest", "brightest") else order[:shots]]


def _score(found, lab: np.ndarray) -> float:
    from sam_detect.eval.matching import match_iou_matrix
    from sam_detect.eval.metrics import instances_iou
    from sam_detect.instances import Instances

    truth = Instances.from_label_image(lab)[0]
    if not len(found) or not len(truth):
        return 0.0
    tp = match_iou_matrix(instances_iou(found, truth), 0.5).tp
    return 2 * tp / (len(found) + len(truth))


def run(kind: str, shots: int, seed: int, pick: str = "random", one_at_a_time: bool = False) -> dict:
    from sam_detect import DetectorConfig, SAMDetect
    from sam_detect.segment import create_segmenter

    img0, lab0 = KINDS[kind](0)
    img1, lab1 = KINDS[kind](1)
    border = set(np.unique(np.concatenate([lab0[0], lab0[-1], lab0[:, 0], lab0[:, -1]]))) | {0}
    ids = [i for i in np.unique(lab0) if i not in border]
    chosen = _picked(img0, lab0, ids, shots, seed, pick)
    from sam_detect.errors import AnnotationError

    failed = 0  # boxes in which nothing was found (`add` refuses them)
    with SAMDetect(DetectorConfig(library="faint", store="memory", segmenter="classical")) as det:
        if kind != "packed" and not one_at_a_time:  # one add of every mask, as `add --labels` gives them
            det.add_examples(img0, np.stack([lab0 == i for i in chosen]), ["obj"] * len(chosen))
        for i in chosen if kind == "packed" or one_at_a_time else ():
            if kind == "packed":  # boxes, as a user draws them round packed nuclei
                ys, xs = np.nonzero(lab0 == i)
                try:
                    det.add_example(img0, box=(xs.min() - 2, ys.min() - 2, xs.max() + 2, ys.max() + 2), label="obj")
                except AnnotationError:
                    failed += 1
            else:
                det.add_example(img0, mask=lab0 == i, label="obj")
        found = det.detect(img1)
    from sam_detect.io.images import as_rgb_uint8

    alone = create_segmenter("classical").segment(as_rgb_uint8(img1))
    return {"kind": kind, "shots": shots, "seed": seed, "pick": pick, "f1": round(_score(found, lab1), 3),
            "alone": round(_score(alone, lab1), 3), "found": len(found), "truth": int(len(np.unique(lab1)) - 1),
            "dropped": found.metadata.get("dropped", {}), **({"boxes_failed": failed} if failed else {})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--shots", default="3,10")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--pick", default="random", choices=("random", "largest", "smallest", "brightest", "dimmest"))
    ap.add_argument("--one-at-a-time", action="store_true", help="one add per example (as the UI's clicks)")
    ap.add_argument("--json", default=None, help="write the rows here")
    args = ap.parse_args()
    rows = []
    for kind in args.kinds.split(","):
        for shots in (int(s) for s in args.shots.split(",")):
            for seed in (int(s) for s in args.seeds.split(",")):
                row = run(kind, shots, seed, args.pick, args.one_at_a_time)
                rows.append(row)
                how = ("" if args.pick == "random" else f" {args.pick}") + (" one at a time" if args.one_at_a_time else "")
                print(f"{kind:11s} {shots:3d}{how} examples seed {seed}: F1 {row['f1']:.3f} (segmenter alone "
                      f"{row['alone']:.3f}), {row['found']} found of {row['truth']}, dropped {row['dropped']}"
                      + (f", {row['boxes_failed']} boxes found nothing" if "boxes_failed" in row else ""),
                      flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
