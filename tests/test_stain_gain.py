"""Slides stained denser or fainter than the examples' (``profile.stain_gain``): detected as the
examples' slide would show them, so that the levels and floors the examples set (in their
slide's colours) still find the objects."""

from __future__ import annotations

import numpy as np
import pytest
from test_profile import f1_at, place

from sam_detect import DetectorConfig, Instances, SAMDetect
from sam_detect import profile as P
from sam_detect import select as sel

#: optical densities (R, G, B) of a nucleus's haematoxylin and of eosin-stained stroma
HAEMATOXYLIN = np.array([1.04, 1.12, 0.46])
EOSIN = np.array([0.035, 0.5, 0.055])


def slide(seed: int, density: float = 1.0, size: int = 192, n: int = 14) -> tuple[np.ndarray, np.ndarray]:
    """Purple nuclei on pink stroma, drawn in optical density and stained ``density`` times as
    densely as the first slide (every pixel's density scaled, as a thicker section or a longer
    stain scales it); RGB uint8 and the label image."""
    rng = np.random.default_rng(seed)
    lab = np.zeros((size, size), np.int32)
    place(lab, rng, n, (7, 11), margin=2, ratio=0.7, gap=3)
    od = np.where(lab[..., None] > 0, HAEMATOXYLIN + 0.3 * EOSIN, EOSIN)
    od = od * (1.0 + rng.normal(0.0, 0.06, (size, size, 1)))
    return np.clip(np.rint(255.0 * np.exp(-density * od)), 0, 255).astype(np.uint8), lab


def two_kinds(tumour_share: float, seed: int, density: float = 1.0, size: int = 192) -> np.ndarray:
    """Tissue of two kinds side by side: purple tumour (haematoxylin-rich cytoplasm) over the
    left ``tumour_share`` of the image, pink stroma over the rest, nuclei scattered on both."""
    rng = np.random.default_rng(seed)
    tumour = np.zeros((size, size), bool)
    tumour[:, : int(tumour_share * size)] = True
    od = np.where(tumour[..., None], 0.35 * HAEMATOXYLIN + 0.6 * EOSIN, EOSIN)
    lab = np.zeros((size, size), np.int32)
    place(lab, rng, 20, (6, 10), margin=2, ratio=0.7, gap=3)
    od = np.where(lab[..., None] > 0, HAEMATOXYLIN + 0.3 * EOSIN, od) * (1.0 + rng.normal(0.0, 0.06, (size, size, 1)))
    return np.clip(np.rint(255.0 * np.exp(-density * od)), 0, 255).astype(np.uint8)


def test_the_stain_table_reads_the_tissue_s_density_colour_by_colour():
    rgb, _ = slide(0)
    table = P.stain_table(rgb)
    assert all(n >= P.STAIN_HUE_PIXELS for _, _, n in table)
    mostly = max(table, key=lambda row: row[2])  # the stroma's colour holds most tissue
    assert np.exp(mostly[1]) == pytest.approx(EOSIN.sum(), rel=0.1)
    for k in (0.6, 1.5):
        assert P.stain_ratio(P.stain_table(slide(0, k)[0]), table) == pytest.approx(k, rel=0.05)
    assert P.stain_table(np.full((50, 50, 3), 245, np.uint8)) is None  # glass: no tissue
    assert P.stain_table(np.repeat(rgb[..., 1:2], 3, axis=2)) is None  # a grey image
    glass = np.full((100, 100, 3), 245, np.uint8)
    glass[:2] = rgb[:2, :100]  # tissue on 2 % of the pixels: too little to judge the stain by
    assert P.stain_table(glass) is None


def test_another_mix_of_tissue_is_not_read_as_another_stain():
    """More or less tumour than the examples' image holds moves the tissue's overall median
    density far (0.5-1.1x here), not its density colour by colour; a denser stain moves both."""
    ref = P.stain_table(two_kinds(0.5, 0))
    for share in (0.1, 0.3, 0.7, 0.9):
        mix = two_kinds(share, 1)
        assert P.stain_ratio(P.stain_table(mix), ref) == pytest.approx(1.0, abs=0.05)
        assert P.stain_ratio(P.stain_table(two_kinds(share, 1, 1.4)), ref) == pytest.approx(1.4, rel=0.05)
    lut = -np.log(np.maximum(np.arange(256), 1) / 255.0)

    def median_density(rgb):
        d = lut[rgb.reshape(-1, 3)].sum(axis=1)
        return np.median(d[d > P.STAIN_TISSUE])

    assert median_density(two_kinds(0.1, 1)) < median_density(two_kinds(0.5, 0)) / P.STAIN_GAIN  # what one median reads


def test_a_kind_of_tissue_the_examples_images_hold_only_pale_is_not_read_as_another_stain():
    """Tumour cytoplasm dense over most of the image, where the examples' image holds that
    colour only in a pale strip beside its stroma: weighted by the image's pixels its colours
    read 1.7x, weighted by the examples' image's the stroma they share reads 1: the colours
    disagree, and no ratio is read. A denser stain moves both weightings, and still reads."""
    def tissue(share: float, cytoplasm: float, seed: int, density: float = 1.0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        size = 192
        left = np.zeros((size, size), bool)
        left[:, : int(share * size)] = True
        od = np.where(left[..., None], cytoplasm * (0.35 * HAEMATOXYLIN + 0.6 * EOSIN), EOSIN)
        od = od * (1.0 + rng.normal(0.0, 0.06, (size, size, 1)))
        return np.clip(np.rint(255.0 * np.exp(-density * od)), 0, 255).astype(np.uint8)

    ref = P.stain_table(tissue(0.15, 0.6, 0))  # pink stroma, a pale strip of the purple
    scored = P.stain_table(tissue(0.85, 1.0, 1))  # most of it dense purple cytoplasm
    rows = {int(b): v for b, v, _ in ref}
    own = max(scored, key=lambda row: row[2])
    assert int(own[0]) in rows and np.exp(own[1] - rows[int(own[0])]) > 1.5  # its own colour reads denser
    assert P.stain_ratio(scored, ref) is None
    assert P.stain_ratio(P.stain_table(tissue(0.15, 0.6, 1, 1.4)), ref) == pytest.approx(1.4, rel=0.05)


def test_the_gain_fires_only_beyond_its_limit_only_for_a_stain_and_only_in_its_colours():
    rgb, _ = slide(0)
    entry = {"level_floor": -200.0, "stain_table": P.stain_table(rgb), "count": 14}
    prof = {"classes": {"nucleus": entry}}
    scaled = {k: slide(0, k)[0] for k in (1.1, 1.5, 0.6, 4.0)}
    assert P.stain_gain(rgb, prof) is None  # the examples' density
    assert P.stain_gain(scaled[1.1], prof) is None  # within STAIN_GAIN
    assert P.stain_gain(scaled[1.5], prof) == pytest.approx(1.5, rel=0.05)
    assert P.stain_gain(scaled[0.6], prof) == pytest.approx(0.6, rel=0.05)
    assert P.stain_gain(scaled[4.0], prof) is None  # beyond STAIN_GAIN_MAX: something else differs
    # tissue of other colours only (brown DAB): nothing to compare the density by
    brown = np.clip(np.rint(255.0 * np.exp(-1.5 * np.array([0.27, 0.57, 0.78]) * np.ones((64, 64, 1)))), 0, 255)
    assert P.stain_gain(brown.astype(np.uint8), prof) is None
    bright = {"classes": {"nucleus": {k: v for k, v in entry.items() if k != "level_floor"}}}
    assert P.stain_gain(scaled[1.5], bright) is None  # not a stain: no density to match
    assert P.stain_gain(scaled[1.5], {"classes": {"nucleus": {"level_floor": -200.0}}}) is None  # made before
    assert P.stain_gain(scaled[1.5], None) is None


@pytest.fixture(scope="module")
def stain_library():
    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="handcrafted", library="he"))
    rgb, lab = slide(0)
    gt, _ = Instances.from_label_image(lab)
    det.add_examples(rgb, Instances(masks=gt.masks, labels=["nucleus"] * len(gt)))
    yield det
    det.close()


def test_the_profile_keeps_the_examples_stain_density(stain_library):
    entry = stain_library.profile["classes"]["nucleus"]
    assert "level_floor" in entry
    assert entry["stain_table"] == P.stain_table(slide(0)[0])
    assert any("stain density" in line for line in P.describe(stain_library.profile))


def test_the_examples_density_weighs_each_image_once():
    """Two slides, 14 examples from one and 3 from the other: halfway between the two slides'
    densities (in log), not the density of the slide that gave more examples."""
    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="handcrafted", library="he"))
    one, lab_one = slide(0)
    two, lab_two = slide(1, 1.5)
    for rgb, lab, n in ((one, lab_one, 14), (two, lab_two, 3)):
        gt, _ = Instances.from_label_image(lab)
        det.add_examples(rgb, Instances(masks=gt.masks[:n], labels=["nucleus"] * n))
    pooled = det.profile["classes"]["nucleus"]["stain_table"]
    assert P.stain_ratio(P.stain_table(one), pooled) == pytest.approx(1 / np.sqrt(1.5), rel=0.05)
    assert P.stain_ratio(P.stain_table(two), pooled) == pytest.approx(np.sqrt(1.5), rel=0.05)
    det.close()


@pytest.mark.parametrize("density", [0.6, 1.6])
def test_a_slide_stained_otherwise_finds_what_the_examples_slide_does(stain_library, monkeypatch, density):
    rgb, lab = slide(3, density)
    gt, _ = Instances.from_label_image(lab)
    same = stain_library.detect(slide(3)[0])
    assert same.metadata["stain_gain"] is None and f1_at(same, gt) == pytest.approx(1.0)
    found = stain_library.detect(rgb)
    assert found.metadata["stain_gain"] == pytest.approx(density, rel=0.15)
    assert f1_at(found, gt) == pytest.approx(1.0)
    assert any("stained" in n and "as densely as in the examples' images" in n for n in found.metadata["notes"])
    monkeypatch.setattr(P, "STAIN_GAIN", float("inf"))  # the examples' stain as it is
    if density > 1:  # a darker slide's nuclei stand out further than the examples: the vote takes them
        taken = stain_library.detect(rgb)
        assert f1_at(taken, gt) == pytest.approx(1.0)
        assert any("unlike every example, but standing out at least as far as the examples" in n
                   for n in taken.metadata["notes"])
        assert not any("unlike every example" in n for n in found.metadata["notes"])
    monkeypatch.setattr(sel, "STAND_OUT", float("inf"))  # ... unless it calls the unlike unknown
    assert f1_at(stain_library.detect(rgb), gt) < 0.5


def test_a_grey_or_bright_library_is_never_matched_to_a_stain():
    from conftest import draw_scene

    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="handcrafted", library="cells"))
    rgb, masks, _ = draw_scene(seed=1, n_discs=6, n_squares=0)
    det.add_examples(rgb, Instances(masks=masks, labels=["cell"] * len(masks)))
    assert "stain_table" not in det.profile["classes"]["cell"]
    colour, _ = slide(3, 1.6)  # a stained slide shown to a library of bright cells
    assert det.detect(colour).metadata["stain_gain"] is None
    det.close()
