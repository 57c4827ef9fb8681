"""Crop-based outputs equal their dense (full-image mask) definitions, and scale to big images.

Every writer works from each mask's box crop (``Instances.mask_crop``): RLE, polygons,
contours, label images, IoU and overlays must come out exactly as they would from the
full ``(H, W)`` masks, including masks that touch the image border, empty masks and
1-pixel masks; and a 4096 x 4096 image with hundreds of objects must never cost
``N x H x W`` memory.
"""

from __future__ import annotations

import tracemalloc

import cv2
import numpy as np
import pytest

import sam_detect.formats as A
from sam_detect import outputs
from sam_detect.eval.matching import mask_iou
from sam_detect.eval.metrics import ImageMatch, compute_metrics, instances_iou
from sam_detect.eval.report import EXAMPLE_COLOR, FN_COLOR, FP_COLOR, TP_COLOR, render_match_overlay
from sam_detect.instances import Instances
from sam_detect.masks import (
    MaskCrop,
    box_to_crop,
    box_to_mask,
    crop_contours,
    crop_to_polygons,
    crop_to_rle,
    mask_to_polygons,
    mask_to_rle,
    polygons_to_crop,
    polygons_to_mask,
)


# -- random masks, many touching the image border ---------------------------------------------
def random_mask(rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray:
    h, w = hw
    m = np.zeros(hw, bool)
    kind = int(rng.integers(0, 6))
    if kind == 0:  # empty
        return m
    if kind == 1:  # one pixel, often on the border
        m[
            rng.choice([0, h - 1, int(rng.integers(0, h))]),
            rng.choice([0, w - 1, int(rng.integers(0, w))]),
        ] = True
        return m
    if kind == 2:  # the whole image
        m[:] = True
        return m
    # a noisy blob in a random box, snapped to the border half the time
    y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
    y1, x1 = int(rng.integers(y0, h)) + 1, int(rng.integers(x0, w)) + 1
    if rng.random() < 0.5:
        y0, x1 = 0, w
    if rng.random() < 0.5:
        x0, y1 = 0, h
    m[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) > rng.uniform(0.0, 0.8)
    return m


def random_instances(rng: np.random.Generator, n: int, hw: tuple[int, int]) -> Instances:
    masks = np.stack([random_mask(rng, hw) for _ in range(n)]) if n else np.zeros((0, *hw), bool)
    labels = rng.choice(["a", "b"], size=n).tolist()
    return Instances(
        masks=masks, labels=labels, label_confidences=rng.random(n), scores=rng.random(n)
    )


def same_polygons(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(
        p.dtype == q.dtype and np.array_equal(p, q) for p, q in zip(a, b, strict=True)
    )


# -- masks.py helpers ---------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
def test_crop_to_rle_is_byte_identical_to_full_mask_rle(seed):
    rng = np.random.default_rng(seed)
    for _ in range(250):
        hw = (int(rng.integers(1, 70)), int(rng.integers(1, 70)))
        m = random_mask(rng, hw)
        mc = MaskCrop.from_full(m)
        crop, origin = mc.crop, mc.origin
        assert crop_to_rle(crop, origin, hw) == mask_to_rle(m)
        # a crop that is not tight (background margin inside the image) gives the same RLE
        if crop.size:
            x0, y0 = origin
            x0b, y0b = max(x0 - 2, 0), max(y0 - 1, 0)
            loose = m[y0b : y0 + crop.shape[0] + 3, x0b : x0 + crop.shape[1] + 1]
            assert crop_to_rle(loose, (x0b, y0b), hw) == mask_to_rle(m)


def test_crop_to_rle_edge_cases():
    hw = (5, 7)
    for y, x in [(0, 0), (4, 6), (0, 6), (4, 0), (2, 3)]:  # 1-pixel masks, corners included
        m = np.zeros(hw, bool)
        m[y, x] = True
        assert crop_to_rle(np.ones((1, 1), bool), (x, y), hw) == mask_to_rle(m)
    empty = np.zeros((0, 0), bool)
    assert crop_to_rle(empty, (0, 0), hw) == mask_to_rle(np.zeros(hw, bool))
    assert crop_to_rle(empty, (3, 2), hw) == mask_to_rle(np.zeros(hw, bool))
    assert crop_to_rle(np.zeros((2, 2), bool), (1, 1), hw) == mask_to_rle(np.zeros(hw, bool))
    assert crop_to_rle(np.ones(hw, bool), (0, 0), hw) == mask_to_rle(np.ones(hw, bool))
    for shape in [(1, 9), (9, 1), (1, 1)]:
        m = np.ones(shape, bool)
        assert crop_to_rle(m, (0, 0), shape) == mask_to_rle(m)
    with pytest.raises(Exception, match="outside"):
        crop_to_rle(np.ones((2, 2), bool), (6, 0), hw)


@pytest.mark.parametrize("seed", range(4))
def test_crop_polygons_and_contours_equal_full_mask_ones(seed):
    rng = np.random.default_rng(100 + seed)
    for _ in range(150):
        hw = (int(rng.integers(1, 60)), int(rng.integers(1, 60)))
        m = random_mask(rng, hw)
        mc = MaskCrop.from_full(m)
        crop, origin = mc.crop, mc.origin
        for tol in (0.0, 1.0, 2.5):
            assert same_polygons(crop_to_polygons(crop, origin, hw, tol), mask_to_polygons(m, tol))
        for method in (cv2.CHAIN_APPROX_NONE, cv2.CHAIN_APPROX_SIMPLE):
            full, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, method)
            got = crop_contours(crop, origin, hw, method)
            assert len(got) == len(full) and all(
                np.array_equal(a, b) for a, b in zip(got, full, strict=True)
            )


@pytest.mark.parametrize("seed", range(3))
def test_polygons_and_boxes_to_crop_equal_full_rasterisation(seed):
    rng = np.random.default_rng(200 + seed)
    for _ in range(200):
        hw = (int(rng.integers(1, 60)), int(rng.integers(1, 60)))
        polys = [
            rng.uniform(-15, max(hw) + 15, size=(int(rng.integers(3, 8)), 2))
            for _ in range(int(rng.integers(1, 3)))
        ]
        mc = polygons_to_crop(polys, hw)
        crop, (x0, y0) = mc.crop, mc.origin
        full = np.zeros(hw, bool)
        full[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
        np.testing.assert_array_equal(full, polygons_to_mask(polys, hw))
    box = (2.5, 1.2, 7.0, 30.0)
    mc = box_to_crop(box, (20, 10))
    crop, (x0, y0) = mc.crop, mc.origin
    full = np.zeros((20, 10), bool)
    full[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
    np.testing.assert_array_equal(full, box_to_mask(box, (20, 10)))


# -- outputs.py ---------------------------------------------------------------------------------
def dense_render_overlay(rgb, inst, alpha=0.45):
    """The former full-mask ``render_overlay`` (masks, outlines, boxes; no text)."""
    out = rgb.copy()
    colors = {lab: np.array(outputs.label_color(lab), np.float32) for lab in set(inst.labels)}
    paint = out.astype(np.float32)
    for i in range(len(inst)):
        m = inst.mask(i)
        paint[m] = paint[m] * (1 - alpha) + colors[inst.labels[i]] * alpha
    out = paint.astype(np.uint8)
    for i in range(len(inst)):
        color = tuple(int(c) for c in colors[inst.labels[i]])
        x1, y1, x2, y2 = (int(round(v)) for v in inst.boxes[i])
        contours, _ = cv2.findContours(
            inst.mask(i).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        cv2.drawContours(out, contours, -1, color, 1)
        cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), color, 1)
    return out


@pytest.mark.parametrize("seed", range(3))
def test_instance_records_to_coco_and_overlay_equal_dense(seed):
    rng = np.random.default_rng(300 + seed)
    hw = (41, 57)
    inst = random_instances(rng, 12, hw)
    recs = outputs.instance_records(inst, rle=True, tolerance=1.0)
    for i, rec in enumerate(recs):
        m = inst.mask(i)
        assert rec["rle"] == mask_to_rle(m)
        assert rec["polygons"] == [np.round(p, 2).tolist() for p in mask_to_polygons(m, 1.0)]
        assert rec["area"] == int(m.sum())
    coco = outputs.predictions_to_coco([("a.png", inst), ("b.png", inst[::2])])
    segs = [a["segmentation"] for a in coco["annotations"]]
    want = [mask_to_rle(inst.mask(i)) for i in range(len(inst))]
    want += [mask_to_rle(inst.mask(i)) for i in range(0, len(inst), 2)]
    assert segs == want
    rgb = rng.integers(0, 255, size=(*hw, 3), dtype=np.uint8)
    got = outputs.render_overlay(rgb, inst, text=False)
    np.testing.assert_array_equal(got, dense_render_overlay(rgb, inst))


# -- annotations.py -----------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(3))
def test_annotation_writers_equal_dense(seed):
    from sam_detect.formats.coco import segmentation

    rng = np.random.default_rng(400 + seed)
    hw = (37, 45)
    inst = random_instances(rng, 10, hw)
    # label image: the smaller instance keeps the pixels two share (the larger painted first)
    want = np.zeros(hw, np.uint8)
    for i in np.argsort(-inst.areas, kind="stable"):
        want[inst.mask(i)] = i + 1
    np.testing.assert_array_equal(A.instances_to_label_image(inst), want)
    for use_rle in (False, True):
        doc = A.to_coco(inst, use_rle=use_rle)
        kept = [i for i in range(len(inst)) if inst.mask(i).any()]
        assert [a["area"] for a in doc["annotations"]] == [int(inst.mask(i).sum()) for i in kept]
        for a, i in zip(doc["annotations"], kept, strict=True):
            m = inst.mask(i)
            # the whole image's mask as the crop: RLE where polygons cannot say the mask (a hole)
            assert a["segmentation"] == segmentation(m, (0, 0), hw, tolerance=1.0, use_rle=use_rle)
            if use_rle or isinstance(a["segmentation"], dict):
                assert a["segmentation"] == mask_to_rle(m)
    shapes = A.to_labelme(inst)["shapes"]
    want_pts = [
        p.astype(float).round(2).tolist()
        for i in range(len(inst))
        for p in mask_to_polygons(inst.mask(i))
    ]
    assert [s["points"] for s in shapes] == want_pts


def test_label_image_reading_equals_dense_split():
    from sam_detect.masks import label_image_to_masks

    rng = np.random.default_rng(5)
    lab = rng.choice([0, 0, 0, 3, 7, 8, 300], size=(30, 40)).astype(np.uint16)
    lab[0, :] = 9  # an object along the border
    inst = A.label_image_to_instances(lab, "cell")
    masks, ids = label_image_to_masks(lab)
    np.testing.assert_array_equal(inst.data["source_id"], ids)
    np.testing.assert_array_equal(inst.masks, masks)
    assert list(inst.labels) == ["cell"] * len(ids)
    with pytest.raises(A.AnnotationError, match="2-D"):
        A.label_image_to_instances(np.zeros((2, 3, 4), int))


def test_labelme_circles_and_groups_equal_dense(tmp_path):
    import json

    hw = (40, 50)
    doc = {
        "imageHeight": hw[0],
        "imageWidth": hw[1],
        "shapes": [
            {
                "label": "c",
                "shape_type": "circle",
                "points": [[3.4, 2.2], [3.4, 9.9]],
            },  # cut by the border
            {"label": "g", "points": [[40, 30], [45, 30], [45, 35]], "group_id": 1},
            {"label": "g", "points": [[0, 30], [5, 30], [5, 35]], "group_id": 1},
        ],
    }
    (tmp_path / "lm.json").write_text(json.dumps(doc))
    inst = A.load_annotations(tmp_path / "lm.json")
    yy, xx = np.ogrid[: hw[0], : hw[1]]
    np.testing.assert_array_equal(inst.mask(0), (xx - 3.4) ** 2 + (yy - 2.2) ** 2 <= 7.7**2)
    tri = polygons_to_mask([np.array([[40, 30], [45, 30], [45, 35]])], hw) | polygons_to_mask(
        [np.array([[0, 30], [5, 30], [5, 35]])], hw
    )
    np.testing.assert_array_equal(inst.mask(1), tri)


# -- eval ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_instances_iou_equals_dense_mask_iou(seed):
    rng = np.random.default_rng(500 + seed)
    hw = (int(rng.integers(5, 50)), int(rng.integers(5, 50)))
    pred = random_instances(rng, int(rng.integers(0, 15)), hw)
    gt = random_instances(rng, int(rng.integers(0, 15)), hw)
    got = instances_iou(pred, gt)
    want = mask_iou(pred.masks, gt.masks)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)  # exactly, not approximately


def test_instances_iou_blocks_and_size_check(monkeypatch):
    import sam_detect.eval.metrics as M
    import sam_detect.masks as masks

    rng = np.random.default_rng(9)
    pred, gt = random_instances(rng, 9, (20, 20)), random_instances(rng, 7, (20, 20))
    monkeypatch.setattr(masks, "_PAIR_BLOCK", 3)  # several row blocks
    np.testing.assert_array_equal(M.instances_iou(pred, gt), mask_iou(pred.masks, gt.masks))
    with pytest.raises(ValueError, match="ground truth is"):
        M.instances_iou(pred, random_instances(rng, 2, (20, 21)))


def test_match_overlay_equals_dense():
    rng = np.random.default_rng(11)
    hw = (30, 40)
    pred, gt = random_instances(rng, 8, hw), random_instances(rng, 6, hw)
    match = ImageMatch(
        tp_pred=np.array([0, 2]),
        tp_gt=np.array([1, 0]),
        fp_pred=np.array([3, 5]),
        fn_gt=np.array([2, 4]),
        ignored_pred=np.zeros(0, np.int64),
    )
    ignore = np.array([0, 0, 0, 1, 0, 1], bool)
    rgb = rng.integers(0, 255, size=(*hw, 3), dtype=np.uint8)
    got = render_match_overlay(rgb, pred, gt, match, ignore, thickness=1)
    # the former dense version
    out = rgb.copy()
    fill = out.astype(np.float32)
    groups = [
        (pred.masks[match.tp_pred], TP_COLOR),
        (gt.masks[match.fn_gt], FN_COLOR),
        (pred.masks[match.fp_pred], FP_COLOR),
    ]
    for masks, color in groups:
        any_mask = masks.any(axis=0)
        fill[any_mask] = fill[any_mask] * 0.7 + np.array(color, np.float32) * 0.3
    out = fill.astype(np.uint8)
    outlines = [(m, c) for masks, c in groups for m in masks] + [
        (gt.mask(j), EXAMPLE_COLOR) for j in (3, 5)
    ]
    for m, color in outlines:
        contours, _ = cv2.findContours(
            m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        cv2.drawContours(out, contours, -1, color, 1)
    np.testing.assert_array_equal(got, out)


def test_refine_postprocess_on_crops_equals_full_image():
    from sam_detect.refine import postprocess, result_mask

    rng = np.random.default_rng(13)
    hw = (32, 36)
    for _ in range(40):
        res = random_instances(rng, 3, hw)
        for grow in (-2, -1, 0, 1, 3):
            for keep_parts in (False, True):
                for i in range(len(res)):
                    mc = result_mask(res, i, grow, keep_parts)
                    crop, (x0, y0) = mc.crop, mc.origin
                    got = np.zeros(hw, bool)
                    got[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
                    np.testing.assert_array_equal(got, postprocess(res.mask(i), grow, keep_parts))
        a, b = res.mask(0), res.mask(1)
        union = np.count_nonzero(a | b)
        want = float(np.count_nonzero(a & b) / union) if union else 0.0
        assert MaskCrop.from_full(a).iou(MaskCrop.from_full(b)) == pytest.approx(want, abs=0)


# -- a big image: never N x H x W ---------------------------------------------------------------
def big_instances(n: int = 300, hw: tuple[int, int] = (4096, 4096), seed: int = 0) -> Instances:
    rng = np.random.default_rng(seed)
    crops, origins = [], []
    for k in range(n):
        r = int(rng.integers(3, 15))
        yy, xx = np.ogrid[-r : r + 1, -r : r + 1]
        c = xx**2 + yy**2 <= r * r
        if k < 4:  # objects in the corners, touching the border
            x0, y0 = [
                (0, 0),
                (hw[1] - c.shape[1], 0),
                (0, hw[0] - c.shape[0]),
                (hw[1] - c.shape[1], hw[0] - c.shape[0]),
            ][k]
        else:
            x0 = int(rng.integers(0, hw[1] - c.shape[1] + 1))
            y0 = int(rng.integers(0, hw[0] - c.shape[0] + 1))
        crops.append(c)
        origins.append((x0, y0))
    crops.append(np.ones((1, 1), bool))  # a 1-pixel object
    origins.append((hw[1] - 1, 17))
    return Instances.from_crops(
        crops, origins, hw, labels=rng.choice(["a", "b"], size=n + 1).tolist()
    )


def peak_mib(fn) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_big_image_outputs_stay_small(tmp_path):
    inst = big_instances()
    n, (h, w) = len(inst), inst.image_hw
    dense_mib = n * h * w / 2**20  # what one (N, H, W) bool array would cost: ~4.8 GiB
    bound = 200.0
    assert dense_mib > 20 * bound
    records = []
    assert peak_mib(lambda: records.extend(outputs.instance_records(inst, rle=True))) < bound
    assert len(records) == n
    for i in (0, 1, 2, 3, 50, n - 1):  # spot checks against the full masks
        assert records[i]["rle"] == mask_to_rle(inst.mask(i))
        assert records[i]["polygons"] == [
            np.round(p, 2).tolist() for p in mask_to_polygons(inst.mask(i))
        ]
    coco = {}
    assert peak_mib(lambda: coco.update(outputs.predictions_to_coco([("big.png", inst)]))) < bound
    assert coco["annotations"][n - 1]["segmentation"] == mask_to_rle(inst.mask(n - 1))
    assert peak_mib(lambda: A.to_coco(inst)) < bound
    assert peak_mib(lambda: A.to_coco(inst, use_rle=True)) < bound
    assert peak_mib(lambda: A.to_labelme(inst)) < bound
    path = tmp_path / "big.tif"
    assert peak_mib(lambda: A.save_label_image(inst, path)) < bound
    lab = A.read_label_image(path)
    assert lab.shape == (h, w) and lab.dtype == np.uint16
    np.testing.assert_array_equal(lab, inst.to_label_image(np.uint16))
    assert peak_mib(lambda: instances_iou(inst, inst)) < bound
    m = compute_metrics(inst, inst[::-1], iou_thresholds=(0.5,))
    assert m[0.5].tp == n and m[0.5].fp == 0 and m[0.5].fn == 0


def test_label_maps_keep_a_small_object_lying_on_a_larger_later_one():
    """Objects of a detection may overlap (several classes, the selection's slack): the label
    image gives a shared pixel to the smaller object, so none vanishes under a later, larger
    one (painted in id order, object 0 here had no pixel left)."""
    from sam_detect.outputs import label_maps

    hw = (40, 40)
    small = np.zeros(hw, bool)
    small[10:15, 10:15] = True
    big = np.zeros(hw, bool)
    big[5:30, 5:30] = True
    inst = Instances(masks=np.stack([small, big]), labels=["a", "b"])
    ids, types = label_maps(inst, ["a", "b"])
    assert (ids == 1).sum() == 25 and (ids == 2).sum() == 625 - 25
    assert set(np.unique(types[ids == 1])) == {1} and set(np.unique(types[ids == 2])) == {2}


def test_a_dim_image_is_brightened_under_its_overlay_and_a_bright_one_is_not():
    rng = np.random.default_rng(7)
    hw = (64, 80)
    inst = random_instances(rng, 5, hw)
    dim = np.zeros((*hw, 3), np.uint8)
    dim[..., 1] = rng.integers(0, 50, size=hw)  # a dim green fluorescence frame in 8 bits
    shown = outputs.for_display(dim)
    assert shown[..., 1].max() == 255 and not shown[..., [0, 2]].any()  # one factor: colours kept
    top = np.percentile(dim[..., 1], outputs.DISPLAY_PERCENTILE, method="inverted_cdf")
    np.testing.assert_array_equal(shown[..., 1], np.clip(np.rint(dim[..., 1] * (255 / top)), 0, 255))
    np.testing.assert_array_equal(outputs.render_overlay(dim, inst, text=False),
                                  dense_render_overlay(shown, inst))
    np.testing.assert_array_equal(outputs.render_overlay(dim, inst[:0]), shown)  # nothing found: still seen
    np.testing.assert_array_equal(outputs.render_overlay(dim, inst, text=False, stretch=False),
                                  dense_render_overlay(dim, inst))
    bright = rng.integers(0, 256, size=(*hw, 3), dtype=np.uint8)
    assert outputs.for_display(bright) is bright
    black = np.zeros((*hw, 3), np.uint8)
    assert outputs.for_display(black) is black


def test_a_dim_video_frame_is_brightened_alike_with_and_without_objects():
    from sam_detect.video.writer import draw_annotations

    rng = np.random.default_rng(8)
    hw = (120, 160)
    frame = rng.integers(0, 40, size=(*hw, 3), dtype=np.uint8)
    masks = np.zeros((2, *hw), bool)
    masks[0, 30:40, 20:35] = masks[1, 70:90, 100:120] = True
    inst = Instances(masks=masks, labels=["a", "b"], label_confidences=np.ones(2), scores=np.ones(2))
    shown = outputs.for_display(frame)
    assert shown.max() == 255
    np.testing.assert_array_equal(draw_annotations(frame, None), shown)
    drawn = draw_annotations(frame, inst)
    away = np.ones(hw, bool)
    away[10:45, 15:90] = away[50:95, 95:160] = False  # the objects, their boxes and captions
    np.testing.assert_array_equal(drawn[away], shown[away])
