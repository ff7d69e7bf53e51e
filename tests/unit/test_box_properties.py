"""Property-based tests of the box geometry beyond test_boxes.py: any finite coordinates
(float32 extremes included), thin photos, detector rows with NaN/Inf, idempotence."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gesture_recognition.boxes import (
    CropConfig,
    box_iou,
    clip_boxes,
    crop,
    expand_boxes,
    expanded_crops,
    pixel_window,
    topmost_order,
)
from gesture_recognition.detections import decode_detections, distinct_boxes
from gesture_recognition.letterbox import LetterboxParams

F32_MAX = float(np.finfo(np.float32).max)
any_coord = st.floats(min_value=-F32_MAX, max_value=F32_MAX, allow_nan=False, width=32)
any_box = st.tuples(any_coord, any_coord, any_coord, any_coord)
any_boxes = st.lists(any_box, min_size=1, max_size=6)
# Thin photos included: 1 px wide or high, up to the 8M-long side a 64 MP limit allows.
side = st.one_of(st.integers(1, 16), st.integers(1, 8_000_000))
configs = st.builds(CropConfig, scale=st.floats(1.0, 4.0, allow_nan=False), square=st.booleans())


def _arr(raw: list) -> np.ndarray:
    return np.array(raw, dtype=np.float32).reshape(-1, 4)


def _inside_and_nonempty(out: np.ndarray, width: int, height: int) -> None:
    assert np.all(np.isfinite(out))
    x1, y1, x2, y2 = out.T.astype(np.float64)
    assert np.all(x1 >= 0) and np.all(y1 >= 0) and np.all(x2 <= width) and np.all(y2 <= height)
    # One pixel, up to float32 spacing at the coordinate (0.5 near 8M).
    tol = np.spacing(np.float32(max(width, height))) * 2
    assert np.all(x2 - x1 >= 1 - tol) and np.all(y2 - y1 >= 1 - tol)


@given(any_boxes, side, side)
def test_clip_any_finite_box_stays_inside_and_nonempty(raw, width, height) -> None:
    _inside_and_nonempty(clip_boxes(_arr(raw), width, height), width, height)


@given(any_boxes, configs, side, side)
def test_expand_any_finite_box_stays_inside_and_nonempty(raw, config, width, height) -> None:
    _inside_and_nonempty(expand_boxes(_arr(raw), config, width, height), width, height)


@given(any_boxes, configs, st.integers(1, 12), st.integers(1, 12))
@settings(max_examples=60)
def test_crops_of_any_box_on_thin_photos_are_never_empty(raw, config, width, height) -> None:
    image = np.arange(width * height * 3, dtype=np.uint8).reshape(height, width, 3)
    for piece in expanded_crops(image, _arr(raw), config):
        assert piece.shape[0] >= 1 and piece.shape[1] >= 1 and piece.shape[2] == 3


@given(any_box, st.integers(1, 4000), st.integers(1, 4000))
def test_pixel_window_is_idempotent(raw, width, height) -> None:
    window = pixel_window(np.array(raw, dtype=np.float32), width, height)
    again = pixel_window(np.array(window, dtype=np.float32), width, height)
    assert again == window


@given(st.data(), st.integers(2, 2000), st.integers(2, 2000))
def test_expanding_by_one_without_squaring_changes_nothing(data, width, height) -> None:
    x1 = data.draw(st.integers(0, width - 1))
    y1 = data.draw(st.integers(0, height - 1))
    x2 = data.draw(st.integers(x1 + 1, width))
    y2 = data.draw(st.integers(y1 + 1, height))
    box = np.array([[x1, y1, x2, y2]], np.float32)
    out = expand_boxes(box, CropConfig(scale=1.0, square=False), width, height)
    np.testing.assert_allclose(out, box, atol=1e-3)
    # ... and the crop is exactly the pixels under the box.
    image = np.zeros((height, width, 1), np.uint8)
    assert crop(image, out[0]).shape[:2] == (y2 - y1, x2 - x1)


@given(st.data(), configs, st.integers(50, 3000), st.integers(50, 3000))
def test_a_square_expansion_that_fits_is_square(data, config, width, height) -> None:
    cx = data.draw(st.floats(0, width))
    cy = data.draw(st.floats(0, height))
    w = data.draw(st.floats(1, 20))
    h = data.draw(st.floats(1, 20))
    box = np.array([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]], np.float32)
    (x1, y1, x2, y2) = expand_boxes(box, config, width, height)[0]
    fits = x1 > 0 and y1 > 0 and x2 < width and y2 < height
    if config.square and fits:
        assert abs((x2 - x1) - (y2 - y1)) < 1e-2


@given(st.lists(st.tuples(st.floats(0, 500), st.floats(0, 500)), min_size=1, max_size=10))
def test_topmost_order_is_a_permutation_sorted_by_top_then_left(corners) -> None:
    boxes = np.array([[x, y, x + 10, y + 10] for x, y in corners], np.float32)
    order = topmost_order(boxes)
    assert sorted(order.tolist()) == list(range(len(boxes)))
    keys = [(boxes[i, 1], boxes[i, 0]) for i in order]
    assert keys == sorted(keys)


special = st.sampled_from([np.nan, np.inf, -np.inf])
row_value = st.one_of(st.floats(-1e6, 1e6, width=32), special)


@given(
    st.lists(st.tuples(*[row_value] * 6), min_size=0, max_size=12),
    st.floats(0.01, 10.0),
    st.floats(-500, 500),
    st.floats(-500, 500),
    st.integers(1, 3000),
    st.integers(1, 3000),
    st.floats(0.0, 1.0),
)
def test_decoded_detections_are_finite_inside_and_confident(
    rows, scale, pad_x, pad_y, width, height, threshold
) -> None:
    raw = np.array(rows, dtype=np.float32).reshape(-1, 6)
    params = LetterboxParams.from_array(np.array([scale, pad_x, pad_y], np.float32))
    boxes, scores = decode_detections(raw, params, width, height, threshold)
    assert len(boxes) == len(scores) <= len(raw)
    assert np.all(np.isfinite(scores)) and np.all(scores >= threshold)
    assert np.all(np.diff(scores) <= 0)  # most confident first
    if len(boxes):
        _inside_and_nonempty(boxes, width, height)


def test_decoding_drops_a_second_box_on_the_same_hand() -> None:
    # Rows as the fine-tuned NMS-free head gave them on a close-up webcam hand (IoU ~0.97),
    # plus a second hand that overlaps the first one a little: it stays.
    raw = np.array(
        [
            [106, 35, 304, 450, 0.59, 0],
            [108, 36, 305, 463, 0.81, 0],
            [280, 60, 420, 300, 0.40, 0],
            [0, 0, 0, 0, 0.0, 0],
        ],
        dtype=np.float32,
    )
    params = LetterboxParams.from_array(np.array([1.0, 0.0, 0.0], np.float32))
    boxes, scores = decode_detections(raw, params, 640, 480, 0.25)
    np.testing.assert_allclose(scores, [0.81, 0.40])
    np.testing.assert_allclose(boxes, [[108, 36, 305, 463], [280, 60, 420, 300]])


@given(st.floats(0.0, 1.0), st.integers(0, 8))
def test_distinct_boxes_keep_no_pair_above_the_limit(max_iou: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 100, (12, 2))
    boxes = np.hstack([xy, xy + rng.uniform(5, 60, (12, 2))]).astype(np.float32)
    keep = distinct_boxes(boxes, max_iou)
    assert keep[0] == 0  # the most confident box always stays
    iou = box_iou(boxes[keep], boxes[keep])
    np.fill_diagonal(iou, 0.0)
    assert np.all(iou <= max_iou)
    # Every dropped box overlaps a kept, more confident one by more than the limit.
    for i in sorted(set(range(12)) - set(keep.tolist())):
        assert np.any(box_iou(boxes[i : i + 1], boxes[keep[keep < i]]) > max_iou)
