"""Grey images at another exposure than the examples' (``profile.level_gain``): proposed at
the examples' grey levels, so that the settings' levels and floors (in the examples' grey
values) still find the objects."""

from __future__ import annotations

import numpy as np
import pytest

from sam_detect import DetectorConfig, Instances, SAMDetect
from sam_detect import profile as P
from tests.conftest import draw_scene


def _dimmed(rgb: np.ndarray, gain: float) -> np.ndarray:
    return np.clip(np.rint(rgb.astype(np.float32) * gain), 0, 255).astype(np.uint8)


def test_grey_levels_are_the_two_otsu_class_means_of_a_grey_image_only():
    img = np.full((60, 60), 20, np.uint8)
    img[10:30, 10:30] = 200
    lo, hi = P.grey_levels(np.repeat(img[..., None], 3, axis=2))
    assert lo == pytest.approx(20) and hi == pytest.approx(200)
    colour = np.repeat(img[..., None], 3, axis=2)
    colour[..., 0] //= 2
    assert P.grey_levels(colour) is None
    assert P.grey_levels(np.full((8, 8), 7, np.uint8)) is None


def _in_colour(rgb: np.ndarray, on: tuple[int, ...]) -> np.ndarray:
    """A grey ``rgb`` as one channel shown in one colour: the channels ``on`` carry it, the others black."""
    out = np.zeros_like(rgb)
    out[..., list(on)] = rgb[..., :1]
    return out


@pytest.mark.parametrize("on", [(2,), (1,), (1, 2), (0, 2)])  # blue DAPI, green GFP, cyan, magenta
def test_one_channel_in_one_colour_is_a_grey_image(on):
    img = np.full((60, 60), 20, np.uint8)
    img[10:30, 10:30] = 200
    grey = np.repeat(img[..., None], 3, axis=2)
    tinted = _in_colour(grey, on)
    assert P.grey_levels(tinted) == P.grey_levels(grey)
    assert P.stain_table(tinted) is None  # read as grey, not as a stained slide
    back = P.at_levels(tinted, (0.5, -30.0))
    assert np.array_equal(back, _in_colour(P.at_levels(grey, (0.5, -30.0)), on))  # black channels stay black
    almost = tinted.copy()
    almost[0, 0, [c for c in range(3) if c not in on][0]] = 1  # a pixel off the one colour: a colour image
    assert P.grey_levels(almost) is None


def test_the_gain_fires_only_beyond_the_limit_and_not_on_noise():
    entry = {"grey_levels": [20.0, 200.0]}
    rgb, _, _ = draw_scene(seed=0, size=120)
    assert P.level_gain(P.grey_levels(rgb), entry) is None  # the same exposure
    assert P.level_gain(P.grey_levels(_dimmed(rgb, 0.6)), entry) is None  # within LEVEL_GAIN
    a, b = P.level_gain(P.grey_levels(_dimmed(rgb, 0.2)), entry)
    assert a == pytest.approx(0.2, rel=0.1)
    back = P.at_levels(_dimmed(rgb, 0.2), (a, b))
    assert np.abs(back.astype(int) - rgb.astype(int)).mean() < 4  # the examples' grey values again
    noise = np.clip(np.random.default_rng(0).normal(20, 2, (120, 120, 1)), 0, 255).astype(np.uint8).repeat(3, 2)
    assert P.level_gain(P.grey_levels(noise), entry) is None  # an empty frame's noise is not amplified
    assert P.level_gain(P.grey_levels(_dimmed(rgb, 0.2)), {}) is None  # a class without grey levels
    brighter_ground = np.clip(rgb.astype(int) + 30, 0, 255).astype(np.uint8)
    assert P.level_gain(P.grey_levels(brighter_ground), entry) is None  # an offset within LEVEL_OFFSET
    a, b = P.level_gain(P.grey_levels(np.clip(rgb.astype(int) + 60, 0, 255).astype(np.uint8)), entry)
    assert a == pytest.approx(1.0, abs=0.05) and b == pytest.approx(60, abs=5)  # beyond it
    # dark objects on a bright ground: the objects' level is the low one
    dark = (255 - rgb).astype(np.uint8)
    a, _ = P.level_gain(P.grey_levels(_dimmed(dark, 0.3)), {"grey_levels": [235.0, 55.0]})
    assert a == pytest.approx(0.3, rel=0.15)


def test_a_dimmer_frame_off_the_gain_by_a_share_of_its_own_contrast_is_mapped():
    """A frame at 0.4x the examples' contrast whose ground lies lower than that gain puts it
    (dim neural tissue saved in 8 bits: its ground 14 where 0.4 x 46 = 18, its contrast 12):
    its levels scaled by the ratio put the threshold a third of its own contrast too high, and
    one frame gave 2 candidates where the mapped frame gives 153. The offset is now measured
    against the smaller of the two contrasts: such a frame is mapped onto the examples' levels;
    an offset within ``LEVEL_OFFSET`` of the frame's own contrast still is not."""
    entry = {"grey_levels": [20.0, 200.0]}
    rgb, _, _ = draw_scene(seed=0, size=120)
    dim = _dimmed(rgb, 0.4)
    assert P.level_gain(P.grey_levels(dim), entry) is None  # a pure gain: thresholded at its own contrast
    (bg, fg), contrast = P.grey_levels(dim), 180.0
    assert (fg - bg) / contrast == pytest.approx(0.4, rel=0.1)
    near = np.clip(dim.astype(int) + int(0.15 * (fg - bg)), 0, 255).astype(np.uint8)
    assert P.level_gain(P.grey_levels(near), entry) is None  # within a quarter of its own contrast
    off = np.clip(dim.astype(int) + int(0.4 * (fg - bg)), 0, 255).astype(np.uint8)
    assert 0.4 * (fg - bg) < P.LEVEL_OFFSET * contrast  # within a quarter of the examples' contrast
    a, b = P.level_gain(P.grey_levels(off), entry)
    assert a == pytest.approx(0.4, rel=0.1) and b == pytest.approx(0.4 * (fg - bg), abs=3)
    back = P.at_levels(off, (a, b))
    assert np.abs(back.astype(int) - rgb.astype(int)).mean() < 6  # the examples' grey values again


def test_a_few_bright_specks_are_not_read_as_the_objects_of_a_faint_image():
    """Dim tissue (cells 12 grey values over their ground) with 0.5 % of its pixels in bright
    specks: Otsu split the specks off, and the image read as standing out 3.9x as far as its
    examples' and was mapped so dim that 3 objects were found. The two classes of the rest
    are read now; a sparse frame's few objects on one flat ground keep their reading."""
    rng = np.random.default_rng(3)
    g = rng.normal(15, 2, (300, 300))
    yy, xx = np.mgrid[:300, :300]
    cells = np.zeros((300, 300), bool)
    for cy, cx in rng.integers(15, 285, (60, 2)):
        cells |= (yy - cy) ** 2 + (xx - cx) ** 2 < 8 ** 2
    g[cells] += 12
    specks = rng.random((300, 300)) < 0.005
    g[specks] = 200
    img = np.clip(np.rint(g), 0, 255).astype(np.uint8)
    low, high = P.grey_levels(img)
    assert low == pytest.approx(15, abs=2) and high == pytest.approx(27, abs=3)  # ground and cells
    g2 = g.copy()
    g2[specks] = 15
    plain = np.clip(np.rint(g2), 0, 255).astype(np.uint8)
    assert np.allclose(P.grey_levels(plain), (low, high), atol=1.5)  # as without the specks
    sparse = np.clip(np.rint(rng.normal(15, 2, (300, 300))), 0, 255).astype(np.uint8)
    sparse[100:108, 100:108] = sparse[200:206, 50:58] = 120  # 0.1 % of the pixels: the objects
    low, high = P.grey_levels(sparse)
    assert low == pytest.approx(15, abs=1) and high == pytest.approx(120, abs=3)


@pytest.fixture(scope="module")
def bright_library():
    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="handcrafted", library="cells"))
    rgb, masks, _ = draw_scene(seed=1, n_discs=6, n_squares=0)
    det.add_examples(rgb, Instances(masks=masks, labels=["cell"] * len(masks)))
    yield det
    det.close()


def test_the_profile_keeps_the_examples_grey_levels(bright_library):
    entry = bright_library.profile["classes"]["cell"]
    lo, hi = entry["grey_levels"]
    assert lo == pytest.approx(20, abs=2) and hi == pytest.approx(200, abs=3)


def test_a_dim_copy_finds_what_the_bright_one_does(bright_library, monkeypatch):
    rgb, masks, _ = draw_scene(seed=5, n_discs=6, n_squares=0)
    bright = bright_library.detect(rgb)
    dim = _dimmed(rgb, 0.1)  # 2 on a ground of 20: the examples' levels find nothing there
    found = bright_library.detect(dim)
    assert len(bright) == len(found) == len(masks)
    assert np.array_equal(np.sort(bright.boxes, axis=0), np.sort(found.boxes, axis=0))
    assert any("stand out 0.1x as far" in n for n in found.metadata["notes"])
    monkeypatch.setattr(P, "LEVEL_GAIN", float("inf"))  # the examples' levels as they are:
    # the discs are still found, as objects fainter than every example that are shaped like
    # them and clear of the noise (select.DIM_TAKES), no longer as the examples' own look
    unmapped = bright_library.detect(dim)
    assert len(unmapped) == len(masks)
    assert any("unlike every example, but shaped like them" in n for n in unmapped.metadata["notes"])
    import sam_detect.select as sel

    monkeypatch.setattr(sel, "DIM_TAKES", False)  # and without that too: unknown
    assert len(bright_library.detect(dim)) < len(masks)


def test_a_dim_copy_in_one_colour_finds_what_the_bright_one_does():
    """Examples on a blue (DAPI-like) frame, detected on a blue frame a tenth as bright: mapped
    to the examples' levels as a grey frame is, so every object is found."""
    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="handcrafted", library="dapi"))
    rgb, masks, _ = draw_scene(seed=1, n_discs=6, n_squares=0)
    det.add_examples(_in_colour(rgb, (2,)), Instances(masks=masks, labels=["cell"] * len(masks)))
    assert "grey_levels" in det.profile["classes"]["cell"]
    scene, discs, _ = draw_scene(seed=5, n_discs=6, n_squares=0)
    bright = det.detect(_in_colour(scene, (2,)))
    found = det.detect(_in_colour(_dimmed(scene, 0.1), (2,)))
    assert len(bright) == len(found) == len(discs)
    assert np.array_equal(np.sort(bright.boxes, axis=0), np.sort(found.boxes, axis=0))
    assert any("stand out 0.1x as far" in n for n in found.metadata["notes"])
    det.close()


def test_examples_on_a_16_bit_frame_find_the_objects_of_its_8_bit_exports(tmp_path):
    """Examples drawn on a raw 16-bit TIFF; the same kind of frame detected as the 8-bit files a
    user exports from it (grey PNG, RGB PNG, grey with alpha, JPEG): read from disk, each
    finds every object the 16-bit file does."""
    import tifffile
    from PIL import Image

    from sam_detect.io.images import load_image

    noise = np.random.default_rng(0)

    def raw(rgb: np.ndarray) -> np.ndarray:  # a camera's 16-bit counts: offset, gain, noise
        counts = 100.0 + 12.0 * rgb[..., 0].astype(np.float64) + noise.normal(0.0, 20.0, rgb.shape[:2])
        return np.clip(counts, 0, 65535).astype(np.uint16)

    rgb, masks, _ = draw_scene(seed=1, n_discs=6, n_squares=0)
    tifffile.imwrite(tmp_path / "examples.tif", raw(rgb))
    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="handcrafted", library="raw"))
    det.add_examples(load_image(tmp_path / "examples.tif").rgb, Instances(masks=masks, labels=["cell"] * len(masks)))
    scene, discs, _ = draw_scene(seed=5, n_discs=6, n_squares=0)
    counts = raw(scene)
    tifffile.imwrite(tmp_path / "scene.tif", counts)
    grey8 = np.clip(counts // 13, 0, 255).astype(np.uint8)
    Image.fromarray(grey8).save(tmp_path / "grey.png")
    Image.fromarray(np.repeat(grey8[..., None], 3, axis=2)).save(tmp_path / "rgb.png")
    Image.fromarray(np.dstack([grey8, np.full_like(grey8, 255)]), "LA").save(tmp_path / "alpha.png")
    Image.fromarray(grey8).save(tmp_path / "scene.jpg", quality=85)
    wide = det.detect(load_image(tmp_path / "scene.tif").rgb)
    assert len(wide) == len(discs)
    for name in ("grey.png", "rgb.png", "alpha.png", "scene.jpg"):
        found = det.detect(load_image(tmp_path / name).rgb)
        assert len(found) == len(discs), name
    det.close()


def test_a_frame_cut_to_a_few_grey_values_is_mapped_both_ways():
    """A 16-bit frame whose counts sit high in the range (as the HeLa time-lapse's, 32,978-36,863)
    cut to 8 bits by ``img_as_ubyte`` keeps a few grey values (here the ground 128, the
    objects 4 above it): with examples on the 16-bit frame, its objects were all below every
    floor (2 nuclei of 145 on HeLa frame 5), and examples drawn on such a frame lost a
    16-bit frame's objects. Its two classes are told apart by how far they lie apart against
    the ground's spread, not by a fixed 8 grey values, and any gain up to ``LEVEL_GAIN_MAX``
    maps it; noise of under a grey value, or Gaussian noise, still has no two classes."""
    from skimage.util import img_as_ubyte

    from sam_detect.io.images import to_rgb_uint8

    noise = np.random.default_rng(0)

    def raw(rgb: np.ndarray) -> np.ndarray:
        counts = 32900.0 + 5.0 * rgb[..., 0].astype(np.float64) + noise.normal(0.0, 20.0, rgb.shape[:2])
        return np.clip(counts, 0, 65535).astype(np.uint16)

    rgb, masks, _ = draw_scene(seed=1, n_discs=6, n_squares=0)
    scene, discs, _ = draw_scene(seed=5, n_discs=6, n_squares=0)
    wide, few = to_rgb_uint8(raw(scene)), to_rgb_uint8(img_as_ubyte(raw(scene)))
    lo, hi = P.grey_levels(few)
    assert 2 <= hi - lo < P.LEVEL_MIN_SPLIT and len(np.unique(few)) <= 8
    for examples, scored in ((raw(rgb), few), (img_as_ubyte(raw(rgb)), wide)):
        det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="handcrafted", library="raw"))
        det.add_examples(to_rgb_uint8(examples), Instances(masks=masks, labels=["cell"] * len(masks)))
        found = det.detect(scored)
        assert len(found) == len(discs)
        assert any("as far as in the examples' images (another exposure?): proposed and described at the "
                   "examples' grey levels" in n for n in found.metadata["notes"]), found.metadata["notes"]
        det.close()
    for sd in (0.3, 0.6, 1.0, 3.0):  # an empty frame's noise: no two classes
        flat = np.clip(np.rint(noise.normal(20, sd, (120, 120))), 0, 255).astype(np.uint8)
        assert P.grey_levels(np.repeat(flat[..., None], 3, axis=2)) is None, sd


def test_a_colour_library_or_image_gets_no_gain(bright_library):
    rgb, masks, _ = draw_scene(seed=5, n_discs=6, n_squares=0)
    dim = _dimmed(rgb, 0.1)
    dim[..., 0] = dim[..., 1] // 2  # no longer grey
    found = bright_library.detect(dim)
    assert not any("stand out" in n for n in found.metadata["notes"])


def test_a_class_keeps_grey_levels_only_when_every_example_image_was_grey():
    """A library made before grey levels, or one whose examples mix grey and colour images,
    keeps none, and its images are proposed as before."""
    rgb, masks, _ = draw_scene(seed=1, n_discs=6, n_squares=0)
    shapes = P.describe_examples(rgb, Instances(masks=masks), ["cell"] * len(masks))
    assert all("grey_levels" in s for s in shapes)
    assert "grey_levels" in P.build_profile([("cell", s) for s in shapes])["classes"]["cell"]
    older = [dict(s) for s in shapes]
    del older[0]["grey_levels"]
    assert "grey_levels" not in P.build_profile([("cell", s) for s in older])["classes"]["cell"]
    colour = rgb.copy()
    colour[..., 2] //= 2
    assert all("grey_levels" not in s for s in P.describe_examples(colour, Instances(masks=masks), ["cell"] * len(masks)))


def test_a_mapped_image_is_embedded_as_mapped_with_the_network_started_early(monkeypatch):
    """The network pass ``detect`` starts beside segmentation sees the image as read; when
    the image is mapped to the examples' levels that pass is given up and the mapped image
    embedded: the same objects and similarities as without the early pass."""
    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="views", library="cells"))
    rgb, masks, _ = draw_scene(seed=1, n_discs=6, n_squares=0)
    det.add_examples(rgb, Instances(masks=masks, labels=["cell"] * len(masks)))
    dim = _dimmed(draw_scene(seed=5, n_discs=6, n_squares=0)[0], 0.1)
    early = det.detect(dim)
    monkeypatch.setattr(SAMDetect, "_prefetch_maps", lambda self, rgb: None)
    late = det.detect(dim)
    assert len(early) == len(late) == 6
    assert np.array_equal(early.boxes, late.boxes)
    assert np.array_equal(early.data["similarity"], late.data["similarity"])
    det.close()


def test_grey_ratio_is_how_far_apart_the_image_spreads_its_two_classes_against_the_examples():
    entry = {"grey_levels": [20.0, 200.0]}
    rgb, _, _ = draw_scene(seed=0, size=120)
    assert P.grey_ratio(P.grey_levels(rgb), entry) == pytest.approx(1.0, abs=0.05)
    assert P.grey_ratio(P.grey_levels(_dimmed(rgb, 0.6)), entry) == pytest.approx(0.6, abs=0.05)
    dark = (255 - rgb).astype(np.uint8)  # dark objects on a bright ground: the same measure
    assert P.grey_ratio(P.grey_levels(dark), {"grey_levels": [235.0, 55.0]}) == pytest.approx(1.0, abs=0.05)
    assert P.grey_ratio(P.grey_levels(rgb), {}) is None  # a class without grey levels
    assert P.grey_ratio(None, entry) is None  # a colour image
    noise = np.clip(np.random.default_rng(0).normal(20, 2, (120, 120, 1)), 0, 255).astype(np.uint8).repeat(3, 2)
    assert P.grey_ratio(P.grey_levels(noise), entry) is None  # an empty frame says nothing


def _two_lines(seed: int, shares=(0.55, 0.25)) -> tuple[np.ndarray, np.ndarray]:
    """A grey frame of 8 discs, alternately at ``shares`` of the examples' contrast above the
    same ground (a dimmer cell line, its faintest nuclei at a quarter): its two Otsu classes
    lie 0.4x as far apart as the examples' image's, inside ``LEVEL_GAIN``, so it is not mapped."""
    img, masks, _ = draw_scene(seed=seed, size=200, n_discs=8, n_squares=0)
    g = img[..., 0].astype(np.float32)
    for k, m in enumerate(masks):
        g[m] = 20 + (g[m] - 20) * shares[k % len(shares)]
    g = np.clip(np.rint(g), 0, 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2), masks


def test_a_dimmer_frame_is_cut_and_floored_in_its_own_grey_values(monkeypatch):
    """The examples' threshold levels and contrast floors are in their image's grey values.
    A frame whose objects stand out 0.4x as far is not mapped (``LEVEL_GAIN``), so before,
    the examples' level (half their contrast: sharp discs) cut its brighter discs small and
    missed the faint ones, and the contrast floor dropped what was left of those. The levels
    and floors are now scaled by the frame's ``grey_ratio``: every disc is found whole."""
    from sam_detect.eval.metrics import instances_iou

    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="views", library="cells"))
    rgb, masks, _ = draw_scene(seed=1, n_discs=6, n_squares=0)
    det.add_examples(rgb, Instances(masks=masks, labels=["cell"] * len(masks)))
    entry = det.profile["classes"]["cell"]
    frame, discs = _two_lines(5)
    ratio = P.grey_ratio(P.grey_levels(frame), entry)
    assert 1 / P.LEVEL_GAIN < ratio < 0.5 and P.level_gain(P.grey_levels(frame), entry) is None

    def found(image):
        out = det.detect(image)
        return instances_iou(out, Instances(masks=discs)).max(axis=0) if len(out) else np.zeros(len(discs))

    iou = found(frame)
    assert (iou >= 0.7).all()
    note = f"cell: objects here stand out {ratio:.2g}x as far as in the examples' images: thresholded at this image's contrast"
    assert note in det.detect(frame).metadata["notes"]
    assert not any("thresholded at this image's contrast" in n for n in det.detect(rgb).metadata["notes"])
    proposed = det.segmenter.segment(frame, profile=det.profile)
    assert proposed.metadata["grey_ratio"]["cell"] == pytest.approx(ratio, abs=1e-3)
    # the examples' own image, and a brighter one, keep the examples' levels
    assert "grey_ratio" not in det.segmenter.segment(rgb, profile=det.profile).metadata
    brighter = np.clip(rgb.astype(np.float32) * 1.2, 0, 255).astype(np.uint8)
    assert "grey_ratio" not in det.segmenter.segment(brighter, profile=det.profile).metadata
    monkeypatch.setattr(P, "_floor_scale", lambda instances, label: 1.0)  # the levels alone: faint
    assert (found(frame)[1::2] >= 0.7).any()  # discs clear of the noise and shaped like the examples stay
    monkeypatch.setattr(P, "DIM_NOISE", np.inf)  # (profile._clear_of_noise) unless that is off too
    iou_levels = found(frame)
    assert (iou_levels[0::2] >= 0.7).all() and (iou_levels[1::2] < 0.5).all()  # the faint ones dropped as dim
    monkeypatch.setattr(P, "grey_ratio", lambda *a: None)  # neither: the examples' grey values
    iou_before = found(frame)
    assert (iou_before[1::2] < 0.5).all() and (iou_before[0::2] < iou[0::2]).all()
    det.close()


def test_the_floor_scale_is_the_frame_ratio_below_one_only():
    inst = Instances(masks=np.zeros((1, 8, 8), bool))
    assert P._floor_scale(inst, "cell") == 1.0
    inst.metadata["grey_ratio"] = {"cell": 0.4}
    assert P._floor_scale(inst, "cell") == pytest.approx(0.4)
    assert P._floor_scale(inst, "other") == 1.0
    inst.metadata["grey_ratio"] = {"cell": 1.7}
    assert P._floor_scale(inst, "cell") == 1.0


def test_sam2s_cheap_blob_points_read_a_blue_frame_in_its_channel():
    """SAM2's point prompts start from Laplacian-of-Gaussian blobs at a fixed response: a blue
    frame's blobs are found as on the grey frame (its channel, not a third of it)."""
    from sam_detect.segment.sam2_prompts import blob_points

    grey, _, _ = draw_scene(seed=5, n_discs=6, n_squares=0)
    dim = _dimmed(grey, 0.1)  # discs 18 grey levels over the ground: a third of that is under the response
    on_grey = blob_points(dim, threshold=0.05)
    assert len(on_grey) >= 6
    np.testing.assert_array_equal(blob_points(_in_colour(dim, (2,)), threshold=0.05), on_grey)
