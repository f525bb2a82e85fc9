"""The per-frame pipeline: detect → track → mesh (optional) → classify (only what needs it) → smooth, spot → aggregate.

`Pipeline.process` is pure with respect to time and I/O: it takes a `Frame` and returns a
`FrameResult`; threads, sinks and clocks live in `edge_fer.runner`.

When the face mesh is on, it runs on each matched track at most `landmark_rate_hz` times a
second (every frame up to ~40 frames/s, every 2nd frame at 60 at the default 30 Hz); a track
whose mesh says "no face" is rejected (not classified, not counted) until a later mesh says
face. Its geometry gives the action units (against the track's calm face), the head pose and
`attending`. A stable track is classified every `every_n_frames` frames, and also at once when
its action units moved since its last classification or while the spotter has an episode open
on it: micro-expression spotting gets the classifier at the mesh's temporal resolution exactly
when the face changes, and a calm face costs no more than before.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from time import perf_counter
from typing import TYPE_CHECKING

import numpy as np

from edge_fer.temporal import ProbabilitySmoother, Tracker
from edge_fer.temporal.aggregate import Aggregator
from edge_fer.temporal.au_baseline import ActionUnitTracker
from edge_fer.temporal.micro import MicroSpotter
from edge_fer.types import FaceObservation, Frame, MicroExpression, Tracks, TrackSummary, WindowSummary
from edge_fer.vision import face_geometry
from edge_fer.vision.action_units import AU_NAMES
from edge_fer.vision.affect import affect
from edge_fer.vision.landmarks import mesh_keeps
from edge_fer.vision.quality import CropMeasures, QualityGate

if TYPE_CHECKING:
    from edge_fer.config import Settings
    from edge_fer.runtime import Model
    from edge_fer.vision.blazeface import FaceDetector, RangeDetector
    from edge_fer.vision.emotion import EmotionClassifier
    from edge_fer.vision.landmarks import FaceLandmarker

#: The stages timed per frame, in pipeline order: ``capture`` (waiting for a decoded frame),
#: ``preprocess`` (frame → detector input tensor), ``detect`` (detector invoke, decoding, NMS),
#: ``track``, ``landmarks`` (face mesh, AUs, head pose), ``classify`` (alignment, emotion
#: invokes), ``temporal`` (smoothing, micro-expressions), ``aggregate`` and ``publish`` (sinks).
STAGES = ("capture", "preprocess", "detect", "track", "landmarks", "classify", "temporal", "aggregate", "publish")
#: A stable track is re-classified at once when one of its AUs moved this much since its last
#: classification (the face is changing: spotting needs the probabilities now).
RECLASSIFY_AU = 0.15
#: Fraction of the mesh interval (1 / rate) after which a track is due again: frame intervals
#: jitter, and a 30 Hz rate must not skip frames of a 30 frames/s camera.
MESH_DUE_FRACTION = 0.75
#: Minimum top probability of neutral for a frame to count as the face at rest (AU baseline).
CALM_NEUTRAL = 0.5
#: The settings a running pipeline takes without a restart, and the one list of them: the `set`
#: remote command accepts exactly these keys (`edge_fer.runner.control.LIVE_KEYS`), and `Pipeline.apply`
#: writes each into the stage attribute named here (a dotted path from the pipeline). None: the
#: runner reads that setting from its own settings at each use; no stage holds it.
LIVE_SETTINGS: dict[str, str | None] = {
    "aggregate.window_s": "aggregator.window_s",
    "aggregate.min_faces": "aggregator.min_faces",
    "aggregate.privacy_level": None,
    "detector.score_threshold": "detector.score_threshold",
    "classifier.every_n_frames": "every_n_frames",
    "classifier.smoothing_s": "smoother.tau_s",
    "classifier.min_confidence": "min_confidence",
}


class StageTimer:
    """Latency of each stage over the last `maxlen` frames, in milliseconds."""

    def __init__(self, maxlen: int = 2000) -> None:
        self._samples: dict[str, deque[float]] = {}
        self.maxlen = maxlen

    def laps(self) -> Laps:
        """A lap timer for consecutive stages, started now (see `Laps`)."""
        return Laps(self.record)

    @contextmanager
    def time(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.record(stage, (time.perf_counter() - start) * 1000.0)

    def record(self, stage: str, ms: float) -> None:
        self._samples.setdefault(stage, deque(maxlen=self.maxlen)).append(ms)

    def percentiles(self) -> dict[str, dict[str, float]]:
        """``{stage: {"p50": ms, "p95": ms, "mean": ms}}`` for every stage seen so far."""
        out = {}
        for stage, samples in self._samples.items():
            if samples:
                arr = np.fromiter(samples, np.float64)
                p50, p95 = np.percentile(arr, [50, 95])
                out[stage] = {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "mean": round(float(arr.mean()), 3)}
        return out


class Laps:
    """Times consecutive stages with one clock read per stage: ``lap(stage)`` records the time
    since the previous lap (or since the `StageTimer.laps` call) under `stage`. Each stage's end
    is the next one's start, so nothing between two stages goes untimed or is timed twice, and a
    stage costs one call (a context manager per stage costs more than some stages themselves)."""

    __slots__ = ("_last", "_record")

    def __init__(self, record: Callable[[str, float], None]) -> None:
        self._record = record
        self._last = perf_counter()

    def __call__(self, stage: str) -> None:
        now = perf_counter()
        self._record(stage, (now - self._last) * 1000.0)
        self._last = now


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
    meshed: int = 0
    rejected: tuple[int, ...] = ()


@dataclass
class _TrackMemo:
    """What the pipeline remembers of a live track between frames (inside the process only)."""

    last_classified: int | None = None
    observation: FaceObservation | None = None
    neutral_top: bool = False  # the last raw probabilities read neutral, at least CALM_NEUTRAL
    mesh_t: float | None = None
    meshed_frame: int | None = None
    rejected: bool = False
    meshes: int = 0  # meshes run on this track, and how many of them said a face is there
    meshes_present: int = 0
    aus: list[float] | None = None
    action_units: dict[str, float] | None = None  # `aus` by name, rounded: what observations carry
    aus_at_classification: list[float] | None = None
    pose: tuple[float, float, float] | None = None
    attending: bool | None = None
    low_quality: bool = False  # the gate's verdict on the last classified crop


@dataclass
class Pipeline:
    """Wires the pure stages for one stream of frames.

    Args:
        detector: finds faces (`FaceDetector` or, for every distance, `RangeDetector`).
        classifier: emotion probabilities per track (`EmotionClassifier.classify`).
        tracker: ephemeral-id tracker.
        smoother: per-track smoothing of probabilities.
        aggregator: window and track summaries.
        every_n_frames: a stable track is re-classified every N processed frames; a new
            (not yet stable) track every frame.
        stable_hits: detections after which a track counts as stable.
        min_confidence: abstention threshold on the (smoothed) top probability.
        quality_gate: the face-quality gate (None: every face counts); a face that fails it is
            `low_quality`: counted, kept out of shares, valence and arousal.
        spotter: micro-expression spotter (None: off).
        landmarker: face mesh (None: no action units, head pose, attention or mesh rejection).
        au_tracker: per-track AU baselines (used with `landmarker`).
        landmark_rate_hz: at most this many meshes per second per track.
        trust_score: a detection scored at least this is not rejected by the mesh
            (`edge_fer.vision.landmarks.mesh_keeps`).
        attention_yaw_deg, attention_pitch_deg: a face is `attending` while its yaw and pitch
            (relative to the line of sight) are within these.
        timer: collects per-stage latencies.
    """

    detector: FaceDetector | RangeDetector
    classifier: EmotionClassifier
    tracker: Tracker
    smoother: ProbabilitySmoother
    aggregator: Aggregator
    every_n_frames: int = 2
    stable_hits: int = 3
    min_confidence: float = 0.0
    quality_gate: QualityGate | None = None
    spotter: MicroSpotter | None = None
    landmarker: FaceLandmarker | None = None
    au_tracker: ActionUnitTracker = field(default_factory=ActionUnitTracker)
    landmark_rate_hz: float = 30.0
    trust_score: float = 0.75
    attention_yaw_deg: float = 30.0
    attention_pitch_deg: float = 20.0
    timer: StageTimer = field(default_factory=StageTimer)
    _memo: dict[int, _TrackMemo] = field(default_factory=dict)
    _processed: int = 0
    _camera: tuple[tuple[int, int], np.ndarray] | None = None
    _neutral: int | None = None

    def __post_init__(self) -> None:
        labels = self.classifier.labels
        self._neutral = labels.index("neutral") if "neutral" in labels else None

    @classmethod
    def from_settings(cls, settings: Settings, *, stills: bool = False) -> Pipeline:
        """Build every stage from the settings; `stills`: the frames are unrelated photos
        (an image folder), each searched completely for faces at every distance.

        Raises:
            ModelError: a model is missing, corrupt or breaks its manifest contract.
        """
        from edge_fer.vision.blazeface import RangeDetector
        from edge_fer.vision.emotion import EmotionClassifier
        from edge_fer.vision.landmarks import FaceLandmarker

        classifier = EmotionClassifier.from_settings(settings)
        marks, micro = settings.landmarks, settings.micro
        return cls(
            detector=RangeDetector.from_settings(settings, stills=stills),
            classifier=classifier,
            tracker=Tracker(
                settings.tracker.iou_threshold,
                settings.tracker.max_missed_s,
                # a photo is seen once: its faces cannot be confirmed over time, only by the
                # mesh, or (without it) by the detector's score
                confirm_hits=1 if stills else settings.tracker.confirm_hits,
                confirm_s=0.0 if stills else settings.tracker.confirm_s,
                confirm_score=0.0 if stills and marks.enabled else settings.tracker.confirm_score,
            ),
            smoother=ProbabilitySmoother(settings.classifier.smoothing_s),
            aggregator=Aggregator(classifier.labels, settings.aggregate.window_s, settings.aggregate.min_faces),
            every_n_frames=settings.classifier.every_n_frames,
            stable_hits=settings.tracker.stable_hits,
            min_confidence=settings.classifier.min_confidence,
            quality_gate=QualityGate.from_config(settings.quality),
            spotter=MicroSpotter(classifier.labels, micro.min_ms, micro.max_ms, micro.onset, micro.au_onset, head_turn_deg=micro.head_turn_deg),
            landmarker=FaceLandmarker.from_settings(settings) if marks.enabled else None,
            landmark_rate_hz=marks.rate_hz,
            trust_score=marks.trust_score,
            attention_yaw_deg=marks.attention_yaw_deg,
            attention_pitch_deg=marks.attention_pitch_deg,
        )

    def models(self) -> dict[str, Model]:
        """The loaded models by the stage that runs them, for stats and bench (back-end, invokes)."""
        models = {**self.detector.models(), "classify": self.classifier.model}
        if self.landmarker is not None:
            models["landmarks"] = self.landmarker.model
        return models

    def apply(self, settings: Settings) -> None:
        """Take the live settings of `settings` (`LIVE_SETTINGS`) into the running stages; any
        other change needs a new pipeline. `settings` must be validated (`load_settings`,
        `edge_fer.runner.control.apply_set`): the stages take the values as they are.

        Raises:
            AttributeError: `LIVE_SETTINGS` names an attribute a stage does not have (a bug).
        """
        for key, target in LIVE_SETTINGS.items():
            if target is None:
                continue
            section, name = key.split(".")
            *path, attribute = target.split(".")
            stage: object = self
            for part in path:
                stage = getattr(stage, part)
            if not hasattr(stage, attribute):
                raise AttributeError(f"LIVE_SETTINGS[{key!r}] names {target!r}, which the pipeline does not have")
            setattr(stage, attribute, getattr(getattr(settings, section), name))

    def process(self, frame: Frame) -> FrameResult:
        """Run every stage on `frame`; returns what it produced (see `FrameResult`)."""
        lap = self.timer.laps()
        self.detector.prepare(frame)
        lap("preprocess")
        detections = self.detector.detect(frame, preprocessed=True)
        lap("detect")
        tracks = self.tracker.update(detections, frame.t)
        if tracks.confirmed is not None and not tracks.confirmed.all():
            # A tentative track has not earned its place as a person yet: not meshed, not
            # classified, not counted (it may be a ghost: lettering, a pattern, a shape).
            tracks = replace(tracks, seen=tracks.seen & tracks.confirmed)
        lap("track")
        n = self._processed
        self._processed += 1
        live = self._live(tracks)
        meshed = 0
        rejected: tuple[int, ...] = ()
        if self.landmarker is not None:
            meshed = self._mesh(frame, n, tracks, live)
            tracks, live, rejected = self._reject(tracks, live)
            lap("landmarks")
        which = self._due(tracks, live, n)
        gate = self.quality_gate
        measures: dict[int, CropMeasures] | None = {} if gate is not None else None
        fresh = self.classifier.classify(frame, tracks, which, measures) if which is not None else {}
        if gate is not None and measures:
            boxes = tracks.boxes
            for i, track_id, memo in live:
                m = measures.get(track_id)
                if m is not None:
                    memo.low_quality = not gate.assess(m, float(boxes[i, 2] - boxes[i, 0]), memo.pose).ok
        lap("classify")
        observations = self._observe(frame.t, n, live, fresh)
        micros: tuple[MicroExpression, ...] = ()
        if self.spotter is not None and (fresh or meshed):
            # Spotting reads the raw (unsmoothed) probabilities: smoothing would blur a
            # 40-500 ms flash. Uncertain faces abstain here too.
            certain = {o.track_id for o in observations if o.fresh and not o.uncertain}
            micros = tuple(self.spotter.update(observations, {k: v for k, v in fresh.items() if k in certain}, frame.t))
        lap("temporal")
        self.aggregator.add(frame.t, tracks, observations, truncated=detections.truncated)
        for micro in micros:
            self.aggregator.add_micro(micro)
        ended: tuple[TrackSummary, ...] = ()
        if tracks.ended:
            ended = tuple(self.aggregator.end_tracks(tracks.ended))
            self._forget(tracks.ended)
        summary = self.aggregator.flush(frame.t) if self.aggregator.due(frame.t) else None
        lap("aggregate")
        return FrameResult(
            frame.index,
            frame.t,
            tracks,
            observations,
            ended,
            summary,
            classified=len(fresh),
            micro_expressions=micros,
            meshed=meshed,
            rejected=rejected,
        )

    def _live(self, tracks: Tracks) -> list[tuple[int, int, _TrackMemo]]:
        """The tracks matched in this frame as ``(row, track id, memo)``, as plain lists:
        indexing numpy arrays element by element costs more than the bookkeeping itself."""
        memos = self._memo
        live: list[tuple[int, int, _TrackMemo]] = []
        for i, (track_id, seen) in enumerate(zip(tracks.ids.tolist(), tracks.seen.tolist())):
            if seen:
                memo = memos.get(track_id)
                if memo is None:
                    memo = memos[track_id] = _TrackMemo()
                live.append((i, track_id, memo))
        return live

    @staticmethod
    def _reject(tracks: Tracks, live: list[tuple[int, int, _TrackMemo]]) -> tuple[Tracks, list[tuple[int, int, _TrackMemo]], tuple[int, ...]]:
        """Not a face, says the mesh: not classified, not counted, not a track event."""
        rejected = tuple(track_id for _, track_id, memo in live if memo.rejected)
        if not rejected:
            return tracks, live, rejected
        tracks = replace(tracks, seen=tracks.seen & ~np.isin(tracks.ids, rejected))
        return tracks, [entry for entry in live if not entry[2].rejected], rejected

    def _due(self, tracks: Tracks, live: list[tuple[int, int, _TrackMemo]], n: int) -> np.ndarray | None:
        """The mask of the tracks to classify in this frame; None when there are none."""
        which = None
        if live:
            hits = tracks.hits.tolist()
            for i, track_id, memo in live:
                if self._due_for_classification(memo, track_id, hits[i], n):
                    if which is None:
                        which = np.zeros(len(tracks), bool)
                    which[i] = True
        return which

    def _due_for_classification(self, memo: _TrackMemo, track_id: int, hits: int, n: int) -> bool:
        if memo.last_classified is None or hits < self.stable_hits or n - memo.last_classified >= self.every_n_frames:
            return True
        if self.spotter is not None and self.spotter.active(track_id):
            return True
        if memo.meshed_frame == n and memo.aus is not None and memo.aus_at_classification is not None:
            return max(abs(a - b) for a, b in zip(memo.aus, memo.aus_at_classification)) >= RECLASSIFY_AU
        return False

    def _mesh(self, frame: Frame, n: int, tracks: Tracks, live: list[tuple[int, int, _TrackMemo]]) -> int:
        """Mesh the `live` tracks that are due; update their memo (rejection, AUs, pose, attention)."""
        landmarker = self.landmarker
        if landmarker is None:
            return 0
        t = frame.t
        interval = MESH_DUE_FRACTION / self.landmark_rate_hz
        due = [entry for entry in live if entry[2].mesh_t is None or t - entry[2].mesh_t >= interval]
        if not due:
            return 0
        size = (frame.width, frame.height)
        if self._camera is None or self._camera[0] != size:
            self._camera = (size, face_geometry.camera_matrix(*size))
        camera = self._camera[1]
        yaw_max, pitch_max = self.attention_yaw_deg, self.attention_pitch_deg
        # All meshes first, then all the geometry: code run right after a model invoke is slow
        # (cold caches), so each kind of work is done for every face in one pass.
        meshes = landmarker.meshes(frame, [tracks.boxes[i] for i, _, _ in due], [tracks.keypoints[i] for i, _, _ in due])
        scores = tracks.scores.tolist() if tracks.scores is not None else None
        for (i, track_id, memo), mesh in zip(due, meshes):
            memo.mesh_t = t
            memo.meshes += 1
            memo.meshes_present += mesh.present
            score = scores[i] if scores is not None else 0.0
            memo.rejected = not mesh_keeps(mesh, score, self.trust_score, present=memo.meshes_present, meshed=memo.meshes)
            if not mesh.present:
                continue  # kept on the detector's word, but its points are no face to measure
            pose = face_geometry.head_pose(mesh.points, camera)
            memo.pose = pose
            memo.attending = None if pose is None else abs(pose[0]) <= yaw_max and abs(pose[1]) <= pitch_max
            calm = bool(memo.attending) and memo.neutral_top
            aus = self.au_tracker.update(track_id, face_geometry.measures(mesh.points), t, calm)
            memo.aus = aus.tolist()
            memo.action_units = dict(zip(AU_NAMES, aus.round(3).tolist()))
            memo.meshed_frame = n
        return len(due)

    def _forget(self, track_ids: tuple[int, ...]) -> None:
        self.smoother.forget(track_ids)
        if self.spotter is not None:
            self.spotter.forget(track_ids)
        self.au_tracker.forget(track_ids)
        for track_id in track_ids:
            self._memo.pop(track_id, None)

    def _observe(self, t: float, n: int, live: list[tuple[int, int, _TrackMemo]], fresh: dict[int, np.ndarray]) -> tuple[FaceObservation, ...]:
        labels = self.classifier.labels
        neutral = self._neutral
        out = []
        for _, track_id, memo in live:
            meshed = memo.meshed_frame == n
            action_units = memo.action_units
            prev = memo.observation
            raw = fresh.get(track_id)
            if raw is not None:
                values = raw.tolist()
                top = max(values)
                memo.neutral_top = neutral is not None and values.index(top) == neutral and top >= CALM_NEUTRAL
                memo.last_classified = n
                memo.aus_at_classification = memo.aus
                probs = self.smoother.update(track_id, raw, t)
                values = probs.tolist()
                confidence = max(values)
                label, smoothed, uncertain = labels[values.index(confidence)], self.smoother.tau_s > 0, confidence < self.min_confidence
            elif prev is not None:
                probs, label, confidence, smoothed, uncertain = prev.probs, prev.label, prev.confidence, prev.smoothed, prev.uncertain
            else:
                continue
            if raw is not None or meshed or prev is None:
                valence, arousal = affect(probs, labels, action_units)
            else:
                valence, arousal = prev.valence, prev.arousal
            obs = FaceObservation(
                track_id=track_id,
                t=t,
                labels=labels,
                probs=probs,
                label=label,
                confidence=confidence,
                valence=valence,
                arousal=arousal,
                fresh=raw is not None,
                smoothed=smoothed,
                action_units=action_units,
                head_pose=memo.pose,
                attending=memo.attending,
                uncertain=uncertain,
                meshed=meshed,
                low_quality=memo.low_quality,
            )
            memo.observation = obs
            out.append(obs)
        return tuple(out)

    def finish(self, t: float) -> tuple[WindowSummary | None, tuple[TrackSummary, ...]]:
        """At the end of a run: close the partial window and every live track."""
        ended = self.tracker.close_all()
        summaries = tuple(self.aggregator.end_tracks(ended))
        self._forget(ended)
        self._memo.clear()
        return self.aggregator.flush(t), summaries
