"""Python clients for the served gesture ensembles (Triton gRPC or HTTP, sync or asyncio).

``GestureClient("127.0.0.1:8001").classify_path("photo.jpg")`` returns the same
:class:`~gesture_recognition.pipeline.GestureResult` as the in-process ``GesturePipeline``.

- Two entry points: ``classify_image`` sends decoded RGB pixels to ``gesture_ensemble``;
  ``classify_bytes`` / ``classify_path`` send the encoded file to ``gesture_ensemble_bytes``
  (a 50 KB JPEG instead of a 1 MB pixel array).
- Retries with exponential backoff when the server is unreachable or restarting; a request the
  server refused is never retried. Failures come as :mod:`.errors` exceptions.
- ``shared_memory="system"`` passes inputs through ``/dev/shm`` (server on the same host).
- Class names for ``GestureResult.labels`` come from the server's ensemble config (or, for an
  older repository, Triton's classification extension). ``labels=`` (names or a labels file)
  skips that lookup.

Both clients run the same operations (:mod:`.core`): the blocking one calls tritonclient's
blocking classes, the asyncio one awaits its asyncio classes.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import numpy as np

from gesture_recognition.images import InvalidImageError, load_image
from gesture_recognition.pipeline import GestureResult
from gesture_recognition.serving.contract import ENSEMBLE, ENSEMBLE_BYTES

from .core import (
    DEFAULT_BACKOFF_S,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT_S,
    PROBE_IMAGE,
    PROTOCOLS,
    SHARED_MEMORY_MODES,
    ClientCore,
    Sleep,
    Steps,
    backoff_delays,
    bytes_request,
    default_url,
    image_request,
    once,
    read_labels_file,
)
from .errors import (
    GestureClientError,
    InvalidInputError,
    ModelNotReadyError,
    ServerUnavailableError,
)

__all__ = [
    "DEFAULT_BACKOFF_S",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT_S",
    "PROBE_IMAGE",
    "PROTOCOLS",
    "SHARED_MEMORY_MODES",
    "AsyncGestureClient",
    "FileResult",
    "GestureClient",
    "backoff_delays",
    "bytes_request",
    "default_url",
    "image_request",
    "read_labels_file",
]

DEFAULT_MAX_IN_FLIGHT = 8
# Loopback and LAN connects take milliseconds; this only catches a host that never answers.
CONNECT_TIMEOUT_S = 5.0
# Errors that concern one file; anything else (server down, model gone) stops a batch.
FILE_ERRORS: tuple[type[Exception], ...] = (GestureClientError, OSError)
FATAL_ERRORS: tuple[type[Exception], ...] = (ServerUnavailableError, ModelNotReadyError)

T = TypeVar("T")


@dataclass(frozen=True)
class FileResult:
    """One file of a batch: its result, or the error that concerned only this file."""

    path: Path
    result: GestureResult | None = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _load_pixels(path: str | Path) -> np.ndarray:
    try:
        return load_image(path)
    except InvalidImageError as exc:
        raise InvalidInputError(f"{path}: {exc}") from exc


class GestureClient(ClientCore):
    """Blocking client; one request at a time (use :class:`AsyncGestureClient` for many)."""

    def __init__(
        self,
        url: str | None = None,
        protocol: str = "grpc",
        model: str = ENSEMBLE,
        bytes_model: str = ENSEMBLE_BYTES,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF_S,
        labels: Sequence[str] | str | Path | None = None,
        shared_memory: str = "none",
    ):
        super().__init__(
            url, protocol, model, bytes_model, timeout, retries, backoff, labels, shared_memory
        )
        self._tc = self._module(aio=False)
        if protocol == "grpc":
            self._client = self._tc.InferenceServerClient(self.url)
        else:
            # The answer timeout must not also bound the TCP connect: a short --timeout on a
            # busy host would then read as "server down" and be retried, not reported.
            self._client = self._tc.InferenceServerClient(
                self.url,
                connection_timeout=max(self.timeout, CONNECT_TIMEOUT_S),
                network_timeout=self.timeout,
            )

    @staticmethod
    def _run(steps: Steps[T]) -> T:
        """Carry out an operation of :mod:`.core`: each call made, each sleep slept."""
        try:
            effect = next(steps)
            while True:
                try:
                    if isinstance(effect, Sleep):
                        time.sleep(effect.seconds)
                        result = None
                    else:
                        result = effect()
                except BaseException as exc:
                    effect = steps.throw(exc)
                else:
                    effect = steps.send(result)
        except StopIteration as done:
            return done.value

    def _call(self, fn: Callable[[], T], model: str) -> T:
        """``fn()`` with retries on connection errors; errors translated."""
        return self._run(self._retrying(lambda: once(fn), model))

    # ---------------------------------------------------------------- health

    def is_ready(self) -> bool:
        """Server and both entry points ready; False (no exception) when unreachable."""
        try:
            return self._run(self._is_ready())
        except Exception:
            return False

    def check_ready(self, models: Sequence[str] | None = None) -> None:
        """Raise ServerUnavailableError / ModelNotReadyError unless all is ready (with retries)."""
        self._run(self._check_ready(models))

    @property
    def labels(self) -> tuple[str, ...]:
        return self._run(self._resolve_labels())

    # ---------------------------------------------------------------- classify

    def classify_image(self, image: np.ndarray) -> GestureResult:
        """RGB uint8 ``[H, W, 3]`` pixels -> result (``gesture_ensemble``)."""
        request = image_request(image, self.model)
        self.labels  # noqa: B018 - resolved before the request, so a failure is reported first
        return self._parse(self._run(self._infer(request)))

    def classify_bytes(self, data: bytes) -> GestureResult:
        """An encoded JPEG/PNG/... file -> result, decoded on the server."""
        request = bytes_request(data, self.bytes_model)
        self.labels  # noqa: B018
        return self._parse(self._run(self._infer(request)))

    def classify_path(self, path: str | Path, encoded: bool = True) -> GestureResult:
        """A photo file: sent as its bytes (``encoded``) or decoded here and sent as pixels."""
        if encoded:
            return self.classify_bytes(Path(path).read_bytes())
        return self.classify_image(_load_pixels(path))

    def classify_files(
        self, paths: Iterable[str | Path], encoded: bool = True
    ) -> Iterator[FileResult]:
        """Each file in order; per-file failures are yielded, a dead server is raised."""
        for path in paths:
            try:
                yield FileResult(Path(path), result=self.classify_path(Path(path), encoded))
            except FATAL_ERRORS:
                raise
            except FILE_ERRORS as exc:
                yield FileResult(Path(path), error=exc)

    # ---------------------------------------------------------------- lifetime

    def close(self) -> None:
        self._run(self._close())

    def __enter__(self) -> GestureClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncGestureClient(ClientCore):
    """asyncio client with at most ``max_in_flight`` requests on the wire at once.

    Use it as ``async with AsyncGestureClient(...) as client:``; the transport is opened inside
    the running event loop (gRPC channels and aiohttp sessions belong to one loop).
    """

    def __init__(
        self,
        url: str | None = None,
        protocol: str = "grpc",
        model: str = ENSEMBLE,
        bytes_model: str = ENSEMBLE_BYTES,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF_S,
        labels: Sequence[str] | str | Path | None = None,
        shared_memory: str = "none",
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ):
        super().__init__(
            url, protocol, model, bytes_model, timeout, retries, backoff, labels, shared_memory
        )
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.max_in_flight = max_in_flight
        self._tc = self._module(aio=True)
        self._client = None
        self._window: asyncio.Semaphore | None = None
        self._labels_lock: asyncio.Lock | None = None

    def _open(self) -> Any:
        if self._client is None:
            if self.protocol == "grpc":
                self._client = self._tc.InferenceServerClient(self.url)
            else:
                self._client = self._tc.InferenceServerClient(
                    self.url, conn_limit=self.max_in_flight, conn_timeout=self.timeout
                )
            self._window = asyncio.Semaphore(self.max_in_flight)
            self._labels_lock = asyncio.Lock()
        return self._client

    async def _run(self, steps: Steps[T]) -> T:
        """Carry out an operation of :mod:`.core`: each call awaited, each sleep slept."""
        self._open()
        try:
            effect = next(steps)
            while True:
                try:
                    if isinstance(effect, Sleep):
                        await asyncio.sleep(effect.seconds)
                        result = None
                    else:
                        result = await effect()
                except BaseException as exc:  # cancellation too: the operation cleans up
                    effect = steps.throw(exc)
                else:
                    effect = steps.send(result)
        except StopIteration as done:
            return done.value

    async def _call(self, fn: Callable[[], Awaitable[T]], model: str) -> T:
        return await self._run(self._retrying(lambda: once(fn), model))

    async def _request(self, steps: Steps[T]) -> T:
        """A request inside the window of at most ``max_in_flight`` (which also bounds the
        shared-memory regions: one is taken per request inside it)."""
        self._open()
        assert self._window is not None
        async with self._window:
            return await self._run(steps)

    # ---------------------------------------------------------------- health

    async def is_ready(self) -> bool:
        try:
            return await self._run(self._is_ready())
        except Exception:
            return False

    async def check_ready(self, models: Sequence[str] | None = None) -> None:
        await self._run(self._check_ready(models))

    async def get_labels(self) -> tuple[str, ...]:
        self._open()
        assert self._labels_lock is not None
        async with self._labels_lock:  # one lookup, however many requests start at once
            if self._labels is None:
                # The lookup may send a probe request: it takes its place in the window.
                return await self._request(self._resolve_labels())
        return self._labels

    # ---------------------------------------------------------------- classify

    async def classify_image(self, image: np.ndarray) -> GestureResult:
        request = image_request(image, self.model)
        await self.get_labels()
        return self._parse(await self._request(self._infer(request)))

    async def classify_bytes(self, data: bytes) -> GestureResult:
        request = bytes_request(data, self.bytes_model)
        await self.get_labels()
        return self._parse(await self._request(self._infer(request)))

    async def classify_path(self, path: str | Path, encoded: bool = True) -> GestureResult:
        if encoded:
            return await self.classify_bytes(await asyncio.to_thread(Path(path).read_bytes))
        return await self.classify_image(await asyncio.to_thread(_load_pixels, path))

    async def _classify_file(self, path: Path, encoded: bool) -> FileResult:
        try:
            return FileResult(path, result=await self.classify_path(path, encoded))
        except FATAL_ERRORS:
            raise
        except FILE_ERRORS as exc:
            return FileResult(path, error=exc)

    async def classify_many(
        self,
        paths: Iterable[str | Path],
        concurrency: int | None = None,
        ordered: bool = True,
        encoded: bool = True,
    ) -> AsyncIterator[FileResult]:
        """Classify files with up to ``concurrency`` (at most ``max_in_flight``) requests in flight.

        Yields a :class:`FileResult` per file, in input order (``ordered``) or as each
        completes. Files are read only as the window has room, so an endless iterable is fine.
        ServerUnavailableError / ModelNotReadyError stop the iteration.
        """
        limit = min(concurrency or self.max_in_flight, self.max_in_flight)
        if limit < 1:
            raise ValueError(f"concurrency must be at least 1, got {limit}")
        await self.get_labels()
        source = iter(paths)
        started: list[asyncio.Task[FileResult]] = []  # every task, for cleanup on exit

        def start(path: str | Path) -> asyncio.Task[FileResult]:
            task = asyncio.create_task(self._classify_file(Path(path), encoded))
            started.append(task)
            return task

        try:
            if ordered:
                # Head-of-line wait, but the tasks behind the head keep the window full.
                window: deque[asyncio.Task[FileResult]] = deque()
                for path in source:
                    window.append(start(path))
                    if len(window) >= limit:
                        yield await window.popleft()
                while window:
                    yield await window.popleft()
            else:
                pending: set[asyncio.Task[FileResult]] = set()
                for path in source:
                    pending.add(start(path))
                    if len(pending) >= limit:
                        done, pending = await asyncio.wait(
                            pending, return_when=asyncio.FIRST_COMPLETED
                        )
                        for task in done:
                            yield task.result()
                while pending:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        yield task.result()
        finally:
            unfinished = [task for task in started if not task.done()]
            for task in unfinished:
                task.cancel()
            # Collect every outcome so no "exception never retrieved" warning is left behind.
            await asyncio.gather(*started, return_exceptions=True)

    # ---------------------------------------------------------------- lifetime

    async def close(self) -> None:
        if self._client is None:
            if self._pool is not None:
                self._pool.destroy_all()
            return
        await self._run(self._close())
        self._client = None

    async def __aenter__(self) -> AsyncGestureClient:
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
