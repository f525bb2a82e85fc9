"""The examples work: against a real broker, and on the demo footage as a hobbyist runs them."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.publish as publish

from tests.conftest import Broker, wait_until

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


def run_example(name: str, run_env: dict[str, str], tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """An example script as a hobbyist runs it, on the demo footage at full speed (no camera here)."""
    env = {**run_env, "EDGE_FER_SOURCE__REALTIME": "false"}
    return subprocess.run([sys.executable, str(EXAMPLES / name), *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_dominant_emotion_follows_the_demo_from_tears_to_laughter(run_env: dict[str, str], tmp_path: Path) -> None:
    result = run_example("dominant_emotion.py", run_env, tmp_path, "--source", "demo", "--frames", "472")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[-2] == "sad"  # the actress cries first...
    assert any(line.split()[-2] == "happy" for line in lines)  # ...and laughs at the end
    assert any("window: 1 face(s), mostly" in line for line in lines)  # a 10 s window closed


def test_smile_trigger_fires_once_on_the_demo_laughter_and_runs_the_command(run_env: dict[str, str], tmp_path: Path) -> None:
    marker = tmp_path / "smiled"
    result = run_example("smile_trigger.py", run_env, tmp_path, "--source", "demo", "--frames", "472", "--run", f"touch {marker}")
    assert result.returncode == 0, result.stderr
    smiles = [line for line in result.stdout.splitlines() if "smiles" in line]
    assert len(smiles) == 1 and "face 1 smiles" in smiles[0]
    assert float(smiles[0].split()[0]) > 9.0  # the laughter is in the clip's last seconds, not the tears
    assert wait_until(marker.exists, 10)


def test_examples_say_what_is_wrong_without_a_camera(run_env: dict[str, str], tmp_path: Path) -> None:
    for name in ("dominant_emotion.py", "smile_trigger.py"):
        result = run_example(name, run_env, tmp_path, "--source", "v4l2:97")
        assert result.returncode == 3 and "/dev/video97 not found" in result.stderr
