"""Valence and arousal from emotion probabilities: a model of the expression, not of the feeling.

Each class sits at a point of Russell's circumplex of affect (Russell, "A circumplex model of
affect", J. Personality and Social Psychology 39(6), 1980): valence = unpleasant (-1) ↔
pleasant (+1), arousal = calm (-1) ↔ activated (+1). An observation's valence and arousal are
the probability-weighted mean of its classes' points, clipped to [-1, 1].

The coordinates (`CIRCUMPLEX`) are the usual placements of the basic emotions on the circle,
rounded to one decimal (close to the per-category means of AffectNet's valence/arousal
annotations, Mollahosseini et al. 2017):

============  =======  =======
class         valence  arousal
============  =======  =======
happy          +0.8     +0.5
surprise       +0.2     +0.8
angry          -0.6     +0.7
fear           -0.7     +0.6
disgust        -0.7     +0.3
sad            -0.7     -0.4
contempt       -0.5     +0.2
neutral         0.0      0.0
============  =======  =======

Limits, said plainly: these numbers describe the **facial expression** a model read, not what
the person feels. A posed, prototypical expression maps well; a polite smile reads as pleasant
whatever the person feels, a neutral face reads as (0, 0) even in a calm, content person, and
an expression the classifier confuses moves the point with it.
"""

from __future__ import annotations

import functools
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

#: Other spellings of the same classes (FERPlus / AffectNet use nouns).
ALIASES: dict[str, str] = {
    "happiness": "happy",
    "surprised": "surprise",
    "anger": "angry",
    "fearful": "fear",
    "disgusted": "disgust",
    "sadness": "sad",
}


def circumplex_matrix(labels: Sequence[str]) -> np.ndarray:
    """``(k, 2)`` coordinates for `labels` (case-insensitive, with `ALIASES`); a label with no
    place on the circumplex (e.g. ``unknown``) sits at the origin and so only dilutes."""
    return _circumplex(tuple(labels)).copy()


@functools.lru_cache(maxsize=32)
def _circumplex(labels: tuple[str, ...]) -> np.ndarray:
    """`circumplex_matrix`, built once per label set (read-only: the pipeline asks per face)."""
    rows = []
    for label in labels:
        key = label.strip().lower()
        rows.append(CIRCUMPLEX.get(ALIASES.get(key, key), (0.0, 0.0)))
    matrix = np.array(rows, np.float32).reshape(len(rows), 2)
    matrix.flags.writeable = False
    return matrix


def valence_arousal_batch(probs: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """``(n, k)`` probabilities over `labels` → ``(n, 2)`` float32 valence, arousal in [-1, 1].

    Raises:
        ValueError: `probs` is not ``(n, k)`` with ``k = len(labels)``.
    """
    probs = np.asarray(probs, np.float32)
    if probs.ndim != 2 or probs.shape[1] != len(labels):
        raise ValueError(f"probs must have shape (n, {len(labels)}) for {len(labels)} labels, got {probs.shape}")
    return np.clip(probs @ _circumplex(tuple(labels)), -1.0, 1.0)


def valence_arousal(probs: np.ndarray, labels: Sequence[str]) -> tuple[float, float]:
    """Valence and arousal in [-1, 1] of one ``(k,)`` probability vector over `labels` (the
    expectation of the classes' circumplex points).

    Raises:
        ValueError: `probs` is not ``(k,)`` with ``k = len(labels)``.
    """
    probs = np.asarray(probs, np.float32)
    if probs.shape != (len(labels),):
        raise ValueError(f"probs must have shape ({len(labels)},) for {len(labels)} labels, got {probs.shape}")
    valence, arousal = (probs @ _circumplex(tuple(labels))).tolist()
    return min(max(valence, -1.0), 1.0), min(max(arousal, -1.0), 1.0)
