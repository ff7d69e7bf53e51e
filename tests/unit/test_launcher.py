"""gesture-serve without starting a server: command line, repository handling, user errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gesture_recognition.serving import launcher
from gesture_recognition.serving.launcher import ServerError, TritonDistribution, TritonServer


def _command(server: TritonServer) -> list[str]:
    return server.command(Path("/backends"), Path("/bin/tritonserver"))


def test_binds_localhost_with_model_control_off_by_default(tmp_path: Path) -> None:
    cmd = _command(TritonServer(tmp_path, http_port=1, grpc_port=2, metrics_port=3))
    for flag in ("--http-address", "--grpc-address", "--metrics-address"):
        assert f"{flag}=127.0.0.1" in cmd
    assert {"--http-port=1", "--grpc-port=2", "--metrics-port=3"} <= set(cmd)
    assert "--model-control-mode=none" in cmd
    assert "--allow-gpu-metrics=false" in cmd
    assert f"--model-repository={tmp_path.resolve()}" in cmd


def test_model_control_and_address_options(tmp_path: Path) -> None:
    server = TritonServer(tmp_path, address="0.0.0.0", allow_model_control=True)
    cmd = _command(server)
    assert "--model-control-mode=explicit" in cmd and "--load-model=*" in cmd
    assert "--http-address=0.0.0.0" in cmd
    # Clients still reach a server bound to every interface through localhost.
    assert server.http_url == "127.0.0.1:8000"
    assert server.grpc_url == "127.0.0.1:8001"
    assert server.metrics_url == "http://127.0.0.1:8002/metrics"


def test_cli_options_use_triton_names() -> None:
    args = launcher.parse_args(
        ["--http-port", "9000", "--grpc-port", "9001", "--metrics-port", "9002"]
    )
    assert (args.http_port, args.grpc_port, args.metrics_port) == (9000, 9001, 9002)
    assert args.address == "127.0.0.1" and not args.allow_model_control
    # No repository asked for: gesture-serve serves default_repository_dir(args.label_map).
    assert args.model_repository is None and args.label_map is None
    assert launcher.parse_args(["--label-map", "hagrid"]).label_map == "hagrid"
    with pytest.raises(SystemExit):
        launcher.parse_args(["--http-port", "70000"])


def test_distribution_and_backend_dir(tmp_path: Path) -> None:
    dist = TritonDistribution.find()
    assert os.access(dist.server, os.X_OK)
    backends = dist.backend_dir(tmp_path)
    python = backends / "python"
    assert sorted(p.name for p in python.iterdir()) == [
        "libtriton_python.so",
        "triton_python_backend_stub",
        "triton_python_backend_utils.py",
    ]
    assert (python / "triton_python_backend_stub").resolve() == dist.stub.resolve()
    assert dist.backend_dir(tmp_path) == backends  # idempotent


def test_missing_models_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = launcher.main(
        ["--model-repository", str(tmp_path / "repo"), "--models-dir", str(tmp_path / "none")]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "lacks hand_detector.onnx" in err and "Traceback" not in err
    assert not (tmp_path / "repo").exists()


def test_start_refuses_a_missing_repository(tmp_path: Path) -> None:
    with pytest.raises(ServerError, match="no model repository"):
        TritonServer(tmp_path / "nothing").start()


def test_start_refuses_a_busy_port(tmp_path: Path) -> None:
    import socket

    (tmp_path / "m").mkdir()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        server = TritonServer(
            tmp_path,
            http_port=port,
            grpc_port=launcher.free_port(),
            metrics_port=launcher.free_port(),
        )
        with pytest.raises(ServerError, match=f"HTTP port {port}"):
            server.start()
