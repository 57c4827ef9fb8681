"""Building SAM2 and CLIP networks and loading their checkpoints, with errors that name the
file and the fix.

Checkpoints are read with ``torch.load(..., weights_only=True)`` (or ``safetensors``); an
unreadable file or one that does not fit the architecture raises
``ModelNotAvailableError`` saying which and what to do. torch, sam2 and open_clip are
imported inside the functions.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sam_detect.errors import ModelNotAvailableError
from sam_detect.models import (
    DEFAULT_CLIP_MODEL,
    DEFAULT_CLIP_PRETRAINED,
    clip_spec,
    resolve_checkpoint,
    sam2_spec,
)


def _read_state_dict(path: Path, what: str, fix: str) -> dict[str, Any]:
    """A state dict from ``.safetensors`` or a ``torch.save`` file, read safely."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            import torch

            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file for the user
        raise ModelNotAvailableError(
            f"{path} is not a readable {what} checkpoint ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200] if str(e) else 'corrupt or truncated'}); {fix}"
        ) from e
    if not isinstance(obj, dict):
        raise ModelNotAvailableError(
            f"{path}: expected a {what} state dict, got {type(obj).__name__}; {fix}"
        )
    return obj


def _check_keys(path: Path, what: str, missing: list[str], unexpected: list[str], fix: str) -> None:
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing weights (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected weights (e.g. {', '.join(unexpected[:3])})")
        raise ModelNotAvailableError(f"{path} does not match {what}: {'; '.join(parts)}; {fix}")


def load_sam2_model(
    model: str = "tiny",
    checkpoint: str | os.PathLike | None = None,
    *,
    device: Any = "cpu",
    image_size: int | None = None,
) -> tuple[Any, Path]:
    """Build a SAM 2.1 model of size ``model`` and load its weights.

    Args:
        model: ``"tiny"``, ``"small"``, ``"base_plus"`` or ``"large"``.
        checkpoint: a local file; ``None`` resolves through the cache and the hub. The file
            is the official layout, ``{"model": state_dict}`` (a bare state dict works too).
        device: a ``torch.device`` or string.
        image_size: the encoder's input side (default: the config's 1024). Smaller sizes
            run faster and lose detail; the official weights were trained at 1024.

    Returns:
        ``(model in eval mode on device, checkpoint path)``.

    Raises:
        ModelNotAvailableError: sam2 not installed, weights missing, unreadable or of
            another architecture.
    """
    spec = sam2_spec(model)
    path = resolve_checkpoint(spec, checkpoint)
    net = build_sam2_from_checkpoint(spec, path, image_size, "build_sam2", "the sam2 segmenter/embedder")
    return net.to(device).eval(), path


def build_sam2_from_checkpoint(spec, path: Path, image_size: int | None, builder: str, needed_by: str):
    """Build a SAM 2.1 network with ``sam2.build_sam.<builder>`` (``build_sam2`` or
    ``build_sam2_video_predictor``) on the CPU and load the checkpoint at ``path`` into it.

    Raises ``ModelNotAvailableError`` naming ``needed_by`` when sam2 is missing, and naming
    the file and the fix when it is unreadable or of another architecture.
    """
    try:
        import sam2  # noqa: F401 - initialises Hydra's config module
        from sam2 import build_sam
    except ImportError as e:
        raise ModelNotAvailableError(
            f"{needed_by} needs the sam2 package: pip install 'sam-detect[models]' (or pip install sam2)"
        ) from e
    fix = (
        f"is it a SAM 2.1 {spec.arch} checkpoint? Choose the matching --sam-model, or delete the "
        f"file and run `{spec.download_command()}`"
    )
    state = _read_state_dict(path, "SAM2", fix)
    if "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    overrides = [f"++model.image_size={int(image_size)}"] if image_size else []
    net = getattr(build_sam, builder)(spec.config, ckpt_path=None, device="cpu", hydra_overrides_extra=overrides)
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        first = str(e).split("\n\t")[1:3]
        raise ModelNotAvailableError(
            f"{path} does not match SAM 2.1 {spec.arch}: {'; '.join(first) or str(e)[:300]}; {fix}"
        ) from e
    _check_keys(
        path, f"SAM 2.1 {spec.arch}", list(result.missing_keys), list(result.unexpected_keys), fix
    )
    return net


def import_open_clip(model: str | None = None):
    """The ``open_clip`` module (``ModelNotAvailableError`` with the install command when it is
    missing); with ``model``, also check that open_clip knows that architecture (``ValueError``)."""
    try:
        import open_clip
    except ImportError as e:
        raise ModelNotAvailableError(
            "the clip embedder needs open_clip: pip install 'sam-detect[models]' (or pip install open_clip_torch)"
        ) from e
    if model is not None and model not in open_clip.list_models():
        import difflib

        from sam_detect.errors import SettingError

        near = difflib.get_close_matches(model, open_clip.list_models(), n=3)
        raise SettingError(
            f"unknown open_clip model {model!r}" + (f" (did you mean {', '.join(near)}?)" if near else "")
            + "; see open_clip.list_models() or `sam-detect models list` (e.g. ViT-B-32)"
        )
    return open_clip


def clip_options(model: str = DEFAULT_CLIP_MODEL, pretrained: str | None = DEFAULT_CLIP_PRETRAINED) -> dict[str, Any]:
    """The architecture and preprocessing options a CLIP model is built with, as open_clip
    derives them from the architecture's config and the pretrained tag's config.

    ``{"quick_gelu", "image_size", "mean", "std", "interpolation", "resize_mode"}``. The
    tag wins over the architecture: the OpenAI weights (``openai`` tags) were trained with
    QuickGELU, the LAION ones with GELU, and a model built with the other activation gives
    subtly wrong embeddings. ``pretrained=None``: the architecture's own settings.
    """
    open_clip = import_open_clip(model)
    from open_clip.transform import PreprocessCfg

    model_cfg = open_clip.get_model_config(model) or {}
    tag_cfg = (open_clip.get_pretrained_cfg(model, pretrained) or {}) if pretrained else {}
    defaults = PreprocessCfg()
    pp = {**(model_cfg.get("preprocess_cfg") or {})}
    size = (model_cfg.get("vision_cfg") or {}).get("image_size", defaults.size)

    def pick(key: str, default: Any) -> Any:
        value = tag_cfg.get(key, pp.get(key, default))
        return tuple(float(v) for v in value) if isinstance(value, (list, tuple)) else value

    return {
        "quick_gelu": bool(tag_cfg.get("quick_gelu", model_cfg.get("quick_gelu", False))),
        "image_size": int(size[0] if isinstance(size, (list, tuple)) else size),
        "mean": pick("mean", defaults.mean),
        "std": pick("std", defaults.std),
        "interpolation": pick("interpolation", defaults.interpolation),
        "resize_mode": pick("resize_mode", defaults.resize_mode),
    }


class _DropRandomInit(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


@contextlib.contextmanager
def _without_random_init_warning() -> Iterator[None]:
    """open_clip built without its own weights logs "No pretrained weights loaded ... Model
    initialized randomly" through the root logger (and, where that has no handler, installs one
    on the user's process with ``basicConfig``); the weights are loaded right after: that line
    is left out, and the root logger is left as it was."""
    root = logging.getLogger()
    guard = logging.NullHandler() if not root.handlers else None  # no basicConfig on the user's root logger
    drop = _DropRandomInit()
    if guard is not None:
        root.addHandler(guard)
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)
        if guard is not None:
            root.removeHandler(guard)


def load_clip_model(
    model: str = DEFAULT_CLIP_MODEL,
    pretrained: str | None = DEFAULT_CLIP_PRETRAINED,
    checkpoint: str | os.PathLike | None = None,
    *,
    device: Any = "cpu",
) -> tuple[Any, Any, Path]:
    """Build an open_clip model, load its weights, and return its eval preprocessing.

    Args:
        model: open_clip model name (``open_clip.list_models()``).
        pretrained: pretrained tag; sets the preprocessing (mean/std, interpolation) and,
            without ``checkpoint``, which weights to resolve. ``None``/``""`` with a
            ``checkpoint``: the architecture's default preprocessing.
        checkpoint: a local ``.safetensors`` / ``.bin`` / ``.pt`` state dict.

    Returns:
        ``(model in eval mode on device, preprocess transform, checkpoint path)``.

    Raises:
        ModelNotAvailableError: open_clip missing, weights missing, unreadable or mismatched.
        ValueError: unknown model name.
    """
    open_clip = import_open_clip(model)
    if checkpoint is None or str(checkpoint) == "":
        if not pretrained:
            raise ModelNotAvailableError(
                f"CLIP {model}: give a pretrained tag (--clip-pretrained) or a local file (--clip-checkpoint)"
            )
        path = resolve_checkpoint(clip_spec(model, pretrained), None)
    else:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise ModelNotAvailableError(
                f"checkpoint file {path} does not exist (given with --clip-checkpoint)"
            )
    opts = clip_options(model, pretrained)
    with _without_random_init_warning():
        net, _, preprocess = open_clip.create_model_and_transforms(
            model,
            pretrained=None,
            device="cpu",
            force_quick_gelu=opts["quick_gelu"],
            image_mean=opts["mean"],
            image_std=opts["std"],
            image_interpolation=opts["interpolation"],
            image_resize_mode=opts["resize_mode"],
        )
    fix = (
        f"is it an open_clip {model} checkpoint? Choose the matching --clip-model, or delete the file "
        f"and download it again"
    )
    state = _read_state_dict(path, "CLIP", fix)
    for key in ("state_dict", "model"):
        if key in state and isinstance(state[key], dict):
            state = state[key]
    if state and next(iter(state)).startswith("module."):
        state = {k[7:]: v for k, v in state.items()}
    try:
        from open_clip.factory import resize_pos_embed

        resize_pos_embed(state, net)
        result = net.load_state_dict(state, strict=False)
    except (RuntimeError, KeyError, ValueError) as e:
        first = str(e).split("\n\t")[1:3]
        raise ModelNotAvailableError(
            f"{path} does not match open_clip {model}: {'; '.join(first) or str(e)[:300]}; {fix}"
        ) from e
    missing = [k for k in result.missing_keys if k != "logit_bias"]
    _check_keys(path, f"open_clip {model}", missing, list(result.unexpected_keys), fix)
    net = net.to(device).eval()
    return net, preprocess, path


__all__ = ["build_sam2_from_checkpoint", "clip_options", "import_open_clip", "load_clip_model", "load_sam2_model"]
