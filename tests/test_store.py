"""Contract tests: every store backend obeys the Store protocol the same way."""

from __future__ import annotations

import uuid
import warnings

import numpy as np
import pytest

from sam_detect.errors import EmbedderMismatchError, LibraryError, LibraryNotFoundError
from sam_detect.instances import NEGATIVE
from sam_detect.store import STORES, LibraryMeta, Neighbour, Store, create_store, list_stores
from sam_detect.store._common import LibrarySizeWarning, warn_if_large

DIM = 16


def _has_edge() -> bool:
    try:
        import qdrant_edge  # noqa: F401
    except ImportError:
        return False
    return True


BACKENDS = [
    "memory",
    "memory-file",
    "qdrant-memory",
    "qdrant-local",
    pytest.param(
        "edge", marks=pytest.mark.skipif(not _has_edge(), reason="qdrant-edge-py not installed")
    ),
]


def open_store(kind: str, tmp_path) -> Store:
    if kind == "memory":
        return create_store("memory")
    if kind == "memory-file":
        return create_store("memory", path=tmp_path / "lib.npz")
    if kind == "qdrant-memory":
        return create_store("qdrant", location=":memory:")
    if kind == "qdrant-local":
        return create_store("qdrant", path=tmp_path / "qdrant")
    if kind == "edge":
        return create_store("edge", path=tmp_path / "edge")
    raise AssertionError(kind)


@pytest.fixture(params=BACKENDS)
def kind(request):
    return request.param


@pytest.fixture
def store(kind, tmp_path):
    s = open_store(kind, tmp_path)
    yield s
    s.close()


def meta(name="lib", dim=DIM, **kw) -> LibraryMeta:
    return LibraryMeta(
        name=name,
        embedder_id="fake-embedder",
        dim=dim,
        fade={"name": "gaussian", "sigma": 30.0},
        **kw,
    )


def data(n=40, dim=DIM, seed=0):
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    labels = [("cell", "blob", NEGATIVE)[i % 3] for i in range(n)]
    payloads = [{"source": f"img{i % 4}.tif", "box": [i, i, i + 5, i + 7]} for i in range(n)]
    return vecs, labels, payloads


def brute_force(vecs, queries, k):
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    s = q @ vecs.T
    return np.argsort(-s, axis=1, kind="stable")[:, :k], np.sort(s, axis=1)[:, ::-1][:, :k]


def test_registry_lists_every_backend():
    assert {"memory", "qdrant", "edge"} <= set(list_stores())
    with pytest.raises(ValueError, match="valid names: edge, memory, qdrant"):
        STORES.create("nope")


def test_store_satisfies_protocol(store):
    assert isinstance(store, Store)
    assert isinstance(store.backend, str) and store.backend


def test_create_get_list_delete_library(store):
    assert store.list_libraries() == []
    assert not store.has_library("lib")
    m = meta(crop={"occupancy": 0.2}, extra={"note": "x"})
    store.create_library(m)
    assert store.has_library("lib")
    assert store.list_libraries() == ["lib"]
    got = store.get_meta("lib")
    assert got.to_dict() == m.to_dict()
    store.create_library(meta("other"))
    assert store.list_libraries() == ["lib", "other"]
    with pytest.raises(LibraryError, match="already exists"):
        store.create_library(meta("lib"))
    store.delete_library("lib")
    assert store.list_libraries() == ["other"]
    assert not store.has_library("lib")


def test_missing_library_names_the_existing_ones(store):
    store.create_library(meta("nuclei"))
    store.create_library(meta("coins"))
    for call in (
        lambda: store.get_meta("cells"),
        lambda: store.count("cells"),
        lambda: store.search("cells", np.ones((1, DIM)), 3),
        lambda: store.delete_library("cells"),
        lambda: store.add("cells", np.ones((1, DIM)), ["a"]),
    ):
        with pytest.raises(LibraryNotFoundError) as exc:
            call()
        assert "no library 'cells'" in str(exc.value)
        assert "available: coins, nuclei" in str(exc.value)


@pytest.mark.parametrize("bad", ["", "_meta", "a/b", "x" * 65, "has space", None, 3])
def test_invalid_library_names_are_refused(store, bad):
    with pytest.raises(ValueError, match="invalid library name"):
        store.create_library(LibraryMeta(name=bad, embedder_id="e", dim=4))


def test_add_search_matches_brute_force(store):
    vecs, labels, payloads = data()
    store.create_library(meta())
    ids = store.add("lib", vecs, labels, payloads)
    assert len(ids) == len(vecs) and len(set(ids)) == len(ids)
    assert all(str(uuid.UUID(i)) == i for i in ids)
    queries = np.random.default_rng(1).normal(size=(9, DIM))
    res = store.search("lib", queries, top_k=5)
    want_idx, want_score = brute_force(vecs, queries, 5)
    assert len(res) == 9
    for row, wi, ws in zip(res, want_idx, want_score, strict=True):
        assert [n.id for n in row] == [ids[j] for j in wi]
        assert [n.label for n in row] == [labels[j] for j in wi]
        np.testing.assert_allclose([n.score for n in row], ws, atol=1e-5)
        assert all(isinstance(n, Neighbour) for n in row)
        assert row[0].payload == payloads[wi[0]]
        assert "label" not in row[0].payload


def test_search_finds_the_example_itself(store):
    vecs, labels, payloads = data()
    store.create_library(meta())
    ids = store.add("lib", vecs, labels, payloads)
    res = store.search("lib", vecs * 3.0, top_k=1)  # unnormalised queries are fine
    assert [r[0].id for r in res] == ids
    np.testing.assert_allclose([r[0].score for r in res], 1.0, atol=1e-5)


def test_changing_a_search_result_leaves_the_library_as_it_was(store):
    vecs, labels, payloads = data(6)
    store.create_library(meta())
    store.add("lib", vecs, labels, payloads)
    res = store.search("lib", np.repeat(vecs[:1], 3, axis=0), top_k=6)
    res[0][0].payload["box"].append(99)
    res[0][0].payload["source"] = "changed"
    again = store.search("lib", vecs[:1], top_k=1)[0][0]
    assert again.payload == payloads[0]
    assert res[1][0].payload == payloads[0]  # nor the other hits of the same call


def test_search_edge_cases(store):
    store.create_library(meta())
    assert store.search("lib", np.ones((3, DIM)), 4) == [[], [], []]
    vecs, labels, _ = data(n=3)
    store.add("lib", vecs, labels)
    res = store.search("lib", np.ones((2, DIM)), 10)
    assert [len(r) for r in res] == [3, 3]
    assert store.search("lib", np.zeros((0, DIM)), 3) == []
    res1 = store.search("lib", vecs[0], 1)  # one (D,) query
    assert len(res1) == 1 and res1[0][0].label == labels[0]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="top_k"):
            store.search("lib", vecs, bad)


def test_wrong_dimension_is_an_embedder_mismatch(store):
    store.create_library(meta())
    with pytest.raises(EmbedderMismatchError, match="holds 16-d vectors, got vectors of size 8"):
        store.add("lib", np.ones((2, 8)), ["a", "b"])
    with pytest.raises(EmbedderMismatchError, match="got queries of size 32"):
        store.search("lib", np.ones((2, 32)), 3)


@pytest.mark.parametrize(
    ("vectors", "labels", "payloads", "match"),
    [
        (np.ones((2, DIM)), ["a"], None, "2 vectors but 1 labels"),
        (np.ones((2, DIM)), "ab", None, "not a single string"),
        (np.ones((2, DIM)), ["a", ""], None, r"labels\[1\] must be a non-empty string"),
        (np.ones((2, DIM)), ["a", "b"], [{}], "2 vectors but 1 payloads"),
        (np.ones((2, DIM)), ["a", "b"], [{}, {"label": "c"}], "which the store sets itself"),
        (np.ones((2, DIM)), ["a", "b"], [{}, {"f": object()}], "not JSON-serialisable"),
        (np.full((2, DIM), np.nan), ["a", "b"], None, "NaN"),
        (np.zeros((2, DIM)), ["a", "b"], None, "all zeros"),
        (np.ones((2, 2, DIM)), ["a", "b"], None, r"\(N, D\) array"),
    ],
)
def test_bad_add_is_refused_and_changes_nothing(store, vectors, labels, payloads, match):
    store.create_library(meta())
    store.add("lib", np.ones((1, DIM)), ["first"])
    with pytest.raises(ValueError, match=match):
        store.add("lib", vectors, labels, payloads)
    assert store.count("lib") == 1
    assert store.labels("lib") == {"first": 1}


def test_numpy_payload_values_become_json(store):
    store.create_library(meta())
    p = {"box": np.array([1, 2, 3, 4], np.int64), "area": np.float32(2.5), "pt": (1, 2)}
    store.add("lib", np.ones((1, DIM)), ["a"], [p])
    n = store.search("lib", np.ones((1, DIM)), 1)[0][0]
    assert n.payload == {"box": [1, 2, 3, 4], "area": 2.5, "pt": [1, 2]}


def test_add_with_given_ids_keeps_them_and_refuses_duplicates(store):
    vecs, labels, _ = data(n=4)
    store.create_library(meta())
    ids = [str(uuid.uuid4()) for _ in range(4)]
    assert store.add("lib", vecs, labels, ids=ids) == ids
    with pytest.raises(LibraryError, match="already holds"):
        store.add("lib", vecs[:1], labels[:1], ids=ids[:1])
    assert store.count("lib") == 4
    with pytest.raises(ValueError, match="UUID"):
        store.add("lib", vecs[:1], labels[:1], ids=["not-a-uuid"])


def test_labels_count_and_delete(store):
    vecs, labels, _ = data(n=30)
    store.create_library(meta())
    ids = store.add("lib", vecs, labels)
    assert store.count("lib") == 30
    assert store.labels("lib") == {NEGATIVE: 10, "blob": 10, "cell": 10}
    assert store.delete("lib", label="blob") == 10
    assert store.delete("lib", label="blob") == 0
    assert store.labels("lib") == {NEGATIVE: 10, "cell": 10}
    cells = [i for i, lab in zip(ids, labels, strict=True) if lab == "cell"]
    assert store.delete("lib", ids=cells[:3] + [str(uuid.uuid4())]) == 3
    assert store.count("lib") == 17
    res = store.search("lib", vecs, 30)
    assert not {n.id for row in res for n in row} & set(cells[:3])
    with pytest.raises(ValueError, match="exactly one of"):
        store.delete("lib")
    with pytest.raises(ValueError, match="exactly one of"):
        store.delete("lib", ids=cells, label="cell")


def test_libraries_are_independent(store):
    store.create_library(meta("a"))
    store.create_library(meta("b", dim=8))
    store.add("a", np.ones((2, DIM)), ["x", "x"])
    store.add("b", np.ones((3, 8)), ["y", "y", "z"])
    assert store.labels("a") == {"x": 2}
    assert store.labels("b") == {"y": 2, "z": 1}
    store.delete_library("a")
    assert store.count("b") == 3


def test_iter_examples_returns_everything(store):
    vecs, labels, payloads = data(n=25)
    store.create_library(meta())
    ids = store.add("lib", vecs, labels, payloads)
    got = {}
    for bids, bvecs, blabs, bpays in store.iter_examples("lib", batch_size=7):
        assert bvecs.shape == (len(bids), DIM) and bvecs.dtype == np.float32
        for i, v, lab, p in zip(bids, bvecs, blabs, bpays, strict=True):
            got[i] = (v, lab, p)
    assert set(got) == set(ids)
    for i, v, lab, p in zip(ids, vecs, labels, payloads, strict=True):
        np.testing.assert_allclose(got[i][0], v, atol=1e-6)
        assert got[i][1:] == (lab, p)


@pytest.mark.parametrize(
    "kind", ["memory-file", "qdrant-local", pytest.param("edge", marks=BACKENDS[-1].marks)]
)
def test_persistent_backends_reopen_with_everything(kind, tmp_path):
    vecs, labels, payloads = data()
    s = open_store(kind, tmp_path)
    m = meta()
    s.create_library(m)
    ids = s.add("lib", vecs, labels, payloads)
    s.delete("lib", ids=ids[:5])
    before = s.search("lib", vecs[:4], 3)
    s.close()
    s = open_store(kind, tmp_path)
    try:
        assert s.list_libraries() == ["lib"]
        got = s.get_meta("lib").to_dict()
        assert got["extra"].pop("_count") == s.count("lib")  # bookkeeping: the last write's count
        assert got == m.to_dict()
        assert s.count("lib") == 35
        after = s.search("lib", vecs[:4], 3)
        assert [[(n.id, n.label, n.payload) for n in r] for r in after] == [
            [(n.id, n.label, n.payload) for n in r] for r in before
        ]
    finally:
        s.close()


def test_size_warning_names_a_better_backend():
    warned: set[str] = set()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        warn_if_large("qdrant-local", "big", 20_001, warned)
        warn_if_large("qdrant-local", "big", 20_002, warned)  # once per library
        warn_if_large("qdrant-local", "small", 100, warned)
    assert len(w) == 1 and issubclass(w[0].category, LibrarySizeWarning)
    assert "'big' holds 20,001 examples" in str(w[0].message)
    assert "edge" in str(w[0].message)


def test_store_can_be_used_from_another_thread(store):
    """The UI serves requests from worker threads with one store."""
    import threading

    vecs, labels, _ = data(n=10)
    store.create_library(meta())
    errors, results = [], []

    def work():
        try:
            store.add("lib", vecs, labels)
            results.append(store.search("lib", vecs[:2], 1))
        except Exception as e:  # pragma: no cover - the assertion below reports it
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count("lib") == 30
    assert [r[0][0].label for r in results] == [labels[0]] * 3


def test_add_warns_once_when_a_library_outgrows_its_backend(store, monkeypatch):
    import sam_detect.store._common as common

    monkeypatch.setitem(common.SIZE_LIMITS, store.backend, (5, "something bigger"))
    store.create_library(meta())
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        store.add("lib", np.ones((5, DIM)), ["a"] * 5)  # at the limit: fine
        assert w == []
        store.add("lib", np.ones((1, DIM)), ["a"])
        store.add("lib", np.ones((1, DIM)), ["a"])
    msgs = [str(x.message) for x in w if issubclass(x.category, LibrarySizeWarning)]
    assert msgs == [
        f"library 'lib' holds 6 examples; the {store.backend!r} store is meant for up to 5. "
        "Consider something bigger (sam-detect library copy)."
    ]


def test_a_failed_save_leaves_the_memory_store_as_its_file_is(tmp_path, monkeypatch):
    """The memory store's file write failing (a full disk, another process's write, a value
    that is no JSON) left the change in the process's copy for some writes: a delete's
    examples gone (so the journal's retry found nothing and said "deleted 0"), the count a
    later `library check` compares raised, a library made or deleted, and an ``update_extra``
    of a non-JSON value that made every later save of the store fail. Each write now puts its
    change back, as ``add`` already did, as the edge and qdrant stores do."""
    from sam_detect.store import journal
    from sam_detect.store._common import COUNT_KEY
    from sam_detect.store.memory import MemoryStore

    s = create_store("memory", path=tmp_path / "lib.npz")
    s.create_library(meta())
    vecs, labels, _ = data(n=6)
    ids = s.add("lib", vecs, labels)
    real, fail = MemoryStore._save, [0]  # fail[0]: the save that fails, counting from 1 (0: none)

    def flaky(self):
        fail[0] -= 1
        if fail[0] == 0:
            raise OSError(28, "No space left on device")
        return real(self)

    monkeypatch.setattr(MemoryStore, "_save", flaky)
    before = (s.labels("lib"), s.count("lib"), s.get_meta("lib").extra.get(COUNT_KEY))
    for write in (lambda: s.add("lib", vecs[:2], labels[:2]), lambda: s.delete("lib", ids=ids[:2]),
                  lambda: s.delete("lib", label="cell"), lambda: s.update_extra("lib", "k", 1),
                  lambda: s.delete_library("lib"), lambda: s.create_library(meta("other"))):
        fail[0] = 1
        with pytest.raises(OSError, match="No space"):
            write()
        assert s.list_libraries() == ["lib"]
        assert (s.labels("lib"), s.count("lib"), s.get_meta("lib").extra.get(COUNT_KEY)) == before
        assert "k" not in s.get_meta("lib").extra
    fail[0] = 2  # the delete's own save, after the journal's: its one retry deletes them, and counts them
    assert journal.delete(s, "lib", ids=ids[:2]) == 2 and s.count("lib") == 4
    with pytest.raises(TypeError, match="JSON"):
        s.update_extra("lib", "k", object())
    s.update_extra("lib", "k", {"v": 1})  # the store still saves
    s.close()
    again = create_store("memory", path=tmp_path / "lib.npz")
    assert again.count("lib") == 4 and again.get_meta("lib").extra["k"] == {"v": 1}
    again.close()
