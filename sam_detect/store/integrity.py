"""``library check`` and ``library repair``: find damage in a library, rebuild from what reads.

:func:`check_library` reads every example back and compares with the metadata: the
metadata parses, no interrupted batch (add or delete) is left (see :mod:`sam_detect.store.journal`), every
vector and payload reads (vector size, finite, non-zero; a label), and the store holds as
many examples as the last write left (``extra["_count"]``: fewer means an id mapping lost
some). :func:`repair_library` keeps every example that reads whole, writes them to a rescue
export file first, rebuilds the library from them and says what it dropped; it never drops
an example that reads.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sam_detect.errors import LibraryError, LibraryLockedError
from sam_detect.store import journal
from sam_detect.store._common import COUNT_KEY, settings_behind

Example = tuple[str, np.ndarray, str, dict[str, Any]]


@dataclass
class CheckReport:
    """What :func:`check_library` found. ``ok`` when ``problems`` is empty."""

    name: str
    problems: list[str] = field(default_factory=list)
    readable: int = 0
    unreadable: list[str] = field(default_factory=list)
    stored: int | None = None
    recorded: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "problems": self.problems,
            "readable": self.readable,
            "unreadable": len(self.unreadable),
            "unreadable_ids": self.unreadable[:20],
            "stored": self.stored,
            "recorded": self.recorded,
        }


@dataclass
class RepairResult:
    name: str
    kept: int
    dropped: list[str]
    actions: list[str]
    rescue_file: Path | None = None


def scan(store: Any, name: str) -> tuple[list[Example], list[str]]:
    """Every example of ``name`` that reads whole, and the ids of those that do not."""
    if hasattr(store, "scan"):
        return store.scan(name)
    meta = store.get_meta(name)
    good: list[Example] = []
    bad: list[str] = []
    for ids, vecs, labels, payloads in store.iter_examples(name):
        for i, v, lab, p in zip(ids, np.asarray(vecs, np.float32), labels, payloads, strict=True):
            if v.size != meta.dim or not np.isfinite(v).all() or not lab or np.linalg.norm(v) < 1e-6:
                bad.append(str(i))
            else:
                good.append((str(i), v, lab, p))
    return good, bad


#: how a check's problem starts where the metadata's ``dim`` is wrong, not the examples
METADATA_SIZE = "the metadata says each vector holds"


def _sizes_disagree(store: Any, name: str, meta: Any) -> str | None:
    """Where every example's vector has one size other than the metadata's ``dim`` (the
    metadata edited or mixed up, not the examples damaged), what to say; ``None`` otherwise
    (the examples disagree among themselves, or cannot be read: the scan says which)."""
    sizes: set[int] = set()
    n = 0
    try:
        if hasattr(store, "vector_sizes"):  # as stored (reading examples reshapes by the metadata's dim)
            counted = store.vector_sizes(name)
            sizes, n = set(counted), sum(counted.values())
        else:
            for _, vecs, _, _ in store.iter_examples(name):
                arr = np.asarray(vecs)
                if arr.ndim != 2:
                    return None
                sizes.add(int(arr.shape[1]))
                n += len(arr)
    except Exception:  # noqa: BLE001 - unreadable storage: the scan reports it example by example
        return None
    if n == 0 or len(sizes) != 1 or next(iter(sizes)) == int(meta.dim):
        return None
    return (f"{METADATA_SIZE} {int(meta.dim)} numbers, but all {n} examples' vectors "
            f"hold {next(iter(sizes))}: the metadata is wrong (edited by hand?), not the examples")


def check_library(store: Any, name: str) -> CheckReport:
    """Read library ``name`` back whole; a report of what is wrong (nothing is changed)."""
    rep = CheckReport(name)
    try:
        meta = store.get_meta(name)
    except LibraryError as e:
        if type(e).__name__ == "LibraryNotFoundError":
            raise
        rep.problems.append(f"metadata unreadable: {_what(e)}")
        return rep
    p = journal.pending_of(meta)
    if p is not None:
        what, undone = ("delete", "finished") if p.get("op") == "delete" else ("write", "rolled back")
        rep.problems.append(
            f"an interrupted {what} of {len(p.get('ids') or [])} examples (pid {p.get('pid')} on "
            f"{p.get('host')}, {p.get('started')}) was not {undone}"
        )
    try:
        rep.stored = int(store.count(name))
    except LibraryLockedError:
        raise  # another process holds it: in use, not damaged
    except Exception as e:
        rep.problems.append(f"cannot count examples: {_short(e)}")
    sizes = _sizes_disagree(store, name, meta)
    if sizes:
        rep.problems.append(sizes)
        rep.readable = rep.stored
        return rep
    try:
        good, bad = scan(store, name)
    except LibraryLockedError:
        raise
    except Exception as e:
        rep.problems.append(f"examples cannot be listed: {_short(e)}")
        return rep
    rep.readable, rep.unreadable = len(good), bad
    if bad:
        rep.problems.append(f"{len(bad)} examples have an unreadable vector or payload")
    rec = meta.extra.get(COUNT_KEY)
    if isinstance(rec, int):
        rep.recorded = rec
        total = len(good) + len(bad)
        if total != rec:
            rep.problems.append(
                f"{total} examples found, the last write left {rec} (an id mapping is truncated?)"
            )
    if not rep.problems:  # every example reads, as many as the last write left: can their labels be read?
        index = _label_index_problem(store, name)
        if index:
            rep.problems.append(index)
    made_from = settings_behind(meta.extra, len(good))
    if made_from is not None and not rep.problems:
        rep.problems.append(
            f"its settings (profile, decision) were made from {made_from} examples, it holds {len(good)}: "
            "an add or delete stopped before they were rebuilt (the next detect or repair rebuilds them)"
        )
    return rep


def repair_library(
    store: Any, name: str, rescue_dir: str | os.PathLike | None = None,
    restore_meta: Callable[[str], str | None] | None = None,
) -> RepairResult:
    """Rebuild library ``name`` from the examples that read whole.

    Rolls back an interrupted batch; if any example is unreadable, first writes the
    readable ones to ``<rescue_dir>/<name>.rescue-<time>.samlib.zip``, then deletes the
    library and imports them again (with their ids), so the new files are sound; the
    derived profile is rebuilt. ``restore_meta(name)`` may bring back damaged metadata
    (the Edge store keeps a backup); returns what it did, or None.
    """
    actions: list[str] = []
    try:
        meta = store.get_meta(name)
    except LibraryError as e:
        if type(e).__name__ == "LibraryNotFoundError" or restore_meta is None:
            raise
        done = restore_meta(name)
        if not done:
            raise LibraryError(
                f"cannot repair {name!r}: its metadata is unreadable and there is no backup "
                f"({_what(e)}); restore the library from an export, or delete it"
            ) from None
        actions.append(done)
        meta = store.get_meta(name)
    if journal.pending_of(meta) is not None:
        actions.append(journal.roll_back(store, name, force=True) or "cleared a journal")
        meta = store.get_meta(name)
    sizes = _sizes_disagree(store, name, meta)
    if sizes:  # a rebuild would drop every sound example as "unreadable": change nothing
        raise LibraryError(f"cannot repair {name!r}: {sizes}. Nothing was changed; restore the library from "
                           "an export, or put its embedder's size back in its metadata's 'dim'")
    good, bad = scan(store, name)
    rescue = None
    rec = meta.extra.get(COUNT_KEY)
    # every example whole and counted, the label index lost: rebuild too
    index = None if bad or (isinstance(rec, int) and rec != len(good)) else _label_index_problem(store, name)
    if bad or index:
        import datetime as _dt

        from sam_detect.store.base import LibraryMeta
        from sam_detect.store.exchange import export_examples, import_library

        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        folder = Path(rescue_dir) if rescue_dir else Path.cwd()
        rescue = folder / f"{name}.rescue-{stamp}.samlib.zip"
        clean = LibraryMeta.from_dict(meta.to_dict())
        for k in (journal.PENDING_KEY, COUNT_KEY):
            clean.extra.pop(k, None)
        export_examples(clean, good, rescue)
        store.delete_library(name)
        import_library(store, rescue, name=name)
        actions.append(
            f"rebuilt from the {len(good)} readable examples (saved first to {rescue}); "
            + (f"dropped {len(bad)} unreadable" if bad else f"none dropped ({index})")
        )
    else:
        n = len(good)
        rec = meta.extra.get(COUNT_KEY)
        if rec != n:
            store.update_extra(name, COUNT_KEY, n)
            if isinstance(rec, int):
                actions.append(
                    f"recorded count set to the {n} examples that read (was {rec}: "
                    f"{max(rec - n, 0)} were lost before this repair)"
                )
    _rebuild_profile(store, name, meta)
    return RepairResult(name, len(good), bad, actions, rescue)


def _label_index_problem(store: Any, name: str) -> str | None:
    """What is wrong with reading the library's labels (what ``show``, ``detect`` and
    ``stats`` count them by: a payload index on the edge store, its files deleted), where
    every example reads whole; ``None`` when they read."""
    try:
        store.labels(name)
    except LibraryLockedError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure here is the index's, whatever the store
        return f"its label index cannot be read ({_short(e)})"
    return None


def _rebuild_profile(store: Any, name: str, meta: Any) -> None:
    if "profile" not in meta.extra:
        return
    from sam_detect.profile import build_profile

    pairs = []
    for _, _, labels, payloads in store.iter_examples(name):
        pairs.extend((lab, (p or {}).get("shape")) for lab, p in zip(labels, payloads, strict=True))
    store.update_extra(name, "profile", build_profile(pairs))


def _what(e: BaseException) -> str:
    """What ``e`` says is wrong: a damaged library's error without its advice to run
    ``library check`` (said by check and repair, which are that advice)."""
    return str(getattr(e, "what", None) or e)


def _short(e: BaseException) -> str:
    return " ".join(_what(e).split())[:200]
