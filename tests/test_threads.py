"""Host work split over threads: the same results however many threads run.

The measured views of many objects run on the usable cores (``sam_detect._cores``), in
contiguous runs of objects: each run is its own objects' work, so the vectors must be
exactly those one thread gives.
"""

from __future__ import annotations

import numpy as np

from sam_detect import _cores
from sam_detect.embed import measure
from sam_detect.embed.views import _object_pixels
from sam_detect.instances import Instances


def cores(monkeypatch, n: int) -> None:
    monkeypatch.setattr(_cores, "usable_cores", lambda: n)


def test_usable_cores_is_at_least_one():
    assert _cores.usable_cores() >= 1


def test_the_calibration_grid_takes_the_usable_cores_up_to_its_cap(monkeypatch):
    from sam_detect.segment import calibrated

    cores(monkeypatch, 1)
    assert calibrated.grid_threads() == 1
    cores(monkeypatch, 64)
    assert calibrated.grid_threads() == calibrated.MAX_THREADS


def many_objects(n_side: int = 24, seed: int = 0) -> tuple[np.ndarray, Instances]:
    """An RGB image with ``n_side``^2 textured discs, some of them overlapping pairs (as a
    segmenter's alternatives overlap), and one empty mask."""
    rng = np.random.default_rng(seed)
    size = 22 * n_side
    rgb = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
    yy, xx = np.mgrid[:size, :size]
    masks = []
    for i in range(n_side):
        for j in range(n_side):
            cy, cx, r = 11 + 22 * i, 11 + 22 * j, rng.integers(5, 10)
            m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            rgb[m] = np.clip(rgb[m].astype(int) + rng.integers(60, 180, 3), 0, 255)
            masks.append(m)
    masks.append(masks[5] | masks[6])  # an alternative over two
    masks.append(np.zeros((size, size), bool))  # an empty one
    return rgb, Instances(masks=np.stack(masks))


def test_the_measured_views_are_the_same_on_one_thread_or_many(monkeypatch):
    rgb, inst = many_objects()
    monkeypatch.setattr(measure, "CHUNK_PIXELS", 5000)  # several runs on a small scene
    cores(monkeypatch, 4)
    pixels = _object_pixels(inst.mask_crops)
    runs = measure._runs(np.bincount(pixels[0], minlength=len(inst)), pixels[0], None)
    assert len(runs) == 4 and runs[0][0] == 0 and runs[-1][1] == len(inst)
    assert all(a[1] == b[0] for a, b in zip(runs[:-1], runs[1:], strict=True))  # contiguous, in order
    one = measure.describe_objects(rgb, inst, threads=1)
    many = measure.describe_objects(rgb, inst, pixels=pixels)
    np.testing.assert_array_equal(one, many)
    assert not one[-1].any() and one[:-1].any(axis=1).all()  # the empty mask: zeros


def test_objects_whose_pixels_are_not_gathered_object_by_object_are_measured_in_one_run(monkeypatch):
    monkeypatch.setattr(measure, "CHUNK_PIXELS", 2)
    cores(monkeypatch, 4)
    owner = np.array([0, 0, 1, 0, 2, 2], np.int64)  # object 0's pixels in two places
    assert measure._runs(np.bincount(owner), owner, None) == [(0, 3)]
    sorted_owner = np.sort(owner)
    assert len(measure._runs(np.bincount(sorted_owner), sorted_owner, None)) > 1
    assert measure._runs(np.bincount(sorted_owner), sorted_owner, 1) == [(0, 3)]


def test_the_views_embedder_measures_many_objects_on_threads_only_where_the_cores_are_free(monkeypatch):
    """Many objects: the measured views on threads and the map cells counted beside them, the
    vectors those of one thread; with the network pass beside still running, one thread."""
    from sam_detect.embed import views

    rgb, inst = many_objects(n_side=12)
    emb = views.ViewsEmbedder()
    typical = float(np.median(inst.areas[inst.areas > 0]))
    serial = emb.embed_instances(rgb, inst, typical_area=typical)
    monkeypatch.setattr(measure, "CHUNK_PIXELS", 3000)
    cores(monkeypatch, 4)
    asked = []
    real = measure.describe_objects

    def spy(*args, **kwargs):
        asked.append(kwargs.get("threads"))
        return real(*args, **kwargs)

    monkeypatch.setattr(measure, "describe_objects", spy)
    np.testing.assert_array_equal(emb.embed_instances(rgb, inst, typical_area=typical), serial)
    assert asked == [None]  # as many threads as the cores allow

    class Running:  # a network pass that has not ended: the measurements take one thread
        scale, image = views.choose_scale(np.array([typical]), emb.target), rgb

        def done(self):
            return False

        def result(self):
            return None  # (as if closed: the maps are made here)

        def close(self):
            pass

    np.testing.assert_array_equal(emb.embed_instances(rgb, inst, typical_area=typical, prefetched=Running()), serial)
    assert asked == [None, 1]
