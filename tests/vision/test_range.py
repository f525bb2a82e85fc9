"""RangeDetector: the short-range model every frame, the full-range scan, the follow-up of small faces, the cap."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_fer.runtime import load_model
from edge_fer.temporal.tracker import iou_matrix
from edge_fer.types import Frame
from edge_fer.vision.blazeface import FaceDetector, RangeDetector

SCENES: dict[str, Any] = runpy.run_path(str(Path(__file__).parents[2] / "benchmarks" / "scenes.py"))


@pytest.fixture(scope="module")
def pair(models_dir: Path) -> tuple[FaceDetector, FaceDetector]:
    near = FaceDetector(load_model(models_dir / "face_detection_short_range.tflite", backend="cpu"), "short", min_face_px=20, max_faces=50)
    far = FaceDetector(load_model(models_dir / "face_detection_full_range.tflite", backend="cpu"), "full", min_face_px=20, max_faces=50)
    return near, far


def test_tiles_cover_the_frame_with_overlap() -> None:
    tiles = RangeDetector.tiles(360, 640)
    assert len(tiles) == 6
    covered = np.zeros((360, 640), bool)
    for x1, y1, x2, y2 in tiles:
        covered[y1:y2, x1:x2] = True
        assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 360
    assert covered.all()
    assert tiles[1][0] < tiles[0][2]  # neighbours overlap
    assert len(RangeDetector.tiles(640, 360)) == 6  # portrait: 2 x 3


def test_small_faces_are_found_by_the_scan_and_then_followed(models_dir: Path, pair: tuple[FaceDetector, FaceDetector]) -> None:
    """Four 32-px faces on a real face-free background: the short-range model alone finds none;
    after one scan the range detector finds all four on every frame."""
    rng = np.random.default_rng(3)
    background = SCENES["backgrounds"](models_dir)["sky_and_sea"]
    pixels, truth = SCENES["composite"](background, SCENES["faces"](models_dir), 32, rng)
    near, far = pair
    assert len(truth) == 4
    assert len(near.detect(Frame(pixels, 0.0, 0))) == 0
    detector = RangeDetector(near, far, scan_s=1.0)
    found = []
    for i in range(36):  # 1.5 s at 24 frames/s: one complete scan, then the follow-up alone
        dets = detector.detect(Frame(pixels, i / 24, i))
        found.append(int((iou_matrix(truth, dets.boxes) >= 0.3).any(axis=1).sum()) if len(dets) else 0)
    assert found[-12:] == [4] * 12
    assert detector.passes["follow"] >= 4 * 12 and detector.passes["scan"] <= 8


def test_the_cap_counts_the_faces_it_leaves_out(models_dir: Path, pair: tuple[FaceDetector, FaceDetector]) -> None:
    import cv2

    photo = cv2.imread(str(models_dir / "multi_face.jpg"))
    near, far = pair
    everything = RangeDetector(near, far, stills=True).detect(Frame(photo, 0.0, 0))
    assert len(everything) >= 5 and everything.truncated == 0
    dets = RangeDetector(near, far, max_faces=2, stills=True).detect(Frame(photo, 0.0, 0))
    assert len(dets) == 2 and dets.truncated == len(everything) - 2
    np.testing.assert_allclose(dets.scores, everything.scores[:2])  # the best-scoring are kept
    capped = FaceDetector(far.model, "full", max_faces=2)
    single = capped.detect(Frame(photo, 0.0, 0))
    assert len(single) == 2 and single.truncated == 3
