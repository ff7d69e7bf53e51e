"""The detector's second pass (``second_pass_imgsz``): when it runs, on which canvas, and that
the in-process pipeline and the cpu flavour's detector step take the same path."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gesture_recognition.artifacts import (
    DETECTOR_JSON,
    DetectorSpec,
    read_detector_spec,
    shipped_models_dir,
)
from gesture_recognition.detector_passes import run_detector
from gesture_recognition.images import load_image
from gesture_recognition.pipeline import GesturePipeline
from gesture_recognition.serving import steps
from gesture_recognition.serving.configs import ServingOptions, flavour_steps, read_specs
from gesture_recognition.training.zoomed_sets import zoom_out
from tests.conftest import models_with_second_pass, sample_photos

SPEC = DetectorSpec(
    imgsz=320, conf_threshold=0.3, letterbox_stride=32, min_canvas_side=128, second_pass_imgsz=640
)


class Network:
    """Answers one hand on the canvas centre when the canvas is at least ``finds_from`` wide
    (and nothing on smaller canvases); records each input's shape."""

    def __init__(self, finds_from: int) -> None:
        self.finds_from = finds_from
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.shapes.append(batch.shape)
        rows = np.zeros((1, 300, 6), np.float32)
        h, w = batch.shape[2:]
        if w >= self.finds_from:
            rows[0, 0] = (w / 2 - 10, h / 2 - 10, w / 2 + 10, h / 2 + 10, 0.9, 0)
        return rows


def with_second_pass(tmp_path: Path) -> tuple[Path, DetectorSpec]:
    """The shipped models with a second pass at 640; the shipped detector spec."""
    shipped = shipped_models_dir()
    models = models_with_second_pass(tmp_path / "models", shipped)
    return models, read_detector_spec(shipped / DETECTOR_JSON)


def test_spec_field_is_checked_and_round_trips() -> None:
    assert DetectorSpec.from_dict(SPEC.to_dict()) == SPEC
    assert SPEC.second_pass == replace(SPEC, imgsz=640, second_pass_imgsz=0)
    plain = replace(SPEC, second_pass_imgsz=0)
    assert plain.second_pass is None and "second_pass_imgsz" not in plain.to_dict()
    for bad in (320, 256, 650):  # not larger than imgsz; not a multiple of the stride
        with pytest.raises(ValueError, match="second_pass_imgsz"):
            replace(SPEC, second_pass_imgsz=bad)
    with pytest.raises(ValueError, match="dynamic-shape canvas"):
        DetectorSpec(imgsz=320, second_pass_imgsz=640)  # a square, fixed canvas


def test_second_pass_only_where_the_first_finds_nothing() -> None:
    photo = np.zeros((480, 640, 3), np.uint8)
    first_finds = Network(finds_from=0)
    rows, params = run_detector(first_finds, photo, SPEC)
    assert first_finds.shapes == [(1, 3, 256, 320)] and rows[0, 0, 4] == pytest.approx(0.9)
    assert params.scale == pytest.approx(0.5)

    only_second = Network(finds_from=640)
    rows, params = run_detector(only_second, photo, SPEC)
    assert only_second.shapes == [(1, 3, 256, 320), (1, 3, 480, 640)]
    assert params.scale == pytest.approx(1.0)  # the placement of the pass that answered
    assert rows[0, 0, 4] == pytest.approx(0.9)

    none = Network(finds_from=10_000)
    run_detector(none, photo, SPEC)
    assert len(none.shapes) == 2  # looked twice, found nothing: the second pass's empty rows
    one_pass = Network(finds_from=10_000)
    run_detector(one_pass, photo, replace(SPEC, second_pass_imgsz=0))
    assert one_pass.shapes == [(1, 3, 256, 320)]


def test_a_box_under_the_threshold_does_not_count() -> None:
    class Weak(Network):
        def __call__(self, batch: np.ndarray) -> np.ndarray:
            rows = super().__call__(batch)
            rows[0, 0, 4] = 0.2 if batch.shape[3] < 640 else 0.9  # under SPEC's 0.3 at 320
            return rows

    weak = Weak(finds_from=0)
    run_detector(weak, np.zeros((480, 640, 3), np.uint8), SPEC)
    assert len(weak.shapes) == 2


def test_served_step_and_pipeline_take_the_same_path(tmp_path: Path) -> None:
    """A sample photo shown at a quarter of its size: the shipped detector finds no hand at 320
    and finds hands on the second pass; the cpu flavour's detector step returns the rows and
    placement the pipeline decodes."""
    models, spec = with_second_pass(tmp_path)
    photo, _ = zoom_out(
        load_image(sample_photos()[0]), np.zeros((0, 4), np.float32), 4, np.random.default_rng(0)
    )
    plain = GesturePipeline.from_dir(shipped_models_dir(), threads=1)
    assert len(plain.detect(photo)[0]) == 0, "precondition: pick a photo 320 misses"
    twice = GesturePipeline.from_dir(models, threads=1)
    boxes, scores = twice.detect(photo)
    assert len(boxes) > 0
    at_640 = GesturePipeline.from_dir(shipped_models_dir(), threads=1)
    at_640.detector.spec = replace(spec, imgsz=640)
    np.testing.assert_array_equal(boxes, at_640.detect(photo)[0])

    rows, placement = steps.detect(photo, twice.detector.spec, 10**8, twice.detector)
    served_boxes, served_scores, _ = steps.crop_hands(
        photo, rows, placement, spec.conf_threshold, twice.classifier.spec, 8, 10**8
    )
    np.testing.assert_allclose(served_boxes, boxes, atol=1e-4)
    np.testing.assert_allclose(served_scores, scores, atol=1e-6)


def test_native_flavours_refuse_a_second_pass(tmp_path: Path) -> None:
    models, _ = with_second_pass(tmp_path)
    specs = read_specs(models)
    assert flavour_steps("cpu", specs, ServingOptions())
    for flavour in ("onnxruntime", "tensorrt"):
        with pytest.raises(ValueError, match="cpu flavour only"):
            flavour_steps(flavour, specs, ServingOptions())
