"""``qdrant`` store: libraries in Qdrant through ``qdrant-client``.

Three places, one set of semantics:

* ``path=FOLDER`` (the default, :func:`default_library_dir`): the client's embedded local
  mode, pure Python, one process at a time (an exclusive lock on the folder). Meant for
  up to ~20,000 examples per library; past that use the ``edge`` store or a server.
* ``location=":memory:"``: the same engine without a folder (tests).
* ``url="http://host:6333"`` (+ ``api_key``): a Qdrant server or cluster, shared by many
  processes and people (``docker compose up -d`` starts one, see docker-compose.yml).

A forked child holds nothing of its parent's folder (:func:`_after_fork_in_child`): its
store objects open the folder anew on their next use, as another process would, so the
parent closes its store first. Before, the child searched a copy of the parent's libraries
as they were at the fork (nothing added since), its adds reached the files behind the
parent's back, and its ``close()`` (or its store's clean-up when it merely exited) let go
of the parent's lock on the folder, so a third process could open it and write while the
parent still held it (what one of them wrote was lost).

A library is a collection (Dot distance on L2-normalised vectors, i.e. cosine similarity) named like the library; its
:class:`~sam_detect.store.base.LibraryMeta` lives as a point in the bookkeeping collection
``_sam_detect_libraries``, so the layout is the same on every location. Each example is a
point with a UUID id and payload ``{"label": ..., **caller's payload}``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from sam_detect.errors import LibraryError, LibraryLockedError, LibraryPathError
from sam_detect.store._common import (
    COUNT_KEY,
    LABEL_KEY,
    StoreConnectionError,
    check_library_name,
    check_meta,
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
from sam_detect.store.journal import pending_of, roll_back, writer_gone
from sam_detect.store.qdrant_errors import classify, is_missing_collection, quiet, short

log = logging.getLogger(__name__)

T = TypeVar("T")

META_COLLECTION = "_sam_detect_libraries"
META_FORMAT = 1
_META_NAMESPACE = uuid.UUID("6a0d6f0e-3c2b-4c8e-9a57-5d1f3e2b7c41")

#: Payload fields indexed on a server (keyword): k-NN filters and facets on them stay fast.
INDEXED_FIELDS = (LABEL_KEY, "source")

UPSERT_BATCH = 256
QUERY_BATCH = 256
SCROLL_BATCH = 1024
#: the file in an embedded folder that qdrant-client locks (``flock``) while it has the folder open
LOCK_FILE = ".lock"
#: every live store object of this process that is not a server's, for :func:`_after_fork_in_child`
_STORES: weakref.WeakSet[QdrantStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A forked child lets go of the folders its parent had open: the lock is the parent's
    alone, and the child's store objects open the folder again on their next use, as any
    other process does (refused while the parent holds it)."""
    for store in list(_STORES):
        with contextlib.suppress(Exception):  # a fork never fails for it
            store._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _flock_holder(lock_file: Path) -> int | None:
    """The pid that holds ``lock_file``'s ``flock``, from ``/proc/locks``; ``None`` where
    unknown (not Linux, not held)."""
    try:
        st = os.stat(lock_file)
        text = Path("/proc/locks").read_text()
    except OSError:
        return None
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in text.splitlines():
        f = line.split()  # "1: FLOCK  ADVISORY  WRITE 2315 fe:00:2163673 0 EOF" (a waiter: "1: -> FLOCK ...")
        if len(f) >= 6 and f[1] == "FLOCK" and f[5] == want:
            with contextlib.suppress(ValueError):
                return int(f[4])
    return None


class QdrantStore(Store):
    """Libraries in Qdrant: an embedded folder, ``":memory:"`` or a server URL.

    Args:
        path: folder for the embedded local mode. Used when neither ``url`` nor
            ``location`` is given; ``None`` then means :func:`default_library_dir`.
        url: Qdrant server, e.g. ``"http://localhost:6333"``.
        api_key: the server's API key (server only).
        location: ``":memory:"`` for an in-process, throw-away store; a URL is accepted too.
        prefer_grpc: talk gRPC (port 6334) to the server instead of REST.
        timeout: seconds per server request.
        retries: extra attempts on transient server errors (connection reset, 429, 5xx),
            with exponential backoff starting at ``backoff`` seconds.

    Raises:
        ValueError: conflicting arguments (``path`` with ``url``, ``api_key`` without a server...).
        LibraryLockedError: another process holds the embedded folder.
        StoreConnectionError: the server cannot be reached or refuses the key.
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        url: str | None = None,
        api_key: str | None = None,
        location: str | None = None,
        prefer_grpc: bool = False,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        given = [n for n, v in (("path", path), ("url", url), ("location", location)) if v]
        if len(given) > 1:
            raise ValueError(
                f"give only one of path=, url= or location= to QdrantStore, got {' and '.join(given)}: "
                "a store is either an embedded folder, ':memory:' or a server"
            )
        if location and location != ":memory:":
            if not location.startswith(("http://", "https://")):
                raise ValueError(
                    f"location must be ':memory:' or a server URL (http://...), got {location!r}; "
                    "for a folder use path="
                )
            url, location = location, None
        if api_key and not url:
            raise ValueError(
                "api_key is for a Qdrant server: give url= too (an embedded folder needs no key)"
            )
        if prefer_grpc and not url:
            raise ValueError("prefer_grpc is for a Qdrant server: give url= too")
        if url and not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {url!r}")

        self.retries = int(retries)
        self.backoff = float(backoff)
        self._warned: set[str] = set()
        self._metas: dict[str, LibraryMeta] = {}  # cache: one lookup per library, not per call
        # local mode is not thread-safe: serialise its calls; a server handles concurrency itself
        self._lock: Any = contextlib.nullcontext() if url else threading.RLock()
        self._closed = False
        self._forked_from: int | None = None  # the parent's pid, in a forked child
        self._qdrant: Any = None  # the client; None in a forked child until it opens the folder anew
        self.url = url
        self.path: Path | None = None

        from qdrant_client import QdrantClient

        if url:
            self.backend = "qdrant-server"
            self._where = f"Qdrant server {url}"
            with warnings.catch_warnings():
                # a key over plain http to localhost (docker compose) is expected, not a risk
                warnings.filterwarnings(
                    "ignore", message=r"Api key is used with an insecure connection"
                )
                self._qdrant = QdrantClient(
                    url=url,
                    api_key=api_key or None,
                    prefer_grpc=prefer_grpc,
                    timeout=int(np.ceil(timeout)),
                    check_compatibility=False,
                )
            self._call(self._client.get_collections)  # fail now, with a clear message
        elif location == ":memory:":
            self.backend = "qdrant-memory"
            self._where = "the in-memory Qdrant store"
            self._qdrant = QdrantClient(location=":memory:")
        else:
            self.backend = "qdrant-local"
            p = Path(path).expanduser() if path else default_library_dir()
            if p.exists() and not p.is_dir():
                raise LibraryPathError(f"library path {p} is a file; the qdrant store needs a folder (--library-path, "
                                   "or SAM_DETECT_LIBRARY_PATH)")
            p.mkdir(parents=True, exist_ok=True)
            self.path = p
            self._where = f"library folder {p}"
            self._qdrant = self._open_folder()
        if not url:
            _STORES.add(self)
        self._ensure_meta_collection()
        # finish what a killed writer left (store.journal). Local mode: this process holds
        # the store alone, so every journal is a dead writer's. A server is shared: only
        # journals whose writer is provably gone (this machine, pid not running); the rest
        # may be a live writer's, for `library check` to report and `library repair` to undo
        self._recover_all(shared=self.backend == "qdrant-server")

    @property
    def _client(self) -> Any:
        """The qdrant-client; in a forked child, the folder opened anew on first use."""
        client = self._qdrant
        return client if client is not None else self._open_again()

    def _open_folder(self) -> Any:
        """A client on the embedded folder :attr:`path`, holding its lock."""
        from qdrant_client import QdrantClient

        p = self.path
        try:
            with quiet():
                # callers may use one store from several threads (the UI server): the
                # client's sqlite files are guarded by self._lock instead
                return QdrantClient(path=str(p), force_disable_check_same_thread=True)
        except RuntimeError as e:
            if "already accessed by another instance" in str(e):
                raise self._locked() from None
            raise LibraryError(f"cannot open {self._where}: {e}") from e
        except Exception as e:  # corrupt files in the folder
            raise LibraryError(
                f"cannot open {self._where}: {type(e).__name__}: {e}. "
                "Move the folder away or pass another --library-path."
            ) from e

    def _locked(self) -> LibraryLockedError:
        """The refusal of a folder another process holds, naming the parent where that is the
        holder (``/proc/locks`` says so; where it cannot tell, a store the child inherited
        from a parent that is still alive)."""
        p = self.path
        inherited = self._forked_from is not None
        parent = self._forked_from if inherited else os.getppid()
        pid = _flock_holder(p / LOCK_FILE)
        if pid == parent or (pid is None and inherited and os.getppid() == parent):
            return LibraryLockedError(
                f"library folder {p} is held by the process this one was forked from (pid {parent}): "
                "a forked process opens the folder anew and cannot share its parent's; close the store "
                "in the parent first, or open the store in the child only"
            )
        return LibraryLockedError(
            f"library folder {p} is in use by another sam-detect process; close it, "
            "or share libraries through a server (--qdrant-url http://localhost:6333)"
        )

    def _forked(self) -> None:
        """In a forked child (:func:`_after_fork_in_child`): hold nothing of what the parent
        held; the folder is opened again on the next use. The inherited client is never used
        (its libraries are the parent's as they were at the fork, and its writes would go
        behind the parent's back) nor closed (that let go of the parent's lock)."""
        self._lock = threading.RLock()  # another thread of the parent may have held it at the fork
        if self.path is None or self._closed or self._qdrant is None:
            return  # ':memory:': the child's own copy, as any object's
        self._forked_from = os.getppid()
        client, self._qdrant = self._qdrant, None
        # kept alive and never used or closed: closing it let go of the parent's lock on the
        # folder (the lock is on an open file the two shared), and would close sqlite
        # connections another thread of the parent may have been writing through
        keep_inherited(client)
        detach_fds(self.path.resolve())
        self._metas.clear()

    def _open_again(self) -> Any:
        """In a forked child: open the folder as a new process would, recovering what a
        killed writer left (the parent has let go of it, so this process holds it alone)."""
        with self._lock:
            if self._closed:
                raise LibraryError(f"this store ({self._where}) is closed; open a new one")
            if self._qdrant is None:
                self._qdrant = self._open_folder()
                self._metas.clear()
                self._ensure_meta_collection()
                self._recover_all()
            return self._qdrant

    def holds_file(self, path: str | os.PathLike) -> bool:
        return library_folder_holds(self.path, path)

    def __repr__(self) -> str:
        return f"QdrantStore({self.backend}: {self._where})"

    # -- libraries -------------------------------------------------------------------------

    def list_libraries(self) -> list[str]:
        collections = self._collections()
        return sorted(name for name in self._all_names() if name in collections)

    def has_library(self, name: str) -> bool:
        check_library_name(name)
        return self._read_meta(name) is not None and self._call(
            self._client.collection_exists, name
        )

    def create_library(self, meta: LibraryMeta) -> None:
        from qdrant_client import models

        check_meta(meta)
        name = meta.name
        exists = self._call(self._client.collection_exists, name)
        if exists:
            if self._read_meta(name) is not None:
                raise LibraryError(
                    f"library {name!r} already exists in {self._where}; add to it, or delete it "
                    f"first (sam-detect library delete {name})"
                )
            raise LibraryError(
                f"{self._where} has a collection {name!r} that is not a sam-detect library; "
                "pick another library name"
            )
        # metadata first: a crash before the collection exists leaves metadata that
        # nothing lists (no collection), never a collection that is not a library
        self._write_meta(meta)
        try:
            self._call(
                self._client.create_collection,
                name,
                # vectors arrive L2-normalised, so Dot is cosine similarity; unlike Cosine it
                # stores them bit for bit (export -> import round-trips exactly)
                vectors_config=models.VectorParams(size=int(meta.dim), distance=models.Distance.DOT),
            )
        except BaseException:
            with contextlib.suppress(Exception):
                self._delete_meta(name)
            raise
        try:
            if self.backend == "qdrant-server":
                for field_name in INDEXED_FIELDS:
                    self._call(
                        self._client.create_payload_index,
                        name,
                        field_name=field_name,
                        field_schema=models.PayloadSchemaType.KEYWORD,
                        wait=True,
                    )
        except BaseException:
            with contextlib.suppress(Exception):
                self._call(self._client.delete_collection, name)
            with contextlib.suppress(Exception):
                self._delete_meta(name)
            raise

    def get_meta(self, name: str) -> LibraryMeta:
        check_library_name(name)
        if name in self._metas:
            return LibraryMeta.from_dict(self._metas[name].to_dict())
        meta = self._read_meta(name)
        if meta is None or not self._call(self._client.collection_exists, name):
            raise not_found(name, self.list_libraries(), self._where)
        self._metas[name] = meta
        return LibraryMeta.from_dict(meta.to_dict())

    def update_extra(self, name: str, key: str, value: Any) -> None:
        meta = set_extra(self.get_meta(name), key, value)
        self._write_meta(meta)  # one point upsert: atomic on every backend
        self._metas[name] = meta

    def delete_library(self, name: str) -> None:
        """Remove a library, even one whose metadata no longer parses."""
        check_library_name(name)
        recs = self._call(self._client.retrieve, META_COLLECTION, ids=[_meta_id(name)])
        if not recs or not self._call(self._client.collection_exists, name):
            raise not_found(name, self.list_libraries(), self._where)
        # the collection first: a crash between leaves metadata nothing lists, never a
        # collection that blocks the name
        self._call(self._client.delete_collection, name)
        self._delete_meta(name)
        self._warned.discard(name)

    # -- examples --------------------------------------------------------------------------

    def _insert(
        self, name: str, vecs: np.ndarray, labels: list[str], payloads: list[dict], ids: list[str],
        given_ids: bool,
    ) -> None:
        """:meth:`Store.add`'s write: upserts in batches of :data:`UPSERT_BATCH`, retrying
        transient server errors. If a batch still fails, the points this call inserted are
        deleted again and :class:`LibraryError` is raised: the library is left as it was."""
        from qdrant_client import models

        if given_ids:
            refuse_id_clash(name, [r.id for r in self._retrieve(name, ids)])

        def write(rows):
            points = [models.PointStruct(id=i, vector=v, payload=p) for i, v, p in rows]
            self._call(self._client.upsert, name, points=points, wait=True)

        def undo(inserted):
            self._call(self._client.delete, name, points_selector=inserted, wait=True)

        upsert_all_or_nothing(name, ids, vecs, labels, payloads, write, undo, UPSERT_BATCH)
        self._record_count(name)
        warn_if_large(self.backend, name, self.count(name), self._warned)

    def _search(self, name: str, q: np.ndarray, top_k: int, with_payload: bool = True) -> list[list[Neighbour]]:
        from qdrant_client import models

        fields = True if with_payload else [LABEL_KEY]  # the label lives in the payload
        out: list[list[Neighbour]] = []
        for s in range(0, len(q), QUERY_BATCH):
            requests = [
                models.QueryRequest(query=v.tolist(), limit=top_k, with_payload=fields)
                for v in q[s : s + QUERY_BATCH]
            ]
            responses = self._call(self._client.query_batch_points, name, requests=requests)
            for resp in responses:
                out.append([point_to_neighbour(p.id, p.score, p.payload) for p in resp.points])
        return out

    def _delete(self, name: str, ids: list[str] | None, label: str | None) -> int:
        from qdrant_client import models

        self.get_meta(name)
        if ids is not None:
            found = [str(r.id) for r in self._retrieve(name, ids)]
            if found:
                self._call(self._client.delete, name, points_selector=found, wait=True)
                self._record_count(name)
            return len(found)
        flt = _label_filter(label)
        n = self._call(self._client.count, name, count_filter=flt, exact=True).count
        if n:
            self._call(
                self._client.delete,
                name,
                points_selector=models.FilterSelector(filter=flt),
                wait=True,
            )
            self._record_count(name)
        return int(n)

    def _update_payloads(self, name: str, updates: dict[str, dict]) -> int:
        self.get_meta(name)
        found = [str(r.id) for r in self._retrieve(name, list(updates))]
        for i in found:
            self._call(self._client.set_payload, name, payload=updates[i], points=[i], wait=True)
        return len(found)

    def _record_count(self, name: str) -> None:
        self.update_extra(name, COUNT_KEY, self.count(name))

    def labels(self, name: str) -> dict[str, int]:
        self.get_meta(name)
        n = self.count(name)
        if n == 0:
            return {}
        try:
            res = self._call(self._client.facet, name, key=LABEL_KEY, limit=max(n, 1), exact=True)
            return dict(sorted((str(h.value), int(h.count)) for h in res.hits if h.count > 0))
        except StoreConnectionError:
            raise
        except Exception as e:  # a server collection made without the label index
            log.info("facet on %r failed (%s); counting labels by scrolling", name, short(e))
        counts: dict[str, int] = {}
        for _ids, _vecs, labels, _pays in self.iter_examples(name):
            for lab in labels:
                counts[lab] = counts.get(lab, 0) + 1
        return dict(sorted(counts.items()))

    def count(self, name: str) -> int:
        self.get_meta(name)
        return int(self._call(self._client.count, name, exact=True).count)

    def iter_examples(
        self, name: str, batch_size: int = SCROLL_BATCH
    ) -> Iterator[tuple[list[str], np.ndarray, list[str], list[dict[str, Any]]]]:
        """Yield ``(ids, vectors (n, D) float32, labels, payloads)`` batches (id order)."""
        meta = self.get_meta(name)
        for records in self._scroll(name, batch_size, with_payload=True, with_vectors=True):
            yield records_to_batch(records, meta.dim)

    def _scroll(self, collection: str, batch_size: int = SCROLL_BATCH, **kwargs: Any) -> Iterator[list]:
        """Every point of ``collection``, in non-empty batches of up to ``batch_size``."""
        offset = None
        while True:
            records, offset = self._call(
                self._client.scroll, collection, limit=batch_size, offset=offset, **kwargs
            )
            if records:
                yield records
            if offset is None:
                return

    def storage_bytes(self, name: str) -> int | None:
        """Bytes on disk for an embedded folder's library; ``None`` where unknown (server, memory)."""
        self.get_meta(name)
        if self.path is None:
            return None
        folder = self.path / "collection" / name
        return disk_usage(folder) if folder.exists() else 0

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _STORES.discard(self)
            if self._qdrant is not None:  # a forked child that never opened the folder has none
                with contextlib.suppress(Exception), quiet():
                    self._qdrant.close()

    def __del__(self) -> None:  # release the folder lock if the caller forgot close()
        with contextlib.suppress(Exception):
            self.close()

    # -- internals -------------------------------------------------------------------------

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call the client: mute local-mode chatter, retry transient server errors, and
        turn connection/auth failures into one-line :class:`StoreConnectionError`."""
        if self._closed:
            raise LibraryError(f"this store ({self._where}) is closed; open a new one")
        attempt = 0
        while True:
            try:
                with self._lock, quiet():
                    return fn(*args, **kwargs)
            except Exception as e:
                kind = classify(e) if self.backend == "qdrant-server" else "other"
                if kind == "transient" and attempt < self.retries:
                    delay = self.backoff * (2**attempt)
                    log.warning("%s: %s; retrying in %.1f s", self._where, short(e), delay)
                    time.sleep(delay)
                    attempt += 1
                    continue
                if kind == "auth":
                    raise StoreConnectionError(
                        f"{self._where} refused the request ({short(e)}): check the API key "
                        "(--qdrant-api-key or SAM_DETECT_QDRANT_API_KEY)"
                    ) from e
                if kind == "transient":
                    raise StoreConnectionError(
                        f"cannot reach {self._where} ({short(e)}): is it running? "
                        "(docker compose up -d) Check --qdrant-url."
                    ) from e
                if is_missing_collection(e) and args and isinstance(args[0], str):
                    # deleted by another process since we cached its metadata
                    self._metas.pop(args[0], None)
                    raise not_found(args[0], [], self._where) from None
                raise

    def _collections(self) -> set[str]:
        return {c.name for c in self._call(self._client.get_collections).collections}

    def _ensure_meta_collection(self) -> None:
        if not self._call(self._client.collection_exists, META_COLLECTION):
            try:
                self._call(self._client.create_collection, META_COLLECTION, vectors_config={})
            except Exception:
                # another process created it between our check and our create
                if not self._call(self._client.collection_exists, META_COLLECTION):
                    raise

    def _recover_all(self, shared: bool = False) -> None:
        """Recover every library's unfinished batch (see :func:`journal.roll_back`);
        ``shared``: only those whose writer is provably gone."""
        try:
            metas = self._all_metas()
        except LibraryError:
            return  # damaged metadata: `library check` reports it
        pending = {n: p for n, m in metas.items() if (p := pending_of(m)) is not None}
        if not pending:
            return
        collections = self._collections()
        for name, p in pending.items():
            if shared and not writer_gone(p):
                log.info("library %r holds a journal of pid %s on %s; left to its writer "
                         "(or `library repair`)", name, p.get("pid"), p.get("host"))
                continue
            if name not in collections:  # killed between metadata and collection
                self._delete_meta(name)
                continue
            self._metas[name] = metas[name]
            try:
                roll_back(self, name, shared=shared)
            except LibraryError as e:  # one library's trouble must not stop the open
                log.warning("could not recover library %r: %s", name, e)
            finally:
                if shared:
                    self._metas.pop(name, None)  # others write it too: read it fresh

    def _delete_meta(self, name: str) -> None:
        self._metas.pop(name, None)
        self._call(
            self._client.delete, META_COLLECTION, points_selector=[_meta_id(name)], wait=True
        )

    def _write_meta(self, meta: LibraryMeta) -> None:
        from qdrant_client import models

        payload = {"library": meta.name, "format": META_FORMAT, "meta": meta.to_dict()}
        point = models.PointStruct(id=_meta_id(meta.name), vector={}, payload=payload)
        self._call(self._client.upsert, META_COLLECTION, points=[point], wait=True)

    def _read_meta(self, name: str) -> LibraryMeta | None:
        recs = self._call(
            self._client.retrieve, META_COLLECTION, ids=[_meta_id(name)], with_payload=True
        )
        if not recs:
            return None
        return _parse_meta(recs[0].payload, self._where)

    def _all_metas(self) -> dict[str, LibraryMeta]:
        metas = {}
        for recs in self._scroll(META_COLLECTION, with_payload=True):
            for r in recs:
                m = _parse_meta(r.payload, self._where)
                metas[m.name] = m
        return metas

    def _all_names(self) -> set[str]:
        """Every library named in the bookkeeping collection, parsed or not (one damaged
        record must not hide the others)."""
        names = set()
        for recs in self._scroll(META_COLLECTION, with_payload=["library"]):
            names.update(str(r.payload.get("library")) for r in recs if (r.payload or {}).get("library"))
        return names

    def _retrieve(self, name: str, ids: Sequence[str]) -> list[Any]:
        out = []
        for s in range(0, len(ids), SCROLL_BATCH):
            out.extend(
                self._call(
                    self._client.retrieve,
                    name,
                    ids=list(ids[s : s + SCROLL_BATCH]),
                    with_payload=False,
                    with_vectors=False,
                )
            )
        return out


def _meta_id(name: str) -> str:
    return str(uuid.uuid5(_META_NAMESPACE, name))


def _parse_meta(payload: dict[str, Any] | None, where: str) -> LibraryMeta:
    payload = payload or {}
    fmt = payload.get("format")
    if fmt != META_FORMAT or not isinstance(payload.get("meta"), dict):
        raise LibraryError(
            f"library metadata in {where} has format {fmt!r}; this sam-detect reads format "
            f"{META_FORMAT}. Upgrade sam-detect or use another library path."
        )
    return LibraryMeta.from_dict(payload["meta"])


def _label_filter(label: str) -> Any:
    from qdrant_client import models

    return models.Filter(
        must=[models.FieldCondition(key=LABEL_KEY, match=models.MatchValue(value=label))]
    )
