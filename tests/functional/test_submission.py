"""``gesture-client submit`` against a real Triton: answers.csv, interrupted and resumed runs.

The fixture is a MachinesCanSee data root written from real HaGRID photos into tmp_path. Every
row must hold the served ``GESTURE_PROBS`` (checked against the in-process pipeline) under the
competition's column names, in test.csv order; a run stopped part-way must leave its finished
rows, and the next run must answer only the rest and end with the same file.
"""

from __future__ import annotations

import csv
import io
import socket
from pathlib import Path

import numpy as np
import pytest

from gesture_recognition.client import submission, submit
from gesture_recognition.client.clients import AsyncGestureClient
from gesture_recognition.images import load_image
from gesture_recognition.mcs2021 import answer_columns
from gesture_recognition.pipeline import GesturePipeline
from tests.mcs2021_layout import McsLayout, write_mcs_layout

from .conftest import SCORE_ATOL, RunningServer

pytestmark = pytest.mark.functional
COLUMNS = list(answer_columns())
# Rows of two runs come from separate requests; the detector's dynamic batching may group
# photos differently, which can move a probability in its last float32 digits.
RUN_ATOL = 1e-5


@pytest.fixture(scope="module")
def layout(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> McsLayout:
    return write_mcs_layout(shared_data, tmp_path_factory.mktemp("mcs2021"), test_per_class=2)


def url_of(server: RunningServer, protocol: str) -> str:
    return server.grpc_url if protocol == "grpc" else server.http_url


def argv(layout: McsLayout, out: Path, server: RunningServer, protocol: str, *more: str) -> list:
    return [
        str(layout.root),
        "--out",
        str(out),
        "--url",
        url_of(server, protocol),
        "--protocol",
        protocol,
        "--no-progress",
        *more,
    ]


def read_answers(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    with path.open(newline="", encoding="utf-8") as f:
        lines = list(csv.reader(f))
    header, rows = lines[0], lines[1:]
    return header, [r[-1] for r in rows], np.array([r[:-1] for r in rows], dtype=np.float64)


def assert_same_answers(a: Path, b: Path) -> None:
    header_a, frames_a, probs_a = read_answers(a)
    header_b, frames_b, probs_b = read_answers(b)
    assert header_a == header_b == COLUMNS
    assert frames_a == frames_b
    np.testing.assert_allclose(probs_a, probs_b, atol=RUN_ATOL)


@pytest.fixture
def count_requests(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every photo the async client is asked to classify, in call order."""
    asked: list[Path] = []
    original = AsyncGestureClient.classify_path

    async def counting(self, path, encoded=True):  # type: ignore[no-untyped-def]
        asked.append(Path(path))
        return await original(self, path, encoded)

    monkeypatch.setattr(AsyncGestureClient, "classify_path", counting)
    return asked


@pytest.fixture(scope="module")
def uninterrupted(triton_server: RunningServer, layout: McsLayout, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full") / "answers.csv"
    stdout, stderr = io.StringIO(), io.StringIO()
    code = submit.main(argv(layout, out, triton_server, "grpc"), out=stdout, err=stderr)
    assert code == submit.EXIT_OK, stderr.getvalue()
    assert "photos/s" in stdout.getvalue() and f"wrote {out}" in stdout.getvalue()
    return out


def test_answers_hold_the_served_distribution_in_competition_columns(
    uninterrupted: Path, layout: McsLayout, reference: GesturePipeline
) -> None:
    header, frames, probs = read_answers(uninterrupted)
    assert header == COLUMNS
    assert frames == layout.test
    assert not submission.partial_path(uninterrupted).exists()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    for frame, row in zip(frames, probs, strict=True):
        local = reference(load_image(layout.root / frame))
        expected = [local.probabilities[local.labels.index(c)] for c in COLUMNS[:-1]]
        np.testing.assert_allclose(row, expected, atol=SCORE_ATOL, err_msg=frame)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_stopped_run_resumes_without_redoing_frames(
    triton_server: RunningServer,
    layout: McsLayout,
    uninterrupted: Path,
    tmp_path: Path,
    count_requests: list[Path],
    protocol: str,
) -> None:
    out = tmp_path / "answers.csv"
    stdout, stderr = io.StringIO(), io.StringIO()
    first = argv(layout, out, triton_server, protocol, "--max-frames", "5", "--concurrency", "3")
    assert submit.main(first, out=stdout, err=stderr) == submit.EXIT_OK, stderr.getvalue()
    assert not out.exists()
    assert "5 of 14 frames answered" in stdout.getvalue()
    finished = submission.read_rows(submission.partial_path(out), layout.test)
    assert len(finished) == 5 and len(count_requests) == 5
    partial_before = submission.partial_path(out).read_text(encoding="utf-8")

    count_requests.clear()
    stdout = io.StringIO()
    again = argv(layout, out, triton_server, protocol)
    assert submit.main(again, out=stdout, err=stderr) == submit.EXIT_OK, stderr.getvalue()
    asked = {p.relative_to(layout.root).as_posix() for p in count_requests}
    assert len(count_requests) == len(layout.test) - 5
    assert not asked & set(finished)
    assert "5 answered by an earlier run" in stdout.getvalue()
    assert_same_answers(out, uninterrupted)
    # The first run's rows are taken as written, not re-derived.
    with out.open(encoding="utf-8") as f:
        final_lines = set(f.read().splitlines())
    assert set(partial_before.splitlines()) <= final_lines

    # Nothing left: a rerun asks the server nothing and leaves the file as it is.
    count_requests.clear()
    before = out.read_bytes()
    assert submit.main(again, out=io.StringIO(), err=stderr) == submit.EXIT_OK
    assert count_requests == [] and out.read_bytes() == before


def test_an_interrupted_run_keeps_its_rows_and_a_restart_finishes(
    triton_server: RunningServer,
    layout: McsLayout,
    uninterrupted: Path,
    tmp_path: Path,
    count_requests: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "answers.csv"
    real_write = submission.PartialWriter.write
    calls = {"n": 0}

    def write_then_interrupt(self, row):  # type: ignore[no-untyped-def]
        if calls["n"] == 4:
            # Ctrl-C after four rows, with the next answer already in hand.
            raise KeyboardInterrupt
        calls["n"] += 1
        real_write(self, row)

    monkeypatch.setattr(submission.PartialWriter, "write", write_then_interrupt)
    stderr = io.StringIO()
    code = submit.main(argv(layout, out, triton_server, "grpc"), out=io.StringIO(), err=stderr)
    assert code == submit.EXIT_INTERRUPTED
    assert "interrupted after 4 new frames" in stderr.getvalue()
    # A crash in the middle of the next row, on top of the interruption.
    with submission.partial_path(out).open("a", encoding="utf-8") as f:
        f.write("0.25,0.")
    finished = submission.read_rows(submission.partial_path(out), layout.test)
    assert len(finished) == 4

    monkeypatch.setattr(submission.PartialWriter, "write", real_write)
    count_requests.clear()
    stderr = io.StringIO()
    code = submit.main(argv(layout, out, triton_server, "grpc"), out=io.StringIO(), err=stderr)
    assert code == submit.EXIT_OK, stderr.getvalue()
    assert len(count_requests) == len(layout.test) - 4
    assert not {p.relative_to(layout.root).as_posix() for p in count_requests} & set(finished)
    assert_same_answers(out, uninterrupted)


def test_restart_answers_every_frame_again(
    triton_server: RunningServer,
    layout: McsLayout,
    uninterrupted: Path,
    tmp_path: Path,
    count_requests: list[Path],
) -> None:
    out = tmp_path / "answers.csv"
    out.write_bytes(uninterrupted.read_bytes())
    code = submit.main(
        argv(layout, out, triton_server, "http", "--restart", "--raw"), err=io.StringIO()
    )
    assert code == submit.EXIT_OK
    assert len(count_requests) == len(layout.test)
    assert_same_answers(out, uninterrupted)


def test_a_server_that_is_not_there_is_exit_3(layout: McsLayout, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    stderr = io.StringIO()
    code = submit.main(
        [
            str(layout.root),
            *("--out", str(tmp_path / "a.csv"), "--url", f"127.0.0.1:{port}"),
            *("--retries", "0", "--no-progress"),
        ],
        out=io.StringIO(),
        err=stderr,
    )
    assert code == submit.EXIT_SERVER
    lines = stderr.getvalue().strip().splitlines()
    assert len(lines) == 1 and "no Triton server answers" in lines[0]
    assert not (tmp_path / "a.csv").exists()


def test_an_unknown_entry_point_is_exit_3(
    triton_server: RunningServer, layout: McsLayout, tmp_path: Path
) -> None:
    stderr = io.StringIO()
    code = submit.main(
        argv(layout, tmp_path / "a.csv", triton_server, "grpc", "--model", "nope"),
        out=io.StringIO(),
        err=stderr,
    )
    assert code == submit.EXIT_SERVER
    assert "'nope'" in stderr.getvalue()


def test_a_frame_the_server_refuses_blocks_the_file_until_a_rerun_answers_it(
    triton_server: RunningServer,
    shared_data: Path,
    tmp_path: Path,
    count_requests: list[Path],
) -> None:
    small = write_mcs_layout(shared_data, tmp_path / "data", videos_per_class=1, test_per_class=1)
    broken = small.root / small.test[2]
    good_bytes = broken.read_bytes()
    broken.write_bytes(b"not a photo")
    out = tmp_path / "answers.csv"
    stderr = io.StringIO()
    code = submit.main(argv(small, out, triton_server, "grpc"), out=io.StringIO(), err=stderr)
    assert code == submit.EXIT_FAILED
    assert small.test[2] in stderr.getvalue() and "1 of 7 frames failed" in stderr.getvalue()
    assert not out.exists()
    assert len(submission.read_rows(submission.partial_path(out), small.test)) == 6

    broken.write_bytes(good_bytes)
    count_requests.clear()
    code = submit.main(argv(small, out, triton_server, "grpc"), out=io.StringIO(), err=stderr)
    assert code == submit.EXIT_OK, stderr.getvalue()
    assert count_requests == [broken]
    _, frames, _ = read_answers(out)
    assert frames == small.test


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_the_class_order_is_the_servers(triton_server: RunningServer, protocol: str) -> None:
    url = url_of(triton_server, protocol)
    for model in ("gesture_ensemble", "gesture_ensemble_bytes"):
        labels = submit.served_labels(url, protocol, model)
        label_file = triton_server.repository / "gesture_classifier" / "labels.txt"
        assert labels == tuple(label_file.read_text(encoding="utf-8").split())


def test_rows_follow_the_order_the_server_states(
    triton_server: RunningServer,
    layout: McsLayout,
    uninterrupted: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Were the server to state another order, the columns must move with it: the client maps
    by the names it is given and assumes nothing."""
    real = submit.served_labels(triton_server.grpc_url, "grpc", "gesture_ensemble_bytes")
    stated = real[::-1]
    monkeypatch.setattr(submit, "served_labels", lambda *args, **kwargs: stated)
    out = tmp_path / "answers.csv"
    assert submit.main(argv(layout, out, triton_server, "grpc"), err=io.StringIO()) == 0
    _, frames, probs = read_answers(out)
    _, _, truth = read_answers(uninterrupted)
    # The answer's value at index j (truly the probability of real[j]) lands under stated[j].
    for c, name in enumerate(COLUMNS[:-1]):
        j = stated.index(name)
        np.testing.assert_allclose(probs[:, c], truth[:, COLUMNS.index(real[j])], atol=RUN_ATOL)
    assert frames == layout.test
    assert not np.allclose(probs, truth)  # the fixture's answers do tell the orders apart
