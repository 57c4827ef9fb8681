"""``sam-detect ui``: annotate and detect interactively in the browser."""

from __future__ import annotations

import click

from sam_detect.cli.options import (
    build_detector,
    classify_options,
    pipeline_options,
    report_choices,
)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument(
    "image_dir",
    required=False,
    default=".",
    type=click.Path(exists=True, file_okay=False, dir_okay=True),
)
@click.option(
    "--host",
    default="127.0.0.1",
    envvar="SAM_DETECT_UI_HOST",
    help="Address to bind; 0.0.0.0 serves the whole network (anyone who reaches it can "
    "annotate). [env: SAM_DETECT_UI_HOST]",
)
@click.option(
    "--port",
    "-p",
    type=click.IntRange(1, 65535),
    default=8000,
    envvar="SAM_DETECT_UI_PORT",
    help="Port to serve on. [env: SAM_DETECT_UI_PORT]",
)
@click.option(
    "--open/--no-open",
    "open_browser",
    default=False,
    help="Open the page in the default web browser.",
)
@click.option(
    "--max-upload-mb",
    type=click.FloatRange(0, min_open=True),
    default=64,
    help="Largest accepted upload, in MiB.",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(1),
    default=40_000_000,
    help="Largest image (height x width of one frame) the UI opens.",
)
@click.option(
    "--no-upload",
    is_flag=True,
    help="Refuse uploads (the image folder is then only read).",
)
@click.option(
    "--no-prefetch",
    is_flag=True,
    help="Do not segment and embed an opened image in the background (saves CPU on shared machines).",
)
@click.option(
    "--thumbnail-dir",
    type=click.Path(file_okay=False),
    help="Folder for example thumbnails (default: next to the library folder).",
)
@classify_options
@pipeline_options
def ui(
    image_dir,
    host,
    port,
    open_browser,
    max_upload_mb,
    max_pixels,
    no_upload,
    no_prefetch,
    thumbnail_dir,
    **opts,
) -> None:
    """Serve a web page to browse IMAGE_DIR (default: the current folder), click objects to
    get their masks, label them, detect, and correct detections.

    Every accepted example is written to the library at once. Only image files under
    IMAGE_DIR are served; uploads go to IMAGE_DIR/uploads.

    \b
    Examples:
      sam-detect ui images/ --port 8000
      sam-detect ui plates/ --library coins --segmenter classical --embedder effnet
    """
    from sam_detect.ui.images import UILimits

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401

        from sam_detect.ui.server import AnnotationUI
    except ImportError as e:
        raise click.ClickException(
            f"the UI needs FastAPI and uvicorn ({e.name} is missing); install them with "
            "`pip install fastapi uvicorn`"
        ) from e
    limits = UILimits(
        max_upload_bytes=int(max_upload_mb * 1024 * 1024), max_image_pixels=max_pixels
    )
    _check_port(host, port)  # before the models load: a port in use is known at once
    detector = build_detector(**opts)
    with detector:
        if not detector.open_library():  # the UI's first example would make it
            from sam_detect.cli.validate import refuse_new_reserved

            refuse_new_reserved(detector.store, detector.config.library, "--library")
        app = AnnotationUI(
            detector,
            image_dir,
            thumbnail_dir=thumbnail_dir,
            limits=limits,
            allow_upload=not no_upload,
            prefetch=not no_prefetch,
        )
        app.session.warm_up()  # load and run the models once now, so the first click is quick
        report_choices(detector)
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        shown = f"[{shown}]" if ":" in shown else shown
        click.echo(
            f"sam-detect: serving {app.session.root} at http://{shown}:{port}/ (Ctrl+C to stop)",
            err=True,
        )
        app.run(host=host, port=port, open_browser=open_browser)


def _check_port(host: str, port: int) -> None:
    """Refuse a host and port this process cannot listen on (another server holds the port),
    in one line, before anything loads (uvicorn said so only after the models were loaded
    and "serving ..." was printed)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as e:
        import errno

        if e.errno == errno.EADDRINUSE:
            hint = "another server there? choose another --port"
        elif e.errno == errno.EACCES:
            hint = "ports under 1024 need administrator rights: choose another --port"
        else:  # a name that does not resolve, an address this machine does not have
            hint = "--host takes an address of this machine, such as 127.0.0.1 or 0.0.0.0"
        raise click.ClickException(f"cannot serve on {host}:{port}: {e.strerror or e} ({hint})") from None
