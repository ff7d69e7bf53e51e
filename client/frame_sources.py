"""Where a stream's frames come from: a video file, a camera, an RTSP/HTTP URL, or a folder or
glob of frame files taken in order. Frames are decoded with OpenCV in memory, never written.

``open_source(spec)`` decides what ``spec`` names and fails with :class:`SourceError` (one line
for the user) when it cannot be opened, before any frame is sent.
"""

from __future__ import annotations

import glob
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .files import is_image_file

# Frame files the server decodes itself: sent as they are to the bytes entry point.
SERVER_DECODES = frozenset({".jpg", ".jpeg", ".png"})
# A frame folder or glob has no rate of its own; time_s counts at this rate unless --fps says.
DEFAULT_FRAMES_FPS = 30.0
# A camera or URL that never delivers must not hold the command: OpenCV's FFmpeg backend
# gives up opening or reading after these.
OPEN_TIMEOUT_MS = 10_000
READ_TIMEOUT_MS = 10_000
URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")


class SourceError(Exception):
    """The source does not exist or cannot be opened or decoded; the message is for the user."""


class OpenCVMissingError(SourceError):
    pass


def import_cv2() -> Any:
    """OpenCV, or a one-line hint naming the extra that brings it."""
    try:
        import cv2
    except ImportError as exc:
        raise OpenCVMissingError(
            f"video needs OpenCV ({exc}): pip install 'gesture-recognition[video]'"
        ) from exc
    return cv2


@dataclass(frozen=True)
class Frame:
    index: int  # position in the source, 0-based, skipped frames included
    time_s: float  # source time for files and frame folders, seconds since start when live
    pixels: NDArray[np.uint8] | None  # RGB [H, W, 3]; None when the frame did not decode
    data: bytes | None = None  # the encoded frame for the bytes entry point, when made
    error: str | None = None  # why there are no pixels

    @property
    def ok(self) -> bool:
        return self.pixels is not None


@dataclass
class FrameSource:
    """An opened source. ``frames()`` yields BGR->RGB frames; call ``close()`` when done."""

    description: str
    live: bool  # camera or URL: frames come at the sender's pace and may be dropped
    fps: float  # frames per second of the source (a guess for some cameras)
    frame_count: int | None  # known length (files, folders), for the progress display
    _capture: Any = field(default=None, repr=False)
    _files: list[Path] = field(default_factory=list, repr=False)
    _first: NDArray[np.uint8] | None = field(default=None, repr=False)

    def frames(self) -> Iterator[Frame]:
        """Every frame in order, as RGB pixels (and, for frame files the server can decode, the
        file's own bytes, sent as they are to the bytes entry point)."""
        if self._capture is not None:
            yield from self._capture_frames()
        else:
            yield from self._file_frames()

    def _capture_frames(self) -> Iterator[Frame]:
        cv2 = import_cv2()
        start = time.monotonic()
        index = 0
        bgr = self._first
        self._first = None
        while True:
            if bgr is None:
                ok, bgr = self._capture.read()
                if not ok or bgr is None:
                    return
            # Files: the frame's place in the video; cameras and URLs: when it arrived here.
            time_s = time.monotonic() - start if self.live else index / self.fps
            yield _frame(cv2, index, time_s, bgr, None)
            index += 1
            bgr = None

    def _file_frames(self) -> Iterator[Frame]:
        cv2 = import_cv2()
        for index, path in enumerate(self._files):
            time_s = index / self.fps
            try:
                data = path.read_bytes()
            except OSError as exc:
                yield Frame(index, time_s, None, error=f"{path}: {exc.strerror or exc}")
                continue
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                yield Frame(index, time_s, None, error=f"{path}: not a decodable image")
                continue
            keep = data if path.suffix.lower() in SERVER_DECODES else None
            yield _frame(cv2, index, time_s, bgr, keep)

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


def _frame(
    cv2: Any, index: int, time_s: float, bgr: NDArray[np.uint8], encoded: bytes | None
) -> Frame:
    if bgr.ndim == 2:  # some cameras and files deliver grey frames
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return Frame(index, time_s, rgb, encoded)


def natural_key(path: Path) -> list[object]:
    """``frame2`` before ``frame10``: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def _frame_files(spec: str) -> list[Path] | None:
    """The frame files a folder or glob names, in natural order; None if ``spec`` is neither."""
    path = Path(spec)
    if path.is_dir():
        hits = [p for p in path.rglob("*") if p.is_file() and is_image_file(p)]
    elif glob.has_magic(spec):
        hits = [Path(p) for p in glob.glob(spec, recursive=True)]
        hits = [p for p in hits if p.is_file() and is_image_file(p)]
    else:
        return None
    return sorted(hits, key=natural_key)


def _open_capture(cv2: Any, target: str | int, api: int) -> Any:
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS]
    params += [cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS]
    return cv2.VideoCapture(target, api, params)


def _capture_source(
    cv2: Any, target: str | int, api: int, description: str, live: bool
) -> FrameSource:
    capture = _open_capture(cv2, target, api)
    if not capture.isOpened():
        capture.release()
        what = "a camera" if isinstance(target, int) or description.startswith("camera") else ""
        raise SourceError(
            f"cannot open {description}: OpenCV could not open it"
            + (f" (is {what} connected and free?)" if what else " (not a video it can decode?)")
        )
    # Read the first frame now: a file OpenCV "opens" but cannot decode fails here, before any
    # request is sent, with the same one line.
    ok, first = capture.read()
    if not ok or first is None:
        capture.release()
        raise SourceError(f"cannot read a frame from {description}")
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    if not np.isfinite(fps) or fps <= 0 or fps > 1000:
        fps = DEFAULT_FRAMES_FPS
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if not live else 0
    return FrameSource(
        description,
        live=live,
        fps=fps,
        frame_count=count if count > 0 else None,
        _capture=capture,
        _first=first,
    )


def open_source(spec: str, frames_fps: float = DEFAULT_FRAMES_FPS) -> FrameSource:
    """Open what ``spec`` names, in this order: a camera index (``0``) or ``/dev/videoN``; a
    URL (``rtsp://``, ``http://``...); a folder of frame files (recursive) or a glob, taken in
    natural order (``frames_fps`` sets their time_s); a photo (one frame); a video file."""
    cv2 = import_cv2()
    if spec.isdigit():
        return _capture_source(cv2, int(spec), cv2.CAP_ANY, f"camera {spec}", live=True)
    if spec.startswith("/dev/video"):
        if not Path(spec).exists():
            raise SourceError(f"no camera at {spec}")
        return _capture_source(cv2, spec, cv2.CAP_V4L2, f"camera {spec}", live=True)
    scheme = spec.split("://", 1)[0].lower() if "://" in spec else None
    if scheme is not None:
        if scheme not in URL_SCHEMES:
            raise SourceError(f"{spec}: unsupported URL scheme {scheme!r}")
        return _capture_source(cv2, spec, cv2.CAP_FFMPEG, spec, live=True)
    files = _frame_files(spec)
    if files is not None:
        if not files:
            raise SourceError(f"{spec}: no frame files (jpg, jpeg, png, bmp, webp) there")
        return FrameSource(
            f"{len(files)} frames from {spec}",
            live=False,
            fps=frames_fps,
            frame_count=len(files),
            _files=files,
        )
    path = Path(spec)
    if not path.exists():
        raise SourceError(f"{spec}: no such video file, frame folder, camera or URL")
    if not path.is_file():
        raise SourceError(f"{spec}: not a regular file")
    if is_image_file(path):
        return FrameSource(
            f"photo {spec}", live=False, fps=frames_fps, frame_count=1, _files=[path]
        )
    return _capture_source(cv2, str(path), cv2.CAP_ANY, f"video {spec}", live=False)
