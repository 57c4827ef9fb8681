"""``sam-detect eval``: measure accuracy with the few-shot protocol."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from sam_detect.cli.options import classify_options, detector_config, pipeline_options
from sam_detect.cli.validate import no_clashes, output_file, printed_not_named, type_names_option

ANNOTATION_HELP = (
    "Ground truth: a label image or label stack (one frame per image), a COCO file (matched "
    "by file name), a labelme/GeoJSON/.npz/polygon file (one image), a folder of label images named "
    "as the images (images/X.tif with masks/X.tif or masks/X_masks.png), a folder of mask images (one "
    "object each, one image), or one of these per image (repeat)."
)


def parse_index_spec(spec: str | None, param: str, count: int | None = None) -> list[int] | None:
    """``"0"``, ``"0,3,5"``, ``"1:20"`` (end excluded), ``"1:"`` (to the last of ``count``
    images), or a mix -> sorted indices. Without ``count`` an open end is checked and left
    out (the images are counted later)."""
    if spec is None:
        return None
    out: set[int] = set()
    open_end = False
    try:
        for part in spec.replace(" ", "").split(","):
            if not part:
                continue
            if ":" in part:
                a, b = part.split(":", 1)
                if b:
                    out.update(range(int(a), int(b)))
                else:
                    open_end = True
                    if count is not None and int(a) >= count:
                        raise click.BadParameter(f"image index {int(a)} out of range: {count} image(s) "
                                                 f"(0..{count - 1})", param_hint=param)
                    out.update(range(int(a), count if count is not None else int(a)))
            else:
                out.add(int(part))
    except ValueError:
        raise click.BadParameter(
            f"expected indices like 0 or 0,3,5 or 1:20 or 1: (to the last), got {spec!r}", param_hint=param
        ) from None
    if not out and not (open_end and count is None):
        raise click.BadParameter(f"no image indices in {spec!r}", param_hint=param)
    if out and min(out) < 0:
        raise click.BadParameter(f"image indices count from 0, got {min(out)}", param_hint=param)
    return sorted(out)


def parse_iou(spec: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in spec.replace(" ", "").split(",") if v)
    except ValueError:
        vals = ()
    if not vals or any(not 0 < v <= 1 for v in vals):
        raise click.BadParameter(
            f"expected IoU thresholds in (0, 1] like 0.3,0.5, got {spec!r}", param_hint="--iou"
        )
    shown = [f"{v:g}" for v in vals]  # how the report and --json name each one
    if len(set(shown)) < len(shown):
        raise click.BadParameter(
            f"IoU thresholds that read alike ({', '.join(sorted({t for t in shown if shown.count(t) > 1}))}) "
            f"in {spec!r}: give each once", param_hint="--iou"
        )
    return vals


def expand_images(
    inputs: tuple[str, ...], channels: tuple[int, ...], frame: int | None
) -> list[Any]:
    """Image references, one per frame: a stack file gives one per frame (or just ``--frame``)."""
    from sam_detect.eval.protocol import ImageRef
    from sam_detect.io.images import iter_image_paths, load_image

    channel = None if not channels else (channels[0] if len(channels) == 1 else tuple(channels))
    given: dict[Path, str] = {}
    for arg in inputs:  # a file named twice is scored once: said here, not as a count of annotation files
        if Path(arg).is_file():
            key = Path(arg).resolve()
            if key in given:
                raise click.BadParameter(f"{arg} is given twice ({given[key]}); each image is scored once: give it "
                                         "once, with its annotations once", param_hint="IMAGES")
            given[key] = arg
    refs = []
    for p in iter_image_paths(list(inputs)):
        if frame is not None:
            refs.append(ImageRef(str(p), frame=frame, channel=channel))
            continue
        first = load_image(p, channel=channel, frame=0)
        if first.n_frames > 1:
            refs.extend(ImageRef(str(p), frame=t, channel=channel) for t in range(first.n_frames))
        else:
            refs.append(ImageRef(str(p), frame=None, channel=channel))
    return refs


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("images", nargs=-1, required=True)
@click.option(
    "--annotations",
    "-a",
    "annotations",
    multiple=True,
    required=True,
    type=click.Path(exists=True),
    help=ANNOTATION_HELP,
)
@click.option(
    "--shots",
    type=click.IntRange(1),
    default=10,
    help="Examples drawn per class from the ground truth.",
)
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, help="Seed of the example draw.")
@click.option(
    "--iou",
    "iou_spec",
    default="0.3,0.5",
    help="IoU thresholds for matching predictions to ground truth.",
)
@click.option(
    "--label", help="Class name for every ground-truth object (label images carry none: 'object')."
)
@click.option(
    "--labels-channel",
    type=click.IntRange(0),
    default=None,
    help="Channel of a multi-channel label TIFF that holds the labels.",
)
@click.option(
    "--types",
    "types",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Type maps beside label-image ground truth, one per -a file (each pixel its object's class "
    "as an integer, 0 = none): each object's class is the type most of its pixels carry; objects "
    "without one are left out. Per-class figures and a confusion matrix follow.",
)
@click.option("--types-channel", type=click.IntRange(0), default=None, help="Channel of the --types files holding the types.")
@click.option(
    "--type-names",
    default=None,
    metavar="NAMES",
    help="Class names of the --types values: 'tumour,immune' names 1, 2, ...; '1=tumour,3=dead' by value.",
)
@click.option(
    "--examples-from",
    "examples_from",
    metavar="INDICES",
    help="Images (0-based, e.g. 0 or 0,2 or 0:5, a slice whose end is left out: images 0-4) to draw examples from. Default: all.",
)
@click.option(
    "--detect-on",
    "detect_on",
    metavar="INDICES",
    help="Images to detect on and score (e.g. 1:20: images 1-19; 1: from image 1 to the last). Default: all.",
)
@click.option(
    "--sweep",
    "sweep_spec",
    metavar="NAME=VALUES",
    help="Run once per value: threshold=0.3:0.9:0.1, sigma=10,30,50, fade=gaussian,linear, "
    "embedder=effnet,handcrafted, occupancy=..., shots=..., segmenter.OPTION=...",
)
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False),
    help="Write a PNG report: TP/miss/FP overlay and precision/recall vs threshold.",
)
@click.option(
    "--channel",
    "channels",
    type=click.IntRange(0),
    multiple=True,
    help="Channel(s) of multi-channel images to use (repeat to merge). Default: all.",
)
@click.option(
    "--frame",
    type=click.IntRange(0),
    default=None,
    help="Use only this frame of stacks (default: every frame is an image).",
)
@click.option(
    "--baselines/--no-baselines",
    default=True,
    help="Also run without the profile and report, side by side, the segmenter alone (every "
    "candidate accepted), the pipeline without the profile and the full pipeline (about "
    "twice the time). Not with --sweep or --no-profile.",
)
@classify_options
@pipeline_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or stage report on stderr.")
def eval_cmd(
    images,
    annotations,
    shots,
    seed,
    iou_spec,
    label,
    labels_channel,
    types,
    types_channel,
    type_names,
    examples_from,
    detect_on,
    sweep_spec,
    as_json,
    report_path,
    channels,
    frame,
    baselines,
    quiet,
    **opts,
) -> None:
    """Measure accuracy with the few-shot protocol.

    Draws --shots ground-truth objects per class as examples into a temporary library
    (--library and --library-path are not used; --store and --qdrant-url say where the
    temporary library lives), detects on the images, and matches the
    predictions one-to-one by IoU to the remaining ground truth. Prints precision, recall,
    F1 and mean matched IoU per IoU threshold, per-class figures and a confusion matrix
    when there are several classes, where the false and missed objects are (at the image
    border, overlapping no annotation, merges, loose outlines, never proposed, ...), and
    stage timings.

    \b
    Examples:
      sam-detect eval hela.tif -a hela_labels.tif --label nucleus --examples-from 0 --detect-on 1:20
      sam-detect eval scratch.tiff -a scratch.tiff --channel 0 --labels-channel 2 --label nucleus
      sam-detect eval photo.jpg -a data.npz --shots 1 --json
      sam-detect eval p0.png p1.png p2.png -a i0.png -a i1.png -a i2.png --types t0.png --types t1.png \\
          --types t2.png --type-names tumour,immune,stroma --shots 16 --examples-from 0,1 --detect-on 2
      sam-detect eval frame.tif -a labels.tif --sweep threshold=0.3:0.9:0.1 --report eval.png
    """
    from sam_detect.eval.sweep import parse_sweep

    if as_json:
        printed_not_named(images, "--json")
    iou = parse_iou(iou_spec)
    for spec, name in ((examples_from, "--examples-from"), (detect_on, "--detect-on")):
        parse_index_spec(spec, name)  # a slip said before any work; read once the images are counted
    sweep = None
    if sweep_spec:
        try:
            sweep = parse_sweep(sweep_spec)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--sweep") from None
    if report_path and Path(report_path).suffix.lower() != ".png":
        raise click.BadParameter(
            f"the report is a PNG file, got {report_path!r}", param_hint="--report"
        )
    output_file(report_path, "--report", (".png",), what="a PNG report")  # a missing folder refused, as detect's
    if opts.pop("keep_unknown", None):  # shared with detect; eval scores the labelled objects (it was ignored)
        raise click.BadParameter("eval scores the objects given a label; 'unknown' candidates are not scored "
                                 "(use it with detect)", param_hint="--keep-unknown")
    config = detector_config(**opts)
    _say_unused_library_options()
    if baselines and (sweep is not None or not config.profile) and _typed("baselines"):
        click.echo(f"sam-detect: warning: --baselines not run: they compare the full pipeline with the segmenter "
                   f"alone, which {'a --sweep' if sweep is not None else '--no-profile'} does not run", err=True)

    refs = expand_images(images, channels, frame)
    # the report over an image or the ground truth it scores against: lost in silence
    no_clashes([r.path for r in refs] + list(annotations) + list(types), {"--report": report_path},
               what="an input of this eval (an image, or an -a or --types file)")
    if (types_channel is not None or type_names) and not types:
        raise click.BadParameter("--types-channel and --type-names need --types", param_hint="--type-names")
    if types and label:
        raise click.UsageError("give --label (one class for every object) or --types (each object's own), not both")
    names = type_names_option(type_names)
    from sam_detect.formats import load_ground_truth, needs_image_size

    shapes = None
    if any(needs_image_size(a) for a in annotations):  # GeoJSON, polygon lists: each image's own size
        from sam_detect.io.images import load_image

        shapes = [load_image(r.path, channel=r.channel, frame=r.frame).rgb.shape[:2] for r in refs]
    gt = load_ground_truth(annotations, [r.path for r in refs], label=label,  # a path tells plate1/A01 from plate2/
                           channel=labels_channel, frame=frame, types=types, types_channel=types_channel,
                           type_names=names, image_shapes=shapes, image_frames=[r.frame for r in refs])
    ex_idx = parse_index_spec(examples_from, "--examples-from", len(refs))  # "1:" runs to the last image
    det_idx = parse_index_spec(detect_on, "--detect-on", len(refs))
    for name, idx in (("--examples-from", ex_idx), ("--detect-on", det_idx)):
        if idx and idx[-1] >= len(refs):
            raise click.BadParameter(
                f"image index {idx[-1]} out of range: {len(refs)} image(s) (0..{len(refs) - 1})",
                param_hint=name,
            )
    if not quiet:
        click.echo(
            f"sam-detect: {len(refs)} image(s); examples from {ex_idx or 'all'}, "
            f"detecting on {det_idx or 'all'}",
            err=True,
        )
        if refs and refs[0].channel is None:  # said as `add` says it: every channel merged, label channels too
            from sam_detect.cli.detect import merged_note
            from sam_detect.io.images import load_image

            own = labels_channel is not None and any(Path(a).resolve() == Path(refs[0].path).resolve()
                                                     for a in annotations)
            note = merged_note(load_image(refs[0].path, frame=refs[0].frame),
                               also=f", the annotation's --labels-channel {labels_channel} too" if own else "")
            if note is not None:
                click.echo(f"sam-detect: {Path(refs[0].path).name}: {note}", err=True)
    protocol = {
        "shots": shots,
        "seed": seed,
        "iou": iou,
        "label": label,
        "examples_from": ex_idx,
        "detect_on": det_idx,
    }
    worth = None
    try:
        if sweep is None and baselines and config.profile:
            from sam_detect.eval.protocol import examples_worth

            worth = examples_worth(refs, gt, config, progress=not quiet, **protocol)
            result, sweep_result = worth.full, None
        elif sweep is None:
            from sam_detect.eval.protocol import evaluate

            result = evaluate(refs, gt, config, progress=not quiet, **protocol)
            sweep_result = None
        else:
            from sam_detect.eval.sweep import run_sweep

            sweep_result = run_sweep(
                refs, gt, config, sweep[0], sweep[1], progress=not quiet, **protocol
            )
            result = sweep_result.results[int(_best_index(sweep_result))]
    except ValueError as e:
        from sam_detect.errors import SamDetectError

        if isinstance(e, SamDetectError):
            raise
        raise click.BadParameter(str(e)) from None
    if not quiet:
        for stage, why in result.config.get("choices", {}).items():
            click.echo(f"sam-detect: {stage}: {why}", err=True)
        for line in result.protocol.get("profile") or []:  # what the drawn examples made of the proposals
            click.echo(f"sam-detect: profile: {line}", err=True)
    if as_json:
        doc = sweep_result.to_dict() if sweep_result is not None else result.to_dict()
        if worth is not None:
            doc["examples_worth"] = worth.to_dict()
        json.dump(doc, sys.stdout, indent=1)
        click.echo()
    else:
        click.echo(sweep_result.table() if sweep_result is not None else result.table())
        if worth is not None:
            click.echo("")
            click.echo(worth.table())
    if report_path:
        from sam_detect.eval.report import save_report

        if sweep_result is not None and not result.overlays:
            result = sweep_result.results[0]
        save_report(result, report_path, sweep=sweep_result)
        if not quiet:
            click.echo(f"sam-detect: report written to {report_path}", err=True)


def _typed(name: str) -> bool:
    """Whether the option ``name`` was typed on the command line (not its default, not the
    environment)."""
    return click.get_current_context().get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE


def _say_unused_library_options() -> None:
    """One line where ``--library`` or ``--library-path`` was typed: eval's examples go to a
    temporary library (``--store`` and ``--qdrant-url`` say where), the named one is not used."""
    given = [f"--{name.replace('_', '-')}" for name in ("library", "library_path") if _typed(name)]
    if given:  # a warning, not the stage report: said under --quiet too
        click.echo(f"sam-detect: warning: {' and '.join(given)} not used: eval draws its examples into a "
                   "temporary library, deleted afterwards (--store and --qdrant-url say where it lives)", err=True)


def _best_index(sweep_result: Any) -> int:
    best = sweep_result.best()
    return sweep_result.values.index(best[0]) if best else 0
