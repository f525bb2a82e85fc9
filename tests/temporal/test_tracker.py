from __future__ import annotations

import numpy as np
import pytest

from edge_fer.temporal import ProbabilitySmoother, Tracker, iou_matrix
from edge_fer.types import Detections


def dets(*boxes: tuple[float, float, float, float]) -> Detections:
    arr = np.array(boxes, np.float32).reshape(-1, 4)
    kps = np.repeat(((arr[:, None, :2] + arr[:, None, 2:]) / 2), 6, axis=1)
    return Detections(arr, np.full(len(arr), 0.9, np.float32), kps.astype(np.float32))


def test_iou_matrix_known_values() -> None:
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    np.testing.assert_allclose(iou_matrix(a, b), [[1.0, 50 / 150, 0.0]], rtol=1e-6)
    assert iou_matrix(a, np.zeros((0, 4), np.float32)).shape == (1, 0)


def test_ids_are_kept_while_faces_move_and_new_faces_get_new_ids() -> None:
    tracker = Tracker(iou_threshold=0.3, max_missed_s=0.5)
    t1 = tracker.update(dets((0, 0, 100, 100)), t=0.0)
    t2 = tracker.update(dets((10, 0, 110, 100), (300, 300, 380, 380)), t=0.04)
    assert list(t1.ids) == [1]
    assert list(t2.ids) == [1, 2]
    assert list(t2.hits) == [2, 1]
    assert t2.seen.all()


def test_centroid_fallback_keeps_a_fast_face_at_low_fps() -> None:
    tracker = Tracker(iou_threshold=0.3, max_missed_s=0.5, centroid_factor=0.5)
    tracker.update(dets((0, 0, 100, 100)), t=0.0)
    moved = tracker.update(dets((45, 0, 145, 100)), t=0.07)  # IoU 0.38 → IoU match
    jumped = tracker.update(dets((110, 0, 210, 100)), t=0.14)  # IoU 0 with previous, centre 65 px away
    assert list(moved.ids) == [1]
    assert list(jumped.ids) == [1]


def test_track_coasts_then_ends_by_time_not_frames() -> None:
    tracker = Tracker(iou_threshold=0.3, max_missed_s=0.5)
    tracker.update(dets((0, 0, 100, 100)), t=0.0)
    coasting = tracker.update(None, t=0.3)
    assert list(coasting.ids) == [1] and not coasting.seen.any() and coasting.ended == ()
    ended = tracker.update(None, t=0.6)
    assert len(ended) == 0 and ended.ended == (1,)
    # ids are never reused within a process
    assert list(tracker.update(dets((0, 0, 100, 100)), t=0.7).ids) == [2]


def test_time_must_not_go_backwards() -> None:
    tracker = Tracker()
    tracker.update(None, t=1.0)
    with pytest.raises(ValueError, match="backwards"):
        tracker.update(None, t=0.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"iou_threshold": 0.0}, "iou_threshold"), ({"max_missed_s": -1}, "max_missed_s"), ({"centroid_factor": -0.1}, "centroid_factor")],
)
def test_constructor_validates(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Tracker(**kwargs)


def test_smoother_is_frame_rate_independent() -> None:
    a, b = np.array([1, 0], np.float32), np.array([0, 1], np.float32)
    slow, fast = ProbabilitySmoother(0.3), ProbabilitySmoother(0.3)
    slow.update(1, a, 0.0)
    fast.update(1, a, 0.0)
    s = slow.update(1, b, 0.2)  # one step at 5 fps
    for i in range(1, 5):  # four steps at 20 fps
        f = fast.update(1, b, 0.05 * i)
    np.testing.assert_allclose(s, f, atol=1e-5)
    assert abs(float(s.sum()) - 1) < 1e-5
    assert np.array_equal(ProbabilitySmoother(0).update(3, b, 0.0), b)
