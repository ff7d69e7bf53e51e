"""The work of the Python-backend models, without a server: every hand count, bad inputs, the
dummy row for zero hands, and the per-request split of a dynamic batch."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

from gesture_recognition.artifacts import ClassifierSpec, DetectorSpec, VerifierSpec
from gesture_recognition.boxes import CropConfig
from gesture_recognition.decision import decide, softmax
from gesture_recognition.images import InvalidImageError
from gesture_recognition.labels import load_label_map
from gesture_recognition.letterbox import letterbox
from gesture_recognition.serving import python_model as pm
from gesture_recognition.serving.steps import (
    InvalidInputError,
    crop_hands,
    decision_outputs,
    decode_bytes_input,
    preprocess,
    run_batched,
)

LABELS = load_label_map("mcs2021")
SPEC = ClassifierSpec(label_map=LABELS, input_size=32, crop=CropConfig(scale=1.0, square=False))
MAX_PIXELS = 10_000_000


def _photo(height: int = 120, width: int = 160, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _rows(boxes_canvas: list[list[float]], scores: list[float], total: int = 300) -> np.ndarray:
    rows = np.zeros((1, total, 6), np.float32)
    for i, (box, score) in enumerate(zip(boxes_canvas, scores, strict=True)):
        rows[0, i, :4] = box
        rows[0, i, 4] = score
    return rows


# ----------------------------------------------------------------- image_decoder


def test_decode_bytes_input_round_trip() -> None:
    photo = _photo()
    decoded = decode_bytes_input(np.array([_png(photo)], dtype=np.object_), MAX_PIXELS)
    np.testing.assert_array_equal(decoded, photo)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (np.array([b"not an image"], dtype=np.object_), InvalidImageError),
        (np.array([b""], dtype=np.object_), InvalidImageError),
        (np.array([b"a", b"b"], dtype=np.object_), InvalidInputError),
        (np.array(["text"], dtype=np.object_), InvalidInputError),
    ],
)
def test_decode_bytes_input_rejects(data: np.ndarray, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode_bytes_input(data, MAX_PIXELS)


def test_decode_bytes_input_pixel_limit() -> None:
    with pytest.raises(InvalidImageError, match="limit"):
        decode_bytes_input(np.array([_png(_photo())], dtype=np.object_), max_pixels=1000)


# ----------------------------------------------------------------- hand_preprocess


def test_preprocess_shapes_and_placement() -> None:
    tensor, placement = preprocess(_photo(120, 160), DetectorSpec(imgsz=64), MAX_PIXELS)
    assert tensor.shape == (1, 3, 64, 64) and tensor.dtype == np.float32
    assert tensor.min() >= 0.0 and tensor.max() <= 1.0
    np.testing.assert_allclose(placement, [0.4, 0.0, 8.0])
    # With the network's stride the canvas follows the photo: 64x48 content on 64x64 -> 64x48.
    rect, placement = preprocess(
        _photo(120, 160), DetectorSpec(imgsz=64, letterbox_stride=16), MAX_PIXELS
    )
    assert rect.shape == (1, 3, 48, 64)
    np.testing.assert_allclose(placement, [0.4, 0.0, 0.0])


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((20, 20, 3), np.float32),
        np.zeros((20, 20, 4), np.uint8),
        np.zeros((4, 20, 3), np.uint8),
    ],
)
def test_preprocess_rejects_bad_images(image: np.ndarray) -> None:
    with pytest.raises(InvalidImageError):
        preprocess(image, DetectorSpec(imgsz=64), MAX_PIXELS)


# ----------------------------------------------------------------- hand_detector batching


def test_run_batched_splits_per_request() -> None:
    calls = []

    def run(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return batch.sum(axis=(1, 2, 3))[:, None] * np.ones((1, 2), np.float32)

    batches = [np.full((n, 3, 2, 2), i, np.float32) for i, n in enumerate([1, 3, 2])]
    outputs = run_batched(run, batches)
    assert calls == [6]  # one run for the three requests
    assert [o.shape for o in outputs] == [(1, 2), (3, 2), (2, 2)]
    for i, out in enumerate(outputs):
        np.testing.assert_array_equal(out, np.full_like(out, i * 12))


def test_run_batched_detects_a_short_answer() -> None:
    with pytest.raises(RuntimeError, match="rows"):
        run_batched(lambda b: b[:1], [np.zeros((2, 1), np.float32), np.zeros((1, 1), np.float32)])


# ----------------------------------------------------------------- crop_hands


def test_crop_hands_maps_boxes_back_to_the_photo() -> None:
    photo = _photo(120, 160)
    _, params = letterbox(photo, 64)
    # A box covering photo pixels x 40..80, y 20..60, expressed on the 64 px canvas.
    box = [
        40 * params.scale,
        20 * params.scale + params.pad_y,
        80 * params.scale,
        60 * params.scale + params.pad_y,
    ]
    boxes, scores, batch = crop_hands(
        photo, _rows([box], [0.9]), params.as_array(), 0.25, SPEC, 16, MAX_PIXELS
    )
    np.testing.assert_allclose(boxes, [[40, 20, 80, 60]], atol=1e-3)
    np.testing.assert_allclose(scores, [0.9])
    assert batch.shape == (1, 3, 32, 32)


def test_crop_hands_zero_hands_sends_one_dummy_row() -> None:
    photo = _photo()
    _, params = letterbox(photo, 64)
    boxes, scores, batch = crop_hands(
        photo, _rows([[1, 1, 20, 20]], [0.1]), params.as_array(), 0.25, SPEC, 16, MAX_PIXELS
    )
    assert boxes.shape == (0, 4) and scores.shape == (0,)
    assert batch.shape == (1, 3, 32, 32) and not batch.any()


def test_crop_hands_keeps_the_most_confident_when_over_the_limit() -> None:
    photo = _photo(200, 200)
    _, params = letterbox(photo, 200)
    canvas_boxes = [[10 + 30 * i, 10 + 30 * i, 40 + 30 * i, 40 + 30 * i] for i in range(6)]
    scores_in = [0.3, 0.9, 0.5, 0.8, 0.4, 0.7]
    boxes, scores, batch = crop_hands(
        photo, _rows(canvas_boxes, scores_in), params.as_array(), 0.25, SPEC, 3, MAX_PIXELS
    )
    assert len(boxes) == 3 and batch.shape == (3, 3, 32, 32)
    assert sorted(scores.tolist()) == pytest.approx([0.7, 0.8, 0.9])
    assert list(boxes[:, 1]) == sorted(boxes[:, 1])  # topmost first


@pytest.mark.parametrize(
    ("detections", "placement", "match"),
    [
        (np.zeros((2, 300, 6), np.float32), [1, 0, 0], "DETECTIONS"),
        (np.zeros((1, 300, 5), np.float32), [1, 0, 0], "DETECTIONS"),
        (np.zeros((1, 300, 6), np.float32), [0, 0, 0], "LETTERBOX"),
        (np.zeros((1, 300, 6), np.float32), [np.nan, 0, 0], "LETTERBOX"),
        (np.zeros((1, 300, 6), np.float32), [1, 0], "LETTERBOX"),
    ],
)
def test_crop_hands_rejects_malformed_tensors(
    detections: np.ndarray, placement: list[float], match: str
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        crop_hands(
            _photo(), detections, np.array(placement, np.float32), 0.25, SPEC, 16, MAX_PIXELS
        )


# ----------------------------------------------------------------- gesture_decision


def _boxes(n: int) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.arange(n * 4, dtype=np.float32).reshape(n, 4)
    return boxes, np.linspace(0.9, 0.5, n).astype(np.float32)


def test_decision_zero_hands_ignores_the_dummy_row() -> None:
    logits = np.zeros((1, LABELS.num_classes), np.float32)
    logits[0, LABELS.classes.index("like")] = 50.0  # the dummy row must not win
    out = decision_outputs(logits, *_boxes(0), SPEC)
    assert out["GESTURE"].tolist() == [b"no_gesture"]
    assert out["SCORE"].tolist() == [1.0]
    assert out["HAND_GESTURES"].shape == (0,) and out["HAND_GESTURE_SCORES"].shape == (0,)
    assert out["HAND_BOXES"].shape == (0, 4) and out["HAND_SCORES"].shape == (0,)
    assert out["GESTURE_PROBS"][LABELS.classes.index("no_gesture")] == 1.0


@pytest.mark.parametrize("hands", [1, 2, 5])
def test_decision_matches_the_in_process_rule(hands: int) -> None:
    logits = (
        np.random.default_rng(hands).normal(size=(hands, LABELS.num_classes)).astype(np.float32)
    )
    boxes, scores = _boxes(hands)
    out = decision_outputs(logits, boxes, scores, SPEC)
    expected = decide(softmax(logits), LABELS)
    assert out["GESTURE"][0].decode() == expected.gesture
    assert out["SCORE"][0] == pytest.approx(expected.score)
    assert [g.decode() for g in out["HAND_GESTURES"]] == expected.hand_gestures
    np.testing.assert_allclose(out["HAND_GESTURE_SCORES"], expected.hand_scores)
    np.testing.assert_allclose(out["GESTURE_PROBS"], expected.probabilities)
    assert out["GESTURE_PROBS"].shape == (LABELS.num_classes,)
    np.testing.assert_array_equal(out["HAND_BOXES"], boxes)
    np.testing.assert_array_equal(out["HAND_SCORES"], scores)


def test_decision_drops_the_hands_the_verifier_rejects() -> None:
    """The hands under the verifier's threshold are gone from every per-hand answer and from
    the decision: the same rule as the in-process pipeline (hands.verified)."""
    spec = replace(SPEC, verifier=VerifierSpec(threshold=0.3))
    logits = np.zeros((4, LABELS.num_classes), np.float32)  # 3 hands + a dummy row
    logits[0, LABELS.classes.index("like")] = 9.0  # confident, but not a hand
    logits[1, LABELS.classes.index("ok")] = 3.0
    logits[2, LABELS.classes.index("stop")] = 2.0
    boxes, scores = _boxes(3)
    hand = np.array([[0.1], [0.9], [0.3], [0.0]], np.float32)
    out = decision_outputs(logits, boxes, scores, spec, hand)
    assert [g.decode() for g in out["HAND_GESTURES"]] == ["ok", "stop"]
    np.testing.assert_array_equal(out["HAND_BOXES"], boxes[1:])
    np.testing.assert_array_equal(out["HAND_SCORES"], scores[1:])
    assert out["GESTURE"][0] == b"ok"
    expected = decide(softmax(logits[1:3]), LABELS)
    assert out["SCORE"][0] == pytest.approx(expected.score)
    # Every hand rejected: no hand, no_gesture.
    none = decision_outputs(logits, boxes, scores, spec, np.zeros((4, 1), np.float32))
    assert none["GESTURE"][0] == b"no_gesture" and none["HAND_BOXES"].shape == (0, 4)
    with pytest.raises(InvalidInputError, match="HAND is missing"):
        decision_outputs(logits, boxes, scores, spec)
    with pytest.raises(InvalidInputError, match="rows of HAND"):
        decision_outputs(logits, boxes, scores, spec, hand[:2])
    # Without a verifier, a HAND tensor changes nothing.
    plain = decision_outputs(logits, boxes, scores, SPEC, np.zeros((4, 1), np.float32))
    assert len(plain["HAND_GESTURES"]) == 3


def test_decision_rejects_inconsistent_inputs() -> None:
    one, two = _boxes(1), _boxes(2)
    with pytest.raises(InvalidInputError, match="only 1 rows"):
        decision_outputs(np.zeros((1, 7), np.float32), *two, SPEC)
    with pytest.raises(InvalidInputError, match="LOGITS"):
        decision_outputs(np.zeros((1, 5), np.float32), *one, SPEC)
    with pytest.raises(InvalidInputError, match="CROP_BOXES"):
        decision_outputs(np.zeros((1, 7), np.float32), np.zeros((1, 3), np.float32), one[1], SPEC)
    with pytest.raises(InvalidInputError, match="CROP_SCORES"):
        decision_outputs(np.zeros((2, 7), np.float32), two[0], one[1], SPEC)


# ----------------------------------------------------------------- python_model plumbing


def _args(parameters: dict[str, str]) -> dict[str, str]:
    config = {"parameters": {k: {"string_value": v} for k, v in parameters.items()}}
    return {"model_config": json.dumps(config), "model_repository": "/m/x", "model_version": "1"}


def test_parameters_and_version_dir() -> None:
    args = _args({"MAX_HANDS": "5", "EMPTY": ""})
    assert pm.int_parameter(args, "MAX_HANDS", 16, minimum=1) == 5
    assert pm.int_parameter(args, "MISSING", 16) == 16
    assert pm.int_parameter(args, "EMPTY", 7) == 7
    assert str(pm.version_dir(args)) == "/m/x/1"
    with pytest.raises(ValueError, match="at least 1"):
        pm.int_parameter(_args({"MAX_HANDS": "0"}), "MAX_HANDS", 16, minimum=1)
    with pytest.raises(ValueError, match="integer"):
        pm.int_parameter(_args({"MAX_HANDS": "many"}), "MAX_HANDS", 16)


class _FakeError:
    INVALID_ARG, INTERNAL = "INVALID_ARG", "INTERNAL"

    def __init__(self, message: str, code: str):
        self.message, self.code = message, code


class _FakeUtils:
    """Just enough of triton_python_backend_utils to see which responses are made."""

    TritonError = _FakeError
    logged: ClassVar[list[str]] = []

    class Logger:
        @staticmethod
        def log_error(message: str) -> None:
            _FakeUtils.logged.append(message)

    @staticmethod
    def Tensor(name: str, value: np.ndarray) -> tuple[str, np.ndarray]:
        return name, value

    @staticmethod
    def InferenceResponse(output_tensors=None, error=None):
        return {"outputs": output_tensors, "error": error}


def test_respond_each_isolates_failures() -> None:
    def handle(request: int) -> dict[str, np.ndarray]:
        if request == 1:
            raise InvalidImageError("bad photo")
        if request == 2:
            raise ZeroDivisionError("bug")
        return {"Y": np.array([request])}

    responses = pm.respond_each(_FakeUtils, [0, 1, 2, 3], handle, "m")  # type: ignore[arg-type]
    assert [r["error"] is None for r in responses] == [True, False, False, True]
    assert (
        responses[1]["error"].code == "INVALID_ARG" and "bad photo" in responses[1]["error"].message
    )
    assert (
        responses[2]["error"].code == "INTERNAL"
        and "ZeroDivisionError" in responses[2]["error"].message
    )
    assert any("ZeroDivisionError" in line for line in _FakeUtils.logged)


def test_decode_bytes_input_byte_limit_is_checked_before_decoding() -> None:
    encoded = _png(_photo())
    assert decode_bytes_input(np.array([encoded], dtype=np.object_), MAX_PIXELS, len(encoded)).size
    with pytest.raises(InvalidInputError, match=f"more than the limit of {len(encoded) - 1}"):
        decode_bytes_input(np.array([encoded], dtype=np.object_), MAX_PIXELS, len(encoded) - 1)
