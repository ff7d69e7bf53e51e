"""New ``gesture-train`` options: ``train-detector --aug/--lr0`` and
``pseudo-labels --exclude-label-map`` (photos the end-to-end evaluation scores never train)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from gesture_recognition.training import detector as det
from gesture_recognition.training.cli import main
from gesture_recognition.training.detector import (
    AUGMENTATION_KEYS,
    DetectorTrainConfig,
    parse_augmentation,
    train_detector,
)
from gesture_recognition.training.pseudo_labels import export_pseudo_labels
from gesture_recognition.training.review_sheets import INDEX_CSV


def test_parse_augmentation() -> None:
    assert parse_augmentation(None) == {}
    parsed = parse_augmentation(["degrees=90", "flipud=0.5", " scale = 0.6", "close_mosaic=5"])
    assert parsed == {"degrees": 90.0, "flipud": 0.5, "scale": 0.6, "close_mosaic": 5.0}
    for bad, match in (
        ("degree=10", "KEY one of"),
        ("degrees", "KEY=VALUE"),
        ("hsv_h=red", "not a number"),
    ):
        with pytest.raises(ValueError, match=match):
            parse_augmentation([bad])


def test_every_augmentation_key_is_an_ultralytics_setting() -> None:
    from ultralytics.cfg import DEFAULT_CFG_DICT, check_cfg

    assert set(AUGMENTATION_KEYS) <= set(DEFAULT_CFG_DICT)
    # What --aug passes on is accepted by ultralytics' own check (types and ranges).
    cfg: dict[str, Any] = parse_augmentation(
        ["degrees=90", "flipud=0.5", "fliplr=0.5", "close_mosaic=10"]
    )
    check_cfg(cfg)
    assert cfg["close_mosaic"] == 10


class FakeYOLO:
    """Stands in for ultralytics.YOLO: records what training was asked for."""

    calls: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, model: str) -> None:
        self.model = model

    def train(self, **kwargs: Any) -> None:
        FakeYOLO.calls.append({"model": self.model, **kwargs})


def test_augmentation_and_lr0_reach_ultralytics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ultralytics

    monkeypatch.setattr(ultralytics, "YOLO", FakeYOLO)
    FakeYOLO.calls.clear()
    data = tmp_path / "data.yaml"
    data.write_text("path: .\ntrain: images/train\nval: images/val\nnames: {0: hand}\n")
    base = DetectorTrainConfig(data=data, project=tmp_path / "runs", name="a")
    best = train_detector(
        DetectorTrainConfig(
            **{**base.__dict__, "augment": {"degrees": 90.0, "flipud": 0.5}, "lr0": 1e-4}
        )
    )
    assert best == tmp_path / "runs" / "a" / "weights" / "best.pt"
    call = FakeYOLO.calls[-1]
    assert (call["degrees"], call["flipud"], call["lr0"], call["optimizer"]) == (
        90.0,
        0.5,
        1e-4,
        "AdamW",
    )
    train_detector(base)
    assert "lr0" not in FakeYOLO.calls[-1] and "optimizer" not in FakeYOLO.calls[-1]
    assert "freeze" not in FakeYOLO.calls[-1] and FakeYOLO.calls[-1]["model"] == "yolo26n.yaml"
    # The project's own model YAML is found by name; --freeze reaches ultralytics.
    train_detector(
        DetectorTrainConfig(**{**base.__dict__, "model": "yolo26n-lite0.yaml", "freeze": 1})
    )
    call = FakeYOLO.calls[-1]
    assert Path(call["model"]).is_file() and Path(call["model"]).name == "yolo26n-lite0.yaml"
    assert call["freeze"] == 1
    # --freeze-blocks: ultralytics' freeze as the names of the Lite0 stem and first stages
    # (the backbone check has its own test with real networks).
    checked: list[object] = []
    monkeypatch.setattr(det, "require_lite0_backbone", checked.append)
    train_detector(DetectorTrainConfig(**{**base.__dict__, "freeze_blocks": 2}))
    assert checked == ["yolo26n.yaml"]  # FakeYOLO's model
    assert FakeYOLO.calls[-1]["freeze"] == ["0.m.0", "0.m.1", "0.m.2"]
    assert len((tmp_path / "runs" / "a" / "train_seconds.log").read_text().split()) == 4


def test_train_detector_cli_passes_the_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[DetectorTrainConfig] = []

    def fake_train(cfg: DetectorTrainConfig) -> Path:
        seen.append(cfg)
        return Path("best.pt")

    monkeypatch.setattr(det, "train_detector", fake_train)
    data = tmp_path / "data.yaml"
    data.write_text("names: {0: hand}\n")
    argv = ["train-detector", "--data", str(data), "--aug", "degrees=45", "--aug", "mosaic=0.5"]
    assert main([*argv, "--lr0", "0.002"]) == 0
    assert dict(seen[0].augment) == {"degrees": 45.0, "mosaic": 0.5} and seen[0].lr0 == 0.002
    assert seen[0].freeze is None and seen[0].workers == 2
    assert main([*argv, "--model", "yolo26n-lite0.yaml", "--freeze", "1"]) == 0
    assert (seen[1].model, seen[1].freeze) == ("yolo26n-lite0.yaml", 1)
    with pytest.raises(SystemExit):
        main([*argv, "--freeze", "-1"])
    assert main([*argv, "--model", "yolo26n-lite0.yaml", "--freeze-blocks", "4"]) == 0
    assert (seen[2].freeze, seen[2].freeze_blocks) == (None, 4)
    assert main([*argv, "--workers", "12"]) == 0 and seen[3].workers == 12
    with pytest.raises(SystemExit):
        main([*argv, "--workers", "-1"])
    # Both, or more stages than Lite0 has: a clear error, exit status 2, nothing trained.
    assert main([*argv, "--freeze", "1", "--freeze-blocks", "4"]) == 2
    assert main([*argv, "--freeze-blocks", "8"]) == 2
    assert len(seen) == 4
    assert main(["train-detector", "--data", str(data), "--aug", "rotate=45"]) == 2


HAGRID = [
    "like/hagrid_380_resize336__like_00000.jpg",
    "peace/hagrid_380_resize336__peace_00000.jpg",
    "call/hagrid_380_resize336__call_00002.jpg",
    "four/hagrid_380_resize336__four_00002.jpg",
]


def _hagrid_export(shared_data: Path, tmp_path: Path) -> Path:
    """A pseudo-label export of the real HAGRID photos, one box each."""
    root = shared_data / "hagrid_crops"
    assert all((root / rel).is_file() for rel in HAGRID)
    images = {
        rel: {"width": 336, "height": 336, "boxes": [[50, 60, 150, 200]], "scores": [0.9]}
        for rel in HAGRID
    }
    cache = tmp_path / "cache.json"
    cache.write_text(json.dumps({"detector": {}, "root": str(root), "images": images}))
    export = tmp_path / "pseudo"
    export_pseudo_labels(cache, export, 0.5)
    return export


def test_exclude_label_map_keeps_scored_photos_out(shared_data: Path, tmp_path: Path) -> None:
    export = _hagrid_export(shared_data, tmp_path)
    sheets = tmp_path / "sheets"
    argv = ["pseudo-labels", "sheets", "--reviewed", str(export), "--out", str(sheets)]
    assert main([*argv, "--exclude-label-map", "mcs2021"]) == 0
    with (sheets / INDEX_CSV).open(newline="", encoding="utf-8") as f:
        shown = sorted(row["path"] for row in csv.DictReader(f))
    # like and peace (= victory) are MachinesCanSee classes: held out of every training set.
    assert shown == sorted(HAGRID[2:])


def test_exclude_list_leaves_audited_photos_out(shared_data: Path, tmp_path: Path) -> None:
    export = _hagrid_export(shared_data, tmp_path)
    audit = tmp_path / "audit.csv"
    audit.write_text(f"path,problem\n{HAGRID[3]},fingertips above the box\n", encoding="utf-8")
    out = tmp_path / "dataset"
    argv = ["pseudo-labels", "dataset", "--reviewed", str(export), "--out", str(out)]
    assert main([*argv, "--exclude-list", str(audit)]) == 0
    written = sorted(p.name for p in out.glob("images/*/*.jpg"))
    assert len(written) == 3
    assert not any("four_00002" in name for name in written)
    # A path that names no photo of the source: a clear error, nothing written.
    audit.write_text("path,problem\nfour/not_a_photo.jpg,x\n", encoding="utf-8")
    assert main([*argv[:-1], str(tmp_path / "other"), "--exclude-list", str(audit)]) == 2
    assert not (tmp_path / "other").exists()
    audit.write_text("photo\nfour/x.jpg\n", encoding="utf-8")
    assert main([*argv[:-1], str(tmp_path / "other"), "--exclude-list", str(audit)]) == 2
