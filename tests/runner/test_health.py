"""Health edges that are pure: the frame-rate meter behind the stats' fps."""

from __future__ import annotations

import doctest

import pytest

from edge_fer.runner import health
from edge_fer.runner.health import FrameRateMeter


def test_no_rate_until_an_interval_of_frames_has_passed() -> None:
    meter = FrameRateMeter(min_interval_s=2.0)
    assert meter.rate(100.0) is None  # no frame yet
    meter.frame(100.0)  # the first frame starts the clock: start-up time is not frame time
    assert meter.rate(100.0) is None  # what the first stats, right after it, used to divide by
    for i in range(1, 25):
        meter.frame(100.0 + i / 24)
    assert meter.rate(101.0) is None  # 1 s: too short, and the interval goes on
    for i in range(25, 49):
        meter.frame(100.0 + i / 24)
    assert meter.rate(102.0) == pytest.approx(24.0)


def test_each_rate_covers_the_interval_since_the_previous_one() -> None:
    meter = FrameRateMeter(min_interval_s=1.0)
    meter.frame(0.0)
    for i in range(1, 31):
        meter.frame(i / 30)  # 30 frames/s for 1 s
    assert meter.rate(1.0) == pytest.approx(30.0)
    for i in range(1, 11):
        meter.frame(1.0 + i / 5)  # then 5 frames/s (a hot SoC, a slow stage)
    assert meter.rate(3.0) == pytest.approx(5.0)
    assert meter.rate(4.0) == 0.0  # paused or a stalled camera: no frames, an honest zero


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_min_interval_must_be_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="min_interval_s"):
        FrameRateMeter(min_interval_s=bad)


def test_docstring_example_runs() -> None:
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    for test in finder.find(health.FrameRateMeter, "FrameRateMeter", globs={"FrameRateMeter": FrameRateMeter}):
        runner.run(test)
    assert runner.summarize(verbose=False).attempted >= 2 and runner.failures == 0
