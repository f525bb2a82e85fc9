"""Recall and speed of the int8 BlazeFace detectors against the float MediaPipe models.

    .venv/bin/python models/detector/evaluate_int8.py [--json]

Runs in the package's own environment (no TensorFlow). Fixtures, all real footage:

- ``multi_face.jpg`` (5 faces) and ``single_face.jpg`` (1 face), with the boxes of
  ``tests/data/face_boxes.json``; the group photo also at 60 % of its size (smaller faces);
- ``single_face.mp4`` (72 frames, held out from calibration) and the demo video (472 frames,
  **used for calibration**: reported for completeness), where the truth of each frame is the
  float full-range model's face (the most capable reference here).

A face counts as found when a detection overlaps it with IoU >= 0.5. Recall is found / faces,
per fixture and over all of them; `box_iou` is the mean IoU of the found faces. For the int8
models, `float_detections_reproduced` is the share of the float model's detections that the
int8 model also returns (IoU >= 0.5) and `extra_detections` what it returns besides. `invoke_ms`
is the median raw invoke time on this machine (XNNPACK, 2 threads), measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from edge_fer.config import load_settings
from edge_fer.models import asset_path, resolve
from edge_fer.runtime import load_model
from edge_fer.temporal.tracker import iou_matrix
from edge_fer.types import Frame
from edge_fer.vision.blazeface import FaceDetector

ROOT = Path(__file__).resolve().parents[2]
PAIRS = {"short": ("blazeface_short", "blazeface_short_int8"), "full": ("blazeface_full", "blazeface_full_int8")}
MIN_IOU = 0.5


def video_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, pixels = cap.read()
        if not ok:
            break
        frames.append(pixels)
    cap.release()
    return frames


def fixtures(models_dir: Path, reference: FaceDetector) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Fixture name → list of (image, true boxes (n, 4))."""
    truth = json.loads((ROOT / "tests" / "data" / "face_boxes.json").read_text())
    out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for name in ("multi_face.jpg", "single_face.jpg"):
        image = cv2.imread(str(models_dir / name))
        out[name] = [(image, np.array(truth[name], np.float32))]
    group = out["multi_face.jpg"][0]
    small = cv2.resize(group[0], None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
    out["multi_face.jpg@60%"] = [(small, group[1] * 0.6)]
    for name, asset in (("single_face.mp4", "single_face_video"), ("demo video (calibration)", "demo_video")):
        frames = video_frames(asset_path(models_dir, asset))
        out[name] = [(f, reference.detect(Frame(f, 0.0, 0)).boxes) for f in frames]
    return out


def evaluate(detector: FaceDetector, twin: FaceDetector | None, items: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float | int]:
    """Faces found (IoU >= 0.5 with a true box), their mean IoU, raw invoke times, and with a
    float `twin`: how many of its detections this detector reproduces (IoU >= 0.5) or adds."""
    found = faces = twins = reproduced = extra = 0
    ious: list[float] = []
    times: list[float] = []
    for image, boxes in items:
        frame = Frame(image, 0.0, 0)
        dets = detector.detect(frame)
        times.append(detector.model.last_invoke_s * 1000.0)
        faces += len(boxes)
        if len(boxes) and len(dets):
            best = iou_matrix(boxes, dets.boxes).max(axis=1)
            found += int((best >= MIN_IOU).sum())
            ious += [float(v) for v in best[best >= MIN_IOU]]
        if twin is not None:
            want = twin.detect(frame)
            twins += len(want)
            if len(want) and len(dets):
                overlap = iou_matrix(want.boxes, dets.boxes)
                reproduced += int((overlap.max(axis=1) >= MIN_IOU).sum())
                extra += int((overlap.max(axis=0) < MIN_IOU).sum())
            else:
                extra += len(dets)
    out: dict[str, float | int] = {"found": found, "faces": faces, "box_iou_sum": sum(ious), "invoke_ms_list": times}  # type: ignore[dict-item]
    if twin is not None:
        out.update(float_detections=twins, reproduced=reproduced, extra=extra)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    args = parser.parse_args(argv)
    settings = load_settings(environ={})
    models_dir = settings.models.dir

    def build(name: str) -> FaceDetector:
        entry, path = resolve(name, models_dir, "detector")
        return FaceDetector(load_model(path, num_threads=2, backend="cpu"), str(entry.extra["variant"]))

    data = fixtures(models_dir, build("blazeface_full"))
    record: dict[str, dict[str, object]] = {}
    for variant, (float_name, int8_name) in PAIRS.items():
        twin = build(float_name)
        for name, detector, reference in ((float_name, twin, None), (int8_name, build(int8_name), twin)):
            for _ in range(20):  # warm-up
                detector.detect(Frame(data["single_face.jpg"][0][0], 0.0, 0))
            per_fixture: dict[str, dict[str, object]] = {}
            totals: dict[str, float] = {}
            times: list[float] = []
            for fixture, items in data.items():
                result = evaluate(detector, reference, items)
                times += result.pop("invoke_ms_list")  # type: ignore[arg-type]
                for key, value in result.items():
                    totals[key] = totals.get(key, 0) + float(value)
                row = {k: v for k, v in result.items() if k != "box_iou_sum"}
                row["recall"] = round(result["found"] / result["faces"], 4) if result["faces"] else None
                per_fixture[fixture] = row
            entry: dict[str, object] = {
                "variant": variant,
                "recall": round(totals["found"] / totals["faces"], 4),
                "box_iou": round(totals["box_iou_sum"] / max(totals["found"], 1), 3),
                "invoke_ms": round(float(np.median(times)), 3),
                "fixtures": per_fixture,
            }
            if reference is not None:
                entry["float_detections_reproduced"] = round(totals["reproduced"] / max(totals["float_detections"], 1), 4)
                entry["extra_detections"] = int(totals["extra"])
                entry["recall_change_points"] = round(100 * (float(entry["recall"]) - float(record[float_name]["recall"])), 2)  # type: ignore[arg-type]
            record[name] = entry
    if args.json:
        print(json.dumps(record))
        return 0
    for name, r in record.items():
        line = f"{name:22s} recall {r['recall']:.4f}  box IoU {r['box_iou']:.3f}  invoke {r['invoke_ms']:.3f} ms"
        if "extra_detections" in r:
            line += f"  reproduces {r['float_detections_reproduced']:.4f} of float's detections, {r['extra_detections']} extra"
            line += f", recall change {r['recall_change_points']:+.2f} points"
        print(line)
        for fixture, f in r["fixtures"].items():  # type: ignore[attr-defined]
            line = f"    {fixture:28s} {f['found']}/{f['faces']}"
            if "extra" in f:
                line += f"   float detections reproduced {f['reproduced']}/{f['float_detections']}, extra {f['extra']}"
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
