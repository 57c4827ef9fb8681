"""The web UI's JSON API, endpoint by endpoint, through FastAPI's test client.

The pipeline is the real offline one (classical segmenter, effnet embedder) on small
synthetic scenes whose objects are known, with an in-memory (or file-backed) store.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the UI needs fastapi (pip install fastapi uvicorn)")

from conftest import run_cli
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from sam_detect.formats.runs import mask_to_runs, runs_to_mask  # noqa: E402
from sam_detect.instances import NEGATIVE  # noqa: E402
from sam_detect.pipeline import DetectorConfig, SAMDetect  # noqa: E402
from sam_detect.ui import AnnotationUI, UILimits  # noqa: E402
from sam_detect.ui.libraries import CachingEmbedder  # noqa: E402

H = {"X-SAM-Detect": "1"}
BASE = "http://127.0.0.1"
SIZE = 200
DISCS = [(40, 40), (150, 40), (95, 110), (40, 165), (160, 165)]  # (x, y) centres, radius 11
SQUARES = [(30, 95), (160, 100), (100, 160)]  # (x, y) centres, half side 9


def scene() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(gray (200, 200) uint8, masks (8, 200, 200) bool, labels)``: bright discs and squares."""
    img = np.full((SIZE, SIZE), 30, np.uint8)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    masks, labels = [], []
    for cx, cy in DISCS:
        masks.append((yy - cy) ** 2 + (xx - cx) ** 2 <= 11**2)
        labels.append("disc")
    for cx, cy in SQUARES:
        masks.append((abs(yy - cy) <= 9) & (abs(xx - cx) <= 9))
        labels.append("square")
    for m in masks:
        img[m] = 200
    return img, np.stack(masks), labels


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.fixture(scope="module")
def embedder():
    from sam_detect.embed import create_embedder

    emb = create_embedder("effnet", device="cpu")
    emb.embed([np.zeros((32, 32, 3), np.uint8)])  # load the weights once, outside the timed tests
    return emb


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Served folder: the scene as PNG, a nested 16-bit 2-channel 3-frame TIFF, a hidden
    file, a text file; a secret image outside the folder and a symlink pointing at it."""
    import tifffile

    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    img, _, _ = scene()
    Image.fromarray(img).save(root / "scene.png")
    rng = np.random.default_rng(0)
    stack = (rng.normal(1000, 50, (3, 2, 64, 96)) + 33000).astype(np.uint16)
    stack[:, 0, 20:40, 30:50] += 3000  # a bright square in channel 0
    tifffile.imwrite(
        root / "sub" / "stack.tif", stack, photometric="minisblack", metadata={"axes": "TCYX"}
    )
    Image.fromarray(img).save(root / ".hidden" / "h.png")
    (root / "notes.txt").write_text("not an image")
    Image.fromarray(img).save(tmp_path / "secret.png")
    os.symlink(tmp_path / "secret.png", root / "link.png")
    return root


def make_ui(folder: Path, embedder, store=None, **kw) -> AnnotationUI:
    store = store if store is not None else "memory"
    if isinstance(store, str):
        det = SAMDetect(
            DetectorConfig(segmenter="classical", store=store, threshold=0.3), embedder=embedder
        )
    else:
        det = SAMDetect(
            DetectorConfig(segmenter="classical", threshold=0.3), embedder=embedder, store=store
        )
    return AnnotationUI(det, folder, **kw)


@pytest.fixture
def ui(folder, embedder, tmp_path):
    app = make_ui(folder, embedder, thumbnail_dir=tmp_path / "thumbs")
    yield app
    app.stop()


@pytest.fixture
def client(ui) -> TestClient:
    return TestClient(ui.app(), base_url=BASE)


def prompt(client, x, y, path="scene.png"):
    r = client.post("/api/prompt", json={"path": path, "point": [x, y]}, headers=H)
    assert r.status_code == 200, r.text
    return r.json()["candidate"]


def accept(client, cand_ids, label, path="scene.png"):
    r = client.post(
        "/api/examples", json={"path": path, "label": label, "candidates": cand_ids}, headers=H
    )
    assert r.status_code == 200, r.text
    return r.json()


# ------------------------------------------------------------------ mask transport ---
@pytest.mark.parametrize(
    "shape,fill",
    [
        ((5, 7), "corner"),
        ((30, 40), "random"),
        ((1, 1), "all"),
        ((8, 8), "first-row"),
        ((12, 9), "ring"),
    ],
)
def test_runs_round_trip(shape, fill):
    rng = np.random.default_rng(1)
    m = np.zeros(shape, bool)
    if fill == "corner":
        m[-2:, -3:] = True
    elif fill == "random":
        m = rng.random(shape) > 0.6
    elif fill == "all":
        m[:] = True
    elif fill == "first-row":
        m[0] = True
    else:
        m[2:-2, 2:-2] = True
        m[4:-4, 4:-4] = False
    enc = mask_to_runs(m)
    assert sum(enc["runs"]) == enc["w"] * enc["h"]
    assert np.array_equal(runs_to_mask(enc, shape), m)
    ys, xs = np.nonzero(m)
    assert (enc["x"], enc["y"]) == (xs.min(), ys.min())


@pytest.mark.parametrize(
    "bad,msg",
    [
        ({"x": 0, "y": 0, "w": 2}, "integer values"),
        ({"x": 0, "y": 0, "w": 2, "h": 2, "runs": [1, 2]}, "sum to w*h = 4"),
        ({"x": 9, "y": 0, "w": 2, "h": 2, "runs": [0, 4]}, "outside the 10x10 image"),
        ({"x": 0, "y": 0, "w": 0, "h": 2, "runs": []}, "empty"),
        ({"x": 0, "y": 0, "w": 2, "h": 2, "runs": [5, -1]}, ">= 0"),
    ],
)
def test_runs_to_mask_rejects_bad_input(bad, msg):
    from sam_detect.errors import AnnotationError

    with pytest.raises(AnnotationError, match=msg.replace("*", r"\*").replace("(", r"\(")):
        runs_to_mask(bad, (10, 10))


# ------------------------------------------------------------------ page and browsing -
def test_page_and_static_files(client):
    r = client.get("/")
    assert r.status_code == 200 and "<canvas" in r.text and "/static/app.js" in r.text
    for name, kind in [("app.js", "javascript"), ("style.css", "text/css")]:
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
    assert client.get("/static/../session.py").status_code == 404
    cfg = client.get("/api/config").json()
    assert (
        cfg["negative_label"] == NEGATIVE
        and cfg["library"] == "default"
        and cfg["allow_upload"] is True
    )


def test_images_lists_only_images_inside(client, folder):
    listed = [im["path"] for im in client.get("/api/images").json()["images"]]
    assert "scene.png" in listed and "sub/stack.tif" in listed
    assert not any(p.startswith(".hidden") or p.endswith(".txt") for p in listed)
    assert "link.png" not in listed  # a symlink leading out of the folder


def test_multichannel_16bit_stack_info_and_render(client):
    info = client.get("/api/image/info", params={"path": "sub/stack.tif", "frame": 2}).json()
    assert (info["n_frames"], info["n_channels"], info["dtype"]) == (3, 2, "uint16")
    assert (info["width"], info["height"], info["frame"], info["rgb"]) == (96, 64, 2, False)

    def png(**params):
        r = client.get("/api/image/render", params={"path": "sub/stack.tif", **params})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
        return np.array(Image.open(io.BytesIO(r.content)))

    default = png(frame=1, channel="0")
    assert default.shape == (64, 96, 3)
    assert default[25:35, 35:45].mean() > default[50:60, 70:90].mean() + 100  # the bright square
    wide = png(frame=1, channel="0", lo=0, hi=100)
    assert not np.array_equal(default, wide)  # contrast changes the display
    ch1 = png(frame=1, channel="1")
    assert (
        abs(float(ch1[25:35, 35:45].mean()) - float(ch1[50:60, 70:90].mean())) < 60
    )  # no square there
    both = png(frame=0, channel="0,1", merge="rgb")
    assert both[30, 40, 0] > both[30, 40, 1]  # channel 0 red, channel 1 green
    r = client.get("/api/image/render", params={"path": "sub/stack.tif", "lo": 60, "hi": 20})
    assert r.status_code == 422 and "low < high" in r.json()["error"]
    r = client.get("/api/image/info", params={"path": "sub/stack.tif", "frame": 3})
    assert r.status_code == 422 and "out of range" in r.json()["error"]
    assert r.json()["error"].startswith("sub/stack.tif: ")  # as the browser names it: no server path
    r = client.get("/api/image/info", params={"path": "sub/stack.tif", "channel": "5"})
    assert r.status_code == 422 and "channel 5 out of range" in r.json()["error"]
    thumb = client.get("/api/image/thumb", params={"path": "sub/stack.tif"})
    assert thumb.status_code == 200 and Image.open(io.BytesIO(thumb.content)).size == (96, 64)


@pytest.mark.parametrize(
    "path,status",
    [
        ("../secret.png", 403),
        ("sub/../../secret.png", 403),
        ("/etc/passwd", 403),
        (
            "..%2Fsecret.png",
            403,
        ),  # sent encoded once more: arrives as '..%2F...' and is refused or missing
        ("link.png", 403),  # symlink to a file outside
        (".hidden/h.png", 403),
        ("notes.txt", 403),
        ("C:/Windows/win.ini", 403),
        ("missing.png", 404),
        ("sub", 403),
    ],
)
def test_path_traversal_is_refused(client, path, status):
    for url in ("/api/image/info", "/api/image/render", "/api/image/thumb", "/api/annotations"):
        r = client.get(url, params={"path": path})
        assert r.status_code == status or (
            path.startswith("..%2F") and r.status_code in (403, 404)
        ), (url, r.text)
        assert "error" in r.json()
    r = client.post("/api/prompt", json={"path": path, "point": [1, 1]}, headers=H)
    assert r.status_code in (403, 404)


def test_raw_traversal_in_url_is_not_served(client):
    r = client.get("/api/image/render?path=..%2F..%2F..%2Fetc%2Fpasswd")
    assert r.status_code == 403
    r = client.get("/static/..%2F..%2Fui%2Fsession.py")
    assert r.status_code == 404


def test_image_pixel_limit(folder, embedder):
    app = make_ui(folder, embedder, limits=UILimits(max_image_pixels=100 * 100))
    try:
        c = TestClient(app.app(), base_url=BASE)
        r = c.get("/api/image/info", params={"path": "scene.png"})
        assert r.status_code == 413 and "exceeds the limit of 10,000 pixels" in r.json()["error"]
    finally:
        app.stop()


# ------------------------------------------------------------------ annotate ----------
def test_click_gives_the_mask_under_the_point(client):
    _, masks, _ = scene()
    for k, (x, y) in [(0, DISCS[0]), (6, SQUARES[1])]:
        cand = prompt(client, x + 0.5, y + 0.5)
        got = runs_to_mask(cand["mask"], (SIZE, SIZE))
        assert iou(got, masks[k]) > 0.85, (k, iou(got, masks[k]))
        assert cand["area"] == int(got.sum()) and cand["source"] == "prompt"
        bx = cand["box"]
        assert bx[0] <= x < bx[2] and bx[1] <= y < bx[3]


def test_a_click_with_a_label_follows_its_examples(client, folder):
    """The page sends the label it will give the mask: a click on a dot that sits on a
    dimmer plateau is the plateau without examples, and the dot once three dots are examples."""
    from conftest import dots_on_a_plateau

    img, on, off = dots_on_a_plateau()
    Image.fromarray(img).save(folder / "dots.png")
    size = img.shape

    def click(x, y, **extra):
        r = client.post("/api/prompt", json={"path": "dots.png", "point": [x, y], **extra}, headers=H)
        assert r.status_code == 200, r.text
        return r.json()["candidate"]

    assert click(120.5, 80.5, label="dot")["area"] > 5000  # no examples yet: the plateau
    ids = []
    for k in range(3):
        cy, cx = np.argwhere(off[k]).mean(axis=0)
        cand = click(cx + 0.5, cy + 0.5)
        assert iou(runs_to_mask(cand["mask"], size), off[k]) > 0.8
        ids.append(cand["id"])
    accept(client, ids, "dot", path="dots.png")
    got = runs_to_mask(click(120.5, 80.5, label="dot")["mask"], size)
    assert iou(got, on[1]) > 0.6
    assert click(120.5, 80.5)["area"] > 5000  # no label: the segmenter's own answer


def test_box_prompt_and_bad_prompts(client):
    _, masks, _ = scene()
    r = client.post("/api/prompt", json={"path": "scene.png", "box": [15, 80, 45, 112]}, headers=H)
    assert r.status_code == 200, r.text
    assert iou(runs_to_mask(r.json()["candidate"]["mask"], (SIZE, SIZE)), masks[5]) > 0.8
    bad = [
        # a click on the ground: nothing, and what to try instead
        ({"path": "scene.png", "point": [5, 5]}, 422, "no object found at point 5,5; a box drawn round the object"),
        ({"path": "scene.png", "point": [500, 5]}, 422, "outside"),
        ({"path": "scene.png"}, 422, "exactly one of point"),
        ({"path": "scene.png", "point": [1, 2, 3]}, 422, "point"),
        ({"path": "scene.png", "point": [1, 2], "extra": 1}, 422, "extra"),
        ({"point": [1, 2]}, 422, "path"),
        ({"path": "scene.png", "point": [1, 2], "frame": -1}, 422, "frame"),
    ]
    for body, status, msg in bad:
        r = client.post("/api/prompt", json=body, headers=H)
        assert r.status_code == status, (body, r.text)
        assert msg.lower() in r.json()["error"].lower(), (body, r.json())
    r = client.post(
        "/api/prompt", content=b"{not json", headers={**H, "Content-Type": "application/json"}
    )
    assert r.status_code == 422 and "bad request" in r.json()["error"]


def test_accept_writes_to_the_library_at_once(client, ui, tmp_path):
    cand = prompt(client, *DISCS[0])
    res = accept(client, [cand["id"]], "disc")
    assert res["labels"] == {"disc": 1} and len(res["ids"]) == 1
    store = ui.session.detector.store
    assert store.labels("default") == {"disc": 1}  # in the store, not just the session
    [ann] = res["annotations"]
    assert ann["kind"] == "example" and ann["label"] == "disc" and ann["example_ids"] == res["ids"]
    lib = client.get("/api/library").json()
    assert lib["exists"] and lib["labels"][0]["label"] == "disc" and lib["labels"][0]["count"] == 1
    [ex] = lib["examples"]
    assert ex["id"] == res["ids"][0] and ex["source"] == "scene.png" and ex["thumbnail"] is True
    thumb = client.get(f"/api/examples/{ex['id']}/thumb")
    assert thumb.status_code == 200 and max(Image.open(io.BytesIO(thumb.content)).size) == 72
    assert (tmp_path / "thumbs" / "default" / f"{ex['id']}.png").is_file()
    # annotations survive a page reload: the server keeps them
    anns = client.get("/api/annotations", params={"path": "scene.png"}).json()["annotations"]
    assert [a["label"] for a in anns] == ["disc"]
    # a mask drawn by the page (runs) is accepted as well
    _, masks, _ = scene()
    res = client.post(
        "/api/examples",
        json={"path": "scene.png", "label": "square", "mask": mask_to_runs(masks[5])},
        headers=H,
    )
    assert res.status_code == 200 and store.labels("default") == {"disc": 1, "square": 1}


def test_accept_rejects_bad_input(client):
    cand = prompt(client, *DISCS[0])
    cases = [
        ({"label": "disc", "candidates": ["c999"]}, 404, "unknown or expired"),
        ({"label": "  ", "candidates": [cand["id"]]}, 422, "non-empty"),
        ({"label": "disc"}, 422, "nothing to accept"),
        ({"label": "x" * 101, "candidates": [cand["id"]]}, 422, "label"),
        (
            {"label": "disc", "mask": {"x": 0, "y": 0, "w": 3, "h": 3, "runs": [1]}},
            422,
            "sum to w*h",
        ),
        # runs whose int64 sum wraps round to w*h: numpy's repeat crashed the server process
        ({"label": "disc", "mask": {"x": 0, "y": 0, "w": 2, "h": 2, "runs": [2**62] * 3 + [2**62 + 4]}}, 422,
         "sum to w*h = 4"),
        ({"label": "disc", "mask": {"x": 0, "y": 0, "w": 2, "h": 2, "runs": [0, 1e20]}}, 422, "sum to w*h"),
        ({"label": "disc", "mask": {"x": 0, "y": 0, "w": 2, "h": 2, "runs": [-3, 7]}}, 422, "must be >= 0, got -3"),
        ({"label": "disc", "mask": {"x": 0.5, "y": 0, "w": 2, "h": 2, "runs": [0, 4]}}, 422, "integer values"),
        ({"label": "disc", "mask": {"x": "0", "y": 0, "w": 2, "h": 2, "runs": [0, 4]}}, 422, "integer values"),
        ({"label": "disc", "mask": {"x": 0, "y": 0, "w": 2, "h": 2, "runs": [0, True, 3]}}, 422, "integer values"),
    ]
    for body, status, msg in cases:
        r = client.post("/api/examples", json={"path": "scene.png", **body}, headers=H)
        assert r.status_code == status, (body, r.text)
        assert msg in r.json()["error"], (body, r.json())
    r = client.post(
        "/api/examples",
        json={"path": "sub/stack.tif", "label": "disc", "candidates": [cand["id"]]},
        headers=H,
    )
    assert r.status_code == 422 and "belongs to 'scene.png'" in r.json()["error"]
    assert client.get("/api/library").json()["count"] == 0  # nothing was written


def test_examples_stored_before_the_session_show_as_examples(client, ui, folder):
    """A library's examples of this image, added outside this session, come back from detect
    as examples (as drawn), not as detections to confirm again."""
    from sam_detect.instances import Instances

    _, masks, truth = scene()
    ui.session.detector.add_examples(folder / "scene.png", Instances(masks=masks[:1], labels=truth[:1]))
    res = client.post("/api/detect", json={"path": "scene.png", "threshold": 0.3}, headers=H).json()
    ex = [a for a in res["annotations"] if a["kind"] == "example"]
    assert len(ex) == 1 and ex[0]["label"] == truth[0] and res["already_examples"] == 1
    assert iou(runs_to_mask(ex[0]["mask"], (SIZE, SIZE)), masks[0]) == 1.0
    found = [a for a in res["annotations"] if a["kind"] == "detection"]
    assert found and all(iou(runs_to_mask(a["mask"], (SIZE, SIZE)), masks[0]) < 0.5 for a in found)


def test_detect_correct_and_undo(client, ui):
    _, masks, truth = scene()
    detect = {"path": "scene.png", "threshold": 0.3}
    r = client.post("/api/detect", json=detect, headers=H)
    assert r.status_code == 404 and "holds no examples yet" in r.json()["error"]
    accept(client, [prompt(client, *DISCS[0])["id"]], "disc")
    accept(client, [prompt(client, *SQUARES[0])["id"]], "square")

    r = client.post("/api/detect", json=detect, headers=H)
    assert r.status_code == 200, r.text
    res = r.json()
    found = [a for a in res["annotations"] if a["kind"] == "detection"]
    assert res["already_examples"] == 2 and res["count"] == len(found) == 6
    assert set(res["timings"]) >= {"segment", "embed", "search", "total"}
    # detect's notes on the image, as the command line prints them: the two examples drawn here
    assert any("of the library's examples were drawn on this image" in n for n in res["notes"]), res["notes"]
    for a in found:  # every other object, labelled as what it is
        m = runs_to_mask(a["mask"], (SIZE, SIZE))
        k = int(np.argmax([iou(m, g) for g in masks]))
        assert iou(m, masks[k]) > 0.8 and a["label"] == truth[k], (a["label"], truth[k])
        assert 0 < a["confidence"] <= 1 and a["neighbours"] and a["color"] and a["candidate"]

    # correct: accept one detection, relabel another, mark a third wrong
    d0, d1, d2 = found[:3]
    store = ui.session.detector.store
    accept(client, [d0["candidate"]], d0["label"])
    other = "square" if d1["label"] == "disc" else "disc"
    before = store.labels("default")
    res = accept(client, [d1["candidate"]], other)
    assert res["labels"][other] == before[other] + 1
    res = accept(client, [d2["candidate"]], NEGATIVE)
    assert res["labels"][NEGATIVE] == 1
    kinds = {a["id"]: (a["kind"], a["label"]) for a in res["annotations"]}
    assert kinds[d0["id"]] == ("example", d0["label"]) and kinds[d1["id"]] == ("example", other)
    assert kinds[d2["id"]] == ("negative", NEGATIVE)
    assert ui.session.detector.store.count("default") == 5

    # the second detection reuses the cached crops: no model run
    emb = ui.session.detector.embedder
    assert isinstance(emb, CachingEmbedder)
    misses = emb.misses
    res = client.post("/api/detect", json=detect, headers=H).json()
    assert emb.misses == misses
    # objects that are examples already are counted, not detected again; the one marked
    # wrong is not detected either (its own negative example is its nearest: each label
    # votes with its own nearest examples, so one negative is not outvoted by the discs)
    again = [a for a in res["annotations"] if a["kind"] == "detection"]
    assert 1 <= res["already_examples"] <= 5 and res["count"] == len(again)
    wrong = runs_to_mask(d2["mask"], (SIZE, SIZE))
    assert all(iou(runs_to_mask(a["mask"], (SIZE, SIZE)), wrong) < 0.5 for a in again)
    labels_now = {a["label"] for a in res["annotations"] if a["kind"] == "detection"}
    assert NEGATIVE not in labels_now

    # undo the negative, then the relabel: the store and the annotations go back
    r = client.post("/api/undo", headers=H)
    assert r.status_code == 200 and "negative" in r.json()["undone"]
    assert ui.session.detector.store.labels("default").get(NEGATIVE) is None
    r = client.post("/api/undo", headers=H)
    assert ui.session.detector.store.labels("default")[other] == before[other]
    anns = client.get("/api/annotations", params={"path": "scene.png"}).json()["annotations"]
    back = next(a for a in anns if a["id"] == d1["id"])
    assert back["kind"] == "detection" and back["label"] == d1["label"]
    for _ in range(3):
        assert client.post("/api/undo", headers=H).status_code == 200
    r = client.post("/api/undo", headers=H)
    assert r.status_code == 404 and r.json()["error"] == "nothing to undo"
    assert ui.session.detector.store.count("default") == 0


def test_relabel_an_example_replaces_it_and_undo_puts_it_back(client, ui):
    store = ui.session.detector.store
    cand = prompt(client, *DISCS[3])
    first = accept(client, [cand["id"]], "disc")
    [ann] = first["annotations"]
    assert accept(client, [cand["id"]], "disc")["ids"] == []  # same label again: nothing new
    assert store.labels("default") == {"disc": 1}
    # the page sends the example's mask back with another label: the old example goes
    res = client.post(
        "/api/examples",
        json={"path": "scene.png", "label": "square", "mask": ann["mask"]},
        headers=H,
    ).json()
    assert store.labels("default") == {"square": 1}
    [relabelled] = res["annotations"]
    assert relabelled["id"] == ann["id"] and relabelled["label"] == "square"
    assert relabelled["example_ids"] == res["ids"] != first["ids"]
    assert res["relabelled"] == 1 and first["relabelled"] == 0  # the page says "relabelled", not "added"
    r = client.post("/api/undo", headers=H).json()
    assert r["restored"] == 1 and store.labels("default") == {"disc": 1}
    [back] = client.get("/api/annotations", params={"path": "scene.png"}).json()["annotations"]
    assert back["label"] == "disc" and back["kind"] == "example"
    assert client.get("/api/library").json()["examples"][0]["id"] == back["example_ids"][0]
    client.post("/api/undo", headers=H)
    assert store.count("default") == 0  # the example put back by the first undo is gone too
    assert client.get("/api/annotations", params={"path": "scene.png"}).json()["annotations"] == []


def test_an_image_written_over_keeps_none_of_the_old_file_s_masks(client, ui, folder):
    """An image file written over while the page is open (another image under its name, here
    a smaller one): the candidates, marks and relabels made on the old file were kept under its
    name and frame alone, so accepting a candidate, exporting or undoing a relabel put the old
    masks on the new pixels (a mask outside the image: a 500 on every export after it)."""
    store = ui.session.detector.store
    ex = accept(client, [prompt(client, *DISCS[0])["id"]], "disc")
    client.post("/api/examples", json={"path": "scene.png", "label": "square",  # a relabel, to undo later
                                       "mask": ex["annotations"][0]["mask"]}, headers=H)
    cand = prompt(client, *DISCS[4])  # (160, 165): outside the new 100 x 100 image
    assert store.labels("default") == {"square": 1}
    Image.fromarray(scene()[0][:100, :100]).save(folder / "scene.png")
    r = client.post("/api/examples", json={"path": "scene.png", "label": "disc", "candidates": [cand["id"]]},
                    headers=H)
    assert r.status_code == 404 and "changed on disk" in r.json()["error"], r.text
    assert client.get("/api/annotations", params={"path": "scene.png"}).json()["annotations"] == []
    for fmt in ("coco", "labelme", "geojson", "labels"):
        r = client.get("/api/export", params={"path": "scene.png", "format": fmt})
        assert r.status_code == 200, (fmt, r.text)
    assert json.loads(client.get("/api/export", params={"path": "scene.png"}).content)["annotations"] == []
    r = client.post("/api/undo", headers=H)  # the relabel: its disc cannot be embedded from the new file
    assert r.status_code == 404 and "changed on disk" in r.json()["error"], r.text
    assert store.labels("default") == {"square": 1}  # nothing deleted for nothing put back
    assert client.post("/api/undo", headers=H).status_code == 200  # the step before it still undoes
    assert store.labels("default") == {"square": 1}  # the dropped step's example stays, as said
    r = client.post("/api/prompt", json={"path": "scene.png", "point": list(DISCS[0])}, headers=H)
    assert r.status_code == 200 and accept(client, [r.json()["candidate"]["id"]], "disc")["ids"]


def test_a_new_session_does_not_store_again_what_the_library_holds(client, ui, folder, tmp_path):
    """A session starts with no annotations: its accept of an object an earlier session had
    stored (the same label, image and mask) stored it again, a duplicate per restart. It
    follows ``add``'s rule now (not added again, and said), and its undo deletes only what it
    added, never the example the library held before."""
    store = ui.session.detector.store
    first = accept(client, [prompt(client, *DISCS[0])["id"]], "disc")["ids"]
    later = AnnotationUI(ui.session.detector, folder, prefetch=False, thumbnail_dir=tmp_path / "thumbs")
    try:
        c = TestClient(later.app(), base_url=BASE)
        res = accept(c, [prompt(c, *DISCS[0])["id"], prompt(c, *DISCS[1])["id"]], "disc")
        assert store.count("default") == 2 and len(res["ids"]) == 1 and res["already"] == 1
        assert sorted(i for a in res["annotations"] for i in a["example_ids"]) == sorted(first + res["ids"])
        assert c.post("/api/undo", headers=H).status_code == 200
        assert [ex["id"] for ex in c.get("/api/library").json()["examples"]] == first  # the earlier one stays
        res = accept(c, [prompt(c, *DISCS[0])["id"]], "disc")  # nothing new: nothing for undo to delete
        assert res["ids"] == [] and res["already"] == 1 and res["annotations"][0]["example_ids"] == first
        assert c.post("/api/undo", headers=H).status_code == 200 and store.count("default") == 1
    finally:
        later.stop()


def test_prefetch_embeds_an_opened_image_in_the_background(client, ui):
    accept(client, [prompt(client, *DISCS[0])["id"]], "disc")
    assert client.get("/api/image/info", params={"path": "scene.png"}).status_code == 200
    ui.session._prefetch_thread.join(timeout=120)
    st = client.get("/api/status").json()
    assert st["prefetch"]["done"] is True and st["prefetch"]["image"] == "scene.png"
    assert st["prefetch"]["candidates"] == st["prefetch"]["embedded"] == len(DISCS) + len(SQUARES)
    misses = st["embedding_cache"]["misses"]
    res = client.post("/api/detect", json={"path": "scene.png"}, headers=H).json()
    assert res["candidates"] == len(DISCS) + len(SQUARES)
    assert (
        client.get("/api/status").json()["embedding_cache"]["misses"] == misses
    )  # all from the cache


def test_prefetch_skips_segmenters_without_a_cache(folder, embedder):
    from sam_detect.segment.classical import ClassicalSegmenter

    class Uncached(ClassicalSegmenter):
        name = "uncached"

    det = SAMDetect(DetectorConfig(store="memory"), segmenter=Uncached(), embedder=embedder)
    app = AnnotationUI(det, folder)
    try:
        c = TestClient(app.app(), base_url=BASE)
        assert c.get("/api/image/info", params={"path": "scene.png"}).status_code == 200
        app.session._prefetch_thread.join(timeout=60)
        st = c.get("/api/status").json()
        assert "'uncached' is not prefetched" in st["prefetch"]["skipped"]
        assert st["prefetch"]["embedded"] == 0 and st["embedding_cache"]["misses"] == 0
    finally:
        app.stop()


def test_no_prefetch(folder, embedder):
    app = make_ui(folder, embedder, prefetch=False)
    try:
        c = TestClient(app.app(), base_url=BASE)
        assert c.get("/api/image/info", params={"path": "scene.png"}).status_code == 200
        assert (
            app.session._prefetch_thread is None and c.get("/api/status").json()["prefetch"] == {}
        )
    finally:
        app.stop()


def test_the_browser_s_favicon_request_is_answered_without_an_error(client):
    assert client.get("/favicon.ico").status_code == 204


def test_an_undo_does_not_put_back_an_example_deleted_since(client, ui):
    """Accept two discs, delete the first, undo the second accept: the first stays deleted
    on the image too (its mark came back, could not be deleted, and was exported)."""
    first = accept(client, [prompt(client, *DISCS[0])["id"]], "disc")["ids"][0]
    accept(client, [prompt(client, *DISCS[2])["id"]], "disc")
    assert client.delete(f"/api/examples/{first}", headers=H).status_code == 200
    assert client.post("/api/undo", headers=H).status_code == 200
    anns = client.get("/api/annotations", params={"path": "scene.png"}).json()
    shown = [i for a in (anns["annotations"] if isinstance(anns, dict) else anns) for i in a.get("example_ids", [])]
    assert first not in shown and client.get("/api/library").json()["count"] == 0


def test_delete_example(client, ui):
    ids = accept(client, [prompt(client, *DISCS[1])["id"]], "disc")["ids"]
    r = client.delete(f"/api/examples/{ids[0]}", headers=H)
    assert r.status_code == 200 and r.json()["labels"] == {}
    assert ui.session.detector.store.count("default") == 0
    assert client.get("/api/annotations", params={"path": "scene.png"}).json()["annotations"] == []
    assert client.delete(f"/api/examples/{ids[0]}", headers=H).status_code == 404
    assert client.delete("/api/examples/not%20an%20id!", headers=H).status_code == 422
    r = client.delete("/api/examples/zzz", headers=H)  # no UUID: not there (it was a 500)
    assert r.status_code == 404 and "is not in library" in r.json()["error"]
    assert client.get(f"/api/examples/{ids[0]}/thumb").status_code == 404


@pytest.mark.parametrize("how", ["delete", "undo"])
def test_ui_deletes_are_journaled(how, folder, embedder, tmp_path):
    """The UI's delete and undo go through ``journal.delete``: killed after the journal is
    written (here the store's delete dies, as a SIGKILL would end it), the next open of the
    library finishes the delete, so the examples are all gone, never some."""
    from sam_detect.store import journal
    from sam_detect.store.memory import MemoryStore

    path = tmp_path / "lib.npz"
    app = make_ui(folder, embedder, store=MemoryStore(path), thumbnail_dir=tmp_path / "thumbs")
    try:
        c = TestClient(app.app(), base_url=BASE)
        keep = accept(c, [prompt(c, *DISCS[0])["id"]], "disc")["ids"]
        ids = accept(c, [prompt(c, *DISCS[1])["id"], prompt(c, *DISCS[2])["id"]], "disc")["ids"]
        store = app.session.detector.store

        def dies(*a, **kw):
            raise SystemExit("killed")

        store.delete = dies
        with pytest.raises(SystemExit):
            if how == "delete":
                app.session.delete_example(ids[0])
            else:
                app.session.undo()  # takes back the last accept: both of its examples
        gone = ids[:1] if how == "delete" else ids
        with np.load(path) as z:  # on disk: the journal naming what is to go
            (lib,) = json.loads(str(z["index"][()]))["libraries"]
        assert lib["meta"]["extra"][journal.PENDING_KEY]["ids"] == gone
        assert lib["meta"]["extra"][journal.PENDING_KEY]["op"] == "delete"
    finally:
        app.stop()
    after = MemoryStore(path)  # the next open
    left = {i for b in after.iter_examples("default") for i in b[0]}
    assert left == set(keep + ids) - set(gone)
    assert journal.pending_of(after.get_meta("default")) is None


def test_switch_library(client, ui):
    accept(client, [prompt(client, *DISCS[0])["id"]], "disc")
    r = client.post("/api/library/switch", json={"name": "cells-2"}, headers=H)
    assert r.status_code == 200
    lib = r.json()
    assert lib["library"] == "cells-2" and not lib["exists"] and lib["labels"] == []
    assert set(lib["libraries"]) == {"default", "cells-2"}
    assert client.get("/api/annotations", params={"path": "scene.png"}).json()["annotations"] == []
    accept(client, [prompt(client, *SQUARES[0])["id"]], "square")
    store = ui.session.detector.store
    assert store.labels("cells-2") == {"square": 1} and store.labels("default") == {"disc": 1}
    back = client.post("/api/library/switch", json={"name": "default"}, headers=H).json()
    assert [(x["label"], x["count"]) for x in back["labels"]] == [("disc", 1)]
    for bad in ["", "../x", "a b", "x" * 65, "-lead", "collection"]:  # a reserved name: a 500 at the next request
        r = client.post("/api/library/switch", json={"name": bad}, headers=H)
        assert r.status_code == 422 and "library name" in r.json()["error"], bad
    assert "reserved" in r.json()["error"] and client.get("/api/library").json()["library"] == "default"


def test_a_switch_that_fails_leaves_the_session_on_its_library(client, ui, monkeypatch):
    """A switch to a library the session had opened before, held now by another process (a
    `detect` running on it): the switch answered 423, so the page stayed on its library, but the
    session had already moved, and the next accept wrote to the library the page did not show."""
    from sam_detect.errors import LibraryLockedError

    accept(client, [prompt(client, *DISCS[0])["id"]], "disc")
    assert client.post("/api/library/switch", json={"name": "cells-2"}, headers=H).status_code == 200
    assert client.post("/api/library/switch", json={"name": "default"}, headers=H).status_code == 200
    labels = ui.session.libraries.labels

    def held(det):
        if det.config.library == "cells-2":
            raise LibraryLockedError("library 'cells-2' is in use by another sam-detect process (pid 4242)")
        return labels(det)

    monkeypatch.setattr(ui.session.libraries, "labels", held)
    r = client.post("/api/library/switch", json={"name": "cells-2"}, headers=H)
    assert r.status_code == 423 and "in use" in r.json()["error"]
    assert ui.session.library == "default" and client.get("/api/library").json()["library"] == "default"
    accept(client, [prompt(client, *DISCS[1])["id"]], "disc")
    assert ui.session.detector.store.labels("default") == {"disc": 2}


def test_switch_to_a_library_named_collection_an_old_version_made(client, ui, monkeypatch):
    """The switch refused ``collection`` even where the store holds a library of that name an
    older version made (before the name was reserved): it is used now; none is made."""
    import sam_detect.names as names
    from sam_detect.store.base import LibraryMeta

    store = ui.session.detector.store
    with monkeypatch.context() as m:  # an older version: no name reserved
        m.setattr(names, "RESERVED_LIBRARY_NAMES", ())
        accept(client, [prompt(client, *DISCS[0])["id"]], "disc")
        meta = store.get_meta("default")
        store.create_library(LibraryMeta(name="collection", dim=meta.dim, embedder_id=meta.embedder_id,
                                         fade=meta.fade, crop=meta.crop))
    r = client.post("/api/library/switch", json={"name": "collection"}, headers=H)
    assert r.status_code == 200 and r.json()["library"] == "collection" and r.json()["exists"], r.text
    accept(client, [prompt(client, *SQUARES[0])["id"]], "square")
    assert store.labels("collection") == {"square": 1}


def test_export_formats(client):
    _, masks, _ = scene()
    accept(client, [prompt(client, *DISCS[0])["id"]], "disc")
    accept(client, [prompt(client, *DISCS[1])["id"]], NEGATIVE)
    accept(client, [prompt(client, *SQUARES[0])["id"]], "square")
    r = client.get("/api/export", params={"path": "scene.png", "format": "coco"})
    assert r.status_code == 200 and 'filename="scene_coco.json"' in r.headers["content-disposition"]
    coco = r.json()
    assert sorted(c["name"] for c in coco["categories"]) == [
        "disc",
        "square",
    ]  # the negative left out
    assert len(coco["annotations"]) == 2 and coco["images"][0]["width"] == SIZE
    # each mask exact, as the label image has it (polygons simplified by a pixel came back ~1% larger)
    from sam_detect.formats.coco import annotation_mask

    lab = np.array(Image.open(io.BytesIO(
        client.get("/api/export", params={"path": "scene.png", "format": "labels"}).content)))
    for k, ann in enumerate(coco["annotations"], 1):
        np.testing.assert_array_equal(annotation_mask(ann, (SIZE, SIZE), "").full((SIZE, SIZE)), lab == k)
        assert isinstance(ann["segmentation"], dict)  # RLE, as detect --coco writes it
    labelme = client.get("/api/export", params={"path": "scene.png", "format": "labelme"}).json()
    assert sorted(s["label"] for s in labelme["shapes"]) == ["disc", "square"]
    r = client.get("/api/export", params={"path": "scene.png", "format": "labels"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    lab = np.array(Image.open(io.BytesIO(r.content)))
    assert lab.shape == (SIZE, SIZE) and set(np.unique(lab)) == {0, 1, 2}
    assert iou(lab == 1, masks[0]) > 0.85 and iou(lab == 2, masks[5]) > 0.85
    r = client.get("/api/export", params={"path": "scene.png", "format": "geojson"})
    assert r.status_code == 200 and 'filename="scene.geojson"' in r.headers["content-disposition"]
    features = r.json()["features"]
    assert sorted(f["properties"]["classification"]["name"] for f in features) == ["disc", "square"]
    r = client.get("/api/export", params={"path": "scene.png", "format": "xml"})
    assert r.status_code == 422 and "coco, labelme, geojson or labels" in r.json()["error"]


def test_a_file_name_that_is_not_utf8_leaves_the_image_list_whole(client, folder):
    """One image whose name is bytes of another encoding (from an old zip, a Latin-1 disk) made
    ``/api/images`` a 500: the page listed no image at all. It is left out of the list, counted."""
    bad = os.fsencode(folder) + b"/caf\xe9.png"
    with open(bad, "wb") as f:
        f.write((folder / "scene.png").read_bytes())
    r = client.get("/api/images")
    assert r.status_code == 200, r.text
    listed = [im["path"] for im in r.json()["images"]]
    assert "scene.png" in listed and r.json()["not_utf8"] == 1


@pytest.mark.parametrize("name", ["细胞.png", 'we"ird.png', "new\nline.png"])
def test_an_export_of_an_image_of_any_name_is_downloaded_under_it(client, folder, name):
    """The download's name went into ``Content-Disposition`` as it was: a name in another script
    (as uploads keep it) was a 500 (headers are Latin-1), a quote cut it short, a line break
    dropped the connection. Now: the name in UTF-8 (``filename*``) and in ASCII."""
    from urllib.parse import unquote

    (folder / name).write_bytes((folder / "scene.png").read_bytes())
    r = client.get("/api/export", params={"path": name, "format": "coco"})
    assert r.status_code == 200, r.text
    cd = r.headers["content-disposition"]
    assert cd.isascii() and "\n" not in cd and cd.count('"') == 2, cd
    stem = name[:-4].replace("\n", "_")
    assert unquote(cd.split("filename*=UTF-8''")[1]) == f"{stem}_coco.json"


def test_coco_export_numbers_the_librarys_classes_as_detect_coco_does(client):
    """The UI's COCO export numbered the classes found in that image alone: one image's
    category 1 was ``zeta``, another's ``alpha``, and files exported image by image could not
    be merged. It lists every class of the library, as ``detect --coco`` does."""
    accept(client, [prompt(client, *DISCS[0])["id"]], "zeta")
    accept(client, [prompt(client, *SQUARES[0])["id"]], "alpha")
    want = [{"id": 1, "name": "alpha"}, {"id": 2, "name": "zeta"}]
    coco = client.get("/api/export", params={"path": "scene.png", "format": "coco"}).json()
    assert [{"id": c["id"], "name": c["name"]} for c in coco["categories"]] == want
    assert sorted(a["category_id"] for a in coco["annotations"]) == [1, 2]
    # an image with none of them: the same list, ids and all
    r = client.get("/api/export", params={"path": "sub/stack.tif", "format": "coco", "frame": 1, "channel": "0"})
    assert [{"id": c["id"], "name": c["name"]} for c in r.json()["categories"]] == want


def test_a_stack_frames_coco_export_says_its_frame(client, folder):
    """The UI's COCO export of a stack's frame named the frame in its file name only: its image
    record had no ``frame``, so `add --frame 0 --annotations` took frame 2's outlines as frame
    0's and `eval --frame 3` scored against them, without a word (a helper's bug hunt). The
    record says its frame now, as `detect --frame K --coco` writes it, and another frame is
    refused."""
    from sam_detect.errors import AnnotationError
    from sam_detect.formats import load_annotations

    r = client.get("/api/export", params={"path": "sub/stack.tif", "format": "coco", "frame": 2, "channel": "0"})
    assert r.status_code == 200 and 'filename="stack_frame2_coco.json"' in r.headers["content-disposition"]
    assert r.json()["images"][0]["frame"] == 2
    out = folder / "stack_frame2_coco.json"
    out.write_bytes(r.content)
    assert len(load_annotations(out, image_shape=(64, 96), at_frame=2)) == 0
    with pytest.raises(AnnotationError, match="frame 0"):
        load_annotations(out, image_shape=(64, 96), at_frame=0)
    r = client.get("/api/export", params={"path": "scene.png", "format": "coco"})
    assert "frame" not in r.json()["images"][0]  # a single image has none


def test_a_z_stack_frames_geojson_export_puts_it_on_its_z_plane(client, folder):
    """The UI's GeoJSON export of a stack's frame gave every object the plane ``t`` = frame:
    a z-stack's slice 2 went to QuPath as time point 2 on slice 0, where `detect --frame 2
    --geojson` puts it on ``z`` 2. It takes the plane from the stack's axes, as the CLI does."""
    import tifffile

    stack = np.zeros((3, 64, 96), np.uint8)
    stack[:, 20:40, 30:50] = 200
    tifffile.imwrite(folder / "sub" / "z.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    r = client.post("/api/prompt", json={"path": "sub/z.tif", "frame": 2, "point": [40, 30]}, headers=H)
    assert r.status_code == 200, r.text
    cand = r.json()["candidate"]
    r = client.post("/api/examples", json={"path": "sub/z.tif", "frame": 2, "label": "square",
                                           "candidates": [cand["id"]]}, headers=H)
    assert r.status_code == 200, r.text
    doc = client.get("/api/export", params={"path": "sub/z.tif", "format": "geojson", "frame": 2}).json()
    assert doc["frame"] == 2 and len(doc["features"]) == 1
    assert doc["features"][0]["geometry"]["plane"] == {"c": -1, "z": 2, "t": 0}


# ------------------------------------------------------------------ upload ------------
def _png_bytes(shape=(40, 50)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros(shape, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_upload(client, folder):
    data = _png_bytes()
    r = client.post("/api/upload", params={"name": "../../evil name.png"}, content=data, headers=H)
    assert r.status_code == 200, r.text
    up = r.json()
    assert up["path"] == "uploads/evil_name.png" and (up["width"], up["height"]) == (50, 40)
    assert (folder / "uploads" / "evil_name.png").read_bytes() == data
    again = client.post(
        "/api/upload", params={"name": "evil name.png"}, content=data, headers=H
    ).json()
    assert again["path"] == "uploads/evil_name_1.png"  # never overwrites
    assert "uploads/evil_name.png" in [
        i["path"] for i in client.get("/api/images").json()["images"]
    ]
    r = client.post("/api/upload", params={"name": "x.exe"}, content=data, headers=H)
    assert r.status_code == 422 and "not an image file name" in r.json()["error"]
    r = client.post(
        "/api/upload", params={"name": "broken.png"}, content=b"\x89PNG garbage", headers=H
    )
    assert r.status_code == 422 and "broken.png" in r.json()["error"]
    assert not (folder / "uploads" / "broken.png").exists()
    assert not [p for p in (folder / "uploads").iterdir() if p.name.endswith(".part")]
    r = client.post("/api/upload", params={"name": "empty.png"}, content=b"", headers=H)
    assert r.status_code == 422 and "empty" in r.json()["error"]


def test_upload_keeps_the_letters_of_every_script(client, folder):
    """``细胞.png`` was refused as "not an image file name (expected .png, ...)": its stem,
    every letter replaced by "_", was stripped with the dot. Letters and digits of any script
    are kept (a name with none saved as ``upload.png``), within a file name's 255 bytes."""
    data = _png_bytes()
    for name, saved in [("细胞.png", "细胞.png"), ("クロ.TIF", "クロ.tif"), ("up ö.png", "up_ö.png"),
                        ("o\u0308.jpg", "ö.jpg"), ("★.png", "upload.png"), ("हिंदी.png", "हिंदी.png"),
                        ("தமிழ்.png", "தமிழ்.png")]:  # vowel signs are marks, not letters
        if name.endswith((".jpg", ".TIF")):
            buf = io.BytesIO()
            Image.fromarray(np.zeros((40, 50), np.uint8)).save(buf, format="JPEG" if name.endswith("jpg") else "TIFF")
            body = buf.getvalue()
        else:
            body = data
        r = client.post("/api/upload", params={"name": name}, content=body, headers=H)
        assert r.status_code == 200, (name, r.text)
        assert r.json()["path"] == f"uploads/{saved}"
        assert client.get("/api/image/info", params={"path": r.json()["path"]}).status_code == 200
    r = client.post("/api/upload", params={"name": "細" * 100 + ".png"}, content=data, headers=H)
    assert r.status_code == 200, r.text
    assert r.json()["path"] == "uploads/" + "細" * 26 + ".png"  # 78 of the 80 bytes: no character cut


def test_upload_limits(folder, embedder):
    app = make_ui(
        folder, embedder, limits=UILimits(max_upload_bytes=1000, max_image_pixels=30 * 30)
    )
    try:
        c = TestClient(app.app(), base_url=BASE)
        r = c.post("/api/upload", params={"name": "big.png"}, content=b"x" * 1001, headers=H)
        assert r.status_code == 413 and "limit of 1,000 bytes" in r.json()["error"]
        r = c.post(
            "/api/upload", params={"name": "wide.png"}, content=_png_bytes((40, 50)), headers=H
        )
        assert r.status_code == 413 and "exceeds the limit of 900 pixels" in r.json()["error"]
        assert r.json()["error"].startswith("'wide.png': 50x40 pixels")  # the upload's name, not its temp file's
        assert not (folder / "uploads" / "wide.png").exists()
    finally:
        app.stop()
    app = make_ui(folder, embedder, allow_upload=False)
    try:
        c = TestClient(app.app(), base_url=BASE)
        r = c.post("/api/upload", params={"name": "a.png"}, content=_png_bytes(), headers=H)
        assert r.status_code == 403 and "turned off" in r.json()["error"]
    finally:
        app.stop()


# ------------------------------------------------------------------ safety ------------
def test_state_changes_need_the_header_and_a_local_host(client):
    for method, url, body in [
        ("post", "/api/prompt", {"path": "scene.png", "point": [40, 40]}),
        ("post", "/api/undo", None),
        ("post", "/api/library/switch", {"name": "x"}),
        ("delete", "/api/examples/abc", None),
    ]:
        kwargs = {"json": body} if body is not None else {}
        r = client.request(method.upper(), url, **kwargs)
        assert r.status_code == 403 and "X-SAM-Detect" in r.json()["error"], url
    r = client.get("/api/images", headers={"Host": "evil.example.com"})
    assert r.status_code == 421 and "not served here" in r.json()["error"]
    assert client.get("/api/images", headers={"Host": "localhost:8000"}).status_code == 200
    assert client.get("/api/images").headers["x-content-type-options"] == "nosniff"


def test_examples_survive_the_session(folder, embedder, tmp_path):
    """Accepted examples are on disk before the answer comes back: a second store opened on
    the same file sees them while the UI is still running."""
    from sam_detect.store import create_store

    lib_file = tmp_path / "lib.npz"
    app = make_ui(folder, embedder, store=create_store("memory", path=lib_file))
    try:
        c = TestClient(app.app(), base_url=BASE)
        cand = prompt(c, *DISCS[2])
        ids = accept(c, [cand["id"]], "disc")["ids"]
        other = create_store("memory", path=lib_file)
        assert other.labels("default") == {"disc": 1}
        got = [i for batch in other.iter_examples("default") for i in batch[0]]
        assert got == ids
        # thumbnails live next to the library file
        assert (tmp_path / "lib.npz-thumbnails" / "default" / f"{ids[0]}.png").is_file()
    finally:
        app.stop()


def test_qdrant_folder_library(folder, embedder, tmp_path):
    from sam_detect.store import create_store

    path = tmp_path / "qdrant"
    store = create_store("qdrant", path=str(path))
    app = make_ui(folder, embedder, store=store)
    try:
        c = TestClient(app.app(), base_url=BASE)
        accept(c, [prompt(c, *SQUARES[2])["id"]], "square")
        lib = c.get("/api/library").json()
        assert lib["store"].startswith("qdrant") and [e["label"] for e in lib["examples"]] == [
            "square"
        ]
    finally:
        app.stop()
        store.close()
    reopened = create_store("qdrant", path=str(path))
    try:
        assert reopened.labels("default") == {"square": 1}
    finally:
        reopened.close()


def test_unexpected_errors_become_json(client, ui, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ui.session.images, "list_images", boom)
    c = TestClient(client.app, base_url=BASE, raise_server_exceptions=False)
    r = c.get("/api/images")
    assert r.status_code == 500 and "disk on fire" in r.json()["error"]


# ------------------------------------------------------------------ CLI ---------------
def test_cli_ui_help_and_bad_folder(tmp_path):
    r = run_cli("ui", "--help")
    assert r.exit_code == 0 and "--port" in r.output and "IMAGE_DIR" in r.output
    r = run_cli("ui", str(tmp_path / "nope"))
    assert r.exit_code == 2 and "does not exist" in r.output


def test_cli_ui_says_which_option_to_change_when_it_cannot_listen(tmp_path):
    """A port in use and a --host this machine does not have were both "(another server
    there? choose another --port)": for a mistyped host, changing the port never helps."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_cli("ui", str(tmp_path), "--port", port)
        assert r.exit_code == 1 and "choose another --port" in r.output, r.output
    r = run_cli("ui", str(tmp_path), "--host", "999.1.1.1", "--port", port)
    assert r.exit_code == 1 and "cannot serve on 999.1.1.1" in r.output, r.output
    assert "--port" not in r.output and "--host takes an address of this machine" in r.output


def test_cli_help_does_not_import_the_web_stack():
    import subprocess
    import sys

    code = (
        "import sys\nfrom sam_detect.cli.main import main\n"
        "try:\n    main(['ui', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(m for m in ('fastapi', 'uvicorn', 'torch') if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", "import json\n" + code], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.slow
def test_cli_serves_the_page(folder):
    """`sam-detect ui` end to end: the process starts, serves the page and the API, stops on SIGINT."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "sam_detect",
        "ui",
        str(folder),
        "--port",
        str(port),
        "--store",
        "memory",
        "--segmenter",
        "classical",
        "--embedder",
        "effnet",
        "--device",
        "cpu",
        "--threshold",
        "0.4",
        "--no-prefetch",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                cfg = httpx.get(url + "/api/config", timeout=5).json()
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"the server did not start: {proc.communicate()[1][-2000:]}"
                    ) from None
                time.sleep(0.3)
        assert cfg["threshold"] == 0.4 and cfg["segmenter"] == "classical"
        assert "<canvas" in httpx.get(url + "/").text
        r = httpx.post(
            url + "/api/prompt", json={"path": "scene.png", "point": list(DISCS[0])}, headers=H
        )
        assert r.status_code == 200 and r.json()["candidate"]["area"] > 300
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert "serving" in err and f":{port}/" in err
    assert "Traceback" not in err


def test_cli_reads_the_library_while_the_ui_runs(folder, embedder, tmp_path):
    """Issue 14: the UI holds an Edge library only while a request works on it, so
    `library show` (a second process) succeeds between requests, and the UI goes on."""
    import subprocess
    import sys

    from sam_detect.store.edge import EdgeStore

    libs = tmp_path / "libs"
    store = EdgeStore(libs)
    app = make_ui(folder, embedder, store=store, thumbnail_dir=tmp_path / "thumbs")
    try:
        client = TestClient(app.app(), base_url=BASE)
        cand = prompt(client, 40, 40)
        accept(client, [cand["id"]], "disc")
        assert client.get("/api/library").status_code == 200
        repo = Path(__file__).resolve().parents[1]
        r = subprocess.run(
            [sys.executable, "-m", "sam_detect", "library", "show", "default", "--store", "edge",
             "--library-path", str(libs)],
            env={**os.environ, "PYTHONPATH": str(repo)}, capture_output=True, text=True, timeout=120,
        )
        assert r.returncode == 0, r.stderr
        assert "disc" in r.stdout
        assert client.get("/api/library").json()["count"] == 1  # the UI still works after
    finally:
        app.stop()
        store.close()


def test_a_request_that_fails_unexpectedly_lets_go_of_the_library(folder, embedder, tmp_path, monkeypatch):
    """The UI lets go of an Edge library after each request, but a request that failed with an
    unexpected error (a 500) skipped that: the library stayed held until the next request that
    worked, and `sam-detect add` beside the UI waited 10 s and failed ("in use by ... sam-detect ui")."""
    import sam_detect.outputs as outputs
    from sam_detect.store.edge import EdgeStore

    monkeypatch.setenv("SAM_DETECT_LOCK_WAIT", "0")
    libs = tmp_path / "libs"
    store = EdgeStore(libs)
    app = make_ui(folder, embedder, store=store, thumbnail_dir=tmp_path / "thumbs")
    try:
        client = TestClient(app.app(), base_url=BASE, raise_server_exceptions=False)
        accept(client, [prompt(client, *DISCS[0])["id"]], "disc")
        classes = outputs.output_classes

        def fails_after_reading(det):  # the library opened, then something unforeseen
            classes(det)
            raise RuntimeError("disk on fire")

        monkeypatch.setattr(outputs, "output_classes", fails_after_reading)
        r = client.get("/api/export", params={"path": "scene.png", "format": "coco"})
        assert r.status_code == 500 and "disk on fire" in r.json()["error"]
        beside = EdgeStore(libs)  # another process's store, as `sam-detect add` beside the UI
        try:
            assert beside.count("default") == 1
        finally:
            beside.close()
    finally:
        app.stop()
        store.close()


def test_the_ui_follows_an_add_and_a_delete_made_beside_it(folder, embedder, tmp_path):
    """Another store (as a `sam-detect add` beside the UI) adds to the UI's library between two
    requests: the UI's next request keeps that example and leaves the library whole (it wrote
    its old example count back: "damaged"). The library deleted beside it: the UI sees no
    library (it said "read-only disk"), and an undo of a step in it says the steps are dropped
    (it was a 500 that lost the step)."""
    from sam_detect.store.edge import EdgeStore
    from sam_detect.store.integrity import check_library

    libs = tmp_path / "libs"
    store = EdgeStore(libs)
    app = make_ui(folder, embedder, store=store, thumbnail_dir=tmp_path / "thumbs")
    try:
        client = TestClient(app.app(), base_url=BASE)
        accept(client, [prompt(client, *DISCS[0])["id"]], "disc")
        cli_store = EdgeStore(libs)
        beside = SAMDetect(DetectorConfig(segmenter="classical", threshold=0.3), embedder=embedder,
                           store=cli_store)
        beside.add_example(folder / "scene.png", box=(DISCS[1][0] - 12, DISCS[1][1] - 12, DISCS[1][0] + 12,
                                                      DISCS[1][1] + 12), label="disc")
        beside.close()
        cli_store.close()
        assert client.post("/api/detect", json={"path": "scene.png"}, headers=H).status_code == 200
        assert client.get("/api/library").json()["count"] == 2
        other = EdgeStore(libs)
        try:
            assert check_library(other, "default").ok
            other.delete_library("default")
        finally:
            other.close()
        info = client.get("/api/library").json()
        assert info["exists"] is False and info["count"] == 0
        r = client.post("/api/detect", json={"path": "scene.png"}, headers=H)
        assert r.status_code == 404 and "holds no examples yet" in r.json()["error"]
        r = client.post("/api/undo", headers=H)
        assert r.status_code == 404 and "was deleted outside this session: its 1 undo step(s) are dropped" in r.json()["error"]
        assert client.post("/api/undo", headers=H).status_code == 404  # nothing left to undo
        accept(client, [prompt(client, *DISCS[2])["id"]], "disc")  # an accept makes it anew
        assert client.get("/api/library").json()["count"] == 1
    finally:
        app.stop()
        store.close()
