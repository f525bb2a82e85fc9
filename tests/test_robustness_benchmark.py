"""benchmarks/robustness.py on a tiny fixture: deterministic, correct JSON, honest figures."""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_fer.config import load_settings
from edge_fer.tools.evaluate import share_bias

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "robustness.py"
FACES = Path(__file__).parent / "data" / "fer2013_faces"
SETS = ["clean", "lowres@16", "jpeg@15", "noise@8", "defocus@1.5"]


@pytest.fixture(scope="module")
def bench() -> dict[str, Any]:
    return runpy.run_path(str(SCRIPT))


@pytest.fixture(scope="module")
def result(bench: dict[str, Any], models_dir: Path) -> dict[str, Any]:
    settings = load_settings(environ={}, overrides={"models": {"dir": str(models_dir)}})
    return bench["run"](FACES, [("edge_fer_emotion", None), ("mini_xception", None)], SETS, settings=settings)  # type: ignore[no-any-return]


def test_the_record_holds_every_model_and_set(result: dict[str, Any]) -> None:
    assert result["n"] == 105 and set(result["models"]) == {"edge_fer_emotion", "mini_xception"}
    assert result["true_shares"] == pytest.approx({k: 15 / 105 for k in result["true_shares"]}, abs=1e-4)
    for entry in result["models"].values():
        assert list(entry["sets"]) == SETS and entry["ms_per_face"] > 0
        for record in entry["sets"].values():
            assert 0 <= record["accuracy"] <= 1 and 0 <= record["macro_f1"] <= 1
            bias = record["share_bias"]
            assert set(bias) == set(result["true_shares"]) and abs(sum(bias.values())) < 1e-3  # shares sum to 1 either side
            assert record["max_abs_share_bias"] == max(abs(v) for v in bias.values())
            assert 0 <= record["gated"]["kept"] <= 1
        ref = entry["reference"]
        clean = entry["sets"]["clean"]["accuracy"]
        refs = [entry["sets"][s]["accuracy"] for s in ("jpeg@15", "noise@8", "defocus@1.5")]
        assert ref["clean_accuracy"] == clean and ref["max_drop"] == pytest.approx(clean - min(refs), abs=1e-4)
    json.dumps(result, allow_nan=False)


def test_degradations_hurt_and_the_gate_drops_blurred_faces(result: dict[str, Any]) -> None:
    sets = result["models"]["edge_fer_emotion"]["sets"]
    assert sets["defocus@1.5"]["accuracy"] < sets["clean"]["accuracy"]
    assert sets["clean"]["gated"]["kept"] > 0.9  # sharp faces pass
    assert sets["defocus@1.5"]["gated"]["kept"] < 0.1 and sets["lowres@16"]["gated"]["kept"] == 0  # blurred and small ones do not


def test_it_is_deterministic(bench: dict[str, Any], result: dict[str, Any], models_dir: Path) -> None:
    settings = load_settings(environ={}, overrides={"models": {"dir": str(models_dir)}})
    again = bench["run"](FACES, [("edge_fer_emotion", None), ("mini_xception", None)], SETS, settings=settings)
    for name in result["models"]:
        assert again["models"][name]["sets"] == result["models"][name]["sets"]


def test_share_bias_is_predicted_minus_true_share() -> None:
    y = np.array([0, 0, 1, 1])
    assert share_bias(y, np.array([0, 0, 0, 1]), ("a", "b")) == {"a": 0.25, "b": -0.25}


def test_the_command_line_writes_json_and_a_plot(
    bench: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, models_dir: Path
) -> None:
    monkeypatch.setenv("EDGE_FER_MODELS__DIR", str(models_dir))
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    args = [str(FACES), "--models", "edge_fer_emotion", "--sets", "clean", "jpeg@15", "--limit", "21", "--json", str(out), "--plot", str(png)]
    assert bench["main"](args) == 0
    record = json.loads(out.read_text())
    assert record["n"] == 21 and json.loads(capsys.readouterr().out) == record
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit):
        bench["main"]([str(FACES), "--sets", "fog@2"])
