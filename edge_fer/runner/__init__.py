"""The service around the pipeline: start-up and shutdown, the frame loop, remote control and health."""

from __future__ import annotations

from edge_fer.runner.loop import Runner, RunReport
from edge_fer.runner.startup import preflight, run
from edge_fer.runner.stats import process_age_s, rss_mb, rss_split_mb

__all__ = ["RunReport", "Runner", "preflight", "process_age_s", "rss_mb", "rss_split_mb", "run"]
