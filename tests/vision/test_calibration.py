"""Temperature scaling fitted on held-out data improves the expected calibration error."""

from __future__ import annotations

import numpy as np
import pytest

from edge_fer.vision.calibration import apply_temperature, expected_calibration_error, fit_temperature


def overconfident_sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 7-class model whose logits are too sharp: right ~61 % of the time, ~78 % sure on average."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 7, n)
    logits = rng.normal(0, 1, (n, 7))
    logits[np.arange(n), labels] += 1.6
    sharp = np.exp(3 * logits)
    return (sharp / sharp.sum(axis=1, keepdims=True)).astype(np.float32), labels


def test_fitted_temperature_improves_ece_on_held_out_data() -> None:
    fit_probs, fit_labels = overconfident_sample(4000, seed=1)
    test_probs, test_labels = overconfident_sample(4000, seed=2)  # a different sample
    temperature = fit_temperature(fit_probs, fit_labels)
    assert temperature > 1.5  # over-confident outputs are softened
    before = expected_calibration_error(test_probs, test_labels)
    after = expected_calibration_error(apply_temperature(test_probs, temperature), test_labels)
    assert before > 0.15 and after < 0.03 and after < before / 5
    # Ranking, hence accuracy, is unchanged.
    assert (apply_temperature(test_probs, temperature).argmax(1) == test_probs.argmax(1)).all()


def test_ece_of_a_perfectly_calibrated_and_an_always_wrong_model() -> None:
    probs = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    assert expected_calibration_error(probs, np.array([0, 1])) == 0.0
    assert expected_calibration_error(probs, np.array([1, 0])) == pytest.approx(1.0)
    assert expected_calibration_error(np.zeros((0, 2), np.float32), np.zeros(0, np.int64)) == 0.0


def test_temperature_one_is_identity_and_bad_values_are_refused() -> None:
    probs = np.array([[0.7, 0.3]], np.float32)
    assert apply_temperature(probs, 1.0) is probs
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature(probs, 0.0)
