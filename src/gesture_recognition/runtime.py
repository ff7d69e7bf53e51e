"""ONNX Runtime sessions for the two models, tuned for small CPU hosts.

Shared by the in-process pipeline and the Python-backend Triton models so both run the same
files with the same settings.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from gesture_recognition.artifacts import ClassifierSpec, DetectorSpec


def make_session(path: str | Path, threads: int | None = None) -> ort.InferenceSession:
    """An ORT CPU session with thread spinning off.

    Spinning idle threads of one session starve the other model's session on a 2-core host
    (measured: 40 ms vs 19 ms per photo for detector + classifier), see
    ../shared/notes/measurements.md.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    n = threads if threads is not None else int(os.environ.get("GESTURE_ORT_THREADS", "0") or 0)
    if n > 0:
        options.intra_op_num_threads = n
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class DetectorRunner:
    """Runs the hand detector ONNX: ``[B, 3, S, S]`` float in [0, 1] -> ``[B, D, 6]``."""

    def __init__(self, onnx_path: str | Path, spec: DetectorSpec, threads: int | None = None):
        self.spec = spec
        self.session = make_session(onnx_path, threads)

    def __call__(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        (out,) = self.session.run([self.spec.output_name], {self.spec.input_name: batch})
        return np.asarray(out, dtype=np.float32)


class ClassifierRunner:
    """Runs the gesture classifier ONNX: ``[N, 3, S, S]`` -> logits ``[N, K]``."""

    def __init__(self, onnx_path: str | Path, spec: ClassifierSpec, threads: int | None = None):
        self.spec = spec
        self.session = make_session(onnx_path, threads)

    def __call__(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        if len(batch) == 0:
            return np.zeros((0, self.spec.label_map.num_classes), dtype=np.float32)
        (out,) = self.session.run([self.spec.output_name], {self.spec.input_name: batch})
        return np.asarray(out, dtype=np.float32)
