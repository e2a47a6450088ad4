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
from .errors import ConfigError, DataSourceError, DicomReadError, ProcessedDataError
from .metrics import safe_roc_auc, threshold_metrics
from .predict import LoadedRun, load_run, normalize_images, warn
from .processed import SPLITS, SplitArrays, load_split, read_manifest, read_stats
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
                original = geo.boxes_to_original([box for _, box in pred])
                pred = [(conf, box) for (conf, _), box in zip(pred, original, strict=True)]
            rows.append((pid, prediction_string(pred)))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["patientId", "PredictionString"])
        writer.writerows(sorted(rows))
    return {"path": str(out_path), "n_images": len(items), "n_failed": len(failed),
            "failed": failed[:20]}


def _test_images_folder(source: Mapping[str, Any]) -> Path | None:
    raw = source.get("path") if isinstance(source, Mapping) else None
    if not raw:
        return None
    root = Path(str(raw))
    root = root if root.is_absolute() else paths.repo_root() / root
    folder = root / rsna.TEST_IMAGES_DIR
    return folder if folder.is_dir() else None


# --------------------------------------------------------------------------- the stage


def _check_source(run: LoadedRun, data_source: Mapping[str, Any], data_dir: Path) -> None:
    """Refuse to mix a demo-trained run with real data (and the other way round)."""
    trained, here = run.data_source.get("kind"), data_source.get("kind")
    known = ("demo", "rsna", "other")
    if trained in known and here in known and trained != here:
        raise DataSourceError(
            f"{run.weights} was trained on {trained!r} data but {data_dir} holds {here!r} data; "
            "interpreting it there would mix data sources. Pass --data-dir with the processed "
            "folder the run was trained on, or retrain on this one."
        )


def _boxes(manifest: pd.DataFrame) -> list[list[list[float]]]:
    return [[list(map(float, b)) for b in boxes] for boxes in manifest["boxes"]]


def _load(data_dir: Path, split: str, manifest: pd.DataFrame, limit: int | None) -> SplitArrays:
    return load_split(data_dir, split, manifest, limit=limit)


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


def _outputs(run: str) -> dict[str, Path]:
    m = paths.metrics_dir()
    return {
        "localization_json": m / f"{run}_localization.json",
        "localization_csv": m / f"{run}_localization.csv",
        "maps": m / f"{run}_maps.npy",
        "maps_index": m / f"{run}_maps_index.csv",
        "submission": m / f"{run}_submission.csv",
        "overlays_dir": paths.cam_images_dir(run),
        **{f"grid_{c}": paths.images_dir() / "cam" / f"{run}_grid_{c}.png" for c in GRID_CELLS},
    }


def _draw(run: LoadedRun, data: SplitArrays, maps: SplitMaps, idx: np.ndarray, boxes: list,
          method: str, out: dict[str, Path], n_grid: int, demo: bool) -> list[str]:
    """Single-image overlays for ``idx`` and the four confusion-matrix grids."""
    ids = data.manifest["patientId"].astype(str).tolist()
    folder = out["overlays_dir"]
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):  # a previous run's choice must not linger beside this one
        old.unlink()
    written = []
    for i in idx:
        hit = overlays.peak_in_boxes(maps.maps[i], boxes[i])
        fig = overlays.cam_overlay_figure(
            data.images[i], maps.maps[i], boxes[i],
            title=overlays.overlay_title(int(data.labels[i]), float(maps.probs[i]), hit),
            suptitle=f"{ids[i]} | run {run.name} | {method}", demo=demo)
        written.append(str(overlays.save_figure(fig, folder / f"{ids[i]}.png")))
    cells = confusion_cells(data.labels, maps.probs, ids, run.threshold, n_grid)
    names = {"tp": "true positives", "fp": "false positives", "fn": "false negatives",
             "tn": "true negatives"}
    for cell, cidx in cells.items():
        fig = overlays.cam_grid_figure(
            data.images[cidx], maps.maps[cidx], [boxes[i] for i in cidx],
            [f"{ids[i][:12]} p={maps.probs[i]:.2f}" for i in cidx],
            f"run {run.name}, {method}: most confident {names[cell]} "
            f"(threshold {run.threshold:.3f})", demo=demo)
        overlays.save_figure(fig, out[f"grid_{cell}"])
    return written


def interpret(config: InterpretConfig) -> dict[str, Any]:
    """Run the whole interpretation stage for one run (see the module docstring).

    Returns:
        The localization JSON's content (also written to ``metrics/<run>_localization.json``)
        with an added ``"outputs"`` mapping of output names to paths.

    Raises:
        CheckpointError: missing, truncated or untrusted weights.
        ConfigError: bad settings. ProcessedDataError: missing data or no positive images.
        DataSourceError: the run was trained on another data source than ``data_dir`` holds.
    """
    from .cam import randomization_sanity_check
    from .detection import rsna_image_score, rsna_metric
    from .localization import localization_report, mass_in_boxes, pointing_game, thresholded_iou

    _validate(config)
    run = load_run(config.weights, config.device, config.data_dir)
    data_dir = Path(config.data_dir) if config.data_dir else (run.data_dir or paths.processed_dir())
    stats = read_stats(data_dir)
    source = stats.get("source") if isinstance(stats.get("source"), dict) else run.data_source
    _check_source(run, source, data_dir)
    demo = source.get("kind") == "demo" or run.demo
    manifest = read_manifest(data_dir)
    out = _outputs(run.name)

    train_rows = manifest[(manifest["split"] == "train") & (manifest["label"] == 1)]
    train_boxes = [b for b in _boxes(train_rows) if b]

    # Validation first: thresholds come from there; its maps are dropped before the split's.
    val = _load(data_dir, "val", manifest, config.limit)
    val_maps = compute_split_maps(run, val.images, config.method, config.batch_size)
    val_boxes = _boxes(val.manifest)
    val_pos = np.flatnonzero(val.labels == 1)
    box_threshold, val_scores = choose_box_threshold(val_maps.maps, val_maps.probs, val_boxes,
                                                     run.threshold)
    val_loc_maps = val_maps.maps[val_pos] if len(val_pos) else None
    val_loc_boxes = [val_boxes[i] for i in val_pos] if len(val_pos) else None
    if config.split == "val":
        data, maps = val, val_maps
    else:
        del val_maps
        data = _load(data_dir, config.split, manifest, config.limit)
    ids = data.manifest["patientId"].astype(str).tolist()
    size = data.images.shape[1:]
    if size[0] != run.size:
        warn(f"{data_dir} holds {size[0]} px images but {run.name} was trained on {run.size} px.")

    raw_out = None
    if config.save_maps:
        out["maps"].parent.mkdir(parents=True, exist_ok=True)
        raw_out = np.lib.format.open_memmap(out["maps"], mode="w+", dtype=np.float32,
                                            shape=(len(data), *size))
    if config.split != "val" or raw_out is not None:
        maps = compute_split_maps(run, data.images, config.method, config.batch_size, raw_out)
    if raw_out is not None:
        raw_out.flush()
        del raw_out
        pd.DataFrame({"patientId": ids, "label": data.labels, "probability": maps.probs}).to_csv(
            out["maps_index"], index=False)

    boxes = _boxes(data.manifest)
    pos = np.flatnonzero(data.labels == 1)
    if len(pos) == 0:
        raise ProcessedDataError(
            f"{data_dir}: the {config.split!r} split has no positive images, so there are no boxes "
            "to measure the maps against. Use a larger split (or drop --limit).")
    pos_maps, pos_boxes = maps.maps[pos], [boxes[i] for i in pos]
    report = localization_report(pos_maps, pos_boxes, train_boxes, val_maps=val_loc_maps,
                                 val_boxes=val_loc_boxes, threshold=None,
                                 n_boot=config.n_boot, seed=config.seed)
    report = {k: v for k, v in report.items() if k != "per_image"}

    # Weakly supervised detection on the whole split (negatives included: false boxes count).
    preds = detect_boxes(maps.maps, maps.probs, box_threshold, run.threshold)
    detection = {
        "rsna_metric": float(rsna_metric(preds, boxes)),
        "box_threshold": box_threshold,
        "box_threshold_chosen_on": "val",
        "val_rsna_metric_by_threshold": val_scores,
        "gated_by_operating_threshold": run.threshold,
        "n_images": len(data),
    }

    hits = pointing_game(pos_maps, pos_boxes)
    mass = mass_in_boxes(pos_maps, pos_boxes)
    ious = thresholded_iou(pos_maps, pos_boxes, report["iou_threshold"])
    out["localization_csv"].parent.mkdir(parents=True, exist_ok=True)
    with out["localization_csv"].open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(LOCALIZATION_CSV_COLUMNS)
        for j, i in enumerate(pos):
            py, px = overlays.peak_yx(maps.maps[i])
            writer.writerow([ids[i], int(data.labels[i]), f"{maps.probs[i]:.6f}",
                             int(maps.probs[i] >= run.threshold), int(bool(hits[j])),
                             f"{float(mass[j]):.6f}", f"{float(ious[j]):.6f}", len(boxes[i]),
                             len(preds[i]), _fmt(rsna_image_score(preds[i], boxes[i])), px, py])

    chosen = select_examples(data.labels, maps.probs, ids, config.n)
    sanity_idx = np.concatenate([pos, np.flatnonzero(data.labels != 1)])[:config.sanity_images]
    sanity = randomization_sanity_check(
        run.model, normalize_images(data.images[sanity_idx], run.mean, run.std),
        method=config.method, seed=config.seed)

    submission: dict[str, Any]
    folder = _test_images_folder(source)
    if not config.submission:
        submission = {"skipped": "disabled (submission=False)"}
    elif folder is None:
        submission = {"skipped": f"no {rsna.TEST_IMAGES_DIR}/ in the data source folder "
                                 f"({source.get('path')})"}
        print(f"note: {submission['skipped']}; no Kaggle submission written.")
    else:
        submission = write_submission(run, folder, config.method, config.batch_size,
                                      box_threshold, out["submission"])
    detection["submission"] = submission

    written = _draw(run, data, maps, chosen, boxes, config.method, out, config.n_grid, demo)

    result: dict[str, Any] = {
        "run": run.name,
        "weights": str(run.weights),
        "method": config.method,
        "split": config.split,
        "data_dir": str(data_dir),
        "data_source": source,
        "synthetic_demo": demo,
        **report,
        "n_split_images": len(data),
        "n_split_positive": len(pos),
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
    write_json_atomic(out["localization_json"], result)
    result = json.loads(out["localization_json"].read_text())
    result["outputs"] = {k: str(v) for k, v in out.items()
                         if k not in ("maps", "maps_index") or config.save_maps}
    if "path" not in submission:
        result["outputs"].pop("submission")
    return result


def _fmt(value: float) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.6f}"
