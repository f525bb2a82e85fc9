"""The systemd unit: readiness and watchdog semantics, and its sandbox score."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from edge_fer.runner.health import SystemdNotifier, ThermalGuard, read_throttled

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "edge-fer.service"


def test_unit_runs_edge_fer_as_notify_service_with_watchdog() -> None:
    text = UNIT.read_text()
    for line in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "User=edge-fer", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "StateDirectory=edge-fer",
                 "DevicePolicy=closed", "RestrictAddressFamilies=", "MemoryMax="):  # fmt: skip
        assert line in text, line
    assert re.search(r"^ExecStart=\S+/edge-fer run", text, re.M)


@pytest.mark.integration  # a subprocess
@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (no systemd)")
def test_security_exposure_is_at_most_2_5() -> None:
    out = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(UNIT)], capture_output=True, text=True, check=False).stdout
    match = re.search(r"Overall exposure level for edge-fer\.service: ([0-9.]+)", out)
    assert match, out[-500:]
    assert float(match.group(1)) <= 2.5


@pytest.fixture
def notify_socket(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.05)
    return sock, path


def received(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except TimeoutError:
            return out


def test_ready_after_the_first_frame_and_watchdog_only_while_frames_flow(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})  # pings every 1 s
    assert notifier.enabled and notifier.watchdog_interval_s == 1.0
    assert received(sock) == []  # nothing before the first frame
    notifier.frame_processed(10.0)
    assert received(sock)[0].startswith("READY=1")
    for t in (10.2, 10.5, 10.9):
        notifier.frame_processed(t)
    assert received(sock) == []  # rate-limited to one ping per interval
    notifier.frame_processed(11.0, "42 frames")
    assert received(sock) == ["WATCHDOG=1\nSTATUS=42 frames"]
    # Frames stop (stuck camera): no call, so no ping; systemd will restart the service.
    assert received(sock) == []
    notifier.stopping()
    assert received(sock) == ["STOPPING=1"]


def test_notifier_is_inert_outside_systemd() -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled
    notifier.frame_processed(1.0)
    notifier.stopping()


def test_thermal_guard_caps_the_frame_rate_with_hysteresis() -> None:
    readings = iter([60.0, 76.0, 73.0, 69.0])
    guard = ThermalGuard(hot_c=75.0, hot_fps=5.0, hysteresis_c=5.0, read=lambda: next(readings), check_every_s=1.0)
    assert guard.min_frame_interval_s(0.0) == 0.0
    assert guard.min_frame_interval_s(0.5) == 0.0  # not re-read before check_every_s
    assert guard.min_frame_interval_s(1.0) == pytest.approx(0.2) and guard.hot
    assert guard.min_frame_interval_s(2.0) == pytest.approx(0.2)  # 73 °C: still within the hysteresis
    assert guard.min_frame_interval_s(3.0) == 0.0 and not guard.hot


def test_throttle_flags_from_the_pi_firmware(tmp_path: Path) -> None:
    sysfs = tmp_path / "get_throttled"
    sysfs.write_text("50005\n")  # under-voltage now + throttled now (+ "has occurred" bits)
    assert read_throttled(sysfs) == {"under_voltage": True, "arm_freq_capped": False, "throttled": True, "soft_temp_limit": False}

    def no_vcgencmd(*_a: object, **_k: object) -> subprocess.CompletedProcess[str]:
        raise FileNotFoundError("vcgencmd")

    assert read_throttled(tmp_path / "missing", run=no_vcgencmd) is None


@pytest.mark.integration  # a subprocess
def test_pi_setup_refuses_to_run_elsewhere() -> None:
    script = UNIT.parents[1] / "firmware_config" / "pi" / "setup-pi.sh"
    result = subprocess.run(["sh", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "setup-pi:" in result.stderr  # a clear message, not a half-done install
    assert "not a Raspberry Pi" in result.stderr or "sudo" in result.stderr
