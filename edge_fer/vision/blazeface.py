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
#: Up to this shrink factor (frame side / input side) the frame is resized bilinearly in one
#: step, as MediaPipe's ImageToTensorCalculator does (a 640-pixel-wide camera frame to 128 is 5x).
#: Larger frames are first halved by 2x2 averaging (OpenCV's fast area path) until the rest is
#: within this factor, so that bilinear sampling never skips most pixels and aliases.
MAX_BILINEAR_SHRINK = 6.0


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
    n, k = len(boxes), keypoints.shape[1] if keypoints.ndim == 3 else 0
    rows = np.hstack([boxes, keypoints.reshape(n, 2 * k)])
    merged, kept = _weighted_nms_rows(rows, scores, iou_threshold, max_out, min_width)
    return merged[:, :4], kept, merged[:, 4:].reshape(len(kept), k, 2)


def _weighted_nms_rows(
    rows: np.ndarray,
    scores: np.ndarray | list[float],
    iou_threshold: float,
    max_out: int | None = None,
    min_width: float = 0.0,
    boxes: list[list[float]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`weighted_nms` on ``(n, 4 + 2k)`` rows (box xyxy, then the keypoints flattened);
    `boxes` may give ``rows[:, :4]`` as lists already.

    The clustering runs on Python floats and all accepted clusters are merged by one matrix
    product: with a handful of candidates per face, numpy calls on tiny arrays would cost more
    than the arithmetic (and run with cold caches right after each model invoke)."""
    weight = scores.tolist() if isinstance(scores, np.ndarray) else list(scores)
    n = len(weight)
    if boxes is None:
        boxes = rows[:, :4].tolist()
    areas = [(x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in boxes]
    remaining = sorted(range(n), key=weight.__getitem__, reverse=True)  # stable: ties keep anchor order
    mix: list[list[float]] = []  # per accepted cluster: its members' normalised score weights
    tops: list[float] = []
    while remaining and (max_out is None or len(mix) < max_out):
        top = remaining[0]
        tx1, ty1, tx2, ty2 = boxes[top]
        top_area = areas[top]
        members: list[int] = [top]
        rest: list[int] = []
        for i in remaining[1:]:
            x1, y1, x2, y2 = boxes[i]
            inter = max(0.0, min(tx2, x2) - max(tx1, x1)) * max(0.0, min(ty2, y2) - max(ty1, y1))
            (members if inter / max(top_area + areas[i] - inter, 1e-12) > iou_threshold else rest).append(i)
        remaining = rest
        total = sum([weight[i] for i in members])
        if sum([weight[i] * (boxes[i][2] - boxes[i][0]) for i in members]) < min_width * total:
            continue  # a cluster too narrow once merged is dropped and does not count
        row = [0.0] * n
        for i in members:
            row[i] = weight[i] / total
        mix.append(row)
        tops.append(weight[top])
    if not mix:
        return rows[:0], np.zeros((0,), np.float32)
    return np.array(mix, np.float32) @ rows, np.array(tops, np.float32)


@dataclass(frozen=True)
class _Letterbox:
    """How a frame of ``(h, w)`` sits in the square model input: resized to ``(rh, rw)`` and
    pasted at ``(y0, x0)``, after `halvings` 2x2 averagings; frame = normalised * gain + bias,
    per axis (``gain16``/``bias16`` apply it to a decoded row: box xyxy then 6 keypoints)."""

    h: int
    w: int
    rh: int
    rw: int
    y0: int
    x0: int
    halvings: int
    gain16: np.ndarray
    bias16: np.ndarray

    @classmethod
    def fit(cls, h: int, w: int, size: int) -> _Letterbox:
        scale = size / max(h, w)
        rw, rh = min(size, max(1, round(w * scale))), min(size, max(1, round(h * scale)))
        halvings, sh, sw = 0, h, w
        while max(sh, sw) > MAX_BILINEAR_SHRINK * size and sh % 2 == 0 and sw % 2 == 0:
            halvings, sh, sw = halvings + 1, sh // 2, sw // 2
        y0, x0 = (size - rh) // 2, (size - rw) // 2
        # normalised input coordinate u → frame pixel: (u * size - x0) * w / rw
        gain = np.array([w * size / rw, h * size / rh], np.float32)
        bias = np.array([-x0 * w / rw, -y0 * h / rh], np.float32)
        return cls(h, w, rh, rw, y0, x0, halvings, np.tile(gain, 8), np.tile(bias, 8))


def _decode_tables(anchors: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 16)`` anchor offsets and the ``(16, 16)`` matrix that turn one raw regressor row
    ``[cx, cy, w, h, kx0, ky0, ...]`` (input pixels, relative to its anchor) into ``[x1, y1,
    x2, y2, kx0, ky0, ...]`` in normalised input coordinates: ``row @ matrix / size + offsets``."""
    offsets = np.zeros((len(anchors), 16), np.float32)
    offsets[:, 0::2] = anchors[:, :1]
    offsets[:, 1::2] = anchors[:, 1:]
    matrix = np.zeros((16, 16), np.float32)
    for axis in (0, 1):  # x1 = cx - w/2, x2 = cx + w/2 (and y)
        matrix[axis, axis] = matrix[axis, axis + 2] = 1.0
        matrix[axis + 2, axis], matrix[axis + 2, axis + 2] = -0.5, 0.5
    matrix[4:, 4:] = np.eye(12, dtype=np.float32)
    return offsets, matrix / np.float32(size)


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
        self.min_face_px = min_face_px
        self.nms_iou = nms_iou
        self.max_faces = max_faces
        self._letterbox: _Letterbox | None = None
        self._canvas = np.zeros((size, size, 3), np.uint8)  # BGR, letterboxed; padding stays black
        self._rgb = np.zeros((size, size, 3), np.uint8)
        self._tensor = model.input_buffer()  # the model's own input tensor (zero copy)
        self._input = self._tensor[0]
        info = model.input
        # Pixel value → model input in one table: x = pixel * 2/255 - 1 (MediaPipe's [-1, 1]),
        # quantized with the tensor's own scale and zero point for an int8/uint8 model.
        self._lut = info.pixel_table(2.0 / 255.0, -1.0)
        boxes_info, scores_info = model.outputs[self._boxes_i], model.outputs[self._scores_i]
        # Decoding reads the raw output: the dequantization is folded into the decode matrix and
        # the score threshold, so only the few anchors above the threshold are ever converted.
        self._boxes_q = (float(boxes_info.scale), float(boxes_info.zero_point)) if boxes_info.quantized else (1.0, 0.0)
        self._scores_q = (float(scores_info.scale), float(scores_info.zero_point)) if scores_info.quantized else (1.0, 0.0)
        self._raw_views: tuple[np.ndarray | None, np.ndarray, np.ndarray] = (None, np.empty((0, 16)), np.empty(0))
        offsets, matrix = _decode_tables(self.anchors, size)
        box_scale, box_zero = self._boxes_q
        self._decode_matrix = (matrix * np.float32(box_scale)).astype(np.float32)
        self._decode_offsets = (offsets - np.float32(box_zero * box_scale) * matrix.sum(axis=0)).astype(np.float32)
        self.score_threshold = score_threshold

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
        scale, zero = self._scores_q
        self._threshold_raw = self._logit_threshold / scale + zero  # the same test on the raw output

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
        if box is not None and box.h == h and box.w == w:
            return box
        box = _Letterbox.fit(h, w, self.options.input_size)
        self._letterbox = box
        # The padding is black (-1 after normalising) and stays so for this geometry: only the
        # picture's rows and columns are written per frame.
        self._canvas[:] = 0
        self._input[:] = self._lut[0]
        return box

    def preprocess(self, pixels: np.ndarray) -> np.ndarray:
        """BGR frame → the model's input tensor, written in place (its memory is returned):
        letterboxed to a square (centred, black padding), resized bilinearly (after 2x2
        averaging for frames more than `MAX_BILINEAR_SHRINK` times the input), RGB, ``[-1, 1]``
        (``pixel * 2/255 - 1``), quantized for an int8/uint8 model. No allocation: every
        step writes into a buffer kept for this frame size."""
        h, w = pixels.shape[:2]
        box = self._geometry(h, w)
        for _ in range(box.halvings):
            h, w = h // 2, w // 2
            pixels = cv2.resize(pixels, (w, h), interpolation=cv2.INTER_AREA)  # exact 2x: OpenCV's fast path
        rows, cols = slice(box.y0, box.y0 + box.rh), slice(box.x0, box.x0 + box.rw)
        picture = self._canvas[rows, cols]
        cv2.resize(pixels, (box.rw, box.rh), dst=picture, interpolation=cv2.INTER_LINEAR)
        rgb = self._rgb[rows, cols]
        cv2.cvtColor(picture, cv2.COLOR_BGR2RGB, dst=rgb)
        cv2.LUT(rgb, self._lut, dst=self._input[rows, cols])
        return self._tensor

    def decode(self, raw_boxes: np.ndarray, raw_scores: np.ndarray) -> tuple[np.ndarray, list[float], list[list[float]]]:
        """Raw model outputs (as the model gives them, quantized or not) ``(n, 16)``, ``(n,)``
        → for the anchors whose score passes the threshold and whose box has a width and a
        height: ``(m, 16)`` float32 rows of box ``x1, y1, x2, y2`` then 6 keypoints ``x, y``,
        in normalised input coordinates, their scores (sigmoid of the clipped logit), and
        their boxes as lists (for the clustering)."""
        keep = np.flatnonzero(raw_scores > self._threshold_raw)
        if len(keep) == 0:
            return np.zeros((0, 16), np.float32), [], []
        rows = raw_boxes[keep] @ self._decode_matrix
        rows += self._decode_offsets[keep]
        scale, zero = self._scores_q
        scores = [1.0 / (1.0 + math.exp(-min(max((q - zero) * scale, -RAW_SCORE_LIMIT), RAW_SCORE_LIMIT))) for q in raw_scores[keep].tolist()]
        boxes = rows[:, :4].tolist()
        valid = [i for i, (x1, y1, x2, y2) in enumerate(boxes) if x2 > x1 and y2 > y1]
        if len(valid) < len(keep):
            rows, scores, boxes = rows[valid], [scores[i] for i in valid], [boxes[i] for i in valid]
        return rows, scores, boxes

    def detect(self, frame: Frame, *, preprocessed: bool = False) -> Detections:
        """Faces in `frame`, highest score first.

        Args:
            frame: the frame to search.
            preprocessed: the model input already holds this frame (`preprocess` was called on
                it, e.g. by the pipeline, which times the two steps apart).

        Returns:
            `Detections` with boxes (xyxy) and keypoints in frame pixels (a face cut by the
            frame edge keeps its full box, which may extend past the edge) and scores in [0, 1];
            `Detections.empty()` when there is no face.
        """
        if not preprocessed:
            self.preprocess(frame.pixels)
        outputs = self.model.run(copy=False)  # read in place: only the candidates are copied
        raw = outputs[self._boxes_i]
        if raw is not self._raw_views[0]:  # the same output tensors every time on LiteRT
            self._raw_views = (raw, raw.reshape(-1, 16), outputs[self._scores_i].reshape(-1))
        rows, candidate_scores, boxes = self.decode(self._raw_views[1], self._raw_views[2])
        if not candidate_scores:
            return Detections.empty()
        box = self._geometry(frame.height, frame.width)
        # min_face_px is in frame pixels; the rows are still in normalised input units.
        min_width = self.min_face_px / float(box.gain16[0])
        rows, scores = _weighted_nms_rows(rows, candidate_scores, self.nms_iou, self.max_faces, min_width, boxes)
        if len(scores) == 0:
            return Detections.empty()
        rows *= box.gain16
        rows += box.bias16
        return Detections(rows[:, :4], scores, rows[:, 4:].reshape(-1, 6, 2))
