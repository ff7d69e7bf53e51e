"""``gesture-web`` refusals that need no server: one line and an exit code, no traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from gesture_recognition.client.web import SECURITY_HEADERS, create_app, static_file

CLI = Path(sys.executable).with_name("gesture-web")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=60)


def test_no_triton_exits_3_with_one_line() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run("--port", "0", "--triton-grpc", f"127.0.0.1:{port}")
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1 and "no Triton server answers" in result.stderr
    assert result.stdout == ""


def test_bad_port_exits_2() -> None:
    result = run("--port", "70000")
    assert result.returncode == 2 and "--port must be 0-65535" in result.stderr


def test_page_files_are_packaged() -> None:
    page = static_file("index.html").decode()
    for ref in ('src="/app.js"', 'href="/style.css"', 'id="gesture"', 'id="fps"'):
        assert ref in page
    assert b"/api/classify" in static_file("app.js")
    # The page uses no inline script or style, so the policy can forbid them.
    assert "<script>" not in page and "style=" not in page
    assert "'unsafe-inline'" not in SECURITY_HEADERS["Content-Security-Policy"]


def test_app_routes() -> None:
    app = create_app("127.0.0.1:1", allowed_hosts=["localhost"])
    paths = {route.path for route in app.routes}
    assert paths == {"/", "/app.js", "/style.css", "/api/health", "/api/classify"}
