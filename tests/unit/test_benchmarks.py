"""gesture-bench logic without a server: argument parsing, perf_analyzer command lines and
CSV/log parsing, input-data encoding, statistics and the report's target verdicts."""

from __future__ import annotations

import argparse
import base64
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from gesture_recognition.benchmarks import perf_analyzer as pa
from gesture_recognition.benchmarks import report as rp
from gesture_recognition.benchmarks import served, server_stats
from gesture_recognition.benchmarks.cli import (
    clear_run_files,
    concurrency_range,
    external_server,
    option_override,
)
from gesture_recognition.benchmarks.cli import main as bench_main
from gesture_recognition.benchmarks.inputs import (
    bytes_entry,
    decode_bytes_entry,
    decode_tensor_entry,
    input_data,
    model_input_sources,
    tensor_entry,
    trace_photo,
)
from gesture_recognition.benchmarks.measure import (
    Point,
    measure_callable,
    percentile,
    point_from_latencies,
    point_from_perf_row,
)
from gesture_recognition.benchmarks.served import ExternalServer
from gesture_recognition.pipeline import GesturePipeline
from gesture_recognition.serving.configs import ServingOptions, model_configs, read_specs
from gesture_recognition.serving.contract import (
    ENSEMBLE,
    ENSEMBLE_BYTES,
    GESTURE_CLASSIFIER,
    HAND_CROPS,
    HAND_DETECTOR,
)
from tests.conftest import sample_photos

CSV_HEADER = (
    "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,"
    "Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,"
    "p50 latency,p90 latency,p95 latency,p99 latency"
)
CSV_ROW = "1,28.3066,84,474,1,470,32929,1196,6,33595,41173,41973,52047"


def test_concurrency_range_forms() -> None:
    assert concurrency_range("4") == (4, 4, 1)
    assert concurrency_range("1:4") == (1, 4, 1)
    assert concurrency_range("1:8:2") == (1, 8, 2)
    for bad in ("0", "4:1", "1:4:0", "a", "1:2:3:4"):
        with pytest.raises(argparse.ArgumentTypeError):
            concurrency_range(bad)


def test_option_overrides_name_real_serving_options() -> None:
    assert option_override("queue_delay_us=2000") == ("queue_delay_us", 2000)
    for bad in ("no_such_option=1", "queue_delay_us", "ort_threads=two"):
        with pytest.raises(argparse.ArgumentTypeError):
            option_override(bad)


def test_external_server_forms() -> None:
    assert external_server("gpu-host") == ExternalServer("gpu-host", 8000, 8001, 8002)
    server = external_server("10.0.0.5:9000,9001,9002")
    assert server == ExternalServer("10.0.0.5", 9000, 9001, 9002)
    assert server.grpc_url == "10.0.0.5:9001" and server.http_url == "10.0.0.5:9000"
    assert server.metrics_url == "http://10.0.0.5:9002/metrics"
    for bad in (":8000,8001,8002", "host:8000,8001", "host:a,b,c"):
        with pytest.raises(argparse.ArgumentTypeError):
            external_server(bad)


def test_a_native_flavour_needs_an_external_server(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench_main(["run", "--flavour", "tensorrt"])
    assert exit_info.value.code == 2
    assert "needs --server" in capsys.readouterr().err


def test_an_unreachable_external_server_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gesture_recognition.serving.launcher import free_port

    port = free_port("127.0.0.1")
    code = bench_main(
        [
            "run",
            "--quick",
            "--limit",
            "1",
            "--server",
            f"127.0.0.1:{port},{port},{port}",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    assert code == 3
    assert f"no Triton answers at 127.0.0.1:{port}" in capsys.readouterr().err


def test_perf_run_command_uses_count_windows(tmp_path: Path) -> None:
    spec = pa.PerfRun(
        model=ENSEMBLE,
        url="localhost:8001",
        protocol="grpc",
        input_data=tmp_path / "in.json",
        concurrency=(1, 4, 1),
        csv_path=tmp_path / "out.csv",
        request_count=30,
        shared_memory="system",
        output_shared_memory_size=4096,
    )
    args = spec.arguments()
    joined = " ".join(args)
    assert "--measurement-mode count_windows" in joined
    assert "--measurement-request-count 30" in joined
    assert "--concurrency-range 1:4:1" in joined
    assert "--shared-memory system --output-shared-memory-size 4096" in joined
    assert args[args.index("-m") + 1] == ENSEMBLE
    assert pa.command_line(spec).startswith("perf_analyzer -m gesture_ensemble")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"protocol": "websocket"},
        {"concurrency": (0, 1, 1)},
        {"concurrency": (3, 1, 1)},
        {"request_count": 0},
        {"shared_memory": "cuda"},
    ],
)
def test_perf_run_rejects_bad_settings(tmp_path: Path, kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {
        "model": ENSEMBLE,
        "url": "localhost:8001",
        "protocol": "grpc",
        "input_data": None,
        "concurrency": (1, 1, 1),
        "csv_path": tmp_path / "x.csv",
    }
    with pytest.raises(ValueError):
        pa.PerfRun(**{**base, **kwargs})  # type: ignore[arg-type]


def test_csv_row_becomes_milliseconds(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(f"{CSV_HEADER}\n{CSV_ROW}\n")
    (row,) = pa.read_csv(path)
    point = point_from_perf_row("s", row, requests=85)
    assert point.concurrency == 1
    assert point.throughput == pytest.approx(28.3066)
    assert point.p50_ms == pytest.approx(33.595)
    assert point.p99_ms == pytest.approx(52.047)
    # perf_analyzer's own "Avg latency" of this run was 35163 us: the components add up to it.
    assert point.avg_ms == pytest.approx(35.160, abs=0.01)


def test_empty_or_broken_csv_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "e.csv"
    empty.write_text(CSV_HEADER + "\n")
    with pytest.raises(pa.PerfAnalyzerError, match="no measurement"):
        pa.read_csv(empty)
    broken = tmp_path / "b.csv"
    broken.write_text(f"{CSV_HEADER}\n1,fast,{CSV_ROW[9:]}\n")
    with pytest.raises(pa.PerfAnalyzerError, match="non-numeric"):
        pa.read_csv(broken)


def test_request_count_comes_from_the_last_client_block() -> None:
    log = (
        "Request concurrency: 1\n  Client: \n    Request count: 85\n  Server: \n"
        "    Inference count: 85\nRequest concurrency: 2\n  Client: \n    Request count: 97\n"
    )
    assert pa.client_request_count(log) == 97
    assert pa.client_request_count("nothing measured") == 0


def test_a_binary_that_cannot_start_is_one_clear_error(tmp_path: Path) -> None:
    fake = tmp_path / "perf_analyzer"
    fake.write_text(
        "#!/bin/sh\necho 'perf_analyzer: error while loading shared libraries: libb64.so.0d'\n"
        "exit 127\n"
    )
    fake.chmod(0o755)
    with pytest.raises(pa.PerfAnalyzerError, match=r"install_perf_analyzer\.sh"):
        pa.check_runs(fake)


def test_tensor_entry_round_trips_raw_bytes() -> None:
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    entry = tensor_entry(array)
    assert entry["shape"] == [2, 3, 4]
    np.testing.assert_array_equal(decode_tensor_entry(entry, np.dtype("<f4")), array)
    big = array.astype(">f4")
    np.testing.assert_array_equal(decode_tensor_entry(tensor_entry(big), np.dtype("<f4")), array)


def test_bytes_entry_uses_tritons_length_prefixed_serialisation() -> None:
    items = [b"\xff\xd8 jpeg \x00 bytes", b""]
    entry = bytes_entry(items)
    raw = base64.b64decode(entry["content"]["b64"])  # type: ignore[index]
    assert raw[:4] == struct.pack("<I", len(items[0]))
    assert entry["shape"] == [2]
    assert decode_bytes_entry(entry) == items


@pytest.fixture(scope="module")
def traced(repo_root: Path) -> tuple[dict, list]:
    models = repo_root / "models"
    opts = ServingOptions(max_hands=3)
    pipeline = GesturePipeline.from_dir(models, max_hands=3)
    photos = [trace_photo(pipeline, p, 3) for p in sample_photos()[:2]]
    return model_configs("cpu", read_specs(models), opts), photos


def test_a_photo_without_hands_is_left_out_of_the_classifier_data(
    traced, repo_root, tmp_path
) -> None:
    """perf_analyzer 2.50 segfaults on an empty tensor (CROP_BOXES [0, 4] of a photo without
    a hand); such a photo stays in the ensembles' data, not in the classifier's."""
    configs, photos = traced
    pipeline = GesturePipeline.from_dir(repo_root / "models", max_hands=3)
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("RGB", (160, 120), (128, 128, 128)).save(blank)
    empty = trace_photo(pipeline, blank, 3)
    assert empty.hands == 0 and empty.tensors["crop_boxes"].shape == (0, 4)
    sources = model_input_sources(configs)
    mixed = [empty, *photos]
    classifier = input_data(configs[GESTURE_CLASSIFIER], sources[GESTURE_CLASSIFIER], mixed)
    with_hands = sum(p.hands > 0 for p in photos)  # the detector may miss a sample's hand too
    assert with_hands > 0 and len(classifier["data"]) == with_hands
    assert all(
        step["CROP_BOXES"]["shape"][0] > 0
        for step in classifier["data"]  # type: ignore[index]
    )
    assert len(input_data(configs[ENSEMBLE], sources[ENSEMBLE], mixed)["data"]) == len(mixed)
    with pytest.raises(ValueError, match="non-empty"):
        input_data(configs[GESTURE_CLASSIFIER], sources[GESTURE_CLASSIFIER], [empty])


def test_every_model_gets_the_tensors_it_receives_in_the_ensemble(traced, repo_root) -> None:
    configs, photos = traced
    sources = model_input_sources(configs)
    assert set(sources) == set(configs)
    for name, config in configs.items():
        data = input_data(config, sources[name], photos)["data"]
        # The classifier's data leaves out photos where no hand was found (see above).
        expected = [p for p in photos if p.hands > 0] if name == GESTURE_CLASSIFIER else photos
        assert len(data) == len(expected)
        for step in data:
            assert set(step) == {t.name for t in config.input}
    # The raw entry point carries the decoded photo itself.
    image_entry = input_data(configs[ENSEMBLE], sources[ENSEMBLE], photos[:1])["data"][0]
    np.testing.assert_array_equal(
        decode_tensor_entry(image_entry["IMAGE"], np.dtype(np.uint8)), photos[0].tensors["IMAGE"]
    )
    bytes_step = input_data(configs[ENSEMBLE_BYTES], sources[ENSEMBLE_BYTES], photos[:1])["data"][0]
    assert decode_bytes_entry(bytes_step["IMAGE_BYTES"]) == [photos[0].tensors["IMAGE_BYTES"]]
    # The cpu detector takes the photo itself; the native one batched rows without the batch
    # axis (perf_analyzer adds it).
    det_step = input_data(configs[HAND_DETECTOR], sources[HAND_DETECTOR], photos[:1])["data"][0]
    assert det_step["IMAGE"]["shape"] == list(photos[0].tensors["IMAGE"].shape)
    native = model_configs("onnxruntime", read_specs(repo_root / "models"))
    det = native[HAND_DETECTOR]
    det_step = input_data(det, model_input_sources(native)[HAND_DETECTOR], photos[:1])["data"][0]
    # The canvas follows the photo's aspect (letterbox_stride): 640x480 -> 256x320.
    shape = det_step[det.input[0].name]["shape"]
    assert shape == list(photos[0].tensors["detector_input"].shape[1:])
    assert all(want in (-1, have) for want, have in zip(det.input[0].dims, shape, strict=True))
    classifier_step = input_data(
        configs[GESTURE_CLASSIFIER], sources[GESTURE_CLASSIFIER], photos[:1]
    )["data"][0]
    assert set(classifier_step) == {"input", "CROP_BOXES", "CROP_SCORES"}
    crops_step = input_data(configs[HAND_CROPS], sources[HAND_CROPS], photos[:1])["data"][0]
    assert crops_step["DETECTIONS"]["shape"][0] == 1


def test_unknown_source_tensor_is_reported(traced) -> None:
    configs, photos = traced
    with pytest.raises(KeyError, match="not traced"):
        input_data(
            configs[HAND_CROPS], {"IMAGE": "IMAGE", "DETECTIONS": "x", "LETTERBOX": "y"}, photos
        )


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_point_from_latencies() -> None:
    point = point_from_latencies("s", 2, [0.010] * 9 + [0.100], wall_s=0.5)
    assert point.throughput == pytest.approx(20.0)
    assert point.p50_ms == pytest.approx(10.0)
    assert point.p99_ms == pytest.approx(100.0)
    assert point.avg_ms == pytest.approx(19.0)


def test_measure_callable_calls_every_request_once_per_count() -> None:
    calls: list[int] = []
    point = measure_callable("s", calls.append, [1, 2, 3], concurrency=3, requests=30, warmup=2)
    assert len(calls) == 32
    assert point.requests == 30 and point.concurrency == 3


def test_server_stats_difference_averages_per_request() -> None:
    def body(count: int, ns: int) -> dict:
        phase = {"count": count, "ns": ns}
        return {
            "model_stats": [
                {
                    "name": "m",
                    "execution_count": count,
                    "inference_stats": {
                        "success": phase,
                        "queue": phase,
                        "compute_input": phase,
                        "compute_infer": {"count": count, "ns": ns * 10},
                        "compute_output": phase,
                    },
                }
            ]
        }

    before = server_stats.parse_stats(body(10, 10_000_000))
    after = server_stats.parse_stats(body(30, 30_000_000))
    (row,) = server_stats.difference(before, after)
    assert row.requests == 20
    assert row.queue_ms == pytest.approx(1.0)
    assert row.compute_infer_ms == pytest.approx(10.0)
    assert server_stats.difference(after, after) == []


def _results(served_p50: float, served_best: float, naive: float) -> dict:
    def pt(series: str, c: int, thr: float, p50: float) -> dict:
        return Point(series, c, thr, p50, p50, p50, p50, p50, 10).as_dict()

    return {
        "title": "t",
        "date": "d",
        "command": "gesture-bench run",
        "host": {
            "commit": "abc",
            "cpu": "cpu",
            "cores": 2,
            "memory_gib": 1,
            "os": "os",
            "python": "3",
            "packages": {"onnxruntime": "1"},
        },
        "photos": {"folder": "samples", "count": 4, "hands": 5},
        "options": {},
        "series": [
            pt(rp.INPROCESS, 1, 40.0, 25.0),
            pt(rp.SERVED_GRPC, 1, 20.0, served_p50),
            pt(rp.SERVED_GRPC, 2, served_best, 50.0),
            pt(rp.NAIVE, 1, naive, 80.0),
        ],
        "commands": {"x": "perf_analyzer -m gesture_ensemble"},
        "notes": [],
        "breakdown": [
            {
                "model": "hand_detector",
                "requests": 3,
                "queue_ms": 0.1,
                "compute_input_ms": 0.1,
                "compute_infer_ms": 10.0,
                "compute_output_ms": 0.1,
            }
        ],
    }


@pytest.mark.parametrize(
    ("served_p50", "best", "naive", "latency_met", "throughput_met"),
    [(27.0, 45.0, 12.0, True, True), (40.0, 30.0, 12.0, False, False)],
)
def test_the_targets_are_ratios_of_the_measured_points(
    tmp_path: Path,
    served_p50: float,
    best: float,
    naive: float,
    latency_met: bool,
    throughput_met: bool,
) -> None:
    results = _results(served_p50, best, naive)
    series = rp.points(results)
    latency = rp.latency_ratio(series)
    assert latency is not None
    assert latency.value == pytest.approx(served_p50 / 25.0) and latency.met == latency_met
    assert (latency.served.concurrency, latency.baseline.series) == (1, rp.INPROCESS)
    throughput = rp.throughput_ratio(series)
    assert throughput is not None
    assert throughput.value == pytest.approx(max(best, 20.0) / naive)
    assert throughput.met == throughput_met
    # Without its baseline a ratio is not made up.
    assert rp.throughput_ratio([p for p in series if p.series != rp.NAIVE]) is None
    assert rp.latency_ratio([p for p in series if p.series != rp.INPROCESS]) is None
    (tmp_path / rp.RESULTS_JSON).write_text(json.dumps(results))
    rp.write_report(tmp_path)
    assert (tmp_path / "throughput_latency_p50.png").stat().st_size > 1000


def test_report_names_the_gpus_it_ran_on(tmp_path: Path) -> None:
    results = _results(27.0, 45.0, 12.0)
    (tmp_path / rp.RESULTS_JSON).write_text(json.dumps(results))
    assert "- GPU: none" in rp.write_report(tmp_path).read_text()
    results["host"]["gpus"] = ["NVIDIA H100 80GB HBM3, 550.54.15, 81559 MiB"]
    (tmp_path / rp.RESULTS_JSON).write_text(json.dumps(results))
    assert (
        "- GPU: NVIDIA H100 80GB HBM3, 550.54.15, 81559 MiB"
        in rp.write_report(tmp_path).read_text()
    )


@pytest.mark.slow  # builds the YOLOv5x-class network (~10 s)
def test_original_detector_definition_builds_offline(tmp_path: Path) -> None:
    """The 2021 row's YOLOv5x (ultralytics' anchor-free yolov5xu) builds from its yaml copy."""
    from gesture_recognition.export.onnx_export import one_class_yaml
    from gesture_recognition.training.offline import configure_offline

    configure_offline()
    from ultralytics import YOLO

    path = one_class_yaml("yolov5xu.yaml", tmp_path)
    model = YOLO(str(path)).model
    assert model.yaml["nc"] == 1
    assert model.yaml["scale"] == "x"


def test_a_measurement_that_never_settles_is_noted_not_fatal(tmp_path: Path, monkeypatch) -> None:
    """A noisy spell once ended a 15-minute run at its last, optional series and lost every
    series before it; now the level is left out with a note."""
    spec = pa.PerfRun(
        model="gesture_ensemble",
        url="localhost:8001",
        protocol="http",
        input_data=tmp_path / "in.json",
        concurrency=(2, 2, 1),
        csv_path=tmp_path / "x.csv",
        request_count=3,
    )

    def unstable(*args, **kwargs):
        raise pa.UnstableMeasurementError("found no stable measurement within 40%")

    monkeypatch.setattr(pa, "run_until_stable", unstable)
    rec = served.Recorder()
    assert served.try_run_stable(rec, spec, tmp_path / "log", "original 2021 HTTP") is None
    assert rec.notes == [
        "original 2021 HTTP, concurrency 2: left out, no stable measurement within 40 % "
        "(found no stable measurement within 40%)."
    ]

    def broken(*args, **kwargs):
        raise pa.PerfAnalyzerError("perf_analyzer exited -11")

    monkeypatch.setattr(pa, "run_until_stable", broken)
    with pytest.raises(pa.PerfAnalyzerError):  # a crash still ends the run: it is a bug
        served.try_run_stable(rec, spec, tmp_path / "log", "served")


def test_a_new_run_drops_the_last_runs_csvs_and_logs_only(tmp_path: Path) -> None:
    (tmp_path / "csv").mkdir()
    (tmp_path / "logs").mkdir()
    stale = [tmp_path / "csv" / "model_gesture_decision_gRPC_c1.csv", tmp_path / "logs" / "a.log"]
    kept = [tmp_path / "REPORT.md", tmp_path / "csv" / "notes.txt"]
    for path in stale + kept:
        path.write_text("x")
    clear_run_files(tmp_path)
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in kept)
    clear_run_files(tmp_path / "never-written")  # a first run: nothing to clear
