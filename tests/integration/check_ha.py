"""`make check-ha`: edge-fer's MQTT discovery checked end to end against a real Home Assistant.

What it does, all on 127.0.0.1:

1. installs a pinned Home Assistant (`HA_VERSION`) into its own cached venv
   (``~/.cache/edge-fer/ha-venv``; ``--ha-venv`` to move it) with HA's own
   ``package_constraints.txt``, plus the requirements of every integration this check sets up,
   so that HA runs with ``--skip-pip`` and never installs anything at run time;
2. starts a mosquitto broker and Home Assistant in a fresh config folder, creates the owner
   through HA's onboarding API and the MQTT config entry through its config flow (what a person
   does in the UI), and validates edge-fer's discovery configs with HA's own MQTT sensor schema;
3. runs edge-fer (the real CLI, real models) and asserts through HA's REST API that
   - with the demo (a face in view) every entity exists on one device and carries a value;
   - with a clip where the person leaves, every per-window entity reads ``unknown`` while nobody
     is in view (``Faces present`` reads 0);
   - with ``aggregate.min_faces = 2`` (shares withheld), the same entities read ``unknown``;
   - on a clean stop and on SIGKILL (the broker's last will), every entity is ``unavailable``;
4. fails on any warning or error in HA's log about MQTT, sensors, templates or edge-fer.

It prints the entity table (name, state with a face, with nobody, withheld, after stop) and the
time it took. It is a tool, not part of ``make test``: the first run downloads HA (~600 MB
installed); later runs take about two minutes.

Why this HA version: it is the newest release that installs on Python 3.11 (2024.4 needs 3.12),
the only Python on the build machine. See `NONE_BEFORE` for the one behaviour that differs
from current Home Assistant.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_fer.config import load_settings
from edge_fer.runner.health import read_temperature_c
from edge_fer.sinks.homeassistant import emotion_labels, sensors
from tests.conftest import Broker, Collector, free_port, leaving_clip, wait_until, write_clip

HA_VERSION = "2024.3.3"
#: Home Assistant turned a template result of ``None`` into ``unknown`` only for numeric sensors
#: until 2024.10 (home-assistant/core#127032): before it, an ``enum`` sensor such as the dominant
#: emotion shows the text ``None`` for a window without emotions. The pinned version is older.
NONE_BEFORE = (2024, 10)
#: ...and MQTT sensors accept ``options`` (the enum's states) from 2024.9 on (core#123248); older
#: versions drop the key silently, which the schema check below reports but tolerates.
OPTIONS_FROM = (2024, 9)
DEVICE = "ha-check"
WINDOW_S = 2
#: Integrations set up besides HA's defaults, plus those imported without being declared (the
#: default ``analytics`` imports ``recorder``; MQTT sets up its ``camera`` platform, which imports
#: ``stream``): their requirements are installed up front.
EXTRA_INTEGRATIONS = ("mqtt", "api", "http", "recorder", "camera", "stream")
#: Libraries released after the pinned HA that break it, and that its constraints leave open:
#: josepy 2 removed what the acme version of HA's cloud client (imported by its http) uses.
LATE_BREAKAGE_PINS = ("josepy<2",)
#: Loggers whose warnings concern edge-fer's entities (any line naming edge-fer counts too).
WATCHED_LOGGERS = (
    "homeassistant.components.mqtt",
    "homeassistant.components.sensor",
    "homeassistant.helpers.template",
    "homeassistant.helpers.entity",
)

ROOT = Path(__file__).resolve().parents[2]


def log(message: str) -> None:
    print(f"[check-ha {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def version_tuple(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


# -- installing Home Assistant ---------------------------------------------------------------


def ensure_home_assistant(venv: Path) -> Path:
    """The ``hass`` executable of a venv holding `HA_VERSION` (installed once, then cached)."""
    marker = venv / f".edge-fer-ha-{HA_VERSION}"
    hass = venv / "bin" / "hass"
    if marker.is_file() and hass.is_file():
        return hass
    started = time.monotonic()
    log(f"installing Home Assistant {HA_VERSION} into {venv} (once; a few minutes)")
    python = venv / "bin" / "python"
    if not python.is_file():
        base = getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    # HA pins its whole dependency tree in package_constraints.txt inside the package: fetch the
    # package alone first to read it, then install everything under it.
    subprocess.run([*pip, "--no-deps", f"homeassistant=={HA_VERSION}"], check=True)
    constraints = subprocess.run(
        [str(python), "-c", "import homeassistant, pathlib; print(pathlib.Path(homeassistant.__file__).parent / 'package_constraints.txt')"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    subprocess.run([*pip, "-c", constraints, f"homeassistant=={HA_VERSION}"], check=True)
    requirements = subprocess.run(
        [str(python), "-c", _REQUIREMENTS_SCRIPT, *EXTRA_INTEGRATIONS], check=True, capture_output=True, text=True
    ).stdout.split()
    log(f"requirements of the integrations set up: {' '.join(requirements)}")
    subprocess.run([*pip, "-c", constraints, *requirements, *LATE_BREAKAGE_PINS], check=True)
    marker.write_text(HA_VERSION + "\n")
    log(f"Home Assistant {HA_VERSION} installed in {time.monotonic() - started:.0f} s")
    return hass


#: Run by HA's own Python: the requirements of HA's default integrations, the extra ones, and
#: everything they depend on, from their manifests.
_REQUIREMENTS_SCRIPT = """
import json, pathlib, sys
from homeassistant import bootstrap
import homeassistant.components as components
folder = pathlib.Path(components.__path__[0])
todo = set(bootstrap.DEFAULT_INTEGRATIONS) | bootstrap.CORE_INTEGRATIONS | bootstrap.LOGGING_INTEGRATIONS | set(sys.argv[1:])
seen, requirements = set(), set()
while todo:
    domain = todo.pop()
    manifest = folder / domain / "manifest.json"
    if domain in seen or not manifest.is_file():
        continue
    seen.add(domain)
    data = json.loads(manifest.read_text())
    requirements |= set(data.get("requirements", []))
    todo |= set(data.get("dependencies", []))
print(" ".join(sorted(requirements)))
"""

#: Run by HA's own Python: each discovery config through HA's MQTT sensor discovery schema.
_SCHEMA_SCRIPT = """
import json, sys
import voluptuous as vol
from homeassistant.components.mqtt.sensor import DISCOVERY_SCHEMA
out = {}
for topic, config in json.load(sys.stdin).items():
    try:
        valid = DISCOVERY_SCHEMA(config)
        out[topic] = {"error": None, "dropped": sorted(set(config) - set(valid))}
    except vol.Invalid as exc:
        out[topic] = {"error": str(exc), "dropped": []}
print(json.dumps(out))
"""


# -- a running Home Assistant ----------------------------------------------------------------


@dataclass
class HomeAssistant:
    """Home Assistant in `config_dir`, HTTP on 127.0.0.1:`port`, driven through its REST API."""

    hass: Path
    config_dir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    token: str = ""
    log_file: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_file = self.config_dir / "home-assistant.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        (self.config_dir / "configuration.yaml").write_text(
            "homeassistant:\n  name: edge-fer check\n  latitude: 52.0\n  longitude: 4.0\n  elevation: 0\n"
            "  unit_system: metric\n  time_zone: UTC\n  currency: EUR\n  country: NL\n"
            f"http:\n  server_host: 127.0.0.1\n  server_port: {self.port}\n"
            "api:\nlogger:\n  default: info\n"
        )
        out = open(self.config_dir / "hass.stdout", "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [str(self.hass), "--config", str(self.config_dir), "--skip-pip", "--log-file", str(self.log_file), "--log-no-color"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        if not wait_until(self._http_up, 240, poll_s=0.25):
            raise CheckFailed(f"Home Assistant did not answer on {self.url} within 240 s; see {self.log_file}")

    def _http_up(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise CheckFailed(f"Home Assistant exited with {self.proc.returncode}; see {self.log_file}")
        try:
            self.request("GET", "/api/onboarding", auth=False)
            return True
        except urllib.error.HTTPError as exc:
            raise CheckFailed(f"Home Assistant answers {exc.code} on /api/onboarding; see {self.log_file}") from exc
        except (OSError, urllib.error.URLError):
            return False

    def request(self, method: str, path: str, body: Any = None, *, auth: bool = True, form: dict[str, str] | None = None) -> Any:
        headers = {}
        data = None
        if form is not None:
            data = "&".join(f"{k}={urllib.request.quote(v, safe='')}" for k, v in form.items()).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=10) as response:
            text = response.read().decode()
        return json.loads(text) if text else None

    def onboard(self) -> None:
        """Create the owner through the onboarding API (as the first screen of the UI does) and
        take an access token for the REST API."""
        client_id = f"{self.url}/"
        created = self.request(
            "POST",
            "/api/onboarding/users",
            {"client_id": client_id, "name": "edge-fer check", "username": "check", "password": "edge-fer-check", "language": "en"},
            auth=False,
        )
        tokens = self.request(
            "POST", "/auth/token", auth=False, form={"grant_type": "authorization_code", "code": created["auth_code"], "client_id": client_id}
        )
        self.token = tokens["access_token"]

    def add_mqtt(self, port: int) -> None:
        """The MQTT integration through its config flow, pointing at the local broker."""
        flow = self.request("POST", "/api/config/config_entries/flow", {"handler": "mqtt", "show_advanced_options": False})
        if flow.get("step_id") != "broker":
            raise CheckFailed(f"MQTT config flow: expected the broker step, got {flow}")
        result = self.request("POST", f"/api/config/config_entries/flow/{flow['flow_id']}", {"broker": "127.0.0.1", "port": port})
        if result.get("type") != "create_entry":
            raise CheckFailed(f"MQTT config flow did not create an entry: {result}")

        def loaded() -> bool:
            entries = self.request("GET", "/api/config/config_entries/entry?domain=mqtt")
            return bool(entries) and entries[0]["state"] == "loaded"

        if not wait_until(loaded, 60, poll_s=0.25):
            raise CheckFailed("the MQTT config entry did not load within 60 s")

    def states(self) -> dict[str, dict[str, Any]]:
        return {s["entity_id"]: s for s in self.request("GET", "/api/states")}

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


class CheckFailed(AssertionError):
    pass


# -- edge-fer ----------------------------------------------------------------------------------


@dataclass
class EdgeFer:
    """One `edge-fer run` process publishing to the check's broker."""

    broker_port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, source: str, **env_overrides: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_FER_")}
        env.update(
            {
                "EDGE_FER_DEVICE_ID": DEVICE,
                "EDGE_FER_STATE_DIR": str(self.workdir / "state"),
                "EDGE_FER_AGGREGATE__STATS_INTERVAL_S": "2",
                "PYTHONUNBUFFERED": "1",
                **env_overrides,
            }
        )
        cmd = [
            sys.executable,
            "-m",
            "edge_fer",
            "run",
            "--source",
            source,
            "--window",
            str(WINDOW_S),
            "--sink",
            f"mqtt://127.0.0.1:{self.broker_port}",
        ]
        out = open(self.workdir / "edge-fer.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=60)
        self.proc = None
        if sig == signal.SIGTERM and code != 0:
            raise CheckFailed(f"edge-fer exited with {code}; see {self.workdir / 'edge-fer.log'}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


# -- the check ---------------------------------------------------------------------------------


def entity_ids(ha: HomeAssistant, names: dict[str, str]) -> dict[str, str]:
    """metric → entity id, found by friendly name on the device ``edge-fer <DEVICE>``."""
    by_name = {s["attributes"].get("friendly_name"): eid for eid, s in ha.states().items()}
    return {metric: by_name[f"edge-fer {DEVICE} {name}"] for metric, name in names.items() if f"edge-fer {DEVICE} {name}" in by_name}


def is_number(state: str) -> bool:
    try:
        float(state)
    except ValueError:
        return False
    return True


def run_check(hass_exe: Path, workdir: Path) -> list[dict[str, str]]:
    labels = emotion_labels(load_settings())
    specs = sensors(labels)
    names = {metric: spec.name for metric, spec in specs.items()}
    window_metrics = [m for m, s in specs.items() if s.topic == "summary" and m not in ("faces", "micro_per_min")]
    has_temperature = read_temperature_c() is not None
    ha_version = version_tuple(HA_VERSION)
    none_state = "unknown" if ha_version >= NONE_BEFORE else "None"

    def expected_empty(metric: str) -> str:
        return none_state if specs[metric].device_class == "enum" else "unknown"

    broker = Broker(port=free_port(), workdir=workdir / "mosquitto")
    broker.workdir.mkdir()
    broker.start()
    ha = HomeAssistant(hass_exe, workdir / "ha", free_port())
    ha.config_dir.mkdir()
    device = EdgeFer(broker.port, workdir)
    rows: dict[str, dict[str, str]] = {m: {"entity": names[m]} for m in specs}
    try:
        t0 = time.monotonic()
        ha.start()
        log(f"Home Assistant {HA_VERSION} answering after {time.monotonic() - t0:.0f} s")
        ha.onboard()
        ha.add_mqtt(broker.port)
        log("MQTT config entry loaded")

        # 1. The demo: a face in view all the time.
        device.start("demo")
        ids: dict[str, str] = {}

        def all_with_values() -> bool:
            nonlocal ids
            ids = entity_ids(ha, names)
            if len(ids) < len(specs):
                return False
            states = ha.states()
            for metric, eid in ids.items():
                state = states[eid]["state"]
                if metric == "cpu_temp" and not has_temperature:
                    continue  # no thermal zone on this machine: stats carry null, HA shows unknown
                if metric == "dominant_emotion":
                    if state not in labels:
                        return False
                elif not is_number(state):
                    return False
            return True

        if not wait_until(all_with_values, 90, poll_s=0.25):
            found = {m: ha.states()[e]["state"] for m, e in ids.items()}
            raise CheckFailed(f"with a face in view, not every entity got a value ({len(ids)} of {len(specs)} found): {found}")
        states = ha.states()
        for metric, eid in ids.items():
            rows[metric]["entity_id"] = eid
            rows[metric]["face"] = states[eid]["state"]
        check_metadata(states, ids, specs, ha_version)
        # Subscribing now, after edge-fer published them, proves the configs are retained.
        configs = Collector(broker.port, topic="homeassistant/sensor/+/config")
        try:
            check_schema(configs, specs, ha, ha_version)
        finally:
            configs.close()
        if has_temperature is False and states[ids["cpu_temp"]]["state"] != "unknown":
            raise CheckFailed(f"no thermal zone here, yet the CPU temperature reads {states[ids['cpu_temp']]['state']}")
        log("face in view: every entity carries a value")

        device.stop()
        rows_from(wait_for_states(ha, ids, every("unavailable"), "after a clean stop"), rows, "stop")
        log("clean stop: every entity unavailable")

        # 2. A clip where the person leaves: nobody in view for its last 14 s.
        frames, fps = leaving_clip(load_settings().models.dir, face_s=8.0, empty_s=14.0)
        clip = write_clip(frames, workdir / "leaves.mp4", fps)
        device.start(str(clip))

        def windows_unknown(faces: str) -> Callable[[dict[str, str]], bool]:
            return lambda states: states["faces"] == faces and all(states[m] == expected_empty(m) for m in window_metrics)

        rows_from(wait_for_states(ha, ids, windows_unknown("0"), "after the person left", device), rows, "nobody")
        log("person left: the window entities read unknown, faces 0")
        device.stop()
        wait_for_states(ha, ids, every("unavailable"), "after the clip ended")

        # 3. Shares withheld by k-anonymity: one face, min_faces 2.
        device.start("demo", EDGE_FER_AGGREGATE__MIN_FACES="2")
        rows_from(wait_for_states(ha, ids, windows_unknown("1"), "one face with min_faces 2", device), rows, "withheld")
        log("min_faces 2: the window entities read unknown, faces 1")

        # 4. A crash: the broker's last will.
        device.stop(signal.SIGKILL)
        rows_from(wait_for_states(ha, ids, every("unavailable"), "after SIGKILL (last will)"), rows, "killed")
        log("SIGKILL: every entity unavailable (last will)")
        check_log(ha.log_file)
    finally:
        if device.running():
            device.stop(signal.SIGKILL)
        ha.stop()
        broker.stop()
    return [rows[m] for m in specs]


def wait_for_states(
    ha: HomeAssistant,
    ids: dict[str, str],
    predicate: Callable[[dict[str, str]], bool],
    when: str,
    running: EdgeFer | None = None,
    timeout_s: float = 60,
) -> dict[str, str]:
    """metric → state once `predicate` holds for them (while `running` runs, if given)."""
    last: dict[str, str] = {}

    def check() -> bool:
        nonlocal last
        states = ha.states()
        last = {metric: states[eid]["state"] for metric, eid in ids.items()}
        return predicate(last) and (running is None or running.running())

    if not wait_until(check, timeout_s, poll_s=0.25):
        raise CheckFailed(f"{when}: the states last seen were {last}")
    return last


def every(state: str) -> Callable[[dict[str, str]], bool]:
    return lambda states: all(s == state for s in states.values())


def rows_from(states: dict[str, str], rows: dict[str, dict[str, str]], column: str) -> None:
    for metric, state in states.items():
        rows[metric][column] = state


def check_metadata(states: dict[str, dict[str, Any]], ids: dict[str, str], specs: dict[str, Any], ha_version: tuple[int, int]) -> None:
    """What HA made of each config: device class, unit, state class (as HA reports them)."""
    for metric, eid in ids.items():
        spec, attributes = specs[metric], states[eid]["attributes"]
        expected = {"device_class": spec.device_class, "unit_of_measurement": spec.unit, "state_class": spec.state_class}
        got = {k: attributes.get(k) for k in expected}
        if got != expected:
            raise CheckFailed(f"{eid}: HA reports {got}, edge-fer announced {expected}")
        if spec.options and ha_version >= OPTIONS_FROM and attributes.get("options") != list(spec.options):
            raise CheckFailed(f"{eid}: HA reports options {attributes.get('options')}, edge-fer announced {list(spec.options)}")


def check_schema(configs: Collector, specs: dict[str, Any], ha: HomeAssistant, ha_version: tuple[int, int]) -> None:
    """Every retained discovery config through HA's own MQTT sensor schema: no error, and no key
    dropped as unknown (except ``options`` on an HA too old for it)."""
    if not configs.wait_for(lambda ms: len(ms) >= len(specs), 10):
        raise CheckFailed(f"{len(configs.messages)} discovery configs retained, expected {len(specs)}")
    # A retained message comes at min(its QoS, the subscription's): 1 only if published at 1.
    bad = [(m.topic, m.qos, m.retain) for m in configs.messages if not m.retain or m.qos != 1]
    if bad:
        raise CheckFailed(f"discovery configs not retained at QoS 1 (topic, qos, retain): {bad}")
    raw = {m.topic: m.json() for m in configs.messages}
    python = ha.hass.parent / "python"
    result = subprocess.run([str(python), "-c", _SCHEMA_SCRIPT], input=json.dumps(raw), capture_output=True, text=True, check=True)
    tolerated = {"options"} if ha_version < OPTIONS_FROM else set()
    for topic, verdict in json.loads(result.stdout).items():
        if verdict["error"]:
            raise CheckFailed(f"{topic}: HA's MQTT sensor schema refuses it: {verdict['error']}")
        dropped = set(verdict["dropped"]) - tolerated
        if dropped:
            raise CheckFailed(f"{topic}: HA's MQTT sensor schema drops {sorted(dropped)} as unknown keys")
    log(f"{len(raw)} discovery configs pass HA's MQTT sensor schema" + (" (options dropped: HA < 2024.9)" if tolerated else ""))


_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ (WARNING|ERROR|CRITICAL) \(([^)]*)\) \[([^\]]+)\] (.*)$")


def check_log(path: Path) -> None:
    """No warning or error about edge-fer's entities; other warnings are listed, not failed."""
    ours, others = [], []
    for line in path.read_text(errors="replace").splitlines():
        match = _LOG_LINE.match(line)
        if not match:
            continue
        logger_name, message = match.group(3), match.group(4)
        concerns_us = logger_name.startswith(WATCHED_LOGGERS) or re.search(r"edge[_-]fer|ha[_-]check", message, re.IGNORECASE)
        (ours if concerns_us else others).append(line)
    for line in others:
        log(f"HA log, not about edge-fer: {line[:200]}")
    if ours:
        raise CheckFailed("Home Assistant logged about edge-fer's entities:\n" + "\n".join(ours))
    log("HA's log has no warning or error about edge-fer's entities")


def print_table(rows: list[dict[str, str]]) -> None:
    columns = ("entity", "face", "nobody", "withheld", "stop", "killed")
    titles = ("entity", "face in view", "nobody in view", "withheld (min_faces 2)", "clean stop", "SIGKILL")
    print("| " + " | ".join(titles) + " |")
    print("|" + "---|" * len(titles))
    for row in rows:
        print("| " + " | ".join(row.get(c, "") for c in columns) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--ha-venv", type=Path, default=Path.home() / ".cache" / "edge-fer" / "ha-venv", help="where Home Assistant is installed (cached)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (HA's config and log, edge-fer's log)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    hass = ensure_home_assistant(args.ha_venv)
    installed = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="edge-fer-check-ha-"))
    ok = False
    try:
        rows = run_check(hass, workdir)
        ok = True
    except CheckFailed as exc:
        log(f"FAILED: {exc}")
        log(f"work folder kept: {workdir}")
        return 1
    finally:
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nHome Assistant {HA_VERSION}, device edge-fer {DEVICE}, {WINDOW_S} s windows\n")
    print_table(rows)
    if version_tuple(HA_VERSION) < NONE_BEFORE:
        print(f"\nThe dominant emotion reads `None` where Home Assistant 2024.10 and later show `unknown`: {HA_VERSION} turns a")
        print("template's None into unknown for numeric sensors only (home-assistant/core#127032).")
    total = time.monotonic() - started
    print(f"\ncheck-ha passed in {total:.0f} s ({installed - started:.0f} s installing, {time.monotonic() - installed:.0f} s checking)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
