"""Both arms of the averaging rule (README.md): the shipped HaGRID classifier, and the mean of
its logits and the 12-epoch classifier's (the shipped verifier's hand output kept).

A measurement prototype (two ONNX Runtime sessions), not a served feature:

    python reports/classifier_ensemble/measure.py val   # runs/scenes_val, HaGRID map
    python reports/classifier_ensemble/measure.py test  # after the decision: the 208 held-out
                                                        # scenes (MachinesCanSee map) and crops
"""

from __future__ import annotations

import argparse
import csv
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
from gesture_recognition.training.evaluate_photos import mcs_photos, score_photos

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
    if args.mode == "val":
        root, classifier_dir = Path("runs/scenes_val"), Path("models/hagrid")
        paths = [p.relative_to(root).as_posix() for p in sorted(root.glob("*/*"))]
    else:
        root, classifier_dir = Path("../shared/data/hagrid_crops"), Path("models")
        with open("reports/models/predictions_end_to_end_models.csv", encoding="utf-8") as f:
            paths = [row["path"] for row in csv.DictReader(f)]
    label_map = read_classifier_spec(classifier_dir / CLASSIFIER_JSON).label_map
    photos, _ = mcs_photos(root, paths, label_map)
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
