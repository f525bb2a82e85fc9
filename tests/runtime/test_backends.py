"""The back-end registry, `auto`'s choice, and the ONNX Runtime back-end's contract and errors."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pytest

import edge_fer.runtime
from edge_fer.config import RuntimeConfig, load_settings
from edge_fer.errors import ConfigError, ModelError
from edge_fer.models import bundled_dir, get_entry, resolve
from edge_fer.runtime import BACKENDS, LiteRTModel, ModelFiles, OnnxModel, load_model, model_files
from edge_fer.runtime.onnx import execution_providers

INT8_MODEL = bundled_dir() / "edge_fer_emotion_int8.tflite"
INT8_ONNX = bundled_dir() / "edge_fer_emotion_int8.onnx"


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edge_fer.runtime, "_warned", set())


def test_config_offers_exactly_the_registered_backends_and_auto() -> None:
    (choices,) = {typing.get_args(RuntimeConfig.model_fields["backend"].annotation)}
    assert set(choices) == {"auto", *BACKENDS.keys()} == {"auto", "cpu", "edgetpu", "onnx"}


def test_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown runtime backend 'gpu'; known: cpu, edgetpu, onnx"):
        load_model(INT8_MODEL, backend="gpu")


def test_execution_providers_prefer_tensorrt_then_cuda_then_cpu(tmp_path: Path) -> None:
    jetson = ["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"]
    providers = execution_providers(jetson, tmp_path)
    assert [p if isinstance(p, str) else p[0] for p in providers] == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    trt = providers[0][1]  # type: ignore[index]
    assert trt["trt_engine_cache_enable"] == "True" and trt["trt_engine_cache_path"] == str(tmp_path) and trt["trt_fp16_enable"] == "True"
    assert execution_providers(["AzureExecutionProvider", "CPUExecutionProvider"], tmp_path) == ["CPUExecutionProvider"]
    assert execution_providers(jetson, None)[0] == "TensorrtExecutionProvider"  # no cache dir: engines are rebuilt at each start


@pytest.mark.integration  # a subprocess
def test_importing_and_auto_on_a_cpu_machine_never_import_onnxruntime(tmp_path: Path) -> None:
    """ONNX Runtime costs start-up time and memory: a CPU-only device never pays for it."""
    code = (
        "import sys; from edge_fer.runtime import load_model; import edge_fer.pipeline; "
        f"m = load_model({str(INT8_MODEL)!r}, backend='auto'); print(m.label, 'onnxruntime' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["cpu", "False"]


def test_onnx_runs_the_export_with_the_tflite_contract() -> None:
    onnx = load_model(ModelFiles(INT8_MODEL, onnx=INT8_ONNX), backend="onnx")
    cpu = load_model(INT8_MODEL, backend="cpu")
    assert isinstance(onnx, OnnxModel) and onnx.label == "onnx:cpu" and onnx.provider == "CPUExecutionProvider"
    assert onnx.inputs == cpu.inputs and onnx.outputs == cpu.outputs  # names, shapes, dtypes, quantization
    assert onnx.runtime.startswith("onnxruntime ") and onnx.path == INT8_ONNX
    x = np.full(cpu.input.shape, 128, np.uint8)
    (out,) = onnx.run(x)
    assert out.dtype == np.uint8 and out.shape == cpu.outputs[0].shape
    assert np.abs(out.astype(int) - cpu.run(x)[0].astype(int)).max() <= 3  # quantization steps
    assert onnx.invoke_count == 1 and onnx.invoke_s_total > 0


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (ModelFiles(INT8_MODEL), "has no ONNX version: use runtime.backend"),
        (ModelFiles(INT8_MODEL, onnx=Path("/nonexistent/x.onnx")), r"/nonexistent/x.onnx is missing"),
        (ModelFiles(INT8_MODEL, onnx=INT8_ONNX, onnx_sha256="0" * 64), "is corrupt or replaced"),
    ],
)
def test_onnx_refuses_a_missing_or_replaced_export(files: ModelFiles, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        load_model(files, backend="onnx")


def test_onnx_without_onnxruntime_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    with pytest.raises(ModelError, match=r"pip install 'edge-fer\[onnx\]'.*onnxruntime-gpu"):
        load_model(ModelFiles(INT8_MODEL, onnx=INT8_ONNX), backend="onnx")


def test_an_export_not_made_by_the_script_is_refused(tmp_path: Path) -> None:
    """The ONNX model of a TFLite file must carry its tensor contract; a foreign file does not."""
    foreign = tmp_path / "foreign.onnx"
    data = INT8_ONNX.read_bytes()
    foreign.write_bytes(data.replace(b"edge_fer.tensors", b"edge_fer.tensorz"))  # same length: still valid protobuf
    with pytest.raises(ModelError, match="has no 'edge_fer.tensors' metadata"):
        load_model(ModelFiles(INT8_MODEL, onnx=foreign), backend="onnx")


def test_manifest_ties_each_model_to_its_export(models_dir: Path) -> None:
    entry, path = resolve("blazeface_full", models_dir, "detector")
    files = model_files(entry, path, models_dir)
    assert files.tflite == path and files.onnx == bundled_dir() / "face_detection_full_range.onnx"
    assert files.onnx_sha256 == entry.extra["onnx_sha256"] and files.edgetpu is None and files.name == "blazeface_full"


def test_auto_keeps_litert_when_the_gpu_provider_runs_on_the_cpu(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """onnxruntime-gpu on a device whose GPU is unusable lists CUDA, but its session runs on the
    CPU: auto then keeps LiteRT (faster on a CPU), with one warning. The GPU probe is the
    hardware boundary here: it claims CUDA, the real ONNX Runtime of this machine has none."""
    monkeypatch.setattr(edge_fer.runtime, "gpu_providers", lambda: ["CUDAExecutionProvider"])
    caplog.set_level(logging.WARNING, logger="edge_fer.runtime")
    files = ModelFiles(INT8_MODEL, onnx=INT8_ONNX)
    models = [load_model(files, backend="auto") for _ in range(2)]
    assert all(isinstance(m, LiteRTModel) and m.label == "cpu" for m in models)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "runs" in warnings[0] and "CPUExecutionProvider" in warnings[0]


def test_stages_load_through_the_settings_backend(models_dir: Path, tmp_path: Path) -> None:
    from edge_fer.vision.blazeface import FaceDetector
    from edge_fer.vision.emotion import EmotionClassifier

    settings = load_settings(environ={}, overrides={"models": {"dir": str(models_dir)}, "runtime": {"backend": "onnx"}, "state_dir": str(tmp_path)})
    assert FaceDetector.from_settings(settings).model.label == "onnx:cpu"
    assert EmotionClassifier.from_settings(settings).model.label == "onnx:cpu"
    assert get_entry("edge_fer_emotion").onnx_path() == INT8_ONNX


def test_a_tflite_path_finds_its_variants_beside_it(tmp_path: Path) -> None:
    shutil.copy(INT8_MODEL, tmp_path / "m.tflite")
    assert ModelFiles.beside(tmp_path / "m.tflite") == ModelFiles(tmp_path / "m.tflite")
    shutil.copy(INT8_ONNX, tmp_path / "m.onnx")
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(INT8_MODEL, other / "m_edgetpu.tflite")
    assert ModelFiles.beside(tmp_path / "m.tflite", other) == ModelFiles(
        tmp_path / "m.tflite", onnx=tmp_path / "m.onnx", edgetpu=other / "m_edgetpu.tflite"
    )
