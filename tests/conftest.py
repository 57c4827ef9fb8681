"""Shared fixtures: synthetic images with known objects, the shared data folder, a random
SAM2 checkpoint, a tiny random CLIP, a Qdrant server where Docker is, and the CLI runners
(``run_cli``, ``run_main``)."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
if not SHARED_DATA.is_dir():  # the checkout may sit elsewhere; the shared data has a fixed home
    SHARED_DATA = Path("/work/shared/data")


def draw_scene(seed: int, size: int = 160, n_discs: int = 3, n_squares: int = 3):
    """A dark image with bright discs and squares at random, non-overlapping places.

    Returns ``(rgb (H, W, 3) uint8, masks (N, H, W) bool, labels list[str])``.
    """
    rng = np.random.default_rng(seed)
    img = np.full((size, size), 20, np.float32)
    masks, labels = [], []
    yy, xx = np.mgrid[:size, :size]
    taken = np.zeros((size, size), bool)
    shapes = ["disc"] * n_discs + ["square"] * n_squares
    for shape in shapes:
        for _ in range(200):
            r = int(rng.integers(8, 12))
            cy, cx = rng.integers(r + 3, size - r - 3, 2)
            if shape == "disc":
                m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            else:
                m = (abs(yy - cy) <= r - 1) & (abs(xx - cx) <= r - 1)
            grown = np.zeros_like(m)
            grown[max(cy - r - 4, 0) : cy + r + 5, max(cx - r - 4, 0) : cx + r + 5] = True
            if not (grown & taken).any():
                taken |= grown
                break
        img[m] = 200
        masks.append(m)
        labels.append(shape)
    img += rng.normal(0, 3, img.shape)
    rgb = np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    return rgb, np.stack(masks), labels


#: ``dots_on_a_plateau``'s dots: on the plateau, and on the dark ground around it (centres, y, x)
PLATEAU_DOTS = [(80, 80), (80, 120), (120, 100), (150, 140), (140, 75)]
GROUND_DOTS = [(20, 20), (20, 100), (20, 170), (100, 25), (180, 30)]


def dots_on_a_plateau(seed: int = 0, size: int = 200, radius: int = 7):
    """Bright dots on dark ground and on a dimmer square plateau: an image-wide threshold
    takes the plateau and the dots on it for one object.

    Returns ``(grey (H, W) uint8, plateau dots (5, H, W) bool, ground dots (5, H, W) bool)``.
    """
    yy, xx = np.ogrid[:size, :size]
    img = np.full((size, size), 20.0)
    img[60:170, 60:170] = 90

    def dots(centres):
        return np.stack([(yy - cy) ** 2 + (xx - cx) ** 2 <= radius * radius for cy, cx in centres])

    on, off = dots(PLATEAU_DOTS), dots(GROUND_DOTS)
    img[on.any(0) | off.any(0)] = 200
    img += np.random.default_rng(seed).normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), on, off


def write_random_sam2(path: Path, seed: int = 0) -> Path:
    """A randomly initialised SAM 2.1 tiny saved at ``path`` in the official checkpoint
    layout ``{"model": state_dict}``: no hub is reachable in tests, so this stands in for
    the real weights and is loaded back through our own loader."""
    import torch
    from sam2.build_sam import build_sam2

    torch.manual_seed(seed)
    net = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device="cpu")
    torch.save({"model": net.state_dict()}, path)
    return path


@pytest.fixture(scope="session")
def sam2_ckpt(tmp_path_factory) -> Path:
    """The random SAM 2.1 tiny checkpoint (seed 0), made once per session.

    Shared by every test that needs SAM2: read it, never change it (a test that rewrites
    the file or its modification time works on a copy).
    """
    return write_random_sam2(tmp_path_factory.mktemp("sam2") / "random_tiny.pt", seed=0)


TINY_CLIP = "sd-test-tiny-clip"  # an open_clip model name registered by ``tiny_clip``
TINY_CLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> dict[str, Path]:
    """A tiny open_clip architecture with random weights, made once per session.

    Registers the config ``TINY_CLIP`` (and ``TINY_CLIP + "-wide"``) with open_clip, the way
    open_clip registers its own configs; returns its random weights as ``"pt"`` and
    ``"safetensors"`` files and a checkpoint of the wider variant as ``"wide"`` (for the
    mismatch test). Read the files, never change them.
    """
    import open_clip
    import torch
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("clip")
    cfgs = root / "configs"
    cfgs.mkdir()
    (cfgs / f"{TINY_CLIP}.json").write_text(json.dumps(TINY_CLIP_CFG))
    wide = json.loads(json.dumps(TINY_CLIP_CFG))
    wide["vision_cfg"]["width"] = 96
    (cfgs / f"{TINY_CLIP}-wide.json").write_text(json.dumps(wide))
    open_clip.add_model_config(cfgs)
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_CLIP, pretrained=None)
    sd = model.state_dict()
    torch.save(sd, root / "tiny.pt")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(root / "tiny.safetensors"))
    torch.save(
        open_clip.create_model(f"{TINY_CLIP}-wide", pretrained=None).state_dict(), root / "wide.pt"
    )
    return {
        "pt": root / "tiny.pt",
        "safetensors": root / "tiny.safetensors",
        "wide": root / "wide.pt",
    }


@functools.cache
def docker_missing() -> str | None:
    """Why no Docker engine can run a Qdrant server here, or ``None`` when one can.

    Asked once per session, and only by the tests that need a server."""
    if shutil.which("docker") is None:
        return "no docker command on this machine"
    try:
        r = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"`docker info` failed: {e}"
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["?"]
        return f"no Docker engine (`docker info`: {tail[0][:120]})"
    return None


def compose_image() -> str:
    """The Qdrant image pinned in docker-compose.yml, so tests and users run the same server."""
    m = re.search(
        r"^\s*image:\s*(qdrant/qdrant:\S+)", (ROOT / "docker-compose.yml").read_text(), re.M
    )
    assert m, "docker-compose.yml must pin a qdrant/qdrant image"
    return m.group(1)


QDRANT_API_KEY = "test-key-" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def qdrant_server():
    """The URL of a Qdrant server (testcontainers, key ``QDRANT_API_KEY``) for this module;
    skipped with the reason when no Docker engine is there."""
    reason = docker_missing()
    if reason:
        pytest.skip(f"Qdrant server tests need Docker: {reason}")
    from testcontainers.qdrant import QdrantContainer

    with QdrantContainer(image=compose_image(), api_key=QDRANT_API_KEY) as c:
        yield f"http://{c.get_container_host_ip()}:{c.exposed_rest_port}"


def run_cli(*args, input: str | None = None, env: dict[str, str] | None = None):
    """Invoke the ``sam-detect`` command group in this process with click's ``CliRunner``.

    Arguments are stringified (paths and numbers may be passed as they are); ``input`` is
    fed to stdin. Returns click's ``Result`` (``exit_code``, ``output``, ``stdout``,
    ``stderr``, ``exception``): an exception the command did not handle is kept there.
    """
    from click.testing import CliRunner

    from sam_detect.cli.main import cli

    return CliRunner().invoke(cli, [str(a) for a in args], input=input, env=env)


def run_main(*args, input: str | None = None) -> tuple[int, str, str]:
    """Run the console-script entry point ``sam_detect.cli.main.main`` (its own error
    handling included, as ``sam-detect`` runs it): exit code, stdout, stderr."""
    from click.testing import CliRunner

    from sam_detect.cli.main import main

    with CliRunner().isolation(input=input) as (out, err, _):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return code, out.getvalue().decode(), err.getvalue().decode()


@pytest.fixture
def scene():
    return draw_scene


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the shared data folder is missing: expected {SHARED_DATA} beside the checkout")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_library_path(tmp_path_factory, monkeypatch):
    """Never touch the user's real library folder or model cache from a test."""
    monkeypatch.setenv("SAM_DETECT_LIBRARY_PATH", str(tmp_path_factory.mktemp("libraries")))
    monkeypatch.setenv("SAM_DETECT_CACHE", str(tmp_path_factory.mktemp("model-cache")))
    monkeypatch.delenv("SAM_DETECT_QDRANT_URL", raising=False)
    monkeypatch.delenv("SAM_DETECT_LIBRARY", raising=False)
    monkeypatch.delenv("SAM_DETECT_STORE", raising=False)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def start_holder(script: str, *args) -> subprocess.Popen:
    """Run ``python -c script *args`` in another process (one that holds a store while the
    test runs); returns once it prints ``ready``. Stop it with :func:`stop_holder`."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *(str(a) for a in args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        raise AssertionError(f"holder process failed: {line!r} {proc.stderr.read()}")
    return proc


def stop_holder(proc: subprocess.Popen) -> None:
    """Send the holder its newline and check it closed the store and exited cleanly."""
    out, err = proc.communicate("\n", timeout=60)
    assert proc.returncode == 0, err
    assert "closed" in out


def fork_talking(child):
    """Fork. The child runs ``child(inp, out)``, its ends of two pipes to and from the parent
    (text, a line at a time), and exits 0, or 1 where ``child`` raised (every path ends in
    ``os._exit``). The parent gets ``(pid, out, inp)``: its own ends."""
    to_child_r, to_child_w = os.pipe()
    to_parent_r, to_parent_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(to_child_w)
            os.close(to_parent_r)
            child(os.fdopen(to_child_r), os.fdopen(to_parent_w, "w"))
            code = 0
        finally:
            os._exit(code)
    os.close(to_child_r)
    os.close(to_parent_w)
    return pid, os.fdopen(to_child_w, "w"), os.fdopen(to_parent_r)


def child_answer(inp, pid: int, why: str = "the forked child did not answer") -> str:
    """The forked child's next line (:func:`fork_talking`); one that does not come within a
    minute kills the child and fails the test with ``why``."""
    import select

    if not select.select([inp], [], [], 60)[0]:
        os.kill(pid, 9)
        pytest.fail(why)
    return inp.readline()
