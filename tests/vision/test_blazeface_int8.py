"""The project's full-int8 BlazeFace detectors: integer-only, quantization honoured, recall kept.

Real models on the real photos and videos of MODELS.md; figures of the model card come from
``models/detector/evaluate_int8.py`` (all 472 + 72 video frames), these tests check the same
facts on a sample.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils

from edge_fer.config import load_settings
from edge_fer.models import asset_path, resolve
from edge_fer.runtime import load_model
from edge_fer.temporal.tracker import iou_matrix
from edge_fer.types import Frame
from edge_fer.vision.blazeface import FaceDetector

from .test_blazeface import GROUP_FACES, PORTRAIT_FACE, assert_faces_match

PAIRS = {"short": ("blazeface_short", "blazeface_short_int8"), "full": ("blazeface_full", "blazeface_full_int8")}


def build(name: str, models_dir: Path) -> FaceDetector:
    entry, path = resolve(name, models_dir, "detector")  # the sha256 of the manifest is checked
    return FaceDetector(load_model(path, backend="cpu"), str(entry.extra["variant"]))


@pytest.fixture(scope="module")
def detectors(models_dir: Path) -> dict[str, FaceDetector]:
    return {name: build(name, models_dir) for pair in PAIRS.values() for name in pair}


@pytest.fixture(scope="module")
def video_sample(models_dir: Path) -> list[Frame]:
    """Every 24th frame of the demo video and every 8th of the held-out single-face video."""
    frames = []
    for asset, step in (("demo_video", 24), ("single_face_video", 8)):
        cap = cv2.VideoCapture(str(asset_path(models_dir, asset)))
        index = 0
        while True:
            ok, pixels = cap.read()
            if not ok:
                break
            if index % step == 0:
                frames.append(Frame(pixels, 0.0, index))
            index += 1
        cap.release()
    assert len(frames) > 25
    return frames


def photo(models_dir: Path, name: str) -> Frame:
    pixels = cv2.imread(str(models_dir / name))
    assert pixels is not None
    return Frame(pixels, 0.0, 0)


@pytest.mark.parametrize("name", ["blazeface_short_int8", "blazeface_full_int8"])
def test_int8_detectors_are_integer_only_and_bundled(name: str, models_dir: Path) -> None:
    entry, path = resolve(name, models_dir, "detector")
    assert entry.bundled and path.stat().st_size < 3_000_000
    model = flatbuffer_utils.read_model(str(path))
    graph = model.subgraphs[0]
    kinds = {graph.tensors[i].type for i in range(len(graph.tensors))}
    assert kinds <= {schema.TensorType.INT8, schema.TensorType.INT32}  # int32: biases and shapes
    for index in (*graph.inputs, *graph.outputs):
        assert graph.tensors[index].type == schema.TensorType.INT8
    loaded = load_model(path, backend="cpu")
    assert loaded.input.quantized and all(o.quantized for o in loaded.outputs)


@pytest.mark.parametrize("variant", ["short", "full"])
def test_the_int8_input_is_the_float_input_quantized(variant: str, detectors: dict[str, FaceDetector], models_dir: Path) -> None:
    """`preprocess` writes the int8 model's input with the tensor's own scale and zero point:
    dequantized, it is the float model's input to within half a quantization step."""
    float_name, int8_name = PAIRS[variant]
    pixels = photo(models_dir, "multi_face.jpg").pixels
    want = detectors[float_name].preprocess(pixels).copy()
    got = detectors[int8_name].preprocess(pixels)
    info = detectors[int8_name].model.input
    assert got.dtype == np.int8 and got.shape == want.shape
    np.testing.assert_allclose(info.dequantize(got), want, atol=info.scale / 2 + 1e-6)
    assert len(np.unique(got)) > 200  # every pixel level keeps its own code


@pytest.mark.parametrize("variant", ["short", "full"])
def test_int8_outputs_decode_like_the_float_model(variant: str, detectors: dict[str, FaceDetector], models_dir: Path) -> None:
    """Same frame, same decoding: the int8 model's boxes, keypoints and scores match the
    float model's within the quantization noise."""
    float_name, int8_name = PAIRS[variant]
    frame = photo(models_dir, "single_face.jpg")
    want, got = detectors[float_name].detect(frame), detectors[int8_name].detect(frame)
    assert len(want) == len(got) == 1
    side = float(want.boxes[0, 2] - want.boxes[0, 0])
    np.testing.assert_allclose(got.boxes, want.boxes, atol=0.05 * side)
    np.testing.assert_allclose(got.keypoints, want.keypoints, atol=0.05 * side)
    assert got.scores[0] == pytest.approx(float(want.scores[0]), abs=0.05)


def test_full_range_int8_finds_all_five_group_faces(detectors: dict[str, FaceDetector], models_dir: Path) -> None:
    dets = detectors["blazeface_full_int8"].detect(photo(models_dir, "multi_face.jpg"))
    assert_faces_match(dets, GROUP_FACES)
    assert dets.scores.min() > 0.75


def test_both_int8_models_find_the_portrait(detectors: dict[str, FaceDetector], models_dir: Path) -> None:
    for name in ("blazeface_short_int8", "blazeface_full_int8"):
        dets = detectors[name].detect(photo(models_dir, "single_face.jpg"))
        assert_faces_match(dets, PORTRAIT_FACE[None], min_iou=0.75)


@pytest.mark.parametrize("variant", ["short", "full"])
def test_int8_recall_on_real_video_frames_matches_float(variant: str, detectors: dict[str, FaceDetector], video_sample: list[Frame]) -> None:
    """On footage inside both models' range (one face near the camera) the int8 detector finds
    the face wherever the float one does, at the same place."""
    float_name, int8_name = PAIRS[variant]
    found = {float_name: 0, int8_name: 0}
    for frame in video_sample:
        want = detectors[float_name].detect(frame)
        got = detectors[int8_name].detect(frame)
        found[float_name] += len(want) > 0
        if len(want) and len(got):
            found[int8_name] += bool(iou_matrix(want.boxes[:1], got.boxes).max() > 0.7)
    assert found[float_name] == len(video_sample)
    assert found[int8_name] >= found[float_name] - 0.01 * len(video_sample)


@pytest.mark.parametrize("variant", ["short", "full"])
def test_int8_finds_the_same_group_faces_as_float(variant: str, detectors: dict[str, FaceDetector], models_dir: Path) -> None:
    """On the group photo, also beyond the short-range model's ~2 m (float short range finds 3
    rough boxes at scores 0.50-0.67), the int8 model returns the same detections: one for one,
    each overlapping its float twin by IoU > 0.8, none lost and none invented."""
    float_name, int8_name = PAIRS[variant]
    frame = photo(models_dir, "multi_face.jpg")
    want, got = detectors[float_name].detect(frame), detectors[int8_name].detect(frame)
    assert len(got) == len(want) >= 2
    overlap = iou_matrix(want.boxes, got.boxes)
    assert (overlap.max(axis=1) > 0.8).all() and (overlap.max(axis=0) > 0.8).all()


def test_the_int8_models_are_chosen_by_name(models_dir: Path) -> None:
    for name in ("blazeface_short_int8", "blazeface_full_int8"):
        settings = load_settings(environ={}, overrides={"models": {"dir": str(models_dir), "detector": name}})
        detector = FaceDetector.from_settings(settings)
        assert detector.model.input.dtype == np.int8
        assert detector.variant == name.split("_")[1]
