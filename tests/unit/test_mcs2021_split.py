"""Grouped train/val/test splitting, and the MachinesCanSee layout fed to detect -> crops."""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gesture_recognition.labels import load_label_map
from gesture_recognition.training import cli
from gesture_recognition.training.classifier_data import leaked_groups, read_crop_manifest
from gesture_recognition.training.crops import (
    PhotoLabel,
    folder_labels,
    mcs2021_labels,
    split_stratified,
)
from gesture_recognition.training.splits import (
    group_stratum,
    grouped_split,
    groups_on_several_sides,
)
from tests.mcs2021_layout import McsLayout, write_mcs_layout


@pytest.fixture(scope="module")
def layout(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> McsLayout:
    # Enough videos per class that val and test both get some.
    return write_mcs_layout(shared_data, tmp_path_factory.mktemp("mcs2021"), videos_per_class=5)


def test_group_stratum_is_the_majority_label() -> None:
    assert group_stratum(["no_gesture", "like", "like"]) == "like"
    assert group_stratum(["ok", "no_gesture"]) == "no_gesture"  # tie: first by name
    assert group_stratum([None, None]) == "?"


def test_mcs_layout_is_split_by_video(layout: McsLayout) -> None:
    labels = mcs2021_labels(layout.root)
    splits = split_stratified(labels, (0.2, 0.2), seed=0)
    groups = {rel: truth.group for rel, truth in labels.items()}
    assert not groups_on_several_sides(splits, groups)
    videos_by_side: dict[str, set[str | None]] = {}
    for rel, side in splits.items():
        videos_by_side.setdefault(side, set()).add(groups[rel])
    assert set(videos_by_side) == {"train", "val", "test"}
    # Five videos per class, 20 % each: one video of every class in val and in test.
    assert len(videos_by_side["val"]) == len(videos_by_side["test"]) == 7
    # Frames of one video are never split, including the mixed ones.
    for video in {g for g in groups.values()}:
        assert len({splits[r] for r in groups if groups[r] == video}) == 1


def test_the_same_items_in_another_order_give_the_same_split() -> None:
    items = {f"v{v}/f{f}": (f"class{v % 3}", f"v{v}") for v in range(30) for f in range(4)}
    shuffled = list(items.items())
    random.Random(1).shuffle(shuffled)
    first = grouped_split(
        {k: lab for k, (lab, _) in items.items()},
        {k: g for k, (_, g) in items.items()},
        (0.2, 0.1),
        7,
    )
    second = grouped_split(
        {k: lab for k, (lab, _) in shuffled}, {k: g for k, (_, g) in shuffled}, (0.2, 0.1), 7
    )
    assert first == second
    assert first != grouped_split(
        {k: lab for k, (lab, _) in items.items()},
        {k: g for k, (_, g) in items.items()},
        (0.2, 0.1),
        8,
    )


def test_without_groups_every_item_is_its_own_group() -> None:
    labels = {f"p{i}": "ok" for i in range(20)}
    splits = grouped_split(labels, {}, (0.25, 0.25), seed=0)
    assert Counter(splits.values()) == {"train": 10, "val": 5, "test": 5}


def test_photos_with_their_own_split_keep_it() -> None:
    labels = {
        "a": PhotoLabel(label="ok", group="g1", split="test"),
        "b": PhotoLabel(label="ok", group="g2"),
        "c": PhotoLabel(label="ok", group="g2"),
    }
    splits = split_stratified(labels, (0.0, 0.0), seed=0)
    assert splits == {"a": "test", "b": "train", "c": "train"}


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (-0.1, 0.2), (0.9, 0.2)])
def test_impossible_fractions_are_refused(fractions: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="fractions"):
        grouped_split({"a": "ok"}, {}, fractions, seed=0)


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.text("abcdefgh", min_size=1, max_size=4),
        st.tuples(st.sampled_from(["ok", "like", "no_gesture", None]), st.integers(0, 6)),
        min_size=1,
        max_size=40,
    ),
    st.floats(0.0, 0.45),
    st.floats(0.0, 0.45),
    st.integers(0, 3),
)
def test_no_group_is_ever_on_two_sides(
    items: dict[str, tuple[str | None, int]], val: float, test: float, seed: int
) -> None:
    labels = {k: lab for k, (lab, _) in items.items()}
    groups = {k: f"video{g}" for k, (_, g) in items.items()}
    splits = grouped_split(labels, groups, (val, test), seed)
    assert set(splits) == set(items)
    assert set(splits.values()) <= {"train", "val", "test"}
    assert not groups_on_several_sides(splits, groups)


def test_a_folder_manifest_with_a_group_column_is_grouped(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "path,label,video_name\nok/a.jpg,ok,v1\nok/b.jpg,ok,v1\nlike/c.jpg,like,\n",
        encoding="utf-8",
    )
    labels = folder_labels(tmp_path, manifest)
    assert labels["ok/a.jpg"].group == labels["ok/b.jpg"].group == "v1"
    assert labels["like/c.jpg"].group is None


@pytest.mark.slow  # runs the shipped detector over the photos of the layout (~12 s)
def test_detect_and_crops_take_the_mcs_layout(layout: McsLayout, tmp_path: Path) -> None:
    """The layout through the real commands: the ONNX detector's boxes are the pseudo-labels,
    test frames are never detected or cropped, and the crop split keeps videos whole."""
    cache = tmp_path / "cache.json"
    assert cli.main(["detect", str(layout.root), "--layout", "mcs2021", "--out", str(cache)]) == 0
    cached = json.loads(cache.read_text())["images"]
    assert set(cached) == {rel for rel, _, _ in layout.train}
    # The competition has no boxes: the cached ones go out for review as pseudo-labels.
    review = tmp_path / "pseudo"
    assert cli.main(["pseudo-labels", "export", "--cache", str(cache), "--out", str(review)]) == 0
    assert {
        p.relative_to(review / "voc").with_suffix(".jpg").as_posix()
        for p in (review / "voc").rglob("*.xml")
    } == set(cached)
    out = tmp_path / "crops"
    code = cli.main(
        [
            "crops",
            str(layout.root),
            "--layout",
            "mcs2021",
            "--cache",
            str(cache),
            "--out",
            str(out),
            "--val",
            "0.2",
            "--test",
            "0.2",
            "--no-hand",
            "whole",
        ]
    )
    assert code == 0
    with (out / "manifest.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(layout.train)  # --no-hand whole: no frame is dropped
    video_of = {rel: video for rel, video, _ in layout.train}
    label_of = {rel: label for rel, _, label in layout.train}
    sides: dict[str, set[str]] = {}
    for row in rows:
        rel = row["source"].split(":", 1)[1]
        assert row["group"] == f"video:{video_of[rel]}"
        assert row["label"] == label_of[rel]
        sides.setdefault(row["group"], set()).add(row["split"])
    assert all(len(s) == 1 for s in sides.values())
    assert set().union(*sides.values()) == {"train", "val", "test"}
    # What train-classifier checks before training: no leak here, one once a row is moved.
    manifest = read_crop_manifest(out, load_label_map("mcs2021"))
    assert not leaked_groups(manifest)
    moved = manifest.splits["val"].pop()
    manifest.splits["train"].append(moved)
    assert leaked_groups(manifest) == {moved.group}


def test_crops_report_a_bad_train_csv_as_a_usage_error(
    layout: McsLayout, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "train.csv"
    bad.write_text("frame_path,label\nx.jpg,ok\n", encoding="utf-8")
    code = cli.main(
        ["detect", str(layout.root), "--layout", "mcs2021", "--train-csv", str(bad), "--out", "x"]
    )
    assert code == 2
    assert "lacks the column(s) video_name" in capsys.readouterr().err
