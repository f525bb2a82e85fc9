"""A folder of images (or one image) as a frame source, in file-name order."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2

from edge_fer.capture.base import IMAGE_SUFFIXES, SOURCES, SourceBase
from edge_fer.capture.opencv import to_bgr
from edge_fer.config import SourceConfig
from edge_fer.errors import SourceError
from edge_fer.types import Frame

logger = logging.getLogger(__name__)


class ImageFolderSource(SourceBase):
    """Images of a folder, sorted by name; unreadable files are skipped with one warning each.

    Args:
        path: a folder, or a single image file.
        fps: the pace at which the images count as frames (`Frame.t` = index / fps).
        loop: start again after the last image.
    """

    live = False

    def __init__(self, path: Path, fps: float = 10.0, loop: bool = False) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.path = path
        self.nominal_fps = fps
        self.loop = loop
        self.finite = not loop
        self.name = str(path)
        self._files: list[Path] = []
        self._pos = 0
        self._index = 0

    def open(self) -> None:
        if self.path.is_file():
            files = [self.path]
        elif self.path.is_dir():
            files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            raise SourceError(f"image folder {self.path} does not exist")
        if not files:
            raise SourceError(f"{self.path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        self._files, self._pos = files, 0

    def read(self) -> Frame | None:
        skipped = 0
        while True:
            if self._pos >= len(self._files):
                if not self.loop:
                    return None
                self._pos = 0
            path = self._files[self._pos]
            self._pos += 1
            pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if pixels is not None:
                break
            logger.warning("skipping %s: not an image OpenCV can read", path)
            self._files.remove(path)
            self._pos -= 1
            skipped += 1
            if not self._files:
                raise SourceError(f"{self.path}: none of the images can be read")
        frame = Frame(to_bgr(pixels), self._index / float(self.nominal_fps or 10.0), self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        self._files = []


@SOURCES.register("folder")
def _folder(spec: str, cfg: SourceConfig, models_dir: Path) -> ImageFolderSource:
    return ImageFolderSource(Path(spec).expanduser(), fps=cfg.fps or 10.0, loop=bool(cfg.loop))
