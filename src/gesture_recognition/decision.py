"""The end-to-end decision rule: one gesture per photo from the classified hands.

Every hand is classified; the photo's answer is the class with the highest probability over
all hands, and the label map's ``no_hand_label`` (``no_gesture``) when there is no hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gesture_recognition.artifacts import ClassifierSpec
from gesture_recognition.hands import verified
from gesture_recognition.labels import LabelMap


@dataclass(frozen=True)
class Decision:
    gesture: str
    score: float
    hand_gestures: list[str]
    hand_scores: NDArray[np.float32]
    # The winning hand's whole distribution over the label map's classes (one-hot on
    # ``no_hand_label`` when there is no hand and it is a class; zeros otherwise).
    probabilities: NDArray[np.float32]


def softmax(logits: NDArray[np.float32]) -> NDArray[np.float32]:
    x = np.asarray(logits, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"logits must be [N, K], got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("logits contain NaN or Inf")
    shifted = x - x.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def decide(probabilities: NDArray[np.float32], label_map: LabelMap) -> Decision:
    """Apply the rule to per-hand class probabilities ``[N, K]`` (N may be 0)."""
    probs = np.asarray(probabilities, dtype=np.float32).reshape(-1, label_map.num_classes)
    if len(probs) == 0:
        dist = np.zeros(label_map.num_classes, dtype=np.float32)
        if label_map.no_hand_label in label_map.classes:
            dist[label_map.classes.index(label_map.no_hand_label)] = 1.0
        # No hand is a certain no_gesture under the rule, hence score 1.
        return Decision(label_map.no_hand_label, 1.0, [], np.zeros(0, np.float32), dist)
    best_class = probs.argmax(axis=1)
    best_score = probs[np.arange(len(probs)), best_class]
    winner = int(best_score.argmax())
    hand_gestures = [label_map.classes[int(c)] for c in best_class]
    return Decision(
        gesture=hand_gestures[winner],
        score=float(best_score[winner]),
        hand_gestures=hand_gestures,
        hand_scores=best_score.astype(np.float32),
        probabilities=probs[winner].copy(),
    )


def decide_hands(
    logits: NDArray[np.float32], hand: NDArray[np.float32] | None, spec: ClassifierSpec
) -> tuple[NDArray[np.bool_] | None, Decision]:
    """The served rule on a photo's classified hands (logits ``[N, K]``): the hands the
    classifier's verifier rejects are dropped (``hand``, its probabilities; the keep mask is
    returned, None without a verifier), then softmax and :func:`decide` on the rest. The
    in-process pipeline and the Triton decision step both call this."""
    keep = verified(hand, spec)
    rows = np.asarray(logits, dtype=np.float32).reshape(-1, spec.label_map.num_classes)
    if keep is not None:
        rows = rows[keep]
    probs = softmax(rows) if len(rows) else np.zeros((0, spec.label_map.num_classes), np.float32)
    return keep, decide(probs, spec.label_map)
