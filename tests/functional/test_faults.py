"""Faults under load, against ``gesture-serve`` as users run it (a process of its own).

- A Python-backend stub killed under load: Triton 2.51 does not restart it (the model stays
  "ready" and fails every request with INTERNAL "Stub process ... is not healthy"), so
  gesture-serve's watchdog restarts the server; requests fail cleanly meanwhile, none hangs.
- The server restarted under load: ``GestureClient`` retries with backoff across the gap.
- SIGTERM with requests in flight: they are answered before the server exits.
- Limits given as gesture-serve flags reach the served configs.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from gesture_recognition.client.clients import GestureClient
from gesture_recognition.client.errors import GestureClientError, InvalidInputError
from gesture_recognition.images import load_image
from gesture_recognition.serving.launcher import Endpoints, free_port
from gesture_recognition.serving.processes import stub_processes
from gesture_recognition.serving.triton_251 import orphaned_stubs
from tests.conftest import sample_photos

from .conftest import ServingModels

pytestmark = pytest.mark.functional

MAX_PIXELS = 500_000  # a 640x480 sample passes, 1000x1000 does not
MAX_HANDS = 2
MAX_IMAGE_BYTES = 200_000  # the samples are well below; the oversized blob above
READY_TIMEOUT_S = 180.0


class Served:
    """A ``gesture-serve`` process, its ports and the lines it printed."""

    def __init__(self, repository: Path, models_dir: Path) -> None:
        self.repository, self.models_dir = repository, models_dir
        self.endpoints = Endpoints("127.0.0.1", free_port(), free_port(), free_port())
        self.grpc_url, self.http_url = self.endpoints.grpc_url, self.endpoints.http_url
        self.lines: queue.Queue[str] = queue.Queue()
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        cli = Path(sys.executable).with_name("gesture-serve")
        self.process = subprocess.Popen(
            [
                str(cli),
                "--model-repository",
                str(self.repository),
                "--models-dir",
                str(self.models_dir),
                "--http-port",
                str(self.endpoints.http_port),
                "--grpc-port",
                str(self.endpoints.grpc_port),
                "--metrics-port",
                str(self.endpoints.metrics_port),
                "--max-pixels",
                str(MAX_PIXELS),
                "--max-hands",
                str(MAX_HANDS),
                "--max-image-bytes",
                str(MAX_IMAGE_BYTES),
                "--exit-timeout-secs",
                "10",
                "--quiet",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        stream = self.process.stdout
        assert stream is not None

        def pump() -> None:
            for line in stream:
                self.lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        self.wait_for("gesture-serve: ready", READY_TIMEOUT_S)

    def wait_for(self, text: str, timeout_s: float) -> list[str]:
        """Lines up to and including the first that contains ``text``."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                assert self.process is not None
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            seen.append(line)
            if text in line:
                return seen
        raise AssertionError(f"gesture-serve never printed {text!r}; it printed:\n{''.join(seen)}")

    def triton_pid(self) -> int:
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        (pid,) = [int(p) for p in children.read_text().split()]
        return pid

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


@pytest.fixture(scope="module")
def served(
    serving_models: ServingModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    server = Served(tmp_path_factory.mktemp("faults") / "repo", serving_models.path)
    server.start()
    try:
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            server.stop(signal.SIGTERM)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return load_image(sample_photos()[0])


def _infer(url: str, image: np.ndarray, timeout_s: float = 30.0) -> str:
    client = grpcclient.InferenceServerClient(url)
    try:
        tensor = grpcclient.InferInput("IMAGE", list(image.shape), "UINT8")
        tensor.set_data_from_numpy(image)
        answer = client.infer("gesture_ensemble", [tensor], client_timeout=timeout_s)
        return answer.as_numpy("GESTURE")[0].decode()
    finally:
        client.close()


class Load:
    """Threads sending the photo over gRPC until stopped; every outcome is recorded."""

    def __init__(self, url: str, image: np.ndarray, threads: int = 3) -> None:
        self.url, self.image = url, image
        self.outcomes: list[tuple[float, str | None, float]] = []  # (t, error, seconds)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                _infer(self.url, self.image)
                error = None
            except InferenceServerException as exc:
                error = f"{exc.status()} {exc.message()}"
            self.outcomes.append((start, error, time.monotonic() - start))
            if error is not None:
                time.sleep(0.05)  # a refused connection comes back at once

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


def test_limits_from_gesture_serve_flags(served: Served, photo: np.ndarray) -> None:
    limits = {}
    for model in ("image_decoder", "hand_crops"):
        text = (served.repository / model / "config.pbtxt").read_text()
        limits[model] = text
    assert f'string_value: "{MAX_PIXELS}"' in limits["image_decoder"]
    assert f'string_value: "{MAX_HANDS}"' in limits["hand_crops"]
    assert _infer(served.grpc_url, photo)
    big = np.zeros((1000, 1000, 3), np.uint8)
    with pytest.raises(InferenceServerException) as caught:
        _infer(served.grpc_url, big)
    assert str(caught.value.status()) == "StatusCode.INVALID_ARGUMENT"
    assert f"limit of {MAX_PIXELS}" in caught.value.message()
    assert f'string_value: "{MAX_IMAGE_BYTES}"' in limits["image_decoder"]
    blob = np.array([b"\xff" * (MAX_IMAGE_BYTES + 1)], dtype=np.object_)
    client = grpcclient.InferenceServerClient(served.grpc_url)
    try:
        tensor = grpcclient.InferInput("IMAGE_BYTES", [1], "BYTES")
        tensor.set_data_from_numpy(blob)
        with pytest.raises(InferenceServerException) as caught:
            client.infer("gesture_ensemble_bytes", [tensor], client_timeout=30)
    finally:
        client.close()
    assert str(caught.value.status()) == "StatusCode.INVALID_ARGUMENT"
    assert f"more than the limit of {MAX_IMAGE_BYTES}" in caught.value.message()


def test_a_killed_stub_fails_requests_cleanly_and_the_model_comes_back(
    served: Served, photo: np.ndarray
) -> None:
    triton = served.triton_pid()
    stubs = {model: pid for pid, model in stub_processes(triton).items()}
    assert "hand_crops" in stubs, stubs
    with Load(served.grpc_url, photo) as load:
        time.sleep(2)
        killed_at = time.monotonic()
        os.kill(stubs["hand_crops"], signal.SIGKILL)
        lines = served.wait_for("ready again after a restart", READY_TIMEOUT_S)
        restarted_at = time.monotonic()
        time.sleep(3)
    assert any("hand_crops died" in line for line in lines), "".join(lines)
    before = [o for o in load.outcomes if o[0] < killed_at - 0.5]
    after = [o for o in load.outcomes if o[0] > restarted_at]
    failed = [o for o in load.outcomes if o[1] is not None]
    assert before and all(o[1] is None for o in before)
    # The model came back: every request sent after the restart was answered.
    assert after and all(o[1] is None for o in after), after
    # Failures were clean errors, not hangs (the client timeout is 30 s).
    assert all(o[2] < 30 for o in failed), failed
    # The dead stub's own error, then what a restarting server answers.
    clean = ("not healthy", "UNAVAILABLE", "has no available versions")
    assert all(any(c in o[1] for c in clean) for o in failed), failed
    new_triton = served.triton_pid()
    assert new_triton != triton
    assert "hand_crops" in stub_processes(new_triton).values()
    # The restart killed the old server; none of its stubs may outlive it (Triton 2.51 leaves
    # one behind when a request was inside it, gesture-serve stops such leftovers).
    assert orphaned_stubs(served.repository) == []


def test_gesture_client_retries_across_a_server_restart(served: Served, photo: np.ndarray) -> None:
    """gRPC and HTTP clients classify in a loop while gesture-serve is stopped (SIGTERM, under
    load) and started again on the same ports: no call fails, only waits."""
    results: dict[str, list[str]] = {"grpc": [], "http": []}
    errors: list[str] = []
    stop = threading.Event()

    def classify(protocol: str, url: str) -> None:
        # 0.5 + 1 + 2 + 4 + 8 + 8 s of backoff: more than a restart takes on a busy 2-core host.
        with GestureClient(url, protocol=protocol, retries=6, backoff=0.5, timeout=30) as client:
            while not stop.is_set():
                try:
                    results[protocol].append(client.classify_image(photo).gesture)
                except GestureClientError as exc:
                    errors.append(f"{protocol} {type(exc).__name__}: {exc}")

    workers = [
        threading.Thread(target=classify, args=("grpc", served.grpc_url), daemon=True),
        threading.Thread(target=classify, args=("http", served.http_url), daemon=True),
    ]
    for worker in workers:
        worker.start()
    time.sleep(2)
    before = {k: len(v) for k, v in results.items()}
    assert served.stop(signal.SIGTERM) == 0
    served.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(len(results[k]) <= before[k] + 3 for k in results):
        time.sleep(0.5)
    stop.set()
    for worker in workers:
        worker.join(timeout=90)
    assert all(before.values()), before
    for protocol, answers in results.items():
        assert len(answers) > before[protocol] + 3, (protocol, errors)
        assert len(set(answers)) == 1, protocol
    assert errors == [], errors


def test_invalid_input_is_not_retried(served: Served) -> None:
    """A refused request fails at once with the server's reason, however many retries."""
    with GestureClient(served.grpc_url, retries=5, backoff=5.0) as client:
        start = time.monotonic()
        with pytest.raises(InvalidInputError, match="not a readable image"):
            client.classify_bytes(b"definitely not a photo")
        assert time.monotonic() - start < 5.0


def test_sigterm_answers_in_flight_requests_before_exit(served: Served, photo: np.ndarray) -> None:
    client = grpcclient.InferenceServerClient(served.grpc_url)
    outcomes: queue.Queue[object] = queue.Queue()
    n = 8
    for _ in range(n):
        tensor = grpcclient.InferInput("IMAGE", list(photo.shape), "UINT8")
        tensor.set_data_from_numpy(photo)
        client.async_infer(
            "gesture_ensemble",
            [tensor],
            callback=lambda result, error: outcomes.put(error or result),
            client_timeout=60,
        )
    time.sleep(0.2)  # sent, and most of them still queued behind the 2 cores
    assert served.stop(signal.SIGTERM, timeout_s=90) == 0
    answers = [outcomes.get(timeout=30) for _ in range(n)]
    client.close()
    errors = [f"{a.status()} {a.message()}" for a in answers if isinstance(a, Exception)]
    assert errors == [], errors
    assert outcomes.empty()


def test_stubs_left_by_a_killed_server_are_stopped(served: Served, photo: np.ndarray) -> None:
    """tritonserver SIGKILLed under load (an OOM kill, an operator): gesture-serve exits with
    an error for its supervisor to restart it, and first stops the stubs the dead server left
    behind (Triton 2.51 leaves the one a request was inside running for good). Last in this
    module: the SIGTERM test before it has stopped the module's server, so it starts one."""
    if served.process is None or served.process.poll() is not None:
        served.start()
    triton = served.triton_pid()
    with Load(served.grpc_url, photo):
        time.sleep(2)
        os.kill(triton, signal.SIGKILL)
        served.wait_for("tritonserver exited", READY_TIMEOUT_S)
    assert served.process is not None and served.process.wait(timeout=60) == 1
    assert orphaned_stubs(served.repository) == []
