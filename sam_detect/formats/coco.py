"""COCO instance JSON (``images``, ``annotations``, ``categories``): polygons, compressed or
uncompressed RLE; an annotation with only a ``bbox`` becomes a filled box mask. ``bbox`` is
COCO's XYWH, made here at the edge from the XYXY boxes inside.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sam_detect.errors import AnnotationError
from sam_detect.formats._common import (
    DEFAULT_LABEL,
    PathLike,
    image_names_of,
    label_str,
    write_json,
)
from sam_detect.instances import Instances


def is_coco(doc: Any) -> bool:
    """Whether a JSON document is COCO instance annotations."""
    return isinstance(doc, dict) and "annotations" in doc and ("images" in doc or "categories" in doc)


def segmentation(crop: np.ndarray, origin: tuple[int, int], hw: tuple[int, int], tolerance: float = 1.0,
                 use_rle: bool = False) -> list | dict:
    """One mask's COCO ``segmentation``: its outer outlines as polygons, vertices on pixel
    corners, as pycocotools reads them (it fills them back to the mask where ``tolerance`` is
    0: :func:`~sam_detect.masks.crop_to_edge_polygons`), simplified with ``tolerance``
    pixels; or compressed RLE with ``use_rle``, or where polygons cannot say the mask (a hole,
    which COCO's polygons fill)."""
    from sam_detect.masks import crop_to_edge_polygons, crop_to_rle

    polys = None if use_rle else crop_to_edge_polygons(crop, origin, tolerance=tolerance)
    if polys:
        return [p.reshape(-1).astype(float).round(2).tolist() for p in polys]
    return crop_to_rle(crop, origin, hw)


def centre_vertices(doc: Any) -> bool:
    """Whether a COCO document's polygons have their vertices on pixel centres: written by
    sam-detect before its polygons followed pycocotools (``info`` says ``sam-detect`` and no
    ``version``; read with OpenCV's fill, as written)."""
    info = doc.get("info") if isinstance(doc, dict) else None
    return isinstance(info, dict) and info.get("description") == "sam-detect" and "version" not in info


def with_corner_vertices(doc: dict) -> dict:
    """``doc`` itself, its polygons moved to pixel corners where they lie on pixel centres
    (:func:`centre_vertices`; each mask kept exactly) and its ``info`` given a ``version``,
    so that it reads as it was written once annotations in today's convention join it. An
    annotation whose image lacks a size, or whose polygons do not read, is left as it is."""
    from sam_detect import __version__

    if not centre_vertices(doc):
        return doc
    sizes = {img.get("id"): (int(img["height"]), int(img["width"])) for img in doc.get("images") or []
             if "height" in img and "width" in img}
    for ann in doc.get("annotations") or []:
        hw = sizes.get(ann.get("image_id"))
        if hw is None or not isinstance(ann.get("segmentation"), list) or not ann["segmentation"]:
            continue
        try:
            m = annotation_mask(ann, hw, "", use_bbox=False, centres=True)
        except AnnotationError:
            continue
        ann["segmentation"] = segmentation(m.crop, m.origin, hw, tolerance=0)
    doc["info"]["version"] = __version__
    return doc


def to_coco(
    items: Instances | Sequence[Instances],
    image_names: Sequence[str] | None = None,
    *,
    use_rle: bool = False,
    tolerance: float = 1.0,
    keep_empty: bool = False,
    description: str = "sam-detect",
    categories: Sequence[str] = (),
) -> dict[str, Any]:
    """A COCO instance-segmentation dict for one or several images.

    Segmentations are polygons with their vertices on pixel corners, as pycocotools reads
    them (simplified with ``tolerance`` pixels), or, with ``use_rle`` or where polygons
    cannot say the mask (a hole, which COCO's polygons fill), compressed RLE
    (:func:`segmentation`); empty masks are left out unless ``keep_empty`` (then they have
    area 0 and an empty RLE).
    ``bbox`` is COCO's XYWH. Each annotation carries ``score``: the instance's label
    confidence if it has a label, else its segmenter score. Category ids follow the sorted
    class names, from 1: ``categories`` (a library's classes) and any other label found, so that
    files written for other images, where other classes were found, share their ids.
    ``image_names`` default to ``metadata["image_name"]``; an image record carries ``frame``
    (not a COCO field; readers ignore it) where the instances' ``metadata["frame"]`` says
    which frame of a stack they are.
    """
    from sam_detect import __version__

    items = [items] if isinstance(items, Instances) else list(items)
    image_names = image_names_of(image_names)
    if image_names is None:
        image_names = [
            str(it.metadata.get("image_name") or f"image_{i:05d}.png") for i, it in enumerate(items)
        ]
    if len(image_names) != len(items):
        raise AnnotationError(f"to_coco: {len(items)} images but {len(image_names)} names")
    names = sorted({label_str(lab) for it in items for lab in it.labels} | {label_str(c) for c in categories})
    cat_ids = {n: i + 1 for i, n in enumerate(names)}
    images, annotations = [], []
    for img_id, (it, name) in enumerate(zip(items, image_names, strict=True), start=1):
        h, w = it.image_hw
        images.append({"id": img_id, "file_name": str(name), "height": int(h), "width": int(w)})
        if it.metadata.get("frame") is not None:  # a stack's frame: its file name alone names every frame
            images[-1]["frame"] = int(it.metadata["frame"])
        for i, m in enumerate(it.crops):
            area = m.area
            if area == 0 and not keep_empty:
                continue
            x1, y1, x2, y2 = (float(v) for v in it.boxes[i])
            seg = segmentation(m.crop, m.origin, (h, w), tolerance=tolerance, use_rle=use_rle)
            lab = it.labels[i]
            score = float(it.label_confidences[i]) if lab is not None else float(it.scores[i])
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": img_id,
                    "category_id": cat_ids[label_str(lab)],
                    "segmentation": seg,
                    "area": area,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "iscrowd": 0,
                    "score": round(score, 4),
                }
            )
    return {
        "info": {"description": description, "version": __version__},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": n, "supercategory": ""} for n, i in cat_ids.items()],
    }


def save_coco(
    items: Instances | Sequence[Instances],
    path: PathLike,
    image_names: Sequence[str] | None = None,
    *,
    use_rle: bool = False,
    tolerance: float = 1.0,
) -> Path:
    """Write :func:`to_coco` as JSON to ``path``."""
    return write_json(path, to_coco(items, image_names, use_rle=use_rle, tolerance=tolerance))


def annotation_mask(ann: dict, hw: tuple[int, int], where: str, *, use_bbox: bool = True,
                    centres: bool = False) -> Any:
    """The :class:`~sam_detect.masks.MaskCrop` of one COCO annotation of an ``hw`` image: its
    RLE or polygons (filled as pycocotools fills them; ``centres``: their vertices on pixel
    centres, :func:`centre_vertices`), else (``use_bbox``) its filled ``bbox``; ``None`` when
    it has none."""
    from sam_detect.masks import (
        MaskCrop,
        box_to_crop,
        coco_polygons_to_crop,
        polygons_to_crop,
        rle_to_mask,
    )

    seg = ann.get("segmentation")
    prefix = f"{where}: " if where else ""
    if isinstance(seg, dict):
        try:
            m = rle_to_mask(seg)  # one full-image mask at a time, kept as its crop
        except AnnotationError as e:
            raise AnnotationError(f"{prefix}{e}") from e
        if m.shape != tuple(hw):
            raise AnnotationError(f"{prefix}RLE size {list(m.shape)} but the image is {hw[0]}x{hw[1]} (HxW)")
        return MaskCrop.from_full(m)
    if isinstance(seg, list) and seg:
        polys = [np.asarray(p, dtype=np.float64) for p in seg]
        return polygons_to_crop(polys, hw) if centres else coco_polygons_to_crop(polys, hw)
    if use_bbox and ann.get("bbox") is not None:
        x, y, bw, bh = (float(v) for v in ann["bbox"])
        return box_to_crop((x, y, x + bw, y + bh), hw)
    return None


def _source_id(value: Any, index: int) -> int:
    """An annotation's ``id`` as an integer (``source_id``); its place in the image's list where
    the id is none (a tool's UUID string)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return index


def check_image_ids(images: list[dict]) -> None:
    """Refuse two ``images`` of one id (files merged by concatenating their lists): an
    annotation of that id would be either image's, and was taken as both's."""
    seen: dict[Any, Any] = {}
    for img in images:
        if not isinstance(img.get("id"), (int, str)):  # no id, or none an annotation can name: said elsewhere
            continue
        name = img.get("file_name", img["id"])
        if img["id"] in seen:
            raise AnnotationError(f"images {str(seen[img['id']])!r} and {str(name)!r} share id {img['id']}: an "
                                  "annotation's image_id must name one image; give each its own id")
        seen[img["id"]] = name


def read_coco(path: Path, doc: dict, label: str | None) -> list[Instances]:
    """One ``Instances`` per image of a COCO document (``path`` names it in messages)."""
    images = doc.get("images") or []
    centres = centre_vertices(doc)
    check_image_ids(images)
    cats: dict[Any, str] = {}
    for c in doc.get("categories") or []:  # a category listed twice under one name is one category
        if cats.setdefault(c["id"], str(c["name"])) != str(c["name"]):
            raise AnnotationError(f"categories {cats[c['id']]!r} and {str(c['name'])!r} share id {c['id']}: an "
                                  "annotation's category_id must name one category; give each its own id")
    by_image: dict[Any, list[dict]] = {}
    for k, ann in enumerate(doc["annotations"]):
        if "image_id" not in ann:
            raise AnnotationError(f"annotation #{k} has no 'image_id'")
        by_image.setdefault(ann["image_id"], []).append(ann)
    known = {img["id"] for img in images}
    missing = sorted(set(by_image) - known, key=str)
    if missing:
        raise AnnotationError(
            f"annotations refer to image id(s) {missing[:5]} missing from 'images'"
        )
    out = []
    for img in images:
        if "height" not in img or "width" not in img:
            raise AnnotationError(
                f"image {img.get('id')} ({img.get('file_name')}) lacks 'height'/'width'"
            )
        h, w = int(img["height"]), int(img["width"])
        masks, labels, ids, scores, confidences = [], [], [], [], []  # box crops: never (N, H, W)
        unnamed: list[int] = []
        crowd = 0
        for i, ann in enumerate(by_image.get(img["id"], [])):
            where = f"annotation {ann.get('id', i)} of image {img['id']}"
            if ann.get("iscrowd") in (1, True):  # a region of many objects (COCO, CVAT): no object of its own
                crowd += 1
                continue
            cid = ann.get("category_id")
            if cats and cid not in cats:
                raise AnnotationError(f"{where}: category_id {cid} is not in 'categories'")
            m = annotation_mask(ann, (h, w), where, centres=centres)
            if m is None:
                raise AnnotationError(f"{where}: no 'segmentation' and no 'bbox'")
            masks.append(m)
            if cid is None and not label:  # no category at all names no class (it was the class "None")
                unnamed.append(len(labels))
            labels.append(label or (DEFAULT_LABEL if cid is None else cats.get(cid, str(cid))))
            ids.append(_source_id(ann.get("id"), i))
            scores.append(float(ann.get("score", 1.0)))
            confidences.append(float(ann.get("score", 0.0)))  # a prediction's score is its label's confidence
        inst = Instances.from_crops(
            masks,
            None,
            (h, w),
            scores=np.asarray(scores, dtype=np.float32),
            labels=labels,
            label_confidences=np.asarray(confidences, dtype=np.float32),
            data={"source_id": np.asarray(ids, dtype=np.int64)},
        )
        inst.metadata.update(
            {"format": "coco", "image": str(img.get("file_name", img["id"])), "image_id": img["id"]}
        )
        if unnamed:  # `add` does not take them for a class of their own
            inst.metadata["unnamed"] = unnamed
        if crowd:
            inst.metadata["crowd"] = crowd
            import logging

            logging.getLogger("sam_detect").warning(
                "%s: %d crowd annotation(s) of %s (iscrowd 1: a region of many objects, as COCO marks them) left "
                "out: no object of their own", path.name, crowd, img.get("file_name", img["id"]))
        if isinstance(img.get("frame"), int):  # a stack's frame (detect --frame k --coco): chosen by it
            inst.metadata["frame"] = img["frame"]
        out.append(inst)
    if not out:
        raise AnnotationError("COCO file lists no images")
    return out
