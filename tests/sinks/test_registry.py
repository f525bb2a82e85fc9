"""The sink names are listed once (`edge_fer.config.SINK_SPECS`) and the sinks' registry serves exactly them."""

from __future__ import annotations

import pytest

from edge_fer.config import SINK_SPECS, load_settings
from edge_fer.errors import ConfigError
from edge_fer.sinks import SINKS


def test_every_sink_named_in_config_is_registered_and_every_registered_sink_is_named() -> None:
    assert sorted(set(SINK_SPECS.values())) == sorted(SINKS.keys())


@pytest.mark.parametrize("name", sorted(SINK_SPECS))
def test_every_listed_name_passes_the_settings_validator(name: str) -> None:
    assert load_settings(overrides={"sinks": [name]}, environ={}).sinks == (name,)


@pytest.mark.parametrize("scheme", sorted(name for name, sink in SINK_SPECS.items() if sink == "mqtt"))
def test_mqtt_urls_fold_into_the_mqtt_section(scheme: str) -> None:
    settings = load_settings(overrides={"sinks": [f"{scheme}://user:pw@broker.local:1999"]}, environ={})
    assert settings.sinks == (scheme,)
    assert (settings.mqtt.host, settings.mqtt.port, settings.mqtt.tls) == ("broker.local", 1999, scheme == "mqtts")


def test_an_unlisted_sink_is_refused_with_the_known_names() -> None:
    with pytest.raises(ConfigError, match=r"unknown sink 'kafka'; known: stdout, mqtt, mqtt://host\[:port\], mqtts://host\[:port\]"):
        load_settings(overrides={"sinks": ["kafka://x"]}, environ={})
