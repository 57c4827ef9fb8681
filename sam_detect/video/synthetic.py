"""Synthetic videos of moving shapes with known positions, for tests, benchmarks and demos.

>>> scene = MovingShapes(n_objects=10, size_wh=(640, 480), seed=0)
>>> frame = scene.frame(0)              # (480, 640, 3) uint8 RGB
>>> scene.truth(0)                      # [(object id, label, XYXY box), ...]
>>> scene.write("moving.mp4", n_frames=60, fps=15)       # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

LABELS = ("disc", "square")


@dataclass
class Shape:
    id: int
    label: str  # "disc" or "square"
    radius: float  # half side for squares
    x: float
    y: float
    vx: float  # pixels per frame
    vy: float
    color: tuple[int, int, int]


class MovingShapes:
    """Bright discs and squares gliding over a dark, slightly textured background,
    bouncing off the borders. Positions are exact and reproducible from ``seed``.

    Args:
        n_objects: number of shapes (half discs, half squares).
        size_wh: frame ``(width, height)`` in pixels.
        radius: object radius (half side of squares) in pixels, ± 15 % per object.
        speed: pixels per frame.
        noise: standard deviation of per-frame Gaussian pixel noise (gray levels).
        seed: random seed of the layout and the noise.
    """

    def __init__(
        self,
        n_objects: int = 10,
        size_wh: tuple[int, int] = (640, 480),
        *,
        radius: float = 18.0,
        speed: float = 3.0,
        noise: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.w, self.h = int(size_wh[0]), int(size_wh[1])
        self.noise = float(noise)
        self.seed = int(seed)
        rng = np.random.default_rng(seed)
        self.shapes: list[Shape] = []
        # a grid layout keeps shapes apart at the start
        cols = int(np.ceil(np.sqrt(n_objects * self.w / self.h)))
        rows = int(np.ceil(n_objects / cols))
        cells = [(c, r) for r in range(rows) for c in range(cols)][:n_objects]
        for i, (c, r) in enumerate(cells):
            rad = radius * rng.uniform(0.85, 1.15)
            cx = (c + 0.5) * self.w / cols
            cy = (r + 0.5) * self.h / rows
            ang = rng.uniform(0, 2 * np.pi)
            label = LABELS[i % 2]
            color = (230, 230, 230) if label == "disc" else (200, 220, 255)
            self.shapes.append(
                Shape(i, label, rad, cx, cy, speed * np.cos(ang), speed * np.sin(ang), color)
            )
        yy, xx = np.mgrid[0 : self.h, 0 : self.w]
        self._background = (18 + 6 * np.sin(xx / 23.0) * np.cos(yy / 31.0)).astype(np.float32)

    def _position(self, s: Shape, t: int) -> tuple[float, float]:
        """Position at frame ``t``, reflected at the borders."""

        def bounce(p0: float, v: float, lo: float, hi: float) -> float:
            span = hi - lo
            p = (p0 - lo + v * t) % (2 * span)
            return lo + (p if p <= span else 2 * span - p)

        m = s.radius + 2
        return bounce(s.x, s.vx, m, self.w - m), bounce(s.y, s.vy, m, self.h - m)

    def truth(self, t: int) -> list[tuple[int, str, tuple[float, float, float, float]]]:
        """``(object id, label, XYXY box)`` of every shape at frame ``t``."""
        out = []
        for s in self.shapes:
            x, y = self._position(s, t)
            r = s.radius
            out.append((s.id, s.label, (x - r, y - r, x + r, y + r)))
        return out

    def label_image(self, t: int) -> np.ndarray:
        """``(H, W)`` int32: 0 background, ``id + 1`` under each shape at frame ``t``."""
        lab = np.zeros((self.h, self.w), np.int32)
        for s in self.shapes:
            self._draw(lab, s, t, int(s.id + 1))
        return lab

    def _draw(self, img: np.ndarray, s: Shape, t: int, value) -> None:
        import cv2

        x, y = self._position(s, t)
        r = s.radius
        if s.label == "disc":
            cv2.circle(img, (int(round(x)), int(round(y))), int(round(r)), value, -1, cv2.LINE_8)
        else:
            p1 = (int(round(x - r)), int(round(y - r)))
            p2 = (int(round(x + r)), int(round(y + r)))
            cv2.rectangle(img, p1, p2, value, -1)

    def frame(self, t: int, noise_key: int | None = None) -> np.ndarray:
        """Frame ``t`` as ``(H, W, 3)`` uint8 RGB.

        ``noise_key`` seeds the pixel noise (default ``t``): the same ``t`` with another key
        is the same scene seen by a noisy sensor at another moment.
        """
        img = np.repeat(self._background[..., None], 3, axis=2)
        for s in self.shapes:
            self._draw(img, s, t, tuple(float(c) for c in s.color))
        if self.noise > 0:
            rng = np.random.default_rng((self.seed, t if noise_key is None else noise_key))
            img = img + rng.normal(0, self.noise, img.shape).astype(np.float32)
        return np.clip(img, 0, 255).astype(np.uint8)

    def write(
        self, path: str | os.PathLike, n_frames: int, fps: float = 10.0, fourcc: str | None = None
    ) -> str:
        """Write ``n_frames`` frames as a video file (MP4: ``mp4v``, AVI: ``MJPG``); returns the path."""
        import cv2

        path = os.fspath(path)
        code = fourcc or ("MJPG" if path.lower().endswith(".avi") else "mp4v")
        vw = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*code), fps, (self.w, self.h))
        if not vw.isOpened():
            raise OSError(f"OpenCV cannot write {path} with codec {code}")
        try:
            for t in range(n_frames):
                vw.write(cv2.cvtColor(self.frame(t), cv2.COLOR_RGB2BGR))
        finally:
            vw.release()
        return path
