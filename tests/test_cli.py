"""Bad input at the command line: each failure has its exit code and a message that says what to do."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edge_fer.cli import main
from tests.conftest import edge_fer


def test_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for fragment in ("--source", "picamera2", "mqtt://", "exit codes", "--realtime"):
        assert fragment in out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["run", "--max-frames", "0"], "must be at least 1"),
        (["run", "--realtime", "sometimes"], "expected on or off"),
        (["run", "--sink", "kafka://x"], "unknown sink"),
        (["bogus"], "invalid choice"),
        (["models"], "choose an action"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], fragment: str, caplog: pytest.LogCaptureFixture) -> None:
    assert main(argv) == 2
    assert fragment in caplog.text


def test_bad_config_key_exits_2_with_the_key(tmp_path: Path, run_env: dict[str, str]) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[detector]\nscore_treshold = 0.4\n")
    result = edge_fer(["run", "--config", str(cfg)], run_env, tmp_path)
    assert result.returncode == 2
    assert "detector.score_treshold: unknown key" in result.stderr


def test_validate_config_prints_settings_without_password(tmp_path: Path, run_env: dict[str, str]) -> None:
    result = edge_fer(["run", "--sink", "mqtt://u:hunter2@h", "--validate-config"], run_env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"host": "h"' in result.stdout and "hunter2" not in result.stdout + result.stderr


#: Camera URLs with credentials in each part a camera may take them (see test_sources.REDACTED).
SECRET_URLS = [
    "rtsp://admin:s3cr3t@127.0.0.1:{port}/live",
    "rtsp://127.0.0.1:{port}/stream?user=admin&pwd=s3cr3t",
    "http://127.0.0.1:{port}/video.mjpg?password=s3cr3t&passwd=s3cr3t&token=s3cr3t&key=s3cr3t",
    "rtsp://127.0.0.1:{port}/user=admin_password=s3cr3t_channel=1_stream=0.sdp",
]


@pytest.mark.parametrize("url", SECRET_URLS)
def test_source_credentials_never_reach_logs_nor_printed_settings(url: str, tmp_path: Path, run_env: dict[str, str]) -> None:
    """`--validate-config`, the start-up log line, the open error (OpenCV's and FFmpeg's own
    output included: it is all on stderr, i.e. in the journal) and `doctor` show the camera
    without its credentials."""
    from tests.conftest import free_port

    url = url.format(port=free_port())  # nothing listens there: the open fails at once
    shown = edge_fer(["run", "--source", url, "--validate-config"], run_env, tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert '"spec": "rtsp://' in shown.stdout or '"spec": "http://' in shown.stdout
    ran = edge_fer(["run", "--source", url, "--max-frames", "1"], {**run_env, "EDGE_FER_LOG_LEVEL": "debug"}, tmp_path)
    assert ran.returncode == 3, ran.stderr
    assert "starting: device test-device, source " in ran.stderr and "cannot open" in ran.stderr
    doctor = edge_fer(["doctor", "--source", url], run_env, tmp_path)
    assert "source " in doctor.stdout
    for result in (shown, ran, doctor):
        assert "s3cr3t" not in result.stdout + result.stderr


def test_unreadable_source_exits_3(tmp_path: Path, run_env: dict[str, str]) -> None:
    result = edge_fer(["run", "--source", str(tmp_path / "nope.mp4"), "--max-frames", "5"], run_env, tmp_path)
    assert result.returncode == 3, result.stderr
    assert "nope.mp4" in result.stderr
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("this is not a video")
    result = edge_fer(["run", "--source", str(not_video), "--max-frames", "5"], run_env, tmp_path)
    assert result.returncode == 3, result.stderr


@pytest.mark.parametrize("content", [b"this is a text file named .jpg", b""], ids=["text", "empty"])
def test_undecodable_still_exits_3_naming_the_file(tmp_path: Path, run_env: dict[str, str], content: bytes) -> None:
    """A still that cannot be decoded is not retried: exit 3 at once, one error line naming it;
    a folder of such files likewise."""
    still = tmp_path / "stills" / "photo.jpg"
    still.parent.mkdir()
    still.write_bytes(content)
    for spec in (still, still.parent):
        result = edge_fer(["run", "--source", str(spec), "--max-frames", "5"], run_env, tmp_path, timeout_s=60)
        assert result.returncode == 3, result.stderr
        errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
        assert len(errors) == 1 and str(still) in errors[0], result.stderr


def test_missing_and_corrupt_model_exit_4(tmp_path: Path, run_env: dict[str, str], models_dir: Path) -> None:
    broken = tmp_path / "models"
    shutil.copytree(models_dir, broken)
    env = dict(run_env, EDGE_FER_MODELS__DIR=str(broken))
    (broken / "face_detection_short_range.tflite").unlink()
    result = edge_fer(["run", "--source", "demo", "--max-frames", "5"], env, tmp_path)
    assert result.returncode == 4
    assert "edge-fer models fetch" in result.stderr
    (broken / "face_detection_short_range.tflite").write_bytes(b"\0" * 1000)
    result = edge_fer(["run", "--source", "demo", "--max-frames", "5"], env, tmp_path)
    assert result.returncode == 4
    assert "sha256" in result.stderr
    verify = edge_fer(["models", "verify"], env, tmp_path)
    assert verify.returncode == 4 and "corrupt" in verify.stdout


def test_every_exit_code_is_in_the_help_and_the_readme(capsys: pytest.CaptureFixture[str]) -> None:
    from edge_fer.errors import EdgeFerError

    codes = {cls.exit_code for cls in (EdgeFerError, *EdgeFerError.__subclasses__())} | {0, 1, 130}
    assert codes >= {0, 1, 2, 3, 4, 5, 130}
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("Exit codes of `edge-fer`") :][:800]
    for argv in (["--help"], ["run", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        text = out[out.index("exit codes:") :]
        for code in codes:
            assert f"{code} " in text, (argv, code)
            assert f"{code} " in section, code


def test_validate_config_checks_what_run_checks(tmp_path: Path, run_env: dict[str, str]) -> None:
    unknown_model = edge_fer(["run", "--validate-config"], dict(run_env, EDGE_FER_MODELS__EMOTION="nope"), tmp_path)
    assert unknown_model.returncode == 4 and "unknown emotion 'nope'" in unknown_model.stderr
    remote = edge_fer(["run", "--validate-config", "--dashboard", "0.0.0.0:8080"], run_env, tmp_path)
    assert remote.returncode == 2 and "only loopback" in remote.stderr
    missing_ca = edge_fer(
        ["run", "--validate-config", "--sink", "mqtts://h"], dict(run_env, EDGE_FER_MQTT__CA_FILE=str(tmp_path / "ca.crt")), tmp_path
    )
    assert missing_ca.returncode == 2 and "mqtt.ca_file" in missing_ca.stderr


def test_a_bad_value_in_the_file_is_an_error_even_when_a_flag_overrides_it(tmp_path: Path, run_env: dict[str, str]) -> None:
    cfg = tmp_path / "edge-fer.toml"
    cfg.write_text("[aggregate]\nwindow_s = -5\n")
    result = edge_fer(["run", "--config", str(cfg), "--window", "5", "--validate-config"], run_env, tmp_path)
    assert result.returncode == 2
    assert "edge-fer.toml" in result.stderr and "aggregate.window_s" in result.stderr
    env = edge_fer(["run", "--window", "5", "--validate-config"], dict(run_env, EDGE_FER_AGGREGATE__WINDOW_S="0"), tmp_path)
    assert env.returncode == 2 and "environment" in env.stderr
    # Rules spanning keys are judged on the result: another layer may complete them.
    cfg.write_text('[mqtt]\npassword_file = "/run/pw"\n')
    ok = edge_fer(["run", "--config", str(cfg), "--validate-config"], dict(run_env, EDGE_FER_MQTT__USERNAME="kiosk"), tmp_path)
    assert ok.returncode == 0, ok.stderr


def test_bench_help_names_every_timed_stage() -> None:
    from edge_fer.cli import build_parser
    from edge_fer.pipeline import STAGES

    subcommands = next(a for a in build_parser()._actions if a.dest == "command")
    description = subcommands.choices["bench"].description  # type: ignore[index]
    assert [stage for stage in STAGES if stage not in description] == []
