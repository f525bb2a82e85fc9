"""The capture thread: reads a source in the background and hands over only the newest frame."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from edge_fer.capture.base import FrameSource
from edge_fer.errors import EdgeFerError
from edge_fer.types import Frame

logger = logging.getLogger(__name__)


class CaptureThread:
    """Runs a `FrameSource` in a daemon thread; `get` returns the newest frame not yet taken.

    - Live sources (cameras, streams) are read as fast as they deliver; a frame replaced before
      the pipeline took it is counted in `dropped` — a slow pipeline never builds latency.
    - File sources with ``realtime=True`` are paced at their own frame rate (by `Frame.t`), and
      drop frames like a camera when the pipeline is slower.
    - ``realtime=False`` delivers every frame (back-pressure, no drops), decoding the next
      frame while the pipeline works on the current one.
    - A source that fails mid-run is closed and reopened with capped exponential back-off and
      jitter; the failure and the recovery are each logged once.

    Args:
        source_factory: builds a new, unopened source (called again for each reopen).
        realtime: pace file sources at their frame rate (ignored for live sources).
        reopen_backoff_max_s: cap of the reopen delay, seconds.
        stop_event: shared stop signal (a new one by default).
        backoff_initial_s: first reopen delay, seconds.
    """

    def __init__(
        self,
        source_factory: Callable[[], FrameSource],
        *,
        realtime: bool = True,
        reopen_backoff_max_s: float = 30.0,
        stop_event: threading.Event | None = None,
        backoff_initial_s: float = 0.5,
    ) -> None:
        if reopen_backoff_max_s <= 0 or backoff_initial_s <= 0:
            raise ValueError("reopen_backoff_max_s and backoff_initial_s must be > 0")
        self._factory = source_factory
        self.realtime = realtime
        self.reopen_backoff_max_s = reopen_backoff_max_s
        self.backoff_initial_s = backoff_initial_s
        self.stop_event = stop_event or threading.Event()
        self._cond = threading.Condition()
        self._slot: Frame | None = None
        self._thread: threading.Thread | None = None
        self._source: FrameSource | None = None
        self.finished = False
        self.state = "idle"
        self.dropped = 0
        self.captured = 0
        self.reopens = 0
        self.last_error: str | None = None
        self.name = "source"

    # -- consumer side -------------------------------------------------------------------
    def start(self) -> None:
        """Open the source in the calling thread (so `SourceError` reaches the caller), then
        start reading in the background."""
        source = self._factory()
        source.open()
        self._source, self.name = source, source.name
        self.state = "running"
        self._thread = threading.Thread(target=self._run, name="edge-fer-capture", daemon=True)
        self._thread.start()

    def get(self, timeout_s: float = 1.0) -> Frame | None:
        """The newest frame not yet taken; None after `timeout_s` or at the end of the source."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._slot is None or self.stop_event.is_set():
                if self.finished or self.stop_event.is_set():
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            frame, self._slot = self._slot, None
            self._cond.notify_all()
            return frame

    def stats(self) -> dict[str, Any]:
        return {
            "source": self.name,
            "state": self.state,
            "captured": self.captured,
            "dropped": self.dropped,
            "reopens": self.reopens,
            "last_error": self.last_error,
        }

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread and release the source."""
        self.stop_event.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.warning("capture thread did not stop within %.1f s", timeout_s)
        self._close_source()

    # -- producer side -------------------------------------------------------------------
    def _put(self, frame: Frame, wait_for_consumer: bool) -> None:
        with self._cond:
            if wait_for_consumer:
                while self._slot is not None and not self.stop_event.is_set():
                    self._cond.wait(0.5)
            if self._slot is not None:
                self.dropped += 1
            self._slot = frame
            self.captured += 1
            self._cond.notify_all()

    def _close_source(self) -> None:
        source, self._source = self._source, None
        if source is not None:
            try:
                source.close()
            except Exception:  # noqa: BLE001 - a failing close must not hide the original failure
                logger.debug("closing %s failed", self.name, exc_info=True)

    def _run(self) -> None:
        pace_origin: tuple[float, float] | None = None  # (wall clock, frame time) of the first frame
        while not self.stop_event.is_set():
            source = self._source
            if source is None:
                if not self._reopen():
                    break
                pace_origin = None
                continue
            try:
                frame = source.read()
            except Exception as exc:  # noqa: BLE001 - any failure of a device or decoder → reopen
                self._fail(exc)
                continue
            if frame is None:
                break
            paced = self.realtime and not source.live
            if paced:
                if pace_origin is None:
                    pace_origin = (time.monotonic(), frame.t)
                delay = pace_origin[0] + (frame.t - pace_origin[1]) - time.monotonic()
                if delay > 0 and self.stop_event.wait(delay):
                    break
            self._put(frame, wait_for_consumer=not source.live and not self.realtime)
        with self._cond:
            self.finished = True
            if self.state != "failed":
                self.state = "finished"
            self._cond.notify_all()

    def _fail(self, exc: BaseException) -> None:
        self.last_error = str(exc)
        self.state = "reconnecting"
        logger.warning("source %s failed: %s; reopening with back-off", self.name, exc)
        self._close_source()

    def _reopen(self) -> bool:
        attempt = 0
        while not self.stop_event.is_set():
            delay = min(self.reopen_backoff_max_s, self.backoff_initial_s * 2**attempt) * random.uniform(0.8, 1.2)
            if self.stop_event.wait(delay):
                return False
            attempt += 1
            try:
                source = self._factory()
                source.open()
            except EdgeFerError as exc:
                self.last_error = str(exc)
                logger.debug("reopen %d of %s failed: %s", attempt, self.name, exc)
                continue
            self._source = source
            self.reopens += 1
            self.state = "running"
            logger.info("source %s is back after %d attempt(s)", self.name, attempt)
            return True
        return False
