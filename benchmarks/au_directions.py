"""Do the geometric action units move the right way on real faces? Prints one JSON object.

Two kinds of evidence, both from real images:

1. FER2013 (``DIR`` = an unpacked split, one folder per class, e.g. ``public_test``): every face is
   detected (upscaled 4x, BlazeFace short range), meshed and measured; its AU intensities are
   taken against the population prior (`NEUTRAL_PRIOR`, a single image has no track baseline).
   For each AU and the classes where FACS says it appears (AU12 in happy, AU1/2/26 in surprise…)
   the script reports the AUC "a random face of the class shows more of the AU than a random
   neutral face" (0.5 = no difference, 1 = always more), and each class's mean intensities.
2. The provisioned videos, per frame against the track's own calm frames: the test video's
   man, neutral (frames 0-15) then smiling (24-66) and blinking (27); the demo actress.

With ``--prior`` it instead prints the median measures of the neutral class (what
`NEUTRAL_PRIOR` holds: ``--prior DIR/train --labels labels.csv`` keeps the images whose FERPlus
majority vote is neutral too, as used for the committed prior).

    d=$(mktemp -d) && tar xf ../shared/datasets/fer2013/public_test.tar -C "$d"
    python benchmarks/au_directions.py "$d/public_test" --per-class 300
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from edge_fer.config import load_settings
from edge_fer.models import asset_path
from edge_fer.types import Frame
from edge_fer.vision import FaceDetector
from edge_fer.vision.action_units import AU_NAMES, NEUTRAL_PRIOR, intensities
from edge_fer.vision.face_geometry import MEASURES, measures
from edge_fer.vision.landmarks import FaceLandmarker

#: (AU, class): FACS prototypes (EMFACS) that the AU should separate from neutral faces.
EXPECTED = (
    ("AU12", "happy"),
    ("AU6", "happy"),
    ("AU25", "happy"),
    ("AU1", "surprise"),
    ("AU2", "surprise"),
    ("AU26", "surprise"),
    ("AU25", "surprise"),
    ("AU4", "angry"),
    ("AU4", "disgust"),
    ("AU4", "sad"),
    ("AU15", "sad"),
    ("AU20", "fear"),
    ("AU1", "fear"),
)
CLASSES = ("neutral", "happy", "surprise", "sad", "angry", "fear", "disgust")


def fer_face(path: Path, detector: FaceDetector, landmarker: FaceLandmarker) -> np.ndarray | None:
    """Raw measures of one 48×48 FER2013 image (None when no face is found or meshed)."""
    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if grey is None:
        return None
    canvas = np.full((320, 320), int(np.median(grey)), np.uint8)
    canvas[64:256, 64:256] = cv2.resize(grey, (192, 192), interpolation=cv2.INTER_CUBIC)
    frame = Frame(cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR), 0.0, 0)
    found = detector.detect(frame)
    if len(found) == 0:
        return None
    mesh = landmarker.mesh(frame, found.boxes[0], found.keypoints[0])
    return measures(mesh.points) if mesh.present else None


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a random positive > a random negative), ties counting half (Mann-Whitney U / n·m)."""
    if len(positive) == 0 or len(negative) == 0:
        return float("nan")
    greater = (positive[:, None] > negative[None, :]).mean()
    ties = (positive[:, None] == negative[None, :]).mean()
    return float(greater + 0.5 * ties)


def video_measures(path: Path, detector: FaceDetector, landmarker: FaceLandmarker) -> list[np.ndarray | None]:
    cap = cv2.VideoCapture(str(path))
    out: list[np.ndarray | None] = []
    index = 0
    while True:
        ok, pixels = cap.read()
        if not ok:
            break
        frame = Frame(pixels, 0.0, index)
        found = detector.detect(frame)
        mesh = landmarker.mesh(frame, found.boxes[0], found.keypoints[0]) if len(found) else None
        out.append(measures(mesh.points) if mesh is not None and mesh.present else None)
        index += 1
    cap.release()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fer_dir", type=Path, nargs="?", help="an unpacked FER2013 split (class folders)")
    parser.add_argument("--per-class", type=int, default=300, help="images per class (first N by name)")
    parser.add_argument("--prior", action="store_true", help="print the neutral class's median measures instead")
    parser.add_argument("--labels", type=Path, help="FER2013 labels.csv: keep only images whose FERPlus majority agrees")
    args = parser.parse_args(argv)
    settings = load_settings(environ={})
    detector = FaceDetector.from_settings(settings)
    landmarker = FaceLandmarker.from_settings(settings)
    agree: set[str] | None = None
    if args.labels:
        with open(args.labels, newline="") as fh:
            agree = {
                Path(r["path"]).name
                for r in csv.DictReader(fh)
                if r["ferplus_majority"] in (r["emotion"], {"happy": "happiness", "sad": "sadness", "angry": "anger"}.get(r["emotion"]))
            }
    result: dict[str, object] = {}
    if args.fer_dir:
        faces: dict[str, np.ndarray] = {}
        missed: dict[str, int] = {}
        classes = ("neutral",) if args.prior else CLASSES
        for name in classes:
            files = sorted((args.fer_dir / name).glob("*.png"))
            if agree is not None:
                files = [f for f in files if f.name in agree]
            rows = [m for m in (fer_face(f, detector, landmarker) for f in files[: args.per_class]) if m is not None]
            faces[name] = np.array(rows).reshape(-1, len(MEASURES))
            missed[name] = min(len(files), args.per_class) - len(rows)
        if args.prior:
            median = np.median(faces["neutral"], axis=0)
            print(json.dumps({"n": len(faces["neutral"]), "missed": missed["neutral"], "prior": dict(zip(MEASURES, np.round(median, 3).tolist()))}))
            return 0
        aus = {name: np.array([intensities(m, NEUTRAL_PRIOR) for m in rows]).reshape(-1, len(AU_NAMES)) for name, rows in faces.items()}
        result["fer"] = {
            "dir": str(args.fer_dir),
            "faces": {k: len(v) for k, v in faces.items()},
            "missed": missed,
            "auc_vs_neutral": {
                f"{au} {cls}": round(auc(aus[cls][:, AU_NAMES.index(au)], aus["neutral"][:, AU_NAMES.index(au)]), 3) for au, cls in EXPECTED
            },
            "mean": {cls: dict(zip(AU_NAMES, np.round(v.mean(axis=0), 3).tolist())) for cls, v in aus.items()},
        }
    # The test video: neutral, then a broad smile, a blink at frame 27; its own calm frames as baseline.
    man = video_measures(asset_path(settings.models.dir, "single_face_video"), detector, landmarker)
    calm = np.median([m for m in man[0:16] if m is not None], axis=0)
    per_frame = np.array([intensities(m, calm) if m is not None else np.full(len(AU_NAMES), np.nan) for m in man])
    result["single_face_video"] = {
        "neutral_frames_0_15": dict(zip(AU_NAMES, np.round(np.nanmean(per_frame[0:16], axis=0), 3).tolist())),
        "smile_frames_24_66": dict(zip(AU_NAMES, np.round(np.nanmean(per_frame[24:67], axis=0), 3).tolist())),
        "eye_closure_by_frame_22_32": np.round(per_frame[22:33, AU_NAMES.index("AU45")], 2).tolist(),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
