"""Durable store-and-forward queue (sqlite3, WAL): events wait here until the broker acknowledges them.

The per-device `seq` counter lives in the same database and is advanced in the same transaction
as the insert, so a crash can neither reuse a seq nor lose an event that got one.

Cost: an insert is a few primary-key operations whatever the depth. Row and byte counts are kept
in memory (counted once at open), and the bounds drop the oldest rows by id range instead of
scanning the table. The byte bound is held on disk: it covers the database's pages in use plus
room for its write-ahead log and shared-memory index, so the files never outgrow it.

A file that is not a usable queue (garbage, a corrupt database, a foreign schema, a folder in its
place) is moved aside with a timestamp, never deleted, and a new queue is started: a service
restarted by systemd must not fail the same way forever.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from datetime import datetime, timezone
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
_COLUMNS = {"events": ["id", "topic", "qos", "retain", "payload", "size"], "meta": ["key", "value"]}

#: The smallest byte bound that can hold on disk: sqlite's own pages, its shared-memory index
#: (32 KiB) and a small write-ahead log need room before any event does.
MIN_BYTES = 256 * 1024
_SHM_BYTES = 32 * 1024
_WAL_MAX_BYTES = 4 * 1024 * 1024


class _NotAQueue(Exception):
    """The file exists but is not a usable queue (the cause is in the message)."""


class DurableQueue:
    """A bounded FIFO of stamped events on disk.

    Args:
        path: the sqlite file (its folder is created). A file there that is not a usable queue
            is renamed ``<name>.corrupt-<UTC time>`` and a new queue is started.
        device: device id stamped into every payload.
        max_rows: at most this many events are kept; past it the oldest are dropped and counted.
        max_bytes: the queue's files (database, write-ahead log, index) stay within this many
            bytes on disk (same policy); at least `MIN_BYTES`.

    Raises:
        PublishError: the database cannot be opened or written (disk full, read-only folder).
    """

    def __init__(self, path: Path, device: str, max_rows: int = 100_000, max_bytes: int = 50_000_000) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        if max_bytes < MIN_BYTES:
            raise ValueError(f"max_bytes must be >= {MIN_BYTES} (sqlite's own pages and log need room), got {max_bytes}")
        self.path = Path(path)
        self.device = device
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        #: Where an unusable queue file was moved at open (None when the file was fine).
        self.moved_aside: Path | None = None
        self._lock = threading.Lock()
        self._dropped_logged = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PublishError(f"cannot open the event queue {self.path}: {exc}") from exc
        try:
            self._db = self._open()
        except _NotAQueue as exc:
            seq = self._move_aside(str(exc))
            try:
                self._db = self._open()
            except _NotAQueue as again:
                raise PublishError(f"cannot open the event queue {self.path}: {again}") from None
            self._set_meta("seq", seq)
        self._load_counters()

    def _open(self) -> sqlite3.Connection:
        if self.path.is_dir():
            raise _NotAQueue("a folder is in its place")
        try:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        except sqlite3.Error as exc:
            raise PublishError(f"cannot open the event queue {self.path}: {exc}") from exc
        try:
            # Read-only checks first: a file that is not ours is moved aside exactly as it was.
            check = db.execute("PRAGMA quick_check(1)").fetchone()[0]
            if check != "ok":
                raise _NotAQueue(f"integrity check failed: {check}")
            for table, columns in _COLUMNS.items():
                found = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
                if found and found != columns:
                    raise _NotAQueue(f"table {table} has columns {found}, expected {columns}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
            # The log is checkpointed and cut back to this size, which the byte bound reserves.
            wal_bytes = min(_WAL_MAX_BYTES, max(self.max_bytes // 8, 16 * self._page_size))
            db.execute(f"PRAGMA journal_size_limit={wal_bytes}")
            db.execute(f"PRAGMA wal_autocheckpoint={max(wal_bytes // (self._page_size + 24) - 4, 8)}")
            self._page_budget = (self.max_bytes - wal_bytes - _SHM_BYTES) // self._page_size - 1
            db.executescript(_SCHEMA)
        except sqlite3.OperationalError as exc:
            # Disk full, read-only, locked: moving the file would not help.
            db.close()
            raise PublishError(f"cannot open the event queue {self.path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            db.close()
            raise _NotAQueue(str(exc)) from exc
        except _NotAQueue:
            db.close()
            raise
        return db

    def _move_aside(self, reason: str) -> int:
        """Rename the unusable file (and its -wal / -shm companions) and return the seq to go on
        from: the old counter when it can still be read, else one above any counter a device
        reaches (milliseconds since 1970), so consumers that drop duplicates by seq drop nothing new."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        dest = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while dest.exists():
            n += 1
            dest = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        try:
            os.replace(self.path, dest)
            for suffix in ("-wal", "-shm"):
                companion = Path(f"{self.path}{suffix}")
                if companion.exists():
                    os.replace(companion, Path(f"{dest}{suffix}"))
        except OSError as exc:
            raise PublishError(f"the event queue {self.path} is unusable ({reason}) and cannot be moved aside: {exc}") from exc
        seq = _salvage_seq(dest)
        self.moved_aside = dest
        logger.error(
            "event queue %s is not a usable queue (%s): moved it aside to %s and started a new one; "
            "events still in the old file were not sent. Inspect it with `sqlite3 %s` or delete it. seq goes on from %d%s",
            self.path,
            reason,
            dest,
            dest,
            seq + 1,
            "" if seq < 10**12 else " (the old counter was unreadable: a value above any it reached)",
        )
        return seq

    def _load_counters(self) -> None:
        """Count rows and bytes once (at open); every change after that updates the counts."""
        with self._lock:
            rows, size = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM events").fetchone()
            self._rows, self._bytes = int(rows), int(size)
            self._dropped = self._meta("dropped")

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
        return self.put_row(event)[1]

    def put_row(self, event: Event) -> tuple[int, Event]:
        """`put`, also returning the stored row's id (for `contains`)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                seq = self._meta("seq") + 1
                self._set_meta("seq", seq)
                stamped = event.stamped(self.device, seq)
                if stamped.payload is not None:
                    check_payload(stamped.payload)
                body = stamped.body().decode()
                cursor = self._db.execute(
                    "INSERT INTO events(topic, qos, retain, payload, size) VALUES(?, ?, ?, ?, ?)",
                    (stamped.topic, stamped.qos, int(stamped.retain), body, len(body)),
                )
                row_id = int(cursor.lastrowid or 0)
                rows, size, dropped = self._rows + 1, self._bytes + len(body), self._dropped
                rows, size, dropped = self._enforce_bounds(rows, size, dropped)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise PublishError(f"cannot write to the event queue {self.path}: {exc}") from exc
            except PublishError:
                self._rollback()
                raise
            self._rows, self._bytes, self._dropped = rows, size, dropped
            return row_id, stamped

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _pages_in_use(self) -> int:
        pages = int(self._db.execute("PRAGMA page_count").fetchone()[0])
        return pages - int(self._db.execute("PRAGMA freelist_count").fetchone()[0])

    def _drop_oldest(self, n: int) -> tuple[int, int]:
        """Delete the `n` oldest rows (one range delete on the primary key); (rows, bytes) gone."""
        rows = self._db.execute("SELECT id, size FROM events ORDER BY id LIMIT ?", (n,)).fetchall()
        if not rows:
            return 0, 0
        self._db.execute("DELETE FROM events WHERE id <= ?", (rows[-1][0],))
        return len(rows), sum(int(r[1]) for r in rows)

    def _enforce_bounds(self, rows: int, size: int, dropped: int) -> tuple[int, int, int]:
        """Drop the oldest rows while a bound is exceeded (inside the caller's transaction)."""
        before = dropped
        if rows > self.max_rows:
            n, gone = self._drop_oldest(rows - self.max_rows)
            rows, size, dropped = rows - n, size - gone, dropped + n
        # Pages are freed only when they empty, so drop about a page's worth of rows per step.
        while rows > 0 and self._pages_in_use() > self._page_budget:
            n, gone = self._drop_oldest(max(1, self._page_size * rows // max(size, 1)))
            rows, size, dropped = rows - n, size - gone, dropped + n
        if dropped != before:
            self._set_meta("dropped", dropped)
            if not self._dropped_logged:
                logger.warning(
                    "event queue full (%d events / %d bytes on disk): dropping the oldest; see stats queue_dropped", self.max_rows, self.max_bytes
                )
                self._dropped_logged = True
        return rows, size, dropped

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
            row = self._db.execute("SELECT size FROM events WHERE id = ?", (row_id,)).fetchone()
            if row is None:
                return  # dropped at the bound meanwhile
            self._db.execute("DELETE FROM events WHERE id = ?", (row_id,))
            self._rows -= 1
            self._bytes -= int(row[0])
            if self._dropped_logged and self._rows < self.max_rows // 2:
                self._dropped_logged = False

    def contains(self, row_id: int) -> bool:
        """Whether the row is still queued (neither acknowledged nor dropped)."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM events WHERE id = ?", (row_id,)).fetchone() is not None

    def depth(self) -> int:
        return self._rows

    def disk_bytes(self) -> int:
        """Size of the queue's files on disk (database, write-ahead log, shared-memory index)."""
        total = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                total += os.stat(f"{self.path}{suffix}").st_size
            except OSError:
                pass
        return total

    @property
    def dropped(self) -> int:
        return self._dropped

    def close(self) -> None:
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
            self._db.close()


def _salvage_seq(path: Path) -> int:
    """The seq counter of a queue file moved aside, when it can be read; else a value above any
    counter a device reaches (milliseconds since 1970)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
        finally:
            db.close()
        if row is not None and isinstance(row[0], int) and 0 <= row[0] < 2**52:
            return int(row[0])
    except sqlite3.Error:
        pass
    return int(time.time() * 1000)
