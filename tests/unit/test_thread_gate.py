"""The cpu flavour's thread gate: a run is wide only while no other gated run holds the lock,
across processes.

Two ``ThreadGate`` objects on one file behave like two Triton stub processes: ``flock`` locks
belong to the open file description, and each gate opens the file itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from gesture_recognition.artifacts import (
    CLASSIFIER_JSON,
    CLASSIFIER_ONNX,
    read_classifier_spec,
    shipped_models_dir,
)
from gesture_recognition.runtime import ClassifierRunner, OrtSession
from gesture_recognition.serving.thread_gate import (
    GatedSession,
    ThreadGate,
    gate_path,
    gated_runner,
)


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
                from gesture_recognition.serving.thread_gate import ThreadGate
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
    session = GatedSession(onnx, 2, ThreadGate(lock))
    spec = read_classifier_spec(spec_file)
    runner = ClassifierRunner(onnx, spec, session=session)
    size = spec.input_size
    crops = np.random.default_rng(0).random((2, 3, size, size), dtype=np.float32)
    wide = runner(crops)
    with ThreadGate(lock).enter():  # another "process" is busy
        narrow = runner(crops)
    assert session.runs == {"wide": 1, "narrow": 1}
    np.testing.assert_allclose(narrow, wide, rtol=1e-4, atol=1e-4)


def _model_args(tmp_path: Path, onnx: Path, gate: str, threads: str = "0") -> dict[str, str]:
    """What Triton hands a Python model's ``initialize``, for a classifier version folder."""
    version = tmp_path / "repo" / "gesture_classifier" / "1"
    version.mkdir(parents=True, exist_ok=True)
    if not (version / "model.onnx").exists():
        (version / "model.onnx").symlink_to(onnx)
    parameters = {"ORT_GATE": {"string_value": gate}, "ORT_THREADS": {"string_value": threads}}
    return {
        "model_config": json.dumps({"parameters": parameters}),
        "model_repository": str(version.parent),
        "model_version": "1",
        "model_name": "gesture_classifier",
    }


def test_gated_runner_reads_threads_and_gate_from_the_config(
    classifier_files: tuple[Path, Path], tmp_path: Path
) -> None:
    onnx, spec_file = classifier_files
    spec = read_classifier_spec(spec_file)
    runner = gated_runner(_model_args(tmp_path, onnx, "1"), ClassifierRunner, spec)
    assert isinstance(runner.session, GatedSession)
    # One lock file per repository: the instances of every model of it share the gate.
    assert runner.session.gate.path == gate_path(tmp_path / "repo")
    runner(np.zeros((1, 3, spec.input_size, spec.input_size), dtype=np.float32))
    assert runner.session.runs == {"wide": 1, "narrow": 0}
    # Gate off, or one thread anyway (two one-thread sessions would only cost memory).
    for gate, threads in (("0", "0"), ("1", "1")):
        plain = gated_runner(_model_args(tmp_path, onnx, gate, threads), ClassifierRunner, spec)
        assert isinstance(plain.session, OrtSession)


def test_a_provider_this_onnxruntime_lacks_is_refused(classifier_files: tuple[Path, Path]) -> None:
    """A GPU benchmark's in-process baseline must not fall back to the CPU quietly."""
    from gesture_recognition.runtime import make_session

    onnx, _ = classifier_files
    with pytest.raises(RuntimeError, match="no NoSuchExecutionProvider"):
        make_session(onnx, providers=["NoSuchExecutionProvider"])
    with pytest.raises(ValueError, match="no ONNX Runtime execution provider"):
        make_session(onnx, providers=[])
    assert make_session(onnx).get_providers() == ["CPUExecutionProvider"]
