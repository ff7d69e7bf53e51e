"""The cpu flavour's thread gate: which ONNX Runtime session width a run uses, decided across
the Triton stub processes of one repository.

On a small CPU host one ORT run with all cores' threads is the fastest way through a single
request, but it costs about a third more CPU time than a one-thread run of the detector
(2-core host, in-process: wall 17.5 vs 23.8 ms, CPU 31.6 vs 23.8 ms per photo). Under load
every core is already busy with another request, so the extra threads only add cost. Each
Triton Python-backend instance is its own process, so "is anything else running now" is shared
through an advisory ``flock`` on one file per model repository:

- Every run holds the lock shared while it runs, whichever session it uses.
- Before that, a run probes for an exclusive lock: it is granted only when no run holds the
  lock at all, and then the run is alone and uses the wide session; otherwise it uses the
  one-thread session.

Races only cost a little speed (two wide runs overlap for a moment); answers never depend on
which session ran, both run the same ONNX file. Measured in rotating rounds on the 2-core host:
without the gate 16-22 % fewer photos/s at concurrency 3-5 (reports/perf/README.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from gesture_recognition.serving import contract
from gesture_recognition.serving.python_model import int_parameter, version_dir

R = TypeVar("R")


def gate_path(repository: str | Path) -> Path:
    """The lock file shared by the models of one repository (outside it: it may be read-only)."""
    digest = hashlib.sha256(str(Path(repository).resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"gesture-recognition-ort-gate-{digest}.lock"


class ThreadGate:
    """``with gate.enter() as alone:`` -> True when no other gated run holds the lock."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        # Opened once per process: flock locks belong to the open file description, so two
        # instances (processes) compete while calls within one process do not block each other.
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)

    @contextlib.contextmanager
    def enter(self) -> Iterator[bool]:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:
            alone = False
        # Fails only inside another run's exclusive probe (microseconds): this run then goes on
        # without holding the lock, which at worst lets one later run go wide beside it.
        with contextlib.suppress(BlockingIOError):
            fcntl.flock(self._fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        try:
            yield alone
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


class GatedSession:
    """One ONNX file on two ONNX Runtime sessions: ``threads`` threads when the gate says the
    run is alone, one thread otherwise. ``runs`` counts the runs of each width."""

    def __init__(self, onnx_path: str | Path, threads: int | None, gate: ThreadGate):
        from gesture_recognition.runtime import make_session

        self.wide = make_session(onnx_path, threads)
        self.narrow = make_session(onnx_path, 1)
        self.gate = gate
        self.runs = {"wide": 0, "narrow": 0}

    def run(
        self, outputs: Sequence[str], feeds: Mapping[str, NDArray[np.float32]]
    ) -> list[NDArray[np.float32]]:
        with self.gate.enter() as alone:
            out = (self.wide if alone else self.narrow).run(list(outputs), dict(feeds))
        self.runs["wide" if alone else "narrow"] += 1
        return [np.asarray(o, dtype=np.float32) for o in out]


def gated_runner(args: Mapping[str, str], runner_cls: Callable[..., R], spec: object) -> R:
    """A network's runner as the cpu flavour's config sets it up: ``ORT_THREADS`` threads, and
    with ``ORT_GATE`` 1 the repository's gate between two instances' runs."""
    from gesture_recognition.runtime import env_threads

    threads = int_parameter(args, contract.ORT_THREADS, 0) or None
    onnx = version_dir(args) / "model.onnx"
    # A gate over two one-thread sessions would only cost a second copy of the weights.
    one_thread = (threads or env_threads()) == 1
    if not int_parameter(args, contract.ORT_GATE, 0) or one_thread:
        return runner_cls(onnx, spec, threads)
    gate = ThreadGate(gate_path(Path(args["model_repository"]).parent))
    return runner_cls(onnx, spec, session=GatedSession(onnx, threads, gate))
