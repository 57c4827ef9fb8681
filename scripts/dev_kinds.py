#!/usr/bin/env python
"""Eighteen kinds of labelled images a user may bring, three modes each (development only;
a helper's kinds hunt, session 89).

Every kind builds two images with exact labels, deterministically (image k of a kind from
seed 100 + k). Protocols (10 whole-mask examples, F1 at IoU 0.5, one-to-one matching):

- ``same``: examples drawn at random from image 0, image 0 scored (examples not scored):
  the held-out format;
- ``cross``: examples drawn at random from image 0, image 1 scored.

Modes (``sam_detect.eval.protocol.examples_worth``): ``full`` (profile + vote + selection),
``noprof`` (``DetectorConfig(profile=False)``: the segmenter's own settings, k-NN vote) and
``alone`` (every candidate of the no-profile run accepted). Config: segmenter=classical,
embedder=views, store=memory.

``--pick corner`` draws the examples among the objects whose centre lies in the top-left
quarter (a user who labels one corner); done by giving evaluate only those objects as typed
(the rest UNTYPED) on a copy of the image, and the drawn ones UNTYPED (not scored) on the
scored copy.

``--unlabelled N`` instead counts, over draws 0..N-1 of the ``same`` protocol, the draws
where the unlabelled-candidate filter (``sam_detect.unlabelled``) drops objects: on images
of one kind of object it has nothing to learn, and each such draw is a chance switch-on.

    python scripts/dev_kinds.py                    # every kind, both protocols, seeds 0-2 (~6 min)
    python scripts/dev_kinds.py --kinds rods --seeds 0 --protocols same --errors
    python scripts/dev_kinds.py --kinds vignette --pick corner
    python scripts/dev_kinds.py --kinds tiny,large,rgb_blue --unlabelled 30
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage import draw

S = 512


# ---------------------------------------------------------------- shapes
def _ellipses(shape, n, rmin, rmax, rng, gap=3, ecc=(1.0, 1.5)):
    lab = np.zeros(shape, np.int32)
    k = 0
    for _ in range(20000):
        if k >= n:
            break
        r, e = rng.uniform(rmin, rmax), rng.uniform(*ecc)
        a, b = r * np.sqrt(e), r / np.sqrt(e)
        if 2 * a + 8 > min(shape):
            continue
        cy, cx = rng.uniform(a + 3, shape[0] - a - 3), rng.uniform(a + 3, shape[1] - a - 3)
        rr, cc = draw.ellipse(cy, cx, a, b, shape=shape, rotation=rng.uniform(0, np.pi))
        y0, x0 = max(rr.min() - gap - 1, 0), max(cc.min() - gap - 1, 0)
        y1, x1 = rr.max() + gap + 2, cc.max() + gap + 2
        grown = np.zeros((y1 - y0, x1 - x0), bool)
        grown[rr - y0, cc - x0] = True
        if lab[y0:y1, x0:x1][ndi.binary_dilation(grown, iterations=gap)[: shape[0] - y0, : shape[1] - x0]].any():
            continue
        k += 1
        lab[rr, cc] = k
    return lab


def _finish(signal, rng, ground, noise, blur=1.2, offset=0.0):
    img = rng.poisson(np.clip(ndi.gaussian_filter(signal, blur) + ground, 0, None)).astype(float)
    img += rng.normal(0, noise, img.shape) + offset
    return np.clip(img, 0, 65535).astype(np.uint16)


def _fill(lab, amp):
    signal = np.zeros(lab.shape)
    signal[lab > 0] = np.asarray(amp)[lab[lab > 0] - 1]
    return signal


def _texture(shape, rng, sigma=1.5, sd=0.35):
    t = ndi.gaussian_filter(rng.normal(0, 1, shape), sigma)
    return 1 + sd * t / t.std()


# ---------------------------------------------------------------- kinds
def vignette(seed):
    """Radial fall-off of the illumination to ~25 % at the corners (off-centre), times the
    ground and the nuclei, plus scattered light rising 0 -> 200 left to right: the ground at
    the right is brighter than dim nuclei at the left corners."""
    rng = np.random.default_rng(seed)
    lab = _ellipses((S, S), 90, 8, 12, rng)
    signal = _fill(lab, rng.uniform(150, 300, lab.max()))
    yy, xx = np.mgrid[:S, :S]
    rho2 = ((yy - 230) ** 2 + (xx - 270) ** 2) / (2 * 290.0 ** 2)
    illum = np.clip(1 - 1.5 * rho2, 0.2, 1)
    base = ndi.gaussian_filter(signal, 1.2) + 100
    img = rng.poisson(base * illum + 200 * xx / S).astype(float) + rng.normal(0, 6, (S, S))
    return np.clip(img, 0, 65535).astype(np.uint16), lab


def defocus(seed, far=4.5):
    """The left third in focus (blur 1.2 px), the right side out of focus (blur rising to
    4.5 px; ``defocus_strong``: 8 px): the labels are the true outlines."""
    rng = np.random.default_rng(seed)
    lab = _ellipses((S, S), 100, 8, 12, rng, gap=2)
    signal = _fill(lab, rng.uniform(150, 300, lab.max()))
    w = np.clip((np.arange(S) - 170) / 170, 0, 1)[None, :]
    sig = (1 - w) * ndi.gaussian_filter(signal, 1.2) + w * ndi.gaussian_filter(signal, far)
    img = rng.poisson(sig + 100).astype(float) + rng.normal(0, 6, (S, S))
    return np.clip(img, 0, 65535).astype(np.uint16), lab


def nucleoli(seed, r=(10, 14), n=70, holes=(2.0, 3.5)):
    """Textured nuclei (r 10-14; ``large_nucleoli``: r 30-45, nucleoli r 4-8) with 1-4 dark nucleoli (a fifth of the nucleus's signal) and
    0-6 bright chromocentres (twice it)."""
    rng = np.random.default_rng(seed)
    lab = _ellipses((S, S), n, r[0], r[1], rng, gap=4)
    signal = _fill(lab, rng.uniform(150, 250, lab.max())) * _texture((S, S), rng)
    for i, sl in enumerate(ndi.find_objects(lab), 1):
        m = lab[sl] == i
        inner = np.argwhere(ndi.binary_erosion(m, iterations=4))
        if not len(inner):
            continue
        for n, (rmin, rmax, f) in ((rng.integers(1, 5), (*holes, 0.2)), (rng.integers(0, 7), (1.2, 2.0, 2.0))):
            for _ in range(n):
                cy, cx = inner[rng.integers(len(inner))] + [sl[0].start, sl[1].start]
                rr, cc = draw.disk((cy, cx), rng.uniform(rmin, rmax), shape=lab.shape)
                keep = lab[rr, cc] == i
                signal[rr[keep], cc[keep]] *= f
    return _finish(signal, rng, 100, 6, blur=1.0), lab


def clusters(seed, spacing=(13, 17), dip=0.0):
    """Eight clusters of 5-9 overlapping nuclei (centres 13-17 px apart, r 9-11; overlaps
    split by nearest centre) and 30 isolated nuclei. ``clusters_touch``: centres 18-21 px
    apart (touching, a neck between them) and the 1-px seam between two nuclei at 0.6 x."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:S, :S]
    best = np.full((S, S), np.inf)
    arg = np.zeros((S, S), np.int32)
    centres = []

    def add(cy, cx):
        r, e, t = rng.uniform(9, 11), rng.uniform(1.0, 1.3), rng.uniform(0, np.pi)
        a, b = r * np.sqrt(e), r / np.sqrt(e)
        dy, dx = yy - cy, xx - cx
        u, v = dy * np.cos(t) + dx * np.sin(t), -dy * np.sin(t) + dx * np.cos(t)
        d = (u / a) ** 2 + (v / b) ** 2
        centres.append((cy, cx))
        k = len(centres)
        closer = d < best
        best[closer] = d[closer]
        arg[closer] = k

    hubs = []
    while len(hubs) < 8:
        c = rng.uniform(60, S - 60, 2)
        if all(np.hypot(*(c - h)) > 110 for h in hubs):
            hubs.append(c)
    for h in hubs:
        pts = [h]
        for _ in range(500):
            if len(pts) >= rng.integers(5, 10):
                break
            base = pts[rng.integers(len(pts))]
            ang, dist = rng.uniform(0, 2 * np.pi), rng.uniform(*spacing)
            p = base + dist * np.array([np.sin(ang), np.cos(ang)])
            if all(np.hypot(*(p - q)) >= spacing[0] for q in pts) and p.min() > 20 and p.max() < S - 20:
                pts.append(p)
        for p in pts:
            add(*p)
    n_iso = 0
    for _ in range(5000):
        if n_iso >= 30:
            break
        p = rng.uniform(20, S - 20, 2)
        if all(np.hypot(*(p - np.array(q))) > 36 for q in centres):
            add(*p)
            n_iso += 1
    lab = np.where(best <= 1, arg, 0).astype(np.int32)
    # drop slivers (an overlap can leave little of a nucleus) and relabel 1..n
    ids, area = np.unique(lab, return_counts=True)
    lab[np.isin(lab, ids[(area < 120) & (ids > 0)])] = 0
    from skimage.segmentation import relabel_sequential

    lab = relabel_sequential(lab)[0].astype(np.int32)
    signal = _fill(lab, rng.uniform(150, 250, lab.max()))
    if dip:
        seam = (ndi.grey_dilation(lab, 3) != lab) & (lab > 0)
        signal[seam] *= dip
    return _finish(signal, rng, 100, 6, blur=1.5), lab


def clusters_touch(seed):
    return clusters(seed, spacing=(18, 21), dip=0.6)


def cyto_bg(seed):
    """One nuclear channel with the cell bodies dimly stained too (as Hoechst with
    cytoplasmic background): nuclei (r 8-11, 150-250 over the ground) each in a cell body
    (an ellipse ~2.2 x, 40-70 over the ground), cell bodies touching."""
    rng = np.random.default_rng(seed)
    lab = _ellipses((S, S), 70, 8, 11, rng, gap=10)
    body = np.zeros((S, S))
    for _i, sl in enumerate(ndi.find_objects(lab), 1):
        cy, cx = (sl[0].start + sl[0].stop) / 2, (sl[1].start + sl[1].stop) / 2
        oy, ox = rng.normal(0, 3, 2)
        rr, cc = draw.ellipse(cy + oy, cx + ox, rng.uniform(20, 26), rng.uniform(15, 20), shape=(S, S),
                              rotation=rng.uniform(0, np.pi))
        body[rr, cc] = np.maximum(body[rr, cc], rng.uniform(40, 70))
    signal = np.where(lab > 0, _fill(lab, rng.uniform(150, 250, lab.max())), body * _texture((S, S), rng, 2, 0.3))
    return _finish(signal, rng, 100, 6), lab


def mitotic(seed):
    """Interphase nuclei (r 9-12, 120-200) and one in six condensed, mitotic-like ones (r 4-6,
    3x as bright), one class."""
    rng = np.random.default_rng(seed)
    lab = _ellipses((S, S), 75, 9, 12, rng, gap=4)
    small = _ellipses((S, S), 15, 4, 6, rng, gap=4, ecc=(1.2, 2.0))
    small[lab > 0] = 0
    grown = ndi.binary_dilation(lab > 0, iterations=4)
    for i in range(1, small.max() + 1):  # keep the small ones clear of the others
        if (grown & (small == i)).any():
            small[small == i] = 0
    n = lab.max()
    lab = np.where(small > 0, small + n, lab)
    from skimage.segmentation import relabel_sequential

    lab = relabel_sequential(lab)[0].astype(np.int32)
    area = np.bincount(lab.ravel())[1:]
    amp = np.where(area > 150, rng.uniform(120, 200, len(area)), rng.uniform(400, 600, len(area)))
    return _finish(_fill(lab, amp), rng, 100, 6), lab


def bimodal(seed):
    """Two populations, one class: small nuclei (r 5-7, lymphocyte-like) and large ones
    (r 14-18), about half each, brightness 150-250."""
    rng = np.random.default_rng(seed)
    lab = _ellipses((S, S), 40, 14, 18, rng, gap=4)
    small = _ellipses((S, S), 200, 5, 7, rng, gap=3)
    grown = ndi.binary_dilation(lab > 0, iterations=3)
    keep = [i for i in range(1, small.max() + 1) if not (grown & (small == i)).any()][:45]
    n = lab.max()
    for k, i in enumerate(keep, 1):
        lab[small == i] = n + k
    return _finish(_fill(lab, rng.uniform(150, 250, lab.max())), rng, 100, 6), lab


def debris(seed):
    """Nuclei (r 8-12, 150-250) among 150 bright specks (r 1.5-3.5, 150-500): the specks are
    not objects."""
    rng = np.random.default_rng(seed)
    lab = _ellipses((S, S), 80, 8, 12, rng, gap=4)
    signal = _fill(lab, rng.uniform(150, 250, lab.max()))
    free = ~ndi.binary_dilation(lab > 0, iterations=4)
    k = 0
    while k < 150:
        cy, cx = rng.uniform(4, S - 4, 2)
        if not free[int(cy), int(cx)]:
            continue
        rr, cc = draw.disk((cy, cx), rng.uniform(1.5, 3.5), shape=(S, S))
        signal[rr, cc] = rng.uniform(150, 500)
        k += 1
    return _finish(signal, rng, 100, 6), lab


def large(seed):
    """Large nuclei, r 30-50 px (~25 in 512 x 512), mildly textured."""
    rng = np.random.default_rng(seed)
    lab = _ellipses((S, S), 40, 30, 50, rng, gap=4, ecc=(1.0, 1.3))
    signal = _fill(lab, rng.uniform(150, 250, lab.max())) * _texture((S, S), rng, 3, 0.2)
    return _finish(signal, rng, 100, 6), lab


def rods(seed):
    """Rod-shaped (bacterium-like) capsules, 19-44 px long, 6-8.4 px wide, at random
    orientation, well apart."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:S, :S]
    lab = np.zeros((S, S), np.int32)
    k = 0
    for _ in range(20000):
        if k >= 120:
            break
        L, r, t = rng.uniform(6, 18), rng.uniform(3.0, 4.2), rng.uniform(0, np.pi)
        cy, cx = rng.uniform(L + r + 4, S - L - r - 4, 2)
        y0, x0 = max(int(cy - L - r - 2), 0), max(int(cx - L - r - 2), 0)
        y1, x1 = int(cy + L + r + 3), int(cx + L + r + 3)
        py, px = yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx
        s = np.clip(py * np.sin(t) + px * np.cos(t), -L, L)
        d = np.hypot(py - s * np.sin(t), px - s * np.cos(t))
        m = d <= r
        big = np.zeros((S, S), bool)
        big[y0:y1, x0:x1] = m
        if lab[ndi.binary_dilation(big, iterations=3)].any():
            continue
        k += 1
        lab[big] = k
    signal = _fill(lab, rng.uniform(150, 250, lab.max()))
    return _finish(signal, rng, 100, 6, blur=1.0), lab


def brightfield(seed):
    """Dark nuclei (r 8-12, 60-100 under a ground of 200) with a bright halo (+40, 1-4 px out),
    8-bit: phase-contrast or brightfield-like."""
    rng = np.random.default_rng(seed)
    lab = _ellipses((S, S), 90, 8, 12, rng, gap=6)
    img = np.full((S, S), 200.0) - _fill(lab, rng.uniform(60, 100, lab.max()))
    halo = ndi.binary_dilation(lab > 0, iterations=4) & ~(lab > 0)
    img[halo] += 40
    img = ndi.gaussian_filter(img, 1.2) + rng.normal(0, 5, (S, S))
    return np.clip(img, 0, 255).astype(np.uint8), lab


def hot16(seed):
    """16-bit, camera offset 29,500, nuclei 300-700 counts over a ground of 500, with 0.3 % hot
    pixels (65,535) and 0.3 % cold ones (offset - 200)."""
    rng = np.random.default_rng(seed)
    lab = _ellipses((S, S), 90, 8, 12, rng)
    img = _finish(_fill(lab, rng.uniform(300, 700, lab.max())), rng, 500, 15, offset=29500).astype(np.int64)
    flat = img.reshape(-1)
    idx = rng.permutation(flat.size)[: int(0.006 * flat.size)]
    flat[idx[: len(idx) // 2]] = 65535
    flat[idx[len(idx) // 2:]] = 29300
    return img.astype(np.uint16), lab


def rgb_blue(seed):
    """RGB merge: nuclei (r 8-11) in blue only; each cell's cytoplasm (an ellipse ~2.3 x the
    nucleus, irregular, under it too) in green, brighter than the nuclei; red dots in it."""
    rng = np.random.default_rng(seed)
    lab = _ellipses((S, S), 60, 8, 11, rng, gap=14)
    blue = _fill(lab, rng.uniform(120, 200, lab.max()))
    green = np.zeros((S, S))
    red = np.zeros((S, S))
    for _i, sl in enumerate(ndi.find_objects(lab), 1):
        cy, cx = (sl[0].start + sl[0].stop) / 2, (sl[1].start + sl[1].stop) / 2
        a, b = rng.uniform(20, 26), rng.uniform(15, 20)
        oy, ox = rng.normal(0, 3, 2)
        rr, cc = draw.ellipse(cy + oy, cx + ox, a, b, shape=(S, S), rotation=rng.uniform(0, np.pi))
        green[rr, cc] = np.maximum(green[rr, cc], rng.uniform(140, 230))
        for _ in range(rng.integers(3, 8)):
            j = rng.integers(len(rr))
            rd, cd = draw.disk((rr[j], cc[j]), 1.5, shape=(S, S))
            red[rd, cd] = rng.uniform(100, 200)
    green *= _texture((S, S), rng, 3, 0.25)
    out = np.stack([ndi.gaussian_filter(c, 1.2) + 10 + rng.normal(0, 4, (S, S)) for c in (red, green, blue)], -1)
    return np.clip(out, 0, 255).astype(np.uint8), lab


def defocus_strong(seed):
    return defocus(seed, far=8.0)


def large_nucleoli(seed):
    return nucleoli(seed, r=(30, 45), n=30, holes=(4.0, 8.0))


def rod_chains(seed):
    """Rods (r 3.5, 20-30 px long) in chains of 2-4 touching end to end (a 1-px seam at
    0.5 x between neighbours), chains at random orientation, well apart."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:S, :S]
    lab = np.zeros((S, S), np.int32)
    k = 0
    for _ in range(5000):
        if k >= 110:
            break
        t, r = rng.uniform(0, np.pi), rng.uniform(3.2, 3.8)
        halves = rng.uniform(6, 11, rng.integers(2, 5))
        total = float(np.sum(2 * halves + 2 * r))
        cy, cx = rng.uniform(total / 2 + 6, S - total / 2 - 6, 2)
        pos = -total / 2
        parts = []
        for L in halves:
            c = pos + r + L
            py, px = yy - (cy + c * np.sin(t)), xx - (cx + c * np.cos(t))
            s = np.clip(py * np.sin(t) + px * np.cos(t), -L, L)
            parts.append(np.hypot(py - s * np.sin(t), px - s * np.cos(t)) <= r)
            pos += 2 * L + 2 * r
        whole = np.any(parts, axis=0)
        if lab[ndi.binary_dilation(whole, iterations=4)].any():
            continue
        for m in parts:
            k += 1
            lab[m & (lab == 0)] = k
    signal = _fill(lab, rng.uniform(150, 250, lab.max()))
    seam = (ndi.grey_dilation(lab, 3) != lab) & (lab > 0) & (ndi.grey_erosion(np.where(lab > 0, lab, 10**6), 3) != lab)
    signal[seam] *= 0.5
    return _finish(signal, rng, 100, 6, blur=1.0), lab


def tiny(seed):
    """128 x 128 with ~18 small nuclei (r 6-9): 10 examples leave ~8 to score on the same image."""
    rng = np.random.default_rng(seed)
    lab = _ellipses((128, 128), 18, 6, 9, rng, gap=2)
    return _finish(_fill(lab, rng.uniform(100, 250, lab.max())), rng, 100, 6), lab


KINDS = {f.__name__: f for f in (vignette, defocus, nucleoli, clusters, large, rods, brightfield, hot16,
                                  rgb_blue, tiny, clusters_touch, cyto_bg, mitotic, bimodal, debris,
                                  defocus_strong, large_nucleoli, rod_chains)}


# ---------------------------------------------------------------- running
def _typed(lab, typed_ids):
    """``Instances`` of ``lab`` with the objects ``typed_ids`` (places) 'nucleus', the rest UNTYPED."""
    from sam_detect.formats.label_image import UNTYPED
    from sam_detect.instances import Instances

    inst, _ = Instances.from_label_image(lab)
    labels = np.full(len(inst), UNTYPED, dtype=object)
    labels[list(typed_ids)] = "nucleus"
    inst.labels = labels
    return inst


def run(kind, seed, protocol, pick="random", shots=10):
    from sam_detect import DetectorConfig
    from sam_detect.eval.protocol import examples_worth

    img0, lab0 = KINDS[kind](100)
    img1, lab1 = (img0, lab0) if protocol == "same" else KINDS[kind](101)
    config = DetectorConfig(segmenter="classical", embedder="views", store="memory")
    common = dict(shots=shots, seed=seed, curve_thresholds=(), overlays=0)
    if pick == "random":
        if protocol == "same":
            w = examples_worth([img0], [lab0], config, examples_from=[0], detect_on=[0], **common)
        else:
            w = examples_worth([img0, img1], [lab0, lab1], config, examples_from=[0], detect_on=[1], **common)
    else:  # corner: drawn among the objects centred in the top-left quarter
        ids0 = np.unique(lab0[lab0 > 0])  # the objects' order in Instances.from_label_image (ids may skip)
        cy = ndi.center_of_mass(np.ones(lab0.shape), lab0, ids0)
        h, wd = lab0.shape
        pool = [j for j, (y, x) in enumerate(cy) if y < h / 2 and x < wd / 2]
        chosen = np.random.default_rng(seed).choice(pool, min(shots, len(pool)), replace=False)
        g0 = _typed(lab0, chosen)
        n1 = len(np.unique(lab1[lab1 > 0]))
        g1 = _typed(lab1, [j for j in range(n1) if protocol == "cross" or j not in set(chosen)])
        w = examples_worth([img0, img1], [g0, g1], config, examples_from=[0], detect_on=[1], **common)
    row = {"kind": kind, "seed": seed, "protocol": protocol, "pick": pick}
    for mode, m in (("full", w.full.metrics[0.5]), ("noprof", w.without_profile.metrics[0.5]),
                    ("alone", w.segmenter_alone[0.5])):
        row[mode] = {"f1": round(m.f1, 3), "p": round(m.precision, 3), "r": round(m.recall, 3),
                     "tp": m.tp, "fp": m.fp, "fn": m.fn}
    row["errors_full"] = w.full.errors
    row["errors_noprof"] = w.without_profile.errors
    row["profile"] = w.full.protocol.get("profile", [])
    row["cands_full"], row["cands_noprof"] = w.full.n_candidates, w.without_profile.n_candidates
    return row


def unlabelled_hits(kind: str, draws: int, shots: int = 10) -> None:
    """Print the draws (``same`` protocol, seeds 0..``draws``-1) where the unlabelled filter
    dropped objects: ``(seed, F1, objects it dropped)``."""
    from sam_detect import DetectorConfig
    from sam_detect.eval.protocol import evaluate

    img, lab = KINDS[kind](100)
    config = DetectorConfig(segmenter="classical", embedder="views", store="memory")
    hits, f1s = [], []
    for seed in range(draws):
        res = evaluate([img], [lab], config, shots=shots, seed=seed, examples_from=[0], detect_on=[0],
                       curve_thresholds=(), overlays=0)
        f1s.append(res.metrics[0.5].f1)
        dropped = (res.errors or {}).get("dropped_by", {}).get("unlabelled", 0)
        if dropped:
            hits.append((seed, round(res.metrics[0.5].f1, 3), dropped))
    print(f"{kind}: {int(lab.max())} objects, {draws} draws, mean F1 {np.mean(f1s):.3f}; "
          f"draws losing objects to the unlabelled filter: {len(hits)} {hits}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--unlabelled", type=int, default=0, metavar="N",
                    help="count the draws 0..N-1 (same protocol) where the unlabelled filter drops objects")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--protocols", default="same,cross")
    ap.add_argument("--pick", default="random", choices=("random", "corner"))
    ap.add_argument("--errors", action="store_true", help="print the pooled error categories per kind")
    ap.add_argument("--profile", action="store_true", help="print the full run's profile lines")
    ap.add_argument("--json", default=None, help="append rows to this JSON-lines file")
    ap.add_argument("--save", default=None, help="write each kind's two images and labels to this folder (.npz)")
    args = ap.parse_args()
    if args.unlabelled:
        for kind in args.kinds.split(","):
            unlabelled_hits(kind, args.unlabelled)
        return
    from sam_detect.eval.errors import format_errors, pool_errors

    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"{'kind':12s} {'prot':5s} {'pick':6s} | {'full':>5s} {'noprof':>6s} {'alone':>5s} | per seed full / noprof / alone")
    for kind in args.kinds.split(","):
        if args.save:
            Path(args.save).mkdir(parents=True, exist_ok=True)
            a, b = KINDS[kind](100), KINDS[kind](101)
            np.savez_compressed(Path(args.save) / f"{kind}.npz", img0=a[0], lab0=a[1], img1=b[0], lab1=b[1])
        for protocol in args.protocols.split(","):
            rows, t = [], time.time()
            for seed in seeds:
                row = run(kind, seed, protocol, args.pick)
                rows.append(row)
                if args.json:
                    with open(args.json, "a") as f:
                        f.write(json.dumps({**row, "wall_s": round(time.time() - t, 1)}, default=int) + "\n")
            mean = {m: np.mean([r[m]["f1"] for r in rows]) for m in ("full", "noprof", "alone")}
            per = "  ".join(f"{r['full']['f1']:.2f}/{r['noprof']['f1']:.2f}/{r['alone']['f1']:.2f}" for r in rows)
            pr = "  P/R full " + " ".join(f"{r['full']['p']:.2f}/{r['full']['r']:.2f}" for r in rows)
            print(f"{kind:12s} {protocol:5s} {args.pick:6s} | {mean['full']:5.3f} {mean['noprof']:6.3f} "
                  f"{mean['alone']:5.3f} | {per} |{pr} ({time.time() - t:.0f}s)", flush=True)
            if args.errors:
                for mode in ("full", "noprof"):
                    pooled = {}
                    for r in rows:
                        pool_errors(pooled, r[f"errors_{mode}"])
                    print(f"   -- {mode} errors, seeds pooled:")
                    print("\n".join("      " + ln for ln in format_errors(pooled)))
            if args.profile:
                print(f"   -- profile (seed {rows[0]['seed']}):\n" + "\n".join("      " + ln for ln in rows[0]["profile"]))


if __name__ == "__main__":
    main()
