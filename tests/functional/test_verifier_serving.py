"""A classifier with a hand verifier on a real Triton server: the served hands and answers must
equal the in-process pipeline's, which drops the hands the verifier rejects.

The verifier here is made for the test (the shipped classifier with a fixed random logistic
layer), its threshold the median of its probabilities on the photos' hands, so that some hands
are dropped and some kept: the dropping itself is what is compared.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient

from gesture_recognition.artifacts import (
    CLASSIFIER_JSON,
    CLASSIFIER_ONNX,
    VerifierSpec,
    read_classifier_spec,
    write_spec,
)
from gesture_recognition.hands import prepare_hands
from gesture_recognition.images import load_image
from gesture_recognition.pipeline import GesturePipeline
from gesture_recognition.serving.launcher import TritonServer
from gesture_recognition.training.verifier import add_verifier_output
from tests.conftest import models_folder, sample_photos

from .conftest import BOX_ATOL, SCORE_ATOL, ServingModels, cpu_server

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def verified_models(
    serving_models: ServingModels, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    if not serving_models.trained:
        pytest.skip("needs the trained models: random-weight detectors find no real hands")
    models = models_folder(tmp_path_factory.mktemp("verified"), serving_models.path)
    source = serving_models.path
    spec = read_classifier_spec(source / CLASSIFIER_JSON)
    if spec.verifier is None:
        weights = np.random.default_rng(7).normal(0, 0.05, 1280).astype(np.float32)
        model = add_verifier_output(onnx.load(str(source / CLASSIFIER_ONNX)), weights, 0.0)
        onnx.save(model, str(models / CLASSIFIER_ONNX))
    else:  # the shipped classifier has a trained one
        (models / CLASSIFIER_ONNX).symlink_to(source / CLASSIFIER_ONNX)
    write_spec(replace(spec, verifier=VerifierSpec(0.0)), models / CLASSIFIER_JSON)
    # The threshold: the median of the verifier's probabilities on the photos' hands.
    keep_all = GesturePipeline.from_dir(models, threads=1)
    hand = []
    for path in sample_photos():
        image = load_image(path)
        boxes, scores = keep_all.detect(image)
        hands = prepare_hands(image, boxes, scores, keep_all.classifier.spec)
        hand += keep_all.classifier.logits_and_hand(hands.batch)[1].tolist()
    threshold = float(np.median(hand))
    write_spec(replace(spec, verifier=VerifierSpec(threshold)), models / CLASSIFIER_JSON)
    return models


@pytest.fixture(scope="module")
def verified_server(
    verified_models: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    server = cpu_server(verified_models, tmp_path_factory.mktemp("triton_verified"))
    with server:
        yield server


def test_served_hands_are_the_ones_the_verifier_keeps(
    verified_models: Path, verified_server: TritonServer
) -> None:
    reference = GesturePipeline.from_dir(verified_models, threads=1)
    found = kept = 0
    with grpcclient.InferenceServerClient(verified_server.grpc_url) as client:
        for path in sample_photos():
            image = load_image(path)
            local = reference(image)
            tensor = grpcclient.InferInput("IMAGE", list(image.shape), "UINT8")
            tensor.set_data_from_numpy(image)
            served = client.infer("gesture_ensemble", [tensor])
            boxes = served.as_numpy("HAND_BOXES")
            assert boxes.shape == local.hand_boxes.shape, path.name
            np.testing.assert_allclose(boxes, local.hand_boxes, atol=BOX_ATOL)
            np.testing.assert_allclose(
                served.as_numpy("HAND_SCORES"), local.hand_scores, atol=SCORE_ATOL
            )
            gestures = [g.decode() for g in served.as_numpy("HAND_GESTURES")]
            assert gestures == local.hand_gestures, path.name
            assert served.as_numpy("GESTURE")[0].decode() == local.gesture, path.name
            found += len(reference.detect(image)[0])
            kept += len(boxes)
    assert 0 < kept < found  # the verifier dropped some hands and kept some
