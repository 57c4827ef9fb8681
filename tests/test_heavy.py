"""What ``detect`` and ``add`` set up while they run (``sam_detect._heavy``): freed memory
kept for reuse, and BLAS on one thread.

Memory is measured through the process's own minor page faults: a block freed and
allocated again inside :func:`running` is the same memory, already paged in, where glibc
would otherwise hand a large block back to the kernel and take fresh zeroed pages for the
next one. After the outermost ``with`` the memory is given back and each BLAS has its own
thread count again. The pipeline returns the same objects either way.
"""

from __future__ import annotations

import ctypes
import resource
import threading

import numpy as np
import pytest

from sam_detect import DetectorConfig, Instances, SAMDetect
from sam_detect import _heavy as mem
from tests.conftest import draw_scene

glibc_only = pytest.mark.skipif(mem._glibc() is None, reason="needs glibc's malloc (mallopt, malloc_trim)")

#: a block above glibc's largest mmap threshold (32 MB): mmapped, and unmapped when freed
BLOCK = 96 << 20


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _touch_and_free(size: int = BLOCK) -> int:
    """Page faults of allocating ``size`` bytes with malloc, writing them and freeing them."""
    libc = ctypes.CDLL(None)  # a handle of the test's own: the package's keeps its defaults
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
    with mem.running():
        _touch_and_free()  # the heap grows to hold it once
        again = _touch_and_free()
    assert again < pages // 20, f"{again} page faults for a block freed and taken again ({pages} pages)"


@glibc_only
def test_nested_and_threaded_calls_keep_it_until_the_outermost_ends(monkeypatch):
    monkeypatch.delenv(mem.KEEP_MEMORY_ENV, raising=False)
    pages = BLOCK // 4096
    with mem.running():
        with mem.running():
            _touch_and_free()
        done = threading.Event()

        def inner() -> None:
            with mem.running():
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
    with mem.running():
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
    monkeypatch.setenv(mem.BLAS_ONE_THREAD_ENV, "0")
    monkeypatch.setenv(mem.KEEP_MEMORY_ENV, "0")
    assert not mem.enabled()
    with mem.running():
        pass
    assert calls == []
    monkeypatch.setenv(mem.KEEP_MEMORY_ENV, "1")
    assert mem.enabled()
    with mem.running():
        assert calls == [("mallopt", mem._M_MMAP_MAX, 0), ("mallopt", mem._M_TRIM_THRESHOLD, mem._KEPT_TRIM_THRESHOLD),
                         ("mallopt", mem._M_TOP_PAD, mem._KEPT_TOP_PAD)]
    # glibc's thresholds set where its own rule settles, and what is free given back
    assert calls[3:] == [("mallopt", mem._M_MMAP_MAX, mem._DEFAULT_MMAP_MAX),
                         ("mallopt", mem._M_TOP_PAD, mem._DEFAULT_TOP_PAD),
                         ("mallopt", mem._M_MMAP_THRESHOLD, mem.MMAP_THRESHOLD),
                         ("mallopt", mem._M_TRIM_THRESHOLD, mem.TRIM_THRESHOLD), ("malloc_trim", 0)]


def test_the_objects_there_before_are_frozen_while_the_call_runs(monkeypatch):
    import gc
    import weakref

    monkeypatch.delenv(mem.KEEP_MEMORY_ENV, raising=False)
    assert gc.get_freeze_count() == 0
    with mem.running():
        assert gc.get_freeze_count() > 0  # collections walk only what the call makes

        class Node:
            pass

        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle made inside the call is still collected
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        assert gone() is None
    assert gc.get_freeze_count() == 0  # unfrozen, as they were
    monkeypatch.setenv(mem.KEEP_MEMORY_ENV, "0")
    with mem.running():
        assert gc.get_freeze_count() == 0


def test_objects_frozen_by_someone_else_stay_as_they_are(monkeypatch):
    import gc

    monkeypatch.delenv(mem.KEEP_MEMORY_ENV, raising=False)
    gc.freeze()  # a pre-fork server's own freeze
    try:
        frozen = gc.get_freeze_count()
        with mem.running():
            pass
        # not unfrozen by the call (that leaves 0), nor frozen again; a frozen object freed
        # meanwhile (a thread of an earlier test ending) lowers the count by one (CI: by 2)
        assert frozen - 100 <= gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_blas_runs_on_one_thread_inside_and_on_its_own_count_after(monkeypatch):
    from threadpoolctl import threadpool_limits

    monkeypatch.delenv(mem.BLAS_ONE_THREAD_ENV, raising=False)
    np.ones((64, 64)) @ np.ones((64, 64))  # numpy's BLAS is loaded
    with threadpool_limits(limits=2, user_api="blas"):  # as on a machine of two cores or more
        before = _blas_threads()
        assert before and all(n == 2 for n in before)
        with mem.running():
            assert all(n == 1 for n in _blas_threads())
            with mem.running():  # a nested call changes nothing, and its end sets nothing back
                pass
            assert all(n == 1 for n in _blas_threads())
        assert _blas_threads() == before
        monkeypatch.setenv(mem.BLAS_ONE_THREAD_ENV, "0")
        with mem.running():
            assert _blas_threads() == before


def test_a_switch_set_to_an_unknown_word_is_refused_before_any_work(monkeypatch):
    from sam_detect.errors import SamDetectError

    monkeypatch.setenv(mem.KEEP_MEMORY_ENV, "maybe")
    with pytest.raises(SamDetectError, match="SAM_DETECT_KEEP_MEMORY='maybe': expected 0"), mem.running():
        raise AssertionError("the call ran")
    assert mem._depth == 0 and not mem._undo
    monkeypatch.setenv(mem.KEEP_MEMORY_ENV, "off")
    monkeypatch.setenv(mem.BLAS_ONE_THREAD_ENV, "yes please")
    with pytest.raises(SamDetectError, match="SAM_DETECT_BLAS_ONE_THREAD"), mem.running():
        raise AssertionError("the call ran")


def test_an_error_inside_still_ends_the_call(monkeypatch):
    monkeypatch.delenv(mem.KEEP_MEMORY_ENV, raising=False)
    with pytest.raises(ValueError), mem.running():
        raise ValueError("bad input")
    assert mem._depth == 0


def test_detect_gives_the_same_objects_either_way(monkeypatch):
    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="views", library="shapes"))
    rgb, masks, labels = draw_scene(seed=1, n_discs=3, n_squares=3)
    det.add_examples(rgb, Instances(masks=masks, labels=labels))
    scene, _, _ = draw_scene(seed=7, n_discs=4, n_squares=4)
    monkeypatch.setenv(mem.KEEP_MEMORY_ENV, "1")
    monkeypatch.setenv(mem.BLAS_ONE_THREAD_ENV, "1")
    kept = det.detect(scene)
    monkeypatch.setenv(mem.KEEP_MEMORY_ENV, "0")
    monkeypatch.setenv(mem.BLAS_ONE_THREAD_ENV, "0")
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
