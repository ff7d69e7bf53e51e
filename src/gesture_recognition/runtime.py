"""ONNX Runtime sessions and the runners of the two networks.

Shared by the in-process pipeline and the Python-backend Triton models so both run the same
files with the same settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from gesture_recognition.artifacts import ClassifierSpec, DetectorSpec

CPU_PROVIDER = "CPUExecutionProvider"


def make_session(
    path: str | Path, threads: int | None = None, providers: Sequence[str] = (CPU_PROVIDER,)
) -> ort.InferenceSession:
    """An ORT session, on the CPU with thread spinning off unless ``providers`` name others.

    Spinning idle threads of one session starve the other model's session on a 2-core host
    (measured: 40 ms vs 19 ms per photo for detector + classifier). Other providers
    (``CUDAExecutionProvider`` with onnxruntime-gpu, for the in-process baseline of a GPU
    benchmark) must really be the one that runs: ORT would otherwise fall back to the CPU
    quietly and mislabel every number.
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
    n = threads if threads is not None else env_threads()
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


class Session(Protocol):
    """What a runner calls: outputs of one ONNX file for the given inputs, in one run."""

    def run(
        self, outputs: Sequence[str], feeds: Mapping[str, NDArray[np.float32]]
    ) -> list[NDArray[np.float32]]: ...


class OrtSession:
    """:func:`make_session` as a :class:`Session`."""

    def __init__(
        self,
        onnx_path: str | Path,
        threads: int | None = None,
        providers: Sequence[str] = (CPU_PROVIDER,),
    ):
        self.session = make_session(onnx_path, threads, providers)

    def run(
        self, outputs: Sequence[str], feeds: Mapping[str, NDArray[np.float32]]
    ) -> list[NDArray[np.float32]]:
        return [np.asarray(o, np.float32) for o in self.session.run(list(outputs), dict(feeds))]


def env_threads() -> int:
    """ORT intra-op threads from ``GESTURE_ORT_THREADS`` (0: ORT's default, one per core)."""
    return int(os.environ.get("GESTURE_ORT_THREADS", "0") or 0)


SpecT = TypeVar("SpecT", DetectorSpec, ClassifierSpec)


class _SpecRunner(Generic[SpecT]):
    """A session of one model and the spec naming its input and output; ``session`` replaces
    the plain ONNX Runtime one (the cpu flavour's gated pair, serving/thread_gate.py)."""

    def __init__(
        self,
        onnx_path: str | Path,
        spec: SpecT,
        threads: int | None = None,
        providers: Sequence[str] = (CPU_PROVIDER,),
        session: Session | None = None,
    ):
        self.spec: SpecT = spec
        self.session = session if session is not None else OrtSession(onnx_path, threads, providers)

    def _run(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        (out,) = self.session.run([self.spec.output_name], {self.spec.input_name: batch})
        return out


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

    def logits_and_hand(
        self, batch: NDArray[np.float32]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32] | None]:
        """Logits ``[N, K]`` and, with a verifier, the probability ``[N]`` that each crop
        shows a hand, from one run of the network."""
        if self.spec.verifier is None:
            return self(batch), None
        if len(batch) == 0:
            return self(batch), np.zeros(0, np.float32)
        logits, hand = self.session.run(self.spec.output_names, {self.spec.input_name: batch})
        return logits, hand.reshape(-1)
