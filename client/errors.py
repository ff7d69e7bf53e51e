"""What can go wrong talking to the server, as exceptions a program (and the CLI) can act on.

Both transports report failures differently: gRPC as ``InferenceServerException`` with a
``StatusCode.*`` status, HTTP as an ``InferenceServerException`` with the HTTP status code or as
raw socket / aiohttp / geventhttpclient errors when there is no server at all. ``translate``
turns all of them into one hierarchy, and ``is_retryable`` says which are worth another try
(the server restarting), never a request the server refused.
"""

from __future__ import annotations

import asyncio
import socket

from tritonclient.utils import InferenceServerException

try:  # the HTTP sync client's transport; absent when only the gRPC extra is installed
    from geventhttpclient.response import HTTPConnectionClosed
except ImportError:  # pragma: no cover - depends on the installed extras
    HTTPConnectionClosed = ConnectionError

try:
    from aiohttp import ClientConnectionError, ServerTimeoutError
except ImportError:  # pragma: no cover
    ClientConnectionError = ConnectionError  # type: ignore[misc,assignment]
    ServerTimeoutError = TimeoutError  # type: ignore[misc,assignment]


class GestureClientError(Exception):
    """Any failure of a gesture request; the message is meant for the user as it is."""


class ServerUnavailableError(GestureClientError):
    """No server answers at the URL (not started, restarting, wrong port or protocol)."""


class ModelNotReadyError(GestureClientError):
    """The server answers, but the gesture model is not loaded (or not known) there."""


class InvalidInputError(GestureClientError):
    """The server refused the request (INVALID_ARGUMENT / HTTP 400); its message is kept."""


class RequestTimeoutError(GestureClientError):
    """No answer within the client's timeout. Not retried: the server may still be working."""


class ServerError(GestureClientError):
    """Any other error the server reported (e.g. a model step failed)."""


GRPC_RETRYABLE = {"StatusCode.UNAVAILABLE"}
# 503 is what Triton's HTTP frontend answers for TRITONSERVER_ERROR_UNAVAILABLE; 502/504 come
# from a proxy in front of a server that is restarting.
HTTP_RETRYABLE = {"502", "503", "504"}
INVALID_STATUSES = {"StatusCode.INVALID_ARGUMENT", "400"}
NOT_FOUND_STATUSES = {"StatusCode.NOT_FOUND", "404"}
TIMEOUT_STATUSES = {"StatusCode.DEADLINE_EXCEEDED"}


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, (TimeoutError, socket.timeout, asyncio.TimeoutError, ServerTimeoutError))


def _is_connection_error(exc: BaseException) -> bool:
    if _is_timeout(exc):
        return False
    return isinstance(exc, (ConnectionError, ClientConnectionError, HTTPConnectionClosed)) or (
        # Name resolution and "network unreachable" come as bare OSError.
        type(exc) is OSError or isinstance(exc, socket.gaierror)
    )


# What Triton answers for a model it knows but has no loaded version of: while a stopping
# server unloads its models (measured: a few seconds of every request of a restart under
# load), while a starting one loads them, or during a reload. The request never ran, so it
# is safe to send again; a name the server does not know says "is not found" instead.
TRANSIENT_MODEL_MESSAGES = ("has no available versions",)


def is_retryable(exc: BaseException) -> bool:
    """True for a server that is down or restarting; never for a request it refused."""
    if isinstance(exc, InferenceServerException):
        status = exc.status() or ""
        text = exc.message() or ""
        return (
            status in GRPC_RETRYABLE
            or status in HTTP_RETRYABLE
            or any(m in text for m in TRANSIENT_MODEL_MESSAGES)
        )
    return _is_connection_error(exc)


def is_lost_region(exc: BaseException) -> bool:
    """The server does not know a shared memory region the client registered: it restarted
    between two requests without the client seeing the connection drop."""
    if not isinstance(exc, InferenceServerException):
        return False
    text = (exc.message() or "").lower()
    return "shared memory region" in text and (exc.status() or "") in (
        NOT_FOUND_STATUSES | INVALID_STATUSES
    )


def is_region_in_use(exc: BaseException) -> bool:
    """The server refused to unregister a region because a request still holds it: Triton
    answers the client before it releases the request's inputs, so a region freed by the
    client's last answer can still be in use for a moment."""
    return isinstance(exc, InferenceServerException) and "currently in use" in (
        exc.message() or ""
    )


def is_region_known(exc: BaseException) -> bool:
    """The server already has a region of this name. The client's names are unique to it, so
    it is ours: registered by a call whose reply was lost, or after a retry that assumed a
    restart the server never had."""
    return isinstance(exc, InferenceServerException) and "already in manager" in (
        exc.message() or ""
    )


def _message(exc: BaseException) -> str:
    if isinstance(exc, InferenceServerException):
        text = exc.message() or ""
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split()) or type(exc).__name__


def server_down(url: str, protocol: str, detail: str) -> ServerUnavailableError:
    return ServerUnavailableError(
        f"no Triton server answers at {url} over {protocol} ({detail}); is gesture-serve "
        f"running? Start it with `gesture-serve`, or pass the right --url / --protocol"
    )


def translate(exc: BaseException, url: str, protocol: str, model: str) -> GestureClientError:
    """The hierarchy's exception for any error raised by a tritonclient call."""
    if isinstance(exc, GestureClientError):
        return exc
    detail = _message(exc)
    status = exc.status() if isinstance(exc, InferenceServerException) else None
    if _is_timeout(exc) or status in TIMEOUT_STATUSES:
        return RequestTimeoutError(
            f"no answer from {url} ({protocol}) for model {model!r} within the timeout: {detail}"
        )
    if any(m in detail for m in TRANSIENT_MODEL_MESSAGES):
        return ModelNotReadyError(
            f"model {model!r} is not loaded on the server at {url} ({protocol}): {detail}"
        )
    if status in INVALID_STATUSES:
        return InvalidInputError(f"the server refused the input for {model!r}: {detail}")
    if status in NOT_FOUND_STATUSES:
        return ModelNotReadyError(
            f"model {model!r} is not available on the server at {url} ({protocol}): {detail}"
        )
    if is_retryable(exc):
        # gRPC also says UNAVAILABLE for a known model that is not loaded; the server's own
        # message then names the model, while a dead socket says "failed to connect" etc.
        if status is not None and "model" in detail.lower():
            return ModelNotReadyError(
                f"model {model!r} is not ready on the server at {url} ({protocol}): {detail}"
            )
        return server_down(url, protocol, detail)
    if status is None and not isinstance(exc, InferenceServerException):
        return GestureClientError(f"request to {url} ({protocol}) failed: {detail}")
    return ServerError(f"the server at {url} ({protocol}) failed on {model!r}: {detail}")
