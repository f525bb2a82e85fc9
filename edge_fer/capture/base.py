"""The `FrameSource` protocol, the registry of source kinds, and parsing of source specs."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

from edge_fer.config import SourceConfig
from edge_fer.errors import SourceError
from edge_fer.registry import Registry
from edge_fer.types import Frame

SPEC_HELP = (
    "accepted sources: picamera2[:N], v4l2:N (or a bare camera index N), a video file, a folder of images, rtsp://… or http(s)://… streams, demo"
)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@runtime_checkable
class FrameSource(Protocol):
    """A camera, stream, file or folder. Lifecycle: ``open → read… → close`` (or ``with``).

    Attributes:
        name: for logs; never contains credentials.
        nominal_fps: the source's own frame rate when known.
        finite: True when `read` eventually returns None (end of file or folder).
        live: True for cameras and streams (frames cannot wait; the capture thread keeps only
            the newest), False for files (they can be paced or read frame by frame).
    """

    name: str
    nominal_fps: float | None
    finite: bool
    live: bool

    def open(self) -> None:
        """Acquire the device or file. Raises `SourceError` with what to do when it fails."""

    def read(self) -> Frame | None:
        """The next frame, None at the end of a finite source. Raises `SourceError` on failure."""

    def close(self) -> None:
        """Release the device; safe to call twice."""

    def __enter__(self) -> Any: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None: ...


class SourceBase:
    """Context-manager plumbing shared by the concrete sources."""

    name = "source"
    nominal_fps: float | None = None
    finite = False
    live = True

    def open(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def read(self) -> Frame | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> SourceBase:
        self.open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


SourceFactory = Callable[[str, SourceConfig, Path], FrameSource]
SOURCES: Registry[SourceFactory] = Registry("frame source")


def redact(url: str) -> str:
    """`url` without its user:password part, for logs and stats."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def classify_spec(spec: str) -> str:
    """The registry key for a source spec (see `SPEC_HELP`)."""
    spec = spec.strip()
    if spec == "demo":
        return "demo"
    if re.fullmatch(r"picamera2(:\d+)?", spec):
        return "picamera2"
    if re.fullmatch(r"(v4l2:)?\d+", spec):
        return "v4l2"
    if re.match(r"(rtsp|rtsps|http|https)://", spec):
        return "stream"
    path = Path(spec).expanduser()
    if path.is_dir():
        return "folder"
    if path.is_file():
        return "folder" if path.suffix.lower() in IMAGE_SUFFIXES else "file"
    raise SourceError(f"source {spec!r}: no such file, folder or device; {SPEC_HELP}")


def source_from_spec(spec: str, cfg: SourceConfig, models_dir: Path) -> FrameSource:
    """Build (not open) the source named by `spec`.

    Raises:
        SourceError: the spec names nothing that exists; the message lists the accepted forms.
    """
    # The concrete modules register themselves on import.
    from edge_fer.capture import folder, opencv, picam  # noqa: F401

    return SOURCES.get(classify_spec(spec))(spec.strip(), cfg, models_dir)


def open_source(cfg: SourceConfig, models_dir: Path) -> FrameSource:
    """Build and open the configured source."""
    source = source_from_spec(cfg.spec, cfg, models_dir)
    source.open()
    return source
