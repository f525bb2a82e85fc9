from __future__ import annotations

from pathlib import Path

import pytest

from edge_fer.config import env_overrides, load_settings
from edge_fer.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_documented_default_file_equals_builtin_defaults() -> None:
    from_file = load_settings(REPO / "firmware_config" / "edge-fer.toml", environ={})
    builtin = load_settings(environ={})
    assert from_file.model_dump(exclude={"device_id"}) == builtin.model_dump(exclude={"device_id"})


def test_precedence_file_then_env_then_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('device_id = "file"\n[aggregate]\nwindow_s = 3\nmin_faces = 2\n[mqtt]\nhost = "file-host"\n')
    env = {"EDGE_FER_AGGREGATE__WINDOW_S": "4", "EDGE_FER_MQTT__HOST": "env-host", "EDGE_FER_DEVICE_ID": "env"}
    s = load_settings(cfg, environ=env, overrides={"device_id": "flag"})
    assert (s.device_id, s.aggregate.window_s, s.aggregate.min_faces, s.mqtt.host) == ("flag", 4.0, 2, "env-host")
    assert s.topic_prefix == "edge_fer/flag"


def test_env_values_parse_as_toml() -> None:
    assert env_overrides({"EDGE_FER_SINKS": '["stdout", "mqtt"]', "EDGE_FER_SOURCE__REALTIME": "false", "OTHER": "x"}) == {
        "sinks": ["stdout", "mqtt"],
        "source": {"realtime": False},
    }


def test_sink_url_fills_the_mqtt_section() -> None:
    s = load_settings(environ={}, overrides={"sinks": ["stdout", "mqtts://user:p%40ss@broker.local"]})
    assert (s.mqtt.host, s.mqtt.port, s.mqtt.tls, s.mqtt.username, s.mqtt.password) == ("broker.local", 8883, True, "user", "p@ss")
    assert "p@ss" not in repr(s)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"detector": {"score_treshold": 0.5}}, "detector.score_treshold: unknown key"),
        ({"nonsense": 1}, "nonsense: unknown key"),
        ({"aggregate": {"window_s": 0}}, "aggregate.window_s"),
        ({"aggregate": {"privacy_level": "all"}}, "aggregate.privacy_level"),
        ({"runtime": {"backend": "gpu"}}, "runtime.backend"),
        ({"mqtt": {"password": "x"}}, "password must be given with username"),
        ({"mqtt": {"cert_file": "/a"}}, "cert_file and key_file must be given together"),
        ({"mqtt": {"prefix": "a/#"}}, "mqtt.prefix"),
        ({"device_id": "a/b"}, "device_id"),
        ({"sinks": ["kafka://x"]}, "unknown sink"),
        ({"sinks": ["mqtt://"]}, "no host"),
    ],
)
def test_bad_values_are_refused_with_their_key(data: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={}, overrides=data)
    assert fragment in str(info.value)


def test_file_errors_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[mqtt\nhost=1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad, environ={})


def test_password_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    s = load_settings(environ={}, overrides={"mqtt": {"username": "u", "password_file": str(secret)}})
    assert s.mqtt.resolved_password() == "s3cret"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt_password").write_text("fromsystemd")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert load_settings(environ={}, overrides={"mqtt": {"username": "u"}}).mqtt.resolved_password() == "fromsystemd"


def test_every_key_is_documented_in_the_default_file_and_the_readme() -> None:
    from pydantic import BaseModel

    from edge_fer.config import Settings

    toml = (REPO / "firmware_config" / "edge-fer.toml").read_text()
    readme = (REPO / "README.md").read_text()
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            assert f"[{name}]" in toml and f"`{name}`" in readme, name
            for key in annotation.model_fields:
                if key == "password":
                    continue  # documented as password_file on purpose
                assert f"\n{key} =" in toml or f"# {key} =" in toml, f"{name}.{key} missing from edge-fer.toml"
                assert f"`{key}`" in readme, f"{name}.{key} missing from README.md"
        else:
            assert f"{name} =" in toml, name
