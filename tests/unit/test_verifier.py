"""The hand verifier: the ONNX surgery on the shipped classifiers, the fit, the background boxes,
and ``gesture-train train-verifier`` end to end on real SubhiH photos with the shipped models
(mechanics only: outputs, shapes, that the gestures are untouched; never an accuracy)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from gesture_recognition.artifacts import (
    CLASSIFIER_JSON,
    CLASSIFIER_ONNX,
    VerifierSpec,
    read_classifier_spec,
    write_spec,
)
from gesture_recognition.boxes import box_iou
from gesture_recognition.hands import verified
from gesture_recognition.images import load_image
from gesture_recognition.pipeline import GesturePipeline
from gesture_recognition.runtime import ClassifierRunner, make_session
from gesture_recognition.serving.configs import ServingOptions, read_specs
from gesture_recognition.serving.configs import pipeline as pipeline_steps
from gesture_recognition.training import verifier as ver
from gesture_recognition.training.cli import main
from gesture_recognition.training.converters.voc import parse_voc
from gesture_recognition.training.evaluate import evaluate_detector
from tests.conftest import models_folder, sample_photos

CLASSIFIERS = ("models/hagrid", "models", "models/finger_count")
PHOTOS = 6


@pytest.mark.parametrize("folder", CLASSIFIERS)
def test_the_feature_tensor_of_each_shipped_classifier(repo_root: Path, folder: str) -> None:
    model = onnx.load(str(repo_root / folder / CLASSIFIER_ONNX))
    assert "Flatten" in ver.feature_tensor(model)
    assert ver.feature_width(model) == 1280  # EfficientNet-Lite0's pooled features


def test_added_output_is_the_logistic_layer_and_leaves_the_logits(
    repo_root: Path, tmp_path: Path
) -> None:
    source = repo_root / "models" / "hagrid" / CLASSIFIER_ONNX
    model = onnx.load(str(source))
    rng = np.random.default_rng(0)
    weights = rng.normal(0, 0.01, 1280).astype(np.float32)
    with_hand = tmp_path / "with_hand.onnx"
    onnx.save(ver.add_verifier_output(model, weights, 0.25), str(with_hand))
    probe = tmp_path / "features.onnx"
    probe.write_bytes(ver.with_feature_output(model))
    batch = rng.random((3, 3, 160, 160), dtype=np.float32)
    logits, hand = make_session(with_hand).run(["logits", "hand"], {"input": batch})
    before, features = make_session(probe).run(
        ["logits", ver.feature_tensor(model)], {"input": batch}
    )
    np.testing.assert_allclose(logits, before, atol=1e-5)
    expected = 1 / (1 + np.exp(-(features @ weights + 0.25)))
    assert hand.shape == (3, 1)
    np.testing.assert_allclose(hand[:, 0], expected, atol=1e-5)
    with pytest.raises(ValueError, match="do not fit"):
        ver.add_verifier_output(model, weights[:10], 0.0)
    # A verifier it already has is replaced, not stacked; stripping gives the classifier back.
    again = ver.add_verifier_output(onnx.load(str(with_hand)), weights, -0.25)
    assert [o.name for o in again.graph.output] == ["logits", "hand"]
    stripped = ver.strip_verifier(again)
    assert [o.name for o in stripped.graph.output] == ["logits"]
    assert len(stripped.graph.node) == len(ver.strip_verifier(model).graph.node)
    onnx.checker.check_model(stripped)


def test_fit_logistic_separates_and_folds_the_standardisation() -> None:
    rng = np.random.default_rng(1)
    hands = rng.normal(5.0, 1.0, (200, 8)).astype(np.float32)
    others = rng.normal(2.0, 1.0, (60, 8)).astype(np.float32)
    features = np.concatenate([hands, others])
    is_hand = np.array([True] * 200 + [False] * 60)
    weights, bias = ver.fit_logistic(features, is_hand, l2=0.01)
    p = 1 / (1 + np.exp(-(features @ weights + bias)))
    assert ((p >= 0.5) == is_hand).mean() > 0.95  # on the raw features, as the ONNX sees them
    with pytest.raises(ValueError, match="hands and of non-hands"):
        ver.fit_logistic(hands, np.ones(200, bool), 0.01)


def test_background_boxes_miss_every_hand() -> None:
    rng = np.random.default_rng(2)
    truth = np.array([[100, 100, 180, 200], [300, 50, 360, 130]], np.float32)
    boxes = ver.random_background_boxes(rng, truth, 640, 480, 5)
    assert 0 < len(boxes) <= 5
    assert box_iou(boxes, truth).max() == 0
    assert (boxes[:, 2] <= 640).all() and (boxes[:, 3] <= 480).all()
    sizes = {(round(b[2] - b[0]), round(b[3] - b[1])) for b in boxes}
    assert sizes <= {(80, 100), (60, 80)}  # each the size of one of the photo's hands
    assert len(ver.random_background_boxes(rng, np.zeros((0, 4), np.float32), 640, 480, 3)) == 3


@pytest.fixture(scope="module")
def boxed_data(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data.yaml over a few real SubhiH photos, their VOC boxes written as YOLO labels (the
    webcam hands leave room for boxes on no hand)."""
    root = tmp_path_factory.mktemp("boxed")
    source = shared_data / "subhih_hands" / "test"
    xmls = sorted(source.glob("*.xml"))[::40][:PHOTOS]
    for n, xml in enumerate(xmls):
        record = parse_voc(xml, source)
        split = "train" if n < 4 else "val"
        for kind in ("images", "labels"):
            (root / kind / split).mkdir(parents=True, exist_ok=True)
        (root / "images" / split / record.image_path.name).symlink_to(record.image_path)
        width, height = Image.open(record.image_path).size
        rows = [
            f"0 {(b.x1 + b.x2) / 2 / width} {(b.y1 + b.y2) / 2 / height} "
            f"{(b.x2 - b.x1) / width} {(b.y2 - b.y1) / height}"
            for b in record.boxes
        ]
        label = root / "labels" / split / f"{record.image_path.stem}.txt"
        label.write_text("\n".join(rows) + "\n", encoding="utf-8")
    data = root / "data.yaml"
    data.write_text(
        f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n  0: hand\n", "utf-8"
    )
    return data


def test_train_verifier_cli_writes_a_classifier_with_a_verifier(
    repo_root: Path, boxed_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "hagrid_verified"
    code = main(
        [
            "train-verifier",
            "--classifier-dir",
            str(repo_root / "models" / "hagrid"),
            "--models-dir",
            str(repo_root / "models"),
            "--data",
            str(boxed_data),
            "--validate",
            "--threads",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    spec = read_classifier_spec(out / CLASSIFIER_JSON)
    assert spec.verifier is not None and spec.verifier.output_name == "hand"
    # The shipped classifier has a verifier already: it is replaced, the rest kept.
    original = read_classifier_spec(repo_root / "models" / "hagrid" / CLASSIFIER_JSON)
    assert spec.label_map == original.label_map and spec.crop == original.crop
    assert [o.name for o in onnx.load(str(out / CLASSIFIER_ONNX)).graph.output] == [
        "logits",
        "hand",
    ]
    report = json.loads((out / "verifier_report.json").read_text(encoding="utf-8"))
    assert report["train"]["photos"] == 4 and report["val"]["photos"] == PHOTOS - 4
    assert report["train"]["hands"] > 0 and report["train"]["not_hands"] > 0

    # The pipeline runs it: the hands it keeps are the ones the verifier passes, and the
    # gestures of those hands are the original classifier's.
    runner = ClassifierRunner(out / CLASSIFIER_ONNX, spec, threads=1)
    plain = ClassifierRunner(repo_root / "models" / "hagrid" / CLASSIFIER_ONNX, original, 1)
    batch = np.random.default_rng(3).random((2, 3, 160, 160), dtype=np.float32)
    logits, hand = runner.logits_and_hand(batch)
    assert hand is not None and hand.shape == (2,) and ((hand >= 0) & (hand <= 1)).all()
    np.testing.assert_allclose(logits, plain(batch), atol=1e-5)
    keep = verified(hand, spec)
    assert keep is not None and keep.dtype == bool
    assert verified(hand, replace(original, verifier=None)) is None

    models = models_folder(tmp_path / "models", repo_root / "models", out)
    pipeline = GesturePipeline.from_dir(models, threads=1)
    result = pipeline(load_image(sample_photos()[0]))
    assert len(result.hand_gestures) == len(result.hand_boxes)
    # The served declaration carries the verifier from the classifier to the decision.
    steps = {s.name: s for s in pipeline_steps(read_specs(models), ServingOptions(), "onnxruntime")}
    assert [t.name for t in steps["gesture_classifier"].outputs] == ["logits", "hand"]
    assert "HAND" in [t.name for t in steps["gesture_decision"].inputs]
    # Bad input: a data.yaml that does not exist.
    bad = ["train-verifier", "--classifier-dir", str(out), "--data", str(tmp_path / "no.yaml")]
    assert main([*bad, "--out", str(tmp_path / "again")]) == 2


@pytest.mark.parametrize(("bias", "kept"), [(50.0, "all"), (-50.0, "none")])
def test_served_hands_are_the_detector_boxes_the_verifier_keeps(
    repo_root: Path, boxed_data: Path, tmp_path: Path, bias: float, kept: str
) -> None:
    """A verifier that keeps every box serves exactly the detector's boxes; one that keeps none
    serves no hand (scored with the project's one matching code)."""
    models = models_folder(tmp_path / "models", repo_root / "models")
    source = repo_root / "models" / "hagrid"
    model = ver.add_verifier_output(
        onnx.load(str(source / CLASSIFIER_ONNX)), np.zeros(1280, np.float32), bias
    )
    onnx.save(model, str(models / CLASSIFIER_ONNX))
    spec = read_classifier_spec(source / CLASSIFIER_JSON)
    write_spec(replace(spec, verifier=VerifierSpec(0.3)), models / CLASSIFIER_JSON)
    detect, conf = ver.served_hands(models, threads=1)
    served = evaluate_detector(models, boxed_data, "train", detect=detect, served_conf=conf)
    plain = evaluate_detector(models, boxed_data, "train", threads=1)
    if kept == "all":
        assert served["served"]["recall"] == plain["served"]["recall"]
        assert served["served"]["precision"] == plain["served"]["precision"]
        assert served["served"]["detections"] == plain["served"]["detections"] > 0
    else:
        assert served["served"]["detections"] == 0
    write_spec(replace(spec, verifier=None), models / CLASSIFIER_JSON)
    with pytest.raises(ValueError, match="no verifier"):
        ver.served_hands(models)


@pytest.fixture(scope="module")
def hand_crops(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An import-crops folder over real HaGRID tight hand crops: 5 train and 2 val of three
    labels (the manifest's layout, paths relative to it)."""
    root = tmp_path_factory.mktemp("crops")
    rows = ["path,label,split,group,source,crop"]
    for label in ("like", "mute", "palm"):
        for n, crop in enumerate(sorted((shared_data / "hagrid_hand_crops" / label).iterdir())[:7]):
            split = "train" if n < 5 else "val"
            rows.append(f"{crop},{label},{split},{crop.stem},test,tight_box")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def test_hand_crops_are_drawn_per_label_and_featured_in_the_served_view(
    repo_root: Path, hand_crops: Path
) -> None:
    rows = ver.crop_rows(hand_crops, "train", per_class=3, seed=0)
    assert sorted(r["label"] for r in rows) == ["like"] * 3 + ["mute"] * 3 + ["palm"] * 3
    assert rows == ver.crop_rows(hand_crops, "train", per_class=3, seed=0)  # seeded
    assert len(ver.crop_rows(hand_crops, "val", per_class=3, seed=0)) == 6
    folder = repo_root / "models" / "hagrid"
    spec = read_classifier_spec(folder / CLASSIFIER_JSON)
    view = ver.ServedView.deterministic(spec.crop)
    features = ver.crop_features(folder / CLASSIFIER_ONNX, spec, hand_crops, rows, view, 1)
    assert features.shape == (9, 1280) and np.isfinite(features).all()
    with pytest.raises(ValueError, match="holds no crop"):
        ver.crop_rows(hand_crops, "test", per_class=3, seed=0)


@pytest.mark.parametrize(("bias", "share"), [(50.0, 1.0), (-50.0, 0.0)])
def test_sweep_crops_measures_each_label(
    repo_root: Path, hand_crops: Path, tmp_path: Path, bias: float, share: float
) -> None:
    from gesture_recognition.training import threshold_sweep as ts

    source = repo_root / "models" / "hagrid"
    model = ver.add_verifier_output(
        onnx.load(str(source / CLASSIFIER_ONNX)), np.zeros(1280, np.float32), bias
    )
    onnx.save(model, str(tmp_path / CLASSIFIER_ONNX))
    spec = replace(read_classifier_spec(source / CLASSIFIER_JSON), verifier=VerifierSpec(0.5))
    runner = ClassifierRunner(tmp_path / CLASSIFIER_ONNX, spec, threads=1)
    kept = ts.sweep_crops(runner, hand_crops, (None, 0.1, 0.9))
    assert set(kept) == {0.1, 0.9}
    assert kept[0.1] == {"like": share, "mute": share, "palm": share}
    plain = ClassifierRunner(
        source / CLASSIFIER_ONNX,
        replace(read_classifier_spec(source / CLASSIFIER_JSON), verifier=None),
    )
    with pytest.raises(ValueError, match="has none"):
        ts.sweep_crops(plain, hand_crops, (0.5,))
