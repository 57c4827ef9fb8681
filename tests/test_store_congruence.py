"""Congruence: the same adds, deletes and queries give the same labels, neighbours and scores
on every backend — numpy memory, the client's local mode (":memory:" and a folder), Qdrant
Edge, and a real Qdrant server (testcontainers; skipped with the reason when no Docker engine).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid

import numpy as np
import pytest
from conftest import QDRANT_API_KEY as API_KEY
from conftest import docker_missing

from sam_detect.errors import LibraryNotFoundError
from sam_detect.store import create_store
from sam_detect.store.base import LibraryMeta

DOCKER_MISSING = docker_missing()
needs_docker = pytest.mark.skipif(
    DOCKER_MISSING is not None, reason=f"Qdrant server tests need Docker: {DOCKER_MISSING}"
)


BACKENDS = [
    "qdrant-memory",
    pytest.param("qdrant-local", marks=pytest.mark.slow),
    "edge",
    pytest.param("qdrant-server", marks=[needs_docker, pytest.mark.docker]),
]


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path):
    kind = request.param
    if kind == "qdrant-memory":
        s = create_store("qdrant", location=":memory:")
    elif kind == "qdrant-local":
        s = create_store("qdrant", path=tmp_path / "q")
    elif kind == "edge":
        s = create_store("edge", path=tmp_path / "e")
    else:
        url = request.getfixturevalue("qdrant_server")
        s = create_store("qdrant", url=url, api_key=API_KEY)
    yield s
    for name in s.list_libraries():
        s.delete_library(name)
    s.close()


def dataset(kind: str, n: int, dim: int, seed: int):
    """Vectors, labels, payloads and ids. ``clustered``: 4 classes around their own centres
    (like embeddings of 4 object kinds); ``uniform``: directions at random."""
    rng = np.random.default_rng(seed)
    classes = ["nucleus", "debris", "mitosis", "__negative__"]
    labels = [classes[i % 4] for i in range(n)]
    if kind == "clustered":
        centres = rng.normal(size=(4, dim))
        vecs = np.stack([centres[i % 4] + 0.6 * rng.normal(size=dim) for i in range(n)])
    else:
        vecs = rng.normal(size=(n, dim))
    payloads = [
        {"source": f"frame{i % 7}.tif", "box": [float(i), 1.0, i + 10.5, 12.0], "area": 100 + i}
        for i in range(n)
    ]
    ids = [str(uuid.UUID(int=rng.integers(0, 2**63) << 64 | i)) for i in range(n)]
    return vecs.astype(np.float32), labels, payloads, ids


def run_scenario(store, kind: str, dim: int = 48, n: int = 240):
    vecs, labels, payloads, ids = dataset(kind, n, dim, seed=7)
    meta = LibraryMeta(
        name="cong",
        embedder_id="fake",
        dim=dim,
        fade={"name": "gaussian", "sigma": 20.0},
        created="2026-01-01T00:00:00+00:00",
    )
    store.create_library(meta)
    for s in range(0, n, 100):  # several adds, like several annotated images
        store.add(
            "cong",
            vecs[s : s + 100],
            labels[s : s + 100],
            payloads[s : s + 100],
            ids=ids[s : s + 100],
        )
    queries = np.random.default_rng(11).normal(size=(30, dim)).astype(np.float32)
    if kind == "clustered":
        queries = vecs[::8] + 0.3 * np.random.default_rng(12).normal(size=(n // 8, dim)).astype(
            np.float32
        )
    out = {
        "meta": store.get_meta("cong").to_dict(),
        "count0": store.count("cong"),
        "labels0": store.labels("cong"),
    }
    out["search0"] = store.search("cong", queries, 7)
    out["search0_bare"] = store.search("cong", queries, 7, with_payload=False)
    out["deleted_label"] = store.delete("cong", label="debris")
    out["deleted_ids"] = store.delete("cong", ids=ids[:40] + [str(uuid.uuid4())])
    out["labels1"] = store.labels("cong")
    out["search1"] = store.search("cong", queries, 7)
    out["big_k"] = [len(r) for r in store.search("cong", queries[:3], 1000)]
    out["all"] = sorted(i for b in store.iter_examples("cong") for i in b[0])
    return out


@pytest.mark.parametrize("kind", ["uniform", "clustered"])
def test_backends_agree_with_the_numpy_reference(backend, kind):
    ref = run_scenario(create_store("memory"), kind)
    got = run_scenario(backend, kind)
    for key in (
        "meta",
        "count0",
        "labels0",
        "deleted_label",
        "deleted_ids",
        "labels1",
        "big_k",
        "all",
    ):
        assert got[key] == ref[key], key
    for key in ("search0", "search1"):
        for r_row, g_row in zip(ref[key], got[key], strict=True):
            assert [n.id for n in g_row] == [n.id for n in r_row]
            assert [n.label for n in g_row] == [n.label for n in r_row]
            assert [n.payload for n in g_row] == [n.payload for n in r_row]
            np.testing.assert_allclose(
                [n.score for n in g_row], [n.score for n in r_row], atol=2e-5
            )
    # without payloads: the same neighbours, labels and scores, and nothing else
    for r_row, g_row, bare, r_bare in zip(ref["search0"], got["search0"], got["search0_bare"],
                                          ref["search0_bare"], strict=True):
        assert [(n.id, n.label) for n in bare] == [(n.id, n.label) for n in r_row]
        assert [(n.id, n.label) for n in r_bare] == [(n.id, n.label) for n in r_row]
        assert [n.payload for n in bare] == [n.payload for n in r_bare] == [{}] * len(r_row)
        assert all(n.payload for n in g_row)  # the plain search still carries them
        np.testing.assert_allclose([n.score for n in bare], [n.score for n in g_row], atol=1e-6)
    assert ref["count0"] == 240 and ref["big_k"] == [
        150,
        150,
        150,
    ]  # 240 - 60 debris - 30 others by id


# -- server specifics (run where Docker is) ------------------------------------------------------


@needs_docker
@pytest.mark.docker
def test_server_refuses_a_wrong_key_in_one_line(qdrant_server):
    from sam_detect.store._common import StoreConnectionError

    with pytest.raises(
        StoreConnectionError, match=r"refused the request \(HTTP 40[13].*check the API key"
    ):
        create_store("qdrant", url=qdrant_server, api_key="wrong")


@needs_docker
@pytest.mark.docker
def test_server_has_payload_indexes_on_label_and_source(qdrant_server):
    s = create_store("qdrant", url=qdrant_server, api_key=API_KEY)
    try:
        s.create_library(LibraryMeta(name="idx", embedder_id="fake", dim=4))
        schema = s._client.get_collection("idx").payload_schema
        assert {"label", "source"} <= set(schema)
    finally:
        s.delete_library("idx")
        s.close()


_WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from sam_detect.store.qdrant import QdrantStore
    s = QdrantStore(url=sys.argv[1], api_key=sys.argv[2])
    rng = np.random.default_rng(int(sys.argv[3]))
    for _ in range(10):
        s.add("shared", rng.normal(size=(25, 8)), [sys.argv[4]] * 25)
    s.close()
    """
)


@needs_docker
@pytest.mark.docker
@pytest.mark.slow
def test_two_processes_adding_to_one_server_library_lose_nothing(qdrant_server):
    s = create_store("qdrant", url=qdrant_server, api_key=API_KEY)
    s.create_library(LibraryMeta(name="shared", embedder_id="fake", dim=8))
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _WRITER, qdrant_server, API_KEY, str(i), f"writer{i}"]
            )
            for i in range(2)
        ]
        assert [p.wait(timeout=300) for p in procs] == [0, 0]
        assert s.labels("shared") == {"writer0": 250, "writer1": 250}
    finally:
        s.delete_library("shared")
        s.close()


@pytest.mark.parametrize("kind", ["memory", "qdrant-local", "edge"])
def test_update_extra_persists_and_removes(kind, tmp_path):
    from sam_detect.store.base import LibraryMeta

    def open_store():
        if kind == "memory":
            return create_store("memory")
        return create_store("qdrant" if kind == "qdrant-local" else "edge", path=tmp_path / "s")

    s = open_store()
    s.create_library(LibraryMeta(name="lib", embedder_id="e", dim=4, extra={"keep": 1}))
    s.update_extra("lib", "profile", {"classes": {"a": [1.5, 2]}})
    assert s.get_meta("lib").extra == {"keep": 1, "profile": {"classes": {"a": [1.5, 2]}}}
    if kind != "memory":
        s.close()
        s = open_store()
        assert s.get_meta("lib").extra["profile"] == {"classes": {"a": [1.5, 2]}}
    s.update_extra("lib", "profile", None)
    assert s.get_meta("lib").extra == {"keep": 1}
    with pytest.raises(LibraryNotFoundError):
        s.update_extra("nope", "profile", {})
    s.close()


@pytest.mark.parametrize("kind", ["memory", "qdrant-local", "edge"])
def test_update_payloads_sets_keys_keeps_the_rest_and_persists(kind, tmp_path):
    """An example's shape measured again is written over its payload's key alone: its other
    keys, vector and label stay; ids the library does not hold are ignored; on disk it stays."""
    from sam_detect.cluster import LibraryReadOnlyError, ReadOnlyStore

    def open_store():
        if kind == "memory":
            return create_store("memory", path=tmp_path / "m.npz")
        return create_store("qdrant" if kind == "qdrant-local" else "edge", path=tmp_path / "s")

    s = open_store()
    s.create_library(LibraryMeta(name="lib", embedder_id="e", dim=4))
    vecs = np.eye(4, dtype=np.float32)[:3]
    ids = s.add("lib", vecs, ["a", "b", "a"], [{"shape": {"area": k}, "source": f"s{k}"} for k in range(3)])
    n = s.update_payloads("lib", {ids[0]: {"shape": {"area": 10}}, ids[2].upper(): {"shape": {"area": 12}, "new": 1},
                                  str(uuid.uuid4()): {"shape": {}}})
    assert n == 2
    s.close()
    s = open_store()
    got = {i: (lab, pay, vec) for batch in s.iter_examples("lib")
           for i, vec, lab, pay in zip(batch[0], batch[1], batch[2], batch[3], strict=True)}
    assert got[ids[0]][1] == {"shape": {"area": 10}, "source": "s0"}
    assert got[ids[1]][1] == {"shape": {"area": 1}, "source": "s1"}
    assert got[ids[2]][1] == {"shape": {"area": 12}, "source": "s2", "new": 1}
    assert [got[i][0] for i in ids] == ["a", "b", "a"]
    np.testing.assert_allclose(np.stack([got[i][2] for i in ids]), vecs)
    assert s.update_payloads("lib", {}) == 0
    with pytest.raises(ValueError, match="not labels"):  # the server and Edge keep the label in the payload
        s.update_payloads("lib", {ids[0]: {"label": "b"}})
    with pytest.raises(LibraryNotFoundError):
        s.update_payloads("nope", {ids[0]: {"shape": {}}})
    with pytest.raises(LibraryReadOnlyError):
        ReadOnlyStore(s).update_payloads("lib", {ids[0]: {"shape": {}}})
    s.close()
