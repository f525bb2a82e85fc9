"""The face mesh on real photos: the points land on the face, its score rejects what is not a face, the contract is checked."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_fer.config import load_settings
from edge_fer.errors import ModelError
from edge_fer.models import resolve
from edge_fer.runtime import load_model
from edge_fer.temporal import Tracker
from edge_fer.types import Frame, Tracks
from edge_fer.vision import FaceDetector
from edge_fer.vision.landmarks import NUM_POINTS, FaceLandmarker, FaceMesh


@pytest.fixture(scope="module")
def stages(models_dir: Path) -> tuple[FaceDetector, FaceLandmarker]:
    settings = load_settings(environ={}, overrides={"models": {"dir": str(models_dir), "detector": "blazeface_full"}})
    return FaceDetector.from_settings(settings), FaceLandmarker.from_settings(settings)


def photo(models_dir: Path, name: str) -> Frame:
    pixels = cv2.imread(str(models_dir / name))
    assert pixels is not None
    return Frame(pixels, 0.0, 0)


def test_the_mesh_lands_on_the_portrait(stages: tuple[FaceDetector, FaceLandmarker], models_dir: Path) -> None:
    """Golden points of the 572×562 portrait (measured when written, ±6 px for other kernels):
    MediaPipe's nose tip (1), outer eye corners (33 subject's right, 263 left), upper inner
    lip (13) and chin (152)."""
    detector, landmarker = stages
    frame = photo(models_dir, "single_face.jpg")
    found = detector.detect(frame)
    mesh = landmarker.mesh(frame, found.boxes[0], found.keypoints[0])
    assert mesh.present and mesh.score > 0.99 and mesh.points.shape == (NUM_POINTS, 3) and mesh.points.dtype == np.float32
    golden = {1: (266, 299), 33: (211, 250), 263: (332, 244), 13: (272, 327), 152: (278, 394)}
    for index, xy in golden.items():
        np.testing.assert_allclose(mesh.points[index, :2], xy, atol=6.0, err_msg=f"landmark {index}")
    x1, y1, x2, y2 = found.boxes[0]
    inside = (mesh.points[:, 0] > x1 - 20) & (mesh.points[:, 0] < x2 + 20) & (mesh.points[:, 1] > y1 - 40) & (mesh.points[:, 1] < y2 + 20)
    assert inside.mean() > 0.97
    assert mesh.points[1, 2] < np.median(mesh.points[:, 2])  # the nose tip is nearer the camera than most of the face


def test_every_face_of_the_group_photo_is_meshed(stages: tuple[FaceDetector, FaceLandmarker], models_dir: Path) -> None:
    detector, landmarker = stages
    frame = photo(models_dir, "multi_face.jpg")
    tracks = Tracker().update(detector.detect(frame), 0.0)
    meshes = landmarker.landmarks(frame, tracks)
    assert len(meshes) == 5 and all(m.present for m in meshes.values())
    for i, track_id in enumerate(tracks.ids):
        m = meshes[int(track_id)]
        cx, cy = (tracks.boxes[i, :2] + tracks.boxes[i, 2:]) / 2
        assert abs(m.points[1, 0] - cx) < 0.3 * (tracks.boxes[i, 2] - tracks.boxes[i, 0])  # each mesh on its own face
        assert m.points[33, 0] < m.points[263, 0]  # the subject's right eye on the image's left
        assert m.points[10, 1] < m.points[1, 1] < m.points[152, 1]  # forehead, nose, chin from top to bottom
    coasting = Tracks(tracks.ids, tracks.boxes, tracks.keypoints, tracks.first_seen, tracks.hits, np.zeros(5, bool))
    assert landmarker.landmarks(frame, coasting) == {}
    with pytest.raises(ValueError, match="which"):
        landmarker.landmarks(frame, tracks, np.ones(2, bool))


def test_false_detections_are_rejected_by_the_face_score(models_dir: Path) -> None:
    """At a very low detector threshold BlazeFace fires on sky and clouds; the mesh says no."""
    settings = load_settings(environ={}, overrides={"models": {"dir": str(models_dir)}, "detector": {"score_threshold": 0.05}})
    detector, landmarker = FaceDetector.from_settings(settings), FaceLandmarker.from_settings(settings)
    sky = cv2.imread(str(models_dir / "multi_face.jpg"))[0:300, 500:1000]
    frame = Frame(np.ascontiguousarray(sky), 0.0, 0)
    found = detector.detect(frame)
    assert len(found) >= 3
    scores = [landmarker.mesh(frame, b, k).score for b, k in zip(found.boxes, found.keypoints)]
    assert max(scores) < 0.2
    assert not any(landmarker.mesh(frame, b, k).present for b, k in zip(found.boxes, found.keypoints))


def test_contract_is_checked(models_dir: Path) -> None:
    entry, path = resolve("face_mesh", models_dir, "landmarks")
    model = load_model(path)
    with pytest.raises(ModelError, match="lacks crop_margin"):
        FaceLandmarker(model, replace(entry, extra={k: v for k, v in entry.extra.items() if k != "crop_margin"}))
    with pytest.raises(ModelError, match="takes"):
        FaceLandmarker(model, replace(entry, extra={**entry.extra, "input_size": [128, 128]}))
    emotion_entry, emotion_path = resolve("mini_xception", models_dir, "emotion")
    with pytest.raises(ModelError):
        FaceLandmarker(load_model(emotion_path), replace(emotion_entry, extra={**entry.extra, "input_size": [64, 64]}))
    with pytest.raises(ValueError, match="min_score"):
        FaceLandmarker(model, entry, min_score=1.0)
    with pytest.raises(ValueError, match="shape"):
        FaceMesh(np.zeros((10, 3), np.float32), 1.0, True)
