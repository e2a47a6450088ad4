"""The README's results block, rendered from the files under ``metrics/`` and ``weights/``.

No number in the README's results section is typed by hand: ``python scripts/report.py --readme``
replaces the text between :data:`START_MARKER` and :data:`END_MARKER` with what
:func:`render_results` makes of

- ``metrics/<run>_eval.json`` (ROC AUC, average precision, the view-position baseline, the
  operating threshold and the sensitivity/specificity at it, the test split's size);
- ``metrics/comparison.json`` (the paired bootstrap AUC/AP differences run minus reference);
- ``metrics/<run>_localization.json`` (pointing game, mass in boxes, IoU, the image-free
  baselines and the ``paired`` block: map minus baseline on the same images) and
  ``metrics/<run>_localization.csv`` (per image: run minus run, paired by patientId);
- ``weights/<run>/config.json`` (the data source, the device asked for, the host and commit).

It says which data made the numbers (a loud stamp for the synthetic demo), how many test images,
and on what machine and commit. A missing file never fails: the block names the command that
makes it. The rendering is deterministic (no clock), so rerunning on the same files changes
nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from . import paths
from .atomic import atomic_write
from .errors import ConfigError, PneumocamError
from .localization import BASELINE_LABELS, METRIC_LABELS, METRICS, VERDICTS, verdict
from .metrics import Estimate
from .processed import DataSource
from .provenance import json_get, read_json_object

START_MARKER = "<!-- results:start -->"
END_MARKER = "<!-- results:end -->"
#: The runs the study trains, in the order the README shows them (others follow, sorted).
RUN_ORDER = ("original", "balanced", "posweight")
#: The command that writes each kind of file the block reads.
COMMANDS = {
    "eval": "python scripts/train_{run}.py",
    "comparison": "python scripts/compare.py",
    "localization": "python scripts/interpret.py --weights weights/{run}/best.pth",
    "all": "python scripts/run_pipeline.py",
}
_DASH = "–"


class ReadmeMarkersError(PneumocamError):
    """A README without exactly one well-ordered pair of results markers (exit status 1: the
    file, not a flag, needs the fix)."""


# --------------------------------------------------------------------------- reading


def find_runs(metrics_dir: Path) -> list[str]:
    """Runs with a ``<run>_eval.json`` in ``metrics_dir``: :data:`RUN_ORDER` first, then sorted."""
    found = {p.name[: -len("_eval.json")] for p in metrics_dir.glob("*_eval.json")}
    return [r for r in RUN_ORDER if r in found] + sorted(found - set(RUN_ORDER))


def _train_command(run: str) -> str:
    if run in ("original", "balanced"):
        return COMMANDS["eval"].format(run=run)
    return f"python scripts/train_original.py --run-name {run} (with that run's flags)"


# --------------------------------------------------------------------------- formatting


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def _f(v: Any, digits: int = 3, sign: bool = False) -> str:
    x = _num(v)
    if math.isnan(x):
        return _DASH
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _est(entry: Any) -> str:
    """``0.961 (0.926-0.987)``; the value alone when there is no interval; a dash when none."""
    e = Estimate.from_json(entry)
    if math.isnan(e.value):
        return _DASH
    if math.isnan(e.low) or math.isnan(e.high):
        return _f(e.value)
    return f"{e.value:.3f} ({e.low:.3f}-{e.high:.3f})"


def _diff(entry: Mapping[str, Any] | None, value_key: str = "difference") -> str:
    """``+0.011 (-0.005 to +0.032)`` from ``{value_key, "ci95"}``; a dash when missing."""
    if not entry:
        return _DASH
    ci = entry.get("ci95") or [None, None]
    if math.isnan(_num(entry.get(value_key))):
        return _DASH
    return f"{_f(entry.get(value_key), sign=True)} ({_f(ci[0], sign=True)} to {_f(ci[1], sign=True)})"


def _p(entry: Mapping[str, Any] | None) -> str:
    p = _num((entry or {}).get("p_value"))
    return _DASH if math.isnan(p) else f"{p:.3g}"


# --------------------------------------------------------------------------- rendering


def _stamp(evals: Mapping[str, dict], configs: Mapping[str, dict | None]) -> list[str]:
    """Which data made the numbers, how many test images, and where and from what commit."""
    lines: list[str] = []
    sources = {run: DataSource.from_json(e.get("data_source")) for run, e in evals.items()}
    demo = any(s.is_demo or bool(evals[r].get("synthetic_demo")) for r, s in sources.items())
    kinds = sorted({s.kind for s in sources.values()})
    first = next(iter(evals.values()))
    test = json_get(first, "counts", "test") or {}
    if demo:
        lines.append("**Synthetic demo data: these numbers say nothing about pneumonia**; they "
                     "show what the outputs look like.")
    else:
        lines.append(f"Data: {', '.join(kinds)} (not the synthetic demo).")
    lines.append(f"Test split: {test.get('n', _DASH)} images, {test.get('n_pos', _DASH)} positive.")
    for run in evals:
        config = configs.get(run)
        if config is None:
            lines.append(f"`{run}`: no `weights/{run}/config.json` (run `{_train_command(run)}`).")
            continue
        prov = config.get("provenance") or {}
        git = prov.get("git") or {}
        host = prov.get("host") or {}
        commit = (git.get("commit") or "unknown")[:10] + (" (uncommitted changes)"
                                                         if git.get("dirty") else "")
        device = json_get(config, "arguments", "device") or "?"
        gpu = host.get("gpu") or host.get("device_name")
        where = f"{host.get('platform', '?')}, {host.get('cpu_count', '?')} CPUs"
        if host.get("cpu_model"):
            isa = (host.get("cpu_capability") or {}).get("aten")
            where += f" ({host['cpu_model']}" + (f", {isa} kernels)" if isa else ")")
        if gpu:
            where += f", {gpu}"
        lines.append(f"`{run}`: trained with `--device {device}` on {where}; commit `{commit}`, "
                     f"{prov.get('created_utc', 'time unknown')}.")
    return lines


def classification_rows(runs: Sequence[str], evals: Mapping[str, dict],
                         comparison: dict | None) -> list[list[str]]:
    def per_run(fn) -> list[str]:
        return [fn(evals[r]) if r in evals else _DASH for r in runs]

    paired = {(d.get("run"), d.get("metric")): d
              for d in (comparison or {}).get("paired_differences") or []}
    ref = (comparison or {}).get("reference_run")
    rows = [
        ["ROC AUC (95% bootstrap CI)", *per_run(lambda e: _est(e.get("roc_auc")))],
        ["average precision (95% CI)", *per_run(lambda e: _est(e.get("average_precision")))],
        ["AUC within AP / within PA", *per_run(
            lambda e: f"{_f(json_get(e, 'by_view', 'AP', 'roc_auc', 'value'))} / "
                      f"{_f(json_get(e, 'by_view', 'PA', 'roc_auc', 'value'))}")],
        ["view position alone (the shortcut to beat)", *per_run(
            lambda e: _f(json_get(e, "baselines", "view_position", "roc_auc")))],
        ["operating threshold (chosen on validation)", *per_run(
            lambda e: _f(e.get("operating_threshold"), 2))],
        ["sensitivity / specificity at it", *per_run(
            lambda e: f"{_f(json_get(e, 'at_operating_threshold', 'sensitivity', 'value'))} / "
                      f"{_f(json_get(e, 'at_operating_threshold', 'specificity', 'value'))}")],
    ]
    if comparison is not None and ref:
        for metric, label in (("roc_auc", "AUC"), ("average_precision", "AP")):
            rows.append([f"paired bootstrap {label} difference, run - {ref}",
                         *[_DASH if r == ref else _diff(paired.get((r, metric)), "value")
                           for r in runs]])
    return rows


def localization_rows(runs: Sequence[str], locs: Mapping[str, dict | None]) -> list[list[str]]:
    def per_run(fn) -> list[str]:
        return [fn(locs[r]) if locs.get(r) else _DASH for r in runs]

    def paired(rep: dict, key: str, m: str) -> str:
        entry = json_get(rep, "paired", key, m)
        if not entry:
            return _DASH
        text = _diff(entry)
        return text + (f", McNemar p = {_p(entry)}" if m == "pointing_game" else "")

    n_pos = next((r.get("n_images") for r in locs.values() if r), None)
    rows = []
    for m in METRICS:
        label = f"CAM {METRIC_LABELS[m]}" + (f" ({n_pos} positive images)"
                                             if m == "pointing_game" and n_pos else "")
        rows.append([label, *per_run(lambda rep, m=m: _est(rep.get(m)))])
        rows.append([f"{METRIC_LABELS[m]}: fixed point / mean-box prior / uniform random",
                     *per_run(lambda rep, m=m: " / ".join(
                         _f(json_get(rep, "baselines", k, m, "value")) for k in BASELINE_LABELS))])
        for key, label in BASELINE_LABELS.items():
            if key == "fixed_point" and m == "iou":
                continue  # a single point has no extent: its IoU is ~0 by construction
            rows.append([f"paired {METRIC_LABELS[m]}, map - {label}",
                         *per_run(lambda rep, key=key, m=m: paired(rep, key, m))])
    rows.append(["randomised-weights sanity check, mean abs. Spearman", *per_run(
        lambda rep: f"{_f(json_get(rep, 'sanity_check', 'mean_abs_rho'), 2)} "
                    f"({'passed' if json_get(rep, 'sanity_check', 'passed') else 'FAILED'})")])
    rows.append(["RSNA challenge metric of the weakly supervised boxes", *per_run(
        lambda rep: _f(json_get(rep, "detection", "rsna_metric")))])
    return rows


def run_vs_run_lines(metrics_dir: Path, locs: Mapping[str, dict | None]) -> list[str]:
    """One line per run-vs-run localization comparison, paired on the same images.

    Computed here from the interpreted runs' per-image CSVs (``<run>_localization.csv``) with
    :func:`pneumocam.localization_comparison.run_pairs` (the first run's bootstrap settings), so
    the README needs no notebook run; a pair that cannot be paired says why.
    """
    from .localization_comparison import run_pairs  # imports torch: only when there are pairs

    reports = {r: rep for r, rep in locs.items() if rep}
    if len(reports) < 2:
        return []
    tables = {}
    for run in reports:
        try:
            tables[run] = pd.read_csv(metrics_dir / f"{run}_localization.csv",
                                      dtype={"patientId": str})
        except (OSError, ValueError):
            continue
    lines = []
    for pair in run_pairs(reports, tables):
        if "skipped" in pair:
            lines.append(f"- {pair['a']} vs {pair['b']}: no paired comparison ({pair['skipped']}).")
            continue
        m = pair["metric"]
        text = (f"- {METRIC_LABELS[m]}: {pair['a']} {VERDICTS[verdict(pair)]} {pair['b']}, "
                f"paired difference {_diff(pair)} on {pair['n']} images")
        lines.append(text + (f", McNemar p = {_p(pair)}" if m == "pointing_game" else "") + ".")
    return lines


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def render_results(metrics_dir: str | Path | None = None,
                   weights_dir: str | Path | None = None) -> str:
    """The README's results block (markdown, without the markers) from the files on disk.

    Args:
        metrics_dir: the ``metrics/`` folder (default :func:`pneumocam.paths.metrics_dir`).
        weights_dir: the ``weights/`` folder (default :func:`pneumocam.paths.weights_dir`).

    Returns:
        Markdown: a note that the block is generated, the data stamp (demo or real, test
        images, device, host and commit per run), the classification table, the localization
        table with the paired differences map minus each baseline (interval; McNemar p for the
        pointing game), the run-vs-run paired lines, and one line naming the command for every
        missing file. With no evaluated run at all, only what to run.
    """
    mdir = Path(metrics_dir) if metrics_dir is not None else paths.metrics_dir()
    wdir = Path(weights_dir) if weights_dir is not None else paths.weights_dir()
    lines = ["<!-- generated by `python scripts/report.py --readme` from metrics/ and weights/; "
             "edits here are overwritten -->", ""]
    runs = find_runs(mdir)
    if not runs:
        lines += [f"No results yet: no `metrics/<run>_eval.json`. Run `{COMMANDS['all']}` (or "
                  f"`{COMMANDS['eval'].format(run='balanced')}`), then `python scripts/report.py "
                  "--readme`."]
        return "\n".join(lines) + "\n"
    evals = {r: read_json_object(mdir / f"{r}_eval.json") or {} for r in runs}
    configs = {r: read_json_object(wdir / r / "config.json") for r in runs}
    locs = {r: read_json_object(mdir / f"{r}_localization.json") for r in runs}
    comparison = read_json_object(mdir / "comparison.json") if len(runs) > 1 else None
    demo_tag = "synthetic demo" if any(
        DataSource.from_json(e.get("data_source")).is_demo or e.get("synthetic_demo")
        for e in evals.values()) else "real data"

    lines += _stamp(evals, configs) + [""]
    lines += _table([f"test split ({demo_tag})", *runs], classification_rows(runs, evals,
                                                                               comparison))
    lines.append("")
    if any(locs.values()):
        lines += _table([f"localization on the test positives ({demo_tag})", *runs],
                        localization_rows(runs, locs))
        lines += ["", "Paired rows: the mean per-image difference on the same images with its "
                      "paired bootstrap 95% interval; a map beats a baseline when the interval "
                      "lies above 0, and cannot be told apart from it when it contains 0."]
    run_lines = run_vs_run_lines(mdir, locs)
    if run_lines:
        lines += ["", "Run vs run on the same positive images (localization):", *run_lines]
    missing = []
    if len(runs) > 1 and comparison is None:
        missing.append(f"`metrics/comparison.json` (paired AUC differences): `{COMMANDS['comparison']}`")
    for r in runs:
        if not locs[r]:
            missing.append(f"`metrics/{r}_localization.json`: "
                           f"`{COMMANDS['localization'].format(run=r)}`")
    if missing:
        lines += ["", "Not yet made:", *[f"- {m}" for m in missing]]
    return "\n".join(lines).rstrip() + "\n"


def replace_block(text: str, block: str, source: str | Path = "README.md") -> str:
    """``text`` with everything between the markers replaced by ``block``; the rest untouched.

    Raises:
        ReadmeMarkersError: the markers are missing, repeated or out of order (names ``source``
            and the two lines to add).
    """
    starts, ends = text.count(START_MARKER), text.count(END_MARKER)
    i, j = text.find(START_MARKER), text.find(END_MARKER)
    if starts != 1 or ends != 1 or j < i:
        raise ReadmeMarkersError(
            f"{source}: expected one '{START_MARKER}' line followed by one '{END_MARKER}' line "
            f"(found {starts} and {ends}{', in the wrong order' if starts == ends == 1 else ''}); "
            "put them around the results section, then rerun python scripts/report.py --readme.")
    head = text[: i + len(START_MARKER)]
    return head + "\n" + block.rstrip("\n") + "\n" + text[j:]


def write_readme_results(readme: str | Path | None = None, metrics_dir: str | Path | None = None,
                         weights_dir: str | Path | None = None) -> Path:
    """Render the results (:func:`render_results`) into ``readme`` between the markers,
    atomically (a temporary file renamed onto it); default the repository's ``README.md``.

    Raises:
        ReadmeMarkersError: see :func:`replace_block`. FileNotFoundError never: a missing
            README is a :class:`ConfigError` naming the path.
    """
    path = Path(readme) if readme is not None else paths.repo_root() / "README.md"
    if not path.is_file():
        raise ConfigError(f"{path}: no such README; pass --readme-path with the file to update.")
    text = path.read_bytes().decode("utf-8")  # bytes: line endings outside the block kept as-is
    new = replace_block(text, render_results(metrics_dir, weights_dir), path)
    if new != text:
        with atomic_write(path, "wb") as fh:
            fh.write(new.encode("utf-8"))
    return path
