"""Tiny ONNX stand-ins of the two networks: enough for the checks of configs against files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


def tiny_detector(
    path: Path,
    input_name: str = "images",
    batch: int | str = "batch",
    size: int | str = "height",
    detections: int = 300,
) -> Path:
    """``images [B, 3, H, W] -> output0 [B, D, 6]`` (zeros), enough for signature checks."""
    shape = helper.make_node("Shape", [input_name], ["shape"])
    first = helper.make_node("Slice", ["shape", "zero", "one"], ["b"])
    cat = helper.make_node("Concat", ["b", "tail"], ["out_shape"], axis=0)
    fill = helper.make_node(
        "ConstantOfShape",
        ["out_shape"],
        ["output0"],
        value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0]),
    )
    graph = helper.make_graph(
        [shape, first, cat, fill],
        "detector",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch, detections, 6])],
        initializer=[
            helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
            helper.make_tensor("one", TensorProto.INT64, [1], [1]),
            helper.make_tensor("tail", TensorProto.INT64, [2], [detections, 6]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def tiny_classifier(
    path: Path, size: int = 160, classes: int = 7, batch: int | str = "batch"
) -> Path:
    """``input [B, 3, S, S] -> logits [B, K]``: channel means times a fixed matrix."""
    mean = helper.make_node("ReduceMean", ["input"], ["m"], axes=[2, 3], keepdims=0)
    matmul = helper.make_node("MatMul", ["m", "w"], ["logits"])
    weights = np.arange(3 * classes, dtype=np.float32).reshape(3, classes) / 10
    graph = helper.make_graph(
        [mean, matmul],
        "classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT, weights.shape, weights.ravel())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
