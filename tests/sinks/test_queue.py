"""The durable queue: order, persisted seq, acks, bounds, and two threads at once."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from edge_fer.errors import PublishError
from edge_fer.sinks.payloads import Event
from edge_fer.sinks.queue import MIN_BYTES, DurableQueue


def event(i: int) -> Event:
    return Event("summary", {"frames": i})


def test_order_seq_and_ack(tmp_path: Path) -> None:
    q = DurableQueue(tmp_path / "q.sqlite3", "dev")
    stamped = [q.put(event(i)) for i in range(5)]
    assert [e.payload["seq"] for e in stamped] == [1, 2, 3, 4, 5]  # type: ignore[index]
    rows = q.peek(10)
    assert [e.payload["frames"] for _, e in rows] == [0, 1, 2, 3, 4]  # type: ignore[index]
    assert all(e.payload["device"] == "dev" for _, e in rows)  # type: ignore[index]
    q.ack(rows[0][0])
    assert q.depth() == 4
    assert [e.payload["frames"] for _, e in q.peek(2, after_id=rows[1][0])] == [2, 3]  # type: ignore[index]
    q.close()


def test_seq_and_events_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    q = DurableQueue(path, "dev")
    for i in range(3):
        q.put(event(i))
    q.ack(q.peek(1)[0][0])
    q.close()
    again = DurableQueue(path, "dev")
    assert again.depth() == 2
    assert again.put(event(9)).payload["seq"] == 4  # type: ignore[index]
    assert again.next_seq() == 5


def test_bound_drops_the_oldest_and_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "q.sqlite3"
    q = DurableQueue(path, "dev", max_rows=10, max_bytes=10_000_000)
    for i in range(25):
        q.put(event(i))
    assert q.depth() == 10 and q.dropped == 15
    assert [e.payload["frames"] for _, e in q.peek(10)] == list(range(15, 25))  # type: ignore[index]
    assert caplog.text.count("event queue full") == 1  # once per burst, not per event
    q.close()
    assert DurableQueue(path, "dev").dropped == 15  # persisted for stats


def test_byte_bound_holds_on_disk(tmp_path: Path) -> None:
    """The bound covers the files (database, write-ahead log, index), not only the payloads."""
    q = DurableQueue(tmp_path / "q.sqlite3", "dev", max_rows=100_000, max_bytes=MIN_BYTES)
    padding = "x" * 60
    peak = 0
    for i in range(3000):  # about 4 times the bound in payloads
        q.put(Event("summary", {"frames": i, "emotions": {f"k{k}": padding for k in range(6)}}))
        peak = max(peak, q.disk_bytes())
    assert q.dropped > 0 and peak <= MIN_BYTES
    assert q.disk_bytes() == sum(p.stat().st_size for p in tmp_path.glob("q.sqlite3*"))
    kept = [e.payload["frames"] for _, e in q.peek(100_000)]  # type: ignore[index]
    assert kept == list(range(3000 - len(kept), 3000))  # the newest, in order, none missing
    with pytest.raises(ValueError, match="max_bytes"):
        DurableQueue(tmp_path / "small.sqlite3", "dev", max_bytes=MIN_BYTES - 1)


def test_counts_kept_in_memory_match_the_table(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    q = DurableQueue(path, "dev", max_rows=50)
    for i in range(80):
        q.put(event(i))
        if i % 3 == 0:
            q.ack(q.peek(1)[0][0])
    q.ack(10**9)  # an id that is gone (dropped or acknowledged) changes nothing
    with sqlite3.connect(path) as conn:
        rows, size = conn.execute("SELECT COUNT(*), SUM(size) FROM events").fetchone()
    assert (q.depth(), q._bytes) == (rows, size)
    dropped = q.dropped
    q.close()
    again = DurableQueue(path, "dev", max_rows=50)
    assert (again.depth(), again._bytes, again.dropped) == (rows, size, dropped)


@pytest.mark.parametrize("damage", ["garbage", "folder", "foreign_schema", "truncated"])
def test_an_unusable_queue_file_is_moved_aside_and_a_new_queue_starts(tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "queue.sqlite3"
    if damage == "garbage":
        path.write_bytes(os.urandom(20_000))
    elif damage == "folder":
        path.mkdir()
        (path / "something").write_text("kept")
    elif damage == "foreign_schema":
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, body BLOB)")
            conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
            conn.execute("INSERT INTO meta VALUES ('seq', 41)")
    else:  # a real queue cut short by a failing card
        q = DurableQueue(path, "dev")
        for i in range(500):
            q.put(event(i))
        q.close()
        data = path.read_bytes()
        path.write_bytes(data[:100] + os.urandom(4096) + data[4196 : len(data) // 2])
    original = path.read_bytes() if path.is_file() else None
    q = DurableQueue(path, "dev")
    assert q.moved_aside is not None and q.moved_aside.name.startswith("queue.sqlite3.corrupt-")
    if original is not None:
        assert q.moved_aside.read_bytes() == original  # kept as it was, never deleted
    else:
        assert (q.moved_aside / "something").read_text() == "kept"
    assert "moved it aside" in caplog.text and "sqlite3 " in caplog.text  # says what to do
    seq = q.put(event(1)).payload["seq"]  # type: ignore[index]
    if damage == "foreign_schema":
        assert seq == 42  # the old counter was readable: it goes on
    elif damage != "truncated":
        assert seq > 10**12  # unreadable: above anything the old counter reached
    assert q.depth() == 1
    q.close()
    assert DurableQueue(path, "dev").moved_aside is None  # the new queue is fine


def test_guard_runs_before_anything_is_stored(tmp_path: Path) -> None:
    q = DurableQueue(tmp_path / "q.sqlite3", "dev")
    with pytest.raises(PublishError):
        q.put(Event("summary", {"landmarks": [0.5] * 468}))
    assert q.depth() == 0
    # The refused event was never stored: its seq is rolled back, so consumers see no gap.
    assert q.put(event(1)).payload["seq"] == 1  # type: ignore[index]


def test_unwritable_location_is_a_publish_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PublishError, match="cannot open the event queue"):
        DurableQueue(blocker / "q.sqlite3", "dev")


def test_producer_and_consumer_threads(tmp_path: Path) -> None:
    q = DurableQueue(tmp_path / "q.sqlite3", "dev")
    acked: list[int] = []
    done = threading.Event()

    def consume() -> None:
        while not done.is_set() or q.depth():
            for row_id, e in q.peek(5):
                q.ack(row_id)
                acked.append(e.payload["frames"])  # type: ignore[index]

    consumer = threading.Thread(target=consume)
    consumer.start()
    for i in range(300):
        q.put(event(i))
    done.set()
    consumer.join(10)
    assert acked == list(range(300))
