"""Valence and arousal of an expression from its emotion probabilities and action units (the circumplex and its limits: docs/DESIGN.md)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import numpy as np

#: (valence, arousal) per class, both in [-1, 1].
CIRCUMPLEX: dict[str, tuple[float, float]] = {
    "happy": (0.8, 0.5),
    "surprise": (0.2, 0.8),
    "angry": (-0.6, 0.7),
    "fear": (-0.7, 0.6),
    "disgust": (-0.7, 0.3),
    "sad": (-0.7, -0.4),
    "contempt": (-0.5, 0.2),
    "neutral": (0.0, 0.0),
}

#: AUs of each emotion's prototype (EMFACS, Friesen & Ekman 1983), limited to the AUs edge-fer
#: estimates; an emotion's AU score is the mean intensity of its AUs.
AU_PROTOTYPES: dict[str, tuple[str, ...]] = {
    "happy": ("AU6", "AU12"),
    "surprise": ("AU1", "AU2", "AU26"),
    "sad": ("AU1", "AU4", "AU15"),
    "fear": ("AU1", "AU2", "AU4", "AU20", "AU25"),
    "angry": ("AU4",),
}
#: Weight of the AU-derived circumplex point against the classifier's.
AU_WEIGHT = 0.3

#: Other spellings of the same classes (FERPlus / AffectNet use nouns).
ALIASES: dict[str, str] = {
    "happiness": "happy",
    "surprised": "surprise",
    "anger": "angry",
    "fearful": "fear",
    "disgusted": "disgust",
    "sadness": "sad",
}


@functools.lru_cache(maxsize=32)
def _circumplex(labels: tuple[str, ...]) -> np.ndarray:
    """``(k, 2)`` circumplex points of `labels` (case-insensitive, with `ALIASES`), built once per
    label set and read-only; a label with no place on the circumplex (e.g. ``unknown``) sits at
    the origin and so only dilutes."""
    rows = []
    for label in labels:
        key = label.strip().lower()
        rows.append(CIRCUMPLEX.get(ALIASES.get(key, key), (0.0, 0.0)))
    matrix = np.array(rows, np.float32).reshape(len(rows), 2)
    matrix.flags.writeable = False
    return matrix


@functools.lru_cache(maxsize=16)
def _prototype_table(labels: tuple[str, ...]) -> tuple[tuple[tuple[int, tuple[str, ...]], ...], int | None]:
    """For `labels`: (class index, its prototype AUs) for each class with a prototype, and the
    index of neutral (None when absent)."""
    keys = [ALIASES.get(label.strip().lower(), label.strip().lower()) for label in labels]
    table = tuple((i, AU_PROTOTYPES[key]) for i, key in enumerate(keys) if key in AU_PROTOTYPES)
    return table, keys.index("neutral") if "neutral" in keys else None


def au_emotion_scores(action_units: Mapping[str, float], labels: Sequence[str]) -> np.ndarray:
    """``(k,)`` in [0, 1]: how strongly the AUs show each class's prototype (`AU_PROTOTYPES`;
    classes without one, such as disgust, score 0; neutral scores ``1 - max`` of the others)."""
    table, neutral = _prototype_table(tuple(labels))
    scores = np.zeros(len(labels), np.float32)
    for i, prototype in table:
        scores[i] = sum(action_units.get(au, 0.0) for au in prototype) / len(prototype)
    if neutral is not None:
        scores[neutral] = 1.0 - float(scores.max(initial=0.0))
    return scores


@functools.lru_cache(maxsize=16)
def _affect_table(labels: tuple[str, ...]) -> tuple[tuple[tuple[float, float], ...], tuple[tuple[int, tuple[str, ...]], ...], int | None]:
    """For `labels`: each class's circumplex point as floats, and `_prototype_table`."""
    return tuple((float(v), float(a)) for v, a in _circumplex(labels).tolist()), *_prototype_table(labels)


def affect(probs: np.ndarray, labels: Sequence[str], action_units: Mapping[str, float] | None = None) -> tuple[float, float]:
    """Valence and arousal in [-1, 1] of one ``(k,)`` probability vector over `labels`: the
    expectation of the classes' circumplex points, or, with action units, ``(1 - AU_WEIGHT)`` ×
    that + `AU_WEIGHT` × the circumplex point of the AU prototype scores (docs/DESIGN.md).

    Raises:
        ValueError: `probs` is not ``(k,)`` with ``k = len(labels)``.

    Computed on Python floats (the pipeline calls this per face and frame, with 7 classes:
    numpy calls on such tiny arrays cost more than the arithmetic)."""
    points, table, neutral = _affect_table(labels if isinstance(labels, tuple) else tuple(labels))
    p = probs.tolist() if isinstance(probs, np.ndarray) else list(probs)
    if len(p) != len(points) or (isinstance(probs, np.ndarray) and probs.ndim != 1):
        raise ValueError(f"probs must have shape ({len(points)},) for {len(points)} labels, got {np.shape(probs)}")
    valence = sum(q * v for q, (v, _) in zip(p, points))
    arousal = sum(q * a for q, (_, a) in zip(p, points))
    if action_units:
        scores = [0.0] * len(points)
        for i, prototype in table:
            scores[i] = sum(action_units.get(au, 0.0) for au in prototype) / len(prototype)
        if neutral is not None:
            scores[neutral] = 1.0 - max(max(scores), 0.0)
        total = sum(scores)
        if total > 0:
            valence = (1 - AU_WEIGHT) * valence + AU_WEIGHT * sum(w * v for w, (v, _) in zip(scores, points)) / total
            arousal = (1 - AU_WEIGHT) * arousal + AU_WEIGHT * sum(w * a for w, (_, a) in zip(scores, points)) / total
    return min(max(valence, -1.0), 1.0), min(max(arousal, -1.0), 1.0)
