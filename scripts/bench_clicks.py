#!/usr/bin/env python
"""Point and box prompts (a click, ``add --point`` / ``--box``, the UI), without and with examples.

Each annotated object is clicked once at its innermost point (the maximum of its distance
transform), or with ``--prompt box`` boxed by its box grown by a tenth of its longer side,
and the classical segmenter's mask for the prompt is scored against the object:
how many clicks give nothing, the share with IoU >= 0.5 and >= 0.8, and the median IoU (a
click that gives nothing counts 0).

    python scripts/bench_clicks.py                                 # development sets
    python scripts/bench_clicks.py --sets coins,hela,scratch       # reported sets
    python scripts/bench_clicks.py --examples 5                    # both ways, after 5 examples
    python scripts/bench_clicks.py --examples 5 --prompt box       # boxes instead of clicks
    python scripts/bench_clicks.py --prompt box --box-grow 0       # the tightest boxes
    python scripts/bench_clicks.py --prompt ground                 # clicks on the background

``--prompt ground`` clicks random background points at least ``GROUND_CLEARANCE`` px from
every annotated object (100 per set, the segmenter's own prompt): the share that gives an
object (where the annotation is complete, every one is a false object) and their median area.

Development sets (where the choices are made): ``stroma`` (the H&E stroma crop of
``dev_patches.py``) and ``bench_data.DEV``'s sets, their first three images, at most 150
clicks per set. Reported: ``coins`` (scikit-image's coins, scored against one fitted disk
per coin, ``bench_examples.COINS_GT``), ``hela`` (frame 0) and ``scratch`` (frame 0).
``ihc``: scikit-image's immunohistochemistry slide, the stroma's nuclei as a silver
reference (:func:`ihc_reference`); run with ``--sets ihc``.

``--prompt detect`` clicks ``--examples`` objects (default 5) of a set's first image one
at a time, as the UI adds them, and detects on that image (``--draws`` draws): the objects
found, those overlapping and matching the annotation, and on ``ihc`` those lying on brown
(DAB) cells.

    python scripts/bench_clicks.py --sets ihc --prompt detect
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
DEV = "stroma,dev_macrophage,dev_neurocyte,dev_u2os,dev_rpe1,dev_mnfinder,dev_zoom"


def images_and_labels(name: str) -> tuple[list, list]:
    """``(images, label images)`` of one set: up to three images."""
    import bench_data

    if name == "stroma":
        import dev_patches

        image, label, _ = dev_patches.crop("stroma")
        return [image], [label]
    if name == "ihc":
        return [ihc_image()], [ihc_reference()]
    if name == "coins":
        from bench_examples import coins_ground_truth
        from skimage import data

        return [data.coins()], [coins_ground_truth().to_label_image()]
    if name in ("hela", "scratch"):
        from bench_examples import protocol_runs

        (images, labels, _), = protocol_runs(name)[0]
        return images[:1], labels[:1]
    images, labels = bench_data.load(name)
    return list(images)[:3], list(labels)[:3]


def ihc_image() -> np.ndarray:
    from skimage import data

    return data.immunohistochemistry()


def ihc_reference() -> np.ndarray:
    """A silver reference of the stroma nuclei of scikit-image's immunohistochemistry slide
    (no annotation ships with it): the connected components of its haematoxylin channel
    (``rgb2hed``) above Otsu's threshold, 40-400 px, at least 5 px from DAB-stained
    (brown) pixels. Rough outlines, some faint nuclei missing: a check that a click on a
    blue nucleus in the pale stroma gives that nucleus, not an IoU to quote finely."""
    from scipy import ndimage as ndi
    from skimage import color, filters, measure

    stain = color.rgb2hed(ihc_image())[..., 0]
    brown = ndi.binary_dilation(ihc_brown(), iterations=5)
    label = measure.label((stain > filters.threshold_otsu(stain)) & ~brown)
    areas = np.bincount(label.ravel())
    keep = (areas >= 40) & (areas <= 400)
    keep[0] = False
    return measure.label(keep[label])


def _iou(found, mask: np.ndarray) -> float:
    if len(found) == 0:
        return 0.0
    got = found.mask(0)
    return float((got & mask).sum() / (got | mask).sum())


def _summary(ious: list[float]) -> dict:
    iou = np.array(ious)
    return {"clicks": len(iou), "nothing": int((iou == 0).sum()), "iou50": round(float(np.mean(iou >= 0.5)), 3),
            "iou80": round(float(np.mean(iou >= 0.8)), 3), "median_iou": round(float(np.median(iou)), 3)}


def loose_box(mask: np.ndarray, grow: float = 0.1) -> tuple[float, float, float, float]:
    """The mask's box (XYXY, exclusive ends) grown by ``grow`` (a tenth) of its longer side and
    a pixel on every side, within the image: a box a user draws around an object (``grow`` 0:
    the tightest box drawn, touching the object on every side)."""
    ys, xs = np.nonzero(mask)
    pad = grow * max(np.ptp(ys), np.ptp(xs)) + (1 if grow > 0 else 0)
    h, w = mask.shape
    return (max(xs.min() - pad, 0.0), max(ys.min() - pad, 0.0), min(xs.max() + 1 + pad, w), min(ys.max() + 1 + pad, h))


def innermost(mask: np.ndarray) -> tuple[float, float]:
    """``(x, y)``: where a user clicks an object, its innermost pixel (the maximum of its
    distance transform)."""
    from scipy import ndimage as ndi

    depth = ndi.distance_transform_edt(mask)
    y, x = np.unravel_index(np.argmax(depth), depth.shape)
    return float(x), float(y)


def clicks(name: str, max_clicks: int = 150, examples: int = 0, seed: int = 0, prompt: str = "point",
           grow: float = 0.1) -> dict:
    """Click figures of one set: ``{"plain": ...}`` (the segmenter's own prompt), and with
    ``examples`` > 0 also ``{"guided": ...}``: the same clicks after ``examples`` objects of
    the first image were added as examples (``prompt_to_instances(..., label=...)``), those
    objects not clicked."""

    from sam_detect import DetectorConfig, SAMDetect
    from sam_detect.eval.inputs import load_eval_image
    from sam_detect.instances import Instances

    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="views"))
    seg = det.segmenter
    rng = np.random.default_rng(seed)
    images, labels = images_and_labels(name)
    loaded = [load_eval_image(image) for image in images]
    labels = [np.asarray(label) for label in labels]
    taken: set[int] = set()
    if examples:
        ids = [int(i) for i in np.unique(labels[0]) if i > 0 and (labels[0] == i).sum() >= 30]
        taken = {int(i) for i in rng.choice(ids, min(examples, len(ids)), replace=False)}
        masks = np.stack([labels[0] == i for i in sorted(taken)])
        det.add_examples(loaded[0], Instances(masks=masks), ["object"] * len(masks))
    ious: dict[str, list[float]] = {"plain": [], "guided": []} if examples else {"plain": []}
    for k, (image, label) in enumerate(zip(loaded, labels, strict=True)):
        ids = [int(i) for i in np.unique(label) if i > 0 and not (k == 0 and int(i) in taken)]
        rng.shuffle(ids)
        for i in ids[: max_clicks // len(images) + 1]:
            mask = label == i
            if mask.sum() < 30:
                continue
            if prompt == "box":
                where = {"box": loose_box(mask, grow)}
            else:
                where = {"point": innermost(mask)}
            ious["plain"].append(_iou(seg.prompt(image.rgb, **where), mask))
            if examples:
                try:
                    found = det.prompt_to_instances(image, label="object", **where)
                except Exception:  # "no object found at point": a click that gives nothing
                    found = Instances.empty(mask.shape)
                ious["guided"].append(_iou(found, mask))
    return {way: _summary(v) for way, v in ious.items()}


GROUND_CLEARANCE = 10


def ground_clicks(name: str, n: int = 100, seed: int = 0) -> dict:
    """``{"plain": {"clicks", "objects", "share", "median_area"}}``: ``n`` clicks on one
    set's background, spread over its images, each at least ``GROUND_CLEARANCE`` px from
    every annotated object."""
    from scipy import ndimage as ndi

    from sam_detect.eval.inputs import load_eval_image
    from sam_detect.segment import create_segmenter

    seg = create_segmenter("classical")
    rng = np.random.default_rng(seed)
    images, labels = images_and_labels(name)
    areas = []
    clicked = 0
    for k, (image, label) in enumerate(zip(images, labels, strict=True)):
        rgb = load_eval_image(image).rgb
        ys, xs = np.nonzero(ndi.distance_transform_edt(np.asarray(label) == 0) >= GROUND_CLEARANCE)
        if not len(ys):
            continue
        share = n // len(images) + (k < n % len(images))
        for j in rng.choice(len(ys), min(share, len(ys)), replace=False):
            found = seg.prompt(rgb, point=(float(xs[j]), float(ys[j])))
            clicked += 1
            if len(found):
                areas.append(int(found.areas[0]))
    return {"plain": {"clicks": clicked, "objects": len(areas), "share": round(len(areas) / max(clicked, 1), 3),
                      "median_area": float(np.median(areas)) if areas else 0.0}}


def ihc_brown() -> np.ndarray:
    """``(H, W)`` bool: the IHC slide's brown (DAB-stained) pixels, Otsu of ``rgb2hed``'s DAB
    channel."""
    from skimage import color, filters

    dab = color.rgb2hed(ihc_image())[..., 2]
    return dab > filters.threshold_otsu(dab)


def detect_after_clicks(name: str, draws: int = 6, shots: int = 5) -> dict:
    """``detect`` after ``shots`` objects of a set's first image were clicked one at a time
    (each at its innermost point, each click following the examples before it, as the UI
    and successive ``add --point`` give them), on that image; ``draws`` random draws.
    Per draw: the clicks that gave nothing, the objects found, those overlapping an annotated
    object (IoU > 0.1), those matching one (IoU >= 0.5) and, on ``ihc``, those lying mostly
    (over half their pixels) on brown cells."""

    from sam_detect import DetectorConfig, SAMDetect
    from sam_detect.errors import AnnotationError
    from sam_detect.eval.inputs import load_eval_image
    from sam_detect.eval.matching import match_iou_matrix
    from sam_detect.eval.metrics import instances_iou
    from sam_detect.instances import Instances

    images, labels = images_and_labels(name)
    rgb = load_eval_image(images[0]).rgb
    truth, _ = Instances.from_label_image(np.asarray(labels[0]))
    brown = ihc_brown() if name == "ihc" else None
    rows = []
    for d in range(draws):
        det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="views"))
        refused = 0
        for j in np.random.default_rng(d).choice(len(truth), size=min(shots, len(truth)), replace=False):
            try:
                det.add_example(rgb, point=innermost(truth.mask(int(j))), label="object")
            except AnnotationError:  # "no object found at point": the click adds nothing
                refused += 1
        found = det.detect(rgb) if refused < shots else Instances.empty(rgb.shape[:2])
        det.close()
        iou = instances_iou(found, truth) if len(found) else np.zeros((0, len(truth)))
        row = {"draw": d, "refused": refused, "objects": len(found),
               "overlapping": int((iou.max(axis=1, initial=0) > 0.1).sum()),
               "matched": len(match_iou_matrix(iou, 0.5).pairs) if len(found) else 0}
        if brown is not None:
            row["on_brown"] = int(sum(brown[found.mask(i)].mean() > 0.5 for i in range(len(found))))
        rows.append(row)
    return {"draws": rows, **{k: sum(r[k] for r in rows) for k in rows[0] if k != "draw"}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=DEV, help=f"comma-separated (default: the development sets, {DEV})")
    ap.add_argument("--max-clicks", type=int, default=150)
    ap.add_argument("--examples", type=int, default=0,
                    help="add this many objects of each set's first image as examples first, and click with them too")
    ap.add_argument("--prompt", default="point", choices=["point", "box", "ground", "detect"],
                    help="click each object's innermost point, draw its box grown by a tenth, "
                         "click the background away from every object, or detect after clicking "
                         "--examples objects (default 5) one at a time (--draws draws)")
    ap.add_argument("--draws", type=int, default=6, help="with --prompt detect: random draws of the clicked objects")
    ap.add_argument("--box-grow", type=float, default=0.1,
                    help="with --prompt box: grow each object's box by this share of its longer side "
                         "(default 0.1; 0: the tight box)")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()
    out = {}
    for name in args.sets.split(","):
        if args.prompt == "detect":
            out[name] = r = detect_after_clicks(name, args.draws, args.examples or 5)
            print(f"{name:15s} {len(r['draws'])} draws of {args.examples or 5} clicks one at a time: "
                  f"{r['refused']} clicks gave nothing; {r['objects']} objects, {r['overlapping']} overlapping "
                  f"an annotated one, {r['matched']} matching one" + (f", {r['on_brown']} on brown cells" if "on_brown" in r else ""),
                  flush=True)
            for row in r["draws"]:
                print(f"  draw {row['draw']}: " + ", ".join(f"{k} {v}" for k, v in row.items() if k != "draw"), flush=True)
            continue
        if args.prompt == "ground":
            out[name] = ground_clicks(name)
            r = out[name]["plain"]
            print(f"{name:15s} {r['clicks']:4d} background clicks: {r['objects']:4d} gave an object "
                  f"({r['share']:.3f}), median area {r['median_area']:.0f} px", flush=True)
            continue
        out[name] = clicks(name, args.max_clicks, args.examples, prompt=args.prompt, grow=args.box_grow)
        for way, r in out[name].items():
            print(f"{name:15s} {way:6s} {r['clicks']:4d} clicks: nothing {r['nothing']:4d}, IoU >= 0.5 "
                  f"{r['iou50']:.3f}, >= 0.8 {r['iou80']:.3f}, median {r['median_iou']:.3f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
