"""Real camera streams: an RTSP camera (GStreamer's RTSP server, H.264) and an MJPEG-over-HTTP
camera (ffmpeg), each stopped and restarted while `edge-fer run` reads it through OpenCV's FFmpeg
back-end (the pip wheel's). The source must reconnect, say so in stats (`source_state`,
`source_reopens`), keep publishing summaries, and never show the URL's credentials.

The servers come from Debian's packages, which `make test-packages` installs.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
#: Debian's python3, which has python3-gi (the venv has no GObject bindings).
SYSTEM_PYTHON = "/usr/bin/python3"
SECRET = "s3cr3t"


@dataclass
class StreamServer:
    """A camera stream server on 127.0.0.1:`port`; `stop()` / `start()` make an outage."""

    kind: str  # "rtsp" or "mjpeg"
    port: int
    image: Path
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    log: list[Path] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The URL a user would configure, with credentials where the camera takes them."""
        if self.kind == "rtsp":  # basic auth in the userinfo, and a token in the query
            return f"rtsp://admin:{SECRET}@127.0.0.1:{self.port}/cam?token={SECRET}"
        return f"http://127.0.0.1:{self.port}/video.mjpg?user=admin&password={SECRET}"

    def command(self) -> list[str]:
        if self.kind == "rtsp":
            return [SYSTEM_PYTHON, str(REPO / "tests" / "rtsp_server.py"), "--port", str(self.port), "--image", str(self.image),
                    "--user", "admin", "--password", SECRET]  # fmt: skip
        # ffmpeg's HTTP server serves one client: it exits when the client goes, so each
        # reconnect needs the server started again, which is what `start` does.
        return ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-loop", "1", "-framerate", "15", "-i", str(self.image),
                "-vf", "scale=640:-2", "-c:v", "mjpeg", "-q:v", "5", "-f", "mpjpeg", "-listen", "1",
                f"http://127.0.0.1:{self.port}/video.mjpg"]  # fmt: skip

    def start(self) -> None:
        self.starts += 1
        path = self.workdir / f"{self.kind}-{self.starts}.log"
        self.log.append(path)
        out = open(path, "wb")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(self.command(), stdout=out, stderr=out)
        if self.kind == "rtsp":
            assert wait_until(lambda: b"ready" in path.read_bytes() or self.proc.poll() is not None, 20), path.read_text()
            assert self.proc.poll() is None, path.read_text()
        else:
            assert wait_until(self._listening, 20), path.read_text()

    def _listening(self) -> bool:
        # ffmpeg's -listen server takes one client: do not connect to probe it, read the socket
        # table instead.
        return f":{self.port:04X} 00000000:0000 0A" in Path("/proc/net/tcp").read_text()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.log if p.exists())


def _require_servers(kind: str) -> None:
    """The servers are Debian packages that `make test-packages` installs: their absence is a
    set-up error, reported as a failure (never a skip)."""
    if kind == "mjpeg" and shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is not installed: run `make test-packages`")
    if kind == "rtsp":
        probe = subprocess.run(
            [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"],
            capture_output=True,
            text=True,
        )
        if probe.returncode != 0:
            pytest.fail(f"GStreamer's RTSP server is not usable from {SYSTEM_PYTHON}: run `make test-packages` ({probe.stderr.strip()[-200:]})")


@pytest.fixture(params=["rtsp", "mjpeg"])
def camera(request: pytest.FixtureRequest, tmp_path: Path, models_dir: Path) -> Iterator[StreamServer]:
    _require_servers(request.param)
    server = StreamServer(request.param, free_port(), models_dir / "single_face.jpg", tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Lines:
    """The stdout lines of a running `edge-fer run --sink stdout`, parsed as they come."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.rows: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._lock:
                self.raw.append(line)
                if line.startswith("{"):
                    self.rows.append(json.loads(line))

    def of(self, topic: str, since: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.rows[since:] if r.get("topic", "").endswith(topic)]

    def __len__(self) -> int:
        with self._lock:
            return len(self.rows)


def test_stream_reconnects_after_the_server_restarts(camera: StreamServer, tmp_path: Path, run_env: dict[str, str]) -> None:
    env = {
        **run_env,
        "EDGE_FER_AGGREGATE__STATS_INTERVAL_S": "1",
        "EDGE_FER_SOURCE__REOPEN_BACKOFF_MAX_S": "1",
        "EDGE_FER_LOG_LEVEL": "debug",
    }
    args = ["run", "--source", camera.url, "--sink", "stdout", "--window", "1", "--duration", "120"]
    stderr = tmp_path / "stderr.log"
    with open(stderr, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "edge_fer", *args], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=err, text=True)
    lines = Lines(proc)
    try:
        # 1. Frames flow: summaries with the face, stats say running.
        assert wait_until(lambda: any(s["faces"]["distinct"] >= 1 for s in lines.of("summary")), 60), stderr.read_text()[-3000:]
        assert wait_until(lambda: any(s["source_state"] == "running" for s in lines.of("stats")), 20)
        # 2. The camera goes away: stats say reconnecting.
        camera.stop()
        outage = len(lines)
        assert wait_until(lambda: any(s["source_state"] == "reconnecting" for s in lines.of("stats", outage)), 40), stderr.read_text()[-3000:]
        # 3. It comes back: the source reopens by itself, stats count it, summaries go on.
        camera.start()
        back = len(lines)
        assert wait_until(lambda: any(s["source_state"] == "running" and s["source_reopens"] >= 1 for s in lines.of("stats", back)), 60), (
            stderr.read_text()[-3000:]
        )
        after = len(lines)
        assert wait_until(lambda: any(s["frames"] > 0 and s["faces"]["distinct"] >= 1 for s in lines.of("summary", after)), 30)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, stderr.read_text()[-3000:]
    log = stderr.read_text()
    assert "failed" in log and "is back after" in log  # the outage and the recovery, logged once each
    # The credentials (userinfo, query) reach no log line and no payload.
    everything = log + "".join(lines.raw)
    assert SECRET not in everything
    assert camera.url.split("://", 1)[0] + "://" in log  # the stream is still named in the log
