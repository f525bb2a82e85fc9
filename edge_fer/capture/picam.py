"""The Raspberry Pi camera through picamera2 (imported only when the source is opened).

Named ``picam`` so that ``import picamera2`` inside it can never resolve to this module.
"""

from __future__ import annotations

import importlib
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_fer.capture.base import SOURCES, SourceBase, camera_index
from edge_fer.config import SourceConfig
from edge_fer.errors import SourceError
from edge_fer.types import Frame

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "picamera2 is not installed: on Raspberry Pi OS `sudo apt install python3-picamera2` and create the "
    "venv with --system-site-packages (picamera2 needs the system's libcamera bindings), or `pip install edge-fer[pi]`"
)

DEFAULT_SIZE = (640, 480)
DEFAULT_FPS = 30.0


class Picamera2Source(SourceBase):
    """A libcamera camera (Pi ribbon cameras) through the real Picamera2 API.

    Lifecycle, as picamera2 wants it: ``Picamera2(camera_num)`` →
    ``create_video_configuration(main={"size": (w, h), "format": "RGB888"}, controls={"FrameRate": fps})``
    → ``configure`` → ``start`` → ``capture_array("main")``… → ``stop`` → ``close``.
    picamera2's ``RGB888`` is laid out B, G, R in memory (its manual, appendix "Pixel and image
    formats"): OpenCV's BGR, so frames need no conversion.

    Args:
        camera_num: index of the camera (``picamera2:1`` for the second one).
        width, height: requested size (default 640×480), pixels.
        fps: requested frame rate (default 30), frames/s.
    """

    live = True
    finite = False

    def __init__(self, camera_num: int = 0, width: int | None = None, height: int | None = None, fps: float | None = None) -> None:
        if camera_num < 0:
            raise ValueError(f"camera_num must be >= 0, got {camera_num}")
        self.camera_num = camera_num
        self.size = (width or DEFAULT_SIZE[0], height or DEFAULT_SIZE[1])
        self.nominal_fps: float | None = float(fps or DEFAULT_FPS)
        self.name = f"picamera2:{camera_num}"
        self._camera: Any = None
        self._index = 0

    def open(self) -> None:
        self.close()
        try:
            # Lazily, and by name: importing picamera2 probes libcamera, which we only want
            # when a Pi camera was asked for.
            module = importlib.import_module("picamera2")
        except ImportError as exc:
            raise SourceError(f"{INSTALL_HINT} ({exc})") from exc
        try:
            camera = module.Picamera2(self.camera_num)
        except IndexError as exc:  # picamera2 indexes its list of detected cameras
            raise SourceError(
                f"no camera {self.camera_num} found by libcamera: is the ribbon cable seated the right way round and the "
                f"camera enabled? List cameras with `rpicam-hello --list-cameras` ({exc})"
            ) from exc
        except RuntimeError as exc:  # e.g. "Failed to acquire camera: Device or resource busy"
            raise SourceError(f"camera {self.camera_num} cannot be acquired: is another program (or another edge-fer) using it? ({exc})") from exc
        try:
            config = camera.create_video_configuration(
                main={"size": self.size, "format": "RGB888"},
                controls={"FrameRate": self.nominal_fps},
            )
            camera.configure(config)
            camera.start()
        except Exception as exc:  # picamera2 raises many types here; none may escape as non-SourceError
            try:
                camera.close()
            except Exception:  # noqa: BLE001 - the configure failure is the one to report
                logger.debug("closing %s after a failed start failed", self.name, exc_info=True)
            raise SourceError(
                f"camera {self.camera_num} cannot start at {self.size[0]}x{self.size[1]} {self.nominal_fps:g} frames/s: {exc}; "
                "try another size or frame rate (source.width, source.height, source.fps)"
            ) from exc
        self._camera = camera

    def read(self) -> Frame | None:
        if self._camera is None:
            raise SourceError(f"{self.name} is not open")
        try:
            pixels = self._camera.capture_array("main")
        except Exception as exc:  # a camera that vanished mid-run: the capture thread reopens it
            raise SourceError(f"{self.name} stopped delivering frames: {exc}") from exc
        t = time.monotonic()
        if pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
            raise SourceError(f"{self.name} delivered an array of shape {pixels.shape}, expected (H, W, 3) RGB888")
        # XRGB8888 (4 bytes, B G R X) would also be BGR in its first three channels.
        frame = Frame(np.ascontiguousarray(pixels[:, :, :3], dtype=np.uint8), t, self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        if self._camera is None:
            return
        camera, self._camera = self._camera, None
        try:
            camera.stop()
        except Exception:  # noqa: BLE001 - close must release the camera even when stop fails
            logger.debug("stopping %s failed", self.name, exc_info=True)
        finally:
            camera.close()


@SOURCES.register("picamera2")
def _picamera2(spec: str, cfg: SourceConfig, models_dir: Path) -> Picamera2Source:
    return Picamera2Source(camera_index(spec), cfg.width, cfg.height, cfg.fps)
