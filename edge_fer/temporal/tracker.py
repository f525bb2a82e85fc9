"""Tracker: turns per-frame detections into tracks with ephemeral ids (IoU first, centroid fallback)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from edge_fer.types import Detections, Tracks


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``(n, 4)`` and ``(m, 4)`` xyxy boxes → ``(n, m)``."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


@dataclass
class _State:
    id: int
    box: np.ndarray
    keypoints: np.ndarray
    first_seen: float
    last_seen: float
    hits: int


class Tracker:
    """Greedy IoU tracker with a centroid fallback for fast motion at low frame rates.

    Call `update` once per processed frame, with ``None`` (or empty detections) when nothing
    was seen, so that tracks age by time. Ids are small integers that restart with each
    `Tracker`: they are never linked across sessions and identify nobody.

    Args:
        iou_threshold: minimum IoU (0–1) between a track's last box and a detection to match.
        max_missed_s: a track not matched for longer than this (s) ends; 0 ends it at once.
        centroid_factor: a pair with too little IoU still matches when the centres are closer
            than this fraction of the track's box diagonal (0 disables the fallback).
    """

    def __init__(self, iou_threshold: float = 0.3, max_missed_s: float = 0.5, centroid_factor: float = 0.5) -> None:
        if not 0.0 < iou_threshold < 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1), got {iou_threshold}")
        if max_missed_s < 0:
            raise ValueError(f"max_missed_s must be >= 0, got {max_missed_s}")
        if centroid_factor < 0:
            raise ValueError(f"centroid_factor must be >= 0, got {centroid_factor}")
        self.iou_threshold = iou_threshold
        self.max_missed_s = max_missed_s
        self.centroid_factor = centroid_factor
        self._ids = itertools.count(1)
        self._tracks: list[_State] = []
        self._last_t: float | None = None

    def update(self, detections: Detections | None, t: float) -> Tracks:
        """Match `detections` (seen at time `t`, s) to live tracks; returns the live tracks.

        Raises:
            ValueError: `t` is earlier than the previous update's time.
        """
        if self._last_t is not None and t < self._last_t:
            raise ValueError(f"time went backwards: {t} < {self._last_t}")
        self._last_t = t
        dets = detections if detections is not None else Detections.empty()
        matched_tracks, matched_dets = self._match(dets)
        seen_ids: set[int] = set()
        for ti, di in zip(matched_tracks, matched_dets):
            state = self._tracks[ti]
            state.box, state.keypoints = dets.boxes[di].copy(), dets.keypoints[di].copy()
            state.last_seen, state.hits = t, state.hits + 1
            seen_ids.add(state.id)
        for di in sorted(set(range(len(dets))) - set(matched_dets)):
            state = _State(next(self._ids), dets.boxes[di].copy(), dets.keypoints[di].copy(), t, t, 1)
            self._tracks.append(state)
            seen_ids.add(state.id)
        ended = tuple(s.id for s in self._tracks if t - s.last_seen > self.max_missed_s)
        self._tracks = [s for s in self._tracks if s.id not in ended]
        return self._snapshot(seen_ids, ended)

    def _match(self, dets: Detections) -> tuple[list[int], list[int]]:
        if not self._tracks or len(dets) == 0:
            return [], []
        boxes = np.stack([s.box for s in self._tracks])
        score = iou_matrix(boxes, dets.boxes)
        if self.centroid_factor > 0:
            ct = (boxes[:, :2] + boxes[:, 2:]) / 2
            cd = (dets.boxes[:, :2] + dets.boxes[:, 2:]) / 2
            dist = np.linalg.norm(ct[:, None] - cd[None], axis=2)
            diag = np.linalg.norm(boxes[:, 2:] - boxes[:, :2], axis=1)[:, None]
            near = dist < self.centroid_factor * diag
            # A centroid-only match ranks below any IoU match, closer first.
            fallback = np.where(near, self.iou_threshold * 0.5 * (1 - dist / np.maximum(diag, 1e-6)), 0.0)
            score = np.where(score >= self.iou_threshold, score, np.maximum(fallback, 0.0))
        tracks: list[int] = []
        detections: list[int] = []
        # Greedy assignment by descending score: optimal enough for the handful of faces per frame.
        order = np.dstack(np.unravel_index(np.argsort(-score, axis=None), score.shape))[0]
        used_t: set[int] = set()
        used_d: set[int] = set()
        for ti, di in order:
            if score[ti, di] <= 0:
                break
            if ti in used_t or di in used_d:
                continue
            used_t.add(int(ti))
            used_d.add(int(di))
            tracks.append(int(ti))
            detections.append(int(di))
        return tracks, detections

    def _snapshot(self, seen_ids: set[int], ended: tuple[int, ...]) -> Tracks:
        if not self._tracks:
            return Tracks.empty(ended=ended)
        return Tracks(
            ids=np.array([s.id for s in self._tracks], np.int64),
            boxes=np.stack([s.box for s in self._tracks]).astype(np.float32),
            keypoints=np.stack([s.keypoints for s in self._tracks]).astype(np.float32),
            first_seen=np.array([s.first_seen for s in self._tracks], np.float64),
            hits=np.array([s.hits for s in self._tracks], np.int64),
            seen=np.array([s.id in seen_ids for s in self._tracks], bool),
            ended=ended,
        )

    def close_all(self) -> tuple[int, ...]:
        """End every live track (at shutdown) and return their ids."""
        ended = tuple(s.id for s in self._tracks)
        self._tracks = []
        return ended
