"""BlazeFace decoding on the real photos of MODELS.md (golden values within a tolerance)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_fer.runtime import load_model
from edge_fer.types import Detections, Frame
from edge_fer.vision.blazeface import VARIANTS, FaceDetector, generate_anchors

# Faces of multi_face.jpg (xyxy) as found by the full-range model, checked by eye.
GROUP_FACES = np.array([[519, 320, 632, 434], [677, 303, 787, 414], [436, 222, 521, 307], [208, 69, 323, 184], [309, 243, 422, 357]], np.float32)
PORTRAIT_FACE = np.array([160, 172, 381, 392], np.float32)


def detector(models_dir: Path, variant: str, **kwargs: float) -> FaceDetector:
    name = {"short": "face_detection_short_range.tflite", "full": "face_detection_full_range.tflite"}[variant]
    return FaceDetector(load_model(models_dir / name), variant, **kwargs)  # type: ignore[arg-type]


def photo(models_dir: Path, name: str) -> Frame:
    pixels = cv2.imread(str(models_dir / name))
    assert pixels is not None
    return Frame(pixels, 0.0, 0)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


def test_anchor_counts_match_mediapipe() -> None:
    assert len(generate_anchors(VARIANTS["short"])) == 896
    assert len(generate_anchors(VARIANTS["full"])) == 2304
    anchors = generate_anchors(VARIANTS["short"])
    assert anchors.min() > 0 and anchors.max() < 1
    np.testing.assert_allclose(anchors[0], [0.5 / 16, 0.5 / 16])


def test_full_range_finds_all_five_group_faces(models_dir: Path) -> None:
    dets = detector(models_dir, "full").detect(photo(models_dir, "multi_face.jpg"))
    assert len(dets) == 5
    assert dets.scores.min() > 0.75 and dets.scores.max() < 0.97
    for truth in GROUP_FACES:  # each face found once, box on the face
        matches = [iou(truth, box) for box in dets.boxes]
        assert max(matches) > 0.8 and sorted(matches)[-2] < 0.1
    for box, kps in zip(dets.boxes, dets.keypoints):  # eyes inside the box, above the mouth
        for eye in kps[:2]:
            assert box[0] <= eye[0] <= box[2] and box[1] <= eye[1] <= box[3]
        assert kps[0, 1] < kps[3, 1] and kps[1, 1] < kps[3, 1]
        assert kps[0, 0] < kps[1, 0]  # the subject's right eye is on the image's left


def test_both_models_find_the_portrait(models_dir: Path) -> None:
    frame = photo(models_dir, "single_face.jpg")
    for variant in ("short", "full"):
        dets = detector(models_dir, variant).detect(frame)
        assert len(dets) == 1, variant
        assert iou(dets.boxes[0], PORTRAIT_FACE) > 0.75, variant


def test_the_configured_model_choice_matters(models_dir: Path) -> None:
    """Short range is built for faces within ~2 m: on the group photo (small faces) it finds
    fewer faces, with lower scores, than the full-range model."""
    frame = photo(models_dir, "multi_face.jpg")
    short = detector(models_dir, "short", score_threshold=0.6).detect(frame)
    full = detector(models_dir, "full", score_threshold=0.6).detect(frame)
    assert len(full) == 5
    assert 0 < len(short) < 5
    assert short.scores.max() < full.scores.min()


def test_thresholds_filter(models_dir: Path) -> None:
    frame = photo(models_dir, "multi_face.jpg")
    assert len(detector(models_dir, "full", score_threshold=0.9).detect(frame)) == 2
    assert len(detector(models_dir, "full", min_face_px=100).detect(frame)) == 4  # one face is 85 px wide
    assert len(detector(models_dir, "full", max_faces=2).detect(frame)) == 2


def test_blank_frame_gives_no_detection(models_dir: Path) -> None:
    dets = detector(models_dir, "full").detect(Frame(np.zeros((360, 640, 3), np.uint8), 0.0, 0))
    assert isinstance(dets, Detections) and len(dets) == 0


@pytest.mark.parametrize(("top", "left"), [(0, 200), (150, 0), (40, 90)])
def test_boxes_map_back_to_frame_pixels_for_any_aspect(models_dir: Path, top: int, left: int) -> None:
    portrait = photo(models_dir, "single_face.jpg").pixels
    canvas = np.full((portrait.shape[0] + top + 60, portrait.shape[1] + left + 30, 3), 127, np.uint8)
    canvas[top : top + portrait.shape[0], left : left + portrait.shape[1]] = portrait
    dets = detector(models_dir, "full").detect(Frame(canvas, 0.0, 0))
    assert len(dets) == 1
    shifted = PORTRAIT_FACE + np.array([left, top, left, top], np.float32)
    assert iou(dets.boxes[0], shifted) > 0.75


def test_constructor_validates(models_dir: Path) -> None:
    model = load_model(models_dir / "face_detection_full_range.tflite")
    with pytest.raises(ValueError, match="variant"):
        FaceDetector(model, "medium")
    with pytest.raises(ValueError, match="score_threshold"):
        FaceDetector(model, "full", score_threshold=1.5)
    from edge_fer.errors import ModelError

    with pytest.raises(ModelError, match="does not fit BlazeFace short"):
        FaceDetector(model, "short")
