"""`edge-fer doctor`: one line per check — what works, what does not, and how to fix it."""

from __future__ import annotations

import platform
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass

from edge_fer.config import Settings
from edge_fer.errors import EdgeFerError


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True


def _python(_: Settings) -> Check:
    ok = sys.version_info >= (3, 10)
    return Check("python", ok, f"{platform.python_version()}" + ("" if ok else " (need 3.10 or newer)"))


def _runtime(_: Settings) -> Check:
    from edge_fer.runtime import runtime_name

    try:
        return Check("tflite runtime", True, runtime_name())
    except EdgeFerError as exc:
        return Check("tflite runtime", False, str(exc))


def _models(settings: Settings) -> Check:
    from edge_fer.models import verify_all

    wanted = {settings.models.detector, settings.models.emotion}
    bad = [f"{e.name} {s}" for e, s in verify_all(settings.models.dir) if e.name in wanted and s != "ok"]
    if bad:
        return Check("models", False, f"{', '.join(bad)} in {settings.models.dir}: run `edge-fer models fetch`")
    return Check("models", True, f"{', '.join(sorted(wanted))} verified in {settings.models.dir}")


def _edgetpu(settings: Settings) -> Check:
    from edge_fer.runtime import edgetpu_available

    ok, why = edgetpu_available()
    return Check("edge tpu", ok, "present" if ok else why, required=settings.runtime.backend == "edgetpu")


def _broker(settings: Settings) -> Check:
    if not any(s.startswith("mqtt") for s in settings.sinks):
        return Check("broker", True, "no MQTT sink configured", required=False)
    host, port = settings.mqtt.host, settings.mqtt.port
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        return Check(
            "broker",
            False,
            f"cannot reach {host}:{port} ({exc.strerror or exc}); events will queue until it is up. "
            "Is mosquitto running? `systemctl status mosquitto`",
            required=False,
        )
    return Check("broker", True, f"{host}:{port} reachable", required=False)


def _source(settings: Settings, spec: str) -> Check:
    from edge_fer.capture import source_from_spec

    try:
        with source_from_spec(spec, settings.source, settings.models.dir) as source:
            frame = source.read()
    except EdgeFerError as exc:
        return Check(f"source {spec}", False, str(exc))
    if frame is None:
        return Check(f"source {spec}", False, "opened but gave no frame")
    return Check(f"source {spec}", True, f"{frame.width}x{frame.height} frame read")


def run_checks(settings: Settings, source: str | None = None, out: Callable[[str], None] = print) -> int:
    """Print each check; exit code 1 when a required check fails, else 0."""
    checks = [fn(settings) for fn in (_python, _runtime, _models, _edgetpu, _broker)]
    checks.append(_source(settings, source or settings.source.spec))
    for check in checks:
        mark = "ok  " if check.ok else ("FAIL" if check.required else "warn")
        out(f"[{mark}] {check.name:<16} {check.detail}")
    return 1 if any(not c.ok and c.required for c in checks) else 0
