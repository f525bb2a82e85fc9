"""Fakes at hardware boundaries only: a Pi camera (there is none on a CI machine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np


class FakePicamera2:
    """Stands in for `picamera2.Picamera2` with the same methods; serves a real photo.

    Records the calls so tests can check the lifecycle the real device needs.
    """

    calls: list[str] = []
    image_path: Path | None = None
    cameras = 1

    def __init__(self, camera_num: int = 0) -> None:
        if camera_num >= self.cameras:
            raise IndexError("list index out of range")  # what picamera2 raises for a missing camera
        self.camera_num = camera_num
        self.config: dict[str, Any] | None = None
        FakePicamera2.calls.append(f"init:{camera_num}")

    def create_video_configuration(self, main: dict[str, Any], controls: dict[str, Any] | None = None, buffer_count: int = 6) -> dict[str, Any]:
        FakePicamera2.calls.append("create_video_configuration")
        return {"main": dict(main), "controls": dict(controls or {}), "buffer_count": buffer_count}

    def configure(self, config: dict[str, Any]) -> None:
        assert config["main"]["format"] == "RGB888"
        self.config = config
        FakePicamera2.calls.append("configure")

    def start(self) -> None:
        assert self.config is not None, "configure before start"
        FakePicamera2.calls.append("start")

    def capture_array(self, name: str = "main") -> np.ndarray:
        assert self.config is not None
        w, h = self.config["main"]["size"]
        image = cv2.imread(str(self.image_path)) if self.image_path else np.zeros((h, w, 3), np.uint8)
        FakePicamera2.calls.append("capture_array")
        # picamera2 RGB888 is B, G, R in memory (OpenCV order); XRGB8888 would add a 4th byte.
        return cv2.resize(image, (w, h))

    def stop(self) -> None:
        FakePicamera2.calls.append("stop")

    def close(self) -> None:
        FakePicamera2.calls.append("close")
