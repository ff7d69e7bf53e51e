"""The ImageNet-pretrained Lite0 backbone under YOLO26n's neck and head (``yolo26n-lite0.yaml``).

One tiny real training run (one epoch, two real SubhiH photos with made-up boxes, 64 px) with
the backbone frozen, then the ONNX export the server loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gesture_recognition.training.detector import DetectorTrainConfig, train_detector
from gesture_recognition.training.detector_backbones import (
    LITE0_BACKBONE,
    InputScale,
    Lite0Features,
    project_model,
    register_backbones,
)
from gesture_recognition.training.pretrained import create_classifier
from tests.unit.tiny_yolo_data import tiny_yolo_data

LITE0_YAML = "yolo26n-lite0.yaml"


@pytest.fixture(scope="module")
def imagenet_stem() -> torch.Tensor:
    return create_classifier(pretrained=True).conv_stem.weight.detach().clone()


def test_registered_under_a_torchvision_name(imagenet_stem: torch.Tensor) -> None:
    import torchvision

    register_backbones()
    register_backbones()  # twice is harmless
    net = torchvision.models.get_model(LITE0_BACKBONE, weights="DEFAULT")
    assert isinstance(net, Lite0Features)
    assert torch.equal(net.features[0][1].weight, imagenet_stem)  # ImageNet weights loaded
    scratch = torchvision.models.get_model(LITE0_BACKBONE, weights=None)
    assert not torch.equal(scratch.features[0][1].weight, imagenet_stem)


def test_features_at_strides_8_16_32() -> None:
    net = Lite0Features(pretrained=False).eval()
    x = torch.rand(1, 3, 320, 320)
    outs = [x]
    with torch.no_grad():
        for stage in net.features:
            outs.append(stage(outs[-1]))
    # The indices and channels yolo26n-lite0.yaml's Index rows take.
    assert tuple(outs[4].shape[1:]) == (40, 40, 40)
    assert tuple(outs[6].shape[1:]) == (112, 20, 20)
    assert tuple(outs[8].shape[1:]) == (320, 10, 10)
    assert torch.equal(InputScale()(torch.tensor([0.0, 0.5, 1.0])), torch.tensor([-1.0, 0.0, 1.0]))


def test_project_model_finds_the_shipped_yaml() -> None:
    path = Path(project_model(LITE0_YAML))
    assert path.is_file() and path.name == LITE0_YAML
    assert project_model("yolo26n.yaml") == "yolo26n.yaml"  # ultralytics' own
    assert project_model("runs/x/last.pt") == "runs/x/last.pt"


@pytest.mark.slow  # one real epoch and an ONNX export (~40 s)
def test_tiny_training_keeps_the_frozen_backbone_and_exports(
    tmp_path: Path, imagenet_stem: torch.Tensor
) -> None:
    import onnxruntime as ort

    from gesture_recognition.export.onnx_export import export_detector

    data = tiny_yolo_data(tmp_path / "data")
    cfg = DetectorTrainConfig(
        data=data,
        model=LITE0_YAML,
        imgsz=64,
        epochs=1,
        batch=2,
        workers=0,
        plots=False,
        project=tmp_path / "runs",
        name="lite0",
        freeze=1,
        warmup_epochs=0,  # else the first steps' weight learning rate is 0: nothing could move
    )
    best = train_detector(cfg)
    last = best.with_name("last.pt")
    assert last.is_file()
    saved: Any = torch.load(last, map_location="cpu", weights_only=False)
    net = saved["model"].float()
    backbone = net.model[0].m
    # Frozen: still ImageNet's, up to the float16 the checkpoint stores (an unfrozen stem moves
    # by about the learning rate, 2e-3, in its one AdamW step).
    stem = backbone[0][1].weight.float()
    assert bool(((stem - imagenet_stem).abs() <= imagenet_stem.abs() * 2**-10 + 1e-7).all())
    assert saved["train_args"]["freeze"] == 1

    export_detector(last, tmp_path / "models", imgsz=64, max_batch=2)
    session = ort.InferenceSession(
        str(tmp_path / "models" / "hand_detector.onnx"), providers=["CPUExecutionProvider"]
    )
    x = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    (out,) = session.run(None, {session.get_inputs()[0].name: x})
    assert out.shape[0] == 2 and out.shape[2] == 6
