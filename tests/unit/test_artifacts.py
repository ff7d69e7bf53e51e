"""The model specs: what the server and the in-process pipeline read beside each ONNX file."""

from __future__ import annotations

import json

import pytest

from gesture_recognition.artifacts import (
    DETECTOR_JSON,
    DetectorSpec,
    read_detector_spec,
    shipped_models_dir,
    write_spec,
)


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
    ("imgsz", "stride", "message"),
    [(320, 30, "multiple"), (320, -32, ">= 0"), (0, 0, "positive")],
)
def test_detector_spec_refuses_inconsistent_values(imgsz, stride, message) -> None:
    with pytest.raises(ValueError, match=message):
        DetectorSpec(imgsz=imgsz, letterbox_stride=stride)


def test_the_shipped_detector_letterboxes_to_its_stride() -> None:
    """The shipped detector's mAP in models/MODEL_CARD.md was measured with this canvas."""
    spec = read_detector_spec(shipped_models_dir() / DETECTOR_JSON)
    assert (spec.imgsz, spec.letterbox_stride, spec.min_side) == (320, 32, 32)
