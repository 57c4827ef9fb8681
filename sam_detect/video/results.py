"""What the video loop hands on: a :class:`FrameResult` per frame (with its status) and
the :class:`StreamStats` counted while it runs."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sam_detect.instances import Instances
from sam_detect.video.frames import Frame

DETECTED, REUSED, SKIPPED, FAILED = "detected", "reused", "skipped", "failed"
PROPAGATED = "propagated"


@dataclass
class FrameResult:
    """The outcome for one frame.

    Attributes:
        frame: the :class:`~sam_detect.video.sources.Frame` (index, RGB, time).
        instances: the objects for this frame: detected on it (``"detected"``), or the
            latest detection carried over (``"reused"``: the frame barely changed;
            ``"skipped"``: ``every``/``max_fps`` left it out), or the latest detection's
            objects with masks moved onto this frame (``"propagated"``), or empty
            (``"failed"``). With tracking, ``data["track_id"]`` ``(N,)`` int64 and
            track-smoothed labels.
        status: ``"detected"``, ``"reused"``, ``"propagated"``, ``"skipped"`` or ``"failed"``.
        result_of: index of the frame the instances were detected on (``None``: none yet).
        latency: seconds from reading the frame (live mode) or from taking it off the
            read-ahead queue (file mode) to this result.
        change: the frame's change against the last detected frame (gray levels), when
            change detection ran.
        error: what went wrong, for ``"failed"``.
    """

    frame: Frame
    instances: Instances
    status: str
    result_of: int | None
    latency: float
    change: float | None = None
    error: str | None = None

    @property
    def index(self) -> int:
        return self.frame.index

    @property
    def fresh(self) -> bool:
        """Whether ``instances`` describe this frame (detected, reused or propagated), not an
        older one."""
        return self.status in (DETECTED, REUSED, PROPAGATED)


@dataclass
class StreamStats:
    """Counters filled in while :func:`detect_stream` runs (pass one in to read them)."""

    frames: int = 0  # frames taken from the queue and handled
    detected: int = 0
    reused: int = 0
    skipped: int = 0
    propagated: int = 0  # skipped frames whose masks were propagated (propagate="sam2")
    failed: int = 0  # frames whose detection raised
    dropped: int = 0  # live mode: frames dropped because the queue was full
    unreadable: int = 0  # frames the source could not read or decode
    started: float = field(default_factory=time.perf_counter)
    ended: float | None = None
    latencies: list[float] = field(default_factory=list)  # of detected frames
    detect_seconds: list[float] = field(default_factory=list)  # detector time per detected frame
    objects: Counter = field(
        default_factory=Counter
    )  # label -> detections summed over fresh frames
    track_labels: dict[int, Any] = field(default_factory=dict)  # track id -> smoothed label

    @property
    def elapsed(self) -> float:
        return (self.ended or time.perf_counter()) - self.started

    @property
    def fps(self) -> float:
        """Frames handled per second of wall time (detected, reused and skipped)."""
        return self.frames / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def detect_fps(self) -> float:
        """Detections per second of wall time."""
        return self.detected / self.elapsed if self.elapsed > 0 else 0.0

    def tracks_per_label(self) -> dict[str, int]:
        return dict(sorted(Counter(str(lab) for lab in self.track_labels.values()).items()))

    def summary(self) -> dict[str, Any]:
        """JSON-ready totals: frame counts, objects per label, fps and latency (seconds)."""
        lat = self.latencies
        out: dict[str, Any] = {
            "frames": self.frames,
            "detected": self.detected,
            "reused": self.reused,
            "skipped": self.skipped,
            "propagated": self.propagated,
            "failed": self.failed,
            "dropped": self.dropped,
            "unreadable": self.unreadable,
            "seconds": round(self.elapsed, 3),
            "fps": round(self.fps, 2),
            "detect_fps": round(self.detect_fps, 2),
            "latency_median": round(statistics.median(lat), 4) if lat else None,
            "latency_max": round(max(lat), 4) if lat else None,
            "objects_per_label": dict(sorted(self.objects.items())),
        }
        if self.track_labels:
            out["tracks_per_label"] = self.tracks_per_label()
        return out

    def describe(self) -> str:
        """A few human-readable lines."""
        s = self.summary()
        parts = [
            f"{s['frames']} frames in {s['seconds']:.1f}s ({s['fps']:.1f} fps): "
            f"{s['detected']} detected, {s['reused']} reused, {s['skipped']} skipped"
        ]
        extra = [f"{s[k]} {k}" for k in ("propagated", "dropped", "failed", "unreadable") if s[k]]
        if extra:
            parts[0] += ", " + ", ".join(extra)
        if s["latency_median"] is not None:
            parts.append(
                f"latency per detected frame: median {s['latency_median'] * 1000:.0f} ms, "
                f"max {s['latency_max'] * 1000:.0f} ms"
            )
        if "tracks_per_label" in s:
            tracks = ", ".join(f"{k}: {v}" for k, v in s["tracks_per_label"].items()) or "none"
            parts.append(f"tracks per label: {tracks}")
        fresh = s["detected"] + s["reused"] + s["propagated"]
        if fresh:
            per = (
                ", ".join(f"{k}: {v / fresh:.1f}" for k, v in s["objects_per_label"].items())
                or "none"
            )
            parts.append(f"objects per frame: {per}")
        return "\n".join(parts)
