"""Hand-box post-processing: ordering, selection, expansion, clipping and cropping.

This is the one implementation of the step between detector and classifier. Training cuts its
crops with it and the Triton ``hand_crops`` model serves with it, so a classifier sees at
inference exactly the kind of crop it was trained on.

Boxes are ``float32`` arrays of shape ``[N, 4]`` holding ``x1, y1, x2, y2`` in pixels of the
photo, continuous coordinates (pixel ``i`` spans ``[i, i + 1)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gesture_recognition.json_fields import Fields, as_float

FloatArray = NDArray[np.float32]
UInt8Array = NDArray[np.uint8]


@dataclass(frozen=True)
class CropConfig:
    """How a detector box becomes a classifier crop.

    Detector boxes tend to clip fingertips and the thumb; the original pipeline grew the box
    so the whole hand is inside. ``scale`` grows each side around the centre, ``square`` then
    makes the box square on its longer side so the classifier's square input does not squash
    the hand.
    """

    scale: float = 1.2
    square: bool = True

    def __post_init__(self) -> None:
        if not math.isfinite(self.scale) or self.scale < 1.0 or self.scale > 4.0:
            raise ValueError(f"crop scale must be within [1, 4], got {self.scale}")

    def to_dict(self) -> dict[str, object]:
        return {"scale": self.scale, "square": self.square}

    @classmethod
    def from_dict(cls, data: Fields) -> CropConfig:
        return cls(
            scale=as_float(data.get("scale", 1.2), "crop.scale"),
            square=bool(data.get("square", True)),
        )


def as_boxes(boxes: object) -> FloatArray:
    """Validate and convert to a ``[N, 4]`` float32 array (N may be 0)."""
    arr = np.asarray(boxes, dtype=np.float32)
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.float32)
    if arr.ndim == 1 and arr.shape[0] == 4:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must have shape [N, 4], got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("boxes contain NaN or Inf")
    return arr


def clip_boxes(boxes: FloatArray, width: int, height: int) -> FloatArray:
    """Clip to the photo and keep every box at least one pixel wide and high.

    A box wholly outside the photo collapses onto the nearest one-pixel strip of the border
    rather than vanishing, so a crop cut from a clipped box is never empty.
    """
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    b = as_boxes(boxes).copy()
    x1 = np.clip(np.minimum(b[:, 0], b[:, 2]), 0.0, width - 1.0)
    y1 = np.clip(np.minimum(b[:, 1], b[:, 3]), 0.0, height - 1.0)
    x2 = np.clip(np.maximum(b[:, 0], b[:, 2]), 0.0, float(width))
    y2 = np.clip(np.maximum(b[:, 1], b[:, 3]), 0.0, float(height))
    x2 = np.maximum(x2, x1 + 1.0)
    y2 = np.maximum(y2, y1 + 1.0)
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)


def expand_boxes(boxes: FloatArray, config: CropConfig, width: int, height: int) -> FloatArray:
    """Grow boxes around their centres (and square them), then clip to the photo."""
    # float64: a finite but huge float32 box (the property tests found 1.7e38) overflows to
    # Inf when grown in float32, and the crop step then failed on it.
    b = as_boxes(boxes).astype(np.float64)
    cx = (b[:, 0] + b[:, 2]) / 2.0
    cy = (b[:, 1] + b[:, 3]) / 2.0
    w = np.abs(b[:, 2] - b[:, 0]) * config.scale
    h = np.abs(b[:, 3] - b[:, 1]) * config.scale
    if config.square:
        side = np.maximum(w, h)
        w, h = side, side
    grown = np.stack([cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0], axis=1)
    # Onto the photo while still float64 (same result as clip_boxes alone, which is monotone
    # per coordinate), so the float32 conversion inside clip_boxes cannot overflow.
    grown[:, 0::2] = np.clip(grown[:, 0::2], 0.0, float(width))
    grown[:, 1::2] = np.clip(grown[:, 1::2], 0.0, float(height))
    return clip_boxes(grown, width, height)


def topmost_order(boxes: FloatArray) -> NDArray[np.int64]:
    """Indices from the topmost box down (smallest ``y1`` first; ties by ``x1``).

    The gesture is usually shown by the raised hand, so the topmost box is the training crop
    and the first hand the server reports.
    """
    b = as_boxes(boxes)
    return np.lexsort((b[:, 0], b[:, 1])).astype(np.int64)


def select_topmost(boxes: FloatArray) -> int | None:
    """Index of the topmost box, or None when there is none."""
    b = as_boxes(boxes)
    if len(b) == 0:
        return None
    return int(topmost_order(b)[0])


def box_iou(a: FloatArray, b: FloatArray) -> NDArray[np.float64]:
    """IoU of every box in ``a`` ``[N, 4]`` with every box in ``b`` ``[M, 4]`` -> ``[N, M]``.

    Continuous pixel coordinates (no COCO/VOC ``+1``): a box's area is ``(x2-x1) * (y2-y1)``.
    """
    a64 = as_boxes(a).astype(np.float64)
    b64 = as_boxes(b).astype(np.float64)
    x1 = np.maximum(a64[:, None, 0], b64[None, :, 0])
    y1 = np.maximum(a64[:, None, 1], b64[None, :, 1])
    x2 = np.minimum(a64[:, None, 2], b64[None, :, 2])
    y2 = np.minimum(a64[:, None, 3], b64[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a64[:, 2] - a64[:, 0]) * (a64[:, 3] - a64[:, 1])
    area_b = (b64[:, 2] - b64[:, 0]) * (b64[:, 3] - b64[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def limit_hands(scores: NDArray[np.float32], max_hands: int) -> NDArray[np.int64]:
    """Indices of at most ``max_hands`` boxes, the most confident first."""
    if max_hands < 1:
        raise ValueError(f"max_hands must be >= 1, got {max_hands}")
    order = np.argsort(-np.asarray(scores, dtype=np.float32), kind="stable")
    return order[:max_hands].astype(np.int64)


def pixel_window(box: FloatArray, width: int, height: int) -> tuple[int, int, int, int]:
    """Integer pixel window ``(x1, y1, x2, y2)`` covering a box, inside the photo, never empty."""
    clipped = clip_boxes(np.asarray(box, dtype=np.float32).reshape(1, 4), width, height)[0]
    x1 = math.floor(float(clipped[0]))
    y1 = math.floor(float(clipped[1]))
    x2 = max(math.ceil(float(clipped[2])), x1 + 1)
    y2 = max(math.ceil(float(clipped[3])), y1 + 1)
    return x1, y1, min(x2, width), min(y2, height)


def crop(image: UInt8Array, box: FloatArray) -> UInt8Array:
    """The pixels of ``image`` (``[H, W, C]``) under ``box``; at least 1x1."""
    if image.ndim != 3:
        raise ValueError(f"image must be [H, W, C], got shape {image.shape}")
    height, width = image.shape[:2]
    x1, y1, x2, y2 = pixel_window(box, width, height)
    return image[y1:y2, x1:x2]


def expanded_crops(image: UInt8Array, boxes: FloatArray, config: CropConfig) -> list[UInt8Array]:
    """Expanded crops of every box, in the order given."""
    height, width = image.shape[:2]
    expanded = expand_boxes(boxes, config, width, height)
    return [crop(image, box) for box in expanded]


def topmost_hand_crop(
    image: UInt8Array, boxes: FloatArray, config: CropConfig
) -> UInt8Array | None:
    """The training crop of a photo: the expanded topmost box, or None with no box."""
    index = select_topmost(boxes)
    if index is None:
        return None
    return expanded_crops(image, as_boxes(boxes)[index : index + 1], config)[0]
