"""Clumps a setting's split leaves whole: ``calibrated.propose`` offers the other splits'
pieces of a region larger than the examples' size range, instead of dropping the region
with every object in it."""

from __future__ import annotations

import numpy as np

from sam_detect.segment.calibrated import GRID_INDEX, Scale, Setting, propose

R = 8


def _field(centres: list[tuple[int, int]], hw: tuple[int, int] = (90, 120)) -> tuple[np.ndarray, list[np.ndarray]]:
    """A grey image of disks of radius ``R``, each brightest in its middle (``60 + 40 (1 - d / R)``),
    touching where their centres lie closer than ``2 R``; and each disk's mask (a pixel the
    nearest centre's)."""
    yy, xx = np.mgrid[: hw[0], : hw[1]].astype(np.float32)
    d = np.stack([np.hypot(yy - cy, xx - cx) for cy, cx in centres])
    near = d.argmin(axis=0)
    dmin = d.min(axis=0)
    inside = dmin <= R
    v = np.where(inside, 60 + 40 * (1 - dmin / R), 0.0)
    rgb = np.repeat(np.clip(v, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    return rgb, [inside & (near == k) for k in range(len(centres))]


def _scale() -> Scale:
    area = float(np.pi * R * R)
    return Scale(direction=np.ones(3, np.float32) / np.sqrt(3), contrast=80.0 * np.sqrt(3), ring_level=0.0,
                 radius=float(R), max_radius=float(R) + 1, min_area=0.5 * area, max_area=2.0 * area)


def _best_iou(inst, mask: np.ndarray) -> float:
    best = 0.0
    for c in inst.crops:
        full = np.zeros(mask.shape, bool)
        x0, y0 = c.origin
        full[y0 : y0 + c.crop.shape[0], x0 : x0 + c.crop.shape[1]] = c.crop
        best = max(best, float((full & mask).sum() / (full | mask).sum()))
    return best


def test_a_clump_the_chosen_split_leaves_whole_yields_its_nuclei():
    """Four touching disks in a row and one apart; the chosen setting does not split, so the
    row is one region four disks large, over the size range. It used to be dropped (the
    isolated disk alone proposed); now the other splits' pieces of it are offered, each
    attributed to the split that drew it, as stable as one setting's candidate."""
    centres = [(30, 20), (30, 34), (30, 48), (30, 62), (70, 95)]
    rgb, disks = _field(centres)
    lead = Setting("flat", 0.3, 0.0, 0.0, "shape")
    inst = propose(rgb, _scale(), [lead])
    assert _best_iou(inst, disks[4]) > 0.8
    for k in range(4):
        assert _best_iou(inst, disks[k]) > 0.7, k
    made = np.asarray(inst.data["setting"])
    assert (made != GRID_INDEX[lead]).sum() >= 4  # the pieces: another split's
    assert np.allclose(inst.data["stability"], 1.0)  # one setting proposes: each piece as stable as its candidates
    assert not inst.metadata.get("oversize")


def test_a_region_no_split_parts_is_counted():
    """One disk 1.7 times the examples' largest area, brightest in its middle: no split parts
    it, and the size range leaves it out; ``metadata["oversize"]`` says so."""
    yy, xx = np.mgrid[:80, :80].astype(np.float32)
    d = np.hypot(yy - 40, xx - 40)
    r = 15
    big = d <= r
    v = np.where(big, 60 + 40 * (1 - d / r), 0.0)
    rgb = np.repeat(v.astype(np.uint8)[..., None], 3, axis=2)
    inst = propose(rgb, _scale(), [Setting("flat", 0.3, 0.0, 0.25, "shape")])
    assert len(inst) == 0
    assert inst.metadata.get("oversize") == 1



def _three_cones() -> tuple[np.ndarray, Scale]:
    """Three cones (radius 10) in an L, touching, on black: one region of 829 px above a
    level of 0.05 (solidity 0.88: notched where they meet), of 709 px above 0.15; the size
    range ends at 740 px, so each cone (about 280 px) lies within it."""
    yy, xx = np.mgrid[:80, :90].astype(np.float32)
    cones = [np.clip(100 * (1 - np.hypot(yy - cy, xx - cx) / 10), 0, None) for cy, cx in ((30, 36), (30, 52), (46, 36))]
    rgb = np.repeat(np.max(cones, axis=0).astype(np.uint8)[..., None], 3, axis=2)
    area = float(np.pi * 7 * 7)
    scale = Scale(direction=np.ones(3, np.float32) / np.sqrt(3), contrast=80.0 * np.sqrt(3), ring_level=0.0,
                  radius=7.0, max_radius=8.0, min_area=0.5 * area, max_area=740.0)
    return rgb, scale


def test_a_region_another_setting_draws_within_the_size_range_is_not_split_again():
    """The lead's low level draws the three cones as one region over the size range; alone,
    it is offered as the three cones another split draws. Where another setting's higher
    level draws the region as one candidate within the range (holding over half of it), its
    objects are not lost to the size range: that candidate stands for them, as before, and
    the region is neither split again nor counted as left out."""
    rgb, scale = _three_cones()
    lead = Setting("flat", 0.05, 0.0, 0.0, "shape")
    alone = propose(rgb, scale, [lead])
    assert len(alone) == 3 and (np.asarray(alone.data["setting"]) != GRID_INDEX[lead]).all()
    other = Setting("flat", 0.15, 0.0, 0.0, "shape")
    both = propose(rgb, scale, [lead, other])
    assert len(both) == 1 and int(both.data["setting"][0]) == GRID_INDEX[other]
    assert not both.metadata.get("oversize")


def test_a_region_far_over_the_size_range_is_not_split_again(monkeypatch):
    """A region more than ``CLUMP_MAX`` times the size range's end is the ground taken for
    foreground, not a clump: it is left whole (counted), not split at every variant's cost."""
    from sam_detect.segment import calibrated

    rgb, scale = _three_cones()
    monkeypatch.setattr(calibrated, "CLUMP_MAX", 1.05)  # the region: 829 / 740 = 1.12 times
    inst = propose(rgb, scale, [Setting("flat", 0.05, 0.0, 0.0, "shape")])
    assert len(inst) == 0
    assert inst.metadata.get("oversize") == 1


def test_a_clump_stained_off_the_class_s_hue_is_not_offered_in_pieces():
    """A stain class (``Scale.hue_direction``, ``hue_limit``): the row of four touching disks
    is offered in pieces where its colour is the class's hue, and left whole (counted) where
    it lies further off than the limit: tissue stained otherwise (an immunostain's brown
    beside blue nuclei), whose pieces the hue rule could not tell apart one by one."""
    import dataclasses

    from sam_detect.profile import optical_hue

    centres = [(30, 20), (30, 34), (30, 48), (30, 62), (70, 95)]
    rgb, disks = _field(centres)
    lead = Setting("flat", 0.3, 0.0, 0.0, "shape")
    grey = optical_hue([[80, 80, 80]])[0]  # the disks' own hue
    blue = optical_hue([[120, 120, 190]])[0]
    on = propose(rgb, dataclasses.replace(_scale(), hue_direction=grey, hue_limit=10.0), [lead])
    assert all(_best_iou(on, disks[k]) > 0.7 for k in range(4))
    assert not on.metadata.get("oversize")
    off = propose(rgb, dataclasses.replace(_scale(), hue_direction=blue, hue_limit=10.0), [lead])
    assert len(off) == 1 and _best_iou(off, disks[4]) > 0.8  # the isolated disk alone
    assert off.metadata.get("oversize") == 1
