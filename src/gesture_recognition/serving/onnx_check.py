"""The checks of the configs against the ONNX files they serve: tensor names, types, shapes,
batching and the class count. The build refuses to write a repository that disagrees."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gesture_recognition.artifacts import ClassifierSpec, DetectorSpec
from gesture_recognition.serving.configs import Step

_ORT_TYPES = {
    "tensor(float)": "FP32",
    "tensor(float16)": "FP16",
    "tensor(double)": "FP64",
    "tensor(uint8)": "UINT8",
    "tensor(int8)": "INT8",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(bool)": "BOOL",
    "tensor(string)": "BYTES",
}
Signature = dict[str, tuple[str, tuple[int, ...]]]


@dataclass(frozen=True)
class OnnxSignature:
    """Names, Triton dtypes and shapes (``-1`` for a symbolic dimension) of an ONNX file."""

    inputs: Signature
    outputs: Signature


def onnx_signature(path: Path) -> OnnxSignature:
    # ONNX Runtime (a serving dependency) rather than the ``onnx`` package (a training one).
    from gesture_recognition.runtime import make_session

    session = make_session(path, threads=1)

    def describe(args: Iterable[Any]) -> Signature:
        out: Signature = {}
        for arg in args:  # onnxruntime NodeArg: name, type ("tensor(float)"), shape
            dims = tuple(d if isinstance(d, int) and d > 0 else -1 for d in arg.shape)
            out[str(arg.name)] = (_ORT_TYPES.get(arg.type, str(arg.type)), dims)
        return out

    return OnnxSignature(describe(session.get_inputs()), describe(session.get_outputs()))


def check_against_onnx(step: Step, signature: OnnxSignature, source: str) -> list[str]:
    """Disagreements between a network's declaration and its ONNX file (empty if none)."""
    problems: list[str] = []
    where = f"{step.name} vs {source}"
    declared_inputs = {t.name for t in step.inputs}
    if declared_inputs != set(signature.inputs):
        problems.append(
            f"{where}: config inputs {sorted(declared_inputs)} but the ONNX file takes "
            f"{sorted(signature.inputs)}"
        )
    batch = (-1,) if step.max_batch_size > 0 else ()
    checks = [(t, signature.inputs, "input") for t in step.inputs]
    checks += [(t, signature.outputs, "output") for t in step.outputs]
    for tensor, table, kind in checks:
        if tensor.name not in table:
            if kind == "output":
                problems.append(
                    f"{where}: output {tensor.name!r} is not an ONNX output "
                    f"({sorted(signature.outputs)})"
                )
            continue
        dtype, onnx_dims = table[tensor.name]
        if dtype != tensor.data_type:
            problems.append(f"{where}: {tensor.name} is {tensor.data_type} but ONNX has {dtype}")
        dims = (*batch, *tensor.dims)
        if len(dims) != len(onnx_dims):
            problems.append(
                f"{where}: {tensor.name} has shape {list(dims)} but ONNX has {list(onnx_dims)}"
            )
            continue
        if step.max_batch_size > 1 and onnx_dims[0] != -1:
            problems.append(
                f"{where}: max_batch_size {step.max_batch_size} needs a dynamic batch "
                f"dimension, but ONNX fixes it to {onnx_dims[0]}"
            )
        for axis, (want, have) in enumerate(zip(dims, onnx_dims, strict=True)):
            # A config wildcard over a fixed ONNX dimension would accept inputs the model
            # rejects at run time; for outputs it only describes what comes back.
            if have != -1 and want != have and (want != -1 or kind == "input"):
                problems.append(
                    f"{where}: {tensor.name} axis {axis} is {want} in the config but "
                    f"{have} in the ONNX file"
                )
    return problems


def check_classes(spec: ClassifierSpec, signature: OnnxSignature) -> list[str]:
    """The classifier predicts as many classes as its label map lists."""
    logits = signature.outputs.get(spec.output_name)
    count = spec.label_map.num_classes
    if logits and logits[1][-1] not in (-1, count):
        return [
            f"classifier predicts {logits[1][-1]} classes but its label map "
            f"{spec.label_map.name!r} lists {count}"
        ]
    return []


def detections_in(signature: OnnxSignature, spec: DetectorSpec) -> int | None:
    """Rows per photo of the detector's output (its ``max_det``), when the file fixes it."""
    entry = signature.outputs.get(spec.output_name)
    if entry is None or len(entry[1]) != 3 or entry[1][1] <= 0:
        return None
    return entry[1][1]
