"""The ``edge`` store's files beside each shard: the metadata and its backup, who holds a
library, and what a killed process left in the libraries folder.

Layout (``folder`` is ``<libraries folder>/<library>``)::

    <folder>/sam_detect_library.json        LibraryMeta + format version
    <folder>/.sam_detect_library.json.bak   the same without a journal (``library repair``)
    <folder>/.holder.json                   pid and command of the process holding the lock
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from sam_detect.errors import LibraryError
from sam_detect.store._common import damaged
from sam_detect.store.base import LibraryMeta
from sam_detect.store.journal import PENDING_KEY, pid_running

META_FILE = "sam_detect_library.json"
META_BACKUP = ".sam_detect_library.json.bak"
HOLDER_FILE = ".holder.json"
META_FORMAT = 1

_LEFTOVER = re.compile(r"\.(?P<name>.+)\.(?P<kind>creating|deleting)-(?:(?P<pid>\d+)-)?[0-9a-f]{8}")


def _replace_text(f: Path, text: str) -> None:
    """Write beside, then rename: a crash leaves the old or the new file, never half."""
    tmp = f.with_name(f".{META_FILE}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, f)


def _doc(meta: dict) -> str:
    return json.dumps({"format": META_FORMAT, "meta": meta}, indent=2)


def write_meta(folder: Path, meta: LibraryMeta, *, backup: bool = True) -> None:
    """Write the library's metadata and, with ``backup``, its second copy.

    The backup never holds a journal: restoring one would roll back a batch that was
    committed since."""
    _replace_text(folder / META_FILE, _doc(meta.to_dict()))
    if backup:
        d = meta.to_dict()
        d["extra"] = {k: v for k, v in d["extra"].items() if k != PENDING_KEY}
        _replace_text(folder / META_BACKUP, _doc(d))


def read_meta(folder: Path, name: str) -> LibraryMeta:
    """The metadata of library ``name`` in ``folder``; ``LibraryError`` when unreadable."""
    f = folder / META_FILE
    try:
        doc = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise damaged(name, f"cannot read {f.name}: {e}") from e
    if doc.get("format") != META_FORMAT or not isinstance(doc.get("meta"), dict):
        raise LibraryError(
            f"{f} has format {doc.get('format')!r}; this sam-detect reads format {META_FORMAT}. "
            "Upgrade sam-detect."
        )
    return LibraryMeta.from_dict(doc["meta"])


def restore_meta(folder: Path) -> str | None:
    """Put the metadata backup back in place; what was done, or ``None`` (no usable backup)."""
    try:
        doc = json.loads((folder / META_BACKUP).read_text(encoding="utf-8"))
        LibraryMeta.from_dict(doc["meta"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    _replace_text(folder / META_FILE, json.dumps(doc, indent=2))
    return f"restored the metadata from its backup ({META_BACKUP})"


def sweep(path: Path) -> None:
    """Remove what a killed process left beside the libraries: a library it was still
    building (``.NAME.creating-PID-*``, when PID no longer runs) or had renamed away to
    delete (``.NAME.deleting-*``)."""
    for d in path.glob(".*.*-*"):
        m = _LEFTOVER.fullmatch(d.name)
        if m is None or not d.is_dir():
            continue
        if m["kind"] == "creating" and (m["pid"] is None or pid_running(int(m["pid"]))):
            continue  # another process may be building it now (or an older name: keep)
        shutil.rmtree(d, ignore_errors=True)


def write_holder(folder: Path) -> None:
    """Record this process as the library's holder, for the message another process gets."""
    argv0 = sys.argv[0] if sys.argv else "python"
    prog = "sam-detect" if "sam_detect" in argv0 or argv0.endswith("sam-detect") else Path(argv0).name
    cmd = " ".join([prog, *sys.argv[1:2]])
    (folder / HOLDER_FILE).write_text(json.dumps(
        {"pid": os.getpid(), "command": cmd, "since": time.strftime("%H:%M:%S")}), encoding="utf-8")


def read_holder(folder: Path) -> Any:
    """The library's holder file as written (:func:`write_holder`), or ``None`` where it cannot
    be read: one reading serves :func:`held_by_pid` and :func:`held_by` both."""
    try:
        return json.loads((folder / HOLDER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def held_by_pid(held: Any) -> int | None:
    """The process id a holder file (:func:`read_holder`) names, or ``None``."""
    try:
        return int(held["pid"])
    except (ValueError, KeyError, TypeError):
        return None


def held_by(held: Any) -> str:
    """`` (pid N, command, since HH:MM:SS)`` for a holder file (:func:`read_holder`), or ``""``."""
    try:
        return f" (pid {int(held['pid'])}, {str(held['command'])[:60]}, since {str(held['since'])[:8]})"
    except (ValueError, KeyError, TypeError):
        return ""


def holder(folder: Path) -> str:
    """`` (pid N, command, since HH:MM:SS)`` for the library's holder, or ``""``."""
    return held_by(read_holder(folder))
