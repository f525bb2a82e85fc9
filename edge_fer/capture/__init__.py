"""Frame sources (cameras, streams, files, folders, the demo) and the capture thread."""

from __future__ import annotations

from edge_fer.capture.base import SOURCES, FrameSource, open_source, redact, source_from_spec
from edge_fer.capture.threaded import CaptureThread

__all__ = ["SOURCES", "CaptureThread", "FrameSource", "open_source", "redact", "source_from_spec"]
