"""Emotion classification of aligned face crops, driven only by the model's manifest contract."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edge_fer.errors import ModelError
from edge_fer.models import ModelEntry, resolve
from edge_fer.runtime import Model, load_manifest_model
from edge_fer.types import Frame, Tracks
from edge_fer.vision.align import DEFAULT_MARGIN, align_face, crop_for_model
from edge_fer.vision.calibration import apply_temperature
from edge_fer.vision.quality import CropMeasures, measure_crop

if TYPE_CHECKING:
    from edge_fer.config import Settings

logger = logging.getLogger(__name__)

#: Keys every emotion entry of the manifest must give (see models/manifest.toml).
CONTRACT_KEYS = ("input_size", "channels", "scale", "offset", "output", "labels")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


class EmotionClassifier:
    """Class probabilities for faces, from any emotion model that states its contract.

    The manifest entry says (``entry.extra``): ``input_size [H, W]``, ``channels`` (1 grey,
    3 RGB), the normalisation ``x = pixel * scale + offset``, ``output`` (``probs`` or
    ``logits``), ``labels`` in output order, and optionally ``crop_margin`` (border around the
    face box; default `DEFAULT_MARGIN`) and ``temperature`` (calibration, default 1).
    Quantization parameters are read from the model itself: an int8/uint8 input is quantized
    and an int8/uint8 output dequantized with the tensors' own scale and zero point.

    Args:
        model: the loaded emotion model.
        entry: its manifest entry (kind ``emotion``).

    Raises:
        ModelError: the contract is incomplete or invalid, or does not match the model's
            tensors (input shape or channels, number of outputs vs labels).
    """

    def __init__(self, model: Model, entry: ModelEntry) -> None:
        contract = entry.contract(CONTRACT_KEYS)
        name = entry.name
        try:
            h, w = (int(v) for v in contract["input_size"])
            self.channels = int(contract["channels"])
            self.scale = float(contract["scale"])
            self.offset = float(contract["offset"])
            self.margin = float(contract.get("crop_margin", DEFAULT_MARGIN))
            # Fitted on held-out data by `edge-fer eval --fit-temperature`; settable (cli.py).
            self.temperature = float(contract.get("temperature", 1.0))
        except (TypeError, ValueError) as exc:
            raise ModelError(f"manifest entry {name!r}: malformed contract ({exc})") from exc
        self.input_hw: tuple[int, int] = (h, w)
        self.output_kind = str(contract["output"])
        self.labels: tuple[str, ...] = tuple(str(label) for label in contract["labels"])
        if h < 1 or w < 1:
            raise ModelError(f"{name}: input_size must be two positive integers, got {contract['input_size']!r}")
        if self.channels not in (1, 3):
            raise ModelError(f"{name}: channels must be 1 (grey) or 3 (RGB), got {self.channels}")
        if not (math.isfinite(self.scale) and self.scale > 0 and math.isfinite(self.offset)):
            raise ModelError(f"{name}: scale must be > 0 and offset finite, got scale={self.scale}, offset={self.offset}")
        if self.output_kind not in ("probs", "logits"):
            raise ModelError(f"{name}: output must be 'probs' or 'logits', got {self.output_kind!r}")
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise ModelError(f"{name}: labels must be non-empty and unique, got {list(self.labels)}")
        if self.margin < 0:
            raise ModelError(f"{name}: crop_margin must be >= 0, got {self.margin}")
        if self.temperature <= 0:
            raise ModelError(f"{name}: temperature must be > 0, got {self.temperature}")
        shape = model.input.shape
        expected = (h, w, self.channels)
        if len(shape) != 4 or tuple(shape[1:]) != expected:
            raise ModelError(
                f"{name}: the manifest says input (H, W, C) = {expected} but {model.path.name} takes {tuple(shape[1:])}; fix the manifest entry"
            )
        if model.input.dtype not in (np.float32, np.int8, np.uint8):
            raise ModelError(f"{name}: unsupported input dtype {model.input.dtype} (float32, int8 or uint8)")
        out = model.outputs[0]
        if out.shape[-1] != len(self.labels) or int(np.prod(out.shape)) != shape[0] * len(self.labels):
            raise ModelError(f"{name}: {len(self.labels)} labels but the model outputs {out.shape}")
        self.model = model
        self.name = name
        self._batch = int(shape[0])
        # pixel level → model input (``pixel * scale + offset``, quantized for int8/uint8 inputs)
        self._lut = model.input.pixel_table(self.scale, self.offset)
        # the pipeline writes each face straight into the model's input tensor (zero copy)
        self._input = model.input_buffer()[0].reshape(h, w, self.channels)
        # a uint8 input holding the pixel itself (scale 1/255 and zero point 0, or a float-free
        # contract): the aligned face is warped straight into the tensor, no table needed
        self._pixels_are_input = self._lut.dtype == np.uint8 and bool(np.array_equal(self._lut, np.arange(256)))

    @classmethod
    def from_settings(cls, settings: Settings) -> EmotionClassifier:
        """The classifier named by ``settings.models.emotion`` (a manifest entry of kind emotion).

        Raises:
            ModelError: unknown, missing or corrupt model, or a contract mismatch.
        """
        entry, path = resolve(settings.models.emotion, settings.models.dir, "emotion")
        return cls(load_manifest_model(entry, path, settings), entry)

    def align(self, frame: Frame, box: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        """The crop the pipeline classifies: eyes levelled, at the model's input size, grey for
        a 1-channel model, else BGR (uint8 ``(H, W)`` or ``(H, W, 3)``)."""
        return align_face(frame.pixels, box, keypoints, self.input_hw, self.margin, grey=self.channels == 1)

    def preprocess(self, crop: np.ndarray) -> np.ndarray:
        """One face crop (grey or BGR, any size) → the model's input tensor ``(1, H, W, C)``:
        `crop_for_model`, then ``pixel * scale + offset``, quantized when the input is
        int8/uint8 (one table look-up per pixel). The only path to the model, for the pipeline
        and for eval alike."""
        pixels = crop_for_model(crop, self.input_hw, self.channels)
        return cv2.LUT(pixels, self._lut).reshape(1, *self.input_hw, self.channels)

    def _probabilities(self, raw: np.ndarray) -> np.ndarray:
        """``(n, k)`` raw model outputs (quantized or not) → probabilities: softmax of the
        dequantized logits, or the model's probabilities renormalised, temperature applied."""
        output = self.model.outputs[0]
        if self.output_kind == "logits":
            probs = softmax(output.dequantize(raw))
        else:
            # Quantized probabilities need not sum to exactly 1; the scale cancels out in the
            # renormalisation, so only the zero point is removed.
            probs = raw.astype(np.float32)
            if output.quantized and output.zero_point:
                probs -= np.float32(output.zero_point)
            np.maximum(probs, 0.0, out=probs)
            probs /= np.maximum(probs.sum(axis=-1, keepdims=True), 1e-12)
        if self.temperature == 1.0:
            return probs.astype(np.float32, copy=False)
        return np.asarray(apply_temperature(probs.astype(np.float32, copy=False), self.temperature), np.float32)

    def _infer(self, x: np.ndarray) -> np.ndarray:
        """``(n, H, W, C)`` input tensors → ``(n, k)`` probabilities, run in chunks of the
        model's fixed batch size (1 for the usual models: one invoke per face)."""
        n, batch, k = len(x), self._batch, len(self.labels)
        rows = []
        for start in range(0, n, batch):
            chunk = x[start : start + batch]
            if len(chunk) < batch:  # a fixed-batch model: pad the last chunk
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), axis=0)])
            raw = self.model.run(chunk)[0]
            rows.append(raw.reshape(batch, k)[: min(batch, n - start)])
        return self._probabilities(np.concatenate(rows))

    def classify(
        self, frame: Frame, tracks: Tracks, which: np.ndarray | None = None, measures: dict[int, CropMeasures] | None = None
    ) -> dict[int, np.ndarray]:
        """Probabilities for some of the tracks in `frame`.

        Args:
            frame: the frame the tracks' boxes refer to.
            tracks: the tracker's output for this frame.
            which: ``(n,)`` bool mask of the tracks to classify; default: those matched in this
                frame (``tracks.seen``); a coasting track's stale box is never worth a crop.
            measures: when given, filled with the face-quality measures (sharpness, exposure)
                of each classified crop, by track id (`edge_fer.vision.quality.measure_crop`),
                taken on the very crop the model reads.

        Returns:
            track id → ``(k,)`` float32 probabilities summing to 1, in `labels` order.
        """
        mask = tracks.seen if which is None else np.asarray(which, bool)
        if mask.shape != (len(tracks),):
            raise ValueError(f"which must be a bool mask of shape ({len(tracks)},), got {mask.shape}")
        chosen = np.flatnonzero(mask)
        if len(chosen) == 0:
            return {}
        if self._batch != 1:
            crops = [self.align(frame, tracks.boxes[i], tracks.keypoints[i]) for i in chosen]
            if measures is not None:
                for i, crop in zip(chosen.tolist(), crops):
                    measures[int(tracks.ids[i])] = measure_crop(crop)
            probs = self._infer(np.concatenate([self.preprocess(c) for c in crops]))
        else:
            # Each aligned crop goes through the look-up table straight into the input tensor;
            # the outputs of all faces are turned into probabilities in one go.
            raw = np.empty((len(chosen), len(self.labels)), self.model.outputs[0].dtype)
            grey = self._input[:, :, 0]
            direct = self._pixels_are_input and self.channels == 1
            for row, i in enumerate(chosen.tolist()):
                if direct:
                    align_face(frame.pixels, tracks.boxes[i], tracks.keypoints[i], self.input_hw, self.margin, grey=True, dst=grey)
                    if measures is not None:
                        measures[int(tracks.ids[i])] = measure_crop(grey)
                else:
                    crop = self.align(frame, tracks.boxes[i], tracks.keypoints[i])
                    if measures is not None:
                        measures[int(tracks.ids[i])] = measure_crop(crop)
                    if self.channels == 3:
                        cv2.LUT(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB), self._lut, dst=self._input)
                    else:
                        cv2.LUT(crop, self._lut, dst=grey)
                raw[row] = self.model.run(copy=False)[0].reshape(-1)
            probs = self._probabilities(raw)
        ids = tracks.ids[chosen].tolist()
        return {track_id: probs[row] for row, track_id in enumerate(ids)}

    def classify_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """``(n, k)`` float32 probabilities for face crops of any size, grey or BGR (e.g.
        FER2013's 48×48 greys, for `edge-fer eval`): exactly the resize → normalise → quantize
        path of `classify` after alignment."""
        if len(crops) == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        return self._infer(np.concatenate([self.preprocess(c) for c in crops]))

    def __repr__(self) -> str:
        return f"EmotionClassifier({self.name}, input={self.input_hw}x{self.channels}, labels={len(self.labels)})"
