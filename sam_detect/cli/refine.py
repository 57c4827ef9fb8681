"""``sam-detect refine``: turn rough annotations into SAM2 masks (:mod:`sam_detect.refine`)."""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import click

from sam_detect.cli._model_options import sam_options
from sam_detect.cli.validate import (
    finite,
    no_clashes,
    output_file,
    output_folder,
    printed_not_named,
)
from sam_detect.refine import RefineOptions


@contextlib.contextmanager
def _logged_warnings() -> Iterator[list[str]]:
    """The ``sam_detect`` logger's warnings while the block runs (a label image's ids read as
    classes of pieces, ...), held back instead of printed: refine shows them with its own
    warnings, ``-q`` none of them."""
    said: list[str] = []

    class Hold(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.append(record.getMessage())

    logger, hold = logging.getLogger("sam_detect"), Hold(logging.WARNING)
    propagate, logger.propagate = logger.propagate, False
    logger.addHandler(hold)
    try:
        yield said
    finally:
        logger.removeHandler(hold)
        logger.propagate = propagate


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
    default=RefineOptions.pad,
    help="Grow (+) or shrink (-) each box prompt by this many pixels per side.",
)
@click.option(
    "--grow",
    type=click.IntRange(-1000, 1000),
    default=RefineOptions.grow,
    help="Dilate (+) or erode (-) each refined mask by this many pixels.",
)
@click.option(
    "--smooth",
    type=finite(0),
    default=RefineOptions.smooth,
    help="Polygon simplification tolerance in pixels (0: keep every contour point).",
)
@click.option(
    "--keep-parts",
    is_flag=True,
    help="Keep every connected part of a refined mask "
    "(default: only the largest; labelme shapes always take the largest).",
)
@click.option(
    "--frame",
    type=click.IntRange(0),
    default=None,
    help="The frame (T/Z index) of a stack the annotations describe: a labelme file's or a label "
    "image's frame (of a label stack, that frame alone is refined). A COCO file whose images name "
    "their frames: only this frame's.",
)
@sam_options
@click.option("--sam-image-size", type=click.IntRange(64), default=None, hidden=True)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
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
    frame: int | None,
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
      sam-detect refine stack.tif --frame 3 -a frame3.json      # frame 3 of a stack
    """
    from sam_detect.io.images import iter_image_paths
    from sam_detect.refine import (
        ImageCountError,
        RefineStats,
        output_for,
        refine_file,
        refine_folder,
    )
    from sam_detect.segment.sam2 import SAM2Segmenter

    if in_place and output:
        raise click.BadParameter("give --output or --in-place, not both", param_hint="--in-place")
    if as_json:
        printed_not_named(images, "--json")
    paths = iter_image_paths(list(images))
    ann = Path(annotations)
    out = Path(output) if output else None
    if out is not None:  # checked before SAM2 loads
        if ann.is_dir():
            output_folder(out, "--output")
        else:
            output_file(out, "--output", what="the refined annotations")
            no_clashes(paths, {"--output": out})  # the refined file over an image: lost in silence
    seg = SAM2Segmenter(
        model=sam_model or "auto",
        checkpoint=sam_checkpoint,
        device=device,
        image_size=sam_image_size,
    )
    options = RefineOptions(pad=pad, grow=grow, smooth=smooth, keep_parts=keep_parts)
    stats = RefineStats()

    def note(msg: str) -> None:
        if not quiet:
            click.echo(f"sam-detect: {msg}", err=True)

    with warnings.catch_warnings(record=True) as caught, _logged_warnings() as logged:
        warnings.simplefilter("always")
        if ann.is_file():
            dst = output_for(ann, ann.parent, out, in_place, False)
            try:
                written = [refine_file(seg, paths, ann, dst, options, stats, note, frame)]
            except ImageCountError as e:
                raise click.BadParameter(str(e), param_hint="--annotations") from None
        else:
            written = refine_folder(seg, paths, ann, out, in_place, options, stats, note, frame)
    if not quiet:
        for w in caught:  # what the run says of the user's files; not the libraries' notices to their users
            if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning)):
                click.echo(f"sam-detect: warning: {w.message}", err=True)
        for msg in logged:
            click.echo(f"sam-detect: warning: {msg}", err=True)
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


__all__ = ["refine"]
