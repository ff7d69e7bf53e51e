"""Decoding the detector's output into hand boxes in photo pixels.

The exported detector ends in NMS (or is NMS-free, as YOLO26 is), so its output is already a
short list ``[D, 6]`` of ``x1 y1 x2 y2 score class`` rows in letterboxed-canvas pixels, padded
with zero-score rows. An NMS-free head can still give one hand two near-identical boxes (the
2026-12-03 fine-tune did on close-up webcam hands, at IoU ~0.97): boxes overlapping a more
confident one by more than ``DUPLICATE_IOU`` are dropped here, where serving, the in-process
pipeline and the evaluation all decode.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from gesture_recognition.boxes import box_iou, clip_boxes
from gesture_recognition.letterbox import LetterboxParams, unletterbox_boxes

# Two real hands overlap this much only when one covers the other; duplicates overlap ~0.95.
DUPLICATE_IOU = 0.7


def decode_detections(
    raw: NDArray[np.float32],
    params: LetterboxParams,
    width: int,
    height: int,
    conf_threshold: float,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """``[D, 6]`` detector rows -> (boxes ``[N, 4]`` clipped to the photo, scores ``[N]``).

    Rows are returned most confident first; non-finite rows are dropped, not propagated, and
    so are duplicates (IoU > ``DUPLICATE_IOU`` with a more confident box).
    """
    rows = np.asarray(raw, dtype=np.float32).reshape(-1, 6)
    keep = np.isfinite(rows).all(axis=1) & (rows[:, 4] >= conf_threshold)
    rows = rows[keep]
    order = np.argsort(-rows[:, 4], kind="stable")
    rows = rows[order]
    boxes = unletterbox_boxes(rows[:, :4], params)
    scores = rows[:, 4]
    if len(boxes):
        boxes = clip_boxes(boxes, width, height)
        keep = distinct_boxes(boxes)
        boxes, scores = boxes[keep], scores[keep]
    return boxes.astype(np.float32), scores.astype(np.float32)


def distinct_boxes(boxes: NDArray[np.float32], max_iou: float = DUPLICATE_IOU) -> NDArray[np.intp]:
    """Indices of the boxes (most confident first) that overlap no earlier kept box by more
    than ``max_iou``: greedy NMS, for the few rows an NMS-free head leaves."""
    iou = box_iou(boxes, boxes)
    keep = np.ones(len(boxes), dtype=bool)
    for i in range(len(boxes)):
        if keep[i]:
            keep[i + 1 :] &= iou[i, i + 1 :] <= max_iou
    return np.flatnonzero(keep)
