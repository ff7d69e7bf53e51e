"""Serve a classifier of a finer label map in a coarser one: its probabilities summed.

The HaGRID classifier (``hagrid``: 12 gestures, ``no_gesture``, ``other_gesture``) is trained
once; the MachinesCanSee classifier (``mcs2021``) is the same network with one more step,
``log(softmax(logits) @ M)``, where ``M`` is the coarse map's merge (``LabelMap.merges``: every
HaGRID class named, e.g. ``peace -> victory``, ``palm -> no_gesture``). The served softmax of
those logits is exactly the summed probabilities, so the served model needs no other change:
same input, same spec fields, a ``[N, K_coarse]`` output.

Training the fine classes and merging them is sound (the probability of "some other gesture" is
the sum of the other gestures' probabilities) and lets the merge be decided, measured and
changed without retraining: how ``palm`` and ``stop_inverted`` answer is one line of
``label_maps/mcs2021.json``, and the prior the merge carries is one matrix in the served graph
(``remerge_served``: ``reports/classifier_merge/``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gesture_recognition.artifacts import ClassifierSpec
from gesture_recognition.labels import LabelMap, merge_weights

# The merge buffer's name in the exported graph (``MergedClassifier.merge``).
MERGE_INITIALIZER = "merge"
# log(0) guard: a class no fine class maps to (there is none today) would otherwise be -inf.
FLOOR = 1e-12


class MergedClassifier(nn.Module):
    """``model`` followed by ``log(softmax(logits) @ merge)``."""

    def __init__(self, model: nn.Module, merge: np.ndarray) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("merge", torch.from_numpy(np.asarray(merge, np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(self.model(x), dim=1)
        merge: torch.Tensor = self.merge  # type: ignore[assignment]
        return torch.log(torch.clamp(probs @ merge, min=FLOOR))


def merge_classifier(
    model: nn.Module, spec: ClassifierSpec, target: LabelMap, prior: str = "training"
) -> tuple[MergedClassifier, ClassifierSpec]:
    """The merged network and its spec (same input; ``target``'s classes)."""
    matrix = target.merge_matrix(spec.label_map, prior)
    merged = MergedClassifier(model.eval(), matrix).eval()
    return merged, replace(spec, label_map=target, merge_prior=prior)


def export_merged(
    checkpoint: Path,
    target: LabelMap,
    out_dir: Path,
    verify_inputs: np.ndarray | None = None,
    prior: str = "training",
) -> Path:
    """``gesture_classifier.onnx`` + ``.json`` of the checkpoint's classifier, merged into
    ``target``; verified against PyTorch like every exported classifier."""
    from gesture_recognition.export.onnx_export import export_classifier
    from gesture_recognition.training.classifier_checkpoint import load_trained_classifier

    model, spec = load_trained_classifier(checkpoint)
    merged, merged_spec = merge_classifier(model, spec, target, prior)
    path, _ = export_classifier(merged, merged_spec, out_dir, verify_inputs=verify_inputs)
    return path


def remerge_served(classifier_dir: Path, prior: str, out_dir: Path) -> Path:
    """A served merged classifier (``classifier_dir``, verifier and all) with its merge carrying
    ``prior`` instead: the graph's ``merge`` matrix is the only thing that changes. Which fine
    class goes where is read from the matrix itself (its non-zero entries), so the finer map
    need not be known here."""
    import onnx
    from onnx import numpy_helper

    from gesture_recognition.artifacts import (
        CLASSIFIER_JSON,
        CLASSIFIER_ONNX,
        read_classifier_spec,
        write_spec,
    )

    spec = read_classifier_spec(classifier_dir / CLASSIFIER_JSON)
    graph = onnx.load(str(classifier_dir / CLASSIFIER_ONNX))
    found = [i for i in graph.graph.initializer if i.name == MERGE_INITIALIZER]
    if len(found) != 1:
        raise ValueError(
            f"{classifier_dir / CLASSIFIER_ONNX} has no {MERGE_INITIALIZER!r} matrix: "
            "not a classifier served through a merge (gesture-train derive-classifier)"
        )
    old = numpy_helper.to_array(found[0])
    members = old > 0
    if (
        old.ndim != 2
        or old.shape[1] != spec.label_map.num_classes
        or (members.sum(axis=1) != 1).any()
    ):
        raise ValueError(
            f"the {MERGE_INITIALIZER!r} matrix {old.shape} does not send each fine class to one "
            f"of the {spec.label_map.num_classes} classes of {spec.label_map.name!r}"
        )
    matrix = merge_weights(members, prior)
    found[0].CopyFrom(numpy_helper.from_array(matrix, MERGE_INITIALIZER))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CLASSIFIER_ONNX
    onnx.save(graph, str(path))
    write_spec(replace(spec, merge_prior=prior), out_dir / CLASSIFIER_JSON)
    return path
