"""The ensembles' output tensors -> :class:`~gesture_recognition.pipeline.GestureResult`.

Pure functions over an ``as_numpy``-like getter, so the gRPC and HTTP result classes (sync and
asyncio alike) and fakes in tests all go through the same code.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gesture_recognition.labels import BUILTIN_LABEL_MAPS, load_label_map
from gesture_recognition.pipeline import GestureResult
from gesture_recognition.serving.contract import ENSEMBLE_OUTPUTS

OutputGetter = Callable[[str], "np.ndarray | None"]


class OutputError(ValueError):
    """The server's answer does not have the documented outputs."""


def _required(get: OutputGetter, name: str) -> np.ndarray:
    value = get(name)
    if value is None:
        raise OutputError(f"the answer lacks the output {name}")
    return np.asarray(value)


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _floats(value: np.ndarray, name: str, shape_tail: tuple[int, ...] = ()) -> NDArray[np.float32]:
    try:
        return np.asarray(value, dtype=np.float32).reshape((-1, *shape_tail))
    except ValueError as exc:
        raise OutputError(f"{name} has shape {list(value.shape)}: {exc}") from exc


def parse_outputs(get: OutputGetter, labels: Sequence[str]) -> GestureResult:
    """One answer of ``gesture_ensemble`` / ``gesture_ensemble_bytes`` as a GestureResult."""
    gesture = _required(get, "GESTURE").reshape(-1)
    score = _floats(_required(get, "SCORE"), "SCORE")
    if gesture.size != 1 or score.size != 1:
        raise OutputError(
            f"GESTURE and SCORE must hold one value, got {gesture.size}, {score.size}"
        )
    boxes = _floats(_required(get, "HAND_BOXES"), "HAND_BOXES", (4,))
    hand_scores = _floats(_required(get, "HAND_SCORES"), "HAND_SCORES")
    hand_gestures = [_text(v) for v in _required(get, "HAND_GESTURES").reshape(-1)]
    gesture_scores = _floats(_required(get, "HAND_GESTURE_SCORES"), "HAND_GESTURE_SCORES")
    probabilities = _floats(_required(get, "GESTURE_PROBS"), "GESTURE_PROBS")
    counts = {len(boxes), len(hand_scores), len(hand_gestures), len(gesture_scores)}
    if len(counts) != 1:
        raise OutputError(
            f"per-hand outputs disagree on the number of hands: {len(boxes)} boxes, "
            f"{len(hand_scores)} scores, {len(hand_gestures)} gestures, "
            f"{len(gesture_scores)} gesture scores"
        )
    if len(probabilities) != len(labels):
        raise OutputError(f"GESTURE_PROBS has {len(probabilities)} values for {len(labels)} labels")
    return GestureResult(
        gesture=_text(gesture[0]),
        score=float(score[0]),
        hand_boxes=boxes,
        hand_scores=hand_scores,
        hand_gestures=hand_gestures,
        hand_gesture_scores=gesture_scores,
        probabilities=probabilities,
        labels=tuple(labels),
    )


def labels_from_config(config: Mapping[str, Any], num_classes: int) -> tuple[str, ...] | None:
    """Class names from the ensemble config's ``labels`` parameter (a JSON list), if present."""
    raw = (config.get("parameters") or {}).get("labels") or {}
    text = raw.get("string_value") if isinstance(raw, Mapping) else None
    if not text:
        return None
    try:
        names = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(names, list) or len(names) != num_classes:
        return None
    return tuple(str(n) for n in names)


def labels_from_classification(entries: Sequence[object], num_classes: int) -> tuple[str, ...]:
    """Class names by index from Triton's classification extension (``value:index:label``).

    Asking for ``class_count=K`` on ``GESTURE_PROBS`` makes the server attach the labels of the
    output's ``label_filename`` — the only way a remote client can read them.
    """
    names: dict[int, str] = {}
    for entry in entries:
        parts = _text(entry).split(":", 2)
        if len(parts) != 3 or not parts[2]:
            raise OutputError(f"classification entry {_text(entry)!r} carries no label")
        names[int(parts[1])] = parts[2]
    if sorted(names) != list(range(num_classes)):
        raise OutputError(
            f"classification gave labels for indices {sorted(names)}, expected 0..{num_classes - 1}"
        )
    return tuple(names[i] for i in range(num_classes))


def fallback_labels(num_classes: int) -> tuple[str, ...]:
    """A built-in label map of that size, else ``class_0..``: names only, for display."""
    for name in BUILTIN_LABEL_MAPS:
        classes = load_label_map(name).classes
        if len(classes) == num_classes:
            return tuple(classes)
    return tuple(f"class_{i}" for i in range(num_classes))


def probs_size_from_config(config: dict[str, object]) -> int:
    """K, the length of ``GESTURE_PROBS``, from a model config as JSON (either protocol)."""
    outputs = config.get("output", [])
    assert isinstance(outputs, list)
    for output in outputs:
        if output.get("name") == "GESTURE_PROBS":
            dims = [int(d) for d in output.get("dims", [])]
            if len(dims) == 1 and dims[0] > 0:
                return dims[0]
            raise OutputError(f"GESTURE_PROBS has dims {dims}; expected one fixed dimension")
    raise OutputError("the model config has no GESTURE_PROBS output")


__all__ = [
    "ENSEMBLE_OUTPUTS",
    "OutputError",
    "fallback_labels",
    "labels_from_classification",
    "labels_from_config",
    "parse_outputs",
    "probs_size_from_config",
]
