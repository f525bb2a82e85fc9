"""Fakes at hardware boundaries only: the Pi camera (there is none on a CI machine).

`FakeCameraSystem.module()` builds a stand-in for the ``picamera2`` package whose ``Picamera2``
class has the real method names and signatures, serves a real photo as the camera image and
records the calls, so tests can check the lifecycle the real device needs. Inject it with
``monkeypatch.setitem(sys.modules, "picamera2", system.module())``: the source under test then
takes exactly the code path it takes on a Pi.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import cv2
import numpy as np


class FakeCameraSystem:
    """What libcamera would see on a Pi.

    Args:
        image_path: a real photo served as every camera frame (BGR, like picamera2's RGB888).
        cameras: how many cameras are attached (``Picamera2(n)`` beyond them raises IndexError).

    Attributes:
        calls: the lifecycle calls, in order (``"init:0"``, ``"configure"``, …).
        busy: ``Picamera2()`` raises RuntimeError as when another process holds the camera.
        fail_captures: that many next ``capture_array`` calls raise (a camera that vanished).
    """

    def __init__(self, image_path: Path, cameras: int = 1) -> None:
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(image_path)
        self.image: np.ndarray = image
        self.cameras = cameras
        self.calls: list[str] = []
        self.busy = False
        self.fail_captures = 0
        self.configs: list[dict[str, Any]] = []

    def module(self) -> types.ModuleType:
        """A module object to put in ``sys.modules["picamera2"]``."""
        module = types.ModuleType("picamera2")
        module.Picamera2 = type("Picamera2", (FakePicamera2,), {"system": self})  # type: ignore[attr-defined]
        return module


class FakePicamera2:
    """`picamera2.Picamera2` with the same methods and signatures, backed by a `FakeCameraSystem`."""

    system: FakeCameraSystem

    def __init__(self, camera_num: int = 0, verbose_console: int | None = None, tuning: Any = None, allocator: Any = None) -> None:
        if camera_num >= self.system.cameras:
            raise IndexError("list index out of range")  # what picamera2 raises for a camera it did not detect
        if self.system.busy:
            raise RuntimeError("Failed to acquire camera: Device or resource busy")
        self.camera_num = camera_num
        self.config: dict[str, Any] | None = None
        self.started = False
        self.system.calls.append(f"init:{camera_num}")

    def create_video_configuration(
        self,
        main: dict[str, Any] | None = None,
        lores: dict[str, Any] | None = None,
        raw: dict[str, Any] | None = None,
        transform: Any = None,
        colour_space: Any = None,
        buffer_count: int = 6,
        controls: dict[str, Any] | None = None,
        display: str | None = "main",
        encode: str | None = "main",
        queue: bool = True,
        sensor: dict[str, Any] | None = None,
        use_case: str = "video",
    ) -> dict[str, Any]:
        self.system.calls.append("create_video_configuration")
        main = {"format": "XBGR8888", "size": (1280, 720), **(main or {})}  # picamera2's video defaults
        return {"use_case": use_case, "main": main, "buffer_count": buffer_count, "queue": queue, "controls": dict(controls or {})}

    def configure(self, camera_config: dict[str, Any] | str | None = None) -> None:
        assert isinstance(camera_config, dict), "pass the configuration object"
        self.config = camera_config
        self.system.configs.append(camera_config)
        self.system.calls.append("configure")

    def camera_configuration(self) -> dict[str, Any] | None:
        return self.config

    def start(self, config: dict[str, Any] | None = None, show_preview: bool | None = False) -> None:
        if self.config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True
        self.system.calls.append("start")

    def capture_array(self, name: str = "main", wait: float | None = None, signal_function: Any = None) -> np.ndarray:
        if not self.started or self.config is None:
            raise RuntimeError("Camera is not running")
        self.system.calls.append("capture_array")
        if self.system.fail_captures > 0:
            self.system.fail_captures -= 1
            raise RuntimeError("Camera frontend has timed out!")  # what a disconnected sensor looks like
        stream = self.config[name]
        width, height = stream["size"]
        pixels = cv2.resize(self.system.image, (width, height), interpolation=cv2.INTER_AREA)
        if stream["format"] in ("XRGB8888", "XBGR8888"):
            # 4 bytes per pixel; XRGB8888 is B, G, R, 255 in memory, XBGR8888 is R, G, B, 255.
            bgr = pixels if stream["format"] == "XRGB8888" else pixels[:, :, ::-1]
            return np.dstack([bgr, np.full((height, width), 255, np.uint8)])
        if stream["format"] == "BGR888":
            return np.ascontiguousarray(pixels[:, :, ::-1])  # R, G, B in memory
        assert stream["format"] == "RGB888", stream["format"]
        return pixels  # B, G, R in memory: OpenCV's order

    def stop(self) -> None:
        self.started = False
        self.system.calls.append("stop")

    def close(self) -> None:
        self.system.calls.append("close")
