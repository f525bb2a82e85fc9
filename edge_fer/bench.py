"""`edge-fer bench`: throughput, per-stage latency, memory and start-up of the real pipeline.

The run uses the same `run()` as `edge-fer run` with no sinks (publishing is measured as a
stage when a sink is given) and ``--realtime off``, so every frame of the footage is processed
as fast as the pipeline takes it, decoding included. Raw model invoke times are measured in the
same run, so the overhead ratio — pipeline time per frame ÷ the model invokes it needed — is
printed directly.
"""

from __future__ import annotations

import time
from typing import Any

from edge_fer.config import Settings
from edge_fer.runner import rss_mb, run
from edge_fer.runtime import runtime_name


def bench(settings: Settings, frames: int, *, t0: float | None = None) -> dict[str, Any]:
    """Run `frames` frames and return the benchmark record (see DESIGN.md's `bench` contract)."""
    t0 = time.monotonic() if t0 is None else t0
    models: dict[str, Any] = {}

    def collect(pipeline: Any) -> None:
        for stage, model in (("detect", pipeline.detector.model), ("classify", pipeline.classifier.model)):
            models[stage] = model
        if pipeline.landmarker is not None:
            models["landmarks"] = pipeline.landmarker.model

    report = run(settings, max_frames=frames, started_at=t0, on_built=collect)
    invoke_ms = {stage: 1000.0 * m.invoke_s_total / max(report.frames, 1) for stage, m in models.items()}
    stages = report.stages_ms
    pipeline_ms = sum(v["mean"] for k, v in stages.items() if k != "capture")
    per_frame_ms = 1000.0 / report.fps if report.fps else float("nan")
    raw_ms = sum(invoke_ms.values())
    return {
        "fps": round(report.fps, 1),
        "frames": report.frames,
        "faces_per_frame": round(report.faces / max(report.frames, 1), 3),
        "stages_ms": {k: {"p50": v["p50"], "p95": v["p95"]} for k, v in stages.items()},
        "rss_mb": round(rss_mb(), 1),
        "startup_s": round(report.startup_s or 0.0, 3),
        "detector": settings.models.detector,
        "emotion_model": settings.models.emotion,
        "runtime": runtime_name(),
        "backend": {k: m.backend for k, m in models.items()},
        "num_threads": settings.runtime.num_threads,
        "source": settings.source.spec,
        "raw_invoke_ms_per_frame": {k: round(v, 3) for k, v in invoke_ms.items()},
        "invokes": {k: m.invoke_count for k, m in models.items()},
        "pipeline_ms_per_frame": round(pipeline_ms, 3),
        "wall_ms_per_frame": round(per_frame_ms, 3),
        "overhead_ratio": round(pipeline_ms / raw_ms, 3) if raw_ms else None,
        "dropped_frames": report.capture.get("dropped", 0),
    }
