"""``sam-detect refine``: rough annotations in, SAM2 masks out, in the input's own format.

SAM2 runs for real with random weights (see test_sam2.py), so the refined masks are
arbitrary; the tests check the plumbing: grouping, coordinates (a refined annotation is
exactly what prompting SAM2 with its box gives), format round trips, untouched originals,
degenerate annotations kept with a warning, and exit codes.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from conftest import run_cli

DISCS = [(60, 60, 20), (180, 70, 18), (120, 190, 22)]


@pytest.fixture()
def scene(tmp_path):
    yy, xx = np.mgrid[:256, :256]
    img = np.full((256, 256, 3), 25, np.uint8)
    labels = np.zeros((256, 256), np.uint16)
    for i, (x, y, r) in enumerate(DISCS):
        m = (xx - x) ** 2 + (yy - y) ** 2 < r * r
        img[m] = 200
        labels[m] = 10 * (i + 1)
    path = tmp_path / "cells.png"
    cv2.imwrite(str(path), img[..., ::-1])
    return path, img, labels


def run(sam2_ckpt, *args):
    return run_cli("refine", *args, "--sam-checkpoint", sam2_ckpt, "--sam-image-size", 256,
                   "--device", "cpu")


def expected_mask(sam2_ckpt, img, box, pad=0.0):
    """What SAM2 gives for this box prompt, largest part kept (the refine default)."""
    from sam_detect.refine import pad_box as _pad_box
    from sam_detect.refine import postprocess as _postprocess
    from sam_detect.segment.sam2 import SAM2Segmenter

    seg = SAM2Segmenter(checkpoint=str(sam2_ckpt), device="cpu", image_size=256)
    b = _pad_box(np.asarray(box, np.float32), pad, img.shape[:2])
    return _postprocess(seg.prompt_batch(img, boxes=b[None]).masks[0], 0, False)


def test_refine_help():
    r = run_cli("refine", "--help")
    assert (
        r.exit_code == 0
        and "--annotations" in r.output
        and "--pad" in r.output
        and "--sam-model" in r.output
    )


@pytest.mark.slow
def test_coco_refine_keeps_everything_but_geometry(sam2_ckpt, scene, tmp_path):
    from sam_detect.masks import polygons_to_mask, rle_to_mask

    path, img, _ = scene
    coco = {
        "images": [
            {"id": 7, "file_name": "sub/cells.png", "height": 256, "width": 256},
            {"id": 8, "file_name": "other.png", "height": 256, "width": 256},
        ],
        "categories": [{"id": 3, "name": "cell"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 7,
                "category_id": 3,
                "bbox": [38, 38, 44, 44],
                "iscrowd": 0,
                "note": "a",
            },
            {
                "id": 2,
                "image_id": 7,
                "category_id": 3,
                "segmentation": [[160, 50, 200, 50, 200, 90, 160, 90]],
                "iscrowd": 0,
            },
            {
                "id": 3,
                "image_id": 7,
                "category_id": 3,
                "bbox": [10, 10, 0, 5],
                "iscrowd": 0,
            },  # degenerate
            {
                "id": 4,
                "image_id": 8,
                "category_id": 3,
                "bbox": [1, 1, 5, 5],
                "iscrowd": 0,
            },  # image not given
        ],
    }
    src = tmp_path / "rough.json"
    src.write_text(json.dumps(coco))
    before = src.read_bytes()
    r = run(sam2_ckpt, path, "-a", src, "--pad", "2")
    assert r.exit_code == 0, r.output
    out = tmp_path / "rough.refined.json"
    assert out.read_text().strip() and str(out) in r.output
    assert src.read_bytes() == before  # the original is untouched
    assert "annotation id 3 has no usable box" in r.output and "kept unchanged" in r.output
    doc = json.loads(out.read_text())
    assert doc["images"] == coco["images"] and doc["categories"] == coco["categories"]
    anns = {a["id"]: a for a in doc["annotations"]}
    assert anns[1]["note"] == "a" and anns[1]["category_id"] == 3
    assert anns[3] == coco["annotations"][2] and anns[4] == coco["annotations"][3]
    for ann_id, box in ((1, [38, 38, 82, 82]), (2, [160, 50, 200, 90])):
        a = anns[ann_id]
        seg = a["segmentation"]
        mask = (
            rle_to_mask(seg)
            if isinstance(seg, dict)
            else polygons_to_mask([np.asarray(p).reshape(-1, 2) for p in seg], (256, 256))
        )
        want = expected_mask(sam2_ckpt, img, box, pad=2)
        inter, union = np.count_nonzero(mask & want), np.count_nonzero(mask | want)
        assert inter / union > 0.9  # polygons are simplified outlines of the SAM2 mask
        x, y, w, h = a["bbox"]
        ys, xs = np.nonzero(want)
        assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert a["area"] == int(want.sum())


def test_label_image_folder(sam2_ckpt, scene, tmp_path):
    path, img, labels = scene
    folder = tmp_path / "rough"
    folder.mkdir()
    cv2.imwrite(str(folder / "cells_labels.png"), labels)
    r = run(sam2_ckpt, path, "-a", folder, "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output[r.output.index("{") :])
    out = tmp_path / "rough_refined" / "cells_labels.png"
    assert summary["written"] == [str(out)] and summary["images"] == 1
    assert summary["refined"] + summary["kept_unchanged"] == 3
    new = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert new.dtype == np.uint16 and new.shape == labels.shape
    assert set(np.unique(new)) <= {0, 10, 20, 30}
    ys, xs = np.nonzero(labels == 10)
    want = expected_mask(sam2_ckpt, img, (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    assert np.all(new[want & (new != 20) & (new != 30)] == 10)


def test_labelme_points_and_rectangles(sam2_ckpt, scene, tmp_path):
    path, img, _ = scene
    doc = {
        "version": "5.4.1",
        "shapes": [
            {
                "label": "cell",
                "points": [[40, 40], [80, 80]],
                "shape_type": "rectangle",
                "group_id": None,
            },
            {"label": "cell", "points": [[180, 70]], "shape_type": "point", "group_id": None},
            {"label": "line", "points": [[1, 1], [9, 9]], "shape_type": "line", "group_id": None},
        ],
        "imagePath": "cells.png",
        "imageHeight": 256,
        "imageWidth": 256,
    }
    src = tmp_path / "cells.json"
    src.write_text(json.dumps(doc))
    out = tmp_path / "out.json"
    r = run(sam2_ckpt, path, "-a", src, "-o", out)
    assert r.exit_code == 0, r.output
    new = json.loads(out.read_text())
    shapes = new["shapes"]
    assert [s["label"] for s in shapes] == ["cell", "cell", "line"]
    assert shapes[0]["shape_type"] == "polygon" and len(shapes[0]["points"]) >= 3
    assert shapes[1]["shape_type"] == "polygon"
    assert shapes[2] == doc["shapes"][2]
    assert new["imagePath"] == "cells.png"


def test_refine_bad_arguments(sam2_ckpt, scene, tmp_path):
    path, _, _ = scene
    src = tmp_path / "x.json"
    src.write_text(json.dumps({"shapes": []}))
    r = run(sam2_ckpt, path, "-a", src, "-o", tmp_path / "o.json", "--in-place")
    assert r.exit_code == 2 and "give --output or --in-place, not both" in r.output
    src.write_text(json.dumps({"foo": 1}))
    r = run(sam2_ckpt, path, "-a", src)
    assert r.exit_code == 1 and "Error: " in r.output and "neither COCO" in r.output


def test_a_stacks_frames_are_refined_from_a_coco_file_that_names_them(sam2_ckpt, scene, tmp_path):
    """`refine STACK -a FILE` failed telling the user to give `--frame`, which refine does not
    take, and a COCO file `detect --frame K --coco` writes (its images name their frame) could
    not be refined (a helper's bug hunt). Each frame the file names is refined on that frame;
    a labelme file on a stack says where frames come from."""
    import tifffile

    from sam_detect.formats import to_coco
    from sam_detect.instances import Instances

    _, img, labels = scene
    stack = tmp_path / "stack.tif"
    frames = np.stack([img[..., 0], np.roll(img[..., 0], 40, axis=1)])
    tifffile.imwrite(stack, frames, metadata={"axes": "ZYX"})
    items = []
    for k in (0, 1):
        inst, _ = Instances.from_label_image(labels if k == 0 else np.roll(labels, 40, axis=1))
        inst.labels = np.array(["cell"] * len(inst), dtype=object)
        inst.metadata["frame"] = k
        items.append(inst)
    doc = to_coco(items, [stack.name, stack.name])
    assert [im["frame"] for im in doc["images"]] == [0, 1]
    src = tmp_path / "rough.json"
    src.write_text(json.dumps(doc))
    r = run(sam2_ckpt, stack, "-a", src, "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output[r.output.index("{"):])
    assert summary["images"] == 2 and summary["refined"] + summary["kept_unchanged"] == 6
    assert "stack.tif frame 1:" in r.output
    labelme = tmp_path / "stack.json"
    labelme.write_text(json.dumps({"shapes": [{"label": "cell", "shape_type": "rectangle",
                                               "points": [[40, 40], [80, 80]]}], "imageHeight": 256,
                                   "imageWidth": 256, "imagePath": "stack.tif"}))
    r = run(sam2_ckpt, stack, "-a", labelme)
    assert r.exit_code == 1 and "stack.tif: a stack of 2 frames; give --frame K (0..1)" in r.output
    assert "or a COCO file whose images name their frames" in r.output


def test_refine_reads_a_stacks_frame_count_from_the_error_not_its_words(scene, tmp_path, monkeypatch):
    """``refine_image`` read a stack's frame count out of the loader's message with a regex:
    another wording of that message lost the count and gave the loader's line instead of
    refine's. The count is the error's ``n_frames``; refine's line is as it was."""
    import tifffile

    import sam_detect.io.images as images
    from sam_detect.errors import FrameRequiredError, ImageLoadError
    from sam_detect.refine import RefineOptions, RefineStats, refine_image

    _, img, _ = scene
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.stack([img[..., 0]] * 3), photometric="minisblack", metadata={"axes": "ZYX"})

    def refine():
        refine_image(None, stack, lambda hw: [], None, RefineOptions(), RefineStats(), lambda _: None)

    want = ("stack.tif: a stack of 3 frames; give --frame K (0..2) for the frame the annotations describe, or a "
            "COCO file whose images name their frames, as `sam-detect detect STACK --frame K --coco FILE` writes it")
    with pytest.raises(ImageLoadError) as e:
        refine()
    assert str(e.value) == want

    def reworded(path, **_):
        raise FrameRequiredError(f"{path}: 3 frames, none chosen", 3)

    monkeypatch.setattr(images, "load_image", reworded)
    with pytest.raises(ImageLoadError) as e:
        refine()
    assert str(e.value) == want


def test_refine_frame_k_of_a_stack_for_labelme_label_image_and_coco(sam2_ckpt, scene, tmp_path):
    """`refine` took no frame: a labelme file or label image of one frame of a stack could not
    be refined at all (the refusal said so). `--frame K` says which frame the annotations
    describe; a label stack has frame K refined and the others kept; a COCO file naming its
    frames has only frame K's refined; a frame past the end is one line naming the count."""
    import tifffile

    from sam_detect.formats import to_coco
    from sam_detect.instances import Instances
    from sam_detect.io.images import load_image

    _, img, labels = scene
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.stack([img[..., 0], np.roll(img[..., 0], 40, axis=1)]), metadata={"axes": "ZYX"})
    moved = np.roll(labels, 40, axis=1)  # frame 1's objects
    rgb1 = load_image(stack, frame=1).rgb

    labelme = tmp_path / "stack.json"
    labelme.write_text(json.dumps({"shapes": [{"label": "cell", "shape_type": "rectangle",
                                               "points": [[80, 40], [120, 80]]}], "imageHeight": 256,
                                   "imageWidth": 256, "imagePath": "stack.tif"}))
    r = run(sam2_ckpt, stack, "-a", labelme, "--frame", 1, "-o", tmp_path / "lm.json")
    assert r.exit_code == 0, r.output
    assert "stack.tif frame 1: 1/1 refined" in r.output
    assert json.loads((tmp_path / "lm.json").read_text())["shapes"][0]["shape_type"] == "polygon"

    ys, xs = np.nonzero(moved == 10)
    want = expected_mask(sam2_ckpt, rgb1, (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    one = tmp_path / "one_labels.tif"
    tifffile.imwrite(one, moved)
    r = run(sam2_ckpt, stack, "-a", one, "--frame", 1, "-o", tmp_path / "one_out.tif")
    assert r.exit_code == 0, r.output
    new = tifffile.imread(tmp_path / "one_out.tif")
    assert new.shape == labels.shape and np.all(new[want & (new != 20) & (new != 30)] == 10)

    both = tmp_path / "both_labels.tif"
    tifffile.imwrite(both, np.stack([labels, moved]), metadata={"axes": "ZYX"})
    r = run(sam2_ckpt, stack, "-a", both, "--frame", 1, "-o", tmp_path / "both_out.tif")
    assert r.exit_code == 0, r.output
    new = tifffile.imread(tmp_path / "both_out.tif")
    assert new.shape == (2, *labels.shape) and np.array_equal(new[0], labels)  # frame 0 kept as it was
    assert np.all(new[1][want & (new[1] != 20) & (new[1] != 30)] == 10)

    items = []
    for k in (0, 1):
        inst, _ = Instances.from_label_image(labels if k == 0 else moved)
        inst.labels = np.array(["cell"] * len(inst), dtype=object)
        inst.metadata["frame"] = k
        items.append(inst)
    coco = tmp_path / "rough.json"
    coco.write_text(json.dumps(to_coco(items, [stack.name, stack.name])))
    r = run(sam2_ckpt, stack, "-a", coco, "--frame", 1, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output[r.output.index("{"):])["images"] == 1 and "stack.tif frame 0" not in r.output

    for src, count in ((labelme, "the file holds 2 frame(s) (0..1)"), (one, "the file holds 2 frame(s) (0..1)"),
                       (both, "the label stack holds 2 frame(s) (0..1)")):
        r = run(sam2_ckpt, stack, "-a", src, "--frame", 2)
        assert r.exit_code == 1 and "frame 2 out of range: " + count in r.output, r.output
        assert r.output.count("\n") == 1 and "Traceback" not in r.output


def test_a_coco_file_whose_images_share_an_id_is_refused_before_refining(scene, tmp_path):
    """Two images of one id (files merged by concatenating their lists): each annotation of that
    id was refined on the first image's pixels, then again on the second's, over the first."""
    from sam_detect.errors import AnnotationError
    from sam_detect.refine import RefineOptions, RefineStats, refine_coco

    path, img, _ = scene
    other = tmp_path / "other.png"
    cv2.imwrite(str(other), img[..., ::-1])
    doc = {"images": [{"id": 1, "file_name": "cells.png", "height": 256, "width": 256},
                      {"id": 1, "file_name": "other.png", "height": 256, "width": 256}],
           "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [40, 40, 40, 40]}],
           "categories": [{"id": 1, "name": "cell"}]}
    with pytest.raises(AnnotationError) as e:  # seg None: refused before any image is prompted
        refine_coco(None, [path, other], doc, "merged.json", RefineOptions(), RefineStats(), lambda _: None)
    assert str(e.value) == ("merged.json: images 'cells.png' and 'other.png' share id 1: an annotation's image_id "
                            "must name one image; give each its own id")


def test_malformed_entries_are_named_not_internal_errors(sam2_ckpt, scene, tmp_path):
    """A COCO or labelme file whose lists hold other things than objects, or whose bbox or
    points are not numbers, ended in "Error: internal error (AttributeError: 'str' object has
    no attribute 'get'); please report it". A broken structure is one line naming the file and
    the entry; an unreadable bbox falls back to the segmentation's box and unreadable points
    leave their shape unchanged, each with a warning, and the rest is refined."""
    path, _, _ = scene
    poly = [40, 40, 80, 40, 80, 80, 40, 80]
    coco = {"images": [{"id": 1, "file_name": "cells.png", "height": 256, "width": 256}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [40, 40, 40, 40],
                             "segmentation": [poly]}],
            "categories": [{"id": 1, "name": "cell"}]}
    broken = {
        "images.json": {**coco, "images": "cells.png"},
        "annotations.json": {**coco, "annotations": {"a": 1}},
        "annotation.json": {**coco, "annotations": ["cell"]},
        "shapes.json": {"shapes": ["cell"]},
        "shapes_str.json": {"shapes": "cell"},
    }
    for name, doc in broken.items():
        src = tmp_path / name
        src.write_text(json.dumps(doc))
        r = run(sam2_ckpt, path, "-a", src, "-o", tmp_path / "out.json")
        assert r.exit_code == 1 and "internal error" not in r.output, (name, r.output)
        assert f"Error: {name}: " in r.output and "must be" in r.output, (name, r.output)
    ann = coco["annotations"][0]
    src = tmp_path / "bbox.json"
    src.write_text(json.dumps({**coco, "annotations": [{**ann, "bbox": ["a", 1, 2, 3]},
                                                       {**ann, "id": 2, "bbox": [1e308, 0, 1e308, 5]}]}))
    r = run(sam2_ckpt, path, "-a", src, "-o", tmp_path / "out.json")
    assert r.exit_code == 0 and r.output.count("unreadable bbox") == 2, r.output
    assert "overflow" not in r.output and "2 refined, 0 kept unchanged" in r.output
    src = tmp_path / "points.json"
    src.write_text(json.dumps({"shapes": [
        {"label": "a", "points": [["x", "y"], [3, 4]], "shape_type": "rectangle"},
        {"label": "b", "points": [[1, 2, 3]], "shape_type": "polygon"},
        {"label": "c", "points": [[40, 40], [80, 80]], "shape_type": "rectangle"}]}))
    r = run(sam2_ckpt, path, "-a", src, "-o", tmp_path / "out.json")
    assert r.exit_code == 0 and r.output.count("unreadable points") == 2, r.output
    assert "1 refined" in r.output
    shapes = json.loads((tmp_path / "out.json").read_text())["shapes"]
    assert shapes[0]["points"] == [["x", "y"], [3, 4]] and shapes[1]["points"] == [[1, 2, 3]]
    assert shapes[2]["shape_type"] == "polygon"


def test_quiet_hides_the_label_readers_warnings_too(sam2_ckpt, scene, tmp_path):
    """``-q``: "No progress or warnings on stderr"; a label image whose ids lie in many pieces
    (read as classes, each piece an object) was still said, through the logger, and without
    ``-q`` without refine's ``sam-detect: warning:``."""
    import tifffile

    path, _, _ = scene
    labels = np.zeros((256, 256), np.uint16)
    for i in range(4):
        for j in range(4):
            labels[10 + 60 * i : 30 + 60 * i, 10 + 60 * j : 30 + 60 * j] = 1 + (4 * i + j) % 3
    src = tmp_path / "pieces.tif"
    tifffile.imwrite(src, labels)
    r = run(sam2_ckpt, path, "-a", src, "-o", tmp_path / "a.tif")
    assert r.exit_code == 0 and f"sam-detect: warning: {src}: id(s) 1 (6 pieces)" in r.output, r.output
    r = run(sam2_ckpt, path, "-a", src, "-o", tmp_path / "b.tif", "-q")
    assert r.exit_code == 0 and "pieces" not in r.output, r.output


def test_images_of_one_name_in_several_folders_each_take_their_own_annotations(sam2_ckpt, scene, tmp_path):
    """A COCO file of A1/cells.png and B2/cells.png (one name, a well each): the first entry of
    the name was taken for both images, so A1's annotation was refined twice (the second time on
    B2's pixels) and B2's never, while the summary said both were refined."""
    _, img, _ = scene
    for well in ("A1", "B2"):
        (tmp_path / well).mkdir()
        cv2.imwrite(str(tmp_path / well / "cells.png"), img[..., ::-1])
    boxes = {1: [40, 40, 40, 40], 2: [160, 50, 40, 40]}  # DISCS[0] in A1, DISCS[1] in B2
    coco = {"images": [{"id": 1, "file_name": "A1/cells.png", "height": 256, "width": 256},
                       {"id": 2, "file_name": "B2/cells.png", "height": 256, "width": 256}],
            "annotations": [{"id": k, "image_id": k, "category_id": 1, "bbox": b} for k, b in boxes.items()],
            "categories": [{"id": 1, "name": "cell"}]}
    src = tmp_path / "wells.json"
    src.write_text(json.dumps(coco))
    r = run(sam2_ckpt, tmp_path / "A1" / "cells.png", tmp_path / "B2" / "cells.png", "-a", src,
            "-o", tmp_path / "out.json")
    assert r.exit_code == 0 and "2 refined" in r.output, r.output
    out = {a["id"]: a for a in json.loads((tmp_path / "out.json").read_text())["annotations"]}
    for k, (x, y, w, h) in boxes.items():
        want = expected_mask(sam2_ckpt, img, [x, y, x + w, y + h])
        ys, xs = np.nonzero(want)
        assert "segmentation" in out[k], out[k]
        assert out[k]["bbox"] == [float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()),
                                  float(ys.max() + 1 - ys.min())]
    # a file of A1's image alone: B2's image is not refined with A1's annotations
    src.write_text(json.dumps({**coco, "images": coco["images"][:1], "annotations": coco["annotations"][:1]}))
    r = run(sam2_ckpt, tmp_path / "A1" / "cells.png", tmp_path / "B2" / "cells.png", "-a", src,
            "-o", tmp_path / "out1.json")
    assert r.exit_code == 0 and "1 refined" in r.output and "not among the images" in r.output, r.output
    # one name and no folders to tell two entries apart: neither guessed
    coco["images"] = [{**e, "file_name": "cells.png"} for e in coco["images"]]
    src.write_text(json.dumps(coco))
    r = run(sam2_ckpt, tmp_path / "A1" / "cells.png", "-a", src, "-o", tmp_path / "out2.json")
    assert r.exit_code == 0 and "lists 2 images of that name" in r.output, r.output


@pytest.mark.parametrize(
    ("file_name", "image", "same"),
    [
        ("A1/cells.png", "data/A1/cells.png", True),
        ("plate/A1/cells.png", "data/plate/A1/cells.png", True),
        ("B2/cells.png", "data/A1/cells.png", False),
        ("x/A1/cells.png", "data/y/A1/cells.png", False),  # compared as deep as the entry names folders
        ("cells.png", "data/A1/cells.png", False),  # no folder named: matched otherwise, by name alone
        ("a/b/c/d/e/f/g/h/cells.png", "A1/cells.png", False),  # deeper than the image's whole path
    ],
)
def test_a_coco_entry_is_in_the_image_s_folder_by_the_formats_rule(tmp_path, file_name, image, same):
    """refine's own folder matching gave way to the formats' ``other_folder``, on the image's
    path resolved; these are the cases its two helpers decided."""
    from sam_detect.refine import _in_folder_of

    path = tmp_path / image
    path.parent.mkdir(parents=True)
    path.touch()
    assert _in_folder_of({"file_name": file_name}, path) is same
