"""React to a smile: when a face in front of the camera smiles, print it, or run a command of yours.

    python examples/smile_trigger.py                                   # the Pi camera, else /dev/video0
    python examples/smile_trigger.py --run "aplay /usr/share/sounds/alsa/Front_Center.wav"
    python examples/smile_trigger.py --source demo --threshold 0.6     # the bundled footage

A smile is the `happy` expression at `--threshold` or more, held for `--hold-s` seconds; each
smile triggers once, and again only after the face stopped smiling. Ctrl-C stops.
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import subprocess
import sys

import edge_fer


def default_camera() -> str:
    return "picamera2" if importlib.util.find_spec("picamera2") else "v4l2:0"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=default_camera(), help="picamera2, v4l2:N, a video file, demo (default: %(default)s)")
    parser.add_argument("--threshold", type=float, default=0.6, help="probability of `happy` that counts as a smile (default 0.6)")
    parser.add_argument("--hold-s", type=float, default=0.5, help="how long the smile must last, seconds (default 0.5)")
    parser.add_argument("--run", help="a command to run at each smile (default: just print)")
    parser.add_argument("--frames", type=int, help="stop after this many frames (default: run until Ctrl-C)")
    args = parser.parse_args()
    since: dict[int, float] = {}  # track id → when its smile started
    fired: set[int] = set()  # tracks whose current smile already triggered
    try:
        with edge_fer.Analyzer(args.source) as analyzer:
            for result in analyzer:
                for face in result.faces:
                    happy = face.probabilities.get("happy", 0.0)
                    if happy < args.threshold:
                        since.pop(face.track_id, None)
                        fired.discard(face.track_id)
                        continue
                    start = since.setdefault(face.track_id, result.t)
                    if face.track_id not in fired and result.t - start >= args.hold_s:
                        fired.add(face.track_id)
                        print(f"{result.t:6.1f} s  face {face.track_id} smiles ({happy:.0%})", flush=True)
                        if args.run:
                            subprocess.Popen(shlex.split(args.run))  # the user's own command, not waited for
                if args.frames is not None and analyzer.frames >= args.frames:
                    break
    except edge_fer.EdgeFerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
