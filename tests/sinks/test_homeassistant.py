"""Home Assistant discovery: valid configs, one device, clean removal; every template rendered
against the payloads the product really sends; the configs checked against HA's sensor schema.

`make check-ha` (tests/integration/check_ha.py) runs the same against a real Home Assistant.
"""

from __future__ import annotations

import io
import json
import os
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from jinja2 import StrictUndefined, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from edge_fer import EMOTIONS
from edge_fer.config import load_settings
from edge_fer.sinks.homeassistant import SensorSpec, config_topic, discovery_config, discovery_events, emotion_labels, sensors, value_template
from tests.conftest import Broker, Collector, edge_fer, leaving_clip, wait_until, write_clip

REQUIRED = {"name", "unique_id", "state_topic", "value_template", "availability_topic", "device"}
ROOT = Path(__file__).resolve().parents[2]


def test_discovery_configs_then_clean_removal(broker: Broker, run_env: dict[str, str], tmp_path: Path) -> None:
    run = ["run", "--source", "demo", "--sink", broker.url, "--max-frames", "24", "--realtime", "off"]
    assert edge_fer(run, run_env, tmp_path).returncode == 0
    ha = Collector(broker.port, topic="homeassistant/#")  # a Home Assistant starting later: retained configs
    try:
        metrics = {"faces", "dominant_emotion", "valence", "attention_share", "micro_per_min", "fps", "cpu_temp"}
        metrics |= {f"emotion_{e}" for e in EMOTIONS}
        assert ha.wait_for(lambda ms: len(ms) >= len(metrics), 10)
        configs = {m.topic: m.json() for m in ha.messages}
        assert set(configs) == {f"homeassistant/sensor/test-device_{m}/config" for m in metrics}
        # Retained, at QoS 1: a retained message reaches a QoS 1 subscriber at its own QoS.
        assert all(m.retain and m.qos == 1 for m in ha.messages)
        devices = set()
        for config in configs.values():
            assert set(config) >= REQUIRED
            assert not ha_schema_errors(config), config
            assert config["availability_topic"] == "edge_fer/test-device/availability"
            assert config["state_topic"] in ("edge_fer/test-device/summary", "edge_fer/test-device/stats")
            devices.add(tuple(config["device"]["identifiers"]))
        assert devices == {("edge_fer_test-device",)}  # one device in Home Assistant
        assert len({c["unique_id"] for c in configs.values()}) == len(configs)
    finally:
        ha.close()
    off = dict(run_env, EDGE_FER_HOMEASSISTANT__DISCOVERY="false")
    assert edge_fer(run, off, tmp_path).returncode == 0
    after = Collector(broker.port, topic="homeassistant/#")
    try:
        # Empty retained payloads deleted the configs: nothing retained is left to deliver.
        assert not after.wait_for(lambda ms: len(ms) > 0, 1.5)
    finally:
        after.close()


# -- the templates, rendered as Home Assistant renders them --------------------------------------

#: Home Assistant renders value templates with Jinja2 in an immutable sandbox; StrictUndefined
#: turns what HA logs as "Template variable warning" (and then shows stale) into a failure.
JINJA = ImmutableSandboxedEnvironment(undefined=StrictUndefined)


def render(template: str, payload: dict[str, Any]) -> str:
    return JINJA.from_string(template).render(value_json=payload, value=json.dumps(payload))


def ha_state(spec: SensorSpec, rendered: str) -> str:
    """The state HA (2024.10 and later) gives a rendered value: ``None`` → unknown; a numeric
    sensor needs a number, an enum one of its options (else HA logs and keeps the old state)."""
    if rendered == "None":
        return "unknown"
    if spec.device_class == "enum":
        assert spec.options and rendered in spec.options, f"{spec.name}: {rendered!r} is not one of {spec.options}"
        return rendered
    float(rendered)  # ValueError: HA would log "non-numeric value"
    return rendered


@pytest.fixture(scope="module")
def payloads(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """kind → the payloads the real CLI published (real models, real footage, stdout sink)."""
    tmp = tmp_path_factory.mktemp("ha-payloads")
    frames, fps = leaving_clip(models_dir, face_s=2.5, empty_s=2.5)
    clip = write_clip(frames, tmp / "leaves.mp4", fps)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_FER_")}
    env.update(
        {
            "EDGE_FER_MODELS__DIR": str(models_dir),
            "EDGE_FER_STATE_DIR": str(tmp / "state"),
            "EDGE_FER_DEVICE_ID": "test-device",
            "EDGE_FER_AGGREGATE__STATS_INTERVAL_S": "1",
            "XDG_STATE_HOME": str(tmp / "xdg-state"),
            "XDG_CACHE_HOME": str(tmp / "xdg-cache"),
        }
    )
    kinds: dict[str, list[dict[str, Any]]] = {}

    def run(extra: dict[str, str], *args: str) -> list[dict[str, Any]]:
        result = edge_fer(["run", "--source", str(clip), "--window", "1", *args], dict(env, **extra), tmp)
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines()]

    # Paced like a camera: windows with the face, windows without, and stats over real intervals.
    live = run({})
    summaries = [p for p in live if p["topic"].endswith("/summary")]
    kinds["faces"] = [s for s in summaries if s["faces"]["max"] >= 1 and s["emotions"]]
    kinds["nobody"] = [s for s in summaries if s["faces"]["max"] == 0]
    stats = [p for p in live if p["topic"].endswith("/stats")]
    kinds["stats, first"] = stats[:1]
    kinds["stats"] = stats[1:]
    # k-anonymity: one face, min_faces 2 — counts, no shares.
    withheld = run({"EDGE_FER_AGGREGATE__MIN_FACES": "2"}, "--realtime", "off")
    kinds["withheld (min_faces)"] = [p for p in withheld if p["topic"].endswith("/summary") and p["suppressed"]]
    # Every face below the abstention threshold: faces counted, no shares, not `suppressed`.
    unsure = run({"EDGE_FER_CLASSIFIER__MIN_CONFIDENCE": "0.99"}, "--realtime", "off")
    kinds["uncertain"] = [p for p in unsure if p["topic"].endswith("/summary") and p["faces"]["max"] >= 1]
    kinds["paused"] = paused_stats(models_dir, tmp)
    return kinds


def paused_stats(models_dir: Path, tmp: Path) -> list[dict[str, Any]]:
    """Stats a runner publishes while paused by the remote `pause` command (in-process: the
    real runner, pipeline and capture, its stdout sink into a buffer)."""
    from edge_fer.capture import CaptureThread, source_from_spec
    from edge_fer.pipeline import Pipeline
    from edge_fer.runner import Runner
    from edge_fer.sinks.stdout import StdoutSink

    settings = load_settings(
        environ={},
        overrides={"models": {"dir": str(models_dir)}, "sinks": [], "state_dir": str(tmp / "paused"), "aggregate": {"stats_interval_s": 1}},
    )
    stream = io.StringIO()
    capture = CaptureThread(lambda: source_from_spec("demo", settings.source, models_dir), realtime=True)
    capture.start()
    runner = Runner(settings, Pipeline.from_settings(settings), capture, [StdoutSink("edge_fer/test-device", "test-device", stream)])

    def pause_after_some_frames() -> None:
        wait_until(lambda: runner.report.frames >= 10, timeout_s=30)
        runner.inbox.submit("pause", b"")

    pauser = threading.Thread(target=pause_after_some_frames, daemon=True)
    pauser.start()
    try:
        runner.run(duration_s=3.5)
    finally:
        capture.stop()
        pauser.join(timeout=5)
    published = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [p for p in published if p["topic"].endswith("/stats") and p["paused"]]


def test_the_payload_corpus_has_every_kind(payloads: dict[str, list[dict[str, Any]]]) -> None:
    for kind, found in payloads.items():
        assert found, f"no {kind!r} payload was published"
    assert all(p["emotions"] is None and p["faces"]["max"] == 1 for p in payloads["withheld (min_faces)"])
    assert all(p["emotions"] is None and not p["suppressed"] for p in payloads["uncertain"])
    assert all(p["emotions"] is None and p["dominant"] is None for p in payloads["nobody"])


@pytest.mark.parametrize("metric", list(sensors()))
def test_every_template_renders_for_every_payload_kind(metric: str, payloads: dict[str, list[dict[str, Any]]]) -> None:
    spec = sensors()[metric]
    template = value_template(spec.path)
    for kind, found in payloads.items():
        for payload in found:
            if not payload["topic"].endswith("/" + spec.topic):
                continue
            state = ha_state(spec, render(template, payload))  # UndefinedError: HA would warn and go stale
            per_window = spec.topic == "summary" and metric not in ("faces", "micro_per_min")
            if kind == "faces":
                assert state != "unknown" or metric == "attention_share" and payload["attention_share"] is None, (metric, payload)
            if kind in ("nobody", "withheld (min_faces)") and per_window:
                assert state == "unknown", f"{metric} reads {state} for a {kind} window: the previous person's value would stay"
            if kind == "uncertain" and (metric.startswith("emotion_") or metric in ("dominant_emotion", "valence")):
                assert state == "unknown", (metric, state)
            if metric == "faces":
                assert state == str(payload["faces"]["max"])
            if metric == "fps":
                assert (state == "unknown") == (payload["fps"] is None)


def test_the_old_unguarded_templates_fail_this_test_on_an_empty_window(payloads: dict[str, list[dict[str, Any]]]) -> None:
    """The shape of template the issue reported (``'None' has no attribute 'angry'`` in HA's log,
    and the share kept from the previous window) is caught by the rendering above."""
    empty = payloads["nobody"][0]
    with pytest.raises(UndefinedError):
        render("{{ value_json.emotions.angry }}", empty)
    assert render(value_template(("emotions", "angry")), empty) == "None"


def test_value_template_reads_missing_and_null_fields_as_none() -> None:
    template = value_template(("faces", "max"))
    assert template == "{{ (value_json.get('faces') or {}).get('max') }}"
    assert render(template, {"faces": {"max": 2}}) == "2"
    for payload in ({}, {"faces": None}, {"faces": {}}, {"faces": {"max": None}}):
        assert render(template, payload) == "None"


# -- the configs, against Home Assistant's MQTT sensor schema -----------------------------------

#: Home Assistant's MQTT sensor discovery schema, encoded from its source: the keys of
#: `homeassistant/components/mqtt/sensor.py:_PLATFORM_SCHEMA_BASE` (MQTT_RO_SCHEMA +
#: MQTT_ENTITY_COMMON_SCHEMA of mqtt/mixins.py; 2024.3, plus `options` from 2024.9), its
#: `validate_sensor_state_and_device_class_config`, and `components/sensor/const.py` (device and
#: state classes, the units a device class accepts). Unknown keys are dropped silently by
#: discovery (``extra=vol.REMOVE_EXTRA``), so an unknown key is an error here.
HA_SENSOR_KEYS = {
    "availability", "availability_mode", "availability_template", "availability_topic", "device", "device_class",
    "enabled_by_default", "encoding", "entity_category", "expire_after", "force_update", "icon", "json_attributes_template",
    "json_attributes_topic", "last_reset_value_template", "name", "object_id", "options", "origin", "payload_available",
    "payload_not_available", "qos", "state_class", "state_topic", "suggested_display_precision", "unique_id",
    "unit_of_measurement", "value_template",
}  # fmt: skip
HA_DEVICE_KEYS = {
    "identifiers", "connections", "manufacturer", "model", "name", "hw_version", "serial_number", "sw_version",
    "via_device", "suggested_area", "configuration_url",
}  # fmt: skip
HA_DEVICE_CLASSES = {
    "apparent_power", "aqi", "atmospheric_pressure", "battery", "carbon_dioxide", "carbon_monoxide", "current",
    "data_rate", "data_size", "date", "distance", "duration", "energy", "energy_storage", "enum", "frequency", "gas",
    "humidity", "illuminance", "irradiance", "moisture", "monetary", "nitrogen_dioxide", "nitrogen_monoxide",
    "nitrous_oxide", "ozone", "ph", "pm1", "pm10", "pm25", "power", "power_factor", "precipitation",
    "precipitation_intensity", "pressure", "reactive_power", "signal_strength", "sound_pressure", "speed",
    "sulphur_dioxide", "temperature", "timestamp", "volatile_organic_compounds", "volatile_organic_compounds_parts",
    "voltage", "volume", "volume_flow_rate", "volume_storage", "water", "weight", "wind_speed",
}  # fmt: skip
HA_STATE_CLASSES = {"measurement", "total", "total_increasing"}
HA_NON_NUMERIC_CLASSES = {"enum", "timestamp", "date"}
#: DEVICE_CLASS_UNITS / DEVICE_CLASS_STATE_CLASSES for the classes edge-fer uses.
HA_UNITS = {"temperature": {"°C", "°F", "K"}}
HA_CLASS_STATE_CLASSES = {"temperature": {"measurement"}, "enum": set()}
HA_ENTITY_CATEGORIES_FOR_SENSORS = {"diagnostic"}  # sensor/__init__.py refuses `config` for sensors
TOPIC = re.compile(r"^[^#+\x00]+$")


def ha_schema_errors(config: dict[str, Any]) -> list[str]:
    """What Home Assistant's MQTT sensor discovery would refuse, drop or warn about in `config`."""
    errors = [f"unknown key {k!r} (HA drops it)" for k in set(config) - HA_SENSOR_KEYS]
    for key in ("state_topic", "availability_topic"):
        if key in config and not (isinstance(config[key], str) and TOPIC.match(config[key])):
            errors.append(f"{key} {config[key]!r} is not a topic")
    if "state_topic" not in config:
        errors.append("state_topic is required")
    for key in ("name", "unique_id", "icon", "payload_available", "payload_not_available", "value_template", "unit_of_measurement"):
        if key in config and not isinstance(config[key], str):
            errors.append(f"{key} must be a string")
    if "icon" in config and not re.match(r"^[\w-]+:[\w-]+$", config["icon"]):
        errors.append(f"icon {config['icon']!r} is not prefix:name")
    device = config.get("device", {})
    errors += [f"unknown device key {k!r}" for k in set(device) - HA_DEVICE_KEYS]
    if not device.get("identifiers") and not device.get("connections"):
        errors.append("a device needs identifiers or connections")
    device_class, state_class, unit = config.get("device_class"), config.get("state_class"), config.get("unit_of_measurement")
    if device_class is not None and device_class not in HA_DEVICE_CLASSES:
        errors.append(f"device_class {device_class!r} is not one of HA's")
    if state_class is not None and state_class not in HA_STATE_CLASSES:
        errors.append(f"state_class {state_class!r} is not one of HA's")
    if device_class in HA_CLASS_STATE_CLASSES and state_class is not None and state_class not in HA_CLASS_STATE_CLASSES[device_class]:
        errors.append(f"state_class {state_class!r} is not allowed with device_class {device_class!r}")
    if device_class in HA_UNITS and unit not in HA_UNITS[device_class]:
        errors.append(f"unit {unit!r} is not valid for device_class {device_class!r} (allowed: {sorted(HA_UNITS[device_class])})")
    precision = config.get("suggested_display_precision")
    if precision is not None and (not isinstance(precision, int) or isinstance(precision, bool) or precision < 0):
        errors.append(f"suggested_display_precision {precision!r} is not a non-negative integer")
    if device_class in HA_NON_NUMERIC_CLASSES and (state_class or unit or precision is not None):
        errors.append(f"a {device_class} sensor is not numeric: no state_class, unit or display precision")
    options = config.get("options")
    if options is not None:
        if not options or not all(isinstance(o, str) for o in options):
            errors.append("options must be a non-empty list of strings")
        if state_class or unit:
            errors.append("options are not allowed with state_class or unit_of_measurement")
        if device_class != "enum":
            errors.append("options need device_class enum")
    category = config.get("entity_category")
    if category is not None and category not in HA_ENTITY_CATEGORIES_FOR_SENSORS:
        errors.append(f"entity_category {category!r} is not allowed for a sensor")
    return errors


def _config(metric: str) -> dict[str, Any]:
    return discovery_config(load_settings(environ={}), metric, sensors()[metric])


@pytest.mark.parametrize("metric", list(sensors()))
def test_every_config_passes_home_assistants_sensor_schema(metric: str) -> None:
    assert ha_schema_errors(_config(metric)) == []


@pytest.mark.parametrize(
    "change, error",
    [
        ({"device_class": "temp"}, "not one of HA's"),
        ({"unit_of_measurement": "C"}, "not valid for device_class 'temperature'"),
        ({"entity_category": "config"}, "not allowed for a sensor"),
        ({"state_class": "measurement", "options": ["a"]}, "not allowed with state_class"),
        ({"suggested_display_precision": -1}, "non-negative"),
        ({"precision": 1}, "unknown key 'precision'"),
    ],
)
def test_the_schema_check_refuses_what_home_assistant_refuses(change: dict[str, Any], error: str) -> None:
    assert any(error in e for e in ha_schema_errors({**_config("cpu_temp"), **change}))


def test_entity_metadata_as_home_assistant_expects() -> None:
    configs = {metric: _config(metric) for metric in sensors()}
    temperature = configs["cpu_temp"]
    assert (temperature["device_class"], temperature["unit_of_measurement"], temperature["state_class"]) == ("temperature", "°C", "measurement")
    assert temperature["entity_category"] == configs["fps"]["entity_category"] == "diagnostic"
    dominant = configs["dominant_emotion"]
    assert dominant["device_class"] == "enum" and dominant["options"] == list(EMOTIONS)
    assert "state_class" not in dominant and "unit_of_measurement" not in dominant
    for metric, config in configs.items():
        if metric != "dominant_emotion":
            assert config["state_class"] == "measurement" and isinstance(config["suggested_display_precision"], int), metric
        if metric not in ("fps", "cpu_temp"):
            assert "entity_category" not in config, f"{metric} is a measurement of the room, not a diagnostic"


def test_share_sensors_and_enum_options_follow_the_emotion_model() -> None:
    settings = load_settings(environ={})
    assert emotion_labels(settings) == EMOTIONS  # the default model's manifest labels
    labels = (*EMOTIONS, "contempt")
    events = {e.topic: e.payload for e in discovery_events(settings, labels)}
    assert events[config_topic(settings, "emotion_contempt")] is not None
    dominant = events[config_topic(settings, "dominant_emotion")]
    assert dominant is not None and dominant["options"] == list(labels)


# -- the README ------------------------------------------------------------------------------------


def _key_paths(value: Any, prefix: str = "") -> set[str]:
    if not isinstance(value, dict):
        return set()
    out = set()
    for key, item in value.items():
        out.add(prefix + key)
        out |= _key_paths(item, prefix + key + ".")
    return out


def test_readme_summary_example_has_the_fields_of_a_real_summary(payloads: dict[str, list[dict[str, Any]]]) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("A summary looks like this", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    example = json.loads(block)
    real = payloads["faces"][0]
    assert _key_paths(example) == _key_paths(real), "README's summary example differs from a real summary"
    for metric, spec in sensors().items():
        if spec.topic == "summary":
            assert render(value_template(spec.path), example) != "None" or example.get("attention_share") is None, metric


# -- stats: fps over a meaningful interval ------------------------------------------------------


def test_stats_fps_is_null_first_then_measured_over_an_interval(payloads: dict[str, list[dict[str, Any]]]) -> None:
    """The first stats come right after the first frame: no interval to measure yet (they used to
    divide one frame by the whole start-up time). Later ones measure the clip's real pace
    (realtime, 23.98 frames/s): never more, whatever the start-up cost."""
    (first,) = payloads["stats, first"]
    assert first["frames"] == 1 and first["fps"] is None
    measured = [s["fps"] for s in payloads["stats"] if s["fps"] is not None]
    assert measured and all(0 < fps <= 26 for fps in measured), measured
