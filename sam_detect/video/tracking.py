"""Track identities across frames: IoU / centroid association and label smoothing.

:class:`Tracker` keeps one track per object. Each update matches the new detections to the
tracks by box IoU against the track's *predicted* box (last box moved by its velocity),
then, for what IoU left unmatched, by centroid distance relative to the object's size;
the matching is globally optimal (Hungarian) on a combined cost. A track that goes unseen
for ``max_age`` updates is dropped; its id is never reused.

Labels are smoothed over each track: the label shown is the majority of the last
``smooth`` labels (ties go to the larger summed confidence, then to the most recent), so a
single doubtful frame does not make the label flicker. The per-frame vote stays available
as ``data["raw_label"]``.

Ages and velocities count *updates* (frames that were detected), not source frames, so the
behaviour does not change with ``--every``.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from sam_detect.instances import Instances


@dataclass
class Track:
    """One tracked object.

    Attributes:
        id: the persistent track id (``1, 2, ...`` in order of appearance).
        box: last matched box, XYXY pixels.
        velocity: box displacement per update (``(4,)``, XYXY), smoothed.
        hits: updates in which the track was matched.
        misses: consecutive updates without a match.
        labels / confidences: recent per-frame labels and their confidences.
        first_frame / last_frame: source frame indices of the first and last match.
    """

    id: int
    box: np.ndarray
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))
    hits: int = 1
    misses: int = 0
    labels: deque = field(default_factory=deque)
    confidences: deque = field(default_factory=deque)
    first_frame: int | None = None
    last_frame: int | None = None

    @property
    def predicted_box(self) -> np.ndarray:
        """Where the box should be at the next update (constant velocity)."""
        return self.box + self.velocity * (self.misses + 1)

    def label(self) -> tuple[str | None, float]:
        """The smoothed label and its mean confidence over the recent labels."""
        if not self.labels:
            return None, 0.0
        counts = Counter(self.labels)
        conf_sum: dict[str, float] = {}
        recent: dict[str, int] = {}
        for i, (lab, c) in enumerate(zip(self.labels, self.confidences, strict=True)):
            conf_sum[lab] = conf_sum.get(lab, 0.0) + float(c)
            recent[lab] = i
        best = max(counts, key=lambda lab: (counts[lab], conf_sum[lab], recent[lab]))
        return best, conf_sum[best] / counts[best]


class Tracker:
    """Give detections persistent track ids and smoothed labels.

    Args:
        iou_threshold: minimum box IoU (against the predicted box) for an IoU match.
        max_distance: centroid matches are allowed up to this many object sizes
            (size = the geometric mean of the box sides) between centroids.
        max_age: drop a track after this many consecutive updates without a match.
        smooth: labels kept per track for the majority vote (1: no smoothing).
        momentum: weight of the previous velocity when updating it (0: last step only).

    >>> tracker = Tracker()
    >>> tracked = tracker.update(instances, frame_index=0)     # doctest: +SKIP
    >>> tracked.data["track_id"]                                # (N,) int64
    """

    def __init__(
        self,
        iou_threshold: float = 0.2,
        max_distance: float = 1.0,
        max_age: int = 5,
        smooth: int = 9,
        momentum: float = 0.5,
    ) -> None:
        if not 0 <= iou_threshold <= 1:
            raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
        if max_distance < 0:
            raise ValueError(f"max_distance must be >= 0, got {max_distance}")
        if max_age < 0:
            raise ValueError(f"max_age must be >= 0, got {max_age}")
        if smooth < 1:
            raise ValueError(f"smooth must be >= 1, got {smooth}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.iou_threshold = float(iou_threshold)
        self.max_distance = float(max_distance)
        self.max_age = int(max_age)
        self.smooth = int(smooth)
        self.momentum = float(momentum)
        self.tracks: list[Track] = []
        self._next_id = 1
        #: every track id ever given -> its final smoothed label (kept after the track ends)
        self.history: dict[int, str | None] = {}

    def reset(self) -> None:
        """Forget every track (ids keep counting up)."""
        self.tracks = []

    def update(self, instances: Instances, frame_index: int | None = None) -> Instances:
        """Match ``instances`` to the tracks and return them with track ids and smoothed labels.

        Returns a new ``Instances`` (same rows, same order) whose ``labels`` and
        ``label_confidences`` are the track-smoothed ones, with ``data["track_id"]``
        ``(N,)`` int64 and ``data["raw_label"]`` (the frame's own vote).
        """
        n = len(instances)
        boxes = np.asarray(instances.boxes, dtype=np.float32).reshape(n, 4)
        matches = self._associate(boxes)
        ids = np.zeros(n, dtype=np.int64)
        matched_tracks = set()
        for det, ti in matches:
            tr = self.tracks[ti]
            step = (boxes[det] - tr.box) / (tr.misses + 1)
            tr.velocity = (
                self.momentum * tr.velocity + (1 - self.momentum) * step if tr.hits > 1 else step
            )
            tr.box = boxes[det].copy()
            tr.hits += 1
            tr.misses = 0
            tr.last_frame = frame_index
            ids[det] = tr.id
            matched_tracks.add(ti)
        survivors = []
        for ti, tr in enumerate(self.tracks):
            if ti not in matched_tracks:
                tr.misses += 1
                if tr.misses > self.max_age:
                    continue
            survivors.append(tr)
        self.tracks = survivors
        by_id = {tr.id: tr for tr in self.tracks}
        for det in range(n):
            if ids[det] == 0:
                tr = Track(
                    id=self._next_id,
                    box=boxes[det].copy(),
                    first_frame=frame_index,
                    last_frame=frame_index,
                )
                self._next_id += 1
                self.tracks.append(tr)
                by_id[tr.id] = tr
                ids[det] = tr.id

        raw = list(instances.labels)
        labels = np.empty(n, dtype=object)
        conf = np.asarray(instances.label_confidences, dtype=np.float32).copy()
        for det in range(n):
            tr = by_id[int(ids[det])]
            if raw[det] is not None:
                tr.labels.append(raw[det])
                tr.confidences.append(float(conf[det]))
                while len(tr.labels) > self.smooth:
                    tr.labels.popleft()
                    tr.confidences.popleft()
            lab, c = tr.label()
            labels[det] = lab if lab is not None else raw[det]
            if lab is not None:
                conf[det] = c
            self.history[tr.id] = labels[det]
        out = instances[np.arange(n)] if n else instances[np.zeros(0, dtype=np.int64)]
        out.labels = labels
        out.label_confidences = conf
        out.data["track_id"] = ids
        raw_arr = np.empty(n, dtype=object)
        raw_arr[:] = raw
        out.data["raw_label"] = raw_arr
        return out

    def _associate(self, boxes: np.ndarray) -> list[tuple[int, int]]:
        """(detection, track) index pairs."""
        if not len(boxes) or not self.tracks:
            return []
        pred = np.stack([tr.predicted_box for tr in self.tracks]).astype(np.float32)
        iou = box_iou(boxes, pred)
        dist = _centroid_distance(boxes, pred)
        size = np.sqrt(np.maximum(_box_wh(boxes).prod(axis=1), 1.0))[:, None]
        size = np.maximum(size, np.sqrt(np.maximum(_box_wh(pred).prod(axis=1), 1.0))[None, :])
        rel = dist / size
        iou_ok = iou >= max(self.iou_threshold, 1e-6)
        dist_ok = rel <= self.max_distance
        allowed = iou_ok | dist_ok
        if not allowed.any():
            return []
        # IoU matches always beat centroid-only matches: cost in [0, 1] for IoU, (1, 2] else.
        big = 1e6
        cost = np.where(iou_ok, 1.0 - iou, 1.0 + np.minimum(rel, 1.0))
        cost = np.where(allowed, cost, big)
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(cost)
        return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if cost[r, c] < big]

    @property
    def active_ids(self) -> list[int]:
        return [tr.id for tr in self.tracks]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of XYXY boxes ``a`` ``(N, 4)`` and ``b`` ``(M, 4)``: ``(N, M)`` float32."""
    a = np.asarray(a, dtype=np.float32).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float32).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = _box_wh(a).prod(axis=1)
    area_b = _box_wh(b).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


def _box_wh(b: np.ndarray) -> np.ndarray:
    return np.clip(np.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1), 0, None)


def _centroid_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ca = np.stack([(a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2], axis=1)
    cb = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], axis=1)
    return np.linalg.norm(ca[:, None, :] - cb[None, :, :], axis=2)
