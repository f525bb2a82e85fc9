"""Responsible use: abstention, the EU AI Act refusal, the retained privacy record, the notice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_fer.temporal.aggregate import Aggregator
from edge_fer.types import FaceObservation, Tracks
from tests.conftest import Broker, Collector, edge_fer

REPO = Path(__file__).resolve().parents[1]
LABELS = ("happy", "sad")


def test_uncertain_faces_are_counted_but_kept_out_of_shares() -> None:
    agg = Aggregator(LABELS, window_s=1.0)
    tracks = Tracks(np.array([1, 2]), np.zeros((2, 4), np.float32), np.zeros((2, 6, 2), np.float32), np.zeros(2),
                    np.ones(2, np.int64), np.ones(2, bool))  # fmt: skip
    sure = FaceObservation(1, 0.0, LABELS, np.array([0.9, 0.1], np.float32), "happy", 0.9, 0.7, 0.4)
    unsure = FaceObservation(2, 0.0, LABELS, np.array([0.45, 0.55], np.float32), "sad", 0.55, -0.2, 0.0, uncertain=True)
    agg.add(0.0, tracks, [sure, unsure])
    s = agg.flush(1.0)
    assert s is not None
    assert s.faces_distinct == 2 and s.observations == 2 and s.uncertain == 1
    assert s.emotion_shares == pytest.approx({"happy": 0.9, "sad": 0.1})
    assert s.mean_valence == pytest.approx(0.7) and s.mean_confidence == pytest.approx(0.9)


def test_abstention_threshold_reaches_the_published_summary(run_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(run_env, EDGE_FER_CLASSIFIER__MIN_CONFIDENCE="0.99")  # nearly every face is uncertain
    result = edge_fer(["run", "--source", "demo", "--max-frames", "120", "--window", "1", "--realtime", "off"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    summaries = [json.loads(line) for line in result.stdout.splitlines() if "/summary" in line]
    assert sum(s["faces"]["uncertain"] for s in summaries) > 0.5 * sum(s["faces"]["observations"] for s in summaries)
    assert all(s["faces"]["distinct"] == 1 for s in summaries)  # still counted


@pytest.mark.parametrize("context", ["workplace", "education"])
def test_prohibited_contexts_refuse_to_start(context: str, run_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(run_env, EDGE_FER_DEPLOYMENT__CONTEXT=context, EDGE_FER_DEPLOYMENT__PURPOSE="productivity")
    result = edge_fer(["run", "--source", "demo", "--max-frames", "5"], env, tmp_path)
    assert result.returncode == 2
    assert "Art. 5(1)(f)" in result.stderr and 'deployment.purpose = "medical" or "safety"' in result.stderr
    assert edge_fer(["run", "--validate-config"], env, tmp_path).returncode == 2


@pytest.mark.parametrize(("context", "purpose"), [("workplace", "safety"), ("education", "Medical"), ("retail", "")])
def test_allowed_contexts_start_and_log_context_and_purpose(context: str, purpose: str, run_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(run_env, EDGE_FER_DEPLOYMENT__CONTEXT=context, EDGE_FER_DEPLOYMENT__PURPOSE=purpose or '""')
    result = edge_fer(["run", "--source", "demo", "--max-frames", "5", "--realtime", "off"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"deployment context {context}, purpose {purpose or '(not given)'}" in result.stderr


def test_retained_privacy_record_matches_the_running_config(broker: Broker, run_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(run_env, EDGE_FER_DEPLOYMENT__CONTEXT="research", EDGE_FER_DEPLOYMENT__CONTROLLER="Uni Lab, lab@example.org",
               EDGE_FER_AGGREGATE__MIN_FACES="3", EDGE_FER_DEPLOYMENT__RETENTION_DAYS="14")  # fmt: skip
    result = edge_fer(["run", "--source", "demo", "--sink", broker.url, "--max-frames", "24", "--realtime", "off"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    auditor = Collector(broker.port, topic="edge_fer/+/privacy")  # arrives later: gets the retained copy
    try:
        assert auditor.wait_for(lambda ms: len(ms) >= 1, 10)
        message = auditor.messages[0]
        assert message.retain
        record = message.json()
        assert record["context"] == "research" and record["controller"] == "Uni Lab, lab@example.org"
        assert record["min_faces"] == 3 and record["retention_days"] == 14 and record["privacy_level"] == "summary"
        assert record["images_leave_device"] is False and record["face_recognition"] is False
    finally:
        auditor.close()


@pytest.mark.integration  # a subprocess
def test_notice_template_renders(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "firmware_config" / "notice" / "render.py"), "--out", str(tmp_path),
         "--controller", "Example Shop Ltd, privacy@example.com", "--retention-days", "30"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    png, pdf = tmp_path / "notice.png", tmp_path / "notice.pdf"
    assert png.read_bytes()[:4] == b"\x89PNG" and pdf.read_bytes()[:4] == b"%PDF"
    import cv2

    image = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
    assert image.shape[0] > image.shape[1] > 500  # a portrait page
    assert (image < 128).mean() > 0.01  # there is text on it
    assert "Example Shop Ltd" in (tmp_path / "notice.md").read_text()
