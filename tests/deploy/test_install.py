"""The install: the lock is what runs, setup.py's ranges admit it, 32-bit ARM is stopped clearly."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "firmware_config" / "constraints.txt"
sys.path.insert(0, str(REPO / "firmware_config"))
import lock  # noqa: E402  (firmware_config/lock.py, the lock's own tool)


def applicable_pins() -> list[tuple[str, str]]:
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    return [(name, ver) for name, ver, marker in lock.pins(LOCK) if lock.marker_applies(marker, here)]


def test_the_lock_is_what_is_installed() -> None:
    """`make install` installs with ``-c constraints.txt``: every pinned package present in this
    environment has the pinned version (a drift means the figures were not measured with it)."""
    drift = []
    for name, pinned in applicable_pins():
        try:
            have = version(name)
        except PackageNotFoundError:
            continue
        if have != pinned:
            drift.append(f"{name} {have} (locked {pinned})")
    assert not drift, drift
    for runtime in ("numpy", "opencv-python-headless", "ai-edge-litert", "paho-mqtt", "pydantic"):
        assert runtime in dict(applicable_pins()), runtime


def test_setup_ranges_admit_the_lock_and_exclude_untested_releases() -> None:
    from packaging.requirements import Requirement

    text = (REPO / "setup.py").read_text()
    block = text[text.index("install_requires=[") : text.index("],", text.index("install_requires=["))]
    requirements = [Requirement(r) for r in re.findall(r'"([^"]+)"', block)]
    pins = dict(applicable_pins())
    for req in requirements:
        if req.marker is not None and not req.marker.evaluate():
            continue
        assert req.specifier.contains(pins[lock.canonical(req.name)]), f"{req} does not admit the locked {pins[lock.canonical(req.name)]}"
        assert any(spec.operator == "<" for spec in req.specifier), f"{req} has no upper bound"
    opencv = next(r for r in requirements if r.name == "opencv-python-headless")
    assert not opencv.specifier.contains("5.0.0.93")  # an untested major


@pytest.mark.integration  # runs make
def test_32_bit_arm_stops_with_a_clear_message() -> None:
    done = subprocess.run(["make", "-s", "arch", "ARCH=armv7l"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode != 0
    assert "needs a 64-bit OS" in done.stdout and "64-bit Raspberry Pi OS" in done.stdout
    assert subprocess.run(["make", "-s", "arch", "ARCH=aarch64"], cwd=REPO, capture_output=True).returncode == 0
    # setup.py says the same to a pip run on the board itself
    code = "import platform, runpy; platform.machine = lambda: 'armv7l'; runpy.run_path('setup.py')"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode != 0 and "needs a 64-bit OS" in done.stderr


@pytest.mark.parametrize(
    ("marker", "python", "applies"),
    [
        (None, "3.10", True),
        ('python_version < "3.11"', "3.10", True),
        ('python_version < "3.11"', "3.11", False),
        ('python_version >= "3.11"', "3.11", True),
    ],
)
def test_lock_markers(marker: str | None, python: str, applies: bool) -> None:
    assert lock.marker_applies(marker, python) is applies
