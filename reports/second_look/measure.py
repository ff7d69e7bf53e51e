"""Both arms of the second-look rule (README.md): the served hands, and the served hands with a
second look (boxes >= 0.05 whose verifier probability is >= 0.5) on photos where none was served.

A measurement prototype on the shipped models, not a served feature:

    python reports/second_look/measure.py val   # the rule's data (validation only)
    python reports/second_look/measure.py test  # the 208 held-out scenes, after the decision

Prints a JSON summary; per-photo answers go to ``--out`` (default runs/second_look_<mode>.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gesture_recognition.artifacts import CLASSIFIER_JSON, CLASSIFIER_ONNX, read_classifier_spec
from gesture_recognition.decision import Decision, decide_hands
from gesture_recognition.hands import Hands, prepare_hands
from gesture_recognition.images import check_image_array
from gesture_recognition.pipeline import GesturePipeline, GestureResult, detect_hands
from gesture_recognition.runtime import ClassifierRunner
from gesture_recognition.training.evaluate import evaluate_detector
from gesture_recognition.training.evaluate_photos import scene_split, score_photos

HAGRID = Path("../shared/data/hagrid_crops")  # scene photos: evaluate_photos.scene_split
LOW_SCORE = 0.05  # the detector score a second look goes down to
LOW_VERIFIER = 0.5  # the verifier probability a box of the second look needs
DETECTOR_SETS = {  # the validation sets of reports/threshold/
    "subhih_roboflow": "runs/datasets/hands_v1/data.yaml",
    "digits": "runs/datasets/sld_teacher/data.yaml",
    "hagrid_scenes": "runs/datasets/hagrid_teacher/data.yaml",
}


class SecondLook:
    """The shipped pipeline's rule, with an optional second look when it serves no hand."""

    def __init__(self, classifier_dir: Path, second_look: bool) -> None:
        self.pipe = GesturePipeline.from_dir("models")
        spec = read_classifier_spec(classifier_dir / CLASSIFIER_JSON)
        self.pipe.classifier = ClassifierRunner(classifier_dir / CLASSIFIER_ONNX, spec)
        self.classifier = self.pipe.classifier
        self.second_look = second_look
        self.served_score = self.pipe.detector.spec.conf_threshold
        self.low_spec = dataclasses.replace(self.pipe.detector.spec, conf_threshold=LOW_SCORE)

    def _classify(
        self, image: NDArray[np.uint8], boxes: NDArray[np.float32], scores: NDArray[np.float32]
    ) -> tuple[Hands, NDArray[np.float32], NDArray[np.float32] | None]:
        hands = prepare_hands(image, boxes, scores, self.classifier.spec, self.pipe.max_hands)
        logits, hand = self.classifier.logits_and_hand(hands.batch)
        return hands, logits, hand

    def hands(self, image: NDArray[np.uint8]) -> tuple[Hands, Decision]:
        image = check_image_array(image)
        served_spec = self.pipe.detector.spec
        self.pipe.detector.spec = self.low_spec
        try:
            boxes, scores = detect_hands(self.pipe.detector, image)
        finally:
            self.pipe.detector.spec = served_spec
        high = scores >= self.served_score
        hands, logits, hand = self._classify(image, boxes[high], scores[high])
        keep, decision = decide_hands(logits, hand, self.classifier.spec)
        if keep is not None:
            hands = hands.take(keep)
        if not self.second_look or len(hands.boxes) or not (~high).any():
            return hands, decision
        low, logits, hand = self._classify(image, boxes[~high], scores[~high])
        assert hand is not None, "the second look needs a classifier with a verifier"
        sure = hand >= LOW_VERIFIER
        if not sure.any():
            return hands, decision
        plain = dataclasses.replace(self.classifier.spec, verifier=None)
        _, decision = decide_hands(logits[sure], None, plain)
        return low.take(sure), decision

    def __call__(self, image: NDArray[np.uint8]) -> GestureResult:
        return GestureResult.of(*self.hands(image), self.pipe.labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["val", "test"])
    parser.add_argument("--out")
    args = parser.parse_args()
    photos, label_map = scene_split(HAGRID, args.mode)
    classifier_dir = Path("models/hagrid" if args.mode == "val" else "models")
    summary: dict[str, Any] = {}
    answers: dict[str, Any] = {}
    for second_look in (False, True):
        arm = "second_look" if second_look else "served"
        result = score_photos(SecondLook(classifier_dir, second_look), photos, label_map)
        summary[f"scenes/{arm}"] = {
            "photos": len(photos),
            "right": round(result["accuracy"] * len(photos)),
            "accuracy": result["accuracy"],
            "photos_without_hand": result["photos_without_hand"],
        }
        answers[arm] = result["predictions"]
        if args.mode != "val":
            continue
        for name, data_yaml in DETECTOR_SETS.items():
            served = SecondLook(classifier_dir, second_look)

            def detect(
                image: NDArray[np.uint8], served: SecondLook = served
            ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
                hands, _ = served.hands(image)
                return hands.boxes, hands.scores

            metrics = evaluate_detector(
                "models", data_yaml, "val", detect=detect, served_conf=LOW_SCORE, served_only=True
            )["served"]
            summary[f"{name}/{arm}"] = {
                k: metrics[k] for k in ("recall", "precision", "detections")
            }
    out = Path(args.out or f"runs/second_look_{args.mode}.json")
    out.write_text(json.dumps({"summary": summary, "answers": answers}, indent=1), "utf-8")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
