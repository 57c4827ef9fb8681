"""Crash safety and integrity: journaled writes, SIGKILL at seeded moments, damaged files,
library check / repair, crop checksums and bounded imports (issue 14)."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import QDRANT_API_KEY as API_KEY
from test_store_congruence import needs_docker

from sam_detect.errors import LibraryDamagedError, LibraryError
from sam_detect.store import create_store, journal, killtest
from sam_detect.store.base import LibraryMeta
from sam_detect.store.exchange import export_library, import_library, read_library_file
from sam_detect.store.integrity import check_library, repair_library

REPO = Path(__file__).resolve().parents[1]
DIM = 16


def _open(kind: str, folder: Path):
    return create_store(kind, path=str(folder))


def _vecs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


def _meta(name: str = "lib") -> LibraryMeta:
    return LibraryMeta(name=name, embedder_id="fake", dim=DIM)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "sam_detect", *args], env=env,
                          capture_output=True, text=True, timeout=120)


PERSISTENT = ["edge", "qdrant", "memory"]


# -- the journal -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", PERSISTENT)
def test_an_uncommitted_batch_is_rolled_back_by_the_next_open(kind, tmp_path):
    s = _open(kind, tmp_path)
    s.create_library(_meta())
    keep = s.add("lib", _vecs(5), ["a"] * 5)
    ids = journal.new_ids(7)
    journal.begin(s, "lib", ids)
    s.add("lib", _vecs(7, 1), ["b"] * 7, ids=ids)  # written, never committed: a "kill" here
    journal._ACTIVE.clear()  # as if this process had died
    s.close()
    s = _open(kind, tmp_path)
    try:
        assert s.count("lib") == 5
        assert s.labels("lib") == {"a": 5}
        assert journal.pending_of(s.get_meta("lib")) is None
        assert sorted(x for b in s.iter_examples("lib") for x in b[0]) == sorted(keep)
    finally:
        s.close()


@pytest.mark.parametrize("kind", PERSISTENT)
def test_a_library_created_by_an_unfinished_batch_is_removed(kind, tmp_path):
    s = _open(kind, tmp_path)
    s.create_library(journal.provisional(_meta("half")))
    s.create_library(_meta("whole"))
    journal.begin(s, "half", journal.new_ids(3))
    journal._ACTIVE.clear()
    s.close()
    s = _open(kind, tmp_path)
    try:
        assert s.list_libraries() == ["whole"]
        assert not s.has_library("half")
        s.create_library(_meta("half"))  # the name is free again (import no longer blocked)
    finally:
        s.close()


@pytest.mark.parametrize("kind", PERSISTENT)
def test_a_failed_batch_in_process_leaves_nothing(kind, tmp_path):
    s = _open(kind, tmp_path)
    s.create_library(_meta())
    s.add("lib", _vecs(2), ["a", "a"])
    ids = journal.new_ids(3)
    with pytest.raises(RuntimeError, match="boom"), journal.batch(s, "lib", ids):
        s.add("lib", _vecs(3, 2), ["b"] * 3, ids=ids)
        raise RuntimeError("boom")
    assert s.count("lib") == 2 and journal.pending_of(s.get_meta("lib")) is None
    s.close()


def test_the_writer_own_batch_is_not_rolled_back_by_itself(tmp_path):
    s = _open("edge", tmp_path)
    s.create_library(journal.provisional(_meta()))
    s._metas.clear()  # re-read the metadata from disk, as a second open would
    assert s.has_library("lib")  # still being written by this process: left alone
    journal.add(s, "lib", _vecs(4), ["a"] * 4)
    assert journal.pending_of(s.get_meta("lib")) is None and s.count("lib") == 4
    s.close()


@pytest.mark.parametrize("kind", PERSISTENT)
def test_an_interrupted_delete_is_finished_by_the_next_open(kind, tmp_path):
    """A delete journaled but cut off after some of its ids went (here: one of three) is
    finished by the next open, and the count reads record what is left."""
    s = _open(kind, tmp_path)
    s.create_library(_meta())
    keep = s.add("lib", _vecs(4), ["a"] * 4)
    doomed = s.add("lib", _vecs(3, 1), ["b"] * 3)
    s.update_extra("lib", journal.PENDING_KEY, journal._record(doomed, False, op="delete"))
    s.delete("lib", ids=doomed[:1])
    journal._ACTIVE.clear()  # as if this process had died
    s.close()
    s = _open(kind, tmp_path)
    try:
        assert s.labels("lib") == {"a": 4}
        assert sorted(x for b in s.iter_examples("lib") for x in b[0]) == sorted(keep)
        meta = s.get_meta("lib")
        assert journal.pending_of(meta) is None and meta.extra["_count"] == 4
        assert check_library(s, "lib").ok
    finally:
        s.close()


@pytest.mark.parametrize("kind", PERSISTENT)
def test_a_delete_by_label_journals_the_ids_it_had(kind, tmp_path):
    """A label delete journals the label's ids when it starts: an example given that label
    later is not deleted by the roll-forward; a failure in process leaves the journal for
    the next open, which finishes it."""
    s = _open(kind, tmp_path)
    s.create_library(_meta())
    s.add("lib", _vecs(2), ["a", "a"])
    s.add("lib", _vecs(3, 1), ["b"] * 3)
    real = s.delete
    calls = []

    def dies(*a, **kw):
        calls.append(kw)
        raise SystemExit("killed")  # not an Exception: no retry, as with a kill

    s.delete = dies
    with pytest.raises(SystemExit):
        journal.delete(s, "lib", label="b")
    s.delete = real
    assert len(calls) == 1 and len(calls[0]["ids"]) == 3
    late = s.add("lib", _vecs(1, 2), ["b"])  # another "b" after the journal was written
    s.close()
    s = _open(kind, tmp_path)
    try:
        assert s.labels("lib") == {"a": 2, "b": 1}
        assert late[0] in {x for b in s.iter_examples("lib") for x in b[0]}
        assert journal.pending_of(s.get_meta("lib")) is None
    finally:
        s.close()


def test_a_delete_retries_once_and_refuses_over_another_write(tmp_path):
    s = _open("memory", tmp_path)
    s.create_library(_meta())
    ids = s.add("lib", _vecs(3), ["a"] * 3)
    real, calls = s.delete, []

    def flaky(*a, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("reset")
        return real(*a, **kw)

    s.delete = flaky
    assert journal.delete(s, "lib", ids=ids[:2]) == 2 and len(calls) == 2
    s.delete = real
    assert s.count("lib") == 1 and journal.pending_of(s.get_meta("lib")) is None
    journal.begin(s, "lib", journal.new_ids(1))  # a batch being written
    with pytest.raises(LibraryError, match=r"library 'lib' has an unfinished write \(pid \d+"):
        journal.delete(s, "lib", ids=ids[2:])
    assert s.count("lib") == 1


def test_a_library_two_processes_create_at_once_is_refused_to_the_second_in_words(tmp_path, monkeypatch):
    """Two `add`s making one new library at once: the second one's rename onto the folder the
    first just made fails (ENOTEMPTY on Linux, not FileExistsError). It said "Error:
    .../.lib.creating-...: Directory not empty"; now it says what happened, and leaves no
    half-made folder."""
    import errno

    import sam_detect.store.edge as edge

    s = _open("edge", tmp_path)

    def lost_the_race(src, dst):
        raise OSError(errno.ENOTEMPTY, "Directory not empty", str(src))

    monkeypatch.setattr(edge.os, "rename", lost_the_race)
    try:
        with pytest.raises(LibraryError, match="library 'lib' was just created by another process"):
            s.create_library(_meta())
    finally:
        s.close()
    assert not list(tmp_path.glob(".lib.creating-*"))


def test_cli_deletes_examples_by_label_and_id(tmp_path):
    s = _open("edge", tmp_path)
    s.create_library(_meta())
    s.add("lib", _vecs(5), ["a"] * 5)
    b = s.add("lib", _vecs(3, 1), ["b"] * 3)
    s.close()
    loc = ["--store", "edge", "--library-path", str(tmp_path)]
    r = _cli("library", "delete", "lib", "--label", "a", "--yes", *loc)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "deleted 5 examples from library 'lib' (3 left)\n"
    r = _cli("library", "show", "lib", "--examples", "--json", *loc)  # the ids `delete --id` takes
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)["example_list"]
    assert sorted(e["id"] for e in listed) == sorted(b) and {e["label"] for e in listed} == {"b"}
    r = _cli("library", "show", "lib", "--examples", *loc)
    assert r.returncode == 0 and all(i in r.stdout for i in b)
    r = _cli("library", "delete", "lib", "--id", b[0], "-y", *loc)
    assert r.returncode == 0 and "deleted 1 examples from library 'lib' (2 left)" in r.stderr
    r = _cli("library", "delete", "lib", "--label", "nope", "-y", *loc)
    assert r.returncode == 1
    assert r.stderr == "Error: library 'lib' has no examples labelled 'nope'; its labels: 'b'\n"
    r = _cli("library", "delete", "lib", "--id", "x1", "-y", *loc)
    assert r.returncode == 2 and "example ids are UUID strings, got 'x1'" in r.stderr
    r = _cli("library", "delete", "lib", "--id", b[0], "--id", b[1], "-y", *loc)  # b[0] went already
    assert r.returncode == 1 and r.stderr == (f"Error: library 'lib' holds no example with id {b[0]!r}; nothing "
                                              "deleted (`sam-detect library show lib --examples` lists its examples)\n")
    s = _open("edge", tmp_path)
    try:
        assert s.labels("lib") == {"b": 2} and check_library(s, "lib").ok
    finally:
        s.close()


def test_edge_open_removes_what_a_killed_create_or_delete_left(tmp_path):
    """A kill while Edge builds a new library (beside its final place) or removes one
    (renamed away first) leaves a hidden folder; the next open removes it, unless the
    process building it still runs."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        left = {
            f".new.creating-{_dead_pid()}-0123abcd": False,
            f".x.v2.creating-{sleeper.pid}-0123abcd": True,  # still being built
            ".old.deleting-89abcdef": False,
            ".new.creating-0123abcd": True,  # an older name, without the pid: kept
        }
        for name in left:
            (tmp_path / name / "shard").mkdir(parents=True)
        _open("edge", tmp_path).close()
        assert {p.name for p in tmp_path.iterdir()} == {n for n, kept in left.items() if kept}
    finally:
        sleeper.kill()
        sleeper.wait()


def test_memory_open_removes_half_written_copies_of_a_killed_writer(tmp_path):
    s = _open("memory", tmp_path)
    s.create_library(_meta())
    s.close()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = tmp_path / f"memory_store.npz.{_dead_pid()}.abc123.tmp"
        live = tmp_path / f"memory_store.npz.{sleeper.pid}.def456.tmp"  # being written now
        for f in (dead, live):
            f.write_bytes(b"half")
        s = _open("memory", tmp_path)
        assert s.list_libraries() == ["lib"]
        assert not dead.exists() and live.exists()
        s.close()
    finally:
        sleeper.kill()
        sleeper.wait()


# -- journals on a shared server --------------------------------------------------------------


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _foreign_journal(s, name: str, ids: list[str], **who) -> None:
    rec = journal._record(ids, False)
    journal._ACTIVE.discard(rec["token"])
    rec.update(who)
    s.update_extra(name, journal.PENDING_KEY, rec)


@pytest.fixture
def fake_server(monkeypatch):
    """``QdrantStore(url=...)`` backed by one in-process client: the server code paths
    (shared recovery) on the client's local engine, since no Docker engine runs here."""
    import qdrant_client

    real = qdrant_client.QdrantClient
    shared = real(location=":memory:")

    def client(**kw):
        return shared if kw.get("url") else real(**kw)

    monkeypatch.setattr(qdrant_client, "QdrantClient", client)
    monkeypatch.setattr(shared, "close", lambda *a, **k: None)  # every open sees the data
    yield lambda: create_store("qdrant", url="http://qdrant.invalid:6333")


def test_server_open_recovers_only_journals_of_provably_dead_writers(fake_server, tmp_path):
    s = fake_server()
    assert s.backend == "qdrant-server"
    added = {}
    for name in ("dead", "live", "elsewhere", "other-ns"):
        s.create_library(_meta(name))
        s.add(name, _vecs(2), ["keep"] * 2)
        added[name] = s.add(name, _vecs(3, 1), ["half"] * 3)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _foreign_journal(s, "dead", added["dead"], pid=_dead_pid())
        _foreign_journal(s, "live", added["live"], pid=sleeper.pid)
        _foreign_journal(s, "elsewhere", added["elsewhere"], pid=_dead_pid(), host="other-host")
        _foreign_journal(s, "other-ns", added["other-ns"], pid=_dead_pid(), pidns=1)
        s.close()
        s2 = fake_server()  # the next open
        assert s2.labels("dead") == {"keep": 2}
        assert journal.pending_of(s2.get_meta("dead")) is None
        assert s2.get_meta("dead").extra["_count"] == 2
        for name in ("live", "elsewhere", "other-ns"):  # maybe a live writer's: left alone
            assert s2.labels(name) == {"half": 3, "keep": 2}, name
            rep = check_library(s2, name)
            assert not rep.ok and "an interrupted write of 3 examples" in rep.problems[0]
        res = repair_library(s2, "elsewhere")  # repair undoes it on request
        assert res.kept == 2 and s2.labels("elsewhere") == {"keep": 2}
    finally:
        sleeper.kill()
        sleeper.wait()
    s3 = fake_server()  # the writer has died since: the next open recovers its batch
    assert s3.labels("live") == {"keep": 2}


def test_server_open_finishes_a_dead_writers_delete(fake_server):
    s = fake_server()
    s.create_library(_meta())
    s.add("lib", _vecs(2), ["a"] * 2)
    doomed = s.add("lib", _vecs(3, 1), ["b"] * 3)
    s.update_extra("lib", journal.PENDING_KEY, {**journal._record(doomed, False, op="delete"),
                                                "pid": _dead_pid()})
    journal._ACTIVE.clear()
    s.delete("lib", ids=doomed[:2])
    s2 = fake_server()
    assert s2.labels("lib") == {"a": 2} and journal.pending_of(s2.get_meta("lib")) is None


@needs_docker
@pytest.mark.docker
def test_a_real_server_open_recovers_a_dead_writers_journal_only(qdrant_server):
    s = create_store("qdrant", url=qdrant_server, api_key=API_KEY)
    names = ["kt-dead-" + os.urandom(3).hex(), "kt-else-" + os.urandom(3).hex()]
    try:
        for name in names:
            s.create_library(_meta(name))
            s.add(name, _vecs(2), ["keep"] * 2)
        _foreign_journal(s, names[0], s.add(names[0], _vecs(3, 1), ["half"] * 3), pid=_dead_pid())
        _foreign_journal(s, names[1], s.add(names[1], _vecs(3, 1), ["half"] * 3), host="other-host")
        s2 = create_store("qdrant", url=qdrant_server, api_key=API_KEY)
        assert s2.labels(names[0]) == {"keep": 2}
        assert s2.labels(names[1]) == {"half": 3, "keep": 2}
        assert not check_library(s2, names[1]).ok
        s2.close()
    finally:
        for name in names:
            s.delete_library(name)
        s.close()


# -- SIGKILL at seeded moments ---------------------------------------------------------------
#
# sam_detect.store.killtest forks each write from one helper process that has imported the
# store code already, so a kill costs the write itself plus one open of the folder
# (~0.4-1.2 s here), and the seeded kill moments, uniform over 0-1.1x an uninterrupted write,
# land in the write rather than in Python's start-up. Batch sizes are set so that one write
# takes ~0.2-0.9 s and spans several store calls (Edge upserts 1,024 points per call, the
# client's local mode commits every point, the memory store rewrites its file per call).

KILLS = 50
BATCH = {"edge": 1500, "qdrant": 150, "memory": 3000}
needs_fork = pytest.mark.skipif(
    not hasattr(os, "fork") or not hasattr(signal, "SIGKILL"),
    reason="the kill tests fork writers and SIGKILL them: POSIX only",
)


@pytest.fixture(scope="module")
def kill_driver(tmp_path_factory):
    with killtest.ForkDriver(tmp_path_factory.mktemp("kill-driver") / "writes.log") as d:
        yield d


def _kill_run(driver, tmp_path, kind, scenario, kills, journaled=True, n=None):
    setup = killtest.prepare(tmp_path, kind, scenario, n or BATCH[kind])
    return killtest.run_trials(setup, tmp_path, kills, seed=14, driver=driver, journaled=journaled)


@needs_fork
@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["add", "merge"])
@pytest.mark.parametrize("kind", PERSISTENT)
def test_50_sigkills_leave_all_or_none(kind, scenario, kill_driver, tmp_path):
    """``add`` (its journaled write) and ``import --merge``: after each of 50 kills the
    library holds all of the batch or none of it (ids compared exactly), holds no journal,
    and reads, searches and takes a further add."""
    res = _kill_run(kill_driver, tmp_path, kind, scenario, KILLS)
    out = res["outcomes"]
    assert sum(out.values()) == KILLS
    assert set(out) <= killtest.GOOD_OUTCOMES, out
    # the kills really interrupted writes, some inside the journaled batch
    assert res["killed"] >= 1 and out.get("rolled_back", 0) >= 1, res


@needs_fork
@pytest.mark.slow
@pytest.mark.parametrize("kind", PERSISTENT)
def test_sigkills_during_a_label_delete_leave_all_or_none(kind, kill_driver, tmp_path):
    """Deleting every example of a label (``library delete --label``; the UI deletes by id
    through the same ``journal.delete``): all of them gone, or none, after each kill; a
    kill inside the delete is finished by the next open."""
    kills = 20
    # the memory store deletes 3,000 points in ~0.05 s: on a loaded machine every kill
    # moment in 0-1.1x that landed before the delete began (CI, session 52: 20 of 20
    # "none"); four times the points span ~0.2 s, as the other stores' writes do
    res = _kill_run(kill_driver, tmp_path, kind, "delete", kills, n=BATCH[kind] * (4 if kind == "memory" else 1))
    out = res["outcomes"]
    assert sum(out.values()) == kills
    assert set(out) <= killtest.GOOD_OUTCOMES, out
    assert res["killed"] >= 1 and out.get("finished", 0) >= 1, res


@needs_fork
def test_sigkills_during_import_as_new_leave_all_or_none(kill_driver, tmp_path):
    kills = 5
    res = _kill_run(kill_driver, tmp_path, "edge", "import", kills)
    assert sum(res["outcomes"].values()) == kills
    assert set(res["outcomes"]) <= killtest.GOOD_OUTCOMES, res


@needs_fork
def test_the_kill_harness_sees_partial_writes_without_the_journal(kill_driver, tmp_path):
    """The control: the same kills on a label delete that bypasses the journal (the client's
    local mode deletes point by point) leave partial libraries, so the tests above could fail."""
    res = _kill_run(kill_driver, tmp_path, "qdrant", "delete", 10, journaled=False)
    partial = sum(v for k, v in res["outcomes"].items() if k.startswith("partial"))
    assert partial >= 1, res


# -- damaged files ---------------------------------------------------------------------------


def _edge_library(folder: Path, n: int = 11) -> None:
    s = _open("edge", folder)
    s.create_library(_meta("base"))
    s.add("base", _vecs(n), [f"c{i % 2}" for i in range(n)])
    s.create_library(_meta("good"))
    s.add("good", _vecs(3, 5), ["g"] * 3)
    s.close()


def _segment_file(folder: Path, rel: str) -> str:
    return glob.glob(str(folder / "base" / "shard" / "segments" / "*" / rel))[0]


@pytest.mark.parametrize(
    "rel", ["vector_storage/vectors/chunk_0.mmap", "payload_storage/page_0.dat"]
)
def test_truncated_files_give_one_line_errors_then_check_and_repair(rel, tmp_path):
    _edge_library(tmp_path)
    os.truncate(_segment_file(tmp_path, rel), 0)
    loc = ["--store", "edge", "--library-path", str(tmp_path)]
    for args in (["library", "show", "base"], ["library", "export", "base", str(tmp_path / "x.zip")]):
        r = _cli(*args, *loc)
        assert r.returncode == 1, r.stderr
        assert r.stderr.startswith("Error: library 'base' is damaged") and "Traceback" not in r.stderr
        assert "library check base" in r.stderr and "library repair base" in r.stderr
    r = _cli("library", "list", *loc)
    assert r.returncode == 0 and "damaged" in r.stdout and "good" in r.stdout
    r = _cli("library", "check", "base", *loc)
    assert r.returncode == 1 and "unreadable vector or payload" in r.stdout
    r = _cli("library", "check", "good", *loc)
    assert r.returncode == 0 and "ok (3 examples" in r.stdout
    r = _cli("library", "repair", "base", *loc, "--rescue-dir", str(tmp_path / "rescue"))
    assert r.returncode == 0, r.stderr
    assert "dropped 11 unreadable" in r.stderr and "ok" in r.stdout
    assert list((tmp_path / "rescue").glob("base.rescue-*.samlib.zip"))
    s = _open("edge", tmp_path)
    assert s.count("good") == 3 and check_library(s, "base").ok
    s.close()


def test_detect_on_a_damaged_library_is_one_line_naming_check(tmp_path, scene):
    _edge_library(tmp_path)
    os.truncate(_segment_file(tmp_path, "vector_storage/vectors/chunk_0.mmap"), 0)
    s = _open("edge", tmp_path)
    with pytest.raises(LibraryDamagedError, match="library check base"):
        s.search("base", _vecs(1), 3)
    s.close()


def test_lost_examples_are_noticed_not_searched_silently(tmp_path):
    """Fewer examples than the last write left (what a truncated id mapping does): reads
    refuse with the check/repair hint; repair records what is left and says what was lost."""
    _edge_library(tmp_path)
    f = tmp_path / "base" / "sam_detect_library.json"
    doc = json.loads(f.read_text())
    doc["meta"]["extra"]["_count"] = 20
    f.write_text(json.dumps(doc))
    s = _open("edge", tmp_path)
    with pytest.raises(LibraryDamagedError, match="11 examples readable, the last write left 20"):
        s.search("base", _vecs(1), 3)
    rep = check_library(s, "base")
    assert not rep.ok and "11 examples found, the last write left 20" in rep.problems[0]
    res = repair_library(s, "base")
    assert res.kept == 11 and not res.dropped and "9 were lost" in res.actions[0]
    s.close()
    s = _open("edge", tmp_path)
    assert len(s.search("base", _vecs(1), 3)[0]) == 3
    s.close()


def test_a_lost_label_index_is_found_by_check_and_rebuilt_by_repair(tmp_path):
    """The shard's segment files deleted: every example still reads (from the shard's log),
    but the labels' index is gone, so show, detect and stats failed while check said "ok"
    and repair did nothing. Now check names it, repair rebuilds the library with every
    example, and stats of every library shows the others beside the damaged one."""
    import shutil

    _edge_library(tmp_path)
    for seg in glob.glob(str(tmp_path / "base" / "shard" / "segments" / "*")):
        shutil.rmtree(seg)
    loc = ["--store", "edge", "--library-path", str(tmp_path)]
    r = _cli("library", "stats", *loc)
    assert r.returncode == 1 and "library:   good" in r.stdout and "error:     library 'base' is damaged" in r.stdout
    r = _cli("library", "check", "base", *loc)
    assert r.returncode == 1 and "its label index cannot be read" in r.stdout, r.stdout
    r = _cli("library", "repair", "base", *loc, "--rescue-dir", str(tmp_path / "rescue"))
    assert r.returncode == 0 and "none dropped" in r.stderr, r.stderr
    r = _cli("library", "show", "base", *loc)
    assert r.returncode == 0 and "examples:  11" in r.stdout


def test_a_wrong_dim_in_the_metadata_is_named_and_no_sound_example_is_dropped(tmp_path):
    """Every vector holds the same number of values, but not the metadata's ``dim`` (edited by
    hand): check names the metadata, and repair changes nothing (it dropped all 11 sound
    examples as "unreadable")."""
    _edge_library(tmp_path)
    f = tmp_path / "base" / "sam_detect_library.json"
    doc = json.loads(f.read_text())
    right = doc["meta"]["dim"]
    doc["meta"]["dim"] = right + 7
    f.write_text(json.dumps(doc))
    loc = ["--store", "edge", "--library-path", str(tmp_path)]
    r = _cli("library", "check", "base", *loc)
    want = f"the metadata says each vector holds {right + 7} numbers, but all 11 examples' vectors hold {right}"
    assert r.returncode == 1 and want in r.stdout and "library repair" not in r.stderr
    r = _cli("library", "repair", "base", *loc, "--rescue-dir", str(tmp_path / "rescue"))
    assert r.returncode == 1 and "Nothing was changed" in r.stderr and not list((tmp_path / "rescue").glob("*"))
    doc["meta"]["dim"] = right
    f.write_text(json.dumps(doc))
    s = _open("edge", tmp_path)
    assert s.count("base") == 11 and check_library(s, "base").ok
    s.close()


def test_broken_metadata_does_not_break_list_delete_works_repair_restores(tmp_path):
    _edge_library(tmp_path)
    (tmp_path / "base" / "sam_detect_library.json").write_text("{broken")
    loc = ["--store", "edge", "--library-path", str(tmp_path)]
    r = _cli("library", "list", *loc)
    assert r.returncode == 0 and "good" in r.stdout and "damaged" in r.stdout
    r = _cli("library", "repair", "base", *loc, "--rescue-dir", str(tmp_path))
    assert r.returncode == 0 and "restored the metadata from its backup" in r.stderr
    (tmp_path / "base" / "sam_detect_library.json").write_text("{broken")
    (tmp_path / "base" / ".sam_detect_library.json.bak").unlink()
    r = _cli("library", "repair", "base", *loc)
    assert r.returncode == 1 and r.stderr.startswith("Error: cannot repair 'base'")
    r = _cli("library", "delete", "base", "--yes", *loc)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "base").exists() and (tmp_path / "good").exists()


def test_qdrant_damaged_metadata_record_spares_the_others(tmp_path):
    s = _open("qdrant", tmp_path)
    s.create_library(_meta("bad"))
    s.create_library(_meta("ok"))
    from qdrant_client import models

    from sam_detect.store.qdrant import META_COLLECTION, _meta_id

    s._client.upsert(META_COLLECTION, points=[models.PointStruct(
        id=_meta_id("bad"), vector={}, payload={"library": "bad", "format": 99})])
    s._metas.clear()
    assert s.list_libraries() == ["bad", "ok"]
    assert not check_library(s, "bad").ok
    s.delete_library("bad")
    assert s.list_libraries() == ["ok"]
    s.close()


# -- exports: crop checksums, bounded reading ------------------------------------------------


def _export_with_crops(tmp_path: Path) -> Path:
    s = create_store("memory")
    s.create_library(_meta())
    s.add("lib", _vecs(3), ["a", "b", "c"])
    out = tmp_path / "lib.samlib.zip"
    rng = np.random.default_rng(1)
    export_library(s, "lib", out, crops=lambda i, p: rng.integers(0, 255, (12, 10, 3), dtype=np.uint8))
    return out


def test_crops_carry_checksums_and_a_flipped_byte_is_refused(tmp_path):
    src = _export_with_crops(tmp_path)
    archive = read_library_file(src)
    assert len(archive.manifest["crops"]["sha256"]) == 3
    bad = tmp_path / "bad.samlib.zip"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(bad, "w") as zout:
        victim = sorted(n for n in zin.namelist() if n.startswith("crops/"))[1]
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == victim:
                data = data[:-20] + bytes([data[-20] ^ 0xFF]) + data[-19:]
            zout.writestr(info, data)
    with pytest.raises(LibraryError, match=f"crop {victim} does not match its checksum"):
        read_library_file(bad)
    s = create_store("memory")
    with pytest.raises(LibraryError):
        import_library(s, bad)
    assert s.list_libraries() == []
    import_library(s, src)  # the intact file imports
    assert s.count("lib") == 3


def test_a_zip_bomb_is_refused_from_its_directory(tmp_path):
    src = _export_with_crops(tmp_path)
    bomb = tmp_path / "bomb.samlib.zip"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
        zout.writestr("padding.bin", b"\0" * (64 * 2**20))  # 64 MiB of zeros: ~64 KB packed
    assert bomb.stat().st_size < 2**20
    with pytest.raises(LibraryError, match=r"padding.bin expands .*-fold .*zip bomb"):
        read_library_file(bomb)
    r = _cli("library", "import", str(bomb), "--as", "x", "--store", "memory",
             "--library-path", str(tmp_path / "m"))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "zip bomb" in r.stderr


def test_too_many_members_are_refused(tmp_path, monkeypatch):
    import sam_detect.store.exchange as ex

    src = _export_with_crops(tmp_path)
    monkeypatch.setattr(ex, "MAX_MEMBERS", 4)
    with pytest.raises(LibraryError, match=r"6 members \(at most 4\)"):
        read_library_file(src)


# -- shared access -----------------------------------------------------------------------------


def test_a_check_of_a_library_another_process_holds_says_in_use_not_damaged(tmp_path):
    """``library check`` while another process writes: the lock's one line, not "damaged"
    with advice to repair a library that is only busy."""
    from sam_detect.errors import LibraryLockedError
    from sam_detect.store.edge import EdgeStore
    from sam_detect.store.integrity import check_library

    holder = EdgeStore(tmp_path)
    holder.create_library(_meta("nuclei"))
    holder.add("nuclei", _vecs(2), ["a", "b"])  # holds the lock now
    other = EdgeStore(tmp_path)
    try:
        with pytest.raises(LibraryLockedError, match="already open in this process"):
            check_library(other, "nuclei")  # another store of this process: said so, not "another process"
        holder.release()
        assert check_library(other, "nuclei").ok  # released: whole
    finally:
        other.close()
        holder.close()


def test_a_locked_library_fails_before_any_model_loads(tmp_path):
    """Another process (here: another open of the folder) holds the library: detect's
    library check fails at once, naming the holder, with no embedder built."""
    from sam_detect.errors import LibraryLockedError
    from sam_detect.pipeline import DetectorConfig, SAMDetect
    from sam_detect.store.edge import EdgeStore

    holder = EdgeStore(tmp_path)
    holder.create_library(_meta("nuclei"))
    holder.add("nuclei", _vecs(2), ["a", "b"])  # holds the lock now
    other = EdgeStore(tmp_path)
    det = SAMDetect(DetectorConfig(library="nuclei", embedder="effnet"), store=other)
    try:
        with pytest.raises(LibraryLockedError, match=r"already open in this process \(another SAMDetect or store "
                                                     r"on the same folder\); close that one first"):
            det.check_library(create=False)
        assert det._embedder is None  # nothing expensive was built
        holder.release()
        assert other.count("nuclei") == 2  # released: the other one reads it
    finally:
        other.close()
        holder.close()


def test_a_refused_second_open_leaves_the_first_holders_writes_working(tmp_path):
    """A second store of this process opening a library the first holds is refused before the
    engine's load touches the files: that refused load used to leave the first holder's
    journal short ("Tracker journal ... is shorter than expected") and its next add failed
    with a bare engine error."""
    from sam_detect.errors import LibraryLockedError
    from sam_detect.store.edge import EdgeStore

    first = EdgeStore(tmp_path)
    first.create_library(_meta("nuclei"))
    first.add("nuclei", _vecs(1), ["a"])
    second = EdgeStore(tmp_path)
    try:
        for _ in range(2):
            with pytest.raises(LibraryLockedError, match="already open in this process"):
                second.add("nuclei", _vecs(1, seed=1), ["b"])
        first.add("nuclei", _vecs(1, seed=2), ["c"])  # the holder writes on
        assert first.count("nuclei") == 2
        first.close()
        assert second.count("nuclei") == 2  # let go: the other store opens it, whole
    finally:
        second.close()
        first.close()


def test_two_writers_of_one_memory_store_file_lose_nothing(tmp_path):
    """Two ``add``s into one ``--store memory`` file at once each read the file, added, and
    replaced it: the last one dropped the other's example while both said "added". The second
    writer now finds the file changed since it read it and refuses, writing nothing; the file
    keeps the first one's example, and a run again adds the second."""
    from sam_detect.errors import LibraryLockedError
    from sam_detect.store.memory import MemoryStore

    path = tmp_path / "lib.npz"
    seed = MemoryStore(path)
    seed.create_library(_meta("coins"))
    seed.add("coins", _vecs(1), ["coin"])
    first, second = MemoryStore(path), MemoryStore(path)  # two processes, each having read the file
    first.add("coins", _vecs(1, seed=1), ["coin"])
    with pytest.raises(LibraryLockedError, match="was changed by another process since this one read it"):
        second.add("coins", _vecs(1, seed=2), ["coin"])
    # "run it again" is a new process on the command line; in Python the same store object keeps
    # refusing (it holds the file as it was), and the message says to open it again
    with pytest.raises(LibraryLockedError, match="from Python: with the store opened again"):
        second.add("coins", _vecs(1, seed=2), ["coin"])
    assert MemoryStore(path).count("coins") == 2  # the first one's add kept
    again = MemoryStore(path)
    again.add("coins", _vecs(1, seed=2), ["coin"])
    assert MemoryStore(path).count("coins") == 3 and check_library(MemoryStore(path), "coins").ok
    assert not list(tmp_path.glob("*.tmp"))


def test_a_released_store_reads_again_what_another_process_changed(tmp_path):
    """The UI's store lets go of a library after each request; what it had read of it is read
    again then. An add by another process between two requests made the UI write its old
    example count back ("damaged: 2 examples readable, the last write left 1"), and a library
    deleted meanwhile was said to be on a read-only disk."""
    from sam_detect.errors import LibraryNotFoundError
    from sam_detect.store.edge import EdgeStore
    from sam_detect.store.integrity import check_library

    ui = EdgeStore(tmp_path)
    ui.create_library(_meta("nuclei"))
    ui.add("nuclei", _vecs(1), ["a"])
    ui.release()
    cli = EdgeStore(tmp_path)
    cli.add("nuclei", _vecs(1, seed=1), ["b"])
    cli.close()
    ui.update_extra("nuclei", "decision", {"k": 1})  # the UI's next request writes its metadata
    assert ui.count("nuclei") == 2
    ui.release()
    checker = EdgeStore(tmp_path)
    assert check_library(checker, "nuclei").ok
    checker.delete_library("nuclei")
    checker.close()
    with pytest.raises(LibraryNotFoundError, match="no library 'nuclei'"):
        ui.count("nuclei")
    assert not ui.has_library("nuclei")
    ui.close()


def test_an_add_stopped_after_its_examples_before_their_settings_is_rebuilt_on_the_next_use(tmp_path, monkeypatch,
                                                                                               caplog):
    """Ctrl-C, SIGTERM or a kill late in an ``add`` (or ``import --merge``) left the examples
    stored and the profile and decision of the library before them: `check` said ok, an
    ``add`` run again added nothing and rebuilt nothing, and detect found other objects. The
    settings now record how many examples they were made from: `check` names the difference,
    and the next use (or `repair`) rebuilds them."""
    from conftest import dots_on_a_plateau, run_cli

    from sam_detect import Instances, SAMDetect
    from sam_detect.library_state import LibraryState

    img, on, off = dots_on_a_plateau()
    lib = str(tmp_path / "libs")
    det = SAMDetect(store="edge", store_options={"path": lib}, segmenter="classical", embedder="handcrafted",
                    library="dots")
    det.add_examples(img, Instances(masks=off[:3]), ["dot"] * 3)
    full = SAMDetect(store="memory", segmenter="classical", embedder="handcrafted", library="dots")
    full.add_examples(img, Instances(masks=off[:3]), ["dot"] * 3)
    full.add_examples(img, Instances(masks=on[:3]), ["ring"] * 3)
    want = full.decision

    def stopped(self):
        raise KeyboardInterrupt

    with monkeypatch.context() as m, caplog.at_level("WARNING", logger="sam_detect"):
        m.setattr(LibraryState, "refresh_profile", stopped)
        with pytest.raises(KeyboardInterrupt):
            det.add_examples(img, Instances(masks=on[:3]), ["ring"] * 3)
    assert "interrupted after the 3 example(s) were stored" in caplog.text
    det.close()
    store = create_store("edge", path=lib)
    rep = check_library(store, "dots")
    assert not rep.ok and "made from 3 examples, it holds 6" in " ".join(rep.problems)
    store.close()
    again = SAMDetect(store="edge", store_options={"path": lib}, segmenter="classical", embedder="handcrafted",
                      library="dots")
    assert again.decision["counts"] == {"dot": 3, "ring": 3}  # rebuilt on this use
    assert again.decision["classes"]["ring"]["sims"] == pytest.approx(want["classes"]["ring"]["sims"])
    again.close()
    r = run_cli("library", "check", "dots", "--library-path", lib)
    assert r.exit_code == 0 and "ok (6 examples" in r.output
