"""The local dashboard under load (not a test): prints one JSON object.

    python benchmarks/dashboard_load.py [--concurrent 200] [--idle 200] [--timeout 3]

Runs a `DashboardSink` in this process on a free loopback port and measures:

- ``concurrent``: `--concurrent` clients released at once, each sending ``GET /api/state`` with
  a client timeout of `--timeout` seconds: how many were answered, and their latency;
- ``idle``: `--idle` connections opened and left silent (half-open clients): how many threads
  the server holds for them, how long a real request takes meanwhile, and how many of the silent
  connections the server has closed `--idle-wait` seconds later;
- ``host_check``: the status of a request whose Host header is a foreign domain name.

Run it against another checkout with ``PYTHONPATH=/that/checkout`` to compare versions.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import threading
import time
from typing import Any

from edge_fer.sinks.dashboard import DashboardSink
from edge_fer.sinks.payloads import Event


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(port: int, timeout_s: float, host: str | None = None) -> tuple[int, float]:
    """(HTTP status or 0 on failure, seconds) of one ``GET /api/state`` over a raw socket."""
    t0 = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as conn:
            conn.settimeout(max(timeout_s - (time.perf_counter() - t0), 0.01))
            conn.sendall(f"GET /api/state HTTP/1.1\r\nHost: {host or f'127.0.0.1:{port}'}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
        status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    except OSError:
        status = 0
    return status, time.perf_counter() - t0


def concurrent(port: int, n: int, timeout_s: float) -> dict[str, Any]:
    results: list[tuple[int, float]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n)

    def client() -> None:
        barrier.wait()
        result = get(port, timeout_s)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=client) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    answered = sorted(s for st, s in results if st == 200)
    return {
        "requests": n,
        "client_timeout_s": timeout_s,
        "answered": len(answered),
        "failed": n - len(answered),
        "p50_ms": round(statistics.median(answered) * 1000, 1) if answered else None,
        "max_ms": round(answered[-1] * 1000, 1) if answered else None,
    }


def idle(port: int, n: int, wait_s: float, timeout_s: float) -> dict[str, Any]:
    threads_before = threading.active_count()
    silent = []
    for _ in range(n):
        conn = socket.create_connection(("127.0.0.1", port), timeout=5)
        silent.append(conn)
    time.sleep(1.0)  # let the server accept them
    threads_held = threading.active_count() - threads_before
    status, seconds = get(port, timeout_s)
    time.sleep(wait_s)
    closed = 0
    for conn in silent:
        conn.setblocking(False)
        try:
            closed += conn.recv(1) == b""
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        conn.close()
    return {
        "connections": n,
        "server_threads_held": threads_held,
        "request_meanwhile": {"status": status, "ms": round(seconds * 1000, 1)},
        "closed_by_server_after_s": wait_s + 1.0,
        "closed_by_server": closed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrent", type=int, default=200)
    parser.add_argument("--idle", type=int, default=200)
    parser.add_argument("--idle-wait", type=float, default=10.0, help="seconds before counting closed silent connections")
    parser.add_argument("--timeout", type=float, default=3.0, help="client timeout per request (s)")
    args = parser.parse_args()
    port = free_port()
    sink = DashboardSink(f"127.0.0.1:{port}", "bench")
    for i in range(120):
        sink.publish(Event("summary", {"frames": i, "emotions": {"happy": 0.5, "neutral": 0.5}, "faces": {"max": 1}}))
    out = {
        "concurrent": concurrent(port, args.concurrent, args.timeout),
        "idle": idle(port, args.idle, args.idle_wait, args.timeout),
        "host_check": {"foreign_host_status": get(port, args.timeout, host="rebind.example.com")[0]},
    }
    sink.close(timeout_s=1)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
