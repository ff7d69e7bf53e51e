"""answers.csv file handling: class order by name, the resumable partial file, the final file."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from gesture_recognition.client import submit
from gesture_recognition.client.submission import (
    ServedLabelsError,
    SubmissionFileError,
    answer_row,
    column_order,
    open_partial,
    partial_path,
    read_rows,
    write_answers,
)
from gesture_recognition.mcs2021 import answer_columns

COLUMNS = list(answer_columns())
FRAMES = ["test/b.jpg", "test/a,comma.jpg", "test/c.jpg"]


def test_columns_follow_the_served_order_by_name() -> None:
    served = ("like", "dislike", "no_gesture", "ok", "stop", "mute", "victory")
    order = column_order(served)
    probs = np.arange(7, dtype=np.float32) / 21  # distinct values, one per served class
    row = answer_row("f.jpg", probs, order)
    assert row[-1] == "f.jpg"
    by_column = dict(zip(COLUMNS[:-1], map(float, row[:-1]), strict=True))
    for index, name in enumerate(served):
        assert by_column[name] == pytest.approx(float(probs[index]))


def test_served_aliases_are_mapped() -> None:
    served = ("no_gesture", "stop", "peace", "mute", "ok", "like", "dislike")
    assert column_order(served) == tuple(range(7))


@pytest.mark.parametrize(
    "served",
    [
        ("0", "1", "2", "3", "4", "5"),  # finger counts
        ("no_gesture", "stop", "victory", "mute", "ok", "like"),  # one class short
        ("no_gesture", "stop", "victory", "mute", "ok", "like", "like"),
    ],
)
def test_other_classes_are_refused(served: tuple[str, ...]) -> None:
    with pytest.raises(ServedLabelsError, match="served model predicts"):
        column_order(served)


def test_probabilities_are_written_exactly() -> None:
    values = np.array([1e-20, 0.1, 1 / 3, 0.999999, 1.0, 0.0, 2e-7], np.float32)
    row = answer_row("f", values, tuple(range(7)))
    assert np.array_equal(np.array(row[:-1], dtype=np.float32), values)


def rows_for(frames: list[str]) -> dict[str, list[str]]:
    return {
        f: answer_row(f, np.full(7, i / 10, np.float32), tuple(range(7)))
        for i, f in enumerate(frames)
    }


def test_partial_rows_survive_a_reopen_and_a_torn_line(tmp_path: Path) -> None:
    out = tmp_path / "answers.csv"
    rows = rows_for(FRAMES)
    writer = open_partial(partial_path(out))
    writer.write(rows[FRAMES[0]])
    writer.write(rows[FRAMES[1]])
    writer.close()
    # A crash in the middle of the third row.
    with partial_path(out).open("a", encoding="utf-8") as f:
        f.write("0.1,0.2,0.")
    assert read_rows(partial_path(out), FRAMES) == {f: rows[f] for f in FRAMES[:2]}
    writer = open_partial(partial_path(out))  # cuts the fragment, writes no second header
    writer.write(rows[FRAMES[2]])
    writer.close()
    assert read_rows(partial_path(out), FRAMES) == rows
    text = partial_path(out).read_text(encoding="utf-8")
    assert text.count("frame_path") == 1 and "0.1,0.2,0.\n" not in text


def test_answers_are_written_in_test_order_and_the_partial_removed(tmp_path: Path) -> None:
    out = tmp_path / "not" / "yet" / "answers.csv"  # folders are made as needed
    rows = rows_for(FRAMES)
    writer = open_partial(partial_path(out))
    for frame in reversed(FRAMES):
        writer.write(rows[frame])
    writer.close()
    write_answers(out, FRAMES, read_rows(partial_path(out), FRAMES))
    assert not partial_path(out).exists()
    with out.open(newline="", encoding="utf-8") as f:
        lines = list(csv.reader(f))
    assert lines[0] == COLUMNS
    assert [line[-1] for line in lines[1:]] == FRAMES  # the comma survives quoting


def test_write_answers_refuses_an_incomplete_set(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="1 frames have no row"):
        write_answers(tmp_path / "a.csv", FRAMES, rows_for(FRAMES[:2]))


def test_a_partial_file_of_another_test_set_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "answers.csv.partial"
    writer = open_partial(path)
    writer.write(answer_row("elsewhere.jpg", np.zeros(7, np.float32), tuple(range(7))))
    writer.close()
    with pytest.raises(SubmissionFileError, match="does not list"):
        read_rows(path, FRAMES)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("frame_path,no_gesture\n", "has the columns"),
        (",".join(COLUMNS) + "\n0,0,0,0,0,0,1\n", "7 fields, not 8"),
        (",".join(COLUMNS) + "\n0,0,x,0,0,0,1,test/c.jpg\n", "line 2"),
    ],
)
def test_damaged_partial_files_are_refused(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "answers.csv.partial"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SubmissionFileError, match=match):
        read_rows(path, FRAMES)


def test_submit_cli_reports_layout_problems_as_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # No server is needed to find out that the data root has no test.csv.
    assert submit.main([str(tmp_path), "--no-progress"]) == submit.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("gesture-client submit: error: no test.csv")
    assert "Traceback" not in err


def test_gesture_client_dispatches_submit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gesture_recognition.client import cli

    assert cli.main(["submit", str(tmp_path)]) == cli.EXIT_USAGE
    assert "gesture-client submit: error: no test.csv" in capsys.readouterr().err
