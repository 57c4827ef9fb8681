"""SAM2 / CLIP command-line options, shared by ``detect``, ``add``, ``eval``, ``video`` and ``refine``.

``model_options`` adds ``--sam-model``, ``--sam-checkpoint``, ``--sam-mode``,
``--points-per-side``, ``--sam-embed-mode``, ``--clip-model``, ``--clip-pretrained`` and
``--clip-checkpoint`` (``--device`` lives in the pipeline option group);
``embedder_model_options`` the embedder's alone (``library reembed``).
:func:`model_options_to_config` turns their values into the ``segmenter_options`` and
``embedder_options`` of a ``DetectorConfig``. Every option defaults to "not given", so a
library's recorded settings are not overridden by defaults; an option given for a stage
that is not in use (``--clip-model`` without ``--embedder clip``) is an error, not silently
ignored.

Nothing here imports torch.
"""

from __future__ import annotations

from typing import Any

import click

from sam_detect.cli._stack import stack

SAM_MODELS = ["tiny", "small", "base_plus", "large"]


sam_options = stack(
    [
        click.option(
            "--sam-model",
            type=click.Choice(SAM_MODELS),
            default=None,
            help="SAM 2.1 size (default: with --sam-checkpoint, the size its file name or weights say; else the "
                 "smallest cached, else tiny).",
        ),
        click.option(
            "--sam-checkpoint",
            type=click.Path(dir_okay=False),
            default=None,
            help="Local SAM2 checkpoint file (default: the model cache).",
        ),
    ]
)

sam_embed_mode_option = click.option(
    "--sam-embed-mode",
    type=click.Choice(["image", "crop"]),
    default=None,
    help="sam2 embedder: pool each mask from one image encoding (image, fast) or "
    "encode every context crop (crop) (default image).",
)

clip_options = stack(
    [
        click.option("--clip-model", default=None, help="open_clip model name (default ViT-B-32)."),
        click.option(
            "--clip-pretrained",
            default=None,
            help="open_clip pretrained tag (default laion2b_s34b_b79k).",
        ),
        click.option(
            "--clip-checkpoint",
            type=click.Path(dir_okay=False),
            default=None,
            help="Local CLIP weights (.safetensors/.bin/.pt) (default: the model cache).",
        ),
    ]
)

model_options = stack(
    [
        sam_options,
        click.option(
            "--sam-mode",
            type=click.Choice(["auto", "guided"]),
            default=None,
            help="SAM2 proposals: auto = point grid (thorough, slow on CPU); guided = prompts "
            "from classical proposals and the library's examples (default auto).",
        ),
        click.option(
            "--points-per-side",
            type=click.IntRange(1, 1024),
            default=None,
            help="SAM2 auto mode: grid points per side, 1-1024 (default 32; 16-64 usual, the work grows with its square).",
        ),
        sam_embed_mode_option,
        clip_options,
    ]
)

#: the options of an embedder alone (``library reembed``: no segmenter runs)
embedder_model_options = stack([sam_options, sam_embed_mode_option, clip_options])

_SEG_KEYS = {
    "sam_model": "model",
    "sam_checkpoint": "checkpoint",
    "sam_mode": "mode",
    "points_per_side": "points_per_side",
}
_SAM_EMB_KEYS = {"sam_model": "model", "sam_checkpoint": "checkpoint", "sam_embed_mode": "mode"}
_CLIP_KEYS = {
    "clip_model": "model",
    "clip_pretrained": "pretrained",
    "clip_checkpoint": "checkpoint",
}
#: the keyword names ``embedder_model_options`` gives a command
EMBEDDER_OPTION_KEYS = (*_SAM_EMB_KEYS, *_CLIP_KEYS)


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def model_options_to_config(**opts: Any) -> dict[str, dict[str, Any]]:
    """``{"segmenter_options": {...}, "embedder_options": {...}}`` from CLI values.

    Uses ``opts["segmenter"]`` and ``opts["embedder"]`` (the stage names chosen on the
    command line) to route each given option: SAM options go to the ``sam2`` segmenter
    and/or the ``sam2`` embedder, CLIP options to the ``clip`` embedder.

    Raises:
        click.BadParameter: an option was given for a stage that is not selected.
    """
    segmenter, embedder = opts.get("segmenter"), opts.get("embedder")  # None: unset (auto)
    given = {
        k: v
        for k, v in opts.items()
        if v is not None and k in {*_SEG_KEYS, *_SAM_EMB_KEYS, *_CLIP_KEYS}
    }
    seg: dict[str, Any] = {}
    emb: dict[str, Any] = {}
    used: set[str] = set()
    if segmenter == "sam2":
        for k, dst in _SEG_KEYS.items():
            if k in given:
                seg[dst] = given[k]
                used.add(k)
    if embedder == "sam2":
        for k, dst in _SAM_EMB_KEYS.items():
            if k in given:
                emb[dst] = given[k]
                used.add(k)
    elif embedder == "clip":
        for k, dst in _CLIP_KEYS.items():
            if k in given:
                emb[dst] = given[k]
                used.add(k)
    unused = [k for k in given if k not in used]
    if unused:
        k = unused[0]
        if k in _CLIP_KEYS:
            need = "--embedder clip"
        elif k == "sam_embed_mode":
            need = "--embedder sam2"
        elif k in ("sam_mode", "points_per_side"):
            need = "--segmenter sam2"
        else:
            need = "--segmenter sam2 and/or --embedder sam2"
        raise click.BadParameter(f"{_flag(k)} applies only with {need}", param_hint=_flag(k))
    return {"segmenter_options": seg, "embedder_options": emb}


__all__ = ["EMBEDDER_OPTION_KEYS", "SAM_MODELS", "clip_options", "embedder_model_options", "model_options", "model_options_to_config",
           "sam_embed_mode_option", "sam_options"]
