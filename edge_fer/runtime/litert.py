"""The ``cpu`` back-end: the LiteRT / TFLite interpreter with XNNPACK on `num_threads` threads.

The interpreter comes from `ai_edge_litert.interpreter` (current name, Python 3.10+), then
`tflite_runtime.interpreter` (Raspberry Pi OS), then `tensorflow.lite` as a last resort.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_fer.errors import ModelError
from edge_fer.runtime.base import BACKENDS, LoadOptions, Model, ModelFiles, TensorInfo

logger = logging.getLogger(__name__)

#: Import paths tried in order; each provides ``Interpreter`` and ``load_delegate``.
INTERPRETER_MODULES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite")


def interpreter_module() -> Any:
    """The first importable interpreter module.

    Raises:
        ModelError: none is installed (the message says what to install).
    """
    errors = []
    for name in INTERPRETER_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
            continue
        return module
    raise ModelError(
        "no TFLite runtime is installed; `pip install ai-edge-litert` (Python >= 3.10) or "
        "`pip install tflite-runtime` (tried " + "; ".join(errors) + ")"
    )


def load_delegate_function(module: Any) -> Any:
    """``load_delegate`` of an interpreter module (``tensorflow.lite`` keeps it in ``experimental``)."""
    return getattr(module, "load_delegate", None) or module.experimental.load_delegate


def runtime_name() -> str:
    """Name and version of the interpreter package that the LiteRT back-ends use."""
    module = interpreter_module()
    root = module.__name__.split(".")[0]
    dist = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime"}.get(root, root)
    try:
        from importlib.metadata import PackageNotFoundError, version

        return f"{dist} {version(dist)}"
    except PackageNotFoundError:  # pragma: no cover - an interpreter outside any distribution
        return root


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


def tensor_details(interpreter: Any) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """The inputs and outputs of an interpreter, in its order."""
    return [_tensor_info(d) for d in interpreter.get_input_details()], [_tensor_info(d) for d in interpreter.get_output_details()]


@BACKENDS.register("cpu")
class LiteRTModel(Model):
    """A TFLite model on the CPU (XNNPACK, ``options.num_threads`` threads)."""

    backend = "cpu"

    def __init__(self, files: ModelFiles, options: LoadOptions) -> None:
        super().__init__(files, options)
        self._module = interpreter_module()
        self._open(*self._plan())

    def _plan(self) -> tuple[Path, int | None, Sequence[Any]]:
        """Which file to open, with how many threads and which delegates (subclasses choose)."""
        return self.files.tflite, self.options.num_threads, ()

    def _open(self, path: Path, num_threads: int | None, delegates: Sequence[Any]) -> None:
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist; run `edge-fer models fetch`")
        try:
            self._interpreter = self._module.Interpreter(
                model_path=str(path),
                num_threads=num_threads,
                experimental_delegates=list(delegates) or None,
            )
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{path} is not a loadable TFLite model: {exc}") from exc
        self.path = path
        self.inputs, self.outputs = tensor_details(self._interpreter)
        self._buffers, self._invoke = self._input_buffers()
        # Output views for `run(copy=False)`, under the same guarantee as the input views.
        self._output_views = [self._interpreter.tensor(o.index)() for o in self.outputs] if self._invoke is not None else None

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
        return self._private_buffers(), None

    @property
    def provider(self) -> str:
        return f"XNNPACK, {self.options.num_threads} threads"

    @property
    def runtime(self) -> str:
        return runtime_name()

    def run(self, *inputs: np.ndarray, copy: bool = True) -> list[np.ndarray]:
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
        self._timed(start)
        if not copy and self._output_views is not None:
            return list(self._output_views)
        return [self._interpreter.get_tensor(o.index) for o in self.outputs]
