"""Hand crop -> classifier input tensor. Used by training (evaluation transform), the
``hand_crops`` Triton model and the in-process pipeline alike."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from PIL import Image


def resize_crop(crop: NDArray[np.uint8], size: int) -> NDArray[np.uint8]:
    """Resize a ``[h, w, 3]`` crop to ``[size, size, 3]`` (bilinear, as in training)."""
    if crop.shape[0] == size and crop.shape[1] == size:
        return crop
    return np.asarray(Image.fromarray(crop).resize((size, size), Image.Resampling.BILINEAR))


def normalize(
    resized: NDArray[np.uint8], mean: Sequence[float], std: Sequence[float]
) -> NDArray[np.float32]:
    """``[S, S, 3]`` uint8 -> ``[3, S, S]`` float32, ``(x / 255 - mean) / std`` per channel."""
    x = resized.astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def crops_to_batch(
    crops: Sequence[NDArray[np.uint8]],
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> NDArray[np.float32]:
    """Crops -> ``[N, 3, size, size]`` float32 (N may be 0)."""
    if not crops:
        return np.zeros((0, 3, size, size), dtype=np.float32)
    return np.stack([normalize(resize_crop(c, size), mean, std) for c in crops])
