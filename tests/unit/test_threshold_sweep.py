"""The detector-threshold sweep: the choice rule on known rows, the validation-scene selection on
a HaGRID-layout folder of real photos, and the sweep itself with the shipped models on real
HaGRID scenes and Roboflow photos (invariants only: raising the threshold can only drop boxes)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from gesture_recognition.labels import load_label_map
from gesture_recognition.pipeline import load_detector
from gesture_recognition.training import evaluate_photos as ep
from gesture_recognition.training import threshold_sweep as ts
from gesture_recognition.training.cli import main
from gesture_recognition.training.detector_sets import DetectorSet, load_set
from gesture_recognition.training.evaluate import load_classifier

SCENES_PER_CLASS = 2


@pytest.fixture(scope="module")
def scenes(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HaGRID-layout folder: two real photos of call, fist (validation classes) and like
    (a MachinesCanSee test class), linked, with a manifest."""
    src = shared_data / "hagrid_crops"
    root = tmp_path_factory.mktemp("scenes") / "hagrid"
    rows = []
    for label in ("call", "fist", "like"):
        for photo in sorted((src / label).iterdir())[:SCENES_PER_CLASS]:
            dst = root / label / photo.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(photo)
            rows.append({"path": f"{label}/{photo.name}", "label": label})
    with (root / "manifest.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_parse_thresholds() -> None:
    assert ts.parse_thresholds("0.25, 0.1,0.1") == (0.1, 0.25)
    for bad in ("", "0", "1.5", "0.2,-0.1"):
        with pytest.raises(ValueError):
            ts.parse_thresholds(bad)


def _result(precisions: dict[float, float], accuracy: dict[float, float]) -> ts.SweepResult:
    thresholds = tuple(sorted(accuracy))
    return ts.SweepResult(
        thresholds,
        [{"set": "a", "conf": t, "precision": p} for t, p in precisions.items()]
        + [{"set": "b", "conf": t, "precision": 0.99} for t in thresholds],
        [{"conf": t, "accuracy": a} for t, a in accuracy.items()],
        10,
    )


def test_choose_best_accuracy_within_the_precision_floor() -> None:
    result = _result({0.1: 0.90, 0.2: 0.96, 0.3: 0.99}, {0.1: 0.95, 0.2: 0.93, 0.3: 0.90})
    assert ts.choose(result, 0.95) == (0.2, None)  # 0.1 is more accurate but below the floor
    assert ts.choose(result, 0.80) == (0.1, None)
    assert ts.choose(result, 0.995) is None


def test_choose_ties_go_to_the_higher_threshold() -> None:
    result = _result({0.1: 0.97, 0.2: 0.97, 0.3: 0.97}, {0.1: 0.93, 0.2: 0.93, 0.3: 0.90})
    assert ts.choose(result, 0.95) == (0.2, None)


def test_parse_verifier_thresholds() -> None:
    assert ts.parse_verifier_thresholds("0.5, off,0.3,0.5") == (None, 0.3, 0.5)
    for bad in ("", "1", "0", "on"):
        with pytest.raises(ValueError):
            ts.parse_verifier_thresholds(bad)


def test_choose_with_a_verifier_ties_go_to_precision_then_thresholds() -> None:
    points = [(0.05, None), (0.05, 0.5), (0.15, None), (0.15, 0.5)]
    precision = {(0.05, None): 0.90, (0.05, 0.5): 0.99, (0.15, None): 0.96, (0.15, 0.5): 0.98}
    accuracy = {(0.05, None): 0.95, (0.05, 0.5): 0.94, (0.15, None): 0.93, (0.15, 0.5): 0.94}
    result = ts.SweepResult(
        (0.05, 0.15),
        [{"set": "a", "conf": t, "verifier": v, "precision": precision[t, v]} for t, v in points],
        [{"conf": t, "verifier": v, "accuracy": accuracy[t, v]} for t, v in points],
        10,
        (None, 0.5),
    )
    assert result.points == points
    # (0.05, off) is the most accurate but under the floor; two tie at 0.94 and the one with
    # the higher precision wins although its detector threshold is lower.
    assert ts.choose(result, 0.95) == (0.05, 0.5)
    assert ts.point_text((0.05, 0.5)) == "0.05 + verifier 0.50"


def test_validation_scenes_leave_out_test_classes_and_trained_photos(
    scenes: Path, tmp_path: Path
) -> None:
    hagrid = load_label_map("hagrid")
    everything = ep.validation_scenes(scenes, hagrid)
    assert len(everything) == 3 * SCENES_PER_CLASS
    trained_dir = tmp_path / "images" / "train"
    trained_dir.mkdir(parents=True)
    first_call = sorted((scenes / "call").iterdir())[0]
    (trained_dir / "pseudo_call_0.jpg").symlink_to(first_call)
    trained = ts.trained_photos([trained_dir])
    assert trained == {first_call.resolve()}
    kept = ep.validation_scenes(scenes, hagrid, load_label_map("mcs2021"), trained)
    assert sorted(p.truth for p in kept) == ["call", "fist", "fist"]
    assert all(p.path.resolve() != first_call.resolve() for p in kept)
    with pytest.raises(FileNotFoundError):
        ts.trained_photos([tmp_path / "missing"])
    with pytest.raises(ValueError, match="no validation scene"):
        ep.validation_scenes(scenes, hagrid, load_label_map("hagrid"))


def test_sweep_with_the_shipped_models(scenes: Path, shared_data: Path, repo_root: Path) -> None:
    thresholds = (0.1, 0.25, 0.5)
    detector = load_detector(None, 1)
    classifier = load_classifier(repo_root / "models" / "hagrid", 1)
    photos = ep.validation_scenes(scenes, classifier.spec.label_map, load_label_map("mcs2021"))
    rows = ts.sweep_scenes(detector, classifier, photos, thresholds)
    assert [r["conf"] for r in rows] == list(thresholds)
    assert all(r["photos"] == len(photos) and 0 <= r["accuracy"] <= 1 for r in rows)
    no_hand = [r["no_hand"] for r in rows]
    assert no_hand == sorted(no_hand)  # a higher threshold never finds more hands
    data = load_set("rf", shared_data / "roboflow_hands" / "test" / "images")
    small = DetectorSet("rf", data.images[:4], data.truths[:4], data.sizes[:4])
    det_rows = ts.sweep_detector_set(detector, small, thresholds)
    detections = [r["detections"] for r in det_rows]
    assert detections == sorted(detections, reverse=True)
    assert all(r["gt_boxes"] == small.boxes for r in det_rows)


def test_cli_writes_the_report(scenes: Path, tmp_path: Path, repo_root: Path) -> None:
    out = tmp_path / "sweep.md"
    code = main(
        [
            "threshold-sweep",
            "--models-dir",
            str(repo_root / "models"),
            "--classifier-dir",
            str(repo_root / "models" / "hagrid"),
            "--scenes",
            str(scenes),
            "--exclude-label-map",
            "mcs2021",
            "--thresholds",
            "0.2,0.4",
            "--threads",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    text = out.read_text(encoding="utf-8")
    assert "validation scenes" in text and "| 0.20 |" in text and "| 0.40 |" in text
    bad = ["threshold-sweep", "--scenes", str(scenes), "--thresholds", "2", "--out", str(out)]
    assert main(bad) == 2


def test_choose_skips_verifier_thresholds_that_drop_a_gesture() -> None:
    """The guard: a verifier threshold that keeps too few validation crops of any one label is
    not eligible, however good its other numbers."""
    points = [(0.15, None), (0.15, 0.3), (0.15, 0.5)]
    result = ts.SweepResult(
        (0.15,),
        [{"set": "a", "conf": t, "verifier": v, "precision": 0.99} for t, v in points],
        [
            {"conf": 0.15, "verifier": v, "accuracy": a}
            for v, a in ((None, 0.9), (0.3, 0.95), (0.5, 0.93))
        ],
        10,
        (None, 0.3, 0.5),
        {0.3: {"like": 1.0, "mute": 0.0}, 0.5: {"like": 0.99, "mute": 0.985}},
    )
    assert ts.choose(result, 0.95) == (0.15, 0.3)  # no guard asked for
    assert ts.choose(result, 0.95, min_crops_kept=0.98) == (0.15, 0.5)
    assert ts.choose(result, 0.95, min_crops_kept=0.99) == (0.15, None)
