"""Box post-processing between detector and classifier: ordering, expansion, clipping, crops."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gesture_recognition.boxes import (
    CropConfig,
    as_boxes,
    clip_boxes,
    crop,
    expand_boxes,
    expanded_crops,
    limit_hands,
    pixel_window,
    select_topmost,
    topmost_hand_crop,
    topmost_order,
)

coord = st.floats(min_value=-5000, max_value=5000, allow_nan=False, width=32)
box = st.tuples(coord, coord, coord, coord)
boxes = st.lists(box, min_size=0, max_size=8)
side = st.integers(min_value=1, max_value=3000)
configs = st.builds(
    CropConfig,
    scale=st.floats(min_value=1.0, max_value=4.0, allow_nan=False),
    square=st.booleans(),
)


def assert_inside_and_nonempty(out: np.ndarray, width: int, height: int) -> None:
    assert out.dtype == np.float32 and out.shape[1] == 4
    x1, y1, x2, y2 = out.T
    assert np.all(x1 >= 0) and np.all(y1 >= 0)
    assert np.all(x2 <= width) and np.all(y2 <= height)
    # "At least one pixel" up to float32 rounding (x1 + 1 is computed in float32).
    tol = 1e-3
    assert np.all(x2 - x1 >= 1.0 - tol) and np.all(y2 - y1 >= 1.0 - tol)


@given(boxes, side, side)
def test_clip_stays_in_image_and_is_never_empty(raw, width, height) -> None:
    out = clip_boxes(np.array(raw, dtype=np.float32).reshape(-1, 4), width, height)
    assert len(out) == len(raw)
    assert_inside_and_nonempty(out, width, height)


@given(boxes, side, side)
def test_clip_is_idempotent(raw, width, height) -> None:
    once = clip_boxes(np.array(raw, dtype=np.float32).reshape(-1, 4), width, height)
    np.testing.assert_array_equal(clip_boxes(once, width, height), once)


@given(boxes, configs, side, side)
def test_expand_stays_in_image_and_is_never_empty(raw, config, width, height) -> None:
    out = expand_boxes(np.array(raw, dtype=np.float32).reshape(-1, 4), config, width, height)
    assert_inside_and_nonempty(out, width, height)


@given(st.data(), configs, side, side)
def test_expand_contains_a_box_inside_the_image(data, config, width, height) -> None:
    x1 = data.draw(st.floats(0, width - 1))
    y1 = data.draw(st.floats(0, height - 1))
    x2 = data.draw(st.floats(x1 + 1, width))
    y2 = data.draw(st.floats(y1 + 1, height))
    (ex1, ey1, ex2, ey2) = expand_boxes(np.array([[x1, y1, x2, y2]]), config, width, height)[0]
    tol = 1e-3 * max(width, height)
    assert ex1 <= x1 + tol and ey1 <= y1 + tol and ex2 >= x2 - tol and ey2 >= y2 - tol


def test_expand_scales_around_the_centre_and_squares() -> None:
    out = expand_boxes(np.array([[40, 40, 60, 80]]), CropConfig(scale=1.5, square=True), 200, 200)
    # 20x40 grown by 1.5 -> 30x60, squared on the long side -> 60x60 around (50, 60).
    np.testing.assert_allclose(out, [[20, 30, 80, 90]])
    out = expand_boxes(np.array([[40, 40, 60, 80]]), CropConfig(scale=1.5, square=False), 200, 200)
    np.testing.assert_allclose(out, [[35, 30, 65, 90]])


def test_a_box_wholly_outside_collapses_onto_the_border() -> None:
    out = clip_boxes(np.array([[500, -50, 600, -10], [-30, 10, -20, 20]]), 100, 80)
    np.testing.assert_array_equal(out, [[99, 0, 100, 1], [0, 10, 1, 20]])


@given(boxes, configs, st.integers(1, 48), st.integers(1, 48), st.integers(1, 4))
@settings(max_examples=60)
def test_crops_are_never_empty(raw, config, width, height, channels) -> None:
    image = np.arange(height * width * channels, dtype=np.uint8).reshape(height, width, channels)
    crops = expanded_crops(image, np.array(raw, dtype=np.float32).reshape(-1, 4), config)
    assert len(crops) == len(raw)
    for piece in crops:
        assert piece.ndim == 3 and piece.shape[0] >= 1 and piece.shape[1] >= 1
        assert piece.shape[0] <= height and piece.shape[1] <= width
        assert piece.shape[2] == channels


@given(box, side, side)
def test_pixel_window_is_inside_and_nonempty(raw, width, height) -> None:
    x1, y1, x2, y2 = pixel_window(np.array(raw, dtype=np.float32), width, height)
    assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height


def test_crop_takes_the_pixels_under_the_box() -> None:
    image = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)
    piece = crop(image, np.array([2.5, 1.0, 5.0, 4.2]))
    np.testing.assert_array_equal(piece, image[1:5, 2:5])
    with pytest.raises(ValueError):
        crop(image[:, :, 0], np.array([0, 0, 1, 1]))


@given(st.lists(box, min_size=1, max_size=10))
def test_topmost_order_sorts_by_top_then_left(raw) -> None:
    arr = np.array(raw, dtype=np.float32)
    order = topmost_order(arr)
    assert sorted(order.tolist()) == list(range(len(raw)))
    keys = [(arr[i, 1], arr[i, 0]) for i in order]
    assert keys == sorted(keys)
    top = select_topmost(arr)
    assert top == order[0] and arr[top, 1] == arr[:, 1].min()


def test_topmost_of_nothing() -> None:
    assert select_topmost(np.zeros((0, 4))) is None
    assert topmost_order(np.zeros((0, 4))).shape == (0,)
    image = np.zeros((20, 20, 3), np.uint8)
    assert topmost_hand_crop(image, np.zeros((0, 4)), CropConfig()) is None


def test_topmost_hand_crop_uses_the_highest_box() -> None:
    image = np.zeros((100, 100, 3), np.uint8)
    image[10:20, 60:70] = 255  # the raised hand
    lower, upper = [5, 50, 25, 70], [60, 10, 70, 20]
    piece = topmost_hand_crop(image, np.array([lower, upper]), CropConfig(scale=1.0))
    assert piece is not None and piece.shape[:2] == (10, 10) and piece.min() == 255


def test_limit_hands_keeps_the_most_confident() -> None:
    scores = np.array([0.2, 0.9, 0.5, 0.9], dtype=np.float32)
    np.testing.assert_array_equal(limit_hands(scores, 3), [1, 3, 2])
    np.testing.assert_array_equal(limit_hands(scores, 10), [1, 3, 2, 0])
    with pytest.raises(ValueError):
        limit_hands(scores, 0)


def test_as_boxes_validates() -> None:
    assert as_boxes([]).shape == (0, 4)
    assert as_boxes([1, 2, 3, 4]).shape == (1, 4)
    with pytest.raises(ValueError, match="shape"):
        as_boxes(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        as_boxes([[0, 0, np.nan, 1]])
    with pytest.raises(ValueError):
        clip_boxes(np.zeros((1, 4)), 0, 10)


def test_crop_config_limits_and_round_trip() -> None:
    for bad in (0.5, 4.5, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            CropConfig(scale=bad)
    config = CropConfig(scale=1.35, square=False)
    assert CropConfig.from_dict(config.to_dict()) == config
    assert CropConfig.from_dict({}) == CropConfig()
