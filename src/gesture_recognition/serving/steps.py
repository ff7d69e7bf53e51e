"""What each Python-backend model of the ensemble computes, as plain functions.

The ``model.py`` files in ``model_repository/`` only move tensors in and out of Triton; the work
is here, built from the same functions the in-process ``GesturePipeline`` calls, so the served
answer and the in-process answer come from one implementation (and these functions are unit
tested without a server).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from gesture_recognition.artifacts import ClassifierSpec, DetectorSpec
from gesture_recognition.decision import decide_hands
from gesture_recognition.detections import decode_detections
from gesture_recognition.detector_passes import Network, detector_input, run_detector
from gesture_recognition.hands import prepare_hands
from gesture_recognition.images import DEFAULT_MAX_IMAGE_BYTES, check_image_array, decode_image
from gesture_recognition.letterbox import LetterboxParams

FloatArray = NDArray[np.float32]


class InvalidInputError(ValueError):
    """A request tensor the model cannot use; answered as INVALID_ARG, never a crash."""


def decode_bytes_input(
    data: object, max_pixels: int, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES
) -> NDArray[np.uint8]:
    """``IMAGE_BYTES`` (BYTES ``[1]``: one encoded JPEG/PNG/...) -> RGB uint8 ``[H, W, 3]``."""
    flat = np.asarray(data, dtype=object).reshape(-1)
    if flat.size != 1:
        raise InvalidInputError(f"IMAGE_BYTES must hold one encoded image, got {flat.size}")
    raw = flat[0]
    if not isinstance(raw, bytes | bytearray):
        raise InvalidInputError(f"IMAGE_BYTES must be bytes, got {type(raw).__name__}")
    if len(raw) > max_bytes:
        raise InvalidInputError(
            f"IMAGE_BYTES holds {len(raw)} bytes, more than the limit of {max_bytes}"
        )
    return decode_image(bytes(raw), max_pixels)


def preprocess(image: object, spec: DetectorSpec, max_pixels: int) -> tuple[FloatArray, FloatArray]:
    """Photo -> detector input ``[1, 3, h, w]`` and letterbox placement ``[3]``."""
    tensor, params = detector_input(check_image_array(image, max_pixels), spec)
    return tensor, params.as_array()


def detect(
    image: object, spec: DetectorSpec, max_pixels: int, network: Network
) -> tuple[FloatArray, FloatArray]:
    """Photo -> detector rows ``[1, D, 6]`` and the placement ``[3]`` of the pass that
    answered (``detector_passes.run_detector``: the cpu flavour's detector model)."""
    rows, params = run_detector(network, check_image_array(image, max_pixels), spec)
    return rows, params.as_array()


def run_batched(
    run: Callable[[FloatArray], FloatArray], batches: Sequence[FloatArray]
) -> list[FloatArray]:
    """Run requests that Triton's dynamic batcher delivered together as one batch, then split
    the result back per request."""
    sizes = [len(b) for b in batches]
    out = run(np.concatenate(batches) if len(batches) > 1 else batches[0])
    if len(out) != sum(sizes):
        raise RuntimeError(f"model returned {len(out)} rows for a batch of {sum(sizes)}")
    return np.split(out, np.cumsum(sizes)[:-1])


def _letterbox_params(values: object) -> LetterboxParams:
    flat = np.asarray(values, dtype=np.float32).reshape(-1)
    if flat.shape[0] != 3 or not np.all(np.isfinite(flat)) or flat[0] <= 0:
        raise InvalidInputError(
            f"LETTERBOX must be 3 finite values (scale > 0, pad_x, pad_y), got {flat.tolist()}"
        )
    return LetterboxParams.from_array(flat)


def crop_hands(
    image: object,
    detections: object,
    letterbox_values: object,
    conf_threshold: float,
    spec: ClassifierSpec,
    max_hands: int,
    max_pixels: int,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Detector rows -> (``HAND_BOXES [N, 4]``, ``HAND_SCORES [N]``, ``CLASSIFIER_INPUT``).

    ``CLASSIFIER_INPUT`` has ``max(N, 1)`` rows: Triton cannot run the classifier on an empty
    batch inside an ensemble, so a photo without hands sends one dummy row, and the decision
    step uses only the first N rows of the logits.
    """
    photo = check_image_array(image, max_pixels)
    rows = np.asarray(detections, dtype=np.float32)
    given = list(rows.shape)
    if rows.ndim == 3 and rows.shape[0] == 1:
        rows = rows[0]
    if rows.ndim != 2 or rows.shape[1] != 6:
        raise InvalidInputError(f"DETECTIONS must be [1, D, 6], got {given}")
    params = _letterbox_params(letterbox_values)
    height, width = photo.shape[:2]
    boxes, scores = decode_detections(rows, params, width, height, conf_threshold)
    hands = prepare_hands(photo, boxes, scores, spec, max_hands)
    batch = hands.batch
    if len(batch) == 0:
        batch = np.zeros((1, 3, spec.input_size, spec.input_size), dtype=np.float32)
    return hands.boxes, hands.scores, batch


def decision_outputs(
    logits: object,
    crop_boxes: object,
    crop_scores: object,
    spec: ClassifierSpec,
    hand: object | None = None,
) -> dict[str, np.ndarray]:
    """Logits of the crops (the first N rows are the N hands the crop step cut) -> the
    ensemble's answer tensors. With a hand verifier, ``hand`` (its probabilities, first N
    rows) drops the hands under its threshold first (``hands.verified``, as the in-process
    pipeline does); the answered HAND_BOXES / HAND_SCORES are the hands kept."""
    label_map = spec.label_map
    rows = np.asarray(logits, dtype=np.float32)
    boxes = np.asarray(crop_boxes, dtype=np.float32)
    scores = np.asarray(crop_scores, dtype=np.float32).reshape(-1)
    k = label_map.num_classes
    if rows.ndim != 2 or rows.shape[1] != k:
        raise InvalidInputError(f"LOGITS must be [M, {k}], got {list(rows.shape)}")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise InvalidInputError(f"CROP_BOXES must be [N, 4], got {list(boxes.shape)}")
    n = boxes.shape[0]
    if scores.shape[0] != n:
        raise InvalidInputError(f"{n} hand boxes but {scores.shape[0]} CROP_SCORES")
    if rows.shape[0] < n:
        raise InvalidInputError(f"{n} hands but only {rows.shape[0]} rows of LOGITS")
    rows = rows[:n]
    # Checked here, not left to softmax: its ValueError would be answered as an INTERNAL
    # server failure instead of the caller's bad input.
    if not np.all(np.isfinite(rows)):
        raise InvalidInputError("LOGITS contain NaN or Inf")
    probs_hand = None
    if spec.verifier is not None:
        if hand is None:
            raise InvalidInputError("the classifier has a hand verifier but HAND is missing")
        probs_hand = np.asarray(hand, dtype=np.float32).reshape(-1)
        if probs_hand.shape[0] < n:
            raise InvalidInputError(f"{n} hands but only {probs_hand.shape[0]} rows of HAND")
        probs_hand = probs_hand[:n]
    keep, decision = decide_hands(rows, probs_hand, spec)
    if keep is not None:
        boxes, scores = boxes[keep], scores[keep]
        n = boxes.shape[0]
    if not math.isfinite(decision.score):
        raise InvalidInputError("the decision score is not finite")
    return {
        "GESTURE": np.array([decision.gesture.encode("utf-8")], dtype=np.object_),
        "SCORE": np.array([decision.score], dtype=np.float32),
        "HAND_BOXES": boxes.astype(np.float32).reshape(n, 4),
        "HAND_SCORES": scores.astype(np.float32).reshape(n),
        "HAND_GESTURES": np.array(
            [g.encode("utf-8") for g in decision.hand_gestures], dtype=np.object_
        ).reshape(n),
        "HAND_GESTURE_SCORES": decision.hand_scores.astype(np.float32).reshape(n),
        "GESTURE_PROBS": decision.probabilities.astype(np.float32).reshape(k),
    }
