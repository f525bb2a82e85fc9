"""Local dashboard sink: a small page with live aggregates for the kiosk owner (numbers and charts only).

It serves exactly what the other sinks publish — whitelisted summary, stats and privacy payloads —
so it can never show more than MQTT does: no camera image, no crop, no landmark. It listens on
loopback unless `dashboard.allow_remote` is set.

Under load it stays small: a fixed pool of worker threads, given a connection only once it has
sent something; silent connections wait on one selector and are closed after a timeout (or the
oldest, past a bound); a listen backlog of 128; and no keep-alive. Requests whose Host header is not
the address it listens on (or localhost) are refused, so a web page that rebinds its own domain
name to this address (DNS rebinding) cannot read the aggregates from a browser on the device.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import selectors
import socket
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from queue import Empty, SimpleQueue
from typing import Any
from urllib.parse import urlsplit

from edge_fer.errors import ConfigError
from edge_fer.sinks.payloads import Event, check_payload

logger = logging.getLogger(__name__)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edge-fer</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;margin:24px;color:#1b2430;background:#f6f7f9}
h1{font-size:20px;margin:0 0 4px} .sub{color:#667;font-size:13px;margin-bottom:16px}
.cards{display:flex;gap:12px;flex-wrap:wrap} .card{background:#fff;border-radius:8px;padding:12px 16px;min-width:120px;box-shadow:0 1px 2px #0002}
.card b{display:block;font-size:26px} .card span{color:#667;font-size:12px}
svg{background:#fff;border-radius:8px;box-shadow:0 1px 2px #0002;margin-top:16px}
.legend span{display:inline-block;margin-right:12px;font-size:12px} .legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
</style></head><body>
<h1>edge-fer <span id="device"></span></h1>
<div class="sub">Anonymous aggregates only: no camera image is ever shown or stored. <span id="privacy"></span></div>
<div class="cards">
 <div class="card"><b id="faces">–</b><span>faces now</span></div>
 <div class="card"><b id="dominant">–</b><span>dominant expression</span></div>
 <div class="card"><b id="valence">–</b><span>valence (−1…1)</span></div>
 <div class="card"><b id="confidence">–</b><span>mean confidence</span></div>
 <div class="card"><b id="fps">–</b><span>frames / s</span></div>
 <div class="card"><b id="temp">–</b><span>CPU °C</span></div>
</div>
<svg id="chart" width="900" height="260" viewBox="0 0 900 260"></svg>
<div class="legend" id="legend"></div>
<script>
const EMO=["angry","disgust","fear","happy","sad","surprise","neutral"];
const COL=["#d64545","#7a9a2e","#8d5fd3","#f2b632","#3d7dd8","#e07b39","#9aa3ad"];
document.getElementById("legend").innerHTML=EMO.map((e,i)=>`<span><i style="background:${COL[i]}"></i>${e}</span>`).join("");
function fmt(v,d){return v===null||v===undefined?"–":Number(v).toFixed(d)}
async function tick(){
  const r=await fetch("/api/state"); const s=await r.json();
  const last=s.summaries[s.summaries.length-1]||{};
  document.getElementById("device").textContent=s.device;
  document.getElementById("faces").textContent=last.faces?last.faces.max:"–";
  document.getElementById("dominant").textContent=last.dominant||"–";
  document.getElementById("valence").textContent=fmt(last.valence,2);
  document.getElementById("confidence").textContent=fmt(last.confidence,2);
  document.getElementById("fps").textContent=fmt(s.stats.fps,1);
  document.getElementById("temp").textContent=fmt(s.stats.cpu_temp_c,0);
  if(s.privacy.context){document.getElementById("privacy").textContent=`Context: ${s.privacy.context}; min faces ${s.privacy.min_faces}.`}
  const svg=document.getElementById("chart"); const n=s.summaries.length; const w=900/Math.max(n,1); let out="";
  s.summaries.forEach((m,i)=>{let y=250; if(!m.emotions) return; EMO.forEach((e,k)=>{const h=(m.emotions[e]||0)*240; y-=h;
    out+=`<rect x="${i*w}" y="${y}" width="${Math.max(w-1,1)}" height="${h}" fill="${COL[k]}"/>`;});});
  svg.innerHTML=out;
}
tick(); setInterval(tick,2000);
</script></body></html>
"""


LOOPBACK = ("127.0.0.1", "localhost", "::1")
WILDCARD = ("0.0.0.0", "::", "")
#: Threads serving requests (a connection gets one only once it has sent something).
WORKERS = 8
#: Accepted connections that have sent nothing yet, at most (past it the oldest are closed).
MAX_SILENT = 256
#: The kernel's listen backlog: connections not yet accepted.
BACKLOG = 128
#: Seconds a connection may stay silent, and may take to send its request or take the answer.
CONNECTION_TIMEOUT_S = 5.0


def parse_listen(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"dashboard address {address!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]"), int(port)


def check_listen(address: str, allow_remote: bool) -> tuple[str, int]:
    """``(host, port)`` of a dashboard address, refused unless loopback or `allow_remote`.

    Raises:
        ConfigError: not ``HOST:PORT``, or a remote address without ``dashboard.allow_remote``.
    """
    host, port = parse_listen(address)
    if host not in LOOPBACK and not allow_remote:
        raise ConfigError(f"dashboard on {host}: only loopback is allowed unless dashboard.allow_remote = true")
    return host, port


def allowed_hosts(host: str) -> frozenset[str] | None:
    """Host names the dashboard answers to when listening on `host`: loopback names and `host`
    itself; for a wildcard address (None) any IP literal, the device's hostname and
    ``<hostname>.local``, never an arbitrary domain name."""
    if host in WILDCARD:
        return None
    return frozenset({*LOOPBACK, host.lower()})


def host_allowed(header: str | None, allowed: frozenset[str] | None) -> bool:
    """Whether a request's Host header names this dashboard (see `allowed_hosts`)."""
    if not header:
        return False
    try:
        name = urlsplit(f"//{header.strip()}").hostname
    except ValueError:
        return False
    if not name:
        return False
    if allowed is not None:
        return name in allowed
    if name in LOOPBACK:
        return True
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        hostname = socket.gethostname().lower()
        return name in (hostname, f"{hostname}.local")


class _PooledHTTPServer(HTTPServer):
    """An HTTP server whose requests run on a fixed pool of threads (`ThreadingHTTPServer`
    starts one thread per connection, without bound).

    An accepted connection holds no thread until it has sent something: one watcher thread waits
    on all of them (a selector) and hands each to the pool once readable, and closes those that
    stay silent for `CONNECTION_TIMEOUT_S`, or the oldest silent ones past `MAX_SILENT`. So idle
    or half-open connections can neither pile up threads nor delay the requests that do arrive.
    """

    request_queue_size = BACKLOG

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="edge-fer-dashboard-worker")
        self._selector = selectors.DefaultSelector()
        self._accepted: SimpleQueue[tuple[socket.socket, Any]] = SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._silent: dict[socket.socket, tuple[Any, float]] = {}  # insertion order = age
        self._closing = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="edge-fer-dashboard-watcher", daemon=True)
        self._watcher.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        self._accepted.put((request, client_address))
        self._wake_w.send(b"\0")

    def _watch(self) -> None:
        while not self._closing.is_set():
            for key, _ in self._selector.select(timeout=0.5):
                if key.fileobj is self._wake_r:
                    try:
                        self._wake_r.recv(4096)
                    except OSError:
                        pass
                    continue
                conn = key.fileobj
                assert isinstance(conn, socket.socket)
                self._selector.unregister(conn)
                address, _ = self._silent.pop(conn)
                self._pool.submit(self._serve, conn, address)
            while True:
                try:
                    conn, address = self._accepted.get_nowait()
                except Empty:
                    break
                self._selector.register(conn, selectors.EVENT_READ, None)
                self._silent[conn] = (address, time.monotonic() + CONNECTION_TIMEOUT_S)
            now = time.monotonic()
            for conn, (_, deadline) in list(self._silent.items()):
                if deadline <= now or len(self._silent) > MAX_SILENT:
                    self._drop(conn)
        for conn in list(self._silent):
            self._drop(conn)

    def _drop(self, conn: socket.socket) -> None:
        self._selector.unregister(conn)
        del self._silent[conn]
        self.shutdown_request(conn)

    def _serve(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - one bad connection must not kill a worker
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("dashboard: error serving %s", client_address, exc_info=True)

    def close(self) -> None:
        self.shutdown()
        self._closing.set()
        self._wake_w.send(b"\0")
        self._watcher.join(5.0)
        self.server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._wake_r.close()
        self._wake_w.close()


class DashboardSink:
    """Keeps the latest aggregates in memory and serves them on `address` (``HOST:PORT``).

    Args:
        address: where to listen; loopback unless `allow_remote`.
        device: the device id shown in the title.
        allow_remote: permit a non-loopback address (the page shows aggregates only).
        history: summaries kept for the chart.

    Raises:
        ConfigError: bad address, a remote address without `allow_remote`, or the port is taken.
    """

    def __init__(self, address: str, device: str = "", allow_remote: bool = False, history: int = 120) -> None:
        host, port = check_listen(address, allow_remote)
        self.device = device
        self._lock = threading.Lock()
        self._summaries: deque[dict[str, Any]] = deque(maxlen=history)
        self._latest: dict[str, dict[str, Any]] = {"stats": {}, "privacy": {}}
        sink = self

        hosts = allowed_hosts(host)

        class Handler(BaseHTTPRequestHandler):
            timeout = CONNECTION_TIMEOUT_S

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if not host_allowed(self.headers.get("Host"), hosts):
                    self.send_error(403, "Host not allowed: use the address the dashboard listens on")
                    return
                if self.path == "/":
                    body, kind = PAGE.encode(), "text/html; charset=utf-8"
                elif self.path == "/api/state":
                    body, kind = json.dumps(sink.state()).encode(), "application/json"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
                logger.debug("dashboard: " + format, *args)

        try:
            self._server = _PooledHTTPServer((host, port), Handler)
        except OSError as exc:
            raise ConfigError(f"dashboard cannot listen on {address}: {exc.strerror}") from exc
        self.url = f"http://{host}:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, name="edge-fer-dashboard", daemon=True)
        self._thread.start()
        logger.info("dashboard on %s", self.url)

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {"device": self.device, "summaries": list(self._summaries), **{k: dict(v) for k, v in self._latest.items()}}

    def publish(self, event: Event) -> None:
        if event.payload is None or event.absolute or event.topic not in ("summary", "stats", "privacy"):
            return
        check_payload(event.payload)
        with self._lock:
            if event.topic == "summary":
                self._summaries.append(dict(event.payload))
            else:
                self._latest[event.topic] = dict(event.payload)

    def close(self, timeout_s: float = 5.0) -> None:
        self._server.close()
        self._thread.join(timeout_s)
