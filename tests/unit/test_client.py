"""The Triton clients without a server: answer parsing, errors and retries, input expansion,
shared-memory regions, annotation, the async window and the CLI against a closed port."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tritonclient.grpc import InferResult as GrpcInferResult
from tritonclient.utils import InferenceServerException

from gesture_recognition.client import core as client_core
from gesture_recognition.client.clients import (
    AsyncGestureClient,
    FileResult,
    GestureClient,
    backoff_delays,
    bytes_request,
    image_request,
    read_labels_file,
)
from gesture_recognition.client.errors import (
    InvalidInputError,
    ModelNotReadyError,
    RequestTimeoutError,
    ServerError,
    ServerUnavailableError,
    is_retryable,
    translate,
)
from gesture_recognition.client.results import (
    OutputError,
    fallback_labels,
    labels_from_classification,
    parse_outputs,
    probs_size_from_config,
)
from gesture_recognition.labels import load_label_map
from gesture_recognition.pipeline import GestureResult

from .client_answers import (
    LABELS,
    answer,
    gesture_result,
    grpc_result,
    http_result,
)

RESULT_BUILDERS = {"grpc": grpc_result, "http": http_result}


@pytest.mark.parametrize("protocol", RESULT_BUILDERS)
@pytest.mark.parametrize("n_hands", [0, 1, 5])
def test_parse_outputs_from_tritonclient_results(protocol: str, n_hands: int) -> None:
    outputs = answer(n_hands, seed=n_hands)
    result = parse_outputs(RESULT_BUILDERS[protocol](outputs).as_numpy, LABELS)
    assert isinstance(result, GestureResult)
    assert result.gesture == outputs["GESTURE"][0].decode()
    assert result.score == pytest.approx(float(outputs["SCORE"][0]))
    assert result.hand_boxes.shape == (n_hands, 4)
    np.testing.assert_allclose(result.hand_boxes, outputs["HAND_BOXES"], rtol=1e-6)
    np.testing.assert_allclose(result.hand_scores, outputs["HAND_SCORES"], rtol=1e-6)
    assert result.hand_gestures == [g.decode() for g in outputs["HAND_GESTURES"]]
    np.testing.assert_allclose(result.hand_gesture_scores, outputs["HAND_GESTURE_SCORES"])
    np.testing.assert_allclose(result.probabilities, outputs["GESTURE_PROBS"], rtol=1e-6)
    assert result.labels == tuple(LABELS)
    as_dict = result.to_dict()
    assert len(as_dict["hands"]) == n_hands  # type: ignore[arg-type]
    json.dumps(as_dict)  # plain types only


def test_parse_outputs_rejects_a_missing_output() -> None:
    outputs = answer(2)
    del outputs["HAND_SCORES"]
    with pytest.raises(OutputError, match="HAND_SCORES"):
        parse_outputs(outputs.get, LABELS)


def test_parse_outputs_rejects_per_hand_outputs_of_different_lengths() -> None:
    outputs = answer(3)
    outputs["HAND_GESTURES"] = outputs["HAND_GESTURES"][:2]
    with pytest.raises(OutputError, match="disagree"):
        parse_outputs(outputs.get, LABELS)


def test_parse_outputs_rejects_probabilities_that_do_not_match_the_labels() -> None:
    with pytest.raises(OutputError, match="labels"):
        parse_outputs(answer(1).get, LABELS[:-1])


def test_labels_from_classification_orders_by_index() -> None:
    # The extension sorts by probability; names must come back in index order.
    entries = [b"0.9:3:mute", b"0.05:0:no_gesture", b"0.05:2:victory", b"0:1:stop"]
    assert labels_from_classification(entries, 4) == ("no_gesture", "stop", "victory", "mute")


@pytest.mark.parametrize(
    "entries",
    [[b"0.5:0", b"0.5:1"], [b"0.5:0:a", b"0.5:2:c"]],
    ids=["no label file", "missing index"],
)
def test_labels_from_classification_refuses_incomplete_answers(entries: list[bytes]) -> None:
    with pytest.raises(OutputError):
        labels_from_classification(entries, 2)


def test_fallback_labels() -> None:
    assert fallback_labels(len(LABELS)) == tuple(LABELS)
    assert fallback_labels(len(load_label_map("hagrid").classes)) == tuple(
        load_label_map("hagrid").classes
    )
    assert fallback_labels(2) == ("class_0", "class_1")


def test_read_labels_file(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("no_gesture\nstop\n\n", encoding="utf-8")
    assert read_labels_file(path) == ("no_gesture", "stop")


@pytest.mark.parametrize(
    "config",
    [
        {"output": [{"name": "GESTURE", "dims": ["1"]}, {"name": "GESTURE_PROBS", "dims": ["7"]}]},
        {"output": [{"name": "GESTURE_PROBS", "dims": [7], "label_filename": ""}]},
    ],
    ids=["grpc json", "http json"],
)
def test_probs_size_from_config(config: dict[str, object]) -> None:
    assert probs_size_from_config(config) == 7


def test_probs_size_from_config_without_the_output() -> None:
    with pytest.raises(OutputError):
        probs_size_from_config({"output": [{"name": "GESTURE", "dims": [1]}]})


# ----------------------------------------------------------------- requests


def test_image_request_validates_locally() -> None:
    assert image_request(np.zeros((20, 30, 3), np.uint8)).array.shape == (20, 30, 3)
    for bad in (np.zeros((20, 30), np.uint8), np.zeros((20, 30, 3), np.float32), "photo"):
        with pytest.raises(InvalidInputError):
            image_request(bad)


def test_bytes_request() -> None:
    request = bytes_request(b"\xff\xd8abc")
    assert request.datatype == "BYTES" and request.array.shape == (1,)
    assert request.array[0] == b"\xff\xd8abc"
    with pytest.raises(InvalidInputError, match="empty"):
        bytes_request(b"")


# ----------------------------------------------------------------- errors

URL = "127.0.0.1:8001"


def grpc_error(status: str, message: str) -> InferenceServerException:
    return InferenceServerException(msg=message, status=f"StatusCode.{status}")


def test_invalid_argument_keeps_the_server_message_and_is_not_retried() -> None:
    for exc in (
        grpc_error("INVALID_ARGUMENT", "IMAGE is 4x4; each side must be at least 8 pixels"),
        InferenceServerException(msg="IMAGE is 4x4; each side must be at least 8", status="400"),
    ):
        err = translate(exc, URL, "grpc", "gesture_ensemble")
        assert isinstance(err, InvalidInputError)
        assert "IMAGE is 4x4" in str(err)
        assert not is_retryable(exc)


@pytest.mark.parametrize(
    "exc",
    [
        grpc_error("UNAVAILABLE", "failed to connect to all addresses"),
        InferenceServerException(msg="unavailable", status="503"),
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(104, "Connection reset by peer"),
    ],
)
def test_a_dead_server_is_retried_and_named(exc: Exception) -> None:
    assert is_retryable(exc)
    err = translate(exc, URL, "grpc", "gesture_ensemble")
    assert isinstance(err, ServerUnavailableError)
    assert URL in str(err) and "grpc" in str(err) and "gesture-serve" in str(err)


def test_model_errors_and_timeouts() -> None:
    not_found = translate(grpc_error("NOT_FOUND", "unknown model"), URL, "grpc", "m")
    assert isinstance(not_found, ModelNotReadyError) and "'m'" in str(not_found)
    unloaded = translate(
        grpc_error("UNAVAILABLE", "Request for unknown model: 'm' has no available versions"),
        URL,
        "grpc",
        "m",
    )
    assert isinstance(unloaded, ModelNotReadyError)
    for exc in (grpc_error("DEADLINE_EXCEEDED", "Deadline Exceeded"), TimeoutError("timed out")):
        assert isinstance(translate(exc, URL, "grpc", "m"), RequestTimeoutError)
        assert not is_retryable(exc)
    internal = translate(grpc_error("INTERNAL", "step failed"), URL, "grpc", "m")
    assert isinstance(internal, ServerError) and "step failed" in str(internal)


def test_backoff_doubles_and_is_capped() -> None:
    assert backoff_delays(4, 0.5, cap_s=3.0) == [0.5, 1.0, 2.0, 3.0]
    assert backoff_delays(0, 0.5) == []


def _failing(errors: list[Exception], value: str = "ok") -> tuple[Callable[[], str], list[int]]:
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return value

    return fn, calls


def test_sync_retries_unavailable_with_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    client = GestureClient(URL, retries=3, backoff=0.1, labels=LABELS)
    down = grpc_error("UNAVAILABLE", "failed to connect to all addresses")
    fn, calls = _failing([down, down])
    assert client._call(fn, "m") == "ok"
    assert len(calls) == 3 and slept == [0.1, 0.2]

    fn, calls = _failing([down] * 10)
    with pytest.raises(ServerUnavailableError, match="gave up after 4 attempts"):
        client._call(fn, "m")
    assert len(calls) == 4  # the first try and three retries

    fn, calls = _failing([grpc_error("INVALID_ARGUMENT", "bad photo")])
    with pytest.raises(InvalidInputError, match="bad photo"):
        client._call(fn, "m")
    assert len(calls) == 1
    client.close()


def test_async_retries_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def no_sleep(delay: float) -> None:
        slept.append(delay)

    async def run() -> int:
        client = AsyncGestureClient(URL, protocol="http", retries=2, backoff=0.5, labels=LABELS)
        attempts = 0

        async def flaky() -> str:
            nonlocal attempts
            attempts += 1
            if attempts < 3:
                raise ConnectionRefusedError(111, "Connection refused")
            return "ok"

        monkeypatch.setattr(asyncio, "sleep", no_sleep)
        assert await client._call(flaky, "m") == "ok"
        await client.close()
        return attempts

    assert asyncio.run(run()) == 3
    assert slept == [0.5, 1.0]


class FakeTriton:
    """Stands in for tritonclient's sync client: forgets shared memory regions on demand,
    refuses a name it has (``already in manager``), holds a region for ``busy[name]`` more
    unregister calls (``currently in use``) and fails ``unavailable`` infer calls first; the
    messages are tritonserver 2.51's."""

    def __init__(self) -> None:
        self.known: set[str] = set()
        self.registrations = 0
        self.unregister_calls = 0
        self.busy: dict[str, int] = {}
        self.unavailable = 0
        self.seen: list[bytes] = []

    def register_system_shared_memory(self, name: str, key: str, byte_size: int) -> None:
        if name in self.known:
            raise InferenceServerException(
                msg=f"shared memory region '{name}' already in manager",
                status="StatusCode.ALREADY_EXISTS",
            )
        self.known.add(name)
        self.registrations += 1

    def unregister_system_shared_memory(self, name: str = "") -> None:
        self.unregister_calls += 1
        if self.busy.get(name, 0) > 0:
            self.busy[name] -= 1
            raise InferenceServerException(
                msg=f"Cannot unregister shared memory region '{name}', it is currently in use.",
                status="StatusCode.INTERNAL",
            )
        self.known.discard(name)

    def infer(self, model: str, inputs: list, outputs: list, **kwargs: object) -> GrpcInferResult:
        if self.unavailable:
            self.unavailable -= 1
            raise grpc_error("UNAVAILABLE", "Socket closed")
        region = inputs[0]._get_tensor().parameters["shared_memory_region"].string_param
        if region not in self.known:
            raise InferenceServerException(
                msg=f"Unable to find shared memory region: '{region}'",
                status="StatusCode.NOT_FOUND",
            )
        return grpc_result(answer(2))

    def close(self) -> None:
        pass


def test_shared_memory_is_registered_again_after_a_silent_server_restart() -> None:
    client = GestureClient(URL, shared_memory="system", labels=LABELS, retries=0)
    fake = FakeTriton()
    client._client = fake
    photo = np.zeros((48, 64, 3), np.uint8)
    assert client.classify_image(photo).hand_boxes.shape == (2, 4)
    assert fake.registrations == 1
    client.classify_image(photo)
    assert fake.registrations == 1  # registered once, reused
    fake.known.clear()  # the server restarted between two requests
    assert client.classify_image(photo).hand_boxes.shape == (2, 4)
    assert fake.registrations == 2
    client.close()
    assert not fake.known  # unregistered on close
    assert not [
        f for f in Path("/dev/shm").iterdir() if f.name.startswith(f"gesture_client_{os.getpid()}_")
    ]


def _shm_client(monkeypatch: pytest.MonkeyPatch) -> tuple[GestureClient, FakeTriton]:
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    client = GestureClient(URL, shared_memory="system", labels=LABELS, retries=2)
    fake = FakeTriton()
    client._client = fake
    return client, fake


def test_a_transient_error_keeps_the_registered_regions_usable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """UNAVAILABLE without a restart: the retry registers again, the server says it has the
    region, and the request goes through instead of failing on ``already in manager``."""
    client, fake = _shm_client(monkeypatch)
    photo = np.zeros((48, 64, 3), np.uint8)
    client.classify_image(photo)
    fake.unavailable = 1
    assert client.classify_image(photo).hand_boxes.shape == (2, 4)
    assert fake.registrations == 1
    client.close()
    assert not fake.known


def test_closing_waits_while_the_server_still_holds_a_region(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, fake = _shm_client(monkeypatch)
    client.classify_image(np.zeros((48, 64, 3), np.uint8))
    (name,) = fake.known
    fake.busy[name] = 3  # the answered request has not released its input yet
    client.close()
    assert not fake.known
    assert fake.unregister_calls == 4


def test_closing_unregisters_a_region_whose_registration_reply_was_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, fake = _shm_client(monkeypatch)
    client.classify_image(np.zeros((48, 64, 3), np.uint8))
    assert client._pool is not None
    for region in client._pool.regions():
        region.registered = False  # e.g. the register call timed out after the server did it
    client.close()
    assert not fake.known


def test_a_region_the_server_never_releases_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, fake = _shm_client(monkeypatch)
    client.classify_image(np.zeros((48, 64, 3), np.uint8))
    (name,) = fake.known
    fake.busy[name] = 10**6
    with pytest.warns(RuntimeWarning, match="still held shared memory region"):
        client.close()
    assert fake.unregister_calls == client_core.UNREGISTER_TRIES
    assert not [  # the local memory is freed all the same
        f for f in Path("/dev/shm").iterdir() if f.name.startswith(f"gesture_client_{os.getpid()}_")
    ]


# ----------------------------------------------------------------- async window


class FakeAsyncClient(AsyncGestureClient):
    """classify_path answers after a random delay and records how many run at once."""

    def __init__(self, fail: dict[str, Exception] | None = None):
        super().__init__(URL, labels=LABELS, max_in_flight=16)
        self.fail = fail or {}
        self.running = 0
        self.peak = 0

    async def classify_path(self, path: str | Path, encoded: bool = True) -> GestureResult:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(random.uniform(0, 0.01))
            if Path(path).name in self.fail:
                raise self.fail[Path(path).name]
            return gesture_result(1, 100, 100)
        finally:
            self.running -= 1


def _collect(client: FakeAsyncClient, paths: list[Path], **kwargs: object) -> list[FileResult]:
    async def run() -> list[FileResult]:
        async with client:
            return [r async for r in client.classify_many(paths, **kwargs)]  # type: ignore[arg-type]

    return asyncio.run(run())


def test_classify_many_keeps_order_within_the_window() -> None:
    random.seed(0)
    paths = [Path(f"{i}.jpg") for i in range(30)]
    client = FakeAsyncClient()
    results = _collect(client, paths, concurrency=4)
    assert [r.path for r in results] == paths
    assert all(r.ok for r in results)
    assert 1 < client.peak <= 4


def test_classify_many_as_completed_yields_every_file() -> None:
    random.seed(1)
    paths = [Path(f"{i}.jpg") for i in range(30)]
    client = FakeAsyncClient()
    results = _collect(client, paths, concurrency=5, ordered=False)
    assert sorted(r.path.name for r in results) == sorted(p.name for p in paths)
    assert client.peak <= 5


def test_classify_many_reports_file_errors_and_stops_on_a_dead_server() -> None:
    paths = [Path(f"{i}.jpg") for i in range(10)]
    bad = FakeAsyncClient(fail={"3.jpg": InvalidInputError("not a photo")})
    results = _collect(bad, paths, concurrency=3)
    assert [r.ok for r in results] == [i != 3 for i in range(10)]
    assert isinstance(results[3].error, InvalidInputError)

    down = FakeAsyncClient(fail={"4.jpg": ServerUnavailableError("down")})
    with pytest.raises(ServerUnavailableError):
        _collect(down, paths, concurrency=3)
    assert down.running == 0  # the tasks still in flight were cancelled


