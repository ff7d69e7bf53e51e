"""Pinning the caller of a wide ORT run to the cores its workers leave free."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gesture_recognition import runtime
from gesture_recognition.artifacts import CLASSIFIER_ONNX, shipped_models_dir
from gesture_recognition.caller_affinity import caller_cpus_after, pinned
from gesture_recognition.runtime import GatedSession
from gesture_recognition.thread_gate import ThreadGate

linux = pytest.mark.skipif(
    not (hasattr(os, "sched_setaffinity") and os.path.isdir("/proc/self/task")),
    reason="thread affinity is read from /proc and set with sched_setaffinity (Linux)",
)


def _allowed() -> frozenset[int]:
    return frozenset(os.sched_getaffinity(0))


@pytest.fixture
def two_cpus() -> frozenset[int]:
    allowed = _allowed()
    if len(allowed) < 2:
        pytest.skip("needs a process allowed on two CPUs or more")
    return allowed


class _PinnedThread:
    """A thread that pins itself to ``cpus`` and lives until stopped (an ORT worker)."""

    def __init__(self, cpus: frozenset[int]):
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._cpus = cpus
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        os.sched_setaffinity(0, self._cpus)
        self._ready.set()
        self._stop.wait(30)

    def start(self) -> _PinnedThread:
        self.thread.start()
        assert self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)


@pytest.fixture
def started() -> Iterator[list[_PinnedThread]]:
    threads: list[_PinnedThread] = []
    yield threads
    for thread in threads:
        thread.stop()


@linux
def test_the_caller_gets_the_cpus_no_new_thread_is_pinned_to(
    two_cpus: frozenset[int], started: list[_PinnedThread]
) -> None:
    worker_cpu = max(two_cpus)

    def factory() -> str:
        started.append(_PinnedThread(frozenset({worker_cpu})).start())
        return "session"

    result, cpus = caller_cpus_after(factory)
    assert result == "session"
    assert cpus == two_cpus - {worker_cpu}


@linux
def test_threads_that_are_not_pinned_leave_nothing_to_pin(
    two_cpus: frozenset[int], started: list[_PinnedThread]
) -> None:
    def factory() -> None:
        started.append(_PinnedThread(two_cpus).start())

    assert caller_cpus_after(factory)[1] == frozenset()
    assert caller_cpus_after(lambda: None)[1] == frozenset()


@linux
def test_workers_on_every_cpu_leave_nothing_to_pin(
    two_cpus: frozenset[int], started: list[_PinnedThread]
) -> None:
    def factory() -> None:
        for cpu in two_cpus:
            started.append(_PinnedThread(frozenset({cpu})).start())

    assert caller_cpus_after(factory)[1] == frozenset()


@linux
def test_pinned_moves_the_thread_and_restores_it(two_cpus: frozenset[int]) -> None:
    target = frozenset({min(two_cpus)})
    with pinned(target):
        assert frozenset(os.sched_getaffinity(0)) == target
    assert _allowed() == two_cpus
    with pytest.raises(RuntimeError), pinned(target):
        raise RuntimeError("the run failed")
    assert _allowed() == two_cpus


@linux
def test_cpus_that_cannot_be_set_leave_the_run_where_it_is(
    two_cpus: frozenset[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(pid: int, cpus: object) -> None:
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(os, "sched_setaffinity", refuse)
    ran = False
    with pinned(frozenset({min(two_cpus)})):
        ran = True
    assert ran


def test_pinned_with_no_cpus_changes_nothing() -> None:
    before = _allowed() if hasattr(os, "sched_getaffinity") else None
    with pinned(frozenset()):
        pass
    if before is not None:
        assert _allowed() == before


@linux
def test_ort_pins_its_workers_and_leaves_the_caller_a_cpu(two_cpus: frozenset[int]) -> None:
    """The behaviour this module builds on: onnxruntime left to pick its thread count pins its
    workers (an upgrade that stops doing so makes this fail, and the pinning moot)."""
    onnx = shipped_models_dir() / CLASSIFIER_ONNX
    if not onnx.is_file():
        pytest.skip("no shipped classifier ONNX")
    if os.environ.get("GESTURE_ORT_THREADS", "0") not in ("", "0"):
        pytest.skip("GESTURE_ORT_THREADS set: ORT pins nothing")
    session = GatedSession(onnx)  # threads from GESTURE_ORT_THREADS, unset: ORT's default
    assert session.caller_cpus and session.caller_cpus < two_cpus
    # An explicit thread count: ORT pins nothing, and nothing is pinned for the caller.
    assert GatedSession(onnx, threads=len(two_cpus)).caller_cpus == frozenset()
    assert GatedSession(onnx, threads=1).caller_cpus == frozenset()


def test_only_wide_runs_pin_their_caller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    onnx = shipped_models_dir() / CLASSIFIER_ONNX
    if not onnx.is_file():
        pytest.skip("no shipped classifier ONNX")
    lock = tmp_path / "gate.lock"
    session = GatedSession(onnx, threads=2, gate=ThreadGate(lock))
    session.caller_cpus = frozenset({0})  # as if ORT had pinned a worker elsewhere
    asked: list[frozenset[int]] = []

    @contextlib.contextmanager
    def recording(cpus: frozenset[int]) -> Iterator[None]:
        asked.append(cpus)
        yield

    monkeypatch.setattr(runtime, "pinned", recording)
    crops = np.zeros((1, 3, 224, 224), np.float32)
    session.run("logits", {"input": crops})
    with ThreadGate(lock).enter():  # another process runs: this run is narrow
        session.run("logits", {"input": crops})
    assert session.runs == {"wide": 1, "narrow": 1}
    assert asked == [frozenset({0}), frozenset()]
