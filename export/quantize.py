"""Static INT8 quantisation of the two models for CPU serving, calibrated on real data.

Only QOperator-format static INT8 is offered: on this project's CPU hosts (AVX2, no VNNI)
QDQ-format and dynamic INT8 were slower than FP32 (batch-1 ms, FP32 / QDQ / QOperator: yolo11n
at 320 px 13.2 / 24.5 / 9.2, resnet18 at 160 px 10.5 / 10.9 / 5.6; dynamic INT8 slower
everywhere). The
calibration crops and the verification crops come from one crop manifest (``gesture-train
crops``), from different splits, so the verification numbers are on crops the calibration never
saw. A quantised file is only written when it agrees with the FP32 model on those crops
(:meth:`QuantVerification.check`); the measured speed and accuracy behind the choice of the
defaults are in ``reports/cpu_speedups/REPORT.md``. The detector keeps its YOLO head float
(:func:`detector_head_nodes`) and is verified by mAP on labelled photos (:func:`verify_detector`).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gesture_recognition.artifacts import ClassifierSpec
from gesture_recognition.classifier_input import crops_to_batch
from gesture_recognition.export.onnx_export import VerificationError
from gesture_recognition.images import InvalidImageError, load_image

CALIBRATION_SPLITS = ("train",)
VERIFICATION_SPLITS = ("val", "test")
# Limits of the build's INT8 verification (on the held-out val + test crops): a guard against a
# broken quantisation, not the adoption criterion. Measured for the shipped classifier: 0.935
# agreement (4 of 62 crops flip, all low-confidence ones) and 0.30 max softmax difference; a
# per-tensor or all-layers variant fell to 0.73-0.87 and a wrong model agrees at chance level.
DEFAULT_MIN_AGREEMENT = 0.90
DEFAULT_MAX_PROB_DIFF = 0.40
# Stricter bar for making INT8 the default (``int8_decision``).
ADOPT_MIN_AGREEMENT = 0.95
# The INT8 detector may lose at most this much mAP50 or mAP50-95 on labelled real photos
# (measured on SubhiH test: 0.000 / 0.001).
DEFAULT_MAX_MAP_DROP = 0.01
DETECTOR_CALIBRATION_PHOTOS = 64
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


class CalibrationDataError(ValueError):
    """No usable calibration or verification crops."""


# ------------------------------------------------------------------------------------ crops


def manifest_crops(
    crops_dir: str | Path, splits: Sequence[str], limit: int | None = None
) -> list[Path]:
    """Crop files of the given manifest splits, in manifest order (every label counts: the
    calibration needs activation ranges, not labels)."""
    from gesture_recognition.training.evaluate import read_crop_manifest

    root = Path(crops_dir)
    paths = [root / row["path"] for row in read_crop_manifest(root) if row["split"] in splits]
    return paths[:limit] if limit is not None else paths


def crop_inputs(
    paths: Sequence[Path], spec: ClassifierSpec, what: str = "crops"
) -> NDArray[np.float32]:
    """Crop files -> ``[N, 3, S, S]`` by the serving preprocessing (unreadable ones skipped)."""
    crops = []
    for path in paths:
        try:
            crops.append(load_image(path))
        except (InvalidImageError, OSError):
            continue
    if not crops:
        raise CalibrationDataError(f"no readable {what} among {len(paths)} files")
    return crops_to_batch(crops, spec.input_size, spec.mean, spec.std)


def split_inputs(
    crops_dir: str | Path, spec: ClassifierSpec, splits: Sequence[str], limit: int | None = None
) -> NDArray[np.float32]:
    paths = manifest_crops(crops_dir, splits, limit)
    if not paths:
        raise CalibrationDataError(
            f"the crop manifest in {crops_dir} has no crop in split(s) {', '.join(splits)}"
        )
    return crop_inputs(paths, spec, f"{'/'.join(splits)} crops in {crops_dir}")


# ------------------------------------------------------------------------------ quantisation


def _calibration_reader(input_name: str, inputs: NDArray[np.float32], batch: int = 1) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches: Iterator[dict[str, NDArray[np.float32]]] = iter(
                {input_name: inputs[i : i + batch]} for i in range(0, len(inputs), batch)
            )

        def get_next(self) -> dict[str, NDArray[np.float32]] | None:
            return next(self._batches, None)

    return _Reader()


@dataclass(frozen=True)
class QuantSettings:
    """How a model is quantised (recorded in the build report)."""

    per_channel: bool = True
    # AVX2 without VNNI multiplies u8 x s8 with 16-bit intermediate sums that can saturate;
    # reduce_range (7-bit weights) avoids that at a small accuracy cost. Chosen by measurement.
    reduce_range: bool = True
    # The first layer (sees the raw image) and the last (the logits) are the most sensitive to
    # rounding and cost little time; keeping them float measurably raised agreement with FP32.
    float_edges: bool = True
    method: str = "minmax"

    def describe(self) -> str:
        return (
            f"static INT8, QOperator, u8 activations / s8 weights, "
            f"{'per-channel' if self.per_channel else 'per-tensor'}, "
            f"reduce_range={self.reduce_range}, "
            f"{'first and last layer float' if self.float_edges else 'all layers'}, "
            f"calibration {self.method}"
        )


def edge_nodes(model_path: str | Path) -> list[str]:
    """Names of the nodes that read a graph input or write a graph output."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    inputs = {i.name for i in graph.input} - initializers
    outputs = {o.name for o in graph.output}
    return [
        n.name for n in graph.node if n.name and (inputs & set(n.input) or outputs & set(n.output))
    ]


def quantize_model(
    fp32_path: str | Path,
    out_path: str | Path,
    input_name: str,
    calibration: NDArray[np.float32],
    settings: QuantSettings = QuantSettings(),
    nodes_to_exclude: Sequence[str] = (),
) -> Path:
    """Static QOperator INT8 copy of an FP32 ONNX model, calibrated on ``calibration``."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if settings.method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}")
    if len(calibration) == 0:
        raise CalibrationDataError("no calibration inputs")
    method = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }[settings.method]
    exclude = list(nodes_to_exclude)
    if settings.float_edges:
        exclude += [n for n in edge_nodes(fp32_path) if n not in exclude]
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # The calibrator writes an augmented copy of the model; keep it out of the repository.
        staged = Path(tmp) / "model.int8.onnx"
        quantize_static(
            str(fp32_path),
            str(staged),
            _calibration_reader(input_name, calibration.astype(np.float32)),
            quant_format=QuantFormat.QOperator,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=settings.per_channel,
            reduce_range=settings.reduce_range,
            calibrate_method=method,
            nodes_to_exclude=exclude,
            extra_options={"CalibTensorRangeSymmetric": False},
        )
        shutil.copyfile(staged, out)
    return out


# ------------------------------------------------------------------------------ verification


def _softmax(logits: NDArray[np.float32]) -> NDArray[np.float32]:
    from gesture_recognition.decision import softmax

    return np.asarray(softmax(logits), dtype=np.float32)


@dataclass(frozen=True)
class QuantVerification:
    """How far a quantised classifier is from its FP32 original on the same inputs."""

    top1_agreement: float
    max_prob_diff: float
    mean_prob_diff: float
    max_logit_diff: float
    samples: int

    def check(
        self,
        min_agreement: float = DEFAULT_MIN_AGREEMENT,
        max_prob_diff: float = DEFAULT_MAX_PROB_DIFF,
    ) -> None:
        if self.samples == 0:
            raise VerificationError("INT8 verification ran on no input")
        if self.top1_agreement < min_agreement or self.max_prob_diff > max_prob_diff:
            raise VerificationError(
                f"INT8 classifier differs from FP32 on {self.samples} real crops: top-1 "
                f"agreement {self.top1_agreement:.3f} (need >= {min_agreement:.3f}), max "
                f"softmax difference {self.max_prob_diff:.3f} (limit {max_prob_diff:.3f})"
            )

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def compare_classifiers(
    reference: str | Path,
    candidate: str | Path,
    spec: ClassifierSpec,
    inputs: NDArray[np.float32],
    chunk: int = 16,
) -> QuantVerification:
    """Top-1 agreement and softmax / logit differences of two ONNX classifiers on ``inputs``."""
    from gesture_recognition.runtime import make_session

    ref_session, cand_session = make_session(reference), make_session(candidate)
    agree, prob_diffs, logit_diffs = 0, [], []
    for start in range(0, len(inputs), chunk):
        x = np.ascontiguousarray(inputs[start : start + chunk], dtype=np.float32)
        (ref,) = ref_session.run([spec.output_name], {spec.input_name: x})
        (got,) = cand_session.run([spec.output_name], {spec.input_name: x})
        agree += int((ref.argmax(1) == got.argmax(1)).sum())
        prob_diffs.append(np.abs(_softmax(ref) - _softmax(got)).max(axis=1))
        logit_diffs.append(float(np.abs(ref - got).max()))
    if not prob_diffs:
        return QuantVerification(0.0, 0.0, 0.0, 0.0, 0)
    per_input = np.concatenate(prob_diffs)
    return QuantVerification(
        top1_agreement=agree / len(inputs),
        max_prob_diff=float(per_input.max()),
        mean_prob_diff=float(per_input.mean()),
        max_logit_diff=max(logit_diffs),
        samples=len(inputs),
    )


def quantize_classifier_verified(
    fp32_path: str | Path,
    out_path: str | Path,
    spec: ClassifierSpec,
    calibration: NDArray[np.float32],
    verification: NDArray[np.float32],
    settings: QuantSettings = QuantSettings(),
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    max_prob_diff: float = DEFAULT_MAX_PROB_DIFF,
) -> QuantVerification:
    """Quantise, compare with FP32 on ``verification`` and write ``out_path`` only if it passes.

    Raises :class:`VerificationError` (and leaves ``out_path`` untouched) otherwise.
    """
    out = Path(out_path)
    with tempfile.TemporaryDirectory() as tmp:
        candidate = quantize_model(
            fp32_path, Path(tmp) / out.name, spec.input_name, calibration, settings
        )
        result = compare_classifiers(fp32_path, candidate, spec, verification)
        result.check(min_agreement, max_prob_diff)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(candidate, out)
    return result


# ---------------------------------------------------------------------------------- decision


@dataclass(frozen=True)
class Decision:
    adopt: bool
    reasons: tuple[str, ...]


def int8_decision(
    fp32_metrics: dict[str, Any],
    int8_metrics: dict[str, Any],
    fp32_ms: float,
    int8_ms: float,
    agreement: float,
    *,
    min_speedup: float = 1.10,
    max_metric_drop: float = 0.0,
    min_agreement: float = ADOPT_MIN_AGREEMENT,
) -> Decision:
    """Whether INT8 becomes the default: faster by ``min_speedup`` AND no held-out accuracy or
    macro-F1 loss beyond ``max_metric_drop`` AND top-1 agreement >= ``min_agreement``.

    ``*_metrics`` are ``evaluate_classifier`` results (``accuracy``, ``macro_f1``); the
    latencies are medians of an interleaved A/B measurement.
    """
    reasons, adopt = [], True
    speedup = fp32_ms / int8_ms if int8_ms > 0 else 0.0
    if speedup < min_speedup:
        adopt = False
        reasons.append(f"speed-up {speedup:.2f}x is below the required {min_speedup:.2f}x")
    else:
        reasons.append(f"speed-up {speedup:.2f}x ({fp32_ms:.2f} -> {int8_ms:.2f} ms)")
    for key in ("accuracy", "macro_f1"):
        drop = float(fp32_metrics[key]) - float(int8_metrics[key])
        if drop > max_metric_drop:
            adopt = False
            reasons.append(
                f"held-out {key} drops by {drop:.3f} ({fp32_metrics[key]:.3f} -> "
                f"{int8_metrics[key]:.3f}; allowed {max_metric_drop:.3f})"
            )
        else:
            reasons.append(f"held-out {key} {fp32_metrics[key]:.3f} -> {int8_metrics[key]:.3f}")
    if agreement < min_agreement:
        adopt = False
        reasons.append(f"top-1 agreement {agreement:.3f} is below {min_agreement:.3f}")
    else:
        reasons.append(f"top-1 agreement {agreement:.3f}")
    return Decision(adopt, tuple(reasons))


# ---------------------------------------------------------------------------------- detector


def detector_head_nodes(model_path: str | Path) -> list[str]:
    """Nodes of an ultralytics export's last module (``/model.<last>/...``): the detection head.

    Quantising the head's box/score convolutions and its decoding destroys the scores
    (measured on yolo11n when the detector was chosen), so these always stay float.
    """
    import re

    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    pattern = re.compile(r"^/model\.(\d+)/")
    indices = {int(m.group(1)) for n in graph.node if (m := pattern.match(n.name))}
    if not indices:
        raise ValueError(f"{model_path} has no /model.N/ nodes: not an ultralytics export")
    prefix = f"/model.{max(indices)}/"
    return [n.name for n in graph.node if n.name.startswith(prefix)]


def detector_inputs(photos: Sequence[Path], imgsz: int) -> NDArray[np.float32]:
    """Photos -> letterboxed ``[N, 3, S, S]`` detector inputs (the serving letterbox).

    Always the square canvas, so that photos of any aspect stack into one batch: calibration
    and verification see the same network on the same content, only with more grey padding
    than a ``letterbox_stride`` spec serves with."""
    from gesture_recognition.letterbox import letterbox, to_detector_tensor

    batches = []
    for path in photos:
        try:
            canvas, _ = letterbox(load_image(path), imgsz)
        except (InvalidImageError, OSError):
            continue
        batches.append(to_detector_tensor(canvas))
    if not batches:
        raise CalibrationDataError(f"no readable photo among {len(photos)} files")
    return np.concatenate(batches)


@dataclass(frozen=True)
class DetectorVerification:
    """mAP of the FP32 and the INT8 detector on the same labelled real photos."""

    fp32_map50: float
    int8_map50: float
    fp32_map50_95: float
    int8_map50_95: float
    photos: int

    def check(self, max_drop: float) -> None:
        drops = {
            "mAP50": self.fp32_map50 - self.int8_map50,
            "mAP50-95": self.fp32_map50_95 - self.int8_map50_95,
        }
        bad = {k: v for k, v in drops.items() if v > max_drop}
        if self.photos == 0 or bad:
            detail = ", ".join(f"{k} drops by {v:.3f}" for k, v in bad.items()) or "no photo"
            raise VerificationError(
                f"INT8 detector is worse than FP32 on {self.photos} labelled real photos: "
                f"{detail} (limit {max_drop:.3f})"
            )


def verify_detector(
    fp32_dir: Path, int8_dir: Path, data_yaml: str | Path, split: str
) -> DetectorVerification:
    """mAP (``training.evaluate.evaluate_detector``) of both model folders on one split."""
    from gesture_recognition.training.evaluate import evaluate_detector

    fp32 = evaluate_detector(fp32_dir, data_yaml, split)
    int8 = evaluate_detector(int8_dir, data_yaml, split)
    return DetectorVerification(
        fp32["map50"], int8["map50"], fp32["map50_95"], int8["map50_95"], int(fp32["images"])
    )
