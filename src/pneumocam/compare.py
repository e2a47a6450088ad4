"""Side-by-side comparison of training runs on the same test images, with paired bootstrap
intervals for the AUC difference of each run against the reference run (``original``).

Reads, per run, ``metrics/<run>_eval.json`` (operating threshold, data source),
``metrics/<run>_predictions_test.csv`` (``patientId``, ``label``, ``prob``, ``view_position``) and,
when present, ``metrics/<run>.csv`` (training history). Writes ``metrics/comparison.csv`` (one row
per run), ``metrics/comparison.json`` (the same plus the paired differences, config, provenance)
and ``images/comparison.png``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import metrics as M
from . import paths, plots
from .atomic import write_frame_csv
from .errors import ConfigError, DataSourceError, RunOutputsError
from .evaluation import best_epoch, nan_to_none, read_history
from .processed import DataIdentity, DataSource, run_data_identity
from .provenance import provenance, read_json_object, write_json_atomic

DEFAULT_RUNS = ("original", "balanced", "posweight")
REFERENCE_RUN = "original"
THRESHOLD_METRICS = ("accuracy", "sensitivity", "specificity", "precision", "f1")
_TRAIN_HINT = {
    "original": "python scripts/train_original.py",
    "balanced": "python scripts/train_balanced.py",
    "posweight": "python scripts/train_original.py --pos-weight auto --run-name posweight",
}


@dataclass
class CompareConfig:
    """Settings of one comparison (saved in ``metrics/comparison.json``).

    Attributes:
        runs: run names; None = ``original``, ``balanced`` and ``posweight`` where their files exist.
        n_boot: bootstrap resamples (the same test indices for every run: paired).
        seed: seed of the resampling.
    """

    runs: list[str] | None = field(default=None)
    n_boot: int = 1000
    seed: int = 0


@dataclass
class EvaluatedRun:
    """One run's inputs to the comparison: ``test`` holds patientId/label/prob/view_position."""

    name: str
    eval: dict[str, Any]
    test: pd.DataFrame
    history: pd.DataFrame | None


def _missing(run: str) -> list[Path]:
    f = paths.run_files(run)
    return [f[k] for k in ("eval", "pred_test") if not f[k].is_file()]


def train_command(run: str) -> str:
    """The command that trains (and evaluates) ``run``."""
    return _TRAIN_HINT.get(run, f"python scripts/train_balanced.py --run-name {run}")


def _hint(run: str) -> str:
    if run in _TRAIN_HINT:
        return f"run `{_TRAIN_HINT[run]}` first (training writes and evaluates the run)"
    return (f"train and evaluate run '{run}' first (e.g. `python scripts/train_balanced.py "
            f"--run-name {run} ...`), or check the run name")


def resolve_runs(runs: list[str] | None) -> list[str]:
    """The runs to compare, reference first when present.

    ``None`` picks the :data:`DEFAULT_RUNS` whose files exist. Raises :class:`RunOutputsError`
    (naming the missing file and the script to run) when an explicitly named run lacks files or
    fewer than two runs are available.
    """
    if runs is not None:
        runs = list(dict.fromkeys(runs))
        for run in runs:
            missing = _missing(run)
            if missing:
                raise RunOutputsError(f"run '{run}': {missing[0]} not found; {_hint(run)}.")
        chosen = runs
    else:
        chosen = [r for r in DEFAULT_RUNS if not _missing(r)]
        if len(chosen) < 2:
            lacking = [f"{_missing(r)[0]} ({_hint(r)})" for r in DEFAULT_RUNS[:2] if _missing(r)]
            raise RunOutputsError(
                f"need at least two evaluated runs to compare, found {chosen or 'none'}; missing: "
                + "; ".join(lacking)
            )
    if len(chosen) < 2:
        raise RunOutputsError(f"need at least two runs to compare, got {chosen}.")
    if REFERENCE_RUN in chosen:
        chosen = [REFERENCE_RUN] + [r for r in chosen if r != REFERENCE_RUN]
    return chosen


def load_evaluated_run(run: str) -> EvaluatedRun:
    """Read one run's eval JSON, test predictions and (optional) history (not its weights:
    :func:`pneumocam.predict.load_run` loads a run's model)."""
    f = paths.run_files(run)
    missing = _missing(run)
    if missing:
        raise RunOutputsError(f"run '{run}': {missing[0]} not found; {_hint(run)}.")
    try:
        ev = json.loads(f["eval"].read_text())
    except json.JSONDecodeError as exc:
        raise RunOutputsError(f"{f['eval']}: not valid JSON ({exc}); {_hint(run)}.") from exc
    test = pd.read_csv(f["pred_test"], dtype={"patientId": str, "view_position": str,
                                                "class": str}, keep_default_na=False)
    for col in ("patientId", "label", "prob"):
        if col not in test.columns:
            raise RunOutputsError(f"{f['pred_test']}: no '{col}' column; {_hint(run)}.")
    if test["patientId"].duplicated().any():
        dup = test.loc[test["patientId"].duplicated(), "patientId"].iloc[0]
        raise RunOutputsError(f"{f['pred_test']}: patientId {dup!r} appears twice; {_hint(run)}.")
    history = read_history(f["csv"]) if f["csv"].is_file() else None
    return EvaluatedRun(run, ev, test, history)


def run_identity(d: EvaluatedRun) -> DataIdentity:
    """Which data ``d`` was trained and evaluated on: the eval JSON's ``data_identity``, else
    (older runs) its ``config.json``'s, else the eval JSON's data source (kind, labels hash)."""
    if isinstance(d.eval.get("data_identity"), dict):
        return DataIdentity.from_dict(d.eval["data_identity"])
    config = read_json_object(paths.run_files(d.name)["config"]) or {}
    identity = run_data_identity(config)
    return identity if identity.known else DataIdentity.from_dict(d.eval.get("data_source"))


def check_same_source(data: list[EvaluatedRun]) -> dict[str, Any]:
    """The shared data source; :class:`DataSourceError` when runs come from different kinds
    (e.g. synthetic demo vs real RSNA), labels or splits (a run trained on another split has
    seen some of the others' test images)."""
    kinds = {d.name: (d.eval.get("data_source") or {}).get("kind") for d in data}
    if len(set(kinds.values())) != 1 or None in kinds.values():
        detail = ", ".join(f"{r}: {k}" for r, k in kinds.items())
        raise DataSourceError(
            f"refusing to compare runs from different data sources ({detail}); files "
            + ", ".join(str(paths.run_files(d.name)["eval"]) for d in data)
            + ". Re-train the runs on the same data/Processed so all share one source."
        )
    ref, ref_id = data[0], run_identity(data[0])
    for d in data[1:]:
        other = run_identity(d)
        diffs = ref_id.differences(other)
        if diffs:
            raise DataSourceError(
                f"refusing to compare runs trained on different data: '{ref.name}' on "
                f"{ref_id.describe()}, '{d.name}' on {other.describe()} ({'; '.join(diffs)}); "
                f"files {paths.run_files(ref.name)['eval']}, {paths.run_files(d.name)['eval']}. "
                "Re-train them on the same processed folder (the same --data-dir for both).")
    return dict(data[0].eval["data_source"])


def align(data: list[EvaluatedRun]) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Put every run's test predictions in the reference run's patient order.

    Returns ``(ids, y, view, {run: prob})``, arrays (n,). Raises :class:`RunOutputsError` when
    the runs' patientIds differ (a paired comparison needs the same images) or labels disagree.
    """
    ref = data[0]
    ref_df = ref.test.sort_values("patientId").reset_index(drop=True)
    ids = ref_df["patientId"].to_numpy(dtype=str)
    y = ref_df["label"].to_numpy(dtype=np.int64)
    view = (ref_df["view_position"].astype(str).to_numpy(dtype=str) if "view_position" in ref_df
            else np.full(ids.size, "", dtype=str))
    probs = {ref.name: ref_df["prob"].to_numpy(dtype=np.float64)}
    ref_file = paths.run_files(ref.name)["pred_test"]
    for d in data[1:]:
        f = paths.run_files(d.name)["pred_test"]
        other = set(d.test["patientId"])
        only_ref, only_other = sorted(set(ids) - other), sorted(other - set(ids))
        if only_ref or only_other:
            raise RunOutputsError(
                f"{f} and {ref_file} hold different test images ({len(only_ref)} only in "
                f"'{ref.name}', e.g. {only_ref[:3]}; {len(only_other)} only in '{d.name}', e.g. "
                f"{only_other[:3]}): a paired comparison needs the same test split. Re-train both "
                "runs on the same data/Processed."
            )
        df = d.test.set_index("patientId").loc[ids]
        if not np.array_equal(df["label"].to_numpy(dtype=np.int64), y):
            raise RunOutputsError(
                f"{f} and {ref_file}: labels differ for the same patientIds; re-train both runs "
                "on the same data/Processed."
            )
        probs[d.name] = df["prob"].to_numpy(dtype=np.float64)
    return ids, y, view, probs


def _history_info(d: EvaluatedRun) -> dict[str, Any]:
    if d.history is not None:
        return best_epoch(d.history)
    return d.eval.get("history") or {"best_epoch": None, "epochs": None}


def _view_auc(y: np.ndarray, p: np.ndarray, view: np.ndarray, which: str) -> float:
    m = view == which
    return M.safe_roc_auc(y[m], p[m])


def compare_runs(runs: list[str] | None = None, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Compare runs on their shared test set and write the comparison table, JSON and figure.

    Args:
        runs: run names (the reference ``original`` is put first when present); None = the
            default runs whose files exist.
        n_boot: bootstrap resamples; every run is resampled with the same test indices.
        seed: resampling seed.

    Returns:
        One row per run: ``roc_auc`` (+ ``_ci95_lo/_hi``), ``average_precision`` (+ CI),
        ``operating_threshold``, ``<metric>_at_op`` / ``<metric>_at_0.5`` (+ CI) for accuracy,
        sensitivity, specificity, precision, f1; ``ece``, ``roc_auc_AP_view``,
        ``roc_auc_PA_view``, ``view_baseline_roc_auc``, ``best_epoch``, ``epochs``, data source,
        and the paired difference to the reference run: ``auc_diff_vs_reference`` with
        ``auc_diff_ci95_lo/hi`` and ``auc_diff_share_le_0`` (share of resamples where the run's
        AUC is not above the reference's; nan on the reference row), same for AP.

    Raises:
        RunOutputsError: missing files, fewer than two runs, different test patientIds.
        DataSourceError: runs from different data sources (demo vs real), labels or splits.
    """
    config = CompareConfig(runs=list(runs) if runs is not None else None, n_boot=n_boot, seed=seed)
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ConfigError(f"--n-boot {n_boot!r}: expected an integer of at least 1 (the "
                          "bootstrap resamples behind every interval).")
    names = resolve_runs(config.runs)
    data = [load_evaluated_run(r) for r in names]
    source = check_same_source(data)
    identity = run_identity(data[0])
    demo = DataSource.from_json(source).is_demo
    ids, y, view, probs = align(data)
    if not M.has_two_classes(y):
        raise RunOutputsError(
            f"{paths.run_files(names[0])['pred_test']}: the test set holds one class; AUCs are "
            "undefined. Use a larger test split."
        )
    idx = M.bootstrap_indices(y.size, n_boot, seed)
    known = np.isin(view, ("AP", "PA"))
    view_auc = M.safe_roc_auc(y[known], (view[known] == "AP").astype(float))
    ref = names[0]
    samples: dict[str, dict[str, np.ndarray]] = {}
    rows: list[dict[str, Any]] = []
    paired: list[dict[str, Any]] = []
    for d in data:
        p = probs[d.name]
        auc_s, ap_s = M.resampled_auc_and_ap(y, p, idx)
        s = {"roc_auc": auc_s, "average_precision": ap_s}
        samples[d.name] = s
        point = {"roc_auc": M.safe_roc_auc(y, p), "average_precision": M.safe_average_precision(y, p)}
        thr = d.eval.get("operating_threshold")
        if thr is None:
            raise RunOutputsError(f"{paths.run_files(d.name)['eval']}: no operating_threshold; "
                                  f"{_hint(d.name)}.")
        row: dict[str, Any] = {"run": d.name, "n_test": int(y.size), "prevalence": float(y.mean())}
        for key in ("roc_auc", "average_precision"):
            row.update(M.Estimate.from_json(M.summarize(point[key], s[key])).columns(key))
        row["operating_threshold"] = float(thr)
        row["operating_threshold_method"] = d.eval.get("operating_threshold_method")
        for tag, t in (("op", float(thr)), ("0.5", 0.5)):
            tm = M.threshold_metrics_ci(y, p, t, idx=idx)
            for m in THRESHOLD_METRICS:
                row.update(M.Estimate.from_json(tm[m]).columns(f"{m}_at_{tag}"))
        row["ece"] = M.expected_calibration_error(y, p, 15)
        row["roc_auc_AP_view"] = _view_auc(y, p, view, "AP")
        row["roc_auc_PA_view"] = _view_auc(y, p, view, "PA")
        row["view_baseline_roc_auc"] = view_auc
        h = _history_info(d)
        row["best_epoch"], row["epochs"] = h.get("best_epoch"), h.get("epochs")
        row["data_source_kind"] = source.get("kind")
        row["data_source_path"] = source.get("path")
        row["synthetic_demo"] = demo
        row["reference_run"] = ref
        for key, short in (("roc_auc", "auc"), ("average_precision", "ap")):
            if d.name == ref:
                row.update({f"{short}_diff_vs_reference": math.nan, f"{short}_diff_ci95_lo": math.nan,
                            f"{short}_diff_ci95_hi": math.nan, f"{short}_diff_share_le_0": math.nan})
                continue
            diff = s[key] - samples[ref][key]
            summ = M.summarize(row[key] - rows[0][key], diff)
            share = M.share_not_above_zero(diff)
            diff_est = M.Estimate.from_json(summ)
            row.update({f"{short}_diff_vs_reference": diff_est.value,
                        f"{short}_diff_ci95_lo": diff_est.low, f"{short}_diff_ci95_hi": diff_est.high,
                        f"{short}_diff_share_le_0": share})
            paired.append({"run": d.name, "reference": ref, "metric": key, **summ,
                           "share_diff_le_0": share})
        rows.append(row)
    table = pd.DataFrame(rows)
    out_csv = write_frame_csv(paths.metrics_dir() / "comparison.csv", table, index=False)
    fig_path = _figure(table, y, probs, demo)
    write_json_atomic(paths.metrics_dir() / "comparison.json", nan_to_none({
        "config": asdict(config), "runs": names, "reference_run": ref, "data_source": source,
        "data_identity": identity.to_dict(),
        "synthetic_demo": demo, "n_test": int(y.size),
        "ci_method": "paired percentile bootstrap over test images (same indices for every run)",
        "rows": table.to_dict(orient="records"), "paired_differences": paired,
        "outputs": {"csv": str(out_csv), "figure": str(fig_path)}, "provenance": provenance(),
    }))
    return table


def _figure(table: pd.DataFrame, y: np.ndarray, probs: dict[str, np.ndarray], demo: bool) -> Path:
    from sklearn.metrics import roc_curve

    spec = {"ROC AUC": "roc_auc", "AP": "average_precision",
            "sensitivity@op": "sensitivity_at_op", "specificity@op": "specificity_at_op"}
    bars = {
        r["run"]: {label: (r[c], r[f"{c}_ci95_lo"], r[f"{c}_ci95_hi"]) for label, c in spec.items()}
        for r in table.to_dict(orient="records")
    }
    rocs = {}
    for run, p in probs.items():
        fpr, tpr, _ = roc_curve(y, p)
        rocs[f"{run} (AUC {M.safe_roc_auc(y, p):.3f})"] = (fpr, tpr)
    fig = plots.plot_comparison(bars, rocs, demo=demo,
                                title="run comparison (test), op = Youden threshold from val")
    return plots.save_figure(fig, paths.images_dir() / "comparison.png")


def describe_comparison(table: pd.DataFrame) -> str:
    """Sentences built from a :func:`compare_runs` table: each run against the reference.

    The verdict on ROC AUC comes from the paired bootstrap interval of the difference (an
    interval that contains 0 is "no clear difference"); sensitivity and specificity are quoted
    at each run's own operating threshold, since the sampler mostly moves the probabilities.
    """
    rows = table.set_index("run")
    ref = str(rows["reference_run"].iloc[0])
    lines = []
    if DataSource.from_json({"kind": rows["data_source_kind"].iloc[0]}).is_demo:
        lines.append("SYNTHETIC DEMO DATA: these differences describe the generator, not pneumonia.")
    for run, row in rows.iterrows():
        if run == ref:
            continue
        lo, hi = row["auc_diff_ci95_lo"], row["auc_diff_ci95_hi"]
        if lo > 0:
            verdict = f"{run} ranks better than {ref}"
        elif hi < 0:
            verdict = f"{run} ranks worse than {ref}"
        else:
            verdict = f"no clear difference in ranking between {run} and {ref}"
        lines.append(
            f"{run} vs {ref}: test ROC AUC {row['roc_auc']:.3f} vs {rows.loc[ref, 'roc_auc']:.3f}, "
            f"paired difference {row['auc_diff_vs_reference']:+.3f} (95% CI {lo:+.3f} to "
            f"{hi:+.3f}): {verdict}. At each run's operating threshold "
            f"(chosen on validation: {row['operating_threshold']:.2f} vs "
            f"{rows.loc[ref, 'operating_threshold']:.2f}) sensitivity is "
            f"{row['sensitivity_at_op']:.3f} vs {rows.loc[ref, 'sensitivity_at_op']:.3f} and "
            f"specificity {row['specificity_at_op']:.3f} vs {rows.loc[ref, 'specificity_at_op']:.3f}."
        )
    return "\n".join(lines)
