"""The MachinesCanSee 2021 task's files: ``train.csv`` / ``test.csv`` in, ``answers.csv`` out.

Layout under a data root (paths in the CSVs are relative to it)::

    <root>/train.csv    frame_path,video_name,label     (labelled video frames)
    <root>/test.csv     frame_path                      (frames to answer)
    <root>/<frame_path> the photos

``answers.csv``: one row per test frame, the probability of each class, then the frame, in the
columns the competition scored: ``no_gesture,stop,victory,mute,ok,like,dislike,frame_path``.
The class columns are the ``mcs2021`` label map's classes (one home for the order).

Training (``training.crops``) and the submission client (``client.submission``) both read the
CSVs through here, so a layout problem is reported the same way by both, before any work.
Only the standard library and the label maps are imported: the serve-only install uses it.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from gesture_recognition.labels import LabelMap, load_label_map

TRAIN_CSV = "train.csv"
TEST_CSV = "test.csv"
ANSWERS_CSV = "answers.csv"
LABEL_MAP = "mcs2021"
FRAME = "frame_path"
VIDEO = "video_name"
LABEL = "label"
TRAIN_COLUMNS = (FRAME, VIDEO, LABEL)
TEST_COLUMNS = (FRAME,)
# A message names at most this many offending rows; the count says how many there are.
SHOW_AT_MOST = 5


class LayoutError(ValueError):
    """A competition CSV that cannot be used as it is; the message says what and where."""


@dataclass(frozen=True)
class TrainFrame:
    frame_path: str  # as written in train.csv, relative to the data root (POSIX)
    video_name: str  # the group: frames of one video never sit on both sides of a split
    label: str  # canonical class of the label map


def class_columns(label_map: LabelMap | None = None) -> tuple[str, ...]:
    """The probability columns of ``answers.csv``, in the competition's order."""
    return (label_map or load_label_map(LABEL_MAP)).classes


def answer_columns(label_map: LabelMap | None = None) -> tuple[str, ...]:
    return (*class_columns(label_map), FRAME)


def _examples(items: list[str]) -> str:
    more = f" (and {len(items) - SHOW_AT_MOST} more)" if len(items) > SHOW_AT_MOST else ""
    return ", ".join(items[:SHOW_AT_MOST]) + more


def _safe_relative(frame: str) -> bool:
    # Frames must stay inside the data root: an absolute or ``..`` path in a downloaded CSV
    # would otherwise read (and, for crops, name files after) anything on the machine.
    path = PurePosixPath(frame.replace("\\", "/"))
    return bool(frame) and not path.is_absolute() and ".." not in path.parts and ":" not in frame


def _read_rows(csv_path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) pairs of a CSV that has the required columns, stripped of blanks."""
    if not csv_path.is_file():
        raise FileNotFoundError(f"no {csv_path.name} at {csv_path}")
    with csv_path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in required if c not in columns]
        if missing:
            raise LayoutError(
                f"{csv_path} lacks the column(s) {', '.join(missing)} "
                f"(has: {', '.join(columns) or 'no header'}); expected {', '.join(required)}"
            )
        rows = []
        for row in reader:
            clean = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            if not any(clean.values()):
                continue  # a blank line
            rows.append((reader.line_num, clean))
    if not rows:
        raise LayoutError(f"{csv_path} lists no frames")
    return rows


def _check_frames(csv_path: Path, root: Path, frames: list[tuple[int, str]]) -> None:
    bad = [f"line {n}: {f!r}" for n, f in frames if not _safe_relative(f)]
    if bad:
        raise LayoutError(
            f"{csv_path}: {len(bad)} frame_path value(s) are empty or leave the data root: "
            f"{_examples(bad)}"
        )
    counts = Counter(f for _, f in frames)
    twice = sorted(f for f, c in counts.items() if c > 1)
    if twice:
        raise LayoutError(f"{csv_path}: {len(twice)} frame(s) listed twice: {_examples(twice)}")
    missing = [f for _, f in frames if not (root / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{csv_path}: {len(missing)} of {len(frames)} frames are not under {root}: "
            f"{_examples(missing)}"
        )


def read_train_csv(
    root: Path, csv_path: Path | None = None, label_map: LabelMap | None = None
) -> list[TrainFrame]:
    """The labelled frames of ``train.csv``, in file order; any bad row fails the whole read."""
    root = Path(root)
    csv_path = Path(csv_path) if csv_path is not None else root / TRAIN_CSV
    label_map = label_map or load_label_map(LABEL_MAP)
    rows = _read_rows(csv_path, TRAIN_COLUMNS)
    no_video = [f"line {n}" for n, r in rows if not r[VIDEO]]
    if no_video:
        raise LayoutError(
            f"{csv_path}: {len(no_video)} row(s) have no video_name (the split needs it): "
            f"{_examples(no_video)}"
        )
    unknown = Counter(r[LABEL] for _, r in rows if not label_map.contains(r[LABEL]))
    if unknown:
        names = [f"{label!r} ({count} rows)" for label, count in sorted(unknown.items())]
        raise LayoutError(
            f"{csv_path}: label(s) not in label map {label_map.name!r}: {_examples(names)}; "
            f"known: {', '.join(label_map.classes)}"
        )
    _check_frames(csv_path, root, [(n, r[FRAME]) for n, r in rows])
    return [TrainFrame(r[FRAME], r[VIDEO], label_map.canonical(r[LABEL])) for _, r in rows]


def read_test_csv(root: Path, csv_path: Path | None = None) -> list[str]:
    """The frames of ``test.csv`` in file order: the order ``answers.csv`` keeps."""
    root = Path(root)
    csv_path = Path(csv_path) if csv_path is not None else root / TEST_CSV
    rows = _read_rows(csv_path, TEST_COLUMNS)
    frames = [(n, r[FRAME]) for n, r in rows]
    _check_frames(csv_path, root, frames)
    return [f for _, f in frames]
