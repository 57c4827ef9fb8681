#!/usr/bin/env python
"""Twenty-three more kinds of labelled images a user may bring (development only; a
helper's second kinds hunt, session 90), weighted toward Data-Science-Bowl-like
fluorescence nuclei and H&E-like patches. Same running machinery and options as
``scripts/dev_kinds.py`` (imported from it; its KINDS are replaced by these).

Every generator is deterministic (``f(seed) -> (image, label image)``), self-contained
but for dev_kinds.py's helpers ``_ellipses``, ``_finish``, ``_fill``, ``_texture`` and ``S``
(512), and the helpers defined here (``_blobs``, ``_he_render``).

    python scripts/dev_kinds2.py                   # every kind, both protocols, seeds 0-2
    python scripts/dev_kinds2.py --kinds he_mixed --seeds 0,1,2 --protocols same --errors
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage import draw

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dev_kinds as dk  # noqa: E402
from dev_kinds import S, _ellipses, _fill, _finish, _texture  # noqa: E402,F401


# ---------------------------------------------------------------- helpers
def _blobs(shape, n, rmin, rmax, rng, gap=2, ecc=(1.0, 1.5), wobble=0.0, touch=None, tries=40000):
    """Star-shaped objects (an ellipse whose radius wobbles by harmonics 2-5 of relative size
    ``wobble``), ``n`` of them, ``gap`` px apart. ``touch=(lo, hi)``: instead packed, each
    centre at ``lo``..``hi`` x the sum of the two radii from its nearest neighbour at least,
    overlaps split by the nearest centre (normalised distance), so neighbours touch."""
    H, W = shape
    lab = np.zeros(shape, np.int32)
    if touch is None:
        k = 0
        for _ in range(tries):
            if k >= n:
                break
            m, (y0, x0) = _one_blob(rng, rmin, rmax, ecc, wobble, shape)
            if m is None:
                continue
            sl = (slice(y0, y0 + m.shape[0]), slice(x0, x0 + m.shape[1]))
            pad = np.pad(m, gap)
            grown = ndi.binary_dilation(pad, iterations=gap) if gap > 0 else pad
            ys, xs = y0 - gap, x0 - gap
            gy0, gx0 = max(ys, 0), max(xs, 0)
            gy1, gx1 = min(ys + grown.shape[0], H), min(xs + grown.shape[1], W)
            g = grown[gy0 - ys: gy1 - ys, gx0 - xs: gx1 - xs]
            if (lab[gy0:gy1, gx0:gx1][g] > 0).any():
                continue
            k += 1
            lab[sl][m] = k
        return lab
    # packed: nearest-centre split of overlapping star shapes
    best = np.full(shape, np.inf)
    arg = np.zeros(shape, np.int32)
    centres, radii = [], []
    yy, xx = np.mgrid[:H, :W]
    for _ in range(tries):
        if len(centres) >= n:
            break
        r = rng.uniform(rmin, rmax)
        c = rng.uniform([r + 2, r + 2], [H - r - 2, W - r - 2])
        if centres:
            d = np.hypot(*(np.array(centres) - c).T)
            lim = (np.array(radii) + r)
            if (d < touch[0] * lim).any() or not (d < touch[1] * lim).any() and len(centres) % 6:
                continue  # too close, or (5 in 6) not touching any: grow clumps
        e, t = rng.uniform(*ecc), rng.uniform(0, np.pi)
        a, b = r * np.sqrt(e), r / np.sqrt(e)
        ph = rng.uniform(0, 2 * np.pi, 4)
        amp = wobble * rng.uniform(0.3, 1.0, 4) / np.arange(2, 6)
        y0, y1 = int(max(c[0] - a - 3, 0)), int(min(c[0] + a + 4, H))
        x0, x1 = int(max(c[1] - a - 3, 0)), int(min(c[1] + a + 4, W))
        dy, dx = yy[y0:y1, x0:x1] - c[0], xx[y0:y1, x0:x1] - c[1]
        u, v = dy * np.cos(t) + dx * np.sin(t), -dy * np.sin(t) + dx * np.cos(t)
        th = np.arctan2(v, u)
        rad = 1 + sum(amp[j] * np.cos((j + 2) * th + ph[j]) for j in range(4))
        d = np.sqrt((u / a) ** 2 + (v / b) ** 2) / rad
        centres.append(c)
        radii.append(r)
        win = best[y0:y1, x0:x1]
        closer = d < win
        win[closer] = d[closer]
        arg[y0:y1, x0:x1][closer] = len(centres)
    lab = np.where(best <= 1, arg, 0).astype(np.int32)
    ids, area = np.unique(lab, return_counts=True)
    small = ids[(area < 0.35 * np.pi * rmin ** 2) & (ids > 0)]
    lab[np.isin(lab, small)] = 0
    # a nearest-centre split can leave an object in two pieces: keep its largest
    for i, sl in enumerate(ndi.find_objects(lab), 1):
        if sl is None:
            continue
        pieces, k = ndi.label(lab[sl] == i)
        if k > 1:
            sizes = ndi.sum(np.ones_like(pieces), pieces, range(1, k + 1))
            drop = (pieces > 0) & (pieces != 1 + int(np.argmax(sizes)))
            lab[sl][drop] = 0
    from skimage.segmentation import relabel_sequential

    return relabel_sequential(lab)[0].astype(np.int32)


def _one_blob(rng, rmin, rmax, ecc, wobble, shape):
    r, e, t = rng.uniform(rmin, rmax), rng.uniform(*ecc), rng.uniform(0, np.pi)
    a, b = r * np.sqrt(e), r / np.sqrt(e)
    R = int(np.ceil(a * (1 + wobble) + 2))
    if min(shape) < 2 * R + 6:
        return None, (0, 0)
    cy, cx = rng.uniform(R + 2, shape[0] - R - 2), rng.uniform(R + 2, shape[1] - R - 2)
    y0, x0 = int(cy) - R, int(cx) - R
    yy, xx = np.mgrid[y0:y0 + 2 * R + 1, x0:x0 + 2 * R + 1]
    dy, dx = yy - cy, xx - cx
    u, v = dy * np.cos(t) + dx * np.sin(t), -dy * np.sin(t) + dx * np.cos(t)
    th = np.arctan2(v, u)
    ph = rng.uniform(0, 2 * np.pi, 4)
    amp = wobble * rng.uniform(0.3, 1.0, 4) / np.arange(2, 6)
    rad = 1 + sum(amp[j] * np.cos((j + 2) * th + ph[j]) for j in range(4))
    m = np.sqrt((u / a) ** 2 + (v / b) ** 2) <= rad
    return m, (y0, x0)


def _to8(img, lo=None, hi=None):
    img = img.astype(float)
    lo = np.percentile(img, 0.1) if lo is None else lo
    hi = np.percentile(img, 99.9) if hi is None else hi
    return np.clip((img - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- DSB-like fluorescence
def dsb_small(seed):
    """DSB-like 256 x 256, 8-bit, ~80 small nuclei (r 5-8), some touching (1 px apart), auto-
    contrasted PNG-like (ground ~10 grey levels)."""
    rng = np.random.default_rng(seed)
    lab = _blobs((256, 256), 80, 5, 8, rng, gap=1, ecc=(1.0, 1.6), wobble=0.08)
    img = _finish(_fill(lab, rng.uniform(40, 90, lab.max())), rng, 10, 2, blur=1.0)
    return _to8(img, 0, 110), lab


def tiny_nuclei(seed):
    """~250 tiny nuclei, r 3-5 (area ~30-80 px), 512 x 512, 16-bit, brightness 150-300."""
    rng = np.random.default_rng(seed)
    lab = _ellipses((S, S), 250, 3, 5, rng, gap=3, ecc=(1.0, 1.4))
    return _finish(_fill(lab, rng.uniform(150, 300, lab.max())), rng, 100, 6, blur=0.8), lab


def packed300(seed):
    """~300 nuclei (r 8-11) packed in 512 x 512, most touching a neighbour (centres
    0.85-1.05 x the radii apart, split by nearest centre), no dip between them."""
    rng = np.random.default_rng(seed)
    lab = _blobs((S, S), 300, 8, 11, rng, ecc=(1.0, 1.4), wobble=0.05, touch=(0.85, 1.05))
    return _finish(_fill(lab, rng.uniform(150, 250, lab.max())), rng, 100, 6, blur=1.2), lab


def low_snr(seed):
    """Photon-limited: ground 3 photons, nuclei (r 8-12) 6-14 photons over it, no read noise
    beyond 1, 16-bit (SNR ~2-4 per pixel)."""
    rng = np.random.default_rng(seed)
    lab = _ellipses((S, S), 90, 8, 12, rng, gap=3)
    return _finish(_fill(lab, rng.uniform(6, 14, lab.max())), rng, 3, 1.0, blur=1.2, offset=100), lab


def uneven_bright(seed):
    """Nuclei (r 8-12) whose brightness spans 30x within the image (log-uniform 20-600 over a
    ground of 100): the dim ones barely above the ground."""
    rng = np.random.default_rng(seed)
    lab = _ellipses((S, S), 90, 8, 12, rng, gap=3)
    amp = np.exp(rng.uniform(np.log(20), np.log(600), lab.max()))
    return _finish(_fill(lab, amp), rng, 100, 6), lab


def tissue_fluo(seed):
    """Tissue-section DAPI-like: autofluorescent textured ground (100 + 0-120, blotchy at two
    scales), irregular nuclei (r 7-11, wobbly) packed in bands, brightness 100-300, some
    touching, some sitting on the bright blotches."""
    rng = np.random.default_rng(seed)
    lab = _blobs((S, S), 160, 7, 11, rng, ecc=(1.0, 2.0), wobble=0.15, touch=(0.9, 1.3))
    blotch = ndi.gaussian_filter(rng.normal(0, 1, (S, S)), 25)
    blotch = (blotch - blotch.min()) / np.ptp(blotch)
    fine = ndi.gaussian_filter(rng.normal(0, 1, (S, S)), 2)
    fine = np.clip(fine / fine.std(), -2, 3)
    ground = 100 + 90 * blotch + 15 * fine * (0.5 + blotch)
    signal = _fill(lab, rng.uniform(100, 300, lab.max())) * _texture((S, S), rng, 1.5, 0.25)
    img = rng.poisson(np.clip(ndi.gaussian_filter(signal, 1.3) + ground, 0, None)).astype(float)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 65535).astype(np.uint16), lab


def big1024(seed):
    """1024 x 1024, ~90 large nuclei (r 18-26), mildly textured, 16-bit."""
    rng = np.random.default_rng(seed)
    lab = _ellipses((1024, 1024), 90, 18, 26, rng, gap=4, ecc=(1.0, 1.5))
    signal = _fill(lab, rng.uniform(150, 250, lab.max())) * _texture((1024, 1024), rng, 3, 0.2)
    return _finish(signal, rng, 100, 6, blur=1.5), lab


def sparse15(seed):
    """512 x 512 with only 15 nuclei (r 8-12): 10 examples leave 5 to score."""
    rng = np.random.default_rng(seed)
    lab = _ellipses((S, S), 15, 8, 12, rng, gap=6)
    return _finish(_fill(lab, rng.uniform(150, 250, lab.max())), rng, 100, 6), lab


def saturated(seed):
    """8-bit with the nuclei clipped at 255 (2-4x over the range), ~140 nuclei r 8-11, half
    in touching pairs or clumps: no dip between touching saturated nuclei."""
    rng = np.random.default_rng(seed)
    lab = _blobs((S, S), 140, 8, 11, rng, ecc=(1.0, 1.4), touch=(0.85, 1.05))
    img = ndi.gaussian_filter(_fill(lab, rng.uniform(500, 900, lab.max())), 1.2) + 15
    img = rng.poisson(img).astype(float) + rng.normal(0, 2, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), lab


def lobed(seed):
    """Irregular, lobed nuclei (r 9-14, harmonic wobble 0.45: kidney and bean shapes),
    ~70, 16-bit, textured."""
    rng = np.random.default_rng(seed)
    lab = _blobs((S, S), 70, 9, 14, rng, gap=3, ecc=(1.0, 1.8), wobble=0.45)
    signal = _fill(lab, rng.uniform(150, 250, lab.max())) * _texture((S, S), rng, 1.5, 0.2)
    return _finish(signal, rng, 100, 6), lab


def gradient_ground(seed):
    """Uneven ground: a smooth ramp 50 -> 450 diagonally plus one bright smudge (+300, sigma
    60 px); nuclei (r 8-12) 120-220 over their local ground."""
    rng = np.random.default_rng(seed)
    lab = _ellipses((S, S), 90, 8, 12, rng, gap=3)
    yy, xx = np.mgrid[:S, :S]
    cy, cx = rng.uniform(120, 390, 2)
    ground = 50 + 400 * (yy + xx) / (2 * S) + 300 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 60.0 ** 2))
    signal = _fill(lab, rng.uniform(120, 220, lab.max()))
    img = rng.poisson(ndi.gaussian_filter(signal, 1.2) + ground).astype(float) + rng.normal(0, 6, (S, S))
    return np.clip(img, 0, 65535).astype(np.uint16), lab


def dsb_mixed_sizes(seed):
    """256 x 256 8-bit, nuclei in a continuum of sizes r 4-14 (log-uniform), ~45, some
    touching: the DSB's small images with a wide size spread."""
    rng = np.random.default_rng(seed)
    lab = np.zeros((256, 256), np.int32)
    k = 0
    for r in np.sort(np.exp(rng.uniform(np.log(4), np.log(14), 60)))[::-1]:
        one = _ellipses((256, 256), 1, r, r * 1.01, rng, gap=1)
        # place it if clear of the others
        m = one > 0
        if not m.any() or (ndi.binary_dilation(m, iterations=1) & (lab > 0)).any():
            continue
        k += 1
        lab[m] = k
        if k >= 45:
            break
    img = _finish(_fill(lab, rng.uniform(50, 110, lab.max())), rng, 12, 2, blur=1.0)
    return _to8(img, 0, 130), lab


# ---------------------------------------------------------------- H&E-like
# Ruifrok & Johnston optical densities (per unit stain) of haematoxylin and eosin, R, G, B
_H = np.array([0.65, 0.70, 0.29])
_E = np.array([0.07, 0.99, 0.11])


def _he_render(hema, eosin, rng, blur=0.8, noise=3.0):
    """RGB uint8 from haematoxylin and eosin amounts (Beer-Lambert), slightly blurred, with
    pixel noise."""
    h = ndi.gaussian_filter(hema, blur)
    e = ndi.gaussian_filter(eosin, blur)
    od = h[..., None] * _H + e[..., None] * _E
    rgb = 245 * np.exp(-od) + rng.normal(0, noise, od.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _stroma(shape, rng, level=0.45, fibres=True, lumen=0):
    """Eosin amount of a stroma: textured, with wavy fibres (``fibres``) and ``lumen`` white
    holes (eosin near 0)."""
    H, W = shape
    e = level * (1 + 0.25 * ndi.gaussian_filter(rng.normal(0, 1, shape), 4) / 0.07)
    e = np.clip(e, 0.05, None)
    if fibres:
        t = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[:H, :W]
        wave = np.sin((yy * np.sin(t) + xx * np.cos(t)) / 3.0 + 3 * ndi.gaussian_filter(rng.normal(0, 1, shape), 12) / 0.02)
        e = e * (1 + 0.35 * wave)
    for _ in range(lumen):
        cy, cx = rng.uniform(0, H), rng.uniform(0, W)
        rr, cc = draw.ellipse(cy, cx, rng.uniform(15, 35), rng.uniform(15, 35), shape=shape, rotation=rng.uniform(0, np.pi))
        e[rr, cc] = 0.03
    return np.clip(e, 0.02, None)


def _nucleus_stain(lab, ids, kind, rng, hema):
    """Add haematoxylin for nuclei ``ids`` of ``lab``: ``dark`` (solid, 1.3-1.8), ``pale``
    (vesicular: 0.25-0.45 inside, a 1.5-px rim at 1.0-1.4, 1-2 nucleoli at 1.3, chromatin
    speckle), ``spindle`` (solid 0.8-1.2, textured)."""
    slices = ndi.find_objects(lab)
    for i in ids:
        sl = slices[i - 1]
        if sl is None:
            continue
        m = lab[sl] == i
        if kind == "dark":
            hema[sl][m] += rng.uniform(1.3, 1.8) * (1 + 0.1 * rng.normal(0, 1, m.sum()))
        elif kind == "spindle":
            hema[sl][m] += rng.uniform(0.8, 1.2) * (1 + 0.15 * rng.normal(0, 1, m.sum()))
        else:
            inner = ndi.binary_erosion(m, iterations=2)
            rim = m & ~inner
            v = np.zeros(m.shape)
            v[m] = rng.uniform(0.25, 0.45)
            v[rim] = rng.uniform(1.0, 1.4)
            speck = (rng.random(m.shape) < 0.08) & inner
            v[speck] += 0.5
            pts = np.argwhere(ndi.binary_erosion(m, iterations=4))
            for _ in range(rng.integers(1, 3) if len(pts) else 0):
                cy, cx = pts[rng.integers(len(pts))]
                rr, cc = draw.disk((cy, cx), rng.uniform(1.2, 2.2), shape=m.shape)
                v[rr, cc] = np.where(m[rr, cc], 1.3, v[rr, cc])
            hema[sl][m] += v[m]


def he_mixed(seed):
    """H&E patch 256 x 256: pink stroma with fibres, three nucleus looks, one class: ~25
    lymphocytes (r 4-6, dark round), ~15 epithelial (r 10-14, pale vesicular, dark rim,
    nucleoli), ~15 fibroblasts (elongated 3-5:1, r 5-8)."""
    rng = np.random.default_rng(seed)
    shape = (256, 256)
    big = _blobs(shape, 15, 10, 14, rng, gap=3, ecc=(1.0, 1.5), wobble=0.12)
    spin = _blobs(shape, 40, 5, 8, rng, gap=3, ecc=(3.0, 5.0), wobble=0.05)
    lym = _blobs(shape, 80, 4, 6, rng, gap=2, ecc=(1.0, 1.2))
    lab, kinds = _merge_layers(shape, [(big, "pale", 15), (spin, "spindle", 15), (lym, "dark", 25)])
    return _he_from(lab, kinds, rng), lab


def _merge_layers(shape, layers, gap=2):
    """One label image of several layers, each object kept if clear of the ones before by
    ``gap`` px, at most ``n`` per layer; ``kinds`` the look of each id."""
    lab = np.zeros(shape, np.int32)
    kinds = []
    for layer, kind, n in layers:
        taken = ndi.binary_dilation(lab > 0, iterations=gap)
        k = 0
        for i, sl in enumerate(ndi.find_objects(layer), 1):
            if sl is None or k >= n:
                continue
            m = layer == i
            if (m & taken).any():
                continue
            kinds.append(kind)
            lab[m] = len(kinds)
            k += 1
    return lab, kinds


def _he_from(lab, kinds, rng, stroma=0.45, fibres=True, lumen=0, cyto=0.0):
    shape = lab.shape
    eosin = _stroma(shape, rng, stroma, fibres, lumen)
    hema = 0.04 + 0.03 * ndi.gaussian_filter(rng.normal(0, 1, shape), 3) / 0.1
    hema = np.clip(hema, 0, None)
    if cyto:  # cells' cytoplasm around the nuclei: more eosin, a haze of haematoxylin
        body = ndi.binary_dilation(lab > 0, iterations=6)
        eosin[body] += cyto
        hema[body] += 0.06
    for kind in dict.fromkeys(kinds):  # in order of first use: a set's order followed PYTHONHASHSEED
        ids = [i + 1 for i, k in enumerate(kinds) if k == kind]
        _nucleus_stain(lab, ids, kind, rng, hema)
    eosin[lab > 0] *= 0.6
    return _he_render(hema, eosin, rng)


def he_lymph(seed):
    """H&E 256 x 256: a dense sheet of ~150 lymphocytes (r 4-6, dark), touching (nearest-
    centre packing), on little stroma."""
    rng = np.random.default_rng(seed)
    lab = _blobs((256, 256), 170, 4, 6, rng, ecc=(1.0, 1.25), touch=(0.95, 1.25))
    return _he_from(lab, ["dark"] * int(lab.max()), rng, stroma=0.35), lab


def he_vesicular(seed):
    """H&E 256 x 256: ~30 tumour nuclei (r 11-16, pale vesicular, dark rim, nucleoli),
    some touching, in eosinophilic cytoplasm, with two white lumens."""
    rng = np.random.default_rng(seed)
    lab = _blobs((256, 256), 32, 11, 16, rng, ecc=(1.0, 1.5), wobble=0.12, touch=(0.95, 1.4))
    return _he_from(lab, ["pale"] * int(lab.max()), rng, stroma=0.4, lumen=2, cyto=0.2), lab


def he_fibro(seed):
    """H&E 256 x 256: ~35 elongated fibroblast nuclei (4-7:1, r 5-8) in fibrous stroma,
    oriented along the fibres +- 20 deg, thin and wavy."""
    rng = np.random.default_rng(seed)
    shape = (256, 256)
    t0 = rng.uniform(0, np.pi)
    lab = np.zeros(shape, np.int32)
    k = 0
    for _ in range(20000):
        if k >= 35:
            break
        L, w = rng.uniform(12, 22), rng.uniform(2.0, 3.2)
        t = t0 + rng.normal(0, 0.35)
        cy, cx = rng.uniform(L + 4, 256 - L - 4, 2)
        rr, cc = draw.ellipse(cy, cx, L, w, shape=shape, rotation=t)
        m = np.zeros(shape, bool)
        m[rr, cc] = True
        if (ndi.binary_dilation(m, iterations=3) & (lab > 0)).any():
            continue
        k += 1
        lab[m] = k
    return _he_from(lab, ["spindle"] * int(lab.max()), rng, stroma=0.55), lab


def he_dark_stroma(seed):
    """H&E 256 x 256: ~40 nuclei (r 6-10, mid-dark, haematoxylin 0.8-1.2) on dense dark-pink
    stroma (eosin 1.0), with white lumen holes brighter than everything."""
    rng = np.random.default_rng(seed)
    lab = _blobs((256, 256), 40, 6, 10, rng, gap=3, ecc=(1.0, 1.8), wobble=0.1)
    return _he_from(lab, ["spindle"] * int(lab.max()), rng, stroma=1.0, lumen=3), lab


def he_pale_dark(seed):
    """H&E 256 x 256, two looks half each, one class: ~20 pale vesicular nuclei (r 10-14)
    and ~20 dark ones the same size (r 9-12, hyperchromatic)."""
    rng = np.random.default_rng(seed)
    shape = (256, 256)
    a = _blobs(shape, 20, 10, 14, rng, gap=3, ecc=(1.0, 1.4), wobble=0.1)
    b = _blobs(shape, 40, 9, 12, rng, gap=3, ecc=(1.0, 1.4), wobble=0.1)
    lab, kinds = _merge_layers(shape, [(a, "pale", 20), (b, "dark", 20)], gap=3)
    return _he_from(lab, kinds, rng, stroma=0.45, cyto=0.1), lab


def he_crowded(seed):
    """H&E 256 x 256: a crowded epithelial nest, ~45 pale vesicular nuclei (r 9-13) touching
    (nearest-centre packing), in haematoxylin-tinged cytoplasm (0.15-0.25 over all of the
    nest), blur 1.5: low contrast between the pale nuclei and their surroundings."""
    rng = np.random.default_rng(seed)
    lab = _blobs((256, 256), 45, 9, 13, rng, ecc=(1.0, 1.5), wobble=0.12, touch=(0.88, 1.15))
    shape = lab.shape
    eosin = _stroma(shape, rng, 0.45, True, 0)
    hema = np.clip(0.04 + 0.03 * ndi.gaussian_filter(rng.normal(0, 1, shape), 3) / 0.1, 0, None)
    nest = ndi.binary_closing(ndi.binary_dilation(lab > 0, iterations=7), iterations=6)
    hema[nest] += rng.uniform(0.15, 0.25)
    eosin[nest] += 0.15
    _nucleus_stain(lab, list(range(1, int(lab.max()) + 1)), "pale", rng, hema)
    eosin[lab > 0] *= 0.6
    return _he_render(hema, eosin, rng, blur=1.5), lab


def he_rbc(seed):
    """H&E 256 x 256: ~35 nuclei (r 6-10, mid-dark) among ~60 red blood cells (r 3.5-4.5,
    dense eosin 1.6-2.0: dark red, darker than the stroma in every channel but red)."""
    rng = np.random.default_rng(seed)
    shape = (256, 256)
    lab = _blobs(shape, 35, 6, 10, rng, gap=4, ecc=(1.0, 1.6), wobble=0.1)
    rbc = _blobs(shape, 200, 3.5, 4.5, rng, gap=1, ecc=(1.0, 1.2))
    hema = np.clip(0.04 + 0.03 * ndi.gaussian_filter(rng.normal(0, 1, shape), 3) / 0.1, 0, None)
    eosin = _stroma(shape, rng, 0.4, True, 1)
    free = ~ndi.binary_dilation(lab > 0, iterations=3)
    k = 0
    for i, sl in enumerate(ndi.find_objects(rbc), 1):
        if sl is None or k >= 60:
            continue
        m = rbc == i
        if not free[m].all():
            continue
        eosin[m] = rng.uniform(1.6, 2.0)
        k += 1
    _nucleus_stain(lab, list(range(1, int(lab.max()) + 1)), "spindle", rng, hema)
    eosin[lab > 0] *= 0.6
    return _he_render(hema, eosin, rng), lab


def he_faint(seed):
    """H&E 256 x 256: ~45 nuclei (r 6-11) of widely varying staining (haematoxylin 0.3-1.6,
    log-uniform: some barely darker than the stroma), a third out of focus (blur 2.5)."""
    rng = np.random.default_rng(seed)
    shape = (256, 256)
    lab = _blobs(shape, 45, 6, 11, rng, gap=3, ecc=(1.0, 1.6), wobble=0.1)
    hema_n = np.zeros(shape)
    amp = np.exp(rng.uniform(np.log(0.3), np.log(1.6), lab.max()))
    hema_n[lab > 0] = amp[lab[lab > 0] - 1] * (1 + 0.12 * rng.normal(0, 1, (lab > 0).sum()))
    blurred = np.isin(lab, np.flatnonzero(rng.random(lab.max()) < 0.33) + 1)
    hema_n = np.where(ndi.binary_dilation(blurred, iterations=4), ndi.gaussian_filter(hema_n, 2.5), hema_n)
    hema = np.clip(0.04 + 0.03 * ndi.gaussian_filter(rng.normal(0, 1, shape), 3) / 0.1, 0, None) + hema_n
    eosin = _stroma(shape, rng, 0.5, True, 0)
    eosin[lab > 0] *= 0.6
    return _he_render(hema, eosin, rng), lab


def dsb_dense_small(seed):
    """DSB-like 256 x 256 8-bit: ~150 small nuclei (r 4-6) packed, most touching (nearest-
    centre split), brightness 40-90 over a ground of 10, auto-contrasted."""
    rng = np.random.default_rng(seed)
    lab = _blobs((256, 256), 150, 4, 6, rng, ecc=(1.0, 1.4), touch=(0.9, 1.2))
    img = _finish(_fill(lab, rng.uniform(40, 90, lab.max())), rng, 10, 2, blur=0.9)
    return _to8(img, 0, 110), lab


def dsb_dimclump(seed):
    """16-bit, ~110 nuclei (r 8-11): a third bright (300-500) and isolated, two thirds dim
    (60-120) in touching clumps (nearest-centre packing), ground 100: the examples drawn at
    random mix both."""
    rng = np.random.default_rng(seed)
    lab = _blobs((S, S), 110, 8, 11, rng, ecc=(1.0, 1.4), wobble=0.05, touch=(0.9, 1.15))
    touching = np.zeros(lab.max() + 1, bool)
    g = ndi.grey_dilation(lab, 3)
    for i in np.unique(lab[(g != lab) & (lab > 0)]):
        touching[i] = True
    amp = np.where(touching[1:], rng.uniform(60, 120, lab.max()), rng.uniform(300, 500, lab.max()))
    return _finish(_fill(lab, amp), rng, 100, 6), lab


KINDS = {f.__name__: f for f in (dsb_small, tiny_nuclei, packed300, low_snr, uneven_bright, tissue_fluo, big1024,
                                  sparse15, saturated, lobed, gradient_ground, dsb_mixed_sizes, he_mixed, he_lymph,
                                  he_vesicular, he_fibro, he_dark_stroma, he_pale_dark,
                                  he_crowded, he_rbc, he_faint, dsb_dense_small, dsb_dimclump)}

if __name__ == "__main__":
    dk.KINDS.clear()
    dk.KINDS.update(KINDS)
    dk.main()
