"""``sam-detect refine``: turn rough annotations into SAM2 masks.

Each annotation's box (from a COCO ``bbox`` or segmentation, a labelme shape, or a label
image region) is sent to SAM2 as a prompt with ``multimask_output=False``; labelme
``point`` shapes become point prompts. Annotations are grouped by image so that each image
is encoded once. A degenerate annotation (no area, outside the image, no mask from SAM2)
is kept unchanged with a warning, and the run goes on. The refined annotations are written
in the input's format, to a new file unless ``--in-place`` is given; every field other than
the geometry (ids, categories, labels, attributes) is kept.
"""

from __future__ import annotations

import copy
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np

from sam_detect.cli._model_options import sam_options
from sam_detect.cli.validate import finite, output_file, output_folder

_LABEL_SUFFIXES = (".tif", ".tiff", ".png", ".npy")
_LABEL_STEMS = ("", "_labels", "_label", "_masks", "_mask", "_seg")

# A mask as its tight box crop and the crop's top-left pixel (x0, y0), as Instances keeps
# them: an image with thousands of annotations costs their areas, not N x H x W.
_Mask = tuple[np.ndarray, tuple[int, int]]


@dataclass
class _Prompt:
    """One annotation to refine: its box (XYXY) or point (XY), and where to write back."""

    ref: Any
    box: np.ndarray | None = None
    point: np.ndarray | None = None
    original: _Mask | None = None  # the annotation's own mask, for the IoU report
    refined: _Mask | None = None
    score: float = 0.0


@dataclass
class _Stats:
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
# geometry helpers
# ----------------------------------------------------------------------------------------
def _pad_box(box: np.ndarray, pad: float, hw: tuple[int, int]) -> np.ndarray | None:
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


def _postprocess(mask: np.ndarray, grow: int, keep_parts: bool) -> np.ndarray:
    """Grow (dilate, ``grow > 0``) or shrink (erode) a mask; keep its largest part unless asked.

    ``mask`` is the full image's or a box of it with room around the object (see
    :func:`_result_mask`)."""
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


def _mask_box(mask: _Mask) -> np.ndarray | None:
    """Tight XYXY box (x2, y2 exclusive) of a crop mask; ``None`` when empty."""
    crop, (x0, y0) = mask
    rows = np.flatnonzero(crop.any(axis=1)) if crop.size else ()
    if not len(rows):
        return None
    cols = np.flatnonzero(crop.any(axis=0))
    return np.array(
        [x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1], dtype=np.float32
    )


def _iou(a: _Mask, b: _Mask) -> float:
    """IoU of two crop masks, intersected inside the overlap of their boxes."""
    (ca, (ax, ay)), (cb, (bx, by)) = a, b
    union = np.count_nonzero(ca) + np.count_nonzero(cb)
    if not union:
        return 0.0
    x1, y1 = max(ax, bx), max(ay, by)
    x2 = min(ax + ca.shape[1], bx + cb.shape[1])
    y2 = min(ay + ca.shape[0], by + cb.shape[0])
    inter = 0
    if x2 > x1 and y2 > y1:
        inter = np.count_nonzero(
            ca[y1 - ay : y2 - ay, x1 - ax : x2 - ax] & cb[y1 - by : y2 - by, x1 - bx : x2 - bx]
        )
    return float(inter / (union - inter))


def _result_mask(res: Any, i: int, grow: int, keep_parts: bool) -> _Mask:
    """Prompt result ``i`` of ``res`` (``Instances``) post-processed as :func:`_postprocess`
    does to the full-image mask, on its box grown by ``max(|grow|, 1)`` pixels only (enough
    room to dilate into, and a background margin so that erosion sees what it sees in the
    full image)."""
    from sam_detect.masks import mask_to_crop

    crop, (rows, cols) = res.mask_crop(i)
    if not crop.size:
        return crop, (0, 0)
    m = max(abs(int(grow)), 1)
    x0, y0 = max(cols.start - m, 0), max(rows.start - m, 0)
    region = res.mask_region(i, x0, y0, cols.stop + m, rows.stop + m)
    tight, (dx, dy) = mask_to_crop(_postprocess(region, grow, keep_parts))
    if not tight.size:
        return tight, (0, 0)
    return tight, (x0 + dx, y0 + dy)


# ----------------------------------------------------------------------------------------
# formats: read prompts, write results
# ----------------------------------------------------------------------------------------
def _coco_prompts(doc: dict, image_entry: dict, hw: tuple[int, int], where: str) -> list[_Prompt]:
    from sam_detect.masks import mask_to_crop, polygons_to_crop, rle_to_mask

    out = []
    for ann in doc.get("annotations", []):
        if ann.get("image_id") != image_entry.get("id"):
            continue
        ref = ann
        original = None
        seg = ann.get("segmentation")
        try:
            if isinstance(seg, dict):
                full = rle_to_mask(seg)  # one full-image mask at a time, kept as its crop
                original = mask_to_crop(full) if full.shape == tuple(hw) else None
                del full
            elif isinstance(seg, list) and seg:
                original = polygons_to_crop(
                    [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in seg], hw
                )
        except Exception as e:  # noqa: BLE001 - one bad annotation must not stop the run
            warnings.warn(
                f"{where}: annotation {ann.get('id')}: unreadable segmentation ({e}); using its bbox",
                stacklevel=2,
            )
            original = None
        box = None
        bbox = ann.get("bbox")
        if isinstance(bbox, (list, tuple)) and len(bbox) == 4:
            x, y, bw, bh = (float(v) for v in bbox)
            box = np.array([x, y, x + bw, y + bh], dtype=np.float32)
        elif original is not None:
            box = _mask_box(original)
        out.append(_Prompt(ref=ref, box=box, original=original))
    return out


def _coco_write(p: _Prompt, tolerance: float, hw: tuple[int, int]) -> None:
    from sam_detect.masks import crop_to_polygons, crop_to_rle

    ann = p.ref
    crop, origin = p.refined
    polys = (
        crop_to_polygons(crop, origin, hw, tolerance=tolerance)
        if not isinstance(ann.get("segmentation"), dict)
        else []
    )
    if polys:
        ann["segmentation"] = [poly.reshape(-1).astype(float).round(2).tolist() for poly in polys]
    else:
        ann["segmentation"] = crop_to_rle(crop, origin, hw)
    x1, y1, x2, y2 = _mask_box(p.refined)
    ann["bbox"] = [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]
    ann["area"] = int(np.count_nonzero(crop))


def _labelme_prompts(doc: dict, hw: tuple[int, int]) -> list[_Prompt]:
    from sam_detect.masks import polygons_to_crop

    out = []
    for shape in doc.get("shapes", []):
        kind = shape.get("shape_type") or "polygon"
        pts = np.asarray(shape.get("points") or [], dtype=np.float64).reshape(-1, 2)
        if kind == "point" and len(pts) == 1:
            out.append(_Prompt(ref=shape, point=pts[0].astype(np.float32)))
            continue
        if len(pts) == 0 or kind in ("line", "linestrip", "point"):
            continue  # outlines no area; left as it is
        original = None
        if kind == "rectangle" and len(pts) == 2:
            box = np.array(
                [pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()],
                dtype=np.float32,
            )
        elif kind == "circle" and len(pts) == 2:
            r = float(np.hypot(*(pts[1] - pts[0])))
            cx, cy = pts[0]
            box = np.array([cx - r, cy - r, cx + r, cy + r], dtype=np.float32)
        else:
            box = np.array(
                [pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()],
                dtype=np.float32,
            )
            if len(pts) >= 3:
                original = polygons_to_crop(pts, hw)
        out.append(_Prompt(ref=shape, box=box, original=original))
    return out


def _labelme_write(p: _Prompt, tolerance: float, hw: tuple[int, int]) -> None:
    from sam_detect.masks import crop_to_polygons

    crop, origin = p.refined
    polys = crop_to_polygons(crop, origin, hw, tolerance=tolerance)
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


def _label_prompts(labels: np.ndarray) -> list[_Prompt]:
    from scipy import ndimage

    out = []
    for i, sl in enumerate(ndimage.find_objects(labels)):
        if sl is None:
            continue
        lab = i + 1
        original = (labels[sl] == lab, (sl[1].start, sl[0].start))  # find_objects: a tight box
        box = np.array([sl[1].start, sl[0].start, sl[1].stop, sl[0].stop], dtype=np.float32)
        out.append(_Prompt(ref=lab, box=box, original=original))
    return out


def _label_write(labels: np.ndarray, prompts: list[_Prompt]) -> np.ndarray:
    """New label image: refined objects painted largest first (small ones stay visible)."""
    out = np.zeros_like(labels)
    items = [(p.ref, p.refined if p.refined is not None else p.original) for p in prompts]
    items.sort(key=lambda t: -int(np.count_nonzero(t[1][0])))
    for lab, (crop, (x0, y0)) in items:
        out[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]][crop] = lab
    return out


# ----------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------
def _refine_prompts(
    seg: Any,
    rgb: np.ndarray,
    prompts: list[_Prompt],
    pad: float,
    grow: int,
    keep_parts: bool,
    where: str,
    stats: _Stats,
) -> None:
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
            box = _pad_box(p.box, pad, hw)  # a zero-area box stays degenerate whatever the padding
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
            mask = _result_mask(res, i, grow, keep_parts)
            if not mask[0].size:
                warnings.warn(
                    f"{where}: SAM2 returned an empty mask for annotation {_name(p.ref)}; kept unchanged",
                    stacklevel=2,
                )
                stats.kept += 1
                continue
            p.refined, p.score = mask, float(score)
            stats.refined += 1
            if p.original is not None:
                stats.ious.append(_iou(p.original, mask))


def _name(ref: Any) -> str:
    if isinstance(ref, dict):
        if "id" in ref:
            return f"id {ref['id']}"
        return repr(ref.get("label", "?"))
    return str(ref)


def _find_per_image(folder: Path, image: Path) -> Path | None:
    for stem in _LABEL_STEMS:
        for suffix in (".json", *_LABEL_SUFFIXES):
            cand = folder / f"{image.stem}{stem}{suffix}"
            if cand.is_file():
                return cand
    return None


def _output_for(src: Path, root: Path, out: Path | None, in_place: bool, folder_mode: bool) -> Path:
    if in_place:
        return src
    if folder_mode:
        base = out or root.with_name(root.name + "_refined")
        return base / src.relative_to(root)
    if out is not None:
        return out
    return src.with_name(f"{src.stem}.refined{src.suffix}")


@click.command("refine")
@click.argument("images", nargs=-1, required=True)
@click.option(
    "--annotations",
    "-a",
    "annotations",
    required=True,
    type=click.Path(exists=True),
    help="COCO JSON, a labelme JSON or label image (one image), or a folder of per-image "
    "labelme JSON / label images named after the images.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(),
    default=None,
    help="Output file (or folder, for a folder of annotations). Default: NAME.refined.EXT "
    "beside the input (a folder: FOLDER_refined).",
)
@click.option("--in-place", is_flag=True, help="Overwrite the input annotations.")
@click.option(
    "--pad",
    type=finite(-10_000, 10_000),
    default=0.0,
    show_default=True,
    help="Grow (+) or shrink (-) each box prompt by this many pixels per side.",
)
@click.option(
    "--grow",
    type=click.IntRange(-1000, 1000),
    default=0,
    show_default=True,
    help="Dilate (+) or erode (-) each refined mask by this many pixels.",
)
@click.option(
    "--smooth",
    type=finite(0),
    default=1.0,
    show_default=True,
    help="Polygon simplification tolerance in pixels (0: keep every contour point).",
)
@click.option(
    "--keep-parts",
    is_flag=True,
    help="Keep every connected part of a refined mask "
    "(default: only the largest; labelme shapes always take the largest).",
)
@sam_options
@click.option("--sam-image-size", type=click.IntRange(64), default=None, hidden=True)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where SAM2 runs.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress or warnings on stderr.")
def refine(
    images: tuple[str, ...],
    annotations: str,
    output: str | None,
    in_place: bool,
    pad: float,
    grow: int,
    smooth: float,
    keep_parts: bool,
    sam_model: str | None,
    sam_checkpoint: str | None,
    sam_image_size: int | None,
    device: str,
    as_json: bool,
    quiet: bool,
) -> None:
    """Refine rough annotations of IMAGES (files, folders or globs) into SAM2 masks.

    \b
    Examples:
      sam-detect refine img.png -a img_rough.json               # -> img_rough.refined.json
      sam-detect refine frames/ -a coco.json -o coco_sam2.json --pad 4
      sam-detect refine frames/ -a rough_labels/ -o refined_labels/
    """
    from sam_detect.errors import AnnotationError
    from sam_detect.io.images import iter_image_paths, load_image
    from sam_detect.segment.sam2 import SAM2Segmenter

    if in_place and output:
        raise click.BadParameter("give --output or --in-place, not both", param_hint="--in-place")
    paths = iter_image_paths(list(images))
    ann = Path(annotations)
    out = Path(output) if output else None
    if out is not None:  # checked before SAM2 loads
        if ann.is_dir():
            output_folder(out, "--output")
        else:
            output_file(out, "--output", what="the refined annotations")
    seg = SAM2Segmenter(
        model=sam_model or "auto",
        checkpoint=sam_checkpoint,
        device=device,
        image_size=sam_image_size,
    )
    stats = _Stats()
    written: list[str] = []

    def note(msg: str) -> None:
        if not quiet:
            click.echo(f"sam-detect: {msg}", err=True)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if ann.is_file() and ann.suffix.lower() == ".json":
            doc = _read_json(ann)
            if isinstance(doc, dict) and "images" in doc and "annotations" in doc:
                new = copy.deepcopy(doc)
                by_name: dict[str, dict] = {}
                for entry in new["images"]:
                    fn = Path(str(entry.get("file_name", "")))
                    by_name.setdefault(fn.name, entry)
                    by_name.setdefault(fn.stem, entry)
                for path in paths:
                    entry = by_name.get(path.name) or by_name.get(path.stem)
                    if entry is None:
                        warnings.warn(
                            f"{path.name}: not among the images of {ann.name}; skipped",
                            stacklevel=1,
                        )
                        continue
                    rgb = load_image(path).rgb
                    prompts = _coco_prompts(new, entry, rgb.shape[:2], path.name)
                    _refine_prompts(seg, rgb, prompts, pad, grow, keep_parts, path.name, stats)
                    for p in prompts:
                        if p.refined is not None:
                            _coco_write(p, smooth, rgb.shape[:2])
                    stats.images += 1
                    note(
                        f"{path.name}: {sum(p.refined is not None for p in prompts)}/{len(prompts)} refined"
                    )
                dst = _output_for(ann, ann.parent, out, in_place, False)
                _write_json(dst, new)
                written.append(str(dst))
            elif isinstance(doc, dict) and "shapes" in doc:
                if len(paths) != 1:
                    raise click.BadParameter(
                        f"{ann.name} is a labelme file (one image) but {len(paths)} images were given; "
                        "pass its image, or a folder of labelme files",
                        param_hint="--annotations",
                    )
                written.append(
                    _refine_labelme(
                        seg,
                        paths[0],
                        ann,
                        doc,
                        _output_for(ann, ann.parent, out, in_place, False),
                        pad,
                        grow,
                        keep_parts,
                        smooth,
                        stats,
                        note,
                    )
                )
            else:
                raise AnnotationError(
                    f"{ann}: neither COCO (images, annotations) nor labelme (shapes) JSON"
                )
        elif ann.is_file():
            if len(paths) != 1:
                raise click.BadParameter(
                    f"{ann.name} is one label image but {len(paths)} images were given; pass a folder of "
                    "label images named after the images",
                    param_hint="--annotations",
                )
            written.append(
                _refine_label_image(
                    seg,
                    paths[0],
                    ann,
                    _output_for(ann, ann.parent, out, in_place, False),
                    pad,
                    grow,
                    keep_parts,
                    stats,
                    note,
                )
            )
        else:
            for path in paths:
                src = _find_per_image(ann, path)
                if src is None:
                    warnings.warn(
                        f"{path.name}: no annotation named {path.stem}.json or {path.stem}[_labels].tif/png "
                        f"in {ann}; skipped",
                        stacklevel=1,
                    )
                    continue
                dst = _output_for(src, ann, out, in_place, True)
                if src.suffix.lower() == ".json":
                    doc = _read_json(src)
                    if not (isinstance(doc, dict) and "shapes" in doc):
                        raise AnnotationError(
                            f"{src}: expected a labelme JSON (with 'shapes') in a folder of annotations"
                        )
                    written.append(
                        _refine_labelme(
                            seg, path, src, doc, dst, pad, grow, keep_parts, smooth, stats, note
                        )
                    )
                else:
                    written.append(
                        _refine_label_image(seg, path, src, dst, pad, grow, keep_parts, stats, note)
                    )
    if not quiet:
        for w in caught:
            click.echo(f"sam-detect: warning: {w.message}", err=True)
    summary = {**stats.as_dict(), "written": written}
    if as_json:
        click.echo(json.dumps(summary, indent=1))
        return
    for w in written:
        click.echo(w)
    miou = summary["mean_iou_with_original"]
    note(
        f"{stats.refined} refined, {stats.kept} kept unchanged in {stats.images} image(s)"
        + (f"; mean IoU with the originals {miou:.3f}" if miou is not None else "")
    )


def _refine_labelme(
    seg,
    path: Path,
    src: Path,
    doc: dict,
    dst: Path,
    pad: float,
    grow: int,
    keep_parts: bool,
    smooth: float,
    stats: _Stats,
    note,
) -> str:
    from sam_detect.io.images import load_image

    rgb = load_image(path).rgb
    new = copy.deepcopy(doc)
    prompts = _labelme_prompts(new, rgb.shape[:2])
    _refine_prompts(seg, rgb, prompts, pad, grow, keep_parts, path.name, stats)
    for p in prompts:
        if p.refined is not None:
            _labelme_write(p, smooth, rgb.shape[:2])
    stats.images += 1
    note(f"{path.name}: {sum(p.refined is not None for p in prompts)}/{len(prompts)} refined")
    _write_json(dst, new)
    return str(dst)


def _refine_label_image(
    seg,
    path: Path,
    src: Path,
    dst: Path,
    pad: float,
    grow: int,
    keep_parts: bool,
    stats: _Stats,
    note,
) -> str:
    from sam_detect.annotations import read_label_image
    from sam_detect.errors import AnnotationError
    from sam_detect.io.images import load_image

    labels = read_label_image(src)
    if labels.ndim != 2:
        raise AnnotationError(
            f"{src}: a label stack {labels.shape}; refine takes one (H, W) label image per image"
        )
    rgb = load_image(path).rgb
    if labels.shape != rgb.shape[:2]:
        raise AnnotationError(
            f"{src}: label image is {labels.shape[1]}x{labels.shape[0]} but {path.name} is "
            f"{rgb.shape[1]}x{rgb.shape[0]}"
        )
    prompts = _label_prompts(labels)
    _refine_prompts(seg, rgb, prompts, pad, grow, keep_parts, path.name, stats)
    new = _label_write(labels, prompts)
    stats.images += 1
    note(f"{path.name}: {sum(p.refined is not None for p in prompts)}/{len(prompts)} refined")
    dst.parent.mkdir(parents=True, exist_ok=True)
    suffix = dst.suffix.lower()
    if suffix in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(dst, new, photometric="minisblack", compression="zlib")
    elif suffix == ".npy":
        np.save(dst, new)
    else:
        from PIL import Image

        Image.fromarray(new).save(dst)
    return str(dst)


def _read_json(path: Path) -> Any:
    from sam_detect.errors import AnnotationError

    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AnnotationError(f"{path}: cannot read JSON ({e})") from e


def _write_json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))


__all__ = ["refine"]
