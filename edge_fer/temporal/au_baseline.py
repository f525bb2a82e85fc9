"""Per-track action units: each face measured against its own calm frames, and blinks told from closed eyes.

A face's raw measures depend on the person (a wide mouth, low brows): an AU is the *change* from
the same face at rest. Each track keeps a baseline of its measures, the time-weighted mean of
its calm frames (the emotion model reads neutral, the head is roughly frontal, the eyes open)
with older frames forgotten with time constant `baseline_s`, shrunk towards the population
prior (`NEUTRAL_PRIOR`) with the weight of `prior_s` seconds of calm frames. A new track, or one
never calm, is measured against the prior; after a few seconds of calm frames, against itself.

Eye closure becomes AU45 (blink) from the frame it reaches `CLOSED` until it has lasted
`blink_max_ms`, and AU43 (eyes closed) after that; a partial narrowing is AU43 too. Decided as
the frames come (a closure is a blink until it has lasted longer than one).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from edge_fer.vision.action_units import AU_NAMES, NEUTRAL_PRIOR, intensities

_AU43, _AU45 = AU_NAMES.index("AU43"), AU_NAMES.index("AU45")
#: Eye closure from which the eyes count as closed (for the blink / closed split).
CLOSED = 0.5
#: A calm frame's weight is the time since the previous one, capped (s): a gap is not calm time.
MAX_FRAME_WEIGHT_S = 0.1
#: Weight of a track's first frame (no interval yet): one frame at 30 frames/s.
FIRST_FRAME_WEIGHT_S = 1.0 / 30.0


@dataclass
class _State:
    weight_s: float
    weighted_sum: np.ndarray
    last_t: float
    closed_since: float | None = None


class ActionUnitTracker:
    """Baselines and AU intensities per track.

    Args:
        baseline_s: time constant (s) with which old calm frames are forgotten.
        prior_s: weight of the population prior, in seconds of calm frames.
        blink_max_ms: eye closure lasting up to this is a blink (AU45), longer is AU43.
    """

    def __init__(self, baseline_s: float = 30.0, prior_s: float = 0.5, blink_max_ms: float = 400.0) -> None:
        if baseline_s <= 0 or prior_s <= 0 or blink_max_ms <= 0:
            raise ValueError(f"baseline_s, prior_s and blink_max_ms must be > 0, got {baseline_s}, {prior_s}, {blink_max_ms}")
        self.baseline_s, self.prior_s, self.blink_max_s = baseline_s, prior_s, blink_max_ms / 1000.0
        self._tracks: dict[int, _State] = {}

    def baseline(self, track_id: int) -> np.ndarray:
        """The track's current resting measures (the prior for an unknown track)."""
        state = self._tracks.get(track_id)
        if state is None:
            return NEUTRAL_PRIOR.copy()
        return np.asarray((self.prior_s * NEUTRAL_PRIOR + state.weighted_sum) / (self.prior_s + state.weight_s))

    def update(self, track_id: int, measures: np.ndarray, t: float, calm: bool) -> np.ndarray:
        """Fold one frame's raw measures (seen at `t`, s) into the track and return its AU
        intensities (`AU_NAMES` order) against the baseline *before* this frame.

        Args:
            calm: the frame may count as the face at rest (the caller decides: neutral
                expression, frontal head, eyes open).
        """
        state = self._tracks.get(track_id)
        if state is None:
            state = self._tracks[track_id] = _State(0.0, np.zeros_like(NEUTRAL_PRIOR), t)
        baseline = (self.prior_s * NEUTRAL_PRIOR + state.weighted_sum) / (self.prior_s + state.weight_s)
        aus = intensities(measures, baseline)
        dt = max(t - state.last_t, 0.0)
        state.last_t = t
        keep = math.exp(-dt / self.baseline_s)
        state.weight_s *= keep
        closure = float(aus[_AU45])
        if closure >= CLOSED:
            state.closed_since = t if state.closed_since is None else state.closed_since
        else:
            state.closed_since = None
        if calm and closure < CLOSED:
            w = min(dt, MAX_FRAME_WEIGHT_S) or FIRST_FRAME_WEIGHT_S
            state.weight_s += w
            state.weighted_sum = keep * state.weighted_sum + w * np.asarray(measures, np.float64)
        else:
            state.weighted_sum *= keep
        # Narrowed or closed for longer than a blink: AU43; closed for a blink's time so far: AU45.
        blink = state.closed_since is not None and t - state.closed_since <= self.blink_max_s
        aus[_AU43 if blink else _AU45] = 0.0
        return aus

    def forget(self, track_ids: Iterable[int]) -> None:
        for track_id in track_ids:
            self._tracks.pop(track_id, None)
