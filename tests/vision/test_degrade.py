"""The camera degradations shared by the robustness benchmark and the training augmentation."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_fer.vision.degrade import FAMILIES, apply_set, benchmark_sets, degrade, motion_kernel, parse_set, random_degradation, reference_sets
from edge_fer.vision.quality import measure_crop

FACES = Path(__file__).resolve().parents[1] / "data" / "fer2013_faces"


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    paths = sorted(FACES.glob("*/*.png"))[:20]
    return np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths])


@pytest.mark.parametrize("name", benchmark_sets())
def test_every_set_keeps_shape_and_type_and_is_reproducible(faces: np.ndarray, name: str) -> None:
    a = apply_set(faces, name, seed=3)
    assert a.shape == faces.shape and a.dtype == np.uint8
    assert np.array_equal(a, apply_set(faces, name, seed=3))
    # image i depends only on (seed, set, i): a shorter stack gets the same first images
    assert np.array_equal(apply_set(faces[:6], name, seed=3), a[:6])
    if name != "clean":
        assert not np.array_equal(a, faces)


def test_the_seed_changes_the_random_draws(faces: np.ndarray) -> None:
    for name in ("noise@8", "occlusion@0.2"):
        assert not np.array_equal(apply_set(faces, name, seed=2), apply_set(faces, name, seed=1))


@pytest.mark.parametrize("family", ["lowres", "defocus", "motion"])
def test_stronger_blur_is_less_sharp(faces: np.ndarray, family: str) -> None:
    sharpness = [np.mean([measure_crop(f).sharpness for f in apply_set(faces, f"{family}@{s:g}")]) for s in FAMILIES[family].strengths]
    clean = np.mean([measure_crop(f).sharpness for f in faces])
    assert clean > sharpness[0] and all(a >= b for a, b in zip(sharpness, sharpness[1:]))


def test_strengths_do_what_their_names_say(faces: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    face = faces[0]
    assert abs(float(degrade(face, "noise", 8, rng).astype(float).std() - 0)) > 0
    noisy = degrade(face, "noise", 8, np.random.default_rng(0)).astype(np.float32) - face
    assert 6 < float(noisy.std()) < 10  # clipping at 0 and 255 only trims it
    assert float(degrade(face, "dark", 0.4, rng).max()) <= 0.4 * 255 + 0.5
    occluded = degrade(face, "occlusion", 0.2, np.random.default_rng(1))
    assert 0.1 < np.mean(occluded != face) <= 0.21
    k = motion_kernel(7, 0)
    assert k.shape == (7, 7) and np.count_nonzero(k) == 7 and np.count_nonzero(k[3]) == 7 and abs(k.sum() - 1) < 1e-6
    assert np.count_nonzero(motion_kernel(7, 90)[:, 3]) == 7


def test_names_and_errors() -> None:
    assert parse_set("jpeg@15") == ("jpeg", 15.0) and parse_set("clean") == ("clean", 0.0)
    assert parse_set("defocus") == ("defocus", 1.5)  # without a strength: the reference
    assert len(reference_sets()) == len(FAMILIES) and benchmark_sets()[0] == "clean"
    with pytest.raises(ValueError, match="known: clean, lowres"):
        parse_set("fog@3")
    with pytest.raises(ValueError, match="not a number"):
        parse_set("jpeg@high")
    with pytest.raises(ValueError, match="grey uint8"):
        degrade(np.zeros((48, 48, 3), np.uint8), "jpeg", 20, np.random.default_rng(0))


def test_training_draws_cover_every_family_and_leave_some_clean(faces: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    out = [random_degradation(faces[i % len(faces)], rng, p_clean=0.3) for i in range(400)]
    same = sum(np.array_equal(o, faces[i % len(faces)]) for i, o in enumerate(out))
    assert 0.2 * 400 < same < 0.4 * 400
    assert all(o.shape == (48, 48) and o.dtype == np.uint8 for o in out)


def test_training_draw_weights_pick_the_families(faces: np.ndarray) -> None:
    # Only low light drawn (gain 0.2-0.8), never a second one: every degraded face is darker.
    rng = np.random.default_rng(1)
    only_dark = {name: 0.0 for name in FAMILIES} | {"dark": 1.0}
    for i in range(60):
        face = faces[i % len(faces)]
        out = random_degradation(face, rng, p_clean=0.0, p_second=0.0, weights=only_dark)
        assert out.mean() < face.mean() - 5
    with pytest.raises(ValueError, match="unknown degradation 'fog'"):
        random_degradation(faces[0], rng, weights={"fog": 2.0})
