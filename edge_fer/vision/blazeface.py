"""Face detection: MediaPipe BlazeFace (short or full range) with SSD anchor decoding and weighted NMS.

The decoding follows MediaPipe's face detection graphs
(``mediapipe/modules/face_detection/face_detection_{short,full}_range_common.pbtxt``):
``SsdAnchorsCalculator`` with a fixed anchor size, ``TensorsToDetectionsCalculator`` with
``reverse_output_order`` (x, y, w, h), x/y/w/h scale = input size, 6 keypoints, sigmoid scores
clipped at ±100, then ``NonMaxSuppressionCalculator`` with the ``WEIGHTED`` algorithm and IoU
overlap. The frame is letterboxed (padded to a square, centred, as ``ImageToTensorCalculator``
with ``keep_aspect_ratio`` does) so that the model sees undistorted faces and boxes map back
exactly to frame pixels.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edge_fer.errors import ModelError
from edge_fer.models import resolve
from edge_fer.runtime import Model, load_manifest_model
from edge_fer.types import Detections, Frame

if TYPE_CHECKING:
    from edge_fer.config import Settings

logger = logging.getLogger(__name__)

#: MediaPipe clips raw scores to ±100 before the sigmoid (``score_clipping_thresh``).
RAW_SCORE_LIMIT = 100.0
#: Above this shrink factor (frame side / input side) the frame is area-averaged, not bilinear.
MAX_BILINEAR_SHRINK = 4.0


@dataclass(frozen=True)
class AnchorOptions:
    """The parts of MediaPipe's ``SsdAnchorsCalculatorOptions`` that BlazeFace uses.

    With ``fixed_anchor_size: true`` every anchor has width = height = 1, so only the centres
    matter; ``aspect_ratios: [1.0]`` gives one anchor per cell and layer, plus one more when
    ``interpolated_scale_aspect_ratio`` > 0. Consecutive layers of equal stride share one
    feature map (their anchors are interleaved per cell).
    """

    input_size: int
    strides: tuple[int, ...]
    interpolated_scale_aspect_ratio: float
    anchor_offset: float = 0.5

    @property
    def anchors_per_layer(self) -> int:
        return 1 + (1 if self.interpolated_scale_aspect_ratio > 0 else 0)


#: Short range (128×128): 4 layers, strides 8,16,16,16, 2 anchors per layer →
#: 16×16×2 + 8×8×(3×2) = 896. Full range (192×192): 1 layer of stride 4, 1 anchor → 48×48 = 2304.
VARIANTS: dict[str, AnchorOptions] = {
    "short": AnchorOptions(input_size=128, strides=(8, 16, 16, 16), interpolated_scale_aspect_ratio=1.0),
    "full": AnchorOptions(input_size=192, strides=(4,), interpolated_scale_aspect_ratio=0.0),
}


def generate_anchors(options: AnchorOptions) -> np.ndarray:
    """Anchor centres ``(n, 2)`` ``x, y`` in [0, 1], in the model's output order."""
    centres = []
    layer = 0
    while layer < len(options.strides):
        stride = options.strides[layer]
        same = layer
        while same < len(options.strides) and options.strides[same] == stride:
            same += 1
        per_cell = (same - layer) * options.anchors_per_layer
        cells = math.ceil(options.input_size / stride)
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        grid = np.stack([(xs + options.anchor_offset) / cells, (ys + options.anchor_offset) / cells], axis=-1)
        centres.append(np.repeat(grid.reshape(-1, 1, 2), per_cell, axis=1).reshape(-1, 2))
        layer = same
    return np.concatenate(centres).astype(np.float32)


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy `box` with each of `boxes` ``(n, 4)`` (0 where there is no overlap)."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return np.asarray(inter / np.maximum(area + areas - inter, 1e-12))


def weighted_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    keypoints: np.ndarray,
    iou_threshold: float,
    max_out: int | None = None,
    min_width: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's WEIGHTED non-max suppression.

    Repeatedly takes the best remaining box; every remaining box whose IoU with it is above
    `iou_threshold` (the best one included) forms its cluster, which becomes one detection: the
    score-weighted mean of the members' boxes and keypoints, with the best member's score.
    The loop runs once per cluster, not once per candidate.

    Args:
        boxes: ``(n, 4)`` xyxy; scores: ``(n,)``; keypoints: ``(n, k, 2)``.
        iou_threshold: IoU above which a box joins the cluster.
        max_out: stop once this many clusters are accepted (None: all).
        min_width: clusters whose merged box is narrower are dropped (and not counted).

    Returns:
        boxes, scores, keypoints of the accepted clusters, highest score first.
    """
    remaining = np.argsort(-scores, kind="stable")
    out_b: list[np.ndarray] = []
    out_k: list[np.ndarray] = []
    out_s: list[float] = []
    while remaining.size and (max_out is None or len(out_b) < max_out):
        top = remaining[0]
        in_cluster = box_iou(boxes[top], boxes[remaining]) > iou_threshold
        in_cluster[0] = True
        members = remaining[in_cluster]
        remaining = remaining[~in_cluster]
        weights = scores[members]
        total = float(weights.sum())
        merged = weights @ boxes[members] / total
        if merged[2] - merged[0] < min_width:
            continue
        out_b.append(merged)
        out_k.append(np.tensordot(weights, keypoints[members], axes=1) / total)
        out_s.append(scores[top])
    if not out_b:
        return boxes[:0], scores[:0], keypoints[:0]
    return np.stack(out_b), np.asarray(out_s, scores.dtype), np.stack(out_k)


@dataclass(frozen=True)
class _Letterbox:
    """How a frame of ``(h, w)`` sits in the square model input: resized to ``(rh, rw)`` and
    pasted at ``(y0, x0)``; frame = normalised * gain + bias, per axis."""

    h: int
    w: int
    rh: int
    rw: int
    y0: int
    x0: int

    @property
    def gain(self) -> np.ndarray:
        return np.array([self.w / self.rw, self.h / self.rh], np.float32)

    @property
    def bias(self) -> np.ndarray:
        return np.array([-self.x0 * self.w / self.rw, -self.y0 * self.h / self.rh], np.float32)


class FaceDetector:
    """Finds faces in a frame with a MediaPipe BlazeFace model.

    Args:
        model: the loaded BlazeFace model: float, or full-integer int8/uint8 (input quantized
            and outputs dequantized with the tensors' own parameters; decoding is identical).
        variant: ``"short"`` (128×128, faces within ~2 m of the camera) or ``"full"``
            (192×192, faces up to ~5 m). Must match the model.
        score_threshold: minimum face score in (0, 1); lower finds more (and falser) faces.
        min_face_px: faces whose box is narrower than this many frame pixels are dropped
            (too small to classify an expression).
        nms_iou: IoU in (0, 1) above which overlapping boxes are merged into one face.
        max_faces: keep at most this many faces per frame, highest scores first.

    Raises:
        ValueError: an argument is out of range (the message names it).
        ModelError: the model's tensors do not match the variant (input size, anchor count).
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
        if min_face_px < 0:
            raise ValueError(f"min_face_px must be >= 0, got {min_face_px}")
        if not 0 < nms_iou < 1:
            raise ValueError(f"nms_iou must be in (0, 1), got {nms_iou}")
        if max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {max_faces}")
        self.model = model
        self.variant = variant
        self.options = VARIANTS[variant]
        self.anchors = generate_anchors(self.options)
        size = self.options.input_size
        name = model.path.name
        shape = model.input.shape
        if len(shape) != 4 or shape[1:] != (size, size, 3):
            raise ModelError(f"{name}: input {shape} does not fit BlazeFace {variant} (1x{size}x{size}x3); check the manifest's variant")
        if len(model.outputs) != 2:
            raise ModelError(f"{name}: expected 2 outputs (regressors, scores), got {len(model.outputs)}")
        by_width = sorted(range(2), key=lambda i: model.outputs[i].shape[-1])
        self._scores_i, self._boxes_i = by_width
        boxes_shape, scores_shape = model.outputs[self._boxes_i].shape, model.outputs[self._scores_i].shape
        n = len(self.anchors)
        if boxes_shape[-2:] != (n, 16) or scores_shape[-2:] != (n, 1):
            raise ModelError(f"{name}: outputs {boxes_shape} and {scores_shape} do not match BlazeFace {variant} ({n} anchors x 16 and x 1)")
        self.score_threshold = score_threshold
        self.min_face_px = min_face_px
        self.nms_iou = nms_iou
        self.max_faces = max_faces
        self._letterbox: _Letterbox | None = None
        self._canvas = np.zeros((size, size, 3), np.uint8)
        self._rgb = np.zeros((size, size, 3), np.uint8)
        self._input = np.zeros((1, size, size, 3), np.float32)

    @property
    def score_threshold(self) -> float:
        return self._score_threshold

    @score_threshold.setter
    def score_threshold(self, value: float) -> None:
        if not 0 < value < 1:
            raise ValueError(f"score_threshold must be in (0, 1), got {value}")
        self._score_threshold = float(value)
        # sigmoid is monotonic: thresholding the raw logits skips it for the ~900–2300 anchors
        # that are not faces.
        self._logit_threshold = math.log(value / (1 - value))

    @classmethod
    def from_settings(cls, settings: Settings) -> FaceDetector:
        """The detector named by ``settings.models.detector``, tuned by ``settings.detector``.

        Raises:
            ModelError: the model is unknown, missing or corrupt, or its manifest entry has no
                valid ``variant``.
        """
        entry, path = resolve(settings.models.detector, settings.models.dir, "detector")
        variant = entry.extra.get("variant")
        if variant not in VARIANTS:
            raise ModelError(f"manifest entry {entry.name!r}: variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        model = load_manifest_model(entry, path, settings)
        det = settings.detector
        return cls(model, str(variant), det.score_threshold, det.min_face_px, det.nms_iou, det.max_faces)

    def _geometry(self, h: int, w: int) -> _Letterbox:
        box = self._letterbox
        if box is not None and (box.h, box.w) == (h, w):
            return box
        size = self.options.input_size
        scale = size / max(h, w)
        rw, rh = min(size, max(1, round(w * scale))), min(size, max(1, round(h * scale)))
        box = _Letterbox(h, w, rh, rw, (size - rh) // 2, (size - rw) // 2)
        self._letterbox = box
        self._canvas[:] = 0  # the padding stays black (-1 after normalising) for this geometry
        return box

    def preprocess(self, pixels: np.ndarray) -> np.ndarray:
        """BGR frame → the model's input tensor: letterboxed to a square (centred, black
        padding), resized, RGB, ``[-1, 1]`` (``pixel * 2/255 - 1``), quantized if needed."""
        box = self._geometry(*pixels.shape[:2])
        # Bilinear, as MediaPipe's ImageToTensorCalculator; but past 4x shrinking bilinear skips
        # most pixels and aliases, so large frames are area-averaged (slower, ~0.2-0.6 ms).
        interpolation = cv2.INTER_AREA if max(box.w, box.h) > MAX_BILINEAR_SHRINK * self.options.input_size else cv2.INTER_LINEAR
        resized = cv2.resize(pixels, (box.rw, box.rh), interpolation=interpolation)
        self._canvas[box.y0 : box.y0 + box.rh, box.x0 : box.x0 + box.rw] = resized
        x = self._input
        cv2.cvtColor(self._canvas, cv2.COLOR_BGR2RGB, dst=self._rgb)
        np.multiply(self._rgb, np.float32(2.0 / 255.0), out=x[0], casting="unsafe")
        x -= np.float32(1.0)
        return self.model.input.quantize(x) if self.model.input.quantized else x

    def decode(self, raw_boxes: np.ndarray, raw_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw (dequantized) outputs ``(n, 16)``, ``(n,)`` → candidate boxes ``(m, 4)`` xyxy and
        keypoints ``(m, 6, 2)`` in normalised input coordinates, and scores ``(m,)``, for the
        anchors whose score passes the threshold."""
        keep = np.flatnonzero(raw_scores > self._logit_threshold)
        anchors = self.anchors[keep]
        reg = raw_boxes[keep] * np.float32(1.0 / self.options.input_size)  # x/y/w/h scale = input size
        centre = reg[:, 0:2] + anchors
        half = reg[:, 2:4] * 0.5
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        keypoints = reg[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]
        scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores[keep], -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)))
        valid = (half > 0).all(axis=1)
        return boxes[valid], scores[valid].astype(np.float32), keypoints[valid]

    def detect(self, frame: Frame) -> Detections:
        """Faces in `frame`, highest score first.

        Returns:
            `Detections` with boxes (xyxy) and keypoints in frame pixels (a face cut by the
            frame edge keeps its full box, which may extend past the edge) and scores in [0, 1];
            `Detections.empty()` when there is no face.
        """
        x = self.preprocess(frame.pixels)
        outputs = self.model.run(x)
        raw_boxes = self.model.outputs[self._boxes_i].dequantize(outputs[self._boxes_i]).reshape(-1, 16)
        raw_scores = self.model.outputs[self._scores_i].dequantize(outputs[self._scores_i]).reshape(-1)
        boxes, scores, keypoints = self.decode(raw_boxes, raw_scores)
        if len(scores) == 0:
            return Detections.empty()
        box = self._geometry(frame.height, frame.width)
        gain, bias = box.gain * self.options.input_size, box.bias
        boxes, scores, keypoints = weighted_nms(
            boxes, scores, keypoints, self.nms_iou, max_out=self.max_faces, min_width=self.min_face_px / float(gain[0])
        )
        if len(scores) == 0:
            return Detections.empty()
        return Detections(
            (boxes * np.tile(gain, 2) + np.tile(bias, 2)).astype(np.float32),
            scores.astype(np.float32),
            (keypoints * gain + bias).astype(np.float32),
        )
