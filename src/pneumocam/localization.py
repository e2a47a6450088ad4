"""How well saliency maps point at the radiologists' boxes, with baselines that see no image.

Conventions:

- ``maps``: (N, H, W) float arrays, one per positive image, any scale (raw CAM in logit units,
  or normalised [0, 1]); ``boxes``: a list of N lists of ``[x, y, w, h]`` in map pixels (x, y
  the upper-left corner, as in the RSNA CSV and ``manifest.csv``). Every image needs a box.
- A pixel ``(row, col)`` spans ``[col, col + 1) x [row, row + 1)`` and belongs to a box when its
  centre lies inside the box (a box smaller than a pixel still covers the pixel holding its
  centre). Integer boxes cover exactly ``w * h`` pixels.
- The metrics: **pointing game** (the map's peak, :func:`peak_yx`, lies in a box), **mass in
  boxes** (share of the map's positive part, ``ReLU(map)``, inside the
  union of boxes; pass the signed CAM to measure positive evidence), **IoU** of the thresholded
  per-image min-max normalised map with the union of boxes (threshold chosen on the
  validation split).
- Baselines: a single fixed point (the pixel inside the boxes of most training images), the
  mean training-box mask used as one map for every image, and uniform-random maps.
- Paired statistics (:func:`paired_difference`): every comparison is on the same images, so it
  is tested on the per-image differences: a seeded paired bootstrap 95% interval of the mean
  difference (the same resampled image indices on both sides,
  :func:`pneumocam.metrics.bootstrap_indices`) and, for the hit/miss pointing game, an exact
  McNemar test (:func:`mcnemar_p`). :func:`verdict` reads the interval: ``beats`` (above 0),
  ``is beaten by`` (below 0), ``cannot be told apart from`` (contains 0).

The peak (:func:`peak_yx`) is taken on a map at its own resolution: for a 7x7 CAM the centre of
the strongest cell, mapped to input pixels by the half-pixel convention of the bilinear
upsampling (cell ``j`` of ``n`` covers ``[j * s, (j + 1) * s)`` with ``s = 224 / n``, centre
``(j + 0.5) * s``). It is not the ``argmax`` of the upsampled map: ``align_corners=False`` clamps
the sampling position at the borders, so a border cell's value is copied flat from the image
edge to the cell's centre (rows 0-15 for the top row of a 7x7 map at 224 px). The first pixel
of that plateau is 16 px from the cell's centre, and the plateau's middle still 8 px from it;
the cell's centre is where the map's value actually peaks. Ties (a plateau of equal maxima, at
any resolution) are broken at the plateau's centre, never at its first pixel, so a map known
only at full resolution (the baselines, an upsampled map with no low-resolution copy) follows
the same rule with ``s = 1``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import binomtest

from .metrics import bootstrap_indices, percentile_ci

Box = Sequence[float]
IOU_CANDIDATES = np.linspace(0.05, 0.95, 19)
METRICS = ("pointing_game", "mass_in_boxes", "iou")
#: How each metric and each image-free baseline of :func:`localization_report` reads in prose.
METRIC_LABELS = {"pointing_game": "pointing game", "mass_in_boxes": "mass in boxes", "iou": "IoU"}
BASELINE_LABELS = {"fixed_point": "fixed point", "mean_box_prior": "mean-box prior",
                   "uniform_random": "uniform random"}
#: How the p-value of each metric's paired comparison is computed (also in the JSON).
PAIRED_TESTS = {
    "pointing_game": "exact McNemar: two-sided binomial test on the discordant pairs",
    "mass_in_boxes": "paired bootstrap, two-sided: 2 x min(share of resampled mean differences "
                     "<= 0, share >= 0), at most 1",
    "iou": "paired bootstrap, two-sided: 2 x min(share of resampled mean differences <= 0, "
           "share >= 0), at most 1",
    # the per-image RSNA challenge score of boxes cut from a map (pneumocam.method_comparison)
    "rsna_metric": "paired bootstrap, two-sided: 2 x min(share of resampled mean differences "
                   "<= 0, share >= 0), at most 1",
}
#: The words for a paired interval above 0, below 0, containing 0, or undefined.
VERDICTS = {"above": "beats", "below": "is beaten by", "contains": "cannot be told apart from",
            "undefined": "has no paired comparison with"}


def _shape(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))


def _span(start: float, length: float, limit: int) -> tuple[int, int]:
    """Pixel index range [lo, hi) whose centres lie in [start, start + length), at least one."""
    lo = int(np.ceil(start - 0.5))
    hi = int(np.ceil(start + length - 0.5))
    if hi <= lo:  # thinner than a pixel: the pixel holding its centre
        lo = int(np.floor(start + length / 2))
        hi = lo + 1
    return max(lo, 0), min(hi, limit)


def boxes_to_mask(boxes: Sequence[Box], size: int | tuple[int, int]) -> np.ndarray:
    """Union of ``[x, y, w, h]`` boxes as a bool mask of shape (size, size) or ``size`` (H, W)."""
    height, width = _shape(size)
    mask = np.zeros((height, width), dtype=bool)
    for box in boxes:
        x, y, w, h = (float(v) for v in box)
        c0, c1 = _span(x, w, width)
        r0, r1 = _span(y, h, height)
        mask[r0:r1, c0:c1] = True
    return mask


def _masks(boxes: Sequence[Sequence[Box]], shape: tuple[int, int], n: int):
    if len(boxes) != n:
        raise ValueError(f"got {n} maps but {len(boxes)} box lists; give one list per map")
    for i, image_boxes in enumerate(boxes):
        mask = boxes_to_mask(image_boxes, shape)
        if not mask.any():
            raise ValueError(
                f"image {i} has no box inside the {shape[0]}x{shape[1]} map; localization "
                "metrics are defined on positive images with boxes only"
            )
        yield mask


def _as_maps(maps: np.ndarray) -> np.ndarray:
    maps = np.asarray(maps)
    if not np.issubdtype(maps.dtype, np.floating):
        maps = maps.astype(np.float32)
    if maps.ndim != 3:
        raise ValueError(f"maps must be (N, H, W), got shape {maps.shape}")
    return maps


def _normalize(one_map: np.ndarray) -> np.ndarray:
    lo, hi = float(one_map.min()), float(one_map.max())
    return (one_map - lo) / (hi - lo) if hi > lo else np.zeros_like(one_map)


def _plateau(one_map: np.ndarray) -> np.ndarray:
    """bool (h, w): the connected region (8-neighbours) of pixels equal to the map's maximum
    that holds the first maximum in row-major order."""
    top = one_map == one_map.max()
    region = np.zeros_like(top)
    region.flat[int(np.argmax(top))] = True
    while True:  # grow within ``top`` until stable (a dilation per step; plateaus are small)
        grown = region.copy()
        grown[1:] |= region[:-1]
        grown[:-1] |= region[1:]
        grown[:, 1:] |= grown[:, :-1]
        grown[:, :-1] |= grown[:, 1:]
        grown &= top
        if np.array_equal(grown, region):
            return region
        region = grown


def peak_yx(one_map: np.ndarray, size: int | tuple[int, int] | None = None) -> tuple[float, float]:
    """The map's peak as a point ``(y, x)`` in input pixels, the frame of the boxes.

    Args:
        one_map: (h, w) float map at its own resolution (a 7x7 CAM, or a full-size map);
            NaN is not allowed.
        size: the input's (H, W) (or H for a square), which the boxes refer to; None: the
            map's own size.

    Returns:
        ``(y, x)`` floats in ``[0, H] x [0, W]``, with pixel ``(r, c)`` covering
        ``[c, c + 1) x [r, r + 1)``: the centre of the plateau of maximal values (the
        connected region of the maximum that holds the first one in row-major order; a
        single cell on most maps), ``((r0 + r1 + 1) / 2 * H / h, (c0 + c1 + 1) / 2 * W / w)``
        for its rows ``r0..r1`` and columns ``c0..c1``, so the centre of the strongest cell
        ``(r + 0.5) * H / h``. Where that centre is not on the plateau (an L-shaped one), the
        centre of the plateau cell nearest to it.
    """
    one_map = np.asarray(one_map)
    if one_map.ndim != 2 or one_map.size == 0:
        raise ValueError(f"peak_yx needs one (h, w) map, got shape {one_map.shape}")
    if np.isnan(one_map).any():
        raise ValueError("peak_yx: the map holds NaN; compute the map in float32 from finite "
                         "logits (a diverged model gives NaN maps: retrain with a lower --lr)")
    h, w = one_map.shape
    height, width = (h, w) if size is None else _shape(size)
    region = _plateau(one_map)
    rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    y, x = (rows[0] + rows[-1] + 1) / 2, (cols[0] + cols[-1] + 1) / 2  # in map cells
    if not region[min(int(y), h - 1), min(int(x), w - 1)]:
        r, c = np.nonzero(region)
        nearest = int(np.argmin((r + 0.5 - y) ** 2 + (c + 0.5 - x) ** 2))
        y, x = r[nearest] + 0.5, c[nearest] + 0.5
    return float(y * height / h), float(x * width / w)


def peak_pixel(point_yx: tuple[float, float], size: int | tuple[int, int]) -> tuple[int, int]:
    """``(row, col)`` of the pixel holding ``point_yx`` (from :func:`peak_yx`) in a map of
    ``size``; a point on the far edge belongs to the last pixel."""
    height, width = _shape(size)
    y, x = point_yx
    return min(int(np.floor(y)), height - 1), min(int(np.floor(x)), width - 1)


def point_in_boxes(point_yx: tuple[float, float], boxes: Sequence[Box],
                   size: int | tuple[int, int]) -> bool:
    """Whether the pixel holding ``point_yx`` lies in a box (the pixel rule of
    :func:`boxes_to_mask`; for integer boxes exactly ``x <= px < x + w`` and
    ``y <= py < y + h``). ``size``: the (H, W) the boxes refer to."""
    row, col = peak_pixel(point_yx, size)
    return bool(boxes_to_mask(boxes, size)[row, col])


def _pointing(one_map: np.ndarray, mask: np.ndarray) -> bool:
    """The pointing game for one map at any resolution against a full-size mask."""
    return bool(mask[peak_pixel(peak_yx(one_map, mask.shape), mask.shape)])


def _mass(one_map: np.ndarray, mask: np.ndarray) -> float:
    positive = np.maximum(one_map, 0)
    total = float(positive.sum())
    return float(positive[mask].sum()) / total if total > 0 else float("nan")


def _iou(binary: np.ndarray, mask: np.ndarray) -> float:
    union = np.logical_or(binary, mask).sum()
    return float(np.logical_and(binary, mask).sum()) / float(union) if union else float("nan")


def pointing_game(maps: np.ndarray, boxes: Sequence[Sequence[Box]],
                  size: int | tuple[int, int] | None = None) -> np.ndarray:
    """(N,) bool: the map's peak (:func:`peak_yx`) lies inside a box.

    Args:
        maps: (N, h, w) maps at their own resolution (e.g. ``CamResult.low``, 7x7) or full size.
        boxes: N lists of ``[x, y, w, h]`` in the pixels of ``size``.
        size: the (H, W) the boxes refer to; None: the maps' own size.
    """
    maps = _as_maps(maps)
    shape = maps.shape[1:] if size is None else _shape(size)
    masks = _masks(boxes, shape, len(maps))
    return np.array([_pointing(m, k) for m, k in zip(maps, masks, strict=True)], dtype=bool)


def mass_in_boxes(maps: np.ndarray, boxes: Sequence[Sequence[Box]]) -> np.ndarray:
    """(N,) float in [0, 1]: share of ``ReLU(map)`` inside the union of boxes; nan if no positive mass."""
    maps = _as_maps(maps)
    masks = _masks(boxes, maps.shape[1:], len(maps))
    return np.array([_mass(m, k) for m, k in zip(maps, masks, strict=True)], dtype=np.float64)


def thresholded_iou(maps: np.ndarray, boxes: Sequence[Sequence[Box]], threshold: float) -> np.ndarray:
    """(N,) float in [0, 1]: IoU of ``minmax(map) >= threshold`` with the union of boxes.

    A constant map normalises to zeros, so it selects nothing for ``threshold > 0``.
    """
    maps = _as_maps(maps)
    masks = _masks(boxes, maps.shape[1:], len(maps))
    return np.array([_iou(_normalize(m) >= threshold, k) for m, k in zip(maps, masks, strict=True)])


def _iou_table(maps: np.ndarray, boxes, candidates: np.ndarray) -> np.ndarray:
    """(N, T) IoU for every candidate threshold, one pass over the images."""
    maps = _as_maps(maps)
    masks = _masks(boxes, maps.shape[1:], len(maps))
    rows = []
    for one_map, mask in zip(maps, masks, strict=True):
        norm = _normalize(one_map)
        rows.append([_iou(norm >= t, mask) for t in candidates])
    return np.array(rows, dtype=np.float64).reshape(len(maps), len(candidates))


def choose_iou_threshold(
    maps: np.ndarray, boxes: Sequence[Sequence[Box]], candidates: np.ndarray = IOU_CANDIDATES
) -> float:
    """The candidate threshold with the best mean IoU (the lowest on ties); use on the val split."""
    candidates = np.asarray(candidates, dtype=np.float64)
    means = np.nanmean(_iou_table(maps, boxes, candidates), axis=0)
    return float(candidates[int(np.nanargmax(means))])


def _union_masks(train_boxes: Sequence[Sequence[Box]], size) -> np.ndarray:
    shape = _shape(size)
    masks = [boxes_to_mask(b, shape) for b in train_boxes if len(b)]
    if not masks:
        raise ValueError("train_boxes holds no box: the baselines need positive training images")
    return np.stack(masks)


def fixed_point_baseline(train_boxes: Sequence[Sequence[Box]], size: int | tuple[int, int]) -> tuple[int, int]:
    """The pixel ``(x, y)`` inside the boxes of the most training images: the pixel holding the
    :func:`peak_yx` of the count map (the centre of the region of most boxes, not its first pixel)."""
    counts = _union_masks(train_boxes, size).sum(axis=0)
    row, col = peak_pixel(peak_yx(counts), counts.shape)
    return int(col), int(row)


def mean_box_prior(train_boxes: Sequence[Sequence[Box]], size: int | tuple[int, int]) -> np.ndarray:
    """(H, W) float64 in [0, 1]: per pixel, the share of training images whose boxes cover it."""
    return _union_masks(train_boxes, size).mean(axis=0)


def uniform_random_maps(n: int, size: int | tuple[int, int], seed: int) -> np.ndarray:
    """(n, H, W) float32 maps of i.i.d. uniform [0, 1) noise from ``np.random.default_rng(seed)``."""
    return np.random.default_rng(seed).random((n, *_shape(size)), dtype=np.float32)


def bootstrap_mean_ci(values, n_boot: int = 1000, seed: int = 0) -> dict:
    """Mean of ``values`` (nan ignored) and its 95% percentile-bootstrap interval.

    Returns:
        ``{"value": mean, "ci95": [lo, hi], "n": number of non-nan values}``; nan when none.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    if v.size == 0:
        return {"value": float("nan"), "ci95": [float("nan"), float("nan")], "n": 0}
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, 256):  # chunks bound memory to 256 x N indices
        stop = min(start + 256, n_boot)
        means[start:stop] = v[rng.integers(0, v.size, size=(stop - start, v.size))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"value": float(v.mean()), "ci95": [float(lo), float(hi)], "n": int(v.size)}


def shared_map_metrics(one_map: np.ndarray, boxes, threshold: float) -> dict[str, np.ndarray]:
    """The three metrics for one (H, W) map used for every image (fixed point, mean-box prior):
    per image of ``boxes``, float64 arrays keyed by :data:`METRICS`."""
    norm = _normalize(one_map)
    binary = norm >= threshold
    rows = [
        (_pointing(one_map, k), _mass(one_map, k), _iou(binary, k))
        for k in _masks(boxes, one_map.shape, len(boxes))
    ]
    arr = np.array(rows, dtype=np.float64).reshape(len(boxes), 3)
    return dict(zip(METRICS, arr.T, strict=True))


def _map_metrics(maps: np.ndarray, boxes, threshold: float,
                 peak_maps: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-image metrics; the pointing game on ``peak_maps`` (the maps at their own
    resolution) when given, else on ``maps``."""
    maps = _as_maps(maps)
    peaks = maps if peak_maps is None else _as_maps(peak_maps)
    if len(peaks) != len(maps):
        raise ValueError(f"got {len(maps)} maps but {len(peaks)} peak maps; give one per map")
    rows = [
        (_pointing(p, k), _mass(m, k), _iou(_normalize(m) >= threshold, k))
        for m, p, k in zip(maps, peaks, _masks(boxes, maps.shape[1:], len(maps)), strict=True)
    ]
    arr = np.array(rows, dtype=np.float64).reshape(len(maps), 3)
    return dict(zip(METRICS, arr.T, strict=True))


def prior_threshold(one_map: np.ndarray, boxes, candidates=IOU_CANDIDATES) -> float:
    """The threshold (on the map scaled to [0, 1]) among ``candidates`` that gives one shared
    (H, W) map its best mean IoU with ``boxes``."""
    norm = _normalize(one_map)
    masks = list(_masks(boxes, one_map.shape, len(boxes)))
    means = [np.nanmean([_iou(norm >= t, k) for k in masks]) for t in candidates]
    return float(candidates[int(np.nanargmax(means))])


def _summaries(values: dict[str, np.ndarray], n_boot: int, seed: int) -> dict:
    return {name: bootstrap_mean_ci(values[name], n_boot, seed) for name in METRICS}


def localization_report(
    maps: np.ndarray,
    boxes: Sequence[Sequence[Box]],
    train_boxes: Sequence[Sequence[Box]],
    val_maps: np.ndarray | None = None,
    val_boxes: Sequence[Sequence[Box]] | None = None,
    threshold: float | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ids: Sequence[str] | None = None,
    peak_maps: np.ndarray | None = None,
) -> dict:
    """All localization metrics with bootstrap intervals and image-free baselines.

    Args:
        maps: (N, H, W) maps of the evaluated positive images; boxes: N lists of boxes.
        peak_maps: (N, h, w) the same maps at their own resolution (``CamResult.low``), where
            the pointing game takes its peak (:func:`peak_yx`); None: ``maps``.
        train_boxes: box lists of the positive training images (for the baselines).
        val_maps, val_boxes: the validation split, where the IoU threshold is chosen.
        threshold: a fixed IoU threshold (overrides the choice on val).
        n_boot, seed: bootstrap resamples and seed (the same seed for every metric).
        ids: optional N image ids for the per-image table.

    Returns:
        ``{"pointing_game", "mass_in_boxes", "iou"}`` each ``{"value", "ci95", "n"}``,
        ``"iou_threshold"`` and ``"iou_threshold_source"`` (``"given"``, ``"val"``, or
        ``"test"`` when no validation split was given: optimistic), ``"n_images"``,
        ``"baselines": {"fixed_point", "mean_box_prior", "uniform_random"}`` (each the three
        metrics, plus ``"point"`` or ``"iou_threshold"``), ``"paired"``: ``{baseline: {metric:
        {"difference", "ci95", "p_value", "test", "n"}}}`` (map minus baseline on the same
        images, :func:`paired_difference`), and ``"per_image"``: a list of dicts (``id``,
        ``n_boxes``, ``box_fraction``, the three metrics and ``<baseline>_<metric>`` for each
        baseline, so every paired number can be recomputed) for a DataFrame.
        Baselines choose their own IoU threshold by the same rule: on ``val_boxes`` when
        given (random maps drawn for the val images), else on the evaluated boxes.
    """
    maps = _as_maps(maps)
    n, shape = len(maps), maps.shape[1:]
    have_val = val_boxes is not None and len(val_boxes) > 0
    if threshold is not None:
        source = "given"
    elif have_val and val_maps is not None:
        threshold, source = choose_iou_threshold(val_maps, val_boxes), "val"
    else:
        threshold, source = choose_iou_threshold(maps, boxes), "test"
    values = _map_metrics(maps, boxes, threshold, peak_maps)
    report: dict = {**_summaries(values, n_boot, seed)}
    report.update(iou_threshold=float(threshold), iou_threshold_source=source, n_images=n)

    choose_boxes = val_boxes if have_val else boxes
    x, y = fixed_point_baseline(train_boxes, shape)
    point_map = np.zeros(shape, dtype=np.float32)
    point_map[y, x] = 1.0  # a point has no extent: its IoU is near 0 by construction
    prior = mean_box_prior(train_boxes, shape)
    prior_t = prior_threshold(prior, choose_boxes)
    rand_seed = seed + 1  # not the bootstrap's stream
    choose_random = uniform_random_maps(len(choose_boxes), shape, rand_seed + 1)
    random_t = choose_iou_threshold(choose_random, choose_boxes)
    random_values = _map_metrics(uniform_random_maps(n, shape, rand_seed), boxes, random_t)
    base_values = {
        "fixed_point": shared_map_metrics(point_map, boxes, 1.0),
        "mean_box_prior": shared_map_metrics(prior, boxes, prior_t),
        "uniform_random": random_values,
    }
    report["baselines"] = {
        "fixed_point": {**_summaries(base_values["fixed_point"], n_boot, seed), "point": [x, y]},
        "mean_box_prior": {**_summaries(base_values["mean_box_prior"], n_boot, seed),
                           "iou_threshold": prior_t},
        "uniform_random": {**_summaries(random_values, n_boot, seed), "iou_threshold": random_t},
    }
    # Map minus baseline on the same images, resampled with the bootstrap's seed.
    report["paired"] = paired_against_baselines(values, base_values, n_boot, seed)
    area = float(shape[0] * shape[1])
    report["per_image"] = [
        {
            "id": ids[i] if ids is not None else i,
            "n_boxes": len(boxes[i]),
            "box_fraction": float(boxes_to_mask(boxes[i], shape).sum()) / area,
            "pointing_game": bool(values["pointing_game"][i]),
            "mass_in_boxes": float(values["mass_in_boxes"][i]),
            "iou": float(values["iou"][i]),
            **{f"{key}_{m}": (bool(vals[m][i]) if m == "pointing_game" else float(vals[m][i]))
               for key, vals in base_values.items() for m in METRICS},
        }
        for i in range(n)
    ]
    return report


# --------------------------------------------------------------------------- paired statistics


def mcnemar_p(a: np.ndarray, b: np.ndarray) -> float:
    """Exact McNemar p-value for two paired hit/miss vectors ((N,) bool or 0/1).

    A two-sided binomial test (``scipy.stats.binomtest``, p = 0.5) of the ``a``-only hits among
    the discordant pairs; 1.0 when there are none. In [0, 1].
    """
    a, b = np.asarray(a).astype(bool), np.asarray(b).astype(bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5, alternative="two-sided").pvalue)


def paired_difference(a, b, metric: str, n_boot: int = 1000, seed: int = 0) -> dict:
    """The per-image difference ``a - b`` of one metric on the same images, tested paired.

    Args:
        a, b: (N,) per-image values of the two sides (hit 0/1 for ``pointing_game``, a share
            in [0, 1] otherwise), in the same image order. Pairs with a nan on either side are
            dropped (a map with no positive mass has no mass in boxes).
        metric: one of :data:`PAIRED_TESTS` (:data:`METRICS` or ``rsna_metric``); picks the
            test.
        n_boot, seed: bootstrap resamples and seed; both sides are resampled with the same
            image indices (:func:`pneumocam.metrics.bootstrap_indices`).

    Returns:
        ``{"difference": mean(a - b), "ci95": [lo, hi], "p_value": p, "test": how p was
        computed, "n": pairs used}`` plus, for the pointing game, ``"discordant": [a only,
        b only]``; nan everywhere when no pair is left.
    """
    if metric not in PAIRED_TESTS:
        raise ValueError(f"metric {metric!r}: expected one of {tuple(PAIRED_TESTS)}")
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same images: got {a.size} and {b.size}")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    out: dict = {"difference": math.nan, "ci95": [math.nan, math.nan], "p_value": math.nan,
                 "test": PAIRED_TESTS[metric], "n": int(a.size)}
    if metric == "pointing_game":
        out["discordant"] = [int(((a > 0) & ~(b > 0)).sum()), int((~(a > 0) & (b > 0)).sum())]
    if a.size == 0:
        return out
    diff = a - b
    idx = bootstrap_indices(diff.size, n_boot, seed)
    means = np.concatenate([diff[chunk].mean(axis=1) for chunk in np.array_split(
        idx, max(1, n_boot // 256 + 1))])
    lo, hi, _ = percentile_ci(means)
    out.update(difference=float(diff.mean()), ci95=[lo, hi])
    if metric == "pointing_game":
        out["p_value"] = mcnemar_p(a > 0, b > 0)
    else:
        out["p_value"] = float(min(1.0, 2 * min(np.mean(means <= 0), np.mean(means >= 0))))
    return out


def verdict(entry) -> str:
    """``above`` / ``below`` / ``contains`` / ``undefined``: where a paired 95% interval
    (``{"ci95": [lo, hi]}``, or an :class:`~pneumocam.metrics.Estimate`) lies relative to 0."""
    if isinstance(entry, dict):
        ci = entry.get("ci95") or [None, None]
        lo, hi = ci[0], ci[1]
    else:
        lo, hi = getattr(entry, "low", None), getattr(entry, "high", None)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (lo, hi)):
        return "undefined"
    return "above" if lo > 0 else "below" if hi < 0 else "contains"


def paired_against_baselines(values: dict[str, np.ndarray], baselines: dict[str, dict],
                             n_boot: int = 1000, seed: int = 0) -> dict:
    """Map minus each baseline, per metric, on the same images (see :func:`paired_difference`).

    Args:
        values: ``{metric: (N,) per-image values of the map}``.
        baselines: ``{baseline: {metric: (N,) per-image values}}`` in the same image order.

    Returns:
        ``{baseline: {metric: paired_difference(...)}}``.
    """
    return {key: {m: paired_difference(values[m], base[m], m, n_boot, seed) for m in METRICS}
            for key, base in baselines.items()}
