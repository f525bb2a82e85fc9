"""Reliability with real processes and a real broker: TLS, SIGKILL with events queued, the queue
bound, and a broker outage in the middle of a run."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_fer.config import load_settings
from edge_fer.sinks.mqtt import MqttSink
from edge_fer.sinks.payloads import Event
from tests.conftest import Broker, Collector, edge_fer, free_port, wait_until


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert))
    return key, cert


def make_server_cert(directory: Path, ca_key: Path, ca_cert: Path) -> tuple[Path, Path]:
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "san.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr))
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "2",
            "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    return key, cert


@pytest.mark.integration  # a subprocess
def test_tls_with_test_made_certificates(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ca_key, ca_cert = make_ca(tmp_path, "test-ca")
    server_key, server_cert = make_server_cert(tmp_path, ca_key, ca_cert)
    _, other_ca = make_ca(tmp_path, "someone-else")
    broker = Broker(
        port=free_port(),
        workdir=tmp_path,
        extra_conf=f"allow_anonymous true\ncafile {ca_cert}\ncertfile {server_cert}\nkeyfile {server_key}\n",
    )
    broker.start()
    try:
        good = load_settings(
            environ={},
            overrides={"device_id": "tls", "state_dir": str(tmp_path / "a"), "sinks": [f"mqtts://127.0.0.1:{broker.port}"],
                       "mqtt": {"ca_file": str(ca_cert)}},
        )  # fmt: skip
        assert good.mqtt.tls
        sink = MqttSink(good)
        assert wait_until(lambda: sink.state == "connected")
        sink.publish(Event("summary", {"frames": 1}))
        assert wait_until(lambda: sink.queue.depth() == 0)  # acknowledged over TLS
        sink.close()
        wrong = good.model_copy(update={"state_dir": tmp_path / "b", "mqtt": good.mqtt.model_copy(update={"ca_file": other_ca})})
        bad = MqttSink(wrong)
        assert wait_until(lambda: bad.state == "disconnected")
        bad.publish(Event("summary", {"frames": 2}))
        assert bad.state != "connected" and bad.queue.depth() == 1  # kept for when the CA is fixed
        bad.close(timeout_s=1)
        assert caplog.text.count("broker unreachable") == 1  # logged once, not per retry
    finally:
        broker.stop()
    missing = good.model_copy(update={"mqtt": good.mqtt.model_copy(update={"ca_file": tmp_path / "nope.crt"})})
    from edge_fer.errors import ConfigError

    with pytest.raises(ConfigError, match="mqtt.ca_file"):
        MqttSink(missing)


def queued(state_dir: Path, topic: str | None = None) -> int:
    """Events waiting in the durable queue (of one topic suffix, or all)."""
    db = state_dir / "queue.sqlite3"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            if topic is None:
                return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
            return int(conn.execute("SELECT COUNT(*) FROM events WHERE topic = ?", (topic,)).fetchone()[0])
    except sqlite3.Error:
        return 0


def test_sigkill_with_events_queued_and_broker_down(broker: Broker, run_env: dict[str, str], tmp_path: Path) -> None:
    state = Path(run_env["EDGE_FER_STATE_DIR"])
    broker.stop()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_fer", "run", "--source", "demo", "--sink", broker.url, "--window", "0.5"],
        env=run_env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert wait_until(lambda: queued(state, "summary") >= 4)
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no clean shutdown, no flush
        proc.wait(10)
    before = queued(state, "summary")
    assert before >= 4
    broker.start()
    collector = Collector(broker.port)
    try:
        result = edge_fer(["run", "--source", "demo", "--sink", broker.url, "--max-frames", "12", "--realtime", "off"], run_env, tmp_path)
        assert result.returncode == 0, result.stderr
        assert collector.wait_for(lambda ms: sum(m.topic.endswith("/summary") for m in ms) >= before)
        seqs = [m.json()["seq"] for m in collector.topic("/summary")]
        assert seqs[:before] == list(range(seqs[0], seqs[0] + before))  # the killed run's events, in order
        assert queued(state) == 0
    finally:
        collector.close()


def test_queue_bound_holds_while_the_broker_is_down(broker: Broker, run_env: dict[str, str], tmp_path: Path) -> None:
    broker.stop()
    env = dict(run_env, EDGE_FER_MQTT__QUEUE_MAX_ROWS="10", EDGE_FER_AGGREGATE__STATS_INTERVAL_S="1")
    result = edge_fer(
        ["run", "--source", "demo", "--sink", broker.url, "--sink", "stdout", "--max-frames", "480", "--window", "0.5", "--realtime", "off"],
        env,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    summaries = [line for line in result.stdout.splitlines() if "/summary" in line]
    assert len(summaries) >= 38  # 20 s of footage in 0.5-s windows
    state = Path(run_env["EDGE_FER_STATE_DIR"])
    assert queued(state) == 10  # summaries, stats are not queued
    disk = sum(p.stat().st_size for p in state.glob("queue.sqlite3*"))
    assert disk < 256_000
    stats = [json.loads(line) for line in result.stdout.splitlines() if "/stats" in line]
    assert stats[-1]["queue_dropped"] == len(summaries) + 1 - 10  # + the retained privacy record
    assert "event queue full" in result.stderr


def test_broker_outage_mid_run_every_summary_arrives(run_env: dict[str, str], tmp_path: Path) -> None:
    """mosquitto killed for 30 s while the pipeline runs, then restarted. The test's subscriber is
    a persistent session (what a consumer that must miss nothing uses), so whatever the order of
    the two reconnects, every summary reaches it."""
    workdir = tmp_path / "broker"
    workdir.mkdir()
    broker = Broker(port=free_port(), workdir=workdir, persistent=True)
    broker.start()
    collector = Collector(broker.port, session="outage-test-consumer")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_fer", "run", "--source", "demo", "--sink", broker.url, "--window", "1", "--duration", "60"],
        env=run_env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert collector.wait_for(lambda ms: sum(m.topic.endswith("/summary") for m in ms) >= 3, 30)
        assert broker.wait_saved()  # the subscriber's session survives the kill
        broker.kill()  # the broker dies, no goodbye
        time.sleep(30)  # the outage itself is the thing under test
        broker.start()
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert collector.wait_for(lambda ms: any(m.payload == b"offline" for m in ms), 30)
        seqs = sorted({m.json()["seq"] for m in collector.topic("/summary")})
        # One seq counter per device: stats (not queued, sent only while connected) take seqs too,
        # and the loop's last stats may come just before the final summary. So: no gap in the
        # whole sequence, every summary included.
        stamped = [m.json() for m in collector.messages if m.payload.startswith(b"{")]
        every = sorted({p["seq"] for p in stamped if "seq" in p})
        assert every == list(range(every[0], every[-1] + 1))  # no gap: every summary arrived
        assert len(seqs) >= 55
        assert queued(Path(run_env["EDGE_FER_STATE_DIR"])) == 0
        assert err.count("events are queued until it is back") == 1
    finally:
        collector.close()
        if proc.poll() is None:
            proc.kill()
        broker.stop()


def test_interpreter_failures_are_retried_and_reported(models_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """An accelerator or interpreter that fails for a while (e.g. a Coral unplugged and replugged)."""
    import logging

    from edge_fer.capture import CaptureThread, source_from_spec
    from edge_fer.pipeline import Pipeline
    from edge_fer.runner import Runner

    caplog.set_level(logging.INFO, logger="edge_fer")
    settings = load_settings(environ={}, overrides={"models": {"dir": str(models_dir)}, "sinks": []})
    pipeline = Pipeline.from_settings(settings)
    model = pipeline.detector.model
    real_run, calls = model.run, {"n": 0}

    def flaky_run(*inputs: object, **options: object) -> object:
        calls["n"] += 1
        if 5 <= calls["n"] < 9:
            raise RuntimeError("Failed to invoke the Edge TPU")  # what the delegate raises when unplugged
        return real_run(*inputs, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(model, "run", flaky_run)
    capture = CaptureThread(lambda: source_from_spec("demo", settings.source, models_dir), realtime=False)
    capture.start()
    runner = Runner(settings, pipeline, capture, [])
    try:
        report = runner.run(max_frames=40)
    finally:
        capture.stop()
    assert report.frames == 40 and runner.inference_failures_total == 4
    assert runner.inference_state == "ok" and runner.stats()["inference_failures"] == 4
    assert caplog.text.count("inference failed") == 1 and "inference works again after 4" in caplog.text


def test_camera_unplugged_and_replugged_at_the_opencv_boundary(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake `cv2.VideoCapture` (the hardware boundary) that serves real frames, then fails like an
    unplugged USB camera, then comes back: the real OpenCVSource and CaptureThread recover."""
    import threading

    import cv2

    from edge_fer.capture import CaptureThread, source_from_spec
    from edge_fer.capture import opencv as opencv_source

    clip = str(models_dir / "single_face.mp4")
    unplugged, kicked = threading.Event(), threading.Event()
    real_capture = cv2.VideoCapture  # the module attribute is replaced below

    class FakeCamera:
        def __init__(self, *_args: object) -> None:
            self._file = real_capture(clip)
            self._frames = 0

        def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
            return not unplugged.is_set()

        def set(self, *_args: object) -> bool:
            return True

        def get(self, prop: int) -> float:
            return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

        def read(self) -> tuple[bool, object]:
            self._frames += 1
            if self._frames == 20 and not kicked.is_set():
                kicked.set()
                unplugged.set()  # the cable is kicked, once
            if unplugged.is_set():
                return False, None
            ok, frame = self._file.read()
            if not ok:
                self._file.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, frame = self._file.read()
            return ok, frame

        def release(self) -> None:
            self._file.release()

    monkeypatch.setattr(opencv_source.cv2, "VideoCapture", FakeCamera)
    monkeypatch.setattr(opencv_source.Path, "exists", lambda self: True)  # /dev/video0 "exists"
    capture = CaptureThread(lambda: source_from_spec("v4l2:0", load_settings(environ={}).source, models_dir), backoff_initial_s=0.05)
    capture.start()
    try:
        assert wait_until(lambda: capture.state == "reconnecting", 10)
        assert capture.last_error is not None
        unplugged.clear()  # plugged back in
        assert wait_until(lambda: capture.state == "running" and capture.reopens >= 1, 10)
        frame = capture.get(timeout_s=5)
        assert frame is not None and frame.pixels.shape == (360, 640, 3)
        assert capture.stats()["reopens"] >= 1
    finally:
        capture.stop()


def test_doctor_reads_the_running_service_state(broker: Broker, run_env: dict[str, str], tmp_path: Path) -> None:
    result = edge_fer(["run", "--source", "demo", "--sink", broker.url, "--max-frames", "24", "--realtime", "off"], run_env, tmp_path)
    assert result.returncode == 0, result.stderr
    env = dict(run_env, EDGE_FER_SINKS=f'["{broker.url}"]')
    doctor = edge_fer(["doctor", "--source", "demo"], env, tmp_path)
    assert doctor.returncode == 0, doctor.stdout
    line = next(x for x in doctor.stdout.splitlines() if "running service" in x)
    assert "source_state=" in line and "inference_state=ok" in line and "mqtt_state=connected" in line
    assert "queue storage" in doctor.stdout
    assert "publish round trip ok" in next(x for x in doctor.stdout.splitlines() if "] broker" in x)
    broker.stop()
    down = edge_fer(["doctor", "--source", "demo"], env, tmp_path)
    assert down.returncode == 0  # the broker is not required: events queue
    assert "[warn] broker" in down.stdout and "events will queue" in down.stdout


def test_stats_keep_coming_while_the_camera_is_away(models_dir: Path) -> None:
    """A source that stops delivering (being reopened): stats still report its state."""
    import io
    import threading

    from edge_fer.capture import CaptureThread
    from edge_fer.capture.base import SourceBase
    from edge_fer.pipeline import Pipeline
    from edge_fer.runner import Runner
    from edge_fer.sinks.stdout import StdoutSink
    from edge_fer.types import Frame

    class SilentCamera(SourceBase):
        live, name = True, "silent"

        def open(self) -> None:
            pass

        def read(self) -> Frame | None:
            time.sleep(0.05)
            raise OSError("no signal")

        def close(self) -> None:
            pass

    settings = load_settings(environ={}, overrides={"models": {"dir": str(models_dir)}, "sinks": [], "aggregate": {"stats_interval_s": 1}})
    capture = CaptureThread(SilentCamera, backoff_initial_s=0.05, reopen_backoff_max_s=0.2)
    capture.start()
    stream = io.StringIO()
    stop = threading.Event()
    runner = Runner(settings, Pipeline.from_settings(settings), capture, [StdoutSink("p", "d", stream)], stop)
    timer = threading.Timer(2.5, stop.set)
    timer.start()
    try:
        report = runner.run()
    finally:
        timer.cancel()
        capture.stop()
    assert report.frames == 0
    stats = [json.loads(line) for line in stream.getvalue().splitlines() if "/stats" in line]
    assert len(stats) >= 2 and stats[-1]["source_state"] == "reconnecting"


@pytest.mark.parametrize("damage", ["garbage", "folder"])
def test_a_corrupt_queue_is_moved_aside_and_the_device_runs(broker: Broker, run_env: dict[str, str], tmp_path: Path, damage: str) -> None:
    """Under systemd a queue that fails to open would be a restart loop: it is set aside instead."""
    state = Path(run_env["EDGE_FER_STATE_DIR"])
    state.mkdir(parents=True)
    if damage == "garbage":
        (state / "queue.sqlite3").write_bytes(os.urandom(50_000))
    else:
        (state / "queue.sqlite3").mkdir()
    collector = Collector(broker.port)
    try:
        result = edge_fer(
            ["run", "--source", "demo", "--sink", broker.url, "--max-frames", "40", "--window", "0.5", "--realtime", "off"], run_env, tmp_path
        )
        assert result.returncode == 0, result.stderr
        assert "moved it aside" in result.stderr
        (aside,) = state.glob("queue.sqlite3.corrupt-*")
        assert aside.is_dir() if damage == "folder" else aside.stat().st_size == 50_000
        assert collector.wait_for(lambda ms: sum(m.topic.endswith("/summary") for m in ms) >= 1, 30)
        assert queued(state) == 0  # the new queue works and was drained
    finally:
        collector.close()
