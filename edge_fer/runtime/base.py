"""The one interface every inference back-end implements, and the registry of back-ends.

A back-end (LiteRT on the CPU, LiteRT with the Edge TPU delegate, ONNX Runtime) is a `Model`
subclass registered under a string key with ``@BACKENDS.register("key")``. Stages see only the
`Model` interface: ``run(*inputs) -> outputs`` with NHWC arrays of the TFLite model's input
dtypes, and `TensorInfo` for every input and output, so they never know which back-end runs.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edge_fer.registry import Registry

EDGETPU_SUFFIX = "_edgetpu"


@dataclass(frozen=True)
class TensorInfo:
    """Shape, dtype and affine quantization (``real = (q - zero_point) * scale``) of a tensor.

    The same for every back-end: the ONNX export of a TFLite model carries the TFLite tensors'
    description, so a stage quantizes and dequantizes identically whichever back-end runs.
    """

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

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (what the ONNX conversion stores in the ONNX file)."""
        return {
            "index": self.index,
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype.name,
            "scale": self.scale,
            "zero_point": self.zero_point,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorInfo:
        return cls(
            index=int(data["index"]),
            name=str(data["name"]),
            shape=tuple(int(v) for v in data["shape"]),
            dtype=np.dtype(str(data["dtype"])),
            scale=float(data["scale"]),
            zero_point=int(data["zero_point"]),
        )


@dataclass(frozen=True)
class ModelFiles:
    """The files of one model: the TFLite reference and its accelerated variants.

    Args:
        tflite: the LiteRT model (the contract every variant reproduces).
        onnx: its ONNX export for the ``onnx`` back-end (None: there is none).
        onnx_sha256: the manifest's hash of `onnx`, checked before it is loaded.
        edgetpu: its ``_edgetpu.tflite`` compilation for the ``edgetpu`` back-end (None: none).
        name: the manifest name, for messages (default: the file name).
    """

    tflite: Path
    onnx: Path | None = None
    onnx_sha256: str | None = None
    edgetpu: Path | None = None
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or self.tflite.name

    @staticmethod
    def edgetpu_name(tflite: Path) -> str:
        """``x_int8.tflite`` → ``x_int8_edgetpu.tflite`` (what `edgetpu_compiler` writes)."""
        return tflite.stem + EDGETPU_SUFFIX + tflite.suffix

    @classmethod
    def beside(cls, tflite: Path | str, *search_dirs: Path) -> ModelFiles:
        """A model file with the variants found next to it (``<stem>_edgetpu.tflite``,
        ``<stem>.onnx``), or else in `search_dirs` (e.g. ``models.dir`` for a compilation a
        user made of a model installed read-only)."""
        tflite = Path(tflite)
        found: dict[str, Path] = {}
        for folder in (tflite.parent, *search_dirs):
            for key, name in (("edgetpu", cls.edgetpu_name(tflite)), ("onnx", tflite.stem + ".onnx")):
                if key not in found and (Path(folder) / name).is_file():
                    found[key] = Path(folder) / name
        return cls(tflite, onnx=found.get("onnx"), edgetpu=found.get("edgetpu"))


@dataclass(frozen=True)
class LoadOptions:
    """How to load: CPU threads (XNNPACK, ONNX Runtime intra-op) and where ONNX Runtime's
    TensorRT provider keeps its built engines (None: beside nothing, rebuilt at each start)."""

    num_threads: int = 2
    cache_dir: Path | None = None


class Model(ABC):
    """A loaded model, whatever runs it.

    Attributes:
        backend: the registry key of the back-end running it (``cpu``, ``edgetpu``, ``onnx``).
        path: the file actually loaded (the ``.tflite``, its ``_edgetpu`` variant or the ``.onnx``).
        inputs, outputs: the TFLite model's tensors, in its order, for every back-end.
        invoke_count, invoke_s_total, last_invoke_s: raw inference time (no pre/post
            processing), read by `edge-fer bench` for the overhead ratio.

    Raises (constructor):
        ModelError: the file is missing or invalid, the vendor runtime or device is missing
            (the message says what to install), or a variant breaks the TFLite contract.
    """

    backend: ClassVar[str] = ""

    def __init__(self, files: ModelFiles, options: LoadOptions) -> None:
        self.files = files
        self.options = options
        self.path = files.tflite
        self.inputs: list[TensorInfo] = []
        self.outputs: list[TensorInfo] = []
        self.invoke_count = 0
        self.invoke_s_total = 0.0
        self.last_invoke_s = 0.0
        #: What `run()` without arguments reads; back-ends set them once `inputs` are known
        #: (`_private_buffers`, or the runtime's own tensor memory: zero copy).
        self._buffers: list[np.ndarray] = []

    def _private_buffers(self) -> list[np.ndarray]:
        return [np.zeros(info.shape, info.dtype) for info in self.inputs]

    @property
    def input(self) -> TensorInfo:
        return self.inputs[0]

    def input_buffer(self, i: int = 0) -> np.ndarray:
        """The array that input `i` is read from at the next `run()` without arguments: a stage
        on the hot path writes its input here (same shape and dtype as the tensor) so that
        nothing is copied; with LiteRT it is the interpreter's own tensor memory."""
        return self._buffers[i]

    @property
    def provider(self) -> str:
        """What executes the graph, e.g. ``XNNPACK``, ``Edge TPU``, ``CUDAExecutionProvider``."""
        return self.backend

    @property
    def label(self) -> str:
        """Short name of back-end and provider for stats and bench (``cpu``, ``onnx:cuda``)."""
        return self.backend

    @property
    def runtime(self) -> str:
        """Name and version of the runtime package (``ai-edge-litert 2.3.0``)."""
        return self.backend

    @abstractmethod
    def run(self, *inputs: np.ndarray, copy: bool = True) -> list[np.ndarray]:
        """Infer on `inputs` (NHWC arrays of each `inputs` tensor's dtype and shape; none: what
        was written into `input_buffer`) and return the outputs in `outputs` order: arrays the
        caller may keep, or with ``copy=False`` possibly the back-end's own output buffers,
        valid only until the next `run` (for a caller that reads them at once). Only the
        inference itself is timed (`invoke_s_total`, for the overhead ratio)."""

    def _timed(self, start_s: float) -> None:
        self.last_invoke_s = time.perf_counter() - start_s
        self.invoke_s_total += self.last_invoke_s
        self.invoke_count += 1

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path.name}, backend={self.label}, input={self.input.shape} {self.input.dtype})"


#: Back-end key → `Model` subclass. ``auto`` is not a back-end but a choice among them
#: (`edge_fer.runtime.choose`).
BACKENDS: Registry[type[Model]] = Registry("runtime backend")
