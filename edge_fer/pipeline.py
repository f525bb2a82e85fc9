"""The per-frame pipeline: detect → track → classify (only what needs it) → smooth → aggregate.

`Pipeline.process` is pure with respect to time and I/O: it takes a `Frame` and returns a
`FrameResult`; threads, sinks and clocks live in `edge_fer.runner`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from edge_fer.aggregate import Aggregator
from edge_fer.temporal import ProbabilitySmoother, Tracker
from edge_fer.temporal.micro import MicroSpotter
from edge_fer.types import FaceObservation, Frame, MicroExpression, Tracks, TrackSummary, WindowSummary
from edge_fer.vision.affect import valence_arousal

if TYPE_CHECKING:
    from edge_fer.config import Settings
    from edge_fer.vision.blazeface import FaceDetector
    from edge_fer.vision.emotion import EmotionClassifier

#: The stages timed per frame, in pipeline order: ``capture`` (waiting for a decoded frame),
#: ``preprocess`` (frame → detector input tensor), ``detect`` (detector invoke, decoding, NMS),
#: ``track``, ``classify`` (alignment, emotion invokes), ``temporal`` (smoothing,
#: micro-expressions), ``aggregate`` and ``publish`` (sinks).
STAGES = ("capture", "preprocess", "detect", "track", "classify", "temporal", "aggregate", "publish")


class StageTimer:
    """Latency of each stage over the last `maxlen` frames, in milliseconds."""

    def __init__(self, maxlen: int = 2000) -> None:
        self._samples: dict[str, deque[float]] = {}
        self.maxlen = maxlen

    @contextmanager
    def time(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.record(stage, (time.perf_counter() - start) * 1000.0)

    def record(self, stage: str, ms: float) -> None:
        samples = self._samples.get(stage)
        if samples is None:
            samples = self._samples[stage] = deque(maxlen=self.maxlen)
        samples.append(ms)

    def percentiles(self) -> dict[str, dict[str, float]]:
        """``{stage: {"p50": ms, "p95": ms, "mean": ms}}`` for every stage seen so far."""
        out = {}
        for stage, samples in self._samples.items():
            if samples:
                arr = np.fromiter(samples, np.float64)
                p50, p95 = np.percentile(arr, [50, 95])
                out[stage] = {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "mean": round(float(arr.mean()), 3)}
        return out


@dataclass(frozen=True)
class FrameResult:
    """What one frame produced: live tracks, their observations, and anything that closed."""

    frame_index: int
    t: float
    tracks: Tracks
    observations: tuple[FaceObservation, ...]
    ended_tracks: tuple[TrackSummary, ...] = ()
    summary: WindowSummary | None = None
    classified: int = 0
    micro_expressions: tuple[MicroExpression, ...] = ()


@dataclass
class _TrackMemo:
    last_classified: int
    observation: FaceObservation | None = None


@dataclass
class Pipeline:
    """Wires the pure stages for one stream of frames.

    Args:
        detector: finds faces (`FaceDetector.detect`).
        classifier: emotion probabilities per track (`EmotionClassifier.classify`).
        tracker: ephemeral-id tracker.
        smoother: per-track smoothing of probabilities.
        aggregator: window and track summaries.
        every_n_frames: a stable track is re-classified every N processed frames; a new
            (not yet stable) track every frame.
        stable_hits: detections after which a track counts as stable.
        min_confidence: abstention threshold on the (smoothed) top probability.
        timer: collects per-stage latencies.
    """

    detector: FaceDetector
    classifier: EmotionClassifier
    tracker: Tracker
    smoother: ProbabilitySmoother
    aggregator: Aggregator
    every_n_frames: int = 2
    stable_hits: int = 3
    min_confidence: float = 0.0
    spotter: MicroSpotter | None = None
    timer: StageTimer = field(default_factory=StageTimer)
    _memo: dict[int, _TrackMemo] = field(default_factory=dict)
    _processed: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> Pipeline:
        """Build every stage from the settings.

        Raises:
            ModelError: a model is missing, corrupt or breaks its manifest contract.
        """
        from edge_fer.vision.blazeface import FaceDetector
        from edge_fer.vision.emotion import EmotionClassifier

        classifier = EmotionClassifier.from_settings(settings)
        return cls(
            detector=FaceDetector.from_settings(settings),
            classifier=classifier,
            tracker=Tracker(settings.tracker.iou_threshold, settings.tracker.max_missed_s),
            smoother=ProbabilitySmoother(settings.classifier.smoothing_s),
            aggregator=Aggregator(classifier.labels, settings.aggregate.window_s, settings.aggregate.min_faces),
            every_n_frames=settings.classifier.every_n_frames,
            stable_hits=settings.tracker.stable_hits,
            min_confidence=settings.classifier.min_confidence,
            spotter=MicroSpotter(classifier.labels, settings.micro.min_ms, settings.micro.max_ms, settings.micro.onset, settings.micro.onset / 2),
        )

    def process(self, frame: Frame) -> FrameResult:
        """Run every stage on `frame`; returns what it produced (see `FrameResult`)."""
        record, clock = self.timer.record, time.perf_counter
        start = clock()
        self.detector.preprocess(frame.pixels)
        end = clock()
        record("preprocess", (end - start) * 1000.0)
        start = end
        detections = self.detector.detect(frame, preprocessed=True)
        end = clock()
        record("detect", (end - start) * 1000.0)
        start = end
        tracks = self.tracker.update(detections, frame.t)
        end = clock()
        record("track", (end - start) * 1000.0)
        start = end
        n = self._processed
        self._processed += 1
        which = self._needs_classifying(n, tracks)
        fresh = self.classifier.classify(frame, tracks, which) if which is not None else {}
        end = clock()
        record("classify", (end - start) * 1000.0)
        start = end
        observations = self._observe(frame.t, n, tracks, fresh)
        micros: tuple[MicroExpression, ...] = ()
        if self.spotter is not None and fresh:
            # Spotting reads the raw (unsmoothed) probabilities: smoothing would blur a
            # 40-500 ms flash. Uncertain faces abstain here too.
            certain = {o.track_id for o in observations if o.fresh and not o.uncertain}
            micros = tuple(self.spotter.update(observations, {k: v for k, v in fresh.items() if k in certain}, frame.t))
        end = clock()
        record("temporal", (end - start) * 1000.0)
        self.aggregator.add(frame.t, tracks, observations)
        for micro in micros:
            self.aggregator.add_micro(micro)
        ended: tuple[TrackSummary, ...] = ()
        if tracks.ended:
            ended = tuple(self.aggregator.end_tracks(tracks.ended))
            self.smoother.forget(tracks.ended)
            if self.spotter is not None:
                self.spotter.forget(tracks.ended)
            for track_id in tracks.ended:
                self._memo.pop(track_id, None)
        summary = self.aggregator.flush(frame.t) if self.aggregator.due(frame.t) else None
        record("aggregate", (clock() - end) * 1000.0)
        return FrameResult(frame.index, frame.t, tracks, observations, ended, summary, classified=len(fresh), micro_expressions=micros)

    def _needs_classifying(self, n: int, tracks: Tracks) -> np.ndarray | None:
        """Mask of the tracks to classify on processed frame `n` (None: none): every track seen
        in this frame that is new, not yet stable, or whose last classification is
        `every_n_frames` old. Coasting tracks (not seen) never are."""
        which = None
        seen, hits, memo = tracks.seen.tolist(), tracks.hits.tolist(), self._memo
        for i, track_id in enumerate(tracks.ids.tolist()):
            if not seen[i]:
                continue
            last = memo.get(track_id)
            if last is None or hits[i] < self.stable_hits or n - last.last_classified >= self.every_n_frames:
                if which is None:
                    which = np.zeros(len(seen), bool)
                which[i] = True
        return which

    def _observe(self, t: float, n: int, tracks: Tracks, fresh: dict[int, np.ndarray]) -> tuple[FaceObservation, ...]:
        labels = self.classifier.labels
        out = []
        for track_id, seen in zip(tracks.ids.tolist(), tracks.seen.tolist()):
            if not seen:
                continue
            memo = self._memo.get(track_id)
            if track_id in fresh:
                probs = self.smoother.update(track_id, fresh[track_id], t)
                values = probs.tolist()
                confidence = max(values)
                valence, arousal = valence_arousal(probs, labels)
                obs = FaceObservation(
                    track_id=track_id,
                    t=t,
                    labels=labels,
                    probs=probs,
                    label=labels[values.index(confidence)],
                    confidence=confidence,
                    valence=valence,
                    arousal=arousal,
                    fresh=True,
                    smoothed=self.smoother.tau_s > 0,
                    uncertain=confidence < self.min_confidence,
                )
                self._memo[track_id] = _TrackMemo(last_classified=n, observation=obs)
            elif memo is not None and memo.observation is not None:
                prev = memo.observation
                obs = FaceObservation(
                    track_id=track_id,
                    t=t,
                    labels=labels,
                    probs=prev.probs,
                    label=prev.label,
                    confidence=prev.confidence,
                    valence=prev.valence,
                    arousal=prev.arousal,
                    fresh=False,
                    smoothed=prev.smoothed,
                    uncertain=prev.uncertain,
                )
            else:
                continue
            out.append(obs)
        return tuple(out)

    def finish(self, t: float) -> tuple[WindowSummary | None, tuple[TrackSummary, ...]]:
        """At the end of a run: close the partial window and every live track."""
        ended = self.tracker.close_all()
        summaries = tuple(self.aggregator.end_tracks(ended))
        self.smoother.forget(ended)
        self._memo.clear()
        return self.aggregator.flush(t), summaries
