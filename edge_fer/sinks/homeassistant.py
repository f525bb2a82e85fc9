"""Home Assistant MQTT discovery: retained sensor configs for the summary and stats metrics.

Topics follow ``homeassistant/sensor/<device_id>_<metric>/config``; all sensors are grouped as
one device whose availability is bound to ``<prefix>/availability``. When discovery is switched
off, the same topics get an empty retained payload, which removes the sensors cleanly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edge_fer import EMOTIONS, __version__
from edge_fer.sinks.payloads import Event, check_payload

if TYPE_CHECKING:
    from edge_fer.config import Settings

#: metric → (name, source topic, value template, unit, icon, state_class)
SENSORS: dict[str, tuple[str, str, str, str | None, str, str | None]] = {
    "faces": ("Faces present", "summary", "{{ value_json.faces.max }}", None, "mdi:account-group", "measurement"),
    "dominant_emotion": ("Dominant emotion", "summary", "{{ value_json.dominant }}", None, "mdi:emoticon-outline", None),
    **{f"emotion_{e}": (f"Share {e}", "summary", f"{{{{ value_json.emotions.{e} }}}}", None, "mdi:emoticon", "measurement") for e in EMOTIONS},
    "valence": ("Valence", "summary", "{{ value_json.valence }}", None, "mdi:thumbs-up-down", "measurement"),
    "attention_share": ("Attention share", "summary", "{{ value_json.attention_share }}", None, "mdi:eye", "measurement"),
    "micro_per_min": ("Micro-expressions per minute", "summary", "{{ value_json.micro_per_min }}", "1/min", "mdi:flash", "measurement"),
    "fps": ("Frames per second", "stats", "{{ value_json.fps }}", "fps", "mdi:speedometer", "measurement"),
    "cpu_temp": ("CPU temperature", "stats", "{{ value_json.cpu_temp_c }}", "°C", "mdi:thermometer", "measurement"),
}


def config_topic(settings: Settings, metric: str) -> str:
    return f"{settings.homeassistant.prefix}/sensor/{settings.device_id}_{metric}/config"


def discovery_events(settings: Settings) -> list[Event]:
    """One retained config per sensor (or, when discovery is off, one empty retained payload)."""
    prefix = settings.topic_prefix
    events = []
    for metric, (name, topic, template, unit, icon, state_class) in SENSORS.items():
        if not settings.homeassistant.discovery:
            events.append(Event(config_topic(settings, metric), None, qos=1, retain=True, text="", durable=False, absolute=True))
            continue
        payload: dict[str, Any] = {
            "name": name,
            "unique_id": f"edge_fer_{settings.device_id}_{metric}",
            "state_topic": f"{prefix}/{topic}",
            "value_template": template,
            "availability_topic": f"{prefix}/availability",
            "payload_available": "online",
            "payload_not_available": "offline",
            "icon": icon,
            "device": {
                "identifiers": [f"edge_fer_{settings.device_id}"],
                "name": f"edge-fer {settings.device_id}",
                "model": "edge-fer",
                "manufacturer": "edge-fer",
                "sw_version": __version__,
            },
        }
        if unit:
            payload["unit_of_measurement"] = unit
        if state_class:
            payload["state_class"] = state_class
        check_payload(payload)
        events.append(Event(config_topic(settings, metric), payload, qos=1, retain=True, durable=False, absolute=True))
    return events
