"""EfficientNet-Lite0 under bf16 autocast on a CPU that computes bf16 natively
(``models.torch_utils.cpu_bf16``): when it is on, what it changes, and that it can be
turned off."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam_detect.embed.effnet import EffNetEmbedder
from sam_detect.embed.views import ViewsEmbedder
from sam_detect.instances import Instances
from sam_detect.models.torch_utils import CPU_BF16_ENV, autocast_dtype, cpu_bf16
from tests.conftest import draw_scene

CPU = torch.device("cpu")
MKLDNN_BF16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
NATIVE = MKLDNN_BF16 and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
needs_bf16 = pytest.mark.skipif(not MKLDNN_BF16, reason="this CPU has no oneDNN bf16 kernels")


@pytest.mark.parametrize("setting", ["0", "off", "false"])
def test_off_means_float32(monkeypatch, setting):
    monkeypatch.setenv(CPU_BF16_ENV, setting)
    assert cpu_bf16() is False
    assert autocast_dtype(CPU, cpu=True) is None


def test_auto_follows_the_cpu_and_on_forces_it(monkeypatch):
    monkeypatch.delenv(CPU_BF16_ENV, raising=False)
    assert cpu_bf16() is bool(NATIVE)
    assert autocast_dtype(CPU, cpu=True) == (torch.bfloat16 if NATIVE else None)
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    assert cpu_bf16() is bool(MKLDNN_BF16)


def test_callers_that_do_not_ask_stay_float32(monkeypatch):
    """SAM2, CLIP and video propagation call ``inference_context`` without ``cpu_autocast``."""
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    assert autocast_dtype(CPU) is None


def _photo(h=256, w=320):
    import cv2
    from skimage import data

    return np.ascontiguousarray(cv2.resize(data.coffee(), (w, h), interpolation=cv2.INTER_AREA))


@needs_bf16
@pytest.mark.slow
def test_bf16_feature_maps_are_float32_maps_within_rounding(monkeypatch):
    """The maps under bf16 differ from float32's (so bf16 ran) by rounding only: each
    stride's cells point the same way (median cosine > 0.99), and the pass gives the same
    bits again."""
    views = ViewsEmbedder(device="cpu")
    rgb = _photo()
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    f32 = views.feature_maps(rgb, 1.0)
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    b16 = views.feature_maps(rgb, 1.0)
    again = views.feature_maps(rgb, 1.0)
    for stride, a in f32.items():
        b = b16[stride]
        assert not np.array_equal(a, b), stride
        assert np.array_equal(b, again[stride]), stride
        x, y = a.reshape(a.shape[0], -1).T, b.reshape(b.shape[0], -1).T
        cos = (x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1) + 1e-9)
        assert np.median(cos) > 0.99, stride


@needs_bf16
@pytest.mark.slow
def test_bf16_object_vectors_and_imagenet_class_hold(monkeypatch):
    """Objects' ``views`` vectors under bf16 are their float32 vectors within 0.01 cosine,
    and the packaged weights still call scikit-image's cat an Egyptian cat (class 285)."""
    from skimage import data

    views = ViewsEmbedder(device="cpu")
    rgb, masks, _ = draw_scene(seed=5, size=256)
    inst = Instances(masks=masks)
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    f32 = views.embed_instances(rgb, inst)
    probs32 = EffNetEmbedder(device="cpu").classify([data.chelsea()])
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    b16 = views.embed_instances(rgb, inst)
    probs16 = EffNetEmbedder(device="cpu").classify([data.chelsea()])
    assert (np.sum(f32 * b16, axis=1) > 0.99).all()
    assert int(probs32[0].argmax()) == int(probs16[0].argmax()) == 285
    assert abs(float(probs16[0, 285]) - float(probs32[0, 285])) < 0.05


@pytest.mark.parametrize("setting", ["0", None])
def test_the_embedder_line_says_when_the_network_runs_in_bf16(monkeypatch, setting):
    from sam_detect import DetectorConfig, SAMDetect

    if setting is None:
        monkeypatch.delenv(CPU_BF16_ENV, raising=False)
    else:
        monkeypatch.setenv(CPU_BF16_ENV, setting)
    det = SAMDetect(DetectorConfig(store="memory", embedder="views", device="cpu"))
    try:
        assert det.embedder is not None
        said = det.choices["embedder"]
    finally:
        det.close()
    assert said.startswith("views:v1:")
    assert ("network in bf16 on this CPU" in said) is (setting is None and bool(NATIVE))


def test_a_setting_that_means_nothing_is_refused_in_one_line(monkeypatch):
    """SAM_DETECT_CPU_BF16=maybe (or SAM_DETECT_EFFNET_SCRIPT=x) was taken as the default
    without a word."""
    from sam_detect.embed.lite0 import SCRIPT_ENV, _enabled
    from sam_detect.errors import SamDetectError

    monkeypatch.setenv(CPU_BF16_ENV, "maybe")
    with pytest.raises(SamDetectError, match="SAM_DETECT_CPU_BF16='maybe': expected 0"):
        cpu_bf16()
    monkeypatch.setenv(SCRIPT_ENV, "x")
    with pytest.raises(SamDetectError, match="SAM_DETECT_EFFNET_SCRIPT='x': expected 1"):
        _enabled()
    monkeypatch.setenv(SCRIPT_ENV, " Off ")
    assert _enabled() is False
