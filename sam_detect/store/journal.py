"""Crash-safe writes: a journal of the batch being written, kept in the library's metadata.

A store's own ``add`` undoes a failed batch while the process lives; a ``kill -9``, an OOM
kill or a power cut skips that undo. So every write path that changes a library's examples
(``add``, ``library import``, ``import --merge``, ``copy``, ``reembed``, and deleting
examples: ``library delete --label/--id``, the UI's delete and undo) records its intent
first, in the library's metadata (``extra["_pending"]``), which every backend writes
atomically (Edge: a new file renamed over the old; qdrant: one point upsert; memory: the
whole store file renamed over the old)::

    {"op": "add" | "delete", "ids": [UUID, ...], "new": bool, "pid": 1234, "host": ...,
     "started": ISO-8601}

and clears it once the batch is written and flushed (the *commit*). When a store opens a
library that still holds a journal, the batch was interrupted, and the store recovers it:

* an **add** is rolled back: those ids are deleted, or the whole library when the batch
  created it (``"new": true``);
* a **delete** is rolled forward: the ids it named are deleted (a label delete journals the
  ids the label had, so examples added later are never touched).

A kill at any moment therefore leaves all of the change or none of it. Recovery is
idempotent, so a kill during a recovery is finished by the next open; it ends by recording
the count the library now holds (``extra["_count"]``, which reads compare with the store).

Who recovers: embedded backends (Edge, client local mode, memory file) on open, since one
process at a time holds the library. A Qdrant server is shared, so a journal there may
belong to a live writer: a store opening the server recovers only journals whose writer is
provably gone (this machine, this pid namespace, its pid no longer running); the others
are reported by ``library check`` and recovered by ``library repair``.
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

from sam_detect.errors import LibraryError
from sam_detect.store._common import COUNT_KEY, check_delete_args
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


def _pid_namespace() -> int | None:
    """This process's pid namespace (Linux), so that two containers sharing a host name do
    not take each other's pids for their own."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def _record(ids: Sequence[str], new: bool, token: str | None = None, op: str = "add") -> dict[str, Any]:
    token = token or uuid.uuid4().hex
    _ACTIVE.add(token)
    return {
        "op": op,
        "ids": list(ids),
        "new": bool(new),
        "token": token,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "pidns": _pid_namespace(),
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def pid_running(pid: int) -> bool:
    """True if a process ``pid`` runs on this machine (in this pid namespace)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _same_machine(p: dict[str, Any]) -> bool:
    """True if the journal was written on this machine, in this pid namespace (a journal
    from before ``pidns`` was recorded counts as this namespace)."""
    ns = p.get("pidns")
    return p.get("host") == socket.gethostname() and (ns is None or ns == _pid_namespace())


def _writer_alive(p: dict[str, Any]) -> bool:
    """True if the journal's writer is another process still running on this machine (it
    may be between creating a library and taking its lock): its batch is not ours to undo."""
    pid = p.get("pid")
    if not _same_machine(p) or not isinstance(pid, int) or pid == os.getpid():
        return False
    return pid_running(pid)


def writer_gone(p: dict[str, Any]) -> bool:
    """True only if the journal's writer provably no longer runs: it wrote from this
    machine and pid namespace, and its pid is not running (or is this process, which holds
    no such batch). What a shared server may recover without asking."""
    pid = p.get("pid")
    if not _same_machine(p) or not isinstance(pid, int):
        return False
    return pid == os.getpid() or not pid_running(pid)


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
    if prev is not None and prev.get("op") == "delete":
        raise LibraryError(
            f"library {name!r} has an unfinished delete (pid {prev.get('pid')}, "
            f"{prev.get('started')}); try again once it is done, or run "
            f"`sam-detect library repair {name}`"
        )
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


def roll_back(store: Any, name: str, force: bool = False, shared: bool = False) -> str | None:
    """Recover library ``name``'s unfinished batch, if any; returns what was done (or None).

    An add is undone (its ids deleted, or the whole library when the batch created it), a
    delete is finished (its ids deleted); then the count is recorded and the journal
    cleared. Safe to repeat. A batch this process is still writing is left alone unless
    ``force`` (its own failure path, ``library repair``); with ``shared`` (a server), so is
    every batch whose writer is not provably gone (:func:`writer_gone`).
    """
    p = pending_of(store.get_meta(name))
    if p is None:
        return None
    if not force and (is_own(p) or _writer_alive(p) or (shared and not writer_gone(p))):
        return None
    _ACTIVE.discard(p.get("token"))
    ids = [str(i) for i in p.get("ids") or []]
    if p.get("op") == "delete":
        n = store.delete(name, ids=ids) if ids else 0
        what = (
            f"finished an interrupted delete from library {name!r} "
            f"({n} of its {len(ids)} examples were still there)"
        )
    elif p.get("new"):
        store.delete_library(name)
        what = f"removed library {name!r}, left half-made by an interrupted write"
        log.warning("%s", what)
        return what
    else:
        n = store.delete(name, ids=ids) if ids else 0
        what = (
            f"rolled back an interrupted write to library {name!r} "
            f"({n} of its {len(ids)} examples had been written)"
        )
    # a kill between a delete and its count update (or a recovery that found nothing left
    # to delete) would leave a stale count, which reads take for lost examples
    store.update_extra(name, COUNT_KEY, int(store.count(name)))
    store.update_extra(name, PENDING_KEY, None)
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


def delete(
    store: Any, name: str, ids: Sequence[str] | None = None, label: str | None = None
) -> int:
    """``store.delete`` (by ``ids`` or by ``label``) made crash-safe; returns how many
    examples were deleted.

    The ids to delete are journaled first (a label is resolved to the ids it has now), then
    deleted, then the journal is cleared: a kill at any moment leaves all of them or none
    deleted, since the next open finishes a delete it finds journaled. A delete that fails
    in this process is tried once more; if that fails too, the journal stays for the next
    open to finish.
    """
    want = check_delete_args(ids, label)
    meta = store.get_meta(name)
    prev = pending_of(meta)
    if prev is not None:
        raise LibraryError(
            f"library {name!r} has an unfinished write (pid {prev.get('pid')}, "
            f"{prev.get('started')}); try again once it is done, or run "
            f"`sam-detect library repair {name}`"
        )
    if want is None:
        want = [i for b in store.iter_examples(name) for i, lab in zip(b[0], b[2], strict=True)
                if lab == label]
    want = list(dict.fromkeys(want))
    if not want:
        return 0
    rec = _record(want, False, op="delete")
    store.update_extra(name, PENDING_KEY, rec)
    try:
        try:
            n = store.delete(name, ids=want)
        except Exception as e:
            log.warning("deleting from %r failed (%s); trying once more", name, e)
            n = store.delete(name, ids=want)
    except BaseException:
        _ACTIVE.discard(rec["token"])  # the next open finishes it
        raise
    commit(store, name)
    return n


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
