"""Hand-box dataset converters and the merged detector dataset.

Real SubhiH VOC files are read from ../shared/data (a handful, copied into tmp_path); every
other format gets a tiny fixture written here in its documented layout.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from gesture_recognition.training.converters.coco import read_coco
from gesture_recognition.training.converters.common import (
    HandBox,
    ImageRecord,
    UnsafePathError,
    split_name,
    write_yolo_dataset,
)
from gesture_recognition.training.converters.hagrid import read_hagrid
from gesture_recognition.training.converters.merge import (
    SourceSpec,
    build_detector_dataset,
    convert_cli,
    parse_source,
)
from gesture_recognition.training.converters.oxford import read_oxford
from gesture_recognition.training.converters.tvhand import (
    decide_order,
    parse_line,
    read_cocohand,
    read_tvhand,
)
from gesture_recognition.training.converters.voc import read_voc_dir
from gesture_recognition.training.converters.yolo_txt import read_yolo

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
SUBHIH = SHARED / "subhih_hands"


def jpeg(path: Path, width: int = 64, height: int = 48, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=80)
    return path


def by_name(records: list[ImageRecord]) -> dict[str, ImageRecord]:
    return {r.image_path.name: r for r in records}


def box_tuple(box: HandBox) -> tuple[float, float, float, float]:
    return (box.x1, box.y1, box.x2, box.y2)


def voc_xml(path: Path, filename: str, objects: list[tuple[str, float, float, float, float]]):
    objs = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
        f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
        for n, a, b, c, d in objects
    )
    path.write_text(
        f"<annotation><filename>{filename}</filename>{objs}</annotation>", encoding="utf-8"
    )


def copy_subhih(dst: Path, per_split: int = 3) -> list[Path]:
    """A few real SubhiH photos with their xml, copied (symlinks would resolve outside)."""
    if not SUBHIH.is_dir():
        pytest.fail(f"shared test data missing: {SUBHIH}")
    copied = []
    for split in ("train", "test"):
        for xml in sorted((SUBHIH / split).glob("*.xml"))[:per_split]:
            (dst / split).mkdir(parents=True, exist_ok=True)
            shutil.copy(xml, dst / split / xml.name)
            shutil.copy(xml.with_suffix(".jpg"), dst / split / (xml.stem + ".jpg"))
            copied.append(dst / split / xml.name)
    return copied


# --- shared helpers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("valid", "val"),
        ("validation_dataset", "val"),
        ("training_dataset", "train"),
        ("train2017", "train"),
        ("instances_val2017", "val"),
        ("ann_test", "test"),
        ("train_IDs_tv", "train"),
        ("test_IDs", "test"),
        ("train_val", None),
        ("annotations", None),
    ],
)
def test_split_name(name: str, expected: str | None) -> None:
    assert split_name(name) == expected


# --- VOC on real files ----------------------------------------------------------------------


def test_voc_reads_real_subhih_annotations(tmp_path: Path) -> None:
    xmls = copy_subhih(tmp_path)
    records = list(read_voc_dir(tmp_path, source="subhih"))
    assert len(records) == len(xmls)
    for record in records:
        assert record.problem is None
        assert record.image_path.is_file()
        assert (record.width, record.height) == Image.open(record.image_path).size
        xml = tmp_path / record.split / (record.image_path.stem + ".xml")  # type: ignore[operator]
        objects = ET.parse(xml).getroot().findall("object")
        assert len(record.boxes) == len(objects) > 0
        for box, obj in zip(record.boxes, objects, strict=True):
            assert box.label == obj.findtext("name")
            assert box.label.endswith("-hand")
            assert box.x1 == float(obj.findtext("bndbox/xmin"))  # type: ignore[arg-type]
            assert 0 <= box.x1 < box.x2 <= record.width  # type: ignore[operator]
            assert 0 <= box.y1 < box.y2 <= record.height  # type: ignore[operator]
    assert {r.split for r in records} == {"train", "test"}
    # SubhiH sessions are the groups: a session's photos never straddle train/val.
    assert all(r.group and r.group.startswith("subhih:") for r in records)


# --- YOLO txt ---------------------------------------------------------------------------------


def roboflow_fixture(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text(
        yaml.safe_dump(
            {
                "train": "../train/images",
                "val": "../valid/images",
                "test": "../test/images",
                "nc": 2,
                "names": ["hand", "face"],
            }
        ),
        encoding="utf-8",
    )
    for split in ("train", "valid", "test"):
        (root / split / "labels").mkdir(parents=True)
    # Two augmented copies of one photo, plus one other photo.
    for i, name in enumerate(["p1_jpg.rf.aaa", "p1_jpg.rf.bbb", "p2_jpg.rf.ccc"]):
        jpeg(root / "train" / "images" / f"{name}.jpg", 100, 50, seed=i)
        (root / "train" / "labels" / f"{name}.txt").write_text(
            "0 0.5 0.5 0.2 0.4\n1 0.1 0.1 0.1 0.1\n", encoding="utf-8"
        )
    # Distinct pixels per photo: the writer drops training photos that copy a test photo.
    jpeg(root / "valid" / "images" / "v.jpg", 100, 50, seed=10)
    # A segmentation polygon line: the box is the polygon's enclosing box.
    (root / "valid" / "labels" / "v.txt").write_text(
        "0 0.1 0.2 0.3 0.2 0.3 0.6 0.1 0.6\n", encoding="utf-8"
    )
    jpeg(root / "test" / "images" / "background.jpg", 100, 50, seed=20)  # no label file


def test_yolo_roboflow_export(tmp_path: Path) -> None:
    roboflow_fixture(tmp_path)
    records = by_name(list(read_yolo(tmp_path / "data.yaml", source="rf")))
    assert len(records) == 5
    first = records["p1_jpg.rf.aaa.jpg"]
    assert first.split == "train"
    assert [b.label for b in first.boxes] == ["hand", "face"]
    assert box_tuple(first.boxes[0]) == pytest.approx((40, 15, 60, 35))
    assert first.group == records["p1_jpg.rf.bbb.jpg"].group != records["p2_jpg.rf.ccc.jpg"].group
    valid = records["v.jpg"]
    assert valid.split == "val"
    assert box_tuple(valid.boxes[0]) == pytest.approx((10, 10, 30, 30))
    background = records["background.jpg"]
    assert background.split == "test" and background.boxes == [] and background.problem is None


def test_yolo_ultralytics_layout_with_names_dict(tmp_path: Path) -> None:
    for split in ("train", "val"):
        jpeg(tmp_path / "images" / split / f"{split}.png", 40, 20)
        (tmp_path / "labels" / split).mkdir(parents=True)
        (tmp_path / "labels" / split / f"{split}.txt").write_text("3 0.5 0.5 0.5 0.5\n")
    (tmp_path / "data.yaml").write_text(
        yaml.safe_dump(
            {"path": ".", "train": "images/train", "val": "images/val", "names": {3: "hand"}}
        ),
        encoding="utf-8",
    )
    records = by_name(list(read_yolo(tmp_path)))
    assert records["train.png"].split == "train" and records["val.png"].split == "val"
    assert box_tuple(records["val.png"].boxes[0]) == pytest.approx((10, 5, 30, 15))
    assert records["val.png"].boxes[0].label == "hand"


def test_yolo_bad_records_and_escaping_yaml(tmp_path: Path) -> None:
    jpeg(tmp_path / "images" / "train" / "ok.jpg")
    jpeg(tmp_path / "images" / "train" / "badclass.jpg")
    jpeg(tmp_path / "images" / "train" / "garbage.jpg")
    (tmp_path / "images" / "train" / "corrupt.jpg").write_bytes(b"not a jpeg")
    labels = tmp_path / "labels" / "train"
    labels.mkdir(parents=True)
    (labels / "ok.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (labels / "badclass.txt").write_text("7 0.5 0.5 0.5 0.5\n")
    (labels / "garbage.txt").write_text("0 0.5 zero 0.5 0.5\n")
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"names": ["hand"]}))
    records = by_name(list(read_yolo(tmp_path)))
    assert records["ok.jpg"].problem is None
    assert records["badclass.jpg"].problem == "unknown_class"
    assert records["garbage.jpg"].problem == "malformed_box"
    assert records["corrupt.jpg"].problem == "unreadable_image"

    (tmp_path / "data.yaml").write_text(
        yaml.safe_dump({"train": "../../../etc", "names": ["hand"]})
    )
    with pytest.raises(UnsafePathError):
        list(read_yolo(tmp_path))


# --- COCO ---------------------------------------------------------------------------------------


def coco_fixture(root: Path) -> Path:
    folder = root / "valid"
    jpeg(folder / "a.jpg", 80, 60)
    jpeg(folder / "b.jpg", 80, 60)
    jpeg(folder / "c.jpg", 80, 60)
    jpeg(folder / "d.jpg", 80, 60)
    data = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 80, "height": 60},
            {"id": 2, "file_name": "b.jpg", "width": 80, "height": 60},
            {"id": 3, "file_name": "../../outside.jpg", "width": 80, "height": 60},
            {"id": 4, "file_name": "c.jpg", "width": 80, "height": 60},
            {"id": 5, "file_name": "d.jpg", "width": 80, "height": 60},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 15], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [0, 0, 5, 5], "iscrowd": 0},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [1, 1, 9, 9], "iscrowd": 1},
            {"id": 4, "image_id": 2, "category_id": 2, "bbox": [0, 0, 5, 5], "iscrowd": 0},
            {"id": 5, "image_id": 4, "category_id": 9, "bbox": [0, 0, 5, 5]},
            {"id": 6, "image_id": 5, "category_id": 1, "bbox": [0, "x", 5, 5]},
        ],
        "categories": [{"id": 1, "name": "hand"}, {"id": 2, "name": "face"}],
    }
    path = folder / "_annotations.coco.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_coco_category_filter_and_bad_records(tmp_path: Path) -> None:
    ann = coco_fixture(tmp_path)
    records = by_name(list(read_coco(ann, source="c", categories="hand")))
    a = records["a.jpg"]
    assert a.split == "val"  # from the Roboflow folder name "valid"
    assert [box_tuple(b) for b in a.boxes] == [(10, 20, 40, 35)]  # crowd + face dropped
    assert a.boxes[0].label == "hand" and (a.width, a.height) == (80, 60)
    assert records["b.jpg"].boxes == [] and records["b.jpg"].problem is None
    assert records["outside.jpg"].problem == "path_escapes_root"
    assert records["c.jpg"].problem == "unknown_category"
    assert records["d.jpg"].problem == "malformed_box"
    dropped = by_name(list(read_coco(ann, categories="hand", keep_empty="false")))
    assert dropped["b.jpg"].problem == "no_boxes"
    with pytest.raises(ValueError, match="no category"):
        list(read_coco(ann, categories="person"))


def test_coco_unreadable_json_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "ann.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="cannot read COCO json"):
        list(read_coco(bad))


# --- HaGRID -----------------------------------------------------------------------------------


def hagrid_fixture(root: Path) -> Path:
    data = root / "hagrid"
    jpeg(data / "call" / "id1.jpg", 200, 100)
    jpeg(data / "call" / "id2.jpg", 200, 100)
    jpeg(data / "like" / "id3.jpg", 200, 100)
    ann = data / "annotations" / "train"
    ann.mkdir(parents=True)
    (ann / "call.json").write_text(
        json.dumps(
            {
                "id1": {
                    "bboxes": [[0.1, 0.2, 0.25, 0.5], [0.5, 0.5, 0.1, 0.1]],
                    "labels": ["call", "no_gesture"],
                    "united_bbox": None,
                    "leading_hand": "right",
                    "user_id": "u1",
                },
                "id2": {"bboxes": [[0.1, 0.1, 0.1, 0.1]], "labels": [], "user_id": "u2"},
                "../../escape": {"bboxes": [], "labels": [], "user_id": "u3"},
                "missing": {"bboxes": [], "labels": [], "user_id": "u4"},
            }
        ),
        encoding="utf-8",
    )
    (ann / "like.json").write_text(
        json.dumps({"id3": {"bboxes": [[0, 0, 0.5, 0.5]], "labels": ["like"], "user_id": "u1"}}),
        encoding="utf-8",
    )
    (data / "annotations" / "test").mkdir()
    (data / "annotations" / "test" / "broken.json").write_text("{", encoding="utf-8")
    return data


def test_hagrid_boxes_groups_and_bad_records(tmp_path: Path) -> None:
    root = hagrid_fixture(tmp_path)
    records = list(read_hagrid(root, source="hg"))
    named = by_name(records)
    id1 = named["id1.jpg"]
    assert id1.split == "train" and id1.group == "hg:u1" == named["id3.jpg"].group
    assert [b.label for b in id1.boxes] == ["call", "no_gesture"]
    assert box_tuple(id1.boxes[0]) == pytest.approx((20, 20, 70, 70))
    assert box_tuple(id1.boxes[1]) == pytest.approx((100, 50, 120, 60))
    assert named["id2.jpg"].problem == "malformed_annotation"
    assert named["escape.jpg"].problem == "path_escapes_root"
    assert named["missing.jpg"].problem == "missing_image"
    assert named["broken.json"].problem == "unparsable_annotation"
    no_idle = by_name(list(read_hagrid(root, include_no_gesture="false")))
    assert [b.label for b in no_idle["id1.jpg"].boxes] == ["call"]


# --- Oxford ---------------------------------------------------------------------------------


def oxford_box(a, b, c, d) -> np.ndarray:
    """One MATLAB struct with fields a..d, each a [row, col] = [y, x] point."""
    struct = np.empty((1, 1), dtype=[(k, "O") for k in "abcd"])
    for key, point in zip("abcd", (a, b, c, d), strict=True):
        struct[key][0, 0] = np.array([point], dtype=np.float64)
    return struct


def save_oxford(path: Path, boxes: list[np.ndarray]) -> None:
    import scipy.io

    cell = np.empty((1, len(boxes)), dtype=object)
    for i, box in enumerate(boxes):
        cell[0, i] = box
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {"boxes": cell})


def test_oxford_mat_rotated_boxes(tmp_path: Path) -> None:
    train = tmp_path / "training_dataset" / "training_data"
    jpeg(train / "images" / "hand_1.jpg", 100, 80)
    # A rotated square (diamond) centred at x=50, y=40, and a box partly off the photo.
    save_oxford(
        train / "annotations" / "hand_1.mat",
        [
            oxford_box([30, 50], [40, 60], [50, 50], [40, 40]),
            oxford_box([70, 90], [70, 110], [90, 110], [90, 90]),
        ],
    )
    val = tmp_path / "validation_dataset"
    jpeg(val / "images" / "hand_2.jpg", 100, 80)
    save_oxford(val / "annotations" / "hand_2.mat", [oxford_box([1, 2], [3, 4], [5, 6], [7, 8])])
    jpeg(val / "images" / "hand_3.jpg", 100, 80)
    (val / "annotations" / "hand_3.mat").write_bytes(b"MATLAB garbage")
    jpeg(val / "images" / "hand_4.jpg", 100, 80)
    broken = np.empty((1, 1), dtype=[("a", "O"), ("b", "O")])  # corners c, d missing
    broken["a"][0, 0] = np.array([[1.0, 2.0]])
    broken["b"][0, 0] = np.array([[3.0, 4.0]])
    save_oxford(val / "annotations" / "hand_4.mat", [broken])

    records = by_name(list(read_oxford(tmp_path)))
    one = records["hand_1.jpg"]
    assert one.split == "train"
    assert box_tuple(one.boxes[0]) == pytest.approx((40, 30, 60, 50))
    # Corners beyond the photo are clipped to it (x 90..110 -> 90..100, y 70..90 -> 70..80).
    assert box_tuple(one.boxes[1]) == pytest.approx((90, 70, 100, 80))
    two = records["hand_2.jpg"]
    assert two.split == "val" and box_tuple(two.boxes[0]) == pytest.approx((2, 1, 8, 7))
    assert records["hand_3.jpg"].problem == "unparsable_annotation"
    assert records["hand_4.jpg"].problem == "malformed_box"


# --- COCO-Hand / TV-Hand ------------------------------------------------------------------------


def test_box_order_is_decided_by_the_corners() -> None:
    corners = [392, 277, 410, 296, 389, 316, 370, 297]  # a line of Hand-CNN's oxford_annos.txt
    assert decide_order([371, 277, 411, 317], corners) == "xyxy"
    assert decide_order([371, 411, 277, 317], corners) == "xxyy"
    assert decide_order([371, 277, 411, 317], None) == "xyxy"
    name, box = parse_line("a.jpg,371,411,277,317," + ",".join(map(str, corners)) + ",hand")
    assert name == "a.jpg" and box_tuple(box) == (371, 277, 411, 317) and box.label == "hand"
    _, forced = parse_line("a.jpg,10,20,30,40", order="xxyy")
    assert box_tuple(forced) == (10, 30, 20, 40)
    assert parse_line("a.jpg,1,2") == "malformed_line"
    assert parse_line("a.jpg,-1,-1,-1,-1") == "malformed_box"


def test_cocohand_groups_lines_by_image(tmp_path: Path) -> None:
    big = tmp_path / "COCO-Hand-Big"
    jpeg(big / "COCO-Hand-Big_Images" / "000001.jpg", 120, 100)
    jpeg(big / "COCO-Hand-Big_Images" / "000002.jpg", 120, 100)
    (big / "COCO-Hand-Big_annotations.txt").write_text(
        "000001.jpg,10,20,30,50,12,20,30,25,28,50,10,45,hand\n"
        # README order (xmin, xmax, ymin, ymax): the corners say so.
        "000001.jpg,60,90,5,40,60,10,85,5,90,35,65,40,hand\n"
        "000002.jpg,1,2,x,4,0,0,0,0,0,0,0,0,hand\n"
        "../../../etc/evil.jpg,1,1,5,5,1,1,5,1,5,5,1,5,hand\n",
        encoding="utf-8",
    )
    records = by_name(list(read_cocohand(tmp_path, source="ch")))
    assert [box_tuple(b) for b in records["000001.jpg"].boxes] == [
        (10, 20, 30, 50),
        (60, 5, 90, 40),
    ]
    assert records["000002.jpg"].problem == "malformed_box"
    assert records["evil.jpg"].problem == "path_escapes_root"


def test_tvhand_split_files_and_foreign_paths(tmp_path: Path) -> None:
    jpeg(tmp_path / "TV-Hand_Images" / "000074_006.jpg", 90, 60)
    jpeg(tmp_path / "TV-Hand_Images" / "000074_007.jpg", 90, 60)
    jpeg(tmp_path / "TV-Hand_Images" / "000080_001.jpg", 90, 60)
    (tmp_path / "train_IDs_tv.txt").write_text(
        "/home/someone/TV-Hand_Images/000074_006.jpg,5,6,25,36,5,6,25,6,25,36,5,36,hand\n"
        "000074_007.jpg,5,6,25,36\n",
        encoding="utf-8",
    )
    (tmp_path / "valid_IDs.txt").write_text("000080_001.jpg,1,2,3,4\n", encoding="utf-8")
    records = by_name(list(read_tvhand(tmp_path, source="tv")))
    first = records["000074_006.jpg"]
    assert first.image_path.is_file() and first.split == "train"
    assert box_tuple(first.boxes[0]) == (5, 6, 25, 36)
    assert first.group == records["000074_007.jpg"].group != records["000080_001.jpg"].group
    assert records["000080_001.jpg"].split == "val"


def test_tvhand_voc_fallback(tmp_path: Path) -> None:
    jpeg(tmp_path / "test" / "000001_001.jpg", 50, 40)
    voc_xml(tmp_path / "test" / "000001_001.xml", "000001_001.jpg", [("hand", 1, 2, 20, 30)])
    (record,) = list(read_tvhand(tmp_path))
    assert record.split == "test" and box_tuple(record.boxes[0]) == (1, 2, 20, 30)


# --- the writer: bad records counted and skipped --------------------------------------------


def test_bad_records_are_counted_and_skipped(tmp_path: Path) -> None:
    src = tmp_path / "src" / "train"
    cases = {
        "good": [("hand", 5, 5, 30, 30)],
        "outside": [("hand", 5, 5, 90, 30)],  # image is 64 wide
        "zero": [("hand", 10, 10, 10, 30)],
        "unknown": [("face", 5, 5, 30, 30)],
        "corrupt": [("hand", 5, 5, 30, 30)],
    }
    for i, (stem, objects) in enumerate(cases.items()):
        jpeg(src / f"{stem}.jpg", 64, 48, seed=i)
        voc_xml(src / f"{stem}.xml", f"{stem}.jpg", objects)
    (src / "corrupt.jpg").write_bytes(b"\xff\xd8 truncated")
    voc_xml(src / "escape.xml", "../../../etc/passwd", [("hand", 1, 1, 5, 5)])
    records = list(read_voc_dir(tmp_path / "src", source="t"))
    report = write_yolo_dataset(
        records, tmp_path / "out", class_names=("hand",), class_map={"hand": "hand"}
    )
    assert dict(report.skipped) == {
        "box_outside_image": 1,
        "zero_area_box": 1,
        "unknown_class": 1,
        "unreadable_image": 1,
        "path_escapes_root": 1,
    }
    assert sum(report.written.values()) == 1 and report.boxes == 1
    labels = list((tmp_path / "out" / "labels").rglob("*.txt"))
    assert len(labels) == 1 and labels[0].read_text().split()[0] == "0"
    summary = report.summary()
    assert "skipped: 5 records" in summary and "path_escapes_root: 1" in summary


# --- merging, the CLI and loading in ultralytics --------------------------------------------


def test_parse_source() -> None:
    spec = parse_source("coco:path/to/ann.json:hands:categories=hand,person:keep_empty=no")
    assert spec == SourceSpec(
        "coco", Path("path/to/ann.json"), "hands", {"categories": "hand,person", "keep_empty": "no"}
    )
    assert parse_source("voc:../shared/data/subhih_hands") == SourceSpec(
        "voc", Path("../shared/data/subhih_hands"), None, {}
    )
    with pytest.raises(ValueError):
        parse_source("voc")


def test_merge_rejects_bad_sources(tmp_path: Path) -> None:
    roboflow_fixture(tmp_path / "rf")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="unknown source format"):
        build_detector_dataset([SourceSpec("nope", tmp_path)], out)
    with pytest.raises(ValueError, match="unknown option"):
        build_detector_dataset([SourceSpec("yolo", tmp_path / "rf", None, {"x": "1"})], out)
    with pytest.raises(ValueError, match="names must differ"):
        build_detector_dataset([SourceSpec("yolo", tmp_path / "rf")] * 2, out)
    with pytest.raises(FileNotFoundError):
        build_detector_dataset([SourceSpec("voc", tmp_path / "missing")], out)
    assert not out.exists()


def test_convert_cli_reports_user_errors_in_one_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    roboflow_fixture(tmp_path / "rf")
    status = convert_cli(["--source", f"yolo:{tmp_path / 'rf'}", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("gesture-train convert: error:") and "not empty" in err
    assert "Traceback" not in err


def test_merged_dataset_loads_in_ultralytics(tmp_path: Path, capsys) -> None:
    copy_subhih(tmp_path / "subhih", per_split=3)
    roboflow_fixture(tmp_path / "rf")
    out = tmp_path / "merged"
    status = convert_cli(
        [
            "--source",
            f"voc:{tmp_path / 'subhih'}:subhih",
            "--source",
            f"yolo:{tmp_path / 'rf' / 'data.yaml'}:rf",
            "--out",
            str(out),
            "--val",
            "0.3",
        ]
    )
    printed = capsys.readouterr().out
    assert status == 0
    assert "written: 11 images" in printed and "sources: rf 5, subhih 6" in printed

    from gesture_recognition.training.offline import configure_offline

    configure_offline()
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(out / "data.yaml"), autodownload=False)
    assert data["nc"] == 1 and data["names"] == {0: "hand"}
    total = 0
    for split in ("train", "val", "test"):
        if not data.get(split):
            continue
        dataset = YOLODataset(
            img_path=data[split], data=data, task="detect", imgsz=64, augment=False
        )
        total += len(dataset.labels)
        for label in dataset.labels:
            assert label["cls"].shape[0] == label["bboxes"].shape[0]
            assert np.all(label["cls"] == 0)
            assert np.all((label["bboxes"] >= 0) & (label["bboxes"] <= 1))
        item = dataset[0]
        assert item["img"].shape[0] == 3
    assert total == 11
    # The Roboflow background photo is written with an empty label file.
    empty = [p for p in (out / "labels").rglob("rf_background_*.txt")]
    assert len(empty) == 1 and empty[0].read_text() == ""
