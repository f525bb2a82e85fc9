from __future__ import annotations

import numpy as np
import pytest

from edge_fer.temporal.aggregate import Aggregator
from edge_fer.types import FaceObservation, Tracks

LABELS = ("happy", "sad")


def tracks(ids: list[int], seen: list[bool] | None = None) -> Tracks:
    n = len(ids)
    return Tracks(
        ids=np.array(ids, np.int64),
        boxes=np.zeros((n, 4), np.float32),
        keypoints=np.zeros((n, 6, 2), np.float32),
        first_seen=np.zeros(n),
        hits=np.ones(n, np.int64),
        seen=np.array(seen if seen is not None else [True] * n, bool),
    )


def obs(track_id: int, t: float, happy: float, valence: float = 0.0) -> FaceObservation:
    probs = np.array([happy, 1 - happy], np.float32)
    return FaceObservation(track_id, t, LABELS, probs, LABELS[int(np.argmax(probs))], float(probs.max()), valence, 0.1)


def test_window_summary_counts_and_mean_shares() -> None:
    agg = Aggregator(LABELS, window_s=1.0, min_faces=1)
    agg.add(0.0, tracks([1]), [obs(1, 0.0, 1.0, 0.8)])
    agg.add(0.5, tracks([1, 2]), [obs(1, 0.5, 1.0, 0.8), obs(2, 0.5, 0.0, -0.6)])
    assert not agg.due(0.9)
    assert agg.due(1.0)
    s = agg.flush(1.0)
    assert s is not None
    assert (s.frames, s.faces_max, s.faces_distinct, s.observations) == (2, 2, 2, 3)
    assert s.emotion_shares == pytest.approx({"happy": 2 / 3, "sad": 1 / 3})
    assert s.mean_valence == pytest.approx((0.8 + 0.8 - 0.6) / 3)
    assert s.dwell_s == pytest.approx(0.5 * 2)
    assert s.fps == pytest.approx(2.0)
    assert not s.suppressed


def test_min_faces_suppresses_shares_but_keeps_counts() -> None:
    agg = Aggregator(LABELS, window_s=1.0, min_faces=3)
    agg.add(0.0, tracks([1, 2]), [obs(1, 0.0, 1.0), obs(2, 0.0, 0.0)])
    s = agg.flush(1.0)
    assert s is not None and s.suppressed
    assert s.faces_distinct == 2 and s.observations == 2
    assert s.emotion_shares is None and s.mean_valence is None and s.mean_arousal is None


def test_empty_window_and_coasting_tracks() -> None:
    agg = Aggregator(LABELS, window_s=1.0)
    assert agg.flush(0.0) is None
    agg.add(0.0, tracks([1], seen=[False]), [])
    s = agg.flush(1.0)
    assert s is not None and s.faces_distinct == 0 and s.emotion_shares is None and not s.suppressed


def test_track_summary_on_end() -> None:
    agg = Aggregator(LABELS, window_s=10.0)
    agg.add(0.0, tracks([7]), [obs(7, 0.0, 0.9, 0.5)])
    agg.add(2.0, tracks([7]), [obs(7, 2.0, 0.7, 0.3)])
    (summary,) = agg.end_tracks([7, 99])
    assert summary.track_id == 7 and summary.duration_s == pytest.approx(2.0)
    assert summary.dominant_emotion == "happy" and summary.mean_valence == pytest.approx(0.4)
    assert agg.end_tracks([7]) == []


@pytest.mark.parametrize(("kwargs", "message"), [({"window_s": 0}, "window_s"), ({"min_faces": 0}, "min_faces")])
def test_constructor_validates(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Aggregator(LABELS, **kwargs)  # type: ignore[arg-type]


def test_attention_share_and_dwell_while_attending() -> None:
    """Two faces for 1 s at 2 frames/s: one always turned towards the camera, the other only in
    the second half and unsure of its expression (attention does not depend on the expression)."""
    from dataclasses import replace

    agg = Aggregator(LABELS, window_s=1.0)
    for t, second in ((0.0, False), (0.5, True), (1.0, True)):
        a = replace(obs(1, t, 0.9), attending=True)
        b = replace(obs(2, t, 0.55), attending=second, uncertain=True)
        agg.add(t, tracks([1, 2]), [a, b])
    s = agg.flush(1.0)
    assert s is not None
    assert s.attention_share == pytest.approx(5 / 6)
    assert s.attending_s == pytest.approx(2.0)  # both attend in both 0.5-s intervals (the first frame adds no time)
    assert s.dwell_s == pytest.approx(2.0)
    agg.add(1.5, tracks([1]), [obs(1, 1.5, 0.9)])  # no mesh: attention unknown
    s = agg.flush(2.0)
    assert s is not None and s.attention_share is None and s.attending_s is None


def test_attention_is_withheld_below_min_faces() -> None:
    from dataclasses import replace

    agg = Aggregator(LABELS, window_s=1.0, min_faces=2)
    agg.add(0.0, tracks([1]), [replace(obs(1, 0.0, 0.9), attending=True)])
    agg.add(0.5, tracks([1]), [replace(obs(1, 0.5, 0.9), attending=True)])
    s = agg.flush(1.0)
    assert s is not None and s.suppressed and s.attention_share is None and s.attending_s is None and s.dwell_s == pytest.approx(0.5)
