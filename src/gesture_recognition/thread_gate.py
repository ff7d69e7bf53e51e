"""Which ONNX Runtime session width a run should use, decided across processes.

On a small CPU host one ORT run with all cores' threads is the fastest way through a single
request, but it costs about a third more CPU time than a one-thread run of the detector
(2-core host, in-process, 6 alternating rounds: wall 17.5 vs 23.8 ms, CPU 31.6 vs 23.8 ms per
photo; notes/STATUS.md). Under load every
core is already busy with another request, so the extra threads only add cost and Triton's
throughput falls below what the same models reach in-process. Each Triton Python-backend
instance is its own process, so the decision "is anything else running now" has to be shared
between processes: an advisory ``flock`` on one file per model repository.

- Every run holds the lock shared while it runs, whichever session it uses.
- Before that, a run probes for an exclusive lock: it is granted only when no run holds the
  lock at all, and then the run is alone and uses the wide session (the exclusive lock is
  turned into a shared one for the run); otherwise it uses the one-thread session.

Races only cost a little speed (two wide runs overlap for a moment); answers never depend on
which session ran, both run the same ONNX file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


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
