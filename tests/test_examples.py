"""The examples work against a real broker."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.publish as publish

from tests.conftest import Broker

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_csv_export_writes_one_row_per_summary_and_drops_duplicates(broker: Broker, tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / "export_csv.py"), "--port", str(broker.port), "--out", str(out)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None and "writing summaries" in proc.stdout.readline()
        summary = {"schema": 1, "device": "k", "seq": 7, "ts": "2026-11-24T10:00:00.000Z", "faces": {"max": 1, "distinct": 1, "dwell_s": 2.0},
                   "emotions": {"happy": 0.8, "neutral": 0.2}, "valence": 0.6, "arousal": 0.4, "confidence": 0.7}  # fmt: skip
        time.sleep(0.5)  # the example subscribes after connecting; it has no readiness signal
        for seq in (7, 7, 8):  # a duplicate after a reconnect
            publish.single("edge_fer/k/summary", json.dumps({**summary, "seq": seq}), qos=1, hostname="127.0.0.1", port=broker.port)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 3):
            time.sleep(0.05)
        rows = list(csv.DictReader(out.open()))
        assert [r["seq"] for r in rows] == ["7", "8"]
        assert rows[0]["happy"] == "0.8" and rows[0]["faces_max"] == "1" and rows[0]["sad"] == ""
    finally:
        proc.terminate()
        proc.wait(10)
