"""Precision, recall, F1, mean matched IoU, per-class figures and a confusion matrix.

Counting, at each IoU threshold, over all images (micro-averaged):

- **detection** (class-agnostic): predictions are matched one-to-one to ground truth by
  IoU alone; TP = matched pairs, FP = unmatched predictions, FN = unmatched ground truth.
- **overall** (class-aware, the headline figure): matching is done within each class, so a
  TP needs the right label as well; it is the sum of the per-class counts.
- **per class**: the class-aware counts of each class.
- **confusion matrix** from the class-agnostic matching: rows are ground-truth classes,
  columns predicted labels; the extra last column counts missed objects, the extra last
  row predictions that matched nothing.

Predictions labelled ``"unknown"`` or ``"__negative__"`` are not predictions of an object
and are dropped before counting (``drop_labels``). Ground truth marked ``ignore`` (e.g. the
objects used as few-shot examples) counts neither way, and neither do predictions matched
to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sam_detect.eval.matching import match_iou_matrix
from sam_detect.instances import NEGATIVE, UNKNOWN, Instances

NONE_LABEL = "(none)"
DEFAULT_IOU_THRESHOLDS = (0.3, 0.5)


def instances_iou(pred: Instances, gt: Instances) -> np.ndarray:
    """Pairwise mask IoU of two ``Instances`` of one image: ``(P, G)`` float64.

    :func:`~sam_detect.masks.crops_iou` of their box crops: only pairs whose tight mask
    boxes overlap are intersected, inside the overlap. Never builds ``(N, H, W)``.
    """
    from sam_detect.masks import crops_iou

    if len(pred) and len(gt) and pred.image_hw != gt.image_hw:
        raise ValueError(
            f"predictions are {pred.image_hw} (H, W) but ground truth is {gt.image_hw}"
        )
    return crops_iou(pred.crops, gt.crops)


def _safe_div(a: float, b: float) -> float:
    return float(a) / float(b) if b else 0.0


@dataclass
class Counts:
    """True/false positives, false negatives and the summed IoU of the true positives."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    iou_sum: float = 0.0

    @property
    def precision(self) -> float:
        """TP / (TP + FP); 0 when there are no predictions."""
        return _safe_div(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        """TP / (TP + FN); 0 when there is no ground truth."""
        return _safe_div(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        """2 TP / (2 TP + FP + FN); 0 when both sides are empty."""
        return _safe_div(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def mean_iou(self) -> float:
        """Mean IoU of the matched pairs; 0 without matches."""
        return _safe_div(self.iou_sum, self.tp)

    def __iadd__(self, other: Counts) -> Counts:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.iou_sum += other.iou_sum
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": round(self.precision, 6),
            "recall": round(self.recall, 6),
            "f1": round(self.f1, 6),
            "mean_iou": round(self.mean_iou, 6),
        }


@dataclass
class ConfusionMatrix:
    """``matrix[i, j]``: ground-truth class ``classes[i]`` matched by a prediction labelled
    ``classes[j]``; the last column (``"missed"``) counts unmatched ground truth, the last
    row (``"spurious"``) unmatched predictions. Shape ``(C + 1, C + 1)`` int64."""

    classes: list[str]
    matrix: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes),
            "rows": "ground truth + spurious",
            "columns": "predicted + missed",
            "matrix": self.matrix.tolist(),
        }


@dataclass
class ThresholdMetrics:
    """All figures at one IoU threshold."""

    iou_threshold: float
    overall: Counts
    detection: Counts
    per_class: dict[str, Counts]
    confusion: ConfusionMatrix

    @property
    def macro_f1(self) -> float:
        """Unweighted mean of the per-class F1 over classes present in the ground truth."""
        vals = [c.f1 for c in self.per_class.values() if c.tp + c.fn > 0]
        return float(np.mean(vals)) if vals else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "iou_threshold": self.iou_threshold,
            **self.overall.to_dict(),
            "macro_f1": round(self.macro_f1, 6),
            "detection": self.detection.to_dict(),
            "per_class": {k: v.to_dict() for k, v in sorted(self.per_class.items())},
            "confusion": self.confusion.to_dict(),
        }


@dataclass
class Metrics:
    """Figures at every IoU threshold, plus totals. Index with a threshold: ``m[0.5].f1``."""

    by_threshold: dict[float, ThresholdMetrics]
    n_images: int = 0
    n_gt: int = 0
    n_pred: int = 0
    n_ignored_gt: int = 0
    #: predictions on ignored ground truth (the examples drawn from a scored image, returned as
    #: drawn) at the strictest threshold: counted in ``n_pred``, neither true nor false
    n_pred_on_ignored: int = 0

    def __getitem__(self, threshold: float) -> Counts:
        return self.at(threshold).overall

    def at(self, threshold: float) -> ThresholdMetrics:
        for t, m in self.by_threshold.items():
            if abs(t - threshold) < 1e-9:
                return m
        raise KeyError(f"no metrics at IoU {threshold}; computed at {sorted(self.by_threshold)}")

    @property
    def thresholds(self) -> list[float]:
        return sorted(self.by_threshold)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_images": self.n_images,
            "n_gt": self.n_gt,
            "n_pred": self.n_pred,
            "n_ignored_gt": self.n_ignored_gt,
            "n_pred_on_ignored": self.n_pred_on_ignored,
            "by_iou": {f"{t:g}": self.by_threshold[t].to_dict() for t in self.thresholds},
        }


@dataclass
class ImageMatch:
    """Per-image outcome at one threshold (class-aware), for overlays: indices into the
    image's predictions (``tp_pred``, ``fp_pred``, ``ignored_pred``) and ground truth
    (``tp_gt`` aligned with ``tp_pred``, ``fn_gt``)."""

    tp_pred: np.ndarray
    tp_gt: np.ndarray
    fp_pred: np.ndarray
    fn_gt: np.ndarray
    ignored_pred: np.ndarray


def _label_key(label: Any) -> str:
    return NONE_LABEL if label is None else str(label)


@dataclass
class MetricsAccumulator:
    """Adds images one at a time; :meth:`result` gives :class:`Metrics`.

    ``iou_thresholds`` in (0, 1]; ``drop_labels``: prediction labels that mean "not an object".
    """

    iou_thresholds: Sequence[float] = DEFAULT_IOU_THRESHOLDS
    drop_labels: Iterable[Any] = (UNKNOWN, NEGATIVE)
    _overall: dict[float, Counts] = field(default_factory=dict, init=False)
    _detection: dict[float, Counts] = field(default_factory=dict, init=False)
    _per_class: dict[float, dict[str, Counts]] = field(default_factory=dict, init=False)
    _confusion: dict[float, dict[tuple[str | None, str | None], int]] = field(
        default_factory=dict, init=False
    )
    _classes: set[str] = field(default_factory=set, init=False)
    _n: dict[str, int] = field(
        default_factory=lambda: {"images": 0, "gt": 0, "pred": 0, "ignored": 0, "pred_on_ignored": 0}, init=False
    )

    def __post_init__(self) -> None:
        ts = [float(t) for t in self.iou_thresholds]
        if not ts:
            raise ValueError("need at least one IoU threshold")
        for t in ts:
            if not 0.0 < t <= 1.0:
                raise ValueError(f"IoU thresholds must be in (0, 1], got {t}")
        self.iou_thresholds = tuple(sorted(set(ts)))
        self.drop_labels = {d for d in self.drop_labels}
        for t in self.iou_thresholds:
            self._overall[t] = Counts()
            self._detection[t] = Counts()
            self._per_class[t] = {}
            self._confusion[t] = {}

    def add(
        self,
        pred: Instances,
        gt: Instances,
        ignore_gt: np.ndarray | Sequence[bool] | None = None,
    ) -> dict[float, ImageMatch]:
        """Count one image. ``ignore_gt``: ``(G,)`` bool, ground truth that counts neither way.

        Returns the per-threshold :class:`ImageMatch` (indices into ``pred`` and ``gt``).
        """
        if len(pred) and len(gt) and pred.image_hw != gt.image_hw:
            raise ValueError(
                f"prediction is {pred.image_hw} (H, W) but ground truth is {gt.image_hw}"
            )
        keep = np.array([lab not in self.drop_labels for lab in pred.labels], dtype=bool)
        pred_idx = np.flatnonzero(keep)
        iou = instances_iou(pred[pred_idx], gt)
        return self.add_matrix(iou, pred.labels, gt.labels, ignore_gt, pred_index=pred_idx)

    def add_matrix(
        self,
        iou: np.ndarray,
        pred_labels: Sequence[Any],
        gt_labels: Sequence[Any],
        ignore_gt: np.ndarray | Sequence[bool] | None = None,
        pred_index: np.ndarray | None = None,
    ) -> dict[float, ImageMatch]:
        """Count one image from a precomputed IoU matrix.

        ``iou``: ``(P, G)`` IoU of the kept predictions (rows ``pred_index`` of the image's
        predictions, all of them when ``None``) against the ground truth. ``pred_labels``
        covers all predictions, ``gt_labels`` all ground truth. Lets a caller score the
        same candidates at many similarity thresholds without recomputing IoU.
        """
        iou = np.asarray(iou)  # in its own precision: match_iou_matrix compares there
        if not np.issubdtype(iou.dtype, np.floating):
            iou = iou.astype(np.float64)
        pred_labels_all = np.asarray(list(pred_labels), dtype=object)
        pred_idx = (
            np.arange(len(pred_labels_all))
            if pred_index is None
            else np.asarray(pred_index, np.int64)
        )
        g = len(gt_labels)
        if iou.shape != (len(pred_idx), g):
            raise ValueError(f"iou must have shape ({len(pred_idx)}, {g}), got {iou.shape}")
        ignore = (
            np.zeros(g, dtype=bool)
            if ignore_gt is None
            else np.asarray(ignore_gt, dtype=bool).reshape(-1)
        )
        if ignore.shape != (g,):
            raise ValueError(f"ignore_gt must have shape ({g},), got {ignore.shape}")
        pred_labels = np.array([_label_key(lab) for lab in pred_labels_all[pred_idx]], dtype=object)
        gt_labels = np.array([_label_key(lab) for lab in gt_labels], dtype=object)

        self._n["images"] += 1
        self._n["gt"] += int((~ignore).sum())
        self._n["ignored"] += int(ignore.sum())
        self._n["pred"] += len(pred_idx)
        self._classes.update(gt_labels[~ignore].tolist())
        self._classes.update(pred_labels.tolist())

        out: dict[float, ImageMatch] = {}
        for t in self.iou_thresholds:
            # class-agnostic matching; predictions matched to ignored ground truth drop out
            m = match_iou_matrix(iou, t)
            ign_pred = m.pairs[ignore[m.pairs[:, 1]], 0] if len(m.pairs) else np.zeros(0, np.int64)
            if t == max(self.iou_thresholds):
                self._n["pred_on_ignored"] += len(ign_pred)
            live_p = np.setdiff1d(np.arange(len(pred_idx)), ign_pred)
            live_g = np.flatnonzero(~ignore)
            sub = iou[np.ix_(live_p, live_g)]
            det = match_iou_matrix(sub, t)
            self._detection[t] += Counts(det.tp, det.fp, det.fn, float(det.ious.sum()))
            conf = self._confusion[t]
            for pi, gi in det.pairs:
                key = (gt_labels[live_g[gi]], pred_labels[live_p[pi]])
                conf[key] = conf.get(key, 0) + 1
            for gi in det.unmatched_gt:
                key = (gt_labels[live_g[gi]], None)
                conf[key] = conf.get(key, 0) + 1
            for pi in det.unmatched_pred:
                key = (None, pred_labels[live_p[pi]])
                conf[key] = conf.get(key, 0) + 1

            # class-aware matching, class by class
            tp_p, tp_g, fp_p, fn_g = [], [], [], []
            classes = set(pred_labels[live_p].tolist()) | set(gt_labels[live_g].tolist())
            for c in classes:
                cp = live_p[pred_labels[live_p] == c]
                cg = live_g[gt_labels[live_g] == c]
                mc = match_iou_matrix(iou[np.ix_(cp, cg)], t)
                counts = Counts(mc.tp, mc.fp, mc.fn, float(mc.ious.sum()))
                self._per_class[t].setdefault(c, Counts())
                self._per_class[t][c] += counts
                self._overall[t] += counts
                tp_p.extend(cp[mc.pairs[:, 0]].tolist())
                tp_g.extend(cg[mc.pairs[:, 1]].tolist())
                fp_p.extend(cp[mc.unmatched_pred].tolist())
                fn_g.extend(cg[mc.unmatched_gt].tolist())
            out[t] = ImageMatch(
                tp_pred=pred_idx[np.asarray(tp_p, dtype=np.int64)],
                tp_gt=np.asarray(tp_g, dtype=np.int64),
                fp_pred=pred_idx[np.asarray(fp_p, dtype=np.int64)],
                fn_gt=np.asarray(fn_g, dtype=np.int64),
                ignored_pred=pred_idx[ign_pred],
            )
        return out

    def result(self) -> Metrics:
        classes = sorted(self._classes)
        by: dict[float, ThresholdMetrics] = {}
        for t in self.iou_thresholds:
            k = len(classes)
            mat = np.zeros((k + 1, k + 1), dtype=np.int64)
            index = {c: i for i, c in enumerate(classes)}
            for (row, col), v in self._confusion[t].items():
                i = index.get(row, k)
                j = index.get(col, k)
                mat[i, j] += v
            per_class = {c: self._per_class[t].get(c, Counts()) for c in classes}
            by[t] = ThresholdMetrics(
                iou_threshold=t,
                overall=Counts(**vars(self._overall[t])),
                detection=Counts(**vars(self._detection[t])),
                per_class=per_class,
                confusion=ConfusionMatrix(classes=classes, matrix=mat),
            )
        return Metrics(
            by_threshold=by,
            n_images=self._n["images"],
            n_gt=self._n["gt"],
            n_pred=self._n["pred"],
            n_ignored_gt=self._n["ignored"],
            n_pred_on_ignored=self._n["pred_on_ignored"],
        )


def compute_metrics(
    preds: Sequence[Instances] | Instances,
    gts: Sequence[Instances] | Instances,
    iou_thresholds: Sequence[float] = DEFAULT_IOU_THRESHOLDS,
    ignore_gt: Sequence[np.ndarray | None] | None = None,
    drop_labels: Iterable[Any] = (UNKNOWN, NEGATIVE),
) -> Metrics:
    """Metrics of predictions against ground truth, one ``Instances`` of each per image.

    Example::

        m = compute_metrics(pred, gt, iou_thresholds=(0.3, 0.5))
        m[0.5].f1, m.at(0.5).per_class["cell"].recall
    """
    if isinstance(preds, Instances):
        preds = [preds]
    if isinstance(gts, Instances):
        gts = [gts]
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} prediction sets but {len(gts)} ground-truth sets")
    acc = MetricsAccumulator(iou_thresholds, drop_labels)
    for i, (p, g) in enumerate(zip(preds, gts, strict=True)):
        acc.add(p, g, None if ignore_gt is None else ignore_gt[i])
    return acc.result()


__all__ = [
    "ConfusionMatrix",
    "Counts",
    "DEFAULT_IOU_THRESHOLDS",
    "ImageMatch",
    "Metrics",
    "MetricsAccumulator",
    "ThresholdMetrics",
    "compute_metrics",
    "instances_iou",
]
