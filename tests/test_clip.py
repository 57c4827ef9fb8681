"""The ``clip`` embedder, run for real on a tiny, randomly initialised open_clip architecture.

No hub is reachable here: the test registers a small open_clip model config (the same
mechanism open_clip uses for its own configs), builds it with ``pretrained=None``, saves
its state dict as a ``.pt`` and a ``.safetensors`` file, and loads them back through the
embedder's ``checkpoint=`` path.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sam_detect.errors import ModelNotAvailableError

TINY = "sd-test-tiny-clip"
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """Register the tiny config; write its random weights as .pt and .safetensors, and a
    checkpoint of a wider variant (for the mismatch test)."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("clip")
    cfgs = root / "configs"
    cfgs.mkdir()
    (cfgs / f"{TINY}.json").write_text(json.dumps(TINY_CFG))
    wide = json.loads(json.dumps(TINY_CFG))
    wide["vision_cfg"]["width"] = 96
    (cfgs / f"{TINY}-wide.json").write_text(json.dumps(wide))
    open_clip.add_model_config(cfgs)
    torch.manual_seed(0)
    model = open_clip.create_model(TINY, pretrained=None)
    sd = model.state_dict()
    torch.save(sd, root / "tiny.pt")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(root / "tiny.safetensors"))
    torch.save(
        open_clip.create_model(f"{TINY}-wide", pretrained=None).state_dict(), root / "wide.pt"
    )
    return {
        "pt": root / "tiny.pt",
        "safetensors": root / "tiny.safetensors",
        "wide": root / "wide.pt",
    }


def crops(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        rng.integers(
            0, 255, (int(rng.integers(20, 90)), int(rng.integers(20, 90)), 3), dtype=np.uint8
        )
        for _ in range(n)
    ]


def make(tiny, kind: str = "pt", **kw):
    from sam_detect.embed.clip import ClipEmbedder

    return ClipEmbedder(model=TINY, pretrained=None, checkpoint=tiny[kind], device="cpu", **kw)


def test_contract_shapes_norms_determinism(tiny):
    emb = make(tiny, batch_size=3)
    assert emb.name == "clip" and emb.dim == 32
    assert emb.id.startswith(f"clip:{TINY}:custom:")
    x = crops(7)
    v = emb.embed(x)
    assert v.shape == (7, 32) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(emb.embed(x), v, atol=1e-6)
    one_by_one = np.concatenate([emb.embed([c]) for c in x])
    np.testing.assert_allclose(v, one_by_one, atol=1e-5)
    assert emb.embed([]).shape == (0, 32)
    assert not np.allclose(v[0], v[1], atol=1e-3)


def test_uses_the_models_own_preprocessing(tiny):
    """Same vectors as open_clip's own pipeline: its eval transform, then encode_image."""
    import open_clip
    import torch
    from PIL import Image

    emb = make(tiny)
    model, _, preprocess = open_clip.create_model_and_transforms(TINY, pretrained=None)
    model.load_state_dict(torch.load(tiny["pt"], weights_only=True))
    model.eval()
    x = crops(3, seed=5)
    with torch.inference_mode():
        ref = model.encode_image(torch.stack([preprocess(Image.fromarray(c)) for c in x])).numpy()
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(emb.embed(x), ref, atol=1e-5)


def test_safetensors_and_pickle_checkpoints_agree(tiny):
    a, b = make(tiny, "pt"), make(tiny, "safetensors")
    x = crops(2, seed=2)
    np.testing.assert_allclose(a.embed(x), b.embed(x), atol=1e-6)


def test_grey_and_rgba_crops_are_accepted_and_float_refused(tiny):
    emb = make(tiny)
    grey = np.full((30, 40), 128, np.uint8)
    assert emb.embed([grey, np.zeros((30, 40, 4), np.uint8)]).shape == (2, 32)
    with pytest.raises(ValueError, match="crop 0 must be uint8, got float32"):
        emb.embed([grey.astype(np.float32)])


def test_corrupt_checkpoint(tiny, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(tiny["pt"].read_bytes()[:5000])
    emb = make({"pt": bad})
    with pytest.raises(ModelNotAvailableError, match=r"bad\.pt is not a readable CLIP checkpoint"):
        emb.embed(crops(1))


def test_mismatched_checkpoint(tiny):
    emb = make(tiny, "wide")
    with pytest.raises(ModelNotAvailableError, match=rf"wide\.pt does not match open_clip {TINY}"):
        emb.embed(crops(1))


def test_missing_weights_and_bad_names():
    from sam_detect.embed.clip import ClipEmbedder

    with pytest.raises(
        ModelNotAvailableError, match="`sam-detect models download clip-ViT-B-32-laion2b_s34b_b79k`"
    ):
        ClipEmbedder()
    with pytest.raises(ModelNotAvailableError, match=r"checkpoint file .*nope\.pt does not exist"):
        ClipEmbedder(checkpoint="/nonexistent/nope.pt")
    with pytest.raises(ValueError, match="unknown open_clip model 'ViT-Z-99'"):
        ClipEmbedder(model="ViT-Z-99")
    with pytest.raises(ModelNotAvailableError, match="give a pretrained tag"):
        ClipEmbedder(pretrained=None)


def test_registry_builds_it(tiny):
    from sam_detect.embed import create_embedder

    emb = create_embedder(
        "clip", model=TINY, pretrained=None, checkpoint=str(tiny["pt"]), device="cpu"
    )
    assert emb.embed(crops(1)).shape == (1, 32)
