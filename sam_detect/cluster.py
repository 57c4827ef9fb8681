"""Detection on a Dask cluster: many images, or the tiles of one whole slide, over many workers.

``detect_images(config, paths, cluster="local:2")`` runs :meth:`SAMDetect.detect` on Dask
workers (``distributed``, the optional ``cluster`` extra, imported only here) and yields one
:class:`ImageResult` per image **in input order**, the same records, COCO instances and
overlay bytes the local engine (``cluster=None``) makes.

* Each worker builds its segmenter, embedder and store once and keeps them (a per-process,
  per-thread cache keyed by the run's token), never one model load per image.
* The library is read-only during detect. An embedded library (an ``edge``/``qdrant`` folder,
  a ``memory`` ``.npz``) is read once on the client and scattered to every worker as a
  snapshot (its files' bytes, sent once, not per task); each worker unpacks it into a private
  folder and searches it with the same engine as the client would, so results are identical.
  With a Qdrant server (``store_options["url"]``) the workers query the server. Writes from a
  worker raise :class:`LibraryReadOnlyError`.
* A task that raises is retried (``retries``); a worker that dies has its tasks rescheduled by
  the scheduler; an image that still fails is reported in its result (``error``), never
  losing the others'.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import tempfile
import threading
import uuid
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sam_detect._cores import usable_cores
from sam_detect.errors import LibraryError, LibraryNotFoundError, SamDetectError

log = logging.getLogger("sam_detect")

#: ``--cluster local`` without a count: one worker per core this process may use.
LOCAL = "local"
#: How often a task that raised is run again before its image is reported as failed.
DEFAULT_RETRIES = 1


class ClusterError(SamDetectError):
    """The cluster could not be started or reached, or ``distributed`` is missing."""


class LibraryReadOnlyError(LibraryError):
    """A worker tried to write to the library it received for detection."""


READ_ONLY_MESSAGE = (
    "the library is read-only on cluster workers (each holds a snapshot of the embedded "
    "folder); add examples before detect with `sam-detect add` on one machine, or share one "
    "Qdrant server between writers (--store qdrant --qdrant-url URL)"
)


# -- the cluster ---------------------------------------------------------------------------
def parse_cluster(spec: str) -> tuple[str, Any]:
    """``"local"`` / ``"local:N"`` -> ``("local", N)``; anything else -> ``("address", spec)``.

    Raises:
        ValueError: an empty spec or a worker count below 1.
    """
    spec = (spec or "").strip()
    if not spec:
        raise ValueError("give local, local:N or a scheduler address (tcp://host:8786)")
    if spec == LOCAL or spec.startswith(LOCAL + ":"):
        count = spec[len(LOCAL) + 1 :]
        if not count:
            # one worker per core this process may run on: a job given 4 cores of a 64-core
            # node (a batch scheduler's CPU set) starts 4, not 64 model-loading processes
            return LOCAL, usable_cores()
        try:
            n = int(count)
        except ValueError:
            raise ValueError(f"local:N needs a whole number of workers, got {count!r}") from None
        if n < 1:
            raise ValueError(f"local:N needs at least 1 worker, got {n}")
        return LOCAL, n
    return "address", spec


def _distributed():
    try:
        import distributed
    except ImportError as e:
        raise ClusterError(
            "--cluster needs Dask's distributed scheduler: pip install 'sam-detect[cluster]'"
        ) from e
    return distributed


@contextlib.contextmanager
def open_client(cluster: Any, *, processes: bool = True, memory_limit: str | int | None = None):
    """A ``distributed.Client`` for ``cluster``: ``"local[:N]"`` starts a LocalCluster of N
    single-threaded workers (closed on exit), an address joins a running scheduler, and a
    ``Client`` is used as given (not closed)."""
    distributed = _distributed()
    if isinstance(cluster, distributed.Client):
        yield cluster
        return
    kind, value = parse_cluster(str(cluster))
    if kind == LOCAL:
        # Models use every core they are given; one thread per worker keeps N workers on N cores.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        kwargs: dict[str, Any] = {"n_workers": value, "threads_per_worker": 1, "processes": processes,
                                  # a failed task's worker logs its traceback at ERROR: the run says
                                  # which image or tile failed in one line itself
                                  "dashboard_address": None, "silence_logs": logging.CRITICAL}
        if memory_limit is not None:
            kwargs["memory_limit"] = memory_limit
        try:
            lc = distributed.LocalCluster(**kwargs)
        except Exception as e:
            raise ClusterError(f"could not start a local Dask cluster of {value} workers: {e}") from e
        try:
            with distributed.Client(lc) as client:
                yield client
        finally:
            lc.close()
        return
    try:
        client = distributed.Client(value, timeout="20s")
    except Exception as e:
        raise ClusterError(f"could not reach the Dask scheduler at {value}: {' '.join(str(e).split())[:200]}") from e
    try:
        yield client
    finally:
        client.close()


# -- the library on workers ----------------------------------------------------------------
@dataclass(frozen=True)
class LibrarySnapshot:
    """An embedded library's files, read once on the client: ``{relative path: zlib bytes}``.

    ``store`` and ``options`` say how a worker opens the unpacked copy (``path`` is set there).
    """

    store: str
    options: dict[str, Any]
    files: dict[str, bytes]
    token: str

    @property
    def nbytes(self) -> int:
        return sum(len(b) for b in self.files.values())


def check_sendable(config: Any) -> None:
    """Raise :class:`LibraryError` where ``config``'s library cannot reach cluster workers (an
    in-memory store, a missing folder): before anything is closed or started for the run."""
    opts = dict(config.store_options)
    if opts.get("url"):
        return
    from sam_detect.paths import default_library_path

    if config.store in ("edge", "qdrant"):
        root = Path(opts.get("path") or default_library_path()).expanduser()
        if opts.get("location") == ":memory:" or not root.is_dir():
            raise LibraryError(
                f"the library folder {root} does not exist; a cluster run needs a library on disk "
                "or a Qdrant server (--qdrant-url)"
            )
    elif not (config.store == "memory" and opts.get("path")):
        raise LibraryError(
            "an in-memory library cannot be sent to cluster workers; save it to a folder "
            "(--library-path) or use a Qdrant server (--qdrant-url)"
        )


def library_snapshot(config: Any) -> LibrarySnapshot | None:
    """The snapshot of ``config``'s embedded library, or ``None`` when workers query a server.

    Raises:
        LibraryError: an in-memory store (no folder or file to send), or a missing folder.
    """
    check_sendable(config)
    opts = dict(config.store_options)
    if opts.get("url"):
        return None
    from sam_detect.paths import default_library_path

    if config.store in ("edge", "qdrant"):
        root = Path(opts.get("path") or default_library_path()).expanduser()
        # edge: one library is one sub-folder; qdrant's local mode keeps every library in one.
        base = root / config.library if config.store == "edge" else root
        files = {str(p.relative_to(root)): _pack(p) for p in sorted(base.rglob("*"))
                 if p.is_file() and p.name != ".lock"}
        opts.pop("path", None)
        opts.pop("location", None)
    elif config.store == "memory" and opts.get("path"):
        from sam_detect.store.memory import DEFAULT_FILE_NAME

        p = Path(opts["path"]).expanduser()
        if p.is_dir() or not p.suffix:
            p = p / DEFAULT_FILE_NAME
        files = {p.name: _pack(p)} if p.is_file() else {}
        opts.pop("path")
    return LibrarySnapshot(config.store, opts, files, uuid.uuid4().hex)


def _pack(path: Path) -> bytes:
    # Qdrant Edge preallocates its files (a 6-example library is ~140 MB, nearly all zeros):
    # compressed, it travels to the workers as ~1 MB
    return zlib.compress(path.read_bytes(), 1)


class ReadOnlyStore:
    """A store whose reads pass through and whose writes raise :class:`LibraryReadOnlyError`."""

    _WRITES = frozenset({"create_library", "delete_library", "update_extra", "add", "delete", "update_payloads",
                         "optimize"})

    def __init__(self, store: Any) -> None:
        self._store = store
        self.backend = store.backend

    def __getattr__(self, name: str) -> Any:
        if name in self._WRITES:
            def refuse(*args: Any, **kwargs: Any) -> Any:
                raise LibraryReadOnlyError(READ_ONLY_MESSAGE)

            return refuse
        return getattr(self._store, name)

    def close(self) -> None:
        self._store.close()


def _open_snapshot(snapshot: LibrarySnapshot) -> Any:
    """A store on an unpacked copy of ``snapshot`` in a temporary folder, which is removed
    when the store is dropped (a later run's detector replaces this one) or the worker
    exits: each copy of a Qdrant Edge library is ~140 MB on disk, and left behind they had
    filled a development machine's disk (468 of them, 64 GB, from test and benchmark runs)."""
    import shutil
    import weakref

    from sam_detect.store import create_store

    root = Path(tempfile.mkdtemp(prefix=f"sam-detect-library-{snapshot.token[:8]}-"))
    try:
        for rel, data in snapshot.files.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zlib.decompress(data))
        path = root / next(iter(snapshot.files)) if snapshot.store == "memory" and snapshot.files else root
        store = create_store(snapshot.store, path=str(path), **snapshot.options)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    weakref.finalize(store, shutil.rmtree, str(root), True)
    return store


# -- per-worker detectors ------------------------------------------------------------------
_DETECTORS: dict[tuple[str, int], Any] = {}
_DETECTORS_LOCK = threading.Lock()
#: How many detectors this process built (read by tests: once per worker, not per image).
BUILT: list[str] = []


def heap_for_arrays() -> bool:
    """Undo, in this process, the allocator setting a Dask nanny gives its workers.

    The nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (``distributed.nanny.
    pre-spawn-environ``) so that freed memory goes back to the system at once. Setting it
    also freezes glibc's mmap threshold at 128 KiB, so every array larger than that (a
    700 x 1100 float32 image is 3 MB, and a detection makes hundreds of them) is mapped,
    zero-filled page by page and unmapped again: detection ran 1.6x slower on a worker
    than in the local engine (docs/performance.md). Here arrays up to
    ``_heavy.MMAP_THRESHOLD`` come from the heap again and up to ``_heavy.TRIM_THRESHOLD`` of
    free heap is kept, as glibc does by itself (``_heavy.steady_heap``). Returns whether the
    allocator was changed (glibc with the variable set).
    """
    if not os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        return False
    from sam_detect._heavy import steady_heap

    return steady_heap()


def worker_detector(config: Any, snapshot: LibrarySnapshot | None, token: str) -> Any:
    """This worker thread's detector for run ``token``, built on first use and kept."""
    key = (token, threading.get_ident())
    with _DETECTORS_LOCK:
        det = _DETECTORS.get(key)
    if det is not None:
        return det
    heap_for_arrays()
    from sam_detect.pipeline import SAMDetect

    if snapshot is not None:
        store = _open_snapshot(snapshot)
        det = SAMDetect(dataclasses.replace(config, store_options={}), store=ReadOnlyStore(store))
    else:
        from sam_detect.store import create_store

        det = SAMDetect(config, store=ReadOnlyStore(create_store(config.store, **config.store_options)))
    det.segmenter  # noqa: B018 - build the models now, once
    det.embedder  # noqa: B018
    with _DETECTORS_LOCK:
        # one run at a time per worker thread: drop detectors of earlier runs
        for old in [k for k in _DETECTORS if k[1] == key[1] and k[0] != token]:
            with contextlib.suppress(Exception):
                _DETECTORS.pop(old).close()
        _DETECTORS[key] = det
        BUILT.append(token)
    return det


# -- one image -----------------------------------------------------------------------------
@dataclass
class OutputSpec:
    """What to make of each image: a JSON record, its instances (``coco``: for COCO, label
    images, GeoJSON; the name kept from when COCO was their one use), overlay bytes."""

    polygons: bool = True
    tolerance: float = 1.0
    coco: bool = False
    overlay_suffix: str | None = None  # ".png", ".jpg"...: encode an overlay
    channels: tuple[int, ...] = ()
    frame: int | None = None


@dataclass
class ImageResult:
    """What one image gave: ``record`` (the JSON line), ``instances`` (for COCO and label images),
    ``overlay`` (encoded image bytes), ``notes``; or ``error`` (one line) when it failed."""

    path: str
    record: dict[str, Any] | None = None
    instances: Any = None
    overlay: bytes | None = None
    error: str | None = None
    notes: list[str] = dataclasses.field(default_factory=list)
    #: the error is the run's, not the image's (the library was deleted meanwhile): the
    #: images after it would fail alike, so a run stops there
    fatal: bool = False


def detect_one(detector: Any, path: str | os.PathLike, spec: OutputSpec, progress: bool = False) -> ImageResult:
    """Load, detect and make the outputs of one image; a user-facing error goes into ``error``.
    ``progress``: the detect's stages on stderr where the image is large (``SAMDetect.detect``)."""
    from sam_detect.cli.detect import load_cli_image
    from sam_detect.outputs import encode_image, image_record, render_overlay

    try:
        loaded = load_cli_image(path, spec.channels, spec.frame)
        found = detector.detect(loaded, progress=progress)
    except LibraryNotFoundError as e:  # deleted by another process during the run
        return ImageResult(str(path), error=str(e), fatal=True)
    except SamDetectError as e:
        return ImageResult(str(path), error=str(e))
    rec = image_record(found, str(path), polygons=spec.polygons, tolerance=spec.tolerance)
    if spec.frame is not None:  # which frame of the stack the record holds, and its COCO and GeoJSON
        rec["frame"] = int(loaded.frame) if loaded.frame is not None else int(spec.frame)
        found.metadata["frame"] = rec["frame"]
        if loaded.plane is not None:  # where QuPath puts it (z, t): GeoJSON's geometry.plane
            found.metadata["plane"] = loaded.plane
    overlay = encode_image(render_overlay(loaded.rgb, found), spec.overlay_suffix) if spec.overlay_suffix else None
    return ImageResult(str(path), rec, found if spec.coco else None, overlay,
                       notes=list(found.metadata.get("notes", [])))


def _detect_task(config: Any, snapshot: LibrarySnapshot | None, token: str, path: str,
                 spec: OutputSpec) -> ImageResult:
    return detect_one(worker_detector(config, snapshot, token), path, spec)


# -- many images ---------------------------------------------------------------------------
def file_paths(images: Any, refusal: str, instead: str) -> list[str]:
    """``images`` as file paths, for the workers (one str or ``os.PathLike``: one image, not
    one per letter of its name); an :class:`~sam_detect.errors.ImageLoadError` for the first
    that is no path: ``"{refusal}; image K is ndarray: save it to a file, or {instead}"``
    (``str(array)`` was taken for a file name, every pixel spelled out)."""
    if isinstance(images, (str, os.PathLike)):
        images = [images]
    images = list(images)
    for k, p in enumerate(images):
        if not isinstance(p, (str, os.PathLike)):
            from sam_detect.errors import ImageLoadError

            raise ImageLoadError(f"{refusal}; image {k} is {type(p).__name__}: save it to a file, or {instead}")
    return [str(p) for p in images]


def detect_images(
    config: Any,
    paths: Sequence[str | os.PathLike],
    *,
    cluster: Any = None,
    spec: OutputSpec | None = None,
    retries: int = DEFAULT_RETRIES,
    progress: bool = False,
    detector: Any = None,
    processes: bool = True,
) -> Iterator[ImageResult]:
    """Detect on every image of ``paths``, yielding an :class:`ImageResult` per image in input order.

    ``cluster``: ``None`` runs here (with ``detector`` when given, else one built from
    ``config``); ``"local[:N]"``, a scheduler address or a ``distributed.Client`` runs on Dask
    workers. ``progress``: a tqdm bar over finished images on stderr; for one image run here,
    over the stages of its detect where it is large (``SAMDetect.detect``). One path (a str
    or ``os.PathLike``) is one image.
    """
    spec = spec or OutputSpec()
    paths = file_paths(paths, "detect_images takes file paths", "detect it with SAMDetect.detect")
    bar = _progress(len(paths)) if progress and len(paths) > 1 else None
    stages = progress and len(paths) == 1
    try:
        if cluster is None:
            from sam_detect._heavy import running
            from sam_detect.pipeline import SAMDetect

            owned = detector is None
            det = detector or SAMDetect(config)
            # an embedded library is let go between images (reopened in about 25 ms): a folder-long run
            # keeps no other process (the UI, another detect) out of it for longer than one image
            release = getattr(det.store, "release", None) if len(paths) > 1 else None
            try:
                with running():  # the images share one set-up: each reuses the memory the others freed
                    for p in paths:
                        res = detect_one(det, p, spec, progress=stages)
                        if release is not None:
                            release()
                        if bar is not None:  # before the yield: a caller that takes exactly
                            bar.update(1)    # len(paths) results never resumes after the last
                        yield res
            finally:
                if owned:
                    det.close()
            return
        snapshot = library_snapshot(config)
        with open_client(cluster, processes=processes) as client:
            yield from _run_on_client(client, config, snapshot, paths, spec, retries, bar)
    finally:
        if bar is not None:
            bar.close()


def _run_on_client(client: Any, config: Any, snapshot: LibrarySnapshot | None, paths: list[str],
                   spec: OutputSpec, retries: int, bar: Any) -> Iterator[ImageResult]:
    distributed = _distributed()
    token = uuid.uuid4().hex
    # the snapshot goes to every worker once; tasks carry only a reference to it
    snap = client.scatter(snapshot, broadcast=True, hash=False) if snapshot is not None else None
    futures = [
        client.submit(_detect_task, config, snap, token, p, spec, key=f"sam-detect-{token[:8]}-{i}",
                      retries=retries, pure=False)
        for i, p in enumerate(paths)
    ]
    index = {f.key: i for i, f in enumerate(futures)}
    done: dict[int, ImageResult] = {}
    nxt = 0
    try:
        for fut in distributed.as_completed(futures):
            i = index[fut.key]
            try:
                done[i] = fut.result()
            except Exception as e:  # a task that kept failing, or a worker that kept dying
                text = " ".join(str(e).split())[:300] or type(e).__name__
                done[i] = ImageResult(paths[i], error=f"{type(e).__name__}: {text}")
            fut.release()
            if bar is not None:
                bar.update(1)
            while nxt in done:
                yield done.pop(nxt)
                nxt += 1
    finally:
        for f in futures:
            f.cancel()


def _progress(total: int):
    import sys

    from tqdm.auto import tqdm

    return tqdm(total=total, desc="detecting", unit="image", file=sys.stderr)


# -- resume --------------------------------------------------------------------------------
def resume_key(image: str | os.PathLike, frame: int | None = None) -> str:
    """What a ``--resume`` file knows an image by: the file it names, however its path was
    spelled (``imgs/`` or ``/abs/imgs/``), and the frame of a stack (a record of frame 0 is
    no record of frame 1: every later frame got frame 0's objects)."""
    real = os.path.realpath(str(image))
    return real if frame is None else f"{real}#frame={int(frame)}"


def read_resume(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Records already written to a ``--resume`` JSON-lines file, by :func:`resume_key`.

    A last line cut off by an interrupted run is ignored (that image runs again).

    Raises:
        SettingError: the file holds something else (a COCO file or a ``--json`` document
            of several images, an image): appending to it, and cutting its last line, would
            spoil it.
    """
    import json

    out: dict[str, dict[str, Any]] = {}
    p = Path(path)
    if not p.exists():
        return out
    lines = p.read_bytes().decode("utf-8", errors="replace").split("\n")
    cut = lines.pop()  # "" where the file ends with a newline; else a line an interrupted run cut off
    for k, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if not (isinstance(rec, dict) and isinstance(rec.get("image"), str)):
            raise _not_resume(p, f"line {k}", line)
        frame = rec.get("frame")
        # the file as resolved when the record was written (a run from another folder names it
        # by another relative path); records written before then: their path, from here
        key = rec.get(RESUME_KEY)
        out[key if isinstance(key, str) else resume_key(rec["image"], frame if isinstance(frame, int) else None)] = rec
    if cut.strip() and not _begins_record(cut):
        raise _not_resume(p, f"line {len(lines) + 1}", cut)
    return out


#: how every line :func:`append_line` writes of a record begins (``json.dumps``, "image" first)
_RECORD_START = '{"image": '


def _begins_record(line: str) -> bool:
    """Whether ``line`` may be a record cut off anywhere, even within its first characters."""
    return line.startswith(_RECORD_START) or _RECORD_START.startswith(line)


def _not_resume(path: Path, where: str, line: str) -> SamDetectError:
    from sam_detect.errors import SettingError

    shown = line.strip()
    shown = shown if len(shown) <= 40 else shown[:40] + "..."
    return SettingError(
        f"{path} is not a file --resume wrote (JSON lines, one record of detect per image): {where} "
        f"is {shown!r}; appending to it would spoil it: give --resume a new file name, or the one "
        "an earlier run wrote")


def open_resume(path: str | os.PathLike) -> io.TextIOBase:
    """Open a ``--resume`` file for appending, after removing a last line an interrupted run
    cut off (a full disk, a power cut: its image runs again), so the file stays JSON lines.

    Raises:
        SettingError: the part it would cut is not such a line (a file :func:`read_resume`
            refuses): nothing is cut.
    """
    p = Path(path)
    if p.exists() and p.stat().st_size:
        with p.open("r+b") as r:
            r.seek(-1, os.SEEK_END)
            if r.read(1) != b"\n":
                size = r.seek(0, os.SEEK_END)
                back = min(size, 1 << 20)
                while True:  # the last newline, reading back in blocks
                    r.seek(size - back)
                    cut = r.read(back).rfind(b"\n")
                    if cut >= 0 or back == size:
                        break
                    back = min(size, back * 2)
                start = size - back + cut + 1 if cut >= 0 else 0
                r.seek(start)
                tail = r.read(len(_RECORD_START)).decode("utf-8", errors="replace")
                if not _begins_record(tail):
                    raise _not_resume(p, "its last line", tail)
                r.truncate(start)
    return p.open("a", encoding="utf-8")


#: the key a ``--resume`` file's records carry the run's settings under (:func:`resume_settings`)
RESUME_SETTINGS = "resume_settings"
#: the key of a ``--resume`` line that holds its image's :func:`resume_key` (the file resolved
#: when the line was written: the record's ``image`` is the path as given, relative to the
#: folder that run started in)
RESUME_KEY = "resume_key"
#: what a ``--resume`` line holds beyond the record ``detect`` prints
RESUME_ONLY = (RESUME_SETTINGS, RESUME_KEY)


def resume_settings(config: Any, store: Any = None, **extra: Any) -> dict[str, Any]:
    """What a ``--resume`` record must have been made with to be taken for this run's: the
    library, the stages, the decision's and the profile's settings (``config``, a
    ``DetectorConfig``), where the library lives, how many examples it holds and what they
    made (``store``, the run's open store: a library of the same name in another folder, or
    one given or relieved of examples since, is another library), and ``extra`` (a slide's
    level and windows, the channels read, the outlines' tolerance)."""
    keys = ("library", "store", "segmenter", "embedder", "top_k", "threshold", "keep_unknown", "profile",
            "drop_border", "keep_examples")
    out = {k: getattr(config, k, None) for k in keys}
    if store is not None:
        path = getattr(store, "path", None)
        out["library_at"] = getattr(store, "url", None) or (str(Path(path).resolve()) if path else None)
        out["examples"] = int(store.count(config.library)) if store.has_library(config.library) else 0
        out["examples_digest"] = examples_digest(store, config.library) if out["examples"] else None
    out.update(extra)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items()}


def examples_digest(store: Any, library: str) -> str:
    """A fingerprint of what library ``library``'s examples made (its profile and decision
    settings, rebuilt on every add and delete): a delete and an add leave its count as it
    was, not this."""
    import hashlib
    import json

    extra = store.get_meta(library).extra or {}
    made = json.dumps({k: extra.get(k) for k in ("profile", "decision")}, sort_keys=True, default=str)
    return hashlib.sha256(made.encode()).hexdigest()[:16]


#: how :func:`other_settings` names a difference in these keys (their values say nothing to a user)
_SAID = {"examples_digest": "the library's examples (changed since those records)"}


def other_settings(resumed: dict[str, dict[str, Any]], settings: dict[str, Any]) -> str | None:
    """How a ``--resume`` file's records differ from this run's ``settings`` (``"library
    'hela' (this run: 'voc')"``), or ``None`` where every record that says its settings
    agrees (records written before they were recorded say nothing)."""
    for rec in resumed.values():
        theirs = rec.get(RESUME_SETTINGS)
        if isinstance(theirs, dict):  # what they recorded (an older version recorded less)
            diff = [k for k in sorted(theirs) if theirs.get(k) != settings.get(k)]
            if diff:
                return ", ".join(_SAID.get(k) or f"{k} {theirs.get(k)!r} (this run: {settings.get(k)!r})"
                                 for k in diff[:3])
    return None


def append_line(fh: io.TextIOBase, record: dict[str, Any]) -> None:
    """Append one JSON line and flush it to disk: an interrupted run loses at most one image."""
    import json

    fh.write(json.dumps(record) + "\n")
    fh.flush()
    os.fsync(fh.fileno())


__all__ = [
    "ClusterError",
    "ImageResult",
    "LibraryReadOnlyError",
    "LibrarySnapshot",
    "OutputSpec",
    "ReadOnlyStore",
    "detect_images",
    "detect_one",
    "library_snapshot",
    "open_client",
    "parse_cluster",
    "open_resume",
    "read_resume",
    "resume_key",
    "worker_detector",
]

