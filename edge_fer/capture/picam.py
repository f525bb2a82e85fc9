"""Raspberry Pi camera through picamera2 (imported only when this source is opened)."""

from __future__ import annotations

import importlib
import logging
import time
from pathlib import Path
from typing import Any

from edge_fer.capture.base import SOURCES, SourceBase
from edge_fer.config import SourceConfig
from edge_fer.errors import SourceError
from edge_fer.types import Frame

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "picamera2 is not installed: on Raspberry Pi OS run `sudo apt install python3-picamera2` and create the "
    "virtual environment with --system-site-packages (the Makefile does this when picamera2 is present), "
    "or `pip install 'edge-fer[pi]'`"
)


class Picamera2Source(SourceBase):
    """A libcamera camera through the real Picamera2 API.

    Lifecycle: ``Picamera2(camera_num)`` → ``create_video_configuration(main={"size", "format":
    "RGB888"})`` → ``configure`` → ``start`` → ``capture_array("main")`` → ``stop`` → ``close``.
    picamera2's ``RGB888`` format is laid out B, G, R in memory — OpenCV's BGR — so frames
    need no conversion.

    Args:
        camera_num: index of the camera (``picamera2:1`` for the second one).
        width, height, fps: requested mode (default 640×480 at 30 frames/s).
    """

    live = True
    finite = False

    def __init__(self, camera_num: int = 0, width: int | None = None, height: int | None = None, fps: float | None = None) -> None:
        self.camera_num = camera_num
        self.size = (width or 640, height or 480)
        self.nominal_fps = fps or 30.0
        self.name = f"picamera2:{camera_num}"
        self._camera: Any = None
        self._index = 0

    def open(self) -> None:
        try:
            module = importlib.import_module("picamera2")
        except ImportError as exc:
            raise SourceError(INSTALL_HINT) from exc
        try:
            camera = module.Picamera2(self.camera_num)
        except (IndexError, RuntimeError) as exc:
            raise SourceError(
                f"no camera {self.camera_num}: is the ribbon cable seated and the camera enabled? `rpicam-hello --list-cameras` ({exc})"
            ) from exc
        try:
            config = camera.create_video_configuration(
                main={"size": self.size, "format": "RGB888"},
                controls={"FrameRate": float(self.nominal_fps or 30.0)},
                buffer_count=2,
            )
            camera.configure(config)
            camera.start()
        except Exception as exc:  # picamera2 raises many types; none may escape as non-SourceError
            camera.close()
            raise SourceError(f"camera {self.camera_num} cannot start in {self.size[0]}x{self.size[1]}: {exc}") from exc
        self._camera = camera

    def read(self) -> Frame | None:
        if self._camera is None:
            raise SourceError(f"{self.name} is not open")
        try:
            pixels = self._camera.capture_array("main")
        except Exception as exc:  # a camera that vanished mid-run: let the capture thread reopen it
            raise SourceError(f"{self.name} stopped delivering frames: {exc}") from exc
        t = time.monotonic()
        frame = Frame(pixels[:, :, :3], t, self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        if self._camera is not None:
            camera, self._camera = self._camera, None
            try:
                camera.stop()
            finally:
                camera.close()


@SOURCES.register("picamera2")
def _picamera2(spec: str, cfg: SourceConfig, models_dir: Path) -> Picamera2Source:
    num = int(spec.split(":", 1)[1]) if ":" in spec else 0
    return Picamera2Source(num, cfg.width, cfg.height, cfg.fps)
