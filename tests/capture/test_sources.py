"""Frame sources on real files, and the Pi camera path through a fake at the hardware boundary."""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from edge_fer.capture import source_from_spec
from edge_fer.capture.base import classify_spec, redact
from edge_fer.config import SourceConfig
from edge_fer.errors import SourceError
from tests.fakes import FakePicamera2

CFG = SourceConfig()


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("demo", "demo"),
        ("picamera2", "picamera2"),
        ("picamera2:1", "picamera2"),
        ("v4l2:0", "v4l2"),
        ("2", "v4l2"),
        ("rtsp://user:pw@cam.local/stream", "stream"),
        ("http://cam.local/mjpg", "stream"),
        ("https://cam.local/mjpg", "stream"),
    ],
)
def test_spec_kinds(spec: str, kind: str) -> None:
    assert classify_spec(spec) == kind


def test_spec_files_and_folders(tmp_path: Path, models_dir: Path) -> None:
    assert classify_spec(str(models_dir / "single_face.mp4")) == "file"
    assert classify_spec(str(models_dir / "single_face.jpg")) == "folder"
    assert classify_spec(str(tmp_path)) == "folder"
    with pytest.raises(SourceError, match="accepted sources: picamera2"):
        classify_spec(str(tmp_path / "missing.mp4"))
    with pytest.raises(SourceError, match="accepted sources"):
        classify_spec("picamera3")


def test_credentials_never_reach_names() -> None:
    assert redact("rtsp://admin:secret@10.0.0.2:554/s") == "rtsp://***@10.0.0.2:554/s"
    source = source_from_spec("rtsp://admin:secret@cam.local/s", CFG, Path("."))
    assert "secret" not in source.name


def test_video_file_frames_and_times(models_dir: Path) -> None:
    with source_from_spec(str(models_dir / "single_face.mp4"), CFG, models_dir) as source:
        assert source.nominal_fps == pytest.approx(30.0)
        frames = []
        while (frame := source.read()) is not None:
            frames.append(frame)
    assert len(frames) == 72
    assert frames[0].pixels.shape == (360, 640, 3) and frames[0].pixels.dtype == np.uint8
    assert [f.index for f in frames] == list(range(72))
    np.testing.assert_allclose([f.t for f in frames], np.arange(72) / 30.0)


def test_looping_keeps_time_increasing(models_dir: Path) -> None:
    cfg = SourceConfig(loop=True)
    with source_from_spec(str(models_dir / "single_face.mp4"), cfg, models_dir) as source:
        times = [source.read().t for _ in range(150)]  # type: ignore[union-attr]
    assert all(b > a for a, b in zip(times, times[1:]))
    assert times[72] == pytest.approx(72 / 30.0)


def test_demo_loops_by_default(models_dir: Path) -> None:
    source = source_from_spec("demo", CFG, models_dir)
    assert source.finite is False and source.name == "demo"


def test_image_folder_skips_unreadable_files(tmp_path: Path, models_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    for name in ("a.jpg", "c.jpg"):
        shutil.copy(models_dir / "single_face.jpg", tmp_path / name)
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    with source_from_spec(str(tmp_path), SourceConfig(fps=5), models_dir) as source:
        frames = [source.read(), source.read()]
        assert source.read() is None
    assert [f.index for f in frames if f] == [0, 1]
    assert frames[1] is not None and frames[1].t == pytest.approx(0.2)
    assert "b.jpg" in caplog.text


def test_empty_folder_is_a_source_error(tmp_path: Path, models_dir: Path) -> None:
    with pytest.raises(SourceError, match="holds no images"):
        source_from_spec(str(tmp_path), CFG, models_dir).open()


def test_missing_camera_is_a_source_error_with_a_hint(models_dir: Path) -> None:
    with pytest.raises(SourceError, match="v4l2-ctl --list-devices"):
        source_from_spec("v4l2:9", CFG, models_dir).open()


def test_corrupt_video_is_a_source_error(tmp_path: Path, models_dir: Path) -> None:
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"\0" * 4096)
    with pytest.raises(SourceError):
        source = source_from_spec(str(bad), CFG, models_dir)
        source.open()
        source.read()


def test_picamera2_missing_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch, models_dir: Path) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails as when not installed
    with pytest.raises(SourceError, match="apt install python3-picamera2"):
        source_from_spec("picamera2", CFG, models_dir).open()


def test_picamera2_lifecycle_through_the_fake_device(monkeypatch: pytest.MonkeyPatch, models_dir: Path) -> None:
    module = types.ModuleType("picamera2")
    module.Picamera2 = FakePicamera2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", module)
    FakePicamera2.calls = []
    FakePicamera2.image_path = models_dir / "single_face.jpg"
    cfg = SourceConfig(width=320, height=240, fps=15)
    with source_from_spec("picamera2", cfg, models_dir) as source:
        frames = [source.read(), source.read()]
    assert all(f is not None and f.pixels.shape == (240, 320, 3) for f in frames)
    assert frames[1].t >= frames[0].t  # type: ignore[union-attr]
    assert FakePicamera2.calls == [
        "init:0", "create_video_configuration", "configure", "start", "capture_array", "capture_array", "stop", "close",
    ]  # fmt: skip
    with pytest.raises(SourceError, match="no camera 1"):
        source_from_spec("picamera2:1", cfg, models_dir).open()
