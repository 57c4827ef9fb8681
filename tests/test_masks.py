import numpy as np
import pytest

from sam_detect.errors import AnnotationError
from sam_detect.masks import (
    box_to_mask,
    label_image_to_masks,
    mask_to_polygons,
    mask_to_rle,
    polygons_to_mask,
    rle_to_mask,
    validate_box,
    validate_point,
)


@pytest.mark.parametrize("seed", range(5))
def test_rle_round_trip_random_masks(seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((37, 53)) > 0.6
    rle = mask_to_rle(mask)
    assert rle["size"] == [37, 53] and isinstance(rle["counts"], str)
    np.testing.assert_array_equal(rle_to_mask(rle), mask)


def test_rle_uncompressed_counts_and_errors():
    # COCO uncompressed RLE is column-major: 2 zeros, 3 ones, 1 zero on a 2x3 image.
    mask = rle_to_mask({"size": [2, 3], "counts": [2, 3, 1]})
    np.testing.assert_array_equal(mask, [[False, True, True], [False, True, False]])
    with pytest.raises(AnnotationError, match="invalid RLE"):
        rle_to_mask({"counts": "abc"})


def test_rle_whose_runs_do_not_cover_its_size_is_refused():
    # pycocotools decoded a short RLE into a mask whose rest was uninitialised memory
    from pycocotools import mask as mask_utils

    from sam_detect.masks import _string_counts

    with pytest.raises(AnnotationError, match=r"cover 15 pixels, not the 200x200 = 40,000"):
        rle_to_mask({"size": [200, 200], "counts": [5, 10]})
    with pytest.raises(AnnotationError, match="negative run length"):
        rle_to_mask({"size": [3, 3], "counts": [5, -2, 6]})
    rng = np.random.default_rng(3)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        m = rng.random((h, w)) < rng.random()
        counts = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))["counts"].decode()
        assert sum(_string_counts(counts)) == h * w
        np.testing.assert_array_equal(rle_to_mask({"size": [h, w], "counts": counts}), m)
        if len(counts) > 2:  # cut short: refused, not decoded from whatever memory held
            with pytest.raises(AnnotationError, match="invalid RLE"):
                rle_to_mask({"size": [h, w], "counts": counts[: len(counts) // 2]})


def test_polygon_round_trip_and_smoothing():
    yy, xx = np.mgrid[:100, :100]
    disk = (yy - 50) ** 2 + (xx - 50) ** 2 < 30**2
    exact = mask_to_polygons(disk, tolerance=0)
    smooth = mask_to_polygons(disk, tolerance=2.0)
    assert len(exact) == 1 and len(smooth) == 1
    assert len(smooth[0]) < len(exact[0]) / 3  # simplification drops most contour points
    back = polygons_to_mask(smooth, disk.shape)
    iou = (back & disk).sum() / (back | disk).sum()
    assert iou > 0.95
    two = np.zeros((20, 20), bool)
    two[2:5, 2:5] = two[10:15, 10:15] = True
    assert len(mask_to_polygons(two)) == 2


def test_polygons_to_mask_accepts_coco_flat_and_rejects_degenerate():
    m = polygons_to_mask([[1, 1, 6, 1, 6, 6, 1, 6]], (10, 10))
    assert m[1:7, 1:7].all() and m.sum() == 36
    with pytest.raises(AnnotationError, match="at least 3"):
        polygons_to_mask([[[0, 0], [1, 1]]], (10, 10))


def test_a_polygon_given_as_a_list_of_points_is_one_polygon():
    square = [(1, 1), (6, 1), (6, 6), (1, 6)]
    m = polygons_to_mask(square, (10, 10))
    assert m.sum() == 36
    np.testing.assert_array_equal(m, polygons_to_mask(np.array(square), (10, 10)))
    np.testing.assert_array_equal(m, polygons_to_mask([square], (10, 10)))
    np.testing.assert_array_equal(m, polygons_to_mask([[list(p) for p in square]], (10, 10)))
    two = polygons_to_mask([square, [(7, 7), (9, 7), (9, 9)]], (10, 10))
    assert two.sum() > 36 and two[8, 8]
    with pytest.raises(AnnotationError, match=r"at least 3 .* shape \(2, 2\)"):
        polygons_to_mask([(0, 0), (1, 1)], (10, 10))


def test_box_and_point_validation():
    np.testing.assert_array_equal(validate_box([-5, 2, 8, 20], (10, 10)), [0, 2, 8, 10])
    with pytest.raises(AnnotationError, match="zero area"):
        validate_box([5, 5, 5, 9], (10, 10))
    with pytest.raises(AnnotationError, match="outside the 10x10 image"):
        validate_box([20, 20, 30, 30], (10, 10))
    with pytest.raises(AnnotationError, match="4 finite numbers"):
        validate_box([1, 2, 3], (10, 10))
    with pytest.raises(AnnotationError, match="outside"):
        validate_point([10, 3], (10, 10))
    assert box_to_mask([1, 1, 3, 4], (5, 5)).sum() == 6


def test_label_image_to_masks():
    lab = np.zeros((6, 6), np.uint16)
    lab[0:2, 0:2] = 5
    lab[3:6, 3:6] = 2
    masks, ids = label_image_to_masks(lab)
    assert list(ids) == [2, 5]
    assert masks.shape == (2, 6, 6) and masks[0].sum() == 9 and masks[1].sum() == 4
    empty, ids = label_image_to_masks(np.zeros((3, 3), int))
    assert empty.shape == (0, 3, 3) and len(ids) == 0


def test_a_small_object_keeps_a_polygon_under_a_large_tolerance():
    """``--tolerance`` beyond a small object's size simplified its outline away (no polygon in
    the JSON); it is simplified less instead, and larger outlines stay as they were."""
    import cv2

    from sam_detect.masks import crop_contours, crop_to_polygons

    yy, xx = np.mgrid[:40, :40]
    small = (yy - 8) ** 2 + (xx - 8) ** 2 <= 9  # radius 3
    for tol in (1.0, 8.0, 12.0):
        polys = crop_to_polygons(small, (0, 0), (40, 40), tolerance=tol)
        assert len(polys) == 1 and len(polys[0]) >= 3
    big = (yy - 20) ** 2 + (xx - 20) ** 2 <= 225
    contour = crop_contours(big, (0, 0), (40, 40))[0]
    expected = cv2.approxPolyDP(contour, 2.0, True).reshape(-1, 2)
    assert np.array_equal(crop_to_polygons(big, (0, 0), (40, 40), tolerance=2.0)[0], expected)


def test_a_tolerance_past_an_outline_s_extent_simplifies_it_as_its_extent_does():
    """``detect --tolerance 1e308`` (a finite number, so accepted) was an internal error, OpenCV's
    "Epsilon not valid" (it refuses 1e30 and more): a tolerance past an outline's extent now
    simplifies it as the extent does, to the fewest points that keep an area, never away."""
    from sam_detect.masks import edge_outlines, mask_to_polygons

    mask = np.zeros((40, 50), bool)
    mask[5:30, 8:40] = True
    mask[12:20, 15:22] = False  # a hole, for the edge outlines' inner ring
    for huge, halved in ((1e30, 1e30 / 2.0**40), (1e308, 1e308 / 2.0**960)):  # halved: ~1e18, as OpenCV takes
        polys = mask_to_polygons(mask, tolerance=huge)
        assert len(polys) == 1 and len(polys[0]) >= 3
        assert [p.tolist() for p in polys] == [p.tolist() for p in mask_to_polygons(mask, tolerance=halved)]
        rings = edge_outlines(mask, (0, 0), tolerance=huge)
        assert [[r.tolist() for r in o] for o in rings] == [[r.tolist() for r in o]
                                                             for o in edge_outlines(mask, (0, 0), tolerance=halved)]
    for t in (0.0, 1.0, 7.5, 33.0, 60.0):  # within an outline's reach, or past it: as before
        assert len(mask_to_polygons(mask, tolerance=t)) == 1
