"""Pure vision stages: face detection, alignment, emotion classification, affect mapping."""

from __future__ import annotations

from edge_fer.vision.affect import valence_arousal
from edge_fer.vision.align import align_face
from edge_fer.vision.blazeface import FaceDetector
from edge_fer.vision.emotion import EmotionClassifier

__all__ = ["EmotionClassifier", "FaceDetector", "align_face", "valence_arousal"]
