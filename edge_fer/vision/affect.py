"""Valence and arousal from emotion probabilities: a model of the expression, not of the feeling.

Each class sits at a point of Russell's circumplex (valence = pleasant ↔ unpleasant, arousal =
activated ↔ calm); an observation's valence and arousal are the probability-weighted mean of
those points. The coordinates below are the usual placements of the basic emotions on the
circumplex (Russell 1980; the same placement as AffectNet's category means, rounded). Limits:
a posed, prototypical expression maps well; a polite smile reads as pleasant whatever the person
feels, and a neutral face reads as (0, 0) even in a calm, content person.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def circumplex_matrix(labels: Sequence[str]) -> np.ndarray:
    """``(k, 2)`` coordinates for `labels`; an unknown label sits at the origin."""
    return np.array([CIRCUMPLEX.get(label, (0.0, 0.0)) for label in labels], np.float32)


def valence_arousal(probs: np.ndarray, labels: Sequence[str]) -> tuple[float, float]:
    """Valence and arousal in [-1, 1] of one probability vector over `labels`."""
    va = np.clip(probs.astype(np.float32) @ circumplex_matrix(labels), -1.0, 1.0)
    return float(va[0]), float(va[1])


def valence_arousal_batch(probs: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """``(n, k)`` probabilities → ``(n, 2)`` valence, arousal."""
    return np.clip(probs.astype(np.float32) @ circumplex_matrix(labels), -1.0, 1.0)
