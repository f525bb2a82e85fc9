"""Emotion classification: the manifest contract, preprocessing parity, and real faces."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_fer import EMOTIONS
from edge_fer.config import load_settings
from edge_fer.errors import ModelError
from edge_fer.models import get_entry, resolve
from edge_fer.runtime import load_model
from edge_fer.temporal import Tracker
from edge_fer.types import Frame
from edge_fer.vision import EmotionClassifier, FaceDetector, align_face, valence_arousal
from edge_fer.vision.align import alignment_matrix, eye_angle_deg


@pytest.fixture(scope="module")
def stages(models_dir: Path) -> tuple[FaceDetector, EmotionClassifier]:
    settings = load_settings(environ={}, overrides={"models": {"dir": str(models_dir), "detector": "blazeface_full"}})
    return FaceDetector.from_settings(settings), EmotionClassifier.from_settings(settings)


def demo_frames(models_dir: Path, indices: list[int]) -> list[Frame]:
    cap = cv2.VideoCapture(str(models_dir / "demo_wolfgang_langer_pexels.mp4"))
    frames, i = [], 0
    while i <= max(indices):
        ok, pixels = cap.read()
        assert ok
        if i in indices:
            frames.append(Frame(pixels, i / 24, i))
        i += 1
    cap.release()
    return frames


def test_probabilities_over_the_manifest_labels(stages: tuple[FaceDetector, EmotionClassifier], models_dir: Path) -> None:
    detector, classifier = stages
    assert classifier.labels == EMOTIONS
    frame = Frame(cv2.imread(str(models_dir / "single_face.jpg")), 0.0, 0)
    tracks = Tracker().update(detector.detect(frame), 0.0)
    probs = classifier.classify(frame, tracks)
    assert list(probs) == [1]
    assert probs[1].shape == (7,) and abs(float(probs[1].sum()) - 1) < 1e-4 and probs[1].min() >= 0


def test_preprocessing_parity_between_pipeline_and_eval(stages: tuple[FaceDetector, EmotionClassifier], models_dir: Path) -> None:
    """The same crop gives the same probabilities through `classify` (the pipeline) and
    `classify_crops` (what `edge-fer eval` uses)."""
    detector, classifier = stages
    (frame,) = demo_frames(models_dir, [300])
    tracks = Tracker().update(detector.detect(frame), frame.t)
    via_pipeline = classifier.classify(frame, tracks)[1]
    crop = classifier.align(frame, tracks.boxes[0], tracks.keypoints[0])
    np.testing.assert_allclose(classifier.classify_crops([crop])[0], via_pipeline, atol=1e-6)
    # A colour crop of another size goes through the same grey + resize path.
    bigger = align_face(frame.pixels, tracks.boxes[0], tracks.keypoints[0], (128, 128), classifier.margin, grey=False)
    assert int(np.argmax(classifier.classify_crops([bigger])[0])) == int(np.argmax(via_pipeline))


def test_demo_expressions_are_read_in_the_right_direction(stages: tuple[FaceDetector, EmotionClassifier], models_dir: Path) -> None:
    """The demo's actress is sad in the first seconds and laughing at the end."""
    detector, classifier = stages
    results = {}
    for frame in demo_frames(models_dir, [40, 80, 360, 440]):
        tracks = Tracker().update(detector.detect(frame), frame.t)
        results[frame.index] = classifier.classify(frame, tracks)[1]
    happy, sad = EMOTIONS.index("happy"), EMOTIONS.index("sad")
    for early in (40, 80):
        assert int(np.argmax(results[early])) == sad
        assert valence_arousal(results[early], EMOTIONS)[0] < 0
    for late in (360, 440):
        assert int(np.argmax(results[late])) == happy
        assert valence_arousal(results[late], EMOTIONS)[0] > 0.5


def test_contract_mismatch_is_a_model_error(models_dir: Path) -> None:
    entry, path = resolve("mini_xception", models_dir, "emotion")
    model = load_model(path)
    with pytest.raises(ModelError, match="takes"):
        EmotionClassifier(model, replace(entry, extra={**entry.extra, "channels": 3}))
    with pytest.raises(ModelError, match="8 labels"):
        EmotionClassifier(model, replace(entry, extra={**entry.extra, "labels": [*EMOTIONS, "contempt"]}))
    with pytest.raises(ModelError, match="lacks scale"):
        EmotionClassifier(model, replace(entry, extra={k: v for k, v in entry.extra.items() if k != "scale"}))
    assert get_entry("mini_xception").extra["output"] == "probs"


@pytest.mark.parametrize("angle", [-25.0, -10.0, 0.0, 15.0, 30.0])
def test_alignment_levels_the_eyes(angle: float) -> None:
    centre = np.array([100.0, 100.0])
    rad = math.radians(angle)
    offset = 30 * np.array([math.cos(rad), math.sin(rad)])
    kps = np.zeros((6, 2), np.float32)
    kps[0], kps[1] = centre - offset, centre + offset
    assert eye_angle_deg(kps) == pytest.approx(angle, abs=1e-3)
    box = np.array([50, 50, 150, 150], np.float32)
    matrix = alignment_matrix(box, kps, (64, 64), 0.1)
    mapped = (matrix[:, :2] @ kps[:2].T).T + matrix[:, 2]
    assert mapped[0, 1] == pytest.approx(mapped[1, 1], abs=1e-4)  # level
    assert mapped[0, 0] < mapped[1, 0]
    centre_out = matrix[:, :2] @ centre + matrix[:, 2]
    np.testing.assert_allclose(centre_out, [32, 32], atol=1e-4)
    crop = align_face(np.zeros((200, 200, 3), np.uint8), box, kps, (48, 48))
    assert crop.shape == (48, 48) and crop.dtype == np.uint8
