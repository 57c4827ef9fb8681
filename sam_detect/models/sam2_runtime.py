"""The SAM2 runtime shared by the ``sam2`` segmenter and the ``sam2`` embedder.

:class:`SAM2Runtime` holds one model per (weights, device, input size), shared by every
segmenter and embedder in the process (:func:`get_sam2_runtime`), and keeps the encodings
of the last images, so a pipeline with the ``sam2`` segmenter and the ``sam2`` embedder
encodes each image once.

SAM2's image encoder turns an image into a ``(256, g, g)`` feature map (``g = 64`` at the
default 1024-pixel input) — the ``image_embed`` that its mask decoder reads, taken from
the predictor's own ``set_image`` (which adds SAM2's no-memory embedding). An object's
vector is the mean of that map under its mask, weighted by how much of each feature cell
the mask covers, then L2-normalised (:func:`cell_weights`, :func:`pool_features`); a large
image is encoded in windows (:func:`instance_windows`, :func:`pool_in_windows`).

SAM2 must see ``(H, W, 3)`` uint8 RGB: float input silently yields no masks, so
:func:`check_sam2_image` refuses it.

This module imports torch: import it from factories or on first use.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from sam_detect.embed.base import l2_normalize
from sam_detect.errors import AnnotationError, ImageLoadError
from sam_detect.instances import Instances
from sam_detect.models.torch_utils import cached_model, inference_context, resolve_device

FEATURE_DIM = 256
#: feature maps (not the decoder's high-resolution features) kept per runtime: the tiles of
#: a 4096-pixel image at the default tiling (25), with room to spare
EMBED_CACHE = 36


# ----------------------------------------------------------------------------------------
# input guard
# ----------------------------------------------------------------------------------------
def check_sam2_image(image: Any) -> np.ndarray:
    """``image`` as ``(H, W, 3)`` uint8 RGB, or a clear error.

    ``(H, W)``, ``(H, W, 1)`` uint8 are repeated to three channels and ``(H, W, 4)`` drops
    alpha. Any other dtype is refused: SAM2 scales its input by 1/255 and float images
    silently give no masks at all.

    Raises:
        ImageLoadError: wrong dtype, dimensions or an empty image.
    """
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ImageLoadError(
            f"SAM2 needs an (H, W, 3) uint8 RGB image, got dtype {arr.dtype} with shape {arr.shape} "
            "(float input silently yields no masks); convert it with "
            "sam_detect.io.images.to_rgb_uint8(image)"
        )
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ImageLoadError(f"SAM2 needs an (H, W, 3) uint8 RGB image, got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageLoadError(f"image is empty (shape {arr.shape})")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[..., :3]
    return np.ascontiguousarray(arr)


def _digest(image: np.ndarray) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    h.update(str((image.shape, image.dtype.str)).encode())
    h.update(memoryview(np.ascontiguousarray(image)).cast("B"))
    return h.digest()


# ----------------------------------------------------------------------------------------
# the runtime: one model, its predictor, and recent encodings
# ----------------------------------------------------------------------------------------
class SAM2Runtime:
    """A loaded SAM2 model with an image predictor whose ``set_image`` is cached.

    Build it with :func:`get_sam2_runtime`. Attributes: ``model`` (``SAM2Base``),
    ``predictor`` (a ``SAM2ImagePredictor``; its ``set_image`` reuses the encoding of an
    image seen recently), ``device``, ``image_size``, ``grid`` (feature map side),
    ``checkpoint`` (path), ``lock`` (hold it around ``set_image`` + decoding).
    """

    def __init__(
        self,
        model: str,
        checkpoint: Any,
        device: torch.device,
        image_size: int | None,
        cache_size: int = 2,
    ):
        from sam_detect.models import load_sam2_model

        self.model, self.checkpoint = load_sam2_model(
            model, checkpoint, device=device, image_size=image_size
        )
        self.device = device
        self.image_size = int(self.model.image_size)
        self.grid = self.image_size // int(self.model.backbone_stride)
        self.lock = threading.RLock()
        self._cache: OrderedDict[bytes, tuple[dict[str, Any], tuple[int, int]]] = OrderedDict()
        self._cache_size = cache_size
        self._embeds: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self.encodings = 0  # how many images were actually encoded (tests and benchmarks)
        self.predictor = _caching_predictor(self)

    # -- encoding -------------------------------------------------------------------------
    def set_image(self, image: np.ndarray) -> None:
        """Make ``image`` ``(H, W, 3)`` uint8 the predictor's current image (cached)."""
        with self.lock, inference_context(self.device):
            self.predictor.set_image(image)

    def image_embed(self, image: np.ndarray) -> torch.Tensor:
        """The ``(256, g, g)`` feature map of ``image`` (float32, on the model's device).

        Also served from the feature maps of the last ``EMBED_CACHE`` images encoded, so the
        embedder pools from the tiles the segmenter has just encoded without encoding them
        again (a 4096-pixel image at 1024: 25 tiles, 4 MB each).
        """
        image = check_sam2_image(image)
        with self.lock:
            key = _digest(image)
            hit = self._embeds.get(key)
            if hit is not None:
                self._embeds.move_to_end(key)
                return hit
            with inference_context(self.device):
                self.predictor.set_image(image)
                return self.predictor._features["image_embed"][0].float()

    def _remember_embed(self, key: bytes, embed: torch.Tensor) -> None:
        self._embeds[key] = embed[0].float()
        self._embeds.move_to_end(key)
        while len(self._embeds) > EMBED_CACHE:
            self._embeds.popitem(last=False)

    def encode_batch(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Feature maps ``(B, 256, g, g)`` float32 of ``(h, w, 3)`` uint8 images, one encoder pass.

        Same features as ``set_image`` (SAM2's transform, backbone, no-memory embedding);
        nothing is cached.
        """
        with self.lock, inference_context(self.device):
            batch = self.predictor._transforms.forward_batch(list(images)).to(self.device)
            out = self.model.forward_image(batch)
            _, feats, _, _ = self.model._prepare_backbone_features(out)
            top = feats[-1]
            if self.model.directly_add_no_mem_embed:
                top = top + self.model.no_mem_embed
            self.encodings += len(images)
            b = len(images)
            return top.permute(1, 2, 0).reshape(b, -1, self.grid, self.grid).float()

    def _remember(self, key: bytes, features: dict[str, Any], hw: tuple[int, int]) -> None:
        self._cache[key] = (features, hw)
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def clear(self) -> None:
        """Forget the cached encodings."""
        with self.lock:
            self._cache.clear()
            self._embeds.clear()
            self.predictor.reset_predictor()


def _caching_predictor(runtime: SAM2Runtime) -> Any:
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    class _CachingPredictor(SAM2ImagePredictor):
        """``SAM2ImagePredictor`` whose ``set_image`` reuses recent encodings."""

        def set_image(self, image: Any) -> None:  # noqa: D102 - see SAM2ImagePredictor
            image = check_sam2_image(image)
            key = _digest(image)
            hit = runtime._cache.get(key)
            if hit is None:
                super().set_image(image)
                runtime.encodings += 1
                runtime._remember(key, self._features, tuple(image.shape[:2]))
                runtime._remember_embed(key, self._features["image_embed"])
                return
            runtime._cache.move_to_end(key)
            self.reset_predictor()
            self._features, hw = hit
            self._orig_hw = [hw]
            self._is_image_set = True

    with warnings.catch_warnings():  # SAM2Transforms uses torch.jit.script, deprecated in torch 2.x
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        pred = _CachingPredictor(runtime.model)
    s = runtime.image_size // 4  # the predictor assumes 1024; follow the model's input size
    pred._bb_feat_sizes = [(s, s), (s // 2, s // 2), (s // 4, s // 4)]
    return pred


def get_sam2_runtime(
    model: str = "tiny", checkpoint: Any = None, device: Any = "auto", image_size: int | None = None
) -> SAM2Runtime:
    """The shared :class:`SAM2Runtime` for these weights, device and input size.

    ``model="auto"`` picks the smallest cached SAM2 (``tiny`` when none is).

    Raises:
        ModelNotAvailableError: sam2 missing, weights missing, unreadable or mismatched.
    """
    from sam_detect.models import pick_sam2_model, resolve_checkpoint, sam2_spec

    spec = sam2_spec(pick_sam2_model(model, checkpoint))
    path = resolve_checkpoint(spec, checkpoint)
    dev = resolve_device(device)
    stat = path.stat()
    key = (
        "sam2-runtime",
        spec.arch,
        str(path.resolve()),
        stat.st_size,
        stat.st_mtime_ns,
        str(dev),
        image_size,
    )
    return cached_model(key, lambda: SAM2Runtime(spec.arch, path, dev, image_size))


# ----------------------------------------------------------------------------------------
# pooling under masks
# ----------------------------------------------------------------------------------------
@lru_cache(maxsize=32)
def _axis_weights(n: int, g: int) -> np.ndarray:
    """``(g, n)`` float32: how much of pixel ``p`` (``[p, p + 1)``) lies in cell ``c``.

    Cells split ``[0, n)`` into ``g`` equal parts, as SAM2's square resize does per axis.
    """
    edges = np.arange(g + 1, dtype=np.float64) * (n / g)
    p = np.arange(n, dtype=np.float64)
    lo = np.maximum(p[None, :], edges[:-1, None])
    hi = np.minimum(p[None, :] + 1.0, edges[1:, None])
    return np.clip(hi - lo, 0.0, None).astype(np.float32)


def cell_weights(
    masks: Instances | np.ndarray,
    boxes: np.ndarray | None,
    grid_hw: tuple[int, int],
    window: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """Coverage of each feature cell by each mask.

    Args:
        masks: :class:`Instances` or ``(N, H, W)`` bool, image coordinates. Each mask is
            read from its tight box crop, so the cost grows with the object, not the image.
        boxes: not needed (the tight crops are used); accepted for callers that pass boxes.
        grid_hw: ``(gh, gw)`` feature map size.
        window: XYXY pixels of the image region the feature map was computed from (a
            tile); ``None``: the whole image. Mask pixels outside it are left out.

    Returns:
        ``(N, gh, gw)`` float32: pixel area of the mask inside each cell (the window is
        mapped onto the grid per axis, like SAM2's resize).
    """
    del boxes
    if not isinstance(masks, Instances):
        masks = Instances(masks=np.asarray(masks, dtype=bool))
    h, w = masks.image_hw
    x0, y0, x1, y1 = (int(v) for v in window) if window is not None else (0, 0, w, h)
    gh, gw = grid_hw
    wy, wx = _axis_weights(y1 - y0, gh), _axis_weights(x1 - x0, gw)
    out = np.zeros((len(masks), gh, gw), dtype=np.float32)
    for i in range(len(masks)):
        crop, (rows, cols) = masks.mask_crop(i)
        r0, r1 = max(rows.start, y0), min(rows.stop, y1)
        c0, c1 = max(cols.start, x0), min(cols.stop, x1)
        if r1 <= r0 or c1 <= c0:
            continue
        sub = crop[r0 - rows.start : r1 - rows.start, c0 - cols.start : c1 - cols.start]
        out[i] = wy[:, r0 - y0 : r1 - y0] @ sub.astype(np.float32) @ wx[:, c0 - x0 : c1 - x0].T
    return out


def pool_features(features: np.ndarray | torch.Tensor, weights: np.ndarray) -> np.ndarray:
    """Mask-weighted means of a feature map.

    Args:
        features: ``(C, gh, gw)`` feature map.
        weights: ``(N, gh, gw)`` non-negative cell weights (:func:`cell_weights`).

    Returns:
        ``(N, C)`` float32, L2-normalised rows.

    Raises:
        AnnotationError: a mask with no pixels (nothing to pool).
    """
    if isinstance(features, torch.Tensor):
        features = features.detach().float().cpu().numpy()
    c = features.shape[0]
    flat_w = weights.reshape(len(weights), -1).astype(np.float32)
    total = flat_w.sum(axis=1)
    empty = np.flatnonzero(total <= 0)
    if empty.size:
        raise AnnotationError(
            f"mask {int(empty[0])} is empty ({empty.size} empty mask(s) in all); every instance "
            "needs at least one pixel to be embedded"
        )
    pooled = flat_w @ features.reshape(c, -1).T.astype(np.float32)
    return l2_normalize(pooled / total[:, None])


def instance_windows(
    image_hw: tuple[int, int],
    boxes: np.ndarray,
    input_size: int,
    tile_size: int | None,
    overlap: int,
) -> np.ndarray:
    """``(N, 4)`` int64 XYXY: per object (``boxes`` ``(N, 4)`` XYXY) the window SAM2 encodes
    it in — the whole image, or the tile that holds it best
    (:func:`~sam_detect.segment.tiling.sam2_windows`, :func:`~sam_detect.segment.tiling.best_window`:
    the ``sam2`` segmenter's prompt windows)."""
    from sam_detect.segment.tiling import best_window, sam2_windows

    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    tiles = sam2_windows(tuple(image_hw), int(input_size), tile_size, int(overlap))
    if len(tiles) == 1:
        return np.tile(np.asarray(tiles[0], dtype=np.int64), (len(boxes), 1))
    side = int(tile_size or input_size)
    return np.array([best_window(b, tiles, tuple(image_hw), side) for b in boxes], dtype=np.int64).reshape(-1, 4)


def pool_in_windows(
    runtime: SAM2Runtime, image: np.ndarray, instances: Instances, windows: np.ndarray
) -> np.ndarray:
    """``(N, 256)`` L2-normalised: object ``i`` pooled from the feature map of
    ``image[y0:y1, x0:x1]``, ``windows[i] = (x0, y0, x1, y1)``; one encoding per window."""
    out = np.zeros((len(instances), FEATURE_DIM), dtype=np.float32)
    h, w = image.shape[:2]
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, win in enumerate(np.asarray(windows, dtype=np.int64)):
        groups.setdefault(tuple(int(v) for v in win), []).append(i)
    for win, idx in groups.items():
        x0, y0, x1, y1 = win
        whole = win == (0, 0, w, h)
        feats = runtime.image_embed(image if whole else image[y0:y1, x0:x1])
        sub = instances if len(idx) == len(instances) else instances[np.asarray(idx)]
        weights = cell_weights(sub, None, tuple(feats.shape[1:]), window=None if whole else win)
        out[idx] = pool_features(feats, weights)
    return out


__all__ = [
    "EMBED_CACHE",
    "FEATURE_DIM",
    "SAM2Runtime",
    "cell_weights",
    "check_sam2_image",
    "get_sam2_runtime",
    "instance_windows",
    "pool_features",
    "pool_in_windows",
]
