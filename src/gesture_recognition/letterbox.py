"""Letterboxing for the detector: aspect-preserving resize onto a grey-padded canvas.

The detector is trained by ultralytics with the same scheme (pad value 114, centred image),
and this module maps its boxes back to the photo. The canvas is either the square
``size x size`` (``stride=0``) or, as ultralytics' own ``predict`` and ``val`` do with a
dynamic-shape model, the smallest canvas whose sides are multiples of the network's stride
(``LetterBox(auto=True)``): a 640x480 photo becomes 320x256 instead of 320x320, a fifth fewer
pixels for the detector to compute.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image

PAD_VALUE = 114
# See letterbox(): PIL's two-step resize, integer box reduction first.
REDUCING_GAP = 1.0


@dataclass(frozen=True)
class LetterboxParams:
    """How a photo was placed on the canvas: ``canvas = photo * scale + (pad_x, pad_y)``."""

    scale: float
    pad_x: float
    pad_y: float

    def as_array(self) -> NDArray[np.float32]:
        return np.array([self.scale, self.pad_x, self.pad_y], dtype=np.float32)

    @classmethod
    def from_array(cls, values: NDArray[np.float32]) -> LetterboxParams:
        flat = np.asarray(values, dtype=np.float32).reshape(-1)
        if flat.shape[0] != 3:
            raise ValueError(f"letterbox parameters need 3 values, got {flat.shape[0]}")
        return cls(float(flat[0]), float(flat[1]), float(flat[2]))


def canvas_side(resized: int, size: int, stride: int, min_side: int = 0) -> int:
    """One side of the canvas that holds ``resized`` pixels: ``size``, or with ``stride > 0``
    the smallest multiple of ``stride`` that is at least ``resized`` and ``min_side`` (never
    above ``size`` when ``size`` is itself a multiple, which ``DetectorSpec`` enforces)."""
    if stride < 0:
        raise ValueError(f"stride must be >= 0, got {stride}")
    if stride == 0:
        return size
    side = resized + (size - resized) % stride
    return min(max(side, min_side), size)


@dataclass(frozen=True)
class _Placement:
    scale: float
    new_w: int  # the resized photo
    new_h: int
    canvas_w: int
    canvas_h: int


def _placement(width: int, height: int, size: int, stride: int, min_side: int) -> _Placement:
    scale = min(size / width, size / height)
    new_w = max(1, round(width * scale))
    new_h = max(1, round(height * scale))
    return _Placement(
        scale,
        new_w,
        new_h,
        canvas_side(new_w, size, stride, min_side),
        canvas_side(new_h, size, stride, min_side),
    )


def canvas_shape(
    width: int, height: int, size: int, stride: int = 0, min_side: int = 0
) -> tuple[int, int]:
    """``(canvas_height, canvas_width)`` of a ``width`` x ``height`` photo."""
    place = _placement(width, height, size, stride, min_side)
    return place.canvas_h, place.canvas_w


def min_canvas_side(size: int, strides: Sequence[int], detections: int) -> int:
    """The shortest canvas side (a multiple of the largest stride, at most ``size``) such that
    even a square canvas of that side gives a detector with these output ``strides`` at least
    ``detections`` anchors.

    An exported YOLO26 head ends in a TopK of a fixed ``k`` (its 300 output rows): ultralytics
    picks ``min(k, anchors)`` in PyTorch, but the ONNX trace keeps ``k`` as a constant, so a
    canvas with fewer anchors (320x32 has 210) fails inside ONNX Runtime. Square, not just
    ``size`` by the side, so that a TensorRT profile's min shape (both sides at the minimum)
    is a shape the network can run.
    """
    step = max(strides)
    for side in range(step, size + 1, step):
        if sum((side // s) ** 2 for s in strides) >= detections:
            return side
    return size


def letterbox_params(
    width: int, height: int, size: int, stride: int = 0, min_side: int = 0
) -> LetterboxParams:
    return _params(_placement(width, height, size, stride, min_side))


def _params(place: _Placement) -> LetterboxParams:
    return LetterboxParams(
        place.scale, (place.canvas_w - place.new_w) // 2, (place.canvas_h - place.new_h) // 2
    )


def letterbox(
    image: NDArray[np.uint8], size: int, stride: int = 0, min_side: int = 0
) -> tuple[NDArray[np.uint8], LetterboxParams]:
    """``[H, W, 3]`` uint8 photo -> uint8 canvas and its placement.

    The canvas is ``[size, size, 3]`` with ``stride=0``, else the smallest ``[h, w, 3]`` with
    ``h`` and ``w`` multiples of ``stride`` and at least ``min_side`` (see the module
    docstring and :func:`min_canvas_side`).
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {image.shape}")
    height, width = image.shape[:2]
    place = _placement(width, height, size, stride, min_side)
    params = _params(place)
    new_w, new_h = place.new_w, place.new_h
    if (new_w, new_h) != (width, height):
        # reducing_gap=1: shrink by the whole factor with PIL's box reduce() first, then
        # bilinear for the rest. 640x480 -> 320x240 takes 0.36 ms instead of 2.7 ms (plain
        # antialiased bilinear), and a box average is itself an antialiased downscale; the
        # shipped detector's mAP was measured with this letterbox (models/MODEL_CARD.md).
        resized = np.asarray(
            Image.fromarray(np.ascontiguousarray(image)).resize(
                (new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=REDUCING_GAP
            )
        )
    else:
        resized = image
    canvas = np.full((place.canvas_h, place.canvas_w, 3), PAD_VALUE, dtype=np.uint8)
    x0, y0 = int(params.pad_x), int(params.pad_y)
    canvas[y0 : y0 + new_h, x0 : x0 + new_w] = resized
    return canvas, params


def to_detector_tensor(canvas: NDArray[np.uint8]) -> NDArray[np.float32]:
    """``[h, w, 3]`` uint8 canvas -> ``[1, 3, h, w]`` float32 in [0, 1] (ultralytics' input).

    Written straight into a C-contiguous array: a transposed float view costs a strided copy
    later (ONNX Runtime and Triton both need contiguous tensors), 2.3 ms vs 0.3 ms at 320 px.
    """
    out = np.empty((1, 3, *canvas.shape[:2]), dtype=np.float32)
    np.divide(canvas.transpose(2, 0, 1), np.float32(255.0), out=out[0], casting="unsafe")
    return out


def unletterbox_boxes(boxes: NDArray[np.float32], params: LetterboxParams) -> NDArray[np.float32]:
    """Canvas-pixel boxes ``[N, 4]`` -> photo-pixel boxes (not clipped)."""
    out = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
    out[:, [0, 2]] = (out[:, [0, 2]] - params.pad_x) / params.scale
    out[:, [1, 3]] = (out[:, [1, 3]] - params.pad_y) / params.scale
    return out
