"""A four-photo YOLO dataset of real SubhiH photos: calibration, verification, tiny training."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gesture_recognition.artifacts import shipped_models_dir


def tiny_yolo_data(root: Path) -> Path:
    """Two real SubhiH photos per split with made-up labels: enough to calibrate,
    verify, or train one step."""
    photos = sorted(
        (shipped_models_dir().parent.parent / "shared/data/subhih_hands").rglob("*.jpg")
    )
    if len(photos) < 4:
        pytest.skip("needs SubhiH photos in ../shared/data/subhih_hands")
    for split, chunk in (("train", photos[:2]), ("val", photos[2:4])):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for photo in chunk:
            shutil.copyfile(photo, root / "images" / split / photo.name)
            (root / "labels" / split / f"{photo.stem}.txt").write_text("0 0.5 0.5 0.3 0.3\n")
    data = root / "data.yaml"
    data.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n  0: hand\n")
    return data
