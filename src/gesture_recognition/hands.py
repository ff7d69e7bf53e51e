"""From detections to classifier inputs: the serving-side use of ``boxes``.

``prepare_hands`` is what the Triton ``hand_crops`` model runs and what the in-process pipeline
runs, so both report the same hands in the same order with the same crops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gesture_recognition.artifacts import ClassifierSpec
from gesture_recognition.boxes import expanded_crops, limit_hands, topmost_order
from gesture_recognition.classifier_input import crops_to_batch

# More hands than this in one photo are not classified (the most confident ones are kept);
# a crowd photo must not turn one request into an unbounded classifier batch.
DEFAULT_MAX_HANDS = 16


@dataclass(frozen=True)
class Hands:
    boxes: NDArray[np.float32]  # [N, 4] detector boxes in photo pixels, topmost first
    scores: NDArray[np.float32]  # [N] detector confidence
    batch: NDArray[np.float32]  # [N, 3, S, S] classifier input

    def take(self, keep: NDArray[np.bool_]) -> Hands:
        """The hands where ``keep`` is true, in the same order."""
        return Hands(boxes=self.boxes[keep], scores=self.scores[keep], batch=self.batch[keep])


def verified(hand: NDArray[np.float32] | None, spec: ClassifierSpec) -> NDArray[np.bool_] | None:
    """Which hands the classifier's verifier keeps (``hand`` probability at or above its
    threshold); None when the classifier has no verifier (every box is a hand)."""
    if spec.verifier is None or hand is None:
        return None
    return np.asarray(hand, np.float32).reshape(-1) >= spec.verifier.threshold


def order_hands(
    boxes: NDArray[np.float32], scores: NDArray[np.float32], max_hands: int
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Keep the ``max_hands`` most confident boxes and order them topmost first."""
    if len(boxes) == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    kept = limit_hands(scores, max_hands)
    boxes, scores = boxes[kept], scores[kept]
    order = topmost_order(boxes)
    return boxes[order].astype(np.float32), scores[order].astype(np.float32)


def prepare_hands(
    image: NDArray[np.uint8],
    boxes: NDArray[np.float32],
    scores: NDArray[np.float32],
    spec: ClassifierSpec,
    max_hands: int = DEFAULT_MAX_HANDS,
) -> Hands:
    boxes, scores = order_hands(boxes, scores, max_hands)
    crops = expanded_crops(image, boxes, spec.crop) if len(boxes) else []
    batch = crops_to_batch(crops, spec.input_size, spec.mean, spec.std)
    return Hands(boxes=boxes, scores=scores, batch=batch)
