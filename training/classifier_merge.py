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
``label_maps/mcs2021.json``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gesture_recognition.artifacts import ClassifierSpec
from gesture_recognition.labels import LabelMap

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
    model: nn.Module, spec: ClassifierSpec, target: LabelMap
) -> tuple[MergedClassifier, ClassifierSpec]:
    """The merged network and its spec (same input; ``target``'s classes)."""
    matrix = target.merge_matrix(spec.label_map)
    merged = MergedClassifier(model.eval(), matrix).eval()
    return merged, replace(spec, label_map=target)


def export_merged(
    checkpoint: Path, target: LabelMap, out_dir: Path, verify_inputs: np.ndarray | None = None
) -> Path:
    """``gesture_classifier.onnx`` + ``.json`` of the checkpoint's classifier, merged into
    ``target``; verified against PyTorch like every exported classifier."""
    from gesture_recognition.export.onnx_export import export_classifier
    from gesture_recognition.training.classifier_checkpoint import load_trained_classifier

    model, spec = load_trained_classifier(checkpoint)
    merged, merged_spec = merge_classifier(model, spec, target)
    path, _ = export_classifier(merged, merged_spec, out_dir, verify_inputs=verify_inputs)
    return path
