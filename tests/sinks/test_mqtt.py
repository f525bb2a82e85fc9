"""The MQTT sink against a real mosquitto: availability, order, outages, auth failure, commands."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest

from edge_fer.config import Settings, load_settings
from edge_fer.sinks import build_sinks
from edge_fer.sinks.mqtt import MqttSink
from edge_fer.sinks.payloads import Event, stats_event
from tests.conftest import Broker, Collector, wait_until


def settings_for(broker: Broker, tmp_path: Path, **mqtt: object) -> Settings:
    return load_settings(
        environ={},
        overrides={"device_id": "dev1", "state_dir": str(tmp_path / "state"), "sinks": [broker.url], "mqtt": mqtt},
    )


def frames_of(collector: Collector) -> list[int]:
    return [m.json()["frames"] for m in collector.topic("dev1/summary")]


def test_online_then_events_in_order_then_offline(broker: Broker, collector: Collector, tmp_path: Path) -> None:
    sink = MqttSink(settings_for(broker, tmp_path))
    assert wait_until(lambda: sink.state == "connected")
    for i in range(30):
        sink.publish(Event("summary", {"frames": i}))
    assert collector.wait_for(lambda ms: sum(m.topic.endswith("/summary") for m in ms) >= 30)
    assert frames_of(collector) == list(range(30))
    assert wait_until(lambda: sink.queue.depth() == 0)  # deleted only after PUBACK
    sink.publish(stats_event({"fps": 24.0}))
    assert collector.wait_for(lambda ms: any(m.topic.endswith("/stats") for m in ms))
    sink.close()
    availability = [m.payload for m in collector.topic("dev1/availability")]
    assert availability[0] == b"online" and availability[-1] == b"offline"
    seqs = [m.json()["seq"] for m in collector.topic("dev1/summary")]
    assert seqs == list(range(seqs[0], seqs[0] + 30))


@pytest.mark.integration  # a subprocess
def test_outage_mid_run_loses_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from tests.conftest import free_port

    workdir = tmp_path / "broker"
    workdir.mkdir()
    broker = Broker(port=free_port(), workdir=workdir, persistent=True)
    broker.start()
    sink = MqttSink(settings_for(broker, tmp_path))
    collector: Collector | None = None
    try:
        assert wait_until(lambda: sink.state == "connected")
        for i in range(10):
            sink.publish(Event("summary", {"frames": i}))
        assert wait_until(lambda: sink.queue.depth() == 0)
        # A consumer with a persistent session: it misses nothing across the outage, whichever of
        # it and the sink reconnects first.
        collector = Collector(broker.port, session="outage-consumer")
        broker.stop()
        assert wait_until(lambda: sink.state == "disconnected")
        for i in range(10, 40):
            sink.publish(Event("summary", {"frames": i}))  # never blocks: goes to disk
        assert sink.queue.depth() == 30
        broker.start()
        assert wait_until(lambda: sink.state == "connected", 40)
        assert collector.wait_for(lambda ms: sum(m.topic.endswith("/summary") for m in ms) >= 30, 40)
        got = frames_of(collector)
        assert sorted(set(got)) == list(range(10, 40))  # duplicates allowed (dedupe by seq), no loss
        assert got == sorted(got)
        assert wait_until(lambda: sink.queue.depth() == 0)
        assert sink.health()["mqtt_reconnects"] == 1
    finally:
        if collector is not None:
            collector.close()
        sink.close()
        broker.stop()
    assert caplog.text.count("events are queued until it is back") == 1


@pytest.mark.integration  # a subprocess
def test_refused_credentials_are_never_connected(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from tests.conftest import free_port

    workdir = tmp_path / "broker"
    workdir.mkdir()
    pwfile = workdir / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), "alice", "right"], check=True, capture_output=True)
    broker = Broker(port=free_port(), workdir=workdir, extra_conf=f"allow_anonymous false\npassword_file {pwfile}\n")
    broker.start()
    try:
        bad = MqttSink(settings_for(broker, tmp_path / "bad", username="alice", password="wrong"))
        assert wait_until(lambda: bad.state == "auth_failed")
        bad.publish(Event("summary", {"frames": 1}))
        assert bad.queue.depth() == 1 and bad.health()["mqtt_published"] == 0
        bad.close(timeout_s=1)
        assert caplog.text.count("connection refused") == 1  # said once, clearly; retries back off quietly
        assert "wrong" not in caplog.text  # the password is never logged
        good = MqttSink(settings_for(broker, tmp_path / "good", username="alice", password="right"))
        assert wait_until(lambda: good.state == "connected")
        good.close()
    finally:
        broker.stop()


def test_malformed_commands_never_kill_the_network_thread(broker: Broker, collector: Collector, tmp_path: Path) -> None:
    sink = MqttSink(settings_for(broker, tmp_path))
    received: list[tuple[str, bytes]] = []

    def handler(name: str, payload: bytes) -> None:
        received.append((name, payload))
        json.loads(payload)  # raises on junk: the sink must survive it

    sink.set_command_handler(handler)
    assert sink.commands_subscribed.wait(20)
    import paho.mqtt.publish as publish

    for payload in (b"\xff\xfe garbage", b"{", b"x" * 100_000, b'{"ok": 1}'):
        publish.single("edge_fer/dev1/cmd/set", payload, qos=1, hostname="127.0.0.1", port=broker.port)
    assert wait_until(lambda: len(received) == 4)
    assert len(received[2][1]) == 100_000  # whole: the size limit applies to the whole payload
    sink.publish(Event("summary", {"frames": 99}))
    assert collector.wait_for(lambda ms: any(m.topic.endswith("/summary") for m in ms))
    sink.close()


def test_stdout_sink_prints_json_lines(tmp_path: Path) -> None:
    stream = io.StringIO()
    settings = load_settings(environ={}, overrides={"device_id": "d", "sinks": ["stdout"]})
    (sink,) = build_sinks(settings, stream=stream)
    sink.publish(Event("summary", {"frames": 1}))
    sink.publish(Event("availability", None, text="online"))  # MQTT-only: not printed
    sink.close()
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["topic"] == "edge_fer/d/summary" and record["seq"] == 1 and record["frames"] == 1


@pytest.mark.integration  # starts its own broker later in the test
def test_retained_state_is_published_again_on_every_connect(tmp_path: Path) -> None:
    """The privacy record dropped from a full queue, and a broker restarted without persistence
    (its retained messages gone): both times the record is back on the broker after the connect."""
    from edge_fer.sinks.payloads import privacy_event
    from tests.conftest import free_port

    broker = Broker(port=free_port(), workdir=tmp_path)
    settings = settings_for(broker, tmp_path, queue_max_rows=10)
    sink = MqttSink(settings)  # the broker is not there yet
    try:
        assert wait_until(lambda: sink.state == "disconnected")
        sink.publish(privacy_event(settings))
        for i in range(20):
            sink.publish(Event("summary", {"frames": i}))
        assert sink.queue.dropped == 11  # the privacy record among them
        broker.start()
        assert wait_until(lambda: sink.state == "connected" and sink.queue.depth() == 0, 40)
        late = Collector(broker.port)  # subscribes after the fact: sees only what is retained
        assert late.wait_for(lambda ms: any(m.topic.endswith("/privacy") and m.retain for m in ms), 10)
        late.close()
        broker.stop()  # no persistence: the broker forgets every retained message
        assert wait_until(lambda: sink.state == "disconnected")
        broker.start()
        assert wait_until(lambda: sink.state == "connected", 40)
        again = Collector(broker.port)
        assert again.wait_for(lambda ms: any(m.topic.endswith("/privacy") and m.retain for m in ms), 10)
        assert again.topic("/privacy")[-1].json()["images_leave_device"] is False
        again.close()
    finally:
        sink.close(timeout_s=1)
        broker.stop()


@pytest.mark.integration  # starts its own broker later in the test
def test_an_absent_broker_is_reported_once_with_back_off_in_stats(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from tests.conftest import free_port

    caplog.set_level(logging.DEBUG, logger="edge_fer")
    broker = Broker(port=free_port(), workdir=tmp_path)
    broker.start()
    sink = MqttSink(settings_for(broker, tmp_path))
    try:
        assert wait_until(lambda: sink.state == "connected")
        broker.kill()
        assert wait_until(lambda: sink.health()["mqtt_retries"] >= 3, 30)  # attempts 1 s, 2 s, 4 s apart
        health = sink.health()
        assert health["mqtt_state"] == "disconnected" and health["mqtt_down_s"] > 0
        assert health["mqtt_retry_delay_s"] >= 4
        broker.start()
        assert wait_until(lambda: sink.state == "connected", 40)
        assert sink.health()["mqtt_retries"] == 0 and sink.health()["mqtt_down_s"] == 0
    finally:
        sink.close(timeout_s=1)
        broker.stop()
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.levelname for r in problems] == ["WARNING"], [r.getMessage() for r in problems]  # the outage, once
    assert "events are queued until it is back" in problems[0].getMessage()
