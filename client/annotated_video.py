"""The annotated video of ``gesture-client stream --out``: every frame read from the source,
with the hand boxes, their labels and the current gesture drawn by :mod:`.annotate`.

Frames that were not sent (``--every`` / ``--max-fps``) carry the latest answer; frames whose
answer was lost or refused are written as they are, so the video keeps the source's frame
count. A frame of another size than the first (a folder of mixed photos) is scaled to it: a
video has one size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gesture_recognition.pipeline import GestureResult

from .annotate import annotate
from .frame_sources import import_cv2

# Containers and the codec each gets. mp4v and MJPG are in every OpenCV build with FFmpeg
# (the PyPI wheels); H.264 is not (its encoders are licensed separately).
FOURCC_BY_SUFFIX = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}


class VideoOutputError(Exception):
    """The annotated video cannot be written; the message is for the user."""


def check_video_path(path: Path) -> None:
    """Refuse a path that cannot be written before any frame is read."""
    if path.suffix.lower() not in FOURCC_BY_SUFFIX:
        raise VideoOutputError(
            f"{path}: the annotated video must end in one of {', '.join(sorted(FOURCC_BY_SUFFIX))}"
        )
    if path.is_dir():
        raise VideoOutputError(f"{path} is a folder")
    if not path.parent.is_dir():
        raise VideoOutputError(f"{path.parent} does not exist")


class AnnotatedVideo:
    """Opened on the first frame (its size is the video's); ``close()`` finishes the file."""

    def __init__(self, path: Path, fps: float):
        check_video_path(path)
        self.path = path
        self.fps = fps
        self.frames = 0
        self._cv2 = import_cv2()
        self._writer: Any = None
        self._size: tuple[int, int] | None = None

    def _open(self, width: int, height: int) -> None:
        fourcc = self._cv2.VideoWriter_fourcc(*FOURCC_BY_SUFFIX[self.path.suffix.lower()])
        writer = self._cv2.VideoWriter(str(self.path), fourcc, self.fps, (width, height))
        if not writer.isOpened():
            raise VideoOutputError(f"OpenCV cannot write {self.path}")
        self._writer, self._size = writer, (width, height)

    def write(self, pixels: NDArray[np.uint8], result: GestureResult | None) -> None:
        """One RGB frame, with ``result`` drawn on it when there is one."""
        height, width = pixels.shape[:2]
        if self._writer is None:
            self._open(width, height)
        drawn = np.asarray(annotate(pixels, result)) if result is not None else pixels
        bgr = self._cv2.cvtColor(drawn, self._cv2.COLOR_RGB2BGR)
        if (width, height) != self._size:
            bgr = self._cv2.resize(bgr, self._size, interpolation=self._cv2.INTER_AREA)
        self._writer.write(bgr)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
