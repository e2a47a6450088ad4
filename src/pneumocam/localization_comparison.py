"""Several runs' localization side by side: a table, a bar chart, sentences and their maps.

Everything here reads what :func:`pneumocam.interpret.interpret` wrote for each run
(``metrics/<run>_localization.{json,csv}``), so notebook conclusions come from the numbers:

- :func:`load_reports` reads the JSONs; :func:`comparison_rows` / :func:`comparison_table` put
  each run's metrics (with 95% intervals) beside the image-free baselines;
- every comparison is on the same images, so it is tested paired: :func:`run_pairs` reads the
  runs' per-image CSVs (matched by patientId) and gives run minus run per metric
  (:func:`pneumocam.localization.paired_difference`: paired bootstrap interval, exact McNemar
  p-value for the pointing game); map minus baseline comes from each JSON's ``paired`` block;
  :func:`paired_rows` / :func:`paired_table` put both in one long table;
- :func:`summarize_comparison` turns them into sentences (a run "beats", "is beaten by" or
  "cannot be told apart from" another run or a baseline as its paired 95% interval lies above,
  below or around 0; the sanity check; a loud caveat for synthetic data);
  :func:`save_comparison` writes the tables, the chart and the sentences;
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
from .localization import (
    BASELINE_LABELS,
    METRIC_LABELS,
    METRICS,
    VERDICTS,
    paired_difference,
    verdict,
)
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


#: The per-image CSV column of each metric (``metrics/<run>_localization.csv``).
CSV_COLUMNS = {"pointing_game": "pointing_hit", "mass_in_boxes": "mass_in_boxes", "iou": "iou"}
#: Columns of :func:`paired_rows`.
PAIRED_COLUMNS = ("a", "b", "kind", "metric", "difference", "ci95_lo", "ci95_hi", "p_value",
                  "test", "n", "verdict")


def load_per_image(runs: Sequence[str]) -> dict[str, pd.DataFrame]:
    """``{run: metrics/<run>_localization.csv}`` for the runs that have one (patientId as str)."""
    tables = {}
    for run in runs:
        path = output_paths(run)["localization_csv"]
        if path.is_file():
            tables[run] = pd.read_csv(path, dtype={"patientId": str})
    return tables


def _bootstrap_settings(reports: Mapping[str, Mapping[str, Any]]) -> tuple[int, int]:
    """``(n_boot, seed)`` of the first run's interpretation (1000, 0 when not recorded)."""
    config = next(iter(reports.values()), {}).get("config") or {}
    n_boot, seed = config.get("n_boot"), config.get("seed")
    return (int(n_boot) if isinstance(n_boot, int) and n_boot > 0 else 1000,
            int(seed) if isinstance(seed, int) else 0)


def run_pairs(reports: Mapping[str, Mapping[str, Any]],
              per_image: Mapping[str, pd.DataFrame] | None = None) -> list[dict[str, Any]]:
    """Run minus run on the same images, per metric, for every pair of runs (later minus earlier).

    Args:
        reports: ``{run: localization JSON}`` (their order sets the direction; the first run's
            ``config.n_boot`` / ``config.seed`` set the bootstrap).
        per_image: ``{run: per-image table}`` with ``patientId``, ``pointing_hit``,
            ``mass_in_boxes``, ``iou``; None reads ``metrics/<run>_localization.csv``.

    Returns:
        One dict per pair and metric: ``a``, ``b`` (``a - b``), ``metric`` and
        :func:`~pneumocam.localization.paired_difference`'s keys; a pair whose tables are
        missing or hold different images gets one dict with ``a``, ``b`` and ``skipped``
        (the reason) instead.
    """
    runs = list(reports)
    tables = load_per_image(runs) if per_image is None else dict(per_image)
    n_boot, seed = _bootstrap_settings(reports)
    out: list[dict[str, Any]] = []
    for j, a in enumerate(runs):
        for b in runs[:j]:
            missing = [r for r in (a, b) if r not in tables]
            if missing:
                out.append({"a": a, "b": b, "skipped": "no per-image table for " + ", ".join(
                    f"{r} ({output_paths(r)['localization_csv']}; interpret it)" for r in missing)})
                continue
            ta, tb = (tables[r].set_index(tables[r]["patientId"].astype(str)) for r in (a, b))
            if set(ta.index) != set(tb.index) or ta.index.has_duplicates:
                out.append({"a": a, "b": b, "skipped": f"{a} and {b} were measured on different "
                            f"images ({len(ta)} vs {len(tb)}, {len(ta.index.intersection(tb.index))}"
                            " shared); interpret both on the same split"})
                continue
            tb = tb.loc[ta.index]
            for m in METRICS:
                col = CSV_COLUMNS[m]
                out.append({"a": a, "b": b, "metric": m, **paired_difference(
                    ta[col].to_numpy(float), tb[col].to_numpy(float), m, n_boot, seed)})
    return out


def _paired_row(a: str, b: str, kind: str, metric: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    ci = entry.get("ci95") or [math.nan, math.nan]
    return {"a": a, "b": b, "kind": kind, "metric": metric,
            "difference": _num(entry.get("difference")), "ci95_lo": _num(ci[0]),
            "ci95_hi": _num(ci[1]), "p_value": _num(entry.get("p_value")),
            "test": entry.get("test"), "n": entry.get("n"), "verdict": VERDICTS[verdict(entry)]}


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def paired_rows(reports: Mapping[str, Mapping[str, Any]],
                pairs: Sequence[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every paired comparison as one row (:data:`PAIRED_COLUMNS`): each run minus each
    image-free baseline (``kind`` ``baseline``, from the JSON's ``paired`` block), then run minus
    run (``kind`` ``run``, from ``pairs`` or :func:`run_pairs`). ``verdict`` reads ``a``
    beats / is beaten by / cannot be told apart from ``b`` by the paired 95% interval."""
    rows = []
    for run, rep in reports.items():
        for key, label in BASELINE_LABELS.items():
            for m in METRICS:
                entry = ((rep.get("paired") or {}).get(key) or {}).get(m)
                if entry is not None:
                    rows.append(_paired_row(run, f"baseline: {label}", "baseline", m, entry))
    for pair in run_pairs(reports) if pairs is None else pairs:
        if "metric" in pair:
            rows.append(_paired_row(pair["a"], pair["b"], "run", pair["metric"], pair))
    return rows


def paired_table(reports: Mapping[str, Mapping[str, Any]],
                 pairs: Sequence[Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """:func:`paired_rows` as a DataFrame with the columns :data:`PAIRED_COLUMNS`."""
    return pd.DataFrame(paired_rows(reports, pairs), columns=list(PAIRED_COLUMNS))


def _fmt_ci(v: Estimate) -> str:
    return f"{v.value:.3f} [{v.low:.3f}, {v.high:.3f}]"


def fmt_paired(entry: Mapping[str, Any], metric: str) -> str:
    """``+0.167 [+0.050, +0.290], McNemar p = 0.012`` (the p-value only for the pointing game:
    the others' intervals carry the claim)."""
    ci = entry.get("ci95") or [math.nan, math.nan]
    text = (f"{_num(entry.get('difference')):+.3f} [{_num(ci[0]):+.3f}, {_num(ci[1]):+.3f}], "
            f"n = {entry.get('n')}")
    if metric == "pointing_game":
        text += f", McNemar p = {_num(entry.get('p_value')):.3g}"
    return text


def _is_demo(rep: Mapping[str, Any]) -> bool:
    return bool(rep.get("synthetic_demo")) or DataSource.from_json(rep.get("data_source")).is_demo


def summarize_comparison(reports: Mapping[str, Mapping[str, Any]],
                         pairs: Sequence[Mapping[str, Any]] | None = None) -> str:
    """Conclusions as sentences built from the numbers of each run's localization JSON.

    Says, for each run, its metrics with 95% intervals; for each pair of runs and each metric,
    whether one "beats", "is beaten by" or "cannot be told apart from" the other by the paired
    95% interval of the per-image difference (``pairs`` from :func:`run_pairs`; without them,
    that no paired comparison of the runs was made), with the McNemar p-value for the pointing
    game; the same against each image-free baseline (from the JSON's ``paired`` block); whether
    the randomisation sanity check passed; and, first and loudly, when any number comes from
    synthetic demo data.
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
    if len(reports) >= 2:
        if pairs is None:
            lines.append("No paired run-vs-run comparison was made (pass run_pairs(reports)); "
                         "the runs' own intervals alone cannot say which localises better.")
        for pair in pairs or ():
            if "skipped" in pair:
                lines.append(f"{pair['a']} vs {pair['b']}: no paired comparison ({pair['skipped']}).")
                continue
            m = pair["metric"]
            lines.append(f"On the {METRIC_LABELS[m]}, {pair['a']} {VERDICTS[verdict(pair)]} "
                         f"{pair['b']}: paired difference {pair['a']} - {pair['b']} "
                         f"{fmt_paired(pair, m)}.")
    for run, rep in reports.items():
        paired = rep.get("paired")
        if not paired:
            lines.append(f"{run}: its JSON has no paired comparison with the image-free baselines "
                         "(written by an older version); rerun scripts/interpret.py.")
            continue
        groups: dict[str, list[str]] = {v: [] for v in VERDICTS}
        for key, label in BASELINE_LABELS.items():
            # A single point has no extent: its IoU is ~0 by construction, not a fair rival.
            for m in METRICS if key != "fixed_point" else METRICS[:2]:
                entry = (paired.get(key) or {}).get(m)
                if entry is None:
                    continue
                groups[verdict(entry)].append(f"{label} on the {METRIC_LABELS[m]} "
                                              f"({fmt_paired(entry, m)})")
        if any(groups.values()):
            lines.append(f"{run} against the image-free baselines (map minus baseline on the same "
                         "images, paired 95% interval):")
            lines += [f"  {run} {VERDICTS[v]}: {'; '.join(items)}."
                      for v, items in groups.items() if items]
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


def save_comparison(reports: Mapping[str, Mapping[str, Any]], name: str = "localization_comparison",
                    pairs: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Path]:
    """Write the comparison table (CSV), the paired comparisons (CSV), the bar chart with CIs
    (PNG) and the conclusions (TXT).

    Args:
        reports: ``{run: localization JSON}``.
        name: the files' stem.
        pairs: run-vs-run paired differences; None computes them with :func:`run_pairs` from
            the runs' per-image CSVs.

    Returns:
        ``{"table": metrics/<name>.csv, "paired": metrics/<name>_paired.csv, "figure":
        images/cam/<name>.png, "conclusions": metrics/<name>_conclusions.txt}``.
    """
    rows = comparison_rows(reports)
    if pairs is None:
        pairs = run_pairs(reports)
    table = paths.metrics_dir() / f"{name}.csv"
    write_frame_csv(table, pd.DataFrame(rows), index=False)
    paired = write_frame_csv(paths.metrics_dir() / f"{name}_paired.csv",
                             paired_table(reports, pairs), index=False)
    demo = any(_is_demo(r) for r in reports.values())
    first = next(iter(reports.values()), {})
    fig = overlays.localization_bar_chart(
        rows, METRICS, demo=demo,
        title=f"Localization on the {first.get('split', '?')} positives "
              f"({first.get('method', '?')}), runs vs image-free baselines")
    figure = overlays.save_figure(fig, paths.images_dir() / "cam" / f"{name}.png")
    conclusions = paths.metrics_dir() / f"{name}_conclusions.txt"
    with atomic_write(conclusions) as fh:
        fh.write(summarize_comparison(reports, pairs) + "\n")
    return {"table": table, "paired": paired, "figure": figure, "conclusions": conclusions}


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
