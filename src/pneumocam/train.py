"""The trainer shared by the original and the balanced run (they differ only in ``sampler``).

``train(TrainConfig(...)) -> TrainResult`` trains a 1-channel ResNet-18 on ``data/Processed``,
writes one row per epoch to ``metrics/<run>.csv``, keeps ``weights/<run>/{best,last}.pth`` and
``config.json``, then evaluates the best epoch's model (chosen by validation ROC AUC) on the
validation and test splits: ``metrics/<run>_predictions_{val,test}.csv`` and
:func:`pneumocam.evaluation.evaluate_run` (``metrics/<run>_eval.json``, ``images/<run>/``).

``metrics/<run>.csv`` columns (one row per epoch, appended and flushed as the epoch ends):
``epoch``; ``train_loss`` (mean BCE over the epoch's training draws, with the configured
pos_weight); ``val_loss`` (same criterion) and ``val_auc``, ``val_ap``, ``val_accuracy``,
``val_sensitivity``, ``val_specificity``, ``val_precision``, ``val_f1`` (threshold 0.5) of the
model at the end of that epoch on the whole validation split; ``lr`` (mean learning rate of the
epoch's optimisation steps); ``epoch_seconds`` (wall time of the epoch, validation included);
``images_per_second`` (training images / training time).

Speed: on CUDA the training split sits on the GPU as uint8 and sampling, augmentation and
normalisation run there in batches (bf16 autocast, channels_last, cudnn.benchmark, fused AdamW,
the loss summed on the device and read once per epoch); on CPU a ``DataLoader`` feeds the same
epoch function. The final evaluation's probabilities (the prediction CSVs, the operating
threshold, ``_eval.json``) are float32 on every device (:func:`final_probabilities`), as
interpretation's are. Reproducibility: every random draw of epoch ``e`` comes from generators seeded
by ``(seed, e)``, so a run resumed from ``last.pth`` ends exactly where an uninterrupted one
would on CPU. Under ``torchrun`` the model is wrapped in DistributedDataParallel, the balanced
draw is split between ranks, validation predictions are gathered before metrics are computed,
and only rank 0 writes files. What a run keeps to be resumed, and the checks on resuming, are
in :mod:`pneumocam.run_state`.

Reading order: :func:`train` -> ``_train``, which calls one function per phase:
:func:`read_processed`, :func:`prepare_run_folder`, :func:`resolve_requested`,
:func:`load_data`, :meth:`TrainSettings.for_data` (the run's frozen settings, saved as
``config.json``'s ``settings``), :func:`build_model_and_optimizer`,
:func:`restore_from_checkpoint`, :func:`wrap_model`, then per epoch :func:`run_epoch`,
:func:`validate` and :func:`end_of_epoch`, and :func:`finish`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import nn

from . import cli, paths
from .atomic import write_frame_csv
from .checkpoint import save_checkpoint
from .data import (
    SAMPLERS,
    AugmentConfig,
    DeviceBatches,
    LoaderBatches,
    as_tensor,
    class_counts,
    epoch_seed,
    make_generator,
    prepare_batch,
)
from .distributed import (
    SINGLE_PROCESS,
    DistInfo,
    gather_predictions,
    resolve_device,
    setup_distributed,
)
from .distributed import barrier as _barrier
from .errors import (
    CheckpointError,
    ConfigError,
    PneumocamError,
    ProcessedDataError,
    TrainingDivergedError,
)
from .metrics import Estimate, safe_average_precision, safe_roc_auc, threshold_metrics
from .model import (
    ARCHS,
    CAM_LAYER,
    DEFAULT_ARCH,
    build_model,
    check_arch,
    load_state_dict_checked,
)
from .processed import (
    RUN_DATA_DIR_KEY,
    RUN_DATA_IDENTITY_KEY,
    SPLITS,
    DataIdentity,
    DataSource,
    SplitArrays,
    data_identity,
    load_split,
    read_manifest,
    read_stats,
    record_path,
)
from .provenance import provenance, to_jsonable, write_json_atomic
from .run_state import (
    check_resume_settings,
    existing_run_files,
    load_resume_checkpoint,
    resume_checkpoint,
    set_rng_state,
    write_history_csv,
)

TIMING_COLUMNS = ("epoch_seconds", "images_per_second")
PREDICTION_COLUMNS = ("patientId", "label", "prob", "view_position", "class")
SCHEDULES = ("cosine", "onecycle", "constant")

# Defaults; None in TrainConfig means "this default" (or, with --resume, the checkpoint's value).
FULL_EPOCHS = 20           # real RSNA data
DEMO_EPOCHS = 6            # the 1600-image demo on a GPU (seconds)
DEMO_CPU_EPOCHS = 2        # the demo on a CPU: the main job within 10 minutes on 2 AVX2 cores
DEFAULT_LR = 1e-3
DEFAULT_WEIGHT_DECAY = 1e-4
CPU_BATCH = 32
GPU_BATCH = 256
WARMUP_FRACTION = 0.05     # of all steps, linear warm-up before the cosine decay



@dataclass
class TrainConfig:
    """Settings of one training run. ``None`` means the default (picked from the data: short on
    the demo, full-length on real data), or with ``resume`` the interrupted run's own value.

    Attributes:
        run_name: names ``weights/<run>/``, ``metrics/<run>*.csv|json``, ``images/<run>/``.
        sampler: ``"balanced"`` (WeightedRandomSampler, weight 1/class count) or
            ``"original"`` (plain shuffling): the only difference between the two runs.
        data_dir: processed folder (default ``data/Processed``).
        epochs, batch_size (per process), lr, weight_decay: optimisation (AdamW).
        schedule: ``"cosine"`` (linear warm-up over 5% of the steps, then cosine to 0),
            ``"onecycle"`` or ``"constant"``; stepped every batch.
        seed: seeds the model's initialisation and every per-epoch draw.
        device: ``"auto"`` (CUDA when available) | ``"cpu"`` | ``"cuda"``.
        workers: DataLoader workers on the CPU path (default 0: the arrays are in memory).
        resume: continue from ``weights/<run>/last.pth``. overwrite: replace an existing run.
        pretrained: start from ImageNet weights (download needed). compile: ``torch.compile``.
        arch: ``"resnet18"`` (7x7 CAM at 224 px) or ``"resnet18-os16"`` (layer4 dilated,
            14x14 CAM); see :data:`pneumocam.model.ARCHS`.
        limit: use only the first ``limit`` training images (class-stratified), for smoke runs.
        pos_weight: BCE positive-class weight: ``"auto"`` (n_neg/n_pos of the training images),
            a number, or ``"none"``.
        n_boot: bootstrap resamples of the final evaluation.
        channels_last: NHWC memory format (default on: faster on CPU and GPU).
        progress: tqdm progress bars (rank 0 only).
    """

    run_name: str = "balanced"
    sampler: str = "balanced"
    data_dir: Path | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    seed: int | None = None
    device: str = "auto"
    workers: int | None = None
    resume: bool = False
    overwrite: bool = False
    pretrained: bool | None = None
    arch: str | None = None
    compile: bool = False
    limit: int | None = None
    pos_weight: str | float | None = None
    n_boot: int = 1000
    channels_last: bool = True
    progress: bool = True


@dataclass
class EpochStats:
    """What one call of :func:`train_one_epoch` did."""

    loss_sum: float
    n_images: int
    steps: int
    seconds: float
    lr_mean: float

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.n_images, 1)


@dataclass
class TrainResult:
    """The outcome of :func:`train` (on ranks other than 0: no predictions or evaluation)."""

    run: str
    settings: dict[str, Any]  # TrainSettings.to_json(): config.json's "settings" block
    history: list[dict[str, float]]
    best_epoch: int
    best_val_auc: float
    weights_dir: Path
    metrics_csv: Path
    predictions: dict[str, Path] = field(default_factory=dict)
    evaluation: dict[str, Any] | None = None


@dataclass
class StepContext:
    """Everything one optimisation step needs; built once per run (see :func:`train`)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loss_fn: nn.Module
    mean: float
    std: float
    device: torch.device
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    channels_last: bool = True
    amp_dtype: torch.dtype | None = None  # bf16 on CUDA, None (fp32) on CPU


# --------------------------------------------------------------------------- devices, seeds

def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def _backend_settings(device: torch.device, deterministic: bool):
    """Deterministic kernels on CPU; cudnn autotuning and TF32 on CUDA; restored afterwards."""
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32)
    try:
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
        elif deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark = saved[2]
        torch.backends.cuda.matmul.allow_tf32 = saved[3]


def _set_cpu_threads(info: DistInfo) -> None:
    """Share the cores between local processes, unless OMP_NUM_THREADS already decides."""
    if "OMP_NUM_THREADS" in os.environ:
        return
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(info.world)))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, local_world)))


# --------------------------------------------------------------------------- settings

def _parse_pos_weight(value: str | float | None) -> str | float | None:
    if value is None or isinstance(value, (int, float)):
        return None if value is None else float(value)
    text = str(value).strip().lower()
    if text in ("none", "off", ""):
        return None
    if text == "auto":
        return "auto"
    try:
        number = float(text)
    except ValueError as exc:
        raise ConfigError(f"--pos-weight {value!r}: expected 'auto', 'none' or a number") from exc
    if not (number > 0 and math.isfinite(number)):
        raise ConfigError(f"--pos-weight {value!r}: must be a finite number above 0")
    return number


def validate_config(config: TrainConfig) -> None:
    """Refuse every bad setting before any work starts (data preparation, training).

    ``None`` fields are defaults and pass; the checks on values picked from the data or a
    resumed checkpoint follow in :func:`resolve_requested`.

    Raises:
        ConfigError: naming the flag, the value and what it must be.
    """
    paths.check_run_name(config.run_name)
    if config.sampler not in SAMPLERS:
        raise ConfigError(f"sampler {config.sampler!r}: expected one of {SAMPLERS}")
    if config.schedule is not None and config.schedule not in SCHEDULES:
        raise ConfigError(f"--schedule {config.schedule!r}: expected one of {SCHEDULES}")
    if config.arch is not None:
        check_arch(config.arch)
    if config.resume and config.overwrite:
        raise ConfigError("--resume and --overwrite contradict each other; pass one.")
    minimum = {"epochs": 1, "batch_size": 1, "n_boot": 1, "limit": 2, "workers": 0, "seed": 0}
    for name, low in minimum.items():
        value = getattr(config, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            hint = " (one image of each class)" if name == "limit" else ""
            raise ConfigError(f"--{name.replace('_', '-')} {value!r}: expected an integer of at "
                              f"least {low}{hint}.")
    for name, strictly_positive in (("lr", True), ("weight_decay", False)):
        value = getattr(config, name)
        if value is None:
            continue
        ok = isinstance(value, (int, float)) and math.isfinite(value) and (
            value > 0 if strictly_positive else value >= 0)
        if not ok:
            raise ConfigError(f"--{name.replace('_', '-')} {value!r}: expected a finite number "
                              f"{'above' if strictly_positive else 'of at least'} 0.")
    _parse_pos_weight(config.pos_weight)


@dataclass(frozen=True)
class RequestedSettings:
    """What the flags, the checkpoint being resumed and the defaults decide, before any data is
    loaded (:func:`resolve_requested`). :class:`TrainSettings` adds what the data decides.

    Attributes:
        run_name: names ``weights/<run>/``, ``metrics/<run>*``, ``images/<run>/``.
        sampler: ``"balanced"`` (weight 1/class count) or ``"original"`` (plain shuffling):
            the only difference between the two runs.
        epochs: passes over the training draws, >= 1. Default 20 on real data (the validation
            AUC levels off by then), 6 on the demo (the whole demo runs in minutes on a CPU).
        batch_size: images per optimisation step per process as asked, >= 1. Default 32 on the
            demo and on a CPU (enough steps per epoch on a small split), 256 on CUDA (fills a
            GPU). The batch used can be smaller: :attr:`TrainSettings.effective_batch_size`.
        lr: peak AdamW learning rate, finite and > 0 (default 1e-3, AdamW's usual value).
        weight_decay: AdamW decoupled weight decay, finite and >= 0 (default 1e-4).
        schedule: ``"cosine"`` (default: linear warm-up over 5% of the steps, then cosine to 0),
            ``"onecycle"`` or ``"constant"``; stepped every batch.
        seed: integer >= 0 (default 0); seeds the initialisation and every per-epoch draw.
        pretrained: start from ImageNet weights (default False: random initialisation, as in
            the original study, and no download).
        arch: one of :data:`pneumocam.model.ARCHS` (default ``"resnet18"``, output stride 32;
            ``"resnet18-os16"``: layer4 dilated, output stride 16, a 14x14 CAM at 224 px).
            Every later stage builds the model from this value in ``config.json``.
        limit: train on only this many images (class-stratified, manifest order), >= 2;
            None (default) = the whole training split.
        pos_weight_setting: ``--pos-weight`` as asked: ``"auto"`` (n_neg/n_pos of the training
            images), a number > 0, or None (default: unweighted BCE). Kept as asked so that a
            resumed run derives ``"auto"`` again; the value used is
            :attr:`TrainSettings.pos_weight`.
        device: the torch device trained on (``"cpu"``, ``"cuda:0"``, ...).
        world_size: processes training together, >= 1 (1 without torchrun).
        compile: the model goes through ``torch.compile`` (default off: slow to start).
        channels_last: NHWC memory format (default on: faster on CPU and GPU).
        n_boot: bootstrap resamples of the final evaluation, >= 1 (default 1000).
        data_kind: stats.json's source kind (``demo`` | ``rsna`` | ``other``), which picks the
            defaults above.
    """

    run_name: str
    sampler: str
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    schedule: str
    seed: int
    pretrained: bool
    arch: str
    limit: int | None
    pos_weight_setting: str | float | None
    device: str
    world_size: int
    compile: bool
    channels_last: bool
    n_boot: int
    data_kind: str


@dataclass(frozen=True)
class TrainSettings(RequestedSettings):
    """Every resolved setting of one run: :class:`RequestedSettings` plus what the data decides
    (:meth:`for_data`). Saved as the ``settings`` block of ``config.json`` and ``last.pth``
    (:meth:`to_json`); a resumed run reads its checkpoint's back (:meth:`from_json`).

    Attributes:
        pos_weight: the BCE positive-class weight used, > 0 (``"auto"`` resolved to
            n_neg/n_pos of the training images), or None for unweighted BCE.
        image_size: side of the square uint8 arrays, in pixels (224 by default).
        n_train, n_val: images in the training split used (after ``limit``) and in validation.
        train_counts: ``{"0": negatives, "1": positives}`` of the training images used.
        data_dir: the processed folder, as given.
        data_mean, data_std: the training split's pixel mean/std on [0, 1] (stats.json), used to
            normalise every image, in training and in prediction alike.
        data_source: stats.json's ``source`` block (kind, labels hash, path, ...), as read.
        data_identity: which data this is (kind, labels hash, split fingerprint): what a
            resume, the evaluation and later stages compare.
        effective_batch_size: the batch used per process: ``batch_size``, or fewer when the
            training split has fewer images per process (so an epoch has at least one step).
    """

    pos_weight: float | None
    image_size: int
    n_train: int
    n_val: int
    train_counts: dict[str, int]
    data_dir: str
    data_mean: float
    data_std: float
    data_source: dict[str, Any] | None
    data_identity: DataIdentity
    effective_batch_size: int

    @classmethod
    def for_data(cls, requested: RequestedSettings, data: TrainData, world: int
                 ) -> TrainSettings:
        """``requested`` completed with what ``data`` decides (the ``--pos-weight auto`` value,
        sizes, counts, normalisation, identity, the batch that fits)."""
        n_neg, n_pos = class_counts(data.train.labels)
        pos_weight = requested.pos_weight_setting
        if pos_weight == "auto":
            pos_weight = n_neg / n_pos
        return cls(
            **{f.name: getattr(requested, f.name) for f in dataclasses.fields(RequestedSettings)},
            pos_weight=pos_weight,
            image_size=int(data.train.images.shape[-1]),
            n_train=len(data.train),
            n_val=len(data.val),
            train_counts={"0": n_neg, "1": n_pos},
            data_dir=str(data.processed),
            data_mean=float(data.stats["mean"]),
            data_std=float(data.stats["std"]),
            data_source=data.stats.get("source"),
            data_identity=data_identity(data.processed, data.stats),
            effective_batch_size=min(requested.batch_size,
                                     math.ceil(len(data.train) / world)),
        )

    def to_json(self) -> dict[str, Any]:
        """The ``settings`` block of ``config.json`` and ``last.pth``: plain values, keys in
        :data:`SETTINGS_KEYS` order (``pos_weight`` is the value used, ``pos_weight_setting``
        the one asked for)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["train_counts"] = dict(self.train_counts)
        values["data_identity"] = self.data_identity.to_dict()
        return {key: values[key] for key in SETTINGS_KEYS}

    @classmethod
    def from_json(cls, block: Mapping[str, Any]) -> TrainSettings:
        """Inverse of :meth:`to_json`. A block written before runs recorded their data
        identity reads as an unknown identity (every field None); one written before runs
        recorded their architecture reads as ``resnet18``.

        Raises:
            KeyError: a setting is missing from ``block``.
        """
        block = {"arch": DEFAULT_ARCH, **block}
        missing = [k for k in SETTINGS_KEYS if k not in block and k != "data_identity"]
        if missing:
            raise KeyError(f"no {', '.join(missing)} in the settings")
        values = {key: block[key] for key in SETTINGS_KEYS if key != "data_identity"}
        return cls(**values, data_identity=DataIdentity.from_dict(block.get("data_identity")))


#: The keys of :meth:`TrainSettings.to_json`, in the order config.json and last.pth have them.
SETTINGS_KEYS = (
    "run_name", "sampler", "epochs", "batch_size", "lr", "weight_decay", "schedule", "seed",
    "pretrained", "arch", "limit", "pos_weight", "device", "world_size", "compile",
    "channels_last", "n_boot", "data_kind", "pos_weight_setting", "image_size", "n_train", "n_val",
    "train_counts", "data_dir", "data_mean", "data_std", "data_source", "data_identity",
    "effective_batch_size",
)


def resolve_requested(config: TrainConfig, stats: dict[str, Any], device: torch.device,
                      info: DistInfo, previous: TrainSettings | None = None
                      ) -> tuple[RequestedSettings, list[str]]:
    """Fill every unset (None) field of ``config``: from ``previous`` (the checkpoint's, on
    resume), else from defaults that depend on the data source and the device.

    Returns:
        ``(requested, notes)``: the settings, and one line per default picked, saying why.

    Raises:
        ConfigError: a value taken from the checkpoint that is out of range.
    """
    source = DataSource.from_json(stats.get("source"))
    kind = source.kind if source.known else "other"
    notes: list[str] = []

    def pick(name: str, default: Any, why: str) -> Any:
        value = getattr(config, name)
        if value is not None:
            return value
        if previous is not None:
            notes.append(f"{name}={getattr(previous, name)!r} (from the checkpoint being resumed)")
            return getattr(previous, name)
        notes.append(f"{name}={default!r} ({why})")
        return default

    # Short on the demo (shortest on a CPU), full length on real data; the batch is small
    # where the data is.
    on_gpu = device.type == "cuda"
    if source.is_demo and not on_gpu:
        epochs_default, why = DEMO_CPU_EPOCHS, (
            "stats.json source kind is 'demo' and the device is a CPU: a schedule short enough "
            "for the main job to finish within 10 minutes on a 2-core CPU without AVX-512")
    elif source.is_demo:
        epochs_default, why = DEMO_EPOCHS, ("stats.json source kind is 'demo' on a GPU: a short "
                                            "schedule, the demo runs in seconds")
    else:
        epochs_default, why = FULL_EPOCHS, f"stats.json source kind is {kind!r}: full-length training"
    batch_default = CPU_BATCH if source.is_demo or not on_gpu else GPU_BATCH
    batch_why = ("small demo dataset: enough steps per epoch" if source.is_demo
                 else f"default per-process batch on {device.type}")
    requested = RequestedSettings(
        run_name=config.run_name,
        sampler=config.sampler,
        epochs=int(pick("epochs", epochs_default, why)),
        batch_size=int(pick("batch_size", batch_default, batch_why)),
        lr=float(pick("lr", DEFAULT_LR, "AdamW default")),
        weight_decay=float(pick("weight_decay", DEFAULT_WEIGHT_DECAY, "AdamW default")),
        schedule=str(pick("schedule", "cosine", "warm-up then cosine decay")),
        seed=int(pick("seed", 0, "default seed")),
        pretrained=bool(pick("pretrained", False, "random init, as in the original study")),
        arch=str(pick("arch", DEFAULT_ARCH, "torchvision's ResNet-18, output stride 32")),
        limit=config.limit if config.limit is not None or previous is None else previous.limit,
        pos_weight_setting=_parse_pos_weight(
            config.pos_weight if config.pos_weight is not None or previous is None
            else previous.pos_weight_setting),
        device=str(device),
        world_size=info.world,
        compile=bool(config.compile),
        channels_last=bool(config.channels_last),
        n_boot=int(config.n_boot),
        data_kind=kind,
    )

    # A checkpoint's values were never checked by validate_config.
    if config.sampler not in SAMPLERS:
        raise ConfigError(f"sampler {config.sampler!r}: expected one of {SAMPLERS}")
    if requested.schedule not in SCHEDULES:
        raise ConfigError(f"schedule {requested.schedule!r}: expected one of {SCHEDULES}")
    check_arch(requested.arch, "arch")
    for name in ("epochs", "batch_size"):
        if getattr(requested, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    if not requested.lr > 0:
        raise ConfigError("--lr must be positive")
    if requested.limit is not None and requested.limit < 2:
        raise ConfigError("--limit must be at least 2 (one image of each class)")
    if config.workers is not None and config.workers < 0:
        raise ConfigError("--workers must be 0 or more")
    return requested, notes


def lr_factor(step: int, total_steps: int, schedule: str) -> float:
    """Multiplier of the base learning rate at optimisation step ``step`` (0-based)."""
    if schedule == "constant":
        return 1.0
    warmup = max(1, int(round(WARMUP_FRACTION * total_steps)))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: nn.Module, lr: float, weight_decay: float,
                   device: torch.device) -> torch.optim.Optimizer:
    """AdamW; the fused CUDA kernel on GPUs (one launch for all parameters)."""
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay,
                             fused=device.type == "cuda")


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: str, lr: float,
                   total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step schedule: ``cosine``/``constant`` via LambdaLR, or OneCycleLR."""
    if schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr,
                                                   total_steps=max(2, total_steps))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, schedule))


# --------------------------------------------------------------------------- data checks

def check_processed_dir(processed: Path) -> None:
    """ProcessedDataError naming what to run when ``processed`` is missing or empty."""
    fix = ("Run `python scripts/preprocess.py` to build it from the RSNA DICOMs, or run "
           "`python scripts/train_balanced.py` without --data-dir, which prepares the demo data.")
    if not processed.is_dir():
        raise ProcessedDataError(f"{processed}: processed data folder not found. {fix}")
    if not any(processed.iterdir()):
        raise ProcessedDataError(f"{processed}: processed data folder is empty. {fix}")
    if not (processed / "stats.json").is_file() or not (processed / "manifest.csv").is_file():
        raise ProcessedDataError(f"{processed}: no stats.json/manifest.csv, so preprocessing did "
                                 f"not finish. {fix}")


def check_two_classes(manifest: pd.DataFrame, processed: Path) -> None:
    """Each split must hold both classes (ROC AUC and the balanced sampler need them)."""
    for split in SPLITS:
        labels = manifest.loc[manifest["split"] == split, "label"]
        if labels.empty:
            raise ProcessedDataError(f"{processed / 'manifest.csv'}: the {split!r} split is empty. "
                                     "Re-run `python scripts/preprocess.py --overwrite`.")
        present = sorted(set(labels.tolist()))
        if present != [0, 1]:
            raise ProcessedDataError(
                f"{processed / 'manifest.csv'}: the {split!r} split holds only class {present[0]} "
                f"({len(labels)} images); training and ROC AUC need positives and negatives in "
                "every split. Re-run `python scripts/preprocess.py --overwrite` on data with both "
                "classes (or a larger subset).")


def limited_rows(rows: pd.DataFrame, limit: int | None) -> pd.DataFrame:
    """The first ``limit`` rows keeping the class ratio (at least one of each class), in
    manifest order; all rows when ``limit`` is None or not smaller."""
    if limit is None or limit >= len(rows):
        return rows.reset_index(drop=True)
    pos = rows[rows["label"] == 1]
    neg = rows[rows["label"] == 0]
    n_pos = min(len(pos), max(1, int(round(limit * len(pos) / len(rows)))))
    n_neg = min(len(neg), limit - n_pos)
    keep = pd.concat([pos.iloc[:n_pos], neg.iloc[:n_neg]]).sort_index()
    return keep.reset_index(drop=True)


# --------------------------------------------------------------------------- epochs

def _diverged(epoch: int, lr: float, what: str) -> TrainingDivergedError:
    suggested = min(lr / 10, DEFAULT_LR)
    return TrainingDivergedError(
        f"training diverged in epoch {epoch}: {what}. Checkpoints of earlier epochs, if any, "
        f"are unchanged. Train again with a lower learning rate (e.g. --lr {suggested:.1e}; now "
        f"{lr:.1e}) and --overwrite.")


def check_finite_loss(loss_sum: float, epoch: int, lr: float) -> None:
    """Stop the run when an epoch's summed training loss is NaN or infinite.

    Raises:
        TrainingDivergedError: naming the epoch and a lower learning rate to try.
    """
    if not math.isfinite(loss_sum):
        raise _diverged(epoch, lr, f"the training loss is {loss_sum}")


def check_finite_logits(logits: torch.Tensor, epoch: int, lr: float) -> None:
    """Stop the run when a validation logit is NaN or infinite (the weights went bad).

    Raises:
        TrainingDivergedError: naming the epoch and a lower learning rate to try.
    """
    bad = int((~torch.isfinite(logits)).sum())
    if bad:
        raise _diverged(epoch, lr, f"{bad} of {logits.numel()} validation logits are NaN or "
                                   "infinite")


def train_one_epoch(ctx: StepContext, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                    generator: torch.Generator, max_steps: int | None = None,
                    progress: Any = None) -> EpochStats:
    """Optimise over ``batches`` (uint8 (B,H,W) images, float (B,) labels).

    Each step: to the device, [0,1] floats, random affine (``generator`` on ``ctx.device``),
    normalisation, forward (bf16 autocast on CUDA), BCE-with-logits, backward, AdamW step,
    scheduler step. The loss is summed on the device and read once at the end; on CUDA the
    timing includes a synchronize.

    Args:
        max_steps: stop after this many steps (benchmarks); None = the whole epoch.
        progress: an optional tqdm bar advanced once per step.
    """
    model, opt, sched = ctx.model, ctx.optimizer, ctx.scheduler
    model.train()
    loss_sum = torch.zeros((), dtype=torch.float32, device=ctx.device)
    n_images, steps, lr_sum = 0, 0, 0.0
    start = time.perf_counter()
    for images, labels in batches:
        if max_steps is not None and steps >= max_steps:
            break
        images = images.to(ctx.device, non_blocking=True)
        labels = labels.to(ctx.device, non_blocking=True)
        x = prepare_batch(images, ctx.mean, ctx.std, generator, ctx.augment, ctx.channels_last)
        with torch.autocast(ctx.device.type, dtype=ctx.amp_dtype or torch.float32,
                            enabled=ctx.amp_dtype is not None):
            logits = model(x).squeeze(1)
        loss = ctx.loss_fn(logits.float(), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        lr_sum += float(opt.param_groups[0]["lr"])  # python float: the lr this step uses
        opt.step()
        sched.step()
        loss_sum += loss.detach() * labels.shape[0]
        n_images += int(labels.shape[0])
        steps += 1
        if progress is not None:
            progress.update(1)
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    seconds = time.perf_counter() - start
    return EpochStats(loss_sum=float(loss_sum.item()), n_images=n_images, steps=steps,
                      seconds=seconds, lr_mean=lr_sum / max(steps, 1))


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, mean: float, std: float,
                   device: torch.device, batch_size: int = 256, channels_last: bool = True,
                   amp_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Logits of ``model`` in eval mode for uint8 (N, H, W) images (any device): float32 (N,)
    on ``device``. Images are only normalised (no augmentation). Restores the model's mode."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, images.shape[0], batch_size):
        batch = images[start:start + batch_size].to(device, non_blocking=True)
        x = prepare_batch(batch, mean, std, channels_last=channels_last)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                            enabled=amp_dtype is not None):
            out.append(model(x).squeeze(1).float())
    model.train(was_training)
    if not out:
        return torch.zeros(0, device=device)
    return torch.cat(out)


def training_amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype of training and per-epoch validation: bf16 on CUDA, None (float32)
    elsewhere. The final evaluation never uses it (:func:`final_probabilities`)."""
    return torch.bfloat16 if device.type == "cuda" else None


@contextlib.contextmanager
def exact_fp32():
    """Float32 convolutions and matmuls without TF32 on CUDA (10-bit inputs); restored after.
    Nothing changes on CPU, which has no TF32."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def final_probabilities(model: nn.Module, images: torch.Tensor | np.ndarray, mean: float,
                        std: float, device: torch.device, channels_last: bool = True
                        ) -> np.ndarray:
    """The probabilities a run publishes: float64 (N,) in [0, 1], ``sigmoid`` of float32
    logits computed in float32 on every device (no autocast, no TF32) for uint8 (N, H, W)
    images.

    Why not bf16: its 8 significant bits make many probabilities of a large split tie, which
    can move the Youden threshold chosen on them; and :mod:`pneumocam.interpret` recomputes
    the probabilities in float32 and applies that threshold, so both must come from float32
    for every image to get the same decision in both places.
    """
    with exact_fp32():
        logits = predict_logits(model, torch.as_tensor(images), mean, std, device,
                                batch_size=_eval_batch(device), channels_last=channels_last,
                                amp_dtype=None)
    return torch.sigmoid(logits).double().cpu().numpy()


def validation_row(labels: np.ndarray, logits: np.ndarray, loss_fn: nn.Module
                   ) -> dict[str, float]:
    """Validation loss, ROC AUC, AP and the threshold-0.5 metrics from gathered logits."""
    prob = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    loss = float(loss_fn(torch.tensor(logits, dtype=torch.float32),
                         torch.tensor(labels, dtype=torch.float32)).item())
    at_half = threshold_metrics(labels, prob, 0.5)
    return {
        "val_loss": loss,
        "val_auc": safe_roc_auc(labels, prob),
        "val_ap": safe_average_precision(labels, prob),
        "val_accuracy": at_half["accuracy"],
        "val_sensitivity": at_half["sensitivity"],
        "val_specificity": at_half["specificity"],
        "val_precision": at_half["precision"],
        "val_f1": at_half["f1"],
    }


# --------------------------------------------------------------------------- the run

def _print(info: DistInfo, *args: Any) -> None:
    if info.is_main:
        print(*args, flush=True)


def _make_progress(info: DistInfo, enabled: bool, total: int, desc: str) -> Any:
    if not (enabled and info.is_main):
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # progress bars are optional
        return None
    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)


def _eval_batch(device: torch.device) -> int:
    """Inference batch: large on a GPU, small on a CPU (activation memory, cache)."""
    return 512 if device.type == "cuda" else 64


def _fits_on_gpu(n_bytes: int, device: torch.device) -> bool:
    """Hold the split on the GPU when it takes at most a quarter of the free memory."""
    free, _ = torch.cuda.mem_get_info(device)
    return n_bytes <= free // 4


def make_batches(images: np.ndarray, labels: np.ndarray, batch_size: int, sampler: str,
                 seed: int, device: torch.device, info: DistInfo = SINGLE_PROCESS,
                 workers: int | None = None) -> DeviceBatches | LoaderBatches:
    """The training batch source: split resident on the GPU when it fits, else a DataLoader.

    Args:
        images: uint8 (N, H, W); labels: int (N,) 0/1.
    """
    if device.type == "cuda" and _fits_on_gpu(images.nbytes, device):
        return DeviceBatches(as_tensor(images).to(device), as_tensor(labels).to(device),
                             batch_size, sampler, seed, info.rank, info.world)
    return LoaderBatches(images, labels, batch_size, sampler, seed,
                         workers=0 if workers is None else workers,
                         pin_memory=device.type == "cuda", rank=info.rank, world=info.world)


def _prediction_frame(split_rows: pd.DataFrame, prob: np.ndarray) -> pd.DataFrame:
    df = pd.DataFrame({
        "patientId": split_rows["patientId"].astype(str).to_numpy(),
        "label": split_rows["label"].astype(int).to_numpy(),
        "prob": prob.astype(np.float64),
        "view_position": split_rows.get("view_position", pd.Series([""] * len(split_rows))),
        "class": split_rows.get("class", pd.Series([""] * len(split_rows))),
    })
    return df[list(PREDICTION_COLUMNS)]


@dataclass(frozen=True)
class TrainData:
    """The arrays one run trains and validates on (:func:`load_data`).

    Attributes:
        processed: the processed folder they come from.
        stats: its ``stats.json`` (train mean/std on [0, 1], source, counts).
        manifest: its whole ``manifest.csv`` (the test split is read from it at the end).
        train: the training split, limited to ``limit`` images: uint8 (N, H, W), labels 0/1.
        val: the whole validation split, same form.
    """

    processed: Path
    stats: dict[str, Any]
    manifest: pd.DataFrame
    train: SplitArrays
    val: SplitArrays


@dataclass
class Progress:
    """Where the epoch loop stands; ``last.pth`` keeps it so a resume carries on from it.

    Attributes:
        next_epoch: the first epoch still to run (1-based; ``epochs + 1`` when finished).
        best_auc: the best validation ROC AUC so far (-inf before the first epoch).
        best_epoch: the epoch that reached it (0 before the first epoch); ``best.pth``.
        history: one ``metrics/<run>.csv`` row per finished epoch.
    """

    next_epoch: int = 1
    best_auc: float = -math.inf
    best_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def train(config: TrainConfig,
          on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None) -> TrainResult:
    """Train, checkpoint every epoch, pick the best epoch by validation ROC AUC, evaluate it.

    Args:
        config: the run's settings (see :class:`TrainConfig`).
        on_epoch_end: called on every rank as ``on_epoch_end(epoch, row)`` after the epoch's
            row and checkpoints are written (used by tests and notebooks).

    Returns:
        :class:`TrainResult`; its ``evaluation`` is the dict of ``evaluate_run`` (rank 0).

    Raises:
        ProcessedDataError: missing/empty processed data or a one-class split.
        ConfigError: invalid settings, or an existing run without resume/overwrite.
        CheckpointError: a resume checkpoint that is missing, untrusted or does not fit.
    """
    validate_config(config)
    info = setup_distributed("cuda" if config.device == "cuda" or (
        config.device == "auto" and torch.cuda.is_available()) else "cpu")
    try:
        return _train(config, info, on_epoch_end)
    finally:
        if info.initialized_here and dist.is_initialized():
            dist.destroy_process_group()


def _train(config: TrainConfig, info: DistInfo,
           on_epoch_end: Callable[[int, dict[str, Any]], None] | None) -> TrainResult:
    """The run, phase by phase; each phase is a function below."""
    device = resolve_device(config.device, info)
    if device.type == "cpu":
        _set_cpu_threads(info)

    # The data must be there and usable before the run folder is touched.
    processed = Path(config.data_dir) if config.data_dir is not None else paths.processed_dir()
    stats, manifest = read_processed(processed)

    # Output folders writable, an earlier run refused, resumed or replaced: all before the
    # minutes of training.
    files, ckpt = prepare_run_folder(config, info)
    previous = checkpoint_settings(ckpt, files["last"])

    # Settings in two steps: what the flags and the checkpoint decide, then what the data does.
    requested, notes = resolve_requested(config, stats, device, info, previous)
    for line in notes:
        _print(info, f"[train] default {line}")
    data = load_data(processed, stats, manifest, requested.limit)
    settings = TrainSettings.for_data(requested, data, info.world)
    if settings.effective_batch_size != settings.batch_size:
        _print(info, f"[train] batch size {settings.batch_size} > images per process; "
                     f"using {settings.effective_batch_size}")
    if ckpt is not None:
        check_checkpoint_fits(ckpt, previous, settings, files["last"], processed)
    n_pos = settings.train_counts["1"]
    _print(info, f"[train] run {config.run_name!r}: sampler={config.sampler}, "
                 f"{settings.n_train} train ({n_pos} positive) / {settings.n_val} val images "
                 f"of {settings.image_size}x{settings.image_size} from {processed} "
                 f"(source: {settings.data_kind}), device {device}, world size {info.world}")

    with _backend_settings(device, deterministic=device.type == "cpu"):
        # Seeded first: the same seed gives the same initial weights and the same draws.
        # On resume the checkpoint then restores every RNG where the killed run left it.
        seed_everything(settings.seed)
        fresh = ckpt is None  # ImageNet weights only for a new run: a resume loads its own
        raw_model, batches, optimizer, scheduler = build_model_and_optimizer(
            settings, data, device, info, config.workers, pretrained=settings.pretrained and fresh)
        loss_fn, eval_loss_fn = make_loss_functions(settings.pos_weight, device)
        progress = (Progress() if fresh else
                    restore_from_checkpoint(ckpt, raw_model, optimizer, scheduler, files, info))

        # Wrapped after the restore: DDP and torch.compile hold the restored weights.
        model = wrap_model(raw_model, settings, device, info)
        ctx = StepContext(model=model, optimizer=optimizer, scheduler=scheduler, loss_fn=loss_fn,
                          mean=settings.data_mean, std=settings.data_std, device=device,
                          channels_last=settings.channels_last,
                          amp_dtype=training_amp_dtype(device))
        if info.is_main:
            _write_config(files, config, settings, stats, ckpt, notes)

        # Each epoch: optimise, score the whole validation split with the weights as they are
        # now, then record it (metrics row, CSV, checkpoints, one printed line). This scoring
        # may stay bf16 on CUDA: it only fills metrics/<run>.csv and ranks the epochs for
        # best.pth (bf16 ties move a validation AUC in its third digit at most, so at worst a
        # near-tied epoch is kept); every number the run publishes (predictions, threshold,
        # _eval.json) is recomputed in float32 by _final_evaluation.
        val_index, val_images = validation_shard(data.val, device, info)
        for epoch in range(progress.next_epoch, settings.epochs + 1):
            epoch_start = time.perf_counter()
            loss_sum, n_seen, epoch_stats = run_epoch(ctx, raw_model, batches, epoch, settings,
                                                      info, show_progress=config.progress)
            logits = validate(raw_model, val_images, val_index, epoch, settings, device, info,
                              ctx.amp_dtype)
            # The columns of metrics/<run>.csv (the module docstring says what each means).
            row: dict[str, Any] = {"epoch": epoch, "train_loss": loss_sum / max(n_seen, 1)}
            row.update(validation_row(data.val.labels, logits.cpu().numpy(), eval_loss_fn))
            row["lr"] = epoch_stats.lr_mean
            row["epoch_seconds"] = time.perf_counter() - epoch_start
            row["images_per_second"] = n_seen / max(epoch_stats.seconds, 1e-9)
            end_of_epoch(row, progress, raw_model, optimizer, scheduler, settings, config, files,
                         info)
            if on_epoch_end is not None:
                on_epoch_end(epoch, row)

        # The best epoch's weights, not the last, are evaluated on val and test (in float32).
        return finish(config, settings, progress, raw_model, data, files, device, info)


def read_processed(processed: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """``stats.json`` and ``manifest.csv`` of ``processed``, checked to hold both classes in
    every split.

    Raises:
        ProcessedDataError: a missing or unfinished folder, or a split without both classes.
    """
    check_processed_dir(processed)
    stats = read_stats(processed)
    manifest = read_manifest(processed)
    check_two_classes(manifest, processed)
    return stats, manifest


def prepare_run_folder(config: TrainConfig, info: DistInfo
                       ) -> tuple[dict[str, Path], dict[str, Any] | None]:
    """Check the output folders, refuse to run over an earlier run unless asked, load the
    checkpoint to resume (``--resume``) or delete the earlier run's files (``--overwrite``).

    Returns:
        ``(files, ckpt)``: :func:`pneumocam.paths.run_files`, and ``last.pth``'s contents on
        resume (else None).

    Raises:
        ConfigError: the run exists and neither ``resume`` nor ``overwrite`` is set.
        CheckpointError: nothing (or no training checkpoint) to resume.
    """
    files = paths.run_files(config.run_name)
    if info.is_main:  # before minutes of training, not after
        for folder, what in ((files["weights_dir"], "weights folder"),
                             (files["csv"].parent, "metrics folder"),
                             (paths.run_images_dir(config.run_name), "figures folder")):
            paths.ensure_writable_dir(folder, what)
    existing = existing_run_files(files)
    if existing and not (config.resume or config.overwrite):
        raise ConfigError(
            f"run {config.run_name!r} already exists ({', '.join(str(p) for p in existing)}). "
            "Pass --resume to continue it, --overwrite to replace it, or choose another "
            "--run-name.")
    ckpt = load_resume_checkpoint(files) if config.resume else None
    _barrier(info)  # every rank has checked before rank 0 deletes anything
    if config.overwrite and existing and info.is_main:
        for path in existing:
            path.unlink()
    _barrier(info)
    return files, ckpt


def checkpoint_settings(ckpt: dict[str, Any] | None, path: Path) -> TrainSettings | None:
    """The settings a resumed checkpoint was trained with (None when not resuming).

    Raises:
        CheckpointError: its settings block lacks a setting.
    """
    if ckpt is None:
        return None
    try:
        return TrainSettings.from_json(ckpt["settings"])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: its settings are incomplete ({exc}). Start afresh with "
                              "--overwrite (or another --run-name).") from exc


def load_data(processed: Path, stats: dict[str, Any], manifest: pd.DataFrame,
              limit: int | None) -> TrainData:
    """The training images (the first ``limit``, class-stratified) and the validation images.

    Raises:
        ProcessedDataError: the training images used hold one class only.
    """
    train_rows = limited_rows(manifest[manifest["split"] == "train"], limit)
    train_split = load_split(processed, "train", manifest=train_rows)
    val_split = load_split(processed, "val", manifest=manifest)
    if len(set(train_split.labels.tolist())) < 2:
        raise ProcessedDataError(f"{processed}: the training images used (--limit "
                                 f"{limit}) hold one class only; raise --limit.")
    return TrainData(processed=processed, stats=stats, manifest=manifest, train=train_split,
                     val=val_split)


def check_checkpoint_fits(ckpt: dict[str, Any], previous: TrainSettings | None,
                          settings: TrainSettings, path: Path, processed: Path) -> None:
    """A resume continues only with the trajectory's settings and the same data.

    Raises:
        CheckpointError: naming every differing setting, or how the data differs.
    """
    check_resume_settings(ckpt["settings"], settings.to_json(), path)
    diffs = previous.data_identity.differences(settings.data_identity) if previous else []
    if diffs:
        raise CheckpointError(
            f"{path} was trained on other data than {processed} ({'; '.join(diffs)}). "
            "Resume with the processed folder in its config.json, or start afresh with "
            "--overwrite (or another --run-name).")


def build_model_and_optimizer(settings: TrainSettings, data: TrainData, device: torch.device,
                              info: DistInfo, workers: int | None, pretrained: bool
                              ) -> tuple[nn.Module, DeviceBatches | LoaderBatches,
                                         torch.optim.Optimizer,
                                         torch.optim.lr_scheduler.LRScheduler]:
    """The model on ``device``, the training batch source, AdamW and its per-step schedule.

    Called right after :func:`seed_everything`: the model's initialisation draws from the
    seeded global RNG, in this order.

    Raises:
        ConfigError: the training images make no full batch per process.
    """
    raw_model = build_model(pretrained=pretrained, arch=settings.arch)
    raw_model.to(device)
    if settings.channels_last:
        raw_model.to(memory_format=torch.channels_last)

    batch_size = settings.effective_batch_size
    batches = make_batches(data.train.images, data.train.labels, batch_size,
                           settings.sampler, settings.seed, device, info, workers)
    if len(batches) < 1:
        raise ConfigError(f"{len(data.train)} training images make no full batch of "
                          f"{batch_size} per process; lower --batch-size.")

    total_steps = len(batches) * settings.epochs
    optimizer = make_optimizer(raw_model, settings.lr, settings.weight_decay, device)
    scheduler = make_scheduler(optimizer, settings.schedule, settings.lr, total_steps)
    return raw_model, batches, optimizer, scheduler


def make_loss_functions(pos_weight: float | None, device: torch.device
                        ) -> tuple[nn.Module, nn.Module]:
    """BCE-with-logits for training (on ``device``) and for the validation loss (on the CPU,
    where the gathered logits are), both with the run's positive-class weight."""
    loss_fn = nn.BCEWithLogitsLoss(
        pos_weight=None if pos_weight is None else torch.tensor(float(pos_weight), device=device))
    eval_loss_fn = nn.BCEWithLogitsLoss(
        pos_weight=None if pos_weight is None else torch.tensor(float(pos_weight)))
    return loss_fn, eval_loss_fn


def restore_from_checkpoint(ckpt: dict[str, Any], raw_model: nn.Module,
                            optimizer: torch.optim.Optimizer,
                            scheduler: torch.optim.lr_scheduler.LRScheduler,
                            files: dict[str, Path], info: DistInfo) -> Progress:
    """Load the model, optimiser, scheduler and RNG states of ``last.pth``, and rewrite the
    metrics CSV from its history (dropping rows of epochs it never saw).

    Raises:
        CheckpointError: a state that does not fit this model or optimiser.
    """
    load_state_dict_checked(raw_model, ckpt["model"], str(files["last"]))
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{files['last']}: optimizer/scheduler state does not fit "
                              f"({exc}). Start afresh with --overwrite.") from exc
    progress = Progress(next_epoch=int(ckpt["epoch"]) + 1, best_auc=float(ckpt["best_auc"]),
                        best_epoch=int(ckpt["best_epoch"]),
                        history=[dict(r) for r in ckpt["history"]])
    set_rng_state(ckpt["rng"])
    if info.is_main:
        write_history_csv(files["csv"], progress.history)
    _print(info, f"[train] resumed from {files['last']} after epoch {ckpt['epoch']}")
    return progress


def wrap_model(raw_model: nn.Module, settings: TrainSettings, device: torch.device,
               info: DistInfo) -> nn.Module:
    """DistributedDataParallel under torchrun, then ``torch.compile`` when asked; the raw model
    stays the one that is saved, validated and evaluated."""
    model: nn.Module = raw_model
    if info.world > 1:
        model = nn.parallel.DistributedDataParallel(
            raw_model, device_ids=[device.index] if device.type == "cuda" else None)
    if settings.compile:
        model = torch.compile(model)
    return model


def validation_shard(val: SplitArrays, device: torch.device, info: DistInfo
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's validation images: rank r scores images r, r+world, ... (disjoint, no
    padding). Returns ``(index, images)``: int64 (M,) and uint8 (M, H, W), on the GPU when
    training there."""
    val_index = torch.arange(info.rank, len(val), info.world)
    val_images = torch.as_tensor(val.images)[val_index]
    if device.type == "cuda":
        val_images = val_images.to(device)
    return val_index, val_images


def run_epoch(ctx: StepContext, raw_model: nn.Module, batches: DeviceBatches | LoaderBatches,
              epoch: int, settings: TrainSettings, info: DistInfo, show_progress: bool
              ) -> tuple[float, int, EpochStats]:
    """One epoch of optimisation, with its augmentation drawn from ``(seed, epoch, rank)``.

    Returns:
        ``(loss_sum, n_seen, stats)``: the summed training loss and the images seen over all
        ranks, and this rank's :class:`EpochStats`.

    Raises:
        TrainingDivergedError: the loss became NaN or infinite.
    """
    aug_gen = make_generator(epoch_seed(settings.seed, epoch, 1, info.rank), ctx.device)
    bar = _make_progress(info, show_progress, len(batches),
                         f"{settings.run_name} epoch {epoch}/{settings.epochs}")
    stats = train_one_epoch(ctx, batches.epoch(epoch), aug_gen, progress=bar)
    if bar is not None:
        bar.close()
    check_finite_loss(stats.loss_sum, epoch, settings.lr)

    # Under DDP: the loss over every rank, and rank 0's BatchNorm statistics everywhere (the
    # buffers are not averaged by DDP, and rank 0's are the ones saved).
    loss_sum, n_seen = stats.loss_sum, stats.n_images
    if info.world > 1:
        t = torch.tensor([loss_sum, float(n_seen)], dtype=torch.float64, device=ctx.device)
        dist.all_reduce(t)
        loss_sum, n_seen = float(t[0]), int(t[1])
        for buf in raw_model.buffers():
            dist.broadcast(buf, 0)
    return loss_sum, n_seen, stats


def validate(raw_model: nn.Module, val_images: torch.Tensor, val_index: torch.Tensor, epoch: int,
             settings: TrainSettings, device: torch.device, info: DistInfo,
             amp_dtype: torch.dtype | None) -> torch.Tensor:
    """Validation logits of the whole split, float32 (N,) in split order on every rank (each
    rank scores its shard, then they are gathered).

    Raises:
        TrainingDivergedError: a logit is NaN or infinite.
    """
    logits = predict_logits(raw_model, val_images, settings.data_mean, settings.data_std, device,
                            batch_size=_eval_batch(device), channels_last=settings.channels_last,
                            amp_dtype=amp_dtype)
    _, logits = gather_predictions(val_index.to(device), logits, info)
    check_finite_logits(logits, epoch, settings.lr)
    return logits


def end_of_epoch(row: dict[str, Any], progress: Progress, raw_model: nn.Module,
                 optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, settings: TrainSettings,
                 config: TrainConfig, files: dict[str, Path], info: DistInfo) -> None:
    """Record the epoch's metrics ``row``: in ``progress``, then (rank 0) in the CSV, in
    ``best.pth`` when the validation ROC AUC improved and in ``last.pth``; print it."""
    epoch = row["epoch"]
    progress.history.append(row)
    progress.next_epoch = epoch + 1
    improved = row["val_auc"] > progress.best_auc
    if improved:
        progress.best_auc, progress.best_epoch = row["val_auc"], epoch
    if info.is_main:
        # Row first, then checkpoints: a crash in between leaves a row that resume drops
        # (the CSV is rewritten from last.pth's history).
        write_history_csv(files["csv"], progress.history)
        if improved:
            save_checkpoint(raw_model.state_dict(), files["best"])
        save_checkpoint(resume_checkpoint(
            raw_model, optimizer, scheduler, epoch=epoch, best_auc=progress.best_auc,
            best_epoch=progress.best_epoch, history=progress.history,
            settings=settings.to_json(), config=to_jsonable(dataclasses.asdict(config)),
        ), files["last"])
    _print(info, f"[train] epoch {epoch}/{settings.epochs}  "
                 f"train_loss {row['train_loss']:.4f}  val_loss {row['val_loss']:.4f}  "
                 f"val_auc {row['val_auc']:.4f}  val_ap {row['val_ap']:.4f}  "
                 f"lr {row['lr']:.2e}  {row['epoch_seconds']:.1f} s "
                 f"({row['images_per_second']:.0f} img/s)" + ("  *best*" if improved else ""))


def finish(config: TrainConfig, settings: TrainSettings, progress: Progress,
           raw_model: nn.Module, data: TrainData, files: dict[str, Path], device: torch.device,
           info: DistInfo) -> TrainResult:
    """Once every rank is done: the result, and on rank 0 the best epoch's predictions and
    evaluation (:func:`_final_evaluation`)."""
    _barrier(info)
    result = TrainResult(run=config.run_name, settings=settings.to_json(),
                         history=progress.history, best_epoch=progress.best_epoch,
                         best_val_auc=progress.best_auc, weights_dir=files["weights_dir"],
                         metrics_csv=files["csv"])
    if info.is_main:
        _final_evaluation(result, raw_model, files, data, settings, device)
    _barrier(info)
    return result


def _write_config(files: dict[str, Path], config: TrainConfig, settings: TrainSettings,
                  stats: dict[str, Any], ckpt: dict[str, Any] | None,
                  defaults: Sequence[str] = ()) -> None:
    """weights/<run>/config.json: arguments, resolved settings, data, model, provenance.
    A resumed run keeps the original arguments and records each resume. ``defaults``: one line
    per setting left to its default, saying why (from :func:`resolve_requested`).

    The data the run was trained on: ``data_dir`` (top level, relative to the repository root
    when inside it; read through :func:`pneumocam.processed.run_data_dir`) and
    ``data_identity`` (kind, labels hash, split fingerprint; what later stages compare)."""
    doc: dict[str, Any] = {
        "run": config.run_name,
        "arguments": dataclasses.asdict(config),
        "settings": settings.to_json(),
        "defaults": list(defaults),  # each default picked, and why ("epochs=3 (...)")
        RUN_DATA_DIR_KEY: record_path(settings.data_dir),
        RUN_DATA_IDENTITY_KEY: settings.data_identity.to_dict(),
        "data_source": stats.get("source"),
        "stats": {"mean": stats["mean"], "std": stats["std"], "size": stats.get("size"),
                  "counts": stats.get("counts")},
        "model": {"arch": settings.arch, "in_channels": 1, "num_outputs": 1,
                  "cam_layer": CAM_LAYER, "output_stride": ARCHS[settings.arch]},
        "files": {k: str(v) for k, v in files.items()},
        "provenance": provenance(),
        "resumes": [],
    }
    if ckpt is not None and files["config"].is_file():
        # A resume keeps the first run's arguments and provenance, and adds its own.
        try:
            old = json.loads(files["config"].read_text())
            doc["provenance"] = old.get("provenance", doc["provenance"])
            doc["arguments"] = old.get("arguments", doc["arguments"])
            doc["resumes"] = list(old.get("resumes", []))
        except (OSError, json.JSONDecodeError):
            pass
        doc["resumes"].append({"after_epoch": int(ckpt["epoch"]), "provenance": provenance(),
                               "arguments": dataclasses.asdict(config)})
    write_json_atomic(files["config"], doc)


def _final_evaluation(result: TrainResult, raw_model: nn.Module, files: dict[str, Path],
                      data: TrainData, settings: TrainSettings, device: torch.device) -> None:
    """Best weights -> val/test probabilities (:func:`final_probabilities`: float32 on every
    device) -> predictions CSVs -> evaluate_run (the operating threshold, ``_eval.json``)."""
    from .checkpoint import load_model_state
    from .evaluation import evaluate_run

    load_state_dict_checked(raw_model, load_model_state(files["best"], device), str(files["best"]))
    test_split = load_split(data.processed, "test", manifest=data.manifest)
    frames = {}
    for name, split in (("val", data.val), ("test", test_split)):
        prob = final_probabilities(raw_model, split.images, settings.data_mean,
                                   settings.data_std, device, channels_last=settings.channels_last)
        frames[name] = _prediction_frame(split.manifest, prob)
        write_frame_csv(files[f"pred_{name}"], frames[name], index=False)
    result.predictions = {"val": files["pred_val"], "test": files["pred_test"]}
    print(f"[train] best epoch {result.best_epoch} (val ROC AUC {result.best_val_auc:.4f}); "
          f"evaluating on val + test ({len(test_split)} images)", flush=True)
    result.evaluation = evaluate_run(
        result.run, frames["val"], frames["test"], data_source=data.stats.get("source") or {},
        history_csv=files["csv"], seed=settings.seed, n_boot=settings.n_boot,
        data_identity=settings.data_identity)
    auc = Estimate.from_json(result.evaluation.get("roc_auc"))
    if not math.isnan(auc.value):
        ci_text = ("" if math.isnan(auc.low) or math.isnan(auc.high)
                   else f" (95% CI {auc.low:.3f}-{auc.high:.3f})")
        print(f"[train] test ROC AUC {auc.value:.4f}{ci_text}; details in {files['eval']}",
              flush=True)


# --------------------------------------------------------------------------- CLI

def build_arg_parser(sampler_default: str) -> argparse.ArgumentParser:
    """The shared argparse of ``scripts/train_original.py`` and ``scripts/train_balanced.py``."""
    remedy = ("class-balanced WeightedRandomSampler (weight 1/class count)"
              if sampler_default == "balanced" else "plain shuffling (the data's own imbalance)")
    parser = argparse.ArgumentParser(
        description=f"Train a 1-channel ResNet-18 pneumonia classifier with {remedy}. Without "
                    "arguments: prepares the demo data when data/Processed is missing, trains, "
                    "evaluates on the test split and writes weights/, metrics/ and images/.")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="processed data folder (default: data/Processed, prepared from the "
                             "demo dataset when missing)")
    parser.add_argument("--epochs", type=cli.positive_int, default=None,
                        help=f"epochs (default: {FULL_EPOCHS} on real data; on the demo {DEMO_EPOCHS} on a "
                             f"GPU, {DEMO_CPU_EPOCHS} on a CPU)")
    parser.add_argument("--batch-size", type=cli.positive_int, default=None,
                        help=f"batch size per process (default: {GPU_BATCH} on CUDA, {CPU_BATCH} on CPU "
                             "and on the demo data)")
    parser.add_argument("--lr", type=cli.positive_float, default=None,
                        help=f"peak AdamW learning rate (default: {DEFAULT_LR})")
    parser.add_argument("--weight-decay", type=cli.non_negative_float, default=None,
                        help=f"AdamW weight decay (default: {DEFAULT_WEIGHT_DECAY})")
    parser.add_argument("--schedule", choices=SCHEDULES, default=None,
                        help="learning-rate schedule, stepped per batch (default: cosine with "
                             "a 5%% linear warm-up)")
    parser.add_argument("--seed", type=cli.non_negative_int, default=None,
                        help="random seed (default: 0)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="where to train (auto: CUDA when available)")
    parser.add_argument("--workers", type=cli.non_negative_int, default=None,
                        help="DataLoader workers on the CPU path (default: 0, arrays are in memory)")
    parser.add_argument("--run-name", type=cli.run_name, default=sampler_default,
                        help=f"names weights/<run>/, metrics/<run>*.csv (default: {sampler_default}); "
                             f"{paths.RUN_NAME_RULE}")
    parser.add_argument("--resume", action="store_true",
                        help="continue weights/<run>/last.pth after a crash or a kill")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing run of the same name")
    parser.add_argument("--pretrained", action="store_true", default=None,
                        help="start from torchvision's ImageNet weights (needs a download)")
    parser.add_argument("--arch", choices=tuple(ARCHS), default=None,
                        help="resnet18 (default: torchvision's, a 7x7 CAM at 224 px) or "
                             "resnet18-os16 (layer4 with stride 1 and dilation 2: output stride "
                             "16, a 14x14 CAM, about 1.7x the multiply-adds); recorded in "
                             "config.json and used by every later stage")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--limit", type=cli.positive_int, default=None,
                        help="use only N training images (class-stratified), for smoke runs")
    parser.add_argument("--pos-weight", default=None,
                        help="BCE positive-class weight: 'auto' (n_neg/n_pos), a number, or "
                             "'none' (default); a third imbalance remedy, e.g. "
                             "`train_original.py --pos-weight auto --run-name posweight`")
    parser.add_argument("--n-boot", type=cli.positive_int, default=1000,
                        help="bootstrap resamples of the final evaluation (default: 1000)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def config_from_args(args: argparse.Namespace, sampler: str) -> TrainConfig:
    """Map parsed arguments onto a :class:`TrainConfig`."""
    return TrainConfig(
        run_name=args.run_name, sampler=sampler, data_dir=args.data_dir, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        schedule=args.schedule, seed=args.seed, device=args.device, workers=args.workers,
        resume=args.resume, overwrite=args.overwrite, pretrained=args.pretrained,
        arch=args.arch, compile=args.compile, limit=args.limit, pos_weight=args.pos_weight, n_boot=args.n_boot,
        progress=not args.no_progress,
    )


def ensure_training_data(data_dir: Path | None) -> Path:
    """The processed folder to train on. With no ``data_dir`` and no ``data/Processed``, the
    demo dataset is generated and preprocessed first (and this is said); an explicit
    ``data_dir`` is used as given (missing -> a clear error later)."""
    if data_dir is not None:
        return Path(data_dir)
    processed = paths.processed_dir()
    if (processed / "stats.json").is_file():
        return processed
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ProcessedDataError(
            f"{processed}: no processed data. Under torchrun, prepare it first with "
            "`python scripts/preprocess.py` (or one single-process training run).")
    print(f"[train] no processed data in {processed}: preparing it (the synthetic demo dataset "
          "unless the real RSNA data is in data/rsna-pneumonia-detection-challenge)", flush=True)
    from .preprocess import ensure_processed  # imported lazily: heavy (DICOM stack)

    return Path(ensure_processed())


def main(argv: list[str] | None = None, sampler: str = "balanced") -> int:
    """Entry point of both training scripts: parse, prepare data if needed, train, evaluate.

    Returns the process exit code (:mod:`pneumocam.cli`'s convention).
    """
    parser = build_arg_parser(sampler)
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args, sampler)
        validate_config(config)  # every flag checked before the demo data or training starts
    except ConfigError as exc:
        parser.error(str(exc))
    try:
        config.data_dir = ensure_training_data(args.data_dir)
        train(config)
    except PneumocamError as exc:
        return cli.report_error(exc)
    return 0

