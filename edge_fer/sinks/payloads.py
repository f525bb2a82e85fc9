"""The only place payloads are built: whitelisted numeric and label fields, checked by a guard.

`check_payload` refuses anything that could carry an image, an embedding or landmarks — arrays,
bytes, long lists, long strings, deep nesting, big payloads — so that even a mistake elsewhere
cannot publish or store image data. Every builder runs it, and every sink runs it again.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from edge_fer.errors import PublishError
from edge_fer.types import MicroExpression, TrackSummary, WindowSummary

if TYPE_CHECKING:
    from edge_fer.config import Settings

SCHEMA = 1
MAX_STRING = 64
MAX_LIST = 16
MAX_DEPTH = 3
MAX_KEYS = 48
MAX_BYTES = 4096


@dataclass(frozen=True)
class Event:
    """A message for the sinks: topic suffix under ``<prefix>/<device_id>/``, JSON payload.

    ``payload`` is None for the plain-text availability messages, which carry ``text``.
    The envelope (``schema, device, seq, ts``) is stamped by the queue or sink that sends it.
    """

    topic: str
    payload: dict[str, Any] | None
    qos: int = 1
    retain: bool = False
    text: str | None = None
    durable: bool = True
    absolute: bool = False  # topic is a full topic (Home Assistant discovery), not under the device prefix

    def stamped(self, device: str, seq: int, ts: datetime | None = None) -> Event:
        """A copy with the envelope fields set."""
        if self.payload is None or self.absolute:
            return self
        envelope = {"schema": SCHEMA, "device": device, "seq": seq, "ts": iso_utc(ts or datetime.now(timezone.utc))}
        return replace(self, payload={**envelope, **self.payload})

    def body(self) -> bytes:
        """The bytes that go on the wire."""
        if self.payload is None:
            return (self.text or "").encode()
        return json.dumps(self.payload, separators=(",", ":"), allow_nan=False).encode()


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _check(value: Any, path: str, depth: int) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) > 2**53:
            raise PublishError(f"payload field {path}: integer {value} out of range")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PublishError(f"payload field {path}: {value} is not a finite number")
        return
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise PublishError(f"payload field {path}: string of {len(value)} characters (at most {MAX_STRING})")
        return
    if depth >= MAX_DEPTH:
        raise PublishError(f"payload field {path}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, Mapping):
        if len(value) > MAX_KEYS:
            raise PublishError(f"payload field {path}: {len(value)} keys (at most {MAX_KEYS})")
        for key, item in value.items():
            if not isinstance(key, str) or len(key) > MAX_STRING:
                raise PublishError(f"payload field {path}: bad key {key!r}")
            _check(item, f"{path}.{key}", depth + 1)
        return
    if isinstance(value, (list, tuple)):
        if len(value) > MAX_LIST:
            raise PublishError(f"payload field {path}: list of {len(value)} items (at most {MAX_LIST}): arrays are never published")
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]", depth + 1)
        return
    raise PublishError(f"payload field {path}: {type(value).__name__} is not allowed (numbers, labels and small dicts only)")


def check_payload(payload: Mapping[str, Any]) -> None:
    """Raise `PublishError` unless `payload` is small JSON made of numbers, booleans, short
    strings and small dicts/lists of those."""
    if not isinstance(payload, Mapping):
        raise PublishError(f"payload must be a dict, got {type(payload).__name__}")
    _check(payload, "payload", 0)
    size = len(json.dumps(payload, separators=(",", ":"), allow_nan=False))
    if size > MAX_BYTES:
        raise PublishError(f"payload of {size} bytes (at most {MAX_BYTES})")


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def _number(value: Any, digits: int) -> Any:
    """A number rounded; anything else unchanged, for the guard to judge (and refuse)."""
    return round(float(value), digits) if isinstance(value, (int, float)) else value


def _shares(shares: Mapping[str, float] | None) -> dict[str, float] | None:
    return None if shares is None else {str(k): round(float(v), 4) for k, v in shares.items()}


def _event(topic: str, payload: dict[str, Any], qos: int = 1, retain: bool = False, durable: bool = True) -> Event:
    check_payload(payload)
    return Event(topic, payload, qos, retain, durable=durable)


def summary_event(s: WindowSummary) -> Event:
    """`<prefix>/summary`: one window's anonymous statistics."""
    return _event(
        "summary",
        {
            "window": {"seconds": round(s.end_t - s.start_t, 3)},
            "frames": s.frames,
            "fps": round(s.fps, 2),
            "faces": {
                "max": s.faces_max,
                "distinct": s.faces_distinct,
                "dwell_s": round(s.dwell_s, 2),
                "attending_s": _r(s.attending_s, 2),
                "observations": s.observations,
                "uncertain": s.uncertain,
                "truncated": s.faces_truncated,
                "low_quality": s.low_quality,
            },
            "suppressed": s.suppressed,
            "confidence": _r(s.mean_confidence),
            "emotions": _shares(s.emotion_shares),
            "valence": _r(s.mean_valence),
            "arousal": _r(s.mean_arousal),
            "attention_share": _r(s.attention_share),
            "micro_expressions": s.micro_expressions,
            "micro_per_min": round(s.micro_expressions * 60.0 / max(s.end_t - s.start_t, 1e-9), 2),
            "dominant": max(s.emotion_shares, key=lambda k: s.emotion_shares[k]) if s.emotion_shares else None,  # type: ignore[index]
        },
    )


def track_event(t: TrackSummary) -> Event:
    """`<prefix>/event/track`: a face left (privacy level `events`)."""
    return _event(
        "event/track",
        {
            "track_id": int(t.track_id),
            "duration_s": round(t.duration_s, 3),
            "observations": t.observations,
            "dominant_emotion": t.dominant_emotion,
            "emotions": _shares(t.emotion_shares),
            "mean_valence": _r(t.mean_valence),
        },
    )


def micro_event(m: MicroExpression) -> Event:
    """`<prefix>/event/micro_expression` (privacy level `events`): published at the offset, so the
    onset was ``duration_ms`` before; ``apex_ms`` counts from the onset. ``action_units``: the AUs
    that rose at the apex (name → rise, at most 9 scalars; None without the face mesh)."""
    return _event(
        "event/micro_expression",
        {
            "track_id": int(m.track_id),
            "emotion": m.emotion,
            "duration_ms": round(m.duration_ms, 1),
            "apex_ms": round((m.apex_t - m.onset_t) * 1000.0, 1),
            "intensity": round(float(m.intensity), 4),
            "action_units": None if m.action_units is None else {str(k): _number(v, 3) for k, v in m.action_units.items()},
        },
    )


def stats_event(stats: Mapping[str, Any]) -> Event:
    """`<prefix>/stats`: health numbers (QoS 0, retained, not queued durably: only the latest matters)."""
    return _event("stats", dict(stats), qos=0, retain=True, durable=False)


def cmd_result_event(command: str, ok: bool, message: str, request_id: str | None = None, **values: Any) -> Event:
    """`<prefix>/cmd/result`: the answer to a remote command (``values`` must pass the guard)."""
    payload = {"command": command[:MAX_STRING], "id": request_id, "ok": ok, "message": message[:MAX_STRING], **values}
    return _event("cmd/result", payload, durable=False)


def privacy_event(settings: Settings) -> Event:
    """`<prefix>/privacy` (QoS 1, retained): the device's privacy settings, for anyone to audit."""
    d, a = settings.deployment, settings.aggregate
    return _event(
        "privacy",
        {
            "context": d.context,
            "purpose": d.purpose or None,
            "controller": d.controller or None,
            "retention_days": d.retention_days,
            "min_faces": a.min_faces,
            "privacy_level": a.privacy_level,
            "min_confidence": settings.classifier.min_confidence,
            "window_s": a.window_s,
            "images_leave_device": False,
            "face_recognition": False,
            "remote_control": settings.health.remote_control,
        },
        qos=1,
        retain=True,
    )


def availability_event(online: bool) -> Event:
    """`<prefix>/availability`: plain text, retained."""
    return Event("availability", None, qos=1, retain=True, text="online" if online else "offline", durable=False)
