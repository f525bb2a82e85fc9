"""The service around the pipeline: start-up and shutdown, the frame loop, remote control and health."""

from __future__ import annotations

from edge_fer.runner.loop import Runner, RunReport, preflight, process_age_s, rss_mb, run

__all__ = ["RunReport", "Runner", "preflight", "process_age_s", "rss_mb", "run"]
