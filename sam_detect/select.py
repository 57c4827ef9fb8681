"""The selection step: a non-overlapping set of candidates, best score first.

Every segmenter may offer overlapping alternatives for one object (nested components at
several threshold levels, split and unsplit versions, SAM2's multimask outputs). One step
in the pipeline chooses among them, whatever made them: candidates are taken greedily by
score, and a candidate is dropped when it overlaps one already kept by more than
``max_overlap`` of the smaller of the two (so a fragment inside a kept object, or a merged
pair around a kept one, goes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sam_detect.instances import NEGATIVE, UNKNOWN, Instances

#: a candidate sharing more than this fraction of the smaller mask with a kept one is dropped
MAX_OVERLAP = 0.5
#: score = similarity x fit ** FIT_WEIGHT: the examples' look decides between alternatives,
#: their size and shape temper it (a few examples know the size range only roughly)
FIT_WEIGHT = 0.5
#: ... x stability ** STABILITY_WEIGHT, where the segmenter says how many of its settings
#: agree on the candidate's outline (``data["stability"]``)
STABILITY_WEIGHT = 0.5
#: ... and, in ``detect``'s decision, x (how far the outline stands out / how far the class's
#: examples' do) ** OUTLINE_WEIGHT, where the segmenter measures outlines (``data["edge"]``):
#: between a whole object and a fragment cut through it, the whole's outline runs along its
#: edge all round and the fragment's partly through the object. Chosen on the development
#: sets (session 29, ``scripts/dev_selection.py``): 0.75 lifts the whole cells of
#: ``dev_rings`` (+0.047 to +0.101 with 30 or all examples), the neurocytes (+0.016) and the
#: H&E stroma (+0.010), and moves no other set by more than 0.003; 0.5 gains about half as
#: much, 1-2 cost the neurocytes 0.01-0.03. Not in the confidence: there it lowered the
#: ROC AUC on the nucleus sets (development and reported), though it raised it elsewhere
OUTLINE_WEIGHT = 0.75
#: ... with the ratio counted up to this much: an outline that stands out more than twice as far
#: as the examples' earns no more. Among nested outlines of one object (a pile of beans, each
#: shaded darker to its rim, outlined by its annotator at the rim), the tightest stands out
#: most, and without a cap it beat the outline drawn where the examples are. Chosen on the
#: development sets (session 33, ``dev_piles_same``: 0.530 -> 0.572 at 2; 1.5 and 1.75 cost the
#: neurocytes and macrophages up to 0.008, 1 cost ``dev_rings`` with 30 examples 0.036, 2.5
#: gains half as much; at 2 no other recording moves but ``dev_neurocyte_same``, +0.002)
OUTLINE_CAP = 2.0
#: a click (or box) on an image where the library has examples of the class takes the
#: candidate the examples' profile proposes there only where that fits the examples at least
#: this many times as well as the segmenter's own answer (:func:`choose_prompt`). Chosen on
#: the development sets (scripts/bench_clicks.py --examples 5; clicks with IoU >= 0.5): 1
#: gave the H&E stroma crop 0.369 -> 0.550 but cost the rescaled nuclei of dev_zoom 0.905 ->
#: 0.791 (the examples' sizes at another magnification); 2 keeps most of the gain (0.456,
#: neurocytes 0.513 -> 0.709, macrophages 0.048 -> 0.280) and costs at most 0.02; 4 little of either
PROMPT_MARGIN = 2.0


def overlap_pairs(instances: Instances, other: Instances | None = None) -> list[tuple[int, int, float]]:
    """``(i, j, intersection / min(area_i, area_j))`` for every overlapping pair ``i < j``
    (``other``: every ``instances[i]`` overlapping ``other[j]``), found sparsely
    (:func:`~sam_detect.masks.crop_intersections`)."""
    from sam_detect.masks import crop_intersections

    if len(instances) < (2 if other is None else 1) or (other is not None and not len(other)):
        return []
    ii, jj, inter = crop_intersections(instances.crops, None if other is None else other.crops)
    areas = instances.areas.astype(np.float64)
    their = areas if other is None else other.areas.astype(np.float64)
    frac = inter / np.maximum(np.minimum(areas[ii], their[jj]), 1.0)
    return list(zip(ii.tolist(), jj.tolist(), frac.tolist(), strict=True))


def overlapping(candidates: Instances, known: Instances, max_overlap: float = MAX_OVERLAP) -> np.ndarray:
    """``(N,)`` bool: the candidates that overlap one of the ``known`` objects by more than
    ``max_overlap`` of the smaller of the two -- those :func:`select` would never keep beside
    it, had the known object the first rank (a fragment of it, or it merged with a neighbour)
    -- or lie more than ``max_overlap`` of their own area inside several of them together (a
    piece where two known objects meet: 86 % inside two examples, under half of each)."""
    out = np.zeros(len(candidates), bool)
    out[[i for i, _, frac in overlap_pairs(candidates, known) if frac > max_overlap]] = True
    if len(known) > 1 and not out.all():  # or lies that far inside several of them together, none alone
        union = np.zeros(tuple(known.image_hw), bool)
        for c in known.crops:
            union[c.slices] |= c.crop
        for i in np.flatnonzero(~out):
            c = candidates.crop(int(i))
            out[i] = np.count_nonzero(union[c.slices][c.crop]) > max_overlap * max(c.area, 1)
    return out


def select(instances: Instances, scores: np.ndarray, max_overlap: float = MAX_OVERLAP,
           whole: np.ndarray | None = None, sizes: np.ndarray | None = None) -> np.ndarray:
    """Indices of the kept candidates ``(K,)`` int64, in the candidates' order.

    ``scores`` ``(N,)``: higher is better; ties keep the earlier candidate.
    ``whole`` ``(N,)`` bool: candidates shaped like their class's examples; such a
    candidate is kept over smaller alternatives inside it that cover most of it, unless
    those are separate objects by their outlines or, by ``sizes`` (``profile.sizes_in_image``),
    each of the image's objects' size inside a clump of them (:func:`wholes_first`).
    """
    n = len(instances)
    scores = np.array(scores, np.float64)
    if scores.shape != (n,):
        raise ValueError(f"scores must have shape ({n},), got {scores.shape}")
    if n == 0:
        return np.zeros(0, np.int64)
    pairs = overlap_pairs(instances)
    if whole is not None:
        scores = wholes_first(instances, scores, np.asarray(whole, bool), pairs, sizes)
    conflicts: list[list[int]] = [[] for _ in range(n)]
    for i, j, frac in pairs:
        if frac > max_overlap:
            conflicts[i].append(j)
            conflicts[j].append(i)
    kept = np.zeros(n, bool)
    blocked = np.zeros(n, bool)
    for i in np.argsort(-scores, kind="stable"):
        if blocked[i]:
            continue
        kept[i] = True
        blocked[conflicts[i]] = True
    return np.flatnonzero(kept)


#: a candidate is a part of a larger one when this share of it lies inside the larger one,
#: and it is smaller than PART_AREA of it; the parts tile the larger one when they cover
#: PARTS_COVER of it
PART_INSIDE, PART_AREA, PARTS_COVER = 0.8, 0.8, 0.6
#: a candidate is shaped like its class's examples when its profile fit without the size
#: term is at least this (solidity and elongation within about half a step of the examples')
WHOLE_SHAPE_FIT = 0.9
#: parts whose outlines stand out at least this share of the whole's (``data["edge"]``) are
#: separate objects meeting in a valley, not fragments cut through one object (chosen on the
#: development sets: mnFinder's training images and scripts/tune_calibrated.py's fields)
SEPARATE_EDGE = 0.7
#: where parts meet (:func:`contact_ratio`: the length of their shared border over the smaller
#: part's width): parts meeting along less than NECK_SEPARATE of it are separate objects
#: joined at a neck, whatever their outlines; parts meeting along more than NECK_ONE of it are
#: one object cut across, even where their outlines stand out (a textured nucleus cut at its
#: texture). Between the two the outlines decide (``SEPARATE_EDGE``). Chosen on the
#: development sets (session 28: ``dev_cross`` 0.932 -> 0.958, no set down by more than 0.002)
NECK_SEPARATE, NECK_ONE = 0.3, 1.1
#: a whole at least CLUMP_SIZE of its class's log-area sds larger than the image's own sure
#: objects of that class (``profile.sizes_in_image``), whose parts each lie within
#: ``profile.SURE_SHIFT`` sds of their size, is a clump of the image's objects, not one object
#: cut into fragments: its parts keep their ranks. Twice ``SURE_SHIFT``: of 2, 2.5 and 3, the
#: one that cost no development recording (session 49: clumps of three U2OS nuclei kept whole).
CLUMP_SIZE = 3.0


def contact_ratio(instances: Instances, big: int, parts: Sequence[int]) -> float:
    """How wide the parts of candidate ``big`` meet: over every pair of parts that touch, the
    smallest (shared border in pixels) / (the smaller part's equivalent diameter); ``nan``
    where fewer than two parts touch.

    Each pixel of ``big`` goes to its nearest part (larger parts first where they overlap),
    so a gap that a threshold left between the parts counts as their border. Two round
    objects pressed together meet along a short neck (ratio well below 1); an object cut
    in two by its texture is cut right across (1.4 for a disc's halves).
    """
    from scipy import ndimage

    x0, y0, x1, y1 = instances.crop(big).box
    inside = instances.crop(big).region(x0, y0, x1, y1)
    lab = np.zeros(inside.shape, np.int32)
    for n, k in enumerate(sorted(parts, key=lambda k: -instances.crop(k).area), 1):
        px0, py0, px1, py1 = instances.crop(k).box
        ix0, iy0, ix1, iy1 = max(x0, px0), max(y0, py0), min(x1, px1), min(y1, py1)  # the part, within big's box
        if ix1 <= ix0 or iy1 <= iy0:
            continue
        window = (slice(iy0 - y0, iy1 - y0), slice(ix0 - x0, ix1 - x0))
        mine = instances.crop(k).region(ix0, iy0, ix1, iy1) & inside[window] & (lab[window] == 0)
        lab[window][mine] = n
    if lab.max() < 2:
        return float("nan")
    iy, ix = ndimage.distance_transform_edt(lab == 0, return_indices=True)[1]
    near = np.where(inside, lab[iy, ix], 0)
    n = int(near.max())
    width = 2.0 * np.sqrt(np.bincount(near.ravel(), minlength=n + 1) / np.pi)
    # (pixel, neighbour's part) for every 4-neighbour in another part, each pair once
    padded = np.pad(near, 1)
    own = near.ravel()
    pixel = np.arange(own.size)
    keys = []
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        other = padded[1 + dy : 1 + dy + near.shape[0], 1 + dx : 1 + dx + near.shape[1]].ravel()
        hit = (own > 0) & (other > own)
        keys.append(pixel[hit] * (n + 1) + other[hit])
    keys = np.unique(np.concatenate(keys))
    if not keys.size:
        return float("nan")
    a, b = own[keys // (n + 1)], keys % (n + 1)
    pair, border = np.unique(a * (n + 1) + b, return_counts=True)
    narrower = np.minimum(width[pair // (n + 1)], width[pair % (n + 1)])
    return float(np.min(border / np.maximum(narrower, 1.0)))


def wholes_first(instances: Instances, scores: np.ndarray, whole: np.ndarray,
                 pairs: list[tuple[int, int, float]] | None = None,
                 sizes: np.ndarray | None = None) -> np.ndarray:
    """``scores`` with the fragments of every whole candidate ranked just below it.

    Over-complete proposals offer an object both whole and cut into parts (a watershed
    that follows texture, a threshold that breaks a pale object). The parts often fit the
    examples' size better and look as much like them, yet a candidate whose outline is as
    solid and as round as the examples' is one object, whatever its size: the examples'
    size says little about another image's magnification, their shape does. Parts that
    meet at a narrow neck are touching objects, not fragments, and keep their own ranks;
    so are parts that stand out all round as much as the whole does where the segmenter
    measures outlines (``data["edge"]``: the cut between two nuclei runs along a dark
    valley; one through a nucleus does not), unless they meet right across the smaller
    one's width (:func:`contact_ratio`). Where the image shows its own objects' size
    (``sizes``, ``profile.sizes_in_image``), a whole far larger than they are whose parts are
    each of their size is a clump of them (``CLUMP_SIZE``), and its parts keep their ranks
    too. Larger wholes are settled first.
    """
    scores = np.array(scores, np.float64)
    areas = instances.areas.astype(np.float64)
    fragments = fragmented_wholes(instances, whole, pairs, sizes)
    for big in sorted(fragments, key=lambda k: -areas[k]):
        inside = fragments[big]
        scores[inside] = np.minimum(scores[inside], np.nextafter(scores[big], -np.inf))
    return scores


def covering_parts(instances: Instances, pairs: list[tuple[int, int, float]] | None = None,
                   ) -> dict[int, list[int]]:
    """``{candidate: its parts}`` for the candidates that smaller alternatives cover: a part
    lies ``PART_INSIDE`` inside it and is smaller than ``PART_AREA`` of it, and the parts
    together are at least ``PARTS_COVER`` of its area."""
    areas = instances.areas.astype(np.float64)
    parts: dict[int, list[int]] = {}
    for i, j, frac in overlap_pairs(instances) if pairs is None else pairs:
        small, big = (i, j) if areas[i] <= areas[j] else (j, i)
        if frac > PART_INSIDE and areas[small] < PART_AREA * areas[big]:
            parts.setdefault(big, []).append(small)
    return {big: inside for big, inside in parts.items() if areas[inside].sum() >= PARTS_COVER * areas[big]}


def fragmented_wholes(instances: Instances, whole: np.ndarray,
                      pairs: list[tuple[int, int, float]] | None = None,
                      sizes: np.ndarray | None = None) -> dict[int, list[int]]:
    """``{whole candidate: its fragments}``: the ``whole`` candidates that smaller
    alternatives inside them cover (``PARTS_COVER``), where those parts are fragments of it
    rather than separate objects: they meet along more than a neck (``NECK_SEPARATE``) and,
    unless they meet right across (``NECK_ONE``), their outlines do not stand out all round
    as the whole's does (``SEPARATE_EDGE``), and they are not each of the image's objects'
    size in a whole far larger (``sizes``, ``CLUMP_SIZE``; see :func:`wholes_first`)."""
    from sam_detect.profile import SURE_SHIFT

    areas = instances.areas.astype(np.float64)
    edge = instances.data.get("edge")
    edge = None if edge is None else np.asarray(edge, np.float64)
    out = {}
    for big, inside in covering_parts(instances, pairs).items():
        if not whole[big]:
            continue
        if sizes is not None and sizes[big] >= CLUMP_SIZE and np.all(np.abs(sizes[inside]) <= SURE_SHIFT):
            continue  # a clump of the image's objects (nan: the image does not say)
        neck = contact_ratio(instances, big, inside)
        if neck <= NECK_SEPARATE:
            continue
        if (edge is not None and not neck > NECK_ONE
                and np.average(edge[inside], weights=areas[inside]) >= SEPARATE_EDGE * edge[big]):
            continue
        out[big] = inside
    return out


@dataclass
class Decision:
    """What the vote and the selection made of ``N`` candidates.

    ``labels`` ``(N,)`` (``unknown`` / ``__negative__`` included), ``confidences`` and
    ``similarities`` ``(N,)`` float32 from the vote, ``fit`` ``(N,)`` float32 (profile fit,
    1 without a profile), ``keep`` ``(K,)`` int64 indices of the chosen candidates;
    ``standing_out``: how many of the kept candidates were like no example and took a class
    for standing out as far as its examples (``STAND_OUT``); ``clear_of_noise``: how many
    took one for being shaped like a bright class's examples and clear of the image's noise
    though fainter than they (``DIM_TAKES``).
    """

    labels: list[str]
    confidences: np.ndarray
    similarities: np.ndarray
    fit: np.ndarray
    keep: np.ndarray
    thresholds: str = ""  # the thresholds used, in words (for notes)
    standing_out: int = 0
    clear_of_noise: int = 0


def quality(candidates: Instances, similarity: np.ndarray, fit: np.ndarray) -> np.ndarray:
    """``(N,)`` float64: how good each candidate is, for the selection to rank alternatives.

    ``similarity x fit ** FIT_WEIGHT x stability ** STABILITY_WEIGHT``; stability (the
    share of a segmenter's settings that agree on the outline, ``data["stability"]``) counts
    only where the segmenter gives it.
    """
    score = np.clip(np.asarray(similarity, np.float64), 0.0, None) * np.asarray(fit, np.float64) ** FIT_WEIGHT
    stability = candidates.data.get("stability")
    if stability is not None:
        score = score * np.asarray(stability, np.float64) ** STABILITY_WEIGHT
    return score


def box_overlap(instances: Instances, box: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """``(iou, inside)``, each ``(N,)`` float64: each mask's IoU with the rectangle ``box``
    (XYXY pixels, ends rounded outwards) and the share of the mask inside it."""
    x0, y0, x1, y1 = (int(np.floor(box[0])), int(np.floor(box[1])), int(np.ceil(box[2])), int(np.ceil(box[3])))
    hits = np.array([c.region(x0, y0, x1, y1).sum() for c in instances.crops], np.float64)
    areas = instances.areas.astype(np.float64)
    return (hits / np.maximum(areas + (x1 - x0) * (y1 - y0) - hits, 1.0), hits / np.maximum(areas, 1.0))


def choose_prompt(own: Instances, candidates: Instances, label: str, profile: dict, *,
                  point: Sequence[float] | None = None, box: Sequence[float] | None = None) -> Instances:
    """What a click at ``point`` (XY) or a box ``box`` (XYXY) means for ``label``: the
    segmenter's own answer ``own`` (0 or 1 instance), or the one of ``candidates`` (the
    proposals of ``profile`` for ``label``, as ``detect`` makes them) under the point, or
    with at least half of it inside the box, that fits the class's examples best.

    Scores: :func:`quality` without a similarity (size and shape fit x stability; ``own``
    counts its fit alone), for a box times the mask's IoU with the box's rectangle. The
    best candidate is taken where it scores at least ``PROMPT_MARGIN`` times ``own``.
    """
    from sam_detect.profile import fit_scores

    def scores(inst: Instances) -> np.ndarray:
        score = quality(inst, np.ones(len(inst)), fit_scores(inst, [label] * len(inst), profile))
        return score * box_overlap(inst, box)[0] if box is not None else score

    if box is not None:
        within = box_overlap(candidates, box)[1] >= 0.5
    else:
        within = np.array([c.contains(point[0], point[1]) for c in candidates.crops], bool)
    candidates = candidates[within]
    if not len(candidates):
        return own
    score = scores(candidates)
    best = int(np.argmax(score))
    if len(own) and PROMPT_MARGIN * scores(own[:1])[0] >= score[best]:
        return own
    found = candidates[[best]]
    found.metadata.update({"prompt": "box" if box is not None else "point", "profile": label})
    return found


#: an unknown candidate (no example reaches its class's threshold) that stands out at least
#: STAND_OUT times as far as its nearest class's typical example, in that class's polarity,
#: takes that class: the vote without thresholds decides (a candidate nearest a negative stays
#: unknown). Only with the classes' own thresholds: one the user gives holds for every candidate.
#: The similarity of a nucleus brighter than every example falls with its intensity views (the
#: ``colour`` and ``texture`` views' cosines turn negative), though it is as much a nucleus
#: (docs/performance.md, session 41); ``inf`` turns this off
STAND_OUT = 1.0
#: ... and so does an unknown candidate of a bright class that stands out less than that but is
#: shaped like its examples and clear of the image's noise (``profile.DIM_NOISE`` sds: what
#: ``profile.size_filter`` keeps below the contrast floor). A nucleus fainter than every
#: example loses the same views (the ``colour`` and ``texture`` cosines fall below 0): with the
#: ten most contrasted nuclei as examples, 25 of `dev_rpe1` image 0's 72 nuclei were voted
#: unknown at similarities 0.35-0.50 (docs/performance.md, session 75). An emitting object's
#: brightness follows its expression, focus and cell cycle; an absorbing stain's paleness says
#: what it is, and dark classes have no noise measured
DIM_TAKES = True


def _standing_out(candidates: Instances, neighbours: Sequence[Sequence[Any]], labels: list[str],
                  conf: np.ndarray, top_k: int, priors: Any, decision: dict | None,
                  profile: dict | None) -> tuple[list[str], np.ndarray, list[int], list[int]]:
    """``(labels, confidences, taken, clear)`` with the unknown candidates that stand out at
    least as far as the class the vote gives them without thresholds (see ``STAND_OUT``), or
    are shaped like a bright class's examples and clear of the image's noise (``DIM_TAKES``),
    labelled so; ``taken``: the indices of the first, ``clear``: of the second."""
    from sam_detect.calibrate import counts
    from sam_detect.classify import vote
    from sam_detect.profile import shaped_and_clear, standing_out

    unknown = [i for i, lab in enumerate(labels) if lab == UNKNOWN and neighbours[i]]
    if not unknown or not (profile or {}).get("classes"):
        return labels, conf, [], []
    have = counts(decision)
    votes = {i: vote(neighbours[i], threshold=-1.0, top_k=top_k, prior=priors[i] if priors is not None else None,
                     counts=have) for i in unknown}
    sub = candidates[np.asarray(unknown)]
    ratio = standing_out(sub, [votes[i].label for i in unknown], profile)
    plain = shaped_and_clear(sub, profile) if DIM_TAKES else np.zeros(len(unknown), bool)
    taken, clear = [], []
    for i, r, c in zip(unknown, ratio, plain, strict=True):
        if votes[i].label != NEGATIVE and (r >= STAND_OUT or c):
            (taken if r >= STAND_OUT else clear).append(i)
    labels, conf = list(labels), conf.copy()
    for i in taken + clear:
        labels[i], conf[i] = votes[i].label, votes[i].confidence
    return labels, conf, taken, clear


@dataclass
class Typing:
    """What a library of several classes types its objects by (:func:`type_by_vote`), kept
    so that a decision re-run at another threshold (``eval``'s curve) types them as
    ``detect`` would at that threshold: each candidate's nearest examples of every class, the
    classes' profile at the image's scale, and their decision settings."""

    neighbours: Sequence[Sequence[Any]]
    profile: dict | None
    decision: dict | None

    def vote(self, candidates: Instances, top_k: int, threshold: float | None) -> tuple[list[str], np.ndarray]:
        return type_by_vote(candidates, self.neighbours, top_k=top_k, profile=self.profile,
                            decision=self.decision, threshold=threshold)


def type_by_vote(candidates: Instances, neighbours: Sequence[Sequence[Any]], *, top_k: int,
                 profile: dict | None, decision: dict | None,
                 threshold: float | None = None) -> tuple[list[str], np.ndarray]:
    """``(classes, confidences)``: the class the vote among a library's positive classes gives
    each candidate (with the classes' own thresholds, or ``threshold`` for every class where
    given, or without them where no neighbour reaches its class's), each class's share weighed by how well the candidate's size fits its
    examples (``profile.size_priors``), and the confidence :func:`decide` gives a
    candidate of that class (the vote's share x its fit to the class's examples and stability
    with the selection's weights x how typical its similarity is among them), ``(N,)`` float32.
    How a library of several classes types the objects found with its classes as one
    (``profile.JOINT``): whether a candidate is an object was decided already."""
    from sam_detect.calibrate import DEFAULT_THRESHOLD, counts, thresholds, typicality
    from sam_detect.classify import vote_batch
    from sam_detect.profile import fit_scores, size_priors

    positive = [[n for n in hits if n.label != NEGATIVE] for hits in neighbours]
    have = counts(decision) or {}
    priors = size_priors(candidates, profile)
    # the classes' own thresholds, as a library of one class votes; where no example reaches
    # its class's, the vote without them (the candidate is an object, the classes only type it)
    per_class = thresholds(decision, DEFAULT_THRESHOLD) if threshold is None else {}  # a threshold given is theirs
    labels, shares, sims = vote_batch(positive, threshold=DEFAULT_THRESHOLD if threshold is None else float(threshold),
                                      top_k=top_k, priors=priors, counts=have or None, thresholds=per_class)
    below = np.flatnonzero([lab == UNKNOWN for lab in labels])
    if below.size:
        free = vote_batch([positive[i] for i in below], threshold=-1.0, top_k=top_k,
                          priors=None if priors is None else [priors[i] for i in below], counts=have or None)
        for k, i in enumerate(below):
            labels[i], shares[i], sims[i] = free[0][k], free[1][k], free[2][k]
    # no class among the neighbours searched (every one a negative): the class of most examples
    most = max((lab for lab in have if lab != NEGATIVE), key=lambda lab: (have[lab], lab), default=UNKNOWN)
    labels = [most if lab == UNKNOWN else lab for lab in labels]
    conf = shares * quality(candidates, np.ones(len(candidates)), fit_scores(candidates, labels, profile))
    if decision:
        conf = conf * typicality(decision, labels, sims)
    return labels, np.asarray(conf, np.float32)


def decide(
    candidates: Instances,
    neighbours: Sequence[Sequence[Any]],
    *,
    threshold: float | None,
    top_k: int,
    profile: dict | None = None,
    keep_unknown: bool = False,
    decision: dict | None = None,
    types: tuple[Sequence[str], np.ndarray] | None = None,
) -> Decision:
    """Vote on every candidate, score it by similarity x profile fit x how far its outline
    stands out (against the examples', up to ``OUTLINE_CAP``), keep a non-overlapping set.

    ``threshold``: one similarity threshold for every class, or ``None`` for each class's
    own from the library's ``decision`` (``sam_detect.calibrate``; ``DEFAULT_THRESHOLD``
    where a class has none). With several classes in ``profile``, the vote chooses between
    them weighing each class's share by how well the candidate's size fits its examples
    (``profile.size_priors``). Confidence: the vote's share x how typical the candidate's
    similarity is among its class's examples (when ``decision`` is given) x its profile fit
    and stability with the selection's weights (``quality`` without the similarity).
    With the classes' own thresholds, an unknown candidate standing out at least as far as
    its nearest class's typical example takes that class (``STAND_OUT``), and so does one
    shaped like a bright class's examples and clear of the image's noise (``DIM_TAKES``). Candidates labelled
    negative, or ``unknown`` (unless ``keep_unknown``), or fitting their class's profile worse
    than ``MIN_FIT`` are not kept; kept unknowns are chosen among themselves after the
    labelled objects, and only where none of those is (they never change which are kept). The one
    decision step of ``SAMDetect.detect`` (and of ``eval``'s re-scoring).

    ``types``: ``(classes, confidences)`` per candidate (:func:`type_by_vote`) where the
    candidates were voted on as one class (``profile.JOINT``): each candidate that class takes
    is given its class and that class's confidence instead.
    """
    from sam_detect.calibrate import DEFAULT_THRESHOLD, counts, thresholds, typicality
    from sam_detect.classify import vote_batch
    from sam_detect.profile import (
        MIN_FIT,
        fit_and_shape_scores,
        outline_ratios,
        size_priors,
        sizes_in_image,
    )

    n = len(candidates)
    if len(neighbours) != n:
        raise ValueError(f"{n} candidates but neighbours for {len(neighbours)}")
    per_class = thresholds(decision, DEFAULT_THRESHOLD) if threshold is None else {}
    flat = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    words = (
        ", ".join(f"{lab} {t:.3f}" for lab, t in per_class.items()) + " (calibrated)"
        if per_class else f"{flat:.3f}"
    )
    if n == 0:
        z = np.zeros(0, np.float32)
        return Decision([], z, z, z, np.zeros(0, np.int64), words)
    priors = size_priors(candidates, profile)
    labels, conf, sim = vote_batch(neighbours, threshold=flat, top_k=top_k, thresholds=per_class,
                                   priors=priors, counts=counts(decision))
    taken: list[int] = []
    clear: list[int] = []
    if threshold is None:  # a threshold the user gives is theirs
        labels, conf, taken, clear = _standing_out(candidates, neighbours, labels, conf, top_k, priors, decision,
                                                   profile)
    fit, shape_fit = fit_and_shape_scores(candidates, labels, profile)
    # confidence: the evidence of the selection's quality, each as a factor in [0, 1] (not the
    # outline's: on the nucleus sets it ranked true objects lower, docs/performance.md session 29)
    evidence = quality(candidates, np.ones(n), fit)  # fit ** FIT_WEIGHT x stability ** STABILITY_WEIGHT
    if decision:
        evidence = evidence * typicality(decision, labels, sim)
    conf = (conf * evidence).astype(np.float32)
    known = np.array([lab != UNKNOWN for lab in labels], bool)
    ok = np.array([lab != NEGATIVE for lab in labels], bool) & (known | keep_unknown) & (fit >= MIN_FIT)
    idx = np.flatnonzero(ok)

    def pick(sub: np.ndarray) -> np.ndarray:
        """The selection among candidates ``sub``."""
        if not len(sub):
            return sub
        playing = candidates[sub]
        outline = np.minimum(outline_ratios(playing, [labels[i] for i in sub], profile), OUTLINE_CAP) ** OUTLINE_WEIGHT
        score = quality(playing, sim[sub], fit[sub]) * outline
        score = score + known[sub] * (1.0 + score.max(initial=0.0))  # every labelled candidate first
        whole = shape_fit[sub] >= WHOLE_SHAPE_FIT if profile else None
        sizes = sizes_in_image(playing, [labels[i] for i in sub], profile, shape_fit[sub]) if whole is not None else None
        return sub[select(playing, score, whole=whole, sizes=sizes)]

    # the labelled objects are chosen among themselves, whatever is kept unknown: chosen with
    # them, an unknown whole took the place of labelled parts (17 of 57 objects of a photo)
    keep = pick(idx[known[idx]])
    if keep_unknown:
        extra = pick(idx[~known[idx]])
        if len(extra) and len(keep):  # unknowns only where no labelled object is
            pairs = overlap_pairs(candidates[extra], candidates[keep])
            clash = {int(extra[i]) for i, _, frac in pairs if frac > MAX_OVERLAP}
            extra = np.array([e for e in extra if int(e) not in clash], np.int64)
        keep = np.concatenate([keep, extra]).astype(np.int64)
    if types is not None:
        from sam_detect.profile import JOINT

        found = np.array([lab == JOINT for lab in labels], bool)
        labels = [str(types[0][i]) if found[i] else lab for i, lab in enumerate(labels)]
        conf = np.where(found, np.asarray(types[1], np.float32), conf).astype(np.float32)
    return Decision(labels, conf, sim, fit, keep.astype(np.int64), words, int(np.isin(keep, taken).sum()),
                    int(np.isin(keep, clear).sum()))


__all__ = ["Typing", "type_by_vote", "CLUMP_SIZE", "MAX_OVERLAP", "OUTLINE_CAP", "OUTLINE_WEIGHT", "PROMPT_MARGIN", "DIM_TAKES", "Decision", "box_overlap", "choose_prompt", "decide", "overlap_pairs",
           "contact_ratio", "covering_parts", "fragmented_wholes", "overlapping", "quality", "select", "wholes_first"]
