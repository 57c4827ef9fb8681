"""An example image's annotation that leaves out the objects the image border cuts
(``sam_detect.unlabelled.border_record``, ``border_convention``): read at ``add``, kept in the
library, said by ``library show`` and followed by ``detect`` unless ``--keep-border``."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conftest import run_main

from sam_detect.errors import AnnotationError
from sam_detect.instances import Instances
from sam_detect.pipeline import DetectorConfig, SAMDetect
from sam_detect.unlabelled import border_convention, border_record, leaves_border_out


def _grid_of_discs(with_cut: bool, start: int = 20):
    """Bright discs (radius 8) in a 6 x 6 grid inside a 240 px image, the outer ones ``start``
    px from its edges, and 12 discs the border cuts, annotated only ``with_cut``."""
    yy, xx = np.mgrid[:240, :240]
    img = np.full((240, 240), 20, np.uint8)
    label = np.zeros((240, 240), np.int32)
    step = (240 - 2 * start) // 5
    whole = [(start + step * i, start + step * j) for i in range(6) for j in range(6)]
    cut = [(0, 48 + 48 * k) for k in range(4)] + [(239, 24 + 48 * k) for k in range(4)] + \
          [(100, 0), (200, 0), (60, 239), (160, 239)]
    for k, (cy, cx) in enumerate(whole + cut):
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= 8 ** 2
        img[disc] = 200
        if k < len(whole) or with_cut:
            label[disc] = k + 1
    return np.repeat(img[..., None], 3, axis=2), label


def _instances(label: np.ndarray) -> Instances:
    return Instances.from_label_image(label)[0]


def test_an_annotation_that_leaves_the_borders_objects_out_is_told_apart():
    """The grid without its 12 cut discs leaves them out (0 held where about 11 are
    expected, the discs near the border there); with them, it does not; nor does an
    annotation of the image's middle alone (no object near the border either), nor one of too
    few objects to tell."""
    _, bare = _grid_of_discs(False)
    _, full = _grid_of_discs(True)
    rec = border_record(_instances(bare))
    assert rec["objects"] == 36 and rec["held"] == 0 and 9 < rec["expected"] < 14 and rec["near"] == 20
    assert leaves_border_out(rec)
    assert not leaves_border_out(border_record(_instances(full)))
    short = full.copy()  # the cut discs drawn by hand, stopping two pixels short of the edge
    short[:2], short[-2:], short[:, :2], short[:, -2:] = 0, 0, 0, 0
    rec = border_record(_instances(short))
    assert rec["held"] == 12 and not leaves_border_out(rec)
    middle = np.where(np.isin(bare, np.unique(bare[60:180, 60:180])), bare, 0)  # the 16 inner discs
    rec = border_record(_instances(middle))
    assert rec["held"] == 0 and rec["near"] == 0 and not leaves_border_out(rec)
    assert border_record(_instances(bare)[:1]) is None
    few = bare.copy()
    few[few > 6] = 0  # six discs of one row: ~2 expected at the border
    assert not leaves_border_out(border_record(_instances(few)))


def test_the_library_pools_each_images_fullest_record():
    """Of each image, the record of its add with the most objects (the latest of equals);
    the images' records pooled."""
    bare = {"objects": 36, "held": 0, "expected": 11.0, "near": 20}
    full = {"objects": 48, "held": 12, "expected": 11.0, "near": 20}
    two = {"objects": 2, "held": 0, "expected": 0.6, "near": 1}
    pays = [{"image_key": "a", "added_ns": 1, "border": full}, {"image_key": "a", "added_ns": 2, "border": bare},
            {"image_key": "a", "added_ns": 2, "border": bare}]  # the same image, a smaller annotation later
    assert border_convention(pays) is None  # the fuller one counts
    pays = [{"image_key": "a", "added_ns": 1, "border": bare}, {"image_key": "a", "added_ns": 3, "border": two}]
    assert border_convention(pays) == {"held": 0, "expected": 11.0, "near": 20, "images": 1}
    again = {**bare, "held": 1}  # the same label image added again, the latest of equals
    assert border_convention(pays + [{"image_key": "a", "added_ns": 4, "border": again}])["held"] == 1
    # two images, one leaving its border out and one not: 12 held where 22 are expected
    assert border_convention(pays + [{"image_key": "b", "added_ns": 5, "border": full}]) is None
    assert border_convention([{"image_key": "c", "added_ns": 1}]) is None  # boxes, clicks: no record


def _detect(tmp_path, library: str, *flags: str) -> tuple[int, str]:
    code, out, err = run_main("detect", tmp_path / "a.png", "--json", "--segmenter", "classical", "--embedder",
                              "handcrafted", "--library-path", tmp_path / "libs", "--library", library, *flags)
    assert code == 0, err
    found = json.loads(out)
    said = any("cut by the image border left out, as the examples' annotation" in n for n in found["notes"])
    assert said == (found["dropped"].get("border", 0) > 0 and "--drop-border" not in flags), found["notes"]
    return len(found["objects"]), found["dropped"].get("border", 0), err


def test_detect_leaves_the_borders_objects_out_where_the_examples_label_image_does(tmp_path):
    """``add --labels`` of a label image that leaves the cut discs out (five of its objects
    kept as examples: the whole label image is read) says so, ``library show`` says so, and
    ``detect`` leaves the cut discs out; ``--keep-border`` keeps them. A library whose label
    image holds them finds them, and leaves them out with ``--drop-border``."""
    import cv2

    rgb, bare = _grid_of_discs(False)
    _, full = _grid_of_discs(True)
    cv2.imwrite(str(tmp_path / "a.png"), rgb)
    for name, lab in (("bare", bare), ("full", full)):
        cv2.imwrite(str(tmp_path / f"{name}.png"), lab.astype(np.uint16))
        code, _, err = run_main("add", tmp_path / "a.png", "--labels", tmp_path / f"{name}.png", "--label", "disc",
                                "--limit", "5", "--segmenter", "classical", "--embedder", "handcrafted",
                                "--library-path", tmp_path / "libs", "--library", name)
        assert code == 0, err
        said = "annotation holds 0 objects cut by the image border, where ~" in err
        assert said == (name == "bare"), err
    code, out, err = run_main("library", "show", "bare", "--library-path", tmp_path / "libs")
    assert code == 0, err
    assert "leaves them out, and detect leaves them out too (--keep-border keeps them)" in out, out

    # the image's own examples come back as drawn: a copy shifted by a pixel is another image
    cv2.imwrite(str(tmp_path / "a.png"), np.roll(rgb, 1, axis=1))
    n_bare, dropped, err = _detect(tmp_path, "bare")
    assert dropped == 12 and "detect leaves them out too (--keep-border keeps them)" in err, err
    n_kept, dropped, err = _detect(tmp_path, "bare", "--keep-border")
    assert dropped == 0 and "detect leaves them out too" not in err, err
    n_full, _, err = _detect(tmp_path, "full")
    assert "cut by the image border" not in err, err
    n_full_dropped, _, _ = _detect(tmp_path, "full", "--drop-border")
    assert n_bare == n_full_dropped == 36, (n_bare, n_full_dropped)
    assert n_kept == n_full == 48, (n_kept, n_full)


def test_the_api_reads_the_whole_annotation_and_follows_it(tmp_path):
    """``add_examples(annotation=...)``: five examples of a label image that leaves the cut
    discs out make ``detect`` leave them out, and two examples added on another image do not
    undo it; deleting the five (the record goes with them) finds the cut discs again; an
    annotation of another size is refused."""
    rgb, bare = _grid_of_discs(False)
    whole = _instances(bare)
    whole.labels[:] = "disc"
    det = SAMDetect(DetectorConfig(segmenter="classical", embedder="handcrafted", store="memory", library="x"))
    with pytest.raises(AnnotationError, match="whole annotation's size"):
        det.add_examples(rgb, whole[:5], annotation=Instances.from_label_image(bare[:200])[0])
    ids = det.add_examples(rgb, whole[:5], annotation=whole)
    assert det.border_convention["held"] == 0
    other = np.roll(rgb, 1, axis=1)
    assert len(det.detect(other)) == 36
    ids += det.add_examples(rgb, whole[7:9])  # two more on the same image later: not its annotation
    assert det.border_convention["images"] == 1
    shifted = whole[5:7]
    det.add_examples(np.roll(rgb, 2, axis=0), Instances(masks=np.roll(shifted.masks, 2, axis=1), labels=["disc"] * 2))
    assert det.border_convention["images"] == 2
    from sam_detect.store import journal

    journal.delete(det.store, "x", ids)
    det.refresh_profile()
    assert det.border_convention is None
    assert len(det.detect(other)) == 48
    det.close()


def test_limit_takes_whole_objects_before_those_the_border_cuts(tmp_path):
    """``--limit`` and ``--limit-per-label`` keep the first objects of a label image, those
    the image border cuts after the whole ones: a label image numbering its 12 cut discs
    first gives five whole discs as examples, and says how many cut ones it passed over."""
    import cv2

    rgb, full = _grid_of_discs(True)
    ids = np.unique(full[full > 0])
    cut_first = np.zeros_like(full)
    for new, old in enumerate(np.r_[ids[36:], ids[:36]], start=1):  # the 12 cut discs numbered 1-12
        cut_first[full == old] = new
    cv2.imwrite(str(tmp_path / "a.png"), rgb)
    cv2.imwrite(str(tmp_path / "cut_first.png"), cut_first.astype(np.uint16))
    for flag, name in (("--limit", "limited"), ("--limit-per-label", "per_label")):
        code, _, err = run_main("add", tmp_path / "a.png", "--labels", tmp_path / "cut_first.png", "--label", "disc",
                                flag, "5", "--segmenter", "classical", "--embedder", "handcrafted",
                                "--library-path", tmp_path / "libs", "--library", name)
        assert code == 0, err
        assert "disc: 5 examples, area 197-197 px" in err, err  # five whole discs (a cut one is ~100 px)
        said = "--limit 5 keeps the first 5 of 48 objects, whole ones first (5 the image border cuts passed over)"
        assert (said in err) == (flag == "--limit"), err


def test_eval_reads_the_example_images_whole_ground_truth():
    """The eval protocol draws its examples from a ground truth that leaves the cut discs out:
    the whole of it is read (five drawn of 36), the scored image's cut discs are left out as
    its ground truth leaves them, and the profile's lines say so. Not where the examples'
    image is the one scored: its ground truth is what is scored, and only the drawn examples
    may inform the detection."""
    from sam_detect.eval import evaluate

    rgb, bare = _grid_of_discs(False)
    cfg = DetectorConfig(segmenter="classical", embedder="handcrafted", store="memory")
    other = np.roll(rgb, 1, axis=1)
    res = evaluate([rgb, other], [bare, np.roll(bare, 1, axis=1)], cfg, shots=5, examples_from=[0], detect_on=[1],
                   iou=(0.5,), label="disc")
    m = res.metrics[0.5]
    assert (m.tp, m.fp) == (36, 0), (m.tp, m.fp, m.fn)
    assert any("leaves them out, and detect leaves them out too" in line for line in res.protocol["profile"])
    kept = evaluate([rgb, other], [bare, np.roll(bare, 1, axis=1)], dataclasses.replace(cfg, drop_border=False),
                    shots=5, examples_from=[0], detect_on=[1], iou=(0.5,), label="disc").metrics[0.5]
    assert (kept.tp, kept.fp) == (36, 12), (kept.tp, kept.fp)
    same = evaluate([rgb], [bare], cfg, shots=5, examples_from=[0], detect_on=[0], iou=(0.5,), label="disc")
    assert (same.metrics[0.5].tp, same.metrics[0.5].fp) == (31, 12), same.metrics[0.5]
    assert not any("leaves them out" in line for line in same.protocol["profile"])


def test_one_detect_keeps_or_leaves_out_the_borders_objects_as_asked(tmp_path):
    """``detect(drop_border=...)`` overrides the library's convention and the config for one
    call (``False`` keeps the cut discs a bare library leaves out, ``True`` leaves them out
    of a library that finds them, said as asked, not as the examples' rule); ``None`` is the
    config's. The browser UI's ``/api/detect`` takes the same, and ``/api/config`` says the
    config's (``sam-detect ui --keep-border``)."""
    rgb, bare = _grid_of_discs(False)
    _, full = _grid_of_discs(True)
    other = np.roll(rgb, 1, axis=1)

    def library(label: np.ndarray, **config) -> SAMDetect:
        whole = _instances(label)
        whole.labels[:] = "disc"
        det = SAMDetect(DetectorConfig(segmenter="classical", embedder="handcrafted", store="memory", library="x",
                                       **config))
        det.add_examples(rgb, whole[:5], annotation=whole)
        return det

    def found(det: SAMDetect, **kw) -> tuple[int, int, bool]:
        out = det.detect(other, **kw)
        said = any("as the examples' annotation leaves such objects out" in n for n in out.metadata["notes"])
        return len(out), out.metadata["dropped"].get("border", 0), said

    det = library(bare)
    assert found(det) == (36, 12, True)
    assert found(det, drop_border=False) == (48, 0, False)
    assert found(det, drop_border=True) == (36, 12, False)  # asked for: no note of the examples' rule
    assert det.border_followed is not None  # the config's setting is untouched by a call's
    det.close()
    det = library(full)
    assert found(det) == (48, 0, False)
    assert found(det, drop_border=True) == (36, 12, False)
    det.close()
    det = library(bare, drop_border=False)  # `--keep-border` for the whole session
    assert found(det) == (48, 0, False)
    assert found(det, drop_border=True) == (36, 12, False)

    pytest.importorskip("fastapi", reason="the UI needs fastapi (pip install fastapi uvicorn)")
    import cv2
    from fastapi.testclient import TestClient

    from sam_detect.ui import AnnotationUI

    root = tmp_path / "images"
    root.mkdir()
    cv2.imwrite(str(root / "other.png"), other)
    for config, asked, expect in ((False, {}, 48), (None, {}, 36), (None, {"drop_border": False}, 48),
                                  (None, {"drop_border": None}, 36), (None, {"drop_border": True}, 36)):
        det = library(bare, drop_border=config)
        ui = AnnotationUI(det, root, thumbnail_dir=tmp_path / "thumbs")
        try:
            client = TestClient(ui.app(), base_url="http://127.0.0.1")
            headers = {"X-SAM-Detect": "1"}
            assert client.get("/api/config", headers=headers).json()["drop_border"] == config
            r = client.post("/api/detect", json={"path": "other.png", **asked}, headers=headers)
            assert r.status_code == 200, r.text
            res = r.json()
            assert res["count"] == expect, (config, asked, res["count"])
            said = any("cut by the image border left out" in n for n in res["notes"])
            assert said == (config is None and asked.get("drop_border") is None), res["notes"]
            r = client.post("/api/detect", json={"path": "other.png", "drop_border": "sometimes"}, headers=headers)
            assert r.status_code == 422, r.text  # not a yes, no or null: refused, nothing detected
        finally:
            ui.stop()
