"""Remote commands in a burst (not a test): prints one JSON object.

    python benchmarks/command_burst.py [--commands 500] [--wait 30]

Starts a mosquitto (from PATH or /usr/sbin) on a free loopback port and `edge-fer run --source demo`
publishing to it, sends `--commands` `status` commands at once (one connection, QoS 1, each with
its own id) and counts, `--wait` seconds later, the answers on `cmd/result`: how many commands got
one, how many got more than one, how many were applied (`ok`) and how many refused busy.

Run it against another checkout with ``PYTHONPATH=/that/checkout`` to compare versions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import paho.mqtt.client as mqtt
import paho.mqtt.publish as publish


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=500)
    parser.add_argument("--wait", type=float, default=30.0, help="seconds to collect answers after the burst")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        broker = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
        answers: list[dict] = []  # type: ignore[type-arg]
        summaries = threading.Event()
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)

        def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
            if msg.topic.endswith("/cmd/result"):
                answers.append(json.loads(msg.payload))
            elif msg.topic.endswith("/summary"):
                summaries.set()

        sub.on_message = on_message
        time.sleep(0.5)
        sub.connect("127.0.0.1", port)
        sub.subscribe("edge_fer/#", qos=1)
        sub.loop_start()
        env = dict(os.environ, EDGE_FER_STATE_DIR=f"{tmp}/state", EDGE_FER_DEVICE_ID="burst")
        device = subprocess.Popen(
            [sys.executable, "-m", "edge_fer", "run", "--source", "demo", "--sink", f"mqtt://127.0.0.1:{port}", "--window", "1"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            if not summaries.wait(60):
                raise SystemExit("the device published no summary within 60 s")
            burst = [{"topic": "edge_fer/burst/cmd/status", "payload": json.dumps({"id": f"b{i}"}), "qos": 1} for i in range(args.commands)]
            publish.multiple(burst, hostname="127.0.0.1", port=port)  # type: ignore[arg-type]
            time.sleep(args.wait)
        finally:
            device.terminate()
            device.wait(30)
            sub.loop_stop()
            broker.terminate()
            broker.wait(10)
    ids = [a.get("id") for a in answers]
    per_id = Counter(i for i in ids if i is not None)
    print(
        json.dumps(
            {
                "commands": args.commands,
                "answered": sum(1 for i in range(args.commands) if per_id[f"b{i}"] >= 1),
                "answered_more_than_once": sum(1 for n in per_id.values() if n > 1),
                "answers_without_id": ids.count(None),
                "applied": sum(1 for a in answers if a.get("ok")),
                "refused_busy": sum(1 for a in answers if not a.get("ok") and str(a.get("message", "")).startswith("busy")),
                "wait_s": args.wait,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
