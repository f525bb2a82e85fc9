"""Remote control: whitelisted commands from ``<prefix>/cmd/<name>``, parsed strictly, applied in the main loop.

Commands: ``pause``, ``resume``, ``status`` (empty payload or ``{}``) and ``set`` with a JSON object
of live-tunable keys, e.g. ``{"aggregate.window_s": 5, "aggregate.min_faces": 3}``. Any payload may
carry ``"id"`` (a short string echoed in the result, refusals included). Every command gets exactly
one answer on ``<prefix>/cmd/result``; a malformed one gets an error answer, never a crash, and
one that arrives while the inbox is full gets ``ok: false`` with a "busy" message. Values are
typed strictly: ``"3"`` is not a number. Commands are requests, not state: retained ones are
ignored by the MQTT sink.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from edge_fer.config import Settings, merge
from edge_fer.pipeline import LIVE_SETTINGS

logger = logging.getLogger(__name__)

COMMANDS = ("pause", "resume", "status", "set")
#: Keys `set` may change while running: everything else needs a restart. The one list lives
#: with the code that applies it (`edge_fer.pipeline.LIVE_SETTINGS`, `Pipeline.apply`).
LIVE_KEYS = tuple(LIVE_SETTINGS)
MAX_PAYLOAD = 4096
#: What a command refused for want of room is told (it was not applied: send it again).
BUSY_MESSAGE = "busy: too many commands at once; not applied, send it again"


class CommandError(ValueError):
    """A command that cannot be accepted; the (short) message goes back in the result, with
    the accepted names in `allowed` when that helps and the request's id when it had one."""

    def __init__(self, message: str, allowed: tuple[str, ...] = (), request_id: str | None = None) -> None:
        super().__init__(message)
        self.allowed = allowed
        self.request_id = request_id


@dataclass(frozen=True)
class Command:
    name: str
    values: dict[str, Any] = field(default_factory=dict)
    request_id: str | None = None


def _valid_id(value: Any) -> str | None:
    return value if isinstance(value, str) and len(value) <= 64 else None


def request_id_of(payload: bytes) -> str | None:
    """The ``id`` of a command payload, or None (too big, not a JSON object, no valid id)."""
    if len(payload) > MAX_PAYLOAD or not payload.strip():
        return None
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return _valid_id(data.get("id")) if isinstance(data, dict) else None


def parse_command(name: str, payload: bytes, size: int | None = None) -> Command:
    """Validate one command. `size` is the payload's length on the wire when `payload` was cut.

    Raises:
        CommandError: unknown command, payload too big or not a JSON object, unknown or non-live
            key, a value of the wrong type, bad id. It carries the request's id when it had one.
    """
    size = len(payload) if size is None else size
    if size > MAX_PAYLOAD:
        # Refused unread: a payload this size is no command, and its id is not looked for.
        raise CommandError(f"payload of {size} bytes; at most {MAX_PAYLOAD}")
    text = payload.strip()
    if not text:
        data: Any = {}
    else:
        try:
            data = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise CommandError("payload is not valid JSON") from None
    if not isinstance(data, dict):
        raise CommandError("payload must be a JSON object")
    raw_id = data.pop("id", None)
    request_id = _valid_id(raw_id)
    if raw_id is not None and request_id is None:
        raise CommandError("id must be a string of at most 64 characters")
    if name not in COMMANDS:
        raise CommandError(f"unknown command {name[:24]!r}", COMMANDS, request_id)
    if name != "set":
        if data:
            raise CommandError(f"{name} takes no arguments", (), request_id)
        return Command(name, {}, request_id)
    if not data:
        raise CommandError("set needs at least one key", LIVE_KEYS, request_id)
    for key, value in data.items():
        if key not in LIVE_KEYS:
            raise CommandError(f"{str(key)[:24]!r} is not live-tunable", LIVE_KEYS, request_id)
        if not isinstance(value, (int, float, str)) or isinstance(value, bool):
            raise CommandError(f"{key}: expected a number or a string", (), request_id)
    return Command(name, dict(data), request_id)


def apply_set(settings: Settings, values: dict[str, Any]) -> Settings:
    """Validated settings with `values` (dotted live keys) applied, typed strictly (a string is
    never read as a number, nor a fraction as a whole number).

    Raises:
        CommandError: a value is out of range or of the wrong type (the message names the key).
    """
    nested: dict[str, Any] = {}
    for key, value in values.items():
        section, name = key.split(".", 1)
        nested.setdefault(section, {})[name] = value
    try:
        return Settings.model_validate(merge(settings.model_dump(), nested), strict=True)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise CommandError(f"{key}: {err['msg'].removeprefix('Value error, ')}"[:64]) from None


class CommandInbox:
    """A bounded hand-over from the MQTT network thread to the main loop.

    `submit` never blocks and never raises (it runs in paho's thread). Up to `maxsize` commands
    wait to be applied; one arriving while they are full is refused, and its name and id wait
    (up to `busy_max` of them) for a "busy" answer from the main loop, which calls `drain` and
    `drain_busy` once per frame. Past `busy_max` refusals are only counted (`unanswered`), and
    answered together by one result without an id.
    """

    def __init__(self, maxsize: int = 32, busy_max: int = 4096) -> None:
        self._queue: queue.Queue[tuple[str, bytes, int]] = queue.Queue(maxsize)
        self._busy: deque[tuple[str, str | None]] = deque()
        self._busy_max = busy_max
        self._lock = threading.Lock()
        #: Commands refused because the inbox was full (each answered "busy").
        self.dropped = 0
        self._unanswered = 0

    def submit(self, name: str, payload: bytes) -> None:
        try:
            self._queue.put_nowait((name[:64], bytes(payload[: MAX_PAYLOAD + 1]), len(payload)))
            return
        except queue.Full:
            pass
        request_id = request_id_of(payload)
        with self._lock:
            self.dropped += 1
            if len(self._busy) < self._busy_max:
                self._busy.append((name[:64], request_id))
            else:
                self._unanswered += 1

    def drain(self) -> list[tuple[str, bytes, int]]:
        """The commands waiting to be applied: ``(name, payload cut to MAX_PAYLOAD + 1, size)``."""
        items = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items

    def drain_busy(self, limit: int) -> tuple[list[tuple[str, str | None]], int]:
        """Up to `limit` refused ``(name, id)`` to answer "busy", and how many more were refused
        past `busy_max` (answered together; reset by this call)."""
        with self._lock:
            items = [self._busy.popleft() for _ in range(min(limit, len(self._busy)))]
            unanswered = 0
            if not self._busy:
                unanswered, self._unanswered = self._unanswered, 0
            return items, unanswered
