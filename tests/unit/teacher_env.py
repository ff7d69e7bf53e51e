"""Where the MediaPipe teacher runs for the tests, or why it cannot (a skip with the reason)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gesture_recognition.training import teacher as tm
from tests.conftest import REPO


def teacher_interpreter() -> Path:
    """``teacher_python()``, anchored at the repository when it is relative."""
    python = tm.teacher_python()
    return python if python.is_absolute() else REPO / python


def teacher_env_or_skip() -> dict[str, str]:
    """Environment variables that make ``run_teacher`` work here; skips (saying why) when
    neither mediapipe imports in this environment nor the teacher's own one is usable."""
    if tm.mediapipe_importable():
        return {}
    python = teacher_interpreter()
    if not python.is_file():
        pytest.skip(
            "MediaPipe teacher unavailable: mediapipe does not import in this environment and "
            f"{python} does not exist (create it with `scripts/bootstrap.sh teacher`)"
        )
    probe = subprocess.run(
        [str(python), "-c", "import mediapipe.python.solutions.hands, gesture_recognition"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip(
            f"MediaPipe teacher unavailable: {python} cannot import it: {probe.stderr[-300:]}"
        )
    return {tm.TEACHER_PYTHON_ENV: str(python)}
