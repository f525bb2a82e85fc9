"""Face alignment: one affine warp that levels the eyes and crops a square around the face.

Two steps, shared by the pipeline and `edge-fer eval` so that both feed a model the same way:
`align_face` (frame + detection → aligned face crop; the pipeline only) and `crop_for_model`
(any face crop → the model's size and channels; both). The classifier then normalises and
quantizes (`EmotionClassifier.preprocess`).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

#: Default border around the detector's box, as a fraction of the box's larger side.
#: BlazeFace boxes run from about the eyebrows to the chin and from cheek to cheek; FER2013
#: crops show a little more (forehead, the chin's outline, the face's sides). Chosen three
#: ways, which agree on 0.1-0.2: by eye against FER2013 public-test PNGs next to our crops of
#: the real photos and the demo video; by running BlazeFace on (padded, upscaled) FER2013
#: crops, where its box covers 0.85 (short range) to 0.88 (full range) of the crop side, i.e.
#: margin 0.14-0.18; and by re-cropping 1000 FER2013 test faces through detect → align →
#: mini-Xception, where accuracy is flat within noise for margins 0.1-0.2 and drops outside.
DEFAULT_MARGIN = 0.15


def eye_angle_deg(keypoints: np.ndarray) -> float:
    """Roll of the face in degrees: the angle of the line from the image-left eye (the
    subject's right, keypoint 0) to the other (keypoint 1); positive = clockwise on screen
    (image y points down)."""
    (rx, ry), (lx, ly) = keypoints[0], keypoints[1]
    return math.degrees(math.atan2(float(ly - ry), float(lx - rx)))


def alignment_matrix(box: np.ndarray, keypoints: np.ndarray, out_size: tuple[int, int], margin: float) -> np.ndarray:
    """The 2×3 affine matrix mapping frame pixels to the aligned crop of size ``(h, w)``.

    The crop is a square of side ``max(box w, box h) * (1 + margin)`` centred on the box
    centre, rotated by the eye angle so that the eyes come out level.
    """
    out_h, out_w = out_size
    cx, cy = (float(box[0]) + float(box[2])) / 2.0, (float(box[1]) + float(box[3])) / 2.0
    side = max(float(box[2] - box[0]), float(box[3] - box[1]), 1.0) * (1.0 + margin)
    angle = math.radians(eye_angle_deg(keypoints))
    cos, sin = math.cos(angle), math.sin(angle)
    sx, sy = out_w / side, out_h / side
    # Rotation by -angle about the box centre (undoing the roll), scaled per axis, with the
    # box centre moved to the crop centre. Pixel centres: continuous coordinate = index + 0.5.
    ox, oy = out_w / 2.0 - 0.5, out_h / 2.0 - 0.5
    px, py = cx - 0.5, cy - 0.5
    return np.array(
        [
            [sx * cos, sx * sin, ox - sx * (cos * px + sin * py)],
            [-sy * sin, sy * cos, oy - sy * (-sin * px + cos * py)],
        ],
        np.float64,
    )


def _shrink_region(frame_pixels: np.ndarray, matrix: np.ndarray, out_size: tuple[int, int], shrink: float) -> tuple[np.ndarray, np.ndarray]:
    """The frame region under the crop, averaged down by 2x2 blocks until less than 2 frame
    pixels fall on one crop pixel, and the warp matrix that maps *it* (instead of the frame) to
    the crop. Only the region is touched, never the frame. Exact halvings take OpenCV's fast
    area path (~15 µs for a 250-pixel face, against ~130 µs for a fractional area resize); the
    geometry is plain float arithmetic on the six matrix entries (numpy calls on 2x3 arrays
    would cost more than the pixels)."""
    h, w = out_size
    (a, b, c), (d, e, f) = matrix.tolist()
    det = a * e - b * d
    ia, ib, id_, ie = e / det, -b / det, -d / det, a / det  # inverse: crop → frame
    ic, if_ = -(ia * c + ib * f), -(id_ * c + ie * f)
    xs = [ia * u + ib * v + ic for u, v in ((-0.5, -0.5), (w - 0.5, -0.5), (-0.5, h - 0.5), (w - 0.5, h - 0.5))]
    ys = [id_ * u + ie * v + if_ for u, v in ((-0.5, -0.5), (w - 0.5, -0.5), (-0.5, h - 0.5), (w - 0.5, h - 0.5))]
    frame_h, frame_w = frame_pixels.shape[:2]
    halvings = int(math.floor(math.log2(shrink)))
    block = 1 << halvings
    x0, x1 = _block_span(math.floor(min(xs)), math.ceil(max(xs)) + 1, frame_w, block)
    y0, y1 = _block_span(math.floor(min(ys)), math.ceil(max(ys)) + 1, frame_h, block)
    if x1 - x0 < 2 * block or y1 - y0 < 2 * block:  # the crop lies (nearly) outside the frame
        return frame_pixels, matrix
    small = frame_pixels[y0:y1, x0:x1]
    for _ in range(halvings):
        small = cv2.resize(small, (small.shape[1] // 2, small.shape[0] // 2), interpolation=cv2.INTER_AREA)
    # small pixel i covers frame pixels [x0 + i*block, x0 + (i+1)*block): its centre is frame
    # index x0 + (i + 0.5) * block - 0.5; compose that with the frame → crop matrix.
    tx, ty = x0 + 0.5 * block - 0.5, y0 + 0.5 * block - 0.5
    composed = np.array([[a * block, b * block, a * tx + b * ty + c], [d * block, e * block, d * tx + e * ty + f]])
    return small, composed


def _block_span(start: int, stop: int, limit: int, block: int) -> tuple[int, int]:
    """``[start, stop)`` clipped to ``[0, limit)`` and widened to a multiple of `block` (moved
    back inside the frame if needed; shortened only when the frame itself is too small)."""
    start, stop = max(0, start), min(limit, stop)
    need = -(-(stop - start) // block) * block
    stop = min(limit, start + need)
    start = max(0, stop - need)
    if stop - start < need:
        stop = start + (stop - start) // block * block
    return start, stop


def align_face(
    frame_pixels: np.ndarray,
    box: np.ndarray,
    keypoints: np.ndarray,
    out_size: tuple[int, int],
    margin: float = DEFAULT_MARGIN,
    grey: bool = True,
    dst: np.ndarray | None = None,
) -> np.ndarray:
    """Rotate so the eyes are level and crop a square of ``max(w, h) * (1 + margin)`` around
    the box centre in one `cv2.warpAffine` straight to `out_size` (bilinear; the border is
    replicated, so a face cut by the frame edge is padded with its own edge pixels). When the
    face is at least twice the output size, only its region of the frame is first averaged
    down by 2x2 blocks to within 2x of the output scale, which avoids aliasing.

    Args:
        frame_pixels: ``(H, W, 3)`` BGR frame (or ``(H, W)`` grey).
        box: ``(4,)`` xyxy face box in frame pixels.
        keypoints: ``(6, 2)`` BlazeFace keypoints in frame pixels (only the two eyes are used).
        out_size: output ``(height, width)`` in pixels.
        margin: border added around the box, as a fraction of its larger side (>= 0).
        grey: return ``(h, w)`` grey instead of ``(h, w, 3)`` BGR.
        dst: optional uint8 array of the output's shape to write into (e.g. a model's input
            tensor); it is returned.

    Returns:
        uint8 ``(h, w)`` or ``(h, w, 3)``.

    Raises:
        ValueError: `margin` is negative or `out_size` is not positive.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if len(out_size) != 2 or min(out_size) < 1:
        raise ValueError(f"out_size must be (height, width) > 0, got {out_size}")
    h, w = out_size
    matrix = alignment_matrix(box, keypoints, out_size, margin)
    side = max(float(box[2] - box[0]), float(box[3] - box[1]), 1.0) * (1.0 + margin)
    shrink = side / max(h, w)  # frame pixels per output pixel
    source = frame_pixels
    if shrink >= 2.0:
        # Bilinear sampling aliases when it shrinks a lot (a 300 px face to 64 px): the face's
        # region is first averaged down to within 2x of the output scale, then warped.
        source, matrix = _shrink_region(frame_pixels, matrix, out_size, shrink)
    if grey and source.ndim == 3 and source is not frame_pixels:
        # grey before the warp when the region is small already: a 1-channel warp costs half
        source = cv2.cvtColor(source, cv2.COLOR_BGR2GRAY)
    if (source.ndim == 2) == grey:  # already the output's channels: warp straight into dst
        return cv2.warpAffine(source, matrix, (w, h), dst=dst, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    warped = cv2.warpAffine(source, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.cvtColor(warped, cv2.COLOR_BGR2GRAY if grey else cv2.COLOR_GRAY2BGR, dst=dst)


def crop_for_model(crop: np.ndarray, out_size: tuple[int, int], channels: int) -> np.ndarray:
    """Any face crop (grey ``(h, w)``, ``(h, w, 1)`` or BGR ``(h, w, 3)``, any size) → uint8
    ``(H, W, channels)`` at the model's `out_size` ``(H, W)``: grey for 1 channel, **RGB** for 3.

    This is the only resize / colour step between an aligned crop and the model, used both by
    the pipeline (after `align_face`, where it is a no-op resize) and by `edge-fer eval` (on
    dataset crops such as FER2013's 48×48 greys): INTER_AREA when shrinking, INTER_LINEAR when
    enlarging.
    """
    if crop.ndim == 3 and crop.shape[2] == 1:
        crop = crop[:, :, 0]
    if crop.ndim not in (2, 3) or (crop.ndim == 3 and crop.shape[2] != 3):
        raise ValueError(f"a face crop must be (h, w), (h, w, 1) or (h, w, 3), got {crop.shape}")
    if crop.dtype != np.uint8:
        raise ValueError(f"a face crop must be uint8, got {crop.dtype}")
    if channels == 1:
        out = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    elif channels == 3:
        out = cv2.cvtColor(crop, cv2.COLOR_GRAY2RGB if crop.ndim == 2 else cv2.COLOR_BGR2RGB)
    else:
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    h, w = out_size
    if out.shape[:2] != (h, w):
        shrink = out.shape[0] * out.shape[1] > h * w
        out = cv2.resize(out, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return out.reshape(h, w, channels)
