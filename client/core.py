"""What the blocking and the asyncio client do, written once.

Every operation (a request with retries and shared memory, the readiness checks, the label
lookup, closing) is a generator that *yields* what has to happen on the wire, a zero-argument
call of tritonclient or a :class:`Sleep`, and receives its result. :class:`~.clients.GestureClient`
runs these generators by calling (and sleeping) directly; :class:`~.clients.AsyncGestureClient`
awaits the same calls on tritonclient's asyncio classes. So retries, shared-memory recovery
and label resolution behave identically in both, and each is tested once.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import numpy as np
from tritonclient.utils import InferenceServerException

from gesture_recognition.images import InvalidImageError, check_image_array
from gesture_recognition.pipeline import GestureResult
from gesture_recognition.serving.contract import (
    ENSEMBLE,
    ENSEMBLE_BYTES,
    ENSEMBLE_OUTPUTS,
    GESTURE_PROBS,
    IMAGE,
    IMAGE_BYTES,
)

from .errors import (
    GestureClientError,
    InvalidInputError,
    ModelNotReadyError,
    ServerError,
    ServerUnavailableError,
    is_lost_region,
    is_region_in_use,
    is_region_known,
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

# Closing waits up to about a second for the server to let go of a region (``_unregister``).
UNREGISTER_TRIES = 20
UNREGISTER_WAIT_S = 0.05
PROTOCOLS = ("grpc", "http")
DEFAULT_URLS = {"grpc": "127.0.0.1:8001", "http": "127.0.0.1:8000"}
SHARED_MEMORY_MODES = ("none", "system")
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF_S = 0.25
MAX_BACKOFF_S = 8.0
# Small but above the server's minimum side; what the detector makes of it does not matter.
PROBE_IMAGE = np.full((64, 64, 3), 114, np.uint8)

T = TypeVar("T")


@dataclass(frozen=True)
class Sleep:
    """Wait this long before the next attempt."""

    seconds: float


# A call of tritonclient: the blocking client's result, or the asyncio client's awaitable.
Call = Callable[[], Any]
Steps = Generator[Call | Sleep, Any, T]


def backoff_delays(retries: int, backoff_s: float, cap_s: float = MAX_BACKOFF_S) -> list[float]:
    """Seconds to wait before each retry: backoff, 2*backoff, 4*backoff, ... capped."""
    return [min(cap_s, backoff_s * 2**i) for i in range(max(0, retries))]


def default_url(protocol: str) -> str:
    check_protocol(protocol)
    return DEFAULT_URLS[protocol]


def check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")


def read_labels_file(path: str | Path) -> tuple[str, ...]:
    """A Triton label file: one class name per line, in output order."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip())


@dataclass(frozen=True)
class Request:
    model: str
    input_name: str
    datatype: str
    array: np.ndarray


def image_request(image: object, model: str = ENSEMBLE) -> Request:
    try:
        pixels = check_image_array(image)
    except InvalidImageError as exc:
        raise InvalidInputError(f"not a usable photo: {exc}") from exc
    return Request(model, IMAGE, "UINT8", pixels)


def bytes_request(data: bytes, model: str = ENSEMBLE_BYTES) -> Request:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidInputError(f"image bytes must be bytes, got {type(data).__name__}")
    if not len(data):
        raise InvalidInputError("image bytes are empty")
    return Request(model, IMAGE_BYTES, "BYTES", np.array([bytes(data)], dtype=np.object_))


def once(call: Call) -> Steps[Any]:
    """One call, its result."""
    return (yield call)


class ClientCore:
    """Settings and every operation of a client, as generators over one tritonclient module
    (``_tc``) and client object (``_client``)."""

    _tc: ModuleType
    _client: Any

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
        check_protocol(protocol)
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
        if isinstance(labels, str | Path):
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

    # ---------------------------------------------------------------- retries

    def _give_up(self, exc: BaseException, model: str, attempts: int) -> GestureClientError:
        err = translate(exc, self.url, self.protocol, model)
        if attempts > 1 and is_retryable(exc):
            err = type(err)(f"{err} (gave up after {attempts} attempts)")
        return err

    def _retrying(self, attempt: Callable[[], Steps[T]], model: str) -> Steps[T]:
        """``attempt()`` again with backoff while the server is unreachable or restarting;
        failures as :mod:`.errors` exceptions. A refused request is never retried."""
        delays: list[float | None] = [*backoff_delays(self.retries, self.backoff), None]
        for tries, delay in enumerate(delays, start=1):
            try:
                return (yield from attempt())
            except Exception as exc:
                if delay is None or not is_retryable(exc):
                    raise self._give_up(exc, model, tries) from exc
                if self._pool is not None:
                    # A restarted server forgot every region this client registered.
                    self._pool.forget_registrations()
                yield Sleep(delay)
        raise AssertionError("unreachable")

    # ---------------------------------------------------------------- requests

    def _input(self, request: Request, region: Region | None, nbytes: int) -> Any:
        tensor = self._tc.InferInput(
            request.input_name, list(request.array.shape), request.datatype
        )
        if region is None:
            tensor.set_data_from_numpy(request.array)
        else:
            tensor.set_shared_memory(region.name, nbytes)
        return tensor

    def _infer_call(self, request: Request, tensor: Any, outputs: list[Any] | None) -> Call:
        outputs = outputs or [self._tc.InferRequestedOutput(name) for name in ENSEMBLE_OUTPUTS]
        # HTTP has no per-call client timeout: it is set on the connection instead.
        kwargs = {"client_timeout": self.timeout} if self.protocol == "grpc" else {}
        return partial(self._client.infer, request.model, [tensor], outputs=outputs, **kwargs)

    def _register(self, region: Region) -> Steps[None]:
        if not region.registered:
            try:
                yield partial(
                    self._client.register_system_shared_memory,
                    region.name,
                    region.key,
                    region.byte_size,
                )
            except InferenceServerException as exc:
                if not is_region_known(exc):
                    raise
            region.registered = True

    def _unregister(self, region: Region) -> Steps[None]:
        """Unregister ``region`` on the server, whatever its ``registered`` flag says (a reply
        lost to a timeout leaves the flag wrong). Waits while a request that has already
        answered still holds it; a server that is gone or never knew the region is fine."""
        for _ in range(UNREGISTER_TRIES):
            try:
                yield partial(self._client.unregister_system_shared_memory, region.name)
            except Exception as exc:
                if not is_region_in_use(exc):
                    break
                yield Sleep(UNREGISTER_WAIT_S)
            else:
                break
        else:
            warnings.warn(
                f"the server at {self.url} still held shared memory region {region.name!r} "
                f"after {UNREGISTER_TRIES} tries; it stays registered there until the server "
                "restarts",
                RuntimeWarning,
                stacklevel=2,
            )
        region.registered = False

    def _infer(self, request: Request, outputs: list[Any] | None = None) -> Steps[Any]:
        """One request, with retries; through a shared-memory region when the client uses
        them, registered again if the server lost it (a restart between two requests)."""
        if self._pool is None:
            call = self._infer_call(request, self._input(request, None, 0), outputs)
            return (yield from self._retrying(lambda: once(call), request.model))
        pool = self._pool
        data = encode_input(request.array)
        region, replaced = pool.take(len(data) if isinstance(data, bytes) else data.nbytes)
        try:
            if replaced is not None:
                yield from self._unregister(replaced)
                replaced.destroy()
            call = self._infer_call(
                request, self._input(request, region, region.write(data)), outputs
            )

            def attempt() -> Steps[Any]:
                yield from self._register(region)
                try:
                    return (yield call)
                except InferenceServerException as exc:
                    if not is_lost_region(exc):
                        raise
                pool.forget_registrations()
                yield from self._register(region)
                return (yield call)

            return (yield from self._retrying(attempt, request.model))
        finally:
            pool.give(region)

    def _parse(self, reply: Any) -> GestureResult:
        assert self._labels is not None
        try:
            return parse_outputs(reply.as_numpy, self._labels)
        except OutputError as exc:
            raise ServerError(
                f"unexpected answer from {self.url} ({self.protocol}): {exc}"
            ) from exc

    # ---------------------------------------------------------------- health and labels

    def _is_ready(self) -> Steps[bool]:
        server = yield self._client.is_server_ready
        model = server and (yield partial(self._client.is_model_ready, self.model))
        both = model and (yield partial(self._client.is_model_ready, self.bytes_model))
        return bool(both)

    def _check_ready(self, models: Sequence[str] | None) -> Steps[None]:
        names = list(models) if models is not None else [self.model, self.bytes_model]

        def server() -> Steps[None]:
            if not (yield self._client.is_server_ready):
                raise InferenceServerException("server is not ready", status="503")

        try:
            yield from self._retrying(server, names[0])
        except ServerUnavailableError:
            raise
        except GestureClientError as exc:
            raise server_down(self.url, self.protocol, str(exc)) from exc
        states = []
        for name in names:
            call = partial(self._client.is_model_ready, name)
            states.append((yield from self._retrying(partial(once, call), name)))
        if not all(states):
            missing = [m for m, ready in zip(names, states, strict=True) if not ready]
            raise ModelNotReadyError(
                f"model {', '.join(repr(m) for m in missing)} is not ready on the server at "
                f"{self.url} ({self.protocol}); check the gesture-serve log"
            )

    def _resolve_labels(self) -> Steps[tuple[str, ...]]:
        """The class names: the ensemble config's ``labels`` parameter, else (an older
        repository) the classification extension's names from the output's label file."""
        if self._labels is not None:
            return self._labels
        # gRPC answers a protobuf unless asked for JSON, and wraps it in {"config": ...}.
        args: dict[str, Any] = {"model_name": self.model}
        if self.protocol == "grpc":
            args["as_json"] = True
        call = partial(self._client.get_model_config, **args)
        reply = yield from self._retrying(lambda: once(call), self.model)
        config = dict(reply.get("config", {})) if self.protocol == "grpc" else dict(reply)
        k = probs_size_from_config(config)
        labels = labels_from_config(config, k)
        if labels is None:
            probe = [self._tc.InferRequestedOutput(GESTURE_PROBS, class_count=k)]
            try:
                answer = yield from self._infer(image_request(PROBE_IMAGE, self.model), probe)
                labels = labels_from_classification(answer.as_numpy(GESTURE_PROBS).reshape(-1), k)
            except (OutputError, InvalidInputError, ServerError):
                labels = fallback_labels(k)
        self._labels = labels
        return labels

    def _close(self) -> Steps[None]:
        if self._pool is not None:
            for region in self._pool.regions():
                yield from self._unregister(region)
            self._pool.destroy_all()
        yield self._client.close
