"""edge-fer: on-device facial emotion analysis that publishes anonymous statistics over MQTT."""

from __future__ import annotations

__version__ = "0.1.0"

#: FER2013 class order; every emotion model in the manifest maps its labels onto these names.
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
