"""Every bad input of docs/robustness.md's table gets one ``Error:`` line (or works), never a
traceback; the table in the doc is checked against the cases (tests/bad_inputs.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bad_inputs import BEGIN, CASES, DOC, END, Case, table, tiff_bomb  # noqa: E402
from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]


def scene_rgb(size: int = 96) -> np.ndarray:
    rng = np.random.default_rng(0)
    rgb = rng.normal(40, 6, (size, size, 3)).clip(0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for cx, cy in [(25, 25), (70, 30), (48, 70)]:
        rgb[(yy - cy) ** 2 + (xx - cx) ** 2 <= 10**2] = (230, 200, 60)
    return rgb


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """The files the cases name, and a library ``default`` with one example."""
    import tifffile

    d = tmp_path_factory.mktemp("bad-inputs")
    img = d / "scene.png"
    Image.fromarray(scene_rgb()).save(img)
    stack = d / "stack.tif"
    tifffile.imwrite(stack, np.stack([scene_rgb()[..., 0]] * 3), photometric="minisblack", metadata={"axes": "TYX"})
    gray = d / "gray.tif"
    tifffile.imwrite(gray, np.random.default_rng(1).integers(0, 4000, (96, 96)).astype(np.uint16))
    huge = d / "huge.tif"
    tiff_bomb(huge, 60000, 60000)
    trunc = d / "truncated.png"
    trunc.write_bytes(img.read_bytes()[:100])
    libs = d / "libs"
    r = run_cli("add", str(img), "--label", "disc", "--box", "14,14,37,37",
                "--library-path", str(libs), "--segmenter", "classical",
                "--embedder", "handcrafted")
    assert r.exit_code == 0, r.output
    export = d / "good.samlib.zip"
    r = run_cli("library", "export", "default", str(export), "--library-path", str(libs))
    assert r.exit_code == 0, r.output
    badzip = d / "bad.samlib.zip"
    with zipfile.ZipFile(export) as src, zipfile.ZipFile(badzip, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "manifest.json":
                manifest = json.loads(data)
                manifest["library"]["name"] = "../x"
                data = json.dumps(manifest).encode()
            dst.writestr(info.filename, data)
    return {"img": str(img), "stack": str(stack), "gray": str(gray), "huge": str(huge), "trunc": str(trunc),
            "badzip": str(badzip), "libs": str(libs)}


def fill(text: str, values: dict[str, str]) -> str:
    for k, v in values.items():
        text = text.replace("{" + k + "}", v)
    return text


def assert_one_error_line(output: str, code: int) -> None:
    """The contract of issue 14: exit 1 or 2 with exactly one ``Error:`` line, no traceback."""
    assert "Traceback" not in output, output
    assert "internal error" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    if code == 0:
        assert not errors, output
    else:
        assert code in (1, 2), (code, output)
        assert len(errors) == 1, output


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, files, tmp_path):
    values = {**files, "tmp": str(tmp_path)}
    args = [fill(a, values) for a in case.args]
    expected = fill(case.gets, values)
    if case.id == "stdout-full":
        with open("/dev/full", "w") as full:
            proc = subprocess.run([sys.executable, "-m", "sam_detect", *args], stdout=full,
                                  stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=120)
        assert proc.returncode == case.code, proc.stderr
        assert_one_error_line(proc.stderr, proc.returncode)
        assert expected in proc.stderr
        return
    r = run_cli(*args)
    assert r.exit_code == case.code, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert_one_error_line(r.output, r.exit_code)
    if case.code:
        assert expected in r.output, r.output
    elif case.id == "overlay-folder":
        assert (tmp_path / "scene_overlay.png").is_file()


def test_bad_inputs_are_refused_before_any_work(files, tmp_path):
    """Outputs and option values fail before the library is opened, a model loads or an image
    is read: with a library that does not exist, the bad option is what gets reported."""
    for flag, value, message in (
        ("--overlay", f"{tmp_path}/x.xyz", "cannot write an overlay image"),
        ("--coco", f"{tmp_path}/no/c.json", "does not exist; create it first"),
        ("--top-k", "0", "is not in the range"),
    ):
        r = run_cli("detect", files["img"], "--library", "missing", "--library-path",
                    files["libs"], flag, value)
        assert r.exit_code == 2, r.output
        assert message in r.output and "'missing'" not in r.output, r.output


def test_docs_table_lists_every_case():
    """docs/robustness.md's "Bad inputs" table is the one generated from the cases
    (regenerate with `python tests/bad_inputs.py --write-docs`)."""
    text = DOC.read_text()
    assert "## Bad inputs" in text
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    assert text[start:end].strip() == table().strip(), "run: python tests/bad_inputs.py --write-docs"


def test_an_unexpected_error_is_one_line_and_debug_shows_it(monkeypatch, tmp_path):
    """A bug still ends in one line (and names SAM_DETECT_DEBUG); with it set, the traceback."""
    import sam_detect.cli.library as library_cli

    def broken(**_opts):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(library_cli, "open_store", broken)
    r = run_cli("library", "list", "--library-path", str(tmp_path))
    assert r.exit_code == 1
    assert_one_error_line_allowing_internal(r.output)
    assert "internal error (RuntimeError: boom second line); please report it" in r.output
    assert "SAM_DETECT_DEBUG=1" in r.output
    monkeypatch.setenv("SAM_DETECT_DEBUG", "1")
    r = run_cli("library", "list", "--library-path", str(tmp_path))
    assert isinstance(r.exception, RuntimeError)


def assert_one_error_line_allowing_internal(output: str) -> None:
    assert "Traceback" not in output
    assert len([line for line in output.splitlines() if line.startswith("Error:")]) == 1, output


def test_closed_pipe_ends_quietly(files):
    """`sam-detect ... | head -0`: no "Exception ignored" report, no traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "sam_detect", "library", "show", "default", "--json",
                             "--library-path", files["libs"]], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=ROOT)
    proc.stdout.close()  # the reader goes away before anything is written
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "Exception ignored" not in err, err
