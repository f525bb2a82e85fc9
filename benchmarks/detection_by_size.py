"""Face detection against face size: recall and false detections per frame, per detector.

    .venv/bin/python benchmarks/detection_by_size.py [--json OUT.json] [--plot OUT.png] [--quick]

Scenes (`benchmarks/scenes.py`): 13 real faces from the provisioned photos and clips, scaled so
their box is W pixels wide and pasted (up to 4 per frame, at random places, seed 0) onto 6
face-free backgrounds cut from the same footage, in 640x360 frames; and face-free clips (a
drifting camera over each background, an animated title over each) for false detections.

Configurations: each detector alone on the whole frame (``blazeface_short``,
``blazeface_full`` and their int8 versions), and ``default``, the shipped configuration
(`RangeDetector`: short range every frame, the full-range scan, far-face and small-face
follow-up), with ``default_int8`` its int8 pair. A single detector sees one frame; the
range detector keeps state, so each scene is held still for one complete scan
(``detector.scan_s``) and 0.5 s more at 24 frames/s, and scored on its last 6 frames.

Each configuration is scored three ways: without the face mesh, with the mesh check as it was
(a detection whose mesh face score is below ``landmarks.min_score`` is rejected), and with the
current check (`edge_fer.vision.landmarks.mesh_keeps`: detections the detector is sure of are
kept whatever the mesh says).

A true face is found when a detection overlaps its box with IoU >= 0.3 (the two models draw
boxes a little differently); every other detection is a false one.
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_fer.config import load_settings
from edge_fer.models import resolve
from edge_fer.runtime import load_model
from edge_fer.temporal.tracker import iou_matrix
from edge_fer.types import Detections, Frame
from edge_fer.vision.blazeface import FaceDetector, RangeDetector
from edge_fer.vision.landmarks import FaceLandmarker, mesh_keeps

SCENES = runpy.run_path(str(Path(__file__).with_name("scenes.py")))
WIDTHS = (16, 20, 24, 28, 32, 40, 48, 64, 80, 100, 128, 160, 200, 256)
SINGLE = ("blazeface_short", "blazeface_full", "blazeface_short_int8", "blazeface_full_int8")
RANGE = {"default": ("blazeface_short", "blazeface_full"), "default_int8": ("blazeface_short_int8", "blazeface_full_int8")}
FPS = 24.0
HOLD_S = 0.5  # each scene is held for one complete scan (detector.scan_s) and this long
SCORED_FRAMES = 6
MIN_IOU = 0.3


def detector(name: str, models_dir: Path, settings: Any) -> FaceDetector:
    entry, path = resolve(name, models_dir, "detector")
    det = settings.detector
    return FaceDetector(
        load_model(path, backend="cpu"), str(entry.extra["variant"]), det.score_threshold, det.min_face_px, det.nms_iou, det.max_faces
    )


def scenes(models_dir: Path, quick: bool) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(face width, frame, true boxes) for every width, background and repetition."""
    rng = np.random.default_rng(0)
    patches = SCENES["faces"](models_dir)
    out = []
    for width in WIDTHS:
        for background in SCENES["backgrounds"](models_dir).values():
            for _ in range(1 if quick else 3):
                frame, boxes = SCENES["composite"](background, patches, width, rng)
                out.append((width, frame, boxes))
    return out


class Scorer:
    """Tallies found faces and false detections, without mesh, with the old and the new check."""

    RULES = ("no_mesh", "mesh_before", "mesh_after")

    def __init__(self, landmarker: FaceLandmarker) -> None:
        self.landmarker = landmarker
        self.faces: dict[str, dict[int, list[int]]] = {r: {} for r in self.RULES}  # width → [found, total]
        self.false: dict[str, dict[int, list[int]]] = {r: {} for r in self.RULES}  # width → [false dets, frames]
        self.negative: dict[str, list[int]] = {r: [0, 0] for r in self.RULES}
        self.mesh = {r: {"true_rejected": 0, "true_total": 0, "false_removed": 0, "false_total": 0} for r in ("mesh_before", "mesh_after")}

    def kept(self, frame: Frame, dets: Detections) -> dict[str, np.ndarray]:
        if not len(dets):
            return {r: np.zeros(0, bool) for r in self.RULES}
        meshes = self.landmarker.meshes(frame, list(dets.boxes), list(dets.keypoints))
        before = np.array([m.present for m in meshes], bool)
        after = np.array([mesh_keeps(m, float(s)) for m, s in zip(meshes, dets.scores.tolist())], bool)
        return {"no_mesh": np.ones(len(dets), bool), "mesh_before": before, "mesh_after": after}

    def score(self, width: int | None, frame: Frame, dets: Detections, truth: np.ndarray) -> None:
        kept = self.kept(frame, dets)
        iou = iou_matrix(truth, dets.boxes) if len(truth) and len(dets) else np.zeros((len(truth), len(dets)), np.float32)
        true_det = (iou >= MIN_IOU).any(axis=0) if len(truth) else np.zeros(len(dets), bool)
        for rule in self.RULES:
            keep = kept[rule]
            if width is None:
                self.negative[rule][0] += int((keep & ~true_det).sum())
                self.negative[rule][1] += 1
            else:
                found = int(((iou[:, keep] >= MIN_IOU).any(axis=1)).sum()) if keep.any() else 0
                tally = self.faces[rule].setdefault(width, [0, 0])
                tally[0] += found
                tally[1] += len(truth)
                fal = self.false[rule].setdefault(width, [0, 0])
                fal[0] += int((keep & ~true_det).sum())
                fal[1] += 1
            if rule in self.mesh:
                m = self.mesh[rule]
                m["true_total"] += int(true_det.sum())
                m["true_rejected"] += int((true_det & ~keep).sum())
                m["false_total"] += int((~true_det).sum())
                m["false_removed"] += int((~true_det & ~keep).sum())

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for rule in self.RULES:
            faces = self.faces[rule]
            recall = {str(w): round(f / t, 3) for w, (f, t) in sorted(faces.items())}
            big = [faces[w] for w in faces if w >= 24]
            out[rule] = {
                "recall_by_width_px": recall,
                "recall_24px_and_up": round(sum(f for f, _ in big) / max(sum(t for _, t in big), 1), 3),
                "false_per_frame_by_width_px": {str(w): round(f / n, 3) for w, (f, n) in sorted(self.false[rule].items())},
                "false_per_frame_negative_clips": round(self.negative[rule][0] / max(self.negative[rule][1], 1), 4),
                "false_detections_negative_clips": self.negative[rule][0],
                "negative_frames": self.negative[rule][1],
            }
        out["mesh_check"] = self.mesh
        return out


def run_single(det: FaceDetector, scorer: Scorer, items: list[tuple[int, np.ndarray, np.ndarray]], negatives: dict[str, list[np.ndarray]]) -> None:
    for width, pixels, truth in items:
        frame = Frame(pixels, 0.0, 0)
        scorer.score(width, frame, det.detect(frame), truth)
    for clip in negatives.values():
        for i, pixels in enumerate(clip):
            frame = Frame(pixels, i / FPS, i)
            scorer.score(None, frame, det.detect(frame), np.zeros((0, 4), np.float32))


def run_range(
    make: Any, scorer: Scorer, items: list[tuple[int, np.ndarray, np.ndarray]], negatives: dict[str, list[np.ndarray]], scan_s: float
) -> dict[str, float]:
    passes: dict[str, int] = {}
    frames = 0
    hold = int(round((scan_s + HOLD_S) * FPS))
    for width, pixels, truth in items:
        det = make()
        for i in range(hold):
            frame = Frame(pixels, i / FPS, i)
            dets = det.detect(frame)
            if i >= hold - SCORED_FRAMES:
                scorer.score(width, frame, dets, truth)
    for clip in negatives.values():
        det = make()
        for i, pixels in enumerate(clip):
            frame = Frame(pixels, i / FPS, i)
            scorer.score(None, frame, det.detect(frame), np.zeros((0, 4), np.float32))
        for k, v in det.passes.items():
            passes[k] = passes.get(k, 0) + v
        frames += len(clip)
    return {k: round(v / max(frames, 1), 3) for k, v in passes.items()}


def plot(record: dict[str, Any], path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, result in record["configurations"].items():
        for rule, style in (("no_mesh", "-"), ("mesh_after", ":")):
            curve = result[rule]["recall_by_width_px"]
            ax.plot([int(w) for w in curve], list(curve.values()), style, marker="o", markersize=3, label=f"{name} ({rule.replace('_', ' ')})")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks(WIDTHS, [str(w) for w in WIDTHS])
    ax.axhline(0.9, color="grey", linewidth=0.5)
    ax.axvline(24, color="grey", linewidth=0.5)
    ax.set_xlabel("face width (px) in a 640x360 frame")
    ax.set_ylabel("recall")
    ax.set_title("Faces found against face size (benchmarks/detection_by_size.py)")
    ax.legend(fontsize=6, ncol=2, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="also write the JSON record here")
    parser.add_argument("--plot", type=Path, help="write the recall-by-size plot (PNG; needs matplotlib, the eval extra)")
    parser.add_argument("--quick", action="store_true", help="one scene per width and background, 1 s clips (a smoke run)")
    parser.add_argument("--only", nargs="*", help="configurations to run (default: all)")
    args = parser.parse_args(argv)
    settings = load_settings()
    models_dir = settings.models.dir
    start = time.monotonic()
    items = scenes(models_dir, args.quick)
    negatives = SCENES["negative_clips"](models_dir, seconds=1.0 if args.quick else 4.0, fps=FPS)
    entry, path = resolve("face_mesh", models_dir, "landmarks")
    landmarker = FaceLandmarker(load_model(path, backend="cpu"), entry, settings.landmarks.min_score)
    record: dict[str, Any] = {
        "frame": [640, 360],
        "faces_per_width": {str(w): int(sum(len(t) for ww, _, t in items if ww == w)) for w in WIDTHS},
        "negative_clips": {name: len(clip) for name, clip in negatives.items()},
        "score_threshold": settings.detector.score_threshold,
        "min_face_px": settings.detector.min_face_px,
        "scan_s": settings.detector.scan_s,
        "configurations": {},
    }
    wanted = set(args.only or [*SINGLE, *RANGE])
    for name in SINGLE:
        if name in wanted:
            scorer = Scorer(landmarker)
            run_single(detector(name, models_dir, settings), scorer, items, negatives)
            record["configurations"][name] = scorer.report()
            print(f"{name} done ({time.monotonic() - start:.0f} s)", file=sys.stderr)
    for name, (near, far) in RANGE.items():
        if name not in wanted:
            continue
        scorer = Scorer(landmarker)
        near_det, far_det = detector(near, models_dir, settings), detector(far, models_dir, settings)

        def make(near_det: FaceDetector = near_det, far_det: FaceDetector = far_det) -> RangeDetector:
            return RangeDetector(near_det, far_det, settings.detector.scan_s, settings.tracker.max_missed_s, settings.detector.max_faces)

        passes = run_range(make, scorer, items, negatives, settings.detector.scan_s)
        record["configurations"][name] = {**scorer.report(), "passes_per_frame_negative_clips": passes}
        print(f"{name} done ({time.monotonic() - start:.0f} s)", file=sys.stderr)
    record["seconds"] = round(time.monotonic() - start, 1)
    text = json.dumps(record)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(record, indent=1) + "\n")
    if args.plot:
        plot(record, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
