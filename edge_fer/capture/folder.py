"""A folder of images (or one image) as a frame source, in file-name order."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from edge_fer.capture.base import IMAGE_SUFFIXES, SOURCES, SourceBase
from edge_fer.capture.opencv import to_bgr
from edge_fer.config import SourceConfig
from edge_fer.errors import SourceError
from edge_fer.types import Frame

logger = logging.getLogger(__name__)

#: Pace of an image folder when no frame rate is configured (frames/s).
DEFAULT_FOLDER_FPS = 10.0


class ImageFolderSource(SourceBase):
    """The images of a folder (jpg, jpeg, png, bmp, webp), sorted by name; or one image.

    A single image that cannot be decoded, or a folder none of whose images can, fails at
    `open` with a `SourceError` naming the file (exit code 3): retrying cannot help a file.
    In a folder with readable images, unreadable files are skipped with one warning each (and
    not retried when looping).
    `Frame.t` is ``index / fps``: the images count as frames of a video at `fps`.

    Args:
        path: a folder, or a single image file.
        fps: the pace of the images, frames/s (default 10).
        loop: start again after the last image.
    """

    live = False

    def __init__(self, path: Path, fps: float = DEFAULT_FOLDER_FPS, loop: bool = False) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.path = Path(path)
        self.fps = float(fps)
        self.nominal_fps: float | None = self.fps
        self.loop = loop
        self.finite = not loop
        self.name = str(path)
        self._files: list[Path] = []
        self._pos = 0
        self._index = 0
        self._first: np.ndarray | None = None

    def open(self) -> None:
        if self.path.is_file():
            files = [self.path]
        elif self.path.is_dir():
            files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            raise SourceError(f"image folder {self.path} does not exist")
        if not files:
            raise SourceError(f"{self.path} holds no images ({', '.join(IMAGE_SUFFIXES)}); give a folder with images, or a video")
        self._files, self._pos = files, 0
        # Decode up to the first readable image now, so that a source with none fails here,
        # at once, instead of in the capture thread (which would retry a file forever).
        first, count = files[0], len(files)
        self._first = self._decode_next()
        if self._first is None:
            what = f"{first} cannot be decoded" if count == 1 else f"none of the {count} images of {self.path} can be decoded (first: {first})"
            raise SourceError(f"{what}: is it an image file (jpg, png, bmp, webp) that is not empty or damaged?")

    def _decode_next(self) -> np.ndarray | None:
        """The next decodable image from `_pos` on (skipping, once, those that are not)."""
        while self._pos < len(self._files):
            path = self._files[self._pos]
            pixels = _imread(path)
            if pixels is not None:
                self._pos += 1
                return pixels
            logger.warning("skipping %s: not an image OpenCV can decode (empty or damaged?)", path)
            del self._files[self._pos]  # once: a looping folder does not warn again
        return None

    def read(self) -> Frame | None:
        if not self._files:
            raise SourceError(f"image folder {self.path} is not open")
        pixels, self._first = self._first, None
        if pixels is None:
            pixels = self._decode_next()
        if pixels is None:
            if not self.loop:
                return None
            self._pos = 0
            pixels = self._decode_next()  # the folder holds at least one readable image
            if pixels is None:
                raise SourceError(f"{self.path}: none of the images can be decoded any more")
        frame = Frame(to_bgr(pixels), self._index / self.fps, self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        self._files = []
        self._first = None


def _imread(path: Path) -> np.ndarray | None:
    try:
        pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None
    return pixels if pixels is not None and pixels.size else None


@SOURCES.register("folder")
def _folder(spec: str, cfg: SourceConfig, models_dir: Path) -> ImageFolderSource:
    return ImageFolderSource(Path(spec).expanduser(), fps=cfg.fps or DEFAULT_FOLDER_FPS, loop=bool(cfg.loop))
