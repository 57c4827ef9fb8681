"""Checks of option values that run before any work starts.

Every command checks its outputs' folders and formats, its names and its numbers here, so a
bad value costs a second, not a whole detection, and ends in one ``Error:`` line (exit 2).
Nothing here imports torch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

#: Formats ``outputs.save_image`` (OpenCV) writes for overlays and reports.
IMAGE_OUTPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses ``nan`` and ``inf`` (which compare false with
    every bound and so slip through a plain range)."""

    name = "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = click.types.FloatParamType.convert(self, value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(rv, param, ctx)


def finite(min: float | None = None, max: float | None = None, **kw: Any) -> FiniteFloatRange:
    """A finite float option type, optionally bounded (``min_open``/``max_open`` as in click)."""
    return FiniteFloatRange(min, max, **kw)


def library_name(ctx: click.Context | None, param: click.Parameter | None, value: Any) -> Any:
    """Click callback: refuse a new library's name that breaks the name policy, a reserved
    name too (before any work)."""
    from sam_detect.errors import InvalidNameError
    from sam_detect.names import check_library_name

    return _policy(check_library_name, InvalidNameError, ctx, param, value)


def existing_library_name(ctx: click.Context | None, param: click.Parameter | None, value: Any) -> Any:
    """Click callback: refuse a name no library can have; a reserved name passes (a library an
    older version made under it is read, used and deleted; :func:`refuse_new_reserved` refuses
    making one)."""
    from sam_detect.errors import InvalidNameError
    from sam_detect.names import check_existing_library_name

    return _policy(check_existing_library_name, InvalidNameError, ctx, param, value)


def refuse_new_reserved(store: Any, name: str, param_hint: str, hint: str = "") -> None:
    """``click.BadParameter`` (exit 2) where ``name`` is reserved and ``store`` has no library
    so named: a command that would make it stops before any work (``hint``: the way out)."""
    from sam_detect.errors import InvalidNameError
    from sam_detect.names import refuse_reserved

    try:
        refuse_reserved(name)
    except InvalidNameError as e:
        if not store.has_library(name):
            raise click.BadParameter(f"{e}{hint}", param_hint=param_hint) from None


def label_option(ctx: click.Context | None, param: click.Parameter | None, value: Any) -> Any:
    """Click callback: refuse a label that breaks the label policy."""
    from sam_detect.errors import AnnotationError
    from sam_detect.names import check_label

    return _policy(check_label, AnnotationError, ctx, param, value)


def _policy(
    check: Callable[[Any], Any], error: type[Exception], ctx: click.Context | None,
    param: click.Parameter | None, value: Any,
) -> Any:
    """``check(value)`` (``None`` passes), its ``error`` as ``click.BadParameter`` (exit 2)."""
    if value is None:
        return value
    try:
        return check(value)
    except error as e:
        raise click.BadParameter(str(e), ctx=ctx, param=param) from None


def output_file(
    value: str | os.PathLike | None,
    option: str,
    suffixes: Sequence[str] | None = None,
    what: str = "a file",
    create_folder: bool = False,
    stdout: bool = False,
) -> Path | None:
    """Check that ``value`` can be written as a file: not a folder, a known suffix, an
    existing (with ``create_folder``: created) and writable folder. ``-`` is stdout where
    ``stdout`` says the option prints there (``video --jsonl -``), else refused: it made a file
    named "-". Raises ``click.BadParameter`` (exit 2) otherwise."""
    if value == "-" and not stdout:
        raise click.BadParameter(f"'-' is no file name here: {option} writes {what}, not to stdout; give a file "
                                 "name", param_hint=option)
    try:
        return _output_file(value, option, suffixes, what, create_folder)
    except OSError as e:  # a name too long, a loop of links...
        raise click.BadParameter(f"cannot write {what} there: {e.strerror or e}", param_hint=option) from None


def _output_file(
    value: str | os.PathLike | None, option: str, suffixes: Sequence[str] | None, what: str, create: bool
) -> Path | None:
    if value is None or value == "-":
        return None if value is None else Path(value)
    p = Path(value)
    if str(value).endswith(("/", os.sep)) or p.is_dir():
        example = f"out{suffixes[0]}" if suffixes else "out.json"
        raise click.BadParameter(
            f"{value} is a folder; give the name of {what}, such as {p / example}", param_hint=option
        )
    if suffixes is not None and p.suffix.lower() not in suffixes:
        raise click.BadParameter(
            f"cannot write {what} as {p.suffix or 'a file without extension'!r} ({p.name}); "
            f"use one of {', '.join(suffixes)}",
            param_hint=option,
        )
    output_folder(p.parent, option, create=create)
    if p.exists() and not os.access(p, os.W_OK):
        raise click.BadParameter(f"{p} exists and is not writable", param_hint=option)
    probe = p.parent / f".{p.name}.{os.getpid()}.probe"
    try:  # permissions can lie (root, read-only mounts, /proc): try it
        probe.open("xb").close()
        probe.unlink()
    except OSError as e:
        raise click.BadParameter(f"cannot write into {p.parent or '.'}: {e.strerror}", param_hint=option) from None
    return p


def output_folder(value: str | os.PathLike, option: str, create: bool = True) -> Path:
    """Check (and with ``create``, make) a folder for outputs. Raises ``click.BadParameter``."""
    p = Path(value) if str(value) else Path(".")
    if p.exists() and not p.is_dir():
        raise click.BadParameter(f"{p} is a file, not a folder", param_hint=option)
    if not p.exists():
        if not create:
            raise click.BadParameter(
                f"folder {p} does not exist; create it first (mkdir -p {p})", param_hint=option
            )
        parent = next((q for q in p.parents if q.exists()), Path("."))
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise click.BadParameter(f"cannot create folder {p} (in {parent})", param_hint=option)
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise click.BadParameter(f"cannot create folder {p}: {e.strerror}", param_hint=option) from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise click.BadParameter(f"cannot write into folder {p} (permission denied)", param_hint=option)
    return p


def type_names_option(spec: str | None) -> dict[int, str]:
    """``--type-names`` parsed (:func:`sam_detect.formats.parse_type_names`), a bad one refused
    before anything loads."""
    from sam_detect.errors import AnnotationError
    from sam_detect.formats.label_image import parse_type_names

    try:
        return parse_type_names(spec)
    except AnnotationError as e:
        raise click.BadParameter(str(e), param_hint="--type-names") from None


def no_clashes(paths: Sequence[Any], files: dict[str, Any], what: str = "an input image") -> None:
    """Refuse, before any work, an output file that is one of the inputs (``paths``) or
    another output (``files``: option -> the file it names, ``None`` where not given or a
    folder, ``-`` for stdout): each would be overwritten in silence. ``click.BadParameter``
    (exit 2)."""
    seen: dict[Path, str] = {}
    inputs = {Path(p).resolve(): p for p in paths}
    for option, value in files.items():
        if value is None or value == "-":
            continue
        target = Path(value).resolve()
        if target in inputs:
            raise click.BadParameter(f"{value} is {what}; give another file name", param_hint=option)
        if target in seen:
            raise click.BadParameter(f"{value} is named by {seen[target]} too; give each output its own file",
                                     param_hint=option)
        seen[target] = option


#: names that a printed ``--json`` / ``--jsonl`` would be saved under
_PRINTED_SUFFIXES = (".json", ".jsonl", ".ndjson")


def printed_not_named(images: Sequence[Any], flag: str) -> None:
    """Refuse an IMAGES entry named as the output of ``flag``, a flag that prints to stdout
    (``detect img.png --json out.json``; ``video --jsonl`` takes a file, so the habit
    carries over): the name was read as an image to work on, an error after the work, or,
    where an earlier run left that file, its JSON read as an image."""
    for item in images:
        name = os.fspath(item)
        if Path(name).suffix.lower() in _PRINTED_SUFFIXES:
            raise click.BadParameter(f"{name} is not an image: {flag} takes no file name, it prints to stdout; "
                                     f"to save it, write `{flag} > {name}`", param_hint=flag)


__all__ = [
    "IMAGE_OUTPUT_SUFFIXES",
    "FiniteFloatRange",
    "no_clashes",
    "finite",
    "existing_library_name",
    "label_option",
    "library_name",
    "output_file",
    "output_folder",
    "printed_not_named",
    "refuse_new_reserved",
]
