"""End-to-end: a headless Chromium drives the annotation page against a live server.

Needs Debian's ``chromium`` (``apt-get install -y chromium``) and the ``playwright`` Python
package (its own browser downloads are never used). The pipeline is the real offline one
(classical segmenter, effnet embedder) on a synthetic scene with known objects.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the UI needs fastapi (pip install fastapi uvicorn)")
playwright_sync = pytest.importorskip(
    "playwright.sync_api",
    reason="the browser tests need the playwright package (pip install playwright)",
)

from PIL import Image  # noqa: E402

from sam_detect.formats.runs import runs_to_mask  # noqa: E402
from sam_detect.instances import NEGATIVE  # noqa: E402
from sam_detect.pipeline import DetectorConfig, SAMDetect  # noqa: E402
from sam_detect.ui import AnnotationUI  # noqa: E402

CHROMIUM = next(
    (p for p in ("/usr/bin/chromium", shutil.which("chromium") or "") if p and Path(p).exists()),
    None,
)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no Chromium binary (install Debian's: apt-get install -y chromium)",
    ),
]

from test_ui_api import DISCS, SIZE, SQUARES, iou, scene  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from sam_detect.embed import create_embedder

    root = tmp_path_factory.mktemp("browser-images")
    img, _, _ = scene()
    Image.fromarray(img).save(root / "scene.png")
    Image.fromarray(255 - img).save(root / "zz_inverted.png")
    import tifffile

    stack = np.full((2, 2, 64, 96), 33000, np.uint16)
    stack[:, 0, 10:30, 10:30] += 4000  # channel 0: a square top left
    stack[:, 1, 30:60, 60:90] += 4000  # channel 1: a square bottom right
    stack[1] += 500
    stack += (np.arange(96) * 20).astype(np.uint16)  # a ramp, so that the contrast setting shows
    tifffile.imwrite(
        root / "stack16.tif", stack, photometric="minisblack", metadata={"axes": "TCYX"}
    )
    det = SAMDetect(
        DetectorConfig(segmenter="classical", store="memory", threshold=0.3),
        embedder=create_embedder("effnet", device="cpu"),
    )
    ui = AnnotationUI(det, root, thumbnail_dir=tmp_path_factory.mktemp("thumbs"))
    url = ui.start(port=0)
    yield ui, url, root
    ui.stop()
    det.close()


@pytest.fixture(scope="module")
def browser():
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    ui, url, _ = server
    ctx = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(url + "/")
    pg.wait_for_function("document.body.dataset.ready === '1'", timeout=60_000)
    pg.wait_for_function(
        "window.samDetect.img !== null && window.samDetect.current === 'scene.png'"
    )
    yield pg
    ctx.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def click_image(page, x: float, y: float) -> None:
    cx, cy = page.evaluate("([x, y]) => window.samDetect.imageToClient(x, y)", [x, y])
    page.mouse.click(cx, cy)


def wait_idle(page) -> None:
    page.wait_for_function("window.samDetect.busy === 0", timeout=60_000)


def test_click_accept_detect_correct(page, server):
    ui, _, _ = server
    store = ui.session.detector.store
    _, masks, truth = scene()

    # click a disc: its mask appears as the pending selection
    click_image(page, *DISCS[0])
    page.wait_for_function("window.samDetect.pending !== null", timeout=60_000)
    pending = page.evaluate(
        "({mask: window.samDetect.pending.mask, area: window.samDetect.pending.area})"
    )
    assert iou(runs_to_mask(pending["mask"], (SIZE, SIZE)), masks[0]) > 0.85
    assert page.is_visible("[data-testid=sel-title]")
    assert "New object" in page.inner_text("[data-testid=sel-title]")

    # type a new label and accept with Enter
    page.fill("[data-testid=label-input]", "disc")
    page.keyboard.press("Enter")
    page.wait_for_selector('#label-counts li[data-label="disc"]', timeout=60_000)
    assert page.inner_text('#label-counts li[data-label="disc"] .count') == "1"
    assert store.labels("default") == {"disc": 1}

    # drag a box around a square, accept with the button
    x, y = SQUARES[0]
    (x0, y0), (x1, y1) = (
        page.evaluate("([x, y]) => window.samDetect.imageToClient(x, y)", [x - 14, y - 14]),
        page.evaluate("([x, y]) => window.samDetect.imageToClient(x, y)", [x + 14, y + 14]),
    )
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=4)
    page.mouse.move(x1, y1, steps=4)
    page.mouse.up()
    page.wait_for_function("window.samDetect.pending !== null", timeout=60_000)
    page.fill("[data-testid=label-input]", "square")
    page.click("[data-testid=accept]")
    page.wait_for_selector('#label-counts li[data-label="square"]', timeout=60_000)
    assert store.labels("default") == {"disc": 1, "square": 1}
    page.wait_for_function(  # both thumbnails shown, decoded from real PNGs
        "(() => { const im = [...document.querySelectorAll('#examples .example img')];"
        " return im.length === 2 && im.every(i => i.complete && i.naturalWidth > 0); })()",
        timeout=30_000,
    )

    # detect: every other object is found with its own label
    page.click("[data-testid=detect]")
    page.wait_for_function(
        "window.samDetect.anns.filter(a => a.kind === 'detection').length > 0", timeout=120_000
    )
    wait_idle(page)
    anns = page.evaluate(
        "window.samDetect.anns.map(a => ({id: a.id, kind: a.kind, label: a.label, mask: a.mask, box: a.box}))"
    )
    found = [a for a in anns if a["kind"] == "detection"]
    assert len(found) == 6 and len([a for a in anns if a["kind"] == "example"]) == 2
    for a in found:
        m = runs_to_mask(a["mask"], (SIZE, SIZE))
        k = int(np.argmax([iou(m, g) for g in masks]))
        assert iou(m, masks[k]) > 0.8 and a["label"] == truth[k]
    shown = page.inner_text("[data-testid=status]")
    assert "detected" in shown and "of the library's examples were drawn on this image" in shown, shown  # its notes

    # click a detection and mark it wrong: a negative example goes into the library
    target = found[0]
    bx = target["box"]
    click_image(page, (bx[0] + bx[2]) / 2, (bx[1] + bx[3]) / 2)
    page.wait_for_function(f"window.samDetect.selected === {json.dumps(target['id'])}")
    assert page.inner_text("[data-testid=sel-title]").startswith("Detection")
    assert page.inner_text("[data-testid=negative]").startswith("Wrong")
    page.click("[data-testid=negative]")
    page.wait_for_function(
        f"window.samDetect.anns.some(a => a.id === {json.dumps(target['id'])} && a.kind === 'negative')"
    )
    assert store.labels("default")[NEGATIVE] == 1

    # click another detection and accept it with the 1st label chip's key
    second = found[1]
    bx = second["box"]
    click_image(page, (bx[0] + bx[2]) / 2, (bx[1] + bx[3]) / 2)
    page.wait_for_function(f"window.samDetect.selected === {json.dumps(second['id'])}")
    first_label = page.evaluate(
        "window.samDetect.labels.filter(l => l.label !== '__negative__')[0].label"
    )
    before = store.labels("default").get(first_label, 0)
    page.keyboard.press("1")
    page.wait_for_function(
        f"window.samDetect.anns.some(a => a.id === {json.dumps(second['id'])} && a.kind === 'example')"
    )
    assert store.labels("default")[first_label] == before + 1

    # undo with Ctrl+Z twice: the last two writes leave the library
    page.locator("[data-testid=canvas]").focus()
    page.keyboard.press("Control+z")
    page.wait_for_function(
        "document.querySelector('[data-testid=status]').textContent.startsWith('undone')"
    )
    wait_idle(page)
    page.keyboard.press("Control+z")
    page.wait_for_function(
        f"window.samDetect.anns.some(a => a.id === {json.dumps(target['id'])} && a.kind === 'detection')"
    )
    assert NEGATIVE not in store.labels("default") and store.count("default") == 2

    # export COCO: a download with every object of the image
    with page.expect_download() as dl:
        page.click("[data-testid=export]")
        page.click("[data-testid=export-coco]")
    coco = json.loads(Path(dl.value.path()).read_text())
    assert len(coco["annotations"]) == 8 and {c["name"] for c in coco["categories"]} == {
        "disc",
        "square",
    }
    assert page.is_hidden("[data-testid=error]")


def test_errors_show_in_the_page(page, server):
    click_image(page, 5, 5)  # background: the segmenter finds nothing there
    page.wait_for_selector("[data-testid=error]", state="visible", timeout=60_000)
    assert "no object found" in page.inner_text("#error-text")
    page.click("#error-close")
    assert page.is_hidden("[data-testid=error]")


def test_browse_images_with_the_keyboard(page, server):
    page.locator("[data-testid=canvas]").focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function("window.samDetect.current === 'stack16.tif'")
    wait_idle(page)
    page.keyboard.press("ArrowRight")
    page.wait_for_function("window.samDetect.current === 'zz_inverted.png'")
    wait_idle(page)
    assert page.inner_text("[data-testid=image-name]") == "zz_inverted.png"
    assert page.evaluate("document.querySelectorAll('#images li').length") == 3
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("window.samDetect.current === 'stack16.tif'")
    wait_idle(page)
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("window.samDetect.current === 'scene.png'")
    wait_idle(page)


def pixel(page, x: int, y: int) -> list[int]:
    """The displayed image's RGB at image pixel (x, y), read back from the <img> the page drew."""
    return page.evaluate(
        """([x, y]) => { const im = window.samDetect.img; const c = document.createElement('canvas');
        c.width = im.naturalWidth; c.height = im.naturalHeight; const g = c.getContext('2d');
        g.drawImage(im, 0, 0); return Array.from(g.getImageData(x, y, 1, 1).data.slice(0, 3)); }""",
        [x, y],
    )


def test_16bit_multichannel_stack_frames_channels_contrast(page, server):
    page.click('#images li[data-path="stack16.tif"]')
    page.wait_for_function(
        "window.samDetect.current === 'stack16.tif' && window.samDetect.busy === 0"
    )
    assert page.is_visible("[data-testid=frame]") and page.is_visible("[data-testid=channel]")
    assert "uint16" in page.inner_text("#image-meta")
    # all channels merged (max): both squares bright
    assert pixel(page, 20, 20)[0] > 200 and pixel(page, 75, 45)[0] > 200
    # channel 1 only: the top-left square disappears
    page.select_option("[data-testid=channel]", "1|max")
    page.wait_for_function("window.samDetect.view.channel === '1' && window.samDetect.busy === 0")
    assert pixel(page, 20, 20)[0] < 60 and pixel(page, 75, 45)[0] > 200
    # colour composite: channel 0 red, channel 1 green
    page.select_option("[data-testid=channel]", "|rgb")
    page.wait_for_function("window.samDetect.view.merge === 'rgb' && window.samDetect.busy === 0")
    r, g, _ = pixel(page, 20, 20)
    assert r > 200 and g < 60
    # frame 1 and a display contrast change re-render the image
    page.fill("[data-testid=frame]", "1")
    page.dispatch_event("[data-testid=frame]", "change")
    page.wait_for_function("window.samDetect.info.frame === 1 && window.samDetect.busy === 0")
    before = pixel(page, 45, 5)
    page.fill("[data-testid=contrast-lo]", "30")
    page.fill("[data-testid=contrast-hi]", "70")
    page.dispatch_event("[data-testid=contrast-hi]", "change")
    page.wait_for_function("window.samDetect.contrast.hi === 70 && window.samDetect.busy === 0")
    after = pixel(page, 45, 5)
    assert sum(abs(a - b) for a, b in zip(after, before, strict=True)) > 30, (before, after)
    assert page.is_hidden("[data-testid=error]")


@pytest.mark.parametrize("drop_border", [None, False])
def test_detect_uses_each_class_s_own_threshold_until_the_slider_moves(browser, tmp_path, drop_border):
    """Without --threshold the page sends none, so each class's own calibrated threshold
    decides (the slider's resting 0.5 was always sent); once moved, the slider's value is
    sent; a double click gives it back to the classes. The border menu likewise: at "auto"
    (the library's examples decide) nothing is sent, "keep" and "leave out" send
    ``drop_border``; ``sam-detect ui --keep-border`` starts it at "keep"."""
    img, _, _ = scene()
    Image.fromarray(img).save(tmp_path / "scene.png")
    det = SAMDetect(DetectorConfig(segmenter="classical", store="memory", embedder="handcrafted",
                                   drop_border=drop_border))
    ui = AnnotationUI(det, tmp_path, thumbnail_dir=tmp_path / "thumbs")
    url = ui.start(port=0)
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        pg = ctx.new_page()
        pg.goto(url + "/")
        pg.wait_for_function("document.body.dataset.ready === '1'", timeout=60_000)
        assert pg.text_content("#threshold-out") == "auto"
        sent = []
        pg.on("request", lambda r: sent.append(json.loads(r.post_data or "{}")) if r.url.endswith("/api/detect")
              else None)

        def detect_body():
            sent.clear()
            with pg.expect_response(lambda r: r.url.endswith("/api/detect")):
                pg.evaluate("detect()")
            return sent[-1]

        assert "threshold" not in detect_body()
        pg.evaluate("(() => { const t = document.getElementById('threshold'); t.value = '0.7';"
                    " t.dispatchEvent(new Event('input')); })()")
        assert detect_body()["threshold"] == 0.7 and pg.text_content("#threshold-out") == "0.70"
        pg.dblclick("#threshold")
        assert pg.text_content("#threshold-out") == "auto" and "threshold" not in detect_body()
        if drop_border is None:
            assert pg.input_value("#border") == "auto" and "drop_border" not in detect_body()
        else:
            assert pg.input_value("#border") == "keep" and detect_body()["drop_border"] is False
        pg.select_option("#border", "drop")
        assert detect_body()["drop_border"] is True
        pg.select_option("#border", "keep")
        assert detect_body()["drop_border"] is False
        pg.select_option("#border", "auto")
        assert "drop_border" not in detect_body()
    finally:
        ctx.close()
        ui.stop()
        det.close()
