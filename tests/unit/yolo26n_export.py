"""The last YOLO26n hand detector this project shipped, read from the repository's history.

The shipped detector is ``yolo26n-lite0`` since 2026-12-03; the tests of what only applies to
YOLO26n exports (rebuilding a checkpoint from ONNX, INT8 quantisation) use this one.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

# The last commit whose models/hand_detector.onnx is a YOLO26n export.
LAST_YOLO26N = "820feae"
FILES = ("hand_detector.onnx", "hand_detector.json")


def write_yolo26n_detector(folder: Path) -> Path:
    """Write its ONNX and JSON into ``folder`` (replacing any there); the ONNX path."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shown = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{LAST_YOLO26N}:models/{name}"],
            capture_output=True,
            check=False,
        )
        if shown.returncode != 0:
            pytest.skip(f"needs the git history (commit {LAST_YOLO26N}) for a YOLO26n export")
        (folder / name).write_bytes(shown.stdout)
    return folder / FILES[0]
