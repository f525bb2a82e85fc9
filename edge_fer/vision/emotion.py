"""Emotion classification of aligned face crops, driven only by the model's manifest contract."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from edge_fer.errors import ModelError
from edge_fer.models import ModelEntry, resolve
from edge_fer.runtime import Model, load_model
from edge_fer.types import Frame, Tracks
from edge_fer.vision.align import DEFAULT_MARGIN, align_face

if TYPE_CHECKING:
    from edge_fer.config import Settings


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class EmotionClassifier:
    """Class probabilities for faces, from any emotion model that states its contract.

    The manifest entry says (``entry.extra``): ``input_size [H, W]``, ``channels`` (1 grey,
    3 RGB), the normalisation ``x = pixel * scale + offset``, ``output`` (``probs`` or
    ``logits``), ``labels`` in output order and ``crop_margin`` (defaults to the aligner's).
    Quantization parameters are read from the model itself.

    Args:
        model: the loaded emotion model.
        entry: its manifest entry.

    Raises:
        ModelError: the contract is incomplete or does not match the model's tensors.
    """

    def __init__(self, model: Model, entry: ModelEntry) -> None:
        contract: dict[str, Any] = entry.extra
        missing = [k for k in ("input_size", "channels", "scale", "offset", "output", "labels") if k not in contract]
        if missing:
            raise ModelError(f"manifest entry {entry.name!r} lacks {', '.join(missing)}")
        self.model = model
        self.name = entry.name
        self.input_hw: tuple[int, int] = (int(contract["input_size"][0]), int(contract["input_size"][1]))
        self.channels = int(contract["channels"])
        self.scale = float(contract["scale"])
        self.offset = float(contract["offset"])
        self.output_kind = str(contract["output"])
        self.labels: tuple[str, ...] = tuple(contract["labels"])
        self.margin = float(contract.get("crop_margin", DEFAULT_MARGIN))
        shape = model.input.shape
        expected = (self.input_hw[0], self.input_hw[1], self.channels)
        if len(shape) != 4 or tuple(shape[1:]) != expected:
            raise ModelError(f"{entry.name}: the manifest says input {expected} but {model.path.name} takes {shape[1:]}")
        if self.output_kind not in ("probs", "logits"):
            raise ModelError(f"{entry.name}: output must be probs or logits, got {self.output_kind!r}")
        out_shape = model.outputs[0].shape
        if out_shape[-1] != len(self.labels):
            raise ModelError(f"{entry.name}: {len(self.labels)} labels but the model outputs {out_shape[-1]} values")
        self._batch = np.zeros(shape, model.input.dtype)

    @classmethod
    def from_settings(cls, settings: Settings) -> EmotionClassifier:
        entry, path = resolve(settings.models.emotion, settings.models.dir, "emotion")
        return cls(load_model(path, num_threads=settings.runtime.num_threads, backend=settings.runtime.backend), entry)

    def _to_input(self, crop: np.ndarray) -> np.ndarray:
        """A crop of any size (grey or BGR) → the model's input tensor (one face)."""
        if self.channels == 1 and crop.ndim == 3:
            crop = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
        elif self.channels == 3:
            crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2RGB if crop.ndim == 2 else cv2.COLOR_BGR2RGB)
        h, w = self.input_hw
        if crop.shape[:2] != (h, w):
            area = crop.shape[0] * crop.shape[1] > h * w
            crop = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA if area else cv2.INTER_LINEAR)
        x = crop.astype(np.float32).reshape(1, h, w, self.channels) * np.float32(self.scale) + np.float32(self.offset)
        return self.model.input.quantize(x)

    def _infer(self, x: np.ndarray) -> np.ndarray:
        raw = self.model.run(x)[0]
        scores = self.model.outputs[0].dequantize(raw).reshape(-1)
        probs = softmax(scores) if self.output_kind == "logits" else np.clip(scores, 0.0, None)
        return (probs / max(float(probs.sum()), 1e-9)).astype(np.float32)

    def align(self, frame: Frame, box: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        """The crop the pipeline classifies: eyes levelled, at the model's input size."""
        return align_face(frame.pixels, box, keypoints, self.input_hw, self.margin, grey=self.channels == 1)

    def classify(self, frame: Frame, tracks: Tracks, which: np.ndarray | None = None) -> dict[int, np.ndarray]:
        """Probabilities (in `labels` order) for the tracks selected by the boolean mask `which`
        (default: every track seen in this frame), keyed by track id."""
        mask = tracks.seen if which is None else which
        out: dict[int, np.ndarray] = {}
        for i in np.flatnonzero(mask):
            crop = self.align(frame, tracks.boxes[i], tracks.keypoints[i])
            out[int(tracks.ids[i])] = self._infer(self._to_input(crop))
        return out

    def classify_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """``(n, k)`` probabilities for face crops of any size (e.g. FER2013's 48×48 greys):
        the same resize → normalise → quantize path as `classify` after alignment."""
        if not crops:
            return np.zeros((0, len(self.labels)), np.float32)
        return np.stack([self._infer(self._to_input(c)) for c in crops])
