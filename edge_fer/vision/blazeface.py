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
    left_out: list[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`weighted_nms` on ``(n, 4 + 2k)`` rows (box xyxy, then the keypoints flattened);
    `boxes` may give ``rows[:, :4]`` as lists already. When `left_out` is a list, the number of
    clusters past `max_out` (faces the cap left out) is appended to it; counting them costs the
    clustering of the rest, so it is only done when asked.

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
    dropped = 0
    while remaining:
        full = max_out is not None and len(mix) >= max_out
        if full and left_out is None:
            break
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
        if full:
            dropped += 1
            continue
        row = [0.0] * n
        for i in members:
            row[i] = weight[i] / total
        mix.append(row)
        tops.append(weight[top])
    if left_out is not None:
        left_out.append(dropped)
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
        self.log_truncation = True  # warn (once) when a frame holds more faces than max_faces
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
    def from_settings(cls, settings: Settings, *, name: str | None = None) -> FaceDetector:
        """The detector named by ``settings.models.detector`` (or `name`), tuned by
        ``settings.detector``.

        Raises:
            ModelError: the model is unknown, missing or corrupt, or its manifest entry has no
                valid ``variant``.
        """
        entry, path = resolve(name or settings.models.detector, settings.models.dir, "detector")
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

    def prepare(self, frame: Frame) -> None:
        """Get ready for `detect` on `frame` (here: `preprocess` its pixels), so that the
        pipeline can time the input preparation apart from the model."""
        self.preprocess(frame.pixels)

    def models(self) -> dict[str, Model]:
        """The models this detector runs, by stage name (for stats and bench)."""
        return {"detect": self.model}

    def detect(self, frame: Frame, *, preprocessed: bool = False, region: tuple[int, int, int, int] | None = None) -> Detections:
        """Faces in `frame`, highest score first.

        Args:
            frame: the frame to search.
            preprocessed: the model input already holds this frame (`preprocess` was called on
                it, e.g. by the pipeline, which times the two steps apart).
            region: search only this part of the frame, ``(x1, y1, x2, y2)`` in frame pixels
                (a tile, or the surroundings of a small face): the model sees it at a larger
                scale than the whole frame, so smaller faces are found. Boxes are still in
                frame pixels.

        Returns:
            `Detections` with boxes (xyxy) and keypoints in frame pixels (a face cut by the
            frame edge keeps its full box, which may extend past the edge) and scores in [0, 1];
            `Detections.empty()` when there is no face. ``truncated`` counts the faces left
            out by `max_faces` (the first frame that has any is logged, once).
        """
        x0 = y0 = 0
        height, width = frame.height, frame.width
        if region is not None:
            x0, y0, x1, y1 = (int(v) for v in region)
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
            if x1 - x0 < 2 or y1 - y0 < 2:
                return Detections.empty()
            height, width = y1 - y0, x1 - x0
            self.preprocess(frame.pixels[y0:y1, x0:x1])
        elif not preprocessed:
            self.preprocess(frame.pixels)
        outputs = self.model.run(copy=False)  # read in place: only the candidates are copied
        raw = outputs[self._boxes_i]
        if raw is not self._raw_views[0]:  # the same output tensors every time on LiteRT
            self._raw_views = (raw, raw.reshape(-1, 16), outputs[self._scores_i].reshape(-1))
        rows, candidate_scores, boxes = self.decode(self._raw_views[1], self._raw_views[2])
        if not candidate_scores:
            return Detections.empty()
        box = self._geometry(height, width)
        # min_face_px is in frame pixels; the rows are still in normalised input units.
        min_width = self.min_face_px / float(box.gain16[0])
        left_out: list[int] = []
        rows, scores = _weighted_nms_rows(rows, candidate_scores, self.nms_iou, self.max_faces, min_width, boxes, left_out)
        truncated = left_out[0]
        if truncated and self.log_truncation:
            self.log_truncation = False
            _log_truncation(self.max_faces, truncated)
        if len(scores) == 0:
            return Detections.empty()
        rows *= box.gain16
        rows += box.bias16
        if x0 or y0:
            rows += np.tile(np.array([x0, y0], np.float32), 8)
        return Detections(rows[:, :4], scores, rows[:, 4:].reshape(-1, 6, 2), truncated)


def _log_truncation(max_faces: int, truncated: int) -> None:
    """The one warning (a detector logs it once) that a frame held more faces than `max_faces`."""
    logger.warning(
        "a frame holds more faces than detector.max_faces = %d: %d with the lowest scores are left out "
        "(faces.truncated in the summary counts them); raise detector.max_faces if this is a crowd you want counted "
        "(logged once)",
        max_faces,
        truncated,
    )


#: Faces at least this share of the frame's longer side wide are found by the short-range
#: model on the whole frame (recall >= 0.93 from this size up on `benchmarks/detection_by_size.py`:
#: 100 px on a 640-wide frame); narrower ones need the full-range model.
NEAR_MIN_FRACTION = 0.19
#: ...and faces at least this share wide by the full-range model on the whole frame (recall
#: >= 0.96 from 64 px on a 640-wide frame); narrower ones are searched for in parts of the frame.
FAR_MIN_FRACTION = 0.10
#: The scan's tiles: the frame cut into 3 x 2 parts (2 x 3 when portrait), overlapping by
#: this share of a tile, each searched by the full-range model at 3x the whole frame's scale.
SCAN_GRID = (3, 2)
SCAN_OVERLAP = 0.15
#: A small face is followed by searching a square this many face widths wide around it (the
#: face is then about 30 of the short-range model's 128 input pixels wide).
ROI_FACES = 4.0


class RangeDetector:
    """Faces at every distance for the cost of one short-range detector most of the time.

    Each frame runs:

    1. **one whole-frame pass**: the short-range model (`near`), or the full-range model (`far`)
       while a face too small for the short-range model was seen in the last `hold_s` seconds
       (the full-range model finds near faces too, so one pass covers both);
    2. **a scan step**, on a schedule: the whole frame with the full-range model, then each of
       the 3 x 2 tiles of the frame with the full-range model (faces down to a third of the
       size the whole frame shows it), one step per `scan_s / steps` seconds, so that the
       whole frame is searched for far and small faces once every `scan_s` seconds without a
       spike in any one frame (`stills`: every step on every frame, for photos, where each
       frame is a new scene and time does not matter);
    3. **a follow-up** of each face too small for the whole-frame passes (seen in the last
       `hold_s` s): the near model on a square of `ROI_FACES` face widths around it, every frame.

    The passes' faces are merged (the best-scoring box of overlapping ones), highest score first.

    Args:
        near: the detector run on every frame (short range).
        far: the long-range detector (full range) for the scan and for far faces.
        scan_s: seconds (frame time) for one complete scan; 0: no scan.
        hold_s: how long a face counts as present after it was last found (s).
        max_faces: at most this many faces per frame; the rest are counted in ``truncated``.
        stills: every frame is a new still image: scan it completely.

    Example:
        >>> detector = RangeDetector.from_settings(load_settings())  # doctest: +SKIP
        >>> detector.detect(frame)  # doctest: +SKIP
    """

    def __init__(
        self,
        near: FaceDetector,
        far: FaceDetector,
        scan_s: float = 2.0,
        hold_s: float = 0.5,
        max_faces: int = 50,
        stills: bool = False,
    ) -> None:
        if scan_s < 0:
            raise ValueError(f"scan_s must be >= 0 seconds, got {scan_s}")
        if hold_s < 0:
            raise ValueError(f"hold_s must be >= 0 seconds, got {hold_s}")
        if max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {max_faces}")
        self.near, self.far = near, far
        self.scan_s, self.hold_s, self.max_faces, self.stills = float(scan_s), float(hold_s), max_faces, stills
        self.model = near.model
        self.nms_iou = near.nms_iou
        self.log_truncation = True
        near.log_truncation = far.log_truncation = False  # said once, here, for the merged frame
        self._recent: list[tuple[float, list[float]]] = []  # (time, box) of the faces last found
        self._scan_due: float | None = None
        self._scan_step = 0
        self._plan: tuple[FaceDetector, list[tuple[int, int, int, int] | None], list[tuple[int, int, int, int]]] | None = None
        self.passes: dict[str, int] = {"near": 0, "far": 0, "scan": 0, "follow": 0}  # runs per kind, for the benchmark

    @classmethod
    def from_settings(cls, settings: Settings, *, stills: bool = False) -> RangeDetector | FaceDetector:
        """The detectors named by ``models.detector`` and ``models.far_detector`` as one
        `RangeDetector`, or the single `FaceDetector` when ``far_detector`` is empty."""
        near = FaceDetector.from_settings(settings)
        if not settings.models.far_detector:
            return near
        far = FaceDetector.from_settings(settings, name=settings.models.far_detector)
        det = settings.detector
        return cls(near, far, det.scan_s, settings.tracker.max_missed_s, det.max_faces, stills=stills)

    @property
    def score_threshold(self) -> float:
        return self.near.score_threshold

    @score_threshold.setter
    def score_threshold(self, value: float) -> None:
        self.near.score_threshold = value
        self.far.score_threshold = value

    def models(self) -> dict[str, Model]:
        """The models this detector runs, by stage name (for stats and bench)."""
        return {"detect": self.near.model, "detect_far": self.far.model}

    @staticmethod
    def tiles(height: int, width: int) -> list[tuple[int, int, int, int]]:
        """The scan's tiles of a frame, ``(x1, y1, x2, y2)``."""
        cols, rows = SCAN_GRID if width >= height else SCAN_GRID[::-1]
        tw = math.ceil(width / (cols - (cols - 1) * SCAN_OVERLAP))
        th = math.ceil(height / (rows - (rows - 1) * SCAN_OVERLAP))
        out = []
        for r in range(rows):
            y = 0 if rows == 1 else round(r * (height - th) / (rows - 1))
            for c in range(cols):
                x = 0 if cols == 1 else round(c * (width - tw) / (cols - 1))
                out.append((x, y, x + tw, y + th))
        return out

    def prepare(self, frame: Frame) -> None:
        """Choose this frame's passes (see the class docstring) and prepare the whole-frame one."""
        t, h, w = frame.t, frame.height, frame.width
        side = max(h, w)
        self._recent = [(seen, box) for seen, box in self._recent if t - seen <= self.hold_s]
        widths = [box[2] - box[0] for _, box in self._recent]
        base = self.far if any(wd < NEAR_MIN_FRACTION * side for wd in widths) else self.near
        steps: list[tuple[int, int, int, int] | None] = [None, *self.tiles(h, w)]
        scan: list[tuple[int, int, int, int] | None] = []
        if self.stills:
            scan = steps
        elif self.scan_s > 0 and (self._scan_due is None or t >= self._scan_due):
            step = steps[self._scan_step % len(steps)]
            self._scan_step += 1
            self._scan_due = t + self.scan_s / len(steps)
            scan = [step]
        if base is self.far:
            scan = [step for step in scan if step is not None]  # the whole frame is searched anyway
        follow = []
        for _, box in self._recent:
            wd = box[2] - box[0]
            if wd < FAR_MIN_FRACTION * side:
                half = ROI_FACES * wd / 2
                cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
                follow.append((int(cx - half), int(cy - half), int(math.ceil(cx + half)), int(math.ceil(cy + half))))
        self._plan = (base, scan, follow)
        base.prepare(frame)

    def detect(self, frame: Frame, *, preprocessed: bool = False) -> Detections:
        """Faces in `frame` from this frame's passes, merged, highest score first; see
        `FaceDetector.detect` for the result."""
        if not preprocessed or self._plan is None:
            self.prepare(frame)
        assert self._plan is not None
        base, scan, follow = self._plan
        self._plan = None
        found = [base.detect(frame, preprocessed=True)]
        self.passes["far" if base is self.far else "near"] += 1
        for step in scan:
            found.append(self.far.detect(frame, region=step))
            self.passes["scan"] += 1
        for region in follow:
            found.append(self.near.detect(frame, region=region))
            self.passes["follow"] += 1
        merged = self._merge(found)
        t = frame.t
        boxes = merged.boxes.tolist()
        # remember where the faces are; one not found this frame is kept for hold_s
        kept = [(seen, box) for seen, box in self._recent if all(_iou(box, b) < self.nms_iou for b in boxes)]
        self._recent = [(t, box) for box in boxes] + kept
        return merged

    def _merge(self, found: list[Detections]) -> Detections:
        found = [d for d in found if len(d)]
        truncated = max((d.truncated for d in found), default=0)
        if not found:
            return Detections.empty() if not truncated else Detections(*_empty_arrays(), truncated)
        if len(found) == 1 and len(found[0]) <= self.max_faces:
            return found[0]
        boxes = np.concatenate([d.boxes for d in found])
        scores = np.concatenate([d.scores for d in found])
        keypoints = np.concatenate([d.keypoints for d in found])
        order = np.argsort(-scores, kind="stable").tolist()
        box_list = boxes.tolist()
        keep: list[int] = []
        for i in order:
            if all(_iou(box_list[i], box_list[j]) < self.nms_iou for j in keep):
                keep.append(i)
        if len(keep) > self.max_faces:
            truncated = max(truncated, len(keep) - self.max_faces)
            keep = keep[: self.max_faces]
        if truncated and self.log_truncation:
            self.log_truncation = False
            _log_truncation(self.max_faces, truncated)
        return Detections(boxes[keep], scores[keep], keypoints[keep], truncated)


def _empty_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 6, 2), np.float32)


def _iou(a: list[float], b: list[float]) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
