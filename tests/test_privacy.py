"""The privacy invariants of DESIGN.md, each checked on a real run (real models, footage, broker).

1. no pixels, crops, thumbnails, embeddings or landmarks in any payload, log line or file;
2. track ids are ephemeral small integers that restart with the process;
3. min_faces (k-anonymity) suppresses emotion shares but keeps counts;
4. frames are never written to disk.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from edge_fer.sinks.payloads import check_payload
from tests.conftest import SMILES, Broker, Collector, edge_fer, smile_clip, write_clip

IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"BM6", b"RIFF", b"\x93NUMPY")

#: Every key a payload may carry, at any depth (emotion labels are the class names).
ALLOWED_KEYS = {
    "schema", "device", "seq", "ts", "window", "start", "end", "seconds", "frames", "fps", "faces", "max",
    "distinct", "dwell_s", "suppressed", "emotions", "valence", "arousal", "attention_share", "micro_expressions",
    "track_id", "duration_s", "dominant_emotion", "mean_valence", "observations", "first_ts", "last_ts",
    "angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "contempt", "uncertain", "confidence",
    "truncated",  # faces.truncated: a count of faces the detector's cap left out
    # <prefix>/privacy: the audit record of the device's settings
    "context", "purpose", "controller", "retention_days", "min_faces", "privacy_level", "min_confidence", "window_s",
    "images_leave_device", "face_recognition", "remote_control", "micro_per_min", "dominant",
    "emotion", "duration_ms", "apex_ms", "intensity", "action_units",  # event/micro_expression
    "AU1", "AU2", "AU4", "AU6", "AU12", "AU15", "AU20", "AU25", "AU26",  # its action_units (scalars)
    "attending_s",  # summary: face-seconds turned towards the camera
    "low_quality",  # summary: face observations that failed the face-quality gate (a count)
    # homeassistant/sensor/<device>_<metric>/config: static discovery metadata
    "name", "unique_id", "state_topic", "value_template", "availability_topic", "payload_available",
    "payload_not_available", "icon", "identifiers", "model", "manufacturer", "sw_version", "unit_of_measurement",
    "state_class", "device_class", "suggested_display_precision", "entity_category", "options",
}  # fmt: skip


def _walk_keys(value: object) -> set[str]:
    if isinstance(value, dict):
        return set(value) | set().union(*(_walk_keys(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_walk_keys(v) for v in value)) if value else set()
    return set()


def _longest_number_list(value: object) -> int:
    if isinstance(value, dict):
        return max((_longest_number_list(v) for v in value.values()), default=0)
    if isinstance(value, list):
        own = len(value) if all(isinstance(v, (int, float)) for v in value) else 0
        return max([own, *(_longest_number_list(v) for v in value)])
    return 0


@pytest.fixture
def events_run(broker: Broker, collector: Collector, run_env: dict[str, str], tmp_path: Path) -> tuple[Collector, str, Path]:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = dict(run_env, EDGE_FER_AGGREGATE__PRIVACY_LEVEL="events", EDGE_FER_LOG_LEVEL="debug")
    result = edge_fer(
        ["run", "--source", "demo", "--sink", broker.url, "--sink", "stdout", "--max-frames", "200", "--window", "2", "--realtime", "off"],
        env,
        cwd,
    )
    assert result.returncode == 0, result.stderr
    assert collector.wait_for(lambda ms: any(m.payload == b"offline" for m in ms))
    return collector, result.stdout + result.stderr, tmp_path


def test_1_payloads_are_whitelisted_numbers_and_labels(events_run: tuple[Collector, str, Path]) -> None:
    collector, _, _ = events_run
    json_messages = [m for m in collector.messages if not m.topic.endswith("/availability") and m.payload]
    assert any(m.topic.endswith("/event/track") for m in json_messages), "privacy level events publishes track events"
    for message in json_messages:
        payload = message.json()
        check_payload(payload)  # the same guard the sinks run; raises on any array/bytes/long string
        if not message.topic.endswith("/stats"):
            assert _walk_keys(payload) <= ALLOWED_KEYS, f"{message.topic}: unexpected {_walk_keys(payload) - ALLOWED_KEYS}"
        assert _longest_number_list(payload) <= 8  # a landmark or embedding vector would be long
        assert len(message.payload) < 4096


def test_1_logs_carry_no_arrays_or_blobs(events_run: tuple[Collector, str, Path]) -> None:
    _, output, _ = events_run
    assert "DEBUG" in output  # the run logged at debug level, the most verbose
    for line in output.splitlines():
        assert not re.search(r"[A-Za-z0-9+/]{200,}", line), "a base64-like blob in the output"
        assert not re.search(r"\[\s*\[", line), "a nested array in the output"
        assert len(re.findall(r"-?\d+\.\d+", line)) < 40, "a long run of numbers in the output"


def test_4_no_frame_or_image_is_written_to_disk(events_run: tuple[Collector, str, Path]) -> None:
    _, _, root = events_run
    written = [p for p in root.rglob("*") if p.is_file() and "mosquitto" not in p.name]
    names = sorted(p.name for p in written)
    assert names and all(n.startswith("queue.sqlite3") for n in names), names
    for path in written:
        data = path.read_bytes()
        assert not any(magic in data for magic in IMAGE_MAGIC), f"image data in {path}"
    db = root / "state" / "queue.sqlite3"
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in conn.execute(f"SELECT * FROM {table}"):  # noqa: S608 - table names from sqlite itself
                for cell in row:
                    assert not isinstance(cell, bytes) or len(cell) < 4096
                    if isinstance(cell, str) and cell.startswith("{"):
                        check_payload(json.loads(cell))


def test_2_track_ids_are_small_and_restart_with_the_process(broker: Broker, collector: Collector, run_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(run_env, EDGE_FER_AGGREGATE__PRIVACY_LEVEL="events")
    first_ids = []
    for _ in range(2):
        before = len(collector.topic("/event/track"))
        result = edge_fer(["run", "--source", "demo", "--sink", broker.url, "--max-frames", "48", "--realtime", "off"], env, tmp_path)
        assert result.returncode == 0, result.stderr
        assert collector.wait_for(lambda ms, before=before: sum(m.topic.endswith("/event/track") for m in ms) > before)
        ids = [m.json()["track_id"] for m in collector.topic("/event/track")[before:]]
        assert all(isinstance(i, int) and 1 <= i < 1000 for i in ids)
        first_ids.append(min(ids))
    assert first_ids == [1, 1]  # nothing links a face across sessions


def test_3_min_faces_publishes_counts_but_not_emotions(run_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(run_env, EDGE_FER_AGGREGATE__MIN_FACES="2")  # the demo shows one face
    result = edge_fer(["run", "--source", "demo", "--sink", "stdout", "--max-frames", "96", "--window", "1", "--realtime", "off"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    summaries = [json.loads(line) for line in result.stdout.splitlines() if '"/summary"' in line or "/summary" in line]
    with_faces = [s for s in summaries if s["faces"]["distinct"] >= 1]
    assert with_faces, "the demo shows a face"
    for s in with_faces:
        assert s["suppressed"] is True
        assert s["emotions"] is None and s["valence"] is None and s["arousal"] is None
        assert s["faces"]["max"] >= 1  # counts are still published


def test_1_micro_expression_events_carry_scalars_not_landmarks(
    broker: Broker, collector: Collector, run_env: dict[str, str], tmp_path: Path, models_dir: Path
) -> None:
    """A clip with spliced smiles (made from the provisioned test video, in a temp dir) through
    the real CLI, face mesh on, to a real broker: each smile arrives as an event of whitelisted
    scalars; nothing the size of a mesh (468 points) or a pose reaches the broker or the queue."""
    clip = write_clip(smile_clip(models_dir), tmp_path / "smiles.mp4", 30.0)
    env = dict(run_env, EDGE_FER_AGGREGATE__PRIVACY_LEVEL="events", EDGE_FER_LOG_LEVEL="debug")
    result = edge_fer(["run", "--source", str(clip), "--sink", broker.url, "--window", "2", "--realtime", "off"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert collector.wait_for(lambda ms: any(m.payload == b"offline" for m in ms))
    micros = [m.json() for m in collector.topic("/event/micro_expression")]
    assert len(micros) == len(SMILES) and all(m["emotion"] == "happy" for m in micros)
    for payload in micros:
        check_payload(payload)
        assert _walk_keys(payload) <= ALLOWED_KEYS
        assert all(isinstance(v, float) and 0 <= v <= 1 for v in payload["action_units"].values())
        assert payload["action_units"]["AU12"] > 0.3
    summaries = [m.json() for m in collector.topic("/summary")]
    assert any(s["attention_share"] is not None and s["faces"]["attending_s"] > 0 for s in summaries)
    for message in collector.messages:
        if message.payload and message.payload[:1] == b"{":
            assert _longest_number_list(message.json()) <= 8
            assert "yaw" not in message.payload.decode() and "pitch" not in message.payload.decode()
    assert not re.search(r"(-?\d+\.\d+[, ]+){20}", result.stderr), "a run of numbers (landmarks?) in the log"


def test_1_truncated_faces_are_a_count_and_said_once(run_env: dict[str, str], tmp_path: Path, models_dir: Path) -> None:
    """faces.truncated (faces the detector's cap left out) is one integer, and the log says so once."""
    env = dict(run_env, EDGE_FER_DETECTOR__MAX_FACES="2")
    photo = str(models_dir / "multi_face.jpg")
    result = edge_fer(["run", "--source", photo, "--sink", "stdout", "--window", "1"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    messages = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    summaries = [m for m in messages if m["topic"].endswith("/summary")]
    assert summaries
    faces = summaries[0]["faces"]
    assert faces["truncated"] == 3 and faces["max"] == 2  # five faces, two reported, three left out
    assert all(isinstance(s["faces"]["truncated"], int) for s in summaries)
    assert result.stderr.count("more faces than detector.max_faces") == 1
