"""Python clients for the served gesture ensembles (Triton gRPC or HTTP, sync or asyncio).

``GestureClient("127.0.0.1:8001").classify_path("photo.jpg")`` returns the same
:class:`~gesture_recognition.pipeline.GestureResult` as the in-process ``GesturePipeline``.

- Two entry points: ``classify_image`` sends decoded RGB pixels to ``gesture_ensemble``;
  ``classify_bytes`` / ``classify_path`` send the encoded file to ``gesture_ensemble_bytes``
  (a 50 KB JPEG instead of a 1 MB pixel array).
- Retries with exponential backoff when the server is unreachable or restarting; a request the
  server refused is never retried. Failures come as :mod:`.errors` exceptions.
- ``shared_memory="system"`` passes inputs through ``/dev/shm`` (server on the same host).
- Class names for ``GestureResult.labels`` come from the server: the model config gives the
  number of classes, and one classification request (Triton's classification extension on
  ``GESTURE_PROBS``) gives the names from the output's label file. ``labels=`` (names or a
  labels file) skips that request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, TypeVar

import numpy as np
from tritonclient.utils import InferenceServerException

from gesture_recognition.images import InvalidImageError, check_image_array, load_image
from gesture_recognition.pipeline import GestureResult
from gesture_recognition.serving.repository import ENSEMBLE, ENSEMBLE_BYTES, ENSEMBLE_OUTPUTS

from .errors import (
    GestureClientError,
    InvalidInputError,
    ModelNotReadyError,
    ServerError,
    ServerUnavailableError,
    is_lost_region,
    is_retryable,
    server_down,
    translate,
)
from .results import (
    OutputError,
    fallback_labels,
    labels_from_classification,
    labels_from_config,
    parse_outputs,
    probs_size_from_config,
)
from .shm import Region, RegionPool, encode_input

PROTOCOLS = ("grpc", "http")
DEFAULT_URLS = {"grpc": "127.0.0.1:8001", "http": "127.0.0.1:8000"}
SHARED_MEMORY_MODES = ("none", "system")
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF_S = 0.25
MAX_BACKOFF_S = 8.0
DEFAULT_MAX_IN_FLIGHT = 8
# Small but above the server's minimum side; what the detector makes of it does not matter.
PROBE_IMAGE = np.full((64, 64, 3), 114, np.uint8)
# Errors that concern one file; anything else (server down, model gone) stops a batch.
FILE_ERRORS: tuple[type[Exception], ...] = (GestureClientError, OSError)
FATAL_ERRORS: tuple[type[Exception], ...] = (ServerUnavailableError, ModelNotReadyError)

T = TypeVar("T")


def backoff_delays(retries: int, backoff_s: float, cap_s: float = MAX_BACKOFF_S) -> list[float]:
    """Seconds to wait before each retry: backoff, 2*backoff, 4*backoff, ... capped."""
    return [min(cap_s, backoff_s * 2**i) for i in range(max(0, retries))]


def default_url(protocol: str) -> str:
    _check_protocol(protocol)
    return DEFAULT_URLS[protocol]


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")


def read_labels_file(path: str | Path) -> tuple[str, ...]:
    """A Triton label file: one class name per line, in output order."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip())


@dataclass(frozen=True)
class FileResult:
    """One file of a batch: its result, or the error that concerned only this file."""

    path: Path
    result: GestureResult | None = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class _Request:
    model: str
    input_name: str
    datatype: str
    array: np.ndarray


def image_request(image: object, model: str = ENSEMBLE) -> _Request:
    try:
        pixels = check_image_array(image)
    except InvalidImageError as exc:
        raise InvalidInputError(f"not a usable photo: {exc}") from exc
    return _Request(model, "IMAGE", "UINT8", pixels)


def bytes_request(data: bytes, model: str = ENSEMBLE_BYTES) -> _Request:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidInputError(f"image bytes must be bytes, got {type(data).__name__}")
    if not len(data):
        raise InvalidInputError("image bytes are empty")
    return _Request(model, "IMAGE_BYTES", "BYTES", np.array([bytes(data)], dtype=np.object_))


def _config_json(protocol: str, reply: Any) -> dict[str, Any]:
    # gRPC wraps the config in {"config": ...}; HTTP returns it bare.
    if protocol == "grpc":
        return dict(reply.get("config", {}))
    return dict(reply)


class _Base:
    """Settings and request building shared by the sync and asyncio clients."""

    def __init__(
        self,
        url: str | None,
        protocol: str,
        model: str,
        bytes_model: str,
        timeout: float,
        retries: int,
        backoff: float,
        labels: Sequence[str] | str | Path | None,
        shared_memory: str,
    ):
        _check_protocol(protocol)
        if shared_memory not in SHARED_MEMORY_MODES:
            raise ValueError(
                f"shared_memory must be one of {', '.join(SHARED_MEMORY_MODES)}, "
                f"got {shared_memory!r}"
            )
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if retries < 0 or backoff < 0:
            raise ValueError("retries and backoff must not be negative")
        self.url = url or default_url(protocol)
        self.protocol = protocol
        self.model = model
        self.bytes_model = bytes_model
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.shared_memory = shared_memory
        if isinstance(labels, (str, Path)):
            labels = read_labels_file(labels)
        self._labels: tuple[str, ...] | None = tuple(labels) if labels is not None else None
        self._pool = RegionPool() if shared_memory == "system" else None

    def _module(self, aio: bool) -> ModuleType:
        if self.protocol == "grpc":
            if aio:
                import tritonclient.grpc.aio as module
            else:
                import tritonclient.grpc as module
        elif aio:
            import tritonclient.http.aio as module
        else:
            import tritonclient.http as module
        return module

    def _error(self, exc: BaseException, model: str) -> GestureClientError:
        return translate(exc, self.url, self.protocol, model)

    def _give_up(self, exc: BaseException, model: str, attempts: int) -> GestureClientError:
        err = self._error(exc, model)
        if attempts > 1 and is_retryable(exc):
            err = type(err)(f"{err} (gave up after {attempts} attempts)")
        return err

    def _outputs(self, module: ModuleType) -> list[Any]:
        return [module.InferRequestedOutput(name) for name in ENSEMBLE_OUTPUTS]

    def _input(
        self, module: ModuleType, request: _Request, region: Region | None, nbytes: int
    ) -> Any:
        tensor = module.InferInput(request.input_name, list(request.array.shape), request.datatype)
        if region is None:
            tensor.set_data_from_numpy(request.array)
        else:
            tensor.set_shared_memory(region.name, nbytes)
        return tensor

    def _take_region(self, request: _Request) -> tuple[Region, Region | None, int]:
        assert self._pool is not None
        data = encode_input(request.array)
        region, replaced = self._pool.take(len(data) if isinstance(data, bytes) else data.nbytes)
        return region, replaced, region.write(data)

    def _config_args(self) -> dict[str, Any]:
        # gRPC answers a protobuf unless asked for JSON; HTTP always answers JSON.
        args: dict[str, Any] = {"model_name": self.model}
        if self.protocol == "grpc":
            args["as_json"] = True
        return args

    def _infer_kwargs(self) -> dict[str, Any]:
        # HTTP has no per-call client timeout: it is set on the connection instead.
        return {"client_timeout": self.timeout} if self.protocol == "grpc" else {}

    def _labels_or_fallback(self, k: int, probe: Callable[[], Any]) -> tuple[str, ...]:
        try:
            reply = probe()
            labels = labels_from_classification(reply.as_numpy("GESTURE_PROBS").reshape(-1), k)
        except (OutputError, InvalidInputError, ServerError):
            labels = fallback_labels(k)
        return labels

    def _parse(self, reply: Any) -> GestureResult:
        assert self._labels is not None
        try:
            return parse_outputs(reply.as_numpy, self._labels)
        except OutputError as exc:
            raise ServerError(
                f"unexpected answer from {self.url} ({self.protocol}): {exc}"
            ) from exc

    def _not_ready(self, models: Sequence[str], states: Sequence[bool]) -> ModelNotReadyError:
        missing = [m for m, ready in zip(models, states, strict=True) if not ready]
        return ModelNotReadyError(
            f"model {', '.join(repr(m) for m in missing)} is not ready on the server at "
            f"{self.url} ({self.protocol}); check the gesture-serve log"
        )


# Loopback and LAN connects take milliseconds; this only catches a host that never answers.
CONNECT_TIMEOUT_S = 5.0


class GestureClient(_Base):
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

    # ---------------------------------------------------------------- plumbing

    def _call(self, fn: Callable[[], T], model: str) -> T:
        """``fn()`` with retries on connection errors; errors translated."""
        for attempt, delay in enumerate([*backoff_delays(self.retries, self.backoff), None]):
            try:
                return fn()
            except Exception as exc:
                if delay is None or not is_retryable(exc):
                    raise self._give_up(exc, model, attempt + 1) from exc
                if self._pool is not None:
                    self._pool.forget_registrations()
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _register(self, region: Region) -> None:
        if not region.registered:
            self._client.register_system_shared_memory(region.name, region.key, region.byte_size)
            region.registered = True

    def _release(self, replaced: Region | None) -> None:
        if replaced is None:
            return
        if replaced.registered:
            # The server may have restarted and forgotten it.
            with contextlib.suppress(InferenceServerException, OSError):
                self._client.unregister_system_shared_memory(replaced.name)
        replaced.destroy()

    def _infer(self, request: _Request, outputs: list[Any] | None = None) -> Any:
        outputs = outputs if outputs is not None else self._outputs(self._tc)
        if self._pool is None:
            tensor = self._input(self._tc, request, None, 0)
            return self._call(
                lambda: self._client.infer(
                    request.model, [tensor], outputs=outputs, **self._infer_kwargs()
                ),
                request.model,
            )
        region, replaced, nbytes = self._take_region(request)
        try:
            self._release(replaced)
            tensor = self._input(self._tc, request, region, nbytes)

            def attempt() -> Any:
                self._register(region)
                try:
                    return self._client.infer(
                        request.model, [tensor], outputs=outputs, **self._infer_kwargs()
                    )
                except InferenceServerException as exc:
                    if not is_lost_region(exc):
                        raise
                assert self._pool is not None
                self._pool.forget_registrations()
                self._register(region)
                return self._client.infer(
                    request.model, [tensor], outputs=outputs, **self._infer_kwargs()
                )

            return self._call(attempt, request.model)
        finally:
            self._pool.give(region)

    # ---------------------------------------------------------------- health

    def is_ready(self) -> bool:
        """Server and both entry points ready; False (no exception) when unreachable."""
        try:
            return bool(
                self._client.is_server_ready()
                and self._client.is_model_ready(self.model)
                and self._client.is_model_ready(self.bytes_model)
            )
        except Exception:
            return False

    def check_ready(self, models: Sequence[str] | None = None) -> None:
        """Raise ServerUnavailableError / ModelNotReadyError unless all is ready (with retries)."""
        names = list(models) if models is not None else [self.model, self.bytes_model]

        def server() -> None:
            if not self._client.is_server_ready():
                raise InferenceServerException("server is not ready", status="503")

        try:
            self._call(server, names[0])
        except ServerUnavailableError:
            raise
        except GestureClientError as exc:
            raise server_down(self.url, self.protocol, str(exc)) from exc
        states = [self._call(partial(self._client.is_model_ready, m), m) for m in names]
        if not all(states):
            raise self._not_ready(names, states)

    @property
    def labels(self) -> tuple[str, ...]:
        if self._labels is None:
            config = self._call(
                lambda: self._client.get_model_config(**self._config_args()), self.model
            )
            config_json = _config_json(self.protocol, config)
            k = probs_size_from_config(config_json)
            self._labels = labels_from_config(config_json, k)
            if self._labels is None:
                # Older repositories carry no labels parameter: ask the classification
                # extension, which attaches the names of the output's label file.
                probe = [self._tc.InferRequestedOutput("GESTURE_PROBS", class_count=k)]
                self._labels = self._labels_or_fallback(
                    k, lambda: self._infer(image_request(PROBE_IMAGE, self.model), probe)
                )
        return self._labels

    # ---------------------------------------------------------------- classify

    def classify_image(self, image: np.ndarray) -> GestureResult:
        """RGB uint8 ``[H, W, 3]`` pixels -> result (``gesture_ensemble``)."""
        request = image_request(image, self.model)
        self.labels  # noqa: B018 - resolved before the request, so a failure is reported first
        return self._parse(self._infer(request))

    def classify_bytes(self, data: bytes) -> GestureResult:
        """An encoded JPEG/PNG/... file -> result, decoded on the server."""
        request = bytes_request(data, self.bytes_model)
        self.labels  # noqa: B018
        return self._parse(self._infer(request))

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
            yield _guarded(Path(path), partial(self.classify_path, Path(path), encoded))

    # ---------------------------------------------------------------- lifetime

    def close(self) -> None:
        if self._pool is not None:
            for region in self._pool.regions():
                if region.registered:
                    # Server gone: nothing to unregister.
                    with contextlib.suppress(Exception):
                        self._client.unregister_system_shared_memory(region.name)
            self._pool.destroy_all()
        self._client.close()

    def __enter__(self) -> GestureClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _load_pixels(path: str | Path) -> np.ndarray:
    try:
        return load_image(path)
    except InvalidImageError as exc:
        raise InvalidInputError(f"{path}: {exc}") from exc


def _guarded(path: Path, fn: Callable[[], GestureResult]) -> FileResult:
    try:
        return FileResult(path, result=fn())
    except FATAL_ERRORS:
        raise
    except FILE_ERRORS as exc:
        return FileResult(path, error=exc)


class AsyncGestureClient(_Base):
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
        self._client: Any = None
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

    async def _call(self, fn: Callable[[], Awaitable[T]], model: str) -> T:
        for attempt, delay in enumerate([*backoff_delays(self.retries, self.backoff), None]):
            try:
                return await fn()
            except Exception as exc:
                if delay is None or not is_retryable(exc):
                    raise self._give_up(exc, model, attempt + 1) from exc
                if self._pool is not None:
                    self._pool.forget_registrations()
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _register(self, region: Region) -> None:
        if not region.registered:
            await self._client.register_system_shared_memory(
                region.name, region.key, region.byte_size
            )
            region.registered = True

    async def _release(self, replaced: Region | None) -> None:
        if replaced is None:
            return
        if replaced.registered:
            # The server may have restarted and forgotten it.
            with contextlib.suppress(Exception):
                await self._client.unregister_system_shared_memory(replaced.name)
        replaced.destroy()

    async def _infer(self, request: _Request, outputs: list[Any] | None = None) -> Any:
        client = self._open()
        assert self._window is not None
        outputs = outputs if outputs is not None else self._outputs(self._tc)
        async with self._window:
            if self._pool is None:
                tensor = self._input(self._tc, request, None, 0)
                return await self._call(
                    lambda: client.infer(
                        request.model, [tensor], outputs=outputs, **self._infer_kwargs()
                    ),
                    request.model,
                )
            # At most max_in_flight regions exist: one is taken per request inside the window.
            region, replaced, nbytes = self._take_region(request)
            try:
                await self._release(replaced)
                tensor = self._input(self._tc, request, region, nbytes)

                async def attempt() -> Any:
                    await self._register(region)
                    try:
                        return await client.infer(
                            request.model, [tensor], outputs=outputs, **self._infer_kwargs()
                        )
                    except InferenceServerException as exc:
                        if not is_lost_region(exc):
                            raise
                    assert self._pool is not None
                    self._pool.forget_registrations()
                    await self._register(region)
                    return await client.infer(
                        request.model, [tensor], outputs=outputs, **self._infer_kwargs()
                    )

                return await self._call(attempt, request.model)
            finally:
                self._pool.give(region)

    # ---------------------------------------------------------------- health

    async def is_ready(self) -> bool:
        client = self._open()
        try:
            return bool(
                await client.is_server_ready()
                and await client.is_model_ready(self.model)
                and await client.is_model_ready(self.bytes_model)
            )
        except Exception:
            return False

    async def check_ready(self, models: Sequence[str] | None = None) -> None:
        client = self._open()
        names = list(models) if models is not None else [self.model, self.bytes_model]

        async def server() -> None:
            if not await client.is_server_ready():
                raise InferenceServerException("server is not ready", status="503")

        try:
            await self._call(server, names[0])
        except ServerUnavailableError:
            raise
        except GestureClientError as exc:
            raise server_down(self.url, self.protocol, str(exc)) from exc
        states = [await self._call(partial(client.is_model_ready, m), m) for m in names]
        if not all(states):
            raise self._not_ready(names, states)

    async def get_labels(self) -> tuple[str, ...]:
        client = self._open()
        assert self._labels_lock is not None
        async with self._labels_lock:  # one probe, however many requests start at once
            if self._labels is None:
                config = await self._call(
                    lambda: client.get_model_config(**self._config_args()), self.model
                )
                config_json = _config_json(self.protocol, config)
                k = probs_size_from_config(config_json)
                self._labels = labels_from_config(config_json, k)
                if self._labels is not None:
                    return self._labels
                probe = [self._tc.InferRequestedOutput("GESTURE_PROBS", class_count=k)]
                try:
                    reply = await self._infer(image_request(PROBE_IMAGE, self.model), probe)
                    self._labels = self._labels_or_fallback(k, lambda: reply)
                except (InvalidInputError, ServerError):
                    self._labels = fallback_labels(k)
        return self._labels

    # ---------------------------------------------------------------- classify

    async def classify_image(self, image: np.ndarray) -> GestureResult:
        request = image_request(image, self.model)
        await self.get_labels()
        return self._parse(await self._infer(request))

    async def classify_bytes(self, data: bytes) -> GestureResult:
        request = bytes_request(data, self.bytes_model)
        await self.get_labels()
        return self._parse(await self._infer(request))

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
        if self._pool is not None:
            for region in self._pool.regions():
                if region.registered:
                    # Server gone: nothing to unregister.
                    with contextlib.suppress(Exception):
                        await self._client.unregister_system_shared_memory(region.name)
            self._pool.destroy_all()
        await self._client.close()
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
