"""``sam-detect add``: add labelled examples to a library."""

from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

import click
import numpy as np

from sam_detect.cli.detect import apply_image_options, load_cli_image, merged_note
from sam_detect.cli.options import build_detector, pipeline_options, report_choices, report_profile
from sam_detect.cli.validate import label_option, refuse_new_reserved, type_names_option


def _label_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None or not value.strip():
        return value  # an empty label has its own message below
    return label_option(ctx, param, value)


def _once(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> str | None:
    """One file per ``add``: a repeated option is said, not its earlier values dropped."""
    if len(value) > 1:
        raise click.BadParameter(f"given {len(value)} times; give one file (run add once per image)",
                                 param_hint=param.opts[0])
    return value[0] if value else None


def _numbers(value: str, n: int, what: str, param: str) -> list[float]:
    try:
        parts = [float(v) for v in value.replace(" ", "").split(",")]
    except ValueError:
        parts = []
    if len(parts) != n or not all(math.isfinite(v) for v in parts):  # nan and inf parse as floats
        fmt = "x1,y1,x2,y2" if n == 4 else "x,y"
        raise click.BadParameter(f"{what} must be {n} comma-separated finite numbers {fmt}, got {value!r}",
                                 param_hint=param)
    return parts


def _coordinates(n: int):
    """A callback that checks every ``--box`` (``n`` 4) or ``--point`` (2) value as the
    option is read, before click reports the words after it: ``--box 19 32 68 78`` said
    "unexpected extra arguments (32 68 78)", and now says how to write the box. Gives each
    value as ``(text, numbers)``: the text for the messages that quote it."""

    def check(ctx: click.Context, param: click.Parameter,
              values: tuple[str, ...]) -> tuple[tuple[str, list[float]], ...]:
        flag = param.opts[0]
        out = []
        for value in values:
            try:
                out.append((value, _numbers(value, n, flag, flag)))
            except click.BadParameter as e:
                if "," not in value:
                    fmt = "X1,Y1,X2,Y2" if n == 4 else "X,Y"
                    raise click.BadParameter(f"{flag} takes {n} numbers joined by commas, no spaces ({flag} {fmt}); "
                                             f"got {value!r}", param_hint=flag) from None
                raise e from None
            if n == 4:  # inverted or of no area: an option's fault, said before any model loads
                from sam_detect.masks import box_fault

                fault = box_fault(out[-1][1])
                if fault is not None:
                    raise click.BadParameter(fault, param_hint=flag)
        return tuple(out)

    return check


def _check_label_size(lab, hw: tuple[int, int], path, image) -> None:
    """Refuse a ``--labels`` array ``lab`` read from ``path`` whose size is not ``image``'s ``hw``,
    in one line that names both files and both sizes (height x width)."""
    from sam_detect.errors import AnnotationError

    if lab.shape != tuple(hw):
        raise AnnotationError(f"--labels {path}: the label image is {lab.shape[0]}x{lab.shape[1]} pixels (height x "
                              f"width) and the image {Path(image).name} {hw[0]}x{hw[1]}: give the labels of this image")


def _typed(lab, types, names: dict[int, str], hw: tuple[int, int], quiet: bool):
    """The objects of ``lab`` labelled by the type map ``types`` (``--types``); ``lab`` has the
    image's size ``hw`` (:func:`_check_label_size`)."""
    from sam_detect.formats import typed_instances

    inst, untyped = typed_instances(lab, types, names)
    if untyped and not quiet:
        click.echo(f"{untyped} object(s) of --labels carry no type in --types (0 under them): not added", err=True)
    return inst


#: annotation formats that carry no class names: ``--label`` is needed with them, as with ``--labels``
_NAMELESS = {"label_image": "a label image", "polygons": "a polygon file"}
#: what names an object's class in each annotation format, for the lines on those that lack one
_CLASS_FIELD = {"labelme": "label", "coco": "category_id"}


def _many_in_mask(original: np.ndarray, mask: np.ndarray) -> str | None:
    """A line where a --mask is one example of several objects (:func:`~sam_detect.masks.many_in_mask`),
    which --labels adds one by one; else ``None``."""
    from sam_detect.masks import many_in_mask

    what = many_in_mask(original, mask)
    return None if what is None else f"{what}, added as ONE example; give it as --labels to add each object as an example"


def _named_only(inst: Any, label: str | None, name: str, quiet: bool) -> Any:
    """A GeoJSON's outlines without a classification (a labelme shape without a label, a COCO
    annotation without a category) are no class's examples where no
    --label names one (they read as "object", a class of their own beside the file's):
    refused where none has a class, left out with a line where some have. QuPath's cells
    (a ``nucleusGeometry`` beside the outline) are said to be read by their cell outlines."""
    cells = inst.metadata.get("cells", 0)
    if cells and not quiet:
        click.echo(f"sam-detect: {name}: {cells} feature(s) are QuPath cells (a nucleusGeometry beside the "
                   "outline): their cell outlines are read, not their nuclei", err=True)
    unnamed = inst.metadata.get("unnamed") or []
    if label is not None or not unnamed:
        return inst
    what = _CLASS_FIELD.get(inst.metadata.get("format"), "classification")
    if len(unnamed) == len(inst):
        raise click.UsageError(f"missing --label (or --negative): no outline of {name} carries a {what} "
                               "to name its class")
    keep = np.ones(len(inst), bool)
    keep[unnamed] = False
    if not quiet:
        click.echo(f"sam-detect: {name}: {len(unnamed)} of {len(inst)} outline(s) carry no {what}: left "
                   "out (give --label to add every outline as that one class)", err=True)
    kept = inst[keep]
    del kept.metadata["unnamed"]  # indices of the whole file's outlines: none of these
    return kept


#: how far apart in area the masks of one add's boxes and clicks may lie before stderr says so
#: (a click on a nucleus that took the stroma's gap round it: 35 px beside 10,348 px)
ODD_PROMPT_SPREAD = 30.0
#: a box whose mask fills under this share of it is said to have made a part of its object
#: (a box round a seated person on the VOC photo made its head: 615 px, 4 % of the box; a
#: nucleus fills 0.6-0.8 of a box drawn round it, a person 0.3-0.5)
BOX_FILL_FLOOR = 0.1


def odd_prompt_sizes(found: list, prompts: list[str], boxes: list | None = None) -> list[str]:
    """Lines on the masks that boxes and clicks (``found``, one ``Instances`` each) made, where
    they look wrong: two prompts that made one mask (a click that took the ground round its
    object takes the same ground from the next click), sizes more than
    ``ODD_PROMPT_SPREAD`` times apart, and a box (``boxes``: each prompt's XYXY box, ``None``
    for a click) whose mask fills under ``BOX_FILL_FLOOR`` of it. The profile's size range
    then spans both, and what the library finds changes, with no word."""
    from sam_detect.instances import Instances
    from sam_detect.masks import crop_intersections

    out = []
    for f, what, box in zip(found, prompts, boxes or [None] * len(prompts), strict=True):
        if box is not None and len(f):
            x1, y1, x2, y2 = (float(v) for v in box)
            fill = float(f.areas[0]) / max((x2 - x1) * (y2 - y1), 1.0)
            if fill < BOX_FILL_FLOOR:
                out.append(f"{what} made a mask of {int(f.areas[0])} px, {fill:.0%} of the box: a part of its "
                           "object? check it (--overlay on a detect of this image), or give it as --mask or --polygon")
    made = [(f, what) for f, what in zip(found, prompts, strict=True) if len(f)]
    if len(made) >= 2:
        merged = Instances.merge([f for f, _ in made])
        ii, jj, inter = crop_intersections(merged.crops)  # the pairs i < j that overlap
        areas = merged.areas.astype(np.float64)
        for i, j, v in zip(ii.tolist(), jj.tolist(), inter.tolist(), strict=True):
            if v / max(areas[i] + areas[j] - v, 1.0) >= 0.9:
                out.append(f"{made[i][1]} and {made[j][1]} made one mask ({int(areas[i])} px): one of them "
                           "may have taken the ground round its object; check them (--overlay on a detect "
                           "of this image), or give boxes")
        small, large = float(areas.min()), float(areas.max())
        if small > 0 and large / small > ODD_PROMPT_SPREAD:
            out.append(f"the {len(made)} prompts made masks of {', '.join(str(int(a)) for a in areas)} px, "
                       f"{large / small:.0f}x apart: a click may have taken the ground round its object, or "
                       "a piece of it; check them (--overlay on a detect of this image), or give boxes")
    return out


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--label", callback=_label_callback,
              help="Label of the example(s): one line of at most 100 characters, not 'unknown'. "
              "Required unless --annotations carries class names.")
@click.option("--negative", is_flag=True, help="Store as a negative example (a look-alike to suppress).")
@click.option("--box", "boxes", multiple=True, metavar="X1,Y1,X2,Y2", callback=_coordinates(4),
              help="A box around the object; the segmenter turns it into a mask (as the label's "
                   "examples propose it, once the library has some). Repeatable.")
@click.option("--point", "points", multiple=True, metavar="X,Y", callback=_coordinates(2),
              help="A point on the object; the segmenter turns it into a mask (as the label's "
                   "examples propose it, once the library has some). Repeatable.")
@click.option("--mask", "mask_paths", multiple=True, type=click.Path(exists=True),
              help="A mask image (non-zero = the object) of the same size as IMAGE, or a folder of them, "
                   "one object each (the masks/ folder of a Data Science Bowl sample). Repeatable.")
@click.option("--polygon", "polygon_paths", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A JSON or text file with the object's outline as x,y points. Repeatable.")
@click.option("--labels", "labels_path", type=click.Path(exists=True), multiple=True, callback=_once,
              help="A label image (0 = background, one id per object; or each object drawn in one flat "
                   "colour on black), or a folder of mask images, one object each: every object becomes "
                   "an example.")
@click.option("--labels-channel", type=click.IntRange(0), default=None,
              help="Channel of the --labels/--annotations file holding the labels (multi-channel files).")
@click.option("--labels-frame", type=click.IntRange(0), default=None,
              help="Frame of a --labels/--annotations stack to take the objects from (a 2-D IMAGE "
                   "labelled by one frame of a label stack). Default: --frame.")
@click.option("--types", "types_path", type=click.Path(exists=True, dir_okay=False), multiple=True, callback=_once,
              help="With --labels: a type map of the same size (each pixel its object's class as an integer, "
                   "0 = none; histology's instance map + type map). Each object takes the type most of its "
                   "pixels carry as its label; objects without one are left out.")
@click.option("--types-channel", type=click.IntRange(0), default=None,
              help="Channel of the --types file holding the types (e.g. 1 of an (H, W, 2) instance + type .npy).")
@click.option("--type-names", default=None, metavar="NAMES",
              help="Labels of the --types values: 'neoplastic,inflammatory' names 1, 2, ...; "
                   "'1=neoplastic,3=dead' names them by value. Default: 'type 1', 'type 2', ...")
@click.option("--annotations", "annotations_path", type=click.Path(exists=True, dir_okay=False), multiple=True,
              callback=_once,
              help="COCO, labelme, GeoJSON (QuPath), .npz or polygon annotations: every object becomes an example.")
@click.option("--label-from", type=click.Choice(["category"]), default=None,
              help="With --annotations: take each example's label from its category (the default without --label).")
@click.option("--limit", type=click.IntRange(1), default=None,
              help="Add at most this many objects from --labels/--annotations (the first ones; those "
                   "the image border cuts only after the whole ones).")
@click.option("--limit-per-label", type=click.IntRange(1), default=None,
              help="Add at most this many objects of each label from --labels/--annotations (the first "
                   "ones of each, whole ones first; with --types or the annotations' categories: N examples per class).")
@apply_image_options
@pipeline_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or stage report on stderr.")
def add(image, label, negative, boxes, points, mask_paths, polygon_paths, labels_path, labels_channel, labels_frame,
        types_path, types_channel, type_names, annotations_path, label_from, limit, limit_per_label, channels,
        frame, quiet, **opts) -> None:
    """Add labelled examples from IMAGE to a library (created on first use).

    Give the object(s) as exactly one of --box, --point, --mask, --polygon, --labels or
    --annotations. Nothing is written unless every example is embedded successfully.

    \b
    Examples:
      sam-detect add frame0.tif --label nucleus --labels frame0_labels.tif
      sam-detect add frame5.png --label nucleus --labels stack_labels.tif --labels-frame 5
      sam-detect add patch.png --labels inst.png --types type.png --type-names tumour,immune,stroma
      sam-detect add plate.png --label coin --box 10,20,60,70 --box 80,20,130,70
      sam-detect add cells.png --label nucleus --mask masks/
      sam-detect add plate.png --negative --point 200,150
    """

    from sam_detect.instances import NEGATIVE, Instances

    sources = {"--box": boxes, "--point": points, "--mask": mask_paths, "--polygon": polygon_paths,
               "--labels": labels_path, "--annotations": annotations_path}
    given = [k for k, v in sources.items() if v]
    # before the sources: `add img --types t.tif` gave none, and was told to give --box or --mask too
    if (types_path or types_channel is not None or type_names) and not labels_path:
        raise click.BadParameter("--types, --types-channel and --type-names go with --labels", param_hint="--types")
    if len(given) != 1:
        raise click.UsageError(
            "give exactly one of --box, --point, --mask, --polygon, --labels or --annotations"
            + (f" (got {', '.join(given)})" if given else "")
        )
    if negative:
        if label and label != NEGATIVE:
            raise click.BadParameter("--negative and --label are exclusive", param_hint="--negative")
        label = NEGATIVE
    if label is not None and not label.strip():
        raise click.BadParameter("the label must not be empty", param_hint="--label")
    if (types_channel is not None or type_names) and not types_path:
        raise click.BadParameter("--types-channel and --type-names need --types", param_hint="--type-names")
    if types_path and label is not None:
        given_as = "--negative" if negative else "--label"
        raise click.UsageError(f"give {given_as} (one label for every object) or --types (each object's own), not both")
    names = type_names_option(type_names)
    if label is None and not (annotations_path or types_path):
        raise click.UsageError("missing --label (or --negative)")
    if label_from and not annotations_path:
        raise click.BadParameter("--label-from needs --annotations", param_hint="--label-from")
    for value, flag in ((limit, "--limit"), (limit_per_label, "--limit-per-label")):
        if value is not None and not (labels_path or annotations_path):  # a mask, box or click is one object
            raise click.BadParameter(f"{flag} takes the first objects of --labels or --annotations; each --mask, "
                                     "--box, --point or --polygon is one example already (a label image of many "
                                     "objects goes to --labels)", param_hint=flag)
    if labels_frame is not None and not (labels_path or annotations_path):
        raise click.BadParameter("--labels-frame needs --labels or --annotations", param_hint="--labels-frame")

    loaded = load_cli_image(image, channels, frame)
    if loaded.planes and not quiet:  # a TIFF's 3 or 4 planes read as one colour image
        click.echo(f"sam-detect: {Path(image).name}: {loaded.planes}", err=True)
    elif (note := merged_note(loaded, then=", as `detect` will then need too")) is not None and not quiet:
        click.echo(f"sam-detect: {Path(image).name}: {note}", err=True)  # said before the work
    detector = build_detector(**opts)
    with detector:
        if not detector.open_library():  # a library in use or damaged fails now, before any model loads
            refuse_new_reserved(detector.store, detector.config.library, "--library")  # made by this add
        if boxes or points:
            from sam_detect.errors import AnnotationError

            found, empty = [], []  # every prompt is tried: those that find nothing are named together
            prompts = [("box", box) for _, box in boxes] + [("point", point) for _, point in points]
            for kind, value in prompts:
                try:
                    found.append(detector.prompt_to_instances(loaded, label=label, **{kind: value}))
                except AnnotationError as e:
                    if not str(e).startswith("no object found") or len(prompts) == 1:
                        raise
                    empty.append(str(e))
            if empty:  # all or nothing: the others are not added either (one bad box of ten lost nine in silence)
                raise AnnotationError(
                    f"{len(empty)} of {len(prompts)} prompts found nothing, so nothing was added: "
                    + "; ".join(empty) + " (draw those again, or leave them out)")
            inst = Instances.merge(found)
            inst.labels[:] = label
            if not quiet:
                for note in odd_prompt_sizes(found, [f"--box {b}" for b, _ in boxes] + [f"--point {p}" for p, _ in points],
                                             [box for _, box in boxes] + [None] * len(points)):
                    click.echo(f"sam-detect: {note}", err=True)
        elif mask_paths:
            from sam_detect.errors import AnnotationError, FrameRequiredError
            from sam_detect.formats import read_mask_folder
            from sam_detect.io.images import load_image
            from sam_detect.masks import LOSSY_SUFFIXES, lossy_mask, mask_of_image

            made = []
            for m in mask_paths:
                if os.path.isdir(m):
                    made.append(detector.annotations_to_instances(read_mask_folder(m), loaded.rgb.shape[:2]))
                    continue
                try:
                    original = load_image(m).original
                except FrameRequiredError as e:  # its message offers `--frame` and `video`, for an image
                    raise AnnotationError(
                        f"{m}: holds a stack of {e.n_frames} frames, not one mask: give --mask one frame's "
                        f"mask saved alone, or the label stack as --labels {m} --labels-frame K (every object "
                        "of frame K an example)") from None
                if Path(m).suffix.lower() in LOSSY_SUFFIXES and (lossy := lossy_mask(original)) is not None:
                    original = lossy  # the compression's noise round the mask is no part of it
                    if not quiet:
                        click.echo(f"sam-detect: {Path(m).name}: a JPEG, whose compression blurs the mask's "
                                   "edge: read as its pixels above half its maximum (save masks as PNG or "
                                   "TIFF to keep them exact)", err=True)
                made.append(detector.prompt_to_instances(loaded, mask=mask_of_image(original)))
                if (note := _many_in_mask(original, made[-1].masks[0])) and not quiet:
                    click.echo(f"sam-detect: {Path(m).name}: {note}", err=True)
            inst = Instances.merge(made)
            inst.labels[:] = label
        elif polygon_paths:
            inst = Instances.merge([_polygon_example(detector, loaded, f) for f in polygon_paths])
            inst.labels[:] = label
        elif labels_path:
            from sam_detect.formats import read_label_array

            at = frame if labels_frame is None else labels_frame
            # refused there: an intensity image, and a --labels-frame that a one-frame file lacks
            lab = read_label_array(labels_path, at, labels_channel, strict=labels_frame is not None,
                                   frames=loaded.n_frames)
            _check_label_size(lab, loaded.rgb.shape[:2], labels_path, image)
            if types_path:
                inst = _typed(lab, read_label_array(types_path, at, types_channel, pieces=False,
                                                    frames=loaded.n_frames if labels_frame is None else None), names,
                              loaded.rgb.shape[:2], quiet)
            else:
                inst = detector.annotations_to_instances(lab, loaded.rgb.shape[:2])
                inst.labels[:] = label
        else:
            from sam_detect.formats import load_annotations

            inst = load_annotations(annotations_path, image_shape=loaded.rgb.shape[:2],
                                    image=frame if labels_frame is None else labels_frame,
                                    channel=labels_channel, name=str(image))  # a path tells B1/image.tif from A1/
            from sam_detect.formats.labelme import check_drawn_on

            check_drawn_on(inst, loaded.rgb, Path(annotations_path).name)
            if label is None and inst.metadata.get("format") in _NAMELESS:
                raise click.UsageError(f"missing --label (or --negative): {Path(annotations_path).name} is "
                                       f"{_NAMELESS[inst.metadata['format']]}, which names no class")
            inst = _named_only(inst, label, Path(annotations_path).name, quiet)
            if label is not None:
                inst.labels[:] = label
            else:  # class names from the file follow the label policy too
                from sam_detect.names import check_label

                for name in sorted({n for n in inst.labels if isinstance(n, str)}):
                    check_label(name)
            inst = _without_empty(inst)
        from sam_detect.pipeline import not_objects

        regions = not_objects(inst) if len(inst) > 1 else {}
        if regions:  # QuPath's annotation of the area, a label image's ground: skipped, said
            click.echo(f"sam-detect: {len(regions)} annotation(s) left out, not objects: "
                       + "; ".join(f"{i} {why}" for i, why in list(regions.items())[:3]), err=True)
            inst = inst[np.array([i not in regions for i in range(len(inst))], bool)]
        whole = inst  # the image's whole annotation: does it leave out the objects the border cuts?
        if limit_per_label is not None:
            inst = _per_label(inst, limit_per_label, quiet)
        if limit is not None and limit < len(inst):
            order = _whole_first(inst)
            kept = inst[np.sort(order[:limit])]
            if not quiet:
                lost = sorted({str(x) for x in inst.labels} - {str(x) for x in kept.labels})
                passed = int(np.sum(order[:limit] >= limit))  # the first ones passed over: cut by the border
                click.echo(f"sam-detect: --limit {limit} keeps the first {limit} of {len(inst)} objects"
                           + (f", whole ones first ({passed} the image border cuts passed over)" if passed else "")
                           + (f"; no example left of: {', '.join(lost)} (give a label image of the objects "
                              "wanted, or a larger --limit)" if lost else ""), err=True)
            inst = kept
        # objects the library holds already (the same object, label and image) are not added
        # again, and their places in the returned ids hold the stored examples' ids: this add's
        # own examples are the ids not held before. (Label counts before and after also counted
        # what another process added meanwhile as added here.)
        held = detector._examples_of_image(loaded.rgb, every=True)
        held = set() if held is None else {str(i) for i in held.data["example_id"]}
        ids = detector.add_examples(loaded, inst, progress=not quiet, annotation=whole)
        report_choices(detector, quiet)
        report_profile(detector, quiet)
        counts = detector.store.labels(detector.config.library)
    # a label as the library stores it: stripped (names.check_label)
    added = Counter(str(lab).strip() for i, lab in zip(ids, inst.labels, strict=True) if i not in held)
    summary = f" ({', '.join(f'{k}: {v}' for k, v in sorted(added.items()))})" if added else ""
    total = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    click.echo(f"added {sum(added.values())} example(s){summary} to library '{detector.config.library}' — now {total}")


def _polygon_example(detector, loaded, path: str):
    """The example a ``--polygon`` file draws, its errors naming the file (a file of two points
    said "a polygon needs at least 3 (x, y) points" without saying which of the files)."""
    from sam_detect.errors import AnnotationError
    from sam_detect.formats import read_polygon_file

    try:
        return detector.prompt_to_instances(loaded, polygon=read_polygon_file(path))
    except AnnotationError as e:
        if str(e).startswith(str(path)):
            raise
        raise AnnotationError(f"{path}: {e}") from None


def _whole_first(inst) -> np.ndarray:
    """``inst``'s indices, the objects the image border cuts after the others, each part in
    its order: what ``--limit`` and ``--limit-per-label`` take the first of. A cut object shows
    only part of its shape and size: ten examples taken from the top of a label image numbered
    row by row, most of them cut, found 0.757 of a development set's neural cells against
    0.815 with the first ten whole ones (docs/performance.md, session 74). Cut as the
    border convention counts them (:func:`sam_detect.unlabelled.cut_in_annotation`)."""
    from sam_detect.unlabelled import cut_in_annotation

    return np.argsort(cut_in_annotation(inst), kind="stable")


def _per_label(inst, n: int, quiet: bool):
    """The first ``n`` objects of each label of ``inst`` (in their order, whole ones first:
    :func:`_whole_first`), said on stderr where some are left out: the held-out histology
    protocol's "16 examples per type, or all a type has" from one instance + type map."""
    seen: dict[str, int] = {}
    keep = np.zeros(len(inst), bool)
    for i in _whole_first(inst):
        name = inst.labels[i]
        seen[str(name)] = seen.get(str(name), 0) + 1
        keep[i] = seen[str(name)] <= n
    if keep.all():
        return inst
    if not quiet:
        left = ", ".join(f"{k}: {min(v, n)} of {v}" for k, v in sorted(seen.items()))
        click.echo(f"sam-detect: --limit-per-label {n} keeps the first {n} objects of each label ({left})", err=True)
    return inst[keep]


def _without_empty(inst):
    """``inst`` less its annotations that cover no pixel of the image (a polygon under a
    pixel, which pycocotools fills with nothing, or one outside the image), said on stderr
    by their ids: one such annotation must not keep the file's other examples out.

    Raises:
        AnnotationError: every annotation is empty (nothing to add)."""
    from sam_detect.errors import AnnotationError

    empty = np.flatnonzero(inst.areas == 0)
    if not len(empty):
        return inst
    ids = inst.data.get("source_id")
    named = ", ".join(f"id {int(ids[i])}" if ids is not None else f"#{int(i)}" for i in empty[:3]) + (
        ", ..." if len(empty) > 3 else "")
    if len(empty) == len(inst):
        raise AnnotationError(f"no annotation covers a pixel of the image ({named}): polygons under a pixel, or "
                              "outside the image? Check that the file was made for this image")
    click.echo(f"sam-detect: {len(empty)} annotation(s) left out, empty (they cover no pixel of the image): {named}",
               err=True)
    return inst[inst.areas > 0]
