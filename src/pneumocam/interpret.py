"""Interpretation of one trained run: CAMs over a split, measured against the radiologists' boxes.

:func:`interpret` is the whole stage (``scripts/interpret.py`` and notebook 03 call it). For the
run in ``weights/<run>/best.pth`` it:

1. computes the maps of the validation split (to choose the IoU threshold and the
   weakly supervised detection threshold there, never on the evaluated split);
2. computes the maps of the evaluated split in batches (``--save-maps``: the raw maps go to
   ``metrics/<run>_maps.npy`` through a memory map, never held whole);
3. measures localization on the split's positives (pointing game, mass in boxes, IoU, each with a
   bootstrap interval and beside the fixed-point, mean-box-prior and uniform-random baselines
   built from the training boxes; the JSON's ``paired`` block tests map minus each baseline on
   the same images, the CSV holds each baseline's per-image values beside the map's)
   -> ``metrics/<run>_localization.{json,csv}``;
4. turns each map into boxes and scores the RSNA challenge metric; writes a Kaggle submission for
   ``stage_2_test_images`` when the data source has them;
5. runs the model-parameter randomisation sanity check (Adebayo et al., 2018);
6. draws overlays of the chosen images (``images/cam/<run>/<patientId>.png``, chosen by
   :func:`pneumocam.selection.select_examples`) and the confusion-matrix grids
   (``images/cam/<run>_grid_{tp,fp,fn,tn}.png``).

The parts live in one module per job: :mod:`pneumocam.split_maps` (a split's maps),
:mod:`pneumocam.localization` (the metrics), :mod:`pneumocam.detection` (boxes, RSNA metric),
:mod:`pneumocam.submission` (the Kaggle CSV), :mod:`pneumocam.sanity` (the randomisation check),
:mod:`pneumocam.selection` and :mod:`pneumocam.overlays` (what is drawn, and how). Several runs'
reports are compared, in tables and sentences, by :mod:`pneumocam.localization_comparison`.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import cli, overlays, paths, rsna
from .atomic import atomic_path, atomic_write, write_frame_csv
from .cam import METHODS
from .compare import train_command
from .detection import choose_box_threshold, detect_boxes, rsna_image_score, rsna_metric
from .errors import RunOutputsError
from .localization import BASELINE_LABELS, METRICS, localization_report
from .metrics import safe_roc_auc, threshold_metrics
from .predict import LoadedRun, load_run, normalize_images
from .processed import (
    SPLITS,
    DataSource,
    check_run_data,
    read_manifest,
    read_stats,
)
from .provenance import provenance, to_jsonable, write_json_atomic
from .sanity import randomization_sanity_check
from .selection import CELL_NAMES, GRID_CELLS, confusion_cells, select_examples
from .split_maps import (
    SplitMaps,
    SplitWithBoxes,
    check_measurable_split,
    compute_split_maps,
    resolve_data_folder,
    training_boxes,
)
from .submission import find_test_images, write_submission

#: The image-free baselines' per-image values, beside the map's (``<baseline>_hit`` etc.), so a
#: reader can recompute every paired difference of the JSON's ``paired`` block.
BASELINE_CSV_COLUMNS = tuple(
    f"{key}_{'hit' if m == 'pointing_game' else m}"
    for key in BASELINE_LABELS for m in METRICS)
LOCALIZATION_CSV_COLUMNS = (
    "patientId", "label", "prob", "predicted_positive", "pointing_hit", "mass_in_boxes", "iou",
    "n_boxes", "n_pred_boxes", "rsna_score", "peak_x", "peak_y", *BASELINE_CSV_COLUMNS,
)


@dataclass
class InterpretConfig:
    """Settings of the interpretation stage (saved in the localization JSON).

    Attributes:
        weights: ``weights/<run>/best.pth``; the run name is its folder's name.
        data_dir: processed folder; None: the run's ``config.json`` ``data_dir``, else
            ``data/Processed``.
        split: the split to interpret (``test`` by default; ``val`` is used for thresholds).
        method: CAM method, one of :data:`pneumocam.cam.METHODS`.
        n: how many single-image overlays to draw (0: none).
        save_maps: write ``metrics/<run>_maps.npy`` (raw maps, float32 N x H x W) and its index.
        batch_size: images per forward pass.
        device: ``auto`` | ``cpu`` | ``cuda``.
        seed: bootstrap and sanity-check seed.
        n_grid: examples per confusion-matrix cell grid.
        n_boot: bootstrap resamples for the intervals.
        sanity_images: images used by the randomisation sanity check.
        limit: use only the first ``limit`` images of each split (quick looks, tests).
        submission: write the Kaggle submission when test DICOMs are present.
    """

    weights: Path
    data_dir: Path | None = None
    split: str = "test"
    method: str = "cam"
    n: int = 32
    save_maps: bool = False
    batch_size: int = 64
    device: str = "auto"
    seed: int = 0
    n_grid: int = 8
    n_boot: int = 1000
    sanity_images: int = 16
    limit: int | None = None
    submission: bool = True


def _validate(config: InterpretConfig) -> None:
    cli.check_choice("method", config.method, METHODS)
    cli.check_choice("split", config.split, SPLITS)
    cli.check_at_least(config, 0, "n", "n_grid")
    cli.check_at_least(config, 1, "batch_size", "n_boot", "sanity_images", "limit")


def output_paths(run: str, limit: int | None = None) -> dict[str, Path]:
    """Where :func:`interpret` writes each output of ``run``.

    A partial look (``limit`` images per split) writes under the name ``<run>_limit<N>``
    (``metrics/<run>_limit20_localization.json``, ``images/cam/<run>_limit20/`` ...), so it can
    never replace, or pass for, the full interpretation that comparisons and the pipeline read.
    """
    tag = run if limit is None else f"{run}_limit{int(limit)}"
    m = paths.metrics_dir()
    return {
        "localization_json": m / f"{tag}_localization.json",
        "localization_csv": m / f"{tag}_localization.csv",
        "maps": m / f"{tag}_maps.npy",
        "maps_index": m / f"{tag}_maps_index.csv",
        "submission": m / f"{tag}_submission.csv",
        "overlays_dir": paths.cam_images_dir(tag),
        **{f"grid_{c}": paths.images_dir() / "cam" / f"{tag}_grid_{c}.png" for c in GRID_CELLS},
    }


# --------------------------------------------------------------------------- the stage


def interpret(config: InterpretConfig) -> dict[str, Any]:
    """Run the whole interpretation stage for one run (see the module docstring).

    Localization is measured on the raw (signed) maps of the positive images with boxes: the
    pointing game and IoU are unchanged by the min-max scaling, and mass in boxes then counts
    positive evidence only. Overlays and detection use the normalised maps.

    Returns:
        The localization JSON's content (also written to ``metrics/<run>_localization.json``)
        with an added ``"outputs"`` mapping of output names to paths.

    Raises:
        CheckpointError: missing, truncated or untrusted weights.
        ConfigError: bad settings. ProcessedDataError: missing data, no positive images.
        DataSourceError: ``data_dir`` holds other data (source, labels or split) than the run
            was trained on.
    """
    _validate(config)
    run = load_run(config.weights, config.device, config.data_dir)
    data_dir = resolve_data_folder(config.data_dir, run)
    stats = read_stats(data_dir)
    source = stats.get("source") if isinstance(stats.get("source"), dict) else run.data_source
    identity = check_run_data(run.config, data_dir, run.weights)
    demo = DataSource.from_json(source).is_demo or run.demo
    manifest = read_manifest(data_dir)
    out = output_paths(run.name, config.limit)
    train_boxes = training_boxes(manifest, data_dir)

    # Validation first: both thresholds are chosen there; its maps go before the split's come.
    val = SplitWithBoxes.load(data_dir, "val", manifest, config.limit)
    val_maps = compute_split_maps(run, val.data.images, config.method, config.batch_size, val.pos)
    box_threshold, val_scores = choose_box_threshold(val_maps.maps, val_maps.probs, val.boxes,
                                                     run.threshold)
    val_raw, val_pos_boxes = (val_maps.raw, val.pos_boxes) if val.pos.any() else (None, None)

    if config.split == "val" and not config.save_maps:
        split, maps = val, val_maps
    else:
        del val_maps  # only the positives' raw maps are needed from here on
        split = val if config.split == "val" else SplitWithBoxes.load(
            data_dir, config.split, manifest, config.limit)
        maps = _split_maps(run, split, config, out)
    check_measurable_split(split, config.split, data_dir, run)

    report = localization_report(maps.raw, split.pos_boxes, train_boxes, val_maps=val_raw,
                                 val_boxes=val_pos_boxes, n_boot=config.n_boot, seed=config.seed,
                                 ids=[split.ids[i] for i in split.pos_idx],
                                 peak_maps=maps.low[split.pos_idx])
    per_image = report.pop("per_image")

    # Weakly supervised detection on the whole split (negatives included: false boxes count).
    preds = detect_boxes(maps.maps, maps.probs, box_threshold, run.threshold)
    detection: dict[str, Any] = {
        "rsna_metric": float(rsna_metric(preds, split.boxes)),
        "box_threshold": box_threshold,
        "box_threshold_chosen_on": "val",
        "val_rsna_metric_by_box_threshold": val_scores,
        "gated_by_operating_threshold": run.threshold,
        "n_images": len(split.data),
    }
    _write_localization_csv(out["localization_csv"], split, maps, run.threshold, per_image, preds)

    # The sanity check on the split's first positives (then negatives), a small fixed set.
    sanity_idx = np.concatenate([split.pos_idx, np.flatnonzero(~split.pos)])[:config.sanity_images]
    sanity = randomization_sanity_check(
        run.model, normalize_images(split.data.images[sanity_idx], run.mean, run.std),
        method=config.method, seed=config.seed, batch_size=config.batch_size)

    detection["submission"] = _submission(run, config, source, box_threshold, out["submission"])

    chosen = select_examples(split.data.labels, maps.probs, split.ids, config.n)
    hits = {int(i): bool(row["pointing_game"]) for i, row in zip(split.pos_idx, per_image, strict=True)}
    written = _draw(run, split, maps, chosen, hits, config.method, out, config.n_grid, demo)

    result: dict[str, Any] = {
        "run": run.name,
        "weights": str(run.weights),
        "method": config.method,
        "split": config.split,
        "data_dir": str(data_dir),
        "data_source": source,
        "data_identity": identity.to_dict(),
        "limit": config.limit,
        "synthetic_demo": demo,
        **report,
        "maps_measured": "raw (signed) maps; mass in boxes counts their positive part",
        "n_split_images": len(split.data),
        "n_positive_without_boxes": int(((split.data.labels == 1) & ~split.pos).sum()),
        "classification": {
            "roc_auc": safe_roc_auc(split.data.labels, maps.probs),
            "operating_threshold": run.threshold,
            "threshold_source": run.threshold_source,
            "at_operating_threshold": threshold_metrics(split.data.labels, maps.probs,
                                                        run.threshold),
        },
        "detection": detection,
        "sanity_check": sanity,
        "overlays": {"selection": "positives by decreasing probability (up to 3/4 of n), then "
                                  "negatives by decreasing probability; ties by patientId",
                     "files": written},
        "config": config,
        "provenance": provenance(),
    }
    if config.split == "val":
        result["note"] = "thresholds were chosen on the evaluated (val) split: optimistic"
    if config.limit is not None:
        result["partial"] = (f"only the first {config.limit} images of each split: a quick look, "
                             "not the run's localization")
    result = to_jsonable(result)  # exactly what the JSON file holds
    write_json_atomic(out["localization_json"], result)
    result["outputs"] = {k: str(v) for k, v in out.items()
                         if (k not in ("maps", "maps_index") or config.save_maps)
                         and (k != "submission" or "path" in detection["submission"])
                         and (not k.startswith("grid_") or v.is_file())}
    return result


# --------------------------------------------------------------------------- the stage's steps


def _split_maps(run: LoadedRun, split: SplitWithBoxes, config: InterpretConfig,
                out: Mapping[str, Path]) -> SplitMaps:
    """The evaluated split's maps; with ``save_maps`` every raw map also goes to disk."""
    if not config.save_maps:
        return compute_split_maps(run, split.data.images, config.method, config.batch_size,
                                  split.pos)
    # Filled through a memory map at a temporary path, renamed when complete: an
    # interrupted run leaves the previous maps file (or none), never a zeroed one.
    with atomic_path(out["maps"]) as tmp:
        raw_out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                            shape=(len(split.data), *split.data.images.shape[1:]))
        maps = compute_split_maps(run, split.data.images, config.method, config.batch_size,
                                  split.pos, raw_out)
        raw_out.flush()
        del raw_out
    write_frame_csv(out["maps_index"], pd.DataFrame(
        {"patientId": split.data.manifest["patientId"].astype(str), "label": split.data.labels,
         "probability": maps.probs}), index=False)
    return maps


def _submission(run: LoadedRun, config: InterpretConfig, source: Mapping[str, Any],
                box_threshold: float, path: Path) -> dict[str, Any]:
    """The Kaggle submission when asked for and the source has test DICOMs, else why not."""
    if not config.submission:
        return {"skipped": "disabled (submission=False)"}
    folder = find_test_images(source)
    if folder is None:
        skipped = f"no {rsna.TEST_IMAGES_DIR}/ in the data source folder ({source.get('path')})"
        print(f"note: {skipped}; no Kaggle submission written.")
        return {"skipped": skipped}
    return write_submission(run, folder, config.method, config.batch_size, box_threshold, path)


def _fmt(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.6f}"


def _cell(value: Any, metric: str) -> Any:
    """A baseline's per-image value as the CSV holds it: 0/1 for a hit, else :func:`_fmt`."""
    return int(bool(value)) if metric == "pointing_game" else _fmt(value)


def _write_localization_csv(path: Path, split: SplitWithBoxes, maps: SplitMaps,
                            threshold: float, per_image: Sequence[Mapping], preds: Sequence
                            ) -> None:
    """One row per measured positive (:data:`LOCALIZATION_CSV_COLUMNS`), the baselines' hit,
    mass and IoU on that image beside the map's. ``peak_x``, ``peak_y``: the pointing game's
    peak (:func:`pneumocam.overlays.map_peak` of the map at its own resolution) in array
    pixels, the boxes' frame (pixel ``c`` covers ``[c, c + 1)``)."""
    ids, probs, boxes = split.ids, maps.probs, split.boxes
    with atomic_write(path, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(LOCALIZATION_CSV_COLUMNS)
        for j, (i, row) in enumerate(zip(split.pos_idx, per_image, strict=True)):
            py, px = overlays.map_peak(maps.raw[j], maps.low[i])
            writer.writerow([ids[i], 1, f"{probs[i]:.6f}", int(probs[i] >= threshold),
                             int(bool(row["pointing_game"])), _fmt(row["mass_in_boxes"]),
                             _fmt(row["iou"]), len(boxes[i]), len(preds[i]),
                             _fmt(rsna_image_score(preds[i], boxes[i])), f"{px:.2f}",
                             f"{py:.2f}",
                             *(_cell(row[f"{key}_{m}"], m) for key in BASELINE_LABELS
                               for m in METRICS)])


def _draw(run: LoadedRun, split: SplitWithBoxes, maps: SplitMaps, idx: np.ndarray,
          hits: Mapping[int, bool], method: str, out: Mapping[str, Path], n_grid: int,
          demo: bool) -> list[str]:
    """Single-image overlays for ``idx`` and the four confusion-matrix grids (none when
    ``n_grid`` is 0). Earlier overlays and grids of the run are removed first: they showed
    another choice of images."""
    data, boxes, ids = split.data, split.boxes, split.ids
    folder = out["overlays_dir"]
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):  # an earlier choice of images must not linger beside this one
        old.unlink()
    written = []
    for i in idx:
        title = overlays.overlay_title(int(data.labels[i]), float(maps.probs[i]), hits.get(int(i)))
        fig = overlays.cam_overlay_figure(
            data.images[i], maps.maps[i], boxes[i], title=title,
            suptitle=f"{ids[i]} | run {run.name} | {method}", demo=demo, low_map=maps.low[i])
        written.append(str(overlays.save_figure(fig, folder / f"{ids[i]}.png")))
    cells = confusion_cells(data.labels, maps.probs, ids, run.threshold, n_grid)
    for cell, cidx in cells.items():
        out[f"grid_{cell}"].unlink(missing_ok=True)
        if n_grid == 0:
            continue
        fig = overlays.cam_grid_figure(
            data.images[cidx], maps.maps[cidx], [boxes[i] for i in cidx],
            [f"{ids[i][:13]} p={maps.probs[i]:.2f}" for i in cidx],
            f"run {run.name}, {method}: most confident {CELL_NAMES[cell]} "
            f"(threshold {run.threshold:.3f})", demo=demo, low_maps=maps.low[cidx])
        overlays.save_figure(fig, out[f"grid_{cell}"])
    return written


# --------------------------------------------------------------------------- several runs


@dataclass(frozen=True)
class AvailableRuns:
    """Which of the asked runs can be interpreted.

    Attributes:
        present: runs with ``weights/<run>/best.pth``, in the order asked.
        missing: ``{run: the command that trains it}`` for the others.
    """

    present: list[str]
    missing: dict[str, str]

    @property
    def side_by_side(self) -> bool:
        """True when at least two runs exist, so they can be shown side by side."""
        return len(self.present) >= 2

    def notes(self) -> list[str]:
        """One line per missing run, naming the command that adds it."""
        return [f"{run}: no {paths.run_files(run)['best']}; `{cmd}` adds it."
                for run, cmd in self.missing.items()]


def available_runs(runs: Sequence[str]) -> AvailableRuns:
    """The runs of ``runs`` that have been trained, and the command for each one that has not.

    Raises:
        RunOutputsError: none of them has weights; names the command for each.
    """
    present = [r for r in runs if paths.run_files(r)["best"].is_file()]
    missing = {r: train_command(r) for r in runs if r not in present}
    if not present:
        raise RunOutputsError("no trained run to interpret: "
                              + "; ".join(AvailableRuns([], missing).notes()))
    return AvailableRuns(present, missing)


def interpret_runs(runs: Sequence[str], **settings: Any) -> dict[str, dict[str, Any]]:
    """:func:`interpret` for each run name (``weights/<run>/best.pth``) with the same settings.

    Args:
        runs: run names, e.g. ``("original", "balanced")``.
        settings: any :class:`InterpretConfig` field but ``weights``.

    Returns:
        ``{run: interpret(...) result}`` in the order given.
    """
    return {run: interpret(InterpretConfig(weights=paths.run_files(run)["best"], **settings))
            for run in runs}
