"""Tiling helpers (even windows, cores, merging label-image tiles) and the --tile-size option."""

from __future__ import annotations

import itertools

import click
import numpy as np
import pytest
from conftest import run_cli

from sam_detect.segment.tiling import (
    TileMask,
    mark_cut,
    merge_tiled,
    tile_cores,
    tile_windows,
)


@pytest.mark.parametrize(
    ("n", "tile", "overlap"),
    list(itertools.product([100, 700, 1100, 4096, 4097], [64, 256, 2048], [1, 17, 32])),
)
def test_even_windows_cover_overlap_and_are_fewest(n, tile, overlap):
    hw = (n, n + 13)
    wins = tile_windows(hw, tile, overlap, even=True)
    for axis, size in ((0, hw[1]), (1, hw[0])):
        spans = sorted({(w[axis], w[axis + 2]) for w in wins})
        assert spans[0][0] == 0 and spans[-1][1] == size
        assert all(b - a <= tile for a, b in spans)
        assert len({b - a for a, b in spans}) == 1  # all of one size
        assert all(b - c >= overlap for (_, b), (c, _) in zip(spans, spans[1:], strict=False))
        # the fewest: one window less could not cover the side with that overlap
        k = len(spans)
        assert k == 1 or (k - 1) * tile - (k - 2) * overlap < size
    cover = np.zeros(hw, np.int8)
    for (x0, y0, x1, y1), (cx0, cy0, cx1, cy1) in zip(wins, tile_cores(wins, hw), strict=True):
        assert x0 <= cx0 < cx1 <= x1 and y0 <= cy0 < cy1 <= y1
        cover[cy0:cy1, cx0:cx1] += 1
    assert (cover == 1).all()  # the cores partition the image


def test_even_windows_do_less_work_than_aligned_ones():
    aligned = tile_windows((4096, 4096), 2048, 128)
    even = tile_windows((4096, 4096), 2048, 128, even=True)
    area = lambda ws: sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in ws)  # noqa: E731
    assert len(aligned) == len(even) == 9
    assert area(even) < 1.15 * 4096 * 4096 < 2.2 * 4096 * 4096 < area(aligned)


def cut_item(mask: np.ndarray, window, tile: int, hw) -> TileMask:
    x0, y0, x1, y1 = window
    part = np.zeros(hw, bool)
    part[y0:y1, x0:x1] = mask[y0:y1, x0:x1]
    item = TileMask.from_full(part, score=float(part.sum()), tile=tile)
    return mark_cut(item, window, hw)


def test_merge_disjoint_drops_fragments_that_straddle_whole_objects():
    """Tile 0 sees two touching objects whole; tile 1 cuts the pair and, splitting it
    differently, returns a piece that straddles both. Only the disjoint rule drops it."""
    hw = (60, 200)
    t0, t1 = (0, 0, 120, 60), (70, 0, 200, 60)
    left = np.zeros(hw, bool)
    left[20:40, 60:90] = True
    right = np.zeros(hw, bool)
    right[20:40, 90:110] = True
    a = mark_cut(TileMask.from_full(left, score=600.0, tile=0), t0, hw)
    b = mark_cut(TileMask.from_full(right, score=400.0, tile=0), t0, hw)
    straddle = cut_item(left | right, t1, 1, hw)  # columns 70..110: half in each object
    assert not a.cut and not b.cut and straddle.cut
    assert len(merge_tiled([a, b, straddle])) == 3  # each object covers less than half of it
    kept = merge_tiled([a, b, straddle], disjoint=True)
    assert [k.score for k in kept] == [600.0, 400.0]
    # a piece that looks whole in its tile, lying inside an object another tile saw whole
    inner = np.zeros(hw, bool)
    inner[25:35, 95:105] = True
    frag = mark_cut(TileMask.from_full(inner, score=100.0, tile=1), t1, hw)
    assert not frag.cut
    assert len(merge_tiled([a, b, frag])) == 3
    assert len(merge_tiled([a, b, frag], disjoint=True)) == 2


def test_a_seam_cut_piece_kept_beside_a_whole_loses_the_pixels_it_shares_with_trim():
    """A piece cut by tile 1's edge covers a small object of its own and a third of a whole
    object tile 0 saw: under half of it is covered, so it stays, but with ``trim`` only its
    own pixels do (the slide's objects overlapped there)."""
    hw = (60, 200)
    t0, t1 = (0, 0, 120, 60), (70, 0, 200, 60)
    whole = np.zeros(hw, bool)
    whole[20:40, 80:100] = True
    a = mark_cut(TileMask.from_full(whole, score=500.0, tile=0), t0, hw)
    piece = np.zeros(hw, bool)
    piece[20:40, 70:80] = True  # its own part, on tile 1's edge at column 70
    piece[30:40, 80:90] = True  # and a quarter of the whole
    p = cut_item(piece, t1, 1, hw)
    assert not a.cut and p.cut
    loose = merge_tiled([a, p], disjoint=True)
    assert len(loose) == 2 and loose[1].area == 300 and loose[1].intersection(loose[0]) == 100
    kept = merge_tiled([a, p], disjoint=True, trim=True)
    assert len(kept) == 2 and kept[0].area == 400 and kept[1].area == 200
    np.testing.assert_array_equal(kept[1].full(hw), piece & ~whole)
    assert kept[1].cut and kept[1].tile == 1 and kept[1].box == (70, 20, 80, 40)


def test_merge_many_masks_is_fast():
    import time

    rng = np.random.default_rng(0)
    items = []
    for i in range(4000):
        x, y = rng.integers(0, 4000, 2)
        m = np.ones((int(rng.integers(5, 30)), int(rng.integers(5, 30))), bool)
        items.append(TileMask(m, (int(x), int(y)), score=float(m.sum()), tile=i % 9, window=(0, 0, 4096, 4096)))
    t0 = time.process_time()
    merge_tiled(items, disjoint=True)
    assert time.process_time() - t0 < 5.0  # box-overlap candidates only (~0.5 s here)


# -- the --tile-size option ---------------------------------------------------------------
def test_detector_config_passes_tile_size_to_any_segmenter():
    from sam_detect.cli.options import detector_config

    for segmenter in ("classical", "auto"):
        cfg = detector_config(segmenter=segmenter, store="memory", tile_size=512)
        assert cfg.segmenter_options == {"tile_size": 512}
        cfg = detector_config(segmenter=segmenter, store="memory", tile_size=0)
        assert cfg.segmenter_options == {"tile_size": 0}
    assert detector_config(segmenter="classical", store="memory").segmenter_options == {}
    with pytest.raises(click.BadParameter, match=r"must be 0 \(no tiling\) or at least twice the tile overlap of 128"):
        detector_config(segmenter="classical", store="memory", tile_size=255)
    assert detector_config(segmenter="auto", store="memory", tile_size=256).segmenter_options == {"tile_size": 256}
    with pytest.raises(click.BadParameter, match=r"regions segmenter .* does not tile"):
        detector_config(segmenter="regions", store="memory", tile_size=512)
    assert detector_config(segmenter="regions", store="memory").segmenter_options == {}


def test_tile_size_option_reaches_the_classical_segmenter(tmp_path):
    from sam_detect.cli.options import build_detector

    for command in ("detect", "add", "eval", "video"):
        r = run_cli(command, "--help")
        assert r.exit_code == 0 and "--tile-size" in r.output
        assert "0 disables tiling" in " ".join(r.output.split())
    det = build_detector(segmenter="classical", store="memory", tile_size=300)
    assert det.segmenter.config.tile_size == 300
    img = tmp_path / "x.png"
    import cv2

    cv2.imwrite(str(img), np.zeros((50, 50, 3), np.uint8))
    r = run_cli("detect", str(img), "--segmenter", "classical", "--tile-size", "64",
                "--library-path", str(tmp_path / "libs"))
    assert r.exit_code == 2
    assert "Invalid value for --tile-size: must be 0 (no tiling) or at least twice the tile overlap of 128 pixels, got 64" in r.output
    r = run_cli("detect", str(img), "--tile-size", "-1")
    assert r.exit_code == 2 and "--tile-size" in r.output
