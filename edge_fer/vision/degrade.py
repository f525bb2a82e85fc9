"""Camera degradations of face crops: one definition for the robustness benchmark and the
training augmentation of the emotion model.

Kiosk and retail cameras do not deliver clean 48×48 crops: faces are far away (few pixels),
out of focus, smeared by motion, squeezed by a low-bitrate stream, noisy and dark. Each family
here takes a grey ``uint8`` crop and one strength and returns the degraded crop (same shape,
``uint8``); the randomness a family needs (noise, motion angle, occluder position) comes from the
``rng`` passed in, so a benchmark set is reproducible image by image.

>>> import numpy as np
>>> face = np.full((48, 48), 128, np.uint8)
>>> degrade(face, "lowres", 24, np.random.default_rng(0)).shape
(48, 48)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import cv2
import numpy as np


def _check(img: np.ndarray) -> None:
    if img.dtype != np.uint8 or img.ndim != 2:
        raise ValueError(f"a degradation takes a grey uint8 crop (H, W), got {img.dtype} {img.shape}")


def lowres(img: np.ndarray, size_px: float, rng: np.random.Generator) -> np.ndarray:
    """A face `size_px` pixels wide in the frame: area-downscale to that size, then bilinear
    back up to the crop size (what the aligner does with a small face)."""
    h, w = img.shape
    s = max(2, int(round(size_px)))
    small = cv2.resize(img, (s, s), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def defocus(img: np.ndarray, sigma_px: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur of standard deviation `sigma_px` (defocus, a dirty lens), in crop pixels."""
    return cv2.GaussianBlur(img, (0, 0), sigmaX=float(sigma_px), borderType=cv2.BORDER_REPLICATE)


def motion_kernel(length_px: float, angle_deg: float) -> np.ndarray:
    """A normalised line kernel `length_px` long at `angle_deg` (0 = horizontal)."""
    k = max(1, int(math.ceil(length_px)))
    k += 1 - k % 2
    kernel = np.zeros((k, k), np.float32)
    c = k // 2
    dx, dy = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    for t in np.linspace(-(length_px - 1) / 2, (length_px - 1) / 2, max(2, int(length_px) * 4)):
        kernel[int(round(c + t * dy)), int(round(c + t * dx))] = 1.0
    return kernel / kernel.sum()


def motion(img: np.ndarray, length_px: float, rng: np.random.Generator, angle_deg: float | None = 0.0) -> np.ndarray:
    """Linear motion blur `length_px` long; `angle_deg` None draws the direction from `rng`."""
    angle = float(rng.uniform(0, 180)) if angle_deg is None else angle_deg
    return cv2.filter2D(img, -1, motion_kernel(length_px, angle), borderType=cv2.BORDER_REPLICATE)


def jpeg(img: np.ndarray, quality: float, rng: np.random.Generator) -> np.ndarray:
    """JPEG round trip at `quality` (1-100): the blocks and ringing of a low-bitrate stream."""
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(round(quality))])
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 grey image
        raise RuntimeError("JPEG encoding failed")
    return np.asarray(cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE), np.uint8)


def noise(img: np.ndarray, sigma_grey: float, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian sensor noise of `sigma_grey` grey levels, clipped to 0-255."""
    out = img.astype(np.float32) + rng.normal(0.0, float(sigma_grey), img.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def dark(img: np.ndarray, gain: float, rng: np.random.Generator, gamma: float = 1.8) -> np.ndarray:
    """Low light: ``255 * gain * (x / 255) ** gamma`` (gain < 1 dims, gamma > 1 crushes the
    shadows), rounded to uint8, so the levels the sensor loses stay lost."""
    x = img.astype(np.float32) / 255.0
    return np.clip(np.rint(255.0 * gain * np.power(x, gamma)), 0, 255).astype(np.uint8)


def gamma(img: np.ndarray, g: float, rng: np.random.Generator) -> np.ndarray:
    """A gamma curve alone: g < 1 washes the face out (backlight, over-exposure), g > 1 darkens
    the mid-tones."""
    lut = np.clip(np.rint(255.0 * np.power(np.arange(256) / 255.0, g)), 0, 255).astype(np.uint8)
    return cv2.LUT(img, lut)


def occlusion(img: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A solid rectangle covering `fraction` of the crop (a hand, a cup, a scarf, the frame
    edge), of random aspect, position and grey level."""
    h, w = img.shape
    area = float(fraction) * h * w
    ratio = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
    bh = int(np.clip(round(math.sqrt(area * ratio)), 1, h))
    bw = int(np.clip(round(math.sqrt(area / ratio)), 1, w))
    y0 = int(rng.integers(0, h - bh + 1))
    x0 = int(rng.integers(0, w - bw + 1))
    out = img.copy()
    out[y0 : y0 + bh, x0 : x0 + bw] = int(rng.integers(0, 256))
    return out


@dataclass(frozen=True)
class Family:
    """One degradation family: its function, the strengths the benchmark reports (mildest
    first), the strength of the issue's table (the targets' setting), and the range training
    draws from uniformly."""

    fn: Callable[..., np.ndarray]
    unit: str
    strengths: tuple[float, ...]
    reference: float
    train_range: tuple[float, float]


#: The benchmark's families, by name. Strengths run from mild to severe.
FAMILIES: dict[str, Family] = {
    "lowres": Family(lowres, "face width, px", (32, 24, 16), 24, (12, 40)),
    "defocus": Family(defocus, "Gaussian sigma, px", (1.0, 1.5, 2.0), 1.5, (0.4, 2.5)),
    "motion": Family(motion, "blur length, px (horizontal)", (5, 7, 9), 7, (3, 11)),
    "jpeg": Family(jpeg, "JPEG quality", (40, 25, 15, 10), 15, (8, 60)),
    "noise": Family(noise, "noise sigma, grey levels", (4, 8, 12), 8, (2, 16)),
    "dark": Family(dark, "gain (gamma 1.8)", (0.6, 0.4, 0.25), 0.6, (0.2, 0.8)),
    "gamma": Family(gamma, "gamma", (0.5, 2.5), 2.5, (0.4, 2.8)),
    "occlusion": Family(occlusion, "occluded fraction", (0.1, 0.2, 0.3), 0.2, (0.05, 0.35)),
}


def degrade(img: np.ndarray, family: str, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Apply one named degradation at `strength` to a grey uint8 crop.

    Raises:
        ValueError: unknown family (the message lists the known ones) or not a grey uint8 crop.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown degradation {family!r}; known: {', '.join(FAMILIES)}")
    _check(img)
    return FAMILIES[family].fn(img, strength, rng)


def parse_set(name: str) -> tuple[str, float]:
    """``"jpeg@15"`` → ``("jpeg", 15.0)``; ``"clean"`` → ``("clean", 0.0)``.

    Raises:
        ValueError: unknown family or a strength that is not a number.
    """
    if name == "clean":
        return "clean", 0.0
    family, _, value = name.partition("@")
    if family not in FAMILIES:
        raise ValueError(f"unknown degradation {family!r}; known: clean, {', '.join(FAMILIES)}")
    if not value:
        return family, float(FAMILIES[family].reference)
    try:
        return family, float(value)
    except ValueError as exc:
        raise ValueError(f"degradation {name!r}: strength {value!r} is not a number") from exc


def benchmark_sets() -> list[str]:
    """Every set the robustness benchmark reports: ``clean`` and ``family@strength``."""
    return ["clean"] + [f"{name}@{s:g}" for name, fam in FAMILIES.items() for s in fam.strengths]


def reference_sets() -> list[str]:
    """The sets at the strengths of the issue's table (what the targets are measured on)."""
    return [f"{name}@{fam.reference:g}" for name, fam in FAMILIES.items()]


def apply_set(images: np.ndarray, name: str, seed: int = 0) -> np.ndarray:
    """Degrade a stack of grey crops ``(n, H, W)`` as benchmark set `name`; image ``i`` draws
    its randomness from ``(seed, set, i)`` alone, so every run (and every model) sees the same
    pixels."""
    family, strength = parse_set(name)
    if family == "clean":
        return images.copy()
    key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")
    out = np.empty_like(images)
    for i in range(len(images)):
        out[i] = degrade(images[i], family, strength, np.random.default_rng([seed, key, i]))
    return out


def random_degradation(
    img: np.ndarray,
    rng: np.random.Generator,
    p_clean: float = 0.35,
    p_second: float = 0.3,
    weights: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Training augmentation: with probability ``1 - p_clean`` one family at a random strength
    drawn from its `train_range` (motion at a random angle), and with probability `p_second` a
    second one on top (a dark, noisy, compressed stream is the usual case). Families are drawn
    uniformly, or in proportion to `weights` (family name → weight, 1 for a family not named)."""
    if weights is not None and (unknown := set(weights) - set(FAMILIES)):
        raise ValueError(f"unknown degradation {sorted(unknown)[0]!r}; known: {', '.join(FAMILIES)}")
    if rng.random() < p_clean:
        return img
    names = list(FAMILIES)
    odds = None
    if weights is not None:
        w = np.array([float(weights.get(n, 1.0)) for n in names])
        odds = w / w.sum()
    for round_ in range(2):
        if round_ == 1 and rng.random() >= p_second:
            break
        # Uniform draws keep rng.integers: a run without weights draws what it always drew.
        name = names[int(rng.integers(len(names)))] if odds is None else names[int(rng.choice(len(names), p=odds))]
        fam = FAMILIES[name]
        lo, hi = fam.train_range
        strength = float(rng.uniform(lo, hi))
        img = motion(img, strength, rng, angle_deg=None) if name == "motion" else fam.fn(img, strength, rng)
    return img
