"""The local dashboard: aggregates only, loopback by default, rendered in headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_fer.errors import ConfigError
from edge_fer.sinks.dashboard import PAGE, DashboardSink
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
