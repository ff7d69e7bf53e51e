"""Shared test helpers: where the real data lives and where the shipped models are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
