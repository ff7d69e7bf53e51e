"""Reading the MachinesCanSee 2021 train.csv / test.csv: what is accepted, what is refused."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from gesture_recognition.mcs2021 import (
    LayoutError,
    answer_columns,
    read_test_csv,
    read_train_csv,
)
from tests.mcs2021_layout import McsLayout, write_mcs_layout


@pytest.fixture(scope="module")
def layout(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> McsLayout:
    return write_mcs_layout(shared_data, tmp_path_factory.mktemp("mcs2021"))


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_answer_columns_are_the_competitions() -> None:
    assert answer_columns() == (
        "no_gesture",
        "stop",
        "victory",
        "mute",
        "ok",
        "like",
        "dislike",
        "frame_path",
    )


def test_train_csv_reads_frames_videos_and_labels(layout: McsLayout) -> None:
    frames = read_train_csv(layout.root)
    assert [(f.frame_path, f.video_name, f.label) for f in frames] == layout.train
    assert {f.label for f in frames} == set(answer_columns()[:-1])
    # Mixed videos: a resting hand, then the gesture.
    assert {f.label for f in frames if f.video_name == "like_00"} == {"no_gesture", "like"}


def test_test_csv_keeps_its_order(layout: McsLayout) -> None:
    frames = read_test_csv(layout.root)
    assert frames == layout.test
    assert frames != sorted(frames)  # the fixture's order is not one a sort would give


def test_alias_labels_and_byte_order_mark_are_accepted(layout: McsLayout, tmp_path: Path) -> None:
    rel, video, _ = layout.train[0]
    path = tmp_path / "train.csv"
    path.write_text(f"\ufeffframe_path,video_name,label\n{rel},{video},peace\n", encoding="utf-8")
    (frame,) = read_train_csv(layout.root, path)
    assert frame.label == "victory"


@pytest.mark.parametrize(
    ("header", "missing"),
    [
        (["frame_path", "label"], "video_name"),
        (["path", "video_name", "label"], "frame_path"),
        (["frame_path", "video_name", "gesture"], "label"),
    ],
)
def test_train_csv_without_a_column_is_refused(
    layout: McsLayout, tmp_path: Path, header: list[str], missing: str
) -> None:
    path = write_csv(tmp_path / "train.csv", header, [["a", "b", "c"]])
    with pytest.raises(LayoutError, match=f"lacks the column\\(s\\) {missing}"):
        read_train_csv(layout.root, path)


def test_test_csv_without_frame_path_is_refused(layout: McsLayout, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "test.csv", ["image"], [[layout.test[0]]])
    with pytest.raises(LayoutError, match="frame_path"):
        read_test_csv(layout.root, path)


def test_unknown_labels_are_named_with_their_counts(layout: McsLayout, tmp_path: Path) -> None:
    rows = [list(r) for r in layout.train[:4]]
    rows[1][2] = "thumbs_up"
    rows[2][2] = "thumbs_up"
    rows[3][2] = "fist"
    path = write_csv(tmp_path / "train.csv", ["frame_path", "video_name", "label"], rows)
    with pytest.raises(LayoutError) as info:
        read_train_csv(layout.root, path)
    message = str(info.value)
    assert "'fist' (1 rows)" in message and "'thumbs_up' (2 rows)" in message
    assert "mcs2021" in message


def test_missing_frames_are_counted_and_named(layout: McsLayout, tmp_path: Path) -> None:
    rows = [list(r) for r in layout.train[:3]] + [["train/gone/frame_000.jpg", "gone", "ok"]]
    path = write_csv(tmp_path / "train.csv", ["frame_path", "video_name", "label"], rows)
    with pytest.raises(FileNotFoundError, match=r"1 of 4 frames .*train/gone/frame_000\.jpg"):
        read_train_csv(layout.root, path)
    path = write_csv(tmp_path / "test.csv", ["frame_path"], [["test/nowhere.jpg"]])
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_test_csv(layout.root, path)


def test_missing_csv_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no train\.csv"):
        read_train_csv(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no test\.csv"):
        read_test_csv(tmp_path)


@pytest.mark.parametrize("frame", ["../outside.jpg", "/etc/passwd", "train/../../x.jpg", "C:x.jpg"])
def test_frames_outside_the_root_are_refused(layout: McsLayout, tmp_path: Path, frame: str) -> None:
    path = write_csv(tmp_path / "test.csv", ["frame_path"], [[layout.test[0]], [frame]])
    with pytest.raises(LayoutError, match="leave the data root"):
        read_test_csv(layout.root, path)


def test_a_labelled_row_without_frame_is_refused(layout: McsLayout, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "train.csv", ["frame_path", "video_name", "label"], [["", "v1", "ok"]]
    )
    with pytest.raises(LayoutError, match="empty or leave the data root"):
        read_train_csv(layout.root, path)


def test_duplicate_frames_and_missing_videos_are_refused(layout: McsLayout, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "test.csv", ["frame_path"], [[layout.test[0]], [layout.test[0]]])
    with pytest.raises(LayoutError, match="listed twice"):
        read_test_csv(layout.root, path)
    rel, _, label = layout.train[0]
    path = write_csv(
        tmp_path / "train.csv", ["frame_path", "video_name", "label"], [[rel, "", label]]
    )
    with pytest.raises(LayoutError, match="no video_name"):
        read_train_csv(layout.root, path)


def test_an_empty_csv_is_refused(layout: McsLayout, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "test.csv", ["frame_path"], [])
    with pytest.raises(LayoutError, match="lists no frames"):
        read_test_csv(layout.root, path)
