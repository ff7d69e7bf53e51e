"""Building a servable repository: the layout per flavour, the checks against the ONNX files
(a refused build writes nothing), the committed configs and the build command."""

from __future__ import annotations

from pathlib import Path

import pytest

from gesture_recognition.artifacts import (
    CLASSIFIER_JSON,
    CLASSIFIER_ONNX,
    DETECTOR_JSON,
    DETECTOR_ONNX,
    ClassifierSpec,
    DetectorSpec,
    write_spec,
)
from gesture_recognition.export import build_engines
from gesture_recognition.labels import LabelMap, load_label_map
from gesture_recognition.serving import build
from gesture_recognition.serving.build import RepositoryError, build_repository
from gesture_recognition.serving.configs import ServingOptions, Specs, model_configs
from gesture_recognition.serving.contract import (
    ENSEMBLE,
    ENSEMBLE_BYTES,
    FLAVOURS,
    GESTURE_CLASSIFIER,
    GESTURE_DECISION,
    HAND_CROPS,
    HAND_DETECTOR,
    IMAGE_DECODER,
)

from .tiny_onnx import tiny_classifier, tiny_detector

CPU_MODELS = sorted(
    [ENSEMBLE, ENSEMBLE_BYTES, GESTURE_CLASSIFIER, HAND_CROPS, HAND_DETECTOR, IMAGE_DECODER]
)


def _specs() -> Specs:
    return Specs(
        DetectorSpec(imgsz=320),
        ClassifierSpec(label_map=load_label_map("mcs2021"), input_size=160),
    )


@pytest.fixture()
def models_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    specs = _specs()
    tiny_detector(folder / DETECTOR_ONNX)
    tiny_classifier(folder / CLASSIFIER_ONNX)
    write_spec(specs.detector, folder / DETECTOR_JSON)
    write_spec(specs.classifier, folder / CLASSIFIER_JSON)
    return folder


# ----------------------------------------------------------------- building


def test_cpu_build_layout(models_dir: Path, tmp_path: Path) -> None:
    out = build_repository("cpu", models_dir, tmp_path / "repo", ServingOptions(max_hands=4))
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert build.read_build_info(out)["flavour"] == "cpu"
    assert names == CPU_MODELS
    for name in CPU_MODELS:
        assert (out / name / "config.pbtxt").is_file()
        assert (out / name / "1").is_dir()  # ensembles need an (empty) version folder too
    assert (out / HAND_DETECTOR / "1" / "model.onnx").read_bytes() == (
        models_dir / DETECTOR_ONNX
    ).read_bytes()
    assert (out / GESTURE_CLASSIFIER / "1" / "model.onnx").is_file()
    assert (out / HAND_DETECTOR / "1" / "model.py").is_file()
    assert (out / HAND_CROPS / "1" / DETECTOR_JSON).is_file()
    assert (out / HAND_CROPS / "1" / CLASSIFIER_JSON).is_file()
    assert (out / GESTURE_CLASSIFIER / "labels.txt").read_text().split() == list(
        load_label_map("mcs2021").classes
    )
    crops = build.read_config(out / HAND_CROPS / "config.pbtxt")
    assert crops.parameters["MAX_HANDS"].string_value == "4"
    assert build.configured_limits(out) == {
        "MAX_HANDS": 4,
        "MAX_PIXELS": 64_000_000,
        "MAX_BYTES": 48 * 1024 * 1024,
    }


@pytest.mark.parametrize("flavour", ["onnxruntime", "tensorrt"])
def test_native_build_layout(models_dir: Path, tmp_path: Path, flavour: str) -> None:
    out = build_repository(flavour, models_dir, tmp_path / "repo")
    for name in (HAND_DETECTOR, GESTURE_CLASSIFIER):
        version = out / name / "1"
        assert not (version / "model.py").exists()
        assert (version / "model.onnx").exists() == (flavour == "onnxruntime")
        config = build.read_config(out / name / "config.pbtxt")
        assert (config.backend == "onnxruntime") == (flavour == "onnxruntime")
        assert (config.platform == "tensorrt_plan") == (flavour == "tensorrt")
    assert (out / HAND_CROPS / "1" / "model.py").is_file()
    assert (out / GESTURE_DECISION / "labels.txt").is_file()


def test_build_reads_the_number_of_detections_from_the_onnx(
    models_dir: Path, tmp_path: Path
) -> None:
    tiny_detector(models_dir / DETECTOR_ONNX, detections=100)
    out = build_repository("cpu", models_dir, tmp_path / "repo")
    detector = build.read_config(out / HAND_DETECTOR / "config.pbtxt")
    crops = build.read_config(out / HAND_CROPS / "config.pbtxt")
    assert list(detector.output[0].dims) == [1, 100, 6]
    assert list(crops.input[1].dims) == [1, 100, 6]


def _expect_refusal(models_dir: Path, tmp_path: Path, match: str) -> None:
    out = tmp_path / "repo"
    out.mkdir(exist_ok=True)
    (out / "keep.txt").write_text("previous build")
    with pytest.raises(RepositoryError, match=match):
        build_repository("cpu", models_dir, out)
    # A refused build leaves the previous repository as it was.
    assert (out / "keep.txt").read_text() == "previous build"
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert not list(tmp_path.glob(".repo.*"))


def test_mismatched_class_count_is_refused(models_dir: Path, tmp_path: Path) -> None:
    tiny_classifier(models_dir / CLASSIFIER_ONNX, classes=5)
    _expect_refusal(models_dir, tmp_path, "predicts 5 classes but its label map")


def test_mismatched_input_name_is_refused(models_dir: Path, tmp_path: Path) -> None:
    tiny_detector(models_dir / DETECTOR_ONNX, input_name="input")
    _expect_refusal(models_dir, tmp_path, r"config inputs \['images'\] but the ONNX file takes")


def test_mismatched_crop_size_is_refused(models_dir: Path, tmp_path: Path) -> None:
    tiny_classifier(models_dir / CLASSIFIER_ONNX, size=224)
    _expect_refusal(models_dir, tmp_path, "axis 2 is 160 in the config but 224 in the ONNX")


def test_fixed_batch_detector_is_refused(models_dir: Path, tmp_path: Path) -> None:
    tiny_detector(models_dir / DETECTOR_ONNX, batch=1)
    _expect_refusal(models_dir, tmp_path, "needs a dynamic batch dimension")


def test_fixed_size_detector_must_match_the_spec(models_dir: Path, tmp_path: Path) -> None:
    tiny_detector(models_dir / DETECTOR_ONNX, size=640)
    _expect_refusal(models_dir, tmp_path, "axis 2 is 320 in the config but 640")
    tiny_detector(models_dir / DETECTOR_ONNX, size=320)
    build_repository("cpu", models_dir, tmp_path / "ok")


def test_missing_model_files_are_refused(models_dir: Path, tmp_path: Path) -> None:
    (models_dir / CLASSIFIER_ONNX).unlink()
    with pytest.raises(RepositoryError, match=r"lacks gesture_classifier\.onnx"):
        build_repository("cpu", models_dir, tmp_path / "repo")


def test_label_map_without_no_gesture_class_still_builds(models_dir: Path, tmp_path: Path) -> None:
    labels = LabelMap.from_classes("counts", [f"{i}-fingers" for i in range(7)], "no_hand")
    write_spec(ClassifierSpec(label_map=labels, input_size=160), models_dir / CLASSIFIER_JSON)
    out = build_repository("cpu", models_dir, tmp_path / "repo")
    assert (out / GESTURE_CLASSIFIER / "labels.txt").read_text().splitlines()[0] == "0-fingers"


# ----------------------------------------------------------------- committed copy


def test_committed_configs_match_the_cpu_rendering() -> None:
    """Fails when model_repository/ drifts from the specs; fix with
    ``python export/build_engines.py --write-committed``."""
    root = build.committed_repository_dir()
    for rel, text in build.committed_files().items():
        path = root / rel
        assert path.is_file(), f"{path} is missing: run --write-committed"
        assert path.read_text(encoding="utf-8") == text, (
            f"{path} differs from the cpu rendering: run "
            "python export/build_engines.py --write-committed"
        )


def test_committed_repository_has_code_for_every_python_model() -> None:
    root = build.committed_repository_dir()
    for flavour in FLAVOURS:
        for name, config in model_configs(flavour, build.committed_specs()).items():
            if config.backend == "python":
                assert (root / name / "1" / "model.py").is_file(), (flavour, name)
    for name in (ENSEMBLE, ENSEMBLE_BYTES):
        assert not (root / name / "1" / "model.py").exists()


def test_write_committed_round_trip(tmp_path: Path) -> None:
    written = build.write_committed(tmp_path)
    files = build.committed_files()
    assert sorted(str(p.relative_to(tmp_path)) for p in written) == sorted(files)
    for rel, text in files.items():
        assert (tmp_path / rel).read_text() == text


def test_the_build_command_and_its_errors(
    models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "built"
    args = ["--target", "onnxruntime", "--models-dir", str(models_dir), "--out", str(out)]
    assert build_engines.main(args) == 0
    assert build.read_config(out / HAND_DETECTOR / "config.pbtxt").backend == "onnxruntime"
    assert build_engines.main(["--models-dir", str(tmp_path / "none"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: models directory") and "Traceback" not in err


def test_limits_of_an_unreadable_config_count_as_unset(models_dir: Path, tmp_path: Path) -> None:
    out = build_repository("cpu", models_dir, tmp_path / "repo", ServingOptions(max_hands=4))
    (out / HAND_CROPS / "config.pbtxt").write_text("parameters { key: ")
    assert build.configured_limits(out) == {"MAX_PIXELS": 64_000_000, "MAX_BYTES": 48 * 1024**2}
