"""Roboflow oriented boxes on real files, ``split=`` for every source, validation per source.

``../shared/data/roboflow_hands`` labels each hand with four corner points
(``class x1 y1 x2 y2 x3 y3 x4 y4``, normalised); the YOLO reader takes their enclosing axis box.
The temporary datasets below link a few of its real photos in the Roboflow layout.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from gesture_recognition.training.converters.common import (
    ImageRecord,
    _fill_groups,
    assign_splits,
)
from gesture_recognition.training.converters.merge import (
    build_detector_dataset,
    parse_source,
    read_source,
)
from gesture_recognition.training.converters.yolo_txt import parse_label_file, read_yolo

SIZE = 640  # the export's photos are 640x640


def corners(label: Path) -> list[list[float]]:
    return [[float(v) for v in line.split()[1:]] for line in label.read_text().splitlines() if line]


def stems(folder: Path) -> dict[str, Path]:
    return {p.name.split(".rf.")[0]: p for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def roboflow(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Roboflow export (valid/test) of real photos: four of each split, one with five hands,
    and one photo that the real export put in both splits."""
    real = shared_data / "roboflow_hands"
    root = tmp_path_factory.mktemp("rf") / "roboflow_hands"
    valid, test = stems(real / "valid" / "images"), stems(real / "test" / "images")
    shared = sorted(set(valid) & set(test))[0]
    many = next(p for p in sorted((real / "valid" / "labels").iterdir()) if len(corners(p)) >= 3)
    picks = {
        "valid": [valid[shared], *[valid[k] for k in sorted(set(valid) - set(test))[:2]]],
        "test": [test[shared], *[test[k] for k in sorted(set(test) - set(valid))[:3]]],
    }
    picks["valid"].append(real / "valid" / "images" / f"{many.stem}.jpg")
    for split, photos in picks.items():
        for photo in photos:
            for kind, suffix in (("images", ".jpg"), ("labels", ".txt")):
                src = real / split / kind / f"{photo.stem}{suffix}"
                dst = root / split / kind / src.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.symlink_to(src)
    return root


def test_oriented_boxes_become_their_enclosing_axis_box(roboflow: Path) -> None:
    records = list(read_yolo(roboflow, source="rf"))
    assert Counter(r.split for r in records) == {"val": 4, "test": 4}
    assert all(r.problem is None and (r.width, r.height) == (SIZE, SIZE) for r in records)
    assert max(len(r.boxes) for r in records) >= 3
    for record in records:
        label = record.image_path.parent.parent / "labels" / f"{record.image_path.stem}.txt"
        points = corners(label)
        assert len(record.boxes) == len(points) and all(len(p) == 8 for p in points)
        for box, p in zip(record.boxes, points, strict=True):
            xs, ys = p[0::2], p[1::2]
            assert box.x1 == pytest.approx(min(xs) * SIZE) and box.x2 == pytest.approx(
                max(xs) * SIZE
            )
            assert box.y1 == pytest.approx(min(ys) * SIZE) and box.y2 == pytest.approx(
                max(ys) * SIZE
            )
            assert 0 <= box.x1 < box.x2 <= SIZE and 0 <= box.y1 < box.y2 <= SIZE
        # Roboflow copies of one photo share a group.
        assert record.group == f"rf:{record.image_path.name.split('.rf.')[0]}"


def test_odd_point_counts_are_malformed(tmp_path: Path) -> None:
    label = tmp_path / "a.txt"
    label.write_text("0 0.1 0.2 0.3 0.4 0.5 0.6 0.7\n")  # seven numbers
    assert parse_label_file(label, 100, 100, None) == ([], "malformed_box")
    label.write_text("0 0.1 0.2 0.3 0.2 0.3 0.4\n")  # a triangle: its box
    boxes, problem = parse_label_file(label, 100, 100, None)
    assert problem is None and (boxes[0].x1, boxes[0].y2) == pytest.approx((10.0, 40.0))


def test_split_option_overrides_the_source_split(roboflow: Path, tmp_path: Path) -> None:
    spec = parse_source(f"yolo:{roboflow}:rf:split=test")
    assert spec.options == {"split": "test"}
    assert {r.split for r in read_source(spec)} == {"test"}
    out = tmp_path / "ds"
    report = build_detector_dataset([parse_source(f"yolo:{roboflow / 'test'}:rft:split=test")], out)
    assert dict(report.written) == {"test": 4}
    assert report.boxes == sum(len(corners(p)) for p in (roboflow / "test" / "labels").iterdir())
    rows = [
        line.split()
        for p in (out / "labels" / "test").iterdir()
        for line in p.read_text().splitlines()
    ]
    assert rows and all(len(r) == 5 and r[0] == "0" for r in rows)  # axis boxes, class hand


def test_bad_split_values_are_refused(roboflow: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split='valid' is not one of train, val, test"):
        build_detector_dataset([parse_source(f"yolo:{roboflow}:rf:split=valid")], tmp_path / "a")
    with pytest.raises(ValueError, match="unknown option"):
        build_detector_dataset([parse_source(f"yolo:{roboflow}:rf:splt=train")], tmp_path / "b")


def test_split_train_keeps_every_photo_in_train(roboflow: Path, tmp_path: Path) -> None:
    """``split=train`` "puts all of the source's photos in that split" (merge.py): a source of
    training-only photos (Roboflow's valid split, copy-paste composites) must not feed
    validation even when the other sources have no val split of their own."""
    sources = [
        parse_source(f"yolo:{roboflow / 'valid'}:rfv:split=train"),
        parse_source(f"yolo:{roboflow / 'test'}:rft:split=test"),
    ]
    report = build_detector_dataset(sources, tmp_path / "ds", val_fraction=0.1)
    # The photo both splits hold stays in test only (a copy of a test photo never trains).
    assert dict(report.written) == {"train": 3, "test": 4}
    assert dict(report.skipped) == {"duplicate_of_test_photo": 1}


def test_a_photo_in_two_source_splits_does_not_leak_into_test(
    roboflow: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ds"
    build_detector_dataset([parse_source(f"yolo:{roboflow}:rf")], out)
    sides: dict[str, set[str]] = {}
    for image in (out / "images").rglob("*.jpg"):
        sides.setdefault(image.name.split(".rf.")[0], set()).add(image.parent.name)
    assert not [g for g, s in sides.items() if "test" in s and len(s) > 1]


def records(source: str, sizes: list[int], split: str | None = None) -> list[ImageRecord]:
    out = []
    for g, size in enumerate(sizes):
        for i in range(size):
            path = Path(f"/{source}/g{g}_{i}.jpg")
            out.append(ImageRecord(path, [], source, split, f"{source}:g{g}"))
    return out


def test_validation_is_filled_per_source_by_photo_count() -> None:
    # A: one 50-photo capture session and ten single photos; B: forty single photos.
    recs = records("a", [50] + [1] * 10) + records("b", [1] * 40)
    assign_splits(recs, 0.1, seed=0)
    val = Counter(r.source for r in recs if r.split == "val")
    assert val == {"a": 6, "b": 4}  # 10 % of each source's photos
    assert all(r.split == "train" for r in recs if r.group == "a:g0")  # the session stays whole
    sides: dict[str | None, set[str | None]] = {}
    for r in recs:
        sides.setdefault(r.group, set()).add(r.split)
    assert all(len(s) == 1 for s in sides.values())
    # Same seed, same answer, whatever the order of the records.
    again = records("b", [1] * 40) + records("a", [50] + [1] * 10)
    assign_splits(again, 0.1, seed=0)
    assert {(r.image_path, r.split) for r in again} == {(r.image_path, r.split) for r in recs}


def test_source_splits_are_kept_and_val_only_carved_when_none_has_one() -> None:
    with_val = records("a", [1] * 10, "train") + records("a2", [1] * 2, "val")
    free = records("b", [1] * 20)
    test = records("c", [1] * 5, "test")
    assign_splits(with_val + free + test, 0.1, seed=0)
    assert Counter(r.split for r in with_val) == {"train": 10, "val": 2}
    assert Counter(r.split for r in free) == {"train": 18, "val": 2}
    assert {r.split for r in test} == {"test"}
    own_train = records("a", [1] * 10, "train")
    assign_splits(own_train, 0.1, seed=0)  # no source has val: carved from train
    assert Counter(r.split for r in own_train) == {"train": 9, "val": 1}


def test_fill_groups_never_takes_every_group() -> None:
    sizes = {"a": 3, "b": 3, "c": 40}
    assert _fill_groups(["a", "b", "c"], sizes, target=4) == ["a"]  # b: 6 > 4 * 1.25
    assert _fill_groups(["a", "b", "c"], sizes, target=6) == ["a", "b"]
    assert _fill_groups(["c", "a", "b"], sizes, target=45) == ["c", "a"]  # one group left
    assert _fill_groups(["c"], {"c": 40}, target=4) == []
    assert _fill_groups(["a", "b"], sizes, target=0) == []
    # No group fits: the smallest one rather than no validation at all.
    assert _fill_groups(["c", "b"], sizes, target=1) == ["b"]
    with pytest.raises(ValueError):
        assign_splits(records("a", [1]), 1.0, seed=0)
