"""Temporal stages: tracking, per-track smoothing, per-track action-unit baselines, micro-expression spotting, window aggregation."""

from __future__ import annotations

from edge_fer.temporal.smoothing import ProbabilitySmoother
from edge_fer.temporal.tracker import Tracker, iou_matrix

__all__ = ["ProbabilitySmoother", "Tracker", "iou_matrix"]
