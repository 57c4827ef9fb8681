#!/usr/bin/env python
"""Decision rules compared offline on the pipeline's own ``views`` vectors (issue 12).

Development tool, not a benchmark of the product: ``cache`` runs ``bench_classify``'s
protocol (ground-truth masks as candidates, examples drawn per seed and added with
``add_examples``, the other objects embedded as ``detect`` does) and saves every seed's
example and query vectors; ``rules`` then scores alternative decisions on those vectors in
numpy, so a rule costs seconds instead of a re-embedding. Sets: ``bench_classify``'s
(``voc``, ``hgsc``, ``micronuclei``) and ``dev_micronuclei`` (mnFinder's *training* split,
nuclei and micronuclei: frame 0 gives 8 examples per class, frames 1-3 and 20-29 are
scored; development only, never reported as a result) and ``dev_stroma_types`` (the HGSC
*stroma* crop's connective and inflammatory nuclei: tiles 0-2 give 8 per class, 3-8 are
scored; development only). ``--scenarios`` thins the examples first (``SCENARIOS``: one
class kept to 2, or every class in proportion to its share of the scored objects), as
happens when examples come from images where a class is rare.

    python scripts/dev_decision_rules.py cache --sets voc,hgsc,dev_micronuclei --seeds 5
    python scripts/dev_decision_rules.py rules --sets voc,hgsc,dev_micronuclei
    python scripts/dev_decision_rules.py rules --sets dev_micronuclei,dev_stroma_types \
        --scenarios "as drawn,one class rare,natural shares"
    python scripts/dev_decision_rules.py ceiling --sets dev_micronuclei,dev_stroma_types

``priors`` scores the vote with no class priors, with the size priors and with the size and
brightness priors (``profile.size_priors``, ``profile.brightness``) on the cached seeds,
thinned by ``--scenarios``:

    python scripts/dev_decision_rules.py priors --sets dev_stroma_types,voc --scenarios "as drawn,one class rare"

``spatial`` asks whether the types of an object's neighbours in its image help type it: the
vote's class scores under the size and brightness priors (as ``detect`` types, each row summing
to 1) combined with the share of each first-pass type among its ``K`` nearest other objects or
those within ``r`` of the examples' median equivalent diameters, ``argmax (1 - w) s + w q``,
on a grid of ``w`` and in 1 or 3 rounds (``SPATIAL_*``), beside the image's own shares of the
types (``K=1e+06``, the control), the neighbours' true types (the lever, not a rule), and
weights the examples choose by leave-one-out (``SPATIAL_GATES``). It needs the positions the
``cache`` step keeps since session 94 (``Qxy``, ``Exy``, ``Eimg``, and the example images'
other objects ``R``):

    python scripts/dev_decision_rules.py spatial --sets dev_stroma_types,dev_micronuclei \
        --scenarios "as drawn,one class rare,natural shares" [--balanced]

``context`` adds a neighbourhood view that needs no first-pass types: per object, features of
the other objects of its image (``CONTEXT_FEATURES``: distances to the 4th and 8th nearest in
the examples' median equivalent diameters, the 8 nearest's median area over the examples'
median, its own area over theirs, their elongation, the share and count within 3 diameters;
ground-truth masks stand in for detections, the examples' neighbourhoods come from every object
of the example images), standardised on the example images' objects, compared by cosine or an
RBF (``CONTEXT_KERNELS``) per subset (``CONTEXT_SUBSETS``), added to the views' similarity at
``CONTEXT_A`` x the other views' weight and scored by the vote under the size and brightness
priors; gates: the examples' leave-one-out over ``CONTEXT_A``, and ``choose_weights`` over
seven views. Accuracy and balanced accuracy side by side:

    python scripts/dev_decision_rules.py context --sets dev_stroma_types,dev_micronuclei \
        --scenarios "as drawn,one class rare,natural shares"

``ceiling`` embeds every object of every image of a set (the first seed's library gives the
working scale) and asks how far the descriptions themselves tell the classes apart: a linear
model (``_linear``) fitted on every object of the other images and scored on each image in
turn, and fitted on ``n`` objects per class drawn from the protocol's example images only
(what a library of ``n`` examples per class could learn; the vote's rule beside it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
CACHE = Path("/tmp/sam_detect_decision_rules")


def typed_item(image, label, classes) -> tuple:
    """``(image as RGB uint8, Instances labelled by their class)`` of one frame of a
    ``bench_data`` multi-class set (``classes``: label id -> class)."""
    from sam_detect.instances import Instances
    from sam_detect.io.images import to_rgb_uint8

    inst, ids = Instances.from_label_image(np.asarray(label))
    inst.labels = np.array([str(classes[int(j)]) for j in ids], dtype=object)
    return to_rgb_uint8(image), inst


def _dev_micronuclei():
    import bench_data

    images, labels, class_of = bench_data.micronuclei_classes("training")
    items = [typed_item(images[i], labels[i], class_of[i]) for i in [0, 1, 2, 3, *range(20, 30)]]
    return items, dict(shots=8, examples_from=[0], score_on=list(range(1, len(items))))


def _dev_stroma_types():
    """The HGSC *stroma* crop's nucleus types (connective, inflammatory; a few neoplastic):
    tiles 0-2 give 8 examples per class, tiles 3-8 are scored (development only)."""
    import bench_data

    images, labels, class_of = bench_data.hgsc_stroma_classes()
    items = [typed_item(img, lab, classes) for img, lab, classes in zip(images, labels, class_of, strict=True)]
    return items, dict(shots=8, examples_from=[0, 1, 2], score_on=list(range(3, 9)))


DEV_SETS = {"dev_micronuclei": _dev_micronuclei, "dev_stroma_types": _dev_stroma_types}


def cache(name: str, seeds: list[int]) -> None:
    import bench_classify as bc

    from sam_detect import DetectorConfig, SAMDetect

    items, protocol = DEV_SETS[name]() if name in DEV_SETS else bc._gt_set(name)
    CACHE.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        out = CACHE / f"{name}_{seed}.npz"
        if out.exists():
            continue
        det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="views", profile=False))
        drawn = bc._draw([np.asarray(g.labels) for _, g in items], int(protocol["shots"]), seed, protocol["examples_from"])
        for (rgb, g), idx in zip(items, drawn, strict=True):
            if len(idx):
                det.add_examples(rgb, g[idx], [str(x) for x in g.labels[idx]])
        vectors, labels, _ = det._examples()
        typical = (det.decision or {}).get("typical_area")
        q, ql, qimg, qxy = [], [], [], []
        r, rl, rimg, rxy = [], [], [], []  # the other objects of the example images (``spatial``)
        for k, ((rgb, g), idx) in enumerate(zip(items, drawn, strict=True)):
            rest = np.setdiff1d(np.arange(len(g)), idx)
            if k in protocol["score_on"] and len(rest):
                q.append(det._embed(rgb, g[rest], {}, typical_area=typical))
                ql += [str(x) for x in g[rest].labels]
                qimg += [k] * len(rest)
                qxy.append(centroids(g[rest]))
            elif len(idx) and len(rest):
                r.append(det._embed(rgb, g[rest], {}, typical_area=typical))
                rl += [str(x) for x in g[rest].labels]
                rimg += [k] * len(rest)
                rxy.append(centroids(g[rest]))
        # the examples' images and centroids, in the order ``add_examples`` stored them
        eimg = np.concatenate([[k] * len(idx) for k, idx in enumerate(drawn) if len(idx)])
        exy = np.concatenate([centroids(items[k][1][idx]) for k, idx in enumerate(drawn) if len(idx)])
        earea = np.concatenate([items[k][1].areas[idx] for k, idx in enumerate(drawn) if len(idx)])
        if [str(x) for k, idx in enumerate(drawn) for x in items[k][1].labels[idx]] != [str(x) for x in labels]:
            raise RuntimeError("the library's examples are not in the order they were drawn")
        extra = dict(R=np.concatenate(r), Rl=np.array(rl), Rimg=np.array(rimg), Rxy=np.concatenate(rxy)) if r else {}
        np.savez(out, E=vectors, El=np.array(labels), Q=np.concatenate(q), Ql=np.array(ql), Qimg=np.array(qimg),
                 Qxy=np.concatenate(qxy), Eimg=eimg, Exy=exy, E_area=earea, **extra)
        det.close()
        print(f"cached {name} seed {seed}: {len(labels)} examples, {len(ql)} queries", file=sys.stderr)


def centroids(inst) -> np.ndarray:
    """``(N, 2)`` the objects' centroids, ``(row, column)`` in the image."""
    out = np.zeros((len(inst), 2))
    for i in range(len(inst)):
        m, (sy, sx) = inst.mask_crop(i)
        yy, xx = np.nonzero(m)
        out[i] = (yy.mean() + sy.start, xx.mean() + sx.start) if len(yy) else (np.nan, np.nan)
    return out


# -- rules ------------------------------------------------------------------------------
def _unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _views(x):
    from sam_detect.embed.views import view_slices

    return [_unit(x[:, s]) for s in view_slices().values()]


def _centre(ev, qv, on: str, scale: float | None = None, el=None):
    """Each view centred on the mean of the candidates (``q``) or of the examples (``e``), or
    on the mean of the classes' example means (``c``: each class weighs alike, ``el`` their
    labels); ``scale``: also divide by the per-feature sd shrunk by ``scale`` towards the mean sd."""
    eo, qo = [], []
    for e, q in zip(ev, qv, strict=True):
        pool = q if on == "q" else e
        mu = np.mean([e[el == c].mean(0) for c in np.unique(el)], axis=0) if on in ("c", "c2") else pool.mean(0)
        if on == "c2":  # half-way to the classes' mean example
            mu = 0.5 * mu
        ee, qq = e - mu, q - mu
        if scale is not None:
            sd = pool.std(0)
            s = np.maximum(np.sqrt((1 - scale) * sd**2 + scale * np.mean(sd**2)), 1e-6)
            ee, qq = ee / s, qq / s
        eo.append(_unit(ee))
        qo.append(_unit(qq))
    return eo, qo


def _weights(ev, el, ties="equal", spread=False):
    from sam_detect.calibrate import choose_weights
    from sam_detect.embed.views import VIEWS

    names = [n for n, _ in VIEWS]
    pe = np.stack([e @ e.T for e in ev])
    factor = np.ones(len(names))
    if spread:  # each view's similarities divided by their sd among the examples
        off = ~np.eye(len(el), dtype=bool)
        factor = 1.0 / np.maximum([p[off].std() for p in pe], 1e-3)
    w, _ = choose_weights(pe * factor[:, None, None], el, names, ties=ties)
    w = np.array([w[n] for n in names]) * factor
    return w / w.sum()


def knn_vote(s: np.ndarray, el: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """``(classes, (M, C) class scores)`` from similarities ``s`` ``(M, N)`` to the examples
    labelled ``el``: each row's ``k`` nearest examples vote for their class with their
    similarity (clipped at 0)."""
    classes, codes = np.unique(el, return_inverse=True)
    kk = min(k, s.shape[1])
    nn = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
    tot = np.zeros((len(s), len(classes)))
    np.add.at(tot, (np.repeat(np.arange(len(s)), kk), codes[nn].ravel()),
              np.clip(np.take_along_axis(s, nn, 1), 0, None).ravel())
    return classes, tot


def _scores(ev, el, qv, w, rule="knn", k=5):
    """``(classes, (M, C) class scores)``: the similarity-weighted k-NN vote or the class mean."""
    s = np.tensordot(w, np.stack([q @ e.T for q, e in zip(qv, ev, strict=True)]), axes=1)
    classes, codes = np.unique(el, return_inverse=True)
    if rule == "mean":
        return classes, np.stack([s[:, codes == c].mean(1) for c in range(len(classes))], 1)
    _, tot = knn_vote(s, el, k)
    if rule == "balanced":
        tot = tot / np.bincount(codes, minlength=len(classes))
    if rule == "soft":  # distance-weighted: exp((s - s_max) / 0.05) instead of s
        kk = min(k, s.shape[1])
        nn = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        top = np.take_along_axis(s, nn, 1)
        tot = np.zeros((len(s), len(classes)))
        np.add.at(tot, (np.repeat(np.arange(len(s)), kk), codes[nn].ravel()),
                  np.exp((top - top.max(1, keepdims=True)) / 0.05).ravel())
    return classes, tot


def _classwise(ev, el, qv, w, m: int | None = 5):
    """``(classes, (M, C))``: each class's mean similarity over its ``m`` nearest examples
    (every one of them for ``m=None``), what ``classify.vote`` does with ``counts``."""
    return _nearest_means(np.tensordot(w, np.stack([q @ e.T for q, e in zip(qv, ev, strict=True)]), axes=1), el, m)


def _prototype(ev, el, qv, w, blend: float | None = None, m: int = 5, unit: bool | str = True):
    """``(classes, (M, C))``: each class's prototype, the unit mean of its examples in each view
    (No-Time-To-Train's ``mem_feats_ins_avg``, normalised), scored by the weighted views'
    cosine; ``blend``: that score times ``blend`` added to each class's mean over its ``m``
    nearest examples (the vote's rule). ``unit=False``: the mean itself (each class's mean
    similarity); ``"debiased"``: the mean over its length as unbiased for the class's count
    (``(n |m|^2 - 1) / (n - 1)``, at least 0.05; a class of one example takes the other
    classes' median length)."""
    classes = np.unique(el)
    norm = _unit if unit else (lambda x: x)  # not unit: the mean similarity to the class's examples

    def debiased(e):  # the class's mean over its mean resultant length unbiased for its count
        means = {c: e[el == c].mean(0) for c in classes}
        rho = {c: max((n * float(means[c] @ means[c]) - 1.0) / (n - 1.0), 0.05) ** 0.5
               for c in classes if (n := int((el == c).sum())) > 1}
        pooled = float(np.median(list(rho.values()))) if rho else 1.0
        # one example: the other classes' median length
        return np.stack([means[c] / rho.get(c, pooled) for c in classes])

    protos = ([debiased(e) for e in ev] if unit == "debiased"
              else [np.stack([norm(e[el == c].mean(0, keepdims=True))[0] for c in classes]) for e in ev])
    p = np.tensordot(w, np.stack([q @ pr.T for q, pr in zip(qv, protos, strict=True)]), axes=1)
    if blend is None:
        return classes, p
    _, near = _classwise(ev, el, qv, w, m)
    return classes, near + blend * p


def _nearest_means(s, el, m: int | None = 5):
    """``(classes, (M, C))`` from similarities ``s`` ``(M, N)`` to the examples labelled
    ``el``: each class's mean (of similarities clipped at 0) over its ``m`` nearest examples
    (every one for ``m=None``). ``-inf`` marks an example left out of a row's vote (the row's
    own, leave-one-out): it is not counted, and a row with no example of a class gives it 0."""
    classes = np.unique(el)
    out = []
    for c in classes:
        sc = -np.sort(-s[:, el == c], axis=1)  # best first, the left-out last
        k = sc.shape[1] if m is None else min(m, sc.shape[1])
        top = np.clip(sc[:, :k], 0, None)
        have = np.isfinite(sc).sum(1)
        if (have >= k).all():
            out.append(top.mean(1))
        else:
            out.append(np.array([top[i, :min(k, h)].mean() if h else 0.0 for i, h in enumerate(have)]))
    return classes, np.stack(out, 1)


#: the ridge penalties the leave-one-out choice picks from (``ridge="loo"``)
RIDGES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


def _ridge(ev, el, qv, w, lam, balanced=False):
    """``(classes, (M, C))``: kernel ridge regression of the one-hot labels on the examples,
    the kernel the weighted view similarities; ``lam="loo"`` picks the penalty from
    ``RIDGES`` by the examples' closed-form leave-one-out accuracy (ties: the larger)."""
    kern = np.tensordot(w, np.stack([e @ e.T for e in ev]), axes=1)
    kq = np.tensordot(w, np.stack([q @ e.T for q, e in zip(qv, ev, strict=True)]), axes=1)
    classes, codes = np.unique(el, return_inverse=True)
    y = np.eye(len(classes))[codes]
    n = len(el)

    weight = (n / (len(classes) * np.bincount(codes)))[codes] if balanced else np.ones(n)

    def fit(lam_):
        inv = np.linalg.inv(kern + lam_ * np.diag(1.0 / weight))
        return inv @ y, kern @ inv

    if lam == "loo":
        best = None
        for lam_ in RIDGES:
            a, hat = fit(lam_)
            pred = kern @ a
            loo = y - (y - pred) / np.maximum(1 - np.diag(hat), 1e-6)[:, None]
            acc = float((loo.argmax(1) == codes).mean())
            if best is None or acc >= best[0]:
                best = (acc, lam_)
        lam = best[1]
    a, _ = fit(lam)
    return classes, kq @ a


def _linear(ev, el, qv, lam=1.0):
    """``(classes, (M, C))``: ridge regression of the one-hot labels on the views (each a
    unit vector, unweighted) with a free intercept, every class weighed alike (each example
    by ``n / (classes x its class's examples)``); dual form."""
    x, q = np.concatenate(ev, axis=1), np.concatenate(qv, axis=1)
    classes, codes = np.unique(el, return_inverse=True)
    y = np.eye(len(classes))[codes]
    sw = (len(codes) / (len(classes) * np.bincount(codes)))[codes]
    mx, my = sw @ x / sw.sum(), sw @ y / sw.sum()
    xc = x - mx
    a = np.linalg.solve(sw[:, None] * (xc @ xc.T) + lam * np.eye(len(codes)), sw[:, None] * (y - my))
    return classes, (q - mx) @ (xc.T @ a) + my


#: the softmax temperatures the examples' leave-one-out likelihood picks from (``_class_shares``)
TEMPERATURES = (0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2)


def _class_shares(ev, el, qv, w, groups):
    """Each class's share of the scored objects estimated by EM (Saerens, Latinne and
    Decaestecker 2002), image by image (``groups``), and the objects typed under it: the
    classes' scores (each class's 5 nearest, ``_classwise``) made posteriors by a softmax
    whose temperature maximises the examples' own leave-one-out likelihood; the vote treats
    every class alike, so the posteriors' prior is uniform. Returns the predicted class
    indices and the classes."""
    from scipy.special import softmax

    classes, p = _classwise(ev, el, qv, w, 5)
    loo = np.tensordot(w, np.stack([e @ e.T for e in ev]), axes=1)
    np.fill_diagonal(loo, -np.inf)  # each example left out of its own vote
    _, own = _nearest_means(loo, el, 5)
    codes = np.searchsorted(classes, el)
    temp = max(TEMPERATURES, key=lambda t: np.log(np.maximum(softmax(own / t, axis=1)[np.arange(len(codes)), codes],
                                                             1e-12)).mean())
    post = softmax(p / temp, axis=1)
    pred = np.empty(len(p), np.int64)
    for sel in groups:
        share = np.full(len(classes), 1.0 / len(classes))
        for _ in range(100):
            q = post[sel] * share
            q /= q.sum(1, keepdims=True)
            new = q.mean(0)
            done = np.abs(new - share).max() < 1e-7
            share = new
            if done:
                break
        pred[sel] = (post[sel] * share).argmax(1)
    return pred, classes


def _propagate(p0, c, k=10, beta=0.5, iters=10):
    """Label propagation over the candidates' own k-NN graph (similarities ``c``)."""
    m = len(p0)
    if m < 3:
        return p0
    c = c.copy()
    np.fill_diagonal(c, -np.inf)
    kk = min(k, m - 1)
    nn = np.argpartition(-c, kk - 1, axis=1)[:, :kk]
    a = np.zeros((m, m))
    a[np.repeat(np.arange(m), kk), nn.ravel()] = np.clip(np.take_along_axis(c, nn, 1), 0, None).ravel()
    a /= np.maximum(a.sum(1, keepdims=True), 1e-12)
    p = p0 / np.maximum(p0.sum(1, keepdims=True), 1e-12)
    q = p.copy()
    for _ in range(iters):
        q = (1 - beta) * p + beta * a @ q
    return q


RULES = {
    "k-NN vote, k = 5 (before session 13)": {},
    "class mean similarity": {"rule": "mean"},
    "class-balanced k-NN": {"rule": "balanced"},
    "k-NN, k = 12": {"k": 12},
    "distance-weighted k-NN": {"rule": "soft"},
    "view weights: ties to their mean": {"ties": "mean"},
    "view weights / each view's similarity sd": {"spread": True},
    "centre views on all candidates, k-NN": {"centre": "q"},
    "centre views on all candidates, class mean": {"centre": "q", "rule": "mean"},
    "centre + half-shrunk sd on all candidates, k-NN": {"centre": "q", "scale": 0.5},
    "centre views on each image's candidates, k-NN": {"centre": "q", "per_image": True},
    "centre views on the examples, k-NN": {"centre": "e"},
    "centre views on the examples, class mean": {"centre": "e", "rule": "mean"},
    "centre views on the examples, each class's 5 nearest (session 78)": {"centre": "e", "rule": "classwise", "k": 5},
    "... the view weights chosen on the vectors as stored (session 78)": {"centre": "e", "rule": "classwise", "k": 5,
                                                                          "plain_weights": True},
    "centre views on the classes' mean example, each class's 5 nearest (session 78)": {"centre": "c", "rule": "classwise",
                                                                                        "k": 5},
    "... the view weights chosen on the vectors as stored (session 78) ": {"centre": "c", "rule": "classwise", "k": 5,
                                                                           "plain_weights": True},
    "... half-way to the classes' mean example (session 78)": {"centre": "c2", "rule": "classwise", "k": 5,
                                                               "plain_weights": True},
    "... on the classes' mean example where every class has 5 examples (session 78)": {
        "centre": "c", "rule": "classwise", "k": 5, "plain_weights": True, "least": 5},
    "label propagation over each image's candidates": {"propagate": True},
    "each class's 5 nearest, the classes' shares in each image estimated by EM (session 79)": {"rule": "em"},
    "each class's 3 nearest examples, mean": {"rule": "classwise", "k": 3},
    "each class's 5 nearest examples, mean (session 13)": {"rule": "classwise", "k": 5},
    "kernel ridge on the view similarities, penalty 0.1": {"rule": "ridge", "k": 0.1},
    "kernel ridge, penalty 1": {"rule": "ridge", "k": 1.0},
    "kernel ridge, penalty by the examples' leave-one-out": {"rule": "ridge", "k": "loo"},
    "class-balanced kernel ridge, penalty 0.1": {"rule": "balanced ridge", "k": 0.1},
    "class-balanced kernel ridge, penalty 0.3": {"rule": "balanced ridge", "k": 0.3},
    "class-balanced kernel ridge, penalty by leave-one-out": {"rule": "balanced ridge", "k": "loo"},
    "class-balanced linear ridge on the views, free intercept, penalty 1 (session 56)": {"rule": "linear", "k": 1.0},
    "each class's unit mean example, cosine (No-Time-To-Train's prototype, session 82)": {"rule": "prototype"},
    "each class's 5 nearest + 0.5 x its prototype's cosine (session 82)": {"rule": "prototype", "blend": 0.5},
    "each class's 5 nearest + 1 x its prototype's cosine (session 82)": {"rule": "prototype", "blend": 1.0},
}

#: how the examples are thinned per class before a rule is scored (``rules --scenarios``):
#: as drawn (8 per class), one class kept to 2 (in turn, by seed), and each class
#: in proportion to its share of the scored objects (8 for the largest, at least 1), as
#: when the examples come from images where some classes are rare
SCENARIOS = ("as drawn", "one class rare", "natural shares")


def thin(d: dict, scenario: str, seed: int) -> dict:
    """``d`` with only some of its examples, per ``SCENARIOS``."""
    el = d["El"]
    classes = np.unique(el)
    if scenario == "as drawn":
        return d
    if scenario == "one class rare":
        keep_n = {c: (2 if c == classes[seed % len(classes)] else 8) for c in classes}
    elif scenario == "natural shares":
        share = np.array([(d["Ql"] == c).mean() for c in classes])
        keep_n = dict(zip(classes, np.clip(np.round(8 * share / share.max()), 1, 8).astype(int), strict=True))
    else:
        raise ValueError(f"unknown scenario {scenario!r}")
    rng = np.random.default_rng(seed)
    keep = np.sort(np.concatenate([rng.choice(np.flatnonzero(el == c), size=min(int(keep_n[c]), int((el == c).sum())),
                                              replace=False) for c in classes]))
    views = _views(d["E"])
    out = {**d, "E": np.concatenate([v[keep] for v in views], axis=1), "El": el[keep],
           **{k: d[k][keep] for k in ("E_area", "E_grey", "Exy", "Eimg", "E_obj") if k in d}}  # what ``priors`` reads
    if "Rxy" in d:  # ``spatial``: an example left out is one more unlabelled object of its image
        gone = np.setdiff1d(np.arange(len(el)), keep)
        for r, e in (("R", "E"), ("Rl", "El"), ("Rimg", "Eimg"), ("Rxy", "Exy"), ("R_obj", "E_obj")):
            if r in d and e in d:
                out[r] = np.concatenate([d[r], d[e][gone]])
    return out


def score(d: dict, centre=None, scale=None, per_image=False, rule="knn", k=5, ties="equal", spread=False,
          propagate=False, plain_weights=False, least=0, blend=None) -> float:
    """The share of the scored objects typed right (``BALANCED``: the mean over the classes
    of each class's share typed right)."""
    ev, qv, el, ql = _views(d["E"]), _views(d["Q"]), d["El"], d["Ql"]
    if least and min(np.unique(el, return_counts=True)[1]) < least:
        centre = None  # a class with fewer examples than ``least``: not centred
    groups = [d["Qimg"] == i for i in np.unique(d["Qimg"])] if per_image else [np.ones(len(ql), bool)]
    pred = np.empty(len(ql), dtype=object)
    for sel in groups:
        e2, q2 = (ev, [q[sel] for q in qv]) if centre is None else _centre(ev, [q[sel] for q in qv], centre, scale, el)
        w = _weights(ev if plain_weights else e2, el, ties, spread)
        if rule == "linear":
            classes, p = _linear(e2, el, q2, k)
        elif rule in ("ridge", "balanced ridge"):
            classes, p = _ridge(e2, el, q2, w, k, balanced=rule == "balanced ridge")
        elif rule == "em":  # typed under each image's class shares
            img = d["Qimg"][sel]
            idx, classes = _class_shares(e2, el, q2, w, [img == i for i in np.unique(img)])
            pred[sel] = classes[idx]
            continue
        else:
            classes, p = (_classwise(e2, el, q2, w, k) if rule == "classwise"
                          else _prototype(e2, el, q2, w, blend) if rule == "prototype"
                          else _scores(e2, el, q2, w, rule, k))
        pred[sel] = classes[p.argmax(1)]
    if propagate:
        w = _weights(ev, el)
        classes, p = _scores(ev, el, qv, w)
        for i in np.unique(d["Qimg"]):
            sel = d["Qimg"] == i
            c = np.tensordot(w, np.stack([q[sel] @ q[sel].T for q in qv]), axes=1)
            pred[sel] = classes[_propagate(p[sel], c).argmax(1)]
    return _accuracy(pred, ql)


#: ``rules --balanced``: score each rule by the mean of the classes' own accuracies
BALANCED = False


def rules(sets: list[str], scenario: str = "as drawn", only: list[str] | None = None) -> dict:
    data = {s: [thin(dict(np.load(f)), scenario, i) for i, f in enumerate(sorted(CACHE.glob(f"{s}_[0-9]*.npz")))]
            for s in sets}
    out = {}
    for name, kw in RULES.items():
        if only and name not in only:
            continue
        row = {}
        for s, runs in data.items():
            acc = [score(d, **kw) for d in runs]
            row[s] = {"mean": round(float(np.mean(acc)), 3), "sd": round(float(np.std(acc)), 3), "seeds": len(acc)}
        out[name] = row
        print(f"{name:50s} " + "  ".join(f"{s} {r['mean']:.3f} ± {r['sd']:.3f} ({r['seeds']})" for s, r in row.items()))
    return out


def _prior_runs(name: str, scenario: str) -> list[dict]:
    """``name``'s cached seeds (``thin``-ned by ``scenario``), each with what the vote's class
    priors read: the examples' areas and brightness (``E_area``, ``E_grey``) and every
    scored image's objects as ``Instances`` in the cache's order (``Q_inst``)."""
    import bench_classify as bc

    from sam_detect.profile import brightness

    items, protocol = DEV_SETS[name]() if name in DEV_SETS else bc._gt_set(name)
    grey = [brightness(rgb, g) for rgb, g in items]
    runs = []
    for seed, f in enumerate(sorted(CACHE.glob(f"{name}_[0-9]*.npz"))):
        d = dict(np.load(f))
        drawn = bc._draw([np.asarray(g.labels) for _, g in items], int(protocol["shots"]), seed, protocol["examples_from"])
        d["E_area"] = np.concatenate([items[k][1].areas[idx] for k, idx in enumerate(drawn) if len(idx)])
        d["E_grey"] = np.concatenate([grey[k][idx] for k, idx in enumerate(drawn) if len(idx)])
        q_inst = []
        for k, ((_, g), idx) in enumerate(zip(items, drawn, strict=True)):
            rest = np.setdiff1d(np.arange(len(g)), idx)
            if k in protocol["score_on"] and len(rest):
                q = g[rest]
                q.data["brightness"] = grey[k][rest]
                q_inst.append(q)
        if sum(len(q) for q in q_inst) != len(d["Ql"]):
            raise RuntimeError(f"{f.name} was cached with another draw than this protocol gives")
        d = thin(d, scenario, seed)
        d["Q_inst"] = q_inst
        runs.append(d)
    return runs


#: ``priors`` also scores the vote plus each class's prototype cosine at these weights
#: (``_prototype``'s ``blend``), under the size and brightness priors (session 82)
PRIOR_BLENDS = (0.5, 1.0)


def priors(sets: list[str], scenario: str = "as drawn") -> dict:
    """The vote (each class's 5 nearest, view weights as a library chooses them) with no class
    priors, with the size priors, and with the size and brightness priors, both through
    ``profile.size_priors`` (brightness for every class darker than its image; a class's
    polarity read here from the sign of its examples' mean brightness); under both priors
    also the vote plus ``PRIOR_BLENDS`` x each class's prototype cosine or mean similarity,
    the prototype alone and the prototype over its count-debiased length (``_prototype``;
    session 82)."""
    from sam_detect.profile import _brightness_spreads, size_priors

    out = {}
    for name in sets:
        acc: dict[str, list[float]] = {"none": [], "size": [], "size and brightness": []}
        acc.update({f"both, + {b:g} x {k}": [] for b in PRIOR_BLENDS for k in ("prototype", "mean similarity")})
        acc["both, the prototype alone"] = []
        acc["both, the debiased prototype"] = []
        for d in _prior_runs(name, scenario):
            ev, qv, el, ql = _views(d["E"]), _views(d["Q"]), d["El"], d["Ql"]
            w = _weights(ev, el)
            classes, s = _classwise(ev, el, qv, w, 5)
            entries, stats = _class_entries(d, classes)
            sized = {c: {"log_area": e["log_area"]} for c, e in entries.items()}
            _brightness_spreads(entries, stats)
            for key, profile in (("size", {"classes": sized}), ("size and brightness", {"classes": entries})):
                pri = [p for q in d["Q_inst"] for p in (size_priors(q, profile) or [None] * len(q))]
                f = np.array([[1.0 if p is None else p[c] for c in classes] for p in pri])
                acc[key].append(_accuracy(classes[(s * f).argmax(1)], ql))
            # f: the size and brightness priors, the last profile above; s: the vote's scores
            proto = {kind: _prototype(ev, el, qv, w, unit=unit)[1]
                     for kind, unit in (("prototype", True), ("mean similarity", False), ("debiased", "debiased"))}
            for b in PRIOR_BLENDS:  # as ``_prototype``'s ``blend`` adds them
                for kind in ("prototype", "mean similarity"):
                    acc[f"both, + {b:g} x {kind}"].append(_accuracy(classes[((s + b * proto[kind]) * f).argmax(1)], ql))
            acc["both, the prototype alone"].append(_accuracy(classes[(np.clip(proto["prototype"], 0, None) * f).argmax(1)], ql))
            acc["both, the debiased prototype"].append(
                _accuracy(classes[(np.clip(proto["debiased"], 0, None) * f).argmax(1)], ql))
            acc["none"].append(_accuracy(classes[s.argmax(1)], ql))
        out[name] = {k: round(float(np.mean(v)), 3) for k, v in acc.items()}
        print(f"{name:18s} " + "  ".join(f"{k} {v:.3f}" for k, v in out[name].items()))
    return out


# -- spatial: the types of an object's neighbours in its image (issue 12) ------------------
#: ``spatial``'s grid: the combined decision's weights on the neighbours' types, how many
#: nearest other objects (``K``) or how far (in the examples' median equivalent diameters,
#: ``r``) count as neighbours, and how many rounds (each round's types the next one's);
#: ``K=1e+06``: every other object of the image, the control (the image's shares of the
#: first-pass types, no position)
SPATIAL_W = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5)
SPATIAL_NEAR = (("K", 4), ("K", 8), ("K", 16), ("r", 2.0), ("r", 3.0), ("r", 5.0), ("K", 10**6))
SPATIAL_ROUNDS = (1, 3)


def _load_set(name: str) -> tuple[list, dict, list[np.ndarray]]:
    """``(items, protocol, each image's objects' brightness)`` of ``name``."""
    import bench_classify as bc

    from sam_detect.profile import brightness

    items, protocol = DEV_SETS[name]() if name in DEV_SETS else bc._gt_set(name)
    return items, protocol, [brightness(rgb, g) for rgb, g in items]


def _spatial_runs(name: str, scenario: str, loaded: tuple | None = None) -> list[dict]:
    """``name``'s cached seeds with the objects' positions (``Exy``/``Qxy``/``Rxy``, images
    ``Eimg``/``Qimg``/``Rimg``; R: the example images' other objects), ``thin``-ned by
    ``scenario`` (an example left out joins R), and the vote's class scores under the size and
    brightness priors as ``detect`` types (``S_E`` leave-one-out among the examples, ``S_Q``,
    ``S_R``), each row summing to 1; the priors' factors themselves as ``P_E``, ``P_Q``, ``P_R``
    and the view weights as ``w``. ``loaded``: ``_load_set(name)``, when already read."""
    import bench_classify as bc

    items, protocol, grey = loaded or _load_set(name)
    runs = []
    for seed, f in enumerate(sorted(CACHE.glob(f"{name}_[0-9]*.npz"))):
        d = dict(np.load(f))
        if "Qxy" not in d:
            raise RuntimeError(f"{f.name} has no positions: delete it and run `cache` again")
        drawn = bc._draw([np.asarray(g.labels) for _, g in items], int(protocol["shots"]), seed, protocol["examples_from"])
        objs = {"E": [], "Q": [], "R": []}
        for k, ((_, g), idx) in enumerate(zip(items, drawn, strict=True)):
            objs["E"] += [(k, j) for j in idx]
            rest = np.setdiff1d(np.arange(len(g)), idx)
            part = "Q" if k in protocol["score_on"] else "R" if len(idx) else None
            if part and len(rest):
                objs[part] += [(k, j) for j in rest]
        if len(objs["Q"]) != len(d["Ql"]) or len(objs["R"]) != len(d.get("Rl", [])):
            raise RuntimeError(f"{f.name} was cached with another draw than this protocol gives")
        for part, o in objs.items():
            d[f"{part}_obj"] = np.array(o, np.int64).reshape(-1, 2)
        if "R" not in d:
            d.update(R=np.zeros((0, d["E"].shape[1]), d["E"].dtype), Rl=np.array([], str), Rimg=np.zeros(0, np.int64),
                     Rxy=np.zeros((0, 2)))
        d["E_grey"] = np.array([grey[k][j] for k, j in d["E_obj"]])
        d = thin(d, scenario, seed)
        ev, el = _views(d["E"]), d["El"]
        w = _weights(ev, el)
        classes = np.unique(el)
        pri = _prior_factors(items, grey, d, classes)
        _, sq = _classwise(ev, el, _views(d["Q"]), w, 5)
        _, sr = _classwise(ev, el, _views(d["R"]), w, 5) if len(d["R"]) else (None, np.zeros((0, len(classes))))
        loo = np.tensordot(w, np.stack([e @ e.T for e in ev]), axes=1)
        np.fill_diagonal(loo, -np.inf)  # each example left out of its own vote
        _, se = _nearest_means(loo, el, 5)
        d["w"] = w
        for part, sc in (("E", se), ("Q", sq), ("R", sr)):
            d[f"P_{part}"] = pri[part]
            x = sc * pri[part]
            d[f"S_{part}"] = x / np.maximum(x.sum(1, keepdims=True), 1e-12)
        d["classes"] = classes
        d["diameter"] = float(np.median(2.0 * np.sqrt(d["E_area"] / np.pi)))
        runs.append(d)
    return runs


def _class_entries(d, classes) -> tuple[dict, dict]:
    """``(entries, stats)``: each class's profile entry from the (thinned) examples' areas and
    grey levels (``log_area``, ``polarity``) and its examples' brightness, as
    ``profile._brightness_spreads`` takes them."""
    el = d["El"]
    entries, stats = {}, {}
    for c in classes:
        la = np.log(np.maximum(d["E_area"][el == c], 1.0))
        g = d["E_grey"][el == c]
        entries[c] = {"log_area": [float(la.mean()), float(la.std(ddof=1)) if len(la) > 1 else 0.0],
                      "polarity": "dark" if g.mean() < 0 else "bright"}
        stats[c] = [{"brightness": float(v)} for v in g]
    return entries, stats


def _prior_factors(items, grey, d, classes) -> dict[str, np.ndarray]:
    """Per part (``E``, ``Q``, ``R``) ``(N, C)``: ``profile.size_priors``' factors from the
    (thinned) examples' areas and brightness, as ``priors``' "size and brightness"."""
    from sam_detect.profile import _brightness_spreads, size_priors

    entries, stats = _class_entries(d, classes)
    _brightness_spreads(entries, stats)
    profile = {"classes": entries}
    out = {}
    for part in ("E", "Q", "R"):
        obj = d[f"{part}_obj"]
        f = np.ones((len(obj), len(classes)))
        for k in np.unique(obj[:, 0]) if len(obj) else []:
            rows = np.flatnonzero(obj[:, 0] == k)
            inst = items[k][1][obj[rows, 1]]
            inst.data["brightness"] = grey[k][obj[rows, 1]]
            pri = size_priors(inst, profile)
            for r, p in zip(rows, pri or [None] * len(rows), strict=True):
                if p is not None:
                    f[r] = [p[c] for c in classes]
        out[part] = f
    return out


def neighbour_shares(xy: np.ndarray, img: np.ndarray, types: np.ndarray, n_classes: int, near: tuple,
                     diameter: float, pool_xy: np.ndarray | None = None, pool_img: np.ndarray | None = None,
                     pool_types: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(q (N, C), has (N,))``: each object's share of its neighbours of each type among the
    other objects of its image (``xy``/``img``/``types``; with ``pool_*``, the neighbours are
    those instead, the object itself among them where its position is theirs): its ``K``
    nearest (``near=("K", K)``) or every one within ``r`` x ``diameter`` (``("r", r)``);
    ``has``: it has one."""
    pool_xy = xy if pool_xy is None else pool_xy
    pool_img = img if pool_img is None else pool_img
    pool_types = types if pool_types is None else pool_types
    q = np.zeros((len(xy), n_classes))
    has = np.zeros(len(xy), bool)
    for k in np.unique(img):
        rows, cols = np.flatnonzero(img == k), np.flatnonzero(pool_img == k)
        if not len(cols):
            continue
        dist = np.linalg.norm(xy[rows, None, :] - pool_xy[None, cols, :], axis=2)
        dist[dist < 1e-9] = np.inf  # itself
        kind, v = near
        if kind == "K":
            kk = min(int(v), len(cols))
            order = np.argsort(dist, axis=1)[:, :kk]
            ok = np.isfinite(np.take_along_axis(dist, order, 1))
        else:
            order = np.argsort(dist, axis=1)
            ok = np.take_along_axis(dist, order, 1) <= v * diameter
        t = pool_types[cols][order]
        for c in range(n_classes):
            q[rows, c] = ((t == c) & ok).sum(1)
        n = ok.sum(1)
        has[rows] = n > 0
        q[rows] /= np.maximum(n, 1)[:, None]
    return q, has


def combine(s: np.ndarray, xy, img, near, w: float, rounds: int, diameter: float) -> np.ndarray:
    """The types ``argmax (1 - w) s + w q``, ``q`` the neighbours' shares of the previous round's
    types (the first round's: the vote's), ``rounds`` times; an object with no neighbour keeps
    its vote's."""
    t = s.argmax(1)
    if w == 0:
        return t
    for _ in range(rounds):
        q, has = neighbour_shares(xy, img, t, s.shape[1], near, diameter)
        t = np.where(has, ((1 - w) * s + w * q).argmax(1), s.argmax(1))
    return t


def example_weight(d: dict, near: tuple, pool: str = "examples", margin: float = 0.0,
                   least: int = 8) -> tuple[float, dict]:
    """The weight the examples choose by leave-one-out: each example's vote with it left out
    (``S_E``) combined with its neighbours' types in its image, those of the other examples
    (``pool="examples"``, their own classes) or of every other object of its image (``"all"``:
    the examples' own classes, the other objects' the vote's), scored on the examples;
    the ``SPATIAL_W`` of best accuracy (ties: the smaller), 0 unless it beats 0 by more than
    ``margin``. An image with fewer than ``least`` examples takes no part (0 where none does)."""
    codes = np.searchsorted(d["classes"], d["El"])
    counts = {k: int((d["Eimg"] == k).sum()) for k in np.unique(d["Eimg"])}
    use = np.array([counts[k] >= least for k in d["Eimg"]])
    if not use.any():
        return 0.0, {}
    if pool == "examples":
        q, has = neighbour_shares(d["Exy"], d["Eimg"], codes, len(d["classes"]), near, d["diameter"])
    else:
        q, has = neighbour_shares(d["Exy"], d["Eimg"], codes, len(d["classes"]), near, d["diameter"],
                                  np.concatenate([d["Exy"], d["Rxy"]]), np.concatenate([d["Eimg"], d["Rimg"]]),
                                  np.concatenate([codes, d["S_R"].argmax(1)]))
    s = d["S_E"]
    acc = {}
    for w in SPATIAL_W:
        t = np.where(has, ((1 - w) * s + w * q).argmax(1), s.argmax(1))
        acc[w] = float((t[use] == codes[use]).mean())
    best = max(SPATIAL_W, key=lambda w: (acc[w], -w))
    return (best if acc[best] > acc[0.0] + margin else 0.0), acc


#: ``spatial``'s gates: (name, neighbours, pool, margin)
SPATIAL_GATES = (
    ("LOO among the examples, their 4 nearest examples", ("K", 4), "examples", 0.0),
    ("LOO among the examples, their 8 nearest objects", ("K", 8), "all", 0.0),
    ("LOO among the examples, their 8 nearest objects, margin 0.05", ("K", 8), "all", 0.05),
    ("LOO among the examples, 3 diameters, every object", ("r", 3.0), "all", 0.0),
)


def spatial(sets: list[str], scenarios: list[str]) -> dict:
    """Print and return, per set and scenario, the accuracy (mean ± sd over the seeds) of the
    vote alone and of the combined decision on the grid (``SPATIAL_*``), the best cell picked on
    the answer (the ceiling), and the gates' (``SPATIAL_GATES``: the weight from the examples)."""
    out: dict = {}
    for scenario in scenarios:
        for name in sets:
            runs = _spatial_runs(name, scenario)
            codes = [np.searchsorted(d["classes"], d["Ql"]) for d in runs]
            table = {}
            for near in SPATIAL_NEAR:
                for rounds in SPATIAL_ROUNDS:
                    row = []
                    for w in SPATIAL_W:
                        acc = [_accuracy(combine(d["S_Q"], d["Qxy"], d["Qimg"], near, w, rounds, d["diameter"]), c)
                               for d, c in zip(runs, codes, strict=True)]
                        row.append((round(float(np.mean(acc)), 3), round(float(np.std(acc)), 3)))
                    table[f"{near[0]}={near[1]:g}, {rounds} round{'s' if rounds > 1 else ''}"] = row
            for near in SPATIAL_NEAR[:3]:  # the lever with the neighbours' true types (not a rule: the answer)
                row = []
                for w in SPATIAL_W:
                    acc = []
                    for d, c in zip(runs, codes, strict=True):
                        q, has = neighbour_shares(d["Qxy"], d["Qimg"], c, len(d["classes"]), near, d["diameter"])
                        acc.append(_accuracy(np.where(has, ((1 - w) * d["S_Q"] + w * q).argmax(1),
                                                      d["S_Q"].argmax(1)), c))
                    row.append((round(float(np.mean(acc)), 3), round(float(np.std(acc)), 3)))
                table[f"{near[0]}={near[1]:g}, true types (oracle)"] = row
            base = table[next(iter(table))][0]
            best = max(((k, w, v) for k, row in table.items() if "oracle" not in k
                        for w, v in zip(SPATIAL_W, row, strict=True)),
                       key=lambda x: x[2][0])
            print(f"-- {name}, {scenario}: the vote alone {base[0]:.3f} ± {base[1]:.3f} ({len(runs)} seeds); "
                  f"ceiling {best[2][0]:.3f} ± {best[2][1]:.3f} ({best[0]}, w {best[1]:g})")
            near = next(n for n in SPATIAL_NEAR if best[0].startswith(f"{n[0]}={n[1]:g},"))
            rounds = int(best[0].rsplit(", ", 1)[1].split()[0])
            recall = {}
            for label, nr, w in (("the vote alone", near, 0.0), ("the ceiling's cell", (near, rounds), best[1]),
                                 ("K=8, 1 round, w 0.1", (("K", 8), 1), 0.1)):
                (nb, rr) = (near, rounds) if w == 0.0 else nr
                pred = [combine(d["S_Q"], d["Qxy"], d["Qimg"], nb, w, rr, d["diameter"]) for d in runs]
                recall[label] = {str(cl): f"{sum(int((p[c == i] == i).sum()) for p, c in zip(pred, codes, strict=True))}/"
                                 f"{sum(int((c == i).sum()) for c in codes)}"
                                 for i, cl in enumerate(runs[0]["classes"])}
                print(f"   per class, right/scored over the seeds, {label}: {recall[label]}")
            print(f"   {'':30s}" + "".join(f"w={w:<12g}" for w in SPATIAL_W))
            for k, row in table.items():
                print(f"   {k:30s}" + "".join(f"{m:.3f}±{sd:.3f}  " for m, sd in row))
            gates = {}
            for gname, near, pool, margin in SPATIAL_GATES:
                acc, ws = [], []
                for d, c in zip(runs, codes, strict=True):
                    w, _ = example_weight(d, near, pool, margin)
                    ws.append(w)
                    acc.append(_accuracy(combine(d["S_Q"], d["Qxy"], d["Qimg"], near, w, 1, d["diameter"]), c))
                gates[gname] = {"mean": round(float(np.mean(acc)), 3), "sd": round(float(np.std(acc)), 3),
                                "w": ws}
                print(f"   gate: {gname}: {np.mean(acc):.3f} ± {np.std(acc):.3f}, w per seed {ws}")
            out.setdefault(scenario, {})[name] = {"vote": base, "grid": table, "ceiling": best, "recall": recall,
                                                  "gates": gates}
    return out


# -- context: the objects around an object in its image, as one more view (issue 12) -------
#: ``neighbourhood``'s features of an object, from the other objects of its image (distances in
#: the examples' median equivalent diameters ``D``, areas over the examples' median area ``A``)
CONTEXT_FEATURES = ("log distance to the 4th nearest / D", "log distance to the 8th nearest / D",
                    "log the 8 nearest's median area / A", "log own area / the 8 nearest's median",
                    "the 8 nearest's mean log axis ratio", "share of the image's others within 3 D",
                    "log (1 + others within 3 D)")
#: the subsets of ``CONTEXT_FEATURES`` screened, and the similarities of two objects' features
#: (standardised on the example images' objects): the cosine of the standardised vectors
#: (``cos``, as each view is a unit vector) or ``exp(-|z_i - z_j|^2 / (2 F))`` (``rbf``)
CONTEXT_SUBSETS = {"all": (0, 1, 2, 3, 4, 5, 6), "density": (0, 1, 5, 6), "sizes": (2, 3),
                   "density and sizes": (0, 1, 2, 3, 5, 6)}
CONTEXT_KERNELS = ("cos", "rbf")
#: the view's weight relative to the other views' together: ``(sum_v w_v s_v + a s_nb) / (1 + a)``
CONTEXT_A = (0.0, 0.1, 0.25, 0.5, 1.0)


def _geometry(items) -> list[dict]:
    """Per image: its objects' centroids ``xy``, ``area`` and elongation (``elong``: log of the
    ratio of the mask's principal axes)."""
    out = []
    for _, g in items:
        el = np.zeros(len(g))
        for i in range(len(g)):
            m, _ = g.mask_crop(i)
            yy, xx = np.nonzero(m)
            if len(yy) > 2:
                ev = np.linalg.eigvalsh(np.cov(np.stack([yy, xx]).astype(float)))
                el[i] = 0.5 * np.log(max(ev[1], 1e-3) / max(ev[0], 1e-3))
        out.append({"xy": centroids(g), "area": np.asarray(g.areas, float), "elong": el})
    return out


def neighbourhood(geo: dict, diameter: float, area: float) -> np.ndarray:
    """``(n, len(CONTEXT_FEATURES))`` each object's neighbourhood among the other objects of its
    image (``geo``: ``_geometry``'s entry); ``nan`` where it has no other object."""
    xy, a, el = geo["xy"], geo["area"], geo["elong"]
    n = len(xy)
    f = np.full((n, len(CONTEXT_FEATURES)), np.nan)
    if n < 2:
        return f
    dist = np.linalg.norm(xy[:, None] - xy[None], axis=2)
    np.fill_diagonal(dist, np.inf)
    order = np.argsort(dist, axis=1)[:, : n - 1]
    sd = np.take_along_axis(dist, order, 1)
    nb = order[:, :8]
    med = np.median(a[nb], axis=1)
    within = (sd <= 3.0 * diameter).sum(1)
    f[:, 0] = np.log(np.maximum(sd[:, min(4, n - 1) - 1], 1e-3) / diameter)
    f[:, 1] = np.log(np.maximum(sd[:, min(8, n - 1) - 1], 1e-3) / diameter)
    f[:, 2] = np.log(np.maximum(med, 1.0) / area)
    f[:, 3] = np.log(np.maximum(a, 1.0) / np.maximum(med, 1.0))
    f[:, 4] = el[nb].mean(1)
    f[:, 5] = within / (n - 1)
    f[:, 6] = np.log1p(within)
    return f


def context_vectors(d: dict, geo: list[dict]) -> dict[str, np.ndarray]:
    """``{"E", "Q"}``: the examples' and the scored objects' ``neighbourhood`` features,
    standardised by the mean and sd of the example images' objects (examples and R)."""
    area = float(np.median(d["E_area"]))
    feats = {k: neighbourhood(g, d["diameter"], area) for k, g in enumerate(geo)
             if k in {int(x) for p in ("E", "Q", "R") for x in d[f"{p}_obj"][:, 0]}}
    part = {p: np.array([feats[k][j] for k, j in d[f"{p}_obj"]]).reshape(-1, len(CONTEXT_FEATURES))
            for p in ("E", "Q", "R")}
    pool = np.concatenate([part["E"], part["R"]])
    mu, sd = np.nanmean(pool, 0), np.nanstd(pool, 0)
    return {p: np.nan_to_num((part[p] - mu) / np.maximum(sd, 1e-6)) for p in ("E", "Q")}


def context_similarity(a: np.ndarray, b: np.ndarray, kernel: str) -> np.ndarray:
    """``(len(a), len(b))`` the neighbourhood view's similarity (``CONTEXT_KERNELS``)."""
    if kernel == "cos":
        return _unit(a) @ _unit(b).T
    d2 = (a**2).sum(1)[:, None] + (b**2).sum(1)[None] - 2 * a @ b.T
    return np.exp(-np.maximum(d2, 0) / (2 * a.shape[1]))


def _context_vote(s: np.ndarray, el: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """The class (index) the vote under the priors gives: each class's 5 nearest × ``prior``."""
    return (_nearest_means(s, el, 5)[1] * prior).argmax(1)


def context_runs(name: str, scenario: str, loaded: tuple | None = None, geo: list | None = None) -> list[dict]:
    """``_spatial_runs`` with each view's similarities among the examples (``PE``) and from the
    scored objects (``PQ``), and the neighbourhood view's (``NE``/``NQ``, per subset and kernel)."""
    loaded = loaded or _load_set(name)
    geo = geo or _geometry(loaded[0])
    runs = _spatial_runs(name, scenario, loaded)
    for d in runs:
        ev, qv = _views(d["E"]), _views(d["Q"])
        d["PE"] = np.stack([e @ e.T for e in ev])
        d["PQ"] = np.stack([q @ e.T for q, e in zip(qv, ev, strict=True)])
        z = context_vectors(d, geo)
        d["NE"], d["NQ"] = {}, {}
        for sub, cols in CONTEXT_SUBSETS.items():
            for kernel in CONTEXT_KERNELS:
                d["NE"][sub, kernel] = context_similarity(z["E"][:, cols], z["E"][:, cols], kernel)
                d["NQ"][sub, kernel] = context_similarity(z["Q"][:, cols], z["E"][:, cols], kernel)
    return runs


def context_pred(d: dict, key: tuple, a: float) -> np.ndarray:
    """The scored objects' classes (indices) with the neighbourhood view ``key`` at weight ``a``
    relative to the other views (their weights ``d["w"]``, as the library chose them)."""
    s = (np.tensordot(d["w"], d["PQ"], axes=1) + a * d["NQ"][key]) / (1 + a)
    return _context_vote(s, d["El"], d["P_Q"])


def context_gate_grid(d: dict, key: tuple) -> tuple[float, dict]:
    """The ``CONTEXT_A`` of best leave-one-out accuracy among the examples (the vote under the
    priors, each example out of its own vote; ties: the smaller)."""
    codes = np.searchsorted(d["classes"], d["El"])
    acc = {}
    for a in CONTEXT_A:
        s = (np.tensordot(d["w"], d["PE"], axes=1) + a * d["NE"][key]) / (1 + a)
        np.fill_diagonal(s, -np.inf)
        acc[a] = float((_context_vote(s, d["El"], d["P_E"]) == codes).mean())
    return max(CONTEXT_A, key=lambda a: (acc[a], -a)), acc


def context_gate_views(d: dict, key: tuple) -> tuple[np.ndarray, np.ndarray]:
    """``(predicted classes, weights)`` with the neighbourhood view as a seventh view, the seven
    weights chosen by ``calibrate.choose_weights`` (the library's own leave-one-out rule)."""
    from sam_detect.calibrate import choose_weights
    from sam_detect.embed.views import VIEWS

    names = [n for n, _ in VIEWS] + ["neighbourhood"]
    w, _ = choose_weights(np.concatenate([d["PE"], d["NE"][key][None]]), d["El"], names)
    w = np.array([w[n] for n in names])
    s = np.tensordot(w[:-1], d["PQ"], axes=1) + w[-1] * d["NQ"][key]
    return _context_vote(s, d["El"], d["P_Q"]), w


def context(sets: list[str], scenarios: list[str]) -> dict:
    """Print and return, per set and scenario, the accuracy and the balanced accuracy (mean ±
    sd over the seeds) of the vote under the priors alone, with the neighbourhood view at each
    ``CONTEXT_A`` (per subset and kernel; the best picked on the answer is the ceiling), and
    with the weight its gates choose from the examples (the grid's leave-one-out, and
    ``choose_weights`` over seven views), with the weights chosen per seed."""
    out: dict = {}
    cache_: dict = {}
    for name in sets:
        loaded = _load_set(name)
        cache_[name] = (loaded, _geometry(loaded[0]))
    keys = [(s, k) for s in CONTEXT_SUBSETS for k in CONTEXT_KERNELS]

    def summary(preds, runs):
        codes = [np.searchsorted(d["classes"], d["Ql"]) for d in runs]
        plain = [_accuracy(p, c, balanced=False) for p, c in zip(preds, codes, strict=True)]
        bal = [_accuracy(p, c, balanced=True) for p, c in zip(preds, codes, strict=True)]
        return {"plain": (round(float(np.mean(plain)), 3), round(float(np.std(plain)), 3)),
                "balanced": (round(float(np.mean(bal)), 3), round(float(np.std(bal)), 3)),
                "plain per seed": [round(x, 3) for x in plain], "balanced per seed": [round(x, 3) for x in bal]}

    def fmt(r):
        return f"{r['plain'][0]:.3f}±{r['plain'][1]:.3f} / {r['balanced'][0]:.3f}±{r['balanced'][1]:.3f}"

    for scenario in scenarios:
        for name in sets:
            runs = context_runs(name, scenario, *cache_[name])
            res: dict = {"grid": {}, "gates": {}}
            base = summary([context_pred(d, keys[0], 0.0) for d in runs], runs)
            res["vote"] = base
            print(f"-- {name}, {scenario} ({len(runs)} seeds), plain / balanced: the vote alone {fmt(base)}")
            for key in keys:
                row = {a: summary([context_pred(d, key, a) for d in runs], runs) for a in CONTEXT_A[1:]}
                res["grid"][f"{key[0]}, {key[1]}"] = row
                print(f"   {key[0] + ', ' + key[1]:24s}" + "  ".join(f"a={a:g} {fmt(r)}" for a, r in row.items()))
                grid_w = [context_gate_grid(d, key)[0] for d in runs]
                g1 = summary([context_pred(d, key, a) for d, a in zip(runs, grid_w, strict=True)], runs)
                views = [context_gate_views(d, key) for d in runs]
                g2 = summary([p for p, _ in views], runs)
                w7 = [round(float(w[-1]), 3) for _, w in views]
                res["gates"][f"{key[0]}, {key[1]}"] = {"grid LOO": {**g1, "a": grid_w},
                                                       "seven views LOO": {**g2, "w": w7}}
                print(f"   {'':24s}gate grid LOO {fmt(g1)} a {grid_w};  gate 7 views LOO {fmt(g2)} w_nb {w7}")
            for metric in ("plain", "balanced"):
                best = max(((k, a, r[metric]) for k, row in res["grid"].items() for a, r in row.items()),
                           key=lambda x: x[2][0])
                res[f"ceiling {metric}"] = best
                print(f"   ceiling ({metric}, picked on the answer): {best[2][0]:.3f} ± {best[2][1]:.3f} "
                      f"({best[0]}, a {best[1]:g}); the vote alone {base[metric][0]:.3f}")
            out.setdefault(scenario, {})[name] = res
    return out


def _accuracy(pred: np.ndarray, truth: np.ndarray, balanced: bool | None = None) -> float:
    """The share typed right, or the mean of the classes' own shares (``balanced``, by default
    ``BALANCED``)."""
    if BALANCED if balanced is None else balanced:
        return float(np.mean([(pred[truth == c] == c).mean() for c in np.unique(truth)]))
    return float((pred == truth).mean())


def embed_all(name: str) -> Path:
    """Every object of every image of ``name``, embedded as ``detect`` would with the first
    seed's library (its working scale): ``V``, ``L`` (class), ``T`` (image), cached."""
    import bench_classify as bc

    from sam_detect import DetectorConfig, SAMDetect

    out = CACHE / f"{name}_all.npz"
    if out.exists():
        return out
    items, protocol = DEV_SETS[name]() if name in DEV_SETS else bc._gt_set(name)
    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="views", profile=False))
    drawn = bc._draw([np.asarray(g.labels) for _, g in items], int(protocol["shots"]), 0, protocol["examples_from"])
    for (rgb, g), idx in zip(items, drawn, strict=True):
        if len(idx):
            det.add_examples(rgb, g[idx], [str(x) for x in g.labels[idx]])
    typical = (det.decision or {}).get("typical_area")
    v, lab, img = [], [], []
    for k, (rgb, g) in enumerate(items):
        if len(g):
            v.append(det._embed(rgb, g, {}, typical_area=typical))
            lab += [str(x) for x in g.labels]
            img += [k] * len(g)
    det.close()
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(out, V=np.concatenate(v), L=np.array(lab), T=np.array(img), source=np.array(protocol["examples_from"]))
    return out


def ceiling(name: str, per_class=(4, 8, 16, 32, 64), draws: int = 5) -> dict:
    """How far ``name``'s descriptions tell its classes apart (see the module's docstring)."""
    d = np.load(embed_all(name))
    v, lab, img, source = d["V"], d["L"], d["T"], d["source"]
    views = _views(v)
    classes = np.unique(lab)
    right = 0
    for t in np.unique(img):  # every object of the other images
        fit, test = img != t, img == t
        c, p = _linear([x[fit] for x in views], lab[fit], [x[test] for x in views])
        right += int((c[p.argmax(1)] == lab[test]).sum())
    out = {"other images, every object": round(right / len(lab), 3)}
    print(f"{name}: linear model on every object of the other images: {out['other images, every object']:.3f}")
    rng = np.random.default_rng(0)
    src, test = np.isin(img, source), ~np.isin(img, source)
    for n in per_class:
        lin, vote = [], []
        for _ in range(draws):
            pick = np.concatenate([rng.choice(np.flatnonzero(src & (lab == c)), size=min(n, int((src & (lab == c)).sum())),
                                              replace=False) for c in classes])
            c, p = _linear([x[pick] for x in views], lab[pick], [x[test] for x in views])
            lin.append(float((c[p.argmax(1)] == lab[test]).mean()))
            vote.append(score({"E": v[pick], "El": lab[pick], "Q": v[test], "Ql": lab[test], "Qimg": img[test]},
                              rule="classwise", k=5))
        out[f"{n} per class"] = {"linear": round(float(np.mean(lin)), 3), "vote": round(float(np.mean(vote)), 3)}
        print(f"  {n} per class from the example images {list(source)}: linear {np.mean(lin):.3f}, "
              f"the vote's rule {np.mean(vote):.3f} ({draws} draws)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["cache", "rules", "ceiling", "priors", "spatial", "context"])
    ap.add_argument("--sets", default="voc,hgsc,dev_micronuclei")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", default=None, help="write the rules' table as JSON here")
    ap.add_argument("--scenarios", default="as drawn",
                    help=f"comma-separated, from: {', '.join(SCENARIOS)} (how the examples are thinned)")
    ap.add_argument("--rules", default=None, help="rule names separated by ';' (default: every rule)")
    ap.add_argument("--balanced", action="store_true",
                    help="score by the mean of the classes' own accuracies (each class weighs alike)")
    args = ap.parse_args()
    global BALANCED
    BALANCED = args.balanced
    sets = args.sets.split(",")
    if args.step == "cache":
        for s in sets:
            cache(s, list(range(args.seeds)))
    elif args.step in ("spatial", "context"):
        table = (spatial if args.step == "spatial" else context)(sets, args.scenarios.split(","))
        if args.out:
            Path(args.out).write_text(json.dumps(table, indent=1, default=str))
    elif args.step in ("ceiling", "priors"):
        if args.step == "ceiling":
            table = {s: ceiling(s) for s in sets}
        else:
            table = {}
            for scenario in args.scenarios.split(","):
                print(f"-- {scenario}")
                table[scenario] = priors(sets, scenario)
        if args.out:
            Path(args.out).write_text(json.dumps(table, indent=1))
    else:
        table = {}
        for scenario in args.scenarios.split(","):
            print(f"-- {scenario}")
            table[scenario] = rules(sets, scenario, args.rules.split(";") if args.rules else None)
        if args.out:
            Path(args.out).write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
