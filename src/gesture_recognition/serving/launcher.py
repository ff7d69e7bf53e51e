"""``TritonServer``, a context manager around the local ``tritonserver`` (the binary of the
``nvidia-pytriton`` wheel, ``serving.pytriton_binary``), and ``gesture-serve``, its command line.

The server starts the way pytriton starts it (its bundled libraries on ``LD_LIBRARY_PATH``, the
Python stub matching this interpreter in the backend directory, this environment's ``bin`` first
on ``PATH`` so the stub runs with the same packages), is ready when ``/v2/health/ready`` says so
and stops cleanly; what Triton 2.51 needs beyond that is in ``serving.triton_251``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from gesture_recognition.arguments import positive_int
from gesture_recognition.artifacts import models_with_label_map, shipped_models_dir
from gesture_recognition.serving import triton_251
from gesture_recognition.serving.build import default_repository_dir, ensure_repository
from gesture_recognition.serving.processes import stub_processes
from gesture_recognition.serving.pytriton_binary import ServerError, TritonDistribution

DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_HTTP_PORT = 8000
DEFAULT_GRPC_PORT = 8001
DEFAULT_METRICS_PORT = 8002
DEFAULT_STARTUP_TIMEOUT_S = 180.0
# How long a stop waits for in-flight requests. Triton spends it first on open HTTP client
# connections (idle keep-alive ones included) and only then on the models, so a client that
# keeps its connection open delays a stop by this much and makes Triton exit with code 1.
DEFAULT_EXIT_TIMEOUT_S = 20
# Room for a 640x480 photo and a batch of crops without growing the region on each request.
PYTHON_SHM_BYTES = 16 * 1024 * 1024
LOG_TAIL_LINES = 40
LOG_ERROR_LINES = 20


def default_build_dir() -> Path:
    return shipped_models_dir().parent / "build"


def free_port(address: str = DEFAULT_ADDRESS) -> int:
    """A TCP port that is free now (another process may take it before the server does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def _port_in_use(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return True
    return False


def _die_with_parent() -> None:
    # If the launcher is killed outright, the server must not linger holding the ports.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass(frozen=True)
class Endpoints:
    """Where a Triton answers: one host, its HTTP, gRPC and metrics ports (Triton's defaults),
    as tritonclient takes them (``host:port``, no scheme) and ``/metrics`` as a URL."""

    host: str
    http_port: int = DEFAULT_HTTP_PORT
    grpc_port: int = DEFAULT_GRPC_PORT
    metrics_port: int = DEFAULT_METRICS_PORT

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"


class TritonServer:
    """A running ``tritonserver`` on a model repository.

    ``with TritonServer(repo, http_port=..., grpc_port=..., metrics_port=...) as server:``
    starts it, waits until ``/v2/health/ready`` answers 200 and stops it on exit.

    The server gets SIGTERM when the thread that started it ends (Linux parent-death signal,
    so a killed launcher leaves no server behind): start it from a thread that outlives it.
    """

    def __init__(
        self,
        model_repository: str | Path,
        http_port: int = DEFAULT_HTTP_PORT,
        grpc_port: int = DEFAULT_GRPC_PORT,
        metrics_port: int = DEFAULT_METRICS_PORT,
        address: str = DEFAULT_ADDRESS,
        allow_model_control: bool = False,
        startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S,
        build_dir: str | Path | None = None,
        echo: bool = False,
        log_verbose: int = 0,
        exit_timeout_s: int = DEFAULT_EXIT_TIMEOUT_S,
        extra_args: Sequence[str] = (),
    ):
        self.model_repository = Path(model_repository).resolve()
        self.http_port, self.grpc_port, self.metrics_port = http_port, grpc_port, metrics_port
        self.address = address
        self.allow_model_control = allow_model_control
        self.startup_timeout_s = startup_timeout_s
        self.build_dir = Path(build_dir) if build_dir is not None else default_build_dir()
        self.echo = echo
        self.log_verbose = log_verbose
        self.exit_timeout_s = exit_timeout_s
        # Set when a stop had to wait for HTTP clients that kept their connections open.
        self.waited_for_http_clients = False
        self.extra_args = tuple(extra_args)
        self._process: subprocess.Popen[bytes] | None = None
        self._log: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        # Triton prints its tables after the error that matters; keep error lines apart.
        self._errors: collections.deque[str] = collections.deque(maxlen=LOG_ERROR_LINES)
        self._reader: threading.Thread | None = None
        self._watchdog: triton_251.StubWatchdog | None = None

    @classmethod
    def on_free_ports(
        cls, model_repository: str | Path, address: str = DEFAULT_ADDRESS, **kwargs: Any
    ) -> TritonServer:
        """A server on three free ports of ``address`` (tests, benchmarks: several may run
        side by side)."""
        return cls(
            model_repository,
            http_port=free_port(address),
            grpc_port=free_port(address),
            metrics_port=free_port(address),
            address=address,
            **kwargs,
        )

    @property
    def endpoints(self) -> Endpoints:
        """Where a client reaches it (loopback when it listens on every address)."""
        host = "127.0.0.1" if self.address in ("0.0.0.0", "") else self.address
        return Endpoints(host, self.http_port, self.grpc_port, self.metrics_port)

    @property
    def http_url(self) -> str:
        return self.endpoints.http_url

    @property
    def grpc_url(self) -> str:
        return self.endpoints.grpc_url

    @property
    def metrics_url(self) -> str:
        return self.endpoints.metrics_url

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def stub_processes(self) -> dict[int, str]:
        """The server's live Python-backend stub processes: pid -> model name."""
        return stub_processes(self.pid) if self.exit_code() is None and self.pid else {}

    def dead_stubs(self) -> list[str]:
        """Models whose stub process (seen when the server got ready) has since died."""
        return self._watchdog.dead() if self._watchdog is not None else []

    def command(self, backend_dir: Path, server: Path) -> list[str]:
        cmd = [
            str(server),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backend_dir}",
            f"--backend-config=python,shm-default-byte-size={PYTHON_SHM_BYTES}",
            f"--backend-config=python,shm-growth-byte-size={PYTHON_SHM_BYTES}",
            f"--http-address={self.address}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.address}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.address}",
            f"--metrics-port={self.metrics_port}",
            # No GPU metrics: the binary would probe for a driver on every host.
            "--allow-gpu-metrics=false",
            "--exit-on-error=true",
            "--strict-readiness=true",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            f"--log-verbose={self.log_verbose}",
        ]
        if self.allow_model_control:
            cmd += ["--model-control-mode=explicit", "--load-model=*"]
        else:
            cmd += ["--model-control-mode=none"]
        return cmd + list(self.extra_args)

    def log_tail(self) -> str:
        """The server's error lines, then the last lines of its log."""
        errors = [line for line in self._errors if line not in self._log]
        head = ["error lines:\n", *errors, "last lines:\n"] if errors else []
        return "".join(head + list(self._log))

    def start(self) -> TritonServer:
        if self._process is not None:
            raise ServerError("this server is already started")
        if not (self.model_repository.is_dir() and any(self.model_repository.iterdir())):
            raise ServerError(f"no model repository at {self.model_repository}")
        busy = [
            f"{name} port {port}"
            for name, port in (
                ("HTTP", self.http_port),
                ("gRPC", self.grpc_port),
                ("metrics", self.metrics_port),
            )
            if _port_in_use(self.address, port)
        ]
        if busy:
            raise ServerError(
                f"{', '.join(busy)} on {self.address} already in use (another server running?)"
            )
        self._reap("left by an earlier server")
        dist = TritonDistribution.find()
        backend_dir = dist.backend_dir(self.build_dir)
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(dist.libs), env.get("LD_LIBRARY_PATH", "")) if p
        )
        # The Python stub finds its interpreter's packages through the python on PATH.
        env["PATH"] = os.pathsep.join((str(Path(sys.prefix) / "bin"), env.get("PATH", "")))
        self._process = subprocess.Popen(
            self.command(backend_dir, dist.server),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            # Own process group: Ctrl-C in a terminal reaches the launcher only, which then
            # stops the server once (a second signal would make Triton skip its clean exit).
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        try:
            self.wait_ready(self.startup_timeout_s)
        except BaseException:
            self.stop()
            raise
        self._watchdog = triton_251.StubWatchdog(self.pid)
        return self

    def drain(self, timeout_s: float) -> bool:
        """Wait until no request is in flight (see ``triton_251.drain``: Triton 2.51 cuts
        ensemble requests between two steps on SIGTERM). True when quiet within ``timeout_s``."""
        return triton_251.drain(self.metrics_url, lambda: self.exit_code() is None, timeout_s)

    def restart(self, grace_s: float = triton_251.RESTART_GRACE_S) -> TritonServer:
        """Stop (SIGTERM, SIGKILL after ``grace_s``) and start again on the same ports."""
        self.stop(grace_s)
        self._process = None
        self._watchdog = None
        self.waited_for_http_clients = False
        return self.start()

    def _read_log(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for raw in iter(self._process.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace")
            self._log.append(line)
            if "HTTP service connections" in line:
                self.waited_for_http_clients = True
            if line[:1] == "E" and line[1:2].isdigit():
                self._errors.append(line)
            if self.echo:
                sys.stderr.write(line)
                sys.stderr.flush()

    def exit_code(self) -> int | None:
        """None while the server runs (or was never started), else its exit code."""
        return None if self._process is None else self._process.poll()

    def is_ready(self) -> bool:
        url = f"http://{self.http_url}/v2/health/ready"
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                self._join_reader()
                code = None if self._process is None else self._process.returncode
                raise ServerError(
                    f"tritonserver exited with code {code} before it was ready; end of its log:\n"
                    + self.log_tail()
                )
            if self.is_ready():
                return
            time.sleep(0.25)
        raise ServerError(
            f"tritonserver was not ready after {timeout_s:.0f} s; end of its log:\n"
            + self.log_tail()
        )

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5)

    def stop(self, timeout_s: float | None = None) -> int | None:
        """SIGTERM (Triton's clean shutdown), wait ``timeout_s`` (default: the exit timeout
        plus a margin), then kill. Returns its exit code. Call ``drain`` first for in-flight
        ensemble requests to finish: Triton 2.51 cuts them on SIGTERM."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=self.exit_timeout_s + 15 if timeout_s is None else timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self._join_reader()
        self._reap("the server left behind")
        return process.returncode

    def _reap(self, what: str) -> None:
        killed = triton_251.reap_orphaned_stubs(self.model_repository)
        if killed:
            message = f"gesture-serve: stopped {len(killed)} Python-backend stub(s) {what}"
            self._log.append(message + "\n")
            if self.echo:
                print(message, file=sys.stderr, flush=True)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- CLI


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gesture-serve",
        description="Serve the gesture ensemble on the local Triton server (Python backend).",
    )
    parser.add_argument(
        "--model-repository",
        type=Path,
        default=None,
        help="default: build/model_repository (with --label-map: build/model_repository_<name>)",
    )
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=shipped_models_dir(),
        help="trained models to build the repository from when it does not exist",
    )
    parser.add_argument(
        "--rebuild", action="store_true", help="rebuild the repository from --models-dir first"
    )
    parser.add_argument(
        "--label-map",
        help="serve the classifier of this label map: the models folder's own (mcs2021) or one "
        "of its sub-folders (models/hagrid: the 14 HaGRID classes)",
    )
    parser.add_argument("--http-port", type=_port, default=DEFAULT_HTTP_PORT)
    parser.add_argument("--grpc-port", type=_port, default=DEFAULT_GRPC_PORT)
    parser.add_argument("--metrics-port", type=_port, default=DEFAULT_METRICS_PORT)
    parser.add_argument(
        "--address",
        default=DEFAULT_ADDRESS,
        help="interface to bind (default localhost only; 0.0.0.0 exposes the server)",
    )
    parser.add_argument(
        "--allow-model-control",
        action="store_true",
        help="let clients load/unload models (Triton's explicit model control mode)",
    )
    parser.add_argument(
        "--max-pixels",
        type=positive_int,
        default=None,
        help="refuse photos (raw or encoded) with more pixels than this; default 64000000 "
        "(rebuilds the repository when it holds another value)",
    )
    parser.add_argument(
        "--max-hands",
        type=positive_int,
        default=None,
        help="classify at most this many hands per photo, the most confident; default 16 "
        "(rebuilds the repository when it holds another value)",
    )
    parser.add_argument(
        "--max-image-bytes",
        type=positive_int,
        default=None,
        help="refuse encoded photos larger than this many bytes; default 50331648 (48 MiB) "
        "(rebuilds the repository when it holds another value)",
    )
    parser.add_argument(
        "--no-stub-watchdog",
        dest="stub_watchdog",
        action="store_false",
        help="do not restart the server when a Python-backend stub process dies",
    )
    parser.add_argument("--startup-timeout", type=float, default=DEFAULT_STARTUP_TIMEOUT_S)
    parser.add_argument(
        "--exit-timeout-secs",
        type=int,
        default=DEFAULT_EXIT_TIMEOUT_S,
        help="how long a stop waits for in-flight requests and open HTTP client connections",
    )
    parser.add_argument("--log-verbose", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="do not echo the server's log")
    return parser.parse_args(argv)


class _StopRequested(BaseException):
    """Ctrl-C or SIGTERM: leave whatever the launcher is doing and stop the server cleanly."""


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    raise _StopRequested(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _serve(args)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _serve(args: argparse.Namespace) -> int:
    server: TritonServer | None = None
    try:
        models = models_with_label_map(
            args.models_dir, args.label_map, default_repository_dir().parent / "models"
        )
        repository = args.model_repository or default_repository_dir(args.label_map)
        repository = ensure_repository(
            repository,
            models,
            args.rebuild,
            max_pixels=args.max_pixels,
            max_hands=args.max_hands,
            max_image_bytes=args.max_image_bytes,
        )
        server = TritonServer(
            repository,
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            metrics_port=args.metrics_port,
            address=args.address,
            allow_model_control=args.allow_model_control,
            startup_timeout_s=args.startup_timeout,
            echo=not args.quiet,
            log_verbose=args.log_verbose,
            exit_timeout_s=args.exit_timeout_secs,
        )
        server.start()
        print(
            f"gesture-serve: ready: HTTP {server.http_url}, gRPC {server.grpc_url}, "
            f"metrics {server.metrics_url} (Ctrl-C to stop)",
            flush=True,
        )
        # Model control may unload a model (and end its stub) on purpose: no watchdog then.
        watch = args.stub_watchdog and not args.allow_model_control
        while server.exit_code() is None:
            time.sleep(triton_251.WATCHDOG_INTERVAL_S)
            dead = server.dead_stubs() if watch else []
            if dead:
                print(
                    f"gesture-serve: the Python-backend process of {', '.join(dead)} died; "
                    "restarting tritonserver ...",
                    file=sys.stderr,
                    flush=True,
                )
                server.restart()
                print("gesture-serve: ready again after a restart", flush=True)
        print(
            f"gesture-serve: error: tritonserver exited with code {server.exit_code()}; "
            f"end of its log:\n{server.log_tail()}",
            file=sys.stderr,
        )
        server.stop()  # collects the exit and stops the stubs a killed server leaves behind
        return 1
    except _StopRequested as stop:
        print(f"gesture-serve: {stop}: stopping ...", flush=True)
    except Exception as exc:  # a user-facing CLI: a message, not a traceback
        print(f"gesture-serve: error: {exc}", file=sys.stderr)
        if server is not None:
            server.stop()
        return 2
    # A second signal while shutting down must not cut the clean stop short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    drained = server is None or server.exit_code() is not None
    if not drained and not server.drain(server.exit_timeout_s):  # type: ignore[union-attr]
        print(
            f"gesture-serve: requests still arriving after {args.exit_timeout_secs} s; "
            "stopping anyway (requests cut now get UNAVAILABLE, which clients retry)",
            flush=True,
        )
    code = server.stop() if server is not None else 0
    if code not in (0, None) and server is not None and server.waited_for_http_clients:
        # Not a failure of the server: Triton gave idle keep-alive HTTP clients the whole exit
        # timeout, then stopped regardless (and reports that with code 1).
        print(
            f"gesture-serve: HTTP clients kept connections open; stopped after waiting "
            f"{server.exit_timeout_s} s for them",
            flush=True,
        )
        code = 0
    if code not in (0, None):
        print(f"gesture-serve: tritonserver exited with code {code}", file=sys.stderr)
        return 1
    print("gesture-serve: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
