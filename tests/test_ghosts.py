"""No ghosts: face-free footage publishes no face and no emotion, and a person who leaves and
stays gone counts once, with the face mesh on and off (the scenes: benchmarks/scenes.py)."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge_fer.config import load_settings
from edge_fer.pipeline import Pipeline
from edge_fer.types import Frame, WindowSummary

SCENES: dict[str, Any] = runpy.run_path(str(Path(__file__).parents[1] / "benchmarks" / "scenes.py"))
FPS = 24.0


def pipeline(models_dir: Path, mesh: bool) -> Pipeline:
    overrides = {"models": {"dir": str(models_dir)}, "landmarks": {"enabled": mesh}, "aggregate": {"window_s": 2.0}}
    return Pipeline.from_settings(load_settings(environ={}, overrides=overrides))


def summaries(p: Pipeline, frames: list[np.ndarray]) -> list[WindowSummary]:
    out = []
    for i, pixels in enumerate(frames):
        result = p.process(Frame(pixels, i / FPS, i))
        if result.summary is not None:
            out.append(result.summary)
    last, _ = p.finish((len(frames) - 1) / FPS)
    return [*out, *([last] if last is not None else [])]


@pytest.fixture(scope="module")
def negative_clips(models_dir: Path) -> dict[str, list[np.ndarray]]:
    return SCENES["negative_clips"](models_dir, seconds=4.0, fps=FPS)  # type: ignore[no-any-return]


@pytest.mark.parametrize("mesh", [True, False], ids=["mesh", "no-mesh"])
def test_face_free_clips_publish_no_face_and_no_emotion(models_dir: Path, negative_clips: dict[str, list[np.ndarray]], mesh: bool) -> None:
    """A drifting camera over face-free real footage, and an animated title over it: the
    detector does fire on some frames (lettering, clothes), but no track earns its place."""
    for name, frames in negative_clips.items():
        windows = summaries(pipeline(models_dir, mesh), frames)
        assert windows, name
        for w in windows:
            assert w.faces_max == 0 and w.faces_distinct == 0 and w.observations == 0, name
            assert w.emotion_shares is None and w.mean_valence is None, name


def leaving_clip(models_dir: Path) -> list[np.ndarray]:
    """The man of single_face.mp4 for 1 s, the camera panning off him over 1 s (he leaves the
    view on the left), then 3 s of a face-free wall."""
    cap = cv2.VideoCapture(str(models_dir / "single_face.mp4"))
    man = [cap.read()[1] for _ in range(48)]
    cap.release()
    wall = SCENES["backgrounds"](models_dir)["wooden_wall"]
    frames = [cv2.resize(f, (640, 360)) for f in man[:24]]
    for k in range(24):
        dx = -(k + 1) / 24 * 700
        matrix = np.array([[1.0, 0.0, dx], [0.0, 1.0, 0.0]])
        moved = cv2.warpAffine(cv2.resize(man[24 + k], (640, 360)), matrix, (640, 360))
        inside = cv2.warpAffine(np.ones((360, 640), np.uint8), matrix, (640, 360)).astype(bool)
        canvas = SCENES["pan"](wall, k / 96)
        canvas[inside] = moved[inside]
        frames.append(canvas)
    frames += [SCENES["pan"](wall, (24 + k) / 96) for k in range(72)]
    return frames


@pytest.mark.parametrize("mesh", [True, False], ids=["mesh", "no-mesh"])
def test_a_person_who_leaves_and_stays_gone_counts_once(models_dir: Path, mesh: bool) -> None:
    p = pipeline(models_dir, mesh)
    p.aggregator.window_s = 60.0  # one window over the whole clip
    (window,) = summaries(p, leaving_clip(models_dir))
    assert window.faces_distinct == 1 and window.faces_max == 1
    assert window.emotion_shares is not None
