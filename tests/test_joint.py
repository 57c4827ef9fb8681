"""A library of several classes finds its objects with every class's examples as one class,
then types each by the vote among the classes (``profile.JOINT``)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_cli
from test_profile import place

from sam_detect import DetectorConfig, SAMDetect
from sam_detect.eval.matching import match_iou_matrix
from sam_detect.eval.metrics import instances_iou
from sam_detect.instances import Instances
from sam_detect.profile import (
    JOINT,
    JOINT_ANGLE,
    SAME,
    apart,
    build_profile,
    describe,
    describe_examples,
    joint_profile,
)


def two_kinds(seed: int, size: int = 224):
    """RGB with 8 large and 14 small dark ellipses on a light background, the label image and
    each object's kind (``"large"`` / ``"small"``) in label order."""
    rng = np.random.default_rng(seed)
    lab = np.zeros((size, size), np.int32)
    place(lab, rng, 8, (12, 15), margin=2, ratio=0.7, gap=4)
    big = int(lab.max())
    place(lab, rng, big + 14, (4.5, 6), margin=2, ratio=0.7, gap=4)
    img = np.where(lab[..., None] > 0, np.float32([90, 50, 120]), np.float32([225, 200, 215]))
    img = np.clip(img + rng.normal(0, 6.0, img.shape), 0, 255).astype(np.uint8)
    inst, ids = Instances.from_label_image(lab)
    inst.labels = np.array(["large" if i <= big else "small" for i in ids], dtype=object)
    return img, inst


def library(rgb: np.ndarray, examples: Instances, labels) -> SAMDetect:
    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="handcrafted"))
    det.add_examples(rgb, examples, list(labels))
    return det


@pytest.fixture(scope="module")
def scene():
    a_rgb, a = two_kinds(1)
    b_rgb, b = two_kinds(2)
    ex = a[np.r_[np.flatnonzero(a.labels == "large")[:4], np.flatnonzero(a.labels == "small")[:6]]]
    return a_rgb, ex, b_rgb, b


def test_classes_find_what_the_same_examples_as_one_class_find_and_the_vote_types_it(scene):
    a_rgb, ex, b_rgb, b = scene
    typed = library(a_rgb, ex, ex.labels)
    one = library(a_rgb, ex, ["object"] * len(ex))
    found, as_one = typed.detect(b_rgb), one.detect(b_rgb)
    # the same objects, outline for outline
    assert len(found) == len(as_one) > 0.8 * len(b)
    assert np.array_equal(found.boxes, as_one.boxes) and np.array_equal(found.areas, as_one.areas)
    # each typed by the vote among the classes
    assert set(found.labels) <= {"large", "small"} and JOINT not in found.labels
    pairs = match_iou_matrix(instances_iou(found, b), 0.5).pairs
    right = sum(found.labels[i] == b.labels[j] for i, j in pairs)
    assert len(pairs) >= 0.8 * len(b) and right >= 0.9 * len(pairs)
    # the neighbours in the output name the classes
    assert {n["label"] for ns in found.data["neighbours"] for n in ns} == {"large", "small"}
    assert np.all((found.label_confidences > 0) & (found.label_confidences <= 1))
    typed.close()
    one.close()


def test_the_joint_profile_is_kept_and_shown(scene):
    a_rgb, ex, _, _ = scene
    det = library(a_rgb, ex, ex.labels)
    profile, decision = det.profile, det.decision
    joint = joint_profile(profile)
    assert list(joint["classes"]) == [JOINT] and joint["classes"][JOINT]["count"] == len(ex)
    assert list(decision["joint"]["classes"]) == [JOINT] and decision["joint"]["counts"] == {JOINT: len(ex)}
    lines = describe(profile)
    assert any(line.startswith("detect finds the objects with every class's examples as one") for line in lines)
    det.close()
    # a library of one class has none, and says nothing of it
    one = library(a_rgb, ex, ["object"] * len(ex))
    assert joint_profile(one.profile) is None and "joint" not in one.decision
    assert not any("as one" in line for line in describe(one.profile))
    one.close()


def test_an_add_of_several_classes_is_measured_at_their_joint_scale_too(scene):
    a_rgb, ex, _, _ = scene
    shapes = describe_examples(a_rgb, ex, list(ex.labels))
    assert all(isinstance(s["calib_joint"], dict) for s in shapes)
    # measured at another scale than each class's own: the small ones reproduce otherwise
    assert any(s["calib_joint"]["iou"] != s["calib"]["iou"] for s in shapes)
    alone = describe_examples(a_rgb, ex, ["object"] * len(ex))
    assert all(s["calib_joint"] == SAME for s in alone)
    # the joint profile is the one the same examples give as one class
    joint = build_profile(list(zip(ex.labels, shapes, strict=True)))["joint"]["classes"][JOINT]
    one = build_profile([("object", s) for s in alone])["classes"]["object"]
    assert joint["settings"] == one["settings"] and joint["area"] == one["area"]


def test_examples_measured_before_joint_profiles_keep_each_class_on_its_own(scene):
    a_rgb, ex, _, _ = scene
    shapes = describe_examples(a_rgb, ex, list(ex.labels))
    old = [{k: v for k, v in s.items() if k != "calib_joint"} for s in shapes]
    profile = build_profile(list(zip(ex.labels, old, strict=True)))
    assert joint_profile(profile) is None and set(profile["classes"]) == {"large", "small"}
    assert any(line.startswith("each class is proposed on its own") for line in describe(profile))


def test_eval_re_votes_a_typed_library_as_detect_decided(scene):
    from sam_detect.eval.protocol import evaluate

    (a_rgb, a), (b_rgb, b) = two_kinds(1), two_kinds(2)
    res = evaluate([a_rgb, b_rgb], [a, b], DetectorConfig(store="memory", segmenter="classical",
                                                         embedder="handcrafted"),
                   shots=4, seed=0, examples_from=[0], detect_on=[1], curve_thresholds=(0.3, 0.5), overlays=0)
    assert res.consistent
    assert set(res.records[0].out_labels) <= {"large", "small"} and res.records[0].out_labels


def test_a_typed_decision_re_run_at_another_threshold_types_as_detect_does_at_it(scene):
    # eval's threshold curve re-runs the decision on the recorded candidates: the classes'
    # vote is re-run at each threshold too, not kept from the configured one
    from sam_detect.select import decide

    a_rgb, ex, b_rgb, _ = scene
    det = library(a_rgb, ex, ex.labels)
    det.detect(b_rgb)
    inst, results, profile, _, decision, typing = det._last_decided
    top_k = det.config.top_k
    configured = typing.vote(inst, top_k, None)
    moved = 0
    for t in (0.6, 0.95, 0.98):  # the handcrafted neighbours here lie at 0.93-1
        want = det.detect(b_rgb, threshold=t)
        d = decide(inst, results, threshold=t, top_k=top_k, profile=profile, decision=decision,
                   types=typing.vote(inst, top_k, t))
        assert [d.labels[i] for i in d.keep] == list(want.labels)
        assert np.allclose(d.confidences[d.keep], want.label_confidences)
        moved += not np.allclose(typing.vote(inst, top_k, t)[1], configured[1])
    assert moved  # the thresholds tried change the vote: the test can tell the two apart
    det.close()


def two_colours(seed: int, first=(220, 220, 220), second=(40, 40, 40), ground=(128, 128, 128),
                names=("bright", "dark"), size: int = 256):
    """RGB with 10 discs of colour ``first`` and 10 of ``second`` on ``ground`` (default:
    bright and dark on mid-grey), and their classes."""
    rng = np.random.default_rng(seed)
    lab = np.zeros((size, size), np.int32)
    place(lab, rng, 10, (8, 11), margin=2, ratio=0.8, gap=4)
    split = int(lab.max())
    place(lab, rng, split + 10, (8, 11), margin=2, ratio=0.8, gap=4)
    img = np.full((size, size, 3), ground, np.float32)
    img[(lab > 0) & (lab <= split)] = first
    img[lab > split] = second
    img = np.clip(img + rng.normal(0, 6.0, img.shape), 0, 255).astype(np.uint8)
    inst, ids = Instances.from_label_image(lab)
    inst.labels = np.array([names[0] if i <= split else names[1] for i in ids], dtype=object)
    return img, inst


def assert_finds_each_typed(det: SAMDetect, rgb: np.ndarray, truth: Instances, kinds, at_least: int = 9) -> None:
    """``det.detect(rgb)`` finds at least ``at_least`` objects of each class of ``kinds`` at
    IoU 0.5 against ``truth``, and types every object it matches right."""
    found = det.detect(rgb)
    pairs = match_iou_matrix(instances_iou(found, truth), 0.5).pairs
    for kind in kinds:
        assert sum(truth.labels[j] == kind for _, j in pairs) >= at_least
    assert all(found.labels[i] == truth.labels[j] for i, j in pairs)


def test_classes_of_opposite_contrast_are_each_proposed_on_their_own():
    # one joint threshold follows the majority's polarity: the dark discs would all be lost
    (a_rgb, a), (b_rgb, b) = two_colours(1), two_colours(2)
    ex = a[np.r_[np.flatnonzero(a.labels == "bright")[:5], np.flatnonzero(a.labels == "dark")[:5]]]
    det = library(a_rgb, ex, ex.labels)
    assert joint_profile(det.profile) is None and "joint" not in det.decision
    far = apart(det.profile)
    assert far["classes"] and far["angle"] > JOINT_ANGLE
    assert any(line.startswith("each class is proposed on its own: ") and "colour direction" in line
               for line in describe(det.profile))
    assert_finds_each_typed(det, b_rgb, b, ("bright", "dark"))
    det.close()
    # a profile stored with a joint profile of such classes (before the angle was kept) is
    # read the same way
    shapes = describe_examples(a_rgb, ex, list(ex.labels))
    stored = {k: v for k, v in build_profile(list(zip(ex.labels, shapes, strict=True))).items() if k != "apart"}
    stored["joint"] = build_profile((JOINT, s) for s in shapes)
    assert joint_profile(stored) is None and apart(stored)["classes"] == far["classes"]


def test_classes_of_other_colours_on_one_ground_are_found_as_one():
    # red and green discs on black stand out along directions 90 degrees apart, each 45 from
    # their joint one: within JOINT_ANGLE, and one threshold finds both
    colours = dict(first=(200, 30, 30), second=(30, 200, 30), ground=(20, 20, 20), names=("red", "green"))
    (a_rgb, a), (b_rgb, b) = two_colours(1, **colours), two_colours(2, **colours)
    ex = a[np.r_[np.flatnonzero(a.labels == "red")[:4], np.flatnonzero(a.labels == "green")[:4]]]
    det = library(a_rgb, ex, ex.labels)
    assert joint_profile(det.profile) is not None and apart(det.profile) is None
    assert_finds_each_typed(det, b_rgb, b, ("red", "green"))
    det.close()


def test_library_show_names_what_finds_the_objects(tmp_path, scene):
    a_rgb, ex, _, _ = scene
    import cv2

    image = tmp_path / "a.png"
    cv2.imwrite(str(image), cv2.cvtColor(a_rgb, cv2.COLOR_RGB2BGR))
    lab = np.zeros(a_rgb.shape[:2], np.uint16)
    types = np.zeros(a_rgb.shape[:2], np.uint8)
    for k in range(len(ex)):
        lab[ex.mask(k)] = k + 1
        types[ex.mask(k)] = 1 if ex.labels[k] == "large" else 2
    cv2.imwrite(str(tmp_path / "inst.png"), lab)
    cv2.imwrite(str(tmp_path / "type.png"), types)
    env = {"SAM_DETECT_LIBRARY_PATH": str(tmp_path / "libs")}
    r = run_cli("add", "-l", "kinds", str(image), "--labels", tmp_path / "inst.png", "--types", tmp_path / "type.png",
                "--type-names", "large,small", "--segmenter", "classical", "--embedder", "handcrafted", env=env)
    assert r.exit_code == 0, r.output
    r = run_cli("library", "show", "kinds", env=env)
    assert r.exit_code == 0, r.output
    assert "every class's examples as one class" in r.output
    assert "every class as one (which candidates are objects" in r.output


def test_each_class_keeps_its_examples_brightness_and_detect_types_by_it():
    # discs of one size, dark and mid-grey on a light ground: the examples' brightness is
    # kept per class, detect measures its candidates' and types each right
    (a_rgb, a), (b_rgb, b) = (two_colours(s, first=(40, 40, 40), second=(120, 120, 120), ground=(225, 225, 225),
                                          names=("dark", "grey")) for s in (1, 2))
    ex = a[np.r_[np.flatnonzero(a.labels == "dark")[:4], np.flatnonzero(a.labels == "grey")[:4]]]
    det = library(a_rgb, ex, ex.labels)
    shapes = [p["brightness"] for p in describe_examples(a_rgb, ex, list(ex.labels))]
    assert all(-195 < v < -175 for v in shapes[:4]) and all(-115 < v < -95 for v in shapes[4:])
    entry = det.profile["classes"]
    assert entry["dark"]["brightness"][0] < entry["grey"]["brightness"][0] - 60
    assert all(e["brightness"][1] >= 0 for e in entry.values())
    # a class of one example borrows the library's spread within a class (PRIOR_WEIGHT examples' worth)
    five = ex[:5]  # four dark, one grey
    one_grey = build_profile(list(zip(five.labels, describe_examples(a_rgb, five, list(five.labels)), strict=True)))
    dark_sd = np.std([p["brightness"] for p in describe_examples(a_rgb, ex[:4], ["dark"] * 4)], ddof=1)
    assert dark_sd > 0.1
    assert one_grey["classes"]["grey"]["brightness"][1] == pytest.approx(dark_sd, abs=0.01)
    assert one_grey["classes"]["dark"]["brightness"][1] == pytest.approx(dark_sd, abs=0.01)
    assert sum("median grey" in line for line in describe(det.profile)) == 2  # library show
    found = det.detect(b_rgb)
    assert len(found.data["brightness"]) == len(found)
    pairs = match_iou_matrix(instances_iou(found, b), 0.5).pairs
    assert len(pairs) >= 16 and all(found.labels[i] == b.labels[j] for i, j in pairs)
    dark = [found.data["brightness"][i] for i, _ in pairs if found.labels[i] == "dark"]
    assert dark and max(dark) < -150
    det.close()
    # one class: nothing to type, nothing measured
    one = library(a_rgb, ex, ["object"] * len(ex))
    assert "brightness" not in one.detect(b_rgb).data
    one.close()
    # bright classes (fluorescence: brightness follows each image's exposure): not typed by it
    (c_rgb, c), (d_rgb, d) = (two_colours(s, first=(250, 250, 250), second=(150, 150, 150), ground=(20, 20, 20),
                                          names=("bright", "dim")) for s in (1, 2))
    ex = c[np.r_[np.flatnonzero(c.labels == "bright")[:4], np.flatnonzero(c.labels == "dim")[:4]]]
    lit = library(c_rgb, ex, ex.labels)
    assert all(e["polarity"] == "bright" and "brightness" in e for e in lit.profile["classes"].values())
    assert not any("median grey" in line for line in describe(lit.profile))
    assert "brightness" not in lit.detect(d_rgb).data
    lit.close()
