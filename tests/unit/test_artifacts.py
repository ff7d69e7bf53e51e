"""The model specs: what the server and the in-process pipeline read beside each ONNX file."""

from __future__ import annotations

import json

import numpy as np
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
