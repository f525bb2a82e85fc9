"""Face geometry from the mesh: head pose, frontalisation and the raw measures behind the action units (method: docs/DESIGN.md)."""

from __future__ import annotations

import math

import cv2
import numpy as np

#: Rigid landmarks (they move little with expressions): nose bridge and tip, forehead midline,
#: eye corners and the face's sides at the ears' height. (index, x, y, z) of the canonical face,
#: subject's right side (x < 0) and midline; the left side is mirrored in `_canonical`.
_RIGHT_AND_MIDLINE = (
    (1, 0.0, -1.126865, 7.475604),
    (4, 0.0, -0.463170, 7.586580),
    (6, 0.0, 2.473255, 5.788627),
    (8, 0.0, 4.019042, 5.284764),
    (9, 0.0, 4.885979, 5.385258),
    (10, 0.0, 8.261778, 4.481535),
    (151, 0.0, 6.545390, 5.027311),
    (168, 0.0, 3.271027, 5.236015),
    (33, -4.445859, 2.663991, 3.173422),
    (133, -1.856432, 2.585245, 3.757904),
    (127, -7.743095, 2.364999, -2.005167),
    (93, -7.542244, -1.049282, -2.431321),
)
#: Mirror partner (subject's left side) of each right-side rigid landmark.
_MIRROR = {33: 263, 133: 362, 127: 356, 93: 323}


def _canonical() -> tuple[np.ndarray, np.ndarray]:
    rows = []
    for index, x, y, z in _RIGHT_AND_MIDLINE:
        rows.append((index, x, y, z))
        if index in _MIRROR:
            rows.append((_MIRROR[index], -x, y, z))
    table = np.array(rows, np.float64)
    # canonical (x right, y up, z towards the camera) → OpenCV camera axes (y down, z away)
    return table[:, 0].astype(np.intp), table[:, 1:] * np.array([1.0, -1.0, -1.0])


#: Indices of the rigid landmarks and their canonical positions ``(k, 3)`` in OpenCV axes (cm).
RIGID_INDICES, RIGID_CANONICAL = _canonical()

#: Landmarks the measures read (MediaPipe face-mesh indices; "right" = the subject's right).
EYE_R = (33, 133, 159, 145, 158, 153, 160, 144)  # outer, inner corner; upper/lower lid pairs
EYE_L = (263, 362, 386, 374, 385, 380, 387, 373)
BROW_INNER = ((107, 55), (336, 285))  # upper and lower contour at the inner end, per side
BROW_OUTER = ((70, 46, 105), (300, 276, 334))
CHEEK = (117, 346)  # below the eyes, on the cheekbones
MOUTH_CORNERS = (61, 291)
LIP_INNER = (13, 14)  # upper and lower inner-lip midpoints
SUBNASALE, LOWER_LIP = 2, 17  # the lower lip rides on the jaw (the mesh's chin barely follows it)

#: Names of the raw measures, in the order of `measures`' output.
MEASURES: tuple[str, ...] = (
    "brow_inner_h",  # inner brow height above the eye centre line (AU1 ↑, AU4 ↓)
    "brow_outer_h",  # outer brow height above the eye centre line (AU2 ↑)
    "brow_gap",  # distance between the inner brow ends (AU4 ↓)
    "eye_open",  # eyelid aperture ÷ eye width (AU43/45 ↓, AU6 ↓ a little)
    "lower_lid_h",  # lower lid height relative to the eye corners (AU6 ↑)
    "cheek_h",  # cheekbone height relative to the eye centre line (AU6 ↑, AU12 ↑)
    "mouth_w",  # distance between the lip corners (AU12 ↑, AU20 ↑)
    "corner_h",  # lip corners' height above the lips' midpoint (AU12 ↑, AU15 ↓)
    "lip_gap",  # inner-lip opening (AU25 ↑)
    "jaw",  # subnasale to the lower lip's outer midpoint (AU26 ↑)
)

_USED = np.array(
    sorted(
        {
            *RIGID_INDICES.tolist(),
            *EYE_R,
            *EYE_L,
            *sum(BROW_INNER, ()),
            *sum(BROW_OUTER, ()),
            *CHEEK,
            *MOUTH_CORNERS,
            *LIP_INNER,
            SUBNASALE,
            LOWER_LIP,
        }
    ),
    np.intp,
)
_POS = {int(index): k for k, index in enumerate(_USED)}


def _at(*indices: int) -> np.ndarray:
    return np.array([_POS[i] for i in indices], np.intp)


_RIGID_AT = _at(*RIGID_INDICES.tolist())
_EYE_OUTER, _EYE_INNER = _at(EYE_R[0], EYE_L[0]), _at(EYE_R[1], EYE_L[1])


def _height_matrix() -> np.ndarray:
    """``(5, m)``: heights of brow_inner_h, brow_outer_h, lower_lid_h, cheek_h and corner_h as
    one linear map of the used points' heights (each a mean of points minus a reference mean)."""
    rows = []
    eye_line = [*EYE_R[:2], *EYE_L[:2]]  # the eye centre line: mean of the four eye corners
    for points, reference in (
        (sum(BROW_INNER, ()), eye_line),
        (sum(BROW_OUTER, ()), eye_line),
        ((EYE_R[3], EYE_L[3]), eye_line),
        (CHEEK, eye_line),
        (MOUTH_CORNERS, LIP_INNER),
    ):
        row = np.zeros(len(_USED))
        np.add.at(row, _at(*points), 1.0 / len(points))
        np.add.at(row, _at(*reference), -1.0 / len(reference))
        rows.append(row)
    return np.array(rows)


_HEIGHTS = _height_matrix()
# Distances measured in one vectorised step: eye widths (2), lid apertures (3 per eye), mouth
# width, lip gap, jaw, inner brow gap.
_DIST_A = _at(EYE_R[0], EYE_L[0], *EYE_R[2::2], *EYE_L[2::2], MOUTH_CORNERS[0], LIP_INNER[0], SUBNASALE, BROW_INNER[0][1])
_DIST_B = _at(EYE_R[1], EYE_L[1], *EYE_R[3::2], *EYE_L[3::2], MOUTH_CORNERS[1], LIP_INNER[1], LOWER_LIP, BROW_INNER[1][1])


def _measure_rows() -> np.ndarray:
    """``(21, m)``: every linear quantity `measures` needs, as one map of the used points.

    Rows 0-2: ``a.T``, with ``a`` the rigid canonical points minus their mean, placed at the
    rigid points: ``(rows @ used)[:3].T`` is the cross-covariance that `similarity_fit` takes
    the SVD of (``a`` sums to zero, so the target's mean drops out). Rows 3-14: the vectors
    between the `_DIST_A` / `_DIST_B` pairs; row 15: between the two eye centres; rows 16-20:
    `_HEIGHTS`."""
    rows = np.zeros((21, len(_USED)))
    centred = RIGID_CANONICAL - RIGID_CANONICAL.mean(axis=0)
    for k, at in enumerate(_RIGID_AT):
        rows[:3, at] += centred[k]
    for r, (a, b) in enumerate(zip(_DIST_A, _DIST_B)):
        rows[3 + r, a] += 1.0
        rows[3 + r, b] -= 1.0
    for side, sign in ((1, 0.5), (0, -0.5)):
        rows[15, _EYE_OUTER[side]] += sign
        rows[15, _EYE_INNER[side]] += sign
    rows[16:] = _HEIGHTS
    return rows


_MEASURE_ROWS = _measure_rows()


def similarity_fit(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Scale, rotation and translation with ``target ≈ s * R @ source + t`` in the least-squares
    sense (Umeyama 1991), for ``(k, 3)`` point sets; R is a proper rotation."""
    mu_s, mu_t = source.mean(axis=0), target.mean(axis=0)
    a, b = source - mu_s, target - mu_t
    u, d, vt = np.linalg.svd(b.T @ a)
    sign = np.ones(3)
    sign[2] = -1.0 if np.linalg.det(u @ vt) < 0 else 1.0
    rotation = (u * sign) @ vt
    scale = float((d * sign).sum() / max(float((a * a).sum()), 1e-12))
    return scale, rotation, mu_t - scale * rotation @ mu_s


def frontalise(points: np.ndarray) -> np.ndarray:
    """The measure landmarks of a face mesh ``(468, 3)`` with the head's rotation, position and
    scale removed: ``(m, 3)`` in canonical-face centimetres, OpenCV axes (y down), in the order
    of the module's ``_USED`` indices. `measures` is defined on these points."""
    used = np.asarray(points, np.float64)[_USED]
    scale, rotation, shift = similarity_fit(RIGID_CANONICAL, used[_RIGID_AT])
    return np.asarray((used - shift) @ rotation / scale)


def _det3(m: list[list[float]]) -> float:
    return (
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    )


def measures(points: np.ndarray) -> np.ndarray:
    """The raw geometric measures (`MEASURES`) of one face mesh ``(468, 3)``: ``(len(MEASURES),)``
    float64 in units of the inter-ocular distance (``eye_open`` is a ratio), pose-free.

    Defined on the frontalised mesh (`frontalise`), computed without building it: distances
    are the same before and after a rotation, and every measure is divided by the IOD, so the
    scale and the translation cancel; only the heights need the rotation, of which one column
    is used. So: one product of the used points with `_MEASURE_ROWS`, the 3×3 SVD of the
    similarity fit, and a few dozen float operations (this runs per face and frame, right
    after a model invoke has evicted the caches: each numpy call costs several µs then)."""
    v = (_MEASURE_ROWS @ np.asarray(points)[_USED]).tolist()
    _, u_, vt_ = cv2.SVDecomp(np.array([[v[0][i], v[1][i], v[2][i]] for i in range(3)]))
    u, vt = u_.tolist(), vt_.tolist()
    flip = -1.0 if _det3(u) * _det3(vt) < 0 else 1.0
    # the frontalised y axis (rotation column 1) in mesh coordinates
    ax, ay, az = (u[i][0] * vt[0][1] + u[i][1] * vt[1][1] + flip * u[i][2] * vt[2][1] for i in range(3))
    d = [math.sqrt(x * x + y * y + z * z) for x, y, z in v[3:16]]
    iod = d[12] or 1e-9
    brow_in, brow_out, lower_lid, cheek, corner = (-(x * ax + y * ay + z * az) for x, y, z in v[16:21])
    eye_open = ((d[2] + d[3] + d[4]) / max(d[0], 1e-9) + (d[5] + d[6] + d[7]) / max(d[1], 1e-9)) / 6.0
    return np.array([brow_in, brow_out, d[11], eye_open * iod, lower_lid, cheek, d[8], corner, d[9], d[10]]) / iod


def camera_matrix(width: int, height: int, focal_ratio: float = 1.0) -> np.ndarray:
    """A pinhole camera for a ``width`` × ``height`` frame: focal length ``focal_ratio *
    max(width, height)`` pixels (about 53° horizontal field of view at 1.0), centred."""
    f = focal_ratio * max(width, height)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def head_pose(points: np.ndarray, camera: np.ndarray) -> tuple[float, float, float] | None:
    """Yaw, pitch, roll in degrees (conventions: docs/DESIGN.md) of a face mesh
    ``(468, 3)`` in frame pixels, or None when solvePnP fails."""
    image = np.asarray(points)[RIGID_INDICES, :2].astype(np.float64)
    ok, rvec, tvec = cv2.solvePnP(RIGID_CANONICAL, image, camera, None, flags=cv2.SOLVEPNP_SQPNP)
    if not ok:
        return None
    r = cv2.Rodrigues(rvec)[0].tolist()
    tx, ty, tz = tvec.ravel().tolist()
    # Express the rotation in the line-of-sight frame: its z axis points from the camera to the
    # face, so that "looking into the lens" is the identity wherever the face is. Its x axis is
    # (0, 1, 0) × z, its y axis z × x. Only two columns of (sight @ rotation) are needed: where
    # the nose points (-z) and the subject's right-to-left axis (x). Written out on floats:
    # numpy calls on 3×3 arrays cost more than the arithmetic.
    n = math.sqrt(tx * tx + ty * ty + tz * tz) or 1.0
    zx, zy, zz = tx / n, ty / n, tz / n
    h = math.hypot(zz, zx) or 1.0
    xx, xz = zz / h, -zx / h
    sight = ((xx, 0.0, xz), (zy * xz, zz * xx - zx * xz, -zy * xx), (zx, zy, zz))
    fx, fy, fz = (-(s0 * r[0][2] + s1 * r[1][2] + s2 * r[2][2]) for s0, s1, s2 in sight)
    ax, ay, _ = (s0 * r[0][0] + s1 * r[1][0] + s2 * r[2][0] for s0, s1, s2 in sight)
    yaw = math.degrees(math.atan2(fx, -fz))
    pitch = math.degrees(math.atan2(-fy, math.hypot(fx, fz)))
    roll = math.degrees(math.atan2(ay, ax))
    return yaw, pitch, roll
