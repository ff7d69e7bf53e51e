"""A real Triton server for the functional tests, started once per session.

Models: ``GESTURE_TEST_MODELS_DIR`` if set, else the shipped ``models/`` when it holds both ONNX
files, else random-weight models made by ``make_untrained_models`` (plumbing only: their
detector finds the same meaningless boxes everywhere, so tests that need a real detector say
so and skip).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from gesture_recognition.artifacts import (
    CLASSIFIER_JSON,
    CLASSIFIER_ONNX,
    DETECTOR_JSON,
    DETECTOR_ONNX,
    shipped_models_dir,
)
from gesture_recognition.pipeline import GesturePipeline
from gesture_recognition.serving.build import build_repository, committed_specs
from gesture_recognition.serving.configs import ServingOptions, model_configs
from gesture_recognition.serving.launcher import TritonServer

PROTOCOLS = ("grpc", "http")
# The served answer must match the in-process pipeline within these.
BOX_ATOL = 1.0
SCORE_ATOL = 1e-4


def hand_count(jpg: Path) -> int:
    """Ground-truth hands of a SubhiH photo (its VOC file)."""
    return len(ET.parse(jpg.with_suffix(".xml")).findall("object"))


# Low on purpose: a 2x2 mosaic of two-hand photos then has more hands than the server keeps.
TEST_MAX_HANDS = 3
MODEL_FILES = (DETECTOR_ONNX, DETECTOR_JSON, CLASSIFIER_ONNX, CLASSIFIER_JSON)
# Every model the cpu flavour serves.
CPU_MODEL_NAMES = tuple(model_configs("cpu", committed_specs()))


@dataclass(frozen=True)
class ServingModels:
    path: Path
    trained: bool


@dataclass(frozen=True)
class RunningServer:
    http_url: str
    grpc_url: str
    metrics_url: str
    models_dir: Path
    repository: Path
    max_hands: int
    trained: bool
    server: TritonServer


def cpu_server(
    models: Path,
    work: Path,
    options: ServingOptions | None = None,
    extra_args: Sequence[str] = (),
) -> TritonServer:
    """A cpu-flavour repository of ``models`` built under ``work`` and a Triton server on free
    ports for it, not started yet (``with server:`` starts and stops it)."""
    repository = build_repository(
        "cpu", models, work / "model_repository", options or ServingOptions()
    )
    return TritonServer.on_free_ports(repository, build_dir=work, extra_args=list(extra_args))


def _has_models(folder: Path) -> bool:
    return all((folder / name).is_file() for name in MODEL_FILES)


@pytest.fixture(scope="session")
def serving_models(tmp_path_factory: pytest.TempPathFactory) -> ServingModels:
    override = os.environ.get("GESTURE_TEST_MODELS_DIR")
    if override:
        if not _has_models(Path(override)):
            pytest.fail(f"GESTURE_TEST_MODELS_DIR={override} lacks {', '.join(MODEL_FILES)}")
        return ServingModels(Path(override), trained=True)
    if _has_models(shipped_models_dir()):
        return ServingModels(shipped_models_dir(), trained=True)
    from gesture_recognition.export.onnx_export import make_untrained_models

    folder = make_untrained_models(tmp_path_factory.mktemp("untrained_models"))
    return ServingModels(Path(folder), trained=False)


@pytest.fixture(scope="session")
def triton_server(
    serving_models: ServingModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    work = tmp_path_factory.mktemp("triton")
    server = cpu_server(serving_models.path, work, ServingOptions(max_hands=TEST_MAX_HANDS))
    with server:
        yield RunningServer(
            http_url=server.http_url,
            grpc_url=server.grpc_url,
            metrics_url=server.metrics_url,
            models_dir=serving_models.path,
            repository=server.model_repository,
            max_hands=TEST_MAX_HANDS,
            trained=serving_models.trained,
            server=server,
        )


@pytest.fixture(scope="session")
def reference(triton_server: RunningServer) -> GesturePipeline:
    """The in-process pipeline on the same ONNX files, with the server's hand limit."""
    return GesturePipeline.from_dir(triton_server.models_dir, max_hands=triton_server.max_hands)
