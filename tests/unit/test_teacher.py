"""The MediaPipe Hands teacher: landmark boxes on real SubhiH photos, into the detection cache.

mediapipe lives in its own environment (``scripts/bootstrap.sh teacher`` -> ``.venv-teacher``);
the labelling tests skip, saying why, only when neither that environment nor an importable
mediapipe is there. Plumbing only: which photos, which fields, which padding, never how many
hands it finds.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gesture_recognition.training import teacher as tm
from gesture_recognition.training.cli import main
from gesture_recognition.training.detect_cache import read_cache
from gesture_recognition.training.detector_sets import grow
from gesture_recognition.training.teacher import landmark_box, mediapipe_importable, run_teacher
from tests.conftest import REPO
from tests.unit.subhih_photos import PHOTOS
from tests.unit.teacher_env import teacher_env_or_skip


@pytest.fixture(scope="module")
def teacher_env() -> dict[str, str]:
    return teacher_env_or_skip()


@pytest.fixture()
def use_teacher(teacher_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in teacher_env.items():
        monkeypatch.setenv(key, value)


def test_landmark_box_pads_and_clips() -> None:
    points = np.array([[10.0, 20.0], [30.0, 60.0], [20.0, 40.0]])
    assert landmark_box(points, 0.0, 100, 100).tolist() == [10, 20, 30, 60]
    assert landmark_box(points, 0.1, 100, 100).tolist() == pytest.approx([8, 16, 32, 64])
    assert landmark_box(points, 0.5, 35, 100).tolist() == pytest.approx([0, 0, 35, 80])
    # Landmarks of a hand cut by the border lie outside the photo: clipped too.
    outside = np.array([[-5.0, 10.0], [50.0, 120.0]])
    assert landmark_box(outside, 0.0, 40, 100).tolist() == [0, 10, 40, 100]
    # detector_sets.grow (the padding sweep) applies the same rule to a bare box.
    bare = np.array([[10, 20, 30, 60]], np.float32)
    assert grow(bare, 0.1, 100, 100).tolist() == [landmark_box(points, 0.1, 100, 100).tolist()]


def test_padding_is_checked_before_mediapipe_is_needed() -> None:
    with pytest.raises(ValueError, match="padding"):
        tm.MediaPipeHands(padding=1.5)


def test_a_missing_teacher_environment_says_how_to_make_it(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tm, "mediapipe_importable", lambda: False)
    monkeypatch.setenv(tm.TEACHER_PYTHON_ENV, str(tmp_path / "nope" / "python"))
    with pytest.raises(FileNotFoundError, match=r"bootstrap\.sh teacher"):
        run_teacher(shared_data / "subhih_hands", tmp_path / "c.json", 0.1)
    root = tmp_path / "photos"
    root.mkdir()
    argv = ["detect", str(root), "--out", str(tmp_path / "c.json"), "--teacher", "mediapipe"]
    assert main(argv) == 2
    assert main([*argv, "--models-dir", "models"]) == 2  # the teacher needs no detector


def test_teacher_labels_real_photos_into_the_cache(
    use_teacher: None, shared_data: Path, tmp_path: Path
) -> None:
    root = shared_data / "subhih_hands"
    photos = [root / rel for rel in PHOTOS]
    out = tmp_path / "teacher.json"
    cache = run_teacher(root, out, 0.1, photos)
    who = cache["detector"]
    assert (who["kind"], who["teacher"], who["padding"]) == ("teacher", "mediapipe_hands", 0.1)
    assert who["mediapipe"] == "0.10.14" and who["max_num_hands"] == 4
    assert cache["root"] == str(root) and not cache["failed"]
    cached = read_cache(out)
    assert sorted(cached) == sorted(PHOTOS)
    for entry in cached.values():
        assert (entry.width, entry.height) == (640, 480)
        assert len(entry.boxes) == len(entry.scores) <= 4
        if len(entry.boxes):
            assert (entry.boxes[:, :2] >= 0).all() and (entry.boxes[:, 2] <= 640).all()
            assert (entry.boxes[:, 3] <= 480).all()
            assert (entry.boxes[:, 2:] > entry.boxes[:, :2]).all()
            assert ((entry.scores > 0) & (entry.scores <= 1)).all()
        assert entry.seconds is not None and entry.seconds > 0

    # The padding is the bare landmark rectangle grown, as the padding sweep assumes.
    run_teacher(root, tmp_path / "bare.json", 0.0, photos)
    bare = read_cache(tmp_path / "bare.json")
    for rel, padded in cached.items():
        grown = grow(bare[rel].boxes, 0.1, 640, 480)
        np.testing.assert_allclose(grown, padded.boxes, atol=0.05)

    # Resuming with other settings is refused: the cache would mix two kinds of boxes.
    with pytest.raises((ValueError, subprocess.CalledProcessError)):
        run_teacher(root, out, 0.2, photos)


def test_detect_teacher_cli_labels_a_folder(
    use_teacher: None, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    for rel in PHOTOS[:2]:
        shutil.copy(shared_data / "subhih_hands" / rel, root / Path(rel).name)
    out = tmp_path / "cache.json"
    argv = ["detect", str(root), "--out", str(out), "--teacher", "mediapipe"]
    assert main([*argv, "--teacher-padding", "0.05"]) == 0
    assert "2 photos cached" in capsys.readouterr().out
    assert sorted(read_cache(out)) == sorted(Path(rel).name for rel in PHOTOS[:2])


def test_detect_teacher_cli_refuses_other_settings_in_one_line(
    use_teacher: None, shared_data: Path, tmp_path: Path
) -> None:
    if mediapipe_importable():
        pytest.skip("mediapipe imports here: no subprocess involved")
    root = tmp_path / "photos"
    root.mkdir()
    shutil.copy(shared_data / "subhih_hands" / PHOTOS[0], root / "a.jpg")
    out = tmp_path / "cache.json"
    argv = ["detect", str(root), "--out", str(out), "--teacher", "mediapipe"]
    assert main(argv) == 0
    assert main([*argv, "--teacher-padding", "0.3"]) == 2


def test_the_teacher_environment_is_found_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not (REPO / tm.TEACHER_PYTHON).is_file():
        pytest.skip(f"no {REPO / tm.TEACHER_PYTHON} (scripts/bootstrap.sh teacher)")
    monkeypatch.delenv(tm.TEACHER_PYTHON_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert tm.teacher_python().is_file()
