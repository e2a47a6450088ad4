"""Distributed training plumbing: the process group torchrun describes, and gathering results.

``torchrun --nproc_per_node=N scripts/train_balanced.py`` starts N processes; each calls
:func:`setup_distributed`, which joins the group (NCCL on CUDA, Gloo on CPU). A plain
``python`` run has ``WORLD_SIZE`` unset and gets a single-process :class:`DistInfo`, so the
training loop has one code path for both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the group: global rank, world size, rank on this machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE_PROCESS = DistInfo()  #: a plain, non-distributed run


def setup_distributed(device_kind: str) -> DistInfo:
    """Join the process group torchrun describes (NCCL on CUDA, Gloo on CPU); single process
    when ``WORLD_SIZE`` is unset or 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    created = False
    if not dist.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        if device_kind == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
        created = True
    return DistInfo(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank,
                    initialized_here=created)


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process)."""
    if info.world > 1:
        dist.barrier()


def gather_predictions(index: torch.Tensor, values: torch.Tensor, info: DistInfo
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """All-gather per-rank ``(index (n_r,), values (n_r,))`` shards of uneven length.

    Shards are padded to the longest one with index -1 for the collective, the padding is
    dropped, and the result is sorted by index: every original item exactly once.
    """
    if info.world <= 1:
        order = torch.argsort(index)
        return index[order], values[order]
    n_local = torch.tensor([index.numel()], device=index.device)
    sizes = [torch.zeros_like(n_local) for _ in range(info.world)]
    dist.all_gather(sizes, n_local)
    longest = int(max(int(s) for s in sizes))
    pad = longest - index.numel()
    idx = torch.cat([index, torch.full((pad,), -1, dtype=index.dtype, device=index.device)])
    val = torch.cat([values, torch.zeros(pad, dtype=values.dtype, device=values.device)])
    idx_all = [torch.empty_like(idx) for _ in range(info.world)]
    val_all = [torch.empty_like(val) for _ in range(info.world)]
    dist.all_gather(idx_all, idx)
    dist.all_gather(val_all, val)
    idx_cat, val_cat = torch.cat(idx_all), torch.cat(val_all)
    keep = idx_cat >= 0
    idx_cat, val_cat = idx_cat[keep], val_cat[keep]
    order = torch.argsort(idx_cat)
    return idx_cat[order], val_cat[order]


def resolve_device(name: str, info: DistInfo = SINGLE_PROCESS) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a ConfigError."""
    if name not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device {name!r}: expected auto, cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda, but PyTorch sees no CUDA GPU; use --device cpu or auto.")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", info.local_rank)
