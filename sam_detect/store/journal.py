"""Crash-safe writes: a journal of the batch being written, kept in the library's metadata.

A store's own ``add`` undoes a failed batch while the process lives; a ``kill -9``, an OOM
kill or a power cut skips that undo. So every write path that changes a library's examples
(``add``, ``library import``, ``import --merge``, ``copy``, ``reembed``) records its intent
first, in the library's metadata (``extra["_pending"]``), which every backend writes
atomically (Edge: a new file renamed over the old; qdrant: one point upsert; memory: the
whole store file renamed over the old)::

    {"ids": [UUID, ...], "new": bool, "pid": 1234, "started": ISO-8601}

and clears it once the batch is written and flushed (the *commit*). When a store opens a
library that still holds a journal, the batch was interrupted: the store rolls it back —
deletes those ids, or the whole library when the batch created it (``"new": true``). A kill
at any moment therefore leaves all of the batch (journal cleared) or none of it (journal
rolled back on the next open). Rolling back is idempotent, so a kill during a roll-back is
finished by the next open.

Who rolls back: embedded backends (Edge, client local mode, memory file) on open, since
one process at a time holds the library. A Qdrant server is shared, so a journal there may
belong to a live writer: it is reported by ``library check`` and rolled back by
``library repair`` only.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import socket
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sam_detect.store.base import LibraryMeta

log = logging.getLogger("sam_detect")

#: Key in ``LibraryMeta.extra`` holding an unfinished batch.
PENDING_KEY = "_pending"


def pending_of(meta: LibraryMeta) -> dict[str, Any] | None:
    """The journal of an unfinished batch in ``meta``, or None."""
    p = (meta.extra or {}).get(PENDING_KEY)
    return p if isinstance(p, dict) else None


#: Tokens of the batches this process is writing now: an open in the same process (the
#: store re-reading its metadata) must not roll back a batch still being written.
_ACTIVE: set[str] = set()


def is_own(p: dict[str, Any] | None) -> bool:
    """True if the journal ``p`` belongs to a batch this process is still writing."""
    return bool(p) and p.get("token") in _ACTIVE


def _record(ids: Sequence[str], new: bool, token: str | None = None) -> dict[str, Any]:
    token = token or uuid.uuid4().hex
    _ACTIVE.add(token)
    return {
        "ids": list(ids),
        "new": bool(new),
        "token": token,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _writer_alive(p: dict[str, Any]) -> bool:
    """True if the journal's writer is another process still running on this machine (it
    may be between creating a library and taking its lock): its batch is not ours to undo."""
    pid = p.get("pid")
    if p.get("host") != socket.gethostname() or not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def provisional(meta: LibraryMeta) -> LibraryMeta:
    """A copy of ``meta`` marked as created by an unfinished batch: until :func:`commit`,
    the library is removed again by the next open (a crash right after creating it leaves
    no empty library behind)."""
    d = meta.to_dict()
    d["extra"] = {**(d.get("extra") or {}), PENDING_KEY: _record([], True)}
    return LibraryMeta.from_dict(d)


def new_ids(n: int) -> list[str]:
    """``n`` fresh example ids (the journal must name them before they are written)."""
    return [str(uuid.uuid4()) for _ in range(n)]


def begin(store: Any, name: str, ids: Sequence[str]) -> None:
    """Record that ``ids`` are about to be written to library ``name``."""
    prev = pending_of(store.get_meta(name))
    new = bool(prev and prev.get("new"))
    ids = list(ids)
    token = prev.get("token") if is_own(prev) else None
    if prev and prev.get("ids"):
        ids = list(dict.fromkeys([*prev["ids"], *ids]))
    store.update_extra(name, PENDING_KEY, _record(ids, new, token))


def commit(store: Any, name: str) -> None:
    """The batch is written: clear the journal."""
    p = pending_of(store.get_meta(name))
    store.update_extra(name, PENDING_KEY, None)
    if p:
        _ACTIVE.discard(p.get("token"))


def roll_back(store: Any, name: str, force: bool = False) -> str | None:
    """Undo library ``name``'s unfinished batch, if any; returns what was done (or None).

    Deletes the journal's ids, or the whole library when the batch created it; then clears
    the journal. Safe to repeat. A batch this process is still writing is left alone unless
    ``force`` (its own failure path).
    """
    p = pending_of(store.get_meta(name))
    if p is None or (not force and (is_own(p) or _writer_alive(p))):
        return None
    _ACTIVE.discard(p.get("token"))
    if p.get("new"):
        store.delete_library(name)
        what = f"removed library {name!r}, left half-made by an interrupted write"
    else:
        ids = [str(i) for i in p.get("ids") or []]
        n = store.delete(name, ids=ids) if ids else 0
        store.update_extra(name, PENDING_KEY, None)
        what = (
            f"rolled back an interrupted write to library {name!r} "
            f"({n} of its {len(ids)} examples had been written)"
        )
    log.warning("%s", what)
    return what


@contextmanager
def batch(store: Any, name: str, ids: Sequence[str]) -> Iterator[None]:
    """Journal a batch: ``begin`` before the body, ``commit`` after it; if the body raises,
    roll the batch back (in this process) and re-raise."""
    begin(store, name, ids)
    try:
        yield
    except BaseException:
        try:
            roll_back(store, name, force=True)
        except Exception as e:  # pragma: no cover - backend gone mid-call
            log.error("could not roll back a failed write to %r: %s (the next open will)", name, e)
        raise
    commit(store, name)


def add(
    store: Any,
    name: str,
    vectors: Any,
    labels: Sequence[str],
    payloads: Sequence[dict[str, Any]] | None = None,
    ids: Sequence[str] | None = None,
) -> list[str]:
    """``store.add`` made crash-safe by the journal; returns the ids."""
    ids = list(ids) if ids is not None else new_ids(len(labels))
    with batch(store, name, ids):
        out = store.add(name, vectors, labels, payloads, ids=ids)
    return out
