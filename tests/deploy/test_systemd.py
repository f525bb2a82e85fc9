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
#: One instance per camera: edge-fer@door.service.
TEMPLATE = UNIT.with_name("edge-fer@.service")


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


def _settings(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) of every setting, in order, comments dropped."""
    section, out = "", []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        key, _, value = line.partition("=")
        out.append((section, key, value))
    return out


def test_template_has_the_same_hardening_and_watchdog_as_the_unit() -> None:
    """The template differs from edge-fer.service only in what makes an instance its own: the
    config file, the device id and the state directory (and its description)."""
    own = {("[Unit]", "Description"), ("[Service]", "Environment"), ("[Service]", "StateDirectory")}
    single = [s for s in _settings(UNIT) if s[:2] not in own]
    template = [s for s in _settings(TEMPLATE) if s[:2] not in own]
    assert template == single
    environment = {v.split("=", 1)[0]: v.split("=", 1)[1] for sec, k, v in _settings(TEMPLATE) if k == "Environment"}
    assert environment["EDGE_FER_CONFIG"] == "/etc/edge-fer/%i.toml"
    assert environment["EDGE_FER_DEVICE_ID"] == "%l-%i"
    assert environment["XDG_DATA_HOME"] == "/var/lib/edge-fer"  # models fetched once, shared
    assert [v for _, k, v in _settings(TEMPLATE) if k == "StateDirectory"] == ["edge-fer/%i"]
    assert "%i" in dict((k, v) for _, k, v in _settings(TEMPLATE))["Description"]


def test_an_instance_device_id_is_a_valid_device_id() -> None:
    """What the template makes of a host name and an instance name passes the config's rules."""
    from edge_fer.config import load_settings

    assert load_settings(environ={"EDGE_FER_DEVICE_ID": "jetson-door"}).device_id == "jetson-door"


@pytest.mark.integration  # a subprocess
@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (no systemd)")
@pytest.mark.parametrize("unit", ["edge-fer.service", "edge-fer@door.service"])
def test_units_verify(unit: str, tmp_path: Path) -> None:
    """`systemd-analyze verify` on the unit and on an instance of the template, with ExecStart
    pointing at this venv's edge-fer (verify checks that the command exists)."""
    import sys

    exe = Path(sys.executable).with_name("edge-fer")
    assert exe.exists(), exe
    for source in (UNIT, TEMPLATE):
        text = re.sub(r"^ExecStart=\S+/edge-fer", f"ExecStart={exe}", source.read_text(), flags=re.M)
        (tmp_path / source.name).write_text(text)
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", unit], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


@pytest.mark.integration  # a subprocess
@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (no systemd)")
def test_template_security_exposure_is_at_most_2_5(tmp_path: Path) -> None:
    (tmp_path / TEMPLATE.name).write_text(TEMPLATE.read_text())
    cmd = ["systemd-analyze", "security", "--offline=yes", "edge-fer@door.service"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=False)
    match = re.search(r"Overall exposure level for edge-fer@door\.service: ([0-9.]+)", done.stdout)
    assert match, done.stdout[-500:] + done.stderr[-500:]
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
