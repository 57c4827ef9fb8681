"""Shared fixtures: synthetic images with known objects, the shared data folder, CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def draw_scene(seed: int, size: int = 160, n_discs: int = 3, n_squares: int = 3):
    """A dark image with bright discs and squares at random, non-overlapping places.

    Returns ``(rgb (H, W, 3) uint8, masks (N, H, W) bool, labels list[str])``.
    """
    rng = np.random.default_rng(seed)
    img = np.full((size, size), 20, np.float32)
    masks, labels = [], []
    yy, xx = np.mgrid[:size, :size]
    taken = np.zeros((size, size), bool)
    shapes = ["disc"] * n_discs + ["square"] * n_squares
    for shape in shapes:
        for _ in range(200):
            r = int(rng.integers(8, 12))
            cy, cx = rng.integers(r + 3, size - r - 3, 2)
            if shape == "disc":
                m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            else:
                m = (abs(yy - cy) <= r - 1) & (abs(xx - cx) <= r - 1)
            grown = np.zeros_like(m)
            grown[max(cy - r - 4, 0) : cy + r + 5, max(cx - r - 4, 0) : cx + r + 5] = True
            if not (grown & taken).any():
                taken |= grown
                break
        img[m] = 200
        masks.append(m)
        labels.append(shape)
    img += rng.normal(0, 3, img.shape)
    rgb = np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    return rgb, np.stack(masks), labels


@pytest.fixture
def scene():
    return draw_scene


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the shared data folder is missing: expected {SHARED_DATA} beside the checkout")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_library_path(tmp_path_factory, monkeypatch):
    """Never touch the user's real library folder or model cache from a test."""
    monkeypatch.setenv("SAM_DETECT_LIBRARY_PATH", str(tmp_path_factory.mktemp("libraries")))
    monkeypatch.setenv("SAM_DETECT_CACHE", str(tmp_path_factory.mktemp("model-cache")))
    monkeypatch.delenv("SAM_DETECT_QDRANT_URL", raising=False)
    monkeypatch.delenv("SAM_DETECT_LIBRARY", raising=False)
    monkeypatch.delenv("SAM_DETECT_STORE", raising=False)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
