"""A bright class's flat background follows the image's ground (``profile.ground_shift``):
the examples' ring level was measured on their images, and another image's ground may lie
higher along the class's colour (haze, autofluorescence, another exposure's offset): a flat
threshold is raised as far. A lower ground leaves it where the examples put it."""

from __future__ import annotations

import numpy as np
import pytest

from sam_detect import DetectorConfig, SAMDetect
from sam_detect import profile as P
from sam_detect.eval.matching import match_iou_matrix
from sam_detect.eval.metrics import instances_iou
from sam_detect.instances import Instances
from sam_detect.segment import create_segmenter
from sam_detect.segment.calibrated import Setting

#: two-colour fluorescence: a green cell body with a red tint on a dark ground
GROUND = np.array([4.0, 6.0, 0.0])
OBJECT = np.array([30.0, 150.0, 0.0])


def scene(seed: int, raise_by=(0.0, 0.0, 0.0), size: int = 160, n: int = 14):
    """``(rgb, label image)``: ``n`` discs of radius 7-10 on the ground, everything raised by
    ``raise_by`` (an additive haze), with noise."""
    rng = np.random.default_rng(seed)
    lab = np.zeros((size, size), np.int32)
    yy, xx = np.mgrid[:size, :size]
    k = 0
    for _ in range(3000):
        if k == n:
            break
        cy, cx = rng.uniform(14, size - 14, 2)
        r = rng.uniform(7, 10)
        if (lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= (r + 4) ** 2] > 0).any():
            continue
        k += 1
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k
    img = np.where(lab[..., None] > 0, OBJECT, GROUND) + np.asarray(raise_by) + rng.normal(0, 3, (size, size, 3))
    img[..., 2] = 0
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), lab


def library(rgb, lab, n: int = 8):
    gt, _ = Instances.from_label_image(lab)
    stats = P.describe_examples(rgb, gt[np.arange(n)], ["cell"] * n)
    return stats, P.build_profile([("cell", s) for s in stats])


def flat_only(profile: dict, level: float = 0.3) -> dict:
    """The profile with one flat-background setting: what the ground moves."""
    entry = dict(profile["classes"]["cell"])
    entry["settings"] = [Setting("flat", level, 0.0, 0.1).to_dict()]
    return {**profile, "classes": {"cell": entry}}


def found(pred: Instances, lab: np.ndarray) -> int:
    gt, _ = Instances.from_label_image(lab)
    return match_iou_matrix(instances_iou(pred, gt), 0.5).tp if len(pred) else 0


def test_ground_colour_is_the_low_class_mean_and_none_for_a_flat_image():
    rgb, _ = scene(0)
    d = np.array([0.12, 0.99, 0.0])
    np.testing.assert_allclose(P.ground_colour(rgb, d), GROUND, atol=1.0)
    raised, _ = scene(0, raise_by=(20, 50, 0))
    np.testing.assert_allclose(P.ground_colour(raised, d), GROUND + (20, 50, 0), atol=1.0)
    assert P.ground_colour(np.full((16, 16, 3), 9, np.uint8), d) is None
    grey = np.where(scene(0)[1] > 0, 150, 6).astype(np.uint8)  # a grey (H, W) image
    np.testing.assert_allclose(P.ground_colour(grey, np.full(3, 0.577)), [6, 6, 6], atol=0.5)


def test_a_large_image_s_ground_is_read_off_a_sample(monkeypatch):
    rgb, _ = scene(10, raise_by=(5, 20, 0))
    d = np.array([0.12, 0.99, 0.0])
    every_third = P.ground_colour(rgb, d)
    monkeypatch.setattr(P, "GROUND_SAMPLE", 2000)  # 25,600 pixels: every 12th read
    np.testing.assert_allclose(P.ground_colour(rgb, d), every_third, atol=0.5)
    np.testing.assert_allclose(every_third, GROUND + (5, 20, 0), atol=1.0)


def test_the_profile_keeps_a_bright_class_s_ground_and_no_dark_one_s():
    rgb, lab = scene(1)
    stats, profile = library(rgb, lab)
    assert all("ground" in s for s in stats)
    np.testing.assert_allclose(profile["classes"]["cell"]["ground"], GROUND, atol=1.0)
    level = float(np.asarray(profile["classes"]["cell"]["ground"]) @ np.asarray(profile["classes"]["cell"]["direction"]))
    assert 5 < level < 8 and f"ground {level:.0f} along that direction" in " ".join(P.describe(profile))
    dark, dlab = (255 - rgb), lab  # the same scene as dark objects on a bright ground
    stats, profile = library(dark, dlab)
    assert profile["classes"]["cell"]["polarity"] == "dark"
    assert not any("ground" in s for s in stats) and "ground" not in profile["classes"]["cell"]


def test_ground_shift_is_how_far_the_image_s_ground_lies_along_the_direction():
    rgb, lab = scene(2)
    _, profile = library(rgb, lab)
    entry = profile["classes"]["cell"]
    d = np.asarray(entry["direction"])
    assert (P.ground_shift(rgb, entry) or 0.0) < 0.5  # the examples' own image
    raised, _ = scene(3, raise_by=(20, 50, 0))
    assert P.ground_shift(raised, entry) == pytest.approx(float(np.array([20, 50, 0]) @ d), abs=1.0)
    # an image mapped onto the examples' levels (profile.level_gain) has its ground mapped too
    mapped = P.ground_shift(raised, entry, ground=list(GROUND + (20, 50, 0)), gain=(2.0, 0.0))
    assert mapped == pytest.approx(float((GROUND + (20, 50, 0)) / 2.0 @ d - np.asarray(entry["ground"]) @ d), abs=0.01)
    assert P.ground_shift(raised, entry, gain=(1.0, 60.0)) is None  # mapped below the examples' ground
    # a ground lower than the examples' leaves the threshold where the examples put it
    darker = np.clip(rgb.astype(np.int16) - 3, 0, 255).astype(np.uint8)
    assert P.ground_shift(darker, entry) is None
    assert P.ground_shift(raised, {**entry, "polarity": "dark"}) is None
    # a class with no flat-background setting has nothing to move: the ground is not read
    local = {**entry, "settings": [Setting("opening", 0.3, 0.0, 0.1).to_dict()]}
    assert not P.follows_ground(local) and P.ground_shift(raised, local) is None
    assert P.follows_ground(flat_only(profile)["classes"]["cell"])
    assert P.ground_shift(raised, {k: v for k, v in entry.items() if k != "ground"}) is None  # an older library


def test_a_flat_background_follows_a_raised_ground(monkeypatch):
    """Everything raised by haze of 0.4 of the objects' contrast: a flat threshold at the
    examples' ring level plus 0.3 of their contrast then takes in the whole ground, and the
    discs are lost in it. Thresholded above the image's own ground, they are found."""
    rgb, lab = scene(4)
    _, profile = library(rgb, lab)
    entry = profile["classes"]["cell"]
    haze = 0.4 * entry["contrast"] * np.asarray(entry["direction"]) / float(np.dot(entry["direction"], entry["direction"]))
    raised, rlab = scene(5, raise_by=np.clip(haze, 0, None))
    seg = create_segmenter("classical")
    flat = flat_only(profile)
    got = seg.segment(raised, flat)
    shift = got.metadata["ground_shift"]["cell"]
    assert shift == pytest.approx(P.ground_shift(raised, entry), abs=1e-6) and shift > 0.3 * entry["contrast"]
    n = int(rlab.max())
    assert found(got, rlab) >= 0.9 * n
    monkeypatch.setattr(P, "GROUND_FOLLOWS", False)
    without = seg.segment(raised, flat)
    assert "ground_shift" not in without.metadata
    assert found(without, rlab) <= 0.5 * n
    # the examples' own image is proposed as before
    assert found(seg.segment(rgb, flat), lab) >= 0.9 * int(lab.max())


def test_a_region_takes_the_whole_image_s_ground():
    """A prompt's region (a window around a click) is proposed as the whole image is: its
    ground is the whole image's (``image_ground``), not the region's own."""
    rgb, lab = scene(6)
    _, profile = library(rgb, lab)
    entry = profile["classes"]["cell"]
    raised, _ = scene(7, raise_by=(10, 40, 0))
    whole = P.ground_colour(raised, entry["direction"])
    region = raised[40:90, 40:90]
    seg = create_segmenter("classical")
    got = seg.segment(region, {**flat_only(profile), "image_ground": {"cell": whole}})
    assert got.metadata["ground_shift"]["cell"] == pytest.approx(P.ground_shift(raised, entry), abs=1e-6)


def test_detect_says_where_the_ground_moved(tmp_path, caplog):
    import logging

    rgb, lab = scene(8)
    gt, _ = Instances.from_label_image(lab)
    det = SAMDetect(DetectorConfig(store="memory", embedder="handcrafted"))
    det.add_examples(rgb, gt[np.arange(8)], ["cell"] * 8)
    entry = det.profile["classes"]["cell"]
    haze = 0.3 * entry["contrast"] * np.asarray(entry["direction"]) / float(np.dot(entry["direction"], entry["direction"]))
    raised, rlab = scene(9, raise_by=np.clip(haze, 0, None))
    with caplog.at_level(logging.INFO, logger="sam_detect"):
        out = det.detect(raised)
    assert "this image's ground lies " in caplog.text and " above the examples' images'" in caplog.text
    assert out.metadata["candidates"] >= int(rlab.max())  # every disc proposed (how alike they are is the vote's)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sam_detect"):
        det.detect(rgb)
    assert "ground lies" not in caplog.text  # the examples' own image: no move to speak of


def test_ground_notes_name_moves_of_a_tenth_of_the_contrast():
    profile = {"classes": {"a": {"contrast": 100.0}, "b": {"contrast": 10.0}}}
    assert P.ground_notes({"a": 5.0, "b": 5.0}, profile) == {"b": 5.0}
    assert P.ground_notes({"a": 12.0}, profile) == {"a": 12.0}
    assert P.ground_notes(None, profile) == {}
