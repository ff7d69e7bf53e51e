"""Writing a servable Triton model repository: configs (``serving.configs``), checked against
the ONNX files (``serving.onnx_check``), plus the Python-backend code, the models and their
spec JSONs. ``python export/build_engines.py --target ...`` and ``gesture-serve`` both build
through :func:`build_repository`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from gesture_recognition.artifacts import (
    CLASSIFIER_JSON,
    CLASSIFIER_ONNX,
    DETECTOR_JSON,
    DETECTOR_ONNX,
    ClassifierSpec,
    DetectorSpec,
    shipped_models_dir,
)
from gesture_recognition.labels import load_label_map
from gesture_recognition.serving import configs as cf
from gesture_recognition.serving import contract, onnx_check
from gesture_recognition.serving.configs import ServingOptions, Specs

MODEL_FILES = (DETECTOR_ONNX, DETECTOR_JSON, CLASSIFIER_ONNX, CLASSIFIER_JSON)
BUILD_INFO = "build_info.json"
# The generator: a build is stale when any of these changed since.
GENERATOR = (Path(cf.__file__), Path(contract.__file__), Path(__file__))


class RepositoryError(ValueError):
    """The configs and the files they would serve do not agree; nothing was written."""


def committed_repository_dir() -> Path:
    """The repository's ``model_repository/`` (Python-backend code + the cpu configs)."""
    return shipped_models_dir().parent / "model_repository"


def default_repository_dir(label_map: str | None = None) -> Path:
    """What ``gesture-serve`` serves and ``build_engines.py --target cpu`` writes; with a
    label map chosen at serve time, a repository of its own beside it."""
    name = "model_repository" if label_map is None else f"model_repository_{label_map}"
    return shipped_models_dir().parent / "build" / name


def committed_specs() -> Specs:
    """The specs the committed configs are rendered from: the shipped ``models/*.json``, or
    until trained models ship, what ``export.onnx_export.make_untrained_models`` writes."""
    models = shipped_models_dir()
    if all((models / n).is_file() for n in (DETECTOR_JSON, CLASSIFIER_JSON)):
        return cf.read_specs(models)
    return Specs(
        DetectorSpec(imgsz=320),
        ClassifierSpec(label_map=load_label_map("mcs2021"), input_size=160),
    )


def committed_files(specs: Specs | None = None) -> dict[str, str]:
    """Relative path -> text of every generated file in the committed repository: the cpu
    flavour's configs, and for the steps it runs inside other models, the native flavours'."""
    specs = specs or committed_specs()
    cpu = cf.model_configs("cpu", specs)
    native = cf.model_configs("onnxruntime", specs)
    files = {f"{name}/config.pbtxt": cf.config_text(config, "cpu") for name, config in cpu.items()}
    for name in native.keys() - cpu.keys():
        files[f"{name}/config.pbtxt"] = cf.config_text(native[name], "onnxruntime")
    for name, config in (*cpu.items(), *native.items()):
        if any(output.label_filename for output in config.output):
            files[f"{name}/{contract.LABELS_FILE}"] = cf.labels_text(specs.classifier)
    return files


def write_committed(root: Path | None = None, specs: Specs | None = None) -> list[Path]:
    root = Path(root) if root is not None else committed_repository_dir()
    written = []
    for rel, text in committed_files(specs).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def read_config(path: Path) -> pb.ModelConfig:
    """A ``config.pbtxt`` as Triton reads it."""
    return text_format.Parse(path.read_text(encoding="utf-8"), pb.ModelConfig())


def configured_limits(repository: Path) -> dict[str, int]:
    """``MAX_PIXELS`` / ``MAX_HANDS`` / ``MAX_BYTES`` as a built repository's configs set them."""
    limits: dict[str, int] = {}
    for model in (contract.IMAGE_DECODER, contract.HAND_CROPS):
        path = repository / model / "config.pbtxt"
        if not path.is_file():
            continue
        try:
            parameters = read_config(path).parameters
        except text_format.ParseError:  # edited by hand beyond reading: rebuilt as unset
            continue
        for key in (contract.MAX_PIXELS, contract.MAX_HANDS, contract.MAX_BYTES):
            if key in parameters and parameters[key].string_value.isdigit():
                limits[key] = int(parameters[key].string_value)
    return limits


def check_models(models: Path, specs: Specs, opts: ServingOptions, flavour: str) -> ServingOptions:
    """The networks' declarations against their ONNX files; the options with the detector's
    real row count. Raises RepositoryError listing every disagreement."""
    signatures = {
        name: onnx_check.onnx_signature(models / name) for name in (DETECTOR_ONNX, CLASSIFIER_ONNX)
    }
    detections = onnx_check.detections_in(signatures[DETECTOR_ONNX], specs.detector)
    if detections is not None and detections != opts.detections:
        opts = replace(opts, detections=detections)
    problems: list[str] = []
    for step in cf.pipeline(specs, opts, flavour):
        if step.onnx_file:
            problems += onnx_check.check_against_onnx(
                step, signatures[step.onnx_file], str(models / step.onnx_file)
            )
    problems += onnx_check.check_classes(specs.classifier, signatures[CLASSIFIER_ONNX])
    if problems:
        raise RepositoryError("refusing to build the model repository:\n  " + "\n  ".join(problems))
    return opts


def build_repository(
    flavour: str,
    models_dir: str | Path,
    out_dir: str | Path,
    options: ServingOptions | None = None,
    source: str | Path | None = None,
) -> Path:
    """Write a servable model repository for ``flavour`` to ``out_dir`` (replaced if present).

    ``models_dir`` holds ``hand_detector.{onnx,json}`` and ``gesture_classifier.{onnx,json}``;
    ``source`` is the committed repository with the Python-backend code. Every config is
    checked against the ONNX files first: a disagreement raises RepositoryError and leaves
    ``out_dir`` untouched.
    """
    if flavour not in contract.FLAVOURS:
        raise RepositoryError(
            f"unknown flavour {flavour!r}: use one of {', '.join(contract.FLAVOURS)}"
        )
    models = Path(models_dir)
    src = Path(source) if source is not None else committed_repository_dir()
    out = Path(out_dir)
    missing = [n for n in MODEL_FILES if not (models / n).is_file()]
    if missing:
        raise RepositoryError(
            f"models directory {models} lacks {', '.join(missing)} (train and export the "
            "models first, or point to a directory that has them)"
        )
    specs = cf.read_specs(models)
    opts = check_models(models, specs, options or ServingOptions(), flavour)
    steps = {s.name: s for s in cf.flavour_steps(flavour, specs, opts)}
    configs = cf.model_configs(flavour, specs, opts)
    python = [n for n, config in configs.items() if config.backend == "python"]
    missing_code = [n for n in python if not (src / n / "1" / "model.py").is_file()]
    if missing_code:
        raise RepositoryError(f"{src} lacks model.py for {', '.join(missing_code)}")

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        decoder = cf.decoder(opts)
        for name, config in configs.items():
            folder = staging / name
            (folder / "1").mkdir(parents=True)
            if config.backend == "python":
                shutil.copyfile(src / name / "1" / "model.py", folder / "1" / "model.py")
            step = steps.get(name, decoder if name == decoder.name else None)
            if step is not None:
                for spec_file in step.spec_files:
                    shutil.copyfile(models / spec_file, folder / "1" / spec_file)
                # tensorrt: model.plan is built from the ONNX file on the target GPU, not here.
                if step.onnx_file and config.backend in ("python", "onnxruntime"):
                    shutil.copyfile(models / step.onnx_file, folder / "1" / "model.onnx")
            if any(output.label_filename for output in config.output):
                (folder / contract.LABELS_FILE).write_text(
                    cf.labels_text(specs.classifier), encoding="utf-8"
                )
            (folder / "config.pbtxt").write_text(cf.config_text(config, flavour), encoding="utf-8")
        info = {
            "flavour": flavour,
            "models_dir": models_dir_id(models),
            "fingerprint": source_fingerprint(models, src),
        }
        (staging / BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def source_fingerprint(models_dir: str | Path, source: str | Path | None = None) -> str:
    """A digest of everything a build copies or renders: the four model files, the committed
    repository (model code, configs) and the generator. A build whose recorded digest differs
    is stale."""
    models = Path(models_dir)
    src = Path(source) if source is not None else committed_repository_dir()
    files = [models / n for n in MODEL_FILES]
    files += sorted(p for p in src.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    files += GENERATOR
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"<missing>")
    return digest.hexdigest()


def models_dir_id(models_dir: str | Path) -> str:
    """Which models folder a build came from, without writing the machine's path into it."""
    return hashlib.sha256(str(Path(models_dir).resolve()).encode()).hexdigest()[:16]


def read_build_info(repository: str | Path) -> dict[str, str] | None:
    """What ``build_repository`` recorded about a build (None for a repository it did not
    write, e.g. one assembled by hand)."""
    path = Path(repository) / BUILD_INFO
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def ensure_repository(
    repository: Path,
    models_dir: Path,
    rebuild: bool = False,
    max_pixels: int | None = None,
    max_hands: int | None = None,
    max_image_bytes: int | None = None,
) -> Path:
    """The repository ``gesture-serve`` serves: built (cpu flavour) from ``models_dir`` when
    missing, stale, or holding other limits than asked for (limits live in the configs)."""
    asked = {
        contract.MAX_PIXELS: max_pixels,
        contract.MAX_HANDS: max_hands,
        contract.MAX_BYTES: max_image_bytes,
    }
    wanted = {key: value for key, value in asked.items() if value is not None}
    exists = repository.is_dir() and any(repository.glob("*/config.pbtxt"))
    current = configured_limits(repository) if exists else {}
    if exists and not rebuild:
        differ = {k: v for k, v in wanted.items() if current.get(k) != v}
        info = read_build_info(repository)
        # Built from these very models, but they (or the serving code) changed since: serving
        # the old copy would answer with the old models. A repository built from other models
        # (or by hand) is the user's choice and is served as it is.
        stale = (
            info is not None
            and info.get("models_dir") == models_dir_id(models_dir)
            and info.get("fingerprint") != source_fingerprint(models_dir)
        )
        # The default build folder is this tool's own: one there without build_info.json was
        # built by an older version and would keep serving that version's code forever.
        own = repository.resolve().parent == default_repository_dir().resolve().parent
        stale = stale or (info is None and own)
        if not differ and not stale:
            return repository
        reasons = [f"{k}={v} (was {current.get(k, 'unset')})" for k, v in differ.items()]
        if stale:
            reasons.append(f"{models_dir} or the serving code changed since it was built")
        print(f"rebuilding {repository}: " + ", ".join(reasons), flush=True)
    missing = [name for name in MODEL_FILES if not (models_dir / name).is_file()]
    if missing:
        raise RepositoryError(
            f"no model repository at {repository} (or one with other limits), and {models_dir} "
            f"lacks {', '.join(missing)} to build one from (train and export the models, or "
            "pass --models-dir / --model-repository)"
        )
    # A limit not asked for keeps its current value, unless the user asked for a fresh build.
    chosen = {**({} if rebuild else current), **wanted}
    defaults = ServingOptions()
    options = ServingOptions(
        max_pixels=chosen.get(contract.MAX_PIXELS, defaults.max_pixels),
        max_hands=chosen.get(contract.MAX_HANDS, defaults.max_hands),
        max_image_bytes=chosen.get(contract.MAX_BYTES, defaults.max_image_bytes),
    )
    print(f"building the cpu model repository {repository} from {models_dir} ...", flush=True)
    return build_repository("cpu", models_dir, repository, options)
