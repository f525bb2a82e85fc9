"""Durable store-and-forward queue (sqlite3, WAL): events wait here until the broker acknowledges them.

The per-device `seq` counter lives in the same database and is advanced in the same transaction
as the insert, so a crash can neither reuse a seq nor lose an event that got one.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from pathlib import Path

from edge_fer.errors import PublishError
from edge_fer.sinks.payloads import Event, check_payload

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    payload TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class DurableQueue:
    """A bounded FIFO of stamped events on disk.

    Args:
        path: the sqlite file (its folder is created).
        device: device id stamped into every payload.
        max_rows: at most this many events are kept; past it the oldest are dropped and counted.
        max_bytes: at most this many payload bytes are kept (same policy).

    Raises:
        PublishError: the database cannot be opened or written (disk full, read-only).
    """

    def __init__(self, path: Path, device: str, max_rows: int = 100_000, max_bytes: int = 50_000_000) -> None:
        if max_rows < 1 or max_bytes < 1:
            raise ValueError(f"max_rows and max_bytes must be >= 1, got {max_rows}, {max_bytes}")
        self.path = Path(path)
        self.device = device
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise PublishError(f"cannot open the event queue {self.path}: {exc}") from exc
        self._dropped_logged = False

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _set_meta(self, key: str, value: int) -> None:
        self._db.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def next_seq(self) -> int:
        """Advance and return the persisted seq counter (for events that are not queued)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            seq = self._meta("seq") + 1
            self._set_meta("seq", seq)
            self._db.execute("COMMIT")
            return seq

    def put(self, event: Event) -> Event:
        """Stamp `event` with the next seq and the time, store it, and return it.

        Raises:
            PublishError: the payload fails the privacy guard, or the disk write failed.
        """
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                seq = self._meta("seq") + 1
                self._set_meta("seq", seq)
                stamped = event.stamped(self.device, seq)
                if stamped.payload is not None:
                    check_payload(stamped.payload)
                body = stamped.body().decode()
                self._db.execute(
                    "INSERT INTO events(topic, qos, retain, payload, size) VALUES(?, ?, ?, ?, ?)",
                    (stamped.topic, stamped.qos, int(stamped.retain), body, len(body)),
                )
                self._enforce_bounds()
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise PublishError(f"cannot write to the event queue {self.path}: {exc}") from exc
            except PublishError:
                self._rollback()
                raise
            return stamped

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _enforce_bounds(self) -> None:
        rows, size = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM events").fetchone()
        if rows <= self.max_rows and size <= self.max_bytes:
            return
        dropped = 0
        for row_id, row_size in self._db.execute("SELECT id, size FROM events ORDER BY id").fetchall():
            if rows <= self.max_rows and size <= self.max_bytes:
                break
            self._db.execute("DELETE FROM events WHERE id = ?", (row_id,))
            rows, size, dropped = rows - 1, size - row_size, dropped + 1
        self._set_meta("dropped", self._meta("dropped") + dropped)
        if not self._dropped_logged:
            logger.warning("event queue full (%d events / %d bytes): dropping the oldest; see stats queue_dropped", self.max_rows, self.max_bytes)
            self._dropped_logged = True

    def peek(self, limit: int = 20, after_id: int = 0) -> list[tuple[int, Event]]:
        """Up to `limit` stored events with id > `after_id`, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, qos, retain, payload FROM events WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
            ).fetchall()
        return [(int(r[0]), Event(r[1], json.loads(r[4]), int(r[2]), bool(r[3]))) for r in rows]

    def ack(self, row_id: int) -> None:
        """Delete an event the broker acknowledged."""
        with self._lock:
            self._db.execute("DELETE FROM events WHERE id = ?", (row_id,))
            if self._dropped_logged and self._depth_unlocked() < self.max_rows // 2:
                self._dropped_logged = False

    def _depth_unlocked(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def depth(self) -> int:
        with self._lock:
            return self._depth_unlocked()

    @property
    def dropped(self) -> int:
        with self._lock:
            return self._meta("dropped")

    def close(self) -> None:
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
            self._db.close()
