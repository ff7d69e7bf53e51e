"""Build a servable Triton model repository for a target host, engines included.

    python export/build_engines.py                       # cpu: build/model_repository
    python export/build_engines.py --target onnxruntime  # NGC container, native ORT backend
    python export/build_engines.py --target tensorrt --dry-run
    python -m gesture_recognition.export.build_engines --target tensorrt   # on a GPU host

The configs come from ``gesture_recognition.serving.repository`` (the one source of truth);
``build_repository`` checks them against the ONNX files before anything is written. For
``tensorrt`` the engines are built from the ONNX files with ``trtexec`` (or the TensorRT Python
API) inside the NGC Triton container of the server's release, named per GPU compute capability
(``cc_model_filenames``). Each build writes ``BUILD_REPORT.md`` beside the models.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from gesture_recognition.artifacts import shipped_models_dir
from gesture_recognition.export.trt_engines import (
    DEFAULT_WORKSPACE_MB,
    PRECISIONS,
    TensorRTUnavailableError,
    build_with_api,
    engine_filename,
    engine_profiles,
    gpu_compute_capabilities,
    require_tensorrt,
    trtexec_command,
)
from gesture_recognition.serving.repository import (
    FLAVOURS,
    RepositoryError,
    ServingOptions,
    build_repository,
    model_configs,
    positive_int,
    read_specs,
)

REPORT_NAME = "BUILD_REPORT.md"


class UserError(Exception):
    """A problem with the arguments or the inputs: one line on stderr, exit code 2."""


def default_out(target: str) -> Path:
    """``build/model_repository`` for cpu (what ``gesture-serve`` serves), else per target."""
    build = shipped_models_dir().parent / "build"
    return build / ("model_repository" if target == "cpu" else f"model_repository_{target}")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n:.1f} GiB"


def repository_report(root: Path, target: str, extra: Sequence[str] = ()) -> str:
    """Markdown summary of a built repository: each model, its files and their sizes."""
    lines = [f"# Model repository build ({target})", "", f"Repository: `{root}`", ""]
    lines += [*extra, ""] if extra else []
    lines += ["| model | file | size |", "| --- | --- | ---: |"]
    total = 0
    for model in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(p for p in model.rglob("*") if p.is_file()):
            size = path.stat().st_size
            total += size
            lines.append(f"| {model.name} | {path.relative_to(model)} | {_size(size)} |")
    lines += ["", f"Total: {_size(total)}", ""]
    return "\n".join(lines)


def _write_report(root: Path, target: str, extra: Sequence[str] = ()) -> str:
    report = repository_report(root, target, extra)
    (root / REPORT_NAME).write_text(report, encoding="utf-8")
    return report


def _options(args: argparse.Namespace, cc: str | None = None) -> ServingOptions:
    try:
        return ServingOptions(
            max_hands=args.max_hands,
            detector_max_batch=args.detector_max_batch,
            compute_capabilities=(cc,) if cc else (),
        )
    except ValueError as exc:
        raise UserError(str(exc)) from exc


def build_cpu_like(args: argparse.Namespace) -> int:
    out = build_repository(args.target, args.models_dir, args.out, _options(args))
    print(_write_report(out, args.target))
    return 0


def _compute_capability(args: argparse.Namespace, dry_run: bool) -> str | None:
    detected = gpu_compute_capabilities()
    if args.compute_capability:
        if not dry_run and detected and args.compute_capability not in detected:
            raise UserError(
                f"--compute-capability {args.compute_capability} but this host's GPU is "
                f"{', '.join(detected)}: an engine only runs on the GPU family that built it"
            )
        return args.compute_capability
    if detected:
        if len(detected) > 1:
            print(
                f"warning: GPUs of several compute capabilities ({', '.join(detected)}); "
                f"building for {detected[0]} (select a GPU with CUDA_VISIBLE_DEVICES)",
                file=sys.stderr,
            )
        return detected[0]
    if dry_run:
        return None
    raise UserError("cannot find the GPU's compute capability: pass --compute-capability")


def build_tensorrt(args: argparse.Namespace) -> int:
    precision = args.precision or "fp16"
    tensorrt = None if args.dry_run else require_tensorrt(args.trtexec)
    if precision == "int8" and args.calib_dir is None:
        raise UserError("--precision int8 needs --calib-dir with <model>.cache calibration files")
    cc = _compute_capability(args, args.dry_run)
    options = _options(args, cc)
    models = Path(args.models_dir)
    configs = model_configs("tensorrt", read_specs(models), options)
    profiles = engine_profiles(configs)
    engine_name = engine_filename(cc) if cc else "model.plan"

    out = Path(args.out)
    parent = out.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    try:
        # Validates every config against the ONNX files; nothing reaches ``out`` on failure.
        repo = build_repository("tensorrt", models, staging / "repo", options)
        commands: dict[str, list[str]] = {}
        for name, profile in profiles.items():
            config = configs[name]
            calib = None
            if precision == "int8":
                calib = Path(args.calib_dir) / f"{name}.cache"
                if not args.dry_run and not calib.is_file():
                    raise UserError(f"calibration cache {calib} does not exist")
            engine = (out if args.dry_run else repo) / name / "1" / engine_name
            commands[name] = trtexec_command(
                models / str(config.onnx_file),
                engine,
                profile,
                precision=precision,
                calib_cache=calib,
                workspace_mb=args.workspace_mb,
                trtexec=tensorrt if tensorrt and tensorrt != "tensorrt" else "trtexec",
            )

        if args.dry_run:
            print(f"# tensorrt dry run ({precision}, engine file {engine_name}); nothing built\n")
            if cc is None:
                print(
                    "# no GPU found and no --compute-capability: engines keep Triton's default "
                    "name model.plan\n"
                )
            for name, command in commands.items():
                print(f"## {name}\n")
                print(shlex.join(command) + "\n")
                print((repo / name / "config.pbtxt").read_text(encoding="utf-8"))
            return 0

        for name, command in commands.items():
            engine = repo / name / "1" / engine_name
            print(f"building {name}: {shlex.join(command)}", flush=True)
            if tensorrt == "tensorrt":
                build_with_api(
                    models / str(configs[name].onnx_file),
                    engine,
                    profiles[name],
                    precision=precision,
                    workspace_mb=args.workspace_mb,
                )
            else:
                result = subprocess.run(command, capture_output=True, text=True, check=False)
                if result.returncode != 0:
                    tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
                    print(tail, file=sys.stderr)
                    print(
                        f"error: trtexec failed for {name} (exit {result.returncode})",
                        file=sys.stderr,
                    )
                    return 1
            if not engine.is_file() or engine.stat().st_size == 0:
                print(f"error: no engine was written to {engine}", file=sys.stderr)
                return 1
        if out.exists():
            shutil.rmtree(out)
        repo.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    extra = [
        f"Precision: {precision}; compute capability {cc}; engines named {engine_name}.",
        "Engines run only on this GPU family with the TensorRT version that built them.",
    ]
    print(_write_report(out, "tensorrt", extra))
    return 0


def parser() -> argparse.ArgumentParser:
    defaults = ServingOptions()
    p = argparse.ArgumentParser(
        prog="python export/build_engines.py",
        description="Build a validated Triton model repository (and TensorRT engines).",
    )
    p.add_argument("--target", choices=FLAVOURS, default="cpu")
    p.add_argument("--models-dir", type=Path, default=shipped_models_dir())
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default: build/model_repository (cpu) or build/model_repository_<target>",
    )
    p.add_argument("--max-hands", type=positive_int, default=defaults.max_hands)
    p.add_argument("--detector-max-batch", type=positive_int, default=defaults.detector_max_batch)
    p.add_argument("--precision", choices=PRECISIONS, default=None, help="tensorrt only (fp16)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="tensorrt: print the trtexec commands and configs, build nothing",
    )
    p.add_argument("--compute-capability", default=None, help="tensorrt: e.g. 8.9")
    p.add_argument("--trtexec", default=None, help="tensorrt: trtexec path")
    p.add_argument("--workspace-mb", type=positive_int, default=DEFAULT_WORKSPACE_MB)
    p.add_argument(
        "--calib-dir", type=Path, default=None, help="int8: folder of <model>.cache files"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.out is None:
            args.out = default_out(args.target)
        if args.target != "tensorrt":
            tensorrt_only = [
                flag
                for flag, value in (
                    ("--precision", args.precision),
                    ("--dry-run", args.dry_run or None),
                    ("--compute-capability", args.compute_capability),
                    ("--trtexec", args.trtexec),
                    ("--calib-dir", args.calib_dir),
                )
                if value is not None
            ]
            if tensorrt_only:
                raise UserError(f"{', '.join(tensorrt_only)} only apply to --target tensorrt")
            return build_cpu_like(args)
        if args.compute_capability is not None:
            engine_filename(args.compute_capability)  # validates the format
        return build_tensorrt(args)
    except TensorRTUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (UserError, RepositoryError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
