"""The network pass started beside segmentation (``ViewsEmbedder.prefetch``, ``SAMDetect.detect``).

The maps a worker thread makes are the direct call's, so ``detect`` must return the same
objects, vectors and labels whether or not the pass was started early; a job made for
another resize factor is given up; an error on the worker reaches the caller.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from sam_detect import DetectorConfig, Instances, SAMDetect
from sam_detect.embed import views as mod
from sam_detect.embed.views import MapsJob, ViewsEmbedder
from tests.conftest import draw_scene


@pytest.fixture(scope="module")
def detector():
    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="views", library="shapes"))
    rgb, masks, labels = draw_scene(seed=1, n_discs=3, n_squares=3)
    det.add_examples(rgb, Instances(masks=masks, labels=labels))
    yield det
    det.close()


def _spy(monkeypatch, det):
    """Record every job ``detect`` starts, and every network pass with its thread."""
    jobs, passes = [], []
    start, maps = det.embedder.prefetch, det.embedder.feature_maps

    def prefetch(*a, **k):
        jobs.append(start(*a, **k))
        return jobs[-1]

    def feature_maps(*a, **k):
        passes.append(threading.current_thread().name)
        return maps(*a, **k)

    monkeypatch.setattr(det.embedder, "prefetch", prefetch)
    monkeypatch.setattr(det.embedder, "feature_maps", feature_maps)
    return jobs, passes


def test_detect_with_the_pass_started_early_gives_what_it_gives_without(detector, monkeypatch):
    rgb, masks, labels = draw_scene(seed=7, n_discs=4, n_squares=4)
    jobs, passes = _spy(monkeypatch, detector)
    early = detector.detect(rgb)
    assert len(jobs) == 1 and passes == [passes[0]] and passes[0].startswith("sam-detect-maps")
    assert not jobs[0]._future.running()  # nothing left running after detect returns
    monkeypatch.setattr(type(detector), "_prefetch_maps", lambda self, rgb: None)
    late = detector.detect(rgb)
    assert len(passes) == 2 and not passes[1].startswith("sam-detect-maps")
    assert len(early) == len(late) == len(masks)
    assert np.array_equal(early.boxes, late.boxes)
    assert list(early.labels) == list(late.labels) and sorted(early.labels) == sorted(labels)
    assert np.array_equal(early.data["similarity"], late.data["similarity"])
    assert np.array_equal(early.label_confidences, late.label_confidences)


def test_no_candidate_closes_the_job(detector, monkeypatch):
    jobs, _ = _spy(monkeypatch, detector)
    found = detector.detect(np.full((160, 160, 3), 20, np.uint8))
    assert len(found) == 0 and len(jobs) == 1
    assert jobs[0]._stop.is_set() and jobs[0]._future.done()


def test_a_segmenter_that_runs_a_network_gets_no_early_pass(detector, monkeypatch):
    """Two networks at once would only share the cores: a segmenter that does not say it
    works on the host alone (``uses_network``) runs first, as before."""
    jobs, passes = _spy(monkeypatch, detector)
    monkeypatch.setattr(type(detector.segmenter), "uses_network", True)
    rgb, masks, _ = draw_scene(seed=7, n_discs=4, n_squares=4)
    assert len(detector.detect(rgb)) == len(masks)
    assert jobs == [] and len(passes) == 1
    monkeypatch.delattr(type(detector.segmenter), "uses_network")  # a segmenter that does not say
    assert detector._prefetch_maps(rgb) is None


def test_a_job_for_another_scale_is_given_up_and_the_vectors_are_the_same():
    """An image at another magnification than the examples is embedded at its own scale:
    the job started for the examples' scale stops and the maps are made again."""
    views = ViewsEmbedder(device="cpu")
    rgb, masks, _ = draw_scene(seed=3, size=200)
    inst = Instances(masks=masks)
    direct = views.embed_instances(rgb, inst, typical_area=400.0)
    wrong = views.prefetch(rgb, typical_area=4000.0)
    assert wrong.scale != mod.choose_scale(np.array([400.0]), views.target)
    assert np.array_equal(views.embed_instances(rgb, inst, typical_area=400.0, prefetched=wrong), direct)
    assert wrong._stop.is_set() and wrong._future.done()
    right = views.prefetch(rgb, typical_area=400.0)
    assert np.array_equal(views.embed_instances(rgb, inst, typical_area=400.0, prefetched=right), direct)
    right.close()
    other = views.prefetch(rgb.copy(), typical_area=400.0)  # made for another image array
    assert np.array_equal(views.embed_instances(rgb, inst, typical_area=400.0, prefetched=other), direct)


def test_closing_stops_between_tiles(monkeypatch):
    """A closed job runs no further tile: an image of many tiles stops after the first."""
    views = ViewsEmbedder(device="cpu")
    monkeypatch.setattr(mod, "TILE", 256)
    monkeypatch.setattr(mod, "TILE_SIDE", 256)
    ran, go = [], threading.Event()
    net = views.model

    def slow(x):
        ran.append(x.shape)
        go.wait(5)
        return net(x)

    monkeypatch.setattr(ViewsEmbedder, "model", property(lambda self: slow))
    job = views.prefetch(np.zeros((800, 800, 3), np.uint8), typical_area=1024.0)  # 16 tiles
    while not ran:
        threading.Event().wait(0.01)
    job._stop.set()
    go.set()
    job.close()
    assert job.result() is None and len(ran) == 1


def test_an_error_on_the_worker_reaches_the_caller(detector, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("network failed")

    monkeypatch.setattr(detector.embedder, "feature_maps", broken)
    rgb, _, _ = draw_scene(seed=7, n_discs=4, n_squares=4)
    with pytest.raises(RuntimeError, match="network failed"):
        detector.detect(rgb)
    job = MapsJob(detector.embedder, rgb, 1.0)
    job.close()  # an unread error is dropped when nobody wants the maps
