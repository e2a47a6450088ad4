"""The comparison over training seeds: its interval, its sentences and its files, on synthetic
per-seed numbers (no training)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t as student_t

from pneumocam.errors import ConfigError
from pneumocam.seed_comparison import (
    compare_seeds,
    describe_seed_comparison,
    mean_difference_interval,
    metric_row,
    seed_run_name,
    seed_runs,
    table_seeds,
)


def test_one_seed_keeps_the_single_seed_layout():
    assert seed_runs(["original", "balanced"], [4]) == {4: {"original": "original",
                                                            "balanced": "balanced"}}
    assert seed_runs(["original", "balanced"], [0, 2])[2] == {"original": "original-s2",
                                                              "balanced": "balanced-s2"}
    assert seed_run_name("balanced", 11) == "balanced-s11"


def test_the_interval_adds_the_test_image_variance_to_the_seed_t_interval():
    diffs = np.array([0.02, 0.05, 0.03])
    q = student_t.ppf(0.975, 2)
    t_half = q * diffs.std(ddof=1) / math.sqrt(3)
    # no test-image variation: the two-source interval is the t-interval over seeds
    flat = mean_difference_interval(diffs, np.tile(diffs, (200, 1)))
    assert flat["ci95_lo"] == pytest.approx(diffs.mean() - t_half)
    assert flat["ci95_hi"] == pytest.approx(diffs.mean() + t_half)
    assert (flat["t_lo"], flat["t_hi"]) == pytest.approx((flat["ci95_lo"], flat["ci95_hi"]))
    # test-image variation widens it by exactly its variance
    rng = np.random.default_rng(0)
    shift = rng.normal(0, 0.01, (500, 1))  # the shared test set moves every seed together
    draws = diffs + shift
    both = mean_difference_interval(diffs, draws)
    var_test = np.var(draws.mean(axis=1), ddof=1)
    half = q * math.sqrt(diffs.var(ddof=1) / 3 + var_test)
    assert both["ci95_hi"] - both["ci95_lo"] == pytest.approx(2 * half)
    assert both["ci95_hi"] - both["ci95_lo"] > flat["ci95_hi"] - flat["ci95_lo"]
    assert both["ci95_hi"] - both["ci95_lo"] > both["test_hi"] - both["test_lo"]
    with pytest.raises(ConfigError, match="two seeds"):
        mean_difference_interval(diffs[:1], draws[:, :1])


def _row(reference, run, noise=0.002, seed=0):
    rng = np.random.default_rng(seed)
    ref, other = np.asarray(reference), np.asarray(run)
    shift = rng.normal(0, noise, (300, 1))
    return metric_row("roc_auc", "balanced", "original", [0, 1, 2], ref, other,
                      ref + shift, other + shift + rng.normal(0, noise / 2, (300, 3)))


def test_conclusions_follow_the_per_seed_numbers():
    big = _row([0.80, 0.81, 0.79], [0.85, 0.865, 0.845])
    small = _row([0.80, 0.83, 0.77], [0.81, 0.82, 0.775])
    assert big["effect_exceeds_spread"] and big["ci95_lo"] > 0
    assert not small["effect_exceeds_spread"] and small["ci95_lo"] < 0 < small["ci95_hi"]
    table = pd.DataFrame([big, small])
    assert table_seeds(table.columns) == [0, 1, 2]
    first, second = describe_seed_comparison(table).splitlines()
    assert "balanced is higher than original" in first
    assert "The effect is larger than the spread between seeds" in first
    assert "per seed +0.050, +0.055, +0.055" in first and "higher in 3 of 3" in first
    assert "no clear difference" in second
    assert "The effect is not larger than the spread between seeds" in second
    lower = _row([0.85, 0.865, 0.845], [0.80, 0.81, 0.79])
    assert "balanced is lower than original" in describe_seed_comparison(pd.DataFrame([lower]))


def _write_run(root: Path, name: str, y: np.ndarray, prob: np.ndarray, identity: dict) -> None:
    metrics = root / "metrics"
    metrics.mkdir(parents=True, exist_ok=True)
    ids = [f"test-{i:04d}" for i in range(y.size)]
    pd.DataFrame({"patientId": ids, "label": y, "prob": prob,
                  "view_position": ["AP", "PA"] * (y.size // 2)}).to_csv(
        metrics / f"{name}_predictions_test.csv", index=False)
    (metrics / f"{name}_eval.json").write_text(json.dumps({
        "operating_threshold": 0.5, "data_source": {"kind": "demo", "path": "data/demo"},
        "data_identity": identity}))
    pos = np.flatnonzero(y == 1)
    pd.DataFrame({"patientId": [ids[i] for i in pos],
                  "pointing_hit": (prob[pos] > 0.6).astype(float),
                  "mass_in_boxes": prob[pos] / 2, "iou": prob[pos] / 3}).to_csv(
        metrics / f"{name}_localization.csv", index=False)


def test_compare_seeds_writes_per_seed_values_and_the_two_source_interval(project_root):
    rng = np.random.default_rng(1)
    y = np.array([0, 1] * 40)
    identity = {"kind": "demo", "labels_sha256": "ab" * 8, "split_fingerprint": "cd" * 8}
    for s in (0, 1, 2):
        noise = rng.normal(0, 0.25, y.size)
        _write_run(project_root, f"original-s{s}", y, np.clip(0.5 + 0.2 * (y - 0.5) + noise,
                                                              0, 1), identity)
        _write_run(project_root, f"balanced-s{s}", y, np.clip(0.5 + 0.4 * (y - 0.5) + noise,
                                                              0, 1), identity)
    table = compare_seeds(["balanced", "original"], [0, 1, 2], n_boot=200, seed=0)
    assert list(table["metric"]) == ["roc_auc", "average_precision", "sensitivity_at_op",
                                     "specificity_at_op", "pointing_game", "mass_in_boxes", "iou"]
    assert set(table["reference"]) == {"original"}  # the reference goes first whatever the order
    saved = pd.read_csv(project_root / "metrics" / "comparison_seeds.csv")
    auc = saved.set_index("metric").loc["roc_auc"]
    for s in (0, 1, 2):
        assert auc[f"diff_s{s}"] == pytest.approx(auc[f"run_s{s}"] - auc[f"reference_s{s}"])
    assert auc["diff_mean"] > 0 and auc["ci95_lo"] <= auc["t_lo"] and auc["ci95_lo"] < auc["test_lo"]
    doc = json.loads((project_root / "metrics" / "comparison_seeds.json").read_text())
    assert doc["conclusions"] == describe_seed_comparison(saved).splitlines()
    assert doc["localization_skipped"] is None and doc["run_names"]["1"]["balanced"] == "balanced-s1"
    assert (project_root / "images" / "comparison_seeds.png").stat().st_size > 0
    assert not (project_root / "metrics" / "comparison.csv").exists()  # single-seed file untouched


def test_compare_seeds_refuses_one_seed(project_root):
    with pytest.raises(ConfigError, match="two or more seeds"):
        compare_seeds(["original", "balanced"], [0])
    with pytest.raises(ConfigError, match="distinct"):
        compare_seeds(["original", "balanced"], [1, 1])


def test_compare_script_with_seeds(tmp_path):
    from helpers import run_script

    rng = np.random.default_rng(2)
    y = np.array([0, 1] * 30)
    identity = {"kind": "demo", "labels_sha256": "ab" * 8, "split_fingerprint": "cd" * 8}
    for s in (0, 1):
        for run, gain in (("original", 0.2), ("balanced", 0.3)):
            _write_run(tmp_path, f"{run}-s{s}", y,
                       np.clip(0.5 + gain * (y - 0.5) + rng.normal(0, 0.2, y.size), 0, 1), identity)
    done = run_script("compare.py", "--seeds", "0", "1", "--n-boot", "50", root=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "test ROC AUC, balanced - original: mean difference" in done.stdout
    assert (tmp_path / "metrics" / "comparison_seeds.csv").is_file()
    missing = run_script("compare.py", "--seeds", "0", "1", "2", root=tmp_path)
    assert missing.returncode == 1 and "original-s2_eval.json not found" in missing.stderr
