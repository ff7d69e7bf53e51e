"""Continue training from a shipped detector ONNX: rebuild the ultralytics model it came from.

Only the ONNX file of a shipped detector is kept in the repository (checkpoints live in the
ignored ``runs/``), and no pretrained YOLO weights can be downloaded here. A new detector
would otherwise start from random weights and spend CPU-hours relearning what the shipped one
knows. ultralytics exports a *fused* network (each Conv+BatchNorm folded into one convolution
with a bias) under the original parameter names, so the model can be rebuilt from its
``*.yaml`` and the fused weights put back:

* the convolution takes the fused weight;
* its BatchNorm is set so that it adds the fused bias and otherwise passes the activations
  through. With ``gamma = sqrt(var + eps)``, ``beta = mean + bias`` and running statistics
  ``(mean, var)`` measured on real photos, eval mode gives exactly ``conv(x) + bias`` and
  training mode (batch statistics close to ``mean, var``) nearly so, so training starts from
  the shipped network instead of a renormalised one;
* a timm backbone's convolutions (``yolo26n-lite0``) were folded with their BatchNorms by the
  ONNX exporter itself and carry anonymous initializers: they are matched to their modules by
  the scope in their node's name;
* the YOLO26 head's one-to-many branch, used only in training and not exported, starts as a
  copy of the exported one-to-one branch (they are the same architecture; ultralytics builds
  one as a deep copy of the other).

:func:`rebuild_detector` checks the rebuilt model against the ONNX file on the photos it
calibrated on and refuses to write a checkpoint that does not reproduce it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gesture_recognition.artifacts import read_detector_spec
from gesture_recognition.images import load_image
from gesture_recognition.letterbox import letterbox, to_detector_tensor
from gesture_recognition.training.offline import configure_offline

# The rebuilt network must give the ONNX network's raw outputs to within this (box pixels and
# scores in one tensor; float32 reordering alone gives ~1e-4).
MAX_ABS_DIFF = 1e-2


@dataclass(frozen=True)
class RebuildReport:
    loaded: int  # parameters taken from the ONNX file
    copied_heads: int  # one-to-many head parameters copied from the one-to-one branch
    max_abs_diff: float  # rebuilt vs ONNX on the calibration photos (eval mode)
    photos: int


def _scope_module(node_name: str) -> str:
    """An ONNX node's scope -> the module path it ran in.

    ``/model.0/m.1/m.1.0/conv_dw/Conv`` -> ``model.0.m.1.0.conv_dw``: the exporter names each
    level of a nested container with its whole dotted name, so a level extending the previous
    one replaces it.
    """
    path: list[str] = []
    for part in node_name.strip("/").split("/")[:-1]:
        if path and part.startswith(path[-1] + "."):
            path[-1] = part
        else:
            path.append(part)
    return ".".join(path)


def _onnx_weights(onnx_path: Path) -> dict[str, np.ndarray]:
    """Initializers by parameter name. Convolutions the exporter folded a BatchNorm into itself
    (a timm backbone's, unlike ultralytics' own ``Conv``, fused before export) carry anonymous
    ``onnx::Conv_*`` initializers; they are named after their node's module."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    weights = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type != "Conv" or len(node.input) < 3:
            continue
        if not all(name.startswith("onnx::") for name in node.input[1:3]):
            continue
        module = _scope_module(node.name)
        weights[f"{module}.weight"] = weights[node.input[1]]
        weights[f"{module}.bias"] = weights[node.input[2]]
    return weights


def _conv_bn_pairs(model: nn.Module) -> list[tuple[str, nn.Conv2d, nn.BatchNorm2d | None]]:
    """Every convolution with the BatchNorm right after it (an ultralytics ``Conv``'s
    ``conv``/``bn``, a timm block's ``conv_dw``/``bn1``), or None when none follows."""
    modules = list(model.named_modules())
    pairs: list[tuple[str, nn.Conv2d, nn.BatchNorm2d | None]] = []
    for i, (name, module) in enumerate(modules):
        if isinstance(module, nn.Conv2d):
            after = modules[i + 1][1] if i + 1 < len(modules) else None
            pairs.append((name, module, after if isinstance(after, nn.BatchNorm2d) else None))
    return pairs


def _one2one_name(name: str) -> str | None:
    """``model.23.cv2.0.1.conv`` -> ``model.23.one2one_cv2.0.1.conv`` (the exported branch)."""
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part in ("cv2", "cv3") and i > 0 and parts[i - 1].isdigit():
            parts[i] = f"one2one_{part}"
            return ".".join(parts)
    return None


def _calibration_batches(photos: Sequence[Path], imgsz: int, stride: int) -> list[torch.Tensor]:
    batches = []
    for path in photos:
        canvas, _ = letterbox(load_image(path), imgsz, stride=stride)
        batches.append(torch.from_numpy(to_detector_tensor(canvas)))
    return batches


def rebuild_detector(
    onnx_path: Path, model_yaml: str, photos: Sequence[Path], imgsz: int | None = None
) -> tuple[nn.Module, RebuildReport]:
    """The ultralytics ``DetectionModel`` behind a fused ONNX export, checked against it."""
    if not photos:
        raise ValueError("rebuilding a detector needs a few real photos to calibrate on")
    configure_offline()
    from ultralytics.nn.tasks import DetectionModel

    from gesture_recognition.training.detector_backbones import register_backbones

    register_backbones()  # yolo26n-lite0.yaml names the Lite0 backbone

    onnx_path = Path(onnx_path)
    spec = read_detector_spec(onnx_path.with_suffix(".json"))
    imgsz = imgsz or spec.imgsz
    weights = _onnx_weights(onnx_path)
    model = DetectionModel(model_yaml, nc=1, verbose=False)
    model.eval()

    loaded = copied = 0
    pairs = _conv_bn_pairs(model)
    for name, conv, bn in pairs:
        source = name if f"{name}.weight" in weights else _one2one_name(name)
        if source is None or f"{source}.weight" not in weights:
            raise ValueError(
                f"{onnx_path.name} has no weights for {name} (not a {model_yaml} export?)"
            )
        w = torch.from_numpy(weights[f"{source}.weight"].copy())
        b = torch.from_numpy(weights[f"{source}.bias"].copy())
        if w.shape != conv.weight.shape:
            raise ValueError(
                f"{name}: ONNX weight {tuple(w.shape)}, model {tuple(conv.weight.shape)}"
            )
        with torch.no_grad():
            conv.weight.copy_(w)
            if bn is None:
                assert conv.bias is not None
                conv.bias.copy_(b)
            else:  # identity for now; the calibration below sets the real statistics
                assert bn.running_mean is not None and bn.running_var is not None
                bn.weight.fill_(1.0)
                bn.bias.copy_(b)
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
        if source == name:
            loaded += 2
        else:
            copied += 2

    batches = _calibration_batches(photos, imgsz, spec.letterbox_stride)
    _calibrate_batchnorm(model, [bn for _, _, bn in pairs if bn is not None], batches)
    diff = _compare_with_onnx(model, onnx_path, batches)
    report = RebuildReport(loaded, copied, diff, len(batches))
    if not diff <= MAX_ABS_DIFF:
        raise RuntimeError(
            f"the rebuilt {model_yaml} differs from {onnx_path.name} by {diff:.3g} (> "
            f"{MAX_ABS_DIFF}): not the network the ONNX file holds"
        )
    return model, report


@torch.no_grad()
def _calibrate_batchnorm(
    model: nn.Module, norms: Sequence[nn.BatchNorm2d], batches: Sequence[torch.Tensor]
) -> None:
    """Set each BatchNorm to ``x -> x + bias`` around the statistics of its real inputs.

    With identity BatchNorms the model *is* the fused network in eval mode, so the inputs seen
    here are the shipped network's activations.
    """
    sums: dict[int, list[torch.Tensor]] = {id(bn): [] for bn in norms}

    def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0].detach().double()
        sums[id(module)].append(torch.stack([x.mean(dim=(0, 2, 3)), (x * x).mean(dim=(0, 2, 3))]))

    handles = [bn.register_forward_pre_hook(hook) for bn in norms]
    try:
        for x in batches:
            model(x)
    finally:
        for h in handles:
            h.remove()
    for bn in norms:
        moments = torch.stack(sums[id(bn)]).mean(0)
        mean = moments[0]
        var = (moments[1] - mean * mean).clamp_min(0.0)
        bias = bn.bias.detach().double().clone()
        assert bn.running_mean is not None and bn.running_var is not None
        bn.running_mean.copy_(mean.float())
        bn.running_var.copy_(var.float())
        bn.weight.copy_(torch.sqrt(var + bn.eps).float())
        bn.bias.copy_((mean + bias).float())


@torch.no_grad()
def _compare_with_onnx(model: nn.Module, onnx_path: Path, batches: Sequence[torch.Tensor]) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    head: Any = model.model[-1]  # type: ignore[index]
    was_end2end = head.end2end
    head.end2end = True  # the exported branch and its top-k, as in the ONNX graph
    worst = 0.0
    model.eval()
    try:
        for x in batches:
            ours = model(x)
            ours = (ours[0] if isinstance(ours, (list, tuple)) else ours).numpy()
            theirs = session.run(None, {name: x.numpy()})[0]
            # Rows the server can keep; below that, near-equal scores may swap places in top-k.
            keep = theirs[0, :, 4] >= 0.05
            if keep.any():
                worst = max(worst, float(np.abs(ours[0, keep] - theirs[0, keep]).max()))
    finally:
        head.end2end = was_end2end
    return worst


def save_checkpoint(model: nn.Module, path: Path, model_yaml: str, imgsz: int) -> Path:
    """An ultralytics checkpoint that ``YOLO(path)`` and ``train --model path`` accept."""
    from ultralytics import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "model": model,
            "train_args": {"model": model_yaml, "imgsz": imgsz, "task": "detect"},
            "version": __version__,
        },
        path,
    )
    return path
