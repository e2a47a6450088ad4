"""What a training run keeps on disk to be resumed exactly, and the checks on resuming.

``weights/<run>/last.pth`` holds the model, optimiser and scheduler states, the epoch, the
best AUC so far, the per-epoch history, every RNG state and the settings that decide the
trajectory (:data:`RESUME_KEYS`); ``metrics/<run>.csv`` holds one row per finished epoch.
A resumed run must find a checkpoint of this format whose settings match its own, and it
rewrites the CSV from the checkpoint's history (dropping epochs the checkpoint never saw).
"""

from __future__ import annotations

import contextlib
import csv
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import atomic_write
from .checkpoint import load_checkpoint
from .errors import CheckpointError

__all__ = [
    "CHECKPOINT_FORMAT", "CSV_COLUMNS", "RESUME_KEYS", "check_resume_settings",
    "existing_run_files", "load_resume_checkpoint", "resume_checkpoint", "rng_state",
    "set_rng_state", "write_history_csv",
]

CSV_COLUMNS = (
    "epoch", "train_loss", "val_loss", "val_auc", "val_ap", "val_accuracy", "val_sensitivity",
    "val_specificity", "val_precision", "val_f1", "lr", "epoch_seconds", "images_per_second",
)
CHECKPOINT_FORMAT = "pneumocam-train-v1"

# Settings that decide the trajectory: a resumed run must use the same ones.
RESUME_KEYS = ("sampler", "epochs", "batch_size", "lr", "weight_decay", "schedule", "seed",
               "limit", "pos_weight", "world_size", "image_size", "n_train", "data_mean",
               "data_std", "data_kind", "pretrained", "arch")
#: What a checkpoint written before a setting existed used (its settings block lacks the key).
RESUME_DEFAULTS = {"arch": "resnet18"}


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch and CUDA RNG states as tensors and plain types
    (loadable with ``weights_only=True``)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, pystate, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": list(pystate), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError, IndexError):
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def resume_checkpoint(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                      scheduler: torch.optim.lr_scheduler.LRScheduler, *, epoch: int,
                      best_auc: float, best_epoch: int, history: list[dict[str, Any]],
                      settings: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """What ``last.pth`` holds after ``epoch`` (1-based), in plain types and tensors only
    (loadable with ``weights_only=True``): the model, optimiser and scheduler states, the best
    validation ROC AUC so far and its epoch, the metrics rows of every finished epoch, every RNG
    state (taken now), the run's settings (``TrainSettings.to_json()``) and its arguments."""
    return {
        "format": CHECKPOINT_FORMAT, "model": model.state_dict(),
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "epoch": epoch, "best_auc": best_auc, "best_epoch": best_epoch,
        "history": history, "rng": rng_state(), "settings": settings, "config": config,
    }


def existing_run_files(files: dict[str, Path]) -> list[Path]:
    """Outputs of an earlier run under this name. A lone config.json (a run that died before
    its first checkpoint) holds nothing to lose and does not count."""
    roles = ("best", "last", "csv", "pred_val", "pred_test", "eval")
    found = [files[r] for r in roles if files[r].exists()]
    return found + [files["config"]] if found and files["config"].exists() else found


def write_history_csv(path: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite the metrics CSV from ``history`` atomically: after every epoch (so a kill never
    leaves a partial line) and on resume (dropping rows of epochs the checkpoint never reached)."""
    with atomic_write(path, newline="", fsync=True) as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in history:
            writer.writerow({k: _csv_value(row[k]) for k in CSV_COLUMNS})


def _csv_value(v: Any) -> Any:
    return repr(float(v)) if isinstance(v, float) else v


def load_resume_checkpoint(files: dict[str, Path]) -> dict[str, Any]:
    """``files["last"]`` (``weights_only=True``), checked to be a training checkpoint of this
    project with every part a resume needs.

    Raises:
        CheckpointError: no such file, or not a checkpoint of :data:`CHECKPOINT_FORMAT`.
    """
    if not files["last"].is_file():
        raise CheckpointError(
            f"{files['last']}: not found, so there is nothing to resume (the run never finished "
            "an epoch, or --run-name is wrong). Run without --resume to start it.")
    ckpt = load_checkpoint(files["last"])
    required = ("model", "optimizer", "scheduler", "epoch", "best_auc", "best_epoch", "history",
                "rng", "settings")
    if (not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT
            or any(k not in ckpt for k in required)):
        raise CheckpointError(
            f"{files['last']}: not a training checkpoint of this project (no "
            f"format={CHECKPOINT_FORMAT!r}). Start a new run with --overwrite.")
    return ckpt


def check_resume_settings(saved: dict[str, Any], now: dict[str, Any], path: Path) -> None:
    """Refuse to resume when any of :data:`RESUME_KEYS` differs between checkpoint and now.

    Raises:
        CheckpointError: naming every differing setting, and the ways out.
    """
    saved = {**RESUME_DEFAULTS, **saved}
    diffs = [f"{k}: checkpoint {saved.get(k)!r}, now {now.get(k)!r}"
             for k in RESUME_KEYS if saved.get(k) != now.get(k)]
    if diffs:
        raise CheckpointError(
            f"{path} does not match this run's settings/data ({'; '.join(diffs)}). Resume with "
            "the settings in its config.json and the same data, or start afresh with --overwrite "
            "(or another --run-name).")
