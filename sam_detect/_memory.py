"""Freed memory kept for reuse while a heavy call runs (glibc's ``malloc`` only).

glibc hands each large block (above a threshold that grows to at most 32 MB) to the
kernel straight from ``mmap`` and gives it back with ``munmap`` when it is freed, and it
gives back the free top of its heap once that passes a few times the threshold. A call
that allocates and frees the same large temporaries again and again (the network's
activations, tile after tile of a large image; a window's float copies) then takes a fresh
page from the kernel, zeroed, for every page of every one of them: on the 4096² mosaic's
``detect`` about a million page faults and 3-4 s of the process's 16-18 s of CPU went to
the kernel, most of it zeroing pages (docs/performance.md, session 83).

:func:`kept` turns both off while the outermost call runs (``mallopt``: no ``mmap`` for
large blocks, the heap's top kept), so that freed blocks are reused, and on its way out
sets glibc's default trim threshold back and gives what is free back to the kernel
(``malloc_trim``): between calls the process holds what it holds without them. Nothing
is computed differently; only where the memory comes from changes.

Set ``SAM_DETECT_KEEP_MEMORY=0`` to leave the allocator alone. Elsewhere than glibc (macOS,
Windows, musl) this does nothing.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

KEEP_MEMORY_ENV = "SAM_DETECT_KEEP_MEMORY"
#: ``mallopt`` parameters (``<malloc.h>``) and glibc's defaults for them
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
#: the heap's free top is kept up to this while a call runs (``int`` in ``mallopt``)
_KEPT_TRIM_THRESHOLD = 2**31 - 1

_lock = threading.Lock()
_depth = 0
_libc: Any = None
_looked = False


def _glibc() -> Any:
    """glibc through ctypes, or ``None`` (another C library or platform, or switched off)."""
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


def enabled() -> bool:
    """Whether :func:`kept` changes anything here (glibc, and not switched off)."""
    return os.environ.get(KEEP_MEMORY_ENV, "1").strip().lower() not in ("0", "false", "no", "off") \
        and _glibc() is not None


@contextlib.contextmanager
def kept() -> Iterator[None]:
    """Freed memory reused, not handed back to the kernel, until the outermost ``with`` ends
    (threads and nested calls share one count)."""
    global _depth
    libc = _glibc() if enabled() else None
    if libc is None:
        yield
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, _KEPT_TRIM_THRESHOLD)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
                libc.malloc_trim(0)


def keeping(fn: Any) -> Any:
    """``fn`` run inside :func:`kept`."""
    import functools

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with kept():
            return fn(*args, **kwargs)

    return run
