"""Model management: registry, cache, resolve order, safe loading, `models` CLI, option routing."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from conftest import run_cli

from sam_detect import models as M
from sam_detect.errors import ModelNotAvailableError


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    """An empty model cache, offline."""
    root = tmp_path / "cache"
    monkeypatch.setenv("SAM_DETECT_CACHE", str(root))
    monkeypatch.setenv("SAM_DETECT_OFFLINE", "1")
    return root


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A randomly initialised SAM 2.1 tiny, saved in the official layout {"model": state_dict}."""
    import torch
    from sam2.build_sam import build_sam2

    torch.manual_seed(0)
    net = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device="cpu")
    path = tmp_path_factory.mktemp("sam2") / "sam2.1_hiera_tiny.pt"
    torch.save({"model": net.state_dict()}, path)
    return path


# -- registry -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("tiny", "sam2.1-tiny"),
        ("sam2.1-tiny", "sam2.1-tiny"),
        ("sam2.1_hiera_small", "sam2.1-small"),
        ("base_plus", "sam2.1-base-plus"),
        ("ViT-B-32:laion2b_s34b_b79k", "clip-ViT-B-32-laion2b_s34b_b79k"),
        ("clip-ViT-L-14-laion2b_s32b_b82k", "clip-ViT-L-14-laion2b_s32b_b82k"),
    ],
)
def test_get_spec_names_and_aliases(name, expected):
    assert M.get_spec(name).name == expected


def test_get_spec_unknown_lists_known():
    with pytest.raises(ValueError, match="unknown model 'nope'; known: sam2.1-tiny, sam2.1-small"):
        M.get_spec("nope")


def test_sam2_specs_point_at_official_files():
    spec = M.sam2_spec("b+")
    assert spec.repo_id == "facebook/sam2.1-hiera-base-plus"
    assert spec.filenames == ("sam2.1_hiera_base_plus.pt",)
    assert spec.config == "configs/sam2.1/sam2.1_hiera_b+.yaml"
    with pytest.raises(ValueError, match="valid: tiny, small, base_plus, large"):
        M.sam2_spec("huge")


def test_unlisted_clip_pair_comes_from_open_clip_table():
    spec = M.clip_spec("ViT-B-32", "datacomp_xl_s13b_b90k")
    assert spec.repo_id == "laion/CLIP-ViT-B-32-DataComp.XL-s13B-b90K"
    assert spec.cache_subdir == Path("clip/ViT-B-32/datacomp_xl_s13b_b90k")
    with pytest.raises(ValueError, match="no Hugging Face weights"):
        M.clip_spec("ViT-B-32", "no_such_tag")


# -- cache and resolve order ----------------------------------------------------------------
def test_cache_dir_follows_env(cache):
    assert M.cache_dir() == cache


def test_resolve_explicit_path_wins(cache, tmp_path):
    spec = M.sam2_spec("tiny")
    _touch(cache / "sam2" / "sam2.1_hiera_tiny.pt")
    mine = _touch(tmp_path / "mine.pt")
    assert M.resolve_checkpoint(spec, mine) == mine
    with pytest.raises(
        ModelNotAvailableError, match=r"checkpoint file .*missing\.pt does not exist"
    ):
        M.resolve_checkpoint(spec, tmp_path / "missing.pt")


def test_resolve_uses_cache(cache):
    spec = M.sam2_spec("small")
    hit = _touch(cache / "sam2" / "sam2.1_hiera_small.pt")
    assert M.resolve_checkpoint(spec) == hit


def test_resolve_offline_names_file_and_command(cache):
    spec = M.sam2_spec("tiny")
    with pytest.raises(ModelNotAvailableError) as e:
        M.resolve_checkpoint(spec)
    msg = str(e.value)
    assert "sam2.1_hiera_tiny.pt" in msg
    assert "`sam-detect models download sam2.1-tiny`" in msg
    assert str(cache / "sam2" / "sam2.1_hiera_tiny.pt") in msg
    assert "--sam-checkpoint PATH" in msg


def test_download_goes_through_hf_hub_into_cache(cache, monkeypatch):
    """The download path: huggingface_hub.hf_hub_download with local_dir in our cache."""
    import io

    import huggingface_hub
    import torch

    calls = []
    weights = io.BytesIO()
    torch.save({"w": torch.zeros(3)}, weights)  # a file of its format: the cache's once fetched

    def fake_download(repo_id, filename, local_dir, **kw):
        calls.append((repo_id, filename))
        if filename.endswith(".safetensors"):
            raise huggingface_hub.errors.EntryNotFoundError("no safetensors here")
        return str(_touch(Path(local_dir) / filename, weights.getvalue()))

    monkeypatch.delenv("SAM_DETECT_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(M, "_hub_reachable", lambda timeout=3.0: (True, ""))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    spec = M.get_spec("ViT-B-16:laion2b_s34b_b88k")
    path = M.download(spec)
    assert path == cache / "clip" / "ViT-B-16" / "laion2b_s34b_b88k" / "open_clip_pytorch_model.bin"
    assert calls == [
        ("laion/CLIP-ViT-B-16-laion2B-s34B-b88K", "open_clip_model.safetensors"),
        ("laion/CLIP-ViT-B-16-laion2B-s34B-b88K", "open_clip_pytorch_model.bin"),
    ]
    assert M.is_cached(spec)
    assert M.download(spec) == path and len(calls) == 2  # cached: no second download


def test_unreachable_hub_fails_fast_with_reason(cache, monkeypatch):
    monkeypatch.delenv("SAM_DETECT_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(
        M, "_hub_reachable", lambda timeout=3.0: (False, "cannot reach huggingface.co: boom")
    )
    with pytest.raises(ModelNotAvailableError, match="cannot reach huggingface.co: boom"):
        M.download(M.sam2_spec("tiny"))


def test_auto_models_follows_cache(cache, tiny_ckpt, tiny_clip):
    seg, emb, why = M.auto_models()
    assert (seg, emb) == ("classical", "views")
    assert why == f"no SAM2/CLIP weights in {cache}"
    _touch(cache / "sam2" / "sam2.1_hiera_small.pt", tiny_ckpt.read_bytes())
    seg, emb, why = M.auto_models()
    assert (seg, emb) == ("sam2", "views")
    assert "SAM2 small" in why
    assert M.default_sam2_model() == "small"
    _touch(cache / "clip" / "ViT-B-32" / "laion2b_s34b_b79k" / "open_clip_model.safetensors",
           tiny_clip["safetensors"].read_bytes())
    assert M.auto_models()[:2] == ("sam2", "clip")


def test_auto_models_passes_over_a_damaged_cached_file_and_says_so(cache, tiny_ckpt):
    """``auto`` took a SAM2 checkpoint cut short in the cache (an interrupted copy), and every
    ``detect`` then failed on it; a whole larger one beside it is taken instead, and without
    one the offline segmenter, the reason naming the damaged file and its download."""
    whole = tiny_ckpt.read_bytes()
    _touch(cache / "sam2" / "sam2.1_hiera_tiny.pt", whole[: len(whole) // 2])
    seg, emb, why = M.auto_models()
    assert (seg, emb) == ("classical", "views")
    assert why.startswith(f"no SAM2/CLIP weights in {cache}; sam2.1-tiny's cached sam2.1_hiera_tiny.pt is damaged")
    assert "`sam-detect models download sam2.1-tiny`" in why
    _touch(cache / "sam2" / "sam2.1_hiera_small.pt", whole)
    seg, _, why = M.auto_models()
    assert seg == "sam2" and "SAM2 small" in why and "sam2.1-tiny's cached" in why
    assert M.default_sam2_model() == "small"  # the smallest whole one


def test_fingerprint_changes_with_content(tmp_path):
    a = _touch(tmp_path / "a.pt", b"1" * 3_000_000)
    b = _touch(tmp_path / "b.pt", b"1" * 3_000_000)
    assert M.file_fingerprint(a) == M.file_fingerprint(b)
    _touch(b, b"1" * 2_999_999 + b"2")
    assert M.file_fingerprint(a) != M.file_fingerprint(b)


# -- loading ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_sam2_checkpoint_round_trip(tiny_ckpt):
    import torch

    net, path = M.load_sam2_model("tiny", tiny_ckpt)
    assert path == tiny_ckpt
    saved = torch.load(tiny_ckpt, weights_only=True)["model"]
    loaded = net.state_dict()
    assert set(saved) == set(loaded)
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert not net.training


@pytest.mark.slow
def test_sam2_bare_state_dict_is_accepted(tiny_ckpt, tmp_path):
    import torch

    bare = tmp_path / "bare.pt"
    sd = torch.load(tiny_ckpt, weights_only=True)["model"]
    torch.save(sd, bare)
    net, _ = M.load_sam2_model("tiny", bare)
    k = next(iter(sd))
    assert torch.equal(net.state_dict()[k], sd[k])


def test_sam2_corrupt_checkpoint(tmp_path, tiny_ckpt):
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(tiny_ckpt.read_bytes()[:100_000])
    with pytest.raises(
        ModelNotAvailableError, match=r"truncated\.pt is not a readable SAM2 checkpoint"
    ):
        M.load_sam2_model("tiny", bad)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_sam2_pickle_with_code_is_refused(tmp_path):
    """weights_only=True: a checkpoint that would run code on load is rejected."""
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.pt"
    bad.write_bytes(pickle.dumps({"model": Evil()}))
    with pytest.raises(ModelNotAvailableError, match="not a readable SAM2 checkpoint"):
        M.load_sam2_model("tiny", bad)


@pytest.mark.slow
def test_sam2_mismatched_checkpoint(tmp_path, tiny_ckpt):
    """A tiny checkpoint loaded as small: a clear error, not a traceback."""
    with pytest.raises(ModelNotAvailableError, match=r"does not match SAM 2.1 small.*--sam-model"):
        M.load_sam2_model("small", tiny_ckpt)


def test_sam2_checkpoint_with_foreign_keys(tmp_path):
    import torch

    bad = tmp_path / "other.pt"
    torch.save({"model": {"foo.weight": torch.zeros(3)}}, bad)
    with pytest.raises(
        ModelNotAvailableError, match=r"does not match SAM 2.1 tiny: \d+ missing weights"
    ):
        M.load_sam2_model("tiny", bad)


# -- the `models` command --------------------------------------------------------------------
def test_models_help():
    r = run_cli("models", "--help")
    assert r.exit_code == 0 and "download" in r.output and "list" in r.output
    for sub in ("list", "download", "path"):
        assert run_cli("models", sub, "--help").exit_code == 0


def test_models_list_shows_cache_state(cache):
    import torch

    (cache / "sam2").mkdir(parents=True)
    torch.save({"model": {"w": torch.zeros(500_000)}}, cache / "sam2" / "sam2.1_hiera_tiny.pt")  # 2 MB
    r = run_cli("models", "list", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["cache"] == str(cache)
    rows = {m["name"]: m for m in doc["models"]}
    assert rows["sam2.1-tiny"]["cached"] is True and rows["sam2.1-tiny"]["size_mb"] == 2.0
    assert rows["sam2.1-large"]["cached"] is False and rows["sam2.1-large"]["size_mb"] == 898
    r = run_cli("models", "list")
    assert r.exit_code == 0
    line = next(ln for ln in r.output.splitlines() if ln.startswith("sam2.1-tiny "))
    assert " yes " in line


def test_models_list_calls_a_truncated_or_foreign_cached_file_damaged(cache, tiny_ckpt, tiny_clip):
    """A checkpoint cut short in the cache (an interrupted copy) was listed as cached, and
    ``detect`` then failed on it in one line. Each file is the real format (``torch.save``'s
    zip archive for SAM2, safetensors for CLIP), whole or cut at half its length."""
    import torch

    sam = M.SAM2_MODELS["tiny"]
    clip = M.CLIP_MODELS[(M.DEFAULT_CLIP_MODEL, M.DEFAULT_CLIP_PRETRAINED)]
    sam_file = cache / sam.cache_subdir / sam.filenames[0]
    clip_file = cache / clip.cache_subdir / "open_clip_model.safetensors"
    whole = {sam.name: tiny_ckpt.read_bytes(), clip.name: tiny_clip["safetensors"].read_bytes()}
    _touch(sam_file, whole[sam.name])
    _touch(clip_file, whole[clip.name])

    def listed() -> dict:
        r = run_cli("models", "list", "--json")
        assert r.exit_code == 0, r.output
        return {m["name"]: m for m in json.loads(r.output)["models"]}

    rows = listed()
    assert [rows[n]["cached"] for n in whole] == [True, True]
    assert [rows[n].get("damaged") for n in whole] == [None, None]

    _touch(sam_file, whole[sam.name][: len(whole[sam.name]) // 2])
    _touch(clip_file, whole[clip.name][: len(whole[clip.name]) // 2])
    rows = listed()
    assert rows[sam.name]["cached"] is False and rows[clip.name]["cached"] is False
    assert rows[sam.name]["damaged"] == (
        "incomplete: a torch.save archive without its directory, which ends the file; "
        "run `sam-detect models download sam2.1-tiny --force`")
    assert rows[clip.name]["damaged"] == (
        f"incomplete: {clip_file.stat().st_size:,} of {len(whole[clip.name]):,} bytes; "
        f"run `sam-detect models download {clip.name} --force`")
    r = run_cli("models", "list")
    lines = r.output.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.startswith(f"{sam.name} "))
    assert lines[at].split()[1] == "damaged" and "incomplete" in lines[at + 1], r.output
    # what the list says is what loading finds
    with pytest.raises(ModelNotAvailableError, match="is not a readable SAM2 checkpoint"):
        M.load_sam2_model("tiny", sam_file)
    from safetensors.torch import load_file

    with pytest.raises(Exception, match="(?i)incomplete|invalid|too small"):
        load_file(str(clip_file))

    _touch(sam_file, b"<html>Bad gateway</html>")  # a proxy's page saved as the file
    assert listed()[sam.name]["damaged"].startswith(
        "unreadable: neither the zip archive nor the pickle torch.save writes;")
    torch.save({"model": {"w": torch.zeros(3)}}, sam_file, _use_new_zipfile_serialization=False)
    assert listed()[sam.name]["cached"] is True  # torch's older format: nothing cheap to check


def test_models_download_offline_is_one_line_error(cache):
    r = run_cli("models", "download", "tiny")
    assert r.exit_code == 1
    assert (
        "Error: SAM2 weights sam2.1_hiera_tiny.pt (sam2.1-tiny) are not in the model cache"
        in r.output
    )
    assert "`sam-detect models download sam2.1-tiny`" in r.output
    assert "Traceback" not in r.output


def test_models_download_unknown_name_is_bad_parameter(cache):
    r = run_cli("models", "download", "nope")
    assert r.exit_code == 2
    assert "unknown model 'nope'" in r.output


# -- option routing --------------------------------------------------------------------------
def test_model_options_route_to_stages():
    from sam_detect.cli._model_options import model_options_to_config

    out = model_options_to_config(
        segmenter="sam2",
        embedder="clip",
        sam_model="small",
        sam_mode="guided",
        points_per_side=None,
        clip_model="ViT-B-16",
        clip_pretrained="laion2b_s34b_b88k",
        clip_checkpoint=None,
    )
    assert out == {
        "segmenter_options": {"model": "small", "mode": "guided"},
        "embedder_options": {"model": "ViT-B-16", "pretrained": "laion2b_s34b_b88k"},
    }
    out = model_options_to_config(
        segmenter="classical", embedder="sam2", sam_checkpoint="/x.pt", sam_embed_mode="crop"
    )
    assert out == {
        "segmenter_options": {},
        "embedder_options": {"checkpoint": "/x.pt", "mode": "crop"},
    }
    assert model_options_to_config(segmenter="auto", embedder="auto") == {
        "segmenter_options": {},
        "embedder_options": {},
    }


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (
            {"segmenter": "auto", "embedder": "auto", "clip_model": "ViT-B-32"},
            "--clip-model applies only with --embedder clip",
        ),
        (
            {"segmenter": "classical", "embedder": "effnet", "sam_mode": "guided"},
            "--sam-mode applies only with --segmenter sam2",
        ),
        (
            {"segmenter": "classical", "embedder": "clip", "sam_model": "tiny"},
            "--sam-model applies only with --segmenter sam2 and/or --embedder sam2",
        ),
        (
            {"segmenter": "sam2", "embedder": "effnet", "sam_embed_mode": "crop"},
            "--sam-embed-mode applies only with --embedder sam2",
        ),
    ],
)
def test_model_options_refuse_unused(opts, message):
    from sam_detect.cli._model_options import model_options_to_config

    with pytest.raises(click.BadParameter, match=message):
        model_options_to_config(**opts)


def test_importing_model_modules_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, sam_detect.models, sam_detect.cli.models, sam_detect.cli.refine, "
        "sam_detect.cli._model_options, sam_detect.segment.tiling; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_pick_sam2_model(cache, tiny_ckpt):
    assert M.pick_sam2_model("large") == "large"
    assert M.pick_sam2_model("auto", "/w/sam2.1_hiera_base_plus.pt") == "base_plus"
    assert M.pick_sam2_model(None, "/w/sam2.1_hiera_s.pt") == "tiny"  # no size in the name
    assert M.pick_sam2_model("auto") == "tiny"  # nothing cached
    _touch(cache / "sam2" / "sam2.1_hiera_large.pt", tiny_ckpt.read_bytes())
    assert M.pick_sam2_model("auto") == "large"


def test_auto_leaves_cached_weights_whose_package_is_not_installed(cache, monkeypatch):
    """A shared model cache holding SAM2 and CLIP weights, without the ``models`` extra: auto
    picked them and every detect and add failed (the fallback for it never ran)."""
    import importlib.util

    monkeypatch.setattr(M.ModelSpec, "cached_path", lambda self, root=None: Path("/x"))  # every one cached
    monkeypatch.setattr(M, "checkpoint_problem", lambda path: None)  # ... and whole
    assert M.auto_models()[:2] == ("sam2", "clip")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("sam2", "open_clip") else real(name, *a))
    seg, emb, why = M.auto_models()
    assert (seg, emb) == ("classical", "views")
    assert "SAM2 weights found in" in why and "but the sam2 package is not installed" in why
    assert "pip install 'sam-detect[models]'" in why


def test_a_checkpoint_is_recorded_as_an_absolute_path_and_a_missing_one_looked_for_in_the_cache(tmp_path, monkeypatch, caplog):
    """``--clip-checkpoint ckpt/x.bin`` was recorded as typed (a run from another folder looked for
    another file, and blamed a flag not given); a ``Path`` was not recorded at all."""
    from sam_detect.config import adopt_library_settings
    from sam_detect.store._common import portable_options as _portable

    monkeypatch.chdir(tmp_path)
    _touch(tmp_path / "ckpt" / "x.bin")
    assert _portable({"checkpoint": "ckpt/x.bin", "device": "cpu"}) == {"checkpoint": str(tmp_path / "ckpt" / "x.bin")}
    assert _portable({"checkpoint": tmp_path / "ckpt" / "x.bin"}) == {"checkpoint": str(tmp_path / "ckpt" / "x.bin")}

    class Meta:
        extra = {"embedder": {"name": "clip", "options": {"model": "ViT-B-32", "checkpoint": str(tmp_path / "gone.bin")}}}
        fade = crop = None
        embedder_id = "clip:x"

    got = adopt_library_settings(Meta())
    assert got.embedder == "clip" and got.embedder_options == {"model": "ViT-B-32"}
    assert "gone.bin, which is not there: looking for them in the model cache" in caplog.text
    given = adopt_library_settings(Meta(), embedder_options={"checkpoint": "other.bin"})
    assert given.embedder_options["checkpoint"] == "other.bin"


def test_a_mistyped_option_or_offline_switch_is_a_setting_error(monkeypatch):
    """``create_embedder("clip", ckpt=...)`` was a raw TypeError; ``SAM_DETECT_OFFLINE=junk``
    silently meant online."""
    from sam_detect.embed import create_embedder
    from sam_detect.errors import SettingError

    with pytest.raises(SettingError, match=r"unknown clip embedder option\(s\) \['ckpt'\]"):
        create_embedder("clip", ckpt="x.bin")
    monkeypatch.setenv("SAM_DETECT_OFFLINE", "on")
    assert M._offline()
    monkeypatch.setenv("SAM_DETECT_OFFLINE", "junk")
    with pytest.raises(SettingError, match="SAM_DETECT_OFFLINE='junk': set it to 1"):
        M._offline()


def test_a_sam2_checkpoint_named_otherwise_is_sized_by_its_weights(tmp_path):
    """``--sam-checkpoint finetuned.pt`` (a small model) without ``--sam-model`` was taken for
    tiny by its name and refused ("does not match SAM 2.1 tiny"): its encoder's blocks say."""
    import torch

    for blocks, size in ((16, "small"), (24, "base_plus"), (12, "tiny")):
        state = {f"image_encoder.trunk.blocks.{b}.attn.qkv.weight": torch.zeros(2, 2) for b in range(blocks)}
        state["sam_mask_decoder.iou_token.weight"] = torch.zeros(1, 2)
        path = tmp_path / f"finetuned{blocks}.pt"
        torch.save({"model": state}, path)
        assert M.sam2_size_of(path) == size and M.pick_sam2_model(None, path) == size
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert M.sam2_size_of(tmp_path / "junk.pt") is None and M.pick_sam2_model(None, tmp_path / "junk.pt") == "tiny"
    assert M.pick_sam2_model(None, tmp_path / "sam2.1_hiera_large.pt") == "large"  # named: not read


def test_download_of_a_cached_model_says_so(cache, tiny_ckpt):
    """``models download`` of a cached name said "fetching ..." and fetched nothing."""
    spec = M.SAM2_MODELS["tiny"]
    path = _touch(cache / spec.cache_subdir / spec.filenames[0], tiny_ckpt.read_bytes())
    r = run_cli("models", "download", spec.name)
    assert r.exit_code == 0, r.output
    assert f"{spec.name}: already in the model cache" in r.stderr and "fetching" not in r.stderr
    assert r.stdout.strip() == str(path)


def test_download_offline_of_a_damaged_cached_file_says_it_is_damaged(cache, tiny_ckpt):
    """``models download NAME`` offline, its cached file cut short: "are not in the model cache"
    (the file is there, and ``models list`` calls it damaged). The error says the cached file
    is damaged and could not be fetched again, in one line; a whole one fetched again with
    ``--force`` is kept, and said so."""
    spec = M.SAM2_MODELS["tiny"]
    whole = tiny_ckpt.read_bytes()
    path = _touch(cache / spec.cache_subdir / spec.filenames[0], whole[: len(whole) // 2])
    r = run_cli("models", "download", spec.name)
    assert r.exit_code == 1 and "not in the model cache" not in r.stderr, r.output
    error = r.stderr.splitlines()[-1]
    assert error.startswith(f"Error: SAM2 weights sam2.1_hiera_tiny.pt (sam2.1-tiny): the cached {path} is damaged "
                            "(incomplete") and len(r.stderr.splitlines()) == 2
    assert error.endswith("and could not be fetched again (offline mode: SAM_DETECT_OFFLINE or HF_HUB_OFFLINE is "
                          "set). Run `sam-detect models download sam2.1-tiny` where the internet is reachable (and "
                          f"copy the file to {path}), or pass a local file with --sam-checkpoint PATH"), error
    path.write_bytes(whole)
    r = run_cli("models", "download", spec.name, "--force")
    assert r.exit_code == 1 and r.stderr.splitlines()[-1].startswith(
        "Error: SAM2 weights sam2.1_hiera_tiny.pt (sam2.1-tiny) could not be fetched again (offline mode: "), r.output
    assert f"the cached {path} is kept" in r.stderr and path.read_bytes() == whole


def test_download_fetches_a_damaged_cached_file_again(cache, tiny_ckpt, monkeypatch):
    """A cached checkpoint cut short (an interrupted copy): ``models list`` calls it damaged,
    but ``models download NAME`` said "already in the model cache" and gave the broken file
    back. It is fetched again over itself, and the command says why."""
    import huggingface_hub

    spec = M.SAM2_MODELS["tiny"]
    whole = tiny_ckpt.read_bytes()
    path = _touch(cache / spec.cache_subdir / spec.filenames[0], whole[: len(whole) // 2])
    r = run_cli("models", "download", spec.name)  # offline here: the fetch fails in one line
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert f"{spec.name}: the cached {path.name} is damaged (incomplete" in r.stderr
    assert "again" in r.stderr and "already in the model cache" not in r.stderr
    calls = []

    def fake_download(repo_id, filename, local_dir, **kw):
        calls.append(kw.get("force_download", False))
        return str(_touch(Path(local_dir) / filename, whole))

    monkeypatch.delenv("SAM_DETECT_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(M, "_hub_reachable", lambda timeout=3.0: (True, ""))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    assert M.download(spec) == path and calls == [True]  # over the damaged file
    assert path.read_bytes() == whole and M.checkpoint_problem(path) is None
    assert M.download(spec) == path and calls == [True]  # whole now: the cache's
