"""Fuzz tests (issue 14): seeded random option values for every pipeline command, and
truncated or bit-flipped image, JSON and ``.npz`` files. Whatever arrives, a command exits 0,
or 1 or 2 with exactly one ``Error:`` line; never a traceback, never an "internal error".

The draws are seeded (stable across runs) and bounded: ``SAM_DETECT_FUZZ_DRAWS`` values per
option (default 2) and ``SAM_DETECT_FUZZ_MUTATIONS`` damaged copies per file and use
(default 6). Raise them for a longer hunt.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import sys
import zlib
from pathlib import Path

import click
import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import run_cli
from test_bad_inputs import assert_one_error_line, scene_rgb  # noqa: E402

from sam_detect.cli.main import COMMANDS  # noqa: E402

DRAWS = int(os.environ.get("SAM_DETECT_FUZZ_DRAWS", "2"))
MUTATIONS = int(os.environ.get("SAM_DETECT_FUZZ_MUTATIONS", "6"))
PIPELINE_COMMANDS = ("detect", "add", "eval", "video", "refine")

#: Values a hostile or clumsy user types. Paths stay relative: tests run in a scratch folder.
POOL = [
    "", " ", "0", "1", "-1", "2", "0.5", "-0.5", "3", "7", "64", "1e309", "-1e309", "nan", "inf", "-inf",
    "99999999999999999999", "-99999999999999999999", "1e-320", "0x10", "abc", "1,2", "1,2,3,4",
    "-5,-5,500,500", "10,10,nan,40", "40,40,10,10", "../x", "a/b", "-rf", ".", "..", "\n", "x\ny",
    "é", "a" * 300, "None", "[]", "{}", "%s%n", "unknown", "out.png", "x.xyz", "nope/x.png",
    "out.json", "out.mp4", "0-2", "2-0", "0:5", "5:0", "1:20", "threshold=0.3:0.9:0.1", "sigma=",
]
#: Options left out: where the libraries live (a server URL would wait on the network; a
#: random --library-path would make folders), and the help.
SKIP = {"--store", "--library-path", "--qdrant-url", "--qdrant-api-key", "--help"}


def _scene_files(d: Path) -> dict[str, Path]:
    import tifffile

    rgb = scene_rgb()
    img = d / "scene.png"
    Image.fromarray(rgb).save(img)
    lab = np.zeros(rgb.shape[:2], np.uint16)
    yy, xx = np.mgrid[:96, :96]
    for i, (cx, cy) in enumerate([(25, 25), (70, 30), (48, 70)]):
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= 10**2] = i + 1
    labels = d / "labels.png"
    Image.fromarray(lab).save(labels)
    mask = d / "mask.png"
    Image.fromarray(((lab == 1) * 255).astype(np.uint8)).save(mask)
    stack = d / "stack.tif"
    tifffile.imwrite(stack, np.stack([rgb[..., 0]] * 3), photometric="minisblack", metadata={"axes": "TYX"})
    masks = np.stack([lab == i for i in (1, 2, 3)])
    npz = d / "ann.npz"
    np.savez(npz, masks=masks, labels=np.array([0, 0, 1]), class_names=np.array(["disc", "spot"]))
    coco = d / "coco.json"
    anns = []
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        poly = [x0, y0, x1, y0, x1, y1, x0, y1]
        anns.append({"id": i + 1, "image_id": 1, "category_id": 1, "segmentation": [poly],
                     "bbox": [x0, y0, x1 - x0, y1 - y0], "area": int(m.sum()), "iscrowd": 0})
    coco.write_text(json.dumps({"images": [{"id": 1, "file_name": "scene.png", "height": 96, "width": 96}],
                                "annotations": anns, "categories": [{"id": 1, "name": "disc"}]}))
    return {"img": img, "labels": labels, "mask": mask, "stack": stack, "npz": npz, "coco": coco}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("fuzz")
    files = _scene_files(d)
    libs = d / "libs"
    r = run_cli("add", str(files["img"]), "--label", "disc", "--labels", str(files["labels"]),
                "--library-path", str(libs), "--segmenter", "classical",
                "--embedder", "handcrafted", "-q")
    assert r.exit_code == 0, r.output
    return {**files, "libs": libs, "dir": d}


LIB = ["--segmenter", "classical", "--embedder", "handcrafted"]


def base_args(command: str, w: dict[str, Path], libs: Path) -> tuple[list[str], dict[str, str]]:
    """(positional arguments, options) of a run that works."""
    opts = {"--library-path": str(libs), "--segmenter": "classical", "--embedder": "handcrafted", "-q": ""}
    if command == "detect":
        return [str(w["img"])], opts
    if command == "add":
        return [str(w["img"])], {**opts, "--label": "disc", "--box": "14,14,37,37"}
    if command == "eval":
        return [str(w["img"])], {**opts, "-a": str(w["labels"]), "--label": "disc", "--shots": "1"}
    if command == "video":
        return [str(w["stack"])], opts
    if command == "refine":
        return [str(w["img"])], {"-a": str(w["coco"]), "-q": ""}
    raise AssertionError(command)


def _command(name: str) -> click.Command:
    module, attr, _ = COMMANDS[name]
    return getattr(importlib.import_module(module), attr)


def option_cases() -> list[tuple[str, str, str]]:
    """(command, option, value): DRAWS seeded values per option of every pipeline command."""
    cases = []
    for name in PIPELINE_COMMANDS:
        for param in _command(name).params:
            if not isinstance(param, click.Option) or param.is_flag or param.hidden:
                continue
            flag = max(param.opts, key=len)
            if flag in SKIP:
                continue
            rng = random.Random(zlib.crc32(f"{name} {flag}".encode()))
            choices = list(param.type.choices) if isinstance(param.type, click.Choice) else []
            pool = POOL + choices * 4  # the valid choices come up too
            for value in rng.sample(pool, DRAWS):
                cases.append((name, flag, value))
    return cases


def _run(args: list[str]):
    return run_cli(*args)


def check(r) -> None:
    assert r.exit_code in (0, 1, 2), (r.exit_code, r.output)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert_one_error_line(r.output, r.exit_code)


OPTION_CASES = option_cases()


@pytest.mark.parametrize(
    ("command", "flag", "value"), OPTION_CASES, ids=[f"{c}{f}={v[:12]!r}" for c, f, v in OPTION_CASES]
)
def test_fuzz_option_value(command, flag, value, world, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative output paths land in a scratch folder
    positional, opts = base_args(command, world, world["libs"])
    if command == "add":  # add writes: into a library of its own (copies of an edge folder are big)
        opts["--library"] = f"add-{zlib.crc32(f'{flag}{value}'.encode()):08x}"
    opts = {k: v for k, v in opts.items() if k != flag}
    args = [command, *positional]
    for k, v in opts.items():
        args += [k] if v == "" else [k, v]
    args.append(f"{flag}={value}" if flag.startswith("--") else flag + value)
    check(_run(args))


def test_fuzz_covers_every_pipeline_command_and_option():
    """Every option (but the store location) of every pipeline command is drawn."""
    drawn = {(c, f) for c, f, _ in OPTION_CASES}
    for name in PIPELINE_COMMANDS:
        for param in _command(name).params:
            if isinstance(param, click.Option) and not param.is_flag and not param.hidden:
                flag = max(param.opts, key=len)
                assert flag in SKIP or (name, flag) in drawn, (name, flag)
    assert len(OPTION_CASES) == DRAWS * len(drawn)


# -- damaged files ------------------------------------------------------------------------
def mutate(data: bytes, seed: int) -> bytes:
    """A truncated copy (odd seeds) or a copy with 1-8 flipped bits (even seeds)."""
    rng = random.Random(seed)
    if seed % 2:
        return data[: rng.randrange(0, len(data))]
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        # flips cluster in the first 200 bytes, where headers are, half of the time
        pos = rng.randrange(0, min(len(out), 200) if rng.random() < 0.5 else len(out))
        out[pos] ^= 1 << rng.randrange(8)
    return bytes(out)


# (file, how it is used): {f} is the damaged copy
USES = [
    ("img", ["detect", "{f}"]),
    ("img", ["add", "{f}", "--label", "disc", "--box", "14,14,37,37"]),
    ("mask", ["add", "{img}", "--label", "disc", "--mask", "{f}"]),
    ("labels", ["add", "{img}", "--label", "disc", "--labels", "{f}"]),
    ("stack", ["detect", "{f}", "--frame", "1"]),
    ("stack", ["add", "{img}", "--label", "disc", "--labels", "{f}", "--frame", "0"]),
    ("coco", ["add", "{img}", "--annotations", "{f}"]),
    ("npz", ["add", "{img}", "--annotations", "{f}"]),
    ("coco", ["eval", "{img}", "-a", "{f}", "--shots", "1"]),
]
FILE_CASES = [(kind, i, use) for u, (kind, use) in enumerate(USES) for i in range(MUTATIONS)]


@pytest.mark.parametrize(
    ("kind", "seed", "use"), FILE_CASES, ids=[f"{k}-{' '.join(u[:1])}{n}-{s}" for n, (k, s, u) in
                                             enumerate(FILE_CASES)]
)
def test_fuzz_damaged_file(kind, seed, use, world, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = world[kind]
    damaged = tmp_path / src.name  # same name and suffix
    damaged.write_bytes(mutate(src.read_bytes(), zlib.crc32(f"{kind}{seed}{use}".encode())))
    args = [a.replace("{f}", str(damaged)).replace("{img}", str(world["img"])) for a in use]
    if use[0] == "add":
        args += ["--library", f"damaged-{kind}-{seed}-{zlib.crc32(' '.join(use).encode()):08x}"]
    r = _run([*args, "--library-path", str(world["libs"]), *LIB, "-q"])
    check(r)
