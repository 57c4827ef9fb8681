#!/usr/bin/env python
"""Size shifts said by an image's sure objects, looked at both ways (development only).

Ten examples are drawn from a development set's first image (as ``bench_examples`` draws
them), and every other image is detected, shown at each ``--factors`` (``bench_data.rescale``).
Where the segmenter's sure objects say the image is at another magnification
(``profile.size_shift`` asked with ``SURE_COUNT`` or more of them), the line prints what it
then asks: the image's whole objects (sure or isolated wholes) at the examples' size and
where their median lies, in the examples' log-area sds, beside the shift
(``profile.wholes_follow``); the same at the shift (``profile.shift_holds``); and the image's
F1 @ 0.5 as detected and the other way: with a taken shift refused, or with a shift
``wholes_follow`` refused taken where ``shift_holds`` lets it (a second library, the same
examples). Images are passed as read, as ``eval`` passes them (``detect`` leaves a black
padding band out); ``--filled`` passes them as rendered instead (``to_rgb_uint8``: a
padding band filled with the image's ground colour), as a copy without the band would be.

    python scripts/dev_shifts.py --set dev_rings --seeds 0,1,2,3,4,5
    python scripts/dev_shifts.py --set dev_u2os --seeds 0,1 --factors 1.8,2.6,0.5,0.35 --json F
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", default="dev_rings", help="a development set of bench_data")
    ap.add_argument("--seeds", default="0,1", help="comma-separated draws of the examples")
    ap.add_argument("--factors", default="1", help="comma-separated magnifications to show the scored images at")
    ap.add_argument("--json", default=None, help="write the per-image figures here")
    ap.add_argument("--filled", action="store_true",
                    help="pass the images as rendered (a padding band filled with the ground colour)")
    args = ap.parse_args()

    import bench_data

    import sam_detect.profile as P
    from sam_detect import DetectorConfig, SAMDetect
    from sam_detect.eval.inputs import draw_examples
    from sam_detect.eval.matching import match_iou_matrix
    from sam_detect.eval.metrics import instances_iou
    from sam_detect.instances import Instances
    from sam_detect.io.images import to_rgb_uint8

    if args.set not in bench_data.DEV:
        raise SystemExit(f"--set takes a development set: {', '.join(bench_data.DEV)}")
    seen: dict = {}
    other = {"way": None}  # None: as the package decides; "refuse" or "take" the shift
    asked, holds, follow = P.size_shift, P.shift_holds, P.wholes_follow

    def whole_objects(inst, label, entry) -> dict:
        sure = P.sure_objects(inst, label, entry)
        objects = sure | P.isolated_wholes(inst, label, entry)
        log_a = np.log(np.maximum(inst.areas, 1))
        mu, sd = (float(v) for v in entry["log_area"])
        return {"sure": int(sure.sum()), "wholes": int(objects.sum()),
                "wholes_off_sd": round((float(np.median(log_a[objects])) - mu) / sd, 3) if objects.any() else None}

    def size_shift(instances, label, entry, shape_fit=None, sure=None):  # the segmenter's first ask, at the examples' size
        out = asked(instances, label, entry, shape_fit, sure)
        if sure is not None and len(instances) and "at_examples" not in seen:
            seen.update(shift_sd=round(out / float(entry["log_area"][1]), 3),
                        at_examples=whole_objects(instances, label, entry))
        return out

    def wholes_follow(instances, label, entry, sure, shift):
        seen["follows"] = follow(instances, label, entry, sure, shift)
        return {"refuse": False, "take": True}.get(other["way"], seen["follows"])

    def shift_holds(count, shifted, label, moved):
        seen["holds"] = holds(count, shifted, label, moved)
        seen["at_shift"] = whole_objects(shifted, label, moved) if len(shifted) else None
        return seen["holds"] and other["way"] != "refuse"

    P.size_shift, P.wholes_follow, P.shift_holds = size_shift, wholes_follow, shift_holds

    def f1(found, truth) -> float:
        matched = len(match_iou_matrix(instances_iou(found, truth), 0.5).pairs) if len(found) and len(truth) else 0
        return round(2 * matched / max(len(found) + len(truth), 1), 4)

    def shown(image):
        return to_rgb_uint8(np.asarray(image)) if args.filled else np.asarray(image)

    images, labels = (list(v) for v in bench_data.load(args.set))
    first, _ = Instances.from_label_image(np.asarray(labels[0]))
    first.labels = np.array(["object"] * len(first), dtype=object)
    config = DetectorConfig(segmenter="classical", embedder="views", store="memory")
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        drawn = draw_examples([list(first.labels)], 10, seed, [0])[0]
        detectors = [SAMDetect(config) for _ in range(2)]  # as detected, and the other way
        for det in detectors:
            det.add_examples(shown(images[0]), first[drawn], annotation=first)
        for i in range(1, len(images)):
            for factor in (float(f) for f in args.factors.split(",")):
                image, label = np.asarray(images[i]), np.asarray(labels[i])
                if factor != 1.0:
                    image, label = bench_data.rescale(image, label, factor)
                rgb, truth = shown(image), Instances.from_label_image(label)[0]
                seen.clear()
                other["way"] = None
                row = {"seed": seed, "image": i, "factor": factor, "f1": f1(detectors[0].detect(rgb), truth)}
                row.update(seen)
                if "follows" in seen:  # a shift asked: the image the other way
                    way = "refuse" if seen["follows"] and seen.get("holds") else "take"
                    other["way"] = way
                    seen.clear()
                    row[f"f1_{way}"] = f1(detectors[1].detect(rgb), truth)
                    if way == "take":
                        row["holds"], row["at_shift"] = seen.get("holds"), seen.get("at_shift")
                rows.append(row)
                line = f"{args.set} draw {seed} image {i} x{factor:g}: F1 {row['f1']:.3f}"
                if "follows" in row:
                    a, b = row["at_examples"], row.get("at_shift") or {}
                    line += (f", shift {row['shift_sd']:+.2f} sds: wholes at the examples' size {a['wholes']} "
                             f"({a['sure']} sure), median {a['wholes_off_sd']:+.2f} sds -> follow {row['follows']}")
                    if "holds" in row:
                        line += f"; at the shift {b.get('wholes')} ({b.get('sure')} sure) -> holds {row['holds']}"
                    for way in ("refuse", "take"):
                        if f"f1_{way}" in row:
                            line += f"; F1 with the shift {dict(refuse='refused', take='taken')[way]} {row[f'f1_{way}']:.3f}"
                print(line, flush=True)
        for det in detectors:
            det.close()
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
