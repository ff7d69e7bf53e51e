"""The model specs: what the server and the in-process pipeline read beside each ONNX file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gesture_recognition.artifacts import (
    CLASSIFIER_JSON,
    DETECTOR_JSON,
    ClassifierSpec,
    DetectorSpec,
    read_classifier_spec,
    read_detector_spec,
    shipped_models_dir,
    write_spec,
)
from gesture_recognition.json_fields import as_fields, as_float, as_floats, as_int


def test_detector_spec_round_trips_through_json(tmp_path) -> None:
    spec = DetectorSpec(imgsz=640, conf_threshold=0.3, letterbox_stride=32)
    write_spec(spec, tmp_path / DETECTOR_JSON)
    assert read_detector_spec(tmp_path / DETECTOR_JSON) == spec


def test_a_spec_written_before_the_stride_field_letterboxes_square(tmp_path) -> None:
    old = DetectorSpec().to_dict()
    del old["letterbox_stride"]
    (tmp_path / DETECTOR_JSON).write_text(json.dumps(old))
    spec = read_detector_spec(tmp_path / DETECTOR_JSON)
    assert spec.letterbox_stride == 0 and spec.min_side == spec.imgsz


@pytest.mark.parametrize(
    ("field", "value"),
    [("imgsz", None), ("imgsz", [320]), ("conf_threshold", "high"), ("letterbox_stride", True)],
)
def test_a_detector_spec_field_of_the_wrong_kind_is_named(tmp_path, field, value) -> None:
    data = DetectorSpec().to_dict()
    data[field] = value
    (tmp_path / DETECTOR_JSON).write_text(json.dumps(data))
    with pytest.raises(ValueError, match=field):
        read_detector_spec(tmp_path / DETECTOR_JSON)


@pytest.mark.parametrize(
    ("field", "value"),
    [("mean", 0.5), ("std", ["a", "b", "c"]), ("input_size", None), ("crop", [1.2])],
)
def test_a_classifier_spec_field_of_the_wrong_kind_is_named(tmp_path, field, value) -> None:
    data = read_classifier_spec(shipped_models_dir() / CLASSIFIER_JSON).to_dict()
    data[field] = value
    (tmp_path / CLASSIFIER_JSON).write_text(json.dumps(data))
    with pytest.raises(ValueError, match=field):
        read_classifier_spec(tmp_path / CLASSIFIER_JSON)


def test_the_shipped_classifier_spec_round_trips(tmp_path) -> None:
    spec = read_classifier_spec(shipped_models_dir() / CLASSIFIER_JSON)
    write_spec(spec, tmp_path / CLASSIFIER_JSON)
    assert ClassifierSpec.from_dict(json.loads((tmp_path / CLASSIFIER_JSON).read_text())) == spec


def test_json_fields_read_numbers_as_json_writes_them() -> None:
    assert as_int(320, "k") == 320 and as_int("320", "k") == 320 and as_int(320.0, "k") == 320
    assert as_float(0.25, "k") == 0.25 and as_float(1, "k") == 1.0 and as_float("0.5", "k") == 0.5
    assert as_floats([0.5, 1], "k") == (0.5, 1.0)
    assert as_fields({"a": 1}, "k") == {"a": 1}
    for bad in (None, True, [1], {"a": 1}, "x"):
        with pytest.raises(ValueError, match=r"^k must be"):
            as_int(bad, "k")
    with pytest.raises(ValueError, match="k must be a list"):
        as_floats("0.5", "k")
    with pytest.raises(ValueError, match="k must be an object"):
        as_fields([], "k")


@pytest.mark.parametrize(
    ("imgsz", "stride", "min_side", "message"),
    [
        (320, 30, 0, "multiple"),
        (320, -32, 0, ">= 0"),
        (0, 0, 0, "positive"),
        (320, 32, 48, "min_canvas_side"),
        (320, 32, 352, "min_canvas_side"),
        (320, 0, 64, "min_canvas_side"),
    ],
)
def test_detector_spec_refuses_inconsistent_values(imgsz, stride, min_side, message) -> None:
    with pytest.raises(ValueError, match=message):
        DetectorSpec(imgsz=imgsz, letterbox_stride=stride, min_canvas_side=min_side)


def test_min_side_is_the_stride_unless_raised() -> None:
    assert DetectorSpec(letterbox_stride=32).min_side == 32
    assert DetectorSpec(letterbox_stride=32, min_canvas_side=64).min_side == 64
    assert DetectorSpec().min_side == 320


def test_the_shipped_detector_letterboxes_to_its_stride() -> None:
    """The shipped detector's mAP in models/MODEL_CARD.md was measured with this canvas."""
    spec = read_detector_spec(shipped_models_dir() / DETECTOR_JSON)
    assert (spec.imgsz, spec.letterbox_stride, spec.min_side) == (320, 32, 128)


@pytest.mark.parametrize("shape", [(40, 1000, 3), (1000, 40, 3), (8, 1024, 3), (480, 640, 3)])
def test_the_shipped_detector_runs_on_every_canvas_it_can_get(shape) -> None:
    """A strip photo gets the smallest canvas; its TopK of 300 rows needs the anchors of
    min_canvas_side (320x32 has 210 and failed inside ONNX Runtime)."""
    from gesture_recognition.pipeline import GesturePipeline

    pipeline = GesturePipeline.from_dir()
    result = pipeline(np.zeros(shape, np.uint8))
    assert result.gesture == "no_gesture" and len(result.hand_boxes) == 0
