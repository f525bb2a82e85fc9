"""BlazeFace decoding on the real photos of MODELS.md (golden values within a tolerance)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_fer.config import load_settings
from edge_fer.errors import ModelError
from edge_fer.runtime import Model, load_model
from edge_fer.types import Detections, Frame
from edge_fer.vision.blazeface import VARIANTS, FaceDetector, generate_anchors, weighted_nms

# Faces of the photos (xyxy, frame pixels) as found by the full-range model, checked by eye on a
# drawing of the boxes; scores of a reference decoder are 0.8-0.95 on the group photo.
FACE_BOXES = json.loads((Path(__file__).parents[1] / "data" / "face_boxes.json").read_text())
GROUP_FACES = np.array(FACE_BOXES["multi_face.jpg"], np.float32)
PORTRAIT_FACE = np.array(FACE_BOXES["single_face.jpg"][0], np.float32)
MODEL_FILES = {"short": "face_detection_short_range.tflite", "full": "face_detection_full_range.tflite"}


@pytest.fixture(scope="module")
def models(models_dir: Path) -> dict[str, Model]:
    return {variant: load_model(models_dir / name, backend="cpu") for variant, name in MODEL_FILES.items()}


def detector(models: dict[str, Model], variant: str, **kwargs: float) -> FaceDetector:
    return FaceDetector(models[variant], variant, **kwargs)  # type: ignore[arg-type]


def photo(models_dir: Path, name: str) -> Frame:
    pixels = cv2.imread(str(models_dir / name))
    assert pixels is not None
    return Frame(pixels, 0.0, 0)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


def assert_faces_match(dets: Detections, truth: np.ndarray, min_iou: float = 0.85) -> None:
    """Each true face found exactly once, each detection on a true face."""
    assert len(dets) == len(truth)
    for face in truth:
        matches = sorted(iou(face, box) for box in dets.boxes)
        assert matches[-1] > min_iou and (len(matches) == 1 or matches[-2] < 0.1)


def test_anchor_layout_matches_mediapipe() -> None:
    short, full = generate_anchors(VARIANTS["short"]), generate_anchors(VARIANTS["full"])
    assert short.shape == (896, 2) and full.shape == (2304, 2)
    # short: 16x16 cells x 2 anchors (stride 8), then 8x8 cells x 6 (three stride-16 layers)
    np.testing.assert_allclose(short[0], short[1])
    np.testing.assert_allclose(short[:2], [[0.5 / 16, 0.5 / 16]] * 2)
    np.testing.assert_allclose(short[2], [1.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(short[512:518], [[0.5 / 8, 0.5 / 8]] * 6)
    np.testing.assert_allclose(short[-1], [7.5 / 8, 7.5 / 8])
    # full: 48x48 cells, one anchor each, row-major
    np.testing.assert_allclose(full[[0, 1, 48, -1]], [[0.5 / 48, 0.5 / 48], [1.5 / 48, 0.5 / 48], [0.5 / 48, 1.5 / 48], [47.5 / 48] * 2])


def test_full_range_finds_all_five_group_faces(models: dict[str, Model], models_dir: Path) -> None:
    dets = detector(models, "full").detect(photo(models_dir, "multi_face.jpg"))
    assert_faces_match(dets, GROUP_FACES)
    assert dets.scores.min() > 0.78 and dets.scores.max() < 0.96
    assert np.all(np.diff(dets.scores) <= 0)  # highest first
    for box, kps in zip(dets.boxes, dets.keypoints):
        width, height = box[2] - box[0], box[3] - box[1]
        assert 70 < width < 140 and abs(width - height) < 0.1 * width
        for eye in kps[:2]:  # eyes inside the box, in its upper half, above the mouth
            assert box[0] <= eye[0] <= box[2] and box[1] <= eye[1] <= (box[1] + box[3]) / 2
        assert kps[0, 1] < kps[3, 1] and kps[1, 1] < kps[3, 1]
        assert kps[0, 0] < kps[2, 0] < kps[1, 0]  # right eye (image left), nose, left eye


def test_both_models_find_the_portrait(models: dict[str, Model], models_dir: Path) -> None:
    frame = photo(models_dir, "single_face.jpg")
    for variant, min_score, min_iou in (("short", 0.85, 0.75), ("full", 0.8, 0.9)):
        dets = detector(models, variant).detect(frame)
        assert len(dets) == 1, variant
        assert iou(dets.boxes[0], PORTRAIT_FACE) > min_iou, variant
        assert dets.scores[0] > min_score, variant


def test_the_configured_model_choice_matters(models_dir: Path) -> None:
    """Short range is built for faces within ~2 m: on the group photo (small faces) it finds
    only a subset (a reference decoder: 2 of 5), the full-range model all five. The variant
    comes from the manifest entry named in the settings."""
    frame = photo(models_dir, "multi_face.jpg")
    found = {}
    for name in ("blazeface_short", "blazeface_full"):
        settings = load_settings(environ={}, overrides={"models": {"dir": str(models_dir), "detector": name}})
        det = FaceDetector.from_settings(settings)
        found[name] = det.detect(frame)
        assert det.variant == name.removeprefix("blazeface_")
    assert len(found["blazeface_full"]) == 5
    assert 1 <= len(found["blazeface_short"]) <= 3
    assert found["blazeface_short"].scores.max() < found["blazeface_full"].scores.min()


def test_thresholds_filter(models: dict[str, Model], models_dir: Path) -> None:
    frame = photo(models_dir, "multi_face.jpg")
    assert len(detector(models, "full", score_threshold=0.9).detect(frame)) == 2
    assert len(detector(models, "full", score_threshold=0.3).detect(frame)) == 5  # nothing spurious either
    narrow = detector(models, "full", min_face_px=100).detect(frame)  # one face is 85 px wide
    assert len(narrow) == 4 and (narrow.boxes[:, 2] - narrow.boxes[:, 0]).min() >= 100
    top2 = detector(models, "full", max_faces=2).detect(frame)
    np.testing.assert_allclose(top2.scores, detector(models, "full").detect(frame).scores[:2])


def test_score_threshold_can_change_at_run_time(models: dict[str, Model], models_dir: Path) -> None:
    det = detector(models, "full")
    det.score_threshold = 0.9
    assert len(det.detect(photo(models_dir, "multi_face.jpg"))) == 2
    with pytest.raises(ValueError, match="score_threshold"):
        det.score_threshold = 0.0


@pytest.mark.parametrize("shape", [(360, 640), (640, 360), (100, 100)])
def test_blank_frames_give_no_detection(models: dict[str, Model], shape: tuple[int, int]) -> None:
    for variant in MODEL_FILES:
        dets = detector(models, variant).detect(Frame(np.zeros((*shape, 3), np.uint8), 0.0, 0))
        assert isinstance(dets, Detections) and len(dets) == 0
        assert dets.boxes.shape == (0, 4) and dets.keypoints.shape == (0, 6, 2)


@pytest.mark.parametrize(("top", "left", "bottom", "right"), [(0, 300, 0, 0), (200, 0, 0, 0), (40, 90, 60, 30), (0, 0, 400, 0)])
def test_boxes_map_back_to_frame_pixels_for_any_aspect(
    models: dict[str, Model], models_dir: Path, top: int, left: int, bottom: int, right: int
) -> None:
    """The same photo padded by a known offset (wide and tall frames): the box moves by that
    offset, in frame pixels."""
    portrait = photo(models_dir, "single_face.jpg").pixels
    base = detector(models, "full").detect(Frame(portrait, 0.0, 0))
    canvas = cv2.copyMakeBorder(portrait, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(127, 127, 127))
    dets = detector(models, "full").detect(Frame(canvas, 0.0, 0))
    assert len(dets) == 1
    shift = np.array([left, top], np.float32)
    side = float(base.boxes[0, 2] - base.boxes[0, 0])
    np.testing.assert_allclose(dets.boxes[0], base.boxes[0] + np.tile(shift, 2), atol=0.04 * side)
    np.testing.assert_allclose(dets.keypoints[0, :4], base.keypoints[0, :4] + shift, atol=0.04 * side)


def test_a_face_cut_by_the_frame_edge_keeps_its_full_box(models: dict[str, Model], models_dir: Path) -> None:
    portrait = photo(models_dir, "single_face.jpg").pixels
    dets = detector(models, "full").detect(Frame(np.ascontiguousarray(portrait[:, 220:]), 0.0, 0))
    assert len(dets) == 1 and dets.boxes[0, 0] < 0  # the box extends past the left edge


def mediapipe_weighted_nms(boxes: np.ndarray, scores: np.ndarray, kps: np.ndarray, threshold: float) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """A literal port of MediaPipe's NonMaxSuppressionCalculator::WeightedNonMaxSuppression."""

    def overlap(a: np.ndarray, b: np.ndarray) -> float:
        inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return float(inter / union) if union > 0 else 0.0

    remained = sorted(range(len(scores)), key=lambda i: -scores[i])
    out = []
    while remained:
        top = remained[0]
        candidates = [i for i in remained if overlap(boxes[i], boxes[top]) > threshold]
        rest = [i for i in remained if overlap(boxes[i], boxes[top]) <= threshold]
        total = sum(scores[i] for i in candidates)
        box = sum(boxes[i] * scores[i] for i in candidates) / total
        kp = sum(kps[i] * scores[i] for i in candidates) / total
        out.append((box, float(scores[top]), kp))
        if len(rest) == len(remained):
            break
        remained = rest
    return out


def test_weighted_nms_matches_mediapipe_on_random_clusters() -> None:
    rng = np.random.default_rng(7)
    centres = rng.uniform(0.1, 0.9, (6, 2))
    members = np.repeat(centres, 8, axis=0) + rng.normal(0, 0.02, (48, 2))
    sizes = rng.uniform(0.05, 0.15, (48, 1))
    boxes = np.hstack([members - sizes / 2, members + sizes / 2]).astype(np.float32)
    scores = rng.uniform(0.5, 1.0, 48).astype(np.float32)
    kps = rng.uniform(0, 1, (48, 6, 2)).astype(np.float32)
    got_b, got_s, got_k = weighted_nms(boxes, scores, kps, 0.3)
    want = mediapipe_weighted_nms(boxes, scores, kps, 0.3)
    assert len(got_b) == len(want)
    for i, (box, score, kp) in enumerate(want):
        np.testing.assert_allclose(got_b[i], box, atol=1e-5)
        np.testing.assert_allclose(got_k[i], kp, atol=1e-5)
        assert got_s[i] == pytest.approx(score)
    assert len(weighted_nms(boxes, scores, kps, 0.3, max_out=2)[0]) == 2


def test_constructor_validates(models: dict[str, Model]) -> None:
    with pytest.raises(ValueError, match="variant"):
        FaceDetector(models["full"], "medium")
    bad: dict[str, float] = {"score_threshold": 1.5, "nms_iou": 0.0, "max_faces": 0, "min_face_px": -1}
    for name, value in bad.items():
        with pytest.raises(ValueError, match=name):
            FaceDetector(models["full"], "full", **{name: value})  # type: ignore[arg-type]
    with pytest.raises(ModelError, match="does not fit BlazeFace short"):
        FaceDetector(models["full"], "short")
    with pytest.raises(ModelError, match="does not fit BlazeFace full"):
        FaceDetector(models["short"], "full")
