"""Weakly supervised detection: CAM -> boxes, and the RSNA Pneumonia Detection Challenge metric.

Boxes are ``[x, y, w, h]`` (x, y the upper-left corner) in map pixels unless said otherwise;
a prediction is ``(confidence, [x, y, w, h])``.

The challenge metric (Kaggle, RSNA 2018): per image, for each IoU threshold t in 0.40, 0.45,
..., 0.75, predictions are taken in descending confidence and each is matched to the unmatched
ground-truth box it overlaps most, a hit when that IoU is *greater than* t (the challenge's
wording); the image scores ``TP / (TP + FP + FN)`` averaged over the thresholds. An image with
neither ground truth nor predictions is skipped; with only one of them it scores 0. The dataset
score is the mean over the images not skipped.

For a split, :func:`detect_boxes` turns every map into boxes (none for an image the classifier
calls negative) and :func:`choose_box_threshold` picks the map threshold on validation images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

Box = Sequence[float]
Prediction = tuple[float, list[float]]
RSNA_IOU_THRESHOLDS = tuple(np.round(np.arange(0.40, 0.7501, 0.05), 2).tolist())
COMPONENT_SCORES = ("mean", "max")
#: Candidate map thresholds for weakly supervised detection (chosen on validation).
BOX_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def map_to_boxes(
    norm_map: np.ndarray,
    prob: float,
    threshold: float,
    min_area: int = 0,
    score: str = "mean",
) -> list[Prediction]:
    """Boxes around the connected regions of a thresholded map.

    Args:
        norm_map: (H, W) float map in [0, 1] (e.g. ``CamResult.normalized``).
        prob: the image's predicted probability of pneumonia, in [0, 1].
        threshold: pixels with ``norm_map >= threshold`` form the regions (8-connectivity).
        min_area: regions with fewer pixels are dropped (0 keeps all).
        score: ``"mean"`` or ``"max"`` of the map inside the region.

    Returns:
        ``[(confidence, [x, y, w, h]), ...]`` in descending confidence, with ``confidence =
        prob * score`` and the box the region's bounding rectangle in map pixels (ints).
    """
    if score not in COMPONENT_SCORES:
        raise ValueError(f"score must be one of {COMPONENT_SCORES}, got {score!r}")
    norm_map = np.asarray(norm_map, dtype=np.float32)
    if norm_map.ndim != 2:
        raise ValueError(f"norm_map must be (H, W), got shape {norm_map.shape}")
    binary = (norm_map >= threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    preds: list[Prediction] = []
    for label in range(1, count):  # 0 is the background
        x, y, w, h, area = (int(v) for v in stats[label])
        if area < min_area:
            continue
        values = norm_map[labels == label]
        region = float(values.mean() if score == "mean" else values.max())
        preds.append((float(prob) * region, [float(x), float(y), float(w), float(h)]))
    preds.sort(key=lambda p: -p[0])
    return preds


def box_iou(a: Box, b: Box) -> float:
    """IoU of two ``[x, y, w, h]`` boxes in continuous coordinates; 0 for empty boxes."""
    ax, ay, aw, ah = (float(v) for v in a)
    bx, by, bw, bh = (float(v) for v in b)
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def rsna_image_score(pred: Sequence[Prediction], gt: Sequence[Box]) -> float | None:
    """The challenge score of one image (see the module docstring); None when skipped.

    Args:
        pred: ``[(confidence, [x, y, w, h]), ...]`` in any order.
        gt: ``[[x, y, w, h], ...]`` ground-truth boxes, same coordinates as ``pred``.
    """
    if not gt and not pred:
        return None
    if not gt or not pred:
        return 0.0
    order = sorted(range(len(pred)), key=lambda i: -float(pred[i][0]))  # stable on ties
    ious = np.array([[box_iou(pred[i][1], g) for g in gt] for i in order])  # (P, G)
    scores = []
    for t in RSNA_IOU_THRESHOLDS:
        matched = np.zeros(len(gt), dtype=bool)
        tp = 0
        for row in ious:
            candidates = np.where(~matched, row, -1.0)
            best = int(np.argmax(candidates))
            if candidates[best] > t:
                matched[best] = True
                tp += 1
        fp, fn = len(pred) - tp, len(gt) - tp
        scores.append(tp / (tp + fp + fn))
    return float(np.mean(scores))


def rsna_metric(preds: Sequence[Sequence[Prediction]], gts: Sequence[Sequence[Box]]) -> float:
    """Mean :func:`rsna_image_score` over the images not skipped; nan when all are skipped."""
    if len(preds) != len(gts):
        raise ValueError(f"got {len(preds)} prediction lists but {len(gts)} ground-truth lists")
    scores = [s for p, g in zip(preds, gts, strict=True) if (s := rsna_image_score(p, g)) is not None]
    return float(np.mean(scores)) if scores else float("nan")


def scale_boxes(boxes: Sequence, from_size: float, to_size: float) -> list:
    """Rescale boxes between square image sizes (e.g. 224 -> 1024 for a submission).

    Accepts ``[[x, y, w, h], ...]`` or predictions ``[(confidence, [x, y, w, h]), ...]`` and
    returns the same form (confidences unchanged, coordinates as floats).
    """
    factor = float(to_size) / float(from_size)
    out: list = []
    for item in boxes:
        if len(item) == 2 and not np.isscalar(item[1]):
            conf, box = item
            out.append((float(conf), [float(v) * factor for v in box]))
        else:
            out.append([float(v) * factor for v in item])
    return out


def prediction_string(pred: Sequence[Prediction]) -> str:
    """Kaggle ``PredictionString``: ``"conf x y w h conf x y w h ..."`` in descending confidence.

    Coordinates must already be in 1024-px image coordinates (:func:`scale_boxes`); they are
    rounded to ints, confidences written with 4 decimals. No prediction gives ``""``.
    """
    parts = []
    for conf, (x, y, w, h) in sorted(pred, key=lambda p: -float(p[0])):
        parts.append(f"{float(conf):.4f} " + " ".join(str(int(round(float(v)))) for v in (x, y, w, h)))
    return " ".join(parts)


def detect_boxes(maps: np.ndarray, probs: np.ndarray, box_threshold: float,
                 operating_threshold: float) -> list[list[Prediction]]:
    """Weakly supervised detection: boxes from each map, none for images called negative.

    Images whose probability is below the classifier's operating threshold get no boxes (a box
    on a negative image is a false positive for the RSNA metric).

    Args:
        maps: (N, H, W) normalised maps in [0, 1]. probs: (N,) in [0, 1].

    Returns:
        Per image a list of ``(confidence, [x, y, w, h])`` in map pixels.
    """
    return [map_to_boxes(m, float(p), box_threshold) if p >= operating_threshold else []
            for m, p in zip(maps, probs, strict=True)]


def choose_box_threshold(maps: np.ndarray, probs: np.ndarray, gts: Sequence[Sequence[Box]],
                         operating_threshold: float,
                         candidates: Sequence[float] = BOX_THRESHOLDS) -> tuple[float, dict[str, float]]:
    """The map threshold with the best RSNA metric on (validation) images; first best on ties.

    Returns:
        ``(threshold, {"<candidate>": RSNA metric})`` (nan scores never win).
    """
    scores: dict[str, float] = {}
    best, best_score = float(candidates[0]), -math.inf
    for t in candidates:
        score = float(rsna_metric(detect_boxes(maps, probs, t, operating_threshold), gts))
        scores[f"{t:g}"] = score
        if not math.isnan(score) and score > best_score:
            best, best_score = float(t), score
    return best, scores
