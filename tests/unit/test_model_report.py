"""The one evaluation command: detector sets (MediaPipe side by side), classifiers, end to end.

Runs the shipped ONNX models on a handful of real photos and crops; checks what the report
holds and how it is computed, never the models' accuracy.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gesture_recognition.artifacts import ClassifierSpec
from gesture_recognition.classifier_input import crops_to_batch
from gesture_recognition.images import load_image
from gesture_recognition.labels import load_label_map
from gesture_recognition.training import evaluate as ev
from gesture_recognition.training import evaluate_photos as ep
from gesture_recognition.training.cli import main
from gesture_recognition.training.converters.merge import build_detector_dataset, parse_source
from gesture_recognition.training.crop_import import import_crops
from gesture_recognition.training.detect_cache import cache_boxes
from gesture_recognition.training.model_report import (
    DetectorSetSpec,
    ReportPlan,
    run_plan,
    summary_lines,
)
from gesture_recognition.training.report import plot_pr_compare, write_report
from gesture_recognition.training.served_view import ServedView
from tests.conftest import REPO
from tests.unit.teacher_env import teacher_env_or_skip

from .hagrid_hand_crops import link_crops, real_rows

MODELS = REPO / "models"
SCENES = ["like/hagrid_380_resize336__like_00000.jpg", "stop/hagrid_380_resize336__stop_00000.jpg"]


@pytest.fixture(scope="module")
def models() -> Path:
    if not (MODELS / "hand_detector.onnx").is_file() or not (MODELS / "finger_count").is_dir():
        pytest.skip(f"no shipped models in {MODELS}")
    return MODELS


@pytest.fixture(scope="module")
def data_yaml(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A converted dataset whose test split is three real Roboflow test photos (linked)."""
    real = shared_data / "roboflow_hands" / "test"
    src = tmp_path_factory.mktemp("src") / "rf"
    for photo in sorted((real / "images").iterdir())[:3]:
        for kind, suffix in (("images", ".jpg"), ("labels", ".txt")):
            dst = src / kind / f"{photo.stem}{suffix}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(real / kind / f"{photo.stem}{suffix}")
    out = tmp_path_factory.mktemp("ds") / "rf_hands"
    build_detector_dataset([parse_source(f"yolo:{src}:rft:split=test")], out)
    return out / "data.yaml"


@pytest.fixture(scope="module")
def tight_crops(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An import-crops folder of real HaGRID hand crops, all in the test split."""
    real, rows = real_rows(shared_data)
    rows = [r for r in rows if r["label"] in ("like", "palm", "peace")][::300][:9]
    src = link_crops(real, rows, tmp_path_factory.mktemp("hhc_src"))
    out = tmp_path_factory.mktemp("hhc") / "crops"
    import_crops(src, out, load_label_map("hagrid"), "hhc", split="test")
    return out


def truth_cache(data_yaml: Path, root: Path, out: Path, seconds_each: float = 0.0) -> Path:
    """A cache whose boxes are the set's true boxes (a perfect stand-in labeller)."""
    images = ev.split_images(data_yaml, "test")
    truths = iter([ev.read_yolo_labels(ev.label_path_for(p), 640, 640) for p in images])

    def labeller(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        boxes = next(truths)
        return boxes, np.full(len(boxes), 0.8, np.float32)

    cache_boxes(labeller, {"kind": "stand-in"}, root, out, [p.resolve() for p in images])
    return out


def test_detector_set_spec_parse() -> None:
    spec = DetectorSetSpec.parse("rf=runs/datasets/rf/data.yaml", "test")
    assert (spec.name, spec.data_yaml, spec.split) == (
        "rf",
        Path("runs/datasets/rf/data.yaml"),
        "test",
    )
    named_by_folder = DetectorSetSpec.parse("runs/datasets/subhih/data.yaml", "val")
    assert (named_by_folder.name, named_by_folder.split) == ("subhih", "val")


def test_preamble_goes_before_the_sections(tmp_path: Path) -> None:
    result: dict[str, Any] = {
        "kind": "classifier",
        "name": "c",
        "crops_dir": "x",
        "split": "test",
        "n": 2,
        "label_map": "mcs2021",
        "accuracy": 0.5,
        "macro_f1": 0.5,
        "per_class": {"stop": {"precision": 1.0, "recall": 0.5, "f1": 0.6, "support": 2}},
        "confusion_matrix": {
            "labels": ["stop", "like"],
            "rows_true_cols_predicted": [[1, 1], [0, 0]],
        },
    }
    report = write_report([result], tmp_path, title="T", preamble=["## Summary", "", "one line"])
    text = report.read_text(encoding="utf-8")
    assert text.index("one line") < text.index("## c: gesture classifier on crops")
    assert text.startswith("# T")


def test_pr_compare_and_summary_from_cached_labellers(
    data_yaml: Path, shared_data: Path, tmp_path: Path
) -> None:
    root = shared_data / "roboflow_hands"
    cache = truth_cache(data_yaml, root, tmp_path / "truth.json")
    ours = ev.evaluate_detector(None, data_yaml, "test", cache=cache, name="rf — served detector")
    peer = ev.evaluate_detector(
        None, data_yaml, "test", cache=cache, served_conf=0.0, name="rf — MediaPipe Hands"
    )
    png = plot_pr_compare(ours, peer, tmp_path / "out")
    assert png.is_file() and png.suffix == ".png" and png.stat().st_size > 1000
    assert plot_pr_compare(ours, None, tmp_path / "out2").is_file()
    ours["set"] = peer["set"] = "rf_hands"  # run_plan names each result's set
    lines = summary_lines([(ours, peer), (ours, None)], [], [], tmp_path / "out")
    rows = [line for line in lines if line.startswith("| rf_hands test |")]
    assert len(rows) == 3
    assert "| served |" in rows[0] and "| MediaPipe Hands |" in rows[1]
    assert rows[0].split("|")[2:4] == [" 3 ", f" {ours['gt_boxes']} "]
    assert sum(line.startswith("![") for line in lines) == 2
    assert not any(line.startswith("## Summary: classifiers") for line in lines)


def test_summary_of_a_set_given_as_a_bare_file_name(
    data_yaml: Path, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = truth_cache(data_yaml, shared_data / "roboflow_hands", tmp_path / "truth.json")
    monkeypatch.chdir(data_yaml.parent)
    ours = ev.evaluate_detector(None, Path("data.yaml"), "test", cache=cache, name="here")
    lines = summary_lines([(ours, None)], [], [], tmp_path / "out")
    assert any("| 3 |" in line for line in lines)


class Recorder:
    """A classifier stand-in that answers ``like`` and keeps the batches it was given."""

    def __init__(self, spec: ClassifierSpec) -> None:
        self.spec = spec
        self.batches: list[np.ndarray] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(batch)
        logits = np.zeros((len(batch), self.spec.label_map.num_classes), np.float32)
        logits[:, self.spec.label_map.index("like")] = 3.0
        return logits


def test_tight_crops_are_scored_in_the_served_view(tight_crops: Path) -> None:
    spec = ClassifierSpec(label_map=load_label_map("mcs2021"), input_size=48)
    stub = Recorder(spec)
    result = ev.evaluate_classifier(None, tight_crops, "test", classifier=stub, batch_size=4)
    with (tight_crops / "manifest.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert result["n"] == len(rows) and result["excluded"] == {}
    # palm is no MachinesCanSee class: the hagrid merge answers it no_gesture.
    truths = {p["truth"] for p in result["predictions"]}
    assert "palm" not in truths and truths <= {"like", "victory", "no_gesture"}
    assert any("palm->no_gesture" in n for n in result["notes"])
    assert any("tight_box" in n for n in result["notes"])
    first = load_image(tight_crops / result["predictions"][0]["path"])
    view = ServedView.deterministic(spec.crop)(first)
    expected = crops_to_batch([view], 48, spec.mean, spec.std)[0]
    np.testing.assert_array_equal(stub.batches[0][0], expected)
    assert not np.array_equal(expected, crops_to_batch([first], 48, spec.mean, spec.std)[0])


def test_pipeline_for_takes_the_classifier_from_another_folder(models: Path) -> None:
    pipe = ep.pipeline_for(models, 1, models / "finger_count")
    assert pipe.classifier.spec.label_map.name == "finger_count"
    assert ep.pipeline_for(models, 1).classifier.spec.label_map.name == "mcs2021"


def test_evaluate_command_writes_one_report(
    models: Path, data_yaml: Path, tight_crops: Path, shared_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    argv = ["evaluate", "--models-dir", str(models), "--threads", "1", "--out", str(out)]
    argv += ["--detector-data", f"rf={data_yaml}", "--crops", str(tight_crops)]
    argv += ["--classifier-dir", str(models), "--scenes", str(shared_data / "hagrid_crops")]
    assert main([*argv, "--hagrid", str(shared_data / "hagrid_crops")]) == 2  # one or the other
    # --scenes would score every MachinesCanSee-class photo (too slow here): two of them.
    plan = ReportPlan(
        out=out,
        models_dir=models,
        detector_sets=[DetectorSetSpec("rf", data_yaml)],
        classifier_dirs=[models],
        crops=tight_crops,
        scenes=shared_data / "hagrid_crops",
        scene_photos=SCENES,
        threads=1,
        title="Test report",
    )
    report = run_plan(plan)
    text = report.read_text(encoding="utf-8")
    for heading in (
        "hand detectors",
        "classifiers on held-out crops",
        "end to end on whole photos",
    ):
        assert f"## Summary: {heading}" in text
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["results"]
    expected = {"rf — served detector", f"classifier {models}", f"end to end {models}"}
    # The shipped classifier has a hand verifier: the hands it serves are scored too, beside
    # the detector alone, with the same matching code.
    expected.add("rf — served hands (detector + verifier)")
    assert set(metrics) == expected
    hands = metrics["rf — served hands (detector + verifier)"]
    assert hands["served"]["detections"] <= metrics["rf — served detector"]["served"]["detections"]
    assert "| served hands (+ verifier) |" in text
    assert metrics[f"end to end {models}"]["n"] == len(SCENES)
    assert metrics["rf — served detector"]["images"] == 3
    assert list(out.glob("pr_compare_*.png"))


def test_one_command_for_a_gesture_and_a_finger_classifier(
    models: Path, shared_data: Path, tmp_path: Path
) -> None:
    plan = ReportPlan(
        out=tmp_path / "report",
        models_dir=models,
        classifier_dirs=[models, models / "finger_count"],
        scenes=shared_data / "hagrid_crops",
        scene_photos=SCENES,
        fingers=shared_data / "subhih_hands",
        threads=1,
    )
    run_plan(plan)


def test_mediapipe_side_by_side(
    data_yaml: Path, models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in teacher_env_or_skip().items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "report"
    plan = ReportPlan(
        out=out,
        models_dir=models,
        detector_sets=[DetectorSetSpec("rf", data_yaml)],
        peer="mediapipe",
        peer_cache=tmp_path / "peer",
        threads=1,
    )
    text = run_plan(plan).read_text(encoding="utf-8")
    assert "| served detector |" in text and "| MediaPipe Hands |" in text
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["results"]
    peer = metrics["rf — MediaPipe Hands"]
    assert peer["images"] == 3 and peer["detector"]["teacher"] == "mediapipe_hands"
    assert peer["served"]["conf_threshold"] == 0.0
    assert peer["gt_boxes"] == metrics["rf — served detector"]["gt_boxes"]
    cache = tmp_path / "peer" / "rf_test.json"
    assert cache.is_file() and not (out / "peer").exists()  # the report holds no machine paths
    # A re-run resumes the peer's cache instead of labelling again.
    before = cache.read_text()
    run_plan(plan)
    assert cache.read_text() == before
