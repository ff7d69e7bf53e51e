"""A stream of frames through the served ensemble, in order, with a bounded in-flight window.

``FrameStream(source, client, settings).outcomes()`` yields one :class:`Outcome` per frame read,
in source order. Frames are read and encoded on a thread of their own (OpenCV releases the GIL),
so decoding the next frames overlaps the requests on the wire; at most ``in_flight`` requests
are out at once, and the oldest is awaited first, so answers come back in order while the frames
behind it keep the server busy.

- Files and frame folders are never dropped: reading waits for the window (back-pressure).
- Live sources (cameras, URLs) run at the sender's pace: when the window is full, the oldest
  frame waiting to be sent is dropped and counted, so the answers stay current.
- ``every`` / ``max_fps`` choose which frames are sent; the others are "skipped" and still
  reach the annotated video with the latest answer drawn on them.
- A server that goes away is retried by the client within its bounds (``retries``, ``backoff``,
  ``timeout``); a frame that still gets no answer is "lost", reading stops, the frames already
  in flight are awaited (each bounded the same way) and reported, and the stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import statistics
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

from gesture_recognition.pipeline import GestureResult

from .clients import AsyncGestureClient
from .errors import (
    GestureClientError,
    ModelNotReadyError,
    RequestTimeoutError,
    ServerUnavailableError,
)
from .frame_sources import READ_TIMEOUT_MS, Frame, FrameSource, SourceError, import_cv2
from .smoothing import ProbabilitySmoother, Smoothed

# A failure of these means no frame behind this one will get an answer either.
SERVER_GONE: tuple[type[GestureClientError], ...] = (
    ServerUnavailableError,
    ModelNotReadyError,
    RequestTimeoutError,
)
DEFAULT_IN_FLIGHT = 4
DEFAULT_JPEG_QUALITY = 90
# How often a waiting reader or consumer looks up to see whether the stream was stopped.
POLL_S = 0.2


@dataclass(frozen=True)
class StreamSettings:
    encoded: bool = True  # JPEG bytes to gesture_ensemble_bytes; False: pixels to gesture_ensemble
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    in_flight: int = DEFAULT_IN_FLIGHT
    smooth: int = 1  # frames in the smoothing window (1: none)
    every: int = 1  # send every K-th frame
    max_fps: float | None = None  # send at most this many frames per second of source time
    max_frames: int | None = None  # stop after reading this many frames

    def __post_init__(self) -> None:
        if self.in_flight < 1 or self.smooth < 1 or self.every < 1:
            raise ValueError("in_flight, smooth and every must be at least 1")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be 1-100, got {self.jpeg_quality}")
        if self.max_fps is not None and self.max_fps <= 0:
            raise ValueError(f"max_fps must be positive, got {self.max_fps}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"max_frames must be at least 1, got {self.max_frames}")


@dataclass(frozen=True)
class Outcome:
    """What became of one frame read from the source."""

    frame: Frame
    sent: bool
    skipped: bool = False  # not sent on purpose (every / max_fps)
    result: GestureResult | None = None
    smoothed: Smoothed | None = None
    error: str | None = None
    lost: bool = False  # no answer because the server went away
    latency_s: float | None = None

    def to_dict(self) -> dict[str, object]:
        """The frame's JSON line: ``frame``, ``time_s`` and the answer or the error."""
        line: dict[str, object] = {
            "frame": self.frame.index,
            "time_s": round(self.frame.time_s, 4),
        }
        if self.result is not None:
            line.update(self.result.to_dict())
            if self.smoothed is not None:
                line["smoothed"] = self.smoothed.to_dict()
            if self.latency_s is not None:
                line["latency_ms"] = round(self.latency_s * 1000, 2)
        else:
            line["error"] = self.error or "no answer"
            if self.lost:
                line["lost"] = True
        return line


@dataclass
class StreamStats:
    read: int = 0  # frames taken from the reader (dropped ones are not)
    sent: int = 0
    answered: int = 0
    skipped: int = 0  # not sent on purpose (every / max_fps)
    dropped: int = 0  # live frames dropped because the window was full
    unreadable: int = 0  # frame files that did not decode
    failed: int = 0  # refused by the server (that frame only)
    lost: int = 0  # no answer: the server went away
    latencies_s: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None
    stopped_by_server: str | None = None  # why the stream stopped early

    @property
    def frames(self) -> int:
        """Frames taken from the source: those read out, and those dropped before."""
        return self.read + self.dropped

    @property
    def elapsed_s(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    @property
    def frames_per_s(self) -> float:
        """Answered frames per second of wall time, from the first frame read to the last out."""
        return self.answered / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def latency_ms(self, percent: int) -> float | None:
        if not self.latencies_s:
            return None
        if len(self.latencies_s) == 1:
            return self.latencies_s[0] * 1000
        cuts = statistics.quantiles(self.latencies_s, n=100, method="inclusive")
        return cuts[percent - 1] * 1000

    def to_dict(self) -> dict[str, object]:
        p50, p95 = self.latency_ms(50), self.latency_ms(95)
        return {
            "frames": self.frames,
            "sent": self.sent,
            "answered": self.answered,
            "skipped": self.skipped,
            "dropped": self.dropped,
            "unreadable": self.unreadable,
            "failed": self.failed,
            "lost": self.lost,
            "seconds": round(self.elapsed_s, 3),
            "frames_per_s": round(self.frames_per_s, 2),
            "latency_p50_ms": None if p50 is None else round(p50, 1),
            "latency_p95_ms": None if p95 is None else round(p95, 1),
        }

    def summary(self) -> str:
        p50, p95 = self.latency_ms(50), self.latency_ms(95)
        latency = (
            "no answers"
            if p50 is None or p95 is None
            else (f"latency p50 {p50:.0f} ms, p95 {p95:.0f} ms")
        )
        parts = [f"{self.answered} answered"]
        for name in ("skipped", "dropped", "unreadable", "failed", "lost"):
            if getattr(self, name):
                parts.append(f"{getattr(self, name)} {name}")
        return (
            f"{self.frames} frames ({', '.join(parts)}) in {self.elapsed_s:.1f} s: "
            f"{self.frames_per_s:.1f} frames/s, {latency}"
        )


class Sampler:
    """Which frames are sent: every K-th, and at most ``max_fps`` per second of source time."""

    def __init__(self, every: int, max_fps: float | None):
        self.every = every
        self.min_gap_s = 1.0 / max_fps if max_fps else 0.0
        self._last_sent: float | None = None

    def __call__(self, index: int, time_s: float) -> bool:
        if index % self.every:
            return False
        # A hair of slack: 30 frames/s sampled at --max-fps 10 must keep every third frame,
        # and 3 / 30 s is not exactly 0.1 s in floating point.
        if self._last_sent is not None and time_s - self._last_sent < self.min_gap_s - 1e-6:
            return False
        self._last_sent = time_s
        return True


@dataclass(frozen=True)
class _Read:
    frame: Frame
    send: bool


_END = object()
_Answer = tuple[GestureResult | None, GestureClientError | None, float]


class FrameReader:
    """Reads (and encodes) frames on a thread into a small queue; see the module doc for the
    drop rule of live sources."""

    def __init__(self, source: FrameSource, settings: StreamSettings, depth: int):
        self.live = source.live
        self.dropped = 0
        self.error: BaseException | None = None
        self._settings = settings
        self._source = source
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frame-reader", daemon=True)
        self._thread.start()

    def _reads(self) -> Iterator[_Read]:
        sampler = Sampler(self._settings.every, self._settings.max_fps)
        # Encoding here would cost every frame; only the sampled ones are encoded, below.
        quality = self._settings.jpeg_quality if self._settings.encoded else None
        cv2 = import_cv2()
        for n, frame in enumerate(self._source.frames()):
            if self._settings.max_frames is not None and n >= self._settings.max_frames:
                return
            send = frame.ok and sampler(frame.index, frame.time_s)
            if send and quality is not None and frame.data is None and frame.pixels is not None:
                bgr = cv2.cvtColor(frame.pixels, cv2.COLOR_RGB2BGR)
                ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
                if not ok:
                    frame = Frame(frame.index, frame.time_s, None, error="JPEG encoding failed")
                    send = False
                else:
                    frame = Frame(frame.index, frame.time_s, frame.pixels, buffer.tobytes())
            yield _Read(frame, send)

    def _put(self, item: object) -> bool:
        """Queue ``item``; False once the stream was stopped."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                if self.live and item is not _END:
                    with contextlib.suppress(queue.Empty):
                        self._queue.get_nowait()
                        self.dropped += 1
        return False

    def _run(self) -> None:
        try:
            for read in self._reads():
                if not self._put(read):
                    return
        except Exception as exc:  # reported by next(), not lost on this thread
            self.error = SourceError(f"reading {self._source.description} failed: {exc}")
        finally:
            self._put(_END)

    async def next(self) -> _Read | None:
        """The next frame, or None at the end of the source."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                item = await asyncio.to_thread(self._get)
            if item is None:
                continue
            if item is _END:
                if self.error is not None:
                    raise self.error
                return None
            assert isinstance(item, _Read)
            return item

    def _get(self) -> object:
        try:
            return self._queue.get(timeout=POLL_S)
        except queue.Empty:
            return None

    def stop(self) -> None:
        self._stop.set()
        # The thread checks the flag after each frame; a camera or URL read can block up to
        # its read timeout, and the source must not be released under a read in progress.
        self._thread.join(timeout=READ_TIMEOUT_MS / 1000 + 1)


class FrameStream:
    """See the module docstring. ``stats`` fills in as outcomes are taken."""

    def __init__(
        self, source: FrameSource, client: AsyncGestureClient, settings: StreamSettings
    ) -> None:
        self.source = source
        self.client = client
        self.settings = settings
        self.stats = StreamStats()
        self.smoother: ProbabilitySmoother | None = None

    async def _classify(self, frame: Frame) -> _Answer:
        started = time.perf_counter()
        try:
            if self.settings.encoded and frame.data is not None:
                result = await self.client.classify_bytes(frame.data)
            else:
                assert frame.pixels is not None
                result = await self.client.classify_image(frame.pixels)
        except GestureClientError as exc:
            return None, exc, time.perf_counter() - started
        return result, None, time.perf_counter() - started

    async def _finish(self, read: _Read, task: asyncio.Task[_Answer] | None) -> Outcome:
        frame = read.frame
        stats = self.stats
        if not frame.ok:
            stats.unreadable += 1
            return Outcome(frame, sent=False, error=frame.error)
        if task is None:
            stats.skipped += 1
            return Outcome(frame, sent=False, skipped=True)
        result, error, latency = await task
        if error is not None:
            lost = isinstance(error, SERVER_GONE)
            if lost:
                stats.lost += 1
                stats.stopped_by_server = stats.stopped_by_server or str(error)
            else:
                stats.failed += 1
            return Outcome(frame, sent=True, error=str(error), lost=lost, latency_s=latency)
        assert result is not None and self.smoother is not None
        stats.answered += 1
        stats.latencies_s.append(latency)
        smoothed = self.smoother.update(result.probabilities)
        return Outcome(frame, sent=True, result=result, smoothed=smoothed, latency_s=latency)

    async def outcomes(self) -> AsyncIterator[Outcome]:
        labels = await self.client.get_labels()
        self.smoother = ProbabilitySmoother(self.settings.smooth, labels)
        limit = self.settings.in_flight
        reader = FrameReader(self.source, self.settings, depth=limit)
        window: deque[tuple[_Read, asyncio.Task[_Answer] | None]] = deque()
        in_flight = 0
        self.stats = stats = StreamStats()
        try:
            reading = True
            while reading or window:
                if reading and stats.stopped_by_server is None:
                    read = await reader.next()
                    if read is None:
                        reading = False
                    else:
                        stats.read += 1
                        task = None
                        if read.send:
                            stats.sent += 1
                            in_flight += 1
                            task = asyncio.create_task(self._classify(read.frame))
                        window.append((read, task))
                else:
                    reading = False
                # Out in order: frames with nothing to wait for, answers already in, and the
                # oldest request whenever the window is full or nothing more is coming.
                while window:
                    head_task = window[0][1]
                    must_wait = in_flight >= limit or not reading
                    if head_task is not None and not head_task.done() and not must_wait:
                        break
                    read, task = window.popleft()
                    if task is not None:
                        in_flight -= 1
                    yield await self._finish(read, task)
                    if stats.stopped_by_server is not None:
                        reading = False
            stats.dropped = reader.dropped
        finally:
            stats.finished = time.perf_counter()
            stats.dropped = reader.dropped
            reader.stop()
            pending = [task for _, task in window if task is not None and not task.done()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
