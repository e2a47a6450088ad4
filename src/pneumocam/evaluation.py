"""One run's test evaluation: headline metrics with bootstrap intervals, trivial baselines beside
them, the validation-chosen operating threshold, calibration, per-view and per-class AUCs, and
the figures a person looks at.

Inputs are the trainer's prediction tables (``metrics/<run>_predictions_{val,test}.csv``), one row
per image with columns ``label`` (0/1), ``prob`` (float in [0, 1]) and optionally ``patientId``,
``view_position`` (``AP``/``PA``/empty) and ``class`` (RSNA detailed class or empty).
Outputs: ``metrics/<run>_eval.json`` and ``images/<run>/{curves,roc,pr,confusion,reliability}.png``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import metrics as M
from . import paths, plots
from .errors import DataSourceError, RunOutputsError
from .processed import SOURCE_KINDS, DataIdentity, DataSource, run_data_identity
from .provenance import provenance, read_json_object, write_json_atomic

OPERATING_METHOD = "youden_j_on_validation"
LUNG_OPACITY = "Lung Opacity"
NOT_NORMAL = "No Lung Opacity / Not Normal"
NORMAL = "Normal"
ECE_BINS = 15


@dataclass(frozen=True)
class Predictions:
    """One split's predictions as arrays, all (n,): ``y`` int64 0/1, ``p`` float64 in [0, 1],
    ``view`` str (``AP``/``PA``/``""``), ``cls`` str (detailed class or ``""``), ``ids`` str."""

    y: np.ndarray
    p: np.ndarray
    view: np.ndarray
    cls: np.ndarray
    ids: np.ndarray


def predictions_from_frame(df: pd.DataFrame, what: str) -> Predictions:
    """Validate a prediction table and convert it to arrays.

    Raises:
        RunOutputsError: missing ``label``/``prob`` columns, labels other than 0/1, or
            probabilities that are not finite numbers in [0, 1]. ``what`` names the table.
    """
    missing = [c for c in ("label", "prob") if c not in df.columns]
    if missing:
        raise RunOutputsError(
            f"{what}: missing column(s) {missing}; a prediction table needs label and prob "
            "(re-run the training script, which writes metrics/<run>_predictions_*.csv)."
        )
    if len(df) == 0:
        raise RunOutputsError(f"{what}: no rows. Re-run the training script for this run.")
    y = pd.to_numeric(df["label"], errors="coerce").to_numpy(dtype=float)
    p = pd.to_numeric(df["prob"], errors="coerce").to_numpy(dtype=float)
    if not np.isin(y, (0, 1)).all():
        raise RunOutputsError(f"{what}: label must be 0 or 1 in every row.")
    if not (np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()):
        raise RunOutputsError(f"{what}: prob must be a finite probability in [0, 1] in every row.")

    def text(col: str) -> np.ndarray:
        if col not in df.columns:
            return np.full(len(df), "", dtype=object)
        return df[col].fillna("").astype(str).str.strip().to_numpy(dtype=object)

    ids = text("patientId") if "patientId" in df.columns else np.arange(len(df)).astype(str)
    return Predictions(y=y.astype(np.int64), p=p, view=text("view_position").astype(str),
                       cls=text("class").astype(str), ids=np.asarray(ids, dtype=str))


def _counts(y: np.ndarray) -> dict[str, Any]:
    n, pos = int(y.size), int(y.sum())
    return {"n": n, "n_pos": pos, "n_neg": n - pos, "prevalence": pos / n if n else math.nan}


def _auc_summary(y: np.ndarray, p: np.ndarray, n_boot: int, seed: int) -> dict | None:
    """ROC AUC + AP summaries on a subset, or None when it holds one class."""
    if not M.has_two_classes(np.asarray(y)):
        return None
    return M.bootstrap_ci(y, p, n_boot=n_boot, seed=seed)


def view_analysis(pred: Predictions, n_boot: int, seed: int) -> dict[str, Any]:
    """AUC within AP and within PA images, and the view-only baseline (AP = 1, PA = 0).

    Returns ``{"by_view": {...}, "view_position_baseline": {...}}``; entries that cannot be
    computed hold ``None`` plus a ``reason``. The baseline also carries the paired bootstrap
    difference model AUC - view-only AUC on the same known-view images.
    """
    by_view: dict[str, Any] = {}
    for v in ("AP", "PA"):
        m = pred.view == v
        entry: dict[str, Any] = _counts(pred.y[m])
        res = _auc_summary(pred.y[m], pred.p[m], n_boot, seed)
        if res is None:
            entry.update(roc_auc=None, average_precision=None,
                         reason=f"no {v} images" if not m.any() else f"{v} images hold one class")
        else:
            entry.update(res)
        by_view[v] = entry
    by_view["unknown_view_n"] = int(np.sum(~np.isin(pred.view, ("AP", "PA"))))

    known = np.isin(pred.view, ("AP", "PA"))
    yk, pk = pred.y[known], pred.p[known]
    score = (pred.view[known] == "AP").astype(np.float64)
    base: dict[str, Any] = {"score": "1 for AP, 0 for PA (images with a known view)",
                            **_counts(yk)}
    if not M.has_two_classes(yk):
        base.update(roc_auc=None, average_precision=None, model_roc_auc_same_images=None,
                    model_minus_view_auc=None,
                    reason="no images with a known view position" if yk.size == 0
                    else "known-view images hold one class")
        return {"by_view": by_view, "view_position_baseline": base}
    if len(set(pred.view[known])) == 1:
        base["note"] = "only one view position present: the view-only score is constant (AUC 0.5)"
    idx = M.bootstrap_indices(yk.size, n_boot, seed)
    view_s, view_ap_s = M.resampled_auc_and_ap(yk, score, idx)
    model_s = M.resampled_roc_auc(yk, pk, idx)
    view_auc, model_auc = M.safe_roc_auc(yk, score), M.safe_roc_auc(yk, pk)
    diff = model_s - view_s
    base.update(
        roc_auc=M.summarize(view_auc, view_s),
        average_precision=M.summarize(M.safe_average_precision(yk, score), view_ap_s),
        model_roc_auc_same_images=M.summarize(model_auc, model_s),
        model_minus_view_auc={**M.summarize(model_auc - view_auc, diff),
                              "share_diff_le_0": M.share_not_above_zero(diff)},
    )
    return {"by_view": by_view, "view_position_baseline": base}


def class_analysis(pred: Predictions, n_boot: int, seed: int) -> dict[str, Any]:
    """ROC AUC of the model for Lung Opacity vs Normal and Lung Opacity vs Not Normal.

    Each entry is ``{"roc_auc": summary, "n_lung_opacity", "n_other"}`` or
    ``{"roc_auc": None, "reason": ...}`` when the detailed class is unknown or a group is empty.
    """
    out: dict[str, Any] = {}
    known = pred.cls != ""
    for key, other in (("lung_opacity_vs_normal", NORMAL),
                       ("lung_opacity_vs_not_normal", NOT_NORMAL)):
        m = np.isin(pred.cls, (LUNG_OPACITY, other))
        yc = (pred.cls[m] == LUNG_OPACITY).astype(np.int64)
        entry: dict[str, Any] = {"n_lung_opacity": int(yc.sum()), "n_other": int(yc.size - yc.sum())}
        if not known.any():
            entry.update(roc_auc=None, reason="detailed class unknown (no class column or empty)")
        elif not M.has_two_classes(yc):
            entry.update(roc_auc=None, reason=f"no '{LUNG_OPACITY}' or no '{other}' images")
        else:
            idx = M.bootstrap_indices(yc.size, n_boot, seed)
            entry["roc_auc"] = M.summarize(M.safe_roc_auc(yc, pred.p[m]),
                                           M.resampled_roc_auc(yc, pred.p[m], idx))
        out[key] = entry
    return out


def choose_operating_threshold(val: Predictions) -> tuple[float, str, dict[str, Any]]:
    """Youden's J on validation -> ``(threshold, method, detail)``; 0.5 if validation is one-class."""
    t = M.youden_threshold(val.y, val.p)
    if math.isnan(t):
        return 0.5, "fallback_0.5_validation_one_class", {}
    at = M.threshold_metrics(val.y, val.p, t)
    detail = {"val_youden_j": at["sensitivity"] + at["specificity"] - 1.0,
              "val_sensitivity": at["sensitivity"], "val_specificity": at["specificity"]}
    return t, OPERATING_METHOD, detail


def best_epoch(history: pd.DataFrame) -> dict[str, Any]:
    """The epoch with the highest ``val_auc`` (lowest ``val_loss`` when AUC is missing).

    Returns ``{"best_epoch", "best_epoch_rule", "epochs", "best_val_auc", "best_val_loss"}``.
    """
    if len(history) == 0 or "epoch" not in history:
        return {"best_epoch": None, "best_epoch_rule": None, "epochs": int(len(history))}
    auc = pd.to_numeric(history.get("val_auc"), errors="coerce") if "val_auc" in history else None
    loss = pd.to_numeric(history.get("val_loss"), errors="coerce") if "val_loss" in history else None
    if auc is not None and auc.notna().any():
        i, rule = int(auc.idxmax()), "max val_auc"
    elif loss is not None and loss.notna().any():
        i, rule = int(loss.idxmin()), "min val_loss"
    else:
        i, rule = int(history.index[-1]), "last epoch (no val_auc/val_loss)"
    row = history.loc[i]
    return {
        "best_epoch": int(row["epoch"]),
        "best_epoch_rule": rule,
        "epochs": int(len(history)),
        "best_val_auc": float(row["val_auc"]) if "val_auc" in history else None,
        "best_val_loss": float(row["val_loss"]) if "val_loss" in history else None,
    }


def read_history(path: str | Path) -> pd.DataFrame:
    """``metrics/<run>.csv`` (one row per epoch); :class:`RunOutputsError` if missing/invalid."""
    path = Path(path)
    if not path.is_file():
        raise RunOutputsError(f"{path} not found: run the training script for this run first.")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise RunOutputsError(f"{path}: unreadable CSV ({exc}). Re-run training.") from exc
    if "epoch" not in df.columns:
        raise RunOutputsError(f"{path}: no 'epoch' column; not a training history. Re-run training.")
    return df.reset_index(drop=True)


def _check_source(data_source: dict) -> bool:
    source = DataSource.from_json(data_source)
    if not source.known:
        raise DataSourceError(
            f"data_source must be stats.json's 'source' dict with kind in {SOURCE_KINDS}, "
            f"got {data_source!r}. Pass read_stats(processed_dir())['source']."
        )
    return source.is_demo


def evaluate_predictions(
    run: str, val: pd.DataFrame, test: pd.DataFrame, data_source: dict,
    seed: int = 0, n_boot: int = 1000,
) -> dict[str, Any]:
    """Every number of ``<run>_eval.json`` (no files written; nan where undefined).

    Args:
        run: run name (``original``, ``balanced``, ...).
        val, test: prediction tables (see the module docstring).
        data_source: stats.json's ``source`` dict, ``{"kind": "demo"|"rsna"|"other", "path"}``.
        seed, n_boot: bootstrap seed and number of resamples (percentile 95% intervals).
    """
    demo = _check_source(data_source)
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    v = predictions_from_frame(val, f"{run} validation predictions")
    t = predictions_from_frame(test, f"{run} test predictions")
    threshold, method, detail = choose_operating_threshold(v)
    idx = M.bootstrap_indices(t.y.size, n_boot, seed)  # shared by every test-set statistic
    head = M.bootstrap_ci(t.y, t.p, idx=idx)
    views = view_analysis(t, n_boot, seed)
    cal = M.calibration(t.y, t.p, ECE_BINS)
    prevalence = _counts(t.y)["prevalence"]
    return {
        "run": run,
        "data_source": dict(data_source),
        "synthetic_demo": demo,
        "n_boot": int(n_boot),
        "seed": int(seed),
        "ci_method": "percentile bootstrap over test images, 95%; one-class resamples skipped",
        "roc_auc": head["roc_auc"],
        "average_precision": head["average_precision"],
        "operating_threshold": float(threshold),
        "operating_threshold_method": method,
        "operating_threshold_detail": detail,
        "at_operating_threshold": M.threshold_metrics_ci(t.y, t.p, threshold, idx=idx),
        "at_0.5": M.threshold_metrics_ci(t.y, t.p, 0.5, idx=idx),
        "calibration": cal,
        "ece": cal["ece"],
        "prevalence": prevalence,
        "counts": {"val": _counts(v.y), "test": _counts(t.y)},
        "baselines": {
            "prevalence_only": {"roc_auc": 0.5, "average_precision": prevalence},
            "view_position": {
                "roc_auc": (views["view_position_baseline"]["roc_auc"] or {}).get("value"),
                "average_precision":
                    (views["view_position_baseline"]["average_precision"] or {}).get("value"),
            },
        },
        **views,
        "by_class": class_analysis(t, n_boot, seed),
        "val": {"roc_auc": M.safe_roc_auc(v.y, v.p),
                "average_precision": M.safe_average_precision(v.y, v.p),
                "at_operating_threshold": M.threshold_metrics(v.y, v.p, threshold)},
    }


def make_figures(
    run: str, result: dict[str, Any], test: Predictions, history: pd.DataFrame | None,
    out_dir: Path,
) -> dict[str, str | None]:
    """Write curves/roc/pr/confusion/reliability PNGs for one evaluated run; returns paths."""
    demo = bool(result["synthetic_demo"])
    figs: dict[str, str | None] = {"curves": None}
    if history is not None and len(history):
        fig = plots.plot_training_curves(history, run, result["history"]["best_epoch"], demo)
        figs["curves"] = str(plots.save_figure(fig, out_dir / "curves.png"))
    base = result["view_position_baseline"]
    fig = plots.plot_roc(test.y, test.p, run, result["roc_auc"], view=test.view,
                         view_auc=base["roc_auc"], demo=demo)
    figs["roc"] = str(plots.save_figure(fig, out_dir / "roc.png"))
    fig = plots.plot_pr(test.y, test.p, run, result["average_precision"], demo=demo)
    figs["pr"] = str(plots.save_figure(fig, out_dir / "pr.png"))
    op = result["at_operating_threshold"]
    fig = plots.plot_confusion(op["confusion_matrix"], op["threshold"], run, demo=demo,
                               threshold_label="Youden threshold" if
                               result["operating_threshold_method"] == OPERATING_METHOD
                               else "threshold")
    figs["confusion"] = str(plots.save_figure(fig, out_dir / "confusion.png"))
    fig = plots.plot_reliability(result["calibration"], test.y, test.p, run, demo=demo)
    figs["reliability"] = str(plots.save_figure(fig, out_dir / "reliability.png"))
    return figs


def nan_to_none(obj: Any) -> Any:
    """Recursively replace float nan/inf with None so the JSON is strict (null)."""
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [nan_to_none(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def check_run_identity(run: str, identity: DataIdentity) -> None:
    """Refuse to evaluate ``run`` on predictions made from data other than its training data.

    Compares ``identity`` (the data the predictions come from) with the ``data_identity`` in
    ``weights/<run>/config.json``; nothing to compare when that file is absent.

    Raises:
        DataSourceError: naming both and the fix.
    """
    path = paths.run_files(run)["config"]
    config = read_json_object(path)
    if config is None:
        return
    trained = run_data_identity(config)
    diffs = trained.differences(identity)
    if diffs:
        raise DataSourceError(
            f"run '{run}' was trained on {trained.describe()} ({path}) but these predictions "
            f"come from {identity.describe()} ({'; '.join(diffs)}). Predict on the processed "
            f"folder the run was trained on (--data-dir <that folder>), or retrain the run.")


def evaluate_run(
    run: str, val: pd.DataFrame, test: pd.DataFrame, data_source: dict,
    history_csv: Path | None = None, seed: int = 0, n_boot: int = 1000,
    data_identity: DataIdentity | Mapping[str, Any] | None = None,
) -> dict:
    """Evaluate one run on its test predictions and write the JSON and figures.

    Args:
        run: run name; outputs go to ``metrics/<run>_eval.json`` and ``images/<run>/``.
        val, test: prediction tables (``label``, ``prob``, optional ``patientId``,
            ``view_position``, ``class``); the operating threshold is chosen on ``val``.
        data_source: stats.json's ``source`` dict; ``kind == "demo"`` stamps every figure and
            sets ``"synthetic_demo": true``.
        history_csv: the trainer's ``metrics/<run>.csv`` for ``curves.png`` and the best epoch.
        seed, n_boot: bootstrap seed and resamples.
        data_identity: which data the predictions come from
            (:func:`pneumocam.processed.data_identity`); checked against the run's
            ``config.json`` and recorded as ``"data_identity"`` (what comparisons check).

    Returns:
        The dict written to ``<run>_eval.json`` (nan written as null), with ``"figures"``
        (paths) and ``"provenance"``.

    Raises:
        DataSourceError: a bad ``data_source``, or ``data_identity`` differs from the run's.
    """
    identity = None
    if data_identity is not None:
        identity = (data_identity if isinstance(data_identity, DataIdentity)
                    else DataIdentity.from_dict(data_identity))
        check_run_identity(run, identity)
    result = evaluate_predictions(run, val, test, data_source, seed=seed, n_boot=n_boot)
    result["data_identity"] = identity.to_dict() if identity is not None else None
    history = read_history(history_csv) if history_csv is not None else None
    result["history"] = best_epoch(history) if history is not None else None
    result["history_csv"] = str(history_csv) if history_csv is not None else None
    test_pred = predictions_from_frame(test, f"{run} test predictions")
    result["figures"] = make_figures(run, result, test_pred, history, paths.run_images_dir(run))
    result["provenance"] = provenance()
    result = nan_to_none(result)
    write_json_atomic(paths.run_files(run)["eval"], result)
    return result


def evaluation_summary(evaluation: dict[str, Any]) -> pd.DataFrame:
    """The headline test numbers of an ``evaluate_run`` dict as a table (value, 95% CI), with
    the view-position-only baseline beside them: rows are metrics, columns value/ci_low/ci_high."""
    def row(summary: Any) -> dict[str, float]:
        est = M.Estimate.from_json(summary)
        return {"value": est.value, "ci_low": est.low, "ci_high": est.high}

    op = evaluation.get("at_operating_threshold") or {}
    rows = {
        "test ROC AUC": row(evaluation.get("roc_auc")),
        "test average precision": row(evaluation.get("average_precision")),
        "operating threshold (Youden J on val)": row(evaluation.get("operating_threshold")),
        "sensitivity at threshold": row(op.get("sensitivity")),
        "specificity at threshold": row(op.get("specificity")),
        "precision at threshold": row(op.get("precision")),
        "F1 at threshold": row(op.get("f1")),
        "expected calibration error": row(evaluation.get("ece")),
        "baseline: view position alone, ROC AUC": row(
            ((evaluation.get("baselines") or {}).get("view_position") or {}).get("roc_auc")),
    }
    return pd.DataFrame.from_dict(rows, orient="index")
