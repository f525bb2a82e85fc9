"""The project's own emotion models (v3, the default, and v2, still selectable): full-int8
contract, regression guards, float reference parity."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_fer.config import load_settings
from edge_fer.models import get_entry, resolve
from edge_fer.tools.evaluate import list_images
from edge_fer.vision import EmotionClassifier
from edge_fer.vision.degrade import apply_set, reference_sets
from tests.conftest import edge_fer

#: 15 images per class from the model's own held-out split (never trained on), with the float
#: network's probabilities for them (golden_float_probs.json), both written by the recipe.
#: v2's sample; v3 (same split, fine-tuned from v2) has its own draw, V3_SAMPLE.
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "emotion_heldout_sample"
V3_SAMPLE = Path(__file__).resolve().parents[1] / "data" / "emotion_v3_sample"
#: Accuracy of the committed v2 int8 model on SAMPLE when it was committed: 0.629 (66 of 105; the
#: sample is class-balanced, so it is below the public-test figure), minus a margin for other
#: CPUs' kernels; see models/MODEL_CARD_emotion.md.
ACCURACY_FLOOR = 0.55
#: v3 on V3_SAMPLE when committed: clean 0.648; mean over the issue's eight degradations 0.604
#: (v2 on the same faces: 0.676 and 0.514; v3's first cut 0.686 and 0.599); defocus σ 1.5 px 0.590
#: (v2: 0.352). The sample is 105 faces: one face is 0.95 points. Margins as above.
V3_CLEAN_FLOOR = 0.61
V3_DEGRADED_MEAN_FLOOR = 0.55
V3_DEFOCUS_FLOOR = 0.45
#: The int8 file against its float network when committed: v2 on SAMPLE same top class for 103 of
#: 105 faces (0.981), mean |probability difference| 0.0031; v3 on V3_SAMPLE 104 of 105 (0.990),
#: 0.0029. Margins as above.
INT8_AGREEMENT = 0.95
INT8_MEAN_ABS_DIFF = 0.01


def load(models_dir: Path, name: str) -> EmotionClassifier:
    settings = load_settings(environ={}, overrides={"models": {"dir": str(models_dir), "emotion": name}})
    return EmotionClassifier.from_settings(settings)


@pytest.fixture(scope="module")
def classifier(models_dir: Path) -> EmotionClassifier:
    return load(models_dir, "edge_fer_emotion")


@pytest.fixture(scope="module")
def v2(models_dir: Path) -> EmotionClassifier:
    return load(models_dir, "edge_fer_emotion_v2")


def test_it_is_the_default_and_committed_small(models_dir: Path) -> None:
    assert load_settings(environ={}).models.emotion == "edge_fer_emotion"
    entry, path = resolve("edge_fer_emotion", models_dir, "emotion")
    assert entry.bundled and path.stat().st_size <= 3_000_000


def test_full_int8_and_its_input_quantization_is_honoured(classifier: EmotionClassifier) -> None:
    inp, out = classifier.model.input, classifier.model.outputs[0]
    assert inp.dtype == np.uint8 and out.dtype == np.uint8
    assert inp.scale == pytest.approx(1 / 255, rel=1e-3) and inp.zero_point == 0
    crop = np.arange(48 * 48, dtype=np.uint32).reshape(48, 48).astype(np.uint8)
    tensor = classifier.preprocess(crop)
    assert tensor.dtype == np.uint8 and np.array_equal(tensor.reshape(48, 48), crop)  # x/255 quantized back exactly
    probs = classifier.classify_crops([crop])
    assert probs.shape == (1, 7) and abs(float(probs.sum()) - 1) < 1e-3


def test_regression_guard_on_committed_validation_images(run_env: dict[str, str], tmp_path: Path) -> None:
    result = edge_fer(["eval", str(SAMPLE), "--model", "edge_fer_emotion_v2", "--json"], run_env, tmp_path)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["n"] == 105
    assert record["accuracy"] >= ACCURACY_FLOOR


def test_v3_regression_guard_clean_and_under_camera_degradations(run_env: dict[str, str], tmp_path: Path, classifier: EmotionClassifier) -> None:
    """v3 on its own held-out sample, clean (through `edge-fer eval`, the users' path) and
    under each degradation of the issue's table (the benchmark's definitions)."""
    result = edge_fer(["eval", str(V3_SAMPLE), "--json"], run_env, tmp_path)  # the default model
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["n"] == 105 and record["model"] == "edge_fer_emotion" and record["accuracy"] >= V3_CLEAN_FLOOR
    items = list_images(V3_SAMPLE, classifier.labels)
    faces = np.stack([cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) for path, _ in items])
    truth = np.array([label for _, label in items])
    accuracy = {s: float(np.mean(classifier.classify_crops(list(apply_set(faces, s))).argmax(1) == truth)) for s in reference_sets()}
    assert np.mean(list(accuracy.values())) >= V3_DEGRADED_MEAN_FLOOR, accuracy
    assert accuracy["defocus@1.5"] >= V3_DEFOCUS_FLOOR, accuracy


@pytest.mark.parametrize(("name", "sample"), [("edge_fer_emotion", V3_SAMPLE), ("edge_fer_emotion_v2", SAMPLE)])
def test_int8_agrees_with_its_float_network(name: str, sample: Path, classifier: EmotionClassifier, v2: EmotionClassifier) -> None:
    """The full-int8 file against the float network it was quantized from (golden outputs the
    recipe wrote at export; the float reference itself is too big to commit)."""
    clf = classifier if name == "edge_fer_emotion" else v2
    golden = json.loads((sample / "golden_float_probs.json").read_text())
    assert golden["labels"] == list(clf.labels)
    crops = [cv2.imread(str(sample / n), cv2.IMREAD_GRAYSCALE) for n in golden["probs"]]
    reference = np.array(list(golden["probs"].values()), np.float32)
    clf.temperature = 1.0  # the golden outputs are uncalibrated softmax
    try:
        int8 = clf.classify_crops(crops)
    finally:
        clf.temperature = float(get_entry(name).extra.get("temperature", 1.0))
    assert len(crops) == 105
    assert np.mean(np.argmax(int8, 1) == np.argmax(reference, 1)) >= INT8_AGREEMENT
    assert float(np.abs(int8 - reference).mean()) <= INT8_MEAN_ABS_DIFF


def test_demo_expressions_are_read_in_the_right_direction(classifier: EmotionClassifier, models_dir: Path) -> None:
    """Through the whole pipeline path: the demo's actress cries early and laughs at the end."""
    from edge_fer.temporal import Tracker
    from edge_fer.types import Frame
    from edge_fer.vision import FaceDetector

    settings = load_settings(environ={}, overrides={"models": {"dir": str(models_dir), "detector": "blazeface_full"}})
    detector = FaceDetector.from_settings(settings)
    cap = cv2.VideoCapture(str(models_dir / "demo_wolfgang_langer_pexels.mp4"))
    labels, index = {}, 0
    while index <= 440:
        ok, pixels = cap.read()
        assert ok
        if index in (40, 80, 360, 440):
            frame = Frame(pixels, index / 24, index)
            tracks = Tracker().update(detector.detect(frame), frame.t)
            labels[index] = classifier.labels[int(np.argmax(classifier.classify(frame, tracks)[1]))]
        index += 1
    assert labels[40] == labels[80] == "sad"
    assert labels[360] == labels[440] == "happy"
