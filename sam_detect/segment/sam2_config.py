"""Options of the ``sam2`` segmenter (:class:`SAM2Config`), checked on construction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_MODES = ("auto", "guided")
_SOURCES = ("classical", "blobs", "examples")


@dataclass
class SAM2Config:
    """Options of :class:`SAM2Segmenter`.

    Model:
        model: SAM 2.1 size ``"tiny"``, ``"small"``, ``"base_plus"``, ``"large"`` or
            ``"auto"`` (the smallest cached).
        checkpoint: local checkpoint file; default: the model cache, then a download.
        mode: ``"auto"`` (automatic mask generator) or ``"guided"`` (prompts from cheap
            proposals and examples).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``.
        image_size: encoder input side (default: 1024, what the weights were trained at).

    Automatic mode (SAM2AutomaticMaskGenerator's options):
        points_per_side: grid points per side (16–256); ``points_per_side``² prompts.
        points_per_batch: prompts per decoder call (default 64 on CUDA, 8 on a CPU, where
            larger batches are slower per prompt); also used by guided mode.
        pred_iou_thresh: keep masks whose predicted IoU exceeds this.
        stability_score_thresh: keep masks at least this stable under threshold changes.
        stability_score_offset: logit offset of the stability score.
        box_nms_thresh: box IoU above which duplicates are dropped.
        crop_n_layers: extra layers of zoomed-in crops (0: none).
        crop_n_points_downscale_factor: points per side shrink by this per crop layer.
        multimask_output: three masks per grid point (SAM's default for ambiguous points).

    Both modes:
        min_mask_area: drop masks smaller than this many pixels.
        max_mask_area: drop masks larger than this (pixels; a value in ``(0, 1]`` is a
            fraction of the image area; ``None``: no limit).

    Guided mode:
        prompt_sources: any of ``"classical"``, ``"blobs"``, ``"examples"``.
        classical_options: options of the classical segmenter used for proposals.
        max_prompts: at most this many prompts per image (or tile), in source order.
        prompt_min_distance: prompts closer than this (pixels) to an earlier one are dropped.
        guided_pred_iou_thresh: keep masks whose predicted IoU exceeds this.
        guided_stability_thresh: keep masks at least this stable.
        guided_multimask: decode three masks per prompt and keep the best (slower); by
            default one mask (SAM2 falls back to the best of three when it is unstable).
        mask_nms_thresh: mask IoU above which the lower-scoring duplicate is dropped.
        example_threshold: minimum cosine similarity of an example-guided peak.
        example_min_distance: minimum distance between example-guided peaks (pixels).
        max_example_prompts: at most this many example-guided prompts per label.
        blob_threshold: LoG response threshold of blob prompts (intensity in 0..1).

    Tiling:
        tile_size: tile side in pixels. ``None``: tiles of the encoder input side (1024)
            for images whose longer side exceeds twice that; ``0``: never tile.
        tile_overlap: overlap of neighbouring tiles (pixels); objects smaller than this
            are seen whole in some tile.
    """

    model: str = "auto"
    checkpoint: str | None = None
    mode: str = "auto"
    device: str = "auto"
    image_size: int | None = None
    points_per_side: int = 32
    points_per_batch: int | None = None
    pred_iou_thresh: float = 0.8
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_n_points_downscale_factor: int = 1
    multimask_output: bool = True
    min_mask_area: int = 0
    max_mask_area: float | None = None
    prompt_sources: tuple[str, ...] = ("classical", "examples")
    classical_options: dict[str, Any] = field(default_factory=dict)
    max_prompts: int = 1024
    prompt_min_distance: float = 4.0
    guided_pred_iou_thresh: float = 0.5
    guided_stability_thresh: float = 0.8
    guided_multimask: bool = False
    mask_nms_thresh: float = 0.5
    example_threshold: float = 0.5
    example_min_distance: int = 8
    max_example_prompts: int = 512
    blob_threshold: float = 0.05
    tile_size: int | None = None
    tile_overlap: int = 128

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ValueError(f"mode must be 'auto' or 'guided', got {self.mode!r}")
        if isinstance(self.prompt_sources, str):
            self.prompt_sources = tuple(
                s.strip() for s in self.prompt_sources.split(",") if s.strip()
            )
        self.prompt_sources = tuple(self.prompt_sources)
        bad = [s for s in self.prompt_sources if s not in _SOURCES]
        if bad:
            raise ValueError(f"unknown prompt source(s) {bad}; valid: {', '.join(_SOURCES)}")
        if not 1 <= int(self.points_per_side) <= 1024:
            raise ValueError(
                f"points_per_side must be in 1..1024 (16–256 is typical), got {self.points_per_side}"
            )
        if self.points_per_batch is not None and self.points_per_batch < 1:
            raise ValueError(f"points_per_batch must be >= 1, got {self.points_per_batch}")
        for name in (
            "pred_iou_thresh",
            "stability_score_thresh",
            "box_nms_thresh",
            "mask_nms_thresh",
            "guided_pred_iou_thresh",
            "guided_stability_thresh",
        ):
            v = getattr(self, name)
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        if not -1.0 <= self.example_threshold <= 1.0:
            raise ValueError(
                f"example_threshold is a cosine similarity in [-1, 1], got {self.example_threshold}"
            )
        if self.crop_n_layers < 0:
            raise ValueError(f"crop_n_layers must be >= 0, got {self.crop_n_layers}")
        if self.min_mask_area < 0:
            raise ValueError(f"min_mask_area must be >= 0, got {self.min_mask_area}")
        if self.max_mask_area is not None and self.max_mask_area <= 0:
            raise ValueError(f"max_mask_area must be > 0 or None, got {self.max_mask_area}")
        if self.max_prompts < 1 or self.max_example_prompts < 1:
            raise ValueError("max_prompts and max_example_prompts must be >= 1")
        if (
            self.tile_size is not None
            and self.tile_size != 0
            and self.tile_size <= self.tile_overlap
        ):
            raise ValueError(
                f"tile_size must exceed tile_overlap ({self.tile_overlap}), got {self.tile_size}; 0 disables tiling"
            )
        if self.tile_overlap < 0:
            raise ValueError(f"tile_overlap must be >= 0, got {self.tile_overlap}")
        if self.image_size is not None and (int(self.image_size) < 64 or int(self.image_size) % 64):
            raise ValueError(f"image_size must be a multiple of 64 (>= 64), got {self.image_size}")


__all__ = ["SAM2Config"]
