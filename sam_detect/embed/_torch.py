"""Torch helpers shared by the torch embedders: device choice, autocast, model cache.

torch is imported inside the functions that need it, so :func:`check_crops` and
:func:`batches` serve torch-free embedders too; still, import this module from factories
or on first use, not at ``import sam_detect`` time.

- :func:`resolve_device` turns ``"auto" | "cpu" | "cuda" | "cuda:1" | "mps"`` into a
  ``torch.device`` (``"auto"``: CUDA when available, else CPU) and fails with
  :class:`DeviceNotAvailableError` when an accelerator is asked for but absent.
- :func:`inference_context` wraps ``torch.inference_mode`` and, on CUDA, bf16 autocast.
- :func:`cached_model` builds a model once per key (e.g. per weights and device) and
  shares it between embedder instances, thread-safely.
- :func:`preprocess_crops` resizes ``(h, w, 3)`` uint8 crops to one square size as a float
  batch (bilinear with antialiasing, the resize the EfficientNet real-weights check uses).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from sam_detect.errors import DeviceNotAvailableError, ModelNotAvailableError

if TYPE_CHECKING:
    import torch

T = TypeVar("T")


def import_torch():
    """The ``torch`` module, or ``ModelNotAvailableError`` naming the install command."""
    try:
        import torch
    except ImportError as e:  # pragma: no cover - torch is a core dependency
        raise ModelNotAvailableError(
            "torch is not installed; install it with `pip install sam-detect` "
            "(or `pip install torch torchvision`)"
        ) from e
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
                f"(torch {torch.__version__}); use device='cpu' or 'auto'"
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


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype used on ``device``: bf16 on CUDA when supported, else ``None``."""
    torch = import_torch()
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


@contextmanager
def inference_context(device: torch.device, *, autocast: bool = True) -> Iterator[None]:
    """``torch.inference_mode()`` plus bf16 autocast on CUDA (when ``autocast``)."""
    torch = import_torch()
    with ExitStack() as stack:
        stack.enter_context(torch.inference_mode())
        dtype = autocast_dtype(device) if autocast else None
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


def check_crops(crops: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Validate crops: each ``(h, w, 3)`` uint8 with ``h, w >= 1``.

    ``(h, w)`` and ``(h, w, 1)`` grey crops are repeated to 3 channels; ``(h, w, 4)``
    drops alpha. Other shapes or dtypes raise ``ValueError`` naming the crop's index.
    """
    if isinstance(crops, np.ndarray) and crops.ndim == 3 and crops.shape[-1] in (3, 4):
        raise ValueError(
            f"crops must be a sequence of (h, w, 3) images; got one array of shape "
            f"{crops.shape}: wrap a single crop in a list"
        )
    out = []
    for i, crop in enumerate(crops):
        arr = np.asarray(crop)
        if arr.ndim == 2:
            arr = arr[..., None]
        if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or arr.shape[0] < 1 or arr.shape[1] < 1:
            raise ValueError(f"crop {i} must be (h, w, 3) RGB, got shape {arr.shape}")
        if arr.dtype != np.uint8:
            raise ValueError(
                f"crop {i} must be uint8, got {arr.dtype}; build crops with "
                f"sam_detect.fade.crops.context_crops"
            )
        if arr.shape[2] == 1:
            arr = np.repeat(arr, 3, axis=2)
        elif arr.shape[2] == 4:
            arr = arr[..., :3]
        out.append(arr)
    return out


def preprocess_crops(crops: Sequence[np.ndarray], size: int) -> torch.Tensor:
    """Resize ``(h, w, 3)`` uint8 crops to ``(N, 3, size, size)`` float32 in ``[0, 255]``.

    Bilinear with antialiasing (``torch.nn.functional.interpolate``), on the CPU; crops
    already at ``size`` are not resampled.
    """
    torch = import_torch()
    import torch.nn.functional as F

    batch = torch.empty((len(crops), 3, size, size), dtype=torch.float32)
    # One small resize per crop: threading only adds overhead (measured ~6x slower with 2
    # threads than with 1 on a busy 2-core machine).
    with num_threads(1):
        for i, crop in enumerate(crops):
            t = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)
            if t.shape[1] == size and t.shape[2] == size:
                batch[i] = t
            else:
                batch[i] = F.interpolate(
                    t[None].float(),
                    size=(size, size),
                    mode="bilinear",
                    align_corners=False,
                    antialias=True,
                )[0]
    return batch


def batches(n: int, batch_size: int) -> Iterator[slice]:
    """Slices ``[0, batch_size), [batch_size, 2 * batch_size), ...`` covering ``range(n)``."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


__all__ = [
    "DeviceNotAvailableError",
    "autocast_dtype",
    "batches",
    "cached_model",
    "check_crops",
    "clear_model_cache",
    "import_torch",
    "inference_context",
    "num_threads",
    "preprocess_crops",
    "resolve_device",
]
