"""Options of the ``classical`` segmenter (:class:`ClassicalConfig`), checked on creation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

ThresholdMethod = Literal["auto", "tophat", "otsu", "li", "triangle", "yen", "mean", "local"]
Polarity = Literal["auto", "bright", "dark"]

_METHODS = ("auto", "tophat", "otsu", "li", "triangle", "yen", "mean", "local")
_POLARITIES = ("auto", "bright", "dark")
_INTENSITIES = ("auto", "gray", "stain", "max", "red", "green", "blue")
# tile_size=None: images longer than this are segmented in tiles of at most this side
# (a 4096 x 4096 mosaic of HeLa nuclei, 3077 objects: about 5% more time, a quarter less
# memory than untiled, the same objects but at seams)
_AUTO_TILE_SIZE = 2048


@dataclass
class ClassicalConfig:
    """Options of :class:`ClassicalSegmenter`.

    The defaults suit fluorescent nuclei; ``k_noise`` and ``refine_fraction`` were chosen on
    the development sets (``scripts/tune_classical.py --sets dev``: mnFinder training frames
    and synthetic fields, session 8), the rest on HeLa frames (session 1), so the HeLa and
    scratch-assay rows of ``docs/performance.md`` are optimistic for those. A stained slide
    in transmitted light (H&E, IHC) is read by its haematoxylin density and thresholded by
    Otsu's method, chosen on the development H&E crop (session 85).

    Attributes:
        intensity: how RGB becomes one channel: ``"auto"`` (default): ``"stain"`` for a
            colour image that looks like a stained slide in transmitted light
            (``io.render.stained``: a bright, coloured median pixel) while ``polarity`` is
            ``"auto"``, else ``"gray"``; ``"gray"`` (luminance); ``"stain"`` (the
            haematoxylin density, ``io.render.haematoxylin``: nuclei bright); ``"max"``
            (channel maximum, good for false-colour composites), ``"red"``/``"green"``/``"blue"``.
        sigma: Gaussian smoothing in pixels before thresholding (0: none).
        threshold: ``"auto"`` (default): ``"otsu"`` on a stain's density (an absorbing
            stain's nuclei against the little of it elsewhere), else ``"tophat"``.
            ``"tophat"``: pixels more than ``k_noise`` robust noise
            standard deviations above a local background (a morphological opening of radius
            ``background_radius``), which keeps dim objects on uneven backgrounds;
            ``"otsu"``, ``"li"``, ``"triangle"``, ``"yen"``, ``"mean"``: one global
            threshold (scikit-image); ``"local"``: above a Gaussian-weighted local mean over
            ``block_size``.
        threshold_scale: multiply a global threshold by this (``< 1`` keeps dimmer objects).
        background_radius: for ``"tophat"``: radius in pixels of the opening that estimates
            the background; must exceed the radius of the largest object. ``None``: from the
            objects of a first Otsu pass (2.5 x the radius of the 95th-percentile area,
            between 15 and 400 pixels).
        k_noise: for ``"tophat"``: threshold in robust noise standard deviations
            (1.4826 x MAD of the background-subtracted image; at least 1 grey level).
        block_size: odd window side for ``"local"``, in pixels.
        local_offset: for ``"local"``: how far (0..255 units) above the local mean a pixel
            must be; ``None``: 3 robust standard deviations of the residual (noise-adaptive).
        refine: cut each object at ``refine_fraction`` of its own height above the
            background (its 95th intensity percentile), trimming blur halos and haze around
            bright objects while dim objects keep their extent.
        refine_fraction: that fraction, in ``[0, 1)``.
        polarity: ``"bright"`` objects on dark, ``"dark"`` on bright, or ``"auto"``
            (objects are the minority class of the threshold; on a stain's density, the
            dense pixels).
        fill_holes: fill holes inside objects.
        opening: radius of a binary opening that removes thin bridges and specks (0: none).
        split: split touching objects with a distance-transform watershed.
        split_sigma: smoothing of the distance transform before seeding (pixels).
        h: seeds are the distance-transform maxima at least ``h`` pixels above their
            surroundings; larger ``h`` splits less.
        min_distance: minimum distance between two seeds, in pixels.
        min_area: drop objects smaller than this many pixels.
        min_area_rel: also drop objects smaller than this fraction of the median object
            area (scale-free debris filter; 0: off).
        max_area: drop objects larger than this many pixels (``None``: no limit); a float in
            ``(0, 1]`` is a fraction of the image area.
        remove_border: drop objects touching the image border.
        tile_size: run the per-object stages (refine, hole filling, opening, splitting) in
            overlapping tiles of at most this side in pixels (the fewest that overlap by
            ``tile_overlap``, evenly spread), and merge the objects across tile seams:
            objects crossing a seam come out whole, once. Threshold, polarity, background
            and noise level are estimated once on the whole image, so tiling changes
            results only at seams. It bounds the memory of the per-object stages on very
            large images. ``None`` (default): 2048, so images longer than 2048 pixels are
            tiled; ``0``: never tile.
        tile_overlap: pixels shared by neighbouring tiles, at least 1 and at most half
            ``tile_size``; objects narrower
            than this are seen whole in some tile (larger ones are joined from their pieces
            and segmented again in a window of their own).
    """

    intensity: str = "auto"
    sigma: float = 1.0
    threshold: str = "auto"
    threshold_scale: float = 1.0
    background_radius: int | None = None
    k_noise: float = 7.0
    block_size: int = 51
    local_offset: float | None = None
    refine: bool = True
    refine_fraction: float = 0.3
    polarity: str = "auto"
    fill_holes: bool = True
    opening: int = 1
    split: bool = True
    split_sigma: float = 1.0
    h: float = 1.0
    min_distance: int = 5
    min_area: int = 20
    min_area_rel: float = 0.2
    max_area: float | None = 0.25
    remove_border: bool = False
    tile_size: int | None = None
    tile_overlap: int = 128

    def __post_init__(self) -> None:
        if self.threshold not in _METHODS:
            raise ValueError(
                f"threshold must be one of {', '.join(_METHODS)}, got {self.threshold!r}"
            )
        if self.polarity not in _POLARITIES:
            raise ValueError(
                f"polarity must be one of {', '.join(_POLARITIES)}, got {self.polarity!r}"
            )
        if self.intensity not in _INTENSITIES:
            raise ValueError(
                f"intensity must be one of {', '.join(_INTENSITIES)}, got {self.intensity!r}"
            )
        if self.sigma < 0 or self.split_sigma < 0:
            raise ValueError(
                f"sigma and split_sigma must be >= 0, got {self.sigma}, {self.split_sigma}"
            )
        if (self.background_radius is not None and self.background_radius < 1) or self.k_noise <= 0:
            raise ValueError(
                f"need background_radius >= 1 and k_noise > 0, got {self.background_radius}, {self.k_noise}"
            )
        if not 0.0 <= self.refine_fraction < 1.0:
            raise ValueError(f"refine_fraction must be in [0, 1), got {self.refine_fraction}")
        if self.block_size < 3 or self.block_size % 2 == 0:
            raise ValueError(f"block_size must be an odd int >= 3, got {self.block_size}")
        if not 0.0 <= self.min_area_rel < 1.0:
            raise ValueError(f"min_area_rel must be in [0, 1), got {self.min_area_rel}")
        if self.min_area < 0:
            raise ValueError(f"min_area must be >= 0, got {self.min_area}")
        if self.max_area is not None and self.max_area <= 0:
            raise ValueError(f"max_area must be > 0 or None, got {self.max_area}")
        if self.threshold_scale <= 0:
            raise ValueError(f"threshold_scale must be > 0, got {self.threshold_scale}")
        for name in ("tile_size", "tile_overlap"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
                raise ValueError(f"{name} must be an int, got {value!r}")
        if self.tile_size is not None and self.tile_size < 0:
            raise ValueError(
                f"tile_size must be >= 0 (0: never tile) or None (tile large images), got {self.tile_size}"
            )
        if self.tile_overlap < 1:
            raise ValueError(
                f"tile_overlap must be >= 1 (objects on a seam are joined where tiles overlap), got {self.tile_overlap}"
            )
        if self.tile_size is None and 2 * self.tile_overlap > _AUTO_TILE_SIZE:
            raise ValueError(
                f"tile_overlap must be at most half the automatic tile size ({_AUTO_TILE_SIZE}), "
                f"got {self.tile_overlap}; give tile_size too"
            )
        if self.tile_size is not None and self.tile_size != 0 and self.tile_size < 2 * self.tile_overlap:
            raise ValueError(
                f"tile_size must be at least twice tile_overlap ({self.tile_overlap}), got {self.tile_size}; "
                "0 disables tiling, None tiles only large images"
            )
        if self.opening < 0 or self.min_distance < 1 or self.h < 0:
            raise ValueError(
                f"need opening >= 0, min_distance >= 1, h >= 0; got {self.opening}, "
                f"{self.min_distance}, {self.h}"
            )


__all__ = ["ClassicalConfig", "Polarity", "ThresholdMethod"]
