"""Home Assistant MQTT discovery: retained sensor configs for the summary and stats metrics.

Topics follow ``homeassistant/sensor/<device_id>_<metric>/config``; all sensors are grouped as
one device whose availability is bound to ``<prefix>/availability``. When discovery is switched
off, the same topics get an empty retained payload, which removes the sensors cleanly.

Every value template reads its field with ``.get``, so a window that has no value for it
(nobody in view, shares withheld by ``min_faces``, no temperature sensor, fps not yet measured)
renders ``None``, which Home Assistant shows as ``unknown`` — never a template warning, never the
previous window's value. `value_template` is the one place the templates are made.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge_fer import EMOTIONS, __version__
from edge_fer.errors import ModelError
from edge_fer.sinks.payloads import Event, check_payload

if TYPE_CHECKING:
    from edge_fer.config import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SensorSpec:
    """One discovered sensor.

    Args:
        name: the entity's name (Home Assistant prefixes the device's name).
        topic: the payload it reads, ``summary`` or ``stats`` (under the device prefix).
        path: where its value sits in that payload, e.g. ``("faces", "max")``.
        unit: unit of measurement (None: unitless).
        device_class: a Home Assistant sensor device class (``temperature``, ``enum``…).
        state_class: ``measurement`` for numbers Home Assistant may graph and keep statistics of;
            None for labels.
        precision: ``suggested_display_precision``, digits after the decimal point.
        icon: an ``mdi:`` icon.
        diagnostic: health rather than what the device measures (``entity_category: diagnostic``).
        options: the allowed states of an ``enum`` sensor.
    """

    name: str
    topic: str
    path: tuple[str, ...]
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = "measurement"
    precision: int | None = None
    icon: str | None = None
    diagnostic: bool = False
    options: tuple[str, ...] | None = None


def value_template(path: Sequence[str]) -> str:
    """The Jinja template reading `path` from the JSON payload, ``None`` wherever it is missing
    or null: ``("emotions", "happy")`` → ``{{ (value_json.get('emotions') or {}).get('happy') }}``."""
    expr = "value_json"
    for key in path[:-1]:
        expr = f"({expr}.get('{key}') or {{}})"
    return f"{{{{ {expr}.get('{path[-1]}') }}}}"


def sensors(labels: Sequence[str] = EMOTIONS) -> dict[str, SensorSpec]:
    """metric → sensor, for an emotion model with these `labels` (one share sensor per label)."""
    return {
        "faces": SensorSpec("Faces present", "summary", ("faces", "max"), precision=0, icon="mdi:account-group"),
        "dominant_emotion": SensorSpec(
            "Dominant emotion", "summary", ("dominant",), device_class="enum", state_class=None, icon="mdi:emoticon-outline", options=tuple(labels)
        ),
        **{f"emotion_{e}": SensorSpec(f"Share {e}", "summary", ("emotions", e), precision=2, icon="mdi:emoticon") for e in labels},
        "valence": SensorSpec("Valence", "summary", ("valence",), precision=2, icon="mdi:thumbs-up-down"),
        "attention_share": SensorSpec("Attention share", "summary", ("attention_share",), precision=2, icon="mdi:eye"),
        "micro_per_min": SensorSpec("Micro-expressions per minute", "summary", ("micro_per_min",), unit="1/min", precision=1, icon="mdi:flash"),
        "fps": SensorSpec("Frames per second", "stats", ("fps",), unit="fps", precision=1, icon="mdi:speedometer", diagnostic=True),
        "cpu_temp": SensorSpec(
            "CPU temperature", "stats", ("cpu_temp_c",), unit="°C", device_class="temperature", precision=1, icon="mdi:thermometer", diagnostic=True
        ),
    }


def emotion_labels(settings: Settings) -> tuple[str, ...]:
    """The configured emotion model's class names, from its manifest entry (the seven basic
    emotions when the entry cannot be read: the pipeline has reported that already)."""
    from edge_fer.models import get_entry

    try:
        labels = get_entry(settings.models.emotion, "emotion").extra.get("labels")
    except ModelError as exc:
        logger.debug("discovery: emotion labels from the defaults (%s)", exc)
        return EMOTIONS
    return tuple(str(label) for label in labels) if labels else EMOTIONS


def config_topic(settings: Settings, metric: str) -> str:
    return f"{settings.homeassistant.prefix}/sensor/{settings.device_id}_{metric}/config"


def discovery_config(settings: Settings, metric: str, spec: SensorSpec) -> dict[str, Any]:
    """The discovery payload of one sensor (full key names, as Home Assistant documents them)."""
    prefix = settings.topic_prefix
    payload: dict[str, Any] = {
        "name": spec.name,
        "unique_id": f"edge_fer_{settings.device_id}_{metric}",
        "state_topic": f"{prefix}/{spec.topic}",
        "value_template": value_template(spec.path),
        "availability_topic": f"{prefix}/availability",
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": {
            "identifiers": [f"edge_fer_{settings.device_id}"],
            "name": f"edge-fer {settings.device_id}",
            "model": "edge-fer",
            "manufacturer": "edge-fer",
            "sw_version": __version__,
        },
    }
    optional = {
        "icon": spec.icon,
        "unit_of_measurement": spec.unit,
        "device_class": spec.device_class,
        "state_class": spec.state_class,
        "suggested_display_precision": spec.precision,
        "entity_category": "diagnostic" if spec.diagnostic else None,
        "options": list(spec.options) if spec.options else None,
    }
    payload.update({k: v for k, v in optional.items() if v is not None})
    return payload


def discovery_events(settings: Settings, labels: Sequence[str] | None = None) -> list[Event]:
    """One retained QoS 1 config per sensor (or, when discovery is off, one empty retained payload).

    Args:
        labels: the emotion model's class names (default: read from its manifest entry).
    """
    events = []
    for metric, spec in sensors(emotion_labels(settings) if labels is None else labels).items():
        if not settings.homeassistant.discovery:
            events.append(Event(config_topic(settings, metric), None, qos=1, retain=True, text="", durable=False, absolute=True))
            continue
        payload = discovery_config(settings, metric, spec)
        check_payload(payload)
        events.append(Event(config_topic(settings, metric), payload, qos=1, retain=True, durable=False, absolute=True))
    return events
