"""Edge store specifics: per-library locks across processes, on-disk layout, crash safety."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from conftest import child_answer, fork_talking, start_holder, stop_holder

pytest.importorskip(
    "qdrant_edge", reason="qdrant-edge-py is not installed (pip install 'sam-detect[edge]')"
)

from sam_detect.errors import InvalidNameError, LibraryError, LibraryLockedError  # noqa: E402
from sam_detect.store.base import LibraryMeta  # noqa: E402
from sam_detect.store.edge import META_FILE, EdgeStore  # noqa: E402

DIM = 8


def meta(name="lib"):
    return LibraryMeta(name=name, embedder_id="fake", dim=DIM)


_HOLDER = textwrap.dedent(
    """
    import sys, numpy as np
    from sam_detect.store.edge import EdgeStore
    from sam_detect.store.base import LibraryMeta
    s = EdgeStore(sys.argv[1])
    if not s.has_library("lib"):
        s.create_library(LibraryMeta(name="lib", embedder_id="fake", dim=8))
    s.add("lib", np.random.default_rng(1).normal(size=(int(sys.argv[2]), 8)), [sys.argv[3]] * int(sys.argv[2]))
    print("ready", flush=True)
    sys.stdin.readline()
    s.close()
    print("closed", flush=True)
    """
)


@pytest.mark.slow
def test_second_process_is_locked_out_of_the_library_and_nothing_is_lost(tmp_path, monkeypatch):
    monkeypatch.setenv("SAM_DETECT_LOCK_WAIT", "0")  # no wait for the holder: refused at once
    holder = start_holder(_HOLDER, tmp_path, 40, "first")
    try:
        s = EdgeStore(tmp_path)
        assert s.list_libraries() == ["lib"]  # listing needs no lock
        assert s.get_meta("lib").embedder_id == "fake"
        with pytest.raises(LibraryLockedError) as exc:
            s.add("lib", np.ones((3, DIM)), ["second"] * 3)
        msg = str(exc.value)
        assert msg.startswith(f"library 'lib' in {tmp_path} is in use by another sam-detect process (pid ")
        assert msg.endswith(
            "; wait for it to finish or close it, "
            "or share libraries through a server (--qdrant-url http://localhost:6333)"
        )
        with pytest.raises(LibraryLockedError):
            s.delete_library("lib")  # never pulls a library from under its user
        # other libraries in the same folder stay usable
        s.create_library(meta("other"))
        s.add("other", np.ones((2, DIM)), ["x", "x"])
        s.close()
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "sam_detect",
                "library",
                "show",
                "lib",
                "--store",
                "edge",
                "--library-path",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert (
            r.returncode == 1
            and r.stderr.startswith("Error: library 'lib' in ")
            and "Traceback" not in r.stderr
        )
    finally:
        stop_holder(holder)
    s = EdgeStore(tmp_path)
    try:
        s.add("lib", np.ones((3, DIM)), ["second"] * 3)
        assert s.labels("lib") == {"first": 40, "second": 3}
        assert s.labels("other") == {"x": 2}
    finally:
        s.close()


def test_layout_on_disk(tmp_path):
    s = EdgeStore(tmp_path)
    s.create_library(meta())
    s.add("lib", np.ones((2, DIM)), ["a", "b"])
    s.close()
    doc = json.loads((tmp_path / "lib" / META_FILE).read_text())
    assert doc["format"] == 1 and doc["meta"]["name"] == "lib" and doc["meta"]["dim"] == DIM
    assert (tmp_path / "lib" / "shard" / "edge_config.json").is_file()


def test_half_created_and_foreign_folders_are_not_libraries(tmp_path):
    (tmp_path / ".lib.creating-1234").mkdir()  # a crash during create
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.png").write_bytes(b"x")
    s = EdgeStore(tmp_path)
    try:
        assert s.list_libraries() == []
        with pytest.raises(LibraryError, match="exists and is not an edge library"):
            s.create_library(meta("photos"))
        with pytest.raises(InvalidNameError, match="'collection': reserved"):
            s.create_library(meta("collection"))
    finally:
        s.close()


def test_damaged_metadata_is_a_clear_error(tmp_path):
    s = EdgeStore(tmp_path)
    s.create_library(meta())
    s.close()
    (tmp_path / "lib" / META_FILE).write_text("{broken")
    s = EdgeStore(tmp_path)
    try:
        with pytest.raises(LibraryError, match=r"damaged \(cannot read sam_detect_library.json.*library check lib"):
            s.get_meta("lib")
    finally:
        s.close()


def test_newer_metadata_format_is_refused(tmp_path):
    s = EdgeStore(tmp_path)
    s.create_library(meta())
    s.close()
    f = tmp_path / "lib" / META_FILE
    f.write_text(json.dumps({**json.loads(f.read_text()), "format": 2}))
    with pytest.raises(LibraryError, match="has format 2; this sam-detect reads format 1. Upgrade"):
        EdgeStore(tmp_path).get_meta("lib")


def test_optimize_keeps_every_example_and_result(tmp_path):
    s = EdgeStore(tmp_path)
    try:
        s.create_library(meta())
        rng = np.random.default_rng(0)
        for _ in range(3):  # several adds make several segments to merge
            s.add("lib", rng.normal(size=(50, DIM)), ["a"] * 50)
        q = rng.normal(size=(5, DIM))
        before = [[n.id for n in r] for r in s.search("lib", q, 5)]
        s.optimize("lib")
        assert s.count("lib") == 150
        assert [[n.id for n in r] for r in s.search("lib", q, 5)] == before
    finally:
        s.close()


def test_missing_package_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "qdrant_edge", None)
    with pytest.raises(LibraryError, match=r"pip install 'qdrant-edge-py==0.9.0'"):
        EdgeStore("unused")


def test_a_library_on_a_full_or_read_only_disk_is_refused_in_one_line_not_called_damaged(tmp_path, monkeypatch):
    """An Edge library's files are memory-mapped: on a full disk `add`, `check` and `detect`
    died of SIGBUS ("Bus error"), and on a read-only one `check` called it damaged and sent
    the user to `repair`. Both are now one line naming the disk, and `library list` says so."""
    import shutil
    from collections import namedtuple

    from conftest import run_cli

    import sam_detect.store.edge as edge
    from sam_detect.errors import LibraryUnwritableError
    from sam_detect.store.integrity import check_library

    store = EdgeStore(tmp_path)
    store.create_library(LibraryMeta(name="lib", embedder_id="e", dim=4))
    store.close()
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1 << 30, (1 << 30) - (1 << 20), 1 << 20))
    store = EdgeStore(tmp_path)
    with pytest.raises(LibraryUnwritableError, match="has 1.0 MiB free; an edge library needs at least 64 MiB"):
        check_library(store, "lib")
    with pytest.raises(LibraryUnwritableError):
        store.create_library(LibraryMeta(name="other", embedder_id="e", dim=4))
    store.close()
    r = run_cli("library", "list", "--library-path", tmp_path)
    assert r.exit_code == 0 and "on a full or read-only disk" in r.output and "damaged" not in r.output
    monkeypatch.undo()
    assert edge.MIN_FREE_BYTES == 64 << 20
    store = EdgeStore(tmp_path)
    assert check_library(store, "lib").ok
    store.close()


def test_a_load_that_fails_under_a_folder_named_lock_is_not_called_in_use(tmp_path, monkeypatch):
    """The engine's refusal was read as "another process holds it" wherever its message held
    "lock", the library's own path included: a library under ``locks/`` whose load failed
    otherwise waited out ``SAM_DETECT_LOCK_WAIT`` and was called in use by another process.
    Now the engine's words decide (its ``Kind(WouldBlock)``), not the path."""
    import types

    import sam_detect.store.edge as edge

    root = tmp_path / "locks" / "blocked"
    store = EdgeStore(root)
    store.create_library(LibraryMeta(name="lib", embedder_id="e", dim=4))
    store.close()
    real = edge._edge()

    def load(folder):
        raise Exception(f"Service runtime error: failed to read segment {folder}/segments/0: unexpected end of file")

    monkeypatch.setattr(edge, "_edge", lambda: types.SimpleNamespace(EdgeShard=types.SimpleNamespace(load=load)))
    monkeypatch.setenv("SAM_DETECT_LOCK_WAIT", "0.5")
    store = EdgeStore(root)
    with pytest.raises(LibraryError, match="cannot open library 'lib'.*unexpected end of file") as info:
        store.count("lib")
    assert not isinstance(info.value, LibraryLockedError)

    def busy(folder):
        raise Exception(f"Service runtime error: failed to open WAL {folder}/wal: Can't init WAL: Kind(WouldBlock)")

    monkeypatch.setattr(edge, "_edge", lambda: types.SimpleNamespace(EdgeShard=types.SimpleNamespace(load=busy)))
    with pytest.raises(LibraryLockedError, match="in use by another sam-detect process"):
        store.count("lib")
    store.close()
    monkeypatch.setattr(edge, "_edge", lambda: real)
    store = EdgeStore(root)
    assert store.count("lib") == 0
    store.close()


_BRIEF_HOLDER = textwrap.dedent(
    """
    import sys, time, numpy as np
    from sam_detect.store.edge import EdgeStore
    from sam_detect.store.base import LibraryMeta
    s = EdgeStore(sys.argv[1])
    s.create_library(LibraryMeta(name="lib", embedder_id="fake", dim=8))
    s.add("lib", np.random.default_rng(1).normal(size=(5, 8)), ["first"] * 5)
    print("ready", flush=True)
    time.sleep(float(sys.argv[2]))  # a UI request, a short detect
    s.close()
    print("closed", flush=True)
    sys.stdin.readline()
    """
)


@pytest.mark.slow
def test_an_open_waits_its_turn_for_a_library_another_process_holds_briefly(tmp_path, monkeypatch, caplog):
    """A UI click during a CLI `detect`, or an `add` during a click, failed at once ("in use by
    another sam-detect process"): an open now waits up to ``SAM_DETECT_LOCK_WAIT`` seconds
    (10) for the holder, says so once, and goes on when it lets go; past the wait it says how
    long it waited."""
    import logging

    holder = start_holder(_BRIEF_HOLDER, tmp_path, 1.5)
    s = EdgeStore(tmp_path)
    try:
        with caplog.at_level(logging.WARNING, logger="sam_detect"):
            s.add("lib", np.ones((2, DIM)), ["second"] * 2)  # waits about 1.5 s
        assert "library 'lib' is in use by another sam-detect process (pid " in caplog.text
        assert "waiting up to 10 s for it" in caplog.text
        assert s.labels("lib") == {"first": 5, "second": 2}
    finally:
        s.close()
        stop_holder(holder)
    monkeypatch.setenv("SAM_DETECT_LOCK_WAIT", "0.6")
    holder = start_holder(_BRIEF_HOLDER.replace('s.create_library(LibraryMeta(name="lib", embedder_id="fake", dim=8))',
                                                "pass"), tmp_path, 30)
    s = EdgeStore(tmp_path)
    try:
        with pytest.raises(LibraryLockedError, match=r"in use by another sam-detect process \(pid \d+, .*\) \(waited 0.6 s\)"):
            s.count("lib")
    finally:
        s.close()
        holder.kill()
        holder.wait(10)


@pytest.mark.slow
def test_delete_never_takes_a_library_in_use_for_a_damaged_one(tmp_path):
    """`library delete NAME` while another process held the library: its count failed with
    "in use", which the command took for damage ("deleted library 'x' (damaged)", 3 of 3
    runs where the holder let go during the delete's own wait). In use is said and nothing
    is deleted."""
    holder = start_holder(_HOLDER, tmp_path, 4, "first")
    try:
        r = subprocess.run([sys.executable, "-m", "sam_detect", "library", "delete", "lib", "--store", "edge",
                            "--library-path", str(tmp_path)], capture_output=True, text=True, timeout=120,
                           input="n\n", env={**os.environ, "SAM_DETECT_LOCK_WAIT": "0"})  # asked: "damaged"?
        assert r.returncode == 1 and "is in use by another sam-detect process" in r.stderr, r.stderr
        assert "damaged" not in r.stderr and (tmp_path / "lib").is_dir()
    finally:
        stop_holder(holder)
    s = EdgeStore(tmp_path)
    try:
        assert s.labels("lib") == {"first": 4}
    finally:
        s.close()


def test_a_library_written_by_another_process_after_its_metadata_was_read_is_not_called_damaged(tmp_path):
    """`detect`, `add`, `library show` and the UI read a library's metadata, then waited for an
    `add` in another process to let go of it, then compared the examples they found with the
    count in the metadata read before the wait: "library 'x' is damaged (4 examples readable,
    the last write left 3)", every time (a folder-long detect skipped an image; `library
    check` said ok). The metadata is read again once the library is held."""
    s = EdgeStore(tmp_path)
    s.create_library(meta())
    s.add("lib", np.ones((3, DIM)), ["first"] * 3)
    s.close()
    s = EdgeStore(tmp_path)
    try:
        assert s.get_meta("lib").extra["_count"] == 3  # read before the other process writes
        code = textwrap.dedent(
            """
            import sys, numpy as np
            from sam_detect.store.edge import EdgeStore
            s = EdgeStore(sys.argv[1])
            s.add("lib", np.ones((1, 8)), ["second"])
            s.close()
            """
        )
        subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=120)
        assert s.labels("lib") == {"first": 3, "second": 1}
        assert len(s.search("lib", np.ones((1, DIM), np.float32), 10)[0]) == 4
    finally:
        s.close()


_BUSY_WRITER = textwrap.dedent(
    """
    import sys, time, numpy as np
    from sam_detect.store.edge import EdgeStore
    from sam_detect.store.base import LibraryMeta
    s = EdgeStore(sys.argv[1])
    s.create_library(LibraryMeta(name="lib", embedder_id="fake", dim=8))
    ids = s.add("lib", np.random.default_rng(1).normal(size=(5, 8)), ["first"] * 5)
    print("ready", flush=True)
    t, n = time.time(), 0
    while time.time() - t < float(sys.argv[2]):  # an `add` writing its examples, then their measures
        s.add("lib", np.random.default_rng(n).normal(size=(1, 8)), ["second"])
        s.update_payloads("lib", {i: {"shape": {"n": n}} for i in ids})
        n += 1
    s.close()
    print("closed", n, flush=True)
    sys.stdin.readline()
    """
)


@pytest.mark.slow
def test_a_process_waiting_for_a_library_leaves_its_writer_unharmed(tmp_path):
    """While an `add` wrote a library, a `detect` (or a UI request) waiting its turn asked the
    engine to load the library every 0.2 s; a refused load had begun on the files already,
    and the writer's next flush failed ("Tracker journal ... is shorter than expected", the
    `add` reported the library damaged), or the waiter then found more examples than the
    metadata said (3 of 3 runs). The waiter now waits on the library's lock file and touches
    nothing of the engine's until the writer has let go."""
    holder = start_holder(_BUSY_WRITER, tmp_path, 2.5)
    s = EdgeStore(tmp_path)
    try:
        labels = s.labels("lib")  # waits for the writer, then reads the library as it left it
        assert s.get_meta("lib").extra["_count"] == sum(labels.values())
    finally:
        s.close()
    out, err = holder.communicate("\n", timeout=60)
    assert holder.returncode == 0 and "closed" in out, err
    n = int(out.split()[-1])
    assert labels == {"first": 5, "second": n}


_KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys, time, numpy as np
    from pathlib import Path
    from sam_detect.store import journal
    from sam_detect.store.edge import EdgeStore
    s = EdgeStore(sys.argv[1])
    s.count("lib")  # holds the library now
    print("ready", flush=True)
    time.sleep(1.0)  # the test's store is waiting for it by now
    journal.begin(s, "lib", ids := journal.new_ids(2))
    s.add("lib", np.ones((2, 8), np.float32), ["half"] * 2, ids=ids)
    os.kill(os.getpid(), signal.SIGKILL)  # killed before its commit
    """
)


@pytest.mark.slow
def test_a_writer_killed_while_another_process_waited_is_rolled_back_for_the_waiter(tmp_path):
    """The waiter reads the metadata again once it holds the library (above), and the journal
    found there is recovered as any open recovers it: a first version kept the killed
    writer's half batch for good (the waiter's own add then cleared the journal)."""
    from sam_detect.store import journal

    s = EdgeStore(tmp_path)
    s.create_library(meta())
    journal.add(s, "lib", np.ones((2, DIM), np.float32), ["old"] * 2)
    s.close()
    s = EdgeStore(tmp_path)
    try:
        s.get_meta("lib")  # read before the writer holds the library
        writer = start_holder(_KILLED_WRITER, tmp_path)
        reaper = threading.Thread(target=writer.wait)  # its parent (a shell) reaps it: not a zombie
        reaper.start()
        assert s.labels("lib") == {"old": 2}  # waits for the writer's death, then rolls its batch back
        reaper.join(30)
        journal.add(s, "lib", np.ones((1, DIM), np.float32), ["new"])
        assert s.labels("lib") == {"new": 1, "old": 2}
    finally:
        s.close()
    s = EdgeStore(tmp_path)
    try:
        assert s.labels("lib") == {"new": 1, "old": 2} and s.count("lib") == 3
    finally:
        s.close()


_DELETER = textwrap.dedent(
    """
    import os, sys, time, numpy as np
    from sam_detect.store.edge import EdgeStore
    s = EdgeStore(sys.argv[1])
    assert s.count("lib") == 3  # holds the library
    print("ready", flush=True)
    time.sleep(float(sys.argv[2]))
    rename = os.rename
    def slow(a, b):  # a delete that takes its time: the library's lock must be held throughout
        time.sleep(1.5)
        rename(a, b)
    os.rename = slow
    s.delete_library("lib")
    sys.stdin.readline()
    s.close()
    print("closed", flush=True)
    """
)


def test_a_library_deleted_while_waited_for_is_said_deleted(tmp_path, monkeypatch):
    """A process waiting for a library that another process then deleted was told it "is on a
    read-only disk or folder" (the delete let go of its lock before moving the folder away,
    and the waiter's open found the folder gone), or, having held the library itself earlier,
    that it "is already open in this process" (its own holder file, left behind, read as
    proof): a folder-long `detect` said so image after image (a helper's bug hunt)."""
    store = EdgeStore(tmp_path)
    store.create_library(LibraryMeta(name="lib", embedder_id="e", dim=4))
    store.add("lib", np.ones((3, 4)), ["a"] * 3)
    store.close()  # this process held it last: its holder file names this process
    monkeypatch.setenv("SAM_DETECT_LOCK_WAIT", "0")
    proc = start_holder(_DELETER, tmp_path, 1.5)
    try:
        store = EdgeStore(tmp_path)
        with pytest.raises(LibraryLockedError, match="in use by another sam-detect process"):
            store.count("lib")  # not "already open in this process"
        monkeypatch.setenv("SAM_DETECT_LOCK_WAIT", "30")
        # a second delete waiting for the first (review: it took the error for a damaged library
        # and failed renaming the folder gone, naming its trash folder; and before the lock was
        # held to the end, it took the library while the first was moving it away)
        with pytest.raises(LibraryError, match="'lib' in .* was deleted by another process while this one waited"):
            store.delete_library("lib")
        with pytest.raises(LibraryError, match="no library 'lib'"):
            store.count("lib")
        store.close()
    finally:
        stop_holder(proc)
    assert not (tmp_path / "lib").exists()


def test_a_library_whose_shard_folder_is_gone_can_still_be_deleted(tmp_path):
    """A damaged library (its shard folder removed by hand) is listed and its name taken;
    `delete` must remove it. A first version of "deleted by another process" refused it as not
    found (the review of session 89)."""
    import shutil

    s = EdgeStore(tmp_path)
    s.create_library(meta("lib"))
    s.close()
    shutil.rmtree(tmp_path / "lib" / "shard")
    s = EdgeStore(tmp_path)
    try:
        s.delete_library("lib")
        assert s.list_libraries() == [] and not (tmp_path / "lib").exists()
    finally:
        s.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_lets_go_of_its_parents_library_and_opens_it_anew(tmp_path, monkeypatch):
    """A forked child kept an Edge library locked until it exited, however long after the
    parent had closed it: the child's copies of the parent's files held the engine's lock on
    the write-ahead log (and ours). The child now lets go of them at the fork; its store
    opens the library again on its next use, as any other process: while the parent holds
    it, one line says so and why; once the parent let go, it reads and writes. Nothing lost."""
    monkeypatch.setenv("SAM_DETECT_LOCK_WAIT", "0")
    s = EdgeStore(tmp_path)
    s.create_library(meta())
    s.add("lib", np.random.default_rng(0).normal(size=(4, DIM)), ["a"] * 4)
    assert s.count("lib") == 4  # open: the parent holds the library

    def child(inp, out):
        inp.readline()  # the parent has added one more and still holds the library
        try:
            s.count("lib")
            out.write("opened\n")
        except LibraryLockedError as e:
            out.write(json.dumps(str(e)) + "\n")
        out.flush()
        inp.readline()  # the parent has closed its store
        n = s.count("lib")
        s.add("lib", np.ones((1, DIM)), ["child"])
        s.close()
        out.write(f"{n}\n")
        out.flush()

    pid, out, inp = fork_talking(child)

    def answer() -> str:  # the child's next line; one that never comes fails the test
        return child_answer(inp, pid, "the forked child hung (before: a count on the parent's shard never returned)")

    try:
        s.add("lib", np.full((1, DIM), 2.0), ["b"])  # the parent goes on as before
        assert s.count("lib") == 5
        out.write("go\n")
        out.flush()
        said = json.loads(answer())
        assert said == (
            f"library 'lib' in {tmp_path} is held by the process this one was forked from (pid {os.getpid()}): "
            "a forked process opens a library anew and cannot share its parent's; close it (or .release()) in "
            "the parent first, or open the library in the child only")
        s.close()
        other = EdgeStore(tmp_path)  # a new open while the child lives: it holds nothing
        assert other.count("lib") == 5
        other.close()
        out.write("go\n")
        out.flush()
        assert answer().strip() == "5"
    finally:
        out.close()
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    after = EdgeStore(tmp_path)
    assert after.labels("lib") == {"a": 4, "b": 1, "child": 1}
    after.close()


def test_a_held_library_is_told_from_one_reading_of_its_holder_file(tmp_path, monkeypatch):
    """Whether the holder is the process this one was forked from and whom the message names
    come from one reading of the holder file: read twice, a holder file rewritten between
    (another process took the library) gave a message naming a process other than the one
    checked, and the file was read twice for one refusal."""
    import fcntl
    from pathlib import Path

    from sam_detect.store.edge import LOCK_FILE
    from sam_detect.store.edge_files import HOLDER_FILE

    monkeypatch.setenv("SAM_DETECT_LOCK_WAIT", "0")
    s = EdgeStore(tmp_path)
    s.create_library(meta())
    s.close()
    fd = os.open(tmp_path / "lib" / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as another process holding the library
    parent = os.getpid() + 1
    contents = iter([{"pid": 4242, "command": "sam-detect add", "since": "10:00:00"},
                     {"pid": parent, "command": "sam-detect ui", "since": "10:00:01"}])
    reads = []
    read_text = Path.read_text

    def holder_read(self, *args, **kw):
        if self.name == HOLDER_FILE:
            reads.append(self)
            return json.dumps(next(contents))
        return read_text(self, *args, **kw)

    s = EdgeStore(tmp_path)
    try:
        s._forked_from = parent  # as in a forked child
        monkeypatch.setattr(Path, "read_text", holder_read)
        with pytest.raises(LibraryLockedError) as exc:
            s.count("lib")
        monkeypatch.undo()
        assert str(exc.value).startswith(
            f"library 'lib' in {tmp_path} is in use by another sam-detect process "
            "(pid 4242, sam-detect add, since 10:00:00); wait for it")
        assert len(reads) == 1
    finally:
        monkeypatch.undo()
        os.close(fd)
        s.close()
