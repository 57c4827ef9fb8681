"""Polygon files: JSON ``[[x, y], ...]`` (one polygon), a list of such polygons, a
``{label: polygon or [polygons]}`` dict, or ``[{"label": ..., "points": [[x, y], ...]}]``
(entries sharing a ``"group"`` and label: the parts of one object);
for a prompt also COCO-flat ``[x1, y1, x2, y2, ...]`` lists or a text file of ``x,y`` lines.
They carry no image size: pass ``image_shape``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sam_detect.errors import AnnotationError
from sam_detect.formats._common import DEFAULT_LABEL, PathLike, label_str, warn_untraced, write_json
from sam_detect.instances import Instances


def _is_point(p: Any) -> bool:
    return (
        isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(v, (int, float)) for v in p)
    )


def _is_polygon(p: Any) -> bool:
    return isinstance(p, (list, tuple)) and len(p) > 0 and all(_is_point(q) for q in p)


def read_polygons(
    path: Path, doc: Any, image_shape: Sequence[int] | None, label: str | None
) -> Instances:
    """The ``Instances`` of a polygon-list JSON document on an image of ``image_shape``."""
    from sam_detect.masks import polygons_to_crop

    if image_shape is None:
        raise AnnotationError(
            "a plain polygon list carries no image size; pass image_shape (H, W) "
            "(the CLI passes the image's size)"
        )
    hw = (int(image_shape[0]), int(image_shape[1]))
    entries: list[tuple[str, Any, Any]] = []  # (label, points, group: the parts of one object share it)
    if isinstance(doc, dict):
        for name, value in doc.items():
            if _is_polygon(value):
                entries.append((str(name), value, None))
            elif isinstance(value, list) and all(_is_polygon(v) for v in value):
                entries.extend((str(name), v, None) for v in value)
            else:
                raise AnnotationError(
                    f"label {name!r}: expected a polygon [[x, y], ...] or a list of polygons"
                )
    elif _is_polygon(doc):
        entries.append((DEFAULT_LABEL, doc, None))
    elif isinstance(doc, list):
        for k, item in enumerate(doc):
            if _is_polygon(item):
                entries.append((DEFAULT_LABEL, item, None))
            elif isinstance(item, dict) and ("points" in item or "polygon" in item):
                pts = item.get("points", item.get("polygon"))
                if not _is_polygon(pts):
                    raise AnnotationError(f"item #{k}: 'points' must be [[x, y], ...]")
                entries.append((str(item.get("label", DEFAULT_LABEL)), pts, item.get("group")))
            else:
                raise AnnotationError(
                    f"item #{k}: expected a polygon [[x, y], ...] or {{'label': ..., 'points': [[x, y], ...]}}"
                )
    else:
        raise AnnotationError(
            "unrecognised JSON: expected COCO (images/annotations/categories), labelme (shapes) "
            "or a polygon list"
        )
    objects: dict[Any, tuple[str, Any]] = {}  # the parts of one object (one "group") as one crop
    for k, (name, pts, group) in enumerate(entries):
        key = ("g", group, name) if group is not None else ("p", k)
        crop = polygons_to_crop([np.asarray(pts, dtype=np.float64)], hw)
        objects[key] = (name, objects[key][1].union(crop) if key in objects else crop)
    inst = Instances.from_crops(
        [crop for _, crop in objects.values()],
        None,
        hw,
        labels=[label or name for name, _ in objects.values()],
        data={"source_id": np.arange(len(objects), dtype=np.int64)},
    )
    inst.metadata.update({"format": "polygons", "image": 0})
    return inst


def read_polygon_file(path: PathLike) -> list:
    """The polygons of a prompt file: JSON (``[[x, y], ...]``, a list of those, or COCO-flat
    lists) or a text file of ``x,y`` lines (a blank line separates polygons)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:  # an image or other binary file given as --polygon
        raise AnnotationError(f"{path}: not a polygon file (binary data, not text): expected JSON "
                              "([[x, y], ...]) or a text file of x,y lines") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        polys, cur = [], []
        for line in text.splitlines():
            line = line.strip()
            if not line:
                if cur:
                    polys.append(cur)
                cur = []
                continue
            try:
                x, y = (float(v) for v in line.replace(";", ",").replace(" ", ",").split(",") if v)
            except ValueError as e:
                raise AnnotationError(f"{path}: cannot read polygon line {line!r} (expected x,y)") from e
            cur.append([x, y])
        if cur:
            polys.append(cur)
        if not polys:
            raise AnnotationError(f"{path}: holds no polygon: expected JSON ([[x, y], ...]) or a text file of "
                                  "x,y lines") from None
        return polys
    if isinstance(data, list) and data and isinstance(data[0], (int, float)):
        return [data]  # one COCO-flat polygon
    if isinstance(data, list) and data and _is_point(data[0]):
        return [data]  # one polygon of points
    if isinstance(data, list) and data:
        return data
    if isinstance(data, list):
        raise AnnotationError(f"{path}: holds no polygon (an empty list): expected [[x, y], ...]")
    raise AnnotationError(f"{path}: expected a JSON list of [x, y] points or of polygons")


def save_polygons(instances: Instances, path: PathLike, *, tolerance: float = 1.0) -> Path:
    """Write ``[{"label": ..., "points": [[x, y], ...]}]``, one entry per connected part, the
    parts of an object in pieces sharing a ``"group"`` (read back as one object, as labelme's
    ``group_id``); an object of one or two pixels, too small to trace, is left out with a warning."""
    from sam_detect.masks import crop_to_polygons

    out, lost = [], 0
    for i, m in enumerate(instances.crops):
        polys = crop_to_polygons(m.crop, m.origin, instances.image_hw, tolerance=tolerance)
        lost += not polys and m.area > 0
        group = {"group": i + 1} if len(polys) > 1 else {}
        out += [{"label": label_str(instances.labels[i]), "points": p.astype(float).round(2).tolist(), **group}
                for p in polys]
    if lost:
        warn_untraced(lost, "polygon list")
    return write_json(path, out, indent=1)
