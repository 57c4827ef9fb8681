"""Crop checks and preprocessing shared by the crop embedders.

:func:`check_crops` is torch-free (the handcrafted embedder uses it);
:func:`preprocess_crops` resizes ``(h, w, 3)`` uint8 crops to one square size as a float
batch (bilinear with antialiasing, the resize the EfficientNet real-weights check uses).
Device, autocast and the model cache: :mod:`sam_detect.models.torch_utils`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from sam_detect.models.torch_utils import import_torch, num_threads

if TYPE_CHECKING:
    import torch


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
            crop = np.ascontiguousarray(crop)
            if not crop.flags.writeable:  # a crop read from an export (a read-only buffer): torch warns on those
                crop = crop.copy()
            t = torch.from_numpy(crop).permute(2, 0, 1)
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


__all__ = ["check_crops", "preprocess_crops"]
