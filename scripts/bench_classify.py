#!/usr/bin/env python
"""Descriptions and decisions (issue 12's benchmark): classification with the ground-truth
masks as proposals, confidence as a true-object score, and dense-feature speed.

Parts (``--parts``, default all):

- ``classify``: every data set's ground-truth masks are the candidates, so only the
  description and the decision are measured. ``shots`` examples per class are drawn (5
  seeds) and added to a fresh library with the pipeline's own ``add_examples``; the other
  objects are embedded, searched and voted on exactly as ``detect`` does (view weights,
  class thresholds), without the selection step (ground-truth masks may overlap). Reported:
  top-1 accuracy (the vote's label, no threshold), and F1 (a label below the threshold is a
  miss), with the calibrated thresholds and with one threshold of 0.5; for ``views``, each
  view alone (accuracy). Data sets: ``voc`` (2 per class), ``arc`` (1 per class, each object
  scored against itself: a self-retrieval check), and the multi-class sets that
  ``scripts/bench_data.py`` lists in ``MULTICLASS`` (its ``CLASS_PROTOCOL``: shots, the
  images examples come from, the images scored).
- ``confidence``: one class (HeLa, scratch assay): 10 examples from frame 0, ``detect`` on
  the later frames; every candidate that reached the decision is scored by its confidence
  and counts as a true object when it overlaps a ground-truth object at IoU >= 0.5. Reports
  the ROC AUC of the confidence and of the raw similarity; also of the confidence over the
  detections ``detect`` returns only, and over the candidates that overlap an annotated
  object at all (IoU > 0.1, so unannotated objects do not count as false).
- ``speed``: ``detect`` on a 700 x 1100 HeLa frame with per-crop ``effnet`` and dense
  ``views`` (medians of interleaved runs, same process), and a 4096 x 4096 mosaic of HeLa
  frames with ``views``.

    python scripts/bench_classify.py                       # writes docs/perf_data/classify.json
    python scripts/bench_classify.py --parts classify --embedders views,handcrafted
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from bench_accuracy import ARC_DIR, HELA_IMG, HELA_SEG, SCRATCH, VOC_DIR  # noqa: E402

EMBEDDERS = ["effnet", "handcrafted", "views"]


def _gt_set(name: str) -> tuple[list[tuple[np.ndarray, object]], dict]:
    """``([(rgb, Instances with labels)], protocol)`` of a multi-class data set.

    ``protocol``: ``shots`` per class, the images the examples are drawn from
    (``examples_from``) and the images scored (``score_on``; drawn objects are not scored).
    """
    from sam_detect.formats import load_annotations
    from sam_detect.instances import Instances
    from sam_detect.io.images import load_image, to_rgb_uint8

    if name in ("voc", "arc"):
        folder = VOC_DIR if name == "voc" else ARC_DIR
        gt = load_annotations(folder / "data.npz")
        shots = 2 if name == "voc" else 1
        return [(load_image(str(folder / "rgb.jpg")).rgb, gt)], dict(shots=shots, examples_from=[0], score_on=[0])
    import bench_data

    images, labels, class_of = bench_data.load_classes(name)
    items = []
    for img, lab, classes in zip(images, labels, class_of, strict=True):
        inst, ids = Instances.from_label_image(np.asarray(lab))
        inst.labels = np.array([str(classes[int(i)]) for i in ids], dtype=object)
        rgb = img if (img.ndim == 3 and img.dtype == np.uint8) else to_rgb_uint8(img)
        items.append((rgb, inst))
    protocol = dict(bench_data.CLASS_PROTOCOL.get(name, {}))
    protocol.setdefault("shots", 5)
    protocol.setdefault("examples_from", [0])
    protocol.setdefault("score_on", [i for i in range(len(items)) if i not in protocol["examples_from"]])
    return items, protocol


def _draw(labels_per_image: list[np.ndarray], shots: int, seed: int, examples_from: list[int]) -> list[np.ndarray]:
    from sam_detect.eval.protocol import draw_examples

    drawn = draw_examples([list(map(str, lab)) for lab in labels_per_image], shots, seed, examples_from)
    return [drawn.get(i, np.zeros(0, np.int64)) for i in range(len(labels_per_image))]


def _vote(det, queries, vectors, threshold):
    from sam_detect.select import decide

    results = det._search(vectors, det.config.top_k, det.decision)
    # the profile's size priors choose between classes; its other parts do not label
    d = decide(queries, results, threshold=threshold, top_k=det.config.top_k, profile=det._extra("profile"),
               decision=det.decision)
    return d, results


def _make_rare(items: list, drawn: list[np.ndarray], seed: int, rare: int) -> list[np.ndarray]:
    """Keep only ``rare`` of the drawn examples of one class (``seed``'s turn among the
    classes, sorted): a class given few examples beside others given many, as when the
    examples come from an image where that class is rare."""
    classes = sorted({str(x) for (_, g), idx in zip(items, drawn, strict=True) for x in g.labels[idx]})
    victim = classes[seed % len(classes)]
    where = [(k, j) for k, ((_, g), idx) in enumerate(zip(items, drawn, strict=True))
             for j in idx if str(g.labels[j]) == victim]
    keep = {where[i] for i in np.random.default_rng(seed).choice(len(where), size=min(rare, len(where)), replace=False)}
    return [np.array([j for j in idx if str(items[k][1].labels[j]) != victim or (k, j) in keep], np.int64)
            for k, idx in enumerate(drawn)]


def classify(name: str, embedder: str, seeds: list[int], self_retrieval: bool, ties: list[str] | None = None,
             view_alone: bool = True, rare: int | None = None) -> dict:
    """``ties``: the view-weight tie rules (``sam_detect.calibrate.TIES``) to score, each on
    the same examples and vectors (default: the library's own); the first is the headline.
    ``rare``: one class per seed keeps only that many examples (``_make_rare``)."""
    from sam_detect import DetectorConfig, SAMDetect, calibrate
    from sam_detect.classify import retrieval_k, vote_batch
    from sam_detect.embed.views import VIEWS, weighted_query
    from sam_detect.profile import joint_profile, size_priors, with_brightness
    from sam_detect.select import type_by_vote

    items, protocol = _gt_set(name)
    shots = int(protocol["shots"])
    rules = list(ties or [calibrate.TIES])
    rows: dict[str, list[dict]] = {t: [] for t in rules}
    per_view: dict[str, list[float]] = {v: [] for v, _ in VIEWS}
    default_ties = calibrate.TIES
    for seed in seeds:
        det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder=embedder, profile=False))
        drawn = _draw([np.asarray(g.labels) for _, g in items], shots, seed, protocol["examples_from"])
        if rare:
            drawn = _make_rare(items, drawn, seed, rare)
        for (rgb, g), idx in zip(items, drawn, strict=True):
            if len(idx):
                det.add_examples(rgb, g[idx], [str(x) for x in g.labels[idx]])
        score_on = set(protocol["score_on"])
        # the classes' size profiles (the vote's size priors; proposals are not calibrated here)
        profile = det._extra("profile")
        scored = []  # (queries, truth, vectors) per scored image, embedded once
        for k, ((rgb, g), idx) in enumerate(zip(items, drawn, strict=True)):
            if k not in score_on:
                continue
            q_idx = np.arange(len(g)) if self_retrieval else np.setdiff1d(np.arange(len(g)), idx)
            if not len(q_idx):
                continue
            queries = with_brightness(rgb, g[q_idx], profile)  # as detect gives them to the vote
            vectors = det._embed(rgb, queries, {}, typical_area=(det.decision or {}).get("typical_area"))
            scored.append((queries, [str(x) for x in queries.labels], vectors))
        label_counts = calibrate.counts(det.decision)  # the same under every tie rule
        joint = joint_profile(profile) is not None  # detect types these classes found as one
        for rule in rules:
            calibrate.TIES = rule
            try:
                det.refresh_decision()
            finally:
                calibrate.TIES = default_ties
            counts = {"cal": [0, 0, 0], "flat": [0, 0, 0]}  # tp, fp, fn
            correct = correct_plain = correct_knn = correct_detect = total = 0
            for queries, truth, vectors in scored:
                for key, th in (("cal", None), ("flat", 0.5)):
                    d, results = _vote(det, queries, vectors, th)
                    for lab, t in zip(d.labels, truth, strict=True):
                        ok = lab == t
                        counts[key][0] += ok
                        counts[key][1] += (not ok) and lab not in ("unknown",)
                        counts[key][2] += not ok
                labels, _, _ = vote_batch(results, threshold=-1.0, top_k=det.config.top_k,
                                          priors=size_priors(queries, profile), counts=label_counts)
                correct += sum(a == b for a, b in zip(labels, truth, strict=True))
                plain, _, _ = vote_batch(results, threshold=-1.0, top_k=det.config.top_k, counts=label_counts)
                correct_plain += sum(a == b for a, b in zip(plain, truth, strict=True))
                # the vote before session 13: a k-NN vote over the nearest top_k of every label
                knn, _, _ = vote_batch([r[: det.config.top_k] for r in results], threshold=-1.0,
                                       top_k=det.config.top_k, priors=size_priors(queries, profile))
                correct_knn += sum(a == b for a, b in zip(knn, truth, strict=True))
                if joint:  # how `detect` types the objects a library of joint classes finds
                    typed, _ = type_by_vote(queries, results, top_k=det.config.top_k, profile=profile,
                                            decision=det.decision)
                    correct_detect += sum(a == b for a, b in zip(typed, truth, strict=True))
                total += len(truth)
            f1 = {k: 2 * c[0] / max(2 * c[0] + c[1] + c[2], 1) for k, c in counts.items()}
            rows[rule].append({"seed": seed, "accuracy": correct / max(total, 1),
                               "accuracy_without_size_prior": correct_plain / max(total, 1),
                               "accuracy_knn_vote": correct_knn / max(total, 1),
                               "accuracy_as_detect": correct_detect / max(total, 1) if joint else None,
                               "f1_calibrated": f1["cal"],
                               "f1_threshold_0.5": f1["flat"], "queries": total,
                               "weights": (det.decision or {}).get("weights")})
        if embedder == "views" and view_alone:
            view_correct = dict.fromkeys(per_view, 0)
            for _, truth, vectors in scored:
                for view, _ in VIEWS:
                    q, factor = weighted_query(vectors, {view: 1.0})
                    res = det.store.search(det.config.library, q, retrieval_k(det.config.top_k, label_counts))
                    lab_v, _, _ = vote_batch(res, threshold=-1.0, top_k=det.config.top_k, counts=label_counts)
                    view_correct[view] += sum(a == b for a, b in zip(lab_v, truth, strict=True))
            total = sum(len(t) for _, t, _ in scored)
            for view in per_view:
                per_view[view].append(view_correct[view] / max(total, 1))
        det.close()

    def ms(rule, key):
        vals = [r[key] for r in rows[rule] if r[key] is not None]
        if not vals:
            return None
        return {"mean": round(float(np.mean(vals)), 4), "sd": round(float(np.std(vals)), 4)}

    head = rules[0]
    out = {"dataset": name, "embedder": embedder, "shots": shots, "seeds": seeds, "ties": head, "rare": rare,
           "accuracy": ms(head, "accuracy"),
           "accuracy_without_size_prior": ms(head, "accuracy_without_size_prior"),
           "accuracy_knn_vote": ms(head, "accuracy_knn_vote"),
           "accuracy_as_detect": ms(head, "accuracy_as_detect"),
           "f1_calibrated": ms(head, "f1_calibrated"),
           "f1_threshold_0.5": ms(head, "f1_threshold_0.5"), "runs": rows[head]}
    for rule in rules[1:]:
        out[f"ties={rule}"] = {"accuracy": ms(rule, "accuracy"), "f1_calibrated": ms(rule, "f1_calibrated"),
                               "runs": rows[rule]}
    if embedder == "views" and view_alone:
        out["view_alone_accuracy"] = {v: round(float(np.mean(a)), 4) for v, a in per_view.items()}
    return out


def _auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    from scipy.stats import rankdata

    pos, neg = int(positive.sum()), int((~positive).sum())
    if not pos or not neg:
        return None
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - pos * (pos + 1) / 2) / (pos * neg))


def confidence(name: str, embedder: str) -> dict:
    from sam_detect import DetectorConfig, SAMDetect
    from sam_detect.eval.metrics import instances_iou
    from sam_detect.formats import read_label_image
    from sam_detect.instances import Instances
    from sam_detect.io.images import load_image

    if name == "hela":
        gt = list(read_label_image(HELA_SEG))
        frames = [load_image(str(HELA_IMG), frame=t).rgb for t in range(len(gt))]
    else:
        gt = list(read_label_image(SCRATCH, channel=2))
        frames = [load_image(str(SCRATCH), frame=t, channel=0).rgb for t in range(len(gt))]
    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder=embedder))
    ex, _ = Instances.from_label_image(gt[0])
    ex = ex[np.sort(np.random.default_rng(0).choice(len(ex), 10, replace=False))]
    det.add_examples(frames[0], ex, ["nucleus"] * len(ex))
    conf, conf_fit, sim, pos, kept, disjoint = [], [], [], [], [], []
    for t in range(1, len(frames)):
        det.detect(frames[t])
        # profile: at the frame's own scale (frames 1- hold no examples)
        cands, results, profile, _, decision, typing = det._last_decided
        from sam_detect.select import decide

        top_k = det.config.top_k
        d = decide(cands, results, threshold=None, top_k=top_k, profile=profile, decision=decision,
                   types=typing.vote(cands, top_k, None) if typing is not None else None)
        g, _ = Instances.from_label_image(gt[t])
        iou = instances_iou(cands, g)
        best = iou.max(axis=1) if iou.size else np.zeros(len(cands))
        pos.extend((best >= 0.5).tolist())
        disjoint.extend((best <= 0.1).tolist())  # overlaps no annotated object
        chosen = np.zeros(len(cands), bool)
        chosen[d.keep] = True
        kept.extend(chosen.tolist())
        conf.extend(d.confidences.tolist())
        conf_fit.extend((d.confidences * np.sqrt(np.clip(d.fit, 0, 1))).tolist())
        sim.extend(d.similarities.tolist())
    positive = np.array(pos, bool)
    kept_ = np.array(kept, bool)
    annotated = ~(np.array(disjoint, bool) & ~positive)
    det.close()
    return {"dataset": name, "embedder": embedder, "candidates": len(pos), "true_objects": int(positive.sum()),
            "auc_confidence": _auc(np.array(conf), positive),
            "auc_confidence_x_sqrt_fit": _auc(np.array(conf_fit), positive),
            "auc_similarity": _auc(np.array(sim), positive),
            # the detections detect returns (the selection's choice among overlapping alternatives)
            "detections": int(kept_.sum()), "true_detections": int(positive[kept_].sum()),
            "auc_confidence_detections": _auc(np.array(conf)[kept_], positive[kept_]),
            # false candidates that overlap an annotated object only (fragments, merges): the
            # rest may be objects the annotation leaves out
            "auc_confidence_near_annotated": _auc(np.array(conf)[annotated], positive[annotated])}


def speed(repeats: int = 5) -> dict:
    import tifffile

    from sam_detect import DetectorConfig, SAMDetect
    from sam_detect.eval.metrics import MetricsAccumulator
    from sam_detect.instances import Instances
    from sam_detect.io.images import to_rgb_uint8

    img = tifffile.imread(HELA_IMG)
    gt = tifffile.imread(HELA_SEG)
    ex, _ = Instances.from_label_image(gt[0])
    ex = ex[np.sort(np.random.default_rng(0).choice(len(ex), 10, replace=False))]
    dets = {}
    for name in ("effnet", "views"):
        det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder=name))
        det.add_examples(to_rgb_uint8(img[0]), ex, ["nucleus"] * len(ex))
        dets[name] = det
    frame = to_rgb_uint8(img[5])
    for det in dets.values():
        det.detect(frame)  # warm-up
    times = {k: [] for k in dets}
    embed = {k: [] for k in dets}
    for _ in range(repeats):
        for k, det in dets.items():
            t = time.perf_counter()
            found = det.detect(frame)
            times[k].append(time.perf_counter() - t)
            embed[k].append(found.metadata["timings"].get("embed", 0.0) + found.metadata["timings"].get("crop", 0.0))
    f1 = {}
    for k, det in dets.items():
        acc = MetricsAccumulator((0.5,))
        for t in range(1, len(img)):
            found = det.detect(to_rgb_uint8(img[t]))
            g, _ = Instances.from_label_image(gt[t])
            acc.add(Instances(masks=found.masks, labels=["x"] * len(found)), Instances(masks=g.masks, labels=["x"] * len(g)))
        f1[k] = round(acc.result()[0.5].f1, 4)
    out = {
        "detect_700x1100_s": {k: round(statistics.median(v), 3) for k, v in times.items()},
        "embed_700x1100_s": {k: round(statistics.median(v), 3) for k, v in embed.items()},
        "hela_f1_frames_1_19": f1,
        "repeats": repeats,
    }
    out["speedup_detect"] = round(out["detect_700x1100_s"]["effnet"] / out["detect_700x1100_s"]["views"], 2)
    out["speedup_embed"] = round(out["embed_700x1100_s"]["effnet"] / out["embed_700x1100_s"]["views"], 2)
    # a 4096 x 4096 mosaic of HeLa frames (real object density)
    tiles = [to_rgb_uint8(img[t]) for t in range(1, 20)]
    rows, k = [], 0
    while sum(r.shape[0] for r in rows) < 4096:
        row, w = [], 0
        while w < 4096:
            row.append(tiles[k % len(tiles)])
            w += row[-1].shape[1]
            k += 1
        rows.append(np.concatenate(row, axis=1)[:, :4096])
    mosaic = np.ascontiguousarray(np.concatenate(rows, axis=0)[:4096])
    t = time.perf_counter()
    found = dets["views"].detect(mosaic)
    out["mosaic_4096_views_s"] = round(time.perf_counter() - t, 2)
    out["mosaic_4096_objects"] = len(found)
    out["mosaic_4096_timings"] = {k: round(v, 2) for k, v in found.metadata["timings"].items()}
    for det in dets.values():
        det.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="classify,confidence,speed")
    ap.add_argument("--embedders", default=",".join(EMBEDDERS))
    ap.add_argument("--datasets", default=None, help="classification sets (default: voc, arc and bench_data.MULTICLASS)")
    ap.add_argument("--seeds", type=int, default=5, help="draws of the examples per classification set")
    ap.add_argument("--ties", default=None,
                    help="view-weight tie rules to compare on the same vectors, e.g. equal,mean (default: the library's)")
    ap.add_argument("--no-view-alone", action="store_true", help="skip scoring each view alone")
    ap.add_argument("--rare", type=int, default=None,
                    help="one class per seed keeps only this many examples (a class rare in the examples' images)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "perf_data" / "classify.json"))
    args = ap.parse_args()
    import bench_data

    parts = args.parts.split(",")
    embedders = args.embedders.split(",")
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if out_path.exists() else {}

    def save():
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(results, indent=1))

    if "classify" in parts:
        sets = args.datasets.split(",") if args.datasets else ["voc", "arc", *getattr(bench_data, "MULTICLASS", [])]
        for name in sets:
            for emb in embedders:
                t = time.perf_counter()
                r = classify(name, emb, [0] if name == "arc" else list(range(args.seeds)), self_retrieval=name == "arc",
                             ties=args.ties.split(",") if args.ties else None, view_alone=not args.no_view_alone,
                             rare=args.rare)
                r["wall_s"] = round(time.perf_counter() - t, 1)
                key = f"{name}/{emb}" + (f"/rare{args.rare}" if args.rare else "")
                results.setdefault("classify", {})[key] = r
                print(json.dumps({k: v for k, v in r.items() if k != "runs"}), file=sys.stderr)
                save()
    if "confidence" in parts:
        for name in ("hela", "scratch"):
            for emb in embedders:
                r = confidence(name, emb)
                results.setdefault("confidence", {})[f"{name}/{emb}"] = r
                print(json.dumps(r), file=sys.stderr)
                save()
    if "speed" in parts:
        results["speed"] = speed()
        print(json.dumps(results["speed"]), file=sys.stderr)
        save()


if __name__ == "__main__":
    main()
