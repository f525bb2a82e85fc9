"""`edge-fer doctor`: one line per check — what works, what does not, and how to fix it."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def _versions(_: Settings) -> Check:
    """The versions in use against the lock the README's figures were measured with."""
    from edge_fer.runner.health import dependency_versions

    found = dependency_versions()
    missing = [k for k, v in found.items() if v.startswith("missing")]
    detail = ", ".join(f"{k} {v}" for k, v in found.items())
    if missing:
        return Check("versions", False, f"{detail}; reinstall: make install")
    return Check("versions", True, detail)


def _runtime(_: Settings) -> Check:
    from edge_fer.runtime import runtime_name

    try:
        return Check("tflite runtime", True, runtime_name())
    except EdgeFerError as exc:
        return Check("tflite runtime", False, str(exc))


def _models(settings: Settings) -> Check:
    from edge_fer.models import verify_all

    wanted = {settings.models.detector, settings.models.emotion}
    if settings.models.far_detector:
        wanted.add(settings.models.far_detector)
    if settings.landmarks.enabled:
        wanted.add(settings.models.landmarks)
    bad = [f"{e.name} {s}" for e, s in verify_all(settings.models.dir) if e.name in wanted and s != "ok"]
    if bad:
        return Check("models", False, f"{', '.join(bad)} in {settings.models.dir}: run `edge-fer models fetch`")
    return Check("models", True, f"{', '.join(sorted(wanted))} verified in {settings.models.dir}")


def _backends(settings: Settings) -> Check:
    """Load the configured models as `edge-fer run` would and say which back-end runs each."""
    from edge_fer.models import resolve
    from edge_fer.runtime import load_manifest_model

    parts = []
    detectors = [("detector", settings.models.detector)] + ([("detector", settings.models.far_detector)] if settings.models.far_detector else [])
    for kind, name in (*detectors, ("emotion", settings.models.emotion)):
        try:
            model = load_manifest_model(*resolve(name, settings.models.dir, kind), settings)
        except EdgeFerError as exc:
            return Check("backend", False, f"{name} (runtime.backend = {settings.runtime.backend!r}): {exc}")
        parts.append(f"{name} on {model.label} ({model.provider})")
    return Check("backend", True, f"runtime.backend = {settings.runtime.backend!r}: " + "; ".join(parts))


def _edgetpu(settings: Settings) -> Check:
    from edge_fer.runtime import edgetpu_available

    ok, why = edgetpu_available()
    return Check("edge tpu", ok, f"present: {why}" if ok else why, required=settings.runtime.backend == "edgetpu")


def _gpu(_: Settings) -> Check:
    """The Jetson path: ONNX Runtime and its TensorRT / CUDA execution providers."""
    try:
        import onnxruntime  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return Check("cuda/tensorrt", False, "onnxruntime is not installed (Jetson: the onnxruntime-gpu wheel for your JetPack)", required=False)
    providers = onnxruntime.get_available_providers()
    gpu = [p for p in providers if p in ("TensorrtExecutionProvider", "CUDAExecutionProvider")]
    detail = f"onnxruntime {onnxruntime.__version__}: {', '.join(providers)}"
    return Check("cuda/tensorrt", bool(gpu), detail if gpu else detail + " (no GPU provider)", required=False)


def _mqtt_client(settings: Settings, suffix: str) -> Any:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"edge-fer-doctor-{suffix}-{os.getpid()}")
    cfg = settings.mqtt
    if cfg.username:
        client.username_pw_set(cfg.username, cfg.resolved_password())
    if cfg.tls:
        client.tls_set(
            ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
            certfile=str(cfg.cert_file) if cfg.cert_file else None,
            keyfile=str(cfg.key_file) if cfg.key_file else None,
        )
    return client


def _broker(settings: Settings) -> Check:
    """Connect, subscribe and publish a probe on the device's own prefix, and get it back."""
    if not any(s.startswith("mqtt") for s in settings.sinks):
        return Check("broker", True, "no MQTT sink configured", required=False)
    import threading

    host, port = settings.mqtt.host, settings.mqtt.port
    topic = f"{settings.topic_prefix}/doctor/{os.getpid()}"
    got = threading.Event()
    refused: list[str] = []
    client = _mqtt_client(settings, "probe")

    def on_connect(c: Any, _u: object, _f: object, reason: Any, _p: object) -> None:
        if reason.is_failure:
            refused.append(str(reason))
            got.set()
        else:
            c.subscribe(topic, qos=1)

    client.on_connect = on_connect
    client.on_subscribe = lambda c, *_: c.publish(topic, b"probe", qos=1)
    client.on_message = lambda *_: got.set()
    try:
        client.connect(host, port, keepalive=10)
    except (OSError, ValueError) as exc:
        return Check(
            "broker",
            False,
            f"cannot reach {host}:{port} ({getattr(exc, 'strerror', None) or exc}); events will queue until it is up. "
            "Is mosquitto running? `systemctl status mosquitto`",
            required=False,
        )
    client.loop_start()
    got.wait(5.0)
    client.loop_stop()
    client.disconnect()
    if refused:
        return Check("broker", False, f"{host}:{port} refused the login ({refused[0]}): check mqtt.username and the password", required=False)
    if not got.is_set():
        return Check("broker", False, f"{host}:{port}: connected, but the publish/subscribe round trip on {topic} failed (ACL?)", required=False)
    return Check("broker", True, f"{host}:{port}: connect, subscribe, publish round trip ok", required=False)


def _systemd_unit(_: Settings) -> Check:
    import shutil
    import subprocess

    if shutil.which("systemctl") is None or not Path("/run/systemd/system").is_dir():
        return Check("systemd unit", True, "not running under systemd here", required=False)
    state = subprocess.run(["systemctl", "is-active", "edge-fer"], capture_output=True, text=True, check=False).stdout.strip()
    if state == "active":
        return Check("systemd unit", True, "edge-fer.service is active", required=False)
    return Check("systemd unit", False, f"edge-fer.service is {state or 'not installed'}: `journalctl -u edge-fer -n 50`", required=False)


def _state_dir(settings: Settings) -> Check:
    import shutil

    path = settings.state_dir
    probe = path if path.exists() else next((p for p in path.parents if p.exists()), path)
    free_mb = shutil.disk_usage(probe).free / 1e6
    writable = os.access(probe, os.W_OK)
    need_mb = settings.mqtt.queue_max_bytes * 2 / 1e6  # payloads plus sqlite overhead
    ok = writable and free_mb > need_mb
    detail = f"{path}: {free_mb:,.0f} MB free, queue bound {settings.mqtt.queue_max_bytes / 1e6:.0f} MB"
    if not writable:
        detail += "; not writable by this user (systemd: StateDirectory=edge-fer)"
    elif not ok:
        detail += f"; need about {need_mb:.0f} MB: lower mqtt.queue_max_bytes or free disk space"
    return Check("queue storage", ok, detail)


def _service(settings: Settings) -> Check:
    """What a running edge-fer reported last: its retained `<prefix>/stats` on the broker."""
    if not any(s.startswith("mqtt") for s in settings.sinks):
        return Check("running service", True, "no MQTT sink: run `systemctl status edge-fer` to see it", required=False)
    import json
    import threading

    got: dict[str, object] = {}
    done = threading.Event()
    client = _mqtt_client(settings, "stats")
    cfg = settings.mqtt

    def on_message(_c: object, _u: object, msg: Any) -> None:
        try:
            got.update(json.loads(msg.payload))
        except ValueError:
            pass
        done.set()

    client.on_connect = lambda c, *_: c.subscribe(f"{settings.topic_prefix}/stats", qos=0)
    client.on_message = on_message
    try:
        client.connect(cfg.host, cfg.port, keepalive=10)
    except OSError:
        return Check("running service", False, "broker unreachable: cannot read the service's stats", required=False)
    client.loop_start()
    done.wait(3.0)
    client.loop_stop()
    client.disconnect()
    if not got:
        return Check("running service", False, f"no stats retained on {settings.topic_prefix}/stats: is edge-fer running?", required=False)
    keys = ("source_state", "inference_state", "mqtt_state", "fps", "queue_depth", "queue_dropped", "dropped_frames", "uptime_s")
    state = ", ".join(f"{k}={got[k]}" for k in keys if k in got)
    healthy = got.get("source_state") in ("running", "finished") and got.get("inference_state", "ok") == "ok"
    return Check("running service", healthy, f"last stats: {state}", required=False)


def _source(settings: Settings, spec: str) -> Check:
    from edge_fer.capture import redact, source_from_spec

    name = f"source {redact(spec)}"
    try:
        with source_from_spec(spec, settings.source, settings.models.dir) as source:
            frame = source.read()
    except EdgeFerError as exc:
        return Check(name, False, str(exc))
    if frame is None:
        return Check(name, False, "opened but gave no frame")
    return Check(name, True, f"{frame.width}x{frame.height} frame read")


def run_checks(settings: Settings, source: str | None = None, out: Callable[[str], None] = print) -> int:
    """Print each check; exit code 1 when a required check fails, else 0."""
    checks = [fn(settings) for fn in (_python, _versions, _runtime, _models, _backends, _edgetpu, _gpu, _state_dir, _broker, _service, _systemd_unit)]
    checks.append(_source(settings, source or settings.source.spec))
    for check in checks:
        mark = "ok  " if check.ok else ("FAIL" if check.required else "warn")
        out(f"[{mark}] {check.name:<16} {check.detail}")
    return 1 if any(not c.ok and c.required for c in checks) else 0
