"""The durable queue: order, persisted seq, acks, bounds, and two threads at once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from edge_fer.errors import PublishError
from edge_fer.sinks.payloads import Event
from edge_fer.sinks.queue import DurableQueue


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


def test_byte_bound(tmp_path: Path) -> None:
    q = DurableQueue(tmp_path / "q.sqlite3", "dev", max_rows=1000, max_bytes=1000)
    for i in range(50):
        q.put(event(i))
    assert sum(len(e.body()) for _, e in q.peek(1000)) <= 1000 and q.dropped > 0


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
