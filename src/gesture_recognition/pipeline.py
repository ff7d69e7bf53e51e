"""The whole recogniser in-process: detect -> crop -> classify -> decide, on ONNX Runtime.

For notebooks and batch jobs, and the reference the Triton server is tested against: it runs
the same ONNX files with the same pre- and post-processing functions as the served models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from gesture_recognition.artifacts import (
    CLASSIFIER_JSON,
    CLASSIFIER_ONNX,
    DETECTOR_JSON,
    DETECTOR_ONNX,
    read_classifier_spec,
    read_detector_spec,
    shipped_models_dir,
)
from gesture_recognition.decision import Decision, decide_hands
from gesture_recognition.detections import decode_detections
from gesture_recognition.detector_passes import run_detector
from gesture_recognition.hands import DEFAULT_MAX_HANDS, Hands, prepare_hands
from gesture_recognition.images import DEFAULT_MAX_PIXELS, check_image_array, decode_image
from gesture_recognition.runtime import CPU_PROVIDER, ClassifierRunner, DetectorRunner


@dataclass(frozen=True)
class GestureResult:
    gesture: str
    score: float
    hand_boxes: NDArray[np.float32]  # [N, 4] x1 y1 x2 y2, photo pixels
    hand_scores: NDArray[np.float32]  # [N] detector confidence
    hand_gestures: list[str]  # [N]
    hand_gesture_scores: NDArray[np.float32]  # [N]
    probabilities: NDArray[np.float32]  # [K] distribution of the winning hand
    labels: tuple[str, ...]  # class order of ``probabilities``

    @classmethod
    def of(cls, hands: Hands, decision: Decision, labels: tuple[str, ...]) -> GestureResult:
        """The answer for a photo's served ``hands`` and the ``decision`` on them."""
        return cls(
            gesture=decision.gesture,
            score=decision.score,
            hand_boxes=hands.boxes,
            hand_scores=hands.scores,
            hand_gestures=decision.hand_gestures,
            hand_gesture_scores=decision.hand_scores,
            probabilities=decision.probabilities,
            labels=labels,
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "gesture": self.gesture,
            "score": float(self.score),
            "hands": [
                {
                    "box": [round(float(v), 2) for v in box],
                    "detector_score": float(ds),
                    "gesture": g,
                    "gesture_score": float(gs),
                }
                for box, ds, g, gs in zip(
                    self.hand_boxes,
                    self.hand_scores,
                    self.hand_gestures,
                    self.hand_gesture_scores,
                    strict=True,
                )
            ],
            "probabilities": dict(zip(self.labels, map(float, self.probabilities), strict=True)),
        }


def detect_hands(
    detector: DetectorRunner, image: NDArray[np.uint8]
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Letterbox, run the detector (a second pass if its spec has one), decode: boxes in
    photo pixels and scores."""
    spec = detector.spec
    rows, params = run_detector(detector, image, spec)
    height, width = image.shape[:2]
    return decode_detections(rows[0], params, width, height, spec.conf_threshold)


def load_detector(
    models_dir: str | Path | None = None,
    threads: int | None = None,
    providers: Sequence[str] = (CPU_PROVIDER,),
) -> DetectorRunner:
    root = Path(models_dir) if models_dir is not None else shipped_models_dir()
    spec = read_detector_spec(root / DETECTOR_JSON)
    return DetectorRunner(root / DETECTOR_ONNX, spec, threads, providers=providers)


class GesturePipeline:
    """``GesturePipeline.from_dir("models")(photo)`` -> :class:`GestureResult`."""

    def __init__(
        self,
        detector: DetectorRunner,
        classifier: ClassifierRunner,
        max_hands: int = DEFAULT_MAX_HANDS,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ):
        self.detector = detector
        self.classifier = classifier
        self.max_hands = max_hands
        self.max_pixels = max_pixels

    @classmethod
    def from_dir(
        cls,
        models_dir: str | Path | None = None,
        threads: int | None = None,
        providers: Sequence[str] = (CPU_PROVIDER,),
        **kwargs: int,
    ) -> GesturePipeline:
        """The pipeline on a models folder; ``providers`` picks ONNX Runtime's execution
        providers (``CUDAExecutionProvider`` needs onnxruntime-gpu)."""
        root = Path(models_dir) if models_dir is not None else shipped_models_dir()
        detector = load_detector(root, threads, providers)
        classifier = ClassifierRunner(
            root / CLASSIFIER_ONNX,
            read_classifier_spec(root / CLASSIFIER_JSON),
            threads,
            providers=providers,
        )
        return cls(detector, classifier, **kwargs)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.classifier.spec.label_map.classes

    def detect(self, image: NDArray[np.uint8]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Hand boxes (photo pixels) and detector scores, most confident first."""
        return detect_hands(self.detector, check_image_array(image, self.max_pixels))

    def __call__(self, image: NDArray[np.uint8]) -> GestureResult:
        image = check_image_array(image, self.max_pixels)
        boxes, scores = self.detect(image)
        hands = prepare_hands(image, boxes, scores, self.classifier.spec, self.max_hands)
        logits, hand = self.classifier.logits_and_hand(hands.batch)
        keep, decision = decide_hands(logits, hand, self.classifier.spec)
        if keep is not None:
            hands = hands.take(keep)
        return GestureResult.of(hands, decision, self.labels)

    def classify_bytes(self, data: bytes) -> GestureResult:
        return self(decode_image(data, self.max_pixels))
