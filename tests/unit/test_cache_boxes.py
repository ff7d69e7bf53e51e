"""The labeller-agnostic detection cache (``cache_boxes``, ``predictions_for``) on real photos.

A stand-in labeller returns each photo's true SubhiH boxes, so every cached value is known.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from gesture_recognition.training.detect_cache import cache_boxes, predictions_for, read_cache
from tests.unit.subhih_photos import PHOTOS, true_boxes


class TruthLabeller:
    """Answers the true boxes of the photos it is given, in the order it is called."""

    def __init__(self, boxes: list[list[list[float]]]) -> None:
        self.boxes = boxes
        self.calls = 0

    def __call__(self, image: NDArray[np.uint8]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        boxes = np.asarray(self.boxes[self.calls], np.float32).reshape(-1, 4)
        self.calls += 1
        return boxes, np.linspace(0.9, 0.6, len(boxes)).astype(np.float32)


IDENTITY = {"kind": "test", "version": 1}


def test_cache_records_boxes_scores_and_seconds(shared_data: Path, tmp_path: Path) -> None:
    root = shared_data / "subhih_hands"
    photos = [root / rel for rel in PHOTOS]
    truth = [true_boxes(root, rel) for rel in PHOTOS]
    out = tmp_path / "cache.json"
    labeller = TruthLabeller(truth[:2])
    cache = cache_boxes(labeller, IDENTITY, root, out, photos[:2], desc="test")
    assert labeller.calls == 2 and cache["detector"] == IDENTITY and cache["root"] == str(root)
    # Resume: only the new photo is labelled.
    more = TruthLabeller(truth[2:])
    cache_boxes(more, IDENTITY, root, out, photos)
    assert more.calls == 1
    cached = read_cache(out)
    assert sorted(cached) == sorted(PHOTOS)
    for rel, boxes in zip(PHOTOS, truth, strict=True):
        entry = cached[rel]
        assert (entry.width, entry.height) == (640, 480)
        np.testing.assert_allclose(entry.boxes, np.asarray(boxes, np.float32))
        assert len(entry.scores) == len(boxes)
        assert entry.seconds is not None and 0.0 <= entry.seconds < 5.0
    # Another labeller's cache is never resumed.
    with pytest.raises(ValueError, match="another detector"):
        cache_boxes(TruthLabeller(truth), {**IDENTITY, "version": 2}, root, out, photos)


def test_empty_answers_and_unreadable_photos(shared_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    shutil.copy(shared_data / "subhih_hands" / PHOTOS[0], root / "a.jpg")
    (root / "b.jpg").write_bytes(b"not a photo")
    out = tmp_path / "cache.json"
    cache = cache_boxes(TruthLabeller([[]]), IDENTITY, root, out)
    assert cache["images"]["a.jpg"]["boxes"] == [] and cache["images"]["a.jpg"]["scores"] == []
    assert list(cache["failed"]) == ["b.jpg"]
    assert len(read_cache(out)["a.jpg"].boxes) == 0


def test_predictions_for_follows_the_given_order(shared_data: Path, tmp_path: Path) -> None:
    root = shared_data / "subhih_hands"
    photos = [root / rel for rel in PHOTOS]
    truth = [true_boxes(root, rel) for rel in PHOTOS]
    out = tmp_path / "cache.json"
    cache_boxes(TruthLabeller(truth), IDENTITY, root, out, photos)
    predictions, seconds = predictions_for(out, list(reversed(photos)))
    assert [len(b) for b, _ in predictions] == [len(t) for t in reversed(truth)]
    assert len(seconds) == len(photos)
    with pytest.raises(ValueError, match="no entry for"):
        predictions_for(out, [root / "test" / "16_pic00009.jpg"])
    # Caches written before per-photo seconds existed still read; they give no seconds.
    data = json.loads(out.read_text())
    for entry in data["images"].values():
        del entry["seconds"]
    out.write_text(json.dumps(data))
    assert read_cache(out)[PHOTOS[0]].seconds is None
    assert predictions_for(out, photos)[1] == []


def test_a_folder_of_linked_photos_can_be_labelled(shared_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "linked"
    root.mkdir()
    (root / "a.jpg").symlink_to(shared_data / "subhih_hands" / PHOTOS[0])
    cache = cache_boxes(TruthLabeller([[]]), IDENTITY, root, tmp_path / "cache.json")
    assert list(cache["images"]) == ["a.jpg"]
