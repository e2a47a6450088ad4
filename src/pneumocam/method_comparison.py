"""Every CAM method of one run on the same split: one table, one chart, the best three side by side.

:func:`compare_methods` (``scripts/interpret.py --method all`` or ``--methods a,b``) runs each
method of :data:`pneumocam.cam.METHODS` over the run's validation and evaluated splits and
measures it exactly as the interpretation stage measures one method, with the same functions:

- localization on the positives with boxes (:func:`pneumocam.localization.localization_report`:
  pointing game on the map at its own resolution, mass in boxes, IoU at the threshold chosen on
  validation, each with a bootstrap interval; paired map-minus-baseline differences);
- the RSNA challenge metric of the boxes cut from the maps (:mod:`pneumocam.detection`: box
  threshold chosen on validation, boxes only on images the classifier calls positive), with a
  bootstrap interval over the scored images and a paired difference to an image-free rival:
  the mean-box prior cut into boxes by the same rule, gated by the same probabilities;
- maps per second on the device used (validation and evaluated images together, wall time).

Each metric is set against the *best* image-free baseline for that metric on these images (the
baseline with the highest value: usually the fixed point for the pointing game and the mean-box
prior for mass and IoU; the single fixed point competes on the pointing game only), with the
paired 95% interval, the p-value and the verdict of
:func:`pneumocam.localization.verdict`.

Slow methods (:data:`SLOW_METHODS`: Score-CAM runs one forward pass per channel and image) run
on a class-stratified subset of ``slow_limit`` images of each split when a split is larger
(:func:`stratified_subset`: the first positives with boxes and the first other images in
manifest order, in the split's proportions, at least one positive); the table says so in
``subset`` and ``n_split_images``, and their baselines are measured on that subset too.

Outputs (``<tag>`` is the run, or ``<run>_limit<N>`` for a quick look with ``limit``):
``metrics/<tag>_methods.csv`` (one row per method, :data:`TABLE_COLUMNS`),
``metrics/<tag>_methods.json`` (the rows, every method's full localization and detection report
without the per-image lists, the settings, the device and provenance),
``images/<tag>/methods.png`` (bars with intervals, methods beside the baselines) and
``images/<tag>/methods_maps.png`` (the same positives under the best three methods).
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import cli, overlays, paths
from .atomic import write_frame_csv
from .cam import METHODS
from .detection import choose_box_threshold, detect_boxes, rsna_image_score
from .errors import ConfigError
from .localization import (
    BASELINE_LABELS,
    METRICS,
    VERDICTS,
    bootstrap_mean_ci,
    localization_report,
    mean_box_prior,
    paired_difference,
    verdict,
)
from .model import arch_from_config
from .predict import LoadedRun, load_run
from .processed import (
    SPLITS,
    DataSource,
    SplitArrays,
    check_run_data,
    read_manifest,
    read_stats,
)
from .provenance import cpu_model, provenance, to_jsonable, write_json_atomic
from .split_maps import (
    SplitMaps,
    SplitWithBoxes,
    check_measurable_split,
    compute_split_maps,
    resolve_data_folder,
    training_boxes,
)

#: Methods run on a subset of each split when it is larger than ``slow_limit``.
SLOW_METHODS = ("scorecam",)
#: The four measures of each method: the three localization metrics and the RSNA metric.
MEASURES = (*METRICS, "rsna_metric")
#: How the rival of the RSNA metric is named in the table.
RSNA_BASELINE = "mean_box_prior"
N_BEST = 3  #: methods shown side by side in ``methods_maps.png``

TABLE_COLUMNS = (
    "method", "feature_map", "n_images", "n_split_images", "subset",
    *(f"{m}{s}" for m in MEASURES for s in ("", "_lo", "_hi")),
    *(f"{m}_{s}" for m in MEASURES for s in (
        "baseline", "baseline_value", "difference", "difference_lo", "difference_hi", "p_value",
        "verdict")),
    "iou_threshold", "box_threshold", "maps_per_second", "seconds", "device",
)


@dataclass
class MethodsConfig:
    """Settings of :func:`compare_methods` (saved in the JSON).

    Attributes:
        weights: ``weights/<run>/best.pth``; the run name is its folder's name.
        methods: the methods to compare, each one of :data:`pneumocam.cam.METHODS`.
        data_dir: processed folder (None: the run's own, as :func:`pneumocam.interpret.interpret`).
        split: the evaluated split (thresholds are always chosen on ``val``).
        batch_size: images per forward pass. device: ``auto`` | ``cpu`` | ``cuda``.
        seed, n_boot: the bootstrap's seed and resamples (the same for every method).
        limit: only the first ``limit`` images of each split (a quick look, named apart).
        slow_limit: the images per split for :data:`SLOW_METHODS` when a split is larger
            (:func:`stratified_subset`).
        n_examples: positives drawn under the best three methods.
    """

    weights: Path
    methods: tuple[str, ...] = field(default_factory=lambda: tuple(METHODS))
    data_dir: Path | None = None
    split: str = "test"
    batch_size: int = 64
    device: str = "auto"
    seed: int = 0
    n_boot: int = 1000
    limit: int | None = None
    slow_limit: int = 200
    n_examples: int = 4


def parse_methods(text: str) -> tuple[str, ...]:
    """``"all"`` or a comma-separated list of :data:`pneumocam.cam.METHODS` as a tuple.

    Raises:
        ConfigError: an unknown or repeated name, or an empty list; names the allowed ones.
    """
    if text.strip() == "all":
        return tuple(METHODS)
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in METHODS]
    if not names or unknown or len(set(names)) != len(names):
        problem = (f"unknown {', '.join(map(repr, unknown))}" if unknown else
                   "empty list" if not names else "a method named twice")
        raise ConfigError(f"--methods {text!r}: {problem}; expected 'all' or a comma-separated "
                          f"list of {', '.join(METHODS)}.")
    return names


def _validate(config: MethodsConfig) -> None:
    parse_methods(",".join(config.methods))
    cli.check_choice("split", config.split, SPLITS)
    cli.check_at_least(config, 1, "batch_size", "n_boot", "slow_limit", "limit")
    cli.check_at_least(config, 0, "n_examples")


def output_paths(run: str, limit: int | None = None) -> dict[str, Path]:
    """Where :func:`compare_methods` writes for ``run`` (``<run>_limit<N>`` with ``limit``)."""
    tag = run if limit is None else f"{run}_limit{int(limit)}"
    return {"table": paths.metrics_dir() / f"{tag}_methods.csv",
            "json": paths.metrics_dir() / f"{tag}_methods.json",
            "figure": paths.run_images_dir(tag) / "methods.png",
            "maps_figure": paths.run_images_dir(tag) / "methods_maps.png"}


def device_name(device: torch.device) -> str:
    """The accelerator's or the CPU's model name, for the maps-per-second column."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {cpu_model() or platform.machine()}, {torch.get_num_threads()} threads"


# --------------------------------------------------------------------------- one method


@dataclass
class MethodResult:
    """One method measured: its table row, its full report and its evaluated split's maps."""

    row: dict[str, Any]
    report: dict[str, Any]
    maps: SplitMaps
    split: SplitWithBoxes


def _rsna_scores(preds: Sequence, boxes: Sequence) -> np.ndarray:
    """(N,) float: each image's RSNA score, nan where the metric skips it (no box either side)."""
    return np.array([math.nan if (s := rsna_image_score(p, g)) is None else s
                     for p, g in zip(preds, boxes, strict=True)], dtype=np.float64)


def rsna_detection(maps: SplitMaps, split: SplitWithBoxes, val_maps: SplitMaps,
                   val: SplitWithBoxes, run: LoadedRun, train_boxes: Sequence, n_boot: int,
                   seed: int) -> dict[str, Any]:
    """The RSNA metric of the boxes cut from the maps, its interval and its paired difference
    to the mean-box prior's boxes (one map for every image, box threshold chosen on ``val``
    by the same rule, the same images gated by the same probabilities).

    Returns:
        ``{"rsna_metric": {"value", "ci95", "n"}, "box_threshold", "baseline": {...,
        "box_threshold"}, "paired": paired_difference(...)}``.
    """
    box_t, _ = choose_box_threshold(val_maps.maps, val_maps.probs, val.boxes, run.threshold)
    scores = _rsna_scores(detect_boxes(maps.maps, maps.probs, box_t, run.threshold), split.boxes)
    size = split.data.images.shape[1:]
    prior = mean_box_prior(train_boxes, size).astype(np.float32)
    prior = (prior - prior.min()) / max(float(prior.max() - prior.min()), 1e-12)
    prior_t, _ = choose_box_threshold(np.broadcast_to(prior, val_maps.maps.shape),
                                      val_maps.probs, val.boxes, run.threshold)
    prior_scores = _rsna_scores(detect_boxes(np.broadcast_to(prior, maps.maps.shape), maps.probs,
                                             prior_t, run.threshold), split.boxes)
    return {
        "rsna_metric": bootstrap_mean_ci(scores, n_boot, seed),
        "box_threshold": box_t,
        "baseline": {**bootstrap_mean_ci(prior_scores, n_boot, seed), "box_threshold": prior_t},
        "paired": paired_difference(scores, prior_scores, "rsna_metric", n_boot, seed),
    }


def best_baselines(report: Mapping[str, Any]) -> dict[str, str]:
    """``{metric: baseline key}``: the image-free baseline with the highest value per metric.
    The fixed point, a single pixel, is the rival on the pointing game only: its IoU is ~0 and
    its mass in boxes is its hit rate, by construction, so neither measures a map's extent."""
    best = {}
    for m in METRICS:
        candidates = [k for k in BASELINE_LABELS if k != "fixed_point" or m == "pointing_game"]
        values = {k: float(report["baselines"][k][m]["value"]) for k in candidates}
        best[m] = max(candidates, key=lambda k: -math.inf if math.isnan(values[k]) else values[k])
    return best


def _measure_row(method: str, report: Mapping[str, Any], detection: Mapping[str, Any]
                 ) -> dict[str, Any]:
    """The table's measure columns of one method (values, intervals, paired differences)."""
    row: dict[str, Any] = {}
    sides = {m: (report[m], report["baselines"][b][m], report["paired"][b][m], b)
             for m, b in best_baselines(report).items()}
    sides["rsna_metric"] = (detection["rsna_metric"], detection["baseline"], detection["paired"],
                            RSNA_BASELINE)
    for m, (own, base, paired, key) in sides.items():
        row[m], (row[f"{m}_lo"], row[f"{m}_hi"]) = own["value"], own["ci95"]
        row[f"{m}_baseline"], row[f"{m}_baseline_value"] = key, base["value"]
        row[f"{m}_difference"] = paired["difference"]
        row[f"{m}_difference_lo"], row[f"{m}_difference_hi"] = paired["ci95"]
        row[f"{m}_p_value"] = paired["p_value"]
        row[f"{m}_verdict"] = VERDICTS[verdict(paired)]
    return row


def measure_method(run: LoadedRun, method: str, val: SplitWithBoxes, split: SplitWithBoxes,
                   train_boxes: Sequence, config: MethodsConfig) -> MethodResult:
    """One method on ``val`` (thresholds) and ``split`` (measured), timed (see the module
    docstring); the row has every :data:`TABLE_COLUMNS` entry but ``subset``."""
    # no positive with a box: nothing to measure
    check_measurable_split(split, config.split, split_dir(run), run)
    start = time.perf_counter()
    val_maps = compute_split_maps(run, val.data.images, method, config.batch_size, val.pos)
    maps = compute_split_maps(run, split.data.images, method, config.batch_size, split.pos)
    seconds = time.perf_counter() - start
    report = localization_report(
        maps.raw, split.pos_boxes, train_boxes,
        val_maps=val_maps.raw if val.pos.any() else None,
        val_boxes=val.pos_boxes if val.pos.any() else None, n_boot=config.n_boot,
        seed=config.seed, ids=[split.ids[i] for i in split.pos_idx],
        peak_maps=maps.low[split.pos_idx])
    report.pop("per_image")
    detection = rsna_detection(maps, split, val_maps, val, run, train_boxes, config.n_boot,
                               config.seed)
    n_maps = len(val.data) + len(split.data)
    row = {"method": method, "feature_map": "x".join(map(str, maps.low.shape[1:])),
           "n_images": report["n_images"], "n_split_images": len(split.data),
           **_measure_row(method, report, detection),
           "iou_threshold": report["iou_threshold"], "box_threshold": detection["box_threshold"],
           "maps_per_second": n_maps / seconds if seconds > 0 else math.nan,
           "seconds": seconds, "device": device_name(run.device)}
    return MethodResult(row, {**report, "detection": detection}, maps, split)


def split_dir(run: LoadedRun) -> Path:
    """The processed folder named in messages about the run's splits."""
    return run.data_dir or paths.processed_dir()


# --------------------------------------------------------------------------- all methods


def stratified_subset(split: SplitWithBoxes, n: int) -> SplitWithBoxes:
    """``n`` images of ``split`` (all when it has no more): the first positives with boxes and
    the first other images, in manifest order, in the split's proportions, with at least one
    positive with a box when the split has one (localization needs it)."""
    if n >= len(split.data):
        return split
    pos, other = np.flatnonzero(split.pos), np.flatnonzero(~split.pos)
    n_pos = min(len(pos), max(1, int(round(n * len(pos) / len(split.data)))))
    keep = np.sort(np.concatenate([pos[:n_pos], other[:n - n_pos]]))
    data = SplitArrays(images=split.data.images[keep], labels=split.data.labels[keep],
                       manifest=split.data.manifest.iloc[keep].reset_index(drop=True))
    return SplitWithBoxes(data, [split.boxes[i] for i in keep], split.pos[keep])


def rank_methods(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Method names best first: by pointing game, then mass in boxes, then IoU (nan last)."""
    def key(row: Mapping[str, Any]) -> tuple[float, ...]:
        return tuple(-(v if isinstance(v, (int, float)) and not math.isnan(v) else -math.inf)
                     for v in (row["pointing_game"], row["mass_in_boxes"], row["iou"]))
    return [row["method"] for row in sorted(rows, key=key)]


def compare_methods(config: MethodsConfig) -> dict[str, Any]:
    """Measure every method of ``config.methods`` on the same split (see the module docstring).

    Returns:
        The JSON's content (``rows``, ``ranking``, ``reports``, ...) plus ``"outputs"``:
        ``{"table", "json", "figure", "maps_figure"}`` paths.

    Raises:
        ConfigError: bad settings. CheckpointError: unusable weights. ProcessedDataError: no
        positive image with a box in the split. DataSourceError: other data than the run's.
    """
    _validate(config)
    run = load_run(config.weights, config.device, config.data_dir)
    data_dir = resolve_data_folder(config.data_dir, run)
    identity = check_run_data(run.config, data_dir, run.weights)
    stats = read_stats(data_dir)
    source = stats.get("source") if isinstance(stats.get("source"), dict) else run.data_source
    demo = DataSource.from_json(source).is_demo or run.demo
    manifest = read_manifest(data_dir)
    train_boxes = training_boxes(manifest, data_dir)
    out = output_paths(run.name, config.limit)

    whole = (SplitWithBoxes.load(data_dir, "val", manifest, config.limit),
             SplitWithBoxes.load(data_dir, config.split, manifest, config.limit))
    results: dict[str, MethodResult] = {}
    for method in config.methods:
        val, split = whole
        subset = ""
        if method in SLOW_METHODS and max(len(val.data), len(split.data)) > config.slow_limit:
            val, split = (stratified_subset(s, config.slow_limit) for s in whole)
            subset = (f"{config.slow_limit} images of each split, class-stratified (the first "
                      f"positives with boxes and the first others, manifest order): {method} "
                      "is slow; --slow-limit sets it")
        print(f"[methods] {method}: {len(val.data)} val + {len(split.data)} {config.split} "
              "images", flush=True)
        result = measure_method(run, method, val, split, train_boxes, config)
        result.row["subset"] = subset
        results[method] = result
        row = result.row
        print(f"[methods] {method}: pointing game {row['pointing_game']:.3f}, mass in boxes "
              f"{row['mass_in_boxes']:.3f}, IoU {row['iou']:.3f}, RSNA {row['rsna_metric']:.3f}, "
              f"{row['maps_per_second']:.1f} maps/s", flush=True)

    rows = [{c: r.row.get(c) for c in TABLE_COLUMNS} for r in results.values()]
    ranking = rank_methods(rows)
    write_frame_csv(out["table"], pd.DataFrame(rows, columns=list(TABLE_COLUMNS)), index=False)
    _chart(results, run.name, config.split, demo, out["figure"])
    examples = _best_maps_figure(run, results, ranking[:N_BEST], config, demo, out["maps_figure"])
    doc: dict[str, Any] = {
        "run": run.name, "weights": str(run.weights), "split": config.split,
        "arch": arch_from_config(run.config),
        "data_dir": str(data_dir), "data_source": source, "data_identity": identity.to_dict(),
        "synthetic_demo": demo, "limit": config.limit, "device": device_name(run.device),
        "rows": rows, "ranking": ranking,
        "ranking_rule": "pointing game, then mass in boxes, then IoU (higher first)",
        "best_baseline_rule": "per metric the image-free baseline with the highest value on the "
                              "same images; the fixed point (one pixel) competes on the pointing "
                              "game only",
        "rsna_baseline": "the mean-box prior cut into boxes by the same rule (box threshold "
                         "chosen on val), on the images the classifier calls positive; paired on "
                         "the images both sides score",
        "maps_per_second": "validation and evaluated images over the wall time of computing "
                           "their maps (probabilities included), batch_size images per pass",
        "reports": {m: r.report for m, r in results.items()},
        "examples": examples, "config": config, "provenance": provenance(),
    }
    doc = to_jsonable(doc)
    write_json_atomic(out["json"], doc)
    doc["outputs"] = {k: str(v) for k, v in out.items() if v.is_file()}
    return doc


def _chart(results: Mapping[str, MethodResult], run: str, split: str, demo: bool,
           path: Path) -> Path:
    """Bars with intervals: each method's four measures, then the baselines of the first method
    measured on the whole split (a subset's baselines differ)."""
    rows: list[dict[str, Any]] = [
        {"name": m, **{k: r.row[k] for m_ in MEASURES for k in (m_, f"{m_}_lo", f"{m_}_hi")}}
        for m, r in results.items()]
    whole = next((r for r in results.values() if not r.row["subset"]), None)
    if whole is not None:
        for key, label in BASELINE_LABELS.items():
            base = whole.report["baselines"][key]
            row: dict[str, Any] = {"name": f"baseline: {label}", "baseline": True}
            for m in METRICS:
                row[m], (row[f"{m}_lo"], row[f"{m}_hi"]) = base[m]["value"], base[m]["ci95"]
            if key == RSNA_BASELINE:
                rb = whole.report["detection"]["baseline"]
                row["rsna_metric"], (row["rsna_metric_lo"], row["rsna_metric_hi"]) = (
                    rb["value"], rb["ci95"])
            rows.append(row)
    fig = overlays.localization_bar_chart(
        rows, MEASURES, demo=demo,
        title=f"run {run}: every CAM method on the {split} positives, beside the image-free "
              "baselines")
    return overlays.save_figure(fig, path)


def _best_maps_figure(run: LoadedRun, results: Mapping[str, MethodResult], best: Sequence[str],
                      config: MethodsConfig, demo: bool, path: Path) -> dict[str, Any]:
    """The ``n_examples`` most confident positives with boxes of the evaluated split (ties by
    patientId) under the ``best`` methods, recomputed on those images only."""
    first = results[best[0]] if best else next(iter(results.values()))
    split = first.split
    order = sorted(split.pos_idx, key=lambda i: (-float(first.maps.probs[i]), split.ids[i]))
    chosen = np.array(order[:config.n_examples], dtype=int)
    images = split.data.images[chosen]
    maps, probs, low = {}, {}, {}
    for method in best:
        res = compute_split_maps(run, images, method, config.batch_size)
        maps[method], probs[method], low[method] = res.maps, res.probs, res.low
    ids = [split.ids[i] for i in chosen]
    fig = overlays.compare_maps_figure(
        images, maps, probs, [split.boxes[i] for i in chosen], ids, demo=demo, low_by_run=low,
        title=f"run {run.name}: the best {len(best)} methods on the same positive images")
    overlays.save_figure(fig, path)
    return {"methods": list(best), "patient_ids": ids,
            "selection": "positives with boxes by decreasing probability, ties by patientId"}
