"""Shared fixtures: the provisioned models folder and a real mosquitto broker per test; the test lanes.

Lanes: a test that needs a broker, a subprocess (the real CLI) or a browser is marked
``integration`` — automatically when it uses one of `INTEGRATION_FIXTURES`, by hand
(``@pytest.mark.integration``) otherwise. ``make unit`` runs the others (``-m "not integration"``);
``make test`` runs everything and is the CI gate.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edge_fer.config import load_settings
from edge_fer.models import verify_all

#: Fixtures that start a broker or a subprocess: a test using any of them is an integration test.
INTEGRATION_FIXTURES = frozenset({"broker", "collector", "run_env"})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: needs a broker, a subprocess or a browser (set by fixture use, see tests/conftest.py); `make unit` skips these"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


#: Programs a unit test may start: the runner's stats probe the Pi firmware (absent here).
UNIT_LANE_PROGRAMS = frozenset({"vcgencmd"})


@pytest.fixture(autouse=True)
def _unit_tests_start_no_process(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keeps the lanes honest: a test not marked ``integration`` that starts a process fails
    and says so, instead of quietly slowing the fast lane down."""
    if request.node.get_closest_marker("integration") is not None:
        return

    class UnitLanePopen(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, args: Any, *rest: Any, **options: Any) -> None:
            program = Path(str(args[0] if isinstance(args, (list, tuple)) else str(args).split()[0])).name
            if program not in UNIT_LANE_PROGRAMS:
                raise AssertionError(f"{request.node.nodeid} starts {program!r}: mark it @pytest.mark.integration (see tests/conftest.py)")
            super().__init__(args, *rest, **options)

    monkeypatch.setattr(subprocess, "Popen", UnitLanePopen)


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The folder `edge-fer models fetch` provisioned (the test command fetches first)."""
    path = load_settings().models.dir
    missing = [e.name for e, status in verify_all(path) if status != "ok" and not e.bundled]
    if missing:
        pytest.fail(f"models not provisioned in {path}: {missing}; run `make test` or `edge-fer models fetch`")
    return path


def wait_until(predicate: Callable[[], object], timeout_s: float = 20.0, poll_s: float = 0.02) -> bool:
    """Poll `predicate` until it is truthy or `timeout_s` passes (no fixed sleeps in tests)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Broker:
    """A mosquitto process on 127.0.0.1:`port`; `stop()`/`start()` simulate an outage."""

    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    extra_conf: str = "allow_anonymous true\n"
    #: Keep sessions and queued QoS-1 messages across restarts (saved every second, so a killed
    #: broker keeps them too): what lets a persistent subscriber miss nothing during an outage.
    persistent: bool = False

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        conf = self.workdir / "mosquitto.conf"
        import getpass

        # `user` keeps mosquitto from dropping to its own account when the tests run as root,
        # so it can read files the test made (password files, certificates).
        persistence = f"persistence true\npersistence_location {self.workdir}/\nautosave_interval 1\n" if self.persistent else "persistence false\n"
        conf.write_text(f"user {getpass.getuser()}\nlistener {self.port} 127.0.0.1\n{persistence}{self.extra_conf}")
        log = open(self.workdir / "mosquitto.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"mosquitto exited: {(self.workdir / 'mosquitto.log').read_text()}") from None
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening within 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def wait_saved(self, timeout_s: float = 10.0) -> bool:
        """Wait until a persistent broker has saved its state (sessions, subscriptions, queued
        messages) after this call, so that a `kill` cannot lose what exists now."""
        since = time.time()
        db = self.workdir / "mosquitto.db"
        return wait_until(lambda: db.exists() and db.stat().st_mtime > since, timeout_s)

    def kill(self) -> None:
        """The broker dies with no goodbye (SIGKILL): clients see the connection drop."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        pytest.fail("mosquitto is not installed; `make test` installs it (apt-get install mosquitto)")
    b = Broker(port=free_port(), workdir=tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()


@dataclass
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool

    def json(self) -> dict:  # type: ignore[type-arg]
        import json

        return json.loads(self.payload)  # type: ignore[no-any-return]


class Collector:
    """A plain paho subscriber on `#` that records every message (the test's view of the broker).

    With `session` it is a persistent subscriber (that client id, clean session off, QoS 1): on a
    broker with persistence it misses nothing across an outage, however the device's reconnect and
    its own interleave — it reconnects by itself and the broker delivers what it queued meanwhile.
    """

    def __init__(self, port: int, auth: tuple[str, str] | None = None, topic: str = "#", timeout_s: float = 10.0, session: str | None = None) -> None:
        import threading

        import paho.mqtt.client as mqtt

        self.messages: list[Message] = []
        self._cond = threading.Condition()
        subscribed = threading.Event()
        client_id = session or f"test-collector-{port}-{id(self)}"
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=session is None)
        self._client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
        if auth:
            self._client.username_pw_set(*auth)
        self._client.on_message = self._on_message
        self._client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self._client.on_subscribe = lambda *_: subscribed.set()
        self._client.connect_async("127.0.0.1", port)
        self._client.loop_start()
        if not subscribed.wait(timeout_s):  # messages published after this line are seen
            raise RuntimeError(f"test subscriber could not subscribe on 127.0.0.1:{port}")

    def _on_message(self, _client: object, _userdata: object, msg: object) -> None:
        with self._cond:
            self.messages.append(Message(msg.topic, msg.payload, msg.qos, msg.retain))  # type: ignore[attr-defined]
            self._cond.notify_all()

    def topic(self, suffix: str) -> list[Message]:
        with self._cond:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def wait_for(self, predicate: object, timeout_s: float = 30.0) -> bool:
        """Wait until `predicate(messages)` is true or the deadline passes."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate(self.messages):  # type: ignore[operator]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


@pytest.fixture
def collector(broker: Broker) -> Iterator[Collector]:
    c = Collector(broker.port)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def run_env(tmp_path: Path, models_dir: Path) -> dict[str, str]:
    """Environment for an `edge-fer` subprocess: its state and data confined to `tmp_path`."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_FER_")}
    env.update(
        {
            "EDGE_FER_MODELS__DIR": str(models_dir),
            "EDGE_FER_STATE_DIR": str(tmp_path / "state"),
            "EDGE_FER_DEVICE_ID": "test-device",
            "XDG_STATE_HOME": str(tmp_path / "xdg-state"),
            "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def edge_fer(args: list[str], env: dict[str, str], cwd: Path, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess (the same entry point users run)."""
    import sys

    return subprocess.run([sys.executable, "-m", "edge_fer", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout_s)


#: Brief smiles spliced into the test video's neutral stretch: (start s, duration s).
SMILES = ((2.5, 0.3), (4.5, 0.25), (6.0, 0.2))


def smile_clip(
    models_dir: Path, fps: float = 30.0, seconds: float = 7.0, smiles: tuple[tuple[float, float], ...] = SMILES
) -> list[tuple[float, object]]:
    """(t, BGR frame) of a clip made from the provisioned test video (never committed): the
    man's neutral frames 0-15 played back and forth, with his own smile onset (frames 15→24)
    played fast forward and back at each of `smiles`. He barely moves, so no alignment is needed."""
    import cv2

    cap = cv2.VideoCapture(str(models_dir / "single_face.mp4"))
    source = []
    for _ in range(25):
        ok, pixels = cap.read()
        assert ok
        source.append(pixels)
    cap.release()
    frames = []
    for i in range(int(seconds * fps)):
        t = i / fps
        k = int(t * 30) % 30
        index = k if k <= 15 else 30 - k
        for start, duration in smiles:
            u = (t - start) / duration
            if 0 <= u < 1:
                index = 15 + round(9 * min(u / 0.4, 1.0) if u < 0.5 else 9 * min((1 - u) / 0.4, 1.0))
        frames.append((t, source[index]))
    return frames


def write_clip(frames: list[tuple[float, object]], path: Path, fps: float) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 360))
    assert writer.isOpened()
    for _, pixels in frames:
        writer.write(pixels)
    writer.release()
    return path


def leaving_clip(models_dir: Path, face_s: float, empty_s: float) -> tuple[list[tuple[float, object]], float]:
    """(t, BGR frame) of a clip made from the provisioned demo footage (never committed): the
    actress for `face_s`, then `empty_s` of the same room without her — the wooden wall at the
    left of the first frame (no face in it), mirrored to fill the frame. Returns the frames and
    the footage's frame rate."""
    import cv2
    import numpy as np

    from edge_fer.models import asset_path

    cap = cv2.VideoCapture(str(asset_path(models_dir, "demo_video")))
    fps = cap.get(cv2.CAP_PROP_FPS) or 24.0
    frames: list[tuple[float, object]] = []
    for i in range(int(face_s * fps)):
        ok, pixels = cap.read()
        assert ok, "the demo footage ended early"
        frames.append((i / fps, pixels))
    cap.release()
    wall = frames[0][1][:, :220]  # type: ignore[index]
    empty = np.ascontiguousarray(np.hstack([wall, wall[:, ::-1], wall])[:, :640])
    start = len(frames)
    frames += [((start + i) / fps, empty) for i in range(int(empty_s * fps))]
    return frames, fps
