#!/usr/bin/env python
"""The selection step, re-run offline on recorded candidates (development only).

``evaluate`` keeps, per scored image, exactly what ``detect`` decided on: the candidates
that were embedded, their neighbours, the profile and the decision settings. This script
runs the full pipeline once per data set, pickles those records in a cache folder, and
then scores variants of the decision and selection step (``select.decide``) on them in
seconds, so a rule can be tried on every development set at once. A rule that only
changes the selection gives here exactly what ``detect`` would give (checked: the
baseline reproduces the pipeline's own F1); a rule that changes which candidates are
embedded (``profile.size_filter``) needs the full benchmark.

    python scripts/dev_selection.py record dev_u2os dev_rpe1      # run once, cache
    python scripts/dev_selection.py score                           # every cached set
    python scripts/dev_selection.py groups dev_cross dev_u2os       # whole-or-parts groups
    python scripts/dev_selection.py record dev_rings_same dev_rings_s30   # other protocols
    python scripts/dev_selection.py record dev_stroma_same5               # the held-out format, 5 examples
    python scripts/dev_selection.py record dev_piles_same                 # every image of the piles
    python scripts/dev_selection.py record dev_u2os__dim0.2 dev_rpe1__spread0.3   # degraded images

``groups``: every candidate shaped like the examples that smaller alternatives tile
(``select.covering_parts``), among the candidates the decision keeps in play, split by
which the ground truth says is right (the whole, or every part), with the quartiles of
the parts' contact ratio (``select.contact_ratio``) and outline ratio (``data["edge"]``
over the whole's).

Sets: ``bench_data.DEV``, ``dev_lines`` (``bench_data.dev_lines_runs``: six example frames,
one run each), the synthetic fields of ``scripts/tune_calibrated.py``
(``syn_sparse`` ... ``syn_flat``, seeds 0-2: 10 examples from the field, the rest scored),
and any reported set (``bench_examples`` names) -- never choose a rule on those.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
CACHE = Path(os.environ.get("SAM_DETECT_DEV_CACHE", Path.home() / ".cache" / "sam-detect-dev" / "selection"))
SYNTHETIC = ["syn_sparse", "syn_dense", "syn_dark", "syn_flat"]
#: images run in the held-out format (``NAME_same``) per set, where not the first three:
#: each of ``dev_piles``' images is its own kind of object
SAME_FRAMES = {"dev_piles": 5}


def _inputs(name: str) -> list[tuple[list, list, dict]]:
    """``[(images, ground truth, protocol)]``: one protocol run or several.

    ``NAME_same``: the held-out format on a ``bench_data`` set, 10 examples from a frame and
    that frame scored, frames 0-2, seeds 0 and 1 (six runs); ``NAME_sameN``: the same with
    ``N`` examples; ``NAME_sN``: the set's own protocol with ``N`` examples (all there are
    where ``N`` exceeds them); ``NAME__KIND``: the held-out format on frames 0-2 degraded
    as ``dev_degrade.py``'s ``KIND`` says (``dimF``'s examples drawn among the objects it
    left as they are: ``protocol["drawing"]``)."""
    import re

    if "__" in name:
        import bench_data
        from dev_degrade import degrade

        base, kind = name.split("__", 1)
        images, gt = bench_data.load(base)
        runs = []
        for k in range(min(3, len(images))):
            lab = np.asarray(gt[k])
            img = degrade(np.asarray(images[k]), kind, np.random.default_rng(100 + k), lab)
            runs += [([img], [gt[k]], dict(shots=10, examples_from=[0], detect_on=[0], seed=seed,
                                           drawing=(kind, lab, k))) for seed in (0, 1)]
        return runs

    base, same, same_shots, shots = re.fullmatch(r"(.+?)(?:(_same)(\d+)?|_s(\d+))?", name).groups()
    if same or shots:
        import bench_data

        images, gt = bench_data.load(base)
        if shots:
            return [(images, gt, {**bench_data.PROTOCOL[base], "shots": int(shots)})]
        return [([images[k]], [gt[k]], dict(shots=int(same_shots or 10), examples_from=[0], detect_on=[0], seed=seed))
                for k in range(min(SAME_FRAMES.get(base, 3), len(images))) for seed in (0, 1)]
    if name == "dev_lines":
        import bench_data

        return bench_data.dev_lines_runs()
    if name in SYNTHETIC:
        import tune_calibrated

        runs = []
        for seed in range(3):
            img, lab = tune_calibrated.field(seed, **tune_calibrated.KINDS[name[4:]])
            runs.append(([img], [lab], dict(shots=10, examples_from=[0], detect_on=[0], seed=seed)))
        return runs
    import bench_examples

    return bench_examples.protocol_runs(name)[0]


def record(name: str, embedder: str = "views") -> list:
    """Run the full pipeline on ``name`` and cache its records."""
    import contextlib

    from dev_degrade import drawing

    from sam_detect import DetectorConfig
    from sam_detect.eval.protocol import evaluate

    config = DetectorConfig(segmenter="classical", embedder=embedder, store="memory")
    out = []
    for images, gt, protocol in _inputs(name):
        protocol = dict(protocol)
        seed = protocol.pop("seed", 0)
        how = protocol.pop("drawing", None)
        with drawing(*how) if how else contextlib.nullcontext():
            res = evaluate(images, gt, config, seed=seed, label="object", curve_thresholds=(), overlays=0, **protocol)
        out.append({"records": res.records, "top_k": res.protocol["top_k"], "f1": res.metrics[0.5].f1})
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.pkl", "wb") as f:
        pickle.dump(out, f)
    return out


def load(name: str) -> list:
    path = CACHE / f"{name}.pkl"
    if not path.exists():
        raise SystemExit(f"no recording of {name!r} in {CACHE}: run `python scripts/dev_selection.py record {name}` first")
    with open(path, "rb") as f:
        return pickle.load(f)


def score(runs: list) -> tuple[float, float, float]:
    """``(F1, precision, recall)`` at IoU 0.5 of the current ``select.decide`` over ``runs``."""
    from sam_detect.eval.protocol import _score

    tp = fp = fn = 0
    for run in runs:
        m = _score(run["records"], None, run["top_k"], (0.5,))[0][0.5]
        tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
    return 2 * tp / max(2 * tp + fp + fn, 1), tp / max(tp + fp, 1), tp / max(tp + fn, 1)


def groups(runs: list) -> list[dict]:
    """Per whole-or-parts group: which is right by the ground truth, the parts' contact ratio
    and outline ratio (see the module's docstring)."""
    from sam_detect import select as sel
    from sam_detect.instances import NEGATIVE, UNKNOWN
    from sam_detect.profile import MIN_FIT, fit_and_shape_scores

    rows = []
    for run in runs:
        for rec in run["records"]:
            c = rec.candidates
            if c is None or not len(c) or not rec.iou.shape[1]:
                continue
            d = sel.decide(c, rec.neighbours, threshold=None, top_k=run["top_k"], profile=rec.profile,
                           decision=rec.decision)
            shape_fit = fit_and_shape_scores(c, d.labels, rec.profile)[1]
            idx = np.flatnonzero([lab not in (NEGATIVE, UNKNOWN) for lab in d.labels] & (d.fit >= MIN_FIT))
            sub, best = c[idx], rec.iou[idx].max(axis=1)
            edge = sub.data.get("edge")
            areas = sub.areas.astype(np.float64)
            for big, inside in sel.covering_parts(sub).items():
                if shape_fit[idx[big]] < sel.WHOLE_SHAPE_FIT:
                    continue
                rows.append({
                    "whole": bool(best[big] >= 0.5), "parts": bool((best[inside] >= 0.5).all()),
                    "contact": sel.contact_ratio(sub, big, inside),
                    "edge": np.nan if edge is None else float(np.average(np.asarray(edge)[inside], weights=areas[inside])
                                                              / max(float(edge[big]), 1e-9))})
    return rows


def cached() -> list[str]:
    return sorted(p.stem for p in CACHE.glob("*.pkl"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("record", "score", "groups"))
    ap.add_argument("names", nargs="*")
    ap.add_argument("--embedder", default="views")
    args = ap.parse_args()
    if args.what == "record":
        for name in args.names:
            runs = record(name, args.embedder)
            print(name, "pipeline F1", [round(r["f1"], 4) for r in runs], flush=True)
        return
    if args.what == "groups":
        for name in args.names or cached():
            rows = groups(load(name))
            for who in ("whole", "parts"):
                sel = [r for r in rows if r[who] and not r["whole" if who == "parts" else "parts"]]
                q = {k: np.round(np.nanpercentile([r[k] for r in sel], [25, 50, 75]), 2).tolist() if sel else "-"
                     for k in ("contact", "edge")}
                print(f"{name:16s} {who} right: {len(sel):4d} groups, contact ratio {q['contact']}, "
                      f"outline ratio {q['edge']}", flush=True)
        return
    for name in args.names or cached():
        f1, p, r = score(load(name))
        print(f"{name:16s} F1 {f1:.4f}  P {p:.4f}  R {r:.4f}", flush=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
