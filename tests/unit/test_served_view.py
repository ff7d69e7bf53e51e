"""ServedView: a tight hand crop shown in the geometry the server cuts around a detector box."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from gesture_recognition.boxes import CropConfig, expand_boxes
from gesture_recognition.images import load_image
from gesture_recognition.training.served_view import ServedView


@pytest.fixture(scope="module")
def tight_crops(shared_data: Path) -> list[np.ndarray]:
    """Three real HaGRID tight hand crops (portrait, landscape, any)."""
    root = shared_data / "hagrid_hand_crops"
    with (root / "manifest.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:400]
    tall = next(r for r in rows if int(r["height"]) > int(r["width"]) + 10)
    wide = next(r for r in rows if int(r["width"]) > int(r["height"]) + 10)
    return [load_image(root / r["path"]) for r in (tall, wide, rows[0])]


def find(canvas: np.ndarray, crop: np.ndarray) -> tuple[int, int] | None:
    """Where ``crop`` sits unchanged inside ``canvas`` (top, left), or None."""
    h, w = crop.shape[:2]
    for top in range(canvas.shape[0] - h + 1):
        for left in range(canvas.shape[1] - w + 1):
            if canvas[top, left, 0] == crop[0, 0, 0] and np.array_equal(
                canvas[top : top + h, left : left + w], crop
            ):
                return top, left
    return None


def test_deterministic_view_is_the_served_square(tight_crops: list[np.ndarray]) -> None:
    config = CropConfig()
    view = ServedView.deterministic(config)
    for crop in tight_crops:
        h, w = crop.shape[:2]
        out = view(crop)
        # The server: the box grown x1.2 around its centre, squared on its longer side.
        box = np.array([[100.0, 100.0, 100.0 + w, 100.0 + h]], np.float32)
        served = expand_boxes(box, config, 10_000, 10_000)[0]
        side = served[2] - served[0]
        assert out.shape == (round(max(h, w) * config.scale),) * 2 + (3,)
        assert out.dtype == np.uint8 and abs(out.shape[0] - side) <= 1
        # Centred, pixels untouched, as the hand sits in the middle of the served crop.
        top, left = (out.shape[0] - h) // 2, (out.shape[1] - w) // 2
        assert np.array_equal(out[top : top + h, left : left + w], crop)
        # Edge fill: the margin repeats the crop's border pixels.
        assert np.array_equal(out[0, left : left + w], crop[0])
        assert np.array_equal(out[top : top + h, 0], crop[:, 0])
        assert np.array_equal(out[-1, -1], crop[-1, -1])
        assert np.array_equal(view(crop), out)  # no randomness


@pytest.mark.parametrize("fill", ServedView.FILLS)
def test_random_views_keep_the_hand_whole(tight_crops: list[np.ndarray], fill: str) -> None:
    torch.manual_seed(0)
    view = ServedView(scales=(1.05, 1.4), shift=0.08, fills=(fill,))
    crop = tight_crops[0][::2, ::2].copy()  # smaller: the search below stays fast
    h, w = crop.shape[:2]
    sides, lefts = set(), set()
    for _ in range(12):
        out = view(crop)
        side = out.shape[0]
        assert out.shape == (side, side, 3) and out.dtype == np.uint8
        assert round(max(h, w) * 1.05) - 1 <= side <= round(max(h, w) * 1.4) + 1
        where = find(out, crop)
        assert where is not None, "the crop must appear whole and unchanged"
        top, left = where
        assert abs(left - (side - w) / 2) <= 0.08 * side + 1  # shifted by at most `shift`
        assert abs(top - (side - h) / 2) <= 0.08 * side + 1
        sides.add(side)
        lefts.add(left - (side - w) // 2)
    assert len(sides) > 1 and len(lefts) > 1  # scale and shift do vary


def test_colour_fill_is_the_mean_border_colour() -> None:
    crop = np.zeros((20, 10, 3), np.uint8)
    crop[:, :, 0] = 200  # red everywhere, so the border mean is (200, 0, 0)
    crop[5:15, 3:7] = 50
    out = ServedView((2.0, 2.0), 0.0, ("colour",), random=False)(crop)
    assert out.shape == (40, 40, 3)
    assert np.array_equal(out[0, 0], [200, 0, 0]) and np.array_equal(out[-1, -1], [200, 0, 0])
    assert np.array_equal(out[10:30, 15:25], crop)


def test_square_input_with_scale_one_is_unchanged() -> None:
    crop = np.arange(5 * 5 * 3, dtype=np.uint8).reshape(5, 5, 3)
    assert np.array_equal(ServedView((1.0, 1.0), 0.0, ("edge",), random=False)(crop), crop)


@pytest.mark.parametrize(
    "kwargs",
    [{"scales": (0.9, 1.2)}, {"scales": (1.4, 1.2)}, {"fills": ("mirror",)}, {"fills": ()}],
)
def test_bad_settings_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ServedView(**kwargs)
