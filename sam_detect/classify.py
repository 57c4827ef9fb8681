"""Vote: neighbours from the store -> a label and a confidence per candidate.

Each label votes with its own ``top_k`` nearest examples: its part of the vote is the mean
of their similarities (``max(similarity, 0)``), over ``min(top_k, examples of the label)``
(``counts``), a missing or below-threshold one counting 0. A label given 2 examples thus
competes with one given 16 on equal terms, where a plain k-NN vote over every example lets
the larger class outvote it (with 2 examples of one class against 8 of the other, a 5-NN
vote called almost every object the larger class on the development sets; see
docs/performance.md, "Session 13"). The label with the largest part wins and its
confidence is that part over the sum of all labels' parts. A candidate with no neighbour
at or above its label's threshold (``thresholds[label]``, else ``threshold``) is
:data:`UNKNOWN`. Negative examples (label :data:`NEGATIVE`) take part in the vote: a
candidate that looks most like a negative is suppressed (labelled :data:`NEGATIVE`, and
dropped by the pipeline).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sam_detect.instances import NEGATIVE, UNKNOWN
from sam_detect.store.base import Neighbour


@dataclass
class Vote:
    label: str
    confidence: float
    similarity: float  # best similarity to any example of the winning label


def vote(
    neighbours: Sequence[Neighbour],
    threshold: float | None = None,
    top_k: int | None = None,
    thresholds: Mapping[str, float] | None = None,
    prior: Mapping[str, float] | None = None,
    counts: Mapping[str, int] | None = None,
) -> Vote:
    """Each label's mean similarity over its ``top_k`` nearest examples among ``neighbours``
    (best first; pass enough of them: :func:`retrieval_k`).

    ``counts``: how many examples each label has in the library (a label not in it is
    taken to have at least ``top_k``); a label's part is the sum of its nearest
    ``min(top_k, count)`` similarities over that number.

    ``thresholds``: per-label thresholds (a library's calibrated ones); labels not in it use
    ``threshold`` (``None``: ``sam_detect.calibrate.DEFAULT_THRESHOLD``). A neighbour votes
    only when it reaches its own label's threshold. ``prior``: per-label factors on the
    totals when the vote chooses among the object classes (how well the candidate fits
    each class's examples: ``profile.size_priors``); a candidate that looks most like a
    negative stays negative, and the confidence stays the chosen label's share of the vote.
    """
    if threshold is None:
        from sam_detect.calibrate import DEFAULT_THRESHOLD

        threshold = DEFAULT_THRESHOLD
    hits = list(neighbours)
    per = thresholds or {}
    nearest = top_k or len(hits) or 1
    have = counts or {}

    def room(label: str) -> int:  # how many of the label's nearest examples vote
        return min(nearest, max(int(have.get(label, nearest)), 1))

    passing = [n for n in hits if n.score >= per.get(n.label, threshold)]
    if not passing:
        best = hits[0].score if hits else 0.0
        return Vote(UNKNOWN, 0.0, float(best))
    totals: dict[str, float] = {}
    used: dict[str, int] = {}
    best_sim: dict[str, float] = {}
    for n in hits:  # best first: each label's nearest min(k, count) examples
        m = used.get(n.label, 0)
        if m >= room(n.label):
            continue
        used[n.label] = m + 1
        if n.score < per.get(n.label, threshold):
            continue
        totals[n.label] = totals.get(n.label, 0.0) + max(float(n.score), 0.0)
        best_sim[n.label] = max(best_sim.get(n.label, -1.0), float(n.score))
    for lab in totals:
        totals[lab] /= room(lab)
    total = sum(totals.values())
    # Ties go to the label with the closest single example.
    label = max(totals, key=lambda k: (totals[k], best_sim[k]))
    if prior and label != NEGATIVE and len(totals) > 1:
        label = max((k for k in totals if k != NEGATIVE),
                    key=lambda k: (totals[k] * prior.get(k, 1.0), best_sim[k]))
    confidence = totals[label] / total if total > 0 else 0.0
    return Vote(label, float(confidence), best_sim[label])


def vote_batch(
    results: Sequence[Sequence[Neighbour]],
    threshold: float | None = None,
    top_k: int | None = None,
    thresholds: Mapping[str, float] | None = None,
    priors: Sequence[Mapping[str, float] | None] | None = None,
    counts: Mapping[str, int] | None = None,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Vote for every candidate: labels, confidences ``(M,)`` float32, similarities ``(M,)`` float32.
    ``priors``: one :func:`vote` ``prior`` per candidate (or ``None``)."""
    priors = priors if priors is not None else [None] * len(results)
    votes = [vote(r, threshold=threshold, top_k=top_k, thresholds=thresholds, prior=p, counts=counts)
             for r, p in zip(results, priors, strict=True)]
    return (
        [v.label for v in votes],
        np.array([v.confidence for v in votes], dtype=np.float32),
        np.array([v.similarity for v in votes], dtype=np.float32),
    )


#: the most neighbours a search returns for the vote (``retrieval_k``)
MAX_RETRIEVAL = 256


def retrieval_k(top_k: int, counts: Mapping[str, int] | None) -> int:
    """How many neighbours to search for so that each label's ``top_k`` nearest examples
    are among them as a rule: ``top_k`` per label of the library (``counts``), at most the
    library's size and ``MAX_RETRIEVAL`` (and never fewer than ``top_k``). A label whose
    nearest examples fall beyond them is far from the candidate; they count 0."""
    if not counts:
        return top_k
    return max(top_k, min(top_k * len(counts), sum(int(c) for c in counts.values()), MAX_RETRIEVAL))


__all__ = ["MAX_RETRIEVAL", "NEGATIVE", "UNKNOWN", "Vote", "retrieval_k", "vote", "vote_batch"]
