#!/usr/bin/env python
"""Examples on one objective, detection on another (development only): ten examples from a
development set's first frame at its own magnification, its next frames shown at each factor
(``--factors``: 2.6 is a 2.6x stronger objective, the objects 6.8x the examples' area), scored
with the segmenter alone (its own settings, every candidate accepted) and the full pipeline;
with ``--compare``, also with the probes for objects far off the examples' size switched off
(``profile.PROBE_SHIFT`` = 0: the code before them), in the same run.

    python scripts/dev_magnification.py                              # dev_u2os, 11 factors
    python scripts/dev_magnification.py --factors 2.6,0.3 --compare --out F
    python scripts/dev_magnification.py --set dev_rpe1 --crop 400 --crops 2 --frames 4 --factors 1,1.5,2,0.6

``--crop S``: each scored frame is cut into ``--crops`` windows of S x S pixels (spread along
the diagonal) *before* it is shown at the factor: small images holding 20-60 objects, as many
held-out sets are; the examples still come from the whole first frame, unscaled. ``--why``
prints, per scored image, what the segmenter decided about its scale (stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", default="dev_u2os", help="a development set of bench_data (default dev_u2os)")
    ap.add_argument("--factors", default="1,1.8,2.2,2.6,3,3.5,4,0.5,0.4,0.3,0.25")
    ap.add_argument("--frames", type=int, default=3, help="frames scored after the example frame (default 3)")
    ap.add_argument("--compare", action="store_true", help="also run without the probes (PROBE_SHIFT = 0)")
    ap.add_argument("--out", default=None, help="JSON file for the figures")
    ap.add_argument("--crop", type=int, default=0, help="cut each scored frame into S x S windows first (0: whole)")
    ap.add_argument("--crops", type=int, default=2, help="windows per scored frame with --crop (default 2)")
    ap.add_argument("--first", type=int, default=1, help="the first scored frame (default 1)")
    ap.add_argument("--why", action="store_true", help="print each scored image's scale decision (stderr)")
    args = ap.parse_args()

    import bench_data

    from sam_detect import DetectorConfig
    from sam_detect import profile as P
    from sam_detect.eval.protocol import examples_worth

    if args.set not in bench_data.DEV:
        raise SystemExit(f"--set takes a development set: {', '.join(bench_data.DEV)}")
    images, labels = (list(v) for v in bench_data.load(args.set))
    config = DetectorConfig(segmenter="classical", embedder="views", store="memory")
    probe = P.PROBE_SHIFT
    modes = ["full pipeline"] + (["without the probes"] if args.compare else [])
    print(f"| shown at | {args.set}: segmenter alone | " + " | ".join(modes) + " |")
    print("| --- | --- |" + " --- |" * len(modes))
    out = {}
    for z in (float(f) for f in args.factors.split(",")):
        ims, labs = [images[0]], [labels[0]]
        for k in range(args.first, args.first + args.frames):
            for img, lab in _windows(images[k], labels[k], args.crop, args.crops):
                img, lab = bench_data.rescale(img, lab, z)
                ims.append(img)
                labs.append(lab)
        if args.why:
            _explain(P, f"{args.set} {z:g}x")
        row = {}
        for mode in modes:
            P.PROBE_SHIFT = probe if mode == "full pipeline" else 0.0
            try:
                worth = examples_worth(ims, labs, config, shots=10, examples_from=[0],
                                       detect_on=list(range(1, len(ims))), seed=0, label="object",
                                       curve_thresholds=(), overlays=0, progress=False)
            finally:
                P.PROBE_SHIFT = probe
            for key, m in (("segmenter alone", worth.segmenter_alone[0.5]), (mode, worth.full.metrics[0.5])):
                row[key] = dict(f1=round(2 * m.tp / max(2 * m.tp + m.fp + m.fn, 1), 4), tp=m.tp, fp=m.fp, fn=m.fn)
        out[z] = row
        cells = " | ".join(f"{row[m]['f1']:.3f} (FP {row[m]['fp']})" for m in modes)
        print(f"| {z:g}x | {row['segmenter alone']['f1']:.3f} | {cells} |", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"set": args.set, "frames": args.frames, "f1": out}, indent=1) + "\n")


def _windows(image, label, side: int, count: int):
    """``(image, label)`` windows of ``side`` px along the frame's diagonal, renumbered (the
    whole frame where ``side`` is 0)."""
    import numpy as np
    from skimage.segmentation import relabel_sequential

    if not side:
        return [(image, label)]
    h, w = label.shape[:2]
    side = min(side, h, w)
    out = []
    for i in range(count):
        t = 0.5 if count == 1 else i / (count - 1)
        y, x = round(t * (h - side)), round(t * (w - side))
        lab = relabel_sequential(label[y:y + side, x:x + side])[0].astype(np.int32)
        out.append((image[y:y + side, x:x + side], lab))
    return out


def _explain(P, tag: str) -> None:
    """Wrap the scale decisions of the calibrated segmenter so that each image's is printed."""
    import numpy as np

    if getattr(P, "_explained", None) is None:
        P._explained = (P.probe_shift, P.size_shift, P.shift_holds)
    probe0, size0, holds0 = P._explained

    def size_shift(instances, label, entry, shape_fit=None, sure=None):
        v = size0(instances, label, entry, shape_fit, sure)
        n = -1 if sure is None else int(np.sum(sure))
        if sure is not None and n:
            c, spread = P._sure_sizes(instances, sure)
            mu, sd = (float(x) for x in entry["log_area"])
            lim = P.SURE_SPREAD * max(sd, P.PRIOR_LOG_AREA_SD)
            extra = f" offset {(c - mu) / sd:+.2f} sds, spread {spread / lim:.2f} of limit"
        else:
            extra = ""
        print(f"[{tag}] {instances.image_hw} size_shift: {len(instances)} cands, {n} image objects{extra} -> {v:+.3f}",
              file=sys.stderr)
        return v

    def probe_shift(instances, label, entry, propose_at, sure=None, **kw):
        log = []

        def at(shift):
            moved, part = propose_at(shift)
            s = P.sure_objects(part, label, moved) if len(part) else np.zeros(0, bool)
            if s.any():
                c, spread = P._sure_sizes(part, s)
                sd = float(entry["log_area"][1])
                lim = P.SURE_SPREAD * max(sd, P.PRIOR_LOG_AREA_SD)
                log.append(f"@{shift:+.2f}: {len(part)} cands {int(s.sum())} sure, off {(c - float(moved['log_area'][0])) / sd:+.2f} sds, spread {spread / lim:.2f}")
            else:
                log.append(f"@{shift:+.2f}: {len(part)} cands 0 sure")
            return moved, part

        n0 = -1 if sure is None else int(np.sum(sure))
        v, part = probe0(instances, label, entry, at, sure, **kw)
        print(f"[{tag}] {instances.image_hw} probe: {len(instances)} cands, {n0} sure at 0; " + "; ".join(log)
              + f" -> {v:+.3f}" + (f" hint {kw['hint']}" if kw.get("hint") else ""), file=sys.stderr)
        return v, part

    def shift_holds(count, shifted, label, moved):
        v = holds0(count, shifted, label, moved)
        n = int(P.sure_objects(shifted, label, moved).sum()) if len(shifted) else 0
        print(f"[{tag}] {shifted.image_hw} shift_holds: {count} sure before, {n} after -> {v}", file=sys.stderr)
        return v

    P.probe_shift, P.size_shift, P.shift_holds = probe_shift, size_shift, shift_holds


if __name__ == "__main__":
    main()
