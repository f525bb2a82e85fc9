"""The Edge TPU back-end through a fake Coral at the hardware boundary (tests/fakes.py): probing,
delegate loading, the compiled-variant choice, `auto`'s fallback with one warning, clear errors."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

import edge_fer.runtime
import edge_fer.runtime.edgetpu
from edge_fer.config import load_settings
from edge_fer.errors import ModelError
from edge_fer.models import bundled_dir
from edge_fer.runtime import EdgeTpuModel, LiteRTModel, edgetpu_available, load_model
from edge_fer.tools.doctor import _edgetpu
from edge_fer.vision.emotion import EmotionClassifier
from tests.fakes import FakeCoral

REPO = Path(__file__).resolve().parents[2]
INT8_MODEL = bundled_dir() / "edge_fer_emotion_int8.tflite"
FACE = REPO / "tests" / "data" / "fer2013_faces" / "happy" / "row01167.png"


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edge_fer.runtime, "_warned", set())


def plug(monkeypatch: pytest.MonkeyPatch, coral: FakeCoral) -> FakeCoral:
    monkeypatch.setattr(edge_fer.runtime.edgetpu, "HOST", coral.host())
    return coral


def compiled_pair(folder: Path, stem: str = "emotion_int8") -> Path:
    """An int8 model and its "_edgetpu" variant (the same bytes: see FakeCoral)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(INT8_MODEL, folder / f"{stem}.tflite")
    shutil.copy(INT8_MODEL, folder / f"{stem}_edgetpu.tflite")
    return folder / f"{stem}.tflite"


def face_input() -> np.ndarray:
    grey = cv2.imread(str(FACE), cv2.IMREAD_GRAYSCALE)
    assert grey is not None
    return grey.reshape(1, 48, 48, 1)


@pytest.mark.parametrize(
    ("usb", "pcie", "devices"),
    [("18d1:9302", False, ["usb:18d1:9302"]), ("1a6e:089a", False, ["usb:1a6e:089a"]), (None, True, ["pcie:apex_0"]), (None, False, [])],
)
def test_probe_finds_usb_and_pcie_corals(tmp_path: Path, usb: str | None, pcie: bool, devices: list[str]) -> None:
    host = FakeCoral(tmp_path, usb=usb, pcie=pcie).host()
    assert host.devices() == devices  # the root hub (1d6b:0002) is never taken for a Coral
    assert host.library() == tmp_path / "lib" / "libedgetpu.so.1"
    ok, why = edgetpu_available(host)
    assert ok == bool(devices)
    assert why == ", ".join(devices) if devices else "no Coral device" in why


def test_auto_runs_the_compiled_variant_through_the_delegate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    coral = plug(monkeypatch, FakeCoral(tmp_path / "host"))
    model = load_model(compiled_pair(tmp_path / "models"), backend="auto")
    assert isinstance(model, EdgeTpuModel) and model.label == "edgetpu" and model.provider == "Edge TPU"
    assert model.path.name == "emotion_int8_edgetpu.tflite"
    assert coral.loads == [str(tmp_path / "host" / "lib" / "libedgetpu.so.1")]
    assert coral.prepared == 1  # the interpreter applied the delegate to the graph
    cpu = load_model(INT8_MODEL, backend="cpu")
    np.testing.assert_array_equal(model.run(face_input())[0], cpu.run(face_input())[0])
    assert model.invoke_count == 1 and model.last_invoke_s > 0


def test_auto_without_a_coral_falls_back_to_the_cpu_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    plug(monkeypatch, FakeCoral(tmp_path / "host", usb=None))
    caplog.set_level(logging.WARNING, logger="edge_fer.runtime")
    models = [load_model(compiled_pair(tmp_path / "models", stem), backend="auto") for stem in ("a", "b")]
    assert all(isinstance(m, LiteRTModel) and m.label == "cpu" and m.path.name.endswith(("a.tflite", "b.tflite")) for m in models)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "no Coral device" in warnings[0].getMessage() and "run on the CPU" in warnings[0].getMessage()


def test_auto_falls_back_when_the_delegate_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    coral = plug(monkeypatch, FakeCoral(tmp_path / "host", delegate_error=ValueError("Failed to load delegate from libedgetpu.so.1")))
    caplog.set_level(logging.WARNING, logger="edge_fer.runtime")
    model = load_model(compiled_pair(tmp_path / "models"), backend="auto")
    assert model.label == "cpu" and coral.loads and coral.prepared == 0
    assert [r.getMessage() for r in caplog.records if "cannot load the Edge TPU delegate" in r.getMessage()]


def test_auto_without_a_compiled_variant_stays_quiet_on_the_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    coral = plug(monkeypatch, FakeCoral(tmp_path / "host"))
    caplog.set_level(logging.WARNING, logger="edge_fer.runtime")
    assert load_model(INT8_MODEL, backend="auto").label == "cpu"
    assert coral.loads == [] and not caplog.records  # a plain Pi with a Coral but float models: nothing to warn about


@pytest.mark.parametrize(
    ("coral_kwargs", "compiled", "message"),
    [
        ({"library": False}, True, "libedgetpu.so.1 not found: install libedgetpu1-std"),
        ({"usb": None}, True, "no Coral device"),
        ({}, False, "compile it with models/compile_edgetpu.sh"),
        ({"delegate_error": ValueError("Failed to load delegate")}, True, "cannot load the Edge TPU delegate"),
    ],
)
def test_edgetpu_required_but_unusable_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, coral_kwargs: dict[str, object], compiled: bool, message: str
) -> None:
    plug(monkeypatch, FakeCoral(tmp_path / "host", **coral_kwargs))  # type: ignore[arg-type]
    path = compiled_pair(tmp_path / "models") if compiled else INT8_MODEL
    with pytest.raises(ModelError, match=message):
        load_model(path, backend="edgetpu")


def test_edgetpu_runs_float_models_on_the_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models_dir: Path) -> None:
    """`runtime.backend = "edgetpu"` with the default pipeline: the float face mesh cannot run on
    any Edge TPU, so it runs on the CPU instead of stopping the service; int8 models stay strict."""
    coral = plug(monkeypatch, FakeCoral(tmp_path / "host"))
    mesh = load_model(models_dir / "face_landmark.tflite", backend="edgetpu")
    assert mesh.label == "cpu" and coral.loads == []
    with pytest.raises(ModelError, match="has no Edge TPU version"):
        load_model(INT8_MODEL, backend="edgetpu")


def test_a_compilation_in_the_models_dir_serves_a_bundled_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models_dir: Path) -> None:
    """A user compiles the bundled int8 emotion model into models.dir (the install may be read-only):
    the classifier picks it up and classifies through the Edge TPU path."""
    coral = plug(monkeypatch, FakeCoral(tmp_path / "host"))
    user_dir = tmp_path / "user-models"
    user_dir.mkdir()
    for f in models_dir.iterdir():
        (user_dir / f.name).symlink_to(f)
    shutil.copy(INT8_MODEL, user_dir / "edge_fer_emotion_int8_edgetpu.tflite")
    settings = load_settings(environ={}, overrides={"models": {"dir": str(user_dir)}, "state_dir": str(tmp_path / "state")})
    classifier = EmotionClassifier.from_settings(settings)
    assert classifier.model.label == "edgetpu" and coral.prepared == 1
    probs = classifier.classify_crops([cv2.imread(str(FACE), cv2.IMREAD_GRAYSCALE)])
    assert probs.shape == (1, 7) and classifier.labels[int(probs.argmax())] == "happy"


def test_doctor_reports_the_coral(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plug(monkeypatch, FakeCoral(tmp_path / "host"))
    check = _edgetpu(load_settings(environ={}, overrides={"runtime": {"backend": "edgetpu"}}))
    assert check.ok and check.required and "usb:18d1:9302" in check.detail
    plug(monkeypatch, FakeCoral(tmp_path / "host2", library=False))
    check = _edgetpu(load_settings(environ={}))
    assert not check.ok and not check.required and "libedgetpu1-std" in check.detail
