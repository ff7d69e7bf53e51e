"""serving/triton_251.py: what gesture-serve does about Triton 2.51, without a server: the
orphaned stubs it reaps and the drain it waits for (both measured against a live server in
tests/functional/test_faults.py)."""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gesture_recognition.serving import triton_251
from gesture_recognition.serving.processes import STUB_BINARY


def _fake_stub(tmp_path: Path, repository: Path, model: str) -> subprocess.Popen[bytes]:
    """A process that looks like a Triton stub of ``model`` (binary name, model.py argument)
    and whose parent is this test, not a tritonserver: what a killed server leaves behind.
    It is Python under the stub's name, running a model.py that only sleeps."""
    binary = tmp_path / "bin" / STUB_BINARY
    if not binary.exists():
        binary.parent.mkdir()
        binary.symlink_to(os.path.realpath(sys.executable))
    model_py = repository / model / "1" / "model.py"
    model_py.parent.mkdir(parents=True)
    model_py.write_text("import time\ntime.sleep(60)\n")
    return subprocess.Popen([str(binary), str(model_py)])


def test_orphaned_stubs_of_the_repository_are_found_and_stopped(tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    other = tmp_path / "other_repo"
    mine = _fake_stub(tmp_path, repository, "gesture_classifier")
    theirs = _fake_stub(tmp_path, other, "gesture_classifier")
    try:
        deadline = time.monotonic() + 10
        while mine.pid not in triton_251.orphaned_stubs(repository) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert triton_251.orphaned_stubs(repository) == [mine.pid]
        assert triton_251.reap_orphaned_stubs(repository) == [mine.pid]
        assert mine.wait(timeout=10) == -signal.SIGKILL
        assert theirs.poll() is None  # another repository's stub is not touched
        assert triton_251.orphaned_stubs(repository) == []
    finally:
        for process in (mine, theirs):
            process.kill()
            process.wait()


class _Metrics:
    """A stand-in for Triton's ``/metrics``: the counters a test sets."""

    def __init__(self) -> None:
        self.executions, self.pending = 0, 0
        metrics = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = (
                    f'nv_inference_exec_count{{model="a",version="1"}} {metrics.executions}\n'
                    f'nv_inference_exec_count{{model="b",version="1"}} 2\n'
                    f'nv_inference_pending_request_count{{model="a",version="1"}} '
                    f"{metrics.pending}\n"
                ).encode()
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/metrics"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def metrics() -> Iterator[_Metrics]:
    fake = _Metrics()
    yield fake
    fake.server.shutdown()


def test_activity_sums_every_model(metrics: _Metrics) -> None:
    metrics.executions, metrics.pending = 5, 1
    assert triton_251.activity(metrics.url) == (7.0, 1.0)
    assert triton_251.activity("http://127.0.0.1:9/metrics") is None


def test_drain_waits_until_no_step_runs(metrics: _Metrics) -> None:
    stop = threading.Event()

    def busy_for(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not stop.is_set():
            metrics.executions += 1
            time.sleep(0.02)

    worker = threading.Thread(target=busy_for, args=(0.6,))
    worker.start()
    started = time.monotonic()
    assert triton_251.drain(metrics.url, lambda: True, timeout_s=10, quiet_s=0.3)
    waited = time.monotonic() - started
    stop.set()
    worker.join()
    # Quiet only after the steps stopped running, and then for quiet_s.
    assert 0.8 <= waited < 5


def test_drain_gives_up_under_steady_load_or_pending_requests(metrics: _Metrics) -> None:
    metrics.pending = 1
    assert not triton_251.drain(metrics.url, lambda: True, timeout_s=0.5, quiet_s=0.1)
    metrics.pending = 0
    assert not triton_251.drain(metrics.url, lambda: False, timeout_s=5, quiet_s=0.1)
