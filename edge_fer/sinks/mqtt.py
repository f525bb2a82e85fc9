"""MQTT sink (paho-mqtt 2.x): drains the durable queue to the broker; the only module importing paho.

Events are deleted from the queue only when the broker acknowledges them (QoS 1 PUBACK). While
the broker is unreachable they wait on disk; after a reconnect the unacknowledged ones are sent
again in order (consumers drop duplicates by `seq`). `publish` never blocks on the network.

Session choice: MQTT 5 with a clean start and no session expiry. Our own durable queue, not
the broker's session, is what guarantees delivery, so no broker-side state is needed and a
re-flashed device with the same id starts clean. MQTT 5 because its subscription option
*retain as published* is the only way to tell a retained command (or the empty retained message
that clears one) from a live request: commands are requests, never state, so retained ones are
ignored.

Retained state (availability, the privacy record, Home Assistant discovery) is published again on
every connect: a broker restarted without persistence, or a privacy record dropped from a full
queue, never leaves it missing.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge_fer.config import Settings
from edge_fer.errors import ConfigError
from edge_fer.sinks.payloads import Event, availability_event, check_payload
from edge_fer.sinks.queue import DurableQueue

logger = logging.getLogger(__name__)

INFLIGHT_MAX = 20
RECONNECT_MIN_S = 1
#: paho messages about a connection that is down: an expected state, reported once by our own
#: state changes (and in stats), so these go to DEBUG instead of an ERROR per retry.
_RECONNECT_NOISE = ("Client is not connected", "failed to receive on socket", "timeout on socket")
_paho_logger = logging.getLogger("edge_fer.sinks.paho")


class MqttSink:
    """Publishes events under ``<prefix>/<device_id>/`` through a durable queue.

    Args:
        settings: broker address, credentials, TLS, prefix and queue bounds come from here.
        queue: the durable queue (default: ``state_dir/queue.sqlite3``).

    Raises:
        ConfigError: TLS files missing or unreadable.
        PublishError: the queue cannot be opened.
    """

    def __init__(self, settings: Settings, queue: DurableQueue | None = None) -> None:
        cfg = settings.mqtt
        self.prefix = settings.topic_prefix
        self.host, self.port = cfg.host, cfg.port
        self.queue = queue or DurableQueue(settings.state_dir / "queue.sqlite3", settings.device_id, cfg.queue_max_rows, cfg.queue_max_bytes)
        self.state = "connecting"
        self.published = 0
        self.acked = 0
        self.reconnects = 0
        self.dropped_unqueued = 0
        # paho calls on_publish while holding its own message lock, and publish() takes that
        # lock: so the network thread only hands acks over (SimpleQueue) and never shares a
        # lock with the drain thread, which owns the in-flight map.
        self._acks: SimpleQueue[int] = SimpleQueue()
        self._wake = threading.Event()
        self._generation = 0
        self._closing = threading.Event()
        self._connected_once = False
        self._command_handler: Callable[[str, bytes], None] | None = None
        self.commands_subscribed = threading.Event()
        self.retained_commands_ignored = 0
        self.connect_failures = 0  # failed attempts since the connection was last up
        self._down_since: float | None = time.monotonic()
        # The latest retained event per topic, with its queue row: sent again on each connect
        # unless the row is still queued (then the drain sends it, in order).
        self._retained: dict[str, tuple[int, Event]] = {}
        # Retained configs (re)announced on every connect: Home Assistant discovery.
        from edge_fer.sinks.homeassistant import discovery_events

        self._on_connect_events = discovery_events(settings)

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"edge-fer-{settings.device_id}",
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=True,
        )
        client.on_log = self._on_log
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.resolved_password())
        cfg.check_files()
        if cfg.tls:
            try:
                client.tls_set(
                    ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
                    certfile=str(cfg.cert_file) if cfg.cert_file else None,
                    keyfile=str(cfg.key_file) if cfg.key_file else None,
                )
            except (OSError, ValueError) as exc:
                raise ConfigError(f"mqtt TLS set-up failed: {exc}") from exc
        offline = availability_event(False)
        client.will_set(f"{self.prefix}/{offline.topic}", offline.body(), qos=1, retain=True)
        # paho backs off exponentially between min and max; a random cap per device keeps a
        # fleet from reconnecting in lock-step after the broker comes back (jitter), and the
        # cap keeps a device at most ~20 s behind a broker that is back.
        self.reconnect_max_s = random.randint(10, 20)
        client.reconnect_delay_set(min_delay=RECONNECT_MIN_S, max_delay=self.reconnect_max_s)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._client = client
        client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s, clean_start=True)
        client.loop_start()
        self._thread = threading.Thread(target=self._drain, name="edge-fer-mqtt", daemon=True)
        self._thread.start()
        logger.info("MQTT: publishing to %s:%d under %s/ (queue %s)", cfg.host, cfg.port, self.prefix, self.queue.path)

    # -- paho callbacks (network thread: never raise) -------------------------------------
    def _set_state(self, state: str, message: str, level: int = logging.INFO) -> None:
        if state != self.state:
            self.state = state
            logger.log(level, "MQTT %s:%d: %s", self.host, self.port, message)

    def _on_log(self, _client: mqtt.Client, _u: Any, level: int, message: str) -> None:
        py_level = mqtt.LOGGING_LEVEL.get(mqtt.LogLevel(level), logging.DEBUG)
        if message.startswith(_RECONNECT_NOISE):
            py_level = logging.DEBUG
        if _paho_logger.isEnabledFor(py_level):
            _paho_logger.log(py_level, "%s", message)

    def _subscribe_commands(self, client: mqtt.Client) -> None:
        # Retain as published: a retained command keeps its flag even when it arrives live, so
        # it is recognised (and ignored) in every case, clearing messages included.
        client.subscribe(f"{self.prefix}/cmd/+", options=SubscribeOptions(qos=1, retainAsPublished=True))

    def _on_connect(self, client: mqtt.Client, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self.connect_failures += 1
            # A refused CONNACK (bad credentials, not authorised) is never "connected".
            state = "auth_failed" if reason.value in (0x86, 0x87, 4, 5, 134, 135) else "refused"
            hint = "; it must speak MQTT 5 (mosquitto 1.6 or later does)" if reason.value == 0x84 else ""
            self._set_state(state, f"connection refused: {reason}{hint}; retrying with back-off", logging.ERROR)
            return
        if self._connected_once:
            self.reconnects += 1
        self._connected_once = True
        self.connect_failures = 0
        self._down_since = None
        online = availability_event(True)
        client.publish(f"{self.prefix}/{online.topic}", online.body(), qos=1, retain=True)
        for event in self._on_connect_events:
            client.publish(event.topic, event.body(), qos=event.qos, retain=event.retain)
        for row_id, stamped in list(self._retained.values()):
            if not self.queue.contains(row_id):  # acknowledged long ago, or dropped from a full queue
                client.publish(f"{self.prefix}/{stamped.topic}", stamped.body(), qos=stamped.qos, retain=True)
        if self._command_handler is not None:
            self._subscribe_commands(client)
        self._generation += 1  # the drain thread resends everything not yet acknowledged, in order
        self._set_state("connected", "connected")
        self._wake.set()

    def _on_connect_fail(self, _client: mqtt.Client, _u: Any) -> None:
        self.connect_failures += 1
        self._set_state(
            "disconnected",
            f"broker unreachable; events are queued and will be sent when it is back (retrying every {RECONNECT_MIN_S} s "
            f"doubling to {self.reconnect_max_s} s; see stats mqtt_retries)",
            logging.WARNING,
        )

    def _on_disconnect(self, _client: mqtt.Client, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self._generation += 1
        self.commands_subscribed.clear()
        if self._down_since is None:
            self._down_since = time.monotonic()
        if not self._closing.is_set() and self.state == "connected":
            self._set_state("disconnected", f"disconnected ({reason}); events are queued until it is back", logging.WARNING)
        self._wake.set()

    def _on_publish(self, _client: mqtt.Client, _u: Any, mid: int, _reason: Any, _props: Any) -> None:
        self._acks.put(mid)
        self._wake.set()

    def _on_subscribe(self, _client: mqtt.Client, _u: Any, _mid: int, reasons: Any, _props: Any) -> None:
        if reasons and not reasons[0].is_failure:
            self.commands_subscribed.set()
        else:
            logger.error("MQTT: the broker refused the subscription to %s/cmd/+ (%s); remote control is off", self.prefix, reasons)

    def _on_message(self, _client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        handler = self._command_handler
        name = message.topic.rsplit("/", 1)[-1]
        if handler is None or not message.topic.startswith(f"{self.prefix}/cmd/") or name == "result":
            return
        if message.retain:
            # A retained command would be obeyed again after every restart and reconnect.
            self.retained_commands_ignored += 1
            if self.retained_commands_ignored == 1:
                logger.warning(
                    "MQTT: ignoring retained message on %s (commands are requests, not state; further ones are ignored "
                    "silently): clear it with `mosquitto_pub -r -n -t %s` and send commands without -r",
                    message.topic[:128],
                    message.topic[:128],
                )
            return
        try:
            handler(name, bytes(message.payload))
        except Exception:  # noqa: BLE001 - a bad command must never kill paho's network thread
            logger.exception("MQTT: command %r failed", name[:64])

    def set_command_handler(self, handler: Callable[[str, bytes], None]) -> None:
        """Receive ``(name, payload)`` for messages on ``<prefix>/cmd/<name>`` (whole payloads: the
        handler judges their size); retained messages are ignored."""
        self._command_handler = handler
        if self.state == "connected":
            self._subscribe_commands(self._client)

    # -- the drain thread -----------------------------------------------------------------
    def _drain(self) -> None:
        inflight: dict[int, int] = {}  # mid → queue row id
        last_sent = 0
        generation = self._generation
        while True:
            self._wake.wait(0.5)
            self._wake.clear()
            if generation != self._generation:
                generation, last_sent = self._generation, 0
                inflight.clear()
            while True:
                try:
                    mid = self._acks.get_nowait()
                except Empty:
                    break
                row_id = inflight.pop(mid, None)
                if row_id is not None:
                    self.queue.ack(row_id)
                    self.acked += 1
            connected = self.state == "connected"
            if self._closing.is_set() and (not connected or (not inflight and self.queue.depth() == 0)):
                return
            room = INFLIGHT_MAX - len(inflight)
            if not connected or room <= 0:
                continue
            for row_id, event in self.queue.peek(room, after_id=last_sent):
                info = self._client.publish(f"{self.prefix}/{event.topic}", event.body(), qos=event.qos, retain=event.retain)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    break  # disconnected meanwhile: the next connect resends from the oldest
                inflight[info.mid] = row_id
                last_sent = row_id
                self.published += 1
                self._wake.set()  # keep going while there is room and backlog

    # -- Sink API -------------------------------------------------------------------------
    def publish(self, event: Event) -> None:
        """Queue `event` durably (or, for stats, publish it if connected) and return at once."""
        if event.durable:
            row_id, stamped = self.queue.put_row(event)
            if event.retain:
                self._retained[event.topic] = (row_id, stamped)
            self._wake.set()
            return
        if self.state != "connected":
            self.dropped_unqueued += 1
            return
        stamped = event.stamped(self.queue.device, self.queue.next_seq())
        if stamped.payload is not None:
            check_payload(stamped.payload)
        self._client.publish(f"{self.prefix}/{stamped.topic}", stamped.body(), qos=stamped.qos, retain=stamped.retain)

    def health(self) -> dict[str, Any]:
        down = self._down_since
        return {
            "mqtt_state": self.state,
            "queue_depth": self.queue.depth(),
            "queue_dropped": self.queue.dropped,
            "mqtt_published": self.published,
            "mqtt_acked": self.acked,
            "mqtt_reconnects": self.reconnects,
            # Back-off state while the broker is away (0 while connected).
            "mqtt_retries": self.connect_failures,
            "mqtt_retry_delay_s": min(RECONNECT_MIN_S * 2 ** (self.connect_failures - 1), self.reconnect_max_s) if self.connect_failures else 0,
            "mqtt_down_s": 0.0 if down is None else round(time.monotonic() - down, 1),
            "commands_retained_ignored": self.retained_commands_ignored,
        }

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what can be sent within `timeout_s`, publish `offline`, disconnect."""
        deadline = time.monotonic() + timeout_s
        self._closing.set()
        self._wake.set()
        self._thread.join(max(deadline - time.monotonic(), 0.1))
        if self.state == "connected":
            offline = availability_event(False)
            info = self._client.publish(f"{self.prefix}/{offline.topic}", offline.body(), qos=1, retain=True)
            try:
                info.wait_for_publish(max(deadline - time.monotonic(), 1.0))
            except (RuntimeError, ValueError):
                pass
        left = self.queue.depth()
        if left:
            logger.warning("MQTT: %d event(s) still queued in %s; they are sent on the next start", left, self.queue.path)
        self._client.disconnect()
        self._client.loop_stop()
        self.queue.close()
