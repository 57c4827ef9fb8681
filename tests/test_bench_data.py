"""The benchmark data helpers that need no download: tiling a labelled image, reading WKB polygons."""

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
