#!/usr/bin/env python3
"""Rebuild the ONNX exports of the manifest's TFLite models, for the ``onnx`` back-end (ONNX Runtime / TensorRT).

Conversion-time only: tf2onnx needs TensorFlow, which edge-fer never needs at run time.

    python3 -m venv /tmp/convert-venv && /tmp/convert-venv/bin/pip install -e '.[convert]'
    /tmp/convert-venv/bin/edge-fer models fetch                  # the third-party TFLite sources
    /tmp/convert-venv/bin/python models/convert_onnx.py          # every entry with `onnx` in the manifest
    /tmp/convert-venv/bin/python models/convert_onnx.py edge_fer_emotion   # after retraining the emotion model

For each entry it reads the TFLite model (verified against the manifest's sha256), converts it
with ``tf2onnx.convert.from_tflite`` (the NHWC layout, the input/output dtypes — a full-int8
model stays uint8/int8 in and out, as QuantizeLinear/DequantizeLinear nodes — and the tensor
names are kept), pins the batch dimension to the TFLite shape (TensorRT then builds one static
engine), stores the TFLite tensors' description (names, shapes, dtypes, quantization) as
metadata, checks the result against LiteRT on a real photo, writes ``models/<tflite stem>.onnx``
and sets ``onnx`` and ``onnx_sha256`` of the entry in ``models/manifest.toml``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_fer.config import load_settings
from edge_fer.models import ModelEntry, load_manifest, resolve, sha256_of
from edge_fer.runtime import LiteRTModel, LoadOptions, ModelFiles, TensorInfo
from edge_fer.runtime.onnx import METADATA_KEY

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.toml"
OPSET = 17
#: Largest |ONNX - LiteRT| accepted on the check photo: relative to the output's range, or a few
#: quantization steps for an int8 output (ONNX Runtime's int8 kernels round requantization a
#: little differently). A conversion error is orders of magnitude larger.
MAX_RELATIVE_DIFF = 0.02
MAX_QUANT_STEPS = 3


def tensor_contract(model: LiteRTModel) -> dict[str, Any]:
    return {"inputs": [t.to_dict() for t in model.inputs], "outputs": [t.to_dict() for t in model.outputs]}


def pin_shapes(proto: Any, contract: dict[str, Any]) -> None:
    """Give graph inputs and outputs the TFLite shapes (tf2onnx leaves the batch symbolic)."""
    shapes = {t["name"]: t["shape"] for t in contract["inputs"] + contract["outputs"]}
    for value in list(proto.graph.input) + list(proto.graph.output):
        if value.name not in shapes:
            raise SystemExit(f"ONNX graph tensor {value.name!r} is not a TFLite input or output ({sorted(shapes)})")
        dims = value.type.tensor_type.shape.dim
        if len(dims) != len(shapes[value.name]):
            raise SystemExit(f"{value.name}: rank {len(dims)} in ONNX, {len(shapes[value.name])} in TFLite")
        for dim, size in zip(dims, shapes[value.name]):
            dim.Clear()
            dim.dim_value = int(size)


def canonicalize(proto: Any) -> None:
    """Make the file reproducible. tf2onnx numbers the names it makes from a process-wide counter,
    emits folded constants in set order and names a merged node after any one of its sources, so
    the same model converts to different bytes from run to run. Every internal name is replaced
    by one given in node order (the graph's inputs and outputs keep their TFLite names), and the
    constants are sorted."""
    graph = proto.graph
    keep = {v.name for v in list(graph.input) + list(graph.output)}
    constants = {init.name for init in graph.initializer}
    names: dict[str, str] = {}

    def rename(name: str) -> str:
        if name in keep or not name:
            return name
        if name not in names:
            names[name] = f"{'const' if name in constants else 't'}_{len(names) + 1:04d}"
        return names[name]

    for i, node in enumerate(graph.node):
        node.name = f"{node.op_type}_{i + 1:04d}"
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
    for value in list(graph.value_info) + list(graph.initializer):
        value.name = rename(value.name)
    for field in (graph.initializer, graph.value_info):
        ordered = sorted(field, key=lambda v: v.name)
        copies = [type(v)() for v in ordered]
        for copy, value in zip(copies, ordered):
            copy.CopyFrom(value)
        del field[:]
        field.extend(copies)


def check_input(info: TensorInfo, photo: np.ndarray) -> np.ndarray:
    """A real photo as this input tensor: resized, grey for one channel, [-1, 1] for a float
    input, raw pixels for a quantized one."""
    _, h, w, c = info.shape
    pixels = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA)
    pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)[..., None] if c == 1 else cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    if info.dtype == np.float32:
        return (pixels[None].astype(np.float32) / 127.5 - 1.0).astype(np.float32)
    offset = 128 if info.dtype == np.int8 else 0
    return (pixels[None].astype(np.int16) - offset).astype(info.dtype)


def compare(reference: LiteRTModel, onnx_path: Path, photo: np.ndarray) -> list[float]:
    """Max |ONNX - LiteRT| per output (dequantized) on `photo`, with ONNX Runtime's CPU provider."""
    from edge_fer.runtime import OnnxModel

    onnx = OnnxModel(ModelFiles(reference.path, onnx=onnx_path), LoadOptions(num_threads=2))
    x = [check_input(info, photo) for info in reference.inputs]
    diffs = []
    for info, a, b in zip(reference.outputs, reference.run(*x), onnx.run(*x)):
        da, db = info.dequantize(np.asarray(a)), info.dequantize(np.asarray(b))
        diff = float(np.abs(da - db).max())
        span = float(np.abs(da).max()) or 1.0
        print(f"    output {info.name}: max |diff| {diff:.6g} (range {span:.4g})")
        if diff > max(MAX_RELATIVE_DIFF * span, MAX_QUANT_STEPS * info.scale if info.quantized else 0.0):
            raise SystemExit(f"{onnx_path.name}: output {info.name} differs by {diff} from LiteRT (range {span}): conversion is wrong")
        diffs.append(diff)
    return diffs


def set_manifest_keys(text: str, name: str, values: dict[str, str]) -> str:
    """Set ``key = "value"`` lines inside the ``[name]`` table, after its ``sha256`` line when new."""
    match = re.search(rf"^\[{re.escape(name)}\]\n(.*?)(?=^\[|\Z)", text, flags=re.S | re.M)
    if match is None:
        raise SystemExit(f"[{name}] not found in {MANIFEST}")
    body = match.group(1)
    missing = []
    for key, value in values.items():
        line = f'{key} = "{value}"'
        if re.search(rf"^{key} = .*$", body, flags=re.M):
            body = re.sub(rf"^{key} = .*$", line, body, count=1, flags=re.M)
        else:
            missing.append(line + "\n")
    body = re.sub(r"^(sha256 = .*\n)", lambda m: m.group(1) + "".join(missing), body, count=1, flags=re.M)
    return text[: match.start(1)] + body + text[match.end(1) :]


def convert(entry: ModelEntry, models_dir: Path, photo: np.ndarray) -> tuple[str, str]:
    import onnx
    import tf2onnx

    _, source = resolve(entry.name, models_dir)
    reference = LiteRTModel(ModelFiles(source), LoadOptions(num_threads=2))
    contract = tensor_contract(reference)
    proto, _ = tf2onnx.convert.from_tflite(str(source), opset=OPSET)
    pin_shapes(proto, contract)
    canonicalize(proto)
    metadata = {
        METADATA_KEY: json.dumps(contract, separators=(",", ":")),
        "edge_fer.source": f"{source.name} sha256 {entry.sha256}",
        "edge_fer.converter": f"models/convert_onnx.py, tf2onnx {tf2onnx.__version__}, opset {OPSET}",
        "license": entry.license,
    }
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    out = HERE / str(entry.extra.get("onnx") or f"{source.stem}.onnx")
    tmp = out.with_suffix(".onnx.part")
    onnx.save(proto, str(tmp))
    print(f"  {entry.name}: {source.name} -> {out.name} ({tmp.stat().st_size / 1e6:.2f} MB)")
    compare(reference, tmp, photo)
    tmp.replace(out)
    return out.name, sha256_of(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="manifest entries to convert (default: every entry that has `onnx`)")
    parser.add_argument("--models-dir", type=Path, help="where the provisioned TFLite files are (default: config models.dir)")
    args = parser.parse_args(argv)
    models_dir = args.models_dir or load_settings().models.dir
    manifest = load_manifest(MANIFEST)
    names = args.names or [n for n, e in manifest.items() if "onnx" in e.extra]
    unknown = [n for n in names if n not in manifest or manifest[n].kind == "media"]
    if unknown:
        print(f"not models of the manifest: {', '.join(unknown)}", file=sys.stderr)
        return 2
    photo = cv2.imread(str(resolve("single_face", models_dir)[1]))
    text = MANIFEST.read_text(encoding="utf-8")
    for name in names:
        file, digest = convert(manifest[name], models_dir, photo)
        text = set_manifest_keys(text, name, {"onnx": file, "onnx_sha256": digest})
    MANIFEST.write_text(text, encoding="utf-8")
    print(f"updated {MANIFEST.name}: onnx and onnx_sha256 of {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
