"""Each action unit moves the right way on real faces (geometric estimates, checked for direction, not FACS agreement)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_fer.config import load_settings
from edge_fer.temporal.au_baseline import ActionUnitTracker
from edge_fer.types import Frame
from edge_fer.vision import FaceDetector
from edge_fer.vision.action_units import AU_NAMES, AU_WEIGHTS, NEUTRAL_PRIOR, intensities
from edge_fer.vision.face_geometry import MEASURES, measures
from edge_fer.vision.landmarks import FaceLandmarker, FaceMesh

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "fer2013_faces"


@pytest.fixture(scope="module")
def stages(models_dir: Path) -> tuple[FaceDetector, FaceLandmarker]:
    settings = load_settings(environ={}, overrides={"models": {"dir": str(models_dir)}})
    return FaceDetector.from_settings(settings), FaceLandmarker.from_settings(settings)


def mesh_of(pixels: np.ndarray, stages: tuple[FaceDetector, FaceLandmarker]) -> FaceMesh | None:
    detector, landmarker = stages
    frame = Frame(np.ascontiguousarray(pixels), 0.0, 0)
    found = detector.detect(frame)
    if len(found) == 0:
        return None
    mesh = landmarker.mesh(frame, found.boxes[0], found.keypoints[0])
    return mesh if mesh.present else None


def fer_aus(emotion: str, stages: tuple[FaceDetector, FaceLandmarker]) -> dict[str, float]:
    """Mean AU intensities of the committed FER2013 sample's faces of one class (15 images,
    48×48, upscaled and padded so that BlazeFace finds them), against the population prior:
    a single image has no track of its own."""
    rows = []
    for path in sorted((SAMPLE / emotion).glob("*.png")):
        grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        canvas = np.full((320, 320), int(np.median(grey)), np.uint8)
        canvas[64:256, 64:256] = cv2.resize(grey, (192, 192), interpolation=cv2.INTER_CUBIC)
        mesh = mesh_of(cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR), stages)
        if mesh is not None:
            rows.append(intensities(measures(mesh.points), NEUTRAL_PRIOR))
    assert len(rows) >= 12, f"too few {emotion} faces meshed"
    return dict(zip(AU_NAMES, np.mean(rows, axis=0).tolist()))


@pytest.fixture(scope="module")
def fer(stages: tuple[FaceDetector, FaceLandmarker]) -> dict[str, dict[str, float]]:
    return {emotion: fer_aus(emotion, stages) for emotion in ("neutral", "happy", "surprise", "angry", "disgust")}


@pytest.mark.parametrize(
    ("au", "emotion", "margin"),
    [
        ("AU12", "happy", 0.35),  # measured: 0.81 vs 0.08 (committed sample)
        ("AU6", "happy", 0.2),  # 0.50 vs 0.10
        ("AU25", "happy", 0.3),  # 0.77 vs 0.12
        ("AU1", "surprise", 0.2),  # 0.54 vs 0.17
        ("AU2", "surprise", 0.2),  # 0.56 vs 0.16
        ("AU26", "surprise", 0.1),  # 0.31 vs 0.10
        ("AU4", "disgust", 0.12),  # 0.46 vs 0.20
    ],
)
def test_fer2013_expressions_show_their_action_units(au: str, emotion: str, margin: float, fer: dict[str, dict[str, float]]) -> None:
    assert fer[emotion][au] > fer["neutral"][au] + margin


def test_frowning_faces_lower_their_brows_and_smiles_do_not_raise_them(fer: dict[str, dict[str, float]]) -> None:
    frowns = (fer["angry"]["AU4"] + fer["disgust"]["AU4"]) / 2
    assert frowns > fer["neutral"]["AU4"] + 0.1 and frowns > fer["surprise"]["AU4"] + 0.2
    assert fer["happy"]["AU15"] < fer["neutral"]["AU15"]  # corners go up, not down
    assert fer["surprise"]["AU12"] < fer["happy"]["AU12"] - 0.4


def test_the_test_videos_man_smiles_against_his_own_calm_face(stages: tuple[FaceDetector, FaceLandmarker], models_dir: Path) -> None:
    """Neutral in frames 0-15 (his calm frames make the baseline), a broad smile from 24 on."""
    cap = cv2.VideoCapture(str(models_dir / "single_face.mp4"))
    tracker = ActionUnitTracker()
    smile, calm = [], {}
    for index in range(67):
        ok, pixels = cap.read()
        assert ok
        mesh = mesh_of(pixels, stages)
        assert mesh is not None
        aus = tracker.update(1, measures(mesh.points), index / 30, calm=index <= 15)
        if index in (0, 15):
            calm[index] = aus
        if index >= 24:
            smile.append(aus)
    cap.release()
    mean = dict(zip(AU_NAMES, np.mean(smile, axis=0)))
    assert mean["AU12"] > 0.7 and mean["AU6"] > 0.3 and mean["AU25"] > 0.6
    assert mean["AU15"] < 0.05 and mean["AU1"] < 0.2
    at_rest = dict(zip(AU_NAMES, calm[15]))
    assert max(at_rest["AU6"], at_rest["AU12"], at_rest["AU15"], at_rest["AU25"]) < 0.15  # at rest the mouth AUs are quiet
    # His brows sit higher than the population's: AU1 reads high on his first frame and falls
    # as his own calm frames take over the baseline.
    assert at_rest["AU1"] < 0.7 * calm[0][AU_NAMES.index("AU1")]


def test_closed_eyes_close_the_aperture(stages: tuple[FaceDetector, FaceLandmarker], models_dir: Path) -> None:
    """The actress's eyes, wide open in shock (frames 176-188), shut while crying (36-44).
    The 468-point mesh under-reads eyelids (a closed eye keeps ~80 % of its open aperture),
    which the AU's scale accounts for."""
    cap = cv2.VideoCapture(str(models_dir / "demo_wolfgang_langer_pexels.mp4"))
    found: dict[int, np.ndarray] = {}
    for index in range(189):
        ok, pixels = cap.read()
        assert ok
        if index in (36, 40, 44, 176, 180, 184, 188):
            mesh = mesh_of(pixels, stages)
            assert mesh is not None
            found[index] = measures(mesh.points)
    cap.release()
    open_eyes = np.median([found[i] for i in (176, 180, 184, 188)], axis=0)
    closed = np.mean([intensities(found[i], open_eyes)[AU_NAMES.index("AU43")] for i in (36, 40, 44)])
    still_open = np.mean([intensities(found[i], open_eyes)[AU_NAMES.index("AU43")] for i in (180, 184)])
    # The eyelid reading is sensitive to the mesh crop: the closed frames read 0.50 with an
    # area-averaged detector input and 0.40 with MediaPipe's bilinear one (the default), while
    # open eyes stay near 0.05 with both; what must hold is the clear separation.
    assert closed > 0.3 and still_open < 0.15 and closed - still_open > 0.25


def test_the_au_table_is_consistent() -> None:
    """Each AU reads the measures FACS says it moves, with the signs of the module's table."""
    w = dict(zip(AU_NAMES, AU_WEIGHTS))
    m = MEASURES.index
    assert w["AU1"][m("brow_inner_h")] > 0 and w["AU4"][m("brow_inner_h")] < 0 and w["AU4"][m("brow_gap")] < 0
    assert w["AU12"][m("corner_h")] > 0 and w["AU15"][m("corner_h")] < 0 and w["AU20"][m("corner_h")] < 0
    assert w["AU43"][m("eye_open")] < 0 and w["AU25"][m("lip_gap")] > 0 and w["AU26"][m("jaw")] > 0
    np.testing.assert_array_equal(intensities(NEUTRAL_PRIOR, NEUTRAL_PRIOR), np.zeros(len(AU_NAMES)))


def moved(pixels: np.ndarray, points: np.ndarray, shifts: list[tuple[float, float]], sigma_px: float) -> np.ndarray:
    """`pixels` with the image around each of `points` moved by its shift (a smooth local
    warp, Gaussian fall-off of `sigma_px`): a real face made to pull its lip corners."""
    h, w = pixels.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    map_x, map_y = xs.copy(), ys.copy()
    for (px, py), (dx, dy) in zip(points, shifts):
        g = np.exp(-((xs - px - dx) ** 2 + (ys - py - dy) ** 2) / (2 * sigma_px**2))
        map_x -= dx * g
        map_y -= dy * g
    return cv2.remap(pixels, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def test_lip_corners_pulled_down_or_apart_read_as_au15_and_au20(stages: tuple[FaceDetector, FaceLandmarker], models_dir: Path) -> None:
    """FER2013's sad and fearful faces barely show AU15 / AU20 (README), so these two are
    checked on a controlled movement instead: the test video's neutral man with his lip
    corners moved down, or apart, by 8 % of his inter-ocular distance. The mesh follows the
    corners only partly (~10 % of the movement), so the AUs rise weakly, but the right ones."""
    cap = cv2.VideoCapture(str(models_dir / "single_face.mp4"))
    ok, pixels = cap.read()
    cap.release()
    assert ok
    mesh = mesh_of(pixels, stages)
    assert mesh is not None
    rest = measures(mesh.points)
    iod = float(np.linalg.norm(mesh.points[33, :2] - mesh.points[263, :2]))
    corners = mesh.points[[61, 291], :2]
    step = 0.08 * iod
    down = mesh_of(moved(pixels, corners, [(0, step), (0, step)], 0.12 * iod), stages)
    apart = mesh_of(moved(pixels, corners, [(-step, 0), (step, 0)], 0.12 * iod), stages)
    assert down is not None and apart is not None
    au_down = dict(zip(AU_NAMES, intensities(measures(down.points), rest)))
    au_apart = dict(zip(AU_NAMES, intensities(measures(apart.points), rest)))
    assert au_down["AU15"] > 0.05 and au_down["AU12"] < 0.02 and au_down["AU20"] < 0.02
    assert au_apart["AU20"] > 0.08 and au_apart["AU15"] < 0.02
