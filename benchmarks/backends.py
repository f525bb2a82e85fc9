"""Back-end benchmark (not a test): raw invoke time of each model on LiteRT (CPU, XNNPACK) and on
ONNX Runtime (CPU provider here; TensorRT/CUDA on a Jetson), then the whole pipeline per back-end.

    python benchmarks/backends.py [--invokes 300] [--threads 2] [--frames 300] [--backends cpu,onnx]

Prints one JSON object:
- ``invoke_ms``: per model and back-end, p50/p95/mean of single invokes on a real photo (after
  20 warm-up invokes), plus ``onnx_over_cpu`` (ratio of p50s);
- ``pipeline``: per back-end, ``edge-fer bench --json`` on the demo (``--realtime off``) in a
  fresh process: fps, raw invoke ms per frame, rss_mb, startup_s, and the back-end of each model.
Run it through /work/quiet.sh (or on an idle device): the figures are wall-clock times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

import cv2
import numpy as np

from edge_fer.config import load_settings
from edge_fer.models import load_manifest, resolve
from edge_fer.runtime import Model, TensorInfo, load_manifest_model


def photo_input(info: TensorInfo, photo: np.ndarray) -> np.ndarray:
    """A real photo as this input tensor (resized; grey for one channel; [-1, 1] or raw pixels)."""
    _, h, w, c = info.shape
    pixels = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA)
    pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)[..., None] if c == 1 else cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    if info.dtype == np.float32:
        return (pixels[None].astype(np.float32) / 127.5 - 1.0).astype(np.float32)
    return (pixels[None].astype(np.int16) - (128 if info.dtype == np.int8 else 0)).astype(info.dtype)


def time_invokes(model: Model, x: list[np.ndarray], n: int) -> dict[str, float]:
    for _ in range(20):
        model.run(*x)
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        model.run(*x)
        samples.append((time.perf_counter() - start) * 1000.0)
    arr = np.asarray(samples)
    return {"p50": round(float(np.percentile(arr, 50)), 4), "p95": round(float(np.percentile(arr, 95)), 4), "mean": round(float(arr.mean()), 4)}


def invoke_table(invokes: int, threads: int, backends: list[str]) -> dict[str, Any]:
    base = load_settings(environ={}, overrides={"runtime": {"num_threads": threads}})
    models_dir = base.models.dir
    photo = cv2.imread(str(resolve("single_face", models_dir)[1]))
    out: dict[str, Any] = {}
    for name, entry in load_manifest().items():
        if entry.kind == "media" or "onnx" not in entry.extra:
            continue
        _, path = resolve(name, models_dir)
        row: dict[str, Any] = {}
        for backend in backends:
            settings = base.model_copy(update={"runtime": base.runtime.model_copy(update={"backend": backend})})
            model = load_manifest_model(entry, path, settings)
            row[model.label] = time_invokes(model, [photo_input(i, photo) for i in model.inputs], invokes)
        labels = list(row)
        if len(labels) == 2:
            row["onnx_over_cpu"] = round(row[labels[1]]["p50"] / row[labels[0]]["p50"], 3)
        out[name] = row
    return out


def pipeline_bench(backend: str, frames: int, threads: int) -> dict[str, Any]:
    env = {**os.environ, "EDGE_FER_RUNTIME__BACKEND": backend, "EDGE_FER_RUNTIME__NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "edge_fer", "bench", "--source", "demo", "--frames", str(frames), "--json"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    record = json.loads(result.stdout)
    keys = ("fps", "raw_invoke_ms_per_frame", "pipeline_ms_per_frame", "overhead_ratio", "rss_mb", "startup_s", "backend", "runtime")
    return {k: record[k] for k in keys}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invokes", type=int, default=300, help="timed invokes per model and back-end")
    parser.add_argument("--threads", type=int, default=2, help="runtime.num_threads")
    parser.add_argument("--frames", type=int, default=300, help="frames of the demo per pipeline run (0: skip)")
    parser.add_argument("--backends", default="cpu,onnx", help="comma-separated back-ends to compare")
    args = parser.parse_args()
    backends = args.backends.split(",")
    record: dict[str, Any] = {"threads": args.threads, "invoke_ms": invoke_table(args.invokes, args.threads, backends)}
    if args.frames:
        record["pipeline"] = {b: pipeline_bench(b, args.frames, args.threads) for b in backends}
    print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
