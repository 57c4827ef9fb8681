"""k-NN vote: neighbours from the store -> a label and a confidence per candidate.

Each neighbour votes for its label with weight ``max(similarity, 0)``; the label with the
largest total wins and its confidence is that total over the sum of all votes. A
candidate with no neighbour at or above its label's threshold (``thresholds[label]``, else
``threshold``) is :data:`UNKNOWN`. Negative
examples (label :data:`NEGATIVE`) take part in the vote: a candidate that looks most
like a negative is suppressed (labelled :data:`NEGATIVE`, and dropped by the pipeline).
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
) -> Vote:
    """Similarity-weighted vote over ``neighbours`` (best first).

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
    hits = list(neighbours)[: top_k or None]
    per = thresholds or {}
    passing = [n for n in hits if n.score >= per.get(n.label, threshold)]
    if not passing:
        best = hits[0].score if hits else 0.0
        return Vote(UNKNOWN, 0.0, float(best))
    totals: dict[str, float] = {}
    best_sim: dict[str, float] = {}
    for n in passing:
        w = max(float(n.score), 0.0)
        totals[n.label] = totals.get(n.label, 0.0) + w
        best_sim[n.label] = max(best_sim.get(n.label, -1.0), float(n.score))
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
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Vote for every candidate: labels, confidences ``(M,)`` float32, similarities ``(M,)`` float32.
    ``priors``: one :func:`vote` ``prior`` per candidate (or ``None``)."""
    priors = priors if priors is not None else [None] * len(results)
    votes = [vote(r, threshold=threshold, top_k=top_k, thresholds=thresholds, prior=p)
             for r, p in zip(results, priors, strict=True)]
    return (
        [v.label for v in votes],
        np.array([v.confidence for v in votes], dtype=np.float32),
        np.array([v.similarity for v in votes], dtype=np.float32),
    )


__all__ = ["NEGATIVE", "UNKNOWN", "Vote", "vote", "vote_batch"]
