"""Clients for the served gesture ensembles: ``GestureClient`` (blocking), ``AsyncGestureClient``
(asyncio) and the ``gesture-client`` command (:mod:`.cli`)."""

from .clients import AsyncGestureClient, FileResult, GestureClient
from .errors import (
    GestureClientError,
    InvalidInputError,
    ModelNotReadyError,
    RequestTimeoutError,
    ServerError,
    ServerUnavailableError,
)

__all__ = [
    "AsyncGestureClient",
    "FileResult",
    "GestureClient",
    "GestureClientError",
    "InvalidInputError",
    "ModelNotReadyError",
    "RequestTimeoutError",
    "ServerError",
    "ServerUnavailableError",
]
