"""What the evaluation protocol reads: images loaded on demand, ground truth (``Instances``
or label images) and the reproducible draw of examples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sam_detect.errors import AnnotationError
from sam_detect.instances import Instances


# ----------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageRef:
    """An image loaded on demand: a file, and a frame / channel of a stack."""

    path: str
    frame: int | None = None
    channel: int | tuple[int, ...] | None = None

    @property
    def name(self) -> str:
        base = Path(self.path).name
        return base if self.frame is None else f"{base}[{self.frame}]"

    def load(self):
        from sam_detect.io.images import load_image

        return load_image(self.path, channel=self.channel, frame=self.frame)


def load_eval_image(image: Any):
    """A ``LoadedImage`` from an :class:`ImageRef`, a path, a ``LoadedImage`` or an array."""
    from sam_detect.io.images import as_loaded_image

    return image.load() if isinstance(image, ImageRef) else as_loaded_image(image)


def image_name(image: Any, index: int) -> str:
    if isinstance(image, ImageRef):
        return image.name
    if isinstance(image, (str, Path)):
        return Path(image).name
    path = getattr(image, "path", None)
    if path:
        frame = getattr(image, "frame", None)
        return Path(path).name + ("" if frame is None else f"[{frame}]")
    return f"image {index}"


def gt_instances(gt: Any, label: str | None, where: str) -> Instances:
    """Ground truth of one image: ``Instances`` (``label`` overrides its labels) or a label image."""
    from sam_detect.formats import DEFAULT_LABEL, label_image_to_instances

    if isinstance(gt, Instances):
        if label is not None:
            gt = gt[np.arange(len(gt))]
            gt.labels[:] = label
        elif len(gt) and any(lab is None for lab in gt.labels):
            gt = gt[np.arange(len(gt))]
            gt.labels[:] = [DEFAULT_LABEL if lab is None else lab for lab in gt.labels]
        return gt
    return label_image_to_instances(label_array(gt, where), label)


def label_array(gt: Any, where: str) -> np.ndarray:
    arr = np.asarray(gt)
    if arr.ndim != 2 or not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise AnnotationError(
            f"ground truth of {where}: expected Instances or an (H, W) integer label image, "
            f"got {type(gt).__name__} {getattr(arr, 'shape', '')} {getattr(arr, 'dtype', '')}"
        )
    return arr


def labels_of_gt(gt: Any, label: str | None, where: str) -> np.ndarray:
    """Labels of one image's ground truth without building its masks (label images are cheap)."""
    if isinstance(gt, Instances):
        return gt_instances(gt, label, where).labels
    ids = np.unique(label_array(gt, where))
    n = int((ids != 0).sum())
    from sam_detect.formats import DEFAULT_LABEL

    return np.array([label or DEFAULT_LABEL] * n, dtype=object)


def image_indices(spec: Sequence[int] | None, n: int, what: str) -> list[int]:
    if spec is None:
        return list(range(n))
    out = sorted({int(i) for i in spec})
    bad = [i for i in out if not 0 <= i < n]
    if bad:
        raise ValueError(f"{what}: image index {bad[0]} out of range 0..{n - 1}")
    if not out:
        raise ValueError(f"{what}: no images selected")
    return out


# ----------------------------------------------------------------------------------------
# example drawing
# ----------------------------------------------------------------------------------------
def draw_examples(
    gt_labels: Sequence[Sequence[Any]],
    shots: int,
    seed: int = 0,
    examples_from: Sequence[int] | None = None,
) -> dict[int, np.ndarray]:
    """Pick ``shots`` ground-truth objects per class, at random but reproducibly.

    Args:
        gt_labels: per image, the labels of its ground-truth objects.
        shots: examples per class (a class with fewer objects gives all it has).
        seed: seed of ``numpy.random.default_rng``.
        examples_from: indices of the images to draw from (default: all).

    Returns:
        ``{image index: sorted int64 indices of the drawn objects}`` for images with draws.
    """
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    images = image_indices(examples_from, len(gt_labels), "examples_from")
    pool: dict[str, list[tuple[int, int]]] = {}
    from sam_detect.formats.label_image import UNTYPED

    for i in images:
        for j, lab in enumerate(gt_labels[i]):
            if str(lab) != UNTYPED:  # an object of no type is no example of any
                pool.setdefault(str(lab), []).append((i, j))
    rng = np.random.default_rng(seed)
    chosen: dict[int, list[int]] = {}
    for lab in sorted(pool):
        cands = pool[lab]
        take = rng.choice(len(cands), size=min(shots, len(cands)), replace=False)
        for k in sorted(take.tolist()):
            i, j = cands[k]
            chosen.setdefault(i, []).append(j)
    return {i: np.array(sorted(js), dtype=np.int64) for i, js in sorted(chosen.items())}
