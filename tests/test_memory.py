"""Freed memory kept for reuse while ``detect`` and ``add`` run (``sam_detect._memory``).

Measured through the process's own minor page faults: a block freed and allocated again
inside :func:`kept` is the same memory, already paged in, where glibc would otherwise hand a
large block back to the kernel and take fresh zeroed pages for the next one. After the
outermost ``with`` the memory is given back. The pipeline returns the same objects either way.
"""

from __future__ import annotations

import ctypes
import resource
import threading

import numpy as np
import pytest

from sam_detect import DetectorConfig, Instances, SAMDetect
from sam_detect import _memory as mem
from tests.conftest import draw_scene

glibc_only = pytest.mark.skipif(mem._glibc() is None, reason="needs glibc's malloc (mallopt, malloc_trim)")

#: a block above glibc's largest mmap threshold (32 MB): mmapped, and unmapped when freed
BLOCK = 96 << 20


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _touch_and_free(size: int = BLOCK) -> int:
    """Page faults of allocating ``size`` bytes with malloc, writing them and freeing them."""
    libc = mem._glibc()
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    start = _faults()
    p = libc.malloc(size)
    assert p
    ctypes.memset(p, 1, size)
    libc.free(p)
    return _faults() - start


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


@glibc_only
def test_a_block_freed_inside_is_reused_without_new_pages(monkeypatch):
    monkeypatch.delenv(mem.KEEP_MEMORY_ENV, raising=False)
    pages = BLOCK // 4096
    with mem.kept():
        _touch_and_free()  # the heap grows to hold it once
        again = _touch_and_free()
    assert again < pages // 20, f"{again} page faults for a block freed and taken again ({pages} pages)"


@glibc_only
def test_nested_and_threaded_calls_keep_it_until_the_outermost_ends(monkeypatch):
    monkeypatch.delenv(mem.KEEP_MEMORY_ENV, raising=False)
    pages = BLOCK // 4096
    with mem.kept():
        with mem.kept():
            _touch_and_free()
        done = threading.Event()

        def inner() -> None:
            with mem.kept():
                pass
            done.set()

        t = threading.Thread(target=inner)
        t.start()
        t.join()
        assert done.is_set() and mem._depth == 1
        again = _touch_and_free()  # the inner calls ended; the outer one still keeps the memory
    assert again < pages // 20
    assert mem._depth == 0


@glibc_only
def test_the_memory_is_given_back_when_the_call_ends(monkeypatch):
    monkeypatch.delenv(mem.KEEP_MEMORY_ENV, raising=False)
    before = _rss_kb()
    with mem.kept():
        _touch_and_free(256 << 20)
        held = _rss_kb()
    after = _rss_kb()
    assert held - before > 200 << 10, "the freed block was kept inside the call"
    assert after - before < 64 << 10, f"{(after - before) >> 10} MB still held after the call"


def test_switched_off_it_leaves_the_allocator_alone(monkeypatch):
    calls = []

    class Libc:
        def mallopt(self, *a):
            calls.append(("mallopt", *a))
            return 1

        def malloc_trim(self, *a):
            calls.append(("malloc_trim", *a))
            return 1

    monkeypatch.setattr(mem, "_glibc", lambda: Libc())
    monkeypatch.setenv(mem.KEEP_MEMORY_ENV, "0")
    assert not mem.enabled()
    with mem.kept():
        pass
    assert calls == []
    monkeypatch.setenv(mem.KEEP_MEMORY_ENV, "1")
    assert mem.enabled()
    with mem.kept():
        assert [c[0] for c in calls] == ["mallopt", "mallopt"]
    # glibc's defaults set back, and what is free given back
    assert calls[2:] == [("mallopt", mem._M_MMAP_MAX, mem._DEFAULT_MMAP_MAX),
                         ("mallopt", mem._M_TRIM_THRESHOLD, mem._DEFAULT_TRIM_THRESHOLD), ("malloc_trim", 0)]


def test_an_error_inside_still_ends_the_call(monkeypatch):
    monkeypatch.delenv(mem.KEEP_MEMORY_ENV, raising=False)
    with pytest.raises(ValueError), mem.kept():
        raise ValueError("bad input")
    assert mem._depth == 0


def test_detect_gives_the_same_objects_either_way(monkeypatch):
    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="views", library="shapes"))
    rgb, masks, labels = draw_scene(seed=1, n_discs=3, n_squares=3)
    det.add_examples(rgb, Instances(masks=masks, labels=labels))
    scene, _, _ = draw_scene(seed=7, n_discs=4, n_squares=4)
    monkeypatch.setenv(mem.KEEP_MEMORY_ENV, "1")
    kept = det.detect(scene)
    monkeypatch.setenv(mem.KEEP_MEMORY_ENV, "0")
    plain = det.detect(scene)
    det.close()
    assert len(kept) == len(plain) > 0
    assert np.array_equal(kept.boxes, plain.boxes)
    assert list(kept.labels) == list(plain.labels)
    assert np.array_equal(kept.data["similarity"], plain.data["similarity"])


def test_a_run_of_images_keeps_it_from_the_first_to_the_last(monkeypatch):
    """``detect_many`` holds one ``kept`` over its images (no hand-back between them), and
    a caller that stops early ends it when it closes the generator."""
    monkeypatch.delenv(mem.KEEP_MEMORY_ENV, raising=False)
    if not mem.enabled():
        pytest.skip("needs glibc's malloc (mallopt, malloc_trim)")
    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="views", library="shapes"))
    rgb, masks, labels = draw_scene(seed=1, n_discs=3, n_squares=3)
    det.add_examples(rgb, Instances(masks=masks, labels=labels))
    assert mem._depth == 0
    scenes = [draw_scene(seed=s, n_discs=2, n_squares=2)[0] for s in (5, 6, 7)]
    depths = [mem._depth for _ in det.detect_many(scenes)]
    assert depths == [1, 1, 1] and mem._depth == 0
    run = det.detect_many(scenes)
    next(run)
    assert mem._depth == 1
    run.close()
    assert mem._depth == 0
    det.close()
