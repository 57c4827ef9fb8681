"""The embedder protocol: crops in, L2-normalised vectors out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

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

    ``supports_instances``: whether the embedder also embeds the objects of a whole image,
    :meth:`InstanceEmbedder.embed_instances`, which the pipeline then calls instead of
    cutting context crops. Stated by every built-in embedder; ask
    :func:`embeds_instances`, which gives the default for an embedder that does not state it.
    """

    name: str
    id: str
    dim: int

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Embed crops: each ``(h, w, 3)`` uint8 RGB, any size.

        Returns ``(N, dim)`` float32, each row L2-normalised. ``N == 0`` gives ``(0, dim)``.
        """
        ...


@runtime_checkable
class InstanceEmbedder(Embedder, Protocol):
    """An embedder that also embeds objects in their whole image (``supports_instances``)."""

    supports_instances: bool

    def embed_instances(self, image: np.ndarray, instances: Any) -> np.ndarray:
        """Embed the objects ``instances`` (:class:`~sam_detect.instances.Instances`) of
        ``image`` ``(H, W, 3)`` uint8 RGB: ``(N, dim)`` float32, each row L2-normalised."""
        ...


def embeds_instances(embedder: Any) -> bool:
    """Whether ``embedder`` embeds the objects of a whole image (``embed_instances``).

    Its stated ``supports_instances``; an embedder written before the capability was stated
    has it when it has an ``embed_instances`` method.
    """
    stated = getattr(embedder, "supports_instances", None)
    if stated is not None:
        return bool(stated)
    return callable(getattr(embedder, "embed_instances", None))


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of ``x`` ``(N, D)`` scaled to unit L2 norm, as float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, eps)
