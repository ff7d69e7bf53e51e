"""Clients for the served gesture ensembles: ``GestureClient`` (blocking), ``AsyncGestureClient``
(asyncio) and the ``gesture-client`` command (:mod:`.cli`)."""

import os

# ONNX Runtime (1.32 here) starts its telemetry when imported, which the clients do through
# gesture_recognition.pipeline: it writes a session file into $TMPDIR (seen: $TMPDIR/.ses). A
# client runs no model, and gesture-web promises to write no file; a user may still opt in.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

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
