"""``gesture-bench``: load-test the served pipeline against its baselines and write a report.

    gesture-bench run                       # everything, report in reports/perf/cpu/
    gesture-bench run --quick --out /tmp/b  # a minute: ensembles only, no baselines but in-process
    gesture-bench run --server HOST --flavour tensorrt ...   # a Triton started elsewhere (GPU)
    gesture-bench report reports/perf/cpu   # redraw a report from its results.json
    gesture-bench perf-analyzer -- -m gesture_ensemble ...   # the binary, libraries found

Exit codes: 0 done; 2 bad usage; 3 perf_analyzer or the server could not run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gesture_recognition.artifacts import shipped_models_dir
from gesture_recognition.paths import shown_path
from gesture_recognition.pipeline import GesturePipeline
from gesture_recognition.runtime import CPU_PROVIDER
from gesture_recognition.serving.configs import ServingOptions, model_configs, read_specs
from gesture_recognition.serving.contract import FLAVOURS
from gesture_recognition.serving.launcher import ServerError

from . import perf_analyzer as pa
from . import report as rp
from .hostinfo import describe
from .inputs import PhotoTensors, find_photos, image_array, trace_photo
from .measure import measure_callable
from .served import ExternalServer, Recorder, check_external, concurrencies, run_served

if TYPE_CHECKING:  # torch and ultralytics load only when the naive baseline runs
    from .naive_torch import NaiveTorchPipeline

REPO = Path(__file__).resolve().parents[1]
EXIT_OK, EXIT_USAGE, EXIT_RUN = 0, 2, 3


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
    }


def _options(opts: ServingOptions) -> dict[str, object]:
    """The build's options with the instance counts the cpu flavour really used."""
    shown = {k: v for k, v in asdict(opts).items() if k != "compute_capabilities"}
    shown["detector_instances"], shown["classifier_instances"] = opts.instances("cpu")
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
    if args.server is not None:
        # A wrong host or --flavour shows at once, not after the in-process measurements.
        configs = model_configs(args.flavour, read_specs(args.models_dir), opts)
        check_external(args.server, list(configs))
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
    del pipeline
    run_served(rec, args, photos, opts, work, args.out)
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
            return cmd_run(args, args.work_dir)
        with tempfile.TemporaryDirectory(prefix="gesture-bench-") as tmp:
            return cmd_run(args, Path(tmp))
    except (pa.PerfAnalyzerError, ServerError) as exc:
        print(f"gesture-bench: {exc}", file=sys.stderr)
        return EXIT_RUN
    except FileNotFoundError as exc:
        print(f"gesture-bench: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
