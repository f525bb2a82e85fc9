"""`edge-fer eval`, `bench` and `doctor` as users run them (assertions on behaviour, never on speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_fer import EMOTIONS
from edge_fer.config import load_settings
from edge_fer.errors import ConfigError
from edge_fer.runner.health import dependency_versions
from edge_fer.temporal import Tracker
from edge_fer.tools.evaluate import classifier_for, evaluate, fit_calibration, report_text, resolve_model_name
from edge_fer.types import Frame
from edge_fer.vision import EmotionClassifier, FaceDetector
from tests.conftest import edge_fer

EVAL_KEYS = {"model", "n", "accuracy", "macro_f1", "per_class", "confusion", "ms_per_face"}
BENCH_KEYS = {"fps", "frames", "faces_per_frame", "stages_ms", "rss_mb", "startup_s", "overhead_ratio", "raw_invoke_ms_per_frame", "models"}


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Path:
    """A tiny labelled set the test makes from the demo footage: aligned face crops of the
    actress crying (first seconds, `sad`) and laughing (last seconds, `happy`), as 48x48 greys
    like FER2013, plus one unreadable file."""
    root = tmp_path_factory.mktemp("eval")
    settings = load_settings(environ={}, overrides={"models": {"dir": str(models_dir), "emotion": "mini_xception"}})
    detector, classifier = FaceDetector.from_settings(settings), EmotionClassifier.from_settings(settings)
    cap = cv2.VideoCapture(str(models_dir / "demo_wolfgang_langer_pexels.mp4"))
    wanted = {**{i: "sad" for i in range(20, 120, 20)}, **{i: "happy" for i in range(340, 460, 20)}}
    index = 0
    while True:
        ok, pixels = cap.read()
        if not ok:
            break
        if index in wanted:
            frame = Frame(pixels, index / 24, index)
            tracks = Tracker().update(detector.detect(frame), frame.t)
            crop = cv2.resize(classifier.align(frame, tracks.boxes[0], tracks.keypoints[0]), (48, 48), interpolation=cv2.INTER_AREA)
            (root / wanted[index]).mkdir(exist_ok=True)
            cv2.imwrite(str(root / wanted[index] / f"f{index:03d}.png"), crop)
        index += 1
    (root / "sad" / "broken.png").write_bytes(b"not a png")
    return root


def test_eval_json_schema_counts_and_confusion(eval_dir: Path, run_env: dict[str, str], tmp_path: Path) -> None:
    plot = tmp_path / "cm.png"
    result = edge_fer(["eval", str(eval_dir), "--model", "mini_xception", "--json", "--plot", str(plot)], run_env, tmp_path)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert set(record) >= EVAL_KEYS
    assert record["n"] == 11 and record["skipped"] == 1
    cm = np.array(record["confusion"])
    assert cm.shape == (7, 7) and cm.sum() == 11
    assert cm[EMOTIONS.index("sad")].sum() == 5 and cm[EMOTIONS.index("happy")].sum() == 6
    assert record["per_class"]["happy"]["n"] == 6 and record["per_class"]["angry"]["n"] == 0
    assert record["accuracy"] >= 0.8  # the baseline reads these clear expressions right
    assert 0 <= record["macro_f1"] <= 1 and record["ms_per_face"] > 0
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"


def test_eval_uses_the_pipeline_preprocessing(eval_dir: Path, models_dir: Path) -> None:
    settings = load_settings(environ={}, overrides={"models": {"dir": str(models_dir)}})
    classifier = EmotionClassifier.from_settings(settings)
    result = evaluate(classifier, eval_dir, model_name="mini_xception", batch=4)
    crops = [cv2.imread(str(p)) for p in sorted((eval_dir / "happy").glob("*.png"))]
    direct = np.argmax(classifier.classify_crops(crops), axis=1)
    happy_rows = result.y_pred[result.y_true == EMOTIONS.index("happy")]
    assert list(happy_rows) == list(direct)


def test_eval_takes_a_model_file_the_manifest_lists_and_refuses_others(models_dir: Path, tmp_path: Path) -> None:
    assert resolve_model_name("mini_xception") == "mini_xception"
    assert resolve_model_name(str(models_dir / "mini_xception_fer.tflite")) == "mini_xception"
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_model_name(str(tmp_path / "gone.tflite"))
    stranger = tmp_path / "stranger.tflite"
    stranger.write_bytes(b"not in the manifest")
    with pytest.raises(ConfigError, match="not in models/manifest.toml"):
        resolve_model_name(str(stranger))


def test_eval_text_report_and_temperature_fit(eval_dir: Path, models_dir: Path) -> None:
    settings = load_settings(environ={}, overrides={"models": {"dir": str(models_dir)}})
    classifier, name = classifier_for(settings, "mini_xception", temperature=2.0)
    assert name == "mini_xception" and classifier.temperature == 2.0
    text = report_text(evaluate(classifier, eval_dir, model_name=name).to_dict())
    assert text.startswith("model mini_xception: n=11 accuracy ") and "\nhappy " in text and "\nsad " in text
    fitted = fit_calibration(classifier, eval_dir, model_name=name)
    assert set(fitted) == {"model", "n", "temperature", "ece_before", "ece_after"} and fitted["n"] == 11
    assert 0.2 <= fitted["temperature"] <= 10 and 0 <= fitted["ece_after"] <= 1 and 0 <= fitted["ece_before"] <= 1


def test_eval_bad_input(tmp_path: Path, run_env: dict[str, str]) -> None:
    result = edge_fer(["eval", str(tmp_path / "nowhere")], run_env, tmp_path)
    assert result.returncode == 2 and "not a folder" in result.stderr
    (tmp_path / "empty" / "happy").mkdir(parents=True)
    result = edge_fer(["eval", str(tmp_path / "empty")], run_env, tmp_path)
    assert result.returncode == 2 and "no images" in result.stderr
    result = edge_fer(["eval", str(tmp_path / "empty"), "--model", "blazeface_short"], run_env, tmp_path)
    assert result.returncode == 4 and "unknown emotion" in result.stderr


def test_bench_prints_the_contract(run_env: dict[str, str], tmp_path: Path) -> None:
    result = edge_fer(["bench", "--frames", "60", "--json"], run_env, tmp_path)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert set(record) >= BENCH_KEYS
    # the actress's track is tentative for its first 0.2 s (tracker.confirm_s): 5 frames at 24 fps
    assert record["frames"] == 60 and record["faces_per_frame"] == pytest.approx(55 / 60, abs=0.02)
    assert record["detector"] == "blazeface_short" and record["far_detector"] == "blazeface_full"
    assert list(record["stages_ms"]) == ["capture", "preprocess", "detect", "track", "landmarks", "classify", "temporal", "aggregate", "publish"]
    models = record["models"]  # every model the pipeline runs, by the stage that runs it
    assert models["detect"]["file"] == "face_detection_short_range.tflite" and models["detect"]["invokes"] == 60
    assert models["classify"]["file"] == "edge_fer_emotion_int8.tflite" and 0 < models["classify"]["invokes"] <= 60
    assert models["landmarks"]["file"] == "face_landmark.tflite" and models["landmarks"]["invokes"] > 0
    # the far detector's scan: the whole frame and 6 tiles every 2 s (2.5 s of footage here)
    assert models["detect_far"]["file"] == "face_detection_full_range.tflite" and 0 < models["detect_far"]["invokes"] <= 15
    assert set(record["raw_invoke_ms_per_frame"]) == set(models) == {"detect", "detect_far", "classify", "landmarks"}
    assert record["overhead_ratio"] >= 1.0  # the pipeline can only add to the raw model time
    assert_versions_in_use(record["versions"])
    # RSS split: private (anonymous) pages and file-backed pages of the mapped libraries
    assert record["rss_anon_mb"] > 0 and record["rss_file_mb"] > 0
    assert record["rss_anon_mb"] + record["rss_file_mb"] <= record["rss_mb"] + 0.2


def assert_versions_in_use(versions: dict[str, str]) -> None:
    """The versions reported are the ones this process imports (what the figures depend on)."""
    import platform
    from importlib.metadata import version

    import cv2
    import numpy

    assert versions["python"] == platform.python_version()
    assert versions["numpy"] == numpy.__version__
    assert versions["opencv"] == f"{cv2.__version__} (opencv-python-headless {version('opencv-python-headless')})"
    assert versions["litert"] == f"ai-edge-litert {version('ai-edge-litert')}"
    assert versions["paho-mqtt"] == version("paho-mqtt")


def test_bench_reports_the_backend_of_each_model(run_env: dict[str, str], tmp_path: Path) -> None:
    result = edge_fer(["bench", "--frames", "30", "--json"], {**run_env, "EDGE_FER_RUNTIME__BACKEND": "onnx"}, tmp_path)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["backend"] == {"detect": "onnx:cpu", "detect_far": "onnx:cpu", "classify": "onnx:cpu", "landmarks": "onnx:cpu"}
    assert record["runtime"].startswith("onnxruntime ")
    assert record["faces_per_frame"] == pytest.approx(25 / 30, abs=0.04) and record["invokes"]["detect"] == 30
    assert record["raw_invoke_ms_per_frame"]["detect"] > 0
    default = json.loads(edge_fer(["bench", "--frames", "5", "--json"], run_env, tmp_path).stdout)
    assert default["backend"] == {"detect": "cpu", "detect_far": "cpu", "classify": "cpu", "landmarks": "cpu"} and default["runtime"].startswith(
        "ai-edge-litert "
    )


def test_bench_makes_the_five_face_clip_and_counts_five_faces(run_env: dict[str, str], tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = edge_fer(["bench", "--source", "five-faces", "--frames", "30", "--json"], {**run_env, "TMPDIR": str(scratch)}, tmp_path)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    # the default range pair: the five faces (62-100 px) are far for the short-range model, so
    # the full-range model runs on every frame; each track is tentative for its first 0.2 s
    assert record["source"].startswith("five-faces") and record["detector"] == "blazeface_short"
    assert record["faces_per_frame"] == pytest.approx(5.0 * 25 / 30, abs=0.2)
    assert record["models"]["detect_far"]["file"] == "face_detection_full_range.tflite" and record["invokes"]["detect_far"] >= 29
    assert not list(scratch.iterdir())  # the clip lived only for the run


def test_doctor_reports_each_check(run_env: dict[str, str], tmp_path: Path) -> None:
    result = edge_fer(["doctor", "--source", "demo"], run_env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("python", "tflite runtime", "models", "edge tpu", "source demo"):
        assert name in result.stdout
    line = next(line for line in result.stdout.splitlines() if line.startswith("[ok  ] versions"))
    for name, value in dependency_versions().items():
        assert f"{name} {value}" in line
    assert "[ok  ] backend          runtime.backend = 'auto': blazeface_short on cpu (XNNPACK" in result.stdout
    result = edge_fer(["doctor", "--source", "demo"], {**run_env, "EDGE_FER_RUNTIME__BACKEND": "onnx"}, tmp_path)
    assert result.returncode == 0 and "edge_fer_emotion on onnx:cpu (CPUExecutionProvider)" in result.stdout
    result = edge_fer(["doctor", "--source", "demo"], {**run_env, "EDGE_FER_RUNTIME__BACKEND": "edgetpu"}, tmp_path)
    assert result.returncode == 1 and "[FAIL] backend" in result.stdout and "[FAIL] edge tpu" in result.stdout  # no Coral here
    result = edge_fer(["doctor", "--source", "v4l2:9"], run_env, tmp_path)
    assert result.returncode == 1 and "[FAIL] source v4l2:9" in result.stdout and "v4l2-ctl" in result.stdout


@pytest.mark.integration  # a subprocess
def test_compare_fer_without_fer_says_how_to_install_it(tmp_path: Path) -> None:
    """The fer library is never our dependency: without its environment the comparison script
    explains how to make one and exits cleanly."""
    script = Path(__file__).parents[2] / "benchmarks" / "compare_fer.py"
    result = subprocess.run([sys.executable, str(script), "--fer-python", str(tmp_path / "none")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["fer"] is None and "pip install fer" in record["how"]
    assert "python3 -m venv" in result.stderr
