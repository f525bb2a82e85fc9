"""The pipeline with the face mesh: rejection of false detections, AUs and attention per observation, classification that follows change, spotting."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_fer.config import load_settings
from edge_fer.pipeline import STAGES, Pipeline
from edge_fer.types import Frame
from edge_fer.vision.action_units import AU_NAMES
from tests.conftest import SMILES, smile_clip

#: Every track confirmed at its first detection: for tests of what comes after confirmation.
AT_ONCE = {"confirm_hits": 1, "confirm_s": 0.0, "confirm_score": 0.0}


def pipeline(models_dir: Path, **sections: dict[str, object]) -> Pipeline:
    models = {"dir": str(models_dir), **sections.pop("models", {})}
    return Pipeline.from_settings(load_settings(environ={}, overrides={"models": models, **sections}))


def man_frames(models_dir: Path, count: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(models_dir / "single_face.mp4"))
    frames = [cap.read()[1] for _ in range(count)]
    cap.release()
    return frames


def test_the_mesh_rejects_what_the_detector_mistook_for_faces(models_dir: Path) -> None:
    """Sky and clouds at a very low detector threshold, every track confirmed at once and the
    short-range detector alone: without the mesh they are faces."""
    sky = np.ascontiguousarray(cv2.imread(str(models_dir / "multi_face.jpg"))[0:300, 500:1000])
    results = {}
    for enabled in (True, False):
        p = pipeline(
            models_dir,
            detector={"score_threshold": 0.05},
            landmarks={"enabled": enabled},
            tracker=AT_ONCE,
            models={"far_detector": ""},
        )
        results[enabled] = [p.process(Frame(sky, i / 30, i)) for i in range(5)]
    assert all(len(r.tracks) >= 3 and r.rejected and not r.observations and r.classified == 0 for r in results[True])
    assert all(r.observations for r in results[False])


def test_tentative_tracks_are_not_people_even_without_the_mesh(models_dir: Path) -> None:
    """The same sky at the same low threshold with the default confirmation: the false faces
    come and go at low scores, never earn their place, and nothing is classified or counted."""
    sky = np.ascontiguousarray(cv2.imread(str(models_dir / "multi_face.jpg"))[0:300, 500:1000])
    p = pipeline(models_dir, detector={"score_threshold": 0.05}, landmarks={"enabled": False})
    results = [p.process(Frame(sky, i / 30, i)) for i in range(30)]
    assert any(len(r.tracks) for r in results)  # the detector does see "faces" there
    assert all(not r.observations and r.classified == 0 and not r.tracks.seen.any() for r in results)


def test_observations_carry_action_units_head_pose_and_attention(models_dir: Path) -> None:
    p = pipeline(models_dir, tracker=AT_ONCE)
    results = [p.process(Frame(pixels, i / 30, i)) for i, pixels in enumerate(man_frames(models_dir, 10))]
    for r in results:
        (obs,) = r.observations
        assert obs.meshed and r.meshed == 1 and not r.rejected
        assert obs.action_units is not None and set(obs.action_units) == set(AU_NAMES)
        assert all(0.0 <= v <= 1.0 for v in obs.action_units.values())
        assert obs.head_pose is not None and all(abs(a) < 15 for a in obs.head_pose)  # he faces the camera
        assert obs.attending is True


def test_the_mesh_rate_is_per_second_not_per_frame(models_dir: Path) -> None:
    """At the default 30 meshes/s, a 60 frames/s stream is meshed every 2nd frame and a
    15 frames/s one every frame; carried-over frames say so (``meshed`` False)."""
    frames = man_frames(models_dir, 12)
    for fps, expected in ((60, 6), (15, 12)):
        p = pipeline(models_dir, tracker=AT_ONCE)
        results = [p.process(Frame(pixels, i / fps, i)) for i, pixels in enumerate(frames)]
        assert sum(r.meshed for r in results) == expected
        assert all(r.observations[0].action_units is not None for r in results)


def test_classification_follows_the_face_changing(models_dir: Path) -> None:
    """A stable, calm face is classified every 2nd frame; while the smile comes (frames
    16-24) the action units move and it is classified every frame."""
    p = pipeline(models_dir)
    classified = [p.process(Frame(pixels, i / 30, i)).classified for i, pixels in enumerate(man_frames(models_dir, 26))]
    assert sum(classified[4:15]) <= 7  # calm: about every 2nd frame
    assert sum(classified[17:24]) >= 5  # changing: (nearly) every frame (every 2nd would be 3-4)


@pytest.mark.parametrize("fps", [15.0, 30.0])
def test_spliced_smiles_are_spotted_in_the_real_pipeline(models_dir: Path, fps: float) -> None:
    p = pipeline(models_dir)
    spots = []
    for i, (t, pixels) in enumerate(smile_clip(models_dir, fps)):
        spots += p.process(Frame(pixels, t, i)).micro_expressions  # type: ignore[arg-type]
    assert [s.emotion for s in spots] == ["happy"] * len(SMILES)
    for spot, (start, duration) in zip(spots, SMILES):
        inter = min(spot.offset_t, start + duration) - max(spot.onset_t, start)
        union = max(spot.offset_t, start + duration) - min(spot.onset_t, start)
        assert inter / union >= 0.5, (spot, start, duration)
        assert spot.action_units is not None and spot.action_units.get("AU12", 0) > 0.3


def test_every_stage_is_timed_once_per_frame(models_dir: Path) -> None:
    """The stats keys are the pipeline's stages (capture and publish are the runner's), each
    timed exactly once per frame, with or without the face mesh."""
    for enabled in (True, False):
        p = pipeline(models_dir, landmarks={"enabled": enabled})
        for i, pixels in enumerate(man_frames(models_dir, 3)):
            p.process(Frame(pixels, i / 30, i))
        timed = {stage: len(samples) for stage, samples in p.timer._samples.items()}
        expected = [s for s in STAGES if s not in ("capture", "publish") and (enabled or s != "landmarks")]
        assert timed == dict.fromkeys(expected, 3)
        assert list(p.timer.percentiles()) == expected and all(v["p50"] >= 0 for v in p.timer.percentiles().values())
