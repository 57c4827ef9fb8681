"""labelme JSON (``shapes``): ``polygon``, ``rectangle``, ``circle`` and ``mask`` shapes; shapes
sharing a ``group_id`` and label form one instance. ``point``/``line`` shapes are skipped with
a warning (they outline no area). Written as one ``polygon`` shape per connected part.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PureWindowsPath
from typing import Any

import numpy as np

from sam_detect.errors import AnnotationError
from sam_detect.formats._common import DEFAULT_LABEL, PathLike, label_str, warn_untraced, write_json
from sam_detect.instances import Instances
from sam_detect.masks import MaskCrop


def is_labelme(doc: Any) -> bool:
    """Whether a JSON document is a labelme file."""
    return isinstance(doc, dict) and "shapes" in doc


def to_labelme(
    instances: Instances, image_path: str | None = None, *, tolerance: float = 1.0
) -> dict[str, Any]:
    """A labelme (5.x) dict: one ``polygon`` shape per connected part of each mask.

    An instance made of several parts gets a shared ``group_id`` so it reads back as one.
    Holes are not represented (labelme polygons have none: the file's objects read back
    filled), nor objects of one or two pixels, too small to trace (a warning counts each kind;
    COCO writes them as RLE, GeoJSON on their pixels' edges with holes as inner rings).
    """
    from scipy.ndimage import binary_fill_holes

    from sam_detect.masks import crop_to_polygons

    h, w = instances.image_hw
    shapes = []
    lost = holed = filled = 0
    for i, m in enumerate(instances.crops):
        polys = crop_to_polygons(m.crop, m.origin, (h, w), tolerance=tolerance)
        lost += not polys and m.area > 0
        if polys and (gap := int(binary_fill_holes(m.crop).sum()) - int(np.count_nonzero(m.crop))):
            holed, filled = holed + 1, filled + gap
        group = i + 1 if len(polys) > 1 else None
        for p in polys:
            shapes.append(
                {
                    "label": label_str(instances.labels[i]),
                    "points": p.astype(float).round(2).tolist(),
                    "group_id": group,
                    "description": "",
                    "shape_type": "polygon",
                    "flags": {},
                }
            )
    if lost:
        warn_untraced(lost, "labelme")
    if holed:
        import logging

        logging.getLogger("sam_detect").warning(
            "%d object(s) with holes written without them to the labelme file (its polygons have none: "
            "%d pixels read back filled); COCO, GeoJSON and label images keep holes", holed, filled)
    return {
        "version": "5.4.1",
        "flags": {},
        "shapes": shapes,
        "imagePath": image_path or str(instances.metadata.get("image_name") or ""),
        "imageData": None,
        "imageHeight": h,
        "imageWidth": w,
    }


def save_labelme(
    instances: Instances, path: PathLike, image_path: str | None = None, *, tolerance: float = 1.0
) -> Path:
    """Write :func:`to_labelme` as JSON to ``path``."""
    return write_json(path, to_labelme(instances, image_path, tolerance=tolerance), indent=1)


def read_labelme(
    path: Path, doc: dict, image_shape: Sequence[int] | None, label: str | None
) -> Instances:
    """The ``Instances`` of a labelme document (``path`` names it in messages)."""
    from sam_detect.masks import polygons_to_crop

    if doc.get("imageHeight") and doc.get("imageWidth"):
        hw = (int(doc["imageHeight"]), int(doc["imageWidth"]))
    elif image_shape is not None:
        hw = (int(image_shape[0]), int(image_shape[1]))
    else:
        raise AnnotationError("labelme file lacks imageHeight/imageWidth; pass image_shape")
    groups: dict[Any, tuple[str, MaskCrop]] = {}  # masks as box crops: never (N, H, W)
    order: list[Any] = []
    skipped: dict[str, int] = {}
    unnamed: list[int] = []  # the objects whose shapes carry no label
    for k, shape in enumerate(doc["shapes"]):
        kind = shape.get("shape_type") or "polygon"
        pts = np.asarray(shape.get("points") or [], dtype=np.float64).reshape(-1, 2)
        raw = shape.get("label")
        # a shape without a name (no key, null, blank) names no class: "unnamed", as a GeoJSON
        # outline without a classification is (a null label was added as the class "None")
        named = raw is not None and bool(str(raw).strip())
        name = str(raw) if named else DEFAULT_LABEL
        where = f"shape #{k} ({name!r}, {kind})"
        if kind == "polygon":
            if len(pts) < 3:
                raise AnnotationError(f"{where}: a polygon needs at least 3 points, got {len(pts)}")
            m = polygons_to_crop([pts], hw)
        elif kind == "rectangle":
            if len(pts) != 2:
                raise AnnotationError(f"{where}: a rectangle needs 2 corner points, got {len(pts)}")
            (xa, ya), (xb, yb) = pts
            # its 4 corners as a polygon: both corner pixels inside, as labelme draws it and
            # as the same rectangle drawn as a polygon shape reads (it lost a row and a column)
            m = polygons_to_crop([np.array([[xa, ya], [xb, ya], [xb, yb], [xa, yb]], np.float64)], hw)
        elif kind == "circle":
            if len(pts) != 2:
                raise AnnotationError(
                    f"{where}: a circle needs centre and rim points, got {len(pts)}"
                )
            (cx, cy), (rx, ry) = pts
            m = _circle_crop(cx, cy, float(np.hypot(rx - cx, ry - cy)), hw)
        elif kind == "mask":
            m = _labelme_mask(shape, pts, hw, where)
        else:
            skipped[kind] = skipped.get(kind, 0) + 1
            continue
        gid = shape.get("group_id")
        key = ("g", gid, name) if gid is not None else ("s", k)
        if key in groups:
            groups[key] = (name, groups[key][1].union(m))
        else:
            groups[key] = (name, m)
            order.append(key)
            if not named:
                unnamed.append(len(order) - 1)
    if skipped:
        import logging

        points = " (clicks: give each with `sam-detect add --point X,Y`)" if "point" in skipped else ""
        logging.getLogger("sam_detect").warning(
            "%s: skipped %s shape(s): they outline no area%s", path.name,
            ", ".join(f"{v} {k}" for k, v in skipped.items()), points)
    inst = Instances.from_crops(
        [groups[k][1] for k in order],
        None,
        hw,
        labels=[label or groups[k][0] for k in order],
        data={"source_id": np.arange(len(order), dtype=np.int64)},
    )
    # the image the shapes were drawn on, relative to the file where not absolute (a Windows
    # labelme's with backslashes): ../images/a.png of labels/a.json is images/a.png
    image_path = str(doc.get("imagePath") or "").replace("\\", "/")
    if image_path and not (image_path.startswith("/") or PureWindowsPath(image_path).drive):
        image_path = os.path.normpath(path.parent / image_path)
    inst.metadata.update({"format": "labelme", "image": image_path or path.stem})
    if image_path:  # load_annotations matches it with the image given, as a COCO file's one image
        inst.metadata["image_path"] = image_path
    if unnamed and not label:  # `add` does not take them for a class of their own
        inst.metadata["unnamed"] = unnamed
    thumb = _embedded_thumb(doc.get("imageData"))
    if thumb is not None:  # the image the shapes were drawn on: check_drawn_on compares it
        inst.metadata["drawn_on"] = thumb
    return inst


#: the embedded image and the image given, as 32 x 32 grey thumbnails, correlate at least this
#: much where they are one image (a JPEG of it at quality 50: 0.9999, a gamma of 0.4: 0.98;
#: two frames of the HeLa movie one step apart: 0.87, the VOC photo mirrored: 0.33)
SAME_IMAGE = 0.9


def _thumb(grey: np.ndarray) -> np.ndarray | None:
    """A 32 x 32 thumbnail of a grey plane, zero mean and unit sd; ``None`` for a flat one
    (nothing to compare)."""
    import cv2

    t = cv2.resize(grey.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA)
    t -= t.mean()
    sd = float(t.std())
    return None if sd < 1e-3 else t / sd


def _planes(img: np.ndarray) -> list[np.ndarray]:
    """An image's grey readings: its colour mean and each colour channel (RGB order)."""
    if img.ndim == 2:
        return [img]
    rgb = img[..., :3].astype(np.float32)
    return [rgb.mean(axis=2), *(rgb[..., k] for k in range(rgb.shape[2]))]


def _embedded_thumb(data: Any) -> list | None:
    """The thumbnails (:func:`_thumb`) of a labelme file's ``imageData`` (a base64 PNG or
    JPEG): its colour mean and each channel; ``None`` where it has none or it does not decode."""
    if not isinstance(data, str) or not data:
        return None
    import base64
    import binascii

    import cv2

    try:
        img = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_UNCHANGED)
    except (binascii.Error, ValueError):
        return None
    if img is None or img.size == 0:
        return None
    if img.ndim == 3:  # OpenCV's BGR(A) as RGB, alpha dropped
        img = cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_BGR2RGB) if img.shape[2] >= 3 else img[..., 0]
    thumbs = [t for t in (_thumb(p) for p in _planes(img)) if t is not None]
    return thumbs or None


def check_drawn_on(inst: Instances, rgb: np.ndarray, name: str) -> None:
    """Raise :class:`AnnotationError` where a labelme file ``name`` embeds the image its shapes
    were drawn on and that is not ``rgb`` (a mirrored copy, another image of the same size):
    its shapes would land on other objects' pixels."""
    drawn = inst.metadata.get("drawn_on")
    given = [t for t in (_thumb(p) for p in _planes(np.asarray(rgb))) if t is not None]
    if not drawn or not given:  # nothing embedded, or a flat image: nothing to tell them apart by
        return
    # the best agreement of any reading of each (a channel read with --channel against the
    # embedded colour image's own channel, a one-colour image against its mean)
    r = max(float((a * b).mean()) for a in drawn for b in given)
    if r < SAME_IMAGE:
        raise AnnotationError(
            f"{name} embeds the image its shapes were drawn on (imageData), and it is not this image "
            f"(they correlate {r:.2f}): give the annotations with that image (or remove imageData from the file)")


def _circle_crop(cx: float, cy: float, r: float, hw: tuple[int, int]) -> MaskCrop:
    """The pixels within ``r`` of ``(cx, cy)``, computed over the circle's box only."""
    h, w = hw
    if not np.isfinite([cx, cy, r]).all():
        return MaskCrop.empty()
    x0, y0 = max(int(np.floor(cx - r)), 0), max(int(np.floor(cy - r)), 0)
    x1, y1 = min(int(np.ceil(cx + r)) + 1, w), min(int(np.ceil(cy + r)) + 1, h)
    if x1 <= x0 or y1 <= y0:
        return MaskCrop.empty()
    yy, xx = np.ogrid[y0:y1, x0:x1]
    return MaskCrop((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r, (x0, y0))


def _labelme_mask(shape: dict, pts: np.ndarray, hw: tuple[int, int], where: str) -> MaskCrop:
    """labelme's ``mask`` shape: a base64 PNG of the region between its two corner points."""
    import base64
    import io

    from PIL import Image

    if len(pts) != 2 or not shape.get("mask"):
        raise AnnotationError(f"{where}: a mask shape needs 2 corner points and base64 'mask' data")
    with Image.open(io.BytesIO(base64.b64decode(shape["mask"]))) as im:
        sub = np.asarray(im).astype(bool)
    if sub.ndim == 3:
        sub = sub.any(axis=2)
    x1, y1 = (int(round(v)) for v in pts[0])
    sh, sw = min(sub.shape[0], hw[0] - y1), min(sub.shape[1], hw[1] - x1)
    if x1 < 0 or y1 < 0 or sh <= 0 or sw <= 0:
        raise AnnotationError(
            f"{where}: mask region starts at {x1},{y1}, outside the {hw[1]}x{hw[0]} image"
        )
    return MaskCrop(sub[:sh, :sw], (x1, y1))
