"""``sam-detect detect``: find and label objects in images."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from sam_detect.cli._stack import stack
from sam_detect.cli.options import (
    build_detector,
    classify_options,
    pipeline_options,
    report_choices,
    report_profile,
)
from sam_detect.cli.validate import finite

apply_image_options = stack(
    [
        click.option("--channel", "channels", type=int, multiple=True,
                     help="Channel(s) of a multi-channel image to use (repeat to merge). Default: all."),
        click.option("--frame", type=click.IntRange(0), default=None,
                     help="Frame (T/Z index) of a multi-frame TIFF stack."),
    ]
)


def load_cli_image(path: str | Path, channels: tuple[int, ...] = (), frame: int | None = None):
    """Load an image with the --channel/--frame options applied."""
    from sam_detect.io.images import load_image

    channel = None if not channels else (channels[0] if len(channels) == 1 else list(channels))
    return load_image(path, channel=channel, frame=frame)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("images", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document with every object.")
@click.option("--jsonl", is_flag=True, help="Print one JSON line per image (streams as it goes).")
@click.option("--coco", "coco_path", type=click.Path(dir_okay=False, writable=True),
              help="Also write COCO instance JSON (RLE masks) to this file.")
@click.option("--overlay", "overlay_path", type=click.Path(),
              help="Write an overlay image (.png, .jpg, .tif, ...), or into a folder (an existing folder, "
              "a name ending in '/', or whenever several images are given) one <name>_overlay.png per image.")
@click.option("--tolerance", type=finite(0), default=1.0, show_default=True,
              help="Polygon simplification in pixels (0 keeps every contour point).")
@click.option("--no-polygons", is_flag=True, help="Leave polygons out of the JSON.")
@apply_image_options
@classify_options
@pipeline_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or stage report on stderr.")
def detect(images, as_json, jsonl, coco_path, overlay_path, tolerance, no_polygons, channels, frame, quiet,
           **opts) -> None:
    """Find and label objects similar to the library's examples.

    IMAGES are files, folders or globs (PNG, JPEG, TIFF; 8/16-bit, multi-channel).
    Results go to stdout (a summary, --json or --jsonl); the stages used go to stderr.

    \b
    Examples:
      sam-detect detect frame5.tif --json
      sam-detect detect 'plates/*.png' --jsonl --coco found.json --overlay overlays/
    """
    from sam_detect.cli.validate import IMAGE_OUTPUT_SUFFIXES, output_file, output_folder
    from sam_detect.errors import ImageLoadError
    from sam_detect.io.images import iter_image_paths
    from sam_detect.outputs import image_record, render_overlay, save_image, to_coco, write_json

    if as_json and jsonl:
        raise click.BadParameter("choose one of --json and --jsonl", param_hint="--json")
    paths = iter_image_paths(list(images))
    # Outputs are checked before any work: a bad folder or format costs a second, not a detection.
    output_file(coco_path, "--coco", what="a COCO JSON file")
    overlay_dir = None
    if overlay_path:
        as_folder = len(paths) > 1 or overlay_path.endswith(("/", os.sep)) or Path(overlay_path).is_dir()
        if as_folder:
            overlay_dir = output_folder(overlay_path, "--overlay")
        else:
            output_file(overlay_path, "--overlay", IMAGE_OUTPUT_SUFFIXES, what="an overlay image")

    failures = 0
    records, coco_items = [], []
    detector = build_detector(**opts)
    with detector:
        detector.check_library(create=False)  # fail fast on a missing or mismatched library
        detector.segmenter  # noqa: B018 - build it now so the report names it
        report_choices(detector, quiet)
        report_profile(detector, quiet)
        progress = None
        iterator = paths
        if len(paths) > 1 and not quiet:
            from tqdm.auto import tqdm

            progress = tqdm(paths, desc="detecting", unit="image", file=sys.stderr)
            iterator = progress
        for path in iterator:
            try:
                loaded = load_cli_image(path, channels, frame)
            except ImageLoadError as e:
                if len(paths) == 1:
                    raise
                failures += 1
                click.echo(f"Error: {e} (skipped)", err=True)
                continue
            found = detector.detect(loaded)
            if not quiet:
                for note in found.metadata.get("notes", []):
                    click.echo(f"sam-detect: {Path(path).name}: {note}", err=True)
            rec = image_record(found, str(path), polygons=not no_polygons, tolerance=tolerance)
            if jsonl:
                click.echo(json.dumps(rec))
            else:
                records.append(rec)
            if coco_path:
                coco_items.append((str(path), found))
            if overlay_path:
                target = overlay_dir / f"{Path(path).stem}_overlay.png" if overlay_dir else Path(overlay_path)
                save_image(render_overlay(loaded.rgb, found), target)
        if progress is not None:
            progress.close()

    if as_json:
        click.echo(json.dumps(records[0] if len(records) == 1 else records))
    elif not jsonl:
        for rec in records:
            counts = ", ".join(f"{k}: {v}" for k, v in sorted(rec["counts"].items())) or "nothing found"
            click.echo(f"{rec['image']}: {rec['count']} objects ({counts}) in {rec['timings'].get('total', 0):.2f}s")
    if coco_path:
        write_json(to_coco(coco_items), coco_path)
        if not quiet:
            click.echo(f"sam-detect: wrote COCO annotations to {coco_path}", err=True)
    if failures:
        raise click.ClickException(f"{failures} of {len(paths)} images could not be read")
