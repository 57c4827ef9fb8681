"""What the annotation session remembers of an image: candidate masks, annotations, undoable
steps, as :class:`~sam_detect.masks.MaskCrop` (full masks of hundreds of objects cost GBs);
their JSON for the page, and the export of an image's annotations as a file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sam_detect.errors import AnnotationError
from sam_detect.formats.runs import mask_to_runs
from sam_detect.instances import Instances
from sam_detect.masks import MaskCrop
from sam_detect.ui.images import View, encode_png, short

EXPORT_FORMATS = ("coco", "labelme", "geojson", "labels")


def check_export_format(fmt: str) -> None:
    """Refuse an export format that is not one of ``EXPORT_FORMATS``."""
    if fmt not in EXPORT_FORMATS:
        raise AnnotationError(f"export format must be {', '.join(EXPORT_FORMATS[:-1])} or {EXPORT_FORMATS[-1]}, "
                              f"got {short(fmt)}")


def copy_of(inst: Instances, i: int) -> MaskCrop:
    """Instance ``i``'s mask crop, copied: a record must not keep a segmenter's arrays alive."""
    m = inst.crop(i)
    return MaskCrop(m.crop.copy(), m.origin)


def runs(m: MaskCrop) -> dict[str, Any]:
    return mask_to_runs(m.crop, m.origin)


#: an image of the session: ``(path relative to the served folder, frame, file version)``,
#: the version being :meth:`ImageFolder.version <sam_detect.ui.images.ImageFolder.version>`'s
#: ``(mtime_ns, size)``: masks made on a file written over since are not the new file's
ImageKey = tuple[str, int, tuple[int, int]]


@dataclass
class Candidate:
    """A mask the page may accept: from a click/box prompt or from detection."""

    id: str
    image_key: ImageKey
    mask: MaskCrop
    source: str  # "prompt" | "detection"
    label: str | None = None
    confidence: float | None = None
    similarity: float | None = None
    neighbours: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Annotation:
    """One object of an image as the session knows it.

    ``kind``: ``"example"`` (in the library, with ``example_ids``), ``"detection"`` (found by
    detect, not yet confirmed) or ``"negative"`` (stored as a negative example; not exported).
    """

    id: str
    mask: MaskCrop
    label: str
    kind: str
    confidence: float | None = None
    example_ids: list[str] = field(default_factory=list)
    candidate_id: str | None = None


@dataclass
class Action:
    """One undoable step: examples written to a library plus the annotations before it."""

    description: str
    library: str
    example_ids: list[str]
    image_key: ImageKey | None
    before: list[Annotation] | None
    view: View | None = None
    #: examples the step replaced (relabelled): ``(annotation id, mask, old label, old ids)``
    replaced: list[tuple[str, MaskCrop, str, list[str]]] = field(default_factory=list)


def candidate_json(c: Candidate) -> dict[str, Any]:
    return {
        "id": c.id,
        "source": c.source,
        "box": list(c.mask.box),
        "area": c.mask.area,
        "mask": runs(c.mask),
        "label": c.label,
        "confidence": c.confidence,
        "similarity": c.similarity,
        "neighbours": c.neighbours,
    }

def annotation_json(a: Annotation, candidates: dict[str, Candidate]) -> dict[str, Any]:
    from sam_detect.outputs import label_color

    cand = candidates.get(a.candidate_id) if a.candidate_id else None
    return {
        "id": a.id,
        "kind": a.kind,
        "label": a.label,
        "color": list(label_color(a.label)),
        "confidence": None if a.confidence is None else round(a.confidence, 4),
        "similarity": None
        if cand is None or cand.similarity is None
        else round(cand.similarity, 4),
        "neighbours": cand.neighbours if cand is not None and a.kind == "detection" else [],
        "candidate": a.candidate_id if a.candidate_id in candidates else None,
        "example_ids": a.example_ids,
        "box": list(a.mask.box),
        "area": a.mask.area,
        "mask": runs(a.mask),
    }


def export_file(instances: Instances, fmt: str, stem: str, image_name: str,
                categories: Sequence[str] = ()) -> tuple[bytes, str, str]:
    """An image's objects as a file: ``coco`` (JSON, RLE masks; ``categories``: the library's
    classes, numbered with the image's other labels as ``detect --coco`` numbers them), ``labelme`` (JSON),
    ``geojson`` (outlines and classes, for QuPath) or ``labels`` (label image: 16-bit PNG, ids
    1..N in order). Returns ``(data, media type, file name)``; the name is
    ``STEM_FORMAT.EXT``."""
    from sam_detect.formats import instances_to_label_image, to_coco, to_geojson, to_labelme

    check_export_format(fmt)
    if fmt == "coco":
        # RLE, each mask exact, as detect --coco writes it: polygons simplified by a pixel came
        # back ~1% larger (IoU 0.96-0.99 with the label image), fatter ground truth for eval -a
        doc = to_coco(instances, [image_name], categories=categories, use_rle=True)
        return json.dumps(doc).encode(), "application/json", f"{stem}_coco.json"
    if fmt == "labelme":
        doc = to_labelme(instances, image_name)
        return json.dumps(doc, indent=1).encode(), "application/json", f"{stem}_labelme.json"
    if fmt == "geojson":
        return json.dumps(to_geojson(instances)).encode(), "application/geo+json", f"{stem}.geojson"
    lab = instances_to_label_image(instances, dtype=np.uint16 if len(instances) < 65535 else np.uint32)
    if lab.dtype == np.uint32:
        raise AnnotationError(f"{len(instances)} objects do not fit a 16-bit label PNG")
    return encode_png(lab), "image/png", f"{stem}_labels.png"
