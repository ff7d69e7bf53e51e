"""The ImageNet-pretrained Lite0 backbone under YOLO26n's neck and head (``yolo26n-lite0.yaml``).

One tiny real training run (one epoch, two real SubhiH photos with made-up boxes, 64 px) with
the backbone's early stages frozen, then the ONNX export the server loads.
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
    frozen_backbone_layers,
    project_model,
    register_backbones,
    require_lite0_backbone,
)
from gesture_recognition.training.pretrained import create_classifier
from tests.unit.tiny_yolo_data import tiny_yolo_data

LITE0_YAML = "yolo26n-lite0.yaml"


@pytest.fixture(scope="module")
def imagenet_stem() -> torch.Tensor:
    return create_classifier(pretrained=True).conv_stem.weight.detach().clone()


def _first_conv(stage: torch.nn.Module) -> torch.Tensor:
    conv = next(m for m in stage.modules() if isinstance(m, torch.nn.Conv2d))
    return conv.weight.detach().float()


def test_frozen_backbone_layers_name_the_stem_and_stages() -> None:
    assert frozen_backbone_layers(0) == ["0.m.0"]
    assert frozen_backbone_layers(4) == ["0.m.0", "0.m.1", "0.m.2", "0.m.3", "0.m.4"]
    with pytest.raises(ValueError, match="7 stages"):
        frozen_backbone_layers(8)
    with pytest.raises(ValueError, match="not both"):
        DetectorTrainConfig(data=Path("d.yaml"), freeze=1, freeze_blocks=2)
    assert DetectorTrainConfig(data=Path("d.yaml"), freeze=1).ultralytics_freeze() == 1


def test_freeze_blocks_refuses_a_network_without_the_lite0_backbone() -> None:
    from ultralytics.nn.tasks import DetectionModel

    register_backbones()
    require_lite0_backbone(DetectionModel(project_model(LITE0_YAML), nc=1, verbose=False))
    # YOLO26n's layer 0 is a Conv: ultralytics would freeze nothing and say nothing.
    with pytest.raises(ValueError, match="Lite0 backbone"):
        require_lite0_backbone(DetectionModel("yolo26n.yaml", nc=1, verbose=False))


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
def test_tiny_training_keeps_the_frozen_stages_and_exports(tmp_path: Path) -> None:
    import onnxruntime as ort

    from gesture_recognition.artifacts import read_detector_spec
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
        freeze_blocks=4,
        warmup_epochs=0,  # else the first steps' weight learning rate is 0: nothing could move
    )
    best = train_detector(cfg)
    last = best.with_name("last.pt")
    assert last.is_file()
    saved: Any = torch.load(last, map_location="cpu", weights_only=False)
    net = saved["model"].float()
    backbone = net.model[0].m
    imagenet = Lite0Features(pretrained=True).features

    def still_imagenet(i: int) -> bool:
        # Up to the float16 the checkpoint stores; a trained weight moves by about the
        # learning rate, 2e-3, in its one AdamW step.
        w, ref = _first_conv(backbone[i]), _first_conv(imagenet[i])
        return bool(((w - ref).abs() <= ref.abs() * 2**-10 + 1e-7).all())

    assert all(still_imagenet(i) for i in range(5))  # the stem and stages 1-4: frozen
    assert not still_imagenet(5) and not still_imagenet(7)  # stages 5-7: fine-tuned
    assert saved["train_args"]["freeze"] == frozen_backbone_layers(4)

    # A second pass at 128: the export checks the network at that canvas too.
    export_detector(last, tmp_path / "models", imgsz=64, max_batch=2, second_pass_imgsz=128)
    spec = read_detector_spec(tmp_path / "models" / "hand_detector.json")
    assert spec.second_pass is not None and spec.second_pass.imgsz == 128
    session = ort.InferenceSession(
        str(tmp_path / "models" / "hand_detector.onnx"), providers=["CPUExecutionProvider"]
    )
    x = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    (out,) = session.run(None, {session.get_inputs()[0].name: x})
    assert out.shape[0] == 2 and out.shape[2] == 6
