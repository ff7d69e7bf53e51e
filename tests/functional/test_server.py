"""The served ensembles over gRPC and HTTP against the in-process pipeline on the same ONNX files.

Every answer must carry the same labels, boxes within 1 px and scores within 1e-4 of
``GesturePipeline``; zero hands, more hands than the limit and bad input are answered without
an error that brings anything down.
"""

from __future__ import annotations

import io
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from gesture_recognition.images import EXIF_ORIENTATION, load_image
from gesture_recognition.pipeline import GesturePipeline, GestureResult
from gesture_recognition.serving.contract import (
    ENSEMBLE,
    ENSEMBLE_BYTES,
    ENSEMBLE_OUTPUTS,
    GESTURE_CLASSIFIER,
    HAND_CROPS,
)

from .conftest import BOX_ATOL, CPU_MODEL_NAMES, PROTOCOLS, SCORE_ATOL, RunningServer, hand_count

pytestmark = pytest.mark.functional


# ----------------------------------------------------------------- photos


@dataclass(frozen=True)
class Photo:
    name: str
    path: Path | None
    image: np.ndarray

    def encoded(self) -> bytes:
        if self.path is not None:
            return self.path.read_bytes()
        buffer = io.BytesIO()
        Image.fromarray(self.image).save(buffer, format="PNG")
        return buffer.getvalue()


def _photo(path: Path) -> Photo:
    return Photo(f"{path.parent.name}/{path.name}", path, load_image(path))


@pytest.fixture(scope="session")
def subhih_test(shared_data: Path) -> list[Path]:
    return sorted((shared_data / "subhih_hands" / "test").glob("*.jpg"))


@pytest.fixture(scope="session")
def photos(shared_data: Path, subhih_test: list[Path]) -> list[Photo]:
    """Real photos: single-hand and two-hand webcam shots and HaGRID gesture crops."""
    one = [p for p in subhih_test if hand_count(p) == 1][:3]
    two = [p for p in subhih_test if hand_count(p) == 2][:2]
    hagrid = shared_data / "hagrid_crops"
    crops = [sorted((hagrid / c).glob("*.jpg"))[0] for c in ("like", "peace", "stop")]
    return [_photo(p) for p in one + two + crops]


@pytest.fixture(scope="session")
def mosaic(subhih_test: list[Path]) -> Photo:
    """Four two-hand photos tiled 2x2: eight hands, more than the server keeps."""
    tiles = [load_image(p) for p in [p for p in subhih_test if hand_count(p) == 2][:4]]
    assert len({t.shape for t in tiles}) == 1
    top, bottom = np.concatenate(tiles[:2], axis=1), np.concatenate(tiles[2:], axis=1)
    return Photo("mosaic", None, np.concatenate([top, bottom], axis=0))


GREY = Photo("grey", None, np.full((480, 640, 3), 128, dtype=np.uint8))


# ----------------------------------------------------------------- calling the server


def _module(protocol: str) -> ModuleType:
    return grpcclient if protocol == "grpc" else httpclient


_CLIENTS: dict[tuple[str, str], object] = {}


def _client(server: RunningServer, protocol: str):
    """One client per protocol for the module, closed at its end: an HTTP client that keeps
    its connection open would make the server's shutdown wait its whole exit timeout."""
    url = server.grpc_url if protocol == "grpc" else server.http_url
    key = (protocol, url)
    if key not in _CLIENTS:
        _CLIENTS[key] = _module(protocol).InferenceServerClient(url)
    return _CLIENTS[key]


@pytest.fixture(autouse=True, scope="module")
def _close_clients() -> Iterator[None]:
    yield
    for client in _CLIENTS.values():
        client.close()  # type: ignore[attr-defined]
    _CLIENTS.clear()


def _inputs(protocol: str, photo: Photo, entry: str) -> list:
    module = _module(protocol)
    if entry == ENSEMBLE:
        tensor = module.InferInput("IMAGE", list(photo.image.shape), "UINT8")
        tensor.set_data_from_numpy(photo.image)
    else:
        data = np.array([photo.encoded()], dtype=np.object_)
        tensor = module.InferInput("IMAGE_BYTES", [1], "BYTES")
        tensor.set_data_from_numpy(data)
    return [tensor]


def infer(server: RunningServer, protocol: str, photo: Photo, entry: str = ENSEMBLE) -> dict:
    result = _client(server, protocol).infer(entry, _inputs(protocol, photo, entry))
    return {name: result.as_numpy(name) for name in ENSEMBLE_OUTPUTS}


def _texts(values: np.ndarray) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values.reshape(-1)]


def assert_matches(served: dict, expected: GestureResult, what: str) -> None:
    n = len(expected.hand_boxes)
    assert _texts(served["GESTURE"]) == [expected.gesture], what
    assert served["HAND_BOXES"].shape == (n, 4), what
    assert served["HAND_SCORES"].shape == (n,), what
    assert _texts(served["HAND_GESTURES"]) == expected.hand_gestures, what
    np.testing.assert_allclose(
        served["HAND_BOXES"], expected.hand_boxes, atol=BOX_ATOL, err_msg=what
    )
    np.testing.assert_allclose(served["SCORE"], [expected.score], atol=SCORE_ATOL, err_msg=what)
    np.testing.assert_allclose(
        served["HAND_SCORES"], expected.hand_scores, atol=SCORE_ATOL, err_msg=what
    )
    np.testing.assert_allclose(
        served["HAND_GESTURE_SCORES"], expected.hand_gesture_scores, atol=SCORE_ATOL, err_msg=what
    )
    np.testing.assert_allclose(
        served["GESTURE_PROBS"], expected.probabilities, atol=SCORE_ATOL, err_msg=what
    )


# ----------------------------------------------------------------- health and metadata


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_health_and_metadata(triton_server: RunningServer, protocol: str) -> None:
    client = _client(triton_server, protocol)
    assert client.is_server_live() and client.is_server_ready()
    for name in CPU_MODEL_NAMES:
        assert client.is_model_ready(name), name
    meta = client.get_model_metadata(ENSEMBLE)
    if protocol == "grpc":
        inputs = [(t.name, t.datatype, list(t.shape)) for t in meta.inputs]
        outputs = [t.name for t in meta.outputs]
    else:
        inputs = [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]]
        outputs = [t["name"] for t in meta["outputs"]]
    assert inputs == [("IMAGE", "UINT8", [-1, -1, 3])]
    assert sorted(outputs) == sorted(ENSEMBLE_OUTPUTS)


def test_bytes_entry_metadata_and_label_file(triton_server: RunningServer, reference) -> None:
    client = _client(triton_server, "http")
    meta = client.get_model_metadata(ENSEMBLE_BYTES)
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [
        ("IMAGE_BYTES", "BYTES", [1])
    ]
    config = client.get_model_config(GESTURE_CLASSIFIER)
    probs = next(o for o in config["output"] if o["name"] == "GESTURE_PROBS")
    assert probs["label_filename"] == "labels.txt"
    assert int(probs["dims"][0]) == len(reference.labels)
    crops = client.get_model_config(HAND_CROPS)
    assert crops["parameters"]["MAX_HANDS"]["string_value"] == str(triton_server.max_hands)


def test_metrics_endpoint(triton_server: RunningServer) -> None:
    with urllib.request.urlopen(triton_server.metrics_url, timeout=10) as reply:
        text = reply.read().decode()
    assert reply.status == 200
    assert f'nv_inference_count{{model="{GESTURE_CLASSIFIER}"' in text


# ----------------------------------------------------------------- answers


@pytest.mark.parametrize("entry", [ENSEMBLE, ENSEMBLE_BYTES])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_matches_in_process_pipeline(
    triton_server: RunningServer,
    reference: GesturePipeline,
    photos: list[Photo],
    protocol: str,
    entry: str,
) -> None:
    for photo in photos:
        expected = reference(photo.image)
        assert_matches(infer(triton_server, protocol, photo, entry), expected, photo.name)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_photo_stored_sideways_is_answered_as_shown(
    triton_server: RunningServer,
    reference: GesturePipeline,
    photos: list[Photo],
    protocol: str,
    tmp_path: Path,
) -> None:
    """A phone held upright stores its photo turned, with EXIF Orientation 6: the server turns it
    upright first, so gestures and boxes are those of the photo as every viewer shows it."""
    upright = photos[0]
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # shown turned 90 degrees clockwise
    path = tmp_path / "portrait.png"  # lossless: the same pixels once turned
    Image.fromarray(np.rot90(upright.image, 1)).save(path, format="PNG", exif=exif.tobytes())
    expected = reference(upright.image)
    if triton_server.trained:
        assert len(expected.hand_boxes), "the sample photo should show a hand"
    served = infer(triton_server, protocol, Photo("portrait", path, upright.image), ENSEMBLE_BYTES)
    assert_matches(served, expected, "sideways with EXIF orientation 6")


def test_two_hands_are_both_reported(
    triton_server: RunningServer, reference: GesturePipeline, photos: list[Photo]
) -> None:
    if not triton_server.trained:
        pytest.skip("untrained detector: hand counts mean nothing")
    two = [p for p in photos if p.path is not None and p.path.with_suffix(".xml").exists()]
    two = [p for p in two if hand_count(p.path) == 2]  # type: ignore[arg-type]
    counts = [len(infer(triton_server, "grpc", p)["HAND_BOXES"]) for p in two]
    assert max(counts) == 2, counts


def test_labels_through_the_classification_extension(
    triton_server: RunningServer, reference: GesturePipeline, photos: list[Photo]
) -> None:
    """labels.txt is served: Triton's top-k on GESTURE_PROBS names the pipeline's classes."""
    photo = photos[0]
    expected = reference(photo.image)
    client = _client(triton_server, "http")
    out = httpclient.InferRequestedOutput("GESTURE_PROBS", class_count=len(reference.labels))
    result = client.infer(ENSEMBLE, _inputs("http", photo, ENSEMBLE), outputs=[out])
    entries = [e.split(":") for e in _texts(result.as_numpy("GESTURE_PROBS"))]
    by_label = {label: float(score) for score, _index, label in entries}
    assert sorted(by_label) == sorted(reference.labels)
    for label, prob in zip(reference.labels, expected.probabilities, strict=True):
        assert by_label[label] == pytest.approx(float(prob), abs=SCORE_ATOL)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_zero_hands_photo(
    triton_server: RunningServer, reference: GesturePipeline, protocol: str
) -> None:
    expected = reference(GREY.image)
    if len(expected.hand_boxes):
        pytest.skip("the detector under test finds hands on a uniform grey photo (untrained)")
    served = infer(triton_server, protocol, GREY, ENSEMBLE_BYTES)
    assert _texts(served["GESTURE"]) == ["no_gesture"]
    assert served["HAND_BOXES"].shape == (0, 4)
    assert served["HAND_SCORES"].shape == (0,)
    assert served["HAND_GESTURES"].shape == (0,)
    assert served["HAND_GESTURE_SCORES"].shape == (0,)
    assert_matches(served, expected, GREY.name)


def test_zero_hands_through_the_crop_and_decision_steps(
    triton_server: RunningServer, reference: GesturePipeline, photos: list[Photo]
) -> None:
    """Independent of the detector's weights: rows below any threshold mean no hand, the
    classifier still gets one (dummy) row, and the decision says no_gesture."""
    client = _client(triton_server, "grpc")
    image = photos[0].image
    meta = client.get_model_metadata(HAND_CROPS, as_json=True)
    shape = next(t["shape"] for t in meta["inputs"] if t["name"] == "DETECTIONS")
    detections = np.zeros([int(d) for d in shape], np.float32)
    detections[0, :, 4] = -1.0
    crops_in = []
    for name, value, dtype in (
        ("IMAGE", image, "UINT8"),
        ("DETECTIONS", detections, "FP32"),
        ("LETTERBOX", np.array([0.5, 0.0, 40.0], np.float32), "FP32"),
    ):
        tensor = grpcclient.InferInput(name, list(value.shape), dtype)
        tensor.set_data_from_numpy(value)
        crops_in.append(tensor)
    crops = client.infer(HAND_CROPS, crops_in)
    boxes, batch = crops.as_numpy("HAND_BOXES"), crops.as_numpy("CLASSIFIER_INPUT")
    assert boxes.shape == (0, 4) and crops.as_numpy("HAND_SCORES").shape == (0,)
    assert batch.shape[0] == 1

    # The cpu flavour's classifier model also decides (from the rows that are hands).
    classifier_in = []
    scores = crops.as_numpy("HAND_SCORES")
    for name, value in (("input", batch), ("CROP_BOXES", boxes), ("CROP_SCORES", scores)):
        tensor = grpcclient.InferInput(name, list(value.shape), "FP32")
        tensor.set_data_from_numpy(value)
        classifier_in.append(tensor)
    decision = client.infer(GESTURE_CLASSIFIER, classifier_in)
    assert decision.as_numpy("logits").shape == (1, len(reference.labels))
    assert _texts(decision.as_numpy("GESTURE")) == ["no_gesture"]
    assert decision.as_numpy("SCORE").tolist() == [1.0]
    assert decision.as_numpy("HAND_GESTURES").shape == (0,)
    assert decision.as_numpy("HAND_BOXES").shape == (0, 4)
    probs = decision.as_numpy("GESTURE_PROBS")
    assert probs[list(reference.labels).index("no_gesture")] == 1.0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_more_hands_than_the_limit_are_capped(
    triton_server: RunningServer, reference: GesturePipeline, mosaic: Photo, protocol: str
) -> None:
    uncapped = GesturePipeline(reference.detector, reference.classifier, max_hands=1000)
    found = len(uncapped.detect(mosaic.image)[0])
    assert found > triton_server.max_hands, f"the mosaic must exceed the limit, found {found}"
    served = infer(triton_server, protocol, mosaic, ENSEMBLE)
    assert served["HAND_BOXES"].shape == (triton_server.max_hands, 4)
    # The most confident hands are the ones kept.
    all_scores = np.sort(uncapped(mosaic.image).hand_scores)[::-1][: triton_server.max_hands]
    np.testing.assert_allclose(np.sort(served["HAND_SCORES"])[::-1], all_scores, atol=SCORE_ATOL)
    assert_matches(served, reference(mosaic.image), mosaic.name)


def test_concurrent_requests_match(
    triton_server: RunningServer, reference: GesturePipeline, photos: list[Photo]
) -> None:
    """Requests in flight together give the same answers (two instances per network on cpu,
    whose overlapping runs the thread gate gives one thread each)."""
    client = httpclient.InferenceServerClient(triton_server.http_url, concurrency=8)
    jobs = [
        (photo, client.async_infer(ENSEMBLE, _inputs("http", photo, ENSEMBLE)))
        for photo in photos * 2
    ]
    for photo, job in jobs:
        result = job.get_result()
        served = {name: result.as_numpy(name) for name in ENSEMBLE_OUTPUTS}
        assert_matches(served, reference(photo.image), photo.name)
    client.close()


# ----------------------------------------------------------------- bad input


BAD_BYTES = [b"this is not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, b""]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bad_input_is_rejected_and_the_server_stays_healthy(
    triton_server: RunningServer, reference: GesturePipeline, photos: list[Photo], protocol: str
) -> None:
    module, client = _module(protocol), _client(triton_server, protocol)
    expected_status = "StatusCode.INVALID_ARGUMENT" if protocol == "grpc" else "400"
    requests = []
    for data in BAD_BYTES:
        tensor = module.InferInput("IMAGE_BYTES", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([data], dtype=np.object_))
        requests.append((ENSEMBLE_BYTES, [tensor]))
    for image in (np.zeros((4, 4, 3), np.uint8), np.zeros((64, 64, 4), np.uint8)):
        tensor = module.InferInput("IMAGE", list(image.shape), "UINT8")
        tensor.set_data_from_numpy(image)
        requests.append((ENSEMBLE, [tensor]))
    for model, inputs in requests:
        with pytest.raises(InferenceServerException) as caught:
            client.infer(model, inputs)
        assert str(caught.value.status()) == expected_status, caught.value.message()
    assert client.is_server_ready()
    for name in CPU_MODEL_NAMES:
        assert client.is_model_ready(name), name
    photo = photos[0]
    assert_matches(infer(triton_server, protocol, photo), reference(photo.image), photo.name)
