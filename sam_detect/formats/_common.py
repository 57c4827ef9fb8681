"""What every reader and writer shares: paths, the default label, size checks, JSON files."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sam_detect.errors import AnnotationError
from sam_detect.instances import Instances

PathLike = str | os.PathLike
DEFAULT_LABEL = "object"


def check_exists(path: Path) -> None:
    if not path.exists():
        raise AnnotationError(f"{path}: annotation file not found")
    if path.is_dir():
        raise AnnotationError(f"{path}: is a folder; expected an annotation file")


def check_hw(path: Path, got_hw: tuple[int, int], image_shape: Sequence[int], where: Any = None) -> None:
    """Raise when annotations of ``got_hw`` do not fit an image of ``image_shape`` ``(H, W[, C])``."""
    want = (int(image_shape[0]), int(image_shape[1]))
    if tuple(got_hw) != want:
        which = f" (image {where})" if where not in (None, 0) else ""
        raise AnnotationError(
            f"{path}{which}: annotations are {got_hw[0]}x{got_hw[1]} (HxW) but the image is "
            f"{want[0]}x{want[1]}; use the annotation file made for this image"
        )


def select_image(path: Path, items: list[Instances], image: int | str) -> Instances:
    """The item of a multi-image file for ``image``: a COCO image id, an index, or a name."""
    if isinstance(image, (int, np.integer)) and not isinstance(image, bool):
        for it in items:
            if it.metadata.get("image_id") == image:
                return it
        if 0 <= image < len(items):
            return items[int(image)]
        raise AnnotationError(f"{path}: image index {image} out of range (0..{len(items) - 1})")
    name = str(image)
    keys = (name, Path(name).name, Path(name).stem)
    for it in items:
        ref = str(it.metadata.get("image"))
        if ref in keys or Path(ref).name in keys or Path(ref).stem in keys:
            return it
    available = ", ".join(str(it.metadata.get("image")) for it in items[:8])
    raise AnnotationError(f"{path}: no annotations for image {name!r}; the file lists: {available}")


def label_str(label: Any) -> str:
    return DEFAULT_LABEL if label is None else str(label)


def read_json(path: Path) -> Any:
    """The JSON document in ``path``; an unreadable or malformed file is one :class:`AnnotationError`."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AnnotationError(f"{path}: not valid JSON ({e})") from e


def write_json(path: PathLike, doc: Any, indent: int | None = None) -> Path:
    """Write ``doc`` as JSON to ``path`` (its folder made as needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=indent))
    return path
