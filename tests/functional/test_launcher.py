"""gesture-serve as a user runs it: builds a missing repository, gets ready, stops cleanly."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import tritonclient.http as httpclient

from gesture_recognition.serving.launcher import ServerError, TritonServer, free_port

from .conftest import RunningServer
from .process_output import finish

pytestmark = pytest.mark.functional


def _ready(http_port: int) -> bool:
    try:
        url = f"http://127.0.0.1:{http_port}/v2/health/ready"
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.mark.parametrize(
    ("signum", "idle_http_client"),
    [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGTERM, True)],
    ids=["SIGTERM", "SIGINT", "SIGTERM-with-idle-HTTP-client"],
)
def test_gesture_serve_builds_serves_and_stops(
    triton_server: RunningServer, tmp_path: Path, signum: signal.Signals, idle_http_client: bool
) -> None:
    repository = tmp_path / "model_repository"
    ports = [free_port() for _ in range(3)]
    cli = Path(sys.executable).with_name("gesture-serve")
    process = subprocess.Popen(
        [
            str(cli),
            "--model-repository",
            str(repository),
            "--models-dir",
            str(triton_server.models_dir),
            "--http-port",
            str(ports[0]),
            "--grpc-port",
            str(ports[1]),
            "--metrics-port",
            str(ports[2]),
            "--quiet",
            "--startup-timeout",
            "180",
            "--exit-timeout-secs",
            # Unloading the four Python models takes 2.5-3.5 s on a loaded 2-core host; with
            # an idle HTTP client Triton waits out the whole timeout, so keep that case short.
            "3" if idle_http_client else "15",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Ready is what the launcher says once Triton answers on /v2/health/ready; a launcher
        # that never gets there gives up after its own --startup-timeout and closes stdout.
        lines = []
        for line in process.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if line.startswith("gesture-serve: ready"):
                break
        assert lines and lines[-1].startswith("gesture-serve: ready"), "".join(lines)
        assert _ready(ports[0])
        if idle_http_client:
            # A client that keeps its keep-alive connection open after a request.
            client = httpclient.InferenceServerClient(f"127.0.0.1:{ports[0]}")
            assert client.is_server_ready()
        assert (repository / "gesture_ensemble" / "config.pbtxt").is_file()
        process.send_signal(signum)
        rest, err = finish(process, timeout=60)
        out = "".join(lines) + rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if idle_http_client:
        assert "HTTP clients kept connections open" in out
        client.close()
    assert process.returncode == 0, err
    assert "building the cpu model repository" in out
    assert "ready" in out and out.rstrip().endswith("gesture-serve: stopped")
    assert "Traceback" not in err
    assert not _ready(ports[0])


def test_a_server_that_dies_reports_its_log(triton_server: RunningServer, tmp_path: Path) -> None:
    repository = tmp_path / "broken"
    shutil.copytree(triton_server.repository / "image_decoder", repository / "image_decoder")
    (repository / "image_decoder" / "config.pbtxt").write_text('name: "image_decoder"\nbogus {\n')
    server = TritonServer(
        repository,
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        build_dir=tmp_path,
        startup_timeout_s=120,
    )
    with pytest.raises(ServerError, match="exited with code") as caught:
        server.start()
    assert "image_decoder" in str(caught.value)
    assert server.exit_code() is not None
