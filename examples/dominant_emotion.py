"""Print the dominant emotion of the faces in front of a Pi camera or a USB camera.

    python examples/dominant_emotion.py                    # the Pi camera if picamera2 is installed, else /dev/video0
    python examples/dominant_emotion.py --source v4l2:1    # another USB camera
    python examples/dominant_emotion.py --source demo      # the bundled footage: no camera needed

One line whenever the dominant emotion changes, and a line per 10 s window. Ctrl-C stops.
Nothing is published or stored: every number stays in this process.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

import edge_fer


def default_camera() -> str:
    return "picamera2" if importlib.util.find_spec("picamera2") else "v4l2:0"


def dominant(faces: tuple[edge_fer.Face, ...]) -> tuple[str, float]:
    """The emotion with the most probability over all the faces in view, and its share."""
    totals = {emotion: sum(face.probabilities[emotion] for face in faces) for emotion in faces[0].probabilities}
    emotion = max(totals, key=totals.__getitem__)
    return emotion, totals[emotion] / len(faces)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=default_camera(), help="picamera2, v4l2:N, a video file, demo (default: %(default)s)")
    parser.add_argument("--frames", type=int, help="stop after this many frames (default: run until Ctrl-C)")
    args = parser.parse_args()
    shown = None
    try:
        with edge_fer.Analyzer(args.source) as analyzer:
            for result in analyzer:
                if result.faces:
                    emotion, share = dominant(result.faces)
                    if emotion != shown:
                        print(f"{result.t:6.1f} s  {len(result.faces)} face(s): {emotion} ({share:.0%})", flush=True)
                        shown = emotion
                if result.summary is not None and result.summary.emotion_shares:
                    shares = result.summary.emotion_shares
                    mostly = max(shares, key=shares.__getitem__)
                    print(f"{result.t:6.1f} s  window: {result.summary.faces_distinct} face(s), mostly {mostly} ({shares[mostly]:.0%})", flush=True)
                if args.frames is not None and analyzer.frames >= args.frames:
                    break
    except edge_fer.EdgeFerError as exc:  # no camera, no models, a bad setting: say what to do
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
