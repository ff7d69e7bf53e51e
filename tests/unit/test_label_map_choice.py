"""Which classifier serves which label map: the models folder's own and its sub-folders'."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gesture_recognition.artifacts import (
    CLASSIFIER_JSON,
    CLASSIFIER_ONNX,
    DETECTOR_JSON,
    DETECTOR_ONNX,
    label_map_choices,
    models_with_label_map,
    read_classifier_spec,
    shipped_models_dir,
)
from gesture_recognition.export.build_engines import default_out
from gesture_recognition.serving.build import default_repository_dir

SHIPPED = shipped_models_dir()


@pytest.fixture
def models(tmp_path: Path) -> Path:
    """A models folder like the shipped one: its own classifier and the finger-count one."""
    root = tmp_path / "models"
    (root / "finger_count").mkdir(parents=True)
    for name in (DETECTOR_ONNX, DETECTOR_JSON, CLASSIFIER_ONNX, CLASSIFIER_JSON):
        (root / name).symlink_to(SHIPPED / name)
    for name in (CLASSIFIER_ONNX, CLASSIFIER_JSON):
        (root / "finger_count" / name).symlink_to(SHIPPED / "finger_count" / name)
    (root / "empty").mkdir()  # a folder without a classifier is not a choice
    return root


def test_choices_are_the_own_classifier_and_the_sub_folders(models: Path) -> None:
    own = read_classifier_spec(models / CLASSIFIER_JSON).label_map.name
    assert label_map_choices(models) == {own: models, "finger_count": models / "finger_count"}


def test_the_own_label_map_is_the_models_folder_itself(models: Path, tmp_path: Path) -> None:
    own = read_classifier_spec(models / CLASSIFIER_JSON).label_map.name
    assert models_with_label_map(models, None, tmp_path / "work") == models
    assert models_with_label_map(models, own, tmp_path / "work") == models
    assert not (tmp_path / "work").exists()


def test_another_label_map_gets_a_folder_of_links(models: Path, tmp_path: Path) -> None:
    view = models_with_label_map(models, "finger_count", tmp_path / "work")
    assert view == tmp_path / "work" / "finger_count"
    assert (view / DETECTOR_ONNX).resolve() == (SHIPPED / DETECTOR_ONNX).resolve()
    spec = read_classifier_spec(view / CLASSIFIER_JSON)
    assert spec.label_map.name == "finger_count"
    # A second call (a restart) replaces the links rather than failing on them.
    shutil.rmtree(models / "finger_count")
    (models / "finger_count").mkdir()
    for name in (CLASSIFIER_ONNX, CLASSIFIER_JSON):
        (models / "finger_count" / name).symlink_to(SHIPPED / "finger_count" / name)
    assert models_with_label_map(models, "finger_count", tmp_path / "work") == view


def test_an_unknown_label_map_names_the_choices(models: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no classifier for label map 'nope'.*finger_count"):
        models_with_label_map(models, "nope", tmp_path / "work")


def test_each_label_map_builds_into_its_own_repository() -> None:
    assert default_repository_dir().name == "model_repository"
    assert default_repository_dir("hagrid").name == "model_repository_hagrid"
    assert default_out("cpu").name == "model_repository"
    assert default_out("tensorrt", "hagrid").name == "model_repository_tensorrt_hagrid"
