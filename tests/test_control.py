"""Remote commands: strict parsing, fuzzed payloads, and the round trip through a real broker."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.publish as publish
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_fer.capture import CaptureThread
from edge_fer.config import load_settings
from edge_fer.control import LIVE_KEYS, CommandError, CommandInbox, apply_set, parse_command
from edge_fer.pipeline import LIVE_SETTINGS, FrameResult, Pipeline
from edge_fer.runner import Runner
from edge_fer.sinks.payloads import Event, check_payload, cmd_result_event
from edge_fer.types import MicroExpression, Tracks, TrackSummary
from tests.conftest import Broker, Collector


@pytest.mark.parametrize(
    ("name", "payload", "fragment"),
    [
        ("reboot", b"", "unknown command"),
        ("set", b"", "needs at least one key"),
        ("set", b"{", "not valid JSON"),
        ("set", b"\xff\xfe", "not valid JSON"),
        ("set", b"[1, 2]", "JSON object"),
        ("set", b'{"mqtt.host": "evil"}', "not live-tunable"),
        ("set", b'{"aggregate.window_s": [1]}', "number or a string"),
        ("set", b'{"aggregate.window_s": true}', "number or a string"),
        ("pause", b'{"now": 1}', "takes no arguments"),
        ("status", b'{"id": 5}', "id must be a string"),
        ("set", b"x" * 5000, "at most 4096"),
    ],
)
def test_malformed_commands_are_refused_with_a_reason(name: str, payload: bytes, fragment: str) -> None:
    with pytest.raises(CommandError, match=fragment):
        parse_command(name, payload)


def test_valid_commands() -> None:
    assert parse_command("pause", b"").name == "pause"
    assert parse_command("status", b'{"id": "r1"}').request_id == "r1"
    cmd = parse_command("set", b'{"aggregate.window_s": 5, "aggregate.privacy_level": "events"}')
    new = apply_set(load_settings(environ={}), cmd.values)
    assert new.aggregate.window_s == 5 and new.aggregate.privacy_level == "events"
    with pytest.raises(CommandError, match="aggregate.window_s"):
        apply_set(load_settings(environ={}), {"aggregate.window_s": -1})
    with pytest.raises(CommandError, match="aggregate.privacy_level"):
        apply_set(load_settings(environ={}), {"aggregate.privacy_level": "everything"})


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["pause", "resume", "status", "set", "", "x" * 80, "set/../x"]), st.binary(max_size=300))
def test_fuzzed_payloads_only_ever_give_command_errors(name: str, payload: bytes) -> None:
    try:
        cmd = parse_command(name, payload)
    except CommandError as exc:
        event = cmd_result_event(name, False, str(exc), None, **({"allowed": list(exc.allowed)} if exc.allowed else {}))
        assert event.payload is not None
        check_payload(event.payload)  # every answer passes the privacy guard
        return
    assert cmd.name in ("pause", "resume", "status", "set")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from([*LIVE_KEYS, "id", "other"]), json_values, max_size=4))
def test_fuzzed_set_objects_are_applied_or_refused_never_crash(data: dict) -> None:  # type: ignore[type-arg]
    base = load_settings(environ={})
    try:
        cmd = parse_command("set", json.dumps(data).encode())
        new = apply_set(base, cmd.values)
    except (CommandError, ValueError):
        return
    assert new.mqtt == base.mqtt  # only live keys can change


def test_inbox_is_bounded() -> None:
    inbox = CommandInbox(maxsize=2)
    for _ in range(5):
        inbox.submit("status", b"")
    assert len(inbox.drain()) == 2 and inbox.dropped == 3


#: A new, valid value for every live key: a key added to `LIVE_SETTINGS` needs one here.
NEW_LIVE_VALUES = {
    "aggregate.window_s": 4.0,
    "aggregate.min_faces": 3,
    "aggregate.privacy_level": "events",
    "detector.score_threshold": 0.7,
    "classifier.every_n_frames": 5,
    "classifier.smoothing_s": 0.9,
    "classifier.min_confidence": 0.6,
}


class ListSink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def publish(self, event: Event) -> None:
        self.events.append(event)

    def close(self, timeout_s: float = 5.0) -> None:
        pass


def _never_opened() -> object:
    raise AssertionError("applying settings must not touch the source")


def test_every_live_key_reaches_the_stage_it_names(models_dir: Path) -> None:
    """One `set` command with every live key, through the runner as a remote command goes: each
    value lands in the pipeline attribute `LIVE_SETTINGS` names (the runner's own settings for
    privacy_level, which then lets track and micro-expression events out)."""
    assert set(NEW_LIVE_VALUES) == set(LIVE_KEYS)
    base = load_settings(environ={}, overrides={"models": {"dir": str(models_dir)}})
    for key, value in NEW_LIVE_VALUES.items():
        section, name = key.split(".")
        assert getattr(getattr(base, section), name) != value, f"{key}: pick a value that is a change"
    pipeline = Pipeline.from_settings(base)
    sink = ListSink()
    runner = Runner(base, pipeline, CaptureThread(_never_opened), [sink])  # type: ignore[arg-type]
    runner._apply(parse_command("set", json.dumps(NEW_LIVE_VALUES).encode()))
    for key, target in LIVE_SETTINGS.items():
        section, name = key.split(".")
        if target is None:
            assert getattr(getattr(runner.settings, section), name) == NEW_LIVE_VALUES[key], key
            continue
        stage: object = pipeline
        for part in target.split("."):
            stage = getattr(stage, part)
        assert stage == NEW_LIVE_VALUES[key], f"{key} did not reach {target}"
    assert [e.payload["min_faces"] for e in sink.events if e.topic == "privacy"] == [3]  # type: ignore[index]
    micro = MicroExpression(1, "happy", 1.0, 1.1, 1.2, 0.5)
    ended = TrackSummary(1, 0.0, 1.2, "happy", {"happy": 1.0}, 0.8, 10)
    runner._emit(FrameResult(5, 1.2, Tracks.empty(), (), (ended,), None, micro_expressions=(micro,)))
    assert {e.topic for e in sink.events} >= {"event/track", "event/micro_expression"}


def test_a_live_key_naming_a_missing_attribute_is_caught(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = Pipeline.from_settings(load_settings(environ={}, overrides={"models": {"dir": str(models_dir)}}))
    monkeypatch.setitem(LIVE_SETTINGS, "classifier.smoothing_s", "smoother.tau")  # a typo
    with pytest.raises(AttributeError, match="smoother.tau"):
        pipeline.apply(load_settings(environ={}))


def test_commands_round_trip_through_the_broker(broker: Broker, collector: Collector, run_env: dict[str, str], tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_fer", "run", "--source", "demo", "--sink", broker.url, "--duration", "20", "--window", "1"],
        env=run_env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert collector.wait_for(lambda ms: any(m.topic.endswith("/summary") for m in ms), 30)
        prefix = "edge_fer/test-device/cmd"

        def send(commands: list[tuple[str, bytes]]) -> None:
            for name, payload in commands:
                publish.single(f"{prefix}/{name}", payload, qos=1, hostname="127.0.0.1", port=broker.port)
                time.sleep(0.05)  # keeps the commands in order across separate connections

        send([("set", b'{"aggregate.min_faces": 5, "id": "k"}'), ("status", b'{"id": "s1"}')])
        # min_faces = 5 with one face on screen: later summaries carry counts but no emotions.
        assert collector.wait_for(lambda ms: any(m.topic.endswith("/summary") and m.json()["suppressed"] for m in ms), 30)
        send([("set", b"{not json"), ("launch", b""), ("pause", b""), ("status", b'{"id": "s2"}')])
        assert collector.wait_for(lambda ms: sum(m.topic.endswith("/cmd/result") for m in ms) >= 6, 30)
        results = [m.json() for m in collector.topic("/cmd/result")]
        by_id = {r["id"]: r for r in results if r["id"]}
        assert by_id["k"]["ok"] and by_id["k"]["applied"] == {"aggregate.min_faces": 5}
        assert by_id["s1"]["ok"] and by_id["s1"]["paused"] is False
        assert by_id["s2"]["paused"] is True
        errors = [r for r in results if not r["ok"]]
        assert {r["command"] for r in errors} == {"set", "launch"}
        assert next(r for r in errors if r["command"] == "launch")["allowed"] == ["pause", "resume", "status", "set"]
        privacy = [m.json() for m in collector.topic("/privacy")]
        assert privacy[-1]["min_faces"] == 5  # the retained audit record follows the change
        assert proc.poll() is None  # none of it crashed the service
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
