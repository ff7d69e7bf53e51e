"""Pseudo-label round trip on real SubhiH photos: export -> review (edit) -> import -> dataset.

The cache is written by hand (boxes from the photos' own VOC files plus made-up ones): the
format round trip needs known boxes, not a detector.
"""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml

from gesture_recognition.training.converters.voc import parse_voc, read_voc_dir
from gesture_recognition.training.pseudo_labels import (
    LOW_CONFIDENCE_CSV,
    REVIEW_LIST,
    build_finetune_dataset,
    export_pseudo_labels,
    import_reviewed,
)
from tests.unit.subhih_photos import PHOTOS, true_boxes

EMPTY = "test/1528664299.56_pic00035.jpg"  # the "detector" found nothing here
LOW_BOX = [5.0, 6.0, 60.4, 70.6]


@pytest.fixture()
def cache(shared_data: Path, tmp_path: Path) -> Path:
    root = shared_data / "subhih_hands"
    images = {}
    for rel in PHOTOS:
        boxes = [[v + 0.3 for v in b] for b in true_boxes(root, rel)]  # off the pixel grid
        images[rel] = {"width": 640, "height": 480, "boxes": boxes, "scores": [0.9] * len(boxes)}
    images[PHOTOS[0]]["boxes"].append(LOW_BOX)
    images[PHOTOS[0]]["scores"].append(0.2)
    images[EMPTY] = {"width": 640, "height": 480, "boxes": [], "scores": []}
    path = tmp_path / "cache.json"
    path.write_text(json.dumps({"detector": {"imgsz": 320}, "root": str(root), "images": images}))
    return path


def _ntrue_boxes(root: Path) -> int:
    return sum(len(true_boxes(root, rel)) for rel in PHOTOS)


def test_export_writes_voc_yolo_and_review_lists(cache: Path, shared_data: Path, tmp_path: Path):
    root = shared_data / "subhih_hands"
    out = tmp_path / "pseudo"
    report = export_pseudo_labels(cache, out, conf_threshold=0.5)
    assert report.images == 4
    assert report.boxes == _ntrue_boxes(root)
    assert report.low_confidence_boxes == 1
    assert report.images_without_boxes == 1
    assert (out / REVIEW_LIST).read_text().split() == sorted([PHOTOS[0], EMPTY])
    with (out / LOW_CONFIDENCE_CSV).open() as f:
        low = list(csv.DictReader(f))
    assert [(r["path"], r["x1"], r["y2"], r["score"]) for r in low] == [
        (PHOTOS[0], "5", "71", "0.2000")
    ]
    # VOC: the tool's view of the photo; whole pixels within half a pixel of the detector's.
    for rel in PHOTOS:
        xml = (out / "voc" / rel).with_suffix(".xml")
        record = parse_voc(xml, out / "voc")
        got = np.asarray([[b.x1, b.y1, b.x2, b.y2] for b in record.boxes])
        np.testing.assert_allclose(got, np.asarray(true_boxes(root, rel)) + 0.3, atol=0.5)
        assert {b.label for b in record.boxes} == {"hand"}
        assert (record.width, record.height) == (640, 480)
        ann = ET.parse(xml).getroot()
        assert ann.findtext("filename") == Path(rel).name
        assert Path(ann.findtext("path")) == root / rel
    # YOLO: one normalised row per kept box, class 0.
    rows = (out / "yolo" / PHOTOS[1]).with_suffix(".txt").read_text().splitlines()
    first = true_boxes(root, PHOTOS[1])[0]
    cls, cx, cy, w, h = rows[0].split()
    assert cls == "0" and len(rows) == len(true_boxes(root, PHOTOS[1]))
    assert float(cx) * 640 == pytest.approx((first[0] + first[2]) / 2 + 0.3, abs=0.5)
    assert float(cy) * 480 == pytest.approx((first[1] + first[3]) / 2 + 0.3, abs=0.5)
    assert float(w) * 640 == pytest.approx(first[2] - first[0], abs=1.0)
    assert float(h) * 480 == pytest.approx(first[3] - first[1], abs=1.0)
    assert (out / "yolo" / EMPTY).with_suffix(".txt").read_text() == ""
    assert (out / "yolo" / "classes.txt").read_text() == "hand\n"
    with pytest.raises(FileExistsError):
        export_pseudo_labels(cache, out)


def _edit(xml: Path, drop_first: bool = False, add: list[int] | None = None) -> None:
    """What a reviewer does in the tool: delete a box, draw one."""
    tree = ET.parse(xml)
    ann = tree.getroot()
    if drop_first:
        ann.remove(ann.find("object"))
    if add:
        obj = ET.SubElement(ann, "object")
        ET.SubElement(obj, "name").text = "hand"
        bnd = ET.SubElement(obj, "bndbox")
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), add, strict=True):
            ET.SubElement(bnd, key).text = str(value)
    tree.write(xml)


def test_reviewed_labels_round_trip_into_a_dataset(cache: Path, shared_data: Path, tmp_path):
    root = shared_data / "subhih_hands"
    out = tmp_path / "pseudo"
    export_pseudo_labels(cache, out, conf_threshold=0.5)
    _edit((out / "voc" / PHOTOS[1]).with_suffix(".xml"), drop_first=True)
    _edit((out / "voc" / EMPTY).with_suffix(".xml"), add=[300, 100, 420, 300])

    records, imported = import_reviewed(out)
    assert imported.images == 4 and not imported.problems
    assert imported.boxes == _ntrue_boxes(root) - 1 + 1
    by_image = {r.image_path: r for r in records}
    assert set(by_image) == {(root / rel).resolve() for rel in [*PHOTOS, EMPTY]}
    added = by_image[(root / EMPTY).resolve()].boxes
    assert [(b.x1, b.y1, b.x2, b.y2) for b in added] == [(300, 100, 420, 300)]

    base = [r for r in read_voc_dir(root, "subhih") if r.split == "train"][:5]
    dataset = tmp_path / "finetune"
    report, _ = build_finetune_dataset(
        out, dataset, base_records=base, exclude=[PHOTOS[2]], val_fraction=0.0
    )
    assert sum(report.written.values()) == 3 + 5
    assert not report.skipped
    assert report.boxes == _ntrue_boxes(root) - 1 + 1 - len(true_boxes(root, PHOTOS[2])) + sum(
        len(r.boxes) for r in base
    )
    data = yaml.safe_load((dataset / "data.yaml").read_text())
    assert data["names"] == {0: "hand"}
    labels = list((dataset / "labels" / "train").glob("*.txt"))
    assert len(labels) == 8
    assert not any(PHOTOS[2].split("/")[1].removesuffix(".jpg") in p.name for p in labels)


def test_unreviewed_low_confidence_boxes_are_dropped(cache: Path, tmp_path: Path):
    out = tmp_path / "pseudo"
    export_pseudo_labels(cache, out, conf_threshold=0.5, low_label="check_hand")
    xml = (out / "voc" / PHOTOS[0]).with_suffix(".xml")
    names = [o.findtext("name") for o in ET.parse(xml).getroot().iter("object")]
    assert names.count("check_hand") == 1
    records, imported = import_reviewed(out)
    assert imported.dropped_boxes == {"unreviewed_low_confidence": 1}
    assert all(b.label == "hand" for r in records for b in r.boxes)


def test_flattened_tool_export_finds_the_photos(cache: Path, shared_data: Path, tmp_path):
    # CVAT and friends may hand back one flat folder of xml files.
    out = tmp_path / "pseudo"
    export_pseudo_labels(cache, out)
    flat = tmp_path / "Annotations"
    flat.mkdir()
    for xml in (out / "voc").rglob("*.xml"):
        (flat / xml.name).write_text(xml.read_text())
    records, imported = import_reviewed(out, voc_dir=flat)
    assert imported.images == 4 and not imported.problems
    root = shared_data / "subhih_hands"
    assert {r.image_path for r in records} == {(root / r).resolve() for r in [*PHOTOS, EMPTY]}


def test_a_photo_that_cannot_be_found_is_reported(cache: Path, tmp_path: Path):
    out = tmp_path / "pseudo"
    export_pseudo_labels(cache, out)
    stray = out / "voc" / "test" / "nobody.xml"
    stray.write_text("<annotation><filename>nobody.jpg</filename></annotation>")
    evil = out / "voc" / "test" / "evil.xml"
    evil.write_text("<annotation><filename>../../../etc/passwd</filename></annotation>")
    _, imported = import_reviewed(out)
    assert imported.problems == {"missing_image": 1, "path_escapes_root": 1}


def test_threshold_is_checked(cache: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="conf_threshold"):
        export_pseudo_labels(cache, tmp_path / "a", conf_threshold=1.5)
    with pytest.raises(ValueError, match="low_label"):
        export_pseudo_labels(cache, tmp_path / "b", low_label="hand")


def test_photos_left_without_a_box_are_dropped_unless_kept(cache: Path, tmp_path: Path):
    # EMPTY has no box: a detector miss on a gesture photo, not a confirmed background photo.
    out = tmp_path / "pseudo"
    export_pseudo_labels(cache, out, conf_threshold=0.5)
    report, imported = build_finetune_dataset(out, tmp_path / "dropped", val_fraction=0.0)
    assert imported.empty_dropped == 1
    assert sum(report.written.values()) == len(PHOTOS)
    report, imported = build_finetune_dataset(
        out, tmp_path / "kept", val_fraction=0.0, keep_empty=True
    )
    assert imported.empty_dropped == 0
    assert sum(report.written.values()) == len(PHOTOS) + 1
