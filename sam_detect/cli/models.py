"""``sam-detect models``: list known SAM2/CLIP weights and download them into the cache."""

from __future__ import annotations

import json

import click


@click.group("models")
def models() -> None:
    """List and download SAM2 and CLIP weights.

    \b
    The cache folder is $SAM_DETECT_CACHE, else the per-user cache folder.
    Offline machines: download elsewhere, then copy the file to the path `list` shows,
    or pass --sam-checkpoint / --clip-checkpoint PATH.
    """


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_cmd(as_json: bool) -> None:
    """Show known models, whether each is cached, and its size; for CLIP, the activation,
    input size and preprocessing each is built with (from its pretrained tag).

    A cached file that is cut short or not of its format is listed as damaged, with the
    download that replaces it."""
    from sam_detect.models import cache_dir, checkpoint_problem, iter_cache

    cache = cache_dir()
    rows = []
    for spec, path in iter_cache(cache):
        problem = checkpoint_problem(path) if path else None
        rows.append(
            {
                "name": spec.name,
                "family": spec.family,
                "arch": spec.arch,
                "tag": spec.tag,
                "repo": spec.repo_id,
                "file": spec.filenames[0] if path is None else path.name,
                "size_mb": round(path.stat().st_size / 1e6, 1) if path else spec.size_mb,
                # a damaged file is no cached model: detect failed on it with one line
                "cached": path is not None and problem is None,
                "damaged": problem and f"{problem}; run `{spec.download_command()} --force`",
                "path": str(path if path else cache / spec.cache_subdir / spec.filenames[0]),
            }
        )
        if spec.family == "clip":
            rows[-1]["options"] = _clip_options(spec.arch, spec.tag)
    if as_json:
        click.echo(json.dumps({"cache": str(cache), "models": rows}, indent=1))
        return
    click.echo(f"model cache: {cache}")
    width = max(len(r["name"]) for r in rows)
    click.echo(f"{'NAME':<{width}}  {'CACHED':<7}  {'SIZE':>9}  FILE")
    for r in rows:
        size = f"{r['size_mb']:.0f} MB" if r["size_mb"] == r["size_mb"] else "?"
        state = "damaged" if r["damaged"] else "yes" if r["cached"] else "no"
        click.echo(f"{r['name']:<{width}}  {state:<7}  {size:>9}  {r['path']}")
        if r["damaged"]:
            click.echo(f"{'':<{width}}  {r['damaged']}")
        opts = r.get("options")
        if opts and "error" not in opts:
            mean = ", ".join(f"{v:.3f}" for v in opts["mean"])
            std = ", ".join(f"{v:.3f}" for v in opts["std"])
            click.echo(
                f"{'':<{width}}  {'QuickGELU' if opts['quick_gelu'] else 'GELU'}, input {opts['image_size']} px "
                f"({opts['interpolation']}, {opts['resize_mode']}), mean ({mean}), std ({std})"
            )
        elif opts:
            click.echo(f"{'':<{width}}  options unknown: {opts['error']}")


def _clip_options(model: str, tag: str | None) -> dict:
    """The options a CLIP tag is built with (``sam_detect.models.clip_options``), or why not."""
    from sam_detect.errors import SamDetectError
    from sam_detect.models import clip_options

    try:
        return clip_options(model, tag)
    except (SamDetectError, ValueError) as e:
        return {"error": str(e)}


@models.command("download")
@click.argument("names", nargs=-1, required=True)
@click.option("--force", is_flag=True, help="Download again even when cached.")
def download_cmd(names: tuple[str, ...], force: bool) -> None:
    """Download weights NAMES (see `models list`; CLIP also as MODEL:TAG) into the cache.

    Prints each file's path.
    """
    from sam_detect.models import download, get_spec

    specs = []
    for name in names:
        try:
            specs.append(get_spec(name))
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="NAME") from e
    from sam_detect.models import cache_dir, checkpoint_problem

    for spec in specs:
        cached = None if force else spec.cached_path(cache_dir())
        problem = checkpoint_problem(cached) if cached else None
        if cached and problem is None:
            click.echo(f"{spec.name}: already in the model cache", err=True)
            click.echo(str(cached))
            continue
        if problem:  # fetched again over it, as models.download fetches a damaged file
            click.echo(f"{spec.name}: the cached {cached.name} is damaged ({problem}): "
                       f"fetching {spec.repo_id} again ...", err=True)
        else:
            click.echo(f"{spec.name}: fetching {spec.repo_id} ...", err=True)
        click.echo(str(download(spec, force=force or problem is not None)))  # the file is read once


@models.command("path")
@click.argument("name")
def path_cmd(name: str) -> None:
    """Print the cached file of NAME (exit 1 when it is not cached)."""
    from sam_detect.errors import ModelNotAvailableError
    from sam_detect.models import cache_dir, get_spec

    try:
        spec = get_spec(name)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="NAME") from e
    path = spec.cached_path()
    if path is None:
        raise ModelNotAvailableError(
            f"{spec.name} is not cached (expected {cache_dir() / spec.cache_subdir / spec.filenames[0]}); "
            f"run `{spec.download_command()}`"
        )
    click.echo(str(path))


__all__ = ["models"]
