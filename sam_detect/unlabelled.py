"""What the example images say about what is *not* an object (positive-unlabelled learning).

Examples are partial labels: the objects a user left unlabelled in an example image are not
negatives. Yet when the examples cover most of the objects of their images (every nucleus
of a patch labelled, the usual way to annotate a crop), the candidates the segmenter
proposes there that match no example are mostly *not* objects, and they show what the
false candidates look like. Elkan and Noto (KDD 2008, "Learning classifiers from only
positive and unlabeled data") make that exact without calling them negatives:

- on each example image, the candidates the library's profile proposes (the same proposal
  and size filter as ``detect``) are measured (:func:`features`: inside contrast, size,
  outline contrast, stability and solidity, each against the candidate's class) and marked
  *labelled* when one overlaps an example at IoU >= ``MATCH_IOU``;
- a logistic model ``g(x) = P(labelled | x)`` is fitted on them (:func:`fit`), and the label
  frequency ``c = P(labelled | object)`` estimated as the mean out-of-fold ``g`` over the
  labelled candidates; an object's probability is then ``g(x) / c``;
- ``detect`` drops candidates whose probability is below ``MIN_PROBABILITY``, only where
  ``c >= MIN_LABEL_FREQUENCY``: where the examples are a small share of their images'
  objects, the unlabelled candidates are mostly objects themselves, ``g / c`` divides by a
  small, noisy number, and the model has nothing to teach (on the development sets, ten
  examples among 80-180 objects, ``c`` was 0.03-0.19 and the filter lost recall; on H&E
  patches labelled in full, ``c`` was 0.27-0.66 and F1 rose from 0.398 to 0.510 over 36
  draws, 16 better and 1 worse: docs/performance.md, "Session 17"), and only where ``g``
  tells labelled from unlabelled candidates out of fold (``MIN_SEPARATION``,
  ``MIN_SEPARATION_Z``), counting the alternatives of one object (candidates that overlap)
  as one (``GROUP_OVERLAP``).

The measured rows travel in the examples' payloads (``"unlabelled"``: each example carries
the image's candidates nearest to it), so the model is rebuilt from the library alone after
every add and delete, and export/import carries it. Examples added to one image over several
``add`` calls (one click at a time in the UI, one box at a time) are matched together: each
add measures the image again with every example the library already holds of it
(``"image_key"``, :func:`image_key`) and only the image's latest measurement counts
(``"unlabelled_at"``), so an example added earlier is not taken for an unlabelled object.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sam_detect.instances import Instances

VERSION = 2
#: a candidate is the labelled example it overlaps at least this much
MATCH_IOU = 0.5
#: the model is applied only where the examples are at least this share of their images'
#: objects (the estimated label frequency ``c``)
MIN_LABEL_FREQUENCY = 0.25
#: ... and only where ``g`` tells the labelled candidates from the unlabelled ones out of
#: fold (ROC AUC): where they look alike (the unlabelled ones objects like the examples), a
#: model fitted to a handful of rows has learnt noise
MIN_SEPARATION = 0.7
#: ... by at least this many standard errors of the AUC of two samples that do not differ
#: (Mann-Whitney: ``sqrt((n1 + n0 + 1) / (12 n1 n0))``): four examples among sixteen alike
#: objects reach 0.8 by chance
MIN_SEPARATION_Z = 3.0
#: ... or 2 standard errors where the rows say where each candidate lies and the examples
#: are no easier to tell from the rest by position than ``MAX_POSITION_SEPARATION``. The
#: model assumes the examples are a random choice among their images' objects; examples
#: picked by position (the first rows of coins, boxed in reading order) are told from the
#: other objects by where they lie (out-of-fold ROC AUC 0.98-1.0 for 6-16 coins), a patch
#: labelled in full is not (0.27-0.76 on the development H&E patches, 0.29-0.81 on the
#: fluorescence ones). There the weaker test lets the model act on 26 of 36 H&E stroma
#: draws instead of 17 (F1 0.542 -> 0.566) and on none of the fluorescence draws
#: (docs/performance.md, session 31)
MIN_SEPARATION_Z_AT_RANDOM = 2.0
MAX_POSITION_SEPARATION = 0.85
#: ... and only where at least this many examples were proposed (``labelled`` groups). The
#: model assumes the examples are a random choice among their images' objects; a handful
#: picked by position or visibility (the first row of coins) differ from the other objects
#: by how they were picked, and with five of them that passed for a separation (z 3.07) and
#: dropped 16 of 24 coins. Labelling most objects of a patch gives more (12-20 on the
#: development H&E patches)
MIN_LABELLED_OBJECTS = 10
#: ... and only where the examples are at least ``MIN_LABEL_FREQUENCY`` of the objects that
#: look like them in size (log-area within this much of theirs), stability and solidity:
#: ``c`` is estimated by ``g``, which reads the candidates' contrast too, so examples picked
#: for standing out (the ten brightest nuclei) would pass for most of their images' objects
#: and every fainter object would be dropped as unlabelled (development sets, session 35)
AREA_ROOM = 0.25
#: ... and where every class is bright, over the sizes the profile admits too
#: (:func:`admitted_sizes`): examples picked by size (the ten largest nuclei) are alike to
#: few objects within ``AREA_ROOM`` of their own sizes, passed for most of their images'
#: objects, and the model dropped every smaller one (the ten largest whole nuclei as
#: examples: ``dev_rpe1`` 0.888 -> 0.935 counted over the admitted sizes; with cut ones
#: among them, ``dev_u2os`` 0.764 -> 0.919, ``dev_rpe1`` 0.715 -> 0.938).
#: Not for dark classes: on the H&E patches it cost 0.575 -> 0.565 and 0.561 -> 0.530
#: (docs/performance.md, sessions 75-76)
ALIKE_OVER_ADMITTED = True
#: the fewest alike unlabelled objects (``alike``) that say how far the examples stand out
#: above them (``alike_shift``)
ALIKE_FOR_SHIFT = 5
#: the examples were picked for standing out where their contrasts rank above the alike
#: objects' this often (``alike_above``, a ROC AUC: 0.5 for examples drawn at random among
#: them); the contrast floor then follows the alike objects down (``alike_shift``)
PICKED_ABOVE = 0.8
#: candidates whose estimated probability of being an object is below this are dropped
MIN_PROBABILITY = 0.5
#: ... and only where the model is sure of some of what it would drop: at least
#: ``MIN_SURE_SHARE`` of the example images' unlabelled objects (groups without an example)
#: lie below ``SURE_PROBABILITY`` (``sure_share``). Where what the examples leave unlabelled
#: is something else (the H&E patches' stroma, specks, pieces), the model puts much of it far
#: below; where it is more objects of the examples' kind, a separation that passed the gates
#: by chance puts them near the cut, at 0.2-0.5: images of one kind of object, ten examples
#: drawn at random, 12 switch-ons in 120 draws each dropping 25-75 % of the objects, and
#: under 0.1 lay 0-16 % of the unlabelled objects; on the 23 development H&E draws where the
#: model acts, 8-70 % (docs/performance.md, session 89)
SURE_PROBABILITY = 0.1
MIN_SURE_SHARE = 0.1
#: an image whose candidates the model drops far more often than it drops the example
#: images' own (``dropped_share``) is unlike them, and ``detect`` says so
#: (:func:`unlike_examples`): the one-sided binomial probability of dropping that many or
#: more, were the image's candidates drawn like theirs, is below this. The candidates are not
#: independent (alternatives of one object), hence a strict level
UNLIKE_LEVEL = 1e-3
#: ridge penalty on the standardised features' weights
RIDGE = 1.0
#: folds for the out-of-fold estimate of ``c``
FOLDS = 5
#: the fewest objects with a labelled candidate, and with an unlabelled one, a model is fitted from
MIN_ROWS = 3
#: candidates overlapping by this share of the smaller one are alternatives of one object
#: (one group: they share a fold, and count once in the separation's standard error)
GROUP_OVERLAP = 0.2
FEATURES = ("log_contrast", "log_area", "log_area_sq", "edge", "stability", "solidity")


def features(instances: Instances, profile: dict | None) -> np.ndarray | None:
    """``(N, len(FEATURES))`` float64 of candidates the calibrated segmenter proposed, each
    against its class (``data["class_hint"]``) in ``profile``: log inside contrast over the
    examples' median, log-area less the examples' centre and its square, outline contrast
    over the examples', stability and solidity. ``None`` where the candidates do not carry
    what this needs (another segmenter, no profile)."""
    from sam_detect.profile import candidate_shapes

    classes = (profile or {}).get("classes") or {}
    data = instances.data
    if not classes or any(k not in data for k in ("class_hint", "contrast", "edge", "stability")):
        return None
    hints = list(data["class_hint"])
    if any(h not in classes for h in hints):
        return None
    n = len(instances)
    if n == 0:
        return np.zeros((0, len(FEATURES)))
    ref_contrast = np.array([max(float(classes[h]["contrast"]), 1.0) for h in hints])
    centre = np.array([float(classes[h]["log_area"][0]) for h in hints])
    ref_edge = np.array([float(classes[h].get("edge") or 1.0) for h in hints])
    log_c = np.log(np.clip(np.asarray(data["contrast"], np.float64), 1.0, None) / ref_contrast)
    log_a = np.log(np.maximum(instances.areas.astype(np.float64), 1.0)) - centre
    edge = np.asarray(data["edge"], np.float64) / np.maximum(ref_edge, 1e-6)
    solidity = candidate_shapes(instances)[1]
    return np.stack([log_c, log_a, log_a**2, edge, np.asarray(data["stability"], np.float64), solidity], axis=1)


def _logistic(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, sd, w)`` of a ridge logistic regression of ``y`` on standardised ``x``
    (``w[0]`` the intercept)."""
    from scipy.optimize import minimize

    mean, sd = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / sd

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        t = z @ w[1:] + w[0]
        p = 1.0 / (1.0 + np.exp(-t))
        grad = np.concatenate([[np.sum(p - y)], z.T @ (p - y) + 2 * RIDGE * w[1:]])
        return float(np.sum(np.logaddexp(0.0, t) - y * t) + RIDGE * np.sum(w[1:] ** 2)), grad

    w = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B").x
    return mean, sd, w


def _g(model: dict, x: np.ndarray) -> np.ndarray:
    z = (np.asarray(x, np.float64) - np.asarray(model["mean"])) / np.asarray(model["sd"])
    return 1.0 / (1.0 + np.exp(-(z @ np.asarray(model["w"][1:]) + model["w"][0])))


def _position_features(positions: np.ndarray) -> np.ndarray:
    """Each candidate's centre ``(x, y)`` (shares of the image's width and height), with its
    squares and product: a quadratic surface can tell a row, a corner or a band apart."""
    px, py = positions[:, 0], positions[:, 1]
    return np.stack([px, py, px * px, py * py, px * py], axis=1)


def fit(x: np.ndarray, labelled: np.ndarray, groups: np.ndarray | None = None,
        positions: np.ndarray | None = None, admitted: tuple[float, float] | None = None) -> dict | None:
    """The model from candidates' :func:`features` ``x`` ``(N, F)``, which of them are
    labelled examples ``(N,)`` bool, and ``groups`` ``(N,)`` int: which candidates are
    alternatives of one object (they overlap; default: each its own). ``None`` with fewer
    than ``MIN_ROWS`` groups holding a labelled candidate, or holding an unlabelled one.

    ``{"version", "features", "mean", "sd", "w", "c", "separation", "separation_z",
    "labelled", "unlabelled", "dropped_share", "sure_share"}`` (``sure_share``: the share of
    the unlabelled objects, each by its likeliest outline, under ``SURE_PROBABILITY``): ``c`` is the mean out-of-fold ``g`` over the labelled rows
    (``FOLDS`` folds of whole groups, fixed seed; in-sample it would be biased high by the
    fit itself). The calibrated segmenter proposes each object several times, thresholded
    and split otherwise; folds that split an object's alternatives would test the model on
    near-copies of its training rows, and the separation would look better than it is. The
    separation's standard error counts groups, not rows, for the same reason;
    ``labelled`` / ``unlabelled`` count groups too. ``alike``: the unlabelled groups like the
    examples in size, stability and solidity (not contrast); with ``ALIKE_FOR_SHIFT`` of them,
    ``alike_shift`` (the median of their log contrasts less the examples', each group's
    brightest outline) and ``alike_above`` (how often an example's contrast ranks above one
    of theirs: about 0.5 where the examples were drawn at random, near 1 where they were
    picked for standing out; :func:`floor_factor`). With ``positions`` ``(N, 2)`` (each
    candidate's centre as shares of its image's width and height), also
    ``"position_separation"``: the same out-of-fold ROC AUC for a model of the candidates'
    positions alone, which tells whether the examples lie apart from the rest. ``admitted``
    ``(lo, hi)``: log-areas (less the class's centre, as ``log_area``) the profile admits,
    which widen the sizes counted ``alike`` (:func:`admitted_sizes`)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(labelled, bool)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} rows but {len(y)} labelled flags")
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    if len(groups) != len(y):
        raise ValueError(f"{len(y)} rows but {len(groups)} groups")
    _, g_idx = np.unique(groups, return_inverse=True)
    g_idx = g_idx.ravel()
    has_labelled = np.bincount(g_idx, weights=y.astype(np.float64)) > 0
    has_unlabelled = np.bincount(g_idx, weights=(~y).astype(np.float64)) > 0
    n1, n0 = int(has_labelled.sum()), int(has_unlabelled.sum())
    if n1 < MIN_ROWS or n0 < MIN_ROWS or not np.isfinite(x).all():
        return None
    yf = y.astype(np.float64)
    mean, sd, w = _logistic(x, yf)
    model = {"version": VERSION, "features": list(FEATURES), "mean": mean.tolist(), "sd": sd.tolist(), "w": w.tolist()}
    rng = np.random.default_rng(0)
    group_fold = np.empty(len(has_labelled), np.int64)
    for kind in (False, True):  # each fold holds groups with and without examples
        idx = np.flatnonzero(has_labelled == kind)
        group_fold[idx] = rng.permutation(len(idx)) % FOLDS
    fold = group_fold[g_idx]

    def out_of_fold(v: np.ndarray) -> np.ndarray:
        out = np.zeros(len(y))
        for k in range(FOLDS):
            held = fold == k
            if not held.any():
                continue
            m, s, wk = _logistic(v[~held], yf[~held])
            out[held] = _g({"mean": m, "sd": s, "w": wk}, v[held])
        return out

    def auc(out: np.ndarray) -> float:
        return _auc(out[y], out[~y])

    out = out_of_fold(x)
    # the unlabelled objects that match the examples in what does not say how visible an
    # object is (size, stability, solidity; not contrast): where they are many, the examples
    # are a small share of their images' objects, whatever g says (g reads contrast too)
    lab_rows = x[y]
    log_a, stab, solid = x[:, 1], x[:, 4], x[:, 5]
    lo, hi = lab_rows[:, 1].min() - AREA_ROOM, lab_rows[:, 1].max() + AREA_ROOM
    if admitted is not None:
        lo, hi = min(lo, float(admitted[0])), max(hi, float(admitted[1]))
    alike = ((log_a >= lo) & (log_a <= hi)
             & (stab >= lab_rows[:, 4].min()) & (solid >= lab_rows[:, 5].min()) & ~y)
    n_alike = int((np.bincount(g_idx, weights=alike.astype(np.float64), minlength=len(has_labelled)) > 0)[~has_labelled].sum())
    separation = auc(out)
    z = (separation - 0.5) / np.sqrt((n1 + n0 + 1) / (12.0 * n1 * n0))
    model.update(c=round(float(out[y].mean()), 4), separation=round(float(separation), 4), separation_z=round(float(z), 2),
                 labelled=n1, unlabelled=n0, alike=n_alike)
    p = probability(model, x)
    # the share of the example images' own candidates the model drops (unlike_examples)
    model["dropped_share"] = round(float((p < MIN_PROBABILITY).mean()), 4)
    # the share of the unlabelled objects the model is sure are none (each group's likeliest outline)
    likeliest = np.full(len(has_labelled), -1.0)
    np.maximum.at(likeliest, g_idx, p)
    none = likeliest[~has_labelled]  # objects without an example (all may hold one: then there is no share)
    model["sure_share"] = round(float((none < SURE_PROBABILITY).mean()), 4) if len(none) else None
    if n_alike >= ALIKE_FOR_SHIFT:
        # how much fainter the alike objects stand out than the examples (log contrast,
        # medians of each group's brightest outline): examples picked for being visible
        # stand out more than the objects like them that were left unlabelled
        def brightest(rows: np.ndarray) -> np.ndarray:  # each group's brightest outline among ``rows``
            best = np.full(len(has_labelled), -np.inf)
            np.maximum.at(best, g_idx[rows], x[rows, 0])
            return best

        a_best = brightest(alike)
        a_best[has_labelled] = -np.inf  # an example's other outlines are the example
        e_best = brightest(y)
        a_best, e_best = a_best[np.isfinite(a_best)], e_best[np.isfinite(e_best)]
        model["alike_shift"] = round(float(np.median(a_best) - np.median(e_best)), 4)
        model["alike_above"] = round(_auc(e_best, a_best), 4)
    if positions is not None:
        pos = np.asarray(positions, np.float64)
        if pos.shape != (len(y), 2):
            raise ValueError(f"{len(y)} rows but positions of shape {pos.shape}")
        model["position_separation"] = round(auc(out_of_fold(_position_features(pos))), 4)
    return model


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC AUC: how often a value of ``pos`` ranks above one of ``neg`` (ties count half)."""
    ranks = _average_ranks(np.concatenate([pos, neg]))
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _average_ranks(v: np.ndarray) -> np.ndarray:
    """``scipy.stats.rankdata(v)``: 1-based ranks, ties given their mean rank. Here because
    importing ``scipy.stats`` costs an ``add`` 0.4 s for this one function."""
    v = np.asarray(v, np.float64)
    if np.isnan(v).any():  # as rankdata propagates them
        return np.full(len(v), np.nan)
    order = np.argsort(v, kind="mergesort")
    sorted_v = v[order]
    first = np.r_[True, sorted_v[1:] != sorted_v[:-1]]
    starts = np.flatnonzero(first)
    counts = np.diff(np.r_[starts, len(v)])
    ranks = np.empty(len(v), np.float64)
    ranks[order] = np.repeat(starts + (counts + 1) / 2.0, counts)
    return ranks


def floor_factor(model: dict | None) -> float:
    """What the examples' contrast floor is multiplied by at ``detect`` (at most 1): where the
    examples stand out above the unlabelled objects like them (``alike_above`` at least
    ``PICKED_ABOVE``), ``exp`` of how much less those stand out (``alike_shift``), else 1.
    Examples picked for being the most visible would otherwise set a floor that drops the
    fainter objects of their kind."""
    model = model or {}
    if float(model.get("alike_above", 0.0)) < PICKED_ABOVE:
        return 1.0
    return float(np.exp(min(float(model.get("alike_shift", 0.0)), 0.0)))


def probability(model: dict, x: np.ndarray) -> np.ndarray:
    """``(N,)`` in [0, 1]: each candidate's probability of being an object, ``g(x) / c``."""
    return np.clip(_g(model, x) / max(float(model["c"]), 1e-6), 0.0, 1.0)


def unlike_examples(model: dict, dropped: int, total: int) -> bool:
    """Whether an image where ``model`` drops ``dropped`` of its ``total`` candidates is
    unlike the example images it learnt from: that many or more would be dropped with
    probability under ``UNLIKE_LEVEL`` were its candidates drawn like theirs (binomial, the
    example images' ``dropped_share``). A model fitted before the share was kept: never.
    Such an image may hold objects the examples do not show (``detect`` says so; session 57
    of docs/performance.md measured skipping the filter there: not better on the
    development patches)."""
    share = model.get("dropped_share")
    if share is None or total <= 0 or dropped <= 0:
        return False
    return _binomial_tail(dropped, total, float(share)) < UNLIKE_LEVEL


def _binomial_tail(k: int, n: int, p: float) -> float:
    """``P(X >= k)`` for ``X ~ Binomial(n, p)``: the terms summed in logs (``math.lgamma``),
    as ``scipy.stats.binom.sf(k - 1, n, p)`` gives it (to ~1e-12), without importing
    ``scipy.stats`` (0.6-1.1 s) on ``detect``'s path."""
    p = min(max(p, 1e-6), 1.0 - 1e-12)  # a share of 0 is read as 1e-6, as before
    i = np.arange(k, n + 1, dtype=np.float64)
    lg = np.array([math.lgamma(j + 1.0) for j in range(n + 1)])
    log_pmf = lg[n] - lg[k:] - lg[n - k::-1] + i * math.log(p) + (n - i) * math.log1p(-p)
    return float(np.exp(log_pmf).sum())


def at_random(model: dict) -> bool:
    """Whether the rows say where the candidates lie and the examples do not lie apart from
    the rest (``MAX_POSITION_SEPARATION``): no sign that they were picked by position."""
    pos = model.get("position_separation")
    return pos is not None and float(pos) <= MAX_POSITION_SEPARATION


def applies(model: dict | None) -> bool:
    """Whether ``detect`` uses ``model``: fitted, ``c >= MIN_LABEL_FREQUENCY`` and the
    examples at least that share of the objects alike to them (``AREA_ROOM``), an
    out-of-fold separation of at least ``MIN_SEPARATION`` and ``MIN_SEPARATION_Z``
    (``MIN_SEPARATION_Z_AT_RANDOM`` where the examples lie among the rest: :func:`at_random`),
    at least ``MIN_LABELLED_OBJECTS`` examples proposed, and some of what the examples leave
    unlabelled sure to be no object (``MIN_SURE_SHARE``; a model fitted before that was
    counted is judged without it)."""
    if not model or model.get("version") != VERSION:
        return False
    alike = model.get("alike")  # None: a model fitted before it was counted
    labelled = int(model.get("labelled", 0))
    sure = model.get("sure_share")  # None: a model fitted before it was counted
    return (float(model.get("c", 0.0)) >= MIN_LABEL_FREQUENCY
            and (alike is None or labelled >= MIN_LABEL_FREQUENCY * (labelled + int(alike)))
            and _separated(model)
            and int(model.get("labelled", 0)) >= MIN_LABELLED_OBJECTS
            and (sure is None or float(sure) >= MIN_SURE_SHARE))


def _separated(model: dict) -> bool:
    """Whether ``g`` tells the examples from the rest out of fold: ``MIN_SEPARATION``, and
    ``MIN_SEPARATION_Z`` (``MIN_SEPARATION_Z_AT_RANDOM`` where they lie among the rest)."""
    z = MIN_SEPARATION_Z_AT_RANDOM if at_random(model) else MIN_SEPARATION_Z
    return float(model.get("separation", 0.0)) >= MIN_SEPARATION and float(model.get("separation_z", 0.0)) >= z


def image_key(rgb: np.ndarray) -> str:
    """A short content hash of an image (``(H, W, 3)`` uint8): which examples of a library
    were drawn on the same image, whatever its path (arrays have none)."""
    import hashlib

    a = np.ascontiguousarray(rgb)
    # the pixels hashed in place (a 4096 x 4096 image's 50 MB are not copied first), then
    # the shape: the same key as hashing the two joined, which the stored examples hold
    h = hashlib.blake2b(digest_size=8)
    h.update(memoryview(a).cast("B"))
    h.update(repr(a.shape).encode())
    return h.hexdigest()


def rows_for_examples(candidates: Instances, profile: dict | None, examples: Instances,
                      positive: Sequence[bool] | None = None, owners: int | None = None) -> list[list[list[float]]] | None:
    """Per new example of one image, the rows its payload carries (``"unlabelled"``): each
    candidate's :func:`features`, its group (candidates that overlap, by ``GROUP_OVERLAP`` of
    the smaller one, are alternatives of one object: one group, numbered within the image)
    and a last column 1 (it is one of ``examples``, a positive one (``positive``, default
    all): IoU >= ``MATCH_IOU``) or 0 (it matches no positive example); before those two,
    its centre as shares of the image's width and height. The first ``owners``
    of ``examples`` (default all) are the new ones that carry the rows, the rest the
    library's earlier examples of the same image, which mark their candidates but carry
    none: a candidate goes with the new example it is, else with the new example whose box
    centre is nearest. ``None`` where the candidates cannot be measured."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from sam_detect.eval.metrics import instances_iou
    from sam_detect.select import overlap_pairs

    x = features(candidates, profile)
    owners = len(examples) if owners is None else int(owners)
    if x is None or owners == 0:
        return None
    out: list[list[list[float]]] = [[] for _ in range(owners)]
    if len(x) == 0:
        return out
    iou = instances_iou(candidates, examples)
    best = iou.argmax(axis=1)
    matched = iou.max(axis=1) >= MATCH_IOU
    if positive is not None:
        matched &= np.asarray(positive, bool)[best]
    centres = lambda b: np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], axis=1)  # noqa: E731
    dist = np.linalg.norm(centres(candidates.boxes)[:, None] - centres(examples.boxes[:owners])[None], axis=2)
    owner = np.where((iou.max(axis=1) >= MATCH_IOU) & (best < owners), best, dist.argmin(axis=1))
    pairs = [(i, j) for i, j, frac in overlap_pairs(candidates) if frac >= GROUP_OVERLAP]
    n = len(candidates)
    ii, jj = (np.array(v, np.int64) for v in zip(*pairs, strict=True)) if pairs else (np.zeros(0, np.int64),) * 2
    _, group = connected_components(coo_matrix((np.ones(len(ii)), (ii, jj)), shape=(n, n)), directed=False)
    h, w = candidates.image_hw
    b = candidates.boxes.astype(np.float64)
    cx, cy = (b[:, 0] + b[:, 2]) / 2 / max(w, 1), (b[:, 1] + b[:, 3]) / 2 / max(h, 1)
    for i, row in enumerate(x):
        out[int(owner[i])].append([round(float(v), 4) for v in row] + [round(float(cx[i]), 4), round(float(cy[i]), 4),
                                                                      float(group[i]), 1.0 if matched[i] else 0.0])
    return out


def admitted_sizes(profile: dict | None) -> tuple[float, float] | None:
    """The log-areas the profile's classes admit (``area_range``), less each class's centre
    (``log_area``, as :func:`features` measures them): ``(lo, hi)`` over the classes, where
    every class is bright and ``ALIKE_OVER_ADMITTED``; else ``None``."""
    classes = (profile or {}).get("classes") or {}
    if not ALIKE_OVER_ADMITTED or not classes or any(e.get("polarity") != "bright" for e in classes.values()):
        return None
    spans = np.array([[np.log(max(float(e["area_range"][k]), 1.0)) - float(e["log_area"][0]) for k in (0, 1)]
                      for e in classes.values()])
    return float(spans[:, 0].min()), float(spans[:, 1].max())


def model_from_payloads(payloads: Sequence[dict], key: str = "unlabelled",
                        admitted: tuple[float, float] | None = None) -> dict | None:
    """The model (:func:`fit`) from the example payloads' ``"unlabelled"`` rows: of each image
    (``"image_key"``) only its latest measurement (``"unlabelled_at"``), which matched every
    example the library then held of it. ``key="unlabelled_joint"``: the rows measured with
    the library's classes found as one (``profile.JOINT``), or its ``"unlabelled"`` rows where
    it then held one class. ``admitted``: as :func:`fit`'s (:func:`admitted_sizes`)."""
    latest: dict[str, int] = {}
    def rows_of(p: dict) -> list | None:
        return p.get(key, p.get("unlabelled"))

    for p in payloads:
        if rows_of(p) is not None and p.get("image_key"):
            latest[p["image_key"]] = max(latest.get(p["image_key"], -1), int(p.get("unlabelled_at") or 0))
    rows, groups = [], []
    for p in payloads:
        at = int(p.get("unlabelled_at") or 0)
        if p.get("image_key") and at != latest.get(p["image_key"], 0):
            continue
        for r in rows_of(p) or []:
            if len(r) in (len(FEATURES) + 2, len(FEATURES) + 4):
                # rows measured before positions were: the features, a position of NaN
                rows.append(list(r[:len(FEATURES)]) + (list(r[len(FEATURES):-2]) or [np.nan, np.nan]) + list(r[-2:]))
                groups.append((p.get("image_key"), at, int(r[-2])))
    if not rows:
        return None
    # one order whatever order the store yields the examples in (the folds follow it)
    order = sorted(range(len(rows)), key=lambda i: (str(groups[i][0]), groups[i][1:], [-1.0 if v != v else v for v in rows[i]]))
    a = np.asarray([rows[i] for i in order], np.float64)
    ids = {g: k for k, g in enumerate(dict.fromkeys(groups[i] for i in order))}
    n = len(FEATURES)
    positions = a[:, n:n + 2] if np.isfinite(a[:, n:n + 2]).all() else None
    return fit(a[:, :n], a[:, -1] > 0.5, np.array([ids[groups[i]] for i in order]), positions, admitted)


#: An example image's annotation that leaves out the objects the image border cuts (the Cell
#: Tracking Challenge's HeLa label images do; a counting protocol that counts whole objects
#: only): it holds under BORDER_LEFT_OUT of the cut objects its other objects' density makes
#: expected there, where at least BORDER_EXPECTED_MIN are expected, while the objects just
#: inside the border (at most one diameter from it) are there, at least BORDER_NEAR of those
#: expected (an annotation of the middle of an image alone leaves out both). On the label
#: images of the development sets with 8 or more expected, the cut objects held 0.22 of
#: those expected and more (set medians 0.75-1.19), the same images with them taken out 0;
#: the objects near the border 0.37 and more, the middle of an image alone 0
#: (docs/performance.md, session 74).
BORDER_LEFT_OUT, BORDER_EXPECTED_MIN, BORDER_NEAR = 0.15, 8.0, 0.3
#: an annotated object within this many pixels of the border counts as one the border cuts:
#: outlines drawn by hand stop a pixel or two short of the image's edge (the development sets
#: drawn so held 0.17-0.33 of the cut objects expected counting only those touching it, the
#: lowest 0.56 counting these too; docs/performance.md, session 74)
BORDER_GAP = 2


def _border_gap(instances: Instances) -> np.ndarray:
    """``(N,)``: each object's box's distance to the nearest image edge in pixels (0: it
    touches the border)."""
    h, w = instances.image_hw
    b = instances.boxes.astype(np.float64).reshape(-1, 4)
    return np.minimum.reduce([b[:, 0], b[:, 1], w - b[:, 2], h - b[:, 3]])


def cut_in_annotation(instances: Instances) -> np.ndarray:
    """``(N,)`` bool: the annotated objects the image border cuts, those drawn to within
    ``BORDER_GAP`` px of it included (hand-drawn outlines stop short of the edge)."""
    return _border_gap(instances) <= BORDER_GAP


def border_record(instances: Instances) -> dict | None:
    """What a whole image's annotation says about its border: ``{"objects", "held",
    "expected", "near"}``: its objects, those the border cuts (within ``BORDER_GAP`` px of
    it), how many its other objects' density, the image's perimeter and their median
    diameter make expected there, and the uncut objects within one diameter of the border
    (as many expected there: a band as wide); ``None`` under two uncut objects. Examples
    carry it in their payloads (``"border"``) and :func:`border_convention` reads the
    library's from them."""
    if len(instances) < 2:
        return None
    h, w = instances.image_hw
    gap = _border_gap(instances)
    cut = gap <= BORDER_GAP  # cut_in_annotation
    inner = ~cut
    if inner.sum() < 2:
        return None
    d = 2.0 * float(np.sqrt(np.median(instances.areas[inner]) / np.pi))
    room = (h - d) * (w - d)
    if room <= 0:
        return None
    expected = float(inner.sum()) / room * 2.0 * (h + w) * d  # a band one diameter wide along the border
    return {"objects": len(instances), "held": int(cut.sum()), "expected": round(expected, 2),
            "near": int((inner & (gap <= d)).sum())}


def leaves_border_out(record: dict | None) -> bool:
    """Whether a :func:`border_record` (one image's, or several pooled) is that of an
    annotation leaving out the objects the border cuts (``BORDER_LEFT_OUT``,
    ``BORDER_EXPECTED_MIN``, ``BORDER_NEAR``)."""
    if not record:
        return False
    expected = float(record["expected"])
    return (expected >= BORDER_EXPECTED_MIN and int(record["held"]) < BORDER_LEFT_OUT * expected
            and int(record["near"]) >= BORDER_NEAR * expected)


def border_convention(payloads: Sequence[dict]) -> dict | None:
    """The :func:`border_record` of the library's example images pooled, with ``"images"``
    (how many), where they leave out the objects the border cuts
    (:func:`leaves_border_out`): ``detect`` leaves them out too unless told otherwise.
    ``None`` otherwise. Of each image (``"image_key"``) the record of its add with the most
    objects counts, the latest of equals (``"added_ns"``): a few objects added later to an
    image whose whole label image was added are not its annotation, and a whole label image
    added again (one that now holds the border's objects) replaces the first."""
    best: dict[str, tuple[int, int, dict]] = {}
    for p in payloads:
        rec, key = p.get("border"), p.get("image_key")
        if isinstance(rec, dict) and key:
            rank = (int(rec.get("objects", 0)), int(p.get("added_ns") or 0))
            if key not in best or rank > best[key][:2]:
                best[key] = (*rank, rec)
    if not best:
        return None
    pooled = {f: sum(rec[f] for *_, rec in best.values()) for f in ("held", "expected", "near")}
    return {**pooled, "images": len(best)} if leaves_border_out(pooled) else None


def describe(model: dict | None, joint: dict | None = None, border: dict | None = None) -> list[str]:
    """Lines for ``library show`` and ``detect``'s stderr; ``joint``: the model of a library's
    classes found as one (``profile.JOINT``), which is the one ``detect`` uses where it exists;
    ``border``: the library's :func:`border_convention`."""
    if border:
        n = int(border["held"])
        images = int(border.get("images", 1))
        whose = "the example images' annotations hold" if images > 1 else "the example image's annotation holds"
        return [f"{whose} {n} object{'' if n == 1 else 's'} "
                f"cut by the image border, where ~{float(border['expected']):.0f} are expected: it leaves them out, "
                "and detect leaves them out too (--keep-border keeps them)"] + describe(model, joint)
    if joint:
        return [f"each class: {line}" for line in describe(model)] + [f"every class as one: {line}" for line in describe(joint)]
    if not model:
        return []
    if applies(model):
        state = "used: candidates that look like the unlabelled ones are dropped"
    elif float(model["c"]) < MIN_LABEL_FREQUENCY:
        state = f"not used: the examples are under {MIN_LABEL_FREQUENCY:.0%} of their images' objects of their kind"
    elif model.get("alike") is not None and int(model["labelled"]) < MIN_LABEL_FREQUENCY * (
            int(model["labelled"]) + int(model["alike"])):
        state = (f"not used: {int(model['alike'])} other objects look like the examples in size, stability and "
                 "solidity (examples picked for standing out?)")
    elif int(model.get("labelled", 0)) < MIN_LABELLED_OBJECTS:
        state = f"not used: fewer than {MIN_LABELLED_OBJECTS} examples proposed"
    elif model.get("sure_share") is not None and float(model["sure_share"]) < MIN_SURE_SHARE and _separated(model):
        state = (f"not used: it is sure of little of what they leave unlabelled ({float(model['sure_share']):.0%} under "
                 f"{SURE_PROBABILITY:g}): more objects of their kind, most likely")
    elif model.get("position_separation") is not None and not at_random(model):
        state = ("not used: the examples lie apart from the rest of their images' objects (picked by position?), "
                 "and the rest look too much like them")
    else:
        state = "not used: the examples and the rest look alike, or are too few to tell apart"
    lines = [f"the example images' candidates: {model['labelled']} examples proposed, {model['unlabelled']} other objects or pieces; "
             # c: the share of the objects of their kind that the examples are, estimated from how
             # far they stand apart from the rest (Elkan and Noto's label frequency), not a count:
             # ten picked as the brightest of 80 read ~60 % ("of their images' objects" alone read
             # as 10 of 80 miscounted)
             f"the examples are ~{float(model['c']):.0%} of their images' objects of their kind (by how far they "
             f"stand apart from the rest), separation "
             f"{float(model['separation']):.2f} ({state})"]
    factor = floor_factor(model)
    if factor < 1.0:
        lines.append(f"the examples stand out more than {float(model['alike_above']):.0%} of the objects like them "
                     f"(picked for standing out?): the contrast floor is lowered {1 / factor:.2g}x, to where those stand out")
    return lines


__all__ = ["UNLIKE_LEVEL", "unlike_examples", "FEATURES", "GROUP_OVERLAP", "MATCH_IOU", "MIN_LABEL_FREQUENCY", "MIN_LABELLED_OBJECTS", "MIN_SEPARATION", "MIN_SEPARATION_Z", "MIN_SEPARATION_Z_AT_RANDOM", "MAX_POSITION_SEPARATION", "MIN_PROBABILITY", "MIN_SURE_SHARE", "SURE_PROBABILITY", "PICKED_ABOVE", "ALIKE_FOR_SHIFT", "VERSION", "BORDER_EXPECTED_MIN", "BORDER_GAP", "BORDER_LEFT_OUT", "BORDER_NEAR", "applies", "border_convention", "border_record", "cut_in_annotation", "leaves_border_out", "at_random", "describe", "floor_factor",
           "admitted_sizes", "features", "fit", "image_key", "model_from_payloads", "probability", "rows_for_examples"]
