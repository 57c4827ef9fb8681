"""The few-shot evaluation protocol.

From an annotated image set: draw ``shots`` ground-truth objects per class (``seed``) from
the example images, add them to a temporary library, detect on the images, and match the
predictions one-to-one by IoU to the *remaining* ground truth (the drawn examples count
neither way, nor do predictions matching them).

One detection pass serves every similarity threshold: the candidates' k-NN neighbours are
recorded as the pipeline searches, and the pipeline's own vote
(:func:`sam_detect.classify.vote_batch`) is re-run offline at other thresholds. The
result at the configured threshold is checked against what ``SAMDetect.detect`` returned.

Example::

    from sam_detect import DetectorConfig
    from sam_detect.eval import evaluate
    res = evaluate(["f0.tif", "f1.tif"], ["f0_labels.tif", "f1_labels.tif"],
                   DetectorConfig(segmenter="classical", embedder="effnet"), shots=10, label="nucleus")
    print(res.table()); res.metrics[0.5].f1
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sam_detect._heavy import heavy
from sam_detect.errors import AnnotationError
from sam_detect.eval.inputs import (
    ImageRef,
    draw_examples,
    gt_instances,
    image_indices,
    image_name,
    labels_of_gt,
    load_eval_image,
)
from sam_detect.eval.metrics import (
    DEFAULT_IOU_THRESHOLDS,
    Metrics,
    MetricsAccumulator,
    instances_iou,
)
from sam_detect.eval.recording import RecordingSegmenter, RecordingStore, temp_store
from sam_detect.formats.label_image import UNTYPED
from sam_detect.instances import NEGATIVE, UNKNOWN, Instances

log = logging.getLogger("sam_detect.eval")

DEFAULT_CURVE = tuple(round(float(t), 2) for t in np.arange(0.0, 1.0001, 0.05))
STAGES = ("segment", "crop", "embed", "search", "select", "total")  # the order they are reported in


# ----------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------
@dataclass
class _ImageRecord:
    """What one detection image contributes, compact enough to keep for every image."""

    name: str
    iou: np.ndarray  # (C, G) float32: every candidate against all ground truth
    neighbours: list  # per candidate, list[Neighbour] as the store returned them
    gt_labels: np.ndarray  # (G,) object
    ignore: np.ndarray  # (G,) bool: drawn as examples
    timings: dict[str, float]
    out_iou: np.ndarray  # (D, G) float32: what SAMDetect.detect returned, against the ground truth
    out_labels: list[str]  # (D,) labels detect() gave
    candidates: Instances | None = None  # (C,) what was embedded: the selection re-runs on them
    profile: dict | None = None  # the library's proposal profile during detection
    decision: dict | None = None  # the library's decision settings (sam_detect.calibrate)
    # the library's examples of this very image that detect() returned as drawn
    # (``DetectorConfig.keep_examples``), before the candidates it kept: (E, G) and (E,)
    known_iou: np.ndarray | None = None
    known_labels: tuple[str, ...] = ()
    # what each candidate's class is voted by where the classes were found as one
    # (select.Typing): re-voted at each threshold, as detect() would type at it
    typing: Any = None
    # the geometry eval's error breakdown reads (sam_detect.eval.errors): which returned
    # objects and which ground-truth objects the image border cuts, and their areas
    out_cut: np.ndarray | None = None  # (D,) bool
    out_area: np.ndarray | None = None  # (D,) float
    gt_cut: np.ndarray | None = None  # (G,) bool
    gt_area: np.ndarray | None = None  # (G,) float
    # the candidates dropped before the vote (``SAMDetect.keep_dropped``): per ground-truth
    # object, the best IoU among them and why that one was dropped (profile.DROP_REASONS,
    # "unlabelled", "example", "border"; "" where none overlaps it)
    dropped_best: np.ndarray | None = None  # (G,) float32
    dropped_why: np.ndarray | None = None  # (G,) object

    def returned(self, idx: np.ndarray, labels: list[str]) -> tuple[np.ndarray, list[str]]:
        """What detect() returns when the selection keeps candidates ``idx`` labelled
        ``labels``: the examples it returns as drawn first, then those; ``(IoU (D, G), labels)``."""
        if self.known_iou is None or not len(self.known_iou):
            return self.iou[idx], list(labels)
        return np.concatenate([self.known_iou, self.iou[idx]]), list(self.known_labels) + list(labels)


@dataclass
class EvalResult:
    """Outcome of :func:`evaluate`. ``metrics`` at the configured threshold (``None``: each
    class's calibrated one); ``curve`` at many one-for-all thresholds."""

    metrics: Metrics
    threshold: float | None
    config: dict[str, Any]
    protocol: dict[str, Any]
    examples: dict[str, int]
    curve: list[dict[str, float]]
    timings: dict[str, dict[str, float]]
    per_image: list[dict[str, Any]]
    n_candidates: int
    wall_s: float
    candidate_recall: dict[str, float] = field(default_factory=dict)
    consistent: bool = True
    overlays: list[tuple[str, np.ndarray]] = field(default_factory=list, repr=False)
    records: list[_ImageRecord] = field(default_factory=list, repr=False)
    #: where the false and missed objects are at the main IoU (:mod:`sam_detect.eval.errors`);
    #: ``None`` for a result re-scored at another threshold
    errors: dict[str, Any] | None = None

    @property
    def main_iou(self) -> float:
        """The IoU threshold the per-image figures and the curve use (0.5 if computed)."""
        return _main_iou(self.metrics.thresholds)

    def metrics_at(self, threshold: float) -> Metrics:
        """Metrics as if the similarity threshold had been ``threshold`` (same detection pass)."""
        return _score(self.records, threshold, self.protocol["top_k"], self.metrics.thresholds)[0]

    def at_threshold(self, threshold: float) -> EvalResult:
        """This result re-scored at another similarity threshold by re-voting the recorded
        neighbours (exact when :attr:`consistent`); timings and the curve are shared."""
        metrics, matches, _ = _score(
            self.records, threshold, self.protocol["top_k"], self.metrics.thresholds
        )
        return dataclasses.replace(
            self,
            metrics=metrics,
            threshold=float(threshold),
            config={**self.config, "threshold": float(threshold)},
            per_image=_per_image(self.records, matches, self.main_iou),
            overlays=[],
            errors=None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": self.metrics.to_dict(),
            "threshold": self.threshold,
            "config": self.config,
            "protocol": self.protocol,
            "examples": self.examples,
            "curve": self.curve,
            "timings": self.timings,
            "per_image": self.per_image,
            "n_candidates": self.n_candidates,
            "candidate_recall": self.candidate_recall,
            "wall_s": round(self.wall_s, 3),
            "consistent_with_detect": self.consistent,
            "errors": self.errors,
        }

    def table(self) -> str:
        from sam_detect.eval.report import format_table

        return format_table(self)


def _main_iou(thresholds: Sequence[float]) -> float:
    ts = sorted(thresholds)
    return 0.5 if any(abs(t - 0.5) < 1e-9 for t in ts) else ts[-1]


# ----------------------------------------------------------------------------------------
# scoring from records
# ----------------------------------------------------------------------------------------
def _vote(
    records: Sequence[_ImageRecord], threshold: float | None, top_k: int
) -> list[tuple[np.ndarray, list[str]]]:
    """Per image: (kept candidate indices, their labels), as ``SAMDetect.detect`` decides."""
    from sam_detect.classify import vote_batch
    from sam_detect.select import decide

    out = []
    for rec in records:
        if rec.candidates is not None:
            d = decide(rec.candidates, rec.neighbours if len(rec.candidates) else [],
                       threshold=threshold, top_k=top_k, profile=rec.profile, decision=rec.decision,
                       types=rec.typing.vote(rec.candidates, top_k, threshold) if rec.typing is not None else None)
            out.append((d.keep, [d.labels[i] for i in d.keep]))
            continue
        labels, _, _ = (
            vote_batch(rec.neighbours, threshold=threshold, top_k=top_k)
            if rec.neighbours
            else ([], 0, 0)
        )
        keep = np.array([lab not in (NEGATIVE, UNKNOWN) for lab in labels], dtype=bool)
        idx = np.flatnonzero(keep)
        out.append((idx, [labels[i] for i in idx]))
    return out


def _score(
    records: Sequence[_ImageRecord], threshold: float | None, top_k: int, iou_thresholds: Sequence[float]
) -> tuple[Metrics, list[dict[float, Any]], list[tuple[np.ndarray, list[str]]]]:
    acc = MetricsAccumulator(iou_thresholds)
    votes = _vote(records, threshold, top_k)
    matches = []
    for rec, (idx, labels) in zip(records, votes, strict=True):
        matches.append(acc.add_matrix(*rec.returned(idx, labels), rec.gt_labels, rec.ignore))
    return acc.result(), matches, votes


def _curve(
    records: Sequence[_ImageRecord], thresholds: Sequence[float], top_k: int, iou: float
) -> list[dict]:
    rows = []
    for t in thresholds:
        c = _score(records, float(t), top_k, (iou,))[0][iou]
        rows.append(
            {
                "threshold": float(t),
                "precision": round(c.precision, 6),
                "recall": round(c.recall, 6),
                "f1": round(c.f1, 6),
                "tp": c.tp,
                "fp": c.fp,
                "fn": c.fn,
            }
        )
    return rows


# ----------------------------------------------------------------------------------------
# the protocol
# ----------------------------------------------------------------------------------------
def _dropped_at(dropped: list | None, gt: Instances) -> dict[str, np.ndarray]:
    """``dropped_best`` and ``dropped_why`` of a record (see :class:`_ImageRecord`) from what
    ``detect`` dropped before the vote (``SAMDetect._last_dropped``: ``[(candidates, reasons)]``);
    nothing where it kept no such list."""
    if dropped is None:
        return {}
    best = np.zeros(len(gt), np.float32)
    why = np.full(len(gt), "", dtype=object)
    for cands, reasons in dropped:
        if not len(cands) or not len(gt):
            continue
        iou = instances_iou(cands, gt)
        top = iou.argmax(axis=0)
        better = iou[top, np.arange(len(gt))] > best
        best[better] = iou[top[better], np.flatnonzero(better)]
        why[better] = np.asarray(reasons, object)[top[better]]
    return {"dropped_best": best, "dropped_why": why}


@heavy  # its adds and detects share one set-up: the images reuse one another's freed memory
def evaluate(
    images: Sequence[Any],
    gt: Sequence[Any],
    config: Any = None,
    *,
    shots: int = 10,
    seed: int = 0,
    iou: Sequence[float] = DEFAULT_IOU_THRESHOLDS,
    label: str | None = None,
    examples_from: Sequence[int] | None = None,
    detect_on: Sequence[int] | None = None,
    segmenter: Any = None,
    embedder: Any = None,
    curve_thresholds: Sequence[float] = DEFAULT_CURVE,
    overlays: int = 1,
    progress: bool = False,
    score_examples: bool = False,
) -> EvalResult:
    """Run the few-shot protocol and measure accuracy and stage timings.

    Args:
        images: per image, a path, an :class:`ImageRef` (file + frame/channel, loaded on
            demand), a ``LoadedImage`` or an array of any dtype.
        gt: per image, its ground truth: ``Instances`` (masks and class-name labels) or an
            ``(H, W)`` integer label image (0 = background; labelled ``label``).
        config: a :class:`~sam_detect.pipeline.DetectorConfig`; its ``store`` kind is used
            for a temporary library (``qdrant``/``edge``: a temporary folder; a Qdrant
            server URL: a uniquely named library, deleted afterwards), its ``library`` name
            is not. Default: ``DetectorConfig()`` (auto models, embedded Qdrant).
        shots: examples drawn per class; ``seed`` seeds the draw.
        iou: IoU thresholds for matching, each in (0, 1].
        label: class name for every ground-truth object (overrides the annotation's).
        examples_from: indices of the images examples are drawn from (default: all).
        detect_on: indices of the images detected on and scored (default: all).
        segmenter, embedder: ready-made stage objects to use instead of building them from
            ``config`` (sweeps reuse them; tests pass small fakes).
        curve_thresholds: similarity thresholds for the precision/recall curve.
        overlays: how many detection images get a TP/miss/FP overlay kept for the report.
        progress: show a progress bar on stderr.
        score_examples: score the drawn examples like any other object instead of ignoring
            them. Optimistic (the library holds those very objects); only for sets where
            every class has a single object, so nothing else would be left to score.

    Returns:
        :class:`EvalResult`.

    Raises:
        ValueError: inconsistent arguments (counts, indices, thresholds).
        AnnotationError: unusable ground truth (no objects to draw examples from...).
    """
    from sam_detect.pipeline import DetectorConfig, SAMDetect
    from sam_detect.profile import cut_by_border, size_filter

    t_start = time.perf_counter()
    if len(images) != len(gt):
        raise ValueError(f"{len(images)} images but ground truth for {len(gt)}")
    if not images:
        raise ValueError("no images to evaluate")
    config = config or DetectorConfig()
    iou = tuple(sorted({float(t) for t in iou}))
    for t in iou:
        if not 0 < t <= 1:
            raise ValueError(f"IoU thresholds must be in (0, 1], got {t}")
    n = len(images)
    names = [image_name(im, i) for i, im in enumerate(images)]
    ex_images = image_indices(examples_from, n, "examples_from")
    det_images = image_indices(detect_on, n, "detect_on")
    labels_per_image = [
        labels_of_gt(gt[i], label, names[i]) if i in ex_images else [] for i in range(n)
    ]
    drawn = draw_examples(labels_per_image, shots, seed, ex_images)
    if not drawn:
        raise AnnotationError("the example images hold no annotated objects to draw examples from")
    if not score_examples and all(i in drawn and len(drawn[i]) == len(labels_per_image[i]) for i in det_images):
        for i in det_images:  # ground truth made for another image says so first: that is the mistake
            _check_hw(gt_instances(gt[i], label, names[i]), load_eval_image(images[i]).rgb.shape[:2], names[i])
        raise AnnotationError(
            f"nothing left to score: every annotated object of the scored image(s) was drawn as an example "
            f"({shots} per class); draw fewer (--shots) or score other images")

    library = f"eval-{uuid.uuid4().hex[:8]}"
    store, cleanup, store_desc = temp_store(config, library)
    # examples scored like any other object are found like any other, not returned as drawn
    run_config = dataclasses.replace(config, library=library, keep_unknown=False,
                                     keep_examples=config.keep_examples and not score_examples)
    rec_store = RecordingStore(store)
    # Resolve the stages ("auto" included) once, then hand the pipeline a watched segmenter.
    probe = SAMDetect(run_config, segmenter=segmenter, embedder=embedder, store=rec_store)
    rec_seg = RecordingSegmenter(probe.segmenter)
    det = SAMDetect(run_config, segmenter=rec_seg, embedder=probe.embedder, store=rec_store)
    det.choices.update(probe.choices)
    det.keep_dropped = True  # where the missed objects' candidates went (eval.errors)
    examples: dict[str, int] = {}
    drawn_objects: list[dict[str, Any]] = []
    profile_lines: list[str] = []
    records: list[_ImageRecord] = []
    untyped = 0  # scored images' objects of no type (eval --types): not scored
    kept_overlays: list[tuple[str, np.ndarray, Instances, Instances, np.ndarray]] = []
    try:
        # 1. examples
        for i, idx in drawn.items():
            loaded = load_eval_image(images[i])
            g = gt_instances(gt[i], label, names[i])
            _check_hw(g, loaded.rgb.shape[:2], names[i])
            chosen = g[idx]
            # the example image's whole ground truth says whether it leaves out the objects the
            # border cuts; not where that image is scored too: its ground truth is what is scored
            det.add_examples(loaded, chosen, annotation=None if i in det_images else g)
            for lab in chosen.labels:
                examples[str(lab)] = examples.get(str(lab), 0) + 1
            # which objects were drawn, so that a draw that does badly can be looked at: their
            # places (0-based, in the ground truth's order) and their own ids, which a user finds
            # them by (a label image's values: places 12, 15, 19 are objects 13, 16, 20 there)
            source = chosen.data.get("source_id")
            drawn_objects.append({"image": names[i], "objects": [int(k) for k in idx],
                                  "source_ids": None if source is None else [int(v) for v in source],
                                  "areas": [int(a) for a in chosen.areas]})
        from sam_detect.profile import describe

        profile_lines = describe(det.profile) if config.profile else []
        if profile_lines:  # where the examples' annotation leaves the border out and detect follows it
            from sam_detect.unlabelled import describe as describe_unlabelled

            profile_lines += describe_unlabelled(None, None, det.border_followed)
        # 2. detection
        it = det_images
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(det_images, desc="detecting", unit="image")
        for i in it:
            loaded = load_eval_image(images[i])
            g = gt_instances(gt[i], label, names[i])
            _check_hw(g, loaded.rgb.shape[:2], names[i])
            ignore = np.array([str(lab) == UNTYPED for lab in g.labels], bool)  # of no type: not scored
            untyped += int(ignore.sum())
            if i in drawn and not score_examples:
                ignore[drawn[i]] = True
            rec_seg.last, rec_store.last = None, None
            out = det.detect(loaded)
            profile = det.profile
            decided = getattr(det, "_last_decided", None)
            decision, typing = det.decision, None
            dropped = getattr(det, "_last_dropped", None) if decided is not None else None
            # where detect() left the image's padding out, what it proposed and decided on lies
            # inside it, and the padding's edge cuts objects as the image's border does
            padding = getattr(det, "_last_padding", None) or (0, 0, 0, 0)
            top, bottom, left, right = padding
            inside_hw = (g.image_hw[0] - top - bottom, g.image_hw[1] - left - right)

            def placed(inst: Any, left=left, top=top, hw=g.image_hw, padded=any(padding)) -> Any:
                return inst.placed(left, top, hw) if padded and inst is not None else inst

            def cut(inst: Instances, left=left, top=top, hw=inside_hw) -> np.ndarray:
                return cut_by_border(inst.boxes - np.array([left, top, left, top]), hw)

            if decided is not None:  # exactly what detect() decided on, with the image's profile
                cands, neighbours, profile = decided[0], list(decided[1]), decided[2]
                known, decision, typing = decided[3:6]
            else:
                cands = rec_seg.last if rec_seg.last is not None else Instances.empty(g.image_hw)
                cands = size_filter(cands, profile)[0]  # what detect() embedded
                neighbours = rec_store.last if (rec_store.last is not None and len(cands)) else []
                known = None
            records.append(
                _ImageRecord(
                    name=names[i],
                    iou=instances_iou(placed(cands), g).astype(np.float32),
                    neighbours=list(neighbours),
                    gt_labels=np.asarray(g.labels, dtype=object),
                    ignore=ignore,
                    timings=dict(out.metadata.get("timings", {})),
                    out_iou=instances_iou(out, g).astype(np.float32),
                    out_labels=[str(lab) for lab in out.labels],
                    candidates=cands,
                    profile=profile,
                    decision=decision,
                    typing=typing,
                    known_iou=None if known is None or not len(known) else instances_iou(placed(known), g).astype(np.float32),
                    known_labels=() if known is None else tuple(str(lab) for lab in known.labels),
                    out_cut=cut(out), out_area=out.areas.astype(np.float64),
                    gt_cut=cut(g), gt_area=g.areas.astype(np.float64),
                    **_dropped_at(None if dropped is None else [(placed(c), why) for c, why in dropped], g),
                )
            )
            if len(kept_overlays) < overlays:
                kept_overlays.append((names[i], loaded.rgb, out, g, ignore))
            del cands, g, out
    finally:
        det.close()
        cleanup()

    top_k = int(run_config.top_k)
    # Headline figures: what detect() returned. The re-vote must reproduce it exactly for
    # the threshold curve (and threshold sweeps) to be trusted.
    acc = MetricsAccumulator(iou)
    matches = [acc.add_matrix(r.out_iou, r.out_labels, r.gt_labels, r.ignore) for r in records]
    metrics = acc.result()
    configured = None if run_config.threshold is None else float(run_config.threshold)
    votes = _vote(records, configured, top_k)
    consistent = all(
        labels == rec.out_labels and np.allclose(iou, rec.out_iou)
        for rec, (iou, labels) in ((r, r.returned(*v)) for r, v in zip(records, votes, strict=True))
    )
    if not consistent:
        log.warning(
            "re-voting the recorded neighbours did not reproduce detect()'s output; "
            "the threshold curve and sweeps may be approximate"
        )
    from sam_detect.eval.errors import error_breakdown

    main = _main_iou(iou)
    per_image = _per_image(records, matches, main)
    result = EvalResult(
        metrics=metrics,
        threshold=configured,
        config=_config_dict(run_config, det, store_desc),
        protocol={
            "shots": shots,
            "seed": seed,
            "iou": list(iou),
            "label": label,
            "top_k": top_k,
            "examples_from": ex_images,
            "detect_on": det_images,
            "score_examples": score_examples,
            "images": names,
            "untyped": untyped,
            # per image: the annotation's objects drawn (places, 0-based; and source_ids: label
            # values, COCO annotation ids, data["source_id"]; None where the ground truth has none), areas
            "drawn": drawn_objects,
            "profile": profile_lines,  # what the examples made of the proposals (library show's lines)
        },
        candidate_recall=_candidate_recall(records, iou),
        examples=examples,
        curve=_curve(records, curve_thresholds, top_k, main) if curve_thresholds else [],
        timings=_timing_summary([r.timings for r in records]),
        per_image=per_image,
        n_candidates=int(sum(r.iou.shape[0] for r in records)),
        wall_s=time.perf_counter() - t_start,
        consistent=consistent,
        records=records,
        errors=error_breakdown(records, matches, main),
    )
    from sam_detect.eval.report import render_match_overlay

    for name, rgb, out, g, ignore in kept_overlays:
        acc = MetricsAccumulator((main,))
        m = acc.add(out, g, ignore)[main]
        result.overlays.append((name, render_match_overlay(rgb, out, g, m, ignore)))
    return result


def _per_image(
    records: Sequence[_ImageRecord], matches: Sequence[dict], main: float
) -> list[dict[str, Any]]:
    rows = []
    for rec, m in zip(records, matches, strict=True):
        im = m[main]
        tp, fp, fn = len(im.tp_pred), len(im.fp_pred), len(im.fn_gt)
        rows.append(
            {
                "image": rec.name,
                "gt": int((~rec.ignore).sum()),
                "examples": int(rec.ignore.sum()),
                "candidates": int(rec.iou.shape[0]),
                "detected": int(len(im.tp_pred) + len(im.fp_pred) + len(im.ignored_pred)),
                "tp": tp,
                "fp": fp,
                "fn": fn,
                "f1": round(2 * tp / (2 * tp + fp + fn), 6) if tp + fp + fn else 0.0,
            }
        )
    return rows


def _candidate_recall(records: Sequence[_ImageRecord], iou: Sequence[float]) -> dict[str, float]:
    """Recall if every segmenter candidate were labelled right: the segmenter's ceiling. The
    library's examples returned as drawn on their own image count as candidates (they are not
    embedded: the ceiling read 0.000 beside a recall of 0.875 on such an image)."""
    out = {}
    for t in iou:
        acc = MetricsAccumulator((t,))
        for r in records:
            m, _ = r.returned(np.arange(r.iou.shape[0]), [])  # every candidate kept
            acc.add_matrix(m, [None] * m.shape[0], [None] * m.shape[1], r.ignore)
        out[f"{t:g}"] = round(acc.result().at(t).detection.recall, 6)
    return out


def _check_hw(gt: Instances, hw: tuple[int, int], name: str) -> None:
    if len(gt) and gt.image_hw != tuple(hw):
        raise AnnotationError(
            f"ground truth of {name} is {gt.image_hw[0]}x{gt.image_hw[1]} (HxW) but the image is "
            f"{hw[0]}x{hw[1]}; give the annotations made for this image"
        )


def _timing_summary(timings: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    keys = {k for t in timings for k in t}
    # the known stages in order, any others after them, the whole call's time last
    stages = [s for s in STAGES[:-1] if s in keys] + sorted(keys - set(STAGES))
    stages += [s for s in STAGES[-1:] if s in keys]
    for s in stages:
        vals = np.array([t[s] for t in timings if s in t], dtype=np.float64)
        out[s] = {
            "median_s": round(float(np.median(vals)), 6),
            "mean_s": round(float(vals.mean()), 6),
            "total_s": round(float(vals.sum()), 6),
            "n": int(len(vals)),
        }
    return out


def _config_dict(config: Any, det: Any, store_desc: str) -> dict[str, Any]:
    d = dataclasses.asdict(config)
    d["store_options"] = {k: v for k, v in d.get("store_options", {}).items() if k != "api_key"}
    d.pop("library", None)
    d["store"] = store_desc
    d["choices"] = dict(getattr(det, "choices", {}))
    return d


__all__ = ["EvalResult", "ImageRef", "draw_examples", "evaluate"]


# ----------------------------------------------------------------------------------------
# what the examples add
# ----------------------------------------------------------------------------------------
@dataclass
class ExamplesWorth:
    """The same protocol three ways: what the examples add over the segmenter alone.

    ``segmenter_alone``: every candidate of the segmenter's own settings accepted (matched
    class-agnostically: the segmenter names no classes); ``without_profile``: the k-NN vote
    on those candidates; ``full``: the profile calibrates, filters and selects too.
    """

    segmenter_alone: Metrics
    without_profile: EvalResult
    full: EvalResult

    def rows(self, iou: float | None = None) -> list[tuple[str, Any]]:
        iou = self.full.main_iou if iou is None else iou
        return [
            ("segmenter alone (every candidate accepted)", self.segmenter_alone[iou]),
            ("pipeline without the profile (k-NN vote)", self.without_profile.metrics[iou]),
            ("full pipeline (profile + vote + selection)", self.full.metrics[iou]),
        ]

    def table(self) -> str:
        iou = self.full.main_iou
        lines = [f"what the examples add (IoU {iou:g}):", f"{'':46}precision  recall      F1"]
        for name, c in self.rows(iou):
            lines.append(f"  {name:44}{c.precision:9.3f}{c.recall:8.3f}{c.f1:8.3f}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "segmenter_alone": self.segmenter_alone.to_dict(),
            "without_profile": self.without_profile.metrics.to_dict(),
            "full": self.full.metrics.to_dict(),
        }


def accept_all(result: EvalResult) -> Metrics:
    """Metrics of accepting every recorded candidate as an object (class-agnostic)."""
    acc = MetricsAccumulator(result.metrics.thresholds)
    for rec in result.records:
        n_pred, n_gt = rec.iou.shape
        acc.add_matrix(rec.iou, ["object"] * n_pred, ["object"] * n_gt, rec.ignore)
    return acc.result()


def examples_worth(images: Sequence[Any], gt: Sequence[Any], config: Any = None, **protocol: Any) -> ExamplesWorth:
    """Run :func:`evaluate` with and without the profile (same examples, same seed) and
    score the segmenter alone from the run without it."""
    from sam_detect.pipeline import DetectorConfig

    config = config or DetectorConfig()
    full = evaluate(images, gt, dataclasses.replace(config, profile=True), **protocol)
    protocol = {**protocol, "progress": False}
    # the baselines use no example beyond the vote: none returned as drawn, no candidate left
    # out for overlapping one (what the segmenter alone proposes on the examples' own image)
    plain = evaluate(images, gt, dataclasses.replace(config, profile=False, keep_examples=False), **protocol)
    return ExamplesWorth(segmenter_alone=accept_all(plain), without_profile=plain, full=full)
