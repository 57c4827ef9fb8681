"""Outputs other tools can read: per-object JSON records, COCO, overlays.

Boxes are XYXY inside the library; COCO's XYWH is produced here, at the edge.
"""

from __future__ import annotations

import colorsys
import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sam_detect.instances import Instances
from sam_detect.masks import crop_contours, crop_to_polygons, crop_to_rle


def instance_records(
    instances: Instances,
    *,
    polygons: bool = True,
    tolerance: float = 1.0,
    rle: bool = False,
    neighbours: bool = True,
) -> list[dict[str, Any]]:
    """One JSON-ready dict per instance: label, confidence, box (XYXY), area, centroid, polygons...

    ``polygons``: outlines as ``[[x, y], ...]`` lists simplified with ``tolerance`` pixels;
    ``rle``: COCO RLE of the mask as well. Both come from each mask's box crop: the work
    grows with the objects' areas, not with the number of objects times the image size.
    """
    records = []
    hw = instances.image_hw
    crops = instances.crops
    sim = instances.data.get("similarity")
    neigh = instances.data.get("neighbours")
    example = instances.data.get("example")
    areas = instances.areas
    for i in range(len(instances)):
        x1, y1, x2, y2 = (round(float(v), 2) for v in instances.boxes[i])
        m = crops[i]
        ys, xs = np.nonzero(m.crop)
        rec: dict[str, Any] = {
            "id": i,
            "label": instances.labels[i],
            "confidence": round(float(instances.label_confidences[i]), 4),
            "score": round(float(instances.scores[i]), 4),
            "box": [x1, y1, x2, y2],
            "area": int(areas[i]),
            # the mean of its pixels' centres (x right, y down); an empty mask has none
            "centroid": [round(float(xs.mean()) + m.origin[0], 2), round(float(ys.mean()) + m.origin[1], 2)]
            if len(xs) else None,
        }
        if sim is not None:
            rec["similarity"] = round(float(sim[i]), 4)
        if example is not None and example[i]:
            rec["example"] = True  # one of the library's examples, drawn on this image
        if polygons:
            rec["polygons"] = [np.round(p, 2).tolist() for p in crop_to_polygons(m.crop, m.origin, hw, tolerance)]
        if rle:
            rec["rle"] = crop_to_rle(m.crop, m.origin, hw)
        if neighbours and neigh is not None:
            rec["neighbours"] = neigh[i]
        records.append(rec)
    return records


def image_record(instances: Instances, image_path: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """A JSON-lines record for one image: path, size, counts per label, objects, timings."""
    counts: dict[str, int] = {}
    for lab in instances.labels:
        counts[str(lab)] = counts.get(str(lab), 0) + 1
    h, w = instances.image_hw
    md = instances.metadata
    return {
        "image": image_path or md.get("image_path"),
        "height": int(md.get("image_hw", [h, w])[0]),
        "width": int(md.get("image_hw", [h, w])[1]),
        "count": len(instances),
        "counts": counts,
        "objects": instance_records(instances, **kwargs),
        "candidates": int(md.get("candidates", len(instances))),
        "dropped": {str(k): int(v) for k, v in (md.get("dropped") or {}).items()},
        "notes": list(md.get("notes", [])),
        "timings": {k: round(float(v), 4) for k, v in md.get("timings", {}).items()},
    }


def predictions_to_coco(results: Iterable[tuple[str, Instances]], categories: Sequence[str] = ()) -> dict[str, Any]:
    """COCO JSON of ``(image_path, instances)`` detection results: every object (RLE masks),
    ``score`` its label confidence (:func:`~sam_detect.formats.coco.to_coco`); ``categories``:
    the library's classes, listed (and numbered) whether found or not."""
    from sam_detect.formats.coco import to_coco

    results = list(results)
    return to_coco(
        [inst for _, inst in results],
        [str(path) for path, _ in results],
        use_rle=True,
        keep_empty=True,
        description="sam-detect predictions",
        categories=categories,
    )


def output_classes(detector: Any) -> list[str]:
    """The classes of ``--coco``, ``--type-map`` (detect's and video's): every label of the
    library, found or not, sorted, and ``unknown`` in its sorted place where the detector
    keeps unknowns; a type map's value is a class's place plus one."""
    from sam_detect.instances import NEGATIVE, UNKNOWN

    return sorted({lab for lab in detector.store.labels(detector.config.library) if lab != NEGATIVE}
                  | ({UNKNOWN} if detector.config.keep_unknown else set()))


def label_maps(instances: Instances, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(label image, type map)`` of detection results: object ``id`` ``k`` of the JSON is
    pixel value ``k + 1`` (0 = background; where masks overlap, the smaller object), and its
    class the 1-based place of its label in ``classes`` (the ids ``--coco`` gives them; 0
    for a label not among them)."""
    n = len(instances)
    ids = instances.to_label_image(np.uint16 if n < 2**16 else np.uint32)  # the smaller object on top
    place = {str(c): i + 1 for i, c in enumerate(classes)}
    lut = np.zeros(n + 1, np.uint8 if len(classes) < 2**8 else np.uint16)
    lut[1:] = [place.get(str(lab), 0) for lab in instances.labels]
    return ids, lut[ids]


#: the columns of ``detect --csv``: one row per object
CSV_COLUMNS = ("image", "id", "label", "confidence", "similarity", "area", "centroid_x", "centroid_y",
               "x1", "y1", "x2", "y2", "frame")


#: what a spreadsheet reads a cell starting with as a formula (OWASP, "CSV Injection")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_text(value: Any) -> Any:
    """``value``, a text starting as a formula does with a ``'`` put before it: a label comes
    from the user or a third party's COCO, labelme or GeoJSON class names, and ``=1+1`` (or
    a ``=HYPERLINK(...)``) ran as a formula in Excel and LibreOffice."""
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA_STARTS) else value


def write_csv(records: Iterable[dict[str, Any]], path: str | Path) -> None:
    """One row per object of ``records`` (:func:`image_record`'s), ``CSV_COLUMNS``, written
    atomically; a value a record lacks (a run before centroids were recorded) is left empty.
    A text cell (the image, the label) that starts with ``=``, ``+``, ``-``, ``@``, a tab or
    a carriage return is written with a ``'`` before it, as OWASP advises against CSV
    injection: spreadsheets show it as text, not run it as a formula (strip the ``'`` to
    read the name itself)."""
    import csv

    from sam_detect.formats._common import atomic_path

    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(CSV_COLUMNS)
        for rec in records:
            for obj in rec.get("objects", []):
                cx, cy = obj.get("centroid") or ("", "")
                frame = rec.get("frame")  # a stack's frame (empty for an image of one)
                out.writerow([_csv_text(rec.get("image")), obj.get("id"), _csv_text(obj.get("label")),
                              obj.get("confidence"),
                              obj.get("similarity", ""), obj.get("area"), cx, cy, *obj.get("box", ["", "", "", ""]),
                              "" if frame is None else frame])


def write_bytes(data: bytes, path: str | Path) -> None:
    """Write ``data`` (an encoded overlay) atomically."""
    from sam_detect.formats._common import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def label_color(label: Any) -> tuple[int, int, int]:
    """A stable, distinct RGB colour for a label (same label, same colour, every run)."""
    h = int(hashlib.md5(str(label).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    r, g, b = colorsys.hsv_to_rgb(h, 0.75, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


#: an image shown under an overlay whose bright end (the 99.5th percentile of each pixel's
#: brightest channel) lies under this 8-bit level is brightened until it lies at 255
#: (:func:`for_display`), as image viewers' automatic contrast does: a dim fluorescence
#: frame saved in 8 bits (bright end 40-60) was drawn as a black picture
DISPLAY_DIM = 128
DISPLAY_PERCENTILE = 99.5


def for_display(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` (H, W, 3) uint8 as shown under an overlay: where its bright end lies under
    ``DISPLAY_DIM``, every channel times one factor that brings it to 255 (colours and the
    dark ground kept; the brightest 0.5 % of pixels saturate); else ``rgb`` itself. For
    display only: nothing is detected or measured on it."""
    if not rgb.size:
        return rgb
    step = max(1, int(np.ceil(np.sqrt(rgb.shape[0] * rgb.shape[1] / (1 << 18)))))  # at most ~262k pixels read
    brightest = np.asarray(rgb[::step, ::step, :3], np.uint8).max(axis=-1)
    cum = np.cumsum(np.bincount(brightest.ravel(), minlength=256))
    top = int(np.searchsorted(cum, DISPLAY_PERCENTILE / 100.0 * cum[-1]))  # the percentile, as inverted_cdf
    if not 0 < top < DISPLAY_DIM:
        return rgb
    import cv2

    lut = np.clip(np.rint(np.arange(256) * (255.0 / top)), 0, 255).astype(np.uint8)
    return cv2.LUT(np.ascontiguousarray(rgb, np.uint8), lut)


def render_overlay(
    rgb: np.ndarray,
    instances: Instances,
    *,
    alpha: float = 0.45,
    boxes: bool = True,
    text: bool = True,
    outline: bool = True,
    stretch: bool = True,
) -> np.ndarray:
    """Draw masks coloured by label, outlines, boxes and ``label conf`` text on ``rgb`` (H, W, 3)
    uint8 -- a dim image brightened first (:func:`for_display`) unless ``stretch`` is false.

    Raises:
        AnnotationError: ``instances`` are of an image of another size.
    """
    import cv2

    out = np.ascontiguousarray((for_display(rgb) if stretch else rgb).copy())
    if len(instances) == 0:
        return out
    if tuple(instances.image_hw) != tuple(out.shape[:2]):  # an IndexError deep in the painting before
        from sam_detect.errors import AnnotationError

        raise AnnotationError(f"the instances are of a {instances.image_hw[0]}x{instances.image_hw[1]} image, "
                              f"this one is {out.shape[0]}x{out.shape[1]}: draw them on the image they were "
                              "found on")
    colors = {lab: np.array(label_color(lab), dtype=np.float32) for lab in set(instances.labels)}
    paint = out.astype(np.float32)
    crops = instances.crops
    for i, m in enumerate(crops):
        region = paint[m.slices]
        region[m.crop] = region[m.crop] * (1 - alpha) + colors[instances.labels[i]] * alpha
    out = paint.astype(np.uint8)
    hw = instances.image_hw
    scale = max(0.35, min(out.shape[:2]) / 1500)
    for i in range(len(instances)):
        color = tuple(int(c) for c in colors[instances.labels[i]])
        x1, y1, x2, y2 = (int(round(v)) for v in instances.boxes[i])
        if outline:
            contours = crop_contours(crops[i].crop, crops[i].origin, hw, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(out, contours, -1, color, 1)
        if boxes:
            cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), color, 1)
        if text:
            caption = f"{instances.labels[i]} {instances.label_confidences[i]:.2f}"
            draw_text(out, caption, (x1, max(y1 - 3, 10)), scale, color)
    return out


def draw_text(
    image: np.ndarray, text: str, origin_xy: tuple[int, int], scale: float, color: tuple[int, int, int]
) -> None:
    """Write ``text`` in ``color`` with a black outline (readable on any background), in place."""
    import cv2

    for c, thickness in (((0, 0, 0), 3), (tuple(int(v) for v in color), 1)):
        cv2.putText(image, text, origin_xy, cv2.FONT_HERSHEY_SIMPLEX, scale, c, thickness, cv2.LINE_AA)


def encode_image(rgb: np.ndarray, suffix: str) -> bytes:
    """An RGB uint8 image encoded as a file of type ``suffix`` (``.png``, ``.jpg``, ``.tif``...)."""
    import cv2

    ok, buf = cv2.imencode(suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        from sam_detect.errors import SamDetectError

        raise SamDetectError(f"could not encode an image as {suffix!r} (unknown extension?)")
    return buf.tobytes()


def save_image(rgb: np.ndarray, path: str | Path) -> None:
    """Write an RGB uint8 image (PNG/JPEG/TIFF by extension)."""
    import cv2

    path = Path(path)
    ok = cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        from sam_detect.errors import SamDetectError

        raise SamDetectError(f"could not write image {path} (unknown extension or folder missing?)")
