"""Metrics: known answers by hand, one-class edges, and the vectorised bootstrap against sklearn."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from pneumocam import metrics as M


def _toy(n: int, seed: int, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.25).astype(int)
    p = 1 / (1 + np.exp(-(1.2 * y - 1.0 + rng.normal(0, 1, n))))
    return y, (np.round(p, 1) if ties else p)


def test_threshold_metrics_hand_example():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    p = np.array([0.9, 0.8, 0.3, 0.6, 0.2, 0.1, 0.5, 0.7])
    # >= 0.5 positive: pred = 1 1 0 1 0 0 1 1 -> tp 3 (0,1,7), fn 1 (2), fp 2 (3,6), tn 2 (4,5)
    m = M.threshold_metrics(y, p, 0.5)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (3, 1, 2, 2)
    assert all(type(m[k]) is int for k in ("tp", "fp", "tn", "fn"))
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["sensitivity"] == pytest.approx(3 / 4)
    assert m["specificity"] == pytest.approx(2 / 4)
    assert m["precision"] == pytest.approx(3 / 5)
    assert m["f1"] == pytest.approx(2 * (3 / 5) * (3 / 4) / (3 / 5 + 3 / 4))
    assert set(m) == set(M.THRESHOLD_METRIC_KEYS)
    # a higher threshold moves 0.5 and 0.6 to negative
    m2 = M.threshold_metrics(y, p, 0.65)
    assert (m2["tp"], m2["fp"], m2["tn"], m2["fn"]) == (3, 0, 4, 1)


def test_threshold_metrics_zero_division_is_nan_not_a_crash():
    m = M.threshold_metrics(np.array([0, 0, 0]), np.array([0.1, 0.2, 0.3]), 0.5)
    assert math.isnan(m["sensitivity"]) and math.isnan(m["precision"]) and math.isnan(m["f1"])
    assert m["specificity"] == 1.0 and m["accuracy"] == 1.0 and m["tn"] == 3
    m = M.threshold_metrics(np.array([1, 1]), np.array([0.9, 0.8]), 0.5)
    assert math.isnan(m["specificity"]) and m["sensitivity"] == 1.0
    m = M.threshold_metrics(np.array([], dtype=int), np.array([]), 0.5)
    assert math.isnan(m["accuracy"])


def test_one_class_auc_and_ap_are_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(M.safe_roc_auc(np.zeros(5), np.linspace(0, 1, 5)))
        assert math.isnan(M.safe_average_precision(np.ones(5), np.linspace(0, 1, 5)))
        assert math.isnan(M.youden_threshold(np.ones(3), np.array([0.1, 0.5, 0.9])))
    y, p = _toy(300, 0)
    assert M.safe_roc_auc(y, p) == pytest.approx(roc_auc_score(y, p))
    assert M.safe_average_precision(y, p) == pytest.approx(average_precision_score(y, p))


def test_youden_threshold_on_a_separable_toy():
    y = np.array([0, 0, 0, 0, 1, 1, 1])
    p = np.array([0.05, 0.2, 0.3, 0.35, 0.6, 0.8, 0.9])
    t = M.youden_threshold(y, p)
    assert t == pytest.approx(0.6)  # the lowest positive score: J = 1
    m = M.threshold_metrics(y, p, t)
    assert m["sensitivity"] == 1.0 and m["specificity"] == 1.0
    # scores that rank backwards: no threshold beats J = 0 -> everything negative
    t_inv = M.youden_threshold(y, 1 - p)
    assert t_inv > (1 - p).max()


def test_ece_perfectly_calibrated_vs_overconfident():
    # three bins whose fraction positive equals the predicted probability exactly
    y = np.array([1] + [0] * 9 + [1] * 5 + [0] * 5 + [1] * 9 + [0])
    p = np.array([0.1] * 10 + [0.5] * 10 + [0.9] * 10)
    cal = M.calibration(y, p, 15)
    assert cal["ece"] == pytest.approx(0.0, abs=1e-12)
    assert sum(cal["count"]) == 30 and len(cal["bin_edges"]) == 16
    # overconfident: says 0.99, right half the time -> ECE = 0.49
    y2 = np.array([1] * 5 + [0] * 5)
    p2 = np.full(10, 0.99)
    assert M.expected_calibration_error(y2, p2) == pytest.approx(0.49)
    # p = 1.0 lands in the last bin, p = 0 in the first
    cal3 = M.calibration(np.array([1, 0]), np.array([1.0, 0.0]), 15)
    assert cal3["count"][-1] == 1 and cal3["count"][0] == 1 and cal3["ece"] == 0.0
    assert math.isnan(cal3["mean_prob"][7])  # empty bin


@pytest.mark.parametrize("ties", [False, True])
def test_vectorised_resampled_auc_and_ap_equal_sklearn(ties):
    y, p = _toy(400, 1, ties=ties)
    idx = M.bootstrap_indices(y.size, 25, seed=3)
    auc = M.resampled_roc_auc(y, p, idx)
    ap = M.resampled_average_precision(y, p, idx)
    ref_auc = [roc_auc_score(y[i], p[i]) for i in idx]
    ref_ap = [average_precision_score(y[i], p[i]) for i in idx]
    np.testing.assert_allclose(auc, ref_auc, atol=1e-12)
    np.testing.assert_allclose(ap, ref_ap, atol=1e-12)
    both = M.resampled_auc_and_ap(y, p, idx)
    np.testing.assert_array_equal(both[0], auc)
    np.testing.assert_array_equal(both[1], ap)
    tm = M.resampled_threshold_metrics(y, p, 0.4, idx)
    for r in (0, 7):
        ref = M.threshold_metrics(y[idx[r]], p[idx[r]], 0.4)
        for k in ("accuracy", "sensitivity", "specificity", "precision", "f1"):
            assert tm[k][r] == pytest.approx(ref[k])


def test_bootstrap_ci_contains_point_and_is_seeded():
    y, p = _toy(500, 2)
    a = M.bootstrap_ci(y, p, n_boot=300, seed=0)
    b = M.bootstrap_ci(y, p, n_boot=300, seed=0)
    c = M.bootstrap_ci(y, p, n_boot=300, seed=1)
    for key in ("roc_auc", "average_precision"):
        lo, hi = a[key]["ci95"]
        assert lo < a[key]["value"] < hi
        assert a[key]["ci95"] == b[key]["ci95"]
        assert a[key]["ci95"] != c[key]["ci95"]
        assert a[key]["n_boot_valid"] == 300 and a[key]["n_boot_skipped"] == 0


def test_bootstrap_ci_narrows_with_n():
    small = M.bootstrap_ci(*_toy(200, 4), n_boot=300, seed=0)["roc_auc"]["ci95"]
    large = M.bootstrap_ci(*_toy(5000, 4), n_boot=300, seed=0)["roc_auc"]["ci95"]
    assert (large[1] - large[0]) < 0.5 * (small[1] - small[0])


def test_bootstrap_skips_and_counts_one_class_resamples():
    y = np.array([1, 0, 0, 0, 0])
    p = np.array([0.9, 0.1, 0.2, 0.3, 0.4])
    res = M.bootstrap_ci(y, p, n_boot=200, seed=0)["roc_auc"]
    # P(no positive among 5 draws) = 0.8^5 = 0.33: many resamples are skipped, not crashed on
    assert 20 < res["n_boot_skipped"] < 120
    assert res["n_boot_valid"] + res["n_boot_skipped"] == 200
    assert res["value"] == 1.0 and res["ci95"] == [1.0, 1.0]
    one = M.bootstrap_ci(np.zeros(6), np.linspace(0, 1, 6), n_boot=50, seed=0)["roc_auc"]
    assert math.isnan(one["value"]) and all(math.isnan(v) for v in one["ci95"])
    assert one["n_boot_skipped"] == 50


def test_threshold_metrics_ci_matches_point_metrics():
    y, p = _toy(300, 5)
    out = M.threshold_metrics_ci(y, p, 0.45, n_boot=200, seed=0)
    point = M.threshold_metrics(y, p, 0.45)
    assert out["threshold"] == 0.45
    for k in ("accuracy", "sensitivity", "specificity", "precision", "f1"):
        assert out[k]["value"] == pytest.approx(point[k])
        assert out[k]["ci95"][0] <= point[k] <= out[k]["ci95"][1]
    assert out["confusion_matrix"] == {k: point[k] for k in ("tn", "fp", "fn", "tp")}


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in length"):
        M.threshold_metrics(np.array([0, 1]), np.array([0.5]))


def test_estimate_reads_every_form_with_one_rule_for_what_is_missing():
    import math

    from pneumocam.metrics import Estimate

    assert Estimate.from_json({"value": 0.9, "ci95": [0.8, 0.95], "n_boot_valid": 10}) == \
        Estimate(0.9, 0.8, 0.95)
    assert Estimate.from_json(0.5) == Estimate(0.5) and math.isnan(Estimate(0.5).low)
    for missing in (None, {}, {"value": None, "ci95": None}, {"value": "x", "ci95": [None]}, True):
        est = Estimate.from_json(missing)
        assert all(math.isnan(v) for v in (est.value, est.low, est.high)), missing
    est = Estimate.from_json({"value": 0.7, "ci95": [None, 0.9]})
    assert est.value == 0.7 and math.isnan(est.low) and est.high == 0.9
    assert Estimate(0.7, 0.6, 0.8).to_json() == {"value": 0.7, "ci95": [0.6, 0.8]}
    assert Estimate(0.7, 0.6, 0.8).columns("auc") == {"auc": 0.7, "auc_ci95_lo": 0.6,
                                                      "auc_ci95_hi": 0.8}
