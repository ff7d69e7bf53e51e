"""perf_analyzer and gesture-bench against a live Triton: the harness really loads the server
with real photos, on every entry point, and its numbers agree with the server's statistics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gesture_recognition.benchmarks import perf_analyzer as pa
from gesture_recognition.benchmarks import server_stats
from gesture_recognition.benchmarks.cli import main as bench_main
from gesture_recognition.benchmarks.inputs import trace_photo, write_input_data
from gesture_recognition.pipeline import GesturePipeline
from gesture_recognition.serving.repository import (
    ENSEMBLE,
    ENSEMBLE_BYTES,
    HAND_CROPS,
    ServingOptions,
    model_configs,
    read_specs,
)

from .conftest import RunningServer

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def inputs(
    triton_server: RunningServer, repo_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    pa.check_runs()
    n = triton_server.max_hands
    pipeline = GesturePipeline.from_dir(triton_server.models_dir, max_hands=n)
    photos = [
        trace_photo(pipeline, p, n) for p in sorted((repo_root / "samples").glob("*.jpg"))[:2]
    ]
    configs = model_configs(
        "cpu", read_specs(triton_server.models_dir), ServingOptions(max_hands=n)
    )
    return write_input_data(configs, photos, tmp_path_factory.mktemp("perf_inputs"))


@pytest.mark.parametrize(
    ("model", "protocol"),
    [(ENSEMBLE, "grpc"), (ENSEMBLE, "http"), (ENSEMBLE_BYTES, "grpc"), (HAND_CROPS, "grpc")],
)
def test_perf_analyzer_loads_the_server(
    triton_server: RunningServer,
    inputs: dict[str, Path],
    tmp_path: Path,
    model: str,
    protocol: str,
) -> None:
    url = triton_server.grpc_url if protocol == "grpc" else triton_server.http_url
    spec = pa.PerfRun(
        model=model,
        url=url,
        protocol=protocol,
        input_data=inputs[model],
        concurrency=(1, 2, 1),
        csv_path=tmp_path / "run.csv",
        request_count=4,
        # Plumbing, not numbers: a loose tolerance keeps a busy CI host from failing the sweep.
        stability_percentage=40,
    )
    before = server_stats.snapshot(triton_server.http_url)
    rows, _ = pa.run_until_stable(spec, 300, tmp_path / "run.log", max_percentage=100)
    after = server_stats.snapshot(triton_server.http_url)
    assert [int(r["Concurrency"]) for r in rows] == [1, 2]
    assert all(r["Inferences/Second"] > 0 and r["p50 latency"] > 0 for r in rows)
    served = after[model]["requests"] - before[model]["requests"]
    # Every request perf_analyzer reported was answered successfully by this model.
    measured = pa.client_request_count((tmp_path / "run.log").read_text())
    assert measured > 0
    assert served >= measured
    failures = "Failed" in (tmp_path / "run.log").read_text()
    assert not failures


def test_a_rejected_input_makes_the_run_fail_loudly(
    triton_server: RunningServer, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    # One byte is not an image: the decoder answers INVALID_ARG and perf_analyzer must fail.
    bad.write_text('{"data": [{"IMAGE_BYTES": {"content": {"b64": "AQAAAHg="}, "shape": [1]}}]}')
    spec = pa.PerfRun(
        model=ENSEMBLE_BYTES,
        url=triton_server.grpc_url,
        protocol="grpc",
        input_data=bad,
        concurrency=(1, 1, 1),
        csv_path=tmp_path / "bad.csv",
        request_count=2,
    )
    with pytest.raises(pa.PerfAnalyzerError, match="exited"):
        pa.run(spec, timeout_s=120)


def _quick_run(out: Path, *extra: str) -> list[str]:
    """``gesture-bench run --quick`` on two photos, one request level: seconds, not minutes."""
    return [
        "run",
        "--quick",
        *("--limit", "2", "--concurrency", "1", "--request-count", "4"),
        *("--protocols", "grpc", "--paired-rounds", "1"),
        *extra,
        *("--out", str(out)),
    ]


def test_gesture_bench_quick_run_writes_a_report(tmp_path: Path, repo_root: Path) -> None:
    out = tmp_path / "report"
    code = bench_main(_quick_run(out, "--interleaved-requests", "6"))
    assert code == 0
    text = (out / "REPORT.md").read_text()
    assert "| served gesture_ensemble gRPC | 1 |" in text
    assert "| in-process ONNX (IMAGE) | 1 |" in text
    assert "gesture-client gRPC / in-process, each of 6 photos timed both ways" in text
    assert "median of 1 alternating rounds" in text
    assert "## Where the served time goes" in text
    assert (out / "throughput_latency_p50.png").is_file()
    assert str(tmp_path) not in text  # no machine paths in the report


def test_gesture_bench_times_the_triton_floor(tmp_path: Path) -> None:
    """``--floor``: the replay repository is built from the live server's answers, served
    beside it and timed in the paired rounds, plain gRPC and shared memory, with the
    benchmark's photos and with a tiny one (the replayed answers ignore the photo)."""
    out = tmp_path / "report"
    work = tmp_path / "work"
    floor_args = ("--floor", "--shared-memory", "--interleaved-requests", "0")
    code = bench_main(_quick_run(out, *floor_args, "--work-dir", str(work)))
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    (paired,) = results["paired"]
    assert 0 < paired["floor_p50_ms"] < paired["served_p50_ms"]
    assert paired["floor_shm_p50_ms"] > 0
    assert paired["floor_small_p50_ms"] > 0 and paired["floor_small_shm_p50_ms"] > 0
    text = (out / "REPORT.md").read_text()
    assert "Triton's own cost at concurrency 1, gRPC:" in text
    assert "With a 64x48 photo in place of the benchmark's (1 rounds)" in text
    assert "Triton's own cost at concurrency 1, gRPC + system shm:" in text
    assert "| Triton floor gRPC p50 ms |" in text
    # The replay models answer what the real ones answered for the recorded photo.
    repository = work / "floor_repository"
    assert sorted(p.name for p in repository.iterdir()) == [
        "gesture_classifier",
        "gesture_ensemble",
        "hand_crops",
        "hand_detector",
    ]
    for model in ("gesture_classifier", "hand_crops", "hand_detector"):
        assert (repository / model / "1" / "answers.npz").is_file()
        assert not (repository / model / "1" / "model.onnx").exists()


def _external(server: RunningServer) -> str:
    """``--server`` for the fixture's server: host and its three ports."""
    where = server.server.endpoints
    return f"{where.host}:{where.http_port},{where.grpc_port},{where.metrics_port}"


def test_gesture_bench_measures_an_external_server(
    triton_server: RunningServer, tmp_path: Path
) -> None:
    """``--server``: the way a GPU host's NGC Triton is measured, here against the live one."""
    out = tmp_path / "report"
    code = bench_main(
        _quick_run(
            out,
            *("--server", _external(triton_server), "--interleaved-requests", "0"),
            *("--models-dir", str(triton_server.models_dir)),
            *("--set", f"max_hands={triton_server.max_hands}"),
        )
    )
    assert code == 0
    text = (out / "REPORT.md").read_text()
    assert "| served gesture_ensemble gRPC | 1 |" in text
    assert "Served by an external Triton" in text
    assert "timed both ways" not in text  # --interleaved-requests 0: off
    # The commands name the server that was measured, not a started one's default ports.
    assert f"-u {triton_server.grpc_url}" in text


def test_gesture_bench_refuses_a_server_of_another_flavour(
    triton_server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = bench_main(
        [
            "run",
            "--quick",
            "--server",
            _external(triton_server),
            "--flavour",
            "onnxruntime",
            "--models-dir",
            str(triton_server.models_dir),
            "--limit",
            "1",
            "--out",
            str(tmp_path / "report"),
        ]
    )
    assert code == 3
    assert "no ready hand_preprocess" in capsys.readouterr().err


def test_gesture_bench_tune_measures_the_variants_in_rounds(tmp_path: Path) -> None:
    out = tmp_path / "tuning"
    args = ["tune", "--limit", "1", "--concurrency", "1", "--request-count", "4", "--rounds", "2"]
    variant = ["--variant", "one=detector_instances=1,classifier_instances=1"]
    code = bench_main([*args, *variant, "--protocols", "grpc", "--out", str(out)])
    assert code == 0
    rounds = json.loads((out / "results.json").read_text())["tuning_rounds"]
    # Both servers up at once, each measured in each round, the order rotating.
    assert [(r["round"], r["variant"]) for r in rounds] == [
        (1, "baseline"),
        (1, "one"),
        (2, "one"),
        (2, "baseline"),
    ]
    text = (out / "REPORT.md").read_text()
    assert "| tune baseline gesture_ensemble gRPC | 1 |" in text  # the medians
    assert "| tune one gesture_ensemble gRPC | 1 |" in text
    assert re.search(r"\| tune one gesture_ensemble gRPC \| 1 \| [\d.]+x \| [\d.]+x \| 2 \|", text)
    assert "| 2 | tune baseline gesture_ensemble gRPC | 1 |" in text  # every round
