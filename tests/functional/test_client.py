"""The project's clients (sync, asyncio, ``gesture-client``) against a real server.

Every answer must equal the in-process ``GesturePipeline`` on the same ONNX files: same labels,
boxes within 1 px, scores within 1e-4; over gRPC and HTTP, through both entry points, with and
without system shared memory.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image

from gesture_recognition.client import cli
from gesture_recognition.client import core as client_core
from gesture_recognition.client.clients import AsyncGestureClient, GestureClient
from gesture_recognition.client.errors import (
    InvalidInputError,
    ModelNotReadyError,
    RequestTimeoutError,
)
from gesture_recognition.images import load_image
from gesture_recognition.pipeline import GesturePipeline, GestureResult
from gesture_recognition.serving.contract import ENSEMBLE, IMAGE

from .conftest import BOX_ATOL, PROTOCOLS, SCORE_ATOL, RunningServer, hand_count

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def photo_paths(shared_data: Path) -> list[Path]:
    """Real photos: one- and two-hand webcam shots and HaGRID crops of two gestures."""
    test = sorted((shared_data / "subhih_hands" / "test").glob("*.jpg"))
    one = [p for p in test if hand_count(p) == 1][:2]
    two = [p for p in test if hand_count(p) == 2][:1]
    crops = [sorted((shared_data / "hagrid_crops" / c).glob("*.jpg"))[0] for c in ("like", "ok")]
    return one + two + crops


@pytest.fixture(scope="module")
def expected(reference: GesturePipeline, photo_paths: list[Path]) -> dict[Path, GestureResult]:
    return {path: reference(load_image(path)) for path in photo_paths}


def url_of(server: RunningServer, protocol: str) -> str:
    return server.grpc_url if protocol == "grpc" else server.http_url


def assert_same(served: GestureResult, local: GestureResult, what: object = "") -> None:
    assert served.labels == local.labels, what
    assert served.gesture == local.gesture, what
    assert served.score == pytest.approx(local.score, abs=SCORE_ATOL), what
    assert served.hand_gestures == local.hand_gestures, what
    assert served.hand_boxes.shape == local.hand_boxes.shape, what
    np.testing.assert_allclose(
        served.hand_boxes, local.hand_boxes, atol=BOX_ATOL, err_msg=str(what)
    )
    for name in ("hand_scores", "hand_gesture_scores", "probabilities"):
        np.testing.assert_allclose(
            getattr(served, name), getattr(local, name), atol=SCORE_ATOL, err_msg=f"{what} {name}"
        )


def assert_same_dict(served: dict, local: GestureResult, what: object = "") -> None:
    """A ``--json`` line against the reference."""
    assert served["gesture"] == local.gesture, what
    assert served["score"] == pytest.approx(local.score, abs=SCORE_ATOL), what
    hands = served["hands"]
    assert [h["gesture"] for h in hands] == local.hand_gestures, what
    boxes = np.array([h["box"] for h in hands], np.float32).reshape(-1, 4)
    np.testing.assert_allclose(boxes, local.hand_boxes, atol=BOX_ATOL, err_msg=str(what))
    probs = np.array([served["probabilities"][label] for label in local.labels])
    np.testing.assert_allclose(probs, local.probabilities, atol=SCORE_ATOL, err_msg=str(what))


def _shm_regions(server: RunningServer, protocol: str) -> list[str]:
    """Names of the system shared memory regions the server has registered."""
    if protocol == "grpc":
        with grpcclient.InferenceServerClient(server.grpc_url) as client:
            status = client.get_system_shared_memory_status(as_json=True)
        return list(status.get("regions", {}))
    with httpclient.InferenceServerClient(server.http_url) as client:
        return [region["name"] for region in client.get_system_shared_memory_status()]


# ----------------------------------------------------------------- sync client


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("shared_memory", ["none", "system"])
def test_sync_client_matches_the_pipeline(
    triton_server: RunningServer,
    expected: dict[Path, GestureResult],
    protocol: str,
    shared_memory: str,
) -> None:
    url = url_of(triton_server, protocol)
    with GestureClient(url, protocol, shared_memory=shared_memory) as client:
        assert client.is_ready()
        client.check_ready()
        for path, local in expected.items():
            for encoded in (True, False):
                served = client.classify_path(path, encoded=encoded)
                assert_same(served, local, (path.name, "bytes" if encoded else "raw"))
    assert not [r for r in _shm_regions(triton_server, protocol) if "gesture_client" in r]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_shared_memory_after_a_retry_and_while_the_server_holds_a_region(
    triton_server: RunningServer,
    expected: dict[Path, GestureResult],
    protocol: str,
) -> None:
    """The real server's answers: a region registered again after a retry that assumed a
    restart (it is ``already in manager``), and closing while a request still holds a region
    (``currently in use``): nothing may stay registered."""
    path, local = next(iter(expected.items()))
    big = np.ascontiguousarray(np.tile(load_image(path), (3, 3, 1)))  # slow enough to overlap
    client = GestureClient(url_of(triton_server, protocol), protocol, shared_memory="system")
    try:
        assert_same(client.classify_path(path), local)
        assert client._pool is not None
        client._pool.forget_registrations()  # what a retry after UNAVAILABLE does
        assert_same(client.classify_path(path), local)
        client.classify_image(big)
        (region,) = [r for r in client._pool.regions() if r.byte_size >= big.nbytes]
        holder = grpcclient.InferenceServerClient(triton_server.grpc_url)
        tensor = grpcclient.InferInput(IMAGE, list(big.shape), "UINT8")
        tensor.set_shared_memory(region.name, region.write(big.data.cast("B")))
        answered: list[object] = []
        holder.async_infer(ENSEMBLE, [tensor], callback=lambda *outcome: answered.append(outcome))
    finally:
        client.close()
    assert not [r for r in _shm_regions(triton_server, protocol) if "gesture_client" in r]
    holder.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_synthetic_photos_both_entry_points(
    triton_server: RunningServer, reference: GesturePipeline, protocol: str
) -> None:
    """A blank photo (no hand for a trained detector) and an odd-sized one, as pixels and PNG."""
    rng = np.random.default_rng(0)
    photos = {
        "grey": np.full((480, 640, 3), 128, np.uint8),
        "noise 97x131": rng.integers(0, 256, (97, 131, 3), dtype=np.uint8),
    }
    with GestureClient(url_of(triton_server, protocol), protocol) as client:
        for name, image in photos.items():
            local = reference(image)
            assert_same(client.classify_image(image), local, (name, "raw"))
            png = io.BytesIO()
            Image.fromarray(image).save(png, format="PNG")
            assert_same(client.classify_bytes(png.getvalue()), local, (name, "png"))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_labels_come_from_the_server(
    triton_server: RunningServer,
    reference: GesturePipeline,
    protocol: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_fallback(k: int) -> tuple[str, ...]:
        raise AssertionError("the server's label file was not read")

    monkeypatch.setattr(client_core, "fallback_labels", no_fallback)
    with GestureClient(url_of(triton_server, protocol), protocol) as client:
        assert client.labels == reference.labels


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_server_errors_are_typed(triton_server: RunningServer, protocol: str) -> None:
    with GestureClient(url_of(triton_server, protocol), protocol, retries=0) as client:
        with pytest.raises(InvalidInputError, match="not a readable image"):
            client.classify_bytes(b"this is not a photo")
        with pytest.raises(ModelNotReadyError, match="no_such_model"):
            client.check_ready(["no_such_model"])
        assert client.is_ready()  # the refusals left the server healthy


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_slow_answer_is_a_timeout_not_a_retry(
    triton_server: RunningServer, reference: GesturePipeline, protocol: str
) -> None:
    # Small on purpose: the request is sent at once and the 1 ms timeout runs out while the
    # server computes, never halfway through sending (a race on a busy 2-core host).
    photo = np.full((64, 64, 3), 90, np.uint8)
    url = url_of(triton_server, protocol)
    with (
        GestureClient(url, protocol, timeout=0.001, labels=reference.labels) as client,
        pytest.raises(RequestTimeoutError, match="within the timeout"),
    ):
        client.classify_image(photo)
    with GestureClient(url, protocol) as client:  # the server is still fine
        assert_same(client.classify_image(photo), reference(photo))


# ----------------------------------------------------------------- asyncio client


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("shared_memory", ["none", "system"])
def test_async_client_matches_the_pipeline(
    triton_server: RunningServer,
    expected: dict[Path, GestureResult],
    protocol: str,
    shared_memory: str,
) -> None:
    paths = list(expected) * 2  # more files than the window

    async def run() -> tuple[list, list, bool]:
        async with AsyncGestureClient(
            url_of(triton_server, protocol), protocol, shared_memory=shared_memory, max_in_flight=3
        ) as client:
            ready = await client.is_ready()
            ordered = [r async for r in client.classify_many(paths, concurrency=3)]
            unordered = [
                r
                async for r in client.classify_many(
                    paths, concurrency=3, ordered=False, encoded=False
                )
            ]
            return ordered, unordered, ready

    ordered, unordered, ready = asyncio.run(run())
    assert ready
    assert [r.path for r in ordered] == paths
    assert sorted(map(str, (r.path for r in unordered))) == sorted(map(str, paths))
    for outcome in ordered + unordered:
        assert outcome.ok, outcome.error
        assert outcome.result is not None
        assert_same(outcome.result, expected[outcome.path], outcome.path.name)
    assert not [r for r in _shm_regions(triton_server, protocol) if "gesture_client" in r]


# ----------------------------------------------------------------- gesture-client


@pytest.mark.parametrize(
    ("protocol", "extra"),
    [
        ("grpc", ["--concurrency", "1"]),
        ("grpc", ["--raw", "--concurrency", "3", "--shared-memory", "system"]),
        ("http", ["--concurrency", "3"]),
        ("http", ["--raw", "--concurrency", "1"]),
    ],
    ids=["grpc-sync-bytes", "grpc-async-raw-shm", "http-async-bytes", "http-sync-raw"],
)
def test_cli_json(
    triton_server: RunningServer,
    expected: dict[Path, GestureResult],
    protocol: str,
    extra: list[str],
) -> None:
    out, err = io.StringIO(), io.StringIO()
    argv = [str(p) for p in expected]
    argv += ["--protocol", protocol, "--url", url_of(triton_server, protocol), "--json", *extra]
    assert cli.main(argv, out=out, err=err) == cli.EXIT_OK, err.getvalue()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [Path(line["file"]) for line in lines] == list(expected)
    for line in lines:
        assert_same_dict(line, expected[Path(line["file"])], line["file"])


def test_cli_table_and_annotated_photos(
    triton_server: RunningServer, expected: dict[Path, GestureResult], tmp_path: Path
) -> None:
    """The installed console script, on a folder and a glob, writing annotated photos."""
    folder = tmp_path / "photos"
    folder.mkdir()
    paths = list(expected)
    for path in paths:
        (folder / path.name).write_bytes(path.read_bytes())
    out_dir = tmp_path / "annotated"
    script = Path(sys.executable).parent / "gesture-client"
    argv = [str(folder / paths[0].name), str(folder / "*.jpg")]  # the first one twice: once
    argv += ["--url", triton_server.grpc_url, "--save-annotated", str(out_dir)]
    done = subprocess.run(
        [str(script), *argv], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    rows = done.stdout.strip().splitlines()
    assert rows[0].split()[:4] == ["file", "gesture", "score", "hands"]
    assert len(rows) == 1 + len(paths)
    by_name = {Path(row.split()[0]).name: row.split() for row in rows[1:]}
    for path, local in expected.items():
        _, gesture, score, hands, *boxes = by_name[path.name]
        assert gesture == local.gesture
        assert float(score) == pytest.approx(local.score, abs=1e-3)
        assert int(hands) == len(local.hand_boxes) == len(boxes)
        with Image.open(out_dir / f"{path.stem}.png") as img:
            height, width = load_image(path).shape[:2]
            assert img.format == "PNG" and img.size == (width, height)
    assert len(list(out_dir.iterdir())) == len(paths)


def test_cli_reports_bad_files_and_goes_on(
    triton_server: RunningServer, expected: dict[Path, GestureResult], tmp_path: Path
) -> None:
    fake = tmp_path / "fake.jpg"
    fake.write_text("not a photo")
    good = next(iter(expected))
    out, err = io.StringIO(), io.StringIO()
    argv = [str(fake), str(good), "--url", triton_server.http_url, "--protocol", "http"]
    assert cli.main([*argv, "--json"], out=out, err=err) == cli.EXIT_FAILED
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["file"] == str(fake) and "not a readable image" in lines[0]["error"]
    assert_same_dict(lines[1], expected[good])
    assert "fake.jpg" in err.getvalue() and "1 of 2 files failed" in err.getvalue()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cli_model_not_ready(
    triton_server: RunningServer, expected: dict[Path, GestureResult], protocol: str
) -> None:
    out, err = io.StringIO(), io.StringIO()
    argv = [str(next(iter(expected))), "--protocol", protocol, "--model", "no_such_model"]
    argv += ["--url", url_of(triton_server, protocol), "--retries", "0"]
    assert cli.main(argv, out=out, err=err) == cli.EXIT_SERVER
    assert out.getvalue() == ""
    message = err.getvalue().strip()
    assert len(message.splitlines()) == 1 and "no_such_model" in message
    assert "not ready" in message and "Traceback" not in message
