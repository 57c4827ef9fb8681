"""``sam-detect eval`` end to end: the real entry point, exact errors and exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from conftest import draw_scene, run_main

from sam_detect.formats import save_coco, save_label_image
from sam_detect.instances import Instances

FAST = ["--segmenter", "classical", "--embedder", "handcrafted", "--store", "memory", "-q"]


@pytest.fixture
def stack_files(tmp_path):
    """A 3-frame image stack (TIFF) and its label stack, plus per-frame PNGs and a COCO file."""
    import cv2

    frames, insts = [], []
    for seed in range(3):
        rgb, masks, labels = draw_scene(seed)
        frames.append(rgb[..., 0])
        insts.append(Instances(masks=masks, labels=labels))
    tifffile.imwrite(tmp_path / "stack.tif", np.stack(frames), photometric="minisblack")
    save_label_image(insts, tmp_path / "labels.tif")
    pngs = []
    for i, f in enumerate(frames):
        p = tmp_path / f"f{i}.png"
        cv2.imwrite(str(p), f)
        pngs.append(p)
    save_coco(insts, tmp_path / "gt.json", image_names=[p.name for p in pngs], use_rle=True)
    return tmp_path, pngs


def test_help():
    code, out, _ = run_main("eval", "--help")
    assert code == 0
    for opt in (
        "--annotations",
        "--shots",
        "--seed",
        "--iou",
        "--sweep",
        "--json",
        "--report",
        "--examples-from",
    ):
        assert opt in out


def test_an_image_given_twice_is_said_to_be(stack_files):
    """`eval f0.png f0.png -a g -a g`: the repeated image was dropped without a word, and the
    error then blamed the annotation files' count (a helper's bug hunt)."""
    d, pngs = stack_files
    code, _, err = run_main("eval", pngs[0], pngs[1], str(pngs[0]).replace("f0.png", "./f0.png"),
                            "-a", d / "gt.json", *FAST)
    assert code == 2 and "is given twice" in err and "each image is scored once" in err, err
    assert "annotation files" not in err


def test_coco_images_of_one_name_in_two_folders_are_told_apart_by_their_paths(stack_files, tmp_path):
    """``plate1/A01.tif`` and ``plate2/A01.tif``, as ``detect --coco`` lists them: ``eval`` gives
    each its own ground truth (it matched by the file name alone: "2 images match 'p.png' alike");
    a file listing ``sub/p.png`` and ``sub3/p.png`` is refused for ``sub2/p.png`` by ``eval`` and
    ``add`` alike (it was scored, and stored as examples, against the other image's objects)."""
    import shutil

    d, pngs = stack_files
    for folder, png in (("sub", pngs[0]), ("sub2", pngs[1])):
        (tmp_path / folder).mkdir()
        shutil.copy(png, tmp_path / folder / "p.png")
    one, two = tmp_path / "sub" / "p.png", tmp_path / "sub2" / "p.png"
    insts = [Instances(masks=m, labels=lab) for m, lab in (draw_scene(0)[1:], draw_scene(1)[1:])]
    save_coco(insts, tmp_path / "two.json", image_names=[str(one), str(two)], use_rle=True)
    code, out, err = run_main("eval", one, two, "-a", tmp_path / "two.json", "--shots", "2", "--no-baselines",
                              "--json", *FAST)
    assert code == 0, err
    assert json.loads(out)["metrics"]["n_images"] == 2
    (tmp_path / "sub3").mkdir()
    three = tmp_path / "sub3" / "p.png"
    shutil.copy(pngs[1], three)
    save_coco([insts[0], insts[1]], tmp_path / "pair.json", image_names=[str(one), str(three)], use_rle=True)
    said = f"pair.json: lists {one}, {three}, not '{two}': the same file name in another folder is another image"
    code, _, err = run_main("eval", two, "-a", tmp_path / "pair.json", "--shots", "2", "--no-baselines", *FAST)
    assert code == 1 and said in err, err
    code, _, err = run_main("add", two, "--annotations", tmp_path / "pair.json", "--label", "shape",
                            "--library-path", tmp_path / "libs", "--segmenter", "classical", "-q")
    assert code == 1 and said in err, err


def test_eval_label_stack_table(stack_files):
    d, _ = stack_files
    code, out, err = run_main(
        "eval",
        d / "stack.tif",
        "-a",
        d / "labels.tif",
        "--shots",
        "3",
        "--label",
        "shape",
        "--examples-from",
        "0",
        "--detect-on",
        "1:3",
        *FAST,
    )
    assert code == 0, err
    assert "few-shot eval: 2 image(s) scored, 3 shot(s)/class" in out
    lines = [ln.split() for ln in out.splitlines() if ln.startswith(("0.3 ", "0.5 "))]
    assert len(lines) == 2
    assert all(0.0 <= float(row[3]) <= 1.0 for row in lines)  # F1 column


def test_eval_report_into_a_missing_folder_is_refused_before_any_work_as_detects_outputs(stack_files, tmp_path):
    """``--report`` into a folder that does not exist: exit 2 with detect's one line, the folder
    not made, nothing scored (no metrics printed)."""
    d, pngs = stack_files
    report = tmp_path / "nope" / "r.png"
    code, out, err = run_main("eval", *pngs, "-a", d / "gt.json", "--shots", "2", "--report", report, *FAST)
    assert code == 2 and out == "", out
    assert f"folder {report.parent} does not exist; create it first (mkdir -p {report.parent})" in err, err
    assert not report.parent.exists()
    code, out, err = run_main("detect", pngs[0], "--coco", report, *FAST)
    assert code == 2 and f"folder {report.parent} does not exist" in err, err  # the same line as detect's


def test_eval_coco_json_and_report(stack_files, tmp_path):
    d, pngs = stack_files
    report = tmp_path / "out" / "r.png"
    report.parent.mkdir()
    code, out, err = run_main(
        "eval",
        *pngs,
        "-a",
        d / "gt.json",
        "--shots",
        "2",
        "--iou",
        "0.5",
        "--json",
        "--report",
        report,
        *FAST,
    )
    assert code == 0, err
    doc = json.loads(out)
    m = doc["metrics"]
    assert m["n_images"] == 3 and m["n_ignored_gt"] == 4
    assert set(m["by_iou"]) == {"0.5"}
    assert set(m["by_iou"]["0.5"]["per_class"]) == {"disc", "square"}
    assert doc["examples"] == {"disc": 2, "square": 2}
    assert report.exists() and report.stat().st_size > 10_000
    # which objects were drawn, and what they made of the proposals: a bad draw can be looked at
    drawn = doc["protocol"]["drawn"]
    assert sum(len(d["objects"]) for d in drawn) == 4 and all(len(d["areas"]) == len(d["objects"]) for d in drawn)
    assert all(a > 0 for d in drawn for a in d["areas"]) and isinstance(doc["protocol"]["profile"], list)


def test_eval_sweep_json(stack_files):
    d, pngs = stack_files
    code, out, err = run_main(
        "eval",
        *pngs[:2],
        "-a",
        d / "gt.json",
        "--shots",
        "1",
        "--json",
        "--sweep",
        "threshold=0.5:0.9:0.2",
        *FAST,
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["param"] == "threshold" and doc["values"] == [0.5, 0.7, 0.9]
    assert doc["revoted"] is True and len(doc["results"]) == 3


def test_eval_per_image_files(stack_files, tmp_path):
    d, pngs = stack_files
    labels = tifffile.imread(d / "labels.tif")
    gts = []
    for i, lab in enumerate(labels):
        p = tmp_path / f"l{i}.tif"
        tifffile.imwrite(p, lab)
        gts += ["-a", p]
    code, out, err = run_main("eval", *pngs, *gts, "--shots", "2", "--json", *FAST)
    assert code == 0, err
    assert json.loads(out)["examples"] == {"object": 2}


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--iou", "0.5,2"], 2, "expected IoU thresholds in (0, 1] like 0.3,0.5, got '0.5,2'"),
        (["--sweep", "colour=1"], 2, "cannot sweep 'colour'"),
        (["--detect-on", "a:b"], 2, "expected indices like 0 or 0,3,5 or 1:20 or 1: (to the last), got 'a:b'"),
        (["--detect-on", "7"], 2, "image index 7 out of range: 3 image(s) (0..2)"),
        (["--report", "r.jpg"], 2, "the report is a PNG file"),
        (["--shots", "0"], 2, "0 is not in the range x>=1"),
    ],
)
def test_bad_options(stack_files, extra, code, message):
    d, _ = stack_files
    got, out, err = run_main("eval", d / "stack.tif", "-a", d / "labels.tif", *extra, *FAST)
    assert got == code
    assert message in err
    assert "Traceback" not in err



def test_report_over_an_input_is_refused_before_the_run(stack_files):
    """``--report`` naming the ground truth (or an image) wrote the PNG report over it after
    the run, in silence: the annotation was lost. Refused now, before any work, the file kept."""
    import cv2

    d, pngs = stack_files
    labels = [d / f"l{i}.png" for i in range(3)]
    for p, lab in zip(labels, tifffile.imread(d / "labels.tif"), strict=True):
        cv2.imwrite(str(p), lab.astype(np.uint16))
    for target in (labels[1], pngs[2]):
        before = target.read_bytes()
        code, _, err = run_main("eval", *pngs, *[x for p in labels for x in ("-a", p)], "--report", target, *FAST)
        assert code == 2 and "is an input of this eval (an image, or an -a or --types file)" in err, err
        assert target.read_bytes() == before


def test_ground_truth_mismatch_is_one_line_error(stack_files):
    d, pngs = stack_files
    code, _, err = run_main("eval", *pngs[:2], "-a", d / "labels.tif", *FAST)
    assert code == 1
    assert err.strip() == (
        f"Error: {d / 'labels.tif'}: holds 3 label frame(s) but 2 image(s) were given; "
        "give a label stack with one frame per image"
    )
    code, _, err = run_main("eval", pngs[0], "-a", d / "labels.tif", "-a", d / "gt.json", *FAST)
    assert code == 1 and err.startswith("Error: 2 annotation files for 1 image(s)")


def test_eval_says_when_it_merges_every_channel_the_labels_too(tmp_path):
    """The scratch assay without ``--channel``: every channel merged, the label channel being
    scored against too (F1 0.93 -> 0.25), and eval said nothing where ``add`` says it."""
    frames, labels = [], []
    for seed in range(3):
        rgb, masks, _ = draw_scene(seed)
        frames.append(rgb[..., 0])
        labels.append(Instances(masks=masks).to_label_image(np.uint8))
    both = np.stack([np.stack([f, lab]) for f, lab in zip(frames, labels, strict=True)])  # T, C, Y, X
    tifffile.imwrite(tmp_path / "two.tif", both, imagej=True, metadata={"axes": "TCYX"})
    fast = [a for a in FAST if a != "-q"]
    args = ("eval", tmp_path / "two.tif", "-a", tmp_path / "two.tif", "--labels-channel", "1", "--label", "shape",
            "--examples-from", "0", "--detect-on", "1:3", "--shots", "3", "--no-baselines", *fast)
    code, _, err = run_main(*args)
    assert code == 0, err
    assert ("two.tif: its 2 channels are read merged into one image (their maximum), the annotation's "
            "--labels-channel 1 too; give --channel K") in err
    code, _, err = run_main(*args, "--channel", "0")
    assert code == 0 and "merged" not in err, err


def test_the_drawn_objects_are_named_by_their_ids_in_the_ground_truth(tmp_path):
    """``protocol.drawn[].objects`` gave places in the sorted ids (``[12, 15, 19]`` for the label
    values 13, 16, 20), easy to take for the values. ``source_ids`` beside them gives the label
    image's own values (a COCO file's annotation ids); ``objects`` stays as it was."""
    rgb, masks, _ = draw_scene(0)
    lab = np.zeros(rgb.shape[:2], np.uint16)
    values = [7, 20, 33, 46, 59, 72]  # far from the places 0..5
    for v, m in zip(values, masks, strict=True):
        lab[m] = v
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([rgb[..., 0]] * 2), photometric="minisblack")
    tifffile.imwrite(tmp_path / "labels.tif", np.stack([lab] * 2), photometric="minisblack")
    code, out, err = run_main("eval", tmp_path / "stack.tif", "-a", tmp_path / "labels.tif", "--label", "shape",
                              "--shots", "2", "--examples-from", "0", "--detect-on", "1", "--json", *FAST)
    assert code == 0, err
    (drawn,) = json.loads(out)["protocol"]["drawn"]
    assert drawn["source_ids"] == [values[k] for k in drawn["objects"]]
    assert drawn["areas"] == [int((lab == v).sum()) for v in drawn["source_ids"]]


def test_a_library_named_to_eval_is_said_to_be_unused_and_left_alone(stack_files, tmp_path):
    """eval draws into a temporary library: a typed --library or --library-path is not used,
    and says so in one line; the named folder is not created."""
    d, _ = stack_files
    where = tmp_path / "libs"
    args = ["eval", d / "stack.tif", "-a", d / "labels.tif", "--shots", "3", "--examples-from", "0",
            "--detect-on", "1", "--no-baselines", *FAST]
    code, _, err = run_main(*args, "--library", "mine", "--library-path", where)
    assert code == 0, err
    warning = [ln for ln in err.splitlines() if "not used" in ln]
    assert warning == ["sam-detect: warning: --library and --library-path not used: eval draws its examples "
                       "into a temporary library, deleted afterwards (--store and --qdrant-url say where it lives)"]
    assert not where.exists()
    code, _, err = run_main(*args)
    assert code == 0, err
    assert "not used" not in err


@pytest.mark.parametrize("extra, why", [(["--sweep", "threshold=0.4,0.6"], "a --sweep"), (["--no-profile"], "--no-profile")])
def test_baselines_asked_for_where_they_do_not_run_is_said(stack_files, extra, why):
    """``--baselines`` typed beside ``--sweep`` or ``--no-profile`` was left out without a word."""
    d, _ = stack_files
    args = ["eval", d / "stack.tif", "-a", d / "labels.tif", "--shots", "3", "--examples-from", "0",
            "--detect-on", "1", *FAST, *extra]
    code, out, err = run_main(*args, "--baselines")
    assert code == 0, err
    assert f"--baselines not run: they compare the full pipeline with the segmenter alone, which {why} does not run" in err
    assert "what the examples add" not in out
    code, _, err = run_main(*args)  # left at its default: nothing to say
    assert code == 0 and "--baselines" not in err


def test_eval_pairs_images_with_a_folder_of_label_images_and_says_what_a_wildcard_after_a_did(stack_files, tmp_path):
    """``eval images/*.png -a masks/ --detect-on 1:`` scores images 1 to the last against the
    label image of each one's name; ``-a masks/*.png`` (the shell gives the other label files
    as images) is refused with the folder to give instead."""
    from sam_detect.formats.label_image import read_label_image

    d, pngs = stack_files
    masks = tmp_path / "masks"
    masks.mkdir()
    stack = read_label_image(d / "labels.tif")
    for png, lab in zip(pngs, stack, strict=True):
        save_label_image([Instances(masks=np.stack([lab == i for i in np.unique(lab)[1:]]))], masks / png.name)
    code, out, err = run_main("eval", *pngs, "-a", masks, "--label", "shape", "--shots", "3", "--examples-from", "0",
                              "--detect-on", "1:", "--no-baselines", "--json", *FAST)
    assert code == 0, err
    got = json.loads(out)
    assert got["metrics"]["n_images"] == 2 and got["protocol"]["detect_on"] == [1, 2]
    code, _, err = run_main("eval", *pngs, "-a", *sorted(masks.iterdir()), "--label", "shape", *FAST)
    assert code == 1 and "did a wildcard after -a give 2 label files as images? give their folder: -a" in err, err
    code, _, err = run_main("eval", *pngs, "-a", masks, "--label", "shape", "--detect-on", "3:", *FAST)
    assert code == 2 and "image index 3 out of range: 3 image(s) (0..2)" in err, err
