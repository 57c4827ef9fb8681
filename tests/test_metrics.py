"""Matching and metrics on cases whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from sam_detect.eval import compute_metrics, mask_iou, match_iou_matrix, match_masks
from sam_detect.eval.metrics import MetricsAccumulator
from sam_detect.instances import UNKNOWN, Instances

HW = (64, 64)


def rect(y0: int, x0: int, y1: int, x1: int, hw: tuple[int, int] = HW) -> np.ndarray:
    m = np.zeros(hw, dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def inst(masks: list[np.ndarray], labels: list[str] | None = None, hw=HW) -> Instances:
    if not masks:
        return Instances.empty(hw)
    return Instances(masks=np.stack(masks), labels=labels or ["cell"] * len(masks))


GT3 = [rect(2, 2, 12, 12), rect(20, 20, 30, 30), rect(40, 5, 50, 15)]


# -- mask IoU ------------------------------------------------------------------------------
def test_mask_iou_matches_brute_force():
    rng = np.random.default_rng(0)
    a = rng.random((5, 32, 40)) > 0.7
    b = rng.random((4, 32, 40)) > 0.6
    b[0] = False  # an empty mask
    want = np.zeros((5, 4))
    for i in range(5):
        for j in range(4):
            union = (a[i] | b[j]).sum()
            want[i, j] = (a[i] & b[j]).sum() / union if union else 0.0
    np.testing.assert_allclose(mask_iou(a, b), want)


def test_mask_iou_known_value_and_disjoint_boxes():
    a = rect(0, 0, 10, 10)[None]
    b = np.stack([rect(0, 5, 10, 15), rect(30, 30, 40, 40)])
    iou = mask_iou(a, b)
    assert iou[0, 0] == pytest.approx(50 / 150)
    assert iou[0, 1] == 0.0


def test_mask_iou_rejects_size_mismatch():
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        mask_iou(np.ones((1, 4, 4), bool), np.ones((1, 5, 4), bool))


# -- matching ------------------------------------------------------------------------------
def test_hungarian_beats_greedy():
    # Greedy (best IoU first) would pair p0-g0 (0.9) and leave p1 unmatched.
    iou = np.array([[0.9, 0.6], [0.7, 0.0]])
    m = match_iou_matrix(iou, 0.5)
    assert m.tp == 2
    assert sorted(map(tuple, m.pairs.tolist())) == [(0, 1), (1, 0)]
    assert m.fp == 0 and m.fn == 0


def test_matching_threshold_is_inclusive_and_validated():
    iou = np.array([[0.5]])
    assert match_iou_matrix(iou, 0.5).tp == 1
    assert match_iou_matrix(iou, 0.51).tp == 0
    with pytest.raises(ValueError, match="in \\(0, 1\\]"):
        match_iou_matrix(iou, 0.0)


@pytest.mark.parametrize("threshold", [0.7, 0.9, 0.65, 0.95])
def test_an_iou_of_exactly_the_threshold_held_as_float32_qualifies(threshold):
    """eval keeps its IoU matrices as float32: float32(0.7) lies below the float64 0.7, so
    a pair at exactly 0.7 (196 of 280 pixels) was counted a miss at --iou 0.7."""
    for dtype in (np.float32, np.float64):
        iou = np.array([[threshold, 0.0], [0.0, 0.2]], dtype)
        assert match_iou_matrix(iou, threshold).tp == 1
    assert match_iou_matrix(np.array([[196 / 280]], np.float32), 0.7).tp == 1
    assert match_iou_matrix(np.array([[np.nextafter(np.float32(threshold), 0)]], np.float32), threshold).tp == 0


def test_match_masks_empty_sides():
    m = match_masks(np.zeros((0, *HW), bool), np.stack(GT3), 0.5)
    assert (m.tp, m.fp, m.fn) == (0, 0, 3)
    m = match_masks(np.stack(GT3), np.zeros((0, *HW), bool), 0.5)
    assert (m.tp, m.fp, m.fn) == (0, 3, 0)


# -- metrics: known answers ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("pred_masks", "tp", "fp", "fn", "precision", "recall", "f1"),
    [
        pytest.param(GT3, 3, 0, 0, 1.0, 1.0, 1.0, id="perfect"),
        pytest.param(GT3[:2], 2, 0, 1, 1.0, 2 / 3, 0.8, id="one-miss"),
        pytest.param(
            [*GT3, rect(55, 55, 62, 62)], 3, 1, 0, 0.75, 1.0, 6 / 7, id="one-false-positive"
        ),
        pytest.param([], 0, 0, 3, 0.0, 0.0, 0.0, id="empty-prediction"),
    ],
)
def test_known_answers(pred_masks, tp, fp, fn, precision, recall, f1):
    m = compute_metrics(inst(pred_masks), inst(GT3), iou_thresholds=(0.3, 0.5))
    for t in (0.3, 0.5):
        c = m[t]
        assert (c.tp, c.fp, c.fn) == (tp, fp, fn)
        assert c.precision == pytest.approx(precision)
        assert c.recall == pytest.approx(recall)
        assert c.f1 == pytest.approx(f1)
        assert c.mean_iou == pytest.approx(1.0 if tp else 0.0)
        assert m.at(t).detection.f1 == pytest.approx(f1)


def test_empty_ground_truth():
    m = compute_metrics(inst(GT3[:2]), inst([]), iou_thresholds=(0.5,))
    c = m[0.5]
    assert (c.tp, c.fp, c.fn) == (0, 2, 0)
    assert (c.precision, c.recall, c.f1) == (0.0, 0.0, 0.0)
    both = compute_metrics(inst([]), inst([]), iou_thresholds=(0.5,))[0.5]
    assert (both.tp, both.fp, both.fn, both.f1) == (0, 0, 0, 0.0)


def test_split_object():
    gt = inst([rect(10, 10, 20, 30)])  # 10 x 20 = 200 px
    pred = inst([rect(10, 10, 20, 22), rect(10, 22, 20, 30)])  # 120 px (IoU 0.6) + 80 px (IoU 0.4)
    m = compute_metrics(pred, gt, iou_thresholds=(0.3, 0.5, 0.7))
    for t in (0.3, 0.5):
        c = m[t]
        assert (c.tp, c.fp, c.fn) == (1, 1, 0)
        assert c.mean_iou == pytest.approx(0.6)
        assert c.f1 == pytest.approx(2 / 3)
    assert (m[0.7].tp, m[0.7].fp, m[0.7].fn) == (0, 2, 1)


def test_merged_objects():
    gt = inst([rect(10, 10, 20, 20), rect(10, 22, 20, 30)])  # 100 px and 80 px
    pred = inst([rect(10, 10, 20, 30)])  # covers both (200 px): IoU 0.5 and 0.4
    c = compute_metrics(pred, gt, iou_thresholds=(0.5,))[0.5]
    assert (c.tp, c.fp, c.fn) == (1, 0, 1)
    assert c.mean_iou == pytest.approx(0.5)


def test_partial_overlap_mean_iou():
    gt = inst([rect(0, 0, 10, 10), rect(30, 30, 40, 40)])
    pred = inst([rect(0, 0, 10, 8), rect(30, 30, 40, 40)])  # IoU 0.8 and 1.0
    m = compute_metrics(pred, gt, iou_thresholds=(0.5, 0.9))
    assert m[0.5].mean_iou == pytest.approx(0.9)
    assert (m[0.9].tp, m[0.9].fp, m[0.9].fn) == (1, 1, 1)
    assert m[0.9].mean_iou == pytest.approx(1.0)


def test_counts_accumulate_over_images():
    preds = [inst(GT3), inst(GT3[:1])]
    gts = [inst(GT3), inst(GT3)]
    c = compute_metrics(preds, gts, iou_thresholds=(0.5,))[0.5]
    assert (c.tp, c.fp, c.fn) == (4, 0, 2)
    with pytest.raises(ValueError, match="2 prediction sets but 1"):
        compute_metrics(preds, gts[:1])


# -- classes -------------------------------------------------------------------------------
def test_wrong_label_is_detection_hit_but_class_miss():
    gt = inst(GT3, ["cat", "dog", "dog"])
    pred = inst(GT3, ["cat", "dog", "cat"])  # third object found, labelled wrong
    m = compute_metrics(pred, gt, iou_thresholds=(0.5,))
    t = m.at(0.5)
    assert (t.detection.tp, t.detection.fp, t.detection.fn) == (3, 0, 0)
    assert (t.overall.tp, t.overall.fp, t.overall.fn) == (2, 1, 1)
    assert (t.per_class["cat"].tp, t.per_class["cat"].fp, t.per_class["cat"].fn) == (1, 1, 0)
    assert (t.per_class["dog"].tp, t.per_class["dog"].fp, t.per_class["dog"].fn) == (1, 0, 1)
    assert t.per_class["dog"].recall == pytest.approx(0.5)
    assert t.macro_f1 == pytest.approx((2 / 3 + 2 / 3) / 2)
    cm = t.confusion
    assert cm.classes == ["cat", "dog"]
    # rows: gt cat, gt dog, spurious; columns: pred cat, pred dog, missed
    np.testing.assert_array_equal(cm.matrix, [[1, 0, 0], [1, 1, 0], [0, 0, 0]])


def test_confusion_counts_misses_and_spurious():
    gt = inst(GT3[:2], ["a", "b"])
    pred = inst([GT3[0], rect(55, 55, 62, 62)], ["a", "b"])
    cm = compute_metrics(pred, gt, iou_thresholds=(0.5,)).at(0.5).confusion
    np.testing.assert_array_equal(cm.matrix, [[1, 0, 0], [0, 0, 1], [0, 1, 0]])


def test_unknown_predictions_are_dropped():
    pred = inst([*GT3, rect(55, 55, 62, 62)], ["cell", "cell", UNKNOWN, UNKNOWN])
    m = compute_metrics(pred, inst(GT3), iou_thresholds=(0.5,))
    c = m[0.5]
    assert (c.tp, c.fp, c.fn) == (2, 0, 1)
    assert m.n_pred == 2


def test_ignored_ground_truth_counts_neither_way():
    # GT 0 was a few-shot example: its detection is neither TP nor FP, and missing it is no FN
    acc = MetricsAccumulator((0.5,))
    out = acc.add(inst(GT3), inst(GT3), ignore_gt=np.array([True, False, False]))
    c = acc.result()[0.5]
    assert (c.tp, c.fp, c.fn) == (2, 0, 0)
    np.testing.assert_array_equal(out[0.5].ignored_pred, [0])
    acc2 = MetricsAccumulator((0.5,))
    acc2.add(inst(GT3[1:2]), inst(GT3), ignore_gt=np.array([True, False, False]))
    r = acc2.result()
    assert (r[0.5].tp, r[0.5].fp, r[0.5].fn) == (1, 0, 1)
    assert (r.n_gt, r.n_ignored_gt) == (2, 1)


def test_image_match_indices_point_into_inputs():
    pred = inst([rect(55, 55, 62, 62), GT3[1], GT3[0]], ["cell", UNKNOWN, "cell"])
    acc = MetricsAccumulator((0.5,))
    im = acc.add(pred, inst(GT3))[0.5]
    np.testing.assert_array_equal(im.tp_pred, [2])
    np.testing.assert_array_equal(im.tp_gt, [0])
    np.testing.assert_array_equal(im.fp_pred, [0])
    np.testing.assert_array_equal(sorted(im.fn_gt), [1, 2])


def test_to_dict_is_json_ready():
    import json

    m = compute_metrics(inst(GT3[:2]), inst(GT3), iou_thresholds=(0.3, 0.5))
    d = json.loads(json.dumps(m.to_dict()))
    assert d["by_iou"]["0.5"]["f1"] == pytest.approx(0.8)
    assert d["by_iou"]["0.3"]["per_class"]["cell"]["fn"] == 1
    assert d["n_gt"] == 3 and d["n_pred"] == 2


@pytest.mark.parametrize("bad", [(), (0.0,), (1.5,), (-0.1, 0.5)])
def test_bad_thresholds(bad):
    with pytest.raises(ValueError, match="threshold"):
        MetricsAccumulator(bad)
