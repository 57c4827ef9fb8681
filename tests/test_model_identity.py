"""One model identity (model, checkpoint sha256, input size) per library, checked on every use.

Two randomly initialised SAM 2.1 tiny checkpoints, written here in the official layout
(``{"model": state_dict}``), stand in for two different weight files of the same model.
The encoder runs at 256 px to keep the tests fast on a CPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from sam_detect.errors import EmbedderMismatchError

SIZE = 256


@pytest.fixture(scope="module")
def ckpts(sam2_ckpt, tmp_path_factory) -> tuple[Path, Path]:
    """Two random SAM 2.1 tiny checkpoints (seeds 0 and 1): same model, other weights."""
    from conftest import write_random_sam2

    other = write_random_sam2(tmp_path_factory.mktemp("sam2-identity") / "random_tiny_1.pt", seed=1)
    return sam2_ckpt, other


def scene() -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    img = np.full((SIZE, SIZE, 3), 25, np.uint8)
    masks = []
    for x, y, r in [(60, 60, 20), (180, 70, 18), (120, 190, 22)]:
        m = (xx - x) ** 2 + (yy - y) ** 2 < r * r
        img[m] = (210, 190, 170)
        masks.append(m)
    return img, np.stack(masks)


def emb(ckpt: Path, image_size: int = SIZE):
    from sam_detect.embed.sam2 import SAM2Embedder

    return SAM2Embedder(checkpoint=str(ckpt), device="cpu", image_size=image_size)


def seg(ckpt: Path, image_size: int = SIZE):
    from sam_detect.segment.sam2 import SAM2Segmenter

    return SAM2Segmenter(checkpoint=str(ckpt), device="cpu", image_size=image_size, mode="guided")


def detector(store, embedder, segmenter="classical"):
    from sam_detect.pipeline import DetectorConfig, SAMDetect

    kw = {"segmenter": segmenter} if not isinstance(segmenter, str) else {}
    cfg = DetectorConfig(store="memory", threshold=-1.0, segmenter="classical", library="discs")
    return SAMDetect(cfg, store=store, embedder=embedder, **kw)


def memory_store():
    from sam_detect.store import create_store

    return create_store("memory")


# -- the digest -----------------------------------------------------------------------------
def test_digest_is_sha256_computed_once_per_file_version(ckpts, monkeypatch, tmp_path):
    from sam_detect import models

    path = tmp_path / "random_tiny.pt"  # a copy: this test changes the file's modification time
    shutil.copyfile(ckpts[0], path)
    want = hashlib.sha256(path.read_bytes()).hexdigest()
    models._digests.clear()
    assert models.checkpoint_sha256(path) == want
    book = json.loads((models.cache_dir() / models.DIGESTS_FILE).read_text())
    entry = book[str(path.resolve())]
    assert entry["sha256"] == want and entry["size"] == path.stat().st_size
    # a later process reads the book instead of hashing: plant a recognisable digest there
    entry["sha256"] = "f" * 64
    (models.cache_dir() / models.DIGESTS_FILE).write_text(json.dumps(book))
    models._digests.clear()
    assert models.checkpoint_sha256(path) == "f" * 64
    # the same file with a new modification time is hashed again
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert models.checkpoint_sha256(path) == want
    # an unwritable cache folder costs the re-hash, not an error
    monkeypatch.setenv("SAM_DETECT_CACHE", str(path))  # a file: no folder can be made there
    models._digests.clear()
    assert models.checkpoint_sha256(path) == want


def test_identities_of_two_checkpoints_differ(ckpts):
    a, b = emb(ckpts[0]).model_identity, emb(ckpts[1]).model_identity
    assert a.family == b.family == "sam2" and a.name == b.name == "sam2.1-tiny"
    assert a.input_size == b.input_size == SIZE
    assert a.sha256 != b.sha256 and re.fullmatch(r"[0-9a-f]{64}", a.sha256)
    assert emb(ckpts[0]).model_identity == a
    assert emb(ckpts[0], image_size=512).model_identity.input_size == 512
    assert seg(ckpts[0]).model_identity == a


# -- a library records the identity and refuses another --------------------------------------
def test_library_refuses_another_checkpoint_and_accepts_the_same(ckpts):
    img, masks = scene()
    store = memory_store()
    first = emb(ckpts[0])
    with detector(store, first) as det:
        det.add_example(img, label="disc", mask=masks[0])
    meta = store.get_meta("discs")
    assert meta.model == first.model_identity.to_dict()

    other = emb(ckpts[1])
    with detector(store, other) as det, pytest.raises(EmbedderMismatchError) as err:
        det.detect(img)
    msg = str(err.value)
    assert "\n" not in msg
    a, b = first.model_identity, other.model_identity
    assert msg.startswith(
        f"library 'discs' was made with SAM2 sam2.1-tiny (checkpoint sha256 {a.sha256[:12]}, "
        f"input {SIZE} px), but this detector uses SAM2 sam2.1-tiny (checkpoint sha256 "
        f"{b.sha256[:12]}, input {SIZE} px)"
    )
    assert "--sam-checkpoint" in msg and "another --library" in msg
    with detector(store, other) as det, pytest.raises(EmbedderMismatchError, match="sha256"):
        det.add_example(img, label="disc", mask=masks[1])
    assert store.count("discs") == 1

    # the same checkpoint, read by a new embedder object: accepted, and the example is found
    with detector(store, emb(ckpts[0])) as det:
        found = det.detect(img)
    assert "discs" in store.list_libraries() and len(found) >= 1
    assert set(found.labels) == {"disc"}


def test_library_without_identity_keeps_working(ckpts):
    """A library made before identities were recorded: the embedder id still decides."""
    from sam_detect.store.base import MODEL_KEY

    img, masks = scene()
    store = memory_store()
    with detector(store, emb(ckpts[0])) as det:
        det.add_example(img, label="disc", mask=masks[0])
    store.update_extra("discs", MODEL_KEY, None)  # as an old library
    assert store.get_meta("discs").model is None

    with detector(store, emb(ckpts[0])) as det:
        found = det.detect(img)
        assert len(found) >= 1 and set(found.labels) == {"disc"}
        det.add_example(img, label="disc", mask=masks[1])  # an add records the identity now
    assert store.get_meta("discs").model == emb(ckpts[0]).model_identity.to_dict()

    store.update_extra("discs", MODEL_KEY, None)
    with detector(store, emb(ckpts[1])) as det, pytest.raises(EmbedderMismatchError, match="embedder"):
        det.detect(img)  # other weights: the id (which carries a weights fingerprint) differs


def test_merge_refuses_a_file_made_with_another_checkpoint(ckpts, tmp_path):
    from sam_detect.store.base import MODEL_KEY
    from sam_detect.store.exchange import export_library, import_library

    img, masks = scene()
    store = memory_store()
    with detector(store, emb(ckpts[0])) as det:
        det.add_example(img, label="disc", mask=masks[0])
    file = tmp_path / "discs.sdlib"
    export_library(store, "discs", file)
    other = memory_store()
    with detector(other, emb(ckpts[0])) as det:
        det.add_example(img, label="disc", mask=masks[1])
    # the same embedder id, another recorded checkpoint: refused by the identity alone
    other.update_extra("discs", MODEL_KEY, {**other.get_meta("discs").model, "sha256": "0" * 64})
    with pytest.raises(EmbedderMismatchError, match=r"cannot merge .* the file's examples were made with"):
        import_library(other, file, merge=True)
    assert other.count("discs") == 1


# -- example-guided prompts share features only with the same model --------------------------
@pytest.mark.parametrize(
    ("seg_ckpt", "seg_size", "shared"),
    [(0, SIZE, True), (1, SIZE, False), (0, 512, False)],
    ids=["same", "other-checkpoint", "other-input-size"],
)
def test_example_features_are_shared_only_with_the_same_model(ckpts, caplog, seg_ckpt, seg_size, shared):
    img, masks = scene()
    store = memory_store()
    segmenter = seg(ckpts[seg_ckpt], image_size=seg_size)
    with detector(store, emb(ckpts[0]), segmenter=segmenter) as det:
        det.add_example(img, label="disc", mask=masks[0])
        with caplog.at_level(logging.WARNING, logger="sam_detect"):
            det._share_example_features()
        choice = det.choices["example_prompts"]
    if shared:
        assert set(segmenter._examples) == {"disc"} and segmenter._examples["disc"].shape == (1, 256)
        assert choice == "on: 1 example features"
        assert not caplog.records
    else:
        assert segmenter._examples == {}
        mine = segmenter.model_identity.describe()
        assert choice.startswith("off: library 'discs' was made with SAM2 sam2.1-tiny")
        assert choice.endswith(f"the segmenter uses {mine}")
        assert [r.getMessage() for r in caplog.records] == [f"example-guided prompts are off: {choice[5:]}"]


def test_library_made_before_tiled_image_mode_keeps_its_whole_image_policy(ckpts):
    """A sam2 library whose id has no tiling policy (made when image mode always encoded
    the whole image) is reopened with ``embedder="auto"`` under that policy, not refused."""
    from sam_detect.pipeline import DetectorConfig, SAMDetect

    img, masks = scene()
    store = memory_store()
    opts = {"checkpoint": str(ckpts[0]), "image_size": SIZE, "device": "cpu"}
    cfg = DetectorConfig(store="memory", segmenter="classical", threshold=-1.0, library="discs",
                         embedder="sam2", embedder_options={**opts, "tile_size": 0})
    with SAMDetect(cfg, store=store) as det:
        det.add_example(img, label="disc", mask=masks[0])
    meta = store.get_meta("discs")
    assert ":tiles=" not in meta.embedder_id
    store.update_extra("discs", "embedder", {"name": "sam2", "options": {k: v for k, v in opts.items() if k != "device"}})
    auto = DetectorConfig(store="memory", segmenter="classical", threshold=-1.0, library="discs")
    with SAMDetect(auto, store=store) as det:
        found = det.detect(img)
        assert det.embedder.id == meta.embedder_id and det.embedder.tile_size == 0
    assert len(found) >= 1
    # asked for the tiled policy explicitly, the old library is refused by its id
    tiled = DetectorConfig(store="memory", segmenter="classical", library="discs", embedder="sam2",
                           embedder_options=opts)
    with SAMDetect(tiled, store=store) as det, pytest.raises(EmbedderMismatchError, match="tiles=auto/128"):
        det.detect(img)
