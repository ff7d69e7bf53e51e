"""perf_analyzer and gesture-bench against a live Triton: the harness really loads the server
with real photos, on every entry point, and its numbers agree with the server's statistics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gesture_recognition.benchmarks import perf_analyzer as pa
from gesture_recognition.benchmarks import server_stats
from gesture_recognition.benchmarks.cli import main as bench_main
from gesture_recognition.benchmarks.inputs import trace_photo, write_input_data
from gesture_recognition.benchmarks.report import INPROCESS, SERVED_GRPC
from gesture_recognition.pipeline import GesturePipeline
from gesture_recognition.serving.configs import ServingOptions, model_configs, read_specs
from gesture_recognition.serving.contract import ENSEMBLE, ENSEMBLE_BYTES, HAND_CROPS
from tests.conftest import sample_photos

from .conftest import RunningServer

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def inputs(
    triton_server: RunningServer, repo_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    pa.check_runs()
    n = triton_server.max_hands
    pipeline = GesturePipeline.from_dir(triton_server.models_dir, max_hands=n)
    photos = [trace_photo(pipeline, p, n) for p in sample_photos()[:2]]
    configs = model_configs(
        "cpu", read_specs(triton_server.models_dir), ServingOptions(max_hands=n)
    )
    return write_input_data(configs, photos, tmp_path_factory.mktemp("perf_inputs"))


@pytest.mark.parametrize(
    ("model", "protocol", "top"),
    [
        (ENSEMBLE, "grpc", 2),
        (ENSEMBLE, "http", 1),
        (ENSEMBLE_BYTES, "grpc", 1),
        (HAND_CROPS, "grpc", 1),
    ],
)
def test_perf_analyzer_loads_the_server(
    triton_server: RunningServer,
    inputs: dict[str, Path],
    tmp_path: Path,
    model: str,
    protocol: str,
    top: int,
) -> None:
    url = triton_server.grpc_url if protocol == "grpc" else triton_server.http_url
    spec = pa.PerfRun(
        model=model,
        url=url,
        protocol=protocol,
        input_data=inputs[model],
        concurrency=(1, top, 1),
        csv_path=tmp_path / "run.csv",
        request_count=4,
        # Plumbing, not numbers: a loose tolerance keeps a busy CI host from failing the sweep.
        stability_percentage=40,
    )
    before = server_stats.snapshot(triton_server.http_url)
    rows, _ = pa.run_until_stable(spec, 300, tmp_path / "run.log", max_percentage=100)
    after = server_stats.snapshot(triton_server.http_url)
    assert [int(r["Concurrency"]) for r in rows] == list(range(1, top + 1))
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
    """``gesture-bench run --quick`` on one photo, one request level: seconds, not minutes."""
    return [
        "run",
        "--quick",
        *("--limit", "1", "--concurrency", "1", "--request-count", "4"),
        *("--protocols", "grpc"),
        *extra,
        *("--out", str(out)),
    ]


def _series(out: Path) -> dict[tuple[str, int], dict[str, float]]:
    results = json.loads((out / "results.json").read_text())
    return {(p["series"], p["concurrency"]): p for p in results["series"]}


def test_gesture_bench_quick_run_writes_a_report(tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert bench_main(_quick_run(out)) == 0
    series = _series(out)
    assert set(series) == {
        (INPROCESS, 1),
        ("in-process ONNX (bytes)", 1),
        (SERVED_GRPC, 1),
        ("served gesture_ensemble_bytes gRPC", 1),
    }
    for point in series.values():
        assert point["throughput"] > 0 and 0 < point["p50_ms"] <= point["p99_ms"]
    # Triton's own statistics at concurrency 1: every model of the ensemble served requests.
    breakdown = json.loads((out / "results.json").read_text())["breakdown"]
    assert {row["model"] for row in breakdown} >= {"hand_detector", "gesture_classifier"}
    assert all(row["requests"] > 0 for row in breakdown)
    assert (out / "throughput_latency_p50.png").is_file()
    assert str(tmp_path) not in (out / "REPORT.md").read_text()  # no machine paths


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
            *("--server", _external(triton_server)),
            *("--models-dir", str(triton_server.models_dir)),
            *("--set", f"max_hands={triton_server.max_hands}"),
        )
    )
    assert code == 0
    assert _series(out)[(SERVED_GRPC, 1)]["requests"] > 0
    results = json.loads((out / "results.json").read_text())
    assert any("Served by an external Triton" in note for note in results["notes"])
    # The commands name the server that was measured, not a started one's default ports.
    assert f"-u {triton_server.grpc_url}" in results["commands"][SERVED_GRPC]


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
