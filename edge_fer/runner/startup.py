"""Start-up and shutdown of the service: checks, then models → capture → sinks → loop, stopped in reverse.

`run` builds the pipeline (every model loaded and checked), starts the capture thread (the first
open raises at once), builds the sinks, installs the signal handlers and runs the loop. Stop is
the reverse: the loop ends and publishes the partial window and last stats, the signal handlers
are restored, the capture thread and the source stop, and the sinks close last (in reverse
order), so that the final summary and stats still go out. One `stop_event` ends everything;
every blocking call has a timeout.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from edge_fer import __version__
from edge_fer.capture import CaptureThread, is_still_spec, redact, source_from_spec
from edge_fer.config import SINK_SPECS, Settings
from edge_fer.pipeline import Pipeline
from edge_fer.runner.loop import Runner, RunReport
from edge_fer.sinks import Sink, build_sinks
from edge_fer.sinks.payloads import privacy_event

logger = logging.getLogger(__name__)


def preflight(settings: Settings) -> None:
    """Every check `run` makes before it opens a camera, a broker connection or a port, so that
    ``edge-fer run --validate-config`` refuses exactly what `run` would refuse.

    Raises:
        ConfigError: a prohibited deployment, a bad dashboard address, unreadable MQTT TLS or
            password files (exit code 2).
        ModelError: a model name not in the manifest, or its file missing or corrupt (exit code 4).
    """
    from edge_fer.models import resolve
    from edge_fer.sinks.dashboard import check_listen

    settings.deployment.check_lawful()
    models = [("detector", settings.models.detector), ("emotion", settings.models.emotion)]
    if settings.models.far_detector:
        models.append(("detector", settings.models.far_detector))
    if settings.landmarks.enabled:
        models.append(("landmarks", settings.models.landmarks))
    for kind, name in models:
        resolve(name, settings.models.dir, kind)
    if settings.dashboard.listen:
        check_listen(settings.dashboard.listen, settings.dashboard.allow_remote)
    if any(SINK_SPECS.get(spec) == "mqtt" for spec in settings.sinks):
        settings.mqtt.check_files()


def run(
    settings: Settings,
    *,
    max_frames: int | None = None,
    duration_s: float | None = None,
    stream: IO[str] | None = None,
    stop_event: threading.Event | None = None,
    install_signals: bool = False,
    started_at: float | None = None,
    on_built: Callable[[Pipeline], None] | None = None,
) -> RunReport:
    """Build everything from `settings`, run, and shut down cleanly.

    Args:
        started_at: `time.monotonic()` when the command started, for the start-up time
            (default: now).
        on_built: called with the pipeline once every stage is built (used by `bench`).

    Raises:
        ModelError: a model is missing or corrupt (exit code 4).
        SourceError: the source cannot be opened (exit code 3).
        ConfigError: a bad setting found while building (exit code 2).
    """
    preflight(settings)
    logger.info(
        "deployment context %s, purpose %s, controller %s, aggregates to be kept %d days",
        settings.deployment.context,
        settings.deployment.purpose or "(not given)",
        settings.deployment.controller or "(not given)",
        settings.deployment.retention_days,
    )
    logger.info(
        "edge-fer %s starting: device %s, source %s, sinks %s, privacy level %s, min_faces %d (pid %d)",
        __version__,
        settings.device_id,
        redact(settings.source.spec),
        ", ".join(redact(s) for s in settings.sinks),
        settings.aggregate.privacy_level,
        settings.aggregate.min_faces,
        os.getpid(),
    )
    started_at = time.monotonic() if started_at is None else started_at
    stop_event = stop_event or threading.Event()
    pipeline = Pipeline.from_settings(settings, stills=is_still_spec(settings.source.spec))
    if on_built is not None:
        on_built(pipeline)
    src_cfg = settings.source
    capture = CaptureThread(
        lambda: source_from_spec(src_cfg.spec, src_cfg, settings.models.dir),
        realtime=src_cfg.realtime,
        reopen_backoff_max_s=src_cfg.reopen_backoff_max_s,
        stop_event=stop_event,
    )
    capture.start()  # raises SourceError synchronously when the first open fails
    sinks: list[Sink] = []
    previous: dict[int, Any] = {}
    try:
        sinks = build_sinks(settings, stream=stream)
        if install_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, lambda *_: stop_event.set())
        runner = Runner(settings, pipeline, capture, sinks, stop_event, started_at)
        runner._publish(privacy_event(settings))
        report = runner.run(max_frames=max_frames, duration_s=duration_s)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        capture.stop()
        for sink in reversed(sinks):
            sink.close(timeout_s=5.0)
    logger.info(
        "processed %d frames in %.1f s (%.1f frames/s), %d face observations, %d summaries; dropped %s frames",
        report.frames,
        report.wall_s,
        report.fps,
        report.faces,
        report.summaries,
        report.capture.get("dropped", 0),
    )
    return report
