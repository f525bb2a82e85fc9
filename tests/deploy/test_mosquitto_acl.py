"""The example mosquitto config of firmware_config/: a device writes only under its own prefix."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import paho.mqtt.publish as publish
import pytest

from tests.conftest import Broker, Collector, free_port

pytestmark = pytest.mark.integration  # mosquitto and mosquitto_passwd

EXAMPLE = Path(__file__).resolve().parents[2] / "firmware_config" / "mosquitto"


def test_devices_write_only_under_their_own_prefix(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    for i, (user, password) in enumerate((("kiosk1", "k1"), ("kiosk2", "k2"), ("dashboard", "d"))):
        flags = ["-b", "-c"] if i == 0 else ["-b"]
        subprocess.run(["mosquitto_passwd", *flags, str(passwd), user, password], check=True, capture_output=True)
    conf = (EXAMPLE / "edge-fer.conf").read_text()
    conf = conf.replace("/etc/mosquitto/edge-fer.passwd", str(passwd)).replace("/etc/mosquitto/edge-fer.acl", str(EXAMPLE / "edge-fer.acl"))
    port = free_port()
    conf = re.sub(r"^listener 1883$", "", conf, flags=re.M)
    broker = Broker(port=port, workdir=tmp_path, extra_conf=conf)
    broker.start()
    try:
        dashboard = Collector(port, auth=("dashboard", "d"), topic="edge_fer/#")
        auth = {"username": "kiosk1", "password": "k1"}
        for topic in ("edge_fer/kiosk1/summary", "edge_fer/kiosk2/summary", "edge_fer/kiosk1/cmd/result"):
            publish.single(topic, topic.encode(), qos=1, hostname="127.0.0.1", port=port, auth=auth)
        publish.single("edge_fer/kiosk1/cmd/pause", b"", qos=1, hostname="127.0.0.1", port=port, auth={"username": "dashboard", "password": "d"})
        assert dashboard.wait_for(lambda ms: len(ms) >= 3, 10)
        time.sleep(0.5)  # a denied publish is dropped silently: give it time to (not) arrive
        topics = sorted(m.topic for m in dashboard.messages)
        assert topics == ["edge_fer/kiosk1/cmd/pause", "edge_fer/kiosk1/cmd/result", "edge_fer/kiosk1/summary"]
        dashboard.close()
    finally:
        broker.stop()
