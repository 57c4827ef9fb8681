"""SAM2 segmenter and embedder, run for real on a randomly initialised SAM 2.1 tiny.

No hub is reachable here, so the model is built from the tiny 2.1 config with random
weights, saved in the official checkpoint layout and loaded back through our loader.
Random weights give arbitrary masks, so the tests check what does not depend on the
weights: shapes, formats, determinism, batching, coordinates, de-duplication and
agreement with SAM2's own predictor. The encoder runs at 256 px (``image_size=256``)
to keep the suite fast on a CPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from sam_detect.errors import AnnotationError, ImageLoadError, ModelNotAvailableError
from sam_detect.instances import Instances, masks_to_xyxy
from sam_detect.segment.tiling import (
    TileMask,
    mark_cut,
    mask_nms,
    merge_tiled,
    tile_windows,
    to_full_masks,
)

SIZE = 256  # encoder input side used by these tests (the default is 1024)
DISCS = [(60, 60, 20), (180, 70, 18), (120, 190, 22)]  # (x, y, r)


def disc_scene(h: int = 256, w: int = 256, discs=DISCS) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:h, :w]
    img = np.full((h, w, 3), 25, np.uint8)
    masks = []
    for x, y, r in discs:
        m = (xx - x) ** 2 + (yy - y) ** 2 < r * r
        img[m] = (210, 190, 170)
        masks.append(m)
    return img, np.stack(masks)


@pytest.fixture(scope="module")
def scene():
    return disc_scene()


def make_seg(sam2_ckpt, **kw):
    from sam_detect.segment.sam2 import SAM2Segmenter

    return SAM2Segmenter(checkpoint=str(sam2_ckpt), device="cpu", image_size=SIZE, **kw)


def make_emb(sam2_ckpt, **kw):
    from sam_detect.embed.sam2 import SAM2Embedder

    return SAM2Embedder(checkpoint=str(sam2_ckpt), device="cpu", image_size=SIZE, **kw)


def check_instances(inst: Instances, hw: tuple[int, int]) -> None:
    n = len(inst)
    assert inst.masks.shape == (n, *hw) and inst.masks.dtype == bool
    np.testing.assert_array_equal(inst.boxes, masks_to_xyxy(inst.masks))
    assert inst.scores.dtype == np.float32 and np.all((inst.scores >= 0) & (inst.scores <= 1))
    assert set(inst.data) == {"area", "stability_score", "point", "prompt_source"}
    np.testing.assert_array_equal(inst.data["area"], inst.masks.sum(axis=(1, 2)))
    assert inst.data["point"].shape == (n, 2)


# -- input guard and options (no model run) -------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16])
def test_non_uint8_input_is_refused(sam2_ckpt, scene, dtype):
    """Float input would silently give no masks in SAM2: refuse it before it gets there."""
    seg = make_seg(sam2_ckpt, mode="guided")
    img = scene[0].astype(dtype)
    for call in (
        lambda: seg.segment(img),
        lambda: seg.prompt(img, point=(5, 5)),
        lambda: seg.propose_points(img),
    ):
        with pytest.raises(
            ImageLoadError,
            match=rf"SAM2 needs an \(H, W, 3\) uint8 RGB image, got dtype {np.dtype(dtype)}",
        ):
            call()
    with pytest.raises(ImageLoadError, match="to_rgb_uint8"):
        make_emb(sam2_ckpt).embed_instances(img, scene[1])


def test_gray_and_rgba_uint8_are_accepted():
    from sam_detect.models.sam2_runtime import check_sam2_image

    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert check_sam2_image(gray).shape == (3, 4, 3)
    rgba = np.zeros((3, 4, 4), np.uint8)
    assert check_sam2_image(rgba).shape == (3, 4, 3)
    with pytest.raises(ImageLoadError, match=r"got shape \(3, 4, 2\)"):
        check_sam2_image(np.zeros((3, 4, 2), np.uint8))


def test_options_are_validated(sam2_ckpt):
    with pytest.raises(
        ValueError, match=r"unknown sam2 segmenter option\(s\) \['pps'\]; valid: .*points_per_side"
    ):
        make_seg(sam2_ckpt, pps=3)
    with pytest.raises(ValueError, match="mode must be 'auto' or 'guided'"):
        make_seg(sam2_ckpt, mode="grid")
    with pytest.raises(ValueError, match=r"unknown prompt source\(s\) \['edges'\]"):
        make_seg(sam2_ckpt, mode="guided", prompt_sources="classical,edges")
    with pytest.raises(ValueError, match="tile_size must exceed tile_overlap"):
        make_seg(sam2_ckpt, tile_size=100, tile_overlap=128)
    with pytest.raises(ValueError, match="SAM2Embedder mode must be 'image' or 'crop'"):
        make_emb(sam2_ckpt, mode="patch")


def test_missing_weights_fail_at_construction():
    from sam_detect.segment import create_segmenter

    with pytest.raises(ModelNotAvailableError, match="`sam-detect models download sam2.1-small`"):
        create_segmenter("sam2", model="small")


# -- pooling geometry (pure numpy) -----------------------------------------------------------
def test_cell_weights_split_pixels_exactly():
    from sam_detect.models.sam2_runtime import cell_weights

    mask = np.zeros((1, 10, 10), bool)
    mask[0, 0:2, 2] = True  # pixel column 2 straddles cells 0 and 1 (edges at 0, 2.5, 5, ...)
    w = cell_weights(mask, None, (4, 4))[0]
    expected = np.zeros((4, 4), np.float32)
    expected[0, 0] = expected[0, 1] = 1.0
    np.testing.assert_allclose(w, expected)


def test_cell_weights_conserve_area_and_survive_bad_boxes():
    from sam_detect.models.sam2_runtime import cell_weights

    rng = np.random.default_rng(0)
    masks = rng.random((5, 37, 53)) > 0.7
    w = cell_weights(masks, None, (7, 6))
    np.testing.assert_allclose(w.sum(axis=(1, 2)), masks.sum(axis=(1, 2)), rtol=1e-5)
    loose = np.tile([[0, 0, 53, 37]], (5, 1))
    np.testing.assert_allclose(cell_weights(masks, loose, (7, 6)), w, rtol=1e-5)
    wrong = np.tile([[0, 0, 3, 3]], (5, 1))  # boxes that miss most of each mask are detected
    np.testing.assert_allclose(cell_weights(masks, wrong, (7, 6)), w, rtol=1e-5)


# -- tiling helpers (pure numpy) ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("hw", "tile", "overlap"),
    [((1000, 700), 256, 64), ((256, 256), 256, 32), ((300, 90), 128, 100)],
)
def test_tile_windows_cover_the_image(hw, tile, overlap):
    wins = tile_windows(hw, tile, overlap)
    cover = np.zeros(hw, int)
    for x0, y0, x1, y1 in wins:
        assert 0 <= x0 < x1 <= hw[1] and 0 <= y0 < y1 <= hw[0]
        assert x1 - x0 == min(tile, hw[1]) and y1 - y0 == min(tile, hw[0])
        cover[y0:y1, x0:x1] += 1
    assert cover.min() >= 1
    with pytest.raises(ValueError, match="need tile > overlap >= 0"):
        tile_windows(hw, 64, 64)


def test_mask_nms_keeps_best_of_duplicates():
    a = np.zeros((50, 50), bool)
    a[10:30, 10:30] = True
    b = np.zeros((50, 50), bool)
    b[11:30, 10:30] = True  # IoU 0.95 with a
    c = np.zeros((50, 50), bool)
    c[35:45, 35:45] = True
    items = [
        TileMask.from_full(a, score=0.5),
        TileMask.from_full(b, score=0.9),
        TileMask.from_full(c, score=0.1),
    ]
    kept = mask_nms(items, 0.5)
    assert [k.score for k in kept] == [0.9, 0.1]
    full = to_full_masks(kept, (50, 50))
    np.testing.assert_array_equal(full[0], b)
    np.testing.assert_array_equal(full[1], c)


def test_merge_tiled_joins_cut_halves_and_prefers_whole_masks():
    hw = (100, 300)
    t0, t1 = (0, 0, 160, 100), (140, 0, 300, 100)  # tiles overlapping in columns [140, 160)
    obj = np.zeros(hw, bool)
    obj[40:60, 30:270] = True  # far wider than the overlap: cut in both tiles
    left, right = obj.copy(), obj.copy()
    left[:, 160:] = False
    right[:, :140] = False
    a = mark_cut(TileMask.from_full(left, score=0.8, tile=0), t0, hw)
    b = mark_cut(TileMask.from_full(right, score=0.7, tile=1), t1, hw)
    assert a.cut and b.cut
    merged = merge_tiled([a, b])
    assert len(merged) == 1
    np.testing.assert_array_equal(to_full_masks(merged, hw)[0], obj)

    other = np.zeros(hw, bool)
    other[70:90, 100:250] = True
    c = mark_cut(TileMask.from_full(other & (np.arange(300) < 160)[None], tile=0), t0, hw)
    d = mark_cut(
        TileMask.from_full(np.roll(other, 12, axis=0) & (np.arange(300) >= 140)[None], tile=1), t1, hw
    )
    assert len(merge_tiled([c, d])) == 2  # the pieces disagree in the shared columns: not joined

    small = np.zeros(hw, bool)
    small[10:20, 145:158] = True  # whole in tile 1, cut off in tile 0
    whole = mark_cut(TileMask.from_full(small, score=0.5, tile=1), t1, hw)
    piece = mark_cut(
        TileMask.from_full(small & (np.arange(300) < 150)[None], score=0.9, tile=0),
        (0, 0, 150, 100),
        hw,
    )
    assert piece.cut and not whole.cut
    kept = merge_tiled([piece, whole])
    assert len(kept) == 1 and kept[0] is whole


# -- embedder ------------------------------------------------------------------------------------
def test_top_left_mask_pools_only_top_left_features(sam2_ckpt):
    """Coordinates: on a non-square image, a mask covering exactly the top-left 2x4 feature
    cells must give the mean of exactly those cells."""
    from sam_detect.embed.base import l2_normalize

    emb = make_emb(sam2_ckpt)
    h, w = 200, 300  # grid 16x16: cells of 12.5 x 18.75 pixels
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    feats = emb.feature_map(img)
    assert feats.shape == (256, SIZE // 16, SIZE // 16) and feats.dtype == np.float32
    mask = np.zeros((1, h, w), bool)
    mask[0, :25, :75] = True  # rows 0-1 (2 x 12.5 px), columns 0-3 (4 x 18.75 px)
    got = emb.embed_instances(img, mask)
    expected = l2_normalize(feats[:, :2, :4].reshape(256, -1).mean(axis=1)[None])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    other = np.zeros((1, h, w), bool)
    other[0, -25:, -75:] = True
    far = emb.embed_instances(img, other)
    expected_far = l2_normalize(feats[:, -2:, -4:].reshape(256, -1).mean(axis=1)[None])
    np.testing.assert_allclose(far, expected_far, atol=1e-5)
    assert not np.allclose(got, far, atol=1e-3)


def test_image_mode_contract(sam2_ckpt, scene):
    img, masks = scene
    emb = make_emb(sam2_ckpt)
    assert emb.name == "sam2" and emb.dim == 256 and not emb.uses_masks and emb.supports_instances
    assert emb.id.startswith(f"sam2:tiny:image:{SIZE}:")
    vec = emb.embed_instances(img, Instances(masks=masks))
    assert vec.shape == (3, 256) and vec.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-5)
    one_by_one = np.concatenate([emb.embed_instances(img, masks[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(vec, one_by_one, atol=1e-6)
    rt = emb.runtime
    before = rt.encodings
    rt.clear()  # encode again: the same vectors
    np.testing.assert_allclose(emb.embed_instances(img, masks), vec, atol=1e-5)
    assert rt.encodings == before + 1
    assert emb.embed_instances(img, np.zeros((0, 256, 256), bool)).shape == (0, 256)
    with pytest.raises(
        AnnotationError, match=r"masks must be \(N, H, W\) with \(H, W\) = image size"
    ):
        emb.embed_instances(img, masks[:, :100])
    with pytest.raises(AnnotationError, match="mask 0 is empty"):
        emb.embed_instances(img, np.zeros((1, 256, 256), bool))
    with pytest.raises(ValueError, match="call embed_instances"):
        emb.embed([img])


@pytest.mark.slow
def test_crop_mode_contract(sam2_ckpt, scene):
    img, masks = scene
    emb = make_emb(sam2_ckpt, mode="crop", batch_size=3)
    assert emb.uses_masks and not hasattr(emb, "embed_instances") and not emb.supports_instances
    assert emb.id.startswith(f"sam2:tiny:crop:{SIZE}:") and emb.id != make_emb(sam2_ckpt).id
    crops, cmasks = [], []
    for x, y, r in DISCS:
        s = 2 * r + 24
        x0, y0 = max(x - s // 2, 0), max(y - s // 2, 0)
        crops.append(img[y0 : y0 + s, x0 : x0 + s])
        yy, xx = np.mgrid[y0 : y0 + s, x0 : x0 + s]
        cmasks.append((xx - x) ** 2 + (yy - y) ** 2 < r * r)
    vec = emb.embed(crops, masks=cmasks)
    assert vec.shape == (3, 256) and vec.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-5)
    singles = np.concatenate(
        [emb.embed([c], masks=[m]) for c, m in zip(crops, cmasks, strict=True)]
    )
    np.testing.assert_allclose(vec, singles, atol=1e-4)
    whole = emb.embed(crops[:1])  # no mask: the whole crop
    assert whole.shape == (1, 256) and not np.allclose(whole, vec[:1], atol=1e-4)
    assert emb.embed([]).shape == (0, 256)
    with pytest.raises(AnnotationError, match="mask 0 is empty"):
        emb.embed(crops[:1], masks=[np.zeros(crops[0].shape[:2], bool)])
    with pytest.raises(ValueError, match="got 2 crops but 1 masks"):
        emb.embed(crops[:2], masks=cmasks[:1])


# -- segmenter: prompts ----------------------------------------------------------------------------
def test_batched_prompts_match_sam2_predictor(sam2_ckpt, scene):
    """Our batched decoding of point and box prompts == SAM2ImagePredictor.predict, one by one."""
    import torch

    img, _ = scene
    seg = make_seg(sam2_ckpt)
    pts = np.array([[60, 60], [180, 70], [30, 220]], np.float32)
    boxes = np.array([[38, 38, 82, 82], [100, 165, 145, 215]], np.float32)
    got_p = seg.prompt_batch(img, points=pts)
    got_b = seg.prompt_batch(img, boxes=boxes)
    assert len(got_p) == 3 and len(got_b) == 2
    pred = seg.runtime.predictor
    with torch.inference_mode():
        pred.set_image(img)
        for i, p in enumerate(pts):
            m, iou, _ = pred.predict(
                point_coords=p[None], point_labels=np.array([1]), multimask_output=False
            )
            assert TileMask.from_full(m[0] > 0).iou(TileMask.from_full(got_p.masks[i])) > 0.99
            assert got_p.scores[i] == pytest.approx(np.clip(iou[0], 0, 1), abs=1e-4)
        for i, b in enumerate(boxes):
            m, iou, _ = pred.predict(box=b, multimask_output=False)
            assert TileMask.from_full(m[0] > 0).iou(TileMask.from_full(got_b.masks[i])) > 0.99
    np.testing.assert_array_equal(got_p.data["point"], pts)
    assert got_b.data["prompt_source"] == ["box", "box"]


def test_prompt_errors(sam2_ckpt, scene):
    img, _ = scene
    seg = make_seg(sam2_ckpt)
    with pytest.raises(AnnotationError, match="give a box"):
        seg.prompt(img)
    with pytest.raises(AnnotationError, match="lies outside the 256x256 image"):
        seg.prompt(img, box=(300, 300, 400, 400))
    with pytest.raises(AnnotationError, match="got 2 boxes but 1 points"):
        seg.prompt_batch(img, boxes=np.zeros((2, 4)) + [0, 0, 5, 5], points=np.ones((1, 2)))
    one = seg.prompt(img, point=(60, 60))
    assert len(one) <= 1 and one.image_hw == (256, 256)


# -- segmenter: guided, auto, tiling ----------------------------------------------------------------
def test_classical_prompts_fall_inside_objects(sam2_ckpt, scene):
    img, masks = scene
    seg = make_seg(sam2_ckpt, mode="guided", prompt_sources=("classical",))
    pts, src = seg.propose_points(img)
    assert src == ["classical"] * 3
    hit = {int(np.flatnonzero(masks[:, int(y), int(x)])[0]) for x, y in pts}
    assert hit == {0, 1, 2}


def test_guided_mode_returns_valid_deduplicated_instances(sam2_ckpt, scene):
    img, _ = scene
    seg = make_seg(
        sam2_ckpt,
        mode="guided",
        prompt_sources=("classical", "blobs"),
        guided_pred_iou_thresh=0.0,
        guided_stability_thresh=0.0,
    )
    inst = seg.segment(img)
    check_instances(inst, (256, 256))
    assert inst.metadata["segmenter"] == "sam2:tiny:guided"
    assert inst.metadata["sam2"]["prompts"]["classical"] == 3
    assert len(inst) >= 1
    for i in range(len(inst)):  # every mask holds the point that prompted it
        x, y = inst.data["point"][i]
        assert inst.masks[i, int(y), int(x)]
        assert inst.data["prompt_source"][i] in ("classical", "blobs")
    locs = [TileMask.from_full(m) for m in inst.masks]
    assert all(a.iou(b) <= 0.5 for i, a in enumerate(locs) for b in locs[i + 1 :])
    assert np.all(np.diff(inst.scores) <= 0)


def test_example_guided_prompts_land_on_the_matching_cell(sam2_ckpt, scene):
    _, masks = scene
    img = np.random.default_rng(3).integers(0, 255, (256, 256, 3), dtype=np.uint8)  # distinct cells
    seg = make_seg(sam2_ckpt, mode="guided", prompt_sources=("examples",), example_threshold=0.999)
    feats = seg.runtime.image_embed(img).cpu().numpy()
    r, c = 11, 4  # cell rows [176, 192), columns [64, 80) of the 256 px image
    seg.set_example_features({"thing": feats[:, r, c]})
    sim = seg.example_similarity(img)["thing"]
    assert sim.shape == (16, 16) and np.unravel_index(np.argmax(sim), sim.shape) == (r, c)
    assert sim[r, c] == pytest.approx(1.0, abs=1e-5)
    pts, src = seg.propose_points(img)
    assert len(pts) >= 1 and set(src) == {"examples:thing"}
    x, y = pts[0]
    assert 64 - 8 <= x <= 80 + 8 and 176 - 8 <= y <= 192 + 8
    # example features from the segmenter equal the image-mode embedder's vectors
    np.testing.assert_allclose(
        seg.pool_features(img, masks), make_emb(sam2_ckpt).embed_instances(img, masks), atol=1e-5
    )
    with pytest.raises(ValueError, match=r"must be \(K, 256\) SAM2 features, got \(1, 3\)"):
        seg.set_example_features({"bad": np.zeros(3)})
    seg.set_example_features(None)
    assert seg.propose_points(img)[0].shape == (0, 2)


def test_segmenter_and_embedder_share_one_encoding(sam2_ckpt, scene):
    img, _ = scene
    seg = make_seg(sam2_ckpt, mode="guided", guided_pred_iou_thresh=0.0, guided_stability_thresh=0.0)
    emb = make_emb(sam2_ckpt)
    assert seg.runtime is emb.runtime
    seg.runtime.clear()
    inst = seg.segment(img)
    n = seg.runtime.encodings
    if len(inst):
        emb.embed_instances(img, inst)
    emb.embed_instances(img, Instances(masks=scene[1]))
    assert seg.runtime.encodings == n


@pytest.mark.slow
def test_auto_mode_returns_valid_instances(sam2_ckpt, scene):
    img, _ = scene
    seg = make_seg(
        sam2_ckpt,
        mode="auto",
        points_per_side=4,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        box_nms_thresh=1.0,  # random weights give near-full masks with one box: keep them all
        max_mask_area=0.5,
    )
    inst = seg.segment(img)
    check_instances(inst, (256, 256))
    assert len(inst) >= 1
    assert set(inst.data["prompt_source"]) == {"grid"}
    assert np.all(inst.data["area"] <= 0.5 * 256 * 256)
    grid = (np.arange(4) + 0.5) / 4 * 256
    assert np.all(np.isin(inst.data["point"], grid))
    assert inst.metadata["segmenter"] == "sam2:tiny:auto"


@pytest.mark.slow
def test_tiling_merges_masks_in_image_coordinates(sam2_ckpt):
    discs = [(x + dx, y + dy, r) for dx in (0, 256) for dy in (0, 256) for x, y, r in DISCS]
    big, _ = disc_scene(512, 512, discs)
    seg = make_seg(
        sam2_ckpt,
        mode="guided",
        prompt_sources=("classical",),
        tile_size=384,
        tile_overlap=128,
        guided_pred_iou_thresh=0.0,
        guided_stability_thresh=0.0,
    )
    inst = seg.segment(big)
    check_instances(inst, (512, 512))
    assert inst.metadata["sam2"]["tiles"] == 4
    assert len(inst) >= 1
    for i in range(len(inst)):
        x, y = inst.data["point"][i]
        assert inst.masks[i, int(y), int(x)]
    locs = [TileMask.from_full(m) for m in inst.masks]
    assert all(a.iou(b) <= 0.5 for i, a in enumerate(locs) for b in locs[i + 1 :])
    # a box prompt on the tiled image is decoded in its tile and shifted back
    box = np.array([[290, 290, 340, 340]], np.float32)  # widest margin in tile (128, 128, 512, 512)
    tiled = seg.prompt_batch(big, boxes=box)
    x0, y0 = 128, 128
    plain = make_seg(sam2_ckpt, tile_size=0).prompt_batch(
        big[y0 : y0 + 384, x0 : x0 + 384], boxes=box - [x0, y0, x0, y0]
    )
    expected = np.zeros((512, 512), bool)
    expected[y0 : y0 + 384, x0 : x0 + 384] = plain.masks[0]
    np.testing.assert_array_equal(tiled.masks[0], expected)


@pytest.mark.slow
def test_pipeline_uses_embed_instances(sam2_ckpt, scene):
    """End to end through SAMDetect with the sam2 segmenter and embedder (image mode)."""
    from sam_detect.pipeline import DetectorConfig, SAMDetect

    img, masks = scene
    seg = make_seg(sam2_ckpt, mode="guided", guided_pred_iou_thresh=0.0, guided_stability_thresh=0.0)
    emb = make_emb(sam2_ckpt)
    with SAMDetect(
        DetectorConfig(store="memory", threshold=-1.0), segmenter=seg, embedder=emb
    ) as det:
        ids = det.add_example(img, label="disc", mask=masks[0])
        assert len(ids) == 1
        found = det.detect(img)
        # example-guided prompting: the library's SAM2 features were handed to the segmenter
        shared = seg._examples
    assert isinstance(found, Instances)
    assert all(lab == "disc" for lab in found.labels)
    assert set(shared) == {"disc"} and shared["disc"].shape == (1, 256)


def test_localmask_roundtrip():
    m = np.zeros((20, 30), bool)
    m[3:7, 10:25] = True
    loc = TileMask.from_full(m, score=0.3)
    assert isinstance(loc, TileMask) and loc.box == (10, 3, 25, 7) and loc.area == 60
    np.testing.assert_array_equal(to_full_masks([loc], (20, 30))[0], m)
    empty = TileMask.from_full(np.zeros((4, 4), bool))
    assert empty.area == 0 and empty.crop.shape == (0, 0)


def _disc_instances(hw, discs) -> Instances:
    yy, xx = np.mgrid[: hw[0], : hw[1]]
    return Instances(masks=np.stack([(xx - x) ** 2 + (yy - y) ** 2 < r * r for x, y, r in discs]))


def test_image_mode_scale_policy_at_4096_px(sam2_ckpt):
    """The policy alone (no encoding): a 4096² image at the 1024-pixel input is pooled from
    1024-pixel tiles, 16 x 16 px per feature cell; 2048² stays whole (32 px cells)."""
    from sam_detect.embed.sam2 import SAM2Embedder

    emb = SAM2Embedder(checkpoint=str(sam2_ckpt), device="cpu")  # image_size 1024: 64 x 64 cells
    assert ":image:1024:tiles=auto/128:" in emb.id
    small = Instances.from_crops(
        [np.ones((20, 20), bool)] * 4, np.array([[5, 5], [1010, 1010], [2040, 3000], [4070, 4070]]), (4096, 4096)
    )
    wins = emb.windows(small)
    assert wins.shape == (4, 4)
    cell = (wins[:, 2:] - wins[:, :2]) / 64
    np.testing.assert_array_equal(cell, 16.0)
    b = small.boxes
    assert np.all(wins[:, :2] <= b[:, :2]) and np.all(wins[:, 2:] >= b[:, 2:])
    # an object larger than a tile: a window of its own, twice its size, inside the image
    big = Instances.from_crops([np.ones((1500, 900), bool)], np.array([[100, 2000]]), (4096, 4096))
    (x0, y0, x1, y1), = emb.windows(big)
    assert (x1 - x0, y1 - y0) == (3000, 3000) and x0 == 0 and y1 <= 4096
    # up to twice the input side the whole image is encoded
    whole = Instances.from_crops([np.ones((20, 20), bool)], np.array([[1000, 1000]]), (2048, 2048))
    np.testing.assert_array_equal(emb.windows(whole), [[0, 0, 2048, 2048]])
    assert ":tiles=" not in SAM2Embedder(checkpoint=str(sam2_ckpt), device="cpu", tile_size=0).id
    with pytest.raises(ValueError, match="tile_size must exceed tile_overlap"):
        SAM2Embedder(checkpoint=str(sam2_ckpt), device="cpu", tile_size=100)


def test_image_mode_pools_each_object_from_its_tile(sam2_ckpt):
    """Scaled down 4x (input 256, a 1024² image, tiles of 256): each vector is the object's
    pool over the feature map of its tile encoded alone (16 px cells, not the whole
    image's 64 px), the segmenter's example features are the same vectors, and only the
    tiles holding objects are encoded."""
    discs = [(40, 40, 10), (300, 520, 12), (700, 130, 9), (980, 990, 11)]
    img, _ = disc_scene(1024, 1024, discs)
    inst = _disc_instances((1024, 1024), discs)
    emb = make_emb(sam2_ckpt)
    emb.runtime.clear()
    wins = emb.windows(inst)
    assert np.all((wins[:, 2:] - wins[:, :2]) / (SIZE // 16) == 16.0)  # 16 px per cell
    before = emb.runtime.encodings
    vec = emb.embed_instances(img, inst)
    assert emb.runtime.encodings - before == len({tuple(w) for w in wins})
    emb.runtime.clear()  # the reference encodes each tile again, on its own
    for i, (x0, y0, x1, y1) in enumerate(wins):
        tile = img[y0:y1, x0:x1]
        local = Instances(masks=inst.masks[i : i + 1, y0:y1, x0:x1])
        assert local.areas[0] == inst.areas[i]  # the whole object lies in its tile
        ref = emb.embed_instances(tile, local)
        np.testing.assert_allclose(vec[i], ref[0], atol=1e-5)
    whole = make_emb(sam2_ckpt, tile_size=0).embed_instances(img, inst)
    assert np.all(np.sum(whole * vec, axis=1) < 0.999)  # another scale, other vectors
    seg = make_seg(sam2_ckpt)
    np.testing.assert_allclose(seg.pool_features(img, inst.masks), vec, atol=1e-5)
    # the segmenter decodes a prompt in the same tile the embedder pools the object from
    groups = seg._prompt_groups((1024, 1024), inst.boxes, None)
    assert {tuple(w) for w, _ in groups} == {tuple(w) for w in wins}


def test_pipeline_gives_the_sam2_embedder_the_segmenters_tiles(sam2_ckpt):
    from sam_detect.pipeline import DetectorConfig, SAMDetect

    opts = {"checkpoint": str(sam2_ckpt), "image_size": SIZE}
    cfg = DetectorConfig(store="memory", segmenter="sam2", embedder="sam2",
                         segmenter_options={**opts, "tile_size": 384, "tile_overlap": 64},
                         embedder_options=opts, device="cpu")
    with SAMDetect(cfg) as det:
        emb = det.embedder
    assert (emb.tile_size, emb.tile_overlap) == (384, 64) and ":tiles=384/64:" in emb.id


@pytest.mark.slow
def test_embedder_reuses_the_segmenters_tile_encodings(sam2_ckpt):
    """After the segmenter has encoded tiles of an image, the embedder pools the objects in
    those tiles from the kept encodings and encodes only the others (25 tiles, as a
    4096-px image at 1024 px has: here 1024 px at 256, overlap scaled to 32)."""
    discs = [(40, 40, 10), (300, 520, 12), (700, 130, 9), (980, 990, 11), (512, 512, 14)]
    img, _ = disc_scene(1024, 1024, discs)
    seg = make_seg(sam2_ckpt, mode="guided", prompt_sources=("classical",), tile_overlap=32,
                   guided_pred_iou_thresh=0.0, guided_stability_thresh=0.0)
    emb = make_emb(sam2_ckpt, tile_overlap=32)
    seg.runtime.clear()
    found = seg.segment(img)
    assert found.metadata["sam2"]["tiles"] == 25
    from sam_detect.models.sam2_runtime import _digest

    inst = _disc_instances((1024, 1024), discs)
    wins = {tuple(int(v) for v in w) for w in emb.windows(inst)}
    # the segmenter encodes only the tiles it has prompts in (classical seeds here)
    kept = {w for w in wins if _digest(img[w[1] : w[3], w[0] : w[2]].copy()) in seg.runtime._embeds}
    assert len(kept) >= 1
    n = seg.runtime.encodings
    vec = emb.embed_instances(img, inst)
    assert seg.runtime.encodings - n == len(wins - kept) and vec.shape == (5, 256)
