"""Remote control: whitelisted commands from ``<prefix>/cmd/<name>``, parsed strictly, applied in the main loop.

Commands: ``pause``, ``resume``, ``status`` (empty payload or ``{}``) and ``set`` with a JSON object
of live-tunable keys, e.g. ``{"aggregate.window_s": 5, "aggregate.min_faces": 3}``. Any payload may
carry ``"id"`` (a short string echoed in the result). Every command gets exactly one answer on
``<prefix>/cmd/result``; a malformed one gets an error answer, never a crash.
"""

from __future__ import annotations

import json
import logging
import queue
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


class CommandError(ValueError):
    """A command that cannot be accepted; the (short) message goes back in the result, with
    the accepted names in `allowed` when that helps."""

    def __init__(self, message: str, allowed: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.allowed = allowed


@dataclass(frozen=True)
class Command:
    name: str
    values: dict[str, Any] = field(default_factory=dict)
    request_id: str | None = None


def parse_command(name: str, payload: bytes) -> Command:
    """Validate one command.

    Raises:
        CommandError: unknown command, payload not a JSON object, unknown or non-live key, bad id.
    """
    if name not in COMMANDS:
        raise CommandError(f"unknown command {name[:24]!r}", COMMANDS)
    if len(payload) > MAX_PAYLOAD:
        raise CommandError(f"payload of {len(payload)} bytes; at most {MAX_PAYLOAD}")
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
    request_id = data.pop("id", None)
    if request_id is not None and (not isinstance(request_id, str) or len(request_id) > 64):
        raise CommandError("id must be a string of at most 64 characters")
    if name != "set":
        if data:
            raise CommandError(f"{name} takes no arguments")
        return Command(name, {}, request_id)
    if not data:
        raise CommandError("set needs at least one key", LIVE_KEYS)
    for key, value in data.items():
        if key not in LIVE_KEYS:
            raise CommandError(f"{str(key)[:24]!r} is not live-tunable", LIVE_KEYS)
        if not isinstance(value, (int, float, str)) or isinstance(value, bool):
            raise CommandError(f"{key}: expected a number or a string")
    return Command(name, dict(data), request_id)


def apply_set(settings: Settings, values: dict[str, Any]) -> Settings:
    """Validated settings with `values` (dotted live keys) applied.

    Raises:
        CommandError: a value is out of range (the message names the key and the rule).
    """
    nested: dict[str, Any] = {}
    for key, value in values.items():
        section, name = key.split(".", 1)
        nested.setdefault(section, {})[name] = value
    try:
        return Settings.model_validate(merge(settings.model_dump(), nested))
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise CommandError(f"{key}: {err['msg'].removeprefix('Value error, ')}"[:64]) from None


class CommandInbox:
    """A bounded hand-over from the MQTT network thread to the main loop.

    `submit` never blocks and never raises (it runs in paho's thread); a full inbox drops the
    command and counts it. The main loop calls `drain` once per frame.
    """

    def __init__(self, maxsize: int = 32) -> None:
        self._queue: queue.Queue[tuple[str, bytes]] = queue.Queue(maxsize)
        self.dropped = 0

    def submit(self, name: str, payload: bytes) -> None:
        try:
            self._queue.put_nowait((name[:64], bytes(payload[: MAX_PAYLOAD + 1])))
        except queue.Full:
            self.dropped += 1

    def drain(self) -> list[tuple[str, bytes]]:
        items = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items
