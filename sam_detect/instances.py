"""``Instances``: the one container passed between every stage.

A dataclass of parallel arrays, one row per object, after supervision's ``Detections``:

- ``masks``  ``(N, H, W)`` bool, in the coordinates of the original image
- ``boxes``  ``(N, 4)`` float32, XYXY pixels (x1, y1 inclusive; x2, y2 exclusive edges)
- ``scores`` ``(N,)`` float32, the segmenter's confidence that this is an object
- ``labels`` ``(N,)`` object array of ``str`` or ``None`` (``None``: not classified yet)
- ``label_confidences`` ``(N,)`` float32, the classifier's confidence in ``labels``
- ``data``   per-item values, each of length N (``area``, ``embedding``, ``neighbours``...)
- ``metadata`` per-collection values (image size, segmenter name, timings...)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

UNKNOWN = "unknown"
NEGATIVE = "__negative__"


def _as_label_array(labels: Iterable[Any] | None, n: int) -> np.ndarray:
    out = np.empty(n, dtype=object)
    if labels is None:
        out[:] = None
        return out
    labels = list(labels)
    if len(labels) != n:
        raise ValueError(f"labels must have length {n}, got {len(labels)}")
    out[:] = labels
    return out


def _index_item(value: Any, index: np.ndarray) -> Any:
    if isinstance(value, np.ndarray):
        return value[index]
    return [value[i] for i in index]


@dataclass
class Instances:
    """Object instances of one image; see the module docstring for shapes and formats."""

    masks: np.ndarray
    boxes: np.ndarray | None = None
    scores: np.ndarray | None = None
    labels: np.ndarray | None = None
    label_confidences: np.ndarray | None = None
    data: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        masks = np.asarray(self.masks)
        if masks.ndim != 3:
            raise ValueError(f"masks must have shape (N, H, W), got {masks.shape}")
        if masks.dtype != bool:
            masks = masks.astype(bool)
        self.masks = masks
        n = masks.shape[0]
        if self.boxes is None:
            self.boxes = masks_to_xyxy(masks)
        self.boxes = np.asarray(self.boxes, dtype=np.float32)
        if self.boxes.size == 0:
            self.boxes = self.boxes.reshape(0, 4)
        if self.boxes.shape != (n, 4):
            raise ValueError(f"boxes must have shape ({n}, 4), got {self.boxes.shape}")
        self.scores = self._vector("scores", self.scores, n, fill=1.0)
        self.label_confidences = self._vector("label_confidences", self.label_confidences, n, fill=0.0)
        self.labels = _as_label_array(self.labels, n)
        for key, value in self.data.items():
            if len(value) != n:
                raise ValueError(f"data[{key!r}] must have length {n}, got {len(value)}")

    @staticmethod
    def _vector(name: str, value: Any, n: int, fill: float) -> np.ndarray:
        if value is None:
            return np.full(n, fill, dtype=np.float32)
        arr = np.asarray(value, dtype=np.float32).reshape(-1)
        if arr.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
        return arr

    # -- construction -------------------------------------------------------------------
    @classmethod
    def empty(cls, image_hw: tuple[int, int] = (0, 0)) -> Instances:
        """No instances, for an image of ``(height, width)``."""
        h, w = image_hw
        return cls(masks=np.zeros((0, h, w), dtype=bool))

    @classmethod
    def merge(cls, items: Sequence[Instances]) -> Instances:
        """Concatenate instances of the same image; ``data`` keys must agree."""
        items = [it for it in items if it is not None]
        if not items:
            return cls.empty()
        hw = {it.image_hw for it in items if len(it)}
        if len(hw) > 1:
            raise ValueError(f"cannot merge instances of different image sizes: {sorted(hw)}")
        nonempty = [it for it in items if len(it)] or items[:1]
        keys = set(nonempty[0].data)
        for it in nonempty[1:]:
            if set(it.data) != keys:
                raise ValueError(f"cannot merge instances with different data keys: {sorted(keys)} vs {sorted(it.data)}")
        data: dict[str, Any] = {}
        for k in keys:
            vals = [it.data[k] for it in nonempty]
            if all(isinstance(v, np.ndarray) for v in vals):
                data[k] = np.concatenate(vals, axis=0)
            else:
                data[k] = [x for v in vals for x in v]
        metadata: dict[str, Any] = {}
        for it in items:
            metadata.update(it.metadata)
        return cls(
            masks=np.concatenate([it.masks for it in nonempty], axis=0),
            boxes=np.concatenate([it.boxes for it in nonempty], axis=0),
            scores=np.concatenate([it.scores for it in nonempty]),
            labels=[x for it in nonempty for x in it.labels],
            label_confidences=np.concatenate([it.label_confidences for it in nonempty]),
            data=data,
            metadata=metadata,
        )

    # -- access ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.masks.shape[0])

    @property
    def image_hw(self) -> tuple[int, int]:
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    @property
    def areas(self) -> np.ndarray:
        """Mask areas in pixels, ``(N,)`` int64."""
        return self.masks.sum(axis=(1, 2), dtype=np.int64)

    def __getitem__(self, index: Any) -> Instances:
        """Slice with an int, a slice, an int array or a boolean mask of length N."""
        n = len(self)
        if isinstance(index, (int, np.integer)):
            if not -n <= index < n:
                raise IndexError(f"index {index} out of range for {n} instances")
            idx = np.array([index % n])
        elif isinstance(index, slice):
            idx = np.arange(n)[index]
        else:
            idx = np.asarray(index)
            if idx.dtype == bool:
                if idx.shape != (n,):
                    raise IndexError(f"boolean index must have shape ({n},), got {idx.shape}")
                idx = np.flatnonzero(idx)
            else:
                idx = idx.astype(np.int64).reshape(-1)
        return Instances(
            masks=self.masks[idx],
            boxes=self.boxes[idx],
            scores=self.scores[idx],
            labels=self.labels[idx],
            label_confidences=self.label_confidences[idx],
            data={k: _index_item(v, idx) for k, v in self.data.items()},
            metadata=dict(self.metadata),
        )

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"Instances(n={len(self)}, image_hw={self.image_hw}, data={sorted(self.data)})"


def masks_to_xyxy(masks: np.ndarray) -> np.ndarray:
    """Tight XYXY boxes ``(N, 4)`` float32 of ``(N, H, W)`` masks; x2/y2 are exclusive.

    An empty mask gets the box ``(0, 0, 0, 0)``.
    """
    masks = np.asarray(masks, dtype=bool)
    n = masks.shape[0]
    boxes = np.zeros((n, 4), dtype=np.float32)
    if n == 0:
        return boxes
    rows = masks.any(axis=2)
    cols = masks.any(axis=1)
    for i in range(n):
        ys = np.flatnonzero(rows[i])
        xs = np.flatnonzero(cols[i])
        if ys.size:
            boxes[i] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return boxes
