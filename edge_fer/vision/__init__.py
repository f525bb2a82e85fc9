"""Pure vision stages: face detection, alignment, emotion classification and its calibration, face mesh and its geometry, affect.

Arrays in, values out: no threads, no clocks, no I/O besides loading a model in `from_settings`.
"""

from __future__ import annotations

from edge_fer.vision.align import align_face, crop_for_model
from edge_fer.vision.blazeface import FaceDetector
from edge_fer.vision.emotion import EmotionClassifier
from edge_fer.vision.landmarks import FaceLandmarker

__all__ = ["EmotionClassifier", "FaceDetector", "FaceLandmarker", "align_face", "crop_for_model"]
