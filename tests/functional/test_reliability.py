"""Bad input, limits, security defaults and a bounded soak against the live server.

test_server.py covers the basic refusals (undecodable/empty bytes, a 4x4 photo, 4 channels);
these are the rest of the list: every refusal names its problem, comes back as HTTP 400 /
gRPC INVALID_ARGUMENT (Triton's own checks and the Python models' TritonError.INVALID_ARG
alike), and the next request is answered correctly.
"""

from __future__ import annotations

import io
import os
import socket
import struct
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from gesture_recognition.images import decode_image, load_image
from gesture_recognition.pipeline import GesturePipeline
from gesture_recognition.serving.contract import (
    ENSEMBLE,
    ENSEMBLE_BYTES,
    ENSEMBLE_OUTPUTS,
    GESTURE_CLASSIFIER,
    HAND_CROPS,
)
from gesture_recognition.serving.soak import load_photos, report_markdown, run_soak
from tests.conftest import sample_photos

from .conftest import BOX_ATOL, CPU_MODEL_NAMES, PROTOCOLS, SCORE_ATOL, RunningServer

pytestmark = pytest.mark.functional

REPO = Path(__file__).resolve().parents[2]
INVALID = {"grpc": "StatusCode.INVALID_ARGUMENT", "http": "400"}


def _module(protocol: str) -> ModuleType:
    return grpcclient if protocol == "grpc" else httpclient


def _client(server: RunningServer, protocol: str):
    url = server.grpc_url if protocol == "grpc" else server.http_url
    return _module(protocol).InferenceServerClient(url)


def _tensor(protocol: str, name: str, value: np.ndarray, datatype: str):
    tensor = _module(protocol).InferInput(name, list(value.shape), datatype)
    tensor.set_data_from_numpy(value)
    return tensor


def _bytes_input(protocol: str, data: bytes):
    return [_tensor(protocol, "IMAGE_BYTES", np.array([data], dtype=np.object_), "BYTES")]


def _encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` and carries one tiny IDAT: a bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _assert_refused(client, protocol: str, model: str, inputs: list, *words: str) -> str:
    with pytest.raises(InferenceServerException) as caught:
        client.infer(model, inputs)
    message = caught.value.message()
    assert str(caught.value.status()) == INVALID[protocol], message
    for word in words:
        assert word.lower() in message.lower(), message
    # An answer tells the client what was wrong with its request, not where the server lives.
    assert str(REPO) not in message and "/model.py" not in message, message
    return message


def _answer(client, model: str, inputs: list) -> dict[str, np.ndarray]:
    result = client.infer(model, inputs)
    return {name: result.as_numpy(name) for name in ENSEMBLE_OUTPUTS}


def _gesture(answer: dict[str, np.ndarray]) -> str:
    value = answer["GESTURE"].reshape(-1)[0]
    return value.decode() if isinstance(value, bytes) else str(value)


def _assert_like(answer: dict[str, np.ndarray], pipeline: GesturePipeline, image: np.ndarray):
    expected = pipeline(image)
    assert _gesture(answer) == expected.gesture
    np.testing.assert_allclose(answer["HAND_BOXES"], expected.hand_boxes, atol=BOX_ATOL)
    np.testing.assert_allclose(answer["SCORE"], [expected.score], atol=SCORE_ATOL)


def _assert_healthy_and_correct(server: RunningServer, protocol: str, reference) -> None:
    client = _client(server, protocol)
    try:
        assert client.is_server_live() and client.is_server_ready()
        for name in CPU_MODEL_NAMES:
            assert client.is_model_ready(name), name
        image = load_image(sample_photos()[0])
        answer = _answer(client, ENSEMBLE, [_tensor(protocol, "IMAGE", image, "UINT8")])
        _assert_like(answer, reference, image)
    finally:
        client.close()


@pytest.fixture(scope="module")
def sample_bytes() -> bytes:
    return sample_photos()[0].read_bytes()


# ----------------------------------------------------------------- encoded entry point


def _bad_encodings(sample: bytes) -> list[tuple[str, bytes, tuple[str, ...]]]:
    corrupt = bytearray(sample)
    # Wipe the JPEG's quantisation/Huffman tables and scan header: undecodable, not garbage.
    corrupt[20 : len(corrupt) // 2] = b"\xff" * (len(corrupt) // 2 - 20)
    return [
        ("truncated jpeg", sample[: len(sample) // 3], ("not a readable image",)),
        ("corrupt jpeg", bytes(corrupt), ("not a readable image",)),
        ("jpeg magic only", b"\xff\xd8\xff", ("not a readable image",)),
        ("text", b"<html>not a photo</html>", ("format not recognised",)),
        ("postscript", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", ("format",)),
        ("bomb 100k x 100k", _png_header_only(100_000, 100_000), ("limit", "pixels")),
        ("bomb 1 x 60M", _png_header_only(60_000_000, 1), ("at least 8",)),
        ("1x1", _encode(Image.new("RGB", (1, 1))), ("1x1", "at least 8")),
        ("thin 4000x3", _encode(Image.new("RGB", (4000, 3))), ("4000x3", "at least 8")),
    ]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bad_encoded_photos_are_refused_by_name(
    triton_server: RunningServer, reference: GesturePipeline, sample_bytes: bytes, protocol: str
) -> None:
    client = _client(triton_server, protocol)
    try:
        for what, data, words in _bad_encodings(sample_bytes):
            try:
                _assert_refused(
                    client, protocol, ENSEMBLE_BYTES, _bytes_input(protocol, data), *words
                )
            except AssertionError as exc:
                raise AssertionError(f"{what}: {exc}") from exc
        # Two photos in one IMAGE_BYTES tensor: Triton's own shape check refuses it.
        two = np.array([sample_bytes, sample_bytes], dtype=np.object_)
        _assert_refused(
            client, protocol, ENSEMBLE_BYTES, [_tensor(protocol, "IMAGE_BYTES", two, "BYTES")]
        )
    finally:
        client.close()
    _assert_healthy_and_correct(triton_server, protocol, reference)


def _odd_modes() -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    gray16 = (rng.integers(0, 65536, (96, 128), dtype=np.uint32)).astype(np.uint16)
    rgba = np.dstack([rgb, np.full((96, 128), 128, np.uint8)])
    return [
        ("grayscale", _encode(Image.fromarray(rgb[:, :, 0]))),
        ("rgba", _encode(Image.fromarray(rgba, "RGBA"))),
        ("16-bit grayscale", _encode(Image.fromarray(gray16))),
        ("palette", _encode(Image.fromarray(rgb).convert("P"))),
        ("cmyk jpeg", _encode(Image.fromarray(rgb).convert("CMYK"), "JPEG")),
        ("thin 8x2000", _encode(Image.fromarray(np.resize(rgb, (8, 2000, 3))))),
    ]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_other_photo_modes_are_converted_like_the_pipeline_does(
    triton_server: RunningServer, reference: GesturePipeline, protocol: str
) -> None:
    """Grayscale, RGBA (on white), 16-bit, palette and CMYK photos become 8-bit RGB, and the
    served answer is the pipeline's answer on the same conversion (images.decode_image)."""
    client = _client(triton_server, protocol)
    try:
        for what, data in _odd_modes():
            answer = _answer(client, ENSEMBLE_BYTES, _bytes_input(protocol, data))
            try:
                _assert_like(answer, reference, decode_image(data))
            except AssertionError as exc:
                raise AssertionError(f"{what}: {exc}") from exc
    finally:
        client.close()


# ----------------------------------------------------------------- raw entry point


def _bad_arrays(protocol: str) -> list[tuple[str, list, tuple[str, ...]]]:
    def image(value: np.ndarray, datatype: str = "UINT8") -> list:
        return [_tensor(protocol, "IMAGE", value, datatype)]

    return [
        ("float32", image(np.zeros((64, 64, 3), np.float32), "FP32"), ("data-type",)),
        ("int16", image(np.zeros((64, 64, 3), np.int16), "INT16"), ("data-type",)),
        ("rank 2", image(np.zeros((64, 64), np.uint8)), ("shape",)),
        ("rank 4", image(np.zeros((1, 64, 64, 3), np.uint8)), ("shape",)),
        ("1 channel", image(np.zeros((64, 64, 1), np.uint8)), ("shape",)),
        ("1x1", image(np.zeros((1, 1, 3), np.uint8)), ("1x1", "at least 8")),
        ("thin 1x5000", image(np.zeros((1, 5000, 3), np.uint8)), ("5000x1", "at least 8")),
        ("empty", image(np.zeros((0, 0, 3), np.uint8)), ()),
        ("wrong name", [_tensor(protocol, "PIXELS", np.zeros((9, 9, 3), np.uint8), "UINT8")], ()),
    ]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bad_pixel_tensors_are_refused_by_name(
    triton_server: RunningServer, reference: GesturePipeline, protocol: str
) -> None:
    client = _client(triton_server, protocol)
    try:
        for what, inputs, words in _bad_arrays(protocol):
            try:
                _assert_refused(client, protocol, ENSEMBLE, inputs, *words)
            except AssertionError as exc:
                raise AssertionError(f"{what}: {exc}") from exc
    finally:
        client.close()
    _assert_healthy_and_correct(triton_server, protocol, reference)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_nan_and_inf_where_floats_are_accepted(
    triton_server: RunningServer, reference: GesturePipeline, protocol: str
) -> None:
    """The ensembles take only UINT8/BYTES, but the steps are reachable by name: their float
    inputs refuse NaN/Inf (LETTERBOX, LOGITS) or drop non-finite detector rows."""
    client = _client(triton_server, protocol)
    image = load_image(sample_photos()[0])
    detections = np.zeros((1, 300, 6), np.float32)
    try:
        for bad in (np.nan, np.inf):
            crops_in = [
                _tensor(protocol, "IMAGE", image, "UINT8"),
                _tensor(protocol, "DETECTIONS", detections, "FP32"),
                _tensor(protocol, "LETTERBOX", np.array([bad, 0, 0], np.float32), "FP32"),
            ]
            _assert_refused(client, protocol, HAND_CROPS, crops_in, "LETTERBOX", "finite")
            # The cpu flavour decides inside the classifier's model: poisoned crops give
            # non-finite logits, which the decision refuses.
            size = reference.classifier.spec.input_size
            crops = np.full((1, 3, size, size), bad, np.float32)
            boxes = np.array([[10, 10, 50, 50]], np.float32)
            classifier_in = [
                _tensor(protocol, "input", crops, "FP32"),
                _tensor(protocol, "CROP_BOXES", boxes, "FP32"),
                _tensor(protocol, "CROP_SCORES", np.array([0.9], np.float32), "FP32"),
            ]
            _assert_refused(client, protocol, GESTURE_CLASSIFIER, classifier_in, "LOGITS", "NaN")
        # Non-finite detector rows are dropped, never turned into boxes.
        poisoned = detections.copy()
        poisoned[0, :2] = [[np.nan, 0, 50, 50, 0.99, 0], [0, 0, np.inf, 50, 0.99, 0]]
        crops = client.infer(
            HAND_CROPS,
            [
                _tensor(protocol, "IMAGE", image, "UINT8"),
                _tensor(protocol, "DETECTIONS", poisoned, "FP32"),
                _tensor(protocol, "LETTERBOX", np.array([0.5, 0, 40], np.float32), "FP32"),
            ],
        )
        assert crops.as_numpy("HAND_BOXES").shape == (0, 4)
    finally:
        client.close()
    _assert_healthy_and_correct(triton_server, protocol, reference)


def test_a_batch_of_mixed_valid_and_invalid_photos(
    triton_server: RunningServer, reference: GesturePipeline, sample_folder: Path
) -> None:
    """Valid and invalid requests in flight together (the detector batches what arrives
    together): each invalid one is refused alone, each valid one answered correctly."""
    photos = load_photos(sample_folder)
    client = httpclient.InferenceServerClient(triton_server.http_url, concurrency=8)
    jobs = []
    try:
        for i in range(3):
            for photo in photos:
                jobs.append(
                    (
                        "ok",
                        photo.pixels,
                        client.async_infer(ENSEMBLE_BYTES, _bytes_input("http", photo.encoded)),
                    )
                )
                bad = [
                    _bytes_input("http", photo.encoded[: 200 + i]),
                    [_tensor("http", "IMAGE", np.zeros((4, 4, 3), np.uint8), "UINT8")],
                ][i % 2]
                model = ENSEMBLE_BYTES if i % 2 == 0 else ENSEMBLE
                jobs.append(("bad", None, client.async_infer(model, bad)))
                jobs.append(
                    (
                        "ok",
                        photo.pixels,
                        client.async_infer(
                            ENSEMBLE, [_tensor("http", "IMAGE", photo.pixels, "UINT8")]
                        ),
                    )
                )
        for kind, pixels, job in jobs:
            if kind == "ok":
                result = job.get_result()
                answer = {name: result.as_numpy(name) for name in ENSEMBLE_OUTPUTS}
                _assert_like(answer, reference, pixels)
            else:
                with pytest.raises(InferenceServerException) as caught:
                    job.get_result()
                assert str(caught.value.status()) == "400", caught.value.message()
    finally:
        client.close()


# ----------------------------------------------------------------- security defaults


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))  # no packet is sent for UDP connect
            address = sock.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_the_server_listens_on_loopback_only(triton_server: RunningServer) -> None:
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this host has no non-loopback IPv4 address to try")
    for url in (triton_server.http_url, triton_server.grpc_url):
        port = int(url.rsplit(":", 1)[1])
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            assert sock.connect_ex((address, port)) != 0, f"port {port} answers on {address}"


def test_model_control_is_off(triton_server: RunningServer) -> None:
    """Without --allow-model-control, load/unload is refused over both protocols (Triton
    answers 503 "explicit model load / unload is not allowed") and nothing changes."""
    for action in ("unload", "load"):
        url = f"http://{triton_server.http_url}/v2/repository/models/{HAND_CROPS}/{action}"
        request = urllib.request.Request(url, data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        assert caught.value.code in (400, 403, 503), caught.value.code
        assert "not allowed" in caught.value.read().decode().lower()
    grpc = _client(triton_server, "grpc")
    try:
        with pytest.raises(InferenceServerException, match="not allowed"):
            grpc.unload_model(HAND_CROPS)
        assert grpc.is_model_ready(HAND_CROPS)
    finally:
        grpc.close()


# ----------------------------------------------------------------- soak


def test_soak_zero_failures_and_bounded_memory(
    triton_server: RunningServer, sample_folder: Path
) -> None:
    """GESTURE_SOAK_S seconds (default 60) of load at concurrency 4 over both protocols and
    entry points; the long run is scripts/soak.sh (reports/reliability/soak.md)."""
    duration = float(os.environ.get("GESTURE_SOAK_S", "60"))
    server_pid = triton_server.server.pid
    assert server_pid is not None
    result = run_soak(
        server_pid,
        triton_server.grpc_url,
        triton_server.http_url,
        load_photos(sample_folder),
        duration_s=duration,
        concurrency=4,
        warmup_s=min(15.0, duration / 3),
    )
    report = report_markdown(result, "pytest tests/functional/test_reliability.py -k soak", "CI")
    print(report)
    assert result.problems() == [], report
    assert result.ok >= duration  # at least one answer per second of soak
