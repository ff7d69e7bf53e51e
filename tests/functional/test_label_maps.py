"""A second label map chosen at serve time: the shipped models' sub-folder classifiers served
by the same ensemble (``gesture-serve --label-map NAME``), answering in their own classes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gesture_recognition.artifacts import (
    label_map_choices,
    models_with_label_map,
    read_classifier_spec,
    shipped_models_dir,
)
from gesture_recognition.client.clients import GestureClient
from gesture_recognition.images import load_image
from gesture_recognition.pipeline import GesturePipeline
from gesture_recognition.serving.configs import ServingOptions

from .conftest import BOX_ATOL, SCORE_ATOL, cpu_server

pytestmark = pytest.mark.functional

SHIPPED = shipped_models_dir()
# The label maps the shipped models offer besides the default one (its own classifier's).
DEFAULT = read_classifier_spec(SHIPPED / "gesture_classifier.json").label_map.name
OTHERS = sorted(set(label_map_choices(SHIPPED)) - {DEFAULT})


def test_the_shipped_models_offer_more_than_one_label_map() -> None:
    assert DEFAULT == "mcs2021"
    assert OTHERS, "no sub-folder of models/ holds a classifier of another label map"


@pytest.mark.parametrize("label_map", OTHERS)
def test_a_label_map_chosen_at_serve_time(
    label_map: str, shared_data: Path, tmp_path: Path
) -> None:
    models = models_with_label_map(SHIPPED, label_map, tmp_path / "models")
    classes = read_classifier_spec(models / "gesture_classifier.json").label_map.classes
    photos = sorted((shared_data / "subhih_hands" / "test").glob("*.jpg"))[:3]
    reference = GesturePipeline.from_dir(models, max_hands=4)
    server = cpu_server(models, tmp_path, ServingOptions(max_hands=4))
    with server, GestureClient(server.grpc_url, protocol="grpc") as client:
        assert client.labels == classes
        for photo in photos:
            served = client.classify_path(photo)
            local = reference(load_image(photo))
            assert served.gesture == local.gesture
            assert served.gesture in (*classes, reference.classifier.spec.label_map.no_hand_label)
            assert len(served.probabilities) == len(classes)
            np.testing.assert_allclose(served.hand_boxes, local.hand_boxes, atol=BOX_ATOL)
            np.testing.assert_allclose(served.probabilities, local.probabilities, atol=SCORE_ATOL)


def test_an_unknown_label_map_is_refused_in_one_line(tmp_path: Path) -> None:
    cli = Path(sys.executable).with_name("gesture-serve")
    done = subprocess.run(
        [str(cli), "--label-map", "nope", "--model-repository", str(tmp_path / "repo")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "no classifier for label map 'nope'" in done.stderr and "mcs2021" in done.stderr
    assert "Traceback" not in done.stderr
