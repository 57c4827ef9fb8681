"""Evaluation output: terminal tables, TP/miss/FP overlays and the PNG report.

Overlay colours: green = true positive (prediction outline), red = missed ground truth,
orange = false positive, blue = ground truth used as a few-shot example.
matplotlib is imported only by :func:`save_report`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sam_detect.instances import Instances

if TYPE_CHECKING:
    from sam_detect.eval.metrics import ImageMatch
    from sam_detect.eval.protocol import EvalResult
    from sam_detect.eval.sweep import SweepResult

TP_COLOR = (40, 220, 40)
FN_COLOR = (240, 40, 40)
FP_COLOR = (255, 160, 0)
EXAMPLE_COLOR = (60, 140, 255)


# ----------------------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------------------
def _fmt_row(cells: Sequence[Any], widths: Sequence[int]) -> str:
    out = []
    for c, w in zip(cells, widths, strict=True):
        s = f"{c:.3f}" if isinstance(c, float) else str(c)
        out.append(s.rjust(w) if w > 0 else s.ljust(-w))
    return "  ".join(out).rstrip()


def format_table(result: EvalResult) -> str:
    """A plain-text summary: headline figures per IoU, per class, confusion, timings."""
    m = result.metrics
    p = result.protocol
    ex = ", ".join(f"{k}: {v}" for k, v in sorted(result.examples.items()))
    lines = [
        f"few-shot eval: {m.n_images} image(s) scored, {p['shots']} shot(s)/class (seed {p['seed']}), "
        f"examples {ex}",
        f"{m.n_gt} ground-truth objects scored ({m.n_ignored_gt - p.get('untyped', 0)} used as examples"
        + (f", {p['untyped']} of no type" if p.get("untyped") else "") + ", not scored), "
        f"{m.n_pred} predictions"
        + (f" ({m.n_pred_on_ignored} on those, not scored)" if m.n_pred_on_ignored else "")
        + f" from {result.n_candidates} candidates, similarity threshold "
        + ("calibrated per class" if result.threshold is None else f"{result.threshold:g}"),
        "",
    ]
    widths = [-5, 9, 7, 6, 8, 6, 6, 6]
    lines.append(
        _fmt_row(["IoU", "precision", "recall", "F1", "mean IoU", "TP", "FP", "FN"], widths)
    )
    for t in m.thresholds:
        c = m[t]
        lines.append(
            _fmt_row([f"{t:g}", c.precision, c.recall, c.f1, c.mean_iou, c.tp, c.fp, c.fn], widths)
        )
    main = result.main_iou
    tm = m.at(main)
    classes = [k for k in tm.per_class if k]
    if len(classes) > 1:
        d = tm.detection
        lines += [
            "",
            f"class-agnostic detection at IoU {main:g}: precision {d.precision:.3f}, recall {d.recall:.3f}, "
            f"F1 {d.f1:.3f}; macro F1 over classes {tm.macro_f1:.3f}",
            "",
            f"per class at IoU {main:g}:",
        ]
        w = max(len(c) for c in classes) + 1
        cw = [-w, 9, 7, 6, 6, 6, 6]
        lines.append(_fmt_row(["class", "precision", "recall", "F1", "TP", "FP", "FN"], cw))
        for k in sorted(classes):
            c = tm.per_class[k]
            lines.append(_fmt_row([k, c.precision, c.recall, c.f1, c.tp, c.fp, c.fn], cw))
        lines += ["", f"confusion at IoU {main:g} (rows: ground truth; columns: predicted; objects paired "
                  "whatever their class, where the table above pairs them class by class: below IoU 0.5 one "
                  "object may overlap several, and the two pairings can differ):"]
        lines += format_confusion(tm.confusion.classes, tm.confusion.matrix).splitlines()
    if result.errors:
        from sam_detect.eval.errors import format_errors

        errs = format_errors(result.errors)
        lines += ["", *errs] if errs else []
    if result.candidate_recall:
        cr = ", ".join(f"{v:.3f} at IoU {k}" for k, v in result.candidate_recall.items())
        lines += ["", f"segmenter ceiling (recall if every candidate were labelled right): {cr}"]
    if result.timings:
        parts = [f"{k} {v['median_s']:.3f}" for k, v in result.timings.items()]
        lines += ["", "stage timings, median s per image: " + ", ".join(parts)]
    if not result.consistent:
        lines += [
            "",
            "warning: re-voting did not reproduce detect(); the threshold curve is approximate",
        ]
    return "\n".join(lines)


def format_confusion(classes: Sequence[str], matrix: np.ndarray) -> str:
    """The confusion matrix as text; last row ``(spurious)``, last column ``(missed)``."""
    rows = [*classes, "(spurious)"]
    cols = [*classes, "(missed)"]
    w0 = max(len(r) for r in rows) + 1
    w = max(max(len(c) for c in cols), 5)
    lines = [" " * w0 + "  ".join(c.rjust(w) for c in cols)]
    for r, vals in zip(rows, matrix, strict=True):
        lines.append(r.ljust(w0) + "  ".join(str(int(v)).rjust(w) for v in vals))
    return "\n".join(lines)


def format_sweep_table(sweep: SweepResult) -> str:
    """One row per swept value: headline figures at each IoU threshold and the run time."""
    ious = sweep.results[0].metrics.thresholds if sweep.results else []
    head = [sweep.param]
    for t in ious:
        head += [f"P@{t:g}", f"R@{t:g}", f"F1@{t:g}"]
    head += ["mIoU", "s/image"]
    widths = [-max(len(sweep.param), max((len(str(v)) for v in sweep.values), default=1)) - 1]
    widths += [7] * (3 * len(ious)) + [6, 8]
    lines = [_fmt_row(head, widths)]
    for v, r in zip(sweep.values, sweep.results, strict=True):
        row: list[Any] = [str(v)]
        for t in ious:
            c = r.metrics[t]
            row += [c.precision, c.recall, c.f1]
        row.append(r.metrics[r.main_iou].mean_iou)
        tot = r.timings.get("total", {}).get("median_s")
        row.append(
            "re-vote" if sweep.revoted and v != sweep.values[0] else (f"{tot:.2f}" if tot else "-")
        )
        lines.append(_fmt_row(row, widths))
    best = sweep.best()
    if best is not None:
        lines += [
            "",
            f"best F1@{sweep.results[0].main_iou:g}: {sweep.param}={best[0]} (F1 {best[1]:.3f})",
        ]
    if sweep.cached_segments:
        lines.append(
            "(segmentations were computed once and reused for later values: their s/image leaves "
            "segmenting out)"
        )
    if sweep.revoted:
        lines.append(
            f"({sweep.param} values after the first were scored by re-voting the same detection pass)"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------
# overlays
# ----------------------------------------------------------------------------------------
def _outline(
    out: np.ndarray, inst: Instances, i: int, color: tuple[int, int, int], thickness: int
) -> None:
    """Draw instance ``i``'s outline, traced on its box crop."""
    import cv2

    from sam_detect.masks import crop_contours

    m = inst.crop(i)
    contours = crop_contours(m.crop, m.origin, inst.image_hw, cv2.CHAIN_APPROX_SIMPLE)
    if contours:
        cv2.drawContours(out, contours, -1, color, thickness)


def render_match_overlay(
    rgb: np.ndarray,
    pred: Instances,
    gt: Instances,
    match: ImageMatch,
    ignore: np.ndarray | None = None,
    thickness: int | None = None,
) -> np.ndarray:
    """``(H, W, 3)`` uint8: TP predictions green, missed ground truth red, FPs orange,
    ground truth flagged in ``ignore`` ``(G,)`` bool (the few-shot examples) blue.

    ``rgb`` is ``(H, W, 3)`` uint8, a dim one brightened first
    (:func:`~sam_detect.outputs.for_display`); ``match`` indexes into ``pred`` and ``gt``. Masks
    are painted from their box crops: one ``(H, W)`` union per colour, never ``(N, H, W)``.
    """
    from sam_detect.outputs import for_display

    out = np.ascontiguousarray(for_display(np.asarray(rgb, dtype=np.uint8)).copy())
    if thickness is None:
        thickness = max(1, int(round(min(out.shape[:2]) / 400)))
    fill = out.astype(np.float32)
    groups = [
        (pred, np.asarray(match.tp_pred, np.int64), TP_COLOR),
        (gt, np.asarray(match.fn_gt, np.int64), FN_COLOR),
        (pred, np.asarray(match.fp_pred, np.int64), FP_COLOR),
    ]
    for inst, idx, color in groups:
        if len(idx):
            any_mask = np.zeros(out.shape[:2], dtype=bool)
            for i in idx:
                m = inst.crop(int(i))
                any_mask[m.slices] |= m.crop
            fill[any_mask] = fill[any_mask] * 0.7 + np.array(color, np.float32) * 0.3
    out = fill.astype(np.uint8)
    for inst, idx, color in groups:
        for i in idx:
            _outline(out, inst, int(i), color, thickness)
    for j in np.flatnonzero(
        np.zeros(len(gt), bool) if ignore is None else np.asarray(ignore, bool)
    ):
        _outline(out, gt, int(j), EXAMPLE_COLOR, thickness)
    return out


# ----------------------------------------------------------------------------------------
# PNG report
# ----------------------------------------------------------------------------------------
def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        from sam_detect.errors import SamDetectError

        raise SamDetectError("the PNG report needs matplotlib: pip install matplotlib") from e
    return plt


def save_report(result: EvalResult, path: str | Path, sweep: SweepResult | None = None) -> Path:
    """Write a PNG: TP/miss/FP overlay(s), precision/recall/F1 against the similarity
    threshold (or against the swept parameter), and per-class F1 with the confusion matrix
    when there are several classes."""
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    main = result.main_iou
    tm = result.metrics.at(main)
    multiclass = len(tm.per_class) > 1
    n_over = len(result.overlays)
    n_panels = n_over + 1 + (2 if multiclass else 0)
    cols = min(n_panels, 3)
    rows = int(np.ceil(n_panels / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(6.0 * cols, 5.0 * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n_panels:]:
        ax.axis("off")
    k = 0
    for name, img in result.overlays:
        ax = flat[k]
        k += 1
        ax.imshow(img)
        ax.set_title(f"{name}: TP green, missed red, FP orange", fontsize=9)
        ax.axis("off")
    ax = flat[k]
    k += 1
    if sweep is not None and sweep.numeric:
        xs = [float(v) for v in sweep.values]
        for key, style in (("precision", "-o"), ("recall", "-s"), ("f1", "-^")):
            ax.plot(xs, [getattr(r.metrics[main], key) for r in sweep.results], style, label=key)
        ax.set_xlabel(sweep.param)
        ax.set_title(f"sweep over {sweep.param} (IoU {main:g})", fontsize=10)
    elif sweep is not None:
        xs = np.arange(len(sweep.values))
        f1 = [r.metrics[main].f1 for r in sweep.results]
        ax.bar(xs, f1, color="#4a7")
        ax.set_xticks(xs, [str(v) for v in sweep.values], rotation=30)
        ax.set_ylabel("F1")
        ax.set_title(f"F1 per {sweep.param} (IoU {main:g})", fontsize=10)
    elif result.curve:
        xs = [r["threshold"] for r in result.curve]
        for key, style in (("precision", "-"), ("recall", "-"), ("f1", "-")):
            ax.plot(xs, [r[key] for r in result.curve], style, label=key)
        if result.threshold is not None:
            ax.axvline(
                result.threshold, color="gray", ls="--", lw=1, label=f"threshold {result.threshold:g}"
            )
        ax.set_xlabel("similarity threshold")
        ax.set_title(f"precision / recall vs threshold (IoU {main:g})", fontsize=10)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    if multiclass:
        ax = flat[k]
        k += 1
        names = sorted(tm.per_class)
        ax.barh(names, [tm.per_class[c].f1 for c in names], color="#58a")
        ax.set_xlim(0, 1)
        ax.set_title(f"F1 per class (IoU {main:g})", fontsize=10)
        ax.tick_params(axis="y", labelsize=7)
        ax = flat[k]
        cm = tm.confusion
        ax.imshow(cm.matrix, cmap="Blues")
        labels_r = [*cm.classes, "(spurious)"]
        labels_c = [*cm.classes, "(missed)"]
        ax.set_yticks(range(len(labels_r)), labels_r, fontsize=7)
        ax.set_xticks(range(len(labels_c)), labels_c, rotation=60, ha="right", fontsize=7)
        for (i, j), v in np.ndenumerate(cm.matrix):
            if v:
                dark = v > cm.matrix.max() / 2
                ax.text(
                    j,
                    i,
                    str(int(v)),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if dark else "black",
                )
        ax.set_title("confusion (rows: truth, cols: predicted)", fontsize=10)
    c = result.metrics[main]
    fig.suptitle(
        f"sam-detect eval: P {c.precision:.3f}  R {c.recall:.3f}  F1 {c.f1:.3f}  mean IoU {c.mean_iou:.3f} "
        f"at IoU {main:g}; {result.protocol['shots']} shot(s)/class",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = [
    "format_confusion",
    "format_sweep_table",
    "format_table",
    "render_match_overlay",
    "save_report",
]
