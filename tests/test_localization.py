"""Localization metrics and baselines on hand-made maps and boxes with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pneumocam.cam import upsample_maps
from pneumocam.localization import (
    bootstrap_mean_ci,
    boxes_to_mask,
    choose_iou_threshold,
    fixed_point_baseline,
    localization_report,
    mass_in_boxes,
    mean_box_prior,
    peak_pixel,
    peak_yx,
    point_in_boxes,
    pointing_game,
    thresholded_iou,
    uniform_random_maps,
)


def test_boxes_to_mask_pixel_convention():
    mask = boxes_to_mask([[1, 2, 3, 2]], 8)
    assert mask.shape == (8, 8) and mask.dtype == bool and mask.sum() == 6
    assert mask[2:4, 1:4].all()
    union = boxes_to_mask([[0, 0, 2, 2], [1, 1, 2, 2]], 4)  # overlap counted once
    assert union.sum() == 7
    # fractional boxes: pixels whose centres are inside; clipped at the border
    assert boxes_to_mask([[0.6, 0.0, 1.0, 1.0]], 4)[0].tolist() == [False, True, False, False]
    assert boxes_to_mask([[2.2, 0.0, 0.1, 1.0]], 4)[0].tolist() == [False, False, True, False]
    assert boxes_to_mask([[6, 6, 10, 10]], (8, 10)).sum() == 2 * 4
    assert boxes_to_mask([], 4).sum() == 0


def test_pointing_game_inside_outside_and_ties():
    maps = np.zeros((3, 8, 8))
    maps[0, 3, 2] = 1.0  # inside [1, 2, 3, 2]
    maps[1, 6, 6] = 1.0  # outside
    maps[2] = 0.5  # all tied: the plateau is the whole map, its centre (4, 4) counts
    boxes = [[[1, 2, 3, 2]], [[1, 2, 3, 2]], [[1, 2, 3, 2]]]
    assert pointing_game(maps, boxes).tolist() == [True, False, False]
    assert pointing_game(maps[2:], [[[0, 0, 1, 1]]]).tolist() == [False]  # not the first pixel
    assert pointing_game(maps[2:], [[[4, 4, 1, 1]]]).tolist() == [True]
    # the second of two boxes also counts
    assert pointing_game(maps[1:2], [[[0, 0, 1, 1], [6, 6, 1, 1]]]).tolist() == [True]


def test_mass_in_boxes_exact_fractions_and_relu():
    maps = np.zeros((3, 4, 4))
    maps[0, 0, 0] = 3.0
    maps[0, 3, 3] = 1.0  # 3 of 4 inside [0, 0, 2, 2]
    maps[1] = -1.0
    maps[1, 0, 1] = 2.0
    maps[1, 2, 2] = 2.0  # negative mass ignored: 1/2
    maps[2] = -1.0  # no positive mass: nan
    boxes = [[[0, 0, 2, 2]]] * 3
    got = mass_in_boxes(maps, boxes)
    assert got[0] == pytest.approx(0.75) and got[1] == pytest.approx(0.5) and np.isnan(got[2])
    uniform = mass_in_boxes(np.ones((1, 10, 10)), [[[0, 0, 5, 2], [5, 0, 5, 2]]])
    assert uniform[0] == pytest.approx(0.2)


def test_thresholded_iou_exact():
    one = np.zeros((1, 4, 4))
    one[0, 0, :2] = 1.0  # 2 pixels at the top (after min-max they are 1, the rest 0)
    # box covers those 2 pixels and 2 more: IoU = 2 / 4
    assert thresholded_iou(one, [[[0, 0, 2, 2]]], 0.5)[0] == pytest.approx(0.5)
    # threshold 0 selects everything: 4 / 16
    assert thresholded_iou(one, [[[0, 0, 2, 2]]], 0.0)[0] == pytest.approx(0.25)
    # min-max normalisation: a shifted, scaled map gives the same answer
    assert thresholded_iou(one * 7 - 3, [[[0, 0, 2, 2]]], 0.5)[0] == pytest.approx(0.5)
    # a constant map selects nothing above 0
    assert thresholded_iou(np.full((1, 4, 4), 2.0), [[[0, 0, 2, 2]]], 0.5)[0] == 0.0


def test_choose_iou_threshold_picks_best_mean():
    ramp = np.tile(np.linspace(0, 1, 10), (10, 1))[None]  # columns 0..9, normalised 0..1
    box = [[[5, 0, 5, 10]]]  # right half: columns 5..9 have values >= 5/9
    t = choose_iou_threshold(ramp, box, candidates=np.array([0.1, 0.5, 0.9]))
    assert t == pytest.approx(0.5)
    assert thresholded_iou(ramp, box, 0.5)[0] == pytest.approx(1.0)


def test_fixed_point_and_mean_box_prior_values():
    train = [[[0, 0, 2, 2]], [[1, 1, 2, 2]], [[1, 0, 1, 1], [3, 3, 1, 1]], []]
    # pixel (x=1, y=1) is inside the boxes of images 0 and 1; (1, 0) of 0 and 2: the plateau
    # of two pixels x=1, y in [0, 2) has its centre (y=1, x=1.5) in the pixel (x=1, y=1)
    assert fixed_point_baseline(train, 4) == (1, 1)
    prior = mean_box_prior(train, 4)  # empty box lists (negatives) are ignored
    assert prior.shape == (4, 4)
    assert prior[0, 1] == pytest.approx(2 / 3) and prior[1, 1] == pytest.approx(2 / 3)
    assert prior[3, 3] == pytest.approx(1 / 3) and prior[0, 3] == 0.0
    # a pixel covered by two boxes of the same image counts that image once; the 2x2 plateau
    # (the first box, all tied at one image) points at its centre, not at its first pixel
    assert fixed_point_baseline([[[0, 0, 2, 2], [0, 0, 1, 1]], [[3, 3, 1, 1]]], 4) == (1, 1)
    assert fixed_point_baseline([[[2, 4, 5, 3]]], 10) == (4, 5)  # centre (y=5.5, x=4.5)
    with pytest.raises(ValueError, match="no box"):
        mean_box_prior([[], []], 4)


def test_uniform_random_maps_seeded():
    a, b, c = uniform_random_maps(3, 5, 1), uniform_random_maps(3, 5, 1), uniform_random_maps(3, 5, 2)
    assert a.shape == (3, 5, 5) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.min() >= 0.0 and a.max() < 1.0


def test_bootstrap_mean_ci_seeded_and_nan_aware():
    values = [1.0, 0.0, 1.0, 1.0, np.nan, 0.0, 1.0, 1.0]
    out = bootstrap_mean_ci(values, n_boot=500, seed=3)
    assert out["value"] == pytest.approx(5 / 7) and out["n"] == 7
    lo, hi = out["ci95"]
    assert 0.0 <= lo <= out["value"] <= hi <= 1.0 and hi - lo > 0.1
    assert bootstrap_mean_ci(values, n_boot=500, seed=3) == out
    normal = np.random.default_rng(0).normal(size=400)
    wide = bootstrap_mean_ci(normal, n_boot=2000, seed=4)
    assert wide["ci95"] != bootstrap_mean_ci(normal, n_boot=2000, seed=5)["ci95"]
    half_width = 1.96 * normal.std() / np.sqrt(400)  # the normal-theory interval
    assert wide["ci95"][0] == pytest.approx(normal.mean() - half_width, abs=0.02)
    assert wide["ci95"][1] == pytest.approx(normal.mean() + half_width, abs=0.02)
    assert bootstrap_mean_ci(np.ones(20))["ci95"] == [1.0, 1.0]
    empty = bootstrap_mean_ci([np.nan])
    assert np.isnan(empty["value"]) and empty["n"] == 0
    # booleans are rates
    assert bootstrap_mean_ci(np.array([True, False, False, False]))["value"] == pytest.approx(0.25)


def test_images_without_boxes_are_rejected():
    with pytest.raises(ValueError, match="image 1 has no box"):
        pointing_game(np.zeros((2, 4, 4)), [[[0, 0, 1, 1]], []])
    with pytest.raises(ValueError, match="one list per map"):
        mass_in_boxes(np.zeros((2, 4, 4)), [[[0, 0, 1, 1]]])


def _blob_maps(boxes: list, size: int) -> np.ndarray:
    """Maps that are 1 inside each image's boxes and 0 elsewhere: a perfect localizer."""
    return np.stack([boxes_to_mask(b, size).astype(np.float32) for b in boxes])


def test_localization_report_perfect_maps_and_baselines():
    size = 16
    rng = np.random.default_rng(0)

    def sample(n):
        out = []
        for _ in range(n):
            x, y = rng.integers(0, 10, size=2)
            out.append([[int(x), int(y), 6, 6]])
        return out

    train, val, test = sample(40), sample(12), sample(15)
    report = localization_report(
        _blob_maps(test, size), test, train, val_maps=_blob_maps(val, size), val_boxes=val,
        n_boot=200, seed=1, ids=[f"p{i}" for i in range(15)],
    )
    assert report["n_images"] == 15 and report["iou_threshold_source"] == "val"
    for metric in ("pointing_game", "mass_in_boxes", "iou"):
        assert report[metric]["value"] == pytest.approx(1.0)
        assert report[metric]["ci95"] == [pytest.approx(1.0), pytest.approx(1.0)]
    base = report["baselines"]
    x, y = fixed_point_baseline(train, size)
    hits = np.mean([boxes_to_mask(b, size)[y, x] for b in test])
    assert base["fixed_point"]["point"] == [x, y]
    assert base["fixed_point"]["pointing_game"]["value"] == pytest.approx(hits)
    assert base["fixed_point"]["mass_in_boxes"]["value"] == pytest.approx(hits)
    assert base["fixed_point"]["iou"]["value"] == pytest.approx(hits / 36)  # 1 pixel vs 36
    prior = mean_box_prior(train, size)
    t = base["mean_box_prior"]["iou_threshold"]
    assert base["mean_box_prior"]["iou"]["value"] == pytest.approx(
        thresholded_iou(np.broadcast_to(prior, (15, size, size)), test, t).mean())
    assert base["mean_box_prior"]["mass_in_boxes"]["value"] == pytest.approx(
        mass_in_boxes(np.broadcast_to(prior, (15, size, size)), test).mean())
    # random maps point into a 36-pixel box about 36/256 of the time
    assert 0.0 <= base["uniform_random"]["pointing_game"]["value"] < 0.6
    assert base["uniform_random"]["iou"]["value"] < 0.5
    rows = report["per_image"]
    assert len(rows) == 15 and rows[0]["id"] == "p0" and rows[0]["n_boxes"] == 1
    assert rows[0]["box_fraction"] == pytest.approx(36 / 256) and rows[0]["pointing_game"] is True
    # the same seed gives the same report
    again = localization_report(
        _blob_maps(test, size), test, train, val_maps=_blob_maps(val, size), val_boxes=val,
        n_boot=200, seed=1, ids=[f"p{i}" for i in range(15)],
    )
    assert again["baselines"] == base


def test_localization_report_threshold_sources():
    boxes = [[[2, 2, 4, 4]], [[8, 8, 4, 4]]]
    maps = _blob_maps(boxes, 12)
    given = localization_report(maps, boxes, boxes, threshold=0.3, n_boot=50)
    assert given["iou_threshold"] == 0.3 and given["iou_threshold_source"] == "given"
    self_chosen = localization_report(maps, boxes, boxes, n_boot=50)
    assert self_chosen["iou_threshold_source"] == "test"
    # a map that misses: pointing 0, mass 0, IoU 0
    miss = localization_report(maps[::-1].copy(), boxes, boxes, threshold=0.5, n_boot=50)
    assert miss["pointing_game"]["value"] == 0.0 and miss["iou"]["value"] == 0.0
    assert miss["mass_in_boxes"]["value"] == 0.0


# --------------------------------------------------------------------------- paired statistics


def test_mcnemar_p_exact_binomial_on_discordant_pairs():
    from pneumocam.localization import mcnemar_p

    same = np.array([1, 0, 1, 0], bool)
    assert mcnemar_p(same, same) == 1.0  # no discordant pair
    a = np.array([1] * 6 + [0] * 4, bool)
    b = np.zeros(10, bool)
    assert mcnemar_p(a, b) == pytest.approx(2 * 0.5**6)  # 6 discordant, all one way
    assert mcnemar_p(b, a) == pytest.approx(2 * 0.5**6)  # two-sided: symmetric
    # concordant pairs do not count: 3 a-only, 3 b-only -> p = 1
    a = np.array([1, 1, 1, 0, 0, 0, 1, 1], bool)
    b = np.array([0, 0, 0, 1, 1, 1, 1, 1], bool)
    assert mcnemar_p(a, b) == pytest.approx(1.0)


def test_paired_difference_uses_the_same_indices_on_both_sides():
    from pneumocam.localization import paired_difference
    from pneumocam.metrics import bootstrap_indices

    rng = np.random.default_rng(3)
    b = rng.random(40)
    a = b + 0.05 + rng.normal(0, 0.01, 40)  # a little better on every image
    out = paired_difference(a, b, "iou", n_boot=300, seed=7)
    idx = bootstrap_indices(40, 300, 7)
    means = (a - b)[idx].mean(axis=1)
    assert out["difference"] == pytest.approx(np.mean(a - b))
    assert out["ci95"] == [pytest.approx(v) for v in np.percentile(means, [2.5, 97.5])]
    assert out["ci95"][0] > 0 and out["n"] == 40 and out["p_value"] == 0.0
    assert "bootstrap" in out["test"]
    # the unpaired intervals of a and b overlap, the paired one is well above 0
    assert np.percentile(a, 2.5) < np.percentile(b, 97.5)
    # a nan on either side drops that pair
    a2 = a.copy()
    a2[0] = np.nan
    assert paired_difference(a2, b, "iou", n_boot=50)["n"] == 39
    with pytest.raises(ValueError, match="same images"):
        paired_difference(a[:3], b, "iou")


def test_paired_difference_pointing_game_has_mcnemar_and_verdicts():
    from pneumocam.localization import paired_difference, verdict

    a = np.array([1] * 12 + [0] * 3, float)
    b = np.array([0] * 10 + [1] * 2 + [0] * 3, float)
    out = paired_difference(a, b, "pointing_game", n_boot=400, seed=0)
    assert out["difference"] == pytest.approx(10 / 15)
    assert out["discordant"] == [10, 0]
    assert out["p_value"] == pytest.approx(2 * 0.5**10)
    assert "McNemar" in out["test"]
    assert verdict(out) == "above"
    assert verdict(paired_difference(b, a, "pointing_game", n_boot=400)) == "below"
    tie = paired_difference(a, a, "pointing_game", n_boot=50)
    assert tie["p_value"] == 1.0 and tie["ci95"] == [0.0, 0.0] and verdict(tie) == "contains"
    empty = paired_difference([np.nan], [0.0], "mass_in_boxes")
    assert empty["n"] == 0 and verdict(empty) == "undefined"


def test_localization_report_paired_block_matches_per_image_columns():
    size = 16
    rng = np.random.default_rng(0)
    boxes = [[[int(x), int(y), 6, 6]] for x, y in rng.integers(0, 10, size=(20, 2))]
    train = [[[int(x), int(y), 6, 6]] for x, y in rng.integers(0, 10, size=(30, 2))]
    report = localization_report(_blob_maps(boxes, size), boxes, train, n_boot=200, seed=2)
    rows = report["per_image"]
    for key in ("fixed_point", "mean_box_prior", "uniform_random"):
        for metric in ("pointing_game", "mass_in_boxes", "iou"):
            entry = report["paired"][key][metric]
            assert set(entry) >= {"difference", "ci95", "p_value", "n", "test"}
            base = np.array([r[f"{key}_{metric}"] for r in rows], float)
            mine = np.array([r[metric] for r in rows], float)
            assert entry["difference"] == pytest.approx(np.nanmean(mine - base))
            # the per-image baseline column averages to the baseline's reported value
            assert report["baselines"][key][metric]["value"] == pytest.approx(np.nanmean(base))
    # a perfect localizer beats the mean-box prior on every metric
    for metric in ("pointing_game", "mass_in_boxes", "iou"):
        assert report["paired"]["mean_box_prior"][metric]["ci95"][0] > 0


# --------------------------------------------------------------------------- the peak


CELLS = [(0, 0), (0, 6), (6, 0), (6, 6), (3, 2)]  # the four corners and an interior cell


def _cell_map(row: int, col: int, seed: int = 0) -> np.ndarray:
    """A 7x7 CAM (float32) whose strongest cell is (row, col), the rest random below it."""
    low = np.random.default_rng(seed).random((7, 7)).astype(np.float32)
    low[row, col] = 2.0
    return low


def _upsampled(low: np.ndarray, size: int = 224) -> np.ndarray:
    return upsample_maps(torch.from_numpy(low)[None], (size, size))[0].numpy()


@pytest.mark.parametrize("cell", CELLS)
def test_peak_is_the_strongest_cell_centre(cell):
    row, col = cell
    low = _cell_map(row, col)
    centre = ((row + 0.5) * 32, (col + 0.5) * 32)  # cell j of 7 covers [32 j, 32 (j + 1))
    assert peak_yx(low, 224) == centre
    assert peak_yx(low, (224, 224)) == centre
    assert peak_pixel(centre, 224) == (int(centre[0]), int(centre[1]))
    # a box over the cell's centre only (8 x 8 px, 8 px inside the cell on every side) is a hit
    box = [[centre[1] - 4, centre[0] - 4, 8, 8]]
    assert pointing_game(low[None], [box], size=224).tolist() == [True]
    assert point_in_boxes(centre, box, 224)
    # ... and so in the report, with the upsampled maps for mass and IoU
    report = localization_report(_upsampled(low)[None], [box], [box], threshold=0.5, n_boot=20,
                                 peak_maps=low[None])
    assert report["pointing_game"]["value"] == 1.0


@pytest.mark.parametrize("cell", CELLS)
def test_the_upsampled_map_peaks_where_the_plateau_of_its_border_cell_is(cell):
    """Why the peak is taken at low resolution: on the upsampled map a border cell's value is
    flat from the image edge to the cell's centre (16 px), so the first pixel of that plateau
    (today's argmax) is 16 px from the centre, and the plateau's middle still 8 px."""
    row, col = cell
    up = _upsampled(_cell_map(row, col))
    first = np.unravel_index(int(np.argmax(up)), up.shape)
    top = up == up.max()
    rows, cols = np.flatnonzero(top.any(axis=1)), np.flatnonzero(top.any(axis=0))
    expect = {0: (0, 15), 6: (208, 223)}
    for axis_cell, got, firstpix in ((row, rows, first[0]), (col, cols, first[1])):
        if axis_cell in expect:
            assert (got[0], got[-1]) == expect[axis_cell]
            assert firstpix == expect[axis_cell][0]
        else:  # interior: one pixel (or two tied) next to the cell's centre
            assert got[-1] - got[0] <= 1 and abs((got[0] + got[-1] + 1) / 2 - 16 - 32 * axis_cell) <= 1
    # the fallback on the upsampled map alone: the plateau's centre, never its first pixel
    y, x = peak_yx(up)
    assert (y, x) == ((rows[0] + rows[-1] + 1) / 2, (cols[0] + cols[-1] + 1) / 2)
    # the rule of the old argmax misses a box over the top/left cells' centres
    if cell == (0, 0):
        assert (y, x) == (8.0, 8.0)
        box = [[12, 12, 8, 8]]
        assert not boxes_to_mask(box, 224)[first]
        assert pointing_game(up[None], [box]).tolist() == [False]
        assert pointing_game(_cell_map(0, 0)[None], [box], size=224).tolist() == [True]


def test_peak_plateau_rules():
    # a constant map: the whole map is the plateau, its centre
    assert peak_yx(np.zeros((4, 6))) == (2.0, 3.0)
    assert peak_yx(np.zeros((7, 7)), 224) == (112.0, 112.0)
    # a 2x3 plateau: its centre, at any scale
    m = np.zeros((7, 7))
    m[1:3, 2:5] = 1.0
    assert peak_yx(m) == (2.0, 3.5)
    assert peak_yx(m, 70) == (20.0, 35.0)
    # two disjoint plateaus: the one holding the first maximum in row-major order
    m[5, 6] = 1.0
    assert peak_yx(m) == (2.0, 3.5)
    # an L-shaped plateau whose bounding-box centre is off it: the nearest cell's centre
    ell = np.zeros((5, 5))
    ell[0, :] = 1.0
    ell[:, 0] = 1.0
    assert peak_yx(ell) == (0.5, 2.5)  # (0, 2) and (2, 0) tie: the first in row-major order
    # a point on the far edge belongs to the last pixel
    assert peak_pixel((224.0, 10.0), 224) == (223, 10)
    with pytest.raises(ValueError, match="NaN"):
        peak_yx(np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match="one \\(h, w\\) map"):
        peak_yx(np.zeros((2, 3, 3)))
