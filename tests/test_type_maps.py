"""Type maps beside label images (``--types``): histology's instance map + type map."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
from conftest import draw_scene, run_cli

from sam_detect.errors import AnnotationError
from sam_detect.formats import load_ground_truth, parse_type_names, typed_instances


def _maps(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A scene's image, its label image (ids 1..6) and its type map (disc 1, square 2)."""
    rgb, masks, labels = draw_scene(seed)
    lab = np.zeros(rgb.shape[:2], np.uint16)
    types = np.zeros(rgb.shape[:2], np.uint8)
    for k, (m, name) in enumerate(zip(masks, labels, strict=True)):
        lab[m] = k + 1
        types[m] = 1 if name == "disc" else 2
    return rgb, lab, types


@pytest.fixture
def typed_files(tmp_path):
    out = {"image": [], "labels": [], "types": []}
    for seed in range(3):
        rgb, lab, types = _maps(seed)
        for key, arr in (("image", rgb), ("labels", lab), ("types", types)):
            path = tmp_path / f"{key}{seed}.png"
            cv2.imwrite(str(path), arr)
            out[key].append(path)
    out["lib"] = ["--library-path", tmp_path / "libs"]
    return out


def test_each_object_takes_the_type_most_of_its_pixels_carry():
    lab = np.zeros((20, 30), np.int32)
    lab[2:8, 2:8] = 4
    lab[10:18, 10:20] = 9
    lab[2:6, 22:28] = 7  # no type under it
    types = np.zeros_like(lab)
    types[2:8, 2:8] = 2
    types[2:3, 2:8] = 1  # a stray row of another type: the majority wins
    types[10:18, 10:20] = 3
    inst, untyped = typed_instances(lab, types, {2: "tumour", 3: "immune"})
    assert untyped == 1
    assert list(inst.labels) == ["tumour", "immune"]
    assert inst.data["type"].tolist() == [2, 3] and inst.data["source_id"].tolist() == [4, 9]
    assert [int(inst.crop(i).area) for i in range(len(inst))] == [36, 80]
    unnamed, _ = typed_instances(lab, types)
    assert list(unnamed.labels) == ["type 2", "type 3"]


@pytest.mark.parametrize(
    ("types", "names", "message"),
    [
        (np.zeros((20, 31), np.int32), None, "the type map's shape (20, 31) differs from the label image's (20, 30)"),
        (np.zeros((20, 30), np.int32), None, "no object of the label image carries a type"),
        (np.full((20, 30), 5, np.int32), {1: "a"}, "type(s) 5 of the type map have no name; named: 1=a"),
    ],
)
def test_typed_instances_refuse_maps_that_do_not_fit(types, names, message):
    lab = np.zeros((20, 30), np.int32)
    lab[2:8, 2:8] = 1
    with pytest.raises(AnnotationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        typed_instances(lab, types, names)


def test_a_label_image_given_as_the_type_map_is_not_listed_value_by_value():
    """Every object its own "type": the error names the first few, how many, and what to do."""
    lab = np.zeros((20, 60), np.int32)
    for k in range(15):
        lab[2:8, 4 * k:4 * k + 3] = k + 1
    with pytest.raises(AnnotationError) as err:
        typed_instances(lab, lab, {1: "a"})
    text = str(err.value)
    assert text.startswith("type(s) 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, ... 15 (14 in all: is it a type map?) of the "
                           "type map have no name; named: 1=a; name every type in --type-names")
    assert "\n" not in text


def test_type_names_in_order_or_by_value():
    assert parse_type_names("neoplastic, inflammatory") == {1: "neoplastic", 2: "inflammatory"}
    assert parse_type_names("1=neoplastic,3=dead") == {1: "neoplastic", 3: "dead"}
    assert parse_type_names(None) == {} and parse_type_names(" ") == {}
    for spec, message in [("a,,b", "an empty name"), ("1=a,b", "every name as VALUE=NAME"),
                          ("x=a", "'x' is not a type value"), ("0=a", "type values start at 1"),
                          ("1=a,1=b", "type 1 is named twice"), ("unknown", "is reserved")]:
        with pytest.raises(AnnotationError, match=message):
            parse_type_names(spec)


def test_two_types_of_one_name_are_one_class_and_stderr_says_so(caplog):
    """`--type-names a,a` merged types 1 and 2 into one class without a word (a helper's bug
    hunt): meant or not, it is said now."""
    assert parse_type_names("a,a,b") == {1: "a", 2: "a", 3: "b"}
    assert "types 1, 2 are all named 'a': their objects are one class" in caplog.text
    caplog.clear()
    parse_type_names("a,b")
    assert "one class" not in caplog.text


def test_ground_truth_from_label_images_and_type_maps(typed_files, tmp_path):
    f = typed_files
    names = [p.name for p in f["image"]]
    gt = load_ground_truth(f["labels"], names, types=f["types"], type_names={1: "disc", 2: "square"})
    for g, seed in zip(gt, range(3), strict=True):
        assert sorted(g.labels) == sorted(draw_scene(seed)[2])
    # one stack for every image, and its type stack, frame for frame
    stack, kinds = tmp_path / "labels.npy", tmp_path / "types.npy"
    np.save(stack, np.stack([_maps(s)[1] for s in range(3)]))
    np.save(kinds, np.stack([_maps(s)[2] for s in range(3)]))
    gt = load_ground_truth([stack], names, types=[kinds])
    assert [sorted(set(g.labels)) for g in gt] == [["type 1", "type 2"]] * 3
    with pytest.raises(AnnotationError, match="2 type map"):
        load_ground_truth(f["labels"], names, types=f["types"][:2])


def test_add_labels_each_object_by_its_type(typed_files, tmp_path):
    f = typed_files
    # one object of the label image carries no type: left out, and said
    types = cv2.imread(str(f["types"][0]), cv2.IMREAD_UNCHANGED)
    lab = cv2.imread(str(f["labels"][0]), cv2.IMREAD_UNCHANGED)
    types[lab == 6] = 0
    partial = tmp_path / "partial.png"
    cv2.imwrite(str(partial), types)
    r = run_cli("add", f["image"][0], "--labels", f["labels"][0], "--types", partial,
                "--type-names", "disc,square", *f["lib"])
    assert r.exit_code == 0, r.output
    assert "added 5 example(s) (disc: 3, square: 2)" in r.stdout
    assert "1 object(s) of --labels carry no type in --types (0 under them): not added" in r.stderr
    # an (H, W, 2) instance + type array, channel by channel
    both = tmp_path / "both.npy"
    np.save(both, np.stack([lab, cv2.imread(str(f["types"][0]), cv2.IMREAD_UNCHANGED).astype(np.uint16)], -1))
    r = run_cli("add", f["image"][0], "--labels", both, "--labels-channel", 0, "--types", both,
                "--types-channel", 1, "-q", *f["lib"], "--library", "unnamed")
    assert r.exit_code == 0, r.output
    assert "added 6 example(s) (type 1: 3, type 2: 3)" in r.stdout
    from sam_detect.formats import load_annotations

    assert len(load_annotations(both, channel=0)) == 6  # the Python side reads its channels too
    # --limit keeps the first objects whatever their types: a type left without one is named
    r = run_cli("add", f["image"][0], "--labels", f["labels"][0], "--types", f["types"][0],
                "--type-names", "disc,square", "--limit", 1, *f["lib"], "--library", "limited")
    assert r.exit_code == 0, r.output
    assert "--limit 1 keeps the first 1 of 6 objects; no example left of: " in r.stderr
    # --limit-per-label keeps the first N of each type: every type keeps examples
    r = run_cli("add", f["image"][0], "--labels", f["labels"][0], "--types", f["types"][0],
                "--type-names", "disc,square", "--limit-per-label", 2, *f["lib"], "--library", "per-type")
    assert r.exit_code == 0, r.output
    assert "added 4 example(s) (disc: 2, square: 2)" in r.stdout
    assert "--limit-per-label 2 keeps the first 2 objects of each label (disc: 2 of 3, square: 2 of 3)" in r.stderr
    # a limit above every type's count leaves the objects as they are, and says nothing
    r = run_cli("add", f["image"][0], "--labels", f["labels"][0], "--types", f["types"][0],
                "--type-names", "disc,square", "--limit-per-label", 5, *f["lib"], "--library", "all-of-them")
    assert r.exit_code == 0, r.output
    assert "added 6 example(s) (disc: 3, square: 3)" in r.stdout and "--limit-per-label" not in r.stderr
    r = run_cli("add", f["image"][0], "--labels", f["labels"][0], "--types", f["types"][0],
                "--limit-per-label", 0, *f["lib"], "--library", "none")
    assert r.exit_code == 2 and "--limit-per-label" in r.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--label", "x"], "give --label (one label for every object) or --types (each object's own), not both"),
        (["--type-names", "a,,b"], "type names 'a,,b': an empty name"),
        (["--type-names", "disc"], "type(s) 2 of the type map have no name; named: 1=disc"),
    ],
)
def test_add_refuses_bad_types_and_writes_nothing(typed_files, args, message):
    f = typed_files
    r = run_cli("add", f["image"][0], "--labels", f["labels"][0], "--types", f["types"][0], *args, *f["lib"])
    assert r.exit_code != 0
    assert message in r.output and "Traceback" not in r.output
    r = run_cli("library", "list", "--library-path", f["lib"][1])
    assert r.exit_code == 0, r.output
    assert "default" not in r.stdout


def test_types_need_a_label_image(typed_files):
    f = typed_files
    r = run_cli("add", f["image"][0], "--label", "x", "--box", "1,1,20,20", "--types", f["types"][0], *f["lib"])
    assert r.exit_code == 2 and "--types, --types-channel and --type-names go with --labels" in r.output
    r = run_cli("add", f["image"][0], "--labels", f["labels"][0], "--type-names", "a", *f["lib"])
    assert r.exit_code == 2 and "--types-channel and --type-names need --types" in r.output


def test_eval_scores_each_type(typed_files):
    f = typed_files
    ann = [a for p in f["labels"] for a in ("-a", p)]
    kinds = [a for p in f["types"] for a in ("--types", p)]
    r = run_cli("eval", *f["image"], *ann, *kinds, "--type-names", "disc,square", "--shots", 2,
                "--examples-from", 0, "--detect-on", "1,2", "--json", "--no-baselines", "--embedder", "handcrafted",
                "-q")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["examples"] == {"disc": 2, "square": 2}
    at = res["metrics"]["by_iou"]["0.5"]
    assert set(at["per_class"]) == {"disc", "square"}
    assert at["confusion"]["classes"] == ["disc", "square"]
    assert at["detection"]["tp"] == 12  # every object of the two scored scenes found, whatever its type
    r = run_cli("eval", *f["image"], *ann, "--types", f["types"][0], "-q")
    assert r.exit_code != 0 and "1 type map(s) for 3 annotation file(s)" in r.output


def _mat(path, **arrays):
    from scipy import io

    io.savemat(path, arrays)
    return path


def test_mat_files_of_histology_sets(tmp_path):
    """CoNSeP's ``inst_map`` + ``type_map`` (or ``inst_type`` per instance) and Lizard's
    ``inst_map`` + ``id``/``class``: the same typed objects from each."""
    from sam_detect.formats import read_label_array

    _, lab, types = _maps(0)
    ids = np.arange(1, int(lab.max()) + 1)
    per = np.array([int(types[lab == k].max()) for k in ids])
    files = {
        "consep": _mat(tmp_path / "consep.mat", inst_map=lab.astype(np.float64), type_map=types),
        "inst_type": _mat(tmp_path / "hovernet.mat", inst_map=lab, inst_type=per[:, None]),
        "lizard": _mat(tmp_path / "lizard.mat", inst_map=lab, id=ids[::-1, None], **{"class": per[::-1, None]}),
    }
    names = {1: "disc", 2: "square"}
    for kind, path in files.items():
        inst, untyped = typed_instances(read_label_array(path, None, None),
                                        read_label_array(path, None, None, pieces=False), names)
        assert untyped == 0 and list(inst.labels) == [names[int(v)] for v in per], kind
    with pytest.raises(AnnotationError, match="no instance map among its arrays \\(foo\\)"):
        read_label_array(_mat(tmp_path / "bad.mat", foo=np.arange(5)), None, None)
    with pytest.raises(AnnotationError, match="holds no types"):
        read_label_array(_mat(tmp_path / "plain.mat", inst_map=lab), None, None, pieces=False)
    # a type map alone is no instance map (touching objects of one type would be one object)
    with pytest.raises(AnnotationError, match="no instance map among its arrays \\(inst_type, type_map\\)"):
        read_label_array(_mat(tmp_path / "types.mat", type_map=types, inst_type=per[:, None]), None, None)
    with pytest.raises(AnnotationError, match="do not pair with instance ids"):
        read_label_array(_mat(tmp_path / "odd.mat", inst_map=lab, id=ids[:3, None], **{"class": per[:, None]}),
                         None, None, pieces=False)
    # HoVer-Net's output: ids with gaps (small objects removed), paired with their types by inst_uid;
    # without inst_uid (CoNSeP's way), the i-th type goes to the map's i-th id
    gappy = np.zeros_like(lab)
    for k in ids:
        gappy[lab == k] = 3 * k + 2
    uid = 3 * ids + 2
    for arrays in ({"inst_uid": uid[::-1, None], "inst_type": per[::-1, None]}, {"inst_type": per[:, None]}):
        path = _mat(tmp_path / "gaps.mat", inst_map=gappy, **arrays)
        inst, untyped = typed_instances(read_label_array(path, None, None),
                                        read_label_array(path, None, None, pieces=False), names)
        assert untyped == 0 and list(inst.labels) == [names[int(v)] for v in per], sorted(arrays)
    (tmp_path / "broken.mat").write_bytes(b"MATLAB 5.0 broken")
    with pytest.raises(AnnotationError, match="cannot read the .mat file"):
        read_label_array(tmp_path / "broken.mat", None, None)


def test_add_and_eval_from_mat_files(typed_files, tmp_path):
    f = typed_files
    mats = []
    for seed in range(3):
        _, lab, types = _maps(seed)
        mats.append(_mat(tmp_path / f"gt{seed}.mat", inst_map=lab, type_map=types))
    r = run_cli("add", f["image"][0], "--labels", mats[0], "--types", mats[0], "--type-names", "disc,square", "-q",
                *f["lib"])
    assert r.exit_code == 0, r.output
    assert "added 6 example(s) (disc: 3, square: 3)" in r.stdout
    ann = [a for p in mats for a in ("-a", p)]
    kinds = [a for p in mats for a in ("--types", p)]
    r = run_cli("eval", *f["image"], *ann, *kinds, "--type-names", "disc,square", "--shots", 2,
                "--examples-from", 0, "--detect-on", "1,2", "--json", "--no-baselines", "--embedder", "handcrafted",
                "-q")
    assert r.exit_code == 0, r.output
    assert set(json.loads(r.stdout)["metrics"]["by_iou"]["0.5"]["per_class"]) == {"disc", "square"}


def test_eval_scores_objects_of_no_type_as_nothing(typed_files, tmp_path):
    """An annotated object whose pixels carry no type is left out of the scoring: a detection
    of it is neither true nor false (it counted as a false object, "overlapping no annotated
    object"), and no example is drawn from it."""
    import tifffile

    f = typed_files
    lab = tifffile.imread(f["labels"][1]) if str(f["labels"][1]).endswith((".tif", ".tiff")) else \
        cv2.imread(str(f["labels"][1]), cv2.IMREAD_UNCHANGED)
    kinds = cv2.imread(str(f["types"][1]), cv2.IMREAD_UNCHANGED) if not str(f["types"][1]).endswith(".tif") else \
        tifffile.imread(f["types"][1])
    gone = int(np.unique(lab[lab > 0])[0])
    kinds = kinds.copy()
    kinds[lab == gone] = 0
    blank = tmp_path / "types1_one_untyped.tif"
    tifffile.imwrite(blank, kinds)
    ann = [a for p in f["labels"][:2] for a in ("-a", p)]
    args = ["eval", *f["image"][:2], *ann, "--types", f["types"][0], "--types", blank, "--type-names", "disc,square",
            "--shots", 2, "--examples-from", 0, "--detect-on", 1, "--no-baselines", "--embedder", "handcrafted",
            "--segmenter", "classical", "-q"]
    r = run_cli(*args)
    assert r.exit_code == 0, r.output
    assert "1 of no type, not scored" in r.stdout
    doc = json.loads(run_cli(*args, "--json").stdout)
    n_objects = len(np.unique(lab[lab > 0]))
    assert doc["metrics"]["n_gt"] == n_objects - 1 and doc["protocol"]["untyped"] == 1


def test_detect_writes_label_images_and_type_maps(typed_files, tmp_path):
    import tifffile

    f = typed_files
    r = run_cli("add", f["image"][0], "--labels", f["labels"][0], "--types", f["types"][0], "--type-names",
                "disc,square", "-q", *f["lib"])
    assert r.exit_code == 0, r.output
    labels, types = tmp_path / "labels.tif", tmp_path / "types.png"
    r = run_cli("detect", f["image"][1], "--json", "--label-image", labels, "--type-map", types, *f["lib"])
    assert r.exit_code == 0, r.output
    assert "sam-detect: type map values: 1=disc, 2=square" in r.stderr
    rec = json.loads(r.stdout)
    ids = tifffile.imread(labels)
    kinds = cv2.imread(str(types), cv2.IMREAD_UNCHANGED)
    assert ids.shape == kinds.shape == (160, 160) and rec["count"] >= 4
    assert int(ids.max()) == rec["count"]
    for obj in rec["objects"]:  # object id k is value k + 1, its pixels its type
        at = ids == obj["id"] + 1
        assert int(at.sum()) == obj["area"]
        assert set(np.unique(kinds[at]).tolist()) == {["disc", "square"].index(obj["label"]) + 1}
    assert not kinds[ids == 0].any()
    # several images: one file of each per image in the folder
    out = tmp_path / "maps"
    r = run_cli("detect", *f["image"][1:], "--label-image", out, "--type-map", out, "-q", *f["lib"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["image1_labels.tif", "image1_types.tif",
                                                     "image2_labels.tif", "image2_types.tif"]
    assert np.array_equal(tifffile.imread(out / "image1_labels.tif"), ids)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--label-image", "{tmp}/x.jpg"], "--label-image"),
        (["--type-map", "{tmp}/nope/x.tif"], "folder"),
        (["--label-image", "{tmp}/x.tif", "--slide"], "leave out --overlay, --label-image, --type-map"),
        (["--label-image", "{tmp}/x.tif", "--resume", "{tmp}/r.jsonl"], "of one image need its masks from this run"),
    ],
)
def test_detect_label_outputs_refused_before_any_work(typed_files, tmp_path, args, message):
    f = typed_files
    r = run_cli("detect", f["image"][1], *[a.replace("{tmp}", str(tmp_path)) for a in args], *f["lib"])
    assert r.exit_code == 2 and message in r.output, r.output
    assert "Traceback" not in r.output


def test_detect_writes_one_csv_row_per_object(typed_files, tmp_path):
    import csv

    f = typed_files
    r = run_cli("add", f["image"][0], "--labels", f["labels"][0], "--types", f["types"][0], "--type-names",
                "disc,square", "-q", *f["lib"])
    assert r.exit_code == 0, r.output
    table = tmp_path / "objects.csv"
    r = run_cli("detect", *f["image"][1:], "--jsonl", "--csv", table, *f["lib"])
    assert r.exit_code == 0, r.output
    records = [json.loads(line) for line in r.stdout.splitlines()]
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == sum(rec["count"] for rec in records) and f"wrote {len(rows)} rows" in r.stderr
    objects = [(rec["image"], obj) for rec in records for obj in rec["objects"]]
    for row, (image, obj) in zip(rows, objects, strict=True):
        assert row["image"] == image and row["label"] == obj["label"] and int(row["area"]) == obj["area"]
        x1, y1, x2, y2 = obj["box"]
        cx, cy = obj["centroid"]
        assert x1 <= cx <= x2 and y1 <= cy <= y2
        assert (float(row["centroid_x"]), float(row["centroid_y"])) == (cx, cy)
    r = run_cli("detect", f["image"][1], "--csv", tmp_path / "x.xlsx", *f["lib"])
    assert r.exit_code == 2 and "--csv" in r.output


@pytest.mark.parametrize("text", ["=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://x","y")'])
def test_a_csv_text_cell_that_starts_as_a_formula_is_quoted(tmp_path, text):
    """A label (or image name) such as ``=1+1``, from a crafted COCO file's class names, was
    written as it is: Excel and LibreOffice ran it as a formula. It gets a ``'`` before it (OWASP);
    other text and the numbers stay as they are."""
    import csv

    from sam_detect.outputs import write_csv

    obj = {"id": 0, "label": text, "confidence": 1.0, "area": 5, "centroid": [1.0, 2.0], "box": [0, 0, 3, 4]}
    table = tmp_path / "t.csv"
    write_csv([{"image": text + ".png", "objects": [obj, {**obj, "id": 1, "label": "münze, -1"}]}], table)
    rows = list(csv.DictReader(table.open(newline="")))
    assert [(r["image"], r["label"]) for r in rows] == [("'" + text + ".png", "'" + text),
                                                         ("'" + text + ".png", "münze, -1")]
    assert (rows[0]["id"], rows[0]["area"], rows[0]["x1"]) == ("0", "5", "0")


def test_text_files_are_utf8_whatever_the_locale(tmp_path):
    """Under a locale that is not UTF-8 (``LC_ALL=C``; Windows' cp1252 for CJK or Greek), a
    label such as ``Zellkern ü`` made ``--csv`` fail with an internal error (UnicodeEncodeError)
    after the whole run, and a COCO file of such class names, UTF-8 as JSON is, was refused as
    "not valid JSON" (or read garbled). Every text file is written and read as UTF-8."""
    import subprocess
    import sys
    from pathlib import Path

    doc = {"categories": [{"id": 1, "name": "Zellkern ü 细胞"}]}
    (tmp_path / "in.json").write_bytes(json.dumps(doc, ensure_ascii=False).encode("utf-8"))
    code = f"""
import sys
from pathlib import Path
from sam_detect.formats._common import read_json, write_json
from sam_detect.outputs import write_csv
import locale
assert locale.getpreferredencoding(False).lower() not in ("utf-8", "utf8")
folder = Path({str(tmp_path)!r})
doc = read_json(folder / "in.json")
name = doc["categories"][0]["name"]
obj = {{"id": 0, "label": name, "confidence": 1.0, "area": 5, "centroid": [1.0, 2.0], "box": [0, 0, 3, 4]}}
write_csv([{{"image": "bild_ä.png", "objects": [obj]}}], folder / "t.csv")
write_json(folder / "out.json", doc)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHONUTF8", "PYTHONIOENC"))}
    env.update(LC_ALL="C", PYTHONCOERCECLOCALE="0", PYTHONUTF8="0")
    here = str(Path(__file__).resolve().parents[1])  # this checkout's package, not an installed one
    env["PYTHONPATH"] = os.pathsep.join([here, *filter(None, [env.get("PYTHONPATH")])])
    script = tmp_path / "run.py"  # source files are UTF-8 whatever the locale; a command line is not
    script.write_text(code, encoding="utf-8")
    r = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, encoding="utf-8",
                       errors="replace")
    assert r.returncode == 0, r.stderr
    rows = (tmp_path / "t.csv").read_text(encoding="utf-8").splitlines()
    assert rows[1].startswith("bild_ä.png,0,Zellkern ü 细胞,")
    assert json.loads((tmp_path / "out.json").read_text(encoding="utf-8")) == doc


def test_pannuke_masks_give_instances_and_types(tmp_path, caplog):
    """PanNuke's ``masks.npy`` ((N, H, W, 6): an instance map per type in channels 0-4, the
    background in 5, float) is read as instance maps with ``--labels`` and type maps with
    ``--types``, frame by frame, each channel's ids kept apart (two types may reuse an id);
    ``add`` and ``eval`` take it with the images' ``.npy`` stack as it comes. A 6-channel array
    laid out otherwise stays refused."""
    from sam_detect.formats import read_label_image

    images, masks = [], []
    for seed in range(3):
        rgb, lab, types = _maps(seed)
        m = np.zeros((*lab.shape, 6), np.float64)
        count = {0: 0, 2: 0}
        for k in np.unique(lab)[1:]:
            c = 0 if types[lab == k][0] == 1 else 2
            count[c] += 1
            m[..., c][lab == k] = count[c]  # 1, 2, 3 in each type's channel: ids repeat across types
        m[..., 5] = lab == 0
        images.append(rgb.astype(np.float64))
        masks.append(m)
    np.save(tmp_path / "images.npy", np.stack(images))
    np.save(tmp_path / "masks.npy", np.stack(masks))
    with caplog.at_level("WARNING", logger="sam_detect"):
        inst = read_label_image(tmp_path / "masks.npy")
    assert "read as PanNuke masks" in caplog.text
    kinds = read_label_image(tmp_path / "masks.npy", pieces=False)
    assert inst.shape == kinds.shape == (3, *masks[0].shape[:2])
    for t in range(3):
        _, lab, types = _maps(t)
        assert len(np.unique(inst[t])) == len(np.unique(lab))  # six objects, whatever ids repeat
        for k in np.unique(lab)[1:]:
            assert len(np.unique(inst[t][lab == k])) == 1
        np.testing.assert_array_equal(kinds[t], np.where(lab > 0, np.where(types == 1, 1, 3), 0))
    names = "neoplastic,inflammatory,connective,dead,epithelial"
    lib = ["--library-path", tmp_path / "libs", "--segmenter", "classical"]
    r = run_cli("add", tmp_path / "images.npy", "--frame", "1", "--labels", tmp_path / "masks.npy",
                "--types", tmp_path / "masks.npy", "--type-names", names, *lib)
    assert r.exit_code == 0, r.output
    assert "added 6 example(s) (connective: 3, neoplastic: 3)" in r.stdout
    r = run_cli("eval", tmp_path / "images.npy", "-a", tmp_path / "masks.npy", "--types", tmp_path / "masks.npy",
                "--type-names", names, "--examples-from", "0,1", "--detect-on", "2", "--shots", "3", "--json",
                "--segmenter", "classical")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["per_image"][0]["gt"] == 6
    other = np.stack(masks)
    other[..., 5] = 1  # a "background" over the nuclei: not PanNuke's layout
    np.save(tmp_path / "other.npy", other)
    with pytest.raises(AnnotationError, match="must be \\(H, W\\) or a \\(T, H, W\\) stack"):
        read_label_image(tmp_path / "other.npy")
