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


def test_a_prior_chooses_between_object_classes_but_not_against_a_negative():
    hits = [n("a", 0.9), n("b", 0.85), n("b", 0.8)]
    v = vote(hits, threshold=0.5, prior={"a": 1.0, "b": 0.4})  # b's examples are another size
    assert v.label == "a"
    assert v.confidence == pytest.approx(0.9 / 2.55)  # the share of the vote, as without the prior
    assert vote(hits, threshold=0.5, prior={"a": 1.0, "b": 0.6}).label == "b"  # 1.65 x 0.6 > 0.9
    neg = [n(NEGATIVE, 0.95), n("cell", 0.7), n("dot", 0.6)]
    assert vote(neg, threshold=0.5, prior={"cell": 0.1, "dot": 1.0}).label == NEGATIVE
    labels, _, _ = vote_batch([hits, hits], threshold=0.5, priors=[None, {"b": 0.4}])
    assert labels == ["b", "a"]


def test_size_priors_weigh_each_class_by_how_its_examples_size_fits():
    import numpy as np

    from sam_detect.instances import Instances
    from sam_detect.profile import size_priors

    masks = np.zeros((3, 100, 100), bool)
    masks[0, 10:14, 10:14] = True  # 16 px
    masks[1, 40:70, 40:70] = True  # 900 px
    masks[2, 0:30, 70:100] = True  # 900 px, cut by the border
    inst = Instances(masks=masks)
    entry = {"small": {"log_area": [np.log(16.0), 0.3]}, "large": {"log_area": [np.log(900.0), 0.3]}}
    pri = size_priors(inst, {"classes": entry})
    assert pri[0]["small"] > 0.99 > 0.25 > pri[0]["large"]
    assert pri[1]["large"] > 0.99 > 0.25 > pri[1]["small"]
    assert pri[2] is None  # its area is not its own
    assert size_priors(inst, {"classes": {"small": entry["small"]}}) is None  # one class: nothing to choose


def test_classes_of_one_size_are_told_apart_by_their_look_alone():
    import numpy as np

    from sam_detect.instances import Instances
    from sam_detect.profile import size_priors

    masks = np.zeros((1, 60, 60), bool)
    masks[0, 20:38, 20:38] = True  # 324 px: between the two classes' sizes
    entry = {"disc": {"log_area": [np.log(376.0), 0.4]}, "square": {"log_area": [np.log(315.0), 0.5]}}
    pri = size_priors(Instances(masks=masks), {"classes": entry})
    assert pri[0] == {"disc": 1.0, "square": 1.0}  # within a spread of both: no say
    close = [n("disc", 0.95), n("square", 0.94), n("disc", 0.93), n("square", 0.93)]
    assert vote(close, threshold=0.5, prior=pri[0]).label == "disc"
