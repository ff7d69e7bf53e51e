"""The thread gate: a run is wide only while no other gated run holds the lock, across processes.

Two ``ThreadGate`` objects on one file behave like two Triton stub processes: ``flock`` locks
belong to the open file description, and each gate opens the file itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from gesture_recognition.artifacts import (
    CLASSIFIER_JSON,
    CLASSIFIER_ONNX,
    read_classifier_spec,
    shipped_models_dir,
)
from gesture_recognition.runtime import ClassifierRunner, GatedSession
from gesture_recognition.serving import python_model as pm
from gesture_recognition.thread_gate import ThreadGate, gate_path


@pytest.fixture
def lock(tmp_path: Path) -> Path:
    return tmp_path / "gate.lock"


def test_a_lone_run_is_wide(lock: Path) -> None:
    with ThreadGate(lock).enter() as alone:
        assert alone


def test_a_run_beside_a_wide_run_is_narrow(lock: Path) -> None:
    first, second = ThreadGate(lock), ThreadGate(lock)
    with first.enter() as alone:
        assert alone
        with second.enter() as second_alone:
            assert not second_alone


def test_a_run_beside_a_narrow_run_is_narrow(lock: Path) -> None:
    """Narrow runs hold the lock too: once the wide run is over, a new run still sees them."""
    wide, narrow, third = ThreadGate(lock), ThreadGate(lock), ThreadGate(lock)
    with wide.enter() as wide_alone:
        narrow_run = narrow.enter()
        assert wide_alone and not narrow_run.__enter__()
    try:
        with third.enter() as third_alone:
            assert not third_alone
    finally:
        narrow_run.__exit__(None, None, None)
    with third.enter() as alone:
        assert alone


def test_the_lock_is_released_when_a_run_fails(lock: Path) -> None:
    first, second = ThreadGate(lock), ThreadGate(lock)
    with pytest.raises(RuntimeError), first.enter():
        raise RuntimeError("the model failed")
    with second.enter() as alone:
        assert alone


def test_the_gate_works_across_processes(lock: Path) -> None:
    """Another process holding the lock (as a second stub instance would) makes runs narrow."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from gesture_recognition.thread_gate import ThreadGate
                with ThreadGate({str(lock)!r}).enter() as alone:
                    print(alone, flush=True)
                    sys.stdin.readline()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "True"
        with ThreadGate(lock).enter() as alone:
            assert not alone
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=30) == 0
    finally:
        holder.kill()
    with ThreadGate(lock).enter() as alone:
        assert alone  # the other process's lock went with it


def test_gate_path_is_one_per_repository_and_outside_it(tmp_path: Path) -> None:
    a, b = tmp_path / "repo_a", tmp_path / "repo_b"
    assert gate_path(a) == gate_path(a)
    assert gate_path(a) != gate_path(b)
    assert not gate_path(a).is_relative_to(a)


# ----------------------------------------------------------------- sessions


@pytest.fixture(scope="module")
def classifier_files() -> tuple[Path, Path]:
    folder = shipped_models_dir()
    onnx, spec = folder / CLASSIFIER_ONNX, folder / CLASSIFIER_JSON
    if not onnx.is_file():
        pytest.skip("no shipped classifier ONNX")
    return onnx, spec


def test_narrow_and_wide_runs_give_the_same_logits(
    classifier_files: tuple[Path, Path], lock: Path
) -> None:
    onnx, spec_file = classifier_files
    widths: list[str] = []
    runner = ClassifierRunner(
        onnx, read_classifier_spec(spec_file), 2, ThreadGate(lock), widths.append
    )
    crops = np.random.default_rng(0).random((2, 3, 224, 224), dtype=np.float32)
    wide = runner(crops)
    with ThreadGate(lock).enter():  # another "process" is busy
        narrow = runner(crops)
    assert widths == ["wide", "narrow"]
    assert runner.runner.runs == {"wide": 1, "narrow": 1}
    np.testing.assert_allclose(narrow, wide, rtol=1e-4, atol=1e-4)


def test_one_thread_sessions_skip_the_gate(classifier_files: tuple[Path, Path], lock: Path) -> None:
    session = GatedSession(classifier_files[0], threads=1, gate=ThreadGate(lock))
    assert session.gate is None and session.narrow is session.wide


# ----------------------------------------------------------------- Triton side


def _args(tmp_path: Path, gate: str) -> dict[str, str]:
    config = {"parameters": {"ORT_GATE": {"string_value": gate}}}
    return {
        "model_config": json.dumps(config),
        "model_repository": str(tmp_path / "repo" / "hand_detector"),
        "model_name": "hand_detector",
        "model_instance_name": "hand_detector_0_1",
    }


def test_the_model_parameter_switches_the_gate(tmp_path: Path) -> None:
    assert pm.thread_gate(_args(tmp_path, "0")) is None
    gate = pm.thread_gate(_args(tmp_path, "1"))
    assert gate is not None and gate.path == gate_path(tmp_path / "repo")
    gate.close()


class _FakeMetric:
    def __init__(self, labels: dict[str, str]):
        self.labels, self.value, self.calls = labels, 0, 0

    def increment(self, by: int) -> None:
        self.value += by
        self.calls += 1


class _FakeFamily:
    COUNTER = "counter"

    def __init__(self, name: str, description: str, kind: str):
        self.name, self.kind, self.metrics = name, kind, []

    def Metric(self, labels: dict[str, str]) -> _FakeMetric:
        self.metrics.append(_FakeMetric(labels))
        return self.metrics[-1]


def _counted(family: _FakeFamily) -> dict[str, int]:
    return {m.labels["width"]: m.value for m in family.metrics}


def test_run_width_metrics_count_per_model_instance_and_width(tmp_path: Path) -> None:
    pb_utils = SimpleNamespace(MetricFamily=_FakeFamily)
    # A flush interval no test waits for: only flush() and close() send counts here.
    metrics = pm.RunWidthMetrics(pb_utils, _args(tmp_path, "1"), flush_interval_s=3600)  # type: ignore[arg-type]
    family = metrics.family
    metrics("narrow")
    metrics("narrow")
    metrics("wide")
    # Counted in the stub, not sent per run: an increment is a round trip to the server.
    assert _counted(family) == {"wide": 0, "narrow": 0}
    metrics.flush()
    assert _counted(family) == {"wide": 1, "narrow": 2}
    assert [m.calls for m in family.metrics] == [1, 1]  # one send per width, not per run
    metrics.flush()  # nothing new: nothing sent
    assert [m.calls for m in family.metrics] == [1, 1]
    assert family.name == pm.RUNS_METRIC and family.kind == "counter"
    assert {m.labels["instance"] for m in family.metrics} == {"hand_detector_0_1"}
    metrics("wide")
    metrics.close()  # the last runs are sent when the model unloads
    assert _counted(family) == {"wide": 2, "narrow": 2}
    assert not metrics._flusher.is_alive()


def test_run_width_metrics_are_sent_in_the_background(tmp_path: Path) -> None:
    pb_utils = SimpleNamespace(MetricFamily=_FakeFamily)
    metrics = pm.RunWidthMetrics(pb_utils, _args(tmp_path, "1"), flush_interval_s=0.01)  # type: ignore[arg-type]
    family = metrics.family
    for _ in range(5):
        metrics("wide")
    deadline = time.monotonic() + 10
    while _counted(family)["wide"] < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _counted(family) == {"wide": 5, "narrow": 0}
    metrics.close()


class _FlakyMetric(_FakeMetric):
    """Refuses the first ``failures`` sends, as the stub does while the server is busy
    shutting down."""

    failures = 1

    def increment(self, by: int) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("stub message queue closed")
        super().increment(by)


class _FlakyFamily(_FakeFamily):
    def Metric(self, labels: dict[str, str]) -> _FakeMetric:
        self.metrics.append(_FlakyMetric(labels))
        return self.metrics[-1]


def test_run_counts_of_a_failed_send_are_sent_later(tmp_path: Path) -> None:
    warnings: list[str] = []
    pb_utils = SimpleNamespace(
        MetricFamily=_FlakyFamily, Logger=SimpleNamespace(log_warn=warnings.append)
    )
    metrics = pm.RunWidthMetrics(pb_utils, _args(tmp_path, "1"), flush_interval_s=0.01)  # type: ignore[arg-type]
    family = metrics.family
    for _ in range(3):
        metrics("wide")
    metrics("narrow")
    deadline = time.monotonic() + 10
    while _counted(family) != {"wide": 3, "narrow": 1} and time.monotonic() < deadline:
        time.sleep(0.01)
    # Each width's first send failed and was logged; the counts went with a later one.
    assert _counted(family) == {"wide": 3, "narrow": 1}
    assert warnings and "stub message queue closed" in warnings[0]
    assert metrics._flusher.is_alive()
    metrics.close()


def test_serving_goes_on_without_metrics(tmp_path: Path) -> None:
    warnings: list[str] = []

    def refuse(**_: object) -> None:
        raise RuntimeError("metrics are disabled")

    refuse.COUNTER = "counter"  # type: ignore[attr-defined]
    pb_utils = SimpleNamespace(
        MetricFamily=refuse, Logger=SimpleNamespace(log_warn=warnings.append)
    )
    assert pm.run_width_metrics(pb_utils, _args(tmp_path, "1")) is None  # type: ignore[arg-type]
    assert warnings and "metrics are disabled" in warnings[0]


def test_gated_runner_reads_threads_gate_and_metrics_from_the_config(
    classifier_files: tuple[Path, Path], tmp_path: Path
) -> None:
    onnx, spec_file = classifier_files
    version = tmp_path / "repo" / "gesture_classifier" / "1"
    version.mkdir(parents=True)
    (version / "model.onnx").symlink_to(onnx)
    args = {
        **_args(tmp_path, "1"),
        "model_repository": str(version.parent),
        "model_version": "1",
        "model_name": "gesture_classifier",
    }
    pb_utils = SimpleNamespace(MetricFamily=_FakeFamily)
    runner, metrics = pm.gated_runner(
        pb_utils, args, ClassifierRunner, read_classifier_spec(spec_file)
    )
    assert metrics is not None and runner.runner.gate is not None
    assert runner.runner.gate.path == gate_path(tmp_path / "repo")
    runner(np.zeros((1, 3, 224, 224), dtype=np.float32))
    family = metrics.family
    metrics.close()
    assert _counted(family)["wide"] == 1


def test_a_provider_this_onnxruntime_lacks_is_refused(classifier_files: tuple[Path, Path]) -> None:
    """A GPU benchmark's in-process baseline must not fall back to the CPU quietly."""
    from gesture_recognition.runtime import make_session

    onnx, _ = classifier_files
    with pytest.raises(RuntimeError, match="no NoSuchExecutionProvider"):
        make_session(onnx, providers=["NoSuchExecutionProvider"])
    with pytest.raises(ValueError, match="no ONNX Runtime execution provider"):
        make_session(onnx, providers=[])
    assert make_session(onnx).get_providers() == ["CPUExecutionProvider"]
