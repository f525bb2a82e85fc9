"""Interpreter loading: LiteRT (`ai_edge_litert`), then `tflite_runtime`, then `tensorflow.lite`.

`load_model` returns a `Model` that hides which runtime and delegate run it: stages call
``model.run(x)`` with an array of the input tensor's dtype and shape and get the outputs back.
"""

from __future__ import annotations

import ctypes.util
import glob
import importlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_fer.errors import ModelError

logger = logging.getLogger(__name__)

#: Import paths tried in order; each provides ``Interpreter`` and ``load_delegate``.
INTERPRETER_MODULES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite")
EDGETPU_LIBRARY = "libedgetpu.so.1"


def _interpreter_module() -> Any:
    errors = []
    for name in INTERPRETER_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
            continue
        return module if hasattr(module, "Interpreter") else module.experimental  # pragma: no cover
    raise ModelError(
        "no TFLite runtime is installed; `pip install ai-edge-litert` (Python >= 3.10) or "
        "`pip install tflite-runtime` (tried " + "; ".join(errors) + ")"
    )


def runtime_name() -> str:
    """Name and version of the interpreter package that `load_model` will use."""
    module = _interpreter_module()
    root = module.__name__.split(".")[0]
    try:
        from importlib.metadata import version

        dist = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime"}.get(root, root)
        return f"{dist} {version(dist)}"
    except Exception:  # noqa: BLE001 - version lookup is cosmetic
        return root


@dataclass(frozen=True)
class TensorInfo:
    """Shape, dtype and affine quantization (``real = (q - zero_point) * scale``) of a tensor."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.dtype in (np.int8, np.uint8) and self.scale > 0

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Float array → this tensor's dtype (rounding and clipping for int8/uint8)."""
        if not self.quantized:
            return x.astype(self.dtype, copy=False)
        info = np.iinfo(self.dtype)
        q = np.round(x / self.scale + self.zero_point)
        return np.clip(q, info.min, info.max).astype(self.dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        if not self.quantized:
            return q.astype(np.float32, copy=False)
        return (q.astype(np.float32) - self.zero_point) * np.float32(self.scale)


def _tensor_info(detail: dict[str, Any]) -> TensorInfo:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorInfo(
        index=int(detail["index"]),
        name=str(detail["name"]),
        shape=tuple(int(v) for v in detail["shape"]),
        dtype=np.dtype(detail["dtype"]),
        scale=float(scale),
        zero_point=int(zero_point),
    )


def edgetpu_available() -> tuple[bool, str]:
    """Whether the Edge TPU library and a device are present, and why not."""
    if ctypes.util.find_library("edgetpu") is None and not glob.glob("/usr/lib/*/libedgetpu.so.1*"):
        return False, f"{EDGETPU_LIBRARY} not found: install libedgetpu1-std (see firmware_config/coral/README.md)"
    if not (glob.glob("/dev/apex_*") or _usb_coral_present()):
        return False, "no Coral device: no /dev/apex_* (PCIe/M.2) and no USB accelerator (18d1:9302 / 1a6e:089a)"
    return True, "ok"


def _usb_coral_present() -> bool:
    for vendor_file in glob.glob("/sys/bus/usb/devices/*/idVendor"):
        try:
            vendor = Path(vendor_file).read_text().strip()
            product = (Path(vendor_file).parent / "idProduct").read_text().strip()
        except OSError:
            continue
        if (vendor, product) in (("18d1", "9302"), ("1a6e", "089a")):
            return True
    return False


class Model:
    """A loaded TFLite model with its tensors described.

    Args:
        path: the .tflite file.
        num_threads: CPU threads for XNNPACK (ignored by the Edge TPU).
        backend: ``cpu``, ``edgetpu`` or ``auto`` (Edge TPU when `path` has an ``_edgetpu``
            sibling and the device is present, else CPU).

    Raises:
        ModelError: the file is missing or not a valid model, or ``edgetpu`` was asked for and
            the library or device is missing (the message says how to fix it).
    """

    def __init__(self, path: Path | str, *, num_threads: int = 2, backend: str = "cpu") -> None:
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist; run `edge-fer models fetch`")
        module = _interpreter_module()
        delegates = []
        self.backend = "cpu"
        if backend in ("edgetpu", "auto"):
            tpu_path = path.with_name(path.stem + "_edgetpu" + path.suffix)
            ok, why = edgetpu_available()
            if backend == "edgetpu" and not ok:
                raise ModelError(f"Edge TPU requested but unavailable: {why}")
            if ok and tpu_path.is_file():
                try:
                    delegates.append(module.load_delegate(EDGETPU_LIBRARY))
                except (ValueError, OSError) as exc:
                    if backend == "edgetpu":
                        raise ModelError(f"cannot load the Edge TPU delegate {EDGETPU_LIBRARY}: {exc}") from exc
                    logger.warning("Edge TPU delegate failed (%s); using the CPU", exc)
                else:
                    path, self.backend = tpu_path, "edgetpu"
            elif backend == "edgetpu":
                raise ModelError(f"Edge TPU requested but {tpu_path.name} is missing; run models/compile_edgetpu.sh")
        try:
            self._interpreter = module.Interpreter(
                model_path=str(path),
                num_threads=num_threads if not delegates else None,
                experimental_delegates=delegates or None,
            )
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{path} is not a loadable TFLite model: {exc}") from exc
        self.path = path
        self.inputs = [_tensor_info(d) for d in self._interpreter.get_input_details()]
        self.outputs = [_tensor_info(d) for d in self._interpreter.get_output_details()]
        self.invoke_count = 0
        self.invoke_s_total = 0.0
        self.last_invoke_s = 0.0

    @property
    def input(self) -> TensorInfo:
        return self.inputs[0]

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """Set the inputs (already of each tensor's dtype and shape), invoke, return copies of
        the raw outputs in output-detail order. Raw invoke time is kept for the benchmark."""
        for info, x in zip(self.inputs, inputs):
            self._interpreter.set_tensor(info.index, x)
        start = time.perf_counter()
        self._interpreter.invoke()
        self.last_invoke_s = time.perf_counter() - start
        self.invoke_s_total += self.last_invoke_s
        self.invoke_count += 1
        return [self._interpreter.get_tensor(o.index) for o in self.outputs]

    def __repr__(self) -> str:
        return f"Model({self.path.name}, backend={self.backend}, input={self.input.shape} {self.input.dtype})"


def load_model(path: Path | str, *, num_threads: int = 2, backend: str = "auto") -> Model:
    """Load a model for `backend` (``auto``/``cpu``/``edgetpu``); see `Model`."""
    return Model(path, num_threads=num_threads, backend=backend)
