"""FACS-inspired action-unit intensities from the face mesh's geometry: estimates, not FACS coding (cues and limits: docs/DESIGN.md)."""

from __future__ import annotations

import numpy as np

from edge_fer.vision.face_geometry import MEASURES

#: The action units estimated, in the order of `intensities`' output.
AU_NAMES: tuple[str, ...] = ("AU1", "AU2", "AU4", "AU6", "AU12", "AU15", "AU20", "AU25", "AU26", "AU43", "AU45")
#: The eye-closure AUs: blinks, not expressions (the micro-expression spotter ignores them).
EYE_CLOSURE: tuple[str, ...] = ("AU43", "AU45")

#: Neutral faces' median measures (`MEASURES` order): a track's baseline before it has shown its
#: own calm face. Measured on FER2013 ``train`` images whose FERPlus majority vote is neutral:
#: ``python benchmarks/au_directions.py --prior DIR/train`` (994 of the first 1000 meshed).
NEUTRAL_PRIOR = np.array([0.309, 0.286, 0.420, 0.292, -0.049, -0.253, 0.763, -0.013, 0.037, 0.514])

# Change of each measure (in IODs; eye_open as a ratio) that makes the AU reach 1.0, with the
# sign of the movement; several cues of one AU are averaged by their weights.
_CUES: dict[str, tuple[tuple[str, float, float], ...]] = {
    # AU: ((measure, full-scale change, weight), ...)
    "AU1": (("brow_inner_h", 0.06, 1.0),),
    "AU2": (("brow_outer_h", 0.06, 1.0),),
    "AU4": (("brow_inner_h", -0.06, 0.7), ("brow_gap", -0.03, 0.3)),
    "AU6": (("cheek_h", 0.05, 0.7), ("lower_lid_h", 0.03, 0.3)),
    "AU12": (("corner_h", 0.10, 0.5), ("mouth_w", 0.25, 0.5)),
    "AU15": (("corner_h", -0.06, 1.0),),
    "AU20": (("mouth_w", 0.20, 1.0), ("corner_h", -0.10, 1.0)),  # widening not explained by a smile
    "AU25": (("lip_gap", 0.15, 1.0),),
    "AU26": (("jaw", 0.20, 1.0),),
    "AU43": (("eye_open", -0.06, 1.0),),
    "AU45": (("eye_open", -0.06, 1.0),),
}


def _weights() -> np.ndarray:
    w = np.zeros((len(AU_NAMES), len(MEASURES)))
    for row, au in enumerate(AU_NAMES):
        cues = _CUES[au]
        total = sum(weight for _, _, weight in cues if weight > 0) if au != "AU20" else 1.0
        for measure, full, weight in cues:
            w[row, MEASURES.index(measure)] += weight / total / full
    return w


#: ``(len(AU_NAMES), len(MEASURES))``: intensity = clip(AU_WEIGHTS @ (measures - baseline), 0, 1).
AU_WEIGHTS = _weights()


def intensities(measures: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """AU intensities in [0, 1], `AU_NAMES` order, of a face whose raw measures are `measures`
    and whose resting measures are `baseline` (both ``(len(MEASURES),)``). AU43 and AU45 both
    carry the eye closure here; `edge_fer.temporal.au_baseline` splits them by duration."""
    aus = AU_WEIGHTS @ (np.asarray(measures) - np.asarray(baseline))
    # np.minimum / np.maximum rather than np.clip: same values, without np.clip's Python-level
    # dispatch (this runs per face and frame)
    return np.minimum(np.maximum(aus, 0.0, out=aus), 1.0, out=aus)
