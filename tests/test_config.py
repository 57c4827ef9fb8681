"""One home per setting: a default changed in ``sam_detect.config`` shows in the CLI's
``--help``, the API and the UI; a library's settings are adopted by one function."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from conftest import run_cli

from sam_detect import config
from sam_detect.config import PARAMS, DetectorConfig, adopt_library_settings, check
from sam_detect.instances import Instances
from sam_detect.pipeline import SAMDetect
from sam_detect.store.base import LibraryMeta


def _help_default(text: str, flag: str) -> str:
    """The ``[default: ...]`` of ``flag`` in click's help, with the line wrapping undone."""
    flat = " ".join(text.split())
    m = re.search(re.escape(flag) + r" .*?\[default: ([^\]]*)\]", flat)
    assert m, f"{flag} has no default in the help"
    return m.group(1)


def test_a_default_changed_in_one_place_shows_in_cli_api_and_ui(monkeypatch, scene, tmp_path):
    monkeypatch.setitem(PARAMS, "top_k", dataclasses.replace(PARAMS["top_k"], default=7))
    monkeypatch.setitem(PARAMS, "occupancy", dataclasses.replace(PARAMS["occupancy"], default=0.35))

    # the CLI's --help, for every command with the option
    for command in ("detect", "add", "eval", "video", "ui"):
        r = run_cli(command, "--help")
        assert r.exit_code == 0, r.output
        assert _help_default(r.output, "--occupancy") == "the library's, 0.35 for a new library"
    for command in ("detect", "eval", "video", "ui"):
        assert _help_default(run_cli(command, "--help").output, "--top-k") == "7"

    # the API: the config, the detector's crops, a new library's record, detect's vote
    assert DetectorConfig().top_k == 7
    rgb, masks, labels = scene(5, n_discs=4, n_squares=4)
    det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="handcrafted"))
    assert det.occupancy == 0.35
    det.add_examples(rgb, Instances(masks=masks, labels=labels))
    assert det.store.get_meta("default").crop == {"occupancy": 0.35}
    found = det.detect(scene(6, n_discs=4, n_squares=4)[0])  # another scene: its objects are voted on
    assert len(found) and max(len(n) for n in found.data["neighbours"]) == 7

    # the UI's settings
    pytest.importorskip("fastapi", reason="the UI needs fastapi")
    from fastapi.testclient import TestClient

    from sam_detect.ui import AnnotationUI

    (tmp_path / "images").mkdir()
    ui = AnnotationUI(det, tmp_path / "images", thumbnail_dir=tmp_path / "thumbs")
    try:
        cfg = TestClient(ui.app(), base_url="http://127.0.0.1").get("/api/config").json()
    finally:
        ui.stop()
    assert cfg["top_k"] == 7 and cfg["defaults"]["top_k"] == 7 and cfg["defaults"]["occupancy"] == 0.35


@pytest.mark.parametrize("name, value", [("top_k", 0), ("top_k", 10_001), ("top_k", 2.5), ("top_k", True),
                                         ("threshold", 1.5), ("threshold", float("nan")),
                                         ("occupancy", 0), ("occupancy", "0.2")])
def test_one_check_for_the_config_and_per_call_overrides(scene, name, value):
    with pytest.raises(ValueError, match=name):
        check(name, value)
    with pytest.raises(ValueError, match=name):
        DetectorConfig(**{name: value})
    if name != "occupancy":
        rgb, masks, labels = scene(4)
        det = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="handcrafted"))
        det.add_examples(rgb, Instances(masks=masks, labels=labels))
        with pytest.raises(ValueError, match=name):
            det.detect(rgb, **{name: value})


@pytest.mark.parametrize("name, value", [("drop_border", "no"), ("drop_border", "false"), ("drop_border", 0),
                                         ("profile", "off"), ("keep_unknown", "no"), ("keep_examples", "no"),
                                         ("profile", None)])
def test_the_config_refuses_a_switch_that_is_not_true_or_false(name, value):
    """``DetectorConfig(drop_border="no")`` and ``profile="off"`` were taken, and acted as
    ``True`` (a non-empty string is truthy), while ``detect(drop_border="no")`` was refused."""
    from sam_detect.errors import SettingError

    with pytest.raises(SettingError, match=f"^{name} must be True(,| or) False"):
        DetectorConfig(**{name: value})
    with pytest.raises(SettingError, match=f"^{name} must be"):
        SAMDetect(store="memory", **{name: value})
    with pytest.raises(SettingError, match=f"^{name} must be"):
        dataclasses.replace(DetectorConfig(), **{name: value})
    ok = DetectorConfig(**{name: np.False_})  # numpy's booleans are booleans
    assert getattr(ok, name) is False
    assert DetectorConfig(drop_border=None).drop_border is None


@pytest.mark.parametrize("value", ["8", 8.0, True, 0, -2, [8]])
def test_the_config_refuses_a_batch_size_that_is_not_a_positive_integer(value):
    """``DetectorConfig(batch_size="8")`` was taken and failed deep in the embedder (or, 0,
    was the embedder's default without a word); an integer >= 1 or ``None`` only."""
    from sam_detect.errors import SettingError

    with pytest.raises(SettingError, match=r"^batch_size must be a positive integer \(or None: the embedder's own\), "
                                           rf"got {re.escape(repr(value))}$"):
        DetectorConfig(batch_size=value)
    with pytest.raises(SettingError, match="^batch_size must be"):
        dataclasses.replace(DetectorConfig(), batch_size=value)
    with pytest.raises(SettingError, match="^batch_size must be"):
        SAMDetect(store="memory", batch_size=value)
    assert DetectorConfig(batch_size=np.int64(4)).batch_size == 4 and type(DetectorConfig(batch_size=4).batch_size) is int
    assert DetectorConfig().batch_size is None and DetectorConfig(batch_size=None).batch_size is None


@pytest.mark.parametrize("name", ["segmenter_options", "embedder_options", "fade_options", "store_options"])
def test_the_config_refuses_options_that_are_not_a_dict_and_an_empty_library_name(name):
    """``DetectorConfig(store_options=None)`` or ``segmenter_options=[1]`` were taken, and the
    stage failed when built with a bare ``TypeError: 'NoneType' object is not iterable``; an
    empty library name was a plain ValueError, not the InvalidNameError of every other bad
    name. ``None`` is no options; anything else but a mapping is a SettingError."""
    from sam_detect.errors import InvalidNameError, SettingError

    assert getattr(DetectorConfig(**{name: None}), name) == {}
    for value in ([1], "x", 3):
        with pytest.raises(SettingError, match=rf"^{name} must be a dict of option names and values, got "):
            DetectorConfig(**{name: value})
        with pytest.raises(SettingError, match=rf"^{name} must be a dict"):
            SAMDetect(store="memory", **{name: value})
    assert SAMDetect(store="memory", store_options=None).store.count  # the store's defaults
    for empty in ("", "  "):
        with pytest.raises(InvalidNameError, match="library name must not be empty"):
            DetectorConfig(library=empty)


def test_adopting_a_library_given_settings_win_unset_ones_are_the_librarys():
    meta = LibraryMeta(name="x", embedder_id="views:abc", dim=8,
                       fade={"name": "linear", "max_distance": 20.0, "min_fade": 0.1},
                       crop={"occupancy": 0.3},
                       extra={"embedder": {"name": "views", "options": {"tile": 2}}})
    s = adopt_library_settings(meta)
    assert (s.fade, s.fade_options, s.occupancy, s.embedder, s.embedder_options) == (
        "linear", {"max_distance": 20.0, "min_fade": 0.1}, 0.3, "views", {"tile": 2})
    assert set(s.adopted) == {"fade", "occupancy", "embedder"}
    s = adopt_library_settings(meta, fade="gaussian", occupancy=0.2, embedder="effnet",
                               fade_options={"sigma": 5.0})
    assert (s.fade, s.fade_options, s.occupancy, s.embedder, s.adopted) == (
        "gaussian", {"sigma": 5.0}, 0.2, "effnet", ())
    s = adopt_library_settings(None)  # a new library: the defaults
    assert (s.fade, s.fade_options, s.occupancy, s.embedder) == (config.DEFAULT_FADE, {}, 0.2, None)


def test_exchange_recuts_the_crop_a_detector_on_the_library_sees(tmp_path, scene):
    """store.exchange re-cuts an example's crop with the library's fade and occupancy, as the
    detector does (both through adopt_library_settings)."""
    from sam_detect.outputs import save_image
    from sam_detect.store.exchange import crop_from_payload

    rgb, masks, labels = scene(6)
    path = tmp_path / "scene.png"
    save_image(rgb, path)
    made = SAMDetect(DetectorConfig(store="memory", segmenter="classical", embedder="handcrafted",
                                    occupancy=0.3, fade="linear", fade_options={"max_distance": 12.0}))
    made.add_examples(str(path), Instances(masks=masks[:1], labels=labels[:1]))
    meta = made.store.get_meta("default")
    _, _, _, payloads = next(made.store.iter_examples("default"))
    reader = SAMDetect(DetectorConfig(store="memory", embedder="handcrafted"), store=made.store)
    assert reader.occupancy == 0.3
    np.testing.assert_array_equal(crop_from_payload(payloads[0], meta, {}), reader.get_crop(rgb, masks[0]))


@pytest.mark.parametrize("store", ["memory", "qdrant", "edge"])
def test_the_config_reads_the_library_and_store_the_cli_reads_from_the_environment(monkeypatch, scene, store):
    """``SAM_DETECT_LIBRARY`` and ``SAM_DETECT_STORE`` chose the CLI's library and store, while
    ``DetectorConfig`` kept ``default`` on Qdrant Edge: a script added to (and detected with)
    another library than the commands run in the same shell. Unset, they are read as the
    CLI reads them (a memory store in the library folder's file, as the CLI's); given, they win."""
    from conftest import run_main

    monkeypatch.setenv("SAM_DETECT_LIBRARY", "coins")
    monkeypatch.setenv("SAM_DETECT_STORE", store)
    rgb, masks, labels = scene(5, n_discs=2, n_squares=2)
    det = SAMDetect(segmenter="classical", embedder="handcrafted")
    det.add_examples(rgb, Instances(masks=masks, labels=labels))
    det.close()

    code, out, err = run_main("library", "list")  # the CLI, in the same environment, finds it
    assert code == 0, err
    assert [line.split()[:2] for line in out.splitlines()[1:]] == [["coins", "4"]], out
    code, out, err = run_main("library", "show")
    assert code == 0, err
    assert "coins" in out and "disc" in out and "square" in out, out
    assert (det.config.library, det.config.store) == ("coins", store)

    given = SAMDetect(DetectorConfig(library="nuclei", store="memory"))  # given: the environment's are not read
    assert (given.config.library, given.config.store, given.config.store_options) == ("nuclei", "memory", {})
    assert given.store.path is None and given.store.list_libraries() == []
    assert SAMDetect(store="memory").store.path is None  # a store named to SAMDetect too
    assert dataclasses.replace(DetectorConfig(), top_k=3).library == "coins"

    monkeypatch.delenv("SAM_DETECT_LIBRARY")
    monkeypatch.setenv("SAM_DETECT_STORE", "")  # empty is unset, as click takes it
    assert (DetectorConfig().library, DetectorConfig().store) == ("default", "edge")


def test_an_unknown_store_in_the_environment_is_refused_naming_the_variable(monkeypatch):
    from sam_detect.errors import SettingError

    monkeypatch.setenv("SAM_DETECT_STORE", "qdrnat")
    with pytest.raises(SettingError, match=r"^SAM_DETECT_STORE='qdrnat': expected one of edge, memory, qdrant$"):
        DetectorConfig()
    assert DetectorConfig(store="memory").store == "memory"  # given: the variable is not read
