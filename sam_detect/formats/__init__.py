"""Read and write instance annotations: label images, COCO, labelme, ``.npz`` and polygon files.

Every reader returns :class:`~sam_detect.instances.Instances` (masks kept as one box crop per
object; ``labels`` as class-name strings) with ``data["source_id"]`` (``(N,)`` int64: the
label value, COCO annotation id, or shape/row index the instance came from) and
``metadata`` ``{"source": path, "format": ..., "image": name or frame index}``.

One dispatch, by file extension and, for ``.json``, by content (:func:`load_annotations`,
:func:`load_annotation_set`, :func:`save_annotations`); each format lives in its own module:

- :mod:`~sam_detect.formats.label_image` ``.tif/.tiff/.png/.bmp/.npy`` (and ``.mat``
  instance maps, read only): integer ids, 0 =
  background; a ``(T, H, W)`` stack is one image per frame. No class names: every instance
  gets ``label`` (default ``"object"``), or, with a type map beside it (histology's
  instance map + type map), the type most of its pixels carry (:func:`typed_instances`).
  An instance map drawn in colours (each object a flat colour on black) and a folder of mask
  images, one object each (:func:`read_mask_folder`), are read as label images too.
- :mod:`~sam_detect.formats.coco` instance JSON: polygons or RLE; a ``bbox`` alone is a box mask.
- :mod:`~sam_detect.formats.labelme` JSON (``shapes``).
- :mod:`~sam_detect.formats.geojson` ``.geojson`` (or ``.json``) features: QuPath's outlines
  and classes; they carry no image size: pass ``image_shape``.
- :mod:`~sam_detect.formats.npz` ``masks`` ``(N, H, W)`` and ``labels`` ``(N,)``.
- :mod:`~sam_detect.formats.polygons` polygon lists (JSON); they carry no image size: pass
  ``image_shape``.
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
    check_exists,
    check_hw,
    image_names_of,
    name_matches,
    polygon_tolerance,
    read_json,
    select_image,
)
from sam_detect.formats.coco import is_coco, read_coco, save_coco, to_coco
from sam_detect.formats.geojson import is_geojson, read_geojson, save_geojson, to_geojson
from sam_detect.formats.label_image import (
    LABEL_IMAGE_SUFFIXES,
    LABEL_READ_SUFFIXES,
    instances_to_label_image,
    label_image_to_instances,
    parse_type_names,
    read_label_array,
    read_label_frames,
    read_label_image,
    read_mask_folder,
    save_label_image,
    typed_instances,
)
from sam_detect.formats.labelme import is_labelme, read_labelme, save_labelme, to_labelme
from sam_detect.formats.npz import read_npz, save_npz
from sam_detect.formats.polygons import read_polygon_file, read_polygons, save_polygons
from sam_detect.instances import Instances

SUPPORTED_SUFFIXES = (*LABEL_READ_SUFFIXES, ".json", ".geojson", ".npz")
WRITE_FORMATS = ("coco", "geojson", "labelme", "label_image", "npz", "polygons")


# ----------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------
def load_annotations(
    path: PathLike,
    image_shape: Sequence[int] | None = None,
    *,
    label: str | None = None,
    image: int | str | None = None,
    channel: int | None = None,
    name: str | None = None,
    at_frame: int | None = None,
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
        name: the annotated image's file name: where ``image`` is not given and the file
            holds several images (a COCO file of a whole set), the one of that name; a COCO
            file of one image must name it too (matched as a set's images are: the file name,
            in any folder where the file lists it in one; a stem alone), else
            :class:`AnnotationError` names the image the file lists.
        at_frame: the annotated image's frame of its stack: a COCO file whose records carry
            their ``frame`` (``detect --frame K --coco``) gives that frame's (of ``name``'s
            image where it lists several); other files are read as without it.

    Returns:
        ``Instances`` with masks ``(N, H, W)`` bool and ``labels`` as strings.

    Raises:
        AnnotationError: unreadable, unsupported or inconsistent file, or a size mismatch.
    """
    path = Path(path)
    frame = image if is_label_image(path) and isinstance(image, (int, np.integer)) else None
    # the size is checked on the image chosen, not on every image of a set
    items = _read_any(path, image_shape, label, channel=channel, frame=frame, check=False)
    # a file of one image annotates the image given, whichever frame of a stack that is (what
    # `detect --frame 5 --coco` writes, `add --frame 5 --annotations` reads back); a name is checked
    framed = [it for it in items if it.metadata.get("frame") is not None]
    if at_frame is None and isinstance(image, (int, np.integer)) and not isinstance(image, bool):
        at_frame = int(image)  # add --frame K: the stack's frame K, where the records say frames
    if frame is None and framed and at_frame is not None:
        # a file of a stack's frames (detect --frame k --coco): the frame asked for, not the k-th entry;
        # a GeoJSON file of one frame (detect --frame k --geojson) names no image to match
        chosen = _of_frame(path, framed, at_frame, name if framed[0].metadata.get("format") == "coco" else None)
    elif frame is not None or (len(items) == 1 and not isinstance(image, str)):
        chosen = items[0]
        if name is not None and (chosen.metadata.get("format") == "coco" or chosen.metadata.get("image_path")):
            # its one image by name (a COCO file's, a labelme file's imagePath), as a set's images:
            # another image's objects were taken without a word (the same file name in another
            # folder is taken, and said)
            chosen = name_matches(path, items, name)[0]
    elif image is None:
        if name is None:
            names = ", ".join(str(it.metadata.get("image")) for it in items[:5])
            raise AnnotationError(
                f"{path}: holds {len(items)} images ({names}{', ...' if len(items) > 5 else ''}); "
                "choose one with image=INDEX_OR_NAME (--frame on the command line), or read them all with load_annotation_set()"
            )
        chosen = select_image(path, items, name)
    else:
        chosen = select_image(path, items, image)
    if image_shape is not None:
        check_hw(path, chosen.image_hw, image_shape, where=chosen.metadata.get("image"))
    return chosen


def _of_frame(path: Path, items: list[Instances], frame: int, name: str | None) -> Instances:
    """The entry of a COCO file for frame ``frame`` of a stack (of the image ``name`` where
    several stacks' frames are listed)."""
    if name is not None:  # the image's own records: another stack's frame is not this one's
        items = name_matches(path, items, name)
    of = [it for it in items if it.metadata["frame"] == frame]
    if not of:
        have = sorted({int(it.metadata["frame"]) for it in items})
        raise AnnotationError(f"{path}: no annotations for frame {frame}"
                              + (f" of {Path(str(name)).name}" if name is not None else "") + "; the file's frames: "
                              + ", ".join(map(str, have[:20])) + (", ..." if len(have) > 20 else ""))
    return of[0] if len(of) == 1 or name is None else select_image(path, of, name)


def load_annotation_set(
    path: PathLike,
    image_names: Sequence[str] | None = None,
    image_shapes: Sequence[Sequence[int]] | None = None,
    *,
    label: str | None = None,
    channel: int | None = None,
    image_frames: Sequence[int | None] | None = None,
) -> list[Instances]:
    """Instances of every image in an annotation file, one ``Instances`` per image.

    Args:
        path: as for :func:`load_annotations`.
        image_names: when given, the result follows this order: COCO images are matched by
            their paths' last parts (the file name, or its stem, where a path names no folder;
            the same name in another folder is another image, refused), a stack must have exactly this many frames,
            a single-image file must be given one name.
        image_shapes: optional ``(H, W[, C])`` per image, checked like ``image_shape``.
        label, channel: as for :func:`load_annotations`.
        image_frames: each named image's frame of its stack (``None``: not a stack's): a COCO
            file whose image records carry their ``frame`` (``detect --frame K --coco``) is
            matched by name and frame.

    A ``(T, H, W)`` label stack becomes T ``Instances`` (their masks are box crops, but the
    stack is read whole): for long stacks of large frames, read the ids with
    :func:`read_label_image` and convert frame by frame with :func:`label_image_to_instances`,
    as the evaluation does.
    """
    path = Path(path)
    image_names = image_names_of(image_names)
    shape0 = image_shapes[0] if image_shapes is not None and len(image_shapes) else None
    uniform = image_shapes is None or all(tuple(s[:2]) == tuple(shape0[:2]) for s in image_shapes)
    items = _read_any(path, shape0 if uniform else None, label, channel=channel)
    if image_names is not None:
        image_names = [str(n) for n in image_names]
        fmt = items[0].metadata.get("format") if items else None
        framed = [it for it in items if it.metadata.get("frame") is not None]
        if fmt == "coco" and framed and image_frames is not None and any(f is not None for f in image_frames):
            items = [_of_frame(path, framed, int(f), n) if f is not None else select_image(path, items, n)
                     for n, f in zip(image_names, image_frames, strict=True)]
        elif fmt == "coco":
            items = [select_image(path, items, n) for n in image_names]
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
            check_hw(path, it.image_hw, shape, where=it.metadata.get("image"))
    return items


def load_ground_truth(
    paths: Sequence[PathLike],
    image_names: Sequence[str],
    *,
    label: str | None = None,
    channel: int | None = None,
    frame: int | None = None,
    pieces: bool = True,
    types: Sequence[PathLike] = (),
    types_channel: int | None = None,
    type_names: dict[int, str] | None = None,
    image_shapes: Sequence[Sequence[int]] | None = None,
    image_frames: Sequence[int | None] | None = None,
) -> list[Any]:
    """Ground truth of each of ``image_names``: one annotation file per image, one file
    covering all of them (a label stack, a COCO file), or one per stack (``image_names`` in
    runs, one run per stack file, with ``image_frames`` each one's frame). Label images stay
    ``(H, W)`` int arrays (cheap to hold); other files give ``Instances``.

    ``pieces``: as :func:`read_label_image`'s (``False`` reads type maps).
    ``image_shapes``: each image's ``(H, W)``, for files that carry no image size (GeoJSON,
    polygon lists).
    ``types``: type maps paired with label images as the label images pair with the images
    (one per label file, frame for frame); each object then takes the type most of its
    pixels carry (:func:`typed_instances`, named by ``type_names``); objects without a type
    are labelled ``UNTYPED`` (``eval`` scores them as nothing: a detection of one is neither
    true nor false).

    Raises:
        AnnotationError: files and images do not pair up, or a file is unreadable.
    """
    if types:
        if len(types) != len(paths):
            raise AnnotationError(f"{len(types)} type map(s) for {len(paths)} annotation file(s); give one per file")
        if not all(is_label_image(p) for p in paths):
            raise AnnotationError("type maps go with label images (an instance map and a type map); "
                                  "COCO, labelme, GeoJSON and .npz files carry their classes themselves")
        ids = load_ground_truth(paths, image_names, channel=channel, frame=frame, image_frames=image_frames)
        kinds = load_ground_truth(types, image_names, channel=types_channel, frame=frame, pieces=False,
                                  image_frames=image_frames)
        out = []
        for name, lab, kind in zip(image_names, ids, kinds, strict=True):
            try:
                out.append(typed_instances(lab, kind, type_names, keep_untyped=True)[0])
            except AnnotationError as e:
                raise AnnotationError(f"{name}: {e}") from None
        return out

    def label_frames(path: PathLike) -> list[Any]:
        arr = read_label_image(path, channel=channel, pieces=pieces)
        return [arr] if arr.ndim == 2 else list(arr)

    n = len(image_names)
    frames_of = list(image_frames) if image_frames is not None else [None] * n
    if len(paths) == 1 and Path(paths[0]).is_dir():
        runs = _runs(image_names, frames_of)
        named = label_files_for(paths[0], [image_names[a] for a, _ in runs]) if len(runs) > 1 else None
        if named is not None:  # a folder of label images named as the images (images/ beside masks/)
            paths = named
    if len(paths) > 1:
        runs = _runs(image_names, frames_of)
        if len(paths) != n and len(runs) == len(paths):  # a label stack (or COCO file) per stack: frame by frame
            out = []
            for p, (a, b) in zip(paths, runs, strict=True):
                out += load_ground_truth([p], image_names[a:b], label=label, channel=channel,
                                         frame=frames_of[a] if b - a == 1 else None, pieces=pieces,
                                         image_shapes=None if image_shapes is None else image_shapes[a:b],
                                         image_frames=frames_of[a:b])
            return out
        if len(paths) != n:
            folders = [str(p) for p in paths if Path(p).is_dir()]
            raise AnnotationError(
                f"{len(paths)} annotation files for {n} image(s); give one per image (or per stack), or one "
                "file covering all of them"
                + (f" ({folders[0]} is read as one image's masks, one object per file: give each image's "
                   "label image with its own -a)" if folders else "")
            )
        out = []
        for p, name in zip(paths, image_names, strict=True):
            if is_label_image(p):
                frames = label_frames(p)
                at = frames_of[len(out)]
                if len(frames) > 1 and at is not None:  # the label stack of a stack read at one frame (--frame)
                    if not 0 <= at < len(frames):
                        raise AnnotationError(f"{p}: frame {at} out of range 0..{len(frames) - 1}")
                    frames = [frames[at]]
                if len(frames) != 1:
                    raise AnnotationError(
                        f"{p}: holds {len(frames)} frames; with one file per image, each "
                        "must hold one label image"
                    )
                out.append(frames[0])
            else:
                shape = image_shapes[len(out)] if image_shapes is not None else None
                out.append(load_annotations(p, shape, label=label, image=name if is_coco_file(p) else None,
                                            name=name, at_frame=frames_of[len(out)]))
        return out
    path = paths[0]
    if is_label_image(path):
        frames = label_frames(path)
        if frame is not None and len(frames) > 1 and n == 1:
            if not 0 <= frame < len(frames):
                raise AnnotationError(f"{path}: --frame {frame} out of range 0..{len(frames) - 1}")
            return [frames[frame]]
        if len(frames) != n:
            if Path(path).is_dir() and n > 1:
                raise AnnotationError(
                    f"{path}: a folder is read as label images named as the images (X.tif beside X.tif, "
                    f"X_masks.png, X_labels.tif, ...) or as one image's masks (one object per file), but not every "
                    f"one of the {n} images has one label image there: give each image's label image with its own "
                    "-a, or a label stack with one frame per image")
            if Path(path).is_dir():
                raise AnnotationError(
                    f"{path}: a folder is read as one image's masks (one object per file), but {n} image(s) were "
                    "given; give each image's label image with its own -a, or a label stack with one frame per image")
            globbed = [name for name in image_names if Path(name).parent == Path(path).parent
                       and Path(name).suffix.lower() in LABEL_READ_SUFFIXES]
            raise AnnotationError(
                f"{path}: holds {len(frames)} label frame(s) but {n} image(s) were given; "
                "give a label stack with one frame per image"
                + (f" (did a wildcard after -a give {len(globbed)} label files as images? give their folder: "
                   f"-a {Path(path).parent}{'/' if str(Path(path).parent) != '.' else ''})"
                   if len(frames) == 1 and globbed else "")
            )
        return frames
    if is_coco_file(path):
        return load_annotation_set(path, image_names=list(image_names), label=label, image_frames=frames_of)
    if n != 1:
        raise AnnotationError(f"{path}: annotates one image but {n} image(s) were given")
    return [load_annotations(path, image_shapes[0] if image_shapes is not None else None, label=label)]


#: the endings a label image's name may add to its image's (``X.tif`` -> ``X_masks.png``):
#: Cellpose writes ``_masks``, others ``_labels``, ``_label``, ``_mask``, ``_seg``, ``_gt``
LABEL_NAME_ENDINGS = ("", "_masks", "_mask", "_labels", "_label", "_seg", "_gt")


def label_files_for(folder: PathLike, image_names: Sequence[str]) -> list[Path] | None:
    """Each image's label image in ``folder``, matched by name: a file of a label image's
    extension whose name is the image's without its extension, that name followed by one of
    ``LABEL_NAME_ENDINGS`` (``X.tif`` -> ``X.tif``, ``X.png``, ``X_masks.png``), the same
    ending for every image; ``None`` unless exactly one such ending gives every image exactly
    one file (a folder of one image's masks, one object per file, is named otherwise)."""
    files: dict[str, list[Path]] = {}
    for f in sorted(Path(folder).iterdir()):
        if f.is_file() and f.suffix.lower() in LABEL_READ_SUFFIXES:
            files.setdefault(f.stem, []).append(f)
    stems = [Path(str(name)).stem for name in image_names]
    if len(set(stems)) != len(stems):
        return None  # two images of one name in other folders: which is whose is not said
    found = [[files[stem + end] for stem in stems] for end in LABEL_NAME_ENDINGS
             if all(len(files.get(stem + end, ())) == 1 for stem in stems)]
    return [f for (f,) in found[0]] if len(found) == 1 else None


def _runs(names: Sequence[str], frames: Sequence[int | None]) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of one stack's frames in ``names`` (a name followed by the
    same name, each a frame of a stack); an image that is no stack's frame is a run of one."""
    runs: list[tuple[int, int]] = []
    for i, (name, f) in enumerate(zip(names, frames, strict=True)):
        if runs and f is not None and frames[runs[-1][0]] is not None and names[runs[-1][0]] == name:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def is_label_image(path: PathLike) -> bool:
    """Whether ``path`` names a label image file (by its extension), or a folder of masks
    (one object each: :func:`read_mask_folder`)."""
    return Path(path).suffix.lower() in LABEL_READ_SUFFIXES or Path(path).is_dir()


def needs_image_size(path: PathLike) -> bool:
    """Whether an annotation file carries no image size of its own (GeoJSON, a polygon list):
    reading it needs the image's ``(H, W)``. Label images, COCO, labelme and ``.npz`` carry one."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".geojson":
        return True
    if suffix != ".json":
        return False
    try:
        doc = read_json(path)
    except AnnotationError:
        return False  # said when it is read
    return not (is_coco(doc) or is_labelme(doc))


def is_coco_file(path: PathLike) -> bool:
    """Whether ``path`` is a ``.json`` file holding COCO annotations (``False`` when unreadable)."""
    path = Path(path)
    if path.suffix.lower() != ".json":
        return False
    try:
        return is_coco(read_json(path))
    except AnnotationError:
        return False


def _read_any(
    path: Path,
    image_shape: Sequence[int] | None,
    label: str | None,
    channel: int | None = None,
    frame: int | None = None,
    check: bool = True,
) -> list[Instances]:
    if not path.is_dir():  # a folder of masks is a label image
        check_exists(path)
    suffix = path.suffix.lower()
    if channel is not None and suffix not in (".tif", ".tiff", ".png", ".bmp", ".npy"):
        raise AnnotationError(f"{path}: channel= applies to label image files only, not {suffix or 'a folder'}")
    if suffix in LABEL_READ_SUFFIXES or path.is_dir():
        items = read_label_frames(path, label, channel, frame)
    elif suffix == ".npz":
        items = [read_npz(path, label)]
    elif suffix in (".json", ".geojson"):
        items = _read_json(path, image_shape, label)
    elif suffix == ".jsonl":
        raise AnnotationError(
            f"{path}: JSON lines (what `detect --jsonl` and `video --jsonl` write) are no annotation file: "
            f"their outlines are simplified; write the objects with `detect --coco FILE` (exact masks) or "
            f"`--geojson`, or `video --label-image FILE.tif` (read with --labels and --labels-frame), and give that"
        )
    else:
        raise AnnotationError(
            f"{path}: unsupported annotation format {suffix!r}; expected one of "
            + ", ".join(SUPPORTED_SUFFIXES)
        )
    if image_shape is not None and check:
        for it in items:
            check_hw(path, it.image_hw, image_shape, where=it.metadata.get("image"))
    for it in items:
        it.metadata.setdefault("source", str(path))
    return items


def _read_json(path: Path, image_shape: Sequence[int] | None, label: str | None) -> list[Instances]:
    doc = read_json(path)
    try:
        if is_coco(doc):
            return read_coco(path, doc, label)
        if is_labelme(doc):
            return [read_labelme(path, doc, image_shape, label)]
        if is_geojson(doc):
            return [read_geojson(path, doc, image_shape, label)]
        if _is_detect_record(doc):
            raise AnnotationError(
                f"{path}: this is what `sam-detect detect --json` prints, no annotation file: its polygons are "
                f"simplified outlines with holes filled; write the objects with `detect --coco FILE` (exact "
                f"masks), `--geojson FILE` or `--label-image FILE`, and give that"
            )
        return [read_polygons(path, doc, image_shape, label)]
    except AnnotationError as e:
        msg = str(e)
        if msg.startswith(str(path)):
            raise
        raise AnnotationError(f"{path}: {msg}") from e
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:  # a list of strings for shapes: .get
        raise AnnotationError(f"{path}: malformed annotation ({type(e).__name__}: {e})") from e


def _is_detect_record(doc: object) -> bool:
    """Whether ``doc`` is ``detect --json``'s output: one image's record (``image`` and its
    ``objects``) or a list of them."""
    def record(d: object) -> bool:
        return isinstance(d, dict) and isinstance(d.get("image"), str) and isinstance(d.get("objects"), list)

    return record(doc) or (isinstance(doc, list) and bool(doc) and all(record(d) for d in doc))


# ----------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------
def save_annotations(
    items: Instances | Sequence[Instances],
    path: PathLike,
    *,
    format: str | None = None,  # noqa: A002 - the word users know
    image_names: Sequence[str] | None = None,
    tolerance: float | None = None,
    use_rle: bool = False,
) -> Path:
    """Write annotations in the format ``format`` names, or by ``path``'s extension:
    ``.json`` COCO, ``.npz`` npz, a label image extension a label image (a TIFF stack for
    several images). ``labelme``, ``npz`` and ``polygons`` take one image. ``tolerance``:
    polygon simplification in pixels (``None``: 1 pixel, GeoJSON's exact pixel edges).
    COCO without a ``tolerance`` is compressed RLE, each mask exact, as ``detect --coco``
    writes it (with one, polygons; ``0`` exact too): polygons simplified by a pixel came
    back about 1% larger, fatter ground truth for ``eval``.

    Raises:
        AnnotationError: an unknown format or extension, or several images for a one-image format.
    """
    path = Path(path)
    image_names = image_names_of(image_names)
    fmt = format or _format_of(path)
    if fmt not in WRITE_FORMATS:
        raise AnnotationError(f"{path}: cannot write annotations as {fmt!r}; use one of {', '.join(WRITE_FORMATS)}")
    exact = tolerance is None  # COCO: RLE where no simplification is asked for
    tolerance = polygon_tolerance(fmt, tolerance)
    if fmt == "coco":
        return save_coco(items, path, image_names, use_rle=use_rle or exact, tolerance=tolerance)
    if fmt == "label_image":
        return save_label_image(items, path)
    seq = [items] if isinstance(items, Instances) else list(items)
    if len(seq) != 1:
        raise AnnotationError(f"{path}: a {fmt} file holds one image, got {len(seq)}; write COCO or a label stack")
    if fmt == "labelme":
        return save_labelme(seq[0], path, image_names[0] if image_names else None, tolerance=tolerance)
    if fmt == "geojson":
        return save_geojson(seq[0], path, tolerance=tolerance)
    if fmt == "npz":
        return save_npz(seq[0], path)
    return save_polygons(seq[0], path, tolerance=tolerance)


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "coco"
    if suffix == ".npz":
        return "npz"
    if suffix == ".geojson":
        return "geojson"
    if suffix in LABEL_IMAGE_SUFFIXES:
        return "label_image"
    raise AnnotationError(
        f"{path}: unsupported annotation format {suffix!r} to write; expected one of "
        + ", ".join((*LABEL_IMAGE_SUFFIXES, ".json", ".geojson", ".npz"))
    )


__all__ = [
    "DEFAULT_LABEL",
    "LABEL_IMAGE_SUFFIXES",
    "SUPPORTED_SUFFIXES",
    "WRITE_FORMATS",
    "instances_to_label_image",
    "is_coco_file",
    "is_geojson",
    "is_label_image",
    "label_image_to_instances",
    "load_annotation_set",
    "load_annotations",
    "load_ground_truth",
    "needs_image_size",
    "parse_type_names",
    "read_label_array",
    "read_label_image",
    "read_mask_folder",
    "read_polygon_file",
    "save_annotations",
    "save_coco",
    "save_geojson",
    "save_label_image",
    "save_labelme",
    "save_npz",
    "save_polygons",
    "to_coco",
    "to_geojson",
    "to_labelme",
    "typed_instances",
]
