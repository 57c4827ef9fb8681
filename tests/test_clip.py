"""The ``clip`` embedder, run for real on a tiny, randomly initialised open_clip architecture.

No hub is reachable here: the test registers a small open_clip model config (the same
mechanism open_clip uses for its own configs), builds it with ``pretrained=None``, saves
its state dict as a ``.pt`` and a ``.safetensors`` file, and loads them back through the
embedder's ``checkpoint=`` path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_CLIP as TINY

from sam_detect.errors import ModelNotAvailableError


def crops(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        rng.integers(
            0, 255, (int(rng.integers(20, 90)), int(rng.integers(20, 90)), 3), dtype=np.uint8
        )
        for _ in range(n)
    ]


def make(tiny_clip, kind: str = "pt", **kw):
    from sam_detect.embed.clip import ClipEmbedder

    return ClipEmbedder(model=TINY, pretrained=None, checkpoint=tiny_clip[kind], device="cpu", **kw)


def test_contract_shapes_norms_determinism(tiny_clip):
    emb = make(tiny_clip, batch_size=3)
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


def test_uses_the_models_own_preprocessing(tiny_clip):
    """Same vectors as open_clip's own pipeline: its eval transform, then encode_image."""
    import open_clip
    import torch
    from PIL import Image

    emb = make(tiny_clip)
    model, _, preprocess = open_clip.create_model_and_transforms(TINY, pretrained=None)
    model.load_state_dict(torch.load(tiny_clip["pt"], weights_only=True))
    model.eval()
    x = crops(3, seed=5)
    with torch.inference_mode():
        ref = model.encode_image(torch.stack([preprocess(Image.fromarray(c)) for c in x])).numpy()
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(emb.embed(x), ref, atol=1e-5)


def test_safetensors_and_pickle_checkpoints_agree(tiny_clip):
    a, b = make(tiny_clip, "pt"), make(tiny_clip, "safetensors")
    x = crops(2, seed=2)
    np.testing.assert_allclose(a.embed(x), b.embed(x), atol=1e-6)


def test_grey_and_rgba_crops_are_accepted_and_float_refused(tiny_clip):
    emb = make(tiny_clip)
    grey = np.full((30, 40), 128, np.uint8)
    assert emb.embed([grey, np.zeros((30, 40, 4), np.uint8)]).shape == (2, 32)
    with pytest.raises(ValueError, match="crop 0 must be uint8, got float32"):
        emb.embed([grey.astype(np.float32)])


def test_corrupt_checkpoint(tiny_clip, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(tiny_clip["pt"].read_bytes()[:5000])
    emb = make({"pt": bad})
    with pytest.raises(ModelNotAvailableError, match=r"bad\.pt is not a readable CLIP checkpoint"):
        emb.embed(crops(1))


def test_mismatched_checkpoint(tiny_clip):
    emb = make(tiny_clip, "wide")
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


def test_registry_builds_it(tiny_clip):
    from sam_detect.embed import create_embedder

    emb = create_embedder(
        "clip", model=TINY, pretrained=None, checkpoint=str(tiny_clip["pt"]), device="cpu"
    )
    assert emb.embed(crops(1)).shape == (1, 32)


# -- each known tag against open_clip's own construction ------------------------------------
def _hub_cache(root: Path, model: str, tag: str, state: dict) -> Path:
    """Write ``state`` where open_clip looks for the tag's weights: a Hugging Face cache
    folder (``models--ORG--NAME/snapshots/REV/open_clip_model.safetensors`` and ``refs/main``),
    the layout a real download leaves, read with ``HF_HUB_OFFLINE=1``."""
    import open_clip
    from safetensors.torch import save_file

    repo = open_clip.get_pretrained_cfg(model, tag)["hf_hub"].strip("/")
    folder = root / ("models--" + repo.replace("/", "--"))
    rev = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(rev)
    snap = folder / "snapshots" / rev
    snap.mkdir(parents=True)
    path = snap / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


@pytest.mark.slow
@pytest.mark.parametrize(("model", "tag"), [("ViT-B-32", "openai"), ("ViT-B-32", "laion2b_s34b_b79k")])
def test_tag_builds_what_open_clip_builds(tmp_path, monkeypatch, model, tag):
    """QuickGELU and preprocessing come from the tag: the model we build from a checkpoint
    file equals the one open_clip builds for ``pretrained=tag`` from the same (random)
    weights, output for output, and so does the transform.

    For QuickGELU tags (``openai``) open_clip's own ``create_model_and_transforms("ViT-B-32",
    pretrained="openai")`` builds plain GELU and only warns ("QuickGELU mismatch"); its
    correct spelling is the ``ViT-B-32-quickgelu`` architecture, listed with that tag, which
    is the reference here."""
    import open_clip
    import torch
    from PIL import Image

    from sam_detect.models import clip_options, load_clip_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    opts = clip_options(model, tag)
    assert opts["quick_gelu"] is (tag == "openai")
    torch.manual_seed(0)
    random = open_clip.create_model(model, pretrained=None, force_quick_gelu=opts["quick_gelu"])
    path = _hub_cache(tmp_path / "hub", model, tag, random.state_dict())
    ref_name = f"{model}-quickgelu" if opts["quick_gelu"] else model
    assert (ref_name, tag) in open_clip.list_pretrained()
    ref, _, ref_pre = open_clip.create_model_and_transforms(ref_name, pretrained=tag, cache_dir=str(tmp_path / "hub"))
    ours, ours_pre, _ = load_clip_model(model, tag, checkpoint=path)

    def acts(m):
        return sorted({type(x).__name__ for x in m.modules() if "GELU" in type(x).__name__})

    assert acts(ours) == acts(ref) == (["QuickGELU"] if opts["quick_gelu"] else ["GELU"])
    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (97, 131, 3), dtype=np.uint8))
    x_ref, x_ours = ref_pre(img), ours_pre(img)
    assert x_ref.shape == x_ours.shape == (3, opts["image_size"], opts["image_size"])
    torch.testing.assert_close(x_ours, x_ref)
    ref.eval()
    with torch.inference_mode():
        torch.testing.assert_close(ours.encode_image(x_ours[None]), ref.encode_image(x_ref[None]), atol=1e-5, rtol=1e-4)


def test_clip_options_of_known_tags():
    from sam_detect.models import CLIP_MODELS, clip_options

    for model, tag in CLIP_MODELS:
        opts = clip_options(model, tag)
        assert opts["quick_gelu"] is False and opts["image_size"] == 224, (model, tag)
    assert clip_options("ViT-L-14", "laion2b_s32b_b82k")["mean"] == (0.5, 0.5, 0.5)
    assert clip_options("ViT-B-16", "openai")["quick_gelu"] is True


def test_model_identity_is_recorded_and_another_checkpoint_refused(tiny_clip, tmp_path):
    """A library records model:tag, the checkpoint's sha256 and the input size; a detector
    with other weights of the same architecture is refused, naming both."""
    import hashlib

    import open_clip
    import torch

    from sam_detect.errors import EmbedderMismatchError
    from sam_detect.pipeline import DetectorConfig, SAMDetect
    from sam_detect.store import create_store

    torch.manual_seed(1)
    other_ckpt = tmp_path / "other.pt"
    torch.save(open_clip.create_model(TINY, pretrained=None).state_dict(), other_ckpt)
    ident = make(tiny_clip).model_identity
    assert ident.to_dict() == {
        "family": "clip",
        "name": f"{TINY}:custom",
        "sha256": hashlib.sha256(tiny_clip["pt"].read_bytes()).hexdigest(),
        "input_size": 64,
    }
    other = make({"pt": other_ckpt})
    assert other.model_identity.sha256 != ident.sha256

    img = np.full((96, 96, 3), 30, np.uint8)
    img[30:60, 30:60] = 200
    mask = np.zeros((96, 96), bool)
    mask[30:60, 30:60] = True
    store = create_store("memory")
    cfg = DetectorConfig(store="memory", segmenter="classical", threshold=-1.0, library="squares")
    with SAMDetect(cfg, store=store, embedder=make(tiny_clip)) as det:
        det.add_example(img, label="square", mask=mask)
    assert store.get_meta("squares").model == ident.to_dict()
    with SAMDetect(cfg, store=store, embedder=other) as det, pytest.raises(EmbedderMismatchError) as err:
        det.detect(img)
    assert str(err.value).startswith(
        f"library 'squares' was made with CLIP {TINY}:custom (checkpoint sha256 {ident.sha256[:12]}, "
        f"input 64 px), but this detector uses CLIP {TINY}:custom (checkpoint sha256 "
        f"{other.model_identity.sha256[:12]}, input 64 px)"
    )
    with SAMDetect(cfg, store=store, embedder=make(tiny_clip)) as det:
        assert len(det.detect(img)) >= 1


# -- session 87: what a user's CLIP settings are taken as --------------------------------
def test_a_model_alone_takes_its_own_tag_and_a_local_file_keeps_its_tag():
    """``--clip-model ViT-B-16`` alone always failed (no ViT-B-16 weights carry ViT-B-32's default
    tag); a local file keeps the tag its libraries were made under (their ids name it)."""
    from sam_detect.models import DEFAULT_CLIP_PRETRAINED, clip_tag_of, default_clip_tag

    assert default_clip_tag("ViT-B-16") == "laion2b_s34b_b88k"
    assert clip_tag_of("ViT-B-16", DEFAULT_CLIP_PRETRAINED) == "laion2b_s34b_b88k"
    assert clip_tag_of("ViT-B-32", DEFAULT_CLIP_PRETRAINED) == DEFAULT_CLIP_PRETRAINED
    assert clip_tag_of("RN50", "openai") == "openai"  # given: as given
    assert clip_tag_of("RN50", DEFAULT_CLIP_PRETRAINED, checkpoint="rn50.bin") == DEFAULT_CLIP_PRETRAINED


def test_a_mistyped_clip_model_or_tag_is_a_setting_error_naming_the_way(tmp_path):
    from sam_detect.errors import SettingError
    from sam_detect.models import clip_spec, get_spec
    from sam_detect.models.loading import import_open_clip

    with pytest.raises(SettingError, match=r"unknown open_clip model 'ViT-B-23' \(did you mean ViT-B-32"):
        import_open_clip("ViT-B-23")
    with pytest.raises(SettingError, match="tag 'junk' .*choose one with --clip-pretrained"):
        clip_spec("ViT-B-32", "junk")
    spec = clip_spec("RN50", "openai")  # unlisted: named as `models download` takes it
    assert spec.name == "RN50:openai" and get_spec(spec.name).filenames == spec.filenames
    assert spec.download_command() == "sam-detect models download RN50:openai"


def test_building_a_clip_model_leaves_the_root_logger_as_it_was(tiny_clip, caplog):
    """open_clip logs "No pretrained weights loaded ... initialized randomly" through the root
    logger before the weights are loaded (printed on every CLIP load, and a handler installed
    on the user's root logger)."""
    import logging

    root = logging.getLogger()
    before = list(root.handlers)
    emb = make(tiny_clip)
    emb.embed(crops(1))
    assert root.handlers == before and "initialized randomly" not in caplog.text
