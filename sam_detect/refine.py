"""Refine rough annotations into SAM2 masks (what ``sam-detect refine`` runs).

Each annotation's box (from a COCO ``bbox`` or segmentation, a labelme shape, or a label
image region) is sent to SAM2 as a prompt with ``multimask_output=False``; labelme ``point``
shapes become point prompts. Annotations are grouped by image so that each image is encoded
once. A degenerate annotation (no area, outside the image, no mask from SAM2) is kept
unchanged with a warning, and the run goes on. The refined annotations are written in the
input's format; every field other than the geometry (ids, categories, labels, attributes)
is kept. Masks are :class:`~sam_detect.masks.MaskCrop`: an image with thousands of
annotations costs their areas, not N x H x W.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sam_detect._heavy import heavy
from sam_detect.errors import AnnotationError
from sam_detect.masks import MaskCrop

LABEL_SUFFIXES = (".tif", ".tiff", ".png", ".npy")
_LABEL_STEMS = ("", "_labels", "_label", "_masks", "_mask", "_seg")


@dataclass(frozen=True)
class RefineOptions:
    """How prompts are made from annotations and how SAM2's masks are post-processed.

    Attributes:
        pad: grow (+) or shrink (-) each box prompt by this many pixels per side.
        grow: dilate (+) or erode (-) each refined mask by this many pixels.
        smooth: polygon simplification tolerance in pixels (0: every contour point).
        keep_parts: keep every connected part of a refined mask (default: the largest).
    """

    pad: float = 0.0
    grow: int = 0
    smooth: float = 1.0
    keep_parts: bool = False


@dataclass
class Prompt:
    """One annotation to refine: its box (XYXY) or point (XY), and where to write back."""

    ref: Any
    box: np.ndarray | None = None
    point: np.ndarray | None = None
    original: MaskCrop | None = None  # the annotation's own mask, for the IoU report
    refined: MaskCrop | None = None
    score: float = 0.0


@dataclass
class RefineStats:
    images: int = 0
    refined: int = 0
    kept: int = 0
    ious: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "refined": self.refined,
            "kept_unchanged": self.kept,
            "mean_iou_with_original": round(float(np.mean(self.ious)), 4) if self.ious else None,
        }


# ----------------------------------------------------------------------------------------
# geometry
# ----------------------------------------------------------------------------------------
def pad_box(box: np.ndarray, pad: float, hw: tuple[int, int]) -> np.ndarray | None:
    """Box grown (``pad > 0``) or shrunk (``pad < 0``) by ``pad`` pixels a side, clipped; ``None`` if empty."""
    h, w = hw
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, y1, x2, y2 = (
        max(x1 - pad, 0.0),
        max(y1 - pad, 0.0),
        min(x2 + pad, float(w)),
        min(y2 + pad, float(h)),
    )
    if not np.isfinite([x1, y1, x2, y2]).all() or x2 - x1 < 1 or y2 - y1 < 1:
        return None
    return np.array([x1, y1, x2, y2], dtype=np.float32)


def postprocess(mask: np.ndarray, grow: int, keep_parts: bool) -> np.ndarray:
    """Grow (dilate, ``grow > 0``) or shrink (erode) a mask; keep its largest part unless asked.

    ``mask`` is the full image's or a box of it with room around the object (see
    :func:`result_mask`)."""
    import cv2

    m = mask.astype(np.uint8)
    if grow:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(grow) + 1, 2 * abs(grow) + 1))
        m = cv2.dilate(m, k) if grow > 0 else cv2.erode(m, k)
    if not keep_parts and m.any():
        n, lab, st, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
        if n > 2:
            m = (lab == 1 + int(np.argmax(st[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    return m.astype(bool)


def result_mask(res: Any, i: int, grow: int, keep_parts: bool) -> MaskCrop:
    """Prompt result ``i`` of ``res`` (``Instances``) post-processed as :func:`postprocess`
    does to the full-image mask, on its box grown by ``max(|grow|, 1)`` pixels only (enough
    room to dilate into, and a background margin so that erosion sees what it sees in the
    full image)."""
    m = res.crop(i)
    if not m.crop.size:
        return MaskCrop.empty()
    pad = max(abs(int(grow)), 1)
    x0, y0 = max(m.x0 - pad, 0), max(m.y0 - pad, 0)
    region = res.mask_region(i, x0, y0, m.box[2] + pad, m.box[3] + pad)
    return MaskCrop.from_full(postprocess(region, grow, keep_parts), (x0, y0))


def _box_of(mask: MaskCrop | None) -> np.ndarray | None:
    """Tight XYXY float32 box of a mask; ``None`` when empty or missing."""
    if mask is None or not mask.area:
        return None
    return np.array(mask.tight().box, dtype=np.float32)


# ----------------------------------------------------------------------------------------
# formats: read prompts, write results
# ----------------------------------------------------------------------------------------
def _list_of_objects(doc: dict, key: str, name: str) -> None:
    """Refuse a document whose ``key`` (COCO's ``images``/``annotations``, labelme's
    ``shapes``) is not a list of JSON objects, in one line naming the file ``name``."""
    def short(v: Any) -> str:
        r = repr(v)
        return r if len(r) <= 60 else r[:57] + "..."

    items = doc.get(key, [])
    if not isinstance(items, list):
        raise AnnotationError(f"{name}: '{key}' must be a list, got {short(items)}")
    for k, item in enumerate(items):
        if not isinstance(item, dict):
            raise AnnotationError(f"{name}: {key}[{k}] must be an object, got {short(item)}")


def _bbox_box(bbox: Any, where: str, what: str) -> np.ndarray | None:
    """A COCO ``bbox`` ``[x, y, w, h]`` as a box XYXY; ``None`` (with a warning) where it is
    not 4 finite numbers."""
    try:
        x, y, bw, bh = (float(v) for v in bbox)
        box = np.array([x, y, x + bw, y + bh], dtype=np.float64)
        if not np.isfinite(box).all() or np.abs(box).max() > 1e9:
            raise ValueError("not finite")
    except (TypeError, ValueError):
        warnings.warn(f"{where}: annotation {what}: unreadable bbox {bbox!r}; using its segmentation's box",
                      stacklevel=3)
        return None
    return box.astype(np.float32)


def coco_prompts(doc: dict, image_entry: dict, hw: tuple[int, int], where: str) -> list[Prompt]:
    from sam_detect.formats.coco import annotation_mask, centre_vertices

    centres = centre_vertices(doc)
    out = []
    for ann in doc.get("annotations", []):
        if ann.get("image_id") != image_entry.get("id"):
            continue
        try:
            original = annotation_mask(ann, hw, "", use_bbox=False, centres=centres)
        except Exception as e:  # noqa: BLE001 - one bad annotation must not stop the run
            warnings.warn(
                f"{where}: annotation {ann.get('id')}: unreadable segmentation ({e}); using its bbox",
                stacklevel=2,
            )
            original = None
        box = None
        bbox = ann.get("bbox")
        if isinstance(bbox, (list, tuple)) and len(bbox) == 4:
            box = _bbox_box(bbox, where, str(ann.get("id")))
        if box is None and original is not None:
            box = _box_of(original)
        out.append(Prompt(ref=ann, box=box, original=original))
    return out


def coco_write(p: Prompt, tolerance: float, hw: tuple[int, int]) -> None:
    from sam_detect.formats.coco import segmentation

    ann, m = p.ref, p.refined
    # an annotation in RLE stays RLE; polygons stay polygons where they can say the mask
    ann["segmentation"] = segmentation(m.crop, m.origin, hw, tolerance=tolerance,
                                       use_rle=isinstance(ann.get("segmentation"), dict))
    x1, y1, x2, y2 = _box_of(m)
    ann["bbox"] = [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]
    ann["area"] = m.area


def labelme_prompts(doc: dict, hw: tuple[int, int], where: str = "") -> list[Prompt]:
    from sam_detect.masks import polygons_to_crop

    out = []
    for k, shape in enumerate(doc.get("shapes", [])):
        kind = shape.get("shape_type") or "polygon"
        try:
            pts = np.asarray(shape.get("points") or [], dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError):
            warnings.warn(f"{where}: shape #{k} ({kind}): unreadable points {shape.get('points')!r}; kept unchanged",
                          stacklevel=2)
            continue
        if kind == "point" and len(pts) == 1:
            out.append(Prompt(ref=shape, point=pts[0].astype(np.float32)))
            continue
        if len(pts) == 0 or kind in ("line", "linestrip", "point"):
            continue  # outlines no area; left as it is
        original = None
        if kind == "circle" and len(pts) == 2:
            r = float(np.hypot(*(pts[1] - pts[0])))
            cx, cy = pts[0]
            box = np.array([cx - r, cy - r, cx + r, cy + r], dtype=np.float32)
        else:  # a rectangle's two corners, or a polygon's points
            box = np.array(
                [pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()],
                dtype=np.float32,
            )
            if len(pts) >= 3:
                original = polygons_to_crop(pts, hw)
        out.append(Prompt(ref=shape, box=box, original=original))
    return out


def labelme_write(p: Prompt, tolerance: float, hw: tuple[int, int]) -> None:
    from sam_detect.masks import crop_to_polygons

    polys = crop_to_polygons(p.refined.crop, p.refined.origin, hw, tolerance=tolerance)
    if not polys:
        return
    shape = p.ref
    biggest = max(
        polys,
        key=lambda q: abs(
            float(np.sum(q[:, 0] * np.roll(q[:, 1], 1) - np.roll(q[:, 0], 1) * q[:, 1]))
        ),
    )
    shape["points"] = biggest.astype(float).round(2).tolist()
    shape["shape_type"] = "polygon"


def label_prompts(labels: np.ndarray) -> list[Prompt]:
    """One box prompt per id of a label image ``(H, W)``, its region as the original."""
    from sam_detect.instances import Instances

    inst, ids = Instances.from_label_image(labels)
    return [
        Prompt(ref=int(lab), box=np.array(m.box, dtype=np.float32), original=m)
        for m, lab in zip(inst.crops, ids, strict=True)
    ]


def label_write(labels: np.ndarray, prompts: list[Prompt]) -> np.ndarray:
    """New label image: refined objects painted largest first (small ones stay visible)."""
    out = np.zeros_like(labels)
    items = [(p.ref, p.refined if p.refined is not None else p.original) for p in prompts]
    items.sort(key=lambda t: -t[1].area)
    for lab, m in items:
        out[m.slices][m.crop] = lab
    return out


# ----------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------
def refine_prompts(
    seg: Any, rgb: np.ndarray, prompts: list[Prompt], options: RefineOptions, where: str, stats: RefineStats
) -> None:
    """Prompt SAM2 (``seg``, a ``SAM2Segmenter``) with every usable prompt of one image and
    set ``refined`` and ``score`` on each; the unusable ones are counted as kept, with a warning."""
    hw = rgb.shape[:2]
    boxed, pointed = [], []
    for p in prompts:
        if p.point is not None:
            x, y = (float(v) for v in p.point)
            if np.isfinite([x, y]).all() and 0 <= x < hw[1] and 0 <= y < hw[0]:
                pointed.append(p)
                continue
            warnings.warn(
                f"{where}: point {x:g},{y:g} lies outside the image; kept unchanged", stacklevel=2
            )
            stats.kept += 1
            continue
        box = None
        if (
            p.box is not None
            and np.isfinite(p.box).all()
            and p.box[2] > p.box[0]
            and p.box[3] > p.box[1]
        ):
            box = pad_box(p.box, options.pad, hw)  # a zero-area box stays degenerate whatever the padding
        if box is None:
            warnings.warn(
                f"{where}: annotation {_name(p.ref)} has no usable box (empty, degenerate or outside "
                f"the image); kept unchanged",
                stacklevel=2,
            )
            stats.kept += 1
            continue
        p.box = box
        boxed.append(p)
    for group, kind in ((boxed, "box"), (pointed, "point")):
        if not group:
            continue
        if kind == "box":
            res = seg.prompt_batch(rgb, boxes=np.stack([p.box for p in group]))
        else:
            res = seg.prompt_batch(rgb, points=np.stack([p.point for p in group]))
        for i, (p, score) in enumerate(zip(group, res.scores, strict=True)):
            mask = result_mask(res, i, options.grow, options.keep_parts)
            if not mask.crop.size:
                warnings.warn(
                    f"{where}: SAM2 returned an empty mask for annotation {_name(p.ref)}; kept unchanged",
                    stacklevel=2,
                )
                stats.kept += 1
                continue
            p.refined, p.score = mask, float(score)
            stats.refined += 1
            if p.original is not None:
                stats.ious.append(p.original.iou(mask))


def _name(ref: Any) -> str:
    if isinstance(ref, dict):
        if "id" in ref:
            return f"id {ref['id']}"
        return repr(ref.get("label", "?"))
    return str(ref)


Note = Callable[[str], None]


def refine_image(
    seg: Any,
    path: Path,
    prompts_of: Callable[[tuple[int, int]], list[Prompt]],
    write: Callable[[Prompt, float, tuple[int, int]], None] | None,
    options: RefineOptions,
    stats: RefineStats,
    note: Note,
    frame: int | None = None,
) -> list[Prompt]:
    """Refine the prompts ``prompts_of(image (H, W))`` makes for image ``path`` (``frame``: of
    a stack); ``write`` (a refined prompt, the polygon tolerance, ``(H, W)``) puts each result
    back."""
    from sam_detect.errors import FrameRequiredError, ImageLoadError
    from sam_detect.io.images import load_image

    try:
        rgb = load_image(path, frame=frame).rgb
    except FrameRequiredError as e:  # which frame the annotations describe: --frame, or a COCO file's images
        raise ImageLoadError(
            f"{path.name}: a stack of {e.n_frames} frames; give --frame K (0..{e.n_frames - 1}) for the frame "
            "the annotations describe, or a COCO file whose images name their frames, as "
            "`sam-detect detect STACK --frame K --coco FILE` writes it") from None
    hw = rgb.shape[:2]
    prompts = prompts_of(hw)
    where = path.name if frame is None else f"{path.name} frame {frame}"
    refine_prompts(seg, rgb, prompts, options, where, stats)
    for p in prompts:
        if p.refined is not None and write is not None:
            write(p, options.smooth, hw)
    stats.images += 1
    note(f"{where}: {sum(p.refined is not None for p in prompts)}/{len(prompts)} refined")
    return prompts


def refine_coco(
    seg: Any, paths: Sequence[Path], doc: dict, name: str, options: RefineOptions, stats: RefineStats, note: Note,
    frame: int | None = None,
) -> dict:
    """A refined copy of the COCO document ``doc`` (named ``name`` in messages) for ``paths``,
    its images matched by file name or stem; an image the file does not list is skipped.
    ``frame``: only that frame of each stack (an image entry naming another frame is left as
    it is; one naming none describes that frame)."""
    from sam_detect.formats.coco import check_image_ids, with_corner_vertices

    for key in ("images", "annotations"):
        _list_of_objects(doc, key, name)
    try:  # an annotation of an id two images share would be refined on each image's pixels in turn
        check_image_ids(doc.get("images", []))
    except AnnotationError as e:
        raise AnnotationError(f"{name}: {e}") from None
    new = with_corner_vertices(copy.deepcopy(doc))  # refined polygons are written on pixel corners
    by_name: dict[str, list[dict]] = {}  # a stack's frames are an image each, of one file name
    for entry in new["images"]:
        fn = Path(str(entry.get("file_name", "")))
        for key in dict.fromkeys((fn.name, fn.stem)):
            by_name.setdefault(key, []).append(entry)
    for path in paths:
        # images of one name in several folders (A1/img.tif, B2/img.tif): each its own entry
        # (the first entry of the name was every such image's, and the others' never refined)
        named = by_name.get(path.name) or by_name.get(path.stem) or []
        entries = [e for e in named if _in_folder_of(e, path)]
        if not entries:  # folders are not matched otherwise (the file's paths may start elsewhere),
            # but an entry whose folders name another of the images given is that image's
            entries = [e for e in named if not any(_in_folder_of(e, p) for p in paths)]
        if not entries:
            warnings.warn(f"{path.name}: not among the images of {name}; skipped", stacklevel=1)
            continue
        if len({id(e) for e in entries if not isinstance(e.get("frame"), int)}) > 1:
            warnings.warn(f"{path}: {name} lists {len(entries)} images of that name and no folders to tell "
                          f"them apart; skipped", stacklevel=1)
            continue
        framed = [e for e in entries if isinstance(e.get("frame"), int)]
        if framed and frame is not None:
            framed = [e for e in framed if e["frame"] == frame]
            if not framed:
                warnings.warn(f"{path.name}: {name} names no image of frame {frame}; skipped", stacklevel=1)
                continue
        for entry in framed or entries[:1]:  # a stack's frames, or the one image of that name
            k = entry["frame"] if isinstance(entry.get("frame"), int) else frame
            refine_image(seg, path, lambda hw, e=entry, n=path.name: coco_prompts(new, e, hw, n), coco_write,
                         options, stats, note, frame=k)
    return new


def _in_folder_of(entry: dict, path: Path) -> bool:
    """Whether the COCO image ``entry``'s ``file_name`` names folders and they are ``path``'s
    last folders (the formats' rule, :func:`~sam_detect.formats._common.other_folder`, on
    the path resolved: a deeper ``file_name`` than the path is in another folder)."""
    from sam_detect.formats._common import other_folder

    name = str(entry.get("file_name", ""))
    return bool(Path(name).parent.parts) and not other_folder(name, str(path.resolve()))


def refine_labelme(
    seg: Any, path: Path, doc: dict, options: RefineOptions, stats: RefineStats, note: Note,
    frame: int | None = None, name: str = "the labelme file",
) -> dict:
    """A refined copy of the labelme document ``doc`` (named ``name`` in messages) of image
    ``path`` (``frame``: of a stack)."""
    _list_of_objects(doc, "shapes", name)
    new = copy.deepcopy(doc)
    refine_image(seg, path, lambda hw: labelme_prompts(new, hw, path.name), labelme_write, options, stats, note,
                 frame=frame)
    return new


def refine_label_image(
    seg: Any, path: Path, src: Path, options: RefineOptions, stats: RefineStats, note: Note,
    frame: int | None = None,
) -> np.ndarray:
    """The refined label image of label file ``src`` for image ``path`` (``frame``: of a
    stack). A label stack with ``frame``: its frame ``frame`` is refined, the others kept."""
    from sam_detect.formats import read_label_image

    stack = read_label_image(src)
    labels = stack
    if stack.ndim != 2:
        if frame is None or stack.ndim != 3:
            raise AnnotationError(
                f"{src}: a label stack {stack.shape}; refine takes one (H, W) label image per image, "
                "or --frame K to refine frame K of a stack"
            )
        if not frame < stack.shape[0]:
            raise AnnotationError(
                f"{src}: frame {frame} out of range: the label stack holds {stack.shape[0]} frame(s) "
                f"(0..{stack.shape[0] - 1})"
            )
        labels = stack[frame]

    def prompts_of(hw: tuple[int, int]) -> list[Prompt]:
        if labels.shape != hw:
            raise AnnotationError(
                f"{src}: label image is {labels.shape[1]}x{labels.shape[0]} but {path.name} is {hw[1]}x{hw[0]}"
            )
        return label_prompts(labels)

    refined = label_write(labels, refine_image(seg, path, prompts_of, None, options, stats, note, frame=frame))
    if stack.ndim == 2:
        return refined
    out = stack.copy()
    out[frame] = refined
    return out


@heavy  # a file's images share one set-up: SAM2's encodings reuse one another's freed memory
def refine_file(
    seg: Any, paths: Sequence[Path], src: Path, dst: Path, options: RefineOptions, stats: RefineStats, note: Note,
    frame: int | None = None,
) -> str:
    """Refine one annotation file (COCO or labelme JSON, or a label image) into ``dst``
    (``frame``: the frame of a stack the annotations describe; see :func:`refine_coco`).

    Raises:
        AnnotationError: a JSON file that is neither COCO nor labelme, or an unreadable file.
        ImageCountError: a one-image file (labelme, label image) given several images.
    """
    from sam_detect.formats._common import read_json, write_json
    from sam_detect.formats.coco import is_coco
    from sam_detect.formats.label_image import write_label_array
    from sam_detect.formats.labelme import is_labelme

    if src.suffix.lower() == ".json":
        doc = read_json(src)
        if isinstance(doc, dict) and "images" in doc and is_coco(doc):
            new = refine_coco(seg, paths, doc, src.name, options, stats, note, frame)
        elif is_labelme(doc):
            _one_image(paths, f"{src.name} is a labelme file (one image)", "pass its image, or a folder of labelme files")
            new = refine_labelme(seg, paths[0], doc, options, stats, note, frame, src.name)
        else:
            raise AnnotationError(f"{src}: neither COCO (images, annotations) nor labelme (shapes) JSON")
        write_json(dst, new, indent=1)
    else:
        _one_image(paths, f"{src.name} is one label image", "pass a folder of label images named after the images")
        write_label_array(refine_label_image(seg, paths[0], src, options, stats, note, frame), dst)
    return str(dst)


class ImageCountError(ValueError):
    """A one-image annotation file was given several images."""


def _one_image(paths: Sequence[Path], what: str, hint: str) -> None:
    if len(paths) != 1:
        raise ImageCountError(f"{what} but {len(paths)} images were given; {hint}")


def refine_folder(
    seg: Any, paths: Sequence[Path], folder: Path, out: Path | None, in_place: bool,
    options: RefineOptions, stats: RefineStats, note: Note, frame: int | None = None,
) -> list[str]:
    """Refine the per-image labelme JSON or label image of each of ``paths`` found in
    ``folder`` (named after the image) into ``out`` (default ``FOLDER_refined``) or in place
    (``frame``: of each stack)."""
    from sam_detect.formats._common import read_json, write_json
    from sam_detect.formats.label_image import write_label_array
    from sam_detect.formats.labelme import is_labelme

    written = []
    for path in paths:
        src = find_per_image(folder, path)
        if src is None:
            warnings.warn(
                f"{path.name}: no annotation named {path.stem}.json or {path.stem}[_labels].tif/png "
                f"in {folder}; skipped",
                stacklevel=1,
            )
            continue
        dst = output_for(src, folder, out, in_place, True)
        if src.suffix.lower() == ".json":
            doc = read_json(src)
            if not is_labelme(doc):
                raise AnnotationError(
                    f"{src}: expected a labelme JSON (with 'shapes') in a folder of annotations"
                )
            write_json(dst, refine_labelme(seg, path, doc, options, stats, note, frame, str(src)), indent=1)
        else:
            write_label_array(refine_label_image(seg, path, src, options, stats, note, frame), dst)
        written.append(str(dst))
    return written


def find_per_image(folder: Path, image: Path) -> Path | None:
    for stem in _LABEL_STEMS:
        for suffix in (".json", *LABEL_SUFFIXES):
            cand = folder / f"{image.stem}{stem}{suffix}"
            if cand.is_file():
                return cand
    return None


def output_for(src: Path, root: Path, out: Path | None, in_place: bool, folder_mode: bool) -> Path:
    """Where the refined ``src`` goes: itself (``in_place``), ``out``, beside it as
    ``NAME.refined.EXT``, or (a folder) at its place under ``out`` or ``ROOT_refined``."""
    if in_place:
        return src
    if folder_mode:
        base = out or root.with_name(root.name + "_refined")
        return base / src.relative_to(root)
    if out is not None:
        return out
    return src.with_name(f"{src.stem}.refined{src.suffix}")


__all__ = [
    "ImageCountError",
    "Prompt",
    "RefineOptions",
    "RefineStats",
    "find_per_image",
    "output_for",
    "pad_box",
    "postprocess",
    "refine_file",
    "refine_folder",
    "refine_prompts",
    "result_mask",
]
