"""The offline ImageNet weights land on the right layers of timm's tf_efficientnet_lite0."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from PIL import Image

from gesture_recognition.classifier_input import normalize
from gesture_recognition.training.pretrained import (
    PretrainedWeightsError,
    create_classifier,
    map_in_order,
    model_mean_std,
)

MILITARY_UNIFORM = 652  # ImageNet class of matplotlib's Grace Hopper portrait


def _center_crop_224(path: str) -> np.ndarray:
    img = Image.open(path).convert("RGB")
    w, h = img.size
    scale = 224 / min(w, h)
    # Bicubic, as timm's pretrained config for this model says.
    img = img.resize((round(w * scale), round(h * scale)), Image.Resampling.BICUBIC)
    w, h = img.size
    left, top = (w - 224) // 2, (h - 224) // 2
    return np.asarray(img.crop((left, top, left + 224, top + 224)))


def test_grace_hopper_is_a_military_uniform() -> None:
    from matplotlib import cbook

    model = create_classifier(num_classes=1000, pretrained=True).eval()
    mean, std = model_mean_std(model)
    assert mean == (0.5, 0.5, 0.5) and std == (0.5, 0.5, 0.5)
    photo = _center_crop_224(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    x = torch.from_numpy(normalize(photo, mean, std))[None]
    with torch.no_grad():
        probs = model(x).softmax(1)[0]
    assert int(probs.argmax()) == MILITARY_UNIFORM
    assert float(probs[MILITARY_UNIFORM]) > 0.3


def test_fresh_head_keeps_the_pretrained_backbone() -> None:
    full = create_classifier(num_classes=1000, pretrained=True)
    seven = create_classifier(num_classes=7, pretrained=True, drop_rate=0.3)
    assert seven.get_classifier().out_features == 7
    a, b = full.state_dict(), seven.state_dict()
    backbone = [k for k in a if not k.startswith("classifier.")]
    assert backbone and all(torch.equal(a[k], b[k]) for k in backbone)
    # A random init would not match the weight file: the backbone really was loaded.
    scratch = create_classifier(num_classes=7, pretrained=False)
    assert not torch.equal(scratch.state_dict()["conv_stem.weight"], b["conv_stem.weight"])


def test_mapping_fails_loudly_on_a_shape_mismatch() -> None:
    source = OrderedDict(a=torch.zeros(3, 2), b=torch.zeros(3))
    target = OrderedDict(x=torch.zeros(3, 2), y=torch.zeros(4))
    with pytest.raises(PretrainedWeightsError, match="shape mismatch"):
        map_in_order(source, target)
    with pytest.raises(PretrainedWeightsError, match="tensors"):
        map_in_order(source, OrderedDict(x=torch.zeros(3, 2)))


def test_no_offline_weights_for_other_architectures() -> None:
    with pytest.raises(PretrainedWeightsError, match="pretrained=False"):
        create_classifier("tf_efficientnetv2_m", num_classes=7, pretrained=True)
    with pytest.raises(ValueError, match="no architecture"):
        create_classifier("not_a_model", num_classes=7, pretrained=False)
