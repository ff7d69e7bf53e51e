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
    # A crop is a strided view into the photo, and PIL's fromarray copies such a view through
    # a slow generic path (2.1 ms for a typical hand crop); a contiguous copy first costs
    # microseconds and gives the same pixels.
    contiguous = np.ascontiguousarray(crop)
    return np.asarray(Image.fromarray(contiguous).resize((size, size), Image.Resampling.BILINEAR))


def normalize(
    resized: NDArray[np.uint8], mean: Sequence[float], std: Sequence[float]
) -> NDArray[np.float32]:
    """``[S, S, 3]`` uint8 -> ``[3, S, S]`` float32, ``(x / 255 - mean) / std`` per channel."""
    # The same operations in the same order as ``(x / 255 - mean) / std`` on [S, S, 3], so the
    # values are bit-identical, but computed in place in channel-first order: 0.2 ms instead of
    # 1.3 ms per 224 px crop (no temporaries, no strided copy at the end).
    out = np.empty((3, *resized.shape[:2]), dtype=np.float32)
    np.divide(resized.transpose(2, 0, 1), np.float32(255.0), out=out, casting="unsafe")
    out -= np.asarray(mean, np.float32)[:, None, None]
    out /= np.asarray(std, np.float32)[:, None, None]
    return out


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
