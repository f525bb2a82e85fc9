"""The ``onnx`` back-end: ONNX Runtime with TensorRT → CUDA → CPU execution providers (the Jetson path).

It runs the ONNX export of a TFLite model (``models/convert_onnx.py``), which keeps the TFLite
model's NHWC layout, input and output dtypes (a full-int8 model stays uint8/int8 in and out, as
QuantizeLinear/DequantizeLinear nodes) and output order, and carries the TFLite tensors'
description (names, shapes, quantization) in its metadata: stages feed it exactly the arrays
they feed LiteRT and read the outputs the same way.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_fer.errors import ModelError
from edge_fer.runtime.base import BACKENDS, LoadOptions, Model, ModelFiles, TensorInfo

logger = logging.getLogger(__name__)

#: Execution providers in order of preference; only those the installed build offers are used.
PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
GPU_PROVIDERS = PROVIDERS[:2]
#: Key of the ONNX metadata entry holding the TFLite tensors' description (written by models/convert_onnx.py).
METADATA_KEY = "edge_fer.tensors"
INSTALL_HINT = (
    "ONNX Runtime is not installed: `pip install 'edge-fer[onnx]'` (CPU), or on a Jetson the onnxruntime-gpu "
    "wheel built for your JetPack (firmware_config/jetson/README.md)"
)
_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
}


def _onnxruntime() -> Any:
    try:
        import onnxruntime  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError as exc:
        raise ModelError(f"{INSTALL_HINT} ({exc})") from exc
    return onnxruntime


def gpu_providers() -> list[str]:
    """The GPU execution providers of the installed ONNX Runtime (TensorRT, CUDA), cheaply.

    ONNX Runtime is imported only when its GPU provider libraries are installed
    (``onnxruntime-gpu``): on a CPU-only device, ``runtime.backend = "auto"`` costs no import.
    Being listed does not prove that the GPU works; `OnnxModel.provider` says what really runs.
    """
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        return []
    capi = Path(next(iter(spec.submodule_search_locations))) / "capi"
    if not any(capi.glob("libonnxruntime_providers_cuda*")) and not any(capi.glob("libonnxruntime_providers_tensorrt*")):
        return []
    try:
        available = _onnxruntime().get_available_providers()
    except ModelError:  # pragma: no cover - a broken install: the CPU back-ends remain
        return []
    return [p for p in GPU_PROVIDERS if p in available]


def runtime_name() -> str | None:
    """``onnxruntime 1.x (providers…)`` when ONNX Runtime is installed, else None (for doctor)."""
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    ort = _onnxruntime()
    return f"onnxruntime {ort.__version__}: {', '.join(ort.get_available_providers())}"


def execution_providers(available: Sequence[str], cache_dir: Path | None) -> list[str | tuple[str, dict[str, str]]]:
    """The ``providers`` argument of an ONNX Runtime session: TensorRT → CUDA → CPU, those in
    `available` only; TensorRT keeps its engines and timing cache in `cache_dir` and may use FP16."""
    providers: list[str | tuple[str, dict[str, str]]] = []
    for name in PROVIDERS:
        if name not in available:
            continue
        if name == "TensorrtExecutionProvider" and cache_dir is not None:
            trt = {
                "trt_engine_cache_enable": "True",
                "trt_engine_cache_path": str(cache_dir),
                "trt_timing_cache_enable": "True",
                "trt_timing_cache_path": str(cache_dir),
                "trt_fp16_enable": "True",
            }
            providers.append((name, trt))
        else:
            providers.append(name)
    return providers


def read_contract(metadata: dict[str, str], path: Path) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """The TFLite tensors' description stored by models/convert_onnx.py in an ONNX file."""
    raw = metadata.get(METADATA_KEY)
    if raw is None:
        raise ModelError(f"{path} has no {METADATA_KEY!r} metadata: it was not made by models/convert_onnx.py; rebuild it with that script")
    try:
        data = json.loads(raw)
        return [TensorInfo.from_dict(d) for d in data["inputs"]], [TensorInfo.from_dict(d) for d in data["outputs"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path}: malformed {METADATA_KEY!r} metadata ({exc}); rebuild it with models/convert_onnx.py") from exc


def _check_matches(contract: list[TensorInfo], actual: list[Any], what: str, path: Path) -> None:
    by_name = {a.name: a for a in actual}
    for info in contract:
        node = by_name.get(info.name)
        if node is None:
            raise ModelError(f"{path}: the ONNX graph has no {what} {info.name!r} (has {sorted(by_name)}); rebuild it with models/convert_onnx.py")
        dtype = _ORT_DTYPES.get(node.type)
        shape = tuple(node.shape)
        fixed = all(isinstance(d, int) for d in shape)
        if dtype is None or np.dtype(dtype) != info.dtype or (fixed and shape != info.shape) or len(shape) != len(info.shape):
            raise ModelError(
                f"{path}: {what} {info.name!r} is {node.type} {list(shape)} but the TFLite model's is {info.dtype} "
                f"{list(info.shape)}; rebuild it with models/convert_onnx.py"
            )


@BACKENDS.register("onnx")
class OnnxModel(Model):
    """The ONNX export of a model on ONNX Runtime, with the best execution provider available.

    TensorRT builds an engine the first time a model is loaded (seconds to minutes on a Jetson);
    with ``options.cache_dir`` set (edge-fer uses ``<state_dir>/tensorrt``) the engines and the
    timing cache are kept there and reused at the next start. TensorRT may use FP16 kernels.

    Raises:
        ModelError: ONNX Runtime is not installed (install hint), the model has no ONNX export,
            the file does not match the manifest's hash, or its graph does not match the TFLite
            contract.
    """

    backend = "onnx"

    def __init__(self, files: ModelFiles, options: LoadOptions) -> None:
        super().__init__(files, options)
        ort = _onnxruntime()
        path = files.onnx
        if path is None or not path.is_file():
            raise ModelError(
                f"{files.label} has no ONNX version{f' ({path} is missing)' if path else ''}: use runtime.backend = "
                '"cpu" or "auto" for it, or convert it with models/convert_onnx.py and add `onnx` to its manifest entry'
            )
        if files.onnx_sha256 is not None:
            from edge_fer.models import sha256_of

            actual = sha256_of(path)
            if actual != files.onnx_sha256:
                raise ModelError(
                    f"{path} is corrupt or replaced: sha256 {actual} does not match the manifest's {files.onnx_sha256}; restore it with git"
                )
        providers = execution_providers(ort.get_available_providers(), options.cache_dir)
        if options.cache_dir is not None and any(isinstance(p, tuple) for p in providers):  # TensorRT's engine cache
            Path(options.cache_dir).mkdir(parents=True, exist_ok=True)
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = options.num_threads
        session_options.inter_op_num_threads = 1
        session_options.log_severity_level = 3  # errors only: provider fallbacks are logged by us
        # Spinning worker threads would take CPU from the capture thread between invokes.
        session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(path), sess_options=session_options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise ModelError(f"ONNX Runtime cannot load {path}: {exc}") from exc
        self.path = path
        self.inputs, self.outputs = read_contract(self._session.get_modelmeta().custom_metadata_map, path)
        _check_matches(self.inputs, self._session.get_inputs(), "input", path)
        _check_matches(self.outputs, self._session.get_outputs(), "output", path)
        self._input_names = [i.name for i in self.inputs]
        self._buffers = self._private_buffers()
        self._output_names = [o.name for o in self.outputs]
        self._providers = list(self._session.get_providers())
        self._version = str(ort.__version__)
        logger.info("%s runs on ONNX Runtime %s with %s", files.label, self._version, self._providers[0])

    @property
    def provider(self) -> str:
        return self._providers[0]

    @property
    def label(self) -> str:
        return "onnx:" + self.provider.removesuffix("ExecutionProvider").lower()

    @property
    def runtime(self) -> str:
        return f"onnxruntime {self._version}"

    def run(self, *inputs: np.ndarray, copy: bool = True) -> list[np.ndarray]:
        del copy  # ONNX Runtime returns fresh arrays anyway
        feeds = dict(zip(self._input_names, inputs or self._buffers))
        start = time.perf_counter()
        outputs = self._session.run(self._output_names, feeds)
        self._timed(start)
        return list(outputs)
