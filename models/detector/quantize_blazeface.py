"""Full-integer int8 conversion of MediaPipe BlazeFace (short and full range), calibrated on real frames.

    python models/detector/quantize_blazeface.py [--variant short|full|both] [--dest models/]

Dependencies: `pip install -e '.[train]'` (TensorFlow CPU, for the TFLite calibrator and the
MLIR quantizer); none of them is needed at run time. The float models come from the provisioned
models folder (`edge-fer models fetch`, sha256-checked), never from the network.

Steps, each checked:
1. **Fold** the float16 weights: MediaPipe's files keep every kernel and bias as float16 behind a
   DEQUANTIZE op (74 in short range, 178 in full range). Each DEQUANTIZE of a constant becomes a
   float32 constant buffer, so that the quantizer sees weights, not activations (quantizing them
   as activations gives asymmetric int8 kernels that LiteRT refuses: "zero_point != 0").
2. **Fuse** every RELU into the ADD or CONV_2D that feeds it (``fused_activation_function``): the
   same arithmetic, and a standalone int8 RELU is not run by XNNPACK, which would split the model
   into 18 delegate partitions (2.5x slower). Steps 1-2 are checked bit-exact against the original.
3. **Calibrate** (TFLite calibrator) on real frames prepared by `FaceDetector.preprocess` itself
   (letterbox, RGB, [-1, 1]): every 2nd frame of the demo video, horizontal flips, and 2x2 / 3x3
   mosaics of demo frames so that faces also appear at a half and a third of their size (the
   scales the full-range model is for). multi_face.jpg, single_face.jpg and single_face.mp4 are
   held out: they measure recall (`evaluate_int8.py`).
4. **Set the two output ranges** to what decoding reads: scores (logits) to [-10, 10] (the
   threshold 0.5 is logit 0; the calibrated range reached -311 from background anchors, which
   made one int8 step 1.2 logits wide) and regressors to at most [-64, 128] input pixels (box
   sizes up to the input size; offsets of half of it). Values beyond saturate, which decoding
   cannot tell apart: a logit of 10 is a score of 0.99995, and nothing real lies past the box
   bounds. The clamp is applied to every tensor of the output's RESHAPE/CONCATENATION chain,
   which share one scale.
5. **Quantize** with the MLIR quantizer: int8 weights (per channel) and activations, int8 input
   and output tensors, no float op left (checked).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter
from ai_edge_litert.tools import flatbuffer_utils

logger = logging.getLogger("quantize_blazeface")

ROOT = Path(__file__).resolve().parents[2]
SOURCES = {"short": "blazeface_short", "full": "blazeface_full"}
OUTPUTS = {"short": "face_detection_short_range_int8.tflite", "full": "face_detection_full_range_int8.tflite"}
SCORE_RANGE = (-10.0, 10.0)
REGRESSOR_RANGE = (-64.0, 128.0)
SEED = 20261124


def _opcode(model: schema.ModelT, op: schema.OperatorT) -> int:
    code = model.operatorCodes[op.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def fold_float16_weights(model: schema.ModelT) -> int:
    """Replace every DEQUANTIZE of a float16 constant by a float32 constant; returns how many."""
    graph = model.subgraphs[0]
    kept, folded = [], 0
    for op in graph.operators:
        if _opcode(model, op) == schema.BuiltinOperator.DEQUANTIZE:
            source = graph.tensors[op.inputs[0]]
            buffer = model.buffers[source.buffer]
            if source.type == schema.TensorType.FLOAT16 and buffer.data is not None and len(buffer.data):
                weights = np.frombuffer(np.asarray(buffer.data, np.uint8).tobytes(), np.float16).astype(np.float32)
                new = schema.BufferT()
                new.data = np.frombuffer(weights.tobytes(), np.uint8)
                model.buffers.append(new)
                graph.tensors[op.outputs[0]].buffer = len(model.buffers) - 1
                buffer.data = None  # the float16 copy is no longer read by anything
                folded += 1
                continue
        kept.append(op)
    graph.operators = kept
    return folded


def fuse_relus(model: schema.ModelT) -> int:
    """Fold each RELU into the ADD / CONV_2D producing its only input; returns how many."""
    graph = model.subgraphs[0]
    producer = {out: op for op in graph.operators for out in op.outputs}
    readers: dict[int, int] = {}
    for op in graph.operators:
        for index in op.inputs:
            readers[index] = readers.get(index, 0) + 1
    fusable = (schema.BuiltinOperator.ADD, schema.BuiltinOperator.CONV_2D)
    dropped: set[int] = set()
    for op in graph.operators:
        if _opcode(model, op) != schema.BuiltinOperator.RELU:
            continue
        source = producer.get(op.inputs[0])
        if source is None or _opcode(model, source) not in fusable or readers[op.inputs[0]] != 1 or op.inputs[0] in graph.outputs:
            continue
        if source.builtinOptions.fusedActivationFunction != schema.ActivationFunctionType.NONE:
            continue
        source.builtinOptions.fusedActivationFunction = schema.ActivationFunctionType.RELU
        source.outputs = [op.outputs[0]]
        dropped.add(id(op))
    graph.operators = [op for op in graph.operators if id(op) not in dropped]
    return len(dropped)


def prune_operator_codes(model: schema.ModelT) -> None:
    """Drop operator codes no operator uses (a kernel registry refuses unknown old codes)."""
    ops = model.subgraphs[0].operators
    used = sorted({op.opcodeIndex for op in ops})
    remap = {old: new for new, old in enumerate(used)}
    model.operatorCodes = [model.operatorCodes[i] for i in used]
    for op in ops:
        op.opcodeIndex = remap[op.opcodeIndex]


def prepare_float(path: Path) -> bytes:
    """Steps 1-2 on the MediaPipe file; the result is checked to compute exactly the same."""
    model = flatbuffer_utils.read_model(str(path))
    folded = fold_float16_weights(model)
    fused = fuse_relus(model)
    prune_operator_codes(model)
    content = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    logger.info("%s: folded %d float16 constants, fused %d RELUs", path.name, folded, fused)
    rng = np.random.default_rng(SEED)
    results = []
    for kwargs in ({"model_path": str(path)}, {"model_content": content}):
        interpreter = Interpreter(**kwargs)
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        interpreter.set_tensor(detail["index"], rng.uniform(-1, 1, detail["shape"]).astype(np.float32) if not results else results[0][0])
        interpreter.invoke()
        x = interpreter.get_tensor(detail["index"])
        results.append([x] + [interpreter.get_tensor(o["index"]) for o in sorted(interpreter.get_output_details(), key=lambda d: d["name"])])
    for a, b in zip(results[0][1:], results[1][1:]):
        if not np.array_equal(a, b):
            raise SystemExit(f"{path.name}: folding changed the outputs (max diff {np.abs(a - b).max()})")
    return content


def demo_frames(models_dir: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(models_dir / "demo_wolfgang_langer_pexels.mp4"))
    frames = []
    while True:
        ok, pixels = cap.read()
        if not ok:
            break
        frames.append(pixels)
    cap.release()
    if len(frames) < 100:
        raise SystemExit(f"the demo video in {models_dir} gave {len(frames)} frames; run `edge-fer models fetch`")
    return frames


def mosaic(frames: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """An n x n grid of random frames (each shrunk n times): n*n faces at 1/n of their size."""
    h, w = frames[0].shape[:2]
    tiles = [cv2.resize(frames[int(i)], (w // n, h // n), interpolation=cv2.INTER_AREA) for i in rng.integers(0, len(frames), n * n)]
    rows = [np.hstack(tiles[r * n : (r + 1) * n]) for r in range(n)]
    return np.vstack(rows)


def calibration_images(models_dir: Path) -> list[np.ndarray]:
    """Real frames with faces at the scales the detectors see (held-out fixtures excluded)."""
    frames = demo_frames(models_dir)
    rng = np.random.default_rng(SEED)
    images = frames[::2]
    images += [cv2.flip(f, 1) for f in frames[1::8]]
    images += [mosaic(frames, 2, rng) for _ in range(40)]
    images += [mosaic(frames, 3, rng) for _ in range(40)]
    return images


def calibration_set(preprocess: Callable[[np.ndarray], np.ndarray], images: list[np.ndarray]) -> Callable[[], Iterator[list[np.ndarray]]]:
    def generate() -> Iterator[list[np.ndarray]]:
        for image in images:
            yield [preprocess(image).copy()]

    return generate


def _is_constant(model: schema.ModelT, index: int) -> bool:
    data = model.buffers[model.subgraphs[0].tensors[index].buffer].data
    return data is not None and len(data) > 0


def clamp_output_ranges(calibrated: bytes) -> bytes:
    """Step 4: narrow the calibrated min/max of both outputs and of every tensor sharing their scale."""
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    graph = model.subgraphs[0]
    for index in graph.inputs:  # the whole [-1, 1] of the normalisation, even if no pixel was 255
        q = graph.tensors[index].quantization
        q.min, q.max = [-1.0], [1.0]
    producer = {out: op for op in graph.operators for out in op.outputs}
    passthrough = (schema.BuiltinOperator.RESHAPE, schema.BuiltinOperator.CONCATENATION)
    for output in graph.outputs:
        tensor = graph.tensors[output]
        width = tensor.shape[-1]
        # scores: exactly SCORE_RANGE (room above the calibrated maximum too: a face surer than
        # any in the calibration set must not saturate); regressors: only ever narrowed.
        low, high = SCORE_RANGE if width == 1 else REGRESSOR_RANGE
        exact = width == 1
        stack, seen = [output], set()
        while stack:
            index = stack.pop()
            if index in seen:
                continue
            seen.add(index)
            q = graph.tensors[index].quantization
            old = (float(q.min[0]), float(q.max[0]))
            q.min, q.max = ([low], [high]) if exact else ([max(old[0], low)], [min(old[1], high)])
            logger.info("  %s: calibrated [%.1f, %.1f] -> [%.1f, %.1f]", graph.tensors[index].name.decode(), *old, q.min[0], q.max[0])
            op = producer.get(index)
            if op is not None and _opcode(model, op) in passthrough:
                stack.extend(i for i in op.inputs if graph.tensors[i].type == schema.TensorType.FLOAT32 and not _is_constant(model, i))
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def quantize(variant: str, models_dir: Path, images: list[np.ndarray]) -> bytes:
    import tensorflow as tf
    from tensorflow.lite.python import convert
    from tensorflow.lite.python.optimize import calibrator

    from edge_fer.models import resolve
    from edge_fer.runtime import load_model
    from edge_fer.vision.blazeface import FaceDetector

    _, source = resolve(SOURCES[variant], models_dir, "detector")  # sha256-checked
    detector = FaceDetector(load_model(source, backend="cpu"), variant)
    content = prepare_float(source)
    calibrated = calibrator.Calibrator(content).calibrate(calibration_set(detector.preprocess, images))
    calibrated = clamp_output_ranges(calibrated)
    quantized = convert.mlir_quantize(calibrated, input_data_type=tf.int8, output_data_type=tf.int8)
    check_integer_only(quantized, variant)
    return bytes(quantized)


def check_integer_only(content: bytes, variant: str) -> None:
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    graph = model.subgraphs[0]
    floats = [t.name.decode() for t in graph.tensors if t.type in (schema.TensorType.FLOAT32, schema.TensorType.FLOAT16)]
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    ops = sorted({names[_opcode(model, op)] for op in graph.operators})
    if floats:
        raise SystemExit(f"{variant}: float tensors left after quantization: {floats[:5]}")
    logger.info("%s: integer-only, ops %s", variant, ", ".join(ops))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=("short", "full", "both"), default="both")
    parser.add_argument("--dest", type=Path, default=ROOT / "models", help="where the int8 files are written (default: models/)")
    parser.add_argument("--models-dir", type=Path, default=None, help="provisioned models folder (default: from the settings)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from edge_fer.config import load_settings

    models_dir = args.models_dir or load_settings(environ={}).models.dir
    images = calibration_images(models_dir)
    logger.info("calibration set: %d real images", len(images))
    record = {}
    for variant in ("short", "full") if args.variant == "both" else (args.variant,):
        content = quantize(variant, models_dir, images)
        target = args.dest / OUTPUTS[variant]
        target.write_bytes(content)
        record[variant] = {"file": str(target), "bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()}
        logger.info("wrote %s (%d bytes, sha256 %s)", target, len(content), record[variant]["sha256"])
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
