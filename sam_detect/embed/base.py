"""The embedder protocol: crops in, L2-normalised vectors out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """Turns context crops into vectors.

    ``name``: registry name (``"effnet"``); ``id``: everything that changes the vectors
    (model, weights, input size, mode), recorded in a library and compared on every use;
    ``dim``: vector size.

    Embedders with downloadable weights (``sam2``, ``clip``) also have ``model_identity``
    (:class:`sam_detect.models.ModelIdentity`: model, checkpoint sha256, input size), which a
    library records and compares; it is optional, and others have none.
    """

    name: str
    id: str
    dim: int

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Embed crops: each ``(h, w, 3)`` uint8 RGB, any size.

        Returns ``(N, dim)`` float32, each row L2-normalised. ``N == 0`` gives ``(0, dim)``.
        """
        ...


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of ``x`` ``(N, D)`` scaled to unit L2 norm, as float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, eps)
