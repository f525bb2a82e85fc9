"""models/compile_edgetpu.sh: which models it picks, where the compiled files go, and clear
errors with exit codes (the compiler itself is x86-64 Linux only, from Coral's apt repository)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # every test runs the shell script

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "models" / "compile_edgetpu.sh"


def compile_sh(*args: str, models_dir: Path, script: Path = SCRIPT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EDGE_FER_MODELS__DIR": str(models_dir)}
    return subprocess.run(["sh", str(script), *args], capture_output=True, text=True, env=env, timeout=30, check=False)


def test_help_explains_the_compiler_install(tmp_path: Path) -> None:
    result = compile_sh("-h", models_dir=tmp_path)
    assert result.returncode == 0
    assert "sudo apt-get install edgetpu-compiler" in result.stdout and "x86-64" in result.stdout and "Exit codes" in result.stdout


def test_default_models_are_the_int8_ones_here_and_in_the_models_dir(tmp_path: Path) -> None:
    (tmp_path / "face_detection_short_range_int8.tflite").write_bytes(b"x")
    (tmp_path / "face_landmark.tflite").write_bytes(b"x")  # a float model: never picked
    result = compile_sh("-n", models_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"{REPO}/models/edge_fer_emotion_int8.tflite -> {REPO}/models/edge_fer_emotion_int8_edgetpu.tflite" in lines
    assert f"{tmp_path}/face_detection_short_range_int8.tflite -> {tmp_path}/face_detection_short_range_int8_edgetpu.tflite" in lines
    assert not any("face_landmark" in line for line in lines)
    out = tmp_path / "out"
    out.mkdir()
    result = compile_sh("-n", "-o", str(out), str(tmp_path / "face_detection_short_range_int8.tflite"), models_dir=tmp_path)
    assert result.stdout.splitlines() == [
        f"{tmp_path}/face_detection_short_range_int8.tflite -> {out}/face_detection_short_range_int8_edgetpu.tflite"
    ]


def test_a_missing_compiler_says_how_to_install_it(tmp_path: Path) -> None:
    result = compile_sh("-c", str(tmp_path / "edgetpu_compiler"), models_dir=tmp_path)
    assert result.returncode == 127
    assert "not found: install edgetpu-compiler from Coral's apt repository" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing_int8.tflite"], "missing_int8.tflite does not exist"),
        (["README.md"], "is not a .tflite file"),
        (["-o", "/nonexistent/out", "MODEL"], "output folder /nonexistent/out does not exist"),
        (["COMPILED"], "is already compiled"),
        (["-x"], "usage: models/compile_edgetpu.sh"),
    ],
)
def test_bad_arguments_are_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "m_int8.tflite").write_bytes(b"x")
    (tmp_path / "m_int8_edgetpu.tflite").write_bytes(b"x")
    args = [{"MODEL": str(tmp_path / "m_int8.tflite"), "COMPILED": str(tmp_path / "m_int8_edgetpu.tflite")}.get(a, a) for a in args]
    result = compile_sh(*args, models_dir=tmp_path)
    assert result.returncode == 2 and message in result.stderr


def test_nothing_to_compile_is_a_usage_error(tmp_path: Path) -> None:
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(SCRIPT, lone / "compile_edgetpu.sh")  # a folder without int8 models
    result = compile_sh(models_dir=tmp_path, script=lone / "compile_edgetpu.sh")
    assert result.returncode == 2 and "no *_int8.tflite model" in result.stderr
