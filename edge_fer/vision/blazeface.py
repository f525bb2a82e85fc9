"""Face detection: MediaPipe BlazeFace (short or full range) with SSD anchor decoding and weighted NMS."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edge_fer.errors import ModelError
from edge_fer.models import resolve
from edge_fer.runtime import Model, load_model
from edge_fer.types import Detections, Frame

if TYPE_CHECKING:
    from edge_fer.config import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnchorOptions:
    """MediaPipe's SsdAnchorsCalculator options for a BlazeFace variant."""

    input_size: int
    strides: tuple[int, ...]
    anchors_per_cell: tuple[int, ...]  # per stride group, after merging layers of equal stride


#: Short range (128×128): strides 8,16,16,16 with 2 anchors per layer → 16×16×2 + 8×8×6 = 896.
#: Full range (192×192): one layer of stride 4, one anchor per cell → 48×48 = 2304.
VARIANTS: dict[str, AnchorOptions] = {
    "short": AnchorOptions(128, (8, 16), (2, 6)),
    "full": AnchorOptions(192, (4,), (1,)),
}


def generate_anchors(options: AnchorOptions) -> np.ndarray:
    """Anchor centres ``(n, 2)`` in [0, 1] (fixed anchor size: width = height = 1)."""
    centres = []
    for stride, per_cell in zip(options.strides, options.anchors_per_cell):
        cells = int(np.ceil(options.input_size / stride))
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        grid = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 1, 2)
        centres.append(np.repeat(grid, per_cell, axis=1).reshape(-1, 2))
    return np.concatenate(centres).astype(np.float32)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray, iou_threshold: float) -> tuple[np.ndarray, ...]:
    """MediaPipe's WEIGHTED non-max suppression: each cluster of overlapping boxes becomes the
    score-weighted mean of its members (boxes and keypoints), with the best member's score."""
    order = np.argsort(-scores)
    boxes, scores, keypoints = boxes[order], scores[order], keypoints[order]
    remaining = np.ones(len(boxes), bool)
    out_b, out_s, out_k = [], [], []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for i in range(len(boxes)):
        if not remaining[i]:
            continue
        x1 = np.maximum(boxes[i, 0], boxes[:, 0])
        y1 = np.maximum(boxes[i, 1], boxes[:, 1])
        x2 = np.minimum(boxes[i, 2], boxes[:, 2])
        y2 = np.minimum(boxes[i, 3], boxes[:, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        iou = inter / np.maximum(areas[i] + areas - inter, 1e-9)
        cluster = remaining & (iou > iou_threshold)
        cluster[i] = True
        weights = scores[cluster][:, None]
        total = float(weights.sum())
        out_b.append((boxes[cluster] * weights).sum(axis=0) / total)
        out_k.append((keypoints[cluster] * weights[:, :, None]).sum(axis=0) / total)
        out_s.append(scores[i])
        remaining &= ~cluster
    if not out_b:
        return boxes[:0], scores[:0], keypoints[:0]
    return np.stack(out_b), np.array(out_s, np.float32), np.stack(out_k)


class FaceDetector:
    """Finds faces in a frame with a BlazeFace model.

    Args:
        model: the loaded BlazeFace model (float, or full-int8: decoding is the same).
        variant: ``"short"`` (128×128, faces within ~2 m) or ``"full"`` (192×192, up to ~5 m).
        score_threshold: minimum face score in [0, 1].
        min_face_px: faces narrower than this many frame pixels are dropped.
        nms_iou: IoU above which boxes are merged by weighted NMS.
        max_faces: keep at most this many faces, highest scores first.

    Raises:
        ModelError: the model's tensors do not match the variant's anchors.
    """

    def __init__(
        self,
        model: Model,
        variant: str = "short",
        score_threshold: float = 0.5,
        min_face_px: int = 24,
        nms_iou: float = 0.3,
        max_faces: int = 10,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        if not 0 < score_threshold < 1:
            raise ValueError(f"score_threshold must be in (0, 1), got {score_threshold}")
        if min_face_px < 0 or max_faces < 1 or not 0 < nms_iou < 1:
            raise ValueError(f"bad min_face_px={min_face_px}, max_faces={max_faces} or nms_iou={nms_iou}")
        self.model = model
        self.variant = variant
        self.options = VARIANTS[variant]
        self.anchors = generate_anchors(self.options)
        size = self.options.input_size
        if model.input.shape[1:3] != (size, size):
            raise ModelError(f"{model.path.name}: input {model.input.shape} does not fit BlazeFace {variant} ({size}x{size})")
        by_width = sorted(model.outputs, key=lambda o: o.shape[-1])
        self._scores_out, self._boxes_out = by_width[0], by_width[-1]
        if self._boxes_out.shape[-2] != len(self.anchors) or self._boxes_out.shape[-1] != 16:
            raise ModelError(f"{model.path.name}: outputs {self._boxes_out.shape} do not match {len(self.anchors)} anchors x 16")
        self._out_order = [model.outputs.index(self._boxes_out), model.outputs.index(self._scores_out)]
        self.score_threshold = score_threshold
        self.min_face_px = min_face_px
        self.nms_iou = nms_iou
        self.max_faces = max_faces
        self._square: np.ndarray | None = None

    @property
    def score_threshold(self) -> float:
        return self._score_threshold

    @score_threshold.setter
    def score_threshold(self, value: float) -> None:
        if not 0 < value < 1:
            raise ValueError(f"score_threshold must be in (0, 1), got {value}")
        self._score_threshold = value
        # Comparing raw logits skips the sigmoid for the ~900 anchors of every frame.
        self._logit_threshold = float(np.log(value / (1 - value)))

    @classmethod
    def from_settings(cls, settings: Settings) -> FaceDetector:
        entry, path = resolve(settings.models.detector, settings.models.dir, "detector")
        model = load_model(path, num_threads=settings.runtime.num_threads, backend=settings.runtime.backend)
        det = settings.detector
        return cls(model, str(entry.extra.get("variant", "short")), det.score_threshold, det.min_face_px, det.nms_iou, det.max_faces)

    def _preprocess(self, pixels: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        """Pad to a square (bottom/right, so frame coordinates are unchanged), resize, normalise."""
        h, w = pixels.shape[:2]
        side = max(h, w)
        size = self.options.input_size
        if h != w:
            if self._square is None or self._square.shape[0] != side:
                self._square = np.zeros((side, side, 3), np.uint8)
            self._square[:h, :w] = pixels
            self._square[h:, :] = 0
            self._square[:h, w:] = 0
            pixels = self._square
        resized = cv2.resize(pixels, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)
        rgb = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
        inp = self.model.input
        x = rgb.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)
        return inp.quantize(x[None]), float(side), 0.0, 0.0

    def detect(self, frame: Frame) -> Detections:
        """Faces in `frame`: boxes and keypoints in frame pixels, highest score first."""
        x, side, _, _ = self._preprocess(frame.pixels)
        outputs = self.model.run(x)
        raw_boxes = self._boxes_out.dequantize(outputs[self._out_order[0]])[0]
        raw_scores = self._scores_out.dequantize(outputs[self._out_order[1]])[0, :, 0]
        keep = np.flatnonzero(raw_scores > self._logit_threshold)
        if keep.size == 0:
            return Detections.empty()
        size = float(self.options.input_size)
        anchors = self.anchors[keep]
        reg = raw_boxes[keep] / size
        cx = reg[:, 0] + anchors[:, 0]
        cy = reg[:, 1] + anchors[:, 1]
        half_w, half_h = reg[:, 2] / 2, reg[:, 3] / 2
        boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1) * side
        kps = (reg[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]) * side
        scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores[keep], -100, 100)))
        boxes, scores, kps = weighted_nms(boxes, scores.astype(np.float32), kps, self.nms_iou)
        widths = boxes[:, 2] - boxes[:, 0]
        ok = widths >= self.min_face_px
        boxes, scores, kps = boxes[ok][: self.max_faces], scores[ok][: self.max_faces], kps[ok][: self.max_faces]
        h, w = frame.height, frame.width
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h)
        return Detections(boxes.astype(np.float32), scores.astype(np.float32), kps.astype(np.float32))
