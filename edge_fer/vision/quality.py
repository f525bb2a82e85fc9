"""Face-quality gate: is this face good enough for its expression to count in the statistics?

A far, blurred, dark or turned-away face is still a face (it is counted), but the classifier
reads it badly and, worse, with a bias (a blurred face reads happy more often than it is): its
probabilities must not move the published shares. The gate measures, per classified face, on
the very crop the classifier sees (cheap: one Laplacian of a 48×48 image, microseconds):

- ``face_px``: the width of the detector's box in frame pixels (resolution of the face);
- ``sharpness``: the smallest over four directions of the standard deviation of the second
  difference, divided by the standard deviation of the crop, at the model's input size. Fixed
  crop size makes it independent of the face's size in the frame, the division independent of
  brightness and contrast; defocus, motion blur in any direction and upscaled tiny faces lower it;
- ``brightness`` (mean grey) and ``contrast`` (grey standard deviation): exposure;
- head ``yaw`` and ``pitch`` from the face mesh, when it ran.

>>> import numpy as np
>>> gate = QualityGate(min_face_px=32)
>>> crop = (np.indices((48, 48)).sum(0) % 2 * 255).astype(np.uint8)
>>> gate.assess(measure_crop(crop), face_px=20.0).reasons
('small',)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from edge_fer.config import QualityConfig


@dataclass(frozen=True)
class CropMeasures:
    """What the gate reads from a face crop (grey, at the model's input size)."""

    sharpness: float
    brightness: float
    contrast: float


#: Second differences along four directions (horizontal, vertical, both diagonals).
_SECOND_DIFFERENCES = (
    np.array([[1, -2, 1]], np.float32),
    np.array([[1], [-2], [1]], np.float32),
    np.diag(np.array([1, -2, 1], np.float32)),
    np.fliplr(np.diag(np.array([1, -2, 1], np.float32))).copy(),
)


def measure_crop(crop: np.ndarray) -> CropMeasures:
    """Sharpness, brightness and contrast of a grey (or BGR) ``uint8`` face crop.

    Sharpness is the smallest, over four directions, of ``std(second difference) / std(crop)``:
    defocus lowers all four, motion blur the one along the motion, so both show (the Laplacian,
    which sums directions, barely sees a horizontal smear). Measured at 48×48: FER2013 faces
    0.30-0.64 (5th-95th percentile, median 0.44), the demo footage's faces (175-230 px wide,
    aligned down) 0.24-0.38; a defocus blur of σ 1 px brings FER2013 faces to 0.14 (median), a
    5 px motion blur to 0.13, a 32 px face upscaled to 0.20; JPEG at quality 15 to 0.36, noise
    raises it.
    """
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    mean, std = cv2.meanStdDev(grey)
    contrast = float(std[0, 0])
    g = grey.astype(np.float32)
    sharpness = min(float(cv2.meanStdDev(cv2.filter2D(g, -1, k, borderType=cv2.BORDER_REPLICATE))[1][0, 0]) for k in _SECOND_DIFFERENCES)
    return CropMeasures(sharpness=sharpness / max(contrast, 1.0), brightness=float(mean[0, 0]), contrast=contrast)


@dataclass(frozen=True)
class FaceQuality:
    """The gate's verdict on one face: its measures and the reasons it failed (empty: passed)."""

    measures: CropMeasures
    face_px: float
    reasons: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.reasons


class QualityGate:
    """Thresholds below which a face is `low_quality`: counted, kept out of shares.

    Args:
        min_face_px: faces narrower than this in the frame (detector box, px).
        min_sharpness: minimum ``std(Laplacian) / std(crop)`` at the model's input size.
        min_brightness, max_brightness: accepted mean grey level of the crop (0-255).
        min_contrast: minimum grey standard deviation of the crop (a flat, washed-out face).
        max_yaw_deg, max_pitch_deg: largest head turn (from the face mesh; not checked
            without it).
        enabled: False passes every face (and `assess` reports no reasons).

    Raises:
        ValueError: a threshold out of range, named with its value.
    """

    def __init__(
        self,
        min_face_px: float = 0.0,
        min_sharpness: float = 0.0,
        min_brightness: float = 0.0,
        max_brightness: float = 255.0,
        min_contrast: float = 0.0,
        max_yaw_deg: float = 90.0,
        max_pitch_deg: float = 90.0,
        enabled: bool = True,
    ) -> None:
        for name, value in (("min_face_px", min_face_px), ("min_sharpness", min_sharpness), ("min_contrast", min_contrast)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number >= 0, got {value}")
        if not 0 <= min_brightness <= max_brightness <= 255:
            raise ValueError(f"need 0 <= min_brightness <= max_brightness <= 255, got {min_brightness}, {max_brightness}")
        for name, value in (("max_yaw_deg", max_yaw_deg), ("max_pitch_deg", max_pitch_deg)):
            if not 0 < value <= 90:
                raise ValueError(f"{name} must be in (0, 90], got {value}")
        self.min_face_px = float(min_face_px)
        self.min_sharpness = float(min_sharpness)
        self.min_brightness = float(min_brightness)
        self.max_brightness = float(max_brightness)
        self.min_contrast = float(min_contrast)
        self.max_yaw_deg = float(max_yaw_deg)
        self.max_pitch_deg = float(max_pitch_deg)
        self.enabled = enabled

    @classmethod
    def from_config(cls, config: QualityConfig) -> QualityGate:
        return cls(
            min_face_px=config.min_face_px,
            min_sharpness=config.min_sharpness,
            min_brightness=config.min_brightness,
            max_brightness=config.max_brightness,
            min_contrast=config.min_contrast,
            max_yaw_deg=config.max_yaw_deg,
            max_pitch_deg=config.max_pitch_deg,
            enabled=config.enabled,
        )

    def assess(self, measures: CropMeasures, face_px: float, head_pose: tuple[float, float, float] | None = None) -> FaceQuality:
        """The verdict for one face: `measures` of its crop, its box width `face_px` in the
        frame, and its ``(yaw, pitch, roll)`` in degrees when the mesh gave one."""
        reasons: list[str] = []
        if self.enabled:
            if face_px < self.min_face_px:
                reasons.append("small")
            if measures.sharpness < self.min_sharpness:
                reasons.append("blurred")
            if not self.min_brightness <= measures.brightness <= self.max_brightness:
                reasons.append("exposure")
            if measures.contrast < self.min_contrast:
                reasons.append("flat")
            if head_pose is not None and (abs(head_pose[0]) > self.max_yaw_deg or abs(head_pose[1]) > self.max_pitch_deg):
                reasons.append("turned")
        return FaceQuality(measures=measures, face_px=float(face_px), reasons=tuple(reasons))

    def __repr__(self) -> str:
        return (
            f"QualityGate(enabled={self.enabled}, min_face_px={self.min_face_px}, min_sharpness={self.min_sharpness}, "
            f"brightness=[{self.min_brightness}, {self.max_brightness}], min_contrast={self.min_contrast}, "
            f"max_yaw_deg={self.max_yaw_deg}, max_pitch_deg={self.max_pitch_deg})"
        )
