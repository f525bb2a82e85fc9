"""Frame sources (cameras, streams, files, folders, the demo) and the capture thread."""

from __future__ import annotations

from edge_fer.capture.base import SOURCES, SPEC_HELP, FrameSource, SourceBase, classify_spec, is_still_spec, redact, source_from_spec
from edge_fer.capture.threaded import CaptureThread

__all__ = [
    "SOURCES",
    "SPEC_HELP",
    "CaptureThread",
    "FrameSource",
    "SourceBase",
    "classify_spec",
    "is_still_spec",
    "redact",
    "source_from_spec",
]
