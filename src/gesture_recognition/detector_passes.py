"""Running the hand detector on a photo: one pass, or two when the spec asks for a second look.

The detector sees the photo shrunk onto a small canvas (``imgsz``, 320 for the shipped one), so
a hand of a person far from the camera can be a few pixels wide there and be missed. A spec with
``second_pass_imgsz`` looks again, on a larger canvas, at photos where the first pass found no
box at the served threshold: the cost of the larger input is paid only on those photos
(``reports/small_hands/``). The in-process pipeline and the cpu flavour's ``hand_detector``
model both run the detector through here, so they answer alike.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from gesture_recognition.artifacts import DetectorSpec
from gesture_recognition.detections import decode_detections
from gesture_recognition.letterbox import LetterboxParams, letterbox, to_detector_tensor

FloatArray = NDArray[np.float32]
# The network: ``[1, 3, h, w]`` in [0, 1] -> rows ``[1, D, 6]`` (``runtime.DetectorRunner``).
Network = Callable[[FloatArray], FloatArray]


def detector_input(
    photo: NDArray[np.uint8], spec: DetectorSpec
) -> tuple[FloatArray, LetterboxParams]:
    """The photo on the spec's canvas as the network's input, and where it was placed."""
    canvas, params = letterbox(photo, spec.imgsz, spec.letterbox_stride, spec.min_side)
    return to_detector_tensor(canvas), params


def finds_a_box(
    rows: FloatArray, params: LetterboxParams, photo: NDArray[np.uint8], spec: DetectorSpec
) -> bool:
    """Whether decoding ``rows`` at the served threshold gives any box."""
    height, width = photo.shape[:2]
    boxes, _ = decode_detections(rows[0], params, width, height, spec.conf_threshold)
    return len(boxes) > 0


def run_detector(
    network: Network, photo: NDArray[np.uint8], spec: DetectorSpec
) -> tuple[FloatArray, LetterboxParams]:
    """The rows ``[1, D, 6]`` of the pass that answers for ``photo`` (a checked ``[H, W, 3]``
    uint8 array) and where that pass's canvas placed it: the pass at ``spec.imgsz``, then, if
    it finds no box and the spec has a second pass, the second pass's."""
    tensor, params = detector_input(photo, spec)
    rows = network(tensor)
    second = spec.second_pass
    if second is not None and not finds_a_box(rows, params, photo, spec):
        tensor, params = detector_input(photo, second)
        rows = network(tensor)
    return rows, params
