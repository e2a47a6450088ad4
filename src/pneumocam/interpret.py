"""Interpretation of one trained run: CAMs over a split, measured against the radiologists' boxes.

:func:`interpret` is the whole stage (``scripts/interpret.py`` and notebook 03 call it). For the
run in ``weights/<run>/best.pth`` it:

1. computes the maps of the validation split (to choose the IoU threshold and the
   weakly supervised detection threshold there, never on the evaluated split);
2. computes the maps of the evaluated split in batches (``--save-maps``: the raw maps go to
   ``metrics/<run>_maps.npy`` through a memory map, never held whole);
3. measures localization on the split's positives (pointing game, mass in boxes, IoU, each with a
   bootstrap interval and beside the fixed-point, mean-box-prior and uniform-random baselines
   built from the training boxes) -> ``metrics/<run>_localization.{json,csv}``;
4. turns each map into boxes and scores the RSNA challenge metric; writes a Kaggle submission for
   ``stage_2_test_images`` when the data source has them;
5. runs the model-parameter randomisation sanity check (Adebayo et al., 2018);
6. draws overlays of the chosen images (``images/cam/<run>/<patientId>.png``) and the
   confusion-matrix grids (``images/cam/<run>_grid_{tp,fp,fn,tn}.png``).

Which images get an overlay (deterministic, ties broken by patientId): up to three quarters of
``n`` are positives in decreasing probability (the maps the model is surest of, where a wrong
place is most telling), the rest negatives in decreasing probability (its most confident false
alarms: what it looks at when it is wrong); a class that runs short leaves its places to the other.

:func:`summarize_comparison` turns the JSON of several runs into sentences (which localises
better, which baselines each beats with non-overlapping intervals, the sanity check, and a loud
caveat for synthetic data), so notebook conclusions come from the numbers.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import overlays, paths, rsna
from .atomic import atomic_path, atomic_write, write_frame_csv
from .errors import (
    ConfigError,
    DataSourceError,
    DicomReadError,
    ProcessedDataError,
    RunOutputsError,
)
from .metrics import safe_roc_auc, threshold_metrics
from .predict import LoadedRun, load_run, normalize_images, warn
from .processed import (
    SPLITS,
    SplitArrays,
    check_run_data,
    load_arrays,
    load_split,
    read_manifest,
    read_stats,
    run_data_dir,
)
from .provenance import provenance, write_json_atomic

GRID_CELLS = ("tp", "fp", "fn", "tn")
LOCALIZATION_METRICS = ("pointing_game", "mass_in_boxes", "iou")
BASELINES = ("fixed_point", "mean_box_prior", "uniform_random")
#: Candidate map thresholds for weakly supervised detection (chosen on validation).
BOX_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
LOCALIZATION_CSV_COLUMNS = (
    "patientId", "label", "prob", "predicted_positive", "pointing_hit", "mass_in_boxes", "iou",
    "n_boxes", "n_pred_boxes", "rsna_score", "peak_x", "peak_y",
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


# --------------------------------------------------------------------------- maps


@dataclass
class SplitMaps:
    """A split's model outputs.

    Attributes:
        probs: float32 (N,) in [0, 1]. logits: float32 (N,).
        maps: float32 (N, H, W) in [0, 1], the normalised maps (``CamResult.normalized``).
        raw: float32 (K, H, W), the raw signed maps of the K rows chosen by ``keep_raw``
            (the positives: localization measures positive evidence on them).
    """

    probs: np.ndarray
    maps: np.ndarray
    logits: np.ndarray
    raw: np.ndarray


def compute_split_maps(run: LoadedRun, images: np.ndarray, method: str, batch_size: int,
                       keep_raw: np.ndarray | None = None,
                       raw_out: np.ndarray | None = None) -> SplitMaps:
    """Probabilities and maps of uint8 images (N, H, W), a bounded number of images at a time.

    Args:
        keep_raw: bool (N,): rows whose raw maps are kept in memory (None: none).
        raw_out: optional float32 (N, H, W) array (e.g. a memory map) receiving every raw map.
    """
    from .cam import compute_cams

    n = len(images)
    keep = np.zeros(n, bool) if keep_raw is None else np.asarray(keep_raw, bool)
    probs = np.empty(n, np.float32)
    logits = np.empty(n, np.float32)
    maps = np.empty((n, *images.shape[1:]), np.float32)
    raw = np.empty((int(keep.sum()), *images.shape[1:]), np.float32)
    slot = np.cumsum(keep) - 1  # row i's place in ``raw`` when kept
    batch_size = max(1, int(batch_size))
    # Several batches per call keep the GPU's copy pipeline busy; the float copy stays bounded.
    step = batch_size * max(1, 1024 // batch_size)
    for start in range(0, n, step):
        stop = min(n, start + step)
        x = normalize_images(images[start:stop], run.mean, run.std)
        res = compute_cams(run.model, x, method=method, batch_size=batch_size)
        probs[start:stop] = _np(res.probs)
        logits[start:stop] = _np(res.logits)
        maps[start:stop] = _np(res.normalized)
        res_raw = _np(res.raw)
        rows = np.flatnonzero(keep[start:stop])
        raw[slot[start + rows]] = res_raw[rows]
        if raw_out is not None:
            raw_out[start:stop] = res_raw
    return SplitMaps(probs=probs, maps=maps, logits=logits, raw=raw)


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu")
        return x.numpy()
    return np.asarray(x)


# --------------------------------------------------------------------------- selection


def _order(probs: np.ndarray, ids: Sequence[str], idx: np.ndarray, descending: bool) -> np.ndarray:
    """``idx`` sorted by probability (then patientId), deterministic."""
    keys = sorted(idx.tolist(), key=lambda i: ((-1 if descending else 1) * float(probs[i]), ids[i]))
    return np.asarray(keys, dtype=np.int64)


def select_examples(labels: np.ndarray, probs: np.ndarray, ids: Sequence[str], n: int) -> np.ndarray:
    """Indices of the ``n`` images to draw: positives then negatives (see the module docstring).

    Args:
        labels: (N,) 0/1. probs: (N,) in [0, 1]. ids: N patient ids (tie-breaker).

    Returns:
        int64 indices, positives (decreasing probability) first, then negatives.
    """
    labels = np.asarray(labels)
    pos = _order(probs, ids, np.flatnonzero(labels == 1), True)
    neg = _order(probs, ids, np.flatnonzero(labels != 1), True)
    n = max(0, int(n))
    n_pos = min(len(pos), n - n // 4)
    n_neg = min(len(neg), n - n_pos)
    n_pos = min(len(pos), n - n_neg)  # negatives ran short: give their places back
    return np.concatenate([pos[:n_pos], neg[:n_neg]]).astype(np.int64)


def confusion_cells(labels: np.ndarray, probs: np.ndarray, ids: Sequence[str], threshold: float,
                    k: int) -> dict[str, np.ndarray]:
    """The ``k`` most confident examples of each confusion-matrix cell at ``threshold``.

    Returns:
        ``{"tp", "fp": decreasing probability; "fn", "tn": increasing probability}`` -> indices.
    """
    labels = np.asarray(labels)
    pred = np.asarray(probs) >= threshold
    cells = {
        "tp": (np.flatnonzero((labels == 1) & pred), True),
        "fp": (np.flatnonzero((labels != 1) & pred), True),
        "fn": (np.flatnonzero((labels == 1) & ~pred), False),
        "tn": (np.flatnonzero((labels != 1) & ~pred), False),
    }
    return {name: _order(probs, ids, idx, desc)[:max(0, int(k))] for name, (idx, desc) in cells.items()}


# --------------------------------------------------------------------------- detection


def detect_boxes(maps: np.ndarray, probs: np.ndarray, box_threshold: float,
                 operating_threshold: float) -> list[list[tuple[float, list[float]]]]:
    """Weakly supervised detection: boxes from each map, none for images called negative.

    Images whose probability is below the classifier's operating threshold get no boxes (a box
    on a negative image is a false positive for the RSNA metric).

    Returns:
        Per image a list of ``(confidence, [x, y, w, h])`` in map pixels.
    """
    from .detection import map_to_boxes

    return [map_to_boxes(m, float(p), box_threshold) if p >= operating_threshold else []
            for m, p in zip(maps, probs, strict=True)]


def choose_box_threshold(maps: np.ndarray, probs: np.ndarray, gts: Sequence[Sequence],
                         operating_threshold: float,
                         candidates: Sequence[float] = BOX_THRESHOLDS) -> tuple[float, dict[str, float]]:
    """The map threshold with the best RSNA metric on (validation) images; first best on ties."""
    from .detection import rsna_metric

    scores: dict[str, float] = {}
    best, best_score = float(candidates[0]), -math.inf
    for t in candidates:
        score = float(rsna_metric(detect_boxes(maps, probs, t, operating_threshold), gts))
        scores[f"{t:g}"] = score
        if not math.isnan(score) and score > best_score:
            best, best_score = float(t), score
    return best, scores


def write_submission(run: LoadedRun, folder: Path, method: str, batch_size: int,
                     box_threshold: float, out_path: Path) -> dict[str, Any]:
    """Kaggle ``patientId,PredictionString`` for every DICOM in ``folder`` (original pixels).

    Each DICOM is read like preprocessing does (:func:`pneumocam.dicom.load_dicom_resized`), its
    boxes mapped back to the original pixel grid (1024 px for RSNA). An unreadable file gets an
    empty prediction and is listed in the result.
    """
    from .cam import compute_cams
    from .detection import prediction_string
    from .dicom import load_dicom_resized

    dicoms = rsna.list_dicoms(folder)
    failed: list[dict[str, str]] = []
    rows: list[tuple[str, str]] = []
    items = list(dicoms.items())
    step = max(1, int(batch_size))
    for start in range(0, len(items), step):
        good, images, geos = [], [], []
        for pid, path in items[start:start + step]:
            try:
                rad = load_dicom_resized(path, run.size)
            except DicomReadError as exc:
                failed.append({"file": str(path), "reason": exc.reason})
                rows.append((pid, ""))
                continue
            good.append(pid)
            images.append(rad.image)
            geos.append(rad.geometry)
        if not good:
            continue
        res = compute_cams(run.model, normalize_images(np.stack(images), run.mean, run.std),
                           method=method, batch_size=step)
        preds = detect_boxes(_np(res.normalized), _np(res.probs), box_threshold, run.threshold)
        for pid, pred, geo in zip(good, preds, geos, strict=True):
            if geo is not None and pred:
                original = [_clip_box(b, geo.width, geo.height)
                            for b in geo.boxes_to_original([box for _, box in pred])]
                pred = [(conf, box) for (conf, _), box in zip(pred, original, strict=True)
                        if box[2] > 0 and box[3] > 0]
            rows.append((pid, prediction_string(pred)))
    with atomic_write(out_path, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["patientId", "PredictionString"])
        writer.writerows(sorted(rows))
    return {"path": str(out_path), "n_images": len(items), "n_failed": len(failed),
            "failed": failed[:20]}


def _clip_box(box: Sequence[float], width: int, height: int) -> list[float]:
    """``[x, y, w, h]`` cut to the image (a region in the square's padding maps outside it)."""
    x0, y0 = max(0.0, box[0]), max(0.0, box[1])
    x1, y1 = min(float(width), box[0] + box[2]), min(float(height), box[1] + box[3])
    return [x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0)]


def _test_images_folder(source: Mapping[str, Any]) -> Path | None:
    raw = source.get("path") if isinstance(source, Mapping) else None
    if not raw:
        return None
    root = Path(str(raw))
    root = root if root.is_absolute() else paths.repo_root() / root
    folder = root / rsna.TEST_IMAGES_DIR
    return folder if folder.is_dir() else None


# --------------------------------------------------------------------------- the stage


def _boxes(manifest: pd.DataFrame) -> list[list[list[float]]]:
    return [[[float(v) for v in b] for b in boxes] for boxes in manifest["boxes"]]


def _positives(labels: np.ndarray, boxes: Sequence[Sequence]) -> np.ndarray:
    """bool (N,): positive images that have at least one box (localization needs a box)."""
    return (np.asarray(labels) == 1) & np.array([len(b) > 0 for b in boxes], dtype=bool)


def _data_folder(data_dir: str | Path | None, run: LoadedRun) -> Path:
    """The processed folder to read: the one given, else the one the run was trained on (its
    ``config.json``, :func:`pneumocam.processed.run_data_dir`) when it still holds data, else
    data/Processed. Whichever it is, :func:`pneumocam.processed.check_run_data` vets it."""
    if data_dir:
        return Path(data_dir)
    trained = run_data_dir(run.config)
    if trained is not None and (trained / "stats.json").is_file():
        return trained
    if trained is not None:
        warn(f"{trained} (the folder {run.name} was trained on, from its config.json) holds no "
             f"processed data; reading {paths.processed_dir()} instead.")
    return paths.processed_dir()


def _validate(config: InterpretConfig) -> None:
    from .cam import METHODS

    if config.method not in METHODS:
        raise ConfigError(f"--method {config.method!r}: expected one of {METHODS}.")
    if config.split not in SPLITS:
        raise ConfigError(f"--split {config.split!r}: expected one of {SPLITS}.")
    for name in ("n", "n_grid"):
        if getattr(config, name) < 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 0.")
    for name in ("batch_size", "n_boot", "sanity_images"):
        if getattr(config, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1.")
    if config.limit is not None and config.limit < 1:
        raise ConfigError("--limit must be >= 1.")


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


def _draw(run: LoadedRun, data: SplitArrays, maps: SplitMaps, idx: np.ndarray, boxes: list,
          hits: Mapping[int, bool], method: str, out: Mapping[str, Path], n_grid: int,
          demo: bool) -> list[str]:
    """Single-image overlays for ``idx`` and the four confusion-matrix grids (none when
    ``n_grid`` is 0). Earlier overlays and grids of the run are removed first: they showed
    another choice of images."""
    ids = data.manifest["patientId"].astype(str).tolist()
    folder = out["overlays_dir"]
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):  # an earlier choice of images must not linger beside this one
        old.unlink()
    written = []
    for i in idx:
        title = overlays.overlay_title(int(data.labels[i]), float(maps.probs[i]), hits.get(int(i)))
        fig = overlays.cam_overlay_figure(
            data.images[i], maps.maps[i], boxes[i], title=title,
            suptitle=f"{ids[i]} | run {run.name} | {method}", demo=demo)
        written.append(str(overlays.save_figure(fig, folder / f"{ids[i]}.png")))
    cells = confusion_cells(data.labels, maps.probs, ids, run.threshold, n_grid)
    names = {"tp": "true positives", "fp": "false positives", "fn": "false negatives",
             "tn": "true negatives"}
    for cell, cidx in cells.items():
        out[f"grid_{cell}"].unlink(missing_ok=True)
        if n_grid == 0:
            continue
        fig = overlays.cam_grid_figure(
            data.images[cidx], maps.maps[cidx], [boxes[i] for i in cidx],
            [f"{ids[i][:13]} p={maps.probs[i]:.2f}" for i in cidx],
            f"run {run.name}, {method}: most confident {names[cell]} "
            f"(threshold {run.threshold:.3f})", demo=demo)
        overlays.save_figure(fig, out[f"grid_{cell}"])
    return written


def _fmt(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.6f}"


def _write_localization_csv(path: Path, ids: Sequence[str], pos_idx: np.ndarray, probs: np.ndarray,
                            threshold: float, per_image: Sequence[Mapping], raw: np.ndarray,
                            preds: Sequence, boxes: Sequence) -> None:
    from .detection import rsna_image_score

    with atomic_write(path, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(LOCALIZATION_CSV_COLUMNS)
        for j, (i, row) in enumerate(zip(pos_idx, per_image, strict=True)):
            py, px = overlays.peak_yx(raw[j])
            writer.writerow([ids[i], 1, f"{probs[i]:.6f}", int(probs[i] >= threshold),
                             int(bool(row["pointing_game"])), _fmt(row["mass_in_boxes"]),
                             _fmt(row["iou"]), len(boxes[i]), len(preds[i]),
                             _fmt(rsna_image_score(preds[i], boxes[i])), px, py])


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
    from .cam import randomization_sanity_check
    from .detection import rsna_metric
    from .localization import localization_report

    _validate(config)
    run = load_run(config.weights, config.device, config.data_dir)
    data_dir = _data_folder(config.data_dir, run)
    stats = read_stats(data_dir)
    source = stats.get("source") if isinstance(stats.get("source"), dict) else run.data_source
    identity = check_run_data(run.config, data_dir, run.weights)
    demo = source.get("kind") == "demo" or run.demo
    manifest = read_manifest(data_dir)
    out = output_paths(run.name, config.limit)

    train = manifest[manifest["split"] == "train"]
    all_train_boxes = _boxes(train)
    train_boxes = [b for b, keep in zip(all_train_boxes,
                                        _positives(train["label"], all_train_boxes), strict=True)
                   if keep]
    if not train_boxes:
        raise ProcessedDataError(f"{data_dir}: no positive training image with a box; the "
                                 "localization baselines are built from the training boxes.")

    # Validation first: both thresholds are chosen there; its maps go before the split's come.
    val = load_split(data_dir, "val", manifest, limit=config.limit)
    val_boxes = _boxes(val.manifest)
    val_pos = _positives(val.labels, val_boxes)
    val_maps = compute_split_maps(run, val.images, config.method, config.batch_size, val_pos)
    box_threshold, val_scores = choose_box_threshold(val_maps.maps, val_maps.probs, val_boxes,
                                                     run.threshold)
    val_loc_maps = val_maps.raw if val_pos.any() else None
    val_loc_boxes = [val_boxes[i] for i in np.flatnonzero(val_pos)] if val_pos.any() else None

    if config.split == "val" and not config.save_maps:
        data, boxes, pos, maps = val, val_boxes, val_pos, val_maps
    else:
        data = val if config.split == "val" else load_split(data_dir, config.split, manifest,
                                                             limit=config.limit)
        del val_maps
        boxes = _boxes(data.manifest)
        pos = _positives(data.labels, boxes)
        if config.save_maps:
            # Filled through a memory map at a temporary path, renamed when complete: an
            # interrupted run leaves the previous maps file (or none), never a zeroed one.
            with atomic_path(out["maps"]) as tmp:
                raw_out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                                    shape=(len(data), *data.images.shape[1:]))
                maps = compute_split_maps(run, data.images, config.method, config.batch_size,
                                          pos, raw_out)
                raw_out.flush()
                del raw_out
            write_frame_csv(out["maps_index"], pd.DataFrame(
                {"patientId": data.manifest["patientId"].astype(str), "label": data.labels,
                 "probability": maps.probs}), index=False)
        else:
            maps = compute_split_maps(run, data.images, config.method, config.batch_size, pos)
    ids = data.manifest["patientId"].astype(str).tolist()
    if data.images.shape[1] != run.size:
        warn(f"{data_dir} holds {data.images.shape[1]} px images but {run.name} was trained on "
             f"{run.size} px.")
    if not pos.any():
        raise ProcessedDataError(
            f"{data_dir}: the {config.split!r} split has no positive image with a box, so there is "
            "nothing to measure the maps against. Use a larger split (or drop --limit).")

    pos_idx = np.flatnonzero(pos)
    pos_boxes = [boxes[i] for i in pos_idx]
    report = localization_report(maps.raw, pos_boxes, train_boxes, val_maps=val_loc_maps,
                                 val_boxes=val_loc_boxes, n_boot=config.n_boot, seed=config.seed,
                                 ids=[ids[i] for i in pos_idx])
    per_image = report.pop("per_image")

    # Weakly supervised detection on the whole split (negatives included: false boxes count).
    preds = detect_boxes(maps.maps, maps.probs, box_threshold, run.threshold)
    detection: dict[str, Any] = {
        "rsna_metric": float(rsna_metric(preds, boxes)),
        "box_threshold": box_threshold,
        "box_threshold_chosen_on": "val",
        "val_rsna_metric_by_box_threshold": val_scores,
        "gated_by_operating_threshold": run.threshold,
        "n_images": len(data),
    }
    _write_localization_csv(out["localization_csv"], ids, pos_idx, maps.probs, run.threshold,
                            per_image, maps.raw, preds, boxes)

    # The sanity check on the split's first positives (then negatives), a small fixed set.
    sanity_idx = np.concatenate([pos_idx, np.flatnonzero(~pos)])[:config.sanity_images]
    sanity = randomization_sanity_check(
        run.model, normalize_images(data.images[sanity_idx], run.mean, run.std),
        method=config.method, seed=config.seed, batch_size=config.batch_size)

    folder = _test_images_folder(source)
    if not config.submission:
        submission: dict[str, Any] = {"skipped": "disabled (submission=False)"}
    elif folder is None:
        submission = {"skipped": f"no {rsna.TEST_IMAGES_DIR}/ in the data source folder "
                                 f"({source.get('path')})"}
        print(f"note: {submission['skipped']}; no Kaggle submission written.")
    else:
        submission = write_submission(run, folder, config.method, config.batch_size,
                                      box_threshold, out["submission"])
    detection["submission"] = submission

    chosen = select_examples(data.labels, maps.probs, ids, config.n)
    hits = {int(i): bool(row["pointing_game"]) for i, row in zip(pos_idx, per_image, strict=True)}
    written = _draw(run, data, maps, chosen, boxes, hits, config.method, out, config.n_grid, demo)

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
        "n_split_images": len(data),
        "n_positive_without_boxes": int(((data.labels == 1) & ~pos).sum()),
        "classification": {
            "roc_auc": safe_roc_auc(data.labels, maps.probs),
            "operating_threshold": run.threshold,
            "threshold_source": run.threshold_source,
            "at_operating_threshold": threshold_metrics(data.labels, maps.probs, run.threshold),
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
    write_json_atomic(out["localization_json"], result)
    result = json.loads(out["localization_json"].read_text())
    result["outputs"] = {k: str(v) for k, v in out.items()
                         if (k not in ("maps", "maps_index") or config.save_maps)
                         and (k != "submission" or "path" in submission)
                         and (not k.startswith("grid_") or v.is_file())}
    return result


# --------------------------------------------------------------------------- comparison


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


def _metric(entry: Mapping[str, Any] | None) -> tuple[float, float, float]:
    """(value, lo, hi) of a ``{"value", "ci95"}`` entry; nan where missing."""
    if not isinstance(entry, Mapping):
        return math.nan, math.nan, math.nan
    ci = entry.get("ci95") or [math.nan, math.nan]

    def num(v: Any) -> float:
        return float(v) if isinstance(v, (int, float)) and v is not None else math.nan

    return num(entry.get("value")), num(ci[0]), num(ci[1])


BASELINE_LABELS = {"fixed_point": "fixed point", "mean_box_prior": "mean-box prior",
                   "uniform_random": "uniform random"}


def comparison_rows(reports: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per run, then one per baseline (from the first run: baselines see no image).

    Each row: ``name``, ``baseline`` (bool), and per metric ``<m>``, ``<m>_lo``, ``<m>_hi``;
    runs add ``rsna_metric``, ``roc_auc``, ``sanity_passed``, ``sanity_mean_abs_rho``,
    ``n_images``, ``method``, ``split``, ``data_source``.
    """
    rows: list[dict[str, Any]] = []
    for run, rep in reports.items():
        row: dict[str, Any] = {"name": run, "baseline": False}
        for m in LOCALIZATION_METRICS:
            row[m], row[f"{m}_lo"], row[f"{m}_hi"] = _metric(rep.get(m))
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
        for m in LOCALIZATION_METRICS:
            row[m], row[f"{m}_lo"], row[f"{m}_hi"] = _metric(base.get(m))
        rows.append(row)
    return rows


def comparison_table(reports: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """:func:`comparison_rows` as a DataFrame (runs first, then baselines)."""
    return pd.DataFrame(comparison_rows(reports))


def _relation(a: tuple[float, float, float], b: tuple[float, float, float]) -> str:
    """``above`` / ``below`` when a's 95% CI lies wholly above / below b's, else ``overlap``."""
    if any(math.isnan(v) for v in (*a, *b)):
        return "undefined"
    if a[1] > b[2]:
        return "above"
    if a[2] < b[1]:
        return "below"
    return "overlap"


def _fmt_ci(v: tuple[float, float, float]) -> str:
    return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"


def _is_demo(rep: Mapping[str, Any]) -> bool:
    return bool(rep.get("synthetic_demo")) or (rep.get("data_source") or {}).get("kind") == "demo"


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
    pretty = {"pointing_game": "pointing game", "mass_in_boxes": "mass in boxes", "iou": "IoU"}
    for run, rep in reports.items():
        det = (rep.get("detection") or {}).get("rsna_metric", math.nan)
        det = float(det) if det is not None else math.nan
        lines.append(
            f"{run} ({rep.get('method')}, {rep.get('split')} split, {rep.get('n_images')} positive "
            f"images): " + "; ".join(f"{pretty[m]} {_fmt_ci(_metric(rep.get(m)))}"
                                     for m in LOCALIZATION_METRICS)
            + f"; RSNA metric of the CAM-derived boxes {det:.4f}.")
    runs = list(reports)
    if len(runs) >= 2:
        for m in LOCALIZATION_METRICS:
            values = {r: _metric(reports[r].get(m)) for r in runs}
            best = max(runs, key=lambda r: -math.inf if math.isnan(values[r][0]) else values[r][0])
            for other in runs:
                if other == best:
                    continue
                if values[best][0] == values[other][0]:
                    lines.append(f"On the {pretty[m]}, {best} and {other} tie "
                                 f"({values[best][0]:.3f}).")
                    continue
                rel = _relation(values[best], values[other])
                verdict = ("with non-overlapping 95% CIs: a clear difference" if rel == "above"
                           else "but the 95% CIs overlap, so the difference is not established"
                           if rel == "overlap" else "(intervals undefined)")
                lines.append(f"On the {pretty[m]}, {best} localises better than {other} "
                             f"({values[best][0]:.3f} vs {values[other][0]:.3f}) {verdict}.")
    for run, rep in reports.items():
        beats, ties, loses = [], [], []
        for key, label in BASELINE_LABELS.items():
            base = (rep.get("baselines") or {}).get(key)
            if base is None:
                continue
            # A single point has no extent: its IoU is ~0 by construction, not a fair rival.
            for m in LOCALIZATION_METRICS if key != "fixed_point" else LOCALIZATION_METRICS[:2]:
                rel = _relation(_metric(rep.get(m)), _metric(base.get(m)))
                item = f"{label} ({pretty[m]})"
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
        rows, LOCALIZATION_METRICS, demo=demo,
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
    folder = _data_folder(data_dir, next(iter(loaded.values())))
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
    boxes = _boxes(rows) if len(rows) else []
    maps, probs = {}, {}
    for run, lr in loaded.items():
        res = compute_split_maps(lr, images, method, batch_size)
        maps[run], probs[run] = res.maps, res.probs
    demo = any(lr.demo for lr in loaded.values())
    fig = overlays.compare_maps_figure(
        images, maps, probs, boxes, chosen["patientId"].tolist(), demo=demo,
        title=f"{method} maps of {', '.join(runs)} on the same positive images")
    figure = overlays.save_figure(fig, paths.images_dir() / "cam" / f"{name}.png")
    return {"figure": figure, "patient_ids": chosen["patientId"].tolist(),
            "probs": {r: p.tolist() for r, p in probs.items()}, "maps": maps, "images": images}


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
    from .compare import train_command

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


def sanity_table(reports: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per run: the randomisation sanity check's numbers and verdict."""
    rows = []
    for run, rep in reports.items():
        s = rep.get("sanity_check") or {}
        rows.append({"run": run, "method": s.get("method"), "n_images": s.get("n_images"),
                     "mean_rho": s.get("mean_rho"), "mean_abs_rho": s.get("mean_abs_rho"),
                     "threshold": s.get("threshold"), "passed": s.get("passed")})
    return pd.DataFrame(rows)


def sanity_cascade(weights: str | Path, data_dir: str | Path | None = None, split: str = "test",
                   n_images: int = 16, method: str = "cam", device: str = "auto", seed: int = 0,
                   batch_size: int = 64) -> pd.DataFrame:
    """Cascading randomisation (Adebayo et al., 2018): ``fc`` first, then ``layer4`` ... ``conv1``.

    Uses the first ``n_images`` positives of ``split`` (with boxes). One row per step:
    ``randomized`` (stages re-initialised so far, top down), ``mean_rho``, ``median_rho``,
    ``mean_abs_rho`` of the raw maps against the trained model's. Maps that stay correlated
    while the weights under them are destroyed reflect the input, not what the model learned.
    """
    from .cam import randomization_sanity_check

    run = load_run(weights, device, data_dir)
    folder = _data_folder(data_dir, run)
    check_run_data(run.config, folder, run.weights)
    manifest = read_manifest(folder)
    rows = manifest[manifest["split"] == split]
    rows = rows[_positives(rows["label"], _boxes(rows))].head(max(1, int(n_images)))
    if rows.empty:
        raise ProcessedDataError(f"{folder}: no positive image with a box in the {split!r} split.")
    images = load_arrays(folder, rows["array_file"])
    result = randomization_sanity_check(run.model, normalize_images(images, run.mean, run.std),
                                        method=method, seed=seed, cascading=True,
                                        batch_size=batch_size)
    table = pd.DataFrame(result["cascading"])
    table["randomized"] = ["+".join(r) for r in table["randomized"]]
    first = {"randomized": "(all, at once)", "mean_rho": result["mean_rho"],
             "median_rho": result["median_rho"], "mean_abs_rho": result["mean_abs_rho"]}
    return pd.concat([table, pd.DataFrame([first])], ignore_index=True)
