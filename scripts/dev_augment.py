#!/usr/bin/env python
"""Examples augmented by their image's rotations and flips, screened offline (development only).

``dev_decision_rules.py``'s protocol (ground-truth masks as candidates, examples drawn per
seed), with each example also embedded on its image turned by 90, 180 and 270 degrees and
mirrored (the eight symmetries of the square: ``transform``). Each scored object is typed by
the vote (each class's 5 nearest examples, view weights chosen on the examples as drawn) with
its similarity to an example taken five ways: as drawn; the best of the example and its
mirror image; the best over the eight; their mean; and every copy counted as an example of
its own. Accuracy and the classes' mean accuracy, per seed and pooled. No class priors.

    python scripts/dev_augment.py --set dev_stroma_types --seeds 0,1,2
    python scripts/dev_augment.py --set dev_micronuclei --seeds 0,1,2

Session 82: not built (docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

WAYS = ("as drawn", "best of it and its mirror", "best of the eight", "mean of the eight", "the copies as examples")


def transform(a: np.ndarray, t: int) -> np.ndarray:
    """``a`` (``H, W[, C]``) turned ``t % 4`` quarter turns, then mirrored left to right for
    ``t >= 4``: ``t`` in 0..7."""
    a = np.rot90(a, t % 4, axes=(0, 1))
    return np.ascontiguousarray(a[:, ::-1] if t >= 4 else a)


def embed(name: str, seed: int) -> tuple[dict[int, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """``({t: the examples' vectors on the image transformed by t}, their labels, the scored
    objects' vectors, their labels)`` for one draw."""
    import bench_classify as bc
    import dev_decision_rules as dr

    from sam_detect import DetectorConfig, SAMDetect
    from sam_detect.instances import Instances

    items, protocol = dr.DEV_SETS[name]() if name in dr.DEV_SETS else bc._gt_set(name)
    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="views", profile=False))
    drawn = bc._draw([np.asarray(g.labels) for _, g in items], int(protocol["shots"]), seed, protocol["examples_from"])
    for (rgb, g), idx in zip(items, drawn, strict=True):
        if len(idx):
            det.add_examples(rgb, g[idx], [str(x) for x in g.labels[idx]])
    typical = (det.decision or {}).get("typical_area")
    vectors: dict[int, list[np.ndarray]] = {t: [] for t in range(8)}
    labels: list[str] = []
    for (rgb, g), idx in zip(items, drawn, strict=True):
        if not len(idx):
            continue
        masks = np.stack(list(g[idx].masks))
        labels += [str(x) for x in g[idx].labels]
        for t in range(8):
            turned = Instances(masks=np.stack([transform(m, t) for m in masks]))
            vectors[t].append(det._embed(transform(rgb, t), turned, {}, typical_area=typical))
    q, ql = [], []
    for k, ((rgb, g), idx) in enumerate(zip(items, drawn, strict=True)):
        rest = np.setdiff1d(np.arange(len(g)), idx)
        if k in protocol["score_on"] and len(rest):
            q.append(det._embed(rgb, g[rest], {}, typical_area=typical))
            ql += [str(x) for x in g[rest].labels]
    det.close()
    return {t: np.concatenate(v) for t, v in vectors.items()}, np.array(labels), np.concatenate(q), np.array(ql)


def vote(s: np.ndarray, el: np.ndarray) -> np.ndarray:
    """Each row's class: the similarity-weighted vote of its 5 nearest examples."""
    from dev_decision_rules import knn_vote

    classes, tot = knn_vote(s, el)
    return classes[tot.argmax(1)]


def screen(name: str, seed: int) -> dict:
    import dev_decision_rules as dr

    vectors, el, q, ql = embed(name, seed)
    qv = dr._views(q)
    w = dr._weights(dr._views(vectors[0]), el)
    sims = np.stack([np.tensordot(w, np.stack([a @ b.T for a, b in zip(qv, dr._views(vectors[t]), strict=True)]), axes=1)
                     for t in range(8)])
    picks = {
        "as drawn": vote(sims[0], el),
        "best of it and its mirror": vote(np.maximum(sims[0], sims[4]), el),
        "best of the eight": vote(sims.max(0), el),
        "mean of the eight": vote(sims.mean(0), el),
        "the copies as examples": vote(np.concatenate(list(sims), 1), np.tile(el, 8)),
    }
    return {"seed": seed, "scored": len(ql), **{way: [round(float((p == ql).mean()), 4),
                                                      round(float(np.mean([(p[ql == c] == c).mean() for c in np.unique(ql)])), 4)]
                                               for way, p in picks.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", default="dev_stroma_types", help="dev_stroma_types, dev_micronuclei or voc")
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        rows.append(screen(args.set, seed))
        print(json.dumps(rows[-1]), flush=True)
    for way in WAYS:
        print(f"{args.set} {way:28s} accuracy {np.mean([r[way][0] for r in rows]):.3f}  "
              f"classes' mean {np.mean([r[way][1] for r in rows]):.3f}")


if __name__ == "__main__":
    main()
