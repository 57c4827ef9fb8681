"""The ``views`` embedder (dense multi-view descriptions) and the library's decision settings."""

from __future__ import annotations

import numpy as np
import pytest

from sam_detect import NEGATIVE, UNKNOWN, DetectorConfig, Instances, SAMDetect
from sam_detect.calibrate import (
    DEFAULT_THRESHOLD,
    FLOOR,
    MARGIN,
    _loo_accuracy,
    choose_weights,
    class_statistics,
    describe,
    fit_decision,
    thresholds,
    typicality,
)
from sam_detect.embed.views import (
    DIM,
    VIEWS,
    ViewsEmbedder,
    _cell_counts,
    _cells_1d,
    _cells_of_coordinates,
    _object_pixels,
    _tile_side,
    _tiles,
    choose_scale,
    map_shapes,
    mask_counts,
    pool_rings,
    pool_under_masks,
    ring_counts,
    view_similarities,
    view_slices,
    views_of,
    weighted_query,
)
from tests.conftest import draw_scene


@pytest.fixture(scope="module")
def views():
    return ViewsEmbedder(device="cpu")


def test_vectors_are_unit_and_every_view_is_a_unit_share(views):
    rgb, masks, _ = draw_scene(seed=3)
    v = views.embed_instances(rgb, Instances(masks=masks))
    assert v.shape == (len(masks), DIM) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    for sl in view_slices().values():
        np.testing.assert_allclose(np.linalg.norm(v[:, sl], axis=1), 1 / np.sqrt(len(VIEWS)), atol=1e-5)


def test_same_kind_is_closer_than_other_kind(views):
    rgb, masks, labels = draw_scene(seed=4, n_discs=4, n_squares=4)
    v = views.embed_instances(rgb, Instances(masks=masks))
    sim = v @ v.T
    labels = np.array(labels)
    for i in range(len(labels)):
        same = [sim[i, j] for j in range(len(labels)) if j != i and labels[j] == labels[i]]
        other = [sim[i, j] for j in range(len(labels)) if labels[j] != labels[i]]
        assert min(same) > max(other) - 0.02  # shape separates discs from squares
        assert np.mean(same) > np.mean(other)


def test_an_object_moved_gives_nearly_the_same_vector(views):
    """Translation by a non-multiple of the stride: pooling by mask coverage, not by cell.

    The stride-32 views (``deep``, ``context``) of an object about one cell wide change
    with its phase against the cell grid (a strided network is not shift-invariant); the
    finer and the measured views barely do.
    """
    rgb, masks, _ = draw_scene(seed=5, size=200, n_discs=1, n_squares=0)
    shifted = np.roll(rgb, (13, 21), axis=(0, 1))
    m2 = np.roll(masks, (13, 21), axis=(1, 2))
    a = views.embed_instances(rgb, Instances(masks=masks), typical_area=300.0)
    b = views.embed_instances(shifted, Instances(masks=m2), typical_area=300.0)
    per_view = dict(zip([name for name, _ in VIEWS], view_similarities(a, b)[:, 0, 0], strict=True))
    assert min(per_view[v] for v in ("mid", "colour", "shape", "texture")) > 0.97, per_view
    assert min(per_view["deep"], per_view["context"]) > 0.85, per_view
    assert float(a[0] @ b[0]) > 0.94


def test_crop_mode_embeds_one_object_per_crop(views):
    rgb, masks, _ = draw_scene(seed=6)
    ys, xs = np.nonzero(masks[0])
    crop = rgb[ys.min() - 10 : ys.max() + 10, xs.min() - 10 : xs.max() + 10]
    mask = masks[0][ys.min() - 10 : ys.max() + 10, xs.min() - 10 : xs.max() + 10]
    with_mask = views.embed([crop], masks=[mask])
    guessed = views.embed([crop])  # the object is guessed from the border colour
    assert with_mask.shape == (1, DIM)
    assert float(with_mask[0] @ guessed[0]) > 0.95
    assert views.embed([]).shape == (0, DIM)


def test_bad_inputs_are_refused(views):
    rgb, masks, _ = draw_scene(seed=7)
    with pytest.raises(ValueError, match="target"):
        ViewsEmbedder(device="cpu", target=-3)
    with pytest.raises(ValueError, match="instances are for"):
        views.embed_instances(rgb[:100], Instances(masks=masks))
    assert views.embed_instances(rgb, Instances.empty((160, 160))).shape == (0, DIM)


def test_tiles_cover_every_pixel_once():
    for length in (32, 768, 769 + 31, 2048, 5000 // 32 * 32):
        tiles = _tiles(length, 768, 64)
        covered = np.zeros(length, int)
        for start, stop, keep0, keep1 in tiles:
            assert start <= keep0 < keep1 <= stop and stop - start <= 768
            covered[keep0:keep1] += 1
        assert (covered == 1).all()
    with pytest.raises(ValueError, match="keeps nothing"):
        _tiles(1000, 128, 64)  # margins that eat the whole tile


def test_tiles_are_as_few_as_before_and_no_larger_than_needed():
    """``_tile_side``: the tiles of an axis are as many as ``tile`` would cut, each a multiple
    of 32 no larger than ``tile``, and one 32-px step smaller would need another tile."""
    for length in range(1056, 12000, 352):
        side = _tile_side(length, 1024, 64)
        tiles = _tiles(length, side, 64)
        assert side % 32 == 0 and side <= 1024
        assert len(tiles) == len(_tiles(length, 1024, 64))
        assert len(_tiles(length, side - 32, 64)) > len(tiles)
        assert all(stop - start == side for start, stop, _, _ in tiles)
    assert _tile_side(5824, 1024, 64) == 960  # the 4096^2 HeLa mosaic at x1.42: 7 x 7 tiles of 960
    assert _tile_side(800, 1024, 64) == 800  # one tile: the whole axis


def test_tiled_features_match_the_whole_image_pass(views, monkeypatch):
    """A wide image run in tiles gives the features of one pass away from the image border."""
    from sam_detect.embed import views as mod

    rng = np.random.default_rng(0)
    rgb = (rng.random((96, 1600, 3)) * 255).astype(np.uint8)
    rgb = np.ascontiguousarray(np.repeat(np.repeat(rgb[::4, ::4], 4, 0), 4, 1))
    tiled = views.feature_maps(rgb, 1.0)
    monkeypatch.setattr(mod, "TILE", 4096)
    whole = views.feature_maps(rgb, 1.0)
    for stride, fmap in whole.items():
        a, b = fmap.reshape(fmap.shape[0], -1).T, tiled[stride].reshape(fmap.shape[0], -1).T
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-9)
        assert np.median(cos) > 0.98, stride


def test_a_few_objects_of_a_large_image_run_only_their_tiles(views, monkeypatch):
    """Embedding a few objects of an image that runs in tiles runs only the tiles whose
    cells the objects' views read, and gives the vectors of the whole image's pass."""
    from sam_detect.embed import views as mod

    monkeypatch.setattr(mod, "TILE", 256)
    rgb, masks, _ = draw_scene(seed=3, size=700)
    inst = Instances(masks=masks[:2])
    calls = []
    net = views.model
    monkeypatch.setattr(mod.ViewsEmbedder, "model", property(lambda self: lambda x: calls.append(x.shape) or net(x)))
    few = views.embed_instances(rgb, inst, typical_area=1024.0)
    ran = len(calls)
    monkeypatch.setattr(mod, "_pooled_region", lambda instances: None)  # every tile, as before
    whole = views.embed_instances(rgb, inst, typical_area=1024.0)
    assert np.array_equal(few, whole)
    assert 0 < ran < len(calls) - ran  # fewer tiles than the whole image's


def test_an_image_up_to_tile_runs_whole_and_a_larger_one_in_smaller_tiles(views, monkeypatch):
    """Up to ``TILE`` pixels a side the network sees the whole image (its features as
    before); above it, tiles of ``TILE_SIDE``, which ran faster (docs/performance.md,
    "Session 26")."""
    from sam_detect.embed import views as mod

    monkeypatch.setattr(mod, "TILE", 512)
    monkeypatch.setattr(mod, "TILE_SIDE", 256)
    net = views.model
    calls = []
    monkeypatch.setattr(mod.ViewsEmbedder, "model", property(lambda self: lambda x: calls.append(x.shape[2:]) or net(x)))
    rng = np.random.default_rng(1)
    views.feature_maps((rng.random((480, 512, 3)) * 255).astype(np.uint8), 1.0)
    assert calls == [(480, 512)]
    calls.clear()
    views.feature_maps((rng.random((480, 544, 3)) * 255).astype(np.uint8), 1.0)
    assert len(calls) > 4 and all(h <= 256 and w <= 256 for h, w in calls)


def test_cell_counts_count_every_mask_pixel_once():
    mask = np.zeros((37, 23), bool)
    mask[3:30, 2:20] = True
    geometry = np.array([[41, 13]]), np.array([mask.shape])
    for scale, stride in ((1.0, 8), (0.5, 16), (2.0, 32), (1.7, 8)):
        counts = _cell_counts(_object_pixels([mask]), *geometry, scale, stride, (100, 100))
        assert counts.shape == (1, 100 * 100)
        assert counts.sum() == pytest.approx(mask.sum())
    tiny = np.ones((2, 2), bool)  # smaller than a cell: still gets its cell
    counts = _cell_counts(_object_pixels([tiny]), np.array([[5, 5]]), np.array([[2, 2]]), 1.0, 32, (4, 4))
    assert counts.sum() == 4 and counts[0, 0] == 4


def test_cells_by_table_are_those_found_pixel_by_pixel():
    """``_cells_1d`` looks each crop's coordinates up once in a table: the same cells as a
    search among the owner's cell edges per pixel (``_cells_of_coordinates``), at origins
    off the image (a ring's) and cells smaller and larger than a pixel, for every pixel
    ``_object_pixels`` gathers (crop by crop, row by row)."""
    rng = np.random.default_rng(7)
    crops = [rng.random((int(h), int(w))) < rng.random()
             for h, w in rng.integers(1, 40, (60, 2))]
    crops += [np.zeros((0, 0), bool), np.zeros((3, 5), bool), np.ones((1, 1), bool)]
    owner, ys, xs = _object_pixels(crops)
    found = [np.nonzero(c) for c in crops]
    assert np.array_equal(owner, np.repeat(np.arange(len(crops)), [len(y) for y, _ in found]))
    assert np.array_equal(ys, np.concatenate([y for y, _ in found]))
    assert np.array_equal(xs, np.concatenate([x for _, x in found]))
    assert all(len(a) == 0 for a in _object_pixels([np.zeros((4, 4), bool)]))
    shapes = np.array([c.shape for c in crops], np.int64)
    starts = rng.integers(-30, 300, (len(crops), 2))
    for step in (0.37, 1.0, 2.5, 8 / 1.42, 32 / 0.41, 90.0):
        for axis, v in ((0, ys), (1, xs)):
            args = (v, owner, starts[:, axis], shapes[:, axis], step, 7)
            assert np.array_equal(_cells_1d(*args), _cells_of_coordinates(*args)), (step, axis)


def test_cells_counted_before_the_maps_exist_pool_as_counted_after(views):
    """``embed_instances`` counts which cells each object and its ring cover before the
    network's maps arrive (:func:`map_shapes` says their size): the maps' own shapes, and
    the same pooled views as counting on the maps."""
    rgb, masks, _ = draw_scene(seed=5, size=150)
    inst = Instances(masks=masks)
    for hw, scale in (((150, 150), 1.0), ((150, 150), 1.37), ((150, 150), 0.41), ((77, 150), 2.9)):
        img = np.ascontiguousarray(rgb[: hw[0], : hw[1]])
        part = Instances(masks=masks[:, : hw[0], : hw[1]])
        part = part[np.flatnonzero(part.areas > 0)]
        maps = views.feature_maps(img, scale)
        shapes = map_shapes(hw, scale)
        assert shapes == {s: m.shape[1:] for s, m in maps.items()}, (hw, scale)
        before = pool_under_masks(maps, part, scale, counts=mask_counts(part, scale, shapes))
        after = pool_under_masks(maps, part, scale)
        for s in maps:
            assert np.array_equal(before[s], after[s])
        assert np.array_equal(pool_rings(maps[32], 32, part, scale, counts=ring_counts(part, scale, 32, shapes[32])),
                              pool_rings(maps[32], 32, part, scale))
    assert len(inst) > 2


def test_scale_brings_the_median_object_to_the_target():
    assert choose_scale(np.array([100.0, 400.0, 900.0]), 40.0) == pytest.approx(2.0)
    assert choose_scale(np.array([]), 40.0) == 1.0
    assert choose_scale(np.array([1e9]), 40.0) == pytest.approx(0.125)  # clipped


def test_weighted_query_scores_are_the_weighted_view_similarities():
    rng = np.random.default_rng(1)
    parts = {name: rng.normal(size=(6, size)) for name, size in VIEWS}
    from sam_detect.embed.views import join_views

    x = join_views(parts)
    weights = {"deep": 0.1, "context": 0.1, "mid": 0.3, "colour": 0.2, "shape": 0.0, "texture": 0.3}
    q, factor = weighted_query(x[:2], weights)
    cos = (q @ x.T) / np.linalg.norm(q, axis=1, keepdims=True)  # what a cosine store returns
    per_view = view_similarities(x[:2], x)
    expected = sum(weights[name] * per_view[k] for k, (name, _) in enumerate(VIEWS))
    np.testing.assert_allclose(cos * factor, expected, atol=1e-5)
    with pytest.raises(ValueError, match="zero"):
        weighted_query(x, {name: 0.0 for name, _ in VIEWS})
    assert views_of("views:v1:tf_efficientnet_lite0:imagenet:32") == VIEWS
    assert views_of("effnet:tf_efficientnet_lite0:imagenet:128") is None


# -- the decision settings -------------------------------------------------------------------
def _two_view_vectors(rng, n_per_class=6):
    """Two classes: view 0 is loud noise, view 1 tells them apart (weakly, so that equal
    weights misclassify some examples)."""
    views = (("noise", 8), ("signal", 8))
    labels = ["a"] * n_per_class + ["b"] * n_per_class
    centre = {"a": rng.normal(size=8), "b": rng.normal(size=8)}
    parts = []
    for lab in labels:
        noise = rng.normal(size=8)
        signal = centre[lab] + 1.2 * rng.normal(size=8)
        parts.append(np.concatenate([noise / np.linalg.norm(noise), signal / np.linalg.norm(signal)]) / np.sqrt(2))
    return np.array(parts, np.float32), labels, views


def test_weights_favour_the_view_that_tells_classes_apart():
    vectors, labels, views = _two_view_vectors(np.random.default_rng(2))
    per_view = view_similarities(vectors, vectors, views)
    equal_acc = _loo_accuracy(per_view.mean(axis=0), np.array(labels, dtype=object))
    weights, acc = choose_weights(per_view, labels, ["noise", "signal"])
    assert equal_acc < 1.0  # the case the weights are for
    assert weights["signal"] > weights["noise"] and acc > equal_acc
    decision = fit_decision(vectors, labels, views)
    assert decision["weights"]["signal"] > decision["weights"]["noise"]
    # one class: nothing to compare, equal weights
    weights, acc = choose_weights(per_view[:, :6, :6], labels[:6], ["noise", "signal"])
    assert weights == {"noise": 0.5, "signal": 0.5} and acc is None


def _tied_weightings(per_view, labels):
    import itertools

    from sam_detect.calibrate import LEVELS

    scored = []
    for combo in itertools.product(LEVELS, repeat=per_view.shape[0]):
        if sum(combo):
            w = np.array(combo, float) / sum(combo)
            scored.append((round(_loo_accuracy(np.tensordot(w, per_view, axes=1), labels), 9), w))
    best = max(a for a, _ in scored)
    return [w for a, w in scored if a == best]


def test_view_weight_ties_go_to_nearest_equal_or_to_their_mean():
    # a view that separates the classes, one that misleads, one that is noise: several
    # weightings separate the examples perfectly (a tie)
    rng = np.random.default_rng(4)
    labels = np.array(["a"] * 5 + ["b"] * 5, dtype=object)
    same = labels[:, None] == labels[None, :]
    signal = np.where(same, 0.9, 0.2)
    wrong = np.where(same, 0.2, 0.6)
    noise = rng.uniform(0.3, 0.7, (10, 10))
    per_view = np.stack([signal, wrong, (noise + noise.T) / 2])
    names = ["signal", "wrong", "noise"]
    tied = _tied_weightings(per_view, labels)
    assert len(tied) > 1
    nearest, acc = choose_weights(per_view, labels, names, ties="equal")
    mean, acc_mean = choose_weights(per_view, labels, names, ties="mean")
    assert acc == acc_mean == 1.0
    as_array = lambda w: np.array([w[n] for n in names])  # noqa: E731
    assert any(np.allclose(as_array(nearest), w) for w in tied)
    assert np.abs(as_array(nearest) - 1 / 3).sum() == pytest.approx(min(np.abs(w - 1 / 3).sum() for w in tied))
    assert as_array(mean) == pytest.approx(np.mean(tied, axis=0))
    assert not np.allclose(as_array(mean), as_array(nearest))
    with pytest.raises(ValueError, match="ties must be"):
        choose_weights(per_view, labels, names, ties="first")


def test_class_thresholds_follow_the_examples_spread():
    tight = np.full((5, 5), 0.95)
    loose = np.full((5, 5), 0.6)
    loose[0, 1] = loose[1, 0] = 0.9
    stats = class_statistics(np.block([[tight, np.zeros((5, 5))], [np.zeros((5, 5)), loose]]),
                             ["a"] * 5 + ["b"] * 5)
    assert stats["a"]["threshold"] == pytest.approx(min(0.95 - MARGIN * 1.5, DEFAULT_THRESHOLD))
    assert stats["b"]["threshold"] < stats["a"]["threshold"]
    assert stats["b"]["threshold"] >= FLOOR
    single = class_statistics(np.ones((1, 1)), ["c"])
    assert single["c"]["threshold"] is None
    assert thresholds({"classes": single}, 0.5) == {"c": 0.5}


def test_typicality_grows_with_similarity_and_is_one_for_typical():
    decision = {"classes": {"a": {"sims": [0.8, 0.85, 0.9, 0.9, 0.92]}}}
    t = typicality(decision, ["a"] * 4 + ["other"], np.array([0.5, 0.8, 0.9, 0.99, 0.1]))
    assert t[0] < t[1] < t[2] <= t[3] == 1.0
    assert t[0] < 0.05
    assert t[4] == 1.0  # no statistics for that label


def test_negatives_take_no_part_in_thresholds():
    vectors, labels, views = _two_view_vectors(np.random.default_rng(3))
    labels = [NEGATIVE if lab == "b" else lab for lab in labels]
    decision = fit_decision(vectors, labels, views)
    assert set(decision["classes"]) == {"a"}
    assert decision["counts"] == {"a": labels.count("a"), NEGATIVE: labels.count(NEGATIVE)}  # they vote
    assert any("threshold" in line for line in describe(decision))


def test_detect_with_views_labels_shapes_and_stores_the_decision():
    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="views", library="shapes"))
    rgb, masks, labels = draw_scene(seed=1, n_discs=3, n_squares=3)
    det.add_examples(rgb, Instances(masks=masks, labels=labels))
    meta = det.store.get_meta("shapes")
    decision = meta.extra["decision"]
    assert set(decision["classes"]) == {"disc", "square"}
    assert set(decision["weights"]) == {name for name, _ in VIEWS}
    assert decision["typical_area"] == pytest.approx(np.median(masks.sum(axis=(1, 2))))
    rgb2, masks2, labels2 = draw_scene(seed=7, n_discs=4, n_squares=4)
    found = det.detect(rgb2)
    got = []
    for m in masks2:
        ious = [(m & f).sum() / (m | f).sum() for f in found.masks]
        got.append(found.labels[int(np.argmax(ious))] if ious and max(ious) > 0.5 else None)
    assert got == labels2
    assert (found.label_confidences > 0).all() and (found.label_confidences <= 1).all()
    assert "(calibrated)" not in " ".join(found.metadata["notes"])  # nothing to explain
    # one threshold for every class overrides the calibrated ones; a high one leaves nothing
    none = det.detect(rgb2, threshold=0.999)
    assert len(none) == 0
    assert any("threshold 0.999)" in n for n in none.metadata["notes"])  # to three places, as the similarity
    det.close()


def test_a_class_given_one_example_is_not_outvoted_by_one_given_ten(monkeypatch):
    """Each label votes with its own nearest examples: one square among ten discs still
    labels squares. A plain 5-NN vote over every example (the vote without ``counts``)
    calls every square a disc here."""
    import sam_detect.calibrate as cal

    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="views", library="imb"))
    rgb, masks, labels = draw_scene(seed=1, n_discs=6, n_squares=1)
    det.add_examples(rgb, Instances(masks=masks, labels=labels))
    rgb, masks, labels = draw_scene(seed=2, n_discs=4, n_squares=0)
    det.add_examples(rgb, Instances(masks=masks, labels=labels))
    assert det.decision["counts"] == {"disc": 10, "square": 1}
    rgb2, masks2, labels2 = draw_scene(seed=7, n_discs=4, n_squares=4)

    def labelled():
        found = det.detect(rgb2)
        assert all(len(n) <= det.config.top_k for n in found.data["neighbours"])
        out = []
        for m in masks2:
            ious = [(m & f).sum() / (m | f).sum() for f in found.masks]
            out.append(found.labels[int(np.argmax(ious))] if ious and max(ious) > 0.5 else None)
        return out

    assert labelled() == labels2
    monkeypatch.setattr(cal, "counts", lambda decision: None)  # a decision from before counts
    assert labelled().count("square") < 4
    det.close()


def test_one_class_confidence_varies():
    """With one class the vote's share is always 1; typicality makes confidence informative."""
    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="handcrafted"))
    rgb, masks, labels = draw_scene(seed=2, n_discs=5, n_squares=0)
    det.add_examples(rgb, Instances(masks=masks), ["disc"] * len(masks))
    rgb2, _, _ = draw_scene(seed=9, n_discs=4, n_squares=4)
    found = det.detect(rgb2, threshold=-1.0)
    assert set(found.labels) == {"disc"}
    assert found.label_confidences.max() > found.label_confidences.min()
    assert UNKNOWN not in set(found.labels)
    det.close()
