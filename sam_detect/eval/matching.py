"""One-to-one matching of predicted and ground-truth masks by IoU (Hungarian assignment).

Pairs are chosen to maximise the summed IoU among pairs whose IoU reaches the threshold
(``scipy.optimize.linear_sum_assignment``), so a prediction matches at most one ground-truth
object and vice versa. A prediction that covers two objects (a merge) matches one of them at
most; two predictions that split one object give one match and one false positive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def mask_iou(pred_masks: np.ndarray, gt_masks: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``(P, H, W)`` and ``(G, H, W)`` bool masks: ``(P, G)`` float64.

    :func:`~sam_detect.masks.crops_iou` of their tight crops: only pairs whose bounding
    boxes overlap are intersected, so hundreds of small objects in a large image stay cheap.
    """
    from sam_detect.masks import MaskCrop, crops_iou

    pred_masks = np.asarray(pred_masks, dtype=bool)
    gt_masks = np.asarray(gt_masks, dtype=bool)
    if pred_masks.ndim != 3 or gt_masks.ndim != 3:
        raise ValueError(
            f"masks must be (N, H, W); got pred {pred_masks.shape} and gt {gt_masks.shape}"
        )
    if len(pred_masks) and len(gt_masks) and pred_masks.shape[1:] != gt_masks.shape[1:]:
        raise ValueError(
            f"predictions are {pred_masks.shape[1:]} (H, W) but ground truth is {gt_masks.shape[1:]}"
        )
    return crops_iou([MaskCrop.from_full(m) for m in pred_masks], [MaskCrop.from_full(m) for m in gt_masks])


@dataclass
class Matching:
    """Result of :func:`match_masks` at one IoU threshold.

    ``pairs`` ``(K, 2)`` int64 rows of (prediction index, ground-truth index); ``ious``
    ``(K,)`` float64 their IoU; ``unmatched_pred`` / ``unmatched_gt`` int64 indices.
    """

    pairs: np.ndarray
    ious: np.ndarray
    unmatched_pred: np.ndarray
    unmatched_gt: np.ndarray
    threshold: float

    @property
    def tp(self) -> int:
        return len(self.pairs)

    @property
    def fp(self) -> int:
        return len(self.unmatched_pred)

    @property
    def fn(self) -> int:
        return len(self.unmatched_gt)


def match_iou_matrix(iou: np.ndarray, threshold: float = 0.5) -> Matching:
    """One-to-one matching on a ``(P, G)`` IoU matrix; pairs need ``IoU >= threshold``.

    ``threshold`` must lie in (0, 1]. The assignment maximises the summed IoU of the
    qualifying pairs.
    """
    from scipy.optimize import linear_sum_assignment

    given = np.asarray(iou)
    # a pair qualifies in the matrix's own precision: an IoU of exactly 0.7 stored as float32
    # is float32(0.7), which lies below the float64 0.7
    at = given.dtype.type(threshold) if np.issubdtype(given.dtype, np.floating) else threshold
    iou = given.astype(np.float64)
    if iou.ndim != 2:
        raise ValueError(f"iou must be a (P, G) matrix, got shape {iou.shape}")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"IoU threshold must be in (0, 1], got {threshold}")
    p, g = iou.shape
    pairs = np.zeros((0, 2), dtype=np.int64)
    if p and g:
        eligible = given >= at
        if eligible.any():
            weights = np.where(eligible, iou, 0.0)
            rows, cols = linear_sum_assignment(weights, maximize=True)
            keep = eligible[rows, cols]
            pairs = np.stack([rows[keep], cols[keep]], axis=1).astype(np.int64)
    ious = iou[pairs[:, 0], pairs[:, 1]] if len(pairs) else np.zeros(0)
    return Matching(
        pairs=pairs,
        ious=ious,
        unmatched_pred=np.setdiff1d(np.arange(p), pairs[:, 0]).astype(np.int64),
        unmatched_gt=np.setdiff1d(np.arange(g), pairs[:, 1]).astype(np.int64),
        threshold=float(threshold),
    )


def match_masks(pred_masks: np.ndarray, gt_masks: np.ndarray, threshold: float = 0.5) -> Matching:
    """Match ``(P, H, W)`` predicted to ``(G, H, W)`` ground-truth bool masks at ``threshold``."""
    return match_iou_matrix(mask_iou(pred_masks, gt_masks), threshold)


__all__ = ["Matching", "mask_iou", "match_iou_matrix", "match_masks"]
