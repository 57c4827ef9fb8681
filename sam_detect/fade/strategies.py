"""Built-in fade strategies: keep the object sharp, fade its surroundings by distance.

Every strategy blends each pixel towards a neutral *background* colour with a weight
``w(d)`` in ``[0, 1]`` that depends only on ``d``, the pixel's distance in pixels from the
mask (0 inside it)::

    out = w(d) * image + (1 - w(d)) * background

Pixels inside the mask are copied unchanged, bit for bit.

The background is, by default (``background="mean"``), the per-channel mean colour of the
crop's pixels *outside* the mask: for a fluorescence image that is the dark field, for a
photo a grey close to the scene's average, so the faded surroundings look like "more
background" instead of a black frame the embedder has never seen around such objects.
Pass a number (``background=0`` for black, ``127`` for the mid grey that EfficientNet's
``(x - 127) / 128`` scaling maps to zero) to fade towards a fixed grey level instead.

``params()`` returns ``{"name": ..., **settings}``; it is recorded in a library's metadata,
so examples and candidates are faded the same way. :func:`fade_params` does the same for
any fade object, including user classes that only define ``apply``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sam_detect.fade import FADES

Background = str | float | int


def _check_number(name: str, value: Any, *, minimum: float = 0.0, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if strict and value <= minimum:
        raise ValueError(f"{name} must be > {minimum:g}, got {value:g}")
    if not strict and value < minimum:
        raise ValueError(f"{name} must be >= {minimum:g}, got {value:g}")
    return value


def _check_min_fade(value: Any) -> float:
    value = _check_number("min_fade", value)
    if value > 1.0:
        raise ValueError(
            f"min_fade must be in [0, 1] (the weight kept by the farthest pixels), got {value:g}"
        )
    return value


def _check_background(value: Any) -> Background:
    if isinstance(value, str):
        if value != "mean":
            raise ValueError(
                f"background must be 'mean' or a grey level in [0, 255], got {value!r}"
            )
        return value
    level = _check_number("background", value)
    if level > 255:
        raise ValueError(f"background must be 'mean' or a grey level in [0, 255], got {level:g}")
    return int(level) if level.is_integer() else level


def _check_inputs(image: np.ndarray, mask: np.ndarray, distance_map: np.ndarray) -> None:
    if image.ndim != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (h, w, C) uint8, got {image.shape} {image.dtype}")
    if mask.shape != image.shape[:2] or distance_map.shape != image.shape[:2]:
        raise ValueError(
            f"mask and distance_map must have the image's shape {image.shape[:2]}, "
            f"got {mask.shape} and {distance_map.shape}"
        )


def background_colour(image: np.ndarray, mask: np.ndarray, background: Background) -> np.ndarray:
    """The colour faded pixels tend to: ``(C,)`` float32.

    ``"mean"``: per-channel mean of ``image`` ``(h, w, C)`` outside ``mask`` ``(h, w)`` bool
    (of the whole crop when the mask covers everything); a number: that grey level.
    """
    channels = image.shape[2]
    if isinstance(background, str):
        return mean_colour(image, ~mask)
    return np.full(channels, background, dtype=np.float32)


def mean_colour(image: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Per-channel mean ``(C,)`` float32 of ``image`` ``(h, w, C)`` uint8 over ``where``.

    ``where`` ``(h, w)`` bool; when it selects nothing, the mean of the whole image.
    """
    import cv2

    channels = image.shape[2]
    if channels > 4:
        sel = image[where] if where.any() else image.reshape(-1, channels)
        return sel.mean(axis=0, dtype=np.float64).astype(np.float32)
    sel = np.ascontiguousarray(where, dtype=np.uint8)
    if not sel.any():
        sel = None
    # cv2.mean is ~20x faster than image[where].mean(axis=0) on crop-sized arrays.
    return np.asarray(cv2.mean(np.ascontiguousarray(image), mask=sel)[:channels], dtype=np.float32)


def blend(
    image: np.ndarray, mask: np.ndarray, weight: np.ndarray, background: Background
) -> np.ndarray:
    """``weight * image + (1 - weight) * background`` as uint8, mask pixels copied unchanged.

    ``image`` ``(h, w, C)`` uint8; ``mask`` ``(h, w)`` bool; ``weight`` ``(h, w)`` float in
    ``[0, 1]`` (1 keeps the pixel). Returns a new ``(h, w, C)`` uint8 array.
    """
    bg = background_colour(image, mask, background)
    out = image.astype(np.float32)
    out -= bg
    out *= weight.astype(np.float32, copy=False)[..., None]
    out += bg
    np.rint(out, out=out)
    np.clip(out, 0, 255, out=out)
    result = out.astype(np.uint8)
    np.copyto(result, image, where=mask[..., None])
    return result


class _DistanceFade:
    """Shared ``apply`` for the built-in fades: subclasses define ``weight(d)``."""

    name = ""
    background: Background = "mean"

    def weight(self, distance: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def apply(self, image: np.ndarray, mask: np.ndarray, distance_map: np.ndarray) -> np.ndarray:
        """Faded copy of ``image`` ``(h, w, C)`` uint8.

        ``mask`` ``(h, w)`` bool; ``distance_map`` ``(h, w)`` float32, pixels from the mask
        (0 inside). Returns ``(h, w, C)`` uint8; pixels under the mask are unchanged.
        """
        mask = np.asarray(mask, dtype=bool)
        distance_map = np.asarray(distance_map, dtype=np.float32)
        _check_inputs(image, mask, distance_map)
        return blend(image, mask, self.weight(distance_map), self.background)

    def params(self) -> dict[str, Any]:
        return {"name": self.name, **self._settings()}

    def _settings(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._settings().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.params() == other.params()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.params().items())))


@FADES.register("identity", help="no fade: the crop as it is")
class IdentityFade(_DistanceFade):
    """No fade: returns a copy of the crop."""

    name = "identity"

    def __init__(self) -> None:
        pass

    def weight(self, distance: np.ndarray) -> np.ndarray:
        return np.ones_like(distance, dtype=np.float32)

    def apply(self, image: np.ndarray, mask: np.ndarray, distance_map: np.ndarray) -> np.ndarray:
        """A copy of ``image`` ``(h, w, C)`` uint8, unchanged."""
        return np.array(image, dtype=np.uint8, copy=True)

    def _settings(self) -> dict[str, Any]:
        return {}


@FADES.register("gaussian", help="weight = min_fade + (1 - min_fade) * exp(-d^2 / 2 sigma^2)")
class GaussianFade(_DistanceFade):
    """Gaussian fall-off: ``w(d) = min_fade + (1 - min_fade) * exp(-d² / (2 σ²))``.

    ``sigma`` (pixels, > 0): distance at which the surroundings keep ~61 % of their
    contrast; ``min_fade`` in ``[0, 1]``: the weight far pixels never drop below.
    """

    name = "gaussian"

    def __init__(self, sigma: float = 30.0, min_fade: float = 0.1, background: Background = "mean"):
        self.sigma = _check_number("sigma", sigma, strict=True)
        self.min_fade = _check_min_fade(min_fade)
        self.background = _check_background(background)

    def weight(self, distance: np.ndarray) -> np.ndarray:
        d = distance.astype(np.float32, copy=False)
        g = np.exp(d * d * np.float32(-0.5 / (self.sigma * self.sigma)))
        return np.float32(self.min_fade) + np.float32(1.0 - self.min_fade) * g

    def _settings(self) -> dict[str, Any]:
        return {"sigma": self.sigma, "min_fade": self.min_fade, "background": self.background}


@FADES.register("linear", help="weight falls linearly from 1 to min_fade at max_distance")
class LinearFade(_DistanceFade):
    """Linear ramp: ``w(d) = 1 - (1 - min_fade) * min(d / max_distance, 1)``.

    ``max_distance`` (pixels, > 0): where the weight reaches ``min_fade`` and stays.
    """

    name = "linear"

    def __init__(
        self, max_distance: float = 50.0, min_fade: float = 0.1, background: Background = "mean"
    ):
        self.max_distance = _check_number("max_distance", max_distance, strict=True)
        self.min_fade = _check_min_fade(min_fade)
        self.background = _check_background(background)

    def weight(self, distance: np.ndarray) -> np.ndarray:
        t = np.minimum(distance.astype(np.float32, copy=False) / np.float32(self.max_distance), 1)
        return np.float32(1.0) - np.float32(1.0 - self.min_fade) * t

    def _settings(self) -> dict[str, Any]:
        return {
            "max_distance": self.max_distance,
            "min_fade": self.min_fade,
            "background": self.background,
        }


@FADES.register("exponential", help="weight = exp(-decay * d), 0 beyond max_distance")
class ExponentialFade(_DistanceFade):
    """Exponential decay: ``w(d) = exp(-decay * d)`` up to ``max_distance``, 0 beyond it.

    ``decay`` (per pixel, >= 0; 0 keeps everything up to the cut-off); ``max_distance``
    (pixels, > 0): pixels farther away become pure background.
    """

    name = "exponential"

    def __init__(
        self, decay: float = 0.05, max_distance: float = 100.0, background: Background = "mean"
    ):
        self.decay = _check_number("decay", decay)
        self.max_distance = _check_number("max_distance", max_distance, strict=True)
        self.background = _check_background(background)

    def weight(self, distance: np.ndarray) -> np.ndarray:
        d = distance.astype(np.float32, copy=False)
        w = np.exp(d * np.float32(-self.decay))
        w[d > self.max_distance] = 0.0
        return w

    def _settings(self) -> dict[str, Any]:
        return {
            "decay": self.decay,
            "max_distance": self.max_distance,
            "background": self.background,
        }


def fade_params(fade: Any) -> dict[str, Any]:
    """Settings of any fade object, as recorded in library metadata.

    ``fade.params()`` when it has one (a ``"name"`` key is added when missing), otherwise
    ``{"name": <class name>}``; ``None`` means no fade: ``{"name": "identity"}``.
    """
    if fade is None:
        return {"name": "identity"}
    if not callable(getattr(fade, "apply", None)):
        raise TypeError(
            f"a fade needs an apply(image, mask, distance_map) method; got {type(fade).__name__}"
        )
    params = getattr(fade, "params", None)
    if callable(params):
        out = dict(params())
        out.setdefault("name", type(fade).__name__)
        return out
    return {"name": type(fade).__name__}


__all__ = [
    "ExponentialFade",
    "GaussianFade",
    "IdentityFade",
    "LinearFade",
    "background_colour",
    "blend",
    "fade_params",
]
