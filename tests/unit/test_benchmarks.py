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

from gesture_recognition.benchmarks import floor, server_stats
from gesture_recognition.benchmarks import perf_analyzer as pa
from gesture_recognition.benchmarks import report as rp
from gesture_recognition.benchmarks.cli import (
    ExternalServer,
    clear_run_files,
    concurrency_range,
    external_server,
    option_override,
    variant,
)
from gesture_recognition.benchmarks.cli import main as bench_main
from gesture_recognition.benchmarks.inputs import (
    PhotoTensors,
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
    interleaved_summary,
    interleaved_times,
    measure_callable,
    percentile,
    point_from_latencies,
    point_from_perf_row,
)
from gesture_recognition.pipeline import GesturePipeline
from gesture_recognition.serving.repository import (
    ENSEMBLE,
    ENSEMBLE_BYTES,
    GESTURE_CLASSIFIER,
    HAND_CROPS,
    HAND_DETECTOR,
    ServingOptions,
    model_configs,
    read_specs,
)

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
    assert variant("inst2=detector_instances=2,ort_threads=1") == (
        "inst2",
        {"detector_instances": 2, "ort_threads": 1},
    )
    assert variant("plain") == ("plain", {})
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
    photos = [
        trace_photo(pipeline, p, 3) for p in sorted((repo_root / "samples").glob("*.jpg"))[:2]
    ]
    return model_configs("cpu", read_specs(models), opts), photos


def test_a_photo_without_hands_is_left_out_of_the_classifier_data(
    traced, repo_root, tmp_path
) -> None:
    """perf_analyzer 2.50 segfaults on an empty tensor (HAND_BOXES [0, 4] of a photo without
    a hand); such a photo stays in the ensembles' data, not in the classifier's."""
    configs, photos = traced
    pipeline = GesturePipeline.from_dir(repo_root / "models", max_hands=3)
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("RGB", (160, 120), (128, 128, 128)).save(blank)
    empty = trace_photo(pipeline, blank, 3)
    assert empty.hands == 0 and empty.tensors["HAND_BOXES"].shape == (0, 4)
    sources = model_input_sources(configs)
    mixed = [empty, *photos]
    classifier = input_data(configs[GESTURE_CLASSIFIER], sources[GESTURE_CLASSIFIER], mixed)
    assert len(classifier["data"]) == len(photos)
    assert all(
        step["HAND_BOXES"]["shape"][0] > 0
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
        assert len(data) == len(photos)
        for step in data:
            assert set(step) == {t.name for t in config.inputs}
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
    shape = det_step[det.inputs[0].name]["shape"]
    assert shape == list(photos[0].tensors["detector_input"].shape[1:])
    assert all(want in (-1, have) for want, have in zip(det.inputs[0].dims, shape, strict=True))
    classifier_step = input_data(
        configs[GESTURE_CLASSIFIER], sources[GESTURE_CLASSIFIER], photos[:1]
    )["data"][0]
    assert set(classifier_step) == {"input", "HAND_BOXES"}
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
    ("served_p50", "best", "naive", "latency", "throughput"),
    [(27.0, 45.0, 12.0, "met", "met"), (40.0, 30.0, 12.0, "NOT met", "NOT met")],
)
def test_report_judges_targets_from_the_numbers(
    tmp_path: Path,
    served_p50: float,
    best: float,
    naive: float,
    latency: str,
    throughput: str,
) -> None:
    (tmp_path / rp.RESULTS_JSON).write_text(json.dumps(_results(served_p50, best, naive)))
    text = rp.write_report(tmp_path).read_text()
    assert f"{served_p50 / 25.0:.2f}x** (target <= 1.15x: {latency}" in text
    assert f"{best / naive:.2f}x** (target >= 3.0x: {throughput})" in text
    assert "| hand_detector | 3 |" in text
    assert (tmp_path / "throughput_latency_p50.png").stat().st_size > 1000


def test_interleaved_times_take_turns_and_rotate_the_order() -> None:
    calls: list[str] = []
    times = interleaved_times(
        {"a": lambda x: calls.append(f"a{x}"), "b": lambda x: calls.append(f"b{x}")},
        [1, 2],
        4,
    )
    # Every request runs both ways on the same item; who goes first alternates.
    assert calls == ["a1", "b1", "b2", "a2", "a1", "b1", "b2", "a2"]
    assert [len(v) for v in times.values()] == [4, 4]
    with pytest.raises(ValueError):
        interleaved_times({}, [1], 1)


def test_interleaved_summary_is_the_median_of_per_request_ratios() -> None:
    times = {"local": [0.010, 0.020, 0.030], "served": [0.011, 0.026, 0.030]}
    summary = interleaved_summary(times, "local")
    assert summary["local"]["p50_ms"] == pytest.approx(20.0)
    assert summary["served"]["p50_ms"] == pytest.approx(26.0)
    # Ratios 1.1, 1.3, 1.0: the median pairs each request with its own in-process time
    # (the ratio of the medians would read 1.3).
    assert summary["served"]["ratio"] == pytest.approx(1.1)


@pytest.mark.parametrize(("ratio", "verdict"), [(1.12, "met"), (1.2, "NOT met")])
def test_report_judges_the_interleaved_comparison(
    tmp_path: Path, ratio: float, verdict: str
) -> None:
    results = _results(27.0, 45.0, 12.0)
    results["interleaved"] = {
        "requests": 240,
        "series": {
            rp.INPROCESS: {"p50_ms": 21.0},
            rp.INTERLEAVED_GRPC: {"p50_ms": 21.0 * ratio, "ratio": ratio},
        },
    }
    (tmp_path / rp.RESULTS_JSON).write_text(json.dumps(results))
    text = rp.write_report(tmp_path).read_text()
    assert (
        f"- Latency at concurrency 1, {rp.INTERLEAVED_GRPC} / in-process, each of 240 photos "
        f"timed both ways in turn: p50 {21.0 * ratio:.1f} vs 21.0 ms, median of the per-photo "
        f"ratios **{ratio:.2f}x** (target <= 1.15x: {verdict})"
    ) in text


def test_the_concurrency_1_target_is_met_only_when_every_measure_meets_it() -> None:
    paired = [
        {"round": i, "inprocess_p50_ms": local, "served_p50_ms": local * 1.05}
        | {"served_shm_p50_ms": local * 1.1}
        for i, local in enumerate((30.0, 24.5, 36.0), start=1)
    ]
    interleaved = {
        "requests": 240,
        "series": {
            rp.INPROCESS: {"p50_ms": 30.0},
            rp.INTERLEAVED_GRPC: {"p50_ms": 36.3, "ratio": 1.21},
        },
    }
    (line,) = rp.latency_summary(paired, interleaved)
    assert line == (
        "- **Latency at concurrency 1, every measure of this run: NOT met** (target <= 1.15x "
        "by each; met by 2 of 3: perf_analyzer rounds, gRPC 1.05x; perf_analyzer rounds, "
        f"gRPC + system shm 1.10x; request-interleaved, {rp.INTERLEAVED_GRPC} 1.21x); the "
        "in-process p50 ranged 24.5-36.0 ms across the paired rounds"
    )
    interleaved["series"][rp.INTERLEAVED_GRPC]["ratio"] = 1.15
    (line,) = rp.latency_summary(paired, interleaved)
    assert "every measure of this run: met** (target <= 1.15x by each; met by 3 of 3" in line
    # One measure alone gets no summary: its own target line says it all.
    assert rp.latency_summary([], interleaved) == []


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


def test_paired_rounds_decide_the_latency_target(tmp_path: Path) -> None:
    results = _results(27.0, 45.0, 12.0)  # the plain series alone would say "met"
    results["paired"] = [
        {
            "round": i,
            "inprocess_p50_ms": 25.0,
            "served_p50_ms": 25.0 * r,
            "inprocess_avg_ms": 26.0,
            "served_avg_ms": 30.0,
        }
        for i, r in enumerate((1.1, 1.3, 1.2), start=1)
    ]
    (tmp_path / rp.RESULTS_JSON).write_text(json.dumps(results))
    text = rp.write_report(tmp_path).read_text()
    assert "median of 3 alternating rounds: **1.20x** (target <= 1.15x: NOT met" in text
    assert "| 2 | 25.0 | 32.5 | 1.30 |" in text
    assert rp.paired_ratio([]) is None
    assert rp.paired_ratio(results["paired"][:2]) == pytest.approx(1.2)
    assert "system shared memory" not in text


def test_paired_rounds_judge_the_shared_memory_client_separately(tmp_path: Path) -> None:
    results = _results(27.0, 45.0, 12.0)
    results["paired"] = [
        {
            "round": i,
            "inprocess_p50_ms": 20.0,
            "served_p50_ms": 20.0 * plain,
            "served_shm_p50_ms": 20.0 * shm,
            "inprocess_avg_ms": 21.0,
            "served_avg_ms": 24.0,
            "served_shm_avg_ms": 23.0,
        }
        for i, (plain, shm) in enumerate(((1.2, 1.1), (1.25, 1.14), (1.18, 1.2)), start=1)
    ]
    (tmp_path / rp.RESULTS_JSON).write_text(json.dumps(results))
    text = rp.write_report(tmp_path).read_text()
    # Both verdicts are written: plain gRPC (not met) and the same-host shm client (met).
    assert "median of 3 alternating rounds: **1.20x** (target <= 1.15x: NOT met" in text
    assert "the same rounds: **1.14x** (target <= 1.15x: met)" in text
    assert "| 2 | 20.0 | 25.0 | 1.25 | 22.8 | 1.14 | 21.0 | 24.0 |" in text
    assert rp.paired_ratio(results["paired"], "served_shm_p50_ms") == pytest.approx(1.14)


def test_the_triton_floor_is_set_against_what_the_target_leaves(tmp_path: Path) -> None:
    results = _results(27.0, 45.0, 12.0)
    results["paired"] = [
        {
            "round": i,
            "inprocess_p50_ms": 20.0,
            "served_p50_ms": 20.0 + added,
            "served_shm_p50_ms": 20.0 + added - 1.0,
            "floor_p50_ms": floor,
            "floor_shm_p50_ms": floor - 0.5,
            "floor_small_p50_ms": floor - 1.5,
            "floor_small_shm_p50_ms": floor - 1.2,
            "inprocess_avg_ms": 21.0,
            "served_avg_ms": 24.0,
        }
        for i, (added, floor) in enumerate(((4.0, 2.5), (5.0, 2.7), (4.4, 2.6)), start=1)
    ]
    results["paired"][2].pop("floor_shm_p50_ms")  # a round whose floor shm run failed
    results["paired"][2].pop("floor_small_p50_ms")  # and its tiny-photo gRPC run
    (tmp_path / rp.RESULTS_JSON).write_text(json.dumps(results))
    text = rp.write_report(tmp_path).read_text()
    assert (
        "- Triton's own cost at concurrency 1, gRPC: the same ensemble and configs with models "
        "that replay recorded answers (no network, no pre-processing), median of 3 rounds: "
        "p50 **2.6 ms**; the server added 4.4 ms to the in-process p50 (20.0 ms), the 1.15x "
        "target allows 3.0 ms. With a 64x48 photo in place of the benchmark's (2 rounds): "
        "1.1 ms; moving the photo (the transport, and a copy into each Python step that takes "
        "it) costs 1.5 ms of the floor"
    ) in text
    assert "gRPC + system shm: the same ensemble and configs" in text
    assert "median of 2 rounds: p50 **2.1 ms**; the server added 3.5 ms" in text
    # The shm split counts only the rounds with both shm floors (1 and 2).
    assert "(2 rounds): 1.4 ms; moving the photo" in text
    assert "costs 0.7 ms of the floor" in text
    assert (
        "| Triton floor gRPC p50 ms | Triton floor + system shm p50 ms | Triton floor, 64x48 "
        "photo, gRPC p50 ms | Triton floor, 64x48 photo, + system shm p50 ms |"
    ) in text
    assert "| 3 | 20.0 | 24.4 | 1.22 | 23.4 | 1.17 | 2.6 | - | - | 1.4 | 21.0 | 24.0 |" in text
    # Without floor timings: no floor line, no floor columns.
    for r in results["paired"]:
        for key in ("floor_p50_ms", "floor_shm_p50_ms", "floor_small_p50_ms"):
            r.pop(key, None)
        r.pop("floor_small_shm_p50_ms")
    assert rp.floor_lines(results["paired"]) == []
    assert "floor" not in rp.paired_table(results["paired"])[0]


def test_the_small_floor_photo_is_a_tiny_image_for_the_ensemble_input(tmp_path: Path) -> None:
    path = floor.write_small_photo_input("IMAGE", tmp_path / "inputs" / "small.json")
    (entry,) = json.loads(path.read_text())["data"]
    photo = decode_tensor_entry(entry["IMAGE"], np.dtype(np.uint8))
    assert photo.shape == (*floor.SMALL_PHOTO_SHAPE, 3)
    assert floor.SMALL_PHOTO_LABEL == "64x48"


def test_the_floor_repository_replays_answers_beside_the_served_configs(tmp_path: Path) -> None:
    served = tmp_path / "served"
    for model in ("gesture_ensemble", "hand_crops", "gesture_classifier"):
        (served / model / "1").mkdir(parents=True)
        (served / model / "config.pbtxt").write_text(f'name: "{model}"\n')
        (served / model / "1" / "model.py").write_text("real code\n")
    (served / "gesture_classifier" / "labels.txt").write_text("no_gesture\nok\n")
    (served / "image_decoder").mkdir()  # not a step of the ensemble: left out
    answers = {
        "hand_crops": {"HAND_BOXES": np.ones((1, 4), np.float32)},
        "gesture_classifier": {
            "GESTURE": np.array([b"ok"], dtype=object),
            "HAND_GESTURES": np.zeros(0, dtype=object),
            "SCORE": np.array([0.5], np.float32),
        },
    }
    out = floor.build_floor_repository(served, "gesture_ensemble", answers, tmp_path / "floor")
    assert sorted(p.name for p in out.iterdir()) == [
        "gesture_classifier",
        "gesture_ensemble",
        "hand_crops",
    ]
    classifier = out / "gesture_classifier"
    assert (classifier / "config.pbtxt").read_text() == 'name: "gesture_classifier"\n'
    assert (classifier / "labels.txt").is_file()
    assert (classifier / "1" / "model.py").read_text() == floor.REPLAY_MODEL
    with np.load(classifier / "1" / floor.ANSWERS, allow_pickle=False) as saved:
        assert saved["GESTURE"].tolist() == [b"ok"]
        assert saved["HAND_GESTURES"].shape == (0,)
        assert saved["SCORE"].tolist() == [0.5]
    compile(floor.REPLAY_MODEL, "model.py", "exec")


def test_the_replayed_photo_is_a_typical_one() -> None:
    def photo(name: str, hands: int) -> PhotoTensors:
        return PhotoTensors(name=name, tensors={}, hands=hands)

    assert floor.replay_photo([photo("a", 0), photo("b", 2), photo("c", 1)]).name == "c"
    assert floor.replay_photo([photo("a", 0), photo("b", 2)]).name == "b"
    assert floor.replay_photo([photo("a", 0)]).name == "a"
    with pytest.raises(ValueError):
        floor.replay_photo([])


def test_run_widths_are_summed_over_models_and_instances() -> None:
    text = "\n".join(
        [
            "# HELP gesture_ort_runs_total ONNX Runtime runs by session width",
            "# TYPE gesture_ort_runs_total counter",
            'gesture_ort_runs_total{instance="hand_detector_0_0",model="hand_detector",'
            'width="narrow"} 89',
            'gesture_ort_runs_total{instance="hand_detector_0_1",model="hand_detector",'
            'width="narrow"} 11',
            'gesture_ort_runs_total{instance="gesture_classifier_0_0",'
            'model="gesture_classifier",width="wide"} 157',
            'nv_inference_count{model="hand_detector",version="1"} 300',
        ]
    )
    assert server_stats.parse_run_widths(text) == {"wide": 157.0, "narrow": 100.0}
    assert server_stats.parse_run_widths("") == {"wide": 0.0, "narrow": 0.0}


def test_the_report_shows_the_thread_gate_table() -> None:
    rows = [{"series": "served gesture_ensemble gRPC", "concurrency": 4, "wide": 30, "narrow": 90}]
    table = rp.run_width_table(rows)
    assert table[-1] == "| served gesture_ensemble gRPC | 4 | 30 | 90 | 75% |"


def test_paired_throughput_rounds_decide_the_throughput_target(tmp_path: Path) -> None:
    """A naive row that caught a slow spell would say 'met'; the alternating rounds decide."""
    results = _results(27.0, 48.0, 10.0)  # 4.8x from the single rows
    results["throughput_paired"] = [
        {"round": i, "concurrency": 4, "naive_photos_s": naive, "served_photos_s": 45.0}
        for i, naive in enumerate((16.0, 15.5, 17.0), start=1)
    ]
    (tmp_path / rp.RESULTS_JSON).write_text(json.dumps(results))
    text = rp.write_report(tmp_path).read_text()
    assert "median of 3 alternating rounds: **2.81x** (target >= 3.0x: NOT met" in text
    assert "| 2 | 15.5 | 45.0 | 4 | 2.90 |" in text
    assert "**4.80x** (target >= 3.0x: met; single rows, see the rounds)" in text
    # The rounds name the series they measured (here none recorded: the plain gRPC default).
    assert "- Throughput, served gesture_ensemble gRPC (concurrency 4" in text
    results["throughput_paired"][0]["series"] = "served gesture_ensemble gRPC + system shm"
    (tmp_path / rp.RESULTS_JSON).write_text(json.dumps(results))
    text = rp.write_report(tmp_path).read_text()
    assert "- Throughput, served gesture_ensemble gRPC + system shm (concurrency 4" in text
    assert rp.throughput_ratio([]) is None


def test_a_measurement_that_never_settles_is_noted_not_fatal(tmp_path: Path, monkeypatch) -> None:
    """A noisy spell once ended a 15-minute run at its last, optional series and lost every
    series before it; now the level is left out with a note."""
    from gesture_recognition.benchmarks import cli

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
    rec = cli.Recorder()
    assert cli.try_run_stable(rec, spec, tmp_path / "log", "original 2021 HTTP") is None
    assert rec.notes == [
        "original 2021 HTTP, concurrency 2: left out, no stable measurement within 40 % "
        "(found no stable measurement within 40%)."
    ]

    def broken(*args, **kwargs):
        raise pa.PerfAnalyzerError("perf_analyzer exited -11")

    monkeypatch.setattr(pa, "run_until_stable", broken)
    with pytest.raises(pa.PerfAnalyzerError):  # a crash still ends the run: it is a bug
        cli.try_run_stable(rec, spec, tmp_path / "log", "served")


def _round_row(round_no: int, name: str, photos_s: float, p50: float) -> dict[str, object]:
    return {
        "round": round_no,
        "variant": name,
        "protocol": "grpc",
        "label": f"tune {name} gesture_ensemble gRPC",
        "series": f"tune {name} gesture_ensemble gRPC round {round_no}",
        "concurrency": 1,
        "throughput": photos_s,
        "p50_ms": p50,
        "p90_ms": p50 + 1,
        "p95_ms": p50 + 2,
        "p99_ms": p50 + 3,
        "avg_ms": p50,
        "requests": 40,
    }


def test_tuning_rounds_compare_each_variant_with_the_baseline_of_its_round() -> None:
    # The host slows down by half in round 2: the variant is 10 % faster in both rounds, which
    # the per-round ratios show and the pooled medians would blur.
    rows = [
        _round_row(1, "baseline", 40.0, 25.0),
        _round_row(1, "cls2", 44.0, 22.5),
        _round_row(2, "cls2", 22.0, 45.0),
        _round_row(2, "baseline", 20.0, 50.0),
    ]
    medians = {p.series: p for p in rp.round_medians(rows)}
    assert medians["tune cls2 gesture_ensemble gRPC"].throughput == pytest.approx(33.0)
    assert medians["tune baseline gesture_ensemble gRPC"].p50_ms == pytest.approx(37.5)
    assert medians["tune baseline gesture_ensemble gRPC"].requests == 80
    lines = rp.tuning_round_lines(rows)
    assert "| tune cls2 gesture_ensemble gRPC | 1 | 1.10x | 0.90x | 2 |" in lines
    assert not any(line.startswith("| tune baseline") for line in lines)  # no self-ratio
    assert "| 2 | tune baseline gesture_ensemble gRPC | 1 | 20.0 | 50.0 | 53.0 |" in lines


def test_a_round_without_its_baseline_is_not_compared() -> None:
    rows = [_round_row(1, "baseline", 40.0, 25.0), _round_row(2, "cls2", 44.0, 22.5)]
    lines = rp.tuning_round_lines(rows)
    assert not any("x |" in line for line in lines)


@pytest.mark.parametrize("text", ["0", "-2", "three"])
def test_rounds_must_be_a_positive_integer(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench_main(["tune", "--rounds", text])
    assert "--rounds" in capsys.readouterr().err


def test_tune_refuses_variants_of_one_name(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="variant names must differ"):
        bench_main(["tune", "--variant", "baseline=ort_threads=1", "--out", str(tmp_path)])


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
