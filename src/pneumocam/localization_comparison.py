"""Several runs' localization side by side: a table, a bar chart, sentences and their maps.

Everything here reads what :func:`pneumocam.interpret.interpret` wrote for each run
(``metrics/<run>_localization.{json,csv}``), so notebook conclusions come from the numbers:

- :func:`load_reports` reads the JSONs; :func:`comparison_rows` / :func:`comparison_table` put
  each run's metrics (with 95% intervals) beside the image-free baselines;
- :func:`summarize_comparison` turns them into sentences (which run localises better, which
  baselines each beats with non-overlapping intervals, the sanity check, and a loud caveat for
  synthetic data); :func:`save_comparison` writes the table, the chart and the sentences;
- :func:`compare_maps` draws each run's map on the same positive images.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import overlays, paths
from .atomic import atomic_write, write_frame_csv
from .errors import ConfigError, DataSourceError, RunOutputsError
from .interpret import output_paths
from .localization import BASELINE_LABELS, METRIC_LABELS, METRICS
from .metrics import Estimate
from .predict import load_run
from .processed import DataSource, check_run_data, load_arrays, read_manifest
from .split_maps import compute_split_maps, manifest_boxes, resolve_data_folder


def load_reports(runs: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{run: metrics/<run>_localization.json}``; :class:`RunOutputsError` names a missing one."""
    reports = {}
    for run in runs:
        path = output_paths(run)["localization_json"]
        if not path.is_file():
            raise RunOutputsError(f"{path} not found: interpret the run first "
                                  f"(python scripts/interpret.py --weights weights/{run}/best.pth).")
        reports[run] = json.loads(path.read_text())
    return reports


def comparison_rows(reports: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per run, then one per baseline (from the first run: baselines see no image).

    Each row: ``name``, ``baseline`` (bool), and per metric ``<m>``, ``<m>_lo``, ``<m>_hi``;
    runs add ``rsna_metric``, ``roc_auc``, ``sanity_passed``, ``sanity_mean_abs_rho``,
    ``n_images``, ``method``, ``split``, ``data_source``.
    """
    rows: list[dict[str, Any]] = []
    for run, rep in reports.items():
        row: dict[str, Any] = {"name": run, "baseline": False}
        for m in METRICS:
            est = Estimate.from_json(rep.get(m))
            row[m], row[f"{m}_lo"], row[f"{m}_hi"] = est.value, est.low, est.high
        sanity = rep.get("sanity_check") or {}
        row.update(rsna_metric=(rep.get("detection") or {}).get("rsna_metric", math.nan),
                   roc_auc=(rep.get("classification") or {}).get("roc_auc", math.nan),
                   sanity_passed=sanity.get("passed"),
                   sanity_mean_abs_rho=sanity.get("mean_abs_rho", math.nan),
                   n_images=rep.get("n_images"), method=rep.get("method"), split=rep.get("split"),
                   data_source=(rep.get("data_source") or {}).get("kind"))
        rows.append(row)
    first = next(iter(reports.values()), {})
    for key, label in BASELINE_LABELS.items():
        base = (first.get("baselines") or {}).get(key)
        if base is None:
            continue
        row = {"name": f"baseline: {label}", "baseline": True}
        for m in METRICS:
            est = Estimate.from_json(base.get(m))
            row[m], row[f"{m}_lo"], row[f"{m}_hi"] = est.value, est.low, est.high
        rows.append(row)
    return rows


def comparison_table(reports: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """:func:`comparison_rows` as a DataFrame (runs first, then baselines)."""
    return pd.DataFrame(comparison_rows(reports))


def _relation(a: Estimate, b: Estimate) -> str:
    """``above`` / ``below`` when a's 95% CI lies wholly above / below b's, else ``overlap``."""
    if any(math.isnan(v) for v in (a.value, a.low, a.high, b.value, b.low, b.high)):
        return "undefined"
    if a.low > b.high:
        return "above"
    if a.high < b.low:
        return "below"
    return "overlap"


def _fmt_ci(v: Estimate) -> str:
    return f"{v.value:.3f} [{v.low:.3f}, {v.high:.3f}]"


def _is_demo(rep: Mapping[str, Any]) -> bool:
    return bool(rep.get("synthetic_demo")) or DataSource.from_json(rep.get("data_source")).is_demo


def summarize_comparison(reports: Mapping[str, Mapping[str, Any]]) -> str:
    """Conclusions as sentences built from the numbers of each run's localization JSON.

    Says, for each run, its metrics with 95% intervals; which run localises better on each
    metric and whether the intervals separate them; which baselines each run beats with
    non-overlapping intervals; whether the randomisation sanity check passed; and, first and
    loudly, when any number comes from synthetic demo data.
    """
    if not reports:
        return "No runs to compare."
    lines: list[str] = []
    if any(_is_demo(r) for r in reports.values()):
        lines.append("CAUTION: SYNTHETIC DEMO DATA. These numbers describe the demo generator's "
                     "artificial opacities, not pneumonia; they only show that the pipeline "
                     "runs. Do not report them as results.")
    kinds = {(r.get("data_source") or {}).get("kind") for r in reports.values()}
    if len(kinds) > 1:
        lines.append(f"WARNING: the runs come from different data sources ({sorted(map(str, kinds))}); "
                     "comparing them is not meaningful.")
    for run, rep in reports.items():
        det = (rep.get("detection") or {}).get("rsna_metric", math.nan)
        det = float(det) if det is not None else math.nan
        lines.append(
            f"{run} ({rep.get('method')}, {rep.get('split')} split, {rep.get('n_images')} positive "
            f"images): " + "; ".join(f"{METRIC_LABELS[m]} {_fmt_ci(Estimate.from_json(rep.get(m)))}"
                                     for m in METRICS)
            + f"; RSNA metric of the CAM-derived boxes {det:.4f}.")
    runs = list(reports)
    if len(runs) >= 2:
        for m in METRICS:
            values = {r: Estimate.from_json(reports[r].get(m)) for r in runs}
            best = max(runs, key=lambda r: -math.inf if math.isnan(values[r].value) else values[r].value)
            for other in runs:
                if other == best:
                    continue
                if values[best].value == values[other].value:
                    lines.append(f"On the {METRIC_LABELS[m]}, {best} and {other} tie "
                                 f"({values[best].value:.3f}).")
                    continue
                rel = _relation(values[best], values[other])
                verdict = ("with non-overlapping 95% CIs: a clear difference" if rel == "above"
                           else "but the 95% CIs overlap, so the difference is not established"
                           if rel == "overlap" else "(intervals undefined)")
                lines.append(f"On the {METRIC_LABELS[m]}, {best} localises better than {other} "
                             f"({values[best].value:.3f} vs {values[other].value:.3f}) {verdict}.")
    for run, rep in reports.items():
        beats, ties, loses = [], [], []
        for key, label in BASELINE_LABELS.items():
            base = (rep.get("baselines") or {}).get(key)
            if base is None:
                continue
            # A single point has no extent: its IoU is ~0 by construction, not a fair rival.
            for m in METRICS if key != "fixed_point" else METRICS[:2]:
                rel = _relation(Estimate.from_json(rep.get(m)), Estimate.from_json(base.get(m)))
                item = f"{label} ({METRIC_LABELS[m]})"
                (beats if rel == "above" else loses if rel == "below" else ties).append(item)
        parts = []
        if beats:
            parts.append("beats with non-overlapping CIs: " + ", ".join(beats))
        if ties:
            parts.append("is not distinguishable (CIs overlap) from: " + ", ".join(ties))
        if loses:
            parts.append("is WORSE (non-overlapping CIs) than: " + ", ".join(loses))
        if parts:
            lines.append(f"{run} against the image-free baselines: " + "; ".join(parts) + ".")
    for run, rep in reports.items():
        sanity = rep.get("sanity_check") or {}
        rho = sanity.get("mean_abs_rho")
        rho_txt = f"mean |Spearman rho| trained vs randomised weights {rho:.3f}" \
            if isinstance(rho, (int, float)) else "no correlation computed"
        if sanity.get("passed"):
            lines.append(f"{run}: the randomisation sanity check passed ({rho_txt}): the maps "
                         "depend on the learned weights.")
        else:
            lines.append(f"{run}: the randomisation sanity check FAILED ({rho_txt}): the maps "
                         "barely depend on the learned weights; do not read them as explanations.")
    return "\n".join(lines)


def save_comparison(reports: Mapping[str, Mapping[str, Any]], name: str = "localization_comparison"
                    ) -> dict[str, Path]:
    """Write the comparison table (CSV), its bar chart with CIs (PNG) and the conclusions (TXT).

    Returns:
        ``{"table": metrics/<name>.csv, "figure": images/cam/<name>.png,
        "conclusions": metrics/<name>_conclusions.txt}``.
    """
    rows = comparison_rows(reports)
    table = paths.metrics_dir() / f"{name}.csv"
    write_frame_csv(table, pd.DataFrame(rows), index=False)
    demo = any(_is_demo(r) for r in reports.values())
    first = next(iter(reports.values()), {})
    fig = overlays.localization_bar_chart(
        rows, METRICS, demo=demo,
        title=f"Localization on the {first.get('split', '?')} positives "
              f"({first.get('method', '?')}), runs vs image-free baselines")
    figure = overlays.save_figure(fig, paths.images_dir() / "cam" / f"{name}.png")
    conclusions = paths.metrics_dir() / f"{name}_conclusions.txt"
    with atomic_write(conclusions) as fh:
        fh.write(summarize_comparison(reports) + "\n")
    return {"table": table, "figure": figure, "conclusions": conclusions}


def compare_maps(weights: Mapping[str, str | Path], data_dir: str | Path | None = None,
                 n: int = 4, method: str = "cam", device: str = "auto", batch_size: int = 64,
                 name: str = "comparison_maps") -> dict[str, Any]:
    """Each run's map on the same images, side by side; saved as ``images/cam/<name>.png``.

    The images: the ``n`` positives of the interpreted split with the highest mean probability
    across the runs (read from each run's ``metrics/<run>_localization.csv``, so every run must
    have been interpreted on the same split first), ties by patientId.

    Returns:
        ``{"figure": path, "patient_ids": [...], "probs": {run: [...]}, "maps": {run: float32
        (n, H, W) in [0, 1]}, "images": uint8 (n, H, W)}``.
    """
    runs = {r: Path(w) for r, w in weights.items()}
    if not runs:
        raise ConfigError("compare_maps needs at least one run.")
    tables = []
    for run in runs:
        path = output_paths(run)["localization_csv"]
        if not path.is_file():
            raise RunOutputsError(f"{path} not found: interpret the run first "
                                  f"(python scripts/interpret.py --weights {runs[run]}).")
        tables.append(pd.read_csv(path, dtype={"patientId": str})[["patientId", "prob"]]
                      .rename(columns={"prob": run}))
    merged = tables[0]
    for t in tables[1:]:
        merged = merged.merge(t, on="patientId")
    merged["mean_prob"] = merged[list(runs)].mean(axis=1)
    chosen = merged.sort_values(["mean_prob", "patientId"], ascending=[False, True]).head(max(0, n))
    loaded = {run: load_run(w, device, data_dir) for run, w in runs.items()}
    folder = resolve_data_folder(data_dir, next(iter(loaded.values())))
    for lr in loaded.values():
        check_run_data(lr.config, folder, lr.weights)
    manifest = read_manifest(folder).set_index("patientId")
    missing = [p for p in chosen["patientId"] if p not in manifest.index]
    if missing:
        raise DataSourceError(f"{folder}: images {missing[:3]} of the localization tables are not in "
                              "its manifest; pass the processed folder the runs were interpreted on.")
    rows = manifest.loc[chosen["patientId"].tolist()]
    size = next(iter(loaded.values())).size
    images = load_arrays(folder, rows["array_file"]) if len(rows) else np.zeros((0, size, size),
                                                                                 np.uint8)
    boxes = manifest_boxes(rows) if len(rows) else []
    maps, probs, low = {}, {}, {}
    for run, lr in loaded.items():
        res = compute_split_maps(lr, images, method, batch_size)
        maps[run], probs[run], low[run] = res.maps, res.probs, res.low
    demo = any(lr.demo for lr in loaded.values())
    fig = overlays.compare_maps_figure(
        images, maps, probs, boxes, chosen["patientId"].tolist(), demo=demo, low_by_run=low,
        title=f"{method} maps of {', '.join(runs)} on the same positive images")
    figure = overlays.save_figure(fig, paths.images_dir() / "cam" / f"{name}.png")
    return {"figure": figure, "patient_ids": chosen["patientId"].tolist(),
            "probs": {r: p.tolist() for r, p in probs.items()}, "maps": maps, "images": images}
