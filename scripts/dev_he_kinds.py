#!/usr/bin/env python
"""One class of two looks: synthetic H&E-like fields (development only).

Each field (256 x 256 RGB, made by Beer-Lambert mixing of a haematoxylin and an eosin
colour) holds three kinds of nucleus on fibrous pink stroma with white gaps: small dark
round ones (lymphocyte-like, area ~60-130 px), dark spindles (~80-150 px) and large pale
*vesicular* ones (~300-800 px: a pale inside, a darker membrane, a few dark chromatin
clumps), the look that real tumour nuclei have beside the dark stromal ones and that
``dev_patches.py``'s stroma crop shows at its tumour edge without annotating it. Per seed,
three fields: 8 random nuclei of each of the first two are the examples, the third is
detected on and scored (F1 @ 0.5, and the share of each kind found). ``--typed`` gives
each kind its own class (8 examples per kind and field) and scores the type too.

    python scripts/dev_he_kinds.py                # one class "nucleus", seeds 0-5
    python scripts/dev_he_kinds.py --typed --seeds 0,1,2

Nothing here is a reported result: the fields are drawn by this file, and constants may be
chosen on them (docs/performance.md, session 24).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

KINDS = ("lymph", "spindle", "vesicular")
#: optical densities of haematoxylin and eosin per unit of stain (R, G, B), normalised
H_OD = np.array([0.65, 0.70, 0.29]) / np.linalg.norm([0.65, 0.70, 0.29])
E_OD = np.array([0.07, 0.99, 0.11]) / np.linalg.norm([0.07, 0.99, 0.11])


def field(seed: int, size: int = 256, counts=(10, 10, 8)) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(rgb (H, W, 3) uint8, label image, {id: kind})`` of one field."""
    import cv2

    rng = np.random.default_rng(seed)
    lab = np.zeros((size, size), np.int32)
    kind: dict[int, str] = {}
    yy, xx = np.mgrid[:size, :size]
    # eosin: fibres along one direction, white gaps between them
    kernel = cv2.getGaussianKernel(31, 8) @ cv2.getGaussianKernel(31, 1.2).T
    kernel = cv2.warpAffine(kernel, cv2.getRotationMatrix2D((15, 15), rng.uniform(0, 180), 1.0), (31, 31))
    fibres = cv2.filter2D(rng.normal(0, 1, (size, size)).astype(np.float32), -1, kernel / kernel.sum())
    fibres = (fibres - fibres.mean()) / (fibres.std() + 1e-6)
    gaps = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 6)
    gaps = (gaps - gaps.mean()) / gaps.std()
    c_e = np.clip(0.45 + 0.18 * fibres, 0.05, 1.0) * np.where(gaps > 1.2, 0.15, 1.0)
    c_h = np.clip(0.06 + 0.04 * fibres, 0, 1)  # a little haematoxylin in the stroma
    k = 0
    for name, count in zip(KINDS, counts, strict=True):
        placed = tries = 0
        while placed < count and tries < 3000:
            tries += 1
            cy, cx = rng.uniform(8, size - 8, 2)
            if name == "lymph":
                a = rng.uniform(4.5, 6.5)
                b = a * rng.uniform(0.85, 1.0)
            elif name == "spindle":
                a, b = rng.uniform(9, 14), rng.uniform(2.5, 3.5)
            else:
                a = rng.uniform(11, 17)
                b = a * rng.uniform(0.7, 0.95)
            th = rng.uniform(0, np.pi)
            u = (xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)
            v = -(xx - cx) * np.sin(th) + (yy - cy) * np.cos(th)
            r = np.sqrt((u / a) ** 2 + (v / b) ** 2)
            m = r <= 1
            if (lab[cv2.dilate(m.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0] > 0).any():
                continue
            k += 1
            placed += 1
            lab[m] = k
            kind[k] = name
            if name == "lymph":
                c_h[m] = rng.uniform(1.1, 1.4) + 0.1 * rng.normal(0, 1, m.sum())
            elif name == "spindle":
                c_h[m] = rng.uniform(0.8, 1.1) + 0.1 * rng.normal(0, 1, m.sum())
            else:
                val = rng.uniform(0.25, 0.4) + 0.5 * (r > 0.8) + 0.08 * rng.normal(0, 1, r.shape)
                for _ in range(rng.integers(3, 7)):  # chromatin clumps and a nucleolus
                    py, px = np.argwhere(m)[rng.integers(m.sum())]
                    rr = rng.uniform(1.2, 2.5)
                    val = val + 0.8 * np.exp(-((yy - py) ** 2 + (xx - px) ** 2) / (2 * rr**2))
                c_h[m] = val[m]
            c_e[m] *= 0.3
    od = c_h[..., None] * H_OD + c_e[..., None] * E_OD
    rgb = cv2.GaussianBlur((245 * np.exp(-od)).astype(np.float32), (0, 0), 0.9) + rng.normal(0, 3, od.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8), lab, kind


def run(seed: int, typed: bool = False, shots: int = 8) -> dict:
    """One draw: examples from two fields, the third scored."""
    from sam_detect import DetectorConfig, SAMDetect
    from sam_detect.eval.matching import match_iou_matrix
    from sam_detect.eval.metrics import instances_iou
    from sam_detect.instances import Instances

    rng = np.random.default_rng(seed)
    fields = [field(seed * 10 + i) for i in range(3)]
    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical"))
    for img, lab, kind in fields[:2]:
        inst, ids = Instances.from_label_image(lab)
        kinds = np.array([kind[int(i)] for i in ids], dtype=object)
        if typed:
            pick = np.concatenate([rng.choice(np.flatnonzero(kinds == c), shots, replace=False) for c in KINDS])
        else:
            rng.choice(len(inst), shots, replace=False)  # the draws as session 24 measured them
            pick = rng.choice(len(inst), shots, replace=False)
        inst.labels = kinds if typed else np.array(["nucleus"] * len(inst), dtype=object)
        det.add_examples(img, inst[pick])
    img, lab, kind = fields[2]
    gt, ids = Instances.from_label_image(lab)
    kinds = np.array([kind[int(i)] for i in ids])
    found = det.detect(img)
    det.close()
    pairs = list(match_iou_matrix(instances_iou(found, gt), 0.5).pairs) if len(found) else []
    hit = {int(g) for _, g in pairs}
    out = {"seed": seed, "gt": len(gt), "found": len(found), "matched": len(pairs),
           "f1": 2 * len(pairs) / (len(found) + len(gt))}
    for c in KINDS:
        out[c] = float(np.mean([int(g) in hit for g in np.flatnonzero(kinds == c)]))
    if typed:
        out["type"] = float(np.mean([found.labels[a] == kinds[g] for a, g in pairs])) if pairs else 0.0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2,3,4,5")
    ap.add_argument("--typed", action="store_true", help="each kind its own class (type accuracy too)")
    ap.add_argument("--json", default=None, help="write the per-seed figures here")
    args = ap.parse_args()
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        rows.append(run(seed, args.typed))
        print(" ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in rows[-1].items()), flush=True)
    keys = ["f1", *KINDS] + (["type"] if args.typed else [])
    print("mean", " ".join(f"{k} {np.mean([r[k] for r in rows]):.3f}" for k in keys))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
