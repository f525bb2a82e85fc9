"""Interpreter loading: LiteRT (`ai_edge_litert`), then `tflite_runtime`, then `tensorflow.lite`.

`load_model` returns a `Model` that hides which runtime and delegate run it: stages call
``model.run(x)`` with an array of the input tensor's dtype and shape and get the outputs back.
A stage on the hot path writes its input straight into ``model.input_buffer()`` (the
interpreter's own tensor memory when the runtime allows it) and calls ``model.run()``, so no
input is copied.
"""

from __future__ import annotations

import ctypes.util
import glob
import importlib
import logging
import time
import weakref
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

    def pixel_table(self, scale: float, offset: float) -> np.ndarray:
        """``(256,)`` table of this tensor's value for each uint8 pixel level ``p``: ``p * scale
        + offset``, quantized when the tensor is int8/uint8. A stage applies it with one
        ``cv2.LUT`` instead of per-pixel arithmetic.

        Quantization rounds half up, computed in float64: with BlazeFace's ``[-1, 1]`` every
        level falls exactly between two codes, and float32 noise would otherwise round some
        up and some down, merging neighbouring levels (239 codes for 256 levels instead of 256).
        """
        levels = np.arange(256, dtype=np.float64) * scale + offset
        if not self.quantized:
            return levels.astype(self.dtype)
        info = np.iinfo(self.dtype)
        q = np.floor(levels / self.scale + self.zero_point + 0.5 + 1e-3)
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
        self._buffers, self._invoke = self._input_buffers()
        # Output views for `run(copy=False)`, under the same guarantee as the input views.
        self._output_views = [self._interpreter.tensor(o.index)() for o in self.outputs] if self._invoke is not None else None
        _LIVE.add(self)

    def _input_buffers(self) -> tuple[list[np.ndarray], Any]:
        """Zero-copy input: numpy views of the interpreter's own input tensors, and its raw
        ``Invoke``. The Python wrapper's ``invoke()`` refuses to run while such a view exists
        (it guards against `allocate_tensors` moving the memory); this class never allocates
        again after loading, so the views stay valid for the model's life. Runtimes without
        the raw call get private buffers, copied in by ``set_tensor`` at each run."""
        raw = getattr(self._interpreter, "_interpreter", None)
        if raw is not None and callable(getattr(raw, "Invoke", None)):
            views = [self._interpreter.tensor(info.index)() for info in self.inputs]
            if all(v.shape == info.shape and v.dtype == info.dtype and v.flags.writeable for v, info in zip(views, self.inputs)):
                return views, raw.Invoke
            del views
        return [np.zeros(info.shape, info.dtype) for info in self.inputs], None

    @property
    def input(self) -> TensorInfo:
        return self.inputs[0]

    def input_buffer(self, i: int = 0) -> np.ndarray:
        """The array that input `i` is read from at the next `run()` without arguments: write
        the input here (same shape and dtype as the tensor) to avoid any copy."""
        return self._buffers[i]

    def run(self, *inputs: np.ndarray, copy: bool = True) -> list[np.ndarray]:
        """Invoke on `inputs` (each of its tensor's dtype and shape; none: what was written
        into `input_buffer`) and return the raw outputs in output-detail order: arrays the
        caller may keep, or with ``copy=False`` possibly views of the interpreter's output
        tensors, valid only until the next `run` (no copy, for a caller that reads them at
        once). Only the invoke itself is timed (`invoke_s_total`, for the overhead ratio)."""
        for buffer, x in zip(self._buffers, inputs):
            if x is not buffer:
                np.copyto(buffer, x, casting="no")
        if self._invoke is None:
            for info, buffer in zip(self.inputs, self._buffers):
                self._interpreter.set_tensor(info.index, buffer)
            start = time.perf_counter()
            self._interpreter.invoke()
        else:
            start = time.perf_counter()
            self._invoke()
        self.last_invoke_s = time.perf_counter() - start
        self.invoke_s_total += self.last_invoke_s
        self.invoke_count += 1
        if not copy and self._output_views is not None:
            return list(self._output_views)
        return [self._interpreter.get_tensor(o.index) for o in self.outputs]

    def __repr__(self) -> str:
        return f"Model({self.path.name}, backend={self.backend}, input={self.input.shape} {self.input.dtype})"


#: Every model loaded in this process and still alive, so that `edge-fer bench` counts the raw
#: invokes of each one (detector, classifier, face mesh...) without knowing the stages.
_LIVE: weakref.WeakSet[Model] = weakref.WeakSet()


def live_models() -> list[Model]:
    """The models loaded in this process and still referenced, in no particular order."""
    return list(_LIVE)


def load_model(path: Path | str, *, num_threads: int = 2, backend: str = "auto") -> Model:
    """Load a model for `backend` (``auto``/``cpu``/``edgetpu``); see `Model`."""
    return Model(path, num_threads=num_threads, backend=backend)
