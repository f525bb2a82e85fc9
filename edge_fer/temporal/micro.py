"""Micro-expression spotting: brief departures of a track's face from its own recent baseline (the algorithm: docs/DESIGN.md)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_fer.types import FaceObservation, MicroExpression
from edge_fer.vision.action_units import AU_NAMES, EYE_CLOSURE
from edge_fer.vision.affect import au_emotion_scores

logger = logging.getLogger(__name__)

#: The AUs reported with a spot (all but eye closure).
EXPRESSION_AUS: tuple[str, ...] = tuple(au for au in AU_NAMES if au not in EYE_CLOSURE)
#: The AUs whose rise is evidence of an expression: not eye closure (blinks), and not lips
#: parting or the jaw dropping alone (talking).
EVIDENCE_AUS: tuple[str, ...] = tuple(au for au in EXPRESSION_AUS if au not in ("AU25", "AU26"))
#: Smallest onset of a class near saturation (probability noise must not pass for a rise).
HEADROOM_MIN = 0.05
#: Cap of each signal's normalised rise in the evidence (one signal alone can reach 1 only at 2x).
EVIDENCE_CAP = 2.0
#: AUs reported with a spot: those that rose at least this much at the apex.
REPORT_AU_MIN = 0.05
#: A class whose probability rose at least this much at the apex names the spot.
LABEL_MIN_RISE = 0.05


@dataclass
class _Episode:
    onset_t: float
    apex_t: float
    apex_evidence: float
    prob_rise: list[float] | None
    au_rise: list[float] | None
    pose: tuple[float, float, float] | None
    turned_deg: float = 0.0
    macro: bool = False


@dataclass
class _TrackState:
    first_t: float
    last_t: float
    probs: list[float] | None = None
    prob_base: list[float] | None = None
    aus: list[float] | None = None
    au_base: list[float] | None = None
    pose: tuple[float, float, float] | None = None
    episode: _Episode | None = None


class MicroSpotter:
    """Spots micro-expressions per track from raw probabilities and action units.

    Args:
        labels: class names in probability order; ``neutral`` never counts as an expression.
        min_ms: shortest episode reported (ms); shorter ones are noise.
        max_ms: longest episode reported (ms); longer ones are macro-expressions.
        onset: rise of a class's probability above its baseline that counts as a full departure.
        au_onset: rise of an AU's intensity above its baseline that counts as a full departure.
        offset_ratio: the episode ends when the evidence falls below this (0 < ratio < 1).
        baseline_s: time constant (s) of the per-track baselines.
        warmup_s: a track needs this much history before anything is spotted on it (its
            baseline is not known before).
        max_gap_s: a gap between observations longer than this cancels the episode in progress.
        head_turn_deg: an episode during which yaw, pitch or roll changed by more than this is
            a head movement, not an expression.
    """

    def __init__(
        self,
        labels: Sequence[str],
        min_ms: float = 40.0,
        max_ms: float = 500.0,
        onset: float = 0.25,
        au_onset: float = 0.25,
        offset_ratio: float = 0.4,
        baseline_s: float = 3.0,
        warmup_s: float = 1.0,
        max_gap_s: float = 0.25,
        head_turn_deg: float = 15.0,
    ) -> None:
        if not 0 < min_ms < max_ms:
            raise ValueError(f"need 0 < min_ms < max_ms, got {min_ms}, {max_ms}")
        if not (0 < onset < 1 and 0 < au_onset < 1):
            raise ValueError(f"onset and au_onset must be in (0, 1), got {onset}, {au_onset}")
        if not 0 < offset_ratio < 1:
            raise ValueError(f"offset_ratio must be in (0, 1), got {offset_ratio}")
        if baseline_s <= 0 or warmup_s < 0 or max_gap_s <= 0 or head_turn_deg <= 0:
            raise ValueError("baseline_s, max_gap_s and head_turn_deg must be > 0 and warmup_s >= 0")
        self.labels = tuple(labels)
        self.min_s, self.max_s = min_ms / 1000.0, max_ms / 1000.0
        self.onset, self.au_onset, self.offset_ratio = onset, au_onset, offset_ratio
        self.baseline_s, self.warmup_s, self.max_gap_s = baseline_s, warmup_s, max_gap_s
        self.head_turn_deg = head_turn_deg
        self._expressive = np.array([label != "neutral" for label in self.labels])
        self._evidence_index = np.array([EXPRESSION_AUS.index(au) for au in EVIDENCE_AUS])
        # The per-frame path works on Python floats (7 classes, 9 AUs: numpy calls on arrays
        # this small cost more than the arithmetic); only a spot's labelling uses the arrays.
        self._expressive_list: list[bool] = self._expressive.tolist()
        self._evidence_list: list[int] = self._evidence_index.tolist()
        self._tracks: dict[int, _TrackState] = {}

    def active(self, track_id: int) -> bool:
        """True while an episode is open on the track (the pipeline then classifies every frame)."""
        state = self._tracks.get(track_id)
        return state is not None and state.episode is not None and not state.episode.macro

    def update(self, observations: Sequence[FaceObservation], raw: dict[int, np.ndarray], t: float) -> list[MicroExpression]:
        """Feed one frame at time `t` (s).

        Args:
            observations: this frame's observations; the action units and head pose of those
                with ``meshed`` True are new.
            raw: track id → freshly classified, unsmoothed probabilities (tracks classified in
                this frame only).

        Returns:
            The micro-expressions that ended in this frame.
        """
        meshed = {o.track_id: o for o in observations if o.meshed and o.action_units is not None}
        found = []
        for track_id in sorted(set(raw) | set(meshed)):
            obs = meshed.get(track_id)
            aus = None if obs is None else [float(obs.action_units.get(au, 0.0)) for au in EXPRESSION_AUS]  # type: ignore[union-attr]
            probs = raw.get(track_id)
            spot = self._update_track(
                track_id,
                None if probs is None else [float(p) for p in np.asarray(probs).tolist()],
                aus,
                None if obs is None else obs.head_pose,
                t,
            )
            if spot is not None:
                found.append(spot)
        return found

    def _evidence(self, state: _TrackState) -> tuple[float, list[float] | None, list[float] | None]:
        prob_rise = au_rise = None
        e_p = e_a = 0.0
        if state.probs is not None and state.prob_base is not None:
            prob_rise = [p - b if e else -1.0 for p, b, e in zip(state.probs, state.prob_base, self._expressive_list)]
            # A class the resting face already shows cannot rise by `onset`: half of what is
            # left to it counts as a full onset then.
            e_p = max(r / min(self.onset, max((1.0 - b) / 2.0, HEADROOM_MIN)) for r, b in zip(prob_rise, state.prob_base))
        if state.aus is None or state.au_base is None:
            return e_p, prob_rise, None
        au_rise = [a - b for a, b in zip(state.aus, state.au_base)]
        e_a = max(au_rise[i] for i in self._evidence_list) / self.au_onset
        if prob_rise is None:
            return min(e_a, EVIDENCE_CAP) / 2.0, None, au_rise
        return (min(e_p, EVIDENCE_CAP) + min(e_a, EVIDENCE_CAP)) / 2.0, prob_rise, au_rise

    def _adapt(self, state: _TrackState, gap: float) -> None:
        keep = math.exp(-gap / self.baseline_s)
        if state.probs is not None and state.prob_base is not None:
            state.prob_base = [keep * b + (1 - keep) * p for b, p in zip(state.prob_base, state.probs)]
        if state.aus is not None and state.au_base is not None:
            state.au_base = [keep * b + (1 - keep) * a for b, a in zip(state.au_base, state.aus)]

    def _update_track(
        self,
        track_id: int,
        probs: list[float] | None,
        aus: list[float] | None,
        pose: tuple[float, float, float] | None,
        t: float,
    ) -> MicroExpression | None:
        state = self._tracks.get(track_id)
        if state is None:
            state = self._tracks[track_id] = _TrackState(first_t=t, last_t=t)
        elif t <= state.last_t:
            return None
        gap = t - state.last_t
        state.last_t = t
        if probs is not None:
            state.probs = probs
            state.prob_base = list(probs) if state.prob_base is None else state.prob_base
        if aus is not None:
            state.aus = aus
            state.au_base = list(aus) if state.au_base is None else state.au_base
        if pose is not None:
            state.pose = pose
        if gap == 0.0:
            return None  # the track's first frame: its baseline
        if gap > self.max_gap_s:
            state.episode = None  # dropped frames: the episode's true extent is unknown
        evidence, prob_rise, au_rise = self._evidence(state)
        episode = state.episode
        if episode is None:
            if evidence >= 1.0 and t - state.first_t >= self.warmup_s:
                state.episode = _Episode(t - gap / 2, t, evidence, prob_rise, au_rise, state.pose)
            else:
                self._adapt(state, gap)
            return None
        if episode.pose is not None and state.pose is not None:
            turned = max(abs(a - b) for a, b in zip(state.pose, episode.pose))
            episode.turned_deg = max(episode.turned_deg, turned)
        if evidence > episode.apex_evidence:
            episode.apex_t, episode.apex_evidence = t, evidence
            episode.prob_rise, episode.au_rise = prob_rise, au_rise
        if episode.macro or t - episode.onset_t > self.max_s + self.max_gap_s:
            # A macro-expression: wait for its end and let the baseline follow it meanwhile.
            episode.macro = True
            self._adapt(state, gap)
            if evidence < self.offset_ratio:
                state.episode = None
            return None
        if evidence >= self.offset_ratio:
            return None
        state.episode = None
        offset_t = t - gap / 2
        duration = offset_t - episode.onset_t
        if episode.turned_deg > self.head_turn_deg:
            logger.debug(
                "track %d: a %.0f ms departure with the head turning %.0f° is a head movement", track_id, duration * 1000, episode.turned_deg
            )
            return None
        if not self.min_s <= duration <= self.max_s:
            return None
        emotion, intensity = self._label(episode)
        return MicroExpression(
            track_id=track_id,
            emotion=emotion,
            onset_t=episode.onset_t,
            apex_t=episode.apex_t,
            offset_t=offset_t,
            intensity=intensity,
            action_units=self._apex_aus(episode),
        )

    def _label(self, episode: _Episode) -> tuple[str, float]:
        """The spotted class and its intensity in [0, 1]: the largest rise at the apex of the
        class's probability or of an evidence AU."""
        prob_rise = None if episode.prob_rise is None else np.array(episode.prob_rise)
        au_rise = None if episode.au_rise is None else np.clip(np.array(episode.au_rise), 0.0, 1.0)
        k = None if prob_rise is None else int(np.argmax(prob_rise))
        strength = 0.0 if k is None or prob_rise is None else float(prob_rise[k])
        if (k is None or strength < LABEL_MIN_RISE) and au_rise is not None and au_rise.max() > 0:
            scores = au_emotion_scores(dict(zip(EXPRESSION_AUS, au_rise.tolist())), self.labels)
            k = int(np.argmax(np.where(self._expressive, scores, -1.0)))
        intensity = max(strength, 0.0 if au_rise is None else float(au_rise[self._evidence_index].max()))
        return self.labels[k if k is not None else int(np.argmax(self._expressive))], min(max(intensity, 0.0), 1.0)

    @staticmethod
    def _apex_aus(episode: _Episode) -> dict[str, float] | None:
        if episode.au_rise is None:
            return None
        return {au: round(float(v), 3) for au, v in zip(EXPRESSION_AUS, episode.au_rise) if v >= REPORT_AU_MIN}

    def forget(self, track_ids: Sequence[int]) -> None:
        for track_id in track_ids:
            self._tracks.pop(track_id, None)
