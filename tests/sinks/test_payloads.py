"""The payload whitelist: what could carry an image, an embedding or landmarks never passes."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_fer.errors import PublishError
from edge_fer.sinks.payloads import (
    availability_event,
    check_payload,
    micro_event,
    stats_event,
    summary_event,
    track_event,
)
from edge_fer.types import MicroExpression, TrackSummary, WindowSummary

SUMMARY = WindowSummary(
    start_t=0.0, end_t=10.0, frames=240, fps=24.0, faces_max=2, faces_distinct=3, dwell_s=14.5, observations=300,
    emotion_shares={"happy": 0.6, "neutral": 0.4}, mean_valence=0.48, mean_arousal=0.3, micro_expressions=1,
)  # fmt: skip


def test_summary_contract() -> None:
    event = summary_event(SUMMARY)
    assert (event.topic, event.qos, event.retain, event.durable) == ("summary", 1, False, True)
    stamped = event.stamped("kiosk", 7)
    payload = stamped.payload
    assert payload is not None
    assert payload["schema"] == 1 and payload["device"] == "kiosk" and payload["seq"] == 7
    assert payload["ts"].endswith("Z") and "T" in payload["ts"]
    assert payload["faces"] == {
        "max": 2,
        "distinct": 3,
        "dwell_s": 14.5,
        "attending_s": None,
        "observations": 300,
        "uncertain": 0,
        "truncated": 0,
        "low_quality": 0,
    }
    assert payload["emotions"] == {"happy": 0.6, "neutral": 0.4}
    assert json.loads(stamped.body()) == payload


def test_low_quality_is_published_as_a_count_and_nothing_else() -> None:
    """The face-quality gate's field is one integer; whatever else a bug put there (the crop
    it measured, its measures as an array) is refused by the guard."""
    payload = summary_event(replace(SUMMARY, low_quality=42)).payload
    assert payload is not None and payload["faces"]["low_quality"] == 42 and isinstance(payload["faces"]["low_quality"], int)
    for leak in (np.zeros((48, 48), np.uint8), np.zeros(3, np.float32), b"\x89PNG\r\n\x1a\n", [0.5] * 100):
        with pytest.raises(PublishError):
            summary_event(replace(SUMMARY, low_quality=leak))  # type: ignore[arg-type]


def test_other_builders() -> None:
    track = track_event(TrackSummary(3, 1.0, 4.5, "happy", {"happy": 0.9, "sad": 0.1}, 0.7, 80)).payload
    assert track == {"track_id": 3, "duration_s": 3.5, "observations": 80, "dominant_emotion": "happy",
                     "emotions": {"happy": 0.9, "sad": 0.1}, "mean_valence": 0.7}  # fmt: skip
    micro = micro_event(MicroExpression(2, "surprise", 10.0, 10.1, 10.3, 0.8)).payload
    assert micro is not None and micro["duration_ms"] == pytest.approx(300.0) and micro["apex_ms"] == pytest.approx(100.0)
    assert micro["action_units"] is None
    stats = stats_event({"fps": 24.0, "stages_ms": {"detect": 1.2}})
    assert (stats.qos, stats.retain, stats.durable) == (0, True, False)
    assert availability_event(False).body() == b"offline"


@pytest.mark.parametrize(
    "payload",
    [
        {"crop": np.zeros((48, 48), np.uint8)},
        {"thumbnail": b"\xff\xd8\xff\xe0"},
        {"landmarks": [0.1] * 1404},
        {"embedding": [[0.1] * 4] * 128},
        {"image": base64.b64encode(b"x" * 300).decode()},
        {"a": {"b": {"c": {"d": 1}}}},
        {"nan": float("nan")},
        {"many": {f"k{i}": i for i in range(100)}},
        {"big": {f"{'k' * 50}{i}": "x" * 60 for i in range(40)}},
        {"array_scalar_list": list(np.arange(20))},
        {1: "non-string key"},
    ],
)
def test_guard_refuses_anything_that_could_carry_image_data(payload: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(PublishError):
        check_payload(payload)


json_leaf = st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=100)
junk = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=24) | st.dictionaries(st.text(max_size=70), inner, max_size=50), max_leaves=60)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=20), junk, max_size=10))
def test_guard_either_refuses_or_passes_small_json(payload: dict) -> None:  # type: ignore[type-arg]
    try:
        check_payload(payload)
    except PublishError:
        return
    text = json.dumps(payload, separators=(",", ":"), allow_nan=False)  # as on the wire
    assert len(text) <= 4096
    assert json.loads(text) == payload


def test_new_fields_are_scalars_only() -> None:
    """Action units reach a micro-expression event as at most nine named scalars, attention a
    summary as two numbers; head pose and landmarks have no field anywhere."""
    aus = {"AU1": 0.61234, "AU2": 0.5, "AU12": 0.05}
    micro = micro_event(MicroExpression(2, "surprise", 10.0, 10.1, 10.3, 0.8, action_units=aus)).payload
    assert micro is not None and micro["action_units"] == {"AU1": 0.612, "AU2": 0.5, "AU12": 0.05}
    assert all(isinstance(v, float) for v in micro["action_units"].values())
    summary = summary_event(replace(SUMMARY, attention_share=0.75, attending_s=10.8765)).payload
    assert summary is not None and summary["attention_share"] == 0.75 and summary["faces"]["attending_s"] == 10.88
    for payload in (micro, summary):
        text = json.dumps(payload)
        assert "head_pose" not in text and "landmark" not in text and "yaw" not in text
    with pytest.raises(PublishError):  # a mistake that put a mesh into the AUs could not pass
        micro_event(MicroExpression(2, "surprise", 10.0, 10.1, 10.3, 0.8, action_units={"AU1": [0.1] * 1404}))  # type: ignore[dict-item]


def test_the_readme_summary_example_matches_the_payload() -> None:
    """The README's first example is what users copy into their consumers."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index('{"topic": "edge_fer/kiosk/summary"')
    example = json.loads(readme[start : readme.index("```", start)])
    payload = summary_event(SUMMARY).stamped("kiosk", 12).payload
    assert payload is not None
    assert set(example) - {"topic"} <= set(payload)
    assert set(example["window"]) == set(payload["window"])
    assert set(example["faces"]) <= set(payload["faces"])
