"""GeoJSON outlines (QuPath's exchange format): read as annotations, written by ``detect``."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from conftest import draw_scene, run_cli

from sam_detect.errors import AnnotationError
from sam_detect.formats import load_annotations, save_annotations, to_geojson
from sam_detect.instances import Instances


def _masks() -> np.ndarray:
    m = np.zeros((3, 60, 80), bool)
    m[0, 0:20, 0:25] = True  # on the image's corner
    m[1, 30:50, 40:70] = True
    m[1, 38:42, 50:60] = False  # a hole
    m[2, 2:6, 70:80] = True
    m[2, 50:55, 2:8] = True  # one object in two pieces
    return m


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_round_trip_keeps_holes_pieces_and_labels(tmp_path):
    m = _masks()
    inst = Instances(masks=m, labels=["tumour", "immune", "stroma"])
    path = save_annotations(inst, tmp_path / "x.geojson", tolerance=0)
    doc = json.loads(path.read_text())
    assert doc["type"] == "FeatureCollection"
    kinds = [(f["geometry"]["type"], len(f["geometry"]["coordinates"])) for f in doc["features"]]
    assert kinds == [("Polygon", 1), ("Polygon", 2), ("MultiPolygon", 2)]  # the hole an inner ring
    ring = doc["features"][0]["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1]  # closed, as GeoJSON wants
    assert doc["features"][1]["properties"]["classification"]["name"] == "immune"
    back = load_annotations(path, image_shape=(60, 80))
    assert list(back.labels) == ["tumour", "immune", "stroma"]
    assert [_iou(back.mask(i), m[i]) for i in range(3)] == [1.0, 1.0, 1.0]
    assert back.metadata["format"] == "geojson"
    # by default too: outlines on the pixels' edges keep every pixel
    exact = load_annotations(save_annotations(inst, tmp_path / "e.geojson"), image_shape=(60, 80))
    np.testing.assert_array_equal(exact.masks, m)
    # simplified outlines stay close
    simple = load_annotations(save_annotations(inst, tmp_path / "s.geojson", tolerance=1), image_shape=(60, 80))
    assert min(_iou(simple.mask(i), m[i]) for i in range(3)) >= 0.9


def _shoelace(ring) -> float:
    """Twice a ring's signed area by its numbers as written (``y`` taken upwards, as RFC 7946
    and shapely reckon it): positive counter-clockwise."""
    xy = np.asarray(ring, np.float64)
    return float(np.sum(xy[:-1, 0] * xy[1:, 1] - xy[1:, 0] * xy[:-1, 1]))


@pytest.mark.parametrize("tolerance", [0, 1])
def test_rings_follow_the_right_hand_rule(tolerance):
    """RFC 7946 3.1.6: exterior rings counter-clockwise, holes clockwise. Every exterior came
    out clockwise by its numbers (OpenCV's tracing order), which GeoJSON validators and
    shapely's ``orient`` flag or turn round."""
    m = _masks()
    doc = to_geojson(Instances(masks=m, labels=["a", "b", "c"]), tolerance=tolerance)
    polygons = [p for f in doc["features"] for p in (
        [f["geometry"]["coordinates"]] if f["geometry"]["type"] == "Polygon" else f["geometry"]["coordinates"])]
    assert len(polygons) == 4 and sum(len(p) - 1 for p in polygons) == 1  # four pieces, one hole
    for rings in polygons:
        assert _shoelace(rings[0]) > 0
        assert all(_shoelace(hole) < 0 for hole in rings[1:])
    if tolerance == 0:  # the hole cut out of its object's area, not added to it
        assert (_shoelace(polygons[1][0]) + _shoelace(polygons[1][1])) / 2 == pytest.approx(600 - 40, abs=1)


def test_a_tolerance_simplifies_small_objects_and_holes_less_never_away():
    """``--tolerance`` dropped every object whose simplified outline kept under 3 vertices: a
    10 x 1 px line at tolerance 1, 2 x 2 and 3 x 3 px specks at 2, most HeLa nuclei at 20,
    while the run's JSON, COCO and label image still had them (and holes went the same way)."""
    m = np.zeros((6, 60, 80), bool)
    m[0, 5, 10:20] = True  # a line, 10 x 1
    m[1, 20:22, 20:22] = True  # 2 x 2
    m[2, 30:33, 30:33] = True  # 3 x 3
    m[3, 40:60, 40:80] = True
    m[3, 45:47, 50:52] = False  # a 2 x 2 hole
    m[4, 0:30, 50:80] = True  # large: simplified as before
    m[5, 10:12, 2:4] = True
    m[5, 50:52, 2:4] = True  # two specks, one object
    inst = Instances(masks=m, labels=["a"] * 6)
    for tol in (1, 2, 8, 20):
        doc = to_geojson(inst, tolerance=tol)
        assert len(doc["features"]) == 6, tol
        geoms = [f["geometry"] for f in doc["features"]]
        assert len(geoms[3]["coordinates"]) == 2, tol  # the hole kept
        assert geoms[5]["type"] == "MultiPolygon" and len(geoms[5]["coordinates"]) == 2, tol
        for g in geoms:
            polys = g["coordinates"] if g["type"] == "MultiPolygon" else [g["coordinates"]]
            for ring in (r for poly in polys for r in poly):
                assert len(ring) >= 4 and cv2.contourArea(np.asarray(ring, np.float32)) > 0, tol
    # the large square stays a square of 4 corners, as before
    assert len(to_geojson(inst, tolerance=2)["features"][4]["geometry"]["coordinates"][0]) == 5


def _pixel_edges_inside(ring: list, shape: tuple[int, int]) -> np.ndarray:
    """The pixels whose centres lie inside ``ring``, by scikit-image's point test: another
    rasteriser than the reader's, as QuPath and pycocotools read vertices (on corners)."""
    from skimage.measure import points_in_poly

    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return points_in_poly(np.c_[xx.ravel() + 0.5, yy.ravel() + 0.5], np.asarray(ring, float)).reshape(shape)


def test_vertices_lie_on_pixel_corners_as_qupath_puts_them(tmp_path):
    """QuPath outlines a pixel by its corners: read with the centre convention its objects
    grew a pixel to the right and below (a small nucleus 80 -> 102 px, a library of other
    examples and other detections), and ours showed half a pixel inside their pixels there."""
    rng = np.random.default_rng(3)
    blob = cv2.GaussianBlur(rng.random((40, 50)), (0, 0), 3) > 0.5
    n, lab = cv2.connectedComponents(blob.astype(np.uint8))
    masks = np.stack([lab == k for k in range(1, n)])
    doc = to_geojson(Instances(masks=masks))
    for f, m in zip(doc["features"], masks, strict=True):
        rings = f["geometry"]["coordinates"] if f["geometry"]["type"] == "Polygon" else f["geometry"]["coordinates"][0]
        outer = np.asarray(rings[0])
        assert np.all(outer == np.round(outer * 2) / 2)  # corners and (at a notch) edge midpoints
        if len(rings) == 1:  # another rasteriser finds the same pixels
            np.testing.assert_array_equal(_pixel_edges_inside(outer, m.shape), m)
    # a QuPath square from corner (10, 10) to (30, 30) holds 20 x 20 pixels, 10..29
    square = [[10, 10], [30, 10], [30, 30], [10, 30], [10, 10]]
    path = tmp_path / "q.geojson"
    path.write_text(json.dumps({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [square]},
                                "properties": {}}))
    got = load_annotations(path, image_shape=(50, 50)).mask(0)
    want = np.zeros((50, 50), bool)
    want[10:30, 10:30] = True
    np.testing.assert_array_equal(got, want)


def test_qupath_documents_and_their_classes(tmp_path):
    square = [[10, 10], [30, 10], [30, 30], [10, 30], [10, 10]]
    features = [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [square]},
         "properties": {"objectType": "annotation", "classification": {"name": "Tumor", "color": [200, 0, 0]}}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[x + 40, y] for x, y in square]]},
         "properties": {"classification": "Immune cells"}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[x, y + 40] for x, y in square]]},
         "properties": {}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5, 5]}, "properties": {"name": "dot"}},
    ]
    as_list = tmp_path / "list.json"  # a bare list of features, in a .json file
    as_list.write_text(json.dumps(features))
    inst = load_annotations(as_list, image_shape=(100, 100))
    assert list(inst.labels) == ["Tumor", "Immune cells", "object"] and inst.metadata["skipped"] == 1
    assert int(inst.crop(0).area) == 20 * 20  # vertices on pixel corners: pixels 10..29
    one = tmp_path / "one.geojson"
    one.write_text(json.dumps(features[0]))
    assert list(load_annotations(one, image_shape=(100, 100), label="x").labels) == ["x"]



def test_outlines_outside_the_image_are_said(tmp_path, caplog):
    """A GeoJSON made for another, larger image (it carries no size) gave `add` the few of its
    objects that fit this image, in silence (27 of a HeLa frame's 146 nuclei as coins); those
    beyond its edges are now said. One the border cuts is kept, as are points, unsaid."""
    import logging

    square = [[10, 10], [30, 10], [30, 30], [10, 30], [10, 10]]
    shifted = [[[x + dx, y + dy] for x, y in square] for dx, dy in ((0, 0), (85, 0), (300, 0), (0, 300), (-40, 0))]
    features = [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}} for ring in shifted]
    features.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": [5, 5]}})
    path = tmp_path / "big.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    with caplog.at_level(logging.WARNING, logger="sam_detect"):
        inst = load_annotations(path, image_shape=(100, 100))
    assert len(inst) == 2 and inst.metadata["skipped"] == 4  # the square and the one the edge cuts
    assert "big.geojson: 3 of 6 outline(s) lie outside the 100x100 image: left out" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sam_detect"):
        load_annotations(path, image_shape=(400, 400))
    assert "1 of 6 outline(s) lie outside the 400x400 image" in caplog.text  # the one left of it

@pytest.mark.parametrize(
    ("doc", "shape", "message"),
    [
        ({"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {
            "type": "Polygon", "coordinates": [[[200, 200], [220, 200], [220, 220]]]}}]}, (50, 50),
         "no polygon in the GeoJSON lies on the image"),
        ({"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {
            "type": "Polygon", "coordinates": [[[1, 1], [5, 1]]]}}]}, (50, 50), "at least 3 points"),
        ({"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": None}]}, (50, 50),
         r"no polygon in the GeoJSON lies on the image \(1 feature\(s\) of other geometries or outside it\)"),
        ({"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": "x"}]}, (50, 50),
         "feature #0: no geometry"),
        ({"type": "FeatureCollection", "features": "nope"}, (50, 50), "needs a 'features' list"),
        ({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[1, 1], [5, 1], [5, 5]]]}}, None,
         "GeoJSON carries no image size"),
    ],
)
def test_bad_geojson_is_one_clear_error(tmp_path, doc, shape, message):
    path = tmp_path / "bad.geojson"
    path.write_text(json.dumps(doc))
    with pytest.raises(AnnotationError, match=message):
        load_annotations(path, image_shape=shape)


def test_detect_writes_geojson_and_add_and_eval_read_it(tmp_path):
    images, geo = [], []
    for seed in range(3):
        rgb, masks, labels = draw_scene(seed)
        images.append(tmp_path / f"scene{seed}.png")
        cv2.imwrite(str(images[-1]), rgb)
        geo.append(save_annotations(Instances(masks=masks, labels=labels), tmp_path / f"gt{seed}.geojson"))
    lib = ["--library-path", tmp_path / "libs"]
    r = run_cli("add", images[0], "--annotations", geo[0], "-q", *lib)
    assert r.exit_code == 0, r.output
    assert "added 6 example(s) (disc: 3, square: 3)" in r.stdout
    out = tmp_path / "found.geojson"
    r = run_cli("detect", images[1], "--json", "--geojson", out, *lib)
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    doc = json.loads(out.read_text())
    assert [f["properties"]["classification"]["name"] for f in doc["features"]] == [o["label"] for o in rec["objects"]]
    found = load_annotations(out, image_shape=(160, 160))
    assert [int(found.crop(i).area) for i in range(len(found))] == pytest.approx([o["area"] for o in rec["objects"]],
                                                                                 rel=0.15)
    folder = tmp_path / "outlines"
    r = run_cli("detect", *images[1:], "--geojson", folder, "-q", *lib)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in folder.iterdir()) == ["scene1.geojson", "scene2.geojson"]
    # eval: GeoJSON ground truth, one file per image (the images give their sizes)
    ann = [a for p in geo for a in ("-a", p)]
    r = run_cli("eval", *images, *ann, "--shots", 2, "--examples-from", 0, "--detect-on", "1,2", "--json",
                "--no-baselines", "--embedder", "handcrafted", "-q")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["examples"] == {"disc": 2, "square": 2}
    assert res["metrics"]["by_iou"]["0.5"]["detection"]["tp"] == 12


def test_geojson_output_refused_before_any_work(tmp_path):
    rgb, _, _ = draw_scene(0)
    img = tmp_path / "scene.png"
    cv2.imwrite(str(img), rgb)
    r = run_cli("detect", img, "--geojson", tmp_path / "x.txt", "--library-path", tmp_path / "libs")
    assert r.exit_code == 2 and "--geojson" in r.output and "Traceback" not in r.output


def test_to_geojson_of_nothing_is_an_empty_collection_read_back_as_nothing(tmp_path):
    assert to_geojson(Instances(masks=np.zeros((0, 10, 10), bool))) == {"type": "FeatureCollection", "features": []}
    save_annotations(Instances.empty((10, 12)), tmp_path / "none.geojson")  # what detect writes where it finds nothing
    back = load_annotations(tmp_path / "none.geojson", image_shape=(10, 12))
    assert len(back) == 0 and back.image_hw == (10, 12)
    img = tmp_path / "img.png"
    cv2.imwrite(str(img), np.zeros((10, 12), np.uint8))
    r = run_cli("add", img, "--label", "x", "--annotations", tmp_path / "none.geojson",
                env={"SAM_DETECT_LIBRARY_PATH": str(tmp_path / "lib")})
    assert r.exit_code == 1 and "no examples to add (the annotation holds no objects)" in r.stderr
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_objects_of_one_or_two_pixels_are_outlined_on_their_edges(tmp_path):
    m = np.zeros((5, 20, 20), bool)
    m[0, 5, 5] = True  # one pixel
    m[1, 10, 3:5] = True  # two
    m[2, 2, 9], m[2, 3, 10] = True, True  # two, diagonal
    m[3, 15, 2:15] = True  # a line one pixel wide: traced
    m[4, 2:8, 12:18] = True  # a square, traced as before
    inst = Instances(masks=m, labels=["a", "b", "c", "d", "e"])
    doc = to_geojson(inst)
    assert len(doc["features"]) == 5
    assert [f["geometry"]["type"] for f in doc["features"]] == ["Polygon"] * 5
    # the pixel's four corners, counter-clockwise by the numbers (RFC 7946's right-hand rule)
    assert doc["features"][0]["geometry"]["coordinates"] == [[[5, 5], [6, 5], [6, 6], [5, 6], [5, 5]]]
    save_annotations(inst, tmp_path / "small.geojson")
    back = load_annotations(tmp_path / "small.geojson", image_shape=(20, 20))
    np.testing.assert_array_equal(back.masks, m)
    assert list(back.labels) == ["a", "b", "c", "d", "e"]


def test_which_files_need_the_image_size(tmp_path):
    from sam_detect.formats import needs_image_size

    inst = Instances(masks=_masks(), labels=["a", "b", "c"])
    assert needs_image_size(save_annotations(inst, tmp_path / "x.geojson"))
    assert needs_image_size(save_annotations(inst, tmp_path / "p.json", format="polygons"))
    assert not needs_image_size(save_annotations(inst, tmp_path / "c.json", format="coco", image_names=["x.png"]))
    assert not needs_image_size(save_annotations(inst, tmp_path / "l.json", format="labelme", image_names=["x.png"]))
    assert not needs_image_size(save_annotations(inst, tmp_path / "l.tif"))
    (tmp_path / "broken.json").write_text("{nope")
    assert not needs_image_size(tmp_path / "broken.json")  # its error comes when it is read


def test_positions_with_an_altitude_read_as_their_x_and_y(tmp_path):
    ring2 = [[2, 2], [12, 2], [12, 12], [2, 12], [2, 2]]
    docs = {}
    for name, ring in (("flat", ring2), ("z", [[x, y, 0.0] for x, y in ring2])):
        docs[name] = tmp_path / f"{name}.geojson"
        docs[name].write_text(json.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    flat, z = (load_annotations(docs[n], image_shape=(20, 20)) for n in ("flat", "z"))
    np.testing.assert_array_equal(flat.masks, z.masks)
    bad = tmp_path / "bad.geojson"
    bad.write_text(json.dumps({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[1, 2, 3, 4, 5]]}}))
    with pytest.raises(AnnotationError, match="lists of 2 or 3 numbers"):
        load_annotations(bad, image_shape=(20, 20))


def test_qupath_derived_classes_keep_their_parent(tmp_path):
    ring = [[2, 2], [12, 2], [12, 12], [2, 12], [2, 2]]
    kinds = [
        {"names": ["Tumor", "Positive"], "color": [200, 0, 0]},  # QuPath 0.4 on
        {"name": "Positive", "parentClass": {"name": "Tumor"}, "colorRGB": -1},  # before
        {"name": "Stroma", "color": [0, 200, 0]},
    ]
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[x + 14 * k, y] for x, y in ring]]},
         "properties": {"objectType": "annotation", "classification": c}} for k, c in enumerate(kinds)]}
    path = tmp_path / "derived.geojson"
    path.write_text(json.dumps(doc))
    assert list(load_annotations(path, image_shape=(20, 50)).labels) == ["Tumor: Positive", "Tumor: Positive",
                                                                          "Stroma"]


def test_a_stacks_frame_is_each_outlines_plane_as_qupath_writes_it(tmp_path):
    """GeoJSON carried no frame: QuPath put every frame's outlines on the stack's first plane,
    and `add stack.tif --frame 0 --annotations frame1.geojson` took frame 1's outlines for
    frame 0 without a word. Now each geometry carries QuPath's ``plane`` and the collection
    the ``frame``, which ``add`` reads as it reads a COCO file's records."""
    import tifffile

    rgb, masks, labels = draw_scene(0)
    inst = Instances(masks=masks, labels=labels)
    assert "frame" not in to_geojson(inst) and "plane" not in to_geojson(inst)["features"][0]["geometry"]
    inst.metadata["frame"] = 3  # a frame whose axes are not known (the API, the UI): t, as `video` reads stacks
    doc = to_geojson(inst)
    assert doc["frame"] == 3
    assert {json.dumps(f["geometry"]["plane"]) for f in doc["features"]} == {'{"c": -1, "z": 0, "t": 3}'}
    # from the command line, by the stack's axes: a z-stack's frame is a z
    lib = ["--library-path", tmp_path / "libs", "-q"]
    img = tmp_path / "scene.png"
    cv2.imwrite(str(img), rgb)
    truth = save_annotations(inst, tmp_path / "truth.geojson")
    assert run_cli("add", img, "--annotations", truth, *lib).exit_code == 0
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.stack([draw_scene(s)[0][..., 0] for s in (1, 2)]), imagej=True,
                     metadata={"axes": "ZYX"})
    out = tmp_path / "frame1.geojson"
    r = run_cli("detect", stack, "--frame", 1, "--geojson", out, "--json", *lib)
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert len(doc["features"]) == json.loads(r.stdout)["count"] > 0 and doc["frame"] == 1
    assert all(f["geometry"]["plane"] == {"c": -1, "z": 1, "t": 0} for f in doc["features"])
    r = run_cli("add", stack, "--frame", 0, "--label", "x", "--annotations", out, "--library", "other", *lib)
    assert r.exit_code == 1 and f"{out}: no annotations for frame 0; the file's frames: 1" in r.output
    r = run_cli("add", stack, "--frame", 1, "--label", "x", "--annotations", out, "--library", "other", *lib)
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize(("z", "t", "frame"), [(0, 2, 2), (3, 0, 3), (0, 0, 0), (1, 2, None)])
def test_a_qupath_export_without_a_frame_takes_it_from_its_plane(tmp_path, z, t, frame):
    """QuPath writes each geometry's ``plane``, never the collection's ``frame``: its export of
    frame 2 was read as frame-less, and `add --frame 0` took it for frame 0 without a word. A
    plane's ``t`` is the frame, or its ``z`` on a z-stack (as :func:`to_geojson` writes them);
    a plane with both (a hyperstack's) says no frame without the stack's axes."""
    rgb, masks, labels = draw_scene(0)
    doc = to_geojson(Instances(masks=masks, labels=labels))
    for f in doc["features"]:
        f["geometry"]["plane"] = {"c": -1, "z": z, "t": t}
    path = tmp_path / "qupath.geojson"
    path.write_text(json.dumps(doc))
    inst = load_annotations(path, image_shape=rgb.shape[:2])
    assert inst.metadata.get("frame") == frame and inst.metadata["plane"] == {"c": -1, "z": z, "t": t}
    assert all(f["geometry"]["plane"] == {"c": -1, "z": z, "t": t} for f in to_geojson(inst)["features"])
    if frame is not None:
        assert len(load_annotations(path, image_shape=rgb.shape[:2], at_frame=frame)) == len(masks)
        with pytest.raises(AnnotationError, match=f"no annotations for frame {frame + 1}; the file's frames: {frame}$"):
            load_annotations(path, image_shape=rgb.shape[:2], at_frame=frame + 1)
    del doc["features"][0]["geometry"]["plane"]  # QuPath writes none on the first plane: objects of two frames
    path.write_text(json.dumps(doc))
    assert "frame" not in load_annotations(path, image_shape=rgb.shape[:2]).metadata or z == t == 0


@pytest.mark.parametrize(("axes", "shape", "frame", "plane"), [
    ("TYX", (4,), 2, (0, 2)),
    ("ZYX", (5,), 4, (4, 0)),
    ("TZYX", (3, 2), 3, (1, 1)),  # frames run through z first, as the file stores them
    ("QYX", (6,), 5, (0, 5)),  # no axes: a time-lapse, as `video` reads it
])
def test_loaded_plane_follows_the_stacks_axes(tmp_path, axes, shape, frame, plane):
    import tifffile

    from sam_detect.io.images import load_image

    path = tmp_path / "s.tif"
    data = np.zeros((*shape, 8, 9), np.uint8)
    if axes == "QYX":
        tifffile.imwrite(path, data)
    else:
        tifffile.imwrite(path, data, imagej=True, metadata={"axes": axes})
    loaded = load_image(path, frame=frame)
    assert loaded.source_axes == axes
    assert loaded.plane == {"c": -1, "z": plane[0], "t": plane[1]}
    assert load_image(tmp_path / "s.tif", frame=0).plane is not None
    cv2.imwrite(str(tmp_path / "one.png"), np.zeros((8, 9), np.uint8))
    assert load_image(tmp_path / "one.png").plane is None


def _edges_meet(rings) -> bool:
    """Whether two edges of a polygon's closed rings (``[[x, y], ...]``, first = last) meet
    anywhere, other than neighbours on one ring at their shared vertex: OGC's (and
    shapely's) invalid rings, a self-crossing ring or a hole across its exterior."""
    edges = [(k, n, len(r) - 1, r[n], r[n + 1]) for k, r in enumerate(rings) for n in range(len(r) - 1)]

    def turn(a, b, c):
        v = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        return (v > 0) - (v < 0)

    def on(a, b, c):  # c on segment ab, given the three in a line
        return min(a[0], b[0]) <= c[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= c[1] <= max(a[1], b[1])

    for x, (k, n, size, a, b) in enumerate(edges):
        for k2, n2, _, c, d in edges[x + 1:]:
            if k == k2 and (abs(n - n2) == 1 or abs(n - n2) == size - 1):
                continue
            d1, d2, d3, d4 = turn(a, b, c), turn(a, b, d), turn(c, d, a), turn(c, d, b)
            if (d1 * d2 < 0 and d3 * d4 < 0) or any(t == 0 and on(*seg, p) for t, seg, p in (
                    (d1, (a, b), c), (d2, (a, b), d), (d3, (c, d), a), (d4, (c, d), b))):
                return True
    return False


def crossing_fields() -> list[Instances]:
    """The random blobs (of 244 fields of 40 x 40) whose outlines Douglas-Peucker made cross
    themselves at a tolerance of 2-3 px, one ``Instances`` per field."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(0)
    fields = [ndi.gaussian_filter(rng.random((40, 40)), 2) > 0.5 for _ in range(244)]
    out = []
    for k in (33, 42, 79, 243):
        lab, n = ndi.label(fields[k])
        out.append(Instances(masks=np.stack([lab == i for i in range(1, n + 1)]), labels=["x"] * n))
    return out


def test_simplified_outlines_never_cross_themselves_or_their_holes():
    """``--tolerance 2`` or more: Douglas-Peucker made a ring cross itself, or a hole cross its
    exterior, in 1 of 30 random blobs at 3 px (invalid polygons in shapely, QuPath's JTS and
    GIS tools). Such an object is simplified less; every other keeps its tolerance."""
    for tolerance in (2, 3):
        crossed, simplified, objects = 0, 0, 0
        for inst in crossing_fields():
            exact = to_geojson(inst)["features"]
            for f, e in zip(to_geojson(inst, tolerance=tolerance)["features"], exact, strict=True):
                polys = [f["geometry"]["coordinates"]] if f["geometry"]["type"] == "Polygon" else \
                    f["geometry"]["coordinates"]
                crossed += any(_edges_meet(rings) for rings in polys)
                objects += 1
                simplified += len(json.dumps(f["geometry"])) < len(json.dumps(e["geometry"]))
        assert crossed == 0
        assert objects == 22 and simplified >= 20  # the tolerance still simplifies the rest
