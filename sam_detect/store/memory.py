"""``memory`` store: libraries as numpy arrays in this process.

Exact cosine k-NN with one matrix product per batch of queries; for tests, tiny jobs and
as the reference the other backends are checked against. With ``path=`` the libraries are
saved to one ``.npz`` file (no pickle: vectors as float32 arrays, everything else as JSON)
after every change and loaded again on the next start.
"""

from __future__ import annotations

import contextlib
import copy
import glob
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sam_detect.errors import LibraryError, LibraryLockedError
from sam_detect.store._common import (
    COUNT_KEY,
    MEMORY_FILE_NAME,
    check_library_name,
    check_meta,
    not_found,
    warn_if_large,
)
from sam_detect.store.base import LibraryMeta, Neighbour, Store
from sam_detect.store.journal import pending_of, pid_running, roll_back

FILE_FORMAT = "sam-detect-memory-store"
FILE_VERSION = 1
DEFAULT_FILE_NAME = MEMORY_FILE_NAME


@dataclass
class _Library:
    meta: LibraryMeta
    vectors: np.ndarray  # (N, D) float32, rows L2-normalised
    ids: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    payloads: list[dict[str, Any]] = field(default_factory=list)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``<path>.lock`` (``fcntl.flock``; none where there is no
    ``fcntl``) while a writer checks and replaces the store file."""
    try:
        import fcntl
    except ImportError:  # Windows: the stamp check alone
        yield
        return
    with open(path.with_name(path.name + ".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _put_count(lib: _Library, count: Any) -> None:
    """Put back the example count a failed write had changed (``None``: there was none)."""
    if count is None:
        lib.meta.extra.pop(COUNT_KEY, None)
    else:
        lib.meta.extra[COUNT_KEY] = count


class MemoryStore(Store):
    """Libraries held as numpy arrays; optionally persisted to one ``.npz`` file.

    Args:
        path: ``None`` keeps everything in memory. A file path (``.npz``) is loaded if it
            exists and rewritten (atomically) after every change. A folder, or a path without
            a suffix, means ``<folder>/memory_store.npz``. One process at a time per file.
    """

    backend = "memory"

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self._libs: dict[str, _Library] = {}
        self._lock = threading.RLock()
        self._warned: set[str] = set()
        self._closed = False
        self.path: Path | None = None
        if path is not None:
            p = Path(path).expanduser()
            if p.is_dir() or not p.suffix:
                p = p / DEFAULT_FILE_NAME
            self.path = p
            self._sweep()
            self._seen = self._stamp()  # the file as read: a write finds it so, or refuses
            if p.exists():
                self._load(p)
                for name in [n for n, lib in self._libs.items() if pending_of(lib.meta)]:
                    roll_back(self, name)  # a writer was killed: undo its batch

    def holds_file(self, path: str | os.PathLike) -> bool:
        """The store's file, and its lock and temporary files beside it."""
        if self.path is None:
            return False
        p = Path(os.path.realpath(path))
        return p.parent == Path(os.path.realpath(self.path.parent)) and p.name.startswith(self.path.name)

    def __repr__(self) -> str:
        where = str(self.path) if self.path else "in memory"
        return f"MemoryStore({where}, {len(self._libs)} libraries)"

    # -- libraries -------------------------------------------------------------------------

    def list_libraries(self) -> list[str]:
        self._check_open()
        return sorted(self._libs)

    def has_library(self, name: str) -> bool:
        self._check_open()
        return name in self._libs

    def create_library(self, meta: LibraryMeta) -> None:
        self._check_open()
        check_meta(meta)
        with self._lock:
            if meta.name in self._libs:
                raise LibraryError(
                    f"library {meta.name!r} already exists; add to it, or delete it first "
                    f"(sam-detect library delete {meta.name})"
                )
            self._libs[meta.name] = _Library(
                meta=LibraryMeta.from_dict(copy.deepcopy(meta.to_dict())),
                vectors=np.zeros((0, int(meta.dim)), np.float32),
            )
            try:
                self._save()
            except BaseException:  # a failed save leaves the store as it was, as the file is
                del self._libs[meta.name]
                raise

    def get_meta(self, name: str) -> LibraryMeta:
        return LibraryMeta.from_dict(copy.deepcopy(self._get(name).meta.to_dict()))

    def update_extra(self, name: str, key: str, value: Any) -> None:
        with self._lock:
            lib = self._get(name)
            had, old = key in lib.meta.extra, lib.meta.extra.get(key)
            if value is None:
                lib.meta.extra.pop(key, None)
            else:
                lib.meta.extra[key] = copy.deepcopy(value)
            try:
                self._save()
            except BaseException:  # a value that cannot be saved (not JSON) or a failed write:
                if had:  # the old one back, or every later save of this store failed too
                    lib.meta.extra[key] = old
                else:
                    lib.meta.extra.pop(key, None)
                raise

    def delete_library(self, name: str) -> None:
        with self._lock:
            lib = self._get(name)
            del self._libs[name]
            try:
                self._save()
            except BaseException:  # not deleted from the file: not from this store either
                self._libs[name] = lib
                raise
            self._warned.discard(name)

    # -- examples --------------------------------------------------------------------------

    def _insert(
        self, name: str, vecs: np.ndarray, labels: list[str], payloads: list[dict], ids: list[str],
        given_ids: bool,
    ) -> None:
        """:meth:`Store.add`'s write. All-or-nothing: input was checked before anything
        changes, and a failed save puts the arrays back."""
        with self._lock:
            lib = self._get(name)
            clash = set(ids).intersection(lib.ids)
            if clash:
                raise LibraryError(f"library {name!r} already holds ids {sorted(clash)[:3]}...")
            old = (lib.vectors, len(lib.ids), lib.meta.extra.get(COUNT_KEY))
            try:
                lib.vectors = np.concatenate([lib.vectors, vecs], axis=0)
                lib.ids.extend(ids)
                lib.labels.extend(labels)
                lib.payloads.extend(payloads)
                lib.meta.extra[COUNT_KEY] = len(lib.ids)
                self._save()
            except BaseException:
                lib.vectors = old[0]
                del lib.ids[old[1] :], lib.labels[old[1] :], lib.payloads[old[1] :]
                _put_count(lib, old[2])  # and the count the last write left (library check compares them)
                raise
            warn_if_large(self.backend, name, len(lib.ids), self._warned)

    def _search(self, name: str, q: np.ndarray, top_k: int, with_payload: bool = True) -> list[list[Neighbour]]:
        """:meth:`Store.search`, exact: ties keep insertion order."""
        with self._lock:
            lib = self._get(name)
            n = len(lib.ids)
            if n == 0 or len(q) == 0:
                return [[] for _ in range(len(q))]
            k = min(top_k, n)
            out: list[list[Neighbour]] = []
            # chunk the queries so the (M, N) score matrix stays below ~64 MB
            step = max(1, int(16_000_000 // n))
            for start in range(0, len(q), step):
                scores = q[start : start + step] @ lib.vectors.T
                if k < n:
                    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
                else:
                    part = np.broadcast_to(np.arange(n), scores.shape)
                for row, cand in zip(scores, part, strict=True):
                    # best first; equal scores in insertion order
                    order = cand[np.lexsort((cand, -row[cand]))]
                    out.append(
                        [
                            Neighbour(
                                id=lib.ids[j],
                                score=float(row[j]),
                                label=lib.labels[j],
                                payload=copy.deepcopy(lib.payloads[j]) if with_payload else {},
                            )
                            for j in order
                        ]
                    )
            return out

    def _delete(self, name: str, ids: list[str] | None, label: str | None) -> int:
        with self._lock:
            lib = self._get(name)
            if ids is not None:
                drop = set(ids)
                keep = [i for i, x in enumerate(lib.ids) if x not in drop]
            else:
                keep = [i for i, lab in enumerate(lib.labels) if lab != label]
            removed = len(lib.ids) - len(keep)
            if removed:
                old = (lib.vectors, lib.ids, lib.labels, lib.payloads, lib.meta.extra.get(COUNT_KEY))
                lib.vectors = np.ascontiguousarray(lib.vectors[keep])
                lib.ids = [lib.ids[i] for i in keep]
                lib.labels = [lib.labels[i] for i in keep]
                lib.payloads = [lib.payloads[i] for i in keep]
                lib.meta.extra[COUNT_KEY] = len(lib.ids)
                try:
                    self._save()
                except BaseException:  # a failed save puts the examples back (a retry deletes them
                    lib.vectors, lib.ids, lib.labels, lib.payloads, count = old  # then, and counts them)
                    _put_count(lib, count)
                    raise
            return removed

    def _update_payloads(self, name: str, updates: dict[str, dict]) -> int:
        with self._lock:
            lib = self._get(name)
            at = [(j, updates[x]) for j, x in enumerate(lib.ids) if x in updates]
            if at:
                old = [lib.payloads[j] for j, _ in at]
                try:
                    for j, fields in at:
                        lib.payloads[j] = {**(lib.payloads[j] or {}), **copy.deepcopy(fields)}
                    self._save()
                except BaseException:  # a failed save puts the payloads back
                    for (j, _), pay in zip(at, old, strict=True):
                        lib.payloads[j] = pay
                    raise
            return len(at)

    def labels(self, name: str) -> dict[str, int]:
        lib = self._get(name)
        counts: dict[str, int] = {}
        for lab in lib.labels:
            counts[lab] = counts.get(lab, 0) + 1
        return dict(sorted(counts.items()))

    def count(self, name: str) -> int:
        return len(self._get(name).ids)

    def iter_examples(self, name: str, batch_size: int = 1024):
        """Yield ``(ids, vectors (n, D) float32, labels, payloads)`` batches in insertion order."""
        lib = self._get(name)
        for s in range(0, len(lib.ids), batch_size):
            yield (
                list(lib.ids[s : s + batch_size]),
                lib.vectors[s : s + batch_size].copy(),
                list(lib.labels[s : s + batch_size]),
                copy.deepcopy(lib.payloads[s : s + batch_size]),
            )

    def storage_bytes(self, name: str) -> int:
        """Approximate bytes the library takes (vectors plus JSON payloads)."""
        lib = self._get(name)
        return int(lib.vectors.nbytes) + len(json.dumps([lib.ids, lib.labels, lib.payloads]))

    def close(self) -> None:
        self._closed = True

    # -- internals -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise LibraryError("this memory store is closed; open a new one")

    def _get(self, name: str) -> _Library:
        self._check_open()
        check_library_name(name)
        try:
            return self._libs[name]
        except KeyError:
            where = f"memory store {self.path}" if self.path else "the memory store"
            raise not_found(name, list(self._libs), where) from None

    def _save(self) -> None:
        if self.path is None:
            return
        index = {"format": FILE_FORMAT, "version": FILE_VERSION, "libraries": []}
        arrays: dict[str, np.ndarray] = {}
        for i, (name, lib) in enumerate(sorted(self._libs.items())):
            index["libraries"].append(
                {
                    "name": name,
                    "meta": lib.meta.to_dict(),
                    "ids": lib.ids,
                    "labels": lib.labels,
                    "payloads": lib.payloads,
                    "array": f"v{i}",
                }
            )
            arrays[f"v{i}"] = lib.vectors
        arrays["index"] = np.array(json.dumps(index))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # the pid in the name lets the next open remove what a killed writer left (_sweep)
        fd, tmp = tempfile.mkstemp(
            prefix=f"{self.path.name}.{os.getpid()}.", suffix=".tmp", dir=self.path.parent
        )
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            with _locked(self.path):  # one writer at a time checks and replaces
                if self._stamp() != self._seen:  # two processes each adding to what they read: the last one
                    raise LibraryLockedError(  # would drop the other's examples, silently
                        f"memory store file {self.path} was changed by another process since this one read it "
                        "(one process at a time per file): nothing of this change was written; run it again (from "
                        "Python: with the store opened again, which reads the file anew; this one keeps "
                        "refusing, as what it holds is what the file held before)")
                os.replace(tmp, self.path)
                self._seen = self._stamp()
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _stamp(self) -> tuple[int, int, int] | None:
        """The store file's inode, change time and size (each write replaces it: a new
        inode), or ``None`` where there is none."""
        try:
            st = self.path.stat() if self.path is not None else None
        except FileNotFoundError:
            return None
        return None if st is None else (st.st_ino, st.st_mtime_ns, st.st_size)

    def _sweep(self) -> None:
        """Remove the half-written copies of the store file that killed writers left
        (``<file>.<pid>.*.tmp``, once that pid no longer runs)."""
        if self.path is None or not self.path.parent.is_dir():
            return
        pattern = re.compile(re.escape(self.path.name) + r"\.(\d+)\..+\.tmp")
        for f in self.path.parent.glob(f"{glob.escape(self.path.name)}.*.tmp"):
            m = pattern.fullmatch(f.name)
            if m and not pid_running(int(m[1])):
                f.unlink(missing_ok=True)

    def _load(self, path: Path) -> None:
        try:
            with np.load(path, allow_pickle=False) as z:
                index = json.loads(str(z["index"][()]))
                if index.get("format") != FILE_FORMAT:
                    raise ValueError(f"format is {index.get('format')!r}, expected {FILE_FORMAT!r}")
                if index.get("version") != FILE_VERSION:
                    raise ValueError(
                        f"format version {index.get('version')!r}; this sam-detect reads version {FILE_VERSION}"
                    )
                for entry in index["libraries"]:
                    meta = LibraryMeta.from_dict(entry["meta"])
                    vecs = np.asarray(z[entry["array"]], dtype=np.float32)
                    n = len(entry["ids"])
                    if (
                        vecs.shape != (n, meta.dim)
                        or len(entry["labels"]) != n
                        or len(entry["payloads"]) != n
                    ):
                        raise ValueError(f"library {entry['name']!r} has inconsistent array sizes")
                    self._libs[entry["name"]] = _Library(
                        meta,
                        vecs,
                        list(entry["ids"]),
                        list(entry["labels"]),
                        list(entry["payloads"]),
                    )
        except LibraryError:
            raise
        except Exception as e:
            raise LibraryError(
                f"cannot read memory store file {path}: {e}. Move it away or pass another path."
            ) from e
