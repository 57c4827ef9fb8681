"""The offline decision-rule harness (``scripts/dev_decision_rules.py``) on synthetic vectors."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

_path = Path(__file__).resolve().parents[1] / "scripts" / "dev_decision_rules.py"
_spec = importlib.util.spec_from_file_location("dev_decision_rules", _path)
rules = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("dev_decision_rules", rules)
_spec.loader.exec_module(rules)


def _cached(rng, offset=0.0, n_examples=4, n_queries=30):
    """A cache entry: two classes whose views share a large common part (``offset``) and
    differ by a small class direction plus noise."""
    from sam_detect.embed.views import VIEWS, join_views

    centres = {c: {name: rng.normal(size=size) for name, size in VIEWS} for c in ("a", "b")}
    common = {name: rng.normal(size=size) for name, size in VIEWS}

    def make(labels):
        parts = {name: np.stack([offset * common[name] + centres[c][name] + 0.8 * rng.normal(size=size)
                                 for c in labels]) for name, size in VIEWS}
        return join_views(parts)

    el = np.array(["a"] * n_examples + ["b"] * n_examples)
    ql = np.array(["a", "b"] * (n_queries // 2))
    return {"E": make(el), "El": el, "Q": make(ql), "Ql": ql, "Qimg": np.repeat([1, 2], n_queries // 2)}


def test_every_rule_scores_separable_classes_and_labels_matter():
    d = _cached(np.random.default_rng(0))
    for name, kw in rules.RULES.items():
        assert rules.score(d, **kw) >= 0.9, name
    swapped = dict(d, Ql=np.where(d["Ql"] == "a", "b", "a"))
    assert rules.score(swapped) <= 0.1


def test_centring_removes_a_shared_component():
    # a common part 3x the class signal: centring on the candidates restores the contrast
    d = _cached(np.random.default_rng(1), offset=3.0)
    e, q = rules._views(d["E"]), rules._views(d["Q"])
    ec, qc = rules._centre(e, q, "q")
    raw = np.mean([(qq @ ee.T).std() for qq, ee in zip(q, e, strict=True)])
    centred = np.mean([(qq @ ee.T).std() for qq, ee in zip(qc, ec, strict=True)])
    assert centred > 2 * raw
    for block in ec + qc:
        assert np.linalg.norm(block, axis=1) == pytest.approx(1.0, abs=1e-5)


def test_propagation_follows_the_candidates_graph():
    # two tight clusters; one member of the first starts with the wrong vote
    p0 = np.array([[1.0, 0.0], [1.0, 0.0], [0.2, 0.8], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    c = np.full((6, 6), 0.1)
    c[:3, :3] = 0.9
    c[3:, 3:] = 0.9
    p = rules._propagate(p0, c, k=2, beta=0.8)
    assert p[2].argmax() == 0
    assert p.sum(axis=1) == pytest.approx(1.0)
