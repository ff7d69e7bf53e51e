"""Letterboxing for the detector and the mapping of its boxes back to the photo."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gesture_recognition.letterbox import (
    PAD_VALUE,
    LetterboxParams,
    canvas_shape,
    letterbox,
    min_canvas_side,
    to_detector_tensor,
    unletterbox_boxes,
)

sizes = st.integers(min_value=9, max_value=401)
canvas_sizes = st.sampled_from([32, 63, 64, 97, 160, 320])
strides = st.sampled_from([0, 8, 32])


def to_canvas(boxes: np.ndarray, params: LetterboxParams) -> np.ndarray:
    out = boxes.astype(np.float64).copy()
    out[:, [0, 2]] = out[:, [0, 2]] * params.scale + params.pad_x
    out[:, [1, 3]] = out[:, [1, 3]] * params.scale + params.pad_y
    return out


@given(st.data(), sizes, sizes, canvas_sizes, strides)
@settings(max_examples=60, deadline=None)
def test_round_trip_through_the_canvas_pixels(data, width, height, size, stride) -> None:
    """A white box drawn in the photo is found in the canvas and maps back within 1 px.

    The tolerance is one canvas pixel (1 / scale photo pixels): resizing blurs the box edge
    by about half a canvas pixel.
    """
    _, params = letterbox(np.zeros((height, width, 3), np.uint8), size, stride)
    min_side = int(np.ceil(4 / params.scale))  # at least 4 canvas pixels, or it blurs away
    assume(min_side < min(width, height))
    x1 = data.draw(st.integers(0, width - min_side))
    y1 = data.draw(st.integers(0, height - min_side))
    x2 = data.draw(st.integers(x1 + min_side, width))
    y2 = data.draw(st.integers(y1 + min_side, height))
    photo = np.zeros((height, width, 3), np.uint8)
    photo[y1:y2, x1:x2] = 255
    canvas, params = letterbox(photo, size, stride)
    assert canvas.shape == (*canvas_shape(width, height, size, stride), 3)
    assert canvas.dtype == np.uint8
    # Half way between the black photo and the white box; the grey pad (114) stays below.
    rows, cols = np.nonzero(canvas[:, :, 0] > 127)
    found = np.array([[cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]], np.float32)
    truth = np.array([[x1, y1, x2, y2]], np.float32)
    assert np.abs(found - to_canvas(truth, params)).max() <= 1.0 + 1e-6
    back = unletterbox_boxes(found, params)
    assert np.abs(back - truth).max() <= 1.0 / params.scale + 1e-4


@given(
    sizes,
    sizes,
    canvas_sizes,
    strides,
    st.lists(st.floats(0, 1, width=32), min_size=4, max_size=4),
)
def test_unletterbox_inverts_the_placement(width, height, size, stride, fractions) -> None:
    _, params = letterbox(np.zeros((height, width, 3), np.uint8), size, stride)
    fx1, fy1, fx2, fy2 = fractions
    truth = np.array([[fx1 * width, fy1 * height, fx2 * width, fy2 * height]], np.float32)
    restored = LetterboxParams.from_array(params.as_array())
    back = unletterbox_boxes(to_canvas(truth, params).astype(np.float32), restored)
    np.testing.assert_allclose(back, truth, atol=1e-2)


@pytest.mark.parametrize(("width", "height"), [(640, 480), (481, 641), (333, 333), (17, 999)])
def test_photo_is_centred_and_padded_with_grey(width, height) -> None:
    photo = np.full((height, width, 3), 7, np.uint8)
    canvas, params = letterbox(photo, 320)
    assert params.scale == pytest.approx(min(320 / width, 320 / height))
    new_w, new_h = round(width * params.scale), round(height * params.scale)
    x0, y0 = int(params.pad_x), int(params.pad_y)
    assert (x0, y0) == ((320 - new_w) // 2, (320 - new_h) // 2)
    assert np.all(canvas[y0 : y0 + new_h, x0 : x0 + new_w] == 7)
    mask = np.ones((320, 320), bool)
    mask[y0 : y0 + new_h, x0 : x0 + new_w] = False
    assert np.all(canvas[mask] == PAD_VALUE)


@given(st.integers(8, 1200), st.integers(8, 1200), st.sampled_from([64, 160, 320, 640]))
@settings(max_examples=80, deadline=None)
def test_stride_canvas_is_ultralytics_rectangular_letterbox(width, height, size) -> None:
    """With a stride the canvas and the photo's place on it are those of ultralytics'
    ``LetterBox(auto=True)``, what its predict and val run a dynamic-shape model on."""
    from ultralytics.data.augment import LetterBox

    scale = min(size / width, size / height)
    # A side that rounds to 0 px: ultralytics resizes to nothing, this letterbox keeps 1 px.
    assume(round(width * scale) >= 1 and round(height * scale) >= 1)
    photo = np.zeros((height, width, 3), np.uint8)
    theirs = LetterBox((size, size), auto=True, stride=32)(image=photo)
    ours, params = letterbox(photo, size, 32)
    assert ours.shape == theirs.shape
    assert ours.shape[0] % 32 == 0 and ours.shape[1] % 32 == 0
    assert max(ours.shape[:2]) == size
    # Where the (black) photo sits: the same rows and columns in both canvases.
    for canvas in (ours, theirs):
        rows, cols = np.nonzero(canvas[:, :, 0] != PAD_VALUE)
        assert (cols.min(), rows.min()) == (params.pad_x, params.pad_y)
        assert (cols.max() + 1, rows.max() + 1) == (
            params.pad_x + round(width * params.scale),
            params.pad_y + round(height * params.scale),
        )


def test_min_canvas_side_keeps_enough_anchors_for_the_detector_rows() -> None:
    # YOLO P3-P5 with 300 output rows: a 96x96 canvas has 189 anchors, 128x128 has 336.
    assert min_canvas_side(320, (8, 16, 32), 300) == 128
    assert min_canvas_side(640, (8, 16, 32), 300) == 128
    assert min_canvas_side(320, (8, 16, 32), 10**6) == 320  # never more than square
    # A strip photo gets the minimum; usual aspects are above it and keep their canvas.
    assert canvas_shape(1000, 40, 320, 32, 128) == (128, 320)
    assert canvas_shape(40, 1000, 320, 32, 128) == (320, 128)
    assert canvas_shape(640, 480, 320, 32, 128) == (256, 320)
    assert canvas_shape(1920, 1080, 320, 32, 128) == (192, 320)
    assert canvas_shape(640, 480, 320, 32, 320) == (320, 320)
    canvas, params = letterbox(np.zeros((40, 1000, 3), np.uint8), 320, 32, 128)
    assert canvas.shape == (128, 320, 3)
    # The 13 px high strip (40 * 0.32) sits centred in the 128 px canvas.
    assert (params.pad_x, params.pad_y) == (0, (128 - 13) // 2)


def test_stride_canvas_of_a_vga_photo() -> None:
    canvas, params = letterbox(np.zeros((480, 640, 3), np.uint8), 320, 32)
    assert canvas.shape == (256, 320, 3)
    assert (params.scale, params.pad_x, params.pad_y) == (0.5, 0, 8)
    assert canvas_shape(480, 640, 320, 32) == (320, 256)  # portrait: width 480 -> 240 -> 256
    with pytest.raises(ValueError, match="stride"):
        letterbox(np.zeros((4, 4, 3), np.uint8), 32, -1)


def test_detector_tensor_layout_and_range() -> None:
    canvas = np.zeros((8, 8, 3), np.uint8)
    canvas[..., 0] = 255
    tensor = to_detector_tensor(canvas)
    assert tensor.shape == (1, 3, 8, 8) and tensor.dtype == np.float32
    assert np.all(tensor[0, 0] == 1.0) and np.all(tensor[0, 1:] == 0.0)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError):
        letterbox(np.zeros((10, 10), np.uint8), 32)
    with pytest.raises(ValueError):
        letterbox(np.zeros((10, 10, 4), np.uint8), 32)
    with pytest.raises(ValueError):
        LetterboxParams.from_array(np.zeros(2, np.float32))


def test_a_whole_factor_shrink_is_a_box_average() -> None:
    """The letterbox shrinks by PIL's box reduce() before any bilinear step: halving a photo
    gives the mean of each 2x2 block (antialiased: a fine checkerboard becomes flat grey)."""
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    canvas, params = letterbox(photo, 160)
    assert params.scale == 0.5 and (params.pad_x, params.pad_y) == (0, 20)
    blocks = photo.reshape(120, 2, 160, 2, 3).astype(np.float64).mean(axis=(1, 3))
    placed = canvas[20:140].astype(np.float64)
    assert np.abs(placed - blocks).max() <= 1.0
    checker = np.indices((240, 320)).sum(axis=0) % 2 * 255
    flat, _ = letterbox(np.repeat(checker[..., None], 3, axis=2).astype(np.uint8), 160)
    assert np.abs(flat[20:140].astype(int) - 128).max() <= 1
