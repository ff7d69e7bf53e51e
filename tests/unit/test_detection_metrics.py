"""Our COCO-style AP on hand-made cases whose answers are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from gesture_recognition.training.detection_metrics import (
    IOU_THRESHOLDS,
    box_iou,
    detection_ap,
    image_errors,
    interpolated_ap,
    match_image,
)


def _b(*rows: list[float]) -> np.ndarray:
    return np.asarray(rows, np.float32).reshape(-1, 4)


def _s(*values: float) -> np.ndarray:
    return np.asarray(values, np.float32)


GT_A = _b([10, 10, 110, 110], [200, 50, 260, 170])
GT_B = _b([0, 0, 100, 100])


def test_iou_values():
    iou = box_iou(_b([0, 0, 10, 10]), _b([0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]))
    np.testing.assert_allclose(iou, [[1.0, 50 / 150, 0.0]])


def test_perfect_boxes_score_one_at_every_threshold():
    result = detection_ap([(GT_A, _s(0.9, 0.8)), (GT_B, _s(0.7))], [GT_A, GT_B])
    assert result.map50 == 1.0
    assert result.map50_95 == 1.0
    np.testing.assert_array_equal(result.ap, np.ones(10))
    assert result.num_gt == 3
    assert result.final_precision == result.final_recall == 1.0


def test_missed_box_caps_recall():
    # 2 of 3 boxes found, all detections right: precision 1 up to recall 2/3, then nothing.
    # 101-point AP = (recall points r <= 2/3, i.e. 0.00..0.66 = 67 points) / 101.
    result = detection_ap([(GT_A, _s(0.9, 0.8)), (_b(), _s())], [GT_A, GT_B])
    assert result.map50 == pytest.approx(67 / 101)
    assert result.final_recall == pytest.approx(2 / 3)
    assert result.final_precision == 1.0


def test_false_positive_ranked_first_halves_precision():
    fp = _b([300, 300, 350, 350])
    boxes = np.concatenate([fp, GT_B])
    # The false positive outranks the true one: precision is 1/2 when recall reaches 1.
    worse = detection_ap([(boxes, _s(0.9, 0.5))], [GT_B])
    assert worse.map50 == pytest.approx(0.5)
    # Ranked after it, the same false positive costs nothing (AP is about the ranking).
    better = detection_ap([(boxes, _s(0.1, 0.5))], [GT_B])
    assert better.map50 == 1.0
    assert better.final_precision == 0.5


def test_interpolation_by_hand():
    # Ranked TP, FP, TP over 2 boxes: P = 1, 1/2, 2/3 at R = 1/2, 1/2, 1.
    # Envelope: 1 for r <= 0.5 (51 points), 2/3 for r in (0.5, 1] (50 points).
    ap, precision, recall = interpolated_ap(np.array([True, False, True]), 2)
    np.testing.assert_allclose(precision, [1, 0.5, 2 / 3])
    np.testing.assert_allclose(recall, [0.5, 0.5, 1])
    assert ap == pytest.approx((51 + 50 * 2 / 3) / 101)


def test_iou_threshold_decides_true_positive():
    # IoU 0.62 with the ground truth: a hit at 0.50, 0.55, 0.60, a miss from 0.65 on.
    result = detection_ap([(_b([0, 0, 100, 62]), _s(0.9))], [GT_B])
    assert result.map50 == 1.0
    assert result.ap_at(0.6) == 1.0
    assert result.ap_at(0.65) == 0.0
    assert result.map50_95 == pytest.approx(0.3)


def test_duplicate_detection_is_a_false_positive():
    scores, tp = match_image(np.concatenate([GT_B, GT_B]), _s(0.8, 0.9), GT_B)
    np.testing.assert_allclose(scores, [0.9, 0.8], rtol=1e-6)
    assert tp[:, 0].all() and not tp[:, 1].any()


def test_detection_takes_the_best_overlapping_free_box():
    gt = _b([0, 0, 100, 100], [40, 0, 140, 100])
    pred = _b([35, 0, 135, 100])  # IoU 0.48 with the first box, 0.90 with the second
    high, low = _b([0, 0, 100, 100]), pred
    _, tp = match_image(np.concatenate([low, high]), _s(0.9, 0.8), gt, thresholds=(0.5,))
    # The first detection must take box 2 (best IoU) so the second can still take box 1.
    assert tp.tolist() == [[True, True]]


def test_no_predictions_and_no_ground_truth():
    assert detection_ap([(_b(), _s())], [GT_B]).map50 == 0.0
    with pytest.raises(ValueError, match="ground-truth"):
        detection_ap([(GT_B, _s(0.9))], [_b()])


def test_false_positive_on_an_image_without_hands_counts():
    # Image 2 has no hand; a confident box there outranks the real hit on image 1.
    result = detection_ap([(GT_B, _s(0.5)), (GT_B, _s(0.9))], [GT_B, _b()])
    assert result.map50 == pytest.approx(0.5)


def test_thresholds_are_coco_grid():
    assert IOU_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def test_image_errors_name_the_false_boxes_and_the_missed_hands():
    truth = np.asarray([[0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    pred = np.asarray([[30, 30, 40, 40], [0, 0, 10, 10], [1, 0, 10, 10]], np.float32)
    # In input order: a box on nothing, the hit, and a lower-scored duplicate of the hit.
    false, missed = image_errors(pred, np.asarray([0.2, 0.9, 0.5], np.float32), truth)
    assert false.tolist() == [0, 2] and missed.tolist() == [1]
    # Had the duplicate scored higher, it would have been the hit (score order decides).
    false, _ = image_errors(pred, np.asarray([0.2, 0.5, 0.9], np.float32), truth)
    assert false.tolist() == [0, 1]
    none = np.zeros((0, 4), np.float32)
    assert image_errors(none, np.zeros(0, np.float32), truth)[1].tolist() == [0, 1]
    assert image_errors(pred, np.ones(3, np.float32), none)[0].tolist() == [0, 1, 2]
