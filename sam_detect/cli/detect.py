"""``sam-detect detect``: find and label objects in images."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from sam_detect.cli._stack import stack
from sam_detect.cli.options import (
    build_detector,
    classify_options,
    pipeline_options,
    report_choices,
    report_profile,
    report_type_map,
)
from sam_detect.cli.validate import IMAGE_OUTPUT_SUFFIXES, finite, no_clashes, printed_not_named
from sam_detect.errors import AnnotationError, SettingError

apply_image_options = stack(
    [
        click.option("--channel", "channels", type=click.IntRange(0), multiple=True,
                     help="Channel(s) of a multi-channel image to use (repeat to merge). Default: all."),
        click.option("--frame", type=click.IntRange(0), default=None,
                     help="Frame (T/Z index) of a multi-frame TIFF or .npy stack."),
    ]
)


def load_cli_image(path: str | Path, channels: tuple[int, ...] = (), frame: int | None = None):
    """Load an image with the --channel/--frame options applied."""
    from sam_detect.io.images import load_image

    channel = None if not channels else (channels[0] if len(channels) == 1 else list(channels))
    return load_image(path, channel=channel, frame=frame)


def merged_note(loaded, also: str = "", then: str = "") -> str | None:
    """The line ``add`` and ``eval`` say where every channel of a multi-channel image is read
    merged (label or transmitted-light channels too), ``also`` and ``then`` put in it; else
    ``None``."""
    reading = loaded.reading
    if reading is None or reading["channel"] is not None:
        return None
    return (f"its {reading['of']} channels are read merged into one image (their maximum){also}; give --channel K "
            f"to read channel K alone (the objects' stain){then}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("images", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document with every object.")
@click.option("--jsonl", is_flag=True, help="Print one JSON line per image (streams as it goes).")
@click.option("--coco", "coco_path", type=click.Path(dir_okay=False, writable=True),
              help="Also write COCO instance JSON (RLE masks) to this file.")
@click.option("--overlay", "overlay_path", type=click.Path(),
              help="Write an overlay image (.png, .jpg, .tif, ...), or into a folder (an existing folder, "
              "a name ending in '/', or whenever several images are given) one <name>_overlay.png per image. "
              "A dim image is shown brightened, as a viewer's automatic contrast would.")
@click.option("--label-image", "label_path", type=click.Path(),
              help="Also write the objects as a label image (0 = background; the JSON's object id k is "
              "value k + 1; a pixel two objects share, the smaller one's): a .tif/.tiff/.png/.npy file, or "
              "into a folder (as --overlay) one "
              "<name>_labels.tif per image.")
@click.option("--type-map", "type_path", type=click.Path(),
              help="Also write each object's class as a type map (0 = background; classes numbered as "
              "--coco numbers them: the library's labels, and 'unknown' with --keep-unknown, in sorted order, "
              "from 1): a file, or into a folder "
              "one <name>_types.tif per image.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False),
              help="Also write one table row per object (image, id, label, confidence, similarity, area, "
              "centroid, box) to this CSV file, every image in one file.")
@click.option("--geojson", "geojson_path", type=click.Path(),
              help="Also write the objects as GeoJSON outlines with their classes (QuPath imports it): a "
              ".geojson file, or into a folder one <name>.geojson per image.")
@click.option("--tolerance", type=finite(0), default=None,
              help="Polygon simplification in pixels (0 keeps every contour point): the JSON's polygons "
              "1 by default; --geojson outlines run exactly on the pixels' edges unless it is given.")
@click.option("--no-polygons", is_flag=True, help="Leave polygons out of the JSON.")
@apply_image_options
@classify_options
@pipeline_options
@click.option("--cluster", default=None, metavar="local[:N]|ADDRESS",
              help="Run on Dask workers: local:N starts N workers on this machine (local: one per core this "
              "process may use), an address "
              "(tcp://host:8786) joins a running scheduler. Needs pip install 'sam-detect[cluster]'.")
@click.option("--resume", "resume_path", type=click.Path(dir_okay=False), default=None,
              help="Append each image's JSON line to this file as it finishes; images already in it "
              "(from an interrupted run) are skipped.")
@click.option("--slide", is_flag=True,
              help="Whole-slide mode: read each TIFF lazily in overlapping tiles, detect tile by tile "
              "(on the cluster's workers with --cluster) and merge objects across the seams.")
@click.option("--slide-tile", type=click.IntRange(256), default=2048,
              help="Side of a whole-slide tile in pixels (neighbours share 128).")
@click.option("--slide-level", type=click.IntRange(0), default=0,
              help="Pyramid level of the slide to read (0: full resolution).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or stage report on stderr.")
def detect(images, as_json, jsonl, coco_path, overlay_path, label_path, type_path, csv_path, geojson_path, tolerance,
           no_polygons, channels, frame,
           cluster, resume_path, slide, slide_tile, slide_level, quiet, **opts) -> None:
    """Find and label objects similar to the library's examples.

    IMAGES are files, folders or globs (PNG, JPEG, TIFF; 8/16-bit, multi-channel).
    Results go to stdout (a summary, --json or --jsonl); the stages used go to stderr.

    \b
    Examples:
      sam-detect detect frame5.tif --json
      sam-detect detect 'plates/*.png' --jsonl --coco found.json --overlay overlays/
      sam-detect detect patch.png --label-image patch_labels.tif --type-map patch_types.tif
      sam-detect detect patches/ --geojson outlines/        # one <name>.geojson per image, for QuPath
      sam-detect detect plates/ --cluster local:2 --resume plates.jsonl
    """
    from sam_detect.cli.validate import output_file
    from sam_detect.formats._common import polygon_tolerance, write_json
    from sam_detect.outputs import predictions_to_coco, write_bytes

    if as_json and jsonl:
        raise click.BadParameter("choose one of --json and --jsonl", param_hint="--json")
    if as_json or jsonl:
        printed_not_named(images, "--json" if as_json else "--jsonl")
    if resume_path and coco_path:
        raise click.BadParameter(
            "--coco needs every image's masks from this run; with --resume, make COCO from the "
            "finished run without --resume", param_hint="--resume")
    if slide and (overlay_path or label_path or type_path or channels or frame is not None):
        raise click.BadParameter("--slide reads the slide in tiles and draws no overlay or label image of it; "
                                 "leave out --overlay, --label-image, --type-map, --channel and --frame "
                                 "(--coco and --geojson hold its objects)", param_hint="--slide")
    ctx = click.get_current_context()
    for option in ("slide_tile", "slide_level"):
        if not slide and ctx.get_parameter_source(option) is not click.core.ParameterSource.DEFAULT:
            raise click.BadParameter("it applies to whole slides only: add --slide (or leave it out)",
                                     param_hint="--" + option.replace("_", "-"))
    if cluster is not None:
        from sam_detect.cluster import parse_cluster

        try:
            parse_cluster(cluster)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--cluster") from None
    paths = iter_paths(images)
    if frame is not None and len(paths) == 1:
        # a frame (or channel) the one file does not hold is said before the library, the
        # segmenter and the network load: reading one frame costs little beside them
        load_cli_image(paths[0], channels, frame)
    # Outputs are checked before any work: a bad folder or format costs a second, not a detection.
    output_file(coco_path, "--coco", what="a COCO JSON file")
    output_file(csv_path, "--csv", (".csv", ".tsv", ".txt"), what="a CSV table")
    overlay = _output_target(overlay_path, "overlay", paths) if overlay_path else None
    maps = {kind: _output_target(path, kind, paths)
            for kind, path in (("labels", label_path), ("types", type_path), ("geojson", geojson_path)) if path}
    if resume_path and [kind for kind, (_, folder) in maps.items() if not folder]:
        # one file for one image: a resumed image's masks are not in the resume file (a folder
        # of one file per image keeps what the earlier run wrote)
        raise click.BadParameter("--label-image, --type-map and --geojson of one image need its masks from this run; "
                                 "leave out --resume (or give them a folder)", param_hint="--resume")
    no_clashes(paths, {"--coco": coco_path, "--csv": csv_path, "--resume": resume_path, **{
        _OUTPUTS[kind][0]: None if target[1] else str(target[0])
        for kind, target in (({"overlay": overlay} if overlay else {}) | maps).items()}})
    resumed: dict = {}
    if resume_path:
        output_file(resume_path, "--resume", what="a JSON-lines file")
        from sam_detect.cluster import read_resume

        # by the file each record names, however its path was spelled, and its frame; a file
        # that holds something else (a COCO file, an image) is refused, not appended to and cut
        try:
            resumed = read_resume(resume_path)
        except SettingError as e:
            raise click.BadParameter(str(e), param_hint="--resume") from None

    failures = 0
    records, coco_items = [], []
    detector = build_detector(**opts)
    with detector:
        detector.check_library(create=False)  # fail fast on a missing or mismatched library
        detector.segmenter  # noqa: B018 - build it now so the report names it
        report_choices(detector, quiet)
        report_profile(detector, quiet)
        from sam_detect.outputs import output_classes

        # every class in the COCO file, found or not, numbered alike in the type map; with
        # --keep-unknown, "unknown" too, in its sorted place (it was 0 in the type map)
        classes = output_classes(detector) if (coco_path or maps) else []
        if "types" in maps:
            report_type_map(classes, quiet)
        from sam_detect.cluster import resume_key

        if resume_path:  # records made otherwise (another library, slide level) are not this run's
            from sam_detect.cluster import (
                RESUME_KEY,
                RESUME_ONLY,
                RESUME_SETTINGS,
                other_settings,
                resume_settings,
            )

            settings = resume_settings(detector.config, detector.store, channels=list(channels) or None,
                                       slide=[slide_level, slide_tile] if slide else None,
                                       outlines=None if no_polygons else polygon_tolerance("json", tolerance))
            if (differ := other_settings(resumed, settings)) is not None:
                raise click.ClickException(f"{resume_path} holds records made with other settings: {differ}; "
                                           "give this run another --resume file (or delete that one)")
        keys = {str(p): resume_key(p, frame) for p in paths} if resumed else {}
        todo = [p for p in paths if keys.get(str(p)) not in resumed]
        if resumed and not quiet:
            click.echo(f"sam-detect: resume: {len(paths) - len(todo)} of {len(paths)} images already "
                       f"in {resume_path}", err=True)
        if cluster is not None:
            detector.close()  # workers read a snapshot of the library; the client holds no lock
            if not quiet:
                click.echo(f"sam-detect: cluster: {cluster}", err=True)
        json_tolerance = polygon_tolerance("json", tolerance)
        if slide:
            results = _slide_results(detector, todo, cluster, quiet, bool(coco_path or maps), no_polygons,
                                     json_tolerance, slide_tile, slide_level)
        else:
            results = _results(detector, todo, cluster, quiet, overlay, bool(coco_path or maps),
                               no_polygons, json_tolerance, channels, frame)
        resume_fh = None
        names = None  # each image's name in an output folder (unique_stems), made at the first need
        shown = shown_names(paths)  # each image as stderr names it
        if resume_path:
            from sam_detect.cluster import open_resume

            resume_fh = open_resume(resume_path)
        unwritten: dict[str, int] = {}  # resumed images whose per-image files no earlier run left
        interrupted = False
        try:
            stopped, undone = None, 0  # the error that stopped the run (a library deleted meanwhile), images left
            for path in paths:  # results come in input order; resumed records keep their place
                if keys.get(str(path)) in resumed:
                    rec = {k: v for k, v in resumed[keys[str(path)]].items() if k not in RESUME_ONLY}
                    _emit(rec, jsonl, records, bool(csv_path))
                    if maps or overlay:  # their files are an earlier run's: said where there are none
                        names = names or _folder_names(paths, quiet)
                        name = _name_in_folder(names, path, rec)
                        for kind, target in (({"overlay": overlay} if overlay else {}) | maps).items():
                            if not _target_file(target, kind, name).exists():
                                unwritten[kind] = unwritten.get(kind, 0) + 1
                    continue
                if stopped is not None:  # not detected: the resumed records after it are still given
                    failures += 1
                    undone += 1
                    continue
                res = next(results)
                if res.error is not None:
                    if len(paths) == 1:
                        raise click.ClickException(res.error)
                    if res.fatal:  # every image after it would fail alike: the run stops, its results kept
                        stopped = res.error
                        failures += 1
                        undone += 1
                        continue
                    failures += 1
                    click.echo(f"Error: {res.error} (skipped)", err=True)
                    continue
                if not quiet:
                    for note in res.notes:
                        click.echo(f"sam-detect: {shown[str(path)]}: {note}", err=True)
                if resume_fh is not None:
                    from sam_detect.cluster import append_line

                    append_line(resume_fh, {**res.record, RESUME_SETTINGS: settings,
                                            RESUME_KEY: resume_key(path, frame)})
                _emit(res.record, jsonl, records, bool(csv_path))
                if coco_path:  # a stack's frame is in its metadata (detect_one): the image record says it
                    coco_items.append((str(path), res.instances))
                if maps or res.overlay is not None:
                    names = names or _folder_names(paths, quiet)
                name = _name_in_folder(names, path, res.record) if names else ""
                try:  # a file that cannot be written costs that file, not the run's other outputs
                    if maps:
                        _write_maps(maps, name, res.instances, classes, tolerance)
                    if res.overlay is not None:
                        write_bytes(res.overlay, _target_file(overlay, "overlay", name))
                except (OSError, ValueError, AnnotationError) as e:
                    failures += 1
                    click.echo(f"Error: {shown[str(path)]}: an output could not be written: {e}", err=True)
            if stopped is not None:
                click.echo(f"Error: {stopped}; stopped: {undone} image(s) not detected", err=True)
        except KeyboardInterrupt:  # Ctrl-C: the images done are said, and how to go on from them
            interrupted = True
        finally:
            results.close()
            if resume_fh is not None:
                resume_fh.close()
        if unwritten and not quiet:
            said = ", ".join(f"{n} {_OUTPUTS[kind][0]}" for kind, n in unwritten.items())
            click.echo(f"sam-detect: resume: images taken from {resume_path} have no file from an earlier run in the "
                       f"output folder ({said}): run them without --resume to make those", err=True)

    if as_json:
        click.echo(json.dumps(records[0] if len(records) == 1 else records))
    elif not jsonl:
        for rec in records:
            counts = ", ".join(f"{k}: {v}" for k, v in sorted(rec["counts"].items())) or "nothing found"
            total = rec["timings"].get("total")  # a slide's record has no timings
            took = "" if total is None else f" in {total:.2f}s"
            click.echo(f"{rec['image']}: {rec['count']} objects ({counts}){took}")
    if interrupted:
        how = (f"their results are in {resume_path}: run the same command again to go on" if resume_path
               else "--resume FILE keeps each image's result as it finishes, for a run that goes on")
        unsaid = [flag for flag, path in (("--csv", csv_path), ("--coco", coco_path)) if path]
        click.echo(f"sam-detect: interrupted after {len(records)} of {len(paths)} images ({how})"
                   + (f"; {' and '.join(unsaid)} not written" if unsaid else ""), err=True)
        raise SystemExit(130)
    # each of the run's files on its own: one that cannot be written costs that one alone
    lost = 0
    if csv_path:
        from sam_detect.outputs import write_csv

        try:
            write_csv(records, csv_path)
            if not quiet:
                click.echo(f"sam-detect: wrote {sum(r.get('count', 0) for r in records)} rows to {csv_path}",
                           err=True)
        except OSError as e:
            lost += 1
            click.echo(f"Error: cannot write --csv {csv_path}: {e.strerror or e}", err=True)
    if coco_path:
        try:
            write_json(coco_path, predictions_to_coco(coco_items, classes), indent=1)
            if not quiet:
                click.echo(f"sam-detect: wrote COCO annotations to {coco_path}", err=True)
        except OSError as e:
            lost += 1
            click.echo(f"Error: cannot write --coco {coco_path}: {e.strerror or e}", err=True)
    if failures or lost:
        said = ([f"{failures} of {len(paths)} images failed"] if failures else []) + \
            ([f"{lost} output file(s) could not be written"] if lost else [])
        raise click.ClickException("; ".join(said) + " (see the errors above)")


#: per-image outputs: option, file suffixes (``None``: a label image's, by what it holds), what
#: it is, its name in a folder
_OUTPUTS = {
    "overlay": ("--overlay", IMAGE_OUTPUT_SUFFIXES, "an overlay image", "{}_overlay.png"),
    "labels": ("--label-image", None, "a label image", "{}_labels.tif"),
    "types": ("--type-map", None, "a type map", "{}_types.tif"),
    "geojson": ("--geojson", (".geojson", ".json"), "a GeoJSON file", "{}.geojson"),
}


def _output_target(path: str, kind: str, paths) -> tuple[Path, bool]:
    """``(path, is a folder)`` of a per-image output (``_OUTPUTS``), checked before any work:
    a folder when several images are given, the name ends in a separator or names a folder."""
    from sam_detect.cli.validate import output_file, output_folder
    from sam_detect.formats.label_image import LABEL_IMAGE_SUFFIXES, LABEL_WRITE_SUFFIXES

    option, suffixes, what, in_folder = _OUTPUTS[kind]
    if suffixes is None:  # a type map's 8 bits fit a BMP; a label image's ids do not
        suffixes = LABEL_IMAGE_SUFFIXES if kind == "types" else LABEL_WRITE_SUFFIXES
    if len(paths) > 1 and Path(path).suffix.lower() in suffixes and not Path(path).is_dir():
        # a folder named like one file (labels.tif/) would hold every image's: said, not made
        raise click.BadParameter(
            f"{len(paths)} images give {what} each: name a folder for them (e.g. {Path(path).stem}/, "
            f"which gets {in_folder.format('<image name>')} files), not the file {path!r}", param_hint=option)
    if len(paths) > 1 or path.endswith(("/", os.sep)) or Path(path).is_dir():
        return output_folder(path, option), True
    output_file(path, option, suffixes, what=what)
    return Path(path), False


def _target_file(target: tuple[Path, bool], kind: str, name: str) -> Path:
    """The file one image's output of ``kind`` goes to (``name``: its name in a folder)."""
    path, folder = target
    return path / _OUTPUTS[kind][3].format(name) if folder else path


def _write_maps(maps: dict, name: str, instances, classes, tolerance: float | None) -> None:
    """Write one image's ``--label-image``, ``--type-map`` and ``--geojson`` (``name``: its
    stem in a folder; ``tolerance`` ``None``: outlines on the pixels' edges)."""
    from sam_detect.formats._common import polygon_tolerance
    from sam_detect.formats.geojson import save_geojson
    from sam_detect.formats.label_image import write_label_array
    from sam_detect.outputs import label_maps

    ids, types = label_maps(instances, classes) if {"labels", "types"} & set(maps) else (None, None)
    for kind, target in maps.items():
        if kind == "geojson":
            save_geojson(instances, _target_file(target, kind, name), tolerance=polygon_tolerance("geojson", tolerance))
        else:
            write_label_array(ids if kind == "labels" else types, _target_file(target, kind, name))


def shown_names(paths) -> dict[str, str]:
    """``{path: name}``: each image as the per-image lines on stderr name it, its path below
    the folder the images share (its file name where they are all in one folder): ``A1/img.png``
    and ``B1/img.png`` of a glob over a plate's wells are told apart."""
    spelled = [str(p) for p in paths]
    try:
        root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in spelled])
        return {p: os.path.relpath(os.path.abspath(p), root) for p in spelled}
    except ValueError:  # paths on different drives share no folder
        return {p: p for p in spelled}


def _name_in_folder(names: dict[str, str], path: object, record: dict) -> str:
    """An image's name in an output folder (``names``: :func:`unique_stems`), a stack's frame
    named in it (frame 1's labels do not overwrite frame 0's)."""
    at = record.get("frame")
    return names[str(path)] + (f"_frame{at}" if at is not None else "")


def _folder_names(paths, quiet: bool) -> dict[str, str]:
    """:func:`unique_stems`, saying on stderr which images' names got a number."""
    renamed: dict = {}
    names = unique_stems(paths, renamed)
    if not quiet:
        for path, (was, now) in renamed.items():
            click.echo(f"sam-detect: {path}: its files in the output folders are named {now} "
                       f"({was} is another image's)", err=True)
    return names


def unique_stems(paths, renamed: dict | None = None) -> dict[str, str]:
    """``{path: name}``: each image's file stem, or where several images share one (``image.tif``
    in each well's folder), their paths below the folder they share, joined by ``_`` (and the
    suffix too where only it differs), so that no output overwrites another's. A name so made
    that is another image's own (``A1/img.png`` and ``A1_img.png``), or that differs from
    another only in case (one file on Windows and macOS), gets a number: ``A1_img_2`` (and is
    put in ``renamed``, ``{path: (name it would have had, name)}``, where given)."""
    from collections import defaultdict

    by_stem = defaultdict(list)
    for p in paths:
        by_stem[Path(p).stem].append(Path(p))
    made, own = {}, set()
    for stem, group in by_stem.items():
        if len(group) == 1:
            made[str(group[0])] = stem
            own.add(str(group[0]))
            continue
        absolute = [p.resolve() for p in group]
        root = Path(os.path.commonpath([str(a.parent) for a in absolute]))
        names = ["_".join(a.relative_to(root).with_suffix("").parts) for a in absolute]
        if len(set(names)) < len(names):
            names = ["_".join(a.relative_to(root).parts).replace(".", "_") for a in absolute]
        made.update({str(p): n for p, n in zip(group, names, strict=True)})
    # images' own stems first, then the names made from folders, in input order: each the next free
    out, taken = {}, set()
    keys = list(dict.fromkeys(str(p) for p in paths))
    for key in [k for k in keys if k in own] + [k for k in keys if k not in own]:
        name, n = made[key], 1
        while name.casefold() in taken:
            n += 1
            name = f"{made[key]}_{n}"
        taken.add(name.casefold())
        out[key] = name
        if n > 1 and renamed is not None:
            renamed[key] = (made[key], name)
    return {str(p): out[str(p)] for p in paths}


def _emit(record, jsonl, records, keep=False):
    """Print a JSON line now (--jsonl streams), or keep the record for the end (``keep``:
    kept whatever is printed, for ``--csv``)."""
    if jsonl:
        click.echo(json.dumps(record))
    if keep or not jsonl:
        records.append(record)


def iter_paths(images):
    from sam_detect.io.images import iter_image_paths

    return iter_image_paths(list(images))


def _results(detector, paths, cluster, quiet, overlay, instances, no_polygons, tolerance, channels, frame):
    """The per-image results, in input order, from this process or the cluster's workers."""
    from sam_detect.cluster import OutputSpec, detect_images

    suffix = None
    if overlay is not None:  # a folder's overlays are PNGs
        suffix = ".png" if overlay[1] else overlay[0].suffix.lower()
    spec = OutputSpec(polygons=not no_polygons, tolerance=tolerance, coco=instances,
                      overlay_suffix=suffix, channels=tuple(channels), frame=frame)
    progress = not quiet  # a bar over the images, or over one large image's stages
    if cluster is None:
        return detect_images(detector.config, paths, spec=spec, progress=progress, detector=detector)
    return detect_images(detector.config, paths, cluster=cluster, spec=spec, progress=progress)


def _slide_results(detector, paths, cluster, quiet, instances, no_polygons, tolerance, tile, level):
    """One result per slide, each detected tile by tile and merged across seams."""
    from sam_detect.cluster import ImageResult
    from sam_detect.errors import LibraryNotFoundError, SamDetectError
    from sam_detect.outputs import image_record
    from sam_detect.slides import DEFAULT_OVERLAP, detect_slide

    for path in paths:
        try:
            found = detect_slide(detector.config, path, cluster=cluster, level=level, tile=tile,
                                 overlap=DEFAULT_OVERLAP, detector=None if cluster else detector,
                                 progress=not quiet)
        except SamDetectError as e:  # a library deleted meanwhile stops the run (cluster.ImageResult.fatal)
            yield ImageResult(str(path), error=str(e), fatal=isinstance(e, LibraryNotFoundError))
            continue
        except (OSError, ValueError) as e:  # a slide damaged past its header (tifffile's errors are these)
            yield ImageResult(str(path), error=f"{Path(path).name}: cannot read the slide ({type(e).__name__}: {e})")
            continue
        rec = image_record(found, str(path), polygons=not no_polygons, tolerance=tolerance)
        yield ImageResult(str(path), rec, found if instances else None)
