"""``answers.csv`` for the MachinesCanSee 2021 task: rows, the resumable partial file, the result.

Pure file handling, no server: :mod:`.submit` does the requests and calls these.

- The server says its class order (the ensemble config's ``labels`` parameter); the columns are
  the competition's (``gesture_recognition.mcs2021``). :func:`column_order` maps one to the
  other by name, so the client never assumes the model's order.
- Rows are appended to ``<out>.partial`` as frames finish, in whatever order they finish. A
  restart reads it back (:func:`read_rows`) and skips those frames; a line cut short by a crash
  is dropped and truncated away before appending (:func:`open_partial`).
- When every frame has a row, :func:`write_answers` writes ``<out>`` in test.csv order
  (write-then-rename) and removes the partial file. Rows are kept as the text first written,
  so a resumed run gives the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

import numpy as np

from gesture_recognition.labels import LabelMap, UnknownLabelError, load_label_map
from gesture_recognition.mcs2021 import FRAME, LABEL_MAP, answer_columns

from .errors import GestureClientError

PARTIAL_SUFFIX = ".partial"
# Rows are flushed to the OS as they come (a killed process loses none); fsync, which only
# matters if the machine itself goes down, is paced so it never dominates a fast server.
FSYNC_EVERY_S = 1.0


class SubmissionFileError(ValueError):
    """An existing answers / partial file that cannot be resumed from; the message says why."""


class ServedLabelsError(GestureClientError):
    """The served model's classes are not the competition's, or the server does not name them."""


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + PARTIAL_SUFFIX)


def column_order(served: Sequence[str], label_map: LabelMap | None = None) -> tuple[int, ...]:
    """For each probability column of ``answers.csv``, its index in the server's output.

    Server names go through the label map (HaGRID's ``peace`` is ``victory``); the served set
    must be exactly the competition's classes, else the probabilities would not be the
    distribution the task scores.
    """
    label_map = label_map or load_label_map(LABEL_MAP)
    try:
        canonical = [label_map.canonical(name) for name in served]
    except UnknownLabelError as exc:
        raise ServedLabelsError(
            f"the served model predicts {list(served)}, not the {label_map.name} classes "
            f"{list(label_map.classes)} ({exc.args[0]}); serve a model trained with "
            f"--label-map {label_map.name}"
        ) from exc
    if sorted(canonical) != sorted(label_map.classes):
        raise ServedLabelsError(
            f"the served model predicts {list(served)}; answers.csv needs exactly "
            f"{list(label_map.classes)}"
        )
    return tuple(canonical.index(name) for name in label_map.classes)


def format_probability(value: float) -> str:
    # The shortest text that reads back as the same float32: exact, and stable across runs.
    return str(np.float32(value))


def answer_row(
    frame: str, probabilities: Sequence[float] | np.ndarray, order: Sequence[int]
) -> list[str]:
    """One line of ``answers.csv``: the class probabilities in column order, then the frame."""
    if len(probabilities) <= max(order):
        raise ValueError(f"{len(probabilities)} probabilities for column indices {list(order)}")
    return [*(format_probability(probabilities[i]) for i in order), frame]


def _csv_line(row: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(row)
    return buffer.getvalue()


def read_rows(
    path: Path, frames: Iterable[str], columns: Sequence[str] | None = None
) -> dict[str, list[str]]:
    """Rows of an answers or partial file, by frame; a last line without newline is ignored.

    Refuses a file whose header is not ``columns`` or that answers a frame test.csv does not
    list: it belongs to another test set or model, and mixing it in would be silent garbage.
    """
    columns = list(columns or answer_columns())
    known = set(frames)
    text = Path(path).read_text(encoding="utf-8")
    complete = text if text.endswith("\n") else text[: text.rfind("\n") + 1]
    lines = list(csv.reader(io.StringIO(complete)))
    if not lines:
        return {}
    if lines[0] != columns:
        raise SubmissionFileError(
            f"{path} has the columns {lines[0]}, expected {columns}: not written by this "
            f"command for this task; delete it or pass --restart"
        )
    frame_at = columns.index(FRAME)
    rows: dict[str, list[str]] = {}
    for number, row in enumerate(lines[1:], start=2):
        if len(row) != len(columns):
            raise SubmissionFileError(
                f"{path} line {number}: {len(row)} fields, not {len(columns)}"
            )
        try:
            [float(v) for i, v in enumerate(row) if i != frame_at]
        except ValueError as exc:
            raise SubmissionFileError(f"{path} line {number}: {exc}") from exc
        if row[frame_at] not in known:
            raise SubmissionFileError(
                f"{path} line {number} answers {row[frame_at]!r}, which test.csv does not "
                f"list: it belongs to another test set; delete it or pass --restart"
            )
        rows[row[frame_at]] = row
    return rows


class PartialWriter:
    """Appends rows to the partial file, each flushed as written, fsync'd at a steady pace."""

    def __init__(self, handle: TextIO) -> None:
        self._f = handle
        self._last_sync = time.monotonic()
        self.written = 0

    def write(self, row: Sequence[str]) -> None:
        self._f.write(_csv_line(row))
        self._f.flush()
        self.written += 1
        if time.monotonic() - self._last_sync >= FSYNC_EVERY_S:
            self._sync()

    def _sync(self) -> None:
        os.fsync(self._f.fileno())
        self._last_sync = time.monotonic()

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            self._sync()
            self._f.close()


def open_partial(path: Path, columns: Sequence[str] | None = None) -> PartialWriter:
    """The partial file opened for appending: header written if new, a torn last line cut."""
    columns = list(columns or answer_columns())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            # A crash mid-line: drop the fragment so the next row starts on a line of its own.
            with path.open("r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)
    handle = path.open("a", encoding="utf-8", newline="")
    if handle.tell() == 0:
        handle.write(_csv_line(columns))
    return PartialWriter(handle)


def write_answers(
    out: Path,
    frames: Sequence[str],
    rows: Mapping[str, Sequence[str]],
    columns: Sequence[str] | None = None,
) -> Path:
    """``out`` with one row per frame in test.csv order; then the partial file is removed."""
    columns = list(columns or answer_columns())
    missing = [f for f in frames if f not in rows]
    if missing:
        raise ValueError(f"{len(missing)} frames have no row yet, e.g. {missing[0]!r}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows[frame] for frame in frames)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)
    partial_path(out).unlink(missing_ok=True)
    return out
