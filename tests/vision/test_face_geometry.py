"""Head pose sign conventions (real photos and footage, and a known rotation), and pose-free measures."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_fer.config import load_settings
from edge_fer.types import Frame
from edge_fer.vision import FaceDetector, face_geometry
from edge_fer.vision.action_units import intensities
from edge_fer.vision.face_geometry import RIGID_CANONICAL, RIGID_INDICES, camera_matrix, frontalise, head_pose, measures, similarity_fit
from edge_fer.vision.landmarks import FaceLandmarker, FaceMesh


@pytest.fixture(scope="module")
def stages(models_dir: Path) -> tuple[FaceDetector, FaceLandmarker]:
    settings = load_settings(environ={}, overrides={"models": {"dir": str(models_dir)}})
    return FaceDetector.from_settings(settings), FaceLandmarker.from_settings(settings)


def mesh_of(pixels: np.ndarray, stages: tuple[FaceDetector, FaceLandmarker]) -> FaceMesh:
    detector, landmarker = stages
    frame = Frame(np.ascontiguousarray(pixels), 0.0, 0)
    found = detector.detect(frame)
    assert len(found) >= 1
    return landmarker.mesh(frame, found.boxes[0], found.keypoints[0])


def pose_of(pixels: np.ndarray, stages: tuple[FaceDetector, FaceLandmarker]) -> tuple[float, float, float]:
    pose = head_pose(mesh_of(pixels, stages).points, camera_matrix(pixels.shape[1], pixels.shape[0]))
    assert pose is not None
    return pose


def test_a_known_rotation_is_recovered_with_its_signs() -> None:
    """Canonical face turned so that its nose points to the image's right and up, rolled
    clockwise on screen, placed off-centre: yaw > 0, pitch > 0, roll > 0, relative to the
    line of sight (so the off-centre position adds nothing)."""
    camera = camera_matrix(640, 360)
    for yaw, pitch, roll in [(20.0, 0.0, 0.0), (0.0, 15.0, 0.0), (0.0, 0.0, 25.0), (-30.0, -10.0, 5.0)]:
        # Rotation in the line-of-sight frame of a face at `position`: roll about the sight line,
        # pitch (nose up = towards -y), yaw (nose right = towards +x); the nose points along -z.
        position = np.array([12.0, -5.0, 60.0])
        z = position / np.linalg.norm(position)
        x = np.cross((0.0, 1.0, 0.0), z)
        x /= np.linalg.norm(x)
        sight = np.stack([x, np.cross(z, x), z])
        r_yaw = cv2.Rodrigues(np.array([0.0, -math.radians(yaw), 0.0]))[0]
        r_pitch = cv2.Rodrigues(np.array([-math.radians(pitch), 0.0, 0.0]))[0]
        r_roll = cv2.Rodrigues(np.array([0.0, 0.0, math.radians(roll)]))[0]
        rotation = sight.T @ r_yaw @ r_pitch @ r_roll
        projected, _ = cv2.projectPoints(RIGID_CANONICAL, cv2.Rodrigues(rotation)[0], position, camera, None)
        points = np.zeros((468, 3), np.float32)
        points[RIGID_INDICES, :2] = projected.reshape(-1, 2)
        got = head_pose(points, camera)
        assert got is not None
        # single axes are exact; combined, roll is the eye line's tilt on screen, which yaw and
        # pitch shift slightly
        np.testing.assert_allclose(got, (yaw, pitch, roll), atol=0.5 if [yaw, pitch, roll].count(0.0) == 2 else 1.0)


def test_sign_conventions_on_real_images(stages: tuple[FaceDetector, FaceLandmarker], models_dir: Path) -> None:
    """Mirroring the portrait flips yaw and roll but not pitch; rotating it 20° clockwise on
    screen adds 20° of roll."""
    pixels = cv2.imread(str(models_dir / "single_face.jpg"))
    yaw, pitch, roll = pose_of(pixels, stages)
    m_yaw, m_pitch, m_roll = pose_of(pixels[:, ::-1], stages)
    assert abs(yaw) > 4 and np.sign(m_yaw) == -np.sign(yaw) and abs(yaw + m_yaw) < 5
    assert abs(pitch - m_pitch) < 3 and abs(roll + m_roll) < 3
    h, w = pixels.shape[:2]
    clockwise = cv2.warpAffine(pixels, cv2.getRotationMatrix2D((w / 2, h / 2), -20, 1.0), (w, h), borderMode=cv2.BORDER_REPLICATE)
    r_yaw, r_pitch, r_roll = pose_of(clockwise, stages)
    assert r_roll - roll == pytest.approx(20, abs=4) and abs(r_yaw - yaw) < 5


def test_pitch_and_roll_of_the_demo_actress(stages: tuple[FaceDetector, FaceLandmarker], models_dir: Path) -> None:
    """In the demo she looks down while crying (frames 96-120), up while laughing (264-300), and
    tilts her head to the image's left (frame 408, counter-clockwise) and right (456)."""
    cap = cv2.VideoCapture(str(models_dir / "demo_wolfgang_langer_pexels.mp4"))
    poses = {}
    for index in range(457):
        ok, pixels = cap.read()
        assert ok
        if index in (96, 120, 264, 300, 408, 456):
            poses[index] = pose_of(pixels, stages)
    cap.release()
    assert max(poses[96][1], poses[120][1]) + 8 < min(poses[264][1], poses[300][1])
    assert poses[408][2] < -12 and poses[456][2] > 12
    assert all(abs(p[0]) < 25 for p in poses.values())


def test_measures_do_not_move_with_the_head(stages: tuple[FaceDetector, FaceLandmarker], models_dir: Path) -> None:
    """The same face nearer, rotated and moved gives the same measures, within the mesh's noise:
    no AU moves by more than 0.3 (a posed expression moves its AUs by 0.5-1)."""
    pixels = cv2.imread(str(models_dir / "single_face.jpg"))
    base = measures(mesh_of(pixels, stages).points)
    h, w = pixels.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), 15, 0.8)
    matrix[:, 2] += (30, -20)
    moved = measures(mesh_of(cv2.warpAffine(pixels, matrix, (w, h), borderMode=cv2.BORDER_REPLICATE), stages).points)
    assert intensities(moved, base).max() < 0.3 and intensities(base, moved).max() < 0.3


def test_similarity_fit_recovers_a_transform() -> None:
    rng = np.random.default_rng(1)
    source = rng.normal(size=(12, 3))
    rotation = cv2.Rodrigues(np.array([0.3, -0.5, 0.2]))[0]
    target = 2.5 * source @ rotation.T + (1.0, -2.0, 3.0)
    scale, got, shift = similarity_fit(source, target)
    assert scale == pytest.approx(2.5) and np.allclose(got, rotation) and np.allclose(shift, (1.0, -2.0, 3.0))


def measures_by_definition(points: np.ndarray) -> np.ndarray:
    """`measures` spelled out on the frontalised mesh, as the module docstring defines them."""
    p = frontalise(points)
    at = face_geometry._POS
    eyes = [(p[at[outer]] + p[at[inner]]) / 2 for outer, inner in ((33, 133), (263, 362))]
    iod = float(np.linalg.norm(eyes[1] - eyes[0]))

    def dist(i: int, j: int) -> float:
        return float(np.linalg.norm(p[at[i]] - p[at[j]]))

    def height(points: tuple[int, ...], reference: tuple[int, ...]) -> float:
        return -float(np.mean([p[at[i], 1] for i in points]) - np.mean([p[at[i], 1] for i in reference]))

    corners = (33, 133, 263, 362)
    eye_open = (
        (dist(159, 145) + dist(158, 153) + dist(160, 144)) / dist(33, 133) + (dist(386, 374) + dist(385, 380) + dist(387, 373)) / dist(263, 362)
    ) / 6
    return (
        np.array(
            [
                height((107, 55, 336, 285), corners),
                height((70, 46, 105, 300, 276, 334), corners),
                dist(55, 285),
                eye_open * iod,
                height((145, 374), corners),
                height((117, 346), corners),
                dist(61, 291),
                height((61, 291), (13, 14)),
                dist(13, 14),
                dist(2, 17),
            ]
        )
        / iod
    )


def test_measures_are_those_of_the_frontalised_mesh(stages: tuple[FaceDetector, FaceLandmarker], models_dir: Path) -> None:
    """`measures` skips building the frontalised mesh; it must give what the definition gives
    on it, to float rounding, for an upright and a rolled, shrunk real face."""
    pixels = cv2.imread(str(models_dir / "single_face.jpg"))
    h, w = pixels.shape[:2]
    rolled = cv2.warpAffine(pixels, cv2.getRotationMatrix2D((w / 2, h / 2), 25, 0.7), (w, h), borderMode=cv2.BORDER_REPLICATE)
    for image in (pixels, rolled):
        points = mesh_of(image, stages).points
        np.testing.assert_allclose(measures(points), measures_by_definition(points), rtol=0, atol=1e-9)
