"""Both arms of the averaging rule (README.md): the shipped HaGRID classifier, and the mean of
its logits and the 12-epoch classifier's (the shipped verifier's hand output kept).

A measurement prototype (two ONNX Runtime sessions), not a served feature:

    python reports/classifier_ensemble/measure.py val   # the 303 other-class scenes, HaGRID map
    python reports/classifier_ensemble/measure.py test  # after the decision: the 208 held-out
                                                        # scenes (MachinesCanSee map) and crops
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gesture_recognition.artifacts import CLASSIFIER_JSON, CLASSIFIER_ONNX, read_classifier_spec
from gesture_recognition.labels import load_label_map
from gesture_recognition.pipeline import GesturePipeline
from gesture_recognition.runtime import ClassifierRunner, OrtSession
from gesture_recognition.training.evaluate import evaluate_classifier
from gesture_recognition.training.evaluate_photos import scene_split, score_photos

SECOND = Path("runs/cand/hagrid_long")  # the 12-epoch HaGRID classifier (14 classes)


class MeanSession:
    """Runs the shipped classifier and the second network; the logits are their mean (in the
    shipped classifier's label map: the second is merged the same way when that map is coarser)."""

    def __init__(self, first: Path, second: Path, merge: NDArray[np.float32] | None) -> None:
        self.first = OrtSession(first, None)
        self.second = OrtSession(second, None)
        self.merge = merge  # [14, K]: HaGRID probabilities -> the served map (None: same map)

    def run(self, names: Sequence[str], feeds: dict[str, NDArray[np.float32]]) -> list[Any]:
        outputs = self.first.run(list(names), feeds)
        (other,) = self.second.run(["logits"], feeds)
        if self.merge is not None:  # the served logits of a merged map are log-probabilities
            p = np.exp(other - other.max(axis=1, keepdims=True))
            other = np.log((p / p.sum(axis=1, keepdims=True)) @ self.merge + 1e-12)
        outputs[0] = ((outputs[0] + other) / 2).astype(np.float32)
        return outputs


def merge_matrix(classifier_dir: Path) -> NDArray[np.float32] | None:
    spec = read_classifier_spec(classifier_dir / CLASSIFIER_JSON)
    hagrid = load_label_map("hagrid")
    if spec.label_map.name == "hagrid":
        return None
    mapping = spec.label_map.merges["hagrid"]
    m = np.zeros((hagrid.num_classes, spec.label_map.num_classes), np.float32)
    for i, name in enumerate(hagrid.classes):
        m[i, spec.label_map.classes.index(mapping[name])] = 1.0
    return m


def runner(classifier_dir: Path, averaged: bool) -> ClassifierRunner:
    spec = read_classifier_spec(classifier_dir / CLASSIFIER_JSON)
    onnx_path = classifier_dir / CLASSIFIER_ONNX
    if not averaged:
        return ClassifierRunner(onnx_path, spec)
    session = MeanSession(onnx_path, SECOND / CLASSIFIER_ONNX, merge_matrix(classifier_dir))
    return ClassifierRunner(onnx_path, spec, session=session)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["val", "test"])
    args = parser.parse_args()
    photos, label_map = scene_split(Path("../shared/data/hagrid_crops"), args.mode)
    classifier_dir = Path("models/hagrid" if args.mode == "val" else "models")
    summary: dict[str, Any] = {}
    for averaged in (False, True):
        arm = "pair" if averaged else "shipped"
        pipe = GesturePipeline.from_dir("models")
        pipe.classifier = runner(classifier_dir, averaged)
        result = score_photos(pipe, photos, label_map)
        summary[f"scenes/{arm}"] = {
            "photos": len(photos),
            "right": round(result["accuracy"] * len(photos)),
            "accuracy": result["accuracy"],
            "photos_without_hand": result["photos_without_hand"],
            "median_ms": result["latency"]["median_ms"],
        }
        if args.mode == "test":
            for folder in (Path("models"), Path("models/hagrid")):
                crops = evaluate_classifier(
                    None,
                    Path("runs/crops/hagrid_hand_crops"),
                    "test",
                    classifier=runner(folder, averaged),
                )
                summary[f"crops {folder}/{arm}"] = {k: crops[k] for k in ("accuracy", "macro_f1")}
    Path(f"runs/ensemble_{args.mode}.json").write_text(json.dumps(summary, indent=1), "utf-8")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
