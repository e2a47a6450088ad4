"""Training data: in-memory uint8 splits, batched augmentation, class-balanced samplers.

Images travel as uint8 ``(N, H, W)`` (0 = black air) until the step that uses them, where they
become ``[0, 1]`` floats, are augmented (training only) and only then normalised with the
training split's mean/std. The same tensor code runs on CPU and GPU:

- :func:`augment_batch`: a mild random affine (rotation, shift, scale) per image with
  ``F.affine_grid`` + ``F.grid_sample``; the area it uncovers is filled with 0 (black air),
  and no crop large enough to lose a finding is ever taken.
- :func:`epoch_indices`: the epoch's draw of training indices: ``torch.multinomial(w, n,
  replacement=True)`` for the balanced run (the draw ``WeightedRandomSampler`` makes),
  ``torch.randperm`` for the original run; on any device, from a seeded generator.
- :class:`DistributedWeightedSampler`: one seeded global draw per epoch (``seed + epoch``)
  split into disjoint per-rank shares ``indices[rank::world]``.
- :class:`DeviceBatches` (whole split resident on the GPU) and :func:`make_loader_batches`
  (a ``DataLoader`` over the uint8 arrays, for CPU) both yield ``(uint8 (B,H,W), float (B,))``
  batches for the same epoch function.
- :func:`sampler_preview`: the class counts of the first batches each sampler draws (the
  training notebooks' table), from the same batch source training uses on the CPU.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, WeightedRandomSampler

SAMPLERS = ("original", "balanced")


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random affine applied to training images.

    Attributes:
        degrees: rotation drawn uniformly from ``[-degrees, degrees]``.
        translate: shift drawn uniformly from ``[-translate, translate]`` of the image size,
            independently along x and y.
        scale: zoom factor drawn uniformly from ``[scale[0], scale[1]]`` (>1 magnifies).
    """

    degrees: float = 5.0
    translate: float = 0.04
    scale: tuple[float, float] = (0.95, 1.05)


# --------------------------------------------------------------------------- class weights

def as_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``torch.as_tensor`` that copies read-only numpy arrays (e.g. from pandas) instead of
    wrapping them (which torch warns about)."""
    if isinstance(x, np.ndarray) and not x.flags.writeable:
        x = x.copy()
    return torch.as_tensor(x)


def class_counts(labels: np.ndarray | torch.Tensor) -> tuple[int, int]:
    """``(n_negative, n_positive)`` of a 0/1 label vector."""
    y = as_tensor(labels).long()
    n_pos = int((y == 1).sum())
    return int(y.numel()) - n_pos, n_pos


def balanced_weights(labels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Per-sample weight ``1 / count(its class)``: float64 (N,), on the labels' device.

    Drawing with these weights picks each class with probability 1/2 per draw.
    """
    y = as_tensor(labels).long()
    counts = torch.bincount(y, minlength=2).to(torch.float64)
    return (1.0 / counts.clamp_min(1))[y]


def epoch_seed(seed: int, epoch: int, stream: int = 0, rank: int = 0) -> int:
    """A 63-bit seed for one (seed, epoch, stream, rank): sampler and augmentation draws of an
    epoch are reproducible from these numbers alone, so a resumed run redraws them exactly."""
    return int(np.random.SeedSequence([seed, epoch, stream, rank]).generate_state(2, np.uint64)[0]
               >> np.uint64(1))


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen


def epoch_indices(labels: torch.Tensor, sampler: str, generator: torch.Generator,
                  num_samples: int | None = None) -> torch.Tensor:
    """The training indices of one epoch, drawn on the generator's device.

    Args:
        labels: int (N,) 0/1 labels on the generator's device.
        sampler: ``"balanced"``: ``torch.multinomial(1/count(class), num_samples,
            replacement=True)``, the exact draw of :class:`torch.utils.data.WeightedRandomSampler`;
            ``"original"``: ``torch.randperm(N)`` (every image once), repeated if
            ``num_samples > N``.
        generator: seeded generator (its device decides where the draw happens).
        num_samples: draws (default N).

    Returns:
        int64 (num_samples,) indices in ``[0, N)`` on the labels' device.
    """
    n = int(labels.numel())
    num = n if num_samples is None else int(num_samples)
    if sampler == "balanced":
        weights = balanced_weights(labels)
        return torch.multinomial(weights, num, replacement=True, generator=generator)
    if sampler == "original":
        reps = math.ceil(num / n)
        perms = [torch.randperm(n, generator=generator, device=labels.device) for _ in range(reps)]
        return torch.cat(perms)[:num]
    raise ValueError(f"unknown sampler {sampler!r}; expected one of {SAMPLERS}")


def rank_share(indices: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Rank ``rank``'s disjoint share ``indices[rank::world]`` of a global draw whose length is a
    multiple of ``world`` (every rank gets the same number of positions)."""
    return indices[rank::world]


class DistributedWeightedSampler(Sampler[int]):
    """Class-balanced (or shuffled) sampling for DistributedDataParallel.

    Every rank makes the same global draw per epoch (:func:`epoch_indices` with a CPU generator
    seeded from ``seed + epoch``) of ``num_samples * world`` positions (N rounded up to a
    multiple of ``world``), and keeps ``indices[rank::world]``: the ranks' position sets are
    disjoint and together they are one balanced draw. Call :meth:`set_epoch` before each epoch.
    """

    def __init__(self, labels: np.ndarray | torch.Tensor, sampler: str = "balanced",
                 num_replicas: int = 1, rank: int = 0, seed: int = 0):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside [0, {num_replicas})")
        self.labels = as_tensor(labels).long().cpu()
        self.sampler = sampler
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = seed
        self.epoch = 0
        self.num_samples = math.ceil(len(self.labels) / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_indices(self) -> torch.Tensor:
        """The epoch's global draw, identical on every rank: int64 (total_size,)."""
        gen = make_generator(self.seed + self.epoch)
        return epoch_indices(self.labels, self.sampler, gen, self.total_size)

    def __iter__(self) -> Iterator[int]:
        return iter(rank_share(self.global_indices(), self.rank, self.num_replicas).tolist())

    def __len__(self) -> int:
        return self.num_samples


# --------------------------------------------------------------------------- augmentation

def random_affine_theta(n: int, generator: torch.Generator, config: AugmentConfig = AugmentConfig(),
                        device: torch.device | str | None = None) -> torch.Tensor:
    """Random affine matrices for ``F.affine_grid``: float32 (n, 2, 3) on the generator's device.

    Each maps output to input coordinates (normalised to [-1, 1]): rotation by an angle in
    ``[-degrees, degrees]``, zoom ``s`` in ``scale`` (content magnified by ``s``), shift in
    ``[-translate, translate]`` of the image size per axis.
    """
    device = generator.device if device is None else device
    u = torch.rand(n, 4, generator=generator, device=device)
    angle = (2 * u[:, 0] - 1) * math.radians(config.degrees)
    lo, hi = config.scale
    s = lo + (hi - lo) * u[:, 1]
    shift = (2 * u[:, 2:] - 1) * config.translate * 2  # fraction of size -> normalised units
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack([
        torch.stack([cos, -sin, shift[:, 0]], dim=1),
        torch.stack([sin, cos, shift[:, 1]], dim=1),
    ], dim=1)
    return theta


def augment_batch(x: torch.Tensor, generator: torch.Generator,
                  config: AugmentConfig = AugmentConfig()) -> torch.Tensor:
    """Apply one random mild affine per image.

    Args:
        x: float (B, 1, H, W) raw images in [0, 1] (not yet normalised).
        generator: seeded generator on ``x``'s device.
        config: the ranges (defaults: ±5°, ±4% shift, 0.95-1.05 zoom).

    Returns:
        float (B, 1, H, W), bilinear resampling; pixels mapped from outside the image are 0
        (black air), which is why this must run before normalisation.
    """
    theta = random_affine_theta(x.shape[0], generator, config, device=x.device).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W) -> float32 (B, 1, H, W) in [0, 1]."""
    return images.unsqueeze(1).to(torch.float32).div_(255.0)


def normalize(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """``(x - mean) / std`` with the training split's statistics (stats.json, [0, 1] scale)."""
    return (x - mean) / std


def prepare_batch(images: torch.Tensor, mean: float, std: float,
                  generator: torch.Generator | None = None,
                  augment: AugmentConfig | None = None,
                  channels_last: bool = False) -> torch.Tensor:
    """uint8 (B, H, W) -> normalised float32 (B, 1, H, W): the model's input.

    With ``augment`` (training) the random affine runs on the [0, 1] image and normalisation
    after it; without (validation, test, inference) images are only normalised.
    """
    x = to_unit_float(images)
    if augment is not None:
        if generator is None:
            raise ValueError("augmentation needs a seeded generator")
        x = augment_batch(x, generator, augment)
    x = normalize(x, mean, std)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


# --------------------------------------------------------------------------- batch sources

class UInt8Dataset(Dataset):
    """Images held as one uint8 tensor (N, H, W) with float labels (N,).

    ``__getitems__`` returns whole batches (one fancy-index per batch, not B item copies);
    pair it with :func:`batch_collate`.
    """

    def __init__(self, images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor):
        self.images = as_tensor(images)
        self.labels = as_tensor(labels).to(torch.float32)
        if self.images.dtype != torch.uint8 or self.images.ndim != 3:
            raise ValueError(f"expected uint8 (N, H, W) images, got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")

    def __len__(self) -> int:
        return int(self.labels.numel())

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]

    def __getitems__(self, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(idx, dtype=torch.long)
        return self.images[index], self.labels[index]


def batch_collate(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Identity collate for :meth:`UInt8Dataset.__getitems__` batches."""
    return batch


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: seed numpy/random in each loader worker from torch's worker seed
    (itself derived from the loader's seeded generator)."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


class DeviceBatches:
    """A training split resident on one device, batched without a CPU loader.

    Per epoch the indices are drawn on the device (:func:`epoch_indices`, seeded from
    ``seed + epoch``; under DDP one global draw split by :func:`rank_share`), and each batch is
    a device-side gather of uint8 images: no host sync, no host-to-device copy.

    Args:
        images: uint8 (N, H, W) on the target device. labels: (N,) 0/1 on the same device.
        batch_size: per-process batch; the last incomplete batch is dropped (BatchNorm).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 sampler: str, seed: int, rank: int = 0, world: int = 1):
        self.images = images
        self.labels_long = labels.long()
        self.labels = labels.to(torch.float32)
        self.batch_size = batch_size
        self.sampler = sampler
        self.seed = seed
        self.rank, self.world = rank, world
        self.per_rank = math.ceil(len(labels) / world)

    def __len__(self) -> int:
        return self.per_rank // self.batch_size

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = make_generator(self.seed + epoch, self.images.device)
        idx = epoch_indices(self.labels_long, self.sampler, gen, self.per_rank * self.world)
        idx = rank_share(idx, self.rank, self.world)
        for b in range(len(self)):
            sel = idx[b * self.batch_size:(b + 1) * self.batch_size]
            yield self.images[sel], self.labels[sel]


class LoaderBatches:
    """A ``DataLoader`` over a uint8 :class:`UInt8Dataset` (CPU path, or a GPU whose memory
    cannot hold the split). Balanced: ``WeightedRandomSampler(1/count, N, replacement=True)``;
    original: shuffling; under DDP: :class:`DistributedWeightedSampler`. Each epoch reseeds the
    sampler from ``seed + epoch``, so an epoch's order does not depend on the epochs before it.
    """

    def __init__(self, images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
                 batch_size: int, sampler: str, seed: int, workers: int = 0,
                 pin_memory: bool = False, rank: int = 0, world: int = 1):
        self.dataset = UInt8Dataset(images, labels)
        self.seed = seed
        self.generator = make_generator(seed)
        y = self.dataset.labels.long()
        if world > 1:
            self.sampler: Sampler = DistributedWeightedSampler(y, sampler, world, rank, seed)
        elif sampler == "balanced":
            self.sampler = WeightedRandomSampler(balanced_weights(y), len(y), replacement=True,
                                                 generator=self.generator)
        elif sampler == "original":
            self.sampler = RandomSampler(self.dataset, generator=self.generator)
        else:
            raise ValueError(f"unknown sampler {sampler!r}; expected one of {SAMPLERS}")
        self.loader = DataLoader(
            self.dataset, batch_size=batch_size, sampler=self.sampler, drop_last=True,
            num_workers=workers, collate_fn=batch_collate, pin_memory=pin_memory,
            worker_init_fn=seed_worker, persistent_workers=workers > 0,
            generator=make_generator(seed + 1),
        )

    def __len__(self) -> int:
        return len(self.loader)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if isinstance(self.sampler, DistributedWeightedSampler):
            self.sampler.set_epoch(epoch)
        else:
            self.generator.manual_seed(self.seed + epoch)
        yield from self.loader


# --------------------------------------------------------------------------- sampler preview

def sampler_preview(labels: np.ndarray | torch.Tensor, batch_size: int, seed: int = 0,
                    n_batches: int = 4, epoch: int = 1,
                    samplers: Sequence[str] = SAMPLERS) -> pd.DataFrame:
    """Negatives and positives in each of the first ``n_batches`` training batches, per sampler.

    The batches are those :class:`LoaderBatches` yields for epoch ``epoch`` (the CPU training
    path: ``RandomSampler`` for ``"original"``, ``WeightedRandomSampler(1/count, N,
    replacement=True)`` for ``"balanced"``), seeded as training seeds them, so with a run's
    ``seed`` and effective batch size they are that run's first batches on the CPU. Only the
    labels are drawn (the images are 1x1 placeholders): milliseconds on any split. A GPU that
    holds the split draws the same distribution on the device (:func:`epoch_indices`), not these
    exact batches.

    Args:
        labels: 0/1 training labels (N,), in the order training holds them.
        batch_size: images per batch; an incomplete last batch is dropped, as in training.
        seed: the run's seed.
        n_batches: batches counted (fewer when an epoch has fewer).
        epoch: the epoch whose draw is shown (training counts from 1).
        samplers: which draws, side by side (each of :data:`SAMPLERS`).

    Returns:
        DataFrame indexed by ``batch`` (1, 2, ...) with int columns ``"<sampler> negative"`` and
        ``"<sampler> positive"`` for each sampler, in the order given (each row sums to
        ``batch_size`` per sampler).
    """
    y = as_tensor(labels).long().cpu()
    placeholders = torch.zeros((len(y), 1, 1), dtype=torch.uint8)
    columns: dict[str, list[int]] = {}
    for sampler in samplers:
        batches = LoaderBatches(placeholders, y, batch_size, sampler, seed)
        counts = [class_counts(batch_labels) for _, batch_labels in
                  itertools.islice(batches.epoch(epoch), n_batches)]
        columns[f"{sampler} negative"] = [neg for neg, _ in counts]
        columns[f"{sampler} positive"] = [pos for _, pos in counts]
    n = min((len(v) for v in columns.values()), default=0)
    table = pd.DataFrame({k: v[:n] for k, v in columns.items()}, dtype=int)
    table.index = pd.RangeIndex(1, n + 1, name="batch")
    return table
