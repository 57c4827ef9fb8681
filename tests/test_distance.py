"""The distance to the nearest zero pixel is exact and the same however many threads OpenCV
runs: OpenCV's precise transform is a few units in the last place off, by amounts that
depend on its thread count (on one thread, from call to call), and the calibration's splits
seed and flood on it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage

from sam_detect import _distance
from sam_detect._distance import distance_to_zero
from sam_detect.segment import calibrated


@pytest.fixture
def cv2_threads():
    """Set OpenCV's thread count for a test; the process's own count comes back after."""
    before = cv2.getNumThreads()
    yield cv2.setNumThreads
    cv2.setNumThreads(before)


def _discs(seed: int, h: int = 240, w: int = 320, n: int = 40, r_max: int = 30) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w), np.uint8)
    for _ in range(n):
        cv2.circle(img, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(2, r_max)), 1, -1)
    return img


@pytest.mark.parametrize("seed", range(6))
def test_the_distance_is_the_exact_transforms_on_one_thread_or_several(seed, cv2_threads):
    img = _discs(seed)
    if seed % 2:
        img = 1 - img  # distances from the discs, across the ground
    want = ndimage.distance_transform_edt(img).astype(np.float32)
    for threads in (1, 2, 4, 1):
        cv2_threads(threads)
        np.testing.assert_array_equal(distance_to_zero(img), want)
    np.testing.assert_array_equal(distance_to_zero(img.astype(bool)), want)
    np.testing.assert_array_equal(distance_to_zero(img.astype(np.int32) * 256), want)  # not wrapped to 0


def test_far_pixels_take_the_exact_transform_outright(cv2_threads):
    img = np.ones((50, 2 * int(_distance.EXACT_BELOW) + 60), np.uint8)
    img[:, 0] = 0  # the far end lies beyond EXACT_BELOW from the only zeros
    cv2_threads(1)
    got = distance_to_zero(img)
    assert got.max() > _distance.EXACT_BELOW
    np.testing.assert_array_equal(got, ndimage.distance_transform_edt(img).astype(np.float32))


def test_no_zero_pixel_and_an_empty_image():
    got = distance_to_zero(np.ones((3, 4), bool))
    assert got.dtype == np.float32 and np.all(got == np.float32(5.0))  # the diagonal, 3-4-5
    assert distance_to_zero(np.zeros((0, 5), np.uint8)).shape == (0, 5)
    assert not distance_to_zero(np.zeros((2, 2), np.uint8)).any()


def test_the_calibration_grid_does_not_depend_on_opencvs_threads(cv2_threads, monkeypatch):
    """One core (OpenCV on one thread) measured other reproductions than two did, and others
    again from call to call: the same examples' settings must not depend on the machine."""
    import test_calibrated_splits as scenes

    monkeypatch.setattr(calibrated, "HEAVY_SMOOTH_BELOW", 2.0)  # every setting measured
    rgb, lab = scenes.IMAGES["touching disks 1"]()
    scale, masks = scenes.examples_of(rgb, lab, n=4)
    cv2_threads(2)
    want = calibrated.grid_ious(rgb, scale, masks, inset=True)
    cv2_threads(1)
    for _ in range(2):
        np.testing.assert_array_equal(calibrated.grid_ious(rgb, scale, masks, inset=True), want)
    assert want.max() > 0.5
