"""Tracker: turns per-frame detections into tracks with ephemeral ids (IoU first, centroid fallback)."""

from __future__ import annotations

import itertools
import math
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
    score_sum: float = 0.0
    confirmed: bool = False
    score: float = 0.0


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
        confirm_hits: a new track is tentative (`Tracks.confirmed` False: not a person yet)
            until it has this many detections...
        confirm_s: ...spread over at least this many seconds...
        confirm_score: ...with a mean detector score of at least this. False faces (lettering,
            patterns, a passing shape) come and go at scores just over the detector's
            threshold; a real face is found again and again, and scores higher.
            ``confirm_hits = 1`` confirms every track at once.
    """

    def __init__(
        self,
        iou_threshold: float = 0.3,
        max_missed_s: float = 0.5,
        centroid_factor: float = 0.5,
        confirm_hits: int = 1,
        confirm_s: float = 0.0,
        confirm_score: float = 0.0,
    ) -> None:
        if not 0.0 < iou_threshold < 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1), got {iou_threshold}")
        if max_missed_s < 0:
            raise ValueError(f"max_missed_s must be >= 0, got {max_missed_s}")
        if centroid_factor < 0:
            raise ValueError(f"centroid_factor must be >= 0, got {centroid_factor}")
        if confirm_hits < 1:
            raise ValueError(f"confirm_hits must be >= 1, got {confirm_hits}")
        if confirm_s < 0:
            raise ValueError(f"confirm_s must be >= 0, got {confirm_s}")
        if not 0.0 <= confirm_score < 1.0:
            raise ValueError(f"confirm_score must be in [0, 1), got {confirm_score}")
        self.confirm_hits, self.confirm_s, self.confirm_score = confirm_hits, confirm_s, confirm_score
        self.iou_threshold = iou_threshold
        self.max_missed_s = max_missed_s
        self.centroid_factor = centroid_factor
        self._ids = itertools.count(1)
        self._tracks: list[_State] = []
        self._last_t: float | None = None

    def fresh(self) -> Tracker:
        """A tracker with these settings and no tracks yet (ids from 1 again)."""
        return Tracker(self.iou_threshold, self.max_missed_s, self.centroid_factor, self.confirm_hits, self.confirm_s, self.confirm_score)

    def update(self, detections: Detections | None, t: float) -> Tracks:
        """Match `detections` (seen at time `t`, s) to live tracks; returns the live tracks.

        Raises:
            ValueError: `t` is earlier than the previous update's time.
        """
        if self._last_t is not None and t < self._last_t:
            raise ValueError(f"time went backwards: {t} < {self._last_t}")
        self._last_t = t
        dets = detections if detections is not None else Detections.empty()
        pairs = self._match(dets.boxes) if self._tracks and len(dets) else []
        seen_ids: set[int] = set()
        matched_dets: set[int] = set()
        for ti, di in pairs:
            state = self._tracks[ti]
            # Detections are never modified after they are made: a view is as good as a copy.
            state.box, state.keypoints = dets.boxes[di], dets.keypoints[di]
            state.last_seen, state.hits = t, state.hits + 1
            state.score = float(dets.scores[di])
            state.score_sum += state.score
            self._confirm(state)
            seen_ids.add(state.id)
            matched_dets.add(di)
        for di in range(len(dets)):
            if di not in matched_dets:
                score = float(dets.scores[di])
                state = _State(next(self._ids), dets.boxes[di], dets.keypoints[di], t, t, 1, score, score=score)
                self._confirm(state)
                self._tracks.append(state)
                seen_ids.add(state.id)
        ended = tuple(s.id for s in self._tracks if t - s.last_seen > self.max_missed_s)
        if ended:
            self._tracks = [s for s in self._tracks if s.id not in ended]
        return self._snapshot(seen_ids, ended)

    def _confirm(self, state: _State) -> None:
        if not state.confirmed:
            state.confirmed = (
                state.hits >= self.confirm_hits
                and state.last_seen - state.first_seen >= self.confirm_s
                and state.score_sum / state.hits >= self.confirm_score
            )

    def _scores(self, boxes: np.ndarray) -> list[tuple[float, int, int]]:
        """``(score, track, detection)`` of every pair that may match: IoU at or above
        `iou_threshold`, else (with the centroid fallback) a score below any IoU match that
        grows as the centres get closer, within `centroid_factor` of the track's diagonal.

        Plain float arithmetic: for the handful of faces of a frame it is several times
        cheaper than numpy calls on tiny arrays; `_scores_vectorised` takes over for crowds."""
        if len(self._tracks) * len(boxes) > 64:
            return self._scores_vectorised(boxes)
        out = []
        threshold, factor = self.iou_threshold, self.centroid_factor
        dets = boxes.tolist()
        for ti, state in enumerate(self._tracks):
            ax1, ay1, ax2, ay2 = state.box.tolist()
            area_a = (ax2 - ax1) * (ay2 - ay1)
            diag = math.hypot(ax2 - ax1, ay2 - ay1)
            acx, acy = (ax1 + ax2) / 2, (ay1 + ay2) / 2
            for di, (bx1, by1, bx2, by2) in enumerate(dets):
                inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
                union = area_a + (bx2 - bx1) * (by2 - by1) - inter
                iou = inter / max(union, 1e-9) if union > 0 else 0.0
                if iou >= threshold:
                    out.append((iou, ti, di))
                elif factor > 0:
                    dist = math.hypot((bx1 + bx2) / 2 - acx, (by1 + by2) / 2 - acy)
                    if dist < factor * diag:
                        out.append((threshold * 0.5 * (1 - dist / max(diag, 1e-6)), ti, di))
        return out

    def _scores_vectorised(self, boxes: np.ndarray) -> list[tuple[float, int, int]]:
        """`_scores` for many tracks and faces at once (the same rule, with numpy)."""
        tracks = np.stack([s.box for s in self._tracks]).astype(np.float64)
        dets = boxes.astype(np.float64)
        iou = iou_matrix(tracks, dets).astype(np.float64)
        score = np.where(iou >= self.iou_threshold, iou, 0.0)
        if self.centroid_factor > 0:
            ct = (tracks[:, :2] + tracks[:, 2:]) / 2
            cd = (dets[:, :2] + dets[:, 2:]) / 2
            dist = np.linalg.norm(ct[:, None] - cd[None], axis=2)
            diag = np.linalg.norm(tracks[:, 2:] - tracks[:, :2], axis=1)[:, None]
            fallback = np.where(dist < self.centroid_factor * diag, self.iou_threshold * 0.5 * (1 - dist / np.maximum(diag, 1e-6)), 0.0)
            score = np.where(iou >= self.iou_threshold, iou, np.maximum(fallback, 0.0))
        ti, di = np.nonzero(score > 0)
        return list(zip(score[ti, di].tolist(), ti.tolist(), di.tolist()))

    def _match(self, boxes: np.ndarray) -> list[tuple[int, int]]:
        """Greedy assignment by descending score (ties: earlier track, then earlier detection):
        optimal enough for the handful of faces per frame."""
        used_t: set[int] = set()
        used_d: set[int] = set()
        pairs = []
        for score, ti, di in sorted(self._scores(boxes), key=lambda p: (-p[0], p[1], p[2])):
            if score <= 0:
                break
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            pairs.append((ti, di))
        return pairs

    def _snapshot(self, seen_ids: set[int], ended: tuple[int, ...]) -> Tracks:
        tracks = self._tracks
        if not tracks:
            return Tracks.empty(ended=ended)
        return Tracks(
            ids=np.array([s.id for s in tracks], np.int64),
            boxes=np.array([s.box for s in tracks], np.float32),
            keypoints=np.array([s.keypoints for s in tracks], np.float32),
            first_seen=np.array([s.first_seen for s in tracks], np.float64),
            hits=np.array([s.hits for s in tracks], np.int64),
            seen=np.array([s.id in seen_ids for s in tracks], bool),
            ended=ended,
            confirmed=np.array([s.confirmed for s in tracks], bool),
            scores=np.array([s.score for s in tracks], np.float32),
        )

    def close_all(self) -> tuple[int, ...]:
        """End every live track (at shutdown) and return their ids."""
        ended = tuple(s.id for s in self._tracks)
        self._tracks = []
        return ended
