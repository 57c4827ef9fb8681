"""One dispatch for annotation files: every format written by save_annotations reads back
the same masks and labels through load_annotations; bad files give one clear line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sam_detect.errors import AnnotationError
from sam_detect.formats import (
    WRITE_FORMATS,
    load_annotation_set,
    load_annotations,
    read_polygon_file,
    save_annotations,
)
from sam_detect.formats.runs import mask_to_runs, runs_to_crop, runs_to_mask
from sam_detect.instances import Instances

HW = (40, 50)


def rectangles() -> Instances:
    """Three disjoint rectangles (they survive every format, polygons included), one on the edge."""
    masks = np.zeros((3, *HW), bool)
    masks[0, 2:10, 3:15] = True
    masks[1, 20:35, 30:50] = True  # touches the right edge
    masks[2, 30:40, 0:8] = True  # the bottom-left corner
    return Instances(masks=masks, labels=["cell", "nucleus", "cell"], label_confidences=[0.9, 0.8, 0.7])


CASES = [  # (format, file name, labels kept)
    ("coco", "a.json", True),
    ("geojson", "a.geojson", True),
    ("labelme", "a.json", True),
    ("label_image", "a.tif", False),
    ("label_image", "a.png", False),
    ("label_image", "a.npy", False),
    ("npz", "a.npz", True),
    ("polygons", "a.json", True),
]


@pytest.mark.parametrize(("fmt", "name", "named"), CASES, ids=[f"{f}-{n}" for f, n, _ in CASES])
def test_each_format_round_trips(fmt, name, named, tmp_path):
    inst = rectangles()
    path = save_annotations(inst, tmp_path / name, format=fmt, tolerance=0.0)
    back = load_annotations(path, image_shape=HW)
    assert back.image_hw == HW and len(back) == len(inst)
    np.testing.assert_array_equal(back.masks, inst.masks)
    if named:
        assert list(back.labels) == list(inst.labels)
    else:
        assert set(back.labels) == {"object"}
    assert back.metadata["source"] == str(path)


def test_every_write_format_is_covered():
    assert {f for f, _, _ in CASES} == set(WRITE_FORMATS)


def test_dispatch_by_extension_and_several_images(tmp_path):
    inst = rectangles()
    assert json.loads(save_annotations(inst, tmp_path / "d.json").read_text())["annotations"]  # COCO
    stack = save_annotations([inst, inst[1:]], tmp_path / "s.tif")
    items = load_annotation_set(stack)
    assert [len(it) for it in items] == [3, 2]
    coco = save_annotations([inst, inst[:1]], tmp_path / "two.json", image_names=["x.png", "y.png"])
    assert [len(it) for it in load_annotation_set(coco, image_names=["y.png", "x.png"])] == [1, 3]
    with pytest.raises(AnnotationError, match="holds one image"):
        save_annotations([inst, inst], tmp_path / "two.npz")
    with pytest.raises(AnnotationError, match=r"cannot write annotations as 'yaml'"):
        save_annotations(inst, tmp_path / "x.json", format="yaml")
    with pytest.raises(AnnotationError, match=r"unsupported annotation format '\.txt'"):
        save_annotations(inst, tmp_path / "x.txt")


def test_one_image_name_given_as_a_string_is_that_images_name(tmp_path):
    """``save_annotations(inst, "a.json", format="labelme", image_names="x.png")`` wrote
    ``imagePath: "x"`` (the string's first letter), COCO refused "1 images but 5 names", and
    ``load_annotation_set(..., image_names="y.png")`` looked for an image 'y': a single name
    (a str or a Path) is that one image's name."""
    from pathlib import Path

    inst = rectangles()
    labelme = save_annotations(inst, tmp_path / "a.json", format="labelme", image_names="x.png")
    assert json.loads(labelme.read_text())["imagePath"] == "x.png"
    coco = save_annotations(inst, tmp_path / "c.json", image_names=Path("x.png"))
    assert [im["file_name"] for im in json.loads(coco.read_text())["images"]] == ["x.png"]
    two = save_annotations([inst, inst[:1]], tmp_path / "two.json", image_names=["x.png", "y.png"])
    assert [len(it) for it in load_annotation_set(two, image_names="y.png")] == [1]


def test_coco_from_save_annotations_gives_back_round_masks_exactly(tmp_path):
    """``save_annotations(found, "x.json")`` wrote COCO polygons simplified by a pixel: discs came
    back up to ~2% larger (IoU 0.964 at worst). Without a tolerance it writes exact RLE, as
    ``detect --coco`` does; a tolerance asked for still gives polygons."""
    yy, xx = np.mgrid[:HW[0], :HW[1]]
    discs = np.stack([(yy - 12) ** 2 + (xx - 14) ** 2 <= 8.5**2, (yy - 28) ** 2 + (xx - 40) ** 2 <= 6.3**2])
    inst = Instances(masks=discs, labels=["coin", "coin"])
    path = save_annotations(inst, tmp_path / "x.json")
    np.testing.assert_array_equal(load_annotations(path, image_shape=HW).masks, discs)
    assert all(isinstance(a["segmentation"], dict) for a in json.loads(path.read_text())["annotations"])
    path = save_annotations(inst, tmp_path / "p.json", tolerance=1.0)
    assert all(isinstance(a["segmentation"], list) for a in json.loads(path.read_text())["annotations"])


BAD = [  # (file name, content, message)
    ("x.json", b"{not json", r"x\.json: not valid JSON"),
    ("x.json", b'{"images": [{"id": 1}], "annotations": []}', r"x\.json: image 1 .* lacks 'height'/'width'"),
    ("x.json", b'{"shapes": [{"shape_type": "polygon", "points": [[1, 1]]}], "imageHeight": 9, "imageWidth": 9}',
     r"x\.json: shape #0 .* a polygon needs at least 3 points"),
    ("x.json", b'"a string"', r"x\.json: unrecognised JSON"),
    ("x.npz", b"PK\x03\x04 broken", r"x\.npz: cannot read \.npz"),
    ("x.tif", b"II*\x00 broken", r"x\.tif: cannot read label image"),
    ("x.txt", b"1,2", r"x\.txt: unsupported annotation format '\.txt'"),
    # detect's own --json (one image, or a list of them) and --jsonl / video's JSON lines: its outlines are
    # simplified and its holes filled, so it is no annotation; it was read as polygon JSON ("label 'image':
    # expected a polygon [[x, y], ...]", "item #0: expected a polygon")
    ("x.json", b'{"image": "a.png", "height": 9, "width": 9, "count": 1, "objects": [{"id": 0, "label": "c", '
     b'"polygons": [[[1, 1], [5, 1], [5, 5]]]}]}', r"x\.json: .*sam-detect detect --json.*--coco"),
    ("x.json", b'[{"image": "a.png", "height": 9, "width": 9, "count": 0, "objects": []}]',
     r"x\.json: .*sam-detect detect --json.*--coco"),
    ("x.jsonl", b'{"frame": 0, "objects": []}\n', r"x\.jsonl: .*JSON lines.*--coco.*--label-image"),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(BAD)])
def test_bad_file_gives_one_clear_line(name, content, message, tmp_path):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AnnotationError, match=message) as e:
        load_annotations(path, image_shape=HW)
    assert "\n" not in str(e.value) and str(e.value).startswith(str(path))


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(AnnotationError, match="annotation file not found"):
        load_annotations(tmp_path / "none.json")
    with pytest.raises(AnnotationError, match="a folder of masks, but it holds no mask image"):
        load_annotations(tmp_path)  # a folder is read as one mask image per object


def test_polygon_prompt_files(tmp_path):
    (tmp_path / "p.json").write_text("[[1, 2], [5, 2], [5, 6]]")
    assert read_polygon_file(tmp_path / "p.json") == [[[1, 2], [5, 2], [5, 6]]]
    (tmp_path / "flat.json").write_text("[1, 2, 5, 2, 5, 6]")
    assert read_polygon_file(tmp_path / "flat.json") == [[1, 2, 5, 2, 5, 6]]
    (tmp_path / "p.txt").write_text("1,2\n5 2\n5;6\n\n10,10\n12,10\n12,12\n")
    assert read_polygon_file(tmp_path / "p.txt") == [[[1, 2], [5, 2], [5, 6]], [[10, 10], [12, 10], [12, 12]]]
    (tmp_path / "bad.txt").write_text("1,2\nx\n")
    with pytest.raises(AnnotationError, match=r"cannot read polygon line 'x'"):
        read_polygon_file(tmp_path / "bad.txt")


def test_page_runs_round_trip():
    rng = np.random.default_rng(3)
    for _ in range(50):
        m = np.zeros(HW, bool)
        y, x = int(rng.integers(0, 39)), int(rng.integers(0, 49))
        m[y : y + int(rng.integers(1, 12)), x : x + int(rng.integers(1, 12))] = rng.random() > 0.1
        runs = mask_to_runs(m)
        np.testing.assert_array_equal(runs_to_mask(runs, HW) if m.any() else m, m)
        if m.any():
            assert runs_to_crop(runs, HW).tight().box == (runs["x"], runs["y"], runs["x"] + runs["w"], runs["y"] + runs["h"])
    with pytest.raises(AnnotationError, match="lies outside"):
        runs_to_mask({"x": 45, "y": 0, "w": 10, "h": 1, "runs": [0, 10]}, HW)


def test_coco_categories_keep_the_library_s_ids_whatever_was_found():
    """Files written for different images list every class of the library, with the same ids,
    so that they can be merged; a label found that the list lacks is added in its sorted place."""
    from sam_detect.formats.coco import to_coco

    masks = np.zeros((1, 20, 20), bool)
    masks[0, 5:10, 5:10] = True
    found = Instances(masks=masks, labels=["small"])
    nothing = Instances.empty((20, 20))
    one = to_coco([found], ["a.png"], categories=["big cell", "small"])
    other = to_coco([nothing], ["b.png"], categories=["big cell", "small"])
    assert one["categories"] == other["categories"]
    assert [c["name"] for c in one["categories"]] == ["big cell", "small"]
    assert one["annotations"][0]["category_id"] == 2
    extra = to_coco([found], ["a.png"], categories=["big cell"])
    assert [c["name"] for c in extra["categories"]] == ["big cell", "small"]


def test_an_output_that_fails_midway_leaves_no_file_under_either_name(tmp_path):
    """A full disk or Ctrl-C while an output is written left its temporary file (an 8 KiB
    ``c.json.tmp``) beside the output; now neither it nor a partial output remains."""
    import errno

    from sam_detect.formats._common import atomic_path, write_json

    target = tmp_path / "c.json"
    with pytest.raises(OSError), atomic_path(target) as tmp:
        tmp.write_text("{\"half")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []
    write_json(target, {"a": 1})
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("{}")
        raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"] and json.loads(target.read_text()) == {"a": 1}
    with atomic_path(tmp_path / "l.npy") as tmp:  # a writer that goes by the suffix writes that format
        np.save(tmp, np.arange(3))
    assert np.load(tmp_path / "l.npy").tolist() == [0, 1, 2] and len(list(tmp_path.iterdir())) == 2


def test_a_label_image_one_pixel_high_is_read_as_it_is(tmp_path):
    """Squeezing a (1, W) label image gave (W,) and the message "got shape (200,)", a shape
    the file does not have; the same file was taken as a --mask."""
    import cv2

    from sam_detect.formats.label_image import read_label_image

    m = np.zeros((1, 200), np.uint8)
    m[0, 50:60] = 1
    cv2.imwrite(str(tmp_path / "strip.png"), m)
    np.testing.assert_array_equal(read_label_image(tmp_path / "strip.png"), m)
    np.save(tmp_path / "one.npy", np.ones((1, 30, 40, 1), np.uint16))  # single axes round Y, X still go
    assert read_label_image(tmp_path / "one.npy").shape == (30, 40)
    np.save(tmp_path / "stack.npy", np.ones((5, 1, 30, 40), np.uint16))
    assert read_label_image(tmp_path / "stack.npy").shape == (5, 30, 40)


def test_an_instance_and_type_tiff_stored_as_samples_gives_each_channel(tmp_path):
    """Instance and type maps saved as one 2-sample TIFF (interleaved or planar) were refused
    as "an RGB image", --labels-channel or not."""
    import tifffile

    from sam_detect.formats.label_image import read_label_image

    lab = np.zeros((40, 50), np.uint16)
    lab[5:10, 5:10], lab[20:30, 20:30] = 1, 2
    types = np.where(lab > 0, 1 + lab % 2, 0).astype(np.uint16)
    both = np.stack([lab, types], -1)
    tifffile.imwrite(tmp_path / "contig.tif", both, photometric="minisblack", planarconfig="contig")
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(both, -1, 0), photometric="minisblack",
                     planarconfig="separate")
    for name in ("contig.tif", "planar.tif"):
        np.testing.assert_array_equal(read_label_image(tmp_path / name, channel=0), lab)
        np.testing.assert_array_equal(read_label_image(tmp_path / name, channel=1, pieces=False), types)
        with pytest.raises(AnnotationError, match="choose the channel that holds the labels"):
            read_label_image(tmp_path / name)


def test_a_label_stack_of_three_planes_saved_without_axes_says_how_to_read_a_plane(tmp_path):
    """Three label frames saved without axes read as one 16-bit RGB image: the refusal said
    "an RGB image" only; it now names ``--labels-channel K`` (which reads plane K)."""
    import tifffile

    from sam_detect.formats.label_image import read_label_image

    lab = np.zeros((3, 40, 50), np.uint16)
    lab[:, 5:10, 5:10], lab[:, 20:30, 20:30] = 1, 2
    lab[1, 30:35, 30:35] = 3
    tifffile.imwrite(tmp_path / "gt3.tif", lab, photometric="rgb", planarconfig="separate")  # as saved without axes
    with pytest.raises(AnnotationError, match=r"an RGB image \(axes SYX\).*; if its 3 planes are label frames saved "
                                              r"without axes, --labels-channel K reads plane K"):
        read_label_image(tmp_path / "gt3.tif")
    np.testing.assert_array_equal(read_label_image(tmp_path / "gt3.tif", channel=1), lab[1])


@pytest.mark.parametrize(("fmt", "name"), [("coco", "a.json"), ("geojson", "a.geojson")])
def test_confidences_read_back_from_the_formats_that_carry_them(fmt, name, tmp_path):
    """COCO's ``score`` and GeoJSON's ``measurements.confidence`` (what ``detect`` writes) came
    back as 0 in ``label_confidences``; annotations without confidences write none."""
    inst = rectangles()
    inst.data["similarity"] = np.array([0.7, 0.6, 0.5], np.float32)
    back = load_annotations(save_annotations(inst, tmp_path / name, format=fmt), image_shape=HW)
    np.testing.assert_allclose(back.label_confidences, [0.9, 0.8, 0.7])
    if fmt == "geojson":
        np.testing.assert_allclose(back.data["similarity"], [0.7, 0.6, 0.5])
        truth = Instances(masks=inst.masks, labels=inst.labels)  # ground truth: no confidence of its own
        doc = json.loads(save_annotations(truth, tmp_path / "t.geojson").read_text())
        assert all("measurements" not in f["properties"] for f in doc["features"])
        assert not load_annotations(tmp_path / "t.geojson", image_shape=HW).label_confidences.any()


def test_qupath_measurements_as_a_list_are_read(tmp_path):
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[2, 2], [12, 2], [12, 9], [2, 9], [2, 2]]]},
         "properties": {"classification": {"name": "cell"},
                        "measurements": [{"name": "confidence", "value": 0.42}, {"name": "Area", "value": 70}]}}]}
    path = tmp_path / "q.geojson"
    path.write_text(json.dumps(doc))
    back = load_annotations(path, image_shape=HW)
    assert back.labels == ["cell"] and back.label_confidences[0] == pytest.approx(0.42)


def test_labelme_says_the_holes_it_cannot_write(tmp_path, caplog):
    ring = np.zeros((1, *HW), bool)
    ring[0, 5:25, 5:25] = True
    ring[0, 10:20, 10:20] = False
    path = save_annotations(Instances(masks=ring, labels=["ring"]), tmp_path / "r.json", format="labelme")
    assert "1 object(s) with holes written without them to the labelme file" in caplog.text
    assert "100 pixels read back filled" in caplog.text
    assert load_annotations(path, image_shape=HW).masks[0].sum() == 400  # as the warning says
    caplog.clear()
    save_annotations(rectangles(), tmp_path / "s.json", format="labelme")
    assert "holes" not in caplog.text


def test_a_coco_file_of_a_stacks_frames_is_read_by_frame(tmp_path):
    """``detect stack.tif --frame k --coco`` writes the frame into its image record; reading
    ``image=k`` took the k-th entry (or, for a file of one frame, that frame whatever k was)."""
    a, b = rectangles(), rectangles()[:1]
    a.metadata["frame"], b.metadata["frame"] = 5, 2
    path = save_annotations([a, b], tmp_path / "s.json", format="coco", image_names=["stack.tif", "stack.tif"])
    assert len(load_annotations(path, image_shape=HW, image=2)) == 1
    assert len(load_annotations(path, image_shape=HW, image=5)) == 3
    with pytest.raises(AnnotationError, match=r"no annotations for frame 0; the file's frames: 2, 5"):
        load_annotations(path, image_shape=HW, image=0)
    one = save_annotations(a, tmp_path / "one.json", format="coco", image_names=["stack.tif"])
    assert len(load_annotations(one, image_shape=HW, image=5)) == 3
    with pytest.raises(AnnotationError, match=r"no annotations for frame 4; the file's frames: 5"):
        load_annotations(one, image_shape=HW, image=4)
    plain = save_annotations(rectangles(), tmp_path / "p.json", format="coco")  # no frame: as before
    assert len(load_annotations(plain, image_shape=HW, image=4)) == 3


@pytest.mark.parametrize("name", ["nested.tif", "nested.png"])
def test_a_label_image_keeps_an_object_inside_a_later_larger_one(name, tmp_path):
    """A nucleus listed before the cell around it vanished from a label image written by
    ``save_annotations`` (and the UI's export): the later object took every shared pixel."""
    masks = np.zeros((3, *HW), bool)
    masks[0, 10:15, 10:15] = True  # a nucleus
    masks[1, 5:30, 5:30] = True  # its cell, listed after it
    masks[2, 8:12, 35:45] = True
    back = load_annotations(save_annotations(Instances(masks=masks), tmp_path / name), image_shape=HW)
    assert len(back) == 3
    areas = sorted(int(m.sum()) for m in back.masks)
    assert areas == [25, 40, 625 - 25]  # the cell keeps what the nucleus does not cover
    from sam_detect.ui.records import export_file

    data, _, _ = export_file(Instances(masks=masks), "labels", "x", "x.png")
    import cv2

    assert len(np.unique(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED))) == 4


def test_coco_crowd_regions_are_no_objects_and_string_ids_read(tmp_path, caplog):
    """A crowd region (``iscrowd: 1``: many objects as one, as COCO and CVAT mark them) became
    one 7412 px example; an annotation id that is a tool's UUID refused the whole file."""
    doc = json.loads(save_annotations(rectangles(), tmp_path / "a.json", format="coco").read_text())
    doc["annotations"][1]["iscrowd"] = 1
    for k, ann in enumerate(doc["annotations"]):
        ann["id"] = f"uuid-{k}"
    path = tmp_path / "b.json"
    path.write_text(json.dumps(doc))
    back = load_annotations(path, image_shape=HW)
    assert len(back) == 2 and list(back.labels) == ["cell", "cell"] and back.metadata["crowd"] == 1
    assert list(back.data["source_id"]) == [0, 2]
    assert "1 crowd annotation(s)" in caplog.text and "left out" in caplog.text


def test_the_polygon_list_keeps_an_object_in_pieces_one_object(tmp_path):
    masks = np.zeros((2, *HW), bool)
    masks[0, 2:10, 3:15] = True
    masks[0, 20:30, 3:15] = True  # the same object, behind something
    masks[1, 20:35, 30:50] = True
    path = save_annotations(Instances(masks=masks, labels=["chair", "person"]), tmp_path / "p.json",
                            format="polygons", tolerance=0.0)
    assert len(json.loads(path.read_text())) == 3
    back = load_annotations(path, image_shape=HW)
    assert list(back.labels) == ["chair", "person"]
    np.testing.assert_array_equal(back.masks, masks)


def test_labelme_points_are_said_in_one_line_naming_point(tmp_path, caplog):
    doc = {"version": "5.2.1", "shapes": [
        {"label": "coin", "points": [[4, 5]], "shape_type": "point"},
        {"label": "coin", "points": [[2, 2], [12, 2], [12, 9]], "shape_type": "polygon"}],
        "imageHeight": HW[0], "imageWidth": HW[1]}
    path = tmp_path / "l.json"
    path.write_text(json.dumps(doc))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a Python warning (with its source line) no more
        back = load_annotations(path, image_shape=HW)
    assert len(back) == 1
    assert "l.json: skipped 1 point shape(s): they outline no area (clicks: give each with `sam-detect add " \
        "--point X,Y`)" in caplog.text


def test_ground_truth_of_a_stacks_frames_from_coco_and_from_a_label_stack_per_stack(tmp_path):
    """``eval stack.tif -a frames.json``: a COCO file of a stack's frames (``detect --frame K
    --coco``) took one frame's objects for every frame, or refused the file ("6 images match
    alike"); two stacks with a label stack each were refused ("2 annotation files for 12
    images"), and with ``--frame`` ("holds 6 frames")."""
    import tifffile

    from sam_detect.formats import load_ground_truth

    a, b = rectangles(), rectangles()[:1]
    a.metadata["frame"], b.metadata["frame"] = 0, 1
    coco = save_annotations([a, b], tmp_path / "s.json", format="coco", image_names=["s.tif", "s.tif"])
    gt = load_ground_truth([coco], ["s.tif", "s.tif"], image_frames=[0, 1])
    assert [len(g) for g in gt] == [3, 1]
    assert [len(g) for g in load_ground_truth([coco], ["s.tif"], image_frames=[1])] == [1]
    with pytest.raises(AnnotationError, match="no annotations for frame 2"):
        load_ground_truth([coco], ["s.tif"], image_frames=[2])
    lab = np.zeros((3, *HW), np.uint16)
    for t in range(3):
        lab[t, 2:6, 2 + t:8 + t] = 1
        lab[t, 20:30, 30:40] = 2 if t else 0
    tifffile.imwrite(tmp_path / "a_lab.tif", lab, photometric="minisblack", metadata={"axes": "TYX"})
    tifffile.imwrite(tmp_path / "b_lab.tif", lab[::-1], photometric="minisblack", metadata={"axes": "TYX"})
    names, frames = ["a.tif"] * 3 + ["b.tif"] * 3, [0, 1, 2] * 2
    gt = load_ground_truth([tmp_path / "a_lab.tif", tmp_path / "b_lab.tif"], names, image_frames=frames)
    assert [int(g.max()) for g in gt] == [1, 2, 2, 2, 2, 1]
    gt = load_ground_truth([tmp_path / "a_lab.tif", tmp_path / "b_lab.tif"], ["a.tif", "b.tif"], image_frames=[0, 0])
    assert [int(g.max()) for g in gt] == [1, 2]  # --frame 0 of each stack: each label stack's frame 0
    types = [tmp_path / "a_types.tif", tmp_path / "b_types.tif"]  # type maps per stack too
    for p, src in zip(types, (lab, lab[::-1]), strict=True):
        tifffile.imwrite(p, (src > 0).astype(np.uint8) * 2, photometric="minisblack", metadata={"axes": "TYX"})
    typed = load_ground_truth([tmp_path / "a_lab.tif", tmp_path / "b_lab.tif"], names, image_frames=frames,
                              types=types, type_names={2: "nucleus"})
    assert [len(g) for g in typed] == [1, 2, 2, 2, 2, 1] and {lab for g in typed for lab in g.labels} == {"nucleus"}
    masks = tmp_path / "masks"
    masks.mkdir()
    cv2 = pytest.importorskip("cv2")
    cv2.imwrite(str(masks / "m0.png"), (lab[1] == 1).astype(np.uint8) * 255)
    with pytest.raises(AnnotationError, match="or as one image's masks .* not every one of the 2 images"):
        load_ground_truth([masks], ["x.tif", "y.tif"])


def test_a_folder_of_label_images_named_as_the_images_pairs_them_by_name(tmp_path):
    """``eval images/*.tif -a masks/`` (images beside a folder of their label images, as
    StarDist's and Cellpose's data sets come) was read as one image's masks, one object per
    file, and refused for several images."""
    from sam_detect.formats import label_files_for, load_ground_truth
    from sam_detect.formats.label_image import write_label_array

    labs = {}
    for i, name in enumerate(("b", "a", "c")):
        lab = np.zeros(HW, np.uint16)
        lab[2:6 + i, 2:8] = 1
        lab[20:30, 30:40] = 2
        labs[name] = lab
    same, cellpose = tmp_path / "same", tmp_path / "cellpose"
    for folder, end, suffix in ((same, "", ".tif"), (cellpose, "_masks", ".png")):
        folder.mkdir()
        for name, lab in labs.items():
            write_label_array(lab, folder / f"{name}{end}{suffix}")
    names = [str(tmp_path / "images" / f"{n}.tif") for n in ("a", "b", "c")]
    for folder in (same, cellpose):
        gt = load_ground_truth([folder], names)
        assert [int(g[2:12, 2:8].sum()) for g in gt] == [int(labs[n][2:12, 2:8].sum()) for n in "abc"]
    assert label_files_for(same, names[:2]) == [same / "a.tif", same / "b.tif"]
    (cellpose / "a.png").write_bytes((cellpose / "a_masks.png").read_bytes())
    assert label_files_for(cellpose, names) == [cellpose / f"{n}_masks.png" for n in "abc"]  # a.png alone: no
    (cellpose / "b.png").write_bytes((cellpose / "b_masks.png").read_bytes())
    (cellpose / "c.png").write_bytes((cellpose / "c_masks.png").read_bytes())
    assert label_files_for(cellpose, names) is None  # two endings fit every image: which is not said
    with pytest.raises(AnnotationError, match="not every one of the 3 images"):
        load_ground_truth([cellpose], names)
    assert label_files_for(same, [names[0], str(tmp_path / "other" / "a.tif")]) is None  # one name twice
    (same / "c.tif").unlink()
    with pytest.raises(AnnotationError, match="not every one of the 3 images has one label image there"):
        load_ground_truth([same], names)


def test_the_embedded_image_check_takes_the_image_in_every_reading(tmp_path):
    """A labelme file's ``imageData`` of a blue (DAPI) RGBA PNG correlated 0.00 with itself
    (decoded with blue lost), and one channel read with ``--channel`` was compared with the
    colour mean: both refused the image the shapes were drawn on. A mirrored copy still is."""
    import base64

    cv2 = pytest.importorskip("cv2")
    from sam_detect.formats.labelme import check_drawn_on

    rng = np.random.default_rng(0)
    rgba = np.zeros((*HW, 4), np.uint8)
    rgba[..., 2] = (rng.random(HW) * 40).astype(np.uint8)
    rgba[5:15, 5:20, 2] = 220  # the nuclei, in blue
    rgba[..., 3] = 255
    png = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))[1].tobytes()
    doc = {"version": "5.4.1", "shapes": [{"label": "n", "points": [[5, 5], [19, 5], [19, 14], [5, 14]],
                                           "shape_type": "polygon"}],
           "imageHeight": HW[0], "imageWidth": HW[1], "imageData": base64.b64encode(png).decode()}
    path = tmp_path / "d.json"
    path.write_text(json.dumps(doc))
    inst = load_annotations(path, image_shape=HW)
    check_drawn_on(inst, rgba[..., :3], "d.json")  # the image itself
    blue = np.repeat(rgba[..., 2:3], 3, axis=2)
    check_drawn_on(inst, blue, "d.json")  # its channel 2 alone, as --channel 2 reads it
    check_drawn_on(inst, np.zeros((*HW, 3), np.uint8), "d.json")  # a flat image: nothing to tell by
    with pytest.raises(AnnotationError, match="embeds the image its shapes were drawn on"):
        check_drawn_on(inst, rgba[:, ::-1, :3], "d.json")


def test_a_frame_is_taken_from_the_named_images_records_only(tmp_path):
    """A COCO file of one stack's frame 3 gave stackA's annotations to ``add stackB.tif --frame
    3``; ``eval --frame K`` with one COCO file per image from another tool (no ``frame``) took
    the K-th image of each file, not the image of that name."""
    from sam_detect.formats import load_ground_truth

    a = rectangles()
    a.metadata["frame"] = 3
    one = save_annotations(a, tmp_path / "a.json", format="coco", image_names=["stackA.tif"])
    assert len(load_annotations(one, image_shape=HW, image=3, name="stackA.tif")) == 3
    with pytest.raises(AnnotationError, match="no annotations for image 'stackB.tif'"):
        load_annotations(one, image_shape=HW, image=3, name="stackB.tif")
    files = []
    for k, name in enumerate(("x.tif", "y.tif")):  # each file lists two images, its own second
        doc = save_annotations([rectangles()[:1], rectangles()[: 2 + k]], tmp_path / f"{k}.json", format="coco",
                               image_names=["other.tif", name])
        files.append(doc)
    gt = load_ground_truth(files, ["x.tif", "y.tif"], image_frames=[1, 1])
    assert [len(g) for g in gt] == [2, 3]
