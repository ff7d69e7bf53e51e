"""``gesture-train import-crops`` on real crop folders from ../shared/data.

HaGRID hand crops (a manifest with an ``image_id`` group) and the sign-language digits (digit
folders relabelled by ``training/mappings/sign_language_digits.json``) are read from small
temporary folders whose images are symlinks to the real files; bad records are added there.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from gesture_recognition.labels import load_label_map
from gesture_recognition.training.classifier_data import leaked_groups, read_crop_manifest
from gesture_recognition.training.cli import main
from gesture_recognition.training.crop_import import (
    import_crops,
    merge_crop_folders,
    read_mapping,
)
from gesture_recognition.training.crops import CROP_CONFIG, TIGHT_BOX

MAPPING = (
    Path(__file__).resolve().parents[2] / "training" / "mappings" / "sign_language_digits.json"
)
FIELDS = ["path", "label", "image_id", "width", "height", "source_folder"]


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def link(src_root: Path, dst_root: Path, rel: str) -> None:
    dst = dst_root / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists():
        dst.symlink_to(src_root / rel)


@pytest.fixture(scope="module")
def hand_rows(shared_data: Path) -> list[dict[str, str]]:
    """Real manifest rows: photos that gave several crops (under several labels) and 30 single
    crops of each of three labels, so every split gets whole groups of each."""
    rows = read_rows(shared_data / "hagrid_hand_crops" / "manifest.csv")
    per_id = Counter(r["image_id"] for r in rows)
    multi = sorted({r["image_id"] for r in rows if per_id[r["image_id"]] >= 2})[:6]
    chosen = [r for r in rows if r["image_id"] in multi]
    for label in ("like", "palm", "stop"):
        chosen += [r for r in rows if r["label"] == label and per_id[r["image_id"]] == 1][:30]
    return chosen


@pytest.fixture()
def hand_crops(shared_data: Path, hand_rows: list[dict[str, str]], tmp_path: Path) -> Path:
    """A hagrid_hand_crops-like folder: the real rows plus one record of each bad kind."""
    real = shared_data / "hagrid_hand_crops"
    root = tmp_path / "hand_crops"
    for row in hand_rows:
        link(real, root, row["path"])
    (root / "call").mkdir(exist_ok=True)
    (root / "call" / "broken.jpg").write_bytes(b"not a jpeg")
    Image.new("RGB", (6, 30)).save(root / "call" / "tiny.png")
    bad = [
        {"path": "call/broken.jpg", "label": "call", "image_id": "broken"},
        {"path": "call/tiny.png", "label": "call", "image_id": "tiny"},
        {"path": "call/missing.jpg", "label": "call", "image_id": "missing"},
        {"path": "", "label": "call", "image_id": "no_path"},
        {"path": hand_rows[0]["path"], "label": "", "image_id": "no_label"},
        {**hand_rows[1]},  # the same path twice
        {"path": hand_rows[2]["path"], "label": "victory", "image_id": "x"},  # not a hagrid class
    ]
    with (root / "manifest.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(hand_rows)
        writer.writerows(bad)
    return root


EXPECTED_SKIPS = {
    "unreadable_image": 1,
    "too_small": 1,
    "missing_image": 1,
    "empty_field": 2,
    "duplicate_path": 1,
    "label_not_in_label_map": 1,
}


def test_hand_crops_are_imported_grouped_and_bad_records_counted(
    hand_crops: Path, hand_rows: list[dict[str, str]], tmp_path: Path
) -> None:
    out = tmp_path / "imported"
    report = import_crops(
        hand_crops, out, load_label_map("hagrid"), "hhc", fractions=(0.2, 0.2), seed=1
    )
    assert dict(report.skipped) == EXPECTED_SKIPS
    assert sum(report.written.values()) == len(hand_rows)
    assert set(report.written) == {"train", "val", "test"}
    assert report.labels == Counter(r["label"] for r in hand_rows)

    rows = read_rows(out / "manifest.csv")
    assert list(rows[0]) == ["path", "label", "split", "group", "source", "crop"]
    assert {r["crop"] for r in rows} == {TIGHT_BOX}
    by_source = {r["source"]: r for r in rows}
    for real in hand_rows:
        row = by_source[f"hhc:{real['path']}"]
        assert row["group"] == f"hhc:{real['image_id']}" and row["label"] == real["label"]
        # Nothing copied: a path relative to the crops folder, to the source image.
        assert not Path(row["path"]).is_absolute()
        assert (out / row["path"]).resolve() == (hand_crops / real["path"]).resolve()
    # One photo's crops (a gesture and the other hand) never straddle the split.
    sides: dict[str, set[str]] = {}
    for r in rows:
        sides.setdefault(r["group"], set()).add(r["split"])
    assert all(len(s) == 1 for s in sides.values())
    assert any(len([r for r in rows if r["group"] == g]) > 1 for g in sides)

    # The training side reads it as it is: every row, tight boxes, no leak.
    manifest = read_crop_manifest(out, load_label_map("hagrid"))
    assert sum(len(v) for v in manifest.splits.values()) == len(hand_rows)
    assert not manifest.skipped_labels and not manifest.skipped_other
    assert not leaked_groups(manifest)
    assert {r.crop for v in manifest.splits.values() for r in v} == {TIGHT_BOX}

    # The report is written beside it, no crop config (these were not cut by a CropConfig).
    text = (out / "import_report.txt").read_text(encoding="utf-8")
    assert f"skipped: {sum(EXPECTED_SKIPS.values())} records" in text
    assert "call/broken.jpg" in text
    assert not (out / CROP_CONFIG).exists()
    with pytest.raises(FileExistsError):
        import_crops(hand_crops, out, load_label_map("hagrid"), "hhc")


def test_split_option_and_excluded_groups(
    hand_crops: Path, hand_rows: list[dict[str, str]], tmp_path: Path
) -> None:
    dropped = {hand_rows[0]["image_id"], hand_rows[-1]["image_id"]}
    report = import_crops(
        hand_crops,
        tmp_path / "train_only",
        load_label_map("hagrid"),
        "hhc",
        split="train",
        exclude_groups=dropped,
    )
    in_dropped = sum(r["image_id"] in dropped for r in hand_rows)
    assert report.skipped["near_duplicate_of_held_out_photo"] == in_dropped >= 2
    rows = read_rows(tmp_path / "train_only" / "manifest.csv")
    assert {r["split"] for r in rows} == {"train"}
    assert len(rows) == len(hand_rows) - in_dropped
    assert not {r["group"] for r in rows} & {f"hhc:{g}" for g in dropped}
    with pytest.raises(ValueError, match="split"):
        import_crops(hand_crops, tmp_path / "x", load_label_map("hagrid"), "hhc", split="holdout")


def test_mcs2021_import_skips_other_gestures_and_renames_peace(
    hand_crops: Path, hand_rows: list[dict[str, str]], tmp_path: Path
) -> None:
    report = import_crops(hand_crops, tmp_path / "mcs", load_label_map("mcs2021"), "hhc")
    labels = Counter(r["label"] for r in read_rows(tmp_path / "mcs" / "manifest.csv"))
    mcs = load_label_map("mcs2021")
    assert set(labels) <= set(mcs.classes)
    assert "palm" not in labels and report.skipped["label_not_in_label_map"] >= 30


def test_the_digit_mapping_file() -> None:
    mapping = read_mapping(MAPPING)
    hagrid = load_label_map("hagrid")
    assert sorted(mapping) == [str(d) for d in range(10)]
    assert all(hagrid.contains(v) for v in mapping.values())
    assert (mapping["2"], mapping["5"], mapping["9"]) == ("peace", "palm", "ok")


def test_read_mapping_accepts_a_bare_object_and_refuses_others(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"a": "like", "1": "one"}), encoding="utf-8")
    assert read_mapping(path) == {"a": "like", "1": "one"}
    for bad in ([["a", "like"]], {"mapping": {"a": 3}}, "like"):
        path.write_text(json.dumps(bad), encoding="utf-8")
        with pytest.raises(ValueError, match="JSON object"):
            read_mapping(path)


def test_digit_folders_with_a_mapping(shared_data: Path, tmp_path: Path) -> None:
    """Label folders without a manifest: the folder name goes through the mapping."""
    real = shared_data / "sign_language_digits"
    root = tmp_path / "digits"
    for digit in ("1", "2", "5", "7"):
        for photo in sorted((real / digit).iterdir())[:3]:
            link(real, root, f"{digit}/{photo.name}")
    (root / "README.txt").write_text("not a photo")
    mapping = {"1": "one", "2": "peace", "5": "palm"}  # 7 left out on purpose
    out = tmp_path / "imported"
    report = import_crops(
        root, out, load_label_map("hagrid"), "sld", mapping=mapping, split="train"
    )
    assert report.labels == Counter({"one": 3, "peace": 3, "palm": 3})
    assert dict(report.skipped) == {"label_not_in_mapping": 3}
    rows = read_rows(out / "manifest.csv")
    assert {r["group"] for r in rows} == {r["source"] for r in rows}  # each photo its own group
    two = [r for r in rows if r["source"].startswith("sld:2/")]
    assert len(two) == 3 and {r["label"] for r in two} == {"peace"}


def test_real_digit_manifest_through_the_cli(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real folder has a manifest whose label column is ``digit``."""
    root = shared_data / "sign_language_digits"
    out = tmp_path / "digits"
    base = ["import-crops", str(root), "--mapping", str(MAPPING), "--source", "sld"]
    assert main([*base, "--out", str(out)]) == 2  # no 'label' column: a one-line error
    assert "needs the columns path and label" in capsys.readouterr().err
    assert main([*base, "--out", str(out), "--label-column", "digit", "--split", "train"]) == 0
    rows = read_rows(out / "manifest.csv")
    assert len(rows) == len(read_rows(root / "manifest.csv"))
    assert {r["split"] for r in rows} == {"train"}
    counts = Counter(r["label"] for r in rows)
    assert set(counts) == {"other_gesture", "one", "peace", "palm", "ok"}
    assert counts["peace"] == sum(1 for p in (root / "2").iterdir())
    assert "skipped: 0 records" in capsys.readouterr().out


def test_merge_crop_folders_rebases_paths(
    hand_crops: Path, shared_data: Path, tmp_path: Path
) -> None:
    first, second = tmp_path / "a", tmp_path / "nested" / "b"
    import_crops(hand_crops, first, load_label_map("hagrid"), "hhc")
    digits = tmp_path / "digits"
    photo = sorted((shared_data / "sign_language_digits" / "5").iterdir())[0]
    link(shared_data / "sign_language_digits", digits, f"5/{photo.name}")
    import_crops(
        digits, second, load_label_map("hagrid"), "sld", mapping={"5": "palm"}, split="train"
    )
    merged = tmp_path / "deeper" / "merged"
    count = merge_crop_folders([first, second], merged)
    rows = read_rows(merged / "manifest.csv")
    parts = read_rows(first / "manifest.csv") + read_rows(second / "manifest.csv")
    assert count == len(rows) == len(parts)
    for row, part in zip(rows, parts, strict=True):
        assert row["source"] == part["source"] and row["split"] == part["split"]
        assert (merged / row["path"]).is_file()
        assert Path(os.path.normpath(merged / row["path"])).name == Path(part["path"]).name
    with pytest.raises(FileExistsError):
        merge_crop_folders([first], merged)


def test_test_list_fixes_the_test_split_by_group(
    hand_crops: Path, hand_rows: list[dict[str, str]], tmp_path: Path
) -> None:
    """An earlier model's held-out crops stay the test split: their whole groups, nothing else."""
    per_id = Counter(r["image_id"] for r in hand_rows)
    multi = next(r for r in hand_rows if per_id[r["image_id"]] >= 2)  # one crop of a 2+ group
    single = next(r for r in hand_rows if per_id[r["image_id"]] == 1)
    listed = tmp_path / "test.txt"
    listed.write_text(
        f"# held out\n{multi['path']}\n{single['path']}  # a comment\ncall/gone.jpg\n",
        encoding="utf-8",
    )
    out = tmp_path / "imported"
    args = ["import-crops", str(hand_crops), "--out", str(out), "--source", "hhc"]
    code = main([*args, "--test-list", str(listed), "--val", "0.2"])
    assert code == 0
    rows = read_rows(out / "manifest.csv")
    test_ids = {multi["image_id"], single["image_id"]}
    for r in rows:
        in_test = r["group"].removeprefix("hhc:") in test_ids
        assert (r["split"] == "test") == in_test, r
    assert sum(r["split"] == "test" for r in rows) == per_id[multi["image_id"]] + 1
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    assert "test list: 1 listed crops not imported" in (out / "import_report.txt").read_text()
