"""The few-shot protocol, sweeps and reports, on synthetic scenes with the weight-free
pipeline (classical segmenter + handcrafted embedder, in-memory store)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import draw_scene

from sam_detect.errors import AnnotationError
from sam_detect.eval import compute_metrics, draw_examples, evaluate, parse_sweep, run_sweep
from sam_detect.eval.sweep import CachingSegmenter, apply_param
from sam_detect.instances import Instances
from sam_detect.pipeline import DetectorConfig

CFG = DetectorConfig(segmenter="classical", embedder="handcrafted", store="memory")


@pytest.fixture(scope="module")
def scenes():
    imgs, gts = [], []
    for seed in range(3):
        rgb, masks, labels = draw_scene(seed)
        imgs.append(rgb)
        gts.append(Instances(masks=masks, labels=labels))
    return imgs, gts


# -- example drawing -----------------------------------------------------------------------
def test_draw_examples_per_class_and_reproducible():
    labels = [["a", "a", "b"], ["a", "b", "b", "c"], ["a"]]
    d = draw_examples(labels, shots=2, seed=3)
    picked = [labels[i][j] for i, js in d.items() for j in js]
    assert sorted(picked) == ["a", "a", "b", "b", "c"]  # c has only one object
    assert {k: v.tolist() for k, v in d.items()} == {
        k: v.tolist() for k, v in draw_examples(labels, 2, 3).items()
    }
    others = [draw_examples(labels, 2, s) for s in range(10)]
    assert len({json.dumps({k: v.tolist() for k, v in o.items()}) for o in others}) > 1
    only_first = draw_examples(labels, shots=5, seed=0, examples_from=[0])
    assert list(only_first) == [0] and only_first[0].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="shots must be >= 1"):
        draw_examples(labels, 0)
    with pytest.raises(ValueError, match="image index 7 out of range 0..2"):
        draw_examples(labels, 1, examples_from=[7])


# -- protocol ------------------------------------------------------------------------------
def test_protocol_on_separable_scenes(scenes):
    imgs, gts = scenes
    res = evaluate(imgs, gts, CFG, shots=2, seed=0, iou=(0.3, 0.5))
    total = sum(len(g) for g in gts)
    m = res.metrics
    assert m.n_ignored_gt == 4  # 2 discs + 2 squares drawn as examples
    assert m.n_gt == total - 4
    assert res.examples == {"disc": 2, "square": 2}
    assert res.consistent
    # the classical segmenter finds these high-contrast shapes; the features tell them apart
    assert m[0.5].recall >= 0.9 and m[0.5].precision >= 0.9
    assert m.at(0.5).per_class.keys() == {"disc", "square"}
    assert set(res.timings) >= {"segment", "embed", "search", "total"}
    assert all(v["n"] == 3 for v in res.timings.values())
    assert res.candidate_recall["0.5"] >= m[0.5].recall
    assert len(res.per_image) == 3 and sum(r["examples"] for r in res.per_image) == 4
    assert len(res.overlays) == 1 and res.overlays[0][1].shape == imgs[0].shape
    doc = json.loads(json.dumps(res.to_dict()))
    assert doc["metrics"]["by_iou"]["0.5"]["f1"] == pytest.approx(m[0.5].f1, abs=1e-6)
    assert "library" not in doc["config"]
    table = res.table()
    assert "precision" in table and "disc" in table and "confusion" in table


def test_headline_equals_scoring_detect_output_directly(scenes):
    """The protocol's figures equal compute_metrics on what SAMDetect.detect returns."""
    from sam_detect.pipeline import SAMDetect

    imgs, gts = scenes
    res = evaluate(imgs, gts, CFG, shots=2, seed=1, iou=(0.5,))
    drawn = draw_examples([g.labels for g in gts], 2, 1)
    det = SAMDetect(CFG, library="check")
    for i, idx in drawn.items():
        det.add_examples(imgs[i], gts[i][idx])
    preds = [det.detect(im) for im in imgs]
    ignore = [np.isin(np.arange(len(g)), drawn.get(i, [])) for i, g in enumerate(gts)]
    want = compute_metrics(preds, gts, (0.5,), ignore_gt=ignore)
    got = res.metrics[0.5]
    assert (got.tp, got.fp, got.fn) == (want[0.5].tp, want[0.5].fp, want[0.5].fn)


def test_examples_from_and_detect_on(scenes):
    imgs, gts = scenes
    res = evaluate(imgs, gts, CFG, shots=1, examples_from=[0], detect_on=[1, 2], iou=(0.5,))
    assert res.protocol["detect_on"] == [1, 2]
    assert res.metrics.n_images == 2
    assert res.metrics.n_ignored_gt == 0  # examples came from image 0, which is not scored
    assert res.metrics.n_gt == len(gts[1]) + len(gts[2])


def test_score_examples_counts_them(scenes):
    imgs, gts = scenes
    res = evaluate(imgs[:1], gts[:1], CFG, shots=1, score_examples=True, iou=(0.5,))
    assert res.metrics.n_ignored_gt == 0 and res.metrics.n_gt == len(gts[0])


def test_examples_returned_as_drawn_keep_the_revote_exact(scenes):
    """Detecting on the examples' own image returns them as drawn (matched to the ignored
    ground truth, so not scored); the re-vote from the records reproduces detect's output."""
    imgs, gts = scenes
    res = evaluate(imgs, gts, CFG, shots=1, examples_from=[0], detect_on=[0], iou=(0.5,))
    (rec,) = res.records
    assert res.consistent and len(rec.known_labels) == sum(res.examples.values())
    assert (rec.known_iou.max(axis=1) == 1.0).all() and rec.ignore[rec.known_iou.argmax(axis=1)].all()
    assert res.metrics.n_ignored_gt == len(rec.known_labels)
    scored = evaluate(imgs, gts, CFG, shots=1, examples_from=[0], detect_on=[0], iou=(0.5,), score_examples=True)
    assert scored.consistent and scored.records[0].known_labels == ()  # found like any other object


def test_the_segmenter_ceiling_counts_the_examples_returned_as_drawn(scenes):
    """Every object an example, scored on a copy of their image (the same pixels, another
    image of the set): the examples come back as drawn, never embedded as candidates, and the
    segmenter's ceiling read 0.000 beside a recall of 1. It counts them now."""
    imgs, gts = scenes
    res = evaluate([imgs[0], imgs[0].copy()], [gts[0], gts[0]], CFG, shots=99, examples_from=[0], detect_on=[1],
                   iou=(0.5,))
    (rec,) = res.records
    assert len(rec.known_labels) == len(gts[0]) and res.metrics.at(0.5).detection.recall == 1.0
    assert res.candidate_recall["0.5"] == 1.0


def test_curve_and_revote_match_real_runs(scenes):
    imgs, gts = scenes
    first = evaluate(imgs, gts, CFG, shots=2, iou=(0.5,))
    # a threshold at the median best similarity drops about half of the candidates
    best = sorted(nb[0].score for r in first.records for nb in r.neighbours if nb)
    cut = round(float(best[len(best) // 2]), 6)
    res = evaluate(imgs, gts, CFG, shots=2, iou=(0.5,), curve_thresholds=(0.5, cut, 1.0))
    assert [r["threshold"] for r in res.curve] == [0.5, cut, 1.0]
    tps = [r["tp"] for r in res.curve]
    assert tps[0] > tps[1] > 0 and tps[2] == 0  # a higher threshold finds fewer
    again = evaluate(
        imgs, gts, DetectorConfig(**{**CFG.__dict__, "threshold": cut}), shots=2, iou=(0.5,)
    )
    revoted = res.metrics_at(cut)[0.5]
    real = again.metrics[0.5]
    assert (revoted.tp, revoted.fp, revoted.fn) == (real.tp, real.fp, real.fn)
    assert res.curve[1]["tp"] == real.tp


def test_label_image_ground_truth_and_label_override(scenes):
    from sam_detect.formats import instances_to_label_image

    imgs, gts = scenes
    lab = [instances_to_label_image(g) for g in gts]
    res = evaluate(imgs, lab, CFG, shots=3, label="blob", iou=(0.5,))
    assert res.examples == {"blob": 3}
    assert list(res.metrics.at(0.5).per_class) == ["blob"]


def test_protocol_input_errors(scenes):
    imgs, gts = scenes
    with pytest.raises(ValueError, match="3 images but ground truth for 2"):
        evaluate(imgs, gts[:2], CFG)
    with pytest.raises(ValueError, match=r"IoU thresholds must be in \(0, 1\]"):
        evaluate(imgs, gts, CFG, iou=(0.0,))
    with pytest.raises(AnnotationError, match="hold no annotated objects"):
        evaluate(imgs[:1], [Instances.empty(imgs[0].shape[:2])], CFG)
    with pytest.raises(AnnotationError, match="nothing left to score: every annotated object"):
        evaluate(imgs[:1], gts[:1], CFG, shots=len(gts[0]))  # one image, all of it drawn
    small = Instances(masks=gts[0].masks[:, :100, :100], labels=gts[0].labels)
    with pytest.raises(
        AnnotationError,
        match=r"ground truth of image 0 is 100x100 \(HxW\) but the image is 160x160",
    ):
        evaluate(imgs[:1], [small], CFG, shots=1)
    with pytest.raises(
        AnnotationError, match="expected Instances or an \\(H, W\\) integer label image"
    ):
        evaluate(imgs[:1], [np.zeros((4, 4, 3), np.float32)], CFG)


# -- sweeps --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "param", "values"),
    [
        ("threshold=0.3:0.9:0.1", "threshold", [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]),
        ("sigma=10,30,50", "sigma", [10.0, 30.0, 50.0]),
        ("fade=gaussian,identity", "fade", ["gaussian", "identity"]),
        ("embedder=effnet,handcrafted", "embedder", ["effnet", "handcrafted"]),
        ("occupancy=0.1:0.3:0.1", "occupancy", [0.1, 0.2, 0.3]),
        ("top-k=1,3", "top_k", [1, 3]),
        ("shots=1:3:1", "shots", [1, 2, 3]),
        ("segmenter.points_per_side=16,32", "segmenter.points_per_side", [16, 32]),
        ("segmenter.min_area=10:30:10", "segmenter.min_area", [10, 20, 30]),
        ("embedder.model=ViT-B-32,ViT-L-14", "embedder.model", ["ViT-B-32", "ViT-L-14"]),
    ],
)
def test_parse_sweep(spec, param, values):
    p, v = parse_sweep(spec)
    assert p == param
    assert v == pytest.approx(values) if isinstance(values[0], float) else v == values


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("threshold", "NAME=START:STOP:STEP"),
        ("colour=1,2", "cannot sweep 'colour'; sweepable: threshold"),
        ("threshold=0.9:0.3:0.1", "STOP >= START"),
        ("threshold=a:b:c", "must hold numbers"),
        ("threshold=0:1", "START:STOP:STEP"),
        ("fade=0:1:0.5", "list of names"),
        ("sigma=x,y", "takes float values"),
        ("threshold=0:1000:1", "at most 200"),
        ("sigma=", "has no values"),
    ],
)
def test_parse_sweep_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_sweep(spec)


def test_apply_param():
    cfg, proto = apply_param(CFG, {"shots": 2}, "sigma", 12.0)
    assert cfg.fade_options == {"sigma": 12.0} and proto == {"shots": 2}
    cfg, proto = apply_param(CFG, {"shots": 2}, "shots", 5)
    assert cfg is CFG and proto == {"shots": 5}
    cfg, _ = apply_param(CFG, {}, "segmenter.min_area", 30)
    assert cfg.segmenter_options == {"min_area": 30}
    assert CFG.segmenter_options == {}  # the input config is not modified


def test_threshold_sweep_is_one_pass_and_exact(scenes):
    imgs, gts = scenes
    first = evaluate(imgs, gts, CFG, shots=2, iou=(0.5,), curve_thresholds=())
    best = sorted(nb[0].score for r in first.records for nb in r.neighbours if nb)
    cut = round(float(best[len(best) // 3]), 6)
    sw = run_sweep(imgs, gts, CFG, "threshold", [0.5, cut], shots=2, iou=(0.5,))
    assert sw.revoted and len(sw.results) == 2
    real = evaluate(
        imgs, gts, DetectorConfig(**{**CFG.__dict__, "threshold": cut}), shots=2, iou=(0.5,)
    )
    a, b = sw.results[1].metrics[0.5], real.metrics[0.5]
    assert (a.tp, a.fp, a.fn) == (b.tp, b.fp, b.fn)
    assert a.tp < sw.results[0].metrics[0.5].tp
    assert sum(r["tp"] for r in sw.results[1].per_image) == a.tp  # per-image rows re-scored too
    assert sum(r["detected"] for r in sw.results[1].per_image) == sw.results[1].metrics.n_pred
    assert sw.results[1].threshold == cut
    assert "re-vote" in sw.table()
    assert sw.best() == (0.5, pytest.approx(sw.results[0].metrics[0.5].f1))


def test_occupancy_sweep_reuses_segmentations(scenes):
    imgs, gts = scenes
    sw = run_sweep(imgs[:2], gts[:2], CFG, "occupancy", [0.1, 0.3], shots=1, iou=(0.5,))
    assert sw.cached_segments
    assert [r.config["occupancy"] for r in sw.results] == [0.1, 0.3]
    assert sw.results[0].n_candidates == sw.results[1].n_candidates
    doc = json.loads(json.dumps(sw.to_dict()))
    assert doc["param"] == "occupancy" and len(doc["results"]) == 2


def test_caching_segmenter_returns_equal_copies(scenes):
    from sam_detect.segment import create_segmenter

    imgs, _ = scenes
    seg = CachingSegmenter(create_segmenter("classical"))
    a = seg.segment(imgs[0])
    a.labels[:] = "changed"  # the pipeline mutates what it gets; the cache must not see it
    b = seg.segment(imgs[0])
    assert seg.hits == 1
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    assert all(lab is None for lab in b.labels)
    assert seg.name == "classical"


# -- report --------------------------------------------------------------------------------
def test_report_png(tmp_path, scenes):
    from PIL import Image

    from sam_detect.eval.report import save_report

    imgs, gts = scenes
    res = evaluate(imgs[:2], gts[:2], CFG, shots=1, iou=(0.5,))
    path = save_report(res, tmp_path / "r.png")
    with Image.open(path) as im:
        assert im.size[0] > 600 and im.size[1] > 300
    sw = run_sweep(imgs[:2], gts[:2], CFG, "threshold", [0.5, 0.9], shots=1, iou=(0.5,))
    assert save_report(sw.results[0], tmp_path / "s.png", sweep=sw).exists()


def test_match_overlay_colours():
    from sam_detect.eval.metrics import MetricsAccumulator
    from sam_detect.eval.report import FN_COLOR, FP_COLOR, TP_COLOR, render_match_overlay

    hw = (40, 60)
    masks = np.zeros((3, *hw), bool)
    masks[0, 5:15, 5:15] = True
    masks[1, 20:30, 5:15] = True
    masks[2, 5:15, 40:50] = True
    gt = Instances(masks=masks[:2], labels=["a", "a"])
    pred = Instances(masks=masks[[0, 2]], labels=["a", "a"])
    m = MetricsAccumulator((0.5,)).add(pred, gt)[0.5]
    out = render_match_overlay(np.zeros((*hw, 3), np.uint8), pred, gt, m, thickness=1)
    assert tuple(out[5, 5]) == TP_COLOR  # outline pixels of each group
    assert tuple(out[20, 5]) == FN_COLOR
    assert tuple(out[5, 40]) == FP_COLOR
    assert tuple(out[35, 30]) == (0, 0, 0)


def test_protocol_on_padded_scenes_matches_the_unpadded_ones(scenes):
    """Scenes cut so that their border cuts objects, then padded with black (``detect`` leaves
    padding out and finds objects inside it): the re-vote reproduces what ``detect`` returned,
    and the scores and the error breakdown (what the border cuts: the padding's edge here)
    are the unpadded scenes'."""
    from sam_detect.io.render import padding_bands

    imgs, gts = [], []
    for rgb, g in zip(*scenes, strict=True):
        masks = g.masks[:, 20:, 20:]
        keep = masks.any(axis=(1, 2))
        imgs.append(np.ascontiguousarray(rgb[20:, 20:]))
        gts.append(Instances(masks=masks[keep], labels=np.asarray(g.labels, object)[keep]))
    padded = [np.pad(im, ((12, 0), (0, 20), (0, 0))) for im in imgs]  # above, and to the right
    assert all(padding_bands(p) == (12, 0, 0, 20) for p in padded)
    moved = [g.placed(0, 12, p.shape[:2]) for g, p in zip(gts, padded, strict=True)]
    res = evaluate(padded, moved, CFG, shots=2, seed=0, iou=(0.5,))
    base = evaluate(imgs, gts, CFG, shots=2, seed=0, iou=(0.5,))
    assert res.consistent
    assert res.metrics[0.5].f1 == base.metrics[0.5].f1 and res.metrics.n_gt == base.metrics.n_gt
    assert res.errors == base.errors


def test_timings_are_reported_stage_by_stage_the_whole_call_last():
    """The stage timings line read "segment 0.633, embed 0.124, search 0.026, total 0.828,
    select 0.014": the selection, timed since, came after the total."""
    from sam_detect.eval.protocol import _timing_summary

    got = _timing_summary([{"total": 1.0, "select": 0.1, "segment": 0.5, "embed": 0.2, "search": 0.1, "other": 0.1}])
    assert list(got) == ["segment", "embed", "search", "select", "other", "total"]
    assert got["total"]["median_s"] == 1.0


def test_a_server_eval_deletes_its_own_temporary_library_only(monkeypatch, tmp_path):
    """On a Qdrant server other evals' temporary libraries (and a user's named ``eval-...``)
    share the store: the cleanup deletes the run's own library alone."""
    import sam_detect.store as stores
    from sam_detect.eval.recording import temp_store
    from sam_detect.store.base import LibraryMeta

    real_create = stores.create_store
    shared = real_create("memory", path=tmp_path)  # a real store standing in for the server's collections
    for name in ("eval-0123abcd", "eval-results", "mine"):
        shared.create_library(LibraryMeta(name=name, embedder_id="x", dim=4))
    monkeypatch.setattr(stores, "create_store", lambda kind, **opts: shared)
    config = DetectorConfig(store="qdrant", store_options={"url": "http://localhost:6333"})
    store, cleanup, desc = temp_store(config, "eval-feedc0de")
    store.create_library(LibraryMeta(name="eval-feedc0de", embedder_id="x", dim=4))
    cleanup()
    assert desc == "qdrant server http://localhost:6333"
    assert sorted(real_create("memory", path=tmp_path).list_libraries()) == ["eval-0123abcd", "eval-results", "mine"]
