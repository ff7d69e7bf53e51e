"""Detector test sets from real Roboflow photos, and any labeller's cached boxes scored on them.

The cached "labellers" are stand-ins whose boxes are derived from the true boxes, so every
score has an exact expected value (recall, precision and IoU of known boxes, not a model's).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from gesture_recognition.training import evaluate as ev
from gesture_recognition.training.converters.merge import build_detector_dataset, parse_source
from gesture_recognition.training.detect_cache import Labeller, cache_boxes
from gesture_recognition.training.detector_sets import grow, load_set, padding_sweep, score

PHOTOS = 5


@pytest.fixture(scope="module")
def rf_root(shared_data: Path) -> Path:
    return shared_data / "roboflow_hands"


@pytest.fixture(scope="module")
def data_yaml(rf_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A converted dataset whose test split is five real Roboflow test photos (linked)."""
    src = tmp_path_factory.mktemp("src") / "rf"
    for photo in sorted((rf_root / "test" / "images").iterdir())[:PHOTOS]:
        for kind, suffix in (("images", ".jpg"), ("labels", ".txt")):
            dst = src / "test" / kind / f"{photo.stem}{suffix}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(rf_root / "test" / kind / f"{photo.stem}{suffix}")
    out = tmp_path_factory.mktemp("ds") / "rf"
    build_detector_dataset([parse_source(f"yolo:{src}:rft:split=test")], out)
    return out / "data.yaml"


def shrink(boxes: NDArray[np.float32], padding: float) -> NDArray[np.float32]:
    """The bare box that ``padding`` grows back into ``boxes``."""
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 / (1 + 2 * padding)
    return np.concatenate([c - half, c + half], axis=1).astype(np.float32)


def cached_labeller(answers: list[NDArray[np.float32]]) -> Labeller:
    it = iter(answers)

    def labeller(image: NDArray[np.uint8]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        boxes = next(it)
        return boxes, np.full(len(boxes), 0.9, np.float32)

    return labeller


def test_sets_from_a_data_yaml_and_from_an_images_folder(rf_root: Path, data_yaml: Path) -> None:
    from_yaml = load_set("rf", data_yaml, "test")
    assert len(from_yaml.images) == PHOTOS and from_yaml.sizes == [(640, 640)] * PHOTOS
    assert from_yaml.boxes == sum(len(t) for t in from_yaml.truths) >= PHOTOS
    folder = load_set("rf_all", rf_root / "test" / "images")
    assert len(folder.images) == len(list((rf_root / "test" / "images").iterdir()))
    # The same photo gives the same boxes both ways (oriented corners -> axis box).
    first = folder.images.index(from_yaml.images[0].resolve())
    np.testing.assert_allclose(folder.truths[first], from_yaml.truths[0], atol=0.05)
    # prefix keeps one source of a merged dataset (its files are named <source>_...).
    assert len(load_set("rf", data_yaml, "test", prefix="rft_").images) == PHOTOS
    with pytest.raises(ValueError, match="no images"):
        load_set("x", data_yaml, "test", prefix="subhih_")


def test_score_of_known_boxes() -> None:
    truths = [np.array([[10, 10, 50, 50]], np.float32), np.array([[0, 0, 20, 40]], np.float32)]
    exact = [(t, np.array([0.9], np.float32)) for t in truths]
    perfect = score(exact, truths, conf=0.5)
    assert (perfect["recall"], perfect["precision"], perfect["map50"]) == (1.0, 1.0, 1.0)
    assert perfect["mean_best_iou"] == pytest.approx(1.0) and perfect["gt_boxes"] == 2
    # A false positive below the operating point costs no precision; above it, it does.
    extra = [
        (
            np.array([[10, 10, 50, 50], [60, 60, 90, 90]], np.float32),
            np.array([0.9, 0.3], np.float32),
        ),
        exact[1],
    ]
    assert score(extra, truths, conf=0.5)["precision"] == 1.0
    low = score(extra, truths, conf=0.2)
    assert low["precision"] == pytest.approx(2 / 3) and low["detections"] == 3
    # A box of half the true area: IoU 0.5.
    half = [(np.array([[10, 10, 30, 50]], np.float32), np.array([0.9], np.float32)), exact[1]]
    assert score(half, truths, 0.5)["mean_best_iou"] == pytest.approx((0.5 + 1.0) / 2)


def test_grow_clips_to_the_photo() -> None:
    boxes = np.array([[10, 10, 30, 50], [0, 0, 100, 100]], np.float32)
    grown = grow(boxes, 0.25, 100, 100)
    assert grown.tolist() == [[5, 0, 35, 60], [0, 0, 100, 100]]
    assert grow(np.zeros((0, 4), np.float32), 0.1, 10, 10).shape == (0, 4)


def test_padding_sweep_finds_the_padding_that_matches(
    rf_root: Path, data_yaml: Path, tmp_path: Path
) -> None:
    s = load_set("rf", data_yaml, "test")
    bare = [shrink(t, 0.15) for t in s.truths]
    # The cache keys the real photos (the dataset links them) under their own root.
    cache = tmp_path / "pad0.json"
    cache_boxes(cached_labeller(bare), {"kind": "test"}, rf_root, cache, s.images)
    rows = padding_sweep([(s, cache)], [0.0, 0.15, 0.3])
    assert [(r["set"], r["padding"]) for r in rows] == [("rf", 0.0), ("rf", 0.15), ("rf", 0.3)]
    best = max(rows, key=lambda r: r["mean_best_iou"])
    assert best["padding"] == 0.15 and best["mean_best_iou"] == pytest.approx(1.0, abs=1e-3)
    assert best["recall"] == best["precision"] == 1.0
    assert rows[0]["mean_best_iou"] < 0.8


def test_evaluate_detector_scores_a_cache_with_its_seconds(
    rf_root: Path, data_yaml: Path, tmp_path: Path
) -> None:
    s = load_set("rf", data_yaml, "test")
    cache = tmp_path / "truth.json"
    cache_boxes(
        cached_labeller(list(s.truths)), {"kind": "test", "who": "x"}, rf_root, cache, s.images
    )
    result = ev.evaluate_detector(None, data_yaml, "test", cache=cache, name="cached")
    assert result["images"] == PHOTOS and result["gt_boxes"] == s.boxes
    assert result["served"]["conf_threshold"] == 0.5  # a cache's operating point by default
    assert (result["served"]["recall"], result["served"]["precision"]) == (1.0, 1.0)
    assert result["map50"] == pytest.approx(1.0)
    assert result["detector"] == {"kind": "test", "who": "x"}
    assert result["latency"]["median_ms"] >= 0 and "mean_ms" in result["latency"]
    # A set with a photo the cache never saw is refused, not scored on part of it.
    partial = tmp_path / "partial.json"
    cache_boxes(cached_labeller(list(s.truths)), {"kind": "test"}, rf_root, partial, s.images[:2])
    with pytest.raises(ValueError, match="label the whole set first"):
        ev.evaluate_detector(None, data_yaml, "test", cache=partial)


def test_a_photo_stored_sideways_is_scored_upright(tmp_path: Path) -> None:
    """Labels describe the photo as shown (as ultralytics reads it); a phone stores it turned
    with EXIF Orientation 6, and the set's boxes must fit the pixels ``load_image`` returns."""
    from PIL import Image

    from gesture_recognition.images import EXIF_ORIENTATION, load_image

    shown = np.zeros((48, 64, 3), np.uint8)  # 64 wide, 48 high as shown
    shown[8:24, 40:56] = 255  # the "hand": x 40-56, y 8-24
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.rot90(shown, 1)).save(images / "p.png", exif=exif.tobytes())
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "p.txt").write_text(f"0 {48 / 64} {16 / 48} {16 / 64} {16 / 48}\n")
    found = load_set("sideways", images)
    assert found.sizes == [(64, 48)]
    np.testing.assert_allclose(found.truths[0], [[40, 8, 56, 24]], atol=1e-4)
    x1, y1, x2, y2 = found.truths[0][0].astype(int)
    assert (load_image(images / "p.png")[y1:y2, x1:x2] == 255).all()
