"""Sweep one setting through the few-shot protocol.

``parse_sweep("threshold=0.3:0.9:0.1")`` gives ``("threshold", [0.3, 0.4, ..., 0.9])``
(ranges include their end); ``parse_sweep("sigma=10,30,50")`` a list. Sweepable settings:

- ``threshold`` (similarity), ``top_k``, ``occupancy``, ``fade``, ``embedder``, ``segmenter``
- fade parameters ``sigma``, ``min_fade``, ``max_distance``, ``decay``
- protocol settings ``shots`` and ``seed``
- any segmenter or embedder option as ``segmenter.NAME`` / ``embedder.NAME``
  (e.g. ``segmenter.points_per_side=16,32,64``, ``embedder.model=ViT-B-32,ViT-L-14``)

Work is shared between the runs where the result cannot change: a threshold sweep is one
detection pass re-voted at each value (the pipeline's own vote, checked against its
output); sweeps that keep the segmenter reuse its masks; sweeps that keep the embedder
reuse the loaded model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sam_detect.instances import Instances

CONFIG_PARAMS: dict[str, type] = {
    "threshold": float,
    "top_k": int,
    "occupancy": float,
    "fade": str,
    "embedder": str,
    "segmenter": str,
}
FADE_PARAMS: dict[str, type] = {
    "sigma": float,
    "min_fade": float,
    "max_distance": float,
    "decay": float,
}
PROTOCOL_PARAMS: dict[str, type] = {"shots": int, "seed": int}
OPTION_PREFIXES = ("segmenter.", "embedder.")


def sweepable() -> list[str]:
    """Names accepted by :func:`parse_sweep` (plus ``segmenter.*`` and ``embedder.*``)."""
    return [*CONFIG_PARAMS, *FADE_PARAMS, *PROTOCOL_PARAMS, "segmenter.NAME", "embedder.NAME"]


def _auto_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _param_type(param: str) -> type | None:
    for table in (CONFIG_PARAMS, FADE_PARAMS, PROTOCOL_PARAMS):
        if param in table:
            return table[param]
    return None


def parse_sweep(spec: str) -> tuple[str, list[Any]]:
    """``"NAME=START:STOP:STEP"`` or ``"NAME=V1,V2,..."`` -> ``(name, values)``.

    Raises:
        ValueError: unknown name, malformed range or list, a value of the wrong type.
    """
    if "=" not in spec:
        raise ValueError(f"a sweep looks like NAME=START:STOP:STEP or NAME=V1,V2 (got {spec!r})")
    param, _, rhs = spec.partition("=")
    param, rhs = param.strip().replace("-", "_"), rhs.strip()
    kind = _param_type(param)
    generic = param.startswith(OPTION_PREFIXES) and len(param.split(".", 1)[1]) > 0
    if kind is None and not generic:
        raise ValueError(f"cannot sweep {param!r}; sweepable: {', '.join(sweepable())}")
    if not rhs:
        raise ValueError(f"sweep {param!r} has no values")
    if ":" in rhs:
        if kind is str:
            raise ValueError(f"{param} takes a list of names (NAME=a,b), not a range")
        parts = rhs.split(":")
        if len(parts) != 3:
            raise ValueError(f"a range is START:STOP:STEP, got {rhs!r}")
        try:
            start, stop, step = (float(p) for p in parts)
        except ValueError:
            raise ValueError(f"range {rhs!r} must hold numbers") from None
        if step <= 0 or stop < start:
            raise ValueError(f"range {rhs!r} needs STEP > 0 and STOP >= START")
        n = int(math.floor((stop - start) / step + 1e-9)) + 1
        if n > 200:
            raise ValueError(f"range {rhs!r} gives {n} values; use at most 200")
        values: list[Any] = [round(start + i * step, 10) for i in range(n)]
        if kind is int or (
            kind is None and all(float(v).is_integer() for v in (start, stop, step))
        ):
            values = [int(round(v)) for v in values]
    else:
        raw = [v.strip() for v in rhs.split(",") if v.strip()]
        if kind is None:
            values = [_auto_value(v) for v in raw]
        else:
            try:
                values = [kind(v) if kind is not int else int(float(v)) for v in raw]
            except ValueError:
                raise ValueError(f"{param} takes {kind.__name__} values, got {rhs!r}") from None
    if not values:
        raise ValueError(f"sweep {param!r} has no values")
    return param, values


def apply_param(
    config: Any, protocol: dict[str, Any], param: str, value: Any
) -> tuple[Any, dict[str, Any]]:
    """A copy of ``(config, protocol kwargs)`` with ``param`` set to ``value``."""
    protocol = dict(protocol)
    if param in CONFIG_PARAMS:
        return dataclasses.replace(config, **{param: value}), protocol
    if param in FADE_PARAMS:
        return dataclasses.replace(
            config, fade_options={**config.fade_options, param: value}
        ), protocol
    if param in PROTOCOL_PARAMS:
        protocol[param] = value
        return config, protocol
    stage, key = param.split(".", 1)
    field = f"{stage}_options"
    return dataclasses.replace(config, **{field: {**getattr(config, field), key: value}}), protocol


# ----------------------------------------------------------------------------------------
# shared work
# ----------------------------------------------------------------------------------------
class CachingSegmenter:
    """Wraps a segmenter and remembers its proposals per image (by content hash).

    Masks are kept cropped to their boxes, so a cache of many large images stays small.
    Only for sweeps whose segmenter settings do not change.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._cache: dict[bytes, tuple] = {}
        self.hits = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def segment(self, image: np.ndarray, profile: dict | None = None) -> Instances:
        key = hashlib.blake2b(
            np.ascontiguousarray(image).tobytes(), digest_size=16
        ).digest() + bytes(str(image.shape), "ascii") + bytes(repr(profile), "utf-8")
        if key in self._cache:
            self.hits += 1
            return _unpack(self._cache[key])
        from sam_detect.segment.base import segment_with_profile

        out = segment_with_profile(self._inner, image, profile)
        self._cache[key] = _pack(out)
        return out

    def prompt(self, image: np.ndarray, box: Any = None, point: Any = None) -> Instances:
        return self._inner.prompt(image, box=box, point=point)


def _pack(inst: Instances) -> tuple:
    """The instances with their masks as box crops (copies): small to keep, even for big images."""
    crops = [c.copy() for c in inst.mask_crops]
    return (
        inst.image_hw,
        inst.mask_origins,
        crops,
        inst.boxes.copy(),
        inst.scores.copy(),
        inst.labels.copy(),
        inst.label_confidences.copy(),
        {k: (v.copy() if isinstance(v, np.ndarray) else list(v)) for k, v in inst.data.items()},
        dict(inst.metadata),
    )


def _unpack(packed: tuple) -> Instances:
    hw, origins, crops, boxes, scores, labels, conf, data, meta = packed
    return Instances.from_crops(
        [c.copy() for c in crops],
        origins,
        hw,
        boxes=boxes.copy(),
        scores=scores.copy(),
        labels=labels.copy(),
        label_confidences=conf.copy(),
        data={k: (v.copy() if isinstance(v, np.ndarray) else list(v)) for k, v in data.items()},
        metadata=dict(meta),
    )


# ----------------------------------------------------------------------------------------
# running a sweep
# ----------------------------------------------------------------------------------------
@dataclass
class SweepResult:
    """One :class:`~sam_detect.eval.protocol.EvalResult` per swept value."""

    param: str
    values: list[Any]
    results: list[Any]
    revoted: bool = False
    cached_segments: bool = False

    @property
    def numeric(self) -> bool:
        return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.values)

    def best(self, iou: float | None = None) -> tuple[Any, float] | None:
        """``(value, F1)`` of the best value at ``iou`` (default: the main IoU threshold)."""
        if not self.results:
            return None
        iou = self.results[0].main_iou if iou is None else iou
        f1 = [r.metrics[iou].f1 for r in self.results]
        k = int(np.argmax(f1))
        return self.values[k], f1[k]

    def to_dict(self) -> dict[str, Any]:
        best = self.best()
        return {
            "param": self.param,
            "values": list(self.values),
            "revoted": self.revoted,
            "cached_segments": self.cached_segments,
            "best": None if best is None else {"value": best[0], "f1": round(best[1], 6)},
            "results": [r.to_dict() for r in self.results],
        }

    def table(self) -> str:
        from sam_detect.eval.report import format_sweep_table

        return format_sweep_table(self)


def _build_stages(config: Any, need_segmenter: bool, need_embedder: bool) -> tuple[Any, Any]:
    """Resolve ``auto`` and build the stages once, with a throwaway in-memory store."""
    from sam_detect.pipeline import SAMDetect
    from sam_detect.store import create_store

    probe = SAMDetect(config, store=create_store("memory"))
    seg = probe.segmenter if need_segmenter else None
    emb = probe.embedder if need_embedder else None
    return seg, emb


def run_sweep(
    images: Sequence[Any],
    gt: Sequence[Any],
    config: Any,
    param: str,
    values: Sequence[Any],
    *,
    segmenter: Any = None,
    embedder: Any = None,
    progress: bool = False,
    **protocol: Any,
) -> SweepResult:
    """Run :func:`~sam_detect.eval.protocol.evaluate` once per value of ``param``.

    ``protocol`` holds the other :func:`evaluate` keywords (``shots``, ``seed``, ``iou``,
    ``label``, ``examples_from``, ``detect_on``...). ``segmenter`` / ``embedder`` objects,
    when given, are used for every value that does not change them.
    """
    from sam_detect.eval.protocol import evaluate
    from sam_detect.pipeline import DetectorConfig

    config = config or DetectorConfig()
    values = list(values)
    if not values:
        raise ValueError(f"sweep {param!r} has no values")
    if param == "threshold":
        from sam_detect.config import check

        for v in values:
            check("threshold", float(v))
        first = evaluate(
            images,
            gt,
            dataclasses.replace(config, threshold=float(values[0])),
            segmenter=segmenter,
            embedder=embedder,
            progress=progress,
            **protocol,
        )
        if first.consistent:
            results = [first]
            results.extend(first.at_threshold(float(v)) for v in values[1:])
            return SweepResult(param, values, results, revoted=True)
        # fall through: rerun every value
    changes_segmenter = param == "segmenter" or param.startswith("segmenter.")
    changes_embedder = param == "embedder" or param.startswith("embedder.")
    if segmenter is None and not changes_segmenter:
        segmenter, _ = _build_stages(config, True, False)
    if embedder is None and not changes_embedder:
        _, embedder = _build_stages(config, False, True)
    seg = CachingSegmenter(segmenter) if segmenter is not None and not changes_segmenter else None
    results = []
    for v in values:
        cfg, proto = apply_param(config, protocol, param, v)
        results.append(
            evaluate(
                images,
                gt,
                cfg,
                segmenter=seg if seg is not None else (None if changes_segmenter else segmenter),
                embedder=None if changes_embedder else embedder,
                progress=progress,
                **proto,
            )
        )
    return SweepResult(param, values, results, cached_segments=seg is not None and seg.hits > 0)


__all__ = [
    "CachingSegmenter",
    "SweepResult",
    "apply_param",
    "parse_sweep",
    "run_sweep",
    "sweepable",
]
