"""The library's front door: `analyze_image` for one picture, `Analyzer` for a camera or a video, both handing faces to the caller's own process."""

from __future__ import annotations

import difflib
import functools
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2
import numpy as np
from pydantic import BaseModel, ValidationError

from edge_fer.capture import CaptureThread, is_still_spec, source_from_spec
from edge_fer.capture.opencv import to_bgr
from edge_fer.config import Settings, load_settings, merge
from edge_fer.errors import ConfigError, SourceError
from edge_fer.pipeline import FrameResult, Pipeline
from edge_fer.temporal import ProbabilitySmoother
from edge_fer.temporal.aggregate import Aggregator
from edge_fer.types import FaceObservation, Frame, MicroExpression, TrackSummary, WindowSummary

logger = logging.getLogger(__name__)

#: What `config` may be: loaded settings, a TOML file, or None (defaults and ``EDGE_FER_…`` variables).
ConfigLike = Settings | str | os.PathLike[str] | None


@dataclass(frozen=True)
class Face:
    """One face in one image or frame, as the pipeline read it.

    Everything here stays in your process: the service publishes only anonymous aggregates
    built from the same readings, never a box, a landmark or a head pose.

    Attributes:
        emotion: the most likely class, one of the model's labels (`edge_fer.EMOTIONS` for the
            default model).
        probabilities: label → probability (they sum to 1); smoothed over time per face by an
            `Analyzer` (``classifier.smoothing_s``), raw for `analyze_image`.
        confidence: the probability of `emotion`.
        uncertain: `confidence` is below ``classifier.min_confidence``: the service counts such
            a face but keeps it out of its emotion shares.
        low_quality: the face failed the face-quality gate (``[quality]``: too small, blurred,
            badly exposed or turned away), so its emotion is less reliable: the service counts it
            but keeps it out of its shares.
        valence: pleasant (+1) ↔ unpleasant (-1) expression (docs/DESIGN.md: of the
            expression, not of what the person feels).
        arousal: activated (+1) ↔ calm (-1) expression.
        track_id: an ephemeral id, 1, 2, … in order of appearance, for as long as the face stays
            in view of one `Analyzer` (per call for `analyze_image`); never linked to a person.
        box: ``(x1, y1, x2, y2)`` in pixels of the image.
        action_units: AU name → intensity in [0, 1] (``"AU12"``: lip corner puller, the
            smile), geometric estimates from the face mesh; None with ``landmarks__enabled=False``.
        head_pose: ``(yaw, pitch, roll)`` in degrees relative to the line of sight (yaw > 0:
            turned towards the image's right); None without the face mesh.
        attending: the face is turned towards the camera (within
            ``landmarks.attention_yaw_deg`` / ``attention_pitch_deg``); None without the mesh.
    """

    emotion: str
    probabilities: dict[str, float]
    confidence: float
    uncertain: bool
    low_quality: bool
    valence: float
    arousal: float
    track_id: int
    box: tuple[float, float, float, float]
    action_units: dict[str, float] | None = None
    head_pose: tuple[float, float, float] | None = None
    attending: bool | None = None

    @classmethod
    def from_observation(cls, observation: FaceObservation, box: np.ndarray) -> Face:
        """The `Face` of one pipeline observation and its track's box (xyxy pixels)."""
        x1, y1, x2, y2 = (round(float(v), 1) for v in box)
        return cls(
            emotion=observation.label,
            probabilities={label: float(p) for label, p in zip(observation.labels, observation.probs.tolist())},
            confidence=float(observation.confidence),
            uncertain=observation.uncertain,
            low_quality=observation.low_quality,
            valence=float(observation.valence),
            arousal=float(observation.arousal),
            track_id=int(observation.track_id),
            box=(x1, y1, x2, y2),
            action_units=None if observation.action_units is None else dict(observation.action_units),
            head_pose=observation.head_pose,
            attending=observation.attending,
        )


@dataclass(frozen=True)
class FrameAnalysis:
    """What an `Analyzer` made of one frame.

    Attributes:
        index: the frame's number from the source (gaps: frames dropped because the loop was
            busy; -1 for the closing result of a finite source).
        t: the frame's time in seconds (monotonic clock for cameras, presentation time for files).
        faces: the faces in view, with their `Face.track_id`.
        summary: the window summary (anonymous statistics over ``aggregate.window_s``), on the
            frame that closed a window; None on the others.
        micro_expressions: micro-expressions that ended on this frame.
        ended_tracks: faces that left the view on this frame, with how long they stayed and
            what they mostly showed.
        image: the frame's BGR pixels (``(H, W, 3)`` uint8), for drawing or showing in your own
            code; None for the closing result.
    """

    index: int
    t: float
    faces: tuple[Face, ...]
    summary: WindowSummary | None = None
    micro_expressions: tuple[MicroExpression, ...] = ()
    ended_tracks: tuple[TrackSummary, ...] = ()
    image: np.ndarray | None = field(default=None, repr=False, compare=False)


def faces_of(result: FrameResult) -> tuple[Face, ...]:
    """The `Face` of each observation of a pipeline result, with its track's box."""
    rows = {int(track_id): i for i, track_id in enumerate(result.tracks.ids.tolist())}
    return tuple(Face.from_observation(obs, result.tracks.boxes[rows[obs.track_id]]) for obs in result.observations)


def resolve_settings(config: ConfigLike = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Settings from `config` with keyword `overrides` applied on top.

    Args:
        config: a `Settings`, a TOML file, or None: the built-in defaults. Unless it is a
            `Settings`, the ``EDGE_FER_<SECTION>__<KEY>`` environment variables apply too, as
            for the `edge-fer` command.
        overrides: settings as keyword names: ``section__key`` for a key of a TOML section
            (``detector__score_threshold=0.6`` is ``[detector] score_threshold = 0.6`` and
            ``EDGE_FER_DETECTOR__SCORE_THRESHOLD``), a bare name for a top-level key
            (``device_id``), or a section name with a dict (``detector={"max_faces": 3}``).

    Raises:
        ConfigError: an unknown key (named as given, with the closest known ones) or a value
            out of range (named as given, with the rule).

    >>> resolve_settings(None, {"detector__score_threshold": 0.6}).detector.score_threshold
    0.6
    """
    nested = _nest(overrides or {})
    if isinstance(config, Settings):
        base = config
    else:
        if config is not None and not isinstance(config, (str, os.PathLike)):
            raise TypeError(f"config must be a Settings, a TOML file path or None, got {type(config).__name__}")
        base = load_settings(None if config is None else Path(config))
    if not nested:
        return base
    try:
        return Settings.model_validate(merge(base.model_dump(), nested))
    except ValidationError as exc:
        lines = ["invalid setting:"]
        for err in exc.errors():
            name = "__".join(str(p) for p in err["loc"]) or "(settings)"
            lines.append(f"  {name}: {err['msg'].removeprefix('Value error, ')} (got {err['input']!r})")
        raise ConfigError("\n".join(lines)) from None


def _nest(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``{"detector__score_threshold": 0.6}`` → ``{"detector": {"score_threshold": 0.6}}``, every
    key checked against the settings model."""
    nested: dict[str, Any] = {}
    for name, value in overrides.items():
        path = name.split("__")
        model: type[BaseModel] = Settings
        for depth, part in enumerate(path):
            fields = model.model_fields
            if part not in fields:
                raise ConfigError(_unknown(name, path, depth, model))
            annotation = fields[part].annotation
            section = isinstance(annotation, type) and issubclass(annotation, BaseModel)
            if depth < len(path) - 1:
                if not section:
                    raise ConfigError(f"unknown setting {name!r}: {'.'.join(path[: depth + 1])} is a value, not a section")
                model = annotation  # type: ignore[assignment]
            elif section and isinstance(value, Mapping):
                _nest({f"{name}__{key}": item for key, item in value.items()})  # check the keys
        node = nested
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = merge(node.get(path[-1], {}), value) if isinstance(value, Mapping) else value
    return nested


def _keyword_names(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every setting of `model` as a keyword name (``detector__score_threshold``)."""
    names = []
    for key, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names.extend(_keyword_names(annotation, f"{prefix}{key}__"))
        else:
            names.append(f"{prefix}{key}")
    return names


def _unknown(name: str, path: list[str], depth: int, model: type[BaseModel]) -> str:
    """The message for an unknown keyword setting: the nearest known names, and where to look."""
    where = f"section [{'.'.join(path[:depth])}]" if depth else "the top level"
    known = _keyword_names(Settings)
    near = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    near += [k for k in known if k.endswith(f"__{path[-1]}") and k not in near]  # window_s → aggregate__window_s
    hint = f"; did you mean {' or '.join(near[:3])}?" if near else ""
    return f"unknown setting {name!r}: {where} has no key {path[depth]!r}{hint} (its keys: {', '.join(model.model_fields)})"


def read_image(image: str | os.PathLike[str] | np.ndarray) -> np.ndarray:
    """`image` as ``(H, W, 3)`` uint8 BGR: a file (any format OpenCV reads; grey, alpha and 16-bit
    are converted) or an array (BGR or grey, uint8 or uint16).

    Raises:
        SourceError: the file does not exist or is no image OpenCV can read.
        ValueError: the array is not an image.
    """
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)) or image.size == 0:
            raise ValueError(f"image must be an (H, W, 3) BGR array (or (H, W) grey), got shape {image.shape}")
        if image.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"image must be uint8 (or uint16), got {image.dtype}; scale floats to 0-255 first")
        return np.ascontiguousarray(to_bgr(image))
    path = Path(image).expanduser()
    if not path.is_file():
        raise SourceError(f"image {path} does not exist")
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None or not pixels.size:
        raise SourceError(f"{path} is not an image OpenCV can read (jpg, png, bmp, webp, tiff …)")
    return np.ascontiguousarray(to_bgr(pixels))


@functools.lru_cache(maxsize=2)
def _image_models(settings: Settings) -> tuple[threading.Lock, Pipeline]:
    """The models for `analyze_image`, loaded once per settings (a model holds buffers that one
    call at a time may use: hence the lock)."""
    return threading.Lock(), Pipeline.from_settings(settings, stills=True)


def analyze_image(image: str | os.PathLike[str] | np.ndarray, *, config: ConfigLike = None, **overrides: Any) -> list[Face]:
    """The faces in one image: emotion, probabilities, confidence, and the box, action units and
    head pose, for your own code.

    Args:
        image: a file path, or a BGR array as OpenCV gives (``cv2.imread``, a camera frame).
        config: a `Settings`, a TOML file, or None (defaults; ``EDGE_FER_…`` variables apply).
        overrides: settings by keyword, ``section__key=value`` (see `resolve_settings`), e.g.
            ``models__detector="blazeface_full"`` for faces far from the camera, or
            ``detector__score_threshold=0.7``.

    Returns:
        One `Face` per face found, in order of `Face.track_id` (1, 2, …). The models are loaded
        on the first call and kept for later calls with the same settings; the faces' action
        units are measured against an average calm face, having no calm frame of their own.

    Raises:
        SourceError: the file does not exist or is not an image.
        ModelError: a model is missing (run ``edge-fer models fetch``) or corrupt.
        ConfigError: an unknown setting or a bad value.
        ValueError: the array is not an image.

    >>> import edge_fer
    >>> from edge_fer.models import asset_path
    >>> from edge_fer.config import load_settings
    >>> photo = asset_path(load_settings().models.dir, "multi_face")  # the five-face test photo
    >>> faces = edge_fer.analyze_image(photo, models__detector="blazeface_full")  # faces 2-5 m away
    >>> len(faces), [face.emotion for face in faces].count("happy") >= 4
    (5, True)
    >>> list(faces[0].probabilities) == list(edge_fer.EMOTIONS)
    True
    """
    settings = resolve_settings(config, overrides)
    settings.deployment.check_lawful()
    pixels = read_image(image)
    lock, models = _image_models(settings)
    with lock:
        # Fresh per-face state for each image (ids from 1, no smoothing over time); the models are shared.
        pipeline = Pipeline(
            detector=models.detector,
            classifier=models.classifier,
            tracker=models.tracker.fresh(),  # set up for stills by `Pipeline.from_settings`
            smoother=ProbabilitySmoother(0.0),
            aggregator=Aggregator(models.classifier.labels),
            min_confidence=settings.classifier.min_confidence,
            landmarker=models.landmarker,
            trust_score=models.trust_score,
            quality_gate=models.quality_gate,
            attention_yaw_deg=settings.landmarks.attention_yaw_deg,
            attention_pitch_deg=settings.landmarks.attention_pitch_deg,
        )
        return list(faces_of(pipeline.process(Frame(pixels, 0.0, 0))))


class Analyzer:
    """Faces, emotions and window summaries from a camera, a stream or a video, frame by frame.

    A context manager that owns the models and the source; iterating it yields one
    `FrameAnalysis` per processed frame. The camera is read in a thread that keeps only the
    newest frame, so a slow loop body drops frames (never builds a delay). Leaving the
    ``with`` block, or a ``break`` out of a plain ``for`` loop over the analyzer, releases the
    camera. A finite source (a video file without ``source__loop=True``) ends the iteration,
    with one closing `FrameAnalysis` (``index`` -1, no faces) carrying the last, partial
    window's summary.

    This is the same pipeline as ``edge-fer run``: the same settings, the same numbers; but
    nothing is published, and nothing leaves your process unless your code sends it.

    Args:
        source: ``"picamera2"`` (Pi camera), ``"v4l2:0"`` or ``0`` (USB camera), a video file,
            a folder of images, an ``rtsp://`` or ``http://`` stream, or ``"demo"`` (the bundled
            footage).
        config: a `Settings`, a TOML file, or None (defaults; ``EDGE_FER_…`` variables apply).
        overrides: settings by keyword, ``section__key=value`` (see `resolve_settings`), e.g.
            ``aggregate__window_s=5``, ``source__realtime=False`` (files as fast as possible),
            ``landmarks__enabled=False`` (no face mesh: faster, no AUs or head pose).

    Raises:
        ConfigError: an unknown setting or a bad value (at construction).
        ModelError: a model is missing or corrupt (when entering, or at the first frame).
        SourceError: the source cannot be opened (when entering, or at the first frame).

    >>> import edge_fer
    >>> with edge_fer.Analyzer("demo", source__realtime=False) as analyzer:
    ...     for result in analyzer:
    ...         if result.faces:
    ...             break
    >>> result.faces[0].track_id, result.faces[0].emotion in edge_fer.EMOTIONS
    (1, True)
    """

    def __init__(self, source: str | int | os.PathLike[str], *, config: ConfigLike = None, **overrides: Any) -> None:
        if isinstance(source, bool) or not isinstance(source, (str, int, os.PathLike)):
            raise TypeError(f"source must be a source spec, a camera number or a path, got {source!r}")
        spec = f"v4l2:{source}" if isinstance(source, int) else os.fspath(source)
        self.settings = resolve_settings(config, {**overrides, "source__spec": spec})
        self.pipeline: Pipeline | None = None
        self._capture: CaptureThread | None = None
        self._stop = threading.Event()
        self._last_t = 0.0
        self._source_stats: dict[str, Any] = {}
        self.frames = 0

    def open(self) -> Analyzer:
        """Load the models, then open the source and start reading it (`with` does this).

        Raises:
            ConfigError: the deployment context forbids emotion inference (EU AI Act Art. 5(1)(f)).
            ModelError: a model is missing or corrupt.
            SourceError: the source cannot be opened.
        """
        if self._capture is not None:
            return self
        settings = self.settings
        settings.deployment.check_lawful()
        self.pipeline = Pipeline.from_settings(settings, stills=is_still_spec(settings.source.spec))
        cfg = settings.source
        self._stop.clear()
        capture = CaptureThread(
            lambda: source_from_spec(cfg.spec, cfg, settings.models.dir),
            realtime=cfg.realtime,
            reopen_backoff_max_s=cfg.reopen_backoff_max_s,
            stop_event=self._stop,
        )
        capture.start()  # SourceError here, synchronously, when the source cannot be opened
        self._capture = capture
        return self

    def close(self) -> None:
        """Stop reading and release the source (safe to call twice)."""
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.stop()
            self._source_stats = capture.stats()

    def stop(self) -> None:
        """Make the iteration end after the current frame; safe from another thread or a signal handler."""
        self._stop.set()

    def __enter__(self) -> Analyzer:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __iter__(self) -> Iterator[FrameAnalysis]:
        opened_here = self._capture is None
        self.open()
        try:
            yield from self._analyses()
        finally:
            if opened_here:
                self.close()  # a `break` out of a plain for loop lands here

    def _analyses(self) -> Iterator[FrameAnalysis]:
        capture, pipeline = self._capture, self.pipeline
        assert capture is not None and pipeline is not None
        while not self._stop.is_set():
            frame = capture.get(timeout_s=0.5)
            if frame is None:
                if capture.finished:
                    break
                continue
            result = pipeline.process(frame)
            self._last_t = frame.t
            self.frames += 1
            yield FrameAnalysis(
                index=frame.index,
                t=frame.t,
                faces=faces_of(result),
                summary=result.summary,
                micro_expressions=result.micro_expressions,
                ended_tracks=result.ended_tracks,
                image=frame.pixels,
            )
        if capture.finished and not self._stop.is_set() and self.frames:
            summary, ended = pipeline.finish(self._last_t)
            if summary is not None or ended:
                yield FrameAnalysis(index=-1, t=self._last_t, faces=(), summary=summary, ended_tracks=ended)

    def stats(self) -> dict[str, Any]:
        """Frames processed, the source's counters (``dropped`` frames, ``reopens``) and each
        stage's latency (``stages_ms``: p50, p95, mean)."""
        capture = self._capture.stats() if self._capture is not None else self._source_stats
        timer = self.pipeline.timer.percentiles() if self.pipeline is not None else {}
        return {"frames": self.frames, "source": capture, "stages_ms": timer}

    def __repr__(self) -> str:
        state = "open" if self._capture is not None else "closed"
        return f"Analyzer({self.settings.source.spec!r}, {state}, {self.frames} frames)"
