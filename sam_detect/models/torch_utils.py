"""Torch helpers shared by every model user (embedders, the SAM2 runtime, the segmenter,
video propagation): device choice, autocast, thread count, a shared model cache, batching.

torch is imported inside the functions that need it; still, import this module from
factories or on first use, not at ``import sam_detect`` time.

- :func:`resolve_device` turns ``"auto" | "cpu" | "cuda" | "cuda:1" | "mps"`` into a
  ``torch.device`` (``"auto"``: CUDA when available, else CPU) and fails with
  :class:`DeviceNotAvailableError` when an accelerator is asked for but absent.
- :func:`inference_context` wraps ``torch.inference_mode`` and, on CUDA, bf16 autocast
  (on a CPU with native bf16 instructions too, for the callers that ask: :func:`cpu_bf16`).
- :func:`cached_model` builds a model once per key (e.g. per weights and device) and
  shares it between embedder and segmenter instances, thread-safely.
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from sam_detect.errors import DeviceNotAvailableError, ModelNotAvailableError

if TYPE_CHECKING:
    import torch

T = TypeVar("T")


#: see :func:`freeze_gc_after_torch_import`
_FREEZE_GC = {"on": False}


def freeze_gc_after_torch_import() -> None:
    """Import torch (when :func:`import_torch` first does) with the garbage collector off,
    then ``gc.freeze()`` every object alive, torch's included.

    torch's import leaves ~170,000 objects that live as long as the process; every full
    collection after it walks them all, and so does the one at exit. A whole ``sam-detect
    detect`` on a HeLa frame took 3.36 s instead of 3.85 s (median of 7, interleaved, load
    average 1.3-2.2, 2 cores). Objects frozen are still freed when their count drops to zero; only reference
    cycles that exist at that moment are never collected. So the command line turns this on
    for its own process, and a program that imports sam_detect keeps its collector as it is.
    """
    _FREEZE_GC["on"] = True


def import_torch():
    """The ``torch`` module, or ``ModelNotAvailableError`` naming the install command."""
    freeze = _FREEZE_GC["on"] and "torch" not in sys.modules
    collecting = freeze and gc.isenabled()
    if collecting:
        gc.disable()
    try:
        import torch
    except ImportError as e:  # pragma: no cover - torch is a core dependency
        raise ModelNotAvailableError(
            "torch is not installed; install it with `pip install sam-detect` "
            "(or `pip install torch torchvision`)"
        ) from e
    finally:
        if collecting:
            gc.enable()
    if freeze:
        gc.freeze()
    return torch


def resolve_device(device: Any = "auto") -> torch.device:
    """A ``torch.device`` for ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.

    ``"auto"`` (or ``None``) picks CUDA when available, else CPU. Asking for CUDA or MPS
    where there is none raises :class:`DeviceNotAvailableError` naming what exists.
    """
    torch = import_torch()
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device.strip().lower() if isinstance(device, str) else device)
    except (RuntimeError, TypeError) as e:
        raise DeviceNotAvailableError(
            f"unknown device {device!r}; expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceNotAvailableError(
                f"device {device!r} was requested but CUDA is not available on this machine "
                f"(torch {torch.__version__}); use cpu or auto (--device cpu on the command line, device='cpu' in Python)"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceNotAvailableError(
                f"device {device!r} was requested but only {count} CUDA device(s) exist "
                f"(cuda:0 .. cuda:{count - 1})"
            )
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceNotAvailableError(
                f"device {device!r} was requested but MPS is not available; use 'cpu' or 'auto'"
            )
    elif dev.type != "cpu":
        raise DeviceNotAvailableError(
            f"unsupported device {device!r}; expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        )
    return dev


#: ``auto`` (default): bf16 on a CPU whose instructions compute it natively; ``1``: always
#: (slow where it is emulated); ``0``: never (float32, as before session 26)
CPU_BF16_ENV = "SAM_DETECT_CPU_BF16"


def cpu_bf16() -> bool:
    """Whether CPU inference of the callers that allow it (EfficientNet-Lite0 in ``views`` and
    ``effnet``) runs under bf16 autocast.

    ``auto``: where the CPU has AVX-512 BF16 or AMX (oneDNN's native bf16 kernels). On this
    project's AMD EPYC (AVX-512 BF16) the network's pass over a 1024 x 1024 photo took
    0.19 s instead of 0.90 s, its maps within cosine 0.996 (median cell) of float32's, the
    same bits run to run and for 1 or 2 threads (docs/performance.md, "Session 26"). On
    a CPU without them oneDNN emulates bf16, slower than float32: those stay float32.
    """
    from sam_detect.config import env_switch

    setting = env_switch(CPU_BF16_ENV, "0 (float32), 1 (bf16 where the CPU computes it) or auto", auto=True)
    if setting is False:
        return False
    torch = import_torch()
    kernels = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if kernels is None or not kernels():
        return False
    if setting:
        return True
    cpu = getattr(torch, "cpu", None)
    native = (getattr(cpu, "_is_avx512_bf16_supported", None), getattr(cpu, "_is_amx_tile_supported", None))
    return any(check is not None and check() for check in native)


def autocast_dtype(device: torch.device, *, cpu: bool = False) -> torch.dtype | None:
    """The autocast dtype used on ``device``: bf16 on CUDA when supported; on the CPU, bf16
    when ``cpu`` (the caller allows it) and :func:`cpu_bf16`; else ``None``."""
    torch = import_torch()
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and cpu and cpu_bf16():
        return torch.bfloat16
    return None


@contextmanager
def inference_context(device: torch.device, *, autocast: bool = True, cpu_autocast: bool = False) -> Iterator[None]:
    """``torch.inference_mode()`` plus bf16 autocast on CUDA (when ``autocast``), and on the
    CPU where ``cpu_autocast`` and :func:`cpu_bf16` allow it."""
    torch = import_torch()
    with ExitStack() as stack:
        stack.enter_context(torch.inference_mode())
        dtype = autocast_dtype(device, cpu=cpu_autocast) if autocast else None
        if dtype is not None:
            stack.enter_context(torch.autocast(device_type=device.type, dtype=dtype))
        yield


@contextmanager
def num_threads(n: int | None) -> Iterator[None]:
    """Run with ``torch.set_num_threads(n)``, restoring the previous count after.

    ``None`` leaves torch's setting alone. On a CPU shared with other busy processes,
    fewer threads can be much faster (intra-op threads spin-wait for each other).
    """
    if n is None:
        yield
        return
    torch = import_torch()
    previous = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


_CACHE: dict[Any, Any] = {}
_CACHE_LOCK = threading.Lock()


def cached_model(key: Any, build: Callable[[], T]) -> T:
    """The object cached under ``key``, built by ``build()`` on first use (thread-safe)."""
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = build()
        return _CACHE[key]


def clear_model_cache() -> None:
    """Drop every cached model (frees memory; the next use loads again)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def batches(n: int, batch_size: int) -> Iterator[slice]:
    """Slices ``[0, batch_size), [batch_size, 2 * batch_size), ...`` covering ``range(n)``."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


__all__ = [
    "DeviceNotAvailableError",
    "autocast_dtype",
    "batches",
    "cached_model",
    "clear_model_cache",
    "cpu_bf16",
    "freeze_gc_after_torch_import",
    "import_torch",
    "inference_context",
    "num_threads",
    "resolve_device",
]
