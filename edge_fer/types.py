"""The value types that flow through the pipeline, one per hop: frozen dataclasses, numpy inside.

Pixels, boxes and keypoints never leave the process: only `FaceObservation`-derived numbers,
`MicroExpression`, `TrackSummary` and `WindowSummary` reach a sink, and only through the
whitelisted payload builders in `edge_fer.sinks.payloads`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _check_shape(name: str, array: np.ndarray, shape: tuple[int | None, ...]) -> None:
    if array.shape == shape:  # the usual case, checked first: this runs several times per frame
        return
    if array.ndim != len(shape) or any(want is not None and got != want for got, want in zip(array.shape, shape)):
        raise ValueError(f"{name} must have shape {shape} (None = any), got {array.shape}")


@dataclass(frozen=True)
class Frame:
    """One captured image.

    Attributes:
        pixels: ``(H, W, 3)`` uint8, **BGR** channel order (OpenCV's; sources convert to it).
        t: capture time in seconds (``time.monotonic()`` for live sources, the file's own
            presentation time for paced file sources); stages take time from here, never a clock.
        index: frame counter of the source, starting at 0 (gaps mean dropped frames).
    """

    pixels: np.ndarray
    t: float
    index: int

    def __post_init__(self) -> None:
        _check_shape("Frame.pixels", self.pixels, (None, None, 3))
        if self.pixels.dtype != np.uint8:
            raise ValueError(f"Frame.pixels must be uint8, got {self.pixels.dtype}")

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


#: Order of the six BlazeFace keypoints in `Detections.keypoints`.
KEYPOINTS: tuple[str, ...] = ("right_eye", "left_eye", "nose", "mouth", "right_ear", "left_ear")


@dataclass(frozen=True)
class Detections:
    """Faces found in one frame, as parallel arrays (supervision-style).

    Attributes:
        boxes: ``(n, 4)`` float32 ``x1, y1, x2, y2`` in frame pixels.
        scores: ``(n,)`` float32 detector confidence in [0, 1].
        keypoints: ``(n, 6, 2)`` float32 ``x, y`` in frame pixels, order `KEYPOINTS`
            (``right_eye`` is the subject's right eye, on the image's left side).
        truncated: faces the detector found but left out because of its ``max_faces`` cap.
    """

    boxes: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray
    truncated: int = 0

    def __post_init__(self) -> None:
        n = len(self.boxes)
        _check_shape("Detections.boxes", self.boxes, (n, 4))
        _check_shape("Detections.scores", self.scores, (n,))
        _check_shape("Detections.keypoints", self.keypoints, (n, 6, 2))

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            keypoints=np.zeros((0, 6, 2), np.float32),
        )

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index: np.ndarray | slice | list[int]) -> Detections:
        return Detections(self.boxes[index], self.scores[index], self.keypoints[index], self.truncated)


@dataclass(frozen=True)
class Tracks:
    """The tracks alive after one `Tracker.update`, as parallel arrays.

    Attributes:
        ids: ``(n,)`` int64 ephemeral track ids: small integers that restart with the process.
        boxes: ``(n, 4)`` float32 ``x1, y1, x2, y2`` (the latest matched detection).
        keypoints: ``(n, 6, 2)`` float32 (the latest matched detection).
        first_seen: ``(n,)`` float64 time (s) the track was first seen.
        hits: ``(n,)`` int64 number of frames with a matched detection.
        seen: ``(n,)`` bool, True when the track was matched in *this* frame (a coasting track
            keeps its last box for a short while but must not be classified).
        ended: ids of tracks that ended at this update (for `event/track`).
        confirmed: ``(n,)`` bool, True once the track earned its place as a person (enough
            consistent detections over enough time, see `Tracker`); a tentative track is not
            classified and not counted. None: every track counts as confirmed.
        scores: ``(n,)`` float32 detector score of the latest matched detection (None: unknown).
    """

    ids: np.ndarray
    boxes: np.ndarray
    keypoints: np.ndarray
    first_seen: np.ndarray
    hits: np.ndarray
    seen: np.ndarray
    ended: tuple[int, ...] = ()
    confirmed: np.ndarray | None = None
    scores: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.confirmed is not None:
            _check_shape("Tracks.confirmed", self.confirmed, (n,))
        if self.scores is not None:
            _check_shape("Tracks.scores", self.scores, (n,))
        _check_shape("Tracks.boxes", self.boxes, (n, 4))
        _check_shape("Tracks.keypoints", self.keypoints, (n, 6, 2))
        for name in ("first_seen", "hits", "seen"):
            _check_shape(f"Tracks.{name}", getattr(self, name), (n,))

    @classmethod
    def empty(cls, ended: tuple[int, ...] = ()) -> Tracks:
        return cls(
            ids=np.zeros((0,), np.int64),
            boxes=np.zeros((0, 4), np.float32),
            keypoints=np.zeros((0, 6, 2), np.float32),
            first_seen=np.zeros((0,), np.float64),
            hits=np.zeros((0,), np.int64),
            seen=np.zeros((0,), bool),
            ended=ended,
        )

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class FaceObservation:
    """What the classifier (and the temporal stage) says about one tracked face at one time.

    Attributes:
        track_id: the ephemeral track id.
        t: frame time (s).
        labels: class names, in the order of `probs`.
        probs: ``(k,)`` float32 class probabilities (sum 1), smoothed per track when
            ``smoothed`` is True.
        label: the most likely class.
        confidence: its probability.
        valence: pleasantness in [-1, 1] derived from `probs` (see `edge_fer.vision.affect`).
        arousal: activation in [-1, 1] derived from `probs`.
        fresh: True when the classifier ran on this frame; False when the values are carried
            over from an earlier frame of a stable track.
        action_units: optional AU intensities in [0, 1] by AU name (``"AU12"``), geometric
            estimates against the track's own calm face (`edge_fer.vision.action_units`).
        head_pose: optional ``(yaw, pitch, roll)`` in degrees, relative to the line of sight
            to the camera (`edge_fer.vision.face_geometry`); stays inside the process.
        attending: optional, the face is turned towards the camera within the configured
            angles (``landmarks.attention_yaw_deg`` / ``attention_pitch_deg``).
        meshed: True when the face mesh ran on this frame (the action units and head pose are
            new); False when they are carried over from an earlier frame, or absent.
        uncertain: the top probability is below the abstention threshold: the face is counted
            but kept out of emotion shares, valence and arousal.
        low_quality: the face failed the face-quality gate (too small, blurred, badly exposed
            or turned away; `edge_fer.vision.quality`): counted, but kept out of emotion shares,
            valence and arousal, whatever its confidence.
    """

    track_id: int
    t: float
    labels: tuple[str, ...]
    probs: np.ndarray
    label: str
    confidence: float
    valence: float
    arousal: float
    fresh: bool = True
    smoothed: bool = False
    action_units: dict[str, float] | None = None
    head_pose: tuple[float, float, float] | None = None
    attending: bool | None = None
    uncertain: bool = False
    meshed: bool = False
    low_quality: bool = False


@dataclass(frozen=True)
class MicroExpression:
    """A brief expression spotted on one track (times in seconds, same clock as `Frame.t`).

    ``intensity`` is the largest rise above the track's baseline at the apex (a probability or
    an AU intensity, 0–1); ``action_units`` the AUs that rose at the apex (name → rise), when
    the face was meshed.
    """

    track_id: int
    emotion: str
    onset_t: float
    apex_t: float
    offset_t: float
    intensity: float
    action_units: dict[str, float] | None = None

    @property
    def duration_ms(self) -> float:
        return (self.offset_t - self.onset_t) * 1000.0


@dataclass(frozen=True)
class TrackSummary:
    """Published when a track ends: how long a face stayed and what it mostly showed."""

    track_id: int
    first_t: float
    last_t: float
    dominant_emotion: str | None
    emotion_shares: dict[str, float]
    mean_valence: float | None
    observations: int

    @property
    def duration_s(self) -> float:
        return self.last_t - self.first_t


@dataclass(frozen=True)
class WindowSummary:
    """Anonymous statistics over one aggregation window.

    ``uncertain`` counts the face observations below the abstention threshold; they are in
    ``observations`` but not in the shares. ``low_quality`` counts the observations that failed
    the face-quality gate, likewise in ``observations`` and not in the shares (a face that is
    both is counted as low quality only). ``mean_confidence`` is the mean top probability of
    the observations that the shares are made of. ``faces_truncated`` is the most faces the
    detector left out of one frame of the window (more than ``detector.max_faces``; 0: none).

    ``emotion_shares``, ``mean_valence`` and ``mean_arousal`` are None when the window saw
    fewer distinct faces than ``min_faces`` (k-anonymity), or no classified face at all;
    ``attention_share`` (share of face observations turned towards the camera) and
    ``attending_s`` (face-seconds while turned towards it) likewise, and also without the
    face mesh.
    """

    start_t: float
    end_t: float
    frames: int
    fps: float
    faces_max: int
    faces_distinct: int
    dwell_s: float
    observations: int
    emotion_shares: dict[str, float] | None
    mean_valence: float | None
    mean_arousal: float | None
    micro_expressions: int
    attention_share: float | None = None
    attending_s: float | None = None
    suppressed: bool = False
    uncertain: int = 0
    mean_confidence: float | None = None
    low_quality: int = 0
    extra: dict[str, float] = field(default_factory=dict)
    faces_truncated: int = 0
