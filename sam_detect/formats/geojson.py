"""GeoJSON: what QuPath (and other slide viewers) import and export, one image per file.

A ``FeatureCollection`` (or a list of ``Feature`` objects, or one ``Feature``) whose
``Polygon`` / ``MultiPolygon`` geometries are outlines in pixel coordinates (``x`` to the
right, ``y`` down). An object's label is its ``properties.classification.name`` (QuPath's),
else ``classification`` as a string, ``name`` or ``label``. Holes are cut out; features of
other geometries (points, lines) are skipped and counted. GeoJSON carries no image size:
reading needs the image's ``(H, W)``.

Vertices lie on pixel corners, both ways, as QuPath puts them: pixel ``(r, c)`` is the
square ``x`` in ``c..c+1``, ``y`` in ``r..r+1``, and a polygon holds the pixels whose centres
it encloses. Written: one ``Feature`` per object (``Polygon``, or ``MultiPolygon`` for an
object in pieces; holes as inner rings; the exterior counter-clockwise and holes clockwise by
the numbers, as RFC 7946 wants) with ``properties`` ``{"objectType": "detection",
"classification": {"name", "color"}, "measurements": {"confidence", "similarity"}}``, rings
closed, outlined on the pixels' edges (:func:`sam_detect.masks.edge_outlines`): read back,
here or in QuPath, every pixel is as it was. A collection with no feature reads back as no
object. A stack's frame is written as QuPath writes an object's place in a stack: each
geometry's ``plane`` (``{"c": -1, "z", "t"}``), and the collection's ``frame``; read from
the ``frame``, else from the one ``plane`` of every geometry (QuPath writes no ``frame``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sam_detect.errors import AnnotationError
from sam_detect.formats._common import DEFAULT_LABEL, PathLike, label_str, write_json
from sam_detect.instances import Instances

SUFFIX = ".geojson"


def is_geojson(doc: Any) -> bool:
    """Whether a parsed JSON document is GeoJSON features."""
    if isinstance(doc, dict):
        return doc.get("type") in ("FeatureCollection", "Feature")
    return isinstance(doc, list) and bool(doc) and all(isinstance(f, dict) and f.get("type") == "Feature" for f in doc)


def _features(doc: Any) -> list[dict]:
    if isinstance(doc, list):
        return doc
    if doc.get("type") == "Feature":
        return [doc]
    features = doc.get("features")
    if not isinstance(features, list):
        raise AnnotationError("a FeatureCollection needs a 'features' list")
    return features


def _class_name(cls: dict) -> str | None:
    """A QuPath classification's name: a derived class's parts joined as QuPath shows them
    ("Tumor: Positive"), from its ``names`` (QuPath 0.4 on) or its ``parentClass`` chain
    (before); its ``name`` alone dropped the parent, and ``names`` alone was not read."""
    names = cls.get("names")
    if isinstance(names, list) and names and all(isinstance(n, str) and n for n in names):
        return ": ".join(names)
    if not cls.get("name"):
        return None
    parts, node = [], cls
    while isinstance(node, dict) and node.get("name") and len(parts) < 16:
        parts.append(str(node["name"]))
        node = node.get("parentClass")
    return ": ".join(reversed(parts))


def _label_of(props: Any) -> str | None:
    if not isinstance(props, dict):
        return None
    cls = props.get("classification")
    name = _class_name(cls) if isinstance(cls, dict) else None
    if name:
        return name
    if isinstance(cls, str) and cls:
        return cls
    for key in ("name", "label"):
        if props.get(key):
            return str(props[key])
    return None


def _rings(geometry: Any, k: int) -> list[list[np.ndarray]] | None:
    """``[[exterior, hole, ...], ...]`` of a ``Polygon`` or ``MultiPolygon``; ``None`` for
    another geometry."""
    if not isinstance(geometry, dict):
        raise AnnotationError(f"feature #{k}: no geometry")
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    if kind == "Polygon":
        polys = [coords]
    elif kind == "MultiPolygon":
        polys = coords
    else:
        return None
    out = []
    for poly in polys or []:
        rings = [_positions(r, k) for r in poly]
        if not rings or len(rings[0]) < 3:
            raise AnnotationError(f"feature #{k}: a polygon ring needs at least 3 points")
        if not all(np.isfinite(r).all() for r in rings):
            raise AnnotationError(f"feature #{k}: coordinates must be finite numbers")
        out.append(rings)
    return out


def _positions(ring: Any, k: int) -> np.ndarray:
    """``(K, 2)`` x, y of a ring's positions; a third (or further) number of a position, an
    altitude (RFC 7946 allows it), is left out."""
    try:
        arr = np.asarray(ring, np.float64)
    except (TypeError, ValueError):
        raise AnnotationError(f"feature #{k}: a ring's positions are lists of 2 or 3 numbers") from None
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise AnnotationError(f"feature #{k}: a ring's positions are lists of 2 or 3 numbers, got shape {arr.shape}")
    return arr[:, :2]


def _crop(polys: list[list[np.ndarray]], hw: tuple[int, int]):
    """A :class:`~sam_detect.masks.MaskCrop` of the pixels whose centres lie inside an
    exterior and outside its holes (vertices on pixel corners, as QuPath draws them)."""
    from sam_detect.masks import MaskCrop, fill_edge_rings

    h, w = hw
    allp = np.concatenate([p[0] for p in polys])
    x0, y0 = max(int(np.floor(allp[:, 0].min())), 0), max(int(np.floor(allp[:, 1].min())), 0)
    x1, y1 = min(int(np.ceil(allp[:, 0].max())), w), min(int(np.ceil(allp[:, 1].max())), h)
    if x1 <= x0 or y1 <= y0:
        return MaskCrop.empty()
    out = np.zeros((y1 - y0, x1 - x0), bool)
    for rings in polys:
        out |= fill_edge_rings(rings, out.shape, (x0, y0))
    return MaskCrop(out, (x0, y0))


def _outside(polys: list[list[np.ndarray]], hw: tuple[int, int]) -> bool:
    """Whether a feature's outline lies wholly beyond the image's edges."""
    allp = np.concatenate([p[0] for p in polys])
    return bool(allp[:, 0].min() >= hw[1] or allp[:, 1].min() >= hw[0] or allp[:, 0].max() <= 0
                or allp[:, 1].max() <= 0)


def _measured(properties: Any, name: str) -> float | None:
    """A feature's measurement ``name``: QuPath writes ``{"name": value}`` (and older versions a
    list of ``{"name", "value"}``); ``None`` where it has none."""
    found = (properties or {}).get("measurements") if isinstance(properties, dict) else None
    if isinstance(found, list):
        found = {m.get("name"): m.get("value") for m in found if isinstance(m, dict)}
    value = found.get(name) if isinstance(found, dict) else None
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _plane_of(features: list) -> dict[str, int] | None:
    """The one ``geometry.plane`` (QuPath's ``{"c", "z", "t"}``) that the features lie on;
    ``None`` where none says one, or they lie on several (QuPath leaves out the first plane's)."""
    planes, said = set(), False
    for f in features:
        geometry = f.get("geometry") if isinstance(f, dict) else None
        plane = geometry.get("plane") if isinstance(geometry, dict) else None
        said |= plane is not None
        plane = plane if isinstance(plane, dict) else {}
        z, t = plane.get("z", 0), plane.get("t", 0)
        planes.add((z, t) if _index(z) and _index(t) else None)
    if not said or len(planes) != 1 or None in planes:
        return None
    z, t = planes.pop()
    return {"c": -1, "z": z, "t": t}


def _frame_of(doc: Any, inst: Instances) -> Instances:
    """``inst`` with ``metadata["frame"]`` where the collection says which frame of a stack
    it outlines (:func:`to_geojson` writes it): ``add --frame K`` takes it for frame K only,
    as a COCO file's records are (frame 3's outlines were taken for frame 0 without a word).
    A file without it (QuPath's) says it in its geometries' ``plane``: the frame is its ``t``,
    or its ``z`` where ``t`` is 0 (a z-stack's, as :attr:`~sam_detect.io.images.LoadedImage.plane`
    puts it); a plane with both (a hyperstack's) names no frame without the stack's axes."""
    frame = doc.get("frame") if isinstance(doc, dict) else None
    plane = _plane_of(_features(doc))
    if plane is not None:
        inst.metadata["plane"] = plane  # written back as read
    if not _index(frame) and plane is not None and 0 in (plane["z"], plane["t"]):
        frame = plane["z"] or plane["t"]
    if _index(frame):
        inst.metadata["frame"] = frame
    return inst


def read_geojson(path: Path, doc: Any, image_shape: Sequence[int] | None, label: str | None) -> Instances:
    """The ``Instances`` of a GeoJSON document on an image of ``image_shape``."""
    if image_shape is None:
        raise AnnotationError("GeoJSON carries no image size; pass image_shape (H, W) (the CLI passes the image's)")
    hw = (int(image_shape[0]), int(image_shape[1]))
    crops, labels, skipped, unnamed, cells, outside = [], [], 0, [], 0, 0
    confidences: list[float | None] = []  # measurements.confidence, similarity: sam-detect's (and QuPath's)
    similarities: list[float | None] = []
    features = _features(doc)
    if not features:  # a collection with no object (one written for an image where nothing was found)
        inst = Instances.empty(hw)
        inst.metadata.update({"format": "geojson", "image": 0, "skipped": 0})
        return _frame_of(doc, inst)
    for k, feature in enumerate(features):
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            raise AnnotationError(f"item #{k}: not a GeoJSON Feature")
        geometry = feature.get("geometry")
        polys = None if geometry is None else _rings(geometry, k)  # null: a feature without a place (RFC 7946)
        if polys is None:
            skipped += 1
            continue
        crop = _crop(polys, hw)
        if not crop.area:
            skipped += 1  # outside the image, or too thin to hold a pixel
            outside += _outside(polys, hw)
            continue
        crops.append(crop)
        confidences.append(_measured(feature.get("properties"), "confidence"))
        similarities.append(_measured(feature.get("properties"), "similarity"))
        named = label or _label_of(feature.get("properties"))
        if not named:
            unnamed.append(len(crops) - 1)
        cells += feature.get("nucleusGeometry") is not None  # QuPath's cells: the outline is the cell's
        labels.append(named or DEFAULT_LABEL)
    if not crops:
        raise AnnotationError("no polygon in the GeoJSON lies on the image"
                              + (f" ({skipped} feature(s) of other geometries or outside it)" if skipped else ""))
    data: dict[str, Any] = {"source_id": np.arange(len(crops), dtype=np.int64)}
    if all(v is not None for v in similarities):
        data["similarity"] = np.array(similarities, np.float32)
    inst = Instances.from_crops(crops, None, hw, labels=labels, data=data,
                                label_confidences=np.array([v or 0.0 for v in confidences], np.float32))
    inst.metadata.update({"format": "geojson", "image": 0, "skipped": skipped})
    _frame_of(doc, inst)
    if outside:  # a file made for another (larger) image: its objects here are only those that fit
        import logging

        logging.getLogger("sam_detect").warning(
            "%s: %d of %d outline(s) lie outside the %dx%d image: left out (was the file made for this image?)",
            Path(path).name, outside, len(features), hw[1], hw[0])
    if unnamed:  # outlines without a class (labelled DEFAULT_LABEL): `add` does not take them for a class
        inst.metadata["unnamed"] = unnamed  # their indices
    if cells:
        inst.metadata["cells"] = cells
    return inst


def _right_hand(rings: list[np.ndarray]) -> list[np.ndarray]:
    """``[exterior, hole, ...]`` turned as RFC 7946 (3.1.6) wants them: the exterior
    counter-clockwise and each hole clockwise by the numbers as written (a positive, and a
    negative, shoelace area with ``y`` taken upwards, as shapely, turf and geojson-rewind
    reckon it; on an image, ``y`` down, the exterior runs clockwise on screen). OpenCV traces
    them the other way round, and validators flagged every feature."""
    def area(r: np.ndarray) -> float:
        x, y = r[:, 0].astype(np.float64), r[:, 1].astype(np.float64)
        return float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))

    return [r if (area(r) > 0) == (k == 0) else np.concatenate([r[:1], r[:0:-1]]) for k, r in enumerate(rings)]


def to_geojson(instances: Instances, *, tolerance: float = 0.0) -> dict[str, Any]:
    """A ``FeatureCollection`` of the instances, one feature per object, outlined on its
    pixels' edges (:func:`sam_detect.masks.edge_outlines`; ``tolerance`` > 0 simplifies them).
    Instances of a stack's frame (``metadata["frame"]``) give the collection that ``frame`` and
    each geometry the ``plane`` QuPath reads (``{"c": -1, "z", "t"}``: ``metadata["plane"]``,
    :attr:`~sam_detect.io.images.LoadedImage.plane`, else ``t`` the frame), so that QuPath puts
    each object on its frame, not on the first."""
    from sam_detect.masks import edge_outlines
    from sam_detect.outputs import label_color

    features = []
    frame = instances.metadata.get("frame")
    # a stack's frame: QuPath reads an object's plane from its geometry (c -1: every channel)
    plane = instances.metadata.get("plane") or (None if frame is None else {"c": -1, "z": 0, "t": int(frame)})
    sim = instances.data.get("similarity")
    confident = bool(np.any(instances.label_confidences))
    for i in range(len(instances)):
        m = instances.crop(i)
        pieces = [[[[round(float(x), 2), round(float(y), 2)] for x, y in (*r, r[0])]  # closed
                   for r in _right_hand(rings)] for rings in edge_outlines(m.crop, m.origin, tolerance)]
        if not pieces:
            continue
        geometry = ({"type": "Polygon", "coordinates": pieces[0]} if len(pieces) == 1
                    else {"type": "MultiPolygon", "coordinates": pieces})
        if plane is not None:
            geometry["plane"] = {k: int(plane[k]) for k in ("c", "z", "t")}
        name = label_str(instances.labels[i])
        # annotations without confidences (ground truth, all 0) carry none: QuPath would show 0 as measured
        measurements = {"confidence": round(float(instances.label_confidences[i]), 4)} if confident else {}
        if sim is not None:
            measurements["similarity"] = round(float(sim[i]), 4)
        properties = {"objectType": "detection", "classification": {"name": name, "color": list(label_color(name))}}
        if measurements:
            properties["measurements"] = measurements
        features.append({"type": "Feature", "geometry": geometry, "properties": properties})
    doc: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    if frame is not None:  # as a COCO image record says it (readers of GeoJSON ignore it)
        doc["frame"] = int(frame)
    return doc


def save_geojson(instances: Instances, path: PathLike, *, tolerance: float = 0.0) -> Path:
    """Write :func:`to_geojson` to ``path``."""
    path = Path(path)
    write_json(path, to_geojson(instances, tolerance=tolerance))
    return path


__all__ = ["SUFFIX", "is_geojson", "read_geojson", "save_geojson", "to_geojson"]
