"""A trained run applied to new files: load it, preprocess like training, predict, draw the CAM.

:func:`load_run` is shared with :mod:`pneumocam.interpret`: it reads ``weights/<run>/best.pth``
(``weights_only``), the run's ``config.json`` (normalisation stats, data source) and the
operating threshold from ``metrics/<run>_eval.json`` (Youden's J on validation; 0.5 with a
warning when the evaluation is missing).

:func:`predict` takes DICOM files (any transfer syntax :func:`pneumocam.dicom.load_dicom_resized`
decodes) and PNG/JPEG images (:func:`pneumocam.dicom.load_image_file`), resizes them to the run's
image size, normalises them with the training mean/std, and for each file prints one line with
the probability, the decision and the overlay file, and writes ``<out_dir>/<stem>_cam.png``
(inputs that share a stem get distinct names, see :func:`overlay_names`). A file that cannot be
read, or whose logit is not finite, is reported on stderr and in the CSV; the others are still
processed. The output folder and the CSV path are checked before any work is done.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from torch import nn

from . import cli, overlays, paths
from .atomic import atomic_write
from .checkpoint import load_model_state, require_finite
from .data import prepare_batch
from .distributed import resolve_device
from .errors import ConfigError, DicomReadError, PneumocamError, ProcessedDataError
from .model import arch_from_config, build_model, load_state_dict_checked
from .processed import DataSource, check_run_data, read_stats, run_data_dir
from .provenance import provenance, write_json_atomic

DEFAULT_THRESHOLD = 0.5
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")  # everything else is tried as DICOM


def warn(message: str) -> None:
    """Print a warning line to stderr (visible in scripts and notebooks alike)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def normalize_images(images: np.ndarray, mean: float, std: float) -> torch.Tensor:
    """uint8 (N, H, W) 0..255 -> float32 tensor (N, 1, H, W), ``(x / 255 - mean) / std``.

    Training's own evaluation transform (:func:`pneumocam.data.prepare_batch` without augmentation),
    so predictions see exactly what the model saw.
    """
    return prepare_batch(torch.from_numpy(np.ascontiguousarray(images)), float(mean), float(std))


@dataclass
class LoadedRun:
    """A trained run ready to predict.

    Attributes:
        name: the run name (the weights' parent folder, e.g. ``balanced``).
        weights: the checkpoint file.
        model: the ResNet-18 in eval mode on ``device``, of the architecture in the run's
            ``config.json`` (:func:`pneumocam.model.arch_from_config`).
        device: where the model lives.
        mean, std: training normalisation on the [0, 1] scale.
        size: the side (pixels) of the square training images.
        threshold: the operating threshold on p(pneumonia) in [0, 1].
        threshold_source: where ``threshold`` came from (eval JSON, or the 0.5 fallback).
        data_source: ``{"kind": "demo" | "rsna" | "other" | "unknown", "path": ...}``.
        data_dir: the processed folder the run was trained on (None when unknown).
        config: the run's ``config.json`` (empty when absent).
    """

    name: str
    weights: Path
    model: nn.Module
    device: torch.device
    mean: float
    std: float
    size: int
    threshold: float
    threshold_source: str
    data_source: dict[str, Any]
    data_dir: Path | None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def demo(self) -> bool:
        """True when the run was trained on the synthetic demo dataset."""
        return DataSource.from_json(self.data_source).is_demo


def run_name(weights: str | Path) -> str:
    """The run name: the name of the folder holding the weights (``weights/<run>/best.pth``)."""
    return Path(weights).resolve().parent.name


def read_run_config(weights: str | Path) -> dict[str, Any]:
    """``config.json`` beside the weights, or {} (with a warning) when absent or unreadable."""
    path = Path(weights).parent / "config.json"
    if not path.is_file():
        warn(f"{path} not found; falling back to the processed data's stats.json.")
        return {}
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError) as exc:
        warn(f"{path} is not readable JSON ({exc}); falling back to the processed data's stats.json.")
        return {}
    return config if isinstance(config, dict) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def operating_threshold(run: str, weights: str | Path | None = None) -> tuple[float, str]:
    """The run's operating threshold from ``metrics/<run>_eval.json`` and where it came from.

    Falls back to 0.5 (with a warning on stderr) when the file or its ``operating_threshold``
    is missing or not a number in [0, 1]. The threshold was tuned on validation for the run's
    ``best.pth``: when ``weights`` is another file (``last.pth``, a copy under another name), a
    warning says so and the returned source records it.
    """
    if not paths.RUN_NAME_PATTERN.fullmatch(run):  # weights outside weights/<run>/
        warn(f"the weights' folder name {run!r} is not a run name, so metrics/ holds no "
             f"operating threshold for it; using {DEFAULT_THRESHOLD}.")
        return DEFAULT_THRESHOLD, f"default {DEFAULT_THRESHOLD} (no run named {run!r})"
    path = paths.run_files(run)["eval"]
    try:
        value = _number(json.loads(path.read_text()).get("operating_threshold"))
    except (OSError, json.JSONDecodeError, AttributeError):
        value = None
    if value is not None and 0.0 <= value <= 1.0:
        if weights is not None and Path(weights).name != "best.pth":
            warn(f"the threshold {overlays.format_probability(value)} from {path} was tuned on "
                 f"validation for the run's best.pth, not for {weights}; its decisions may be "
                 "off. Use weights/<run>/best.pth for the tuned operating point.")
            return value, f"{path} (tuned for best.pth, applied to {Path(weights).name})"
        return value, str(path)
    warn(f"no operating_threshold in {path}; using {DEFAULT_THRESHOLD}. Evaluate the run first "
         "(the training scripts write it) to use the validation-tuned threshold.")
    return DEFAULT_THRESHOLD, f"default {DEFAULT_THRESHOLD} ({path} missing or without it)"


def resolve_normalisation(config: dict[str, Any], data_dir: Path | None
                          ) -> tuple[float, float, int, dict[str, Any], Path | None]:
    """(mean, std, size, data_source, processed folder) for a run.

    The run's ``config.json`` ``stats`` win (they are what training used); the processed
    folder's ``stats.json`` fills what is missing. ``data_dir`` (explicit) beats the config's
    ``data_dir``, which beats ``data/Processed``.

    Raises:
        ConfigError: neither source gives a mean and a std.
    """
    run_stats = config.get("stats") if isinstance(config.get("stats"), dict) else {}
    folder = data_dir or run_data_dir(config) or paths.processed_dir()
    try:
        folder_stats = read_stats(folder)
    except ProcessedDataError:
        folder_stats = {}
    mean = _number(run_stats.get("mean"))
    std = _number(run_stats.get("std"))
    if mean is None or std is None:
        mean, std = _number(folder_stats.get("mean")), _number(folder_stats.get("std"))
    if mean is None or std is None or std <= 0:
        raise ConfigError(
            f"no normalisation statistics: the run's config.json has no 'stats' with mean/std and "
            f"{Path(folder) / 'stats.json'} is missing or invalid. Pass --data-dir with the "
            "processed folder the run was trained on."
        )
    size = _number(run_stats.get("size")) or _number(config.get("image_size")) \
        or _number(folder_stats.get("size")) or 224
    source = config.get("data_source") or run_stats.get("source") or folder_stats.get("source")
    if not isinstance(source, dict):
        source = DataSource().to_json()  # kind "unknown"
    return mean, std, int(size), source, Path(folder) if folder_stats else None


def load_run(weights: str | Path, device: str = "auto", data_dir: str | Path | None = None
             ) -> LoadedRun:
    """Load ``weights`` (``weights_only``) into a fresh ResNet-18 with the run's settings.

    Args:
        weights: ``weights/<run>/best.pth`` (a state_dict) or ``last.pth``.
        device: ``auto`` | ``cpu`` | ``cuda``.
        data_dir: processed folder to read ``stats.json`` from when the config lacks stats.

    Raises:
        CheckpointError: missing, empty, truncated, untrusted (pickled code), mismatched or
            non-finite (NaN/inf: a diverged run) weights.
        ConfigError: no normalisation statistics, an unknown ``arch`` in ``config.json``, or
            ``cuda`` requested without a GPU.
    """
    weights = Path(weights)
    state = load_model_state(weights)  # CheckpointError before anything else is read
    require_finite(state, weights)  # NaN weights would give p = nan for every image
    torch_device = resolve_device(device)
    name = run_name(weights)
    config = read_run_config(weights)
    mean, std, size, source, folder = resolve_normalisation(
        config, Path(data_dir) if data_dir else None)
    if folder is not None:  # the stats (and later the images) must be the run's own data
        check_run_data(config, folder, weights)
    # the architecture the run was trained with (a config without it: resnet18)
    arch = arch_from_config(config, str(weights.parent / "config.json"))
    model = build_model(pretrained=False, arch=arch)
    load_state_dict_checked(model, state, str(weights))
    model.to(torch_device).eval()
    threshold, threshold_source = operating_threshold(name, weights)
    return LoadedRun(name=name, weights=weights, model=model, device=torch_device, mean=mean,
                     std=std, size=size, threshold=threshold, threshold_source=threshold_source,
                     data_source=source, data_dir=folder, config=config)


def read_radiograph(path: str | Path, size: int):
    """A file as a :class:`pneumocam.dicom.Radiograph` of ``size`` x ``size`` uint8 pixels.

    PNG/JPEG (by suffix) go through ``load_image_file``; anything else is read as DICOM.

    Raises:
        DicomReadError: the file is missing, a folder, a symlink loop, not a regular file, or not
            a readable image.
    """
    from . import dicom  # imported here: only prediction and the test-set submission need it

    path = Path(path)
    problem = paths.not_a_file_reason(path)
    if problem:
        raise DicomReadError(path, problem)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return dicom.load_image_file(path, size)
    return dicom.load_dicom_resized(path, size)


@dataclass
class FileBatch:
    """One batch of input files, read: the radiographs made and why the other files failed.

    Attributes:
        indices: positions, in the whole input list, of the files read, in order.
        radiographs: their :class:`pneumocam.dicom.Radiograph` (``image`` uint8 size x size).
        failed: ``(position, error)`` of each file that could not be read: a
            :class:`~pneumocam.errors.PneumocamError` (``DicomReadError`` names the file and
            the reason) or the ``OSError`` raised while reading it.
    """

    indices: list[int] = field(default_factory=list)
    radiographs: list[Any] = field(default_factory=list)
    failed: list[tuple[int, Exception]] = field(default_factory=list)

    @property
    def images(self) -> np.ndarray:
        """uint8 (n, size, size): the radiographs' pixels, stacked."""
        return np.stack([r.image for r in self.radiographs])


def read_batches(files: Sequence[str | Path], size: int, batch_size: int,
                 read: Callable[[Path, int], Any] = read_radiograph) -> Iterator[FileBatch]:
    """``files`` read ``batch_size`` at a time into ``size`` x ``size`` radiographs.

    A file that cannot be read is recorded in its batch's ``failed`` and skipped, so one bad
    file never stops the others (a batch may have no radiograph at all).

    Args:
        read: ``(path, size) -> Radiograph``; :func:`read_radiograph` (DICOM or PNG/JPEG) by
            default.
    """
    for start in range(0, len(files), batch_size):
        batch = FileBatch()
        for i in range(start, min(start + batch_size, len(files))):
            try:
                radiograph = read(Path(files[i]), size)
            except (PneumocamError, OSError) as exc:
                batch.failed.append((i, exc))
                continue
            batch.indices.append(i)
            batch.radiographs.append(radiograph)
        yield batch


def read_error_message(file: str | Path, error: Exception) -> str:
    """One line for a file :func:`read_batches` could not read: ``<file>: <reason>``."""
    if isinstance(error, OSError):  # e.g. permission denied on the file itself
        return f"{file}: cannot be read ({error.strerror or error})"
    return str(error)


@dataclass
class PredictConfig:
    """Settings of ``scripts/predict.py``.

    Attributes:
        weights: ``weights/<run>/best.pth``.
        files: DICOM / PNG / JPEG files to classify.
        out_dir: where ``<stem>_cam.png`` overlays go (default ``images/predictions``).
        method: CAM method (one of :data:`pneumocam.cam.METHODS`).
        device: ``auto`` | ``cpu`` | ``cuda``.
        csv: optional CSV path for the results table.
        batch_size: files per forward pass.
        data_dir: processed folder whose ``stats.json`` is used if the run's config lacks stats.
    """

    weights: Path
    files: list[Path]
    out_dir: Path | None = None
    method: str = "cam"
    device: str = "auto"
    csv: Path | None = None
    batch_size: int = 16
    data_dir: Path | None = None


@dataclass
class FilePrediction:
    """One file's result: ``prob`` in [0, 1] and ``positive`` at the threshold, or ``error``."""

    file: str
    prob: float | None = None
    positive: bool | None = None
    overlay: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def format_prediction(result: FilePrediction, threshold: float) -> str:
    """``<file>: p(pneumonia) = 0.8312 -> PNEUMONIA (threshold 0.42); overlay <path>``.

    Probabilities and thresholds keep 4 significant digits, so a tiny threshold such as
    ``3.2e-05`` stays readable (see :func:`pneumocam.overlays.format_probability`).
    """
    decision = "PNEUMONIA" if result.positive else "no pneumonia"
    line = (f"{result.file}: p(pneumonia) = {overlays.format_probability(result.prob)} -> "
            f"{decision} (threshold {overlays.format_probability(threshold)})")
    return f"{line}; overlay {result.overlay}" if result.overlay else line


def overlay_names(files: list[Path]) -> list[str]:
    """One distinct overlay file name per input, deterministic for a given list of inputs.

    ``<stem>_cam.png`` when no other input has that stem; otherwise the parent folder's name and
    the suffix are added (``p2/IM-0001.dcm`` -> ``p2_IM-0001_dcm_cam.png``), and a counter
    (``_2``, ``_3``...) in input order when even that repeats (the same file given twice).
    """
    files = [Path(f) for f in files]
    plain = [f"{f.stem}_cam.png" for f in files]
    counts = Counter(plain)
    names = [name for name in plain if counts[name] == 1]  # kept as they are, reserved first
    used = set(names)
    out: list[str] = []
    for f, name in zip(files, plain, strict=True):
        if counts[name] > 1:
            parent = Path(os.path.abspath(f)).parent.name  # "p2" even for a relative path
            base = "_".join(p for p in (parent, f.stem, f.suffix.lstrip(".")) if p)
            name, k = f"{base}_cam.png", 2
            while name in used:  # never a name given to another input of this call
                name, k = f"{base}_{k}_cam.png", k + 1
            used.add(name)
        out.append(name)
    return out


def _probe_folder(folder: Path, flag: str) -> None:
    """Create ``folder`` if need be and prove a file can be written in it
    (:func:`pneumocam.paths.writable_folder_problem`).

    Raises:
        ConfigError: naming ``flag``, the folder and the fix, when it (or a parent) is a file or
            a broken symlink, cannot be created, or is not writable (permissions, read-only
            file system).
    """
    problem = paths.writable_folder_problem(folder)
    if problem is None:
        return
    if problem.kind == "unwritable":
        raise ConfigError(f"{flag} {folder}: cannot write there ({problem.reason}); choose a "
                          "writable folder or fix its permissions.")
    fix = "fix the link" if problem.kind == "broken_symlink" else "move the file away"
    raise ConfigError(f"{flag} {folder}: {problem.reason}; choose another path or {fix}.")


def check_outputs(out_dir: Path, csv_path: Path | None) -> None:
    """Check, before any work, that the overlays and the CSV can be written.

    ``out_dir`` is created when missing; ``csv_path`` must not be a folder and its folder must
    be writable (an existing CSV is replaced).

    Raises:
        ConfigError: the first problem found, naming the flag, the path and the fix.
    """
    _probe_folder(out_dir, "--out-dir")
    if csv_path is None:
        return
    if csv_path.is_dir():
        raise ConfigError(f"--csv {csv_path}: is a folder; give a file name, e.g. "
                          f"--csv {csv_path / 'predictions.csv'}.")
    _probe_folder(csv_path.parent, "--csv")


def predict(config: PredictConfig, out: TextIO | None = None, err: TextIO | None = None
            ) -> list[FilePrediction]:
    """Classify each file, print one line per file, write its CAM overlay.

    Lines go to ``out`` (default stdout); unreadable files and non-finite logits are reported on
    ``err`` (default stderr) and in the results, and do not stop the others. Writes one overlay
    per readable file (named by :func:`overlay_names`: distinct within a call; an overlay of the
    same name from an earlier call is replaced), ``<out_dir>/predict_config.json`` (config, run,
    threshold, provenance, results) and, when ``config.csv`` is set, a CSV with ``file,
    probability, decision, threshold, overlay, error``. Every file is written atomically.

    Returns:
        One :class:`FilePrediction` per input file, in input order.

    Raises:
        ConfigError: a bad setting (method, batch size) or an output path that cannot be
            written (checked before the run is loaded, so nothing is processed).
        CheckpointError: the run itself cannot be loaded (nothing is processed).
    """
    from .cam import METHODS, compute_cams

    out = out or sys.stdout
    err = err or sys.stderr
    cli.check_choice("method", config.method, METHODS)
    step = int(config.batch_size)
    if step < 1:
        raise ConfigError(f"--batch-size {config.batch_size}: must be at least 1.")
    out_dir = Path(config.out_dir) if config.out_dir else paths.images_dir() / "predictions"
    check_outputs(out_dir, Path(config.csv) if config.csv else None)
    run = load_run(config.weights, config.device, config.data_dir)
    results = [FilePrediction(file=str(f)) for f in config.files]
    names = overlay_names([Path(f) for f in config.files])
    note = "model trained on synthetic demo data: not a diagnosis" if run.demo else None
    if note:
        print(f"warning: {config.weights} was trained on the SYNTHETIC DEMO dataset; its "
              "probabilities say nothing about pneumonia on real radiographs.", file=err)

    def fail(result: FilePrediction, message: str) -> None:
        result.error = message
        print(f"error: {message}", file=err, flush=True)

    for batch in read_batches([r.file for r in results], run.size, step):
        for i, error in batch.failed:
            fail(results[i], read_error_message(results[i].file, error))
        if not batch.indices:
            continue
        images = batch.images
        cams = compute_cams(run.model, normalize_images(images, run.mean, run.std),
                            method=config.method, batch_size=step)
        good = [(results[j], names[j]) for j in batch.indices]
        for i, (result, name) in enumerate(good):
            logit = float(cams.logits[i])
            if not math.isfinite(logit):
                fail(result, f"{result.file}: the model's logit is {logit} (not finite), so there "
                             "is no probability; check the weights (a diverged run: retrain with "
                             "a lower --lr) or the image.")
                continue
            result.prob = float(cams.probs[i])
            result.positive = result.prob >= run.threshold
            fig = overlays.cam_overlay_figure(
                images[i], np.asarray(cams.normalized[i]),
                title=overlays.overlay_title(None, result.prob, None, run.threshold),
                suptitle=f"{Path(result.file).name} | run {run.name} | {config.method}",
                low_map=np.asarray(cams.low[i]),
            )
            if note:
                overlays.add_demo_note(fig, note)
            try:
                result.overlay = str(overlays.save_figure(fig, out_dir / name))
            except OSError as exc:  # e.g. the disk filled up: record it, keep going
                print(format_prediction(result, run.threshold), file=out, flush=True)
                fail(result, f"{out_dir / name}: overlay not written ({exc.strerror or exc}).")
                continue
            print(format_prediction(result, run.threshold), file=out, flush=True)
    rows = [{"file": r.file, "probability": r.prob,
             "decision": None if r.positive is None else ("pneumonia" if r.positive else "no pneumonia"),
             "threshold": run.threshold, "overlay": r.overlay, "error": r.error} for r in results]
    if config.csv:
        with atomic_write(Path(config.csv), newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["file"])
            writer.writeheader()
            writer.writerows(rows)
    write_json_atomic(out_dir / "predict_config.json", {
        "config": config, "run": run.name, "threshold": run.threshold,
        "threshold_source": run.threshold_source, "data_source": run.data_source,
        "normalisation": {"mean": run.mean, "std": run.std, "size": run.size},
        "results": rows, "provenance": provenance(),
    })
    return results
