"""Shared test helpers: where the real data lives and where the shipped models are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``../shared/data`` beside the repository (GESTURE_SHARED_DATA overrides it)."""
    return Path(os.environ.get("GESTURE_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_dir()
    if not (root / "subhih_hands").is_dir():
        pytest.fail(f"real test data not found at {root} (set GESTURE_SHARED_DATA)")
    return root


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
