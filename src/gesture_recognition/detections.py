"""Decoding the detector's output into hand boxes in photo pixels.

The exported detector ends in NMS (or is NMS-free, as YOLO26 is), so its output is already a
short list ``[D, 6]`` of ``x1 y1 x2 y2 score class`` rows in letterboxed-canvas pixels, padded
with zero-score rows.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from gesture_recognition.boxes import clip_boxes
from gesture_recognition.letterbox import LetterboxParams, unletterbox_boxes


def decode_detections(
    raw: NDArray[np.float32],
    params: LetterboxParams,
    width: int,
    height: int,
    conf_threshold: float,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """``[D, 6]`` detector rows -> (boxes ``[N, 4]`` clipped to the photo, scores ``[N]``).

    Rows are returned most confident first; non-finite rows are dropped, not propagated.
    """
    rows = np.asarray(raw, dtype=np.float32).reshape(-1, 6)
    keep = np.isfinite(rows).all(axis=1) & (rows[:, 4] >= conf_threshold)
    rows = rows[keep]
    order = np.argsort(-rows[:, 4], kind="stable")
    rows = rows[order]
    boxes = unletterbox_boxes(rows[:, :4], params)
    if len(boxes):
        boxes = clip_boxes(boxes, width, height)
    return boxes.astype(np.float32), rows[:, 4].astype(np.float32)
