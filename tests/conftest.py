"""Shared test helpers: where the real data lives and where the shipped models are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gesture_recognition.artifacts import (
    CLASSIFIER_JSON,
    CLASSIFIER_ONNX,
    DETECTOR_JSON,
    DETECTOR_ONNX,
)

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``../shared/data`` beside the repository (GESTURE_SHARED_DATA overrides it)."""
    return Path(os.environ.get("GESTURE_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()


# samples/ copies four SubhiH test photos for the demo (samples/README.md); tests read the
# originals, in the order of the copies' names.
SAMPLE_PHOTOS = ("26_pic00009.jpg", "2_pic00106.jpg", "2_pic00293.jpg", "2_pic00520.jpg")


def sample_photos() -> list[Path]:
    """The four sample photos in ``../shared/data`` (the first holds two hands, the rest one)."""
    root = shared_data_dir() / "subhih_hands" / "test"
    return [root / name for name in SAMPLE_PHOTOS]


def models_folder(folder: Path, detector_dir: Path, classifier_dir: Path | None = None) -> Path:
    """``folder`` as a models folder: the detector of ``detector_dir`` and, if given, the
    classifier of ``classifier_dir``, linked (a test then writes or links the other)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [(DETECTOR_ONNX, detector_dir), (DETECTOR_JSON, detector_dir)]
    if classifier_dir is not None:
        names += [(CLASSIFIER_ONNX, classifier_dir), (CLASSIFIER_JSON, classifier_dir)]
    for name, source in names:
        (folder / name).symlink_to(source / name)
    return folder


def models_with_second_pass(folder: Path, source: Path, imgsz: int = 640) -> Path:
    """``folder`` as ``source``'s models (linked) with a detector JSON that asks for a second
    pass at ``imgsz`` (``second_pass_imgsz``)."""
    from dataclasses import replace

    from gesture_recognition.artifacts import read_detector_spec, write_spec

    models = models_folder(folder, source, source)
    spec = read_detector_spec(source / DETECTOR_JSON)
    (models / DETECTOR_JSON).unlink()
    write_spec(replace(spec, second_pass_imgsz=imgsz), models / DETECTOR_JSON)
    return models


@pytest.fixture(scope="session")
def sample_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The four sample photos as one folder (for tools that read a folder), linked."""
    folder = tmp_path_factory.mktemp("samples")
    for photo in sample_photos():
        (folder / photo.name).symlink_to(photo)
    return folder


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_dir()
    if not (root / "subhih_hands").is_dir():
        pytest.fail(f"real test data not found at {root} (set GESTURE_SHARED_DATA)")
    return root


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
