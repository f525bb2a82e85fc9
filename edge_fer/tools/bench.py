"""`edge-fer bench`: throughput, per-stage latency, memory and start-up of the real pipeline.

The run uses the same `run()` as `edge-fer run` with no sinks (publishing is measured as a
stage when a sink is given) and ``--realtime off``, so every frame of the footage is processed
as fast as the pipeline takes it, decoding included. The raw invokes of every model the
pipeline runs (`Pipeline.models()`: detector, emotion model, face mesh...) are measured in the
same run, so the overhead ratio — pipeline time per frame ÷ the raw model invokes it needed — is
printed directly.

Footage: any source, the ``demo`` clip (one face, the default), or ``five-faces``: a clip made at
bench time from the five-face group photo (`five_faces_clip`), never stored beyond the run.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_fer.config import Settings
from edge_fer.errors import ModelError, SourceError
from edge_fer.models import asset_path
from edge_fer.pipeline import STAGES
from edge_fer.runner import rss_mb, rss_split_mb, run
from edge_fer.runner.health import dependency_versions
from edge_fer.runtime import Model

#: Bench-only footage names (``--source``) and what they are.
FOOTAGE = {"five-faces": "a 10 s 640x360 clip made at bench time from multi_face.jpg: five faces, slow pan and zoom"}
#: Centre of the five faces of multi_face.jpg (photo pixels) and the zoom range of the clip:
#: at 0.72-0.88 the faces are 60-100 px wide and all five stay inside 640x360.
_GROUP_CENTRE = (497.0, 250.0)
_ZOOM = (0.72, 0.88)


def five_faces_clip(models_dir: Path, dest_dir: Path, frames: int = 240, fps: float = 24.0) -> Path:
    """Write the five-face bench clip into `dest_dir` and return its path.

    The group photo is panned (±30 px) and zoomed (0.72-0.88) slowly along a closed loop, so
    that the clip loops seamlessly and the tracker follows five moving faces, as in a shop
    window. MPEG-4 part 2 (``mp4v``), the codec every OpenCV build can write.

    Raises:
        ModelError: the photo is not provisioned (`edge-fer models fetch`).
        SourceError: OpenCV cannot write the clip.
    """
    photo = cv2.imread(str(asset_path(models_dir, "multi_face")))
    if photo is None:
        raise ModelError("multi_face.jpg cannot be read; run `edge-fer models fetch`")
    path = Path(dest_dir) / "five_faces.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (640, 360))
    if not writer.isOpened():
        raise SourceError(f"OpenCV cannot write {path} (mp4v)")
    try:
        cx, cy = _GROUP_CENTRE
        for i in range(frames):
            phase = 2 * math.pi * i / frames
            zoom = _ZOOM[0] + (_ZOOM[1] - _ZOOM[0]) * (0.5 + 0.5 * math.sin(phase))
            dx, dy = 30 * math.sin(phase), 15 * math.cos(phase)
            matrix = np.array([[zoom, 0.0, 320 + dx - zoom * cx], [0.0, zoom, 180 + dy - zoom * cy]])
            writer.write(cv2.warpAffine(photo, matrix, (640, 360), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT))
    finally:
        writer.release()
    return path


def bench_settings(settings: Settings, *, detector: str | None = None, keep_sinks: bool = False) -> Settings:
    """`settings` as `edge-fer bench` runs them: ``realtime`` off, the source looped unless the
    settings say otherwise, no sinks unless `keep_sinks` (sinks given on the command line), and
    `detector` if given (alone: no far detector), else the configured detectors (by default
    the range pair, which finds the five faces at shop-window distance by itself)."""
    update: dict[str, Any] = {"realtime": False}
    if settings.source.loop is None:
        update["loop"] = True
    updates: dict[str, Any] = {"source": settings.source.model_copy(update=update)}
    if not keep_sinks:
        updates["sinks"] = ()
    if detector:
        updates["models"] = settings.models.model_copy(update={"detector": detector, "far_detector": ""})
    return settings.model_copy(update=updates)


@contextmanager
def footage(settings: Settings) -> Iterator[tuple[Settings, str, float]]:
    """The settings to bench with, a description of the footage, and the seconds spent making
    it (not part of the start-up time); makes the ``five-faces`` clip (in a temporary folder
    removed afterwards) when the source names it."""
    spec = settings.source.spec
    if spec not in FOOTAGE:
        yield settings, spec, 0.0
        return
    with tempfile.TemporaryDirectory(prefix="edge-fer-bench-") as folder:
        start = time.monotonic()
        clip = five_faces_clip(settings.models.dir, Path(folder))
        source = settings.source.model_copy(update={"spec": str(clip), "loop": True})
        yield settings.model_copy(update={"source": source}), f"{spec}: {FOOTAGE[spec]}", time.monotonic() - start


def bench(settings: Settings, frames: int, *, t0: float | None = None, footage_name: str | None = None) -> dict[str, Any]:
    """Run `frames` frames and return the benchmark record (see DESIGN.md's `bench` contract)."""
    t0 = time.monotonic() if t0 is None else t0
    before: dict[str, tuple[Model, int, float]] = {}

    def collect(pipeline: Any) -> None:
        # Count from here: what loading did (e.g. a warm-up invoke) is not the run's.
        for stage, model in pipeline.models().items():
            before[stage] = (model, model.invoke_count, model.invoke_s_total)

    report = run(settings, max_frames=frames, started_at=t0, on_built=collect)
    n = max(report.frames, 1)
    models: dict[str, dict[str, Any]] = {}
    for stage, (model, count0, seconds0) in before.items():
        count, seconds = model.invoke_count - count0, model.invoke_s_total - seconds0
        models[stage] = {
            "file": model.path.name,
            "backend": model.label,
            "invokes": count,
            "ms_per_invoke": round(1000.0 * seconds / count, 4) if count else None,
            "ms_per_frame": round(1000.0 * seconds / n, 4),
        }
    stages = {k: report.stages_ms[k] for k in (*STAGES, *sorted(set(report.stages_ms) - set(STAGES))) if k in report.stages_ms}
    pipeline_ms = sum(v["mean"] for k, v in stages.items() if k != "capture")
    raw_ms = sum(m["ms_per_frame"] for m in models.values())
    return {
        "fps": round(report.fps, 1),
        "frames": report.frames,
        "faces_per_frame": round(report.faces / n, 3),
        "stages_ms": {k: {"p50": v["p50"], "p95": v["p95"], "mean": v["mean"]} for k, v in stages.items()},
        "rss_mb": round(rss_mb(), 1),
        **{f"rss_{part}_mb": round(mb, 1) for part, mb in rss_split_mb().items()},
        "startup_s": round(report.startup_s or 0.0, 3),
        "detector": settings.models.detector,
        "far_detector": settings.models.far_detector or None,
        "emotion_model": settings.models.emotion,
        "runtime": ", ".join(sorted({model.runtime for model, _, _ in before.values()})),
        "backend": {stage: m["backend"] for stage, m in models.items()},
        "num_threads": settings.runtime.num_threads,
        "source": footage_name or settings.source.spec,
        "models": models,
        "raw_invoke_ms_per_frame": {stage: m["ms_per_frame"] for stage, m in models.items()},
        "invokes": {stage: m["invokes"] for stage, m in models.items()},
        "pipeline_ms_per_frame": round(pipeline_ms, 3),
        "wall_ms_per_frame": round(1000.0 / report.fps, 3) if report.fps else None,
        "overhead_ratio": round(pipeline_ms / raw_ms, 3) if raw_ms else None,
        "dropped_frames": report.capture.get("dropped", 0),
        # What the figures depend on (firmware_config/constraints.txt: the versions measured).
        "versions": dependency_versions(),
    }
