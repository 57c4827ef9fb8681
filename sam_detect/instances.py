"""``Instances``: the one container passed between every stage.

A dataclass of parallel arrays, one row per object, after supervision's ``Detections``:

- ``masks``  ``(N, H, W)`` bool, in the coordinates of the original image. Stored as one
  tight :class:`~sam_detect.masks.MaskCrop` per object (:attr:`Instances.crops`), so a 4096 x 4096 mosaic with
  thousands of objects costs megabytes, not the ``N x H x W`` bytes that the dense
  :attr:`Instances.masks` view builds on demand
- ``boxes``  ``(N, 4)`` float32, XYXY pixels (x1, y1 inclusive; x2, y2 exclusive edges)
- ``scores`` ``(N,)`` float32, the segmenter's confidence that this is an object
- ``labels`` ``(N,)`` object array of ``str`` or ``None`` (``None``: not classified yet; given
  as one string, every instance's)
- ``label_confidences`` ``(N,)`` float32, the classifier's confidence in ``labels``
- ``data``   per-item values, each of length N (``area``, ``embedding``, ``neighbours``...)
- ``metadata`` per-collection values (image size, segmenter name, timings...)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from sam_detect.errors import AnnotationError
from sam_detect.masks import MaskCrop

UNKNOWN = "unknown"
NEGATIVE = "__negative__"


def _as_label_array(labels: Iterable[Any] | None, n: int) -> np.ndarray:
    out = np.empty(n, dtype=object)
    if labels is None:
        out[:] = None
        return out
    if isinstance(labels, str):  # one label for every instance: list() made one letter each
        labels = [labels] * n
    labels = list(labels)
    if len(labels) != n:
        raise ValueError(f"labels must have length {n}, got {len(labels)}")
    out[:] = labels
    return out


def _index_item(value: Any, index: np.ndarray) -> Any:
    if isinstance(value, np.ndarray):
        return value[index]
    return [value[i] for i in index]


class Instances:
    """Object instances of one image; see the module docstring for shapes and formats.

    Build it from dense masks, ``Instances(masks=(N, H, W) bool, ...)``, or from box crops,
    :meth:`Instances.from_crops`. Either way each mask is kept as its tight box crop, so
    memory grows with the objects' areas, not with ``N x H x W``.
    """

    __slots__ = (
        "_crops", "_hw", "boxes", "scores", "labels", "label_confidences", "data", "metadata",
    )

    def __init__(
        self,
        masks: np.ndarray | None = None,
        boxes: np.ndarray | None = None,
        scores: np.ndarray | None = None,
        labels: Iterable[Any] | None = None,
        label_confidences: np.ndarray | None = None,
        data: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if masks is None:
            raise ValueError("masks must be given: (N, H, W) bool, or use Instances.from_crops")
        masks = np.asarray(masks)
        if masks.ndim != 3:
            raise ValueError(f"masks must have shape (N, H, W), got {masks.shape}")
        crops = [MaskCrop.from_full(m) for m in masks]
        self._set(crops, (int(masks.shape[1]), int(masks.shape[2])), boxes, scores, labels,
                  label_confidences, data, metadata)

    def _set(
        self, crops, hw, boxes=None, scores=None, labels=None, label_confidences=None, data=None,
        metadata=None,
    ) -> None:
        self._crops: list[MaskCrop] = crops
        self._hw = hw
        n = len(crops)
        if boxes is None:
            boxes = _tight_boxes(crops)
        boxes = np.asarray(boxes, dtype=np.float32)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.shape != (n, 4):
            raise ValueError(f"boxes must have shape ({n}, 4), got {boxes.shape}")
        self.boxes = boxes
        self.scores = self._vector("scores", scores, n, fill=1.0)
        self.label_confidences = self._vector("label_confidences", label_confidences, n, fill=0.0)
        self.labels = _as_label_array(labels, n)
        self.data = dict(data) if data else {}
        self.metadata = dict(metadata) if metadata else {}
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
    def from_crops(
        cls,
        crops: Sequence[np.ndarray] | Sequence[MaskCrop],
        origins: Any = None,
        image_hw: tuple[int, int] = (0, 0),
        **fields: Any,
    ) -> Instances:
        """Instances from masks given as box crops, never building ``(N, H, W)``.

        Args:
            crops: ``N`` :class:`~sam_detect.masks.MaskCrop` (then ``origins`` is ``None``), or
                ``N`` 2-D bool arrays, each the mask inside a rectangle of the image.
            origins: with arrays: ``(N, 2)`` int, the ``(x0, y0)`` pixel of each crop's top-left corner.
            image_hw: ``(height, width)`` of the image.
            fields: ``boxes``, ``scores``, ``labels``, ``label_confidences``, ``data``,
                ``metadata``, as for the constructor (``boxes`` default to tight boxes).

        Raises:
            ValueError: a crop is not 2-D or does not lie inside the image.
        """
        h, w = (int(v) for v in image_hw)
        n = len(crops)
        if origins is None:
            items = list(crops)
            if not all(isinstance(c, MaskCrop) for c in items):
                raise ValueError("origins must be given unless every crop is a MaskCrop")
        else:
            origins = np.asarray(origins, dtype=np.int64) if n else np.zeros((0, 2), np.int64)
            if origins.shape != (n, 2):
                raise ValueError(f"origins must have shape ({n}, 2), got {origins.shape}")
            items = []
            for i, crop in enumerate(crops):
                crop = np.asarray(crop)
                if crop.ndim != 2:
                    raise ValueError(f"mask crop {i} must be 2-D, got shape {crop.shape}")
                items.append(MaskCrop(crop, (origins[i, 0], origins[i, 1])))
        out: list[MaskCrop] = []
        for i, m in enumerate(items):
            x0, y0, x1, y1 = m.box
            if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
                raise ValueError(
                    f"mask crop {i} of shape {m.crop.shape} at (x0={x0}, y0={y0}) "
                    f"does not lie inside the {h}x{w} image"
                )
            t = m.tight()
            out.append(t if type(t) is MaskCrop else MaskCrop(t.crop, t.origin))
        inst = cls.__new__(cls)
        inst._set(out, (h, w), **fields)
        return inst

    def placed(self, x0: int, y0: int, image_hw: tuple[int, int]) -> Instances:
        """These instances, found in a crop of a larger image whose top-left pixel is
        ``(x0, y0)``, in that image of size ``image_hw``: masks, boxes moved; scores,
        labels, ``data`` and ``metadata`` kept."""
        dx, dy = int(x0), int(y0)
        return Instances.from_crops(
            [m.shifted(dx, dy) for m in self._crops], None, image_hw,
            boxes=self.boxes + np.array([dx, dy, dx, dy], dtype=self.boxes.dtype) if len(self) else None,
            scores=self.scores, labels=self.labels, label_confidences=self.label_confidences,
            data=self.data, metadata=self.metadata,
        )

    @classmethod
    def from_label_image(cls, label_image: np.ndarray, **kwargs: Any) -> tuple[Instances, np.ndarray]:
        """One instance per non-zero id of a label image ``(H, W)``, in ascending id order.

        Returns the instances and their ids ``(N,)``; ``kwargs`` go to :meth:`from_crops`.
        Built from per-object slices: never ``N`` full-image comparisons.
        """
        from scipy import ndimage

        lab = np.asarray(label_image)
        if lab.ndim != 2:
            raise AnnotationError(f"a label image must be 2-D (H, W), got shape {lab.shape}")
        if not np.issubdtype(lab.dtype, np.integer):
            if not np.all(np.mod(lab, 1) == 0):
                raise AnnotationError(f"a label image must hold integer ids, got dtype {lab.dtype}")
            lab = lab.astype(np.int64)
        ids = np.unique(lab)
        ids = ids[ids != 0]
        if len(ids) and (ids[0] < 0 or ids[-1] > 4 * len(ids) + 4096):
            lab = np.searchsorted(ids, lab) + 1  # sparse or negative ids: relabel to 1..N
            lab[np.asarray(label_image) == 0] = 0
            keys = np.arange(1, len(ids) + 1)
        else:
            keys = ids
        slices = ndimage.find_objects(lab)  # one per id up to the largest (None where absent)
        crops, origins = [], []
        for key in keys:
            sl = slices[int(key) - 1]
            crops.append(lab[sl] == key)
            origins.append((sl[1].start, sl[0].start))
        inst = cls.from_crops(crops, origins, lab.shape, **kwargs)
        return inst, ids

    @classmethod
    def empty(cls, image_hw: tuple[int, int] = (0, 0)) -> Instances:
        """No instances, for an image of ``(height, width)``."""
        return cls.from_crops([], np.zeros((0, 2), np.int64), image_hw)

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
        return cls._from_parts(
            [c for it in nonempty for c in it._crops],
            nonempty[0].image_hw,
            boxes=np.concatenate([it.boxes for it in nonempty], axis=0),
            scores=np.concatenate([it.scores for it in nonempty]),
            labels=[x for it in nonempty for x in it.labels],
            label_confidences=np.concatenate([it.label_confidences for it in nonempty]),
            data=data,
            metadata=metadata,
        )

    @classmethod
    def _from_parts(cls, crops, hw, **kwargs: Any) -> Instances:
        """Already tight, already checked crops (from another ``Instances``)."""
        inst = cls.__new__(cls)
        inst._set(list(crops), hw, **kwargs)
        return inst

    # -- masks ----------------------------------------------------------------------------
    @property
    def masks(self) -> np.ndarray:
        """A new dense ``(N, H, W)`` bool array of all masks.

        Costs ``N x H x W`` bytes: for one object use :meth:`mask` or :meth:`mask_crop`.
        """
        out = np.zeros((len(self), *self._hw), dtype=bool)
        for i, m in enumerate(self._crops):
            out[i][m.slices] = m.crop
        return out

    def mask(self, i: int) -> np.ndarray:
        """A new full-image ``(H, W)`` bool mask of instance ``i``."""
        return self._crops[i].full(self._hw)

    @property
    def crops(self) -> list[MaskCrop]:
        """The ``N`` tight :class:`~sam_detect.masks.MaskCrop` (a new list of the stored ones:
        do not modify their arrays)."""
        return list(self._crops)

    def crop(self, i: int) -> MaskCrop:
        """Instance ``i``'s tight :class:`~sam_detect.masks.MaskCrop` (the stored one)."""
        return self._crops[i]

    def mask_crop(self, i: int) -> tuple[np.ndarray, tuple[slice, slice]]:
        """Instance ``i``'s mask in its tight box, and that box as ``(rows, cols)`` slices.

        ``image[rows, cols][crop]`` are the object's pixels; ``label[rows, cols][crop] = v``
        paints it. An empty mask gives a ``(0, 0)`` crop and empty slices. Do not modify
        the returned crop: it is the stored one.
        """
        m = self._crops[i]
        return m.crop, m.slices

    def mask_region(self, i: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """Instance ``i``'s mask inside the rectangle ``[y0:y1, x0:x1]`` (clipped to the image)."""
        h, w = self._hw
        x0, y0, x1, y1 = max(int(x0), 0), max(int(y0), 0), min(int(x1), w), min(int(y1), h)
        return self._crops[i].region(x0, y0, x1, y1)

    @property
    def mask_crops(self) -> list[np.ndarray]:
        """The ``N`` tight mask crops (a new list of the stored arrays: do not modify them)."""
        return [m.crop for m in self._crops]

    @property
    def mask_origins(self) -> np.ndarray:
        """``(N, 2)`` int64 ``(x0, y0)`` of each mask crop's top-left pixel."""
        return np.array([m.origin for m in self._crops], dtype=np.int64).reshape(-1, 2)

    def to_label_image(self, dtype: Any = np.int32, values: Any = None, *, smaller_on_top: bool = True) -> np.ndarray:
        """Paint instance ``i`` with ``i + 1`` (or ``values[i]``, e.g. track ids) into an
        ``(H, W)`` label image. Where masks overlap the smaller object keeps the pixels they
        share, so that no object inside another (a nucleus in its cell) vanishes from the image;
        ``smaller_on_top=False``: the later one keeps them.

        Raises:
            ValueError: an id does not fit ``dtype`` (300 objects in ``np.uint8``: object 256
                would be painted as background and 257 as object 1), or ``values`` does not
                hold one value per instance.
        """
        out = np.zeros(self._hw, dtype=dtype)
        if values is not None and len(values) != len(self._crops):  # an IndexError mid-painting, or the rest unused
            raise ValueError(f"values must hold one value per instance ({len(self._crops)}), got {len(values)}")
        if len(self._crops) and np.issubdtype(out.dtype, np.integer):
            ids = np.arange(1, len(self._crops) + 1) if values is None else np.asarray(values)
            lo, hi = np.iinfo(out.dtype).min, np.iinfo(out.dtype).max
            if ids.size and (ids.min() < lo or ids.max() > hi):
                raise ValueError(f"ids up to {ids.max()} do not fit a {out.dtype} label image (at most {hi}): "
                                 "give a wider dtype (np.uint16, np.uint32)")
        order = np.argsort(-self.areas, kind="stable") if smaller_on_top else range(len(self._crops))
        for i in order:
            m = self._crops[i]
            out[m.slices][m.crop] = i + 1 if values is None else values[i]
        return out

    # -- access ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._crops)

    @property
    def image_hw(self) -> tuple[int, int]:
        return self._hw

    @property
    def areas(self) -> np.ndarray:
        """Mask areas in pixels, ``(N,)`` int64."""
        return np.array([m.area for m in self._crops], dtype=np.int64)

    def __getitem__(self, index: Any) -> Instances:
        """Slice with an int, a slice, an int array or a boolean mask of length N."""
        n = len(self)
        if isinstance(index, (bool, np.bool_)):  # an int to Python, but numpy reads it as a mask
            raise IndexError(f"index {index!r}: a single bool is no index; use a boolean mask of length {n}")
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
                if idx.size and idx.dtype.kind not in "iu":  # 1.9 is no index (numpy refuses floats too)
                    raise IndexError(f"instances are indexed by integers or a boolean mask, got {idx.dtype} values")
                idx = idx.astype(np.int64).reshape(-1)
                if idx.size and (idx.max() >= n or idx.min() < -n):
                    raise IndexError(f"index out of range for {n} instances")
        return Instances._from_parts(
            [self._crops[i] for i in idx],
            self._hw,
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


def as_instances(masks: Instances | np.ndarray, image_hw: tuple[int, int]) -> Instances:
    """``masks`` as :class:`Instances` of an image of ``image_hw``: Instances pass through, an
    ``(H, W)`` or ``(N, H, W)`` array is converted.

    Raises:
        AnnotationError: not 2-D/3-D, or the masks' ``(H, W)`` is not the image's.
    """
    if not isinstance(masks, Instances):
        arr = np.asarray(masks)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise AnnotationError(f"masks must be (N, H, W) bool, got shape {arr.shape}")
        masks = Instances(masks=arr)
    hw = tuple(int(v) for v in image_hw)
    if masks.image_hw != hw:
        raise AnnotationError(
            f"masks must be (N, H, W) with (H, W) = image size {hw}, got "
            f"{(len(masks), *masks.image_hw)}: each mask must have the image's shape"
        )
    return masks


def _tight_boxes(crops: Sequence[MaskCrop]) -> np.ndarray:
    """``(N, 4)`` float32 XYXY boxes of tight crops; ``(0, 0, 0, 0)`` for an empty one."""
    return np.array([m.box for m in crops], dtype=np.float32).reshape(-1, 4)


def masks_to_xyxy(masks: np.ndarray) -> np.ndarray:
    """Tight XYXY boxes ``(N, 4)`` float32 of ``(N, H, W)`` masks; x2/y2 are exclusive.

    An empty mask gets the box ``(0, 0, 0, 0)``.
    """
    return _tight_boxes([MaskCrop.from_full(m) for m in np.asarray(masks, dtype=bool)])
