from __future__ import annotations

import numpy as np
import pytest

from edge_fer import EMOTIONS
from edge_fer.vision.affect import AU_WEIGHT, CIRCUMPLEX, affect, au_emotion_scores


def onehot(label: str) -> np.ndarray:
    return np.eye(len(EMOTIONS), dtype=np.float32)[EMOTIONS.index(label)]


@pytest.mark.parametrize(
    ("label", "valence_sign", "arousal_sign"),
    [("happy", 1, 1), ("sad", -1, -1), ("angry", -1, 1), ("fear", -1, 1), ("surprise", 1, 1), ("neutral", 0, 0)],
)
def test_circumplex_quadrants(label: str, valence_sign: int, arousal_sign: int) -> None:
    valence, arousal = affect(onehot(label), EMOTIONS)
    assert np.sign(round(valence, 6)) == valence_sign and np.sign(round(arousal, 6)) == arousal_sign


def test_mixture_is_the_expectation() -> None:
    probs = 0.5 * onehot("happy") + 0.5 * onehot("sad")
    valence, arousal = affect(probs, EMOTIONS)
    assert valence == pytest.approx(0.05) and arousal == pytest.approx(0.05)
    assert affect(np.ones(2, np.float32), ["happy", "unknown-label"]) == pytest.approx((0.8, 0.5))


def test_neutral_is_the_origin_and_mixtures_stay_in_range() -> None:
    assert affect(onehot("neutral"), EMOTIONS) == pytest.approx((0.0, 0.0))
    rng = np.random.default_rng(0)
    for probs in rng.dirichlet(np.ones(len(EMOTIONS)), 200).astype(np.float32):
        valence, arousal = affect(probs, EMOTIONS)
        assert abs(valence) <= 1 and abs(arousal) <= 1
    # unnormalised input is still clipped to [-1, 1]
    assert affect(3 * onehot("happy"), EMOTIONS) == pytest.approx((1.0, 1.0))


@pytest.mark.parametrize(
    ("probs", "labels"),
    [(np.ones(6, np.float32), EMOTIONS), (np.ones((2, 7), np.float32), EMOTIONS), (np.ones(7, np.float32), ("happy",))],
)
def test_shape_mismatch_is_refused(probs: np.ndarray, labels: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="shape"):
        affect(probs, labels)


def test_label_spellings() -> None:
    ferplus = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
    sad = np.eye(8, dtype=np.float32)[3]
    assert affect(sad, ferplus) == affect(onehot("sad"), EMOTIONS)
    assert affect(np.eye(8, dtype=np.float32)[7], ferplus)[0] < 0  # contempt


def test_action_units_pull_the_point_towards_their_prototype() -> None:
    """An uncertain classifier (uniform) with a broad smile in the geometry reads pleasant; the
    same probabilities with a frown read unpleasant; no AUs: the classifier's point alone."""
    uniform = np.full(len(EMOTIONS), 1 / len(EMOTIONS), np.float32)
    plain = affect(uniform, EMOTIONS)
    assert plain == pytest.approx(tuple(np.mean([CIRCUMPLEX[e] for e in EMOTIONS], axis=0)))  # the expectation
    smile = affect(uniform, EMOTIONS, {"AU6": 0.8, "AU12": 0.9})
    frown = affect(uniform, EMOTIONS, {"AU4": 0.9, "AU15": 0.6, "AU1": 0.5})
    assert smile[0] > plain[0] + 0.2 and frown[0] < plain[0] - 0.05
    at_rest = affect(onehot("happy"), EMOTIONS, {au: 0.0 for au in ("AU6", "AU12")})
    assert at_rest[0] == pytest.approx((1 - AU_WEIGHT) * 0.8)  # a resting face pulls towards neutral (0, 0)
    assert all(-1 <= v <= 1 for v in smile + frown)


def test_au_prototype_scores() -> None:
    scores = dict(zip(EMOTIONS, au_emotion_scores({"AU1": 0.8, "AU2": 0.8, "AU26": 0.8}, EMOTIONS)))
    assert max(scores, key=lambda k: scores[k]) == "surprise" and scores["neutral"] == pytest.approx(0.2)
    assert scores["disgust"] == 0.0  # no prototype: AU9/AU10 are not estimated
    happy = dict(zip(EMOTIONS, au_emotion_scores({"AU6": 0.6, "AU12": 0.8}, EMOTIONS)))
    assert max(happy, key=lambda k: happy[k]) == "happy"
