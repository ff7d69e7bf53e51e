"""Plumbing shared by the Python-backend ``model.py`` files: parameters, spec files, responses.

``triton_python_backend_utils`` exists only inside Triton's Python stub, so it is passed in
rather than imported here (this module stays importable, and testable, anywhere).
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from gesture_recognition.images import InvalidImageError
from gesture_recognition.serving.steps import InvalidInputError

Outputs = Mapping[str, np.ndarray]


def version_dir(args: Mapping[str, str]) -> Path:
    """The folder of the model version being loaded (holds model.onnx and the spec JSONs)."""
    return Path(args["model_repository"]) / str(args["model_version"])


def parameter(args: Mapping[str, str], key: str, default: object) -> str:
    """A ``parameters`` entry of the model's config.pbtxt, as a string."""
    config = json.loads(args["model_config"])
    entry = config.get("parameters", {}).get(key)
    if entry is None or entry.get("string_value", "") == "":
        return str(default)
    return str(entry["string_value"])


def int_parameter(args: Mapping[str, str], key: str, default: int, minimum: int = 0) -> int:
    text = parameter(args, key, default)
    try:
        value = int(text)
    except ValueError as exc:
        raise ValueError(f"config parameter {key} must be an integer, got {text!r}") from exc
    if value < minimum:
        raise ValueError(f"config parameter {key} must be at least {minimum}, got {value}")
    return value


def input_array(pb_utils: ModuleType, request: Any, name: str) -> np.ndarray:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise InvalidInputError(f"input {name} is missing")
    return tensor.as_numpy()


def response(pb_utils: ModuleType, outputs: Outputs) -> Any:
    return pb_utils.InferenceResponse(
        output_tensors=[
            pb_utils.Tensor(name, np.ascontiguousarray(v)) for name, v in outputs.items()
        ]
    )


def error_response(pb_utils: ModuleType, exc: BaseException, model: str) -> Any:
    """Bad input -> INVALID_ARG (HTTP 400 / gRPC INVALID_ARGUMENT); anything else -> INTERNAL,
    logged with its traceback. The model keeps serving either way."""
    if isinstance(exc, InvalidImageError | InvalidInputError):
        return pb_utils.InferenceResponse(
            error=pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
        )
    pb_utils.Logger.log_error(f"{model}: {''.join(traceback.format_exception(exc))}")
    return pb_utils.InferenceResponse(
        error=pb_utils.TritonError(
            f"{model} failed: {type(exc).__name__}: {exc}", pb_utils.TritonError.INTERNAL
        )
    )


def respond_each(
    pb_utils: ModuleType, requests: list[Any], handle: Callable[[Any], Outputs], model: str
) -> list[Any]:
    """One response per request; a failing request does not fail the others."""
    responses = []
    for request in requests:
        try:
            responses.append(response(pb_utils, handle(request)))
        except Exception as exc:
            responses.append(error_response(pb_utils, exc, model))
    return responses
