"""ONNX Runtime sessions for the two models, tuned for small CPU hosts.

Shared by the in-process pipeline and the Python-backend Triton models so both run the same
files with the same settings.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from gesture_recognition.artifacts import ClassifierSpec, DetectorSpec
from gesture_recognition.caller_affinity import caller_cpus_after, pinned
from gesture_recognition.thread_gate import ThreadGate

CPU_PROVIDER = "CPUExecutionProvider"


def make_session(
    path: str | Path, threads: int | None = None, providers: Sequence[str] = (CPU_PROVIDER,)
) -> ort.InferenceSession:
    """An ORT session, on the CPU with thread spinning off unless ``providers`` name others.

    Spinning idle threads of one session starve the other model's session on a 2-core host
    (measured: 40 ms vs 19 ms per photo for detector + classifier), see
    ../shared/notes/measurements.md. Other providers (``CUDAExecutionProvider`` with
    onnxruntime-gpu, for the in-process baseline of a GPU benchmark) must really be the one
    that runs: ORT would otherwise fall back to the CPU quietly and mislabel every number.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    providers = list(providers)
    if not providers:
        raise ValueError("no ONNX Runtime execution provider given")
    available = ort.get_available_providers()
    missing = [p for p in providers if p not in available]
    if missing:
        raise RuntimeError(
            f"this onnxruntime has no {', '.join(missing)} (available: {', '.join(available)}); "
            "GPU providers need onnxruntime-gpu and a GPU"
        )
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    n = threads if threads is not None else _env_threads()
    if n > 0:
        options.intra_op_num_threads = n
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=providers)
    if session.get_providers()[0] != providers[0]:
        raise RuntimeError(
            f"ONNX Runtime could not start {providers[0]} for {Path(path).name} "
            f"(it runs on {session.get_providers()[0]}); see its log for why"
        )
    return session


class GatedSession:
    """One ONNX file, run either on ``threads`` threads or, when a :class:`ThreadGate` says
    another gated run is busy, on one thread (see ``thread_gate`` for why)."""

    def __init__(
        self,
        onnx_path: str | Path,
        threads: int | None = None,
        gate: ThreadGate | None = None,
        on_run: Callable[[str], None] | None = None,
        providers: Sequence[str] = (CPU_PROVIDER,),
    ):
        on_cpu = providers[0] == CPU_PROVIDER
        # The CPUs ORT left to the caller of a wide run (see caller_affinity); a GPU session's
        # caller only waits, nothing to place.
        self.caller_cpus: frozenset[int] = frozenset()
        if on_cpu:
            self.wide, self.caller_cpus = caller_cpus_after(
                lambda: make_session(onnx_path, threads, providers)
            )
        else:
            self.wide = make_session(onnx_path, threads, providers)
        self.on_run = on_run
        wide_threads = threads if threads is not None else _env_threads()
        # A gate over two one-thread sessions would only cost a second copy of the weights;
        # and the gate shares CPU cores, nothing to share when a GPU runs the network.
        self.gate = gate if wide_threads != 1 and on_cpu else None
        self.narrow = make_session(onnx_path, 1) if self.gate is not None else self.wide
        self.runs = {"wide": 0, "narrow": 0}

    def run(self, output: str, feeds: dict[str, NDArray[np.float32]]) -> NDArray[np.float32]:
        with self.gate.enter() if self.gate is not None else contextlib.nullcontext(True) as alone:
            width = "wide" if alone else "narrow"
            with pinned(self.caller_cpus if alone else frozenset()):
                (out,) = (self.wide if alone else self.narrow).run([output], feeds)
        self.runs[width] += 1
        if self.on_run is not None:
            self.on_run(width)
        return np.asarray(out, dtype=np.float32)


def _env_threads() -> int:
    return int(os.environ.get("GESTURE_ORT_THREADS", "0") or 0)


SpecT = TypeVar("SpecT", DetectorSpec, ClassifierSpec)


class _SpecRunner(Generic[SpecT]):
    """A :class:`GatedSession` of one model and the spec naming its input and output."""

    def __init__(
        self,
        onnx_path: str | Path,
        spec: SpecT,
        threads: int | None = None,
        gate: ThreadGate | None = None,
        on_run: Callable[[str], None] | None = None,
        providers: Sequence[str] = (CPU_PROVIDER,),
    ):
        self.spec: SpecT = spec
        self.runner = GatedSession(onnx_path, threads, gate, on_run, providers)

    def _run(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        return self.runner.run(self.spec.output_name, {self.spec.input_name: batch})


class DetectorRunner(_SpecRunner[DetectorSpec]):
    """Runs the hand detector ONNX: ``[B, 3, h, w]`` float in [0, 1] -> ``[B, D, 6]``."""

    def __call__(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        return self._run(batch)


class ClassifierRunner(_SpecRunner[ClassifierSpec]):
    """Runs the gesture classifier ONNX: ``[N, 3, S, S]`` -> logits ``[N, K]``."""

    def __call__(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        if len(batch) == 0:
            return np.zeros((0, self.spec.label_map.num_classes), dtype=np.float32)
        return self._run(batch)
