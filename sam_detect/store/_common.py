"""Checks and helpers shared by every store backend.

Every backend validates its input the same way, so a bad call fails with the same message
on ``memory``, ``qdrant`` and ``edge``, and congruence tests can compare them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sam_detect.errors import (
    EmbedderMismatchError,
    InvalidNameError,
    LibraryError,
    LibraryNotFoundError,
)
from sam_detect.store.base import LibraryMeta, Neighbour

#: Library names: letters, digits, ``_ - .``; 1-64 characters; must not start with ``_`` or ``.``
#: (names starting with ``_`` are reserved for the store's own bookkeeping).
LIBRARY_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")

#: Payload keys the stores set themselves.
#: the payload key each point's label is stored under
LABEL_KEY = "label"
RESERVED_PAYLOAD_KEYS = (LABEL_KEY,)

#: Library sizes (examples) past which a backend is no longer the right choice, and the
#: backend to use instead. From docs/perf_stores.md (200 queries, 2 shared CPU cores):
#: the client's local mode took 183-217 s to fill and 17-43 s to search 10k examples;
#: numpy searches 100k 1280-d in ~2.5 s but keeps everything in RAM and rewrites its file
#: on every change; Edge was measured to 100k (0.3-0.6 s after optimize), beyond is a guess.
SIZE_LIMITS: dict[str, tuple[int, str]] = {
    "memory": (100_000, "the 'edge' store (Qdrant Edge) or a Qdrant server"),
    "qdrant-memory": (10_000, "the 'edge' store (Qdrant Edge) or a Qdrant server (--qdrant-url)"),
    "qdrant-local": (10_000, "the 'edge' store (Qdrant Edge) or a Qdrant server (--qdrant-url)"),
    "edge": (1_000_000, "a Qdrant server (--qdrant-url)"),
}


class LibrarySizeWarning(UserWarning):
    """A library has grown past the size its backend is meant for."""


#: Key in ``LibraryMeta.extra``: the example count after the last write, so a check on
#: open sees examples that vanished (a truncated id mapping) instead of searching fewer.
COUNT_KEY = "_count"
#: the example count the derived settings (profile, decision, ...) were last rebuilt from
DERIVED_KEY = "derived_count"


def settings_behind(extra: dict | None, count: int) -> int | None:
    """The example count a library's derived settings were made from where it is not the
    ``count`` it holds (an add, delete or merge stopped between its examples and their
    settings); ``None`` where they agree, or the library records none (made before)."""
    made_from = (extra or {}).get(DERIVED_KEY)
    return made_from if isinstance(made_from, int) and made_from != count else None


def damaged(name: str, why: object) -> LibraryError:
    """The one-line error for a library whose files cannot be read as they should."""
    from sam_detect.errors import LibraryDamagedError

    text = " ".join(str(why).split())[:200]
    return LibraryDamagedError(
        f"library {name!r} is damaged ({text}); run `sam-detect library check {name}` to see "
        f"what, then `sam-detect library repair {name}` (or restore it from an export)",
        what=text,
    )


class StoreConnectionError(LibraryError, ConnectionError):
    """A Qdrant server cannot be reached, or refused the API key."""


def default_library_dir() -> Path:
    """Folder for embedded libraries: ``$SAM_DETECT_LIBRARY_PATH``, else
    ``<user data dir>/sam-detect/libraries`` (see :func:`sam_detect.paths.default_library_path`)."""
    from sam_detect.paths import default_library_path

    return default_library_path()


#: the memory store's file in a folder (the CLI's: the library folder, beside the other stores')
MEMORY_FILE_NAME = "memory_store.npz"


def library_folder_holds(folder: Path | None, path: str | os.PathLike) -> bool:
    """Whether ``path`` is one of library folder ``folder``'s own files, which the edge store,
    the qdrant client's local mode and the CLI's memory store share: anything inside an edge
    library's folder, qdrant's ``collection`` or a hidden folder (a library being made or
    deleted), qdrant's ``meta.json`` and ``.lock``, and the memory store's file with its lock
    and temporary files beside it. A folder of the user's own there (``exports/``) is not the
    stores'; ``None`` (a store on no folder) holds none."""
    from sam_detect.store.edge_files import META_FILE

    if folder is None:
        return False
    try:
        rel = Path(os.path.realpath(path)).relative_to(os.path.realpath(folder))
    except ValueError:
        return False
    if len(rel.parts) != 1:
        top = Path(folder) / rel.parts[0] if rel.parts else Path(folder)
        return not rel.parts or top.name == "collection" or top.name.startswith(".") \
            or (top / META_FILE).is_file()
    return rel.name in ("meta.json", ".lock") or rel.name.startswith(MEMORY_FILE_NAME)


def check_library_name(name: object) -> str:
    """Return ``name`` if it is a valid library name, else raise
    :class:`~sam_detect.errors.InvalidNameError` (a ``ValueError``)."""
    if not isinstance(name, str) or not LIBRARY_NAME_RE.fullmatch(name):  # `$` matches before a final newline
        raise InvalidNameError(
            f"invalid library name {name!r}: expected 1-64 characters of letters, digits, "
            "'_', '-' or '.', starting with a letter or digit (e.g. 'nuclei' or 'hela-v2')"
        )
    return name


def not_found(name: str, available: Sequence[str], where: str) -> LibraryNotFoundError:
    """The error for a missing library, naming the ones that exist."""
    have = ", ".join(sorted(available)) if available else "none"
    return LibraryNotFoundError(
        f"no library {name!r} in {where}; available: {have}. "
        "Add examples to create it (sam-detect add ... --library NAME)."
    )


def check_meta(meta: object) -> LibraryMeta:
    if not isinstance(meta, LibraryMeta):
        raise TypeError(f"expected a LibraryMeta, got {type(meta).__name__}")
    check_library_name(meta.name)
    from sam_detect.names import refuse_reserved

    refuse_reserved(meta.name)  # made in no store (reading one an older version made still works)
    if isinstance(meta.dim, bool) or not isinstance(meta.dim, (int, np.integer)) or meta.dim < 1:
        raise ValueError(f"library {meta.name!r}: dim must be a positive integer, got {meta.dim!r}")
    if not isinstance(meta.embedder_id, str) or not meta.embedder_id:
        raise ValueError(f"library {meta.name!r}: embedder_id must be a non-empty string")
    try:
        json.dumps(meta.to_dict())
    except (TypeError, ValueError) as e:
        raise ValueError(f"library {meta.name!r}: metadata must be JSON-serialisable ({e})") from e
    return meta


def check_vectors(vectors: object, dim: int, library: str, what: str = "vectors") -> np.ndarray:
    """Validate ``(N, dim)`` finite, non-zero vectors; return them float32 and L2-normalised."""
    arr = np.asarray(vectors)
    if arr.ndim == 1 and arr.size == dim:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{what} must be an (N, D) array, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{what} must be numeric, got dtype {arr.dtype}")
    if arr.shape[1] != dim:
        raise EmbedderMismatchError(
            f"library {library!r} holds {dim}-d vectors, got {what} of size {arr.shape[1]}; "
            "use the embedder the library was built with, or another library"
        )
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if arr.shape[0] and float(norms.min()) <= 1e-12:
        bad = int(np.argmin(norms[:, 0]))
        raise ValueError(f"{what}[{bad}] is all zeros; cosine similarity is undefined for it")
    # rows already unit-length (to float32 precision) are kept bit for bit, so export ->
    # import -> export round-trips exactly; only the others are rescaled
    off = np.abs(norms[:, 0] - 1.0) > 1e-5
    if off.any():
        arr = arr.copy()
        arr[off] /= norms[off]
    return np.ascontiguousarray(arr, dtype=np.float32)


def to_jsonable(value: Any) -> Any:
    """Turn numpy scalars/arrays and tuples into plain JSON types (recursively)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"payload values must be finite numbers, got {value}")
    return value


def check_items(
    n: int,
    labels: Sequence[str],
    payloads: Sequence[dict[str, Any]] | None,
    ids: Sequence[str] | None,
) -> tuple[list[str], list[dict[str, Any]], list[str]]:
    """Validate labels, payloads and ids for ``n`` vectors; new UUIDs when ``ids`` is None."""
    if isinstance(labels, str):
        raise ValueError(
            "labels must be a sequence of strings, one per vector, not a single string"
        )
    labels = list(labels)
    if len(labels) != n:
        raise ValueError(f"got {n} vectors but {len(labels)} labels; give one label per vector")
    for i, lab in enumerate(labels):
        if not isinstance(lab, str) or not lab.strip():
            raise ValueError(f"labels[{i}] must be a non-empty string, got {lab!r}")
    if payloads is None:
        payloads = [{} for _ in range(n)]
    else:
        payloads = list(payloads)
        if len(payloads) != n:
            raise ValueError(
                f"got {n} vectors but {len(payloads)} payloads; give one dict per vector"
            )
    clean = []
    for i, p in enumerate(payloads):
        if p is None:
            p = {}
        if not isinstance(p, dict):
            raise ValueError(f"payloads[{i}] must be a dict, got {type(p).__name__}")
        for key in RESERVED_PAYLOAD_KEYS:
            if key in p and p[key] != labels[i]:
                raise ValueError(
                    f"payloads[{i}] has key {key!r}={p[key]!r}, which the store sets itself "
                    f"(label is {labels[i]!r}); drop it from the payload"
                )
        try:
            q = to_jsonable({k: v for k, v in p.items() if k not in RESERVED_PAYLOAD_KEYS})
            json.dumps(q, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"payloads[{i}] is not JSON-serialisable: {e}") from e
        clean.append(q)
    if ids is None:
        ids = [str(uuid.uuid4()) for _ in range(n)]
    else:
        ids = [normalise_id(x) for x in ids]
        if len(ids) != n:
            raise ValueError(f"got {n} vectors but {len(ids)} ids")
        if len(set(ids)) != n:
            raise ValueError("ids must be unique")
    return labels, clean, ids


def normalise_id(x: object) -> str:
    """Canonical UUID string for ``x`` (a UUID or its string form); ``ValueError`` otherwise."""
    try:
        return str(uuid.UUID(str(x)))
    except ValueError:
        raise ValueError(f"example ids are UUID strings, got {x!r}") from None


def check_top_k(top_k: object) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    return int(top_k)


def check_delete_args(ids: Sequence[str] | None, label: str | None) -> list[str] | None:
    if (ids is None) == (label is None):
        raise ValueError("delete needs exactly one of ids=[...] or label='...'")
    if ids is not None:
        if isinstance(ids, str):
            ids = [ids]
        return [normalise_id(x) for x in ids]
    if not isinstance(label, str) or not label:
        raise ValueError(f"label must be a non-empty string, got {label!r}")
    return None


def refuse_id_clash(library: str, clash: Sequence[str]) -> None:
    """Raise ``LibraryError`` when ids given to ``add`` (an import) already exist."""
    if clash:
        raise LibraryError(
            f"library {library!r} already holds {len(clash)} of these ids (e.g. {clash[0]}); "
            "import into a new library (--as NAME) instead"
        )


def upsert_all_or_nothing(
    library: str,
    ids: Sequence[str],
    vectors: np.ndarray,
    labels: Sequence[str],
    payloads: Sequence[dict[str, Any]],
    write: Any,
    undo: Any,
    batch: int,
) -> None:
    """Write points in batches of ``batch``; on any failure undo what this call wrote.

    ``write(rows)`` writes ``[(id, vector list, payload with "label")]``; ``undo(ids)``
    deletes points by id (its own failure is logged, not raised). Failures other than
    ``LibraryError`` and ``KeyboardInterrupt`` become one ``LibraryError`` saying nothing
    was added.
    """
    done = 0
    try:
        for s in range(0, len(ids), batch):
            e = s + batch
            write(
                [
                    (i, v.tolist(), {LABEL_KEY: lab, **p})
                    for i, v, lab, p in zip(
                        ids[s:e], vectors[s:e], labels[s:e], payloads[s:e], strict=True
                    )
                ]
            )
            done = e
    except BaseException as exc:
        # a failed batch may be partly written: undo everything up to its end
        inserted = list(ids[: min(done + batch, len(ids))])
        try:
            undo(inserted)
        except Exception as cleanup:  # pragma: no cover - backend gone mid-call
            import logging

            logging.getLogger("sam_detect").error(
                "could not undo a failed add to %r: %s", library, cleanup
            )
        if isinstance(exc, (LibraryError, KeyboardInterrupt)):
            raise
        raise LibraryError(
            f"adding {len(ids)} examples to library {library!r} failed ({type(exc).__name__}: {exc}); "
            "nothing was added"
        ) from exc


def warn_if_large(backend: str, library: str, count: int, warned: set[str]) -> None:
    """Warn once per library when ``count`` passes the backend's intended size."""
    limit = SIZE_LIMITS.get(backend)
    if limit is None or count <= limit[0] or library in warned:
        return
    warned.add(library)
    warnings.warn(
        f"library {library!r} holds {count:,} examples; the {backend!r} store is meant for up to "
        f"{limit[0]:,}. Consider {limit[1]} (sam-detect library copy).",
        LibrarySizeWarning,
        stacklevel=3,
    )


def disk_usage(folder: Path) -> int:
    """Bytes a folder really occupies on disk (allocated blocks: Qdrant preallocates sparse
    files, so their apparent size overstates it)."""
    total = 0
    for f in Path(folder).rglob("*"):
        if f.is_file():
            st = f.stat()
            blocks = getattr(st, "st_blocks", None)
            total += blocks * 512 if blocks is not None else st.st_size
    return total


def set_extra(meta: LibraryMeta, key: str, value: Any) -> LibraryMeta:
    """``meta.extra[key] = value`` as plain JSON (a copy); ``None`` removes the key."""
    if value is None:
        meta.extra.pop(key, None)
    else:
        meta.extra[key] = json.loads(json.dumps(value))
    return meta


def point_to_neighbour(point_id: Any, score: float, payload: dict[str, Any] | None) -> Neighbour:
    """A Qdrant point (id, score, payload with ``"label"``) as a :class:`Neighbour`."""
    payload = dict(payload or {})
    label = payload.pop(LABEL_KEY, "")
    return Neighbour(id=str(point_id), score=float(score), label=str(label), payload=payload)


def records_to_batch(
    records: Sequence[Any], dim: int
) -> tuple[list[str], np.ndarray, list[str], list[dict[str, Any]]]:
    """Qdrant records (``id``, ``vector``, ``payload``) as one ``iter_examples`` batch:
    ``(ids, vectors (n, dim) float32, labels, payloads)``."""
    ids, vecs, labs, pays = [], [], [], []
    for r in records:
        n = point_to_neighbour(r.id, 0.0, r.payload)
        ids.append(n.id)
        labs.append(n.label)
        pays.append(n.payload)
        vecs.append(r.vector)
    return ids, np.asarray(vecs, np.float32).reshape(len(ids), dim), labs, pays


def portable_options(opts: dict[str, Any]) -> dict[str, Any]:
    """The embedder options worth recording in a library (JSON types, no device settings); a
    checkpoint as an absolute path, whether given as text or a ``Path`` (a relative one was
    recorded as typed, and a run from another folder looked for another file; a ``Path`` was
    not recorded at all)."""
    skip = {"device", "batch_size", "num_threads"}
    out = {}
    for k, v in opts.items():
        if k in skip:
            continue
        if k == "checkpoint" and isinstance(v, (str, os.PathLike)) and str(v):
            v = str(Path(v).expanduser().resolve())
        if isinstance(v, (str, int, float, bool, type(None))):
            out[k] = v
    return out


def detach_fds(folder: Path) -> None:
    """In a forked child: point every file descriptor open on ``folder`` or below at a fresh
    open of the same file (``/dev/null`` where it is gone). The child's copies shared the
    parent's open files, and with them the engine's ``flock`` on the write-ahead log, which
    then stayed held until the child exited, however long after the parent had closed the
    library (docs/performance.md); the edge store's library locks and the qdrant store's
    folder lock (``flock`` on ``.lock``, which a child's ``close()`` let go of for the
    parent) alike. Linux (``/proc/self/fd``); elsewhere nothing."""
    root = str(folder)
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return
    for entry in fds:
        try:
            fd = int(entry)
            target = os.readlink(f"/proc/self/fd/{fd}")
        except (ValueError, OSError):
            continue
        if target != root and not target.startswith(root + os.sep):
            continue
        try:
            new = os.open(target, os.O_RDONLY | (os.O_DIRECTORY if os.path.isdir(target) else 0))
        except OSError:
            try:
                new = os.open(os.devnull, os.O_RDONLY)
            except OSError:
                continue
        try:
            os.dup2(new, fd, inheritable=False)  # the number stays taken: nothing else gets it
        except OSError:
            pass
        finally:
            os.close(new)


#: what :func:`keep_inherited` keeps: a forked child's copies of the objects its parent had
#: open (an edge store's shards, a qdrant store's client)
_INHERITED: list[Any] = []


def keep_inherited(obj: Any) -> None:
    """Keep ``obj``, a forked child's copy of an object its parent had open, alive and
    unused for good, at the child's exit too (its reference count never falls to 0):
    dropping or closing it would run its clean-up in the child, over files and locks the
    parent still holds."""
    import ctypes

    _INHERITED.append(obj)
    with contextlib.suppress(Exception):
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))
