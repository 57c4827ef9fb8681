import numpy as np
import pytest

from sam_detect.instances import Instances, masks_to_xyxy


def _two():
    m = np.zeros((2, 8, 10), bool)
    m[0, 1:3, 2:5] = True
    m[1, 5:8, 6:10] = True
    return Instances(masks=m, scores=[0.9, 0.4], labels=["a", "b"], data={"k": np.array([1, 2]), "l": ["x", "y"]})


def test_boxes_from_masks_are_xyxy_exclusive():
    inst = _two()
    np.testing.assert_array_equal(inst.boxes, [[2, 1, 5, 3], [6, 5, 10, 8]])
    assert inst.boxes.dtype == np.float32
    np.testing.assert_array_equal(inst.areas, [6, 12])


def test_boolean_and_index_slicing_keep_parallel_arrays():
    inst = _two()
    hi = inst[inst.scores > 0.5]
    assert len(hi) == 1 and hi.labels[0] == "a" and hi.data["l"] == ["x"]
    rev = inst[np.array([1, 0])]
    assert list(rev.labels) == ["b", "a"] and list(rev.data["k"]) == [2, 1]
    assert len(inst[1:]) == 1 and inst[-1].labels[0] == "b"
    with pytest.raises(IndexError):
        inst[5]
    with pytest.raises(IndexError, match=r"shape \(2,\)"):
        inst[np.array([True])]


def test_validation_states_expected_and_actual_shapes():
    with pytest.raises(ValueError, match=r"masks must have shape \(N, H, W\), got \(4, 4\)"):
        Instances(masks=np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"scores must have shape \(1,\), got \(2,\)"):
        Instances(masks=np.zeros((1, 4, 4)), scores=[1, 2])
    with pytest.raises(ValueError, match=r"data\['x'\] must have length 1, got 2"):
        Instances(masks=np.zeros((1, 4, 4)), data={"x": [1, 2]})
    with pytest.raises(ValueError, match="labels must have length 1"):
        Instances(masks=np.zeros((1, 4, 4)), labels=["a", "b"])


def test_empty_and_merge():
    e = Instances.empty((8, 10))
    assert len(e) == 0 and e.image_hw == (8, 10) and e.boxes.shape == (0, 4)
    assert e.areas.shape == (0,) and e[e.scores > 0.5].image_hw == (8, 10)
    inst = _two()
    merged = Instances.merge([inst, inst[0]])
    assert len(merged) == 3
    assert list(merged.labels) == ["a", "b", "a"]
    assert list(merged.data["k"]) == [1, 2, 1] and merged.data["l"] == ["x", "y", "x"]
    other = Instances(masks=np.zeros((1, 3, 3), bool))
    with pytest.raises(ValueError, match="different image sizes"):
        Instances.merge([inst, other])
    assert len(Instances.merge([])) == 0


def test_masks_to_xyxy_empty_mask_gives_zero_box():
    np.testing.assert_array_equal(masks_to_xyxy(np.zeros((1, 4, 4), bool)), [[0, 0, 0, 0]])


# -- masks kept as tight box crops -------------------------------------------------------
def _random_masks(rng, n=12, hw=(40, 50)):
    masks = np.zeros((n, *hw), bool)
    for i in range(n - 1):  # the last one stays empty
        y, x = rng.integers(0, hw[0]), rng.integers(0, hw[1])
        h, w = rng.integers(1, 12, size=2)
        masks[i, y : y + h, x : x + w] = rng.random((min(h, hw[0] - y), min(w, hw[1] - x))) > 0.3
    masks[0, 0, 0] = masks[0, -1, -1] = True  # touches both image corners
    return masks


def test_dense_round_trip_and_crop_accessors_agree():
    rng = np.random.default_rng(0)
    masks = _random_masks(rng)
    inst = Instances(masks=masks)
    np.testing.assert_array_equal(inst.masks, masks)
    np.testing.assert_array_equal(inst.areas, masks.sum(axis=(1, 2)))
    np.testing.assert_array_equal(inst.boxes, masks_to_xyxy(masks))
    for i in range(len(inst)):
        np.testing.assert_array_equal(inst.mask(i), masks[i])
        crop, sl = inst.mask_crop(i)
        full = np.zeros(masks.shape[1:], bool)
        full[sl] = crop
        np.testing.assert_array_equal(full, masks[i])
        if crop.size:  # tight: first/last rows and columns hold pixels
            assert crop[0].any() and crop[-1].any() and crop[:, 0].any() and crop[:, -1].any()
        np.testing.assert_array_equal(inst.mask_region(i, 5, -3, 30, 25), masks[i, 0:25, 5:30])
    assert inst.mask_crop(len(inst) - 1)[0].shape == (0, 0)


def test_from_crops_tightens_checks_bounds_and_matches_dense():
    crop = np.zeros((5, 6), bool)
    crop[1:3, 2:5] = True
    inst = Instances.from_crops([crop, np.zeros((2, 2), bool)], [(10, 4), (0, 0)], (20, 30), labels=["a", "b"])
    np.testing.assert_array_equal(inst.boxes, [[12, 5, 15, 7], [0, 0, 0, 0]])
    np.testing.assert_array_equal(inst.mask_origins, [[12, 5], [0, 0]])
    dense = np.zeros((2, 20, 30), bool)
    dense[0, 5:7, 12:15] = True
    np.testing.assert_array_equal(inst.masks, dense)
    with pytest.raises(ValueError, match=r"does not lie inside the 20x30 image"):
        Instances.from_crops([crop], [(26, 0)], (20, 30))
    with pytest.raises(ValueError, match=r"must be 2-D"):
        Instances.from_crops([np.zeros((2, 2, 2), bool)], [(0, 0)], (20, 30))
    with pytest.raises(ValueError, match=r"origins must have shape \(1, 2\)"):
        Instances.from_crops([crop], [(0, 0, 0)], (20, 30))


def test_from_label_image_and_back():
    lab = np.zeros((9, 11), np.uint16)
    lab[1:3, 1:4] = 7
    lab[5:9, 6:11] = 3  # touches the bottom-right border
    lab[0, 10] = 40
    inst, ids = Instances.from_label_image(lab)
    np.testing.assert_array_equal(ids, [3, 7, 40])
    np.testing.assert_array_equal(inst.areas, [20, 6, 1])
    relabelled = inst.to_label_image()
    np.testing.assert_array_equal(ids[relabelled[lab > 0] - 1], lab[lab > 0])
    assert (relabelled[lab == 0] == 0).all()
    sparse = lab.astype(np.int64) * 100_000 - (lab == 7) * 800_000  # far apart and negative ids
    again, sparse_ids = Instances.from_label_image(sparse)
    np.testing.assert_array_equal(sparse_ids, [-100_000, 300_000, 4_000_000])
    np.testing.assert_array_equal(again.areas, [6, 20, 1])
    empty, none = Instances.from_label_image(np.zeros((4, 4), int))
    assert len(empty) == 0 and empty.image_hw == (4, 4) and none.size == 0
    with pytest.raises(ValueError, match="2-D"):
        Instances.from_label_image(np.zeros((2, 3, 3), int))


def test_indexing_merge_and_out_of_range_with_crops():
    inst = _two()
    both = Instances.merge([inst[[1]], inst[[0]]])
    np.testing.assert_array_equal(both.masks, inst.masks[::-1])
    with pytest.raises(IndexError):
        inst[np.array([0, 5])]
    # a bool is an int to Python (True == 1) and a float would be truncated: both refused
    for bad in (True, False, np.bool_(True), np.array([1.9]), [0.0, 1.0]):
        with pytest.raises(IndexError, match="bool|integers"):
            inst[bad]
    assert len(inst[[]]) == 0 and len(inst[np.array([], np.int64)]) == 0
    assert list(inst[np.array([True, False])].areas) == [inst.areas[0]]


def test_many_objects_on_a_large_image_cost_their_area_not_n_h_w():
    import tracemalloc

    h = w = 4096
    n = 3000
    rng = np.random.default_rng(1)
    xy = rng.integers(0, w - 40, size=(n, 2))
    disc = np.hypot(*np.mgrid[-15:16, -15:16]) <= 15
    tracemalloc.start()
    inst = Instances.from_crops([disc] * n, xy, (h, w), labels=["cell"] * n)
    kept = inst[inst.areas > 0]
    merged = Instances.merge([kept[: n // 2], kept[n // 2 :]])
    lab = merged.to_label_image(np.uint16)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # dense (N, H, W) masks would be 3000 x 16 MiB = 47 GiB; the label image alone is 32 MiB
    assert peak < 100 * 2**20, peak
    assert len(merged) == n and lab.max() == n
    np.testing.assert_array_equal(merged.areas, np.full(n, disc.sum()))


def test_placed_moves_instances_into_a_larger_image():
    masks = np.zeros((2, 20, 30), bool)
    masks[0, 2:5, 3:9] = True
    masks[1, 10:20, 25:30] = True
    inst = Instances(masks=masks, labels=["a", "b"], scores=[0.5, 0.9], data={"k": [1, 2]}, metadata={"m": 1})
    big = inst.placed(40, 7, (100, 120))
    assert big.image_hw == (100, 120) and big.data == {"k": [1, 2]} and big.metadata == {"m": 1}
    assert np.array_equal(big.masks[:, 7:27, 40:70], masks) and big.masks.sum() == masks.sum()
    assert np.allclose(big.boxes, inst.boxes + [40, 7, 40, 7]) and list(big.labels) == ["a", "b"]
    assert np.allclose(big.scores, [0.5, 0.9])
    with pytest.raises(ValueError, match="does not lie inside"):
        inst.placed(100, 0, (100, 120))
    assert len(Instances.empty((20, 30)).placed(5, 5, (50, 50))) == 0


def test_a_label_image_too_narrow_for_its_ids_is_refused_not_wrapped():
    """``to_label_image(np.uint8)`` of 300 objects painted object 256 as background (0) and
    257 as object 1, silently; the ids that do not fit the dtype are refused, a wider one asked
    for. ``values`` (track ids) are checked the same way."""
    lab = np.arange(1, 301).reshape(15, 20)
    inst, _ = Instances.from_label_image(lab)
    with pytest.raises(ValueError, match="ids up to 300 do not fit a uint8 label image"):
        inst.to_label_image(np.uint8)
    np.testing.assert_array_equal(inst.to_label_image(np.uint16), lab)
    with pytest.raises(ValueError, match="ids up to 70000 do not fit a uint16"):
        _two().to_label_image(np.uint16, values=[5, 70000])
    assert _two().to_label_image(np.uint8, values=[5, 255]).max() == 255
    for values in ([5], [5, 6, 7]):
        with pytest.raises(ValueError, match=rf"values must hold one value per instance \(2\), got {len(values)}"):
            _two().to_label_image(values=values)
    assert Instances.empty((3, 4)).to_label_image(np.uint8).shape == (3, 4)


def test_one_label_string_labels_every_instance():
    """``Instances(masks=seven, labels="nucleus")`` labelled them 'n', 'u', 'c', 'l', 'e', 'u',
    's' (and 'abc' for three crops), silently: one string is every instance's label."""
    m = np.zeros((7, 5, 5), bool)
    for i in range(7):
        m[i, 0, i % 5] = m[i, 4, i // 5] = True
    assert list(Instances(masks=m, labels="nucleus").labels) == ["nucleus"] * 7
    crops = Instances.from_crops([np.ones((1, 1), bool)] * 3, [(0, 0), (1, 1), (2, 2)], (5, 5), labels="abc")
    assert list(crops.labels) == ["abc"] * 3
    assert list(Instances(masks=m[:2], labels=["a", "b"]).labels) == ["a", "b"]
