"""Fade strategies: parameters, untouched mask pixels, monotonic fall-off, user classes."""

from __future__ import annotations

import numpy as np
import pytest

from sam_detect.fade import FADES, create_fade, list_fades
from sam_detect.fade.crops import _distance_map
from sam_detect.fade.strategies import (
    ExponentialFade,
    GaussianFade,
    IdentityFade,
    LinearFade,
    blend,
    fade_params,
)

BUILTIN = ["identity", "gaussian", "linear", "exponential"]


def _scene(size: int = 81, radius: int = 10, seed: int = 0):
    """Random-texture crop with a centred disk mask and its distance map."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:size, :size]
    c = size // 2
    mask = (yy - c) ** 2 + (xx - c) ** 2 <= radius**2
    return image, mask, _distance_map(mask)


def test_builtins_registered():
    assert set(BUILTIN) <= set(list_fades())
    assert list_fades("gauss*") == ["gaussian"]


def test_unknown_fade_lists_valid_names():
    with pytest.raises(ValueError, match="unknown fade 'blur'.*gaussian"):
        create_fade("blur")


@pytest.mark.parametrize("name", BUILTIN)
def test_mask_pixels_unchanged_and_shape(name):
    image, mask, dist = _scene()
    out = create_fade(name).apply(image, mask, dist)
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[mask], image[mask])
    assert out is not image


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("gaussian", {"sigma": 10}),
        ("linear", {"max_distance": 20}),
        ("exponential", {"decay": 0.1}),
    ],
)
def test_fade_changes_surroundings(name, kwargs):
    image, mask, dist = _scene()
    out = create_fade(name, **kwargs).apply(image, mask, dist)
    far = dist > 25
    # Far pixels lose most of their contrast around the background colour.
    assert out[far].astype(float).std() < 0.25 * image[far].astype(float).std()


def test_default_gaussian_weight_at_sigma():
    fade = create_fade("gaussian")
    w = fade.weight(np.array([30.0], np.float32))[0]
    assert w == pytest.approx(0.1 + 0.9 * np.exp(-0.5), abs=1e-6)


def test_identity_returns_copy():
    image, mask, dist = _scene()
    out = IdentityFade().apply(image, mask, dist)
    np.testing.assert_array_equal(out, image)
    assert not np.shares_memory(out, image)


@pytest.mark.parametrize(
    "fade",
    [
        GaussianFade(sigma=8, min_fade=0.1),
        GaussianFade(sigma=30, min_fade=0.0),
        LinearFade(max_distance=20, min_fade=0.2),
        ExponentialFade(decay=0.1, max_distance=25),
    ],
    ids=repr,
)
def test_weight_monotonic_non_increasing(fade):
    d = np.linspace(0, 60, 241, dtype=np.float32)
    w = fade.weight(d)
    assert w[0] == pytest.approx(1.0)
    assert np.all(np.diff(w) <= 1e-7)
    assert np.all((w >= 0) & (w <= 1))


def test_contrast_falls_with_distance():
    """A uniform bright surround on a black background fades monotonically with distance."""
    size = 101
    image = np.full((size, size, 3), 200, np.uint8)
    mask = np.zeros((size, size), bool)
    mask[45:56, 45:56] = True
    dist = _distance_map(mask)
    out = GaussianFade(sigma=10, min_fade=0.0, background=0).apply(image, mask, dist)
    row = out[50, 56:, 0].astype(int)  # walking right, away from the mask
    assert np.all(np.diff(row) <= 0)
    assert row[0] > 190 and row[-1] < 5


def test_min_fade_floor_and_background_mean():
    image, mask, dist = _scene()
    out = GaussianFade(sigma=1, min_fade=0.5).apply(image, mask, dist)
    far = dist > 20
    bg = image[~mask].reshape(-1, 3).mean(axis=0)
    expected = 0.5 * image[far].astype(float) + 0.5 * bg
    assert np.abs(out[far].astype(float) - expected).max() <= 1.0


def test_exponential_cutoff_is_pure_background():
    image, mask, dist = _scene()
    out = ExponentialFade(decay=0.0, max_distance=15, background=7).apply(image, mask, dist)
    np.testing.assert_array_equal(out[dist > 15], 7)
    near = (dist > 0) & (dist <= 15)
    np.testing.assert_array_equal(out[near], image[near])


def test_linear_reaches_min_fade_at_max_distance():
    fade = LinearFade(max_distance=10, min_fade=0.25)
    w = fade.weight(np.array([0, 5, 10, 50], np.float32))
    np.testing.assert_allclose(w, [1.0, 0.625, 0.25, 0.25], atol=1e-6)


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("gaussian", {"sigma": -1}, "sigma must be > 0"),
        ("gaussian", {"sigma": 0}, "sigma must be > 0"),
        ("gaussian", {"sigma": float("nan")}, "sigma must be finite"),
        ("gaussian", {"sigma": "big"}, "sigma must be a number"),
        ("gaussian", {"min_fade": 1.5}, r"min_fade must be in \[0, 1\]"),
        ("gaussian", {"min_fade": -0.1}, "min_fade must be >= 0"),
        ("linear", {"max_distance": 0}, "max_distance must be > 0"),
        ("linear", {"min_fade": 2}, r"min_fade must be in \[0, 1\]"),
        ("exponential", {"decay": -0.5}, "decay must be >= 0"),
        ("exponential", {"max_distance": -3}, "max_distance must be > 0"),
        ("gaussian", {"background": "white"}, "background must be 'mean'"),
        ("gaussian", {"background": 300}, "background must be 'mean'"),
    ],
)
def test_parameter_validation(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        create_fade(name, **kwargs)


def test_unexpected_keyword_is_an_error():
    with pytest.raises(TypeError):
        create_fade("gaussian", sigmaa=3)


@pytest.mark.parametrize(
    "name, kwargs, expected",
    [
        ("identity", {}, {"name": "identity"}),
        (
            "gaussian",
            {},
            {"name": "gaussian", "sigma": 30.0, "min_fade": 0.1, "background": "mean"},
        ),
        (
            "linear",
            {"max_distance": 12, "background": 0},
            {"name": "linear", "max_distance": 12.0, "min_fade": 0.1, "background": 0},
        ),
        (
            "exponential",
            {"decay": 0.2},
            {"name": "exponential", "decay": 0.2, "max_distance": 100.0, "background": "mean"},
        ),
    ],
)
def test_params_round_trip(name, kwargs, expected):
    fade = create_fade(name, **kwargs)
    assert fade.params() == expected
    assert fade_params(fade) == expected
    rebuilt = create_fade(expected["name"], **{k: v for k, v in expected.items() if k != "name"})
    assert rebuilt == fade and hash(rebuilt) == hash(fade)


class Darken:
    """A user fade with only ``apply``: halves every pixel outside the mask."""

    def apply(self, image, mask, distance_map):
        out = image.copy()
        out[~mask] //= 2
        return out


class Tagged(Darken):
    def params(self):
        return {"factor": 0.5}


def test_user_class_fade_params_fallback():
    assert fade_params(Darken()) == {"name": "Darken"}
    assert fade_params(Tagged()) == {"name": "Tagged", "factor": 0.5}
    assert fade_params(None) == {"name": "identity"}
    with pytest.raises(TypeError, match="apply"):
        fade_params(object())


def test_a_library_built_with_a_user_fade_says_so_when_opened_without_it(tmp_path, scene):
    """A library made with ``SAMDetect(fade=Darken())`` records ``{"name": "Darken"}``; opened
    again without the object (``sam-detect detect``, a new process) it failed with "unknown
    fade 'Darken'; valid names: ...", as if the caller had mistyped one. It now says the
    library was built with a fade object of its maker's, and what to do."""
    from sam_detect.errors import SettingError
    from sam_detect.pipeline import SAMDetect

    rgb, masks, labels = scene(seed=1, n_discs=2, n_squares=0)
    kw = {"store": "memory", "store_options": {"path": tmp_path / "lib.npz"}, "library": "dark",
          "segmenter": "classical", "embedder": "handcrafted"}
    det = SAMDetect(fade=Darken(), **kw)
    det.add_example(rgb, mask=masks[0], label="disc")
    det.close()
    again = SAMDetect(**kw)
    with pytest.raises(SettingError, match=r"library 'dark' was built with the fade 'Darken', an object of its "
                                           r"maker's, not a registered fade \(.*\): give that object again"):
        again.detect(rgb)
    assert len(SAMDetect(fade=Darken(), **kw).detect(rgb)) >= 1


def test_a_library_built_with_a_registered_fade_opens_in_a_fresh_process(tmp_path, scene):
    """A library built with the default gaussian fade, opened in a new process whose first use of
    a fade is ``SAMDetect.fade`` (``sam-detect ui`` on the quickstart's library): the check for a
    caller's own fade asked the registry before the built-in fades were registered, and refused
    'gaussian' as "an object of its maker's, not a registered fade ()"."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import sam_detect
    from sam_detect.pipeline import SAMDetect

    rgb, masks, labels = scene(seed=1, n_discs=2, n_squares=0)
    kw = {"store": "memory", "store_options": {"path": str(tmp_path / "lib.npz")}, "library": "plain",
          "segmenter": "classical", "embedder": "handcrafted"}
    det = SAMDetect(**kw)
    det.add_example(rgb, mask=masks[0], label="disc")
    det.close()
    code = ("import sys; from sam_detect.pipeline import SAMDetect; "
            "assert 'sam_detect.fade.strategies' not in sys.modules; "
            f"print(type(SAMDetect(**{kw!r}).fade).__name__)")
    env = {**os.environ, "PYTHONPATH": str(Path(sam_detect.__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "GaussianFade"


def test_user_class_satisfies_protocol():
    from sam_detect.fade import Fade

    assert isinstance(Darken(), Fade)
    for name in BUILTIN:
        assert isinstance(FADES.create(name), Fade)


def test_blend_exact_endpoints():
    image, mask, _ = _scene(size=21, radius=3)
    ones = np.ones(mask.shape, np.float32)
    np.testing.assert_array_equal(blend(image, mask, ones, "mean"), image)
    zeros = np.zeros(mask.shape, np.float32)
    out = blend(image, mask, zeros, 42)
    np.testing.assert_array_equal(out[~mask], 42)
    np.testing.assert_array_equal(out[mask], image[mask])


def test_apply_rejects_mismatched_shapes():
    image, mask, dist = _scene()
    with pytest.raises(ValueError, match="must have the image's shape"):
        GaussianFade().apply(image, mask[:-1], dist)
