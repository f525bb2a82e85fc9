"""The capture thread: reads a source in the background and hands over only the newest frame."""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from edge_fer.capture.base import FrameSource
from edge_fer.errors import EdgeFerError, SourceError
from edge_fer.types import Frame

logger = logging.getLogger(__name__)

#: A paced file source more than this far behind its schedule (s) re-anchors its clock instead of
#: bursting through the backlog (after a suspend, a debugger stop, a very slow decode).
MAX_PACING_LAG_S = 1.0
#: Longest single wait of the consumer or a back-pressured reader (s), so that a shared
#: `stop_event` set by someone else (a signal handler) is noticed promptly.
_WAIT_SLICE_S = 0.25


class CaptureThread:
    """Runs a `FrameSource` in a daemon thread; `get` returns the newest frame not yet taken.

    - Live sources (cameras, streams) are read as fast as they deliver. A frame replaced before
      the consumer took it is counted in `dropped`: a slow pipeline never builds a backlog or
      latency. (Back-pressure is impossible on a camera, so ``realtime=False`` changes nothing here.)
    - File sources (videos, folders) with ``realtime=True`` are paced at their own frame rate
      (`Frame.t` against a monotonic clock) and drop frames like a camera when the consumer is slower.
    - File sources with ``realtime=False`` deliver every frame, in order: the reader waits until
      the consumer took the previous frame, while already decoding the next one (decoding
      overlaps inference).
    - A consumer that knows it will not take a frame before some time (a thermal frame-rate
      cap, a pause) says so with `defer`: meanwhile a live source that can (``grab`` and
      ``retrieve``, as OpenCV's) takes each frame off the device but decodes only the last
      one to arrive before that time; the others would be replaced undecoded anyway.
    - At the end of a finite source: with `loop`, a new source is opened and time goes on
      (`Frame.t` and `Frame.index` keep increasing); without, `get` returns None once the last
      frame was taken and `finished` is True.
    - A source that fails (read error, device unplugged, file removed, or any bug) is closed and
      reopened with capped exponential back-off and jitter; the failure is logged once (warning)
      and the recovery once (info), not every attempt. After a reopen, `Frame.index` continues
      from the last frame (and `Frame.t` too, for files).

    The first open happens in `start`, in the caller's thread, so an unavailable source raises
    `SourceError` there (exit code 3) instead of retrying forever in the background.

    Attributes:
        state: ``"running"``, ``"reconnecting"``, ``"finished"`` or ``"failed"`` (gave up after
            `max_reopen_attempts`, or an internal error).
        captured: frames handed to the slot; dropped: frames replaced before being taken, or
            skipped undecoded while the consumer deferred (`skipped` counts those alone);
            delivered: frames returned by `get`; reopens: recoveries after a failure;
            last_error: the message of the latest failure (None before any).

    Args:
        source_factory: builds a new, *unopened* source; called again for every reopen.
        realtime: pace file sources at their own frame rate (True), or deliver every frame as
            fast as the consumer takes it (False).
        loop: reopen a finite source at its end and go on.
        reopen_backoff_max_s: cap of the delay between reopen attempts, seconds.
        stop_event: shared stop signal (a new one by default); `stop` sets it.
        backoff_initial_s: delay before the first reopen attempt, seconds; doubles per attempt.
        max_reopen_attempts: give up (state ``"failed"``) after this many failed attempts in a
            row; None retries forever (a service waiting for its camera to come back).
        clock: monotonic time in seconds, for pacing (tests pass a virtual clock).
        sleep: ``sleep(seconds)`` for pacing; default waits on `stop_event` (tests pass a
            virtual clock's sleep).
    """

    def __init__(
        self,
        source_factory: Callable[[], FrameSource],
        *,
        realtime: bool = True,
        loop: bool = False,
        reopen_backoff_max_s: float = 30.0,
        stop_event: threading.Event | None = None,
        backoff_initial_s: float = 0.5,
        max_reopen_attempts: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        if not reopen_backoff_max_s > 0:
            raise ValueError(f"reopen_backoff_max_s must be > 0 seconds, got {reopen_backoff_max_s}")
        if not backoff_initial_s > 0:
            raise ValueError(f"backoff_initial_s must be > 0 seconds, got {backoff_initial_s}")
        if max_reopen_attempts is not None and max_reopen_attempts < 1:
            raise ValueError(f"max_reopen_attempts must be >= 1 or None, got {max_reopen_attempts}")
        self._factory = source_factory
        self.realtime = realtime
        self.loop = loop
        self.reopen_backoff_max_s = float(reopen_backoff_max_s)
        self.backoff_initial_s = min(float(backoff_initial_s), self.reopen_backoff_max_s)
        self.max_reopen_attempts = max_reopen_attempts
        self.stop_event = stop_event if stop_event is not None else threading.Event()
        self._clock = clock
        self._sleep = sleep
        self._cond = threading.Condition()
        self._slot: Frame | None = None
        self._thread: threading.Thread | None = None
        self._source: FrameSource | None = None
        self.name = "source"
        self.live = True
        # Shared with the consumer; written under `_cond`.
        self.state = "idle"
        self.finished = False
        self.captured = 0
        self.dropped = 0
        self.delivered = 0
        self.skipped = 0
        self.reopens = 0
        self.last_error: str | None = None
        self._defer_until = 0.0  # clock time before which the consumer takes no frame
        # Reader-thread only.
        self._attempt = 0  # failed reopen attempts since the last frame
        self._recovering = False
        self._failed_at = 0.0
        self._rebase = False  # the next frame is the first of a new source instance
        self._t_shift = 0.0
        self._index_shift = 0
        self._last: Frame | None = None
        self._pass_frames = 0  # frames of the current source instance
        self._pace_origin: tuple[float, float] | None = None  # (clock, Frame.t) pacing anchor

    # -- consumer side -------------------------------------------------------------------
    def start(self) -> None:
        """Open the source here, in the calling thread, then read it in a daemon thread.

        Raises:
            SourceError: the source cannot be opened (also ModelError for a missing ``demo``).
            RuntimeError: started twice.
        """
        if self._thread is not None:
            raise RuntimeError("CaptureThread.start() called twice")
        source = self._factory()
        self.name = source.name
        _open_or_close(source)
        self._install(source)
        with self._cond:
            self.state = "running"
        self._thread = threading.Thread(target=self._run, name="edge-fer-capture", daemon=True)
        self._thread.start()
        logger.info(
            "capture from %s started (%s, %s)",
            self.name,
            "live" if source.live else f"file at {source.nominal_fps or 0:g} frames/s",
            "newest frame only" if source.live or self.realtime else "every frame",
        )

    def get(self, timeout_s: float = 1.0) -> Frame | None:
        """The newest frame not yet taken, waiting up to `timeout_s` seconds for one.

        Returns None on timeout (e.g. while reconnecting), after `stop`, and once the last frame
        of a finished source was taken (then `finished` is True).
        """
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._cond:
            while True:
                if self.stop_event.is_set():
                    return None
                if self._slot is not None:
                    frame, self._slot = self._slot, None
                    self.delivered += 1
                    self._cond.notify_all()  # a back-pressured reader may go on
                    return frame
                if self.finished:
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(min(remaining, _WAIT_SLICE_S))

    def defer(self, until_s: float) -> None:
        """Promise that `get` will not be called before `until_s` (on the `clock`; e.g. the
        end of a thermal-cap wait): live frames that would be replaced before then are skipped
        without decoding, where the source can."""
        with self._cond:
            self._defer_until = until_s

    def stats(self) -> dict[str, Any]:
        """Numbers for logs and `<prefix>/stats` (the name carries no credentials)."""
        with self._cond:
            return {
                "source": self.name,
                "state": self.state,
                "captured": self.captured,
                "dropped": self.dropped,
                "skipped": self.skipped,
                "delivered": self.delivered,
                "reopens": self.reopens,
                "last_error": self.last_error,
                "finished": self.finished,
            }

    def stop(self, timeout_s: float = 5.0) -> None:
        """Set `stop_event`, join the thread (up to `timeout_s` seconds), then `close`."""
        self.stop_event.set()
        with self._cond:
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
            if thread.is_alive():
                # It is stuck in a driver call; it releases the source itself when it returns.
                logger.warning("capture thread of %s did not stop within %.1f s", self.name, timeout_s)
                return
        self.close()

    def close(self) -> None:
        """Release the source (safe to call twice). Call `stop` first when the thread runs."""
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            self.stop()
            return
        self._close_source()

    def __enter__(self) -> CaptureThread:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- producer side -------------------------------------------------------------------
    def _install(self, source: FrameSource) -> None:
        with self._cond:
            self._source = source
        self.live = bool(source.live)
        self._rebase = self._last is not None
        self._pass_frames = 0

    def _close_source(self) -> None:
        with self._cond:
            source, self._source = self._source, None
        if source is not None:
            _close_quietly(source)

    def _run(self) -> None:
        try:
            self._read_loop()
        except BaseException:  # only a bug in this class gets here: say so, never die silently
            logger.exception("capture thread of %s crashed", self.name)
            with self._cond:
                self.state = "failed"
        finally:
            self._close_source()
            with self._cond:
                self.finished = True
                if self.state != "failed":
                    self.state = "finished"
                self._cond.notify_all()

    def _read_loop(self) -> None:
        while not self.stop_event.is_set():
            with self._cond:
                source = self._source
            if source is None:
                if not self._reopen():
                    return
                continue
            try:
                if self._deferring(source):
                    source.grab()  # type: ignore[attr-defined]
                    if self._clock() + 1.0 / (source.nominal_fps or 20.0) < self._defer_until:
                        # the next frame also arrives before anyone wants one: this one would be
                        # replaced, so it is not decoded
                        with self._cond:
                            self.dropped += 1
                            self.skipped += 1
                        continue
                    frame = source.retrieve()  # type: ignore[attr-defined]
                else:
                    frame = source.read()
                if frame is None:
                    if not self._end_of_source():
                        return
                    continue
                self._deliver(self._continue_timeline(frame))
            except Exception as exc:  # noqa: BLE001 - any failure of a device, decoder or this loop → reopen
                self._fail(exc)

    def _deferring(self, source: FrameSource) -> bool:
        """The consumer deferred and the live source can grab without decoding: each frame is
        then grabbed, and decoded only if it is the last to arrive before the deferral ends."""
        return self.live and self._clock() < self._defer_until and callable(getattr(source, "grab", None))

    def _continue_timeline(self, frame: Frame) -> Frame:
        """Make `Frame.index` (and `Frame.t` of files) run on across loops and reopens."""
        if self._rebase and self._last is not None:
            self._index_shift = self._last.index + 1 - frame.index
            if self.live:
                self._t_shift = 0.0  # monotonic arrival time needs no help
            else:
                fps = getattr(self._source, "nominal_fps", None)
                step = 1.0 / fps if fps else 0.04
                self._t_shift = self._last.t + step - frame.t
        self._rebase = False
        if self._index_shift or self._t_shift:
            frame = dataclasses.replace(frame, t=frame.t + self._t_shift, index=frame.index + self._index_shift)
        self._last = frame
        self._pass_frames += 1
        return frame

    def _deliver(self, frame: Frame) -> None:
        paced = self.realtime and not self.live
        if paced and self._pace(frame):
            return  # stopped while waiting
        with self._cond:
            if not self.live and not self.realtime:
                # Back-pressure: this frame is decoded already (overlapping the consumer's work);
                # it waits until the consumer took the previous one.
                while self._slot is not None and not self.stop_event.is_set():
                    self._cond.wait(_WAIT_SLICE_S)
            if self.stop_event.is_set():
                return
            if self._slot is not None:
                self.dropped += 1
            self._slot = frame
            self.captured += 1
            self._cond.notify_all()
        if self._recovering:
            self._recovered()

    def _pace(self, frame: Frame) -> bool:
        """Wait until `frame` is due; True when stopped meanwhile."""
        now = self._clock()
        if self._pace_origin is None:
            self._pace_origin = (now, frame.t)
            return False
        due = self._pace_origin[0] + (frame.t - self._pace_origin[1])
        delay = due - now
        if delay > 0:
            return self._wait(delay)
        if delay < -MAX_PACING_LAG_S:
            self._pace_origin = (now, frame.t)
        return False

    def _wait(self, seconds: float) -> bool:
        if self._sleep is None:
            return self.stop_event.wait(seconds)
        self._sleep(seconds)
        return self.stop_event.is_set()

    def _end_of_source(self) -> bool:
        """The source ran out: True to go on (looping), False when the stream is over."""
        if not self.loop:
            logger.info("%s ended after %d frames", self.name, self.captured)
            return False
        if self._pass_frames == 0:
            raise SourceError(f"{self.name} ended without delivering a frame")
        logger.debug("%s ended; looping", self.name)
        self._close_source()
        source = self._factory()
        _open_or_close(source)
        self._install(source)
        return True

    def _fail(self, exc: BaseException) -> None:
        with self._cond:
            self.last_error = str(exc) or type(exc).__name__
            first = self.state != "reconnecting"
            self.state = "reconnecting"
        if first:
            self._failed_at = time.monotonic()
            logger.warning(
                "source %s failed: %s; reopening with back-off (%.1f s, up to %.0f s between attempts)",
                self.name,
                exc,
                self.backoff_initial_s,
                self.reopen_backoff_max_s,
                exc_info=not isinstance(exc, EdgeFerError),  # a bug deserves its traceback
            )
        else:
            logger.debug("source %s failed again: %s", self.name, exc)
        self._recovering = True
        self._pace_origin = None  # wall time jumped: pace anew from the next frame
        self._close_source()

    def _backoff_s(self) -> float:
        delay = self.backoff_initial_s * 2.0 ** min(self._attempt, 30)
        # Jitter: many devices restarting after a power cut should not retry in lock-step.
        return min(self.reopen_backoff_max_s, delay * random.uniform(0.8, 1.2))

    def _reopen(self) -> bool:
        """Reopen with back-off until it works (True), or stop / give up (False)."""
        while not self.stop_event.is_set():
            if self.max_reopen_attempts is not None and self._attempt >= self.max_reopen_attempts:
                logger.error("source %s: giving up after %d reopen attempts; last error: %s", self.name, self._attempt, self.last_error)
                with self._cond:
                    self.state = "failed"
                return False
            if self._wait(self._backoff_s()):
                return False
            self._attempt += 1
            try:
                source = self._factory()
            except Exception as exc:  # noqa: BLE001 - e.g. the file is gone: retry later
                self._attempt_failed(exc)
                continue
            try:
                source.open()
            except Exception as exc:  # noqa: BLE001 - retry later
                _close_quietly(source)
                self._attempt_failed(exc)
                continue
            self._install(source)
            logger.debug("source %s reopened (attempt %d)", self.name, self._attempt)
            return True
        return False

    def _attempt_failed(self, exc: BaseException) -> None:
        with self._cond:
            self.last_error = str(exc) or type(exc).__name__
        logger.debug("reopen attempt %d of %s failed: %s", self._attempt, self.name, exc)

    def _recovered(self) -> None:
        """The first frame after a failure: only now does the source count as back."""
        with self._cond:
            self.state = "running"
            self.reopens += 1
        logger.info("source %s is back after %.1f s (%d reopen attempt(s))", self.name, time.monotonic() - self._failed_at, max(self._attempt, 1))
        self._recovering = False
        self._attempt = 0


def _open_or_close(source: FrameSource) -> None:
    """Open `source`; if that fails, release whatever it half-acquired and re-raise."""
    try:
        source.open()
    except BaseException:
        _close_quietly(source)
        raise


def _close_quietly(source: FrameSource) -> None:
    try:
        source.close()
    except Exception:  # noqa: BLE001 - a failing close must not hide the failure that led here
        logger.debug("closing %s failed", getattr(source, "name", source), exc_info=True)
