"""Per-track AU baselines: the prior first, then the track's own calm frames; blinks versus closed eyes."""

from __future__ import annotations

import numpy as np
import pytest

from edge_fer.temporal.au_baseline import ActionUnitTracker
from edge_fer.vision.action_units import AU_NAMES, NEUTRAL_PRIOR
from edge_fer.vision.face_geometry import MEASURES

WIDE_MOUTH = NEUTRAL_PRIOR + np.where(np.array(MEASURES) == "mouth_w", 0.12, 0.0)  # a person whose mouth is wide at rest
CLOSED_EYES = NEUTRAL_PRIOR + np.where(np.array(MEASURES) == "eye_open", -0.08, 0.0)


def au(values: np.ndarray, name: str) -> float:
    return float(values[AU_NAMES.index(name)])


def test_a_new_track_is_measured_against_the_prior_then_against_its_own_calm_face() -> None:
    tracker = ActionUnitTracker()
    np.testing.assert_allclose(tracker.baseline(7), NEUTRAL_PRIOR)
    first = tracker.update(7, WIDE_MOUTH, 0.0, calm=True)
    assert au(first, "AU12") > 0.2  # a wide mouth reads as a smile against the population
    for i in range(1, 300):  # 10 s of calm frames at 30 frames/s
        last = tracker.update(7, WIDE_MOUTH, i / 30, calm=True)
    assert au(last, "AU12") < 0.25 * au(first, "AU12")  # …and mostly as this person's resting face once known
    np.testing.assert_allclose(tracker.baseline(7), WIDE_MOUTH, atol=0.03)


def test_frames_that_are_not_calm_do_not_move_the_baseline() -> None:
    tracker = ActionUnitTracker()
    for i in range(300):
        tracker.update(1, WIDE_MOUTH, i / 30, calm=False)  # e.g. the classifier never reads neutral
    np.testing.assert_allclose(tracker.baseline(1), NEUTRAL_PRIOR)


def test_baseline_weight_is_time_not_frames() -> None:
    """Five seconds of calm frames move the baseline as far at 15 as at 60 frames/s."""
    baselines = []
    for fps in (15, 60):
        tracker = ActionUnitTracker()
        for i in range(5 * fps):
            tracker.update(1, WIDE_MOUTH, i / fps, calm=True)
        baselines.append(tracker.baseline(1))
    np.testing.assert_allclose(baselines[0], baselines[1], atol=0.005)


def test_a_brief_closure_is_a_blink_and_a_long_one_closed_eyes() -> None:
    tracker = ActionUnitTracker(blink_max_ms=400)
    for i in range(30):
        tracker.update(1, NEUTRAL_PRIOR, i / 30, calm=True)
    blink = [tracker.update(1, CLOSED_EYES, 1.0 + i / 30, calm=True) for i in range(6)]  # 200 ms closed
    assert all(au(a, "AU45") > 0.9 and au(a, "AU43") == 0.0 for a in blink)
    opened = tracker.update(1, NEUTRAL_PRIOR, 1.2, calm=True)
    assert au(opened, "AU45") == 0.0 and au(opened, "AU43") == 0.0
    closed = [tracker.update(1, CLOSED_EYES, 2.0 + i / 30, calm=True) for i in range(30)]  # 1 s closed
    assert au(closed[3], "AU45") > 0.9  # a blink, as far as anyone can tell yet
    assert au(closed[-1], "AU43") > 0.9 and au(closed[-1], "AU45") == 0.0
    np.testing.assert_allclose(
        tracker.baseline(1)[MEASURES.index("eye_open")], NEUTRAL_PRIOR[MEASURES.index("eye_open")], atol=1e-3
    )  # closed eyes are not calm


def test_forget_and_arguments() -> None:
    tracker = ActionUnitTracker()
    tracker.update(3, WIDE_MOUTH, 0.0, calm=True)
    tracker.forget([3])
    np.testing.assert_allclose(tracker.baseline(3), NEUTRAL_PRIOR)
    with pytest.raises(ValueError, match="baseline_s"):
        ActionUnitTracker(baseline_s=0)
