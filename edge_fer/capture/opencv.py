"""OpenCV sources: V4L2/USB cameras, video files (and the demo footage), RTSP/HTTP streams."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2
import numpy as np

from edge_fer.capture.base import SOURCES, SourceBase, camera_index, redact
from edge_fer.config import SourceConfig
from edge_fer.errors import SourceError
from edge_fer.models import asset_path
from edge_fer.types import Frame

logger = logging.getLogger(__name__)

#: Frame rate assumed for a file whose container does not tell (frames/s).
FALLBACK_FPS = 25.0
#: How long a network stream may take to open, or to deliver the next frame (ms).
STREAM_TIMEOUT_MS = 10_000
#: Decoder threads for video files. FFmpeg's default (one per core) competes with inference for
#: the cores: on the 2-core reference machine a second decoder thread made the detector's
#: preprocessing 4x slower (0.26 against 0.065 ms per frame) and the whole loop 7 % slower,
#: while one thread decodes the 640x360 demo at 0.6 ms per frame, far ahead of the loop.
FILE_DECODE_THREADS = 1


def to_bgr(pixels: np.ndarray) -> np.ndarray:
    """Any decoded image (grey, grey+alpha, BGR, BGRA; 8 or 16 bit) → ``(H, W, 3)`` uint8 BGR."""
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    elif pixels.dtype != np.uint8:
        pixels = cv2.convertScaleAbs(pixels)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim == 2:
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
    if pixels.shape[2] == 2:  # grey + alpha
        return cv2.cvtColor(np.ascontiguousarray(pixels[:, :, 0]), cv2.COLOR_GRAY2BGR)
    if pixels.shape[2] == 4:
        return cv2.cvtColor(pixels, cv2.COLOR_BGRA2BGR)
    return pixels


class OpenCVSource(SourceBase):
    """A `cv2.VideoCapture` on a camera index, a file or a stream URL.

    Args:
        target: camera index (int, opened with the V4L2 back-end), file path or URL.
        cfg: requested width/height/fps for cameras and streams (ignored for files).
        live: cameras and streams are live (`Frame.t` = ``time.monotonic()`` at arrival); files
            are not (`Frame.t` = the file's own presentation time, index / fps, so pacing and
            aggregation windows follow the footage).
        loop: for files: start again at the end; `Frame.t` and `Frame.index` keep increasing.
        name: for logs (credentials already removed).
    """

    def __init__(self, target: int | str, cfg: SourceConfig, *, live: bool, loop: bool = False, name: str | None = None) -> None:
        self.target = target
        self.cfg = cfg
        self.live = live
        self.loop = loop and not live
        self.finite = not live and not loop
        self.name = name or (redact(target) if isinstance(target, str) else f"v4l2:{target}")
        self.nominal_fps: float | None = None
        self._cap: cv2.VideoCapture | None = None
        self._index = 0  # frames delivered by this source, across loops
        self._file_index = 0  # frames decoded in the current pass over the file
        self._t_base = 0.0  # presentation time at which the current pass started
        self._grabbed: tuple[int, float] | None = None  # (index, arrival) of a frame not yet decoded
        self._warned_short = False

    def open(self) -> None:
        self.close()
        try:
            cap = self._open_capture()
        except cv2.error as exc:
            raise SourceError(f"cannot open {self.name}: OpenCV failed ({exc})") from exc
        self._cap = cap
        self._file_index = 0

    def _open_capture(self) -> cv2.VideoCapture:
        if isinstance(self.target, int):
            device = Path(f"/dev/video{self.target}")
            if not device.exists():
                raise SourceError(
                    f"{device} not found: is the camera connected (and enabled)? List cameras with `v4l2-ctl --list-devices`; "
                    "for a Raspberry Pi ribbon camera use --source picamera2"
                )
            cap = cv2.VideoCapture(self.target, cv2.CAP_V4L2)
        elif self.live:
            # Bounded waits, so that a stalled network stream fails (and is reopened) instead of
            # hanging the capture thread inside FFmpeg forever.
            timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS]
            cap = cv2.VideoCapture(self.target, cv2.CAP_ANY, timeouts)
        else:
            cap = cv2.VideoCapture(self.target, cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, FILE_DECODE_THREADS])
            if not cap.isOpened():  # an OpenCV or back-end without the property: its default
                cap.release()
                cap = cv2.VideoCapture(self.target)
        if not cap.isOpened():
            cap.release()
            if isinstance(self.target, int):
                hint = f"is another program using it, and may this user read it (group `video`)? Try `v4l2-ctl -d /dev/video{self.target} --all`"
            elif self.live:
                hint = "check the URL, the network and the credentials (try it with `ffprobe`)"
            else:
                hint = "is it a video file OpenCV can decode (try `ffprobe`)?"
            raise SourceError(f"cannot open {self.name}: {hint}")
        if self.live:
            # Keep the driver's queue short: a stale frame is latency we never get back.
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            if self.cfg.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.cfg.width)
            if self.cfg.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.cfg.height)
            if self.cfg.fps:
                cap.set(cv2.CAP_PROP_FPS, self.cfg.fps)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.nominal_fps = fps if 0 < fps < 1000 else (None if self.live else FALLBACK_FPS)
        return cap

    def _grab(self) -> np.ndarray | None:
        assert self._cap is not None
        try:
            ok, pixels = self._cap.read()
        except cv2.error as exc:
            raise SourceError(f"{self.name}: decoding failed ({exc})") from exc
        return pixels if ok and pixels is not None and pixels.size else None

    def grab(self) -> None:
        """Take the next frame of a live source off the device without decoding it; `retrieve`
        decodes it if it is wanted after all. A frame grabbed and never retrieved still counts
        in `Frame.index`, so the gap shows the drop.

        Raises:
            SourceError: not open, or the device stopped delivering frames.
        """
        if self._cap is None:
            raise SourceError(f"source {self.name} is not open")
        try:
            ok = self._cap.grab()
        except cv2.error as exc:
            raise SourceError(f"{self.name}: reading failed ({exc})") from exc
        if not ok:
            raise SourceError(f"{self.name} stopped delivering frames (unplugged, or the stream ended?)")
        self._grabbed = (self._index, time.monotonic())
        self._index += 1

    def retrieve(self) -> Frame:
        """Decode the frame taken by the last `grab`.

        Raises:
            SourceError: nothing was grabbed, or decoding failed.
        """
        if self._cap is None or self._grabbed is None:
            raise SourceError(f"source {self.name}: nothing grabbed to decode")
        index, t = self._grabbed
        self._grabbed = None
        try:
            ok, pixels = self._cap.retrieve()
        except cv2.error as exc:
            raise SourceError(f"{self.name}: decoding failed ({exc})") from exc
        if not ok or pixels is None or not pixels.size:
            raise SourceError(f"{self.name}: the grabbed frame cannot be decoded")
        return Frame(to_bgr(pixels), t, index)

    def read(self) -> Frame | None:
        if self._cap is None:
            raise SourceError(f"source {self.name} is not open")
        pixels = self._grab()
        if pixels is None:
            if self.live:
                raise SourceError(f"{self.name} stopped delivering frames (unplugged, or the stream ended?)")
            if self._file_index == 0:
                raise SourceError(f"{self.name} has no decodable frame: is it a video file OpenCV can decode (try `ffprobe`)?")
            self._check_complete()
            if not self.loop:
                return None
            # Loop: rewind, and let time run on from the end of the previous pass.
            self._t_base += self._file_index / self._fps
            self._file_index = 0
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            pixels = self._grab()
            if pixels is None:
                raise SourceError(f"{self.name} cannot be rewound")
        t = time.monotonic() if self.live else self._t_base + self._file_index / self._fps
        frame = Frame(to_bgr(pixels), t, self._index)
        self._index += 1
        self._file_index += 1
        return frame

    def _check_complete(self) -> None:
        """At the end of a file: warn (once) when it ended before the frame count its
        container announces: the file is truncated or damaged, and the rest was not analysed."""
        if self._warned_short or self._cap is None:
            return
        expected = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        # containers estimate their count from the duration: a frame or two of slack
        if expected > 0 and self._file_index < expected - max(2, expected // 100):
            self._warned_short = True
            logger.warning(
                "%s ended after %d of the %d frames its container announces (%.1f of %.1f s): the file is truncated or damaged; "
                "the rest was not analysed",
                self.name,
                self._file_index,
                expected,
                self._file_index / self._fps,
                expected / self._fps,
            )

    @property
    def _fps(self) -> float:
        return self.nominal_fps or FALLBACK_FPS

    def close(self) -> None:
        if self._cap is not None:
            cap, self._cap = self._cap, None
            cap.release()


@SOURCES.register("v4l2")
def _camera(spec: str, cfg: SourceConfig, models_dir: Path) -> OpenCVSource:
    index = camera_index(spec)
    return OpenCVSource(index, cfg, live=True, name=f"v4l2:{index}")


@SOURCES.register("stream")
def _stream(spec: str, cfg: SourceConfig, models_dir: Path) -> OpenCVSource:
    return OpenCVSource(spec, cfg, live=True, name=redact(spec))


@SOURCES.register("file")
def _file(spec: str, cfg: SourceConfig, models_dir: Path) -> OpenCVSource:
    path = Path(spec).expanduser()
    return OpenCVSource(str(path), cfg, live=False, loop=bool(cfg.loop), name=str(path))


@SOURCES.register("demo")
def _demo(spec: str, cfg: SourceConfig, models_dir: Path) -> OpenCVSource:
    path = asset_path(models_dir, "demo_video")  # ModelError (exit 4) when not provisioned
    loop = True if cfg.loop is None else cfg.loop
    return OpenCVSource(str(path), cfg, live=False, loop=loop, name="demo")
