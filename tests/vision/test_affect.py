from __future__ import annotations

import numpy as np
import pytest

from edge_fer import EMOTIONS
from edge_fer.vision.affect import valence_arousal, valence_arousal_batch


def onehot(label: str) -> np.ndarray:
    return np.eye(len(EMOTIONS), dtype=np.float32)[EMOTIONS.index(label)]


@pytest.mark.parametrize(
    ("label", "valence_sign", "arousal_sign"),
    [("happy", 1, 1), ("sad", -1, -1), ("angry", -1, 1), ("fear", -1, 1), ("surprise", 1, 1), ("neutral", 0, 0)],
)
def test_circumplex_quadrants(label: str, valence_sign: int, arousal_sign: int) -> None:
    valence, arousal = valence_arousal(onehot(label), EMOTIONS)
    assert np.sign(round(valence, 6)) == valence_sign and np.sign(round(arousal, 6)) == arousal_sign


def test_mixture_is_the_expectation_and_batch_agrees() -> None:
    probs = 0.5 * onehot("happy") + 0.5 * onehot("sad")
    valence, arousal = valence_arousal(probs, EMOTIONS)
    assert valence == pytest.approx(0.05) and arousal == pytest.approx(0.05)
    batch = valence_arousal_batch(np.stack([onehot("happy"), probs]), EMOTIONS)
    assert batch.shape == (2, 2) and batch[1, 0] == pytest.approx(valence)
    assert valence_arousal(np.ones(2, np.float32), ["happy", "unknown-label"]) == pytest.approx((0.8, 0.5))
