"""``gesture-bench``: load-test the served pipeline against its baselines and write a report.

    gesture-bench run                       # everything, report in reports/perf/<host>/
    gesture-bench run --quick --out /tmp/b  # a minute: ensembles only, one concurrency
    gesture-bench tune --variant delay2ms=queue_delay_us=2000 --variant inst2=detector_instances=2
    gesture-bench report reports/perf/cpu   # redraw a report from its results.json
    gesture-bench perf-analyzer -- -m gesture_ensemble ...   # the binary, libraries found

Exit codes: 0 done; 2 bad usage; 3 perf_analyzer or the server could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import re
import shlex
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gesture_recognition.arguments import positive_int
from gesture_recognition.artifacts import shipped_models_dir
from gesture_recognition.paths import shown_path
from gesture_recognition.pipeline import GesturePipeline
from gesture_recognition.runtime import CPU_PROVIDER
from gesture_recognition.serving.launcher import Endpoints, ServerError, TritonServer
from gesture_recognition.serving.repository import (
    ENSEMBLE,
    ENSEMBLE_BYTES,
    FLAVOURS,
    ModelConfig,
    ServingOptions,
    build_repository,
    instance_counts,
    model_configs,
    read_specs,
)

from . import floor, server_stats
from . import perf_analyzer as pa
from . import report as rp
from .hostinfo import describe
from .inputs import PhotoTensors, find_photos, image_array, trace_photo, write_input_data
from .measure import (
    Point,
    interleaved_summary,
    interleaved_times,
    measure_callable,
    point_from_perf_row,
)

if TYPE_CHECKING:  # torch and ultralytics load only when the naive baseline runs
    from .naive_torch import NaiveTorchPipeline

REPO = Path(__file__).resolve().parents[1]
EXIT_OK, EXIT_USAGE, EXIT_RUN = 0, 2, 3
# Output tensors of the ensemble are small, but variable: room for MAX_HANDS boxes and more.
OUTPUT_SHM_BYTES = 64 * 1024
PERF_TIMEOUT_S = 900.0
MAX_STABILITY_PERCENTAGE = 40


def concurrency_range(text: str) -> tuple[int, int, int]:
    """``4`` or ``1:4`` or ``1:8:2`` -> (start, end, step)."""
    try:
        parts = [int(p) for p in text.split(":")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a concurrency range: {text!r}") from exc
    if len(parts) == 1:
        parts = [parts[0], parts[0]]
    if len(parts) == 2:
        parts.append(1)
    start, end, step = parts[:3]
    if len(parts) > 3 or start < 1 or end < start or step < 1:
        raise argparse.ArgumentTypeError(f"bad concurrency range {text!r} (use 1:4 or 1:8:2)")
    return start, end, step


def option_override(text: str) -> tuple[str, int]:
    """``key=value`` of a ServingOptions integer field."""
    key, sep, value = text.partition("=")
    names = {f.name for f in fields(ServingOptions)} - {"compute_capabilities"}
    if not sep or key not in names:
        raise argparse.ArgumentTypeError(
            f"{text!r}: use KEY=INT with KEY one of {', '.join(sorted(names))}"
        )
    try:
        return key, int(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: value must be an integer") from exc


def variant(text: str) -> tuple[str, dict[str, int]]:
    """``NAME=key=value,key=value`` (or just ``NAME`` for the defaults)."""
    name, _, rest = text.partition("=")
    if not name:
        raise argparse.ArgumentTypeError(f"variant needs a name: {text!r}")
    overrides = dict(option_override(item) for item in rest.split(",") if item)
    return name, overrides


def external_server(text: str) -> ExternalServer:
    """``HOST`` or ``HOST:HTTP,GRPC,METRICS`` (ports)."""
    host, sep, ports = text.rpartition(":") if "," in text else (text, "", "")
    if not host:
        raise argparse.ArgumentTypeError(f"no host in {text!r}")
    if not sep:
        return ExternalServer(host)
    try:
        http, grpc, metrics = (int(p) for p in ports.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r}: ports must be three integers, HOST:HTTP,GRPC,METRICS"
        ) from exc
    return ExternalServer(host, http, grpc, metrics)


def serving_options(overrides: dict[str, int]) -> ServingOptions:
    try:
        return replace(ServingOptions(), **overrides)  # type: ignore[arg-type]
    except ValueError as exc:
        raise SystemExit(f"gesture-bench: {exc}") from exc


@dataclass
class Recorder:
    """Collects points, the commands that produced them and notes."""

    series: list[Point] = field(default_factory=list)
    commands: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    breakdown: list[dict[str, object]] = field(default_factory=list)
    paired: list[dict[str, float]] = field(default_factory=list)
    run_widths: list[dict[str, object]] = field(default_factory=list)
    # A round: the naive and served photos/s, with the series and concurrency it ran at.
    throughput_paired: list[dict[str, Any]] = field(default_factory=list)
    interleaved: dict[str, object] = field(default_factory=dict)
    # gesture-bench tune: one row per variant, round and concurrency (a Point plus the round).
    tuning_rounds: list[dict[str, Any]] = field(default_factory=list)

    def add(self, point: Point) -> None:
        self.series.append(point)
        print(
            f"  {point.series:44s} c={point.concurrency:<2d} {point.throughput:7.1f}/s "
            f"p50 {point.p50_ms:7.1f} ms  p99 {point.p99_ms:7.1f} ms",
            flush=True,
        )


@contextlib.contextmanager
def served(repository: Path, work: Path) -> Iterator[TritonServer]:
    server = TritonServer.on_free_ports(repository, build_dir=work, startup_timeout_s=600.0)
    with server:
        yield server


# A Triton started elsewhere: the NGC container on a GPU host (``docker compose --profile gpu
# up`` or ``--profile tensorrt``), or ``gesture-serve``.
ExternalServer = Endpoints


def check_external(server: ExternalServer, models: Sequence[str], timeout_s: float = 10.0) -> None:
    """The server answers and every model of the flavour is ready, or a :class:`ServerError`
    naming what is missing (a wrong ``--flavour`` shows here, not as perf_analyzer noise)."""
    url = f"http://{server.http_url}/v2/repository/index"
    request = urllib.request.Request(url, data=b"{}", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            index = json.load(reply)
    except (OSError, ValueError) as exc:
        raise ServerError(f"no Triton answers at {server.http_url}: {exc}") from exc
    ready = {entry["name"] for entry in index if entry.get("state") == "READY"}
    missing = [m for m in models if m not in ready]
    if missing:
        raise ServerError(
            f"the server at {server.http_url} has no ready {', '.join(missing)} "
            f"(ready: {', '.join(sorted(ready)) or 'none'}); is --flavour right?"
        )


def concurrencies(span: tuple[int, int, int]) -> list[int]:
    start, end, step = span
    return list(range(start, end + 1, step))


def perf_series(
    rec: Recorder,
    server: TritonServer | ExternalServer,
    label: str,
    model: str,
    protocol: str,
    input_json: Path,
    span: tuple[int, int, int],
    out_dir: Path,
    request_count: int,
    shared_memory: str = "none",
    breakdown_at: int | None = None,
) -> None:
    """One perf_analyzer run per concurrency (so Triton's statistics can be read around the
    one that matters), CSVs and logs kept under ``out_dir/csv``."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", label).strip("_")
    for c in concurrencies(span):
        spec = pa.PerfRun(
            model=model,
            url=server.grpc_url if protocol == "grpc" else server.http_url,
            protocol=protocol,
            input_data=input_json,
            concurrency=(c, c, 1),
            csv_path=out_dir / "csv" / f"{slug}_c{c}.csv",
            request_count=request_count,
            shared_memory=shared_memory,
            output_shared_memory_size=OUTPUT_SHM_BYTES if shared_memory != "none" else 0,
        )
        before = server_stats.snapshot(server.http_url) if c == breakdown_at else None
        widths_before = server_stats.run_widths(server.metrics_url)
        rows = try_run_stable(rec, spec, out_dir / "logs" / f"{slug}_c{c}.log", label)
        if rows is None:
            continue
        if before is not None:
            after = server_stats.snapshot(server.http_url)
            rec.breakdown = [asdict(r) for r in server_stats.difference(before, after)]
        widths = server_stats.run_widths(server.metrics_url)
        runs = {w: int(widths[w] - widths_before[w]) for w in server_stats.WIDTHS}
        if sum(runs.values()):
            rec.run_widths.append({"series": label, "concurrency": c, **runs})
        log = (out_dir / "logs" / f"{slug}_c{c}.log").read_text()
        rec.add(point_from_perf_row(label, rows[-1], pa.client_request_count(log)))
        # Reproducible by hand: default ports, paths relative to the report (inputs are kept
        # with --work-dir), no temporary folder names.
        shown = replace(
            spec,
            concurrency=span,
            url=_shown_url(server, protocol),
            csv_path=Path("csv") / f"{slug}.csv",
            input_data=Path("inputs") / input_json.name,
        )
        rec.commands.setdefault(label, pa.command_line(shown))


def run_stable(
    rec: Recorder, spec: pa.PerfRun, log_path: Path, label: str
) -> list[dict[str, float]]:
    """perf_analyzer until stable; a loosened tolerance is written into the report's notes."""
    rows, used = pa.run_until_stable(
        spec, PERF_TIMEOUT_S, log_path, max_percentage=MAX_STABILITY_PERCENTAGE
    )
    if used.stability_percentage != spec.stability_percentage:
        rec.notes.append(
            f"{label}, concurrency {spec.concurrency[0]}: no stable windows at the default "
            f"tolerance; measured with --stability-percentage {used.stability_percentage}."
        )
    return rows


def try_run_stable(
    rec: Recorder, spec: pa.PerfRun, log_path: Path, label: str
) -> list[dict[str, float]] | None:
    """:func:`run_stable`, but a measurement that never settles (a noisy spell on a shared
    host) is written into the report's notes and left out instead of ending the whole run
    and losing every series measured before it."""
    try:
        return run_stable(rec, spec, log_path, label)
    except pa.UnstableMeasurementError as exc:
        rec.notes.append(
            f"{label}, concurrency {spec.concurrency[0]}: left out, no stable measurement "
            f"within {MAX_STABILITY_PERCENTAGE} % ({exc})."
        )
        return None


def _shown_url(server: TritonServer | ExternalServer, protocol: str) -> str:
    """A started server's free ports mean nothing later: its report shows Triton's defaults
    (what ``gesture-serve`` uses); an external server is shown as it was reached."""
    if isinstance(server, ExternalServer):
        return server.grpc_url if protocol == "grpc" else server.http_url
    return "localhost:8001" if protocol == "grpc" else "localhost:8000"


def trace(
    models_dir: Path,
    photos_dir: Path,
    limit: int,
    opts: ServingOptions,
    providers: Sequence[str] = (CPU_PROVIDER,),
) -> tuple[GesturePipeline, list[PhotoTensors]]:
    pipeline = GesturePipeline.from_dir(
        models_dir, threads=opts.ort_threads or None, providers=providers, max_hands=opts.max_hands
    )
    photos = [trace_photo(pipeline, p, opts.max_hands) for p in find_photos(photos_dir, limit)]
    return pipeline, photos


def run_inprocess(
    rec: Recorder,
    pipeline: GesturePipeline,
    photos: Sequence[PhotoTensors],
    span: tuple[int, int, int],
    requests: int,
) -> None:
    images = [image_array(p) for p in photos]
    encoded = [p.encoded() for p in photos]
    for c in concurrencies(span):
        rec.add(measure_callable(rp.INPROCESS, pipeline, images, c, requests))
    rec.add(
        measure_callable("in-process ONNX (bytes)", pipeline.classify_bytes, encoded, 1, requests)
    )


def paired_rounds(
    rec: Recorder,
    args: argparse.Namespace,
    server: TritonServer | ExternalServer,
    pipeline: GesturePipeline,
    photos: Sequence[PhotoTensors],
    input_json: Path,
    out: Path,
    replay: Replay | None = None,
) -> None:
    """The concurrency-1 latency comparison, alternated: in-process, served, in-process, ...

    On a shared host the machine's speed drifts by more than the 15 % the target allows between
    two runs minutes apart; alternating short rounds puts both sides under the same drift, and
    the report takes the median of the per-round ratios.
    """
    images = [image_array(p) for p in photos]
    print(f"== paired concurrency-1 rounds ({args.paired_rounds})", flush=True)
    for round_no in range(1, args.paired_rounds + 1):
        local = measure_callable(
            "paired in-process", pipeline, images, 1, args.request_count * 2, warmup=3
        )
        spec = pa.PerfRun(
            model=ENSEMBLE,
            url=server.grpc_url,
            protocol="grpc",
            input_data=input_json,
            concurrency=(1, 1, 1),
            csv_path=out / "csv" / f"paired_round{round_no}.csv",
            request_count=args.request_count,
        )
        rows = try_run_stable(rec, spec, out / "logs" / f"paired_round{round_no}.log", "paired")
        if rows is None:
            continue
        served_point = point_from_perf_row("paired served", rows[-1], 0)
        result = {
            "round": round_no,
            "inprocess_p50_ms": local.p50_ms,
            "inprocess_avg_ms": local.avg_ms,
            "served_p50_ms": served_point.p50_ms,
            "served_avg_ms": served_point.avg_ms,
        }
        message = (
            f"  round {round_no}: in-process p50 {local.p50_ms:.1f} ms, served gRPC p50 "
            f"{served_point.p50_ms:.1f} ms ({served_point.p50_ms / local.p50_ms:.2f}x)"
        )
        if args.shared_memory:
            # A same-host client, as the in-process pipeline is: the photo already lies in
            # memory both ways, so the comparison without the transport copy.
            shm_spec = dataclasses.replace(
                spec,
                csv_path=out / "csv" / f"paired_round{round_no}_shm.csv",
                shared_memory="system",
                output_shared_memory_size=OUTPUT_SHM_BYTES,
            )
            log = out / "logs" / f"paired_round{round_no}_shm.log"
            shm_rows = try_run_stable(rec, shm_spec, log, "paired shm")
            if shm_rows is not None:
                shm_point = point_from_perf_row("paired shm", shm_rows[-1], 0)
                result["served_shm_p50_ms"] = shm_point.p50_ms
                result["served_shm_avg_ms"] = shm_point.avg_ms
                message += (
                    f", + system shm p50 {shm_point.p50_ms:.1f} ms "
                    f"({shm_point.p50_ms / local.p50_ms:.2f}x)"
                )
        if replay is not None:
            message += floor_round(rec, args, spec, replay, round_no, result, out)
        rec.paired.append(result)
        print(message, flush=True)


def floor_round(
    rec: Recorder,
    args: argparse.Namespace,
    spec: pa.PerfRun,
    replay: Replay,
    round_no: int,
    result: dict[str, float],
    out: Path,
) -> str:
    """One round's Triton floor: the served run's perf_analyzer settings against the replay
    repository (benchmarks.floor), with the benchmark's photos and with a tiny one; fills
    ``result`` and returns the progress text."""
    message = ""
    memories = [("", "none")] + ([("_shm", "system")] if args.shared_memory else [])
    photos = [("", spec.input_data), ("_small", replay.small_photo_input)]
    for size, input_data in photos:
        for memory_suffix, memory in memories:
            suffix = size + memory_suffix
            floor_spec = dataclasses.replace(
                spec,
                url=replay.server.grpc_url,
                input_data=input_data,
                csv_path=out / "csv" / f"paired_round{round_no}_floor{suffix}.csv",
                shared_memory=memory,
                output_shared_memory_size=OUTPUT_SHM_BYTES if memory != "none" else 0,
            )
            log = out / "logs" / f"paired_round{round_no}_floor{suffix}.log"
            rows = try_run_stable(rec, floor_spec, log, f"floor{suffix}")
            if rows is not None:
                point = point_from_perf_row("floor", rows[-1], 0)
                result[f"floor{suffix}_p50_ms"] = point.p50_ms
                message += f", floor{suffix.replace('_', ' ')} {point.p50_ms:.1f} ms"
    return message


@dataclass(frozen=True)
class Replay:
    """The floor's replay server and the perf_analyzer input holding its tiny photo."""

    server: TritonServer
    small_photo_input: Path


@contextlib.contextmanager
def floor_server(
    server: TritonServer,
    configs: dict[str, ModelConfig],
    photos: Sequence[PhotoTensors],
    work: Path,
) -> Iterator[Replay]:
    """The replay repository of ``server``'s ensemble (benchmarks.floor), served beside it."""
    photo = floor.replay_photo(list(photos))
    answers = floor.record_answers(server.grpc_url, configs, ENSEMBLE, photo)
    repository = floor.build_floor_repository(
        server.model_repository, ENSEMBLE, answers, work / "floor_repository"
    )
    (image_input,) = (t.name for t in configs[ENSEMBLE].inputs)
    small = floor.write_small_photo_input(image_input, work / "floor_inputs" / "small_photo.json")
    print(f"== Triton floor: models replay their answers for {photo.name}", flush=True)
    with served(repository, work) as floor_triton:
        yield Replay(floor_triton, small)


def interleaved_rounds(
    rec: Recorder,
    args: argparse.Namespace,
    server: TritonServer | ExternalServer,
    pipeline: GesturePipeline,
    photos: Sequence[PhotoTensors],
) -> None:
    """The concurrency-1 comparison request by request: each photo through the in-process
    pipeline and through the server (the project's own Python client, plain gRPC and, with
    ``--shared-memory``, system shared memory) in turn, a few milliseconds apart. The
    perf_analyzer rounds alternate every few seconds, slower than this host's speed drifts."""
    from gesture_recognition.client.clients import GestureClient

    images = [image_array(p) for p in photos]
    modes = {rp.INTERLEAVED_GRPC: "none"}
    if args.shared_memory:
        modes[rp.INTERLEAVED_SHM] = "system"
    clients = {
        name: GestureClient(server.grpc_url, "grpc", shared_memory=m) for name, m in modes.items()
    }
    print(
        f"== request-interleaved concurrency-1 comparison ({args.interleaved_requests})", flush=True
    )
    try:
        for client in clients.values():
            for image in images[:3]:  # connections, shared-memory regions, label lookup
                client.classify_image(image)
        calls: dict[str, Callable[[np.ndarray], object]] = {
            rp.INPROCESS: pipeline,
            **{n: c.classify_image for n, c in clients.items()},
        }
        times = interleaved_times(calls, images, args.interleaved_requests)
    finally:
        for client in clients.values():
            client.close()
    summary = interleaved_summary(times, rp.INPROCESS)
    rec.interleaved = {"requests": args.interleaved_requests, "series": summary}
    for name, row in summary.items():
        if name != rp.INPROCESS:
            print(
                f"  {name}: p50 {row['p50_ms']:.1f} ms vs in-process "
                f"{summary[rp.INPROCESS]['p50_ms']:.1f} ms, median ratio {row['ratio']:.3f}",
                flush=True,
            )


def load_naive(
    rec: Recorder, args: argparse.Namespace, opts: ServingOptions
) -> NaiveTorchPipeline | None:
    """The naive PyTorch pipeline, or None (noted in the report) without its checkpoints."""
    from .naive_torch import NaiveTorchPipeline

    spec = read_specs(args.models_dir).detector
    try:
        return NaiveTorchPipeline.from_checkpoints(
            args.naive_detector,
            args.naive_classifier,
            spec.imgsz,
            spec.conf_threshold,
            opts.max_hands,
            args.naive_device,
        )
    except FileNotFoundError as exc:
        rec.notes.append(f"Naive PyTorch baseline skipped: {exc}.")
        return None


def run_naive(
    rec: Recorder,
    args: argparse.Namespace,
    photos: Sequence[PhotoTensors],
    naive: NaiveTorchPipeline,
) -> None:
    rec.add(
        measure_callable(rp.NAIVE, naive, [image_array(p) for p in photos], 1, args.naive_requests)
    )
    rec.commands[rp.NAIVE] = (
        f"in-process: ultralytics YOLO({_display(args.naive_detector)}).predict + timm eager "
        f"from {_display(args.naive_classifier)}, one crop at a time, "
        f"{args.naive_requests} photos, device {args.naive_device}"
    )


def throughput_rounds(
    rec: Recorder,
    args: argparse.Namespace,
    server: TritonServer | ExternalServer,
    naive: NaiveTorchPipeline,
    photos: Sequence[PhotoTensors],
    input_json: Path,
    out: Path,
) -> None:
    """The throughput comparison, alternated: naive PyTorch, served at its best concurrency so
    far, naive, ... A single naive row minutes away from the served rows can catch a slow
    spell of a shared host and move the ratio by half; alternating rounds put both under the
    same drift, and the report takes the median of the per-round ratios."""
    served_label = f"served {ENSEMBLE} gRPC" + (" + system shm" if args.shared_memory else "")
    candidates = [p for p in rec.series if p.series == served_label]
    if not candidates:
        return
    concurrency = max(candidates, key=lambda p: p.throughput).concurrency
    images = [image_array(p) for p in photos]
    print(
        f"== paired throughput rounds ({args.throughput_rounds}): naive PyTorch vs served at "
        f"concurrency {concurrency}",
        flush=True,
    )
    for round_no in range(1, args.throughput_rounds + 1):
        local = measure_callable("paired naive", naive, images, 1, args.naive_requests, warmup=2)
        spec = pa.PerfRun(
            model=ENSEMBLE,
            url=server.grpc_url,
            protocol="grpc",
            input_data=input_json,
            concurrency=(concurrency, concurrency, 1),
            csv_path=out / "csv" / f"throughput_round{round_no}.csv",
            request_count=args.request_count,
            shared_memory="system" if args.shared_memory else "none",
            output_shared_memory_size=OUTPUT_SHM_BYTES if args.shared_memory else 0,
        )
        log = out / "logs" / f"throughput_round{round_no}.log"
        rows = try_run_stable(rec, spec, log, "throughput round")
        if rows is None:
            continue
        served_point = point_from_perf_row("paired served", rows[-1], 0)
        rec.throughput_paired.append(
            {
                "round": round_no,
                "series": served_label,
                "concurrency": concurrency,
                "naive_photos_s": local.throughput,
                "served_photos_s": served_point.throughput,
            }
        )
        print(
            f"  round {round_no}: naive {local.throughput:.1f}/s, served "
            f"{served_point.throughput:.1f}/s ({served_point.throughput / local.throughput:.2f}x)",
            flush=True,
        )


def run_served(
    rec: Recorder,
    args: argparse.Namespace,
    photos: Sequence[PhotoTensors],
    opts: ServingOptions,
    work: Path,
    out: Path,
    label_prefix: str = "served",
    models_dir: Path | None = None,
    span: tuple[int, int, int] | None = None,
    request_count: int | None = None,
    composing: bool | None = None,
    pipeline: GesturePipeline | None = None,
    naive: NaiveTorchPipeline | None = None,
) -> None:
    models = models_dir or args.models_dir
    span = span or args.concurrency
    count = request_count or args.request_count
    configs = model_configs(args.flavour, read_specs(models), opts)
    inputs = write_input_data(configs, photos, work / f"inputs_{label_prefix.replace(' ', '_')}")
    if args.server is not None:
        check_external(args.server, list(configs))
        context: contextlib.AbstractContextManager = contextlib.nullcontext(args.server)
    else:
        repository = build_repository("cpu", models, work / "model_repository", opts)
        context = served(repository, work)
    with context as server:
        for protocol in args.protocols:
            name = "gRPC" if protocol == "grpc" else "HTTP"
            perf_series(
                rec,
                server,
                f"{label_prefix} {ENSEMBLE} {name}",
                ENSEMBLE,
                protocol,
                inputs[ENSEMBLE],
                span,
                out,
                count,
                breakdown_at=1 if protocol == "grpc" and label_prefix == "served" else None,
            )
        if label_prefix != "served":
            return
        if pipeline is not None and args.paired_rounds:
            with contextlib.ExitStack() as stack:
                replay = None
                if args.floor and isinstance(server, TritonServer):
                    replay = stack.enter_context(floor_server(server, configs, photos, work))
                elif args.floor:
                    rec.notes.append(
                        "Triton floor not measured: it serves a replay copy of the local "
                        "repository, and this run used an external server."
                    )
                paired_rounds(rec, args, server, pipeline, photos, inputs[ENSEMBLE], out, replay)
        if pipeline is not None and args.interleaved_requests:
            interleaved_rounds(rec, args, server, pipeline, photos)
        perf_series(
            rec,
            server,
            f"served {ENSEMBLE_BYTES} gRPC",
            ENSEMBLE_BYTES,
            "grpc",
            inputs[ENSEMBLE_BYTES],
            span,
            out,
            count,
        )
        if args.shared_memory:
            perf_series(
                rec,
                server,
                f"served {ENSEMBLE} gRPC + system shm",
                ENSEMBLE,
                "grpc",
                inputs[ENSEMBLE],
                span,
                out,
                count,
                shared_memory="system",
            )
        if composing if composing is not None else not args.quick:
            for name, config in configs.items():
                if config.is_ensemble:
                    continue
                perf_series(
                    rec,
                    server,
                    f"model {name} gRPC",
                    name,
                    "grpc",
                    inputs[name],
                    (1, 1, 1),
                    out,
                    count,
                )
        if naive is not None and args.throughput_rounds:
            throughput_rounds(rec, args, server, naive, photos, inputs[ENSEMBLE], out)


def run_original(rec: Recorder, args: argparse.Namespace, work: Path, out: Path) -> None:
    """The 2021 configuration, speed only: YOLOv5x-class detector at 640 px and EfficientNetV2-M
    at 384 px, random weights, served the same way. The random detector keeps every box, so the
    server is built with one hand per photo (the trained pipeline sees about one per photo)."""
    from gesture_recognition.export.onnx_export import make_untrained_models

    models = args.original_models
    if not (models / "hand_detector.onnx").is_file():
        print(f"== exporting the original configuration (random weights) to {models}", flush=True)
        make_untrained_models(
            models,
            imgsz=640,
            detector_yaml="yolov5xu.yaml",
            classifier_arch="tf_efficientnetv2_m",
            classifier_size=384,
            max_hands=1,
            verify=False,
        )
    opts = ServingOptions(max_hands=1)
    pipeline, photos = trace(models, args.photos, args.limit, opts)
    del pipeline
    run_served(
        rec,
        args,
        photos,
        opts,
        work / "original",
        out,
        label_prefix="original 2021",
        models_dir=models,
        span=args.original_concurrency,
        request_count=args.original_request_count,
        composing=False,
    )
    rec.notes.append(
        "The 'original 2021' rows are speed only: YOLOv5x-class (ultralytics yolov5xu) at 640 px "
        "and EfficientNetV2-M at 384 px with random weights, one hand per photo, served by the "
        "same repository code."
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gesture-bench", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(s: argparse.ArgumentParser) -> None:
        s.add_argument("--models-dir", type=Path, default=shipped_models_dir())
        s.add_argument("--photos", type=Path, default=REPO / "samples")
        s.add_argument("--limit", type=int, default=16, help="photos used (name order)")
        s.add_argument("--concurrency", type=concurrency_range, default=(1, 4, 1))
        s.add_argument("--protocols", type=lambda t: t.split(","), default=["grpc", "http"])
        s.add_argument(
            "--request-count",
            type=int,
            default=50,
            help="requests per perf_analyzer measurement window (count_windows mode)",
        )
        s.add_argument(
            "--set",
            dest="overrides",
            type=option_override,
            action="append",
            default=[],
            metavar="KEY=INT",
            help="a serving option, e.g. queue_delay_us=2000 (repeatable)",
        )
        s.add_argument("--work-dir", type=Path, default=None, help="keep repository and inputs")
        s.add_argument(
            "--note", action="append", default=[], help="a line for the report (repeatable)"
        )

    run = sub.add_parser("run", help="baselines + served pipeline, report")
    common(run)
    run.add_argument("--out", type=Path, default=REPO / "reports" / "perf" / "cpu")
    run.add_argument("--quick", action="store_true", help="ensembles only, no baselines")
    run.add_argument("--shared-memory", action="store_true", help="also gRPC + system shm")
    run.add_argument(
        "--naive-detector",
        type=Path,
        default=REPO / "runs" / "detector" / "yolo26n_320_ft" / "weights" / "best.pt",
    )
    run.add_argument(
        "--naive-classifier", type=Path, default=REPO / "runs" / "classifier" / "mcs2021_ft"
    )
    run.add_argument("--naive-requests", type=int, default=48)
    run.add_argument(
        "--paired-rounds",
        type=int,
        default=3,
        help="alternating in-process / served rounds at concurrency 1 for the latency ratio "
        "(0: compare the two series as measured)",
    )
    run.add_argument(
        "--floor",
        action="store_true",
        help="time, in each paired round, the same ensemble whose models replay recorded "
        f"answers, with the benchmark's photos and with a {floor.SMALL_PHOTO_LABEL} one: "
        "Triton's own cost at concurrency 1 and how much of it is moving the photo (local "
        "server only)",
    )
    run.add_argument(
        "--interleaved-requests",
        type=int,
        default=240,
        help="photos timed in-process and served in turn at concurrency 1, with the project's "
        "Python client (0: off)",
    )
    run.add_argument(
        "--throughput-rounds",
        type=int,
        default=3,
        help="alternating naive PyTorch / served (best concurrency) rounds for the throughput "
        "ratio (0: compare the two series as measured)",
    )
    run.add_argument(
        "--naive-device", default="cpu", help="torch device of the naive baseline (cuda:0 on GPU)"
    )
    run.add_argument(
        "--server",
        type=external_server,
        default=None,
        metavar="HOST[:HTTP,GRPC,METRICS]",
        help="measure a Triton started elsewhere (the NGC container on a GPU host) instead of "
        "starting the local cpu-flavour one; Triton's ports 8000,8001,8002 unless given",
    )
    run.add_argument(
        "--flavour",
        choices=FLAVOURS,
        default="cpu",
        help="the repository flavour the --server serves (its models and their inputs)",
    )
    run.add_argument(
        "--providers",
        type=lambda t: [p for p in t.split(",") if p],
        default=[CPU_PROVIDER],
        help="ONNX Runtime providers of the in-process baseline, e.g. "
        "CUDAExecutionProvider,CPUExecutionProvider (needs onnxruntime-gpu)",
    )
    run.add_argument("--original", action="store_true", help="also the 2021 configuration")
    run.add_argument(
        "--original-models", type=Path, default=REPO / "build" / "bench" / "original_models"
    )
    run.add_argument("--original-concurrency", type=concurrency_range, default=(1, 2, 1))
    run.add_argument("--original-request-count", type=int, default=4)

    tune = sub.add_parser("tune", help="the ensemble under serving-option variants")
    common(tune)
    tune.add_argument("--out", type=Path, default=REPO / "reports" / "perf" / "tuning")
    tune.add_argument(
        "--variant",
        type=variant,
        action="append",
        default=[],
        help="NAME=key=value,key=value (repeatable; 'baseline', the defaults with --set, is "
        "always measured)",
    )
    tune.add_argument(
        "--rounds",
        type=positive_int,
        default=3,
        help="rounds in which every variant is measured in turn (the order rotating)",
    )

    rep = sub.add_parser("report", help="redraw REPORT.md from a results.json")
    rep.add_argument("out", type=Path)

    sub.add_parser("perf-analyzer", help="run perf_analyzer with its libraries found")
    return p


def _results(
    args: argparse.Namespace,
    rec: Recorder,
    opts: ServingOptions,
    photos: Sequence[PhotoTensors],
    title: str,
) -> dict[str, Any]:
    return {
        "title": title,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "gesture-bench " + shlex.join(_display_argv(args.argv)),
        "host": describe(REPO),
        "photos": {
            "folder": _display(args.photos),
            "count": len(photos),
            "hands": sum(p.hands for p in photos),
        },
        "options": _options(opts),
        "series": [p.as_dict() for p in rec.series],
        "commands": rec.commands,
        "notes": rec.notes,
        "breakdown": rec.breakdown,
        "paired": rec.paired,
        "run_widths": rec.run_widths,
        "throughput_paired": rec.throughput_paired,
        "interleaved": rec.interleaved,
    }


def _options(opts: ServingOptions) -> dict[str, object]:
    """The build's options with the instance counts the cpu flavour really used."""
    shown = {k: v for k, v in asdict(opts).items() if k != "compute_capabilities"}
    shown["detector_instances"], shown["classifier_instances"] = instance_counts(opts, "cpu")
    return shown


def _display(path: Path) -> str:
    """Paths in reports relative to the repository: no machine's absolute paths in files."""
    return shown_path(path)


def _display_argv(argv: Sequence[str]) -> list[str]:
    return [_display(Path(a)) if a.startswith("/") else a for a in argv]


def _write(out: Path, results: dict) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / rp.RESULTS_JSON).write_text(json.dumps(results, indent=2))
    return rp.write_report(out)


def clear_run_files(out: Path) -> None:
    """Drop an earlier run's perf_analyzer CSVs and logs from ``out``: a report folder must
    not keep files of series (or models) the new run no longer measures."""
    for folder, suffix in (("csv", ".csv"), ("logs", ".log")):
        for path in (out / folder).glob(f"*{suffix}"):
            path.unlink()


def cmd_run(args: argparse.Namespace, work: Path) -> int:
    opts = serving_options(dict(args.overrides))
    rec = Recorder(notes=list(args.note))
    clear_run_files(args.out)
    print(f"== tracing {args.limit} photos from {args.photos}", flush=True)
    pipeline, photos = trace(args.models_dir, args.photos, args.limit, opts, args.providers)
    if args.server is not None:
        rec.notes.append(
            f"Served by an external Triton at {args.server.http_url} ({args.flavour} flavour "
            f"repository, started outside this run); in-process baseline on ONNX Runtime "
            f"{', '.join(args.providers)}; naive PyTorch on {args.naive_device}."
        )
    if not args.quick:
        print("== in-process baseline", flush=True)
        run_inprocess(rec, pipeline, photos, args.concurrency, args.request_count * 2)
    else:
        run_inprocess(rec, pipeline, photos, (1, 1, 1), args.request_count)
    naive = None if args.quick else load_naive(rec, args, opts)
    print("== served", flush=True)
    run_served(rec, args, photos, opts, work, args.out, pipeline=pipeline, naive=naive)
    del pipeline
    if naive is not None:
        print("== naive PyTorch baseline", flush=True)
        run_naive(rec, args, photos, naive)
    del naive
    if args.original and args.server is not None:
        rec.notes.append(
            "The original 2021 configuration was not measured: it needs its own repository, "
            "and this run used an external server."
        )
    elif args.original:
        print("== original 2021 configuration", flush=True)
        run_original(rec, args, work, args.out)
    title = "Load test: served pipeline vs baselines"
    report = _write(args.out, _results(args, rec, opts, photos, title))
    print(f"== report: {report}")
    return EXIT_OK


def cmd_tune(args: argparse.Namespace, work: Path) -> int:
    """Every variant served at once, measured in rounds that take turns (the order rotating):
    on a host whose speed drifts by a fifth within minutes, variants measured one after
    another differ by the drift, variants measured in the same round by what they change."""
    base = dict(args.overrides)
    variants = [("baseline", {}), *args.variant]
    names = [name for name, _ in variants]
    if len(set(names)) != len(names):
        raise SystemExit(
            f"gesture-bench: variant names must differ ('baseline' is the defaults, always "
            f"measured): {', '.join(names)}"
        )
    rec = Recorder(notes=list(args.note))
    clear_run_files(args.out)
    photos: list[PhotoTensors] = []
    inputs: dict[str, Path] = {}
    lines = ["| variant | options |", "|---|---|"]
    with contextlib.ExitStack() as stack:
        servers: dict[str, TritonServer] = {}
        for name, overrides in variants:
            opts = serving_options({**base, **overrides})
            print(f"== variant {name}: {overrides or 'defaults'}", flush=True)
            _, photos = trace(args.models_dir, args.photos, args.limit, opts)
            configs = model_configs("cpu", read_specs(args.models_dir), opts)
            inputs[name] = write_input_data(configs, photos, work / name / "inputs")[ENSEMBLE]
            repository = build_repository("cpu", args.models_dir, work / name / "repository", opts)
            servers[name] = stack.enter_context(served(repository, work / name))
            lines.append(f"| {name} | `{json.dumps(overrides) if overrides else 'defaults'}` |")
        for round_no in range(1, args.rounds + 1):
            shift = (round_no - 1) % len(variants)
            for name, _ in variants[shift:] + variants[:shift]:
                for protocol in args.protocols:
                    label = f"tune {name} {ENSEMBLE} {'gRPC' if protocol == 'grpc' else 'HTTP'}"
                    before = len(rec.series)
                    perf_series(
                        rec,
                        servers[name],
                        f"{label} round {round_no}",
                        ENSEMBLE,
                        protocol,
                        inputs[name],
                        args.concurrency,
                        args.out,
                        args.request_count,
                    )
                    rec.tuning_rounds += [
                        {
                            "round": round_no,
                            "variant": name,
                            "protocol": protocol,
                            "label": label,
                            **p.as_dict(),
                        }
                        for p in rec.series[before:]
                    ]
    results = _results(args, rec, serving_options(base), photos, "Tuning: serving-option variants")
    # The table and plots show each variant's medians over the rounds; every round is listed
    # under the tuning summary.
    results["series"] = [p.as_dict() for p in rp.round_medians(rec.tuning_rounds)]
    results["tuning"] = lines
    results["tuning_rounds"] = rec.tuning_rounds
    report = _write(args.out, results)
    print(f"== report: {report}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["perf-analyzer"]:
        rest = argv[1:]
        if rest[:1] == ["--"]:
            rest = rest[1:]
        return pa.passthrough(rest)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    if getattr(args, "server", None) is None and getattr(args, "flavour", "cpu") != "cpu":
        parser.error("--flavour other than cpu needs --server: this host serves the cpu flavour")
    if args.command == "report":
        print(rp.write_report(args.out))
        return EXIT_OK
    try:
        pa.check_runs()
        if args.work_dir is not None:
            args.work_dir.mkdir(parents=True, exist_ok=True)
            return {"run": cmd_run, "tune": cmd_tune}[args.command](args, args.work_dir)
        with tempfile.TemporaryDirectory(prefix="gesture-bench-") as tmp:
            return {"run": cmd_run, "tune": cmd_tune}[args.command](args, Path(tmp))
    except (pa.PerfAnalyzerError, ServerError) as exc:
        print(f"gesture-bench: {exc}", file=sys.stderr)
        return EXIT_RUN
    except FileNotFoundError as exc:
        print(f"gesture-bench: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
