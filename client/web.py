"""``gesture-web``: one page that shows the served ensemble's answers for a webcam or a photo.

    gesture-web                          # http://127.0.0.1:8080, Triton gRPC 127.0.0.1:8001
    gesture-web --port 9000 --triton-grpc triton:8001

The page (``web_static/``) takes webcam frames (``getUserMedia``) or a chosen photo, POSTs each
one's bytes to ``/api/classify``, and draws the boxes and labels the answer carries. The app
forwards the bytes to ``gesture_ensemble_bytes`` through the project's asyncio client and
answers the contract's outputs as JSON. It keeps nothing: uploads are read into memory (up to
``--max-upload-mb``) and never written to a file.

``POST /api/classify``: body = the image file (JPEG/PNG/WebP/BMP/GIF/TIFF), any ``image/*`` or
``application/octet-stream`` type. 200 with ``gesture``, ``score``, ``hands`` (``box`` x1 y1 x2
y2 in the image's pixels, ``detector_score``, ``gesture``, ``gesture_score``), ``probabilities``
and ``latency_ms``; 400 with ``{"error": reason}`` for an empty, oversized (413), undecodable or
refused upload; 503 when Triton is down, 504 when it does not answer in time.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import socket
import sys
import time
from collections.abc import AsyncIterator, Sequence
from importlib import resources
from typing import Any

from gesture_recognition.arguments import positive_float

from .clients import AsyncGestureClient, GestureClient
from .core import DEFAULT_URLS
from .errors import (
    GestureClientError,
    InvalidInputError,
    ModelNotReadyError,
    RequestTimeoutError,
    ServerUnavailableError,
)

PROG = "gesture-web"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_MAX_UPLOAD_MB = 8.0
DEFAULT_TIMEOUT_S = 10.0
# A page sends one frame at a time; a few tabs or a photo beside a camera fit in this.
MAX_IN_FLIGHT = 8
EXIT_USAGE, EXIT_SERVER = 2, 3
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
# The page's own files only; the camera stream goes straight into a <video>, frames are
# drawn into canvases and read back as blobs.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
ACCEPTED_TYPES = ("image/", "application/octet-stream")


def static_file(name: str) -> bytes:
    return resources.files("gesture_recognition.client").joinpath("web_static", name).read_bytes()


class UploadError(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def read_upload(request: Any, limit: int) -> bytes:
    """The request body, refused before it is all read when it is over ``limit`` bytes."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and not ctype.startswith(ACCEPTED_TYPES):
        raise UploadError(400, f"send the image file's bytes (image/*), not {ctype}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise UploadError(413, f"upload of {int(declared)} bytes is over the {limit} byte limit")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:  # no or a false Content-Length: stop reading here
            raise UploadError(413, f"upload is over the {limit} byte limit")
    if not body:
        raise UploadError(400, "empty upload: send the image file's bytes as the request body")
    return bytes(body)


def create_app(
    triton_grpc: str,
    max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 2**20),
    timeout: float = DEFAULT_TIMEOUT_S,
    allowed_hosts: Sequence[str] | None = None,
) -> Any:
    """The Starlette app. ``allowed_hosts`` (Host header names) guards a loopback-bound app
    against DNS rebinding: another site's page could otherwise post to it from the browser."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    state: dict[str, AsyncGestureClient] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # One client (one gRPC channel) for the app, opened inside uvicorn's event loop.
        async with AsyncGestureClient(
            triton_grpc, protocol="grpc", timeout=timeout, retries=1, max_in_flight=MAX_IN_FLIGHT
        ) as client:
            state["client"] = client
            yield

    def error(status: int, reason: str) -> JSONResponse:
        return JSONResponse({"error": reason}, status_code=status, headers=SECURITY_HEADERS)

    async def page(request: Request) -> Response:
        name, media_type = STATIC[request.url.path]
        return Response(static_file(name), media_type=media_type, headers=SECURITY_HEADERS)

    async def health(request: Request) -> JSONResponse:
        ready = await state["client"].is_ready()
        return JSONResponse(
            {"ready": ready, "triton_grpc": triton_grpc},
            status_code=200 if ready else 503,
            headers=SECURITY_HEADERS,
        )

    async def classify(request: Request) -> JSONResponse:
        try:
            data = await read_upload(request, max_upload_bytes)
        except UploadError as exc:
            return error(exc.status, exc.reason)
        started = time.perf_counter()
        try:
            result = await state["client"].classify_bytes(data)
        except InvalidInputError as exc:
            return error(400, f"not a usable image: {exc}")
        except (ServerUnavailableError, ModelNotReadyError) as exc:
            return error(503, str(exc))
        except RequestTimeoutError as exc:
            return error(504, str(exc))
        except GestureClientError as exc:
            return error(502, str(exc))
        answer = result.to_dict()
        answer["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
        return JSONResponse(answer, headers=SECURITY_HEADERS)

    routes = [Route(path, page, methods=["GET"]) for path in STATIC]
    routes += [
        Route("/api/health", health, methods=["GET"]),
        Route("/api/classify", classify, methods=["POST"]),
    ]
    middleware = []
    if allowed_hosts:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)))
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A one-page web app: webcam or photo -> the served gesture ensemble -> "
        "boxes, labels and the current gesture on the page. POST /api/classify takes image "
        "bytes and answers the contract's outputs as JSON.",
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="interface to bind (default 127.0.0.1, this machine only; browsers allow the "
        "webcam only on localhost or HTTPS, so put a TLS proxy in front of 0.0.0.0)",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="0 picks a free port (printed)"
    )
    parser.add_argument(
        "--triton-grpc",
        default=DEFAULT_URLS["grpc"],
        metavar="HOST:PORT",
        help="Triton's gRPC endpoint (gesture-serve's default 127.0.0.1:8001)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=positive_float,
        default=DEFAULT_MAX_UPLOAD_MB,
        help="largest image accepted, in MiB (larger: 413)",
    )
    parser.add_argument(
        "--timeout", type=positive_float, default=DEFAULT_TIMEOUT_S, help="seconds per answer"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if not 0 <= args.port <= 65535:
        print(f"{PROG}: error: --port must be 0-65535, got {args.port}", file=sys.stderr)
        return EXIT_USAGE
    try:
        import uvicorn
    except ImportError as exc:
        print(f"{PROG}: error: {exc}: pip install 'gesture-recognition[web]'", file=sys.stderr)
        return EXIT_USAGE
    try:  # fail now, in one line, rather than on the first frame a user sends
        with GestureClient(args.triton_grpc, protocol="grpc", timeout=args.timeout) as probe:
            probe.check_ready()
    except GestureClientError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_SERVER
    # Bound here, so a taken port is one clear line and --port 0 can print the port it got.
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        sock.close()
        print(f"{PROG}: error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # Listening before the line below is printed: a client that reads it can connect at once.
    sock.listen(128)
    port = sock.getsockname()[1]
    hosts = None
    if _is_loopback(args.host):
        hosts = ["localhost", "127.0.0.1", "[::1]", args.host]
    app = create_app(
        args.triton_grpc,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        timeout=args.timeout,
        allowed_hosts=hosts,
    )
    shown = f"[{args.host}]" if family == socket.AF_INET6 else args.host
    print(
        f"{PROG}: serving http://{shown}:{port}/ (Triton gRPC {args.triton_grpc}; Ctrl-C to stop)",
        flush=True,
    )
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
