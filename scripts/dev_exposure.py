#!/usr/bin/env python
"""Frames at another exposure than the example frame (development only).

A development set's frames as 8-bit grey images, each stretched on its own as the reader
stretches a 16-bit file; then the scored frames multiplied by ``--gains`` (a gain above 1:
the example frame divided by it instead, so the scored frames are that much brighter). This
is how an 8-bit set of frames taken at different exposures reaches ``detect``: 8-bit files
pass through unstretched. Printed per gain: F1 at IoU 0.5 of the segmenter alone, the
pipeline without the profile, and the full pipeline (``bench_data.PROTOCOL``, seed 0).
``--no-rule`` switches off the grey-level mapping (``profile.LEVEL_GAIN``, ``LEVEL_OFFSET``) for a before/after.

Other ways another microscope's frames differ, applied to the scored frames after the gain:
``--offset`` grey values added (a brighter background), ``--gradient`` 0 to that many
added from left to right (uneven illumination), ``--noise`` Gaussian noise of that sd,
``--blur`` a Gaussian blur of that sigma (out of focus). ``--tint`` shows every frame as one
channel in one colour, as a DAPI or GFP frame saved as RGB is (``blue``: R and G black).

    python scripts/dev_exposure.py --set dev_u2os --gains 1,0.5,0.25,0.1,4
    python scripts/dev_exposure.py --set dev_rpe1 --gains 0.25 --no-rule
    python scripts/dev_exposure.py --set dev_u2os --gains 0.5 --offset 40
    python scripts/dev_exposure.py --set dev_u2os --gains 1,0.25 --tint blue
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


#: the channels that carry a frame shown in each colour
TINTS = {"grey": (0, 1, 2), "red": (0,), "green": (1,), "blue": (2,), "cyan": (1, 2), "magenta": (0, 2)}


def tinted(gray: np.ndarray, tint: str) -> np.ndarray:
    """``(H, W, 3)``: a grey frame as one channel shown in one colour (``TINTS``)."""
    out = np.zeros((*gray.shape, 3), np.uint8)
    out[..., list(TINTS[tint])] = gray[..., None]
    return out


def frames_at(gray: list[np.ndarray], gain: float, offset: float = 0.0, gradient: float = 0.0,
              noise: float = 0.0, blur: float = 0.0, seed: int = 0) -> list[np.ndarray]:
    """The example frame (first) and the scored frames at ``gain`` x its exposure, then
    changed as :func:`main`'s options say."""
    import cv2

    rng = np.random.default_rng(seed)

    def times(im: np.ndarray, g: float) -> np.ndarray:
        return np.clip(np.rint(im.astype(np.float32) * g), 0, 255).astype(np.uint8)

    def other_scope(im: np.ndarray) -> np.ndarray:
        x = im.astype(np.float32) + offset + np.linspace(0.0, gradient, im.shape[1], dtype=np.float32)[None, :]
        if noise:
            x += rng.normal(0.0, noise, x.shape).astype(np.float32)
        if blur:
            x = cv2.GaussianBlur(x, (0, 0), blur)
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)

    if gain > 1:
        return [times(gray[0], 1.0 / gain), *(other_scope(im) for im in gray[1:])]
    return [gray[0], *(other_scope(times(im, gain)) for im in gray[1:])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", default="dev_u2os", help="a development set of bench_data")
    ap.add_argument("--gains", default="1,0.5,0.25,0.1,4")
    ap.add_argument("--no-rule", action="store_true", help="the examples' grey levels as they are")
    ap.add_argument("--offset", type=float, default=0.0, help="grey values added to the scored frames")
    ap.add_argument("--gradient", type=float, default=0.0, help="0 to this added from left to right")
    ap.add_argument("--noise", type=float, default=0.0, help="sd of Gaussian noise added")
    ap.add_argument("--blur", type=float, default=0.0, help="sigma of a Gaussian blur")
    ap.add_argument("--tint", default="grey", choices=sorted(TINTS),
                    help="every frame as one channel shown in this colour (default: grey)")
    args = ap.parse_args()
    import bench_data

    from sam_detect import DetectorConfig
    from sam_detect import profile as P
    from sam_detect.eval.protocol import examples_worth
    from sam_detect.io.images import to_rgb_uint8

    if args.set not in bench_data.DEV:
        raise SystemExit(f"{args.set!r} is not a development set ({', '.join(bench_data.DEV)})")
    if args.no_rule:
        P.LEVEL_GAIN = P.LEVEL_OFFSET = float("inf")
    images, gt = bench_data.load(args.set)
    protocol = dict(bench_data.PROTOCOL[args.set])
    if protocol["examples_from"] != [0]:
        raise SystemExit("the example frame must come first")
    gray = [to_rgb_uint8(im)[..., 0] for im in images]
    config = DetectorConfig(segmenter="classical", embedder="views", store="memory")
    for gain in (float(g) for g in args.gains.split(",")):
        frames = [tinted(f, args.tint) for f in frames_at(gray, gain, args.offset, args.gradient, args.noise, args.blur)]
        worth = examples_worth(frames, gt, config, seed=0, label="object", **protocol)
        print(f"{args.set} {args.tint} scored frames x{gain:g} (offset {args.offset:g}, gradient {args.gradient:g}, "
              f"noise {args.noise:g}, blur {args.blur:g}): "
              + ", ".join(f"{name.split(' (')[0]} {m.f1:.3f}" for name, m in worth.rows(0.5)), flush=True)


if __name__ == "__main__":
    main()
