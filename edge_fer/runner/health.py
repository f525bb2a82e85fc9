"""Health edges: systemd readiness and watchdog, SoC temperature and throttling, frame-rate guard and meter."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


class SystemdNotifier:
    """`sd_notify` without libsystemd: READY=1 after the first processed frame, WATCHDOG=1 only
    while frames flow.

    The runner calls `frame_processed(t)` after every frame; when frames stop (a stuck camera, a
    hung interpreter) the pings stop too and systemd's `WatchdogSec=` restarts the service.
    Outside systemd (no ``$NOTIFY_SOCKET``) every call is a no-op.

    Args:
        environ: where ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC`` are read (default `os.environ`).
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._address: str | None = ("\0" + address[1:]) if address.startswith("@") else (address or None)
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        watchdog_for_us = usec.isdigit() and (not pid or pid == str(os.getpid()))
        # Ping twice per watchdog period, as sd_watchdog_enabled(3) recommends.
        self.watchdog_interval_s: float | None = int(usec) / 2e6 if watchdog_for_us else None
        self._ready = False
        self._last_ping: float | None = None
        self._sock: socket.socket | None = None
        if self._address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, message: str) -> None:
        if self._sock is None or self._address is None:
            return
        try:
            self._sock.sendto(message.encode(), self._address)
        except OSError as exc:
            logger.debug("sd_notify %r failed: %s", message, exc)

    def frame_processed(self, t: float, status: str | None = None) -> None:
        """Call after each processed frame; `t` is a monotonic time in seconds."""
        if self._sock is None:
            return
        if not self._ready:
            self._ready = True
            self.notify("READY=1\nSTATUS=processing frames")
            self._last_ping = t
            return
        if self.watchdog_interval_s is not None and (self._last_ping is None or t - self._last_ping >= self.watchdog_interval_s):
            self._last_ping = t
            self.notify("WATCHDOG=1" + (f"\nSTATUS={status}" if status else ""))

    def stopping(self) -> None:
        self.notify("STOPPING=1")
        if self._sock is not None:
            self._sock.close()
            self._sock = None


# Bits of the Raspberry Pi firmware's get_throttled value (vcgencmd get_throttled).
THROTTLE_BITS = {
    0: "under_voltage",
    1: "arm_freq_capped",
    2: "throttled",
    3: "soft_temp_limit",
}


def read_temperature_c(path: Path = Path("/sys/class/thermal/thermal_zone0/temp")) -> float | None:
    """SoC temperature from the kernel's first thermal zone (Pi, Jetson, most boards); None if absent."""
    try:
        return int(path.read_text().strip()) / 1000.0
    except (OSError, ValueError):
        return None


def read_throttled(
    sysfs: Path = Path("/sys/devices/platform/soc/soc:firmware/get_throttled"),
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
) -> dict[str, bool] | None:
    """The Pi's current throttling flags, from sysfs (newer kernels) or `vcgencmd`; None elsewhere."""
    raw: str | None = None
    try:
        raw = sysfs.read_text().strip()
    except OSError:
        try:
            out = run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=2, check=False)
            if out.returncode == 0 and "=" in out.stdout:
                raw = out.stdout.strip().split("=", 1)[1]
        except (OSError, subprocess.TimeoutExpired):
            return None
    if raw is None:
        return None
    try:
        value = int(raw, 16)  # the firmware prints hex, with or without 0x
    except ValueError:
        return None
    return {name: bool(value >> bit & 1) for bit, name in THROTTLE_BITS.items()}


@dataclass
class ThermalGuard:
    """Lowers the frame rate while the SoC is hot instead of cooking the board.

    Above `hot_c` the loop is capped at `hot_fps`; it returns to full speed below `hot_c - hysteresis_c`.

    Args:
        hot_c: temperature (°C) at which to slow down (Pi 4/5 firmware throttles at 80–85).
        hot_fps: frame-rate cap while hot.
        hysteresis_c: how far it must cool down before full speed resumes.
        read: temperature reader (injectable for tests).
        check_every_s: how often the temperature is read.
    """

    hot_c: float = 75.0
    hot_fps: float = 5.0
    hysteresis_c: float = 5.0
    read: Callable[[], float | None] = read_temperature_c
    check_every_s: float = 5.0
    hot: bool = False
    temperature_c: float | None = None
    _last_check: float | None = None

    def __post_init__(self) -> None:
        if self.hot_fps <= 0:
            raise ValueError(f"hot_fps must be > 0, got {self.hot_fps}")
        if self.hysteresis_c < 0:
            raise ValueError(f"hysteresis_c must be >= 0, got {self.hysteresis_c}")

    def min_frame_interval_s(self, now: float) -> float:
        """Seconds each frame must take at least right now (0 when cool)."""
        if self._last_check is None or now - self._last_check >= self.check_every_s:
            self._last_check = now
            self.temperature_c = self.read()
            if self.temperature_c is not None:
                if not self.hot and self.temperature_c >= self.hot_c:
                    self.hot = True
                    logger.warning("SoC at %.1f °C: limiting to %.1f frames/s until it cools down", self.temperature_c, self.hot_fps)
                elif self.hot and self.temperature_c < self.hot_c - self.hysteresis_c:
                    self.hot = False
                    logger.info("SoC cooled to %.1f °C: full frame rate again", self.temperature_c)
        return 1.0 / self.hot_fps if self.hot else 0.0


@dataclass
class FrameRateMeter:
    """Frames per second between two health reports, never over a single frame.

    The clock starts at the first processed frame, so model loading and camera start-up are not
    counted as frame time, and `rate` answers None until at least `min_interval_s` has passed:
    the first stats after a start (published right after the first frame) carry ``fps: null``
    instead of one frame divided by the start-up time.

    Args:
        min_interval_s: the shortest interval (s) a rate is given over.

    Example:
        >>> meter = FrameRateMeter(min_interval_s=2.0)
        >>> for i in range(49):
        ...     meter.frame(10.0 + i / 24)
        >>> meter.rate(10.0), meter.rate(12.0)
        (None, 24.0)
    """

    min_interval_s: float = 2.0
    _since: float | None = None
    _frames: int = 0

    def __post_init__(self) -> None:
        if self.min_interval_s <= 0:
            raise ValueError(f"min_interval_s must be > 0, got {self.min_interval_s}")

    def frame(self, t: float) -> None:
        """Count one processed frame at monotonic time `t` (s)."""
        if self._since is None:
            self._since = t
            return
        self._frames += 1

    def rate(self, t: float) -> float | None:
        """Frames per second since the first frame or the last rate given, then start a new
        interval at `t`; None (and the interval goes on) while it is shorter than `min_interval_s`."""
        if self._since is None or t - self._since < self.min_interval_s:
            return None
        fps = self._frames / (t - self._since)
        self._since, self._frames = t, 0
        return fps


def dependency_versions() -> dict[str, str]:
    """The versions in use of what the figures depend on, for `edge-fer bench --json` and
    `edge-fer doctor`: Python, numpy, OpenCV, the TFLite runtime and paho-mqtt (the lock file,
    firmware_config/constraints.txt, says which ones the README's figures were measured with).
    A package that cannot be imported reads ``"missing: <why>"``.

    >>> sorted(dependency_versions())
    ['litert', 'numpy', 'opencv', 'paho-mqtt', 'pydantic', 'python']
    """
    import platform
    from importlib.metadata import PackageNotFoundError, version

    def package(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "missing: not installed"

    out = {"python": platform.python_version()}
    try:
        import numpy

        out["numpy"] = numpy.__version__
    except ImportError as exc:  # pragma: no cover - a dependency
        out["numpy"] = f"missing: {exc}"
    try:
        import cv2

        wheel = next((f"{n} {package(n)}" for n in ("opencv-python-headless", "opencv-python") if not package(n).startswith("missing")), "")
        out["opencv"] = f"{cv2.__version__}" + (f" ({wheel})" if wheel else "")
    except ImportError as exc:  # pragma: no cover - a dependency
        out["opencv"] = f"missing: {exc}"
    from edge_fer.errors import EdgeFerError
    from edge_fer.runtime import runtime_name

    try:
        out["litert"] = runtime_name()
    except EdgeFerError as exc:
        out["litert"] = f"missing: {exc}"
    out["paho-mqtt"] = package("paho-mqtt")
    out["pydantic"] = package("pydantic")
    return out
