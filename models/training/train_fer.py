"""Training recipe for edge-fer's own emotion model (FER2013 48x48 grey faces, 7 classes).

    python models/training/train_fer.py train  --data ../shared/datasets/fer2013 --out RUN_DIR [--epochs N] [--seed S]
    python models/training/train_fer.py export --data ../shared/datasets/fer2013 --out RUN_DIR --dest models/ --onnx
    python models/training/train_fer.py heldout --data ../shared/datasets/fer2013 --out RUN_DIR

`train` resumes by itself from RUN_DIR/backup (Keras BackupAndRestore) when a run was cut off:
run the same command again. Dependencies: `pip install -e '.[train]'` (TensorFlow CPU); none of
them is needed at run time. The data path is an argument; the dataset is never copied into the
repository (the tars are unpacked into RUN_DIR/data).

Targets: the original FER2013 label, mixed with the FERPlus crowd votes of the same image
(``--ferplus-weight``, default 0.3): an informed label smoothing that tells the network when
annotators disagreed. All figures are reported against the original FER2013 labels.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tarfile
import time
from pathlib import Path

import numpy as np

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# FERPlus vote columns mapped onto the FER2013 class order (contempt, unknown, NF are dropped).
FERPLUS = ("ferplus_anger", "ferplus_disgust", "ferplus_fear", "ferplus_happiness", "ferplus_sadness", "ferplus_surprise", "ferplus_neutral")
SIZE = 48


def unpack(data: Path, work: Path) -> Path:
    """Unpack the archives once into `work` (outside the repository)."""
    target = work / "data"
    if not (target / "public_test").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        for name in ("train.tar", "public_test.tar"):
            with tarfile.open(data / name) as tar:
                tar.extractall(target, filter="data")
    return target


def load_split(data: Path, work: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images (n,48,48) uint8, FER2013 labels (n,), FERPlus vote distributions (n,7); cached as .npz."""
    cache = work / f"{split}.npz"
    if cache.exists():
        z = np.load(cache)
        return z["x"], z["y"], z["votes"]
    import cv2

    root = unpack(data, work)
    xs, ys, votes = [], [], []
    with open(data / "labels.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["split"] != split:
                continue
            img = cv2.imread(str(root / row["path"]), cv2.IMREAD_GRAYSCALE)
            if img is None or img.shape != (SIZE, SIZE):
                continue
            xs.append(img)
            ys.append(CLASSES.index(row["emotion"]))
            v = np.array([float(row[c] or 0) for c in FERPLUS], np.float32)
            votes.append(v / v.sum() if v.sum() > 0 else np.zeros(7, np.float32))
    x, y, vt = np.stack(xs), np.array(ys, np.int64), np.stack(votes)
    np.savez_compressed(cache, x=x, y=y, votes=vt)
    return x, y, vt


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    val = []
    for c in range(len(CLASSES)):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        val.extend(idx[: int(round(len(idx) * fraction))])
    val_mask = np.zeros(len(y), bool)
    val_mask[val] = True
    return np.flatnonzero(~val_mask), np.flatnonzero(val_mask)


def build_model(width: float = 1.0, dropout: float = 0.3):  # noqa: ANN201 - keras type
    """A compact residual CNN for 48x48 faces: 4 stages (48, 24, 12, 6 px), squeeze-excitation
    in the last two, global average pooling, softmax inside the model."""
    import tensorflow as tf
    from tensorflow import keras
    from tensorflow.keras import layers

    def ch(n: int) -> int:
        return max(8, int(round(n * width / 8)) * 8)

    def conv_bn(x, filters, kernel=3):  # noqa: ANN001, ANN202
        x = layers.Conv2D(filters, kernel, padding="same", use_bias=False, kernel_initializer="he_normal")(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU()(x)

    def se(x, filters, ratio=8):  # noqa: ANN001, ANN202
        s = layers.GlobalAveragePooling2D(keepdims=True)(x)
        s = layers.Conv2D(max(filters // ratio, 8), 1, activation="relu")(s)
        s = layers.Conv2D(filters, 1, activation="sigmoid")(s)
        return layers.Multiply()([x, s])

    def res_block(x, filters, use_se):  # noqa: ANN001, ANN202
        shortcut = x
        y = conv_bn(x, filters)
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal")(y)
        y = layers.BatchNormalization()(y)
        if use_se:
            y = se(y, filters)
        if shortcut.shape[-1] != filters:
            shortcut = layers.Conv2D(filters, 1, use_bias=False)(shortcut)
            shortcut = layers.BatchNormalization()(shortcut)
        return layers.ReLU()(layers.Add()([y, shortcut]))

    inputs = keras.Input((SIZE, SIZE, 1), name="face")
    x = conv_bn(inputs, ch(32))
    x = conv_bn(x, ch(32))
    x = layers.MaxPooling2D()(x)  # 24
    x = res_block(x, ch(64), False)
    x = layers.MaxPooling2D()(x)  # 12
    x = res_block(x, ch(128), True)
    x = layers.MaxPooling2D()(x)  # 6
    x = res_block(x, ch(256), True)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(len(CLASSES), activation="softmax", name="probs")(x)
    del tf
    return keras.Model(inputs, outputs, name="edge_fer_emotion")


def make_dataset(x: np.ndarray, targets: np.ndarray, batch: int, train: bool, seed: int):  # noqa: ANN201
    import tensorflow as tf
    from tensorflow.keras import layers

    ds = tf.data.Dataset.from_tensor_slices((x[..., None], targets))
    if train:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch)
    ds = ds.map(lambda a, b: (tf.cast(a, tf.float32) / 255.0, b), num_parallel_calls=tf.data.AUTOTUNE)
    if train:
        aug = tf.keras.Sequential(
            [
                layers.RandomFlip("horizontal", seed=seed),
                layers.RandomRotation(0.04, fill_mode="reflect", seed=seed + 1),  # ±15°
                layers.RandomZoom((-0.15, 0.15), fill_mode="reflect", seed=seed + 2),
                layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed + 3),
                layers.RandomContrast(0.3, seed=seed + 4),
                layers.RandomBrightness(0.2, value_range=(0.0, 1.0), seed=seed + 5),
            ]
        )
        ds = ds.map(lambda a, b: (tf.clip_by_value(aug(a, training=True), 0.0, 1.0), b), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def soft_targets(y: np.ndarray, votes: np.ndarray, weight: float, smoothing: float = 0.05) -> np.ndarray:
    onehot = np.eye(len(CLASSES), dtype=np.float32)[y]
    has_votes = votes.sum(axis=1, keepdims=True) > 0
    mixed = np.where(has_votes, (1 - weight) * onehot + weight * votes, onehot)
    return (1 - smoothing) * mixed + smoothing / len(CLASSES)


def cmd_train(args: argparse.Namespace) -> None:
    import tensorflow as tf
    from tensorflow import keras

    tf.keras.utils.set_random_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    x, y, votes = load_split(Path(args.data), out, "train")
    tr, va = stratified_split(y, 0.1, args.seed)
    np.save(out / "val_indices.npy", va)
    targets = soft_targets(y, votes, args.ferplus_weight)
    train_ds = make_dataset(x[tr], targets[tr], args.batch, True, args.seed)
    val_ds = make_dataset(x[va], np.eye(len(CLASSES), dtype=np.float32)[y[va]], 512, False, args.seed)
    steps = int(np.ceil(len(tr) / args.batch)) * args.epochs
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps - args.warmup * len(tr) // args.batch, alpha=0.01, warmup_target=args.lr, warmup_steps=args.warmup * len(tr) // args.batch
    )
    model = build_model(args.width, args.dropout)
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=args.weight_decay),
        loss=keras.losses.CategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    model.summary(print_fn=lambda s: None)
    print(f"params {model.count_params():,}; train {len(tr)}, val {len(va)}; {args.epochs} epochs", flush=True)
    (out / "config.json").write_text(json.dumps(vars(args), indent=2))
    callbacks = [
        keras.callbacks.BackupAndRestore(str(out / "backup")),
        keras.callbacks.ModelCheckpoint(str(out / "best.keras"), monitor="val_accuracy", save_best_only=True),
        keras.callbacks.CSVLogger(str(out / "history.csv"), append=True),
    ]
    start = time.time()
    model.fit(train_ds, validation_data=val_ds, epochs=args.epochs, callbacks=callbacks, verbose=2)
    model.save(out / "last.keras")
    print(f"trained in {(time.time() - start) / 60:.1f} min", flush=True)


def representative(x: np.ndarray, n: int, seed: int):  # noqa: ANN201
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(x), size=min(n, len(x)), replace=False)

    def gen():  # noqa: ANN202
        for i in picks:
            yield [x[i][None, ..., None].astype(np.float32) / 255.0]

    return gen


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    f1s = []
    for c in range(len(CLASSES)):
        tp = float(np.sum((pred == c) & (y == c)))
        p = tp / max(np.sum(pred == c), 1)
        r = tp / max(np.sum(y == c), 1)
        f1s.append(2 * p * r / (p + r) if p + r else 0.0)
    return float(np.mean(f1s))


def adjust_logits(model, x: np.ndarray, y: np.ndarray, out: Path, tau: str) -> None:  # noqa: ANN001
    """Logit adjustment (Menon et al., 2021): subtract tau * log(class prior) from the final
    layer's bias, so rare classes (disgust: 1.5 % of the data) are not drowned by the prior.
    ``auto`` picks tau on the held-out validation part of `train` (never the test split),
    maximising accuracy + macro-F1. Zero run-time cost: it is folded into the weights."""
    va = np.load(out / "val_indices.npy")
    tr = np.setdiff1d(np.arange(len(y)), va)
    prior = np.bincount(y[tr], minlength=len(CLASSES)) / len(tr)
    probs = model.predict(x[va][..., None].astype(np.float32) / 255.0, batch_size=512, verbose=0)
    logp = np.log(np.clip(probs, 1e-9, None))
    grid = [float(tau)] if tau != "auto" else [round(t, 2) for t in np.arange(0.0, 1.01, 0.1)]
    scored = []
    for t in grid:
        pred = np.argmax(logp - t * np.log(prior), axis=1)
        acc = float(np.mean(pred == y[va]))
        scored.append((acc + macro_f1(y[va], pred), t, acc, macro_f1(y[va], pred)))
        print(f"logit adjustment tau={t:.2f}: held-out accuracy {acc:.4f}, macro-F1 {scored[-1][3]:.4f}", flush=True)
    _, best, acc, f1 = max(scored)
    dense = model.get_layer("probs")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel, bias - best * np.log(prior).astype(bias.dtype)])
    (out / "logit_adjustment.json").write_text(json.dumps({"tau": best, "prior": prior.tolist(), "heldout_accuracy": acc, "heldout_macro_f1": f1}))
    print(f"logit adjustment: tau = {best} (held-out accuracy {acc:.4f}, macro-F1 {f1:.4f})", flush=True)


def cmd_export(args: argparse.Namespace) -> None:
    import tensorflow as tf
    from tensorflow import keras

    out = Path(args.out)
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    model = keras.models.load_model(out / args.checkpoint)
    x, y, _ = load_split(Path(args.data), out, "train")
    if args.logit_adjust != "0":
        adjust_logits(model, x, y, out, args.logit_adjust)
    saved = out / "saved_model"
    model.export(str(saved))
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    (dest / "edge_fer_emotion_float.tflite").write_bytes(conv.convert())
    # The committed float reference: float16 weights (half the size, under 3 MB), float32 compute.
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]
    (dest / "edge_fer_emotion_float16.tflite").write_bytes(conv.convert())
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative(x, args.calibration, args.seed)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.uint8
    conv.inference_output_type = tf.uint8
    (dest / "edge_fer_emotion_int8.tflite").write_bytes(conv.convert())
    for name in ("edge_fer_emotion_float.tflite", "edge_fer_emotion_float16.tflite", "edge_fer_emotion_int8.tflite"):
        print(f"{dest / name}: {(dest / name).stat().st_size / 1e6:.2f} MB")
    if args.onnx:
        # tf2onnx reads the SavedModel (Keras 3 models are not supported by from_keras); the float
        # TFLite is the fallback input. The ONNX file is the same network for ONNX Runtime / TensorRT.
        import subprocess
        import sys

        onnx_path = dest / "edge_fer_emotion.onnx"
        for source in (["--saved-model", str(saved)], ["--tflite", str(dest / "edge_fer_emotion_float.tflite")]):
            cmd = [sys.executable, "-m", "tf2onnx.convert", *source, "--opset", "17", "--output", str(onnx_path)]
            if subprocess.run(cmd, capture_output=True, text=True, check=False).returncode == 0 and onnx_path.exists():
                print(f"{onnx_path}: {onnx_path.stat().st_size / 1e6:.2f} MB (from {source[0][2:]})")
                break
        else:
            print("ONNX export failed with both inputs; see `python -m tf2onnx.convert --help`")


def cmd_heldout(args: argparse.Namespace) -> None:
    """Write the held-out validation images (never trained on) as OUT/heldout/<class>/*.png, the
    folder `edge-fer eval --fit-temperature` calibrates on."""
    import cv2

    out = Path(args.out)
    x, y, _ = load_split(Path(args.data), out, "train")
    va = np.load(out / "val_indices.npy")
    for i in va:
        folder = out / "heldout" / CLASSES[y[i]]
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i:05d}.png"), x[i])
    print(f"{len(va)} held-out images in {out / 'heldout'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train (resumes from OUT/backup when cut off)")
    export = sub.add_parser("export", help="write float and full-int8 TFLite (and ONNX) models")
    heldout = sub.add_parser("heldout", help="write the held-out validation images for calibration")
    for p in (train, export, heldout):
        p.add_argument("--data", required=True, help="folder with train.tar, public_test.tar, labels.csv")
        p.add_argument("--out", required=True, help="run folder (checkpoints, cache, logs); outside the repo")
        p.add_argument("--seed", type=int, default=20261124)
    train.add_argument("--epochs", type=int, default=40)
    train.add_argument("--batch", type=int, default=128)
    train.add_argument("--lr", type=float, default=3e-3)
    train.add_argument("--warmup", type=int, default=2, help="warm-up epochs")
    train.add_argument("--weight-decay", type=float, default=5e-4)
    train.add_argument("--width", type=float, default=1.0, help="channel multiplier")
    train.add_argument("--dropout", type=float, default=0.3)
    train.add_argument("--ferplus-weight", type=float, default=0.3)
    export.add_argument("--dest", default="models", help="where the .tflite files go")
    export.add_argument("--checkpoint", default="best.keras")
    export.add_argument("--calibration", type=int, default=500, help="training images used to calibrate int8")
    export.add_argument("--onnx", action="store_true", help="also export ONNX (needs tf2onnx)")
    export.add_argument("--logit-adjust", default="auto", help="tau for logit adjustment, 'auto' (fit on held-out) or 0 (off)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    {"train": cmd_train, "export": cmd_export, "heldout": cmd_heldout}[args.command](args)


if __name__ == "__main__":
    main()
