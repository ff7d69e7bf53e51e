"""Evaluation plumbing on real photos from ../shared/data.

The fast tests drive the evaluation with stand-ins whose answers are known (a detector that
returns the ground truth, a classifier that always says ``stop``), so every metric has an
exact expected value. The slow tests run the real ONNX code path with untrained models and
check only that the computation is consistent, never the models' accuracy.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from gesture_recognition.artifacts import ClassifierSpec
from gesture_recognition.classifier_input import crops_to_batch
from gesture_recognition.images import load_image
from gesture_recognition.labels import load_label_map
from gesture_recognition.training import evaluate as ev
from gesture_recognition.training import evaluate_photos as ep
from gesture_recognition.training.converters.common import write_yolo_dataset
from gesture_recognition.training.converters.voc import parse_voc
from gesture_recognition.training.detection_metrics import RECALL_POINTS
from gesture_recognition.training.report import METRICS_JSON, write_report

SUBHIH_PHOTOS = [
    "16_pic00008",  # two hands
    "16_pic00032",  # two hands: listed first 0-hand, topmost 5-hand
    "1528664299.56_pic00034",
    "1528664299.56_pic00035",
    "1528664299.56_pic00051",
]
HAGRID_PHOTOS = [
    "peace/hagrid_380_resize336__peace_00000.jpg",
    "peace/hagrid_380_resize336__peace_00001.jpg",
    "stop/hagrid_380_resize336__stop_00000.jpg",
    "like/hagrid_380_resize336__like_00000.jpg",
    "no_gesture/hagrid_380_resize336__no_gesture_00001.jpg",
    "call/hagrid_380_resize336__call_00002.jpg",  # not a MachinesCanSee class
]


def _key(image: np.ndarray) -> str:
    return hashlib.sha1(image.tobytes()).hexdigest()


def _voc_boxes(xml: Path) -> tuple[np.ndarray, list[str]]:
    """Ground truth read straight from the VOC file (independent of the YOLO labels)."""
    root = ET.parse(xml).getroot()
    boxes, names = [], []
    for obj in root.iter("object"):
        bnd = obj.find("bndbox")
        boxes.append([float(bnd.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")])
        names.append(obj.findtext("name"))
    return np.asarray(boxes, np.float32), names


@pytest.fixture(scope="module")
def yolo_test_split(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A YOLO dataset whose test split is five SubhiH test photos (images linked)."""
    root = shared_data / "subhih_hands"
    records = []
    for stem in SUBHIH_PHOTOS:
        record = parse_voc(root / "test" / f"{stem}.xml", root, "subhih")
        record.split = "test"
        records.append(record)
    train = parse_voc(root / "train" / sorted(os.listdir(root / "train"))[1], root, "subhih")
    records.append(train)
    out = tmp_path_factory.mktemp("yolo") / "ds"
    report = write_yolo_dataset(records, out, val_fraction=0.0)
    assert report.written["test"] == len(SUBHIH_PHOTOS)
    return out / "data.yaml"


@pytest.fixture(scope="module")
def truth_by_image(shared_data: Path) -> dict[str, np.ndarray]:
    root = shared_data / "subhih_hands" / "test"
    return {
        _key(load_image(root / f"{s}.jpg")): _voc_boxes(root / f"{s}.xml")[0] for s in SUBHIH_PHOTOS
    }


# --- detector --------------------------------------------------------------------------------


def test_split_images_and_labels_follow_ultralytics(yolo_test_split: Path):
    images = ev.split_images(yolo_test_split, "test")
    assert len(images) == len(SUBHIH_PHOTOS)
    label = ev.label_path_for(images[0])
    assert label.parent.name == "test" and label.parent.parent.name == "labels"
    assert label.is_file()
    with pytest.raises(ValueError, match="no 'nope' split"):
        ev.split_images(yolo_test_split, "nope")


def test_split_from_txt_list(yolo_test_split: Path, tmp_path: Path):
    images = ev.split_images(yolo_test_split, "test")
    listing = tmp_path / "test.txt"
    listing.write_text("".join(f"{p}\n" for p in images[:2]))
    data = tmp_path / "data.yaml"
    data.write_text(f"path: {tmp_path}\ntest: test.txt\nnames: {{0: hand}}\n")
    assert ev.split_images(data, "test") == images[:2]


def test_yolo_labels_denormalise_and_polygons(tmp_path: Path):
    label = tmp_path / "a.txt"
    label.write_text("0 0.5 0.5 0.25 0.5\n\n0 0.1 0.1 0.3 0.1 0.3 0.4 0.1 0.4\n")
    boxes = ev.read_yolo_labels(label, 640, 480)
    np.testing.assert_allclose(boxes, [[240, 120, 400, 360], [64, 48, 192, 192]], atol=1e-3)
    assert ev.read_yolo_labels(tmp_path / "missing.txt", 640, 480).shape == (0, 4)
    label.write_text("0 0.5 0.5\n")
    with pytest.raises(ValueError, match="not a YOLO label row"):
        ev.read_yolo_labels(label, 640, 480)


def test_detector_that_returns_the_truth_scores_one(yolo_test_split, truth_by_image):
    # The ground truth comes from the VOC files, the evaluation reads the YOLO labels:
    # mAP 1 shows the label conversion and the AP agree to the pixel.
    def detect(image):
        gt = truth_by_image[_key(image)]
        return gt, np.full(len(gt), 0.9, np.float32)

    result = ev.evaluate_detector(None, yolo_test_split, "test", detect=detect, served_conf=0.5)
    assert result["images"] == len(SUBHIH_PHOTOS)
    assert result["gt_boxes"] == sum(len(v) for v in truth_by_image.values())
    assert result["map50"] == 1.0
    assert result["map50_95"] == 1.0
    assert result["served"]["precision"] == result["served"]["recall"] == 1.0
    # Nothing scored below the served threshold: the report says the curve is truncated...
    assert any("truncated" in n for n in result["notes"])
    # ... unless the boxes are the served ones by design (the verifier's hands): no warning.
    hands = ev.evaluate_detector(
        None, yolo_test_split, "test", detect=detect, served_conf=0.5, served_only=True
    )
    assert not any("WARNING" in n for n in hands["notes"])
    assert any("rank only the served boxes" in n for n in hands["notes"])
    assert hands["map50"] == result["map50"]


def test_low_score_false_positives_only_hurt_below_the_served_threshold(
    yolo_test_split, truth_by_image
):
    keys = sorted(truth_by_image)
    missed = keys[0]

    def detect(image):
        key = _key(image)
        gt = truth_by_image[key] if key != missed else np.zeros((0, 4), np.float32)
        junk = np.asarray([[0, 0, 20, 20]], np.float32)
        return np.concatenate([gt, junk]), np.asarray([0.9] * len(gt) + [0.1], np.float32)

    result = ev.evaluate_detector(None, yolo_test_split, "test", detect=detect, served_conf=0.5)
    n_gt = result["gt_boxes"]
    found = n_gt - len(truth_by_image[missed])
    recall = found / n_gt
    # Every hit outranks every false positive: precision 1 up to the recall reached.
    expected_ap = float(np.mean(recall + 1e-12 >= RECALL_POINTS))
    assert result["map50"] == pytest.approx(expected_ap)
    assert result["served"]["map50"] == pytest.approx(expected_ap)
    assert result["served"]["precision"] == 1.0
    assert result["served"]["recall"] == pytest.approx(recall)
    assert result["served"]["detections"] == found
    assert result["detections"] == found + len(SUBHIH_PHOTOS)
    assert not any("truncated" in n for n in result["notes"])
    # The mistakes photo by photo, at the served threshold: the junk boxes scored under it.
    errors = result["errors"]
    assert (errors["false_boxes"], errors["missed_hands"]) == (0, len(truth_by_image[missed]))
    assert errors["photos_with_missed_hands"] == 1 and len(errors["photos"]) == 1
    assert not Path(errors["photos"][0]["image"]).is_absolute()
    low = ev.evaluate_detector(None, yolo_test_split, "test", detect=detect, served_conf=0.05)
    assert low["errors"]["false_boxes"] == low["errors"]["photos_with_false_boxes"] == len(keys)
    # The photo with both kinds of mistake comes first.
    first = low["errors"]["photos"][0]
    assert first["false"] == [[0.0, 0.0, 20.0, 20.0, 0.1]] and first["missed"]


def test_report_draws_the_detectors_mistakes(yolo_test_split, truth_by_image, tmp_path):
    def detect(image):
        gt = truth_by_image[_key(image)]
        return gt[1:], np.full(len(gt) - 1, 0.9, np.float32)  # misses each photo's first hand

    det = ev.evaluate_detector(None, yolo_test_split, "test", detect=detect, served_conf=0.5)
    text = write_report([det], tmp_path / "r").read_text()
    assert f"{len(SUBHIH_PHOTOS)} missed hands on {len(SUBHIH_PHOTOS)} photos" in text
    assert "(errors_detector.png)" in text
    with Image.open(tmp_path / "r" / "errors_detector.png") as img:
        cols = min(4, len(SUBHIH_PHOTOS))
        assert img.size == (cols * 220, -(-len(SUBHIH_PHOTOS) // cols) * 220)


# --- classifier ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crops_dir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A crop manifest over real HaGRID photos (linked), test and train rows."""
    out = tmp_path_factory.mktemp("crops")
    rows = []
    for i, rel in enumerate(HAGRID_PHOTOS):
        dest = out / "test" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.symlink_to(shared_data / "hagrid_crops" / rel)
        label = rel.split("/")[0]
        rows.append(
            {
                "path": f"test/{rel}",
                "label": label,
                "split": "test" if i != 1 else "train",
                "group": rel,
                "source": f"hagrid:{rel}",
            }
        )
    with (out / "manifest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "crop_config.json").write_text(json.dumps({"scale": 1.2, "square": True}))
    return out


class AlwaysStop:
    """A classifier stand-in that answers ``stop`` and keeps what it was given."""

    def __init__(self, spec: ClassifierSpec):
        self.spec = spec
        self.batches: list[np.ndarray] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(batch)
        logits = np.zeros((len(batch), self.spec.label_map.num_classes), np.float32)
        logits[:, self.spec.label_map.index("stop")] = 5.0
        return logits


def test_classifier_metrics_with_a_known_classifier(crops_dir: Path):
    spec = ClassifierSpec(label_map=load_label_map("mcs2021"), input_size=32)
    stub = AlwaysStop(spec)
    result = ev.evaluate_classifier(None, crops_dir, "test", classifier=stub, batch_size=2)
    # Test rows: peace_00000 (victory), stop, like, no_gesture, and call, which is not an MCS
    # class: the mcs2021 map's merge from hagrid answers it no_gesture.
    assert result["n"] == 5
    assert result["excluded"] == {}
    assert any("call->no_gesture 1" in n for n in result["notes"])
    assert result["accuracy"] == pytest.approx(1 / 5)
    stop = result["per_class"]["stop"]
    assert (stop["precision"], stop["recall"], stop["support"]) == (pytest.approx(0.2), 1.0, 1)
    assert stop["f1"] == pytest.approx(2 * 0.2 / 1.2)
    # Macro over classes seen in truth or predictions: stop, victory, like, no_gesture.
    assert result["macro_f1"] == pytest.approx((2 * 0.2 / 1.2) / 4)
    matrix = np.asarray(result["confusion_matrix"]["rows_true_cols_predicted"])
    assert matrix.sum() == 5 and matrix[:, spec.label_map.index("stop")].sum() == 5
    assert matrix[spec.label_map.index("no_gesture")].sum() == 2  # no_gesture and call
    assert {p["truth"] for p in result["predictions"]} == {"victory", "stop", "like", "no_gesture"}
    # The classifier saw the serving preprocessing of the crop files.
    first = load_image(crops_dir / result["predictions"][0]["path"])
    np.testing.assert_array_equal(
        stub.batches[0][0], crops_to_batch([first], 32, spec.mean, spec.std)[0]
    )
    assert not any("WARNING" in n for n in result["notes"])


def test_classifier_warns_when_crops_were_cut_differently(crops_dir: Path, tmp_path: Path):
    spec = ClassifierSpec(label_map=load_label_map("mcs2021"), input_size=32)
    other = tmp_path / "crops"
    other.mkdir()
    (other / "manifest.csv").write_text((crops_dir / "manifest.csv").read_text())
    (other / "test").symlink_to(crops_dir / "test")
    (other / "crop_config.json").write_text(json.dumps({"scale": 1.5, "square": True}))
    result = ev.evaluate_classifier(None, other, "test", classifier=AlwaysStop(spec))
    assert any("WARNING" in n for n in result["notes"])


def test_classifier_refuses_a_split_without_known_labels(crops_dir: Path):
    spec = ClassifierSpec(label_map=load_label_map("finger_count"), input_size=32)
    with pytest.raises(ValueError, match="finger_count"):
        ev.evaluate_classifier(None, crops_dir, "test", classifier=AlwaysStop(spec))


def test_held_out_photos_reads_the_source_column(crops_dir: Path):
    assert ev.held_out_photos(crops_dir, "train") == [HAGRID_PHOTOS[1]]
    assert len(ev.held_out_photos(crops_dir, "test", source="hagrid")) == 5
    assert ev.held_out_photos(crops_dir, "test", source="other") == []


# --- end to end ------------------------------------------------------------------------------


def test_topmost_rule_on_a_real_two_hand_photo(shared_data: Path):
    boxes, names = _voc_boxes(shared_data / "subhih_hands" / "test" / "16_pic00032.xml")
    assert names == ["0-hand", "5-hand"]
    assert ep.topmost_label(boxes, names) == "5-hand"
    assert ep.topmost_label(np.zeros((0, 4), np.float32), []) is None


def test_finger_photos_label_each_test_photo_by_its_topmost_box(shared_data: Path):
    fingers = load_label_map("finger_count")
    photos, excluded = ep.finger_photos(shared_data / "subhih_hands", "test", fingers)
    assert len(photos) + sum(excluded.values()) == 312
    by_key = {p.key: p.truth for p in photos}
    assert by_key["test/16_pic00032.jpg"] == "5"
    assert by_key["test/16_pic00008.jpg"] == "0"
    assert all(k.startswith("test/") for k in by_key)
    assert set(by_key.values()) <= set(fingers.classes)


def test_mcs_photos_keep_only_the_label_maps_classes(shared_data: Path):
    mcs = load_label_map("mcs2021")
    paths = [*HAGRID_PHOTOS, "stop/not_there.jpg", shared_data / "hagrid_crops" / HAGRID_PHOTOS[2]]
    photos, excluded = ep.mcs_photos(shared_data / "hagrid_crops", paths, mcs)
    assert [p.truth for p in photos] == ["victory", "victory", "stop", "like", "no_gesture", "stop"]
    assert excluded == {"class_not_in_label_map:call": 1, "not_in_dataset": 1}


class ScriptedPipeline:
    """A pipeline stand-in: answers from a table keyed by photo content."""

    def __init__(self, answers: dict[str, str | None], label_map):
        self.answers = answers
        self.classifier = SimpleNamespace(spec=SimpleNamespace(label_map=label_map))
        self.label_map = label_map

    def __call__(self, image: np.ndarray):
        answer = self.answers[_key(image)]
        if answer is None:
            return SimpleNamespace(
                gesture=self.label_map.no_hand_label,
                score=1.0,
                hand_boxes=np.zeros((0, 4)),
                hand_gestures=[],
                hand_gesture_scores=np.zeros(0),
            )
        box = np.asarray([[10.0, 20.0, 60.0, 90.0]])
        return SimpleNamespace(
            gesture=answer,
            score=0.8,
            hand_boxes=box,
            hand_gestures=[answer],
            hand_gesture_scores=np.asarray([0.8]),
        )


def test_end_to_end_fingers_counts_misses_and_no_hand(shared_data: Path, tmp_path: Path):
    fingers = load_label_map("finger_count")
    root = shared_data / "subhih_hands"
    photos, _ = ep.finger_photos(root, "test", fingers)
    photos = photos[:6]
    answers: dict[str, str | None] = {}
    for i, photo in enumerate(photos):
        key = _key(load_image(photo.path))
        if i == 0:
            answers[key] = None  # no hand found
        elif i == 1:
            answers[key] = "1" if photo.truth != "1" else "2"  # wrong
        else:
            answers[key] = photo.truth
    pipe = ScriptedPipeline(answers, fingers)
    result = ep.score_photos(pipe, photos, fingers)
    assert result["n"] == 6
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["photos_without_hand"] == 1
    assert result["no_hand_rate"] == pytest.approx(1 / 6)
    labels = result["confusion_matrix"]["labels"]
    assert labels[-1] == "no_hand" and "no_hand" not in result["per_class"]
    matrix = np.asarray(result["confusion_matrix"]["rows_true_cols_predicted"])
    assert matrix[:, -1].sum() == 1 and matrix.sum() == 6
    assert result["latency"]["mean_ms"] >= 0.0
    # The two wrong answers, with the hands found, and their gallery in the report.
    wrong = result["wrong_answers"]
    assert (wrong[0]["truth"], wrong[0]["hands"]) == (photos[0].truth, [])
    assert wrong[1]["predicted"] == answers[_key(load_image(photos[1].path))]
    assert wrong[1]["hands"] == [[10.0, 20.0, 60.0, 90.0, wrong[1]["predicted"], 0.8]]
    assert len(wrong) == 2 and not Path(wrong[0]["image"]).is_absolute()
    named = {**result, "name": "e2e", "kind": "end_to_end", "split": "test", "dataset": "d"}
    text = write_report([named], tmp_path / "r").read_text()
    assert "(wrong_e2e.png)" in text
    with Image.open(tmp_path / "r" / "wrong_e2e.png") as img:
        assert img.size == (2 * 220, 220)


def test_end_to_end_fingers_refuses_a_gesture_classifier(shared_data: Path):
    pipe = ScriptedPipeline({}, load_label_map("mcs2021"))
    with pytest.raises(ValueError, match="finger_count"):
        ep.evaluate_end_to_end_fingers(None, shared_data / "subhih_hands", pipeline=pipe)


def test_end_to_end_mcs_no_hand_is_no_gesture(shared_data: Path):
    mcs = load_label_map("mcs2021")
    root = shared_data / "hagrid_crops"
    photos, _ = ep.mcs_photos(root, HAGRID_PHOTOS, mcs)
    # No hand anywhere: only the no_gesture photo is right, and no extra column appears.
    pipe = ScriptedPipeline({_key(load_image(p.path)): None for p in photos}, mcs)
    result = ep.evaluate_end_to_end_mcs(None, root, HAGRID_PHOTOS, pipeline=pipe)
    assert result["n"] == 5
    assert result["accuracy"] == pytest.approx(1 / 5)
    assert result["no_hand_rate"] == 1.0
    assert result["confusion_matrix"]["labels"] == list(mcs.classes)
    assert result["excluded"] == {"class_not_in_label_map:call": 1}


# --- report ----------------------------------------------------------------------------------


def test_report_writes_markdown_plots_json_and_csv(
    yolo_test_split, truth_by_image, crops_dir, tmp_path
):
    def detect(image):
        gt = truth_by_image[_key(image)]
        return gt, np.full(len(gt), 0.9, np.float32)

    det = ev.evaluate_detector(None, yolo_test_split, "test", detect=detect, served_conf=0.25)
    spec = ClassifierSpec(label_map=load_label_map("mcs2021"), input_size=32)
    cls = ev.evaluate_classifier(None, crops_dir, "test", classifier=AlwaysStop(spec))
    report = write_report([det, cls], tmp_path / "report")
    text = report.read_text()
    assert f"| accuracy | {cls['accuracy']:.4f} |" in text
    assert f"| mAP50 | {det['map50']:.4f} |" in text
    for png in ("pr_detector.png", "confusion_classifier.png"):
        assert f"({png})" in text
        with Image.open(tmp_path / "report" / png) as img:
            assert img.format == "PNG" and img.size[0] > 100
    metrics = json.loads((tmp_path / "report" / METRICS_JSON).read_text())["results"]
    assert metrics["classifier"]["macro_f1"] == cls["macro_f1"]
    assert metrics["detector"]["map50_95"] == det["map50_95"]
    assert "predictions" not in metrics["classifier"]
    with (tmp_path / "report" / "predictions_classifier.csv").open() as f:
        assert len(list(csv.DictReader(f))) == cls["n"]
    with pytest.raises(ValueError, match="unique"):
        write_report([cls, cls], tmp_path / "again")


# --- the real ONNX path, untrained models (slow) ---------------------------------------------


@pytest.fixture(scope="module")
def untrained_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gesture_recognition.export.onnx_export import make_untrained_models

    return make_untrained_models(tmp_path_factory.mktemp("models") / "mcs")


@pytest.mark.slow
def test_onnx_detector_and_classifier_evaluations_are_consistent(
    untrained_models, yolo_test_split, crops_dir, shared_data, tmp_path
):
    from gesture_recognition.pipeline import GesturePipeline

    det = ev.evaluate_detector(untrained_models, yolo_test_split, "test")
    assert det["images"] == len(SUBHIH_PHOTOS)
    assert 0.0 <= det["map50_95"] <= det["map50"] <= 1.0
    assert det["detector"]["imgsz"] == 320
    # The served boxes are a subset of the full-curve boxes.
    assert det["served"]["detections"] <= det["detections"]

    cls = ev.evaluate_classifier(untrained_models, crops_dir, "test")
    pipe = GesturePipeline.from_dir(untrained_models)
    spec = pipe.classifier.spec
    for row in cls["predictions"]:
        crop = load_image(crops_dir / row["path"])
        logits = pipe.classifier(crops_to_batch([crop], spec.input_size, spec.mean, spec.std))
        assert row["predicted"] == spec.label_map.classes[int(logits.argmax())]

    hagrid = shared_data / "hagrid_crops"
    e2e = ep.evaluate_end_to_end_mcs(None, hagrid, HAGRID_PHOTOS, pipeline=pipe)
    assert e2e["n"] == 5
    for row in e2e["predictions"]:
        assert row["predicted"] == pipe(load_image(hagrid / row["path"])).gesture
    report = write_report([det, cls, e2e], tmp_path / "report")
    assert (tmp_path / "report" / "confusion_end_to_end_mcs.png").is_file()
    assert "end_to_end_mcs" in report.read_text()


@pytest.mark.slow
def test_onnx_end_to_end_fingers_runs_the_served_pipeline(untrained_models, shared_data, tmp_path):
    import shutil

    import timm

    from gesture_recognition.export.onnx_export import export_classifier
    from gesture_recognition.pipeline import GesturePipeline

    models = tmp_path / "fingers"
    models.mkdir()
    for name in ("hand_detector.onnx", "hand_detector.json"):
        shutil.copy(untrained_models / name, models / name)
    fingers = load_label_map("finger_count")
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=6)
    export_classifier(net, ClassifierSpec(label_map=fingers, input_size=96), models, max_batch=2)
    pipe = GesturePipeline.from_dir(models)
    root = shared_data / "subhih_hands"
    photos, _ = ep.finger_photos(root, "test", fingers)
    result = ep.score_photos(pipe, photos[:4], fingers)
    assert result["n"] == 4
    for row, photo in zip(result["predictions"], photos[:4], strict=True):
        assert row["truth"] == photo.truth
        assert row["predicted"] == pipe(load_image(photo.path)).gesture


def test_the_scene_splits_of_hagrid_crops(shared_data: Path) -> None:
    """test: the photos of the MachinesCanSee classes; val: every other class; never both."""
    root = shared_data / "hagrid_crops"
    test, mcs = ep.scene_split(root, "test")
    val, hagrid = ep.scene_split(root, "val")
    assert (mcs.name, hagrid.name) == ("mcs2021", "hagrid")
    assert (len(test), len(val)) == (208, 303)
    assert not {p.key for p in test} & {p.key for p in val}
    assert {p.truth for p in test} <= set(mcs.classes)
    assert not any(mcs.contains(p.key.split("/")[0]) for p in val)
    with pytest.raises(ValueError, match="val or test"):
        ep.scene_split(root, "train")
