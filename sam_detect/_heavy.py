"""What a heavy call (``detect``, ``add``, a run over many images) sets up while it runs:
freed memory kept for reuse (glibc's ``malloc``), the objects that were there before left to
one side by the garbage collector, and BLAS on one thread.

**Memory.** glibc hands each large block (above a threshold that grows to at most 32 MB)
to the kernel straight from ``mmap`` and gives it back with ``munmap`` when it is freed,
and it gives back the free top of its heap once that passes a few times the threshold. A
call that allocates and frees the same large temporaries again and again (the network's
activations, tile after tile of a large image; a window's float copies) then takes a fresh
page from the kernel, zeroed, for every page of every one of them: on the 4096² mosaic's
``detect`` about a million page faults and 3-4 s of the process's 16-18 s of CPU went to
the kernel, most of it zeroing pages. While the outermost call runs, glibc takes no block
from ``mmap`` and keeps its heap's top and its threads' emptied heaps (``mallopt``), so
freed blocks are reused; on the way out its thresholds are set where its dynamic rule
settles (:func:`steady_heap`) and what is free goes back to the kernel (``malloc_trim``),
so between calls the process holds what it would hold without this. Elsewhere than glibc
(macOS, Windows, musl) nothing changes.

**Garbage collection.** A call makes thousands of small Python objects (a mask crop, a
neighbour, a dict per candidate), and each of Python's full collections then walks every
object the process holds, torch's modules included (``gc_collect_main``: 2.4 % of a run over
HeLa frames). While the outermost call runs, the objects that were there before it are
frozen (``gc.freeze``): collections walk only the call's own objects, whose cycles are still
collected; after it they are unfrozen, as they were. Left alone where something else froze
objects first. ``SAM_DETECT_KEEP_MEMORY=0`` leaves the allocator and the collector alone.

**BLAS.** numpy's and scipy's OpenBLAS (and any other loaded) run their matrix products on
every core, and after each product their worker threads spin, waiting for the next one;
the pipeline's products are small (candidates against examples), so the spinning takes
cores from the network pass and the segmentation that run beside it. While the outermost
call runs, every loaded BLAS runs on one thread (``threadpoolctl``); its own count is set
back after. ``SAM_DETECT_BLAS_ONE_THREAD=0`` leaves them alone.

Nothing is computed differently either way (docs/performance.md, session 83).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

KEEP_MEMORY_ENV = "SAM_DETECT_KEEP_MEMORY"
BLAS_ONE_THREAD_ENV = "SAM_DETECT_BLAS_ONE_THREAD"
#: ``mallopt`` parameters (``<malloc.h>``), and glibc's default for the most blocks mapped
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -2, -3, -4
_DEFAULT_MMAP_MAX, _DEFAULT_TOP_PAD = 65536, 128 * 1024
#: outside the calls, blocks up to this size come from the heap, not one ``mmap`` each
#: (glibc's own ceiling for its dynamic threshold on 64-bit machines, which any setting of
#: the trim threshold freezes where it stands) ...
MMAP_THRESHOLD = 32 * 1024 * 1024
#: ... and up to this much free memory is kept at the top of the heap (twice the above, as
#: glibc's dynamic rule has it)
TRIM_THRESHOLD = 64 * 1024 * 1024
#: the heap's free top is kept up to this while a call runs (``int`` in ``mallopt``) ...
_KEPT_TRIM_THRESHOLD = 2**31 - 1
#: ... and a thread's arena keeps an emptied heap (64 MB at most) while this much pad is
#: asked for: the network thread's arena otherwise unmaps a heap each time its one large
#: activation is freed, and maps a fresh one for the next (the mosaic: 214,000-380,000 page
#: faults with the rest, 112,000-117,000 with this too)
_KEPT_TOP_PAD = 64 * 1024 * 1024

log = logging.getLogger(__name__)

_lock = threading.Lock()
_depth = 0
_undo: list[Any] = []  # what the outermost call set, to be set back when it ends
_libc: Any = None
_looked = False
_blas: tuple[Any, int] | None = None  # (threadpoolctl controller, len(sys.modules) when made)


def _glibc() -> Any:
    """glibc through ctypes, or ``None`` (another C library or platform)."""
    global _libc, _looked
    if not _looked:
        _looked = True
        try:
            glibc = sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
        except (ValueError, OSError, AttributeError):  # musl and others do not name themselves
            glibc = False
        if glibc:
            import ctypes

            try:
                libc = ctypes.CDLL(None)
            except OSError:  # no C library to load: leave the allocator alone
                libc = None
            if libc is not None and hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim"):
                _libc = libc
    return _libc


def _switched_on(env: str, what: str) -> bool:
    """Switch ``env`` (``config.env_switch``: on where unset; a word it does not know is
    refused in one line)."""
    from sam_detect.config import env_switch

    return env_switch(env, f"0 (leave {what} alone) or 1") is not False


def _switches() -> tuple[bool, bool]:
    """``(memory, blas)``: whether the memory settings and BLAS's one thread are on."""
    return (_switched_on(KEEP_MEMORY_ENV, "the allocator and the garbage collector"),
            _switched_on(BLAS_ONE_THREAD_ENV, "the BLAS libraries' threads"))


def enabled() -> bool:
    """Whether :func:`running` keeps freed memory here (glibc, and not switched off)."""
    return _switches()[0] and _glibc() is not None


def _blas_controller() -> Any:
    """A ``threadpoolctl`` controller of the BLAS libraries loaded now (made again when
    modules were imported since: a new extension may have brought another BLAS)."""
    global _blas
    if _blas is None or _blas[1] != len(sys.modules):
        from threadpoolctl import ThreadpoolController

        _blas = (ThreadpoolController(), len(sys.modules))
    return _blas[0]


def _enter(memory: bool, blas_one: bool) -> None:
    import gc

    if memory and gc.get_freeze_count() == 0:
        gc.freeze()
        _undo.append(gc.unfreeze)
    libc = _glibc() if memory else None
    if libc is not None:
        libc.mallopt(_M_MMAP_MAX, 0)
        libc.mallopt(_M_TRIM_THRESHOLD, _KEPT_TRIM_THRESHOLD)
        libc.mallopt(_M_TOP_PAD, _KEPT_TOP_PAD)
        _undo.append(_give_back_memory)
    if blas_one:
        blas = _blas_controller().select(user_api="blas")
        before = [lib.num_threads for lib in blas.lib_controllers]
        if any(n != 1 for n in before):
            for lib in blas.lib_controllers:
                lib.set_num_threads(1)
            _undo.append(lambda: [lib.set_num_threads(n) for lib, n in zip(blas.lib_controllers, before, strict=True)])


def steady_heap() -> bool:
    """Set glibc's thresholds where its dynamic rule settles (:data:`MMAP_THRESHOLD`,
    :data:`TRIM_THRESHOLD`); whether it could (glibc)."""
    libc = _glibc()
    return libc is not None and bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def _give_back_memory() -> None:
    libc = _glibc()
    libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
    libc.mallopt(_M_TOP_PAD, _DEFAULT_TOP_PAD)
    steady_heap()
    libc.malloc_trim(0)


@contextlib.contextmanager
def running() -> Iterator[None]:
    """The settings above, from the outermost ``with`` to its end (threads and nested calls
    share one count). A switch set to a word it does not take is refused here, before any
    work."""
    global _depth
    memory, blas_one = _switches()
    with _lock:
        _depth += 1
        if _depth == 1:
            try:
                _enter(memory, blas_one)
            except Exception as e:  # a setting that cannot be made costs speed, never the call
                log.debug("heavy-call settings not made: %s: %s", type(e).__name__, e)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                while _undo:
                    with contextlib.suppress(Exception):
                        _undo.pop()()


def heavy(fn: Any) -> Any:
    """``fn`` run inside :func:`running`."""
    import functools

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with running():
            return fn(*args, **kwargs)

    return run
