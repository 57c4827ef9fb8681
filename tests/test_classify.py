import pytest

from sam_detect.classify import vote, vote_batch
from sam_detect.instances import NEGATIVE, UNKNOWN
from sam_detect.store.base import Neighbour


def n(label, score):
    return Neighbour(id=f"{label}{score}", score=score, label=label)


def test_similarity_weighted_majority():
    v = vote([n("a", 0.9), n("b", 0.85), n("b", 0.8)], threshold=0.5)
    assert v.label == "b"
    assert v.confidence == pytest.approx(1.65 / 2.55)
    assert v.similarity == pytest.approx(0.85)


def test_top_k_limits_the_vote():
    hits = [n("a", 0.9), n("b", 0.85), n("b", 0.8)]
    assert vote(hits, threshold=0.5, top_k=1).label == "a"


def test_below_threshold_is_unknown():
    v = vote([n("a", 0.3)], threshold=0.5)
    assert v.label == UNKNOWN and v.confidence == 0.0 and v.similarity == pytest.approx(0.3)
    assert vote([], threshold=0.5).label == UNKNOWN


def test_neighbours_below_threshold_do_not_vote():
    v = vote([n("a", 0.9), n("b", 0.4), n("b", 0.4)], threshold=0.5)
    assert v.label == "a" and v.confidence == pytest.approx(1.0)


def test_negative_examples_win_when_closest():
    v = vote([n(NEGATIVE, 0.95), n("cell", 0.7)], threshold=0.5)
    assert v.label == NEGATIVE


def test_batch():
    labels, conf, sim = vote_batch([[n("a", 0.9)], [n("b", 0.1)]], threshold=0.5)
    assert labels == ["a", UNKNOWN]
    assert conf.dtype.name == "float32" and sim[1] == pytest.approx(0.1)
