"""``clip``: open_clip image features, with the model's own preprocessing.

A model is an open_clip architecture name plus a pretrained tag (``ViT-B-32`` /
``laion2b_s34b_b79k`` by default). The tag fixes the preprocessing (resize, centre crop,
mean/std: some tags use 0.5, others OpenAI's values) and, without a local
``checkpoint``, which weights are resolved (model cache, then the hub; see
:mod:`sam_detect.models`).

    >>> emb = ClipEmbedder()                         # doctest: +SKIP
    >>> vectors = emb.embed(crops)                   # (N, 512) float32, unit rows

Batched inference under ``torch.inference_mode``; on CUDA with bf16 autocast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sam_detect.models import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED


class ClipEmbedder:
    """open_clip image embeddings, L2-normalised float32 ``(N, dim)``.

    Args:
        model: open_clip model name (``open_clip.list_models()``).
        pretrained: pretrained tag; ``None`` with a ``checkpoint`` uses the architecture's
            default preprocessing.
        checkpoint: local ``.safetensors`` / ``.bin`` / ``.pt`` state dict of ``model``.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``.
        batch_size: crops per forward pass.

    ``id`` is ``clip:<model>:<tag or custom>:<weights fingerprint>``.

    Raises:
        ModelNotAvailableError: open_clip missing, weights missing (at construction),
            unreadable or of another architecture (first use).
        ValueError: unknown model name, bad batch size.
    """

    name = "clip"
    supports_instances = False  # context crops only

    def __init__(
        self,
        model: str = DEFAULT_CLIP_MODEL,
        pretrained: str | None = DEFAULT_CLIP_PRETRAINED,
        checkpoint: Any = None,
        device: Any = "auto",
        batch_size: int = 32,
    ) -> None:
        from pathlib import Path

        from sam_detect.errors import ModelNotAvailableError
        from sam_detect.models import (
            clip_spec,
            clip_tag_of,
            file_fingerprint,
            import_open_clip,
            resolve_checkpoint,
        )
        from sam_detect.models.torch_utils import resolve_device

        open_clip = import_open_clip(model)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_name = model
        self.pretrained = clip_tag_of(model, pretrained, checkpoint) or None
        if checkpoint is not None and str(checkpoint) != "":
            self.checkpoint = Path(checkpoint).expanduser()
            if not self.checkpoint.is_file():
                raise ModelNotAvailableError(
                    f"checkpoint file {self.checkpoint} does not exist (given with --clip-checkpoint)"
                )
        elif self.pretrained:
            self.checkpoint = resolve_checkpoint(clip_spec(model, self.pretrained))
        else:
            raise ModelNotAvailableError(
                f"CLIP {model}: give a pretrained tag (--clip-pretrained) or a local file (--clip-checkpoint)"
            )
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        cfg = open_clip.get_model_config(model) or {}
        self.dim = int(cfg.get("embed_dim", 0))
        self.id = f"clip:{model}:{self.pretrained or 'custom'}:{file_fingerprint(self.checkpoint)}"
        self._model = None
        self._preprocess = None
        self._identity = None

    @property
    def model_identity(self):
        """:class:`~sam_detect.models.ModelIdentity`: ``MODEL:TAG``, checkpoint sha256, input
        size (the digest is computed once per checkpoint file and cached)."""
        if self._identity is None:
            from sam_detect.models import clip_identity

            self._identity = clip_identity(self.model_name, self.pretrained, self.checkpoint)
        return self._identity

    def __repr__(self) -> str:
        return f"ClipEmbedder(id={self.id!r}, device={self.device})"

    def _load(self) -> tuple[Any, Any]:
        if self._model is None:
            from sam_detect.models import load_clip_model
            from sam_detect.models.torch_utils import cached_model

            st = self.checkpoint.stat()
            key = (
                "clip",
                self.model_name,
                self.pretrained,
                str(self.checkpoint.resolve()),
                st.st_size,
                st.st_mtime_ns,
                str(self.device),
            )
            model, preprocess, _ = cached_model(
                key,
                lambda: load_clip_model(
                    self.model_name, self.pretrained, self.checkpoint, device=self.device
                ),
            )
            self._model, self._preprocess = model, preprocess
            if not self.dim:
                self.dim = int(getattr(model.visual, "output_dim", 0))
        return self._model, self._preprocess

    @property
    def preprocess(self) -> Any:
        """The model's own eval transform (PIL image -> ``(3, S, S)`` float tensor)."""
        return self._load()[1]

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Embed crops, each ``(h, w, 3)`` uint8 RGB of any size.

        Returns:
            ``(N, dim)`` float32, L2-normalised rows; ``(0, dim)`` for no crops.
        """
        import torch
        from PIL import Image

        from sam_detect.embed._torch import check_crops
        from sam_detect.embed.base import l2_normalize
        from sam_detect.models.torch_utils import batches, inference_context

        crops = check_crops(crops)
        model, preprocess = self._load()
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.zeros((len(crops), self.dim), dtype=np.float32)
        for sl in batches(len(crops), self.batch_size):
            batch = torch.stack([preprocess(Image.fromarray(c)) for c in crops[sl]]).to(self.device)
            with inference_context(self.device):
                feats = model.encode_image(batch)
            out[sl] = feats.float().cpu().numpy()
        return l2_normalize(out)

    def params(self) -> dict[str, Any]:
        """Settings recorded in a library's metadata."""
        return {
            "name": self.name,
            "id": self.id,
            "dim": self.dim,
            "model": self.model_name,
            "pretrained": self.pretrained,
        }


__all__ = ["ClipEmbedder"]
