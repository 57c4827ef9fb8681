"""EfficientNet-Lite0's TorchScript copy in the model cache (``embed/lite0.py``): the same
outputs as the timm model on the real packaged weights, and a clean fall back to timm when
the cached file is missing, corrupt, foreign or cannot be written."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from sam_detect.embed.effnet import ARCH, EffNetEmbedder, build_model, default_weights_path
from sam_detect.embed.lite0 import (
    SCRIPT_ENV,
    Lite0,
    freeze,
    load_lite0,
    save_script,
    script_path,
)
from sam_detect.embed.views import ViewsEmbedder
from sam_detect.models.torch_utils import CPU_BF16_ENV, clear_model_cache
from tests.conftest import ROOT, draw_scene

pytestmark = pytest.mark.slow  # imports timm and builds the real network


@pytest.fixture(scope="module")
def timm_model():
    return build_model()


@pytest.fixture(scope="module")
def timm_lite0(timm_model):
    return Lite0(timm_model).eval()


def _no_build():
    raise AssertionError("timm was asked to build the network although a cached copy exists")


def _outputs(module, x):
    with torch.inference_mode():
        maps = module(x)
        features = module.forward_features(x)
        logits = module.forward_head(features)
    return [t.numpy().copy() for t in (*maps, features, logits)]


def test_lite0_runs_timm_model(timm_model, timm_lite0):
    """Lite0's outputs are the timm model's own: its blocks 0-2 and 0-4 (strides 8 and 16),
    ``forward_features`` and ``forward_head``."""
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        stem = timm_model.bn1(timm_model.conv_stem(x))
        f8 = timm_model.blocks[:3](stem)
        f16 = timm_model.blocks[3:5](f8)
        features = timm_model.forward_features(x)
        want = [f8, f16, features, features, timm_model.forward_head(features)]
    for got, ref in zip(_outputs(timm_lite0, x), want, strict=True):
        np.testing.assert_array_equal(got, ref.numpy())


def test_scripted_copy_matches_timm(timm_lite0):
    weights = default_weights_path()
    path = script_path(weights, ARCH)
    assert not path.exists()  # every test has its own model cache
    first = load_lite0(weights, ARCH, build_model)
    # built by timm, cached, and run as the cached copy
    assert isinstance(first, torch.jit.ScriptModule) and path.is_file()
    scripted = load_lite0(weights, ARCH, _no_build)
    assert isinstance(scripted, torch.jit.ScriptModule)

    x = torch.randn(2, 3, 96, 160, generator=torch.Generator().manual_seed(0))
    # NCHW and channels_last inputs (the layouts run different kernels: compare like with
    # like), three calls each (TorchScript optimises its graph after profiling runs)
    for layout in (torch.contiguous_format, torch.channels_last):
        xl = x.contiguous(memory_format=layout)
        expected = _outputs(timm_lite0, xl)
        assert [e.shape for e in expected] == [(2, 40, 12, 20), (2, 112, 6, 10), (2, 1280, 3, 5),
                                                (2, 1280, 3, 5), (2, 1000)]
        for _ in range(3):
            for got, want in zip(_outputs(scripted, xl), expected, strict=True):
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("bf16", ["0", "1"])
def test_embedders_give_the_same_vectors_from_the_cache(monkeypatch, bf16):
    """``effnet`` runs the cached scripted copy, ``views`` that copy frozen (``lite0.freeze``).
    In float32 both give the timm network's vectors to float32 rounding. Under the CPU's
    bf16 autocast (``cpu_bf16``) the scripted copy rounds in another order than timm's
    module (within 0.002, cosine 0.9999), and the frozen one, its batch norms folded, more
    so: each a bf16 rounding of the float32 vectors (measured here: cosine 0.9989-0.9994 of
    timm's module to float32, 0.996-0.998 of the frozen one's). Where this CPU has no bf16
    kernels every run is float32."""
    from sam_detect.models.torch_utils import cpu_bf16

    rgb, masks, _ = draw_scene(3, size=160)
    from sam_detect.instances import Instances

    instances = Instances(masks=masks)
    crops = [rgb[10:70, 20:90], rgb[40:100, 40:100]]

    def vectors():
        clear_model_cache()
        views = ViewsEmbedder(device="cpu", num_threads=1)
        effnet = EffNetEmbedder(device="cpu", num_threads=1)
        out = (views.embed_instances(rgb, instances), effnet.embed(crops), effnet.classify(crops[:1]))
        return out, views.model, effnet.model

    monkeypatch.setenv(SCRIPT_ENV, "0")
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    (f32_views, _, _), _, _ = vectors()  # timm's network in float32
    monkeypatch.setenv(CPU_BF16_ENV, bf16)
    (timm_views, timm_effnet, timm_probs), timm_net, _ = vectors()  # timm's in this mode
    assert isinstance(timm_net, Lite0) and not script_path(default_weights_path(), ARCH).exists()

    monkeypatch.delenv(SCRIPT_ENV)
    filled, *filled_nets = vectors()  # builds through timm, caches the scripted copy, runs it
    (views, effnet, probs), *nets = vectors()
    for frozen, scripted in (filled_nets, nets):  # no parameters left: the weights are constants
        assert isinstance(frozen, torch.jit.ScriptModule) and not list(frozen.parameters())
        assert isinstance(scripted, torch.jit.ScriptModule) and list(scripted.parameters())
    # the process that fills the cache gives the vectors of every later one, bit for bit
    for got, want in zip(filled, (views, effnet, probs), strict=True):
        assert np.array_equal(got, want)
    rounded = bf16 == "1" and cpu_bf16()
    atol = 2e-3 if rounded else 1e-6
    np.testing.assert_allclose(effnet, timm_effnet, rtol=0, atol=atol)
    np.testing.assert_allclose(probs, timm_probs, rtol=0, atol=atol)
    assert (np.sum(effnet * timm_effnet, axis=1) > 0.9999).all()
    np.testing.assert_allclose(views, f32_views, rtol=0, atol=0.03 if rounded else 2e-6)
    assert (np.sum(views * f32_views, axis=1) > (0.995 if rounded else 0.999999)).all()
    clear_model_cache()


def test_frozen_network_is_the_scripted_one(timm_lite0):
    """``freeze`` keeps the three methods the embedders call, each giving the unfrozen
    module's outputs to float32 rounding; anything but a scripted module, or a module that
    cannot be frozen, is returned as it is."""
    weights = default_weights_path()
    scripted = load_lite0(weights, ARCH, build_model)
    frozen = freeze(scripted)
    assert frozen is not scripted and not list(frozen.parameters())
    x = torch.randn(2, 3, 96, 160, generator=torch.Generator().manual_seed(2))
    x = x.contiguous(memory_format=torch.channels_last)
    for _ in range(3):  # past TorchScript's profiling runs
        for got, want in zip(_outputs(frozen, x), _outputs(scripted, x), strict=True):
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4 * np.abs(want).max())
    assert freeze(timm_lite0) is timm_lite0  # eager (timm's): as it is

    class Unfreezable(torch.nn.Module):  # a method freeze cannot preserve: left unfrozen
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + 1

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
        odd = torch.jit.script(Unfreezable()).eval()
    assert freeze(odd) is odd


@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign"])
def test_unusable_cache_file_falls_back_to_timm_and_is_rebuilt(damage, caplog):
    weights = default_weights_path()
    path = script_path(weights, ARCH)
    load_lite0(weights, ARCH, build_model)
    good = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not a TorchScript archive")
    elif damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    else:  # a whole, valid file made for another name (other weights, torch or timm)
        other = path.with_name("other-weights.ts")
        assert save_script(Lite0(build_model(weights)).eval(), other)
        os.replace(other, path)

    calls = []

    def build():
        calls.append(1)
        return build_model(weights)

    with caplog.at_level(logging.WARNING, logger="sam_detect"):
        model = load_lite0(weights, ARCH, build)
    # built once through timm, then run as the copy it saved (as every later process does)
    assert isinstance(model, torch.jit.ScriptModule) and calls == [1]
    assert f"the cached EfficientNet-Lite0 {path} cannot be used" in caplog.text
    assert "building it with timm and caching it again" in caplog.text
    again = load_lite0(weights, ARCH, _no_build)  # the file was written again
    assert isinstance(again, torch.jit.ScriptModule)


def test_unwritable_cache_still_builds(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("SAM_DETECT_CACHE", str(blocker))
    weights = default_weights_path()
    # the weights' digest book cannot be written either; both only cost time
    model = load_lite0(weights, ARCH, lambda: build_model(weights))
    assert isinstance(model, Lite0) and not script_path(weights, ARCH).exists()


def test_cached_network_loads_without_timm_and_warns_cleanly(tmp_path):
    """In a fresh process: a corrupt cache file gives one warning line (no traceback) and is
    replaced; the next process embeds without importing timm."""
    env = {**os.environ, "SAM_DETECT_CACHE": str(tmp_path), "PYTHONPATH": str(ROOT)}
    env.pop(SCRIPT_ENV, None)
    code = (
        "import sys, numpy as np\n"
        "from sam_detect.embed.views import ViewsEmbedder\n"
        "from sam_detect.instances import Instances\n"
        "rgb = np.zeros((64, 64, 3), np.uint8); rgb[20:40, 20:40] = 200\n"
        "m = np.zeros((1, 64, 64), bool); m[0, 20:40, 20:40] = True\n"
        "v = ViewsEmbedder(device='cpu').embed_instances(rgb, Instances(masks=m))\n"
        "print('timm' in sys.modules, v.shape)\n"
    )
    path = script_path(default_weights_path(), ARCH).relative_to(os.environ["SAM_DETECT_CACHE"])
    target = tmp_path / path
    target.parent.mkdir(parents=True)
    target.write_bytes(b"corrupt")

    def run():
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                           cwd=ROOT, check=False)
        assert r.returncode == 0, r.stderr
        return r

    first = run()
    assert first.stdout.split()[0] == "True"  # timm built it
    assert "Traceback" not in first.stderr
    assert f"the cached EfficientNet-Lite0 {target} cannot be used" in first.stderr
    assert len(first.stderr.strip().splitlines()) == 1, first.stderr
    second = run()
    assert second.stdout.split()[0] == "False", second.stdout  # timm never imported
    assert second.stderr.strip() == ""


def test_views_runs_the_frozen_copy_of_the_cache(tmp_path, monkeypatch, caplog):
    """``views`` saves its frozen network in the model cache and later processes load it
    (0.06 s) instead of loading the scripted copy and freezing it (0.27 s): the same vectors
    bit for bit, in the process that fills the cache too. A corrupt or foreign frozen file
    gives one warning and is frozen and written again."""
    from sam_detect.embed.lite0 import _save_frozen, frozen_path, load_frozen
    from sam_detect.instances import Instances

    monkeypatch.setenv("SAM_DETECT_CACHE", str(tmp_path))
    monkeypatch.delenv(SCRIPT_ENV, raising=False)
    rgb, masks, _ = draw_scene(3, size=160)
    instances = Instances(masks=masks)
    path = frozen_path(default_weights_path(), ARCH)
    assert str(path).startswith(str(tmp_path)) and not path.exists()

    def vectors():
        clear_model_cache()
        views = ViewsEmbedder(device="cpu", num_threads=1)
        return views.embed_instances(rgb, instances), views.model

    filled, net = vectors()  # builds through timm, caches the scripted copy and the frozen one
    assert path.is_file() and isinstance(net, torch.jit.ScriptModule) and not list(net.parameters())

    def no_scripted(_self):
        raise AssertionError("the scripted network was loaded although a frozen copy is cached")

    with monkeypatch.context() as m:
        m.setattr(EffNetEmbedder, "_load", no_scripted)
        later, _ = vectors()
    assert np.array_equal(filled, later)

    for damage in ("garbage", "foreign"):
        if damage == "garbage":
            path.write_bytes(b"not a TorchScript archive")
        else:  # a whole frozen file, made for another name (other weights, torch or timm)
            other = path.with_name("other-frozen.ts")
            assert _save_frozen(net, other)
            os.replace(other, path)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="sam_detect"):
            again, _ = vectors()
        assert np.array_equal(again, filled)
        assert f"the cached frozen EfficientNet-Lite0 {path} cannot be used" in caplog.text
        assert len(caplog.records) == 1
        assert load_frozen(path) is not None  # frozen and written again
    clear_model_cache()


def test_no_frozen_file_where_the_cache_is_off(tmp_path, monkeypatch):
    """``SAM_DETECT_EFFNET_SCRIPT=0`` (timm's network every run): nothing is written."""
    from sam_detect.embed.lite0 import frozen_path
    from sam_detect.instances import Instances

    monkeypatch.setenv("SAM_DETECT_CACHE", str(tmp_path))
    monkeypatch.setenv(SCRIPT_ENV, "0")
    rgb, masks, _ = draw_scene(3, size=96)
    clear_model_cache()
    ViewsEmbedder(device="cpu", num_threads=1).embed_instances(rgb, Instances(masks=masks))
    assert not frozen_path(default_weights_path(), ARCH).exists()
    assert not list(tmp_path.rglob("*.ts"))
    clear_model_cache()
