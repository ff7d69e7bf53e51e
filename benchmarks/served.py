"""The served side of ``gesture-bench run``: perf_analyzer series against a Triton started here
(the cpu flavour) or elsewhere (``--server``), each model's inputs traced from real photos."""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from gesture_recognition.serving.build import build_repository
from gesture_recognition.serving.configs import ServingOptions, model_configs, read_specs
from gesture_recognition.serving.contract import ENSEMBLE, ENSEMBLE_BYTES
from gesture_recognition.serving.launcher import Endpoints, ServerError, TritonServer

from . import perf_analyzer as pa
from . import server_stats
from .inputs import PhotoTensors, write_input_data
from .measure import Point, point_from_perf_row

# Output tensors of the ensemble are small, but variable: room for MAX_HANDS boxes and more.
OUTPUT_SHM_BYTES = 64 * 1024
PERF_TIMEOUT_S = 900.0
MAX_STABILITY_PERCENTAGE = 40


@dataclass
class Recorder:
    """Collects points, the commands that produced them and notes."""

    series: list[Point] = field(default_factory=list)
    commands: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    breakdown: list[dict[str, object]] = field(default_factory=list)

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
        rows = try_run_stable(rec, spec, out_dir / "logs" / f"{slug}_c{c}.log", label)
        if rows is None:
            continue
        if before is not None:
            after = server_stats.snapshot(server.http_url)
            rec.breakdown = [asdict(r) for r in server_stats.difference(before, after)]
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
) -> None:
    models = models_dir or args.models_dir
    span = span or args.concurrency
    count = request_count or args.request_count
    configs = model_configs(args.flavour, read_specs(models), opts)
    inputs = write_input_data(configs, photos, work / f"inputs_{label_prefix.replace(' ', '_')}")
    if args.server is not None:  # checked by cmd_run before anything was measured
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
                if config.platform == "ensemble":
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
