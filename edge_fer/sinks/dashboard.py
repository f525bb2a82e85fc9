"""Local dashboard sink: a small page with live aggregates for the kiosk owner (numbers and charts only).

It serves exactly what the other sinks publish — whitelisted summary, stats and privacy payloads —
so it can never show more than MQTT does: no camera image, no crop, no landmark. It listens on
loopback unless `dashboard.allow_remote` is set.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

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


def parse_listen(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"dashboard address {address!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]"), int(port)


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
        host, port = parse_listen(address)
        if host not in ("127.0.0.1", "localhost", "::1") and not allow_remote:
            raise ConfigError(f"dashboard on {host}: only loopback is allowed unless dashboard.allow_remote = true")
        self.device = device
        self._lock = threading.Lock()
        self._summaries: deque[dict[str, Any]] = deque(maxlen=history)
        self._latest: dict[str, dict[str, Any]] = {"stats": {}, "privacy": {}}
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
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
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise ConfigError(f"dashboard cannot listen on {address}: {exc.strerror}") from exc
        self._server.daemon_threads = True
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
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout_s)
