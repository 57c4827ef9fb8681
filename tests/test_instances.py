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
