"""SceneContext: tight crops shown over real hands of real photos (the served crop's margin)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from gesture_recognition.images import load_image
from gesture_recognition.training.scene_context import SceneContext
from gesture_recognition.training.served_view import ServedView


@pytest.fixture(scope="module")
def scenes(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three real Roboflow photos with their hand boxes, as an ``images/train`` folder."""
    root = tmp_path_factory.mktemp("scenes")
    src = shared_data / "roboflow_hands" / "valid"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    photos = sorted((src / "images").glob("*.jpg"))[:3]
    assert len(photos) == 3
    for photo in photos:
        (root / "images" / "train" / photo.name).symlink_to(photo)
        # Roboflow's labels are oriented boxes; a plain YOLO box of the photo's middle will do.
        (root / "labels" / "train" / f"{photo.stem}.txt").write_text("0 0.5 0.5 0.25 0.4\n")
    return root / "images" / "train"


@pytest.fixture(scope="module")
def crop(shared_data: Path) -> np.ndarray:
    root = shared_data / "hagrid_hand_crops"
    with (root / "manifest.csv").open(newline="", encoding="utf-8") as f:
        row = next(r for r in csv.DictReader(f) if int(r["height"]) > int(r["width"]) + 10)
    return load_image(root / row["path"])


def test_the_canvas_is_the_photo_around_its_hand(scenes: Path) -> None:
    context = SceneContext([scenes])
    assert len(context) == 3
    path, box = context.sites[0]
    photo = load_image(path)
    h, w = photo.shape[:2]
    assert np.allclose(box, [0.375 * w, 0.3 * h, 0.625 * w, 0.7 * h], atol=1)
    # The scene hand (0.25w x 0.4h) fitted inside a 40 x 40 paste site at (30, 20) of 100 x 100.
    canvas = context.canvas(100, 100, (30, 20, 40, 40), pick=0.0)
    assert canvas.shape == (100, 100, 3) and canvas.dtype == np.uint8
    assert canvas.flags.writeable
    factor = max(box[2] - box[0], box[3] - box[1]) / 40  # photo px per canvas px
    # Canvas pixel (50, 40), the site's centre, is the hand box's centre in the photo.
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    expected = photo[int(cy), int(cx)].astype(int)
    assert np.abs(canvas[40, 50].astype(int) - expected).max() <= 40
    # A small paste site: the canvas reaches far past the photo, whose edge pixels extend there.
    wide = context.canvas(100, 100, (0, 0, 10, 10), pick=0.0)
    assert np.abs(wide[-1, -1].astype(int) - photo[-1, -1].astype(int)).max() <= 2
    assert factor > 1  # the scene's hand is larger than the site: the photo is shrunk


def test_served_view_with_context_keeps_the_crop_whole(scenes: Path, crop: np.ndarray) -> None:
    torch.manual_seed(0)
    context = SceneContext([scenes])
    view = ServedView(context=context, context_share=1.0)
    small = crop[::2, ::2].copy()
    h, w = small.shape[:2]
    outs = [view(small) for _ in range(6)]
    for out in outs:
        side = out.shape[0]
        assert out.shape == (side, side, 3)
        # The crop is pasted unchanged somewhere (the shift), the margin is the photo.
        found = any(
            np.array_equal(out[t : t + h, x : x + w], small)
            for t in range(side - h + 1)
            for x in range(side - w + 1)
        )
        assert found
    # Different photos and places: the margins differ between draws.
    assert len({out[:3, :3].tobytes() for out in outs}) > 1
    # Share 0: never the photo, the very draws of the crop-only view.
    never = ServedView(context=context, context_share=0.0)
    torch.manual_seed(3)
    with_context = [never(small) for _ in range(4)]
    torch.manual_seed(3)
    plain = [ServedView()(small) for _ in range(4)]
    assert all(np.array_equal(a, b) for a, b in zip(with_context, plain, strict=True))


def test_bad_context_arguments(tmp_path: Path, scenes: Path) -> None:
    with pytest.raises(FileNotFoundError):
        SceneContext([tmp_path / "nowhere"])
    empty = tmp_path / "images" / "train"
    empty.mkdir(parents=True)
    with pytest.raises(ValueError, match="no boxed hand"):
        SceneContext([empty])
    with pytest.raises(ValueError, match="context_share"):
        ServedView(context=SceneContext([scenes]), context_share=1.5)
