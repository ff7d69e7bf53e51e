"""The soak's verdict, the stub watchdog's process view and the limit flags, without a server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gesture_recognition.artifacts import shipped_models_dir
from gesture_recognition.client.errors import (
    ModelNotReadyError,
    ServerError,
    is_retryable,
    translate,
)
from gesture_recognition.images import DEFAULT_MAX_IMAGE_BYTES
from gesture_recognition.serving import build, launcher, processes
from gesture_recognition.serving.soak import MIB, MemorySample, SoakResult, report_markdown


def _result(totals_mib: list[float], failed: int = 0) -> SoakResult:
    result = SoakResult(duration_s=len(totals_mib), concurrency=4, ok=500, failed=failed)
    result.samples = [
        MemorySample(float(t), {"tritonserver": int(v * MIB / 2), "hand_crops": int(v * MIB / 2)})
        for t, v in enumerate(totals_mib)
    ]
    result.warmup_s = 5
    result.max_growth_bytes = int(64 * MIB)
    return result


def test_flat_memory_after_warmup_passes() -> None:
    # Big growth during the warm-up does not count; noise afterwards stays within the bound.
    result = _result([100, 300, 500, 560, 580, 600, 601, 598, 603, 600, 599, 602, 601])
    assert result.problems() == []
    assert "PASS" in report_markdown(result, "cmd", "here")


def test_steady_growth_is_a_leak() -> None:
    result = _result([600 + 10 * t for t in range(30)])
    problems = result.problems()
    assert any("a leak" in p for p in problems), problems
    assert "FAIL" in report_markdown(result, "cmd", "here")


def test_failed_requests_and_a_vanished_process_fail_the_soak() -> None:
    assert any("requests failed" in p for p in _result([600] * 12, failed=1).problems())
    result = _result([600] * 12)
    result.samples[-1] = MemorySample(11.0, {"tritonserver": 600 * MIB})
    assert any("changed" in p for p in result.problems())
    assert any("too few" in p for p in _result([600] * 6).problems())


def test_process_view_sees_children_and_zombies() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in processes.children(os.getpid())
        assert processes.alive(child.pid)
        rss = processes.process_tree_rss(os.getpid())
        assert rss[os.getpid()] > 0 and child.pid in rss
        child.kill()
        deadline = time.monotonic() + 10
        # Killed but not reaped: a zombie, which must count as dead (a dead Triton stub is one).
        while processes.alive(child.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not processes.alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not processes.alive(child.pid)
    assert processes.stub_processes(os.getpid()) == {}


def test_limit_flags() -> None:
    args = launcher.parse_args(
        ["--max-pixels", "2000000", "--max-hands", "4", "--max-image-bytes", "1000"]
    )
    assert (args.max_pixels, args.max_hands, args.max_image_bytes) == (2_000_000, 4, 1000)
    defaults = launcher.parse_args([])
    assert defaults.max_pixels is None and defaults.max_hands is None
    for bad in (["--max-pixels", "0"], ["--max-hands", "-1"], ["--max-hands", "x"]):
        with pytest.raises(SystemExit):
            launcher.parse_args(bad)


def test_limits_rebuild_the_repository_only_when_they_differ(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = shipped_models_dir()
    if not (models / "hand_detector.onnx").is_file():
        pytest.skip("no shipped models")
    repo = tmp_path / "repo"
    build.ensure_repository(repo, models, max_pixels=1_000_000, max_hands=3)
    assert build.configured_limits(repo) == {
        "MAX_PIXELS": 1_000_000,
        "MAX_HANDS": 3,
        "MAX_BYTES": DEFAULT_MAX_IMAGE_BYTES,
    }
    capsys.readouterr()
    build.ensure_repository(repo, models, max_pixels=1_000_000)
    assert capsys.readouterr().out == ""  # same limit: served as it is
    build.ensure_repository(repo, models, max_hands=5)
    assert "MAX_HANDS=5 (was 3)" in capsys.readouterr().out
    build.ensure_repository(repo, models, max_image_bytes=4096)
    assert "MAX_BYTES=4096" in capsys.readouterr().out
    # The limits not named keep their values.
    assert build.configured_limits(repo) == {
        "MAX_PIXELS": 1_000_000,
        "MAX_HANDS": 5,
        "MAX_BYTES": 4096,
    }


def _triton_error(status: str, message: str):
    from tritonclient.utils import InferenceServerException

    return InferenceServerException(msg=message, status=status)


def test_a_model_being_unloaded_or_loaded_is_retried() -> None:
    # What a stopping Triton answers while it unloads (measured in test_faults.py).
    unloading = _triton_error(
        "StatusCode.NOT_FOUND",
        "Request for unknown model: 'gesture_ensemble' has no available versions",
    )
    assert is_retryable(unloading)
    err = translate(unloading, "h:1", "grpc", "gesture_ensemble")
    assert isinstance(err, ModelNotReadyError) and "not loaded" in str(err)
    unknown = _triton_error("StatusCode.NOT_FOUND", "Request for unknown model: 'x' is not found")
    assert not is_retryable(unknown)
    stub_dead = _triton_error(
        "StatusCode.INTERNAL", "Stub process 'hand_crops_0_0' is not healthy."
    )
    assert not is_retryable(stub_dead)
    assert isinstance(translate(stub_dead, "h:1", "grpc", "m"), ServerError)


def test_nan_logits_are_bad_input_not_a_server_failure() -> None:
    import numpy as np

    from gesture_recognition.artifacts import ClassifierSpec
    from gesture_recognition.labels import load_label_map
    from gesture_recognition.serving.steps import InvalidInputError, decision_outputs

    labels = load_label_map("mcs2021")
    spec = ClassifierSpec(label_map=labels)
    logits = np.zeros((1, labels.num_classes), np.float32)
    logits[0, 1] = np.nan
    box, score = np.array([[0, 0, 9, 9]], np.float32), np.array([0.9], np.float32)
    with pytest.raises(InvalidInputError, match="NaN or Inf"):
        decision_outputs(logits, box, score, spec)
    # NaN in the dummy row of a photo without hands is ignored, as the dummy row is.
    out = decision_outputs(logits, np.zeros((0, 4), np.float32), np.zeros(0, np.float32), spec)
    assert out["GESTURE"][0] == b"no_gesture"


def test_a_thin_strip_is_refused_from_its_header() -> None:
    import struct
    import zlib

    from gesture_recognition.images import InvalidImageError, decode_image

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    # 60 M x 1 is within the 64 MP limit; it must be refused before any row is decoded.
    header = struct.pack(">IIBBBBB", 60_000_000, 1, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")
    with pytest.raises(InvalidImageError, match="60000000x1; each side must be at least 8"):
        decode_image(png)


def test_a_repository_built_from_changed_models_is_rebuilt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """New weights in the models folder must reach the server: the build records a digest of
    what it copied, and a repository built from other models (or by hand) is left alone."""
    shipped = shipped_models_dir()
    if not (shipped / "hand_detector.onnx").is_file():
        pytest.skip("no shipped models")
    models = tmp_path / "models"
    shutil.copytree(shipped, models, ignore=shutil.ignore_patterns("finger_count"))
    repo = tmp_path / "repo"
    build.ensure_repository(repo, models)
    capsys.readouterr()
    build.ensure_repository(repo, models)
    assert capsys.readouterr().out == ""  # nothing changed: served as it is

    # A retrained classifier (here: the same spec, written anew) replaces the old files.
    spec = json.loads((models / "gesture_classifier.json").read_text())
    (models / "gesture_classifier.json").write_text(json.dumps(spec, indent=1))
    build.ensure_repository(repo, models)
    assert "changed since it was built" in capsys.readouterr().out
    built = repo / "hand_crops" / "1" / "gesture_classifier.json"
    assert built.read_text() == json.dumps(spec, indent=1)

    other = tmp_path / "other_models"
    shutil.copytree(models, other)
    (other / "gesture_classifier.json").write_text(json.dumps(spec, indent=2))
    build.ensure_repository(repo, other)
    assert capsys.readouterr().out == ""  # built from another folder: the user's choice


def test_an_old_build_in_the_default_folder_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A repository in gesture-serve's own build folder without build_info.json comes from a
    version before the digest existed: it is rebuilt, not served with that version's code."""
    shipped = shipped_models_dir()
    if not (shipped / "hand_detector.onnx").is_file():
        pytest.skip("no shipped models")
    repo = tmp_path / "build" / "model_repository"
    monkeypatch.setattr(build, "default_repository_dir", lambda: repo)
    build.ensure_repository(repo, shipped)
    (repo / "build_info.json").unlink()
    (repo / "hand_detector" / "config.pbtxt").write_text("# an old build\n")
    capsys.readouterr()
    build.ensure_repository(repo, shipped)
    assert "changed since it was built" in capsys.readouterr().out
    assert (repo / "build_info.json").is_file()
    assert "ORT_GATE" in (repo / "hand_detector" / "config.pbtxt").read_text()

    elsewhere = tmp_path / "by_hand"
    build.ensure_repository(elsewhere, shipped)
    (elsewhere / "build_info.json").unlink()
    capsys.readouterr()
    build.ensure_repository(elsewhere, shipped)
    assert capsys.readouterr().out == ""  # not the default folder: the user's own
