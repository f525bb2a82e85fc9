"""OpenCV sources: V4L2/USB cameras, video files (and the demo footage), RTSP/HTTP streams."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2
import numpy as np

from edge_fer.capture.base import SOURCES, SourceBase, redact
from edge_fer.config import SourceConfig
from edge_fer.errors import SourceError
from edge_fer.models import asset_path
from edge_fer.types import Frame

logger = logging.getLogger(__name__)


def to_bgr(pixels: np.ndarray) -> np.ndarray:
    """Any decoded image (grey, BGR, BGRA) → ``(H, W, 3)`` uint8 BGR."""
    if pixels.ndim == 2:
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
    if pixels.shape[2] == 4:
        return cv2.cvtColor(pixels, cv2.COLOR_BGRA2BGR)
    if pixels.dtype != np.uint8:
        pixels = cv2.convertScaleAbs(pixels)
    return pixels


class OpenCVSource(SourceBase):
    """A `cv2.VideoCapture` on a camera index, a file or a stream URL.

    Args:
        target: camera index (int), file path or URL.
        cfg: requested width/height/fps for cameras.
        live: cameras and streams are live (time = arrival time); files are not (time = the
            file's own presentation time, so pacing and windows follow the footage).
        loop: for files: restart at the end; `Frame.t` keeps increasing across loops.
        name: for logs (credentials already removed).
    """

    def __init__(self, target: int | str, cfg: SourceConfig, *, live: bool, loop: bool = False, name: str | None = None) -> None:
        self.target = target
        self.cfg = cfg
        self.live = live
        self.loop = loop
        self.finite = not live and not loop
        self.name = name or str(target)
        self.nominal_fps: float | None = None
        self._cap: cv2.VideoCapture | None = None
        self._index = 0
        self._file_index = 0
        self._t_base = 0.0

    def open(self) -> None:
        if isinstance(self.target, int):
            device = Path(f"/dev/video{self.target}")
            if not device.exists():
                raise SourceError(f"camera {device} not found: is it connected and enabled? List cameras with `v4l2-ctl --list-devices`")
            cap = cv2.VideoCapture(self.target, cv2.CAP_V4L2)
        else:
            cap = cv2.VideoCapture(self.target)
        if not cap.isOpened():
            cap.release()
            hint = "check the URL, the network and the credentials" if self.live else "is it a video file OpenCV can decode?"
            raise SourceError(f"cannot open source {self.name}: {hint}")
        if self.live:
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            if self.cfg.width and self.cfg.height:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.cfg.width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.cfg.height)
            if self.cfg.fps:
                cap.set(cv2.CAP_PROP_FPS, self.cfg.fps)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.nominal_fps = fps if 0 < fps < 1000 else None
        self._cap = cap
        self._file_index = 0

    def read(self) -> Frame | None:
        if self._cap is None:
            raise SourceError(f"source {self.name} is not open")
        ok, pixels = self._cap.read()
        if not ok or pixels is None:
            if self.live:
                raise SourceError(f"source {self.name} stopped delivering frames")
            if self._file_index == 0:
                raise SourceError(f"{self.name} has no decodable frame")
            if not self.loop:
                return None
            # Loop: rewind, and keep time running on from the end of the previous pass.
            self._t_base += self._file_index / (self.nominal_fps or 25.0)
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._file_index = 0
            ok, pixels = self._cap.read()
            if not ok or pixels is None:
                raise SourceError(f"{self.name} cannot be rewound")
        if self.live:
            t = time.monotonic()
        else:
            t = self._t_base + self._file_index / (self.nominal_fps or 25.0)
        frame = Frame(to_bgr(pixels), t, self._index)
        self._index += 1
        self._file_index += 1
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


@SOURCES.register("v4l2")
def _camera(spec: str, cfg: SourceConfig, models_dir: Path) -> OpenCVSource:
    index = int(spec.split(":", 1)[-1])
    return OpenCVSource(index, cfg, live=True, name=f"v4l2:{index}")


@SOURCES.register("stream")
def _stream(spec: str, cfg: SourceConfig, models_dir: Path) -> OpenCVSource:
    return OpenCVSource(spec, cfg, live=True, name=redact(spec))


@SOURCES.register("file")
def _file(spec: str, cfg: SourceConfig, models_dir: Path) -> OpenCVSource:
    path = Path(spec).expanduser()
    return OpenCVSource(str(path), cfg, live=False, loop=bool(cfg.loop), name=str(path))


@SOURCES.register("demo")
def _demo(spec: str, cfg: SourceConfig, models_dir: Path) -> OpenCVSource:
    path = asset_path(models_dir, "demo_video")  # ModelError (exit 4) when not provisioned
    loop = True if cfg.loop is None else cfg.loop
    return OpenCVSource(str(path), cfg, live=False, loop=loop, name="demo")
