"""MaskCrop, the one mask-as-box-crop type: boxes, areas, full <-> crop, IoU, empty masks,
masks on the image's edge, and Instances handing them out."""

from __future__ import annotations

import numpy as np
import pytest

from sam_detect.errors import AnnotationError
from sam_detect.instances import Instances
from sam_detect.masks import MaskCrop, crops_iou


def dense_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else 0.0


def random_mask(rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray:
    h, w = hw
    m = np.zeros(hw, bool)
    if rng.random() < 0.15:
        return m  # empty
    y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
    y1, x1 = int(rng.integers(y0, h)) + 1, int(rng.integers(x0, w)) + 1
    if rng.random() < 0.4:  # on the image's edge
        y0, x1 = 0, w
    m[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) > 0.3
    return m


def test_box_area_slices_of_a_tight_crop():
    m = np.zeros((20, 30), bool)
    m[3:7, 10:25] = True
    m[5, 10] = False
    c = MaskCrop.from_full(m)
    assert c.origin == (10, 3) and (c.x0, c.y0) == (10, 3)
    assert c.box == (10, 3, 25, 7) and c.crop.shape == (4, 15)
    assert c.area == 59
    rows, cols = c.slices
    assert (rows, cols) == (slice(3, 7), slice(10, 25))
    np.testing.assert_array_equal(m[rows, cols], c.crop)
    assert c.contains(10, 3) and not c.contains(10, 5) and not c.contains(9, 3) and not c.contains(29, 19)


@pytest.mark.parametrize("seed", range(3))
def test_full_crop_round_trip(seed):
    rng = np.random.default_rng(seed)
    for _ in range(100):
        hw = (int(rng.integers(1, 40)), int(rng.integers(1, 40)))
        m = random_mask(rng, hw)
        c = MaskCrop.from_full(m)
        np.testing.assert_array_equal(c.full(hw), m)
        assert c.area == int(m.sum())
        assert c.tight() is c  # from_full is already tight
        if m.any():
            ys, xs = np.nonzero(m)
            assert c.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        # a loose crop (margins of background) is the same mask and tightens to the same box
        if c.area:
            x0, y0, x1, y1 = c.box
            lx0, ly0 = max(x0 - 2, 0), max(y0 - 1, 0)
            loose = MaskCrop(m[ly0 : y1 + 3, lx0 : x1 + 1], (lx0, ly0))
            np.testing.assert_array_equal(loose.full(hw), m)
            assert loose.tight().box == c.box and loose.area == c.area


def test_from_full_copies_and_offsets_by_origin():
    m = np.zeros((6, 6), bool)
    m[2:4, 1:3] = True
    c = MaskCrop.from_full(m, origin=(100, 50))
    m[:] = False
    assert c.area == 4 and c.box == (101, 52, 103, 54)


def test_empty_masks():
    e = MaskCrop.from_full(np.zeros((5, 7), bool))
    assert e.crop.shape == (0, 0) and e.origin == (0, 0) and e.box == (0, 0, 0, 0) and e.area == 0
    assert not e.full((5, 7)).any() and e.full((5, 7)).shape == (5, 7)
    assert MaskCrop(np.zeros((3, 3), bool), (2, 2)).tight().crop.shape == (0, 0)
    full = MaskCrop.from_full(np.ones((5, 7), bool))
    assert e.iou(e) == 0.0 and e.iou(full) == 0.0 and e.intersection(full) == 0
    assert e.union(full).box == full.box and full.union(e).area == full.area
    np.testing.assert_array_equal(crops_iou([e], [e, full]), [[0.0, 0.0]])
    assert crops_iou([], [full]).shape == (0, 1)


def test_edge_of_image_and_parts_outside():
    hw = (10, 12)
    corner = np.zeros(hw, bool)
    corner[7:, 9:] = True  # touches the bottom-right corner
    c = MaskCrop.from_full(corner)
    assert c.box == (9, 7, 12, 10)
    np.testing.assert_array_equal(c.full(hw), corner)
    # a crop hanging over the image's edge: full() drops what lies outside
    over = MaskCrop(np.ones((4, 4), bool), (10, 8))
    got = over.full(hw)
    assert got.sum() == 4 and got[8:, 10:].all()
    np.testing.assert_array_equal(over.region(8, 6, 16, 14)[2:6, 2:6], np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="does not lie inside"):
        Instances.from_crops([over], None, hw)


@pytest.mark.parametrize("seed", range(3))
def test_iou_intersection_union_equal_dense(seed):
    rng = np.random.default_rng(50 + seed)
    hw = (25, 31)
    masks = [random_mask(rng, hw) for _ in range(12)]
    crops = [MaskCrop.from_full(m) for m in masks]
    for a, ca in zip(masks, crops, strict=True):
        for b, cb in zip(masks, crops, strict=True):
            assert ca.iou(cb) == pytest.approx(dense_iou(a, b), abs=0)
            assert ca.intersection(cb) == int(np.count_nonzero(a & b))
            np.testing.assert_array_equal(ca.union(cb).full(hw), a | b)
    want = np.array([[dense_iou(a, b) for b in masks[6:]] for a in masks[:6]])
    np.testing.assert_array_equal(crops_iou(crops[:6], crops[6:]), want)


def test_iou_known_values():
    a = MaskCrop(np.ones((2, 2), bool), (0, 0))
    b = MaskCrop(np.ones((2, 2), bool), (1, 0))
    assert a.iou(b) == pytest.approx(2 / 6)
    assert a.iou(a) == 1.0
    assert a.iou(MaskCrop(np.ones((2, 2), bool), (5, 5))) == 0.0  # disjoint boxes


def test_not_2d_is_refused():
    with pytest.raises(AnnotationError, match="2-D"):
        MaskCrop(np.ones(4, bool))
    with pytest.raises(AnnotationError, match=r"\(H, W\)"):
        MaskCrop.from_full(np.ones((2, 2, 2), bool))


def test_instances_store_and_hand_out_mask_crops():
    rng = np.random.default_rng(7)
    hw = (18, 22)
    masks = np.stack([random_mask(rng, hw) for _ in range(8)])
    inst = Instances(masks=masks)
    assert all(isinstance(c, MaskCrop) for c in inst.crops)
    for i, c in enumerate(inst.crops):
        assert c is inst.crop(i)
        np.testing.assert_array_equal(c.full(hw), masks[i])
        crop, sl = inst.mask_crop(i)
        assert crop is c.crop and sl == c.slices
        assert tuple(inst.mask_origins[i]) == c.origin
        assert tuple(inst.boxes[i]) == c.box
    again = Instances.from_crops(inst.crops, None, hw)
    np.testing.assert_array_equal(again.masks, masks)
    assert [c.box for c in inst[::2].crops] == [c.box for c in inst.crops[::2]]


# -- sparse overlapping pairs ---------------------------------------------------------------


def brute_box_pairs(a: np.ndarray, b: np.ndarray, same: bool) -> set[tuple[int, int]]:
    out = set()
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            if same and j <= i:
                continue
            if max(p[0], q[0]) < min(p[2], q[2]) and max(p[1], q[1]) < min(p[3], q[3]):
                out.add((i, j))
    return out


def random_boxes(rng: np.random.Generator, n: int, side: int, big: int) -> np.ndarray:
    x0, y0 = rng.integers(-5, side, n), rng.integers(0, side, n)
    w, h = rng.integers(0, 30, n), rng.integers(0, 30, n)  # zero-width boxes overlap nothing
    w[:big] = rng.integers(100, 3 * side, big)  # a few boxes over many grid cells
    return np.stack([x0, y0, x0 + w, y0 + h], 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_box_pairs_equal_every_pair_checked(seed, monkeypatch):
    import sam_detect.masks as masks
    from sam_detect.masks import box_pairs

    rng = np.random.default_rng(seed)
    a, b = random_boxes(rng, 300, 400, 4), random_boxes(rng, 120, 400, 2)
    if seed == 2:
        monkeypatch.setattr(masks, "_PAIR_BLOCK", 7)  # many small blocks of joined cells
    for got, want in (
        (box_pairs(a), brute_box_pairs(a, a, True)),
        (box_pairs(a, b), brute_box_pairs(a, b, False)),
    ):
        i, j = got
        assert set(zip(i.tolist(), j.tolist(), strict=True)) == want
        assert len(i) == len(want)  # each pair once, though the boxes share many cells
        assert np.all(np.diff(i) >= 0)
    empty = box_pairs(np.zeros((0, 4), np.int64), b)
    assert empty[0].shape == (0,) and empty[1].shape == (0,)


def test_crop_intersections_are_the_dense_ones_without_the_matrix():
    from sam_detect.masks import crop_intersections

    rng = np.random.default_rng(5)
    hw = (40, 50)
    full = [random_mask(rng, hw) for _ in range(25)]
    crops = [MaskCrop.from_full(m) for m in full]
    i, j, inter = crop_intersections(crops)
    want = {(p, q): int(np.count_nonzero(full[p] & full[q])) for p in range(25) for q in range(p + 1, 25)}
    want = {k: v for k, v in want.items() if v}
    assert dict(zip(zip(i.tolist(), j.tolist(), strict=True), inter.tolist(), strict=True)) == want


def test_overlaps_among_a_whole_slide_of_candidates_are_found_sparsely():
    """187,688 candidates (a whole slide's alternatives): a dense N x N IoU would need
    280 GB; the sparse pairs find the one overlap of each half with its whole, nothing else."""
    from sam_detect.select import overlap_pairs

    side, n = 500, 500  # objects on a 500 x 500 grid, 6 px apart
    disk = np.ones((4, 4), bool)
    crops, origins = [], []
    for y in range(side):
        for x in range(n // 2 if y % 2 else n):  # 375 objects per 2 rows
            crops.append(disk)
            origins.append((6 * x, 6 * y))
    n_obj = len(crops)
    half = np.zeros((4, 4), bool)
    half[:2] = True
    for k in range(0, n_obj, 1000):  # every 1000th object also offered as its top half
        crops.append(half)
        origins.append(origins[k])
    inst = Instances.from_crops(crops, np.asarray(origins, np.int64), (6 * side, 6 * n))
    assert len(inst) > 180_000
    pairs = overlap_pairs(inst)
    assert len(pairs) == len(inst) - n_obj == len(range(0, n_obj, 1000))
    assert all(j == n_obj + i // 1000 and frac == 1.0 for i, j, frac in pairs)


def test_a_piece_where_two_known_objects_meet_overlaps_them():
    """A candidate lying 86 % inside two examples together, under half of each, was kept beside
    them on their image (and took their shared pixels in the label image). ``overlapping``
    counts the known objects together as well as one by one."""
    from sam_detect.instances import Instances
    from sam_detect.select import overlapping

    known = np.zeros((2, 40, 60), bool)
    known[0, 10:30, 5:30] = True
    known[1, 10:30, 30:55] = True
    piece = np.zeros((2, 40, 60), bool)
    piece[0, 12:28, 18:42] = True  # half in each: inside both together
    piece[1, 0:8, 0:10] = True  # outside both
    assert overlapping(Instances(masks=piece), Instances(masks=known)).tolist() == [True, False]
    assert overlapping(Instances(masks=piece[:1]), Instances(masks=known[:1])).tolist() == [False]  # one alone: under half
