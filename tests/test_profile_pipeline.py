"""benchmarks/profile_pipeline.py: pyinstrument stays optional, and samples land in the right bucket."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "profile_pipeline.py"


@pytest.mark.integration  # a subprocess
def test_without_pyinstrument_it_says_how_to_install_it() -> None:
    code = f"import sys, runpy; sys.modules['pyinstrument'] = None; sys.argv = ['p']; runpy.run_path({str(SCRIPT)!r}, run_name='__main__')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "pip install pyinstrument" in result.stderr
    assert result.stdout == ""


def test_breakdown_splits_invokes_wait_and_functions() -> None:
    script: dict[str, Any] = runpy.run_path(str(SCRIPT))
    package = script["PACKAGE"]
    loop, process = script["LOOP"], script["PROCESS"]

    def frame(function: str, path: str, line: int = 1, cls: str = "") -> str:
        return f"{function}\x00{path}\x00{line}" + (f"\x01c{cls}" if cls else "")

    base = [frame("main", "x.py"), frame("run", loop[0], loop[1], "Runner")]
    in_process = [*base, frame("process", process[0], process[1], "Pipeline")]
    mesh = [
        *in_process,
        frame("_mesh", package + "pipeline.py", 299, "Pipeline"),
        frame("meshes", package + "vision/landmarks.py", 151, "FaceLandmarker"),
    ]
    records = [
        ([*mesh, frame("run", package + "runtime/litert.py", 137, "LiteRTModel"), frame("PyCapsule.Invoke", "<built-in>", 0)], 0.007),
        ([*mesh, frame("align_face", package + "vision/align.py", 103), frame("warpAffine", "<built-in>", 0)], 0.002),
        ([*base, frame("get", package + "capture/threaded.py", 159, "CaptureThread"), frame("wait", "threading.py")], 0.001),
        ([frame("main", "x.py"), frame("load", "y.py")], 5.0),  # outside the frame loop: not counted
    ]
    out = script["breakdown"](records, 1, 5)
    ms = out["ms_per_frame"]
    assert ms["loop_total"] == 10.0 and ms["capture_wait"] == 1.0 and ms["process"] == 9.0
    assert ms["invokes_profiled"] == 7.0 and ms["invokes_by_caller"] == {"edge_fer.vision.landmarks": 7.0}
    assert ms["outside_invokes"] == 2.0 and out["steps"]["Pipeline._mesh"] == {"outside_invokes": 2.0, "invokes": 7.0}
    assert out["functions"][0]["function"] == "edge_fer.vision.align:align_face" and out["functions"][0]["calls"] == {"warpAffine": 2.0}
