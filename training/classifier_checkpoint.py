"""A trained classifier back from its checkpoint (``best.pt`` + ``best.json``, or ``last.pt``),
for evaluation and the naive PyTorch baseline."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from gesture_recognition.artifacts import ClassifierSpec
from gesture_recognition.training.pretrained import create_classifier

BEST_CHECKPOINT = "best.pt"



def load_trained_classifier(checkpoint: str | Path) -> tuple[nn.Module, ClassifierSpec]:
    """A trained model in eval mode and its spec, from ``best.pt`` (+ ``best.json``) or a
    resume checkpoint (``last.pt``, which carries its own spec)."""
    path = Path(checkpoint)
    if path.is_dir():
        path = path / BEST_CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"no classifier checkpoint at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if "model" in state and "spec" in state:
        spec_dict, weights = state["spec"], state["model"]
    else:
        meta_path = path.with_suffix(".json")
        if not meta_path.is_file():
            raise FileNotFoundError(f"{path} has no metadata file {meta_path}")
        spec_dict, weights = json.loads(meta_path.read_text(encoding="utf-8"))["spec"], state
    spec = ClassifierSpec.from_dict(spec_dict)
    model = create_classifier(spec.architecture, spec.label_map.num_classes, pretrained=False)
    model.load_state_dict(weights)
    return model.eval(), spec
