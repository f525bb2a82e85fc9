"""Model loading: one `Model` interface, back-ends registered by key, and the ``auto`` choice.

Back-ends (``runtime.backend``):

- ``cpu``: LiteRT with XNNPACK on ``runtime.num_threads`` threads (`edge_fer.runtime.litert`).
- ``edgetpu``: LiteRT with the Coral delegate on the ``<model>_edgetpu.tflite`` compilation
  (`edge_fer.runtime.edgetpu`); a full-int8 model refuses to start without it, the library or a
  device; a float model (which the Edge TPU cannot run) runs on the CPU.
- ``onnx``: ONNX Runtime on the model's ONNX export, TensorRT → CUDA → CPU providers
  (`edge_fer.runtime.onnx`); refuses to start without ONNX Runtime or the export.
- ``auto`` (default), per model: the Edge TPU when the model has a compiled variant and a Coral
  is present; else ONNX Runtime when the model has an ONNX export and a GPU provider really runs
  it (a Jetson); else LiteRT on the CPU. A compiled or GPU path that is present but unusable
  falls back to the CPU with one warning per reason.

Stages call ``model.run(*inputs)`` with NHWC arrays of the TFLite input dtypes and get the
outputs back in TFLite order whatever the back-end; ``model.label`` says which one runs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from edge_fer.errors import ModelError
from edge_fer.runtime.base import BACKENDS, LoadOptions, Model, ModelFiles, TensorInfo
from edge_fer.runtime.edgetpu import EDGETPU_LIBRARY, EdgeTpuModel, edgetpu_available
from edge_fer.runtime.litert import LiteRTModel, runtime_name
from edge_fer.runtime.onnx import GPU_PROVIDERS, OnnxModel, gpu_providers

if TYPE_CHECKING:
    from edge_fer.config import Settings
    from edge_fer.models import ModelEntry

__all__ = [
    "BACKENDS",
    "EDGETPU_LIBRARY",
    "EdgeTpuModel",
    "LiteRTModel",
    "LoadOptions",
    "Model",
    "ModelFiles",
    "OnnxModel",
    "TensorInfo",
    "edgetpu_available",
    "load_manifest_model",
    "load_model",
    "runtime_name",
]

logger = logging.getLogger(__name__)

#: Reasons already warned about: ``auto`` falls back with one warning per reason, not per model.
_warned: set[str] = set()


def _warn_once(reason: str, message: str, *args: object) -> None:
    if reason not in _warned:
        _warned.add(reason)
        logger.warning(message, *args)


def _auto(files: ModelFiles, options: LoadOptions) -> Model:
    if files.edgetpu is not None:
        ok, why = edgetpu_available()
        if ok:
            try:
                return BACKENDS.get("edgetpu")(files, options)
            except ModelError as exc:
                _warn_once("edgetpu-failed", "the Edge TPU cannot be used (%s); models run on the CPU", exc)
        else:
            _warn_once("edgetpu-absent", "models compiled for the Edge TPU are present (%s) but %s; they run on the CPU", files.edgetpu.name, why)
    if files.onnx is not None and gpu_providers():
        try:
            model = BACKENDS.get("onnx")(files, options)
        except ModelError as exc:
            _warn_once("onnx-failed", "ONNX Runtime cannot run the models on the GPU (%s); they run on the CPU (LiteRT)", exc)
        else:
            if model.provider in GPU_PROVIDERS:
                return model
            _warn_once(
                "onnx-cpu",
                "ONNX Runtime lists %s but runs %s with %s (no usable GPU?); models run on the CPU (LiteRT)",
                ", ".join(gpu_providers()),
                files.label,
                model.provider,
            )
    return BACKENDS.get("cpu")(files, options)


def load_model(model: Path | str | ModelFiles, *, num_threads: int = 2, backend: str = "auto", cache_dir: Path | None = None) -> Model:
    """Load a model on `backend`.

    Args:
        model: a ``.tflite`` file (its ``_edgetpu`` and ``.onnx`` variants are looked for beside
            it) or a `ModelFiles` naming the variants.
        num_threads: CPU threads (XNNPACK; ONNX Runtime intra-op); the Edge TPU ignores it.
        backend: ``auto``, or a key of `BACKENDS` (``cpu``, ``edgetpu``, ``onnx``).
        cache_dir: where TensorRT keeps its engines (None: rebuilt at each start).

    Raises:
        ConfigError: unknown `backend` (the message lists the known ones).
        ModelError: the model cannot be loaded on the back-end asked for (missing file,
            runtime, device or variant; the message says how to fix it).
    """
    files = model if isinstance(model, ModelFiles) else ModelFiles.beside(model)
    options = LoadOptions(num_threads=num_threads, cache_dir=cache_dir)
    if backend == "auto":
        return _auto(files, options)
    if backend == "edgetpu" and files.edgetpu is None:
        # The Edge TPU runs only full-int8 models: asking for it means "the int8 models run there",
        # not "refuse the float ones" (the face mesh, mini-Xception), which no compiler can give it.
        cpu = BACKENDS.get("cpu")(files, options)
        if not cpu.input.quantized:
            logger.info("%s is a float model, which the Edge TPU cannot run: it runs on the CPU", files.label)
            return cpu
    return BACKENDS.get(backend)(files, options)


def model_files(entry: ModelEntry, path: Path, models_dir: Path) -> ModelFiles:
    """The files of a resolved manifest model: `path`, the ONNX export the manifest names
    (``onnx``, ``onnx_sha256``) and a ``_edgetpu`` compilation beside `path` or in `models_dir`."""
    edgetpu = ModelFiles.beside(path, models_dir).edgetpu
    onnx = entry.onnx_path()
    return ModelFiles(tflite=path, onnx=onnx, onnx_sha256=entry.extra.get("onnx_sha256") if onnx else None, edgetpu=edgetpu, name=entry.name)


def load_manifest_model(entry: ModelEntry, path: Path, settings: Settings) -> Model:
    """Load a resolved manifest model (`edge_fer.models.resolve`) as the settings say:
    ``runtime.backend``, ``runtime.num_threads``, TensorRT engines in ``<state_dir>/tensorrt``."""
    files = model_files(entry, path, settings.models.dir)
    return load_model(files, num_threads=settings.runtime.num_threads, backend=settings.runtime.backend, cache_dir=settings.state_dir / "tensorrt")
