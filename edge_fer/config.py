"""Settings: one typed model, loaded from TOML, overridden by `EDGE_FER_…` variables and CLI flags.

Precedence, lowest first: built-in defaults → the TOML file → environment → CLI flags.
Every key is validated at load; unknown keys are refused with their dotted path. The result is
frozen: nothing mutates the configuration after load (live changes go through `model_copy`).

Environment variables: ``EDGE_FER_<SECTION>__<KEY>`` (double underscore between levels, e.g.
``EDGE_FER_MQTT__HOST=broker.local``, ``EDGE_FER_AGGREGATE__WINDOW_S=5``) and
``EDGE_FER_<KEY>`` for top-level keys (``EDGE_FER_DEVICE_ID``). Values are read as TOML
values when they parse (numbers, booleans, ``["a", "b"]``), else as plain strings.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge_fer.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 on older Pi OS
    import tomli as tomllib

ENV_PREFIX = "EDGE_FER_"

#: What a sink spec may name (a bare name or a URL scheme) → the sink that serves it, a key of
#: `edge_fer.sinks.SINKS`. The one list: the settings validator, the folding of MQTT URLs into
#: ``[mqtt]``, preflight and `build_sinks` all read it (a test checks it against the registry).
SINK_SPECS: dict[str, str] = {"stdout": "stdout", "mqtt": "mqtt", "mqtts": "mqtt"}


def default_data_dir() -> Path:
    """Where provisioned models and demo footage live (``$XDG_DATA_HOME/edge-fer``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "edge-fer"


def default_state_dir() -> Path:
    """Where the event queue and the `seq` counter live: systemd's StateDirectory when set."""
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "edge-fer"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class ModelsConfig(_Section):
    dir: Path = Field(
        default_factory=lambda: default_data_dir() / "models",
        description="Folder holding provisioned model files and demo footage (`edge-fer models fetch`).",
    )
    detector: str = Field("blazeface_short", description="Manifest name of the face detector run on every frame (near range).")
    far_detector: str = Field(
        "blazeface_full",
        description="Manifest name of the long-range detector, run on a schedule (detector.scan_s) and on every frame while a far face "
        "is in view; empty: the near detector alone.",
    )
    emotion: str = Field("edge_fer_emotion", description="Manifest name of the emotion model (mini_xception: the baseline).")
    landmarks: str = Field("face_mesh", description="Manifest name of the face-mesh model (468 landmarks).")


class RuntimeConfig(_Section):
    backend: Literal["auto", "cpu", "edgetpu", "onnx"] = Field(
        "auto",
        description=(
            "auto (per model): the Edge TPU when a compiled model and a Coral exist, else ONNX Runtime when a GPU "
            "provider (TensorRT/CUDA) runs it, else LiteRT on the CPU; cpu, edgetpu, onnx: that back-end or an error."
        ),
    )
    num_threads: int = Field(2, ge=1, le=16, description="CPU threads per model (XNNPACK; ONNX Runtime intra-op).")


class SourceConfig(_Section):
    spec: str = Field("demo", description="picamera2[:N], v4l2:N or N, a video file, an image folder, rtsp://, http://, demo.")
    realtime: bool = Field(True, description="Pace file sources at their own frame rate; off delivers every frame as fast as the pipeline takes it.")
    loop: bool | None = Field(None, description="Restart a file source at its end (default: only for demo).")
    width: int | None = Field(None, ge=64, le=4096, description="Requested camera width (px).")
    height: int | None = Field(None, ge=48, le=4096, description="Requested camera height (px).")
    fps: float | None = Field(None, gt=0, le=240, description="Requested camera frame rate.")
    reopen_backoff_max_s: float = Field(30.0, gt=0, le=3600, description="Cap of the reopen back-off after a source fails.")


class DetectorConfig(_Section):
    score_threshold: float = Field(0.5, ge=0.05, le=0.99, description="Minimum face score.")
    min_face_px: int = Field(20, ge=8, le=2048, description="Faces narrower than this (px) are ignored.")
    nms_iou: float = Field(0.3, gt=0, lt=1, description="IoU above which overlapping boxes are merged.")
    max_faces: int = Field(
        50, ge=1, le=200, description="At most this many faces per frame (highest scores); the rest are counted in faces.truncated."
    )
    scan_s: float = Field(
        2.0,
        ge=0.0,
        le=60.0,
        description="With a far_detector: the whole frame, then each of its 3x2 tiles, is searched for far and small faces once "
        "every scan_s seconds, spread over the frames (0: never; image sources: every image).",
    )


class ClassifierConfig(_Section):
    every_n_frames: int = Field(2, ge=1, le=60, description="A stable track is re-classified every N frames; others each frame.")
    smoothing_s: float = Field(
        0.3, ge=0.0, le=10.0, description="Time constant (s) of the per-track exponential smoothing of probabilities (0 = none)."
    )
    min_confidence: float = Field(
        0.35,
        ge=0.0,
        lt=1.0,
        description="Abstention: a face whose top probability is below this is `uncertain`: counted, but kept out of shares.",
    )


class QualityConfig(_Section):
    """The face-quality gate (`edge_fer.vision.quality`): a face below any threshold is
    `low_quality`: counted in the summary (``faces.low_quality``), kept out of emotion shares,
    valence and arousal. Defaults measured on FER2013 with `benchmarks/robustness.py`."""

    enabled: bool = Field(True, description="Apply the face-quality gate.")
    min_face_px: float = Field(
        28.0, ge=0, le=2048, description="Faces narrower than this (detector box, px) are low quality: too few pixels for an expression."
    )
    min_sharpness: float = Field(
        0.18,
        ge=0,
        le=10,
        description="Minimum directional sharpness of the face crop (edge_fer.vision.quality): blurred and tiny faces fall below.",
    )
    min_brightness: float = Field(20.0, ge=0, le=255, description="Minimum mean grey level of the face crop (too dark).")
    max_brightness: float = Field(235.0, ge=0, le=255, description="Maximum mean grey level of the face crop (washed out).")
    min_contrast: float = Field(10.0, ge=0, le=128, description="Minimum grey standard deviation of the face crop (flat, fogged).")
    max_yaw_deg: float = Field(45.0, gt=0, le=90, description="Largest head turn left or right (face mesh; not checked without it).")
    max_pitch_deg: float = Field(35.0, gt=0, le=90, description="Largest head tilt up or down (face mesh; not checked without it).")

    @model_validator(mode="after")
    def _brightness_range(self) -> QualityConfig:
        if self.min_brightness > self.max_brightness:
            raise ValueError("min_brightness must not exceed max_brightness")
        return self


class TrackerConfig(_Section):
    iou_threshold: float = Field(0.3, gt=0, lt=1, description="Minimum IoU to continue a track.")
    max_missed_s: float = Field(0.5, ge=0, le=10, description="A track unseen for longer ends.")
    stable_hits: int = Field(3, ge=1, le=100, description="Hits after which a track counts as stable.")
    confirm_hits: int = Field(3, ge=1, le=100, description="A new track counts as a person only after this many detections (1: at once)...")
    confirm_s: float = Field(0.2, ge=0.0, le=10.0, description="...spread over at least this many seconds...")
    confirm_score: float = Field(
        0.75,
        ge=0.0,
        lt=1.0,
        description="...with a mean detector score of at least this (false faces score 0.5-0.74; real faces of 24 px and more a median 0.89).",
    )


class LandmarksConfig(_Section):
    enabled: bool = Field(
        True,
        description="Run the face mesh on tracked faces: action units, head pose, attention, and micro-expression spotting beyond the probabilities.",
    )
    rate_hz: float = Field(
        30.0,
        gt=0,
        le=240,
        description="Mesh runs per second per face at most (a 60 fps camera meshes every 2nd frame at 30; 15 and 30 fps: every frame).",
    )
    min_score: float = Field(0.5, gt=0, lt=1, description="Face-presence score below which a detection is rejected as not a face...")
    trust_score: float = Field(0.75, gt=0, le=1, description="...unless the detector scored it at least this high (1: the mesh alone decides).")
    attention_yaw_deg: float = Field(
        30.0, gt=0, le=90, description="A face counts as attending while it is turned at most this far left or right of the camera."
    )
    attention_pitch_deg: float = Field(20.0, gt=0, le=90, description="…and at most this far up or down.")


class MicroConfig(_Section):
    min_ms: float = Field(40.0, gt=0, le=1000, description="Shortest micro-expression reported (ms).")
    max_ms: float = Field(500.0, gt=0, le=5000, description="Longest micro-expression reported (ms); longer is a macro-expression.")
    onset: float = Field(
        0.25,
        gt=0,
        lt=1,
        description="Rise of a class's raw probability above the track's own baseline that counts as a full departure "
        "(for a class the calm face already shows: half its remaining headroom, at least 0.05).",
    )
    au_onset: float = Field(0.25, gt=0, lt=1, description="Rise of an action unit above the track's own baseline that counts as a full departure.")
    head_turn_deg: float = Field(
        15.0, gt=0, le=90, description="A departure during which the head turned more than this is a head movement, not an expression."
    )

    @model_validator(mode="after")
    def _ordered(self) -> MicroConfig:
        if self.min_ms >= self.max_ms:
            raise ValueError("min_ms must be smaller than max_ms")
        return self


class AggregateConfig(_Section):
    window_s: float = Field(10.0, ge=0.5, le=3600, description="Length of a summary window (s).")
    min_faces: int = Field(1, ge=1, le=100, description="k-anonymity: windows with fewer distinct faces publish counts but no emotion shares.")
    privacy_level: Literal["summary", "events"] = Field(
        "summary", description="summary: window summaries only; events: also per-track and micro-expression events."
    )
    stats_interval_s: float = Field(30.0, ge=1, le=3600, description="How often health stats are published.")


#: EU AI Act (Regulation 2024/1689) Art. 5(1)(f): emotion inference is prohibited in workplaces and
#: education institutions, except for medical or safety reasons.
RESTRICTED_CONTEXTS = ("workplace", "education")
EXEMPT_PURPOSES = ("medical", "safety")


class DeploymentConfig(_Section):
    context: Literal["retail", "kiosk", "home", "research", "workplace", "education"] = Field(
        "kiosk", description="Where the device runs; workplace and education need purpose medical or safety (EU AI Act Art. 5(1)(f))."
    )
    purpose: str = Field("", max_length=64, description="Why emotions are measured (e.g. audience feedback, medical, safety).")
    controller: str = Field("", max_length=64, description="Who is responsible for the processing (shown in the notice and the privacy message).")
    retention_days: int = Field(30, ge=0, le=3650, description="How long consumers should keep the aggregates (published, for audit).")

    def check_lawful(self) -> None:
        """Refuse the prohibited uses of Art. 5(1)(f) EU AI Act.

        Raises:
            ConfigError: context is workplace or education and purpose is not medical or safety.
        """
        if self.context in RESTRICTED_CONTEXTS and self.purpose.strip().lower() not in EXEMPT_PURPOSES:
            raise ConfigError(
                f"deployment.context = {self.context!r}: the EU AI Act (Regulation 2024/1689, Art. 5(1)(f)) prohibits "
                "inferring emotions of people in workplaces and education institutions, except for medical or safety "
                "reasons. edge-fer will not start. If this deployment serves a medical or safety purpose, set "
                'deployment.purpose = "medical" or "safety" (and document why); otherwise do not deploy it here.'
            )


class HomeAssistantConfig(_Section):
    discovery: bool = Field(True, description="Publish Home Assistant MQTT discovery configs (off: remove them).")
    prefix: str = Field("homeassistant", min_length=1, description="Home Assistant's discovery prefix.")


class DashboardConfig(_Section):
    listen: str = Field("", description="HOST:PORT of the local dashboard (aggregates only); empty = off.")
    allow_remote: bool = Field(False, description="Allow a non-loopback dashboard address.")


class HealthConfig(_Section):
    hot_c: float = Field(75.0, ge=40, le=110, description="SoC temperature (°C) above which the frame rate is capped.")
    hot_fps: float = Field(5.0, gt=0, le=60, description="Frame-rate cap while the SoC is hot.")
    remote_control: bool = Field(True, description="Accept whitelisted commands on <prefix>/cmd/<name> (pause, resume, set, status).")


class MqttConfig(_Section):
    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(1883, ge=1, le=65535)
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password: str | None = Field(None, description="Prefer password_file or $CREDENTIALS_DIRECTORY/mqtt_password.", repr=False)
    password_file: Path | None = None
    prefix: str = Field("edge_fer", min_length=1, description="Topic prefix; topics are <prefix>/<device_id>/…")
    keepalive_s: int = Field(30, ge=5, le=3600)
    queue_max_rows: int = Field(100_000, ge=10, description="Durable queue bound (events); the oldest are dropped past it.")
    queue_max_bytes: int = Field(
        50_000_000, ge=1_000_000, description="Durable queue bound on disk (bytes; its files, sqlite's log included, stay within it)."
    )

    @field_validator("prefix")
    @classmethod
    def _no_wildcards(cls, value: str) -> str:
        if any(c in value for c in "#+") or value.startswith("/") or value.endswith("/"):
            raise ValueError("prefix must not contain # or + nor start or end with /")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> MqttConfig:
        if (self.password or self.password_file) and not self.username:
            raise ValueError("password must be given with username")
        if self.password and self.password_file:
            raise ValueError("give either password or password_file, not both")
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("cert_file and key_file must be given together")
        return self

    def check_files(self) -> None:
        """Raise `ConfigError` when a TLS file or the password cannot be read (checked at start)."""
        if self.tls:
            for name in ("ca_file", "cert_file", "key_file"):
                path = getattr(self, name)
                if path is not None and not path.is_file():
                    raise ConfigError(f"mqtt.{name}: {path} does not exist")
        self.resolved_password()

    def resolved_password(self) -> str | None:
        """The password from password_file, systemd credentials, or the plain setting."""
        if self.password_file is not None:
            try:
                return self.password_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"mqtt.password_file: cannot read {self.password_file}: {exc.strerror}") from exc
        cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
        if self.password is None and cred_dir and (Path(cred_dir) / "mqtt_password").is_file():
            return (Path(cred_dir) / "mqtt_password").read_text(encoding="utf-8").strip()
        return self.password


class Settings(_Section):
    device_id: str = Field(default_factory=socket.gethostname, min_length=1, max_length=64)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    state_dir: Path = Field(default_factory=default_state_dir)
    sinks: tuple[str, ...] = Field(("stdout",), description="stdout, mqtt, mqtt://…, mqtts://…")
    models: ModelsConfig = ModelsConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    source: SourceConfig = SourceConfig()
    detector: DetectorConfig = DetectorConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    quality: QualityConfig = QualityConfig()
    tracker: TrackerConfig = TrackerConfig()
    aggregate: AggregateConfig = AggregateConfig()
    landmarks: LandmarksConfig = LandmarksConfig()
    micro: MicroConfig = MicroConfig()
    deployment: DeploymentConfig = DeploymentConfig()
    health: HealthConfig = HealthConfig()
    homeassistant: HomeAssistantConfig = HomeAssistantConfig()
    dashboard: DashboardConfig = DashboardConfig()
    mqtt: MqttConfig = MqttConfig()

    @field_validator("device_id")
    @classmethod
    def _topic_safe(cls, value: str) -> str:
        if any(c in value for c in "#+/ ") or not value.isprintable():
            raise ValueError("device_id must not contain '/', '#', '+', spaces or control characters")
        return value

    @field_validator("sinks")
    @classmethod
    def _known_sinks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for spec in value:
            scheme = spec.split("://", 1)[0] if "://" in spec else spec
            if scheme not in SINK_SPECS:
                names = [name for name, sink in SINK_SPECS.items() if name == sink]
                urls = [f"{name}://host[:port]" for name, sink in SINK_SPECS.items() if sink == "mqtt"]
                raise ValueError(f"unknown sink {spec!r}; known: {', '.join(names + urls)}")
        return value

    @property
    def topic_prefix(self) -> str:
        return f"{self.mqtt.prefix}/{self.device_id}"


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Nested dict of overrides from ``EDGE_FER_…`` variables (see the module docstring)."""
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name in ("EDGE_FER_CONFIG",):
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {name} conflicts with another override")
        node[path[-1]] = _parse_env_value(raw)
    return out


def merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; values of `override` win."""
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = value
    return result


def apply_sink_url(data: dict[str, Any], spec: str) -> None:
    """Fold ``mqtt[s]://[user[:password]@]host[:port]`` into the ``mqtt`` section of `data`."""
    if "://" not in spec:
        return
    url = urlsplit(spec)
    if SINK_SPECS.get(url.scheme) != "mqtt":
        return
    mqtt = data.setdefault("mqtt", {})
    if not url.hostname:
        raise ConfigError(f"sink {spec!r}: no host; expected mqtt://[user[:password]@]host[:port]")
    mqtt["host"] = url.hostname
    try:
        port = url.port
    except ValueError as exc:
        raise ConfigError(f"sink {spec!r}: bad port; expected 1-65535") from exc
    mqtt["tls"] = url.scheme == "mqtts"
    mqtt["port"] = port or (8883 if url.scheme == "mqtts" else 1883)
    if url.username:
        mqtt["username"] = unquote(url.username)
    if url.password:
        mqtt["password"] = unquote(url.password)


def format_validation_error(exc: ValidationError, origin: str) -> str:
    return _format_errors(exc.errors(), origin)


def _format_errors(errors: list[Any], origin: str) -> str:
    lines = [f"invalid configuration ({origin}):"]
    for err in errors:
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {key}: {msg}" + (f" (got {err['input']!r})" if err["type"] != "extra_forbidden" and "password" not in key else ""))
    return "\n".join(lines)


def _given(data: Any, loc: tuple[Any, ...]) -> bool:
    """Whether `data` itself holds the value at `loc` (a leaf, not a section)."""
    for part in loc:
        if isinstance(data, Mapping) and part in data or isinstance(data, (list, tuple)) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return False
    return not isinstance(data, Mapping)


def _check_layer(data: dict[str, Any], origin: str) -> None:
    """Refuse a bad value given in one layer (file, environment) even where a later layer
    overrides it: a typo must not wait for the day the flag is dropped. Rules that span keys
    are judged on the merged result only, since another layer may complete them."""
    try:
        Settings.model_validate(data)
    except ValidationError as exc:
        bad = [err for err in exc.errors() if err["loc"] and _given(data, tuple(err["loc"]))]
        if bad:
            raise ConfigError(_format_errors(bad, origin)) from None


def load_settings(
    path: Path | str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Load, merge and validate the settings.

    Args:
        path: a TOML file; None reads ``$EDGE_FER_CONFIG`` when set, else defaults only.
        environ: the environment to read overrides from (default `os.environ`).
        overrides: nested dict from CLI flags, applied last.

    Raises:
        ConfigError: the file is missing or not TOML, or a value is invalid (in the result, or
            in the file or the environment even where a later layer overrides it); the message
            lists every bad key with its dotted path.
    """
    environ = os.environ if environ is None else environ
    if path is None and environ.get("EDGE_FER_CONFIG"):
        path = environ["EDGE_FER_CONFIG"]
    data: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        origin = str(path)
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        except OSError as exc:
            raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from exc
    if data:
        _check_layer(data, origin)
    env = env_overrides(environ)
    if env:
        _check_layer(env, "environment")
    data = merge(data, env)
    if overrides:
        data = merge(data, overrides)
    if isinstance(data.get("sinks"), (list, tuple)):
        # URLs are folded into [mqtt] and replaced by their scheme, so that no password stays
        # in `sinks` (which is logged and printed).
        folded = []
        for spec in data["sinks"]:
            if isinstance(spec, str) and "://" in spec:
                apply_sink_url(data, spec)
                spec = spec.split("://", 1)[0]
            folded.append(spec)
        data["sinks"] = folded
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, origin)) from None
