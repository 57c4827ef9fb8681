"""Contract tests: every registered segmenter, embedder, fade and store through one contract.

As timm runs every registered model through the same test, these are parametrised over the
registries themselves (``list_segmenters()``, ``list_embedders()``, ``list_fades()``,
``list_stores()``): a new entry is tested the day it is registered, and fails here until
its row in the tables below says how to build a small, offline one. Models with weights run
on tiny random-weights builds (``sam2_ckpt``, ``tiny_clip`` in conftest.py); nothing is
downloaded.
"""

from __future__ import annotations

import uuid
from collections import Counter

import cv2
import numpy as np
import pytest
from conftest import TINY_CLIP, draw_scene

from sam_detect.embed import create_embedder, list_embedders
from sam_detect.embed.base import Embedder, InstanceEmbedder, embeds_instances
from sam_detect.fade import create_fade, list_fades
from sam_detect.fade.base import Fade
from sam_detect.fade.strategies import background_colour, fade_params
from sam_detect.instances import Instances, masks_to_xyxy
from sam_detect.segment import create_segmenter, list_segmenters
from sam_detect.segment.base import Segmenter
from sam_detect.store import create_store, list_stores
from sam_detect.store.base import LibraryMeta, Neighbour, Store

SIZE = 128  # side of the synthetic scene


@pytest.fixture(scope="module")
def scene():
    """``(rgb (128, 128, 3) uint8, masks (6, 128, 128) bool)``: 3 bright discs, 3 squares."""
    rgb, masks, _ = draw_scene(0, size=SIZE)
    return rgb, masks


# -- segmenters ---------------------------------------------------------------------------------
def segmenter_options(name: str, request) -> dict:
    """How to build a small, offline segmenter of each registered kind."""
    if name == "sam2":
        # guided by classical prompts at a 256-px input; random weights, so no quality
        # thresholds (as in test_sam2.py)
        return {"checkpoint": str(request.getfixturevalue("sam2_ckpt")), "device": "cpu",
                "image_size": 256, "mode": "guided", "prompt_sources": ("classical",),
                "guided_pred_iou_thresh": 0.0, "guided_stability_thresh": 0.0}
    return {"classical": {}, "regions": {}}[name]


def check_instances(inst: Instances, hw: tuple[int, int], name: str) -> None:
    """The fields ``Instances`` documents, with their shapes, dtypes and box convention."""
    assert isinstance(inst, Instances)
    n = len(inst)
    assert inst.image_hw == hw
    masks = inst.masks
    assert masks.shape == (n, *hw) and masks.dtype == bool
    assert np.all(masks.any(axis=(1, 2))), "an instance with an empty mask"
    assert inst.boxes.shape == (n, 4) and inst.boxes.dtype == np.float32
    np.testing.assert_array_equal(inst.boxes, masks_to_xyxy(masks))  # XYXY, x2/y2 exclusive
    assert inst.scores.shape == (n,) and inst.scores.dtype == np.float32
    assert np.all((inst.scores >= 0) & (inst.scores <= 1))
    assert inst.labels.shape == (n,) and all(label is None for label in inst.labels)  # not classified yet
    assert inst.label_confidences.shape == (n,) and inst.label_confidences.dtype == np.float32
    for key, value in inst.data.items():
        assert len(value) == n, f"data[{key!r}] has {len(value)} rows for {n} instances"
    np.testing.assert_array_equal(inst.data["area"], masks.sum(axis=(1, 2)))
    assert inst.metadata["segmenter"] == name


@pytest.mark.parametrize("entry", list_segmenters())
def test_segmenter_contract(entry, scene, request):
    seg = create_segmenter(entry, **segmenter_options(entry, request))
    assert isinstance(seg, Segmenter)
    assert seg.name.split(":")[0] == entry
    rgb, _ = scene
    found = seg.segment(rgb)
    check_instances(found, (SIZE, SIZE), seg.name)
    assert len(found) >= 1, "no candidate on a scene of six bright objects"
    # a blank image: no candidate, no error
    blank = seg.segment(np.full_like(rgb, 20))
    check_instances(blank, (SIZE, SIZE), seg.name)
    assert len(blank) == 0


@pytest.mark.parametrize("entry", list_segmenters())
def test_segmenter_prompt_gives_at_most_one_instance(entry, scene, request):
    seg = create_segmenter(entry, **segmenter_options(entry, request))
    rgb, masks = scene
    box = masks_to_xyxy(masks[:1])[0] + np.array([-3, -3, 3, 3], np.float32)
    out = seg.prompt(rgb, box=box)
    assert isinstance(out, Instances) and out.image_hw == (SIZE, SIZE)
    assert len(out) <= 1


# -- embedders ----------------------------------------------------------------------------------
def embedder_variants(name: str) -> list[str]:
    """The settings each registered embedder is checked in (its ways of making vectors)."""
    return {"sam2": ["image", "crop"]}.get(name, ["default"])


EMBEDDER_CASES = [(name, v) for name in list_embedders() for v in embedder_variants(name)]


def embedder_options(name: str, variant: str, request) -> dict:
    """How to build a small, offline embedder of each registered kind."""
    if name == "sam2":
        return {"checkpoint": str(request.getfixturevalue("sam2_ckpt")), "device": "cpu",
                "image_size": 256, "mode": variant}
    if name == "clip":
        tiny = request.getfixturevalue("tiny_clip")
        return {"model": TINY_CLIP, "pretrained": None, "checkpoint": str(tiny["pt"]), "device": "cpu"}
    return {"effnet": {"device": "cpu"}, "views": {"device": "cpu"}, "handcrafted": {}}[name]


def check_vectors(v: np.ndarray, n: int, dim: int) -> None:
    assert isinstance(v, np.ndarray) and v.shape == (n, dim) and v.dtype == np.float32
    assert np.all(np.isfinite(v))
    if n:
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(("entry", "variant"), EMBEDDER_CASES, ids=[f"{n}-{v}" for n, v in EMBEDDER_CASES])
def test_embedder_contract(entry, variant, scene, request):
    emb = create_embedder(entry, **embedder_options(entry, variant, request))
    assert isinstance(emb, Embedder)
    assert emb.name == entry
    assert isinstance(emb.dim, int) and emb.dim > 0
    assert isinstance(emb.id, str) and emb.id.startswith(f"{entry}:")
    assert isinstance(emb.supports_instances, bool)  # every built-in states the capability
    assert embeds_instances(emb) == emb.supports_instances
    rgb, masks = scene
    if emb.supports_instances:
        assert isinstance(emb, InstanceEmbedder)
        inst = Instances(masks=masks)
        v = emb.embed_instances(rgb, inst)
        check_vectors(v, len(masks), emb.dim)
        np.testing.assert_allclose(emb.embed_instances(rgb, inst), v, atol=1e-5)  # deterministic
        check_vectors(emb.embed_instances(rgb, Instances.empty((SIZE, SIZE))), 0, emb.dim)
    if entry == "sam2" and variant == "image":
        # image mode pools from whole-image features: crops are refused with what to call
        assert emb.supports_instances
        with pytest.raises(ValueError, match="embed_instances"):
            emb.embed([rgb])
        return
    boxes = masks_to_xyxy(masks[[0, 3, 4]]).astype(int)  # a disc and two squares
    crops = [rgb[max(y0 - 6, 0) : y1 + 6, max(x0 - 6, 0) : x1 + 6] for x0, y0, x1, y1 in boxes]
    assert len({c.shape for c in crops}) > 1  # crops of several sizes
    v = emb.embed(crops)
    check_vectors(v, len(crops), emb.dim)
    np.testing.assert_allclose(emb.embed(crops), v, atol=1e-5)  # deterministic
    assert not np.allclose(v[0], v[1], atol=1e-4)  # a disc and another object differ
    check_vectors(emb.embed([]), 0, emb.dim)


def test_an_embedder_that_does_not_state_the_capability_has_it_by_its_method():
    """Embedders written before ``supports_instances`` keep the path they took."""

    class CropsOnly:
        name, id, dim = "mine", "mine:1", 2

        def embed(self, crops):
            return np.ones((len(crops), 2), np.float32) / np.sqrt(2)

    class Dense(CropsOnly):
        def embed_instances(self, image, instances):
            return np.ones((len(instances), 2), np.float32) / np.sqrt(2)

    class DenseSwitchedOff(Dense):
        supports_instances = False

    assert not embeds_instances(CropsOnly()) and embeds_instances(Dense())
    assert not embeds_instances(DenseSwitchedOff())
    assert isinstance(Dense(), Embedder) and not isinstance(Dense(), InstanceEmbedder)


def test_the_embedders_ids_tell_their_vectors_apart(request):
    """``id`` records everything that changes the vectors: SAM2's two modes differ."""
    ids = {create_embedder("sam2", **embedder_options("sam2", v, request)).id for v in ("image", "crop")}
    assert len(ids) == 2


# -- fades --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def crop():
    """A textured ``(60, 80, 3)`` uint8 crop, its disc mask and the distance map from it."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:60, :80]
    mask = (yy - 30) ** 2 + (xx - 40) ** 2 <= 12**2
    dist = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return image, mask, dist.astype(np.float32)


@pytest.mark.parametrize("entry", list_fades())
def test_fade_contract(entry, crop):
    fade = create_fade(entry)
    assert isinstance(fade, Fade)
    image, mask, dist = crop
    before = image.copy()
    out = fade.apply(image, mask, dist)
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(image, before)  # the input is not changed
    assert out is not image
    np.testing.assert_array_equal(out[mask], image[mask])  # the object's pixels, bit for bit
    # outside, pixels move towards the background colour, never away from it
    bg = background_colour(image, mask, getattr(fade, "background", "mean"))
    moved = np.abs(out.astype(np.float32) - bg)
    assert np.all(moved <= np.abs(image.astype(np.float32) - bg) + 0.5 + 1e-3)
    # the recorded settings rebuild the same fade (libraries fade examples and queries alike)
    params = fade_params(fade)
    assert params["name"] == entry
    again = create_fade(params.pop("name"), **params)
    np.testing.assert_array_equal(again.apply(image, mask, dist), out)


@pytest.mark.parametrize("entry", sorted(set(list_fades()) - {"identity"}))
def test_fades_fade_the_far_surroundings_more(entry, crop):
    """The surroundings keep less of their contrast the farther they are from the object."""
    image, mask, dist = crop
    out = create_fade(entry).apply(image, mask, dist).astype(np.float32)
    bg = background_colour(image, mask, "mean")

    def kept(where):  # the share of the contrast to the background kept there
        return np.abs(out[where] - bg).mean() / np.abs(image[where] - bg).mean()

    near, far = (dist > 0) & (dist <= 5), dist > 25
    assert kept(far) < 0.9 and kept(far) < kept(near)


def test_identity_fade_changes_nothing(crop):
    image, mask, dist = crop
    np.testing.assert_array_equal(create_fade("identity").apply(image, mask, dist), image)


# -- stores -------------------------------------------------------------------------------------
# Every registered store, each in its embedded modes; the server mode where Docker is.
STORE_BACKENDS = {
    "memory": ("memory", lambda tmp: {}),
    "edge": ("edge", lambda tmp: {"path": tmp / "edge"}),
    "qdrant-local": ("qdrant", lambda tmp: {"path": tmp / "qdrant"}),
    "qdrant-memory": ("qdrant", lambda tmp: {"location": ":memory:"}),
    "qdrant-server": ("qdrant", None),
}


def test_every_registered_store_has_a_backend_here():
    assert {entry for entry, _ in STORE_BACKENDS.values()} == set(list_stores())


@pytest.fixture(params=list(STORE_BACKENDS))
def store(request, tmp_path):
    entry, options = STORE_BACKENDS[request.param]
    if options is None:
        from conftest import QDRANT_API_KEY

        s = create_store(entry, url=request.getfixturevalue("qdrant_server"), api_key=QDRANT_API_KEY)
    else:
        s = create_store(entry, **options(tmp_path))
    yield s
    for name in s.list_libraries():
        s.delete_library(name)
    s.close()


def examples(n: int = 24, dim: int = 8):
    """Unit vectors, labels ``a``/``b``/``c``, payloads and UUID ids; no two scores tie."""
    rng = np.random.default_rng(5)
    vecs = rng.normal(size=(n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    labels = ["abc"[i % 3] for i in range(n)]
    payloads = [{"source": f"img{i % 4}.png", "i": i} for i in range(n)]
    ids = [str(uuid.UUID(int=int(rng.integers(1, 2**62)) << 64 | i)) for i in range(n)]
    return vecs, labels, payloads, ids


def test_store_contract(store):
    assert isinstance(store, Store)  # add(ids=) and iter_examples included
    vecs, labels, payloads, ids = examples()
    store.create_library(LibraryMeta(name="contract", embedder_id="fake:v1", dim=8))
    assert store.has_library("contract") and "contract" in store.list_libraries()
    # add with ids keeps them; add without ids makes new, distinct ones
    assert store.add("contract", vecs[:12], labels[:12], payloads[:12], ids=ids[:12]) == ids[:12]
    made = store.add("contract", vecs[12:], labels[12:], payloads[12:])
    assert len(made) == 12 and len(set(made)) == 12 and not set(made) & set(ids[:12])
    all_ids = ids[:12] + made
    assert store.count("contract") == 24
    assert store.labels("contract") == dict(Counter(labels))
    # search: exact cosine top-k, best first, with labels and payloads
    queries = np.random.default_rng(6).normal(size=(3, 8)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    hits = store.search("contract", queries, 5)
    assert len(hits) == 3
    sims = queries @ vecs.T
    for q, row in enumerate(hits):
        want = np.argsort(-sims[q])[:5]
        assert all(isinstance(h, Neighbour) for h in row)
        assert [h.id for h in row] == [all_ids[i] for i in want]
        assert [h.label for h in row] == [labels[i] for i in want]
        assert [h.payload for h in row] == [payloads[i] for i in want]
        np.testing.assert_allclose([h.score for h in row], sims[q, want], atol=2e-5)
    # iter_examples: every example once, with its vector, label and payload
    seen = {}
    for batch_ids, batch_vecs, batch_labels, batch_payloads in store.iter_examples("contract", batch_size=5):
        assert len(batch_ids) <= 5 and batch_vecs.shape == (len(batch_ids), 8)
        assert batch_vecs.dtype == np.float32
        for i, v, lab, p in zip(batch_ids, batch_vecs, batch_labels, batch_payloads, strict=True):
            assert i not in seen
            seen[i] = (v, lab, p)
    assert sorted(seen) == sorted(all_ids)
    for k, i in enumerate(all_ids):
        np.testing.assert_allclose(seen[i][0], vecs[k], atol=1e-6)
        assert seen[i][1:] == (labels[k], payloads[k])
    # delete by id (an unknown id is not counted), then by label
    assert store.delete("contract", ids=[all_ids[0], all_ids[1], str(uuid.uuid4())]) == 2
    left_b = sum(1 for k in range(2, 24) if labels[k] == "b")
    assert store.delete("contract", label="b") == left_b
    kept = [k for k in range(2, 24) if labels[k] != "b"]
    assert store.count("contract") == len(kept)
    assert store.labels("contract") == dict(Counter(labels[k] for k in kept))
    top = store.search("contract", queries, 30)
    assert all(sorted(h.id for h in row) == sorted(all_ids[k] for k in kept) for row in top)
