"""Build a servable Triton model repository for a target host, engines included.

    python export/build_engines.py                       # cpu: build/model_repository
    python export/build_engines.py --target onnxruntime  # NGC container, native ORT backend
    python export/build_engines.py --target tensorrt --dry-run
    python export/build_engines.py --int8-classifier     # cpu, INT8 classifier (opt-in)
    python export/build_engines.py --int8-detector       # cpu, INT8 detector, head float
    python -m gesture_recognition.export.build_engines --target tensorrt   # on a GPU host
    python export/build_engines.py --write-committed     # regenerate model_repository/'s configs

The configs come from ``gesture_recognition.serving.configs`` (the one source of truth);
``serving.build.build_repository`` checks them against the ONNX files before anything is
written. For
``tensorrt`` the engines are built from the ONNX files with ``trtexec`` (or the TensorRT Python
API) inside the NGC Triton container of the server's release, named per GPU compute capability
(``cc_model_filenames``). Each build writes ``BUILD_REPORT.md`` beside the models.

``--int8-classifier`` (cpu / onnxruntime) serves a static INT8 (QOperator) copy of the gesture
classifier, calibrated on the train crops of ``--calib-crops`` and verified against the FP32
model on its held-out val + test crops; a copy that fails verification stops the build before
anything is written. ``--int8-detector`` does the same for the detector (its YOLO head stays
float), calibrated on the train photos of ``--calib-data`` and verified by mAP on its val photos.
Both are opt-in: the measurements behind that choice are in ``reports/cpu_speedups/REPORT.md``.
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

from gesture_recognition.arguments import positive_int
from gesture_recognition.artifacts import (
    CLASSIFIER_JSON,
    CLASSIFIER_ONNX,
    DETECTOR_JSON,
    DETECTOR_ONNX,
    models_with_label_map,
    read_classifier_spec,
    read_detector_spec,
    shipped_models_dir,
)
from gesture_recognition.export.onnx_export import VerificationError
from gesture_recognition.export.quantize import (
    CALIBRATION_SPLITS,
    DEFAULT_MAX_MAP_DROP,
    DEFAULT_MAX_PROB_DIFF,
    DEFAULT_MIN_AGREEMENT,
    DETECTOR_CALIBRATION_PHOTOS,
    VERIFICATION_SPLITS,
    CalibrationDataError,
    QuantSettings,
    detector_head_nodes,
    detector_inputs,
    quantize_classifier_verified,
    quantize_model,
    split_inputs,
    verify_detector,
)
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
from gesture_recognition.export.verify_export import real_photos, verify_detector_export
from gesture_recognition.paths import shown_path
from gesture_recognition.serving.build import RepositoryError, build_repository, write_committed
from gesture_recognition.serving.configs import (
    ServingOptions,
    model_configs,
    pipeline,
    read_specs,
)
from gesture_recognition.serving.contract import FLAVOURS

REPORT_NAME = "BUILD_REPORT.md"


class UserError(Exception):
    """A problem with the arguments or the inputs: one line on stderr, exit code 2."""


def default_calib_crops() -> Path:
    """The MachinesCanSee crops ``gesture-train crops`` cuts for the served classifier."""
    return shipped_models_dir().parent / "runs" / "crops" / "hagrid_mcs2021"


def default_calib_data() -> Path:
    """The SubhiH hand dataset ``gesture-train convert`` writes (the detector's training data)."""
    return shipped_models_dir().parent / "runs" / "datasets" / "subhih_hands" / "data.yaml"


def default_out(target: str, label_map: str | None = None) -> Path:
    """``build/model_repository[_<target>][_<label map>]``, as ``gesture-serve`` names it."""
    name = "model_repository" if target == "cpu" else f"model_repository_{target}"
    if label_map is not None:
        name += f"_{label_map}"
    return shipped_models_dir().parent / "build" / name


def models_for(args: argparse.Namespace) -> Path:
    """The models folder to build from: ``--models-dir`` with ``--label-map``'s classifier."""
    work = shipped_models_dir().parent / "build" / "models"
    return models_with_label_map(Path(args.models_dir), args.label_map, work)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n:.1f} GiB"


def shown(path: str | Path) -> str:
    """A path as a report may show it (see :func:`gesture_recognition.paths.shown_path`)."""
    return shown_path(path)


def repository_report(root: Path, target: str, extra: Sequence[str] = ()) -> str:
    """Markdown summary of a built repository: each model, its files and their sizes."""
    # The folder's name only: a report travels with the repository, the machine's paths don't.
    lines = [f"# Model repository build ({target})", "", f"Repository: `{Path(root).name}/`", ""]
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


def _stage_models(models: Path, staging: Path) -> Path:
    for name in (DETECTOR_ONNX, DETECTOR_JSON, CLASSIFIER_ONNX, CLASSIFIER_JSON):
        if not (models / name).is_file():
            raise UserError(f"models directory {models} lacks {name}")
    staged = staging / "models"
    staged.mkdir(parents=True)
    for name in (DETECTOR_ONNX, DETECTOR_JSON, CLASSIFIER_ONNX, CLASSIFIER_JSON):
        shutil.copyfile(models / name, staged / name)
    return staged


def stage_int8_classifier(args: argparse.Namespace, models: Path, staged: Path) -> list[str]:
    """Replace the classifier in ``staged`` by the verified INT8 copy of ``models``' FP32 one.

    Raises VerificationError when the INT8 model disagrees with FP32 beyond the limits.
    """
    crops = Path(args.calib_crops)
    if not (crops / "manifest.csv").is_file():
        raise UserError(
            f"--int8-classifier needs real calibration crops: no manifest.csv in {crops} (cut "
            "them with `gesture-train crops`, see training/recipe.sh, or pass --calib-crops)"
        )
    spec = read_classifier_spec(models / CLASSIFIER_JSON)
    try:
        calibration = split_inputs(crops, spec, CALIBRATION_SPLITS)
        held_out = split_inputs(crops, spec, VERIFICATION_SPLITS)
    except CalibrationDataError as exc:
        raise UserError(str(exc)) from exc
    settings = QuantSettings()
    print(
        f"quantising {CLASSIFIER_ONNX}: {settings.describe()}, {len(calibration)} calibration "
        f"crops; verifying on {len(held_out)} held-out crops",
        flush=True,
    )
    check = quantize_classifier_verified(
        models / CLASSIFIER_ONNX,
        staged / CLASSIFIER_ONNX,
        spec,
        calibration,
        held_out,
        settings,
        min_agreement=args.int8_min_agreement,
        max_prob_diff=args.int8_max_prob_diff,
    )
    return [
        f"- Gesture classifier: INT8 ({settings.describe()}), calibrated on {len(calibration)} "
        f"{'/'.join(CALIBRATION_SPLITS)} crops of `{shown(crops)}`.",
        f"  Verified against FP32 `{shown(models / CLASSIFIER_ONNX)}` on {check.samples} held-out "
        f"{'/'.join(VERIFICATION_SPLITS)} crops: top-1 agreement {check.top1_agreement:.3f} "
        f"(limit >= {args.int8_min_agreement}), max softmax difference "
        f"{check.max_prob_diff:.3f} (limit <= {args.int8_max_prob_diff}), mean "
        f"{check.mean_prob_diff:.3f}, max logit difference {check.max_logit_diff:.3f}.",
    ]


def stage_int8_detector(args: argparse.Namespace, models: Path, staged: Path) -> list[str]:
    """Replace the detector in ``staged`` by an INT8 copy (head float) that keeps its mAP.

    Calibrated on the ``train`` photos of ``--calib-data`` (a YOLO data.yaml), verified by mAP
    on its ``val`` photos against the FP32 detector; raises VerificationError on a larger drop.
    """
    from gesture_recognition.training.evaluate import split_images

    data_yaml = Path(args.calib_data)
    if not data_yaml.is_file():
        raise UserError(
            f"--int8-detector needs labelled real photos: {data_yaml} does not exist (convert "
            "them with `gesture-train convert`, see training/recipe.sh, or pass --calib-data)"
        )
    spec = read_detector_spec(models / DETECTOR_JSON)
    try:
        photos = split_images(data_yaml, "train")[:DETECTOR_CALIBRATION_PHOTOS]
        calibration = detector_inputs(photos, spec.imgsz)
    except (CalibrationDataError, ValueError) as exc:
        raise UserError(f"--calib-data {data_yaml}: {exc}") from exc
    head = detector_head_nodes(models / DETECTOR_ONNX)
    settings = QuantSettings()
    print(
        f"quantising {DETECTOR_ONNX}: {settings.describe()}, {len(head)} head nodes float, "
        f"{len(calibration)} calibration photos; verifying mAP on the val photos",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        candidate = Path(tmp)
        for name in (DETECTOR_JSON, CLASSIFIER_ONNX, CLASSIFIER_JSON):
            shutil.copyfile(staged / name, candidate / name)
        try:
            quantize_model(
                models / DETECTOR_ONNX,
                candidate / DETECTOR_ONNX,
                spec.input_name,
                calibration,
                settings,
                nodes_to_exclude=head,
            )
        except AssertionError as exc:
            # onnxruntime 1.x's quantiser asserts on graphs it cannot order (seen with the
            # EfficientNet-Lite0 backbone's same-padding); say so instead of a bare traceback.
            reason = str(exc) or "an assertion failed"
            raise UserError(
                f"onnxruntime cannot quantise {DETECTOR_ONNX} ({spec.architecture}): {reason}; "
                "serve it in FP32 (leave out --int8-detector)"
            ) from exc
        try:
            check = verify_detector(models, candidate, data_yaml, "val")
        except ValueError as exc:
            raise UserError(f"--calib-data {data_yaml}: {exc}") from exc
        check.check(args.int8_max_map_drop)
        shutil.copyfile(candidate / DETECTOR_ONNX, staged / DETECTOR_ONNX)
    return [
        f"- Hand detector: INT8 ({settings.describe()}; the {len(head)} head nodes float), "
        f"calibrated on {len(calibration)} train photos of `{shown(data_yaml)}`.",
        f"  Verified on its {check.photos} val photos: mAP50 {check.fp32_map50:.3f} (FP32) -> "
        f"{check.int8_map50:.3f} (INT8), mAP50-95 {check.fp32_map50_95:.3f} -> "
        f"{check.int8_map50_95:.3f} (largest drop allowed {args.int8_max_map_drop}).",
    ]


def default_verify_photos() -> Path:
    """Real SubhiH test photos (``../shared/data``), never seen by the detector's training."""
    return shipped_models_dir().parent.parent / "shared" / "data" / "subhih_hands" / "test"


def verify_detector_step(args: argparse.Namespace, models: Path) -> list[str]:
    """The FP32 detector ONNX against ``--detector-checkpoint`` on real photos (raises)."""
    if args.detector_checkpoint is None:
        return [
            "- Hand detector ONNX not re-checked against a checkpoint here (pass "
            "--detector-checkpoint runs/detector/<run>/weights/best.pt)."
        ]
    checkpoint = Path(args.detector_checkpoint)
    if not checkpoint.is_file():
        raise UserError(f"--detector-checkpoint {checkpoint} does not exist")
    photos = real_photos(args.verify_photos, args.verify_count)
    if not photos:
        raise UserError(f"--verify-photos {args.verify_photos}: no photo found")
    spec = read_detector_spec(models / DETECTOR_JSON)
    print(f"verifying {DETECTOR_ONNX} against {checkpoint} on {len(photos)} photos", flush=True)
    check = verify_detector_export(checkpoint, models / DETECTOR_ONNX, spec, photos)
    check.check()
    return [
        f"- Hand detector ONNX verified against `{shown(checkpoint)}` (PyTorch) on "
        f"{check.photos} real photos of `{shown(args.verify_photos)}`: served boxes equal on "
        f"{check.photos_agreeing} of "
        f"{check.photos} ({check.served_boxes} boxes >= {spec.conf_threshold}), max box "
        f"difference {check.max_box_diff_px:.1e} px, max score difference "
        f"{check.max_score_diff:.1e}."
    ]


def build_cpu_like(args: argparse.Namespace) -> int:
    models = models_for(args)
    extra = verify_detector_step(args, models)
    with tempfile.TemporaryDirectory() as tmp:
        if args.int8_classifier or args.int8_detector:
            if args.target == "onnxruntime":
                # QLinearConv & co. exist only in ORT's CPU execution provider: on a GPU
                # instance they would fall back to the CPU with a copy per layer.
                extra.append(
                    "- INT8 (QOperator) models run on ONNX Runtime's CPU execution provider: "
                    "serve this repository on CPU hosts; on a GPU use --target tensorrt "
                    "--precision int8."
                )
            staged = _stage_models(models, Path(tmp))
            if args.int8_classifier:
                extra += stage_int8_classifier(args, models, staged)
            if args.int8_detector:
                extra += stage_int8_detector(args, models, staged)
            extra.append("- Speed and held-out accuracy of INT8: reports/cpu_speedups/REPORT.md.")
            models = staged
        out = build_repository(args.target, models, args.out, _options(args))
    print(_write_report(out, args.target, extra))
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
    models = models_for(args)
    # Engines are built from the ONNX files: check them against the checkpoint first.
    verified = [] if args.dry_run else verify_detector_step(args, models)
    specs = read_specs(models)
    configs = model_configs("tensorrt", specs, options)
    onnx_files = {s.name: s.onnx_file for s in pipeline(specs, options, "tensorrt") if s.onnx_file}
    profiles = engine_profiles(configs, detector=specs.detector)
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
            calib = None
            if precision == "int8":
                calib = Path(args.calib_dir) / f"{name}.cache"
                if not args.dry_run and not calib.is_file():
                    raise UserError(f"calibration cache {calib} does not exist")
            engine = (out if args.dry_run else repo) / name / "1" / engine_name
            commands[name] = trtexec_command(
                models / onnx_files[name],
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
                    models / onnx_files[name],
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
        *verified,
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
    p.add_argument(
        "--write-committed",
        action="store_true",
        help="rewrite the generated files of model_repository/ (cpu configs, shipped models' "
        "specs) and exit",
    )
    p.add_argument("--models-dir", type=Path, default=shipped_models_dir())
    p.add_argument(
        "--label-map",
        help="build with the classifier of this label map (the models folder's own, or a "
        "sub-folder's: models/hagrid)",
    )
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
    p.add_argument(
        "--int8-classifier",
        action="store_true",
        help="cpu/onnxruntime: serve a static INT8 classifier, verified against FP32",
    )
    p.add_argument(
        "--calib-crops",
        type=Path,
        default=None,
        help="int8 classifier: crop folder with manifest.csv (default runs/crops/hagrid_mcs2021)",
    )
    p.add_argument(
        "--int8-min-agreement",
        type=_fraction,
        default=DEFAULT_MIN_AGREEMENT,
        help="int8 classifier: least top-1 agreement with FP32 on held-out crops",
    )
    p.add_argument(
        "--int8-max-prob-diff",
        type=_fraction,
        default=DEFAULT_MAX_PROB_DIFF,
        help="int8 classifier: largest softmax difference from FP32 on any held-out crop",
    )
    p.add_argument(
        "--int8-detector",
        action="store_true",
        help="cpu/onnxruntime: serve a static INT8 detector (head float), verified by mAP",
    )
    p.add_argument(
        "--calib-data",
        type=Path,
        default=None,
        help="int8 detector: YOLO data.yaml, train photos calibrate, val photos verify "
        "(default runs/datasets/subhih_hands/data.yaml)",
    )
    p.add_argument(
        "--int8-max-map-drop",
        type=_fraction,
        default=DEFAULT_MAX_MAP_DROP,
        help="int8 detector: largest allowed mAP50 / mAP50-95 loss against FP32",
    )
    p.add_argument(
        "--detector-checkpoint",
        type=Path,
        default=None,
        help="check the detector ONNX against this ultralytics .pt on real photos before "
        "building (e.g. runs/detector/yolo26n_320/weights/best.pt)",
    )
    p.add_argument(
        "--verify-photos",
        type=Path,
        default=default_verify_photos(),
        help="real photos for --detector-checkpoint (default ../shared/data/subhih_hands/test)",
    )
    p.add_argument("--verify-count", type=positive_int, default=32)
    return p


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.write_committed:
        for path in write_committed():
            print(shown(path))
        return 0
    try:
        if args.out is None:
            args.out = default_out(args.target, args.label_map)
        if args.calib_crops is not None and not args.int8_classifier:
            raise UserError("--calib-crops only applies with --int8-classifier")
        if args.calib_data is not None and not args.int8_detector:
            raise UserError("--calib-data only applies with --int8-detector")
        if args.calib_crops is None:
            args.calib_crops = default_calib_crops()
        if args.calib_data is None:
            args.calib_data = default_calib_data()
        if args.target == "tensorrt" and (args.int8_classifier or args.int8_detector):
            raise UserError(
                "--int8-classifier/--int8-detector are for the cpu and onnxruntime targets; "
                "TensorRT builds INT8 engines with --precision int8"
            )
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
    except VerificationError as exc:
        print(f"error: {exc}; no repository was written", file=sys.stderr)
        return 1
    except (UserError, RepositoryError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
