"""``sam-detect video``: detect and track objects in video files, cameras, streams and stacks."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from sam_detect.cli.options import (
    build_detector,
    classify_options,
    pipeline_options,
    report_choices,
    report_type_map,
)
from sam_detect.cli.validate import finite, no_clashes, output_file


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("source")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    help="Write an annotated video (.mp4, .avi, .mkv, .mov): masks, boxes, labels, track ids.",
)
@click.option(
    "--jsonl",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Write one JSON line per detected, reused or propagated frame to this file ('-': stdout).",
)
@click.option(
    "--label-image",
    type=click.Path(dir_okay=False, writable=True),
    help="Also write the objects as a label stack (.tif/.tiff/.npy), one plane per frame: "
    "each object's value is its track id, so it keeps its value from frame to frame "
    "(with --no-track, its id in the frame's JSON + 1); 0 = background. For napari, Fiji, "
    "TrackMate.",
)
@click.option(
    "--type-map",
    type=click.Path(dir_okay=False, writable=True),
    help="Also write each object's class as a stack of the same planes (.tif/.tiff/.npy): 1 = the "
    "library's first label in sorted order, as detect --type-map numbers them (stderr lists them); "
    "0 = background.",
)
@click.option("--show", is_flag=True, help="Show a live window (q or Esc stops); needs a display.")
@click.option(
    "--summary",
    "summary_path",
    type=click.Path(dir_okay=False, writable=True),
    help="Also write the final summary as JSON to this file.",
)
@click.option(
    "--frames",
    "frames_spec",
    metavar="RANGES",
    help="Frames to read, 0-based inclusive ranges, e.g. '0-2,4-7', '10-' (10 to the end), '-5' (0 to 5, "
         "not the last five), '0-99:5' (every fifth; a range that runs past the last frame stops there).",
)
@click.option(
    "--every",
    type=click.IntRange(1),
    default=1,
    help="Detect on every N-th frame; the others show the latest result.",
)
@click.option(
    "--max-fps",
    type=finite(0, min_open=True),
    help="Detect at most this many frames per second of source time.",
)
@click.option(
    "--change-threshold",
    type=finite(0, 255),
    default=3.0,
    help="Reuse the last result when a frame changed by less than this many gray levels "
    "(frames shrunk up to 16x); 0 re-detects every frame.",
)
@click.option(
    "--propagate",
    type=click.Choice(["sam2"]),
    default=None,
    help="Between full detections (--every N, --max-fps), move the last detection's masks "
    "onto each frame with SAM2's video predictor (uses --sam-model/--sam-checkpoint).",
)
@click.option(
    "--live/--no-live",
    default=None,
    help="Drop frames when detection is slower than the source (default: on for cameras "
    "and streams, off for files, which process every frame).",
)
@click.option(
    "--queue-size",
    type=click.IntRange(1, 1000),
    default=2,
    help="Frames buffered between reading and detection.",
)
@click.option("--no-track", is_flag=True, help="No track ids and no label smoothing.")
@click.option(
    "--max-age",
    type=click.IntRange(0, 1_000_000),
    default=5,
    help="Detections a track may miss before its id is retired.",
)
@click.option(
    "--smooth",
    type=click.IntRange(1, 1000),
    default=9,
    help="Recent labels per track that vote on its label (1: no smoothing).",
)
@click.option(
    "--fps",
    type=finite(0, 1000, min_open=True),
    help="Frame rate of image folders and stacks, and of --output when the source has none "
    "(default 10).",
)
@click.option(
    "--channel",
    "channels",
    type=click.IntRange(0),
    multiple=True,
    help="Channel(s) of multi-channel images or stacks (repeat to merge). Default: all.",
)
@click.option(
    "--planes-as-frames",
    is_flag=True,
    help="Read a TIFF whose 3 or 4 planes are stored as the colour channels of one image (as "
    "tifffile saves a (3, H, W) array without axes) as that many frames.",
)
@click.option(
    "--tolerance",
    type=finite(0),
    default=1.0,
    help="Polygon simplification in pixels for --jsonl.",
)
@click.option("--no-polygons", is_flag=True, help="Leave polygons out of the JSON lines.")
@classify_options
@pipeline_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or stage report on stderr.")
def video(
    source,
    output,
    jsonl,
    label_image,
    type_map,
    show,
    summary_path,
    frames_spec,
    every,
    max_fps,
    change_threshold,
    propagate,
    live,
    queue_size,
    no_track,
    max_age,
    smooth,
    fps,
    channels,
    planes_as_frames,
    tolerance,
    no_polygons,
    quiet,
    **opts,
) -> None:
    """Detect, label and track objects in a video, camera, stream, image folder or TIFF stack.

    SOURCE is a video file (MP4, AVI, ...), a camera index (0) or device (/dev/video0),
    a stream URL (rtsp://, http://), a folder or glob of images, or a multi-frame TIFF or .npy stack.
    Files are processed frame by frame; cameras and streams drop frames when detection
    falls behind. Ctrl-C (or SIGTERM) stops cleanly: the video, JSON lines and label stacks
    written so far are kept.

    \b
    Examples:
      sam-detect video bench.mp4 -o bench_annotated.mp4 --jsonl bench.jsonl
      sam-detect video timelapse.tif --frames 0-2,4-7 --jsonl -
      sam-detect video timelapse.tif --label-image tracked_labels.tif --jsonl tracks.jsonl
      sam-detect video 0 --show --every 2 --max-fps 5
      sam-detect video bench.mp4 --every 5 --propagate sam2 -o out.mp4
    """
    from sam_detect.video.runner import StreamStats, run_video
    from sam_detect.video.sources import open_source, parse_frames
    from sam_detect.video.tracking import Tracker
    from sam_detect.video.writer import _FOURCC, LABEL_STACK_SUFFIXES, display_problem

    try:
        selection = parse_frames(frames_spec)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--frames") from e
    # Outputs are checked before any work (a model load, a camera opened, a video decoded).
    output_file(output, "--output", tuple(_FOURCC), what="an annotated video")
    output_file(jsonl, "--jsonl", what="a JSON lines file", stdout=True)
    output_file(label_image, "--label-image", LABEL_STACK_SUFFIXES, what="a label stack")
    output_file(type_map, "--type-map", LABEL_STACK_SUFFIXES, what="a type stack")
    output_file(summary_path, "--summary", what="a JSON summary")
    no_clashes([source] if os.path.isfile(source) else [], {
        "--output": output, "--jsonl": jsonl, "--label-image": label_image, "--type-map": type_map,
        "--summary": summary_path}, what="the source")
    if show:
        problem = display_problem()
        if problem:
            raise click.ClickException(f"cannot --show a window: {problem}")
    if not (output or jsonl or label_image or type_map or show or summary_path) and not quiet:
        click.echo(
            "sam-detect: no --output, --jsonl, --label-image or --show given; printing the summary only",
            err=True,
        )

    propagator = None
    if propagate:
        if every == 1 and max_fps is None:
            raise click.BadParameter(
                "--propagate fills the frames between full detections: give --every N (N > 1) "
                "or --max-fps too",
                param_hint="--propagate",
            )
        from sam_detect.config import default
        from sam_detect.errors import ModelNotAvailableError
        from sam_detect.video.propagate import SAM2Propagator

        sam = {k: opts.get(k) for k in ("sam_model", "sam_checkpoint")}
        if "sam2" not in (opts.get("segmenter"), opts.get("embedder")):
            for k in sam:  # --sam-model/--sam-checkpoint are the propagator's alone here
                opts.pop(k, None)
        try:
            propagator = SAM2Propagator(
                checkpoint=sam["sam_checkpoint"],
                model=sam["sam_model"],
                device=opts.get("device") or default("device"),
            )
        except ModelNotAvailableError as e:
            raise click.ClickException(f"cannot --propagate sam2: {e}") from e

    channel = None if not channels else (channels[0] if len(channels) == 1 else list(channels))
    stats = StreamStats()
    detector = build_detector(**opts)
    with detector:
        detector.check_library(create=False)  # fail fast on a missing or mismatched library
        detector.segmenter  # noqa: B018 - build it now: missing weights fail before a frame is read
        src = open_source(source, frames=selection, live=live, fps=fps, channel=channel,
                          planes_as_frames=planes_as_frames)
        with src:
            report_choices(detector, quiet)
            if src.note and not quiet:
                click.echo(f"sam-detect: {Path(src.name).name}: {src.note}", err=True)
            first = getattr(src, "path", None)  # a stack: its channels read as the examples' were?
            if first is not None and channel is None and not quiet:
                from sam_detect.errors import ImageLoadError
                from sam_detect.io.images import load_image

                try:
                    note = detector._channel_note(load_image(first, frame=0 if src.frame_count else None))
                except ImageLoadError:
                    note = None
                if note:
                    click.echo(f"sam-detect: {Path(src.name).name}: {note.replace('this one', 'these frames')}",
                               err=True)
            if not quiet:
                mode = (
                    "live: frames are dropped when detection falls behind"
                    if (src.live if live is None else live)
                    else "file: every frame is read"
                )
                click.echo(f"sam-detect: reading {src.name} ({mode}); Ctrl-C stops", err=True)
            classes = None
            if type_map:  # numbered as detect --type-map numbers them
                from sam_detect.outputs import output_classes

                classes = output_classes(detector)
                report_type_map(classes, quiet)
            progress = None
            if not quiet and not src.live and src.frame_count:
                from tqdm.auto import tqdm

                progress = tqdm(total=src.frame_count, desc="video", unit="frame", file=sys.stderr)
            tracker = None if no_track else Tracker(max_age=max_age, smooth=smooth)
            interrupted = False
            from sam_detect.video.runner import sigterm_as_interrupt

            try:
                with sigterm_as_interrupt() as terminated:
                    run_video(
                        detector,
                        src,
                        output=output,
                        jsonl=jsonl,
                        output_fps=fps if fps and not src.fps else None,
                        label_image=label_image,
                        type_map=type_map,
                        classes=classes,
                        polygons=not no_polygons,
                        tolerance=tolerance,
                        on_result=(lambda _r: progress.update(1)) if progress is not None else None,
                        stats=stats,
                        every=every,
                        max_fps=max_fps,
                        change_threshold=change_threshold,
                        track=tracker if tracker is not None else False,
                        live=live,
                        queue_size=queue_size,
                        propagate=propagator,
                    )
            except KeyboardInterrupt:
                interrupted = True
            finally:
                if progress is not None:
                    progress.close()

    out_err = jsonl == "-"
    summary = stats.summary()
    summary["source"] = src.name
    if interrupted:
        summary["interrupted"] = True
    if summary_path:
        from sam_detect.formats._common import write_json

        write_json(summary_path, summary, indent=1)
    text = stats.describe()
    if interrupted:
        text = "interrupted after " + text
    click.echo(text, err=out_err)
    for label, path in (
        ("annotated video", output),
        ("JSON lines", jsonl if jsonl != "-" else None),
        ("label stack", label_image),
        ("type stack", type_map),
    ):
        if path and not quiet:
            target = Path(path)
            # /dev/stdout, a pipe: no file to look at
            if stats.frames > stats.failed and target.exists() and (not target.is_file() or target.stat().st_size):
                click.echo(f"sam-detect: wrote {label} to {path}", err=True)
            else:  # no frame reached it (none could be read, or Ctrl-C came first)
                click.echo(f"sam-detect: no {label} written to {path}: no frame was detected", err=True)
    if interrupted:  # 128 + the signal's number, as a shell gives for a process it stopped
        raise click.exceptions.Exit(143 if terminated else 130)
    if stats.frames == 0:
        raise click.ClickException(f"no frame could be read from {source}")
    if stats.failed and stats.failed == stats.frames:
        raise click.ClickException(
            f"detection failed on every frame ({stats.failed}); the reason is reported above for each frame"
        )
