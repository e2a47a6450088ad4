"""The comparison over several training seeds: is the sampler's effect larger than the spread
between seeds?

One training is one draw of the initial weights and of the batches; the single-seed comparison
(:mod:`pneumocam.compare`) covers which test images were drawn, not how much a second training
seed would move the result. With runs trained once per seed (``weights/<run>-s<seed>/``, see
:func:`seed_run_name`), :func:`compare_seeds` reports per metric (test ROC AUC, AP, sensitivity
and specificity at each run's operating threshold, and the localization figures when every run
was interpreted):

- each seed's value for the reference run (``original``) and the other run, their mean and
  standard deviation over seeds, and the per-seed paired difference run - reference;
- an interval for the mean difference that carries both sources of variation
  (:func:`mean_difference_interval`): ``mean +/- t(0.975, S-1) * sqrt(sd_seed^2 / S + v_test)``,
  where ``sd_seed`` is the standard deviation of the per-seed differences and ``v_test`` the
  variance, over test-image bootstrap resamples, of the seed-averaged difference. Why this one:
  the test images are the same for every seed, so their sampling error does not average out over
  seeds and is added in full; the seed part is a t-interval because its spread is estimated from
  a handful of seeds. Its width is therefore at least the t-interval over seeds, and (t > 1.96)
  at least the test-image bootstrap's. The two-stage bootstrap (resample seeds, then test images)
  is saved beside it but not used for verdicts: with 2-3 seeds it has only a few distinct seed
  draws and understates the seed variance by a factor (S-1)/S.

Writes ``metrics/comparison_seeds.csv`` (one row per run and metric, per-seed values as
``reference_s<k>``, ``run_s<k>``, ``diff_s<k>`` columns), ``metrics/comparison_seeds.json`` (the
same, the conclusions, settings, provenance) and ``images/comparison_seeds.png`` (one point per
seed). The single-seed files (``comparison.csv`` ...) are left alone.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import metrics as M
from . import paths, plots
from .atomic import write_frame_csv
from .compare import REFERENCE_RUN, align, check_same_source, load_evaluated_run
from .errors import ConfigError, RunOutputsError
from .evaluation import nan_to_none
from .processed import DataSource
from .provenance import provenance, write_json_atomic

#: Classification metrics compared over seeds (column names as in ``comparison.csv``).
CLASSIFICATION_METRICS = ("roc_auc", "average_precision", "sensitivity_at_op", "specificity_at_op")
#: Localization metrics and their per-image column in ``metrics/<run>_localization.csv``.
LOCALIZATION_COLUMNS = {"pointing_game": "pointing_hit", "mass_in_boxes": "mass_in_boxes",
                        "iou": "iou"}
METRIC_LABELS = {"roc_auc": "test ROC AUC", "average_precision": "test AP",
                 "sensitivity_at_op": "sensitivity at op", "specificity_at_op": "specificity at op",
                 "pointing_game": "pointing game", "mass_in_boxes": "mass in boxes", "iou": "IoU"}
INTERVAL_METHOD = ("two-source t-interval: mean +/- t(0.975, S-1) * sqrt(sd_seed^2/S + v_test), "
                   "v_test = variance of the seed-averaged difference over paired test-image "
                   "bootstrap resamples (same indices for every seed and run)")
_SEED_COLUMN = re.compile(r"diff_s(\d+)")


def seed_run_name(run: str, seed: int) -> str:
    """``<run>-s<seed>``: the run name of ``run`` trained with ``seed`` in a multi-seed study."""
    return paths.check_run_name(f"{run}-s{int(seed)}")


def seed_runs(runs: Sequence[str], seeds: Sequence[int]) -> dict[int, dict[str, str]]:
    """``{seed: {run: run name}}``; one seed keeps the plain names (the single-seed layout)."""
    if len(seeds) == 1:
        return {int(seeds[0]): {r: r for r in runs}}
    return {int(s): {r: seed_run_name(r, s) for r in runs} for s in seeds}


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """The seeds as a list of distinct non-negative ints; :class:`ConfigError` otherwise."""
    out = [int(s) for s in seeds]
    if not out or any(s < 0 for s in out) or len(set(out)) != len(out):
        raise ConfigError(f"--seeds {' '.join(map(str, seeds))}: expected distinct non-negative "
                          "integers, e.g. --seeds 0 1 2.")
    return out


@dataclass
class SeedCompareConfig:
    """Settings of one multi-seed comparison (saved in ``metrics/comparison_seeds.json``).

    Attributes:
        runs: run names without the seed suffix; the first (or ``original``) is the reference.
        seeds: training seeds; the runs are ``<run>-s<seed>``. At least two.
        n_boot: test-image bootstrap resamples (the same indices for every seed and run).
        seed: seed of the resampling.
    """

    runs: list[str] = field(default_factory=lambda: ["original", "balanced"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    n_boot: int = 1000
    seed: int = 0


# --------------------------------------------------------------------------- the statistics


def mean_difference_interval(diffs: np.ndarray, test_draws: np.ndarray, seed: int = 0,
                             level: float = 0.95) -> dict[str, float]:
    """The mean over seeds of a paired difference and its intervals (see the module docstring).

    Args:
        diffs: (S,) float, the point difference run - reference of each seed (S >= 2).
        test_draws: (B, S) float, the same difference on B test-image resamples (the same
            resample for every seed in a row); nan rows (one-class resamples) are ignored.
        seed: seed of the two-stage bootstrap's seed draws.

    Returns:
        ``diff_mean``, ``diff_sd`` (over seeds), ``ci95_lo``/``ci95_hi`` (the two-source interval,
        the one verdicts use), ``t_lo``/``t_hi`` (t-interval over seeds only), ``test_lo``/
        ``test_hi`` (test-image percentile interval of the seed mean), ``twostage_lo``/
        ``twostage_hi`` (two-stage percentile bootstrap), ``sd_test`` (sd of the seed mean over
        test resamples).
    """
    from scipy.stats import t as student_t

    d = np.asarray(diffs, dtype=np.float64)
    draws = np.asarray(test_draws, dtype=np.float64).reshape(-1, d.size)
    s = d.size
    if s < 2:
        raise ConfigError("a multi-seed interval needs at least two seeds (--seeds 0 1 ...).")
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    q = float(student_t.ppf(0.5 + level / 2, s - 1))
    seed_means = _nanmean_rows(draws)
    finite = seed_means[np.isfinite(seed_means)]
    var_test = float(np.var(finite, ddof=1)) if finite.size > 1 else 0.0
    half = q * math.sqrt(sd * sd / s + var_test)
    t_half = q * sd / math.sqrt(s)
    test_lo, test_hi, _ = M.percentile_ci(seed_means, level)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, s, size=(draws.shape[0], s))
    two_stage = _nanmean_rows(np.take_along_axis(draws, pick, axis=1))
    ts_lo, ts_hi, _ = M.percentile_ci(two_stage, level)
    return {"diff_mean": mean, "diff_sd": sd, "ci95_lo": mean - half, "ci95_hi": mean + half,
            "t_lo": mean - t_half, "t_hi": mean + t_half, "test_lo": test_lo, "test_hi": test_hi,
            "twostage_lo": ts_lo, "twostage_hi": ts_hi, "sd_test": math.sqrt(var_test)}


def metric_row(metric: str, run: str, reference: str, seeds: Sequence[int],
               reference_values: np.ndarray, run_values: np.ndarray,
               reference_draws: np.ndarray, run_draws: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """One row of ``comparison_seeds.csv``: a metric of ``run`` against ``reference`` over seeds.

    Args:
        reference_values, run_values: (S,) point values per seed (seed order of ``seeds``).
        reference_draws, run_draws: (B, S) the same on paired test-image resamples.

    Returns:
        ``run``, ``reference``, ``metric``, ``n_seeds``, per seed ``reference_s<k>``,
        ``run_s<k>``, ``diff_s<k>``; ``reference_mean``/``_sd``, ``run_mean``/``_sd``;
        :func:`mean_difference_interval`'s keys; ``seed_spread`` (the larger of the two runs'
        sd over seeds), ``effect_exceeds_spread`` (``|diff_mean| > seed_spread``),
        ``n_seeds_run_higher`` and ``interval_method``.
    """
    ref_v = np.asarray(reference_values, dtype=np.float64)
    run_v = np.asarray(run_values, dtype=np.float64)
    diffs = run_v - ref_v
    row: dict[str, Any] = {"run": run, "reference": reference, "metric": metric,
                           "n_seeds": len(seeds)}
    for k, s in enumerate(seeds):
        row[f"reference_s{s}"], row[f"run_s{s}"], row[f"diff_s{s}"] = (
            float(ref_v[k]), float(run_v[k]), float(diffs[k]))
    row.update(reference_mean=float(ref_v.mean()), reference_sd=float(ref_v.std(ddof=1)),
               run_mean=float(run_v.mean()), run_sd=float(run_v.std(ddof=1)))
    row.update(mean_difference_interval(
        diffs, np.asarray(run_draws, dtype=np.float64) - np.asarray(reference_draws, dtype=np.float64),
        seed=seed))
    row["seed_spread"] = max(row["reference_sd"], row["run_sd"])
    row["effect_exceeds_spread"] = bool(abs(row["diff_mean"]) > row["seed_spread"])
    row["n_seeds_run_higher"] = int(np.sum(diffs > 0))
    row["interval_method"] = INTERVAL_METHOD
    return row


def table_seeds(columns: Sequence[str]) -> list[int]:
    """The seeds of a :func:`compare_seeds` table, read from its ``diff_s<k>`` columns."""
    return [int(m.group(1)) for c in columns if (m := _SEED_COLUMN.fullmatch(str(c)))]


def describe_seed_comparison(table: pd.DataFrame) -> str:
    """Sentences built only from a :func:`compare_seeds` table, one per run and metric.

    Each says the mean paired difference over seeds with its per-seed values and two-source
    interval; whether that effect is larger than the spread between seeds (the larger standard
    deviation over seeds of the two runs); and the verdict of the interval (above 0: the run is
    higher; below: lower; around 0: no clear difference).
    """
    lines = []
    for _, row in table.iterrows():
        seeds = table_seeds(row.index)
        per_seed = ", ".join(f"{row[f'diff_s{s}']:+.3f}" for s in seeds)
        lo, hi = row["ci95_lo"], row["ci95_hi"]
        label = METRIC_LABELS.get(row["metric"], row["metric"])
        if lo > 0:
            verdict = f"{row['run']} is higher than {row['reference']}"
        elif hi < 0:
            verdict = f"{row['run']} is lower than {row['reference']}"
        else:
            verdict = "no clear difference (the interval includes 0)"
        size = ("larger than" if bool(row["effect_exceeds_spread"]) else "not larger than")
        lines.append(
            f"{label}, {row['run']} - {row['reference']}: mean difference "
            f"{row['diff_mean']:+.3f} over {int(row['n_seeds'])} seeds (per seed {per_seed}; "
            f"higher in {int(row['n_seeds_run_higher'])} of {int(row['n_seeds'])}), 95% interval "
            f"from both sources {lo:+.3f} to {hi:+.3f}: {verdict}. The effect is {size} the "
            f"spread between seeds (sd {row['reference_sd']:.3f} for {row['reference']}, "
            f"{row['run_sd']:.3f} for {row['run']})."
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- reading the runs


def _classification(names: dict[int, dict[str, str]], n_boot: int, seed: int
                    ) -> tuple[dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], dict[str, Any]]:
    """``{metric: {run: (values (S,), draws (B, S))}}`` for the classification metrics."""
    flat = [n for per_seed in names.values() for n in per_seed.values()]
    data = [load_evaluated_run(n) for n in flat]
    source = check_same_source(data)
    _, y, _, probs = align(data)
    if not M.has_two_classes(y):
        raise RunOutputsError(f"{paths.run_files(flat[0])['pred_test']}: the test set holds one "
                              "class; AUCs are undefined. Use a larger test split.")
    idx = M.bootstrap_indices(y.size, n_boot, seed)
    evals = {d.name: d.eval for d in data}
    out: dict[str, dict[str, list]] = {m: {} for m in CLASSIFICATION_METRICS}
    for per_seed in names.values():
        for run, name in per_seed.items():
            p = probs[name]
            thr = evals[name].get("operating_threshold")
            if thr is None:
                raise RunOutputsError(f"{paths.run_files(name)['eval']}: no operating_threshold; "
                                      "retrain the run.")
            auc_d, ap_d = M.resampled_auc_and_ap(y, p, idx)
            tm = M.threshold_metrics(y, p, float(thr))
            tm_d = M.resampled_threshold_metrics(y, p, float(thr), idx)
            for metric, value, draws in (
                    ("roc_auc", M.safe_roc_auc(y, p), auc_d),
                    ("average_precision", M.safe_average_precision(y, p), ap_d),
                    ("sensitivity_at_op", tm["sensitivity"], tm_d["sensitivity"]),
                    ("specificity_at_op", tm["specificity"], tm_d["specificity"])):
                out[metric].setdefault(run, []).append((float(value), draws))
    stacked = {m: {r: (np.array([v for v, _ in pairs]), np.stack([d for _, d in pairs], axis=1))
                   for r, pairs in by_run.items()} for m, by_run in out.items()}
    return stacked, {"data_source": source, "n_test": int(y.size)}


def _localization(names: dict[int, dict[str, str]], n_boot: int, seed: int
                  ) -> tuple[dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], str | None]:
    """The localization metrics like :func:`_classification`, from the per-image CSVs; empty
    with the reason when a run was not interpreted or the runs saw different images."""
    from .interpret import output_paths

    tables = {}
    for per_seed in names.values():
        for name in per_seed.values():
            path = output_paths(name)["localization_csv"]
            if not path.is_file():
                return {}, (f"{path} not found (interpret {name} to compare localization over "
                            "seeds)")
            tables[name] = pd.read_csv(path, dtype={"patientId": str}).set_index("patientId")
    first = next(iter(tables.values()))
    if any(set(t.index) != set(first.index) or t.index.has_duplicates for t in tables.values()):
        return {}, "the runs' localization tables hold different images"
    if first.empty:
        return {}, "no positive test image with boxes"
    idx = M.bootstrap_indices(len(first), n_boot, seed)
    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for metric, col in LOCALIZATION_COLUMNS.items():
        out[metric] = {}
        for run in next(iter(names.values())):
            values, draws = [], []
            for per_seed in names.values():
                v = tables[per_seed[run]].loc[first.index, col].to_numpy(dtype=np.float64)
                with np.errstate(invalid="ignore"):
                    values.append(float(np.nanmean(v)) if np.isfinite(v).any() else math.nan)
                    draws.append(_nanmean_rows(v[idx]))
            out[metric][run] = (np.array(values), np.stack(draws, axis=1))
    return out, None


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    """Row means ignoring nan, nan for an all-nan row (no warning)."""
    finite = np.isfinite(a)
    count = finite.sum(axis=1)
    total = np.where(finite, a, 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


# --------------------------------------------------------------------------- the stage


def compare_seeds(runs: Sequence[str] = ("original", "balanced"), seeds: Sequence[int] = (0, 1, 2),
                  n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Compare runs trained once per seed; write the multi-seed table, JSON and figure.

    Args:
        runs: run names without the seed suffix (``original`` is the reference when present,
            else the first); each needs ``metrics/<run>-s<seed>_eval.json`` and test predictions.
        seeds: two or more training seeds.
        n_boot: test-image bootstrap resamples (paired: the same indices for every seed and run).
        seed: seed of the resampling.

    Returns:
        One row per non-reference run and metric (:func:`metric_row`).

    Raises:
        ConfigError: fewer than two seeds or runs, bad seeds, ``n_boot`` < 1.
        RunOutputsError, DataSourceError: a missing run, or runs on different data or images.
    """
    seeds = check_seeds(seeds)
    runs = list(dict.fromkeys(runs))
    if len(seeds) < 2 or len(runs) < 2:
        raise ConfigError(f"a multi-seed comparison needs two or more seeds and runs (got seeds "
                          f"{seeds}, runs {runs}); one seed is compared by scripts/compare.py "
                          "without --seeds.")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ConfigError(f"--n-boot {n_boot!r}: expected an integer of at least 1.")
    if REFERENCE_RUN in runs:
        runs = [REFERENCE_RUN] + [r for r in runs if r != REFERENCE_RUN]
    config = SeedCompareConfig(runs=runs, seeds=seeds, n_boot=n_boot, seed=seed)
    names = seed_runs(runs, seeds)
    values, info = _classification(names, n_boot, seed)
    loc_values, loc_skipped = _localization(names, n_boot, seed)
    values.update(loc_values)
    ref = runs[0]
    rows = []
    for run in runs[1:]:
        for metric, by_run in values.items():
            (rv, rd), (xv, xd) = by_run[ref], by_run[run]
            rows.append(metric_row(metric, run, ref, seeds, rv, xv, rd, xd, seed=seed))
    table = pd.DataFrame(rows)
    demo = DataSource.from_json(info["data_source"]).is_demo
    out_csv = write_frame_csv(paths.metrics_dir() / "comparison_seeds.csv", table, index=False)
    fig_path = seed_figure(table, demo)
    conclusions = describe_seed_comparison(table)
    write_json_atomic(paths.metrics_dir() / "comparison_seeds.json", nan_to_none({
        "config": asdict(config), "run_names": {str(s): n for s, n in names.items()},
        "reference_run": ref, "data_source": info["data_source"], "synthetic_demo": demo,
        "n_test": info["n_test"], "interval_method": INTERVAL_METHOD,
        "localization_skipped": loc_skipped, "rows": table.to_dict(orient="records"),
        "conclusions": conclusions.splitlines(),
        "outputs": {"csv": str(out_csv), "figure": str(fig_path)}, "provenance": provenance(),
    }))
    return table


def seed_figure(table: pd.DataFrame, demo: bool) -> Path:
    """``images/comparison_seeds.png``: per metric, each seed's value of both runs (one point
    per seed, the seed's two runs joined) above, and below each seed's paired difference with
    the mean and its two-source 95% interval."""
    seeds = table_seeds(table.columns)
    n = len(table)
    fig = plots.new_figure((2.3 * max(n, 2), 5.4), demo)
    axes = fig.subplots(2, max(n, 1), squeeze=False)
    colors = [f"C{k % 10}" for k in range(len(seeds))]
    for j, (_, row) in enumerate(table.iterrows()):
        top, bottom = axes[0, j], axes[1, j]
        for k, s in enumerate(seeds):
            top.plot([0, 1], [row[f"reference_s{s}"], row[f"run_s{s}"]], "-o", color=colors[k],
                     alpha=0.8, label=f"seed {s}")
            bottom.plot([k * 0.1 - 0.05 * (len(seeds) - 1)], [row[f"diff_s{s}"]], "o",
                        color=colors[k])
        top.set_xticks([0, 1], [row["reference"], row["run"]])
        top.set_xlim(-0.4, 1.4)
        top.set_title(METRIC_LABELS.get(row["metric"], row["metric"]), fontsize=9)
        mean, lo, hi = row["diff_mean"], row["ci95_lo"], row["ci95_hi"]
        bottom.errorbar([0.6], [mean], yerr=[[mean - lo], [hi - mean]], fmt="s", color="black",
                        capsize=4)
        bottom.axhline(0, color="grey", lw=0.8, ls="--")
        bottom.set_xticks([0, 0.6], ["per seed", "mean"])
        bottom.set_xlim(-0.5, 1.0)
        if j == 0:
            bottom.set_ylabel(f"{row['run']} - {row['reference']}")
            top.legend(fontsize=7, loc="best")
    fig.suptitle("over training seeds: one point per seed; mean difference with the two-source "
                 "95% interval (test images + seeds)", fontsize=9)
    return plots.save_figure(fig, paths.images_dir() / "comparison_seeds.png")
