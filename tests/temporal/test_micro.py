"""The micro-expression spotter on generated probability series with known intervals."""

from __future__ import annotations

import numpy as np
import pytest

from edge_fer import EMOTIONS
from edge_fer.temporal.micro import MicroSpotter
from edge_fer.types import MicroExpression

NEUTRAL = np.array([0.02, 0.01, 0.02, 0.05, 0.05, 0.02, 0.83])


def with_expression(emotion: str, strength: float) -> np.ndarray:
    p = NEUTRAL * (1 - strength)
    p[EMOTIONS.index(emotion)] += strength
    return p


def run(fps: float, seconds: float, events: list[tuple[float, float, str, float]], drop: tuple[float, float] | None = None) -> list[MicroExpression]:
    """Feed `seconds` of frames at `fps`; each event (start, end, emotion, strength) replaces
    the neutral face in [start, end); frames inside `drop` are never delivered."""
    spotter = MicroSpotter(EMOTIONS)
    found: list[MicroExpression] = []
    for i in range(int(seconds * fps)):
        t = i / fps
        if drop and drop[0] <= t < drop[1]:
            continue
        probs = NEUTRAL
        for start, end, emotion, strength in events:
            if start <= t < end:
                probs = with_expression(emotion, strength)
        found += spotter.update([], {1: probs}, t)
    return found


def iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


@pytest.mark.parametrize("fps", [15, 30, 60])
def test_a_brief_expression_is_spotted_at_any_frame_rate(fps: float) -> None:
    (spot,) = run(fps, 4.0, [(2.0, 2.2, "surprise", 0.7)])
    assert spot.emotion == "surprise" and spot.track_id == 1
    assert iou((spot.onset_t, spot.offset_t), (2.0, 2.2)) >= 0.5  # a hit by the MEGC convention
    assert spot.onset_t <= spot.apex_t <= spot.offset_t
    assert 0.5 < spot.intensity <= 1.0
    assert 100 <= spot.duration_ms <= 300


def test_sustained_expressions_and_single_frame_flickers_are_not_micro() -> None:
    assert run(30, 6.0, [(2.0, 4.0, "happy", 0.8)]) == []  # macro-expression, 2 s
    assert run(60, 4.0, [(2.0, 2.0 + 1 / 60, "fear", 0.8)]) == []  # one 17-ms frame: shorter than 40 ms
    assert run(30, 4.0, [(2.0, 2.2, "happy", 0.2)]) == []  # too small a departure


def test_back_to_back_expressions_are_two_spots() -> None:
    spots = run(30, 5.0, [(2.0, 2.2, "happy", 0.7), (2.5, 2.7, "angry", 0.7)])
    assert [s.emotion for s in spots] == ["happy", "angry"]
    assert iou((spots[1].onset_t, spots[1].offset_t), (2.5, 2.7)) >= 0.5


def test_nothing_is_spotted_before_the_track_has_a_baseline() -> None:
    assert run(30, 3.0, [(0.1, 0.3, "surprise", 0.8)]) == []  # a spot at the start of a track
    assert len(run(30, 3.0, [(0.1, 0.3, "surprise", 0.8), (1.5, 1.7, "surprise", 0.8)])) == 1


def test_dropped_frames_cancel_the_episode_instead_of_guessing() -> None:
    assert run(30, 4.0, [(2.0, 2.3, "sad", 0.7)], drop=(2.1, 2.5)) == []
    assert len(run(30, 4.0, [(2.0, 2.2, "sad", 0.7)], drop=(1.0, 1.2))) == 1  # a gap elsewhere is harmless


def test_neutral_rising_is_not_an_expression_and_arguments_are_checked() -> None:
    spotter = MicroSpotter(EMOTIONS)
    calm = with_expression("happy", 0.6)
    for i in range(60):
        spotter.update([], {1: calm}, i / 30)
    assert all(spotter.update([], {1: NEUTRAL}, 2.0 + i / 30) == [] for i in range(6))
    with pytest.raises(ValueError, match="min_ms"):
        MicroSpotter(EMOTIONS, min_ms=600)
    with pytest.raises(ValueError, match="offset"):
        MicroSpotter(EMOTIONS, onset=0.1, offset=0.2)
