"""A live chart of emotion shares from edge-fer summaries (matplotlib window, or PNG with --png).

python examples/live_chart.py --host 127.0.0.1 [--device kiosk] [--png chart.png]
"""

from __future__ import annotations

import argparse
import json
import queue
from collections import deque

import matplotlib.pyplot as plt
import paho.mqtt.client as mqtt

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--device", default="+")
    parser.add_argument("--points", type=int, default=60, help="summaries kept on screen")
    parser.add_argument("--png", help="write the chart to this file after each summary instead of a window")
    args = parser.parse_args()
    inbox: queue.Queue[dict] = queue.Queue()  # type: ignore[type-arg]
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_connect = lambda c, *_: c.subscribe(f"edge_fer/{args.device}/summary", qos=1)
    client.on_message = lambda _c, _u, msg: inbox.put(json.loads(msg.payload))
    client.connect(args.host, args.port)
    client.loop_start()
    history = {e: deque(maxlen=args.points) for e in EMOTIONS}
    valence: deque[float] = deque(maxlen=args.points)
    if args.png:
        plt.switch_backend("Agg")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    while True:
        summary = inbox.get()
        shares = summary.get("emotions") or {}
        for e in EMOTIONS:
            history[e].append(shares.get(e, float("nan")))
        valence.append(summary.get("valence") if summary.get("valence") is not None else float("nan"))
        top.clear()
        top.stackplot(range(len(valence)), *[history[e] for e in EMOTIONS], labels=EMOTIONS)
        top.set_ylim(0, 1)
        top.set_ylabel("share of expressions")
        top.legend(loc="upper left", fontsize=7, ncol=7)
        bottom.clear()
        bottom.plot(range(len(valence)), valence, color="black")
        bottom.axhline(0, color="grey", lw=0.5)
        bottom.set_ylim(-1, 1)
        bottom.set_ylabel("valence")
        bottom.set_xlabel(f"summary ({summary.get('window', {}).get('seconds', '?')} s windows)")
        fig.suptitle(f"edge-fer {summary['device']}: faces {summary['faces']['max']}")
        if args.png:
            fig.savefig(args.png)
        else:
            plt.pause(0.01)


if __name__ == "__main__":
    main()
