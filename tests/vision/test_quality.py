"""The face-quality gate: measures, thresholds, and its effect on real frames of the demo footage."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_fer.config import QualityConfig, load_settings
from edge_fer.pipeline import Pipeline
from edge_fer.temporal.aggregate import Aggregator
from edge_fer.types import FaceObservation, Frame, Tracks
from edge_fer.vision.quality import CropMeasures, QualityGate, measure_crop

LABELS = ("happy", "sad")


def demo_frames(models_dir: Path, count: int = 12, step: int = 8) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(models_dir / "demo_wolfgang_langer_pexels.mp4"))
    frames = []
    for i in range(count * step):
        ok, pixels = cap.read()
        assert ok
        if i % step == 0:
            frames.append(pixels)
    cap.release()
    return frames


def run(models_dir: Path, frames: list[np.ndarray], edit: Callable[[np.ndarray], np.ndarray]) -> tuple[list[FaceObservation], object]:
    # The detector's own size floor is lowered so that a shrunk face is still found (and then
    # judged by the gate, whose floor is the default 28 px).
    # Frames 1/3 s apart: each face is confirmed as a person from its first detection, so that every
    # frame's face is judged by the gate (track confirmation has its own tests).
    overrides = {
        "models": {"dir": str(models_dir)},
        "detector": {"min_face_px": 8},
        "tracker": {"confirm_hits": 1, "confirm_s": 0.0},
        "aggregate": {"window_s": 100.0},
    }
    settings = load_settings(environ={}, overrides=overrides)
    p = Pipeline.from_settings(settings)
    observations = []
    for i, pixels in enumerate(frames):
        observations.extend(p.process(Frame(np.ascontiguousarray(edit(pixels)), i / 3, i)).observations)
    summary, _ = p.finish(len(frames) / 3)
    return observations, summary


def test_a_sharp_face_passes_and_the_same_face_blurred_or_shrunk_is_low_quality(models_dir: Path) -> None:
    frames = demo_frames(models_dir)
    sharp, s_sharp = run(models_dir, frames, lambda f: f)
    blurred, s_blur = run(models_dir, frames, lambda f: cv2.GaussianBlur(f, (0, 0), 6))
    shrunk, s_small = run(models_dir, frames, lambda f: cv2.resize(f, None, fx=0.1, fy=0.1, interpolation=cv2.INTER_AREA))
    # every frame has its one face, found in all three versions
    assert len(sharp) == len(blurred) == len(shrunk) == len(frames)
    assert not any(o.low_quality for o in sharp)
    assert s_sharp.low_quality == 0 and s_sharp.emotion_shares is not None and s_sharp.mean_valence is not None
    for observations, summary in ((blurred, s_blur), (shrunk, s_small)):
        assert all(o.low_quality for o in observations)
        # counted, but kept out of the shares, valence and arousal
        assert summary.observations == len(frames) and summary.low_quality == len(frames)
        assert summary.emotion_shares is None and summary.mean_valence is None and summary.mean_arousal is None


def test_the_gate_can_be_switched_off(models_dir: Path) -> None:
    frames = demo_frames(models_dir, count=4)
    settings = load_settings(environ={}, overrides={"models": {"dir": str(models_dir)}, "quality": {"enabled": False}})
    p = Pipeline.from_settings(settings)
    blurred = [p.process(Frame(cv2.GaussianBlur(f, (0, 0), 6), i / 3, i)) for i, f in enumerate(frames)]
    assert all(not o.low_quality for r in blurred for o in r.observations)


def obs(track_id: int, low_quality: bool = False, happy: float = 0.9) -> FaceObservation:
    probs = np.array([happy, 1 - happy], np.float32)
    return FaceObservation(track_id, 0.0, LABELS, probs, "happy", happy, 0.8, 0.2, low_quality=low_quality)


def test_low_quality_faces_are_counted_not_averaged() -> None:
    agg = Aggregator(LABELS, window_s=10.0)
    tracks = Tracks(
        np.array([1, 2]), np.zeros((2, 4), np.float32), np.zeros((2, 6, 2), np.float32), np.zeros(2), np.ones(2, np.int64), np.ones(2, bool), ()
    )
    agg.add(0.0, tracks, [obs(1), obs(2, low_quality=True, happy=0.1)])
    s = agg.flush(10.0)
    assert s is not None and s.observations == 2 and s.low_quality == 1 and s.uncertain == 0
    assert s.emotion_shares == pytest.approx({"happy": 0.9, "sad": 0.1})


@pytest.mark.parametrize(
    ("measures", "face_px", "pose", "reasons"),
    [
        (CropMeasures(0.8, 120, 50), 100, None, ()),
        (CropMeasures(0.8, 120, 50), 20, None, ("small",)),
        (CropMeasures(0.1, 120, 50), 100, None, ("blurred",)),
        (CropMeasures(0.8, 5, 3), 100, None, ("exposure", "flat")),
        (CropMeasures(0.8, 250, 20), 100, None, ("exposure",)),
        (CropMeasures(0.8, 120, 50), 100, (60.0, 0.0, 0.0), ("turned",)),
        (CropMeasures(0.8, 120, 50), 100, (10.0, -40.0, 0.0), ("turned",)),
    ],
)
def test_each_threshold(measures: CropMeasures, face_px: float, pose: tuple[float, float, float] | None, reasons: tuple[str, ...]) -> None:
    gate = QualityGate.from_config(QualityConfig())
    verdict = gate.assess(measures, face_px, pose)
    assert verdict.reasons == reasons and verdict.ok == (not reasons)
    assert QualityGate(enabled=False).assess(measures, face_px, pose).ok


def test_measures_are_independent_of_brightness_and_contrast_but_not_of_blur() -> None:
    first = sorted((Path(__file__).resolve().parents[1] / "data" / "fer2013_faces" / "happy").glob("*.png"))[0]
    face = cv2.imread(str(first), cv2.IMREAD_GRAYSCALE)
    m = measure_crop(face)
    dim = measure_crop((face * 0.5).astype(np.uint8))
    assert dim.sharpness == pytest.approx(m.sharpness, rel=0.1) and dim.brightness == pytest.approx(m.brightness / 2, abs=1)
    assert measure_crop(cv2.GaussianBlur(face, (0, 0), 1.5)).sharpness < 0.5 * m.sharpness
    assert measure_crop(cv2.cvtColor(face, cv2.COLOR_GRAY2BGR)) == m


def test_bad_thresholds_are_refused() -> None:
    with pytest.raises(ValueError, match="min_brightness"):
        QualityGate(min_brightness=200, max_brightness=100)
    with pytest.raises(ValueError, match="max_yaw_deg"):
        QualityGate(max_yaw_deg=0)
    with pytest.raises(ValueError, match="min_face_px"):
        QualityGate(min_face_px=-1)
    with pytest.raises(Exception, match="min_brightness must not exceed"):
        QualityConfig(min_brightness=200, max_brightness=100)
