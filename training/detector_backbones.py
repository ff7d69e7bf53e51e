"""An ImageNet-pretrained EfficientNet-Lite0 backbone under ultralytics' YOLO neck and head.

The detector trained from random weights has seen few people; a backbone that has seen
ImageNet brings features for skin, hands and clutter it never had to learn from our photos.
Nothing may be downloaded, so the only ImageNet weights are EfficientNet-Lite0's (see
``pretrained``). ultralytics already composes torchvision networks into a YOLO model through
its ``TorchVision`` block (``docs.ultralytics.com/guides/model-yaml-config``, "TorchVision
integration"), which calls ``torchvision.models.get_model(name, weights=...)``. Registering the
Lite0 feature extractor under a torchvision model name lets a plain model YAML use it
(``detector_models/yolo26n-lite0.yaml``) with no change to ultralytics' parser or trainer.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

# The name the model YAML asks torchvision for.
LITE0_BACKBONE = "gesture_efficientnet_lite0"
MODELS_DIR = Path(__file__).resolve().parent / "detector_models"
LITE0_STAGES = 7  # the stages after the stem (timm's ``blocks``)


def _backbone_part(index: int) -> str:
    # The YAML's layer 0 is a ``TorchVision`` block; its Sequential ``m`` holds the stem (0)
    # then the stages. ultralytics names a layer's parameters ``model.<this>.``.
    return f"0.m.{index}"


class InputScale(nn.Module):
    """[0, 1] images (ultralytics' input) to [-1, 1] (the Lite0 weights' mean 0.5, std 0.5)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2.0 - 1.0


class Lite0Features(nn.Module):
    """Lite0's stem and its seven stages, nothing after (no 1280-channel head, no classifier).

    One child, a Sequential, so ``TorchVision(unwrap=True, truncate=0, split=True)`` returns
    the input then each stage's output: index 4 is stride 8 (40 ch), 6 stride 16 (112 ch),
    8 stride 32 (320 ch).
    """

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        from gesture_recognition.training.pretrained import create_classifier

        net = create_classifier(num_classes=1000, pretrained=pretrained, drop_rate=0.0)
        part = net.get_submodule
        stem = nn.Sequential(InputScale(), part("conv_stem"), part("bn1"))
        self.features = nn.Sequential(stem, *part("blocks").children())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def _build_lite0(*, weights: object = None, progress: bool = True) -> nn.Module:
    # torchvision's builder signature; any truthy ``weights`` ("DEFAULT") means ImageNet.
    del progress
    return Lite0Features(pretrained=bool(weights))


def register_backbones() -> None:
    """Make ``torchvision.models.get_model(LITE0_BACKBONE)`` build the Lite0 features.

    Idempotent. Needed in any process that builds the model from its YAML (training, and
    ultralytics' rebuild on resume); loading a saved ``*.pt`` only needs this module importable.
    """
    from torchvision.models import _api

    if LITE0_BACKBONE not in _api.BUILTIN_MODELS:
        _api.register_model(LITE0_BACKBONE)(_build_lite0)


def frozen_backbone_layers(blocks: int) -> list[str]:
    """ultralytics ``freeze`` entries that hold the Lite0 stem and its first ``blocks`` stages.

    The early, high-resolution stages see edges and colour that ImageNet taught well and cost
    most to back-propagate through; the later ones are where hands differ from ImageNet's
    objects. ultralytics freezes a parameter when ``f"model.{entry}."`` is part of its name (and
    keeps those layers' BatchNorm statistics fixed).
    """
    if not 0 <= blocks <= LITE0_STAGES:
        raise ValueError(f"freeze_blocks {blocks}: the Lite0 backbone has {LITE0_STAGES} stages")
    return [_backbone_part(i) for i in range(blocks + 1)]


def require_lite0_backbone(network: object) -> None:
    """Refuse ``freeze_blocks`` on a network without the Lite0 backbone at layer 0.

    ultralytics matches ``freeze`` entries by name and silently freezes nothing when none
    matches (e.g. YOLO26n's own layer 0 is a plain Conv): training would then look right and
    move the layers the user meant to keep.
    """
    last_stage = f"model.{_backbone_part(LITE0_STAGES)}."
    names = [n for n, _ in network.named_parameters()] if isinstance(network, nn.Module) else []
    if not any(name.startswith(last_stage) for name in names):
        raise ValueError(
            "freeze_blocks needs the Lite0 backbone at layer 0 (yolo26n-lite0.yaml or a checkpoint "
            "trained from it); this model has none: use freeze for whole layers"
        )


def project_model(name: str) -> str:
    """The path of a model YAML shipped with the project (``yolo26n-lite0.yaml``), else ``name``."""
    local = MODELS_DIR / name
    return str(local) if name.endswith(".yaml") and local.is_file() else name
