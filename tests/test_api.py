"""The public API: `edge_fer.analyze_image` and `edge_fer.Analyzer` on real images and footage."""

from __future__ import annotations

import ast
import doctest
import os
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

import edge_fer
from edge_fer import api
from edge_fer.capture.opencv import OpenCVSource
from edge_fer.config import load_settings
from edge_fer.pipeline import Pipeline
from edge_fer.types import Frame
from edge_fer.vision.action_units import AU_NAMES


@pytest.fixture
def env(models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The provisioned models, and no stray ``EDGE_FER_…`` variables; the state folder in `tmp_path`."""
    for name in [n for n in os.environ if n.startswith("EDGE_FER_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("EDGE_FER_MODELS__DIR", str(models_dir))
    monkeypatch.setenv("EDGE_FER_STATE_DIR", str(tmp_path / "state"))
    return models_dir


def test_the_docstring_examples_run(env: Path) -> None:
    result = doctest.testmod(api, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 6 and result.failed == 0


def test_every_public_name_resolves() -> None:
    for name in edge_fer.__all__:
        assert getattr(edge_fer, name) is not None
    assert edge_fer.analyze_image is api.analyze_image and "Analyzer" in dir(edge_fer)
    with pytest.raises(AttributeError):
        edge_fer.Pipelin  # noqa: B018


def test_a_group_photo_gives_five_faces_with_geometry(env: Path) -> None:
    photo = env / "multi_face.jpg"
    faces = edge_fer.analyze_image(photo, models__detector="blazeface_full")
    assert [f.track_id for f in faces] == [1, 2, 3, 4, 5]
    h, w = cv2.imread(str(photo)).shape[:2]
    for face in faces:
        assert list(face.probabilities) == list(edge_fer.EMOTIONS)
        assert sum(face.probabilities.values()) == pytest.approx(1.0, abs=0.02)
        assert face.emotion == max(face.probabilities, key=face.probabilities.__getitem__)
        assert face.confidence == face.probabilities[face.emotion]
        assert -1 <= face.valence <= 1 and -1 <= face.arousal <= 1
        x1, y1, x2, y2 = face.box
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        assert face.action_units is not None and set(face.action_units) == set(AU_NAMES)
        assert face.head_pose is not None and face.attending is not None
    assert sum(f.emotion == "happy" for f in faces) >= 4  # the group photo is of people laughing


def test_a_path_an_array_and_a_grey_array_read_the_same(env: Path) -> None:
    photo = env / "single_face.jpg"
    from_path = edge_fer.analyze_image(photo)
    pixels = cv2.imread(str(photo))
    assert edge_fer.analyze_image(pixels) == from_path
    assert edge_fer.analyze_image(str(photo)) == from_path  # the second call reuses the models
    grey = edge_fer.analyze_image(cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY))
    assert len(grey) == len(from_path) == 1


def test_it_is_the_pipeline_the_service_runs(env: Path) -> None:
    pixels = cv2.imread(str(env / "single_face.jpg"))
    result = Pipeline.from_settings(load_settings(), stills=True).process(Frame(pixels, 0.0, 0))
    (face,) = edge_fer.analyze_image(pixels)
    (obs,) = result.observations
    assert face.emotion == obs.label and face.probabilities == pytest.approx(dict(zip(obs.labels, obs.probs.tolist())))
    assert face.action_units == obs.action_units and face.head_pose == obs.head_pose


@pytest.mark.parametrize(
    ("image", "error", "fragment"),
    [
        ("nowhere.jpg", edge_fer.SourceError, "does not exist"),
        (np.zeros((10, 10, 2), np.uint8), ValueError, "shape"),
        (np.zeros((10, 10, 3), np.float32), ValueError, "uint8"),
        (np.zeros((0, 10, 3), np.uint8), ValueError, "shape"),
    ],
)
def test_bad_images_are_refused_clearly(env: Path, image: object, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        edge_fer.analyze_image(image)  # type: ignore[arg-type]


def test_a_file_that_is_no_image_is_a_source_error(env: Path, tmp_path: Path) -> None:
    fake = tmp_path / "photo.jpg"
    fake.write_bytes(b"not a jpeg")
    with pytest.raises(edge_fer.SourceError, match="not an image"):
        edge_fer.analyze_image(fake)


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        ({"detector__scor_threshold": 0.5}, ["'detector__scor_threshold'", "did you mean detector__score_threshold"]),
        ({"window_s": 5}, ["'window_s'", "aggregate__window_s"]),
        ({"detectr__max_faces": 2}, ["'detectr__max_faces'", "detector__max_faces"]),
        ({"device_id__x": 1}, ["device_id is a value, not a section"]),
        ({"detector": {"bogus": 1}}, ["'detector__bogus'"]),
        ({"detector__score_threshold": 3}, ["detector__score_threshold", "0.99", "got 3"]),
        ({"aggregate__privacy_level": "all"}, ["aggregate__privacy_level", "'summary' or 'events'"]),
    ],
)
def test_bad_overrides_name_the_keyword(env: Path, overrides: dict[str, object], fragments: list[str]) -> None:
    with pytest.raises(edge_fer.ConfigError) as info:
        edge_fer.Analyzer("demo", **overrides)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_overrides_config_files_settings_and_the_environment(env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "edge-fer.toml"
    toml.write_text("[aggregate]\nwindow_s = 7\nmin_faces = 2\n")
    settings = api.resolve_settings(toml, {"aggregate__window_s": 3, "detector": {"max_faces": 2}})
    assert (settings.aggregate.window_s, settings.aggregate.min_faces, settings.detector.max_faces) == (3, 2, 2)
    assert api.resolve_settings(settings, {}) is settings
    assert api.resolve_settings(settings, {"device_id": "kitchen"}).device_id == "kitchen"
    monkeypatch.setenv("EDGE_FER_DETECTOR__SCORE_THRESHOLD", "0.8")
    assert api.resolve_settings(None, {}).detector.score_threshold == 0.8  # as for the CLI
    assert edge_fer.Analyzer(3).settings.source.spec == "v4l2:3"
    with pytest.raises(TypeError):
        edge_fer.Analyzer(3.5)  # type: ignore[arg-type]


def test_the_analyzer_yields_faces_with_track_ids_and_closes_windows(env: Path) -> None:
    summaries = []
    with edge_fer.Analyzer("demo", source__realtime=False, aggregate__window_s=1) as analyzer:
        for result in analyzer:
            assert result.image is not None and result.image.shape == (360, 640, 3)
            assert all(face.track_id == 1 for face in result.faces)  # one actress, one track
            if result.summary is not None:
                summaries.append((result.index, result.summary))
            if len(summaries) == 2:
                break
        stats = analyzer.stats()
    assert summaries[0][1].faces_distinct == 1 and summaries[0][1].emotion_shares is not None
    assert summaries[1][0] > summaries[0][0] and abs(summaries[1][1].end_t - summaries[1][1].start_t - 1.0) < 0.1
    assert stats["frames"] >= 48 and set(stats["stages_ms"]) >= {"detect", "classify"}


def test_break_out_of_a_plain_for_loop_releases_the_source(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    closed = []
    real_close = OpenCVSource.close

    def close(self: OpenCVSource) -> None:
        closed.append(self.name)
        real_close(self)

    monkeypatch.setattr(OpenCVSource, "close", close)
    analyzer = edge_fer.Analyzer("demo", source__realtime=False)
    for result in analyzer:
        if result.index >= 2:
            break
    assert closed and closed[-1] == "demo"
    assert analyzer._capture is None and not [t for t in threading.enumerate() if t.name == "edge-fer-capture"]
    assert analyzer.stats()["source"]["delivered"] >= 3


def test_a_finite_source_ends_with_the_partial_window(env: Path, tmp_path: Path) -> None:
    clip = env / "single_face.mp4"  # 72 frames at 30 frames/s: 2.4 s, shorter than the window
    results = list(edge_fer.Analyzer(clip, source__realtime=False, aggregate__window_s=10))
    assert [r.index for r in results] == [*range(72), -1]
    closing = results[-1]
    assert closing.faces == () and closing.image is None
    assert closing.summary is not None and closing.summary.frames == 72
    assert [t.track_id for t in closing.ended_tracks] == [1]


def test_stop_from_another_thread_ends_the_iteration(env: Path) -> None:
    stopper = None
    with edge_fer.Analyzer("demo", source__realtime=False) as analyzer:
        for frames, _ in enumerate(analyzer, 1):  # the demo loops forever: only stop() ends this
            if frames == 3:
                stopper = threading.Thread(target=analyzer.stop)
                stopper.start()
            assert frames < 1000, "stop() did not end the iteration"
    assert stopper is not None
    stopper.join()
    assert frames >= 3


def test_sources_and_models_that_are_not_there_are_clear_errors(env: Path, tmp_path: Path) -> None:
    with pytest.raises(edge_fer.SourceError, match="no such file"), edge_fer.Analyzer(tmp_path / "missing.mp4"):
        pass
    with pytest.raises(edge_fer.SourceError, match="/dev/video97 not found"), edge_fer.Analyzer(97):
        pass
    empty = tmp_path / "models"
    empty.mkdir()
    with pytest.raises(edge_fer.ModelError, match="edge-fer models fetch"):
        edge_fer.analyze_image(env / "single_face.jpg", models__dir=empty)


def test_the_prohibited_contexts_refuse_here_too(env: Path) -> None:
    with pytest.raises(edge_fer.ConfigError, match="EU AI Act"):
        edge_fer.analyze_image(env / "single_face.jpg", deployment__context="workplace")
    with pytest.raises(edge_fer.ConfigError, match="EU AI Act"), edge_fer.Analyzer("demo", deployment__context="education"):
        pass


def test_privacy_geometry_reaches_the_caller_never_a_sink(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every sink configured (stdout, an MQTT broker, the dashboard), the API builds none,
    publishes nothing and stores nothing: boxes, action units and head poses go to the caller
    only. The API module does not even import the sinks."""
    import edge_fer.sinks as sinks

    def no_sinks(*_: object, **__: object) -> None:
        raise AssertionError("the API must not build a sink")

    monkeypatch.setattr(sinks, "build_sinks", no_sinks)
    state = tmp_path / "state"
    configured = {"sinks": ["stdout", "mqtt://127.0.0.1:1"], "dashboard__listen": "127.0.0.1:0", "state_dir": state}
    faces = edge_fer.analyze_image(env / "single_face.jpg", **configured)
    assert faces and faces[0].box and faces[0].head_pose and faces[0].action_units
    with edge_fer.Analyzer("demo", source__realtime=False, aggregate__window_s=1, **configured) as analyzer:
        for result in analyzer:
            if result.summary is not None:
                break
    assert capsys.readouterr().out == ""
    assert not state.exists()  # no durable queue, no seq counter: nothing was queued for a broker
    tree = ast.parse(Path(api.__file__).read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert not [m for m in imported if m.startswith(("edge_fer.sinks", "edge_fer.runner", "paho"))]


@pytest.mark.integration  # a fresh interpreter
def test_importing_edge_fer_stays_light() -> None:
    """`import edge_fer` (what the CLI does first) loads neither OpenCV nor the models' runtimes."""
    code = "import sys, edge_fer; print(sorted(m for m in ('cv2', 'numpy', 'edge_fer.api') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
