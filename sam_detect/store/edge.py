"""``edge`` store: libraries in Qdrant Edge (``qdrant-edge-py``), the Qdrant engine in-process.

The same engine as the Qdrant server (segments, HNSW index, payload indexes), without a
server and without the client's pure-Python local mode: on 2 cores it filled 10k examples
118-179x faster and searched them 49-121x faster (docs/performance.md, "Stores"). Qdrant Edge is beta; sam-detect pins
``qdrant-edge-py==0.9.0``.

Layout on disk (``path`` is the libraries folder, shared with the ``qdrant`` store)::

    <path>/<library>/sam_detect_library.json   LibraryMeta + format version
    <path>/<library>/shard/                    one Edge shard (vectors, payloads, WAL)

Each library is its own shard; a process that opens a library holds its write-ahead-log
lock until :meth:`EdgeStore.close`, so a second process gets :class:`LibraryLockedError`
for that library (other libraries in the folder stay usable).

A forked child holds none of its parent's libraries (:func:`_after_fork_in_child`): its
store objects open a library anew on their next use, as another process would, so the
parent lets go of it first (``close()``, or ``release()`` before the fork).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import threading
import time
import uuid
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sam_detect.errors import (
    LibraryError,
    LibraryLockedError,
    LibraryNotFoundError,
    LibraryPathError,
    LibraryUnwritableError,
)
from sam_detect.store._common import (
    COUNT_KEY,
    LABEL_KEY,
    check_library_name,
    check_meta,
    damaged,
    default_library_dir,
    detach_fds,
    disk_usage,
    keep_inherited,
    library_folder_holds,
    not_found,
    point_to_neighbour,
    records_to_batch,
    refuse_id_clash,
    set_extra,
    upsert_all_or_nothing,
    warn_if_large,
)
from sam_detect.store.base import LibraryMeta, Neighbour, Store
from sam_detect.store.edge_files import (
    META_BACKUP,
    META_FILE,
    held_by,
    held_by_pid,
    holder,
    read_holder,
    read_meta,
    restore_meta,
    sweep,
    write_holder,
    write_meta,
)
from sam_detect.store.journal import PENDING_KEY, pending_of, roll_back

__all__ = ["EdgeStore", "META_BACKUP", "META_FILE"]

SHARD_DIR = "shard"
INDEXED_FIELDS = (LABEL_KEY, "source")
UPSERT_BATCH = 1024
QUERY_BATCH = 256
SCROLL_BATCH = 1024
#: the shard folders some store object of this process has open: a second store's
#: ``EdgeShard.load`` of one of them is refused before it touches the files, since the
#: engine's refused load leaves the first holder's journal unusable (keyed by process id too:
#: a forked worker does not hold what its parent held)
_OPEN_HERE: set[tuple[int, str]] = set()
_OPEN_LOCK = threading.Lock()
#: how long an open waits for a library another process holds before it says so: the UI holds
#: a library for one request, a `detect` for its run, so a click during a CLI detect or an
#: `add` during a click waits its turn instead of failing (``SAM_DETECT_LOCK_WAIT`` seconds;
#: ``0``: at once, as before)
LOCK_WAIT = 10.0
LOCK_POLL = 0.2
#: the file in a library's folder that a process holds (``flock``) while it has the library's
#: shard open, taken before the engine is asked to load the shard: a load that the engine
#: refuses because another process holds the shard has begun on its files already, and left
#: that holder's next flush failing ("Tracker journal ... is shorter than expected"; an `add`
#: while a `detect` or a UI request waited for the library failed so, or a `detect` then found
#: one example more than the metadata said: docs/performance.md, session 88)
LOCK_FILE = ".lock"
log = logging.getLogger("sam_detect")
#: every live store object of this process, for :func:`_after_fork_in_child`
_STORES: weakref.WeakSet[EdgeStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A forked child lets go of the libraries its parent had open: their locks (ours and the
    engine's) are the parent's alone, and the child's store objects open a library again on
    their next use, as any other process does (waiting for the parent while it holds it)."""
    global _OPEN_LOCK
    _OPEN_LOCK = threading.Lock()  # another thread of the parent may have held it at the fork
    for store in list(_STORES):
        with contextlib.suppress(Exception):  # a fork never fails for it
            store._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _take_lock(folder: Path) -> tuple[int | None, bool]:
    """``(fd, busy)``: the library's :data:`LOCK_FILE` locked by this open (``fd``, closed to
    let go), or ``busy`` where another open holds it. ``(None, False)`` where the file cannot
    be made (a read-only folder): the engine's own open then says what is wrong."""
    import fcntl

    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None, False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        return None, e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
    return fd, False


def lock_wait() -> float:
    """Seconds an open waits for a library another process holds (``SAM_DETECT_LOCK_WAIT``)."""
    try:
        return max(0.0, float(os.environ.get("SAM_DETECT_LOCK_WAIT", LOCK_WAIT)))
    except ValueError:
        return LOCK_WAIT


def _says_locked(error: BaseException, folder: Path) -> bool:
    """Whether the engine's refusal to load ``folder`` says another process holds it: its
    words, not the paths in its message (a library under ``/data/blocks`` whose load failed
    otherwise was read as in use, waited for, and called busy)."""
    text = str(error)
    for path in {str(folder), str(folder.resolve())}:
        text = text.replace(path, "")
    return re.search(r"wouldblock|\block(ed|ing)?\b", text, re.IGNORECASE) is not None


def _edge():
    try:
        import qdrant_edge
    except ImportError as e:
        raise LibraryError(
            "the 'edge' store needs Qdrant Edge: pip install 'qdrant-edge-py==0.9.0' "
            "(or pip install 'sam-detect[edge]'), or use --store qdrant"
        ) from e
    return qdrant_edge


#: the free space an Edge library needs to be opened: its files are memory-mapped and grow
#: in pages of up to 32 MiB, and a write through a map to a full disk kills the process
#: (SIGBUS, "Bus error") instead of raising an error
MIN_FREE_BYTES = 64 << 20


def _check_free_space(folder: Path) -> None:
    try:
        free = shutil.disk_usage(folder if folder.exists() else folder.parent).free
    except OSError:
        return
    if free < MIN_FREE_BYTES:
        raise LibraryUnwritableError(
            f"the disk holding {folder.parent} has {free / 2**20:.1f} MiB free; an edge library needs at "
            f"least {MIN_FREE_BYTES >> 20} MiB free to be opened (its files are memory-mapped): free some "
            "space, or copy the library folder to another disk"
        )


class EdgeStore(Store):
    """Libraries as Qdrant Edge shards under one folder.

    Args:
        path: the libraries folder; ``None`` means :func:`default_library_dir`.
        hnsw_ef: HNSW search breadth once a library is big enough to be indexed (smaller
            libraries are searched exactly). Higher is more exact and slower.
        exact: always search exhaustively (slower past ~20k examples; for checks).
        optimize_after: merge segments and build the HNSW index before a search once this
            many examples were added since the last optimisation. ``0`` (default): only when
            :meth:`optimize` is called (``sam-detect library optimize``): building the index
            took 2-4.5 min for 100k vectors on 2 cores, and an unindexed Edge library is
            searched exhaustively, which stays interactive to ~100k examples.
    """

    backend = "edge"

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        hnsw_ef: int = 128,
        exact: bool = False,
        optimize_after: int = 0,
    ) -> None:
        _edge()
        p = Path(path).expanduser() if path else default_library_dir()
        if p.exists() and not p.is_dir():
            raise LibraryPathError(f"library path {p} is a file; the edge store needs a folder (--library-path, "
                                   "or SAM_DETECT_LIBRARY_PATH)")
        self.path = p  # made by the first create_library: reading a missing folder leaves none behind
        self.hnsw_ef = int(hnsw_ef)
        self.exact = bool(exact)
        self.optimize_after = int(optimize_after)
        self._shards: dict[str, Any] = {}
        self._locks: dict[str, int] = {}  # each open library's LOCK_FILE, held while its shard is
        self._metas: dict[str, LibraryMeta] = {}
        self._pending: dict[str, int] = {}  # examples added since the last optimize()
        self._warned: set[str] = set()
        self._verified: set[str] = set()  # libraries whose count was checked on open
        self._recovering: set[str] = set()  # libraries whose interrupted batch is being rolled back
        self._lock = threading.RLock()
        self._closed = False
        self._forked_from: int | None = None  # the parent's pid, in a forked child
        self._where = f"library folder {p}"
        sweep(p)
        _STORES.add(self)

    def __repr__(self) -> str:
        return f"EdgeStore({self.path}, {len(self._shards)} open)"

    def holds_file(self, path: str | os.PathLike) -> bool:
        return library_folder_holds(self.path, path)

    # -- libraries -------------------------------------------------------------------------

    def list_libraries(self) -> list[str]:
        self._check_open()
        names = []
        if not self.path.is_dir():
            return names
        for d in self.path.iterdir():
            if d.is_dir() and not d.name.startswith(".") and (d / META_FILE).is_file():
                names.append(d.name)
        # a library a killed writer left half-made is rolled back, not listed
        return sorted(n for n in names if not self._interrupted(n) or self.has_library(n))

    def _interrupted(self, name: str) -> bool:
        """Cheap look for a journal in the metadata file (no parse of a big file needed)."""
        if name in self._metas:
            return False
        try:
            return b'"_pending"' in (self.path / name / META_FILE).read_bytes()
        except OSError:
            return False

    def has_library(self, name: str) -> bool:
        self._check_open()
        check_library_name(name)
        if not self._has_files(name):
            return False
        try:
            self.get_meta(name)  # rolls back an interrupted write first (may remove it)
        except LibraryNotFoundError:
            return False
        except LibraryError:
            pass  # damaged, but there: `library check` / `repair` / `delete` deal with it
        return True

    def _has_files(self, name: str) -> bool:
        return (self.path / name / META_FILE).is_file() and (self.path / name / SHARD_DIR).is_dir()

    def create_library(self, meta: LibraryMeta) -> None:
        qe = _edge()
        self._check_open()
        check_meta(meta)  # a reserved name too (``names.RESERVED_LIBRARY_NAMES``: the qdrant store's folder)
        name = meta.name
        with self._lock:
            final = self.path / name
            if final.exists():
                if self.has_library(name):
                    raise LibraryError(
                        f"library {name!r} already exists in {self._where}; add to it, or delete "
                        f"it first (sam-detect library delete {name} --store edge)"
                    )
                raise LibraryError(
                    f"{final} exists and is not an edge library; pick another library name"
                )
            self.path.mkdir(parents=True, exist_ok=True)
            _check_free_space(final)
            # build it beside the final place, then rename: a crash leaves no half library
            # (only this folder, which the next open removes: see edge_files.sweep)
            tmp = self.path / f".{name}.creating-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            try:
                config = qe.EdgeConfig(
                    # L2-normalised vectors: Dot is cosine, and vectors are stored bit for bit
                    vectors=qe.EdgeVectorParams(size=int(meta.dim), distance=qe.Distance.Dot)
                )
                shard = qe.EdgeShard.create(str(tmp / SHARD_DIR), config)
                try:
                    for field_name in INDEXED_FIELDS:
                        shard.update(
                            qe.UpdateOperation.create_field_index(
                                field_name, qe.PayloadSchemaType.Keyword
                            )
                        )
                    shard.flush()
                finally:
                    shard.close()
                write_meta(tmp, meta)
                os.rename(tmp, final)
            except OSError as e:  # the folder is there by now: renamed onto (ENOTEMPTY on Linux) or raced
                if not (isinstance(e, FileExistsError) or e.errno in (errno.EEXIST, errno.ENOTEMPTY)):
                    raise
                raise LibraryError(
                    f"library {name!r} was just created by another process (two commands made it at "
                    "once); run this one again to add to it"
                ) from None
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)

    def get_meta(self, name: str) -> LibraryMeta:
        self._check_open()
        check_library_name(name)
        if name not in self._metas:
            if not self._has_files(name):
                raise not_found(name, self.list_libraries(), self._where)
            self._metas[name] = read_meta(self.path / name, name)
            if pending_of(self._metas[name]) is not None:
                self._recover(name)
        return LibraryMeta.from_dict(self._metas[name].to_dict())

    def _recover(self, name: str) -> None:
        """Roll back an interrupted batch (see :mod:`sam_detect.store.journal`)."""
        if name in self._recovering:  # the roll back's own open of the library (_shard) finds it too
            return
        self._recovering.add(name)
        try:
            roll_back(self, name)
        except LibraryLockedError:
            return  # another process holds it and may be writing it right now
        finally:
            self._recovering.discard(name)
        if not self._has_files(name):
            raise not_found(name, self.list_libraries(), self._where)

    def update_extra(self, name: str, key: str, value: Any) -> None:
        with self._lock:
            meta = set_extra(self.get_meta(name), key, value)
            # the backup copy (for `library repair`) is left as it was while a batch is open
            write_meta(self.path / name, meta, backup=key != PENDING_KEY)
            self._metas[name] = meta

    def delete_library(self, name: str) -> None:
        """Remove a library, even a damaged one (unreadable metadata or shard)."""
        with self._lock:
            self._check_open()
            check_library_name(name)
            if not (self.path / name).is_dir() or not (self.path / name / META_FILE).exists():
                raise not_found(name, self.list_libraries(), self._where)
            try:
                self._shard(name)  # take the library's lock: refuse while another process uses it
            except LibraryLockedError:
                raise
            except LibraryNotFoundError:
                if not (self.path / name).is_dir():  # deleted by the process it waited for
                    raise
                # its shard folder is missing: damaged, nothing to lock, remove it
            except LibraryError:
                pass  # a shard that does not load is damaged: nothing to lock, remove it
            # the lock is held until the folder is renamed away: a process waiting for the
            # library took it in between, opened the folder being deleted, and was told
            # "read-only disk" or "already open in this process" (a helper's bug hunt, session 89)
            with _OPEN_LOCK:
                fd = self._locks.pop(name, None)  # so closing the shard does not let go of it
            try:
                self._close_shard(name, optimize=False)
                self._metas.pop(name, None)
                self._pending.pop(name, None)
                self._warned.discard(name)
                self._verified.discard(name)
                trash = self.path / f".{name}.deleting-{uuid.uuid4().hex[:8]}"
                os.rename(self.path / name, trash)
            finally:
                if fd is not None:
                    os.close(fd)
            shutil.rmtree(trash, ignore_errors=True)

    # -- examples --------------------------------------------------------------------------

    def _insert(
        self, name: str, vecs: np.ndarray, labels: list[str], payloads: list[dict], ids: list[str],
        given_ids: bool,
    ) -> None:
        """:meth:`Store.add`'s write. All-or-nothing: if a batch fails, the points this call
        wrote are deleted again and :class:`LibraryError` is raised."""
        qe = _edge()
        with self._lock:
            shard = self._shard(name)
            if given_ids:
                refuse_id_clash(name, self._retrieve(shard, ids))

            def write(rows):
                shard.update(
                    qe.UpdateOperation.upsert_points(
                        [qe.Point(id=i, vector=v, payload=p) for i, v, p in rows]
                    )
                )

            def undo(inserted):
                shard.update(qe.UpdateOperation.delete_points(inserted))
                shard.flush()

            upsert_all_or_nothing(name, ids, vecs, labels, payloads, write, undo, UPSERT_BATCH)
            shard.flush()
            self._pending[name] = self._pending.get(name, 0) + len(ids)
            n = self._count(shard)
            self.update_extra(name, COUNT_KEY, n)
            warn_if_large(self.backend, name, n, self._warned)

    def _search(self, name: str, q: np.ndarray, top_k: int, with_payload: bool = True) -> list[list[Neighbour]]:
        """:meth:`Store.search`: exhaustive (exact) over segments without an index;
        approximate HNSW (``hnsw_ef``) over those :meth:`optimize` indexed, unless ``exact=True``.
        """
        qe = _edge()
        with self._lock:
            self.get_meta(name)
            shard = self._read_shard(name)
            if self.optimize_after and self._pending.get(name, 0) >= self.optimize_after:
                self.optimize(name)
            params = qe.SearchParams(hnsw_ef=self.hnsw_ef, exact=self.exact)
            # the label lives in the payload. Without the rest, the hits come bare and the
            # labels are read once per distinct example hit: asking each hit for its label
            # alone still parses that example's whole stored payload (its mask, its
            # image's candidate rows), 4x the search of 3,500 queries against ten examples
            # (docs/performance.md, session 63)
            batches: list = []
            for s in range(0, len(q), QUERY_BATCH):
                reqs = [
                    qe.QueryRequest(
                        limit=top_k,
                        query=qe.Query.Nearest(v.tolist()),
                        with_payload=bool(with_payload),
                        params=params,
                    )
                    for v in q[s : s + QUERY_BATCH]
                ]
                try:
                    batches.extend(shard.query_batch(qe.QueryBatchRequest(reqs)))
                except Exception as e:
                    raise damaged(name, e) from e
            if with_payload:
                return [[point_to_neighbour(h.id, h.score, h.payload) for h in hits] for hits in batches]
            labels = self._labels_of(shard, name, {h.id for hits in batches for h in hits})
            return [[point_to_neighbour(h.id, h.score, labels.get(h.id)) for h in hits] for hits in batches]

    @staticmethod
    def _labels_of(shard: Any, name: str, ids: set) -> dict[Any, dict[str, Any]]:
        """``{id: {"label": ...}}`` of the points ``ids`` (as the shard gives ids), their
        payloads read for the label only."""
        qe = _edge()
        ids = list(ids)
        out: dict[Any, dict[str, Any]] = {}
        for s in range(0, len(ids), SCROLL_BATCH):
            try:
                recs = shard.retrieve(ids[s : s + SCROLL_BATCH], with_payload=qe.PayloadSelector.Include([LABEL_KEY]),
                                      with_vector=False)
            except Exception as e:
                raise damaged(name, e) from e
            out.update((r.id, r.payload) for r in recs)
        return out

    def _delete(self, name: str, ids: list[str] | None, label: str | None) -> int:
        qe = _edge()
        with self._lock:
            self.get_meta(name)
            shard = self._shard(name)
            if ids is not None:
                found = self._retrieve(shard, ids)
                if found:
                    shard.update(qe.UpdateOperation.delete_points(found))
                    shard.flush()
                    self.update_extra(name, COUNT_KEY, self._count(shard))
                return len(found)
            flt = qe.Filter(must=[qe.FieldCondition(key=LABEL_KEY, match=qe.MatchValue(value=label))])
            n = int(shard.count(qe.CountRequest(exact=True, filter=flt)))
            if n:
                shard.update(qe.UpdateOperation.delete_points_by_filter(flt))
                shard.flush()
                self.update_extra(name, COUNT_KEY, self._count(shard))
            return n

    def _update_payloads(self, name: str, updates: dict[str, dict]) -> int:
        qe = _edge()
        with self._lock:
            self.get_meta(name)
            shard = self._shard(name)
            found = self._retrieve(shard, list(updates))
            try:
                for i in found:
                    shard.update(qe.UpdateOperation.set_payload([i], updates[i]))
                shard.flush()
            except Exception as e:
                raise damaged(name, e) from e
            return len(found)

    def labels(self, name: str) -> dict[str, int]:
        qe = _edge()
        with self._lock:
            self.get_meta(name)
            shard = self._read_shard(name)
            n = self._count(shard)
            if not n:
                return {}
            try:
                res = shard.facet(qe.FacetRequest(key=LABEL_KEY, limit=n, exact=True))
            except Exception as e:
                raise damaged(name, e) from e
            return dict(sorted((str(h.value), int(h.count)) for h in res.hits if h.count > 0))

    def count(self, name: str) -> int:
        with self._lock:
            self.get_meta(name)
            return self._count(self._shard(name))

    def iter_examples(
        self, name: str, batch_size: int = SCROLL_BATCH
    ) -> Iterator[tuple[list[str], np.ndarray, list[str], list[dict[str, Any]]]]:
        """Yield ``(ids, vectors (n, D) float32, labels, payloads)`` batches (id order)."""
        qe = _edge()
        meta = self.get_meta(name)
        offset = None
        while True:
            with self._lock:
                try:
                    records, offset = self._read_shard(name).scroll(
                        qe.ScrollRequest(
                            offset=offset, limit=batch_size, with_payload=True, with_vector=True
                        )
                    )
                except LibraryError:
                    raise
                except Exception as e:
                    raise damaged(name, e) from e
            if records:
                yield records_to_batch(records, meta.dim)
            if offset is None:
                return

    def optimize(self, name: str) -> bool:
        """Merge segments and build the HNSW index (blocking). True if anything changed."""
        with self._lock:
            self.get_meta(name)
            changed = bool(self._shard(name).optimize())
            self._pending[name] = 0
            return changed

    def storage_bytes(self, name: str) -> int:
        """Bytes the library takes on disk."""
        self.get_meta(name)
        folder = self.path / name
        return disk_usage(folder)

    def close(self) -> None:
        """Flush and release every library's lock."""
        with self._lock:
            if self._closed:
                return
            for name in list(self._shards):
                with contextlib.suppress(Exception):
                    self._close_shard(name, optimize=False)
            self._closed = True

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # -- internals -------------------------------------------------------------------------

    def _forked(self) -> None:
        """In a forked child (:func:`_after_fork_in_child`): hold nothing of what the parent
        held; each library is opened again on its next use."""
        self._lock = threading.RLock()
        self._forked_from = os.getppid()
        for name, shard in self._shards.items():
            # kept alive and never used: the engine's threads and locks did not come through the
            # fork (a count on one hung), and dropping or closing it would run its flush in the
            # child, over files the parent is still writing
            keep_inherited(shard)
            detach_fds((self.path / name / SHARD_DIR).resolve())
        for fd in self._locks.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._shards.clear()
        self._locks.clear()
        self._pending.clear()
        self._metas.clear()
        self._verified.clear()
        self._recovering.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise LibraryError(f"this edge store ({self._where}) is closed; open a new one")

    def _shard(self, name: str) -> Any:
        shard = self._shards.get(name)
        if shard is not None:
            return shard
        qe = _edge()
        folder = self.path / name / SHARD_DIR
        if not folder.is_dir():  # deleted by another process since this store looked
            self._metas.pop(name, None)
            self._verified.discard(name)
            raise not_found(name, self.list_libraries(), self._where)
        _check_free_space(folder)
        key = (os.getpid(), str(folder.resolve()))
        here = LibraryLockedError(
            f"library {name!r} in {self.path} is already open in this process (another SAMDetect "
            "or store on the same folder); close that one first (.close()), or use it for both")
        wait = lock_wait()
        deadline, said = time.monotonic() + wait, False
        while True:
            with _OPEN_LOCK:
                if key in _OPEN_HERE:
                    raise here
                fd, busy = _take_lock(self.path / name)
                if busy:  # another process (or store object) has it open: the engine is not asked
                    shard, error = None, BlockingIOError(f"WouldBlock: {LOCK_FILE} is held")
                else:
                    try:
                        shard = qe.EdgeShard.load(str(folder))
                    except Exception as e:
                        shard, error = None, e
                        if fd is not None:
                            os.close(fd)
                    else:
                        _OPEN_HERE.add(key)
                        if fd is not None:
                            self._locks[name] = fd
            locked = shard is None and _says_locked(error, folder)
            if shard is None and not folder.is_dir():  # deleted by the process it waited for
                self._metas.pop(name, None)
                self._verified.discard(name)
                raise LibraryNotFoundError(
                    f"library {name!r} in {self.path} was deleted by another process"
                    + (" while this one waited for it" if said else "")) from None
            with _OPEN_LOCK:  # another store object of this process holds it (not a stale holder file)
                here_now = key in _OPEN_HERE
            if not locked or here_now or time.monotonic() >= deadline:
                break
            if not said:  # another process holds it (a UI request, a detect): its turn first
                log.warning("library %r is in use by another sam-detect process%s: waiting up to %g s for it",
                            name, holder(self.path / name), wait)
                said = True
            time.sleep(LOCK_POLL)
        if shard is None:
            text = str(error)
            if locked and here_now:
                raise here from None
            held = read_holder(self.path / name) if locked else None  # one reading for the check and the message
            if locked and self._forked_from is not None and held_by_pid(held) == self._forked_from:
                raise LibraryLockedError(
                    f"library {name!r} in {self.path} is held by the process this one was forked from "
                    f"(pid {self._forked_from})" + (f", waited {wait:g} s" if said else "") + ": a forked process "
                    "opens a library anew and cannot share its parent's; close it (or .release()) in the "
                    "parent first, or open the library in the child only"
                ) from None
            if locked:
                raise LibraryLockedError(
                    f"library {name!r} in {self.path} is in use by another sam-detect process"
                    f"{held_by(held)}"
                    + (f" (waited {wait:g} s)" if said else "")
                    + "; wait for it to finish or close it, or share libraries "
                    "through a server (--qdrant-url http://localhost:6333)"
                ) from None
            if "read-only" in text.lower() or not os.access(folder, os.W_OK):
                raise LibraryUnwritableError(
                    f"library {name!r} in {self.path} is on a read-only disk or folder; the edge store opens "
                    "a library for writing, even to detect: copy the folder somewhere writable and point "
                    "--library-path (or SAM_DETECT_LIBRARY_PATH) at the copy"
                ) from None
            raise LibraryError(
                f"cannot open library {name!r} in {self.path}: {' '.join(text.split())[:200]}"
            ) from error
        self._shards[name] = shard
        with contextlib.suppress(OSError):
            write_holder(self.path / name)
        if name in self._metas:
            # read before this process held the library: another may have written it since
            # (an `add` waited for), and its count compared with the shard's called a healthy
            # library damaged (docs/performance.md, session 88); read as the last writer left it
            self._metas[name] = read_meta(self.path / name, name)
            if pending_of(self._metas[name]) is not None:  # a writer killed while this one waited:
                self._recover(name)  # its batch rolled back, as any open of the library does
        return shard

    def release(self) -> None:
        """Let go of every library's lock (the store stays usable: the next call opens the
        library again). The UI calls it after each request, so the CLI can use the library
        between requests; what this store read of the libraries is read again then (another
        process may have added to one, or deleted it, meanwhile)."""
        with self._lock:
            for name in list(self._shards):
                with contextlib.suppress(Exception):
                    self._close_shard(name, optimize=False)
            self._metas.clear()
            self._verified.clear()

    def _read_shard(self, name: str) -> Any:
        """The shard, after a cheap check on first use: as many examples as the last write left."""
        shard = self._shard(name)
        if name not in self._verified:
            recorded = self._metas[name].extra.get(COUNT_KEY) if name in self._metas else None
            if isinstance(recorded, int):
                n = self._count(shard)
                if n != recorded:
                    raise damaged(name, f"{n} examples readable, the last write left {recorded}")
            qe = _edge()
            try:  # one example read whole: a truncated vector or payload file fails here
                shard.scroll(qe.ScrollRequest(limit=1, with_payload=True, with_vector=True))
            except Exception as e:
                raise damaged(name, e) from e
            self._verified.add(name)
        return shard

    def restore_meta(self, name: str) -> str | None:
        """Put the metadata backup back in place (``library repair``); what was done, or None."""
        done = restore_meta(self.path / name)
        if done is not None:
            self._metas.pop(name, None)
        return done

    def vector_sizes(self, name: str) -> dict[int, int]:
        """``{values per vector: examples}`` as stored, whatever the metadata's ``dim`` says
        (``library check``: a ``dim`` that no vector has is the metadata's fault, not theirs)."""
        qe = _edge()
        sizes: dict[int, int] = {}
        offset = None
        with self._lock:
            shard = self._shard(name)
            while True:
                recs, offset = shard.scroll(qe.ScrollRequest(offset=offset, limit=SCROLL_BATCH,
                                                             with_payload=False, with_vector=True))
                for r in recs:
                    k = int(np.asarray(r.vector).size)
                    sizes[k] = sizes.get(k, 0) + 1
                if offset is None:
                    return sizes

    def scan(self, name: str) -> tuple[list[tuple[str, np.ndarray, str, dict]], list[str]]:
        """Every example that reads back whole, and the ids of those that do not (for
        ``library check`` / ``repair``): ids are listed without touching vectors or payloads,
        then read in batches, one by one where a batch fails."""
        qe = _edge()
        meta = self.get_meta(name)
        with self._lock:
            shard = self._shard(name)
            ids: list[str] = []
            offset = None
            while True:
                recs, offset = shard.scroll(
                    qe.ScrollRequest(offset=offset, limit=SCROLL_BATCH, with_payload=False,
                                     with_vector=False)
                )
                ids.extend(str(r.id) for r in recs)
                if offset is None:
                    break
            good: list[tuple[str, np.ndarray, str, dict]] = []
            bad: list[str] = []

            def take(recs: list[Any]) -> None:
                for r in recs:
                    n = point_to_neighbour(r.id, 0.0, r.payload)
                    vec = np.asarray(r.vector, np.float32).reshape(-1)
                    if (vec.size != meta.dim or not np.isfinite(vec).all() or not n.label
                            or float(np.linalg.norm(vec)) < 1e-6):
                        bad.append(n.id)
                    else:
                        good.append((n.id, vec, n.label, n.payload))

            for s in range(0, len(ids), 256):
                chunk = ids[s : s + 256]
                try:
                    take(shard.retrieve(chunk, with_payload=True, with_vector=True))
                except Exception:
                    for i in chunk:
                        try:
                            take(shard.retrieve([i], with_payload=True, with_vector=True))
                        except Exception:
                            bad.append(i)
            return good, bad

    def _close_shard(self, name: str, optimize: bool) -> None:
        shard = self._shards.pop(name, None)
        if shard is None:
            return
        try:
            if optimize:
                shard.optimize()
            shard.flush()
        finally:
            shard.close()
            self._pending.pop(name, None)
            with _OPEN_LOCK:
                _OPEN_HERE.discard((os.getpid(), str((self.path / name / SHARD_DIR).resolve())))
                fd = self._locks.pop(name, None)
                if fd is not None:  # after the engine let go: the next holder finds its files closed
                    os.close(fd)

    @staticmethod
    def _count(shard: Any) -> int:
        qe = _edge()
        return int(shard.count(qe.CountRequest(exact=True)))

    @staticmethod
    def _retrieve(shard: Any, ids: Sequence[str]) -> list[str]:
        out: list[str] = []
        for s in range(0, len(ids), SCROLL_BATCH):
            recs = shard.retrieve(
                list(ids[s : s + SCROLL_BATCH]), with_payload=False, with_vector=False
            )
            out.extend(str(r.id) for r in recs)
        return out

