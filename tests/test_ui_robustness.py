"""The UI's upload folder and its thumbnails of examples made outside the UI (issue 14)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the UI needs fastapi (pip install fastapi uvicorn)")

from conftest import run_cli
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from sam_detect.pipeline import DetectorConfig, SAMDetect  # noqa: E402
from sam_detect.ui import AnnotationUI  # noqa: E402

H = {"X-SAM-Detect": "1"}
BASE = "http://127.0.0.1"


def _png(shape=(40, 50)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full(shape, 120, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _scene(path: Path) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A textured photo-like RGB image with three bright discs; returns (rgb, boxes)."""
    rng = np.random.default_rng(3)
    rgb = (rng.normal(60, 12, (160, 200, 3))).clip(0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:160, :200]
    boxes = []
    for cx, cy in [(40, 40), (120, 60), (90, 120)]:
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= 14**2
        rgb[disc] = (220, 180, 40)
        boxes.append((cx - 18, cy - 18, cx + 18, cy + 18))
    Image.fromarray(rgb).save(path)
    return rgb, boxes


@pytest.fixture
def served(tmp_path: Path) -> Path:
    root = tmp_path / "served"
    root.mkdir()
    return root


def test_upload_into_a_symlinked_uploads_folder_is_refused(served, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, served / "uploads")
    det = SAMDetect(DetectorConfig(segmenter="classical", embedder="handcrafted", store="memory"))
    app = AnnotationUI(det, served, thumbnail_dir=tmp_path / "thumbs")
    try:
        c = TestClient(app.app(), base_url=BASE)
        r = c.post("/api/upload", params={"name": "x.png"}, content=_png(), headers=H)
        assert r.status_code == 403, r.text
        err = r.json()["error"]
        assert "uploads/ in the served folder is a link" in err
        assert str(tmp_path) not in err  # no absolute paths in the answer
        assert list(outside.iterdir()) == []  # nothing landed outside the served folder
    finally:
        app.stop()


def test_upload_into_a_file_named_uploads_is_refused(served, tmp_path):
    (served / "uploads").write_text("not a folder")
    det = SAMDetect(DetectorConfig(segmenter="classical", embedder="handcrafted", store="memory"))
    app = AnnotationUI(det, served, thumbnail_dir=tmp_path / "thumbs")
    try:
        c = TestClient(app.app(), base_url=BASE)
        r = c.post("/api/upload", params={"name": "x.png"}, content=_png(), headers=H)
        assert r.status_code == 403 and "not a folder" in r.json()["error"]
    finally:
        app.stop()


def test_examples_added_from_the_cli_get_real_thumbnails(served, tmp_path):
    """`sam-detect add coins.png --box ...` makes examples with no UI thumbnail file; the panel
    showed them as label-only squares. Their payload (source + mask_rle) now makes one."""


    img = served / "scene.png"
    rgb, boxes = _scene(img)
    libs = tmp_path / "libs"
    args = ["add", str(img), "--label", "disc", "--segmenter", "classical", "--embedder", "handcrafted",
            "--library-path", str(libs)]
    for b in boxes:
        args += ["--box", ",".join(map(str, b))]
    r = run_cli(*args)
    assert r.exit_code == 0, r.output
    det = SAMDetect(DetectorConfig(segmenter="classical", embedder="handcrafted", store="edge",
                                   store_options={"path": str(libs)}))
    app = AnnotationUI(det, served, thumbnail_dir=tmp_path / "thumbs")
    try:
        c = TestClient(app.app(), base_url=BASE)
        lib = c.get("/api/library", headers=H).json()
        assert len(lib["examples"]) == 3
        assert all(e["thumbnail"] for e in lib["examples"])
        for e in lib["examples"]:
            r = c.get(f"/api/examples/{e['id']}/thumb", headers=H)
            assert r.status_code == 200, r.text
            thumb = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
            # the thumbnail shows the example: its yellow disc, not a black square
            yellow = (thumb[..., 0] > 180) & (thumb[..., 1] > 140) & (thumb[..., 2] < 90)
            assert yellow.mean() > 0.2, yellow.mean()
            assert thumb.mean() > 40
        # made once, then kept next to the UI's own thumbnails
        assert len(list((tmp_path / "thumbs").rglob("*.png"))) == 3
    finally:
        app.stop()


def test_ctrl_c_says_what_it_waits_for_and_a_second_one_shows_no_tracebacks(served, capsys, monkeypatch):
    """Ctrl+C while a request works (an accept of hundreds of examples) waits for it, so that
    the library is written whole: that wait said nothing for tens of seconds, and a second
    Ctrl+C printed uvicorn's tracebacks of the cancelled request and waited still."""
    import logging
    import signal
    import threading

    (served / "a.png").write_bytes(_png())
    det = SAMDetect(DetectorConfig(segmenter="classical", embedder="handcrafted", store="memory"))
    ui = AnnotationUI(det, served, prefetch=False)
    uv = logging.getLogger("uvicorn.error")
    monkeypatch.setattr(uv, "level", uv.level)  # put back after the test
    try:
        server = ui._server_for("127.0.0.1", 0)
        server.handle_exit(signal.SIGINT, None)  # nothing at work: nothing to say
        assert server.should_exit and capsys.readouterr().err == ""
        server = ui._server_for("127.0.0.1", 0)
        held, done = threading.Event(), threading.Event()

        def work() -> None:  # a request at work holds the session's lock
            with ui.session.lock:
                held.set()
                done.wait()

        t = threading.Thread(target=work)
        t.start()
        held.wait()
        try:
            server.handle_exit(signal.SIGINT, None)
            assert "stopping once the request at work is done" in capsys.readouterr().err
            server.handle_exit(signal.SIGINT, None)
            assert server.force_exit and "still finishing the request at work" in capsys.readouterr().err
            assert not uv.isEnabledFor(logging.ERROR)  # the cancelled request's traceback is not shown
        finally:
            done.set()
            t.join()
    finally:
        ui.stop()
