"""The capture thread: every frame without pacing, newest-only with drops, pacing, looping, reopening."""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edge_fer.capture import CaptureThread, FrameSource, SourceBase, source_from_spec
from edge_fer.capture.opencv import OpenCVSource
from edge_fer.config import SourceConfig
from edge_fer.errors import SourceError
from edge_fer.types import Frame
from tests.conftest import wait_until
from tests.fakes import FakeCameraSystem


def file_factory(path: Path, models_dir: Path, cfg: SourceConfig | None = None) -> Callable[[], FrameSource]:
    return lambda: source_from_spec(str(path), cfg or SourceConfig(), models_dir)


def drain(capture: CaptureThread, timeout_s: float = 10.0) -> list[Frame]:
    frames = []
    while (frame := capture.get(timeout_s=timeout_s)) is not None:
        frames.append(frame)
    return frames


class VirtualClock:
    """Time that only moves when the capture thread sleeps: pacing without wall-clock asserts."""

    def __init__(self) -> None:
        self._now = 100.0
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def now(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
            self.sleeps.append(seconds)


class GatedCamera(SourceBase):
    """A live source that delivers one frame per permit the test releases (a camera's clock)."""

    live = True
    finite = False

    def __init__(self, stop: threading.Event) -> None:
        self.name = "gated"
        self.gate = threading.Semaphore(0)
        self.stop = stop
        self.index = 0

    def open(self) -> None:
        pass

    def read(self) -> Frame | None:
        while not self.gate.acquire(timeout=0.05):
            if self.stop.is_set():
                return None
        frame = Frame(np.full((8, 8, 3), self.index % 256, np.uint8), time.monotonic(), self.index)
        self.index += 1
        return frame

    def close(self) -> None:
        pass


# -- delivery modes --------------------------------------------------------------------------
def test_realtime_off_delivers_every_frame_once_in_order(models_dir: Path) -> None:
    capture = CaptureThread(file_factory(models_dir / "single_face.mp4", models_dir), realtime=False)
    with capture:
        frames = drain(capture)
        assert capture.finished and capture.state == "finished"
    assert [f.index for f in frames] == list(range(72))
    np.testing.assert_allclose([f.t for f in frames], np.arange(72) / 30.0)
    assert all(f.pixels.shape == (360, 640, 3) for f in frames)
    assert capture.dropped == 0 and capture.captured == capture.delivered == 72
    assert capture.get(timeout_s=0.01) is None  # stays drained


def test_realtime_off_decodes_ahead_while_the_consumer_works(models_dir: Path) -> None:
    """Back-pressure must not serialise decoding and inference."""
    capture = CaptureThread(file_factory(models_dir / "single_face.mp4", models_dir), realtime=False)
    with capture:
        first = capture.get(timeout_s=10)
        assert first is not None and first.index == 0
        # While the consumer "works" on frame 0, frame 1 is decoded and waiting for it...
        assert wait_until(lambda: capture.captured == 2, 10)
        # ...and the reader holds frame 2 instead of overwriting frame 1.
        second = capture.get(timeout_s=10)
        assert second is not None and second.index == 1 and capture.dropped == 0


def test_live_source_keeps_only_the_newest_frame_and_counts_drops() -> None:
    stop = threading.Event()
    camera = GatedCamera(stop)
    capture = CaptureThread(lambda: camera, realtime=False, stop_event=stop)  # realtime=False: still newest-only for a camera
    with capture:
        camera.gate.release(5)  # the camera delivers 5 frames while the consumer is busy
        assert wait_until(lambda: capture.captured == 5, 10)
        frame = capture.get(timeout_s=5)
        assert frame is not None and frame.index == 4  # the newest, no backlog
        assert capture.dropped == 4 and capture.stats()["dropped"] == 4
        assert capture.get(timeout_s=0.05) is None  # nothing new yet: timeout, not a stale frame
        camera.gate.release(1)
        frame = capture.get(timeout_s=5)
        assert frame is not None and frame.index == 5 and capture.dropped == 4
    assert stop.is_set()


class GrabbingCamera(GatedCamera):
    """A camera that takes a frame off the device (`grab`) apart from decoding it
    (`retrieve`), as OpenCV's cameras and streams do."""

    nominal_fps = 30.0

    def __init__(self, stop: threading.Event, clock: dict[str, float]) -> None:
        super().__init__(stop)
        self.clock = clock
        self.decoded = 0
        self.grabbed: int | None = None

    def grab(self) -> None:
        while not self.gate.acquire(timeout=0.05):
            if self.stop.is_set():
                raise SourceError("stopped")
        self.grabbed, self.index = self.index, self.index + 1
        self.clock["now"] += 1 / 30  # each frame arrives one interval later

    def retrieve(self) -> Frame:
        assert self.grabbed is not None
        self.decoded += 1
        return Frame(np.full((8, 8, 3), self.grabbed % 256, np.uint8), time.monotonic(), self.grabbed)


def test_frames_arriving_while_the_consumer_defers_are_not_decoded() -> None:
    """A consumer waiting on purpose (thermal cap, pause) says until when: the camera's frames
    that would be replaced before then are grabbed but not decoded, counted as dropped; the last
    one to arrive before that time is decoded and handed over."""
    stop = threading.Event()
    clock = {"now": 100.0}
    camera = GrabbingCamera(stop, clock)
    capture = CaptureThread(lambda: camera, stop_event=stop, clock=lambda: clock["now"])
    capture.defer(100.19)  # frames arrive at 100 + k/30: the 5th (100.167) is the last before
    with capture:
        camera.gate.release(5)
        frame = capture.get(timeout_s=5)
        assert frame is not None and frame.index == 4 and camera.decoded == 1
        assert capture.skipped == 4 and capture.dropped == 4 and capture.captured == 1
        assert capture.stats()["skipped"] == 4
        camera.gate.release(1)  # the deferral is over (100.2): frames are decoded as they come
        frame = capture.get(timeout_s=5)
        assert frame is not None and frame.index == 5 and capture.skipped == 4


def test_an_opencv_camera_grabs_without_decoding(models_dir: Path) -> None:
    """The real OpenCV source: `grab` takes frames without decoding, `retrieve` decodes the last
    one, and the index counts the frames that were never decoded."""
    source = OpenCVSource(str(models_dir / "single_face.mp4"), SourceConfig(), live=True, name="as-camera")
    with source:
        first = source.read()
        source.grab()
        source.grab()
        third = source.retrieve()
        with pytest.raises(SourceError, match="nothing grabbed"):
            source.retrieve()
    assert first is not None and first.pixels.shape == third.pixels.shape == (360, 640, 3)
    assert (first.index, third.index) == (0, 2)
    with pytest.raises(SourceError, match="not open"):
        source.grab()


def test_realtime_file_is_paced_at_its_own_frame_rate(models_dir: Path) -> None:
    clock = VirtualClock()
    capture = CaptureThread(file_factory(models_dir / "single_face.mp4", models_dir), realtime=True, clock=clock.now, sleep=clock.sleep)
    start = clock.now()
    received: list[tuple[float, Frame]] = []
    with capture:
        while (frame := capture.get(timeout_s=10)) is not None:
            received.append((clock.now() - start, frame))
    # No frame is handed over before its presentation time, measured from the first frame.
    assert all(elapsed >= frame.t - 1e-9 for elapsed, frame in received)
    # The reader waited exactly until each frame was due: the whole clip takes its duration.
    assert clock.now() - start == pytest.approx(71 / 30.0)
    assert all(0 < s <= 1 / 30.0 + 1e-9 for s in clock.sleeps)
    indices = [f.index for _, f in received]
    assert indices == sorted(set(indices)) and indices[-1] == 71
    assert capture.captured == 72 and capture.delivered + capture.dropped == 72


def test_realtime_file_drops_frames_for_a_slow_consumer(models_dir: Path) -> None:
    capture = CaptureThread(file_factory(models_dir / "single_face.mp4", models_dir), realtime=True)
    seen = []
    with capture:
        while (frame := capture.get(timeout_s=10)) is not None:
            seen.append(frame)
            time.sleep(0.1)  # a pipeline three frames slow: the camera-like source moves on
    indices = [f.index for f in seen]
    assert indices == sorted(set(indices)) and len(indices) < 72
    assert capture.dropped > 0 and capture.dropped + len(indices) == capture.captured == 72
    assert all(b.t > a.t for a, b in zip(seen, seen[1:]))


def test_thread_level_loop_keeps_time_and_index_running(models_dir: Path) -> None:
    capture = CaptureThread(file_factory(models_dir / "single_face.mp4", models_dir), realtime=False, loop=True)
    with capture:
        frames = [capture.get(timeout_s=10) for _ in range(150)]
        assert capture.state == "running" and not capture.finished and capture.reopens == 0
    assert [f.index for f in frames if f] == list(range(150))
    np.testing.assert_allclose([f.t for f in frames if f], np.arange(150) / 30.0, atol=1e-9)


def test_demo_loops_through_the_thread(models_dir: Path) -> None:
    capture = CaptureThread(lambda: source_from_spec("demo", SourceConfig(), models_dir), realtime=False)
    with capture:
        frames = [capture.get(timeout_s=10) for _ in range(480)]  # the demo has 472 frames
    times = [f.t for f in frames if f is not None]
    assert len(times) == 480 and all(b > a for a, b in zip(times, times[1:]))


# -- failures --------------------------------------------------------------------------------
def test_missing_file_fails_at_start_not_in_the_thread(tmp_path: Path, models_dir: Path) -> None:
    """A source that cannot be opened at all is reported to the caller (exit code 3)."""
    clip = tmp_path / "clip.mp4"
    shutil.copy(models_dir / "single_face.mp4", clip)
    factory = file_factory(clip, models_dir)
    clip.unlink()
    capture = CaptureThread(factory)
    with pytest.raises(SourceError, match="no such file") as info:
        capture.start()
    assert info.value.exit_code == 3 and capture.state == "idle"


def test_missing_camera_fails_at_start(models_dir: Path) -> None:
    with pytest.raises(SourceError, match="v4l2-ctl --list-devices"):
        CaptureThread(lambda: source_from_spec("v4l2:9", SourceConfig(), models_dir)).start()


def test_removed_file_is_reopened_when_restored(tmp_path: Path, models_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="edge_fer")
    clip = tmp_path / "clip.mp4"
    shutil.copy(models_dir / "single_face.mp4", clip)
    capture = CaptureThread(file_factory(clip, models_dir), realtime=False, loop=True, backoff_initial_s=0.02, reopen_backoff_max_s=0.1)
    with capture:
        first = [capture.get(timeout_s=10) for _ in range(10)]
        clip.unlink()  # removed mid-run: the next pass cannot open it
        rest: list[Frame] = []
        while len(rest) < 62:
            frame = capture.get(timeout_s=10)
            assert frame is not None
            rest.append(frame)
        assert wait_until(lambda: capture.state == "reconnecting", 10)
        assert wait_until(lambda: "no such file" in (capture.last_error or "") and caplog.text.count("reopen attempt") >= 2, 10)
        assert capture.get(timeout_s=0.05) is None and not capture.finished  # waiting, not finished
        shutil.copy(models_dir / "single_face.mp4", clip)  # restored
        assert wait_until(lambda: capture.state == "running" and capture.reopens == 1, 10)
        after = capture.get(timeout_s=10)
    frames = [f for f in first if f] + rest
    assert [f.index for f in frames] == list(range(72))
    assert after is not None and after.index == 72 and after.t == pytest.approx(72 / 30.0)  # time goes on
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "failed" in warnings[0].getMessage()  # once, not per retry
    assert sum("is back after" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO) == 1


class FlakyCamera(SourceBase):
    """A live source that breaks after `fail_after` frames; `broken` keeps it from reopening."""

    live = True
    broken = threading.Event()
    opened = 0

    def __init__(self, fail_after: int, error: type[Exception] = SourceError) -> None:
        self.name = "flaky"
        self.fail_after = fail_after
        self.error = error
        self.count = 0

    def open(self) -> None:
        if FlakyCamera.broken.is_set():
            raise SourceError("cable unplugged")
        FlakyCamera.opened += 1

    def read(self) -> Frame | None:
        if self.count >= self.fail_after:
            FlakyCamera.broken.set()
            raise self.error("read failed")
        self.count += 1
        time.sleep(0.002)  # the camera's frame interval
        return Frame(np.zeros((8, 8, 3), np.uint8), time.monotonic(), self.count - 1)

    def close(self) -> None:
        pass


@pytest.mark.parametrize("error", [SourceError, RuntimeError])  # a RuntimeError stands for any unexpected driver exception
def test_failed_source_is_reopened_with_backoff(caplog: pytest.LogCaptureFixture, error: type[Exception]) -> None:
    caplog.set_level(logging.INFO, logger="edge_fer")
    FlakyCamera.broken.clear()
    FlakyCamera.opened = 0
    capture = CaptureThread(lambda: FlakyCamera(fail_after=20, error=error), backoff_initial_s=0.05, reopen_backoff_max_s=0.2)
    with capture:
        assert wait_until(lambda: capture.state == "reconnecting")
        assert wait_until(lambda: capture.last_error == "cable unplugged")  # retries keep failing while unplugged
        assert capture.stats()["state"] == "reconnecting"
        FlakyCamera.broken.clear()  # plugged back in
        assert wait_until(lambda: capture.state == "running" and capture.reopens == 1)
        frame = capture.get(timeout_s=5)
        assert frame is not None and frame.index >= 20  # the index runs on across the reopen
        assert capture._thread is not None and capture._thread.is_alive() and capture._thread.daemon
    assert FlakyCamera.opened >= 2
    assert caplog.text.count("failed: read failed") == 1  # logged once, not per retry
    assert caplog.text.count("is back after") == 1
    assert ("Traceback" in caplog.text) == (error is RuntimeError)  # an unexpected error shows where it came from


def test_gives_up_after_max_reopen_attempts() -> None:
    FlakyCamera.broken.clear()
    capture = CaptureThread(lambda: FlakyCamera(fail_after=3), backoff_initial_s=0.01, reopen_backoff_max_s=0.02, max_reopen_attempts=3)
    with capture:
        assert wait_until(lambda: capture.finished, 10)
        assert capture.state == "failed" and capture.last_error == "cable unplugged"
        drain(capture, timeout_s=0.1)
        assert capture.get(timeout_s=0.01) is None
    FlakyCamera.broken.clear()


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    capture = CaptureThread(lambda: FlakyCamera(1), backoff_initial_s=0.5, reopen_backoff_max_s=3.0)
    delays = []
    for attempt in range(8):
        capture._attempt = attempt
        delays.append(capture._backoff_s())
    assert 0.4 <= delays[0] <= 0.6 and 0.8 <= delays[1] <= 1.2 and 1.6 <= delays[2] <= 2.4
    assert all(d <= 3.0 for d in delays) and delays[-1] >= 2.4


def test_stop_ends_a_blocked_get() -> None:
    stop = threading.Event()
    camera = GatedCamera(stop)
    capture = CaptureThread(lambda: camera, stop_event=stop)
    capture.start()
    result: list[Frame | None] = []
    waiter = threading.Thread(target=lambda: result.append(capture.get(timeout_s=30)))
    waiter.start()
    capture.stop()
    waiter.join(5)
    assert not waiter.is_alive() and result == [None]
    assert capture.get(timeout_s=5) is None and capture.finished and capture.state == "finished"


def test_stop_set_elsewhere_is_noticed() -> None:
    """The runner shares its stop_event with a signal handler that sets it without notifying us."""
    stop = threading.Event()
    capture = CaptureThread(lambda: GatedCamera(stop), stop_event=stop)
    capture.start()
    stop.set()
    assert capture.get(timeout_s=30) is None
    assert wait_until(lambda: capture.finished, 10)
    capture.stop()


def test_argument_validation() -> None:
    with pytest.raises(ValueError, match="reopen_backoff_max_s must be > 0"):
        CaptureThread(lambda: FlakyCamera(1), reopen_backoff_max_s=0)
    with pytest.raises(ValueError, match="max_reopen_attempts"):
        CaptureThread(lambda: FlakyCamera(1), max_reopen_attempts=0)


# -- the Pi camera through the thread --------------------------------------------------------
def test_picamera2_unplugged_mid_run_is_reopened(monkeypatch: pytest.MonkeyPatch, models_dir: Path) -> None:
    camera = FakeCameraSystem(models_dir / "single_face.jpg")
    monkeypatch.setitem(sys.modules, "picamera2", camera.module())
    cfg = SourceConfig(width=320, height=240)
    capture = CaptureThread(lambda: source_from_spec("picamera2", cfg, models_dir), backoff_initial_s=0.02, reopen_backoff_max_s=0.05)
    with capture:
        assert capture.get(timeout_s=10) is not None
        camera.fail_captures = 1
        assert wait_until(lambda: capture.reopens == 1 and capture.state == "running", 10)
        frame = capture.get(timeout_s=10)
        assert frame is not None and frame.pixels.shape == (240, 320, 3)
    # The failed camera was stopped and closed before a new one was opened; the last one on stop.
    calls = camera.calls
    assert calls.count("init:0") >= 2 and calls.count("close") == calls.count("init:0")
    second_init = [i for i, c in enumerate(calls) if c == "init:0"][1]
    assert calls[second_init - 2 : second_init] == ["stop", "close"]
    assert calls[-2:] == ["stop", "close"]
