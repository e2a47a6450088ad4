"""Weakly supervised detection and the RSNA challenge metric on boxes with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from pneumocam.detection import (
    RSNA_IOU_THRESHOLDS,
    box_iou,
    map_to_boxes,
    prediction_string,
    rsna_image_score,
    rsna_metric,
    scale_boxes,
)

GT = [100.0, 100.0, 100.0, 100.0]


def shifted(dx: float) -> list[float]:
    return [100.0 + dx, 100.0, 100.0, 100.0]


def iou_of_shift(dx: float) -> float:
    return (100 - dx) / (100 + dx)


def test_thresholds_are_the_challenges():
    assert RSNA_IOU_THRESHOLDS == (0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75)


def test_box_iou():
    assert box_iou(GT, GT) == 1.0
    assert box_iou(GT, [300, 300, 10, 10]) == 0.0
    assert box_iou(GT, shifted(50)) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 0, 0], [0, 0, 0, 0]) == 0.0


def test_perfect_match_scores_one():
    assert rsna_image_score([(0.9, GT)], [GT]) == 1.0
    two = [[0, 0, 50, 50], [200, 200, 80, 40]]
    assert rsna_image_score([(0.5, two[1]), (0.7, two[0])], two) == 1.0


def test_one_false_positive_added():
    # 1 TP, 1 FP, 0 FN at every threshold: 1/2
    assert rsna_image_score([(0.9, GT), (0.8, [500, 500, 50, 50])], [GT]) == pytest.approx(0.5)
    # a missed gt box as well: 1 / (1 + 1 + 1)
    score = rsna_image_score([(0.9, GT), (0.8, [500, 500, 50, 50])], [GT, [0, 0, 20, 20]])
    assert score == pytest.approx(1 / 3)


def test_iou_just_below_and_above_thresholds():
    # shift so that IoU is just above 0.5: a hit at 0.40..0.50 (3 thresholds), a miss above
    dx = 100 * (1 - 0.5005) / (1 + 0.5005)
    assert iou_of_shift(dx) == pytest.approx(0.5005)
    assert rsna_image_score([(0.9, shifted(dx))], [GT]) == pytest.approx(3 / 8)
    # just below 0.5: hits at 0.40 and 0.45 only; a miss counts as 1 FP + 1 FN (score 0)
    dx = 100 * (1 - 0.4995) / (1 + 0.4995)
    assert rsna_image_score([(0.9, shifted(dx))], [GT]) == pytest.approx(2 / 8)
    # above 0.75: all 8 hits
    dx = 100 * (1 - 0.76) / (1 + 0.76)
    assert rsna_image_score([(0.9, shifted(dx))], [GT]) == 1.0
    # below 0.40: nothing
    dx = 100 * (1 - 0.39) / (1 + 0.39)
    assert rsna_image_score([(0.9, shifted(dx))], [GT]) == 0.0


def test_confidence_order_decides_matching():
    # a good and a poor box on the same gt: only one can match
    good, poor = GT, shifted(100 * (1 - 0.45) / (1 + 0.45))  # IoU 0.45 (hit at 0.40 only)
    # the good one first: TP at every threshold, the poor one is an FP: 1/2
    assert rsna_image_score([(0.9, good), (0.1, poor)], [GT]) == pytest.approx(0.5)
    # the poor one first: at t = 0.40 it takes the gt (the good one is an FP): 1/2;
    # above, the poor one misses and the good one matches: 1/2 as well
    assert rsna_image_score([(0.9, poor), (0.1, good)], [GT]) == pytest.approx(0.5)
    # two overlapping gt boxes: p1 overlaps A (IoU 2/3) and B (IoU 7/13); p2 is A exactly
    a, b = [0, 0, 100, 100], [50, 0, 100, 100]
    p1, p2 = [20, 0, 100, 100], a
    assert box_iou(p1, a) == pytest.approx(2 / 3) and box_iou(p1, b) == pytest.approx(70 / 130)
    assert box_iou(p2, b) == pytest.approx(1 / 3)
    # p1 first takes A at every threshold it can (<= 0.65); p2 is left an FP, B an FN: 1/3;
    # at 0.70 and 0.75 p1 misses and p2 takes A: 1/3 again
    assert rsna_image_score([(0.9, p1), (0.5, p2)], [a, b]) == pytest.approx(1 / 3)
    # p2 first takes A, then p1 takes B where 7/13 > t (0.40, 0.45, 0.50): 1; elsewhere 1/3
    assert rsna_image_score([(0.5, p1), (0.9, p2)], [a, b]) == pytest.approx((3 + 5 / 3) / 8)
    # each gt matches once: two identical predictions on one gt give 1 TP + 1 FP
    assert rsna_image_score([(0.9, GT), (0.8, GT)], [GT]) == pytest.approx(0.5)


def test_empty_and_skipped_images():
    assert rsna_image_score([], []) is None
    assert rsna_image_score([], [GT]) == 0.0  # missed
    assert rsna_image_score([(0.3, GT)], []) == 0.0  # false alarm
    # the metric averages the images not skipped: (1 + 0 + 0.5) / 3
    preds = [[(0.9, GT)], [], [], [(0.9, GT), (0.1, [0, 0, 5, 5])]]
    gts = [[GT], [], [GT], [GT]]
    assert rsna_metric(preds, gts) == pytest.approx(1.5 / 3)
    assert np.isnan(rsna_metric([[], []], [[], []]))
    with pytest.raises(ValueError, match="ground-truth"):
        rsna_metric([[]], [])


def test_map_to_boxes_components_and_confidence():
    m = np.zeros((20, 20), dtype=np.float32)
    m[2:6, 3:8] = 0.8  # 20 pixels
    m[12:16, 12:14] = 1.0  # 8 pixels
    m[0, 19] = 0.9  # a speck
    preds = map_to_boxes(m, prob=0.5, threshold=0.5)
    assert [b for _, b in preds] == [[12.0, 12.0, 2.0, 4.0], [19.0, 0.0, 1.0, 1.0], [3.0, 2.0, 5.0, 4.0]]
    assert [c for c, _ in preds] == pytest.approx([0.5, 0.45, 0.4])
    filtered = map_to_boxes(m, prob=0.5, threshold=0.5, min_area=5)
    assert [b for _, b in filtered] == [[12.0, 12.0, 2.0, 4.0], [3.0, 2.0, 5.0, 4.0]]
    # "max" scores a component by its peak; diagonal pixels join (8-connectivity)
    m2 = np.zeros((10, 10), dtype=np.float32)
    m2[1, 1], m2[2, 2], m2[3, 3] = 0.6, 1.0, 0.6
    (conf, box), = map_to_boxes(m2, prob=1.0, threshold=0.5, score="max")
    assert conf == pytest.approx(1.0) and box == [1.0, 1.0, 3.0, 3.0]
    assert map_to_boxes(np.zeros((8, 8)), prob=0.9, threshold=0.5) == []
    with pytest.raises(ValueError, match="score"):
        map_to_boxes(m2, 1.0, 0.5, score="median")


def test_map_to_boxes_round_trip_scores_one():
    m = np.zeros((32, 32), dtype=np.float32)
    m[4:12, 6:20] = 1.0
    preds = map_to_boxes(m, prob=0.8, threshold=0.5)
    assert rsna_image_score(preds, [[6, 4, 14, 8]]) == 1.0


def test_scale_boxes_and_prediction_string():
    assert scale_boxes([[10, 20, 30, 40]], 224, 1024) == [
        pytest.approx([10 * 1024 / 224, 20 * 1024 / 224, 30 * 1024 / 224, 40 * 1024 / 224])
    ]
    scaled = scale_boxes([(0.5, [1, 2, 3, 4])], 1, 2)
    assert scaled == [(0.5, [2.0, 4.0, 6.0, 8.0])]
    s = prediction_string([(0.25, [10.4, 20.6, 30.5, 40.0]), (0.912345, [1.0, 2.0, 3.0, 4.0])])
    assert s == "0.9123 1 2 3 4 0.2500 10 21 30 40"  # descending confidence, ints (half to even)
    assert prediction_string([]) == ""
