#!/usr/bin/env python
"""The held-out format on degraded images (development only): what the examples add when a
set's images are noisier, blurred, unevenly lit, offset, stained paler or darker, or
JPEG-compressed.

Each of a development set's first three images is degraded (``--kinds``), then ten of its
annotated objects are the examples and that image is scored (seeds 0 and 1, six runs, as
``dev_selection.py``'s ``NAME_same``): the pooled F1 at IoU 0.5 of the segmenter alone and
of the full pipeline (``eval.protocol.examples_worth``). The examples come from the degraded
image too, as they would from another lab's images. Kinds (the share is of the image's
1st-99.5th percentile range):

- ``clean``; ``noiseS``: Gaussian noise of sd S x the range; ``blurS``: a Gaussian blur of
  sigma S px; ``rampF``: the signal falling off left to right to F x (uneven illumination);
  ``offsetS``: S x the range added (a camera offset; 16-bit images are stretched when read);
- ``odF``: an RGB stain's optical density x F (``255 (I / 255)^F``: F < 1 paler, > 1 darker);
  ``jpegQ``: JPEG at quality Q; ``spreadF``: each object's signal above the ground times its
  own factor, log-uniform in [F, 1] (nuclei of unequal brightness in one image); ``tailF``: a
  fifth of the objects at F x their signal, the rest as they are (a dim tail the examples miss);
  ``dimF``: as ``tailF``, but the examples are drawn among the objects left as they are (a user
  who labels typical objects, or ten random ones that all happen to be bright, as in a HeLa
  frame where a sixth of the nuclei stand out a fifth as far as the rest).

    python scripts/dev_degrade.py --set dev_u2os --kinds clean,noise0.1,noise0.2,blur2,ramp0.3
    python scripts/dev_degrade.py --set dev_stroma --kinds clean,od0.6,od1.5,jpeg40
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: ``tailF``: the share of the objects dimmed
TAIL_SHARE = 0.2


def object_factors(kind: str, label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``spreadF``, ``tailF``, ``dimF``: each object's signal factor, indexed by its id in
    ``label`` (1 for the ground and the objects left as they are)."""
    ids = np.unique(label)
    ids = ids[ids > 0]
    factor = np.ones(int(label.max()) + 1, np.float32)
    if kind.startswith("spread"):  # log-uniform in [F, 1]: objects of another brightness in one image
        factor[ids] = np.exp(rng.uniform(np.log(float(kind[6:])), 0.0, len(ids)))
    else:  # TAIL_SHARE of them (drawn at random) at F: a dim tail ten random examples may all miss
        factor[ids[rng.random(len(ids)) < TAIL_SHARE]] = float(kind[4:] if kind.startswith("tail") else kind[3:])
    return factor


def bright_draw(label: np.ndarray, factor: np.ndarray):
    """``dimF``: a ``draw_examples`` for :mod:`sam_detect.eval.protocol` that draws only
    among the objects of ``label`` left as they are (``factor`` 1)."""
    ids = np.unique(label)
    ids = ids[ids > 0]
    bright = np.flatnonzero(factor[ids] >= 1.0)

    def draw(gt_labels, shots, seed=0, examples_from=None):
        take = np.random.default_rng(seed).choice(len(bright), size=min(shots, len(bright)), replace=False)
        return {0: np.sort(bright[take]).astype(np.int64)}

    return draw


@contextlib.contextmanager
def drawing(kind: str, label: np.ndarray, k: int):
    """While inside, the held-out format draws ``dimF``'s examples among the objects left as
    they are (image ``k``'s factors, as :func:`degrade` made them); other kinds draw as usual."""
    if not kind.startswith("dim"):
        yield
        return
    from sam_detect.eval import protocol

    factor = object_factors(kind, label, np.random.default_rng(100 + k))
    saved = protocol.draw_examples
    protocol.draw_examples = bright_draw(label, factor)
    try:
        yield
    finally:
        protocol.draw_examples = saved


def degrade(img: np.ndarray, kind: str, rng: np.random.Generator, label: np.ndarray | None = None) -> np.ndarray:
    """``img`` degraded as ``kind`` says (same shape and dtype); ``spreadF`` and ``tailF``
    need the image's ``label`` image."""
    import cv2

    if kind == "clean":
        return img
    x = img.astype(np.float32)
    lo, hi = np.percentile(x, 1), np.percentile(x, 99.5)
    if kind.startswith(("spread", "tail", "dim")):
        if label is None:
            raise SystemExit(f"{kind} needs the label image")
        # each object's signal above the ground (the median outside every object, grown 3 px)
        # times its own factor
        ground = cv2.dilate((label > 0).astype(np.uint8), np.ones((7, 7), np.uint8)) == 0
        bg = np.median(x[ground], axis=0)
        factor = object_factors(kind, label, rng)
        x = bg + (x - bg) * (factor[label] if x.ndim == 2 else factor[label][..., None])
    elif kind.startswith("noise"):
        x = x + rng.normal(0.0, float(kind[5:]) * (hi - lo), x.shape)
    elif kind.startswith("blur"):
        x = cv2.GaussianBlur(x, (0, 0), float(kind[4:]))
    elif kind.startswith("ramp"):
        g = np.linspace(1.0, float(kind[4:]), x.shape[1], dtype=np.float32)[None, :]
        x = (x - lo) * (g if x.ndim == 2 else g[..., None]) + lo
    elif kind.startswith("offset"):
        x = x + float(kind[6:]) * (hi - lo)
    elif kind.startswith("od"):
        x = 255.0 * np.power(np.clip(x, 1, 255) / 255.0, float(kind[2:]))
    elif kind.startswith("jpeg"):
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(kind[4:])])
        return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    else:
        raise SystemExit(f"unknown kind {kind!r}")
    top = np.iinfo(img.dtype).max if np.issubdtype(img.dtype, np.integer) else None
    return np.clip(x, 0, top).astype(img.dtype)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", default="dev_u2os", help="a development set of bench_data")
    ap.add_argument("--kinds", default="clean,noise0.05,noise0.1,noise0.2,blur2,ramp0.3,offset0.3")
    ap.add_argument("--out", default=None, help="JSON file for the figures")
    args = ap.parse_args()

    import bench_data

    from sam_detect import DetectorConfig
    from sam_detect.eval.protocol import examples_worth

    images, gts = bench_data.load(args.set)
    config = DetectorConfig(segmenter="classical", embedder="views", store="memory")
    out = {}
    for kind in args.kinds.split(","):
        counts = {"segmenter alone": [0, 0, 0], "full pipeline": [0, 0, 0]}
        for k in range(min(3, len(images))):
            img = degrade(np.asarray(images[k]), kind, np.random.default_rng(100 + k), np.asarray(gts[k]))
            for seed in (0, 1):
                with drawing(kind, np.asarray(gts[k]), k):
                    worth = examples_worth([img], [gts[k]], config, shots=10, examples_from=[0], detect_on=[0],
                                           seed=seed, label="object", curve_thresholds=(), overlays=0, progress=False)
                for key, m in (("segmenter alone", worth.segmenter_alone[0.5]), ("full pipeline", worth.full.metrics[0.5])):
                    counts[key] = [counts[key][0] + m.tp, counts[key][1] + m.fp, counts[key][2] + m.fn]
        out[kind] = {key: round(2 * tp / max(2 * tp + fp + fn, 1), 4) for key, (tp, fp, fn) in counts.items()}
        print(f"| {args.set} | {kind} | {out[kind]['segmenter alone']:.3f} | {out[kind]['full pipeline']:.3f} |", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"set": args.set, "f1": out}, indent=1) + "\n")


if __name__ == "__main__":
    main()
