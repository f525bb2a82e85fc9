"""Sinks: everything that leaves the process (stdout JSON lines, MQTT through a durable queue)."""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Protocol

from edge_fer.config import SINK_SPECS, Settings
from edge_fer.registry import Registry
from edge_fer.sinks.payloads import Event


class Sink(Protocol):
    """Where events go. `publish` must not block on the network; `close` flushes within a time."""

    def publish(self, event: Event) -> None: ...

    def close(self, timeout_s: float = 5.0) -> None: ...


SinkFactory = Callable[[Settings, "IO[str] | None"], Sink]
SINKS: Registry[SinkFactory] = Registry("sink")


@SINKS.register("stdout")
def _stdout(settings: Settings, stream: IO[str] | None) -> Sink:
    from edge_fer.sinks.stdout import StdoutSink

    return StdoutSink(settings.topic_prefix, settings.device_id, stream)


@SINKS.register("mqtt")
def _mqtt(settings: Settings, stream: IO[str] | None) -> Sink:
    from edge_fer.sinks.mqtt import MqttSink

    return MqttSink(settings)


def build_sinks(settings: Settings, stream: IO[str] | None = None) -> list[Sink]:
    """One sink per entry of ``settings.sinks`` (``mqtt://…`` URLs were folded into
    ``settings.mqtt`` when the settings were loaded; several MQTT specs mean one MQTT sink)."""
    keys: list[str] = []
    for spec in settings.sinks:
        key = SINK_SPECS.get(spec.split("://", 1)[0], spec)
        if key not in keys:
            keys.append(key)
    sinks: list[Sink] = []
    try:
        for key in keys:
            sinks.append(SINKS.get(key)(settings, stream))
        if settings.dashboard.listen:
            from edge_fer.sinks.dashboard import DashboardSink

            sinks.append(DashboardSink(settings.dashboard.listen, settings.device_id, settings.dashboard.allow_remote))
    except Exception:
        for sink in sinks:
            sink.close(timeout_s=0.5)
        raise
    return sinks


__all__ = ["SINKS", "Event", "Sink", "build_sinks"]
