"""Real videos for the stream and page tests, assembled at test time from one SubhiH capture
session (consecutive webcam photos of one person in one room, in shooting order)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

# 181 photos (train and test together) of one hand moving in front of a ceiling and a wall.
SESSION = "1528664299.56"
FPS = 10.0


def session_frames(
    shared_data: Path, count: int, start: int = 0, session: str = SESSION
) -> list[Path]:
    """``count`` photos of the session from the ``start``-th, in shooting order (the
    ``picNNNNN`` number). Photos 0-34 show an open hand (a face beside it), 35-39 an ok sign,
    40-58 three then two fingers, mostly without the face."""
    folder = shared_data / "subhih_hands"
    photos = list(folder.glob(f"*/{session}_pic*.jpg"))
    number = re.compile(r"_pic(\d+)\.jpg$")
    photos.sort(key=lambda p: int(number.search(p.name).group(1)))  # type: ignore[union-attr]
    if len(photos) < start + count:
        raise AssertionError(f"session {session} has {len(photos)} photos, {start + count} needed")
    return photos[start : start + count]


def _bgr(path: Path, size: tuple[int, int]) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    if (image.shape[1], image.shape[0]) != size:
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image


def write_mp4(photos: Sequence[Path], out: Path, fps: float = FPS) -> Path:
    first = cv2.imread(str(photos[0]), cv2.IMREAD_COLOR)
    size = (first.shape[1], first.shape[0])
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened(), out
    for photo in photos:
        writer.write(_bgr(photo, size))
    writer.release()
    return out


def write_y4m(photos: Sequence[Path], out: Path, fps: int = int(FPS)) -> Path:
    """A YUV4MPEG2 file (4:2:0), the format Chromium's fake camera reads."""
    first = cv2.imread(str(photos[0]), cv2.IMREAD_COLOR)
    width, height = first.shape[1] & ~1, first.shape[0] & ~1
    with out.open("wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for photo in photos:
            # I420: the Y plane, then U and V at half resolution, as y4m's 4:2:0 stores them.
            planes = cv2.cvtColor(_bgr(photo, (width, height)), cv2.COLOR_BGR2YUV_I420)
            f.write(b"FRAME\n")
            f.write(planes.tobytes())
    return out


def decode_video(path: Path) -> list[np.ndarray]:
    """Every frame of a video as RGB, the way gesture-client stream reads it."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames
