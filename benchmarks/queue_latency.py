"""Enqueue latency of the durable queue by depth (not a test): prints one JSON object.

    python benchmarks/queue_latency.py [--depths 10 10000 100000] [--puts 300] [--dir /tmp/q]

For each depth the queue is filled to that many rows (a realistic ~700-byte summary payload
each, written in bulk straight into the table, so filling is quick on any version of the
queue), then `DurableQueue.put` is timed `--puts` times. Two bounds are measured per depth:
``below_bound`` (max_rows far above the depth: nothing is dropped) and ``at_bound`` (max_rows =
depth: every put drops the oldest row, the device's state during a long outage). Also reported:
the queue files' peak size on disk while filled through `put` to 1.5 times a byte bound
(``--disk-bound``, default 5 MB).

Run it against another checkout with ``PYTHONPATH=/that/checkout`` to compare versions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from edge_fer.sinks.payloads import Event
from edge_fer.sinks.queue import DurableQueue

SUMMARY = {
    "window": {"seconds": 10.0},
    "frames": 240,
    "fps": 24.0,
    "faces": {"max": 2, "distinct": 3, "dwell_s": 14.2, "attending_s": 11.9, "observations": 310, "uncertain": 12},
    "suppressed": False,
    "confidence": 0.6712,
    "emotions": {"angry": 0.0412, "disgust": 0.0031, "fear": 0.0921, "happy": 0.4113, "sad": 0.2011, "surprise": 0.1203, "neutral": 0.1309},
    "valence": 0.1934,
    "arousal": 0.3121,
    "attention_share": 0.8421,
    "micro_expressions": 1,
    "micro_per_min": 6.0,
    "dominant": "happy",
}


def fill(q: DurableQueue, rows: int) -> None:
    """Bulk-insert `rows` stamped events through the queue's own connection (same schema)."""
    body = json.dumps({"schema": 1, "device": "bench", "seq": 0, "ts": "2026-01-01T00:00:00.000Z", **SUMMARY}, separators=(",", ":"))
    db = q._db  # noqa: SLF001 - a benchmark may reach in
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO events(topic, qos, retain, payload, size) VALUES('summary', 1, 0, ?, ?)",
        ((body, len(body)) for _ in range(rows)),
    )
    db.execute("COMMIT")
    # Let the queue learn the new depth the way it does after a restart.
    reopen = getattr(q, "_load_counters", None)
    if reopen is not None:
        reopen()


def time_puts(q: DurableQueue, puts: int) -> dict[str, float]:
    samples = []
    for _ in range(puts):
        t0 = time.perf_counter()
        q.put(Event("summary", dict(SUMMARY)))
        samples.append((time.perf_counter() - t0) * 1000.0)
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 3),
        "p95_ms": round(samples[int(0.95 * (len(samples) - 1))], 3),
        "max_ms": round(samples[-1], 3),
        "mean_ms": round(statistics.fmean(samples), 3),
    }


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", type=int, nargs="+", default=[10, 10_000, 100_000])
    parser.add_argument("--puts", type=int, default=300, help="timed puts per depth and bound")
    parser.add_argument("--dir", type=Path, help="where the queue files go (default: a temporary folder)")
    parser.add_argument("--disk-bound", type=int, default=5_000_000, help="byte bound for the on-disk check (0: skip it)")
    args = parser.parse_args()
    out: dict[str, Any] = {"puts": args.puts, "payload_bytes": len(json.dumps(SUMMARY, separators=(",", ":"))), "depths": {}}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for depth in args.depths:
            record = {}
            for bound, max_rows in (("below_bound", 10 * depth + 10_000), ("at_bound", depth)):
                path = Path(tmp) / f"{bound}-{depth}" / "queue.sqlite3"
                q = DurableQueue(path, "bench", max_rows=max_rows, max_bytes=10**12)
                fill(q, depth)
                record[bound] = time_puts(q, args.puts)
                q.close()
            out["depths"][str(depth)] = record
        if args.disk_bound:
            # A byte bound only (no row bound), filled through `put` to 1.5 times its size: how
            # big do the queue's files (database, WAL, shared memory) get?
            path = Path(tmp) / "bytes" / "queue.sqlite3"
            q = DurableQueue(path, "bench", max_rows=10**9, max_bytes=args.disk_bound)
            body_bytes = len(q.put(Event("summary", dict(SUMMARY))).body())
            puts = int(1.5 * args.disk_bound / body_bytes)
            peak = 0
            t0 = time.perf_counter()
            for i in range(puts):
                q.put(Event("summary", dict(SUMMARY)))
                if i % 500 == 0:
                    peak = max(peak, disk_bytes(path))
            peak = max(peak, disk_bytes(path))
            out["byte_bound"] = {
                "max_bytes": args.disk_bound,
                "puts": puts + 1,
                "rows_kept": q.depth(),
                "peak_disk_bytes": peak,
                "disk_over_bound": round(peak / args.disk_bound, 3),
                "seconds": round(time.perf_counter() - t0, 1),
            }
            q.close()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
