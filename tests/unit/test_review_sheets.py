"""Review by contact sheet on real SubhiH photos: export -> sheets -> decisions -> dataset.

The detection cache is written by hand (true boxes from the photos' VOC files plus a made-up
wrong one), so every decision's effect is known.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from gesture_recognition.training.pseudo_labels import (
    build_finetune_dataset,
    candidate_boxes,
    export_pseudo_labels,
    write_combined_data_yaml,
)
from gesture_recognition.training.review_sheets import (
    INDEX_CSV,
    apply_decisions,
    read_decisions,
    read_index,
    read_voc_boxes,
    write_sheets,
)
from tests.unit.subhih_photos import PHOTOS, true_boxes

FACE = [400.0, 20.0, 520.0, 160.0]  # a wrong, unsure box on the first photo


@pytest.fixture()
def export(shared_data: Path, tmp_path: Path) -> Path:
    root = shared_data / "subhih_hands"
    images = {}
    for rel in PHOTOS:
        boxes = true_boxes(root, rel)
        images[rel] = {"width": 640, "height": 480, "boxes": boxes, "scores": [0.9] * len(boxes)}
    images[PHOTOS[0]]["boxes"].append(FACE)
    images[PHOTOS[0]]["scores"].append(0.1)
    cache = tmp_path / "cache.json"
    cache.write_text(json.dumps({"detector": {"imgsz": 320}, "root": str(root), "images": images}))
    out = tmp_path / "export"
    export_pseudo_labels(cache, out, conf_threshold=0.25, low_label="unsure")
    return out


def test_candidate_boxes_drop_duplicates_and_cap_best_first():
    boxes = np.array(
        [[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [100, 100, 110, 110]], np.float32
    )
    scores = np.array([0.5, 0.9, 0.3, 0.2], np.float32)
    assert candidate_boxes(boxes, scores, None, None).tolist() == [1, 0, 2, 3]
    assert candidate_boxes(boxes, scores, 0.5, None).tolist() == [1, 2, 3]
    assert candidate_boxes(boxes, scores, 0.5, 2).tolist() == [1, 2]


def test_export_dedupes_before_writing(shared_data: Path, tmp_path: Path):
    rel = PHOTOS[1]
    box = true_boxes(shared_data / "subhih_hands", rel)[0]
    twin = [v + 1 for v in box]
    cache = tmp_path / "cache.json"
    images = {rel: {"width": 640, "height": 480, "boxes": [box, twin], "scores": [0.9, 0.8]}}
    cache.write_text(
        json.dumps({"detector": {}, "root": str(shared_data / "subhih_hands"), "images": images})
    )
    export_pseudo_labels(cache, tmp_path / "a", 0.25, dedupe_iou=0.5)
    export_pseudo_labels(cache, tmp_path / "b", 0.25)
    xml = Path(rel).with_suffix(".xml")
    assert len(read_voc_boxes(tmp_path / "a" / "voc" / xml)) == 1
    assert len(read_voc_boxes(tmp_path / "b" / "voc" / xml)) == 2
    with pytest.raises(ValueError, match="dedupe_iou"):
        export_pseudo_labels(cache, tmp_path / "c", 0.25, dedupe_iou=0.0)


def test_sheets_number_every_photo_and_skip_held_out_ones(export: Path, tmp_path: Path):
    sheets = write_sheets(export, tmp_path / "sheets", skip={PHOTOS[2]}, columns=2, rows=1)
    assert [p.name for p in sheets] == ["sheet_000.png"]
    with Image.open(sheets[0]) as im:
        assert im.size[0] > im.size[1] > 0
    rows = list(csv.DictReader((tmp_path / "sheets" / INDEX_CSV).open()))
    assert [r["path"] for r in rows] == PHOTOS[:2]
    assert [int(r["boxes"]) for r in rows] == [
        len(read_voc_boxes(export / "voc" / Path(p).with_suffix(".xml"))) for p in PHOTOS[:2]
    ]


def test_decisions_rewrite_the_voc_files(export: Path, shared_data: Path, tmp_path: Path):
    write_sheets(export)
    tile = {p: t for t, p in read_index(export / "sheets").items()}[PHOTOS[0]]
    first = read_voc_boxes(export / "voc" / Path(PHOTOS[0]).with_suffix(".xml"))
    assert [b.label for b in first][-1] == "unsure"
    decisions = tmp_path / "decisions.csv"
    # The first photo: only its last (the unsure, wrong) box would be "kept" by a careless default;
    # keep the true hands. Tile 1 by path: nothing is a hand. Photo 3 is not named.
    keep0 = " ".join(str(i) for i in range(len(first) - 1))
    decisions.write_text(f"tile,path,keep\n{tile},,{keep0}\n,{PHOTOS[1]},\n")
    report = apply_decisions(export, decisions, tmp_path / "voc")
    assert report.photos == 3 and report.changed == 2 and report.photos_without_box == 1
    root = shared_data / "subhih_hands"
    got = read_voc_boxes(tmp_path / "voc" / Path(PHOTOS[0]).with_suffix(".xml"))
    assert [b.label for b in got] == ["hand"] * len(true_boxes(root, PHOTOS[0]))
    assert not read_voc_boxes(tmp_path / "voc" / Path(PHOTOS[1]).with_suffix(".xml"))
    third = read_voc_boxes(tmp_path / "voc" / Path(PHOTOS[2]).with_suffix(".xml"))
    assert len(third) == len(true_boxes(root, PHOTOS[2]))

    written, imported = build_finetune_dataset(
        export, tmp_path / "ds", voc_dir=tmp_path / "voc", val_fraction=0.0
    )
    assert imported.empty_dropped == 1
    assert written.written["train"] == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tile,keep\n7,0\n", "no tile '7'"),
        ("path,keep\nx.jpg,0\n", "not in the export"),
        ("tile,keep\n0,a\n", "box numbers"),
        ("tile,keep\n0,0\n0,\n", "decided twice"),
        ("tile,keep\n0,9\n", "no box 9"),
    ],
)
def test_bad_decisions_are_refused(export: Path, tmp_path: Path, text: str, message: str):
    write_sheets(export)
    decisions = tmp_path / "d.csv"
    decisions.write_text(text)
    with pytest.raises(ValueError, match=message):
        apply_decisions(export, decisions, tmp_path / "voc")
    assert not (tmp_path / "voc").exists() or not any((tmp_path / "voc").iterdir())


def test_tile_ids_need_the_index(tmp_path: Path):
    decisions = tmp_path / "d.csv"
    decisions.write_text("tile,keep\n0,0\n")
    with pytest.raises(ValueError, match=r"index\.csv"):
        read_decisions(decisions)


def test_combined_yaml_lists_every_dataset_and_the_first_test_split(tmp_path: Path):
    for name, test in (("a", True), ("b", False)):
        d = tmp_path / name
        d.mkdir()
        data = {"path": str(d), "train": "images/train", "val": "images/val", "names": {0: "hand"}}
        if test:
            data["test"] = "images/test"
        (d / "data.yaml").write_text(yaml.safe_dump(data))
    out = write_combined_data_yaml(
        [tmp_path / "a" / "data.yaml", tmp_path / "b" / "data.yaml"], tmp_path / "c.yaml"
    )
    combined = yaml.safe_load(out.read_text())
    assert combined["train"] == [str(tmp_path / n / "images/train") for n in "ab"]
    assert combined["val"] == [str(tmp_path / n / "images/val") for n in "ab"]
    assert combined["test"] == str(tmp_path / "a" / "images/test")
    other = tmp_path / "o.yaml"
    other.write_text(yaml.safe_dump({"train": "t", "val": "v", "names": {0: "face"}}))
    with pytest.raises(ValueError, match="classes"):
        write_combined_data_yaml([tmp_path / "a" / "data.yaml", other], tmp_path / "d.yaml")
