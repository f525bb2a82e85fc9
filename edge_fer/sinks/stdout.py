"""Stdout sink: one JSON object per line, ``{"topic": "<prefix>/<suffix>", ...payload}``."""

from __future__ import annotations

import json
import sys
from typing import IO

from edge_fer.sinks.payloads import Event, check_payload


class StdoutSink:
    """Prints each event as one JSON line and flushes, for pipes, `jq` and the demo.

    `seq` here counts from 1 in each process: the persisted, cross-restart `seq` is the MQTT
    queue's (stdout output is not replayed after a restart, so it needs none).

    Args:
        prefix: the topic prefix (``<mqtt.prefix>/<device_id>``).
        device: the device id stamped into payloads.
        stream: where to write (default: standard output).
    """

    def __init__(self, prefix: str, device: str, stream: IO[str] | None = None) -> None:
        self.prefix = prefix
        self.device = device
        self.stream = stream or sys.stdout
        self._seq = 0

    def publish(self, event: Event) -> None:
        if event.payload is None or event.absolute:
            return  # availability and discovery are MQTT notions
        self._seq += 1
        stamped = event.stamped(self.device, self._seq)
        assert stamped.payload is not None
        check_payload(stamped.payload)
        line = json.dumps({"topic": f"{self.prefix}/{stamped.topic}", **stamped.payload}, separators=(", ", ": "), allow_nan=False)
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except BrokenPipeError:
            pass  # `edge-fer run | head`: the reader left; keep running for the other sinks

    def close(self, timeout_s: float = 5.0) -> None:
        try:
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            pass
