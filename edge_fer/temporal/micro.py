"""Micro-expression spotting: brief departures of a track's expression from its own baseline.

Per track, a slow baseline of the class probabilities is kept (time constant `baseline_s`,
updated only while nothing is happening). An *episode* starts when some non-neutral class rises
`onset` above its baseline, reaches its apex, and ends when it falls back below `offset`. An
episode lasting `min_ms`–`max_ms` is a micro-expression; a longer one is a macro-expression (not
reported here; the window summary covers it). Everything runs on timestamps, so the same
settings hold at 15, 30 or 60 frames/s and across dropped frames; a gap longer than `max_gap_s`
cancels the episode in progress (its true duration is unknown).

This first version reads the emotion probabilities only; action units from the face mesh (which
separate blinks and head turns from expressions) are the next step (issue 5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_fer.types import FaceObservation, MicroExpression


@dataclass
class _Episode:
    onset_t: float
    apex_t: float
    apex_value: float
    emotion: int


@dataclass
class _TrackState:
    baseline: np.ndarray
    first_t: float
    last_t: float
    episode: _Episode | None = None


class MicroSpotter:
    """Spots micro-expressions per track from (unsmoothed) class probabilities.

    Args:
        labels: class names in probability order; ``neutral`` never counts as an expression.
        min_ms: shortest episode reported (ms); shorter ones are noise.
        max_ms: longest episode reported (ms); longer ones are macro-expressions.
        onset: rise of a class's probability above its baseline that starts an episode (0–1).
        offset: rise below which the episode ends (hysteresis: lower than `onset`).
        baseline_s: time constant of the per-track baseline (s).
        warmup_s: a track needs this much history before anything is spotted on it (its
            baseline is not known before).
        max_gap_s: a gap between observations longer than this cancels the episode in progress.
    """

    def __init__(
        self,
        labels: Sequence[str],
        min_ms: float = 40.0,
        max_ms: float = 500.0,
        onset: float = 0.3,
        offset: float = 0.15,
        baseline_s: float = 2.0,
        warmup_s: float = 0.5,
        max_gap_s: float = 0.25,
    ) -> None:
        if not 0 < min_ms < max_ms:
            raise ValueError(f"need 0 < min_ms < max_ms, got {min_ms}, {max_ms}")
        if not 0 < offset < onset < 1:
            raise ValueError(f"need 0 < offset < onset < 1, got offset={offset}, onset={onset}")
        if baseline_s <= 0 or warmup_s < 0 or max_gap_s <= 0:
            raise ValueError("baseline_s and max_gap_s must be > 0 and warmup_s >= 0")
        self.labels = tuple(labels)
        self.min_s, self.max_s = min_ms / 1000.0, max_ms / 1000.0
        self.onset, self.offset = onset, offset
        self.baseline_s, self.warmup_s, self.max_gap_s = baseline_s, warmup_s, max_gap_s
        self._expressive = np.array([label != "neutral" for label in self.labels])
        self._tracks: dict[int, _TrackState] = {}

    def update(self, observations: Sequence[FaceObservation], raw: dict[int, np.ndarray], t: float) -> list[MicroExpression]:
        """Feed one frame: `raw` maps track id → freshly classified (unsmoothed) probabilities;
        tracks without a fresh classification this frame are skipped. Returns the spotted ones."""
        del observations  # the probabilities of this frame come in `raw`
        found = []
        for track_id, probs in raw.items():
            spot = self._update_track(track_id, np.asarray(probs, np.float64), t)
            if spot is not None:
                found.append(spot)
        return found

    def _update_track(self, track_id: int, probs: np.ndarray, t: float) -> MicroExpression | None:
        state = self._tracks.get(track_id)
        if state is None:
            self._tracks[track_id] = _TrackState(baseline=probs.copy(), first_t=t, last_t=t)
            return None
        gap = t - state.last_t
        if gap <= 0:
            return None
        state.last_t = t
        if gap > self.max_gap_s:
            state.episode = None  # dropped frames: the episode's true extent is unknown
        rise = np.where(self._expressive, probs - state.baseline, -1.0)
        k = int(np.argmax(rise))
        episode = state.episode
        if episode is None:
            if rise[k] >= self.onset and t - state.first_t >= self.warmup_s:
                state.episode = _Episode(onset_t=t - gap / 2, apex_t=t, apex_value=float(rise[k]), emotion=k)
            else:
                keep = math.exp(-gap / self.baseline_s)
                state.baseline = keep * state.baseline + (1 - keep) * probs
            return None
        current = probs[episode.emotion] - state.baseline[episode.emotion]
        if current > episode.apex_value:
            episode.apex_t, episode.apex_value = t, float(current)
        if t - episode.onset_t > self.max_s + self.max_gap_s and current >= self.offset:
            return None  # a macro-expression: keep waiting for its end, report nothing
        if current >= self.offset:
            return None
        state.episode = None
        offset_t = t - gap / 2
        duration = offset_t - episode.onset_t
        if self.min_s <= duration <= self.max_s:
            return MicroExpression(
                track_id=track_id,
                emotion=self.labels[episode.emotion],
                onset_t=episode.onset_t,
                apex_t=episode.apex_t,
                offset_t=offset_t,
                intensity=min(max(episode.apex_value, 0.0), 1.0),
            )
        return None

    def forget(self, track_ids: Sequence[int]) -> None:
        for track_id in track_ids:
            self._tracks.pop(track_id, None)
