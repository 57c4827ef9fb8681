"""What a library's examples say about deciding: view weights, class thresholds, typicality.

Computed from the stored example vectors alone (no images, no training loop), stored in
the library's metadata (``extra["decision"]``), recomputed whenever examples are added or
deleted, and applied at query time, so stored vectors are never rewritten:

- **View weights** (embedders with several views, such as ``views``): among a small grid
  of weightings, the one whose leave-one-out k-NN accuracy *among the examples* is best;
  ties go to the weighting closest to equal weights (``TIES = "mean"``: the mean of the tied
  weightings, measured in docs/performance.md and not the default). With one class (or too
  few examples to compare) the weights stay equal.
- **Class thresholds**: for each class, the similarity of every example to its nearest
  other example of the class (leave-one-out). A candidate is labelled only when its best
  similarity to the class reaches ``low - max(SPREAD * (median - low), margin)`` where
  ``low`` is the lowest of those similarities and ``margin = MARGIN * (1 + 2 / (n - 1))``
  for ``n`` examples (wider for fewer), never below ``FLOOR`` and never above
  ``DEFAULT_THRESHOLD``: examples drawn from one image are more alike than the objects of
  the next image are to them (on the phase-contrast bacteria, ``views`` similarities fall
  from 0.89-0.96 among the examples to 0.57-0.84 for the same kind of cell one frame
  later), so the examples may widen a class's acceptance, never narrow it. A threshold given by the user
  (``--threshold``) overrides them all.
- **Twins**: an object drawn twice (on two images of one size at one place, a time-lapse's
  next frame; or outlined twice on one image) is left out of the other's leave-one-out, as
  each example is left out of its own.
- **Counts**: the examples of each label (negatives included), by which the vote divides
  each label's part (``sam_detect.classify.vote``).
- **Typicality**: the same leave-one-out similarities make a smooth distribution; a
  candidate as similar as the median example is fully typical (1), one below the least
  similar example much less. Confidence is the vote's share times typicality, so it means
  something with one class too.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sam_detect.instances import NEGATIVE

VERSION = 1
#: the threshold of a class whose examples cannot calibrate one (a single example), and the
#: one used everywhere without calibration
DEFAULT_THRESHOLD = 0.5
#: a class threshold is never below this similarity
FLOOR = 0.2
#: how far below the least typical example a class threshold reaches, in (median - low) units
SPREAD = 2.0
#: ... and at least ``MARGIN * (1 + 2 / (n - 1))`` for ``n`` examples: a handful of examples
#: does not show the class's whole range, and the fewer they are the less they show
MARGIN = 0.15
#: weight levels each view may take (before normalising to sum 1)
LEVELS = (0.0, 1.0, 2.0)
#: how ties among the best weightings are broken (``choose_weights``)
TIES = "equal"
#: neighbours in the leave-one-out vote
K = 5
#: similarities kept per class for typicality
MAX_SIMS = 64
#: examples used to fit (a larger library is subsampled, every class kept, reproducibly)
MAX_FIT = 600
#: two examples whose masks (on images of one size) overlap at least this much are one object
#: seen twice (:func:`twin_pairs`)
TWIN_IOU = 0.5


def _loo_accuracy(sim: np.ndarray, labels: np.ndarray, k: int = K, twins: np.ndarray | None = None) -> float:
    """Leave-one-out accuracy of the similarity-weighted k-NN vote among the examples (each
    example voted on by its ``k`` nearest others, its ``twins`` left out with it)."""
    n = len(labels)
    s = np.array(sim, np.float64, copy=True)
    np.fill_diagonal(s, -np.inf)
    if twins is not None:
        s[twins] = -np.inf
    classes, codes = np.unique(labels, return_inverse=True)
    k = min(k, n - 1)
    nearest = np.argpartition(-s, k - 1, axis=1)[:, :k]
    weights = np.clip(np.take_along_axis(s, nearest, axis=1), 0.0, None)
    totals = np.zeros((n, len(classes)))
    np.add.at(totals, (np.repeat(np.arange(n), k), codes[nearest].ravel()), weights.ravel())
    return float((totals.argmax(axis=1) == codes).mean())


def choose_weights(
    per_view: np.ndarray, labels: Sequence[str], names: Sequence[str], ties: str | None = None,
    twins: np.ndarray | None = None,
) -> tuple[dict[str, float], float | None]:
    """``(weights, loo_accuracy)``: the view weighting that tells the example classes apart best.

    ``per_view`` ``(V, N, N)``: each view's cosine similarity among the ``N`` examples.
    ``twins``: ``(N, N)`` bool, pairs that are one object seen twice (:func:`twin_pairs`),
    left out of each other's vote as each example is left out of its own.
    ``ties`` (default ``TIES``): among the weightings with the best leave-one-out accuracy,
    ``"equal"`` takes the one closest to equal weights, ``"mean"`` their mean.
    Equal weights (and ``None``) when fewer than two classes have two examples each.
    """
    ties = TIES if ties is None else ties
    if ties not in ("equal", "mean"):
        raise ValueError(f"ties must be 'equal' or 'mean', got {ties!r}")
    labels = np.asarray([str(x) for x in labels], dtype=object)
    v = len(names)
    equal = {name: 1.0 / v for name in names}
    counts = {c: int((labels == c).sum()) for c in set(labels)}
    if sum(1 for c in counts.values() if c >= 2) < 2 or v == 1:
        return equal, None
    scored = []
    for combo in itertools.product(LEVELS, repeat=v):
        if sum(combo) == 0:
            continue
        w = np.array(combo, np.float64) / sum(combo)
        scored.append((round(_loo_accuracy(np.tensordot(w, per_view, axes=1), labels, twins=twins), 9), w))
    best_acc = max(acc for acc, _ in scored)
    tied = [w for acc, w in scored if acc == best_acc]
    if ties == "mean":
        w = np.mean(tied, axis=0)
    else:
        # ties go to the weighting closest to equal: examples drawn from one image separate
        # on views that do not carry over to the next (a margin tie-break that preferred
        # sharper weightings picked colour alone on the micronuclei: 0.74 vs 0.82)
        w = min(tied, key=lambda x: float(np.abs(x - 1.0 / v).sum()))
    return {name: float(x) for name, x in zip(names, w, strict=True)}, float(best_acc)


def class_statistics(sim: np.ndarray, labels: Sequence[str], twins: np.ndarray | None = None) -> dict[str, dict[str, Any]]:
    """Per class: leave-one-out nearest same-class similarities, threshold and spread.
    ``twins`` (``(N, N)`` bool, :func:`twin_pairs`): an example's twin is left out with it,
    and an example whose only others are its twins gives no similarity."""
    labels = np.asarray([str(x) for x in labels], dtype=object)
    s = sim.copy()
    np.fill_diagonal(s, -np.inf)
    if twins is not None:
        s[twins] = -np.inf
    out: dict[str, dict[str, Any]] = {}
    for c in sorted(set(labels)):
        idx = np.flatnonzero(labels == c)
        nearest = s[np.ix_(idx, idx)].max(axis=1) if len(idx) >= 2 else np.zeros(0)
        nearest = np.sort(nearest[np.isfinite(nearest)])
        if len(nearest) < 2:
            out[c] = {"n": int(len(idx)), "threshold": None, "sims": []}
            continue
        low, med = float(nearest[0]), float(np.median(nearest))
        margin = MARGIN * (1 + 2 / (len(nearest) - 1))
        threshold = max(FLOOR, min(DEFAULT_THRESHOLD, low - max(SPREAD * (med - low), margin)))
        keep = nearest if len(nearest) <= MAX_SIMS else np.quantile(nearest, np.linspace(0, 1, MAX_SIMS))
        out[c] = {
            "n": int(len(idx)),
            "threshold": round(float(threshold), 4),
            "median": round(med, 4),
            "sims": [round(float(x), 4) for x in keep],
        }
    return out


def twin_pairs(payloads: Sequence[Mapping[str, Any]]) -> np.ndarray | None:
    """``(N, N)`` bool: pairs of examples that are one object seen twice -- their masks
    (``mask_rle``, on images of one size) overlap at IoU >= ``TWIN_IOU``: on two images (a
    time-lapse's next frame, the field taken again) or on one (the object outlined twice,
    apart enough to be kept as two examples); ``None`` where there is none. Such a twin is
    nearly the example itself: left in the
    leave-one-out, it made every example's nearest other one its twin, so thresholds and
    typicality were read off near-copies (ten HeLa nuclei added on frames 0 and 1: the mean
    confidence of the objects found on frames 2-6 fell to 0.30, where ten others give 0.59)."""
    keyed = [i for i, p in enumerate(payloads) if isinstance(p, Mapping) and isinstance(p.get("mask_rle"), Mapping)]
    if len(keyed) < 2:
        return None
    from sam_detect.masks import rle_ious

    out = np.zeros((len(payloads), len(payloads)), bool)
    by_size: dict[tuple[int, ...], list[int]] = {}
    for i in keyed:
        by_size.setdefault(tuple(int(v) for v in payloads[i]["mask_rle"]["size"]), []).append(i)
    for group in by_size.values():
        if len(group) < 2:
            continue
        rles = [payloads[i]["mask_rle"] for i in group]
        hit = rle_ious(rles, rles) >= TWIN_IOU
        np.fill_diagonal(hit, False)
        g = np.asarray(group)
        out[np.ix_(g, g)] |= hit
    return out if out.any() else None


def fit_decision(vectors: np.ndarray, labels: Sequence[str], views: Sequence[tuple[str, int]] | None = None,
                 twins: np.ndarray | None = None) -> dict[str, Any]:
    """The library's decision settings from its example vectors ``(N, D)`` and labels;
    ``twins``: pairs that are one object seen twice (:func:`twin_pairs`), left out of each
    other's leave-one-out."""
    vectors = np.asarray(vectors, np.float32)
    labels = [str(x) for x in labels]
    if len(labels) != len(vectors):
        raise ValueError(f"{len(vectors)} vectors but {len(labels)} labels")
    out: dict[str, Any] = {"version": VERSION, "n": len(labels), "counts": label_counts(labels)}
    if twins is not None:
        out["twins"] = int(np.triu(twins, 1).sum())
    if len(labels) > MAX_FIT:
        rng = np.random.default_rng(0)
        take = np.sort(rng.choice(len(labels), size=MAX_FIT, replace=False))
        vectors, labels = vectors[take], [labels[i] for i in take]
        twins = None if twins is None else twins[np.ix_(take, take)]
    positive = [i for i, lab in enumerate(labels) if lab != NEGATIVE]
    if views:
        from sam_detect.embed.views import view_similarities

        per_view = view_similarities(vectors, vectors, views)
        weights, acc = choose_weights(per_view, labels, [name for name, _ in views], twins=twins)
        w = np.array([weights[name] for name, _ in views])
        sim = np.tensordot(w, per_view, axes=1)
        out["weights"] = {k: round(v, 4) for k, v in weights.items()}
        out["loo_accuracy"] = None if acc is None else round(acc, 4)
    else:
        sim = vectors @ vectors.T
    pos = np.asarray(positive, np.int64)
    out["classes"] = class_statistics(sim[np.ix_(pos, pos)], [labels[i] for i in pos],
                                      None if twins is None else twins[np.ix_(pos, pos)]) if len(pos) else {}
    return out


def label_counts(labels: Sequence[str]) -> dict[str, int]:
    """``{label: examples}``, negatives included: what the vote divides each label's part by
    (``sam_detect.classify.vote``'s ``counts``)."""
    return dict(sorted(Counter(map(str, labels)).items()))


def counts(decision: Mapping[str, Any] | None) -> dict[str, int] | None:
    """The examples per label a decision was made from (``None`` for a decision made before
    they were recorded: the vote then counts every label as having ``top_k`` examples)."""
    c = (decision or {}).get("counts")
    return {str(k): int(v) for k, v in c.items()} if c else None


def thresholds(decision: Mapping[str, Any] | None, default: float) -> dict[str, float]:
    """``{label: threshold}`` from a decision (classes without one use ``default``)."""
    out: dict[str, float] = {}
    for label, stats in ((decision or {}).get("classes") or {}).items():
        t = stats.get("threshold")
        out[label] = float(t) if t is not None else float(default)
    return out


def typicality(decision: Mapping[str, Any] | None, labels: Sequence[str], similarities: np.ndarray) -> np.ndarray:
    """``(N,)`` in (0, 1]: how typical each candidate's similarity is among its class's examples.

    ``min(1, 2 F(s))`` where ``F`` is the distribution of the class's leave-one-out
    similarities, each smoothed by a normal kernel (half their spread, at least
    ``MARGIN / 2``): 1 for a candidate at least as similar as the median example, falling
    towards 0 below the least similar one; 1 where the class has no statistics.
    """
    classes = (decision or {}).get("classes") or {}
    out = np.ones(len(labels), np.float64)
    for i, (lab, s) in enumerate(zip(labels, np.asarray(similarities, np.float64), strict=True)):
        sims = np.asarray((classes.get(lab) or {}).get("sims") or [], np.float64)
        if sims.size < 2:
            continue
        h = 0.5 * max(float(np.median(sims) - sims.min()), MARGIN)
        cdf = np.mean([0.5 * (1 + math.erf(x / math.sqrt(2))) for x in (s - sims) / h])
        out[i] = min(1.0, 2.0 * float(cdf))
    return out


def describe(decision: Mapping[str, Any] | None, show: Any = str) -> list[str]:
    """Lines for ``library show``: view weights and class thresholds (``show`` renders a label)."""
    if not decision:
        return []
    lines = []
    if decision.get("weights"):
        w = ", ".join(f"{k} {v:.2f}" for k, v in decision["weights"].items())
        acc = decision.get("loo_accuracy")
        why = (f"leave-one-out accuracy {acc:.2f}" if acc is not None
               else "equal: fewer than two classes with two examples each")
        lines.append(f"view weights: {w} ({why})")
    for label, stats in (decision.get("classes") or {}).items():
        t = stats.get("threshold")
        if t is None:
            what = "one example" if stats.get("n", 1) < 2 else f"{stats['n']} examples, all one object seen again"
            lines.append(f"{show(label)}: {what}, threshold {DEFAULT_THRESHOLD:.2f}")
        else:
            lines.append(
                f"{show(label)}: threshold {t:.3f} (nearest-example similarity of its {stats['n']} "
                f"examples: median {stats['median']:.3f}, lowest {stats['sims'][0]:.3f})"
            )
    if decision.get("twins"):
        lines.append(f"{decision['twins']} pair(s) of examples are one object seen twice (another frame, or outlined "
                     "again): left out of each other's leave-one-out")
    if decision.get("joint"):  # the classes found as one (profile.JOINT): what decides which candidates are objects
        lines.append("every class as one (which candidates are objects; the classes above type them, below their "
                     "thresholds too):")
        lines += [f"  {line}" for line in describe(decision["joint"], show)]
    return lines


__all__ = ["DEFAULT_THRESHOLD", "FLOOR", "SPREAD", "TIES", "VERSION", "choose_weights", "class_statistics", "describe",
           "counts", "fit_decision", "label_counts", "thresholds", "twin_pairs", "typicality"]
