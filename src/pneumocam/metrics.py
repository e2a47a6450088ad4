"""Classification metrics with honest edges: one-class inputs give nan, never a crash.

Inputs everywhere: ``y`` a 1-D array of 0/1 labels (any int/bool/float dtype), ``p`` a 1-D
array of predicted probabilities in [0, 1] (float), same length.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

THRESHOLD_METRIC_KEYS = (
    "accuracy", "sensitivity", "specificity", "precision", "f1", "tp", "fp", "tn", "fn",
)


def _as_arrays(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(np.int64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"labels ({y.shape[0]}) and probabilities ({p.shape[0]}) differ in length")
    return y, p


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else math.nan


def threshold_metrics(y_true: np.ndarray, prob: np.ndarray, threshold: float = 0.5) -> dict:
    """Confusion-matrix metrics at one threshold (``prob >= threshold`` is positive).

    Args:
        y_true: (n,) labels in {0, 1}.
        prob: (n,) probabilities (or any score) compared with ``threshold``.
        threshold: decision threshold.

    Returns:
        ``{"accuracy", "sensitivity", "specificity", "precision", "f1"}`` as floats (nan when the
        denominator is zero, e.g. no positives for sensitivity) and ``{"tp", "fp", "tn", "fn"}``
        as Python ints.
    """
    y, p = _as_arrays(y_true, prob)
    pred = p >= threshold
    pos = y == 1
    tp = int(np.count_nonzero(pred & pos))
    fp = int(np.count_nonzero(pred & ~pos))
    fn = int(np.count_nonzero(~pred & pos))
    tn = int(np.count_nonzero(~pred & ~pos))
    sensitivity = _ratio(tp, tp + fn)
    precision = _ratio(tp, tp + fp)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    return {
        "accuracy": _ratio(tp + tn, y.size),
        "sensitivity": sensitivity,
        "specificity": _ratio(tn, tn + fp),
        "precision": precision,
        "f1": f1,
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
    }


def has_two_classes(y: np.ndarray) -> bool:
    """Whether the (n,) 0/1 labels hold both classes (AUC and AP are defined)."""
    return y.size > 0 and 0 < int(y.sum()) < y.size


def safe_roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC in [0, 1] via sklearn; nan when ``y`` holds only one class (or is empty)."""
    y, p = _as_arrays(y, p)
    if not has_two_classes(y):
        return math.nan
    return float(roc_auc_score(y, p))


def safe_average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision (area under the PR curve, step-wise) via sklearn; nan when one class."""
    y, p = _as_arrays(y, p)
    if not has_two_classes(y):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(average_precision_score(y, p))


def youden_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The threshold maximising Youden's J = sensitivity + specificity - 1 (``p >= t`` positive).

    Candidates are the distinct scores (sklearn's ``roc_curve``); on ties in J the highest
    threshold wins. Returns nan when ``y`` holds one class. When no threshold beats J = 0,
    returns a value just above ``max(p)`` (everything negative).
    """
    from sklearn.metrics import roc_curve

    y, p = _as_arrays(y, p)
    if not has_two_classes(y):
        return math.nan
    fpr, tpr, thr = roc_curve(y, p, drop_intermediate=False)
    best = int(np.argmax(tpr - fpr))
    t = float(thr[best])
    if not math.isfinite(t):  # roc_curve's first threshold is +inf: "all negative"
        t = float(np.nextafter(p.max(), np.inf))
    return t


def calibration(y: np.ndarray, p: np.ndarray, n_bins: int = 15) -> dict:
    """Expected calibration error over ``n_bins`` equal-width bins of [0, 1], with curve data.

    Bin ``b`` holds ``b/n_bins <= p < (b+1)/n_bins`` (the last bin includes 1.0).
    ECE = sum_b (n_b / n) * |mean(p in b) - mean(y in b)|.

    Returns:
        ``{"ece": float, "max_calibration_error": float, "n_bins": int, "bin_edges": list
        (n_bins+1), "count": list[int] (n_bins), "mean_prob": list, "frac_pos": list}``;
        ``mean_prob``/``frac_pos`` are nan for empty bins. ``ece`` is nan when ``n == 0``.
    """
    y, p = _as_arrays(y, p)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    b = np.clip(np.floor(p * n_bins).astype(np.int64), 0, n_bins - 1)
    count = np.bincount(b, minlength=n_bins)
    sum_p = np.bincount(b, weights=p, minlength=n_bins)
    sum_y = np.bincount(b, weights=y.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(count > 0, sum_p / np.maximum(count, 1), np.nan)
        frac = np.where(count > 0, sum_y / np.maximum(count, 1), np.nan)
    gap = np.abs(mean_p - frac)
    filled = count > 0
    ece = float(np.sum(count[filled] * gap[filled]) / y.size) if y.size else math.nan
    mce = float(gap[filled].max()) if filled.any() else math.nan
    return {
        "ece": ece,
        "max_calibration_error": mce,
        "n_bins": int(n_bins),
        "bin_edges": edges.tolist(),
        "count": [int(c) for c in count],
        "mean_prob": mean_p.tolist(),
        "frac_pos": frac.tolist(),
    }


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 15) -> float:
    """ECE with ``n_bins`` equal-width bins (see :func:`calibration`)."""
    return calibration(y, p, n_bins)["ece"]


# --------------------------------------------------------------------------- bootstrap
# Resampling is vectorised: one (n_boot, n) index matrix, then per-row statistics computed
# from counts per distinct score (a Mann-Whitney AUC with ties counted half, and sklearn's
# step-wise AP): 1,000 resamples of 5,000 images take about 0.5 s (vs ~7 s looping sklearn).

_CHUNK_ELEMENTS = 4_000_000  # bounds the (rows, n) temporaries per chunk


def bootstrap_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) int32/int64 indices drawn with replacement, seeded (``default_rng(seed)``)."""
    if n <= 0:
        return np.zeros((n_boot, 0), dtype=np.int64)
    rng = np.random.default_rng(seed)
    dtype = np.int32 if n < 2**31 else np.int64
    return rng.integers(0, n, size=(n_boot, n), dtype=dtype)


def _chunks(idx: np.ndarray, width: int):
    rows = max(1, _CHUNK_ELEMENTS // max(1, width))
    for start in range(0, idx.shape[0], rows):
        yield idx[start:start + rows]


def _group_counts(y: np.ndarray, p: np.ndarray, idx: np.ndarray):
    """Per resample, negatives and positives per distinct score (ascending): (b, k, 2) ints."""
    _, g = np.unique(p, return_inverse=True)
    k = int(g.max()) + 1 if g.size else 0
    code = (g.astype(np.int64) * 2 + y)  # (n,) group*2 + label
    for chunk in _chunks(idx, idx.shape[1] if idx.ndim == 2 else 1):
        b = chunk.shape[0]
        flat = (np.arange(b, dtype=np.int64)[:, None] * (2 * k) + code[chunk]).ravel()
        yield np.bincount(flat, minlength=b * 2 * k).reshape(b, k, 2)


def _auc_from_counts(counts: np.ndarray) -> np.ndarray:
    neg = counts[:, :, 0].astype(np.float64)
    pos = counts[:, :, 1].astype(np.float64)
    n0, n1 = neg.sum(1), pos.sum(1)
    below = np.cumsum(neg, axis=1) - neg
    u = np.sum(pos * (below + 0.5 * neg), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n0 > 0) & (n1 > 0), u / (n0 * n1), np.nan)


def _ap_from_counts(counts: np.ndarray) -> np.ndarray:
    pos = counts[:, ::-1, 1].astype(np.float64)  # descending score
    tot = counts[:, ::-1, :].sum(axis=2).astype(np.float64)
    n1, n0 = pos.sum(1), tot.sum(1) - pos.sum(1)
    cp, ct = np.cumsum(pos, axis=1), np.cumsum(tot, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(ct > 0, cp / np.maximum(ct, 1), 0.0)
        ap = np.sum(pos * prec, axis=1) / n1
    return np.where((n0 > 0) & (n1 > 0), ap, np.nan)


def resampled_auc_and_ap(
    y: np.ndarray, p: np.ndarray, idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(roc_auc, average_precision)`` of each resample ``y[idx[r]], p[idx[r]]``.

    Args:
        y, p: (n,) labels and scores; idx: (n_boot, n) integer indices into them.

    Returns:
        Two (n_boot,) float arrays, nan for resamples holding one class. They equal sklearn's
        ``roc_auc_score`` (Mann-Whitney, ties count half) and ``average_precision_score``
        (sum over distinct thresholds, descending, of recall step x precision) per resample.
    """
    y, p = _as_arrays(y, p)
    auc, ap = [], []
    for counts in _group_counts(y, p, idx):
        auc.append(_auc_from_counts(counts))
        ap.append(_ap_from_counts(counts))
    if not auc:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(auc), np.concatenate(ap)


def resampled_roc_auc(y: np.ndarray, p: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """ROC AUC of each resample: (n_boot,) float, nan for one-class rows (= sklearn's)."""
    y, p = _as_arrays(y, p)
    out = [_auc_from_counts(c) for c in _group_counts(y, p, idx)]
    return np.concatenate(out) if out else np.zeros(0)


def resampled_average_precision(y: np.ndarray, p: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Average precision of each resample: (n_boot,) float, nan for one-class rows (= sklearn's)."""
    y, p = _as_arrays(y, p)
    out = [_ap_from_counts(c) for c in _group_counts(y, p, idx)]
    return np.concatenate(out) if out else np.zeros(0)


def resampled_threshold_metrics(
    y: np.ndarray, p: np.ndarray, threshold: float, idx: np.ndarray
) -> dict[str, np.ndarray]:
    """:func:`threshold_metrics`' float metrics for each resample: ``{name: (n_boot,) float}``."""
    y, p = _as_arrays(y, p)
    code = (p >= threshold).astype(np.int64) * 2 + y  # 0 tn, 1 fn, 2 fp, 3 tp
    parts: list[np.ndarray] = []
    for chunk in _chunks(idx, idx.shape[1]):
        b = chunk.shape[0]
        flat = (np.arange(b, dtype=np.int64)[:, None] * 4 + code[chunk]).ravel()
        parts.append(np.bincount(flat, minlength=b * 4).reshape(b, 4))
    c = np.concatenate(parts).astype(np.float64) if parts else np.zeros((0, 4))
    tn, fn, fp, tp = c[:, 0], c[:, 1], c[:, 2], c[:, 3]

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)

    return {
        "accuracy": ratio(tp + tn, tp + tn + fp + fn),
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "precision": ratio(tp, tp + fp),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
    }


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float, int]:
    """Percentile interval of the finite ``samples``: ``(lo, hi, n_valid)``; nan when none."""
    s = np.asarray(samples, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return math.nan, math.nan, 0
    alpha = (1.0 - level) / 2.0
    lo, hi = np.percentile(s, [100 * alpha, 100 * (1 - alpha)])
    return float(lo), float(hi), int(s.size)


@dataclass(frozen=True)
class Estimate:
    """A number with its 95% interval, as every table and sentence of the project reads it.

    JSON form (what :func:`summarize` writes): ``{"value": v, "ci95": [low, high], ...}``.
    One rule for what is missing: an absent entry, a ``None`` or non-numeric value, or a
    missing bound reads as ``nan`` (JSON files store nan as ``null``).

    Attributes:
        value: the point estimate (nan when undefined).
        low, high: the interval's bounds (nan when there is none).
    """

    value: float
    low: float = math.nan
    high: float = math.nan

    @classmethod
    def from_json(cls, entry: Any) -> Estimate:
        """Read ``{"value", "ci95"}`` (or a bare number, which has no interval)."""
        if _is_number(entry):
            return cls(float(entry))
        if not isinstance(entry, Mapping):
            return cls(math.nan)
        ci = entry.get("ci95")
        low, high = (ci[0], ci[1]) if isinstance(ci, (list, tuple)) and len(ci) >= 2 else (None, None)
        return cls(*(float(v) if _is_number(v) else math.nan for v in (entry.get("value"), low, high)))

    def to_json(self) -> dict[str, Any]:
        """``{"value": v, "ci95": [low, high]}``."""
        return {"value": self.value, "ci95": [self.low, self.high]}

    def columns(self, prefix: str) -> dict[str, float]:
        """``{prefix: value, prefix_ci95_lo: low, prefix_ci95_hi: high}`` for a table row."""
        return {prefix: self.value, f"{prefix}_ci95_lo": self.low, f"{prefix}_ci95_hi": self.high}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def share_not_above_zero(diff: np.ndarray) -> float:
    """Share of the finite bootstrap differences ``diff`` (run - reference) that are <= 0: a
    one-sided bootstrap p-value for "the run is better"; nan when none is finite."""
    d = np.asarray(diff, dtype=float)
    d = d[np.isfinite(d)]
    return float(np.mean(d <= 0)) if d.size else math.nan


def summarize(point: float, samples: np.ndarray) -> dict:
    """``{"value", "ci95": [lo, hi], "n_boot_valid", "n_boot_skipped"}`` (skipped = nan rows,
    i.e. resamples holding one class or an undefined ratio)."""
    lo, hi, valid = percentile_ci(samples)
    return {
        "value": float(point),
        "ci95": [lo, hi],
        "n_boot_valid": valid,
        "n_boot_skipped": int(np.asarray(samples).size - valid),
    }


def bootstrap_ci(
    y: np.ndarray, p: np.ndarray, n_boot: int = 1000, seed: int = 0,
    idx: np.ndarray | None = None,
) -> dict[str, dict]:
    """ROC AUC and AP with percentile 95% bootstrap intervals.

    Args:
        y, p: (n,) labels and probabilities.
        n_boot, seed: resamples and the seed of ``default_rng`` (ignored when ``idx`` given).
        idx: optional precomputed (n_boot, n) indices, to pair resamples across models.

    Returns:
        ``{"roc_auc": summary, "average_precision": summary}`` (see :func:`summarize`).
    """
    y, p = _as_arrays(y, p)
    if idx is None:
        idx = bootstrap_indices(y.size, n_boot, seed)
    auc, ap = resampled_auc_and_ap(y, p, idx)
    return {
        "roc_auc": summarize(safe_roc_auc(y, p), auc),
        "average_precision": summarize(safe_average_precision(y, p), ap),
    }


def threshold_metrics_ci(
    y: np.ndarray, p: np.ndarray, threshold: float, n_boot: int = 1000, seed: int = 0,
    idx: np.ndarray | None = None,
) -> dict:
    """:func:`threshold_metrics` with a bootstrap summary per float metric.

    Returns ``{"threshold", "accuracy": summary, ..., "f1": summary,
    "confusion_matrix": {"tn", "fp", "fn", "tp"}}``. The threshold is held fixed, so the
    intervals ignore the uncertainty of choosing it.
    """
    y, p = _as_arrays(y, p)
    if idx is None:
        idx = bootstrap_indices(y.size, n_boot, seed)
    point = threshold_metrics(y, p, threshold)
    samples = resampled_threshold_metrics(y, p, threshold, idx)
    out: dict = {"threshold": float(threshold)}
    for name, s in samples.items():
        out[name] = summarize(point[name], s)
    out["confusion_matrix"] = {k: point[k] for k in ("tn", "fp", "fn", "tp")}
    return out
