"""Per-track exponential smoothing of class probabilities, by time rather than by frame count."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


class ProbabilitySmoother:
    """Exponential moving average of each track's probabilities with time constant `tau_s`.

    The weight of the past is ``exp(-dt / tau_s)``, so the smoothing means the same at 15 and
    at 60 frames/s, and a gap (dropped frames) lets the new value count more.

    Args:
        tau_s: time constant in seconds; 0 disables smoothing (the newest value is returned).
    """

    def __init__(self, tau_s: float = 0.3) -> None:
        if tau_s < 0:
            raise ValueError(f"tau_s must be >= 0, got {tau_s}")
        self.tau_s = tau_s
        self._state: dict[int, tuple[float, np.ndarray]] = {}

    def update(self, track_id: int, probs: np.ndarray, t: float) -> np.ndarray:
        """Fold `probs` seen at time `t` (s) into the track's average and return the average."""
        previous = self._state.get(track_id)
        if previous is None or self.tau_s == 0:
            smoothed = probs.astype(np.float32, copy=True)
        else:
            last_t, last = previous
            keep = math.exp(-max(t - last_t, 0.0) / self.tau_s)
            smoothed = (keep * last + (1.0 - keep) * probs).astype(np.float32)
            smoothed /= max(float(smoothed.sum()), 1e-9)
        self._state[track_id] = (t, smoothed)
        return smoothed

    def forget(self, track_ids: Iterable[int]) -> None:
        for track_id in track_ids:
            self._state.pop(track_id, None)
