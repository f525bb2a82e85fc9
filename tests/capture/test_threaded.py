"""The capture thread: every frame without pacing, newest-only with drops, reopen after failure."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge_fer.capture import CaptureThread, source_from_spec
from edge_fer.capture.base import SourceBase
from edge_fer.config import SourceConfig
from edge_fer.errors import SourceError
from edge_fer.types import Frame
from tests.conftest import wait_until


def test_realtime_off_delivers_every_frame_once_in_order(models_dir: Path) -> None:
    path = str(models_dir / "single_face.mp4")
    capture = CaptureThread(lambda: source_from_spec(path, SourceConfig(), models_dir), realtime=False)
    capture.start()
    frames = []
    while (frame := capture.get(timeout_s=5)) is not None:
        frames.append(frame.index)
    capture.stop()
    assert frames == list(range(72))
    assert capture.dropped == 0 and capture.finished and capture.state == "finished"


def test_realtime_file_is_paced_and_drops_for_a_slow_consumer(models_dir: Path) -> None:
    path = str(models_dir / "single_face.mp4")
    capture = CaptureThread(lambda: source_from_spec(path, SourceConfig(), models_dir), realtime=True)
    capture.start()
    seen = []
    while (frame := capture.get(timeout_s=5)) is not None:
        seen.append(frame)
        time.sleep(0.1)  # a pipeline three frames slow: the camera-like source moves on
    capture.stop()
    indices = [f.index for f in seen]
    assert indices == sorted(indices) and len(indices) < 72
    assert capture.dropped > 0 and capture.dropped + len(indices) == capture.captured
    assert all(b.t > a.t for a, b in zip(seen, seen[1:]))


class FlakyCamera(SourceBase):
    """A live source that breaks after `fail_after` frames; `broken` controls reopening."""

    live = True
    broken = threading.Event()
    opened = 0

    def __init__(self, fail_after: int) -> None:
        self.name = "flaky"
        self.fail_after = fail_after
        self.count = 0

    def open(self) -> None:
        if FlakyCamera.broken.is_set():
            raise SourceError("cable unplugged")
        FlakyCamera.opened += 1

    def read(self) -> Frame | None:
        if self.count >= self.fail_after:
            FlakyCamera.broken.set()
            raise SourceError("read failed")
        self.count += 1
        time.sleep(0.002)
        return Frame(np.zeros((8, 8, 3), np.uint8), time.monotonic(), self.count)

    def close(self) -> None:
        pass


def test_failed_source_is_reopened_with_backoff(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edge_fer")
    FlakyCamera.broken.clear()
    FlakyCamera.opened = 0
    capture = CaptureThread(lambda: FlakyCamera(fail_after=20), realtime=True, backoff_initial_s=0.05, reopen_backoff_max_s=0.2)
    capture.start()
    assert wait_until(lambda: capture.state == "reconnecting")
    assert wait_until(lambda: capture.last_error == "cable unplugged")  # retries keep failing while unplugged
    FlakyCamera.broken.clear()  # plugged back in
    assert wait_until(lambda: capture.state == "running" and capture.reopens == 1)
    assert capture.get(timeout_s=5) is not None
    capture.stop()
    assert FlakyCamera.opened >= 2
    assert caplog.text.count("failed: read failed") == 1  # logged once, not per retry
    assert "is back after" in caplog.text


def test_missing_file_fails_at_start_not_in_the_thread(tmp_path: Path, models_dir: Path) -> None:
    """A source that cannot be opened at all is reported to the caller (exit code 3)."""
    clip = tmp_path / "clip.mp4"
    shutil.copy(models_dir / "single_face.mp4", clip)
    factory = lambda: source_from_spec(str(clip), SourceConfig(), models_dir)  # noqa: E731
    clip.unlink()
    with pytest.raises(SourceError, match="no such file"):
        CaptureThread(factory).start()


def test_stop_ends_a_blocked_get() -> None:
    FlakyCamera.broken.clear()
    capture = CaptureThread(lambda: FlakyCamera(fail_after=10**9), realtime=True)
    capture.start()
    capture.stop()
    assert capture.get(timeout_s=5) is None
    assert capture.stop_event.is_set()
