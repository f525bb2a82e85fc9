"""The whole pipeline as users run it: the real CLI, real models, real footage, a real broker."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Broker, Collector, edge_fer


def test_demo_to_mqtt_delivers_summaries(broker: Broker, collector: Collector, run_env: dict[str, str], tmp_path: Path) -> None:
    result = edge_fer(
        ["run", "--source", "demo", "--sink", broker.url, "--max-frames", "300", "--window", "2", "--realtime", "off"],
        run_env,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert collector.wait_for(lambda ms: any(m.topic.endswith("/availability") and m.payload == b"offline" for m in ms))
    availability = [m.payload for m in collector.topic("test-device/availability")]
    assert availability[0] == b"online" and availability[-1] == b"offline"
    summaries = [m.json() for m in collector.topic("test-device/summary")]
    # 300 frames of 24 fps footage = 12.5 s of frame time → 6 full 2-s windows + the partial last one
    assert len(summaries) >= 6
    for s in summaries:
        assert {"schema", "device", "seq", "ts"} <= set(s)
        assert s["device"] == "test-device" and s["schema"] == 1
    seqs = [s["seq"] for s in summaries]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert max(s["faces"]["max"] for s in summaries) >= 1
    with_faces = [s for s in summaries if s["faces"]["distinct"] > 0]
    assert with_faces and all(abs(sum(s["emotions"].values()) - 1) < 0.01 for s in with_faces)
    assert all(len(m.payload) < 4096 for m in collector.messages)
    stats = [m.json() for m in collector.topic("test-device/stats")]
    assert stats and stats[-1]["frames"] == 300


def test_stdout_sink_prints_json_lines(run_env: dict[str, str], tmp_path: Path) -> None:
    result = edge_fer(["run", "--source", "demo", "--sink", "stdout", "--max-frames", "120", "--window", "1", "--realtime", "off"], run_env, tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    summaries = [line for line in lines if line["topic"].endswith("/summary")]
    assert len(summaries) >= 4
    assert any(s["faces"]["distinct"] == 1 and s["emotions"] for s in summaries)
    assert "processed 120 frames" in result.stderr


def test_broker_down_at_start_then_up_delivers_everything(broker: Broker, run_env: dict[str, str], tmp_path: Path) -> None:
    broker.stop()
    result = edge_fer(
        ["run", "--source", "demo", "--sink", broker.url, "--max-frames", "96", "--window", "1", "--realtime", "off"],
        run_env,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr  # an unreachable broker is not an error
    broker.start()
    collector = Collector(broker.port)
    try:
        # A second short run drains what the first one queued (the queue is durable, in state_dir).
        result = edge_fer(
            ["run", "--source", "demo", "--sink", broker.url, "--max-frames", "24", "--window", "1", "--realtime", "off"],
            run_env,
            tmp_path,
        )
        assert result.returncode == 0, result.stderr
        assert collector.wait_for(lambda ms: sum(m.topic.endswith("/summary") for m in ms) >= 5)
        seqs = [m.json()["seq"] for m in collector.topic("/summary")]
        assert seqs == sorted(seqs)
        assert seqs[0] == min(seqs) and len(seqs) >= 5
    finally:
        collector.close()


def test_the_onnx_backend_runs_the_demo_and_says_so_in_stats(run_env: dict[str, str], tmp_path: Path) -> None:
    env = {**run_env, "EDGE_FER_RUNTIME__BACKEND": "onnx"}
    result = edge_fer(["run", "--source", "demo", "--sink", "stdout", "--max-frames", "60", "--window", "1", "--realtime", "off"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    stats = [line for line in lines if line["topic"].endswith("/stats")]
    assert stats and stats[-1]["backends"] == {"detect": "onnx:cpu", "detect_far": "onnx:cpu", "classify": "onnx:cpu", "landmarks": "onnx:cpu"}
    assert any(s["faces"]["distinct"] == 1 and s["emotions"] for s in lines if s["topic"].endswith("/summary"))
