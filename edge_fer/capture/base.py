"""The `FrameSource` protocol, the registry of source kinds (`SOURCES`), and parsing of source specs."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

from edge_fer.config import SourceConfig
from edge_fer.errors import SourceError
from edge_fer.registry import Registry
from edge_fer.types import Frame

SPEC_HELP = (
    "accepted sources: picamera2[:N] (Pi camera N), v4l2:N or a bare camera index N (/dev/videoN), "
    "a video file, an image or a folder of images, rtsp://… or http(s)://… streams, demo (bundled footage)"
)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https")


@runtime_checkable
class FrameSource(Protocol):
    """A camera, stream, file or folder. Lifecycle: ``open → read… → close`` (or ``with``).

    Attributes:
        name: for logs and stats; never contains credentials.
        nominal_fps: the source's own frame rate when known (frames/s).
        finite: True when `read` eventually returns None (end of a file or folder).
        live: True for cameras and streams (frames cannot wait: the capture thread keeps only
            the newest), False for files and folders (they can be paced, or read frame by frame).
    """

    name: str
    nominal_fps: float | None
    finite: bool
    live: bool

    def open(self) -> None:
        """Acquire the device or file. Raises `SourceError` saying what to do when it fails."""

    def read(self) -> Frame | None:
        """The next frame; None at the end of a finite source. Raises `SourceError` on failure."""

    def close(self) -> None:
        """Release the device; safe to call twice, and after a failed `open`."""

    def __enter__(self) -> FrameSource: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None: ...


class SourceBase:
    """Context-manager plumbing shared by the concrete sources (``with source: …`` opens and closes)."""

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

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


#: ``factory(spec, cfg, models_dir)`` builds an unopened source for one kind of spec.
SourceFactory = Callable[[str, SourceConfig, Path], FrameSource]
SOURCES: Registry[SourceFactory] = Registry("frame source")


#: A path segment that carries a credential, as some cameras take it in the path itself
#: (``rtsp://cam/user=admin_password=secret_channel=1_stream=0.sdp``).
_SECRET_IN_PATH = re.compile(r"(?i)(user(name)?|usr|login|pwd|pass(wd|word)?|token|(api_?)?key|secret|auth\w*|sig(nature)?|credentials?)=")


def redact(spec: str) -> str:
    """`spec` safe for logs, payloads, stats and printed settings: the one place that hides
    credentials in a source or sink URL.

    Hidden: the whole ``user:password@`` part; the value of every query parameter (IP cameras take
    ``?user=…&pwd=…``, ``?token=…``, ``?key=…`` there, under names no list can foresee); a path
    segment holding ``password=``, ``user=``, ``token=``… (cameras that take credentials in the
    path); the fragment. Kept: scheme, host, port, the rest of the path and the query's keys, so
    a log still tells which camera and which stream. Anything that is not a URL is returned as is.

    >>> redact("rtsp://admin:secret@10.0.0.2:554/live?channel=1&pwd=secret")
    'rtsp://***@10.0.0.2:554/live?channel=***&pwd=***'
    """
    if "://" not in spec:
        return spec
    try:
        parts = urlsplit(spec)
        netloc = parts.netloc
    except ValueError:  # e.g. an unbalanced IPv6 bracket: show nothing past the scheme
        return spec.split("://", 1)[0] + "://***"
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    path = "/".join("***" if _SECRET_IN_PATH.search(segment) else segment for segment in parts.path.split("/"))
    query = "&".join(f"{item.split('=', 1)[0]}=***" if "=" in item else "***" for item in re.split(r"[&;]", parts.query)) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, path, query, ""))


_PICAMERA2 = re.compile(r"picamera2(?::(\d+))?")
_V4L2 = re.compile(r"(?:v4l2:)?(?:/dev/video)?(\d+)")


def is_still_spec(spec: str) -> bool:
    """An image or a folder of images: unrelated photos, each searched completely for faces."""
    try:
        return classify_spec(spec) == "folder"
    except SourceError:
        return False  # said when the source is opened, with the exit code for it


def classify_spec(spec: str) -> str:
    """The registry key for a source spec (see `SPEC_HELP`).

    Raises:
        SourceError: the spec is no known form and names no existing file or folder.
    """
    spec = spec.strip()
    if not spec:
        raise SourceError(f"empty source spec; {SPEC_HELP}")
    if spec == "demo":
        return "demo"
    if _PICAMERA2.fullmatch(spec):
        return "picamera2"
    if _V4L2.fullmatch(spec):
        return "v4l2"
    scheme = spec.split("://", 1)[0].lower() if "://" in spec else None
    if scheme in STREAM_SCHEMES:
        return "stream"
    if scheme is not None or spec.startswith("v4l2:") or spec.startswith("picamera2"):
        raise SourceError(f"source {redact(spec)!r} is not a valid source spec; {SPEC_HELP}")
    path = Path(spec).expanduser()
    if path.is_dir():
        return "folder"
    if path.is_file():
        return "folder" if path.suffix.lower() in IMAGE_SUFFIXES else "file"
    raise SourceError(f"source {spec!r}: no such file, folder or device; {SPEC_HELP}")


def camera_index(spec: str) -> int:
    """The device number of a ``picamera2[:N]`` or ``v4l2:N`` / ``N`` / ``/dev/videoN`` spec."""
    match = _PICAMERA2.fullmatch(spec.strip()) or _V4L2.fullmatch(spec.strip())
    if match is None:
        raise SourceError(f"source {spec!r} names no camera; {SPEC_HELP}")
    return int(match.group(1) or 0)
