"""edge-fer: on-device facial emotion analysis that publishes anonymous statistics over MQTT.

As a library, ten lines (the README has more)::

    import edge_fer

    for face in edge_fer.analyze_image("photo.jpg"):
        print(face.emotion, face.confidence, face.box)

    with edge_fer.Analyzer("picamera2") as analyzer:  # or "v4l2:0", "clip.mp4", "demo"
        for result in analyzer:
            for face in result.faces:
                print(face.track_id, face.emotion)

The names below are imported on first use, so that ``import edge_fer`` (and the ``edge-fer``
command) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: FER2013 class order; every emotion model in the manifest maps its labels onto these names.
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

#: Public name → the module that defines it.
_EXPORTS = {
    "analyze_image": "edge_fer.api",
    "Analyzer": "edge_fer.api",
    "Face": "edge_fer.api",
    "FrameAnalysis": "edge_fer.api",
    "WindowSummary": "edge_fer.types",
    "TrackSummary": "edge_fer.types",
    "MicroExpression": "edge_fer.types",
    "Settings": "edge_fer.config",
    "load_settings": "edge_fer.config",
    "EdgeFerError": "edge_fer.errors",
    "ConfigError": "edge_fer.errors",
    "SourceError": "edge_fer.errors",
    "ModelError": "edge_fer.errors",
}

__all__ = [
    "EMOTIONS",
    "Analyzer",
    "ConfigError",
    "EdgeFerError",
    "Face",
    "FrameAnalysis",
    "MicroExpression",
    "ModelError",
    "Settings",
    "SourceError",
    "TrackSummary",
    "WindowSummary",
    "__version__",
    "analyze_image",
    "load_settings",
]

if TYPE_CHECKING:
    from edge_fer.api import Analyzer, Face, FrameAnalysis, analyze_image
    from edge_fer.config import Settings, load_settings
    from edge_fer.errors import ConfigError, EdgeFerError, ModelError, SourceError
    from edge_fer.types import MicroExpression, TrackSummary, WindowSummary


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edge_fer' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
