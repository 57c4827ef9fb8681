"""All or nothing, even when the process is killed: the add journal and half imports (Edge store)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from sam_detect.errors import LibraryNotFoundError
from sam_detect.store._common import IMPORTING_KEY, PENDING_KEY
from sam_detect.store.base import LibraryMeta
from sam_detect.store.edge import EdgeStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import crash_kills  # noqa: E402


def _vectors(n, seed=0, dim=8):
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def lib(tmp_path):
    with EdgeStore(tmp_path) as store:
        store.create_library(LibraryMeta(name="lib", embedder_id="test", dim=8))
        store.add("lib", _vectors(5), ["a"] * 5)
    return tmp_path


def test_a_complete_add_leaves_no_journal(lib):
    with EdgeStore(lib) as store:
        store.add("lib", _vectors(3, 1), ["b"] * 3)
        assert PENDING_KEY not in store.get_meta("lib").extra
        assert store.count("lib") == 8


def test_an_add_left_half_written_is_undone_when_the_library_is_next_opened(lib, caplog):
    # what a killed add leaves: its journal, and some of its points
    with EdgeStore(lib) as store:
        ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(4)]
        # an open transaction keeps the journal, as a kill would; it lists all 4, 2 are written
        store._txn["lib"] = list(ids[2:])
        store.add("lib", _vectors(2, 2), ["c"] * 2, ids=ids[:2])
        assert sorted(store.get_meta("lib").extra[PENDING_KEY]["ids"]) == ids
        store._txn.pop("lib")
    with EdgeStore(lib) as store:
        with caplog.at_level("WARNING", logger="sam_detect"):
            assert store.count("lib") == 5
        assert "interrupted add of 4 example(s) was undone (2 had been written)" in caplog.text
        assert PENDING_KEY not in store.get_meta("lib").extra
        assert store.labels("lib") == {"a": 5}


def test_a_transaction_is_one_add(lib):
    with EdgeStore(lib) as store:
        with pytest.raises(RuntimeError, match="boom"):
            with store.transaction("lib"):
                store.add("lib", _vectors(3, 3), ["b"] * 3)
                store.add("lib", _vectors(3, 4), ["b"] * 3)
                raise RuntimeError("boom")
        assert store.count("lib") == 5
        with store.transaction("lib"):
            store.add("lib", _vectors(3, 3), ["b"] * 3)
            assert store.get_meta("lib").extra[PENDING_KEY]["ids"]  # journaled while open
        assert store.count("lib") == 8 and PENDING_KEY not in store.get_meta("lib").extra


def test_a_half_imported_library_is_removed_and_can_be_imported_again(lib, tmp_path):
    with EdgeStore(lib) as store:
        store.create_library(LibraryMeta(name="half", embedder_id="test", dim=8,
                                         extra={IMPORTING_KEY: "x.sdlib"}))
        store.add("half", _vectors(3), ["a"] * 3)  # this process's own import: kept
        assert store.count("half") == 3
    with EdgeStore(lib) as store:
        with pytest.raises(LibraryNotFoundError):
            store.count("half")
        assert store.list_libraries() == ["lib"]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["add", "import", "merge"])
def test_killed_writes_leave_all_or_nothing(tmp_path, mode):
    """A real child process, SIGKILLed at seeded moments (scripts/crash_kills.py runs 50 per mode)."""
    export = crash_kills.make_export(tmp_path)
    crash_kills.make_base(tmp_path / "timing")
    _, duration = crash_kills.run_child(mode, tmp_path / "timing", export, None)
    outcomes = [crash_kills.trial(mode, seed, tmp_path, export, duration)["outcome"] for seed in range(2)]
    assert set(outcomes) <= {"none", "all"}, outcomes
