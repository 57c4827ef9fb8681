"""Option groups shared by the commands, and the detector/store builders behind them.

Nothing here imports torch: the detector builds its models on first use.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import click

from sam_detect.cli._stack import stack
from sam_detect.cli.validate import existing_library_name, finite
from sam_detect.config import PARAMS
from sam_detect.paths import LIBRARY_ENV

SEGMENTER_CHOICES = ["auto", "classical", "regions", "sam2"]
EMBEDDER_CHOICES = ["auto", "views", "effnet", "handcrafted", "clip", "sam2"]
FADE_CHOICES = ["gaussian", "linear", "exponential", "identity"]
STORE_CHOICES = ["edge", "qdrant", "memory"]


class Unset(click.Option):
    """An option that is unset (``None``) unless given: the setting's one default, in
    ``sam_detect.config``, applies. ``--help`` shows that default, read when help is shown.

    ``setting``: the config setting it overrides (default: the option's own name).
    """

    def __init__(self, *args: Any, setting: str | None = None, **kwargs: Any) -> None:
        kwargs["default"] = None
        super().__init__(*args, **kwargs)
        self.setting = setting or self.name

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        record = super().get_help_record(ctx)
        if record is None:
            return None
        from sam_detect.config import default_text

        names, text = record
        return names, f"{text}  [default: {default_text(self.setting)}]".strip()


def _library_or_default(ctx: click.Context | None, param: click.Parameter | None, value: Any) -> Any:
    """``--library``: the name checked (a reserved name passes here: an existing library an
    older version made under it; a command that makes libraries refuses it where the library
    does not exist, :func:`~sam_detect.cli.validate.refuse_new_reserved`); unset: the config's
    default library."""
    if value is None:
        from sam_detect.config import default

        value = default("library")
    return existing_library_name(ctx, param, value)


def location_options(prefix: str = "", what: str = "") -> Callable:
    """``--store/--library-path/--qdrant-url/--qdrant-api-key`` (the store option group
    without ``--library``); ``prefix="to-"`` gives the destination options of ``copy``."""
    env = not prefix  # env vars set the source/default location only

    def option(name: str, envvar: str, help: str, env_help: str = "", end: str = "", **kwargs: Any) -> Callable:
        """``--{prefix}name``, read from ``envvar`` (said in the help) for the source only."""
        suffix = f"{env_help} [env: {envvar}]" if env else end
        return click.option(
            f"--{prefix}{name}", f"{prefix}{name}".replace("-", "_"),
            envvar=envvar if env else None, help=help + suffix, **kwargs,
        )

    # the destination's defaults are the source's (copy_cmd): said so, not the source's own defaults
    default_store = ("the source's store; qdrant with --to-qdrant-url" if prefix
                     else "edge; qdrant with --qdrant-url")
    decorators = [
        option(
            "store", "SAM_DETECT_STORE",
            f"Vector store{what}: edge = the Qdrant engine embedded on a folder; qdrant = the Qdrant "
            f"client (its local folder mode, or a server); memory (a .npz file). Default: {default_store}.",
            type=click.Choice(STORE_CHOICES), default=None,
        ),
        option(
            "library-path", LIBRARY_ENV, f"Folder of the embedded libraries{what}",
            " (default: per-user data folder).",
            " (default: the source's folder where the store is the same, else the per-user data folder).",
            type=click.Path(),
        ),
        option("qdrant-url", "SAM_DETECT_QDRANT_URL", f"Qdrant server URL{what}, e.g. http://localhost:6333."),
        option("qdrant-api-key", "SAM_DETECT_QDRANT_API_KEY", f"API key for the Qdrant server{what}."),
    ]

    return stack(decorators)


store_options = stack(
    [
        click.option("--library", "-l", cls=Unset, envvar="SAM_DETECT_LIBRARY", callback=_library_or_default,
                     help="Library (named collection of examples) to use. [env: SAM_DETECT_LIBRARY]"),
        location_options(),
    ]
)


def _model_options(which: str = "model_options") -> list[Callable]:
    """SAM2/CLIP options (``which``: ``model_options``, or ``embedder_model_options`` for an
    embedder alone), when that part of sam-detect is present."""
    if importlib.util.find_spec("sam_detect.cli._model_options") is None:
        return []
    from sam_detect.cli import _model_options as options

    return [getattr(options, which)]


pipeline_options = stack(
    [
        click.option("--segmenter", cls=Unset, type=click.Choice(SEGMENTER_CHOICES),
                     help="Mask proposals: auto = SAM2 when its weights are cached, else classical "
                     "(threshold + watershed, for cells and blobs); regions = weight-free region "
                     "proposals for photos (weak: see docs/perf_accuracy.md)."),
        click.option("--embedder", cls=Unset, type=click.Choice(EMBEDDER_CHOICES),
                     help="Embedder: auto = the library's own, else CLIP when cached, else views (EfficientNet features pooled under each mask + colour, shape and texture views)."),
        click.option("--fade", cls=Unset, type=click.Choice(FADE_CHOICES), help="Context fade."),
        click.option("--sigma", cls=Unset, type=finite(0, min_open=True), help="Gaussian fade width in pixels."),
        click.option("--min-fade", cls=Unset, type=finite(0, 1), help="Floor of the fade factor."),
        click.option("--max-distance", cls=Unset, type=finite(0, min_open=True),
                     help="Distance where the linear/exponential fade ends."),
        click.option("--decay", cls=Unset, type=finite(0, min_open=True), help="Exponential fade rate per pixel."),
        click.option("--occupancy", cls=Unset, type=finite(PARAMS["occupancy"].low, PARAMS["occupancy"].high,
                                                          min_open=PARAMS["occupancy"].low_open),
                     help="Share of the context crop the object fills."),
        click.option("--device", cls=Unset, type=click.Choice(["auto", "cpu", "cuda"]), help="Where models run."),
        click.option("--tile-size", type=click.IntRange(0), default=None,
                     help="Segment in overlapping square tiles of this side (pixels, at least 256) and "
                     "merge the objects across tile seams, for large images; 0 disables tiling. Default: "
                     "the segmenter's own (classical: tiles of at most 2048 pixels for images longer "
                     "than 2048 pixels; sam2: tiles of the encoder input side, 1024, for images "
                     "longer than 2048 pixels)."),
        *_model_options(),
        store_options,
    ]
)

classify_options = stack(
    [
        click.option("--top-k", cls=Unset, type=click.IntRange(PARAMS["top_k"].low, PARAMS["top_k"].high),
                     help=("Nearest examples of each label that vote on a candidate's label: each label's "
                           f"part is their mean similarity (at most {PARAMS['top_k'].high:,}).")),
        click.option("--threshold", cls=Unset,
                     type=finite(PARAMS["threshold"].low, PARAMS["threshold"].high),
                     help="Minimum similarity for a label, the same for every class; below it a "
                     "candidate is 'unknown'."),
        click.option("--keep-unknown", is_flag=True, help="Report candidates labelled 'unknown' too."),
        click.option("--profile/--no-profile", "profile", cls=Unset,
                     help="Use the library's proposal profile (what the examples say about size, shape "
                     "and contrast) to calibrate, filter and choose candidates; "
                     "--no-profile: the segmenter's own settings."),
        click.option("--drop-border/--keep-border", "drop_border", default=None,
                     help="Leave out objects that touch the image border, or the edge of padding "
                     "round the image (count whole objects only); --keep-border: find them like any "
                     "other. Default: left out where the examples' label images leave them out "
                     "(`library show` says so), else found."),
        click.option("--keep-examples/--no-keep-examples", "keep_examples", cls=Unset,
                     help="On an image the library's examples were drawn on, return those examples as "
                     "drawn and leave out the candidates overlapping them; --no-keep-examples: find "
                     "them like any other object."),
    ]
)


def store_config(opts: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(store name, store options) from the store option group's values."""
    from sam_detect.config import command_store_options, default

    store = opts.get("store") or ("qdrant" if opts.get("qdrant_url") else default("store"))
    store_opts: dict[str, Any] = {}
    if opts.get("qdrant_url"):
        import os
        from urllib.parse import urlsplit

        hint = "--qdrant-url" if os.environ.get("SAM_DETECT_QDRANT_URL") != opts["qdrant_url"] else \
            "SAM_DETECT_QDRANT_URL (or --qdrant-url)"
        if store != "qdrant":
            raise click.BadParameter(f"a server URL needs --store qdrant (got --store {store})", param_hint=hint)
        url = str(opts["qdrant_url"])
        parts = urlsplit(url)
        try:
            port_ok = parts.port is None or 0 < parts.port < 65536
        except ValueError:  # a port past 65535 or not a number
            port_ok = False
        if not url.startswith(("http://", "https://")) or not parts.hostname or not port_ok:
            raise click.BadParameter(f"{url!r} is no server URL; give one like http://localhost:6333", param_hint=hint)
        store_opts["url"] = opts["qdrant_url"]
        if opts.get("qdrant_api_key"):
            store_opts["api_key"] = opts["qdrant_api_key"]
    elif opts.get("library_path"):  # else the store's own default folder
        store_opts["path"] = opts["library_path"]
    return store, command_store_options(store, store_opts)


def open_store(**opts: Any):
    """Build the store chosen by the store option group."""
    from sam_detect.store import create_store

    name, store_opts = store_config(opts)
    return create_store(name, **store_opts)


def detector_config(**opts: Any):
    """A ``DetectorConfig`` from the pipeline (and classify) option groups' values."""
    from sam_detect.pipeline import DetectorConfig

    fade = opts.get("fade")
    fade_opts = {
        k: opts[k] for k in ("sigma", "min_fade", "max_distance", "decay") if opts.get(k) is not None
    }
    if fade_opts and fade is None:
        raise click.BadParameter("name the fade these settings are for, e.g. --fade gaussian", param_hint="--fade")
    if fade is not None:  # build it once now: a bad setting fails before any model loads
        from sam_detect.fade import create_fade

        try:
            create_fade(fade, **fade_opts)
        except TypeError as e:  # a setting the fade does not take
            key = next((k for k in fade_opts if repr(k) in str(e)), None)
            flag = f"--{key.replace('_', '-')}" if key else "a fade setting"
            raise click.BadParameter(f"{flag} does not apply to the {fade} fade", param_hint="--fade") from None
        except ValueError as e:
            given = " ".join(f"--{k.replace('_', '-')} {v:g}" for k, v in fade_opts.items())
            raise click.BadParameter(
                f"{e} ({given or 'defaults'} for the {fade} fade)", param_hint="--fade"
            ) from None
    store, store_opts = store_config(opts)
    kwargs: dict[str, Any] = {"fade": fade, "fade_options": fade_opts, "store": store, "store_options": store_opts}
    # an option not given leaves the config's default
    for key in ("segmenter", "embedder", "occupancy", "library", "device", "top_k", "threshold",
                "keep_unknown", "profile", "drop_border", "keep_examples"):
        if opts.get(key) is not None:
            kwargs[key] = opts[key]
    if importlib.util.find_spec("sam_detect.cli._model_options") is not None:
        from sam_detect.cli._model_options import model_options_to_config

        extra = model_options_to_config(**opts)
        kwargs["segmenter_options"] = extra.get("segmenter_options", {})
        kwargs["embedder_options"] = extra.get("embedder_options", {})
    tile_size = opts.get("tile_size")
    if tile_size is not None and opts.get("segmenter") == "regions":
        raise click.BadParameter(
            "the regions segmenter works on a copy scaled to 512 pixels and does not tile; "
            "--tile-size applies to the classical and sam2 segmenters",
            param_hint="--tile-size",
        )
    if tile_size is not None:  # both segmenters take it: classical and sam2
        from sam_detect.segment.classical_config import ClassicalConfig

        overlap = ClassicalConfig.tile_overlap  # the default overlap of both segmenters
        if 0 < tile_size < 2 * overlap:
            raise click.BadParameter(
                f"must be 0 (no tiling) or at least twice the tile overlap of {overlap} pixels, got {tile_size}",
                param_hint="--tile-size",
            )
        kwargs["segmenter_options"] = {**kwargs.get("segmenter_options", {}), "tile_size": tile_size}
    try:
        return DetectorConfig(**kwargs)
    except ValueError as e:
        raise click.BadParameter(str(e)) from e


def build_detector(**opts: Any):
    """A ``SAMDetect`` from CLI option values."""
    from sam_detect.pipeline import SAMDetect

    return SAMDetect(detector_config(**opts))


def report_choices(detector: Any, quiet: bool = False) -> None:
    """Say on stderr which segmenter, embedder and library were used, and why."""
    if quiet:
        return
    for stage in ("segmenter", "embedder", "store"):
        if stage in detector.choices:
            click.echo(f"sam-detect: {stage}: {detector.choices[stage]}", err=True)
    click.echo(f"sam-detect: library: {detector.config.library}", err=True)


def report_type_map(classes: list[str], quiet: bool = False) -> None:
    """Say on stderr which class each ``--type-map`` value stands for."""
    if not quiet:
        click.echo("sam-detect: type map values: " + ", ".join(f"{i}={c}" for i, c in enumerate(classes, 1)), err=True)


def report_profile(detector: Any, quiet: bool = False) -> None:
    """Say on stderr whether the library's proposal profile steers the proposals, and how."""
    if quiet:
        return
    from sam_detect.profile import describe

    if not detector.config.profile:
        click.echo("sam-detect: profile: off (--no-profile): the segmenter's own settings", err=True)
        return
    lines = describe(detector.profile)
    if not lines:
        from sam_detect.instances import NEGATIVE

        store, name = detector.store, detector.config.library
        held = store.labels(name) if store.has_library(name) else {}
        why = ("holds only negative examples, which are not measured" if held and set(held) <= {NEGATIVE} else
               "has no examples with masks measured; `sam-detect library profile` rebuilds it")
        click.echo(f"sam-detect: profile: none (library {name!r} {why}): the segmenter's own settings", err=True)
    for line in lines:
        click.echo(f"sam-detect: profile: {line}", err=True)
    from sam_detect.unlabelled import describe as describe_unlabelled

    for line in describe_unlabelled(detector.unlabelled_model, detector.joint_unlabelled_model,
                                    detector.border_followed) if lines else []:
        click.echo(f"sam-detect: profile: {line}", err=True)
