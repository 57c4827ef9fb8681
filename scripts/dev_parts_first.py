#!/usr/bin/env python
"""Session 7's "parts first" experiment on the development sets (not the default; not reported).

The mirror of ``select.wholes_first``: a candidate whose smaller alternatives cover it
(``PARTS_COVER``), stand out along their own outlines as it does (``SEPARATE_EDGE``) and fit
the class's profile better on average is ranked just below them. It aims at touching
nuclei that no-split settings agree on as one object (``dev_u2os``). Measured in session 7
(full pipeline F1, baseline first): dev_u2os 0.893 -> 0.911, dev_rpe1 0.927 -> 0.928,
dev_mnfinder 0.954 -> 0.956, dev_stroma 0.483 -> 0.464.

    python scripts/dev_parts_first.py                 # every development set, with the rule
    python scripts/dev_parts_first.py --off dev_u2os  # one set, without it
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def install() -> None:
    """Patch the rule into ``sam_detect.select`` (the profile fit is kept on the candidates)."""
    import sam_detect.profile as prof
    import sam_detect.select as sel

    fit_and_shape, wholes_first = prof.fit_and_shape_scores, sel.wholes_first

    def fit_kept(candidates, labels, profile):
        fit, shape_fit = fit_and_shape(candidates, labels, profile)
        candidates.data["_fit"] = np.asarray(fit, np.float64)
        return fit, shape_fit

    def parts_first(instances, scores, whole, pairs=None):
        scores = wholes_first(instances, scores, whole, pairs)
        fit, edge = instances.data.get("_fit"), instances.data.get("edge")
        if fit is None or edge is None:
            return scores
        fit, edge = np.asarray(fit, np.float64), np.asarray(edge, np.float64)
        areas = instances.areas.astype(np.float64)
        for big, inside in sel.covering_parts(instances, pairs).items():
            w = areas[inside]
            if (np.average(edge[inside], weights=w) >= sel.SEPARATE_EDGE * edge[big]
                    and np.average(fit[inside], weights=w) > fit[big]):
                scores[big] = min(scores[big], np.nextafter(scores[inside].min(), -np.inf))
        return scores

    prof.fit_and_shape_scores = fit_kept
    sel.wholes_first = parts_first


def main() -> None:
    import bench_data
    import bench_examples

    from sam_detect import DetectorConfig

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("datasets", nargs="*", default=bench_data.DEV)
    ap.add_argument("--off", action="store_true", help="without the rule (the baseline)")
    args = ap.parse_args()
    if not args.off:
        install()
    config = DetectorConfig(segmenter="classical", embedder="views", store="memory")
    for name in args.datasets:
        rows = bench_examples.protocol_dataset(name, config)["rows"]
        print(name, {k: round(v["f1"], 4) for k, v in rows.items()}, flush=True)


if __name__ == "__main__":
    main()
