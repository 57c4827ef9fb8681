"""``sam-detect library``: list, show, delete, export, import, copy and re-embed libraries.

Results go to stdout (``--json`` for machines), diagnostics to stderr. The store options
(``--store``, ``--library-path``, ``--qdrant-url``, ``--qdrant-api-key``) pick where the
libraries live, exactly as for ``detect`` and ``add``.
"""

from __future__ import annotations

import json
import shlex
from collections import Counter
from collections.abc import Callable
from typing import Any

import click

from sam_detect.cli._stack import stack
from sam_detect.cli.options import (
    EMBEDDER_CHOICES,
    _library_or_default,
    _model_options,
    location_options,
    open_store,
)
from sam_detect.cli.validate import existing_library_name, library_name, refuse_new_reserved


def _open(ctx: click.Context, **opts: Any):
    store = open_store(**opts)
    ctx.call_on_close(store.close)
    return store


def _where(store: Any) -> str:
    return str(getattr(store, "url", None) or getattr(store, "path", None) or "memory")


def _library_info(store: Any, name: str, storage: bool = False) -> dict[str, Any]:
    meta = store.get_meta(name)
    labels = store.labels(name)
    info = {
        "name": name,
        "examples": sum(labels.values()),
        "labels": labels,
        "embedder": meta.embedder_id,
        "dim": meta.dim,
        "fade": meta.fade,
        "crop": meta.crop,
        "created": meta.created,
        "backend": store.backend,
        "location": _where(store),
    }
    extra = {k: v for k, v in (meta.extra or {}).items() if not k.startswith("_")}
    if extra:  # keys starting with "_" are the store's bookkeeping (journal, count)
        info["extra"] = extra
    if storage:
        from sam_detect.store._common import SIZE_LIMITS

        size = getattr(store, "storage_bytes", None)
        info["storage_bytes"] = size(name) if size else None
        limit = SIZE_LIMITS.get(store.backend)
        info["backend_max_examples"] = limit[0] if limit else None
    return info


@click.group("library")
def library() -> None:
    """List, show, delete, export, import and copy example libraries.

    \b
    A library is a named set of labelled example vectors plus how they were made
    (embedder, fade, crop). Examples:
      sam-detect library list
      sam-detect library show nuclei
      sam-detect library export nuclei nuclei.samlib.zip
      sam-detect library import nuclei.samlib.zip --as nuclei-v2
      sam-detect library copy nuclei --to-qdrant-url http://localhost:6333
    """


def _library_command(name: str, *, json: bool = False, default_name: bool = False) -> Callable:
    """``sam-detect library <name>`` taking a library NAME (with ``default_name``: optional,
    ``SAM_DETECT_LIBRARY`` or the default library where it is not given, as for `add` and
    `detect`), the store's location options, ``--json`` (with ``json``) and the click
    context, in that order."""
    argument = click.argument("name", required=False, envvar="SAM_DETECT_LIBRARY",
                              callback=_library_or_default) if default_name else \
        click.argument("name", callback=existing_library_name)
    decorators = [library.command(name), argument, location_options()]
    if json:
        decorators.append(click.option("--json", "as_json", is_flag=True, help="Print JSON."))
    return stack([*decorators, click.pass_context])


@library.command("list")
@location_options()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool, **opts: Any) -> None:
    """List the libraries with their example counts and embedder."""
    from sam_detect.errors import LibraryError, LibraryLockedError, LibraryUnwritableError

    store = _open(ctx, **opts)
    rows = []
    for n in store.list_libraries():
        try:
            rows.append(_library_info(store, n))
        except LibraryUnwritableError:
            rows.append({"name": n, "status": f"on a full or read-only disk: see `sam-detect library check {n}`"})
        except LibraryLockedError:
            rows.append({"name": n, "status": "in use by another process"})
        except LibraryError:  # one damaged library must not hide the others
            rows.append({"name": n, "status": f"damaged: run `sam-detect library check {n}`"})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no libraries in {store.backend} ({_where(store)})", err=True)
        return
    head = ("NAME", "EXAMPLES", "LABELS", "EMBEDDER", "DIM")
    table = [head] + [
        (r["name"], str(r["examples"]), str(len(r["labels"])), r["embedder"], str(r["dim"]))
        if "status" not in r else (r["name"], "-", "-", r["status"], "-")
        for r in rows
    ]
    for line in _table_lines(table):
        click.echo(line)


def _table_lines(table: list[tuple[str, ...]], indent: str = "") -> list[str]:
    """The rows of ``table`` (a header first) as lines, its columns aligned."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return [(indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))).rstrip() for row in table]


@_library_command("show", json=True, default_name=True)
@click.option("--examples", "list_examples", is_flag=True,
              help="Also list every example: its id (for `library delete --id`), label, area and image "
                   "(with --json: as \"example_list\").")
def show_cmd(ctx: click.Context, name: str, as_json: bool, list_examples: bool = False, **opts: Any) -> None:
    """Show a library's settings and its example count per label (NAME: default, the library
    `add` and `detect` use without --library); --examples lists the examples themselves."""
    store = _open(ctx, **opts)
    info = _library_info(store, name)
    rows = _example_rows(store, name) if list_examples else None
    if as_json:
        click.echo(json.dumps(info if rows is None else {**info, "example_list": rows}, indent=2))
        return
    _print_info(info)
    if rows is not None:
        click.echo("examples (in the order they were added):")
        from sam_detect.names import display_label

        # one line a row: a label stored before the label rule, or a file name, may hold a line break
        table = [("ID", "LABEL", "AREA", "IMAGE")] + [
            (r["id"], display_label(str(r["label"])), str(r["area"]),
             _one_line(r["image"]) + (f" (frame {r['frame']})" if "frame" in r else ""))
            for r in rows]
        for line in _table_lines(table, indent="  "):
            click.echo(line)


def _one_line(text: str) -> str:
    """``text`` with its control characters and line separators escaped (``new\\nline.png``),
    its other characters (``细胞.png``) as they are."""
    import unicodedata

    return "".join(ch.encode("unicode_escape").decode("ascii") if unicodedata.category(ch)[0] == "C"
                   or unicodedata.category(ch) in ("Zl", "Zp") else ch for ch in text)


def _example_rows(store: Any, name: str) -> list[dict[str, Any]]:
    """Every example of library ``name``: id, label, area in pixels, the image it was drawn on
    (its file, as `add` resolved it) and its frame, in the order added."""
    rows = []
    for ids, _vectors, labels, payloads in store.iter_examples(name):
        for i, lab, p in zip(ids, labels, payloads, strict=True):
            row = {"id": str(i), "label": lab, "area": int(p.get("area", 0)), "image": str(p.get("source") or "-"),
                   "added_ns": p.get("added_ns", 0)}
            if p.get("frame") is not None:
                row["frame"] = int(p["frame"])
            rows.append(row)
    rows.sort(key=lambda r: r.pop("added_ns") or 0)
    return rows


@library.command("stats")
@click.argument("name", required=False, callback=existing_library_name)
@location_options()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def stats_cmd(ctx: click.Context, name: str | None, as_json: bool, **opts: Any) -> None:
    """Counts per label, vector size, embedder, backend and storage size (all libraries
    when NAME is left out)."""
    from sam_detect.errors import LibraryError

    store = _open(ctx, **opts)
    if name:
        infos = [_library_info(store, name, storage=True)]
    else:  # every library: a damaged one is said, the others still shown (as `library list` does)
        infos = []
        for n in store.list_libraries():
            try:
                infos.append(_library_info(store, n, storage=True))
            except LibraryError as e:
                infos.append({"name": n, "error": " ".join(str(e).split())})
    if as_json:
        click.echo(json.dumps(infos if not name else infos[0], indent=2))
    else:
        if not infos:
            click.echo(f"no libraries in {store.backend} ({_where(store)})", err=True)
        for i, info in enumerate(infos):
            if i:
                click.echo("")
            if "error" in info:
                click.echo(f"library:   {info['name']}\nerror:     {info['error']}")
            else:
                _print_info(info)
    if any("error" in info for info in infos):
        ctx.exit(1)


def _print_info(info: dict[str, Any]) -> None:
    from sam_detect.instances import NEGATIVE
    from sam_detect.names import display_label
    click.echo(f"library:   {info['name']}")
    click.echo(f"backend:   {info['backend']} ({info['location']})")
    click.echo(f"embedder:  {info['embedder']} ({info['dim']}-d)")
    if info["fade"]:
        click.echo(f"fade:      {json.dumps(info['fade'])}")
    if info["crop"]:
        click.echo(f"crop:      {json.dumps(info['crop'])}")
    click.echo(f"created:   {info['created']}")
    if "storage_bytes" in info:
        size = info["storage_bytes"]
        click.echo(f"storage:   {_human_bytes(size) if size is not None else 'n/a (server)'}")
        limit = info["backend_max_examples"]
        if limit and info["examples"] > limit:
            click.echo(
                f"warning:   {info['examples']:,} examples is past the {limit:,} this backend is meant for",
            )
    click.echo(f"examples:  {info['examples']}")
    shown = {lab: display_label(lab) for lab in info["labels"]}
    width = max((len(text) for text in shown.values()), default=0)
    for lab, n in info["labels"].items():
        click.echo(f"  {shown[lab].ljust(width)}  {n}")
    from sam_detect.io.images import describe_reading

    for reading in (info.get("extra") or {}).get("channel_reads") or []:  # detect warns where an image differs
        click.echo(f"  read from {describe_reading(reading)} of {reading['of']}-channel images")
    from sam_detect.profile import describe

    profile = (info.get("extra") or {}).get("profile")
    lines = describe(profile)
    if lines:
        click.echo(f"profile:   version {profile.get('version')}, from the examples' masks")
        for line in lines:
            click.echo(f"  {line}")
    elif info["examples"] and set(info["labels"]) <= {NEGATIVE}:
        click.echo("profile:   none: the library holds only negative examples (look-alikes to suppress); add "
                   "examples of the objects to find")
    elif info["examples"]:
        click.echo(
            "profile:   none: detection uses the segmenter's own settings "
            f"(`sam-detect library profile {info['name']}` rebuilds it from examples that carry measurements)"
        )
    from sam_detect.unlabelled import describe as describe_unlabelled

    extra = info.get("extra") or {}
    for line in describe_unlabelled(extra.get("unlabelled"), extra.get("unlabelled_joint"), extra.get("border_left_out")):
        click.echo(f"  {line}")
    from sam_detect.calibrate import describe as describe_decision

    decision = (info.get("extra") or {}).get("decision")
    # a library emptied by a delete or a repair keeps no decision to show: nothing to decide by
    if not info["examples"]:
        click.echo("decision:  none: the library holds no examples (`sam-detect add` gives it some)")
    elif lines := describe_decision(decision, show=display_label):
        click.echo("decision:  from the examples' vectors (leave-one-out)")
        for line in lines:
            click.echo(f"  {line}")


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


@_library_command("profile", default_name=True)
def profile_cmd(ctx: click.Context, name: str, **opts: Any) -> None:
    """Rebuild NAME's proposal profile and decision settings from its examples and show them.

    The profile (size and shape ranges, contrast and polarity, calibrated segmenter
    settings per class) is rebuilt after every `add`; run this after deleting examples
    from elsewhere, or for a library made before profiles existed (its examples then carry
    no measurements: add them again to calibrate).
    """
    from sam_detect.pipeline import DetectorConfig, SAMDetect
    from sam_detect.profile import describe

    store = _open(ctx, **opts)
    store.get_meta(name)  # a missing library: one line naming the ones there are
    det = SAMDetect(DetectorConfig(library=name), store=store)
    lines = describe(det.refresh_profile())
    from sam_detect.instances import NEGATIVE

    only_negative = set(store.labels(name)) <= {NEGATIVE}
    for line in lines or [f"{name}: holds only negative examples (look-alikes to suppress); add examples of the "
                          "objects to find" if only_negative else
                          f"{name}: no example carries measurements; add examples again to calibrate"]:
        click.echo(line)
    from sam_detect.unlabelled import describe as describe_unlabelled

    for line in describe_unlabelled(det.unlabelled_model, det.joint_unlabelled_model, det.border_convention):
        click.echo(line)
    from sam_detect.calibrate import describe as describe_decision
    from sam_detect.names import display_label

    for line in describe_decision(det.decision, show=display_label):
        click.echo(line)


def _example_ids(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    from sam_detect.store._common import normalise_id

    try:
        return tuple(normalise_id(v) for v in value)
    except ValueError as e:
        raise click.BadParameter(str(e), ctx=ctx, param=param) from None


@library.command("delete")
@click.argument("name", callback=existing_library_name)
@location_options()
@click.option("--label", "labels", multiple=True,
              help="Delete only the examples of this label (repeatable); the library stays.")
@click.option("--id", "ids", multiple=True, callback=_example_ids,
              help="Delete only the example with this id (repeatable); the library stays.")
@click.option("--negative", is_flag=True,
              help="Delete only the negative examples (the look-alikes `add --negative` stored); the library stays.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def delete_cmd(ctx: click.Context, name: str, labels: tuple[str, ...], ids: tuple[str, ...],
               negative: bool, yes: bool, **opts: Any) -> None:
    """Delete a library and all its examples, or only some examples (--label, --id).

    Deleting examples is all-or-nothing, even if the process is killed: the ids are
    journaled first and the next open finishes an interrupted delete.
    """
    from sam_detect.errors import LibraryDamagedError, LibraryLockedError, LibraryNotFoundError

    store = _open(ctx, **opts)
    if negative:
        from sam_detect.instances import NEGATIVE

        labels = (*labels, NEGATIVE)
    if labels or ids:
        _delete_examples(store, name, labels, ids, yes)
        return
    if name not in store.list_libraries():
        store.get_meta(name)  # raises LibraryNotFoundError listing the libraries
    try:
        n: int | str = store.count(name)
        what = f"{n} examples"
    except (LibraryNotFoundError, LibraryLockedError):  # in use is not damaged: never pulled from its user
        raise
    except LibraryDamagedError:  # a damaged library can always be deleted
        what = "damaged"
    except Exception:
        what = "damaged"
    if not yes:
        click.confirm(
            f"Delete library {name!r} ({what}) from {_where(store)}?", abort=True, err=True
        )
    store.delete_library(name)
    click.echo(f"deleted library {name!r} ({what})", err=True)


def _delete_examples(store: Any, name: str, labels: tuple[str, ...], ids: tuple[str, ...],
                     yes: bool) -> None:
    """Delete examples of library ``name`` by label and by id, each one journaled delete;
    then rebuild what the library derives from its examples (profile, decision)."""
    from sam_detect.instances import NEGATIVE
    from sam_detect.store import journal

    have = store.labels(name)  # a missing library: one line naming the ones there are
    # as `add` stored them: its labels are trimmed (" chair " is 'chair')
    labels = tuple(lab.strip() if lab not in have and lab.strip() in have else lab for lab in labels)
    missing = [lab for lab in labels if lab not in have]
    if missing:
        from sam_detect.errors import LibraryError

        raise LibraryError(
            (f"library {name!r} holds no negative examples" if missing[0] == NEGATIVE
             else f"library {name!r} has no examples labelled {missing[0]!r}") + "; its labels: "
            + (", ".join(repr(k) for k in have) or "none")
            + ("; its negative examples: --negative" if NEGATIVE in have and NEGATIVE not in missing else "")
        )
    if ids:  # all or nothing, as for a label: a mistyped or already deleted id deletes none
        there = {i for batch_ids, *_ in store.iter_examples(name) for i in batch_ids}
        absent = [i for i in dict.fromkeys(ids) if i not in there]
        if absent:
            from sam_detect.errors import LibraryError

            raise LibraryError(
                f"library {name!r} holds no example with id {absent[0]!r}"
                + (f" (nor {len(absent) - 1} more of the ids given)" if len(absent) > 1 else "")
                + f"; nothing deleted (`sam-detect library show {name} --examples` lists its examples)")
    parts = [f"{have[lab]} negative examples" if lab == NEGATIVE else f"{have[lab]} examples labelled {lab!r}"
             for lab in labels]
    if ids:
        parts.append(f"{len(ids)} example(s) by id")
    if not yes:
        click.confirm(f"Delete {' and '.join(parts)} from library {name!r}?", abort=True, err=True)
    from sam_detect.library_state import images_of

    images = images_of(store, name, ids=ids or (), labels=labels)
    n = sum(journal.delete(store, name, label=lab) for lab in labels)
    if ids:
        n += journal.delete(store, name, ids=list(ids))
    if n:
        _refresh_derived(store, name, images)
    click.echo(f"deleted {n} examples from library {name!r} ({store.count(name)} left)", err=True)


def _refresh_derived(store: Any, name: str, images: set[str] | frozenset = frozenset()) -> None:
    """Rebuild what library ``name`` derives from its examples (the proposal profile, the
    decision settings, the unlabelled-candidate model, its images' record) after its examples
    changed other than by ``add``: a delete, a merge, a repair. A library that never had them
    (made before profiles) is left as it is. ``images``: the ``image_key`` of images that lost
    examples, whose other examples are measured again without them
    (``SAMDetect.measure_again``)."""
    extra = store.get_meta(name).extra
    if "profile" in extra or "decision" in extra:
        from sam_detect.pipeline import DetectorConfig, SAMDetect

        det = SAMDetect(DetectorConfig(library=name), store=store)
        det.measure_again(images)
        det.refresh_profile()


@_library_command("check", json=True, default_name=True)
def check_cmd(ctx: click.Context, name: str, as_json: bool, **opts: Any) -> None:
    """Read every example of library NAME back and compare with its metadata.

    Reports unreadable vectors or payloads, examples missing against the count the last
    write left, broken metadata and interrupted writes. Exit 1 when anything is wrong
    (then `sam-detect library repair NAME`).
    """
    from sam_detect.store.integrity import METADATA_SIZE, check_library

    store = _open(ctx, **opts)
    if name not in store.list_libraries():
        store.get_meta(name)  # a missing library: one line naming the ones there are
    rep = check_library(store, name)
    if as_json:
        click.echo(json.dumps(rep.to_dict(), indent=2))
    elif rep.ok:
        click.echo(f"library {name!r}: ok ({rep.readable} examples read back whole)")
    else:
        click.echo(f"library {name!r}: damaged ({rep.readable} examples read back whole)")
        for p in rep.problems:
            click.echo(f"  - {p}")
        if any(p.startswith(METADATA_SIZE) for p in rep.problems):  # repair would change nothing
            click.echo("restore the library from an export, or put its embedder's size back in its metadata's "
                       "'dim'", err=True)
        else:
            click.echo(f"run `sam-detect library repair {name}` to rebuild it from what reads", err=True)
    if not rep.ok:
        ctx.exit(1)


@library.command("repair")
@click.argument("name", callback=existing_library_name)
@location_options()
@click.option("--rescue-dir", type=click.Path(file_okay=False), default=".",
              help="Folder for the rescue export written before a rebuild.")
@click.pass_context
def repair_cmd(ctx: click.Context, name: str, rescue_dir: str, **opts: Any) -> None:
    """Rebuild library NAME from the examples that read back whole.

    Rolls back an interrupted write, restores damaged metadata from its backup (edge),
    saves the readable examples to a rescue export, rebuilds the library from it and
    says which examples it dropped. Examples that read are never dropped.
    """
    from pathlib import Path

    from sam_detect.store._common import settings_behind
    from sam_detect.store.integrity import check_library, repair_library

    store = _open(ctx, **opts)
    if name not in store.list_libraries():
        store.get_meta(name)
    Path(rescue_dir).mkdir(parents=True, exist_ok=True)
    res = repair_library(store, name, rescue_dir=rescue_dir,
                         restore_meta=getattr(store, "restore_meta", None))
    made_from = settings_behind(store.get_meta(name).extra, store.count(name))
    stale = made_from is not None
    if res.dropped or res.actions or stale:  # the examples changed: the decision and the rest follow them
        _refresh_derived(store, name)
        if stale and not (res.dropped or res.actions):
            res.actions.append(f"rebuilt its settings from its {store.count(name)} examples "
                               f"(they were made from {made_from})")
    for a in res.actions:
        click.echo(a, err=True)
    if res.dropped:
        click.echo(f"dropped {len(res.dropped)} unreadable examples: " + ", ".join(res.dropped[:10])
                   + (" ..." if len(res.dropped) > 10 else ""), err=True)
    after = check_library(store, name)
    state = "ok" if after.ok else "still damaged: " + "; ".join(after.problems)
    click.echo(f"library {name!r}: {state} ({res.kept} examples kept)")
    if not after.ok:
        ctx.exit(1)


@_library_command("optimize")
def optimize_cmd(ctx: click.Context, name: str, **opts: Any) -> None:
    """Merge segments and build the search index of an edge library (after large adds)."""
    import time

    store = _open(ctx, **opts)
    store.get_meta(name)
    if not hasattr(store, "optimize"):
        click.echo(f"the {store.backend} store needs no optimisation", err=True)
        return
    t = time.perf_counter()
    changed = store.optimize(name)
    what = "optimised" if changed else "already optimal:"
    click.echo(
        f"{what} library {name!r} ({store.count(name)} examples, {time.perf_counter() - t:.1f} s)",
        err=True,
    )


@library.command("export")
@click.argument("name", callback=existing_library_name)
@click.argument("file", type=click.Path(dir_okay=False))
@location_options()
@click.option(
    "--crops/--no-crops",
    default=False,
    help="Also store each example's context crop as PNG (re-made from its source image), "
    "so the library can be re-embedded elsewhere.",
)
@click.option("--force", is_flag=True, help="Overwrite FILE if it is an earlier export.")
@click.pass_context
def export_cmd(
    ctx: click.Context, name: str, file: str, crops: bool, force: bool, **opts: Any
) -> None:
    """Write library NAME to FILE (.zip: metadata, vectors, payloads, optional crops)."""
    from sam_detect.cli.validate import output_file
    from sam_detect.store.exchange import export_library
    from sam_detect.store.reembed import CHANGED

    output_file(file, "FILE", what="an export file")  # before the store opens
    store = _open(ctx, **opts)
    skipped: Counter = Counter()  # why examples have no crop
    crop_fn = _crop_maker(store, name, skipped) if crops else None
    summary = export_library(store, name, file, crops=crop_fn, overwrite=force)
    extra = f", {summary.crops} crops" if crops else ""
    if crops and summary.crops < summary.examples:
        _no_crop_warning(summary.examples - summary.crops, skipped[CHANGED], "have no crop")
    click.echo(f"exported {summary.examples} examples of {name!r} to {file}{extra}", err=True)


def _crop_maker(store: Any, name: str, skipped: Counter) -> Callable[[str, dict[str, Any]], Any]:
    """Crop function for export: re-cut each example from its source image and mask/box
    (``skipped`` counts why one has none: :func:`sam_detect.store.reembed.source_of`)."""
    from sam_detect.store.exchange import crop_from_payload

    meta = store.get_meta(name)
    return lambda _id, payload: crop_from_payload(payload, meta, skipped=skipped)


def _no_crop_warning(n: int, changed: int, what: str) -> None:
    """Say on stderr that ``n`` examples ``what`` (no crop), and why: ``changed`` of them because
    their source path now holds another image (its pixels are not those the example was added
    from), the rest because the image is missing or moved."""
    from sam_detect.store.reembed import CHANGED_WHY

    if n > changed:
        click.echo(f"warning: {n - changed} examples {what} (source image missing or moved)", err=True)
    if changed:
        click.echo(f"warning: {changed} examples {what}: {CHANGED_WHY}", err=True)


@library.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@location_options()
@click.option("--as", "as_name", callback=existing_library_name,
              help="Library name to import into (default: the name in FILE).")
@click.option(
    "--merge",
    is_flag=True,
    help="Add to an existing library of the same embedder/fade/crop (ids already there are skipped).",
)
@click.option(
    "--rename-bad-labels",
    is_flag=True,
    help="Import labels that break the label rule (a library made before it: 'unknown', a line break, "
    "over 100 characters) renamed to ones that keep it, each renamed label said on stderr.",
)
@click.pass_context
def import_cmd(
    ctx: click.Context, file: str, as_name: str | None, merge: bool, rename_bad_labels: bool, **opts: Any
) -> None:
    """Read a library exported with `library export` into the store."""
    from sam_detect.names import display_label
    from sam_detect.store.exchange import import_library

    target = as_name or _check_archive_name(file)
    store = _open(ctx, **opts)
    if target is not None:  # a reserved name: only merged into a library an older version made so
        refuse_new_reserved(store, target, "--as" if as_name else "FILE",
                            "" if as_name else "; import it under another name with --as NEW_NAME")
    result = import_library(store, file, name=as_name, merge=merge, rename_bad_labels=rename_bad_labels)
    for old, new in result.renamed.items():
        click.echo(f"sam-detect: label '{display_label(old)}' imported as {new!r}", err=True)
    if (merge and result.added) or result.renamed:
        # the library's own profile and decision described its old examples only (or its old labels);
        # its examples of the images the merge added to are measured again with them, as an add
        # measures them (a delete, then its export merged back, left the rest measured without them)
        _refresh_derived(store, result.name, result.images)
    skipped = f" ({result.skipped} already there)" if result.skipped else ""
    click.echo(f"imported {result.added} examples into library {result.name!r}{skipped}", err=True)
    from sam_detect.store.exchange import crops_in

    if (n := crops_in(file)):  # they stay in the file: the library keeps its examples' sources only
        click.echo(f"sam-detect: the file's {n} crops stay in {file} (the library keeps each example's source "
                   f"image path): keep it to re-embed where those images are not (`sam-detect library reembed "
                   f"{result.name} --embedder E --from-file {shlex.quote(str(file))}`)", err=True)


@library.command("copy")
@click.argument("name", callback=existing_library_name)
@location_options()
@location_options(prefix="to-", what=" to copy into")
@click.option("--as", "as_name", callback=library_name, help="Name of the copy (default: NAME).")
@click.pass_context
def copy_cmd(ctx: click.Context, name: str, as_name: str | None, **opts: Any) -> None:
    """Copy library NAME to another store or name (e.g. embedded -> server).

    \b
      sam-detect library copy nuclei --to-qdrant-url http://localhost:6333
      sam-detect library copy nuclei --store qdrant --to-store edge   # the qdrant folder's into the edge one
      sam-detect library copy nuclei --to-library-path /data/shared-libs
      sam-detect library copy nuclei --as nuclei-backup
    """
    from sam_detect.names import RESERVED_LIBRARY_NAMES
    from sam_detect.store.exchange import copy_library

    if as_name is None and name in RESERVED_LIBRARY_NAMES:  # a library an older version made so
        raise click.BadParameter(
            f"the copy would be named {name!r}, a name reserved now (the qdrant store keeps its data in a "
            f"folder of that name in the libraries folder); give it another name with --as NEW (e.g. --as {name}-1)",
            param_hint="--as",
        )
    src_opts = {k: v for k, v in opts.items() if not k.startswith("to_")}
    dst_opts = {k[3:]: v for k, v in opts.items() if k.startswith("to_")}
    same = not any(dst_opts.values())
    if same and not as_name:
        raise click.UsageError(
            "give a destination (--to-store, --to-library-path, --to-qdrant-url) or --as NEW"
        )
    if not dst_opts["store"]:
        dst_opts["store"] = "qdrant" if dst_opts["qdrant_url"] else src_opts["store"]
    if (
        dst_opts["store"] == src_opts["store"]
        and not dst_opts["qdrant_url"]
        and not dst_opts["library_path"]
    ):
        dst_opts["library_path"] = src_opts["library_path"]
        dst_opts["qdrant_url"] = src_opts["qdrant_url"]
        dst_opts["qdrant_api_key"] = src_opts["qdrant_api_key"]
    src = _open(ctx, **src_opts)
    dst_key = (dst_opts["store"], dst_opts["library_path"], dst_opts["qdrant_url"])
    src_key = (src_opts["store"], src_opts["library_path"], src_opts["qdrant_url"])
    dst = src if dst_key == src_key else _open(ctx, **dst_opts)
    if dst is src and (as_name or name) == name:
        raise click.UsageError(
            "copying a library onto itself: give --as NEW or another destination"
        )
    n = copy_library(src, name, dst, as_name)
    click.echo(
        f"copied {n} examples of {name!r} to {dst.backend} ({_where(dst)}) as {(as_name or name)!r}",
        err=True,
    )


@library.command("reembed")
@click.argument("name", callback=existing_library_name)
@location_options()
@click.option(
    "--embedder", required=True, type=click.Choice([e for e in EMBEDDER_CHOICES if e != "auto"]),
    help="Embedder for the new library.",
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the embedder's network runs.")
@stack(_model_options("embedder_model_options"))
@click.option("--as", "as_name", callback=library_name,
              help="Name of the new library (default: NAME-EMBEDDER).")
@click.option(
    "--from-file",
    type=click.Path(exists=True, dir_okay=False),
    help="Take the crops from an export made with --crops instead of the source images (an embedder "
         "of crops: effnet, clip, handcrafted; views reads each example in its whole image).",
)
@click.pass_context
def reembed_cmd(
    ctx: click.Context,
    name: str,
    embedder: str,
    device: str,
    as_name: str | None,
    from_file: str | None,
    **opts: Any,
) -> None:
    """Embed library NAME's examples again with another embedder, into a new library.

    The crops come from each example's source image (payload "source" plus "mask_rle" or
    "box"), or from an export file made with `--crops`. The model options (`--clip-model`,
    `--sam-checkpoint`, ...) choose the new embedder's weights as they do for `detect`; the
    new library records them, so `detect --library NEW` uses the same.
    """
    from sam_detect.detector_stages import _is_torch_embedder
    from sam_detect.store.exchange import reembed_library

    embedder_options: dict[str, Any] = {}
    if _model_options():  # the SAM2/CLIP options are there: taken out of the store's options
        from sam_detect.cli._model_options import EMBEDDER_OPTION_KEYS, model_options_to_config

        given = {k: opts.pop(k) for k in EMBEDDER_OPTION_KEYS if k in opts}
        embedder_options = model_options_to_config(embedder=embedder, **given)["embedder_options"]
    if _is_torch_embedder(embedder):
        embedder_options["device"] = device

    new = as_name or f"{name}-{embedder}"
    if as_name is None:
        try:
            library_name(ctx, None, new)
        except click.BadParameter as e:
            raise click.BadParameter(f"{e.message}; give the new library's name with --as NEW", param_hint="--as") from None
    store = _open(ctx, **opts)
    result = reembed_library(store, name, embedder, new, from_file=from_file, embedder_options=embedder_options)
    _refresh_derived(store, new)  # the decision (view weights, thresholds) was the old embedder's vectors'
    click.echo(
        f"re-embedded {result.added} of {result.examples} examples into library {new!r}", err=True
    )
    if result.missing:
        _no_crop_warning(result.missing, result.changed, "had no crop source and were left out")
    if result.bad_labels:  # kept as stored (a library made before the rule): only import renames them
        from sam_detect.names import display_label

        bad = sorted(result.bad_labels.items(), key=lambda kv: -kv[1])  # the most examples first
        said = ", ".join(f"'{display_label(lab, 30)}' ({n})" for lab, n in bad[:3]) + (", ..." if len(bad) > 3 else "")
        click.echo(f"warning: {len(bad)} label{'s' if len(bad) > 1 else ''} of {new!r} break{'' if len(bad) > 1 else 's'} "
                   f"the label rule (stored before it), kept as stored: {said}; to rename them, "
                   f"`sam-detect library export {new} FILE` and `sam-detect library import FILE --as NEW_NAME "
                   "--rename-bad-labels` (each renamed to one that keeps the rule, as stderr says)", err=True)


def _check_archive_name(file: str) -> str | None:
    """Refuse, before the store opens, an export whose recorded library name no library can
    have (say, one written by another tool), naming the way out: ``--as NEW``. Returns the
    name (a reserved one too: the caller refuses it unless merged into a library so named),
    ``None`` where the file says none."""
    import zipfile

    from sam_detect.errors import InvalidNameError
    from sam_detect.names import _short, check_existing_library_name

    try:
        with zipfile.ZipFile(file) as z:
            info = z.getinfo("manifest.json")
            if info.file_size > 1 << 20:
                return None  # not a manifest of ours: the import reports it
            name = json.loads(z.read(info)).get("library", {}).get("name")
    except (OSError, KeyError, ValueError, AttributeError, zipfile.BadZipFile, RuntimeError):
        return None  # unreadable or not an export: the import says what is wrong
    try:
        return check_existing_library_name(name)
    except InvalidNameError as e:
        raise click.BadParameter(
            f"{file} records the library name {_short(name)}, which is not valid ({e}); import it "
            "under another name with --as NEW_NAME",
            param_hint="FILE",
        ) from None
