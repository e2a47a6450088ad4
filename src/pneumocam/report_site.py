"""The study's offline report: ``images/index.html`` and the CAM gallery ``images/report/``.

:func:`write_site` rebuilds both from the files on disk and nothing else: ``metrics/`` (each
run's ``_eval.json``, ``comparison{,_seeds}.{json,csv}``, ``_localization.{json,csv}``, ``_methods.csv``,
the saved maps), ``weights/*/config.json`` (every run, whatever its name) and
``data/Processed/{stats.json,manifest.csv}``. A file that is missing gives a line naming the
command that makes it.

The pages are plain HTML with the style sheet and the gallery's script inlined
(``report_static/``): they open from ``file://`` with no server, no network and no CDN. Every
string from a file goes through :func:`html.escape` (or, in the gallery, JSON with ``<``, ``>``
and ``&`` escaped, read by a script that writes with ``textContent``), so a run name or patientId
holding ``<``, ``"`` or ``&`` stays text. The site is written in a temporary folder beside
``images/report`` and renamed into place: a killed run leaves the previous site, never half of
one.
"""

from __future__ import annotations

import html
import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from . import paths
from .errors import PneumocamError
from .localization_comparison import run_pairs, summarize_comparison
from .processed import DataSource
from .provenance import json_get, read_json_object
from .readme_results import RUN_ORDER, classification_rows, localization_rows
from .report_gallery import (
    Interpretation,
    find_interpretations,
    parse_boxes,
    patient_key,
    write_gallery_assets,
)
from .seed_comparison import METRIC_LABELS as SEED_METRIC_LABELS
from .selection import CELL_NAMES, GRID_CELLS
from .thumbnails import encode_jpeg, render_overlays

SITE_DIR = "report"  #: the gallery's folder under images/
RUN_FIGURES = {"curves": "training curves (loss, validation ROC AUC)", "roc": "ROC curve",
               "pr": "precision-recall curve", "confusion": "confusion matrix",
               "reliability": "calibration (reliability diagram)"}
N_SAMPLES = 6


# --------------------------------------------------------------------------- small helpers


def esc(value: Any) -> str:
    """``value`` as HTML text: ``<``, ``>``, ``&``, ``"`` and ``'`` escaped."""
    return html.escape(str(value), quote=True)


def _url(rel: str) -> str:
    """A relative path as an escaped URL attribute value (each segment percent-encoded)."""
    return esc(quote(rel, safe="/"))


def json_for_script(obj: Any) -> str:
    """JSON that is safe inside ``<script type="application/json">``: ``<``, ``>``, ``&`` as
    ``\\u003c`` etc. (no ``</script>`` can close it early); NaN and infinities become null."""
    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x
    text = json.dumps(clean(obj), separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _static(name: str) -> str:
    return resources.files("pneumocam").joinpath("report_static", name).read_text("utf-8")


def _read_csv(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path, keep_default_na=False, dtype=str)
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return None


def table(header: Sequence[Any], rows: Sequence[Sequence[Any]], caption: str = "") -> str:
    """An HTML table, every cell escaped (numbers right as given)."""
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    head = "".join(f"<th scope=\"col\">{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return (f"<div class=\"table-wrap\"><table>{cap}<thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>")


def frame_table(frame: pd.DataFrame, max_rows: int = 200) -> str:
    """Any CSV read as text, shown as it is (the first ``max_rows`` rows)."""
    return table(list(frame.columns), frame.head(max_rows).values.tolist())


def figure(rel: str, alt: str, caption: str) -> str:
    return (f"<figure><img src=\"{_url(rel)}\" alt=\"{esc(alt)}\" loading=\"lazy\">"
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def todo(text: str, command: str | None = None) -> str:
    cmd = f" <code>{esc(command)}</code>" if command else ""
    return f"<p class=\"todo\">{esc(text)}{cmd}</p>"


def _f(v: Any, d: int = 3) -> str:
    return f"{v:.{d}f}" if isinstance(v, (int, float)) and not isinstance(v, bool) \
        and math.isfinite(v) else "–"


def _est(e: Any) -> str:
    if not isinstance(e, Mapping):
        return _f(e)
    ci = e.get("ci95") or [None, None]
    return f"{_f(e.get('value'))} ({_f(ci[0])}–{_f(ci[1])})" if ci[0] is not None else _f(e.get("value"))


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.name


# --------------------------------------------------------------------------- what is on disk


@dataclass
class Study:
    """Everything the page reads, loaded once.

    Attributes:
        root: the project root (``paths.repo_root()``); images, metrics, weights: its folders.
        runs: every run with ``weights/<run>/config.json`` or ``metrics/<run>_eval.json``,
            :data:`pneumocam.readme_results.RUN_ORDER` first. configs/evals/locs: per run
            (None when missing). stats: ``data/Processed/stats.json``. manifest: its manifest.
        interps: the interpretations (:func:`pneumocam.report_gallery.find_interpretations`).
    """

    root: Path
    images: Path
    metrics: Path
    weights: Path
    processed: Path
    runs: list[str]
    configs: dict[str, dict | None]
    evals: dict[str, dict | None]
    locs: dict[str, dict | None]
    stats: dict | None
    manifest: pd.DataFrame | None
    interps: list[Interpretation]

    @property
    def demo(self) -> bool:
        """Made from the synthetic demo data (or a source not known to be real)."""
        blocks = [(self.stats or {}).get("source")] + [
            (d or {}).get("data_source") for d in (*self.evals.values(), *self.configs.values())]
        known = [DataSource.from_json(b) for b in blocks if b]
        flagged = any((d or {}).get("synthetic_demo") for d in self.evals.values())
        return flagged or any(s.maybe_synthetic for s in known)

    @property
    def source(self) -> DataSource:
        for b in [(self.stats or {}).get("source")] + [(d or {}).get("data_source")
                                                       for d in self.evals.values()]:
            if b:
                return DataSource.from_json(b)
        return DataSource()


def load_study(root: Path | None = None) -> Study:
    """Read the study's files under ``root`` (default :func:`pneumocam.paths.repo_root`)."""
    root = Path(root) if root is not None else paths.repo_root()
    images, metrics, weights = root / "images", root / "metrics", root / "weights"
    processed = root / "data" / "Processed"
    names = {p.parent.name for p in weights.glob("*/config.json")}
    names |= {p.name[: -len("_eval.json")] for p in metrics.glob("*_eval.json")}
    runs = [r for r in RUN_ORDER if r in names] + sorted(names - set(RUN_ORDER))
    stats = read_json_object(processed / "stats.json")
    manifest = None
    if (processed / "manifest.csv").is_file():
        try:
            manifest = pd.read_csv(processed / "manifest.csv", dtype={"patientId": str})
        except (OSError, ValueError):
            manifest = None
    return Study(
        root=root, images=images, metrics=metrics, weights=weights, processed=processed,
        runs=runs,
        configs={r: read_json_object(weights / r / "config.json") for r in runs},
        evals={r: read_json_object(metrics / f"{r}_eval.json") for r in runs},
        locs={r: read_json_object(metrics / f"{r}_localization.json") for r in runs},
        stats=stats, manifest=manifest,
        interps=find_interpretations(metrics, RUN_ORDER))


def _train_command(run: str, config: Mapping | None) -> str:
    sampler = json_get(config, "settings", "sampler") or ("balanced" if run == "balanced" else "original")
    script = "train_balanced.py" if sampler == "balanced" else "train_original.py"
    return f"python scripts/{script}" + ("" if run in ("original", "balanced") else f" --run-name {run}")


def _interpret_command(run: str) -> str:
    return f"python scripts/interpret.py --weights weights/{run}/best.pth --save-maps"


# --------------------------------------------------------------------------- sections


def _banner(study: Study) -> str:
    src = study.source
    where = f" from {src.path}" if src.path else ""
    if study.demo:
        return ("<div class=\"banner demo\" role=\"note\" id=\"demo-banner\">Synthetic demo data: these "
                "numbers and maps say nothing about pneumonia"
                f"<small>Data source: {esc(src.kind)}{esc(where)}. The demo generator's images "
                "show what the outputs look like; run the study on the RSNA files for real "
                "results.</small></div>")
    return (f"<div class=\"banner real\" role=\"note\">Data source: {esc(src.kind)}{esc(where)} "
            "(not the synthetic demo).</div>")


def _data_section(study: Study, site: Path) -> str:
    out = ["<section id=\"data\"><h2>The data</h2>"]
    m = study.manifest
    if m is None:
        out.append(todo("No data/Processed/manifest.csv: preprocess the data first:",
                        "python scripts/preprocess.py"))
        return "".join(out) + "</section>"
    out.append(f"<p class=\"lead\">{len(m)} images in data/Processed, split by patient "
               "(train / val / test).</p>")
    splits = [s for s in ("train", "val", "test") if (m["split"] == s).any()]
    rows = []
    for s in splits:
        part = m[m["split"] == s]
        n_pos = int((part["label"] == 1).sum())
        row = [s, len(part), n_pos, len(part) - n_pos, f"{n_pos / max(len(part), 1):.1%}"]
        for v in ("AP", "PA"):
            pv = part[part["view_position"] == v]
            row.append(f"{len(pv)} ({int((pv['label'] == 1).sum())} positive)")
        rows.append(row)
    out.append(table(["split", "images", "positive", "negative", "prevalence", "AP view", "PA view"],
                     rows))
    # A few radiographs with their boxes: positives of the test split first, then negatives.
    test = m[m["split"] == ("test" if "test" in splits else splits[-1])]
    picks = pd.concat([test[test["label"] == 1].head(N_SAMPLES // 2 + N_SAMPLES % 2),
                       test[test["label"] == 0].head(N_SAMPLES // 2)])
    figs = []
    if len(picks):
        try:
            arrays = np.stack([np.load(study.processed / f) for f in picks["array_file"]])
        except (OSError, ValueError):
            arrays = None
        if arrays is not None:
            boxes = [parse_boxes(b) for b in picks["boxes"]]
            drawn = render_overlays(arrays, None, boxes, None, max(224, arrays.shape[1]))
            for img, (_, r), b in zip(drawn, picks.iterrows(), boxes, strict=True):
                rel = f"{SITE_DIR}/img/samples/{patient_key(str(r['patientId']))}.jpg"
                (site / rel).parent.mkdir(parents=True, exist_ok=True)
                (site / rel).write_bytes(encode_jpeg(img, 88))
                label = "pneumonia" if int(r["label"]) == 1 else "no pneumonia"
                figs.append(figure(rel, f"Radiograph {r['patientId']} ({label}, {r['view_position']} "
                                        f"view) with {len(b)} radiologist box(es) in cyan",
                                   f"{r['patientId']}: {label}, {r['view_position']}, {len(b)} box(es)"))
    if figs:
        out.append("<h3>Sample radiographs of the test split</h3><div class=\"samples\">"
                   + "".join(figs) + "</div>")
    return "".join(out) + "</section>"


def _settings_rows(config: Mapping | None) -> list[list[str]]:
    settings = (config or {}).get("settings") or {}
    model = (config or {}).get("model") or {}
    rows = [[k, v] for k, v in settings.items()
            if not isinstance(v, (dict, list)) and k not in ("data_dir", "run_name")]
    rows += [[f"model {k}", v] for k, v in model.items() if not isinstance(v, (dict, list))]
    return [[k, "–" if v is None else v] for k, v in rows]


def _eval_rows(e: Mapping) -> list[list[str]]:
    at = e.get("at_operating_threshold") or {}
    cm = at.get("confusion_matrix") or {}
    rows = [
        ["ROC AUC", _est(e.get("roc_auc")), f"view position alone {_f(json_get(e, 'baselines', 'view_position', 'roc_auc'))}; chance 0.5"],
        ["average precision", _est(e.get("average_precision")), f"prevalence alone {_f(json_get(e, 'baselines', 'prevalence_only', 'average_precision'))}"],
        ["model minus view-position AUC (same images)", _est(json_get(e, "view_position_baseline", "model_minus_view_auc")), "above 0: beats the shortcut"],
        ["ROC AUC within AP / within PA", f"{_est(json_get(e, 'by_view', 'AP', 'roc_auc'))} / {_est(json_get(e, 'by_view', 'PA', 'roc_auc'))}", "the view cannot help within a view"],
        ["operating threshold (Youden's J on validation)", _f(e.get("operating_threshold"), 4), ""],
    ]
    for k in ("accuracy", "sensitivity", "specificity", "precision", "f1"):
        rows.append([f"{k} at the operating threshold", _est(at.get(k)), ""])
    if cm:
        rows.append(["confusion matrix at it (TP / FP / FN / TN)",
                     " / ".join(str(cm.get(k, "–")) for k in ("tp", "fp", "fn", "tn")), ""])
    rows.append(["expected calibration error", _f(e.get("ece")), "0 is perfectly calibrated"])
    return rows


def _run_section(study: Study, run: str) -> str:
    config, e = study.configs.get(run), study.evals.get(run)
    out = [f"<h3 id=\"run-{esc(run)}\">Run <code>{esc(run)}</code></h3>"]
    prov = (config or {}).get("provenance") or {}
    if config is None:
        out.append(todo(f"No weights/{run}/config.json: train it with", _train_command(run, None)))
    else:
        out.append(f"<p>Trained {esc(prov.get('created_utc', '(time unknown)'))}, commit "
                   f"<code>{esc(str(json_get(prov, 'git', 'commit') or 'unknown')[:10])}</code>.</p>")
        out.append("<details><summary>Settings</summary>"
                   + table(["setting", "value"], _settings_rows(config)) + "</details>")
    if e is None:
        out.append(todo("Not evaluated yet (no metrics/" + run + "_eval.json): rerun its training,",
                        _train_command(run, config)))
    else:
        n = json_get(e, "counts", "test") or {}
        out.append(f"<p>Test split: {esc(n.get('n', '–'))} images, {esc(n.get('n_pos', '–'))} "
                   "positive; 95% bootstrap intervals in brackets.</p>")
        out.append(table(["test metric", "value (95% CI)", "baseline / reading"], _eval_rows(e)))
    figs = [figure(f"{run}/{name}.png", f"{label} of run {run}", f"{run}: {label}")
            for name, label in RUN_FIGURES.items() if (study.images / run / f"{name}.png").is_file()]
    if figs:
        out.append("<div class=\"figs\">" + "".join(figs) + "</div>")
    if study.locs.get(run) is None:
        out.append(todo(f"{run} is not interpreted yet (no localization, no gallery): run",
                        _interpret_command(run)))
    return "".join(out)


def _runs_section(study: Study) -> str:
    out = ["<section id=\"runs\"><h2>Each run</h2>"]
    if not study.runs:
        out.append(todo("No trained run yet. Train both runs and everything else with",
                        "python scripts/run_pipeline.py"))
    out += [_run_section(study, r) for r in study.runs]
    return "".join(out) + "</section>"


def _comparison_section(study: Study) -> str:
    out = ["<section id=\"comparison\"><h2>Runs compared</h2>"]
    evaluated = [r for r in study.runs if study.evals.get(r)]
    if len(evaluated) < 2:
        out.append(todo("Fewer than two evaluated runs: nothing to compare yet. Train both with",
                        "python scripts/run_pipeline.py"))
        return "".join(out) + "</section>"
    comparison = read_json_object(study.metrics / "comparison.json")
    evals = {r: study.evals[r] or {} for r in evaluated}
    out.append("<p class=\"lead\">The same test images for every run; paired bootstrap "
               "differences say whether a difference is a finding (its interval excludes 0).</p>")
    out.append(table(["test split", *evaluated], classification_rows(evaluated, evals, comparison)))
    frame = _read_csv(study.metrics / "comparison.csv")
    seeds = read_json_object(study.metrics / "comparison_seeds.json")
    if frame is not None:
        out.append("<details><summary>metrics/comparison.csv</summary>" + frame_table(frame) + "</details>")
    elif seeds is None:
        out.append(todo("No metrics/comparison.csv:", "python scripts/compare.py"))
    if (study.images / "comparison.png").is_file():
        out.append("<div class=\"figs wide\">" + figure(
            "comparison.png", "ROC curves and metrics of the runs side by side",
            "the runs side by side (images/comparison.png)") + "</div>")
    if seeds is not None:
        out.append(_seeds_subsection(study, seeds))
    return "".join(out) + "</section>"


def _seeds_subsection(study: Study, seeds: Mapping[str, Any]) -> str:
    """The multi-seed comparison (``metrics/comparison_seeds.json``, written by
    ``scripts/compare.py --seeds``): per metric each seed's paired difference, the mean with its
    two-source interval and the spread between seeds, the package's conclusions, the figure."""
    rows = [r for r in seeds.get("rows") or [] if isinstance(r, Mapping)]
    config = seeds.get("config") or {}
    seed_list = [int(s) for s in config.get("seeds") or [] if isinstance(s, int)]
    out = [f"<h3>Over training seeds {esc(', '.join(map(str, seed_list)))}</h3>"
           "<p class=\"lead\">Each run trained once per seed on the same data, compared on the "
           "same test images. The 95% interval of the mean difference carries both sources of "
           "variation, the seeds and the test images (" + esc(seeds.get("interval_method", "")) +
           "). The effect counts as larger than the spread between seeds when |mean difference| "
           "exceeds the larger standard deviation over seeds of the two runs.</p>"]
    pairs = list(dict.fromkeys(f"{r.get('run')} - {r.get('reference')}" for r in rows))
    header = ["metric", *(["difference"] if len(pairs) > 1 else []),
              *[f"seed {s}" for s in seed_list], "mean", "95% interval", "seed spread (sd)",
              "effect > spread"]
    body = []
    for r in rows:
        verdict = r.get("effect_exceeds_spread")
        body.append([
            SEED_METRIC_LABELS.get(r.get("metric"), r.get("metric")),
            *([f"{r.get('run')} - {r.get('reference')}"] if len(pairs) > 1 else []),
            *[_f(r.get(f"diff_s{s}")) for s in seed_list],
            _f(r.get("diff_mean")), f"[{_f(r.get('ci95_lo'))}, {_f(r.get('ci95_hi'))}]",
            _f(r.get("seed_spread")), "–" if verdict is None else ("yes" if verdict else "no")])
    out.append(table(header, body, f"paired differences {', '.join(pairs)} per seed, their mean "
                     "and its 95% interval from both sources (metrics/comparison_seeds.csv)"))
    conclusions = [str(line) for line in seeds.get("conclusions") or [] if str(line).strip()]
    if conclusions:
        out.append("<h3>Conclusions the package computes over seeds</h3><ul class=\"conclusions\">"
                   + "".join(f"<li>{esc(line)}</li>" for line in conclusions) + "</ul>")
    if (study.images / "comparison_seeds.png").is_file():
        out.append("<div class=\"figs full\">" + figure(
            "comparison_seeds.png", "Each metric per training seed for both runs, joined per "
            "seed, and below each seed's difference with the mean and its interval",
            "one point per seed (images/comparison_seeds.png)") + "</div>")
    frame = _read_csv(study.metrics / "comparison_seeds.csv")
    if frame is not None:
        out.append("<details><summary>metrics/comparison_seeds.csv</summary>"
                   + frame_table(frame) + "</details>")
    return "".join(out)


def _interpretability_section(study: Study) -> str:
    out = ["<section id=\"interpretability\"><h2>Interpretability: do the maps point at the "
           "boxes?</h2>"]
    interpreted = [r for r in study.runs if study.locs.get(r)]
    if not interpreted:
        out.append(todo("No run interpreted yet:", _interpret_command("balanced")))
        return "".join(out) + "</section>"
    locs = {r: study.locs[r] for r in interpreted}
    out.append("<p class=\"lead\">Pointing game, share of the map's mass inside the boxes and IoU "
               "on the positive test images, beside the image-free baselines; paired rows are map "
               "minus baseline on the same images (95% interval; McNemar's p for the pointing "
               "game).</p>")
    out.append(table(["localization on the test positives", *interpreted],
                     localization_rows(interpreted, locs)))
    try:  # the run-vs-run pairs from the per-image CSVs, as the README's block computes them
        tables = {r: pd.read_csv(study.metrics / f"{r}_localization.csv", dtype={"patientId": str})
                  for r in interpreted if (study.metrics / f"{r}_localization.csv").is_file()}
        conclusions = summarize_comparison(locs, run_pairs(locs, tables))
    except (PneumocamError, OSError, ValueError, KeyError) as exc:
        conclusions = f"(no conclusions: {exc})"
    if conclusions:
        out.append("<h3>Conclusions the package computes (run against run on the same images, and each map against the baselines)</h3><ul class=\"conclusions\">"
                   + "".join(f"<li>{esc(line.strip())}</li>" for line in conclusions.splitlines()
                             if line.strip()) + "</ul>")
    for run in study.runs:
        methods = _read_csv(study.metrics / f"{run}_methods.csv")
        if methods is not None:
            out.append(f"<h3>{esc(run)}: CAM methods compared (metrics/{esc(run)}_methods.csv)</h3>"
                       + frame_table(methods))
    if (study.images / "cam" / "localization_comparison.png").is_file():
        out.append("<div class=\"figs wide\">" + figure(
            "cam/localization_comparison.png", "Bar chart of localization metrics with intervals "
            "for the runs and the baselines", "runs vs image-free baselines") + "</div>")
    for run in interpreted:
        grids = [figure(f"cam/{run}_grid_{c}.png", f"Most confident {CELL_NAMES[c]} of run {run} "
                        "with their class activation maps", f"{run}: {CELL_NAMES[c]}")
                 for c in GRID_CELLS if (study.images / "cam" / f"{run}_grid_{c}.png").is_file()]
        if grids:
            out.append(f"<h3>{esc(run)}: the most confident image of each confusion cell</h3>"
                       f"<div class=\"figs wide\">{''.join(grids)}</div>")
    return "".join(out) + "</section>"


def _gallery_section(study: Study, counts: Mapping[str, int]) -> str:
    out = ["<section id=\"gallery\"><h2>CAM gallery: every image</h2>"]
    if not study.interps:
        out.append(todo("No interpretation with saved maps yet:", _interpret_command("balanced")))
        return "".join(out) + "</section>"
    out.append("<p class=\"lead\">Every image of the interpreted split with its map, boxes and "
               "peak; filter by confusion cell, label, view and pointing result, sort by "
               "probability, IoU or mass in boxes, search a patientId, open one for its detail "
               "(arrow keys move, Escape closes).</p><div class=\"gallery-links\">")
    for it in study.interps:
        if it.has_maps:
            href = f"{SITE_DIR}/gallery.html#run={quote(it.run)}&method={quote(it.method)}"
            out.append(f"<a class=\"gallery-link\" href=\"{esc(href)}\"><strong>{esc(it.run)}</strong>"
                       f" · {esc(it.method)}<br>{counts.get(it.tag, 0)} images of the "
                       f"{esc(it.split)} split</a>")
        else:
            out.append(f"<div class=\"gallery-link\"><strong>{esc(it.run)}</strong> · "
                       f"{esc(it.method)}<br>maps not saved; add them with "
                       f"<code>{esc(it.save_maps_command)}</code></div>")
    return "".join(out) + "</div></section>"


def _provenance_section(study: Study) -> str:
    files: list[tuple[str, dict | None]] = [("data/Processed/stats.json", study.stats)]
    for r in study.runs:
        files.append((f"weights/{r}/config.json", study.configs.get(r)))
        files.append((f"metrics/{r}_eval.json", study.evals.get(r)))
        files.append((f"metrics/{r}_localization.json", study.locs.get(r)))
    for name in ("comparison.json", "comparison_seeds.json"):
        files.append((f"metrics/{name}", read_json_object(study.metrics / name)))
    rows, versions = [], {}
    for name, data in files:
        if data is None:
            continue
        prov = data.get("provenance") or {}
        git = prov.get("git") or {}
        commit = str(git.get("commit") or "unknown")[:10] + (" (uncommitted changes)" if git.get("dirty") else "")
        mtime = datetime.fromtimestamp((study.root / name).stat().st_mtime, timezone.utc) \
            if (study.root / name).is_file() else None
        rows.append([name, prov.get("created_utc", "–"),
                     mtime.isoformat(timespec="seconds") if mtime else "–", commit])
        versions = prov.get("versions") or versions
    out = ["<section id=\"provenance\"><h2>Provenance</h2><p class=\"lead\">When each file "
           "was made, and by which commit; the page itself was built from them.</p>",
           table(["file", "made (recorded)", "file modified", "commit"], rows)]
    if versions:
        out.append("<details><summary>Library versions (latest file)</summary>"
                   + table(["library", "version"], [[k, v or "–"] for k, v in versions.items()])
                   + "</details>")
    return "".join(out) + "</section>"


def _page(title: str, body: str, extra_head: str = "") -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{_static('report.css')}</style>{extra_head}"
            f"</head><body>{body}</body></html>\n")


def render_index(study: Study, site: Path, counts: Mapping[str, int]) -> str:
    """The study page (``images/index.html``); draws its sample radiographs under ``site``."""
    toc = "".join(f"<a href=\"#{k}\">{v}</a>" for k, v in (
        ("data", "Data"), ("runs", "Runs"), ("comparison", "Comparison"),
        ("interpretability", "Interpretability"), ("gallery", "CAM gallery"),
        ("provenance", "Provenance")))
    body = ("<header class=\"top\"><h1>Pneumonia detection with class activation maps</h1>"
            "<p>The study's results, rebuilt from metrics/, weights/ and data/Processed by "
            "<code>python scripts/report.py</code>.</p></header>" + _banner(study)
            + f"<nav class=\"toc\" aria-label=\"Sections\">{toc}</nav><main>"
            + _data_section(study, site.parent) + _runs_section(study) + _comparison_section(study)
            + _interpretability_section(study) + _gallery_section(study, counts)
            + _provenance_section(study) + "</main><footer>Offline page: no server, no network. "
            "Synthetic-demo results are stamped as such.</footer>")
    return _page("Pneumonia CAM study", body)


def render_gallery(study: Study, data: Mapping[str, Any]) -> str:
    """The gallery page (``images/report/gallery.html``) with its data embedded."""
    selects = "".join(
        f"<label>{esc(label)}<select id=\"f-{key}\">"
        + "".join(f"<option value=\"{esc(v)}\">{esc(t)}</option>" for v, t in opts)
        + "</select></label>"
        for key, label, opts in (
            ("cell", "cell", [("*", "all"), ("tp", "TP"), ("fp", "FP"), ("fn", "FN"), ("tn", "TN")]),
            ("label", "true label", [("*", "all"), ("1", "pneumonia"), ("0", "no pneumonia")]),
            ("view", "view", [("*", "all"), ("AP", "AP"), ("PA", "PA")]),
            ("hit", "pointing", [("*", "all"), ("hit", "hit"), ("miss", "miss")]),
            ("sort", "sort", [("p:desc", "probability, high first"), ("p:asc", "probability, low first"),
                              ("iou:desc", "IoU, high first"), ("iou:asc", "IoU, low first"),
                              ("mass:desc", "mass in boxes, high first"),
                              ("mass:asc", "mass in boxes, low first"), ("id:asc", "patientId")])))
    body = ("<header class=\"top\"><h1>CAM gallery</h1><p>Every image of the interpreted split: "
            "map overlay, radiologists' boxes (cyan), the map's peak (green +). "
            "<a href=\"../index.html\">Back to the study</a></p></header>" + _banner(study)
            + "<div class=\"controls\" role=\"search\">"
            "<label>run<select id=\"f-run\"></select></label>"
            "<label>method<select id=\"f-method\"></select></label>" + selects
            + "<label>patientId<input id=\"f-search\" type=\"search\" placeholder=\"search\"></label>"
            "<span class=\"count\" id=\"count\" aria-live=\"polite\"></span></div>"
            "<div class=\"note\" id=\"note\"></div><div class=\"grid\" id=\"grid\"></div>"
            "<div id=\"detail\" hidden role=\"dialog\" aria-modal=\"true\" aria-labelledby=\"d-title\">"
            "<div class=\"panel\"><div class=\"panel-head\"><h2 id=\"d-title\"></h2>"
            + ("<span class=\"demo-tag\">synthetic demo data</span>" if study.demo else "")
            + "<span id=\"d-pos\"></span><button type=\"button\" id=\"d-prev\">&larr; previous</button>"
            "<button type=\"button\" id=\"d-next\">next &rarr;</button>"
            "<button type=\"button\" id=\"d-close\">close (Esc)</button></div>"
            "<div class=\"detail-body\" id=\"d-body\"></div>"
            "<div id=\"d-others-wrap\"><h3>The other runs' maps of this image</h3>"
            "<div class=\"others\" id=\"d-others\"></div></div>"
            "<p class=\"kbd-hint\">Keys: &larr; / &rarr; previous / next image, Esc closes.</p>"
            "</div></div>"
            f"<script type=\"application/json\" id=\"gallery-data\">{json_for_script(data)}</script>"
            f"<script>{_static('gallery.js')}</script>")
    return _page("CAM gallery", body)


# --------------------------------------------------------------------------- writing


def write_site(root: Path | None = None) -> Path:
    """Rebuild ``images/index.html`` and ``images/report/`` from the files under ``root``.

    The gallery folder is written whole in a temporary folder under ``images/`` and renamed
    into place, then ``index.html`` is renamed onto its name; a rerun replaces both, and the
    leftovers of a killed run (``images/.report-*.tmp``) are removed first.

    Returns:
        The path of ``images/index.html``.
    """
    study = load_study(root)
    study.images.mkdir(parents=True, exist_ok=True)
    for stale in study.images.glob(".report-*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=".report-", suffix=".tmp", dir=study.images))
    old = None
    try:
        site = tmp / SITE_DIR
        site.mkdir()
        data = write_gallery_assets(study.interps, site)
        counts = {r["tag"]: r["n"] for r in data["runs"]}
        (site / "gallery.html").write_text(render_gallery(study, data), "utf-8")
        (tmp / "index.html").write_text(render_index(study, site, counts), "utf-8")
        final = study.images / SITE_DIR
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=".report-old-", suffix=".tmp", dir=study.images))
            os.replace(final, old / SITE_DIR)
        os.replace(site, final)
        os.replace(tmp / "index.html", study.images / "index.html")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return study.images / "index.html"
