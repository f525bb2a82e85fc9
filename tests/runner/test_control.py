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
from edge_fer.pipeline import LIVE_SETTINGS, FrameResult, Pipeline
from edge_fer.runner import Runner
from edge_fer.runner.control import LIVE_KEYS, CommandError, CommandInbox, apply_set, parse_command
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


@pytest.mark.parametrize(
    ("name", "payload", "fragment"),
    [
        ("reboot", b'{"id": "r1"}', "unknown command"),
        ("set", b'{"id": "r1"}', "needs at least one key"),
        ("set", b'{"id": "r1", "mqtt.host": "evil"}', "not live-tunable"),
        ("set", b'{"id": "r1", "aggregate.window_s": null}', "number or a string"),
        ("pause", b'{"id": "r1", "now": 1}', "takes no arguments"),
    ],
)
def test_refusals_carry_the_request_id(name: str, payload: bytes, fragment: str) -> None:
    with pytest.raises(CommandError, match=fragment) as info:
        parse_command(name, payload)
    assert info.value.request_id == "r1"


def test_types_are_strict_and_the_size_limit_is_the_whole_payload() -> None:
    base = load_settings(environ={})
    for values in ({"aggregate.min_faces": "3"}, {"aggregate.window_s": "5"}, {"classifier.every_n_frames": 2.5}):
        with pytest.raises(CommandError, match=next(iter(values))):
            apply_set(base, values)
    assert apply_set(base, {"aggregate.window_s": 5}).aggregate.window_s == 5.0  # a whole number is a number
    padded = b'{"aggregate.window_s": 5}' + b" " * 5000  # parses, but is too big
    with pytest.raises(CommandError, match="5025 bytes"):
        parse_command("set", padded)
    with pytest.raises(CommandError, match="5025 bytes"):
        parse_command("set", padded[:4097], size=len(padded))  # cut by the inbox: its size still counts


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


def test_inbox_is_bounded_and_refusals_wait_for_their_busy_answer() -> None:
    inbox = CommandInbox(maxsize=2, busy_max=2)
    for i in range(5):
        inbox.submit("status", f'{{"id": "c{i}"}}'.encode())
    assert [size for _, _, size in inbox.drain()] == [12, 12] and inbox.dropped == 3
    assert inbox.drain_busy(1) == ([("status", "c2")], 0)
    assert inbox.drain_busy(10) == ([("status", "c3")], 1)  # c4 came past busy_max: counted
    assert inbox.drain_busy(10) == ([], 0)


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


def test_retained_commands_are_ignored_and_bursts_all_answered(broker: Broker, collector: Collector, run_env: dict[str, str], tmp_path: Path) -> None:
    """A retained `pause` waiting on the broker, its clearing, 500 commands at once, refusals with
    ids, and the same command twice: against the real service and a real mosquitto."""
    prefix = "edge_fer/test-device/cmd"
    # (A zero-length retained message would only clear the topic: the retained pause has a body.)
    publish.single(f"{prefix}/pause", b"{}", qos=1, retain=True, hostname="127.0.0.1", port=broker.port)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_fer", "run", "--source", "demo", "--sink", broker.url, "--duration", "60", "--window", "1"],
        env=dict(run_env, EDGE_FER_AGGREGATE__STATS_INTERVAL_S="1"), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def results() -> dict[str, list[dict]]:  # type: ignore[type-arg]
        out: dict[str, list[dict]] = {}  # type: ignore[type-arg]
        for message in collector.topic("/cmd/result"):
            record = message.json()
            out.setdefault(record["id"], []).append(record)
        return out

    def ask(name: str, payload: bytes, request_id: str, retain: bool = False) -> dict:  # type: ignore[type-arg]
        publish.single(f"{prefix}/{name}", payload, qos=1, retain=retain, hostname="127.0.0.1", port=broker.port)
        assert collector.wait_for(lambda _: request_id in results(), 30), request_id
        return results()[request_id][-1]

    try:
        # Summaries flow: the retained pause was not obeyed.
        assert collector.wait_for(lambda ms: sum(m.topic.endswith("/summary") for m in ms) >= 2, 40)
        assert ask("status", b'{"id": "s0"}', "s0")["paused"] is False
        # Clearing it (an empty retained message, delivered live) does not pause either.
        publish.single(f"{prefix}/pause", None, qos=1, retain=True, hostname="127.0.0.1", port=broker.port)
        assert ask("status", b'{"id": "s1"}', "s1")["paused"] is False
        # 500 commands at once: every one is answered once, with its id.
        burst = [{"topic": f"{prefix}/status", "payload": f'{{"id": "b{i}"}}', "qos": 1} for i in range(500)]
        publish.multiple(burst, hostname="127.0.0.1", port=broker.port)  # type: ignore[arg-type]
        # One pass over the answers per check: the check runs on every message, and 500 passes
        # each time cost ~35 s of CPU here (test 40 s → 6 s), past the 60 s limit on a busy machine.
        wanted = {f"b{i}" for i in range(500)}
        assert collector.wait_for(lambda _: wanted <= results().keys(), 60)
        answers = results()
        assert all(len(answers[f"b{i}"]) == 1 for i in range(500))
        busy = [answers[f"b{i}"][0] for i in range(500) if not answers[f"b{i}"][0]["ok"]]
        assert all(r["message"].startswith("busy") for r in busy)
        # Refusals echo the id; strings are not numbers; the whole payload counts.
        assert "not live-tunable" in ask("set", b'{"id": "e1", "mqtt.host": "x"}', "e1")["message"]
        assert "unknown command" in ask("reboot", b'{"id": "e2"}', "e2")["message"]
        typed = ask("set", b'{"id": "e3", "aggregate.min_faces": "3"}', "e3")
        assert not typed["ok"] and "aggregate.min_faces" in typed["message"]
        publish.single(f"{prefix}/set", b'{"aggregate.min_faces": 3}' + b" " * 5000, qos=1, hostname="127.0.0.1", port=broker.port)
        assert collector.wait_for(lambda _: any("5026 bytes" in r["message"] for r in results().get(None, [])), 30)
        # The same command twice is harmless.
        assert ask("pause", b'{"id": "p1"}', "p1")["ok"] and ask("pause", b'{"id": "p2"}', "p2")["ok"]
        assert ask("status", b'{"id": "s2"}', "s2")["paused"] is True
        assert ask("resume", b'{"id": "r1"}', "r1")["ok"] and ask("resume", b'{"id": "r2"}', "r2")["ok"]
        assert ask("status", b'{"id": "s3"}', "s3")["paused"] is False
        assert collector.wait_for(lambda ms: any(m.topic.endswith("/stats") and m.json()["commands_retained_ignored"] == 2 for m in ms), 30)
        assert proc.poll() is None
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert err.count("ignoring retained message") == 1  # logged once
    assert "Traceback" not in err
