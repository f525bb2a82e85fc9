"""Emotion classification: the manifest contract, preprocessing parity, and real faces."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_fer import EMOTIONS
from edge_fer.config import load_settings
from edge_fer.errors import ModelError
from edge_fer.models import get_entry, resolve
from edge_fer.runtime import Model, load_model
from edge_fer.temporal import Tracker
from edge_fer.types import Frame, Tracks
from edge_fer.vision import EmotionClassifier, FaceDetector, align_face
from edge_fer.vision.affect import affect
from edge_fer.vision.align import crop_for_model


@pytest.fixture(scope="module")
def stages(models_dir: Path) -> tuple[FaceDetector, EmotionClassifier]:
    # These tests pin the mini-Xception baseline's contract (64x64, [-1, 1] floats); the project's
    # own int8 model has its tests in test_own_model.py.
    overrides = {"models": {"dir": str(models_dir), "detector": "blazeface_full", "emotion": "mini_xception"}}
    settings = load_settings(environ={}, overrides=overrides)
    return FaceDetector.from_settings(settings), EmotionClassifier.from_settings(settings)


def photo(models_dir: Path, name: str) -> Frame:
    pixels = cv2.imread(str(models_dir / name))
    assert pixels is not None
    return Frame(pixels, 0.0, 0)


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
    frame = photo(models_dir, "single_face.jpg")
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
        assert affect(results[early], EMOTIONS)[0] < 0
    for late in (360, 440):
        assert int(np.argmax(results[late])) == happy
        assert affect(results[late], EMOTIONS)[0] > 0.5


def test_contract_mismatch_is_a_model_error(models_dir: Path) -> None:
    entry, path = resolve("mini_xception", models_dir, "emotion")
    model = load_model(path)
    with pytest.raises(ModelError, match="takes"):
        EmotionClassifier(model, replace(entry, extra={**entry.extra, "channels": 3}))
    with pytest.raises(ModelError, match="8 labels"):
        EmotionClassifier(model, replace(entry, extra={**entry.extra, "labels": [*EMOTIONS, "contempt"]}))
    with pytest.raises(ModelError, match="takes"):
        EmotionClassifier(model, replace(entry, extra={**entry.extra, "input_size": [48, 48]}))
    with pytest.raises(ModelError, match="output must be"):
        EmotionClassifier(model, replace(entry, extra={**entry.extra, "output": "softmax"}))
    with pytest.raises(ModelError, match="channels must be 1"):
        EmotionClassifier(model, replace(entry, extra={**entry.extra, "channels": 2}))
    with pytest.raises(ModelError, match="lacks scale"):
        EmotionClassifier(model, replace(entry, extra={k: v for k, v in entry.extra.items() if k != "scale"}))
    assert get_entry("mini_xception").extra["output"] == "probs"


def test_the_portrait_reads_as_a_plausible_expression(stages: tuple[FaceDetector, EmotionClassifier], models_dir: Path) -> None:
    """The portrait smiles softly: happy or neutral, not a negative class."""
    detector, classifier = stages
    frame = photo(models_dir, "single_face.jpg")
    probs = classifier.classify(frame, Tracker().update(detector.detect(frame), 0.0))[1]
    assert EMOTIONS[int(np.argmax(probs))] in ("happy", "neutral")


def test_which_selects_tracks_and_coasting_tracks_are_skipped(stages: tuple[FaceDetector, EmotionClassifier], models_dir: Path) -> None:
    detector, classifier = stages
    frame = photo(models_dir, "multi_face.jpg")
    tracks = Tracker().update(detector.detect(frame), 0.0)
    assert len(tracks) == 5
    assert sorted(classifier.classify(frame, tracks)) == sorted(int(i) for i in tracks.ids)
    which = np.array([True, False, True, False, False])
    assert sorted(classifier.classify(frame, tracks, which)) == [int(tracks.ids[0]), int(tracks.ids[2])]
    coasting = Tracks(tracks.ids, tracks.boxes, tracks.keypoints, tracks.first_seen, tracks.hits, np.zeros(5, bool))
    assert classifier.classify(frame, coasting) == {}
    with pytest.raises(ValueError, match="which"):
        classifier.classify(frame, tracks, np.ones(3, bool))
    assert classifier.classify_crops([]).shape == (0, 7)


def test_eval_crops_of_any_size_take_the_pipeline_path(stages: tuple[FaceDetector, EmotionClassifier]) -> None:
    """A 48x48 grey crop (FER2013's format) and the same face as a BGR image give the same
    probabilities, through the same resize → normalise path."""
    _, classifier = stages
    rng = np.random.default_rng(0)
    grey = cv2.GaussianBlur(rng.integers(0, 255, (48, 48), dtype=np.uint8), (5, 5), 0)
    bgr = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    a, b = classifier.classify_crops([grey, bgr])
    np.testing.assert_allclose(a, b, atol=1e-6)
    x = classifier.preprocess(grey)
    assert x.shape == (1, 64, 64, 1) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], crop_for_model(grey, (64, 64), 1) * (2 / 255) - 1, atol=1e-6)


class Int8LogitsModel:
    """mini-Xception behind int8 tensors that emit logits (log-probabilities), as a quantized
    model with ``output = "logits"`` would: the classifier must quantize, dequantize, softmax."""

    def __init__(self, model: Model) -> None:
        self._model = model
        self.path = model.path
        self.input = replace(model.input, dtype=np.dtype(np.int8), scale=1 / 127, zero_point=0)
        self.outputs = [replace(model.outputs[0], dtype=np.dtype(np.int8), scale=0.1, zero_point=20)]
        self._buffer = np.zeros(self.input.shape, np.int8)

    def input_buffer(self, i: int = 0) -> np.ndarray:
        return self._buffer

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        x = inputs[0] if inputs else self._buffer
        assert x.dtype == np.int8
        probs = self._model.run(self.input.dequantize(x))[0]
        return [self.outputs[0].quantize(np.log(np.clip(probs, 1e-5, None)))]


def test_int8_logits_models_are_dequantized_and_softmaxed(stages: tuple[FaceDetector, EmotionClassifier], models_dir: Path) -> None:
    detector, classifier = stages
    entry, path = resolve("mini_xception", models_dir, "emotion")
    quantized = EmotionClassifier(Int8LogitsModel(load_model(path)), replace(entry, extra={**entry.extra, "output": "logits"}))  # type: ignore[arg-type]
    frames = demo_frames(models_dir, [40, 440])
    crops = [classifier.align(f, *(lambda d: (d.boxes[0], d.keypoints[0]))(detector.detect(f))) for f in frames]
    want, got = classifier.classify_crops(crops), quantized.classify_crops(crops)
    np.testing.assert_allclose(got.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(got, want, atol=0.05)
    assert (got.argmax(axis=1) == want.argmax(axis=1)).all()
