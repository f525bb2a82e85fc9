"""The local dashboard: aggregates only, loopback by default, rendered in headless Chromium."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_fer.errors import ConfigError
from edge_fer.sinks.dashboard import PAGE, WORKERS, DashboardSink, allowed_hosts, host_allowed
from tests.conftest import free_port, wait_until


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed; `make test` installs it (apt-get install chromium)")
    return exe


def get_json(url: str) -> dict:  # type: ignore[type-arg]
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def test_page_has_no_image_elements_and_refuses_remote_addresses() -> None:
    for tag in ("<img", "<video", "<canvas", "getUserMedia", "base64"):
        assert tag not in PAGE
    with pytest.raises(ConfigError, match="only loopback"):
        DashboardSink("0.0.0.0:8080")
    with pytest.raises(ConfigError, match="HOST:PORT"):
        DashboardSink("8080")


def test_dashboard_shows_live_aggregates_in_chromium(run_env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_fer", "run", "--source", "demo", "--window", "1", "--duration", "60", "--dashboard", f"127.0.0.1:{port}"],
        env=run_env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        assert wait_until(lambda: _summaries(url) >= 3, 30)
        state = get_json(url + "api/state")
        assert state["device"] == "test-device" and state["privacy"]["context"] == "kiosk"
        assert all(set(s) >= {"faces", "emotions", "dominant"} for s in state["summaries"])
        shot = tmp_path / "dashboard.png"
        subprocess.run(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chrome'}", "--window-size=960,520", "--virtual-time-budget=4000",
             f"--screenshot={shot}", url],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        image = cv2.imread(str(shot))
        assert image is not None and image.shape[:2] == (520, 960)
        # The stacked emotion chart is drawn: a good part of the page is coloured, not white/grey.
        hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
        assert np.mean(hsv[:, :, 1] > 80) > 0.05
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def _summaries(url: str) -> int:
    try:
        return len(get_json(url + "api/state")["summaries"])
    except OSError:
        return 0


def _request(port: int, host: str | None, timeout_s: float = 30.0) -> int:
    """HTTP status of ``GET /api/state`` with this Host header (None: no Host header)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as conn:
        header = f"Host: {host}\r\n" if host is not None else ""
        conn.sendall(f"GET /api/state HTTP/1.0\r\n{header}\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


def test_requests_for_another_host_are_refused() -> None:
    """DNS rebinding: a page whose own domain now points at 127.0.0.1 sends its own Host."""
    port = free_port()
    sink = DashboardSink(f"127.0.0.1:{port}", "d")
    try:
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
            assert _request(port, host) == 200, host
        for host in ("rebind.example.com", f"rebind.example.com:{port}", f"127.0.0.1.evil.example:{port}", None, ""):
            assert _request(port, host) == 403, host
    finally:
        sink.close()


@pytest.mark.parametrize(
    ("listen", "header", "allowed"),
    [
        ("192.168.1.20", "192.168.1.20:8080", True),
        ("192.168.1.20", "10.0.0.1:8080", False),
        ("0.0.0.0", "10.0.0.1:8080", True),  # any address of the device: an IP literal
        ("0.0.0.0", f"{socket.gethostname()}.local:8080", True),
        ("0.0.0.0", "kiosk.example.com", False),
        ("::", "[fe80::1]:8080", True),
    ],
)
def test_host_rule_for_remote_listen_addresses(listen: str, header: str, allowed: bool) -> None:
    assert host_allowed(header, allowed_hosts(listen)) is allowed


def test_under_load_every_request_is_answered_and_silent_connections_hold_no_thread() -> None:
    port = free_port()
    sink = DashboardSink(f"127.0.0.1:{port}", "d")
    silent: list[socket.socket] = []
    try:
        threads_before = threading.active_count()
        for _ in range(100):  # half-open clients: connected, never a byte
            silent.append(socket.create_connection(("127.0.0.1", port), timeout=30))
        statuses: list[int] = []
        barrier = threading.Barrier(200)

        def client() -> None:
            barrier.wait()
            statuses.append(_request(port, f"127.0.0.1:{port}"))

        clients = [threading.Thread(target=client) for _ in range(200)]
        for t in clients:
            t.start()
        for t in clients:
            t.join(60)
        assert statuses.count(200) == 200  # 200 at once, while 100 silent connections are open
        assert threading.active_count() - threads_before <= WORKERS + 1  # the pool and the watcher
        for conn in silent:  # each is closed by the server once it has been silent too long
            assert conn.recv(1) == b""
    finally:
        for conn in silent:
            conn.close()
        sink.close()
