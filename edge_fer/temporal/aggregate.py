"""Aggregation: per-frame observations → anonymous window summaries and per-track summaries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edge_fer.types import FaceObservation, MicroExpression, Tracks, TrackSummary, WindowSummary


@dataclass
class _TrackAcc:
    first_t: float
    last_t: float
    prob_sum: np.ndarray
    valence_sum: float = 0.0
    n: int = 0


@dataclass
class _WindowAcc:
    start_t: float
    frames: int = 0
    faces_max: int = 0
    distinct: set[int] = field(default_factory=set)
    dwell_s: float = 0.0
    prob_sum: np.ndarray | None = None
    valence_sum: float = 0.0
    arousal_sum: float = 0.0
    n: int = 0
    attending: int = 0
    attention_n: int = 0
    attending_s: float = 0.0
    micro: int = 0
    uncertain: int = 0
    low_quality: int = 0
    confidence_sum: float = 0.0
    total: int = 0
    truncated: int = 0


class Aggregator:
    """Accumulates what the pipeline saw and closes fixed windows of `window_s` seconds.

    Emotion shares are the mean probability mass per class over the confident face observations
    of the window (they sum to 1): a window where one face looked 70 % happy for half the time and
    neutral otherwise reports happy ≈ 0.35 — an average of expressions, not of people.
    Uncertain observations (below the abstention threshold) and low-quality ones (failed the
    face-quality gate) are counted but not averaged.

    Attention (faces whose observation says `attending`, from the head pose): the share of
    face observations attending, and the face-seconds spent attending (``attending_s``, like
    ``dwell_s`` but only while turned towards the camera). Both need the face mesh, and both
    are withheld with the emotions when the window has fewer than `min_faces` faces.

    Args:
        labels: class names of the emotion model, in probability order.
        window_s: window length in seconds of frame time.
        min_faces: k-anonymity: a window with fewer distinct tracks publishes its counts but
            not its emotion shares, valence or arousal.
    """

    def __init__(self, labels: Sequence[str], window_s: float = 10.0, min_faces: int = 1) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        if min_faces < 1:
            raise ValueError(f"min_faces must be >= 1, got {min_faces}")
        self.labels = tuple(labels)
        self.window_s = window_s
        self.min_faces = min_faces
        self._window: _WindowAcc | None = None
        self._tracks: dict[int, _TrackAcc] = {}
        self._last_t: float | None = None

    def add(self, t: float, tracks: Tracks, observations: Sequence[FaceObservation], truncated: int = 0) -> None:
        """Record one processed frame at time `t` (s): the tracks alive and their observations,
        and how many faces the detector left out of it (``detector.max_faces``)."""
        if self._window is None:
            self._window = _WindowAcc(start_t=t)
        w = self._window
        dt = 0.0 if self._last_t is None else max(t - self._last_t, 0.0)
        self._last_t = t
        seen = tracks.ids[tracks.seen] if len(tracks) else np.zeros((0,), np.int64)
        w.frames += 1
        w.truncated = max(w.truncated, truncated)
        w.faces_max = max(w.faces_max, int(len(seen)))
        w.distinct.update(int(i) for i in seen)
        w.dwell_s += dt * len(seen)
        for obs in observations:
            w.total += 1
            # Attention comes from the head pose, not the expression: uncertain faces count.
            if obs.attending is not None:
                w.attention_n += 1
                w.attending += int(obs.attending)
                w.attending_s += dt * obs.attending
            if obs.low_quality:
                w.low_quality += 1
                continue
            if obs.uncertain:
                w.uncertain += 1
                continue
            w.confidence_sum += obs.confidence
            if w.prob_sum is None:
                w.prob_sum = np.zeros(len(obs.probs), np.float64)
            w.prob_sum += obs.probs
            w.valence_sum += obs.valence
            w.arousal_sum += obs.arousal
            w.n += 1
            acc = self._tracks.get(obs.track_id)
            if acc is None:
                acc = self._tracks[obs.track_id] = _TrackAcc(obs.t, obs.t, np.zeros(len(obs.probs), np.float64))
            acc.last_t = obs.t
            acc.prob_sum += obs.probs
            acc.valence_sum += obs.valence
            acc.n += 1

    def add_micro(self, micro: MicroExpression) -> None:
        if self._window is not None:
            self._window.micro += 1

    def due(self, t: float) -> bool:
        """True when the current window has lasted `window_s` at time `t`."""
        return self._window is not None and t - self._window.start_t >= self.window_s

    def flush(self, t: float) -> WindowSummary | None:
        """Close the current window at time `t` and return its summary (None if empty)."""
        w = self._window
        if w is None or w.frames == 0:
            return None
        self._window = _WindowAcc(start_t=t)
        span = max(t - w.start_t, 1e-9)
        suppressed = len(w.distinct) < self.min_faces and len(w.distinct) > 0
        shares = valence = arousal = None
        if w.n and w.prob_sum is not None and not suppressed:
            mean = w.prob_sum / w.n
            shares = {label: float(p) for label, p in zip(self.labels, mean)}
            valence, arousal = w.valence_sum / w.n, w.arousal_sum / w.n
        return WindowSummary(
            start_t=w.start_t,
            end_t=t,
            frames=w.frames,
            fps=w.frames / span,
            faces_max=w.faces_max,
            faces_distinct=len(w.distinct),
            dwell_s=w.dwell_s,
            observations=w.total,
            emotion_shares=shares,
            mean_valence=valence,
            mean_arousal=arousal,
            micro_expressions=w.micro,
            attention_share=(w.attending / w.attention_n) if w.attention_n and not suppressed else None,
            attending_s=w.attending_s if w.attention_n and not suppressed else None,
            suppressed=suppressed,
            uncertain=w.uncertain,
            mean_confidence=(w.confidence_sum / w.n) if w.n and not suppressed else None,
            faces_truncated=w.truncated,
            low_quality=w.low_quality,
        )

    def end_tracks(self, track_ids: Sequence[int]) -> list[TrackSummary]:
        """Summaries of tracks that ended (tracks never classified give no summary)."""
        out = []
        for track_id in track_ids:
            acc = self._tracks.pop(track_id, None)
            if acc is None or acc.n == 0:
                continue
            mean = acc.prob_sum / acc.n
            out.append(
                TrackSummary(
                    track_id=track_id,
                    first_t=acc.first_t,
                    last_t=acc.last_t,
                    dominant_emotion=self.labels[int(np.argmax(mean))],
                    emotion_shares={label: float(p) for label, p in zip(self.labels, mean)},
                    mean_valence=acc.valence_sum / acc.n,
                    observations=acc.n,
                )
            )
        return out
