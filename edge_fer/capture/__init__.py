"""Frame sources (cameras, streams, files, folders, the demo) and the capture thread.

The implementations register themselves in `SOURCES` when imported here; they import
`edge_fer.capture.base` and never this module, and `base` imports none of them.
"""

from __future__ import annotations

from pathlib import Path

from edge_fer.capture import folder, opencv, picam  # noqa: F401  (each registers its source kinds)
from edge_fer.capture.base import SOURCES, SPEC_HELP, FrameSource, SourceBase, classify_spec, is_still_spec, redact
from edge_fer.capture.threaded import CaptureThread
from edge_fer.config import SourceConfig

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


def source_from_spec(spec: str, cfg: SourceConfig, models_dir: Path) -> FrameSource:
    """Build (not open) the source named by `spec`.

    Args:
        spec: see `SPEC_HELP` (``cfg.spec`` is ignored, so a CLI ``--source`` can override it).
        cfg: requested size, frame rate, looping.
        models_dir: where the demo footage is provisioned.

    Raises:
        SourceError: the spec names nothing that exists; the message lists the accepted forms.
        ModelError: ``demo`` when the footage is not provisioned (`edge-fer models fetch`).
    """
    return SOURCES.get(classify_spec(spec))(spec.strip(), cfg, models_dir)
