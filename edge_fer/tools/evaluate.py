"""`edge-fer eval`: accuracy of an emotion model on a folder of labelled face images.

The images go through `EmotionClassifier.classify_crops`, the very preprocessing the pipeline
applies after face alignment, so the figure printed is the figure users get.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_fer import EMOTIONS, models
from edge_fer.config import Settings
from edge_fer.errors import ConfigError
from edge_fer.vision.calibration import apply_temperature, expected_calibration_error, fit_temperature
from edge_fer.vision.emotion import EmotionClassifier

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
KNOWN_CLASSES = (*EMOTIONS, "contempt")


@dataclass(frozen=True)
class EvalResult:
    model: str
    labels: tuple[str, ...]
    y_true: np.ndarray
    y_pred: np.ndarray
    ms_per_face: float
    skipped: int
    probs: np.ndarray | None = None

    def confusion(self) -> np.ndarray:
        k = len(self.labels)
        matrix = np.zeros((k, k), np.int64)
        np.add.at(matrix, (self.y_true, self.y_pred), 1)
        return matrix

    def to_dict(self) -> dict[str, Any]:
        """The `--json` record of DESIGN.md: model, n, accuracy, macro_f1, per_class, confusion, ms_per_face."""
        cm = self.confusion()
        per_class = {}
        f1s = []
        for i, name in enumerate(self.labels):
            tp = int(cm[i, i])
            support = int(cm[i].sum())
            predicted = int(cm[:, i].sum())
            precision = tp / predicted if predicted else 0.0
            recall = tp / support if support else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            per_class[name] = {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4), "n": support}
            if support:
                f1s.append(f1)
        n = int(cm.sum())
        return {
            "model": self.model,
            "n": n,
            "accuracy": round(float(np.trace(cm)) / n, 4) if n else 0.0,
            "macro_f1": round(float(np.mean(f1s)), 4) if f1s else 0.0,
            "per_class": per_class,
            "labels": list(self.labels),
            "confusion": cm.tolist(),
            "ms_per_face": round(self.ms_per_face, 4),
            "skipped": self.skipped,
            "ece": round(expected_calibration_error(self.probs, self.y_true), 4) if self.probs is not None else None,
        }


def resolve_model_name(name: str) -> str:
    """The manifest name of an emotion model given by manifest name or as a ``.tflite`` file.

    Raises:
        ConfigError: the file does not exist, or no emotion entry of the manifest has its sha256.
    """
    if not (name.endswith(".tflite") or "/" in name):
        return name
    path = Path(name)
    if not path.is_file():
        raise ConfigError(f"eval: model file {path} does not exist")
    digest = models.sha256_of(path)
    matches = [e.name for e in models.load_manifest().values() if e.sha256 == digest and e.kind == "emotion"]
    if not matches:
        raise ConfigError(f"eval: {path} is not in models/manifest.toml; add an entry with its contract (input size, scale, labels)")
    return matches[0]


def classifier_for(settings: Settings, model: str | None = None, *, temperature: float | None = None) -> tuple[EmotionClassifier, str]:
    """The emotion classifier `edge-fer eval` measures, and its manifest name.

    Args:
        model: manifest name or ``.tflite`` file (default: ``settings.models.emotion``).
        temperature: replaces the manifest's calibration temperature (1 = uncalibrated).

    Raises:
        ConfigError: see `resolve_model_name`.
        ModelError: the model is missing, corrupt or breaks its contract.
    """
    name = resolve_model_name(model or settings.models.emotion)
    settings = settings.model_copy(update={"models": settings.models.model_copy(update={"emotion": name})})
    classifier = EmotionClassifier.from_settings(settings)
    if temperature:
        classifier.temperature = temperature
    return classifier, name


def fit_calibration(
    classifier: EmotionClassifier, root: Path, *, model_name: str, progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """Fit the calibration temperature of `classifier` on the labelled images under `root`
    (held-out training data, never the test split): the ``--fit-temperature`` record, with the
    expected calibration error before and after."""
    classifier.temperature = 1.0
    raw = evaluate(classifier, root, model_name=model_name, progress=progress)
    assert raw.probs is not None
    temperature = fit_temperature(raw.probs, raw.y_true)
    return {
        "model": model_name,
        "n": int(len(raw.y_true)),
        "temperature": temperature,
        "ece_before": round(expected_calibration_error(raw.probs, raw.y_true), 4),
        "ece_after": round(expected_calibration_error(apply_temperature(raw.probs, temperature), raw.y_true), 4),
    }


def report_text(record: dict[str, Any]) -> str:
    """The human-readable form of a `EvalResult.to_dict` record: the headline, then per class."""
    lines = [
        f"model {record['model']}: n={record['n']} accuracy {record['accuracy']:.4f} macro-F1 {record['macro_f1']:.4f} "
        f"ECE {record['ece']:.4f}, {record['ms_per_face']:.3f} ms/face",
        f"{'class':<10} {'precision':>9} {'recall':>7} {'f1':>7} {'n':>6}",
    ]
    for label, v in record["per_class"].items():
        lines.append(f"{label:<10} {v['precision']:>9.3f} {v['recall']:>7.3f} {v['f1']:>7.3f} {v['n']:>6}")
    return "\n".join(lines)


def share_bias(y_true: np.ndarray, y_pred: np.ndarray, labels: tuple[str, ...]) -> dict[str, float]:
    """Per class, the share of faces predicted as it minus its true share: what a published
    emotion share gets wrong when every face is counted by its top class (+0.17 for happy: the
    statistics say 17 points more happy faces than there were)."""
    k = len(labels)
    n = max(len(y_true), 1)
    true = np.bincount(y_true, minlength=k) / n
    pred = np.bincount(y_pred, minlength=k) / max(len(y_pred), 1)
    return {name: round(float(p - t), 4) for name, p, t in zip(labels, pred, true)}


def list_images(root: Path, labels: tuple[str, ...]) -> list[tuple[Path, int]]:
    """``(path, class index)`` for every image in ``root/<class>/``; classes the model lacks are refused."""
    if not root.is_dir():
        raise ConfigError(f"eval: {root} is not a folder; expected one sub-folder per class ({', '.join(KNOWN_CLASSES)})")
    items: list[tuple[Path, int]] = []
    unknown = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        if sub.name not in labels:
            unknown.append(sub.name)
            continue
        index = labels.index(sub.name)
        items.extend((p, index) for p in sorted(sub.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES)
    if unknown:
        logger.warning("eval: skipping folders the model has no class for: %s", ", ".join(unknown))
    if not items:
        raise ConfigError(f"eval: no images under {root}/<class>/ for classes {', '.join(labels)}")
    return items


def evaluate(
    classifier: Any,
    root: Path,
    *,
    model_name: str,
    batch: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Classify every image under `root` with `classifier` (an `EmotionClassifier`)."""
    labels = tuple(classifier.labels)
    items = list_images(root, labels)
    y_true: list[int] = []
    y_pred: list[int] = []
    all_probs: list[np.ndarray] = []
    skipped = 0
    infer_s = 0.0
    faces = 0
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        crops, truths = [], []
        for path, label in chunk:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                logger.warning("eval: cannot read %s, skipped", path)
                skipped += 1
                continue
            crops.append(image)
            truths.append(label)
        if crops:
            t = time.perf_counter()
            probs = classifier.classify_crops(crops)
            infer_s += time.perf_counter() - t
            faces += len(crops)
            y_pred.extend(int(i) for i in np.argmax(probs, axis=1))
            all_probs.append(probs)
            y_true.extend(truths)
        if progress is not None:
            progress(min(start + batch, len(items)), len(items))
    return EvalResult(
        model=model_name,
        labels=labels,
        y_true=np.array(y_true, np.int64),
        y_pred=np.array(y_pred, np.int64),
        ms_per_face=1000.0 * infer_s / max(faces, 1),
        skipped=skipped,
        probs=np.concatenate(all_probs) if all_probs else np.zeros((0, len(labels)), np.float32),
    )


def plot_confusion(result: EvalResult, path: Path) -> None:
    """Save the row-normalised confusion matrix as a PNG (needs matplotlib: `pip install edge-fer[eval]`)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError("--plot needs matplotlib: pip install 'edge-fer[eval]'") from exc
    cm = result.confusion().astype(np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=120)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    k = len(result.labels)
    ax.set_xticks(range(k), result.labels, rotation=45, ha="right")
    ax.set_yticks(range(k), result.labels)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7, color="white" if norm[i, j] > 0.5 else "black")
    record = result.to_dict()
    ax.set_title(f"{result.model}: accuracy {record['accuracy']:.3f}, macro-F1 {record['macro_f1']:.3f} (n={record['n']})", fontsize=9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
