"""Frame sources on real files, and the Pi camera path through a fake at the hardware boundary."""

from __future__ import annotations

import http.server
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_fer.capture import FrameSource, source_from_spec
from edge_fer.capture.base import camera_index, classify_spec, redact
from edge_fer.capture.folder import ImageFolderSource
from edge_fer.capture.opencv import OpenCVSource, to_bgr
from edge_fer.capture.picam import Picamera2Source
from edge_fer.config import SourceConfig
from edge_fer.errors import SourceError
from tests.fakes import FakeCameraSystem

CFG = SourceConfig()


# -- spec parsing ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "kind", "index"),
    [
        ("demo", "demo", None),
        (" demo ", "demo", None),
        ("picamera2", "picamera2", 0),
        ("picamera2:1", "picamera2", 1),
        ("v4l2:0", "v4l2", 0),
        ("v4l2:12", "v4l2", 12),
        ("2", "v4l2", 2),
        ("/dev/video3", "v4l2", 3),
        ("v4l2:/dev/video4", "v4l2", 4),
        ("rtsp://user:pw@cam.local/stream", "stream", None),
        ("rtsps://cam.local:322/s", "stream", None),
        ("http://cam.local/mjpg", "stream", None),
        ("https://cam.local/mjpg?x=1", "stream", None),
    ],
)
def test_spec_kinds(spec: str, kind: str, index: int | None) -> None:
    assert classify_spec(spec) == kind
    if index is not None:
        assert camera_index(spec) == index


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty source spec"),
        ("picamera3", "no such file, folder or device"),
        ("picamera2:x", "not a valid source spec"),
        ("v4l2:abc", "not a valid source spec"),
        ("v4l2:", "not a valid source spec"),
        ("ftp://cam.local/x", "not a valid source spec"),
        ("-1", "no such file"),
        ("/nonexistent/clip.mp4", "no such file"),
    ],
)
def test_bad_specs_list_the_accepted_forms(spec: str, message: str) -> None:
    with pytest.raises(SourceError, match=message) as info:
        classify_spec(spec)
    assert "accepted sources: picamera2[:N]" in str(info.value) and "rtsp://" in str(info.value)


def test_spec_files_and_folders(tmp_path: Path, models_dir: Path) -> None:
    assert classify_spec(str(models_dir / "single_face.mp4")) == "file"
    assert classify_spec(str(models_dir / "single_face.jpg")) == "folder"  # one image = one-image folder
    assert classify_spec(str(tmp_path)) == "folder"
    with pytest.raises(SourceError, match="accepted sources"):
        classify_spec(str(tmp_path / "missing.mp4"))


#: Every place a camera URL carries a credential: userinfo, query parameters under any name,
#: path segments (cameras that take ``user=…_password=…`` in the path), the fragment.
REDACTED = [
    ("rtsp://admin:secret@10.0.0.2:554/s", "rtsp://***@10.0.0.2:554/s"),
    ("rtsp://admin@10.0.0.2/s", "rtsp://***@10.0.0.2/s"),
    ("rtsp://a%40b:p%3Asecret@10.0.0.2/s", "rtsp://***@10.0.0.2/s"),
    ("rtsp://u:pa@ss:secret@10.0.0.2/s", "rtsp://***@10.0.0.2/s"),
    ("http://cam/video.cgi?user=admin&pwd=secret", "http://cam/video.cgi?user=***&pwd=***"),
    ("rtsp://cam/stream?user=admin&password=secret&channel=1", "rtsp://cam/stream?user=***&password=***&channel=***"),
    ("http://cam/mjpg?passwd=secret", "http://cam/mjpg?passwd=***"),
    ("https://cam/live?token=secret", "https://cam/live?token=***"),
    ("http://cam/s.mjpg?key=secret;sig=secret", "http://cam/s.mjpg?key=***&sig=***"),
    ("http://cam/s.mjpg?secret", "http://cam/s.mjpg?***"),
    ("rtsp://cam:554/user=admin_password=secret_channel=1_stream=0.sdp", "rtsp://cam:554/***"),
    ("rtsp://cam/live/ch0?u=x#token=secret", "rtsp://cam/live/ch0?u=***"),
    ("rtsp://[fe80::1:secret@", "rtsp://***"),
    ("rtsp://10.0.0.2/s", "rtsp://10.0.0.2/s"),
    ("mqtt://u:secret@broker:1883", "mqtt://***@broker:1883"),
    ("/videos/a.mp4", "/videos/a.mp4"),
    ("demo", "demo"),
]


@pytest.mark.parametrize(("url", "shown"), REDACTED)
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert "secret" not in redact(url) and "admin" not in redact(url)


def test_redact_is_the_only_url_masking_function() -> None:
    """One function hides credentials everywhere (a second copy drifted once: the runner's own
    masker logged ``?pwd=…`` in clear)."""
    package = Path(__file__).resolve().parents[2] / "edge_fer"
    offenders = []
    for path in package.rglob("*.py"):
        text = path.read_text()
        if path.name != "base.py" and ("urlsplit" in text or 'rsplit("@"' in text or "rsplit('@'" in text):
            offenders.append(str(path.relative_to(package)))
    # config.py parses mqtt:// sink URLs into host, user and password, and the dashboard parses
    # the Host header (neither is a masker).
    assert set(offenders) <= {"config.py", "sinks/dashboard.py"}, offenders


def test_credentials_never_reach_names_nor_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    source = source_from_spec("rtsp://admin:secret@127.0.0.1:9/s", CFG, Path("."))
    assert "secret" not in source.name and "admin" not in source.name
    assert isinstance(source, FrameSource) and source.live and not source.finite

    class NeverOpens:  # the cv2.VideoCapture boundary: no network in tests
        def __init__(self, *_args: object) -> None:
            pass

        def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
            return False

        def release(self) -> None:
            pass

    from edge_fer.capture import opencv

    monkeypatch.setattr(opencv.cv2, "VideoCapture", NeverOpens)
    with pytest.raises(SourceError, match="check the URL") as info:
        source.open()
    assert "secret" not in str(info.value)


# -- OpenCV: video files ---------------------------------------------------------------------
def test_video_file_frames_and_times(models_dir: Path) -> None:
    source = source_from_spec(str(models_dir / "single_face.mp4"), CFG, models_dir)
    assert isinstance(source, OpenCVSource) and source.finite and not source.live
    with source:
        assert source.nominal_fps == pytest.approx(30.0)
        frames = []
        while (frame := source.read()) is not None:
            frames.append(frame)
        assert source.read() is None  # stays at the end
    assert len(frames) == 72
    assert all(f.pixels.shape == (360, 640, 3) and f.pixels.dtype == np.uint8 for f in frames)
    assert [f.index for f in frames] == list(range(72))
    np.testing.assert_allclose([f.t for f in frames], np.arange(72) / 30.0)


def test_a_source_from_a_spec_opens_reads_and_closes_twice(models_dir: Path) -> None:
    source = source_from_spec(str(models_dir / "single_face.mp4"), SourceConfig(), models_dir)
    source.open()
    try:
        frame = source.read()
        assert frame is not None and frame.index == 0
    finally:
        source.close()
        source.close()  # twice is fine


def test_looping_keeps_time_increasing(models_dir: Path) -> None:
    with source_from_spec(str(models_dir / "single_face.mp4"), SourceConfig(loop=True), models_dir) as source:
        assert not source.finite
        frames = [source.read() for _ in range(160)]
    times = [f.t for f in frames if f is not None]
    assert len(times) == 160 and all(b > a for a, b in zip(times, times[1:]))
    assert times[72] == pytest.approx(72 / 30.0) and times[144] == pytest.approx(144 / 30.0)
    assert [f.index for f in frames if f is not None] == list(range(160))


def test_demo_is_the_provisioned_footage_and_loops_by_default(models_dir: Path) -> None:
    source = source_from_spec("demo", CFG, models_dir)
    assert source.finite is False and source.name == "demo"
    with source:
        frame = source.read()
    assert frame is not None and frame.pixels.shape == (360, 640, 3)
    assert source_from_spec("demo", SourceConfig(loop=False), models_dir).finite is True


def test_corrupt_video_is_a_source_error(tmp_path: Path, models_dir: Path) -> None:
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"\0" * 4096)
    with pytest.raises(SourceError, match="decode"), source_from_spec(str(bad), CFG, models_dir) as source:
        source.read()


def test_missing_camera_is_a_source_error_with_a_hint(models_dir: Path) -> None:
    assert not Path("/dev/video9").exists()
    with pytest.raises(SourceError, match=r"/dev/video9 not found: is the camera connected.*v4l2-ctl --list-devices"):
        source_from_spec("v4l2:9", CFG, models_dir).open()


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((4, 5), np.uint8), ((4, 5, 1), np.uint8), ((4, 5, 2), np.uint8), ((4, 5, 3), np.uint8), ((4, 5, 4), np.uint8), ((4, 5, 3), np.uint16)],
)
def test_to_bgr_gives_three_channel_uint8(shape: tuple[int, ...], dtype: type) -> None:
    out = to_bgr(np.full(shape, 200 if dtype == np.uint8 else 200 * 256, dtype))
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8 and int(out[0, 0, 0]) == 200


# -- image folders ---------------------------------------------------------------------------
def test_image_folder_skips_unreadable_files(tmp_path: Path, models_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    image = cv2.imread(str(models_dir / "single_face.jpg"))
    assert image is not None
    for name in ("a.jpg", "c.JPG", "d.png"):
        cv2.imwrite(str(tmp_path / name), image if name != "d.png" else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    source = source_from_spec(str(tmp_path), SourceConfig(fps=5), models_dir)
    assert isinstance(source, ImageFolderSource) and source.nominal_fps == 5 and source.finite
    with source:
        frames = [source.read(), source.read(), source.read()]
        assert source.read() is None
    assert all(f is not None and f.pixels.ndim == 3 and f.pixels.shape[2] == 3 and f.pixels.dtype == np.uint8 for f in frames)
    assert [f.index for f in frames if f] == [0, 1, 2]
    np.testing.assert_allclose([f.t for f in frames if f], [0.0, 0.2, 0.4])
    assert caplog.text.count("b.jpg") == 1 and "notes.txt" not in caplog.text


def test_looping_folder_warns_once_per_bad_file(tmp_path: Path, models_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    shutil.copy(models_dir / "single_face.jpg", tmp_path / "a.jpg")
    (tmp_path / "b.png").write_bytes(b"\x89PNG broken")
    with source_from_spec(str(tmp_path), SourceConfig(loop=True), models_dir) as source:
        frames = [source.read() for _ in range(5)]
    assert [f.index for f in frames if f] == list(range(5))
    np.testing.assert_allclose([f.t for f in frames if f], np.arange(5) / 10.0)  # default pace 10 frames/s
    assert caplog.text.count("b.png") == 1


def test_single_image_is_a_one_frame_source(models_dir: Path) -> None:
    with source_from_spec(str(models_dir / "single_face.jpg"), CFG, models_dir) as source:
        first, end = source.read(), source.read()
    assert first is not None and first.pixels.shape[2] == 3 and end is None


def test_empty_folder_is_a_source_error(tmp_path: Path, models_dir: Path) -> None:
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(SourceError, match="holds no images"):
        source_from_spec(str(tmp_path), CFG, models_dir).open()


def test_folder_of_only_unreadable_images_is_a_source_error(tmp_path: Path, models_dir: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"junk")
    (tmp_path / "b.png").write_bytes(b"")
    with pytest.raises(SourceError, match=r"none of the 2 images .* can be decoded \(first: .*a\.jpg\)"):
        source_from_spec(str(tmp_path), CFG, models_dir).open()


@pytest.mark.parametrize("content", [b"this is a text file", b""], ids=["text-named-jpg", "empty"])
def test_undecodable_single_image_fails_at_open_naming_it(tmp_path: Path, models_dir: Path, content: bytes) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(content)
    with pytest.raises(SourceError, match=rf"{path} cannot be decoded"):
        source_from_spec(str(path), CFG, models_dir).open()


def test_truncated_video_says_so(tmp_path: Path, models_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An AVI cut in half: its header still announces 48 frames, about 20 decode."""
    whole, cut = tmp_path / "whole.avi", tmp_path / "cut.avi"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter.fourcc(*"MJPG"), 24.0, (320, 180))
    for i in range(48):
        writer.write(np.full((180, 320, 3), i * 5, np.uint8))
    writer.release()
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    for path, warned in ((whole, False), (cut, True)):
        caplog.clear()
        with source_from_spec(str(path), CFG, models_dir) as source:
            frames = 0
            while source.read() is not None:
                frames += 1
        assert (frames == 48) is not warned
        assert ("truncated or damaged" in caplog.text) is warned
        if warned:
            assert f"ended after {frames} of the 48 frames" in caplog.text and caplog.text.count("truncated or damaged") == 1


# -- picamera2 -------------------------------------------------------------------------------
def test_picamera2_is_not_imported_until_opened(monkeypatch: pytest.MonkeyPatch, models_dir: Path) -> None:
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    source_from_spec("picamera2", CFG, models_dir)
    assert "picamera2" not in sys.modules


def test_picamera2_missing_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch, models_dir: Path) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails as when not installed
    with pytest.raises(SourceError, match=r"picamera2 is not installed.*sudo apt install python3-picamera2.*--system-site-packages.*edge-fer\[pi\]"):
        source_from_spec("picamera2", CFG, models_dir).open()


@pytest.fixture
def camera(monkeypatch: pytest.MonkeyPatch, models_dir: Path) -> FakeCameraSystem:
    system = FakeCameraSystem(models_dir / "single_face.jpg")
    monkeypatch.setitem(sys.modules, "picamera2", system.module())
    return system


def test_picamera2_lifecycle_through_the_fake_device(camera: FakeCameraSystem, models_dir: Path) -> None:
    cfg = SourceConfig(width=320, height=240, fps=15)
    source = source_from_spec("picamera2", cfg, models_dir)
    assert isinstance(source, Picamera2Source) and source.live and not source.finite and source.nominal_fps == 15
    with source:
        frames = [source.read(), source.read()]
    assert camera.calls == [
        "init:0", "create_video_configuration", "configure", "start", "capture_array", "capture_array", "stop", "close",
    ]  # fmt: skip
    assert camera.configs[0]["main"]["size"] == (320, 240) and camera.configs[0]["main"]["format"] == "RGB888"
    assert camera.configs[0]["controls"] == {"FrameRate": 15.0}
    assert all(f is not None and f.pixels.shape == (240, 320, 3) and f.pixels.dtype == np.uint8 for f in frames)
    assert frames[0] is not None and frames[1] is not None
    assert frames[1].t >= frames[0].t and [frames[0].index, frames[1].index] == [0, 1]
    # RGB888 is already BGR in memory: the photo comes out in OpenCV's channel order, unswapped.
    expected = cv2.resize(camera.image, (320, 240), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(frames[0].pixels, expected)


def test_picamera2_defaults_and_camera_number(camera: FakeCameraSystem, models_dir: Path) -> None:
    camera.cameras = 2
    with source_from_spec("picamera2:1", CFG, models_dir) as source:
        frame = source.read()
    assert camera.calls[0] == "init:1"
    assert frame is not None and frame.pixels.shape == (480, 640, 3)


@pytest.mark.parametrize(
    ("setup", "message"),
    [("missing", "no camera 1 found by libcamera.*rpicam-hello --list-cameras"), ("busy", "cannot be acquired: is another program")],
)
def test_picamera2_open_errors_say_what_to_do(camera: FakeCameraSystem, models_dir: Path, setup: str, message: str) -> None:
    camera.busy = setup == "busy"
    with pytest.raises(SourceError, match=message):
        source_from_spec("picamera2:1" if setup == "missing" else "picamera2", CFG, models_dir).open()


def test_picamera2_capture_failure_is_a_source_error(camera: FakeCameraSystem, models_dir: Path) -> None:
    camera.fail_captures = 1
    source = source_from_spec("picamera2", CFG, models_dir)
    with pytest.raises(SourceError, match="stopped delivering frames: Camera frontend has timed out"), source:
        source.read()
    assert camera.calls[-2:] == ["stop", "close"]  # released even when a read failed


# -- network streams -------------------------------------------------------------------------
class MjpegCamera(http.server.BaseHTTPRequestHandler):
    """An IP camera's MJPEG endpoint (multipart/x-mixed-replace), serving a real photo."""

    jpeg = b""
    frames = 200

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        if self.path != "/video.mjpg":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        try:
            for _ in range(self.frames):
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(self.jpeg))
                self.wfile.write(self.jpeg + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up: a normal end for a camera stream

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def http_server(models_dir: Path) -> Iterator[str]:
    """A local MJPEG camera: a real network stream through OpenCV, no outside network."""
    handler = type("Camera", (MjpegCamera,), {"jpeg": (models_dir / "single_face.jpg").read_bytes()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_stream_is_a_live_source(http_server: str, models_dir: Path) -> None:
    source = source_from_spec(f"{http_server}/video.mjpg", CFG, models_dir)
    assert source.live and not source.finite
    with source:
        before = time.monotonic()
        frames = [source.read() for _ in range(5)]
    photo = cv2.imread(str(models_dir / "single_face.jpg"))
    assert photo is not None and all(f is not None and f.pixels.shape == photo.shape for f in frames)
    assert [f.index for f in frames if f] == list(range(5))
    assert all(f is not None and f.t >= before for f in frames)  # arrival time, not the file's time


def test_unreachable_stream_is_a_source_error(http_server: str, models_dir: Path) -> None:
    with pytest.raises(SourceError, match="cannot open http://127.0.0.1.*check the URL"):
        source_from_spec(f"{http_server}/missing.mp4", CFG, models_dir).open()
