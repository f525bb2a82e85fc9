"""Face alignment: eyes levelled, the crop centred on the face box, sizes and dtypes."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from edge_fer.vision.align import DEFAULT_MARGIN, align_face, alignment_matrix, crop_for_model, eye_angle_deg

FRAME = (360, 640)
CENTRE = np.array([320.0, 180.0])
EYE_HALF_DISTANCE = 40.0


def synthetic_face(angle_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A grey frame with two bright "eyes" on a line rolled by `angle_deg` (clockwise on
    screen, image y down) around `CENTRE`, plus a matching box and keypoints."""
    rad = math.radians(angle_deg)
    offset = EYE_HALF_DISTANCE * np.array([math.cos(rad), math.sin(rad)])
    right_eye, left_eye = CENTRE - offset, CENTRE + offset  # subject's right eye on the image's left
    pixels = np.full((*FRAME, 3), 60, np.uint8)
    for eye in (right_eye, left_eye):
        cv2.circle(pixels, (round(eye[0]), round(eye[1])), 6, (255, 255, 255), -1, cv2.LINE_AA)
    keypoints = np.zeros((6, 2), np.float32)
    keypoints[0], keypoints[1] = right_eye, left_eye
    keypoints[2:] = CENTRE
    box = np.array([*(CENTRE - 80), *(CENTRE + 80)], np.float32)
    return pixels, box, keypoints


def blob_centres(crop: np.ndarray) -> np.ndarray:
    """Centres ``(2, 2)`` of the two bright blobs in a grey crop, left to right."""
    _, mask = cv2.threshold(crop, 160, 255, cv2.THRESH_BINARY)
    n, _, stats, centroids = cv2.connectedComponentsWithStats(mask)
    blobs = sorted(range(1, n), key=lambda i: -stats[i, cv2.CC_STAT_AREA])[:2]
    assert len(blobs) == 2, "both eyes must be inside the crop"
    return np.array(sorted((centroids[i] for i in blobs), key=lambda c: c[0]))


@pytest.mark.parametrize("angle", [-30.0, -12.5, 0.0, 8.0, 25.0])
def test_rotation_levels_the_eyes(angle: float) -> None:
    pixels, box, keypoints = synthetic_face(angle)
    assert eye_angle_deg(keypoints) == pytest.approx(angle, abs=1e-4)
    crop = align_face(pixels, box, keypoints, (96, 96), margin=0.2, grey=True)
    (lx, ly), (rx, ry) = blob_centres(crop)
    assert abs(ly - ry) < 0.6  # level to within a pixel
    # centred horizontally, and the eye distance scaled by out / side
    assert (lx + rx) / 2 == pytest.approx(47.5, abs=0.6)
    side = 160 * 1.2
    assert rx - lx == pytest.approx(2 * EYE_HALF_DISTANCE * 96 / side, abs=0.8)


@pytest.mark.parametrize("angle", [-25.0, 0.0, 30.0])
def test_matrix_maps_the_box_centre_to_the_crop_centre_and_levels_the_eyes(angle: float) -> None:
    _, box, keypoints = synthetic_face(angle)
    matrix = alignment_matrix(box, keypoints, (64, 48), 0.1)
    # pixel-centre convention: continuous point (x, y) is pixel index (x - 0.5, y - 0.5)
    mapped = (matrix[:, :2] @ (keypoints[:2] - 0.5).T).T + matrix[:, 2] + 0.5
    assert mapped[0, 1] == pytest.approx(mapped[1, 1], abs=1e-4)
    assert mapped[0, 0] < mapped[1, 0]
    centre = matrix[:, :2] @ (CENTRE - 0.5) + matrix[:, 2] + 0.5
    np.testing.assert_allclose(centre, [24, 32], atol=1e-4)


def test_margin_widens_the_crop_around_the_box() -> None:
    pixels, box, keypoints = synthetic_face(0.0)
    tight = blob_centres(align_face(pixels, box, keypoints, (100, 100), margin=0.0))
    wide = blob_centres(align_face(pixels, box, keypoints, (100, 100), margin=1.0))
    assert (wide[1, 0] - wide[0, 0]) == pytest.approx((tight[1, 0] - tight[0, 0]) / 2, abs=0.8)


@pytest.mark.parametrize(("out_size", "grey", "shape"), [((64, 64), True, (64, 64)), ((48, 40), False, (48, 40, 3))])
def test_output_size_and_dtype(out_size: tuple[int, int], grey: bool, shape: tuple[int, ...]) -> None:
    pixels, box, keypoints = synthetic_face(10.0)
    crop = align_face(pixels, box, keypoints, out_size, DEFAULT_MARGIN, grey)
    assert crop.shape == shape and crop.dtype == np.uint8


def test_face_at_the_frame_edge_replicates_the_border() -> None:
    pixels = np.zeros((100, 100, 3), np.uint8)
    pixels[:, 50:] = 200
    box = np.array([60, -40, 160, 60], np.float32)  # mostly outside the frame
    kps = np.tile(np.array([[90, 10]], np.float32), (6, 1))
    kps[1] = [130, 10]
    crop = align_face(pixels, box, kps, (32, 32), 0.0)
    assert crop.shape == (32, 32) and crop.min() == 200  # no black fill from outside the frame


def test_large_faces_are_area_averaged_not_aliased() -> None:
    """A 600 px face shrunk to 48 px: fine stripes average out to grey instead of aliasing."""
    pixels = np.zeros((800, 800, 3), np.uint8)
    pixels[:, ::2] = 255  # one-pixel stripes
    box = np.array([100, 100, 700, 700], np.float32)
    kps = np.tile(np.array([[300, 300]], np.float32), (6, 1))
    kps[1] = [500, 300]
    crop = align_face(pixels, box, kps, (48, 48), 0.0)
    assert abs(float(crop.mean()) - 127.5) < 3 and float(crop.std()) < 12


def test_bad_arguments() -> None:
    pixels, box, keypoints = synthetic_face(0.0)
    with pytest.raises(ValueError, match="margin"):
        align_face(pixels, box, keypoints, (48, 48), margin=-0.1)
    with pytest.raises(ValueError, match="out_size"):
        align_face(pixels, box, keypoints, (0, 48))


@pytest.mark.parametrize(
    ("crop", "channels", "shape"),
    [
        (np.zeros((48, 48), np.uint8), 1, (64, 64, 1)),
        (np.zeros((48, 48, 1), np.uint8), 1, (64, 64, 1)),
        (np.zeros((200, 180, 3), np.uint8), 1, (64, 64, 1)),
        (np.zeros((48, 48), np.uint8), 3, (64, 64, 3)),
        (np.zeros((64, 64, 3), np.uint8), 3, (64, 64, 3)),
    ],
)
def test_crop_for_model_shapes(crop: np.ndarray, channels: int, shape: tuple[int, ...]) -> None:
    out = crop_for_model(crop, (64, 64), channels)
    assert out.shape == shape and out.dtype == np.uint8


def test_crop_for_model_colour_order_and_rejects() -> None:
    bgr = np.zeros((8, 8, 3), np.uint8)
    bgr[..., 0] = 255  # blue
    assert crop_for_model(bgr, (8, 8), 3)[0, 0].tolist() == [0, 0, 255]  # RGB for the model
    with pytest.raises(ValueError, match="uint8"):
        crop_for_model(np.zeros((8, 8), np.float32), (8, 8), 1)
    with pytest.raises(ValueError, match="channels"):
        crop_for_model(np.zeros((8, 8), np.uint8), (8, 8), 2)


@pytest.mark.parametrize("angle", [0.0, 17.0])
def test_the_area_averaged_path_keeps_the_geometry(angle: float) -> None:
    """On a smooth image the anti-aliased path (big face) equals one plain bilinear warp."""
    ys, xs = np.mgrid[0:720, 0:1280].astype(np.float32)
    smooth = np.clip(40 + 0.12 * xs + 0.1 * ys + 25 * np.sin(xs / 90) * np.cos(ys / 70), 0, 255).astype(np.uint8)
    pixels = cv2.merge([smooth, smooth, smooth])
    rad = math.radians(angle)
    centre, offset = np.array([640.0, 360.0]), 110 * np.array([math.cos(rad), math.sin(rad)])
    kps = np.tile(centre, (6, 1)).astype(np.float32)
    kps[0], kps[1] = centre - offset, centre + offset
    box = np.array([440, 160, 840, 560], np.float32)
    direct = cv2.warpAffine(smooth, alignment_matrix(box, kps, (64, 64), 0.15), (64, 64), flags=cv2.INTER_LINEAR)
    crop = align_face(pixels, box, kps, (64, 64), 0.15, grey=True)
    assert np.abs(crop.astype(int) - direct.astype(int)).max() <= 3
