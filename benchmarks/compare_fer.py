"""Benchmark (not a test): edge-fer against the `fer` Python library on the same footage.

    python benchmarks/compare_fer.py [--footage demo|five-faces|PATH] [--frames N] [--fer-python PYTHON]

`fer` (Haar cascade + its TFLite mini-Xception, MIT) is never a dependency of edge-fer: it pulls
TensorFlow and PyTorch, so it lives in its own virtual environment, by default /tmp/fer-venv:

    python3 -m venv /tmp/fer-venv && /tmp/fer-venv/bin/pip install fer

Both run every frame of the same file, decoding included, looping it to `--frames` frames:
`fer` as its README shows (`FER().detect_emotions(frame)` per frame, after 10 warm-up frames),
edge-fer as `edge-fer bench --realtime off` (its own capture thread; for five-faces the
full-range detector). Prints one JSON object: both records and ``ratio`` = edge-fer frames/s ÷
fer frames/s. Without a usable fer environment it says how to make one and exits with 0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_FER_PYTHON = Path("/tmp/fer-venv/bin/python")
HOW = "python3 -m venv /tmp/fer-venv && /tmp/fer-venv/bin/pip install fer   (pulls TensorFlow and PyTorch; never an edge-fer dependency)"

# Runs inside the fer environment: every frame of PATH (looped) through FER().detect_emotions.
FER_PROGRAM = r"""
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import cv2
from fer import __version__
from fer.fer import FER
path, frames = sys.argv[1], int(sys.argv[2])
detector = FER()  # Haar cascade + the quantized TFLite mini-Xception (fer's defaults)
cap = cv2.VideoCapture(path)
def read():
    ok, frame = cap.read()
    if not ok:
        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        ok, frame = cap.read()
    return frame
for _ in range(10):
    detector.detect_emotions(read())
faces = 0
start = time.perf_counter()
for _ in range(frames):
    faces += len(detector.detect_emotions(read()))
wall = time.perf_counter() - start
print(json.dumps({"library": f"fer {__version__}", "fps": round(frames / wall, 1), "frames": frames,
                  "faces_per_frame": round(faces / frames, 3), "ms_per_frame": round(1000 * wall / frames, 3)}))
"""


def fer_python(given: str | None) -> Path | None:
    """The fer environment's interpreter, if it exists and imports fer."""
    candidate = Path(given or os.environ.get("FER_PYTHON") or DEFAULT_FER_PYTHON)
    if not candidate.is_file():
        return None
    probe = subprocess.run([str(candidate), "-c", "import fer.fer"], capture_output=True, text=True, check=False)
    return candidate if probe.returncode == 0 else None


def run_fer(python: Path, path: Path, frames: int) -> dict[str, object]:
    result = subprocess.run([str(python), "-c", FER_PROGRAM, str(path), str(frames)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"fer failed:\n{result.stderr[-2000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def run_edge_fer(path: Path, frames: int, detector: str | None) -> dict[str, object]:
    cmd = [sys.executable, "-m", "edge_fer", "bench", "--source", str(path), "--frames", str(frames), "--json"]
    if detector:
        cmd += ["--detector", detector]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"edge-fer bench failed:\n{result.stderr[-2000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--footage", default="demo", help="demo (default), five-faces, or a video file")
    parser.add_argument("--frames", type=int, default=1000, help="frames per library (default 1000)")
    parser.add_argument("--fer-python", help=f"interpreter of the fer environment (default: $FER_PYTHON or {DEFAULT_FER_PYTHON})")
    args = parser.parse_args(argv)
    python = fer_python(args.fer_python)
    if python is None:
        print(json.dumps({"fer": None, "ratio": None, "message": "no environment with the fer library found", "how": HOW}))
        print(f"fer is not installed; create its own environment with:\n  {HOW}\nthen run this again.", file=sys.stderr)
        return 0
    from edge_fer.config import load_settings
    from edge_fer.models import asset_path
    from edge_fer.tools.bench import five_faces_clip

    models_dir = load_settings().models.dir
    with tempfile.TemporaryDirectory(prefix="edge-fer-compare-") as folder:
        detector = None
        if args.footage == "demo":
            path = asset_path(models_dir, "demo_video")
        elif args.footage == "five-faces":
            path, detector = five_faces_clip(models_dir, Path(folder)), "blazeface_full"
        else:
            path = Path(args.footage)
        fer_record = run_fer(python, path, args.frames)
        edge_record = run_edge_fer(path, args.frames, detector)
    edge_fps, fer_fps = float(edge_record["fps"]), float(fer_record["fps"])  # type: ignore[arg-type]
    print(
        json.dumps(
            {
                "footage": args.footage,
                "frames": args.frames,
                "edge_fer": {k: edge_record[k] for k in ("fps", "faces_per_frame", "detector", "emotion_model", "overhead_ratio", "rss_mb")},
                "fer": fer_record,
                "ratio": round(edge_fps / fer_fps, 2) if fer_fps else None,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
