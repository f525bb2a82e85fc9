"""Home Assistant discovery against a real broker: valid configs, one device, clean removal."""

from __future__ import annotations

from pathlib import Path

from edge_fer import EMOTIONS
from tests.conftest import Broker, Collector, edge_fer

REQUIRED = {"name", "unique_id", "state_topic", "value_template", "availability_topic", "device"}


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
        assert all(m.retain for m in ha.messages)
        devices = set()
        for config in configs.values():
            assert set(config) >= REQUIRED
            assert config["availability_topic"] == "edge_fer/test-device/availability"
            assert config["state_topic"] in ("edge_fer/test-device/summary", "edge_fer/test-device/stats")
            assert config["value_template"].startswith("{{ value_json.")
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


def test_summary_carries_what_the_sensors_read(run_env: dict[str, str], tmp_path: Path) -> None:
    import json

    result = edge_fer(["run", "--source", "demo", "--max-frames", "48", "--window", "1", "--realtime", "off"], run_env, tmp_path)
    summaries = [json.loads(x) for x in result.stdout.splitlines() if "/summary" in x]
    assert summaries and all("dominant" in s and "micro_per_min" in s for s in summaries)
    assert summaries[0]["dominant"] == max(summaries[0]["emotions"], key=summaries[0]["emotions"].get)
