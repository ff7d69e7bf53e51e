"""Training crops and serving crops of the same photo are the same pixels and tensors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from gesture_recognition.artifacts import ClassifierSpec
from gesture_recognition.boxes import CropConfig
from gesture_recognition.classifier_input import normalize, resize_crop
from gesture_recognition.hands import prepare_hands
from gesture_recognition.images import load_image
from gesture_recognition.labels import load_label_map
from gesture_recognition.training.crops import cut_crops, voc_labels


def _two_hand_photos(root: Path, count: int) -> list[str]:
    labels = voc_labels(root)
    many = [rel for rel, t in labels.items() if t.boxes is not None and len(t.boxes) >= 2]
    return sorted(many)[:count]


def test_training_crop_equals_serving_crop(shared_data: Path, tmp_path: Path) -> None:
    root = shared_data / "subhih_hands"
    labels = voc_labels(root)
    chosen = _two_hand_photos(root, 3)
    assert chosen, "SubhiH has photos with two hands"
    # A detection cache holding the ground-truth boxes (shuffled, with off-centre scores), so
    # the test does not depend on a trained detector.
    cache = {"detector": {}, "root": str(root), "images": {}, "failed": {}}
    rng = np.random.default_rng(0)
    for rel in chosen:
        boxes = labels[rel].boxes[rng.permutation(len(labels[rel].boxes))]
        cache["images"][rel] = {
            "width": 640,
            "height": 480,
            "boxes": boxes.tolist(),
            "scores": rng.uniform(0.3, 0.9, len(boxes)).tolist(),
        }
    cache_path = tmp_path / "cache.json"
    cache_path.write_text(json.dumps(cache))
    config = CropConfig(scale=1.3, square=True)
    out = tmp_path / "crops"
    report = cut_crops(
        cache_path, {r: labels[r] for r in chosen}, out, config, "subhih", fractions=(0.0, 0.0)
    )
    assert sum(report.written.values()) == len(chosen)

    spec = ClassifierSpec(label_map=load_label_map("finger_count"), input_size=96, crop=config)
    with (out / "manifest.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {row["crop"] for row in rows} == {"topmost_hand"}
    for row in rows:
        path, rel = row["path"], row["source"].split(":", 1)[1]
        entry = cache["images"][rel]
        image = load_image(root / rel)
        training_crop = np.asarray(Image.open(out / path).convert("RGB"))
        hands = prepare_hands(
            image,
            np.asarray(entry["boxes"], np.float32),
            np.asarray(entry["scores"], np.float32),
            spec,
        )
        # The server reports hands topmost first: its first crop is the training crop.
        training_tensor = normalize(resize_crop(training_crop, 96), spec.mean, spec.std)
        np.testing.assert_array_equal(hands.batch[0], training_tensor)
        assert training_crop.shape[0] > 10 and training_crop.shape[1] > 10
