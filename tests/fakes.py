"""Fakes at hardware boundaries only: the Pi camera and the Coral Edge TPU (neither is on a CI machine).

`FakeCameraSystem.module()` builds a stand-in for the ``picamera2`` package whose ``Picamera2``
class has the real method names and signatures, serves a real photo as the camera image and
records the calls, so tests can check the lifecycle the real device needs. Inject it with
``monkeypatch.setitem(sys.modules, "picamera2", system.module())``: the source under test then
takes exactly the code path it takes on a Pi.

`FakeCoral.host()` is what a host with a Coral shows edge-fer: libedgetpu in a library folder,
the accelerator in sysfs or /dev, and a delegate loader. Inject it with
``monkeypatch.setattr(edge_fer.runtime.edgetpu, "HOST", coral.host())``.
"""

from __future__ import annotations

import ctypes
import types
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_fer.runtime.edgetpu import EDGETPU_LIBRARY, EdgeTpuHost


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


#: ``TfLiteStatus (*Prepare)(TfLiteContext*, TfLiteDelegate*)``
_PREPARE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


class _TfLiteDelegate(ctypes.Structure):
    """TFLite's C ``TfLiteDelegate`` (tensorflow/lite/core/c/common.h), zero-padded at the end."""

    _fields_ = [
        ("data_", ctypes.c_void_p),
        ("Prepare", _PREPARE),
        ("CopyFromBufferHandle", ctypes.c_void_p),
        ("CopyToBufferHandle", ctypes.c_void_p),
        ("FreeBufferHandle", ctypes.c_void_p),
        ("flags", ctypes.c_int64),
        ("opaque_delegate_builder", ctypes.c_void_p),
        ("_reserved", ctypes.c_void_p * 8),
    ]


class FakeEdgeTpuDelegate:
    """A real TfLiteDelegate whose Prepare claims no node, behind the ``_get_native_delegate_pointer``
    method the interpreter calls on what ``load_delegate`` returns. The interpreter applies it
    exactly as it applies libedgetpu's; the graph then runs on the interpreter's own kernels."""

    def __init__(self, coral: FakeCoral) -> None:
        def prepare(_context: int | None, _delegate: int | None) -> int:
            coral.prepared += 1
            return 0  # kTfLiteOk

        self._prepare = _PREPARE(prepare)  # kept alive as long as the delegate
        self._struct = _TfLiteDelegate(Prepare=self._prepare)

    def _get_native_delegate_pointer(self) -> int:
        return ctypes.addressof(self._struct)


class FakeCoral:
    """A Coral Edge TPU as a Linux host shows it (see the module docstring).

    A compiled model's ``edgetpu-custom-op`` needs the real chip, so tests use an int8 model
    itself as the ``_edgetpu.tflite`` file: everything up to and including the interpreter
    applying the delegate is the real code path; the arithmetic runs on the CPU.

    Args:
        root: a scratch folder for the fake library, /dev and sysfs.
        library: libedgetpu is installed.
        usb: USB id of an attached USB Accelerator (``18d1:9302`` after its firmware is loaded,
            ``1a6e:089a`` before), or None.
        pcie: an M.2/PCIe card is present (``/dev/apex_0``).
        delegate_error: the delegate loader raises this, as the real one does when libedgetpu
            cannot open the device (``ValueError: Failed to load delegate from …``).

    Attributes:
        loads: library paths the loader was called with.
        prepared: how many times an interpreter applied a delegate (its Prepare call).
    """

    def __init__(
        self, root: Path, *, library: bool = True, usb: str | None = "18d1:9302", pcie: bool = False, delegate_error: Exception | None = None
    ) -> None:
        self.root = root
        self.delegate_error = delegate_error
        self.loads: list[str] = []
        self.prepared = 0
        (root / "lib").mkdir(parents=True, exist_ok=True)
        (root / "dev").mkdir(exist_ok=True)
        usb_dir = root / "sys" / "bus" / "usb" / "devices"
        hub = usb_dir / "usb1"  # a root hub is always there; it is not a Coral
        hub.mkdir(parents=True, exist_ok=True)
        (hub / "idVendor").write_text("1d6b\n")
        (hub / "idProduct").write_text("0002\n")
        if library:
            (root / "lib" / EDGETPU_LIBRARY).write_bytes(b"")
        if usb is not None:
            vendor, product = usb.split(":")
            device = usb_dir / "1-1"
            device.mkdir(exist_ok=True)
            (device / "idVendor").write_text(vendor + "\n")
            (device / "idProduct").write_text(product + "\n")
        if pcie:
            (root / "dev" / "apex_0").write_bytes(b"")

    def load_delegate(self, library: str, options: dict[str, Any] | None = None) -> FakeEdgeTpuDelegate:
        """``load_delegate(library, options)`` with the real one's signature."""
        self.loads.append(library)
        if self.delegate_error is not None:
            raise self.delegate_error
        return FakeEdgeTpuDelegate(self)

    def host(self) -> EdgeTpuHost:
        return EdgeTpuHost(
            library_globs=(str(self.root / "lib" / "libedgetpu.so.1*"),),
            dev_dir=self.root / "dev",
            usb_devices_dir=self.root / "sys" / "bus" / "usb" / "devices",
            load_delegate=self.load_delegate,
        )
