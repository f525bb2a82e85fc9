"""Subscribe to edge-fer summaries and append them to a CSV file (Grafana's CSV / Infinity sources read it).

    python examples/export_csv.py --host 127.0.0.1 --out summaries.csv [--device kiosk]

One row per summary: time, device, seq, faces, each emotion share, valence, arousal, confidence.
Duplicates after a reconnect (same device and seq) are dropped.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import paho.mqtt.client as mqtt

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FIELDS = ["ts", "device", "seq", "faces_max", "faces_distinct", "dwell_s", *EMOTIONS, "valence", "arousal", "confidence"]


def row(summary: dict) -> dict:  # type: ignore[type-arg]
    shares = summary.get("emotions") or {}
    faces = summary.get("faces", {})
    return {
        "ts": summary["ts"],
        "device": summary["device"],
        "seq": summary["seq"],
        "faces_max": faces.get("max"),
        "faces_distinct": faces.get("distinct"),
        "dwell_s": faces.get("dwell_s"),
        **{e: shares.get(e) for e in EMOTIONS},
        "valence": summary.get("valence"),
        "arousal": summary.get("arousal"),
        "confidence": summary.get("confidence"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--device", default="+", help="device id (default: all)")
    parser.add_argument("--out", type=Path, default=Path("summaries.csv"))
    args = parser.parse_args()
    new = not args.out.exists()
    fh = open(args.out, "a", newline="")  # noqa: SIM115 - open for the life of the program
    writer = csv.DictWriter(fh, FIELDS)
    if new:
        writer.writeheader()
    seen: set[tuple[str, int]] = set()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        summary = json.loads(msg.payload)
        key = (summary["device"], summary["seq"])
        if key in seen:
            return
        seen.add(key)
        writer.writerow(row(summary))
        fh.flush()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_connect = lambda c, *_: c.subscribe(f"edge_fer/{args.device}/summary", qos=1)
    client.on_message = on_message
    client.connect(args.host, args.port)
    print(f"writing summaries to {args.out}; Ctrl-C to stop")
    try:
        client.loop_forever()
    except KeyboardInterrupt:
        fh.close()


if __name__ == "__main__":
    main()
