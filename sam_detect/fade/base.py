"""The fade protocol: keep the object sharp, fade its surroundings by distance."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Fade(Protocol):
    """Any object with this one method is a fade strategy (user classes included).

    ``params()`` (optional) returns the settings recorded in a library's metadata.
    """

    def apply(self, image: np.ndarray, mask: np.ndarray, distance_map: np.ndarray) -> np.ndarray:
        """Faded copy of ``image``.

        ``image`` ``(h, w, 3)`` uint8 crop; ``mask`` ``(h, w)`` bool object mask;
        ``distance_map`` ``(h, w)`` float32, distance in pixels from the mask (0 inside).
        Returns ``(h, w, 3)`` uint8.
        """
        ...
