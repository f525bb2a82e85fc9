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

from edge_fer import EMOTIONS
from edge_fer.calibration import expected_calibration_error
from edge_fer.errors import ConfigError

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
