"""The frame loop: frames from the capture thread through the pipeline, remote commands, pause, stats, events to the sinks."""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import cv2

from edge_fer import __version__
from edge_fer.capture import CaptureThread
from edge_fer.config import Settings
from edge_fer.pipeline import FrameResult, Pipeline
from edge_fer.runner.control import BUSY_MESSAGE, Command, CommandError, CommandInbox, apply_set, parse_command
from edge_fer.runner.health import FrameRateMeter, SystemdNotifier, ThermalGuard, read_temperature_c, read_throttled
from edge_fer.runner.stats import rss_mb
from edge_fer.sinks import Sink
from edge_fer.sinks.payloads import Event, cmd_result_event, micro_event, privacy_event, stats_event, summary_event, track_event
from edge_fer.types import Tracks

logger = logging.getLogger(__name__)

#: While paused, frames keep flowing (the watchdog sees a live camera) at about this interval;
#: the camera's other frames are not decoded.
PAUSED_FRAME_INTERVAL_S = 0.5
#: At most this many "busy" answers per frame, so that a flood of commands costs a frame little.
BUSY_ANSWERS_PER_FRAME = 64


@dataclass
class RunReport:
    """What a run did, for the CLI's closing log line and for `bench`."""

    frames: int = 0
    faces: int = 0
    summaries: int = 0
    events: int = 0
    wall_s: float = 0.0
    startup_s: float | None = None
    stages_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    capture: dict[str, Any] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0


class Runner:
    """Runs `pipeline` on frames from `capture` and sends what it produces to `sinks`.

    Args:
        settings: the loaded settings.
        pipeline: the per-frame stages.
        capture: a started-or-not `CaptureThread`.
        sinks: where events go; publishing never blocks inference beyond a local queue insert.
        stop_event: set it (or send SIGTERM/SIGINT) to stop after the current frame.
    """

    def __init__(
        self,
        settings: Settings,
        pipeline: Pipeline,
        capture: CaptureThread,
        sinks: list[Sink],
        stop_event: threading.Event | None = None,
        started_at: float | None = None,
        notifier: SystemdNotifier | None = None,
        thermal: ThermalGuard | None = None,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.capture = capture
        self.sinks = sinks
        self.stop_event = stop_event or threading.Event()
        self.report = RunReport()
        self._started = started_at if started_at is not None else time.monotonic()
        self._last_stats = 0.0
        self.fps_meter = FrameRateMeter()
        self.notifier = notifier or SystemdNotifier()
        self.thermal = thermal or ThermalGuard(settings.health.hot_c, settings.health.hot_fps)
        self.inbox = CommandInbox()
        self._busy_burst = False
        self.paused = False
        self.inference_state = "ok"
        self.inference_failures = 0
        self.inference_failures_total = 0
        if settings.health.remote_control:
            for sink in sinks:
                if hasattr(sink, "set_command_handler"):
                    sink.set_command_handler(self.inbox.submit)

    def _inference_failed(self, exc: BaseException) -> None:
        self.inference_failures += 1
        self.inference_failures_total += 1
        if self.inference_state == "ok":
            self.inference_state = "failing"
            logger.error("inference failed: %s; retrying with back-off", exc)
        delay = min(30.0, 0.25 * 2 ** min(self.inference_failures - 1, 8)) * random.uniform(0.8, 1.2)
        self.stop_event.wait(delay)

    def _handle_commands(self) -> None:
        for name, payload, size in self.inbox.drain():
            request_id = None
            try:
                command = parse_command(name, payload, size)
                request_id = command.request_id
                values = self._apply(command)
                event = cmd_result_event(name, True, "ok", request_id, **values)
            except CommandError as exc:
                logger.warning("remote command %r refused: %s", name[:24], exc)
                extra = {"allowed": list(exc.allowed)} if exc.allowed else {}
                event = cmd_result_event(name, False, str(exc), request_id or exc.request_id, **extra)
            self._publish(event)
        # Commands refused for want of room are answered too, a bounded number per frame.
        busy, unanswered = self.inbox.drain_busy(BUSY_ANSWERS_PER_FRAME)
        if busy and not self._busy_burst:
            logger.warning("remote commands arrive faster than they are applied: the excess is answered %r", BUSY_MESSAGE)
        self._busy_burst = bool(busy)
        for name, request_id in busy:
            self._publish(cmd_result_event(name, False, BUSY_MESSAGE, request_id))
        if unanswered:
            self._publish(cmd_result_event("*", False, f"busy: {unanswered} more commands refused, not applied", None, refused=unanswered))

    def _apply(self, command: Command) -> dict[str, Any]:
        if command.name == "pause":
            self.paused = True
            logger.info("paused by remote command")
        elif command.name == "resume":
            self.paused = False
            self.capture.defer(0.0)  # decode the next frame again
            logger.info("resumed by remote command")
        elif command.name == "set":
            new = apply_set(self.settings, command.values)
            self.pipeline.apply(new)
            self.settings = new  # what the runner itself reads (privacy_level) follows here
            self._publish(privacy_event(new))  # the retained audit record follows the live settings
            logger.info("settings changed by remote command: %s", ", ".join(f"{k}={v}" for k, v in command.values.items()))
            return {"applied": {k: v for k, v in command.values.items()}}
        return {"paused": self.paused, "frames": self.report.frames, "uptime_s": round(time.monotonic() - self._started, 1)}

    def _publish(self, event: Event) -> None:
        with self.pipeline.timer.time("publish"):
            for sink in self.sinks:
                sink.publish(event)
        self.report.events += 1

    def _emit(self, result: FrameResult) -> None:
        events_level = self.settings.aggregate.privacy_level == "events"
        if events_level:
            for micro in result.micro_expressions:
                self._publish(micro_event(micro))
            for ended in result.ended_tracks:
                self._publish(track_event(ended))
        if result.summary is not None:
            self._publish(summary_event(result.summary))
            self.report.summaries += 1

    def stats(self) -> dict[str, Any]:
        """Health numbers for `<prefix>/stats`: whitelisted scalars and small dicts only.

        ``fps`` is the rate since the previous stats (null until 2 s of frames: see
        `FrameRateMeter`); each call starts a new interval, so call it only to publish.
        """
        cap = self.capture.stats()
        fps = self.fps_meter.rate(time.monotonic())
        stats: dict[str, Any] = {
            "version": __version__,
            "uptime_s": round(time.monotonic() - self._started, 1),
            "frames": self.report.frames,
            "fps": None if fps is None else round(fps, 2),
            "dropped_frames": int(cap.get("dropped", 0)),
            "source_state": str(cap.get("state", "")),
            "source_reopens": int(cap.get("reopens", 0)),
            "rss_mb": round(rss_mb(), 1),
            "cpu_temp_c": self.thermal.temperature_c if self.thermal.temperature_c is not None else read_temperature_c(),
            "detector": self.settings.models.detector,
            "emotion_model": self.settings.models.emotion,
            "backends": {stage: model.label for stage, model in self.pipeline.models().items()},
            "stages_ms": {k: v["p50"] for k, v in self.pipeline.timer.percentiles().items()},
            "paused": self.paused,
            "inference_state": self.inference_state,
            "inference_failures": self.inference_failures_total,
            "thermal_limited": self.thermal.hot,
            "commands_dropped": self.inbox.dropped,
        }
        throttled = read_throttled()
        if throttled is not None:
            stats["throttling"] = throttled
        for sink in self.sinks:
            stats.update(getattr(sink, "health", dict)())
        return stats

    def _maybe_stats(self) -> None:
        now = time.monotonic()
        if now - self._last_stats >= self.settings.aggregate.stats_interval_s:
            self._last_stats = now
            self._publish(stats_event(self.stats()))

    def run(self, *, max_frames: int | None = None, duration_s: float | None = None) -> RunReport:
        """Process frames until the source ends, `max_frames`, `duration_s` or a stop."""
        start = time.monotonic()
        deadline = start + duration_s if duration_s else None
        last_t = 0.0
        timer = self.pipeline.timer
        try:
            while not self.stop_event.is_set():
                if max_frames is not None and self.report.frames >= max_frames:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                wait_start = time.perf_counter()
                frame = self.capture.get(timeout_s=0.5)
                # Commands and stats go on while no frame comes (a camera being reopened), so
                # its state stays visible and `status` is still answered.
                self._handle_commands()
                if frame is None:
                    if self.capture.finished:
                        break
                    self._maybe_stats()
                    continue
                timer.record("capture", (time.perf_counter() - wait_start) * 1000.0)
                if self.paused:
                    self.notifier.frame_processed(time.monotonic(), "paused")  # frames still flow
                    # ...but a few per second are enough for that: the others are not decoded
                    self.capture.defer(time.monotonic() + PAUSED_FRAME_INTERVAL_S)
                    self._maybe_stats()  # stats go on while paused (`paused: true`, fps 0)
                    continue
                frame_start = time.monotonic()
                try:
                    result = self.pipeline.process(frame)
                except (RuntimeError, ValueError, cv2.error) as exc:
                    # A failing interpreter or accelerator: back off and retry. The watchdog is not
                    # fed meanwhile, so if it never recovers systemd restarts the service.
                    self._inference_failed(exc)
                    continue
                if self.inference_failures:
                    logger.info("inference works again after %d failed frame(s)", self.inference_failures)
                    self.inference_failures = 0
                    self.inference_state = "ok"
                last_t = frame.t
                self.report.frames += 1
                self.fps_meter.frame(time.monotonic())
                self.report.faces += len(result.observations)
                if self.report.startup_s is None:
                    self.report.startup_s = time.monotonic() - self._started
                    logger.info("first frame processed %.2f s after start", self.report.startup_s)
                self._emit(result)
                self._maybe_stats()
                now = time.monotonic()
                self.notifier.frame_processed(now, f"{self.report.frames} frames")
                rest = self.thermal.min_frame_interval_s(now) - (now - frame_start)
                if rest > 0:
                    # Frames arriving during the wait would be replaced: not worth decoding.
                    self.capture.defer(now + rest)
                    self.stop_event.wait(rest)
        finally:
            summary, ended = self.pipeline.finish(last_t)
            if self.report.frames:
                self._emit(FrameResult(-1, last_t, Tracks.empty(), (), ended, summary))
                self._publish(stats_event(self.stats()))
            self.notifier.stopping()
            self.report.wall_s = time.monotonic() - start
            self.report.stages_ms = timer.percentiles()
            self.report.capture = self.capture.stats()
        return self.report
