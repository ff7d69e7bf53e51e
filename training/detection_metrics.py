"""Single-class detection AP, computed the way COCO does (no pycocotools needed).

Per image, detections are matched greedily in score order to the unmatched ground-truth box
they overlap most, if that IoU reaches the threshold. Over the whole set, detections are ranked
by score, and AP is the mean of the interpolated precision (the best precision at any recall
>= r) at the 101 recall points r = 0, 0.01, ..., 1. mAP50-95 averages AP over the IoU
thresholds 0.50, 0.55, ..., 0.95.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gesture_recognition.boxes import as_boxes, box_iou

IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def match_image(
    pred_boxes: NDArray[np.float32],
    pred_scores: NDArray[np.float32],
    gt_boxes: NDArray[np.float32],
    thresholds: Sequence[float] = IOU_THRESHOLDS,
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Scores (descending) and true-positive flags ``[T, D]`` of one image's detections.

    A ground-truth box matches at most one detection; each detection takes the unmatched
    ground-truth box it overlaps most among those with IoU >= the threshold (COCO's rule).
    """
    pred = as_boxes(pred_boxes)
    scores = np.asarray(pred_scores, dtype=np.float32).reshape(-1)
    if len(scores) != len(pred):
        raise ValueError(f"{len(pred)} boxes but {len(scores)} scores")
    gt = as_boxes(gt_boxes)
    order = np.argsort(-scores, kind="mergesort")
    pred, scores = pred[order], scores[order]
    tp = np.zeros((len(thresholds), len(pred)), dtype=bool)
    if len(pred) == 0 or len(gt) == 0:
        return scores, tp
    ious = box_iou(pred, gt)
    for t, threshold in enumerate(thresholds):
        tp[t] = _greedy_match(ious, threshold)[0]
    return scores, tp


def _greedy_match(
    ious: NDArray[np.float64], threshold: float
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """True-positive flags of the detections (rows, in score order) and the matched flags of
    the ground-truth boxes (columns)."""
    tp = np.zeros(ious.shape[0], dtype=bool)
    taken = np.zeros(ious.shape[1], dtype=bool)
    if ious.shape[1] == 0:
        return tp, taken
    for d in range(ious.shape[0]):
        candidates = np.where(taken, -1.0, ious[d])
        g = int(candidates.argmax())
        if candidates[g] >= threshold:
            taken[g] = True
            tp[d] = True
    return tp, taken


def image_errors(
    pred_boxes: NDArray[np.float32],
    pred_scores: NDArray[np.float32],
    gt_boxes: NDArray[np.float32],
    threshold: float = 0.5,
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """One image's mistakes under the rule above: the indices of the detections that match no
    ground-truth box (false boxes) and of the ground-truth boxes no detection matched (missed)."""
    pred = as_boxes(pred_boxes)
    scores = np.asarray(pred_scores, dtype=np.float32).reshape(-1)
    gt = as_boxes(gt_boxes)
    order = np.argsort(-scores, kind="mergesort")
    tp, taken = _greedy_match(box_iou(pred[order], gt), threshold)
    return np.sort(order[~tp]), np.flatnonzero(~taken)


@dataclass(frozen=True)
class DetectionAP:
    thresholds: tuple[float, ...]
    ap: NDArray[np.float64]  # [T] AP at each IoU threshold
    num_gt: int
    num_pred: int
    # Precision/recall along the ranked detections at the first threshold (IoU 0.50).
    precision: NDArray[np.float64]
    recall: NDArray[np.float64]

    @property
    def map50(self) -> float:
        return self.ap_at(0.5)

    @property
    def map50_95(self) -> float:
        return float(self.ap.mean())

    def ap_at(self, threshold: float) -> float:
        for t, value in zip(self.thresholds, self.ap, strict=True):
            if abs(t - threshold) < 1e-9:
                return float(value)
        raise KeyError(f"AP was not computed at IoU {threshold}")

    @property
    def final_precision(self) -> float:
        """Precision of all the detections taken together (IoU 0.50)."""
        return float(self.precision[-1]) if len(self.precision) else 0.0

    @property
    def final_recall(self) -> float:
        """Recall of all the detections taken together (IoU 0.50)."""
        return float(self.recall[-1]) if len(self.recall) else 0.0


def interpolated_ap(tp: NDArray[np.bool_], num_gt: int) -> tuple[float, NDArray, NDArray]:
    """101-point interpolated AP of flags already in descending score order; also P and R."""
    if num_gt <= 0:
        raise ValueError("AP needs at least one ground-truth box")
    flags = np.asarray(tp, dtype=bool)
    tps = np.cumsum(flags, dtype=np.float64)
    fps = np.cumsum(~flags, dtype=np.float64)
    recall = tps / num_gt
    precision = tps / np.maximum(tps + fps, 1e-12)
    if len(flags) == 0:
        return 0.0, precision, recall
    # Interpolation: the precision at recall r is the best precision at any recall >= r.
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")
    sampled = np.where(idx < len(envelope), envelope[np.minimum(idx, len(envelope) - 1)], 0.0)
    return float(sampled.mean()), precision, recall


def detection_ap(
    predictions: Sequence[tuple[NDArray[np.float32], NDArray[np.float32]]],
    ground_truth: Sequence[NDArray[np.float32]],
    thresholds: Sequence[float] = IOU_THRESHOLDS,
) -> DetectionAP:
    """AP over images: ``predictions[i] = (boxes, scores)``, ``ground_truth[i] = boxes``."""
    if len(predictions) != len(ground_truth):
        raise ValueError(f"{len(predictions)} predictions for {len(ground_truth)} images")
    if not thresholds or abs(thresholds[0] - 0.5) > 1e-9:
        raise ValueError("the first IoU threshold must be 0.5 (the PR curve is taken there)")
    all_scores, all_tp = [], []
    num_gt = 0
    for (boxes, scores), gt in zip(predictions, ground_truth, strict=True):
        s, tp = match_image(boxes, scores, gt, thresholds)
        all_scores.append(s)
        all_tp.append(tp)
        num_gt += len(as_boxes(gt))
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0, np.float32)
    tp = np.concatenate(all_tp, axis=1) if all_tp else np.zeros((len(thresholds), 0), bool)
    # A stable sort keeps COCO's tie order (image order, then score order inside an image).
    order = np.argsort(-scores, kind="mergesort")
    tp = tp[:, order]
    aps, curve = [], None
    for t in range(len(thresholds)):
        ap, precision, recall = interpolated_ap(tp[t], num_gt)
        aps.append(ap)
        if curve is None:
            curve = (precision, recall)
    assert curve is not None
    return DetectionAP(
        thresholds=tuple(float(t) for t in thresholds),
        ap=np.asarray(aps, dtype=np.float64),
        num_gt=num_gt,
        num_pred=len(scores),
        precision=curve[0],
        recall=curve[1],
    )
