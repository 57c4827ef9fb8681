import pytest

from sam_detect.classify import retrieval_k, vote, vote_batch
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


def test_each_label_votes_with_its_own_nearest_examples():
    # one close square against many slightly farther discs: a 5-NN vote over every example
    # calls it a disc; with the library's counts each label's part is its own mean
    hits = [n("square", 0.9), *(n("disc", 0.85 - 0.01 * i) for i in range(8))]
    assert vote(hits, threshold=0.5, top_k=5).label == "disc"  # counts unknown: as before
    v = vote(hits, threshold=0.5, top_k=5, counts={"square": 1, "disc": 8})
    assert v.label == "square"
    disc = sum(0.85 - 0.01 * i for i in range(5)) / 5
    assert v.confidence == pytest.approx(0.9 / (0.9 + disc))
    # a label's nearest examples beyond the retrieved ones (or below its threshold) count 0
    v = vote([n("square", 0.9), n("disc", 0.85)], threshold=0.5, top_k=5, counts={"square": 2, "disc": 8})
    assert v.label == "square" and v.confidence == pytest.approx(0.45 / (0.45 + 0.17))
    v = vote([n("square", 0.9), n("square", 0.3), n("disc", 0.6), n("disc", 0.6)], threshold=0.5,
             top_k=5, counts={"square": 2, "disc": 2})
    assert v.label == "disc"  # 0.6 against (0.9 + 0) / 2
    # only each label's nearest top_k count, however many are passed
    hits = [n("a", 0.9), *(n("b", 0.8) for _ in range(10))]
    assert vote(hits, threshold=0.5, top_k=1, counts={"a": 5, "b": 50}).label == "a"


def test_retrieval_covers_every_label():
    assert retrieval_k(5, None) == 5
    assert retrieval_k(5, {"a": 3}) == 5  # never fewer than top_k
    assert retrieval_k(5, {"a": 30, "b": 2, NEGATIVE: 40}) == 15
    assert retrieval_k(5, {"a": 2, "b": 2}) == 5  # the library's size, but at least top_k
    assert retrieval_k(100, {f"c{i}": 100 for i in range(10)}) == 256  # capped ...
    assert retrieval_k(1000, {"a": 5000}) == 1000  # ... but never below top_k


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
    assert pri[0]["small"] > 0.99 > 0.3 > pri[0]["large"]
    assert pri[1]["large"] > 0.99 > 0.3 > pri[1]["small"]
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


def test_a_smaller_object_of_a_class_shown_large_keeps_its_class_by_its_look():
    """Five large examples of one class and a single small one of another (the stroma
    crop's connective and inflammatory nuclei): a nucleus of the first class smaller than
    its examples, within two of the class's log-area sds, is typed by its look, not handed
    to the class whose one example it is nearer in size."""
    import numpy as np

    from sam_detect.instances import Instances
    from sam_detect.profile import size_priors

    masks = np.zeros((1, 60, 60), bool)
    masks[0, 20:30, 20:35] = True  # 150 px
    entry = {"connective": {"log_area": [np.log(500.0), 0.445]}, "inflammatory": {"log_area": [np.log(60.0), 0.447]}}
    pri = size_priors(Instances(masks=masks), {"classes": entry})
    assert pri[0]["inflammatory"] == 1.0 and pri[0]["connective"] > 0.95
    look = [n("connective", 0.82), n("connective", 0.81), n("inflammatory", 0.78)]
    assert vote(look, threshold=0.5, top_k=2, prior=pri[0], counts={"connective": 5, "inflammatory": 1}).label \
        == "connective"


def test_a_class_s_brightness_types_objects_of_one_size_by_how_dark_they_are():
    """Dark lymphocytes and paler fibroblasts of one size (H&E): the look nearly ties, and
    each class's examples' brightness (median grey less the image's) chooses; not for bright
    (fluorescent) classes."""
    import numpy as np

    from sam_detect.instances import Instances
    from sam_detect.profile import size_priors

    masks = np.zeros((2, 60, 60), bool)
    masks[0, 10:25, 10:25] = True
    masks[1, 30:45, 30:45] = True
    inst = Instances(masks=masks)
    inst.data["brightness"] = np.float32([-95.0, -30.0])  # a dark one, a pale one
    entry = {"dark": {"log_area": [np.log(225.0), 0.3], "brightness": [-90.0, 8.0], "polarity": "dark"},
             "pale": {"log_area": [np.log(225.0), 0.3], "brightness": [-35.0, 10.0], "polarity": "dark"}}
    pri = size_priors(inst, {"classes": entry})
    assert pri[0]["dark"] == 1.0 and pri[0]["pale"] < 0.5  # 5.5 sds off the pale examples
    assert pri[1]["pale"] == 1.0 and pri[1]["dark"] < 0.5
    look = [n("pale", 0.83), n("dark", 0.82), n("pale", 0.81), n("dark", 0.80)]
    assert vote(look, threshold=0.5, top_k=2, prior=pri[0]).label == "dark"
    assert vote(look, threshold=0.5, top_k=2, prior=pri[1]).label == "pale"
    # within two spreads of both (judged at no less than PRIOR_BRIGHTNESS_SD): no say
    near = {"dark": {**entry["dark"], "brightness": [-90.0, 15.0]}, "pale": {**entry["pale"], "brightness": [-52.0, 6.0]}}
    inst.data["brightness"] = np.float32([-66.0, -66.0])  # 1.6 of the dark's spreads, 1.75 of the pale's floor
    assert size_priors(inst, {"classes": near})[0] == {"dark": 1.0, "pale": 1.0}
    # a class whose examples were added before their brightness was kept: the size alone
    inst.data["brightness"] = np.float32([-95.0, -30.0])
    old = {"dark": entry["dark"], "pale": {"log_area": entry["pale"]["log_area"], "polarity": "dark"}}
    assert size_priors(inst, {"classes": old})[0] == {"dark": 1.0, "pale": 1.0}
    # bright classes (fluorescence): a brightness follows each image's exposure, not the class
    bright = {k: {**v, "polarity": "bright"} for k, v in entry.items()}
    assert size_priors(inst, {"classes": bright})[0] == {"dark": 1.0, "pale": 1.0}
    del inst.data["brightness"]  # candidates not measured: the size alone
    assert size_priors(inst, {"classes": entry})[0] == {"dark": 1.0, "pale": 1.0}


def test_brightness_is_each_object_s_median_grey_less_its_image_s():
    import numpy as np

    from sam_detect.instances import Instances
    from sam_detect.profile import brightness, with_brightness

    rgb = np.full((80, 80, 3), 200, np.uint8)
    lab = np.zeros((80, 80), np.int32)
    lab[10:20, 10:20], lab[40:60, 40:60] = 1, 2
    rgb[lab == 1] = 60
    rgb[lab == 2] = (120, 130, 110)
    inst, _ = Instances.from_label_image(lab)
    got = brightness(rgb, inst)
    assert got.dtype == np.float32 and got.shape == (2,)
    assert got[0] == -140.0 and -77.0 <= got[1] <= -73.0  # luminance of (120, 130, 110): ~125
    blue = np.zeros_like(rgb)  # one channel shown in one colour (a DAPI frame): read in its channel
    blue[..., 2] = rgb[..., 0]
    assert brightness(blue, inst)[0] == -140.0
    assert brightness(rgb, inst[:0]).shape == (0,)
    # measured only where two or more classes each know their examples'
    a, b = {"brightness": [0.0, 1.0], "polarity": "dark"}, {"brightness": [5.0, 1.0], "polarity": "dark"}
    assert "brightness" in with_brightness(rgb, inst[:], {"classes": {"a": a, "b": b}}).data
    # one class; a class without it (added before it was kept); a bright class; no profile
    for profile in ({"classes": {"a": a}}, {"classes": {"a": a, "b": {"polarity": "dark"}}},
                    {"classes": {"a": a, "b": {**b, "polarity": "bright"}}}, None):
        assert "brightness" not in with_brightness(rgb, inst[:], profile).data
