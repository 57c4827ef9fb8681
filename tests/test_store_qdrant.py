"""Qdrant store specifics: argument checks, folder lock across processes (and forks), server
errors, retries and all-or-nothing adds."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import warnings

import numpy as np
import pytest
from conftest import child_answer, fork_talking, start_holder, stop_holder

from sam_detect.errors import LibraryError, LibraryLockedError
from sam_detect.store._common import StoreConnectionError
from sam_detect.store.base import LibraryMeta
from sam_detect.store.qdrant import UPSERT_BATCH, QdrantStore

DIM = 8


def meta(name="lib"):
    return LibraryMeta(name=name, embedder_id="fake", dim=DIM)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"path": "x", "url": "http://h:6333"}, "only one of path=, url= or location="),
        ({"path": "x", "location": ":memory:"}, "only one of"),
        ({"location": "somewhere"}, "location must be ':memory:' or a server URL"),
        ({"path": "x", "api_key": "k"}, "api_key is for a Qdrant server"),
        ({"location": ":memory:", "prefer_grpc": True}, "prefer_grpc is for a Qdrant server"),
        ({"url": "localhost:6333"}, "must start with http:// or https://"),
    ],
)
def test_conflicting_arguments_are_refused(kwargs, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=match):
        QdrantStore(**kwargs)


def test_path_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(ValueError, match="is a file; the qdrant store needs a folder"):
        QdrantStore(path=f)


def test_default_path_is_the_user_library_dir(tmp_path, monkeypatch):
    import sam_detect.store.qdrant as q

    monkeypatch.setattr(q, "default_library_dir", lambda: tmp_path / "libs")
    s = QdrantStore()
    try:
        assert s.backend == "qdrant-local" and s.path == tmp_path / "libs"
    finally:
        s.close()


def test_foreign_collection_is_not_a_library(tmp_path):
    s = QdrantStore(location=":memory:")
    from qdrant_client import models

    s._client.create_collection(
        "other", vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT)
    )
    assert s.list_libraries() == []
    with pytest.raises(
        LibraryError, match="has a collection 'other' that is not a sam-detect library"
    ):
        s.create_library(meta("other"))


_HOLDER = textwrap.dedent(
    """
    import sys, numpy as np
    from sam_detect.store.qdrant import QdrantStore
    from sam_detect.store.base import LibraryMeta
    s = QdrantStore(path=sys.argv[1])
    if not s.has_library("lib"):
        s.create_library(LibraryMeta(name="lib", embedder_id="fake", dim=8))
    s.add("lib", np.random.default_rng(1).normal(size=(int(sys.argv[2]), 8)), ["held"] * int(sys.argv[2]))
    print("ready", flush=True)
    sys.stdin.readline()
    s.close()
    print("closed", flush=True)
    """
)


@pytest.mark.slow
def test_second_process_gets_a_lock_error_and_nothing_is_lost(tmp_path):
    """Two writers on one embedded folder: the second is refused with a one-line error
    while the first holds it, and can write once the first has closed; nothing is lost."""
    folder = tmp_path / "libs"
    holder = start_holder(_HOLDER, folder, 30)
    try:
        with pytest.raises(LibraryLockedError) as exc:
            QdrantStore(path=folder)
        msg = str(exc.value)
        assert msg == (
            f"library folder {folder} is in use by another sam-detect process; close it, "
            "or share libraries through a server (--qdrant-url http://localhost:6333)"
        )
        assert "\n" not in msg
        # the CLI shows it as one line, exit code 1, no traceback
        r = subprocess.run(
            [sys.executable, "-m", "sam_detect", "library", "list", "--store", "qdrant", "--library-path", str(folder)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 1
        assert r.stderr.strip() == f"Error: {msg}"
        assert "Traceback" not in r.stderr
    finally:
        stop_holder(holder)
    s = QdrantStore(path=folder)
    try:
        assert s.labels("lib") == {"held": 30}
        s.add("lib", np.ones((5, DIM)), ["mine"] * 5)
    finally:
        s.close()
    holder = start_holder(_HOLDER, folder, 7)  # a third writer after us: appends, sees all
    stop_holder(holder)
    s = QdrantStore(path=folder)
    try:
        assert s.labels("lib") == {"held": 37, "mine": 5}
    finally:
        s.close()


def test_close_releases_the_lock_in_the_same_process(tmp_path):
    a = QdrantStore(path=tmp_path)
    a.close()
    b = QdrantStore(path=tmp_path)
    b.close()
    with pytest.raises(LibraryError, match="is closed"):
        b.list_libraries()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_is_a_one_line_error():
    port = _free_port()
    with pytest.raises(StoreConnectionError) as exc:
        QdrantStore(url=f"http://127.0.0.1:{port}", timeout=2, retries=1, backoff=0.01)
    msg = str(exc.value)
    assert msg.startswith(f"cannot reach Qdrant server http://127.0.0.1:{port} (")
    assert "is it running? (docker compose up -d) Check --qdrant-url." in msg
    assert "\n" not in msg


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 401
    hits = 0

    def do_GET(self):  # noqa: N802 - http.server API
        type(self).hits += 1
        body = b'{"status":{"error":"Must provide an API key or an Authorization bearer token"}}'
        self.send_response(self.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    servers = []

    def start(status):
        handler = type("H", (_Handler,), {"status": status, "hits": 0})
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}", handler

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize("status", [401, 403])
def test_wrong_api_key_is_a_one_line_error(http_server, status):
    url, handler = http_server(status)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the insecure-key warning is muted for http
        with pytest.raises(StoreConnectionError) as exc:
            QdrantStore(url=url, api_key="wrong", retries=2, backoff=0.01)
    msg = str(exc.value)
    assert msg.startswith(f"Qdrant server {url} refused the request (HTTP {status}")
    assert msg.endswith("check the API key (--qdrant-api-key or SAM_DETECT_QDRANT_API_KEY)")
    assert handler.hits == 1  # auth errors are not retried


def test_server_errors_are_retried_then_reported(http_server):
    url, handler = http_server(503)
    with pytest.raises(StoreConnectionError, match=r"cannot reach Qdrant server .* \(HTTP 503"):
        QdrantStore(url=url, retries=2, backoff=0.01)
    assert handler.hits == 3  # first try + 2 retries


def test_transient_error_then_success_is_retried(monkeypatch):
    from qdrant_client.http.exceptions import ResponseHandlingException

    s = QdrantStore(location=":memory:")
    s.backend = "qdrant-server"  # retry logic applies to servers only
    s.backoff = 0.0
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ResponseHandlingException(ConnectionResetError("reset by peer"))
        return "ok"

    assert s._call(flaky) == "ok"
    assert len(calls) == 3


def test_failed_batch_rolls_back_the_whole_add():
    s = QdrantStore(location=":memory:")
    s.create_library(meta())
    s.add("lib", np.ones((3, DIM)), ["old"] * 3)
    real_upsert = s._client.upsert
    calls = []

    def failing_upsert(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            real_upsert(*args, **{**kwargs, "points": kwargs["points"][:10]})  # partial write
            raise OSError("disk full")
        return real_upsert(*args, **kwargs)

    s._client.upsert = failing_upsert
    n = UPSERT_BATCH * 2 + 5
    vecs = np.random.default_rng(0).normal(size=(n, DIM))
    with pytest.raises(
        LibraryError,
        match=rf"adding {n} examples to library 'lib' failed \(OSError: disk full\); nothing was added",
    ):
        s.add("lib", vecs, ["new"] * n)
    s._client.upsert = real_upsert
    assert s.labels("lib") == {"old": 3}
    assert s.count("lib") == 3


def test_library_deleted_by_someone_else_is_not_found():
    s = QdrantStore(location=":memory:")
    s.create_library(meta())
    s.count("lib")  # metadata now cached
    s._client.delete_collection("lib")  # as another client would
    with pytest.raises(LibraryError, match="no library 'lib'"):
        s.search("lib", np.ones((1, DIM)), 1)


def _forked_message(folder, parent: int) -> str:
    return (
        f"library folder {folder} is held by the process this one was forked from (pid {parent}): "
        "a forked process opens the folder anew and cannot share its parent's; close the store "
        "in the parent first, or open the store in the child only"
    )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_opens_the_folder_anew_instead_of_using_its_parents(tmp_path):
    """A forked child searched its copy of the parent's libraries as they were at the fork
    (silently missing what the parent added since), and its adds went to the files behind the
    parent's back (the parent never saw them; its metadata count then disagreed with the
    library). Now the child's store opens the folder anew on its next use, as another process
    would: while the parent holds it, one line says so and why; once the parent closed it,
    the child reads all the parent wrote and its own adds are kept. Nothing lost."""
    s = QdrantStore(path=tmp_path)
    s.create_library(meta())
    s.add("lib", np.eye(DIM)[:4], ["a"] * 4)

    def child(inp, out):
        def attempt(fn):
            try:
                return ["ok", repr(fn())]
            except LibraryLockedError as e:
                return ["locked", str(e)]
            except Exception as e:
                return ["other", f"{type(e).__name__}: {e}"]

        inp.readline()  # the parent has added one more and still holds the folder
        said = {
            "count": attempt(lambda: s.count("lib")),
            "search": attempt(lambda: [n.label for n in s.search("lib", np.eye(DIM)[4:5], 1)[0]]),
            "add": attempt(lambda: s.add("lib", np.eye(DIM)[5:6], ["stray"])),
            "open": attempt(lambda: QdrantStore(path=tmp_path).close()),
        }
        out.write(json.dumps(said) + "\n")
        out.flush()
        inp.readline()  # the parent has closed its store
        n = s.count("lib")
        s.add("lib", np.eye(DIM)[6:7], ["child"])
        s.close()
        out.write(f"{n}\n")
        out.flush()

    pid, out, inp = fork_talking(child)
    try:
        s.add("lib", np.eye(DIM)[4:5], ["b"])  # the parent goes on as before
        out.write("go\n")
        out.flush()
        said = json.loads(child_answer(inp, pid))
        refused = ["locked", _forked_message(tmp_path, os.getpid())]
        assert said == {"count": refused, "search": refused, "add": refused, "open": refused}
        assert s.labels("lib") == {"a": 4, "b": 1}
        with pytest.raises(LibraryLockedError):  # the parent still holds the folder
            QdrantStore(path=tmp_path)
        s.close()
        out.write("go\n")
        out.flush()
        assert child_answer(inp, pid).strip() == "5"  # all the parent wrote
    finally:
        out.close()
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    after = QdrantStore(path=tmp_path)
    try:
        assert after.labels("lib") == {"a": 4, "b": 1, "child": 1}
        assert after.get_meta("lib").extra["_count"] == 6
    finally:
        after.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_that_closes_its_store_leaves_the_parent_holding_the_folder(tmp_path):
    """The child's copy of the parent's store shared the open file the folder lock is on:
    its ``close()`` (or the store's clean-up when a child merely exited) let go of the
    parent's lock, and a third process could then open the folder and write while the parent
    held it (a library it made was lost when the parent next saved). The parent keeps it."""
    s = QdrantStore(path=tmp_path)
    s.create_library(meta())
    s.add("lib", np.eye(DIM)[:2], ["a"] * 2)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            s.close()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    try:
        with pytest.raises(LibraryLockedError, match="is in use by another sam-detect process"):
            QdrantStore(path=tmp_path).close()
        s.add("lib", np.eye(DIM)[2:3], ["b"])
    finally:
        s.close()
    after = QdrantStore(path=tmp_path)
    try:
        assert after.labels("lib") == {"a": 2, "b": 1}
    finally:
        after.close()


_POOL_STORE: QdrantStore | None = None


def _count_in_worker(name: str) -> int:
    assert _POOL_STORE is not None
    return _POOL_STORE.count(name)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_fork_pool_worker_is_told_the_parent_holds_the_folder(tmp_path):
    """multiprocessing with the 'fork' start method: a worker counted (and searched) the
    parent's libraries as they were when the pool started, missing what the parent added
    since, without a word. Now it gets the one-line refusal."""
    import multiprocessing

    global _POOL_STORE
    s = _POOL_STORE = QdrantStore(path=tmp_path)
    try:
        s.create_library(meta())
        s.add("lib", np.eye(DIM)[:2], ["a"] * 2)
        with multiprocessing.get_context("fork").Pool(1) as pool:
            s.add("lib", np.eye(DIM)[2:3], ["b"])
            with pytest.raises(LibraryLockedError) as exc:
                pool.apply(_count_in_worker, ("lib",))
        assert str(exc.value) == _forked_message(tmp_path, os.getpid())
    finally:
        _POOL_STORE = None
        s.close()


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="needs /proc/locks (Linux)")
def test_the_folder_locks_holder_is_read_from_proc_locks(tmp_path):
    import fcntl

    from sam_detect.store.qdrant import LOCK_FILE, _flock_holder

    lock = tmp_path / LOCK_FILE
    lock.write_text("")
    assert _flock_holder(lock) is None  # not held
    assert _flock_holder(tmp_path / "missing") is None
    s = QdrantStore(path=tmp_path)  # qdrant-client locks the folder's .lock
    try:
        assert _flock_holder(lock) == os.getpid()
    finally:
        s.close()
    assert _flock_holder(lock) is None
    with open(lock) as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        assert _flock_holder(lock) == os.getpid()
