"""The ``sam2`` embedder: SAM2 image-encoder features pooled under each mask.

The model, its feature maps and the pooling live in :mod:`sam_detect.models.sam2_runtime`,
shared with the ``sam2`` segmenter. An object's vector is the mean of SAM2's ``(256, g, g)``
feature map under its mask, weighted by how much of each feature cell the mask covers,
then L2-normalised:

- **image mode** (default, fast): encode each image once and pool every candidate from the
  same map — :meth:`SAM2Embedder.embed_instances`;
- **crop mode** (slower, more detail for small objects): encode each context crop, batched
  through the encoder, and pool under the crop's mask — :meth:`SAM2Embedder.embed`.

**Scale policy (image mode).** The feature map has ``g = image_size / 16`` cells a side
whatever the image's size, so over a whole 4096-pixel image one cell covers 64 x 64 px and
a 20-pixel object falls inside a single cell. Image mode therefore encodes an image the
way the ``sam2`` segmenter does (:func:`~sam_detect.segment.tiling.sam2_windows`): whole up
to twice the input side (2048 px at 1024), above that in tiles of one input side
overlapping by 128 px, and pools each object from the tile that holds it with the widest
margin — the tile the segmenter decoded its prompt in, and the feature map its
example-guided prompts compare against. So a 4096-pixel image gives every object a vector
from cells of 16 x 16 px (a 2048-pixel image, still encoded whole, has 32 x 32 px cells).
An object too big for any tile is pooled from a window of its own, twice its size.
``tile_size=0`` encodes the whole image always (the policy before tiling).

Examples and queries must use the same mode; the embedder ``id`` records model, weights,
mode, input size and the scale policy, and a library refuses vectors with another id.

The runtime keeps the encodings of the last images, so a pipeline with the ``sam2``
segmenter and the ``sam2`` embedder encodes each image once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sam_detect.embed._torch import check_crops
from sam_detect.errors import AnnotationError
from sam_detect.instances import Instances, as_instances
from sam_detect.models import SAM2_DEFAULT_INPUT
from sam_detect.models.sam2_runtime import (
    FEATURE_DIM,
    SAM2Runtime,
    cell_weights,
    check_sam2_image,
    get_sam2_runtime,
    instance_windows,
    pool_features,
    pool_in_windows,
)
from sam_detect.models.torch_utils import batches, resolve_device

DEFAULT_IMAGE_SIZE = SAM2_DEFAULT_INPUT
_MODES = ("image", "crop")


# ----------------------------------------------------------------------------------------
# the embedder
# ----------------------------------------------------------------------------------------
class SAM2Embedder:
    """SAM2 image-encoder features pooled under each mask: ``(N, 256)`` L2-normalised.

    Args:
        mode: ``"image"`` — encode each whole image once and pool every candidate from its
            feature map (:meth:`embed_instances`; the fast default); ``"crop"`` — encode
            each context crop and pool under its mask (:meth:`embed` with ``masks=``).
        model: SAM 2.1 size: ``"tiny"``, ``"small"``, ``"base_plus"``, ``"large"``, or
            ``"auto"`` (the smallest cached).
        checkpoint: a local checkpoint file (``{"model": state_dict}``); default: the cache,
            then a download.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``.
        batch_size: crops per encoder pass in crop mode (at most 4 on a CPU, where bigger
            batches only cost memory).
        image_size: encoder input side (default 1024, what the weights were trained at).
        tile_size, tile_overlap: image mode's scale policy, the ``sam2`` segmenter's
            (:func:`~sam_detect.segment.tiling.sam2_windows`): ``None`` (default) encodes
            an image whose longer side exceeds twice the input side in tiles of one input
            side, overlapping by ``tile_overlap`` (128) pixels, and pools each object from
            the tile that holds it with the widest margin (an object that fits in no tile:
            from a window of its own, twice its size); ``0``: always the whole image (the
            policy before tiling, which libraries made then record); ``n``: tiles of ``n``
            pixels above ``n``. See :meth:`windows`.

    ``supports_instances`` (image mode) tells the pipeline which path to take;
    ``embed_instances`` exists only in image mode; crop mode sets ``uses_masks = True``.

    Raises:
        ModelNotAvailableError: weights missing (at construction) or unusable (first use).
    """

    name = "sam2"
    dim = FEATURE_DIM

    def __init__(
        self,
        mode: str = "image",
        model: str = "auto",
        checkpoint: Any = None,
        device: Any = "auto",
        batch_size: int | None = None,
        image_size: int | None = None,
        tile_size: int | None = None,
        tile_overlap: int = 128,
    ) -> None:
        from sam_detect.models import (
            file_fingerprint,
            pick_sam2_model,
            resolve_checkpoint,
            sam2_spec,
        )

        if mode not in _MODES:
            raise ValueError(f"SAM2Embedder mode must be 'image' or 'crop', got {mode!r}")
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if image_size is not None and (int(image_size) < 64 or int(image_size) % 64):
            raise ValueError(f"image_size must be a multiple of 64 (>= 64), got {image_size}")
        if int(tile_overlap) < 0:
            raise ValueError(f"tile_overlap must be >= 0, got {tile_overlap}")
        if tile_size is not None and int(tile_size) != 0 and int(tile_size) <= int(tile_overlap):
            raise ValueError(
                f"tile_size must exceed tile_overlap ({tile_overlap}), got {tile_size}; 0 disables tiling"
            )
        self.mode = mode
        self.tile_size = None if tile_size is None else int(tile_size)
        self.tile_overlap = int(tile_overlap)
        self.spec = sam2_spec(pick_sam2_model(model, checkpoint))
        self.checkpoint = resolve_checkpoint(self.spec, checkpoint)
        self.device = resolve_device(device)
        self.image_size = int(image_size) if image_size else None
        self.batch_size = int(batch_size) if batch_size else None
        size = self.image_size or DEFAULT_IMAGE_SIZE
        # the scale policy changes image-mode vectors of large images; whole-image encoding
        # (tile_size=0) keeps the id libraries recorded before tiling
        tiles = "" if mode != "image" or self.tile_size == 0 else \
            f"tiles={self.tile_size or 'auto'}/{self.tile_overlap}:"
        self.id = f"sam2:{self.spec.arch}:{mode}:{size}:{tiles}{file_fingerprint(self.checkpoint)}"
        self.uses_masks = mode == "crop"
        self._runtime: SAM2Runtime | None = None
        self._identity = None

    @property
    def model_identity(self):
        """:class:`~sam_detect.models.ModelIdentity`: model, checkpoint sha256, input size
        (the digest is computed once per checkpoint file and cached)."""
        if self._identity is None:
            from sam_detect.models import sam2_identity

            self._identity = sam2_identity(self.spec.arch, self.checkpoint, self.image_size)
        return self._identity

    def __repr__(self) -> str:
        return f"SAM2Embedder(id={self.id!r}, device={self.device})"

    @property
    def runtime(self) -> SAM2Runtime:
        """The shared model (loaded on first use)."""
        if self._runtime is None:
            self._runtime = get_sam2_runtime(
                self.spec.arch, self.checkpoint, self.device, self.image_size
            )
        return self._runtime

    # -- image mode -------------------------------------------------------------------------
    @property
    def supports_instances(self) -> bool:
        """Image mode embeds objects from the whole image's features (:meth:`embed_instances`)."""
        return self.mode == "image"

    @property
    def embed_instances(self):
        """``embed_instances(image, instances) -> (N, 256)``: image mode only.

        ``image``: ``(H, W, 3)`` uint8 RGB; ``instances``: :class:`Instances` or masks
        ``(N, H, W)`` bool in that image's coordinates. One encoding per image (reused
        when the segmenter has just encoded the same image).
        """
        if self.mode != "image":
            raise AttributeError(
                "embed_instances is available in image mode only (this embedder is in crop mode)"
            )
        return self._embed_instances

    def _embed_instances(self, image: np.ndarray, instances: Instances | np.ndarray) -> np.ndarray:
        image = check_sam2_image(image)
        instances = as_instances(instances, image.shape[:2])
        if len(instances) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return pool_in_windows(self.runtime, image, instances, self.windows(instances))

    def windows(self, instances: Instances) -> np.ndarray:
        """``(N, 4)`` int64 XYXY: the image window each object's vector is pooled from
        (image mode's scale policy, see the class docstring).

        The window is encoded at ``image_size``, so a feature cell covers
        ``(x1 - x0) / g`` x ``(y1 - y0) / g`` pixels, ``g = image_size / 16``: 16 x 16 px
        for a 4096-pixel image in 1024-pixel tiles, where the whole image gives 64 x 64 px.
        """
        return instance_windows(
            instances.image_hw,
            instances.boxes,
            self.image_size or DEFAULT_IMAGE_SIZE,
            self.tile_size,
            self.tile_overlap,
        )

    def feature_map(self, image: np.ndarray) -> np.ndarray:
        """The ``(256, g, g)`` float32 SAM2 feature map of ``image`` ``(H, W, 3)`` uint8."""
        return self.runtime.image_embed(check_sam2_image(image)).cpu().numpy()

    # -- crop mode --------------------------------------------------------------------------
    def embed(
        self, crops: Sequence[np.ndarray], masks: Sequence[np.ndarray] | None = None
    ) -> np.ndarray:
        """Embed context crops (crop mode): each ``(h, w, 3)`` uint8, any size.

        Args:
            crops: the crops.
            masks: per crop a ``(h, w)`` bool mask of the object; ``None`` pools the whole crop.

        Returns:
            ``(N, 256)`` float32, L2-normalised.

        Raises:
            ValueError: called in image mode (use :meth:`embed_instances`), or bad masks.
        """
        if self.mode != "crop":
            raise ValueError(
                "SAM2Embedder(mode='image') pools whole-image features: call "
                "embed_instances(image, instances); for per-crop vectors use mode='crop'"
            )
        crops = check_crops(crops)
        if masks is not None and len(masks) != len(crops):
            raise ValueError(f"got {len(crops)} crops but {len(masks)} masks")
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        cmasks = []
        for i, crop in enumerate(crops):  # check every mask before any encoding
            hw = crop.shape[:2]
            m = np.ones(hw, dtype=bool) if masks is None else np.asarray(masks[i], dtype=bool)
            if m.shape != hw:
                raise ValueError(f"mask {i} has shape {m.shape}, its crop is {hw}")
            if not m.any():
                raise AnnotationError(
                    f"mask {i} is empty; every crop needs a mask with at least one pixel"
                )
            cmasks.append(m[None])
        rt = self.runtime
        bs = self.batch_size or (32 if self.device.type == "cuda" else 4)
        if self.device.type == "cpu":
            bs = min(bs, 4)
        out = np.zeros((len(crops), self.dim), dtype=np.float32)
        for sl in batches(len(crops), bs):
            feats = rt.encode_batch(crops[sl]).cpu().numpy()
            for j, i in enumerate(range(sl.start, sl.stop)):
                out[i] = pool_features(feats[j], cell_weights(cmasks[i], None, feats.shape[2:]))[0]
        return out


__all__ = ["SAM2Embedder"]
