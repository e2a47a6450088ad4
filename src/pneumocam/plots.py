"""Evaluation figures: training curves, ROC, PR, confusion matrix, reliability, run comparison,
the positives each sampler puts in a training batch.

Every function builds and returns a :class:`matplotlib.figure.Figure` without touching pyplot's
global state (no backend switch, nothing left open); :func:`save_figure` writes a PNG with the
Agg renderer. Figures made from demo data carry :data:`DEMO_NOTE` as a visible figure text, so
a synthetic result cannot pass for an RSNA one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import precision_recall_curve, roc_curve

from .atomic import atomic_write
from .metrics import Estimate

DEMO_NOTE = "synthetic demo data \u2014 not RSNA"
DPI = 130


def new_figure(figsize: tuple[float, float], demo: bool) -> Figure:
    """An Agg-backed figure (constrained layout), stamped with :data:`DEMO_NOTE` when ``demo``."""
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    if demo:
        add_demo_note(fig)
    return fig


def add_demo_note(fig: Figure, text: str = DEMO_NOTE) -> None:
    """Stamp the visible 'synthetic demo data' note (``text``) along the figure's bottom edge.

    The one stamp of every figure made from demo data: training curves here, CAM overlays in
    :mod:`pneumocam.overlays` and :mod:`pneumocam.predict` (with their own wording). A layout
    engine that takes a rectangle keeps the axes clear of it.
    """
    engine = fig.get_layout_engine()
    if engine is not None and hasattr(engine, "set"):
        engine.set(rect=(0, 0.05, 1, 0.95))
    fig.text(0.995, 0.008, text, ha="right", va="bottom", fontsize=9, color="crimson",
             fontweight="bold", alpha=0.9)


def has_demo_note(fig: Figure, text: str = DEMO_NOTE) -> bool:
    """Whether ``fig`` carries the note ``text`` (used by tests and checks)."""
    return any(t.get_text() == text for t in fig.texts)


def save_figure(fig: Figure, path: str | Path, dpi: int = DPI, *, clear: bool = True,
                **savefig_kwargs: Any) -> Path:
    """Write ``fig`` as PNG (parents created) atomically and return the path.

    The PNG goes to a temporary file beside ``path`` that is renamed onto it only once
    complete, so an interrupted save never leaves half an image (or destroys the old one).

    Args:
        clear: release the figure's contents afterwards (False keeps it showable in a notebook).
        savefig_kwargs: passed to :meth:`Figure.savefig` (e.g. ``bbox_inches="tight"``).
    """
    path = Path(path)
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=dpi, **savefig_kwargs)
    if clear:
        fig.clear()
    return path


def _fmt_ci(summary: Mapping | None) -> str:
    est = Estimate.from_json(summary)
    if math.isnan(est.value):
        return "n/a"
    if math.isnan(est.low) or math.isnan(est.high):
        return f"{est.value:.3f}"
    return f"{est.value:.3f} [{est.low:.3f}, {est.high:.3f}]"


def _isnan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _unit_square_axes(ax: Any, xlabel: str, ylabel: str, title: str, legend_loc: str) -> None:
    """The ROC and PR panels' frame: both axes on [0, 1] (a little headroom above 1 so a curve
    at 1 stays visible), labels, title, a light grid and a small legend at ``legend_loc``."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc=legend_loc, fontsize=8)


def plot_training_curves(
    history: pd.DataFrame, run: str, best_epoch: int | None = None, demo: bool = False
) -> Figure:
    """Loss (train, val) and validation ROC AUC / AP per epoch; the best epoch marked.

    Args:
        history: one row per epoch with ``epoch``, ``train_loss``, ``val_loss``, ``val_auc``
            and optionally ``val_ap`` (the trainer's ``metrics/<run>.csv``).
        best_epoch: epoch number to mark with a vertical line (None: not marked).
    """
    fig = new_figure((10, 4), demo)
    ax_loss, ax_auc = fig.subplots(1, 2)
    ep = history["epoch"].to_numpy()
    for col, label in (("train_loss", "train loss"), ("val_loss", "val loss")):
        if col in history:
            ax_loss.plot(ep, history[col].to_numpy(dtype=float), marker="o", ms=3, label=label)
    for col, label in (("val_auc", "val ROC AUC"), ("val_ap", "val AP")):
        if col in history:
            ax_auc.plot(ep, history[col].to_numpy(dtype=float), marker="o", ms=3, label=label)
    for ax in (ax_loss, ax_auc):
        if best_epoch is not None:
            ax.axvline(best_epoch, color="gray", ls="--", lw=1, label=f"best epoch ({best_epoch})")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax_loss.set_ylabel("BCE loss")
    ax_loss.set_title(f"{run}: loss")
    ax_auc.set_ylabel("score")
    ax_auc.set_ylim(0, 1)
    ax_auc.set_title(f"{run}: validation ROC AUC / AP")
    return fig


def view_baseline_roc(
    y: np.ndarray, view: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """ROC points (fpr, tpr) of the view-only score (AP = 1, PA = 0) on known-view images;
    None when fewer than two classes or no known view."""
    view = np.asarray(view).astype(str)
    known = np.isin(view, ("AP", "PA"))
    yk = np.asarray(y)[known].astype(int)
    if yk.size == 0 or yk.min() == yk.max():
        return None
    fpr, tpr, _ = roc_curve(yk, (view[known] == "AP").astype(float))
    return fpr, tpr


def plot_roc(
    y: np.ndarray, p: np.ndarray, run: str, auc: Mapping | None = None,
    view: np.ndarray | None = None, view_auc: Mapping | None = None, demo: bool = False,
) -> Figure:
    """ROC curve of the model with its AUC + CI in the legend, the chance line and the
    view-position-only baseline (a single operating point, AP = positive) when views are known.

    Args:
        y, p: (n,) labels and probabilities of the evaluated split.
        auc, view_auc: summaries ``{"value", "ci95"}`` for the legend.
        view: (n,) ``"AP"``/``"PA"``/``""`` strings, or None.
    """
    fig = new_figure((5.5, 5), demo)
    ax = fig.subplots()
    y = np.asarray(y).astype(int)
    if y.size and y.min() != y.max():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, lw=2, label=f"model, AUC {_fmt_ci(auc)}")
    if view is not None:
        pts = view_baseline_roc(y, view)
        if pts is not None:
            ax.plot(pts[0], pts[1], ls="--", marker="s", color="darkorange",
                    label=f"view position only (AP=1), AUC {_fmt_ci(view_auc)}")
    ax.plot([0, 1], [0, 1], color="gray", ls=":", lw=1, label="chance, AUC 0.5")
    _unit_square_axes(ax, "1 - specificity (false positive rate)",
                      "sensitivity (true positive rate)", f"{run}: ROC (test)", "lower right")
    return fig


def plot_pr(
    y: np.ndarray, p: np.ndarray, run: str, ap: Mapping | None = None, demo: bool = False
) -> Figure:
    """Precision-recall curve with AP + CI in the legend and the prevalence-only baseline."""
    fig = new_figure((5.5, 5), demo)
    ax = fig.subplots()
    y = np.asarray(y).astype(int)
    prevalence = float(y.mean()) if y.size else math.nan
    if y.size and y.min() != y.max():
        prec, rec, _ = precision_recall_curve(y, p)
        ax.step(rec, prec, where="post", lw=2, label=f"model, AP {_fmt_ci(ap)}")
    if not math.isnan(prevalence):
        ax.axhline(prevalence, color="gray", ls=":",
                   label=f"prevalence only, AP {prevalence:.3f}")
    _unit_square_axes(ax, "recall (sensitivity)", "precision",
                      f"{run}: precision-recall (test)", "upper right")
    return fig


def plot_confusion(
    confusion: Mapping[str, int], threshold: float, run: str, demo: bool = False,
    threshold_label: str = "operating threshold",
) -> Figure:
    """Confusion matrix as counts and row-normalised (rows = truth), side by side.

    Args:
        confusion: ``{"tn", "fp", "fn", "tp"}`` counts.
    """
    m = np.array([[confusion["tn"], confusion["fp"]], [confusion["fn"], confusion["tp"]]],
                 dtype=float)
    rows = m.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.where(rows > 0, m / np.where(rows > 0, rows, 1), np.nan)
    fig = new_figure((9, 4), demo)
    axes = fig.subplots(1, 2)
    names = ["no pneumonia (0)", "pneumonia (1)"]
    for ax, data, title, fmt in (
        (axes[0], m, "counts", "{:.0f}"), (axes[1], norm, "row-normalised", "{:.2f}")
    ):
        vmax = np.nanmax(data) if np.isfinite(data).any() else 1.0
        ax.imshow(np.nan_to_num(data), cmap="Blues", vmin=0, vmax=max(vmax, 1e-9))
        for i in range(2):
            for j in range(2):
                v = data[i, j]
                txt = "n/a" if math.isnan(v) else fmt.format(v)
                ax.text(j, i, txt, ha="center", va="center", fontsize=12,
                        color="white" if (not math.isnan(v) and v > vmax / 2) else "black")
        ax.set_xticks([0, 1], names)
        ax.set_yticks([0, 1], names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{run}: {title}")
    fig.suptitle(f"{run}: confusion matrix at {threshold_label} {threshold:.3f} (test)")
    return fig


def plot_reliability(
    cal: Mapping, y: np.ndarray, p: np.ndarray, run: str, demo: bool = False
) -> Figure:
    """Reliability diagram (fraction positive vs mean probability per bin, ECE in the title)
    over a histogram of the probabilities split by true label.

    Args:
        cal: :func:`pneumocam.metrics.calibration` output.
        y, p: (n,) labels and probabilities (for the histogram).
    """
    fig = new_figure((5.5, 6.5), demo)
    ax, hist = fig.subplots(2, 1, height_ratios=[3, 1.4], sharex=True)
    mean_p = np.asarray(cal["mean_prob"], dtype=float)
    frac = np.asarray(cal["frac_pos"], dtype=float)
    edges = np.asarray(cal["bin_edges"], dtype=float)
    width = np.diff(edges)
    ok = np.isfinite(frac)
    ax.bar(edges[:-1][ok], frac[ok], width=width[ok], align="edge", alpha=0.3,
           edgecolor="tab:blue", label="fraction positive per bin")
    ax.plot(mean_p[ok], frac[ok], marker="o", color="tab:blue", label="model")
    ax.plot([0, 1], [0, 1], color="gray", ls=":", label="perfect calibration")
    ece = cal.get("ece")
    ece_txt = "n/a" if _isnan(ece) else f"{ece:.3f}"
    ax.set_title(f"{run}: reliability (test), ECE {ece_txt}, {cal['n_bins']} bins")
    ax.set_ylabel("fraction positive")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    hist.hist([p[y == 0], p[y == 1]], bins=edges, stacked=True,
              label=["label 0", "label 1"], color=["tab:gray", "tab:red"])
    hist.set_xlabel("predicted probability")
    hist.set_ylabel("images")
    hist.legend(fontsize=8)
    return fig


def plot_comparison(
    bars: Mapping[str, Mapping[str, Sequence[float]]],
    rocs: Mapping[str, tuple[np.ndarray, np.ndarray]],
    demo: bool = False,
    title: str = "run comparison (test)",
) -> Figure:
    """Grouped bars with 95% CI error bars per metric and run, beside overlaid ROC curves.

    Args:
        bars: ``{run: {metric: (value, lo, hi)}}``; metrics in the order of the first run.
        rocs: ``{run: (fpr, tpr)}``.
    """
    fig = new_figure((12, 4.8), demo)
    ax_bar, ax_roc = fig.subplots(1, 2, width_ratios=[1.4, 1])
    runs = list(bars)
    metrics = list(next(iter(bars.values()))) if runs else []
    width = 0.8 / max(1, len(runs))
    x = np.arange(len(metrics))
    for i, run in enumerate(runs):
        vals = np.array([bars[run][m][0] for m in metrics], dtype=float)
        lo = np.array([bars[run][m][1] for m in metrics], dtype=float)
        hi = np.array([bars[run][m][2] for m in metrics], dtype=float)
        err = np.vstack([np.nan_to_num(vals - lo), np.nan_to_num(hi - vals)])
        pos = x - 0.4 + width * (i + 0.5)
        ax_bar.bar(pos, vals, width=width, yerr=err, capsize=3, label=run)
        for xi, v in zip(pos, vals, strict=True):
            if np.isfinite(v):
                ax_bar.text(xi, 0.02, f"{v:.2f}", ha="center", va="bottom", fontsize=7,
                            rotation=90, color="white")
    ax_bar.set_xticks(x, metrics)
    ax_bar.set_ylim(0, 1.05)
    ax_bar.set_ylabel("value (95% bootstrap CI)")
    ax_bar.set_title(title)
    ax_bar.grid(axis="y", alpha=0.3)
    ax_bar.legend(fontsize=8)
    for run, (fpr, tpr) in rocs.items():
        ax_roc.plot(fpr, tpr, lw=2, label=run)
    ax_roc.plot([0, 1], [0, 1], color="gray", ls=":", lw=1, label="chance")
    ax_roc.set_xlabel("1 - specificity")
    ax_roc.set_ylabel("sensitivity")
    ax_roc.set_title("ROC curves (test)")
    ax_roc.grid(alpha=0.3)
    ax_roc.legend(loc="lower right", fontsize=8)
    return fig


def plot_sampler_batches(draws: pd.DataFrame, batch: int, positive_share: float,
                         demo: bool = False) -> Figure:
    """Positives per training batch under each sampler, beside the data's share and one half.

    Args:
        draws: :func:`pneumocam.data.sampler_preview` output: indexed by ``batch`` (1, 2, ...),
            int columns ``"original positive"`` and ``"balanced positive"`` (others ignored).
        batch: images per batch (the run's effective batch size), > 0.
        positive_share: fraction of positives among the training labels, in [0, 1].
    """
    fig = new_figure((7.0, 3.2), demo=demo)
    ax = fig.subplots()
    ax.bar(draws.index - 0.2, draws["original positive"], width=0.4, label="original (shuffled)")
    ax.bar(draws.index + 0.2, draws["balanced positive"], width=0.4, label="balanced (weighted)")
    ax.axhline(batch * positive_share, color="gray", ls=":", label="training share")
    ax.axhline(batch / 2, color="gray", ls="--", label="half the batch")
    ax.set(xticks=draws.index, xlabel="batch of epoch 1", ylabel=f"positives of {batch}",
           title="Positives per training batch, by sampler")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig
