"""A detector with a second pass (``second_pass_imgsz``) on a real Triton server (cpu flavour):
on photos shown small, the served hands must be the in-process pipeline's, found only by the
second pass; on the photos as they are, the first pass answers as before."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from gesture_recognition.images import load_image
from gesture_recognition.pipeline import GesturePipeline
from gesture_recognition.serving.launcher import TritonServer
from gesture_recognition.training.zoomed_sets import zoom_out
from tests.conftest import models_with_second_pass, sample_photos

from .conftest import BOX_ATOL, SCORE_ATOL, ServingModels, cpu_server

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def two_pass_models(
    serving_models: ServingModels, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    if not serving_models.trained:
        pytest.skip("needs the trained models: random-weight detectors find no real hands")
    folder = tmp_path_factory.mktemp("two_pass") / "models"
    return models_with_second_pass(folder, serving_models.path)


@pytest.fixture(scope="module")
def two_pass_server(
    two_pass_models: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    server = cpu_server(two_pass_models, tmp_path_factory.mktemp("triton_two_pass"))
    with server:
        yield server


def test_served_second_pass_equals_the_pipeline(
    serving_models: ServingModels, two_pass_models: Path, two_pass_server: TritonServer
) -> None:
    one_pass = GesturePipeline.from_dir(serving_models.path, threads=1)
    two_pass = GesturePipeline.from_dir(two_pass_models, threads=1)
    rng = np.random.default_rng(0)
    found_by_second = 0
    with grpcclient.InferenceServerClient(two_pass_server.grpc_url) as client:
        for path in sample_photos():
            for zoom in (1, 4):
                image, _ = zoom_out(load_image(path), np.zeros((0, 4), np.float32), zoom, rng)
                local = two_pass(image)
                tensor = grpcclient.InferInput("IMAGE", list(image.shape), "UINT8")
                tensor.set_data_from_numpy(image)
                served = client.infer("gesture_ensemble", [tensor])
                boxes = served.as_numpy("HAND_BOXES")
                name = f"{path.name} at 1/{zoom}"
                assert boxes.shape == local.hand_boxes.shape, name
                np.testing.assert_allclose(boxes, local.hand_boxes, atol=BOX_ATOL)
                np.testing.assert_allclose(
                    served.as_numpy("HAND_SCORES"), local.hand_scores, atol=SCORE_ATOL
                )
                assert served.as_numpy("GESTURE")[0].decode() == local.gesture, name
                first = len(one_pass.detect(image)[0])
                if zoom == 1:
                    assert first > 0, name  # as they are: the first pass answers
                    assert len(boxes) == len(one_pass(image).hand_boxes), name
                found_by_second += first == 0 and len(boxes) > 0
    assert found_by_second > 0  # some hands came from the second pass only
