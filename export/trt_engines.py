"""TensorRT engines for the ``tensorrt`` flavour of the model repository: the pure parts.

Everything here is derived from the model configs of ``gesture_recognition.serving.configs``
(the one source of truth): the optimisation profiles (min/opt/max shapes), the ``trtexec``
command lines, the per-compute-capability engine file names (Triton's ``cc_model_filenames``)
and the lookup of a TensorRT installation. Nothing in this module needs TensorRT or a GPU, so it
is unit-tested on the CPU machines; the build itself (``export/build_engines.py``) runs inside
the NGC Triton container on a GPU host.

Engines are always built from the ONNX files (``trtexec --onnx`` or the TensorRT ONNX parser).
Never use ultralytics' ``.engine`` export: it prepends a JSON metadata header to the serialized
engine, which Triton's ``tensorrt_plan`` backend cannot deserialize.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from tritonclient.grpc.model_config_pb2 import ModelConfig

from gesture_recognition.artifacts import DetectorSpec

# Engine file names live with the configs that point at them (serving.configs).
from gesture_recognition.serving.configs import (
    ServingOptions,
    engine_filename,
)
from gesture_recognition.serving.contract import HAND_CROPS, HAND_DETECTOR, MAX_HANDS

# The Triton release the engines must be built with: an engine only loads in the TensorRT
# version that built it, so build in the same NGC container release the server runs.
TRITON_RELEASE = "24.10"
TRITON_IMAGE = f"nvcr.io/nvidia/tritonserver:{TRITON_RELEASE}-py3"
# Where the NGC Triton container ships trtexec (it is not on PATH there).
CONTAINER_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"
PRECISIONS = ("fp16", "fp32", "int8")
DEFAULT_PRECISION = "fp16"
DEFAULT_WORKSPACE_MB = 4096
# Typical number of hands in a photo: the classifier's most frequent crop batch.
CLASSIFIER_OPT_CROPS = 4
DOCKER_COMMAND = (
    'docker run --rm --gpus all -v "$PWD":/workspace -w /workspace '
    f"{TRITON_IMAGE} bash -c "
    "'pip install -e . && "
    f"python export/build_engines.py --target tensorrt --trtexec {CONTAINER_TRTEXEC}'"
)

Shape = tuple[int, ...]
Profile = dict[str, tuple[Shape, Shape, Shape]]


class TensorRTUnavailableError(RuntimeError):
    """No TensorRT on this machine: engines have to be built in the NGC Triton container."""

    def __init__(self, detail: str | None = None) -> None:
        message = (
            "TensorRT is not available here (no trtexec on PATH or at "
            f"{CONTAINER_TRTEXEC}, and no 'tensorrt' Python module). TensorRT cannot be "
            "installed on CPU-only machines, and an engine only loads in the TensorRT version "
            "that built it, so build the engines on the GPU host inside the NGC Triton "
            f"container of the same release as the server ({TRITON_IMAGE}, which ships "
            f"{CONTAINER_TRTEXEC}):\n  {DOCKER_COMMAND}\n"
            "(use --dry-run to print the trtexec commands and configs without TensorRT)"
        )
        if detail:
            message = f"{detail}\n{message}"
        super().__init__(message)


# --------------------------------------------------------------------------- profiles


def optimization_profile(
    model_config: ModelConfig,
    opt: int | None = None,
    *,
    max_hands: int | None = None,
    spatial: tuple[int, int] | None = None,
) -> Profile:
    """``input name -> (min, opt, max)`` shapes of one model's TensorRT optimisation profile.

    A batching model (``max_batch_size > 0``, dims without the batch axis) gets a batch axis
    ``1 / opt / max_batch_size`` with ``opt`` defaulting to ``max(1, max_batch_size // 2)``.
    A model that does not batch but takes a variable first dimension (the classifier: the hand
    crops of one photo) gets ``1 / opt / max_hands`` with ``opt`` defaulting to 4 (capped at
    ``max_hands``); ``max_hands`` defaults to ``ServingOptions().max_hands`` — pass the value of
    the build (``engine_profiles`` reads it from the configs). ``spatial = (low, high)`` bounds
    any other wildcard dimension (the detector's canvas when it follows the photo's aspect,
    ``DetectorSpec.letterbox_stride``): ``low`` in the min shape, ``high`` in opt and max.
    Without it such a wildcard raises ValueError.
    """
    if model_config.platform == "ensemble" or model_config.backend == "python":
        raise ValueError(f"{model_config.name} is not a TensorRT model")
    batching = model_config.max_batch_size > 0
    if batching:
        low, high = 1, model_config.max_batch_size
        default_opt = max(1, high // 2)
    else:
        high = max_hands if max_hands is not None else ServingOptions().max_hands
        if high < 1:
            raise ValueError(f"max_hands must be at least 1, got {high}")
        low, default_opt = 1, min(CLASSIFIER_OPT_CROPS, high)
    middle = default_opt if opt is None else opt
    if not low <= middle <= high:
        raise ValueError(f"{model_config.name}: opt {middle} is outside {low}..{high}")

    profile: Profile = {}
    for tensor in model_config.input:
        dims = tuple(tensor.dims)
        if not batching:
            if not dims or dims[0] != -1:
                # Fully static input: one shape for min/opt/max.
                if any(d < 1 for d in dims):
                    raise ValueError(f"{model_config.name}.{tensor.name}: dims {list(dims)}")
                shape = tuple(dims)
                profile[tensor.name] = (shape, shape, shape)
                continue
            dims = dims[1:]
        if any(d < 1 for d in dims) and spatial is None:
            raise ValueError(
                f"{model_config.name}.{tensor.name}: dims {list(tensor.dims)} have a wildcard "
                "that no optimisation profile bounds (only the first dimension may vary)"
            )
        if spatial is not None and not 1 <= spatial[0] <= spatial[1]:
            raise ValueError(f"spatial bounds must be 1 <= low <= high, got {spatial}")
        small = tuple(d if d > 0 else spatial[0] for d in dims) if spatial else tuple(dims)
        large = tuple(d if d > 0 else spatial[1] for d in dims) if spatial else tuple(dims)
        profile[tensor.name] = ((low, *small), (middle, *large), (high, *large))
    return profile


def engine_profiles(
    configs: Mapping[str, ModelConfig],
    opt: Mapping[str, int] | None = None,
    detector: DetectorSpec | None = None,
) -> dict[str, Profile]:
    """Profiles of every TensorRT model (``platform: tensorrt_plan``) of a repository.

    The crop limit comes from the ``MAX_HANDS`` parameter of ``hand_crops`` (what the server
    will really send), falling back to ``ServingOptions().max_hands``. ``detector`` bounds the
    detector's canvas (``letterbox_stride`` .. ``imgsz``) when it follows the photo's aspect.
    """
    max_hands = ServingOptions().max_hands
    crops = configs.get(HAND_CROPS)
    if crops is not None and MAX_HANDS in crops.parameters:
        max_hands = int(crops.parameters[MAX_HANDS].string_value)
    opt = opt or {}
    return {
        name: optimization_profile(
            config,
            opt.get(name),
            max_hands=max_hands,
            spatial=(
                (detector.min_side, detector.imgsz)
                if detector is not None and name == HAND_DETECTOR
                else None
            ),
        )
        for name, config in configs.items()
        if config.platform == "tensorrt_plan"
    }


def _shape_arg(profile: Profile, which: int) -> str:
    return ",".join(
        f"{name}:{'x'.join(str(d) for d in shapes[which])}" for name, shapes in profile.items()
    )


# --------------------------------------------------------------------------- trtexec


def trtexec_command(
    onnx_path: str | Path,
    engine_path: str | Path,
    profile: Profile,
    precision: str = DEFAULT_PRECISION,
    calib_cache: str | Path | None = None,
    workspace_mb: int = DEFAULT_WORKSPACE_MB,
    trtexec: str = "trtexec",
) -> list[str]:
    """The ``trtexec`` argument list that builds one engine from an ONNX file."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if workspace_mb < 1:
        raise ValueError(f"workspace_mb must be at least 1, got {workspace_mb}")
    if not profile:
        raise ValueError("an optimisation profile needs at least one input")
    if precision == "int8" and calib_cache is None:
        # Without a calibration cache trtexec uses placeholder scales: fast, wrong results.
        raise ValueError("int8 needs a calibration cache (calibrate on real crops first)")
    if precision != "int8" and calib_cache is not None:
        raise ValueError("a calibration cache only applies to int8")
    command = [
        trtexec,
        f"--onnx={onnx_path}",
        f"--saveEngine={engine_path}",
        f"--minShapes={_shape_arg(profile, 0)}",
        f"--optShapes={_shape_arg(profile, 1)}",
        f"--maxShapes={_shape_arg(profile, 2)}",
        # Default unit MiB (the --workspace flag is gone in TensorRT 10).
        f"--memPoolSize=workspace:{workspace_mb}",
        # Build only; timing the engine is the benchmark's job.
        "--skipInference",
    ]
    if precision == "fp16":
        command.append("--fp16")
    elif precision == "int8":
        # FP16 stays enabled so layers without an INT8 kernel fall back to FP16, not FP32.
        command += ["--int8", "--fp16", f"--calib={calib_cache}"]
    return command


# --------------------------------------------------------------------------- file names

# --------------------------------------------------------------------------- discovery


def find_tensorrt(trtexec: str | None = None) -> str | None:
    """Where TensorRT is: the ``trtexec`` path, ``"tensorrt"`` when only the Python module is
    importable, or None.

    ``trtexec`` (an explicit path or name) is checked first, then ``trtexec`` on PATH, then the
    NGC container's ``/usr/src/tensorrt/bin/trtexec``.
    """
    candidates = [trtexec] if trtexec else ["trtexec", CONTAINER_TRTEXEC]
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
    if trtexec:
        return None
    if importlib.util.find_spec("tensorrt") is not None:
        return "tensorrt"
    return None


def require_tensorrt(trtexec: str | None = None) -> str:
    found = find_tensorrt(trtexec)
    if found is None:
        detail = f"trtexec not found at {trtexec!r}." if trtexec else None
        raise TensorRTUnavailableError(detail)
    return found


def gpu_compute_capabilities() -> list[str]:
    """Compute capabilities of the visible GPUs (``nvidia-smi``), empty when none answer."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        result = subprocess.run(
            [smi, "--query-gpu=compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if result.returncode != 0:
        return []
    found: list[str] = []
    for line in result.stdout.splitlines():
        cc = line.strip()
        if _is_compute_capability(cc) and cc not in found:
            found.append(cc)
    return found


def _is_compute_capability(text: str) -> bool:
    try:
        engine_filename(text)
    except ValueError:
        return False
    return True


def build_with_api(
    onnx_path: str | Path,
    engine_path: str | Path,
    profile: Profile,
    precision: str = DEFAULT_PRECISION,
    workspace_mb: int = DEFAULT_WORKSPACE_MB,
) -> None:
    """Build an engine with the TensorRT Python API (when there is no ``trtexec``).

    INT8 needs a calibrator over real crops, which is not wired here: use ``trtexec --calib``.
    """
    if precision == "int8":
        raise ValueError("int8 through the Python API is not supported: use trtexec --calib")
    import tensorrt as trt  # only inside the NGC container / on a GPU host

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # TensorRT < 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    trt_profile = builder.create_optimization_profile()
    for name, (low, middle, high) in profile.items():
        trt_profile.set_shape(name, low, middle, high)
    config.add_optimization_profile(trt_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}")
    Path(engine_path).write_bytes(bytes(serialized))
