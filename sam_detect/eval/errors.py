"""Where an evaluation's errors are: each false object and each missed one put in one kind.

``eval`` prints the counts under its table and ``--json`` holds them (``errors``), so that a
user can tell a detector's faults from an annotation's conventions: false objects that lie
at the image border where the ground truth holds few objects (an annotation that leaves
the border's cut objects out), false objects that overlap no annotated object at all (an
annotation that leaves objects out, or debris), merges, loose outlines; missed objects that
a candidate fitted but the vote or the selection did not keep, those whose fitting candidate
a filter dropped before the vote (and which filter: ``dropped_by``), and those no candidate
fitted.

Kinds are counted in the order :data:`FALSE_KINDS` and :data:`MISSED_KINDS` list them; each
object goes to the first that applies. "Covers" is the share of a ground-truth object's
pixels inside a prediction (:data:`COVER`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: a prediction overlapping an annotated object at IoU at most this overlaps none of it
NO_OVERLAP = 0.1
#: share of an annotated object's pixels a prediction must hold to count as taking it in
COVER = 0.5
#: what a false object is, in the order they are tried
FALSE_KINDS = (
    ("other_class", "outline right, class wrong"),
    ("duplicate", "a second outline of an object matched already"),
    ("border_unannotated", "at the image border, overlapping no annotated object"),
    ("unannotated", "overlapping no annotated object"),
    ("merge", "taking in two or more annotated objects"),
    ("outline", "a loose or partial outline of one"),
)
#: what a missed object is, in the order they are tried
MISSED_KINDS = (
    ("other_class", "found with its outline right, class wrong"),
    ("not_kept", "a candidate fitted it, but the vote or the selection kept none that did"),
    ("in_merge", "inside an object that takes in a neighbour too"),
    ("outline", "found with a loose or partial outline"),
    ("dropped", "a candidate fitted it, but was dropped before the vote"),
    ("not_proposed", "no candidate fitted it"),
)
#: what dropped a missed object's candidate before the vote (``dropped_by``): the size and
#: look filters' reasons (``profile.DROP_REASONS``) and the pipeline's own
PIPELINE_DROPS = {
    "unlabelled": "like what the example images left unlabelled",
    "example": "overlapping an example drawn on the image",
    "border": "cut by the image border (drop_border)",
}
#: the border note needs this many false objects there, and this share of the false ones
BORDER_NOTE_MIN, BORDER_NOTE_SHARE = 5, 0.25


def _cover(iou: np.ndarray, pred_area: np.ndarray, gt_area: np.ndarray) -> np.ndarray:
    """``(P, G)``: the share of each ground-truth object's pixels inside each prediction, from
    their IoU and areas (``|P & G| = IoU (|P| + |G|) / (1 + IoU)``)."""
    inter = iou * (pred_area[:, None] + gt_area[None, :]) / (1.0 + iou)
    return inter / np.maximum(gt_area[None, :], 1.0)


def error_breakdown(records: Sequence[Any], matches: Sequence[dict], iou: float) -> dict[str, Any] | None:
    """Counts of each kind of false and missed object at IoU ``iou`` (class-aware matches).

    ``records``: the evaluation's per-image records (``out_iou``, ``out_cut``, ``out_area``,
    ``gt_cut``, ``gt_area``, ``iou`` of the candidates that reached the vote, ``ignore``);
    ``matches``: per record, ``{iou: ImageMatch}`` of what detect returned. ``None`` where a
    record lacks the geometry (made by an older version).
    """
    # the records hold IoUs as float32: an IoU of exactly the threshold is float32(iou) there
    at = float(np.float32(iou))
    false = dict.fromkeys((k for k, _ in FALSE_KINDS), 0)
    missed = dict.fromkeys((k for k, _ in MISSED_KINDS), 0)
    dropped_by: dict[str, int] = {}
    gt_scored = gt_border = out_total = out_border = missed_border = 0
    for rec, m in zip(records, matches, strict=True):
        if rec.out_cut is None or rec.gt_cut is None:
            return None
        im = m[iou]
        out_iou = np.asarray(rec.out_iou, np.float64).reshape(len(rec.out_cut), len(rec.gt_cut))
        live = ~np.asarray(rec.ignore, bool)
        gt_scored += int(live.sum())
        gt_border += int((rec.gt_cut & live).sum())
        scored_out = np.setdiff1d(np.arange(len(rec.out_cut)), im.ignored_pred)
        out_total += len(scored_out)
        out_border += int(rec.out_cut[scored_out].sum())
        cover = _cover(out_iou, np.asarray(rec.out_area, np.float64), np.asarray(rec.gt_area, np.float64))
        takes = (cover >= COVER) & live[None, :]  # (P, G): which scored objects each prediction takes in
        out_labels = [str(x) for x in rec.out_labels]
        gt_labels = [str(x) for x in rec.gt_labels]
        for p in im.fp_pred:
            best = float(out_iou[p].max(initial=0.0))  # examples too: a loose outline of one overlaps it
            g = int(np.argmax(out_iou[p] * live)) if live.any() else -1
            if g >= 0 and out_iou[p, g] >= at:
                false["other_class" if out_labels[p] != gt_labels[g] else "duplicate"] += 1
            elif best <= NO_OVERLAP and rec.out_cut[p]:
                false["border_unannotated"] += 1
            elif best <= NO_OVERLAP:
                false["unannotated"] += 1
            elif takes[p].sum() >= 2:
                false["merge"] += 1
            else:
                false["outline"] += 1
        cand = np.asarray(rec.iou, np.float64)
        gone = getattr(rec, "dropped_best", None)  # records made before it was kept: none
        for g in im.fn_gt:
            col = out_iou[:, g]
            missed_border += int(rec.gt_cut[g])
            if any(out_labels[p] != gt_labels[g] for p in np.flatnonzero(col >= at)):
                missed["other_class"] += 1
            elif (col >= at).any():  # a kept object fits it, and was matched to a neighbour it takes in too
                missed["in_merge"] += 1
            elif cand.size and cand[:, g].max() >= at:
                missed["not_kept"] += 1
            elif (takes[:, g] & (takes.sum(axis=1) >= 2)).any():
                missed["in_merge"] += 1
            elif (col > NO_OVERLAP).any():
                missed["outline"] += 1
            elif gone is not None and gone[g] >= at:
                missed["dropped"] += 1
                why = str(rec.dropped_why[g])
                dropped_by[why] = dropped_by.get(why, 0) + 1
            else:
                missed["not_proposed"] += 1
    return {
        "iou": float(iou),
        "false": false,
        "missed": missed,
        "dropped_by": dropped_by,
        "ground_truth": gt_scored,
        "ground_truth_at_border": gt_border,
        "predictions": out_total,
        "predictions_at_border": out_border,
        "missed_at_border": missed_border,
    }


def pool_errors(total: dict[str, Any], errors: dict[str, Any] | None) -> dict[str, Any]:
    """``total`` with one breakdown's counts added (``errors`` from :func:`error_breakdown`;
    ``None`` adds nothing): several evaluations' errors pooled, as one breakdown."""
    for k, v in (errors or {}).items():
        if isinstance(v, dict):
            pool_errors(total.setdefault(k, {}), v)
        elif k == "iou":
            total[k] = v
        else:
            total[k] = total.get(k, 0) + int(v)
    return total


def border_note(errors: dict[str, Any]) -> str | None:
    """A line where the false objects at the border suggest an annotation that leaves the
    border's cut objects out: many false objects there, overlapping no annotated object,
    while the ground truth's share of objects at the border is under half the predictions'."""
    n = int(errors["false"]["border_unannotated"])
    total_false = sum(errors["false"].values())
    gt, gt_b = int(errors["ground_truth"]), int(errors["ground_truth_at_border"])
    pred, pred_b = int(errors["predictions"]), int(errors["predictions_at_border"])
    if n < BORDER_NOTE_MIN or n < BORDER_NOTE_SHARE * total_false or not gt or not pred:
        return None
    if gt_b / gt >= 0.5 * pred_b / pred:
        return None
    return (f"the ground truth holds {gt_b} of its {gt} objects at the image border, the predictions "
            f"{pred_b} of {pred}: if it leaves the objects the border cuts out, --drop-border leaves them "
            "out of the predictions too")


def format_errors(errors: dict[str, Any] | None) -> list[str]:
    """The breakdown as text lines (none where there is nothing to say)."""
    if not errors:
        return []
    lines = []
    nf, nm = sum(errors["false"].values()), sum(errors["missed"].values())
    if nf:
        lines.append(f"false objects at IoU {errors['iou']:g}: {nf}")
        lines += [f"  {errors['false'][k]:5d}  {words}" for k, words in FALSE_KINDS if errors["false"][k]]
    if nm:
        lines.append(f"missed objects at IoU {errors['iou']:g}: {nm}"
                     + (f" ({errors['missed_at_border']} at the image border)" if errors["missed_at_border"] else ""))
        lines += [f"  {errors['missed'][k]:5d}  {words}" + (_dropped_words(errors) if k == "dropped" else "")
                  for k, words in MISSED_KINDS if errors["missed"].get(k)]
    note = border_note(errors)
    if note:
        lines.append(note)
    return lines


def _dropped_words(errors: dict[str, Any]) -> str:
    """``": 14 like what the example images left unlabelled, 2 ..."``: what dropped them, most first."""
    from sam_detect.profile import DROP_REASONS

    words = {**DROP_REASONS, **PIPELINE_DROPS}
    by = sorted((errors.get("dropped_by") or {}).items(), key=lambda kv: (-kv[1], kv[0]))
    return (": " + ", ".join(f"{n} {words.get(k, k)}" for k, n in by)) if by else ""


__all__ = ["COVER", "PIPELINE_DROPS", "FALSE_KINDS", "MISSED_KINDS", "NO_OVERLAP", "border_note", "error_breakdown", "format_errors", "pool_errors"]
