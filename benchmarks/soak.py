"""Soak benchmark (not a test): run the pipeline for a while and report RSS over time as JSON.

    python benchmarks/soak.py --minutes 10 [--source demo] [--sink mqtt://127.0.0.1] [--interval 10]

Prints one JSON object: samples [[seconds, rss_mb], ...], the least-squares slope in MB per
hour, frames processed and the run's own figures. A slope near 0 after warm-up means no leak.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--source", default="demo")
    parser.add_argument("--sink", action="append", default=None, help="default: stdout (discarded)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between RSS samples")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds excluded from the slope")
    args = parser.parse_args()
    sinks = [x for s in (args.sink or ["stdout"]) for x in ("--sink", s)]
    cmd = [sys.executable, "-m", "edge_fer", "run", "--source", args.source, *sinks, "--duration", str(args.minutes * 60)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    start = time.monotonic()
    samples: list[tuple[float, float]] = []
    while proc.poll() is None:
        value = rss_mb(proc.pid)
        if value:  # None or 0 while the interpreter is still starting
            samples.append((round(time.monotonic() - start, 1), round(value, 2)))
            print(f"{samples[-1][0]:8.1f} s  {value:7.1f} MB", file=sys.stderr, flush=True)
        time.sleep(args.interval)
    _, err = proc.communicate()
    steady = [(t, m) for t, m in samples if t >= args.warmup]
    slope = float(np.polyfit([t for t, _ in steady], [m for _, m in steady], 1)[0]) * 3600 if len(steady) >= 3 else None
    summary = [line for line in err.splitlines() if "processed" in line]
    print(
        json.dumps(
            {
                "minutes": args.minutes,
                "source": args.source,
                "samples": samples,
                "rss_start_mb": samples[0][1] if samples else None,
                "rss_end_mb": samples[-1][1] if samples else None,
                "slope_mb_per_hour": None if slope is None else round(slope, 3),
                "run": summary[-1].split(": ", 1)[-1] if summary else None,
                "exit_code": proc.returncode,
            }
        )
    )
    return int(proc.returncode != 0)


if __name__ == "__main__":
    raise SystemExit(main())
