"""Test-time horizontal flip inside a classifier's ONNX graph.

The batch and its mirror image run through the same network as one batch of 2N; every
output (the logits, the verifier's hand probability) is the mean of a crop's two rows. The
flip lives in the graph so that the pipeline, the Triton ensemble and TensorRT serve it
without a line of code: the inputs and outputs keep their names and shapes.

Editing a flipped graph (the verifier's features, a new verifier) starts from
:func:`strip_flip`, the classifier as trained, and flips again at the end.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx

from gesture_recognition.artifacts import (
    CLASSIFIER_JSON,
    CLASSIFIER_ONNX,
    read_classifier_spec,
    write_spec,
)

PREFIX = "flip_tta."
# Where the network's own input and outputs go inside a flipped graph.
INNER_INPUT = PREFIX + "both"
INNER_OUTPUT = PREFIX + "both."
_INT64_MIN = np.iinfo(np.int64).min


def has_flip(model: onnx.ModelProto) -> bool:
    return any(n.name.startswith(PREFIX) for n in model.graph.node)


def _const(name: str, values: list[int]) -> onnx.TensorProto:
    return onnx.numpy_helper.from_array(np.array(values, np.int64), PREFIX + name)


def add_flip(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` ([N, 3, H, W] -> outputs [N, ...]) that answers the mean of its
    outputs on each image and on the image mirrored left to right."""
    if has_flip(model):
        raise ValueError("the classifier already averages over a flip")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    if len(graph.input) != 1:
        raise ValueError(f"expected one graph input, got {len(graph.input)}")
    image = graph.input[0].name
    outputs = [o.name for o in graph.output]
    renamed = {image: INNER_INPUT, **{o: INNER_OUTPUT + o for o in outputs}}
    for node in graph.node:
        node.input[:] = [renamed.get(x, x) for x in node.input]
        node.output[:] = [renamed.get(x, x) for x in node.output]
    graph.initializer.extend(
        [
            _const("starts", [-1]),
            _const("ends", [int(_INT64_MIN)]),
            _const("axes", [3]),
            _const("steps", [-1]),
            _const("pairs", [2, -1]),
        ]
    )
    head = [
        onnx.helper.make_node(
            "Slice",
            [image, PREFIX + "starts", PREFIX + "ends", PREFIX + "axes", PREFIX + "steps"],
            [PREFIX + "mirrored"],
            name=PREFIX + "mirror",
        ),
        onnx.helper.make_node(
            "Concat", [image, PREFIX + "mirrored"], [INNER_INPUT], axis=0, name=PREFIX + "concat"
        ),
    ]
    opset = max(o.version for o in out.opset_import if o.domain in ("", "ai.onnx"))
    tail = [node for name in outputs for node in _pair_mean(name, opset)]
    if opset >= 18:  # ReduceMean takes its axes as an input from opset 18 on
        graph.initializer.append(_const("pair_axis", [0]))
    nodes = head + list(graph.node) + tail
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(out)
    return out


def _pair_mean(name: str, opset: int) -> list[onnx.NodeProto]:
    """``flip_tta.both.<name>`` [2N, ...] -> ``<name>`` [N, ...]: the mean of rows i and N + i."""
    inner, stem = INNER_OUTPUT + name, PREFIX + name
    make = onnx.helper.make_node
    if opset >= 18:
        mean = make(
            "ReduceMean",
            [stem + ".pairs", PREFIX + "pair_axis"],
            [name],
            keepdims=0,
            name=stem + ".mean",
        )
    else:
        mean = make(
            "ReduceMean", [stem + ".pairs"], [name], axes=[0], keepdims=0, name=stem + ".mean"
        )
    return [
        make("Shape", [inner], [stem + ".dims"], start=1, name=stem + ".dims"),
        make("Concat", [PREFIX + "pairs", stem + ".dims"], [stem + ".pair_shape"], axis=0,
             name=stem + ".pair_shape"),
        make("Reshape", [inner, stem + ".pair_shape"], [stem + ".pairs"], name=stem + ".pairs"),
        mean,
    ]  # fmt: skip


def strip_flip(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` without what :func:`add_flip` added: the classifier as trained."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    if not has_flip(out):
        return out
    graph = out.graph
    image = graph.input[0].name
    outputs = {INNER_OUTPUT + o.name: o.name for o in graph.output}
    renamed = {INNER_INPUT: image, **outputs}
    kept = [n for n in graph.node if not n.name.startswith(PREFIX)]
    for node in kept:
        node.input[:] = [renamed.get(x, x) for x in node.input]
        node.output[:] = [renamed.get(x, x) for x in node.output]
    weights = [w for w in graph.initializer if not w.name.startswith(PREFIX)]
    del graph.node[:], graph.initializer[:]
    graph.node.extend(kept)
    graph.initializer.extend(weights)
    onnx.checker.check_model(out)
    return out


def flip_classifier(classifier_dir: str | Path, out_dir: str | Path) -> Path:
    """Copy a classifier folder (ONNX + JSON) with the flip in its graph; the JSON records it
    (``test_time_flip``: for people, the graph is what serves)."""
    src, dst = Path(classifier_dir), Path(out_dir)
    if dst.resolve() == src.resolve():  # keep the plain classifier: a flip is a copy
        raise ValueError(f"--out must be another folder than {src}")
    spec = read_classifier_spec(src / CLASSIFIER_JSON)
    model = add_flip(onnx.load(str(src / CLASSIFIER_ONNX)))
    dst.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst / CLASSIFIER_ONNX))
    write_spec(replace(spec, test_time_flip=True), dst / CLASSIFIER_JSON)
    return dst
