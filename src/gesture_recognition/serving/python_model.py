"""Plumbing shared by the Python-backend ``model.py`` files: parameters, spec files, responses.

``triton_python_backend_utils`` exists only inside Triton's Python stub, so it is passed in
rather than imported here (this module stays importable, and testable, anywhere).
"""

from __future__ import annotations

import json
import threading
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import numpy as np

from gesture_recognition.images import InvalidImageError
from gesture_recognition.serving.steps import InvalidInputError
from gesture_recognition.thread_gate import ThreadGate, gate_path

Outputs = Mapping[str, np.ndarray]
R = TypeVar("R")


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


def thread_gate(args: Mapping[str, str]) -> ThreadGate | None:
    """The repository-wide gate between wide and one-thread ORT runs when ``ORT_GATE`` is 1."""
    if not int_parameter(args, "ORT_GATE", 0):
        return None
    return ThreadGate(gate_path(Path(args["model_repository"]).parent))


RUNS_METRIC = "gesture_ort_runs_total"
# How often the run counts reach Triton. Each increment() is a round trip from the stub to the
# server process; after an idle gap it costs ~0.15 ms (0.02 ms back to back), measured in a
# stub on the 2-core host. Counting in the stub and sending the sums from a background thread
# keeps those round trips off every request's path. Readers of /metrics wait this long.
RUNS_FLUSH_INTERVAL_S = 0.25


class RunWidthMetrics:
    """Triton custom metric ``gesture_ort_runs_total{model, instance, width}``: how many ONNX
    Runtime runs took the wide (all threads) or the narrow (one thread) session, so the thread
    gate's effect under load is visible on ``/metrics``. Runs are counted in the stub and sent
    every ``RUNS_FLUSH_INTERVAL_S`` (and on ``close``), so ``/metrics`` lags by at most that."""

    def __init__(
        self,
        pb_utils: ModuleType,
        args: Mapping[str, str],
        flush_interval_s: float = RUNS_FLUSH_INTERVAL_S,
    ):
        # The family must outlive its metrics (the stub refuses the other order): both are kept.
        self.family = pb_utils.MetricFamily(
            name=RUNS_METRIC,
            description="ONNX Runtime runs by session width (narrow: another run was busy)",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        labels = {"model": args["model_name"], "instance": args.get("model_instance_name", "")}
        self.metrics = {
            width: self.family.Metric(labels={**labels, "width": width})
            for width in ("wide", "narrow")
        }
        self._pb_utils = pb_utils
        self._pending = dict.fromkeys(self.metrics, 0)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._flusher = threading.Thread(
            target=self._flush_every,
            args=(flush_interval_s,),
            name="run-width-metrics",
            daemon=True,
        )
        self._flusher.start()

    def __call__(self, width: str) -> None:
        with self._lock:
            self._pending[width] += 1

    def flush(self) -> None:
        with self._lock:
            counts, self._pending = self._pending, dict.fromkeys(self._pending, 0)
        error: Exception | None = None
        for width, count in counts.items():
            if not count:
                continue
            try:
                self.metrics[width].increment(count)
            except Exception as exc:  # the stub's own error type
                with self._lock:  # nothing lost: these go with the next send
                    self._pending[width] += count
                error = exc
        if error is not None:
            raise error

    def _flush_every(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.flush()
            except Exception as exc:  # the stub's own error type; serving must go on
                self._pb_utils.Logger.log_warn(f"{RUNS_METRIC}: not sent, kept for later: {exc}")

    def close(self) -> None:
        self._stop.set()
        self._flusher.join()
        try:
            self.flush()
        except Exception as exc:  # unloading goes on; only the last counts are missing
            self._pb_utils.Logger.log_warn(f"{RUNS_METRIC}: last counts not sent: {exc}")
        finally:
            self.metrics.clear()
            del self.family


def run_width_metrics(pb_utils: ModuleType, args: Mapping[str, str]) -> RunWidthMetrics | None:
    """The run counters, or None where Triton's metrics are off (serving goes on without)."""
    try:
        return RunWidthMetrics(pb_utils, args)
    except Exception as exc:  # the stub raises its own error type when metrics are disabled
        pb_utils.Logger.log_warn(f"{args['model_name']}: no run-width metrics: {exc}")
        return None


def gated_runner(
    pb_utils: ModuleType, args: Mapping[str, str], runner_cls: Callable[..., R], spec: object
) -> tuple[R, RunWidthMetrics | None]:
    """The model's ONNX Runtime runner as the cpu flavour configures it: ``ORT_THREADS``, the
    repository's thread gate (``ORT_GATE``; two instances of a model may run at once) and the
    run-width metrics. Returns the metrics too: ``finalize`` must close them."""
    metrics = run_width_metrics(pb_utils, args)
    threads = int_parameter(args, "ORT_THREADS", 0) or None
    onnx = version_dir(args) / "model.onnx"
    return runner_cls(onnx, spec, threads, thread_gate(args), metrics), metrics


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
